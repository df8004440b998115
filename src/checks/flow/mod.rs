//! The `flow` check: HTTP steps run in order in one run, sharing a cookie jar and a table of
//! variables extracted from earlier responses, with secrets and TOTP codes filled in. The run
//! fails at the first failing step, and says which.
//!
//! Nothing a flow handles (secrets, TOTP codes, cookies, extracted values) leaves it: every
//! detail is redacted of them before it is returned, and none becomes a label.

pub(crate) mod config;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Method};
use regex::Regex;
use tokio::time::Instant;
use url::Url;

use super::CheckCtx;
use super::http::{
    HttpExpect, HttpOptions, HttpSpec, HttpVersionPref, TlsOptions, evaluate, fetch_with_cookies,
};
use crate::net::IpPreference;
use crate::result::{
    Details, Failure, FailureReason, FlowDetails, HttpDetails, Status, StepResult,
};

/// The reasons a `flow` check can produce: an `http` check's, and extraction.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::Closed,
    FailureReason::Protocol,
    FailureReason::Redirect,
    FailureReason::Status,
    FailureReason::Body,
    FailureReason::Header,
    FailureReason::Json,
    FailureReason::TooSlow,
    FailureReason::TooLarge,
    FailureReason::Extract,
    FailureReason::HttpVersion,
    FailureReason::Proxy,
];

/// A validated `flow` check.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    /// The steps, in order.
    pub steps: Vec<FlowStep>,
}

/// One HTTP request of a flow.
#[derive(Debug, Clone)]
pub struct FlowStep {
    /// Unique within the flow; the `step` label.
    pub name: String,
    /// Request method.
    pub method: Method,
    /// The URL, with variables.
    pub url: Template,
    /// Request headers, with variables (`bearer_token` arrives here as `Authorization`).
    pub headers: Vec<(HeaderName, Template)>,
    /// `basic_auth` username and password, with variables.
    pub basic_auth: Option<(Template, Template)>,
    /// The request body.
    pub body: FlowBody,
    /// Whether redirects are followed (cookies are applied on every hop).
    pub follow_redirects: bool,
    /// How many redirects are followed.
    pub max_redirects: u32,
    /// This step's own time limit, within the check's.
    pub timeout: Option<Duration>,
    /// Address family preference.
    pub ip: IpPreference,
    /// HTTP version.
    pub version: HttpVersionPref,
    /// TLS client, verifier and name.
    pub tls: TlsOptions,
    /// Body bytes kept for assertions and extraction.
    pub max_body: u64,
    /// What the response must look like.
    pub expect: HttpExpect,
    /// Variables taken from the response.
    pub extract: Vec<(String, Extractor)>,
    /// The proxies this step's requests go through (the `http` check's proxy keys).
    pub proxy: Option<std::sync::Arc<crate::checks::http::proxy::ProxyOptions>>,
}

/// A request body.
#[derive(Debug, Clone)]
pub enum FlowBody {
    /// No body.
    None,
    /// A raw body.
    Raw(Template),
    /// `application/x-www-form-urlencoded` fields.
    Form(Vec<(String, Template)>),
    /// A JSON document built from a TOML table.
    Json(JsonTemplate),
}

/// Where a variable's value comes from.
#[derive(Debug, Clone)]
pub enum Extractor {
    /// The first capture group (or the whole match) of a regex on the body.
    Regex(Regex),
    /// A JSON pointer into the body; strings as they are, other values as JSON text.
    JsonPointer(String),
    /// A response header.
    Header(HeaderName),
    /// A cookie from the jar, after this step.
    Cookie(String),
    /// The `value` of the first `input`, `select` or `textarea` with this `name`, found by
    /// an HTML parser.
    FormField(String),
}

/// A string with `${variable}` and `${totp:...}` parts, filled in at run time.
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// The parts, in order.
    pub parts: Vec<Part>,
}

/// A part of a [`Template`].
#[derive(Clone)]
pub enum Part {
    /// Literal text (secrets from `${env:..}`/`${file:..}` are already in it).
    Text(String),
    /// A variable extracted by an earlier step.
    Var(String),
    /// The current TOTP code of a secret.
    Totp(Arc<totp_rs::Totp>),
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Text(_) => f.write_str("Text(..)"),
            Part::Var(name) => write!(f, "Var({name})"),
            Part::Totp(_) => f.write_str("Totp(..)"),
        }
    }
}

