//! When checks run: one task per check, on an interval at a stable offset or on a cron
//! expression; never overlapping itself; a global concurrency cap; graceful shutdown.
//!
//! Timing uses tokio's monotonic clock. Wall-clock time is derived from it through
//! [`WallClock`], captured once, so a stepped system clock moves neither the intervals nor the
//! cron firings, and tests can run the whole scheduler on paused time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::config::{CheckDef, Schedule};
use crate::hash::stable_hash;
use crate::metrics::Metrics;
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
    results: mpsc::Sender<CheckResult>,
    clock: WallClock,
}

/// Runs the checks until shutdown.
pub struct Scheduler {
    checks: Vec<Arc<CheckDef>>,
    shared: Arc<Shared>,
    settled: HashSet<Arc<str>>,
}

impl Scheduler {
    /// A scheduler for `checks`, sending every result to `results`, with at most
    /// `concurrency` runs in flight at once.
    pub fn new(
        checks: Vec<Arc<CheckDef>>,
        runner: Runner,
        metrics: Arc<Metrics>,
        results: mpsc::Sender<CheckResult>,
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
            }),
            settled: HashSet::new(),
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

    /// Spawns one task per check and waits for them. When `shutdown` turns true (or its
    /// sender is dropped) no new run starts; runs in flight finish (each within its
    /// timeout) before this returns. The results sender is dropped on return.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let tasks: Vec<JoinHandle<()>> = self
            .checks
            .into_iter()
            .map(|def| {
                let early = def.run_on_load && !self.settled.contains(&def.name);
                tokio::spawn(check_loop(
                    def,
                    self.shared.clone(),
                    shutdown.clone(),
                    early,
                ))
            })
            .collect();
        drop(self.shared);
        for task in tasks {
            let _ = task.await;
        }
    }
}

async fn check_loop(
    def: Arc<CheckDef>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    early: bool,
) {
    let now = Instant::now();
    let slot_from = |from: Instant| match &def.schedule {
        Schedule::Interval(every) => Some(first_due(&def.name, *every, from, &shared.clock)),
        Schedule::Cron(cron) => next_cron(cron, from, &shared.clock),
    };
    let Some(mut slot) = slot_from(now) else {
        return;
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
    let mut running: Option<JoinHandle<()>> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            () = sleep_until(due) => {}
            // Let go of a finished run at once: its handle holds the task's memory.
            _ = async { running.as_mut().expect("guarded by the condition").await },
                if running.is_some() => {
                running = None;
                continue;
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
        }
        let this_due = due;
        due = match &def.schedule {
            _ if early.take().is_some() => slot,
            Schedule::Interval(every) => {
                // After a stall (a suspended VM, a starved runtime) skip the missed slots
                // instead of firing them back to back.
                let mut next = this_due + *every;
                let now = Instant::now();
                while next <= now {
                    next += *every;
                }
                next
            }
            Schedule::Cron(cron) => {
                match next_cron(cron, Instant::now().max(this_due), &shared.clock) {
                    Some(next) => next,
                    None => break,
                }
            }
        };
        if running.as_ref().is_some_and(|handle| !handle.is_finished()) {
            shared.metrics.skipped(&def.name);
            tracing::debug!(message = "Run skipped: the previous run is still in flight.", check = %def.name);
            continue;
        }
        running = Some(tokio::spawn(run_task(
            def.clone(),
            shared.clone(),
            this_due,
        )));
    }
    if let Some(handle) = running {
        let _ = handle.await;
    }
}

async fn run_task(def: Arc<CheckDef>, shared: Arc<Shared>, due: Instant) {
    let Ok(_permit) = shared.permits.clone().acquire_owned().await else {
        return;
    };
    shared
        .metrics
        .observe_lag(Instant::now().saturating_duration_since(due));
    let res = (shared.runner)(def).await;
    let _ = shared.results.send(res).await;
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
