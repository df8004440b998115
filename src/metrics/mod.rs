//! The only place metric names and label sets exist.
//!
//! [`Metrics::observe`] is the single entry point for check results. The blackbox-compatible
//! `probe_*` gauges describe the last run; the `nightjar_*` counters and histogram are the
//! SLI source and exist at 0 from the moment a check is loaded, so `rate()` and ratios work
//! from the first scrape. Per-check series live in `store.rs`; agent-wide ones in a
//! prometheus registry.

pub mod blackbox;
pub mod discovery;
pub mod names;
mod store;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::config::{AgentConfig, CheckDef, Config, MetricsMode, RemoteWriteDef, TrafficDef};
use crate::detect::{Tracker, Verdict};
use crate::outcome::Outcome;
use crate::result::{
    CheckResult, Details, DnsDetails, Expiring, GrpcDetails, SERVING_STATUS_NAMES, TlsInfo,
};
use names::{CheckState, expires, label};
pub use names::{RESERVED_LABELS, RemoteResult, RunResult, TrafficResult, is_reserved_label};
use store::{Fam, Identity, Run, Sample, Store};

/// Buckets of `nightjar_scheduler_lag_seconds`: from 100 µs to 10 s.
const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// Bytes per chunk of a streamed `/metrics` answer.
pub const CHUNK: usize = 256 * 1024;

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    /// Every loaded check's series.
    store: Store,
    scheduler_lag: Histogram,
    tasks: IntGauge,
    reload_ok: IntGauge,
    reload_timestamp: prometheus::Gauge,
    checks_configured: IntGauge,
    traffic: TrafficMetrics,
    remote: RemoteMetrics,
    /// The agent's own HTTP server: connections and refusals.
    pub http: HttpMetrics,
    /// Requests to `/probe`, by module and result.
    pub probes: blackbox::ProbeRequests,
    /// Templates' discovery sources: targets, failures, last success.
    pub discovery: discovery::DiscoveryMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("checks", &self.store.len())
            .finish()
    }
}

