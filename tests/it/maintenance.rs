//! Maintenance windows end to end: `[[maintenance]]` tables checked at load time, a cron
//! window against a real agent probing nginx (marking runs or skipping them), ad hoc windows
//! through the authenticated API that survive a restart, and the generated quorum alert in a
//! real Prometheus, silent while a window is open and firing once it is ended.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::{
    Nginx, Prometheus, RunningAgent, config_errors, eventually, http_get, http_request_body,
    http_request_with, load, run_ok, sample,
};

/// Asserts `errors` holds `line` as one whole line.
#[track_caller]
fn has_line(errors: &str, line: &str) {
    assert!(
        errors.lines().any(|got| got == line),
        "no line {line:?} in:\n{errors}"
    );
}

/// `[[maintenance]]` tables, each wrong in its own way (their line numbers are asserted).
const BAD_WINDOWS: &str = r#"[[check]]
name = "web"
type = "http"
url = "http://127.0.0.1:1/"

[[check]]
name = "api"
type = "http"
url = "http://127.0.0.1:1/"

[[maintenance]]
name = "both"
start = "2026-12-01T02:00:00Z"
end = "2026-12-01T03:00:00Z"
cron = "0 2 * * *"
duration = "30m"

[[maintenance]]
name = "no-duration"
cron = "0 2 * * *"

[[maintenance]]
name = "backwards"
start = "2026-12-01T03:00:00Z"
end = "2026-12-01T02:00:00Z"

[[maintenance]]
name = "not-a-time"
start = "next tuesday"
end = "2026-12-01T03:00:00Z"

[[maintenance]]
name = "typo"
cron = "0 2 * * *"
duration = "30m"
checks = ["wbe"]
mode = "silence"

[[maintenance]]
name = "typo"
cron = "0 2 * * *"
duration = "30m"

[[maintenance]]
name = "too-long"
cron = "0 2 * * *"
duration = "8d"
reasn = "backups"

[[maintenance]]
name = "bad-cron"
cron = "0 25 * * *"
duration = "30m"
"#;

/// Every way a `[[maintenance]]` table can be wrong, each reported at its place with a hint.
#[test]
fn maintenance_tables_are_checked_with_positions_and_hints() {
    let errors = config_errors("maintenance.toml", BAD_WINDOWS);
    let either = "(hint: give start = \"2026-12-01T02:00:00Z\" and end = \"2026-12-01T03:00:00Z\", or cron = \"0 2 * * *\" and duration = \"30m\" (UTC))";
    has_line(
        &errors,
        &format!(
            "maintenance.toml:11:1: maintenance \"both\" needs either start and end, or cron and duration {either}"
        ),
    );
    has_line(
        &errors,
        &format!(
            "maintenance.toml:18:1: maintenance \"no-duration\" needs either start and end, or cron and duration {either}"
        ),
    );
    has_line(
        &errors,
        "maintenance.toml:25:7: the window ends (2026-12-01T02:00:00Z) before it starts (2026-12-01T03:00:00Z) (hint: end must be after start)",
    );
    let not_a_time = errors
        .lines()
        .find(|line| {
            line.starts_with("maintenance.toml:29:9: \"next tuesday\" is not an RFC 3339 time: ")
        })
        .unwrap_or_else(|| panic!("no error for the start that is not a time:\n{errors}"));
    assert!(
        not_a_time.ends_with("(hint: write it like \"2026-12-01T02:00:00Z\" or with an offset, \"2026-12-01T03:00:00+01:00\")"),
        "{not_a_time}"
    );
    has_line(
        &errors,
        "maintenance.toml:36:11: no check is named \"wbe\" (hint: did you mean \"web\"?)",
    );
    has_line(
        &errors,
        "maintenance.toml:37:8: unknown maintenance mode \"silence\" (hint: use \"mark\" (runs go on, results are marked) or \"skip\" (no runs))",
    );
    has_line(
        &errors,
        "maintenance.toml:40:8: maintenance \"typo\" is defined twice (hint: it is first defined at maintenance.toml:33:8; rename one)",
    );
    has_line(
        &errors,
        "maintenance.toml:47:12: duration 8days is out of range (hint: a window lasts more than nothing and at most 7 days)",
    );
    has_line(
        &errors,
        "maintenance.toml:48:1: unknown key `reasn` in maintenance \"too-long\" (hint: did you mean `reason`?)",
    );
    // One line, with the cron crate's own words on what is wrong.
    has_line(
        &errors,
        "maintenance.toml:52:8: invalid cron expression \"0 25 * * *\": Hours must be less than 23. ('25' specified.) (hint: use the crontab form, minute first, in UTC: \"0 2 * * *\" is 02:00 UTC daily)",
    );
    // Nothing else: every problem above is reported once, and the valid checks none.
    assert_eq!(
        errors
            .lines()
            .filter(|line| line.starts_with("maintenance.toml:"))
            .count(),
        10,
        "{errors}"
    );
}

