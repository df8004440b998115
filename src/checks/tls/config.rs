//! The `tls` table shared by `http` and `tls` checks (roots, CA file, client certificate,
//! server name), and the keys of a `tls` check.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{StartTls, TlsExpect, TlsSpec, TlsVersion};
use crate::checks::http::TlsOptions;
use crate::net::{self, HostPort, TlsSetup};
use crate::reader::{Table, read_ip_preference};
use crate::tlsinfo;

/// A certificate chain and a private key, both PEM files: a client certificate here, the
/// agent's own server certificate in `web`.
pub(crate) type PemPair = (
    Result<Vec<CertificateDer<'static>>, String>,
    Result<PrivateKeyDer<'static>, String>,
);

/// Reads the chain in `cert` and the key in `key`, each with its own error.
pub(crate) fn read_pem_pair(cert: &str, key: &str) -> PemPair {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|error| error.to_string())
        .and_then(|iter| {
            iter.collect::<Result<Vec<_>, _>>()
                .map_err(|error| error.to_string())
        });
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| error.to_string());
    (chain, key)
}

/// Reads the keys of a `tls` check (`spec::read_spec` dispatches
/// here). Returns the spec and the target as shown to humans.
pub(crate) fn read(
    table: &Table<'_>,
    _cx: &mut crate::reader::SpecCx<'_>,
) -> Option<(TlsSpec, String)> {
    let d = table.diags();
    let mut ok = true;
    let target = match table.str("target") {
        Some((text, span)) => match HostPort::parse(text, 443) {
            Some(target) => Some((target.host, target.port)),
            None => {
                d.error_hint(
                    &span,
                    format!("target {text:?} is not HOST:PORT"),
                    "write it like \"shop.example.com:443\" or \"[2001:db8::1]:443\"",
                );
                None
            }
        },
        None => {
            table.missing(
                "target",
                "set the endpoint to check, like target = \"shop.example.com:443\"",
            );
            None
        }
    };
    let starttls = match table.str("starttls") {
        None => None,
        Some(("smtp", _)) => Some(StartTls::Smtp),
        Some((other, span)) => {
            d.error_hint(
                &span,
                format!("unknown starttls {other:?}"),
                "use \"smtp\" (ports 25 and 587)",
            );
            ok = false;
            None
        }
    };
    let ip = read_ip_preference(table);
    let tls = read_tls_options(table, Vec::new(), false);
    let expect = read_tls_expect(table);
    let (Some((host, port)), Some(ip), Some(tls), Some(expect), true) =
        (target, ip, tls, expect, ok)
    else {
        return None;
    };
    let server_name = match tls.server_name {
        Some(name) => name,
        None => match ServerName::try_from(host.clone()) {
            Ok(name) => name,
            Err(_) => {
                let span = table.key_span("target").unwrap_or_else(|| table.span());
                d.error_hint(
                    &span,
                    format!("{host:?} is not a valid TLS server name"),
                    "set tls = { server_name = \"...\" }",
                );
                return None;
            }
        },
    };
    let shown = HostPort {
        host: host.clone(),
        port,
    }
    .to_string();
    Some((
        TlsSpec {
            host,
            port,
            ip,
            tls: TlsOptions {
                server_name: Some(server_name),
                ..tls
            },
            starttls,
            expect,
        },
        shown,
    ))
}

fn read_tls_expect(table: &Table<'_>) -> Option<TlsExpect> {
    let d = table.diags();
    let Some(expect) = table.table("expect", format!("`expect` of {}", table.what())) else {
        return Some(TlsExpect::default());
    };
    let mut ok = true;
    let min_days_left = expect.days("min_days_left");
    let chain_valid = expect.bool("chain_valid").unwrap_or(true);
    let hostname_match = expect.bool("hostname_match").unwrap_or(true);
    let min_version = match expect.str("min_version") {
        None => None,
        Some(("1.2", _)) => Some(TlsVersion::Tls12),
        Some(("1.3", _)) => Some(TlsVersion::Tls13),
        Some((other, span)) => {
            d.error_hint(
                &span,
                format!("unknown min_version {other:?}"),
                "use \"1.2\" or \"1.3\"",
            );
            ok = false;
            None
        }
    };
    expect.finish();
    ok.then_some(TlsExpect {
        min_days_left,
        chain_valid,
        hostname_match,
        min_version,
    })
}

