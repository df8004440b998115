//! The real `nightjar` binary: exit codes, output formats, signals, the embedded default.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{Nginx, free_port, http_get, nightjar, start_agent, terminate};

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run nightjar")
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("checks.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn validate_exits_0_on_a_valid_config_and_2_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(
        dir.path(),
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\n",
    );
    let out = run(nightjar().arg("validate").arg("--config").arg(&good));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configuration is valid: 1 check\n"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\nintervall = \"1m\"\nexpect = { status = [\"6xx\"] }\n").unwrap();
    let out = run(nightjar().arg("validate").arg("--config").arg(&bad));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let place = bad.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{place}:6:22: status \"6xx\" is not a status code or class"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{place}:5:1: unknown key `intervall` in check \"a\" (hint: did you mean `interval`?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("the configuration has 2 problems"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_without_a_backtrace() {
    let out = run(nightjar().arg("check"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(nightjar().arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(nightjar().args(["validate", "--config", "/nonexistent/x.toml"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("/nonexistent/x.toml: cannot read config path"),
        "{stderr}"
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    let out = run(nightjar().args(["--threads", "0", "validate", "--config", "checks"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 is not in 1..=256"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn more_threads_run_the_same_checks() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &check_config(&nginx));
    let out = run(nightjar()
        .args(["check", "--threads", "4", "--config"])
        .arg(&config));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.ends_with("2 checks: 1 passed, 1 failed\n"),
        "{stdout}"
    );
}

/// `--threads N` is what the runtime gets: once its checks ran and the blocking pool's idle
/// threads (named like the workers) left, the agent has N tokio threads, 1 by default. Read
/// from /proc, so a flag the runtime ignored fails here.
#[tokio::test]
async fn threads_sets_the_number_of_runtime_workers() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(check_config(&nginx).replace("\n\n", "\ninterval = \"1s\"\n\n") + "interval = \"1s\"\n"),
    );
    let mut agents = Vec::new();
    for flag in [None, Some("1"), Some("4")] {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = nightjar();
        if let Some(threads) = flag {
            command.args(["--threads", threads]);
        }
        let agent = start_agent(command.arg("run").arg("--config").arg(&config), listen);
        agents.push((agent, listen));
    }
    for (_, listen) in &agents {
        let listen = *listen;
        crate::support::eventually(Duration::from_secs(20), "both checks to run", || async {
            let (_, metrics) = http_get(listen, "/metrics").await;
            ["home", "down"]
                .iter()
                .all(|check| {
                    metrics.lines().any(|line| {
                        line.starts_with("nightjar_check_runs_total{")
                            && line.contains(&format!("check=\"{check}\""))
                            && !line.ends_with(" 0")
                    })
                })
                .then_some(())
        })
        .await;
    }
    // A blocking-pool thread leaves after 10 s idle; the workers stay.
    let pids: Vec<u32> = agents.iter().map(|(agent, _)| agent.id()).collect();
    crate::support::eventually(
        Duration::from_secs(30),
        "1, 1 and 4 runtime threads with no --threads, --threads 1 and --threads 4",
        || async {
            let counts: Vec<usize> = pids
                .iter()
                .map(|pid| crate::support::runtime_threads(*pid))
                .collect();
            (counts == [1, 1, 4]).then_some(())
        },
    )
    .await;
    for (mut agent, _) in agents {
        let output = terminate(&mut agent);
        assert!(output.status.success(), "{output:?}");
    }
}

fn check_config(nginx: &Nginx) -> String {
    format!(
        "[[check]]\nname = \"home\"\ntype = \"http\"\nurl = \"{}\"\n\n[[check]]\nname = \"down\"\ntype = \"http\"\nurl = \"{}\"\n",
        nginx.url("/ok"),
        nginx.url("/unavailable")
    )
}

#[test]
fn check_prints_a_table_and_exits_1_when_any_check_fails() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &check_config(&nginx));
    let out = run(nightjar().arg("check").arg("--config").arg(&config));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("CHECK"), "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("home ") && l.contains(" pass ")),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("down ")
            && l.contains(" FAIL ")
            && l.contains("status")
            && l.contains("got 503")),
        "{stdout}"
    );
    assert_eq!(*lines.last().unwrap(), "2 checks: 1 passed, 1 failed");

    let out = run(nightjar()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .args(["--only", "home"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = run(nightjar()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .args(["--only", "nope"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no check named \"nope\"; the configuration has: home, down")
    );
}

/// `nightjar check --format FORMAT` on one passing and one failing check.
fn check_with_format(format: &str) -> Output {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &check_config(&nginx));
    run(nightjar()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .args(["--format", format]))
}

#[test]
fn check_json_output() {
    let out = check_with_format("json");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "home");
    assert_eq!(items[0]["success"], true);
    assert_eq!(items[0]["status_code"], 200);
    assert!(items[0]["phases"]["processing"].as_f64().unwrap() > 0.0);
    assert_eq!(items[1]["reason"], "status");
}

#[test]
fn check_junit_output_parses_as_junit_xml() {
    let out = check_with_format("junit");
    assert_eq!(out.status.code(), Some(1));
    let xml = String::from_utf8(out.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("2"));
    assert_eq!(root.attribute("failures"), Some("1"));
    let suite = root
        .children()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("testsuite");
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    for case in &cases {
        assert!(case.attribute("name").is_some() && case.attribute("classname").is_some());
        let time: f64 = case.attribute("time").unwrap().parse().unwrap();
        assert!(time >= 0.0);
    }
    let failure = cases[1]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("failure element");
    assert_eq!(failure.attribute("type"), Some("status"));
    assert!(failure.text().unwrap().contains("got 503"));
    assert!(cases[0].children().all(|n| !n.has_tag_name("failure")));
}

/// Starts `nightjar run` and waits until it is ready.
fn spawn_agent(args: &[&str], listen: std::net::SocketAddr) -> crate::support::KillOnDrop {
    start_agent(nightjar().arg("run").args(args), listen)
}

#[tokio::test]
async fn run_serves_until_sigterm_and_exits_0() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[agent]\nregion = \"lab\"\n\n[[check]]\nname = \"home\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\n",
            nginx.url("/ok")
        ),
    );
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = spawn_agent(
        &["--config", config.to_str().unwrap(), "--log-format", "json"],
        listen,
    );
    let api = crate::support::eventually(Duration::from_secs(10), "the check to pass", || async {
        let (_, body) = http_get(listen, "/api/v1/checks").await;
        body.contains("\"state\":\"passing\"").then_some(body)
    })
    .await;
    assert!(api.contains("\"region\":\"lab\""));
    assert_eq!(http_get(listen, "/-/ready").await.0, 200);
    let out = terminate(&mut child);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "Check is passing."
        && l["check"] == "home"
        && l["region"] == "lab"));
    assert!(lines.iter().any(|l| l["message"] == "Agent stopped."));
    // A passing check is logged once, not on every run.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "Check is passing.")
            .count(),
        1
    );
}

