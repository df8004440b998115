//! The protection of the agent's own server, from `[agent]`: HTTPS with a certificate and key
//! (rustls), basic auth with bcrypt hashes and/or a bearer token, as Prometheus's web
//! configuration does, the connection cap and the Host names answered.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::reader::Table;

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
    let mut web = WebConfig {
        tls: read_server_tls(table),
        basic_auth_users: read_basic_auth_users(table),
        bearer_token: read_bearer_token(table),
        ..WebConfig::default()
    };
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

/// `tls_cert_file` and `tls_key_file`, which go together: the server's TLS configuration.
fn read_server_tls(table: &Table<'_>) -> Option<Arc<rustls::ServerConfig>> {
    let d = table.diags();
    match (table.str("tls_cert_file"), table.str("tls_key_file")) {
        (Some((cert, cert_span)), Some((key, key_span))) => {
            match crate::checks::tls::config::read_pem_pair(cert, key) {
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
                (Ok(chain), Ok(private)) => match server_config(chain, private) {
                    Ok(config) => return Some(Arc::new(config)),
                    Err(error) => d.error_hint(
                        &key_span,
                        format!("the server certificate and key do not make a TLS configuration: {error}"),
                        "check that the key belongs to the certificate",
                    ),
                },
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
    None
}

/// A server configuration (HTTP/1.1 only) for a certificate chain and its key.
fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    private: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(|error| error.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `basic_auth_users`: user name → bcrypt hash, each checked for its shape.
fn read_basic_auth_users(table: &Table<'_>) -> BTreeMap<String, String> {
    let d = table.diags();
    let mut users = BTreeMap::new();
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
        users.insert(entry.key.to_string(), hash.to_string());
    }
    users
}

/// `bearer_token`: a reference to a secret of at least 16 characters, never inline.
fn read_bearer_token(table: &Table<'_>) -> Option<String> {
    let d = table.diags();
    let (text, span) = table.str("bearer_token")?;
    let expanded = d.interpolate(text, &span)?;
    if expanded.secrets.is_empty() {
        d.error_hint(
            &span,
            "`bearer_token` is written inline",
            "reference it, like bearer_token = \"${env:NIGHTJAR_WEB_TOKEN}\" or \"${file:/run/secrets/token}\"",
        );
        None
    } else if expanded.value.len() < 16 {
        d.error_hint(
            &span,
            "the bearer token is shorter than 16 characters",
            "use a long random token, like the output of `openssl rand -hex 32`",
        );
        None
    } else {
        Some(expanded.value)
    }
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
