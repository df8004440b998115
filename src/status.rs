//! The latest result of every check, its state history, and the serialisable views the JSON
//! API and `nightjar check --format json` print.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{CheckDef, Config};
use crate::detect::{Change, Confirm, Pending, Tracker, Verdict};
use crate::maintenance::{Mode, Open};
use crate::outcome::Outcome;
use crate::result::{
    CheckResult, Details, DnsDetails, DomainDetails, Expiring, Failure, Status, StepResult, TlsInfo,
};
use crate::state::SavedCheck;
use crate::time::{days_left, from_unix, rfc3339, unix_secs};

/// How many past results each check keeps for the history strip.
const HISTORY: usize = 30;

/// The most checks a request for an unknown one is compared with for a "did you mean": each
/// costs an edit distance, so a client asking for names that do not exist (or one waiting
/// for a discovered target to appear) never costs a 50,000-check agent milliseconds a
/// request.
const MAX_SUGGESTED_AMONG: usize = 2_000;

/// The latest result per check.
#[derive(Debug)]
pub struct StatusStore {
    region: String,
    /// `[rules]` expiry lead times: the page marks what expires within them.
    expiry: RwLock<(Duration, Duration)>,
    /// By name, hashed: a result's lookup among 50,000 names with long shared prefixes (a
    /// template's targets) costs one hash, not a tree walk of string comparisons.
    checks: RwLock<std::collections::HashMap<Arc<str>, Entry>>,
    /// Bumped on every change, so the state file knows it has something to write.
    generation: std::sync::atomic::AtomicU64,
    /// Saved states of template targets not discovered yet (the state dir's, at start): each
    /// is restored when its check appears, and stays in the state file meanwhile.
    awaiting: std::sync::Mutex<BTreeMap<String, SavedCheck>>,
}

#[derive(Debug)]
struct Entry {
    def: Arc<CheckDef>,
    /// Boxed: a result is most of an entry's size, and the map's free slots should not be.
    last: Option<Box<CheckResult>>,
    /// When the decided state last changed.
    since: Option<SystemTime>,
    /// The decided state, the change being confirmed, and failures in a row.
    tracker: Tracker,
    /// The maintenance window covering the check now.
    maintenance: Option<Open>,
    /// The last [`HISTORY`] results.
    history: History,
}

/// A check's last [`HISTORY`] results, oldest first: success and duration in microseconds,
/// packed in 32 bits (the success bit over 31 bits of duration, saturating at 35 minutes).
/// Allocated in full up front, so memory does not creep up as it fills.
#[derive(Debug)]
struct History(VecDeque<u32>);

impl History {
    const SUCCESS: u32 = 1 << 31;

    fn new() -> History {
        History(VecDeque::with_capacity(HISTORY))
    }

    /// The last [`HISTORY`] of `results` (success, microseconds), oldest first.
    fn of(results: impl IntoIterator<Item = (bool, u32)>) -> History {
        let mut history = History::new();
        for (success, micros) in results {
            history.push(success, micros);
        }
        history
    }

    fn push(&mut self, success: bool, micros: u32) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        let success = if success { Self::SUCCESS } else { 0 };
        self.0.push_back(success | micros.min(Self::SUCCESS - 1));
    }

    /// Success and microseconds, oldest first.
    fn iter(&self) -> impl Iterator<Item = (bool, u32)> + '_ {
        self.0
            .iter()
            .map(|packed| (packed & Self::SUCCESS != 0, packed & !Self::SUCCESS))
    }
}

