//! `[agent] metrics`: the lean set (the default) against the full one. Both pass promtool's
//! lint; what each kind of check costs in series and bytes (an HTTPS check at most 32 series
//! in lean); failure reasons and skips appear once counted; a reload that switches sets is
//! refused; a real Prometheus computes the same SLO error ratios from either set with the
//! rules of `nightjar rules`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use nightjar::checks::{CheckKind, CheckSpec};
use nightjar::config::{
    CheckDef, Config, DEFAULT_DURATION_BUCKETS, LEAN_DURATION_BUCKETS, MetricsMode,
};
use nightjar::metrics::Metrics;
use nightjar::result::{CheckResult, Details, FailureReason, Status};

use crate::support::{Nginx, RunningAgent, eventually, http_post, load, require, sample};

/// The examples under `checks/` in `mode`, with the mode's default duration buckets (what a
/// configuration without `duration_buckets` gets).
fn examples_in(mode: MetricsMode) -> Config {
    let mut config = crate::examples::examples();
    config.agent.metrics = mode;
    config.agent.duration_buckets = match mode {
        MetricsMode::Lean => LEAN_DURATION_BUCKETS.to_vec(),
        MetricsMode::Full => DEFAULT_DURATION_BUCKETS.to_vec(),
    };
    config
}

/// A passing run of `def` with everything its kind reports (a plain `http://` check without
/// TLS, and the decoded length only with `compression`, as real runs have them).
fn pass(def: &CheckDef) -> CheckResult {
    let mut details = crate::labels::details_of(def);
    if let (Details::Http(http), CheckSpec::Http(spec)) = (&mut details, &def.spec) {
        if !def.target.starts_with("https://") {
            http.tls_info = None;
        }
        if spec.compression.is_none() {
            http.uncompressed_length = None;
        }
    }
    CheckResult {
        check: def.name.clone(),
        kind: def.kind(),
        started_at: SystemTime::now(),
        duration: Duration::from_millis(42),
        status: Status::Pass,
        details,
    }
}

/// `check`'s sample lines in `text`.
fn lines_of<'a>(text: &'a str, check: &str) -> Vec<&'a str> {
    let label = format!("check=\"{check}\"");
    text.lines()
        .filter(|line| !line.starts_with('#') && line.contains(&label))
        .collect()
}

/// What a kind costs: the most series and bytes of one check, over the examples.
#[derive(Default, Debug, Clone, Copy)]
struct Cost {
    series: usize,
    bytes: usize,
}

/// Per kind (`https` for http checks of an https URL), the cost of one check after a passing
/// run, in `mode`.
fn costs(mode: MetricsMode) -> BTreeMap<String, Cost> {
    let config = examples_in(mode);
    let metrics = Metrics::new(&config);
    for def in &config.checks {
        metrics.observe(&pass(def));
    }
    let text = metrics.render();
    let mut costs: BTreeMap<String, Cost> = BTreeMap::new();
    for def in &config.checks {
        let kind = match &def.spec {
            CheckSpec::Http(spec) if def.target.starts_with("https://") => {
                if spec.compression.is_some() {
                    "https+compression".to_string()
                } else {
                    "https".to_string()
                }
            }
            spec => spec.kind().as_str().to_string(),
        };
        let lines = lines_of(&text, &def.name);
        let cost = costs.entry(kind).or_default();
        if lines.len() > cost.series {
            cost.series = lines.len();
            cost.bytes = lines.iter().map(|line| line.len() + 1).sum();
        }
    }
    costs
}

#[test]
fn lean_and_full_pass_promtool_check_metrics() {
    let promtool = require("promtool", "prometheus");
    for mode in [MetricsMode::Lean, MetricsMode::Full] {
        let config = examples_in(mode);
        for text in [
            Metrics::new(&config).render(),
            crate::labels::observed(&config).render(),
        ] {
            if let Err(out) = crate::support::promtool_check_metrics(&promtool, &text) {
                panic!("promtool check metrics failed in {mode:?}:\n{out}");
            }
        }
    }
}

#[test]
fn lean_keeps_each_kind_within_its_budget() {
    let lean = costs(MetricsMode::Lean);
    let full = costs(MetricsMode::Full);
    eprintln!("kind: lean series (bytes) / full series (bytes), one check after a passing run");
    for (kind, cost) in &lean {
        let all = full[kind];
        eprintln!(
            "{kind}: {} ({}) / {} ({})",
            cost.series, cost.bytes, all.series, all.bytes
        );
        assert!(
            cost.series < all.series,
            "{kind}: lean {cost:?}, full {all:?}"
        );
    }
    // An HTTP check, with `compression` too (lean leaves out the decoded length): 32 series.
    for kind in ["https", "http", "https+compression"] {
        assert!(lean[kind].series <= 32, "{kind}: {:?}", lean[kind]);
    }
    for kind in CheckKind::ALL {
        assert!(
            lean.contains_key(kind.as_str()),
            "checks/ has no {kind:?} check"
        );
    }
}

