//! Three agents in three regions, scraped by a real Prometheus that evaluates the rules of
//! `nightjar rules`: one region cut off from the target does not page; every region failing
//! does (read from Prometheus's alerts API).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Nginx, Prometheus, RunningAgent, eventually, http_get, load, run_ok};

/// The same check in every region; each agent says which region it probes from, and the
/// target refuses the ap agent only (nginx closes its connections).
fn agent_config(region: &str, url: &str, metrics: &str) -> String {
    format!(
        "[agent]\nregion = \"{region}\"\nmetrics = \"{metrics}\"\n\n[rules]\nquorum_for = \"3s\"\n\n[[check]]\nname = \"shop\"\ntype = \"http\"\nurl = \"{url}\"\nheaders = {{ x-probe-region = \"{region}\" }}\ninterval = \"1s\"\ntimeout = \"800ms\"\nregions = [\"eu\", \"us\", \"ap\"]\n"
    )
}

/// Prometheus's clock: the time of an instant query's answer.
async fn now(prometheus: &Prometheus) -> f64 {
    let (status, body) = http_get(prometheus.addr, "/api/v1/query?query=time()").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["data"]["result"][0].as_f64().unwrap()
}

/// Names of the firing alerts, with their `check` label.
async fn firing(prometheus: &Prometheus) -> Vec<(String, String)> {
    let (status, body) = http_get(prometheus.addr, "/api/v1/alerts").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|alert| alert["state"] == "firing")
        .map(|alert| {
            (
                alert["labels"]["alertname"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                alert["labels"]["check"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_region_cut_off_does_not_page_all_regions_failing_does() {
    one_region_cut_off("lean").await;
}

/// The same with every series (`metrics = "full"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_region_cut_off_does_not_page_all_regions_failing_does_with_full_metrics() {
    one_region_cut_off("full").await;
}

/// The agents export the metrics set `metrics`.
async fn one_region_cut_off(metrics: &str) {
    let mut nginx = Some(Nginx::start());
    let shop = nginx.as_ref().unwrap().url("/regional");
    let eu = RunningAgent::start(load(&agent_config("eu", &shop, metrics), &[])).await;
    let us = RunningAgent::start(load(&agent_config("us", &shop, metrics), &[])).await;
    let ap = RunningAgent::start(load(&agent_config("ap", &shop, metrics), &[])).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nightjar.toml");
    std::fs::write(&config, agent_config("eu", &shop, metrics)).unwrap();
    let rules = dir.path().join("rules.yml");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .args(["rules", "--config"])
            .arg(&config)
            .arg("--output")
            .arg(&rules),
    );
    let prometheus = Prometheus::with_rules(
        &[
            ("nightjar-eu", eu.addr),
            ("nightjar-us", us.addr),
            ("nightjar-ap", ap.addr),
        ],
        Path::new(&rules),
    );
    prometheus.wait_ready().await;

    // One region failing, for longer than quorum_for: no page. Prometheus's clock when it
    // first saw it, then wait until it has evaluated the quorum rule more than quorum_for (3 s)
    // later, with the same single region failing all along.
    let since = eventually(
        Duration::from_secs(30),
        "probe_success from the three regions",
        || async {
            let found = prometheus.query(r#"probe_success{check="shop"}"#).await;
            let failing: Vec<&str> = found
                .iter()
                .filter(|(_, value)| *value == 0.0)
                .filter_map(|(metric, _)| metric["region"].as_str())
                .collect();
            if found.len() == 3 && failing == ["ap"] {
                Some(now(&prometheus).await)
            } else {
                None
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the quorum rule evaluated more than quorum_for after one region failed",
        || async {
            let at = prometheus.last_evaluation("nightjar-region-quorum").await?;
            (at > since + 4.0).then_some(())
        },
    )
    .await;
    let window = prometheus
        .query(r#"min_over_time(count by (check) (probe_success{check="shop"} == 0)[5s:1s])"#)
        .await;
    let widest = prometheus
        .query(r#"max_over_time(count by (check) (probe_success{check="shop"} == 0)[5s:1s])"#)
        .await;
    assert_eq!(
        (window[0].1, widest[0].1),
        (1.0, 1.0),
        "one region failed all along"
    );
    let alerts = firing(&prometheus).await;
    assert!(
        !alerts
            .iter()
            .any(|(name, _)| name == "NightjarCheckFailingInRegions"),
        "one region must not page: {alerts:?}"
    );
    let failing = prometheus
        .query(r#"count by (check) (probe_success{check="shop"} == 0)"#)
        .await;
    assert_eq!(failing[0].1, 1.0);

    // The shop goes down for everyone: the quorum alert fires.
    drop(nginx.take());
    let alerts = eventually(
        Duration::from_secs(30),
        "the region-quorum alert to fire",
        || async {
            let alerts = firing(&prometheus).await;
            alerts
                .iter()
                .any(|(name, check)| name == "NightjarCheckFailingInRegions" && check == "shop")
                .then_some(alerts)
        },
    )
    .await;
    assert!(
        alerts.iter().all(|(name, _)| name != "NightjarAgentDown"),
        "{alerts:?}"
    );
    for agent in [eu, us, ap] {
        agent.stop().await;
    }
}