impl Entry {
    /// Takes the check's state, since-when, history and last result from the state file; a
    /// result that does not belong to the check (another name or kind) is ignored.
    fn restore(&mut self, name: &str, check: SavedCheck) {
        self.tracker = check.tracker;
        self.since = check
            .since_ms
            .map(|ms| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        self.history = History::of(check.history);
        self.last = check
            .last
            .and_then(|raw| serde_json::from_str::<CheckResult>(raw.get()).ok())
            .filter(|res| *res.check == *name && res.kind == self.def.kind())
            .map(Box::new);
    }

    fn new(def: &Arc<CheckDef>) -> Entry {
        Entry {
            def: def.clone(),
            last: None,
            since: None,
            tracker: Tracker::default(),
            maintenance: None,
            history: History::new(),
        }
    }

    fn view(&self) -> CheckView {
        let mut view = CheckView::new(
            &self.def,
            self.last.as_deref(),
            self.since,
            self.history.iter(),
        );
        view.state = shown_state(&self.tracker, self.maintenance.as_ref());
        view.pending = self.tracker.pending().map(|pending| pending.to_string());
        view.consecutive_failures = self.tracker.consecutive_failures();
        view.maintenance = self.maintenance.as_ref().map(MaintenanceView::new);
        view
    }
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
    /// A change was seen and waits for confirmation.
    Pending(Pending),
    /// Same state as before.
    Unchanged,
}

impl Transition {
    fn of(change: Change) -> Transition {
        match change {
            Change::Decided {
                from: None,
                to: Verdict::Passing,
            } => Transition::FirstPass,
            Change::Decided {
                from: None,
                to: Verdict::Failing,
            } => Transition::FirstFail,
            Change::Decided {
                to: Verdict::Passing,
                ..
            } => Transition::Recovered,
            Change::Decided {
                to: Verdict::Failing,
                ..
            } => Transition::Failed,
            Change::Pending(pending) => Transition::Pending(pending),
            Change::Unchanged => Transition::Unchanged,
        }
    }
}

impl StatusStore {
    /// A store holding every check of `config` that runs in the agent's region, not yet run.
    pub fn new(config: &Config) -> StatusStore {
        let checks = config
            .checks
            .iter()
            .filter(|def| def.runs_in(&config.agent.region))
            .map(|def| (def.name.clone(), Entry::new(def)))
            .collect();
        StatusStore {
            region: config.agent.region.clone(),
            expiry: RwLock::new((config.rules.expiry_warning, config.rules.expiry_critical)),
            checks: RwLock::new(checks),
            generation: std::sync::atomic::AtomicU64::new(0),
            awaiting: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Applies a reloaded configuration: unchanged checks keep their history, removed ones
    /// go, new ones are "not run yet".
    pub fn reconfigure(&self, config: &Config) {
        *self
            .expiry
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            (config.rules.expiry_warning, config.rules.expiry_critical);
        let mut checks = self.write();
        let wanted: Vec<&Arc<CheckDef>> = config
            .checks
            .iter()
            .filter(|def| def.runs_in(&config.agent.region))
            .collect();
        // By name: with 50,000 checks a scan per check would take seconds.
        let names: std::collections::HashSet<&str> = wanted.iter().map(|def| &*def.name).collect();
        checks.retain(|name, _| names.contains(&**name));
        for def in wanted {
            checks
                .entry(def.name.clone())
                .and_modify(|entry| entry.def = def.clone())
                .or_insert_with(|| Entry::new(def));
        }
        drop(checks);
        self.bump();
    }

    /// Applies a change to some checks (a template's discovered targets): `removed` go,
    /// `upserted` ones are added, or keep their state and history with the new definition.
    /// Every other check is untouched.
    /// Returns the states restored from the state dir for checks that appear (template
    /// targets seen before a restart), for the scheduler to start them from.
    pub fn apply_checks(
        &self,
        removed: &[Arc<str>],
        upserted: &[Arc<CheckDef>],
    ) -> Vec<(Arc<str>, Tracker)> {
        let mut checks = self.write();
        let mut awaiting = lock(&self.awaiting);
        for name in removed {
            checks.remove(name);
        }
        let mut restored = Vec::new();
        for def in upserted {
            checks
                .entry(def.name.clone())
                .and_modify(|entry| entry.def = def.clone())
                .or_insert_with(|| {
                    let mut entry = Entry::new(def);
                    if let Some(saved) = awaiting.remove(&*def.name) {
                        entry.restore(&def.name, saved);
                        restored.push((def.name.clone(), entry.tracker));
                    }
                    entry
                });
        }
        drop(awaiting);
        drop(checks);
        self.bump();
        restored
    }

    /// Stores a result decided at once (no confirmation): what `nightjar check` and tests
    /// record. Says whether the check changed state.
    pub fn update(&self, res: CheckResult) -> Transition {
        let mut tracker = self.tracker(&res.check).unwrap_or_default();
        let change = tracker.record(res.is_success(), Confirm::default());
        self.record(res, tracker, change)
    }

    /// Stores a scheduled run's result and the check's state after it (the scheduler
    /// decides it, with the check's confirmation settings).
    pub fn update_outcome(&self, outcome: Outcome) -> Transition {
        self.record(outcome.result, outcome.tracker, outcome.change)
    }

    fn record(&self, res: CheckResult, tracker: Tracker, change: Change) -> Transition {
        let mut checks = self.write();
        let Some(entry) = checks.get_mut(&res.check) else {
            return Transition::Unchanged;
        };
        if matches!(change, Change::Decided { .. }) {
            entry.since = Some(res.started_at);
        }
        entry.tracker = tracker;
        entry.history.push(
            res.is_success(),
            u32::try_from(res.duration.as_micros()).unwrap_or(u32::MAX),
        );
        entry.last = Some(Box::new(res));
        drop(checks);
        self.bump();
        Transition::of(change)
    }

    /// Whether the agent runs `name` with the definition of revision `revision`: a result of a
    /// removed check, or of a definition a reload has replaced, is not recorded.
    pub fn runs_revision(&self, name: &str, revision: u64) -> bool {
        self.read()
            .get(name)
            .is_some_and(|entry| entry.def.revision == revision)
    }

    /// The state of `name`, if the agent runs it.
    pub fn tracker(&self, name: &str) -> Option<Tracker> {
        self.read().get(name).map(|entry| entry.tracker)
    }

    /// Every check's state, for a scheduler to start from.
    pub fn trackers(&self) -> Vec<(Arc<str>, Tracker)> {
        self.read()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.tracker))
            .collect()
    }

