//! The scheduler on paused tokio time: offsets, cron, no overlap, the concurrency cap,
//! lag, and graceful shutdown. The runner is a stand-in that only sleeps, so virtual time
//! drives everything and nothing touches the network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nightjar::config::CheckDef;
use nightjar::detect::Tracker;
use nightjar::metrics::Metrics;
use nightjar::outcome::Outcome;
use nightjar::result::{CheckResult, Details, Failure, FailureReason, Status};
use nightjar::schedule::{
    Runner, Scheduler, SchedulerHandle, Update, WallClock, first_due, offset_in, plan,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::support::{load, sample};

/// What the stand-in runner saw.
#[derive(Default)]
struct Log {
    starts: Vec<(String, Instant)>,
    ends: Vec<(String, Instant)>,
    in_flight: usize,
    max_in_flight: usize,
}

fn fake_runner(log: Arc<Mutex<Log>>, run_for: HashMap<&'static str, Duration>) -> Runner {
    let run_for = Arc::new(run_for);
    Arc::new(move |def: Arc<CheckDef>| {
        let log = log.clone();
        let run_for = run_for.clone();
        Box::pin(async move {
            {
                let mut log = log.lock().unwrap();
                log.starts.push((def.name.to_string(), Instant::now()));
                log.in_flight += 1;
                log.max_in_flight = log.max_in_flight.max(log.in_flight);
            }
            let took = run_for
                .get(&*def.name)
                .copied()
                .unwrap_or(Duration::from_millis(10));
            tokio::time::sleep(took).await;
            {
                let mut log = log.lock().unwrap();
                log.ends.push((def.name.to_string(), Instant::now()));
                log.in_flight -= 1;
            }
            CheckResult {
                check: def.name.clone(),
                kind: def.kind(),
                started_at: SystemTime::now(),
                duration: took,
                status: Status::Pass,
                details: Details::None,
            }
        })
    })
}

fn checks_text(checks: &[(&str, &str)]) -> String {
    checks
        .iter()
        .map(|(name, schedule)| {
            format!("[[check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n{schedule}\n\n")
        })
        .collect()
}

struct Harness {
    log: Arc<Mutex<Log>>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<(Arc<str>, nightjar::detect::Tracker)>>,
    results: mpsc::Receiver<nightjar::outcome::Outcome>,
    t0: Instant,
}

/// Starts a scheduler whose wall clock reads `wall_start` now.
fn start(
    text: &str,
    concurrency: usize,
    run_for: HashMap<&'static str, Duration>,
    wall_start: SystemTime,
) -> Harness {
    let config = load(text, &[]);
    let log = Arc::new(Mutex::new(Log::default()));
    let metrics = Arc::new(Metrics::new(&config));
    let (tx, results) = mpsc::channel(10_000);
    let scheduler = Scheduler::new(
        config.checks.clone(),
        fake_runner(log.clone(), run_for),
        metrics.clone(),
        tx,
        concurrency,
        WallClock::anchored(wall_start),
    );
    let (stop, stop_rx) = watch::channel(false);
    let t0 = Instant::now();
    let task = tokio::spawn(scheduler.run(stop_rx));
    Harness {
        log,
        metrics,
        stop,
        task,
        results,
        t0,
    }
}

fn starts_of(log: &Arc<Mutex<Log>>, name: &str, t0: Instant) -> Vec<Duration> {
    log.lock()
        .unwrap()
        .starts
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, at)| *at - t0)
        .collect()
}