/// The detection settings out of range, in `[defaults]` and per check.
#[test]
fn detection_settings_out_of_range_are_config_errors() {
    let text = r#"[defaults]
confirm_failures = 0

[[check]]
name = "web"
type = "http"
url = "http://127.0.0.1:1/"
interval = "30s"
retry_interval = "30s"
confirm_recoveries = 101

[[check]]
name = "api"
type = "http"
url = "http://127.0.0.1:1/"
interval = "10s"
retry_interval = "500ms"
confirm_failures = 101
"#;
    let errors = config_errors("detect.toml", text);
    let range = "(hint: give the runs in a row that decide a change, 1 (at once) to 100)";
    has_line(
        &errors,
        &format!("detect.toml:2:20: confirm_failures = 0 is out of range {range}"),
    );
    has_line(
        &errors,
        "detect.toml:9:1: retry_interval 30s is not shorter than the interval 30s of check \"web\" (hint: a retry comes before the next regular run; lower retry_interval or leave it out)",
    );
    has_line(
        &errors,
        &format!("detect.toml:10:22: confirm_recoveries = 101 is out of range {range}"),
    );
    has_line(
        &errors,
        "detect.toml:17:18: retry_interval 500ms is shorter than 1s (hint: retries come at most once a second; use retry_interval = \"10s\" or so)",
    );
    has_line(
        &errors,
        &format!("detect.toml:18:20: confirm_failures = 101 is out of range {range}"),
    );
    // In range, the same keys load.
    let config = load(
        "[defaults]\nconfirm_failures = 3\n\n[[check]]\nname = \"web\"\ntype = \"http\"\nurl = \"http://127.0.0.1:1/\"\ninterval = \"30s\"\nretry_interval = \"29s\"\nconfirm_recoveries = 100\n",
        &[],
    );
    assert_eq!(config.checks[0].confirm.failures, 3);
    assert_eq!(config.checks[0].confirm.recoveries, 100);
    assert_eq!(
        config.checks[0].retry_interval,
        Some(Duration::from_secs(29))
    );
}

