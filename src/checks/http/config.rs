//! Reading and validating the keys of an `http` check, including its TLS files.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use toml::de::DeValue;

use super::{
    HttpExpect, HttpOptions, HttpSpec, HttpVersionPref, JsonExpect, JsonTest, StatusMatch,
    TlsOptions, show_url,
};
use crate::net::IpPreference;
use crate::reader::{
    Diags, Table, as_int, header_name, header_value, read_ip_preference, type_name,
};

const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: i64 = 10;

/// The keys of a `http` check: its spec and target (`spec::read_spec` dispatches here).
pub(crate) fn read(
    table: &Table<'_>,
    cx: &mut crate::reader::SpecCx<'_>,
) -> Option<(HttpSpec, String)> {
    read_http(table, cx.secrets)
}

/// Reads the `http`-specific keys of a check table. Returns the spec and the target as shown
/// to humans (no credentials, no query string).
pub(crate) fn read_http(
    table: &Table<'_>,
    secrets: &mut Vec<String>,
) -> Option<(HttpSpec, String)> {
    let d = table.diags();
    let mut ok = true;

    let url = match table.str("url") {
        Some((text, span)) => match d.interpolate(text, &span) {
            Some(expanded) => {
                secrets.extend(expanded.secrets);
                parse_url(d, &expanded.value, text, &span)
            }
            None => None,
        },
        None => {
            table.missing(
                "url",
                "set the URL to request, like url = \"https://example.com/\"",
            );
            None
        }
    };

    let (mut headers, headers_ok) = read_headers(table, secrets);
    ok &= headers_ok;

    let body = match table.str("body") {
        Some((text, span)) => match d.interpolate(text, &span) {
            Some(expanded) => {
                secrets.extend(expanded.secrets);
                Some(Bytes::from(expanded.value))
            }
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let body = match read_body_file(table, body.is_some()) {
        Some(Some(file)) => Some(file),
        Some(None) => body,
        None => {
            ok = false;
            None
        }
    };

    let options = read_request_options(table);
    let compression = read_compression(table, &mut headers);
    let proxy = super::proxy::config::read(table, secrets);
    let oauth2 = super::oauth2::config::read(table, secrets);

    let (Some(url), Some(options), Some(compression), Ok(proxy), Ok(oauth2), true) =
        (url, options, compression, proxy, oauth2, ok)
    else {
        return None;
    };
    let target = show_url(&url);
    Some((
        HttpSpec::new(
            url,
            HttpOptions {
                method: options.method,
                headers,
                body,
                follow_redirects: options.follow_redirects,
                max_redirects: options.max_redirects,
                ip: options.ip,
                version: options.version,
                tls: options.tls,
                max_body: options.max_body,
                expect: options.expect,
                compression,
                proxy,
                oauth2,
            },
        ),
        target,
    ))
}

/// `headers`, `basic_auth` and `bearer_token` of a request, with secrets substituted.
/// Returns the headers and whether all of them were valid.
pub(crate) fn read_headers(
    table: &Table<'_>,
    secrets: &mut Vec<String>,
) -> (Vec<(HeaderName, HeaderValue)>, bool) {
    let d = table.diags();
    let mut ok = true;
    let mut headers = Vec::new();
    if let Some(entries) = table.str_map("headers") {
        for entry in entries {
            let Some(name) = header_name(d, entry.key, &entry.key_span) else {
                ok = false;
                continue;
            };
            match header_value(d, &entry, "header", secrets) {
                Some(value) => headers.push((name, value)),
                None => ok = false,
            }
        }
    }

    if let Some(auth) = table.table("basic_auth", format!("`basic_auth` of {}", table.what())) {
        let username = auth.str("username");
        let password = auth.str("password");
        match (username, password) {
            (Some((user, user_span)), Some((password, password_span))) => {
                let user = d.interpolate(user, &user_span);
                let password = d.interpolate(password, &password_span);
                if let (Some(user), Some(password)) = (user, password) {
                    let value = super::basic_auth(&user.value, &password.value);
                    secrets.extend(user.secrets);
                    secrets.extend(password.secrets);
                    secrets.push(value.clone());
                    let mut value =
                        HeaderValue::from_str(&value).expect("base64 is a valid header value");
                    value.set_sensitive(true);
                    headers.push((http::header::AUTHORIZATION, value));
                } else {
                    ok = false;
                }
            }
            _ => {
                auth.missing(
                    "username` and `password",
                    "basic_auth = { username = \"probe\", password = \"${env:PROBE_PASSWORD}\" }",
                );
                ok = false;
            }
        }
        auth.finish();
    }

    if let Some((token, span)) = table.str("bearer_token") {
        match d.interpolate(token, &span) {
            Some(expanded) => {
                let value = format!("Bearer {}", expanded.value);
                secrets.extend(expanded.secrets);
                secrets.push(value.clone());
                match HeaderValue::from_str(&value) {
                    Ok(mut value) => {
                        value.set_sensitive(true);
                        headers.push((http::header::AUTHORIZATION, value));
                    }
                    Err(_) => {
                        d.error(&span, "the bearer token is not a valid header value");
                        ok = false;
                    }
                }
            }
            None => ok = false,
        }
    }

    (headers, ok)
}

/// What an HTTP request can set besides its URL, headers and body, and what it expects:
/// shared by `http` checks and `flow` steps.
pub(crate) struct RequestOptions {
    pub method: Method,
    pub follow_redirects: bool,
    pub max_redirects: u32,
    pub ip: IpPreference,
    pub version: HttpVersionPref,
    pub max_body: u64,
    pub tls: TlsOptions,
    pub expect: HttpExpect,
}

pub(crate) fn read_request_options(table: &Table<'_>) -> Option<RequestOptions> {
    let d = table.diags();
    let mut ok = true;
    let method = match table.str("method") {
        Some((text, span)) => match Method::from_bytes(text.to_ascii_uppercase().as_bytes()) {
            Ok(method) => method,
            Err(_) => {
                d.error(&span, format!("{text:?} is not an HTTP method"));
                ok = false;
                Method::GET
            }
        },
        None => Method::GET,
    };
    let follow_redirects = table.bool("follow_redirects").unwrap_or(true);
    let max_redirects = match table.int("max_redirects") {
        Some((n, _)) if (0..=100).contains(&n) => n as u32,
        Some((n, span)) => {
            d.error(
                &span,
                format!("`max_redirects` must be between 0 and 100, found {n}"),
            );
            ok = false;
            0
        }
        None => DEFAULT_MAX_REDIRECTS as u32,
    };
    let ip = read_ip_preference(table);
    let version = match table.str("http_version") {
        Some(("auto", _)) | None => HttpVersionPref::Auto,
        Some(("1.1", _)) => HttpVersionPref::Http1,
        Some(("2", _)) => HttpVersionPref::Http2,
        Some((other, span)) => {
            d.error_hint(
                &span,
                format!("unknown http_version {other:?}"),
                "use \"auto\", \"1.1\" or \"2\"",
            );
            ok = false;
            HttpVersionPref::Auto
        }
    };
    let max_body = table.size("max_body").unwrap_or(DEFAULT_MAX_BODY);
    let alpn: Vec<Vec<u8>> = match version {
        HttpVersionPref::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpVersionPref::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersionPref::Http2 => vec![b"h2".to_vec()],
    };
    let tls = crate::checks::tls::config::read_tls_options(table, alpn, true);
    let expect = read_expect(table);
    let (Some(ip), Some(tls), Some(expect), true) = (ip, tls, expect, ok) else {
        return None;
    };
    Some(RequestOptions {
        method,
        follow_redirects,
        max_redirects,
        ip,
        version,
        max_body,
        tls,
        expect,
    })
}

fn parse_url(
    d: &Diags<'_>,
    expanded: &str,
    template: &str,
    span: &Range<usize>,
) -> Option<url::Url> {
    // Error messages show the template, never the expanded value: it may hold a secret.
    match url::Url::parse(expanded) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            d.error_hint(
                span,
                format!("URL {template:?} has scheme {:?}", url.scheme()),
                "http checks take http:// or https:// URLs",
            );
            None
        }
        Ok(_) => {
            d.error(span, format!("URL {template:?} has no host"));
            None
        }
        Err(error) => {
            let hint = if !template.contains("://") {
                format!("did you mean \"https://{template}\"?")
            } else {
                "write a full URL, like \"https://example.com/health\"".to_string()
            };
            d.error_hint(span, format!("invalid URL {template:?}: {error}"), hint);
            None
        }
    }
}

