//! The keys of a `udp` check.

use super::UdpSpec;
use crate::checks::icmp::config::bounded;
use crate::net::HostPort;
use crate::reader::{SpecCx, Table, read_ip_preference};

/// Datagrams sent per run unless `count` says otherwise.
pub const DEFAULT_COUNT: u16 = 3;

/// Reads the keys of a `udp` check. Returns the spec and the target as shown.
pub(crate) fn read(table: &Table<'_>, cx: &mut SpecCx<'_>) -> Option<(UdpSpec, String)> {
    let d = table.diags();
    let target = match table.str("target") {
        Some((text, span)) => match HostPort::parse(text, 0) {
            Some(target) if target.port != 0 => Some(target),
            _ => {
                d.error_hint(
                    &span,
                    format!("target {text:?} is not HOST:PORT"),
                    "write it like \"ntp.example.com:123\" or \"[2001:db8::1]:53\"",
                );
                None
            }
        },
        None => {
            table.missing(
                "target",
                "set the endpoint to send to, like target = \"ntp.example.com:123\"",
            );
            None
        }
    };
    let ip = read_ip_preference(table);
    let send = read_send(table);
    let expect = table.regex_list("expect");
    let expect_prefix = match table.str("expect_hex") {
        Some((text, span)) => hex(table, text, &span, "expect_hex"),
        None => Some(Vec::new()),
    };
    let count =
        bounded(table, "count", 1, 100, "like count = 3").map_or(DEFAULT_COUNT, |n| n as u16);
    let reply_timeout = match table.duration("reply_timeout") {
        Some((wait, span)) => {
            if wait > cx.timeout {
                d.error_hint(
                    &span,
                    format!(
                        "reply_timeout {} is longer than the timeout {} of {}",
                        humantime::format_duration(wait),
                        humantime::format_duration(cx.timeout),
                        table.what()
                    ),
                    "the run ends at its timeout; lower reply_timeout or raise timeout",
                );
            }
            wait
        }
        None => cx.timeout / u32::from(count),
    };
    let (target, ip, send, expect_prefix) = (target?, ip?, send?, expect_prefix?);
    let shown = target.to_string();
    Some((
        UdpSpec {
            host: target.host,
            port: target.port,
            target: shown.clone(),
            ip,
            send,
            expect,
            expect_prefix,
            count,
            reply_timeout,
        },
        shown,
    ))
}

/// `send` (text) or `send_hex` (bytes), exactly one.
fn read_send(table: &Table<'_>) -> Option<Vec<u8>> {
    let text = table.str("send");
    let hex_text = table.str("send_hex");
    match (text, hex_text) {
        (Some((text, _)), None) => Some(text.as_bytes().to_vec()),
        (None, Some((text, span))) => hex(table, text, &span, "send_hex"),
        (Some(_), Some((_, span))) => {
            table.diags().error_hint(
                &span,
                format!("{} sets both `send` and `send_hex`", table.what()),
                "keep one: `send` for text, `send_hex` for bytes",
            );
            None
        }
        (None, None) => {
            let both_absent =
                table.key_span("send").is_none() && table.key_span("send_hex").is_none();
            if both_absent {
                table.diags().error_hint(
                    &table.span(),
                    format!("{} is missing the datagram to send", table.what()),
                    "set send = \"text\" or send_hex = \"1b0000...\" (a UDP service answers only what it is sent)",
                );
            }
            None
        }
    }
}

/// Hex digits (spaces and colons allowed between bytes) as bytes, reported at `span`.
fn hex(table: &Table<'_>, text: &str, span: &std::ops::Range<usize>, key: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|byte| !matches!(byte, b' ' | b':' | b'\t' | b'\n'))
        .collect();
    let decoded: Option<Vec<u8>> = digits
        .len()
        .is_multiple_of(2)
        .then(|| {
            digits
                .chunks(2)
                .map(|pair| {
                    let text = std::str::from_utf8(pair).ok()?;
                    u8::from_str_radix(text, 16).ok()
                })
                .collect()
        })
        .flatten();
    match decoded {
        Some(bytes) if !bytes.is_empty() => Some(bytes),
        _ => {
            table.diags().error_hint(
                span,
                format!("`{key}` in {}: {text:?} is not hex bytes", table.what()),
                "write pairs of hex digits, spaces allowed between bytes, like \"1b 00 00 00\"",
            );
            None
        }
    }
}
