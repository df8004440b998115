//! Each prober's options onto the keys of its check kind.

use super::super::toml_out::{Entries, Val};
use super::super::yaml::{Node, Value};
use super::{Cx, Field, Fields};

/// Options of prometheus/common's `HTTPClientConfig`, inline in the `http` prober.
const HTTP_CLIENT: &[&str] = &[
    "basic_auth",
    "authorization",
    "oauth2",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "follow_redirects",
    "enable_http2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "http_headers",
];

/// Options of the `http` prober itself.
const HTTP: &[&str] = &[
    "valid_status_codes",
    "valid_http_versions",
    "preferred_ip_protocol",
    "ip_protocol_fallback",
    "skip_resolve_phase_with_proxy",
    "no_follow_redirects",
    "fail_if_ssl",
    "fail_if_not_ssl",
    "method",
    "headers",
    "fail_if_body_matches_regexp",
    "fail_if_body_not_matches_regexp",
    "fail_if_body_json_matches_cel",
    "fail_if_body_json_not_matches_cel",
    "fail_if_header_matches",
    "fail_if_header_not_matches",
    "body",
    "body_file",
    "compression",
    "body_size_limit",
    "enable_http3",
];

/// Escapes `${` for a nightjar string that takes references (`$${` is a literal `${`).
pub(crate) fn literal(text: &str) -> String {
    text.replace("${", "$${")
}

/// Long because it is the list of the `http` prober's options, each a few lines.
pub(crate) fn http(cx: &mut Cx<'_>, table: &Node) {
    let known: Vec<&str> = HTTP.iter().chain(HTTP_CLIENT).copied().collect();
    let fields = cx.fields(table, "http", &known);
    if let Some(field) = fields.get("valid_status_codes")
        && let Some(items) = field.value.items().or_else(|| {
            cx.unsupported(field.key, &field.option, "expected a list of status codes");
            None
        })
    {
        let mut codes = Vec::new();
        for item in items {
            match item.int() {
                Some(code) => codes.push(Val::Int(code)),
                None => cx.unsupported(item, &field.option, "expected a status code"),
            }
        }
        if !codes.is_empty() {
            cx.out.set("expect.status", Val::Arr(codes));
        }
    }
    if let Some(field) = fields.get("valid_http_versions")
        && let Some(versions) = cx.str_list(field)
        && !versions.is_empty()
    {
        cx.out.set("expect.http_versions", strs(versions));
    }
    cx.ip_protocol(&fields);
    if let Some(field) = fields.get("method")
        && let Some(method) = cx.str(field)
        && !method.is_empty()
    {
        cx.out.set("method", Val::Str(method));
    }
    headers(cx, &fields);
    if let Some(field) = fields.get("body")
        && let Some(body) = cx.str(field)
        && !body.is_empty()
    {
        cx.out.set("body", Val::Str(literal(&body)));
    }
    if let Some(field) = fields.get("body_file")
        && let Some(file) = cx.str(field)
        && !file.is_empty()
    {
        if cx.out.get("body").is_some() {
            cx.unsupported(
                field.key,
                &field.option,
                "`body` and `body_file` together; blackbox_exporter rejects both set",
            );
        } else {
            cx.out.set("body_file", Val::Str(file));
        }
    }
    http_expect(cx, &fields);
    client_auth(cx, &fields, "bearer_token");
    oauth2(cx, &fields);
    proxy(cx, &fields);
    for (option, key) in [
        (
            "skip_resolve_phase_with_proxy",
            "skip_resolve_phase_with_proxy",
        ),
        ("follow_redirects", "follow_redirects"),
    ] {
        if let Some(field) = fields.get(option)
            && let Some(flag) = cx.bool(field)
        {
            cx.out.set(key, Val::Bool(flag));
        }
    }
    if let Some(field) = fields.get("no_follow_redirects")
        && let Some(flag) = cx.bool(field)
    {
        cx.out.set("follow_redirects", Val::Bool(!flag));
    }
    if let Some(field) = fields.get("compression")
        && let Some(compression) = cx.str(field)
        && !compression.is_empty()
    {
        cx.out.set("compression", Val::Str(compression));
    }
    if let Some(field) = fields.get("enable_http2")
        && cx.bool(field) == Some(false)
    {
        cx.out.set("http_version", Val::Str("1.1".into()));
    }
    if let Some(field) = fields.get("tls_config") {
        tls_config(cx, field, "tls");
    }
    if let Some(field) = fields.get("body_size_limit")
        && let Some(text) = cx.str(field)
    {
        match base2_bytes(&text) {
            Some(0) => {}
            Some(bytes) => {
                // blackbox_exporter fails a probe whose body is larger; `max_body` alone
                // would keep the first bytes and pass.
                cx.out.set("max_body", Val::Str(format!("{bytes}B")));
                cx.out.set("expect.max_size", Val::Str(format!("{bytes}B")));
            }
            None => cx.unsupported(field.key, &field.option, format!("{text:?} is not a size")),
        }
    }
    if let Some(field) = fields.get("enable_http3")
        && cx.bool(field) == Some(true)
    {
        cx.unsupported(
            field.key,
            &field.option,
            "nightjar does not speak HTTP/3; it probes over HTTP/2 or HTTP/1.1 (`http_version`)",
        );
    }
}

