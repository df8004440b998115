//! The only place metric names and label sets exist.
//!
//! [`Metrics::observe`] is the single entry point for check results. The blackbox-compatible
//! `probe_*` gauges describe the last run; the `nightjar_*` counters and histogram are the
//! SLI source and exist at 0 from the moment a check is loaded, so `rate()` and ratios work
//! from the first scrape. Per-check series live in `store.rs`; agent-wide ones in a
//! prometheus registry.

pub mod names;
mod store;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::config::{CheckDef, Config};
use crate::result::{CheckResult, Details, DnsDetails, Expiring, TlsInfo};
pub use names::{RESERVED_LABELS, RemoteResult, RunResult, TrafficResult, is_reserved_label};
use names::{expires, label};
use store::{Fam, Identity, Sample, Store};

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
    reload_ok: IntGauge,
    reload_timestamp: prometheus::Gauge,
    tasks: IntGauge,
    checks_configured: IntGauge,
    traffic_requests: IntCounterVec,
    traffic_target: GaugeVec,
    traffic_real: GaugeVec,
    traffic_floor: GaugeVec,
    traffic_prometheus_up: GaugeVec,
    remote_samples: IntCounterVec,
    remote_retries: IntCounterVec,
    remote_queue: GaugeVec,
    /// The agent's own HTTP server: connections and refusals.
    pub http: HttpMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("checks", &self.store.identities().len())
            .finish()
    }
}

impl Metrics {
    /// Registers every family for `config` and creates each check's counters at 0. Only
    /// checks that run in the agent's region are registered.
    pub fn new(config: &Config) -> Metrics {
        let mut const_labels: HashMap<String, String> =
            config.agent.labels.clone().into_iter().collect();
        const_labels.insert(label::REGION.to_string(), config.agent.region.clone());
        let mut agent_labels: Vec<(String, String)> = const_labels.clone().into_iter().collect();
        agent_labels.sort();
        let registry =
            Registry::new_custom(None, Some(const_labels)).expect("agent labels are validated");
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let vec =
                GaugeVec::new(Opts::new(name, help), labels).expect("metric definitions are valid");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric names are unique");
            vec
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric names are unique");
            vec
        };
        let scheduler_lag = Histogram::with_opts(
            HistogramOpts::new(
                "nightjar_scheduler_lag_seconds",
                "Delay between when a run was due and when it started (includes waiting for the concurrency cap).",
            )
            .buckets(LAG_BUCKETS.to_vec()),
        )
        .expect("lag buckets are valid");
        registry
            .register(Box::new(scheduler_lag.clone()))
            .expect("metric names are unique");
        let tasks = IntGauge::new(
            "nightjar_runtime_tasks",
            "Tasks alive in the agent's async runtime, read at each scrape: steady with a steady configuration.",
        )
        .expect("a valid gauge");
        registry
            .register(Box::new(tasks.clone()))
            .expect("metric names are unique");
        let traffic_requests = counter(
            "nightjar_traffic_requests_total",
            "Synthetic requests sent by each injector, by result (success, failure, dropped).",
            &["traffic", label::RESULT],
        );
        let traffic_target = gauge(
            "nightjar_traffic_target_rate",
            "The rate (requests per second) each injector is sending at: max(0, floor - real rate), capped.",
            &["traffic"],
        );
        let traffic_real = gauge(
            "nightjar_traffic_observed_rate",
            "The real request rate (per second) Prometheus last reported to each injector.",
            &["traffic"],
        );
        let traffic_floor = gauge(
            "nightjar_traffic_floor_rate",
            "The traffic floor (requests per second) of each injector.",
            &["traffic"],
        );
        let traffic_prometheus_up = gauge(
            "nightjar_traffic_prometheus_up",
            "Whether each injector could read the real rate from Prometheus at its last refresh.",
            &["traffic"],
        );
        let remote_samples = counter(
            "nightjar_remote_write_samples_total",
            "Samples handled by each remote-write endpoint: sent, dropped (queue full) or rejected (4xx).",
            &["remote", label::RESULT],
        );
        let remote_retries = counter(
            "nightjar_remote_write_retries_total",
            "Failed remote-write requests that will be retried (5xx, 429, network errors).",
            &["remote"],
        );
        let remote_queue = gauge(
            "nightjar_remote_write_queue_samples",
            "Samples waiting to be sent to each remote-write endpoint.",
            &["remote"],
        );
        let build_info = IntGaugeVec::new(
            Opts::new(
                names::BUILD_INFO,
                "The running nightjar's version; always 1.",
            ),
            &["version"],
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(build_info.clone()))
            .expect("metric names are unique");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let reload_ok = IntGauge::new(
            "nightjar_config_last_reload_successful",
            "Whether the last configuration load succeeded.",
        )
        .expect("metric definitions are valid");
        let reload_timestamp = prometheus::Gauge::new(
            "nightjar_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
        )
        .expect("metric definitions are valid");
        let checks_configured = IntGauge::new(
            "nightjar_checks_configured",
            "Checks loaded that run in this agent's region.",
        )
        .expect("metric definitions are valid");
        for collector in [&reload_ok, &checks_configured] {
            registry
                .register(Box::new(collector.clone()))
                .expect("metric names are unique");
        }
        registry
            .register(Box::new(reload_timestamp.clone()))
            .expect("metric names are unique");
        reload_ok.set(1);
        reload_timestamp.set(unix_now());
        let checks = regional(config);
        checks_configured.set(checks.len() as i64);

