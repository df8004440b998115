//! Templates: a `[[check]]` with `targets = [...]` is one check per target, exported under the
//! template's `check` name with an `instance` label, each with its own state, page row, API
//! entry and shard placement; `nightjar check --only NAME` runs every target and
//! `--only NAME@TARGET` one.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::support::{
    Nginx, RunningAgent, config_errors, encode, eventually, load, promtool_check_metrics, require,
    sample,
};

fn template(nginx: &Nginx) -> String {
    format!(
        r#"
[agent]
region = "lab"

[[check]]
name = "edge"
type = "http"
interval = "1s"
timeout = "900ms"
labels = {{ team = "web" }}
targets = ["{ok}", "{missing}", "{secret}"]
"#,
        ok = nginx.url("/ok"),
        missing = nginx.url("/notfound"),
        secret = nginx.url("/echo?token=s3cret-query"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_has_its_own_series_state_api_entry_and_page() {
    let nginx = Nginx::start();
    let config = load(&template(&nginx), &[]);
    assert_eq!(config.checks.len(), 3);
    let agent = RunningAgent::start(config).await;
    let (ok, missing, echo) = (nginx.url("/ok"), nginx.url("/notfound"), nginx.url("/echo"));
    let metrics = eventually(Duration::from_secs(15), "a run of every target", || async {
        let (_, metrics) = agent.get("/metrics").await;
        let ran = |instance: &str| {
            sample(
                &metrics,
                "nightjar_check_runs_total",
                &[
                    ("check", "edge"),
                    ("instance", instance),
                    ("result", "success"),
                ],
            )
            .zip(sample(
                &metrics,
                "nightjar_check_runs_total",
                &[
                    ("check", "edge"),
                    ("instance", instance),
                    ("result", "failure"),
                ],
            ))
            .is_some_and(|(pass, fail)| pass + fail >= 1.0)
        };
        (ran(&ok) && ran(&missing) && ran(&echo)).then_some(metrics)
    })
    .await;
    for (instance, success) in [(&ok, 1.0), (&missing, 0.0), (&echo, 1.0)] {
        assert_eq!(
            sample(
                &metrics,
                "probe_success",
                &[("check", "edge"), ("instance", instance), ("team", "web")]
            ),
            Some(success),
            "{instance}:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("s3cret"),
        "the query string never reaches a label"
    );
    promtool_check_metrics(&require("promtool", "prometheus"), &metrics).unwrap();

    let (_, api) = agent.get("/api/v1/checks").await;
    let views: serde_json::Value = serde_json::from_str(&api).unwrap();
    let views = views["checks"].as_array().expect("a list of checks");
    let names: BTreeSet<&str> = views.iter().filter_map(|v| v["name"].as_str()).collect();
    let expected: BTreeSet<String> = [&ok, &missing, &echo]
        .iter()
        .map(|instance| format!("edge@{instance}"))
        .collect();
    assert_eq!(
        names,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    for view in views {
        assert_eq!(view["template"], "edge", "{view}");
        assert!(view["instance"].is_string(), "{view}");
    }
    assert!(!api.contains("s3cret"), "{api}");

    let name = format!("edge@{missing}");
    let (status, page) = agent.get(&format!("/checks/{}", encode(&name))).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("/notfound"), "{page}");
    let (status, list) = agent.get("/").await;
    assert_eq!(status, 200);
    assert!(!list.contains("s3cret"), "{list}");
    assert_eq!(list.matches("data-check=\"edge@").count(), 3, "{list}");
    agent.stop().await;
}

#[test]
fn check_only_runs_every_target_of_a_template_or_one() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, template(&nginx)).unwrap();
    let run = |only: &str| {
        Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .args(["check", "--format", "json", "--config"])
            .arg(&path)
            .args(["--only", only])
            .output()
            .unwrap()
    };
    let all = run("edge");
    let results: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 3, "{results}");
    let one = run(&format!("edge@{}", nginx.url("/ok")));
    assert!(one.status.success(), "{one:?}");
    let results: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 1, "{results}");
    assert_eq!(results[0]["success"], true);
    let unknown = run("edge@https://elsewhere.example/");
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no check named"), "{stderr}");
}

#[test]
fn shards_partition_a_templates_targets_exactly() {
    let targets: Vec<String> = (0..300).map(|n| format!("\"h{n}.example:443\"")).collect();
    let text = format!(
        "[[check]]\nname = \"fleet\"\ntype = \"tcp\"\ntargets = [{}]\n",
        targets.join(", ")
    );
    let all: BTreeSet<String> = load(&text, &[])
        .checks
        .iter()
        .map(|def| def.name.to_string())
        .collect();
    assert_eq!(all.len(), 300);
    let mut seen = BTreeSet::new();
    for index in 0..3 {
        let mut config = load(&text, &[]);
        config.select_shard(index, 3);
        let mine: Vec<String> = config
            .checks
            .iter()
            .map(|def| def.name.to_string())
            .collect();
        assert!(
            (60..=140).contains(&mine.len()),
            "shard {index} has {} of 300",
            mine.len()
        );
        for name in mine {
            assert!(config.in_shard(&name));
            assert!(seen.insert(name), "a target in two shards");
        }
    }
    assert_eq!(seen, all, "every target in exactly one shard");
}

