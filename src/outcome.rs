//! What the scheduler hands on for every run: the result, how the run was taken (on the
//! schedule or as a retry, in a maintenance window or not), and the check's state after it.

use crate::detect::{Change, Tracker};
use crate::maintenance::Open;
use crate::result::CheckResult;

/// One finished run of a scheduled check.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run's result.
    pub result: CheckResult,
    /// Whether the run was an extra one, `retry_interval` after a result that left a change
    /// unconfirmed, rather than one on the check's schedule. Retries do not feed the SLI
    /// counters: they are taken because something failed, so counting them would over-sample
    /// failures.
    pub retry: bool,
    /// The maintenance window open when the run started (`mode = "mark"`).
    pub maintenance: Option<Open>,
    /// The check's state after this result.
    pub tracker: Tracker,
    /// What this result did to the state.
    pub change: Change,
    /// The revision of the definition that ran (`CheckDef::revision`): an outcome of a
    /// definition a reload has replaced is not counted for the new one.
    pub revision: u64,
}
