//! The keys of a `domain` check, and RDAP base URLs.

use std::ops::Range;
use std::time::Duration;

use super::DomainSpec;
use crate::reader::{Diags, Table, read_ip_preference};

const DEFAULT_CACHE: Duration = Duration::from_secs(3600);

/// Reads the keys of a `domain` check (`spec::read_spec` dispatches
/// here). Returns the spec and the domain as the target.
pub(crate) fn read(
    table: &Table<'_>,
    cx: &mut crate::reader::SpecCx<'_>,
) -> Option<(DomainSpec, String)> {
    let d = table.diags();
    let mut ok = true;
    let domain = match table.str("domain") {
        Some((text, span)) => {
            let domain = text.trim_end_matches('.').to_ascii_lowercase();
            let valid = domain.contains('.')
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if valid {
                Some(domain)
            } else {
                d.error_hint(
                    &span,
                    format!("{text:?} is not a registered domain name"),
                    "give the name as registered, like domain = \"example.com\" (internationalised names in their xn-- form)",
                );
                None
            }
        }
        None => {
            table.missing(
                "domain",
                "set the registered domain, like domain = \"example.com\"",
            );
            None
        }
    };
    let server = table.str("rdap_server").and_then(|(text, span)| {
        let url = read_base_url(d, text, &span);
        ok &= url.is_some();
        url
    });
    let cache_for = table
        .duration("cache_for")
        .map_or(DEFAULT_CACHE, |(every, _)| every);
    let ip = read_ip_preference(table);
    let min_days_left = match table.table("expect", format!("`expect` of {}", table.what())) {
        None => None,
        Some(expect) => {
            let days = expect.days("min_days_left");
            expect.finish();
            days
        }
    };
    let (Some(domain), Some(ip), true) = (domain, ip, ok) else {
        return None;
    };
    let target = domain.clone();
    Some((
        DomainSpec {
            domain,
            server,
            tld_servers: cx.rdap_servers.clone(),
            bootstrap: cx.rdap_bootstrap.clone(),
            cache_for,
            ip,
            min_days_left,
        },
        target,
    ))
}

/// An RDAP base URL (`http` or `https`), normalised to end with `/` so paths join under it.
pub(crate) fn read_base_url(d: &Diags<'_>, text: &str, span: &Range<usize>) -> Option<url::Url> {
    let with_slash = if text.ends_with('/') || text.ends_with(".json") {
        text.to_string()
    } else {
        format!("{text}/")
    };
    match url::Url::parse(&with_slash) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            d.error_hint(
                span,
                format!("{text:?} is not an http(s) URL"),
                "write it like \"https://rdap.example.net/\"",
            );
            None
        }
    }
}
