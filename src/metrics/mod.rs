//! The only place metric names and label sets exist.
//!
//! [`Metrics::observe`] is the single entry point for check results. The blackbox-compatible
//! `probe_*` gauges describe the last run; the `nightjar_*` counters and histogram are the
//! SLI source and exist at 0 from the moment a check is loaded, so `rate()` and ratios work
//! from the first scrape.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::{CheckDef, Config};
use crate::result::{
    CheckResult, Details, DnsDetails, HttpDetails, TcpDetails, TlsDetails, TlsInfo,
};

/// Buckets of `nightjar_scheduler_lag_seconds`: from 100 µs to 10 s.
const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// The agent's metrics registry.
pub struct Metrics {
    registry: Registry,
    /// Per loaded check: its label values and what else it registered.
    checks: RwLock<HashMap<Arc<str>, CheckSeries>>,
    /// The check label names every family carries, after `check` and `type`.
    extra: Vec<String>,
    check_info: IntGaugeVec,
    probe_success: GaugeVec,
    probe_duration: GaugeVec,
    probe_dns_lookup: GaugeVec,
    probe_ip_protocol: GaugeVec,
    http_status_code: GaugeVec,
    http_duration: GaugeVec,
    http_content_length: GaugeVec,
    http_version: GaugeVec,
    http_redirects: GaugeVec,
    http_ssl: GaugeVec,
    failed_due_to_regex: GaugeVec,
    runs: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    skipped: IntCounterVec,
    scheduler_lag: Histogram,
    reload_ok: IntGauge,
    reload_timestamp: prometheus::Gauge,
    checks_configured: IntGauge,
    tls: TlsFamilies,
    dns: DnsFamilies,
    flow_step_duration: GaugeVec,
    flow_step_success: GaugeVec,
    traffic_requests: IntCounterVec,
    traffic_target: GaugeVec,
    traffic_real: GaugeVec,
    traffic_floor: GaugeVec,
    traffic_prometheus_up: GaugeVec,
    remote_samples: IntCounterVec,
    remote_retries: IntCounterVec,
    remote_queue: GaugeVec,

    /// Label sets currently exported per check and per family whose series come and go
    /// with each run (certificate details, versions), so stale ones can be removed.
    dynamic: Mutex<HashMap<(Arc<str>, Family), LabelSets>>,
}

/// The series a check registered when it was loaded.
#[derive(Debug, Clone, PartialEq)]
struct CheckSeries {
    /// Label values: check, type, then the extra labels.
    values: Vec<String>,
    /// The extra values of `nightjar_check_info`: target and schedule.
    info: Vec<String>,
    /// Its kind, for the reasons and phases it has.
    kind: crate::checks::CheckKind,
    /// Flow step names, in order.
    steps: Vec<String>,
}

/// Label value lists, one per series.
type LabelSets = Vec<Vec<String>>;

/// Families whose series depend on what the last run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    SslEarliest,
    SslLastChainExpiry,
    SslLastChainInfo,
    TlsVersionInfo,
    CertNotBefore,
    CertNotAfter,
    ChainValid,
    HostnameMatch,
    Expiry,
    DomainExpiry,
    DnsSerial,
    DnsRcode,
    DnsMinTtl,
    DnsMaxTtl,
    DnsRrsigExpiry,
    DnsSoaServers,
}

struct DnsFamilies {
    duration: GaugeVec,
    answer_rrs: GaugeVec,
    authority_rrs: GaugeVec,
    additional_rrs: GaugeVec,
    serial: GaugeVec,
    rcode: GaugeVec,
    authoritative: GaugeVec,
    min_ttl: GaugeVec,
    max_ttl: GaugeVec,
    rrsig_expiry: GaugeVec,
    soa_serial: GaugeVec,
}

struct TlsFamilies {
    ssl_earliest: GaugeVec,
    ssl_last_chain_expiry: GaugeVec,
    ssl_last_chain_info: GaugeVec,
    tls_version_info: GaugeVec,
    cert_not_before: GaugeVec,
    cert_not_after: GaugeVec,
    chain_valid: GaugeVec,
    hostname_match: GaugeVec,
    tls_duration: GaugeVec,
    tcp_duration: GaugeVec,
    expiry: GaugeVec,
    domain_expiry: GaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("checks", &self.read_checks().len())
            .finish()
    }
}