/// The agent's metrics text.
async fn metrics(agent: SocketAddr, auth: &str) -> String {
    let (status, body) = http_request_with(agent, "GET", "/metrics", auth).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The sum of every series `name` of `check` (over its other labels; 0 when there is none).
fn total(metrics: &str, name: &str, check: &str) -> f64 {
    let label = format!("check=\"{check}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `nightjar_check_maintenance` of `check`.
fn covered(metrics: &str, check: &str) -> Option<f64> {
    sample(metrics, "nightjar_check_maintenance", &[("check", check)])
}

/// `nightjar_check_state{state}` of `check`.
fn state(metrics: &str, check: &str, value: &str) -> Option<f64> {
    sample(
        metrics,
        "nightjar_check_state",
        &[("check", check), ("state", value)],
    )
}

/// `/api/v1/checks/{name}`.
async fn check_json(agent: SocketAddr, auth: &str, name: &str) -> Value {
    let (status, body) =
        http_request_with(agent, "GET", &format!("/api/v1/checks/{name}"), auth).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A check every second on `url`.
fn check(name: &str, url: &str) -> String {
    format!(
        "[[check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n\n"
    )
}

const RUNS: &str = "nightjar_check_runs_total";
const MAINTENANCE_RUNS: &str = "nightjar_check_maintenance_runs_total";

/// The two checks' run counters at one scrape.
#[derive(Debug, Clone, Copy)]
struct Counts {
    marked_runs: f64,
    marked_in_window: f64,
    skipped_runs: f64,
}

impl Counts {
    fn of(text: &str) -> Counts {
        Counts {
            marked_runs: total(text, RUNS, "marked"),
            marked_in_window: total(text, MAINTENANCE_RUNS, "marked"),
            skipped_runs: total(text, RUNS, "skipped"),
        }
    }
}

/// A window from a seconds-first cron expression, every 20 s for 10 s: "marked" keeps running
/// and is shown in maintenance, its runs counted apart too; "skipped" does not run at all
/// while its window is open. Before and after, both read their own state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_window_marks_or_skips_the_runs_it_covers() {
    let nginx = Nginx::start();
    // Every series (the flag and the four states at 0 too), which this test reads.
    let config = format!(
        "[agent]\nmetrics = \"full\"\n\n{}{}[[maintenance]]\nname = \"vacuum\"\ncron = \"*/20 * * * * *\"\nduration = \"10s\"\nchecks = [\"marked\"]\nreason = \"nightly vacuum\"\n\n\
[[maintenance]]\nname = \"migration\"\ncron = \"*/20 * * * * *\"\nduration = \"10s\"\nchecks = [\"skipped\"]\nmode = \"skip\"\n",
        check("marked", &nginx.url("/missing.html")),
        check("skipped", &nginx.url("/ok")),
    );
    let agent = RunningAgent::start(load(&config, &[])).await;
    let addr = agent.addr;
    between_windows(addr).await;
    let start = window_opens(addr).await;
    let until = shown_in_window(addr).await;
    let (ran, counted) = watch_until_closed(addr, start, until).await;
    assert!(ran >= 4.0, "{ran} runs in a 10 s window of a 1 s check");
    assert!(
        (counted - ran).abs() <= 1.0,
        "{ran} runs in the window, {counted} counted as maintenance runs"
    );
    after_the_window(addr, start).await;
    agent.stop().await;
}

/// Waits for a time between two windows: both checks run and read their own state.
async fn between_windows(addr: SocketAddr) {
    eventually(
        Duration::from_secs(25),
        "a time between two windows, with both checks decided",
        || async {
            let text = metrics(addr, "").await;
            (covered(&text, "marked") == Some(0.0)
                && covered(&text, "skipped") == Some(0.0)
                && state(&text, "marked", "failing") == Some(1.0)
                && state(&text, "skipped", "passing") == Some(1.0))
            .then_some(())
        },
    )
    .await;
}

/// Waits for the next window to cover both checks; the counters it starts from, read by a
/// scrape begun after the flags went up.
async fn window_opens(addr: SocketAddr) -> Counts {
    eventually(Duration::from_secs(25), "the window to open", || async {
        let text = metrics(addr, "").await;
        (covered(&text, "marked") == Some(1.0) && covered(&text, "skipped") == Some(1.0))
            .then_some(())
    })
    .await;
    let text = metrics(addr, "").await;
    assert_eq!(state(&text, "marked", "maintenance"), Some(1.0), "{text}");
    assert_eq!(state(&text, "marked", "failing"), Some(0.0), "{text}");
    assert_eq!(state(&text, "skipped", "maintenance"), Some(1.0), "{text}");
    Counts::of(&text)
}

/// The API, the page and the list of windows while the window is open; when it closes.
async fn shown_in_window(addr: SocketAddr) -> SystemTime {
    let marked = check_json(addr, "", "marked").await;
    assert_eq!(marked["state"], "maintenance", "{marked}");
    assert_eq!(marked["maintenance"]["window"], "vacuum", "{marked}");
    assert_eq!(marked["maintenance"]["mode"], "mark", "{marked}");
    assert_eq!(
        marked["maintenance"]["reason"], "nightly vacuum",
        "{marked}"
    );
    let skipped = check_json(addr, "", "skipped").await;
    assert_eq!(skipped["state"], "maintenance", "{skipped}");
    assert_eq!(skipped["maintenance"]["window"], "migration", "{skipped}");
    assert_eq!(skipped["maintenance"]["mode"], "skip", "{skipped}");
    let until: SystemTime = chrono::DateTime::parse_from_rfc3339(
        skipped["maintenance"]["until"].as_str().expect("until"),
    )
    .expect("until is RFC 3339")
    .into();
    let left = until.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        left > Duration::from_secs(5) && left <= Duration::from_secs(10),
        "the window closes in {left:?}"
    );
    let (status, page) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("data-state=\"maintenance\" data-check=\"skipped\"")
            && page.contains("data-state=\"maintenance\" data-check=\"marked\""),
        "{page}"
    );
    assert!(page.contains("<strong>vacuum</strong>"), "{page}");
    let (_, windows) = http_get(addr, "/api/v1/maintenance").await;
    let windows: Value = serde_json::from_str(&windows).unwrap();
    let vacuum = windows["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|window| window["id"] == "vacuum")
        .unwrap_or_else(|| panic!("{windows}"));
    assert_eq!(vacuum["open"], true, "{windows}");
    assert_eq!(vacuum["ad_hoc"], false, "{windows}");
    assert_eq!(vacuum["schedule"], "cron \"*/20 * * * * *\" for 10s");
    until
}

/// Scrapes until the window closes. While it is open (by the agent's clock: scrapes that
/// ended before `until`), the skipped check does not run. Returns the marked check's runs in
/// the window and those counted as maintenance runs, at the last scrape that saw it covered.
async fn watch_until_closed(addr: SocketAddr, start: Counts, until: SystemTime) -> (f64, f64) {
    let mut last_open = start;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics(addr, "").await;
        if SystemTime::now() + Duration::from_millis(300) < until {
            assert_eq!(covered(&text, "skipped"), Some(1.0), "{text}");
            assert_eq!(
                total(&text, RUNS, "skipped"),
                start.skipped_runs,
                "a check in a skip window ran"
            );
        }
        if covered(&text, "marked") == Some(1.0) {
            last_open = Counts::of(&text);
        } else if state(&text, "marked", "failing") == Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the window did not close:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (
        last_open.marked_runs - start.marked_runs,
        last_open.marked_in_window - start.marked_in_window,
    )
}

/// After the window: each check its own state again, runs no longer counted as maintenance,
/// and the skipped check running again.
async fn after_the_window(addr: SocketAddr, start: Counts) {
    let after = total(&metrics(addr, "").await, RUNS, "marked");
    let in_window = eventually(
        Duration::from_secs(10),
        "a run of the marked check after the window",
        || async {
            let text = metrics(addr, "").await;
            (total(&text, RUNS, "marked") > after).then(|| total(&text, MAINTENANCE_RUNS, "marked"))
        },
    )
    .await;
    assert!(in_window > start.marked_in_window);
    let later = total(&metrics(addr, "").await, RUNS, "marked");
    let text = eventually(
        Duration::from_secs(10),
        "two more runs of the marked check",
        || async {
            let text = metrics(addr, "").await;
            (total(&text, RUNS, "marked") >= later + 2.0).then_some(text)
        },
    )
    .await;
    assert_eq!(
        total(&text, MAINTENANCE_RUNS, "marked"),
        in_window,
        "runs after the window counted as maintenance runs"
    );
    assert_eq!(covered(&text, "marked"), Some(0.0));
    assert_eq!(state(&text, "marked", "maintenance"), Some(0.0), "{text}");
    assert_eq!(state(&text, "marked", "failing"), Some(1.0), "{text}");
    let marked = check_json(addr, "", "marked").await;
    assert_eq!(marked["state"], "failing", "{marked}");
    assert!(marked.get("maintenance").is_none(), "{marked}");
    eventually(
        Duration::from_secs(10),
        "the skipped check to run again",
        || async {
            let text = metrics(addr, "").await;
            (total(&text, RUNS, "skipped") > start.skipped_runs
                && covered(&text, "skipped") == Some(0.0)
                && state(&text, "skipped", "passing") == Some(1.0))
            .then_some(())
        },
    )
    .await;
    let skipped = check_json(addr, "", "skipped").await;
    assert_eq!(skipped["state"], "passing", "{skipped}");
}

const TOKEN: &str = "maintenance-token-0123456789";

/// The header line that authenticates with [`TOKEN`].
fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

/// `POST /api/v1/maintenance` with a JSON body and extra header lines.
async fn open_window(agent: SocketAddr, headers: &str, body: &str) -> (u16, Value) {
    let headers = format!("{headers}Content-Type: application/json\r\n");
    let (status, text) =
        http_request_body(agent, "POST", "/api/v1/maintenance", &headers, body).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// `DELETE /api/v1/maintenance/{id}`.
async fn end_window(agent: SocketAddr, headers: &str, id: &str) -> (u16, String) {
    http_request_with(
        agent,
        "DELETE",
        &format!("/api/v1/maintenance/{id}"),
        headers,
    )
    .await
}

/// The windows `GET /api/v1/maintenance` lists.
async fn windows(agent: SocketAddr) -> Vec<Value> {
    let (status, body) = http_request_with(agent, "GET", "/api/v1/maintenance", &bearer()).await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["windows"].as_array().unwrap().clone()
}

/// Waits until the API shows `check` in `expected` state.
async fn wait_state(agent: SocketAddr, check: &str, expected: &str) -> Value {
    eventually(
        Duration::from_secs(10),
        &format!("check {check} to read {expected}"),
        || async {
            let view = check_json(agent, &bearer(), check).await;
            (view["state"] == expected).then_some(view)
        },
    )
    .await
}

/// An agent with a bearer token and a state dir: a window opened through the API covers its
/// check, is listed, survives a restart, and ends on `DELETE`; bad requests are refused with a
/// reason, and so is every change on an agent without credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_windows_through_the_api_survive_a_restart() {
    let nginx = Nginx::start();
    let state_dir = tempfile::tempdir().unwrap();
    let checks = format!(
        "{}[[maintenance]]\nname = \"planned\"\nstart = \"2099-01-01T02:00:00Z\"\nend = \"2099-01-01T03:00:00Z\"\nchecks = [\"web\"]\n",
        check("web", &nginx.url("/ok"))
    );
    let config = format!(
        "[agent]\nbearer_token = \"${{env:MAINTENANCE_TOKEN}}\"\nstate_dir = \"{}\"\n\n{checks}",
        state_dir.path().display()
    );
    let env = [("MAINTENANCE_TOKEN", TOKEN)];
    let agent = RunningAgent::start(load(&config, &env)).await;
    let addr = agent.addr;
    wait_state(addr, "web", "passing").await;
    refused_without_credentials(&checks).await;
    refused_without_the_token(addr).await;
    refused_bodies(addr).await;
    let opened = opened_for_web(addr).await;
    let id = opened["id"].as_str().unwrap().to_string();

    // A restart with the same state dir: the window is still there and still applies.
    agent.stop().await;
    let agent = RunningAgent::start(load(&config, &env)).await;
    restored(agent.addr, &opened).await;
    ended(agent.addr, &id).await;

    // The end is kept too: after another restart the window stays ended.
    agent.stop().await;
    let agent = RunningAgent::start(load(&config, &env)).await;
    let listed = windows(agent.addr).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "planned");
    wait_state(agent.addr, "web", "passing").await;
    agent.stop().await;
}

/// Without credentials configured, nobody may open or end a window (an agent of its own).
async fn refused_without_credentials(checks: &str) {
    let agent = RunningAgent::start(load(checks, &[])).await;
    let body = r#"{"checks": ["web"], "duration": "10m"}"#;
    let (status, refused) = open_window(agent.addr, "", body).await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("set [agent] bearer_token or basic_auth_users"),
        "{refused}"
    );
    let (status, refused) = end_window(agent.addr, "", "planned").await;
    assert_eq!(status, 403, "{refused}");
    let view = check_json(agent.addr, "", "web").await;
    assert_eq!(view.get("maintenance"), None, "{view}");
    agent.stop().await;
}

