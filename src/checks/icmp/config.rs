//! The keys of an `icmp` check.

use std::net::IpAddr;
use std::time::Duration;

use super::IcmpSpec;
use crate::reader::{SpecCx, Table, read_ip_preference};

/// Requests per run unless `count` says otherwise.
pub const DEFAULT_COUNT: u16 = 3;
/// The most requests a run may send.
pub const MAX_COUNT: i64 = 1000;
/// Time between requests unless `packet_interval` says otherwise (ping's spacing).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes after the ICMP header unless `payload_size` says otherwise (ping's 56, a 64-byte
/// ICMP message).
pub const DEFAULT_PAYLOAD: usize = 56;
/// The largest payload: an IPv4 datagram of 65 535 bytes less its headers.
pub const MAX_PAYLOAD: i64 = 65_507;

/// Reads the keys of an `icmp` check. Returns the spec and the target as shown.
pub(crate) fn read(table: &Table<'_>, cx: &mut SpecCx<'_>) -> Option<(IcmpSpec, String)> {
    let d = table.diags();
    let host = read_target(table);
    let ip = read_ip_preference(table);
    let count =
        bounded(table, "count", 1, MAX_COUNT, "like count = 5").map_or(DEFAULT_COUNT, |n| n as u16);
    let interval = table
        .duration("packet_interval")
        .map_or(DEFAULT_INTERVAL, |(interval, _)| interval);
    let payload_size = bounded(
        table,
        "payload_size",
        0,
        MAX_PAYLOAD,
        "like payload_size = 56",
    )
    .map_or(DEFAULT_PAYLOAD, |n| n as usize);
    let ttl = bounded(table, "ttl", 1, 255, "like ttl = 64").map(|n| n as u8);
    let dont_fragment = table.bool("dont_fragment").unwrap_or(false);
    let max_loss = read_max_loss(table);
    let max_rtt = table.duration("max_rtt").map(|(max, _)| max);
    // The last request leaves (count - 1) intervals after the first; its reply needs time too.
    let sending = interval * u32::from(count.saturating_sub(1));
    if sending >= cx.timeout {
        let span = table
            .key_span("packet_interval")
            .or_else(|| table.key_span("count"))
            .unwrap_or_else(|| table.span());
        d.error_hint(
            &span,
            format!(
                "{count} echo requests {} apart take {} to send, not less than the timeout {} of {}",
                humantime::format_duration(interval),
                humantime::format_duration(sending),
                humantime::format_duration(cx.timeout),
                table.what()
            ),
            "lower count or packet_interval, or raise timeout, so the last reply has time to come",
        );
        return None;
    }
    let host = host?;
    let shown = host.clone();
    Some((
        IcmpSpec {
            host,
            ip: ip?,
            count,
            interval,
            payload_size,
            ttl,
            dont_fragment,
            max_loss: max_loss?,
            max_rtt,
        },
        shown,
    ))
}

/// `target`: a host name or an IP address (no port, no brackets).
fn read_target(table: &Table<'_>) -> Option<String> {
    let Some((text, span)) = table.str("target") else {
        table.missing(
            "target",
            "set the host to ping, like target = \"gateway.example.com\" or \"2001:db8::1\"",
        );
        return None;
    };
    if text.parse::<IpAddr>().is_ok() {
        return Some(text.to_string());
    }
    let valid = !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if valid {
        return Some(text.to_ascii_lowercase());
    }
    table.diags().error_hint(
        &span,
        format!("target {text:?} is not a host name or IP address"),
        "write the host alone, without a port or scheme, like \"gateway.example.com\" or \"192.0.2.1\"",
    );
    None
}

/// An integer key within `min..=max`, reported at its place otherwise.
pub(crate) fn bounded(
    table: &Table<'_>,
    key: &'static str,
    min: i64,
    max: i64,
    example: &str,
) -> Option<i64> {
    let (n, span) = table.int(key)?;
    if (min..=max).contains(&n) {
        return Some(n);
    }
    table.diags().error_hint(
        &span,
        format!(
            "`{key}` in {} must be from {min} to {max}, found {n}",
            table.what()
        ),
        example.to_string(),
    );
    None
}

/// `max_loss`: a ratio from 0 up to (not including) 1; 0 when absent.
fn read_max_loss(table: &Table<'_>) -> Option<f64> {
    let Some(value) = table.get("max_loss") else {
        return Some(0.0);
    };
    let ratio = match value.get_ref() {
        toml::de::DeValue::Integer(_) => crate::reader::as_int(value.get_ref()).map(|n| n as f64),
        toml::de::DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        _ => None,
    };
    match ratio {
        Some(ratio) if (0.0..1.0).contains(&ratio) => Some(ratio),
        _ => {
            table.diags().error_hint(
                &value.span(),
                format!(
                    "`max_loss` in {} must be a ratio from 0 up to 1 (not 1)",
                    table.what()
                ),
                "like max_loss = 0.2 to pass with one request in five lost; 100% loss always fails",
            );
            None
        }
    }
}
