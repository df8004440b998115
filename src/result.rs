//! The value one check run produces: [`CheckResult`], its [`Status`] and the bounded
//! [`FailureReason`] set.
//!
//! A failing target is data, not an `Err`: every check returns a `CheckResult`, and only the
//! outer layers (metrics, status store, CLI) decide how to show it.
//!
//! A result serialises with serde (the state file keeps each check's last one) and comes back
//! equal: kinds and reasons as their names (an unknown name is an error), enums in snake case,
//! durations and times in serde's own form, a DNS response code as its number, a TLS version
//! as its name (one nightjar does not report comes back as "unknown"; [`TLS_VERSION_NAMES`]).

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kind::CheckKind;

/// The outcome of one run of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's unique name.
    #[serde(with = "arc_str")]
    pub check: Arc<str>,
    /// The check's type.
    pub kind: CheckKind,
    /// Wall-clock time at which the run started.
    pub started_at: SystemTime,
    /// How long the run took, measured on the monotonic clock.
    pub duration: Duration,
    /// Pass, or fail with a reason.
    pub status: Status,
    /// Type-specific measurements (phase timings, status code, ...).
    pub details: Details,
}

impl CheckResult {
    /// Whether the run passed.
    pub fn is_success(&self) -> bool {
        matches!(self.status, Status::Pass)
    }

    /// The failure reason, if the run failed.
    pub fn reason(&self) -> Option<FailureReason> {
        match &self.status {
            Status::Pass => None,
            Status::Fail(failure) => Some(failure.reason),
        }
    }
}

/// Whether a run passed and, if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every expectation held.
    Pass,
    /// The target failed an expectation or could not be reached.
    Fail(Failure),
}

impl Status {
    /// A failure with a reason and a detail.
    pub fn fail(reason: FailureReason, detail: impl Into<String>) -> Status {
        Status::Fail(Failure::new(reason, detail))
    }
}

/// Why a run failed; also what a check's helpers return as their `Err`, so a pass cannot be
/// one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Bounded reason; becomes the `reason` metric label.
    pub reason: FailureReason,
    /// Human detail naming what was expected and what came; never a metric label, never a
    /// secret.
    pub detail: String,
}

impl Failure {
    /// A failure with a reason and a detail.
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Status {
        Status::Fail(failure)
    }
}

/// Measurements specific to a check type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Details {
    /// Nothing beyond the status (the run did not get far enough, or the type has none).
    #[default]
    None,
    /// An HTTP check's measurements.
    Http(HttpDetails),
    /// A TLS check's measurements.
    Tls(TlsDetails),
    /// A TCP check's measurements.
    Tcp(TcpDetails),
    /// A domain check's measurements (boxed: the largest, and the rarest at scale; a last
    /// result is kept per check).
    Domain(Box<DomainDetails>),
    /// A DNS check's measurements.
    Dns(DnsDetails),
    /// A flow check's steps.
    Flow(FlowDetails),
    /// A WebSocket check's measurements.
    Websocket(WebsocketDetails),
    /// A gRPC health check's measurements.
    Grpc(GrpcDetails),
    /// An ICMP check's measurements.
    Icmp(IcmpDetails),
    /// A UDP check's measurements.
    Udp(UdpDetails),
}

impl Details {
    /// The kind's details as [`Facets`]; `None` for [`Details::None`]. The one place that
    /// lists every kind for the facets below.
    fn facets(&self) -> Option<&dyn Facets> {
        match self {
            Details::None => None,
            Details::Http(http) => Some(http),
            Details::Tls(tls) => Some(tls),
            Details::Tcp(tcp) => Some(tcp),
            Details::Domain(domain) => Some(&**domain),
            Details::Dns(dns) => Some(dns),
            Details::Flow(flow) => Some(flow),
            Details::Websocket(websocket) => Some(websocket),
            Details::Grpc(grpc) => Some(grpc),
            Details::Icmp(icmp) => Some(icmp),
            Details::Udp(udp) => Some(udp),
        }
    }

    /// The run's phase timings, in the order its kind reports them ([`Facets::phases`]).
    pub fn phases(&self) -> Vec<(&'static str, Duration)> {
        self.facets().map_or_else(Vec::new, Facets::phases)
    }

    /// Time spent resolving the name connected to ([`Facets::resolve`]).
    pub fn resolve(&self) -> Option<Duration> {
        self.facets().and_then(Facets::resolve)
    }

    /// The address connected to, for kinds that report one ([`Facets::remote_addr`]).
    pub fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        self.facets().and_then(Facets::remote_addr)
    }

    /// What the TLS handshake showed, if the run got that far over TLS.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.facets().and_then(Facets::tls_info)
    }

    /// Every chain the target presented in this run ([`Facets::tls_infos`]).
    pub fn tls_infos(&self) -> impl Iterator<Item = &TlsInfo> {
        self.facets()
            .map_or_else(Vec::new, Facets::tls_infos)
            .into_iter()
    }

    /// What expires, one entry per thing: the earliest certificate of [`Details::tls_info`]'s
    /// chain first, then what the kind adds ([`Facets::expiring`]).
    pub fn expiries(&self) -> Vec<(Expiring, i64)> {
        let certificate = self
            .tls_info()
            .and_then(TlsInfo::earliest_expiry)
            .map(|at| (Expiring::Certificate, at));
        let mut found: Vec<_> = certificate.into_iter().collect();
        found.extend(self.facets().map_or_else(Vec::new, Facets::expiring));
        found
    }

    /// What expires first among the things this run saw (a certificate of any TLS
    /// handshake, a DNSSEC signature, a domain registration), and when (Unix seconds).
    pub fn earliest_expiry(&self) -> Option<(Expiring, i64)> {
        // Certificates first, so a tie goes to the certificate (`min_by_key` keeps the first).
        let certificates = self
            .tls_infos()
            .filter_map(TlsInfo::earliest_expiry)
            .map(|at| (Expiring::Certificate, at));
        let others = self.facets().map_or_else(Vec::new, Facets::expiring);
        certificates.chain(others).min_by_key(|(_, at)| *at)
    }
}

