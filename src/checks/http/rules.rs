//! The expectations blackbox_exporter users bring: the response's HTTP version
//! (`expect.http_versions`), header rules with `allow_missing` (`expect.headers_match`,
//! `expect.headers_not_match`) and a CEL expression over the JSON body (`expect.json_cel`).

use std::sync::Arc;

use http::{HeaderName, Version};
use regex::Regex;

use super::{Received, quote_short};
use crate::result::{Failure, FailureReason, HttpDetails};

/// Most header values quoted in a failure's detail.
const QUOTED_VALUES: usize = 3;

/// One of `expect.headers_match` or `expect.headers_not_match`: blackbox_exporter's
/// `fail_if_header_not_matches` and `fail_if_header_matches`.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// The header, every value of which (each field line) is tried.
    pub name: HeaderName,
    /// What a value must (`headers_match`) or must not (`headers_not_match`) match.
    pub regex: Regex,
    /// A response without the header passes the rule; otherwise it fails it.
    pub allow_missing: bool,
}

/// `expect.json_cel`: a CEL expression over the decoded JSON body, bound as `body`, that must
/// be `true` (blackbox_exporter's `fail_if_body_json_not_matches_cel`).
#[derive(Clone)]
pub struct CelExpect {
    /// The expression as written.
    pub source: String,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for CelExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelExpect")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CelExpect {
    /// Compiles `source`; a syntax error is `Err` with its line and column in `source`
    /// (1-based) and the parser's message.
    pub fn compile(source: &str) -> Result<CelExpect, (usize, usize, String)> {
        match cel::Program::compile(source) {
            Ok(program) => Ok(CelExpect {
                source: source.to_string(),
                program: Arc::new(program),
            }),
            Err(errors) => {
                let first = errors.errors.first();
                let (line, column) = first.map_or((1, 1), |error| {
                    (
                        usize::try_from(error.pos.0).unwrap_or(1).max(1),
                        usize::try_from(error.pos.1).unwrap_or(0) + 1,
                    )
                });
                let message = first.map_or_else(|| errors.to_string(), |error| error.msg.clone());
                Err((line, column, message))
            }
        }
    }

    /// Evaluates the expression with `body` bound to `document`.
    fn eval(&self, document: &serde_json::Value) -> Result<bool, String> {
        let mut context = cel::Context::default();
        context.add_variable_from_value("body", to_cel(document));
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(verdict)) => Ok(verdict),
            Ok(other) => Err(format!(
                "gave {} {}, not a boolean",
                article(&other.type_of().to_string()),
                other.type_of()
            )),
            Err(error) => Err(format!(
                "could not be evaluated: {}",
                short(&error.to_string())
            )),
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// An error's text, cut to 200 characters (it may quote values of the body).
fn short(text: &str) -> String {
    const LIMIT: usize = 200;
    if text.chars().count() <= LIMIT {
        text.to_string()
    } else {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut}…")
    }
}

/// A JSON value as CEL sees it. Numbers are doubles, as blackbox_exporter's JSON decoding
/// makes them (CEL compares them with integers by value: `body.count == 3` holds for `3`).
fn to_cel(value: &serde_json::Value) -> cel::Value {
    match value {
        serde_json::Value::Null => cel::Value::Null,
        serde_json::Value::Bool(b) => cel::Value::Bool(*b),
        serde_json::Value::Number(n) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            cel::Value::List(Arc::new(items.iter().map(to_cel).collect()))
        }
        serde_json::Value::Object(map) => cel::Value::Map(cel::objects::Map {
            map: Arc::new(
                map.iter()
                    .map(|(key, value)| {
                        (
                            cel::objects::Key::String(Arc::new(key.clone())),
                            to_cel(value),
                        )
                    })
                    .collect(),
            ),
        }),
    }
}

/// A version as blackbox_exporter's `valid_http_versions` spells it: Go's `resp.Proto`.
pub(crate) fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// The version a name in `expect.http_versions` means: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2` or
/// `HTTP/2.0`.
pub(crate) fn parse_version(name: &str) -> Option<Version> {
    match name {
        "HTTP/1.0" => Some(Version::HTTP_10),
        "HTTP/1.1" => Some(Version::HTTP_11),
        "HTTP/2" | "HTTP/2.0" => Some(Version::HTTP_2),
        _ => None,
    }
}

/// The final response's version is one of `versions` (none: any).
pub(crate) fn expect_version(versions: &[Version], received: &Received) -> Result<(), Failure> {
    if versions.is_empty() || versions.contains(&received.version) {
        return Ok(());
    }
    let wanted: Vec<&str> = versions.iter().map(|v| version_name(*v)).collect();
    Err(Failure::new(
        FailureReason::HttpVersion,
        format!(
            "expected HTTP version {} (expect.http_versions), got {}",
            wanted.join(" or "),
            version_name(received.version)
        ),
    ))
}

