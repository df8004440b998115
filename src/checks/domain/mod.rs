//! The `domain` check: when a domain's registration expires, from RDAP (RFC 9083, the
//! `expiration` event), with the RDAP server found through the IANA bootstrap registry
//! (RFC 9224) unless configured.
//!
//! RDAP servers rate-limit, so answers are cached ([`RdapState`]), and a 429 stops requests to
//! that server for the time it asks (`Retry-After`) while the last known answer keeps being
//! reported. Success means: an expiration date was found and is at least `min_days_left` away.
//!
//! An answer's age is wall-clock time, so the cache can be saved and restored across a restart
//! ([`RdapState::answers_snapshot`], [`RdapState::restore_answers`]): a restored answer is
//! used like a fresh one while it is younger than the check's `cache_for`.

pub(crate) mod config;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::header::{ACCEPT, RETRY_AFTER};
use http::{HeaderValue, Method};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

use super::CheckCtx;
use super::http::{HttpExpect, HttpOptions, HttpSpec, Received, TlsOptions, fetch, show_url};
use crate::net::{self, IpPreference, TlsSetup};
use crate::result::{Details, DomainDetails, Failure, FailureReason, HttpDetails, Status};
use crate::time;

/// The reasons a `domain` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::Closed,
    FailureReason::Protocol,
    FailureReason::Redirect,
    FailureReason::TooLarge,
    FailureReason::Rdap,
    FailureReason::DomainExpiring,
];

/// The IANA RDAP bootstrap registry for domains.
pub const IANA_BOOTSTRAP: &str = "https://data.iana.org/rdap/dns.json";

/// How long a fetched bootstrap registry is used before it is fetched again.
const BOOTSTRAP_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a cached answer may stand in while a server asks us to back off.
const STALE_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Backoff after a 429 without a usable `Retry-After`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(300);

/// Largest RDAP or bootstrap document read; anything larger is a failure.
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

/// The most answers [`RdapState::restore_answers`] lets the cache hold.
pub const MAX_RESTORED: usize = 10_000;

/// A validated `domain` check.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    /// The registered domain, lowercase, without a trailing dot.
    pub domain: String,
    /// The RDAP base URL to ask, if set for this check.
    pub server: Option<Url>,
    /// RDAP base URLs by TLD, from `[agent] rdap_servers`.
    pub tld_servers: BTreeMap<String, Url>,
    /// Where the bootstrap registry is, from `[agent] rdap_bootstrap`.
    pub bootstrap: Url,
    /// How long an answer is reused before RDAP is asked again.
    pub cache_for: Duration,
    /// Address family preference for the RDAP requests.
    pub ip: IpPreference,
    /// The registration must not expire within this many days.
    pub min_days_left: Option<f64>,
}

/// A bootstrap registry's services: domain suffixes and their RDAP base URL.
type Services = Arc<Vec<(Vec<String>, Url)>>;

/// What RDAP lookups share across runs: the bootstrap registry, answers and backoffs.
#[derive(Debug)]
pub struct RdapState {
    tls: TlsOptions,
    bootstraps: Mutex<HashMap<Url, (Instant, Services)>>,
    answers: Mutex<HashMap<String, Answer>>,
    backoff: Mutex<HashMap<String, Instant>>,
}

/// One cached answer.
#[derive(Debug, Clone)]
struct Answer {
    /// When it was fetched, on the wall clock (so it means the same after a restart).
    at: SystemTime,
    expiry: i64,
    server: String,
}

impl Answer {
    /// Whether it was fetched less than `max_age` before `now`. One fetched after `now` (the
    /// clock was set back) is of unknown age and is not: the domain is asked again.
    fn younger_than(&self, max_age: Duration, now: SystemTime) -> bool {
        now.duration_since(self.at).is_ok_and(|age| age < max_age)
    }
}

/// One cached RDAP answer, as kept across restarts ([`RdapState::answers_snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    /// The domain.
    pub domain: String,
    /// When the answer was fetched, Unix seconds.
    pub fetched: i64,
    /// The registration's expiry, Unix seconds.
    pub expiry: i64,
    /// The RDAP server that answered.
    pub server: String,
}

