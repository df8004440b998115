//! Hot reload: `POST /-/reload`, SIGHUP and watched files. A bad configuration keeps the old
//! one running; unchanged checks keep their counters; removed checks' series go; new checks
//! start at 0.

use std::time::Duration;

use crate::support::{
    Nginx, RunningAgent, eventually, free_port, http_get, http_post, sample, wait_for_tcp,
};

fn checks(nginx: &Nginx, names: &[&str], extra_agent: &str) -> String {
    let mut text = format!("[agent]\nregion = \"lab\"\n{extra_agent}\n");
    for name in names {
        text.push_str(&format!(
            "\n[[check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n",
            nginx.url("/ok")
        ));
    }
    text
}

fn runs(metrics: &str, check: &str) -> Option<f64> {
    sample(
        metrics,
        "nightjar_check_runs_total",
        &[("check", check), ("result", "success")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_keeps_unchanged_counters_drops_removed_starts_new_and_rejects_bad_configs() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    std::fs::write(&path, checks(&nginx, &["keep", "gone"], "")).unwrap();
    let agent = RunningAgent::start_reloadable(&path).await;
    let before = eventually(
        Duration::from_secs(10),
        "two runs of each check",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            let keep = runs(&metrics, "keep")?;
            (keep >= 2.0 && runs(&metrics, "gone")? >= 2.0).then_some(keep)
        },
    )
    .await;

    std::fs::write(&path, checks(&nginx, &["keep", "new"], "")).unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 added, 0 changed, 1 removed"), "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        runs(&metrics, "keep").unwrap() >= before,
        "the unchanged check kept its counter"
    );
    assert!(
        !metrics.contains("check=\"gone\""),
        "the removed check's series are gone:\n{metrics}"
    );
    assert_eq!(
        runs(&metrics, "new"),
        Some(0.0),
        "the new check starts at 0"
    );
    assert_eq!(
        sample(&metrics, "nightjar_config_last_reload_successful", &[]),
        Some(1.0)
    );
    eventually(Duration::from_secs(10), "the new check to run", || async {
        let (_, metrics) = agent.get("/metrics").await;
        (runs(&metrics, "new")? >= 1.0).then_some(())
    })
    .await;
    let (_, api) = agent.get("/api/v1/checks").await;
    assert!(
        api.contains("\"name\":\"new\"") && !api.contains("\"name\":\"gone\""),
        "{api}"
    );

    // A broken file: rejected with every problem, the old configuration keeps running.
    std::fs::write(&path, "[[check]]\nname = \"Bad Name\"\ntype = \"htp\"\n").unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("checks.toml:2:8: check name \"Bad Name\" is not valid"),
        "{body}"
    );
    assert!(body.contains("unknown check type \"htp\""), "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(&metrics, "nightjar_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let keep = runs(&metrics, "keep").unwrap();
    eventually(
        Duration::from_secs(10),
        "the old checks to keep running",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            (runs(&metrics, "keep")? > keep).then_some(())
        },
    )
    .await;
    // GET is not a reload.
    assert_eq!(http_get(agent.addr, "/-/reload").await.0, 405);
    agent.stop().await;
}

/// A check's definition (no `[agent]` table), for a file of its own.
fn check(nginx: &Nginx, name: &str) -> String {
    checks(nginx, &[name], "")
        .split_once("\n\n[[check]]")
        .map(|(_, rest)| format!("[[check]]{rest}"))
        .unwrap()
}

/// Waits until the API lists exactly the checks `names` and each has run at least once.
async fn running_exactly(agent: &RunningAgent, names: &[&str], what: &str) {
    eventually(Duration::from_secs(15), what, || async {
        let (_, api) = agent.get("/api/v1/checks").await;
        let json: serde_json::Value = serde_json::from_str(&api).ok()?;
        let mut listed: Vec<&str> = json["checks"]
            .as_array()?
            .iter()
            .filter_map(|check| check["name"].as_str())
            .collect();
        listed.sort_unstable();
        let mut wanted = names.to_vec();
        wanted.sort_unstable();
        if listed != wanted {
            return None;
        }
        let (_, metrics) = agent.get("/metrics").await;
        names
            .iter()
            .all(|name| runs(&metrics, name).is_some_and(|runs| runs >= 1.0))
            .then_some(())
    })
    .await;
}

