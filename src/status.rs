//! The latest result of every check, its state history, and the serialisable views the JSON
//! API and `nightjar check --format json` print.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{CheckDef, Config};
use crate::result::{CheckResult, Details, Status};

/// How many past results each check keeps for the history strip.
const HISTORY: usize = 30;

/// The latest result per check.
#[derive(Debug)]
pub struct StatusStore {
    region: String,
    checks: RwLock<BTreeMap<Arc<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    def: Arc<CheckDef>,
    last: Option<CheckResult>,
    since: Option<SystemTime>,
    history: VecDeque<(bool, f64)>,
}

/// A change of a check's state, for logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The first result, passing.
    FirstPass,
    /// The first result, failing.
    FirstFail,
    /// It was failing and now passes.
    Recovered,
    /// It was passing and now fails.
    Failed,
    /// Same state as before.
    Unchanged,
}

impl StatusStore {
    /// A store holding every check of `config` that runs in the agent's region, not yet run.
    pub fn new(config: &Config) -> StatusStore {
        let checks = config
            .checks
            .iter()
            .filter(|def| def.runs_in(&config.agent.region))
            .map(|def| {
                (
                    def.name.clone(),
                    Entry {
                        def: def.clone(),
                        last: None,
                        since: None,
                        history: VecDeque::new(),
                    },
                )
            })
            .collect();
        StatusStore {
            region: config.agent.region.clone(),
            checks: RwLock::new(checks),
        }
    }

    /// Stores a result and says whether the check changed state.
    pub fn update(&self, res: CheckResult) -> Transition {
        let mut checks = self
            .checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(entry) = checks.get_mut(&res.check) else {
            return Transition::Unchanged;
        };
        let now_ok = res.is_success();
        let transition = match entry.last.as_ref().map(CheckResult::is_success) {
            None if now_ok => Transition::FirstPass,
            None => Transition::FirstFail,
            Some(false) if now_ok => Transition::Recovered,
            Some(true) if !now_ok => Transition::Failed,
            Some(_) => Transition::Unchanged,
        };
        if transition != Transition::Unchanged {
            entry.since = Some(res.started_at);
        }
        if entry.history.len() == HISTORY {
            entry.history.pop_front();
        }
        entry
            .history
            .push_back((now_ok, res.duration.as_secs_f64()));
        entry.last = Some(res);
        transition
    }

    /// Views of every check, in name order.
    pub fn views(&self) -> Vec<CheckView> {
        let checks = self
            .checks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checks
            .values()
            .map(|entry| {
                CheckView::new(&entry.def, entry.last.as_ref(), entry.since, &entry.history)
            })
            .collect()
    }

    /// The agent's region.
    pub fn region(&self) -> &str {
        &self.region
    }
}

/// One check as the JSON API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    /// The check's name.
    pub name: String,
    /// The check's type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The target, without credentials or query string.
    pub target: String,
    /// `passing`, `failing` or `unknown` (not run yet).
    pub state: &'static str,
    /// When the check entered its current state (RFC 3339).
    pub since: Option<String>,
    /// The check's schedule, e.g. "every 30s".
    pub schedule: String,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// The last run, if any.
    pub last_run: Option<RunView>,
    /// Recent results, oldest first.
    pub history: Vec<HistoryPoint>,
}

/// One past result in the history strip.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    /// Whether the run passed.
    pub success: bool,
    /// How long it took, in seconds.
    pub duration_seconds: f64,
}

/// One run as the JSON API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took, in seconds.
    pub duration_seconds: f64,
    /// Whether it passed.
    pub success: bool,
    /// The failure reason, if it failed.
    pub reason: Option<&'static str>,
    /// The failure detail, secrets redacted.
    pub detail: Option<String>,
    /// Phase timings in seconds (HTTP: resolve, connect, tls, processing, transfer).
    pub phases: BTreeMap<&'static str, f64>,
    /// HTTP status code of the last response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// HTTP version of the last response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_version: Option<f64>,
    /// Redirects followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirects: Option<u32>,
    /// Body bytes received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    /// TLS version of the last hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<&'static str>,
}

impl CheckView {
    /// The view of a check and its last result.
    pub fn new(
        def: &CheckDef,
        last: Option<&CheckResult>,
        since: Option<SystemTime>,
        history: &VecDeque<(bool, f64)>,
    ) -> CheckView {
        let state = match last {
            None => "unknown",
            Some(res) if res.is_success() => "passing",
            Some(_) => "failing",
        };
        CheckView {
            name: def.name.to_string(),
            kind: def.kind().as_str(),
            target: def.target.clone(),
            state,
            since: since.map(rfc3339),
            schedule: def.schedule.to_string(),
            labels: def.labels.clone(),
            last_run: last.map(RunView::new),
            history: history
                .iter()
                .map(|(success, duration_seconds)| HistoryPoint {
                    success: *success,
                    duration_seconds: *duration_seconds,
                })
                .collect(),
        }
    }
}

impl RunView {
    /// The view of one result.
    pub fn new(res: &CheckResult) -> RunView {
        let (reason, detail) = match &res.status {
            Status::Pass => (None, None),
            Status::Fail { reason, detail } => (Some(reason.as_str()), Some(detail.clone())),
        };
        let mut view = RunView {
            started_at: rfc3339(res.started_at),
            duration_seconds: res.duration.as_secs_f64(),
            success: res.is_success(),
            reason,
            detail,
            phases: BTreeMap::new(),
            status_code: None,
            http_version: None,
            redirects: None,
            content_length: None,
            tls_version: None,
        };
        match &res.details {
            Details::None => {}
            Details::Http(http) => {
                for (phase, took) in http.phases() {
                    view.phases.insert(phase, took.as_secs_f64());
                }
                view.status_code = http.status_code;
                view.http_version = http.http_version;
                view.redirects = Some(http.redirects);
                view.content_length = http.content_length;
                view.tls_version = http.tls_version;
            }
        }
        view
    }
}

/// RFC 3339 in UTC with milliseconds.
pub fn rfc3339(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
