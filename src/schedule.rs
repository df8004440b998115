//! When checks run: one task per check, on an interval at a stable offset or on a cron
//! expression; never overlapping itself; a global concurrency cap; graceful shutdown.
//!
//! Timing uses tokio's monotonic clock. Wall-clock time is derived from it through
//! [`WallClock`], captured once, so a stepped system clock moves neither the intervals nor the
//! cron firings, and tests can run the whole scheduler on paused time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::config::{CheckDef, Schedule};
use crate::detect::Tracker;
use crate::hash::stable_hash;
use crate::maintenance::{Maintenance, Mode, Open};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::result::CheckResult;
use crate::runner::{RunEnv, run_one};

/// What the scheduler calls to run a check once. The agent uses [`real_runner`]; scheduler
/// tests substitute a runner that only sleeps, so paused time can drive them.
pub type Runner = Arc<dyn Fn(Arc<CheckDef>) -> BoxFuture<CheckResult> + Send + Sync>;

/// A boxed, sendable future.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The runner that really probes targets.
pub fn real_runner(env: RunEnv) -> Runner {
    Arc::new(move |def: Arc<CheckDef>| {
        let env = env.clone();
        Box::pin(async move { run_one(&def, &env).await })
    })
}

/// Maps tokio's monotonic instants to wall-clock time, from one reading taken at start.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base_wall: SystemTime,
    base_instant: Instant,
}

impl WallClock {
    /// Anchors the wall clock at the current time.
    pub fn now() -> WallClock {
        WallClock::anchored(SystemTime::now())
    }

    /// Anchors the wall clock so that the current instant is `wall` (for tests).
    pub fn anchored(wall: SystemTime) -> WallClock {
        WallClock {
            base_wall: wall,
            base_instant: Instant::now(),
        }
    }

    /// The wall-clock time at `instant`.
    pub fn wall_at(&self, instant: Instant) -> SystemTime {
        if instant >= self.base_instant {
            self.base_wall + (instant - self.base_instant)
        } else {
            self.base_wall - (self.base_instant - instant)
        }
    }

    /// The instant at wall-clock time `wall`.
    pub fn instant_at(&self, wall: SystemTime) -> Instant {
        match wall.duration_since(self.base_wall) {
            Ok(ahead) => self.base_instant + ahead,
            Err(behind) => self.base_instant - behind.duration(),
        }
    }
}

/// The check's offset inside its interval, derived from its name, in whole slots of
/// [`OFFSET_SLOT`] (or a hundredth of the interval, if that is shorter): the checks due in one
/// slot start together, so the agent wakes once for all of them rather than once each.
pub fn offset_in(name: &str, interval: Duration) -> Duration {
    let nanos = interval.as_nanos().max(1);
    let slot = (nanos / 100).clamp(1, OFFSET_SLOT.as_nanos());
    let offset = u128::from(stable_hash(name)) % nanos;
    Duration::from_nanos((offset - offset % slot) as u64)
}

/// The granularity of check offsets.
pub const OFFSET_SLOT: Duration = Duration::from_millis(50);

/// The first instant at or after `now` when a check with this interval and offset is due:
/// the wall-clock time t where (t − offset) is a multiple of the interval. Anchoring to the
/// wall clock keeps the firing times the same across restarts.
pub fn first_due(name: &str, interval: Duration, now: Instant, clock: &WallClock) -> Instant {
    let interval_nanos = interval.as_nanos().max(1);
    let offset = offset_in(name, interval).as_nanos();
    let wall = crate::time::since_epoch(clock.wall_at(now)).as_nanos();
    let phase = (wall + interval_nanos - offset % interval_nanos) % interval_nanos;
    let wait = (interval_nanos - phase) % interval_nanos;
    now + Duration::from_nanos(wait as u64)
}

/// How soon after it is loaded a check reports at the latest: a check whose first slot is
/// further away than this runs once early, at a stable offset inside this window, so a `1h`
/// TLS check or a `12h` domain check has data (and its expiry series) within a minute of a
/// start or a deploy.
pub const FIRST_RUN_WITHIN: Duration = Duration::from_secs(60);

