//! Check kinds: a closed, tagged set. Each kind lives in its own file with its spec and its
//! `run`, which returns a value: a failing target is a [`Status::Fail`], never an `Err`.
//!
//! Nothing here knows about metrics, the status store or the server.

pub mod dns;
pub mod domain;
pub mod flow;
pub mod grpc;
pub mod http;
pub mod icmp;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::net::{self, ConnectError, IpPreference, Resolver};
use crate::result::{Details, Failure, FailureReason, Status, TlsInfo};
use crate::tlsinfo;

pub use dns::DnsSpec;
pub use domain::DomainSpec;
pub use flow::FlowSpec;
pub use grpc::GrpcSpec;
pub use http::HttpSpec;
pub use icmp::IcmpSpec;
pub use tcp::TcpSpec;
pub use tls::TlsSpec;
pub use udp::UdpSpec;
pub use websocket::WebsocketSpec;

pub use crate::kind::CheckKind;

macro_rules! define_specs {
    ($(($variant:ident, $module:ident, $name:literal, $spec:ident, $doc:literal)),* $(,)?) => {
        impl CheckKind {
            /// The failure reasons a check of this kind can produce (each kind module's
            /// `REASONS`); their counters start at 0.
            pub fn reasons(self) -> &'static [FailureReason] {
                match self {
                    $(CheckKind::$variant => $module::REASONS,)*
                }
            }
        }

        /// What a check probes and expects; one variant per kind.
        #[derive(Debug, Clone)]
        pub enum CheckSpec {
            $(
                #[doc = concat!("`type = \"", $name, "\"`.")]
                $variant(Box<$spec>),
            )*
        }

        impl CheckSpec {
            /// The kind of this spec.
            pub fn kind(&self) -> CheckKind {
                match self {
                    $(CheckSpec::$variant(_) => CheckKind::$variant,)*
                }
            }

            /// Runs the check once. Must return by `ctx.deadline`.
            pub async fn run(&self, ctx: &CheckCtx) -> (Status, Details) {
                match self {
                    $(CheckSpec::$variant(spec) => $module::run(spec, ctx).await,)*
                }
            }
        }
    };
}

crate::kind::for_each_kind!(define_specs);

/// Resolves `host` (unless it is an IP address) and connects to `port`, adding the time
/// spent to `resolve` and `connect`. `target` names the endpoint in failure details.
pub(crate) async fn dial(
    ctx: &CheckCtx,
    host: &str,
    port: u16,
    ip: IpPreference,
    target: &str,
    resolve: &mut Duration,
    connect: &mut Duration,
) -> Result<(TcpStream, SocketAddr), Failure> {
    let addrs = resolve_all(ctx, host, ip, target, resolve).await?;
    let connect_start = Instant::now();
    let connected = net::connect(&addrs, port, ctx.source_ip, ctx.deadline).await;
    *connect += connect_start.elapsed();
    match connected {
        Ok(connected) => Ok(connected),
        Err(ConnectError::Timeout(addr)) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out connecting to {addr} for {target}"),
        )),
        Err(ConnectError::Failed(message)) => Err(Failure::new(FailureReason::Connect, message)),
    }
}

/// `host`'s addresses in `ip`'s order (the address itself when `host` is one), adding the
/// time spent to `took`. `target` names the endpoint in failure details.
pub(crate) async fn resolve_all(
    ctx: &CheckCtx,
    host: &str,
    ip: IpPreference,
    target: &str,
    took: &mut Duration,
) -> Result<Vec<IpAddr>, Failure> {
    if let Ok(addr) = host.parse::<IpAddr>() {
        return Ok(vec![addr]);
    }
    let start = Instant::now();
    let lookup = timeout_at(ctx.deadline, ctx.resolver.lookup(host, ip)).await;
    *took += start.elapsed();
    match lookup {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(Failure::new(
            FailureReason::Dns,
            format!("{host} has no address"),
        )),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(message)) => Err(Failure::new(FailureReason::Dns, message)),
        Err(_) if host == target => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out resolving {host}"),
        )),
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out resolving {host} for {target}"),
        )),
    }
}