/// The agent watches a directory: a new `*.toml` file dropped into it is picked up, and so is
/// a removed one, without any reload request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_files_reload_by_themselves() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("checks.toml"),
        checks(&nginx, &["first"], "watch_config = \"500ms\""),
    )
    .unwrap();
    let agent = RunningAgent::start_reloadable(dir.path()).await;
    running_exactly(&agent, &["first"], "the first check to run").await;

    // A new file in the watched directory, written elsewhere and renamed in (as editors and
    // configuration managers do), with a check of its own.
    let staged = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
    std::fs::write(staged.path(), check(&nginx, "second")).unwrap();
    staged.persist(dir.path().join("more.toml")).unwrap();
    running_exactly(
        &agent,
        &["first", "second"],
        "the new file's check to load and run",
    )
    .await;

    // The file removed again: its check goes.
    std::fs::remove_file(dir.path().join("more.toml")).unwrap();
    running_exactly(&agent, &["first"], "the removed file's check to go").await;
    agent.stop().await;
}

/// A Kubernetes ConfigMap volume: each file is a symlink through `..data`, itself a symlink
/// to a timestamped directory; an update writes a new directory and swaps `..data` with a
/// rename, then adds the symlinks of new keys and removes those of removed keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_reloads_by_itself() {
    use std::os::unix::fs::symlink;
    let nginx = Nginx::start();
    let mount = tempfile::tempdir().unwrap();
    let mount = mount.path();
    let publish = |version: &str, files: &[(&str, String)]| {
        let data = mount.join(format!("..{version}"));
        std::fs::create_dir(&data).unwrap();
        for (name, text) in files {
            std::fs::write(data.join(name), text).unwrap();
        }
        let staged = mount.join("..data_tmp");
        symlink(format!("..{version}"), &staged).unwrap();
        std::fs::rename(&staged, mount.join("..data")).unwrap();
    };
    let agent_file = checks(&nginx, &["stays"], "watch_config = \"500ms\"");
    publish(
        "2024_01_01_00_00_00.000000001",
        &[
            ("agent.toml", agent_file.clone()),
            ("old.toml", check(&nginx, "old-only")),
        ],
    );
    for key in ["agent.toml", "old.toml"] {
        symlink(format!("..data/{key}"), mount.join(key)).unwrap();
    }
    let agent = RunningAgent::start_reloadable(mount).await;
    running_exactly(&agent, &["old-only", "stays"], "the first version to run").await;

    // The update renames old.toml to new.toml (with a check of its own).
    publish(
        "2024_01_01_00_01_00.000000002",
        &[
            ("agent.toml", agent_file),
            ("new.toml", check(&nginx, "new-only")),
        ],
    );
    symlink("..data/new.toml", mount.join("new.toml")).unwrap();
    std::fs::remove_file(mount.join("old.toml")).unwrap();
    std::fs::remove_dir_all(mount.join("..2024_01_01_00_00_00.000000001")).unwrap();
    running_exactly(
        &agent,
        &["new-only", "stays"],
        "the old-only check to go and the new one to run",
    )
    .await;
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        !metrics.contains("check=\"old-only\""),
        "the old check's series are gone:\n{metrics}"
    );

    // An update of a file's content only: the same names, ..data swapped again.
    publish(
        "2024_01_01_00_02_00.000000003",
        &[
            (
                "agent.toml",
                checks(&nginx, &["stays"], "watch_config = \"500ms\""),
            ),
            ("new.toml", check(&nginx, "new-next")),
        ],
    );
    std::fs::remove_dir_all(mount.join("..2024_01_01_00_01_00.000000002")).unwrap();
    running_exactly(
        &agent,
        &["new-next", "stays"],
        "a content change behind ..data to load",
    )
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    std::fs::write(&path, checks(&nginx, &["one"], "")).unwrap();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(["run", "--config"])
        .arg(&path)
        .arg("--listen")
        .arg(listen.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(crate::support::KillOnDrop)
        .unwrap();
    wait_for_tcp(listen, Duration::from_secs(20));
    std::fs::write(&path, checks(&nginx, &["one", "two"], "")).unwrap();
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    eventually(
        Duration::from_secs(10),
        "SIGHUP to load the new check",
        || async {
            let (_, api) = http_get(listen, "/api/v1/checks").await;
            api.contains("\"name\":\"two\"").then_some(())
        },
    )
    .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_can_gain_labels_on_reload_without_touching_the_others() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    std::fs::write(&path, checks(&nginx, &["plain", "tagged"], "")).unwrap();
    let agent = RunningAgent::start_reloadable(&path).await;
    let before = eventually(Duration::from_secs(10), "a run of each check", || async {
        let (_, metrics) = agent.get("/metrics").await;
        (runs(&metrics, "plain")? >= 1.0 && runs(&metrics, "tagged")? >= 1.0)
            .then(|| runs(&metrics, "plain"))
            .flatten()
    })
    .await;

    let tagged = checks(&nginx, &["plain", "tagged"], "").replace(
        "name = \"tagged\"",
        "name = \"tagged\"\nlabels = { team = \"web\" }",
    );
    std::fs::write(&path, tagged).unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        runs(&metrics, "plain").unwrap() >= before,
        "plain kept its counter"
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_check_runs_total",
            &[("check", "tagged"), ("team", "web"), ("result", "success")]
        ),
        Some(0.0),
        "the relabelled check starts over with its new label:\n{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|line| line.contains("check=\"plain\"") && line.contains("team=")),
        "the other check has no team label"
    );
    agent.stop().await;
}