/// When a check loaded at `now` first runs, if that is earlier than its first slot
/// `first_slot`: at its stable offset inside [`FIRST_RUN_WITHIN`]. `None` when the slot comes
/// within [`FIRST_RUN_WITHIN`] anyway (every interval of a minute or less), so no check runs
/// twice in quick succession.
pub fn early_run(name: &str, now: Instant, first_slot: Instant) -> Option<Instant> {
    if first_slot <= now + FIRST_RUN_WITHIN {
        return None;
    }
    Some(now + offset_in(name, FIRST_RUN_WITHIN))
}

/// The next cron firing strictly after `after`.
pub fn next_cron(schedule: &cron::Schedule, after: Instant, clock: &WallClock) -> Option<Instant> {
    let wall: chrono::DateTime<chrono::Utc> = clock.wall_at(after).into();
    let next = schedule.after(&wall).next()?;
    Some(clock.instant_at(next.into()))
}

/// Everything the check tasks share. Only the concurrency cap changes while the scheduler
/// runs ([`SchedulerHandle::set_concurrency`]): the runner, the metrics, the results channel
/// and the maintenance windows are the agent's for its whole life (a reload reconfigures the
/// last two in place), and the wall clock stays anchored where the scheduler started (unchanged
/// checks keep their slots; a restart, not a reload, follows a stepped system clock).
struct Shared {
    runner: Runner,
    metrics: Arc<Metrics>,
    permits: Arc<Permits>,
    results: mpsc::Sender<Outcome>,
    clock: WallClock,
    maintenance: Arc<Maintenance>,
}

/// The concurrency cap, resizable while runs hold permits: growing adds permits; shrinking
/// forgets the free ones at once and the rest as runs give them back (each is forgotten by
/// the next run that takes it, so a run aborted with its permit pays too).
struct Permits {
    semaphore: Arc<Semaphore>,
    /// The cap, and the permits still to forget.
    size: std::sync::Mutex<(usize, usize)>,
}

impl Permits {
    fn new(size: usize) -> Permits {
        let size = size.max(1);
        Permits {
            semaphore: Arc::new(Semaphore::new(size)),
            size: std::sync::Mutex::new((size, 0)),
        }
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.size
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a permit within the current cap.
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            let permit = self.semaphore.clone().acquire_owned().await.ok()?;
            let mut sizes = self.sizes();
            if sizes.1 == 0 {
                return Some(permit);
            }
            sizes.1 -= 1;
            permit.forget();
        }
    }

    /// Sets the cap to `size` (at least 1).
    fn resize(&self, size: usize) {
        let size = size.max(1);
        let mut sizes = self.sizes();
        let (current, owed) = *sizes;
        if size >= current {
            let cancelled = (size - current).min(owed);
            self.semaphore.add_permits(size - current - cancelled);
            *sizes = (size, owed - cancelled);
        } else {
            let shrink = current - size;
            let forgotten = self.semaphore.forget_permits(shrink);
            *sizes = (size, owed + shrink - forgotten);
        }
    }
}

/// Runs the checks until shutdown, and takes [`Update`]s while it runs.
pub struct Scheduler {
    checks: Vec<Arc<CheckDef>>,
    shared: Arc<Shared>,
    settled: HashSet<Arc<str>>,
    trackers: HashMap<Arc<str>, Tracker>,
}

/// A change to the checks of a running scheduler: what a reload or a discovery change
/// applies. Checks it does not name are untouched: their slots, states and runs in flight.
#[derive(Debug, Default, Clone)]
pub struct Update {
    /// Checks to start, each with whether it gets an early first run (see [`early_run`]). A
    /// name that is running is stopped first, as if it were in `stop`, and its replacement
    /// starts from its state; so does a name in `stop` too.
    pub start: Vec<(Arc<CheckDef>, bool)>,
    /// Checks to stop, by name: a run in flight is aborted, and its outcome never arrives.
    pub stop: Vec<Arc<str>>,
    /// Definitions of running checks with the same revision as the running ones, freshly
    /// loaded: the next run of each uses it (CA files, client certificates and RDAP settings
    /// are read at load time but are not part of the revision), nothing else changes.
    pub refresh: Vec<Arc<CheckDef>>,
    /// States to start checks in `start` from when they are not running: a template target's
    /// state restored from the state dir when it is discovered again after a restart.
    pub trackers: HashMap<Arc<str>, Tracker>,
}