/// The one address a datagram kind sends to: the first of `host`'s in `ip`'s order, of
/// `source_ip`'s family when that is set.
pub(crate) async fn resolve_one(
    ctx: &CheckCtx,
    host: &str,
    ip: IpPreference,
    target: &str,
    took: &mut Duration,
) -> Result<IpAddr, Failure> {
    let addrs = resolve_all(ctx, host, ip, target, took).await?;
    let same_family = |addr: &&IpAddr| {
        ctx.source_ip
            .is_none_or(|source| source.is_ipv4() == addr.is_ipv4())
    };
    Ok(addrs.iter().find(same_family).copied().unwrap_or(addrs[0]))
}

/// Completes a TLS handshake over `tcp` as `tls` sets it up, whatever the certificate (its
/// signature is still checked), then reads and judges the presented chain. Adds the handshake
/// time to `took`. `target` names the endpoint in failure details.
pub(crate) async fn tls_handshake<S>(
    tls: &http::TlsOptions,
    server_name: &ServerName<'static>,
    tcp: S,
    deadline: Instant,
    target: &str,
    took: &mut Duration,
) -> Result<(TlsStream<S>, TlsInfo), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    let connector = TlsConnector::from(tls.client.clone());
    let connected = timeout_at(deadline, connector.connect(server_name.clone(), tcp)).await;
    *took += start.elapsed();
    match connected {
        Ok(Ok(stream)) => {
            let info = tlsinfo::inspect(stream.get_ref().1, server_name, &tls.verifier);
            Ok((stream, info))
        }
        Ok(Err(error)) => {
            let (reason, message) = net::classify_tls_error(&error);
            // A server that refuses every version offered fails here: say what was.
            let offered = tls.min_version.map_or(String::new(), |version| {
                format!(
                    "; the client offered {} and later only (tls.min_version)",
                    version.name()
                )
            });
            Err(Failure::new(
                reason,
                format!("{message} ({target}){offered}"),
            ))
        }
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out during the TLS handshake with {target}"),
        )),
    }
}

/// Fails when the chain or name did not verify, unless told to go on: nothing is sent to
/// an unverified server.
pub(crate) fn require_verified(
    info: &TlsInfo,
    insecure_skip_verify: bool,
    target: &str,
) -> Result<(), Failure> {
    match &info.verify_error {
        Some(error) if !insecure_skip_verify => Err(Failure::new(
            FailureReason::CertInvalid,
            format!("the certificate of {target} did not verify: {error}"),
        )),
        _ => Ok(()),
    }
}

/// What a running check may use.
#[derive(Debug, Clone)]
pub struct CheckCtx {
    /// Name resolution.
    pub resolver: Resolver,
    /// RDAP bootstrap, answers and backoffs, shared across runs.
    pub rdap: std::sync::Arc<domain::RdapState>,
    /// When the run must be over.
    pub deadline: Instant,
    /// The `User-Agent` to send.
    pub user_agent: &'static str,
    /// The local address to send from (the check's `source_ip`); `None` lets the system
    /// choose. `dial` binds to it; a kind that opens its own sockets binds them to it too.
    pub source_ip: Option<IpAddr>,
}

impl CheckCtx {
    /// The same context for a part of the run that must be over by `deadline`.
    pub fn until(&self, deadline: Instant) -> CheckCtx {
        CheckCtx {
            deadline,
            ..self.clone()
        }
    }
}

/// Every reason a kind's runs can produce must be in [`CheckKind::reasons`]: the failure
/// counters exist only for the reasons listed there, so an unlisted one would go uncounted.
/// The code a kind's runs go through is known (its own module, and the shared parts below);
/// every `FailureReason` named there must be in the kind's list.
#[cfg(test)]
mod reason_lists {
    use std::collections::BTreeSet;

    use super::CheckKind;

    const MOD: &str = include_str!("mod.rs");
    const HTTP: &str = include_str!("http/mod.rs");
    const NET: &str = include_str!("../net.rs");
    const RUNNER: &str = include_str!("../runner.rs");
    const HTTP_RULES: &str = include_str!("http/rules.rs");
    const HTTP_DECODE: &str = include_str!("http/decode.rs");