/// `[[traffic]]` and `[[remote_write]]` follow a reload: a changed injector restarts with its
/// new floor, a new one starts and a removed one stops (its series go); a remote-write endpoint
/// that is down keeps its queue through a change of its definition; the answer says what
/// changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_traffic_and_remote_write_changes() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    let down = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let config = |traffic: &[(&str, &str)], remotes: &[(&str, &str)]| {
        let mut text = checks(&nginx, &["keep"], "");
        for (name, floor) in traffic {
            text.push_str(&format!(
                "\n[[traffic]]\nname = \"{name}\"\nfloor = \"{floor}\"\nurl = \"{}\"\nrefresh = \"1s\"\n",
                nginx.url("/ok")
            ));
        }
        for (name, timeout) in remotes {
            text.push_str(&format!(
                "\n[[remote_write]]\nname = \"{name}\"\nurl = \"{down}\"\ninterval = \"500ms\"\ntimeout = \"{timeout}\"\n"
            ));
        }
        text
    };
    std::fs::write(&path, config(&[("night", "1/s")], &[("central", "1s")])).unwrap();
    let agent = RunningAgent::start_reloadable(&path).await;
    let queue = |metrics: &str, remote: &str| {
        sample(
            metrics,
            "nightjar_remote_write_queue_samples",
            &[("remote", remote)],
        )
    };
    // Let the down endpoint's queue hold several snapshots.
    let first = eventually(Duration::from_secs(20), "a queued snapshot", || async {
        let (_, metrics) = agent.get("/metrics").await;
        queue(&metrics, "central").filter(|queued| *queued > 0.0)
    })
    .await;
    let before = eventually(
        Duration::from_secs(20),
        "three queued snapshots",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            queue(&metrics, "central").filter(|queued| *queued >= 3.0 * first)
        },
    )
    .await;

    std::fs::write(
        &path,
        config(
            &[("night", "2/s"), ("day", "1/s")],
            &[("central", "2s"), ("spare", "1s")],
        ),
    )
    .unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Traffic: added day; changed night; removed none."),
        "{body}"
    );
    assert!(
        body.contains("Remote write: added spare; changed central; removed none."),
        "{body}"
    );
    assert!(body.contains("0 added, 0 changed, 0 removed"), "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "nightjar_traffic_floor_rate",
            &[("traffic", "night")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_traffic_requests_total",
            &[("traffic", "day"), ("result", "failure")]
        ),
        Some(0.0),
        "the new injector's series start at 0"
    );
    // The queue was kept: the first round after the reload adds to it. (Reset, it would
    // hold one snapshot, a third of what it held before.)
    let (_, metrics) = agent.get("/metrics").await;
    let at_reload = queue(&metrics, "central").unwrap();
    let after = eventually(
        Duration::from_secs(20),
        "a round after the reload",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            queue(&metrics, "central").filter(|queued| *queued != at_reload)
        },
    )
    .await;
    assert!(
        after > before,
        "the queue went from {before} to {after}: it was not kept"
    );
    eventually(
        Duration::from_secs(20),
        "the new endpoint to queue",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            queue(&metrics, "spare").filter(|queued| *queued > 0.0)
        },
    )
    .await;

    // Removing both stops them and drops their series; an unchanged reload changes nothing.
    std::fs::write(&path, config(&[("night", "2/s")], &[("central", "2s")])).unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Traffic: added none; changed none; removed day."),
        "{body}"
    );
    assert!(
        body.contains("Remote write: added none; changed none; removed spare."),
        "{body}"
    );
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        !metrics.contains("traffic=\"day\"") && !metrics.contains("remote=\"spare\""),
        "removed series are gone:\n{metrics}"
    );
    agent.stop().await;
}

