//! Detection and the state dir in a running agent, against real nginx: a failure confirmed by
//! retries within `retry_interval` × (`confirm_failures` − 1) plus a run, and a confirmed
//! recovery, in the API and the metrics; SLI counters that retries leave to the schedule; each
//! check's state, history, since and last run, and the RDAP answers, kept across a restart; a
//! corrupt or foreign state file that is a fresh start and is replaced at shutdown.
//!
//! Runs are timed by their `started_at` in the API, never by the test's own sleeps: the test
//! polls every 50 ms, and the checks here run at least a second apart, so it sees every run
//! (each run's history is one longer than the one before, which `Runs::next` asserts).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use nightjar::config::Config;
use nightjar::detect::{Confirm, Tracker};
use nightjar::schedule::{FIRST_RUN_WITHIN, WallClock, first_due, offset_in};
use nightjar::state::{FILE, Saved, SavedCheck};

use crate::support::{Nginx, RunningAgent, eventually, load, sample};

/// One run of a check, and the check's view (`/api/v1/checks/{name}`) right after it.
#[derive(Debug, Clone)]
struct Seen {
    started_at: SystemTime,
    duration: Duration,
    success: bool,
    view: Value,
}

impl Seen {
    fn state(&self) -> &str {
        self.view["state"].as_str().expect("a state")
    }

    fn pending(&self) -> Option<&str> {
        self.view["pending"].as_str()
    }

    fn failures(&self) -> u64 {
        self.view["consecutive_failures"]
            .as_u64()
            .expect("consecutive_failures")
    }

    /// When the run ended (its start is shown to the millisecond).
    fn ended_at(&self) -> SystemTime {
        self.started_at + self.duration
    }

    fn history_len(&self) -> usize {
        self.view["history"].as_array().expect("a history").len()
    }

    /// `since` is when this run started: it decided the state.
    #[track_caller]
    fn decided_the_state(&self) {
        assert_eq!(
            self.view["since"], self.view["last_run"]["started_at"],
            "since is not the start of the run that decided the state: {:#}",
            self.view
        );
    }
}