    /// The definitions of the checks the agent runs.
    pub fn defs(&self) -> Vec<Arc<CheckDef>> {
        self.read()
            .values()
            .map(|entry| entry.def.clone())
            .collect()
    }

    /// The names of the checks the agent runs.
    pub fn names(&self) -> std::collections::HashSet<String> {
        self.read().keys().map(|name| name.to_string()).collect()
    }

    /// The name of a check this agent runs that `name` is likely a typo of; none among more
    /// than 2,000 checks (`MAX_SUGGESTED_AMONG`).
    pub fn closest_name(&self, name: &str) -> Option<String> {
        let names: Vec<Arc<str>> = {
            let checks = self.read();
            if checks.len() > MAX_SUGGESTED_AMONG {
                return None;
            }
            checks.keys().cloned().collect()
        };
        let names: Vec<&str> = names.iter().map(|name| &**name).collect();
        crate::text::closest(name, &names).map(str::to_string)
    }

    /// Sets the maintenance window covering `name` now; returns whether that changed.
    pub fn set_maintenance(&self, name: &str, open: Option<Open>) -> bool {
        // Most passes change nothing: looked at under the read lock, so results keep flowing.
        if self
            .read()
            .get(name)
            .is_none_or(|entry| entry.maintenance == open)
        {
            return false;
        }
        let mut checks = self.write();
        let Some(entry) = checks.get_mut(name) else {
            return false;
        };
        if entry.maintenance == open {
            return false;
        }
        entry.maintenance = open;
        drop(checks);
        self.bump();
        true
    }

    /// Takes each check's state, since-when, history and last result from the state file
    /// (checks the agent no longer runs are left out). A result that does not belong to its
    /// check (another name) is ignored.
    /// A template target's state waits for its check to be discovered (`apply_checks`).
    pub fn restore(&self, saved: BTreeMap<String, SavedCheck>) -> usize {
        let mut checks = self.write();
        let mut awaiting = lock(&self.awaiting);
        let mut restored = 0;
        for (name, check) in saved {
            match checks.get_mut(name.as_str()) {
                Some(entry) => {
                    entry.restore(&name, check);
                    restored += 1;
                }
                None if name.contains('@') => {
                    awaiting.insert(name, check);
                }
                None => {}
            }
        }
        restored
    }

