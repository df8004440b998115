//! The keys of a `tcp` check: the target, the `send`/`expect.matches` shorthand or a
//! conversation of `steps`, and TLS (from the first byte, or at a `starttls` step).

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::PathBuf;

use rustls::pki_types::ServerName;

use super::{Action, SendPart, Step, TcpSpec, TcpTls};
use crate::checks::http::TlsOptions;
use crate::checks::tls::config::{read_tls_options, shared_default};
use crate::checks::tls::{TlsExpect, TlsVersion};
use crate::net::HostPort;
use crate::reader::{Diags, Piece, SpecCx, Table, Value, read_ip_preference};

/// The regex size limit of a step's `expect`, as for every other regex of the configuration.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Reads the keys of a `tcp` check (`spec::read_spec` dispatches
/// here). Returns the spec and the target as shown to humans.
pub(crate) fn read(table: &Table<'_>, cx: &mut SpecCx<'_>) -> Option<(TcpSpec, String)> {
    let target = read_target(table);
    let unix_clash = target
        .as_ref()
        .is_some_and(|target| matches!(target, Target::Unix(_)) && !unix_fits(table));
    let ip = read_ip_preference(table);
    let send = table
        .str("send")
        .map(|(text, span)| (text.as_bytes().to_vec(), span));
    let expect = read_expect(table);
    let steps = read_steps(table, cx);
    let tls = read_tls(table);
    let (Some(target), Some(ip), Some(expect), Some(steps), Some(tls), false) =
        (target, ip, expect, steps, tls, unix_clash)
    else {
        return None;
    };
    let d = table.diags();
    let shorthand = send.is_some() || !expect.matches.is_empty();
    let (steps, shorthand) = match steps {
        Some((_, span)) if shorthand => {
            d.error_hint(
                &span,
                "`steps` and the `send`/`expect.matches` shorthand are both set",
                "move the send and the patterns into steps, like steps = [ { send = \"PING\\r\\n\" }, { expect = '^\\+PONG' } ]",
            );
            return None;
        }
        Some((steps, _)) => (steps, false),
        None if shorthand => {
            let mut actions: Vec<Action> = send
                .map(|(bytes, _)| Action::Send(vec![SendPart::Bytes(bytes)]))
                .into_iter()
                .collect();
            if !expect.matches.is_empty() {
                actions.push(Action::MatchAll(expect.matches.clone()));
            }
            (vec![Step { actions }], true)
        }
        None => (Vec::new(), false),
    };
    let starttls = steps
        .iter()
        .any(|step| step.actions.iter().any(|a| matches!(a, Action::StartTls)));
    let tls = match tls {
        TlsKey::Off if starttls => Some((default_tls(table)?, false)),
        TlsKey::Off => None,
        TlsKey::On(options) => Some((options, !starttls)),
    };
    let tls = match tls {
        Some((options, from_start)) => {
            Some(tls_spec(table, &target, options, from_start, &expect)?)
        }
        None => {
            if let Some(span) = expect.tls_span {
                d.error_hint(
                    &span,
                    "`expect.min_days_left` and `expect.min_version` judge a TLS session, and this check speaks none",
                    "set tls = true (TLS from the first byte) or add a { starttls = true } step",
                );
                return None;
            }
            None
        }
    };
    let shown = target.to_string();
    let (host, port, unix) = match target {
        Target::Inet(target) => (target.host, target.port, None),
        Target::Unix(path) => (String::new(), 0, Some(path)),
    };
    Some((
        TcpSpec {
            host,
            port,
            target: shown.clone(),
            ip,
            steps,
            shorthand,
            tls,
            unix,
        },
        shown,
    ))
}

/// What a `tcp` check connects to: `HOST:PORT`, or `unix:PATH`.
enum Target {
    Inet(HostPort),
    Unix(PathBuf),
}

