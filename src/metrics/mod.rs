//! The only place metric names and label sets exist.
//!
//! [`Metrics::observe`] is the single entry point for check results. The blackbox-compatible
//! `probe_*` gauges describe the last run; the `nightjar_*` counters and histogram are the
//! SLI source and exist at 0 from the moment a check is loaded, so `rate()` and ratios work
//! from the first scrape.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::{CheckDef, Config};
use crate::result::{CheckResult, Details};

/// Buckets of `nightjar_scheduler_lag_seconds`: from 100 µs to 10 s.
const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// The agent's metrics registry.
pub struct Metrics {
    registry: Registry,
    /// Label values (check, type, then the check's extra labels) per check.
    checks: HashMap<Arc<str>, Vec<String>>,
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
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("checks", &self.checks.len())
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

        let mut values_by_check = HashMap::new();
        for def in &checks {
            let mut values: Vec<String> =
                vec![def.name.to_string(), def.kind().as_str().to_string()];
            values.extend(
                extra
                    .iter()
                    .map(|key| def.labels.get(*key).cloned().unwrap_or_default()),
            );
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();

            let mut info = refs.clone();
            let schedule = def.schedule.to_string();
            info.extend([def.target.as_str(), schedule.as_str()]);
            check_info.with_label_values(&info).set(1);

            for result in ["success", "failure"] {
                let labelled = extend(&refs, result);
                runs.with_label_values(&labelled).inc_by(0);
                duration.with_label_values(&labelled);
            }
            for reason in def.kind().reasons() {
                failures
                    .with_label_values(&extend(&refs, reason.as_str()))
                    .inc_by(0);
            }
            skipped.with_label_values(&refs).inc_by(0);
            values_by_check.insert(def.name.clone(), values);
        }

        Metrics {
            registry,
            checks: values_by_check,
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
        }
    }

    /// Records one check result. Results of checks this registry does not know are ignored.
    pub fn observe(&self, res: &CheckResult) {
        let Some(values) = self.checks.get(&res.check) else {
            return;
        };
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

        match &res.details {
            Details::None => {}
            Details::Http(http) => {
                self.probe_dns_lookup
                    .with_label_values(&refs)
                    .set(http.resolve.as_secs_f64());
                let ip_protocol = match http.remote_addr {
                    Some(addr) if addr.is_ipv4() => 4.0,
                    Some(_) => 6.0,
                    None => 0.0,
                };
                self.probe_ip_protocol
                    .with_label_values(&refs)
                    .set(ip_protocol);
                for (phase, took) in http.phases() {
                    self.http_duration
                        .with_label_values(&extend(&refs, phase))
                        .set(took.as_secs_f64());
                }
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

    /// Records how late a run started.
    pub fn observe_lag(&self, lag: Duration) {
        self.scheduler_lag.observe(lag.as_secs_f64());
    }

    /// Counts a run skipped because the previous one was still in flight.
    pub fn skipped(&self, check: &str) {
        if let Some(values) = self.checks.get(check) {
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