impl Update {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty() && self.refresh.is_empty()
    }
}

/// What turns the checks running as `current` into `next`, by name and revision: a check only
/// in `current` stops; one only in `next` starts; one whose revision differs stops and starts
/// again (from its state, which [`SchedulerHandle::apply`] carries over); one with the same
/// revision is untouched but for its freshly loaded definition (`refresh`), unless it is the
/// very definition running (a discovered target found again, an unchanged template's targets
/// across a reload), which needs nothing. Started checks get an early first run if they have
/// `run_on_load`: none of them has reported as defined now.
pub fn plan(current: &[Arc<CheckDef>], next: &[Arc<CheckDef>]) -> Update {
    // By name, so a change among 50,000 checks compares by lookup.
    let before: HashMap<&str, &Arc<CheckDef>> =
        current.iter().map(|def| (&*def.name, def)).collect();
    let after: HashSet<&str> = next.iter().map(|def| &*def.name).collect();
    let mut update = Update {
        stop: current
            .iter()
            .filter(|def| !after.contains(&*def.name))
            .map(|def| def.name.clone())
            .collect(),
        ..Update::default()
    };
    for def in next {
        match before.get(&*def.name) {
            Some(running) if Arc::ptr_eq(running, def) => {}
            Some(running) if running.revision == def.revision => update.refresh.push(def.clone()),
            Some(_) => {
                update.stop.push(def.name.clone());
                update.start.push((def.clone(), def.run_on_load));
            }
            None => update.start.push((def.clone(), def.run_on_load)),
        }
    }
    update
}

/// Changes a running scheduler's checks and concurrency cap. Dropping it leaves the scheduler
/// running until its shutdown.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::Sender<Command>,
    permits: Arc<Permits>,
}

/// Checks' states by name: what stopped checks leave, and what the scheduler ends with.
pub type States = Vec<(Arc<str>, Tracker)>;

/// An update and where to answer it.
type Command = (Update, oneshot::Sender<States>);

impl SchedulerHandle {
    /// Applies `update` and returns the state of each check it stopped (a changed check's
    /// replacement has already started from it). When this returns, the stopped checks' runs
    /// in flight have ended: no outcome of theirs is sent afterwards. Nothing waits on the
    /// other checks. After shutdown it changes nothing and returns nothing.
    pub async fn apply(&self, update: Update) -> Vec<(Arc<str>, Tracker)> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send((update, reply)).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Sets the cap on runs in flight (`[agent] concurrency`) in place: runs in flight go on,
    /// and runs start again once fewer than `concurrency` are in flight.
    pub fn set_concurrency(&self, concurrency: usize) {
        self.permits.resize(concurrency);
    }
}

/// A check's loop as the scheduler keeps it.
struct Loop {
    /// Tells the loop to stop now, aborting its run in flight.
    stop: oneshot::Sender<()>,
    task: JoinHandle<Tracker>,
    cell: Cell,
}

/// What a check's loop, its run in flight and the scheduler share: the definition runs use
/// (replaced by a refresh) and the check's state. The run's task records the result in the
/// state and hands it on itself, so the loop's future, which lives as long as the check,
/// never holds one.
type Cell = Arc<std::sync::Mutex<Current>>;

/// See [`Cell`].
struct Current {
    def: Arc<CheckDef>,
    tracker: Tracker,
}

fn lock(cell: &Cell) -> std::sync::MutexGuard<'_, Current> {
    cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `def`'s loop.
fn spawn_loop(
    def: Arc<CheckDef>,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
    early: bool,
    tracker: Tracker,
) -> Loop {
    let cell = Arc::new(std::sync::Mutex::new(Current {
        def: def.clone(),
        tracker,
    }));
    let (stop, stopped) = oneshot::channel();
    let signals = Signals {
        shutdown: shutdown.clone(),
        stop: stopped,
    };
    let task = tokio::spawn(check_loop(
        def,
        shared.clone(),
        signals,
        early,
        cell.clone(),
    ));
    Loop { stop, task, cell }
}