/// A JSON body whose strings are templates.
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    /// A literal value (number, boolean).
    Literal(serde_json::Value),
    /// A string with variables.
    String(Template),
    /// An array.
    Array(Vec<JsonTemplate>),
    /// An object, in order.
    Object(Vec<(String, JsonTemplate)>),
}

/// Values a run has seen that must not appear in any output.
#[derive(Default)]
struct Sensitive {
    values: Vec<String>,
}

impl Sensitive {
    fn add(&mut self, value: &str) {
        // Very short values (a "1", a "ok") would redact ordinary words; they are not
        // secrets worth the noise.
        if value.len() >= 4 && !self.values.iter().any(|known| known == value) {
            self.values.push(value.to_string());
        }
    }

    fn redact(&self, text: &str) -> String {
        crate::text::redact(&self.values, text)
    }
}

impl Template {
    fn render(&self, vars: &HashMap<String, String>, sensitive: &mut Sensitive) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => out.push_str(vars.get(name).map_or("", String::as_str)),
                Part::Totp(totp) => {
                    let code = totp.generate(crate::time::unix_now() as u64).to_string();
                    sensitive.add(&code);
                    out.push_str(&code);
                }
            }
        }
        out
    }
}

/// Where in a URL the text filled in so far ends, so where a variable's value lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlPosition {
    /// Scheme, user-info, host or port: the value is inserted as it is, and the filled URL
    /// must keep the origin the literal text names.
    Authority,
    /// The path: the value is percent-encoded but for `/`.
    Path,
    /// The query or the fragment: everything but the unreserved characters is encoded.
    Query,
}

fn url_position(so_far: &str) -> UrlPosition {
    if so_far.contains(['?', '#']) {
        UrlPosition::Query
    } else if so_far
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains(['/', '\\']))
    {
        UrlPosition::Path
    } else {
        UrlPosition::Authority
    }
}

/// A step's URL once filled in.
struct FilledUrl {
    url: Url,
    /// Whether the origin is the one the step's literal text names (false when the whole URL,
    /// or its beginning, is a variable).
    literal_origin: bool,
}

/// What changed between the origin the literal text names and the filled URL's, if anything.
fn origin_change(literal: &str, filled: &Url) -> Option<String> {
    let Ok(expected) = Url::parse(literal) else {
        return Some("origin (the step's literal URL text names none)".to_string());
    };
    if expected.scheme() != filled.scheme() {
        return Some(format!(
            "scheme from {} to {}",
            expected.scheme(),
            filled.scheme()
        ));
    }
    if expected.username() != filled.username() || expected.password() != filled.password() {
        return Some("user-info".to_string());
    }
    if expected.host_str() != filled.host_str() {
        return Some(format!(
            "host from {} to {}",
            expected.host_str().unwrap_or("none"),
            filled.host_str().unwrap_or("none")
        ));
    }
    if expected.port_or_known_default() != filled.port_or_known_default() {
        let port = |url: &Url| {
            url.port_or_known_default()
                .map_or("none".to_string(), |p| p.to_string())
        };
        return Some(format!("port from {} to {}", port(&expected), port(filled)));
    }
    None
}