/// The check's view from the API.
async fn view(agent: &RunningAgent, name: &str) -> Value {
    let (status, body) = agent.get(&format!("/api/v1/checks/{name}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("the API answers JSON")
}

async fn metrics(agent: &RunningAgent) -> String {
    let (status, body) = agent.get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn time_of(value: &Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().expect("a timestamp")).expect("RFC 3339")
}

/// The runs of one check, in the order the API showed them.
struct Runs<'a> {
    agent: &'a RunningAgent,
    name: String,
    seen: Vec<Seen>,
}

impl<'a> Runs<'a> {
    fn new(agent: &'a RunningAgent, name: &str) -> Runs<'a> {
        Runs {
            agent,
            name: name.to_string(),
            seen: Vec::new(),
        }
    }

    /// The check's next run: at first, the last run the API shows (or the first one once it
    /// comes), then each run after the last one returned. Asserts that no run went unseen.
    async fn next(&mut self, within: Duration) -> Seen {
        let after = self.seen.last().map(|seen| seen.started_at);
        let (agent, name) = (self.agent, self.name.as_str());
        let seen = eventually(within, &format!("the next run of {name}"), || async move {
            let view = view(agent, name).await;
            let run = view.get("last_run").filter(|run| !run.is_null())?;
            let started_at = time_of(&run["started_at"]);
            (Some(started_at) != after).then(|| Seen {
                started_at,
                duration: Duration::from_secs_f64(run["duration_seconds"].as_f64().unwrap()),
                success: run["success"].as_bool().unwrap(),
                view: view.clone(),
            })
        })
        .await;
        if let Some(before) = self.seen.last() {
            assert_eq!(
                seen.history_len(),
                before.history_len() + 1,
                "a run of {name} went unseen between {:?} and {:?}",
                before.started_at,
                seen.started_at
            );
        }
        self.seen.push(seen.clone());
        seen
    }
}

/// `checks` with every series (`[agent] metrics = "full"`), whose state and detection series
/// these tests read.
fn full(checks: &str) -> String {
    format!("[agent]\nmetrics = \"full\"\n\n{checks}")
}

/// Asserts the check's `nightjar_check_state` series (only `state` is 1) and its
/// `nightjar_check_consecutive_failures`.
#[track_caller]
fn assert_state_series(metrics: &str, check: &str, state: &str, failures: u32) {
    for value in ["passing", "failing", "unknown", "maintenance"] {
        assert_eq!(
            sample(
                metrics,
                "nightjar_check_state",
                &[("check", check), ("state", value)]
            ),
            Some(f64::from(u8::from(value == state))),
            "nightjar_check_state{{check=\"{check}\",state=\"{value}\"}} while {state}"
        );
    }
    assert_eq!(
        sample(
            metrics,
            "nightjar_check_consecutive_failures",
            &[("check", check)]
        ),
        Some(f64::from(failures)),
        "nightjar_check_consecutive_failures of {check}"
    );
}

/// The value of `name{check, result}`.
#[track_caller]
fn by_result(metrics: &str, name: &str, check: &str, result: &str) -> f64 {
    sample(metrics, name, &[("check", check), ("result", result)])
        .unwrap_or_else(|| panic!("no {name}{{check=\"{check}\",result=\"{result}\"}}"))
}

/// The sum of every series of `name` for `check` (all results, all reasons).
fn total(metrics: &str, name: &str, check: &str) -> f64 {
    let label = format!("check=\"{check}\"");
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, labels) = series.split_once('{')?;
            (series_name == name && labels.contains(&label))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// An `http` check of `url` with more keys.
fn http_check(name: &str, url: &str, extra: &str) -> String {
    format!("[[check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{url}\"\n{extra}\n")
}

/// `gap`, less a margin for start times the API shows to the millisecond.
fn at_least(gap: Duration) -> Duration {
    gap - Duration::from_millis(2)
}

const RETRY: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_failure_is_confirmed_by_retries_and_so_is_the_recovery() {
    let nginx = Nginx::start();
    let target = nginx.www().join("flaky");
    std::fs::write(&target, "up\n").unwrap();
    let text = http_check(
        "flaky",
        &nginx.url("/flaky"),
        "interval = \"4s\"\ntimeout = \"1s\"\nretry_interval = \"1s\"\nconfirm_failures = 3\nconfirm_recoveries = 2",
    );
    let agent = RunningAgent::start(load(&full(&text), &[])).await;
    let mut runs = Runs::new(&agent, "flaky");
    let up = runs.next(Duration::from_secs(10)).await;
    assert!(up.success, "{:#}", up.view);
    assert_eq!((up.state(), up.pending()), ("passing", None));

    // The target goes, then comes back.
    std::fs::remove_file(&target).unwrap();
    outage_confirmed(&agent, &mut runs).await;
    std::fs::write(&target, "up again\n").unwrap();
    recovery_confirmed(&agent, &mut runs).await;
    agent.stop().await;
}

/// The next regular run fails, which decides nothing yet; retries, `retry_interval` apart,
/// confirm the failure within `retry_interval` x (`confirm_failures` - 1) plus one run.
async fn outage_confirmed(agent: &RunningAgent, runs: &mut Runs<'_>) {
    let first = runs.next(Duration::from_secs(10)).await;
    assert!(!first.success);
    assert_eq!(first.view["last_run"]["status_code"], 404);
    assert_eq!(
        (first.state(), first.pending(), first.failures()),
        ("passing", Some("failing, confirming 1 of 3"), 1),
        "{:#}",
        first.view
    );
    let text = metrics(agent).await;
    let (_, page) = agent.get("/checks/flaky").await;
    assert_eq!(
        view(agent, "flaky").await["last_run"],
        first.view["last_run"],
        "a retry came before the metrics and the page were read"
    );
    assert_state_series(&text, "flaky", "passing", 1);
    assert!(
        page.contains("<dt>Confirming</dt><dd>failing, confirming 1 of 3</dd>"),
        "{page}"
    );

    // Retries, retry_interval apart, confirm it.
    let second = runs.next(Duration::from_secs(5)).await;
    assert_eq!(
        (
            second.success,
            second.state(),
            second.pending(),
            second.failures()
        ),
        (false, "passing", Some("failing, confirming 2 of 3"), 2)
    );
    let third = runs.next(Duration::from_secs(5)).await;
    assert_eq!(
        (
            third.success,
            third.state(),
            third.pending(),
            third.failures()
        ),
        (false, "failing", None, 3)
    );
    third.decided_the_state();
    for (before, after) in [(&first, &second), (&second, &third)] {
        let gap = after.started_at.duration_since(before.ended_at()).unwrap();
        assert!(gap >= at_least(RETRY), "a retry {gap:?} after a run");
    }
    // Decided within retry_interval x (confirm_failures - 1) plus one run after the first
    // failed run started (by the schedule alone, it would take two more intervals, 8 s).
    let confirmed = third.ended_at().duration_since(first.started_at).unwrap();
    assert!(
        confirmed <= RETRY * 2 + TIMEOUT,
        "failing {confirmed:?} after the first failed run"
    );
    let text = metrics(agent).await;
    assert_state_series(&text, "flaky", "failing", 3);
    assert_eq!(
        by_result(&text, "nightjar_check_runs_total", "flaky", "failure"),
        1.0
    );
    assert_eq!(
        by_result(&text, "nightjar_check_retry_runs_total", "flaky", "failure"),
        2.0
    );
}

/// The target is back: the next regular run passes, and a retry confirms the recovery.
async fn recovery_confirmed(agent: &RunningAgent, runs: &mut Runs<'_>) {
    let back = runs.next(Duration::from_secs(10)).await;
    assert_eq!(
        (back.success, back.state(), back.pending(), back.failures()),
        (true, "failing", Some("recovering, confirming 1 of 2"), 0)
    );
    assert_state_series(&metrics(agent).await, "flaky", "failing", 0);
    let recovered = runs.next(Duration::from_secs(5)).await;
    assert_eq!(
        (
            recovered.success,
            recovered.state(),
            recovered.pending(),
            recovered.failures()
        ),
        (true, "passing", None, 0)
    );
    recovered.decided_the_state();
    let gap = recovered
        .started_at
        .duration_since(back.ended_at())
        .unwrap();
    assert!(
        gap >= at_least(RETRY) && gap <= RETRY + TIMEOUT,
        "the recovery was confirmed {gap:?} after the first passing run"
    );
    let text = metrics(agent).await;
    assert_state_series(&text, "flaky", "passing", 0);
    assert_eq!(
        by_result(&text, "nightjar_check_retry_runs_total", "flaky", "success"),
        1.0
    );
}

/// Where `at` falls in a check's interval, counted from its slot (its offset).
fn phase(at: SystemTime, name: &str, interval: Duration) -> Duration {
    let since = at.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let (every, offset) = (interval.as_nanos(), offset_in(name, interval).as_nanos());
    Duration::from_nanos(((since + every - offset) % every) as u64)
}

/// How many of the check's slots passed from `started` to its last run in `seen`, asserting
/// that the regular runs in `seen` came at slots, one per slot from the first after
/// `started`, and the retries between slots: this blip's runs are regular, regular, regular
/// (failed), retry, retry, regular, regular.
fn slots_elapsed(seen: &[Seen], name: &str, interval: Duration, started: SystemTime) -> usize {
    let regular: Vec<bool> = seen
        .iter()
        .map(|seen| phase(seen.started_at, name, interval) < Duration::from_millis(500))
        .collect();
    assert_eq!(
        regular,
        [true, true, true, false, false, true, true],
        "which runs came at a slot: {:?}",
        seen.iter()
            .map(|seen| phase(seen.started_at, name, interval))
            .collect::<Vec<_>>()
    );
    let slots: Vec<SystemTime> = seen
        .iter()
        .zip(&regular)
        .filter(|(_, regular)| **regular)
        .map(|(seen, _)| seen.started_at)
        .collect();
    for pair in slots.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            gap.abs_diff(interval) < Duration::from_millis(500),
            "regular runs {gap:?} apart"
        );
    }
    // The first run came at the first slot after the start: no slot went unrun.
    let first = slots[0].duration_since(started).unwrap();
    assert!(
        first < interval + Duration::from_millis(500),
        "first run {first:?} after the start"
    );
    slots.len()
}

