//! The per-check series: a compact store with its own text writer.
//!
//! With thousands of checks, per-check series are nearly all of an agent's series (about 60
//! per HTTP check). Kept in the prometheus crate's vectors they cost ~800 bytes each and a
//! scrape allocated the whole exposition twice, so they live here instead: one cell per check
//! with its label set rendered once, counters and histogram buckets as plain numbers, and the
//! last run's gauges as one sorted list that each run replaces (so series a run no longer
//! sees, like a renewed certificate, disappear with no bookkeeping). `write_text` renders
//! family by family, one check at a time, into chunks, so a scrape never holds the whole
//! exposition. Agent-wide metrics stay in the prometheus registry.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use super::names::{self, CheckState, RunResult, label};
use crate::result::FailureReason;

/// Families of per-check gauges that describe the last run, in exposition order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Fam {
    ProbeSuccess,
    ProbeDuration,
    ProbeDnsLookup,
    ProbeIpProtocol,
    HttpStatusCode,
    HttpDuration,
    HttpContentLength,
    HttpVersion,
    HttpRedirects,
    HttpSsl,
    FailedDueToRegex,
    SslEarliest,
    SslLastChainExpiry,
    SslLastChainInfo,
    TlsVersionInfo,
    CertNotBefore,
    CertNotAfter,
    ChainValid,
    HostnameMatch,
    TlsDuration,
    TcpDuration,
    Expiry,
    DomainExpiry,
    DnsDuration,
    DnsAnswerRrs,
    DnsAuthorityRrs,
    DnsAdditionalRrs,
    DnsSerial,
    DnsRcode,
    DnsAuthoritative,
    DnsMinTtl,
    DnsMaxTtl,
    DnsRrsigExpiry,
    DnsSoaSerial,
    FlowStepDuration,
    FlowStepSuccess,
    WebsocketDuration,
    WebsocketStatusCode,
    WebsocketMessagesSent,
    WebsocketMessagesReceived,
    GrpcDuration,
    GrpcStatusCode,
    GrpcHealthcheckResponse,
    GrpcSsl,
    IcmpDuration,
    IcmpReplyHopLimit,
    IcmpSent,
    IcmpReceived,
    IcmpRttMin,
    IcmpRttAvg,
    IcmpRttMax,
    IcmpRttStddev,
    UdpDuration,
    UdpSent,
    UdpReceived,
    HttpUncompressedLength,
}

impl Fam {
    fn bit(self) -> u64 {
        1 << self as u32
    }
}

// `Fam::bit` is a `u64` mask of the families a check has: widen it before a 65th family.
const _: () = assert!(
    GAUGES.len() <= 64,
    "Fam::bit is a u64 mask; widen it to add a family"
);