impl Metrics {
    /// Registers every family for `config` and creates each check's counters at 0. Only
    /// checks that run in the agent's region are registered.
    pub fn new(config: &Config) -> Metrics {
        let (registry, agent_labels) = agent_registry(&config.agent);
        register_build_info(&registry);
        let checks = regional(config);
        let metrics = Metrics {
            store: Store::new(
                config.agent.duration_buckets.clone(),
                agent_labels,
                config.agent.metrics == MetricsMode::Lean,
            ),
            scheduler_lag: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "nightjar_scheduler_lag_seconds",
                        "Delay between when a run was due and when it started (includes waiting for the concurrency cap).",
                    )
                    .buckets(LAG_BUCKETS.to_vec()),
                )
                .expect("lag buckets are valid"),
            ),
            tasks: int_gauge(
                &registry,
                "nightjar_runtime_tasks",
                "Tasks alive in the agent's async runtime, read at each scrape: steady with a steady configuration.",
            ),
            reload_ok: int_gauge(
                &registry,
                "nightjar_config_last_reload_successful",
                "Whether the last configuration load succeeded.",
            ),
            reload_timestamp: register(
                &registry,
                prometheus::Gauge::new(
                    "nightjar_config_last_reload_success_timestamp_seconds",
                    "When the configuration was last loaded successfully.",
                )
                .expect("metric definitions are valid"),
            ),
            checks_configured: int_gauge(
                &registry,
                "nightjar_checks_configured",
                "Checks loaded that run in this agent's region.",
            ),
            traffic: TrafficMetrics::register(&registry),
            remote: RemoteMetrics::register(&registry),
            http: HttpMetrics::register(&registry),
            probes: blackbox::ProbeRequests::register(&registry),
            discovery: discovery::DiscoveryMetrics::register(&registry),
            registry,
        };
        metrics.reload_ok.set(1);
        metrics.reload_timestamp.set(unix_now());
        metrics.checks_configured.set(checks.len() as i64);
        for def in checks {
            metrics.register_check(def);
        }
        metrics.reconfigure_outputs(&[], &[], &config.remote_write, &config.traffic);
        metrics
    }

    /// Series of remote-write endpoints and traffic injectors: those of removed ones go, new
    /// ones start at 0 (so `rate()` sees their first increase), kept ones keep counting.
    pub fn reconfigure_outputs(
        &self,
        remotes_before: &[Arc<RemoteWriteDef>],
        traffic_before: &[Arc<TrafficDef>],
        remotes: &[Arc<RemoteWriteDef>],
        traffic: &[Arc<TrafficDef>],
    ) {
        self.remote.reconfigure(remotes_before, remotes);
        self.traffic.reconfigure(traffic_before, traffic);
    }

    /// What identifies `def`'s series: its labels, info values, reasons and flow steps.
    fn identity_of(&self, def: &CheckDef) -> Identity {
        let mut labels = vec![
            (Cow::Borrowed(label::CHECK), def.check_name().to_string()),
            (Cow::Borrowed("type"), def.kind().as_str().to_string()),
        ];
        if let Some(instance) = &def.instance {
            labels.push((Cow::Borrowed(label::INSTANCE), instance.to_string()));
        }
        let mut own: Vec<(Cow<'static, str>, String)> = def
            .labels
            .iter()
            .map(|(key, value)| (Cow::Owned(key.clone()), value.clone()))
            .collect();
        own.sort();
        labels.extend(own);
        let steps = match &def.spec {
            crate::checks::CheckSpec::Flow(flow) => {
                flow.steps.iter().map(|step| step.name.clone()).collect()
            }
            _ => Vec::new(),
        };
        Identity {
            labels,
            // Lean exports no `nightjar_check_info`: its values are not kept, nor compared.
            info: if self.store.lean() {
                Default::default()
            } else {
                [def.target.clone(), def.schedule.to_string()]
            },
            reasons: def.kind().reasons(),
            steps,
        }
    }

    /// Creates a check's counters at 0 and its info series.
    fn register_check(&self, def: &CheckDef) {
        self.store.insert(def.name.clone(), self.identity_of(def));
    }

    /// Applies a reloaded configuration: the series of unchanged checks stay (counters
    /// included), those of removed checks go, those of changed checks start over (keeping the
    /// check's state), new checks start at 0.
    pub fn reconfigure(&self, config: &Config) {
        let checks = regional(config);
        let wanted: std::collections::HashSet<&str> = checks.iter().map(|def| &*def.name).collect();
        self.store.retain(|name| wanted.contains(name));
        self.upsert(checks.iter().map(|def| Arc::as_ref(def)));
        self.checks_configured.set(checks.len() as i64);
    }

    /// Adds each of `defs` with its series at 0, unless it is held with exactly the series it
    /// would have (then counters and gauges stay).
    fn upsert<'d>(&self, defs: impl Iterator<Item = &'d CheckDef>) {
        for def in defs {
            let identity = self.identity_of(def);
            if !self.store.holds(&def.name, &identity) {
                self.store.insert(def.name.clone(), identity);
            }
        }
    }

    /// Applies a change to some checks (a template's discovered targets): the series of
    /// `removed` go, `upserted` ones start at 0 unless their series are already as they
    /// would be (then counters and gauges stay). Every other check is untouched.
    pub fn apply_checks(&self, removed: &[Arc<str>], upserted: &[Arc<CheckDef>]) {
        if !removed.is_empty() {
            let gone: std::collections::HashSet<&str> =
                removed.iter().map(|name| &**name).collect();
            self.store.retain(|name| !gone.contains(name));
        }
        self.upsert(upserted.iter().map(Arc::as_ref));
        self.checks_configured
            .set(i64::try_from(self.store.len()).unwrap_or(i64::MAX));
    }

    /// Records one check result (a run of `nightjar check` or a test's, on the schedule).
    /// Results of checks this registry does not know are ignored.
    pub fn observe(&self, res: &CheckResult) {
        self.count(res, false, false);
    }

    /// Records a scheduled run: its result as [`Metrics::observe`] does (a retry only in the
    /// retry counter, a run in a maintenance window in the maintenance counters too), and the
    /// check's state after it.
    pub fn observe_outcome(&self, outcome: &Outcome) {
        self.count(
            &outcome.result,
            outcome.retry,
            outcome.maintenance.is_some(),
        );
        self.set_tracker(&outcome.result.check, &outcome.tracker);
    }

    /// Sets a check's state series from its tracker (after a restore or a reload, which
    /// recreates a changed check's series, the state is known before its next run).
    pub fn set_tracker(&self, check: &str, tracker: &Tracker) {
        let decided = match tracker.decided() {
            None => CheckState::Unknown,
            Some(Verdict::Passing) => CheckState::Passing,
            Some(Verdict::Failing) => CheckState::Failing,
        };
        self.store
            .set_state(check, decided, tracker.consecutive_failures());
    }

    fn count(&self, res: &CheckResult, retry: bool, maintenance: bool) {
        let run = Run {
            result: RunResult::of(res.is_success()),
            seconds: res.duration.as_secs_f64(),
            reason: res.reason(),
            retry,
            maintenance,
        };
        let lean = self.store.lean();
        self.store.observe(&res.check, run, |identity| {
            let mut gauges = gauges_of(res, &identity.steps);
            if lean {
                gauges.retain(|sample| lean_keeps(sample.fam(), res.kind));
            }
            gauges
        });
    }

    /// Sets whether a maintenance window covers `check` now (`nightjar_check_maintenance`,
    /// and the state series read `maintenance` while it does).
    pub fn set_maintenance(&self, check: &str, covered: bool) {
        self.store.set_maintenance(check, covered);
    }

    /// Records one injector refresh.
    pub fn traffic_plan(
        &self,
        traffic: &str,
        floor: f64,
        real: Option<f64>,
        inject: f64,
        prometheus_up: bool,
    ) {
        let metrics = &self.traffic;
        metrics.floor.with_label_values(&[traffic]).set(floor);
        metrics.target.with_label_values(&[traffic]).set(inject);
        if let Some(real) = real {
            metrics.real.with_label_values(&[traffic]).set(real);
        }
        metrics
            .prometheus_up
            .with_label_values(&[traffic])
            .set(f64::from(u8::from(prometheus_up)));
    }

    /// Counts one injected request.
    pub fn traffic_request(&self, traffic: &str, result: TrafficResult) {
        self.traffic
            .requests
            .with_label_values(&[traffic, result.as_str()])
            .inc();
    }

    /// Counts remote-write samples by result.
    pub fn remote_write(&self, remote: &str, result: RemoteResult, samples: usize) {
        self.remote
            .samples
            .with_label_values(&[remote, result.as_str()])
            .inc_by(samples as u64);
    }

    /// Counts a remote-write request that will be retried.
    pub fn remote_write_retry(&self, remote: &str) {
        self.remote.retries.with_label_values(&[remote]).inc();
    }

    /// Records the remote-write queue length.
    pub fn remote_write_queue(&self, remote: &str, samples: usize) {
        self.remote
            .queue
            .with_label_values(&[remote])
            .set(samples as f64);
    }

    /// Every family, structured (for remote write).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(self.store.families());
        families
    }

    /// Records how late a run started.
    pub fn observe_lag(&self, lag: Duration) {
        self.scheduler_lag.observe(lag.as_secs_f64());
    }

    /// Counts a run skipped because the previous one was still in flight.
    pub fn skipped(&self, check: &str) {
        self.store.skipped(check);
    }

    /// Records the async runtime's live task count (called at each scrape).
    pub fn runtime_tasks(&self, alive: usize) {
        self.tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
    }

    /// Records the outcome of a configuration reload.
    pub fn config_reloaded(&self, success: bool) {
        self.reload_ok.set(i64::from(success));
        if success {
            self.reload_timestamp.set(unix_now());
        }
    }

    /// Number of checks registered.
    pub fn check_count(&self) -> i64 {
        self.checks_configured.get()
    }

    /// The Prometheus text exposition of every family, handed to `emit` in chunks of about
    /// [`CHUNK`] bytes; `emit` returns false to stop early.
    pub fn write_text(&self, emit: &mut dyn FnMut(String) -> bool) {
        let families = self.registry.gather();
        let mut buffer = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&families, &mut buffer)
            .expect("encoding into a Vec cannot fail");
        let agent = String::from_utf8(buffer).expect("the text format is UTF-8");
        if emit(agent) {
            self.store.write_text(CHUNK, emit);
        }
    }

    /// The Prometheus text exposition of every family, in one string.
    pub fn render(&self) -> String {
        let mut text = String::new();
        self.write_text(&mut |chunk| {
            text.push_str(&chunk);
            true
        });
        text
    }
}

