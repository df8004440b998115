//! `nightjar rules` through the real binary, checked and unit-tested with the real promtool
//! (Debian's Prometheus 2.42): SLO burn-rate alerts with the virtual floor, outage detection
//! by night and by day, recovery, zero traffic, expiry and region quorum.

use std::path::Path;
use std::process::Command;

use crate::support::{config_errors, require, run_ok};

const CONFIG: &str = r#"
[agent]
duration_buckets = ["100ms", "500ms", "1s", "5s"]

[rules]
expiry_warning = "21d"
expiry_critical = "7d"

[[check]]
name = "shop-home"
type = "http"
url = "https://shop.example.com/"
regions = ["eu", "us", "ap"]

[[check]]
name = "shop-cert"
type = "tls"
target = "shop.example.com:443"

[[slo]]
name = "shop-availability"
objective = 0.999
window = "30d"
checks = ["shop-home"]
tolerated_failures = 1
floor = "virtual"
"#;

const SERVICE_SLOS: &str = r#"
[[check]]
name = "api-home"
type = "http"
url = "https://api.example.com/"

[[slo]]
name = "api-availability"
objective = 0.995
window = "28d"
errors = 'sum(rate(http_requests_total{job="api",code=~"5.."}[$window]))'
total = 'sum(rate(http_requests_total{job="api"}[$window]))'
labels = { team = "api" }

[[slo]]
name = "api-latency"
objective = 0.99
checks = ["api-home"]
latency = "500ms"
"#;

fn write_rules(dir: &Path, config: &str) -> std::path::PathBuf {
    let config_path = dir.join("nightjar.toml");
    std::fs::write(&config_path, config).unwrap();
    let rules = dir.join("rules.yml");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .args(["rules", "--config"])
            .arg(&config_path)
            .arg("--output")
            .arg(&rules),
    );
    promtool_check_rules(&rules);
    rules
}

fn promtool_check_rules(rules: &Path) {
    run_ok(
        Command::new(require("promtool", "prometheus"))
            .args(["check", "rules"])
            .arg(rules),
    );
}

/// Runs `promtool test rules` on `test_file` from `dir`, where its `rules.yml` lies.
fn promtool_test_rules(dir: &Path, test_file: &Path) {
    let out = Command::new(require("promtool", "prometheus"))
        .args(["test", "rules"])
        .arg(test_file)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n--- rules ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("rules.yml")).unwrap_or_default()
    );
}

/// An expression test: `alert` is firing with exactly `labels` (or not at all when `None`).
fn alert_at(alert: &str, minute: u32, firing: &[&str]) -> String {
    let samples = if firing.is_empty() {
        "        exp_samples: []\n".to_string()
    } else {
        let mut text = String::from("        exp_samples:\n");
        for labels in firing {
            text.push_str(&format!(
                "          - labels: 'ALERTS{{alertname=\"{alert}\",alertstate=\"firing\",{labels}}}'\n            value: 1\n"
            ));
        }
        text
    };
    format!(
        "      - expr: 'ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"}}'\n        eval_time: {minute}m\n{samples}"
    )
}

fn group(name: &str, series: &[(&str, &str)], tests: &[String]) -> String {
    let mut text = format!("  - name: {name:?}\n    interval: 1m\n    input_series:\n");
    for (series, values) in series {
        text.push_str(&format!(
            "      - series: '{series}'\n        values: '{values}'\n"
        ));
    }
    text.push_str("    promql_expr_test:\n");
    for test in tests {
        text.push_str(test);
    }
    text
}

const OK: &str = r#"nightjar_check_runs_total{check="shop-home",result="success"}"#;
const FAILED: &str = r#"nightjar_check_runs_total{check="shop-home",result="failure"}"#;
const SLO: &str = r#"severity="page",slo="shop-availability""#;
const PAGE: &str = "NightjarSLOBurnRatePage";
const FAILING_EU: &str = r#"nightjar_check_state{check="shop-home",region="eu",state="failing"}"#;
const FAILING_US: &str = r#"nightjar_check_state{check="shop-home",region="us",state="failing"}"#;
const FAILING_AP: &str = r#"nightjar_check_state{check="shop-home",region="ap",state="failing"}"#;

