//! What `/probe` answers: the text exposition blackbox_exporter returns for a probe of the same
//! prober, with its family names, help texts, types and labels, and its rules for which series
//! exist (a family blackbox_exporter registers only once a probe got that far is present only
//! then). The shape is blackbox_exporter 0.23's (Debian's): families added later upstream
//! (`probe_tls_cipher_info`, `probe_timeout_seconds`, the `serialnumber` label) are not written.
//! The facts come from the run's [`crate::result::CheckResult`], the same ones the native gauges use.
//!
//! Also the agent's counter of `/probe` requests ([`ProbeRequests`]).

use std::fmt::Write as _;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};

use crate::kind::CheckKind;
use crate::result::{Details, FailureReason, SERVING_STATUS_NAMES, Status, TlsInfo};

/// What a `/probe` ran and what came of it.
#[derive(Debug, Clone, Copy)]
pub struct ProbeRun<'a> {
    /// The prober (the module's kind).
    pub kind: CheckKind,
    /// Whether the target was one the prober could use (a URL that parses, `HOST:PORT` for
    /// tcp): blackbox_exporter stops before resolving otherwise.
    pub target_ok: bool,
    /// The verdict.
    pub success: bool,
    /// How long the probe took.
    pub duration: Duration,
    /// What the run measured (`Details::None` when it did not run).
    pub details: &'a Details,
    /// The run's verdict, when it ran.
    pub status: Option<&'a Status>,
    /// Whether a DNS module asks for SOA records (`probe_dns_serial` exists then).
    pub soa_query: bool,
    /// The target's address when the target names one (an IP literal): what blackbox_exporter
    /// resolved even when the connection then failed.
    pub target_ip: Option<std::net::IpAddr>,
}

/// One family: name, help, type, and samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn gauge(name: &'static str, help: &'static str, value: f64) -> Family {
        Family {
            name,
            help,
            samples: vec![(Vec::new(), value)],
        }
    }

    fn vec(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Family {
        self.samples.push((labels, value));
        self
    }
}

const HELP_EARLIEST: &str = "Returns last SSL chain expiry in unixtime";
const HELP_CHAIN_EXPIRY: &str = "Returns last SSL chain expiry in timestamp";
const HELP_TLS_INFO: &str = "Returns the TLS version used or NaN when unknown";
const HELP_CHAIN_INFO: &str = "Contains SSL leaf certificate information";
const HELP_REGEX: &str = "Indicates if probe failed due to regex";

/// Go's zero `time.Time` in Unix seconds: what blackbox_exporter reports as the last verified
/// chain's expiry when no chain was verified (`insecure_skip_verify`).
const GO_ZERO_TIME: f64 = -62_135_596_800.0;

