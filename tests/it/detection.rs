//! Detection on paused time: confirmation by consecutive results, retries `retry_interval`
//! apart while a change is unconfirmed, and maintenance windows that skip runs. The runner is
//! a stand-in that passes or fails by a script, so virtual time drives everything.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nightjar::config::CheckDef;
use nightjar::detect::{Change, Verdict};
use nightjar::maintenance::{Maintenance, Mode, Selector, When, Window};
use nightjar::metrics::Metrics;
use nightjar::outcome::Outcome;
use nightjar::result::{CheckResult, Details, Failure, FailureReason, Status};
use nightjar::schedule::{Runner, Scheduler, WallClock};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::support::load;

/// A runner whose n-th run (from 0) passes when `script(n)` says so.
fn scripted(script: fn(usize) -> bool, runs: Arc<Mutex<Vec<Instant>>>) -> Runner {
    Arc::new(move |def: Arc<CheckDef>| {
        let runs = runs.clone();
        Box::pin(async move {
            let n = {
                let mut runs = runs.lock().unwrap();
                runs.push(Instant::now());
                runs.len() - 1
            };
            let status = if script(n) {
                Status::Pass
            } else {
                Status::Fail(Failure {
                    reason: FailureReason::Status,
                    detail: "scripted failure".into(),
                })
            };
            CheckResult {
                check: def.name.clone(),
                kind: def.kind(),
                started_at: SystemTime::now(),
                duration: Duration::from_millis(5),
                status,
                details: Details::None,
            }
        })
    })
}

struct Run {
    outcomes: mpsc::Receiver<Outcome>,
    runs: Arc<Mutex<Vec<Instant>>>,
    stop: watch::Sender<bool>,
    t0: Instant,
}

/// One check every 60 s (its slot at wall time 0 mod 60 when its offset is 0: the wall clock
/// is anchored so that its first slot comes at t0 + `first_slot`).
fn start(check: &str, script: fn(usize) -> bool, maintenance: Arc<Maintenance>) -> Run {
    let config = load(check, &[]);
    let def = config.checks[0].clone();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let (tx, outcomes) = mpsc::channel(1000);
    let wall = wall_start(&def.name);
    let scheduler = Scheduler::new(
        config.checks.clone(),
        scripted(script, runs.clone()),
        Arc::new(Metrics::new(&config)),
        tx,
        4,
        WallClock::anchored(wall),
    )
    .maintenance(maintenance);
    let (stop, stop_rx) = watch::channel(false);
    let t0 = Instant::now();
    tokio::spawn(scheduler.run(stop_rx));
    Run {
        outcomes,
        runs,
        stop,
        t0,
    }
}

/// The wall time the scheduler starts at: the check `name`'s first 60 s slot is 1 s away.
fn wall_start(name: &str) -> SystemTime {
    let offset = nightjar::schedule::offset_in(name, Duration::from_secs(60));
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + offset - Duration::from_secs(1)
}

fn check(extra: &str) -> String {
    format!(
        "[[check]]\nname = \"web\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\ninterval = \"60s\"\nrun_on_load = false\n{extra}\n"
    )
}

impl Run {
    /// Runs virtual time for `secs` and returns the outcomes in order, each with its start
    /// in whole seconds after t0.
    async fn collect(&mut self, secs: u64) -> Vec<(u64, Outcome)> {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let _ = self.stop.send(true);
        let starts: Vec<u64> = self
            .runs
            .lock()
            .unwrap()
            .iter()
            .map(|at| (*at - self.t0).as_secs())
            .collect();
        let mut out = Vec::new();
        while let Some(outcome) = self.outcomes.recv().await {
            out.push((starts[out.len()], outcome));
        }
        out
    }
}