/// Reads the optional `tls` table of a check. `allow_insecure` says whether
/// `insecure_skip_verify` is a key of this check type.
pub(crate) fn read_tls_options(
    table: &Table<'_>,
    alpn: Vec<Vec<u8>>,
    allow_insecure: bool,
) -> Option<TlsOptions> {
    let Some(tls) = table.table("tls", format!("`tls` of {}", table.what())) else {
        // The common case: bundled roots, no client certificate; shared by every such check.
        return match shared_default(alpn) {
            Ok((client, verifier)) => Some(TlsOptions::verified(client, verifier)),
            Err(message) => {
                table.diags().error(&table.span(), message);
                None
            }
        };
    };
    let roots = read_roots(&tls);
    let insecure_skip_verify = if allow_insecure {
        tls.bool("insecure_skip_verify").unwrap_or(false)
    } else {
        false
    };
    let client_auth = read_client_auth(&tls);
    let server_name = read_server_name(&tls);
    let min_version = read_min_version(&tls);
    tls.finish();
    let (Some(roots), Some(client_auth), Some(server_name), Some(min_version)) =
        (roots, client_auth, server_name, min_version)
    else {
        return None;
    };
    let options = build(
        table,
        roots,
        client_auth,
        alpn,
        server_name,
        insecure_skip_verify,
        min_version,
    )?;
    Some(TlsOptions {
        min_version,
        ..options
    })
}

/// `tls.min_version`: `"1.2"` or `"1.3"`; `Some(None)` when unset, `None` after a problem
/// (reported).
fn read_min_version(tls: &Table<'_>) -> Option<Option<TlsVersion>> {
    match tls.str("min_version") {
        None => Some(None),
        Some(("1.2", _)) => Some(Some(TlsVersion::Tls12)),
        Some(("1.3", _)) => Some(Some(TlsVersion::Tls13)),
        Some((other, span)) => {
            tls.diags().error_hint(
                &span,
                format!("unknown tls.min_version {other:?}"),
                "use \"1.2\" or \"1.3\"",
            );
            None
        }
    }
}

/// `ca` or `ca_file`: the roots to verify with (bundled unless given); `None` if there is a
/// problem (reported).
fn read_roots(tls: &Table<'_>) -> Option<Arc<RootCertStore>> {
    let d = tls.diags();
    match (tls.str("ca"), tls.str("ca_file")) {
        (Some((_, span)), Some(_)) => {
            d.error_hint(
                &span,
                "`ca` and `ca_file` are both set",
                "ca_file replaces the roots; keep one",
            );
            None
        }
        (_, Some((path, span))) => match load_ca_file(Path::new(path)) {
            Ok(roots) => Some(roots),
            Err(message) => {
                d.error_hint(
                    &span,
                    message,
                    "give a PEM file with one or more CA certificates",
                );
                None
            }
        },
        (Some(("bundled", _)), None) | (None, None) => Some(net::bundled_roots()),
        (Some(("system", span)), None) => match system_roots() {
            Ok(roots) => Some(roots),
            Err(message) => {
                d.error_hint(&span, message, "install the system CA bundle (Debian: ca-certificates) or use ca = \"bundled\"");
                None
            }
        },
        (Some((other, span)), None) => {
            d.error_hint(
                &span,
                format!("unknown ca {other:?}"),
                "use \"bundled\" (Mozilla's roots, built in) or \"system\", or set ca_file",
            );
            None
        }
    }
}