/// What every kind's details may have in common: phase timings, the connection, TLS chains,
/// expiries. Each method's default is "this kind has none", so a kind implements only what it
/// measures, and the consumers (`metrics`, `status`, `runner`) match on [`Details`] only for
/// what is truly its own.
pub trait Facets {
    /// Each phase with its duration, in the order the kind reports them.
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        Vec::new()
    }

    /// Time spent resolving the name the run connected to (the target's, or its server's).
    fn resolve(&self) -> Option<Duration> {
        None
    }

    /// For kinds that report the address they connected to: `Some` of it, or `Some(None)`
    /// when the run did not connect.
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        None
    }

    /// The one TLS handshake with the target the run reports (its gauges and API view).
    fn tls_info(&self) -> Option<&TlsInfo> {
        None
    }

    /// Every chain the target presented: [`Facets::tls_info`]'s, or several (a flow's
    /// steps). Not a chain of nightjar's own requests (a domain check's RDAP server).
    fn tls_infos(&self) -> Vec<&TlsInfo> {
        self.tls_info().into_iter().collect()
    }

    /// What expires besides certificates (a DNSSEC signature, a domain registration), and
    /// when (Unix seconds).
    fn expiring(&self) -> Vec<(Expiring, i64)> {
        Vec::new()
    }
}

impl Facets for HttpDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        HttpDetails::phases(self).to_vec()
    }
    fn resolve(&self) -> Option<Duration> {
        Some(self.resolve)
    }
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        Some(self.remote_addr)
    }
    fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }
}

impl Facets for TlsDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        TlsDetails::phases(self).to_vec()
    }
    fn resolve(&self) -> Option<Duration> {
        Some(self.resolve)
    }
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        Some(self.remote_addr)
    }
    fn tls_info(&self) -> Option<&TlsInfo> {
        self.info.as_ref()
    }
}

impl Facets for TcpDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        TcpDetails::phases(self)
    }
    fn resolve(&self) -> Option<Duration> {
        (!self.unix_socket).then_some(self.resolve)
    }
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        (!self.unix_socket).then_some(self.remote_addr)
    }
    fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }
}

/// The address pinged is `remote_addr`, with port 0.
impl Facets for IcmpDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        IcmpDetails::phases(self).to_vec()
    }
    fn resolve(&self) -> Option<Duration> {
        Some(self.resolve)
    }
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        Some(self.remote_addr)
    }
}

impl Facets for UdpDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        UdpDetails::phases(self).to_vec()
    }
    fn resolve(&self) -> Option<Duration> {
        Some(self.resolve)
    }
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        Some(self.remote_addr)
    }
}

/// The DNS server's address is not reported (it may be a URL), so no `remote_addr`.
impl Facets for DnsDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        DnsDetails::phases(self).to_vec()
    }
    fn resolve(&self) -> Option<Duration> {
        Some(self.resolve)
    }
    fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }
    fn expiring(&self) -> Vec<(Expiring, i64)> {
        self.earliest_rrsig
            .map(|at| (Expiring::Signature, at))
            .into_iter()
            .collect()
    }
}

/// The phases are the RDAP requests'; their chains are RDAP servers', not the target's.
impl Facets for DomainDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        self.http.phases().to_vec()
    }
    fn expiring(&self) -> Vec<(Expiring, i64)> {
        self.expiry
            .map(|at| (Expiring::Domain, at))
            .into_iter()
            .collect()
    }
}

/// Each step has its own timings and chain, so a flow has no phases and no single chain.
impl Facets for FlowDetails {
    fn tls_infos(&self) -> Vec<&TlsInfo> {
        self.steps
            .iter()
            .filter_map(|step| step.http.tls_info.as_ref())
            .collect()
    }
}

impl Facets for WebsocketDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        WebsocketDetails::phases(self).to_vec()
    }
    fn resolve(&self) -> Option<Duration> {
        Some(self.resolve)
    }
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        Some(self.remote_addr)
    }
    fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }
}

/// What can expire: the status page names it beside the days left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiring {
    /// A certificate of the presented chain.
    Certificate,
    /// A DNSSEC RRSIG.
    Signature,
    /// A domain registration.
    Domain,
}

impl Expiring {
    /// A short lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Expiring::Certificate => "certificate",
            Expiring::Signature => "DNSSEC signature",
            Expiring::Domain => "domain",
        }
    }
}

/// What a `flow` check's steps did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowDetails {
    /// The steps that ran, in order.
    pub steps: Vec<StepResult>,
    /// The step that failed, if one did.
    pub failed_step: Option<String>,
}

/// One step of a flow run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepResult {
    /// The step's name.
    pub name: String,
    /// How long it took, redirects included.
    pub duration: Duration,
    /// Whether it passed.
    pub success: bool,
    /// The final status code, if a response came.
    pub status_code: Option<u16>,
    /// Its HTTP phase timings.
    pub http: HttpDetails,
}

/// A response code's mnemonic ("NOERROR", "NXDOMAIN", ...), or `RCODE<n>` for one without a
/// name here: the text of the `rcode` label, the API and failure details. Only `RCODE<n>` is
/// built; a mnemonic is borrowed.
pub fn rcode_name(code: ResponseCode) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS => "BADVERS",
        other => return Cow::Owned(format!("RCODE{}", u16::from(other))),
    })
}