#[tokio::test]
async fn the_embedded_default_probes_the_agent_itself() {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = spawn_agent(&[], listen);
    let api = crate::support::eventually(
        Duration::from_secs(25),
        "the self checks to pass",
        || async {
            let (_, body) = http_get(listen, "/api/v1/checks").await;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            let checks = json["checks"].as_array()?.clone();
            checks
                .iter()
                .all(|c| c["state"] == "passing")
                .then_some(checks)
        },
    )
    .await;
    let names: Vec<&str> = api.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["self-health", "self-metrics"]);
    let out = terminate(&mut child);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("running the embedded default"), "{stderr}");
    assert!(
        stderr.contains(&format!("http://{listen}/metrics")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("status_page=http://{listen}/ ")),
        "it names the status page: {stderr}"
    );
    assert!(
        stderr.contains("--config"),
        "it says how to point it at real checks"
    );
}

#[test]
fn a_busy_listen_address_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(nightjar().arg("run").arg("--listen").arg(addr.to_string()));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("failed to bind the agent's server on {addr}")),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_at_startup_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[[check]]\nname = \"a\"\ntype = \"http\"\n");
    let out = run(nightjar().arg("run").arg("--config").arg(&config));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is missing the required key `url`"));
}

#[test]
fn a_bad_shard_is_a_usage_error() {
    for shard in ["0/3", "4/3", "1/0", "two"] {
        let out = run(nightjar().args(["run", "--shard", shard]));
        assert_eq!(out.status.code(), Some(2), "{shard}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--shard"),
            "{shard}"
        );
    }
}