/// With credentials configured, a change needs them.
async fn refused_without_the_token(addr: SocketAddr) {
    let body = r#"{"checks": ["web"], "duration": "10m"}"#;
    let (status, _) = open_window(addr, "", body).await;
    assert_eq!(status, 401);
    let (status, _) = open_window(addr, "Authorization: Bearer wrong-token\r\n", body).await;
    assert_eq!(status, 401);
    let (status, _) = end_window(addr, "", "planned").await;
    assert_eq!(status, 401);
}

/// Bodies that do not say what to cover or for how long: 400 with what is wrong.
async fn refused_bodies(addr: SocketAddr) {
    for (body, says) in [
        (r#"{"checks": ["web"]}"#, "missing field `duration`"),
        (
            r#"{"checks": ["web"], "duration": "forever"}"#,
            "duration \"forever\" is not a duration from 1s to 7d, like \"30m\"",
        ),
        (
            r#"{"checks": ["web"], "duration": "8d"}"#,
            "duration \"8d\" is not a duration from 1s to 7d",
        ),
        (
            r#"{"checks": ["web", "shop"], "duration": "10m"}"#,
            "no check named \"shop\" runs on this agent",
        ),
        (
            r#"{"checks": ["wbe", "shop"], "duration": "10m"}"#,
            "no check named \"wbe\" runs on this agent; did you mean \"web\"? (1 more unknown names)",
        ),
        (
            r#"{"checks": ["web"], "duration": "10m", "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"checks": ["web"], "duration": "10m", "mode": "silence"}"#,
            "unknown variant `silence`",
        ),
        ("not json", "send {\"checks\": [...]"),
    ] {
        let (status, refused) = open_window(addr, &bearer(), body).await;
        assert_eq!(status, 400, "{body}: {refused}");
        let message = refused["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message:?} lacks {says:?}");
    }
    assert_eq!(
        windows(addr).await.len(),
        1,
        "a refused request opened a window"
    );
}

/// Opens a window for "web" with a reason: the answer, the list, the check's state, its
/// metrics and the page show it. Returns the answer.
async fn opened_for_web(addr: SocketAddr) -> Value {
    let (status, opened) = open_window(
        addr,
        &bearer(),
        r#"{"checks": ["web"], "duration": "10m", "reason": "deploy 4.2"}"#,
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["id"].as_str().expect("an id").to_string();
    assert!(id.starts_with("adhoc-"), "{opened}");
    assert_eq!(opened["ad_hoc"], true, "{opened}");
    assert_eq!(opened["open"], true, "{opened}");
    assert_eq!(opened["mode"], "mark", "{opened}");
    assert_eq!(opened["checks"], serde_json::json!(["web"]), "{opened}");
    assert_eq!(opened["reason"], "deploy 4.2", "{opened}");
    let until: SystemTime = chrono::DateTime::parse_from_rfc3339(opened["until"].as_str().unwrap())
        .unwrap()
        .into();
    let left = until.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(590) && left <= Duration::from_secs(600),
        "{opened}"
    );

    let listed = windows(addr).await;
    let ids: Vec<(&str, bool)> = listed
        .iter()
        .map(|window| (window["id"].as_str().unwrap(), window["open"] == true))
        .collect();
    assert_eq!(ids, [("planned", false), (id.as_str(), true)], "{listed:?}");
    let view = wait_state(addr, "web", "maintenance").await;
    assert_eq!(view["maintenance"]["window"], id.as_str(), "{view}");
    assert_eq!(view["maintenance"]["reason"], "deploy 4.2", "{view}");
    let text = metrics(addr, &bearer()).await;
    assert_eq!(covered(&text, "web"), Some(1.0), "{text}");
    assert_eq!(state(&text, "web", "maintenance"), Some(1.0), "{text}");
    let (status, page) = http_request_with(addr, "GET", "/", &bearer()).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("<strong>{id}</strong>")) && page.contains(": deploy 4.2</li>"),
        "{page}"
    );
    opened
}