/// Name and help of every gauge family, indexed by [`Fam`].
const GAUGES: &[(Fam, &str, &str)] = &[
    (
        Fam::ProbeSuccess,
        names::PROBE_SUCCESS,
        "Whether the last run of the check succeeded (1) or failed (0).",
    ),
    (
        Fam::ProbeDuration,
        "probe_duration_seconds",
        "How long the last run of the check took.",
    ),
    (
        Fam::ProbeDnsLookup,
        "probe_dns_lookup_time_seconds",
        "Time spent resolving the target's name in the last run.",
    ),
    (
        Fam::ProbeIpProtocol,
        "probe_ip_protocol",
        "IP protocol version (4 or 6) used in the last run; 0 if no connection was made.",
    ),
    (
        Fam::HttpStatusCode,
        "probe_http_status_code",
        "Status code of the last response; 0 if none arrived.",
    ),
    (
        Fam::HttpDuration,
        "probe_http_duration_seconds",
        "Duration of each HTTP phase of the last run, summed over redirects.",
    ),
    (
        Fam::HttpContentLength,
        "probe_http_content_length",
        "Body bytes received in the last response.",
    ),
    (
        Fam::HttpVersion,
        "probe_http_version",
        "HTTP version of the last response.",
    ),
    (
        Fam::HttpRedirects,
        "probe_http_redirects",
        "Redirects followed in the last run.",
    ),
    (
        Fam::HttpSsl,
        "probe_http_ssl",
        "Whether TLS was used for the final request.",
    ),
    (
        Fam::FailedDueToRegex,
        "probe_failed_due_to_regex",
        "Whether the last run failed a body regex expectation.",
    ),
    (
        Fam::SslEarliest,
        "probe_ssl_earliest_cert_expiry",
        "Earliest notAfter (Unix time) among the certificates the server presented.",
    ),
    (
        Fam::SslLastChainExpiry,
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "Expiry (Unix time) of the presented chain: the earliest notAfter in it.",
    ),
    (
        Fam::SslLastChainInfo,
        "probe_ssl_last_chain_info",
        "The leaf certificate of the presented chain; always 1.",
    ),
    (
        Fam::TlsVersionInfo,
        "probe_tls_version_info",
        "The negotiated TLS version; always 1.",
    ),
    (
        Fam::CertNotBefore,
        "nightjar_tls_cert_not_before_timestamp_seconds",
        "notBefore (Unix time) of each certificate in the presented chain; position 0 is the leaf.",
    ),
    (
        Fam::CertNotAfter,
        "nightjar_tls_cert_not_after_timestamp_seconds",
        "notAfter (Unix time) of each certificate in the presented chain; position 0 is the leaf.",
    ),
    (
        Fam::ChainValid,
        "nightjar_tls_chain_valid",
        "Whether the presented chain validates to the configured roots.",
    ),
    (
        Fam::HostnameMatch,
        "nightjar_tls_hostname_match",
        "Whether the leaf certificate is valid for the server name.",
    ),
    (
        Fam::TlsDuration,
        "nightjar_tls_duration_seconds",
        "Duration of each phase of the last run of a tls check.",
    ),
    (
        Fam::TcpDuration,
        "nightjar_tcp_duration_seconds",
        "Duration of each phase of the last run of a tcp check.",
    ),
    (
        Fam::Expiry,
        names::EXPIRY_TIMESTAMP,
        "When the first thing the check watches expires (Unix time), by what expires: certificate, dnssec_signature, domain.",
    ),
    (
        Fam::DomainExpiry,
        "nightjar_domain_expiry_timestamp_seconds",
        "When the domain's registration expires (Unix time), from RDAP.",
    ),
    (
        Fam::DnsDuration,
        "probe_dns_duration_seconds",
        "Duration of each phase of the last DNS query: resolve (the server's name), connect (including TLS), request.",
    ),
    (
        Fam::DnsAnswerRrs,
        "probe_dns_answer_rrs",
        "Records in the answer section.",
    ),
    (
        Fam::DnsAuthorityRrs,
        "probe_dns_authority_rrs",
        "Records in the authority section.",
    ),
    (
        Fam::DnsAdditionalRrs,
        "probe_dns_additional_rrs",
        "Records in the additional section.",
    ),
    (
        Fam::DnsSerial,
        "probe_dns_serial",
        "The SOA serial in the answer, if any.",
    ),
    (
        Fam::DnsRcode,
        "nightjar_dns_rcode_info",
        "The response code of the last answer; always 1.",
    ),
    (
        Fam::DnsAuthoritative,
        "nightjar_dns_authoritative",
        "Whether the last answer had the AA flag.",
    ),
    (
        Fam::DnsMinTtl,
        "nightjar_dns_answer_min_ttl_seconds",
        "The smallest TTL among the answers of the queried type.",
    ),
    (
        Fam::DnsMaxTtl,
        "nightjar_dns_answer_max_ttl_seconds",
        "The largest TTL among the answers of the queried type.",
    ),
    (
        Fam::DnsRrsigExpiry,
        "nightjar_dns_rrsig_expiry_timestamp_seconds",
        "The earliest RRSIG expiration (Unix time) among the answers.",
    ),
    (
        Fam::DnsSoaSerial,
        "nightjar_dns_soa_serial",
        "Consistency mode: the SOA serial each authoritative server gave.",
    ),
    (
        Fam::FlowStepDuration,
        "nightjar_flow_step_duration_seconds",
        "Duration of each step of the last run of a flow check; 0 for steps not reached.",
    ),
    (
        Fam::FlowStepSuccess,
        "nightjar_flow_step_success",
        "Whether each step of the last run of a flow check passed; 0 for steps not reached.",
    ),
    (
        Fam::WebsocketDuration,
        "nightjar_websocket_duration_seconds",
        "Duration of each phase of the last run of a websocket check: resolve, connect, tls, upgrade, exchange, close.",
    ),
    (
        Fam::WebsocketStatusCode,
        "nightjar_websocket_status_code",
        "HTTP status of the answer to the WebSocket upgrade request (101 when accepted); 0 if none arrived.",
    ),
    (
        Fam::WebsocketMessagesSent,
        "nightjar_websocket_messages_sent",
        "Messages sent in the last run of a websocket check.",
    ),
    (
        Fam::WebsocketMessagesReceived,
        "nightjar_websocket_messages_received",
        "Messages received in the last run of a websocket check (pings and pongs not counted).",
    ),
    (
        Fam::GrpcDuration,
        "probe_grpc_duration_seconds",
        "Duration of each phase of the last gRPC health check: resolve, connect, tls, check (the call).",
    ),
    (
        Fam::GrpcStatusCode,
        "probe_grpc_status_code",
        "The gRPC status code the last health call ended with (0 is OK); -1 if no gRPC status came.",
    ),
    (
        Fam::GrpcHealthcheckResponse,
        "probe_grpc_healthcheck_response",
        "The serving status of the last health answer: 1 for the status given, 0 for the others.",
    ),
    (
        Fam::GrpcSsl,
        "probe_grpc_ssl",
        "Whether the last gRPC health check used TLS.",
    ),
    (
        Fam::IcmpDuration,
        "probe_icmp_duration_seconds",
        "Duration of each phase of the last run of an icmp check: resolve, setup (the socket), rtt (the average round trip).",
    ),
    (
        Fam::IcmpReplyHopLimit,
        "probe_icmp_reply_hop_limit",
        "The TTL (IPv4) or hop limit (IPv6) of the last echo reply.",
    ),
    (
        Fam::IcmpSent,
        "nightjar_icmp_packets_sent",
        "Echo requests sent in the last run of an icmp check.",
    ),
    (
        Fam::IcmpReceived,
        "nightjar_icmp_packets_received",
        "Echo replies received in the last run of an icmp check.",
    ),
    (
        Fam::IcmpRttMin,
        "nightjar_icmp_rtt_min_seconds",
        "The shortest round trip of the last run of an icmp check.",
    ),
    (
        Fam::IcmpRttAvg,
        "nightjar_icmp_rtt_avg_seconds",
        "The average round trip of the last run of an icmp check.",
    ),
    (
        Fam::IcmpRttMax,
        "nightjar_icmp_rtt_max_seconds",
        "The longest round trip of the last run of an icmp check.",
    ),
    (
        Fam::IcmpRttStddev,
        "nightjar_icmp_rtt_stddev_seconds",
        "The standard deviation of the round trips of the last run of an icmp check.",
    ),
    (
        Fam::UdpDuration,
        "nightjar_udp_duration_seconds",
        "Duration of each phase of the last run of a udp check: resolve, exchange (from the first datagram to the answer).",
    ),
    (
        Fam::UdpSent,
        "nightjar_udp_datagrams_sent",
        "Datagrams sent in the last run of a udp check.",
    ),
    (
        Fam::UdpReceived,
        "nightjar_udp_received_bytes",
        "Bytes received in the last run of a udp check, in every datagram read.",
    ),
    (
        Fam::HttpUncompressedLength,
        "probe_http_uncompressed_body_length",
        "Decoded body bytes of the last response of an http check that sets compression.",
    ),
];

const INFO: (&str, &str) = (
    "nightjar_check_info",
    "Information about each loaded check; always 1.",
);
const RUNS: (&str, &str) = (
    names::CHECK_RUNS,
    "Check runs by result; the availability SLI.",
);
const FAILURES: (&str, &str) = (
    "nightjar_check_failures_total",
    "Failed check runs by reason.",
);
const DURATION: (&str, &str) = (
    names::CHECK_DURATION,
    "Duration of check runs by result; the latency SLI.",
);
const SKIPPED: (&str, &str) = (
    "nightjar_check_skipped_runs_total",
    "Runs not started because the previous run of the same check was still in flight.",
);
const RETRIES: (&str, &str) = (
    names::CHECK_RETRY_RUNS,
    "Extra runs retry_interval after a result that left a change of state unconfirmed, by result; not in nightjar_check_runs_total.",
);
const MAINTENANCE_RUNS: (&str, &str) = (
    names::CHECK_MAINTENANCE_RUNS,
    "Scheduled runs taken while a maintenance window covered the check, by result (also in nightjar_check_runs_total).",
);
const MAINTENANCE_DURATION: (&str, &str) = (
    names::CHECK_MAINTENANCE_DURATION,
    "Duration of the scheduled runs taken while a maintenance window covered the check, by result.",
);
const STATE: (&str, &str) = (
    names::CHECK_STATE,
    "The check's state: 1 for the current one (failures and recoveries confirmed as configured; maintenance while a window covers it).",
);
const CONSECUTIVE_FAILURES: (&str, &str) = (
    names::CONSECUTIVE_FAILURES,
    "Failed runs in a row, retries included.",
);
const IN_MAINTENANCE: (&str, &str) = (
    names::CHECK_MAINTENANCE,
    "1 while a maintenance window covers the check.",
);

/// How one run is counted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub result: RunResult,
    pub seconds: f64,
    pub reason: Option<FailureReason>,
    /// A retry: counted in the retry counter only.
    pub retry: bool,
    /// Taken in a maintenance window: counted in the maintenance counters too.
    pub maintenance: bool,
}

/// Every kind's phase names (`phase="..."`), so a phase gauge names its phase by index.
const PHASES: [&str; 13] = [
    "resolve",
    "connect",
    "tls",
    "processing",
    "transfer",
    "request",
    "starttls",
    "check",
    "exchange",
    "setup",
    "rtt",
    "upgrade",
    "close",
];

