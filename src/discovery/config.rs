//! The reader of `targets_from`: an array of inline tables, each one source (`file` or
//! `files`, `http`, `dns`) with its options, every problem reported at its place with a hint.
//! The HTTP source's auth, headers and `tls` table are read by the http check's readers, so
//! they take the same keys and secrets (`${env:..}`, `${file:..}`) as an http check.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::{DnsSource, FileSource, HttpSource, RecordKind, Source};
use crate::checks::HttpSpec;
use crate::checks::http::HttpOptions;
use crate::net::HostPort;
use crate::reader::{ConfigError, Diags, Env, Source as Text, Table, Unresolved};

/// `refresh` of a file source: the full re-read behind the watch.
const FILE_REFRESH: Duration = Duration::from_secs(300);
/// `refresh` of an HTTP source (Prometheus's default).
const HTTP_REFRESH: Duration = Duration::from_secs(60);
/// `refresh` of a DNS source (Prometheus's default).
const DNS_REFRESH: Duration = Duration::from_secs(30);
/// `timeout` of an HTTP fetch or a DNS query.
const TIMEOUT: Duration = Duration::from_secs(10);
/// `max_body` of an HTTP source: 50,000 targets with labels fit in a few MiB.
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// The keys that say what kind of source a table is.
const KINDS: [&str; 4] = ["file", "files", "http", "dns"];
/// Every key of some kind of source: a table whose kind is unclear reports none of them as
/// unknown.
const EVERY_KEY: [&str; 14] = [
    "file",
    "files",
    "http",
    "dns",
    "refresh",
    "timeout",
    "max_body",
    "basic_auth",
    "bearer_token",
    "headers",
    "tls",
    "type",
    "port",
    "server",
];

/// Reads `key` of `table` (`targets_from`): `None` when absent or after a problem (reported
/// at its place). Secret values the sources hold are added to `secrets`.
pub(crate) fn read_sources(
    table: &Table<'_>,
    key: &'static str,
    secrets: &mut Vec<String>,
) -> Option<Vec<Source>> {
    let d = table.diags();
    let items = table.array(key)?;
    if items.is_empty() {
        let span = table.key_span(key).unwrap_or_else(|| table.span());
        d.error_hint(
            &span,
            format!("`{key}` in {} lists no source", table.what()),
            "list at least one, like targets_from = [{ file = \"sd/*.json\" }]",
        );
        return None;
    }
    let mut sources = Vec::with_capacity(items.len());
    let mut ok = true;
    for (idx, item) in items.into_iter().enumerate() {
        let what = format!("`{key}[{idx}]` of {}", table.what());
        let Some(entry) = Table::new(d, item, what, table.items_section(key)) else {
            ok = false;
            continue;
        };
        match read_source(&entry, secrets) {
            Some(source) => sources.push(source),
            None => ok = false,
        }
        entry.finish();
    }
    ok.then_some(sources)
}

/// One source table.
fn read_source(entry: &Table<'_>, secrets: &mut Vec<String>) -> Option<Source> {
    let d = entry.diags();
    let present: Vec<&str> = KINDS
        .into_iter()
        .filter(|kind| entry.key_span(kind).is_some())
        .collect();
    match present.as_slice() {
        ["file"] | ["files"] => read_file(entry).map(Source::File),
        ["http"] => read_http(entry, secrets).map(Source::Http),
        ["dns"] => read_dns(entry).map(Source::Dns),
        [] => {
            d.error_hint(
                &entry.span(),
                format!("{} names no source", entry.what()),
                "give one of { file = \"sd/*.json\" }, { http = \"https://...\" } or { dns = \"_https._tcp.example.com\" }",
            );
            // Every source key known, so a misspelt kind's hint suggests the right one.
            for key in EVERY_KEY {
                let _ = entry.get(key);
            }
            None
        }
        several => {
            let second = entry.key_span(several[1]).unwrap_or_else(|| entry.span());
            d.error_hint(
                &second,
                format!(
                    "{} sets both `{}` and `{}`",
                    entry.what(),
                    several[0],
                    several[1]
                ),
                "one source per table: list each in its own { ... }",
            );
            for key in EVERY_KEY {
                let _ = entry.get(key);
            }
            None
        }
    }
}