    /// Every check's state as the state file keeps it, each last result serialised once; one
    /// larger than `state::MAX_LAST_BYTES` is left out.
    pub fn saved(&self) -> BTreeMap<String, SavedCheck> {
        let mut saved = lock(&self.awaiting).clone();
        saved.extend(self.read().iter().map(|(name, entry)| {
            let check = SavedCheck {
                tracker: entry.tracker,
                since_ms: entry.since.map(|since| {
                    since
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |ms| i64::try_from(ms.as_millis()).unwrap_or(i64::MAX))
                }),
                history: entry.history.iter().collect(),
                last: entry.last.as_deref().and_then(crate::state::last_result),
            };
            (name.to_string(), check)
        }));
        saved
    }

    /// A number that changes whenever a check's state, history or window changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Views of every check, in name order.
    pub fn views(&self) -> Vec<CheckView> {
        let checks = self.read();
        let mut entries: Vec<(&Arc<str>, &Entry)> = checks.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.into_iter().map(|(_, entry)| entry.view()).collect()
    }

    /// Whether `name` has a result (its series and page row have data).
    pub fn has_run(&self, name: &str) -> bool {
        self.read()
            .get(name)
            .is_some_and(|entry| entry.last.is_some())
    }

    /// The view of one check, if the agent runs it.
    pub fn view(&self, name: &str) -> Option<CheckView> {
        let checks = self.read();
        checks.get(name).map(Entry::view)
    }

    /// What the status page needs of every check to filter, sort and show a row: cheaper
    /// than [`StatusStore::views`] for thousands of checks.
    pub fn summaries(&self) -> Vec<Summary> {
        let checks = self.read();
        checks
            .values()
            .map(|entry| {
                let last = entry.last.as_deref();
                Summary {
                    def: entry.def.clone(),
                    state: shown_state(&entry.tracker, entry.maintenance.as_ref()),
                    pending: entry.tracker.pending(),
                    maintenance: entry.maintenance.clone(),
                    since: entry.since,
                    duration: last.map(|res| res.duration),
                    failure: last.and_then(|res| match &res.status {
                        Status::Pass => None,
                        Status::Fail(failure) => Some(failure.clone()),
                    }),
                    expiry: last.and_then(|res| res.details.earliest_expiry()),
                    history: entry.history.iter().collect(),
                }
            })
            .collect()
    }

    /// The checks, for reading; a panic elsewhere never locks the status page out.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, std::collections::HashMap<Arc<str>, Entry>> {
        self.checks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, std::collections::HashMap<Arc<str>, Entry>> {
        self.checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The agent's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The `[rules]` expiry lead times, warning and critical.
    pub fn expiry_leads(&self) -> (Duration, Duration) {
        *self
            .expiry
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a check passes, fails, has not run yet, or is in maintenance: the one state the
/// API, the page and `nightjar_check_state` show (`passing`, `failing`, `unknown` or
/// `maintenance` in JSON).
pub use crate::metrics::names::CheckState as State;

/// The state of a check whose last result is `last`, decided at once.
fn state_of(last: Option<&CheckResult>) -> State {
    match last {
        None => State::Unknown,
        Some(res) if res.is_success() => State::Passing,
        Some(_) => State::Failing,
    }
}

/// The state shown for a check with `tracker`'s decided state, covered by `maintenance`.
fn shown_state(tracker: &Tracker, maintenance: Option<&Open>) -> State {
    if maintenance.is_some() {
        return State::Maintenance;
    }
    match tracker.decided() {
        None => State::Unknown,
        Some(Verdict::Passing) => State::Passing,
        Some(Verdict::Failing) => State::Failing,
    }
}

/// The maintenance window covering a check, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceView {
    /// The window's name (or ad hoc id).
    pub window: String,
    /// `mark` (runs go on) or `skip`.
    pub mode: &'static str,
    /// When it closes.
    pub until: Timestamp,
    /// Why, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl MaintenanceView {
    fn new(open: &Open) -> MaintenanceView {
        MaintenanceView {
            window: open.name.to_string(),
            mode: match open.mode {
                Mode::Mark => "mark",
                Mode::Skip => "skip",
            },
            until: Timestamp::from(open.until),
            reason: open.reason.as_deref().map(str::to_string),
        }
    }
}

/// One check as the status page's table needs it.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The check's definition.
    pub def: Arc<CheckDef>,
    /// Its state.
    pub state: State,
    /// The change being confirmed, if any.
    pub pending: Option<Pending>,
    /// The maintenance window covering it now.
    pub maintenance: Option<Open>,
    /// When it entered that state.
    pub since: Option<SystemTime>,
    /// How long the last run took.
    pub duration: Option<Duration>,
    /// The last run's failure (its detail with secrets redacted), if it failed.
    pub failure: Option<Failure>,
    /// What the last run saw expire first, and when (Unix seconds).
    pub expiry: Option<(Expiring, i64)>,
    /// Recent results, oldest first: success and duration in microseconds.
    pub history: Vec<(bool, u32)>,
}

/// A moment in wall-clock time as the views carry it: the status page computes with it (time
/// since, time left) and the JSON API writes it as RFC 3339 text in UTC with milliseconds.
/// It holds no more than that text says (it is truncated to the millisecond), so the page
/// shows what the API does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// The moment `secs` Unix seconds after the epoch (the epoch itself for negative values).
    pub fn from_unix(secs: i64) -> Timestamp {
        Timestamp(from_unix(secs))
    }