/// What a `dns` check measured and was told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsDetails {
    /// The server asked (address, or URL for DNS over HTTPS).
    pub server: String,
    /// Time spent resolving the server's name.
    pub resolve: Duration,
    /// Time spent connecting (TCP, TLS and HTTPS transports).
    pub connect: Duration,
    /// Time spent in TLS handshakes (TLS and HTTPS transports).
    pub tls: Duration,
    /// From sending the query to having the answer.
    pub request: Duration,
    /// The response code ([`rcode_name`] shows it); serialised as its number.
    #[serde(with = "rcode_number")]
    pub rcode: Option<ResponseCode>,
    /// The AA flag.
    pub authoritative: bool,
    /// Whether the UDP answer was truncated (and asked again over TCP).
    pub truncated: bool,
    /// Records in the answer section.
    pub answer_rrs: usize,
    /// Records in the authority section.
    pub authority_rrs: usize,
    /// Records in the additional section.
    pub additional_rrs: usize,
    /// The answers of the queried type.
    pub answers: Vec<DnsAnswer>,
    /// The serial of an SOA in the answer section.
    pub soa_serial: Option<u32>,
    /// The earliest RRSIG expiration among the answers (Unix seconds).
    pub earliest_rrsig: Option<i64>,
    /// In consistency mode: each authoritative server and its SOA serial.
    pub soa_servers: Vec<SoaServer>,
    /// What the TLS handshake showed (TLS and HTTPS transports).
    pub tls_info: Option<TlsInfo>,
}

impl DnsDetails {
    /// The response code's mnemonic, e.g. "NOERROR".
    pub fn rcode_name(&self) -> Option<Cow<'static, str>> {
        self.rcode.map(rcode_name)
    }

    /// Names of the phases of a `dns` check, as blackbox_exporter names them.
    pub const PHASES: [&'static str; 3] = ["resolve", "connect", "request"];

    /// Each phase with its duration; `connect` includes the TLS handshake.
    pub fn phases(&self) -> [(&'static str, Duration); 3] {
        [
            ("resolve", self.resolve),
            ("connect", self.connect + self.tls),
            ("request", self.request),
        ]
    }

    /// The smallest and largest TTL among the answers.
    pub fn ttl_range(&self) -> Option<(u32, u32)> {
        let min = self.answers.iter().map(|answer| answer.ttl).min()?;
        let max = self.answers.iter().map(|answer| answer.ttl).max()?;
        Some((min, max))
    }
}

/// One answer record of the queried type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAnswer {
    /// Owner name.
    pub name: String,
    /// Record type, e.g. "A".
    pub kind: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// The record data in zone-file form, e.g. "203.0.113.5" or "10 mx1.example.com.".
    pub data: String,
}

/// One authoritative server's SOA serial (consistency mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoaServer {
    /// The server, as "name (address)" or "address:port".
    pub server: String,
    /// Its serial, if it answered.
    pub serial: Option<u32>,
}

/// What a `domain` check found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainDetails {
    /// When the registration expires (Unix seconds), if found.
    pub expiry: Option<i64>,
    /// The RDAP server asked (scheme, host and path).
    pub server: Option<String>,
    /// Whether the answer came from the cache instead of a request.
    pub cached: bool,
    /// Timings of the RDAP requests made in this run (bootstrap and lookup).
    pub http: HttpDetails,
}

/// What a `tcp` check measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpDetails {
    /// Time spent resolving the target.
    pub resolve: Duration,
    /// Time spent in TCP connect.
    pub connect: Duration,
    /// Time spent sending and reading until the expected answer came.
    pub exchange: Duration,
    /// Bytes read from the target.
    pub received: u64,
    /// The address connected to.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// Time spent in the TLS handshake (from the first byte, or at a `starttls` step);
    /// `None` for a check that speaks no TLS.
    pub tls: Option<Duration>,
    /// What the TLS handshake showed.
    pub tls_info: Option<TlsInfo>,
    /// The conversation's steps that ran, in order (none for the `send`/`expect` shorthand).
    pub steps: Vec<TcpStep>,
    /// The target is a Unix socket: nothing was resolved, and there is no IP address.
    pub unix_socket: bool,
}

/// One step of a `tcp` conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpStep {
    /// What the step does, as configured (`expect "^\\+OK"`, `send`, `starttls`).
    pub what: String,
    /// Whether it passed.
    pub success: bool,
    /// How long it took (a `starttls` step's handshake included).
    pub duration: Duration,
}

/// What an `icmp` check measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IcmpDetails {
    /// Time spent resolving the target.
    pub resolve: Duration,
    /// Time spent opening and setting up the socket.
    pub setup: Duration,
    /// The average round trip of the replies (zero without a reply).
    pub rtt: Duration,
    /// The shortest round trip.
    pub rtt_min: Duration,
    /// The longest round trip.
    pub rtt_max: Duration,
    /// The standard deviation of the round trips.
    pub rtt_stddev: Duration,
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
    /// The TTL (IPv4) or hop limit (IPv6) of the last reply, when the kernel gave it.
    pub reply_hop_limit: Option<u8>,
    /// The address pinged (port 0).
    pub remote_addr: Option<std::net::SocketAddr>,
    /// The kind of socket the run used, once one opened.
    pub socket: Option<IcmpSocketKind>,
}

/// The kind of ICMP socket a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IcmpSocketKind {
    /// An unprivileged datagram socket (`net.ipv4.ping_group_range`).
    Datagram,
    /// A raw socket (CAP_NET_RAW).
    Raw,
}

/// What a `udp` check measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpDetails {
    /// Time spent resolving the target.
    pub resolve: Duration,
    /// From the first datagram sent to the matching answer (or the end).
    pub exchange: Duration,
    /// Datagrams sent.
    pub sent: u32,
    /// Bytes received, in every datagram read.
    pub received: u64,
    /// The address sent to.
    pub remote_addr: Option<std::net::SocketAddr>,
}

