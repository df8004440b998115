//! The keys of a `websocket` check: the URL, headers and auth as an `http` check has them, the
//! `tls` table, the conversation's `steps` and `max_message_size`.

use std::ops::Range;

use bytes::Bytes;

use super::{DEFAULT_MAX_MESSAGE, Step, WebsocketSpec};
use crate::checks::http::config::read_headers;
use crate::checks::http::show_url;
use crate::checks::tcp::config::{Captures, send_template};
use crate::checks::tls::config::read_tls_options;
use crate::reader::{Diags, PLACEHOLDER_URL, SpecCx, Table, read_ip_preference};

/// The largest `max_message_size` accepted.
const MAX_MESSAGE_LIMIT: u64 = 64 * 1024 * 1024;

/// Headers the WebSocket handshake sets itself: a check may not set them.
const HANDSHAKE_HEADERS: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// Reads the keys of a `websocket` check (`spec::read_spec` dispatches here). Returns the
/// spec and the target as shown to humans (no credentials, no query string).
pub(crate) fn read(table: &Table<'_>, cx: &mut SpecCx<'_>) -> Option<(WebsocketSpec, String)> {
    let d = table.diags();
    let url = read_url(table, cx.secrets);
    let handshake_ok = refuse_handshake_headers(table);
    let (headers, headers_ok) = read_headers(table, cx.secrets);
    let ip = read_ip_preference(table);
    let tls = read_tls_options(table, vec![b"http/1.1".to_vec()], true);
    let steps = read_steps(table, cx);
    let max_message_size = match table.size("max_message_size") {
        None => Some(DEFAULT_MAX_MESSAGE),
        Some(size) if (1..=MAX_MESSAGE_LIMIT).contains(&size) => Some(size as usize),
        Some(_) => {
            let span = table.key_span("max_message_size").unwrap_or(table.span());
            d.error_hint(
                &span,
                "`max_message_size` must be between 1 byte and 64 MiB",
                "like max_message_size = \"1MiB\" (the default)",
            );
            None
        }
    };
    let (Some(url), true, true, Some(ip), Some(tls), Some(steps), Some(max_message_size)) = (
        url,
        handshake_ok,
        headers_ok,
        ip,
        tls,
        steps,
        max_message_size,
    ) else {
        return None;
    };
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return None,
    };
    let port = url
        .port_or_known_default()
        .unwrap_or(if url.scheme() == "wss" { 443 } else { 80 });
    let shown = show_url(&url);
    Some((
        WebsocketSpec {
            url,
            host,
            port,
            headers,
            ip,
            tls,
            steps,
            max_message_size,
        },
        shown,
    ))
}

/// `url`: required, `ws://` or `wss://` with a host, secrets substituted.
fn read_url(table: &Table<'_>, secrets: &mut Vec<String>) -> Option<url::Url> {
    let d = table.diags();
    let Some((text, span)) = table.str("url") else {
        table.missing(
            "url",
            "set the WebSocket URL, like url = \"wss://chat.example.com/socket\"",
        );
        return None;
    };
    let expanded = d.interpolate(text, &span)?;
    secrets.extend(expanded.secrets);
    // `validate --no-secrets` stands a whole-value reference in for an https URL.
    let value = if expanded.value == PLACEHOLDER_URL {
        PLACEHOLDER_URL.replacen("https", "wss", 1)
    } else {
        expanded.value
    };
    parse_url(d, &value, text, &span)
}

fn parse_url(
    d: &Diags<'_>,
    expanded: &str,
    template: &str,
    span: &Range<usize>,
) -> Option<url::Url> {
    // Messages show the template, never the expanded value: it may hold a secret.
    match url::Url::parse(expanded) {
        Ok(url) if matches!(url.scheme(), "ws" | "wss") && url.host().is_some() => Some(url),
        Ok(url) if matches!(url.scheme(), "ws" | "wss") => {
            d.error(span, format!("URL {template:?} has no host"));
            None
        }
        Ok(url) => {
            let hint = match url.scheme() {
                "http" => "websocket checks take ws:// or wss:// URLs: did you mean ws://?",
                "https" => "websocket checks take ws:// or wss:// URLs: did you mean wss://?",
                _ => "websocket checks take ws:// or wss:// URLs",
            };
            d.error_hint(
                span,
                format!("URL {template:?} has scheme {:?}", url.scheme()),
                hint,
            );
            None
        }
        Err(error) => {
            let hint = if !template.contains("://") {
                format!("did you mean \"wss://{template}\"?")
            } else {
                "write a full URL, like \"wss://chat.example.com/socket\"".to_string()
            };
            d.error_hint(span, format!("invalid URL {template:?}: {error}"), hint);
            None
        }
    }
}

