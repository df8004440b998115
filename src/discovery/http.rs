//! Prometheus HTTP SD: a GET every `refresh` that must answer 200 with
//! `Content-Type: application/json` and a JSON list of target groups (as Prometheus's
//! `discovery/http` requires), through `checks::http::fetch`: the request's auth, TLS,
//! redirects and body cap are the http check's. An answer that is not all of that is a
//! failure, and the last good targets stay.

use std::sync::Arc;

use tokio::time::Instant;

use super::{DiscoveryEnv, HttpSource, Read, Target, groups};
use crate::checks::CheckCtx;

/// Bodies over this size are parsed on the blocking pool.
const PARSE_INLINE: usize = 64 * 1024;

/// Fetches and parses `source` once; on failure the targets are `kept`.
pub(crate) async fn read(
    source: &HttpSource,
    env: &DiscoveryEnv,
    kept: Option<Arc<Vec<Target>>>,
) -> Read {
    match fetch(source, env).await {
        Ok(targets) => Read {
            targets: Arc::new(targets),
            error: None,
        },
        Err(error) => Read {
            targets: kept.unwrap_or_default(),
            error: Some(crate::text::redact(&source.secrets, &error)),
        },
    }
}

async fn fetch(source: &HttpSource, env: &DiscoveryEnv) -> Result<Vec<Target>, String> {
    let ctx = CheckCtx {
        resolver: env.resolver.clone(),
        rdap: env.rdap.clone(),
        deadline: Instant::now() + source.timeout,
        user_agent: env.user_agent,
        source_ip: None,
    };
    let mut details = crate::result::HttpDetails::default();
    let received = tokio::time::timeout(
        source.timeout,
        crate::checks::http::fetch(&source.spec, &ctx, &mut details),
    )
    .await
    .map_err(|_| format!("no answer within {:?}", source.timeout))?
    .map_err(|failure| failure.detail)?;
    if received.status != ::http::StatusCode::OK {
        return Err(format!(
            "the endpoint answered HTTP {}; HTTP SD wants 200",
            received.status.as_u16()
        ));
    }
    let content_type = received
        .headers
        .get(::http::header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_string())
        .unwrap_or_default();
    if !is_json(&content_type) {
        return Err(format!(
            "the answer's Content-Type is {:?}; HTTP SD wants application/json",
            crate::text::sanitize(&content_type, crate::text::MAX_REPLY)
        ));
    }
    if received.total_len > received.body.len() as u64 {
        return Err(format!(
            "the answer is over {} bytes (`max_body`)",
            source.spec.max_body
        ));
    }
    let body = received.body;
    let parsed = if body.len() <= PARSE_INLINE {
        groups::parse_json(&body)
    } else {
        tokio::task::spawn_blocking(move || groups::parse_json(&body))
            .await
            .map_err(|_| "parsing the answer failed".to_string())?
    };
    parsed.map_err(|error| {
        format!(
            "the answer is not a target group list: {}",
            crate::text::sanitize(&error, crate::text::MAX_REPLY)
        )
    })
}

/// Whether a Content-Type is JSON as Prometheus accepts it: `application/json`, with at most
/// a UTF-8 charset.
fn is_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|media| media.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.all(|param| {
        param.split_once('=').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("charset")
                && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_as_prometheus_accepts_them() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/json; charset=\"UTF-8\""));
        assert!(!is_json("application/json; charset=latin1"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