/// After a restart, the window `opened` is listed as it was and covers the check again.
async fn restored(addr: SocketAddr, opened: &Value) {
    let id = opened["id"].as_str().unwrap();
    let listed = windows(addr).await;
    let restored = listed
        .iter()
        .find(|window| window["id"] == id)
        .unwrap_or_else(|| panic!("the window was not restored: {listed:?}"));
    assert_eq!(restored["until"], opened["until"], "{restored}");
    assert_eq!(restored["reason"], "deploy 4.2", "{restored}");
    let view = wait_state(addr, "web", "maintenance").await;
    assert_eq!(view["maintenance"]["window"], id, "{view}");
    eventually(
        Duration::from_secs(10),
        "the restored window's flag in the metrics",
        || async { (covered(&metrics(addr, &bearer()).await, "web") == Some(1.0)).then_some(()) },
    )
    .await;
}

/// Ends the window `id`: the check leaves maintenance; ending it again, or ending a
/// configured window, is refused.
async fn ended(addr: SocketAddr, id: &str) {
    let (status, body) = end_window(addr, &bearer(), id).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, "");
    wait_state(addr, "web", "passing").await;
    let text = metrics(addr, &bearer()).await;
    assert_eq!(covered(&text, "web"), Some(0.0), "{text}");
    let (status, body) = end_window(addr, &bearer(), id).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains(&format!("no open ad hoc maintenance window \\\"{id}\\\"")),
        "{body}"
    );
    let (status, body) = end_window(addr, &bearer(), "planned").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("defined in the configuration"), "{body}");
    assert_eq!(windows(addr).await.len(), 1);
}