/// The gauges that describe `res`; `steps` are the check's flow steps (each gets its
/// gauges whether or not the run reached it).
fn gauges_of(res: &CheckResult, steps: &[String]) -> Vec<Sample> {
    let details = &res.details;
    let mut gauges = vec![
        Sample::new(Fam::ProbeSuccess, f64::from(u8::from(res.is_success()))),
        Sample::new(Fam::ProbeDuration, res.duration.as_secs_f64()),
    ];
    tls_gauges(&mut gauges, details.tls_info());
    expiry_gauges(&mut gauges, details);
    if let Some(resolve) = details.resolve() {
        gauges.push(Sample::new(Fam::ProbeDnsLookup, resolve.as_secs_f64()));
    }
    if let Some(remote) = details.remote_addr() {
        gauges.push(Sample::new(Fam::ProbeIpProtocol, ip_protocol(remote)));
    }
    // What only one kind has, and the family its phases go to.
    let phase_family = match details {
        Details::None => None,
        Details::Tcp(_) => Some(Fam::TcpDuration),
        Details::Tls(_) => Some(Fam::TlsDuration),
        Details::Dns(dns) => {
            dns_gauges(&mut gauges, dns);
            Some(Fam::DnsDuration)
        }
        Details::Domain(domain) => {
            if let Some(at) = domain.expiry {
                gauges.push(Sample::new(Fam::DomainExpiry, at as f64));
            }
            Some(Fam::HttpDuration)
        }
        Details::Flow(flow) => {
            for name in steps {
                let ran = flow.steps.iter().find(|step| &step.name == name);
                let step = || Cow::Owned(name.clone());
                let took = ran.map_or(0.0, |step| step.duration.as_secs_f64());
                let passed = f64::from(u8::from(ran.is_some_and(|step| step.success)));
                gauges.push(Sample::with(Fam::FlowStepDuration, "step", step(), took));
                gauges.push(Sample::with(Fam::FlowStepSuccess, "step", step(), passed));
            }
            None
        }
        Details::Grpc(grpc) => {
            grpc_gauges(&mut gauges, grpc);
            Some(Fam::GrpcDuration)
        }
        Details::Http(http) => {
            let flag = |on: bool| f64::from(u8::from(on));
            gauges.extend([
                Sample::new(
                    Fam::HttpStatusCode,
                    f64::from(http.status_code.unwrap_or(0)),
                ),
                Sample::new(
                    Fam::HttpContentLength,
                    http.content_length.map_or(-1.0, |n| n as f64),
                ),
                Sample::new(Fam::HttpVersion, http.http_version.unwrap_or(0.0)),
                Sample::new(Fam::HttpRedirects, f64::from(http.redirects)),
                Sample::new(Fam::HttpSsl, flag(http.tls_used)),
                Sample::new(Fam::FailedDueToRegex, flag(http.failed_due_to_regex)),
            ]);
            if let Some(length) = http.uncompressed_length {
                gauges.push(Sample::new(Fam::HttpUncompressedLength, length as f64));
            }
            Some(Fam::HttpDuration)
        }
        Details::Websocket(websocket) => {
            gauges.extend([
                Sample::new(
                    Fam::WebsocketStatusCode,
                    f64::from(websocket.status_code.unwrap_or(0)),
                ),
                Sample::new(
                    Fam::WebsocketMessagesSent,
                    f64::from(websocket.messages_sent),
                ),
                Sample::new(
                    Fam::WebsocketMessagesReceived,
                    f64::from(websocket.messages_received),
                ),
            ]);
            Some(Fam::WebsocketDuration)
        }
        Details::Icmp(icmp) => {
            icmp_gauges(&mut gauges, icmp);
            Some(Fam::IcmpDuration)
        }
        Details::Udp(udp) => {
            gauges.push(Sample::new(Fam::UdpSent, f64::from(udp.sent)));
            gauges.push(Sample::new(Fam::UdpReceived, udp.received as f64));
            Some(Fam::UdpDuration)
        }
    };
    if let Some(fam) = phase_family {
        for (phase, took) in details.phases() {
            gauges.push(Sample::phase(fam, phase, took.as_secs_f64()));
        }
    }
    gauges
}

