//! Metric names, label names and bounded label values that code outside `metrics/` refers to
//! (the rule generator's PromQL, config messages). `metrics/` defines its families with these
//! constants, so each name is spelled once.

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

/// Label names.
pub mod label {
    /// The check's name, on every per-check series.
    pub const CHECK: &str = "check";
    /// The agent's region, on every series.
    pub const REGION: &str = "region";
    /// `success` or `failure` on runs and durations.
    pub const RESULT: &str = "result";
    /// A histogram bucket's upper bound.
    pub const LE: &str = "le";
    /// What expires, on [`EXPIRY_TIMESTAMP`](super::EXPIRY_TIMESTAMP).
    pub const EXPIRES: &str = "expires";
}

/// Values of [`label::RESULT`] on a check's runs and durations.
pub mod result {
    /// A passing run.
    pub const SUCCESS: &str = "success";
    /// A failing run.
    pub const FAILURE: &str = "failure";
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
