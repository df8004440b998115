//! The agent's server with real checks against nginx: health, readiness, the JSON API,
//! `promtool check metrics` on the real exposition, and a real Prometheus scraping the agent
//! and computing an availability SLI from the counters.

use std::time::Duration;

use crate::support::{Nginx, Prometheus, RunningAgent, eventually, load, require, sample};

/// A passing and a failing check, with the metrics set `metrics`.
fn two_checks(nginx: &Nginx, metrics: &str) -> String {
    format!(
        r#"[agent]
region = "test-region"
labels = {{ env = "ci" }}
metrics = "{metrics}"

[[check]]
name = "good"
type = "http"
url = "{good}"
interval = "1s"
timeout = "900ms"
labels = {{ team = "shop" }}

[[check]]
name = "bad"
type = "http"
url = "{bad}"
interval = "1s"
timeout = "900ms"
"#,
        good = nginx.url("/ok"),
        bad = nginx.url("/unavailable"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_json_api_and_promtool_lint() {
    let nginx = Nginx::start();
    // Every series at 0 from load: the full set.
    let agent = RunningAgent::start(load(&two_checks(&nginx, "full"), &[])).await;
    assert_eq!(agent.get("/-/healthy").await.0, 200);
    assert_eq!(agent.get("/-/ready").await.0, 200);

    // Counters exist at 0 before any run.
    let (status, metrics) = agent.get("/metrics").await;
    assert_eq!(status, 200);
    let good_labels = [
        ("check", "good"),
        ("team", "shop"),
        ("type", "http"),
        ("env", "ci"),
        ("region", "test-region"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = good_labels.to_vec();
        labels.push(extra);
        labels
    };
    assert!(
        sample(
            &metrics,
            "nightjar_check_runs_total",
            &with(("result", "failure"))
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "nightjar_check_failures_total",
            &with(("reason", "timeout"))
        )
        .is_some(),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let target = nginx.url("/unavailable");
    assert_eq!(
        sample(
            &metrics,
            "nightjar_check_info",
            &[
                ("check", "bad"),
                ("schedule", "every 1s"),
                ("target", &target)
            ]
        ),
        Some(1.0)
    );

    let api = eventually(
        Duration::from_secs(10),
        "both checks to have run",
        || async {
            let (_, body) = agent.get("/api/v1/checks").await;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            let checks = json["checks"].as_array()?;
            checks
                .iter()
                .all(|c| c["state"] != "unknown")
                .then_some(json)
        },
    )
    .await;
    assert_eq!(api["region"], "test-region");
    let by_name = |name: &str| {
        api["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let good = by_name("good");
    assert_eq!(good["state"], "passing");
    assert_eq!(good["last_run"]["status_code"], 200);
    assert!(good["last_run"]["phases"]["connect"].as_f64().unwrap() > 0.0);
    assert_eq!(good["labels"]["team"], "shop");
    let bad = by_name("bad");
    assert_eq!(bad["state"], "failing");
    assert_eq!(bad["last_run"]["reason"], "status");
    assert_eq!(
        bad["last_run"]["detail"],
        "expected status 2xx, got 503 Service Unavailable"
    );

    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(&metrics, "probe_success", &good_labels),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "probe_success",
            &[("check", "bad"), ("region", "test-region")]
        ),
        Some(0.0)
    );
    assert!(
        sample(
            &metrics,
            "nightjar_check_failures_total",
            &[("check", "bad"), ("reason", "status")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &metrics,
            "nightjar_check_runs_total",
            &with(("result", "success"))
        )
        .unwrap()
            >= 1.0
    );
    assert!(metrics.contains("nightjar_scheduler_lag_seconds_bucket"));
    assert!(
        metrics.contains("\nnightjar_runtime_tasks{"),
        "the task gauge"
    );

    // promtool lints the exposition.
    let promtool = require("promtool", "prometheus");
    if let Err(out) = crate::support::promtool_check_metrics(&promtool, &metrics) {
        panic!("promtool check metrics failed:\n{out}");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_agent_and_computes_an_availability_sli() {
    let nginx = Nginx::start();
    let agent = RunningAgent::start(load(&two_checks(&nginx, "lean"), &[])).await;
    let prometheus = Prometheus::start(&[("nightjar", agent.addr)]);
    prometheus.wait_ready().await;

    // Wait until Prometheus holds a few scrapes of each check's counters.
    eventually(
        Duration::from_secs(40),
        "three scrapes with runs of each check",
        || async {
            let scrapes = prometheus
                .query("min by (check) (count_over_time(nightjar_check_runs_total[1m]))")
                .await;
            let runs = prometheus
                .query("sum by (check) (nightjar_check_runs_total)")
                .await;
            let enough = scrapes.len() == 2 && scrapes.iter().all(|(_, n)| *n >= 3.0);
            (enough && runs.len() == 2 && runs.iter().all(|(_, n)| *n >= 3.0)).then_some(())
        },
    )
    .await;

    // Availability SLI per check: successful runs over all runs.
    let sli = prometheus
        .query("sum by (check) (nightjar_check_runs_total{result=\"success\"}) / sum by (check) (nightjar_check_runs_total)")
        .await;
    let ratio = |name: &str| {
        sli.iter()
            .find(|(m, _)| m["check"] == name)
            .map(|(_, v)| *v)
            .unwrap()
    };
    assert_eq!(ratio("good"), 1.0);
    assert_eq!(ratio("bad"), 0.0);

    // Across both checks the SLI equals what the raw counters say, with every label intact.
    let raw = prometheus.query("nightjar_check_runs_total").await;
    for (metric, _) in &raw {
        assert_eq!(metric["region"], "test-region");
        assert_eq!(metric["env"], "ci");
        assert_eq!(metric["job"], "nightjar");
    }
    // Evaluate all three at one fixed instant so the counters cannot move in between.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 1.0;
    let success = prometheus
        .query_at("sum(nightjar_check_runs_total{result=\"success\"})", at)
        .await[0]
        .1;
    let total = prometheus
        .query_at("sum(nightjar_check_runs_total)", at)
        .await[0]
        .1;
    let overall = prometheus
        .query_at(
            "sum(nightjar_check_runs_total{result=\"success\"}) / sum(nightjar_check_runs_total)",
            at,
        )
        .await[0]
        .1;
    assert!(total >= 6.0);
    assert_eq!(overall, success / total);
    assert!(
        overall > 0.3 && overall < 0.7,
        "one of two checks fails: {overall}"
    );
    // promtool lints the lean exposition of running checks too.
    let (_, metrics) = agent.get("/metrics").await;
    let promtool = require("promtool", "prometheus");
    if let Err(out) = crate::support::promtool_check_metrics(&promtool, &metrics) {
        panic!("promtool check metrics failed on the lean set:\n{out}");
    }
    agent.stop().await;
}