/// The response expectations of the `http` prober.
fn http_expect(cx: &mut Cx<'_>, fields: &Fields<'_>) {
    let ssl = fields
        .get("fail_if_ssl")
        .and_then(|f| cx.bool(f))
        .unwrap_or(false);
    let not_ssl = fields
        .get("fail_if_not_ssl")
        .and_then(|f| cx.bool(f))
        .unwrap_or(false);
    match (ssl, not_ssl) {
        (true, true) => {
            if let Some(field) = fields.get("fail_if_not_ssl") {
                cx.unsupported(
                    field.key,
                    &field.option,
                    "with `fail_if_ssl` too, every probe fails; set one of them",
                );
            }
        }
        (true, false) => cx.out.set("expect.tls", Val::Bool(false)),
        (false, true) => cx.out.set("expect.tls", Val::Bool(true)),
        (false, false) => {}
    }
    for (option, key) in [
        ("fail_if_body_not_matches_regexp", "expect.body_matches"),
        ("fail_if_body_matches_regexp", "expect.body_not_matches"),
    ] {
        if let Some(field) = fields.get(option)
            && let Some(regexes) = cx.str_list(field)
            && !regexes.is_empty()
        {
            cx.out.set(key, strs(regexes));
        }
    }
    for (option, key) in [
        ("fail_if_header_not_matches", "expect.headers_match"),
        ("fail_if_header_matches", "expect.headers_not_match"),
    ] {
        if let Some(field) = fields.get(option) {
            header_matches(cx, field, key);
        }
    }
    // Passing requires the one and failing on the other: one expression for both.
    let mut cel = Vec::new();
    for (option, negate) in [
        ("fail_if_body_json_not_matches_cel", false),
        ("fail_if_body_json_matches_cel", true),
    ] {
        if let Some(field) = fields.get(option)
            && let Some(expression) = cx.str(field)
            && !expression.trim().is_empty()
        {
            cel.push(if negate {
                format!("!({expression})")
            } else {
                expression
            });
        }
    }
    match cel.len() {
        0 => {}
        1 => cx.out.set("expect.json_cel", Val::Str(cel.remove(0))),
        _ => cx.out.set(
            "expect.json_cel",
            Val::Str(format!("({}) && {}", cel[0], cel[1])),
        ),
    }
}

/// `fail_if_header_(not_)matches`: a list of `{ header, regexp, allow_missing }`.
fn header_matches(cx: &mut Cx<'_>, field: &Field<'_>, key: &str) {
    let Some(items) = cx.items(field) else {
        return;
    };
    let mut out = Vec::new();
    for item in items {
        let entry = cx.fields(item, &field.option, &["header", "regexp", "allow_missing"]);
        let mut table = Entries::default();
        if let Some(header) = entry.get("header").and_then(|f| cx.str(f)) {
            table.set("header", Val::Str(header));
        }
        if let Some(regex) = entry.get("regexp").and_then(|f| cx.str(f)) {
            table.set("regex", Val::Str(regex));
        }
        if let Some(flag) = entry.get("allow_missing").and_then(|f| cx.bool(f))
            && flag
        {
            table.set("allow_missing", Val::Bool(true));
        }
        out.push(Val::Table(table));
    }
    if !out.is_empty() {
        cx.out.set(key, Val::Arr(out));
    }
}