fn epoch(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test(start_paused = true)]
async fn interval_checks_start_at_a_stable_offset_and_keep_their_period() {
    let text = checks_text(&[
        ("alpha", "interval = \"10s\""),
        ("beta", "interval = \"10s\""),
    ]);
    // The wall clock reads a multiple of 10s, so each check's first run is at its offset.
    let h = start(&text, 16, HashMap::new(), epoch(1_699_999_980));
    tokio::time::sleep(Duration::from_secs(35)).await;
    let alpha = starts_of(&h.log, "alpha", h.t0);
    let beta = starts_of(&h.log, "beta", h.t0);
    let offset_alpha = offset_in("alpha", Duration::from_secs(10));
    let offset_beta = offset_in("beta", Duration::from_secs(10));
    assert_ne!(offset_alpha, offset_beta, "different names spread out");
    // tokio's timer has millisecond resolution.
    assert!(
        alpha[0].abs_diff(offset_alpha) < Duration::from_millis(1),
        "{alpha:?} vs {offset_alpha:?}"
    );
    assert!(
        beta[0].abs_diff(offset_beta) < Duration::from_millis(1),
        "{beta:?} vs {offset_beta:?}"
    );
    for runs in [&alpha, &beta] {
        assert!(runs.len() >= 3);
        for pair in runs.windows(2) {
            assert!(
                (pair[1] - pair[0]).abs_diff(Duration::from_secs(10)) < Duration::from_millis(1)
            );
        }
    }
    h.stop.send(true).unwrap();
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_offset_survives_a_restart() {
    // Two agents started 3.7s apart on the wall clock fire the same check at the same wall
    // times.
    let interval = Duration::from_secs(30);
    let clock_a = WallClock::anchored(epoch(1_699_999_980));
    let clock_b = WallClock::anchored(epoch(1_699_999_980) + Duration::from_millis(3700));
    let now = Instant::now();
    let wall_a = clock_a.wall_at(first_due("shop-home", interval, now, &clock_a));
    let wall_b = clock_b.wall_at(first_due("shop-home", interval, now, &clock_b));
    let gap = wall_b
        .duration_since(wall_a)
        .unwrap_or_else(|e| e.duration());
    assert_eq!(
        gap.as_nanos() % interval.as_nanos(),
        0,
        "same phase after a restart"
    );
}

#[tokio::test(start_paused = true)]
async fn cron_checks_fire_on_the_wall_clock() {
    // Every 5 seconds (6-field form), and every minute (5-field form).
    let text = checks_text(&[
        ("every5s", "cron = \"*/5 * * * * *\""),
        ("minutely", "cron = \"* * * * *\""),
    ]);
    // Start 2.5s past a minute boundary.
    let h = start(
        &text,
        16,
        HashMap::new(),
        epoch(1_699_999_980) + Duration::from_millis(2500),
    );
    tokio::time::sleep(Duration::from_secs(70)).await;
    let every5 = starts_of(&h.log, "every5s", h.t0);
    assert_eq!(
        every5[0],
        Duration::from_millis(2500),
        "next multiple of 5s"
    );
    assert!(
        every5
            .windows(2)
            .all(|pair| pair[1] - pair[0] == Duration::from_secs(5))
    );
    let minutely = starts_of(&h.log, "minutely", h.t0);
    assert_eq!(
        minutely,
        vec![Duration::from_millis(57_500)],
        "at the next full minute"
    );
    h.stop.send(true).unwrap();
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_run_never_overlaps_its_previous_run_and_skips_are_counted() {
    let text = checks_text(&[("slow", "interval = \"10s\"\ntimeout = \"10s\"")]);
    let h = start(
        &text,
        16,
        HashMap::from([("slow", Duration::from_secs(25))]),
        epoch(1_699_999_980),
    );
    tokio::time::sleep(Duration::from_secs(100)).await;
    let (max_in_flight, starts) = {
        let log = h.log.lock().unwrap();
        (log.max_in_flight, log.starts.len())
    };
    assert_eq!(max_in_flight, 1, "never two runs of one check at once");
    // Runs take 25s on a 10s interval: each run covers two skipped slots.
    assert!((3..=4).contains(&starts), "{starts} runs");
    let metrics = h.metrics.render();
    let skipped = sample(
        &metrics,
        "nightjar_check_skipped_runs_total",
        &[("check", "slow")],
    )
    .expect("skip counter");
    assert!(skipped >= 5.0, "{skipped} skipped runs counted");
    h.stop.send(true).unwrap();
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_cap_holds_and_waiting_shows_as_lag() {
    let names = ["c0", "c1", "c2", "c3", "c4", "c5"];
    let checks: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, "interval = \"1m\"\ntimeout = \"30s\""))
        .collect();
    let run_for: HashMap<&'static str, Duration> = names
        .iter()
        .map(|n| (*n, Duration::from_secs(20)))
        .collect();
    let h = start(&checks_text(&checks), 2, run_for, epoch(1_699_999_980));
    tokio::time::sleep(Duration::from_secs(130)).await;
    let (max_in_flight, starts) = {
        let log = h.log.lock().unwrap();
        (log.max_in_flight, log.starts.len())
    };
    assert_eq!(max_in_flight, 2, "at most 2 runs in flight");
    assert!(starts >= 6, "every check ran");
    let metrics = h.metrics.render();
    let lag_count: u64 = metrics
        .lines()
        .find(|line| line.starts_with("nightjar_scheduler_lag_seconds_count"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("lag histogram");
    assert!(lag_count >= 6);
    let under_100us: u64 = metrics
        .lines()
        .find(|line| {
            line.starts_with("nightjar_scheduler_lag_seconds_bucket")
                && line.contains("le=\"0.0001\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("lag bucket");
    assert!(
        under_100us < lag_count,
        "runs that waited for a permit show lag"
    );
    h.stop.send(true).unwrap();
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_runs_in_flight_and_starts_no_new_ones() {
    let text = checks_text(&[("long", "interval = \"1m\"\ntimeout = \"50s\"")]);
    let mut h = start(
        &text,
        16,
        HashMap::from([("long", Duration::from_secs(40))]),
        epoch(1_699_999_980),
    );
    let offset = offset_in("long", Duration::from_secs(60));
    tokio::time::sleep(offset + Duration::from_secs(1)).await;
    assert_eq!(
        h.log.lock().unwrap().starts.len(),
        1,
        "the run is in flight"
    );
    let stopped_at = Instant::now();
    h.stop.send(true).unwrap();
    h.task.await.unwrap();
    let (ends, starts) = {
        let log = h.log.lock().unwrap();
        (log.ends.clone(), log.starts.len())
    };
    assert_eq!(
        ends.len(),
        1,
        "the run in flight finished before run() returned"
    );
    assert!(ends[0].1 >= stopped_at);
    assert_eq!(starts, 1, "no run started after shutdown");
    // The results channel closes once every run is done.
    assert!(h.results.recv().await.is_some());
    assert!(h.results.recv().await.is_none());
}

/// A check whose first slot is far away runs once within a minute of its start, at its stable
/// offset, then keeps its wall-clock slot; `run_on_load = false` waits for the slot; a daily
/// cron check does the same as an interval check.
#[tokio::test(start_paused = true)]
async fn long_interval_checks_run_within_a_minute_of_start_then_keep_their_slot() {
    let text = checks_text(&[
        ("hourly", "interval = \"1h\""),
        ("twice-a-day", "interval = \"12h\""),
        ("nightly", "cron = \"0 3 * * *\""),
        ("patient", "interval = \"1h\"\nrun_on_load = false"),
    ]);
    // 08:00:05 UTC: the nightly cron is 19 hours away.
    let start_wall = epoch(1_699_934_400 + 4 * 3600 + 5);
    let clock = WallClock::anchored(start_wall);
    let t0 = Instant::now();
    let slot =
        |name: &str, every: u64| first_due(name, Duration::from_secs(every), t0, &clock) - t0;
    let h = start(&text, 16, HashMap::new(), start_wall);
    tokio::time::sleep(Duration::from_secs(61)).await;
    for name in ["hourly", "twice-a-day", "nightly"] {
        let starts = starts_of(&h.log, name, h.t0);
        assert_eq!(
            starts.len(),
            1,
            "{name} ran once in its first minute: {starts:?}"
        );
        let early = offset_in(name, Duration::from_secs(60));
        assert!(
            starts[0].abs_diff(early) < Duration::from_millis(1),
            "{name} ran at its stable offset: {starts:?} vs {early:?}"
        );
    }
    let patient_slot = slot("patient", 3600);
    assert!(
        patient_slot > Duration::from_secs(61),
        "the test needs the slot after the first minute: {patient_slot:?}"
    );
    assert!(
        starts_of(&h.log, "patient", h.t0).is_empty(),
        "run_on_load = false waits for the slot"
    );
    // The next run of the hourly check is at its wall-clock slot, not an hour after the early
    // run.
    let hourly_slot = slot("hourly", 3600);
    assert!(
        hourly_slot > Duration::from_secs(121),
        "the test needs the slot well after the early run: {hourly_slot:?}"
    );
    tokio::time::sleep(hourly_slot - Duration::from_secs(60)).await;
    let hourly = starts_of(&h.log, "hourly", h.t0);
    assert_eq!(hourly.len(), 2, "{hourly:?}");
    assert!(
        hourly[1].abs_diff(hourly_slot) < Duration::from_millis(1),
        "{hourly:?} vs slot {hourly_slot:?}"
    );
    h.stop.send(true).unwrap();
    h.task.await.unwrap();
}

/// A slot less than a minute after the early run is skipped: the check never runs twice in
/// quick succession, and goes on at its slots after that.
#[tokio::test(start_paused = true)]
async fn a_slot_right_after_the_early_run_is_skipped() {
    let minute = Duration::from_secs(60);
    let hour = Duration::from_secs(3600);
    let name = (0..1000)
        .map(|idx| format!("late-{idx}"))
        .find(|name| offset_in(name, minute) >= Duration::from_secs(45))
        .expect("a name with a late early offset");
    let early = offset_in(&name, minute);
    // Anchor the wall clock so that the first slot comes 20 s after the early run.
    let start_wall =
        epoch(1_699_934_400) + offset_in(&name, hour) + hour - early - Duration::from_secs(20);
    let text = checks_text(&[(name.as_str(), "interval = \"1h\"")]);
    let h = start(&text, 16, HashMap::new(), start_wall);
    tokio::time::sleep(hour + 2 * minute).await;
    let starts = starts_of(&h.log, &name, h.t0);
    let slot = early + Duration::from_secs(20);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(
        starts[0].abs_diff(early) < Duration::from_millis(1),
        "{starts:?}"
    );
    assert!(
        starts[1].abs_diff(slot + hour) < Duration::from_millis(1),
        "the slot 20 s after the early run is skipped: {starts:?}"
    );
    h.stop.send(true).unwrap();
    h.task.await.unwrap();
}

/// Checks a reload left unchanged keep their slot: no early run.
#[tokio::test(start_paused = true)]
async fn settled_checks_wait_for_their_slot() {
    let text = checks_text(&[
        ("hourly", "interval = \"1h\""),
        ("fresh", "interval = \"1h\""),
    ]);
    let config = load(&text, &[]);
    let log = Arc::new(Mutex::new(Log::default()));
    let metrics = Arc::new(Metrics::new(&config));
    let (tx, _results) = mpsc::channel(100);
    let start_wall = epoch(1_699_934_400 + 4 * 3600 + 5);
    let scheduler = Scheduler::new(
        config.checks.clone(),
        fake_runner(log.clone(), HashMap::new()),
        metrics,
        tx,
        16,
        WallClock::anchored(start_wall),
    )
    .settled([Arc::<str>::from("hourly")]);
    let clock = WallClock::anchored(start_wall);
    let t0 = Instant::now();
    let hourly_slot = first_due("hourly", Duration::from_secs(3600), t0, &clock) - t0;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(stop_rx));
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(starts_of(&log, "fresh", t0).len(), 1);
    assert!(
        hourly_slot > Duration::from_secs(61),
        "the test needs the slot after the first minute: {hourly_slot:?}"
    );
    assert!(starts_of(&log, "hourly", t0).is_empty());
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// The real agent against nginx: an hourly `tls` check and a `domain` check (12 h by default)
/// both report within a minute of the start, with their expiry series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_agent_reports_hourly_and_daily_checks_within_a_minute() {
    let nginx = crate::support::Nginx::start();
    // Names whose early offset is short keep the test quick; any name reports within 60 s.
    let quick = |prefix: &str| -> String {
        (0..1000)
            .map(|idx| format!("{prefix}-{idx}"))
            .find(|name| offset_in(name, Duration::from_secs(60)) < Duration::from_secs(8))
            .expect("a name with a short offset")
    };
    let (cert, reg) = (quick("cert"), quick("reg"));
    let text = format!(
        "[agent]\nrdap_bootstrap = \"{bootstrap}\"\n\n[[check]]\nname = \"{cert}\"\ntype = \"tls\"\ntarget = \"localhost:{port}\"\ninterval = \"1h\"\ntimeout = \"5s\"\ntls = {{ ca_file = \"{ca}\" }}\n\n[[check]]\nname = \"{reg}\"\ntype = \"domain\"\ndomain = \"good.test\"\ntimeout = \"5s\"\n",
        bootstrap = nginx.url("/rdap/dns.json"),
        port = nginx.https.port(),
        ca = crate::support::pki().ca.display(),
    );
    let agent = crate::support::RunningAgent::start(load(&text, &[])).await;
    let started = std::time::Instant::now();
    crate::support::eventually(
        Duration::from_secs(60),
        "both checks to report with their expiry",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            let tls = sample(
                &metrics,
                "probe_ssl_earliest_cert_expiry",
                &[("check", &cert)],
            );
            let domain = sample(
                &metrics,
                "nightjar_expiry_timestamp_seconds",
                &[("check", &reg), ("expires", "domain")],
            );
            (tls.is_some() && domain.is_some()).then_some(())
        },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(60));
    agent.stop().await;
}

/// A scheduler that takes updates, with a runner that fails the checks named in `failing`.
struct Updatable {
    log: Arc<Mutex<Log>>,
    handle: SchedulerHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<(Arc<str>, Tracker)>>,
    results: mpsc::Receiver<Outcome>,
    t0: Instant,
}

fn failing_runner(inner: Runner, failing: &'static [&'static str]) -> Runner {
    Arc::new(move |def: Arc<CheckDef>| {
        let run = inner(def);
        Box::pin(async move {
            let mut result = run.await;
            if failing.contains(&&*result.check) {
                result.status = Status::Fail(Failure {
                    reason: FailureReason::Connect,
                    detail: "refused".to_string(),
                });
            }
            result
        })
    })
}

fn start_updatable(
    checks: Vec<Arc<CheckDef>>,
    run_for: HashMap<&'static str, Duration>,
    failing: &'static [&'static str],
) -> Updatable {
    let config = load(&checks_text(&[]), &[]);
    let log = Arc::new(Mutex::new(Log::default()));
    let (tx, results) = mpsc::channel(100_000);
    let scheduler = Scheduler::new(
        checks,
        failing_runner(fake_runner(log.clone(), run_for), failing),
        Arc::new(Metrics::new(&config)),
        tx,
        16,
        WallClock::anchored(epoch(1_699_999_980)),
    );
    let (stop, stop_rx) = watch::channel(false);
    let t0 = Instant::now();
    let (handle, task) = scheduler.start(stop_rx);
    Updatable {
        log,
        handle,
        stop,
        task,
        results,
        t0,
    }
}

/// Every outcome received so far, by check name.
fn drain(results: &mut mpsc::Receiver<Outcome>) -> Vec<Outcome> {
    std::iter::from_fn(|| results.try_recv().ok()).collect()
}

/// A reload or a discovery change that adds a check and removes another leaves the checks it
/// does not touch as they were: the same slots (no early run, no shift), the same state, and
/// a run in flight that finishes and hands on its outcome.
#[tokio::test(start_paused = true)]
async fn an_update_leaves_untouched_checks_slots_states_and_runs_alone() {
    let before = load(
        &checks_text(&[
            ("keep", "interval = \"10s\"\ntimeout = \"5s\""),
            ("gone", "interval = \"10s\""),
        ]),
        &[],
    );
    let mut u = start_updatable(
        before.checks.clone(),
        HashMap::from([("keep", Duration::from_secs(4))]),
        &["keep"],
    );
    let offset = offset_in("keep", Duration::from_secs(10));
    // Three runs of `keep` done, the fourth in flight.
    tokio::time::sleep(offset + Duration::from_secs(31)).await;
    let runs_before = starts_of(&u.log, "keep", u.t0);
    assert_eq!(runs_before.len(), 4, "{runs_before:?}");
    let failures_before = drain(&mut u.results)
        .iter()
        .rfind(|outcome| &*outcome.result.check == "keep")
        .map(|outcome| outcome.tracker.consecutive_failures());
    assert_eq!(failures_before, Some(3));

    let after = load(
        &checks_text(&[
            ("keep", "interval = \"10s\"\ntimeout = \"5s\""),
            ("new", "interval = \"10s\""),
        ]),
        &[],
    );
    let update = plan(&before.checks, &after.checks);
    assert_eq!(update.stop, vec![Arc::<str>::from("gone")]);
    assert_eq!(update.start.len(), 1);
    assert_eq!(update.refresh.len(), 1, "keep is refreshed, not restarted");
    let stopped = u.handle.apply(update).await;
    assert_eq!(stopped.len(), 1);
    assert_eq!(&*stopped[0].0, "gone");

    tokio::time::sleep(Duration::from_secs(40)).await;
    let runs = starts_of(&u.log, "keep", u.t0);
    assert_eq!(runs.len(), 8, "{runs:?}");
    for (idx, at) in runs.iter().enumerate() {
        let slot = offset + Duration::from_secs(10) * idx as u32;
        assert!(at.abs_diff(slot) < Duration::from_millis(1), "{runs:?}");
    }
    let outcomes = drain(&mut u.results);
    let keep: Vec<u32> = outcomes
        .iter()
        .filter(|outcome| &*outcome.result.check == "keep")
        .map(|outcome| outcome.tracker.consecutive_failures())
        .collect();
    assert_eq!(
        keep,
        vec![4, 5, 6, 7],
        "the run in flight finished and the state went on"
    );
    assert!(
        outcomes
            .iter()
            .any(|outcome| &*outcome.result.check == "new")
    );
    assert!(
        !outcomes
            .iter()
            .any(|outcome| &*outcome.result.check == "gone")
    );
    u.stop.send(true).unwrap();
    let trackers = u.task.await.unwrap();
    let mut names: Vec<&str> = trackers.iter().map(|(name, _)| &**name).collect();
    names.sort_unstable();
    assert_eq!(names, ["keep", "new"]);
}

/// A removed check with a run in flight stops at once: the run is aborted, its outcome never
/// arrives, and stopping it waits on no other check's run.
#[tokio::test(start_paused = true)]
async fn a_removed_checks_run_in_flight_is_aborted_and_never_reported() {
    let config = load(
        &checks_text(&[
            ("slow", "interval = \"1m\"\ntimeout = \"50s\""),
            ("other", "interval = \"1m\"\ntimeout = \"50s\""),
        ]),
        &[],
    );
    let mut u = start_updatable(
        config.checks.clone(),
        HashMap::from([
            ("slow", Duration::from_secs(40)),
            ("other", Duration::from_secs(40)),
        ]),
        &[],
    );
    let minute = Duration::from_secs(60);
    let latest = offset_in("slow", minute).max(offset_in("other", minute));
    tokio::time::sleep(latest + Duration::from_secs(1)).await;
    assert_eq!(u.log.lock().unwrap().in_flight, 2, "both runs in flight");

    let asked = Instant::now();
    let stopped = u
        .handle
        .apply(Update {
            stop: vec![Arc::from("slow")],
            ..Update::default()
        })
        .await;
    assert_eq!(Instant::now(), asked, "stopping waited for nothing");
    assert_eq!(stopped.len(), 1);

    tokio::time::sleep(3 * minute).await;
    let outcomes = drain(&mut u.results);
    assert!(
        !outcomes
            .iter()
            .any(|outcome| &*outcome.result.check == "slow"),
        "no outcome of the removed check"
    );
    assert!(
        outcomes
            .iter()
            .filter(|outcome| &*outcome.result.check == "other")
            .count()
            >= 3
    );
    assert_eq!(
        starts_of(&u.log, "slow", u.t0).len(),
        1,
        "slow never ran again"
    );
    assert!(
        !u.log
            .lock()
            .unwrap()
            .ends
            .iter()
            .any(|(name, _)| name == "slow"),
        "slow's run was aborted, not finished"
    );
    u.stop.send(true).unwrap();
    u.task.await.unwrap();
}

/// A changed check (another timeout: a new revision) starts again from its state: its
/// failures in a row go on counting.
#[tokio::test(start_paused = true)]
async fn a_changed_check_keeps_its_state() {
    let before = load(&checks_text(&[("flappy", "interval = \"10s\"")]), &[]);
    let mut u = start_updatable(before.checks.clone(), HashMap::new(), &["flappy"]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let seen = drain(&mut u.results).len() as u32;
    assert!(seen >= 2, "{seen} runs");

    let after = load(
        &checks_text(&[("flappy", "interval = \"10s\"\ntimeout = \"3s\"")]),
        &[],
    );
    let update = plan(&before.checks, &after.checks);
    assert_eq!(update.stop.len(), 1);
    assert_eq!(update.start.len(), 1);
    let stopped = u.handle.apply(update).await;
    assert_eq!(stopped[0].1.consecutive_failures(), seen);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let next = drain(&mut u.results);
    assert_eq!(next[0].tracker.consecutive_failures(), seen + 1);
    assert_eq!(next[0].revision, after.checks[0].revision);
    u.stop.send(true).unwrap();
    u.task.await.unwrap();
}

/// Shrinking `[agent] concurrency` in place: runs in flight go on, no new run starts until
/// fewer than the new cap are in flight; growing it lets more start at once.
#[tokio::test(start_paused = true)]
async fn the_concurrency_cap_resizes_in_place() {
    let names = ["c0", "c1", "c2", "c3", "c4", "c5"];
    let checks: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, "interval = \"1m\"\ntimeout = \"50s\""))
        .collect();
    let config = load(&checks_text(&checks), &[]);
    let run_for = names
        .iter()
        .map(|n| (*n, Duration::from_secs(30)))
        .collect();
    let u = start_updatable(config.checks.clone(), run_for, &[]);
    u.handle.set_concurrency(2);
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(u.log.lock().unwrap().max_in_flight, 2);
    u.handle.set_concurrency(1);
    {
        let mut log = u.log.lock().unwrap();
        log.max_in_flight = log.in_flight;
    }
    tokio::time::sleep(Duration::from_secs(240)).await;
    {
        let log = u.log.lock().unwrap();
        assert!(log.max_in_flight <= 2, "no run started above the new cap");
        assert_eq!(log.in_flight.min(1), log.in_flight);
    }
    u.log.lock().unwrap().max_in_flight = 0;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(u.log.lock().unwrap().max_in_flight, 1);
    u.handle.set_concurrency(6);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(u.log.lock().unwrap().max_in_flight > 2);
    u.stop.send(true).unwrap();
    u.task.await.unwrap();
}

/// 50,000 checks on a 60 s interval, then a discovery change: 5,000 removed and 5,000 added.
/// Prints how long each took (a measurement, not an assertion: this is a debug build on a
/// shared machine).
#[tokio::test(start_paused = true)]
async fn an_update_of_5000_among_50000_checks_is_quick() {
    let base = load(&checks_text(&[("base", "interval = \"1m\"")]), &[]).checks[0].clone();
    let named = |prefix: &str, idx: usize| {
        let mut def = (*base).clone();
        def.name = Arc::from(format!("{prefix}-{idx}").as_str());
        def.revision = idx as u64;
        Arc::new(def)
    };
    let checks: Vec<Arc<CheckDef>> = (0..50_000).map(|idx| named("target", idx)).collect();
    let started = std::time::Instant::now();
    let u = start_updatable(checks.clone(), HashMap::new(), &[]);
    // A first, empty update: every loop has been polled once when it is answered.
    u.handle.apply(Update::default()).await;
    let start_took = started.elapsed();

    let mut next: Vec<Arc<CheckDef>> = checks[5_000..].to_vec();
    next.extend((0..5_000).map(|idx| named("added", idx)));
    let planned = std::time::Instant::now();
    let update = plan(&checks, &next);
    let plan_took = planned.elapsed();
    assert_eq!((update.start.len(), update.stop.len()), (5_000, 5_000));
    let applied = std::time::Instant::now();
    let stopped = u.handle.apply(update).await;
    let apply_took = applied.elapsed();
    assert_eq!(stopped.len(), 5_000);
    println!(
        "50,000 checks started in {start_took:?}; a change of 5,000 removed and 5,000 added: planned in {plan_took:?}, applied in {apply_took:?}"
    );
    u.stop.send(true).unwrap();
    assert_eq!(u.task.await.unwrap().len(), 50_000);
}