/// Runs `nightjar check` on the nginx config under a pseudo-terminal (`script` from
/// util-linux), as a person at a shell would, and returns what the terminal showed.
fn check_on_a_terminal(env: &[(&str, &str)]) -> String {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &check_config(&nginx));
    let command = format!(
        "{} check --config {}",
        env!("CARGO_BIN_EXE_nightjar"),
        config.display()
    );
    let script = crate::support::require("script", "bsdutils");
    let mut cmd = Command::new(script);
    cmd.args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm-256color");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "one check fails");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_on_a_terminal_shows_progress_and_colours() {
    let shown = check_on_a_terminal(&[]);
    // The bar is drawn, then erased before the table.
    assert!(
        shown.contains("2/2 checks") || shown.contains("/2 checks"),
        "{shown:?}"
    );
    assert!(shown.contains("\r\x1b[2K"), "the bar is erased: {shown:?}");
    // Failures in red, the reason in yellow.
    assert!(shown.contains("\x1b[31mFAIL"), "{shown:?}");
    assert!(shown.contains("\x1b[33mstatus"), "{shown:?}");
    assert!(shown.contains("2 checks: 1 passed, 1 failed"));

    let plain = check_on_a_terminal(&[("NO_COLOR", "1")]);
    assert!(
        !plain.contains("\x1b[31m") && !plain.contains("\x1b[1m"),
        "{plain:?}"
    );
    assert!(plain.contains("FAIL"));
}

#[test]
fn check_piped_has_no_progress_and_no_colours() {
    let out = check_with_format("text");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("CHECK"));
    assert!(lines[1].starts_with("home") && lines[1].contains("pass"));
    assert!(
        lines[2].contains("FAIL") && lines[2].contains("status") && lines[2].contains("got 503")
    );
    assert_eq!(lines[3], "2 checks: 1 passed, 1 failed");
}