/// The packet counts of an icmp run, and its round trips and reply hop limit when a reply
/// came.
fn icmp_gauges(gauges: &mut Vec<Sample>, icmp: &crate::result::IcmpDetails) {
    gauges.push(Sample::new(Fam::IcmpSent, f64::from(icmp.sent)));
    gauges.push(Sample::new(Fam::IcmpReceived, f64::from(icmp.received)));
    if let Some(hops) = icmp.reply_hop_limit {
        gauges.push(Sample::new(Fam::IcmpReplyHopLimit, f64::from(hops)));
    }
    if icmp.received > 0 {
        gauges.extend([
            Sample::new(Fam::IcmpRttMin, icmp.rtt_min.as_secs_f64()),
            Sample::new(Fam::IcmpRttAvg, icmp.rtt.as_secs_f64()),
            Sample::new(Fam::IcmpRttMax, icmp.rtt_max.as_secs_f64()),
            Sample::new(Fam::IcmpRttStddev, icmp.rtt_stddev.as_secs_f64()),
        ]);
    }
}

/// Whether the lean set keeps a gauge of `fam` for a check of `kind`: each certificate's
/// dates and the chain and name verdicts only for `tls` checks, which exist to watch
/// certificates (for the others, `probe_ssl_*`, `nightjar_expiry_timestamp_seconds` and the
/// failure reason say what an alert needs); never the decoded body length of a check with
/// `compression` (`probe_http_content_length` is there), which keeps an HTTPS check within
/// 32 series.
fn lean_keeps(fam: Fam, kind: crate::checks::CheckKind) -> bool {
    let per_certificate = matches!(
        fam,
        Fam::CertNotBefore | Fam::CertNotAfter | Fam::ChainValid | Fam::HostnameMatch
    );
    (!per_certificate || kind == crate::checks::CheckKind::Tls)
        && fam != Fam::HttpUncompressedLength
}