/// Labels beyond the check's own, as a gauge of the last run carries them.
pub(super) type Labels = Vec<(&'static str, Cow<'static, str>)>;

/// One gauge of the last run: 24 bytes, as 50,000 checks keep 15 or so each. Most are a
/// family alone or a phase of a run; only the rest (a certificate's, a flow step's) allocate
/// their labels.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub value: f64,
    key: Key,
}

/// A gauge's family and labels.
#[derive(Debug, Clone)]
enum Key {
    Plain(Fam),
    /// `phase=PHASES[n]`.
    Phase(Fam, u8),
    Labels(Fam, Box<Labels>),
}

impl Sample {
    pub fn new(fam: Fam, value: f64) -> Sample {
        Sample {
            value,
            key: Key::Plain(fam),
        }
    }

    /// A gauge with one label.
    pub fn with(
        fam: Fam,
        label: &'static str,
        value_of_label: impl Into<Cow<'static, str>>,
        value: f64,
    ) -> Sample {
        Sample::labels(fam, vec![(label, value_of_label.into())], value)
    }

    /// A gauge with `labels`.
    pub fn labels(fam: Fam, labels: Labels, value: f64) -> Sample {
        Sample {
            value,
            key: Key::Labels(fam, Box::new(labels)),
        }
    }

    /// A run's phase `phase` took `value` seconds.
    pub fn phase(fam: Fam, phase: &'static str, value: f64) -> Sample {
        match PHASES.iter().position(|name| *name == phase) {
            Some(idx) => Sample {
                value,
                key: Key::Phase(fam, idx as u8),
            },
            None => Sample::with(fam, "phase", phase, value),
        }
    }

    pub fn fam(&self) -> Fam {
        match self.key {
            Key::Plain(fam) | Key::Phase(fam, _) | Key::Labels(fam, _) => fam,
        }
    }

    /// Its label pairs beyond the check's own, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let (phase, labels) = match &self.key {
            Key::Plain(_) => (None, &[][..]),
            Key::Phase(_, idx) => (Some(("phase", PHASES[usize::from(*idx)])), &[][..]),
            Key::Labels(_, labels) => (None, &labels[..]),
        };
        phase
            .into_iter()
            .chain(labels.iter().map(|(k, v)| (*k, v.as_ref())))
    }
}

/// What identifies a check's series: when it changes on reload, the series start over.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Identity {
    /// Label pairs: check, type, then the check's own labels (the agent's are the store's).
    pub labels: Vec<(Cow<'static, str>, String)>,
    /// `nightjar_check_info`'s target and schedule (empty in lean, which does not export it).
    pub info: [String; 2],
    /// The reasons its failure counters exist for.
    pub reasons: &'static [FailureReason],
    /// Flow step names, in order: each has its gauges whether or not a run reached it.
    pub steps: Vec<String>,
}

struct Cell {
    /// The identity's labels, then the agent's, rendered: `check="x",type="http",...` (no
    /// braces). The one copy of them (50,000 checks hold them): [`label_pairs`] reads them
    /// back for remote write.
    prefix: String,
    /// The rest of the identity; its `labels` are in `prefix` and left empty here.
    identity: Identity,
    /// Bit `Fam as u32` is set when the last run's gauges include that family, so a scrape
    /// passes over the families a check does not have without touching its state.
    fams: AtomicU64,
    state: Mutex<State>,
}

struct State {
    /// Runs by result (indexed by `RunResult as usize`).
    runs: [u64; 2],
    /// Retries by result.
    retries: [u64; 2],
    /// Runs and durations in maintenance windows, created (at 0) when a window first covers
    /// the check: a check never in one has no such series.
    maintenance: Option<Box<Counted>>,
    /// The decided state (never `Maintenance`; that is `in_maintenance`).
    decided: CheckState,
    consecutive_failures: u32,
    in_maintenance: bool,
    /// By reason, as `identity.reasons`; in lean, empty until the first failure.
    failures: Vec<u64>,
    skipped: u64,
    /// By result, as `runs`: observations per bucket (not cumulative; the last is +Inf), sum.
    /// In lean, the failures' buckets are empty (only the sum is kept): not exported.
    histograms: [(Vec<u64>, f64); 2],
    /// The last run's gauges, sorted by family (exactly as many as it has).
    gauges: Box<[Sample]>,
}

/// Runs by result and their histograms, as [`State`] keeps them.
struct Counted {
    runs: [u64; 2],
    histograms: [(Vec<u64>, f64); 2],
}

impl Counted {
    fn new(buckets: usize) -> Counted {
        let empty = || (vec![0; buckets + 1], 0.0);
        Counted {
            runs: [0; 2],
            histograms: [empty(), empty()],
        }
    }

    fn count(&mut self, result: usize, bucket: usize, seconds: f64) {
        self.runs[result] += 1;
        let (counts, sum) = &mut self.histograms[result];
        counts[bucket] += 1;
        *sum += seconds;
    }
}

impl State {
    /// The state as shown.
    fn shown(&self) -> CheckState {
        if self.in_maintenance {
            CheckState::Maintenance
        } else {
            self.decided
        }
    }
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every loaded check's series.
pub(super) struct Store {
    /// By name, hashed: a run's lookup among 50,000 names with long shared prefixes (a
    /// template's targets) costs one hash, not a tree walk of string comparisons.
    cells: RwLock<HashMap<Arc<str>, Arc<Cell>>>,
    buckets: Vec<f64>,
    /// Label pairs every check's series carry: `region` and the `[agent]` labels.
    agent: Vec<(String, String)>,
    /// Lean metrics (`[agent] metrics = "lean"`): see [`Lean`].
    lean: bool,
}

impl Store {
    pub fn new(buckets: Vec<f64>, agent: Vec<(String, String)>, lean: bool) -> Store {
        Store {
            cells: RwLock::new(HashMap::new()),
            buckets,
            agent,
            lean,
        }
    }

    /// Whether the store exports the lean set.
    pub fn lean(&self) -> bool {
        self.lean
    }

