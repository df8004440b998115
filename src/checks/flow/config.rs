//! The keys of a `flow` check: its steps, their templates, extractions and TOTP secrets.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeValue;

use super::{Extractor, FlowBody, FlowSpec, FlowStep, JsonTemplate, Part, Template};
use crate::checks::http::config::read_request_options;
use crate::reader::header_name;
use crate::reader::{Diags, Piece, Table, Value, compile_regex, type_name};

/// Reads a `flow` check (`spec::read_spec` dispatches
/// here). Returns the spec and the first step's URL as the target.
pub(crate) fn read(
    table: &Table<'_>,
    cx: &mut crate::reader::SpecCx<'_>,
) -> Option<(FlowSpec, String)> {
    let secrets = &mut *cx.secrets;
    let d = table.diags();
    let Some(items) = table.array("steps") else {
        table.missing(
            "steps",
            "add [[check.steps]] tables, each with a name and a url",
        );
        return None;
    };
    if items.is_empty() {
        let span = table.key_span("steps").unwrap_or_else(|| table.span());
        d.error(&span, "a flow needs at least one step");
        return None;
    }
    let mut defined: BTreeSet<String> = BTreeSet::new();
    let mut names: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    let mut ok = true;
    for (idx, item) in items.into_iter().enumerate() {
        let Some(step) = Table::new(
            d,
            item,
            format!("step #{} of {}", idx + 1, table.what()),
            table.items_section("steps"),
        ) else {
            ok = false;
            continue;
        };
        match read_step(step, &mut defined, &mut names, secrets) {
            Some(step) => steps.push(step),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let target = steps
        .first()
        .map(|step| {
            step.url
                .parts
                .iter()
                .map(|part| match part {
                    Part::Text(text) => text.clone(),
                    Part::Var(name) => format!("${{{name}}}"),
                    Part::Totp(_) => "<totp>".to_string(),
                })
                .collect::<String>()
        })
        .and_then(|text| {
            url::Url::parse(&text)
                .ok()
                .map(|url| crate::checks::http::show_url(&url))
                .or(Some(text))
        })
        .unwrap_or_default();
    Some((FlowSpec { steps }, target))
}

fn read_step(
    step: Table<'_>,
    defined: &mut BTreeSet<String>,
    names: &mut Vec<String>,
    secrets: &mut Vec<String>,
) -> Option<FlowStep> {
    let d = step.diags();
    let errors_before = d.error_count();
    let name = read_step_name(&step, names);
    let step = match &name {
        Some(name) => {
            let what = format!("step {name:?}");
            step.renamed(what)
        }
        None => step,
    };
    let url = read_url(&step, defined, secrets);
    let headers = read_headers(&step, defined, secrets);
    let basic_auth = read_basic_auth(&step, defined, secrets);
    let body = read_body(&step, defined, secrets);
    let timeout = step
        .duration("timeout")
        .map(|(limit, _): (Duration, _)| limit);
    let options = read_request_options(&step);
    let proxy = crate::checks::http::proxy::config::read(&step, secrets);
    let (extract, newly_defined) = read_extract(&step);
    step.finish();
    defined.extend(newly_defined);
    if d.error_count() > errors_before {
        return None;
    }
    let options = options?;
    let proxy = proxy.ok()?;
    Some(FlowStep {
        name: name?,
        method: options.method,
        url: url?,
        headers,
        basic_auth,
        body,
        follow_redirects: options.follow_redirects,
        max_redirects: options.max_redirects,
        timeout,
        ip: options.ip,
        version: options.version,
        tls: options.tls,
        max_body: options.max_body,
        expect: options.expect,
        extract,
        proxy,
    })
}

/// A step's `name`: valid and unique among the flow's steps (`names`, read so far).
fn read_step_name(step: &Table<'_>, names: &mut Vec<String>) -> Option<String> {
    let d = step.diags();
    let Some((name, span)) = step.str("name") else {
        step.missing("name", "name every step, like name = \"login-page\"");
        return None;
    };
    if !crate::reader::valid_check_name(name) {
        d.error_hint(
            &span,
            format!("step name {name:?} is not valid"),
            "use lowercase letters, digits, `-` and `_`",
        );
    } else if names.iter().any(|known| known == name) {
        d.error_hint(
            &span,
            format!("duplicate step name {name:?}"),
            "step names are unique within a flow",
        );
    }
    names.push(name.to_string());
    Some(name.to_string())
}

/// A step's `url`: a template whose scheme, host and port are literal.
fn read_url(
    step: &Table<'_>,
    defined: &BTreeSet<String>,
    secrets: &mut Vec<String>,
) -> Option<Template> {
    let d = step.diags();
    let Some((text, span)) = step.str("url") else {
        step.missing(
            "url",
            "set the URL to request, like url = \"https://shop.example.com/login\"",
        );
        return None;
    };
    let url = template(d, text, &span, defined, secrets)?;
    let Some(problem) = url.url_problem() else {
        return Some(url);
    };
    d.error_hint(
        &span,
        problem,
        "write the scheme, host and port literally (credentials go in basic_auth) and put variables after them, like \"https://shop.example.com${next}\" or \"https://shop.example.com/t/${tenant}\", or make the whole URL a variable, like \"${next}\"",
    );
    None
}

/// A step's `headers`, and its `bearer_token` as an `Authorization` header.
fn read_headers(
    step: &Table<'_>,
    defined: &BTreeSet<String>,
    secrets: &mut Vec<String>,
) -> Vec<(http::HeaderName, Template)> {
    let d = step.diags();
    let mut headers = Vec::new();
    for entry in step.str_map("headers").unwrap_or_default() {
        let Some(name) = header_name(d, entry.key, &entry.key_span) else {
            continue;
        };
        if let Some(value) = template(d, entry.value, &entry.value_span, defined, secrets) {
            headers.push((name, value));
        }
    }
    if let Some((token, span)) = step.str("bearer_token")
        && let Some(token) = template(d, token, &span, defined, secrets)
    {
        let mut parts = vec![Part::Text("Bearer ".to_string())];
        parts.extend(token.parts);
        headers.push((http::header::AUTHORIZATION, Template { parts }));
    }
    headers
}

/// A step's `basic_auth` table: a `username` and a `password`, both templates.
fn read_basic_auth(
    step: &Table<'_>,
    defined: &BTreeSet<String>,
    secrets: &mut Vec<String>,
) -> Option<(Template, Template)> {
    let d = step.diags();
    let auth = step.table("basic_auth", format!("`basic_auth` of {}", step.what()))?;
    let user = auth.str("username");
    let password = auth.str("password");
    let built = match (user, password) {
        (Some((user, user_span)), Some((password, password_span))) => template(
            d, user, &user_span, defined, secrets,
        )
        .zip(template(d, password, &password_span, defined, secrets)),
        _ => {
            auth.missing(
                "username` and `password",
                "basic_auth = { username = \"probe\", password = \"${env:PROBE_PASSWORD}\" }",
            );
            None
        }
    };
    auth.finish();
    built
}

/// A step's body: one of `body` (raw), `form` and `json`, each made of templates.
fn read_body(step: &Table<'_>, defined: &BTreeSet<String>, secrets: &mut Vec<String>) -> FlowBody {
    let d = step.diags();
    let raw = step.str("body");
    let form = step.str_map("form");
    let json = step.get("json");
    match (raw, form, json) {
        (None, None, None) => FlowBody::None,
        (Some((text, span)), None, None) => match template(d, text, &span, defined, secrets) {
            Some(body) => FlowBody::Raw(body),
            None => FlowBody::None,
        },
        (None, Some(entries), None) => {
            let mut fields = Vec::new();
            for entry in entries {
                if let Some(value) = template(d, entry.value, &entry.value_span, defined, secrets) {
                    fields.push((entry.key.to_string(), value));
                }
            }
            FlowBody::Form(fields)
        }
        (None, None, Some(value)) => match json_template(d, value, defined, secrets) {
            Some(body) => FlowBody::Json(body),
            None => FlowBody::None,
        },
        _ => {
            d.error_hint(
                &step.span(),
                format!(
                    "{} sets more than one of `body`, `form` and `json`",
                    step.what()
                ),
                "keep one",
            );
            FlowBody::None
        }
    }
}

/// A step's `extract` table: the valid rules, and every variable it declares (even those
/// whose rule has a problem).
fn read_extract(step: &Table<'_>) -> (Vec<(String, Extractor)>, Vec<String>) {
    let d = step.diags();
    let mut extract = Vec::new();
    let mut newly_defined = Vec::new();
    let Some(table) = step.table("extract", format!("`extract` of {}", step.what())) else {
        return (extract, newly_defined);
    };
    let what = step.what().to_string();
    for (variable, rule) in table.subtables(|name| format!("`extract.{name}` of {what}")) {
        if !valid_variable(variable) {
            d.error_hint(
                &rule.span(),
                format!("{variable:?} is not a valid variable name"),
                "use letters, digits and `_`, like csrf_token",
            );
        }
        let extractor = read_extractor(&rule);
        rule.finish();
        // Declared even when the rule or the step has a problem: later steps that use
        // the variable are not wrong, and saying so would bury the one real problem.
        newly_defined.push(variable.to_string());
        if let Some(extractor) = extractor {
            extract.push((variable.to_string(), extractor));
        }
    }
    table.finish();
    (extract, newly_defined)
}

fn valid_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_extractor(rule: &Table<'_>) -> Option<Extractor> {
    let d = rule.diags();
    let mut found = Vec::new();
    if let Some((pattern, span)) = rule.str("regex") {
        match compile_regex(pattern) {
            Ok(regex) => found.push(Extractor::Regex(regex)),
            Err(message) => d.error(&span, format!("invalid regex: {message}")),
        }
    }
    if let Some((pointer, span)) = rule.str("json_pointer") {
        if pointer.is_empty() || pointer.starts_with('/') {
            found.push(Extractor::JsonPointer(pointer.to_string()));
        } else {
            d.error_hint(
                &span,
                format!("JSON pointer {pointer:?} must start with `/`"),
                format!("did you mean \"/{pointer}\"?"),
            );
        }
    }
    if let Some((header, span)) = rule.str("header")
        && let Some(name) = header_name(d, header, &span)
    {
        found.push(Extractor::Header(name));
    }
    if let Some((cookie, _)) = rule.str("cookie") {
        found.push(Extractor::Cookie(cookie.to_string()));
    }
    if let Some((field, span)) = rule.str("form_field") {
        if field.is_empty() || field.contains(['"', '\\', '\n']) {
            d.error(&span, format!("{field:?} is not a usable form field name"));
        } else {
            found.push(Extractor::FormField(field.to_string()));
        }
    }
    match found.len() {
        1 => found.pop(),
        0 => {
            d.error_hint(
                &rule.span(),
                format!("{} says nothing to extract", rule.what()),
                "use one of regex, json_pointer, header, cookie or form_field, like { form_field = \"csrf_token\" }",
            );
            None
        }
        _ => {
            d.error_hint(
                &rule.span(),
                format!("{} sets more than one way to extract", rule.what()),
                "keep one of regex, json_pointer, header, cookie and form_field",
            );
            None
        }
    }
}

/// Parses a string with `${env:..}`/`${file:..}` (resolved now, kept as secrets),
/// `${totp:env:NAME}`/`${totp:file:PATH}` (a TOTP code at run time) and `${variable}`
/// (extracted by an earlier step).
fn template(
    d: &Diags<'_>,
    text: &str,
    span: &Range<usize>,
    defined: &BTreeSet<String>,
    secrets: &mut Vec<String>,
) -> Option<Template> {
    let mut parts = Vec::new();
    let mut ok = true;
    for piece in d.pieces(text, span)? {
        let part = match piece {
            Piece::Text(literal) => Some(Part::Text(literal)),
            Piece::Ref(reference) => match reference.strip_prefix("totp:") {
                Some(source) => totp_part(d, source, &reference, span, secrets),
                None => reference_part(d, reference, span, defined, secrets),
            },
        };
        match part {
            Some(part) => parts.push(part),
            None => ok = false,
        }
    }
    ok.then_some(Template { parts })
}

/// `${totp:SOURCE}` (`reference`): a TOTP generator for the secret at `source`. `None` if
/// there is a problem (reported unless the secret's own lookup reported it).
fn totp_part(
    d: &Diags<'_>,
    source: &str,
    reference: &str,
    span: &Range<usize>,
    secrets: &mut Vec<String>,
) -> Option<Part> {
    match d.secret(source, span) {
        Some(Some(secret)) => match totp(&secret) {
            Some(totp) => {
                secrets.push(secret);
                Some(Part::Totp(Arc::new(totp)))
            }
            None => {
                d.error_hint(
                    span,
                    format!("the TOTP secret from ${{{source}}} is not base32"),
                    "give the secret as shown under the QR code, like JBSWY3DPEHPK3PXP",
                );
                None
            }
        },
        Some(None) => {
            d.error_hint(
                span,
                format!("unknown TOTP secret source ${{{reference}}}"),
                "use ${totp:env:NAME} or ${totp:file:PATH}",
            );
            None
        }
        None => None,
    }
}

/// `${env:..}`/`${file:..}` (resolved now, kept as a secret) or `${variable}` (extracted by
/// an earlier step, one of `defined`). `None` if there is a problem.
fn reference_part(
    d: &Diags<'_>,
    reference: String,
    span: &Range<usize>,
    defined: &BTreeSet<String>,
    secrets: &mut Vec<String>,
) -> Option<Part> {
    match d.secret(&reference, span) {
        Some(Some(value)) => {
            if !value.is_empty() {
                secrets.push(value.clone());
            }
            Some(Part::Text(value))
        }
        Some(None) if valid_variable(&reference) => {
            if defined.contains(&reference) {
                return Some(Part::Var(reference));
            }
            let known: Vec<&str> = defined.iter().map(String::as_str).collect();
            let hint = if known.is_empty() {
                "extract it in an earlier step, like extract = { csrf = { form_field = \"csrf_token\" } }".to_string()
            } else {
                format!("earlier steps extract: {}", known.join(", "))
            };
            d.error_hint(
                span,
                format!("variable ${{{reference}}} is not extracted by an earlier step"),
                hint,
            );
            None
        }
        Some(None) => {
            d.error_hint(
                span,
                format!("unknown reference ${{{reference}}}"),
                "use ${env:NAME}, ${file:PATH}, ${totp:env:NAME} or a variable extracted earlier; write $${ for a literal ${",
            );
            None
        }
        None => None,
    }
}

/// A TOTP generator (RFC 6238: SHA-1, 30 s, 6 digits) for a base32 secret; short real-world
/// secrets (80 bits) are accepted.
fn totp(secret: &str) -> Option<totp_rs::Totp> {
    let cleaned: String = secret
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let secret = totp_rs::Secret::try_from_base32(&cleaned).ok()?;
    if secret.as_bytes().len() < 10 {
        return None;
    }
    Some(
        totp_rs::Builder::new()
            .with_secret(secret)
            .build_noncompliant(),
    )
}

fn json_template(
    d: &Diags<'_>,
    value: &Value<'_>,
    defined: &BTreeSet<String>,
    secrets: &mut Vec<String>,
) -> Option<JsonTemplate> {
    Some(match value.get_ref() {
        DeValue::String(text) => {
            JsonTemplate::String(template(d, text, &value.span(), defined, secrets)?)
        }
        DeValue::Integer(_) => JsonTemplate::Literal(serde_json::Value::from(
            crate::reader::as_int(value.get_ref())?,
        )),
        DeValue::Float(f) => JsonTemplate::Literal(serde_json::Value::from(
            f.as_str().replace('_', "").parse::<f64>().ok()?,
        )),
        DeValue::Boolean(b) => JsonTemplate::Literal(serde_json::Value::Bool(*b)),
        DeValue::Array(items) => JsonTemplate::Array(
            items
                .iter()
                .map(|item| json_template(d, item, defined, secrets))
                .collect::<Option<Vec<_>>>()?,
        ),
        DeValue::Table(table) => JsonTemplate::Object(
            table
                .iter()
                .map(|(key, item)| {
                    Some((
                        key.get_ref().to_string(),
                        json_template(d, item, defined, secrets)?,
                    ))
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        other => {
            d.error(
                &value.span(),
                format!("a JSON body cannot hold {}", type_name(other)),
            );
            return None;
        }
    })
}