/// Names of the alerts `NightjarCheckFailingInRegions` for `check`, pending or firing, with
/// their state.
async fn quorum_alerts(prometheus: &Prometheus, check: &str) -> Vec<String> {
    let (status, body) = http_get(prometheus.addr, "/api/v1/alerts").await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|alert| {
            alert["labels"]["alertname"] == "NightjarCheckFailingInRegions"
                && alert["labels"]["check"] == check
        })
        .map(|alert| alert["state"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Prometheus's clock: the time of an instant query's answer.
async fn prometheus_now(prometheus: &Prometheus) -> f64 {
    let (status, body) = http_get(prometheus.addr, "/api/v1/query?query=time()").await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["data"]["result"][0].as_f64().unwrap()
}

/// Waits until Prometheus sees "shop" failing under its window, then until it has evaluated
/// the quorum rule more than quorum_for (3 s) later; asserts the check failed and was covered
/// all along, and that no quorum alert is pending or firing.
async fn silent_past_quorum_for(prometheus: &Prometheus) {
    let since = eventually(
        Duration::from_secs(30),
        "Prometheus to see the check failing in its window",
        || async {
            let failing = prometheus
                .query(r#"probe_success{check="shop"} == 0 and on (check) nightjar_check_maintenance == 1"#)
                .await;
            if failing.is_empty() {
                None
            } else {
                Some(prometheus_now(prometheus).await)
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the quorum rule evaluated more than quorum_for after the failure",
        || async {
            let at = prometheus.last_evaluation("nightjar-region-quorum").await?;
            (at > since + 4.0).then_some(())
        },
    )
    .await;
    // Failing and covered all along, and no alert, not even pending.
    let failing = prometheus
        .query(r#"max_over_time(probe_success{check="shop"}[4s])"#)
        .await;
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].1, 0.0, "the check failed all along");
    let covered = prometheus
        .query(r#"min_over_time(nightjar_check_maintenance{check="shop"}[4s])"#)
        .await;
    assert_eq!(covered[0].1, 1.0, "the window covered it all along");
    let alerts = quorum_alerts(prometheus, "shop").await;
    assert!(
        alerts.is_empty(),
        "an alert in a maintenance window: {alerts:?}"
    );
}

/// A real Prometheus with the rules of `nightjar rules`: a check failing under an ad hoc
/// window does not page, for longer than `quorum_for`; once the window is ended, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quorum_alert_is_silent_in_a_window_and_fires_after_it() {
    let nginx = Nginx::start();
    std::fs::write(nginx.www().join("shop.html"), "open\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[agent]\nbearer_token = \"${{env:MAINTENANCE_TOKEN}}\"\n\n[rules]\nquorum_for = \"3s\"\n\n{}",
        check("shop", &nginx.url("/shop.html"))
    );
    let env = [("MAINTENANCE_TOKEN", TOKEN)];
    let agent = RunningAgent::start(load(&config, &env)).await;
    let addr = agent.addr;
    let config_path = dir.path().join("nightjar.toml");
    std::fs::write(&config_path, &config).unwrap();
    let rules = dir.path().join("rules.yml");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .env("MAINTENANCE_TOKEN", TOKEN)
            .args(["rules", "--config"])
            .arg(&config_path)
            .arg("--output")
            .arg(&rules),
    );
    let prometheus = Prometheus::with_rules_scraping(
        &format!(
            "  - job_name: nightjar\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n    authorization:\n      credentials: {TOKEN}\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
        Path::new(&rules),
    );
    prometheus.wait_ready().await;
    wait_state(addr, "shop", "passing").await;

    // A window first, then the outage.
    let (status, opened) = open_window(
        addr,
        &bearer(),
        r#"{"checks": ["shop"], "duration": "10m", "reason": "shop migration"}"#,
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["id"].as_str().unwrap().to_string();
    wait_state(addr, "shop", "maintenance").await;
    std::fs::remove_file(nginx.www().join("shop.html")).unwrap();

    silent_past_quorum_for(&prometheus).await;

    // The window ends early: the failure pages.
    let (status, body) = end_window(addr, &bearer(), &id).await;
    assert_eq!(status, 204, "{body}");
    wait_state(addr, "shop", "failing").await;
    eventually(
        Duration::from_secs(30),
        "the quorum alert to fire once the window ended",
        || async { (quorum_alerts(&prometheus, "shop").await == ["firing"]).then_some(()) },
    )
    .await;
    agent.stop().await;
}
