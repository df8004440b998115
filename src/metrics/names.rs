//! Metric names, label names and bounded label values that code outside `metrics/` refers to
//! (the rule generator's PromQL, config messages). `metrics/` defines its families with these
//! constants, so each name is spelled once.
//!
//! A leaf: it imports nothing from the crate, so `config` can refuse [`RESERVED_LABELS`] as
//! user labels without importing the registry (which reads the configuration).

/// `nightjar_check_runs_total`: check runs by result, the availability SLI.
pub const CHECK_RUNS: &str = "nightjar_check_runs_total";
/// `nightjar_check_duration_seconds`: the histogram of check runs by result, the latency SLI.
pub const CHECK_DURATION: &str = "nightjar_check_duration_seconds";
/// `probe_success`: whether the last run of a check succeeded.
pub const PROBE_SUCCESS: &str = "probe_success";
/// `nightjar_expiry_timestamp_seconds`: when the first thing a check watches expires, by
/// [`label::EXPIRES`].
pub const EXPIRY_TIMESTAMP: &str = "nightjar_expiry_timestamp_seconds";
/// `nightjar_build_info`: the running agent's version; always 1.
pub const BUILD_INFO: &str = "nightjar_build_info";
/// `nightjar_check_state`: the check's decided state, one series per [`CheckState`], 1 for
/// the current one.
pub const CHECK_STATE: &str = "nightjar_check_state";
/// `nightjar_check_consecutive_failures`: failed runs in a row, retries included.
pub const CONSECUTIVE_FAILURES: &str = "nightjar_check_consecutive_failures";
/// `nightjar_check_maintenance`: 1 while a maintenance window covers the check.
pub const CHECK_MAINTENANCE: &str = "nightjar_check_maintenance";
/// `nightjar_check_retry_runs_total`: runs taken `retry_interval` after a result that left a
/// change unconfirmed, by result; kept out of [`CHECK_RUNS`] so the SLI stays a sample of the
/// schedule.
pub const CHECK_RETRY_RUNS: &str = "nightjar_check_retry_runs_total";
/// `nightjar_check_maintenance_runs_total`: the scheduled runs (counted in [`CHECK_RUNS`]
/// too) taken while a maintenance window covered the check, by result.
pub const CHECK_MAINTENANCE_RUNS: &str = "nightjar_check_maintenance_runs_total";
/// `nightjar_check_maintenance_duration_seconds`: the histogram of those runs, by result,
/// for latency SLIs with `exclude_maintenance`.
pub const CHECK_MAINTENANCE_DURATION: &str = "nightjar_check_maintenance_duration_seconds";
/// `nightjar_discovery_targets`: the targets a template's discovery source gives now, by
/// [`label::CHECK`] and [`label::SOURCE`].
pub const DISCOVERY_TARGETS: &str = "nightjar_discovery_targets";
/// `nightjar_discovery_failures_total`: failed refreshes of a discovery source.
pub const DISCOVERY_FAILURES: &str = "nightjar_discovery_failures_total";
/// `nightjar_discovery_last_success_timestamp_seconds`: when a discovery source was last
/// read whole.
pub const DISCOVERY_LAST_SUCCESS: &str = "nightjar_discovery_last_success_timestamp_seconds";

/// Label names.
pub mod label {
    /// The check's name, on every per-check series.
    pub const CHECK: &str = "check";
    /// The agent's region, on every series.
    pub const REGION: &str = "region";
    /// What became of a run, request or sample: [`RunResult`](super::RunResult),
    /// [`TrafficResult`](super::TrafficResult), [`RemoteResult`](super::RemoteResult).
    pub const RESULT: &str = "result";
    /// A histogram bucket's upper bound.
    pub const LE: &str = "le";
    /// What expires, on [`EXPIRY_TIMESTAMP`](super::EXPIRY_TIMESTAMP).
    pub const EXPIRES: &str = "expires";
    /// A check's state, on [`CHECK_STATE`](super::CHECK_STATE).
    pub const STATE: &str = "state";
    /// A template's target, on every series of its checks.
    pub const INSTANCE: &str = "instance";
    /// A discovery source as `discovery::Source::describe` shows it.
    pub const SOURCE: &str = "source";
}

/// A check's state as shown: the value of [`label::STATE`], and `state` in the API
/// (`status::State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// Its runs pass (confirmed).
    Passing,
    /// Its runs fail (confirmed).
    Failing,
    /// Nothing decided yet.
    Unknown,
    /// A maintenance window covers it.
    Maintenance,
}

impl CheckState {
    /// Every state.
    pub const ALL: [CheckState; 4] = [
        CheckState::Passing,
        CheckState::Failing,
        CheckState::Unknown,
        CheckState::Maintenance,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckState::Passing => "passing",
            CheckState::Failing => "failing",
            CheckState::Unknown => "unknown",
            CheckState::Maintenance => "maintenance",
        }
    }
}