impl Target {
    /// The host a TLS server name defaults to (a Unix socket has none).
    fn host(&self) -> &str {
        match self {
            Target::Inet(target) => &target.host,
            Target::Unix(_) => "",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Inet(target) => target.fmt(f),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const MAX_UNIX_PATH: usize = 107;

/// The keys that only mean something over IP are absent from a check on a Unix socket
/// (each one present is reported).
fn unix_fits(table: &Table<'_>) -> bool {
    let mut fits = true;
    for key in ["ip_protocol", "ip_protocol_fallback", "source_ip"] {
        if let Some(span) = table.key_span(key) {
            table.diags().error_hint(
                &span,
                format!("`{key}` does not apply to a Unix socket"),
                format!("remove {key}, or connect over TCP with target = \"HOST:PORT\""),
            );
            fits = false;
        }
    }
    fits
}

/// `unix:PATH`: an absolute path that fits a socket address.
fn unix_target(table: &Table<'_>, text: &str, path: &str, span: &Range<usize>) -> Option<Target> {
    let d = table.diags();
    if !path.starts_with('/') {
        d.error_hint(
            span,
            format!("target {text:?} is not an absolute path"),
            "write the socket's full path, like target = \"unix:/run/app.sock\"",
        );
        return None;
    }
    if path.len() > MAX_UNIX_PATH {
        d.error_hint(
            span,
            format!(
                "the path of target {text:?} is {} bytes, longer than a Unix socket address holds ({MAX_UNIX_PATH})",
                path.len()
            ),
            "use a shorter path, or a symbolic link to the socket's directory",
        );
        return None;
    }
    Some(Target::Unix(PathBuf::from(path)))
}

fn read_target(table: &Table<'_>) -> Option<Target> {
    match table.str("target") {
        Some((text, span)) if text.starts_with("unix:") => {
            unix_target(table, text, &text["unix:".len()..], &span)
        }
        Some((text, span)) => match HostPort::parse(text, 0) {
            Some(target) if target.port != 0 => Some(Target::Inet(target)),
            _ => {
                table.diags().error_hint(
                    &span,
                    format!("target {text:?} is not HOST:PORT"),
                    "write it like \"db.example.com:5432\", \"[2001:db8::1]:6379\" or \"unix:/run/app.sock\"",
                );
                None
            }
        },
        None => {
            table.missing(
                "target",
                "set the endpoint to connect to, like target = \"db.example.com:5432\"",
            );
            None
        }
    }
}

/// The `expect` table: the shorthand's `matches`, and what a TLS session must satisfy.
struct Expect {
    matches: Vec<regex::Regex>,
    min_days_left: Option<f64>,
    min_version: Option<TlsVersion>,
    /// Where a TLS expectation is written, for the error when the check speaks no TLS.
    tls_span: Option<Range<usize>>,
}

fn read_expect(table: &Table<'_>) -> Option<Expect> {
    let Some(expect) = table.table("expect", format!("`expect` of {}", table.what())) else {
        return Some(Expect {
            matches: Vec::new(),
            min_days_left: None,
            min_version: None,
            tls_span: None,
        });
    };
    let matches = expect.regex_list("matches");
    let min_days_left = expect.days("min_days_left");
    let mut ok = true;
    let min_version = match expect.str("min_version") {
        None => None,
        Some(("1.2", _)) => Some(TlsVersion::Tls12),
        Some(("1.3", _)) => Some(TlsVersion::Tls13),
        Some((other, span)) => {
            expect.diags().error_hint(
                &span,
                format!("unknown min_version {other:?}"),
                "use \"1.2\" or \"1.3\"",
            );
            ok = false;
            None
        }
    };
    let tls_span = expect
        .key_span("min_days_left")
        .or_else(|| expect.key_span("min_version"));
    expect.finish();
    ok.then_some(Expect {
        matches,
        min_days_left,
        min_version,
        tls_span,
    })
}

/// What the `tls` key says: no TLS options (`false` or absent), or TLS with these options
/// (`true`, or a table of them).
enum TlsKey {
    Off,
    On(TlsOptions),
}

fn read_tls(table: &Table<'_>) -> Option<TlsKey> {
    match table.get("tls").map(|value| value.get_ref()) {
        None | Some(toml::de::DeValue::Boolean(false)) => Some(TlsKey::Off),
        Some(toml::de::DeValue::Boolean(true)) => default_tls(table).map(TlsKey::On),
        Some(_) => read_tls_options(table, Vec::new(), true).map(TlsKey::On),
    }
}

/// Bundled roots, no client certificate: shared by every check without a `tls` table.
fn default_tls(table: &Table<'_>) -> Option<TlsOptions> {
    match shared_default(Vec::new()) {
        Ok((client, verifier)) => Some(TlsOptions::verified(client, verifier)),
        Err(message) => {
            table.diags().error(&table.span(), message);
            None
        }
    }
}

fn tls_spec(
    table: &Table<'_>,
    target: &Target,
    options: TlsOptions,
    from_start: bool,
    expect: &Expect,
) -> Option<TcpTls> {
    let server_name = match &options.server_name {
        Some(name) => name.clone(),
        None => match ServerName::try_from(target.host().to_string()) {
            Ok(name) => name,
            Err(_) => {
                let span = table.key_span("target").unwrap_or_else(|| table.span());
                let problem = match target {
                    Target::Inet(target) => {
                        format!("{:?} is not a valid TLS server name", target.host)
                    }
                    Target::Unix(_) => {
                        "a Unix socket has no host name to verify its certificate against"
                            .to_string()
                    }
                };
                table
                    .diags()
                    .error_hint(&span, problem, "set tls = { server_name = \"...\" }");
                return None;
            }
        },
    };
    let verify = !options.insecure_skip_verify;
    Some(TcpTls {
        options: TlsOptions {
            server_name: Some(server_name),
            ..options
        },
        from_start,
        expect: TlsExpect {
            min_days_left: expect.min_days_left,
            chain_valid: verify,
            hostname_match: verify,
            min_version: expect.min_version,
        },
    })
}

/// What the steps read so far make available to a later `send` (shared with the `websocket`
/// reader, whose sends fill in captures the same way).
#[derive(Default)]
pub(crate) struct Captures {
    /// Groups of the latest `expect` (the whole match is group 0); `None` before any.
    numbered: Option<usize>,
    /// Named groups of every `expect` so far.
    named: BTreeSet<String>,
}

impl Captures {
    /// After an `expect` whose regex has `captures_len` groups (the whole match included) and
    /// these group names: its groups are the numbered ones, its named ones join.
    pub(crate) fn after_expect<'r>(
        &mut self,
        captures_len: usize,
        names: impl Iterator<Item = Option<&'r str>>,
    ) {
        self.numbered = Some(captures_len - 1);
        self.named.extend(names.flatten().map(str::to_string));
    }
}

/// `steps`: `None` on a problem; `Some(None)` when not set.
#[allow(clippy::option_option)]
fn read_steps(table: &Table<'_>, cx: &mut SpecCx<'_>) -> Option<Option<(Vec<Step>, Range<usize>)>> {
    let Some(value) = table.get("steps") else {
        return Some(None);
    };
    let items = table.array("steps")?;
    let d = table.diags();
    if items.is_empty() {
        d.error_hint(
            &value.span(),
            "`steps` is empty",
            "add steps like { expect = '^\\+OK' }, or remove `steps` for a plain connect",
        );
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut captures = Captures::default();
    let mut starttls_at: Option<usize> = None;
    let mut ok = true;
    for (idx, item) in items.into_iter().enumerate() {
        let what = format!("step {} of {}", idx + 1, table.what());
        let Some(step_table) = Table::new(d, item, what, table.items_section("steps")) else {
            ok = false;
            continue;
        };
        match read_step(&step_table, item, &mut captures, cx) {
            Some(step) => {
                if step.actions.iter().any(|a| matches!(a, Action::StartTls)) {
                    if let Some(first) = starttls_at {
                        d.error_hint(
                            &item.span(),
                            format!("a second `starttls` (step {first} already starts TLS)"),
                            "a conversation upgrades to TLS once",
                        );
                        ok = false;
                    }
                    starttls_at = Some(idx + 1);
                }
                steps.push(step);
            }
            None => ok = false,
        }
        step_table.finish();
    }
    ok.then_some(Some((steps, value.span())))
}

/// One step: its actions in the order they run (read, then write, then TLS).
fn read_step(
    step: &Table<'_>,
    item: &Value<'_>,
    captures: &mut Captures,
    cx: &mut SpecCx<'_>,
) -> Option<Step> {
    let d = step.diags();
    let mut actions = Vec::new();
    let mut ok = true;
    let expect = step.str("expect");
    let expect_bytes = step.str("expect_bytes");
    let expect_hex = step.str("expect_hex");
    let reads = [&expect, &expect_bytes, &expect_hex];
    if reads.iter().filter(|key| key.is_some()).count() > 1 {
        d.error_hint(
            &item.span(),
            "a step reads one way: `expect`, `expect_bytes` or `expect_hex`",
            "split it into two steps",
        );
        ok = false;
    }
    let fail_if = match step.str("fail_if") {
        Some((pattern, span)) => match compile_line_regex(pattern) {
            Ok(regex) if expect.is_some() => Some(regex),
            Ok(_) => {
                d.error_hint(
                    &span,
                    "`fail_if` goes with an `expect`",
                    "fail_if names the refusals among the lines an expect reads, like { expect = '^a OK', fail_if = '^a (NO|BAD)' }",
                );
                ok = false;
                None
            }
            Err(message) => {
                d.error(&span, format!("invalid regex in `fail_if`: {message}"));
                ok = false;
                None
            }
        },
        None => None,
    };
    if let Some((pattern, span)) = expect {
        match compile_line_regex(pattern) {
            Ok(regex) => {
                captures.after_expect(regex.captures_len(), regex.capture_names());
                actions.push(Action::Expect { regex, fail_if });
            }
            Err(message) => {
                d.error(&span, format!("invalid regex in `expect`: {message}"));
                ok = false;
            }
        }
    }
    if let Some((text, span)) = expect_bytes {
        if text.is_empty() {
            d.error(&span, "`expect_bytes` is empty");
            ok = false;
        }
        actions.push(Action::ExpectBytes(text.as_bytes().to_vec()));
    }
    if let Some((text, span)) = expect_hex {
        match parse_hex(text) {
            Some(bytes) => actions.push(Action::ExpectBytes(bytes)),
            None => {
                hex_error(d, &span, "expect_hex", text);
                ok = false;
            }
        }
    }
    ok &= read_send(step, item, captures, cx, &mut actions);
    if step.bool("starttls") == Some(true) {
        actions.push(Action::StartTls);
    }
    if actions.is_empty() && ok {
        d.error_hint(
            &item.span(),
            "a step does nothing",
            "give it `expect`, `expect_bytes`, `expect_hex`, `send`, `send_hex` or `starttls = true`",
        );
        ok = false;
    }
    ok.then_some(Step { actions })
}

/// `send` (text with `${1}`, `${name}`, `${env:..}` and `${file:..}`) or `send_hex`; false on
/// a problem (reported).
fn read_send(
    step: &Table<'_>,
    item: &Value<'_>,
    captures: &Captures,
    cx: &mut SpecCx<'_>,
    actions: &mut Vec<Action>,
) -> bool {
    let d = step.diags();
    match (step.str("send"), step.str("send_hex")) {
        (Some(_), Some(_)) => {
            d.error_hint(
                &item.span(),
                "a step sends one way: `send` or `send_hex`",
                "split it into two steps",
            );
            false
        }
        (Some((text, span)), None) => match send_template(d, text, &span, captures, cx) {
            Some(parts) => {
                actions.push(Action::Send(parts));
                true
            }
            None => false,
        },
        (None, Some((text, span))) => match parse_hex(text) {
            Some(bytes) => {
                actions.push(Action::Send(vec![SendPart::Bytes(bytes)]));
                true
            }
            None => {
                hex_error(d, &span, "send_hex", text);
                false
            }
        },
        (None, None) => true,
    }
}

/// Splits a `send` into literal bytes (secrets resolved now and remembered for redaction)
/// and capture references filled in at run time.
pub(crate) fn send_template(
    d: &Diags<'_>,
    text: &str,
    span: &Range<usize>,
    captures: &Captures,
    cx: &mut SpecCx<'_>,
) -> Option<Vec<SendPart>> {
    let mut parts: Vec<SendPart> = Vec::new();
    let mut ok = true;
    for piece in d.pieces(text, span)? {
        let part = match piece {
            Piece::Text(literal) => SendPart::Bytes(literal.into_bytes()),
            Piece::Ref(reference) => match capture_part(d, &reference, span, captures, cx) {
                Some(part) => part,
                None => {
                    ok = false;
                    continue;
                }
            },
        };
        match (parts.last_mut(), part) {
            (Some(SendPart::Bytes(before)), SendPart::Bytes(more)) => before.extend(more),
            (_, part) => parts.push(part),
        }
    }
    ok.then_some(parts)
}

/// `${env:..}`/`${file:..}` (resolved now, kept as a secret), `${N}` (a group of the latest
/// `expect`) or `${name}` (a named group of an earlier `expect`).
fn capture_part(
    d: &Diags<'_>,
    reference: &str,
    span: &Range<usize>,
    captures: &Captures,
    cx: &mut SpecCx<'_>,
) -> Option<SendPart> {
    if let Some(value) = d.secret(reference, span)? {
        if !value.is_empty() {
            cx.secrets.push(value.clone());
        }
        return Some(SendPart::Bytes(value.into_bytes()));
    }
    if let Ok(group) = reference.parse::<usize>() {
        return match captures.numbered {
            Some(groups) if group <= groups => Some(SendPart::Group(group)),
            Some(groups) => {
                d.error_hint(
                    span,
                    format!("${{{group}}}: the latest `expect` has {groups} capture group(s)"),
                    "number the groups of the latest expect from 1 (${0} is the whole match)",
                );
                None
            }
            None => {
                d.error_hint(
                    span,
                    format!("${{{group}}} refers to a capture group, and no earlier step has an `expect`"),
                    "capture in an earlier step, like { expect = '^\\+OK (\\S+)' }",
                );
                None
            }
        };
    }
    if captures.named.contains(reference) {
        return Some(SendPart::Named(reference.to_string()));
    }
    let known = if captures.named.is_empty() {
        "no earlier `expect` has a named group like (?P<name>...)".to_string()
    } else {
        let names: Vec<&str> = captures.named.iter().map(String::as_str).collect();
        format!("earlier steps capture: {}", names.join(", "))
    };
    d.error_hint(
        span,
        format!("unknown reference ${{{reference}}}"),
        format!("use ${{1}}, ${{name}}, ${{env:NAME}} or ${{file:PATH}}; {known}; write $${{ for a literal ${{"),
    );
    None
}

/// A step's `expect`: matched against one line at a time (without its line ending).
fn compile_line_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| {
            error
                .to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string()
        })
}

/// Hex digits in pairs, with optional spaces between bytes: `"00 00 00 08 04d2162f"`.
fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

fn hex_error(d: &Diags<'_>, span: &Range<usize>, key: &str, text: &str) {
    d.error_hint(
        span,
        format!("`{key}` {text:?} is not hex bytes"),
        "write pairs of hex digits, spaces allowed, like \"00 00 00 08 04 d2 16 2f\"",
    );
}

#[cfg(test)]
mod tests {
    use super::parse_hex;

    #[test]
    fn hex_bytes_allow_spaces_and_refuse_odd_digits() {
        assert_eq!(
            parse_hex("00 00 00 08 04d2 162f"),
            Some(vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
        );
        assert_eq!(parse_hex("0"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), None);
    }
}