/// What a `tls` check measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsDetails {
    /// Time spent resolving the target.
    pub resolve: Duration,
    /// Time spent in TCP connect.
    pub connect: Duration,
    /// Time spent in the STARTTLS conversation, if any.
    pub starttls: Duration,
    /// Time spent in the TLS handshake.
    pub handshake: Duration,
    /// The address connected to.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// What the handshake showed.
    pub info: Option<TlsInfo>,
}

impl TlsDetails {
    /// Names of the phases of a `tls` check.
    pub const PHASES: [&'static str; 4] = ["resolve", "connect", "starttls", "tls"];

    /// Each phase with its duration, in [`TlsDetails::PHASES`] order.
    pub fn phases(&self) -> [(&'static str, Duration); 4] {
        let took = [self.resolve, self.connect, self.starttls, self.handshake];
        std::array::from_fn(|idx| (Self::PHASES[idx], took[idx]))
    }
}

/// The presented certificate chain and the verdicts on it, recorded whether or not it is
/// valid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsInfo {
    /// Negotiated protocol version, e.g. "TLS 1.3" (one of [`TLS_VERSION_NAMES`]).
    #[serde(with = "tls_version")]
    pub version: StaticName,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The chain as presented, leaf first.
    pub chain: Vec<CertInfo>,
    /// Whether the chain validates to the configured roots (ignoring the name).
    pub chain_valid: bool,
    /// Why the chain or name did not verify, if it did not.
    pub verify_error: Option<String>,
    /// Whether the leaf is valid for the server name.
    pub hostname_match: bool,
}

impl TlsInfo {
    /// The earliest `notAfter` in the presented chain (Unix seconds).
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.chain.iter().map(|cert| cert.not_after).min()
    }

    /// The certificate that expires first.
    pub fn earliest_cert(&self) -> Option<(usize, &CertInfo)> {
        self.chain
            .iter()
            .enumerate()
            .min_by_key(|(_, cert)| cert.not_after)
    }
}

/// One certificate of a presented chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. "CN=shop.example.com".
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub fingerprint_sha256: String,
}

/// What an HTTP check measured, summed over every redirect hop like blackbox_exporter does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpDetails {
    /// Time spent resolving names.
    pub resolve: Duration,
    /// Time spent in TCP connect.
    pub connect: Duration,
    /// Time spent in TLS handshakes.
    pub tls: Duration,
    /// From the request being sent to the response head being parsed.
    pub processing: Duration,
    /// From the response head to the end of the body.
    pub transfer: Duration,
    /// Status code of the last response, if one came.
    pub status_code: Option<u16>,
    /// HTTP version of the last response (1.0, 1.1, 2.0).
    pub http_version: Option<f64>,
    /// Body bytes received on the last response (including bytes read and discarded past the cap).
    pub content_length: Option<u64>,
    /// Redirects followed.
    pub redirects: u32,
    /// Whether the last hop used TLS.
    pub tls_used: bool,
    /// TLS protocol version of the last hop, e.g. "TLS 1.3" (one of [`TLS_VERSION_NAMES`]).
    #[serde(with = "tls_version_option")]
    pub tls_version: Option<StaticName>,
    /// Whether a body regex expectation failed.
    pub failed_due_to_regex: bool,
    /// The address connected to on the last hop.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// What the TLS handshake of the last `https` hop showed.
    pub tls_info: Option<TlsInfo>,
    /// The last response's `Last-Modified` header, Unix seconds, when it parses.
    pub last_modified: Option<i64>,
    /// The last response's `Content-Length` header, when it has one that parses.
    pub declared_length: Option<u64>,
    /// Decoded body bytes of the last response, when the check sets `compression` (up to
    /// where decoding stopped).
    pub uncompressed_length: Option<u64>,
}