    fn cells(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Cell>>> {
        self.cells
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cell(&self, check: &str) -> Option<Arc<Cell>> {
        self.cells().get(check).cloned()
    }

    /// Adds a check with its counters at 0. A check already there (its definition changed)
    /// is replaced: its series start over, but its state (decided, failures in a row, in a
    /// maintenance window) is the check's, not the definition's, and carries over.
    pub fn insert(&self, name: Arc<str>, identity: Identity) {
        let carried = self.cell(&name).map(|cell| {
            let state = cell.lock();
            (
                state.decided,
                state.consecutive_failures,
                state.in_maintenance,
            )
        });
        let (decided, consecutive_failures, in_maintenance) =
            carried.unwrap_or((CheckState::Unknown, 0, false));
        let prefix = self.prefix_of(&identity.labels);
        let identity = Identity {
            labels: Vec::new(),
            ..identity
        };
        let empty = |exported: bool| {
            let buckets = if exported { self.buckets.len() + 1 } else { 0 };
            (vec![0; buckets], 0.0)
        };
        let lean = Lean(self.lean);
        let state = State {
            runs: [0; 2],
            retries: [0; 2],
            maintenance: in_maintenance.then(|| Box::new(Counted::new(self.buckets.len()))),
            decided,
            consecutive_failures,
            in_maintenance,
            failures: if lean.0 {
                Vec::new()
            } else {
                vec![0; identity.reasons.len()]
            },
            skipped: 0,
            histograms: RunResult::ALL.map(|result| empty(lean.histogram(result))),
            gauges: Box::default(),
        };
        let cell = Arc::new(Cell {
            identity,
            prefix,
            fams: AtomicU64::new(0),
            state: Mutex::new(state),
        });
        self.cells
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, cell);
    }

    /// Every check's cell, in name order (the exposition's order).
    fn sorted_cells(&self) -> Vec<Arc<Cell>> {
        let mut named: Vec<(Arc<str>, Arc<Cell>)> = self
            .cells()
            .iter()
            .map(|(name, cell)| (name.clone(), cell.clone()))
            .collect();
        named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        named.into_iter().map(|(_, cell)| cell).collect()
    }

    /// How many checks the store holds.
    pub fn len(&self) -> usize {
        self.cells().len()
    }

    /// `labels`, then the agent's, rendered as a cell's `prefix`.
    fn prefix_of(&self, labels: &[(Cow<'static, str>, String)]) -> String {
        let mut prefix = String::new();
        let pairs = labels.iter().map(|(label, value)| (label.as_ref(), value));
        let agent = self
            .agent
            .iter()
            .map(|(label, value)| (label.as_str(), value));
        for (idx, (label, value)) in pairs.chain(agent).enumerate() {
            if idx > 0 {
                prefix.push(',');
            }
            push_pair(&mut prefix, label, value);
        }
        prefix
    }

    /// Whether `name` is held with exactly `identity` (its series then stay as they are).
    pub fn holds(&self, name: &str, identity: &Identity) -> bool {
        self.cells().get(name).is_some_and(|cell| {
            let held = &cell.identity;
            held.info == identity.info
                && held.reasons == identity.reasons
                && held.steps == identity.steps
                && cell.prefix == self.prefix_of(&identity.labels)
        })
    }

    /// Drops every check whose name `keep` refuses, under one lock.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.cells
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|name, _| keep(name));
    }

    /// Records a run of a loaded check: its result, duration, reason, and the gauges that now
    /// describe it, which `gauges` builds from the check's identity (its flow steps). A retry
    /// counts in the retry counter only; a scheduled run in the runs counter, the failures by
    /// reason and the histogram (and in the maintenance ones, when taken in a window).
    pub fn observe(&self, check: &str, run: Run, gauges: impl FnOnce(&Identity) -> Vec<Sample>) {
        let Some(cell) = self.cell(check) else {
            return;
        };
        let mut gauges = gauges(&cell.identity);
        gauges.sort_by_key(Sample::fam);
        let result = run.result as usize;
        let bucket = self
            .buckets
            .iter()
            .position(|bound| run.seconds <= *bound)
            .unwrap_or(self.buckets.len());
        let reason = self.reason_index(&cell, check, run.reason);
        let mut state = cell.lock();
        if run.retry {
            state.retries[result] += 1;
        } else {
            state.runs[result] += 1;
            let (counts, sum) = &mut state.histograms[result];
            if let Some(count) = counts.get_mut(bucket) {
                *count += 1;
            }
            *sum += run.seconds;
            if let Some(idx) = reason {
                if state.failures.is_empty() {
                    state.failures = vec![0; cell.identity.reasons.len()];
                }
                state.failures[idx] += 1;
            }
            if run.maintenance {
                let buckets = self.buckets.len();
                state
                    .maintenance
                    .get_or_insert_with(|| Box::new(Counted::new(buckets)))
                    .count(result, bucket, run.seconds);
            }
        }
        let fams = gauges
            .iter()
            .fold(0, |mask, sample| mask | sample.fam().bit());
        state.gauges = gauges.into_boxed_slice();
        cell.fams.store(fams, Ordering::Relaxed);
    }

    /// Where `reason` is in the check's list of reasons.
    fn reason_index(
        &self,
        cell: &Cell,
        check: &str,
        reason: Option<FailureReason>,
    ) -> Option<usize> {
        let reason = reason?;
        let listed = cell.identity.reasons.iter().position(|r| *r == reason);
        if listed.is_none() {
            // A bug (a reason missing from its kind's list, which a test guards against), so
            // it is said rather than silently not counted.
            tracing::error!(
                message = "A failure reason is not in its check kind's list; it is not counted.",
                check,
                reason = reason.as_str()
            );
        }
        listed
    }

    /// Sets a check's decided state and its failures in a row.
    pub fn set_state(&self, check: &str, decided: CheckState, consecutive_failures: u32) {
        if let Some(cell) = self.cell(check) {
            let mut state = cell.lock();
            state.decided = decided;
            state.consecutive_failures = consecutive_failures;
        }
    }

    /// Sets whether a maintenance window covers a check; the first time one does, its
    /// maintenance counters start at 0.
    pub fn set_maintenance(&self, check: &str, covered: bool) {
        if let Some(cell) = self.cell(check) {
            let mut state = cell.lock();
            state.in_maintenance = covered;
            if covered && state.maintenance.is_none() {
                state.maintenance = Some(Box::new(Counted::new(self.buckets.len())));
            }
        }
    }

    pub fn skipped(&self, check: &str) {
        if let Some(cell) = self.cell(check) {
            cell.lock().skipped += 1;
        }
    }

    /// Writes every per-check family in the text format, handing over a chunk whenever it
    /// holds `chunk` bytes or more. `emit` returns false to stop (the client went away).
    ///
    /// A line is `head` (`name{`), the check's rendered labels, a `tail` (`,label="v"} `) and
    /// the value; every head and tail that does not depend on the run is rendered once per
    /// scrape (by each family's writer, before its loop over checks), so the loop over checks
    /// only copies bytes and formats numbers.
    pub fn write_text(&self, chunk: usize, emit: &mut dyn FnMut(String) -> bool) {
        let cells = self.sorted_cells();
        let mut out = Writer {
            buf: String::with_capacity(chunk + 4096),
            chunk,
            emit,
            stopped: false,
            lean: self.lean,
        };
        out.info(&cells);
        out.runs(&cells);
        out.failures(&cells);
        out.durations(&cells, &self.buckets);
        out.skipped(&cells);
        out.detection(&cells, &self.buckets);
        out.gauges(&cells);
        out.flush();
    }

    /// Every per-check family as protobuf structures (for remote write).
    pub fn families(&self) -> Vec<MetricFamily> {
        let cells = self.sorted_cells();
        let mut gathered = Gathered::default();
        gathered.gauges.resize(GAUGES.len(), Vec::new());
        for cell in &cells {
            let state = cell.lock();
            self.gather_cell(&mut gathered, cell, &state);
        }
        gathered.into_families()
    }

    /// Adds `cell`'s series, of its state `state`, to `gathered`.
    fn gather_cell(&self, gathered: &mut Gathered, cell: &Cell, state: &State) {
        let lean = Lean(self.lean);
        if !lean.0 {
            let [target, schedule] = &cell.identity.info;
            gathered.info.push(self.gauge(
                cell,
                &[("target", target), ("schedule", schedule)],
                1.0,
            ));
        }
        for result in RunResult::ALL {
            let idx = result as usize;
            let by_result = [(label::RESULT, result.as_str())];
            gathered
                .runs
                .push(self.counter(cell, &by_result, state.runs[idx]));
            if lean.histogram(result) {
                let (counts, sum) = &state.histograms[idx];
                let mut metric = self.metric(cell, &by_result);
                metric.set_histogram(self.histogram(counts, *sum));
                gathered.durations.push(metric);
            }
        }
        for (reason, count) in cell.identity.reasons.iter().zip(&state.failures) {
            if lean.counter(*count) {
                gathered
                    .failures
                    .push(self.counter(cell, &[("reason", reason.as_str())], *count));
            }
        }
        if lean.counter(state.skipped) {
            gathered
                .skipped
                .push(self.counter(cell, &[], state.skipped));
        }
        self.gather_detection(gathered, cell, state);
        for sample in &state.gauges {
            let extra: Vec<(&str, &str)> = sample.pairs().collect();
            gathered.gauges[sample.fam() as usize].push(self.gauge(cell, &extra, sample.value));
        }
    }

    /// `cell`'s detection and maintenance series (as [`Writer::detection`] writes them).
    fn gather_detection(&self, gathered: &mut Gathered, cell: &Cell, state: &State) {
        let lean = Lean(self.lean);
        let retried = lean.counter(state.retries.iter().sum());
        for result in RunResult::ALL {
            let idx = result as usize;
            let by_result = [(label::RESULT, result.as_str())];
            if retried {
                gathered
                    .retries
                    .push(self.counter(cell, &by_result, state.retries[idx]));
            }
            if let Some(counted) = &state.maintenance {
                gathered
                    .maintenance_runs
                    .push(self.counter(cell, &by_result, counted.runs[idx]));
                if lean.histogram(result) {
                    let (counts, sum) = &counted.histograms[idx];
                    let mut metric = self.metric(cell, &by_result);
                    metric.set_histogram(self.histogram(counts, *sum));
                    gathered.maintenance_durations.push(metric);
                }
            }
        }
        let shown = state.shown();
        for value in CheckState::ALL {
            if lean.state(value, shown) {
                let by_state = [(label::STATE, value.as_str())];
                let on = f64::from(u8::from(value == shown));
                gathered.states.push(self.gauge(cell, &by_state, on));
            }
        }
        if !lean.0 {
            gathered.consecutive_failures.push(self.gauge(
                cell,
                &[],
                f64::from(state.consecutive_failures),
            ));
        }
        if lean.flag(state) {
            gathered.in_maintenance.push(self.gauge(
                cell,
                &[],
                f64::from(u8::from(state.in_maintenance)),
            ));
        }
    }

    /// A metric of `cell` with its labels, the agent's, then `extra`.
    fn metric(&self, cell: &Cell, extra: &[(&str, &str)]) -> Metric {
        let mut metric = Metric::default();
        let pair = |name: String, value: String| {
            let mut pair = LabelPair::default();
            pair.set_name(name);
            pair.set_value(value);
            pair
        };
        let pairs = label_pairs(&cell.prefix)
            .map(|(name, value)| pair(name.to_string(), value))
            .chain(
                extra
                    .iter()
                    .map(|(name, value)| pair(name.to_string(), value.to_string())),
            )
            .collect();
        metric.set_label(pairs);
        metric
    }

    fn counter(&self, cell: &Cell, extra: &[(&str, &str)], value: u64) -> Metric {
        let mut metric = self.metric(cell, extra);
        let mut counter = Counter::default();
        counter.set_value(value as f64);
        metric.set_counter(counter);
        metric
    }

    fn gauge(&self, cell: &Cell, extra: &[(&str, &str)], value: f64) -> Metric {
        let mut metric = self.metric(cell, extra);
        let mut gauge = Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
        metric
    }

    /// The histogram of one result's observations per bucket (`counts`, not cumulative, the
    /// last +Inf) and their `sum`.
    fn histogram(&self, counts: &[u64], sum: f64) -> Histogram {
        let mut histogram = Histogram::default();
        let mut cumulative = 0;
        let mut buckets = Vec::new();
        for (bound, count) in self.buckets.iter().zip(counts) {
            cumulative += count;
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(*bound);
            bucket.set_cumulative_count(cumulative);
            buckets.push(bucket);
        }
        histogram.set_bucket(buckets);
        histogram.set_sample_count(counts.iter().sum());
        histogram.set_sample_sum(sum);
        histogram
    }
}

/// The per-check families' metrics, gathered check by check.
#[derive(Default)]
struct Gathered {
    info: Vec<Metric>,
    runs: Vec<Metric>,
    failures: Vec<Metric>,
    durations: Vec<Metric>,
    skipped: Vec<Metric>,
    retries: Vec<Metric>,
    maintenance_runs: Vec<Metric>,
    maintenance_durations: Vec<Metric>,
    states: Vec<Metric>,
    consecutive_failures: Vec<Metric>,
    in_maintenance: Vec<Metric>,
    /// Indexed by `Fam as usize`.
    gauges: Vec<Vec<Metric>>,
}

impl Gathered {
    /// The families, in the text format's order; those no check has are left out.
    fn into_families(self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        let mut family = |(name, help): (&str, &str), kind: MetricType, metrics: Vec<Metric>| {
            if metrics.is_empty() {
                return;
            }
            let mut family = MetricFamily::default();
            family.set_name(name.to_string());
            family.set_help(help.to_string());
            family.set_field_type(kind);
            family.set_metric(metrics);
            families.push(family);
        };
        family(INFO, MetricType::GAUGE, self.info);
        family(RUNS, MetricType::COUNTER, self.runs);
        family(FAILURES, MetricType::COUNTER, self.failures);
        family(DURATION, MetricType::HISTOGRAM, self.durations);
        family(SKIPPED, MetricType::COUNTER, self.skipped);
        family(RETRIES, MetricType::COUNTER, self.retries);
        family(MAINTENANCE_RUNS, MetricType::COUNTER, self.maintenance_runs);
        family(
            MAINTENANCE_DURATION,
            MetricType::HISTOGRAM,
            self.maintenance_durations,
        );
        family(STATE, MetricType::GAUGE, self.states);
        family(
            CONSECUTIVE_FAILURES,
            MetricType::GAUGE,
            self.consecutive_failures,
        );
        family(IN_MAINTENANCE, MetricType::GAUGE, self.in_maintenance);
        for ((_, name, help), metrics) in GAUGES.iter().zip(self.gauges) {
            family((name, help), MetricType::GAUGE, metrics);
        }
        families
    }
}

/// What the lean set (`[agent] metrics = "lean"`) leaves out of the full one, which creates
/// every series at 0 when a check is loaded. Lean keeps the runs by result at 0 (the
/// availability SLI), the duration histogram of successful runs only (the latency SLI:
/// `_bucket{result="success"}` over the runs counter), and the current state's series only;
/// failure reasons, retries, skips and the maintenance flag appear when first counted;
/// `nightjar_check_info` and `nightjar_check_consecutive_failures` are not exported.
#[derive(Clone, Copy)]
struct Lean(bool);

impl Lean {
    /// Whether a counter at `count` is exported: always in full, once counted in lean.
    fn counter(self, count: u64) -> bool {
        !self.0 || count > 0
    }