#[test]
fn shell_completions_come_from_the_cli_definition() {
    let bash = run(nightjar().args(["completions", "bash"]));
    assert_eq!(bash.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("nightjar.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    // bash loads it and registers the completion for `nightjar`.
    let registered = crate::support::run_ok(Command::new("bash").args([
        "-c",
        &format!("source {} && complete -p nightjar", script.display()),
    ]));
    assert!(registered.contains("nightjar"), "{registered}");
    let text = String::from_utf8(bash.stdout).unwrap();
    for word in [
        "run",
        "check",
        "validate",
        "rules",
        "--log-format",
        "--shard",
    ] {
        assert!(
            text.contains(word),
            "{word} missing from the bash completion"
        );
    }
    let zsh = run(nightjar().args(["completions", "zsh"]));
    assert!(
        String::from_utf8(zsh.stdout)
            .unwrap()
            .starts_with("#compdef nightjar")
    );
    let fish = run(nightjar().args(["completions", "fish"]));
    assert!(
        String::from_utf8(fish.stdout)
            .unwrap()
            .contains("complete -c nightjar")
    );
    let bad = run(nightjar().args(["completions", "tcsh"]));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_man_page_renders() {
    let out = run(nightjar().arg("man"));
    assert_eq!(out.status.code(), Some(0));
    let roff = String::from_utf8(out.stdout).unwrap();
    assert!(
        roff.starts_with(".ie \\n(.g .ds Aq") || roff.contains(".TH nightjar 1"),
        "{roff}"
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("nightjar.1");
    std::fs::write(&page, &roff).unwrap();
    // man renders it: the name, the synopsis and the subcommands.
    let rendered = crate::support::run_ok(
        Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
    );
    for part in [
        "NAME",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "nightjar-check(1)",
        "--log-format",
    ] {
        assert!(rendered.contains(part), "{part} missing:\n{rendered}");
    }
    let pages = dir.path().join("pages");
    let out = run(nightjar().arg("man").arg("--dir").arg(&pages));
    assert_eq!(out.status.code(), Some(0));
    for name in [
        "nightjar.1",
        "nightjar-run.1",
        "nightjar-check.1",
        "nightjar-slo-plan.1",
    ] {
        assert!(pages.join(name).exists(), "{name}");
    }
}

#[tokio::test]
async fn state_changes_are_logged_once_each_with_region_and_reason() {
    let nginx = Nginx::start();
    let flip = nginx.www().join("flip");
    std::fs::write(&flip, "ok\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[agent]\nregion = \"lab\"\n\n[[check]]\nname = \"flip\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\n",
            nginx.url("/flip")
        ),
    );
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = spawn_agent(
        &["--config", config.to_str().unwrap(), "--log-format", "json"],
        listen,
    );
    let runs = |result: &'static str| async move {
        let (_, metrics) = http_get(listen, "/metrics").await;
        crate::support::sample(
            &metrics,
            "nightjar_check_runs_total",
            &[("check", "flip"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    crate::support::eventually(Duration::from_secs(10), "a pass", || async {
        (runs("success").await >= 1.0).then_some(())
    })
    .await;
    std::fs::remove_file(&flip).unwrap();
    crate::support::eventually(Duration::from_secs(15), "four failed runs", || async {
        (runs("failure").await >= 4.0).then_some(())
    })
    .await;
    std::fs::write(&flip, "ok\n").unwrap();
    let passes = runs("success").await;
    crate::support::eventually(Duration::from_secs(10), "passing again", || async {
        (runs("success").await >= passes + 2.0).then_some(())
    })
    .await;
    let out = terminate(&mut child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    let about = |message: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["message"] == message).collect()
    };
    assert_eq!(about("Check is passing.").len(), 1, "{stderr}");
    let failing = about("Check is failing.");
    assert_eq!(failing.len(), 1, "four failures, one line: {stderr}");
    assert_eq!(failing[0]["level"], "WARN");
    assert_eq!(failing[0]["check"], "flip");
    assert_eq!(failing[0]["region"], "lab");
    assert_eq!(failing[0]["reason"], "status");
    assert!(failing[0]["detail"].as_str().unwrap().contains("404"));
    let recovered = about("Check recovered.");
    assert_eq!(recovered.len(), 1, "{stderr}");
    assert_eq!(recovered[0]["level"], "INFO");
    assert_eq!(recovered[0]["region"], "lab");
}

#[tokio::test]
async fn text_logs_are_one_readable_line_per_event() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[agent]\nregion = \"lab\"\n\n[[check]]\nname = \"down\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\n",
            nginx.url("/unavailable")
        ),
    );
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = spawn_agent(
        &["--config", config.to_str().unwrap(), "--log-format", "text"],
        listen,
    );
    crate::support::eventually(Duration::from_secs(10), "a failed run", || async {
        let (_, body) = http_get(listen, "/api/v1/checks").await;
        body.contains("\"state\":\"failing\"").then_some(())
    })
    .await;
    let out = terminate(&mut child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("Check is failing."))
        .unwrap_or_else(|| panic!("no state-change line in {stderr}"));
    assert!(line.contains("WARN"), "{line}");
    for field in ["check=down", "region=lab", "reason=\"status\"", "got 503"] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    let bad = run(nightjar().args(["run", "--log-format", "xml"]));
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values: text, json"));
}

/// The example directory without its secrets: five missing variables are five problems (not
/// eleven: no "variable not extracted" after a step whose secret is missing, no "no check
/// named" for a check that is invalid, a variable used twice reported once with both places),
/// and `--no-secrets` validates it whole.
#[test]
fn validate_reports_root_causes_and_no_secrets_validates_the_rest() {
    let secrets = [
        "SHOP_API_TOKEN",
        "STATUS_PASSWORD",
        "SHOP_PROBE_PASSWORD",
        "SHOP_PROBE_TOTP",
        "REMOTE_WRITE_TOKEN",
    ];
    let without = |cmd: &mut Command| {
        for name in secrets {
            cmd.env_remove(name);
        }
        run(cmd)
    };
    let out = without(nightjar().args(["validate", "--config", "checks"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("checks/"))
        .collect();
    assert_eq!(problems.len(), 5, "{stderr}");
    for name in secrets {
        assert_eq!(
            problems
                .iter()
                .filter(|line| line.contains(&format!("environment variable {name} is not set")))
                .count(),
            1,
            "{name}: {stderr}"
        );
    }
    assert!(
        stderr.contains(
            "(referenced as ${env:SHOP_PROBE_PASSWORD}; also referenced at checks/flow.toml:44:52)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("nightjar: the configuration has 5 problems\n"),
        "{stderr}"
    );

    let out = without(nightjar().args(["validate", "--no-secrets", "--config", "checks"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("configuration is valid: "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `--no-secrets` skips only the secret values: unset variables and absent files pass, but
/// malformed references, unknown keys, bad durations and regexes, flow variables nobody
/// extracts and SLOs naming no check are still problems.
#[test]
fn validate_no_secrets_checks_everything_but_the_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"[agent]
bearer_token = "${env:NIGHTJAR_TEST_UNSET_TOKEN}"

[[check]]
name = "api"
type = "http"
url = "${env:NIGHTJAR_TEST_UNSET_URL}"
headers = { x-key = "${file:/nonexistent/key}" }
basic_auth = { username = "probe", password = "${env:NIGHTJAR_TEST_UNSET_PASSWORD}" }

[[check]]
name = "login"
type = "flow"
  [[check.steps]]
  name = "mfa"
  url = "https://example.com/mfa?code=${totp:env:NIGHTJAR_TEST_UNSET_TOTP}&who=${user}"

[[check]]
name = "bad"
type = "http"
url = "https://example.com/${env:}"
intreval = "1m"
timeout = "forever"
expect = { body_matches = ["(unclosed"] }

[[slo]]
name = "availability"
objective = 0.999
checks = ["api", "nowhere"]
"#,
    );
    let out = run(nightjar()
        .args(["validate", "--no-secrets", "--config"])
        .arg(&config));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let place = config.display().to_string();
    for expected in [
        format!("{place}:16:9: variable ${{user}} is not extracted by an earlier step"),
        format!("{place}:21:7: unknown reference ${{env:}}"),
        format!("{place}:22:1: unknown key `intreval` in check \"bad\""),
        format!(
            "{place}:23:11: `timeout` in check \"bad\": \"forever\" is not a positive duration"
        ),
        format!("{place}:24:28: invalid regex in `body_matches`"),
        format!("{place}:29:18: no check named \"nowhere\""),
    ] {
        assert!(
            stderr.contains(&expected),
            "{expected}\n--- got ---\n{stderr}"
        );
    }
    assert!(
        stderr.contains("the configuration has 6 problems"),
        "{stderr}"
    );
    assert!(!stderr.contains("NIGHTJAR_TEST_UNSET"), "{stderr}");
    assert!(!stderr.contains("/nonexistent/key"), "{stderr}");
}