    /// The moment as a [`SystemTime`].
    pub fn time(self) -> SystemTime {
        self.0
    }

    /// The moment as whole Unix seconds (0 before the epoch).
    pub fn unix_secs(self) -> i64 {
        unix_secs(self.0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Timestamp {
        Timestamp(match time.duration_since(UNIX_EPOCH) {
            Ok(since) => {
                UNIX_EPOCH + Duration::new(since.as_secs(), since.subsec_millis() * 1_000_000)
            }
            Err(_) => time,
        })
    }
}

/// RFC 3339 in UTC with milliseconds: `2025-01-31T12:00:00.000Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rfc3339(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One check as the JSON API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    /// The check's name (`TEMPLATE@INSTANCE` for a template's target).
    pub name: String,
    /// A template's target: the template's name (its series' `check` label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A template's target: its `instance` label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The check's type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The target, without credentials or query string.
    pub target: String,
    /// `passing`, `failing`, `unknown` (nothing decided yet) or `maintenance`.
    pub state: State,
    /// The change being confirmed, e.g. "failing, confirming 1 of 3".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// Failed runs in a row.
    pub consecutive_failures: u32,
    /// The maintenance window covering the check now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceView>,
    /// When the check entered its current decided state (RFC 3339).
    pub since: Option<Timestamp>,
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
    pub started_at: Timestamp,
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
    /// The certificate chain and verdicts, when the run completed a TLS handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsView>,
    /// What RDAP said, for domain checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainView>,
    /// What the DNS server said, for dns checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsView>,
    /// The steps that ran, for flow checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepView>,
    /// The messages and the close, for websocket checks (the upgrade's HTTP status is
    /// `status_code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebsocketView>,
    /// What the server said, for grpc checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcView>,
    /// Packets and round trips, for icmp checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpView>,
    /// Datagrams, for udp checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpView>,
}

/// A gRPC health answer, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct GrpcView {
    /// The status code the call ended with (0 is OK), if the server gave one.
    pub status_code: Option<i32>,
    /// Its name, e.g. "NOT_FOUND".
    pub status: Option<String>,
    /// The serving status answered, e.g. "SERVING".
    pub serving_status: Option<String>,
    /// Whether the connection used TLS.
    pub tls: bool,
}