    /// Whether the histogram of runs of `result` is exported.
    fn histogram(self, result: RunResult) -> bool {
        !self.0 || result == RunResult::Success
    }

    /// Whether the series of `value` is exported when the check's state is `shown`.
    fn state(self, value: CheckState, shown: CheckState) -> bool {
        !self.0 || value == shown
    }

    /// Whether `nightjar_check_maintenance` is exported: in lean, once a window has covered
    /// the check (with its maintenance counters).
    fn flag(self, state: &State) -> bool {
        !self.0 || state.maintenance.is_some()
    }
}

/// Chunked text output.
struct Writer<'a> {
    buf: String,
    chunk: usize,
    emit: &'a mut dyn FnMut(String) -> bool,
    stopped: bool,
    lean: bool,
}

impl Writer<'_> {
    /// Writes one family: its header (only if a check has a sample in it), then each check's
    /// samples from `write`.
    fn family(
        &mut self,
        (name, help): (&str, &str),
        kind: &str,
        cells: &[Arc<Cell>],
        only: Option<Fam>,
        mut write: impl FnMut(&mut String, &Cell, &State),
    ) {
        let mut header = false;
        for cell in cells {
            if self.stopped {
                return;
            }
            if only.is_some_and(|fam| cell.fams.load(Ordering::Relaxed) & fam.bit() == 0) {
                continue;
            }
            let mark = self.buf.len();
            {
                let state = cell.lock();
                write(&mut self.buf, cell, &state);
            }
            if !header && self.buf.len() > mark {
                let lines = self.buf.split_off(mark);
                let _ = writeln!(self.buf, "# HELP {name} {help}\n# TYPE {name} {kind}");
                self.buf.push_str(&lines);
                header = true;
            }
            if self.buf.len() >= self.chunk {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.stopped || self.buf.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut self.buf, String::with_capacity(self.chunk + 4096));
        self.stopped = !(self.emit)(full);
    }
}

/// The writer of each per-check family: each renders its heads and the tails that do not
/// depend on the run once, then writes every check's lines.
impl Writer<'_> {
    /// `nightjar_check_info`: the check's target and schedule.
    fn info(&mut self, cells: &[Arc<Cell>]) {
        if self.lean {
            return;
        }
        let info = head(INFO.0, "");
        let mut info_tail = String::new();
        self.family(INFO, "gauge", cells, None, |buf, cell, _| {
            let [target, schedule] = &cell.identity.info;
            let pairs = [("target", target.as_str()), ("schedule", schedule.as_str())];
            write_tail(&mut info_tail, pairs);
            line(buf, &info, &cell.prefix, &info_tail, Int(1));
        });
    }