#[tokio::test]
async fn retries_leave_the_sli_counters_to_the_schedule() {
    let nginx = Nginx::start();
    let target = nginx.www().join("blip");
    std::fs::write(&target, "up\n").unwrap();
    let interval = Duration::from_secs(3);
    let text = http_check(
        "sli",
        &nginx.url("/blip"),
        "interval = \"3s\"\ntimeout = \"1s\"\nretry_interval = \"1s\"\nconfirm_failures = 3",
    );
    let started = SystemTime::now();
    let agent = RunningAgent::start(load(&full(&text), &[])).await;
    let mut runs = Runs::new(&agent, "sli");
    for _ in 0..2 {
        assert!(runs.next(Duration::from_secs(10)).await.success);
    }
    // A blip: one regular run and one retry fail, then a retry passes (nothing decided).
    std::fs::remove_file(&target).unwrap();
    let failed = runs.next(Duration::from_secs(10)).await;
    assert!(!failed.success);
    let retried = runs.next(Duration::from_secs(5)).await;
    assert_eq!(
        (retried.success, retried.pending()),
        (false, Some("failing, confirming 2 of 3"))
    );
    std::fs::write(&target, "up again\n").unwrap();
    let passed = runs.next(Duration::from_secs(5)).await;
    assert_eq!(
        (passed.success, passed.state(), passed.pending()),
        (true, "passing", None)
    );
    for _ in 0..2 {
        assert!(runs.next(Duration::from_secs(10)).await.success);
    }
    // Read right after a regular run: the next one is an interval away.
    let text = metrics(&agent).await;
    let last = view(&agent, "sli").await;
    let seen = runs.seen;
    agent.stop().await;

    let elapsed = slots_elapsed(&seen, "sli", interval, started) as f64;

    // The SLI counters hold the slots' runs only; the retries are counted apart.
    let runs_total = total(&text, "nightjar_check_runs_total", "sli");
    let retries = total(&text, "nightjar_check_retry_runs_total", "sli");
    assert_eq!(runs_total, elapsed, "runs_total against the slots elapsed");
    assert_eq!(
        by_result(&text, "nightjar_check_runs_total", "sli", "success"),
        4.0
    );
    assert_eq!(
        by_result(&text, "nightjar_check_runs_total", "sli", "failure"),
        1.0
    );
    assert_eq!(
        by_result(&text, "nightjar_check_retry_runs_total", "sli", "success"),
        1.0
    );
    assert_eq!(
        by_result(&text, "nightjar_check_retry_runs_total", "sli", "failure"),
        1.0
    );
    assert_eq!(
        total(&text, "nightjar_check_failures_total", "sli"),
        1.0,
        "failures by reason count the regular failed run only"
    );
    assert_eq!(
        total(&text, "nightjar_check_duration_seconds_count", "sli"),
        runs_total,
        "the duration histogram counts the regular runs only"
    );
    assert_eq!(
        total(&text, "nightjar_check_skipped_runs_total", "sli"),
        0.0
    );
    // Every run the API has is one of the two.
    let history = last["history"].as_array().unwrap();
    assert_eq!(history.len(), seen.len());
    assert_eq!(runs_total + retries, history.len() as f64);
}