/// The checks of `config` that run in the agent's region.
fn regional(config: &Config) -> Vec<&Arc<CheckDef>> {
    config
        .checks
        .iter()
        .filter(|def| def.runs_in(&config.agent.region))
        .collect()
}

/// The certificate and TLS gauges of what the run saw; none if it never got a handshake.
fn tls_gauges(gauges: &mut Vec<Sample>, info: Option<&TlsInfo>) {
    let Some(info) = info else {
        return;
    };
    if let Some(first) = info.earliest_expiry() {
        gauges.push(Sample::new(Fam::SslEarliest, first as f64));
        gauges.push(Sample::new(Fam::SslLastChainExpiry, first as f64));
    }
    if let Some(leaf) = info.chain.first() {
        gauges.push(Sample::labels(
            Fam::SslLastChainInfo,
            vec![
                ("fingerprint_sha256", leaf.fingerprint_sha256.clone().into()),
                ("subject", leaf.subject.clone().into()),
                ("issuer", leaf.issuer.clone().into()),
                ("subjectalternative", leaf.sans.join(",").into()),
                ("serialnumber", leaf.serial.clone().into()),
            ],
            1.0,
        ));
    }
    gauges.push(Sample::with(
        Fam::TlsVersionInfo,
        "version",
        info.version,
        1.0,
    ));
    for (position, cert) in info.chain.iter().enumerate() {
        let labels: store::Labels = vec![
            ("position", position.to_string().into()),
            ("subject", cert.subject.clone().into()),
            ("issuer", cert.issuer.clone().into()),
        ];
        gauges.push(Sample::labels(
            Fam::CertNotBefore,
            labels.clone(),
            cert.not_before as f64,
        ));
        gauges.push(Sample::labels(
            Fam::CertNotAfter,
            labels,
            cert.not_after as f64,
        ));
    }
    gauges.push(Sample::new(
        Fam::ChainValid,
        f64::from(u8::from(info.chain_valid)),
    ));
    gauges.push(Sample::new(
        Fam::HostnameMatch,
        f64::from(u8::from(info.hostname_match)),
    ));
}