    /// `nightjar_check_runs_total`, by result.
    fn runs(&mut self, cells: &[Arc<Cell>]) {
        let runs = head(RUNS.0, "");
        let run_tails = by_result(&[]);
        self.family(RUNS, "counter", cells, None, |buf, cell, state| {
            for (tail, count) in run_tails.iter().zip(state.runs) {
                line(buf, &runs, &cell.prefix, tail, Int(count));
            }
        });
    }

    /// `nightjar_check_failures_total`, by each reason of the check's kind.
    fn failures(&mut self, cells: &[Arc<Cell>]) {
        let failures = head(FAILURES.0, "");
        // Indexed by the reason's discriminant.
        let mut reason_tails: Vec<String> = Vec::new();
        for reason in crate::checks::CheckKind::ALL
            .iter()
            .flat_map(|kind| kind.reasons())
        {
            let idx = *reason as usize;
            if reason_tails.len() <= idx {
                reason_tails.resize(idx + 1, String::new());
            }
            reason_tails[idx] = tail(&[("reason", reason.as_str())]);
        }
        let lean = Lean(self.lean);
        self.family(FAILURES, "counter", cells, None, |buf, cell, state| {
            for (reason, count) in cell.identity.reasons.iter().zip(&state.failures) {
                if lean.counter(*count) {
                    let tail = &reason_tails[*reason as usize];
                    line(buf, &failures, &cell.prefix, tail, Int(*count));
                }
            }
        });
    }

    /// `nightjar_check_duration_seconds` by result: cumulative buckets (bounds `buckets`,
    /// then +Inf), sum and count.
    fn durations(&mut self, cells: &[Arc<Cell>], buckets: &[f64]) {
        let lines = HistogramLines::new(DURATION.0, buckets, Lean(self.lean));
        self.family(DURATION, "histogram", cells, None, |buf, cell, state| {
            lines.write(buf, &cell.prefix, &state.histograms);
        });
    }

    /// Detection and maintenance: retries by result, the maintenance runs and durations (of
    /// checks a window has covered), the state, failures in a row, and the maintenance flag.
    fn detection(&mut self, cells: &[Arc<Cell>], buckets: &[f64]) {
        let lean = Lean(self.lean);
        let retries = head(RETRIES.0, "");
        let result_tails = by_result(&[]);
        self.family(RETRIES, "counter", cells, None, |buf, cell, state| {
            if !lean.counter(state.retries.iter().sum()) {
                return;
            }
            for (tail, count) in result_tails.iter().zip(state.retries) {
                line(buf, &retries, &cell.prefix, tail, Int(count));
            }
        });
        let runs = head(MAINTENANCE_RUNS.0, "");
        self.family(
            MAINTENANCE_RUNS,
            "counter",
            cells,
            None,
            |buf, cell, state| {
                if let Some(counted) = &state.maintenance {
                    for (tail, count) in result_tails.iter().zip(counted.runs) {
                        line(buf, &runs, &cell.prefix, tail, Int(count));
                    }
                }
            },
        );
        let lines = HistogramLines::new(MAINTENANCE_DURATION.0, buckets, lean);
        self.family(
            MAINTENANCE_DURATION,
            "histogram",
            cells,
            None,
            |buf, cell, state| {
                if let Some(counted) = &state.maintenance {
                    lines.write(buf, &cell.prefix, &counted.histograms);
                }
            },
        );
        let states = head(STATE.0, "");
        let state_tails = CheckState::ALL.map(|shown| tail(&[(label::STATE, shown.as_str())]));
        self.family(STATE, "gauge", cells, None, |buf, cell, state| {
            let shown = state.shown();
            for (value, tail) in CheckState::ALL.iter().zip(&state_tails) {
                if !lean.state(*value, shown) {
                    continue;
                }
                line(
                    buf,
                    &states,
                    &cell.prefix,
                    tail,
                    Int(u64::from(*value == shown)),
                );
            }
        });
        let failures = head(CONSECUTIVE_FAILURES.0, "");
        let cells_in_full = if lean.0 { &[][..] } else { cells };
        self.family(
            CONSECUTIVE_FAILURES,
            "gauge",
            cells_in_full,
            None,
            |buf, cell, state| {
                let count = u64::from(state.consecutive_failures);
                line(buf, &failures, &cell.prefix, "} ", Int(count));
            },
        );
        let flag = head(IN_MAINTENANCE.0, "");
        self.family(IN_MAINTENANCE, "gauge", cells, None, |buf, cell, state| {
            if !lean.flag(state) {
                return;
            }
            let covered = u64::from(state.in_maintenance);
            line(buf, &flag, &cell.prefix, "} ", Int(covered));
        });
    }

