//! A real Prometheus scrapes nightjar's `/probe` the way it scrapes blackbox_exporter: a job
//! in the standard form (targets relabelled into `__param_target` and `instance`, the
//! prober's address into `__address__`), and the job the Prometheus Operator generates from
//! the Probe object of `deploy/kubernetes/probe-example.yaml` (its module, path, job name and
//! labels; its targets and prober address pointed at loopback). The series land with the
//! target as `instance` and `up` is 1.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::{Nginx, Prometheus, eventually, free_port, nightjar, start_agent};

/// The standard blackbox_exporter job, as its README writes it.
fn standard_job(job: &str, module: &str, targets: &[String], prober: SocketAddr) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        r#"  - job_name: {job}
    scrape_interval: 1s
    scrape_timeout: 1s
    metrics_path: /probe
    params:
      module: [{module}]
    static_configs:
      - targets: [{targets}]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {prober}
"#,
        targets = targets.join(", ")
    )
}

/// The scrape job the Prometheus Operator writes for a Probe with static targets
/// (`probe/NAMESPACE/NAME`: `params.module` from `spec.module`, the path and scheme of
/// `spec.prober`, the static labels and a `namespace` label on the targets, `job` from
/// `spec.jobName`, then the same three relabellings as the standard job), with `prober` in
/// place of `spec.prober.url` and `targets` in place of the static ones.
fn operator_job(probe: &yaml_rust2::Yaml, targets: &[String], prober: SocketAddr) -> String {
    let spec = &probe["spec"];
    let name = probe["metadata"]["name"].as_str().unwrap();
    let module = spec["module"].as_str().unwrap();
    let path = spec["prober"]["path"].as_str().unwrap_or("/probe");
    let scheme = spec["prober"]["scheme"].as_str().unwrap_or("http");
    let job = spec["jobName"].as_str().unwrap_or("probe");
    let mut labels = String::from("          namespace: monitoring\n");
    if let Some(hash) = spec["targets"]["staticConfig"]["labels"].as_hash() {
        for (key, value) in hash {
            labels.push_str(&format!(
                "          {}: {}\n",
                key.as_str().unwrap(),
                value.as_str().unwrap()
            ));
        }
    }
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        r#"  - job_name: probe/monitoring/{name}
    honor_timestamps: true
    scrape_interval: 1s
    scrape_timeout: 1s
    metrics_path: {path}
    scheme: {scheme}
    params:
      module: [{module}]
    static_configs:
      - targets: [{targets}]
        labels:
{labels}    relabel_configs:
      - source_labels: [job]
        target_label: __tmp_prometheus_job_name
      - target_label: job
        replacement: {job}
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {prober}
"#,
        targets = targets.join(", ")
    )
}

#[tokio::test]
async fn prometheus_scrapes_probe_with_the_standard_relabelling_and_the_operators() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let blackbox = dir.path().join("blackbox.yml");
    std::fs::write(
        &blackbox,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n",
    )
    .unwrap();
    let config = dir.path().join("nightjar.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nblackbox_config = {:?}\n",
            blackbox.display().to_string()
        ),
    )
    .unwrap();
    let agent = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _agent = start_agent(nightjar().arg("run").arg("--config").arg(&config), agent);

    let probe_example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/probe-example.yaml");
    let probe =
        yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(probe_example).unwrap())
            .unwrap()
            .remove(0);
    let up_target = nginx.url("/ok");
    let down_target = nginx.url("/notfound");
    let operator_target = nginx.url("/echo");
    let jobs = standard_job(
        "blackbox",
        "http_2xx",
        &[up_target.clone(), down_target.clone()],
        agent,
    ) + &operator_job(&probe, std::slice::from_ref(&operator_target), agent);
    let prometheus = Prometheus::scraping(&jobs);
    prometheus.wait_ready().await;

    let operator_job_name = probe["spec"]["jobName"].as_str().unwrap();
    for (target, job, success) in [
        (&up_target, "blackbox", 1.0),
        (&down_target, "blackbox", 0.0),
        (&operator_target, operator_job_name, 1.0),
    ] {
        let query = format!("probe_success{{instance=\"{target}\"}}");
        let found = eventually(Duration::from_secs(30), &query, || async {
            let samples = prometheus.query(&query).await;
            (!samples.is_empty()).then_some(samples)
        })
        .await;
        assert_eq!(found.len(), 1, "{query}: {found:?}");
        let (labels, value) = &found[0];
        assert_eq!(labels["instance"], target.as_str(), "{labels}");
        assert_eq!(labels["job"], job, "{labels}");
        assert_eq!(*value, success, "{query}");
        let up = prometheus
            .query(&format!("up{{instance=\"{target}\"}}"))
            .await;
        assert_eq!(up.len(), 1, "{up:?}");
        assert_eq!(up[0].1, 1.0, "up for {target}: {up:?}");
        assert!(
            prometheus
                .query(&format!("probe_duration_seconds{{instance=\"{target}\"}}"))
                .await
                .len()
                == 1,
            "probe_duration_seconds for {target}"
        );
    }
    // The operator's job carries the Probe's static labels and the namespace.
    let labelled = prometheus
        .query(&format!(
            "probe_success{{instance=\"{operator_target}\",namespace=\"monitoring\",team=\"web\"}}"
        ))
        .await;
    assert_eq!(labelled.len(), 1, "{labelled:?}");
}