fn read_expect(table: &Table<'_>) -> Option<HttpExpect> {
    let Some(expect) = table.table("expect", format!("`expect` of {}", table.what())) else {
        return Some(HttpExpect::default());
    };
    let status = read_status(&expect);
    let strings = |key: &'static str| -> Vec<String> {
        expect
            .str_list(key)
            .map(|items| items.into_iter().map(|(s, _)| s.to_string()).collect())
            .unwrap_or_default()
    };
    let body_contains = strings("body_contains");
    let body_not_contains = strings("body_not_contains");
    let body_matches = expect.regex_list("body_matches");
    let body_not_matches = expect.regex_list("body_not_matches");
    let headers = read_header_expects(&expect);
    let json = read_json_expects(&expect, table.what());
    let max_duration = expect.duration("max_duration").map(|(d, _)| d);
    let max_size = expect.size("max_size");
    let tls = expect.bool("tls");
    let http_versions = read_http_versions(&expect);
    let headers_match = read_header_rules(&expect, "headers_match", table.what());
    let headers_not_match = read_header_rules(&expect, "headers_not_match", table.what());
    let json_cel = read_json_cel(&expect);
    expect.finish();
    Some(HttpExpect {
        status: status?,
        body_contains,
        body_not_contains,
        body_matches,
        body_not_matches,
        headers: headers?,
        json: json?,
        max_duration,
        max_size,
        tls,
        http_versions: http_versions?,
        headers_match: headers_match?,
        headers_not_match: headers_not_match?,
        json_cel: json_cel?,
    })
}