#[test]
fn template_problems_name_their_place() {
    let err = config_errors(
        "t.toml",
        "[[check]]\nname = \"t\"\ntype = \"tcp\"\ntarget = \"a:1\"\ntargets = [\"b:2\"]\n",
    );
    assert!(
        err.contains("t.toml:4:1: `target` and `targets` both name the target"),
        "{err}"
    );
    let err = config_errors(
        "t.toml",
        "[[check]]\nname = \"t\"\ntype = \"tcp\"\ntargets = [\"b:2\", \"nope\", \"b:2\"]\n",
    );
    assert!(
        err.contains("t.toml:4:27: target \"b:2\" is listed twice"),
        "{err}"
    );
    let err = config_errors(
        "t.toml",
        "[[check]]\nname = \"t\"\ntype = \"tcp\"\ntargets = [\"b:2\", \"nope\"]\n",
    );
    assert!(
        err.contains(
            "t.toml:4:19: target \"nope\" of check \"t\": target \"nope\" is not HOST:PORT"
        ),
        "{err}"
    );
    let err = config_errors(
        "t.toml",
        "[[check]]\nname = \"t\"\ntype = \"http\"\ntargets = []\n",
    );
    assert!(err.contains("`targets` is empty"), "{err}");
    let err = config_errors(
        "t.toml",
        "[[check]]\nname = \"t\"\ntype = \"http\"\ntargets = [\"https://a.example/\"]\nlabels = { instance = \"x\" }\n",
    );
    assert!(err.contains("label name `instance` is reserved"), "{err}");
    // `${target}` places each target inside a key.
    let config = load(
        "[[check]]\nname = \"hc\"\ntype = \"http\"\nurl = \"https://${target}/healthz\"\ntargets = [\"a.example:8443\", \"b.example\"]\n",
        &[],
    );
    let targets: Vec<&str> = config
        .checks
        .iter()
        .map(|def| def.target.as_str())
        .collect();
    assert_eq!(
        targets,
        [
            "https://a.example:8443/healthz",
            "https://b.example/healthz"
        ]
    );
    let instances: Vec<&str> = config
        .checks
        .iter()
        .filter_map(|def| def.instance.as_deref())
        .collect();
    assert_eq!(instances, ["a.example:8443", "b.example"]);
}

/// The request of each check of `config`, in order.
fn requests(
    config: &nightjar::config::Config,
) -> Vec<std::sync::Arc<nightjar::checks::http::HttpOptions>> {
    config
        .checks
        .iter()
        .map(|def| match &def.spec {
            nightjar::checks::CheckSpec::Http(spec) => spec.options.clone(),
            other => panic!("not an http check: {other:?}"),
        })
        .collect()
}

#[test]
fn targets_that_differ_in_their_url_only_share_one_request() {
    let targets = r#"["https://a.example/", "https://b.example/", "https://c.example/"]"#;
    let shared = load(
        &format!(
            "[[check]]\nname = \"edge\"\ntype = \"http\"\nheaders = {{ X-Team = \"web\" }}\ntargets = {targets}\n"
        ),
        &[],
    );
    let options = requests(&shared);
    assert_eq!(options.len(), 3);
    assert!(
        options
            .iter()
            .all(|one| std::sync::Arc::ptr_eq(one, &options[0])),
        "three requests where one would do"
    );
    // The target placed in a header too: each target's request is its own, with its header.
    let placed = load(
        &format!(
            "[[check]]\nname = \"edge\"\ntype = \"http\"\nurl = \"${{target}}\"\nheaders = {{ X-Target = \"${{target}}\" }}\ntargets = {targets}\n"
        ),
        &[],
    );
    let options = requests(&placed);
    assert!(!std::sync::Arc::ptr_eq(&options[0], &options[1]));
    let headers: Vec<String> = options
        .iter()
        .map(|one| one.headers[0].1.to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        headers,
        [
            "https://a.example/",
            "https://b.example/",
            "https://c.example/"
        ]
    );
    // Discovered targets (a template's expansion, as discovery applies it) share theirs too.
    let discovered = load(
        "[[check]]\nname = \"edge\"\ntype = \"http\"\ntargets_from = [{ file = \"sd/*.json\" }]\n",
        &[],
    );
    let template = &discovered.templates[0];
    let labels = std::sync::Arc::new(std::collections::BTreeMap::new());
    let found: [std::sync::Arc<str>; 2] =
        ["https://a.example/".into(), "https://b.example/".into()];
    let (checks, refused) = nightjar::config::template::Expansion::default().update(
        template,
        found.iter().map(|target| (target, &labels)),
        |_| true,
    );
    assert!(refused.is_empty(), "{refused:?}");
    let options: Vec<_> = checks
        .iter()
        .map(|def| match &def.spec {
            nightjar::checks::CheckSpec::Http(spec) => spec.options.clone(),
            other => panic!("not an http check: {other:?}"),
        })
        .collect();
    assert!(std::sync::Arc::ptr_eq(&options[0], &options[1]));
}