/// What an icmp run counted, for the JSON API and the page.
#[derive(Debug, Clone, Serialize)]
pub struct IcmpView {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
    /// The share of requests without a reply, from 0 to 1.
    pub loss_ratio: f64,
    /// Round trips in seconds (shortest, average, longest, standard deviation), when a reply
    /// came.
    pub rtt_min_seconds: Option<f64>,
    /// The average round trip.
    pub rtt_avg_seconds: Option<f64>,
    /// The longest round trip.
    pub rtt_max_seconds: Option<f64>,
    /// The standard deviation of the round trips.
    pub rtt_stddev_seconds: Option<f64>,
    /// The TTL or hop limit of the last reply.
    pub reply_hop_limit: Option<u8>,
    /// The socket used: "datagram" or "raw".
    pub socket: Option<crate::result::IcmpSocketKind>,
}

impl IcmpView {
    fn new(icmp: &crate::result::IcmpDetails) -> IcmpView {
        let replied = |took: Duration| (icmp.received > 0).then_some(took.as_secs_f64());
        IcmpView {
            sent: icmp.sent,
            received: icmp.received,
            loss_ratio: if icmp.sent == 0 {
                0.0
            } else {
                f64::from(icmp.sent - icmp.received) / f64::from(icmp.sent)
            },
            rtt_min_seconds: replied(icmp.rtt_min),
            rtt_avg_seconds: replied(icmp.rtt),
            rtt_max_seconds: replied(icmp.rtt_max),
            rtt_stddev_seconds: replied(icmp.rtt_stddev),
            reply_hop_limit: icmp.reply_hop_limit,
            socket: icmp.socket,
        }
    }
}

/// What a udp run counted, for the JSON API and the page.
#[derive(Debug, Clone, Serialize)]
pub struct UdpView {
    /// Datagrams sent.
    pub sent: u32,
    /// Bytes received.
    pub received_bytes: u64,
}

/// One flow step, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// The step's name.
    pub name: String,
    /// Whether it passed.
    pub success: bool,
    /// How long it took, in seconds.
    pub duration_seconds: f64,
    /// The final status code.
    pub status_code: Option<u16>,
    /// HTTP phase timings, in seconds.
    pub phases: BTreeMap<&'static str, f64>,
}

/// A DNS answer, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct DnsView {
    /// The server asked.
    pub server: String,
    /// The response code.
    pub rcode: Option<String>,
    /// The AA flag.
    pub authoritative: bool,
    /// Whether the UDP answer was truncated and asked again over TCP.
    pub truncated: bool,
    /// Answers of the queried type.
    pub answers: Vec<AnswerView>,
    /// The SOA serial in the answer, if any.
    pub soa_serial: Option<u32>,
    /// The earliest RRSIG expiration among the answers (RFC 3339).
    pub rrsig_expiry: Option<Timestamp>,
    /// Days until then.
    pub rrsig_days_left: Option<f64>,
    /// Consistency mode: each server and its serial.
    pub soa_servers: BTreeMap<String, Option<u32>>,
}

/// One answer record, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerView {
    /// Owner name.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub kind: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Record data in zone-file form.
    pub data: String,
}

/// A websocket check's conversation, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct WebsocketView {
    /// Messages sent (text and binary).
    pub messages_sent: u32,
    /// Messages received (text and binary; pings and pongs not counted).
    pub messages_received: u32,
    /// The code of the server's close frame, if one came.
    pub close_code: Option<u16>,
    /// The reason in the server's close frame (sanitised, secrets redacted).
    pub close_reason: Option<String>,
}

/// A domain check's answer, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct DomainView {
    /// When the registration expires (RFC 3339).
    pub expiry: Option<Timestamp>,
    /// Days until then (negative once expired).
    pub days_left: Option<f64>,
    /// The RDAP server asked.
    pub server: Option<String>,
    /// Whether the answer came from the cache.
    pub cached: bool,
}

/// What a TLS handshake showed, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct TlsView {
    /// Negotiated version.
    pub version: &'static str,
    /// Whether the chain validates to the configured roots.
    pub chain_valid: bool,
    /// Whether the leaf is valid for the server name.
    pub hostname_match: bool,
    /// Why verification failed, if it did.
    pub verify_error: Option<String>,
    /// Earliest expiry in the chain (RFC 3339).
    pub earliest_expiry: Option<Timestamp>,
    /// Days until then (negative once expired).
    pub days_left: Option<f64>,
    /// The chain, leaf first.
    pub chain: Vec<CertView>,
}