/// `expect.status`: codes and classes; `None` if any is neither (each reported).
fn read_status(expect: &Table<'_>) -> Option<Vec<StatusMatch>> {
    let d = expect.diags();
    let mut ok = true;
    let mut status = Vec::new();
    for item in expect.array("status").unwrap_or_default() {
        let parsed = match item.get_ref() {
            DeValue::Integer(_) => as_int(item.get_ref())
                .filter(|code| (100..=599).contains(code))
                .map(|code| StatusMatch::Code(code as u16)),
            DeValue::String(text) => parse_status_class(text),
            _ => None,
        };
        match parsed {
            Some(parsed) => status.push(parsed),
            None => {
                d.error_hint(
                    &item.span(),
                    format!(
                        "status {} is not a status code or class",
                        describe(item.get_ref())
                    ),
                    "use codes like 200 or classes like \"2xx\"",
                );
                ok = false;
            }
        }
    }
    ok.then_some(status)
}

/// `expect.headers`: header name → regex its value must match; `None` if any is invalid.
fn read_header_expects(expect: &Table<'_>) -> Option<Vec<(HeaderName, regex::Regex)>> {
    let d = expect.diags();
    let mut ok = true;
    let mut headers = Vec::new();
    for entry in expect.str_map("headers").unwrap_or_default() {
        let Some(name) = header_name(d, entry.key, &entry.key_span) else {
            ok = false;
            continue;
        };
        match crate::reader::compile_regex(entry.value) {
            Ok(regex) => headers.push((name, regex)),
            Err(message) => {
                d.error(
                    &entry.value_span,
                    format!("invalid regex for header {}: {message}", entry.key),
                );
                ok = false;
            }
        }
    }
    ok.then_some(headers)
}