const ONE_CHECK: &str = r#"
[[check]]
name = "shop"
type = "http"
url = "https://shop.example.com/"
"#;

#[test]
fn a_reason_appears_once_seen_and_the_counters_and_the_histogram_are_there_from_the_start() {
    let config = load(ONE_CHECK, &[]);
    assert_eq!(
        config.agent.metrics,
        MetricsMode::Lean,
        "lean is the default"
    );
    assert_eq!(config.agent.duration_buckets, LEAN_DURATION_BUCKETS);
    let metrics = Metrics::new(&config);
    let text = metrics.render();
    for (name, labels, value) in [
        (
            "nightjar_check_runs_total",
            vec![("result", "success")],
            0.0,
        ),
        (
            "nightjar_check_runs_total",
            vec![("result", "failure")],
            0.0,
        ),
        (
            "nightjar_check_duration_seconds_bucket",
            vec![("result", "success"), ("le", "+Inf")],
            0.0,
        ),
        ("nightjar_check_duration_seconds_count", vec![], 0.0),
        ("nightjar_check_state", vec![("state", "unknown")], 1.0),
    ] {
        let mut labels = labels.clone();
        labels.push(("check", "shop"));
        assert_eq!(
            sample(&text, name, &labels),
            Some(value),
            "{name} {labels:?}:\n{text}"
        );
    }
    for absent in [
        "nightjar_check_failures_total",
        "nightjar_check_skipped_runs_total",
        "nightjar_check_retry_runs_total",
        "nightjar_check_consecutive_failures",
        "nightjar_check_maintenance",
        "nightjar_check_info",
        "result=\"failure\",le=",
        "state=\"passing\"",
    ] {
        assert!(!text.contains(absent), "{absent} at load:\n{text}");
    }

    let failed = CheckResult {
        check: "shop".into(),
        kind: CheckKind::Http,
        started_at: SystemTime::now(),
        duration: Duration::from_millis(30),
        status: Status::fail(FailureReason::Status, "status 503"),
        details: Details::default(),
    };
    metrics.observe(&failed);
    metrics.skipped("shop");
    let text = metrics.render();
    let reasons: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("nightjar_check_failures_total{"))
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(
        sample(
            &text,
            "nightjar_check_failures_total",
            &[("check", "shop"), ("reason", "status")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "nightjar_check_skipped_runs_total",
            &[("check", "shop")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "nightjar_check_runs_total",
            &[("check", "shop"), ("result", "failure")]
        ),
        Some(1.0)
    );
    // A failed run is not in the histogram: its count is the successful runs'.
    assert_eq!(
        sample(
            &text,
            "nightjar_check_duration_seconds_count",
            &[("check", "shop"), ("result", "success")]
        ),
        Some(0.0)
    );
}

#[test]
fn a_bad_metrics_value_is_a_config_error_with_the_choices() {
    let err = crate::support::config_errors("a.toml", "[agent]\nmetrics = \"some\"\n");
    assert!(
        err.contains("a.toml:2:11: unknown metrics set \"some\"")
            && err.contains("\"lean\"")
            && err.contains("\"full\""),
        "{err}"
    );
}

#[test]
fn an_slo_latency_on_a_full_default_edge_is_added_to_the_lean_edges() {
    let config = load(
        &format!(
            "{ONE_CHECK}\n[[slo]]\nname = \"slow\"\nobjective = 0.99\nchecks = [\"shop\"]\nlatency = \"5s\"\n"
        ),
        &[],
    );
    let mut expected = LEAN_DURATION_BUCKETS.to_vec();
    expected.push(5.0);
    assert_eq!(config.agent.duration_buckets, expected);
    let err = crate::support::config_errors(
        "a.toml",
        &format!(
            "{ONE_CHECK}\n[[slo]]\nname = \"odd\"\nobjective = 0.99\nchecks = [\"shop\"]\nlatency = \"3s\"\n"
        ),
    );
    assert!(err.contains("is not a bucket edge"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_switches_the_metrics_set_is_refused() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.toml");
    let text = |mode: &str| {
        format!(
            "[agent]\nmetrics = \"{mode}\"\n\n[[check]]\nname = \"web\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n",
            nginx.url("/ok")
        )
    };
    std::fs::write(&path, text("lean")).unwrap();
    let agent = RunningAgent::start_reloadable(&path).await;
    eventually(Duration::from_secs(10), "a run", || async {
        let (_, metrics) = agent.get("/metrics").await;
        let runs = sample(
            &metrics,
            "nightjar_check_runs_total",
            &[("check", "web"), ("result", "success")],
        )?;
        (runs >= 1.0).then_some(())
    })
    .await;
    std::fs::write(&path, text("full")).unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body.contains("[agent] metrics changed from \\\"lean\\\" to \\\"full\\\"")
            || body.contains("[agent] metrics changed from \"lean\" to \"full\""),
        "{body}"
    );
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        !metrics.contains("nightjar_check_info{"),
        "still lean:\n{metrics}"
    );
    agent.stop().await;
}

/// `/metrics` of 10,000 copies of `check` (named `c00000`, ... as `bench/scale.sh` names
/// them), each after a passing run with every detail, in `mode`: bytes, samples, render time.
fn ten_thousand(check: &str, mode: MetricsMode) -> (usize, usize, Duration) {
    let mut config = load(check, &[]);
    config.agent.metrics = mode;
    let template = config.checks[0].clone();
    config.checks = (0..10_000)
        .map(|n| {
            let mut def = (*template).clone();
            def.name = format!("c{n:05}").into();
            std::sync::Arc::new(def)
        })
        .collect();
    let metrics = Metrics::new(&config);
    for def in &config.checks {
        metrics.observe(&pass(def));
    }
    let started = std::time::Instant::now();
    let (mut bytes, mut samples) = (0, 0);
    metrics.write_text(&mut |chunk| {
        bytes += chunk.len();
        samples += chunk.lines().filter(|line| !line.starts_with('#')).count();
        true
    });
    (bytes, samples, started.elapsed())
}

/// 10,000 HTTP and HTTPS checks as `bench/scale.sh` runs them: the lean `/metrics` is at most
/// 30 MiB and renders within a second (three in this unoptimised test build).
#[test]
fn ten_thousand_lean_checks_render_within_a_second_and_30_mib() {
    let limit = if cfg!(debug_assertions) {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(1)
    };
    for (url, mode) in [
        ("http://127.0.0.1:8080/", MetricsMode::Lean),
        ("https://127.0.0.1:8443/", MetricsMode::Lean),
        ("http://127.0.0.1:8080/", MetricsMode::Full),
        ("https://127.0.0.1:8443/", MetricsMode::Full),
    ] {
        let check = format!("[[check]]\nname = \"c\"\ntype = \"http\"\nurl = \"{url}\"\n");
        let (bytes, samples, took) = ten_thousand(&check, mode);
        eprintln!(
            "10,000 checks of {url} in {mode:?}: {samples} samples, {bytes} bytes ({:.1} MiB, {} bytes per check), rendered in {took:?}",
            bytes as f64 / f64::from(1 << 20),
            bytes / 10_000
        );
        if mode == MetricsMode::Lean {
            assert!(bytes <= 30 << 20, "{url}: {bytes} bytes");
            assert!(took < limit, "{url}: {took:?}");
        }
    }
}

/// A real Prometheus scraping an agent in `metrics` and evaluating the rules of `nightjar
/// rules` for an availability and a latency SLO over a passing and a failing check: both
/// error ratios are about one half (the latency SLI counts every run, not only those in the
/// histogram, which lean keeps for successful runs only).
async fn slo_ratios_against_prometheus(metrics: &str) {
    let nginx = Nginx::start();
    let text = format!(
        "[agent]\nmetrics = \"{metrics}\"\n\n[[check]]\nname = \"good\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\n[[check]]\nname = \"bad\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\n[[slo]]\nname = \"up\"\nobjective = 0.99\nchecks = [\"good\", \"bad\"]\n\n[[slo]]\nname = \"fast\"\nobjective = 0.99\nchecks = [\"good\", \"bad\"]\nlatency = \"500ms\"\n",
        nginx.url("/ok"),
        nginx.url("/missing.html"),
    );
    let agent = RunningAgent::start(load(&text, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nightjar.toml");
    std::fs::write(&config, &text).unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, crate::support::nightjar_rules(&config)).unwrap();
    let prometheus = crate::support::Prometheus::with_rules(&[("nightjar", agent.addr)], &rules);
    prometheus.wait_ready().await;
    for slo in ["up", "fast"] {
        let query = format!("nightjar:slo_errors:ratio_rate5m{{slo=\"{slo}\"}}");
        let ratio = eventually(Duration::from_secs(40), &query, || async {
            let found = prometheus.query(&query).await;
            found
                .first()
                .map(|(_, value)| *value)
                .filter(|value| value.is_finite() && *value > 0.0)
        })
        .await;
        assert!(
            (0.3..0.7).contains(&ratio),
            "{metrics}: {query} = {ratio}, one check of two fails"
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_rules_compute_the_same_ratios_from_lean_metrics() {
    slo_ratios_against_prometheus("lean").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_rules_compute_the_same_ratios_from_full_metrics() {
    slo_ratios_against_prometheus("full").await;
}