impl Scheduler {
    /// A scheduler for `checks`, sending every outcome to `results`, with at most
    /// `concurrency` runs in flight at once.
    pub fn new(
        checks: Vec<Arc<CheckDef>>,
        runner: Runner,
        metrics: Arc<Metrics>,
        results: mpsc::Sender<Outcome>,
        concurrency: usize,
        clock: WallClock,
    ) -> Scheduler {
        Scheduler {
            checks,
            shared: Arc::new(Shared {
                runner,
                metrics,
                permits: Arc::new(Permits::new(concurrency)),
                results,
                clock,
                maintenance: Arc::new(Maintenance::default()),
            }),
            settled: HashSet::new(),
            trackers: HashMap::new(),
        }
    }

    /// Checks that keep their slot without an early first run: those a reload left
    /// unchanged, which already have data. Every other check with `run_on_load` runs once
    /// within [`FIRST_RUN_WITHIN`] of the start (see [`early_run`]).
    #[must_use]
    pub fn settled(mut self, names: impl IntoIterator<Item = Arc<str>>) -> Scheduler {
        self.settled = names.into_iter().collect();
        self
    }

    /// The states the checks start from (kept across a reload, or read from the state
    /// dir); a check not named starts unknown.
    #[must_use]
    pub fn trackers(
        mut self,
        trackers: impl IntoIterator<Item = (Arc<str>, Tracker)>,
    ) -> Scheduler {
        self.trackers = trackers.into_iter().collect();
        self
    }

    /// The maintenance windows: a check in a `skip` window does not run, and a run in a
    /// `mark` window carries the window in its outcome.
    #[must_use]
    pub fn maintenance(mut self, maintenance: Arc<Maintenance>) -> Scheduler {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.maintenance = maintenance;
        }
        self
    }

    /// Spawns one task per check, and one that applies the [`SchedulerHandle`]'s updates.
    /// When `shutdown` turns true (or its sender is dropped) no new run starts and no update
    /// applies; runs in flight finish (each within its timeout) and hand on their outcome,
    /// then the task ends with each running check's state as its loop left it. The results
    /// sender is dropped when it ends.
    pub fn start(self, shutdown: watch::Receiver<bool>) -> (SchedulerHandle, JoinHandle<States>) {
        let loops: HashMap<Arc<str>, Loop> = self
            .checks
            .into_iter()
            .map(|def| {
                let early = def.run_on_load && !self.settled.contains(&def.name);
                let tracker = self.trackers.get(&def.name).copied().unwrap_or_default();
                let name = def.name.clone();
                (
                    name,
                    spawn_loop(def, &self.shared, &shutdown, early, tracker),
                )
            })
            .collect();
        let (commands, commands_rx) = mpsc::channel(8);
        let handle = SchedulerHandle {
            commands,
            permits: self.shared.permits.clone(),
        };
        let task = tokio::spawn(supervise(loops, self.shared, shutdown, commands_rx));
        (handle, task)
    }

    /// [`Scheduler::start`] without updates: runs until `shutdown`, then returns each check's
    /// state.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Vec<(Arc<str>, Tracker)> {
        let (_handle, task) = self.start(shutdown);
        task.await.unwrap_or_default()
    }
}