/// `nightjar_expiry_timestamp_seconds` from everything the run saw expire.
fn expiry_gauges(gauges: &mut Vec<Sample>, details: &Details) {
    for (what, at) in details.expiries() {
        let value = match what {
            Expiring::Certificate => expires::CERTIFICATE,
            Expiring::Signature => expires::DNSSEC_SIGNATURE,
            Expiring::Domain => expires::DOMAIN,
        };
        gauges.push(Sample::with(Fam::Expiry, label::EXPIRES, value, at as f64));
    }
}

/// blackbox_exporter's gRPC gauges: the status code, one `serving_status` series per status
/// (1 for the one answered), and whether TLS was used.
fn grpc_gauges(gauges: &mut Vec<Sample>, grpc: &GrpcDetails) {
    let code = grpc.status_code.map_or(-1.0, f64::from);
    gauges.push(Sample::new(Fam::GrpcStatusCode, code));
    for (value, name) in SERVING_STATUS_NAMES.iter().enumerate() {
        let answered = grpc.serving_status == i32::try_from(value).ok();
        gauges.push(Sample::with(
            Fam::GrpcHealthcheckResponse,
            "serving_status",
            *name,
            f64::from(u8::from(answered)),
        ));
    }
    gauges.push(Sample::new(
        Fam::GrpcSsl,
        f64::from(u8::from(grpc.tls_used)),
    ));
}

fn dns_gauges(gauges: &mut Vec<Sample>, dns: &DnsDetails) {
    gauges.extend([
        Sample::new(Fam::DnsAnswerRrs, dns.answer_rrs as f64),
        Sample::new(Fam::DnsAuthorityRrs, dns.authority_rrs as f64),
        Sample::new(Fam::DnsAdditionalRrs, dns.additional_rrs as f64),
        Sample::new(
            Fam::DnsAuthoritative,
            f64::from(u8::from(dns.authoritative)),
        ),
    ]);
    if let Some(serial) = dns.soa_serial {
        gauges.push(Sample::new(Fam::DnsSerial, f64::from(serial)));
    }
    if let Some(code) = dns.rcode_name() {
        gauges.push(Sample::with(Fam::DnsRcode, "rcode", code, 1.0));
    }
    if let Some((min, max)) = dns.ttl_range() {
        gauges.push(Sample::new(Fam::DnsMinTtl, f64::from(min)));
        gauges.push(Sample::new(Fam::DnsMaxTtl, f64::from(max)));
    }
    if let Some(at) = dns.earliest_rrsig {
        gauges.push(Sample::new(Fam::DnsRrsigExpiry, at as f64));
    }
    for server in &dns.soa_servers {
        if let Some(serial) = server.serial {
            let name = server.server.clone();
            gauges.push(Sample::with(
                Fam::DnsSoaSerial,
                "server",
                name,
                f64::from(serial),
            ));
        }
    }
}

fn ip_protocol(remote: Option<std::net::SocketAddr>) -> f64 {
    match remote {
        Some(addr) if addr.is_ipv4() => 4.0,
        Some(_) => 6.0,
        None => 0.0,
    }
}

fn unix_now() -> f64 {
    crate::time::since_epoch(std::time::SystemTime::now()).as_secs_f64()
}

/// A registry whose series all carry the agent's region and `[agent] labels`, and those
/// label pairs, sorted, for the per-check series (which are not in the registry).
fn agent_registry(agent: &AgentConfig) -> (Registry, Vec<(String, String)>) {
    let mut const_labels: HashMap<String, String> = agent.labels.clone().into_iter().collect();
    const_labels.insert(label::REGION.to_string(), agent.region.clone());
    let mut agent_labels: Vec<(String, String)> = const_labels.clone().into_iter().collect();
    agent_labels.sort();
    let registry =
        Registry::new_custom(None, Some(const_labels)).expect("agent labels are validated");
    (registry, agent_labels)
}