/// `headers` (name → value) and `http_headers` (name → `values`, `secrets`, `files`) into
/// nightjar's `headers`; several values of one name are joined with `, `.
fn headers(cx: &mut Cx<'_>, fields: &Fields<'_>) {
    let mut headers: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |name: &str, value: String| match headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some((_, values)) => values.push(value),
        None => headers.push((name.to_owned(), vec![value])),
    };
    if let Some(field) = fields.get("http_headers") {
        for (name, value) in http_headers(cx, field) {
            add(&name, value);
        }
    }
    if let Some(field) = fields.get("headers") {
        for (name, value) in string_map(cx, field) {
            add(&name, literal(&value));
        }
    }
    for (name, values) in headers {
        cx.out.set(
            &format!("headers.{}", name.replace('.', "\u{0}")),
            Val::Str(values.join(", ")),
        );
    }
    unmangle_dots(&mut cx.out, "headers");
}

/// prometheus/common's `http_headers` (and the websocket prober's `headers`): each name
/// with `values` (written as they are), `secrets` (kept out of the table) and `files` (read
/// when the check loads, as `${file:PATH}`).
fn http_headers(cx: &mut Cx<'_>, field: &Field<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(entries) = cx.entries(field) else {
        return out;
    };
    for (name_node, value) in entries {
        let Some(name) = name_node.str() else {
            continue;
        };
        let option = format!("{}.{name}", field.option);
        if let Some(text) = value.str() {
            // A bare value, as blackbox_exporter's own example writes websocket headers.
            out.push((name.to_owned(), literal(text)));
            continue;
        }
        let header = cx.fields(value, &option, &["values", "secrets", "files"]);
        for kind in ["values", "secrets", "files"] {
            let Some(list) = header.get(kind) else {
                continue;
            };
            for item in cx.str_list(list).unwrap_or_default() {
                let value = match kind {
                    "values" => literal(&item),
                    "secrets" => cx.secret(&format!("header_{name}"), &item),
                    _ => format!("${{file:{item}}}"),
                };
                out.push((name.to_owned(), value));
            }
        }
    }
    out
}

/// A mapping of strings (`headers`, `endpoint_params`).
fn string_map(cx: &mut Cx<'_>, field: &Field<'_>) -> Vec<(String, String)> {
    let Some(entries) = cx.entries(field) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        match (key.str(), value.str()) {
            (Some(key), Some(value)) => out.push((key.to_owned(), value.to_owned())),
            _ => cx.unsupported(
                key,
                &field.option,
                format!("expected a string value, found {}", value.describe()),
            ),
        }
    }
    out
}

/// Header names may hold dots, which [`Entries::set`] reads as paths: they travel as NUL and
/// are put back here.
fn unmangle_dots(out: &mut Entries, key: &str) {
    if let Some((_, Val::Table(table))) = out.0.iter_mut().find(|(k, _)| k == key) {
        for (name, _) in &mut table.0 {
            *name = name.replace('\u{0}', ".");
        }
    }
}

/// `basic_auth`, `authorization`, `bearer_token(_file)` of an `HTTPClientConfig`;
/// the bearer credentials go to `bearer_key`.
pub(crate) fn client_auth(cx: &mut Cx<'_>, fields: &Fields<'_>, bearer_key: &str) {
    if let Some(field) = fields.get("basic_auth") {
        let auth = cx.fields(
            field.value,
            &field.option,
            &["username", "username_file", "password", "password_file"],
        );
        let mut table = Entries::default();
        if let Some(name) = auth.get("username").and_then(|f| cx.str(f)) {
            table.set("username", Val::Str(literal(&name)));
        }
        if let Some(file) = auth.get("username_file").and_then(|f| cx.str(f)) {
            table.set("username", Val::Str(format!("${{file:{file}}}")));
        }
        if let Some(password) = auth.get("password").and_then(|f| cx.str(f))
            && !password.is_empty()
        {
            let reference = cx.secret("basic_auth_password", &password);
            table.set("password", Val::Str(reference));
        }
        if let Some(file) = auth.get("password_file").and_then(|f| cx.str(f)) {
            table.set("password", Val::Str(format!("${{file:{file}}}")));
        }
        cx.out.set("basic_auth", Val::Table(table));
    }
    let mut bearer = None;
    if let Some(field) = fields.get("bearer_token")
        && let Some(token) = cx.str(field)
        && !token.is_empty()
    {
        bearer = Some(("Bearer".to_owned(), cx.secret("bearer_token", &token)));
    }
    if let Some(field) = fields.get("bearer_token_file")
        && let Some(file) = cx.str(field)
    {
        bearer = Some(("Bearer".to_owned(), format!("${{file:{file}}}")));
    }
    if let Some(field) = fields.get("authorization") {
        let auth = cx.fields(
            field.value,
            &field.option,
            &["type", "credentials", "credentials_file"],
        );
        let kind = auth
            .get("type")
            .and_then(|f| cx.str(f))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Bearer".into());
        if let Some(token) = auth.get("credentials").and_then(|f| cx.str(f))
            && !token.is_empty()
        {
            bearer = Some((kind.clone(), cx.secret("authorization_credentials", &token)));
        }
        if let Some(file) = auth.get("credentials_file").and_then(|f| cx.str(f)) {
            bearer = Some((kind, format!("${{file:{file}}}")));
        }
    }
    match bearer {
        Some((kind, value)) if kind.eq_ignore_ascii_case("bearer") => {
            cx.out.set(bearer_key, Val::Str(value))
        }
        Some((kind, value)) => cx
            .out
            .set("headers.Authorization", Val::Str(format!("{kind} {value}"))),
        None => {}
    }
}