impl Template {
    /// Why this URL template cannot name its origin in literal text, if it cannot: a variable
    /// inside the scheme or the authority (user-info, host, port: after `scheme://` and before
    /// the first `/`, `\`, `?` or `#`), like `https://${tenant}.example.com`,
    /// `https://api-${v}.example.com` or `http://host:${port}/`. The run would always fail,
    /// since the filled URL's origin could not be the one the literal text names. A URL that
    /// is a variable as a whole, or whose variables start right after a complete authority
    /// (`http://127.0.0.1:8080${next}`, checked at run time) or later, is fine.
    pub fn url_problem(&self) -> Option<String> {
        if matches!(self.parts.first(), Some(Part::Var(_)) | None) {
            return None;
        }
        // A TOTP code is six digits of literal text as far as the URL's shape goes.
        let literal = |part: &Part| match part {
            Part::Text(text) => Some(text.clone()),
            Part::Totp(_) => Some("000000".to_string()),
            Part::Var(_) => None,
        };
        let mut so_far = String::new();
        for (idx, part) in self.parts.iter().enumerate() {
            let Part::Var(name) = part else {
                so_far.push_str(&literal(part).unwrap_or_default());
                continue;
            };
            let Some((_, before)) = so_far.split_once("://") else {
                return Some(format!(
                    "variable ${{{name}}} is inside the URL's scheme: a variable cannot choose the scheme, user-info, host or port"
                ));
            };
            if url_position(&so_far) != UrlPosition::Authority {
                // Every later variable lands in the path, the query or the fragment.
                return None;
            }
            // The literal text that follows, up to the next variable.
            let after: String = self.parts[idx + 1..].iter().map_while(literal).collect();
            let more_authority = after.split(['/', '\\', '?', '#']).next().unwrap_or("");
            let host = before.rsplit('@').next().unwrap_or("");
            let complete = !host.is_empty()
                && before
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == ']');
            let ends_authority = after.starts_with(['/', '\\', '?', '#'])
                || (after.is_empty()
                    && !self.parts[idx + 1..]
                        .iter()
                        .any(|part| matches!(part, Part::Var(_))));
            if complete && ends_authority {
                // Right after the authority: the run checks that the origin is kept.
                return None;
            }
            let in_port = match host.strip_prefix('[') {
                // An IPv6 literal: a port only after its `]`.
                Some(ip) => ip
                    .split_once(']')
                    .is_some_and(|(_, port)| port.contains(':')),
                None => host.contains(':'),
            };
            let component = if more_authority.contains('@') {
                "user-info"
            } else if in_port {
                "port"
            } else {
                "host"
            };
            return Some(format!(
                "variable ${{{name}}} is inside the URL's {component}: a variable cannot choose the scheme, user-info, host or port"
            ));
        }
        None
    }

    /// Fills in a step's URL. A variable's value is percent-encoded where it lands in the path
    /// (all but unreserved characters and `/`) or the query and fragment (all but unreserved
    /// characters); one that lands before the path (`http://host:8080${next}`) is inserted as
    /// it is, and then the filled URL must keep the scheme, user-info, host and port the
    /// literal text names, or the run fails with reason `extract`.
    fn render_url(
        &self,
        vars: &HashMap<String, String>,
        sensitive: &mut Sensitive,
    ) -> Result<FilledUrl, Failure> {
        let mut out = String::new();
        // The literal text alone, variables left out: the origin the config names.
        let mut literal = String::new();
        let mut in_authority: Option<&str> = None;
        for part in &self.parts {
            match part {
                Part::Text(text) => {
                    out.push_str(text);
                    literal.push_str(text);
                }
                Part::Var(name) => {
                    let value = vars.get(name).map_or("", String::as_str);
                    match url_position(&out) {
                        UrlPosition::Path => out.push_str(&crate::text::percent_encode(
                            value,
                            crate::text::encodes_in_path_segment,
                            "0123456789ABCDEF",
                        )),
                        UrlPosition::Query => out.push_str(&crate::text::percent_encode(
                            value,
                            crate::text::encodes_in_component,
                            "0123456789ABCDEF",
                        )),
                        UrlPosition::Authority => {
                            in_authority.get_or_insert(name);
                            out.push_str(value);
                        }
                    }
                }
                Part::Totp(_) => {
                    let code = Template {
                        parts: vec![part.clone()],
                    }
                    .render(vars, sensitive);
                    out.push_str(&code);
                    literal.push_str(&code);
                }
            }
        }
        let url = match Url::parse(&out) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
            _ => {
                return Err(match in_authority {
                    Some(name) => Failure::new(
                        FailureReason::Extract,
                        format!("variable ${{{name}}} makes the URL unusable: {out:?}"),
                    ),
                    None => Failure::new(
                        FailureReason::Protocol,
                        format!("the URL is not a usable http(s) URL once filled in: {out:?}"),
                    ),
                });
            }
        };
        if matches!(self.parts.first(), Some(Part::Var(_))) {
            return Ok(FilledUrl {
                url,
                literal_origin: false,
            });
        }
        if let Some(name) = in_authority
            && let Some(change) = origin_change(&literal, &url)
        {
            return Err(Failure::new(
                FailureReason::Extract,
                format!("variable ${{{name}}} would change the URL's {change}; not sent"),
            ));
        }
        Ok(FilledUrl {
            url,
            literal_origin: true,
        })
    }
}