/// A reload before a long-interval check's early first run (a deploy, then a config change
/// seconds later) keeps the early run: the check reports within a minute all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_before_the_early_run_keeps_it() {
    let nginx = Nginx::start();
    // A name whose early run comes a few seconds after the start, after the reload below.
    let name = (0..1000)
        .map(|idx| format!("hourly-{idx}"))
        .find(|name| {
            let offset = nightjar::schedule::offset_in(name, Duration::from_secs(60));
            (Duration::from_secs(4)..Duration::from_secs(10)).contains(&offset)
        })
        .expect("a name with a short early offset");
    let text = format!(
        "[[check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1h\"\ntimeout = \"2s\"\n",
        nginx.url("/ok")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    std::fs::write(&path, &text).unwrap();
    let agent = RunningAgent::start_reloadable(&path).await;
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        runs(&metrics, &name),
        Some(0.0),
        "reloaded before the early run"
    );
    eventually(
        Duration::from_secs(60),
        "the early run after the reload",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            (runs(&metrics, &name)? >= 1.0).then_some(())
        },
    )
    .await;
    agent.stop().await;
}

/// SIGHUP or SIGTERM sent the moment the agent's port answers: the signals are listened for
/// from before the port is bound, so SIGHUP is neither fatal (its default action, which killed
/// the agent every time here before) nor lost, and SIGTERM is a clean exit.
#[tokio::test]
async fn signals_sent_as_soon_as_the_port_answers() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    for signal in ["-HUP", "-TERM"] {
        std::fs::write(&path, checks(&nginx, &["one"], "")).unwrap();
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = crate::support::nightjar()
            .args(["run", "--config"])
            .arg(&path)
            .arg("--listen")
            .arg(listen.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(crate::support::KillOnDrop)
            .unwrap();
        // Poll without pause, so the signal comes as early as a client can send it.
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(listen).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the port never answered"
            );
        }
        if signal == "-HUP" {
            std::fs::write(&path, checks(&nginx, &["one", "two"], "")).unwrap();
        }
        let pid = child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        if signal == "-HUP" {
            eventually(
                Duration::from_secs(10),
                "the early SIGHUP to reload",
                || async {
                    let (_, api) = http_get(listen, "/api/v1/checks").await;
                    api.contains("\"name\":\"two\"").then_some(())
                },
            )
            .await;
            let output = crate::support::terminate(&mut child);
            assert_eq!(output.status.code(), Some(0), "{output:?}");
        } else {
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(0), "an early SIGTERM is a clean exit");
        }
    }
}

/// A reload does not wait for a run in flight of a check it leaves unchanged (it used to stop
/// every check and wait for their runs, up to their timeouts), and that run goes on to its
/// result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_wait_for_an_unchanged_checks_run_in_flight() {
    let nginx = Nginx::start();
    // A server that accepts and never answers: the run stays in flight until its timeout.
    let stall = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
        .await
        .unwrap();
    let stall_addr = stall.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(4);
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = stall.accept().await {
            held.push(stream);
            let _ = accepted_tx.send(()).await;
        }
    });
    // An hourly check runs once early, at its name's offset inside the first minute.
    let name = (0..1000)
        .map(|idx| format!("stalled-{idx}"))
        .find(|name| {
            nightjar::schedule::offset_in(name, Duration::from_secs(60)) < Duration::from_secs(3)
        })
        .expect("a name with a short offset");
    let stalled = format!(
        "\n[[check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"http://{stall_addr}/\"\ninterval = \"1h\"\ntimeout = \"20s\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    std::fs::write(&path, checks(&nginx, &["other"], "") + &stalled).unwrap();
    let agent = RunningAgent::start_reloadable(&path).await;
    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("the stalled check's run to connect");

    std::fs::write(&path, checks(&nginx, &["other", "added"], "") + &stalled).unwrap();
    let asked = std::time::Instant::now();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    let took = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 added, 0 changed, 0 removed"), "{body}");
    assert!(
        took < Duration::from_secs(5),
        "the reload waited {took:?} for the run in flight"
    );
    eventually(
        Duration::from_secs(10),
        "the added check to run",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            (runs(&metrics, "added")? >= 1.0).then_some(())
        },
    )
    .await;
    // The run in flight was not cut short: it ends at its timeout, with its result.
    eventually(
        Duration::from_secs(30),
        "the stalled run's result",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            sample(
                &metrics,
                "nightjar_check_failures_total",
                &[("check", &name), ("reason", "timeout")],
            )
            .filter(|failures| *failures >= 1.0)
        },
    )
    .await;
    agent.stop().await;
    server.abort();
}