/// `nightjar_build_info`, at 1 for the running version.
fn register_build_info(registry: &Registry) {
    let build_info = IntGaugeVec::new(
        Opts::new(
            names::BUILD_INFO,
            "The running nightjar's version; always 1.",
        ),
        &["version"],
    )
    .expect("metric definitions are valid");
    register(registry, build_info)
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
}

/// Registers `collector` in `registry` and hands it back.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

/// A registered gauge without labels.
fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).expect("metric definitions are valid"),
    )
}

/// A registered counter without labels.
fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("metric definitions are valid"),
    )
}

/// A registered family of gauges by `labels`.
fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        registry,
        GaugeVec::new(Opts::new(name, help), labels).expect("metric definitions are valid"),
    )
}

/// A registered family of counters by `labels`.
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("metric definitions are valid"),
    )
}

/// The traffic injectors' series, by injector (`traffic`).
struct TrafficMetrics {
    requests: IntCounterVec,
    target: GaugeVec,
    real: GaugeVec,
    floor: GaugeVec,
    prometheus_up: GaugeVec,
}

impl TrafficMetrics {
    fn register(registry: &Registry) -> TrafficMetrics {
        let gauge = |name: &str, help: &str| gauge_vec(registry, name, help, &["traffic"]);
        TrafficMetrics {
            requests: counter_vec(
                registry,
                "nightjar_traffic_requests_total",
                "Synthetic requests sent by each injector, by result (success, failure, dropped).",
                &["traffic", label::RESULT],
            ),
            target: gauge(
                "nightjar_traffic_target_rate",
                "The rate (requests per second) each injector is sending at: max(0, floor - real rate), capped.",
            ),
            real: gauge(
                "nightjar_traffic_observed_rate",
                "The real request rate (per second) Prometheus last reported to each injector.",
            ),
            floor: gauge(
                "nightjar_traffic_floor_rate",
                "The traffic floor (requests per second) of each injector.",
            ),
            prometheus_up: gauge(
                "nightjar_traffic_prometheus_up",
                "Whether each injector could read the real rate from Prometheus at its last refresh.",
            ),
        }
    }

    /// Removes the series of injectors of `before` not in `now`; creates the counters of
    /// those in `now` (at 0 if new) and sets their floor.
    fn reconfigure(&self, before: &[Arc<TrafficDef>], now: &[Arc<TrafficDef>]) {
        for def in before {
            if !now.iter().any(|kept| kept.name == def.name) {
                let name = def.name.as_str();
                for result in TrafficResult::ALL {
                    let _ = self.requests.remove_label_values(&[name, result.as_str()]);
                }
                for gauge in [&self.target, &self.real, &self.floor, &self.prometheus_up] {
                    let _ = gauge.remove_label_values(&[name]);
                }
            }
        }
        for def in now {
            let name = def.name.as_str();
            for result in TrafficResult::ALL {
                self.requests
                    .with_label_values(&[name, result.as_str()])
                    .inc_by(0);
            }
            self.floor.with_label_values(&[name]).set(def.floor);
        }
    }
}

/// The remote-write endpoints' series, by endpoint (`remote`).
struct RemoteMetrics {
    samples: IntCounterVec,
    retries: IntCounterVec,
    queue: GaugeVec,
}

impl RemoteMetrics {
    fn register(registry: &Registry) -> RemoteMetrics {
        RemoteMetrics {
            samples: counter_vec(
                registry,
                "nightjar_remote_write_samples_total",
                "Samples handled by each remote-write endpoint: sent, dropped (queue full) or rejected (4xx).",
                &["remote", label::RESULT],
            ),
            retries: counter_vec(
                registry,
                "nightjar_remote_write_retries_total",
                "Failed remote-write requests that will be retried (5xx, 429, network errors).",
                &["remote"],
            ),
            queue: gauge_vec(
                registry,
                "nightjar_remote_write_queue_samples",
                "Samples waiting to be sent to each remote-write endpoint.",
                &["remote"],
            ),
        }
    }