/// `oauth2`: client credentials.
fn oauth2(cx: &mut Cx<'_>, fields: &Fields<'_>) {
    let Some(field) = fields.get("oauth2") else {
        return;
    };
    let known = [
        "client_id",
        "client_secret",
        "client_secret_file",
        "scopes",
        "token_url",
        "endpoint_params",
        "client_secret_ref",
        "tls_config",
        "proxy_url",
        "no_proxy",
        "proxy_from_environment",
        "proxy_connect_header",
        "grant_type",
        "client_certificate_key_id",
        "client_certificate_key",
        "client_certificate_key_file",
        "client_certificate_key_ref",
        "signature_algorithm",
        "iss",
        "audience",
        "claims",
    ];
    let auth = cx.fields(field.value, &field.option, &known);
    if let Some(id) = auth.get("client_id").and_then(|f| cx.str(f)) {
        cx.out.set("oauth2.client_id", Val::Str(literal(&id)));
    }
    if let Some(secret) = auth.get("client_secret").and_then(|f| cx.str(f))
        && !secret.is_empty()
    {
        let reference = cx.secret("oauth2_client_secret", &secret);
        cx.out.set("oauth2.client_secret", Val::Str(reference));
    }
    if let Some(file) = auth.get("client_secret_file").and_then(|f| cx.str(f)) {
        cx.out.set(
            "oauth2.client_secret",
            Val::Str(format!("${{file:{file}}}")),
        );
    }
    if let Some(url) = auth.get("token_url").and_then(|f| cx.str(f)) {
        cx.out.set("oauth2.token_url", Val::Str(literal(&url)));
    }
    if let Some(scopes) = auth.get("scopes").and_then(|f| cx.str_list(f))
        && !scopes.is_empty()
    {
        cx.out.set("oauth2.scopes", strs(scopes));
    }
    if let Some(params) = auth.get("endpoint_params") {
        let mut table = Entries::default();
        for (key, value) in string_map(cx, params) {
            table.0.push((key, Val::Str(literal(&value))));
        }
        cx.out.set("oauth2.endpoint_params", Val::Table(table));
    }
    for name in &known[6..] {
        if let Some(field) = auth.get(name) {
            cx.unsupported(field.key, &field.option, "nightjar's oauth2 is the client-credentials grant with a secret, over the check's own connection settings; this option has no equivalent");
        }
    }
}

/// `proxy_url`, `no_proxy`, `proxy_from_environment`, `proxy_connect_header`.
fn proxy(cx: &mut Cx<'_>, fields: &Fields<'_>) {
    for key in ["proxy_url", "no_proxy"] {
        if let Some(field) = fields.get(key)
            && let Some(text) = cx.str(field)
            && !text.is_empty()
        {
            cx.out.set(key, Val::Str(text));
        }
    }
    if let Some(field) = fields.get("proxy_from_environment")
        && let Some(flag) = cx.bool(field)
    {
        cx.out.set("proxy_from_environment", Val::Bool(flag));
    }
    let Some(field) = fields.get("proxy_connect_header") else {
        return;
    };
    let Some(entries) = cx.entries(field) else {
        return;
    };
    let mut table = Entries::default();
    for (name, values) in entries {
        let Some(name) = name.str() else { continue };
        let list = Field {
            name,
            key: values,
            value: values,
            option: format!("{}.{name}", field.option),
        };
        let Some(values) = cx.str_list(&list) else {
            continue;
        };
        let joined = values.join(", ");
        let reference = cx.secret(&format!("proxy_connect_header_{name}"), &joined);
        table.0.push((name.to_owned(), Val::Str(reference)));
    }
    cx.out.set("proxy_connect_header", Val::Table(table));
}