impl HttpDetails {
    /// Names of the HTTP phases, in the order blackbox_exporter reports them.
    pub const PHASES: [&'static str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

    /// Each phase with its duration, in [`HttpDetails::PHASES`] order.
    pub fn phases(&self) -> [(&'static str, Duration); 5] {
        let took = [
            self.resolve,
            self.connect,
            self.tls,
            self.processing,
            self.transfer,
        ];
        std::array::from_fn(|idx| (Self::PHASES[idx], took[idx]))
    }
}

/// What a `websocket` check measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebsocketDetails {
    /// Time spent resolving the target.
    pub resolve: Duration,
    /// Time spent in TCP connect.
    pub connect: Duration,
    /// Time spent in the TLS handshake (`wss` URLs).
    pub tls: Duration,
    /// From sending the upgrade request to having the server's answer.
    pub upgrade: Duration,
    /// The conversation: every step's messages sent and awaited.
    pub exchange: Duration,
    /// From sending the close frame to having the server's.
    pub close: Duration,
    /// The HTTP status of the answer to the upgrade request (101 when it was accepted).
    pub status_code: Option<u16>,
    /// Messages sent (text and binary).
    pub messages_sent: u32,
    /// Messages received (text and binary; pings and pongs are not counted).
    pub messages_received: u32,
    /// The code of the server's close frame, if one came.
    pub close_code: Option<u16>,
    /// The reason in the server's close frame (text the server chose).
    pub close_reason: Option<String>,
    /// The address connected to.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// What the TLS handshake showed (`wss` URLs).
    pub tls_info: Option<TlsInfo>,
}

impl WebsocketDetails {
    /// Names of the phases of a `websocket` check.
    pub const PHASES: [&'static str; 6] =
        ["resolve", "connect", "tls", "upgrade", "exchange", "close"];

    /// Each phase with its duration, in [`WebsocketDetails::PHASES`] order.
    pub fn phases(&self) -> [(&'static str, Duration); 6] {
        let took = [
            self.resolve,
            self.connect,
            self.tls,
            self.upgrade,
            self.exchange,
            self.close,
        ];
        std::array::from_fn(|idx| (Self::PHASES[idx], took[idx]))
    }
}

/// What a `grpc` check measured and was told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcDetails {
    /// Time spent resolving the target.
    pub resolve: Duration,
    /// Time spent in TCP connect.
    pub connect: Duration,
    /// Time spent in the TLS handshake.
    pub tls: Duration,
    /// From starting HTTP/2 to the end of the health call.
    pub check: Duration,
    /// The address connected to.
    pub remote_addr: Option<SocketAddr>,
    /// Whether the connection used TLS.
    pub tls_used: bool,
    /// What the TLS handshake showed.
    pub tls_info: Option<TlsInfo>,
    /// The gRPC status code the call ended with (0 is OK), if the server gave one.
    pub status_code: Option<i32>,
    /// The serving status of the answer ([`SERVING_STATUS_NAMES`] by value), if one came.
    pub serving_status: Option<i32>,
}

impl GrpcDetails {
    /// Names of the phases of a `grpc` check: blackbox_exporter's `resolve` and `check`
    /// (the call), with the connection's own between them.
    pub const PHASES: [&'static str; 4] = ["resolve", "connect", "tls", "check"];

    /// Each phase with its duration, in [`GrpcDetails::PHASES`] order.
    pub fn phases(&self) -> [(&'static str, Duration); 4] {
        let took = [self.resolve, self.connect, self.tls, self.check];
        std::array::from_fn(|idx| (Self::PHASES[idx], took[idx]))
    }

    /// The name of the status code, e.g. "NOT_FOUND".
    pub fn status_name(&self) -> Option<Cow<'static, str>> {
        self.status_code.map(grpc_code_name)
    }

    /// The name of the serving status, e.g. "NOT_SERVING"; `None` without an answer.
    pub fn serving_status_name(&self) -> Option<Cow<'static, str>> {
        self.serving_status
            .map(|value| match usize::try_from(value) {
                Ok(idx) if idx < SERVING_STATUS_NAMES.len() => {
                    Cow::Borrowed(SERVING_STATUS_NAMES[idx])
                }
                _ => Cow::Owned(value.to_string()),
            })
    }
}

impl Facets for GrpcDetails {
    fn phases(&self) -> Vec<(&'static str, Duration)> {
        GrpcDetails::phases(self).to_vec()
    }
    fn resolve(&self) -> Option<Duration> {
        Some(self.resolve)
    }
    fn remote_addr(&self) -> Option<Option<SocketAddr>> {
        Some(self.remote_addr)
    }
    fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }
}

/// The serving statuses of `grpc.health.v1`, by value: the `serving_status` label.
pub const SERVING_STATUS_NAMES: [&str; 4] =
    ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// A gRPC status code's name ("OK", "NOT_FOUND", ...), or `CODE<n>` for one outside the
/// standard set.
pub fn grpc_code_name(code: i32) -> Cow<'static, str> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    match usize::try_from(code) {
        Ok(idx) if idx < NAMES.len() => Cow::Borrowed(NAMES[idx]),
        _ => Cow::Owned(format!("CODE{code}")),
    }
}

/// Why a run failed. Bounded on purpose: it is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// The run did not finish within its timeout.
    Timeout,
    /// The target's name could not be resolved.
    Dns,
    /// No TCP connection could be made.
    Connect,
    /// The TLS handshake failed for a reason other than the certificate.
    Tls,
    /// The server's certificate did not verify (chain or hostname).
    CertInvalid,
    /// A certificate in the chain expires sooner than `min_days_left`.
    CertExpiring,
    /// The server closed or reset the connection before the response was complete.
    Closed,
    /// The server answered something that is not valid HTTP.
    Protocol,
    /// Too many redirects, or a redirect without a usable `Location`.
    Redirect,
    /// The status code was not an expected one.
    Status,
    /// A body expectation failed.
    Body,
    /// A header expectation failed.
    Header,
    /// A JSON expectation failed.
    Json,
    /// The run took longer than `max_duration`.
    TooSlow,
    /// The response was larger than allowed.
    TooLarge,
    /// RDAP gave no usable answer (not found, malformed, no expiration, rate-limited).
    Rdap,
    /// The domain's registration expires sooner than `min_days_left`.
    DomainExpiring,
    /// The DNS response code was not an expected one.
    Rcode,
    /// A DNS answer expectation failed (answers, AA flag, TTLs).
    Answer,
    /// A DNSSEC signature among the answers expires sooner than `min_rrsig_days_left`.
    RrsigExpiring,
    /// The authoritative servers of a zone disagree on its SOA serial.
    Inconsistent,
    /// A flow step could not extract a variable from its response.
    Extract,
    /// A gRPC call ended with a status other than OK.
    GrpcStatus,
    /// A gRPC health check answered something other than SERVING.
    NotServing,
    /// More ICMP echo requests went without a reply than `max_loss` allows.
    Loss,
    /// The target or a router answered that it cannot be reached (an ICMP destination
    /// unreachable or time exceeded, a UDP port unreachable), or nothing could be sent to it.
    Unreachable,
    /// The agent lacks the privilege the check needs (an ICMP socket).
    Permission,
    /// The response's HTTP version was not one of `expect.http_versions`.
    HttpVersion,
    /// The OAuth2 token endpoint gave no usable token (an error code, a refused client, an
    /// unusable answer, or it could not be reached).
    Auth,
    /// The HTTP proxy could not be reached, or refused the request or the CONNECT.
    Proxy,
}