impl Metrics {
    /// Registers every family for `config` and creates each check's counters at 0. Only
    /// checks that run in the agent's region are registered.
    pub fn new(config: &Config) -> Metrics {
        let mut const_labels: HashMap<String, String> =
            config.agent.labels.clone().into_iter().collect();
        const_labels.insert("region".to_string(), config.agent.region.clone());
        let registry =
            Registry::new_custom(None, Some(const_labels)).expect("agent labels are validated");

        let checks: Vec<&Arc<CheckDef>> = config
            .checks
            .iter()
            .filter(|def| def.runs_in(&config.agent.region))
            .collect();
        // Every family carries the union of the checks' extra label names; a check without
        // one has it empty, which Prometheus treats as absent.
        let extra: BTreeSet<&str> = checks
            .iter()
            .flat_map(|def| def.labels.keys().map(String::as_str))
            .collect();
        let mut base: Vec<&str> = vec!["check", "type"];
        base.extend(extra.iter().copied());
        let with = |more: &[&'static str]| -> Vec<&str> {
            let mut names = base.clone();
            names.extend_from_slice(more);
            names
        };

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

        let probe_success = gauge(
            "probe_success",
            "Whether the last run of the check succeeded (1) or failed (0).",
            &base,
        );
        let probe_duration = gauge(
            "probe_duration_seconds",
            "How long the last run of the check took.",
            &base,
        );
        let probe_dns_lookup = gauge(
            "probe_dns_lookup_time_seconds",
            "Time spent resolving the target's name in the last run.",
            &base,
        );
        let probe_ip_protocol = gauge(
            "probe_ip_protocol",
            "IP protocol version (4 or 6) used in the last run; 0 if no connection was made.",
            &base,
        );
        let http_status_code = gauge(
            "probe_http_status_code",
            "Status code of the last response; 0 if none arrived.",
            &base,
        );
        let http_duration = gauge(
            "probe_http_duration_seconds",
            "Duration of each HTTP phase of the last run, summed over redirects.",
            &with(&["phase"]),
        );
        let http_content_length = gauge(
            "probe_http_content_length",
            "Body bytes received in the last response.",
            &base,
        );
        let http_version = gauge(
            "probe_http_version",
            "HTTP version of the last response.",
            &base,
        );
        let http_redirects = gauge(
            "probe_http_redirects",
            "Redirects followed in the last run.",
            &base,
        );
        let http_ssl = gauge(
            "probe_http_ssl",
            "Whether TLS was used for the final request.",
            &base,
        );
        let failed_due_to_regex = gauge(
            "probe_failed_due_to_regex",
            "Whether the last run failed a body regex expectation.",
            &base,
        );
        let runs = counter(
            "nightjar_check_runs_total",
            "Check runs by result; the availability SLI.",
            &with(&["result"]),
        );
        let failures = counter(
            "nightjar_check_failures_total",
            "Failed check runs by reason.",
            &with(&["reason"]),
        );
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "nightjar_check_duration_seconds",
                "Duration of check runs by result; the latency SLI.",
            )
            .buckets(config.agent.duration_buckets.clone()),
            &with(&["result"]),
        )
        .expect("duration buckets are validated");
        registry
            .register(Box::new(duration.clone()))
            .expect("metric names are unique");
        let skipped = counter(
            "nightjar_check_skipped_runs_total",
            "Runs not started because the previous run of the same check was still in flight.",
            &base,
        );
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

        let tls = TlsFamilies {
            ssl_earliest: gauge(
                "probe_ssl_earliest_cert_expiry",
                "Earliest notAfter (Unix time) among the certificates the server presented.",
                &base,
            ),
            ssl_last_chain_expiry: gauge(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                "Expiry (Unix time) of the presented chain: the earliest notAfter in it.",
                &base,
            ),
            ssl_last_chain_info: gauge(
                "probe_ssl_last_chain_info",
                "The leaf certificate of the presented chain; always 1.",
                &with(&[
                    "fingerprint_sha256",
                    "subject",
                    "issuer",
                    "subjectalternative",
                    "serialnumber",
                ]),
            ),
            tls_version_info: gauge(
                "probe_tls_version_info",
                "The negotiated TLS version; always 1.",
                &with(&["version"]),
            ),
            cert_not_before: gauge(
                "nightjar_tls_cert_not_before_timestamp_seconds",
                "notBefore (Unix time) of each certificate in the presented chain; position 0 is the leaf.",
                &with(&["position", "subject", "issuer"]),
            ),
            cert_not_after: gauge(
                "nightjar_tls_cert_not_after_timestamp_seconds",
                "notAfter (Unix time) of each certificate in the presented chain; position 0 is the leaf.",
                &with(&["position", "subject", "issuer"]),
            ),
            chain_valid: gauge(
                "nightjar_tls_chain_valid",
                "Whether the presented chain validates to the configured roots.",
                &base,
            ),
            hostname_match: gauge(
                "nightjar_tls_hostname_match",
                "Whether the leaf certificate is valid for the server name.",
                &base,
            ),
            tls_duration: gauge(
                "nightjar_tls_duration_seconds",
                "Duration of each phase of the last run of a tls check.",
                &with(&["phase"]),
            ),
            tcp_duration: gauge(
                "nightjar_tcp_duration_seconds",
                "Duration of each phase of the last run of a tcp check.",
                &with(&["phase"]),
            ),
            expiry: gauge(
                "nightjar_expiry_timestamp_seconds",
                "When the first thing the check watches expires (Unix time), by what expires: certificate, domain.",
                &with(&["expires"]),
            ),
            domain_expiry: gauge(
                "nightjar_domain_expiry_timestamp_seconds",
                "When the domain's registration expires (Unix time), from RDAP.",
                &base,
            ),
        };

        let dns = DnsFamilies {
            duration: gauge(
                "probe_dns_duration_seconds",
                "Duration of each phase of the last DNS query: resolve (the server's name), connect (including TLS), request.",
                &with(&["phase"]),
            ),
            answer_rrs: gauge(
                "probe_dns_answer_rrs",
                "Records in the answer section.",
                &base,
            ),
            authority_rrs: gauge(
                "probe_dns_authority_rrs",
                "Records in the authority section.",
                &base,
            ),
            additional_rrs: gauge(
                "probe_dns_additional_rrs",
                "Records in the additional section.",
                &base,
            ),
            serial: gauge(
                "probe_dns_serial",
                "The SOA serial in the answer, if any.",
                &base,
            ),
            rcode: gauge(
                "nightjar_dns_rcode_info",
                "The response code of the last answer; always 1.",
                &with(&["rcode"]),
            ),
            authoritative: gauge(
                "nightjar_dns_authoritative",
                "Whether the last answer had the AA flag.",
                &base,
            ),
            min_ttl: gauge(
                "nightjar_dns_answer_min_ttl_seconds",
                "The smallest TTL among the answers of the queried type.",
                &base,
            ),
            max_ttl: gauge(
                "nightjar_dns_answer_max_ttl_seconds",
                "The largest TTL among the answers of the queried type.",
                &base,
            ),
            rrsig_expiry: gauge(
                "nightjar_dns_rrsig_expiry_timestamp_seconds",
                "The earliest RRSIG expiration (Unix time) among the answers.",
                &base,
            ),
            soa_serial: gauge(
                "nightjar_dns_soa_serial",
                "Consistency mode: the SOA serial each authoritative server gave.",
                &with(&["server"]),
            ),
        };

        let flow_step_duration = gauge(
            "nightjar_flow_step_duration_seconds",
            "Duration of each step of the last run of a flow check; 0 for steps not reached.",
            &with(&["step"]),
        );
        let flow_step_success = gauge(
            "nightjar_flow_step_success",
            "Whether each step of the last run of a flow check passed; 0 for steps not reached.",
            &with(&["step"]),
        );
        let traffic_requests = counter(
            "nightjar_traffic_requests_total",
            "Synthetic requests sent by each injector, by result (success, failure, dropped).",
            &["traffic"]
                .into_iter()
                .chain(["result"])
                .collect::<Vec<_>>(),
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
            &["remote", "result"],
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
        for def in &config.remote_write {
            for result in ["sent", "dropped", "rejected"] {
                remote_samples
                    .with_label_values(&[def.name.as_str(), result])
                    .inc_by(0);
            }
            remote_retries
                .with_label_values(&[def.name.as_str()])
                .inc_by(0);
            remote_queue
                .with_label_values(&[def.name.as_str()])
                .set(0.0);
        }
        for def in &config.traffic {
            for result in ["success", "failure", "dropped"] {
                traffic_requests
                    .with_label_values(&[def.name.as_str(), result])
                    .inc_by(0);
            }
            traffic_floor
                .with_label_values(&[def.name.as_str()])
                .set(def.floor);
        }
        let mut info_labels = base.clone();
        info_labels.extend(["target", "schedule"]);
        let check_info = IntGaugeVec::new(
            Opts::new(
                "nightjar_check_info",
                "Information about each loaded check; always 1.",
            ),
            &info_labels,
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(check_info.clone()))
            .expect("metric names are unique");

        let build_info = IntGaugeVec::new(
            Opts::new(
                "nightjar_build_info",
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
        checks_configured.set(checks.len() as i64);

        let extra: Vec<String> = extra.iter().map(|key| (*key).to_string()).collect();
        let metrics = Metrics {
            registry,
            checks: RwLock::new(HashMap::new()),
            extra,
            check_info,
            probe_success,
            probe_duration,
            probe_dns_lookup,
            probe_ip_protocol,
            http_status_code,
            http_duration,
            http_content_length,
            http_version,
            http_redirects,
            http_ssl,
            failed_due_to_regex,
            runs,
            failures,
            duration,
            skipped,
            scheduler_lag,
            reload_ok,
            reload_timestamp,
            checks_configured,
            tls,
            dns,
            flow_step_duration,
            flow_step_success,
            traffic_requests,
            traffic_target,
            traffic_real,
            traffic_floor,
            traffic_prometheus_up,
            remote_samples,
            remote_retries,
            remote_queue,
            dynamic: Mutex::new(HashMap::new()),
        };
        for def in &checks {
            metrics.register_check(def);
        }
        metrics
    }

    fn read_checks(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, CheckSeries>> {
        self.checks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What `def` registers: its label values, info values, kind and steps.
    fn series_of(&self, def: &CheckDef) -> CheckSeries {
        let mut values: Vec<String> = vec![def.name.to_string(), def.kind().as_str().to_string()];
        values.extend(
            self.extra
                .iter()
                .map(|key| def.labels.get(key).cloned().unwrap_or_default()),
        );
        let steps = match &def.spec {
            crate::checks::CheckSpec::Flow(flow) => {
                flow.steps.iter().map(|step| step.name.clone()).collect()
            }
            _ => Vec::new(),
        };
        CheckSeries {
            values,
            info: vec![def.target.clone(), def.schedule.to_string()],
            kind: def.kind(),
            steps,
        }
    }

    /// Creates a check's counters at 0 and its info series.
    fn register_check(&self, def: &CheckDef) {
        let series = self.series_of(def);
        let refs: Vec<&str> = series.values.iter().map(String::as_str).collect();
        let mut info = refs.clone();
        info.extend(series.info.iter().map(String::as_str));
        self.check_info.with_label_values(&info).set(1);
        for result in ["success", "failure"] {
            let labelled = extend(&refs, result);
            self.runs.with_label_values(&labelled).inc_by(0);
            self.duration.with_label_values(&labelled);
        }
        for reason in def.kind().reasons() {
            self.failures
                .with_label_values(&extend(&refs, reason.as_str()))
                .inc_by(0);
        }
        self.skipped.with_label_values(&refs).inc_by(0);
        self.checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(def.name.clone(), series);
    }

    /// Removes every series of a check.
    fn forget_check(&self, name: &Arc<str>, series: &CheckSeries) {
        let refs: Vec<&str> = series.values.iter().map(String::as_str).collect();
        let base = [
            &self.probe_success,
            &self.probe_duration,
            &self.probe_dns_lookup,
            &self.probe_ip_protocol,
            &self.http_status_code,
            &self.http_content_length,
            &self.http_version,
            &self.http_redirects,
            &self.http_ssl,
            &self.failed_due_to_regex,
            &self.dns.answer_rrs,
            &self.dns.authority_rrs,
            &self.dns.additional_rrs,
            &self.dns.authoritative,
        ];
        for vec in base {
            let _ = vec.remove_label_values(&refs);
        }
        let _ = self.skipped.remove_label_values(&refs);
        let phased: [(&GaugeVec, &[&str]); 4] = [
            (&self.http_duration, &HttpDetails::PHASES),
            (&self.tls.tls_duration, &TlsDetails::PHASES),
            (&self.tls.tcp_duration, &TcpDetails::PHASES),
            (&self.dns.duration, &DnsDetails::PHASES),
        ];
        for (vec, phases) in phased {
            for phase in phases {
                let _ = vec.remove_label_values(&extend(&refs, phase));
            }
        }
        for result in ["success", "failure"] {
            let _ = self.runs.remove_label_values(&extend(&refs, result));
            let _ = self.duration.remove_label_values(&extend(&refs, result));
        }
        for reason in series.kind.reasons() {
            let _ = self
                .failures
                .remove_label_values(&extend(&refs, reason.as_str()));
        }
        for step in &series.steps {
            let _ = self
                .flow_step_duration
                .remove_label_values(&extend(&refs, step));
            let _ = self
                .flow_step_success
                .remove_label_values(&extend(&refs, step));
        }
        let mut info = refs.clone();
        info.extend(series.info.iter().map(String::as_str));
        let _ = self.check_info.remove_label_values(&info);
        let mut dynamic = self
            .dynamic
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let families: Vec<Family> = dynamic
            .keys()
            .filter(|(check, _)| check == name)
            .map(|(_, family)| *family)
            .collect();
        for family in families {
            for labels in dynamic.remove(&(name.clone(), family)).unwrap_or_default() {
                let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                let _ = self.family_vec(family).remove_label_values(&label_refs);
            }
        }
        self.checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name);
    }

    fn family_vec(&self, family: Family) -> &GaugeVec {
        match family {
            Family::SslEarliest => &self.tls.ssl_earliest,
            Family::SslLastChainExpiry => &self.tls.ssl_last_chain_expiry,
            Family::SslLastChainInfo => &self.tls.ssl_last_chain_info,
            Family::TlsVersionInfo => &self.tls.tls_version_info,
            Family::CertNotBefore => &self.tls.cert_not_before,
            Family::CertNotAfter => &self.tls.cert_not_after,
            Family::ChainValid => &self.tls.chain_valid,
            Family::HostnameMatch => &self.tls.hostname_match,
            Family::Expiry => &self.tls.expiry,
            Family::DomainExpiry => &self.tls.domain_expiry,
            Family::DnsSerial => &self.dns.serial,
            Family::DnsRcode => &self.dns.rcode,
            Family::DnsMinTtl => &self.dns.min_ttl,
            Family::DnsMaxTtl => &self.dns.max_ttl,
            Family::DnsRrsigExpiry => &self.dns.rrsig_expiry,
            Family::DnsSoaServers => &self.dns.soa_serial,
        }
    }

    /// Applies a reloaded configuration: the series of unchanged checks stay (counters
    /// included), those of removed or changed checks go, new checks start at 0. Fails, changing
    /// nothing, when the set of label names would change: that needs a restart.
    pub fn reconfigure(&self, config: &Config) -> Result<(), String> {
        let checks: Vec<&Arc<CheckDef>> = config
            .checks
            .iter()
            .filter(|def| def.runs_in(&config.agent.region))
            .collect();
        let extra: BTreeSet<&str> = checks
            .iter()
            .flat_map(|def| def.labels.keys().map(String::as_str))
            .collect();
        let extra: Vec<String> = extra.into_iter().map(str::to_string).collect();
        if extra != self.extra {
            return Err(format!(
                "the check label names change from [{}] to [{}]; restart the agent to apply that",
                self.extra.join(", "),
                extra.join(", ")
            ));
        }
        let current: Vec<(Arc<str>, CheckSeries)> = self
            .read_checks()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, series) in &current {
            let keep = checks
                .iter()
                .any(|def| &def.name == name && self.series_of(def) == *series);
            if !keep {
                self.forget_check(name, series);
            }
        }
        for def in checks.iter().copied() {
            if !self.read_checks().contains_key(&def.name) {
                self.register_check(def);
            }
        }
        self.checks_configured.set(checks.len() as i64);
        Ok(())
    }

    /// Records one check result. Results of checks this registry does not know are ignored.
    pub fn observe(&self, res: &CheckResult) {
        let Some(series) = self.read_checks().get(&res.check).cloned() else {
            return;
        };
        let values = &series.values;
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let result = if res.is_success() {
            "success"
        } else {
            "failure"
        };
        let seconds = res.duration.as_secs_f64();

        self.probe_success
            .with_label_values(&refs)
            .set(if res.is_success() { 1.0 } else { 0.0 });
        self.probe_duration.with_label_values(&refs).set(seconds);
        self.runs.with_label_values(&extend(&refs, result)).inc();
        self.duration
            .with_label_values(&extend(&refs, result))
            .observe(seconds);
        if let Some(reason) = res.reason() {
            self.failures
                .with_label_values(&extend(&refs, reason.as_str()))
                .inc();
        }

        self.observe_tls(&res.check, &refs, res.details.tls_info());
        self.observe_expiry(&res.check, &refs, &res.details);
        match &res.details {
            Details::None => {}
            Details::Dns(dns) => self.observe_dns(&res.check, &refs, dns),
            Details::Flow(flow) => {
                for name in &series.steps {
                    let ran = flow.steps.iter().find(|step| &step.name == name);
                    let labels = extend(&refs, name);
                    self.flow_step_duration
                        .with_label_values(&labels)
                        .set(ran.map_or(0.0, |step| step.duration.as_secs_f64()));
                    self.flow_step_success
                        .with_label_values(&labels)
                        .set(f64::from(u8::from(ran.is_some_and(|step| step.success))));
                }
            }
            Details::Domain(domain) => {
                set_phases(&self.http_duration, &refs, &domain.http.phases())
            }
            Details::Tcp(tcp) => {
                self.set_connection(&refs, tcp.resolve, tcp.remote_addr);
                set_phases(&self.tls.tcp_duration, &refs, &tcp.phases());
            }
            Details::Tls(tls) => {
                self.set_connection(&refs, tls.resolve, tls.remote_addr);
                set_phases(&self.tls.tls_duration, &refs, &tls.phases());
            }
            Details::Http(http) => {
                self.set_connection(&refs, http.resolve, http.remote_addr);
                set_phases(&self.http_duration, &refs, &http.phases());
                self.http_status_code
                    .with_label_values(&refs)
                    .set(f64::from(http.status_code.unwrap_or(0)));
                self.http_content_length
                    .with_label_values(&refs)
                    .set(http.content_length.map_or(-1.0, |n| n as f64));
                self.http_version
                    .with_label_values(&refs)
                    .set(http.http_version.unwrap_or(0.0));
                self.http_redirects
                    .with_label_values(&refs)
                    .set(f64::from(http.redirects));
                self.http_ssl
                    .with_label_values(&refs)
                    .set(if http.tls_used { 1.0 } else { 0.0 });
                self.failed_due_to_regex
                    .with_label_values(&refs)
                    .set(if http.failed_due_to_regex { 1.0 } else { 0.0 });
            }
        }
    }

    /// Sets the certificate and TLS series from what the run saw, and removes the ones it no
    /// longer sees (a renewed certificate, or a run that failed before the handshake).
    fn observe_tls(&self, check: &Arc<str>, base: &[&str], info: Option<&TlsInfo>) {
        let owned = |extra: &[&str]| -> Vec<String> {
            base.iter()
                .chain(extra)
                .map(|value| (*value).to_string())
                .collect()
        };
        let mut earliest = Vec::new();
        let mut chain_info = Vec::new();
        let mut version = Vec::new();
        let mut not_before = Vec::new();
        let mut not_after = Vec::new();
        let mut chain_valid = Vec::new();
        let mut hostname_match = Vec::new();
        if let Some(info) = info {
            if let Some(first) = info.earliest_expiry() {
                earliest.push((owned(&[]), first as f64));
            }
            if let Some(leaf) = info.chain.first() {
                let sans = leaf.sans.join(",");
                chain_info.push((
                    owned(&[
                        &leaf.fingerprint_sha256,
                        &leaf.subject,
                        &leaf.issuer,
                        &sans,
                        &leaf.serial,
                    ]),
                    1.0,
                ));
            }
            version.push((owned(&[info.version]), 1.0));
            for (position, cert) in info.chain.iter().enumerate() {
                let position = position.to_string();
                let labels = owned(&[&position, &cert.subject, &cert.issuer]);
                not_before.push((labels.clone(), cert.not_before as f64));
                not_after.push((labels, cert.not_after as f64));
            }
            chain_valid.push((owned(&[]), f64::from(u8::from(info.chain_valid))));
            hostname_match.push((owned(&[]), f64::from(u8::from(info.hostname_match))));
        }
        let tls = &self.tls;
        self.replace(
            check,
            Family::SslEarliest,
            &tls.ssl_earliest,
            earliest.clone(),
        );
        self.replace(
            check,
            Family::SslLastChainExpiry,
            &tls.ssl_last_chain_expiry,
            earliest,
        );
        self.replace(
            check,
            Family::SslLastChainInfo,
            &tls.ssl_last_chain_info,
            chain_info,
        );
        self.replace(
            check,
            Family::TlsVersionInfo,
            &tls.tls_version_info,
            version,
        );
        self.replace(
            check,
            Family::CertNotBefore,
            &tls.cert_not_before,
            not_before,
        );
        self.replace(check, Family::CertNotAfter, &tls.cert_not_after, not_after);
        self.replace(check, Family::ChainValid, &tls.chain_valid, chain_valid);
        self.replace(
            check,
            Family::HostnameMatch,
            &tls.hostname_match,
            hostname_match,
        );
    }

    /// Sets `nightjar_expiry_timestamp_seconds` from everything the run saw expire, and the
    /// domain series.
    fn observe_expiry(&self, check: &Arc<str>, base: &[&str], details: &Details) {
        let owned = |extra: &[&str]| -> Vec<String> {
            base.iter()
                .chain(extra)
                .map(|value| (*value).to_string())
                .collect()
        };
        let mut expiry = Vec::new();
        if let Some(first) = details.tls_info().and_then(TlsInfo::earliest_expiry) {
            expiry.push((owned(&["certificate"]), first as f64));
        }
        if let Details::Dns(dns) = details
            && let Some(at) = dns.earliest_rrsig
        {
            expiry.push((owned(&["dnssec_signature"]), at as f64));
        }
        let mut domain = Vec::new();
        if let Details::Domain(found) = details
            && let Some(at) = found.expiry
        {
            expiry.push((owned(&["domain"]), at as f64));
            domain.push((owned(&[]), at as f64));
        }
        self.replace(check, Family::Expiry, &self.tls.expiry, expiry);
        self.replace(check, Family::DomainExpiry, &self.tls.domain_expiry, domain);
    }

    fn observe_dns(&self, check: &Arc<str>, base: &[&str], dns: &DnsDetails) {
        let owned = |extra: &[&str]| -> Vec<String> {
            base.iter()
                .chain(extra)
                .map(|value| (*value).to_string())
                .collect()
        };
        let families = &self.dns;
        self.probe_dns_lookup
            .with_label_values(base)
            .set(dns.resolve.as_secs_f64());
        set_phases(&families.duration, base, &dns.phases());
        families
            .answer_rrs
            .with_label_values(base)
            .set(dns.answer_rrs as f64);
        families
            .authority_rrs
            .with_label_values(base)
            .set(dns.authority_rrs as f64);
        families
            .additional_rrs
            .with_label_values(base)
            .set(dns.additional_rrs as f64);
        families
            .authoritative
            .with_label_values(base)
            .set(f64::from(u8::from(dns.authoritative)));
        let one = |value: Option<f64>| {
            value
                .map(|v| (owned(&[]), v))
                .into_iter()
                .collect::<Vec<_>>()
        };
        self.replace(
            check,
            Family::DnsSerial,
            &families.serial,
            one(dns.soa_serial.map(f64::from)),
        );
        let rcode = dns.rcode.iter().map(|code| (owned(&[code]), 1.0)).collect();
        self.replace(check, Family::DnsRcode, &families.rcode, rcode);
        let ttl = dns.ttl_range();
        self.replace(
            check,
            Family::DnsMinTtl,
            &families.min_ttl,
            one(ttl.map(|(min, _)| f64::from(min))),
        );
        self.replace(
            check,
            Family::DnsMaxTtl,
            &families.max_ttl,
            one(ttl.map(|(_, max)| f64::from(max))),
        );
        self.replace(
            check,
            Family::DnsRrsigExpiry,
            &families.rrsig_expiry,
            one(dns.earliest_rrsig.map(|at| at as f64)),
        );
        let servers = dns
            .soa_servers
            .iter()
            .filter_map(|server| {
                server
                    .serial
                    .map(|serial| (owned(&[&server.server]), f64::from(serial)))
            })
            .collect();
        self.replace(check, Family::DnsSoaServers, &families.soa_serial, servers);
    }

    /// The blackbox connection gauges: resolve time and the IP version connected over.
    fn set_connection(
        &self,
        refs: &[&str],
        resolve: Duration,
        remote: Option<std::net::SocketAddr>,
    ) {
        self.probe_dns_lookup
            .with_label_values(refs)
            .set(resolve.as_secs_f64());
        self.probe_ip_protocol
            .with_label_values(refs)
            .set(ip_protocol(remote));
    }

    /// Makes `series` the exact set of this check's series in `vec`: sets the new ones, then
    /// removes those of the previous run that are not among them (never a gap in between).
    fn replace(
        &self,
        check: &Arc<str>,
        family: Family,
        vec: &GaugeVec,
        series: Vec<(Vec<String>, f64)>,
    ) {
        for (labels, value) in &series {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            vec.with_label_values(&refs).set(*value);
        }
        let current: Vec<Vec<String>> = series.into_iter().map(|(labels, _)| labels).collect();
        let mut dynamic = self
            .dynamic
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = dynamic
            .insert((check.clone(), family), current.clone())
            .unwrap_or_default();
        for labels in previous.iter().filter(|labels| !current.contains(labels)) {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            let _ = vec.remove_label_values(&refs);
        }
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
    pub fn traffic_request(&self, traffic: &str, result: &str) {
        self.traffic_requests
            .with_label_values(&[traffic, result])
            .inc();
    }

    /// Counts remote-write samples by result.
    pub fn remote_write(&self, remote: &str, result: &str, samples: usize) {
        self.remote_samples
            .with_label_values(&[remote, result])
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
        self.registry.gather()
    }

    /// Records how late a run started.
    pub fn observe_lag(&self, lag: Duration) {
        self.scheduler_lag.observe(lag.as_secs_f64());
    }

    /// Counts a run skipped because the previous one was still in flight.
    pub fn skipped(&self, check: &str) {
        if let Some(series) = self.read_checks().get(check).cloned() {
            let values = &series.values;
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            self.skipped.with_label_values(&refs).inc();
        }
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

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut buffer = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&families, &mut buffer)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

/// Sets a `{phase}` gauge family from a check's phase timings.
fn set_phases(vec: &GaugeVec, refs: &[&str], phases: &[(&'static str, Duration)]) {
    for (phase, took) in phases {
        vec.with_label_values(&extend(refs, phase))
            .set(took.as_secs_f64());
    }
}

fn ip_protocol(remote: Option<std::net::SocketAddr>) -> f64 {
    match remote {
        Some(addr) if addr.is_ipv4() => 4.0,
        Some(_) => 6.0,
        None => 0.0,
    }
}

fn extend<'a>(base: &[&'a str], last: &'a str) -> Vec<&'a str> {
    let mut values = Vec::with_capacity(base.len() + 1);
    values.extend_from_slice(base);
    values.push(last);
    values
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