/// A check name whose early first run (`schedule::early_run`) comes 1 to 3 s after an agent
/// starts, and whose first slot of `interval` is not within the next minutes: a restarted
/// agent shows the run it restored before it runs the check again.
fn early_name(prefix: &str, interval: Duration) -> String {
    let clock = WallClock::now();
    let now = tokio::time::Instant::now();
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|name| {
            let early = offset_in(name, FIRST_RUN_WITHIN);
            let slot = first_due(name, interval, now, &clock) - now;
            (Duration::from_secs(1)..Duration::from_secs(3)).contains(&early)
                && slot > Duration::from_secs(600)
        })
        .expect("a name")
}

/// The parts of a check's page a restart must not change: the history (strip and table) and
/// the time its state began.
fn kept_on_page(page: &str) -> (&str, &str) {
    let history = page
        .split_once("<h2>History</h2>")
        .and_then(|(_, rest)| rest.split_once("</details>"))
        .map(|(history, _)| history)
        .unwrap_or_else(|| panic!("no history on the page:\n{page}"));
    let since = page
        .split_once("title=\"since ")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(since, _)| since)
        .unwrap_or_else(|| panic!("no since on the page:\n{page}"));
    (history, since)
}

/// A domain check's view without what moves with the clock (days left).
fn without_days_left(mut view: Value) -> Value {
    if let Some(domain) = view["last_run"]["domain"].as_object_mut() {
        domain.remove("days_left");
    }
    view
}

/// How often nginx answered an RDAP lookup of good.test.
fn lookups(nginx: &Nginx) -> usize {
    nginx
        .rdap_requests()
        .iter()
        .filter(|line| line.starts_with("GET /rdap/domain/good.test "))
        .count()
}