impl RdapState {
    /// Fresh state, with the bundled roots for HTTPS.
    pub fn new() -> RdapState {
        let tls = net::client_config(TlsSetup {
            client_auth: None,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        })
        .expect("a client configuration without a client certificate always builds");
        let verifier = crate::tlsinfo::verifier(net::bundled_roots())
            .expect("a verifier over the bundled roots always builds");
        RdapState {
            tls: TlsOptions::verified(Arc::new(tls), verifier),
            bootstraps: Mutex::new(HashMap::new()),
            answers: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
        }
    }

    /// The cached answers, by domain, to keep across a restart.
    pub fn answers_snapshot(&self) -> Vec<CachedAnswer> {
        let answers = self
            .answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut saved: Vec<CachedAnswer> = answers
            .iter()
            .map(|(domain, answer)| CachedAnswer {
                domain: domain.clone(),
                fetched: time::unix_secs(answer.at),
                expiry: answer.expiry,
                server: answer.server.clone(),
            })
            .collect();
        saved.sort_unstable_by(|a, b| a.domain.cmp(&b.domain));
        saved
    }

    /// Puts answers kept by [`RdapState::answers_snapshot`] back in the cache, where each is
    /// used like a fresh one while it is younger than its check's `cache_for`. Answers from
    /// the future are left out, an answer already cached is not replaced by an older one, and
    /// no answer is added once the cache holds [`MAX_RESTORED`] (the newest go in first).
    pub fn restore_answers(&self, mut saved: Vec<CachedAnswer>) {
        let now = time::unix_now();
        saved.retain(|answer| answer.fetched <= now);
        // Newest first, so the bound keeps the newest.
        saved.sort_unstable_by_key(|answer| std::cmp::Reverse(answer.fetched));
        saved.truncate(MAX_RESTORED);
        let mut answers = self
            .answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for answer in saved {
            let at = time::from_unix(answer.fetched);
            match answers.get(&answer.domain) {
                Some(cached) if cached.at >= at => continue,
                Some(_) => {}
                None if answers.len() >= MAX_RESTORED => continue,
                None => {}
            }
            answers.insert(
                answer.domain,
                Answer {
                    at,
                    expiry: answer.expiry,
                    server: answer.server,
                },
            );
        }
    }
}

impl Default for RdapState {
    fn default() -> Self {
        RdapState::new()
    }
}

/// Runs a `domain` check once.
pub async fn run(spec: &DomainSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = DomainDetails::default();
    let status = match lookup(spec, ctx, &mut details).await {
        Ok(expiry) => {
            details.expiry = Some(expiry);
            evaluate(spec, expiry, SystemTime::now())
        }
        Err(failure) => failure.into(),
    };
    (status, Details::Domain(Box::new(details)))
}

async fn lookup(
    spec: &DomainSpec,
    ctx: &CheckCtx,
    details: &mut DomainDetails,
) -> Result<i64, Failure> {
    let state = &ctx.rdap;
    if let Some(answer) = cached(state, &spec.domain, spec.cache_for) {
        details.cached = true;
        details.server = Some(answer.server);
        return Ok(answer.expiry);
    }
    let base = server_for(spec, ctx, details).await?;
    let origin = base.origin().ascii_serialization();
    details.server = Some(show_url(&base));
    if let Some(until) = backing_off(state, &origin) {
        return stale_or(state, spec, details, || {
            Failure::new(
                FailureReason::Rdap,
                format!(
                    "{origin} asked for a pause (HTTP 429); next request in {}s",
                    until.saturating_duration_since(Instant::now()).as_secs()
                ),
            )
        });
    }
    let url = base
        .join(&format!("domain/{}", spec.domain))
        .map_err(|error| {
            Failure::new(
                FailureReason::Rdap,
                format!("cannot build the RDAP URL: {error}"),
            )
        })?;
    let received = get(state, spec, ctx, &url, &mut details.http).await?;
    match received.status.as_u16() {
        200 => {}
        404 => {
            return Err(Failure::new(
                FailureReason::Rdap,
                format!(
                    "{} does not know {} (HTTP 404)",
                    show_url(&url),
                    spec.domain
                ),
            ));
        }
        429 => {
            let wait = retry_after(&received).unwrap_or(DEFAULT_BACKOFF);
            state
                .backoff
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(origin.clone(), Instant::now() + wait);
            return stale_or(state, spec, details, || {
                Failure::new(
                    FailureReason::Rdap,
                    format!(
                        "{origin} is rate-limiting (HTTP 429); no request before {}s from now",
                        wait.as_secs()
                    ),
                )
            });
        }
        code => {
            return Err(Failure::new(
                FailureReason::Rdap,
                format!(
                    "{} answered HTTP {code} for {}",
                    show_url(&url),
                    spec.domain
                ),
            ));
        }
    }
    let expiry = parse_expiration(&received.body).map_err(|message| {
        Failure::new(
            FailureReason::Rdap,
            format!("RDAP answer from {} {message}", show_url(&url)),
        )
    })?;
    state
        .answers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(
            spec.domain.clone(),
            Answer {
                at: SystemTime::now(),
                expiry,
                server: show_url(&base),
            },
        );
    Ok(expiry)
}