/// `expect.json`: the `[[check.expect.json]]` tables of the check named `what`; `None` if
/// any is invalid.
fn read_json_expects(expect: &Table<'_>, what: &str) -> Option<Vec<JsonExpect>> {
    let d = expect.diags();
    let mut ok = true;
    let mut json = Vec::new();
    for (idx, item) in expect
        .array("json")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let Some(entry) = Table::new(
            d,
            item,
            format!("`expect.json[{idx}]` of {what}"),
            expect.items_section("json"),
        ) else {
            ok = false;
            continue;
        };
        let pointer = read_json_pointer(&entry);
        let test = read_json_test(&entry);
        entry.finish();
        match (pointer, test) {
            (Some(pointer), Some(test)) => json.push(JsonExpect { pointer, test }),
            _ => ok = false,
        }
    }
    ok.then_some(json)
}

/// `pointer` of an `expect.json` table: a JSON pointer (RFC 6901).
fn read_json_pointer(entry: &Table<'_>) -> Option<String> {
    match entry.str("pointer") {
        Some((pointer, _)) if pointer.is_empty() || pointer.starts_with('/') => {
            Some(pointer.to_string())
        }
        Some((pointer, span)) => {
            entry.diags().error_hint(
                &span,
                format!("JSON pointer {pointer:?} must start with `/`"),
                format!(
                    "did you mean \"/{}\"?",
                    pointer.trim_start_matches(['$', '.']).replace('.', "/")
                ),
            );
            None
        }
        None => {
            entry.missing("pointer", "name the value, like pointer = \"/status\"");
            None
        }
    }
}

/// `equals` or `matches` of an `expect.json` table; neither tests that the value exists.
fn read_json_test(entry: &Table<'_>) -> Option<JsonTest> {
    let d = entry.diags();
    let equals = entry.get("equals");
    let matches = entry.str("matches");
    match (equals, matches) {
        (Some(_), Some((_, span))) => {
            d.error(&span, "set `equals` or `matches`, not both");
            None
        }
        (Some(value), None) => match to_json(value.get_ref()) {
            Some(json) => Some(JsonTest::Equals(json)),
            None => {
                d.error(&value.span(), "`equals` cannot be a datetime");
                None
            }
        },
        (None, Some((pattern, span))) => match crate::reader::compile_regex(pattern) {
            Ok(regex) => Some(JsonTest::Matches(regex)),
            Err(message) => {
                d.error(&span, format!("invalid regex in `matches`: {message}"));
                None
            }
        },
        (None, None) => Some(JsonTest::Exists),
    }
}

fn parse_status_class(text: &str) -> Option<StatusMatch> {
    let lower = text.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx")
        && let Ok(class) = class.parse::<u16>()
        && (1..=5).contains(&class)
    {
        return Some(StatusMatch::Class(class));
    }
    text.parse::<u16>()
        .ok()
        .filter(|code| (100..=599).contains(code))
        .map(StatusMatch::Code)
}

fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(n) => n.as_str().to_string(),
        other => type_name(other).to_string(),
    }
}

fn to_json(value: &DeValue<'_>) -> Option<serde_json::Value> {
    Some(match value {
        DeValue::String(s) => serde_json::Value::String(s.to_string()),
        DeValue::Integer(_) => serde_json::Value::from(as_int(value)?),
        DeValue::Float(f) => {
            serde_json::Value::from(f.as_str().replace('_', "").parse::<f64>().ok()?)
        }
        DeValue::Boolean(b) => serde_json::Value::Bool(*b),
        DeValue::Datetime(_) => return None,
        DeValue::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|item| to_json(item.get_ref()))
                .collect::<Option<Vec<_>>>()?,
        ),
        DeValue::Table(table) => {
            let mut map = serde_json::Map::new();
            for (key, item) in table.iter() {
                map.insert(key.get_ref().to_string(), to_json(item.get_ref())?);
            }
            serde_json::Value::Object(map)
        }
    })
}

/// The most a `body_file` may hold.
const MAX_BODY_FILE: u64 = 1024 * 1024;