/// A `tls_config` into the `key` table (`tls`).
pub(crate) fn tls_config(cx: &mut Cx<'_>, field: &Field<'_>, key: &str) {
    let known = [
        "ca_file",
        "cert_file",
        "key_file",
        "server_name",
        "insecure_skip_verify",
        "min_version",
        "ca",
        "cert",
        "key",
        "ca_ref",
        "cert_ref",
        "key_ref",
        "max_version",
    ];
    let tls = cx.fields(field.value, &field.option, &known);
    for name in ["ca_file", "cert_file", "key_file", "server_name"] {
        if let Some(text) = tls.get(name).and_then(|f| cx.str(f))
            && !text.is_empty()
        {
            cx.out.set(&format!("{key}.{name}"), Val::Str(text));
        }
    }
    if let Some(flag) = tls.get("insecure_skip_verify").and_then(|f| cx.bool(f)) {
        cx.out
            .set(&format!("{key}.insecure_skip_verify"), Val::Bool(flag));
    }
    if let Some(field) = tls.get("min_version")
        && let Some(version) = cx.str(field)
    {
        match version.as_str() {
            "TLS12" => cx.out.set(&format!("{key}.min_version"), Val::Str("1.2".into())),
            "TLS13" => cx.out.set(&format!("{key}.min_version"), Val::Str("1.3".into())),
            "TLS10" | "TLS11" => cx.unsupported(field.key, &field.option, "nightjar speaks TLS 1.2 and 1.3 only, so every session is at least TLS 1.2; drop it"),
            _ => cx.unsupported(field.key, &field.option, format!("unknown TLS version {version:?}")),
        }
    }
    for name in ["ca", "cert", "key"] {
        if let Some(field) = tls.get(name) {
            cx.unsupported(
                field.key,
                &field.option,
                format!("inline PEM is not read; write it to a file and set `{key}.{name}_file`"),
            );
        }
    }
    for name in ["ca_ref", "cert_ref", "key_ref"] {
        if let Some(field) = tls.get(name) {
            cx.unsupported(field.key, &field.option, "secret references of Prometheus's secret manager do not exist in blackbox_exporter's files; use the `_file` option");
        }
    }
    if let Some(field) = tls.get("max_version") {
        cx.unsupported(field.key, &field.option, "nightjar offers TLS 1.2 and 1.3 and has no upper bound; `expect.min_version` pins the lower one");
    }
    if cx.out.get(key).is_none() {
        cx.out.set(key, Val::Table(Entries::default()));
    }
}

/// `query_response` into `steps`: one step per action, in blackbox_exporter's order within
/// an entry (read a line, read bytes, send, upgrade). `send` gets the `\n` blackbox_exporter
/// appends (for `tcp` and `unix`, `newline`), `$1`/`${1}` become nightjar's `${1}`.
pub(crate) fn query_response(cx: &mut Cx<'_>, field: &Field<'_>, newline: bool, websocket: bool) {
    let Some(items) = cx.items(field) else {
        return;
    };
    let known = ["expect", "expect_bytes", "labels", "send", "starttls"];
    let mut steps = Vec::new();
    for item in items {
        let entry = cx.fields(item, &field.option, &known);
        let step = |key: &str, value: Val| {
            let mut table = Entries::default();
            table.set(key, value);
            Val::Table(table)
        };
        let expect = entry
            .get("expect")
            .and_then(|f| cx.str(f))
            .filter(|e| !e.is_empty());
        if let Some(expect) = &expect {
            steps.push(step("expect", Val::Str(expect.clone())));
        }
        if let Some(field) = entry.get("expect_bytes") {
            if expect.is_some() {
                cx.unsupported(
                    field.key,
                    &field.option,
                    "`expect` and `expect_bytes` in one entry; blackbox_exporter rejects it",
                );
            } else if websocket {
                cx.unsupported(
                    field.key,
                    &field.option,
                    "the websocket prober does not read `expect_bytes`; use `expect`",
                );
            } else {
                match &field.value.value {
                    Value::Binary(bytes) => steps.push(step("expect_hex", Val::Str(hex(bytes)))),
                    _ => {
                        if let Some(text) = cx.str(field) {
                            steps.push(step("expect_bytes", Val::Str(text)));
                        }
                    }
                }
            }
        }
        if let Some(field) = entry.get("send")
            && let Some(send) = send_step(cx, field, expect.is_some(), newline)
        {
            steps.push(send);
        }
        if let Some(field) = entry.get("starttls")
            && cx.bool(field) == Some(true)
        {
            if websocket {
                cx.unsupported(
                    field.key,
                    &field.option,
                    "a WebSocket cannot upgrade to TLS mid-conversation; use a wss:// target",
                );
            } else {
                steps.push(step("starttls", Val::Bool(true)));
            }
        }
        if let Some(field) = entry.get("labels") {
            cx.unsupported(field.key, &field.option, "nightjar exports no probe_expect_info labels from matched groups; the step's match is in the check's details");
        }
    }
    if !steps.is_empty() {
        cx.out.set("steps", Val::Arr(steps));
    }
}

