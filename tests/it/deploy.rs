//! deploy/: every YAML and JSON file parses, the Prometheus configuration passes `promtool check
//! config` with the generated rules, the PrometheusRule is what `nightjar rules` writes, and
//! the dashboard queries only series nightjar exports or records.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{nightjar_rules, require, run_ok};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn yaml(path: &Path) -> Vec<yaml_rust2::Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not YAML: {error}", path.display()))
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut all = Vec::new();
    files(&deploy(), &mut all);
    let mut yaml_files = 0;
    let mut json_files = 0;
    for path in &all {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("yaml" | "yml") => {
                assert!(!yaml(path).is_empty(), "{} is empty", path.display());
                yaml_files += 1;
            }
            Some("json") => {
                let text = std::fs::read_to_string(path).unwrap();
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
                json_files += 1;
            }
            _ => {}
        }
    }
    assert!(
        yaml_files >= 8 && json_files >= 1,
        "{yaml_files} YAML, {json_files} JSON"
    );
}

#[test]
fn the_prometheus_config_passes_promtool_with_the_generated_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        deploy().join("prometheus/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = nightjar_rules(&deploy().join("kubernetes/base/checks.toml"));
    std::fs::write(dir.path().join("rules/nightjar.yml"), rules).unwrap();
    run_ok(
        Command::new(require("promtool", "prometheus"))
            .args(["check", "config"])
            .arg(dir.path().join("prometheus.yml")),
    );
}

#[test]
fn the_prometheus_rule_is_what_nightjar_rules_writes() {
    let generated = yaml_rust2::YamlLoader::load_from_str(&nightjar_rules(
        &deploy().join("kubernetes/base/checks.toml"),
    ))
    .unwrap();
    let resource = yaml(&deploy().join("kubernetes/base/prometheusrule.yaml"));
    assert_eq!(
        resource[0]["spec"]["groups"], generated[0]["groups"],
        "regenerate deploy/kubernetes/base/prometheusrule.yaml from checks.toml"
    );
}

/// Every series name in the dashboard's queries is one nightjar exports or records.
#[test]
fn the_dashboard_only_queries_what_nightjar_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        "src/metrics/mod.rs",
        "src/metrics/names.rs",
        "src/metrics/store.rs",
        "src/rules.rs",
    ]
    .iter()
    .map(|file| std::fs::read_to_string(root.join(file)).unwrap())
    .collect::<String>();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/nightjar-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"].as_str() {
            queries.push(query.to_string());
        }
    }
    assert!(queries.len() >= 10);
    let name = regex::Regex::new(r"\b(probe_[a-z_]+|nightjar_[a-z_]+|nightjar:[a-z_]+:[a-z_0-9]+)")
        .unwrap();
    let window = regex::Regex::new(r"\d+[smhd]$").unwrap();
    let mut checked = 0;
    for query in &queries {
        for found in name.find_iter(query) {
            let series = found.as_str();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| series.strip_suffix(suffix))
                .unwrap_or(series);
            // Recording rules are named in rules.rs, some with a window appended (ratio_rate5m).
            let recorded = window.replace(base, "");
            let known = sources.contains(&format!("\"{base}\""))
                || sources.contains(&format!("record: {base}"))
                || (base.starts_with("nightjar:")
                    && sources.contains(&format!("{recorded}{{window}}")));
            assert!(
                known,
                "{series} (in {query}) is not a series nightjar exports"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

/// The longest timeout of the checks in `path` (a file or directory).
fn longest_timeout(path: &Path) -> std::time::Duration {
    let config = nightjar::config::load(
        &[path.to_path_buf()],
        &nightjar::config::MapEnv::default(),
        &nightjar::config::Overrides::default(),
    );
    let config = match config {
        Ok(config) => config,
        // Secrets the examples reference are not set here; every check still has its timeout
        // in the text, so read them from there.
        Err(_) => return longest_written_timeout(path),
    };
    config
        .checks
        .iter()
        .map(|def| def.timeout)
        .max()
        .unwrap_or_default()
}

fn longest_written_timeout(path: &Path) -> std::time::Duration {
    let mut all = Vec::new();
    if path.is_dir() {
        files(path, &mut all);
    } else {
        all.push(path.to_path_buf());
    }
    let timeout = regex::Regex::new(r#"(?m)^\s*timeout\s*=\s*"([^"]+)""#).unwrap();
    all.iter()
        .filter(|file| file.extension().is_some_and(|ext| ext == "toml"))
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            timeout
                .captures_iter(&text)
                .map(|found| nightjar::config::parse_duration(&found[1]).unwrap())
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(std::time::Duration::from_secs(10))
}

/// The systemd unit and the StatefulSet give the agent the descriptors its defaults need and
/// a stop deadline above what SIGTERM takes (the longest check timeout, then the server's
/// 2 s grace; the promise is within 5 s of the longest timeout).
#[test]
fn the_unit_and_the_manifests_allow_what_shutdown_and_the_connection_cap_need() {
    use nightjar::server::{FD_RESERVE, FDS_PER_RUN, SHUTDOWN_GRACE};
    let needed_fds =
        FD_RESERVE + FDS_PER_RUN * 256 + nightjar::config::web::DEFAULT_MAX_CONNECTIONS;
    let unit = std::fs::read_to_string(deploy().join("systemd/nightjar.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit sets no {key}"))
            .to_string()
    };
    let limit: usize = value("LimitNOFILE").parse().unwrap();
    assert!(limit >= needed_fds, "LimitNOFILE={limit} < {needed_fds}");
    let stop = nightjar::config::parse_duration(&value("TimeoutStopSec")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let longest = longest_timeout(&root.join("checks"));
    assert!(
        stop >= longest + std::time::Duration::from_secs(5),
        "TimeoutStopSec {stop:?} below the longest check timeout {longest:?} plus 5 s"
    );
    assert!(SHUTDOWN_GRACE < std::time::Duration::from_secs(5));

    let set = yaml(&deploy().join("kubernetes/base/statefulset.yaml"));
    let grace = set[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds is set");
    let longest = longest_timeout(&deploy().join("kubernetes/base/checks.toml"));
    assert!(
        grace as u64 >= longest.as_secs() + 5,
        "terminationGracePeriodSeconds {grace} below the longest check timeout {longest:?} plus 5 s"
    );
}