/// `body_file`: the request body read from a regular file at load time (a relative path from
/// the directory of the configuration file); `Some(None)` when unset, `None` after a problem
/// (reported, naming the file as written).
fn read_body_file(table: &Table<'_>, body_set: bool) -> Option<Option<Bytes>> {
    let d = table.diags();
    let Some((path, span)) = table.str("body_file") else {
        return Some(None);
    };
    if body_set {
        d.error_hint(
            &span,
            "`body` and `body_file` are both set",
            "keep one: `body` for a body written here, `body_file` for one read from a file",
        );
        return None;
    }
    // A relative path is taken from the directory of the file that names it.
    let resolved = match d.src.path.parent() {
        Some(dir) => dir.join(path),
        None => std::path::PathBuf::from(path),
    };
    match crate::reader::read_regular_file(&resolved, MAX_BODY_FILE) {
        Ok(bytes) => Some(Some(Bytes::from(bytes))),
        Err(error) => {
            let message = match error {
                crate::reader::SecretFileError::Io(error) => {
                    format!("cannot read body_file {path}: {error}")
                }
                crate::reader::SecretFileError::NotRegular(what) => {
                    format!("body_file {path} is {what}, not a regular file")
                }
                crate::reader::SecretFileError::TooBig(size) => {
                    format!("body_file {path} is {size} bytes; a body file may be at most 1 MiB")
                }
            };
            d.error_hint(
                &span,
                message,
                "give the path of a regular file, read when the configuration loads",
            );
            None
        }
    }
}

/// `compression`, checked against an `Accept-Encoding` in `headers` as blackbox_exporter
/// checks it; without one, `Accept-Encoding: <compression>` is added to `headers`. `Some(None)`
/// when unset, `None` after a problem (reported).
fn read_compression(
    table: &Table<'_>,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
) -> Option<Option<super::Compression>> {
    let d = table.diags();
    let Some((name, span)) = table.str("compression") else {
        return Some(None);
    };
    let Some(compression) = super::Compression::parse(name) else {
        d.error_hint(
            &span,
            format!("unknown compression {name:?}"),
            "use \"gzip\", \"br\", \"deflate\", \"zstd\" or \"identity\"",
        );
        return None;
    };
    let accept: Vec<&HeaderValue> = headers
        .iter()
        .filter(|(header, _)| header == http::header::ACCEPT_ENCODING)
        .map(|(_, value)| value)
        .collect();
    if accept.is_empty() {
        headers.push((
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static(compression.as_str()),
        ));
        return Some(Some(compression));
    }
    for value in accept {
        let text = String::from_utf8_lossy(value.as_bytes());
        if !accepts(compression.as_str(), &text) {
            let shown = if value.is_sensitive() {
                "the Accept-Encoding header".to_string()
            } else {
                format!("Accept-Encoding: {text}")
            };
            d.error_hint(
                &span,
                format!(
                    "compression = \"{}\", but {shown} does not accept {}",
                    compression.as_str(),
                    compression.as_str()
                ),
                format!(
                    "list {} in Accept-Encoding (at any quality above 0), or leave the header out: it is then sent as Accept-Encoding: {}",
                    compression.as_str(),
                    compression.as_str()
                ),
            );
            return None;
        }
    }
    Some(Some(compression))
}

/// Whether an `Accept-Encoding` value accepts `coding`, as blackbox_exporter's
/// `isCompressionAcceptEncodingValid` decides: the entries by quality, highest first, and the
/// first that names the coding or `*` says, by a quality above 0.
fn accepts(coding: &str, accept_encoding: &str) -> bool {
    let mut entries: Vec<(&str, f32)> = accept_encoding
        .split(',')
        .map(|part| match part.rsplit_once(';') {
            None => (part.trim(), 1.0),
            Some((name, quality)) => {
                let quality = quality.trim();
                let quality = quality.strip_prefix("q=").unwrap_or(quality);
                let parsed = quality.parse::<f32>().unwrap_or(0.0);
                (name.trim(), (parsed * 1000.0).round() / 1000.0)
            }
        })
        .collect();
    entries.sort_by(|a, b| b.1.total_cmp(&a.1));
    entries
        .iter()
        .find(|(name, _)| *name == coding || *name == "*")
        .is_some_and(|(_, quality)| *quality > 0.0)
}