/// The exposition of one `/probe`, families sorted by name as Prometheus's client library
/// gathers them.
pub fn render(run: &ProbeRun<'_>) -> String {
    let mut families = vec![
        Family::gauge(
            "probe_success",
            "Displays whether or not the probe was a success",
            flag(run.success),
        ),
        Family::gauge(
            "probe_duration_seconds",
            "Returns how long the probe took to complete in seconds",
            run.duration.as_secs_f64(),
        ),
    ];
    match run.kind {
        CheckKind::Http => http(run, &mut families),
        CheckKind::Tcp => tcp(run, &mut families),
        CheckKind::Dns => dns(run, &mut families),
        CheckKind::Icmp => icmp(run, &mut families),
        CheckKind::Grpc => grpc(run, &mut families),
        // Kinds blackbox_exporter has no prober for answer the two families every probe has.
        CheckKind::Tls
        | CheckKind::Domain
        | CheckKind::Flow
        | CheckKind::Websocket
        | CheckKind::Udp => {}
    }
    families.retain(|family| !family.samples.is_empty());
    families.sort_by_key(|family| family.name);
    let mut out = String::new();
    for family in &mut families {
        family.samples.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
        let _ = writeln!(out, "# TYPE {} gauge", family.name);
        for (labels, value) in &family.samples {
            out.push_str(family.name);
            if !labels.is_empty() {
                out.push('{');
                for (idx, (name, value)) in labels.iter().enumerate() {
                    if idx > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", go_float(*value));
        }
    }
    out
}

fn flag(on: bool) -> f64 {
    f64::from(u8::from(on))
}

/// Whether the run got an address for the target: then `chooseProtocol`'s three gauges have
/// their values; before that (a failed resolution) they are 0.
fn resolution(run: &ProbeRun<'_>, families: &mut Vec<Family>, address: Option<std::net::IpAddr>) {
    let lookup = run.details.resolve().unwrap_or_default().as_secs_f64();
    families.push(Family::gauge(
        "probe_dns_lookup_time_seconds",
        "Returns the time taken for probe dns lookup in seconds",
        lookup,
    ));
    families.push(Family::gauge(
        "probe_ip_protocol",
        "Specifies whether probe ip protocol is IP4 or IP6",
        match address {
            Some(std::net::IpAddr::V4(_)) => 4.0,
            Some(std::net::IpAddr::V6(_)) => 6.0,
            None => 0.0,
        },
    ));
    families.push(Family::gauge(
        "probe_ip_addr_hash",
        "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
        address.map_or(0.0, ip_hash),
    ));
}

/// blackbox_exporter's `ipHash`: FNV-1a (32 bits) of the address's bytes (4 for IPv4).
fn ip_hash(ip: std::net::IpAddr) -> f64 {
    let bytes: Vec<u8> = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    f64::from(hash)
}

/// The address the run connected to, or the one its target names.
fn remote_ip(run: &ProbeRun<'_>) -> Option<std::net::IpAddr> {
    run.details
        .remote_addr()
        .flatten()
        .map(|addr| addr.ip())
        .or(run.target_ip)
}

/// The four TLS families of a handshake blackbox_exporter saw.
fn tls(families: &mut Vec<Family>, info: &TlsInfo, chain_expiry: bool) {
    families.push(Family::gauge(
        "probe_ssl_earliest_cert_expiry",
        HELP_EARLIEST,
        info.earliest_expiry().map_or(GO_ZERO_TIME, |at| at as f64),
    ));
    families.push(
        Family::vec("probe_tls_version_info", HELP_TLS_INFO)
            .with(vec![("version", info.version.to_string())], 1.0),
    );
    if chain_expiry {
        // The verified chain's earliest expiry; none was verified when verification was off.
        let verified = info.chain_valid.then(|| info.earliest_expiry()).flatten();
        families.push(Family::gauge(
            "probe_ssl_last_chain_expiry_timestamp_seconds",
            HELP_CHAIN_EXPIRY,
            verified.map_or(GO_ZERO_TIME, |at| at as f64),
        ));
    }
    families.push(chain_info(info));
}

fn chain_info(info: &TlsInfo) -> Family {
    let family = Family::vec("probe_ssl_last_chain_info", HELP_CHAIN_INFO);
    let Some(leaf) = info.chain.first() else {
        return family;
    };
    // Go's `x509.Certificate.DNSNames`: the DNS names only, joined with commas.
    let names: Vec<&str> = leaf
        .sans
        .iter()
        .filter(|name| name.parse::<std::net::IpAddr>().is_err())
        .map(String::as_str)
        .collect();
    family.with(
        vec![
            ("fingerprint_sha256", leaf.fingerprint_sha256.clone()),
            ("subject", go_name(&leaf.subject)),
            ("issuer", go_name(&leaf.issuer)),
            ("subjectalternative", names.join(",")),
        ],
        1.0,
    )
}

/// A distinguished name as Go's `pkix.Name.String` writes it: the last RDN first, joined
/// with commas.
fn go_name(name: &str) -> String {
    let mut parts: Vec<&str> = name.split(", ").collect();
    parts.reverse();
    parts.join(",")
}

/// `probe_http_duration_seconds` by phase; before an address, only the resolve phase exists.
fn http_phases(
    run: &ProbeRun<'_>,
    families: &mut Vec<Family>,
    http: Option<&crate::result::HttpDetails>,
    responded: bool,
) {
    let mut phases = Family::vec(
        "probe_http_duration_seconds",
        "Duration of http request by phase, summed over all redirects",
    );
    if run.target_ok {
        let address = remote_ip(run);
        resolution(run, families, address);
        for (phase, took) in http.map(|http| http.phases()).unwrap_or_default() {
            if phase == "resolve" || address.is_some() || responded {
                phases
                    .samples
                    .push((vec![("phase", phase.to_string())], took.as_secs_f64()));
            }
        }
        if http.is_none() {
            phases
                .samples
                .push((vec![("phase", "resolve".to_string())], 0.0));
        }
    }
    families.push(phases);
}

fn http(run: &ProbeRun<'_>, families: &mut Vec<Family>) {
    let http = match run.details {
        Details::Http(http) => Some(http),
        _ => None,
    };
    let responded = http.is_some_and(|http| http.status_code.is_some());
    let value = |pick: fn(&crate::result::HttpDetails) -> f64| http.map_or(0.0, pick);
    http_phases(run, families, http, responded);
    families.extend([
        Family::gauge(
            "probe_http_content_length",
            "Length of http content response",
            match http {
                Some(http) if responded => http.declared_length.map_or(-1.0, |n| n as f64),
                _ => 0.0,
            },
        ),
        Family::gauge(
            "probe_http_uncompressed_body_length",
            "Length of uncompressed response body",
            match http {
                // The decoded size when the module decodes (`compression`), as blackbox_exporter
                // counts the bytes it read after decompression.
                Some(http) if responded => http
                    .uncompressed_length
                    .or(http.content_length)
                    .unwrap_or(0) as f64,
                _ => 0.0,
            },
        ),
        Family::gauge(
            "probe_http_redirects",
            "The number of redirects",
            // Go's client counts a redirect when it receives one (`len(via)` in blackbox_exporter's
            // CheckRedirect), so the one it refused to follow (not following, or the 11th) counts.
            value(|http| {
                let refused = matches!(http.status_code, Some(301 | 302 | 303 | 307 | 308));
                f64::from(http.redirects) + flag(refused)
            }),
        ),
        Family::gauge(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            if responded {
                value(|http| flag(http.tls_used))
            } else {
                0.0
            },
        ),
        Family::gauge(
            "probe_http_status_code",
            "Response HTTP status code",
            value(|http| f64::from(http.status_code.unwrap_or(0))),
        ),
        Family::gauge(
            "probe_http_version",
            "Returns the version of HTTP of the probe response",
            value(|http| http.http_version.unwrap_or(0.0)),
        ),
        Family::gauge(
            "probe_failed_due_to_regex",
            HELP_REGEX,
            value(|http| flag(http.failed_due_to_regex)),
        ),
    ]);
    if let Some(http) = http {
        if let Some(at) = http.last_modified {
            families.push(Family::gauge(
                "probe_http_last_modified_timestamp_seconds",
                "Returns the Last-Modified HTTP response header in unixtime",
                at as f64,
            ));
        }
        if responded
            && http.tls_used
            && let Some(info) = &http.tls_info
        {
            tls(families, info, true);
        }
    }
}

fn tcp(run: &ProbeRun<'_>, families: &mut Vec<Family>) {
    // An `expect` that never matched is the one failure blackbox_exporter flags as a regex's.
    let regex =
        matches!(run.status, Some(Status::Fail(failure)) if failure.reason == FailureReason::Body);
    families.push(Family::gauge(
        "probe_failed_due_to_regex",
        HELP_REGEX,
        flag(regex),
    ));
    if !run.target_ok {
        return;
    }
    resolution(run, families, remote_ip(run));
    // A handshake whose chain was refused left blackbox_exporter no TLS state to report.
    let refused = matches!(run.status, Some(Status::Fail(failure))
        if matches!(failure.reason, FailureReason::Tls | FailureReason::CertInvalid));
    if !refused && let Some(info) = run.details.tls_info() {
        tls(families, info, true);
    }
}

fn dns(run: &ProbeRun<'_>, families: &mut Vec<Family>) {
    let dns = match run.details {
        Details::Dns(dns) => Some(dns),
        _ => None,
    };
    let answered = dns.is_some_and(|dns| dns.rcode.is_some());
    let count = |pick: fn(&crate::result::DnsDetails) -> usize| match dns {
        Some(dns) if answered => pick(dns) as f64,
        _ => 0.0,
    };
    let phase =
        |name: &str, took: Duration| (vec![("phase", name.to_string())], took.as_secs_f64());
    let mut phases = Family::vec(
        "probe_dns_duration_seconds",
        "Duration of DNS request by phase",
    );
    phases.samples = match dns {
        Some(dns) => vec![
            phase("resolve", dns.resolve),
            phase("connect", dns.connect + dns.tls),
            phase("request", dns.request),
        ],
        None => vec![
            phase("resolve", Duration::ZERO),
            phase("connect", Duration::ZERO),
            phase("request", Duration::ZERO),
        ],
    };
    families.extend([
        phases,
        Family::gauge(
            "probe_dns_answer_rrs",
            "Returns number of entries in the answer resource record list",
            count(|dns| dns.answer_rrs),
        ),
        Family::gauge(
            "probe_dns_authority_rrs",
            "Returns number of entries in the authority resource record list",
            count(|dns| dns.authority_rrs),
        ),
        Family::gauge(
            "probe_dns_additional_rrs",
            "Returns number of entries in the additional resource record list",
            count(|dns| dns.additional_rrs),
        ),
        Family::gauge(
            "probe_dns_query_succeeded",
            "Displays whether or not the query was executed successfully",
            flag(answered),
        ),
    ]);
    if run.target_ok {
        let server = dns.and_then(|dns| dns_server_ip(&dns.server));
        let address = remote_ip(run).or(server);
        resolution(run, families, address);
    }
    if run.soa_query && answered {
        families.push(Family::gauge(
            "probe_dns_serial",
            "Returns the serial number of the zone",
            dns.and_then(|dns| dns.soa_serial).map_or(0.0, f64::from),
        ));
    }
}

/// The address of a DNS server as the details name it (`IP`, `IP:PORT`, `[IPv6]:PORT`).
fn dns_server_ip(server: &str) -> Option<std::net::IpAddr> {
    server
        .parse::<std::net::SocketAddr>()
        .map(|addr| addr.ip())
        .or_else(|_| server.parse())
        .ok()
}

fn icmp(run: &ProbeRun<'_>, families: &mut Vec<Family>) {
    let icmp = match run.details {
        Details::Icmp(icmp) => Some(icmp),
        _ => None,
    };
    let phase =
        |name: &str, took: Duration| (vec![("phase", name.to_string())], took.as_secs_f64());
    let mut phases = Family::vec(
        "probe_icmp_duration_seconds",
        "Duration of icmp request by phase",
    );
    phases.samples = vec![
        phase("resolve", icmp.map_or(Duration::ZERO, |icmp| icmp.resolve)),
        phase("setup", icmp.map_or(Duration::ZERO, |icmp| icmp.setup)),
        phase(
            "rtt",
            match icmp {
                Some(icmp) if icmp.received > 0 => icmp.rtt,
                _ => Duration::ZERO,
            },
        ),
    ];
    families.push(phases);
    if run.target_ok {
        resolution(run, families, remote_ip(run));
    }
    if run.success
        && let Some(hop_limit) = icmp.and_then(|icmp| icmp.reply_hop_limit)
    {
        families.push(Family::gauge(
            "probe_icmp_reply_hop_limit",
            "Replied packet hop limit (TTL for ipv4)",
            f64::from(hop_limit),
        ));
    }
}

fn grpc(run: &ProbeRun<'_>, families: &mut Vec<Family>) {
    let grpc = match run.details {
        Details::Grpc(grpc) => Some(grpc),
        _ => None,
    };
    let address = remote_ip(run);
    let checked = run.target_ok && address.is_some();
    let mut phases = Family::vec(
        "probe_grpc_duration_seconds",
        "Duration of gRPC request by phase",
    );
    let resolve = grpc.map_or(Duration::ZERO, |grpc| grpc.resolve);
    phases.samples.push((
        vec![("phase", "resolve".to_string())],
        resolve.as_secs_f64(),
    ));
    if checked && let Some(grpc) = grpc {
        let check = grpc.connect + grpc.tls + grpc.check;
        phases
            .samples
            .push((vec![("phase", "check".to_string())], check.as_secs_f64()));
    }
    let mut serving = Family::vec(
        "probe_grpc_healthcheck_response",
        "Response HealthCheck response",
    );
    if checked {
        for (value, name) in SERVING_STATUS_NAMES.iter().enumerate() {
            let answered =
                grpc.is_some_and(|grpc| grpc.serving_status == i32::try_from(value).ok());
            serving.samples.push((
                vec![("serving_status", (*name).to_string())],
                flag(answered),
            ));
        }
    }
    let tls_info = grpc.and_then(|grpc| grpc.tls_info.as_ref());
    // A connection that never came up is gRPC's UNAVAILABLE (14), as blackbox_exporter's
    // client reports it.
    let status = match grpc.and_then(|grpc| grpc.status_code) {
        Some(code) => f64::from(code),
        None if checked => 14.0,
        None => 0.0,
    };
    families.extend([
        phases,
        serving,
        Family::gauge(
            "probe_grpc_ssl",
            "Indicates if SSL was used for the connection",
            flag(tls_info.is_some()),
        ),
        Family::gauge(
            "probe_grpc_status_code",
            "Response gRPC status code",
            status,
        ),
    ]);
    if run.target_ok {
        resolution(run, families, address);
    }
    match tls_info {
        Some(info) => tls(families, info, false),
        // Registered as a plain gauge from the start: 0 without a handshake.
        None => families.push(Family::gauge(
            "probe_ssl_earliest_cert_expiry",
            HELP_EARLIEST,
            0.0,
        )),
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (the text exposition of
/// Prometheus's client library): the shortest digits, in exponent form (`1.748e+09`) when the
/// exponent is below -4 or 6 and above.
pub(crate) fn go_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let shortest = format!("{value:e}");
    let (mantissa, exponent) = shortest
        .split_once('e')
        .map(|(m, e)| (m.to_string(), e.parse::<i32>().unwrap_or(0)))
        .unwrap_or((shortest.clone(), 0));
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    format!("{value}")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `nightjar_probe_requests_total{module, result}`: `/probe` requests the agent answered, by
/// module and result. Module names come from the configuration (a request for an unknown
/// module counts under `module=""`), so the series are bounded by it.
#[derive(Debug, Clone)]
pub struct ProbeRequests {
    counter: IntCounterVec,
}

/// How a `/probe` request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// The probe ran and succeeded.
    Success,
    /// The probe ran and failed.
    Failure,
    /// A bad request: unknown module, no target, a bad timeout header.
    Invalid,
    /// Refused: too many `/probe` runs at once.
    Throttled,
}

impl ProbeResult {
    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
            ProbeResult::Invalid => "invalid",
            ProbeResult::Throttled => "throttled",
        }
    }
}

impl ProbeRequests {
    pub(super) fn register(registry: &Registry) -> ProbeRequests {
        let counter = IntCounterVec::new(
            Opts::new(
                "nightjar_probe_requests_total",
                "Requests to /probe by module and result (success, failure, invalid, throttled); an unknown module counts as module=\"\".",
            ),
            &["module", "result"],
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(counter.clone()))
            .expect("metric names are unique");
        ProbeRequests { counter }
    }

    /// Counts one request.
    pub fn count(&self, module: &str, result: ProbeResult) {
        self.counter
            .with_label_values(&[module, result.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        assert_eq!(go_float(200.0), "200");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(-1.0), "-1");
        assert_eq!(go_float(1.1), "1.1");
        assert_eq!(go_float(1_748_000_000.0), "1.748e+09");
        assert_eq!(go_float(123_456.0), "123456");
        assert_eq!(go_float(1_234_567.0), "1.234567e+06");
        assert_eq!(go_float(0.000_012_5), "1.25e-05");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(GO_ZERO_TIME), "-6.21355968e+10");
    }

    #[test]
    fn ip_hash_is_fnv1a_of_the_address_bytes() {
        // FNV-1a 32 of 127.0.0.1's four bytes.
        let hash = ip_hash("127.0.0.1".parse().unwrap());
        assert_eq!(hash, f64::from(0xdaaf_40ed_u32));
    }
}