/// One certificate, for the JSON API.
#[derive(Debug, Clone, Serialize)]
pub struct CertView {
    /// Position in the chain; 0 is the leaf.
    pub position: usize,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// DNS and IP names.
    pub sans: Vec<String>,
    /// notBefore (RFC 3339).
    pub not_before: Timestamp,
    /// notAfter (RFC 3339).
    pub not_after: Timestamp,
    /// SHA-256 fingerprint, hex.
    pub fingerprint_sha256: String,
}

impl TlsView {
    fn new(info: &TlsInfo) -> TlsView {
        let at = Timestamp::from_unix;
        TlsView {
            version: info.version,
            chain_valid: info.chain_valid,
            hostname_match: info.hostname_match,
            verify_error: info.verify_error.clone(),
            earliest_expiry: info.earliest_expiry().map(at),
            days_left: info.earliest_expiry().map(days_left),
            chain: info
                .chain
                .iter()
                .enumerate()
                .map(|(position, cert)| CertView {
                    position,
                    subject: cert.subject.clone(),
                    issuer: cert.issuer.clone(),
                    serial: cert.serial.clone(),
                    sans: cert.sans.clone(),
                    not_before: at(cert.not_before),
                    not_after: at(cert.not_after),
                    fingerprint_sha256: cert.fingerprint_sha256.clone(),
                })
                .collect(),
        }
    }
}

fn info_version(res: &CheckResult) -> Option<&'static str> {
    res.details.tls_info().map(|info| info.version)
}