/// Reports `headers` the handshake sets itself; whether there were none.
fn refuse_handshake_headers(table: &Table<'_>) -> bool {
    let mut ok = true;
    for entry in table.str_map("headers").unwrap_or_default() {
        let lower = entry.key.to_ascii_lowercase();
        if HANDSHAKE_HEADERS.contains(&lower.as_str()) {
            table.diags().error_hint(
                &entry.key_span,
                format!("header {:?} is set by the WebSocket handshake", entry.key),
                "remove it; ask for a subprotocol with the Sec-WebSocket-Protocol header",
            );
            ok = false;
        }
    }
    ok
}

/// `steps`: an array of tables, each with one of `send`, `send_hex` or `expect`.
fn read_steps(table: &Table<'_>, cx: &mut SpecCx<'_>) -> Option<Vec<Step>> {
    let d = table.diags();
    let mut ok = true;
    let mut steps = Vec::new();
    let mut captures = Captures::default();
    let items = table.array("steps").unwrap_or_default();
    for (idx, item) in items.into_iter().enumerate() {
        let what = format!("`steps[{idx}]` of {}", table.what());
        let Some(entry) = Table::new(d, item, what, table.items_section("steps")) else {
            ok = false;
            continue;
        };
        match read_step(&entry, &mut captures, cx) {
            Some(step) => {
                if let Step::Expect(regex) = &step {
                    captures.after_expect(regex.captures_len(), regex.capture_names());
                }
                steps.push(step);
            }
            None => ok = false,
        }
        entry.finish();
    }
    ok.then_some(steps)
}

fn read_step(entry: &Table<'_>, captures: &mut Captures, cx: &mut SpecCx<'_>) -> Option<Step> {
    let d = entry.diags();
    let send = entry.str("send");
    let send_hex = entry.str("send_hex");
    let expect = entry.str("expect");
    let set = [&send, &send_hex, &expect]
        .iter()
        .filter(|key| key.is_some())
        .count();
    if set != 1 {
        let hint = "write each step as { send = \"text\" }, { send_hex = \"0a0b\" } or { expect = 'regex' }";
        if set == 0 {
            d.error_hint(
                &entry.span(),
                format!(
                    "{} has none of `send`, `send_hex` and `expect`",
                    entry.what()
                ),
                hint,
            );
        } else {
            d.error_hint(
                &entry.span(),
                format!(
                    "{} sets more than one of `send`, `send_hex` and `expect`",
                    entry.what()
                ),
                hint,
            );
        }
        return None;
    }
    if let Some((text, span)) = send {
        return send_template(d, text, &span, captures, cx).map(Step::Text);
    }
    if let Some((hex, span)) = send_hex {
        return match parse_hex(hex) {
            Ok(bytes) => Some(Step::Binary(Bytes::from(bytes))),
            Err(message) => {
                d.error_hint(
                    &span,
                    format!("`send_hex` {hex:?}: {message}"),
                    "write the bytes as hex digit pairs, spaces allowed between them, like \"81 0a ff\"",
                );
                None
            }
        };
    }
    let (pattern, span) = expect?;
    match crate::reader::compile_regex(pattern) {
        Ok(regex) => Some(Step::Expect(regex)),
        Err(message) => {
            d.error(&span, format!("invalid regex in `expect`: {message}"));
            None
        }
    }
}

/// Hex digit pairs, with whitespace allowed between pairs.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for word in text.split_whitespace() {
        if !word.len().is_multiple_of(2) {
            return Err(format!("{word:?} has an odd number of digits"));
        }
        if let Some(bad) = word.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!("{bad:?} is not a hex digit"));
        }
        for pair in word.as_bytes().chunks(2) {
            let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            bytes.push(digit(pair[0]) << 4 | digit(pair[1]));
        }
    }
    if bytes.is_empty() {
        return Err("no bytes".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_hex;

    #[test]
    fn hex_pairs_with_spaces_between() {
        assert_eq!(parse_hex("81 0aFF").unwrap(), vec![0x81, 0x0a, 0xff]);
        assert!(parse_hex("abc").unwrap_err().contains("odd number"));
        assert!(parse_hex("+f").unwrap_err().contains("not a hex digit"));
        assert!(parse_hex("  ").is_err());
    }
}
