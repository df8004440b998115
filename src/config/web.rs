//! The protection of the agent's own server, from `[agent]`: HTTPS with a certificate and key
//! (rustls), basic auth with bcrypt hashes and/or a bearer token, as Prometheus's web
//! configuration does, the connection cap and the Host names answered.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::reader::Table;

/// Connections the agent's server keeps open at most, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// The highest `max_connections` accepted.
const MAX_CONNECTIONS_LIMIT: i64 = 65_536;

/// How the agent's server is protected. The default is plain HTTP with no authentication
/// (the default listen address is loopback).
#[derive(Clone)]
pub struct WebConfig {
    /// The server's TLS configuration, when `tls_cert_file` and `tls_key_file` are set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash.
    pub basic_auth_users: BTreeMap<String, String>,
    /// A token accepted as `Authorization: Bearer TOKEN`.
    pub bearer_token: Option<String>,
    /// Connections open at once; at the cap the longest-idle one (of the address holding the
    /// most) is closed for a new one; when every connection is busy, the one busy longest of
    /// the address holding the most, if that is more than the new one's; else the new one is
    /// refused.
    pub max_connections: usize,
    /// Host names (lower case, without port) answered besides the loopback ones; when empty,
    /// a loopback listener answers only loopback names and any other answers every name.
    pub allowed_hosts: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            tls: None,
            basic_auth_users: BTreeMap::new(),
            bearer_token: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allowed_hosts: Vec::new(),
        }
    }
}

impl WebConfig {
    /// Whether requests must authenticate.
    pub fn requires_auth(&self) -> bool {
        !self.basic_auth_users.is_empty() || self.bearer_token.is_some()
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.basic_auth_users.keys().collect::<Vec<_>>(),
            )
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_connections", &self.max_connections)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// Reads `tls_cert_file`, `tls_key_file`, `basic_auth_users`, `bearer_token`,
/// `max_connections` and `allowed_hosts` from the `[agent]` table.
pub(super) fn read_web(table: &Table<'_>) -> WebConfig {
    let d = table.diags();
    let mut web = WebConfig::default();
    match (table.str("tls_cert_file"), table.str("tls_key_file")) {
        (Some((cert, cert_span)), Some((key, key_span))) => {
            match super::tls::read_pem_pair(cert, key) {
                (Ok(chain), _) if chain.is_empty() => d.error_hint(
                    &cert_span,
                    format!("{cert} holds no PEM certificate"),
                    "give the server's certificate chain in PEM, leaf first",
                ),
                (Err(error), _) => d.error(
                    &cert_span,
                    format!("cannot read the server certificate {cert}: {error}"),
                ),
                (_, Err(error)) => d.error_hint(
                    &key_span,
                    format!("cannot read the server key {key}: {error}"),
                    "give the private key in PEM (PKCS#8, PKCS#1 or SEC1)",
                ),
                (Ok(chain), Ok(private)) => {
                    match rustls::ServerConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .map_err(|error| error.to_string())
                    .and_then(|builder| {
                        builder
                            .with_no_client_auth()
                            .with_single_cert(chain, private)
                            .map_err(|error| error.to_string())
                    }) {
                        Ok(mut config) => {
                            config.alpn_protocols = vec![b"http/1.1".to_vec()];
                            web.tls = Some(Arc::new(config));
                        }
                        Err(error) => d.error_hint(
                            &key_span,
                            format!("the server certificate and key do not make a TLS configuration: {error}"),
                            "check that the key belongs to the certificate",
                        ),
                    }
                }
            }
        }
        (Some((_, span)), None) => d.error_hint(
            &span,
            "`tls_cert_file` is set without `tls_key_file`",
            "serving HTTPS needs both; add tls_key_file = \"/path/to/tls.key\"",
        ),
        (None, Some((_, span))) => d.error_hint(
            &span,
            "`tls_key_file` is set without `tls_cert_file`",
            "serving HTTPS needs both; add tls_cert_file = \"/path/to/tls.crt\"",
        ),
        (None, None) => {}
    }
    for entry in table.str_map("basic_auth_users").unwrap_or_default() {
        if entry.key.is_empty() || entry.key.contains(':') {
            d.error(
                &entry.key_span,
                format!(
                    "basic auth user name {:?} must be non-empty and without `:`",
                    entry.key
                ),
            );
            continue;
        }
        // A hash, never a password: check its shape (bcrypt::verify would only say "false").
        let hash = entry.value;
        let shaped = hash.len() == 60
            && ["$2a$", "$2b$", "$2x$", "$2y$"]
                .iter()
                .any(|prefix| hash.starts_with(prefix))
            && hash.as_bytes()[4..6].iter().all(u8::is_ascii_digit)
            && hash.as_bytes()[6] == b'$';
        if !shaped {
            d.error_hint(
                &entry.value_span,
                format!("the value for user {:?} is not a bcrypt hash", entry.key),
                "store a hash, never the password: `htpasswd -nBC 10 USER` prints USER:HASH; use the part after the colon",
            );
            continue;
        }
        web.basic_auth_users
            .insert(entry.key.to_string(), hash.to_string());
    }
    if let Some((text, span)) = table.str("bearer_token")
        && let Some(expanded) = d.interpolate(text, &span)
    {
        if expanded.secrets.is_empty() {
            d.error_hint(
                &span,
                "`bearer_token` is written inline",
                "reference it, like bearer_token = \"${env:NIGHTJAR_WEB_TOKEN}\" or \"${file:/run/secrets/token}\"",
            );
        } else if expanded.value.len() < 16 {
            d.error_hint(
                &span,
                "the bearer token is shorter than 16 characters",
                "use a long random token, like the output of `openssl rand -hex 32`",
            );
        } else {
            web.bearer_token = Some(expanded.value);
        }
    }
    match table.int("max_connections") {
        Some((n, _)) if (1..=MAX_CONNECTIONS_LIMIT).contains(&n) => {
            web.max_connections = n as usize;
        }
        Some((n, span)) => d.error_hint(
            &span,
            format!("`max_connections` must be between 1 and {MAX_CONNECTIONS_LIMIT}, found {n}"),
            "the default, 256, serves Prometheus, browsers and orchestrator probes with room to spare",
        ),
        None => {}
    }
    for (host, span) in table.str_list("allowed_hosts").unwrap_or_default() {
        match allowed_host(host) {
            Ok(host) => web.allowed_hosts.push(host),
            Err(problem) => d.error_hint(
                &span,
                format!("allowed host {host:?} {problem}"),
                "give a host name or IP address as clients write it in URLs, without scheme or port, like \"nightjar.example.com\"",
            ),
        }
    }
    web
}

/// An `allowed_hosts` entry, normalised (lower case, IPv6 without brackets, no trailing dot).
fn allowed_host(text: &str) -> Result<String, &'static str> {
    let host = text.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(host.to_ascii_lowercase());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        });
    if valid {
        Ok(host.to_ascii_lowercase())
    } else {
        Err("is not a host name or IP address")
    }
}