/// A `send` as a step: `{ send }` (groups of the entry's `expect` expanded, blackbox's
/// newline appended where it appends one) or `{ send_hex }` for `!!binary`.
fn send_step(cx: &mut Cx<'_>, field: &Field<'_>, after_expect: bool, newline: bool) -> Option<Val> {
    let step = |key: &str, value: String| {
        let mut table = Entries::default();
        table.set(key, Val::Str(value));
        Some(Val::Table(table))
    };
    if let Value::Binary(bytes) = &field.value.value {
        let mut bytes = bytes.clone();
        if newline {
            bytes.push(b'\n');
        }
        return step("send_hex", hex(&bytes));
    }
    let text = cx.str(field).filter(|text| !text.is_empty())?;
    let (expanded, _) = expand(&text);
    if !after_expect {
        // blackbox_exporter expands only after an `expect` of the same entry.
        let mut send = literal(&text);
        send.push_str(if newline { "\n" } else { "" });
        return step("send", send);
    }
    let mut send = expanded;
    send.push_str(if newline { "\n" } else { "" });
    step("send", send)
}

/// Go's `Regexp.Expand` template (`$1`, `${1}`, `$name`, `$$`) as nightjar's send text
/// (`${1}`, `${name}`, a literal `$`, and `$${` for a literal `${`), and whether it refers to
/// a group at all.
pub(crate) fn expand(template: &str) -> (String, bool) {
    let mut out = String::new();
    let mut refers = false;
    let mut rest = template;
    // A literal `$` before `{` is written `$$` so nightjar reads `$${` as a literal `${`.
    let dollar =
        |out: &mut String, next: &str| out.push_str(if next.starts_with('{') { "$$" } else { "$" });
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            dollar(&mut out, after);
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = tail.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => ("", tail),
            }
        } else {
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            (&tail[..end], &tail[end..])
        };
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push_str(&format!("${{{name}}}"));
            refers = true;
            rest = after;
        } else {
            // Malformed: Go writes the `$` as it is.
            dollar(&mut out, tail);
            rest = tail;
        }
    }
    out.push_str(rest);
    (out, refers && template.contains('$'))
}

/// Bytes as nightjar's hex pairs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    pairs.join(" ")
}

fn strs(items: Vec<String>) -> Val {
    Val::Arr(items.into_iter().map(Val::Str).collect())
}

/// alecthomas/units' base-2 sizes (`10MB` is 10 MiB, as blackbox_exporter reads them).
pub(crate) fn base2_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

pub(crate) fn tcp(cx: &mut Cx<'_>, table: &Node, prober: &str) {
    let known: &[&str] = if prober == "unix" {
        &["query_response", "tls", "tls_config"]
    } else {
        &[
            "preferred_ip_protocol",
            "ip_protocol_fallback",
            "source_ip_address",
            "query_response",
            "tls",
            "tls_config",
        ]
    };
    let fields = cx.fields(table, prober, known);
    cx.ip_protocol(&fields);
    cx.source_ip(&fields);
    if let Some(field) = fields.get("query_response") {
        query_response(cx, field, true, false);
    }
    let tls = fields.get("tls").and_then(|f| cx.bool(f)).unwrap_or(false);
    let starttls = matches!(cx.out.get("steps"), Some(Val::Arr(steps)) if steps.iter().any(|s| matches!(s, Val::Table(t) if t.get("starttls").is_some())));
    match fields.get("tls_config") {
        // Without TLS from the start or a STARTTLS, blackbox_exporter never uses it.
        Some(field) if tls || starttls => tls_config(cx, field, "tls"),
        _ if tls => cx.out.set("tls", Val::Bool(true)),
        _ => {}
    }
}