impl CheckView {
    /// The view of a check and its last result.
    pub fn new(
        def: &CheckDef,
        last: Option<&CheckResult>,
        since: Option<SystemTime>,
        history: impl Iterator<Item = (bool, u32)>,
    ) -> CheckView {
        let state = state_of(last);
        CheckView {
            name: def.name.to_string(),
            template: def.instance.as_ref().map(|_| def.check_name().to_string()),
            instance: def.instance.as_deref().map(str::to_string),
            kind: def.kind().as_str(),
            target: def.target.clone(),
            state,
            pending: None,
            consecutive_failures: u32::from(matches!(state, State::Failing)),
            maintenance: None,
            since: since.map(Timestamp::from),
            schedule: def.schedule.to_string(),
            labels: (*def.labels).clone(),
            last_run: last.map(RunView::new),
            history: history
                .map(|(success, micros)| HistoryPoint {
                    success,
                    duration_seconds: f64::from(micros) / 1e6,
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
            Status::Fail(Failure { reason, detail }) => {
                (Some(reason.as_str()), Some(detail.clone()))
            }
        };
        let mut view = RunView {
            started_at: Timestamp::from(res.started_at),
            duration_seconds: res.duration.as_secs_f64(),
            success: res.is_success(),
            reason,
            detail,
            phases: phase_seconds(res.details.phases()),
            status_code: None,
            http_version: None,
            redirects: None,
            content_length: None,
            tls_version: None,
            tls: res.details.tls_info().map(TlsView::new),
            domain: None,
            dns: None,
            steps: Vec::new(),
            websocket: None,
            grpc: None,
            icmp: None,
            udp: None,
        };
        // What only one kind has.
        match &res.details {
            Details::None => {}
            Details::Tcp(tcp) => {
                view.tls_version = info_version(res);
                view.steps = tcp
                    .steps
                    .iter()
                    .map(|step| StepView {
                        name: step.what.clone(),
                        success: step.success,
                        duration_seconds: step.duration.as_secs_f64(),
                        status_code: None,
                        phases: BTreeMap::new(),
                    })
                    .collect();
            }
            Details::Flow(flow) => view.steps = flow.steps.iter().map(StepView::new).collect(),
            Details::Dns(dns) => view.dns = Some(DnsView::new(dns)),
            Details::Domain(domain) => view.domain = Some(DomainView::new(domain)),
            Details::Tls(_) => view.tls_version = info_version(res),
            Details::Grpc(grpc) => {
                view.tls_version = info_version(res);
                view.grpc = Some(GrpcView {
                    status_code: grpc.status_code,
                    status: grpc.status_name().map(String::from),
                    serving_status: grpc.serving_status_name().map(String::from),
                    tls: grpc.tls_used,
                });
            }
            Details::Icmp(icmp) => view.icmp = Some(IcmpView::new(icmp)),
            Details::Udp(udp) => {
                view.udp = Some(UdpView {
                    sent: udp.sent,
                    received_bytes: udp.received,
                });
            }
            Details::Http(http) => {
                view.status_code = http.status_code;
                view.http_version = http.http_version;
                view.redirects = Some(http.redirects);
                view.content_length = http.content_length;
                view.tls_version = http.tls_version;
            }
            Details::Websocket(websocket) => {
                view.status_code = websocket.status_code;
                view.tls_version = info_version(res);
                view.websocket = Some(WebsocketView {
                    messages_sent: websocket.messages_sent,
                    messages_received: websocket.messages_received,
                    close_code: websocket.close_code,
                    close_reason: websocket.close_reason.clone(),
                });
            }
        }
        view
    }
}

/// Phase timings in seconds, by phase name.
fn phase_seconds(
    phases: impl IntoIterator<Item = (&'static str, Duration)>,
) -> BTreeMap<&'static str, f64> {
    phases
        .into_iter()
        .map(|(phase, took)| (phase, took.as_secs_f64()))
        .collect()
}

impl StepView {
    fn new(step: &StepResult) -> StepView {
        StepView {
            name: step.name.clone(),
            success: step.success,
            duration_seconds: step.duration.as_secs_f64(),
            status_code: step.status_code,
            phases: phase_seconds(step.http.phases()),
        }
    }
}

impl DnsView {
    fn new(dns: &DnsDetails) -> DnsView {
        DnsView {
            server: dns.server.clone(),
            rcode: dns.rcode_name().map(String::from),
            authoritative: dns.authoritative,
            truncated: dns.truncated,
            answers: dns
                .answers
                .iter()
                .map(|answer| AnswerView {
                    name: answer.name.clone(),
                    kind: answer.kind.clone(),
                    ttl: answer.ttl,
                    data: answer.data.clone(),
                })
                .collect(),
            soa_serial: dns.soa_serial,
            rrsig_expiry: dns.earliest_rrsig.map(Timestamp::from_unix),
            rrsig_days_left: dns.earliest_rrsig.map(days_left),
            soa_servers: dns
                .soa_servers
                .iter()
                .map(|server| (server.server.clone(), server.serial))
                .collect(),
        }
    }
}

impl DomainView {
    fn new(domain: &DomainDetails) -> DomainView {
        DomainView {
            expiry: domain.expiry.map(Timestamp::from_unix),
            days_left: domain.expiry.map(days_left),
            server: domain.server.clone(),
            cached: domain.cached,
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_results_packed() {
        let mut history = History::of((0..40).map(|n| (n % 2 == 0, n)));
        let kept: Vec<(bool, u32)> = history.iter().collect();
        let expected: Vec<(bool, u32)> = (10..40).map(|n| (n % 2 == 0, n)).collect();
        assert_eq!(kept, expected);
        history.push(true, u32::MAX);
        history.push(false, 0);
        let last: Vec<(bool, u32)> = history.iter().skip(HISTORY - 2).collect();
        assert_eq!(last, [(true, (1 << 31) - 1), (false, 0)]);
        assert_eq!(history.iter().count(), HISTORY);
    }

    #[test]
    fn timestamps_are_what_their_text_says() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let stamp = Timestamp::from(at);
        assert_eq!(stamp.to_string(), rfc3339(at));
        assert_eq!(
            serde_json::to_string(&Some(stamp)).unwrap(),
            "\"2023-11-14T22:13:20.123Z\""
        );
        assert_eq!(
            stamp.time(),
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_000_000)
        );
        assert_eq!(stamp.unix_secs(), 1_700_000_000);
        assert_eq!(
            Timestamp::from_unix(86_400).to_string(),
            "1970-01-02T00:00:00.000Z"
        );
        assert_eq!(Timestamp::from_unix(-5).unix_secs(), 0);
    }
}