#[tokio::test]
async fn a_restart_keeps_state_history_since_and_the_rdap_answer() {
    let nginx = Nginx::start();
    let dir = tempfile::Builder::new()
        .prefix("nightjar-state-")
        .tempdir()
        .unwrap();
    let target = nginx.www().join("kept");
    std::fs::write(&target, "up\n").unwrap();
    let domain = early_name("registration", Duration::from_secs(12 * 3600));
    let text = format!(
        "[agent]\nstate_dir = \"{}\"\nrdap_bootstrap = \"{}\"\nmetrics = \"full\"\n\n{}\n[[check]]\nname = \"{domain}\"\ntype = \"domain\"\ndomain = \"good.test\"\ntimeout = \"5s\"\ncache_for = \"1h\"\n",
        dir.path().display(),
        nginx.url("/rdap/dns.json"),
        http_check(
            "web",
            &nginx.url("/kept"),
            "interval = \"2s\"\ntimeout = \"1s\"\nconfirm_failures = 3"
        ),
    );

    let config = load(&text, &[]);
    let region = config.agent.region.clone();
    let before = first_life(&nginx, config, &domain, &target).await;
    assert!(dir.path().join(FILE).is_file(), "no state file at shutdown");
    assert!(
        !dir.path().join(format!("{FILE}.tmp")).exists(),
        "a temporary state file was left behind"
    );
    let saved = nightjar::state::load(dir.path(), &region).expect("a usable state file");
    assert_eq!(
        saved.checks["web"].history.len(),
        before.web["history"].as_array().unwrap().len()
    );
    assert_eq!(
        saved
            .rdap
            .iter()
            .map(|answer| answer.domain.as_str())
            .collect::<Vec<_>>(),
        ["good.test"]
    );
    second_life(&nginx, load(&text, &[]), &domain, before).await;
}

/// What the first agent showed when it stopped.
struct Before {
    /// The http check's view and page, right after a failed run (1 of 3).
    web: Value,
    page: String,
    failed: Seen,
    /// The domain check's view, and its run (an RDAP lookup).
    domain: Value,
    looked_up: Seen,
}

/// The first agent: the domain check looks good.test up once; `web` passes twice, then fails
/// once (its state confirming the failure); the agent stops right after that run.
async fn first_life(nginx: &Nginx, config: Config, domain: &str, target: &Path) -> Before {
    let agent = RunningAgent::start(config).await;
    let looked_up = Runs::new(&agent, domain)
        .next(Duration::from_secs(10))
        .await;
    assert!(looked_up.success, "{:#}", looked_up.view);
    assert_eq!(looked_up.view["last_run"]["domain"]["cached"], false);
    eventually(
        Duration::from_secs(5),
        "nginx to log the lookup",
        || async { (lookups(nginx) == 1).then_some(()) },
    )
    .await;
    let mut web = Runs::new(&agent, "web");
    for _ in 0..2 {
        assert!(web.next(Duration::from_secs(5)).await.success);
    }
    std::fs::remove_file(target).unwrap();
    let failed = web.next(Duration::from_secs(5)).await;
    assert_eq!(
        (failed.success, failed.pending()),
        (false, Some("failing, confirming 1 of 3"))
    );
    // Right after a run: the next is two seconds away.
    let before = Before {
        web: view(&agent, "web").await,
        page: agent.get("/checks/web").await.1,
        domain: view(&agent, domain).await,
        failed,
        looked_up,
    };
    assert_eq!(before.web["last_run"], before.failed.view["last_run"]);
    agent.stop().await;
    before
}

