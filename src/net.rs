//! Outbound plumbing shared by checks: name resolution with an address-family preference,
//! timed TCP connects with fallback across addresses, rustls client configurations, and the
//! classification of low-level errors into failure reasons.

use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};

use crate::result::FailureReason;

/// Which address family to try first, and whether to fall back to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPreference {
    /// The family tried first.
    pub prefer: IpFamily,
    /// Whether addresses of the other family are tried when the preferred ones fail or do
    /// not exist.
    pub fallback: bool,
}

impl Default for IpPreference {
    fn default() -> Self {
        IpPreference {
            prefer: IpFamily::V6,
            fallback: true,
        }
    }
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    fn matches(self, ip: &IpAddr) -> bool {
        match self {
            IpFamily::V4 => ip.is_ipv4(),
            IpFamily::V6 => ip.is_ipv6(),
        }
    }
}

/// A host (name or address) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl HostPort {
    /// Parses `host[:port]`, `ip[:port]`, `[v6][:port]` or a bare IPv6 address.
    pub fn parse(text: &str, default_port: u16) -> Option<HostPort> {
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().ok()?,
                None if after.is_empty() => default_port,
                None => return None,
            };
            return Some(HostPort {
                host: host.to_string(),
                port,
            })
            .filter(|hp| hp.port != 0);
        }
        if text.parse::<std::net::Ipv6Addr>().is_ok() {
            return Some(HostPort {
                host: text.to_string(),
                port: default_port,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (text, default_port),
        };
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        (valid && port != 0).then(|| HostPort {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Resolves names for checks. Built once per agent; it does not cache, so every run measures
/// a real resolve phase.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<TokioResolver>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// A resolver using the system configuration (`/etc/resolv.conf`, `/etc/hosts`). On a
    /// machine with no resolver configuration it still answers from `/etc/hosts`.
    pub fn system() -> Resolver {
        let mut builder = TokioResolver::builder_tokio().unwrap_or_else(|_| {
            TokioResolver::builder_with_config(
                ResolverConfig::default(),
                TokioRuntimeProvider::default(),
            )
        });
        let options = builder.options_mut();
        // A probe must measure resolution every time; a cache would report 0 µs.
        options.cache_size = 0;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder
            .build()
            .or_else(|_| {
                TokioResolver::builder_with_config(
                    ResolverConfig::default(),
                    TokioRuntimeProvider::default(),
                )
                .build()
            })
            .expect("a resolver with an empty configuration always builds");
        Resolver {
            inner: Arc::new(resolver),
        }
    }

    /// The addresses of `host`, ordered by `pref` (and filtered when there is no fallback).
    pub async fn lookup(&self, host: &str, pref: IpPreference) -> Result<Vec<IpAddr>, String> {
        let lookup = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|error| format!("cannot resolve {host}: {error}"))?;
        let all: Vec<IpAddr> = lookup.iter().collect();
        let ordered = order_addresses(&all, pref);
        if ordered.is_empty() {
            let family = match pref.prefer {
                IpFamily::V4 => "IPv4",
                IpFamily::V6 => "IPv6",
            };
            return Err(format!(
                "{host} has no {family} address (found {}) and ip_protocol_fallback is off",
                all.len()
            ));
        }
        Ok(ordered)
    }
}

/// The name servers of the system configuration (`/etc/resolv.conf`), in order, on port 53
/// unless configured otherwise. Read once.
pub fn system_nameservers() -> Vec<SocketAddr> {
    static SERVERS: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    SERVERS
        .get_or_init(|| match hickory_resolver::system_conf::read_system_conf() {
            Ok((config, _)) => config
                .name_servers
                .iter()
                .map(|server| {
                    let port = server.connections.first().map_or(53, |c| c.port);
                    SocketAddr::new(server.ip, port)
                })
                .collect(),
            Err(_) => Vec::new(),
        })
        .clone()
}

/// Orders addresses by family preference, dropping the other family without fallback.
pub fn order_addresses(all: &[IpAddr], pref: IpPreference) -> Vec<IpAddr> {
    let preferred = all.iter().filter(|ip| pref.prefer.matches(ip));
    let others = all.iter().filter(|ip| !pref.prefer.matches(ip));
    if pref.fallback {
        preferred.chain(others).copied().collect()
    } else {
        preferred.copied().collect()
    }
}

/// Connects to the first address that accepts, in order, before `deadline`. Each attempt but
/// the last gets an equal share of the time left, so one black-holed address cannot eat the
/// whole budget.
pub async fn connect(
    addrs: &[IpAddr],
    port: u16,
    source: Option<IpAddr>,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let mut last_error = None;
    for (idx, ip) in addrs.iter().enumerate() {
        let addr = SocketAddr::new(*ip, port);
        let left = addrs.len() - idx;
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let share = (deadline - now) / left as u32;
        let attempt_deadline = if left == 1 { deadline } else { now + share };
        let socket = match bound_socket(addr, source) {
            Ok(socket) => socket,
            Err(message) => {
                last_error = Some(message);
                continue;
            }
        };
        match timeout_at(attempt_deadline, socket.connect(addr)).await {
            Ok(Ok(stream)) => {
                // Without nodelay, Nagle and delayed ACKs add tens of milliseconds to small
                // requests and distort the processing phase.
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(error)) => last_error = Some(format!("connect to {addr}: {error}")),
            Err(_) if left == 1 => return Err(ConnectError::Timeout(addr)),
            Err(_) => last_error = Some(format!("connect to {addr}: timed out")),
        }
    }
    Err(match last_error {
        Some(message) => ConnectError::Failed(message),
        None => ConnectError::Timeout(SocketAddr::new(
            addrs.first().copied().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port,
        )),
    })
}

/// A TCP socket for `addr`'s family, bound to `source` when one is given.
fn bound_socket(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpSocket, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let socket = socket.map_err(|error| format!("cannot open a socket for {addr}: {error}"))?;
    if let Some(source) = source {
        if source.is_ipv4() != addr.is_ipv4() {
            return Err(format!(
                "source_ip {source} cannot reach {addr}: the address families differ"
            ));
        }
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|error| format!("cannot send from source_ip {source}: {error}"))?;
    }
    Ok(socket)
}

/// Why a connect failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The deadline passed during the attempt to this address.
    Timeout(SocketAddr),
    /// Every address refused or failed; the message names the last one.
    Failed(String),
}

