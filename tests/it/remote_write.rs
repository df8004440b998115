//! remote_write against a real Prometheus with its remote-write receiver on loopback: the
//! pushed series are queryable with the right labels and values; a down endpoint fills a
//! bounded queue whose drops are counted; a 4xx is not retried.

use std::time::Duration;

use crate::support::{Nginx, Prometheus, RunningAgent, eventually, free_port, load, sample};

fn config(nginx: &Nginx, remote: &str, extra: &str) -> String {
    format!(
        r#"[agent]
name = "edge-1"
region = "lab"

[[check]]
name = "good"
type = "http"
url = "{good}"
interval = "1s"
timeout = "900ms"

[[remote_write]]
url = "{remote}"
interval = "1s"
timeout = "2s"
{extra}
"#,
        good = nginx.url("/ok"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_series_are_queryable_with_agent_and_region() {
    let nginx = Nginx::start();
    let prometheus = Prometheus::receiver();
    prometheus.wait_ready().await;
    let text = config(
        &nginx,
        &format!("http://{}/api/v1/write", prometheus.addr),
        "bearer_token = \"${env:RW_TOKEN}\"",
    );
    let agent =
        RunningAgent::start(load(&text, &[("RW_TOKEN", "not-checked-by-prometheus")])).await;
    let success = eventually(
        Duration::from_secs(30),
        "pushed probe_success in Prometheus",
        || async {
            let found = prometheus
                .query(r#"probe_success{check="good",agent="edge-1",region="lab",type="http"}"#)
                .await;
            found.first().map(|(_, value)| *value)
        },
    )
    .await;
    assert_eq!(success, 1.0);
    let runs = eventually(Duration::from_secs(15), "pushed run counters", || async {
        let found = prometheus
            .query(r#"nightjar_check_runs_total{check="good",result="success",agent="edge-1",region="lab"}"#)
            .await;
        found.first().map(|(_, value)| *value).filter(|value| *value >= 1.0)
    })
    .await;
    assert!(runs >= 1.0);
    let buckets = prometheus
        .query(r#"nightjar_check_duration_seconds_bucket{check="good",result="success",le="+Inf"}"#)
        .await;
    assert_eq!(buckets.len(), 1, "histograms arrive as buckets");
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        sample(
            &metrics,
            "nightjar_remote_write_samples_total",
            &[("remote", "remote-1"), ("result", "sent")]
        )
        .unwrap()
            > 0.0
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_endpoint_fills_a_bounded_queue_and_counts_drops() {
    let nginx = Nginx::start();
    let closed = free_port();
    let text = config(
        &nginx,
        &format!("http://127.0.0.1:{closed}/api/v1/write"),
        "max_queue = 300\nmax_batch = 100",
    );
    let agent = RunningAgent::start(load(&text, &[])).await;
    let (retries, dropped) = eventually(Duration::from_secs(20), "drops to be counted", || async {
        let (_, metrics) = agent.get("/metrics").await;
        let retries = sample(
            &metrics,
            "nightjar_remote_write_retries_total",
            &[("remote", "remote-1")],
        )?;
        let dropped = sample(
            &metrics,
            "nightjar_remote_write_samples_total",
            &[("remote", "remote-1"), ("result", "dropped")],
        )?;
        (retries > 0.0 && dropped > 0.0).then_some((retries, dropped))
    })
    .await;
    assert!(retries > 0.0 && dropped > 0.0);
    let (_, metrics) = agent.get("/metrics").await;
    let queued = sample(
        &metrics,
        "nightjar_remote_write_queue_samples",
        &[("remote", "remote-1")],
    )
    .unwrap();
    assert!(queued <= 300.0, "the queue is bounded: {queued}");
    assert_eq!(
        sample(
            &metrics,
            "nightjar_remote_write_samples_total",
            &[("remote", "remote-1"), ("result", "sent")]
        ),
        Some(0.0)
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_not_retried() {
    let nginx = Nginx::start();
    let text = config(&nginx, &nginx.url("/notfound"), "");
    let agent = RunningAgent::start(load(&text, &[])).await;
    eventually(Duration::from_secs(15), "a rejected batch", || async {
        let (_, metrics) = agent.get("/metrics").await;
        let rejected = sample(
            &metrics,
            "nightjar_remote_write_samples_total",
            &[("remote", "remote-1"), ("result", "rejected")],
        )?;
        (rejected > 0.0).then_some(())
    })
    .await;
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "nightjar_remote_write_retries_total",
            &[("remote", "remote-1")]
        ),
        Some(0.0)
    );
    agent.stop().await;
}