fn fails_from_second_run(n: usize) -> bool {
    n == 0
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_confirmed_by_retries_then_the_schedule_resumes() {
    let text = check("retry_interval = \"10s\"\nconfirm_failures = 3");
    let mut run = start(&text, fails_from_second_run, Arc::default());
    let outcomes = run.collect(190).await;
    let seen: Vec<(u64, bool, Option<Verdict>)> = outcomes
        .iter()
        .map(|(at, o)| (*at, o.retry, o.tracker.decided()))
        .collect();
    // The slot at 1 s passes; the one at 61 s fails (1 of 3); retries at 71 s and 81 s
    // confirm it: within retry_interval x (confirm_failures - 1) of the first failed run.
    // Decided, the check is back on its schedule (121 s, 181 s) with no retries.
    assert_eq!(
        seen,
        vec![
            (1, false, Some(Verdict::Passing)),
            (61, false, Some(Verdict::Passing)),
            (71, true, Some(Verdict::Passing)),
            (81, true, Some(Verdict::Failing)),
            (121, false, Some(Verdict::Failing)),
            (181, false, Some(Verdict::Failing)),
        ]
    );
    assert_eq!(
        outcomes[3].1.change,
        Change::Decided {
            from: Some(Verdict::Passing),
            to: Verdict::Failing
        }
    );
    assert_eq!(
        outcomes[2].1.tracker.pending().unwrap().to_string(),
        "failing, confirming 2 of 3"
    );
    assert_eq!(outcomes[5].1.tracker.consecutive_failures(), 5);
}

fn one_blip(n: usize) -> bool {
    n != 1
}

#[tokio::test(start_paused = true)]
async fn a_blip_is_not_a_failure_and_stops_the_retries() {
    let text = check("retry_interval = \"10s\"\nconfirm_failures = 2");
    let mut run = start(&text, one_blip, Arc::default());
    let outcomes = run.collect(130).await;
    let seen: Vec<(u64, bool)> = outcomes.iter().map(|(at, o)| (*at, o.retry)).collect();
    assert_eq!(
        seen,
        vec![(1, false), (61, false), (71, true), (121, false)]
    );
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| o.tracker.decided() == Some(Verdict::Passing)),
        "one failed run never decided the state"
    );
}

fn always_fails(_: usize) -> bool {
    false
}

#[tokio::test(start_paused = true)]
async fn without_confirmation_one_failure_decides_and_no_retry_follows() {
    let text = check("retry_interval = \"10s\"");
    let mut run = start(&text, always_fails, Arc::default());
    let outcomes = run.collect(70).await;
    let seen: Vec<(u64, bool, Option<Verdict>)> = outcomes
        .iter()
        .map(|(at, o)| (*at, o.retry, o.tracker.decided()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, false, Some(Verdict::Failing)),
            (61, false, Some(Verdict::Failing))
        ]
    );
}

fn always_passes(_: usize) -> bool {
    true
}

#[tokio::test(start_paused = true)]
async fn a_skip_window_leaves_no_runs_and_a_mark_window_marks_them() {
    // The anchored wall clock starts 1 s before the first slot; windows are in wall time.
    let config = load(&check(""), &[]);
    let wall0 = wall_start(&config.checks[0].name);
    let window = |name: &str, from: u64, to: u64, mode| Window {
        name: name.into(),
        when: When::Between {
            start: wall0 + Duration::from_secs(from),
            end: wall0 + Duration::from_secs(to),
        },
        selector: Selector {
            checks: vec!["web".into()],
            labels: BTreeMap::new(),
        },
        mode,
        reason: None,
        ad_hoc: false,
    };
    let maintenance = Arc::new(Maintenance::new(vec![
        window("upgrade", 50, 130, Mode::Skip),
        window("watch", 170, 200, Mode::Mark),
    ]));
    let mut run = start(&check(""), always_passes, maintenance);
    let outcomes = run.collect(250).await;
    let seen: Vec<(u64, Option<String>)> = outcomes
        .iter()
        .map(|(at, o)| {
            (
                *at,
                o.maintenance.as_ref().map(|open| open.name.to_string()),
            )
        })
        .collect();
    // 61 s and 121 s fall in the skip window: no runs. 181 s is marked.
    assert_eq!(
        seen,
        vec![(1, None), (181, Some("watch".into())), (241, None)]
    );
}