    /// Removes the series of endpoints of `before` not in `now`; creates the counters of
    /// those in `now` (at 0 if new), and the queue gauge of new ones at 0.
    fn reconfigure(&self, before: &[Arc<RemoteWriteDef>], now: &[Arc<RemoteWriteDef>]) {
        for def in before {
            if !now.iter().any(|kept| kept.name == def.name) {
                let name = def.name.as_str();
                for result in RemoteResult::ALL {
                    let _ = self.samples.remove_label_values(&[name, result.as_str()]);
                }
                let _ = self.retries.remove_label_values(&[name]);
                let _ = self.queue.remove_label_values(&[name]);
            }
        }
        for def in now {
            let name = def.name.as_str();
            for result in RemoteResult::ALL {
                self.samples
                    .with_label_values(&[name, result.as_str()])
                    .inc_by(0);
            }
            self.retries.with_label_values(&[name]).inc_by(0);
            if !before.iter().any(|kept| kept.name == def.name) {
                self.queue.with_label_values(&[name]).set(0.0);
            }
        }
    }
}

/// The agent's own HTTP server (`server::serve`): open connections, and the connections and
/// requests it turned away to stay available.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    open: IntGauge,
    refused: IntCounter,
    evicted: IntCounter,
    timed_out: IntCounter,
    throttled: IntCounter,
}

impl HttpMetrics {
    fn register(registry: &Registry) -> HttpMetrics {
        HttpMetrics {
            open: int_gauge(
                registry,
                "nightjar_http_connections",
                "Connections open to the agent's own server.",
            ),
            refused: int_counter(
                registry,
                "nightjar_http_connections_refused_total",
                "Connections closed at once because [agent] max_connections were open and none could make room.",
            ),
            evicted: int_counter(
                registry,
                "nightjar_http_connections_evicted_total",
                "Connections closed to make room at [agent] max_connections (idle ones first), and /metrics renders that gave their place to another client's scrape.",
            ),
            timed_out: int_counter(
                registry,
                "nightjar_http_connections_timed_out_total",
                "Connections closed because a request head, a TLS handshake, a write or a whole response did not complete in time.",
            ),
            throttled: int_counter(
                registry,
                "nightjar_http_requests_throttled_total",
                "Requests answered 429: basic-auth verification busy, or an address backing off after failed logins.",
            ),
        }
    }

    /// Sets the number of open connections.
    pub fn set_open(&self, open: usize) {
        self.open.set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Counts a connection refused at the cap.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// Counts an idle connection closed to make room.
    pub fn evicted(&self) {
        self.evicted.inc();
    }

    /// Counts a connection closed by a timeout.
    pub fn timed_out(&self) {
        self.timed_out.inc();
    }

    /// Counts a request answered 429.
    pub fn throttled(&self) {
        self.throttled.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `reconfigure` with 50,000 checks of which 5,000 change (2,500 removed, 2,500 added),
    /// as a discovery change does: timed, so a regression to a per-check clone of every
    /// identity shows.
    #[test]
    fn reconfigure_of_a_few_among_50_000_checks_is_cheap() {
        let text = "[[check]]\nname = \"c\"\ntype = \"http\"\nurl = \"https://shop.example.com/\"\nlabels = { team = \"shop\" }\n";
        let env = crate::config::MapEnv(HashMap::new());
        let mut config = crate::config::load_str(
            std::path::Path::new("t.toml"),
            text,
            &env,
            &crate::config::Overrides::default(),
        )
        .expect("the check loads");
        let template = (*config.checks[0]).clone();
        let named = |n: usize| {
            let mut def = template.clone();
            def.name = format!("c{n}").into();
            Arc::new(def)
        };
        config.checks = (0..50_000).map(named).collect();
        let metrics = Metrics::new(&config);
        config.checks = (2_500..52_500).map(named).collect();
        let started = std::time::Instant::now();
        metrics.reconfigure(&config);
        let took = started.elapsed();
        eprintln!("reconfigure of 50,000 checks, 5,000 changed: {took:?}");
        assert_eq!(metrics.store.len(), 50_000);
        let text = metrics.render();
        assert!(text.contains("check=\"c52499\""));
        assert!(!text.contains("check=\"c0\""));
        // Generous for an unoptimised build on a shared machine; see the printed figure.
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