/// `headers_not_match`, then `headers_match`, in blackbox_exporter's order; a failure also
/// sets `probe_failed_due_to_regex`, as there.
pub(crate) fn expect_header_rules(
    must_not: &[HeaderRule],
    must: &[HeaderRule],
    received: &Received,
    details: &mut HttpDetails,
) -> Result<(), Failure> {
    let verdict = must_not
        .iter()
        .try_for_each(|rule| check_rule(rule, false, received))
        .and_then(|()| {
            must.iter()
                .try_for_each(|rule| check_rule(rule, true, received))
        });
    if verdict.is_err() {
        details.failed_due_to_regex = true;
    }
    verdict
}

fn check_rule(rule: &HeaderRule, must_match: bool, received: &Received) -> Result<(), Failure> {
    let name = &rule.name;
    let regex = &rule.regex;
    let values: Vec<String> = received
        .headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    let key = if must_match {
        "headers_match"
    } else {
        "headers_not_match"
    };
    if values.is_empty() {
        if rule.allow_missing {
            return Ok(());
        }
        return Err(Failure::new(
            FailureReason::Header,
            format!(
                "expected header {name} (expect.{key} /{regex}/), but the response has no {name} header (allow_missing = false)"
            ),
        ));
    }
    let matched = values.iter().find(|value| regex.is_match(value));
    match (must_match, matched) {
        (true, None) => Err(Failure::new(
            FailureReason::Header,
            format!(
                "expected a {name} header matching /{regex}/ (expect.headers_match), got {}",
                quote_values(&values)
            ),
        )),
        (false, Some(value)) => Err(Failure::new(
            FailureReason::Header,
            format!(
                "expected no {name} header matching /{regex}/ (expect.headers_not_match), got {}",
                quote_short(value)
            ),
        )),
        _ => Ok(()),
    }
}

fn quote_values(values: &[String]) -> String {
    let mut quoted: Vec<String> = values
        .iter()
        .take(QUOTED_VALUES)
        .map(|value| quote_short(value))
        .collect();
    if values.len() > QUOTED_VALUES {
        quoted.push(format!("and {} more", values.len() - QUOTED_VALUES));
    }
    quoted.join(", ")
}

/// `json_cel` holds for the whole body, parsed as JSON. A body cut at `max_body`, one that is
/// not JSON, an expression that errs or gives something else than a boolean all fail it.
pub(crate) fn expect_cel(cel: Option<&CelExpect>, received: &Received) -> Result<(), Failure> {
    let Some(cel) = cel else {
        return Ok(());
    };
    let shown = quote_short(&cel.source);
    if received.total_len > received.body.len() as u64 {
        return Err(Failure::new(
            FailureReason::Json,
            format!(
                "json_cel {shown} needs the whole body, but it is {} bytes, over max_body ({} kept)",
                received.total_len,
                received.body.len()
            ),
        ));
    }
    let document: serde_json::Value = serde_json::from_slice(&received.body).map_err(|error| {
        Failure::new(
            FailureReason::Json,
            format!("json_cel {shown} needs a JSON body, but it does not parse: {error}"),
        )
    })?;
    match cel.eval(&document) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(
            FailureReason::Json,
            format!("json_cel {shown} was false for the body"),
        )),
        Err(error) => Err(Failure::new(
            FailureReason::Json,
            format!("json_cel {shown} {error}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(source: &str, body: serde_json::Value) -> Result<bool, String> {
        CelExpect::compile(source).unwrap().eval(&body)
    }

    #[test]
    fn cel_sees_the_body() {
        let body = serde_json::json!({"foo": "bar", "baz": "quux", "count": 3, "items": [1, 2]});
        assert_eq!(
            eval(
                "body.foo == 'bar' && body.baz.startsWith('q')",
                body.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            eval("body.count == 3 && body.count > 2", body.clone()),
            Ok(true)
        );
        assert_eq!(eval("size(body.items) == 2", body.clone()), Ok(true));
        assert_eq!(eval("body.foo == 'baz'", body.clone()), Ok(false));
        assert!(
            eval("body.foo", body.clone())
                .unwrap_err()
                .contains("not a boolean")
        );
        assert!(
            eval("body.missing == 1", body)
                .unwrap_err()
                .contains("could not be evaluated")
        );
    }

    #[test]
    fn a_syntax_error_has_a_position() {
        let (line, column, message) = CelExpect::compile("body.foo == ").unwrap_err();
        assert_eq!(line, 1);
        assert!(column >= 1, "{column}");
        assert!(!message.is_empty());
        let (line, _, _) = CelExpect::compile("body.foo == 'a' &&\n  (").unwrap_err();
        assert_eq!(line, 2);
    }

    #[test]
    fn versions_are_spelt_as_blackbox_does() {
        assert_eq!(parse_version("HTTP/2"), Some(Version::HTTP_2));
        assert_eq!(parse_version("HTTP/2.0"), Some(Version::HTTP_2));
        assert_eq!(parse_version("HTTP/1.1"), Some(Version::HTTP_11));
        assert_eq!(parse_version("HTTP/3.0"), None);
        assert_eq!(version_name(Version::HTTP_2), "HTTP/2.0");
    }
}