impl JsonTemplate {
    fn render(
        &self,
        vars: &HashMap<String, String>,
        sensitive: &mut Sensitive,
    ) -> serde_json::Value {
        match self {
            JsonTemplate::Literal(value) => value.clone(),
            JsonTemplate::String(template) => {
                serde_json::Value::String(template.render(vars, sensitive))
            }
            JsonTemplate::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|item| item.render(vars, sensitive))
                    .collect(),
            ),
            JsonTemplate::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(key, value)| (key.clone(), value.render(vars, sensitive)))
                    .collect(),
            ),
        }
    }
}

/// Runs a `flow` check once.
pub async fn run(spec: &FlowSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = FlowDetails::default();
    let mut sensitive = Sensitive::default();
    let mut jar = cookie_store::CookieStore::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    // The origin of the first step, whose URL is literal text (no variable exists yet): the
    // only origin a step whose whole URL is a variable sends credentials to.
    let mut home: Option<url::Origin> = None;
    let mut status = Status::Pass;
    for step in &spec.steps {
        let started = Instant::now();
        let step_deadline = step
            .timeout
            .map_or(ctx.deadline, |limit| ctx.deadline.min(started + limit));
        let step_ctx = ctx.until(step_deadline);
        let mut http = HttpDetails::default();
        let outcome = run_step(
            step,
            &step_ctx,
            &mut jar,
            &mut vars,
            &mut sensitive,
            &mut home,
            &mut http,
        )
        .await;
        let duration = started.elapsed();
        let ok = outcome.is_ok();
        details.steps.push(StepResult {
            name: step.name.clone(),
            duration,
            success: ok,
            status_code: http.status_code,
            http,
        });
        if let Err(Failure { reason, detail }) = outcome {
            // A step that ran out of its own time is a timeout, whatever phase it was in.
            let detail = if reason == FailureReason::Timeout && step_deadline < ctx.deadline {
                format!("{detail} (the step's timeout)")
            } else {
                detail
            };
            details.failed_step = Some(step.name.clone());
            status = Status::fail(
                reason,
                format!("step {:?}: {}", step.name, sensitive.redact(&detail)),
            );
            break;
        }
    }
    (status, Details::Flow(details))
}

async fn run_step(
    step: &FlowStep,
    ctx: &CheckCtx,
    jar: &mut cookie_store::CookieStore,
    vars: &mut HashMap<String, String>,
    sensitive: &mut Sensitive,
    home: &mut Option<url::Origin>,
    http: &mut HttpDetails,
) -> Result<(), Failure> {
    let (url, trusted) = step_url(step, vars, sensitive, home)?;
    let mut headers = step_headers(step, trusted, vars, sensitive)?;
    let body = step_body(step, vars, sensitive, &mut headers);
    let spec = HttpSpec::new(
        url,
        HttpOptions {
            method: step.method.clone(),
            headers,
            body,
            follow_redirects: step.follow_redirects,
            max_redirects: step.max_redirects,
            ip: step.ip,
            version: step.version,
            tls: step.tls.clone(),
            max_body: step.max_body,
            // The request reads only `max_size`; the step's expectations are judged below.
            expect: HttpExpect {
                max_size: step.expect.max_size,
                ..HttpExpect::default()
            },
            compression: None,
            proxy: step.proxy.clone(),
            oauth2: None,
        },
    );
    let started = Instant::now();
    let received = fetch_with_cookies(&spec, ctx, http, Some(jar)).await?;
    match evaluate(&step.expect, &received, started.elapsed(), http) {
        Status::Pass => {}
        Status::Fail(failure) => return Err(failure),
    }
    extract_vars(step, &received, jar, &spec.url, vars, sensitive)?;
    // Cookie values are secrets too.
    for cookie in jar.iter_unexpired() {
        sensitive.add(cookie.value());
    }
    Ok(())
}