/// A client certificate and its key.
type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `cert_file` and `key_file`, which go together: `Some(None)` when neither is set, `None` if
/// there is a problem (reported).
fn read_client_auth(tls: &Table<'_>) -> Option<Option<ClientAuth>> {
    let d = tls.diags();
    match (tls.str("cert_file"), tls.str("key_file")) {
        (Some((cert, cert_span)), Some((key, key_span))) => match read_pem_pair(cert, key) {
            (Ok(chain), Ok(key)) if !chain.is_empty() => Some(Some((chain, key))),
            (Ok(_), Ok(_)) => {
                d.error(
                    &cert_span,
                    format!("client certificate file {cert} holds no certificate"),
                );
                None
            }
            (Err(error), _) => {
                d.error(
                    &cert_span,
                    format!("cannot read client certificate {cert}: {error}"),
                );
                None
            }
            (_, Err(error)) => {
                d.error(&key_span, format!("cannot read client key {key}: {error}"));
                None
            }
        },
        (Some((_, span)), None) | (None, Some((_, span))) => {
            d.error_hint(
                &span,
                "`cert_file` and `key_file` go together",
                "set both for a client certificate (mTLS)",
            );
            None
        }
        (None, None) => Some(None),
    }
}

/// `server_name`: `Some(None)` when not set, `None` if it is not a valid name (reported).
fn read_server_name(tls: &Table<'_>) -> Option<Option<ServerName<'static>>> {
    let Some((name, span)) = tls.str("server_name") else {
        return Some(None);
    };
    match ServerName::try_from(name.to_string()) {
        Ok(name) => Some(Some(name)),
        Err(_) => {
            tls.diags()
                .error(&span, format!("{name:?} is not a valid TLS server name"));
            None
        }
    }
}

/// The TLS set-up of checks without a `tls` table (bundled roots, no client certificate),
/// built once per ALPN list and shared: a client configuration and verifier of their own
/// would cost each of 10,000 checks about 700 bytes.
pub(crate) fn shared_default(alpn: Vec<Vec<u8>>) -> Result<SharedTls, String> {
    static BUILT: OnceLock<Mutex<HashMap<Vec<Vec<u8>>, SharedTls>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(shared) = built.get(&alpn) {
        return Ok(shared.clone());
    }
    let verifier = tlsinfo::verifier(net::bundled_roots())?;
    let client = Arc::new(net::client_config(TlsSetup {
        client_auth: None,
        alpn: alpn.clone(),
    })?);
    built.insert(alpn, (client.clone(), verifier.clone()));
    Ok((client, verifier))
}

/// A client configuration and the verifier that judges its chains.
pub(crate) type SharedTls = (Arc<rustls::ClientConfig>, Arc<WebPkiServerVerifier>);

fn build(
    table: &Table<'_>,
    roots: Arc<RootCertStore>,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
    server_name: Option<ServerName<'static>>,
    insecure_skip_verify: bool,
    min_version: Option<TlsVersion>,
) -> Option<TlsOptions> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        Some(TlsVersion::Tls12) | None => rustls::DEFAULT_VERSIONS,
    };
    let built = tlsinfo::verifier(roots).and_then(|verifier| {
        let client = net::client_config_with_versions(TlsSetup { client_auth, alpn }, versions)?;
        Ok((verifier, client))
    });
    match built {
        Ok((verifier, client)) => Some(TlsOptions {
            client: Arc::new(client),
            verifier,
            server_name,
            insecure_skip_verify,
            min_version: None,
        }),
        Err(message) => {
            table.diags().error(&table.span(), message);
            None
        }
    }
}

fn load_ca_file(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read CA file {}: {error}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("cannot parse CA file {}: {error}", path.display()))?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "CA file {} holds no usable certificate",
            path.display()
        ));
    }
    Ok(Arc::new(store))
}

fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                return Err("no system CA certificates were found".to_string());
            }
            Ok(Arc::new(store))
        })
        .clone()
}