fn cached(state: &RdapState, domain: &str, max_age: Duration) -> Option<Answer> {
    let answers = state
        .answers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = SystemTime::now();
    answers
        .get(domain)
        .filter(|answer| answer.younger_than(max_age, now))
        .cloned()
}

fn backing_off(state: &RdapState, origin: &str) -> Option<Instant> {
    let backoff = state
        .backoff
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    backoff
        .get(origin)
        .copied()
        .filter(|until| *until > Instant::now())
}

/// While a server asks for a pause, the last answer (up to a week old) stands in.
fn stale_or(
    state: &RdapState,
    spec: &DomainSpec,
    details: &mut DomainDetails,
    otherwise: impl FnOnce() -> Failure,
) -> Result<i64, Failure> {
    match cached(state, &spec.domain, STALE_LIMIT) {
        Some(answer) => {
            details.cached = true;
            Ok(answer.expiry)
        }
        None => Err(otherwise()),
    }
}

fn retry_after(received: &Received) -> Option<Duration> {
    let value = received.headers.get(RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.clamp(1, 24 * 3600)))
}

/// The RDAP base URL for the check's domain: the check's own, `[agent] rdap_servers`, or the
/// bootstrap registry (longest matching suffix).
async fn server_for(
    spec: &DomainSpec,
    ctx: &CheckCtx,
    details: &mut DomainDetails,
) -> Result<Url, Failure> {
    if let Some(server) = &spec.server {
        return Ok(server.clone());
    }
    if let Some(server) = longest_match(
        &spec.domain,
        spec.tld_servers.iter().map(|(k, v)| (k.as_str(), v)),
    ) {
        return Ok(server.clone());
    }
    let services = bootstrap(spec, ctx, details).await?;
    let found = longest_match(
        &spec.domain,
        services
            .iter()
            .flat_map(|(suffixes, url)| suffixes.iter().map(move |suffix| (suffix.as_str(), url))),
    );
    found.cloned().ok_or_else(|| {
        Failure::new(
            FailureReason::Rdap,
            format!(
                "the RDAP bootstrap registry names no server for {}; set rdap_server on the check or [agent] rdap_servers",
                spec.domain
            ),
        )
    })
}

fn longest_match<'a>(
    domain: &str,
    candidates: impl Iterator<Item = (&'a str, &'a Url)>,
) -> Option<&'a Url> {
    candidates
        .filter(|(suffix, _)| {
            let suffix = suffix.trim_matches('.').to_ascii_lowercase();
            !suffix.is_empty() && (domain == suffix || domain.ends_with(&format!(".{suffix}")))
        })
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(_, url)| url)
}