/// The step's URL filled in, and whether credentials may go there: they go only to the
/// origin the config names, the step's literal one or, for a URL that is a variable, the
/// first step's (`home`, set by the first step). A body never goes anywhere else.
fn step_url(
    step: &FlowStep,
    vars: &HashMap<String, String>,
    sensitive: &mut Sensitive,
    home: &mut Option<url::Origin>,
) -> Result<(Url, bool), Failure> {
    let FilledUrl {
        url,
        literal_origin,
    } = step.url.render_url(vars, sensitive)?;
    let home = home.get_or_insert_with(|| url.origin());
    let trusted = literal_origin || url.origin() == *home;
    if !trusted && !matches!(step.body, FlowBody::None) {
        return Err(Failure::new(
            FailureReason::Extract,
            format!(
                "the URL leads to {}, not the flow's origin {}; the step's body is not sent there",
                url.origin().ascii_serialization(),
                home.ascii_serialization()
            ),
        ));
    }
    Ok((url, trusted))
}

/// The step's headers and `basic_auth`, filled in and marked sensitive; none when the URL
/// is not `trusted`.
fn step_headers(
    step: &FlowStep,
    trusted: bool,
    vars: &HashMap<String, String>,
    sensitive: &mut Sensitive,
) -> Result<Vec<(HeaderName, HeaderValue)>, Failure> {
    let mut headers = Vec::with_capacity(step.headers.len() + 1);
    let configured = if trusted { &step.headers[..] } else { &[] };
    for (name, template) in configured {
        let value = template.render(vars, sensitive);
        if name == http::header::AUTHORIZATION {
            sensitive.add(&value);
        }
        let Ok(mut value) = HeaderValue::from_str(&value) else {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!("header {name} is not a valid header value once filled in"),
            ));
        };
        value.set_sensitive(true);
        headers.push((name.clone(), value));
    }
    if let Some((user, password)) = step.basic_auth.as_ref().filter(|_| trusted) {
        let credentials = super::http::basic_auth(
            &user.render(vars, sensitive),
            &password.render(vars, sensitive),
        );
        sensitive.add(&credentials);
        let mut value = HeaderValue::from_str(&credentials).map_err(|_| {
            Failure::new(
                FailureReason::Protocol,
                "basic_auth is not a valid header value once filled in",
            )
        })?;
        value.set_sensitive(true);
        headers.push((http::header::AUTHORIZATION, value));
    }
    Ok(headers)
}

/// The step's body filled in; a form or JSON body adds its `Content-Type` to `headers`
/// unless one is set.
fn step_body(
    step: &FlowStep,
    vars: &HashMap<String, String>,
    sensitive: &mut Sensitive,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
) -> Option<Bytes> {
    match &step.body {
        FlowBody::None => None,
        FlowBody::Raw(template) => Some(Bytes::from(template.render(vars, sensitive))),
        FlowBody::Form(fields) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, template) in fields {
                form.append_pair(name, &template.render(vars, sensitive));
            }
            set_default_header(headers, "application/x-www-form-urlencoded");
            Some(Bytes::from(form.finish()))
        }
        FlowBody::Json(template) => {
            set_default_header(headers, "application/json");
            Some(Bytes::from(template.render(vars, sensitive).to_string()))
        }
    }
}

/// Takes the step's variables from its response (and the jar, for `url`); each value is a
/// secret from then on.
fn extract_vars(
    step: &FlowStep,
    received: &super::http::Received,
    jar: &cookie_store::CookieStore,
    url: &Url,
    vars: &mut HashMap<String, String>,
    sensitive: &mut Sensitive,
) -> Result<(), Failure> {
    for (name, extractor) in &step.extract {
        let value = extract(extractor, received, jar, url).ok_or_else(|| {
            Failure::new(
                FailureReason::Extract,
                format!("could not extract ${{{name}}}: {}", describe(extractor)),
            )
        })?;
        sensitive.add(&value);
        vars.insert(name.clone(), value);
    }
    Ok(())
}

