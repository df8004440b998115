//! Reading a check's proxy keys: `proxy_url`, `no_proxy`, `proxy_from_environment`,
//! `proxy_connect_header` and `skip_resolve_phase_with_proxy` (prometheus/common's and
//! blackbox_exporter's names and rules).

use std::ops::Range;
use std::sync::Arc;

use http::HeaderValue;

use super::{NoProxy, ProxyOptions, ProxyServer};
use crate::checks::http::percent_decode;
use crate::reader::{Diags, Table};
use crate::reader::{header_name, header_value};

/// The proxy keys of `table`: `Ok(None)` without a proxy, `Err(())` after reporting a problem.
pub(crate) fn read(
    table: &Table<'_>,
    secrets: &mut Vec<String>,
) -> Result<Option<Arc<ProxyOptions>>, ()> {
    let d = table.diags();
    let mut ok = true;
    let url = table.str("proxy_url");
    let from_env = table.bool("proxy_from_environment").unwrap_or(false);
    let no_proxy = table.str("no_proxy");
    let skip_resolve = table.bool("skip_resolve_phase_with_proxy").unwrap_or(false);
    let connect_headers = read_connect_headers(table, secrets, &mut ok);
    let env_span = table
        .key_span("proxy_from_environment")
        .unwrap_or(table.span());

    if from_env && let Some((_, span)) = &url {
        d.error_hint(
            span,
            "set `proxy_url` or `proxy_from_environment = true`, not both",
            "the environment's HTTP_PROXY, HTTPS_PROXY and NO_PROXY replace `proxy_url`",
        );
        return Err(());
    }
    if let Some((_, span)) = &no_proxy {
        if from_env {
            d.error_hint(
                span,
                "`no_proxy` does not go with `proxy_from_environment = true`",
                "the environment's NO_PROXY applies then",
            );
            return Err(());
        }
        if url.is_none() {
            d.error_hint(
                span,
                "`no_proxy` without `proxy_url` has no effect",
                "set proxy_url = \"http://proxy.example:3128\"",
            );
            return Err(());
        }
    }
    let (http, https, no_proxy) = if from_env {
        from_environment(d, &env_span, secrets)?
    } else {
        let Some((text, span)) = url else {
            if let Some(span) = table
                .key_span("proxy_connect_header")
                .or_else(|| table.key_span("skip_resolve_phase_with_proxy"))
            {
                d.error_hint(
                    &span,
                    "this key needs a proxy",
                    "set proxy_url = \"http://proxy.example:3128\" or proxy_from_environment = true",
                );
                return Err(());
            }
            return if ok { Ok(None) } else { Err(()) };
        };
        let expanded = d.interpolate(text, &span).ok_or(())?;
        secrets.extend(expanded.secrets);
        let server = parse_proxy(d, &expanded.value, text, &span, secrets)?;
        let no_proxy = match no_proxy {
            Some((list, _)) => NoProxy::parse(list, true),
            None => NoProxy::default(),
        };
        (Some(server.clone()), Some(server), no_proxy)
    };
    if !ok {
        return Err(());
    }
    if http.is_none() && https.is_none() {
        // The environment names no proxy: requests go direct.
        return Ok(None);
    }
    Ok(Some(Arc::new(ProxyOptions {
        http,
        https,
        no_proxy,
        connect_headers,
        skip_resolve,
    })))
}

/// `proxy_from_environment = true`: `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (or their
/// lower-case forms), read when the configuration is loaded; a bad value is a problem at
/// `env_span`, naming the variable, never its value.
#[allow(clippy::type_complexity)]
fn from_environment(
    d: &Diags<'_>,
    env_span: &Range<usize>,
    secrets: &mut Vec<String>,
) -> Result<(Option<ProxyServer>, Option<ProxyServer>, NoProxy), ()> {
    let mut server = |names: [&str; 2]| -> Result<Option<ProxyServer>, ()> {
        let Some((name, value)) = names
            .iter()
            .find_map(|name| d.env_var(name).map(|value| (*name, value)))
        else {
            return Ok(None);
        };
        let value = if value.contains("://") {
            value
        } else {
            format!("http://{value}")
        };
        parse_proxy(d, &value, &format!("${name}"), env_span, secrets).map(Some)
    };
    let http = server(["HTTP_PROXY", "http_proxy"]);
    let https = server(["HTTPS_PROXY", "https_proxy"]);
    let list = d
        .env_var("NO_PROXY")
        .or_else(|| d.env_var("no_proxy"))
        .unwrap_or_default();
    Ok((http?, https?, NoProxy::parse(&list, true)))
}

/// `proxy_connect_header`: headers sent on the CONNECT, values with secrets.
fn read_connect_headers(
    table: &Table<'_>,
    secrets: &mut Vec<String>,
    ok: &mut bool,
) -> Vec<(http::HeaderName, HeaderValue)> {
    let d = table.diags();
    let mut headers = Vec::new();
    for entry in table.str_map("proxy_connect_header").unwrap_or_default() {
        let Some(name) = header_name(d, entry.key, &entry.key_span) else {
            *ok = false;
            continue;
        };
        match header_value(d, &entry, "proxy_connect_header", secrets) {
            Some(mut value) => {
                if name == http::header::PROXY_AUTHORIZATION {
                    value.set_sensitive(true);
                    if let Ok(text) = value.to_str() {
                        secrets.push(text.to_string());
                    }
                }
                headers.push((name, value));
            }
            None => *ok = false,
        }
    }
    headers
}

/// A proxy URL (`shown` is how the config wrote it, for errors: never the expanded value):
/// `http://[user:password@]host[:port]`; credentials become `Proxy-Authorization: Basic`.
fn parse_proxy(
    d: &Diags<'_>,
    value: &str,
    shown: &str,
    span: &Range<usize>,
    secrets: &mut Vec<String>,
) -> Result<ProxyServer, ()> {
    let url = match url::Url::parse(value) {
        Ok(url) => url,
        Err(error) => {
            d.error_hint(
                span,
                format!("invalid proxy URL {shown:?}: {error}"),
                "write it like \"http://proxy.example:3128\"",
            );
            return Err(());
        }
    };
    if url.scheme() != "http" {
        d.error_hint(
            span,
            format!("proxy URL {shown:?} has scheme {:?}", url.scheme()),
            "nightjar speaks to HTTP proxies: use an http:// proxy URL (https through it is tunnelled with CONNECT)",
        );
        return Err(());
    }
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => {
            d.error(span, format!("proxy URL {shown:?} has no host"));
            return Err(());
        }
    };
    let authorization = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode).unwrap_or_default();
        let value = crate::checks::http::basic_auth(&user, &password);
        if !password.is_empty() {
            secrets.push(password);
        }
        if let Some(raw) = url.password() {
            secrets.push(raw.to_string());
        }
        secrets.push(value.clone());
        let mut value = HeaderValue::from_str(&value).expect("base64 is a valid header value");
        value.set_sensitive(true);
        Some(value)
    };
    Ok(ProxyServer {
        host,
        port: url.port().unwrap_or(80),
        authorization,
    })
}