pub(crate) fn icmp(cx: &mut Cx<'_>, table: &Node) {
    let known = [
        "preferred_ip_protocol",
        "ip_protocol_fallback",
        "source_ip_address",
        "payload_size",
        "dont_fragment",
        "ttl",
    ];
    let fields = cx.fields(table, "icmp", &known);
    // blackbox_exporter sends one echo request per probe.
    cx.out.set("count", Val::Int(1));
    cx.ip_protocol(&fields);
    cx.source_ip(&fields);
    // Without `payload_size`, blackbox_exporter's payload is "Prometheus Blackbox Exporter".
    let mut payload = 28;
    if let Some(field) = fields.get("payload_size")
        && let Some(size) = cx.int(field)
        && size > 0
    {
        payload = size;
    }
    cx.out.set("payload_size", Val::Int(payload));
    if let Some(field) = fields.get("dont_fragment")
        && let Some(flag) = cx.bool(field)
    {
        cx.out.set("dont_fragment", Val::Bool(flag));
    }
    if let Some(field) = fields.get("ttl")
        && let Some(ttl) = cx.int(field)
    {
        match ttl {
            0 => {}
            1..=255 => cx.out.set("ttl", Val::Int(ttl)),
            _ => cx.unsupported(
                field.key,
                &field.option,
                "must be 0 to 255; blackbox_exporter rejects it",
            ),
        }
    }
}

/// Long because it is the list of the `dns` prober's options.
pub(crate) fn dns(cx: &mut Cx<'_>, table: &Node) {
    let known = [
        "preferred_ip_protocol",
        "ip_protocol_fallback",
        "dns_over_tls",
        "tls_config",
        "source_ip_address",
        "transport_protocol",
        "query_class",
        "query_name",
        "query_type",
        "recursion_desired",
        "valid_rcodes",
        "validate_answer_rrs",
        "validate_authority_rrs",
        "validate_additional_rrs",
    ];
    let fields = cx.fields(table, "dns", &known);
    match fields.get("query_name").and_then(|f| cx.str(f)) {
        Some(name) if !name.is_empty() => cx.out.set("query", Val::Str(name)),
        _ => cx.unsupported(
            table,
            "dns.query_name",
            "missing; blackbox_exporter requires it (\"query name must be set for DNS module\")",
        ),
    }
    let record = fields
        .get("query_type")
        .and_then(|f| cx.str(f))
        .filter(|t| !t.is_empty());
    // blackbox_exporter asks for ANY when no type is given.
    cx.out.set(
        "record",
        Val::Str(record.unwrap_or_else(|| "ANY".into()).to_ascii_uppercase()),
    );
    if let Some(class) = fields.get("query_class").and_then(|f| cx.str(f))
        && !class.is_empty()
        && class != "IN"
    {
        cx.out.set("class", Val::Str(class));
    }
    if let Some(field) = fields.get("transport_protocol")
        && let Some(transport) = cx.str(field)
        && !transport.is_empty()
    {
        match transport.as_str() {
            "udp" | "tcp" => cx.out.set("transport", Val::Str(transport)),
            _ => cx.unsupported(
                field.key,
                &field.option,
                format!("{transport:?}: blackbox_exporter takes udp or tcp"),
            ),
        }
    }
    let dot = fields
        .get("dns_over_tls")
        .and_then(|f| cx.bool(f))
        .unwrap_or(false);
    if dot {
        cx.out.set("transport", Val::Str("tls".into()));
        if let Some(field) = fields.get("tls_config") {
            tls_config(cx, field, "tls");
        }
    }
    cx.ip_protocol(&fields);
    cx.source_ip(&fields);
    if let Some(field) = fields.get("recursion_desired")
        && let Some(flag) = cx.bool(field)
    {
        cx.out.set("recursion_desired", Val::Bool(flag));
    }
    // blackbox_exporter sends no EDNS at all (so no DO bit, and the 512-byte UDP limit).
    cx.out.set("dnssec", Val::Bool(false));
    cx.out.set("edns", Val::Bool(false));
    if let Some(field) = fields.get("valid_rcodes")
        && let Some(rcodes) = cx.str_list(field)
        && !rcodes.is_empty()
    {
        cx.out.set("expect.rcode", strs(rcodes));
    }
    for (option, key) in [
        ("validate_answer_rrs", "expect.answer_rrs"),
        ("validate_authority_rrs", "expect.authority_rrs"),
        ("validate_additional_rrs", "expect.additional_rrs"),
    ] {
        let Some(field) = fields.get(option) else {
            continue;
        };
        let names = [
            ("fail_if_matches_regexp", "fail_if_matches"),
            ("fail_if_all_match_regexp", "fail_if_all_match"),
            ("fail_if_not_matches_regexp", "fail_if_not_matches"),
            ("fail_if_none_matches_regexp", "fail_if_none_matches"),
        ];
        let known: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
        let validator = cx.fields(field.value, &field.option, &known);
        let mut table = Entries::default();
        for (name, key) in names {
            if let Some(list) = validator.get(name).and_then(|f| cx.str_list(f))
                && !list.is_empty()
            {
                table.set(key, strs(list));
            }
        }
        if !table.0.is_empty() {
            cx.out.set(key, Val::Table(table));
        }
    }
}