fn set_default_header(headers: &mut Vec<(HeaderName, HeaderValue)>, content_type: &'static str) {
    if !headers.iter().any(|(name, _)| name == CONTENT_TYPE) {
        headers.push((CONTENT_TYPE, HeaderValue::from_static(content_type)));
    }
}

fn describe(extractor: &Extractor) -> String {
    match extractor {
        Extractor::Regex(regex) => format!("the body does not match /{regex}/"),
        Extractor::JsonPointer(pointer) => format!("no value at JSON pointer {pointer}"),
        Extractor::Header(name) => format!("the response has no {name} header"),
        Extractor::Cookie(name) => format!("no cookie named {name:?} in the jar"),
        Extractor::FormField(name) => format!("no form field named {name:?} in the page"),
    }
}

fn extract(
    extractor: &Extractor,
    received: &super::http::Received,
    jar: &cookie_store::CookieStore,
    url: &Url,
) -> Option<String> {
    match extractor {
        Extractor::Regex(regex) => {
            let body = String::from_utf8_lossy(&received.body);
            let captures = regex.captures(&body)?;
            let found = captures.get(1).or_else(|| captures.get(0))?;
            Some(found.as_str().to_string())
        }
        Extractor::JsonPointer(pointer) => {
            let document: serde_json::Value = serde_json::from_slice(&received.body).ok()?;
            match document.pointer(pointer)? {
                serde_json::Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            }
        }
        Extractor::Header(name) => received
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        Extractor::Cookie(name) => jar
            .matches(url)
            .into_iter()
            .find(|cookie| cookie.name() == name)
            .map(|cookie| cookie.value().to_string()),
        Extractor::FormField(name) => form_field(&String::from_utf8_lossy(&received.body), name),
    }
}