/// `expect.http_versions`: each one of `HTTP/1.0`, `HTTP/1.1`, `HTTP/2` (or `HTTP/2.0`).
fn read_http_versions(expect: &Table<'_>) -> Option<Vec<http::Version>> {
    let d = expect.diags();
    let mut ok = true;
    let mut versions = Vec::new();
    for (name, span) in expect.str_list("http_versions").unwrap_or_default() {
        match super::rules::parse_version(name) {
            Some(version) => versions.push(version),
            None => {
                d.error_hint(
                    &span,
                    format!("unknown HTTP version {name:?} in `http_versions`"),
                    "use \"HTTP/1.0\", \"HTTP/1.1\" or \"HTTP/2\" (nightjar speaks no HTTP/3)",
                );
                ok = false;
            }
        }
    }
    ok.then_some(versions)
}

/// `expect.headers_match` or `expect.headers_not_match` (`key`): a list of
/// `{ header, regex, allow_missing }` tables; `None` if any is invalid (each reported).
fn read_header_rules(
    expect: &Table<'_>,
    key: &'static str,
    what: &str,
) -> Option<Vec<super::HeaderRule>> {
    let d = expect.diags();
    let mut ok = true;
    let mut rules = Vec::new();
    for (idx, item) in expect
        .array(key)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let Some(entry) = Table::new(
            d,
            item,
            format!("`expect.{key}[{idx}]` of {what}"),
            expect.items_section(key),
        ) else {
            ok = false;
            continue;
        };
        let name = match entry.str("header") {
            Some((name, span)) => header_name(d, name, &span),
            None => {
                entry.missing("header", "name the header, like header = \"Cache-Control\"");
                None
            }
        };
        let regex = match entry.str("regex") {
            Some((pattern, span)) => match crate::reader::compile_regex(pattern) {
                Ok(regex) => Some(regex),
                Err(message) => {
                    d.error(&span, format!("invalid regex in `{key}`: {message}"));
                    None
                }
            },
            None => {
                entry.missing("regex", "give the pattern, like regex = 'max-age=\\d+'");
                None
            }
        };
        let allow_missing = entry.bool("allow_missing").unwrap_or(false);
        entry.finish();
        match (name, regex) {
            (Some(name), Some(regex)) => rules.push(super::HeaderRule {
                name,
                regex,
                allow_missing,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(rules)
}

/// `expect.json_cel`: compiled now; a syntax error is reported where it is in the file.
fn read_json_cel(expect: &Table<'_>) -> Option<Option<super::CelExpect>> {
    let Some((source, span)) = expect.str("json_cel") else {
        return Some(None);
    };
    match super::CelExpect::compile(source) {
        Ok(cel) => Some(Some(cel)),
        Err((line, column, message)) => {
            let at = cel_error_span(expect.diags(), source, &span, line, column);
            expect.diags().error_hint(
                &at,
                format!("invalid CEL in `json_cel`: {message}"),
                "write a boolean expression over `body`, the JSON body, like body.status == 'ok'",
            );
            None
        }
    }
}

/// Where line `line`, column `column` (1-based, in characters) of a CEL expression written
/// as the string at `span` is in the file: exact when the string has no escapes, else the
/// string's start.
fn cel_error_span(
    d: &Diags<'_>,
    source: &str,
    span: &Range<usize>,
    line: usize,
    column: usize,
) -> Range<usize> {
    let raw = d.src.text.get(span.clone()).unwrap_or_default();
    let opening = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|quote| raw.starts_with(quote))
        .unwrap_or_default();
    let mut start = opening.len();
    if opening.len() == 3 {
        // A newline right after a multi-line string's opening is not part of it.
        if raw[start..].starts_with("\r\n") {
            start += 2;
        } else if raw[start..].starts_with('\n') {
            start += 1;
        }
    }
    let written = raw.get(start..start + source.len());
    if written != Some(source) {
        return span.clone();
    }
    let mut offset = 0;
    for (idx, text) in source.split_inclusive('\n').enumerate() {
        if idx + 1 == line {
            offset += text
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(text.len(), |(at, _)| at);
            let at = span.start + start + offset;
            return at..at + 1;
        }
        offset += text.len();
    }
    span.clone()
}