    /// `nightjar_check_skipped_runs_total`.
    fn skipped(&mut self, cells: &[Arc<Cell>]) {
        let skipped = head(SKIPPED.0, "");
        let lean = Lean(self.lean);
        self.family(SKIPPED, "counter", cells, None, |buf, cell, state| {
            if lean.counter(state.skipped) {
                line(buf, &skipped, &cell.prefix, "} ", Int(state.skipped));
            }
        });
    }

    /// The last run's gauges, family by family; a check without a family is passed over.
    fn gauges(&mut self, cells: &[Arc<Cell>]) {
        let mut extra = String::new();
        for (fam, name, help) in GAUGES {
            let gauge = head(name, "");
            self.family(
                (name, help),
                "gauge",
                cells,
                Some(*fam),
                |buf, cell, state| {
                    let idx = *fam as usize;
                    let gauges = &state.gauges;
                    let start = gauges.partition_point(|sample| (sample.fam() as usize) < idx);
                    let end =
                        start + gauges[start..].partition_point(|sample| sample.fam() == *fam);
                    for sample in &gauges[start..end] {
                        write_tail(&mut extra, sample.pairs());
                        line(buf, &gauge, &cell.prefix, &extra, Float(sample.value));
                    }
                },
            );
        }
    }
}

/// The heads and tails of a histogram by result, rendered once per scrape.
struct HistogramLines {
    bucket: String,
    sum: String,
    count: String,
    /// Per bucket (then +Inf), the tails of both results.
    bucket_tails: Vec<[String; 2]>,
    result_tails: [String; 2],
    /// Lean: only the successful runs' histogram.
    lean: Lean,
}

impl HistogramLines {
    fn new(name: &str, buckets: &[f64], lean: Lean) -> HistogramLines {
        let les = buckets
            .iter()
            .map(|bound| bound.to_string())
            .chain(["+Inf".to_string()]);
        HistogramLines {
            bucket: head(name, "_bucket"),
            sum: head(name, "_sum"),
            count: head(name, "_count"),
            bucket_tails: les.map(|le| by_result(&[(label::LE, &le)])).collect(),
            result_tails: by_result(&[]),
            lean,
        }
    }

    /// Both results' cumulative buckets, sum and count.
    fn write(&self, buf: &mut String, prefix: &str, histograms: &[(Vec<u64>, f64); 2]) {
        for (idx, (counts, total)) in histograms.iter().enumerate() {
            if !self.lean.histogram(RunResult::ALL[idx]) {
                continue;
            }
            let mut cumulative = 0;
            for (tails, n) in self.bucket_tails.iter().zip(counts) {
                cumulative += n;
                line(buf, &self.bucket, prefix, &tails[idx], Int(cumulative));
            }
            line(
                buf,
                &self.sum,
                prefix,
                &self.result_tails[idx],
                Float(*total),
            );
            line(
                buf,
                &self.count,
                prefix,
                &self.result_tails[idx],
                Int(cumulative),
            );
        }
    }
}

/// A sample value in the text format.
trait Value {
    fn write(&self, buf: &mut String);
}

struct Int(u64);
struct Float(f64);

impl Value for Int {
    fn write(&self, buf: &mut String) {
        buf.push_str(itoa::Buffer::new().format(self.0));
    }
}

impl Value for Float {
    fn write(&self, buf: &mut String) {
        let value = self.0;
        if value.is_nan() {
            buf.push_str("NaN");
        } else if value.is_infinite() {
            buf.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else if value.fract() == 0.0 && value.abs() < 1e15 {
            // Whole numbers (status codes, timestamps, counts) as integers.
            if value < 0.0 {
                buf.push('-');
            }
            buf.push_str(itoa::Buffer::new().format(value.abs() as u64));
        } else {
            let _ = write!(buf, "{value}");
        }
    }
}

/// `head` (`name{`), the check's labels, `tail` (`,label="value"} `), the value.
fn line(buf: &mut String, head: &str, prefix: &str, tail: &str, value: impl Value) {
    buf.push_str(head);
    buf.push_str(prefix);
    buf.push_str(tail);
    value.write(buf);
    buf.push('\n');
}

/// `name` and `suffix` then `{`: what starts a line.
fn head(name: &str, suffix: &str) -> String {
    format!("{name}{suffix}{{")
}

/// The tails of both results, in [`RunResult::ALL`]'s order, each followed by `more`.
fn by_result(more: &[(&str, &str)]) -> [String; 2] {
    RunResult::ALL.map(|result| tail(&[&[(label::RESULT, result.as_str())], more].concat()))
}

/// `,label="value",...} `: what follows the check's labels on a line.
fn tail(pairs: &[(&str, &str)]) -> String {
    let mut text = String::new();
    write_tail(&mut text, pairs.iter().copied());
    text
}

/// Replaces `text` with the tail of `pairs`.
fn write_tail<'a>(text: &mut String, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    text.clear();
    for (label, value) in pairs {
        text.push(',');
        push_pair(text, label, value);
    }
    text.push_str("} ");
}

/// `label="value"`, the value escaped as the text format wants.
fn push_pair(buf: &mut String, label: &str, value: &str) {
    buf.push_str(label);
    buf.push_str("=\"");
    if value.contains(['\\', '"', '\n']) {
        for ch in value.chars() {
            match ch {
                '\\' => buf.push_str("\\\\"),
                '"' => buf.push_str("\\\""),
                '\n' => buf.push_str("\\n"),
                other => buf.push(other),
            }
        }
    } else {
        buf.push_str(value);
    }
    buf.push('"');
}

