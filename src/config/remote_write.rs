//! The `[[remote_write]]` tables.

use std::time::Duration;

use super::RemoteWriteDef;
use crate::reader::Table;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_QUEUE: usize = 500_000;
const DEFAULT_MAX_BATCH: usize = 5_000;

pub(super) fn read_remote_write(table: Table<'_>, index: usize) -> Option<RemoteWriteDef> {
    let d = table.diags();
    let errors_before = d.error_count();
    let name = match table.key_span("name") {
        Some(_) => table.name("remote_write", "")?,
        None => format!("remote-{}", index + 1),
    };
    let table = table.renamed(format!("remote_write {name:?}"));
    let mut secrets = Vec::new();
    let url = match table.str("url") {
        Some((text, span)) => d.interpolate(text, &span).and_then(|expanded| {
            secrets.extend(expanded.secrets);
            match url::Url::parse(&expanded.value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                _ => {
                    d.error_hint(
                        &span,
                        format!("{text:?} is not an http(s) URL"),
                        "like url = \"http://prometheus:9090/api/v1/write\"",
                    );
                    None
                }
            }
        }),
        None => {
            table.missing("url", "give the remote-write endpoint, like url = \"http://prometheus:9090/api/v1/write\"");
            None
        }
    };
    let (headers, _) = crate::checks::http::config::read_headers(&table, &mut secrets);
    let interval = table
        .duration("interval")
        .map_or(DEFAULT_INTERVAL, |(every, _)| every);
    let timeout = table
        .duration("timeout")
        .map_or(DEFAULT_TIMEOUT, |(limit, _)| limit);
    let count = |key: &'static str, default: usize| match table.int(key) {
        None => default,
        Some((n, _)) if n >= 1 => n as usize,
        Some((n, span)) => {
            d.error(&span, format!("`{key}` must be at least 1, found {n}"));
            default
        }
    };
    let max_queue = count("max_queue", DEFAULT_MAX_QUEUE);
    let max_batch = count("max_batch", DEFAULT_MAX_BATCH);
    let ip = crate::reader::read_ip_preference(&table);
    let tls = crate::checks::tls::config::read_tls_options(
        &table,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        true,
    );
    let written = table.written();
    table.finish();
    if d.error_count() > errors_before {
        return None;
    }
    let tls = tls?;
    let revision = super::revision(&written, &name, &secrets);
    Some(RemoteWriteDef {
        name,
        url: url?,
        headers,
        interval,
        timeout,
        max_queue,
        max_batch,
        ip: ip?,
        tls,
        secrets,
        revision,
    })
}