impl FailureReason {
    /// Every reason, in label order.
    pub const ALL: &'static [FailureReason] = &[
        FailureReason::Timeout,
        FailureReason::Dns,
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::CertInvalid,
        FailureReason::CertExpiring,
        FailureReason::Closed,
        FailureReason::Protocol,
        FailureReason::Redirect,
        FailureReason::Status,
        FailureReason::Body,
        FailureReason::Header,
        FailureReason::Json,
        FailureReason::TooSlow,
        FailureReason::TooLarge,
        FailureReason::Rdap,
        FailureReason::DomainExpiring,
        FailureReason::Rcode,
        FailureReason::Answer,
        FailureReason::RrsigExpiring,
        FailureReason::Inconsistent,
        FailureReason::Extract,
        FailureReason::GrpcStatus,
        FailureReason::NotServing,
        FailureReason::Loss,
        FailureReason::Unreachable,
        FailureReason::Permission,
        FailureReason::HttpVersion,
        FailureReason::Auth,
        FailureReason::Proxy,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Dns => "dns",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::CertInvalid => "cert_invalid",
            FailureReason::CertExpiring => "cert_expiring",
            FailureReason::Closed => "closed",
            FailureReason::Protocol => "protocol",
            FailureReason::Redirect => "redirect",
            FailureReason::Status => "status",
            FailureReason::Body => "body",
            FailureReason::Header => "header",
            FailureReason::Json => "json",
            FailureReason::TooSlow => "too_slow",
            FailureReason::TooLarge => "too_large",
            FailureReason::Rdap => "rdap",
            FailureReason::DomainExpiring => "domain_expiring",
            FailureReason::Rcode => "rcode",
            FailureReason::Answer => "answer",
            FailureReason::RrsigExpiring => "rrsig_expiring",
            FailureReason::Inconsistent => "inconsistent",
            FailureReason::Extract => "extract",
            FailureReason::GrpcStatus => "grpc_status",
            FailureReason::NotServing => "not_serving",
            FailureReason::Loss => "loss",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Permission => "permission",
            FailureReason::HttpVersion => "http_version",
            FailureReason::Auth => "auth",
            FailureReason::Proxy => "proxy",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason by its label value ([`FailureReason::as_str`]).
impl FromStr for FailureReason {
    type Err = ();

    fn from_str(text: &str) -> Result<FailureReason, ()> {
        FailureReason::ALL
            .iter()
            .copied()
            .find(|reason| reason.as_str() == text)
            .ok_or(())
    }
}

/// As its label value.
impl Serialize for FailureReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// From its label value; any other text is an error.
impl<'de> Deserialize<'de> for FailureReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FailureReason, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|()| serde::de::Error::custom(format_args!("unknown failure reason {text:?}")))
    }
}

/// Every TLS version name nightjar reports ([`crate::net::tls_version_name`]), "unknown" last: a
/// deserialised version is one of these, and a name not among them comes back as "unknown".
pub const TLS_VERSION_NAMES: [&str; 5] = ["TLS 1.3", "TLS 1.2", "TLS 1.1", "TLS 1.0", "unknown"];

/// The name in [`TLS_VERSION_NAMES`] equal to `text`, or "unknown".
pub fn tls_version_named(text: &str) -> &'static str {
    TLS_VERSION_NAMES
        .iter()
        .copied()
        .find(|name| *name == text)
        .unwrap_or("unknown")
}

/// A `&'static str` field that serde must not borrow: its derive treats a field spelt `&str`
/// as borrowed from the input (and the input as living forever), so the fields that hold a
/// static name are spelt with this alias and read through a `with` module instead.
type StaticName = &'static str;

/// A check's name as a string (serde's own `Arc<str>` needs its `rc` feature).
mod arc_str {
    use super::*;

    pub fn serialize<S: Serializer>(name: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(deserializer).map(Arc::from)
    }
}

/// A TLS version as its name, read back onto [`TLS_VERSION_NAMES`].
mod tls_version {
    use super::*;

    pub fn serialize<S: Serializer>(
        version: &&'static str,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(version)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<&'static str, D::Error> {
        String::deserialize(deserializer).map(|text| tls_version_named(&text))
    }
}

/// An optional TLS version as its name or null, read back onto [`TLS_VERSION_NAMES`].
mod tls_version_option {
    use super::*;

    pub fn serialize<S: Serializer>(
        version: &Option<&'static str>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        version.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<&'static str>, D::Error> {
        Option::<String>::deserialize(deserializer)
            .map(|text| text.as_deref().map(tls_version_named))
    }
}

/// A DNS response code as its number (BADVERS and BADSIG share 16, which reads back as hickory
/// parses it from a message: BADSIG).
mod rcode_number {
    use super::*;

