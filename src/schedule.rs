//! When checks run: one task per check, on an interval at a stable offset or on a cron
//! expression; never overlapping itself; a global concurrency cap; graceful shutdown.
//!
//! Timing uses tokio's monotonic clock. Wall-clock time is derived from it through
//! [`WallClock`], captured once, so a stepped system clock moves neither the intervals nor the
//! cron firings, and tests can run the whole scheduler on paused time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};
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

/// Everything the check tasks share.
struct Shared {
    runner: Runner,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    results: mpsc::Sender<Outcome>,
    clock: WallClock,
    maintenance: Arc<Maintenance>,
}

/// Runs the checks until shutdown.
pub struct Scheduler {
    checks: Vec<Arc<CheckDef>>,
    shared: Arc<Shared>,
    settled: HashSet<Arc<str>>,
    trackers: HashMap<Arc<str>, Tracker>,
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
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
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

    /// Spawns one task per check and waits for them. When `shutdown` turns true (or its
    /// sender is dropped) no new run starts; runs in flight finish (each within its
    /// timeout) and hand on their outcome before this returns. The results sender is dropped
    /// on return. Returns each check's state as its loop left it.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Vec<(Arc<str>, Tracker)> {
        let tasks: Vec<(Arc<str>, JoinHandle<Tracker>)> = self
            .checks
            .into_iter()
            .map(|def| {
                let early = def.run_on_load && !self.settled.contains(&def.name);
                let tracker = self.trackers.get(&def.name).copied().unwrap_or_default();
                let name = def.name.clone();
                let task = tokio::spawn(check_loop(
                    def,
                    self.shared.clone(),
                    shutdown.clone(),
                    early,
                    tracker,
                ));
                (name, task)
            })
            .collect();
        drop(self.shared);
        let mut trackers = Vec::with_capacity(tasks.len());
        for (name, task) in tasks {
            if let Ok(tracker) = task.await {
                trackers.push((name, tracker));
            }
        }
        trackers
    }
}

/// A run in flight: its task, and whether it is a retry.
struct Running {
    /// Ends with when to retry, if the check's state waits on a confirmation.
    task: JoinHandle<Option<Instant>>,
}

/// A check's state, shared by its loop and its run in flight (which records the result). The
/// run's task hands the result on itself, so the loop's future, which lives as long as the
/// check, never holds one.
type SharedTracker = Arc<std::sync::Mutex<Tracker>>;

fn lock(tracker: &SharedTracker) -> std::sync::MutexGuard<'_, Tracker> {
    tracker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One check's loop: sleeps until its next slot (or retry), starts a run unless the last one
/// is still in flight or a `skip` window is open, and hands each finished run on with the
/// check's state after it.
async fn check_loop(
    def: Arc<CheckDef>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    early: bool,
    tracker: Tracker,
) -> Tracker {
    let tracker: SharedTracker = Arc::new(std::sync::Mutex::new(tracker));
    let now = Instant::now();
    let slot_from = |from: Instant| match &def.schedule {
        Schedule::Interval(every) => Some(first_due(&def.name, *every, from, &shared.clock)),
        Schedule::Cron(cron) => next_cron(cron, from, &shared.clock),
    };
    let Some(mut slot) = slot_from(now) else {
        return *lock(&tracker);
    };
    // An early first run, then the wall-clock slots; a slot less than a minute after the
    // early run is skipped, so the check never runs twice in quick succession.
    let mut early = early.then(|| early_run(&def.name, now, slot)).flatten();
    if let Some(at) = early
        && slot < at + FIRST_RUN_WITHIN
    {
        match slot_from(at + FIRST_RUN_WITHIN) {
            Some(later) => slot = later,
            None => early = None,
        }
    }
    let mut due = early.unwrap_or(slot);
    // A retry due before the next regular run, while a change of state is unconfirmed (one
    // left unconfirmed by a restart or a reload is taken up `retry_interval` after the start).
    let mut retry_at: Option<Instant> = def
        .retry_interval
        .filter(|_| lock(&tracker).undecided())
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
                def.clone(),
                shared.clone(),
                tracker.clone(),
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
    *lock(&tracker)
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
async fn run_task(
    def: Arc<CheckDef>,
    shared: Arc<Shared>,
    tracker: SharedTracker,
    taken: Taken,
) -> Option<Instant> {
    let permit = shared.permits.clone().acquire_owned().await.ok()?;
    shared
        .metrics
        .observe_lag(Instant::now().saturating_duration_since(taken.due));
    let result = (shared.runner)(def.clone()).await;
    drop(permit);
    let (after, change) = {
        let mut tracker = lock(&tracker);
        let change = tracker.record(result.is_success(), def.confirm);
        (*tracker, change)
    };
    let outcome = Outcome {
        result,
        retry: taken.retry,
        maintenance: taken.maintenance,
        tracker: after,
        change,
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