        let http = HttpMetrics::register(&registry);
        let metrics = Metrics {
            registry,
            store: Store::new(config.agent.duration_buckets.clone(), agent_labels),
            scheduler_lag,
            reload_ok,
            reload_timestamp,
            tasks,
            checks_configured,
            traffic_requests,
            traffic_target,
            traffic_real,
            traffic_floor,
            traffic_prometheus_up,
            remote_samples,
            remote_retries,
            remote_queue,
            http,
        };
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
        remotes_before: &[Arc<crate::config::RemoteWriteDef>],
        traffic_before: &[Arc<crate::config::TrafficDef>],
        remotes: &[Arc<crate::config::RemoteWriteDef>],
        traffic: &[Arc<crate::config::TrafficDef>],
    ) {
        for def in remotes_before {
            if !remotes.iter().any(|kept| kept.name == def.name) {
                let name = def.name.as_str();
                for result in RemoteResult::ALL {
                    let _ = self
                        .remote_samples
                        .remove_label_values(&[name, result.as_str()]);
                }
                let _ = self.remote_retries.remove_label_values(&[name]);
                let _ = self.remote_queue.remove_label_values(&[name]);
            }
        }
        for def in traffic_before {
            if !traffic.iter().any(|kept| kept.name == def.name) {
                let name = def.name.as_str();
                for result in TrafficResult::ALL {
                    let _ = self
                        .traffic_requests
                        .remove_label_values(&[name, result.as_str()]);
                }
                for gauge in [
                    &self.traffic_target,
                    &self.traffic_real,
                    &self.traffic_floor,
                    &self.traffic_prometheus_up,
                ] {
                    let _ = gauge.remove_label_values(&[name]);
                }
            }
        }
        for def in remotes {
            let name = def.name.as_str();
            for result in RemoteResult::ALL {
                self.remote_samples
                    .with_label_values(&[name, result.as_str()])
                    .inc_by(0);
            }
            self.remote_retries.with_label_values(&[name]).inc_by(0);
            if !remotes_before.iter().any(|kept| kept.name == def.name) {
                self.remote_queue.with_label_values(&[name]).set(0.0);
            }
        }
        for def in traffic {
            let name = def.name.as_str();
            for result in TrafficResult::ALL {
                self.traffic_requests
                    .with_label_values(&[name, result.as_str()])
                    .inc_by(0);
            }
            self.traffic_floor.with_label_values(&[name]).set(def.floor);
        }
    }

    /// What identifies `def`'s series: its labels, info values, reasons and flow steps.
    fn identity_of(&self, def: &CheckDef) -> Identity {
        let mut labels = vec![
            (Cow::Borrowed(label::CHECK), def.name.to_string()),
            (Cow::Borrowed("type"), def.kind().as_str().to_string()),
        ];
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
            info: [def.target.clone(), def.schedule.to_string()],
            reasons: def.kind().reasons(),
            steps,
        }
    }

    /// Creates a check's counters at 0 and its info series.
    fn register_check(&self, def: &CheckDef) {
        self.store.insert(def.name.clone(), self.identity_of(def));
    }

    /// Applies a reloaded configuration: the series of unchanged checks stay (counters
    /// included), those of removed or changed checks go, new checks start at 0.
    pub fn reconfigure(&self, config: &Config) {
        let checks = regional(config);
        for (name, identity) in self.store.identities() {
            let keep = checks
                .iter()
                .any(|def| def.name == name && self.identity_of(def) == identity);
            if !keep {
                self.store.remove(&name);
            }
        }
        for def in checks.iter().copied() {
            if !self.store.contains(&def.name) {
                self.register_check(def);
            }
        }
        self.checks_configured.set(checks.len() as i64);
    }

    /// Records one check result. Results of checks this registry does not know are ignored.
    pub fn observe(&self, res: &CheckResult) {
        self.store.observe(
            &res.check,
            RunResult::of(res.is_success()),
            res.duration.as_secs_f64(),
            res.reason(),
            |identity| gauges_of(res, &identity.steps),
        );
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
        self.traffic_floor.with_label_values(&[traffic]).set(floor);
        self.traffic_target
            .with_label_values(&[traffic])
            .set(inject);
        if let Some(real) = real {
            self.traffic_real.with_label_values(&[traffic]).set(real);
        }
        self.traffic_prometheus_up
            .with_label_values(&[traffic])
            .set(f64::from(u8::from(prometheus_up)));
    }

    /// Counts one injected request.
    pub fn traffic_request(&self, traffic: &str, result: TrafficResult) {
        self.traffic_requests
            .with_label_values(&[traffic, result.as_str()])
            .inc();
    }

    /// Counts remote-write samples by result.
    pub fn remote_write(&self, remote: &str, result: RemoteResult, samples: usize) {
        self.remote_samples
            .with_label_values(&[remote, result.as_str()])
            .inc_by(samples as u64);
    }

    /// Counts a remote-write request that will be retried.
    pub fn remote_write_retry(&self, remote: &str) {
        self.remote_retries.with_label_values(&[remote]).inc();
    }

    /// Records the remote-write queue length.
    pub fn remote_write_queue(&self, remote: &str, samples: usize) {
        self.remote_queue
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
            Some(Fam::HttpDuration)
        }
    };
    if let Some(fam) = phase_family {
        for (phase, took) in details.phases() {
            gauges.push(Sample::with(fam, "phase", phase, took.as_secs_f64()));
        }
    }
    gauges
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
        gauges.push(Sample {
            fam: Fam::SslLastChainInfo,
            extra: vec![
                ("fingerprint_sha256", leaf.fingerprint_sha256.clone().into()),
                ("subject", leaf.subject.clone().into()),
                ("issuer", leaf.issuer.clone().into()),
                ("subjectalternative", leaf.sans.join(",").into()),
                ("serialnumber", leaf.serial.clone().into()),
            ],
            value: 1.0,
        });
    }
    gauges.push(Sample::with(
        Fam::TlsVersionInfo,
        "version",
        info.version,
        1.0,
    ));
    for (position, cert) in info.chain.iter().enumerate() {
        let extra: store::Extra = vec![
            ("position", position.to_string().into()),
            ("subject", cert.subject.clone().into()),
            ("issuer", cert.issuer.clone().into()),
        ];
        gauges.push(Sample {
            fam: Fam::CertNotBefore,
            extra: extra.clone(),
            value: cert.not_before as f64,
        });
        gauges.push(Sample {
            fam: Fam::CertNotAfter,
            extra,
            value: cert.not_after as f64,
        });
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

/// The agent's own HTTP server (`server::serve`): open connections, and the connections and
/// requests it turned away to stay available.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    open: IntGauge,
    refused: prometheus::IntCounter,
    evicted: prometheus::IntCounter,
    timed_out: prometheus::IntCounter,
    throttled: prometheus::IntCounter,
}

impl HttpMetrics {
    fn register(registry: &Registry) -> HttpMetrics {
        let counter = |name: &str, help: &str| {
            let counter = prometheus::IntCounter::new(name, help).expect("a valid counter");
            registry
                .register(Box::new(counter.clone()))
                .expect("metric names are unique");
            counter
        };
        let open = IntGauge::new(
            "nightjar_http_connections",
            "Connections open to the agent's own server.",
        )
        .expect("a valid gauge");
        registry
            .register(Box::new(open.clone()))
            .expect("metric names are unique");
        HttpMetrics {
            open,
            refused: counter(
                "nightjar_http_connections_refused_total",
                "Connections closed at once because [agent] max_connections were open and none could make room.",
            ),
            evicted: counter(
                "nightjar_http_connections_evicted_total",
                "Connections closed to make room at [agent] max_connections (idle ones first), and /metrics renders that gave their place to another client's scrape.",
            ),
            timed_out: counter(
                "nightjar_http_connections_timed_out_total",
                "Connections closed because a request head, a TLS handshake, a write or a whole response did not complete in time.",
            ),
            throttled: counter(
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