/// The label pairs `push_pair` wrote, joined by commas, in order and unescaped.
fn label_pairs(rendered: &str) -> impl Iterator<Item = (&str, String)> {
    let mut rest = rendered;
    std::iter::from_fn(move || {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, ch)) = chars.next() {
            match ch {
                '"' => {
                    end = at + 1;
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                other => value.push(other),
            }
        }
        rest = after[end..].strip_prefix(',').unwrap_or(&after[end..]);
        Some((name, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kinds_phases_have_an_index_and_a_gauge_is_small() {
        use crate::result::*;
        let kinds: [&[&str]; 8] = [
            &HttpDetails::PHASES,
            &TlsDetails::PHASES,
            &DnsDetails::PHASES,
            &GrpcDetails::PHASES,
            &WebsocketDetails::PHASES,
            &TcpDetails::PHASES,
            &UdpDetails::PHASES,
            &IcmpDetails::PHASES,
        ];
        for phase in kinds.into_iter().flatten() {
            assert!(PHASES.contains(phase), "{phase} is not in PHASES");
        }
        assert_eq!(std::mem::size_of::<Sample>(), 24);
    }

    #[test]
    fn rendered_labels_read_back_as_written() {
        let written = [
            ("check", "a"),
            ("instance", "http://x/?q=\"1\",b"),
            ("team", "back\\slash\nnew line"),
            ("empty", ""),
        ];
        let mut rendered = String::new();
        for (idx, (label, value)) in written.iter().enumerate() {
            if idx > 0 {
                rendered.push(',');
            }
            push_pair(&mut rendered, label, value);
        }
        let read: Vec<(&str, String)> = label_pairs(&rendered).collect();
        let expected: Vec<(&str, String)> = written
            .iter()
            .map(|(label, value)| (*label, value.to_string()))
            .collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn gauge_families_are_listed_in_fam_order() {
        // `families` index GAUGES by `Fam as usize`.
        for (idx, (fam, _, _)) in GAUGES.iter().enumerate() {
            assert_eq!(*fam as usize, idx, "{fam:?}");
        }
    }

    #[test]
    fn a_changed_check_starts_its_series_over_but_keeps_its_state() {
        let store = Store::new(vec![1.0], Vec::new(), false);
        let identity = |target: &str| Identity {
            labels: vec![("check".into(), "a".into())],
            info: [target.into(), "every 1m".into()],
            reasons: crate::checks::http::REASONS,
            steps: Vec::new(),
        };
        store.insert("a".into(), identity("http://x/"));
        store.observe(
            "a",
            Run {
                result: RunResult::Failure,
                seconds: 0.5,
                reason: Some(FailureReason::Status),
                retry: false,
                maintenance: false,
            },
            |_| Vec::new(),
        );
        store.set_state("a", CheckState::Failing, 3);
        store.set_maintenance("a", true);
        store.insert("a".into(), identity("http://y/"));
        let mut text = String::new();
        store.write_text(1 << 20, &mut |chunk| {
            text.push_str(&chunk);
            true
        });
        for line in [
            "nightjar_check_runs_total{check=\"a\",result=\"failure\"} 0",
            "nightjar_check_state{check=\"a\",state=\"maintenance\"} 1",
            "nightjar_check_consecutive_failures{check=\"a\"} 3",
            "nightjar_check_maintenance{check=\"a\"} 1",
            "nightjar_check_maintenance_runs_total{check=\"a\",result=\"failure\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        store.set_maintenance("a", false);
        let mut text = String::new();
        store.write_text(1 << 20, &mut |chunk| {
            text.push_str(&chunk);
            true
        });
        assert!(
            text.lines()
                .any(|l| l == "nightjar_check_state{check=\"a\",state=\"failing\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn lean_creates_retries_and_the_maintenance_flag_on_first_use_and_shows_one_state() {
        let store = Store::new(vec![1.0], Vec::new(), true);
        let identity = Identity {
            labels: vec![("check".into(), "a".into())],
            info: ["http://x/".into(), "every 1m".into()],
            reasons: crate::checks::http::REASONS,
            steps: Vec::new(),
        };
        store.insert("a".into(), identity);
        let render = || {
            let mut text = String::new();
            store.write_text(1 << 20, &mut |chunk| {
                text.push_str(&chunk);
                true
            });
            text
        };
        let text = render();
        assert!(
            !text.contains("retry") && !text.contains("nightjar_check_maintenance"),
            "{text}"
        );
        store.observe(
            "a",
            Run {
                result: RunResult::Failure,
                seconds: 0.5,
                reason: Some(FailureReason::Status),
                retry: true,
                maintenance: false,
            },
            |_| Vec::new(),
        );
        store.set_state("a", CheckState::Failing, 1);
        store.set_maintenance("a", true);
        store.set_maintenance("a", false);
        let text = render();
        for line in [
            "nightjar_check_retry_runs_total{check=\"a\",result=\"success\"} 0",
            "nightjar_check_retry_runs_total{check=\"a\",result=\"failure\"} 1",
            "nightjar_check_state{check=\"a\",state=\"failing\"} 1",
            "nightjar_check_maintenance{check=\"a\"} 0",
            "nightjar_check_maintenance_runs_total{check=\"a\",result=\"failure\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        // A retry is not in the SLI counters, and lean has one state series and no
        // histogram of failed runs.
        assert!(!text.contains("nightjar_check_failures_total"), "{text}");
        assert_eq!(text.matches("nightjar_check_state{").count(), 1, "{text}");
        assert!(!text.contains("result=\"failure\",le="), "{text}");
        assert_eq!(store.families().len(), {
            let names: std::collections::BTreeSet<&str> =
                text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
            names.len()
        });
    }

    #[test]
    fn a_run_replaces_the_gauges_and_scrapes_find_each_family() {
        let store = Store::new(vec![0.1, 1.0], vec![("region".into(), "lab".into())], false);
        let identity = Identity {
            labels: vec![("check".into(), "a".into()), ("type".into(), "http".into())],
            info: ["http://x/".into(), "every 1m".into()],
            reasons: crate::checks::http::REASONS,
            steps: Vec::new(),
        };
        store.insert("a".into(), identity);
        let phases = |_: &Identity| {
            vec![
                Sample::with(Fam::HttpDuration, "phase", "connect", 0.25),
                Sample::new(Fam::ProbeSuccess, 1.0),
                Sample::with(Fam::HttpDuration, "phase", "tls", 0.5),
            ]
        };
        let run = |result, seconds, reason| Run {
            result,
            seconds,
            reason,
            retry: false,
            maintenance: false,
        };
        store.observe("a", run(RunResult::Success, 0.05, None), phases);
        store.observe(
            "a",
            run(RunResult::Failure, 2.0, Some(FailureReason::Status)),
            |_| vec![Sample::new(Fam::ProbeSuccess, 0.0)],
        );
        let mut text = String::new();
        store.write_text(64, &mut |chunk| {
            text.push_str(&chunk);
            true
        });
        let labels = "check=\"a\",type=\"http\",region=\"lab\"";
        for line in [
            format!("nightjar_check_runs_total{{{labels},result=\"success\"}} 1"),
            format!("nightjar_check_failures_total{{{labels},reason=\"status\"}} 1"),
            format!(
                "nightjar_check_duration_seconds_bucket{{{labels},result=\"failure\",le=\"+Inf\"}} 1"
            ),
            format!(
                "nightjar_check_duration_seconds_bucket{{{labels},result=\"success\",le=\"0.1\"}} 1"
            ),
            format!("probe_success{{{labels}}} 0"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(
            !text.contains("probe_http_duration_seconds"),
            "the second run's gauges replaced the first's:\n{text}"
        );
    }
}
