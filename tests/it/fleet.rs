//! Discovered targets in a running agent (one started without a reloader, so nothing here
//! is a reload): a template's targets from file_sd and HTTP SD apply at once (new targets' series start at 0, gone targets' series go, the
//! others keep their counters and states), a source that fails keeps the last good targets
//! and counts the failure, and `nightjar check` reads DNS SRV targets from BIND.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::bind::Bind;
use crate::support::{
    Nginx, RunningAgent, eventually, load, promtool_check_metrics, require, sample,
};

fn runs(metrics: &str, instance: &str) -> Option<f64> {
    let count = |result: &str| {
        sample(
            metrics,
            "nightjar_check_runs_total",
            &[
                ("check", "fleet"),
                ("instance", instance),
                ("result", result),
            ],
        )
    };
    Some(count("success")? + count("failure")?)
}

fn file_sd(path: &Path, targets: &[String]) {
    let list: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    // Written aside and renamed into place, as tools that write file_sd files do.
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        format!(
            r#"[{{"targets": [{}], "labels": {{"team": "web"}}}}]"#,
            list.join(", ")
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_targets_come_and_go_without_a_reload() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("targets.json");
    let (ok, missing, echo) = (nginx.url("/ok"), nginx.url("/notfound"), nginx.url("/echo"));
    file_sd(&sd, &[ok.clone(), missing.clone()]);
    let config = load(
        &format!(
            "[agent]\nregion = \"lab\"\n\n[[check]]\nname = \"fleet\"\ntype = \"http\"\ninterval = \"1s\"\ntimeout = \"900ms\"\ntargets_from = [{{ file = \"{}\" }}]\n",
            sd.display()
        ),
        &[],
    );
    assert!(
        config.checks.is_empty(),
        "discovered targets come at run time"
    );
    let agent = RunningAgent::start(config).await;
    let before = eventually(Duration::from_secs(15), "runs of both targets", || async {
        let (_, metrics) = agent.get("/metrics").await;
        (runs(&metrics, &ok)? >= 2.0 && runs(&metrics, &missing)? >= 2.0).then_some(metrics)
    })
    .await;
    assert_eq!(
        sample(
            &before,
            "probe_success",
            &[("check", "fleet"), ("instance", &missing), ("team", "web")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, "nightjar_discovery_targets", &[("check", "fleet")]),
        Some(2.0)
    );
    promtool_check_metrics(&require("promtool", "prometheus"), &before).unwrap();
    let ok_before = runs(&before, &ok).unwrap();
    let missing_before = runs(&before, &missing).unwrap();

    // One target goes, another comes.
    file_sd(&sd, &[ok.clone(), echo.clone()]);
    let after = eventually(Duration::from_secs(10), "the change applied", || async {
        let (_, metrics) = agent.get("/metrics").await;
        (runs(&metrics, &echo).is_some() && runs(&metrics, &missing).is_none()).then_some(metrics)
    })
    .await;
    assert!(
        runs(&after, &ok).unwrap() >= ok_before,
        "the unchanged target kept its counter"
    );
    assert!(
        !after.contains("/notfound"),
        "the gone target's series are gone"
    );
    let (_, api) = agent.get("/api/v1/checks").await;
    assert!(!api.contains("/notfound") && api.contains("/echo"), "{api}");
    eventually(Duration::from_secs(10), "the new target to run", || async {
        let (_, metrics) = agent.get("/metrics").await;
        (runs(&metrics, &echo)? >= 1.0).then_some(())
    })
    .await;

    // It comes back: its series start over.
    file_sd(&sd, &[ok.clone(), echo.clone(), missing.clone()]);
    let back = eventually(Duration::from_secs(10), "the target back", || async {
        let (_, metrics) = agent.get("/metrics").await;
        runs(&metrics, &missing)
    })
    .await;
    assert!(
        back < missing_before,
        "back at zero: {back} runs, {missing_before} before it went"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_sd_endpoint_down_keeps_the_last_good_targets_and_counts_the_failure() {
    let nginx = Nginx::start();
    std::fs::create_dir_all(nginx.www().join("sd")).unwrap();
    let document = nginx.www().join("sd/fleet.json");
    let ok = nginx.url("/ok");
    std::fs::write(&document, format!(r#"[{{"targets": [{ok:?}]}}]"#)).unwrap();
    let config = load(
        &format!(
            "[agent]\nregion = \"lab\"\n\n[[check]]\nname = \"fleet\"\ntype = \"http\"\ninterval = \"1s\"\ntimeout = \"900ms\"\ntargets_from = [{{ http = \"{}\", refresh = \"1s\" }}]\n",
            nginx.url("/sd/fleet.json")
        ),
        &[],
    );
    let agent = RunningAgent::start(config).await;
    let first = eventually(
        Duration::from_secs(15),
        "the discovered target's runs",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            runs(&metrics, &ok).filter(|runs| *runs >= 1.0)
        },
    )
    .await;
    std::fs::remove_file(&document).unwrap();
    let metrics = eventually(Duration::from_secs(15), "failures counted", || async {
        let (_, metrics) = agent.get("/metrics").await;
        let failures = sample(
            &metrics,
            "nightjar_discovery_failures_total",
            &[("check", "fleet")],
        )?;
        (failures >= 2.0).then_some(metrics)
    })
    .await;
    assert!(
        runs(&metrics, &ok).unwrap() >= first,
        "the target kept running with its counter"
    );
    eventually(
        Duration::from_secs(10),
        "more runs while the endpoint is down",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            (runs(&metrics, &ok)? >= first + 2.0).then_some(())
        },
    )
    .await;
    agent.stop().await;
}

#[test]
fn check_reads_dns_srv_targets_from_bind() {
    let bind = Bind::primary();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("srv.toml");
    std::fs::write(
        &path,
        format!(
            "[[check]]\nname = \"web\"\ntype = \"tcp\"\ntimeout = \"1s\"\ntargets_from = [{{ dns = \"_https._tcp.nightjar.test\", type = \"SRV\", server = \"{}\" }}]\n",
            bind.dns
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(["check", "--format", "json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let results: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let names: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|result| result["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "web@web1.nightjar.test:8443",
            "web@web2.nightjar.test:8443",
            "web@web3.nightjar.test:443"
        ]
    );
    let one = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(["check", "--format", "json", "--config"])
        .arg(&path)
        .args(["--only", "web@web3.nightjar.test:443"])
        .output()
        .unwrap();
    let results: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_discovered_targets() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("targets.json");
    let ok = nginx.url("/ok");
    file_sd(&sd, std::slice::from_ref(&ok));
    let config = dir.path().join("checks.toml");
    let write = |team: &str, extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[agent]\nregion = \"lab\"\n\n[[check]]\nname = \"fleet\"\ntype = \"http\"\ninterval = \"1s\"\ntimeout = \"900ms\"\nlabels = {{ owner = \"{team}\" }}\ntargets_from = [{{ file = \"targets.json\" }}]\n{extra}"
            ),
        )
        .unwrap();
    };
    write("a", "");
    let agent = RunningAgent::start_reloadable(&config).await;
    let before = eventually(Duration::from_secs(15), "runs of the target", || async {
        let (_, metrics) = agent.get("/metrics").await;
        runs(&metrics, &ok).filter(|runs| *runs >= 2.0)
    })
    .await;

    // Another check added: the template is unchanged, its target keeps its counter.
    write(
        "a",
        &format!(
            "\n[[check]]\nname = \"other\"\ntype = \"http\"\nurl = \"{}\"\n",
            nginx.url("/ok")
        ),
    );
    let (status, body) = crate::support::http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert!(runs(&metrics, &ok).unwrap() >= before, "{metrics}");

    // The template changed: its discovered target is there at once, with the new label.
    write("b", "");
    let (status, body) = crate::support::http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        sample(
            &metrics,
            "nightjar_check_runs_total",
            &[("check", "fleet"), ("instance", &ok), ("owner", "b")]
        )
        .is_some(),
        "the target's series carry the new label at once:\n{metrics}"
    );
    agent.stop().await;
}

/// A discovered target's state survives a restart: it waits in the state store until
/// discovery finds the target again, then the check starts from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_targets_state_survives_a_restart() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("targets.json");
    let missing = nginx.url("/notfound");
    file_sd(&sd, std::slice::from_ref(&missing));
    let config = |schedule: &str| {
        load(
            &format!(
                "[agent]\nregion = \"lab\"\nstate_dir = \"{}\"\n\n[[check]]\nname = \"fleet\"\ntype = \"http\"\n{schedule}\ntargets_from = [{{ file = \"{}\" }}]\n",
                dir.path().join("state").display(),
                sd.display()
            ),
            &[],
        )
    };
    let name = format!("fleet@{missing}");
    let path = format!("/api/v1/checks/{}", crate::support::encode(&name));
    let agent = RunningAgent::start(config("interval = \"1s\"\ntimeout = \"900ms\"")).await;
    eventually(Duration::from_secs(15), "the target failing", || async {
        let (_, body) = agent.get(&path).await;
        body.contains("\"state\":\"failing\"").then_some(())
    })
    .await;
    agent.stop().await;

    // No run for an hour: what the API shows once the target is discovered is the state kept.
    let agent = RunningAgent::start(config(
        "interval = \"1h\"\ntimeout = \"5s\"\nrun_on_load = false",
    ))
    .await;
    let body = eventually(Duration::from_secs(15), "the target discovered", || async {
        let (status, body) = agent.get(&path).await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(body.contains("\"state\":\"failing\""), "{body}");
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "nightjar_check_state",
            &[
                ("check", "fleet"),
                ("instance", &missing),
                ("state", "failing")
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    agent.stop().await;
}