    pub fn serialize<S: Serializer>(
        rcode: &Option<ResponseCode>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        rcode.map(u16::from).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<ResponseCode>, D::Error> {
        Option::<u16>::deserialize(deserializer)
            .map(|code| code.map(<ResponseCode as From<u16>>::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(not_after: i64) -> TlsInfo {
        TlsInfo {
            chain: vec![CertInfo {
                not_after,
                ..CertInfo::default()
            }],
            ..TlsInfo::default()
        }
    }

    #[test]
    fn a_flow_has_a_chain_per_step_and_no_single_one() {
        let step = |not_after| StepResult {
            http: HttpDetails {
                tls_info: Some(chain(not_after)),
                ..HttpDetails::default()
            },
            ..StepResult::default()
        };
        let details = Details::Flow(FlowDetails {
            steps: vec![step(300), StepResult::default(), step(200)],
            failed_step: None,
        });
        assert!(details.tls_info().is_none());
        assert!(details.expiries().is_empty());
        assert!(details.phases().is_empty());
        assert_eq!(details.tls_infos().count(), 2);
        assert_eq!(
            details.earliest_expiry(),
            Some((Expiring::Certificate, 200))
        );
    }

    #[test]
    fn an_rdap_servers_chain_is_not_the_targets() {
        let details = Details::Domain(Box::new(DomainDetails {
            expiry: Some(500),
            http: HttpDetails {
                tls_info: Some(chain(100)),
                ..HttpDetails::default()
            },
            ..DomainDetails::default()
        }));
        assert_eq!(details.tls_infos().count(), 0);
        assert_eq!(details.expiries(), vec![(Expiring::Domain, 500)]);
        assert_eq!(details.earliest_expiry(), Some((Expiring::Domain, 500)));
        assert_eq!(details.resolve(), None);
        assert_eq!(details.phases().len(), HttpDetails::PHASES.len());
    }

    #[test]
    fn expiries_list_the_certificate_first_and_ties_go_to_it() {
        let details = Details::Dns(DnsDetails {
            earliest_rrsig: Some(100),
            tls_info: Some(chain(100)),
            ..DnsDetails::default()
        });
        assert_eq!(
            details.expiries(),
            vec![(Expiring::Certificate, 100), (Expiring::Signature, 100)]
        );
        assert_eq!(
            details.earliest_expiry(),
            Some((Expiring::Certificate, 100))
        );
        assert_eq!(details.remote_addr(), None);
        assert!(Details::Tcp(TcpDetails::default()).remote_addr() == Some(None));
        assert!(Details::None.phases().is_empty());
    }

    fn tls(version: &'static str) -> TlsInfo {
        TlsInfo {
            version,
            alpn: Some("h2".into()),
            chain: vec![
                CertInfo {
                    subject: "CN=shop.example.com".into(),
                    issuer: "CN=Example CA".into(),
                    serial: "1f2e".into(),
                    sans: vec!["shop.example.com".into(), "192.0.2.7".into()],
                    not_before: 1_700_000_000,
                    not_after: 1_800_000_000,
                    fingerprint_sha256: "ab".repeat(32),
                },
                CertInfo {
                    subject: "CN=Example CA".into(),
                    not_after: 1_900_000_000,
                    ..CertInfo::default()
                },
            ],
            chain_valid: false,
            verify_error: Some("invalid peer certificate: UnknownIssuer".into()),
            hostname_match: true,
        }
    }

    fn http() -> HttpDetails {
        HttpDetails {
            resolve: Duration::from_micros(1_250),
            connect: Duration::from_nanos(2_000_001),
            tls: Duration::from_millis(12),
            processing: Duration::from_millis(40),
            transfer: Duration::from_secs(1),
            status_code: Some(302),
            http_version: Some(1.1),
            content_length: Some(5120),
            redirects: 2,
            tls_used: true,
            tls_version: Some("TLS 1.2"),
            failed_due_to_regex: true,
            remote_addr: Some("[2001:db8::1]:443".parse().unwrap()),
            tls_info: Some(tls("TLS 1.2")),
            uncompressed_length: Some(40960),
            last_modified: Some(1_700_000_000),
            declared_length: Some(5120),
        }
    }

    /// A rich result of every kind, and one without details.
    fn every_kind() -> Vec<CheckResult> {
        let result = |kind, details| CheckResult {
            check: Arc::from(format!("{kind:?} check")),
            kind,
            started_at: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_123, 456_789_012),
            duration: Duration::from_nanos(1_234_567_891),
            status: Status::fail(FailureReason::CertInvalid, "the chain \"does not\" verify"),
            details,
        };
        let dns = DnsDetails {
            server: "https://dns.example/dns-query".into(),
            resolve: Duration::from_millis(3),
            connect: Duration::from_millis(4),
            tls: Duration::from_millis(5),
            request: Duration::from_millis(6),
            rcode: Some(ResponseCode::Unknown(3841)),
            authoritative: true,
            truncated: true,
            answer_rrs: 2,
            authority_rrs: 1,
            additional_rrs: 3,
            answers: vec![DnsAnswer {
                name: "example.com.".into(),
                kind: "MX".into(),
                ttl: 300,
                data: "10 mx1.example.com.".into(),
            }],
            soa_serial: Some(2024010101),
            earliest_rrsig: Some(1_750_000_000),
            soa_servers: vec![
                SoaServer {
                    server: "ns1.example.com. (192.0.2.1)".into(),
                    serial: Some(7),
                },
                SoaServer {
                    server: "192.0.2.2:53".into(),
                    serial: None,
                },
            ],
            tls_info: Some(tls("TLS 1.3")),
        };
        let step = |name: &str, success| StepResult {
            name: name.into(),
            duration: Duration::from_millis(70),
            success,
            status_code: Some(200),
            http: http(),
        };
        vec![
            result(CheckKind::Http, Details::Http(http())),
            result(CheckKind::Dns, Details::Dns(dns.clone())),
            result(
                CheckKind::Dns,
                Details::Dns(DnsDetails {
                    rcode: Some(ResponseCode::NXDomain),
                    ..DnsDetails::default()
                }),
            ),
            result(
                CheckKind::Flow,
                Details::Flow(FlowDetails {
                    steps: vec![step("login", true), step("cart", false)],
                    failed_step: Some("cart".into()),
                }),
            ),
            result(
                CheckKind::Domain,
                Details::Domain(Box::new(DomainDetails {
                    expiry: Some(1_818_129_600),
                    server: Some("https://rdap.example/".into()),
                    cached: true,
                    http: http(),
                })),
            ),
            result(
                CheckKind::Tcp,
                Details::Tcp(TcpDetails {
                    resolve: Duration::from_millis(1),
                    connect: Duration::from_millis(2),
                    exchange: Duration::from_millis(3),
                    received: 17,
                    remote_addr: Some("192.0.2.9:25".parse().unwrap()),
                    tls: Some(Duration::from_millis(4)),
                    tls_info: Some(tls("TLS 1.3")),
                    steps: vec![TcpStep {
                        what: "expect \"^\\\\* OK\"".into(),
                        success: true,
                        duration: Duration::from_millis(5),
                    }],
                    unix_socket: false,
                }),
            ),
            result(
                CheckKind::Icmp,
                Details::Icmp(IcmpDetails {
                    resolve: Duration::from_millis(1),
                    setup: Duration::from_micros(40),
                    rtt: Duration::from_micros(900),
                    rtt_min: Duration::from_micros(800),
                    rtt_max: Duration::from_millis(1),
                    rtt_stddev: Duration::from_micros(80),
                    sent: 3,
                    received: 3,
                    reply_hop_limit: Some(64),
                    remote_addr: Some("[2001:db8::9]:0".parse().unwrap()),
                    socket: Some(IcmpSocketKind::Raw),
                }),
            ),
            result(
                CheckKind::Udp,
                Details::Udp(UdpDetails {
                    resolve: Duration::from_millis(1),
                    exchange: Duration::from_millis(2),
                    sent: 2,
                    received: 48,
                    remote_addr: Some("192.0.2.9:123".parse().unwrap()),
                }),
            ),
            result(
                CheckKind::Tls,
                Details::Tls(TlsDetails {
                    resolve: Duration::from_millis(1),
                    connect: Duration::from_millis(2),
                    starttls: Duration::from_millis(3),
                    handshake: Duration::from_millis(4),
                    remote_addr: None,
                    info: Some(tls("unknown")),
                }),
            ),
            CheckResult {
                status: Status::Pass,
                ..result(CheckKind::Tcp, Details::None)
            },
            result(
                CheckKind::Websocket,
                Details::Websocket(WebsocketDetails {
                    resolve: Duration::from_millis(1),
                    connect: Duration::from_millis(2),
                    tls: Duration::from_millis(3),
                    upgrade: Duration::from_millis(4),
                    exchange: Duration::from_millis(5),
                    close: Duration::from_millis(6),
                    status_code: Some(101),
                    messages_sent: 2,
                    messages_received: 3,
                    close_code: Some(4000),
                    close_reason: Some("going \"away\"".into()),
                    remote_addr: Some("[::1]:8443".parse().unwrap()),
                    tls_info: Some(tls("TLS 1.3")),
                }),
            ),
            result(
                CheckKind::Grpc,
                Details::Grpc(GrpcDetails {
                    resolve: Duration::from_millis(1),
                    connect: Duration::from_millis(2),
                    tls: Duration::from_millis(3),
                    check: Duration::from_millis(4),
                    remote_addr: Some("[2001:db8::7]:50051".parse().unwrap()),
                    tls_used: true,
                    tls_info: Some(tls("TLS 1.3")),
                    status_code: Some(5),
                    serving_status: None,
                }),
            ),
        ]
    }

    #[test]
    fn a_result_of_every_kind_round_trips_through_json() {
        let all = every_kind();
        let kinds: std::collections::BTreeSet<_> = all.iter().map(|res| res.kind).collect();
        assert_eq!(kinds.len(), CheckKind::ALL.len(), "every kind is covered");
        for result in all {
            let json = serde_json::to_string(&result).unwrap();
            let back: CheckResult = serde_json::from_str(&json).unwrap();
            assert_eq!(back, result, "{json}");
            // Read from a reader too, as the state file is: nothing may borrow from the input.
            let back: CheckResult = serde_json::from_reader(json.as_bytes()).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
        }
    }

    #[test]
    fn names_read_back_and_unknown_ones_are_refused_or_unknown() {
        let json = serde_json::to_value(&every_kind()[0]).unwrap();
        assert_eq!(json["kind"], "http");
        assert_eq!(json["status"]["fail"]["reason"], "cert_invalid");
        assert_eq!(json["details"]["http"]["tls_version"], "TLS 1.2");
        assert_eq!(json["details"]["http"]["remote_addr"], "[2001:db8::1]:443");
        let dns = serde_json::to_value(&every_kind()[1]).unwrap();
        assert_eq!(dns["details"]["dns"]["rcode"], 3841);
        assert_eq!(serde_json::to_value(Status::Pass).unwrap(), "pass");
        assert_eq!(serde_json::to_value(Details::None).unwrap(), "none");

        for reason in FailureReason::ALL {
            let json = serde_json::to_string(reason).unwrap();
            assert_eq!(
                serde_json::from_str::<FailureReason>(&json).unwrap(),
                *reason
            );
        }
        for kind in CheckKind::ALL {
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(serde_json::from_str::<CheckKind>(&json).unwrap(), *kind);
        }
        let error = serde_json::from_str::<FailureReason>("\"teapot\"").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unknown failure reason \"teapot\"")
        );
        let error = serde_json::from_str::<CheckKind>("\"ping\"").unwrap_err();
        assert!(error.to_string().contains("unknown check kind \"ping\""));

        // A version nightjar does not report comes back as "unknown"; a missing one as none.
        let mut http = serde_json::to_value(http()).unwrap();
        http["tls_version"] = "SSL 3.0".into();
        http["tls_info"]["version"] = "TLS 1.4".into();
        let back: HttpDetails = serde_json::from_value(http.clone()).unwrap();
        assert_eq!(back.tls_version, Some("unknown"));
        assert_eq!(back.tls_info.unwrap().version, "unknown");
        http.as_object_mut().unwrap().remove("tls_version");
        let back: HttpDetails = serde_json::from_value(http).unwrap();
        assert_eq!(back.tls_version, None);
    }

    #[test]
    fn rcode_names_borrow_the_mnemonics_and_build_the_rest() {
        assert!(matches!(
            rcode_name(ResponseCode::NXDomain),
            Cow::Borrowed("NXDOMAIN")
        ));
        assert!(matches!(
            rcode_name(ResponseCode::BADVERS),
            Cow::Borrowed("BADVERS")
        ));
        assert_eq!(rcode_name(ResponseCode::BADCOOKIE), "RCODE23");
        assert_eq!(rcode_name(ResponseCode::Unknown(3841)), "RCODE3841");
    }
}