/// `refresh` (or `timeout`) with its default.
fn duration_or(entry: &Table<'_>, key: &'static str, default: Duration) -> Option<Duration> {
    // Asked for even when absent, so a misspelling's hint can name it.
    if entry.get(key).is_none() {
        return Some(default);
    }
    entry.duration(key).map(|(duration, _)| duration)
}

/// `{ file = "..." }` or `{ files = [...] }`, and `refresh`.
fn read_file(entry: &Table<'_>) -> Option<FileSource> {
    let d = entry.diags();
    let written: Vec<(&str, Range<usize>)> = match entry.str("file") {
        Some(one) => vec![one],
        None => entry.str_list("files")?,
    };
    if written.is_empty() {
        let span = entry.key_span("files").unwrap_or_else(|| entry.span());
        d.error_hint(
            &span,
            "`files` lists no file",
            "like files = [\"sd/web.json\", \"sd/db-*.yml\"]",
        );
        return None;
    }
    let base = d.src.path.parent().unwrap_or(Path::new(""));
    let mut patterns = Vec::with_capacity(written.len());
    let mut ok = true;
    for (text, span) in &written {
        match file_pattern(d, text, span) {
            Some(pattern) => patterns.push(base.join(pattern)),
            None => ok = false,
        }
    }
    let refresh = duration_or(entry, "refresh", FILE_REFRESH);
    let (true, Some(refresh)) = (ok, refresh) else {
        return None;
    };
    Some(FileSource {
        patterns,
        shown: written.iter().map(|(text, _)| text.to_string()).collect(),
        refresh,
    })
}

/// A file_sd pattern as Prometheus allows it: `.json`, `.yml` or `.yaml`, wildcards only in
/// the last path element.
fn file_pattern(d: &Diags<'_>, text: &str, span: &Range<usize>) -> Option<PathBuf> {
    let path = PathBuf::from(text);
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let extension = Path::new(name)
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase);
    if text.contains("${") {
        d.error_hint(
            span,
            format!("file pattern {text:?} holds a reference"),
            "file patterns are paths, read as written",
        );
        return None;
    }
    if !matches!(extension.as_deref(), Some("json" | "yml" | "yaml")) {
        d.error_hint(
            span,
            format!("file_sd file {text:?} is neither JSON nor YAML by its name"),
            "name files *.json, *.yml or *.yaml, as Prometheus's file_sd wants them",
        );
        return None;
    }
    let parent = path.parent().map(|dir| dir.to_string_lossy().into_owned());
    if parent.is_some_and(|dir| dir.contains(['*', '?', '[', '{'])) || name.contains(['[', '{']) {
        d.error_hint(
            span,
            format!("file pattern {text:?} has wildcards outside its last path element, or brackets"),
            "only the file name may hold `*` and `?`, like \"sd/*.json\" (as in Prometheus's file_sd)",
        );
        return None;
    }
    Some(path)
}