    /// The text of `source` from the line starting with `from` to the one starting with
    /// `to` (or the end).
    fn region<'a>(source: &'a str, from: &str, to: Option<&str>) -> &'a str {
        let start = source
            .find(&format!("\n{from}"))
            .unwrap_or_else(|| panic!("no {from:?} in the source"));
        let end = to.map_or(source.len(), |to| {
            source[start..]
                .find(&format!("\n{to}"))
                .map(|offset| start + offset)
                .unwrap_or_else(|| panic!("no {to:?} after {from:?}"))
        });
        &source[start..end]
    }

    /// The variants named as `FailureReason::Variant` (not the `FailureReason::HTTP`-style
    /// lists), without the test code at the end of a file.
    fn named(source: &str) -> BTreeSet<String> {
        let code = source.split("\n#[cfg(test)]").next().unwrap_or(source);
        code.match_indices("FailureReason::")
            .filter_map(|(idx, prefix)| {
                let rest = &code[idx + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                let mut chars = name.chars();
                (chars.next()?.is_ascii_uppercase() && chars.any(|c| c.is_ascii_lowercase()))
                    .then_some(name)
            })
            .collect()
    }

    /// Reasons named in shared code that a kind's runs cannot reach, and why.
    const EXEMPT: [(CheckKind, &str, &str); 1] = [(
        CheckKind::Dns,
        "redirect",
        "DNS over HTTPS sends with follow_redirects = false, so a redirect is a status",
    )];

    #[test]
    fn every_reason_a_kind_can_produce_is_in_its_list() {
        let dial = region(
            MOD,
            "pub(crate) async fn dial",
            Some("pub(crate) fn require_verified"),
        );
        let verified = region(
            MOD,
            "pub(crate) fn require_verified",
            Some("/// What a running check"),
        );
        let transport = region(HTTP, "pub async fn run(", Some("pub(crate) fn evaluate("));
        let expectations = region(HTTP, "pub(crate) fn evaluate(", None);
        let tls_kinds = [dial, verified, NET, RUNNER];
        let tls_verdict = region(
            include_str!("tls/mod.rs"),
            "pub fn evaluate(",
            Some("/// Longest SMTP reply"),
        );
        let parts: Vec<(CheckKind, Vec<&str>)> = vec![
            (
                CheckKind::Http,
                [transport, expectations, HTTP_RULES, HTTP_DECODE]
                    .into_iter()
                    .chain(tls_kinds)
                    .collect(),
            ),
            (
                CheckKind::Flow,
                [
                    include_str!("flow/mod.rs"),
                    transport,
                    expectations,
                    HTTP_RULES,
                ]
                .into_iter()
                .chain(tls_kinds)
                .collect(),
            ),
            (
                CheckKind::Domain,
                [include_str!("domain/mod.rs"), transport]
                    .into_iter()
                    .chain(tls_kinds)
                    .collect(),
            ),
            (
                CheckKind::Dns,
                [include_str!("dns/mod.rs"), transport]
                    .into_iter()
                    .chain(tls_kinds)
                    .collect(),
            ),
            (
                CheckKind::Tls,
                [include_str!("tls/mod.rs")]
                    .into_iter()
                    .chain(tls_kinds)
                    .collect(),
            ),
            (
                CheckKind::Tcp,
                [include_str!("tcp/mod.rs"), tls_verdict]
                    .into_iter()
                    .chain(tls_kinds)
                    .collect(),
            ),
            (
                CheckKind::Websocket,
                [include_str!("websocket/mod.rs")]
                    .into_iter()
                    .chain(tls_kinds)
                    .collect(),
            ),
            (
                CheckKind::Grpc,
                [include_str!("grpc/mod.rs")]
                    .into_iter()
                    .chain(tls_kinds)
                    .collect(),
            ),
            (
                CheckKind::Icmp,
                vec![
                    include_str!("icmp/mod.rs"),
                    include_str!("icmp/socket.rs"),
                    RUNNER,
                ],
            ),
            (CheckKind::Udp, vec![include_str!("udp/mod.rs"), RUNNER]),
        ];
        assert_eq!(parts.len(), CheckKind::ALL.len(), "every kind is covered");
        let mut missing = BTreeSet::new();
        for (kind, sources) in parts {
            let listed: BTreeSet<&str> = kind.reasons().iter().map(|r| r.as_str()).collect();
            for source in sources {
                for name in named(source) {
                    let reason = crate::result::FailureReason::ALL
                        .iter()
                        .find(|r| format!("{r:?}") == name)
                        .unwrap_or_else(|| panic!("{name} is not a FailureReason"));
                    let exempt = EXEMPT
                        .iter()
                        .any(|(k, r, _)| *k == kind && *r == reason.as_str());
                    if !listed.contains(reason.as_str()) && !exempt {
                        missing.insert(format!(
                            "{} can fail with {}",
                            kind.as_str(),
                            reason.as_str()
                        ));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "reasons missing from the lists: {missing:#?}"
        );
    }
}