#[test]
fn generated_rules_pass_promtool_and_behave_by_night_and_by_day() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), CONFIG);
    let groups = [
        // 10 requests an hour at night; one failure at minute 90: the floor keeps it quiet.
        group(
            "night, one failure",
            &[(OK, "0+0.16666x180"), (FAILED, "0x90 1x89")],
            &[
                alert_at(PAGE, 92, &[]),
                alert_at(PAGE, 120, &[]),
                alert_at("NightjarSLOBurnRateTicket", 120, &[]),
            ],
        ),
        // k + 1 = 2 failures within a minute at night: that pages.
        group(
            "night, two failures",
            &[(OK, "0+0.16666x180"), (FAILED, "0x90 1 2x88")],
            &[alert_at(PAGE, 93, &[SLO])],
        ),
        // A real outage at night, with the traffic floor applied (84 requests an hour):
        // it pages within 5 minutes.
        group(
            "night outage",
            &[(OK, "0+1.4x60 84x60"), (FAILED, "0x60 1.4+1.4x59")],
            &[alert_at(PAGE, 59, &[]), alert_at(PAGE, 65, &[SLO])],
        ),
        // A real outage by day (3,600 requests an hour) pages within 5 minutes too.
        group(
            "day outage",
            &[(OK, "0+60x60 3600x60"), (FAILED, "0x60 60+60x59")],
            &[alert_at(PAGE, 59, &[]), alert_at(PAGE, 63, &[SLO])],
        ),
        // A ten-minute outage by day, then health: the page clears once the short windows
        // hold no errors.
        group(
            "recovery",
            &[
                (OK, "0+60x60 3600x10 3600+60x120"),
                (FAILED, "0x60 60+60x9 600x120"),
            ],
            &[alert_at(PAGE, 65, &[SLO]), alert_at(PAGE, 110, &[])],
        ),
        // Zero traffic: the burn alerts are NaN-silent, the no-traffic alert is not.
        group(
            "zero traffic",
            &[(OK, "5x40"), (FAILED, "0x40")],
            &[
                alert_at(PAGE, 30, &[]),
                alert_at(
                    "NightjarSLONoTraffic",
                    30,
                    &[r#"severity="ticket",slo="shop-availability""#],
                ),
            ],
        ),
        group(
            "no series at all",
            &[(r#"up{job="other"}"#, "1x40")],
            &[alert_at(
                "NightjarSLONoTraffic",
                30,
                &[r#"severity="ticket",slo="shop-availability""#],
            )],
        ),
        // Certificates 6 and 20 days from expiry (the value is the expiry time; time()
        // starts at 0, and the test looks at minute 10).
        group(
            "certificate expiry",
            &[
                (
                    r#"nightjar_expiry_timestamp_seconds{check="shop-cert",expires="certificate",region="eu"}"#,
                    "519000x20",
                ),
                (
                    r#"nightjar_expiry_timestamp_seconds{check="other-cert",expires="certificate",region="eu"}"#,
                    "1728600x20",
                ),
                (
                    r#"nightjar_expiry_timestamp_seconds{check="far-cert",expires="certificate",region="eu"}"#,
                    "5184600x20",
                ),
            ],
            &[alert_at(
                "NightjarCertificateExpiringSoon",
                10,
                &[
                    r#"check="other-cert",expires="certificate",region="eu",severity="warning""#,
                    r#"check="shop-cert",expires="certificate",region="eu",severity="critical""#,
                ],
            )],
        ),
        // Two of three regions failing (confirmed) pages after 5 minutes; one region alone
        // never does.
        group(
            "region quorum",
            &[
                (FAILING_EU, "1x20"),
                (FAILING_US, "0x5 1x15"),
                (FAILING_AP, "0x20"),
            ],
            &[
                alert_at("NightjarCheckFailingInRegions", 4, &[]),
                alert_at(
                    "NightjarCheckFailingInRegions",
                    12,
                    &[r#"check="shop-home",severity="page""#],
                ),
            ],
        ),
        // The same outage while a maintenance window covers the check in one of the two
        // failing regions: no quorum until the window closes at minute 10, then the page
        // comes 5 minutes later.
        group(
            "region quorum in maintenance",
            &[
                (FAILING_EU, "1x30"),
                (FAILING_US, "1x30"),
                (FAILING_AP, "0x30"),
                (
                    r#"nightjar_check_maintenance{check="shop-home",region="us"}"#,
                    "1x9 0x20",
                ),
                (
                    r#"nightjar_check_maintenance{check="shop-home",region="eu"}"#,
                    "0x30",
                ),
            ],
            &[
                alert_at("NightjarCheckFailingInRegions", 9, &[]),
                alert_at("NightjarCheckFailingInRegions", 14, &[]),
                alert_at(
                    "NightjarCheckFailingInRegions",
                    16,
                    &[r#"check="shop-home",severity="page""#],
                ),
            ],
        ),
        // An expiring certificate does not page while its check is in maintenance.
        group(
            "certificate expiry in maintenance",
            &[
                (
                    r#"nightjar_expiry_timestamp_seconds{check="shop-cert",expires="certificate",region="eu"}"#,
                    "519000x20",
                ),
                (
                    r#"nightjar_check_maintenance{check="shop-cert",region="eu"}"#,
                    "1x11 0x8",
                ),
            ],
            &[
                alert_at("NightjarCertificateExpiringSoon", 10, &[]),
                alert_at(
                    "NightjarCertificateExpiringSoon",
                    13,
                    &[r#"check="shop-cert",expires="certificate",region="eu",severity="critical""#],
                ),
            ],
        ),
    ];
    let test_file = dir.path().join("rules_test.yml");
    std::fs::write(
        &test_file,
        format!(
            "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n{}",
            groups.concat()
        ),
    )
    .unwrap();
    promtool_test_rules(dir.path(), &test_file);
}

const MAINTENANCE_SLO: &str = r#"
[[check]]
name = "db"
type = "tcp"
target = "db.example.com:5432"

[[slo]]
name = "db-availability"
objective = 0.999
window = "30d"
checks = ["db"]
exclude_maintenance = true
"#;

/// With `exclude_maintenance`, failures during a window (counted in the maintenance counter
/// too) burn nothing; the same failures outside a window page.
#[test]
fn an_slo_excluding_maintenance_does_not_burn_during_a_window() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), MAINTENANCE_SLO);
    let ok = r#"nightjar_check_runs_total{check="db",result="success"}"#;
    let failed = r#"nightjar_check_runs_total{check="db",result="failure"}"#;
    let maintenance_ok = r#"nightjar_check_maintenance_runs_total{check="db",result="success"}"#;
    let maintenance_failed =
        r#"nightjar_check_maintenance_runs_total{check="db",result="failure"}"#;
    let page = r#"severity="page",slo="db-availability""#;
    let groups = [
        // One run a minute; from minute 60 every run fails, all inside a window.
        group(
            "outage in maintenance",
            &[
                (ok, "0+1x60 60x60"),
                (failed, "0x60 1+1x59"),
                (maintenance_ok, "0x120"),
                (maintenance_failed, "0x60 1+1x59"),
            ],
            &[alert_at(PAGE, 75, &[]), alert_at(PAGE, 110, &[])],
        ),
        // The same outage with no window pages.
        group(
            "outage",
            &[(ok, "0+1x60 60x60"), (failed, "0x60 1+1x59")],
            &[alert_at(PAGE, 75, &[page])],
        ),
    ];
    let test_file = dir.path().join("rules_test.yml");
    std::fs::write(
        &test_file,
        format!(
            "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n{}",
            groups.concat()
        ),
    )
    .unwrap();
    promtool_test_rules(dir.path(), &test_file);
    let err = config_errors(
        "s.toml",
        "[[slo]]\nname = \"s\"\nobjective = 0.999\nerrors = 'sum(rate(x[$window]))'\ntotal = 'sum(rate(y[$window]))'\nexclude_maintenance = true\n",
    );
    assert!(
        err.contains("exclude_maintenance applies to SLIs from checks"),
        "{err}"
    );
}

#[test]
fn service_metric_and_latency_slos_generate_valid_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(write_rules(dir.path(), SERVICE_SLOS)).unwrap();
    assert!(
        rules.contains(r#"sum(rate(http_requests_total{job=\"api\",code=~\"5..\"}[1h]))"#),
        "{rules}"
    );
    assert!(
        rules.contains(r#"le=\"0.5\""#),
        "the latency threshold is a bucket edge: {rules}"
    );
    // 28 days: the fast page factor is 2% × 28d / 1h = 13.44, so the threshold is 13.44 × 0.005.
    assert!(rules.contains("> 0.0672"), "{rules}");
    assert!(rules.contains("team: \"api\""));
}

#[test]
fn slo_validation() {
    let base = "[[check]]\nname = \"c\"\ntype = \"http\"\nurl = \"https://example.com/\"\n";
    let cases = [
        ("objective = 0.9", "it could never fire"),
        (
            "objective = 1.0",
            "the objective must be a ratio between 0 and 1",
        ),
        (
            "objective = 99.9",
            "write it as a ratio, like objective = 0.999",
        ),
        (
            "objective = 0.999\nwindow = \"1d\"",
            "shorter than the longest alert window",
        ),
        (
            "objective = 0.999\nlatency = \"300ms\"",
            "latency threshold 300ms is not a bucket edge",
        ),
    ];
    for (keys, expected) in cases {
        let text = format!("{base}\n[[slo]]\nname = \"s\"\nchecks = [\"c\"]\n{keys}\n");
        let err = config_errors("s.toml", &text);
        assert!(
            err.contains(expected),
            "{keys}: {expected:?} missing from:\n{err}"
        );
    }
    let err = config_errors(
        "s.toml",
        &format!("{base}\n[[slo]]\nname = \"s\"\nobjective = 0.999\nchecks = [\"cc\"]\n"),
    );
    assert!(
        err.contains("no check named \"cc\" (hint: did you mean \"c\"?)"),
        "{err}"
    );
    let err = config_errors(
        "s.toml",
        &format!(
            "{base}\n[[slo]]\nname = \"s\"\nobjective = 0.999\nerrors = 'sum(rate(x[5m]))'\ntotal = 'sum(rate(y[$window]))'\n"
        ),
    );
    assert!(err.contains("`errors` has no $window placeholder"), "{err}");
}

/// The rules of the shipped examples are valid Prometheus rules.
#[test]
fn the_examples_generate_valid_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .args(["rules", "--config"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("checks"))
            .arg("--output")
            .arg(&rules)
            .envs([
                ("SHOP_API_TOKEN", "x"),
                ("STATUS_PASSWORD", "x"),
                ("SHOP_PROBE_PASSWORD", "x"),
                ("SHOP_PROBE_TOTP", "JBSWY3DPEHPK3PXP"),
                ("REMOTE_WRITE_TOKEN", "x"),
            ]),
    );
    promtool_check_rules(&rules);
}

/// With `[rules] naming = "sloth"` the series carry Sloth's names and labels, so Sloth's
/// dashboards work, and the alerts still fire.
#[test]
fn sloth_naming() {
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG.replace("[rules]\n", "[rules]\nnaming = \"sloth\"\n");
    let config = config.replace(
        "floor = \"virtual\"",
        "floor = \"virtual\"\nservice = \"shop\"",
    );
    let rules = write_rules(dir.path(), &config);
    let text = std::fs::read_to_string(&rules).unwrap();
    for name in [
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate30d",
        "slo:current_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "sloth_slo_info",
    ] {
        assert!(
            text.contains(&format!("record: {name}")),
            "{name} missing:\n{text}"
        );
    }
    let labels = r#"severity="page",slo="shop-availability",sloth_id="shop-shop-availability",sloth_service="shop",sloth_slo="shop-availability""#;
    let test = group(
        "day outage, sloth naming",
        &[(OK, "0+60x60 3600x60"), (FAILED, "0x60 60+60x59")],
        &[
            alert_at(PAGE, 59, &[]),
            alert_at(PAGE, 63, &[labels]),
            "      - expr: 'count(slo:current_burn_rate:ratio)'\n        eval_time: 63m\n        exp_samples:\n          - labels: '{}'\n            value: 1\n".to_string(),
        ],
    );
    let test_file = dir.path().join("sloth_test.yml");
    std::fs::write(
        &test_file,
        format!("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n{test}"),
    )
    .unwrap();
    promtool_test_rules(dir.path(), &test_file);
}

const TEMPLATE: &str = r#"
[[check]]
name = "edge"
type = "http"
targets = ["https://a.example/", "https://b.example/"]
regions = ["eu", "us", "ap"]
"#;

/// A template's targets page one by one: one alert rule for the template, grouped by
/// `instance`, so a target failing in two of three regions pages with its `instance` and
/// another failing in one region does not; a window covering one target in one region
/// holds only that target's page.
#[test]
fn a_templates_targets_page_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), TEMPLATE);
    let text = std::fs::read_to_string(&rules).unwrap();
    assert_eq!(
        text.matches("alert: NightjarCheckFailingInRegions").count(),
        1,
        "one quorum rule per template:\n{text}"
    );
    let state = |instance: &str, region: &str| {
        format!(
            r#"nightjar_check_state{{check="edge",instance="https://{instance}.example/",region="{region}",state="failing"}}"#
        )
    };
    let (a_eu, a_us, a_ap) = (state("a", "eu"), state("a", "us"), state("a", "ap"));
    let (b_eu, b_us, b_ap) = (state("b", "eu"), state("b", "us"), state("b", "ap"));
    let a_page = r#"check="edge",instance="https://a.example/",severity="page""#;
    let groups = [
        group(
            "template quorum",
            &[
                (&a_eu, "1x20"),
                (&a_us, "1x20"),
                (&a_ap, "0x20"),
                (&b_eu, "1x20"),
                (&b_us, "0x20"),
                (&b_ap, "0x20"),
            ],
            &[
                alert_at("NightjarCheckFailingInRegions", 4, &[]),
                alert_at("NightjarCheckFailingInRegions", 8, &[a_page]),
            ],
        ),
        group(
            "template quorum in maintenance",
            &[
                (&a_eu, "1x20"),
                (&a_us, "1x20"),
                (&a_ap, "0x20"),
                (&b_eu, "1x20"),
                (&b_us, "1x20"),
                (&b_ap, "0x20"),
                (
                    r#"nightjar_check_maintenance{check="edge",instance="https://b.example/",region="us"}"#,
                    "1x20",
                ),
            ],
            &[alert_at("NightjarCheckFailingInRegions", 8, &[a_page])],
        ),
    ];
    let test_file = dir.path().join("rules_test.yml");
    std::fs::write(
        &test_file,
        format!(
            "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n{}",
            groups.concat()
        ),
    )
    .unwrap();
    promtool_test_rules(dir.path(), &test_file);
}

/// A template whose targets all come from discovery has its quorum rule too (its checks do
/// not exist when the rules are written).
#[test]
fn a_discovered_only_template_has_its_quorum_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sd.json"), "[]").unwrap();
    let rules = write_rules(
        dir.path(),
        "[[check]]\nname = \"fleet\"\ntype = \"http\"\ntargets_from = [{ file = \"sd.json\" }]\n",
    );
    let text = std::fs::read_to_string(rules).unwrap();
    assert!(
        text.contains(
            r#"count by (check, instance) (nightjar_check_state{check=\"fleet\",state=\"failing\"}"#
        ),
        "{text}"
    );
}