/// `{ http = "https://..." }` with `refresh`, `timeout`, `max_body`, auth, `headers` and
/// `tls`.
fn read_http(entry: &Table<'_>, check_secrets: &mut Vec<String>) -> Option<HttpSource> {
    let d = entry.diags();
    let mut secrets = Vec::new();
    let url = entry
        .str("http")
        .and_then(|(text, span)| http_url(d, text, &span, &mut secrets));
    let refresh = duration_or(entry, "refresh", HTTP_REFRESH);
    let timeout = duration_or(entry, "timeout", TIMEOUT);
    let max_body = if entry.get("max_body").is_some() {
        entry.size("max_body")
    } else {
        Some(MAX_BODY)
    };
    let (mut headers, headers_ok) = crate::checks::http::config::read_headers(entry, &mut secrets);
    let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = crate::checks::tls::config::read_tls_options(entry, alpn, true);
    check_secrets.extend(secrets.iter().cloned());
    let (Some(url), Some(refresh), Some(timeout), Some(max_body), true, Some(tls)) =
        (url, refresh, timeout, max_body, headers_ok, tls)
    else {
        return None;
    };
    add_default(&mut headers, http::header::ACCEPT, "application/json");
    let seconds = refresh.as_secs_f64().to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        headers.push((
            HeaderName::from_static("x-prometheus-refresh-interval-seconds"),
            value,
        ));
    }
    // A secret in the path (`/targets/${env:TOKEN}`) is redacted from what is shown.
    let shown = crate::text::redact(&secrets, &crate::checks::http::show_url(&url));
    let spec = HttpSpec::new(
        url,
        HttpOptions {
            headers,
            follow_redirects: true,
            max_redirects: 5,
            max_body,
            ..HttpOptions::internal(Method::GET, tls)
        },
    );
    Some(HttpSource {
        spec: Arc::new(spec),
        shown,
        refresh,
        timeout,
        secrets: Arc::new(secrets),
    })
}

/// Adds `name: value` unless the configured headers set it.
fn add_default(
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    name: HeaderName,
    value: &'static str,
) {
    if !headers.iter().any(|(known, _)| *known == name) {
        headers.push((name, HeaderValue::from_static(value)));
    }
}

/// The URL of an HTTP source, its references expanded (errors show it as written).
fn http_url(
    d: &Diags<'_>,
    text: &str,
    span: &Range<usize>,
    secrets: &mut Vec<String>,
) -> Option<url::Url> {
    let expanded = d.interpolate(text, span)?;
    secrets.extend(expanded.secrets);
    match url::Url::parse(&expanded.value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        Ok(_) => {
            d.error_hint(
                span,
                format!("HTTP SD URL {text:?} is not an http or https URL with a host"),
                "like http = \"https://sd.example.com/targets\"",
            );
            None
        }
        Err(error) => {
            d.error_hint(
                span,
                format!("invalid HTTP SD URL {text:?}: {error}"),
                "like http = \"https://sd.example.com/targets\"",
            );
            None
        }
    }
}

/// `{ dns = "..." }` with `type`, `port`, `server`, `refresh` and `timeout`.
fn read_dns(entry: &Table<'_>) -> Option<DnsSource> {
    let d = entry.diags();
    let name = entry.str("dns").and_then(|(text, span)| {
        let name = text.trim();
        let valid = !name.is_empty()
            && name.len() <= 253
            && hickory_resolver::proto::rr::Name::from_ascii(name).is_ok();
        if !valid {
            d.error_hint(
                &span,
                format!("{text:?} is not a DNS name"),
                "like dns = \"_https._tcp.example.com\"",
            );
        }
        valid.then(|| name.to_string())
    });
    let record = match entry.str("type") {
        None => Some(RecordKind::Srv),
        Some((text, span)) => match text.to_ascii_uppercase().as_str() {
            "SRV" => Some(RecordKind::Srv),
            "A" => Some(RecordKind::A),
            "AAAA" => Some(RecordKind::Aaaa),
            _ => {
                d.error_hint(
                    &span,
                    format!("DNS SD type {text:?} is not supported"),
                    "use \"SRV\" (the default), \"A\" or \"AAAA\"",
                );
                None
            }
        },
    };
    let port = read_port(entry, record);
    let server = entry.str("server").and_then(|(text, span)| {
        let parsed = HostPort::parse(text, 53);
        if parsed.is_none() {
            d.error_hint(
                &span,
                format!("server {text:?} is not HOST[:PORT]"),
                "like server = \"192.0.2.53:53\"; leave it out for the system resolver",
            );
        }
        parsed.map(Some)
    });
    let server = if entry.key_span("server").is_none() {
        Some(None)
    } else {
        server
    };
    let refresh = duration_or(entry, "refresh", DNS_REFRESH);
    let timeout = duration_or(entry, "timeout", TIMEOUT);
    let (Some(name), Some(record), Some(port), Some(server), Some(refresh), Some(timeout)) =
        (name, record, port, server, refresh, timeout)
    else {
        return None;
    };
    Some(DnsSource {
        name,
        record,
        port,
        server,
        refresh,
        timeout,
    })
}