async fn bootstrap(
    spec: &DomainSpec,
    ctx: &CheckCtx,
    details: &mut DomainDetails,
) -> Result<Services, Failure> {
    let state = &ctx.rdap;
    {
        let cache = state
            .bootstraps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, services)) = cache.get(&spec.bootstrap)
            && at.elapsed() < BOOTSTRAP_TTL
        {
            return Ok(services.clone());
        }
    }
    let shown = show_url(&spec.bootstrap);
    let received = get(state, spec, ctx, &spec.bootstrap, &mut details.http)
        .await
        .map_err(|failure| {
            Failure::new(
                FailureReason::Rdap,
                format!(
                    "cannot load the RDAP bootstrap registry {shown}: {}",
                    failure.detail
                ),
            )
        })?;
    if received.status.as_u16() != 200 {
        return Err(Failure::new(
            FailureReason::Rdap,
            format!(
                "the RDAP bootstrap registry {shown} answered HTTP {}",
                received.status.as_u16()
            ),
        ));
    }
    let services = Arc::new(parse_bootstrap(&received.body).map_err(|message| {
        Failure::new(
            FailureReason::Rdap,
            format!("the RDAP bootstrap registry {shown} {message}"),
        )
    })?);
    state
        .bootstraps
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(spec.bootstrap.clone(), (Instant::now(), services.clone()));
    Ok(services)
}

async fn get(
    state: &RdapState,
    spec: &DomainSpec,
    ctx: &CheckCtx,
    url: &Url,
    timings: &mut HttpDetails,
) -> Result<Received, Failure> {
    let request = HttpSpec::new(
        url.clone(),
        HttpOptions {
            headers: vec![(
                ACCEPT,
                HeaderValue::from_static("application/rdap+json, application/json"),
            )],
            follow_redirects: true,
            max_redirects: 5,
            ip: spec.ip,
            max_body: MAX_DOCUMENT,
            expect: HttpExpect {
                max_size: Some(MAX_DOCUMENT),
                ..HttpExpect::default()
            },
            ..HttpOptions::internal(Method::GET, state.tls.clone())
        },
    );
    let mut hop = HttpDetails::default();
    let result = fetch(&request, ctx, &mut hop).await;
    timings.resolve += hop.resolve;
    timings.connect += hop.connect;
    timings.tls += hop.tls;
    timings.processing += hop.processing;
    timings.transfer += hop.transfer;
    timings.status_code = hop.status_code;
    result
}

/// The `expiration` event's date (Unix seconds) from an RFC 9083 domain object.
pub fn parse_expiration(body: &[u8]) -> Result<i64, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("is not valid JSON: {error}"))?;
    let events = document
        .get("events")
        .and_then(|events| events.as_array())
        .ok_or("has no events")?;
    let date = events
        .iter()
        .find(|event| event.get("eventAction").and_then(|a| a.as_str()) == Some("expiration"))
        .ok_or("has no expiration event")?
        .get("eventDate")
        .and_then(|date| date.as_str())
        .ok_or("has an expiration event without an eventDate")?;
    chrono::DateTime::parse_from_rfc3339(date)
        .map(|date| date.timestamp())
        .map_err(|error| format!("has an expiration date {date:?} that is not RFC 3339: {error}"))
}

/// The services of an RFC 9224 bootstrap registry: suffixes and the first HTTPS (else HTTP)
/// base URL of each.
pub fn parse_bootstrap(body: &[u8]) -> Result<Vec<(Vec<String>, Url)>, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("is not valid JSON: {error}"))?;
    let services = document
        .get("services")
        .and_then(|services| services.as_array())
        .ok_or("has no services")?;
    let mut out = Vec::new();
    for service in services {
        let Some([suffixes, urls]) = service.as_array().map(Vec::as_slice) else {
            continue;
        };
        let suffixes: Vec<String> = suffixes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_ascii_lowercase))
            .collect();
        let urls: Vec<Url> = urls
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str())
            .filter_map(|u| {
                Url::parse(&if u.ends_with('/') {
                    u.to_string()
                } else {
                    format!("{u}/")
                })
                .ok()
            })
            .collect();
        let best = urls
            .iter()
            .find(|u| u.scheme() == "https")
            .or_else(|| urls.iter().find(|u| u.scheme() == "http"));
        if let Some(url) = best {
            out.push((suffixes, url.clone()));
        }
    }
    Ok(out)
}

