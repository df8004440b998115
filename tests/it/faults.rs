//! Faults around the agent: its configuration vanishing at reload, its remote-write endpoint
//! down and back, and the system clock jumping.

use std::time::{Duration, Instant};

use crate::support::{
    Prometheus, RunningAgent, eventually, free_port, http_get, http_post, load, sample,
};

fn runs(metrics: &str, check: &str) -> f64 {
    ["success", "failure"]
        .iter()
        .filter_map(|result| {
            sample(
                metrics,
                "nightjar_check_runs_total",
                &[("check", check), ("result", result)],
            )
        })
        .sum()
}

const ONE_CHECK: &str =
    "[[check]]\nname = \"steady\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1s\"\n";

#[tokio::test]
async fn a_deleted_or_unreadable_config_at_reload_keeps_the_old_one_running() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("conf.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("checks.toml"), ONE_CHECK).unwrap();
    let agent = RunningAgent::start_reloadable(&dir).await;
    eventually(Duration::from_secs(10), "a first run", || async {
        (runs(&agent.get("/metrics").await.1, "steady") >= 1.0).then_some(())
    })
    .await;

    // The directory disappears (a ConfigMap unmounted, a bad deploy).
    std::fs::remove_dir_all(&dir).unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("conf.d"), "the error names the path: {body}");
    // A file that is not text.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("checks.toml"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("checks.toml"), "{body}");

    // The old configuration still runs, and says the reload failed.
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(&metrics, "nightjar_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let before = runs(&metrics, "steady");
    eventually(
        Duration::from_secs(10),
        "the old check to keep running",
        || async { (runs(&agent.get("/metrics").await.1, "steady") >= before + 2.0).then_some(()) },
    )
    .await;

    // Fixed: the reload goes through.
    std::fs::write(dir.join("checks.toml"), ONE_CHECK).unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(&metrics, "nightjar_config_last_reload_successful", &[]),
        Some(1.0)
    );
    agent.stop().await;
}

#[tokio::test]
async fn remote_write_sends_again_when_its_endpoint_comes_back() {
    let endpoint = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    // A small queue, which the agent's series (a few dozen a push with lean metrics) overflow
    // within seconds while the endpoint is down.
    let text = format!(
        "[agent]\nname = \"faulty\"\nregion = \"lab\"\n\n{ONE_CHECK}\n[[remote_write]]\nurl = \"http://{endpoint}/api/v1/write\"\ninterval = \"1s\"\nmax_queue = 500\n"
    );
    let agent = RunningAgent::start(load(&text, &[])).await;
    let remote = [("remote", "remote-1")];
    // Down: retries and drops are counted, the queue stays bounded, nothing is sent.
    eventually(
        Duration::from_secs(30),
        "drops while the endpoint is down",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            let dropped = sample(
                &metrics,
                "nightjar_remote_write_samples_total",
                &[("remote", "remote-1"), ("result", "dropped")],
            )?;
            let retries = sample(&metrics, "nightjar_remote_write_retries_total", &remote)?;
            let queued = sample(&metrics, "nightjar_remote_write_queue_samples", &remote)?;
            assert!(queued <= 500.0, "the queue is bounded: {queued}");
            (dropped > 0.0 && retries > 0.0).then_some(())
        },
    )
    .await;

    // Back: the next retry (at most 30 s of backoff) delivers, and series arrive.
    let prometheus = Prometheus::receiver_on(endpoint);
    prometheus.wait_ready().await;
    eventually(
        Duration::from_secs(60),
        "samples to be sent again",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            let sent = sample(
                &metrics,
                "nightjar_remote_write_samples_total",
                &[("remote", "remote-1"), ("result", "sent")],
            )?;
            (sent > 0.0).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the series in Prometheus",
        || async {
            let found = prometheus
                .query("nightjar_check_runs_total{agent=\"faulty\",check=\"steady\"}")
                .await;
            (!found.is_empty()).then_some(())
        },
    )
    .await;
    agent.stop().await;
}

/// libfaketime moves the wall clock of the agent's process only; the monotonic clock is
/// left alone, as it is when NTP steps or an operator sets the date.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

async fn last_started(listen: std::net::SocketAddr) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, body) = http_get(listen, "/api/v1/checks").await;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let at = json["checks"][0]["last_run"]["started_at"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|at| at.with_timezone(&chrono::Utc))
}

/// Runs of the 1 s check over about four seconds of real time.
async fn runs_in_four_seconds(listen: std::net::SocketAddr) -> f64 {
    let before = runs(&http_get(listen, "/metrics").await.1, "steady");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = runs(&http_get(listen, "/metrics").await.1, "steady");
    assert!(started.elapsed() < Duration::from_secs(6));
    after - before
}

#[tokio::test]
async fn a_wall_clock_jump_moves_timestamps_not_the_schedule() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: run `bash .ci/run` once, or `apt-get install faketime`"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("checks.toml");
    std::fs::write(&config, ONE_CHECK).unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0s\n").unwrap();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = crate::support::start_agent(
        crate::support::nightjar()
            .args(["run", "--config"])
            .arg(&config)
            .env("LD_PRELOAD", FAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &offset)
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1"),
        listen,
    );
    eventually(Duration::from_secs(10), "a first run", || async {
        last_started(listen).await
    })
    .await;
    let steady = runs_in_four_seconds(listen).await;
    assert!(
        (3.0..=5.0).contains(&steady),
        "{steady} runs in 4 s before any jump"
    );

    for (jump, hours) in [("+3600s", 1i64), ("-7200s", -2)] {
        std::fs::write(&offset, format!("{jump}\n")).unwrap();
        // Results are stamped with the new wall time...
        eventually(
            Duration::from_secs(10),
            "timestamps on the new wall time",
            || async {
                let at = last_started(listen).await?;
                let expected = chrono::Utc::now() + chrono::Duration::hours(hours);
                ((at - expected).num_seconds().abs() < 5).then_some(())
            },
        )
        .await;
        // ...and the check runs every second, with no burst after a jump forward and no
        // pause after a jump back.
        let after = runs_in_four_seconds(listen).await;
        assert!(
            (3.0..=5.0).contains(&after),
            "{after} runs in 4 s after a jump of {jump}"
        );
    }
    let out = crate::support::terminate(&mut child);
    assert_eq!(out.status.code(), Some(0));
}