/// `port`: required for A and AAAA, refused for SRV (whose records carry theirs). `None`
/// after a problem; `Some(None)` for SRV.
fn read_port(entry: &Table<'_>, record: Option<RecordKind>) -> Option<Option<u16>> {
    let d = entry.diags();
    let port = entry.int("port");
    match (record?, port) {
        (RecordKind::Srv, None) => Some(None),
        (RecordKind::Srv, Some((_, span))) => {
            d.error_hint(
                &span,
                "`port` is set, but SRV records carry their own port",
                "leave `port` out, or set type = \"A\" or \"AAAA\" to give addresses a port",
            );
            None
        }
        (_, Some((port, span))) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(Some(port)),
            _ => {
                d.error(&span, format!("port {port} is not between 1 and 65535"));
                None
            }
        },
        (kind, None) => {
            if entry.key_span("port").is_none() {
                d.error_hint(
                    &entry.span(),
                    format!(
                        "{} asks for {} records but sets no `port`",
                        entry.what(),
                        kind.as_str()
                    ),
                    "addresses need a port to make targets, like port = 443",
                );
            }
            None
        }
    }
}

/// Reads `targets_from` from the top level of a TOML document (`path` names it in errors and
/// is where relative file patterns start): for tests and tools that want sources without a
/// whole configuration.
pub fn sources_from_toml(
    path: &Path,
    text: &str,
    env: &dyn Env,
) -> Result<Vec<Source>, Vec<ConfigError>> {
    let doc = toml::de::DeTable::parse(text).map_err(|error| {
        vec![ConfigError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: error.message().trim().to_string(),
            hint: None,
        }]
    })?;
    let src = Text::new(path.to_path_buf(), text.to_string());
    let unresolved = Unresolved::default();
    let d = Diags::new(&src, env, &unresolved);
    let table = Table::from_root(&d, doc.get_ref(), doc.span(), &crate::keys::SOURCES);
    let mut secrets = Vec::new();
    let sources = read_sources(&table, "targets_from", &mut secrets);
    if sources.is_none() && d.error_count() == 0 {
        table.missing(
            "targets_from",
            "like targets_from = [{ file = \"sd/*.json\" }]",
        );
    }
    table.finish();
    let errors = d.into_errors();
    match sources {
        Some(sources) if errors.is_empty() => Ok(sources),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::MapEnv;

    fn read(text: &str) -> Result<Vec<Source>, String> {
        sources_from_toml(
            Path::new("/etc/nightjar/checks.toml"),
            text,
            &MapEnv::default(),
        )
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn each_kind_reads_with_its_defaults() {
        let sources = read(
            r#"targets_from = [
                { file = "sd/*.json" },
                { files = ["/srv/a.yml", "b.yaml"], refresh = "1m" },
                { http = "https://user:pw@sd.example/targets?token=x", bearer_token = "t" },
                { dns = "_https._tcp.example.com" },
                { dns = "web.example.com", type = "aaaa", port = 443, server = "192.0.2.53" },
            ]"#,
        )
        .unwrap();
        let shown: Vec<String> = sources.iter().map(Source::describe).collect();
        assert_eq!(
            shown,
            [
                "file sd/*.json",
                "file /srv/a.yml,b.yaml",
                "http https://sd.example/targets",
                "dns SRV _https._tcp.example.com",
                "dns AAAA web.example.com @192.0.2.53:53",
            ]
        );
        let Source::File(file) = &sources[0] else {
            panic!()
        };
        assert_eq!(file.patterns, [PathBuf::from("/etc/nightjar/sd/*.json")]);
        assert_eq!(file.refresh, FILE_REFRESH);
        let Source::File(files) = &sources[1] else {
            panic!()
        };
        assert_eq!(files.patterns[0], PathBuf::from("/srv/a.yml"));
        assert_eq!(files.refresh, Duration::from_secs(60));
        let Source::Http(http) = &sources[2] else {
            panic!()
        };
        assert_eq!(http.refresh, HTTP_REFRESH);
        assert_eq!(http.spec.max_body, MAX_BODY);
        assert!(http.secrets.iter().any(|secret| secret == "Bearer t"));
        let header = |name: &str| {
            http.spec
                .headers
                .iter()
                .find(|(known, _)| known == name)
                .map(|(_, value)| value.to_str().unwrap().to_string())
        };
        assert_eq!(
            header("x-prometheus-refresh-interval-seconds").as_deref(),
            Some("60")
        );
        assert_eq!(header("accept").as_deref(), Some("application/json"));
        let Source::Dns(dns) = &sources[4] else {
            panic!()
        };
        assert_eq!((dns.record, dns.port), (RecordKind::Aaaa, Some(443)));
        assert_eq!(dns.refresh, DNS_REFRESH);
    }

    #[test]
    fn problems_have_places_and_hints() {
        let error =
            read("targets_from = [{ dns = \"web.example.com\", type = \"A\" }]").unwrap_err();
        assert!(
            error.contains(
                ":1:17: `targets_from[0]` of the file asks for A records but sets no `port`"
            ),
            "{error}"
        );
        let error = read("targets_from = [{ file = \"sd/*/x.json\" }]").unwrap_err();
        assert!(
            error.contains("wildcards outside its last path element"),
            "{error}"
        );
        let error = read("targets_from = [{ file = \"sd/targets.txt\" }]").unwrap_err();
        assert!(error.contains("neither JSON nor YAML"), "{error}");
        let error = read("targets_from = [{ http = \"ftp://sd.example/\" }]").unwrap_err();
        assert!(error.contains("not an http or https URL"), "{error}");
        let error = read("targets_from = [{ http = \"https://sd.example/\", refrsh = \"1m\" }]")
            .unwrap_err();
        assert!(
            error.contains("unknown key `refrsh`") && error.contains("did you mean `refresh`?"),
            "{error}"
        );
        let error = read("targets_from = [{ url = \"https://sd.example/\" }]").unwrap_err();
        assert!(error.contains("names no source"), "{error}");
        let error =
            read("targets_from = [{ file = \"a.json\", dns = \"x.example\" }]").unwrap_err();
        assert!(error.contains("sets both `file` and `dns`"), "{error}");
        let error = read("targets_from = [{ dns = \"x.example\", port = 53 }]").unwrap_err();
        assert!(
            error.contains("SRV records carry their own port"),
            "{error}"
        );
        let error = read("targets_from = [{ dns = \"x.example\", type = \"MX\" }]").unwrap_err();
        assert!(error.contains("type \"MX\" is not supported"), "{error}");
        let shown = sources_from_toml(
            Path::new("c.toml"),
            "targets_from = [{ http = \"https://sd.example/t/${env:TOKEN}\" }]",
            &MapEnv([("TOKEN".to_string(), "s3cr3t-path".to_string())].into()),
        )
        .unwrap()[0]
            .describe();
        assert_eq!(shown, "http https://sd.example/t/<redacted>");
        let error = read("targets_from = []").unwrap_err();
        assert!(error.contains("lists no source"), "{error}");
        let error = read(
            "targets_from = [{ http = \"https://sd.example/\", bearer_token = \"${env:NOPE}\" }]",
        )
        .unwrap_err();
        assert!(
            error.contains("environment variable NOPE is not set"),
            "{error}"
        );
    }
}