fn evaluate(spec: &DomainSpec, expiry: i64, now: SystemTime) -> Status {
    let Some(min_days) = spec.min_days_left else {
        return Status::Pass;
    };
    let days_left = time::days_until(expiry, now);
    if days_left >= min_days {
        return Status::Pass;
    }
    let state = format!(
        "{} ({})",
        time::expiry_verdict(days_left),
        time::rfc3339_unix(expiry)
    );
    Status::fail(
        FailureReason::DomainExpiring,
        format!(
            "the registration of {} {state}, less than min_days_left {min_days}",
            spec.domain
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_events() {
        let body = br#"{"events":[{"eventAction":"registration","eventDate":"1995-08-14T04:00:00Z"},{"eventAction":"expiration","eventDate":"2027-08-13T04:00:00Z"}]}"#;
        assert_eq!(parse_expiration(body), Ok(1_818_129_600));
        assert_eq!(
            parse_expiration(br#"{"events":[]}"#),
            Err("has no expiration event".to_string())
        );
        assert!(
            parse_expiration(b"<html>")
                .unwrap_err()
                .starts_with("is not valid JSON")
        );
    }

    fn saved(domain: &str, age_secs: i64, expiry: i64) -> CachedAnswer {
        CachedAnswer {
            domain: domain.into(),
            fetched: time::unix_now() - age_secs,
            expiry,
            server: "https://rdap.example/".into(),
        }
    }

    #[test]
    fn a_restored_answer_is_used_while_younger_than_cache_for() {
        let state = RdapState::new();
        let (old, new) = (saved("old.example", 3600, 1), saved("new.example", 60, 2));
        let future = saved("future.example", -3600, 3);
        state.restore_answers(vec![old.clone(), new.clone(), future]);
        let hour = Duration::from_secs(3600);
        let answer = cached(&state, "new.example", hour).unwrap();
        assert_eq!(
            (answer.expiry, answer.server.as_str()),
            (2, "https://rdap.example/")
        );
        assert!(cached(&state, "new.example", Duration::from_secs(30)).is_none());
        assert!(cached(&state, "old.example", hour).is_none());
        assert!(cached(&state, "old.example", STALE_LIMIT).is_some());
        assert!(cached(&state, "future.example", STALE_LIMIT).is_none());

        // What is kept is what was restored, by domain; it round-trips through JSON.
        let snapshot = state.answers_snapshot();
        let expected = vec![new, old];
        assert_eq!(snapshot, expected);
        let json = serde_json::to_string(&snapshot).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<CachedAnswer>>(&json).unwrap(),
            expected
        );
    }

    #[test]
    fn restoring_keeps_fresher_answers_and_is_bounded() {
        let state = RdapState::new();
        state.restore_answers(vec![saved("a.example", 10, 1)]);
        // An older answer does not replace a newer one; a newer one does.
        state.restore_answers(vec![saved("a.example", 20, 2)]);
        assert_eq!(state.answers_snapshot()[0].expiry, 1);
        state.restore_answers(vec![saved("a.example", 5, 3)]);
        assert_eq!(state.answers_snapshot()[0].expiry, 3);

        let many = (0..MAX_RESTORED as i64 + 5)
            .map(|n| saved(&format!("d{n}.example"), n, n))
            .collect();
        state.restore_answers(many);
        let snapshot = state.answers_snapshot();
        assert_eq!(snapshot.len(), MAX_RESTORED);
        // The oldest are the ones left out.
        assert!(
            snapshot
                .iter()
                .all(|answer| answer.expiry < MAX_RESTORED as i64 - 1)
        );
        assert!(snapshot.iter().any(|answer| answer.domain == "a.example"));
    }

    #[test]
    fn bootstrap_longest_suffix() {
        let body = br#"{"services":[[["com","net"],["http://a.example/rdap/","https://a.example/rdap/"]],[["co.uk"],["https://b.example/"]],[["uk"],["https://c.example"]]]}"#;
        let services = parse_bootstrap(body).unwrap();
        let find = |domain: &str| {
            longest_match(
                domain,
                services
                    .iter()
                    .flat_map(|(s, u)| s.iter().map(move |x| (x.as_str(), u))),
            )
            .map(|u| u.to_string())
        };
        assert_eq!(
            find("example.com").as_deref(),
            Some("https://a.example/rdap/")
        );
        assert_eq!(find("shop.co.uk").as_deref(), Some("https://b.example/"));
        assert_eq!(find("gov.uk").as_deref(), Some("https://c.example/"));
        assert_eq!(find("example.org"), None);
    }
}