/// The value of the first form control named `name`, found by an HTML parser.
pub fn form_field(html: &str, name: &str) -> Option<String> {
    let document = scraper::Html::parse_document(html);
    // Names are checked at load time to hold no quote or backslash.
    let selector = scraper::Selector::parse(&format!(
        "input[name=\"{name}\"], select[name=\"{name}\"], textarea[name=\"{name}\"]"
    ))
    .ok()?;
    let element = document.select(&selector).next()?;
    match element.value().name() {
        "textarea" => Some(element.text().collect()),
        "select" => {
            let option = scraper::Selector::parse("option[selected], option").ok()?;
            element
                .select(&option)
                .next()
                .and_then(|opt| opt.value().attr("value").map(str::to_string))
        }
        _ => Some(element.value().attr("value").unwrap_or("").to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_come_from_the_html_parser() {
        let html = r#"<form><input type="hidden" name='csrf_token' value="a&amp;b">
            <!-- <input name="csrf_token" value="commented-out"> -->
            <textarea name="note">hi</textarea></form>"#;
        assert_eq!(form_field(html, "csrf_token").as_deref(), Some("a&b"));
        assert_eq!(form_field(html, "note").as_deref(), Some("hi"));
        assert_eq!(form_field(html, "missing"), None);
    }

    fn url_template(parts: &[&str]) -> Template {
        Template {
            parts: parts
                .iter()
                .map(|part| match part.strip_prefix('$') {
                    Some(name) => Part::Var(name.to_string()),
                    None => Part::Text(part.to_string()),
                })
                .collect(),
        }
    }

    fn fill(parts: &[&str], value: &str) -> Result<(String, bool), Failure> {
        let vars = HashMap::from([("v".to_string(), value.to_string())]);
        url_template(parts)
            .render_url(&vars, &mut Sensitive::default())
            .map(|filled| (filled.url.to_string(), filled.literal_origin))
    }

    #[test]
    fn variables_are_encoded_where_they_land() {
        let ok = |parts: &[&str], value: &str| fill(parts, value).unwrap();
        assert_eq!(
            ok(&["http://127.0.0.1:8080/items/", "$v"], "a b/@evil:1?x#y"),
            (
                "http://127.0.0.1:8080/items/a%20b/%40evil%3A1%3Fx%23y".to_string(),
                true
            )
        );
        assert_eq!(
            ok(
                &["https://shop.example/search?q=", "$v", "&n=1"],
                "a&b=c+d#e"
            ),
            (
                "https://shop.example/search?q=a%26b%3Dc%2Bd%23e&n=1".to_string(),
                true
            )
        );
        // Before the path: inserted as it is, the origin kept.
        assert_eq!(
            ok(&["http://127.0.0.1:8080", "$v"], "/mfa?step=2"),
            ("http://127.0.0.1:8080/mfa?step=2".to_string(), true)
        );
        // The whole URL a variable: it goes where the value says, not as a literal origin.
        assert_eq!(
            ok(&["$v"], "https://other.example/x"),
            ("https://other.example/x".to_string(), false)
        );
    }

    #[test]
    fn a_variable_inside_the_authority_is_a_problem() {
        for (bad, component) in [
            (&["https://", "$v", ".example.com/"][..], "host"),
            (&["http://user@", "$v"][..], "host"),
            (&["http://", "$v"][..], "host"),
            // Its literal origin is api-.example.com: every run would fail.
            (&["https://api-", "$v", ".example.com/"][..], "host"),
            (&["https://api-", "$v", "/x"][..], "host"),
            (&["https://shop", "$v", ".example.com"][..], "host"),
            (&["http://host:", "$v", "/"][..], "port"),
            (&["http://host:", "$v"][..], "port"),
            (&["http://[::1]:", "$v", "/"][..], "port"),
            (&["http://[::", "$v", "]/"][..], "host"),
            (&["http://", "$v", ":pw@host/"][..], "user-info"),
            (&["http://user:", "$v", "@host/"][..], "user-info"),
            // A variable followed by another one could still be inside the authority.
            (&["https://shop.example.com", "$v", "$w"][..], "host"),
            (&["http", "$v", "://host/"][..], "scheme"),
        ] {
            let problem = url_template(bad).url_problem();
            let expected = format!("${{v}} is inside the URL's {component}");
            assert!(
                problem.as_ref().is_some_and(|p| p.contains(&expected)),
                "{bad:?}: {problem:?}"
            );
        }
        for fine in [
            &["$v"][..],
            &["$v", "/x"][..],
            &["https://shop.example.com", "$v"][..],
            &["http://127.0.0.1:8080", "$v"][..],
            &["http://[::1]:8080", "$v", "?a=", "$w"][..],
            &["https://shop.example.com", "$v", "/x/", "$w"][..],
            &["https://shop.example.com/a/", "$v"][..],
            &["https://shop.example.com?q=", "$v"][..],
            &["https://shop.example.com#", "$v"][..],
            &["https://api-.example.com/", "$v", ".json"][..],
        ] {
            assert_eq!(url_template(fine).url_problem(), None, "{fine:?}");
        }
    }

    #[test]
    fn a_variable_cannot_change_the_origin() {
        for (parts, value, change) in [
            (
                &["http://127.0.0.1:8080", "$v"][..],
                "@localhost:8080/steal",
                "would change the URL's user-info",
            ),
            (
                &["http://127.0.0.1:80", "$v"][..],
                "81/",
                "port from 80 to 8081",
            ),
            (
                &["http://127.0.0.1", "$v"][..],
                ".evil.example/",
                "host from 127.0.0.1 to 127.0.0.1.evil.example",
            ),
            (
                &["http://", "$v", "/x"][..],
                "evil.example",
                "would change the URL's host",
            ),
        ] {
            let Err(Failure { reason, detail }) = fill(parts, value) else {
                panic!("{parts:?} with {value:?} was accepted");
            };
            assert_eq!(reason, FailureReason::Extract, "{detail}");
            assert!(detail.contains(change), "{change:?} not in {detail:?}");
            assert!(detail.contains("variable ${v}"), "{detail}");
        }
    }

    #[test]
    fn short_values_are_not_redacted() {
        let mut sensitive = Sensitive::default();
        sensitive.add("ok");
        sensitive.add("s3cr3t-token");
        assert_eq!(sensitive.redact("ok s3cr3t-token"), "ok <redacted>");
    }
}