/// The second agent, on the same state dir: the same views, page and state series before
/// any run; the confirmation goes on where it was; the domain check answers from the
/// restored cache, so RDAP is not asked again.
async fn second_life(nginx: &Nginx, config: Config, domain: &str, before: Before) {
    let agent = RunningAgent::start(config).await;
    let after = view(&agent, "web").await;
    let (_, after_page) = agent.get("/checks/web").await;
    let after_domain = view(&agent, domain).await;
    let text_after = metrics(&agent).await;
    assert_eq!(
        after, before.web,
        "the view of web changed across the restart"
    );
    assert_eq!(kept_on_page(&after_page), kept_on_page(&before.page));
    assert_eq!(
        without_days_left(after_domain),
        without_days_left(before.domain),
        "the view of the domain check changed across the restart"
    );
    assert_state_series(&text_after, "web", "passing", 1);

    // The next failed run is the second of three.
    let mut web = Runs::new(&agent, "web");
    assert_eq!(
        web.next(Duration::from_secs(1)).await.started_at,
        before.failed.started_at
    );
    let again = web.next(Duration::from_secs(5)).await;
    assert_eq!(
        (again.success, again.pending(), again.failures()),
        (false, Some("failing, confirming 2 of 3"), 2),
        "{:#}",
        again.view
    );
    // The domain check's early run.
    let mut registration = Runs::new(&agent, domain);
    registration.next(Duration::from_secs(1)).await;
    let cached = registration.next(Duration::from_secs(10)).await;
    assert!(cached.success, "{:#}", cached.view);
    assert_eq!(cached.view["last_run"]["domain"]["cached"], true);
    assert_eq!(
        cached.view["last_run"]["domain"]["expiry"],
        before.looked_up.view["last_run"]["domain"]["expiry"]
    );
    agent.stop().await;
    assert_eq!(lookups(nginx), 1, "RDAP was asked again before cache_for");
    assert_eq!(
        nginx.rdap_requests().len(),
        2,
        "the bootstrap and one lookup: {:?}",
        nginx.rdap_requests()
    );
}

/// A state file of region `elsewhere` whose check `web` failed its last 30 runs.
fn foreign_state() -> Vec<u8> {
    let mut saved = Saved::new("elsewhere", nightjar::time::unix_now());
    let mut tracker = Tracker::default();
    for _ in 0..30 {
        tracker.record(false, Confirm::default());
    }
    saved.checks.insert(
        "web".to_string(),
        SavedCheck {
            tracker,
            since_ms: Some(1_000_000_000_000),
            history: vec![(false, 1_000_000); 30],
            last: None,
        },
    );
    serde_json::to_vec(&saved).unwrap()
}

/// Starts an agent on a state dir holding `bytes` as its state file; asserts it starts afresh,
/// runs its check, and leaves a state file of its own.
async fn fresh_start(nginx: &Nginx, what: &str, bytes: &[u8]) {
    let dir = tempfile::Builder::new()
        .prefix("nightjar-state-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join(FILE), bytes).unwrap();
    let text = format!(
        "[agent]\nstate_dir = \"{}\"\n\n{}",
        dir.path().display(),
        http_check(
            "web",
            &nginx.url("/ok"),
            "interval = \"1s\"\ntimeout = \"500ms\""
        )
    );
    let config = load(&text, &[]);
    let region = config.agent.region.clone();
    let agent = RunningAgent::start(config).await;
    let mut runs = Runs::new(&agent, "web");
    let first = runs.next(Duration::from_secs(5)).await;
    let second = runs.next(Duration::from_secs(5)).await;
    for (n, seen) in [&first, &second].into_iter().enumerate() {
        assert_eq!(
            (
                seen.success,
                seen.state(),
                seen.failures(),
                seen.history_len()
            ),
            (true, "passing", 0, n + 1),
            "{what}: not a fresh start: {:#}",
            seen.view
        );
    }
    first.decided_the_state();
    agent.stop().await;

    let saved = nightjar::state::load(dir.path(), &region)
        .unwrap_or_else(|| panic!("{what}: no usable state file after the agent stopped"));
    assert!(!dir.path().join(format!("{FILE}.tmp")).exists());
    let kept = &saved.checks["web"];
    assert!(
        kept.history.len() >= 2 && kept.history.iter().all(|(passed, _)| *passed),
        "{what}: {:?}",
        kept.history
    );
    let since = UNIX_EPOCH + Duration::from_millis(kept.since_ms.unwrap() as u64);
    assert_eq!(since, first.started_at, "{what}");
}

#[tokio::test]
async fn a_corrupt_or_foreign_state_file_is_a_fresh_start_and_is_replaced() {
    let nginx = Nginx::start();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage bytes", garbage),
        ("an empty file", Vec::new()),
        (
            "another program's JSON",
            br#"{"format":"something-else","version":1,"checks":{"web":{}}}"#.to_vec(),
        ),
        ("another region's state", foreign_state()),
    ];
    for (what, bytes) in cases {
        fresh_start(&nginx, what, &bytes).await;
    }
}