pub(crate) fn grpc(cx: &mut Cx<'_>, table: &Node) {
    let known = [
        "service",
        "tls",
        "tls_config",
        "ip_protocol_fallback",
        "preferred_ip_protocol",
        "metadata",
    ];
    let fields = cx.fields(table, "grpc", &known);
    if let Some(service) = fields.get("service").and_then(|f| cx.str(f))
        && !service.is_empty()
    {
        cx.out.set("service", Val::Str(service));
    }
    let tls = fields.get("tls").and_then(|f| cx.bool(f)).unwrap_or(false);
    if tls {
        if let Some(field) = fields.get("tls_config") {
            tls_config(cx, field, "tls");
        }
    } else {
        // blackbox_exporter's grpc prober is plain text unless `tls: true`.
        cx.out.set("plaintext", Val::Bool(true));
    }
    cx.ip_protocol(&fields);
    if let Some(field) = fields.get("metadata")
        && let Some(entries) = field.value.entries()
    {
        let mut table = Entries::default();
        for (name, values) in entries {
            let Some(name) = name.str() else { continue };
            let list = Field {
                name,
                key: values,
                value: values,
                option: format!("{}.{name}", field.option),
            };
            let values = match &values.value {
                Value::Seq(_) => cx.str_list(&list).unwrap_or_default(),
                _ => cx.str(&list).into_iter().collect(),
            };
            table.0.push((
                name.to_ascii_lowercase(),
                Val::Str(literal(&values.join(","))),
            ));
        }
        cx.out.set("metadata", Val::Table(table));
    }
}

pub(crate) fn websocket(cx: &mut Cx<'_>, table: &Node) {
    let known = [
        "http_config",
        "headers",
        "query_response",
        "preferred_ip_protocol",
        "ip_protocol_fallback",
    ];
    let fields = cx.fields(table, "websocket", &known);
    if let Some(field) = fields.get("http_config") {
        let client = cx.fields(field.value, &field.option, HTTP_CLIENT);
        client_auth(cx, &client, "bearer_token");
        if let Some(tls) = client.get("tls_config") {
            tls_config(cx, tls, "tls");
        }
        for name in HTTP_CLIENT {
            if !matches!(
                *name,
                "basic_auth"
                    | "authorization"
                    | "bearer_token"
                    | "bearer_token_file"
                    | "tls_config"
            ) && let Some(field) = client.get(name)
            {
                cx.unsupported(field.key, &field.option, "blackbox_exporter's websocket prober ignores it (it reads only basic_auth, authorization and tls_config)");
            }
        }
    }
    if let Some(field) = fields.get("headers") {
        let mut headers: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in http_headers(cx, field) {
            match headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                Some((_, values)) => values.push(value),
                None => headers.push((name, vec![value])),
            }
        }
        for (name, values) in headers {
            cx.out.set(
                &format!("headers.{}", name.replace('.', "\u{0}")),
                Val::Str(values.join(", ")),
            );
        }
        unmangle_dots(&mut cx.out, "headers");
    }
    if let Some(field) = fields.get("query_response") {
        query_response(cx, field, false, true);
    }
    cx.ip_protocol(&fields);
}