/// The result of a check run: the value of [`label::RESULT`] on its runs and durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// A passing run.
    Success,
    /// A failing run.
    Failure,
}

impl RunResult {
    /// Every result, in the order a check's series are written (the index of each is
    /// `result as usize`).
    pub const ALL: [RunResult; 2] = [RunResult::Success, RunResult::Failure];

    /// The result of a run that passed (`success`) or not.
    pub const fn of(success: bool) -> RunResult {
        if success {
            RunResult::Success
        } else {
            RunResult::Failure
        }
    }

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
        }
    }
}

/// [`RunResult`]'s label values as constants, for the rule generator's PromQL.
pub mod result {
    use super::RunResult;

    /// A passing run.
    pub const SUCCESS: &str = RunResult::Success.as_str();
    /// A failing run.
    pub const FAILURE: &str = RunResult::Failure.as_str();
}

/// What became of an injector's request: the value of [`label::RESULT`] on
/// `nightjar_traffic_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficResult {
    /// Sent, and the response met the request's expectations.
    Success,
    /// Sent, and it failed.
    Failure,
    /// Not sent: as many of the injector's requests as it allows were in flight.
    Dropped,
}

impl TrafficResult {
    /// Every result.
    pub const ALL: [TrafficResult; 3] = [
        TrafficResult::Success,
        TrafficResult::Failure,
        TrafficResult::Dropped,
    ];

    /// The result of a request that was sent and passed (`success`) or not.
    pub const fn of(success: bool) -> TrafficResult {
        if success {
            TrafficResult::Success
        } else {
            TrafficResult::Failure
        }
    }

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TrafficResult::Success => RunResult::Success.as_str(),
            TrafficResult::Failure => RunResult::Failure.as_str(),
            TrafficResult::Dropped => "dropped",
        }
    }
}

/// What became of remote-write samples: the value of [`label::RESULT`] on
/// `nightjar_remote_write_samples_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteResult {
    /// Accepted by the endpoint.
    Sent,
    /// Dropped from a full queue.
    Dropped,
    /// Refused by the endpoint (4xx), not retried.
    Rejected,
}

impl RemoteResult {
    /// Every result.
    pub const ALL: [RemoteResult; 3] = [
        RemoteResult::Sent,
        RemoteResult::Dropped,
        RemoteResult::Rejected,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RemoteResult::Sent => "sent",
            RemoteResult::Dropped => TrafficResult::Dropped.as_str(),
            RemoteResult::Rejected => "rejected",
        }
    }
}

/// Values of [`label::EXPIRES`].
pub mod expires {
    /// The earliest certificate of the presented chain.
    pub const CERTIFICATE: &str = "certificate";
    /// The earliest RRSIG of a DNS answer.
    pub const DNSSEC_SIGNATURE: &str = "dnssec_signature";
    /// The domain's registration, from RDAP.
    pub const DOMAIN: &str = "domain";
}

/// Every label name nightjar writes on a series itself. A check's `labels` or the
/// `[agent] labels` may not use one: the series would carry the name twice, which Prometheus
/// refuses for the whole scrape. Names starting with `__` are Prometheus's own
/// ([`is_reserved_label`]). `tests/it/labels.rs` renders every family and fails if a label name is
/// missing here.
pub const RESERVED_LABELS: &[&str] = &[
    // Every per-check series.
    label::CHECK,
    "type",
    // Every series: the agent's region.
    label::REGION,
    // nightjar_check_info.
    "target",
    "schedule",
    // Runs, failures, duration buckets, the agent's own counters.
    label::RESULT,
    "reason",
    label::LE,
    // Phase timings, flow steps, expiry, DNS.
    "phase",
    "step",
    label::EXPIRES,
    label::STATE,
    "rcode",
    "server",
    // Certificates and TLS.
    "position",
    "subject",
    "issuer",
    "version",
    "fingerprint_sha256",
    "subjectalternative",
    "serialnumber",
    // The blackbox exporter's gRPC health label, so dashboards shared with it never meet a
    // check label of that name.
    "serving_status",
    // Injectors and remote-write endpoints.
    "traffic",
    "remote",
    // Remote write: the agent's name and the metric name.
    "agent",
    "__name__",
    // Added by Prometheus at scrape time.
    "job",
    label::INSTANCE,
    // `/probe` requests: the module asked for.
    "module",
    // Discovery sources.
    label::SOURCE,
];

/// Whether a user label may not be called `name`: nightjar writes it itself, or it starts
/// with `__` (reserved to Prometheus).
pub fn is_reserved_label(name: &str) -> bool {
    name.starts_with("__") || RESERVED_LABELS.contains(&name)
}