/// The process-wide crypto provider: ring, the one provider nightjar builds with.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Mozilla's roots as bundled in the binary: the same verdict on every host.
pub fn bundled_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

/// How a check's TLS client is set up.
pub struct TlsSetup {
    /// Client certificate chain and key for mTLS.
    pub client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// ALPN protocols to offer, in preference order.
    pub alpn: Vec<Vec<u8>>,
}

/// Builds a rustls client configuration for probing.
///
/// Its verifier accepts any chain during the handshake (the handshake signature is still
/// checked), so the whole presented chain can be read even when it is invalid. Callers MUST
/// judge the chain with `tlsinfo::inspect` before sending anything over the connection.
pub fn client_config(setup: TlsSetup) -> Result<ClientConfig, String> {
    client_config_with_versions(setup, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`], offering only `versions` (a `tls.min_version`).
pub fn client_config_with_versions(
    setup: TlsSetup,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }));
    let mut config = match setup.client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| format!("client certificate and key do not fit together: {error}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = setup.alpn;
    // Every probe does a full handshake: a resumed session shows no certificate, and a
    // probe must measure what a new client pays. (It also spares each configuration a
    // 256-entry session cache, 14 KB a check.)
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Accepts any chain during the handshake, but still verifies the handshake signature, so the
/// peer holds the key of the certificate it presented. The chain is judged afterwards.
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Classifies a TLS handshake error: a certificate problem, or another TLS failure.
pub fn classify_tls_error(error: &io::Error) -> (FailureReason, String) {
    if let Some(tls) = find_cause::<rustls::Error>(error) {
        let reason = match tls {
            rustls::Error::InvalidCertificate(_) => FailureReason::CertInvalid,
            _ => FailureReason::Tls,
        };
        return (reason, format!("TLS handshake failed: {tls}"));
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => (
            FailureReason::Tls,
            format!("TLS handshake failed: the server closed the connection ({error})"),
        ),
        _ => (FailureReason::Tls, format!("TLS handshake failed: {error}")),
    }
}

/// Whether `error` says the peer closed or reset the connection (rather than some other
/// I/O failure).
pub fn closed_by_peer(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// The first error of type `T` in the `source()` chain of `error`, including itself.
pub fn find_cause<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        // io::Error keeps its payload behind get_ref rather than source().
        if let Some(io_error) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io_error.get_ref()
            && let Some(found) = find_cause::<T>(inner)
        {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// A TLS protocol version as blackbox_exporter labels it: one of
/// [`crate::result::TLS_VERSION_NAMES`], which a deserialised result maps its version onto.
pub fn tls_version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
        rustls::ProtocolVersion::TLSv1_1 => "TLS 1.1",
        rustls::ProtocolVersion::TLSv1_0 => "TLS 1.0",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tls_version_name_is_one_a_result_reads_back() {
        use rustls::ProtocolVersion;
        let versions = [
            ProtocolVersion::SSLv2,
            ProtocolVersion::SSLv3,
            ProtocolVersion::TLSv1_0,
            ProtocolVersion::TLSv1_1,
            ProtocolVersion::TLSv1_2,
            ProtocolVersion::TLSv1_3,
            ProtocolVersion::DTLSv1_3,
            ProtocolVersion::Unknown(0x0305),
        ];
        for version in versions {
            let name = tls_version_name(version);
            assert!(
                crate::result::TLS_VERSION_NAMES.contains(&name),
                "{version:?} is named {name:?}"
            );
            assert_eq!(crate::result::tls_version_named(name), name);
        }
    }

    #[test]
    fn address_order() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let all = [v4, v6];
        let prefer6 = IpPreference {
            prefer: IpFamily::V6,
            fallback: true,
        };
        assert_eq!(order_addresses(&all, prefer6), vec![v6, v4]);
        let only4 = IpPreference {
            prefer: IpFamily::V4,
            fallback: false,
        };
        assert_eq!(order_addresses(&all, only4), vec![v4]);
    }
}