/// Applies updates until shutdown, then waits for every loop and returns their states.
async fn supervise(
    mut loops: HashMap<Arc<str>, Loop>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut commands: mpsc::Receiver<Command>,
) -> Vec<(Arc<str>, Tracker)> {
    let mut open = true;
    while !*shutdown.borrow() {
        tokio::select! {
            command = commands.recv(), if open => match command {
                Some((update, reply)) => {
                    let stopped = apply(&mut loops, &shared, &shutdown, update).await;
                    let _ = reply.send(stopped);
                }
                None => open = false,
            },
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    drop(commands);
    drop(shared);
    let mut trackers = Vec::with_capacity(loops.len());
    for (name, check) in loops {
        let Loop { stop, task, cell } = check;
        let tracker = task.await.unwrap_or_else(|_| lock(&cell).tracker);
        // Dropped only now: a dropped stop signal stops a loop at once.
        drop(stop);
        trackers.push((name, tracker));
    }
    trackers
}

/// How many checks an update starts between two yields to the runs that are due.
const START_BATCH: usize = 128;

/// Applies one update to the running loops; returns the states of the checks it stopped.
async fn apply(
    loops: &mut HashMap<Arc<str>, Loop>,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
    update: Update,
) -> Vec<(Arc<str>, Tracker)> {
    let Update {
        start,
        stop,
        refresh,
        trackers,
    } = update;
    // Signal every loop to stop first, then wait for them: they stop in parallel.
    let restarted = start.iter().map(|(def, _)| def.name.clone());
    let stopping: Vec<(Arc<str>, JoinHandle<Tracker>, Cell)> = stop
        .into_iter()
        .chain(restarted)
        .filter_map(|name| loops.remove_entry(&name))
        .map(|(name, check)| {
            let Loop { stop, task, cell } = check;
            stop.send(()).ok();
            (name, task, cell)
        })
        .collect();
    let mut stopped = Vec::with_capacity(stopping.len());
    for (name, task, cell) in stopping {
        let tracker = task.await.unwrap_or_else(|_| lock(&cell).tracker);
        stopped.push((name, tracker));
    }
    let carried: HashMap<&str, Tracker> = stopped
        .iter()
        .map(|(name, tracker)| (&**name, *tracker))
        .collect();
    for (idx, (def, early)) in start.into_iter().enumerate() {
        let tracker = carried
            .get(&*def.name)
            .or_else(|| trackers.get(&def.name))
            .copied()
            .unwrap_or_default();
        let name = def.name.clone();
        loops.insert(name, spawn_loop(def, shared, shutdown, early, tracker));
        // Thousands of checks start in one update (a discovery change): let due runs of the
        // others start between every few hundred, so none waits for more than a millisecond.
        if idx % START_BATCH == START_BATCH - 1 {
            tokio::task::yield_now().await;
        }
    }
    for def in refresh {
        if let Some(check) = loops.get(&def.name) {
            let mut current = lock(&check.cell);
            if current.def.revision == def.revision {
                current.def = def;
            }
        }
    }
    stopped
}

/// A run in flight.
struct Running {
    /// Ends with when to retry, if the check's state waits on a confirmation.
    task: JoinHandle<Option<Instant>>,
}

/// What ends a check's loop: the scheduler's shutdown (runs in flight finish) and the check's
/// own stop (its run in flight is aborted).
struct Signals {
    shutdown: watch::Receiver<bool>,
    stop: oneshot::Receiver<()>,
}

/// One check's loop: sleeps until its next slot (or retry), starts a run unless the last one
/// is still in flight or a `skip` window is open, and hands each finished run on with the
/// check's state after it.
async fn check_loop(
    def: Arc<CheckDef>,
    shared: Arc<Shared>,
    signals: Signals,
    early: bool,
    cell: Cell,
) -> Tracker {
    let Signals {
        mut shutdown,
        mut stop,
    } = signals;
    let now = Instant::now();
    let Some((slot, mut early)) = first_runs(&def, &shared.clock, early, now) else {
        return lock(&cell).tracker;
    };
    let mut due = early.unwrap_or(slot);
    // A retry due before the next regular run, while a change of state is unconfirmed (one
    // left unconfirmed by a restart or a reload is taken up `retry_interval` after the start).
    let mut retry_at: Option<Instant> = def
        .retry_interval
        .filter(|_| lock(&cell).tracker.undecided())
        .map(|every| now + every)
        .filter(|at| *at < due);
    let mut running: Option<Running> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let wake = retry_at.map_or(due, |at| at.min(due));
        tokio::select! {
            () = sleep_until(wake) => {}
            // Let go of a finished run at once: its handle holds the task's memory.
            joined = async { (&mut running.as_mut().expect("guarded by the condition").task).await },
                if running.is_some() => {
                running = None;
                retry_at = joined.ok().flatten().filter(|at| *at < due);
                continue;
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
            // Stopped (or the scheduler is gone): the run in flight is aborted and waited
            // for, so its outcome is either sent already or never.
            _ = &mut stop => {
                if let Some(run) = running.take() {
                    run.task.abort();
                    let _ = run.task.await;
                }
                break;
            }
        }
        let retry = retry_at.is_some_and(|at| at <= wake && at < due);
        retry_at = None;
        let this_due = wake;
        if !retry {
            due = match next_due(&def, &shared, &mut early, slot, this_due) {
                Some(next) => next,
                None => break,
            };
        }
        if running.as_ref().is_some_and(|run| !run.task.is_finished()) {
            if !retry {
                shared.metrics.skipped(&def.name);
            }
            tracing::debug!(message = "Run skipped: the previous run is still in flight.", check = %def.name);
            continue;
        }
        let wall = shared.clock.wall_at(Instant::now());
        let open = shared.maintenance.open_for(&def.name, &def.labels, wall);
        if open.as_ref().is_some_and(|open| open.mode == Mode::Skip) {
            tracing::debug!(message = "Run skipped: a maintenance window is open.", check = %def.name);
            continue;
        }
        running = Some(Running {
            task: tokio::spawn(run_task(
                shared.clone(),
                cell.clone(),
                Taken {
                    due: this_due,
                    retry,
                    maintenance: open,
                },
            )),
        });
    }
    if let Some(run) = running {
        let _ = run.task.await;
    }
    lock(&cell).tracker
}

/// A check's first slot after `now`, and its early first run if it gets one: an early first
/// run, then the wall-clock slots; a slot less than a minute after the early run is skipped,
/// so the check never runs twice in quick succession. `None` if it never runs.
fn first_runs(
    def: &CheckDef,
    clock: &WallClock,
    early: bool,
    now: Instant,
) -> Option<(Instant, Option<Instant>)> {
    let slot_from = |from: Instant| match &def.schedule {
        Schedule::Interval(every) => Some(first_due(&def.name, *every, from, clock)),
        Schedule::Cron(cron) => next_cron(cron, from, clock),
    };
    let mut slot = slot_from(now)?;
    let mut early = early.then(|| early_run(&def.name, now, slot)).flatten();
    if let Some(at) = early
        && slot < at + FIRST_RUN_WITHIN
    {
        match slot_from(at + FIRST_RUN_WITHIN) {
            Some(later) => slot = later,
            None => early = None,
        }
    }
    Some((slot, early))
}

/// The regular run after the one due at `this_due` (the first slot after an early run).
fn next_due(
    def: &CheckDef,
    shared: &Shared,
    early: &mut Option<Instant>,
    slot: Instant,
    this_due: Instant,
) -> Option<Instant> {
    if early.take().is_some() {
        return Some(slot);
    }
    match &def.schedule {
        Schedule::Interval(every) => {
            // After a stall (a suspended VM, a starved runtime) skip the missed slots
            // instead of firing them back to back.
            let mut next = this_due + *every;
            let now = Instant::now();
            while next <= now {
                next += *every;
            }
            Some(next)
        }
        Schedule::Cron(cron) => next_cron(cron, Instant::now().max(this_due), &shared.clock),
    }
}

/// How a run was taken.
struct Taken {
    /// When it was due (for the lag).
    due: Instant,
    /// Whether it is a retry.
    retry: bool,
    /// The maintenance window open when it started.
    maintenance: Option<Open>,
}

/// Runs a check once (within the concurrency cap), records the result in its state, and
/// hands the outcome on. Returns when to retry, if the state waits on a confirmation and the
/// check has a `retry_interval`.
async fn run_task(shared: Arc<Shared>, cell: Cell, taken: Taken) -> Option<Instant> {
    let permit = shared.permits.acquire().await?;
    shared
        .metrics
        .observe_lag(Instant::now().saturating_duration_since(taken.due));
    // The definition as last refreshed (the same revision as the loop's).
    let def = lock(&cell).def.clone();
    let result = (shared.runner)(def.clone()).await;
    drop(permit);
    let (after, change) = {
        let mut current = lock(&cell);
        let change = current.tracker.record(result.is_success(), def.confirm);
        (current.tracker, change)
    };
    let outcome = Outcome {
        result,
        retry: taken.retry,
        maintenance: taken.maintenance,
        tracker: after,
        change,
        revision: def.revision,
    };
    let _ = shared.results.send(outcome).await;
    let every = def.retry_interval?;
    after.undecided().then(|| Instant::now() + every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable() {
        // Fixed values: changing the hash would move every check's offset and shard.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn offsets_are_whole_slots_spread_over_the_interval() {
        let minute = Duration::from_secs(60);
        let mut slots = std::collections::BTreeSet::new();
        for idx in 0..10_000 {
            let offset = offset_in(&format!("check-{idx}"), minute);
            assert_eq!(offset.as_nanos() % OFFSET_SLOT.as_nanos(), 0, "{offset:?}");
            slots.insert(offset);
        }
        // 1,200 slots in a minute; 10,000 hashed names fill nearly all of them.
        assert!(slots.len() > 1_100, "{} slots used", slots.len());
        // A short interval gets a hundredth of it as its slot.
        let offset = offset_in("fast", Duration::from_secs(1));
        assert_eq!(offset.as_nanos() % Duration::from_millis(10).as_nanos(), 0);
    }

    /// The resident memory of this process, in bytes.
    fn resident() -> isize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: isize = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    /// What an idle check costs the scheduler (its loop's task, its stop signal, its cell and
    /// its entry), measured over 50,000 hourly checks on one thread, in a process of its own
    /// (this test binary again, running only this test) so no other test's memory counts.
    #[test]
    fn an_idle_check_costs_a_few_hundred_bytes() {
        const CHECKS: usize = 50_000;
        const ALONE: &str = "NIGHTJAR_TEST_MEASURE_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "schedule::tests::an_idle_check_costs_a_few_hundred_bytes",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(stdout.contains("An idle check costs"), "{stdout}");
            for line in stdout.lines().filter(|line| line.contains("costs")) {
                println!("{line}");
            }
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let text = "[[check]]\nname = \"base\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\ninterval = \"1h\"\nrun_on_load = false\n";
            let config = crate::config::load_str(
                std::path::Path::new("test.toml"),
                text,
                &crate::reader::NoSecrets,
                &crate::config::Overrides::default(),
            )
            .unwrap();
            let defs: Vec<Arc<CheckDef>> = (0..CHECKS)
                .map(|idx| {
                    let mut def = (*config.checks[0]).clone();
                    def.name = Arc::from(format!("check-{idx}").as_str());
                    Arc::new(def)
                })
                .collect();
            let metrics = Arc::new(Metrics::new(&config));
            let runner: Runner = Arc::new(|_| Box::pin(std::future::pending()));
            let (results, _outcomes) = mpsc::channel(16);
            let (stop, shutdown) = watch::channel(false);
            let before = resident();
            let scheduler = Scheduler::new(
                defs.clone(),
                runner,
                metrics,
                results,
                16,
                WallClock::now(),
            );
            let (handle, task) = scheduler.start(shutdown);
            // Answered once every loop has been polled and sleeps.
            handle.apply(Update::default()).await;
            let per_check = (resident() - before) / CHECKS as isize;
            // The stop signals alone: a sender and a receiver each, and their shared state.
            let before = resident();
            let signals: Vec<_> = (0..CHECKS).map(|_| oneshot::channel::<()>()).collect();
            let per_signal = (resident() - before) / CHECKS as isize;
            drop(signals);
            println!(
                "An idle check costs the scheduler {per_check} bytes, {per_signal} of them its stop signal"
            );
            assert!(per_check < 1024, "{per_check} bytes per check");
            stop.send(true).unwrap();
            assert_eq!(task.await.unwrap().len(), CHECKS);
        });
    }

    #[test]
    fn offsets_stay_inside_the_interval() {
        let interval = Duration::from_secs(30);
        for name in ["a", "shop-home", "api", "x-1"] {
            assert!(offset_in(name, interval) < interval);
        }
        assert_ne!(
            offset_in("shop-home", interval),
            offset_in("shop-cart", interval)
        );
    }
}
