//! deploy/: every YAML and JSON file parses, the Prometheus configuration passes `promtool check
//! config` with the generated rules, the PrometheusRule is what `nightjar rules` writes, and
//! the dashboard queries only series nightjar exports or records.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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

/// The dashboard's queries: every panel target's expression, and every template variable's
/// `label_values` query.
fn dashboard_queries() -> (Vec<String>, Vec<String>) {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/nightjar-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    let mut variables = Vec::new();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"].as_str()
            && variable["type"] == "query"
        {
            variables.push(query.to_string());
        }
    }
    (exprs, variables)
}

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers,
/// ranges and grouping lists, that are neither functions, aggregations nor keywords, nor
/// Grafana variables (`$check`, `$__range`).
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 23] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let next_non_space = |mut at: usize| {
        while at < chars.len() && chars[at].is_whitespace() {
            at += 1;
        }
        (at, chars.get(at).copied())
    };
    let mut names = Vec::new();
    let (mut at, mut braces, mut brackets, mut label_list) = (0, 0usize, 0usize, false);
    while at < chars.len() {
        let c = chars[at];
        match c {
            '"' | '\'' | '`' => {
                at += 1;
                while at < chars.len() && chars[at] != c {
                    at += if chars[at] == '\\' { 2 } else { 1 };
                }
                at += 1;
            }
            '{' => (braces, at) = (braces + 1, at + 1),
            '}' => (braces, at) = (braces - 1, at + 1),
            '[' => (brackets, at) = (brackets + 1, at + 1),
            ']' => (brackets, at) = (brackets - 1, at + 1),
            ')' if label_list => (label_list, at) = (false, at + 1),
            '$' => {
                at += 1;
                while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                    at += 1;
                }
            }
            '0'..='9' | '.' => {
                while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '.') {
                    at += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let begin = at;
                while at < chars.len()
                    && (chars[at].is_ascii_alphanumeric() || chars[at] == '_' || chars[at] == ':')
                {
                    at += 1;
                }
                let word: String = chars[begin..at].iter().collect();
                let (after, next) = next_non_space(at);
                if braces > 0 || brackets > 0 || label_list {
                    // A label name, a duration, or a name in a grouping list.
                } else if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str())
                {
                    if next == Some('(') {
                        (label_list, at) = (true, after + 1);
                    }
                } else if next == Some('(')
                    || KEYWORDS.contains(&word.as_str())
                    || ["inf", "nan"].contains(&word.to_ascii_lowercase().as_str())
                {
                    // A function, an aggregation or a keyword.
                } else {
                    names.push(word);
                }
            }
            _ => at += 1,
        }
    }
    names
}

#[test]
fn metric_names_come_from_selectors_only() {
    assert_eq!(
        metric_names(
            r#"1 - sum by (check, le) (rate(a_total{x="y{z}",w=~"$v"}[5m] offset 1h)) / on (slo) group_left sum without (r) (b:c:ratio) and ignoring (q) histogram_quantile(0.99, d_bucket) > bool 1e3 + time() - Inf"#
        ),
        ["a_total", "b:c:ratio", "d_bucket"]
    );
}

/// Every metric the dashboard queries is one a running agent exports on `/metrics` (with a
/// check of each kind the dashboard shows, after each ran) or one `nightjar rules` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_only_queries_what_nightjar_exports() {
    dashboard_against("lean").await;
}

/// The same with every series (`[agent] metrics = "full"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_only_queries_what_nightjar_exports_with_full_metrics() {
    dashboard_against("full").await;
}

/// The dashboard against an agent exporting the metrics set `metrics`.
async fn dashboard_against(metrics: &str) {
    use crate::support::{LoginApp, Nginx, RunningAgent, eventually, http_get, load};
    let nginx = Nginx::start();
    let app = LoginApp::start("unused-password", "JBSWY3DPEHPK3PXP");
    let text = format!(
        "[agent]\nmetrics = \"{metrics}\"\n\n[[check]]\nname = \"web\"\ntype = \"http\"\nurl = \"{web}\"\ninterval = \"1s\"\n\n[[check]]\nname = \"cert\"\ntype = \"tls\"\ntarget = \"localhost:{tls}\"\ninterval = \"1s\"\n\n[[check]]\nname = \"journey\"\ntype = \"flow\"\ninterval = \"1s\"\n\n  [[check.steps]]\n  name = \"ping\"\n  url = \"{ping}\"\n\n[[check]]\nname = \"ping\"\ntype = \"icmp\"\ntarget = \"127.0.0.1\"\ninterval = \"1s\"\ncount = 1\n\n[[check]]\nname = \"health\"\ntype = \"grpc\"\ntarget = \"127.0.0.1:{closed}\"\nplaintext = true\ninterval = \"1s\"\n\n[[check]]\nname = \"socket\"\ntype = \"websocket\"\nurl = \"{socket}\"\ninterval = \"1s\"\n\n[[slo]]\nname = \"web-availability\"\nobjective = 0.999\nchecks = [\"web\"]\n",
        web = nginx.url("/ok"),
        tls = nginx.https.port(),
        ping = app.url("/ping"),
        closed = crate::support::free_port(),
        socket = nginx.url("/ok").replacen("http://", "ws://", 1),
    );
    let agent = RunningAgent::start(load(&text, &[])).await;
    let metrics = eventually(Duration::from_secs(20), "every check to run", || async {
        let (_, metrics) = http_get(agent.addr, "/metrics").await;
        ["web", "cert", "journey", "ping", "health", "socket"]
            .iter()
            .all(|check| {
                metrics.lines().any(|line| {
                    line.starts_with("nightjar_check_runs_total{")
                        && line.contains(&format!("check=\"{check}\""))
                        && !line.ends_with(" 0")
                })
            })
            .then_some(metrics)
    })
    .await;
    agent.stop().await;
    let mut known: std::collections::BTreeSet<String> = metrics
        .lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_string)
        .collect();

    // What the rules record, for this configuration and the deploy base's.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("checks.toml");
    std::fs::write(&config, &text).unwrap();
    for rules in [
        nightjar_rules(&config),
        nightjar_rules(&deploy().join("kubernetes/base/checks.toml")),
    ] {
        for doc in yaml_rust2::YamlLoader::load_from_str(&rules).unwrap() {
            for group in doc["groups"].as_vec().unwrap() {
                for rule in group["rules"].as_vec().unwrap() {
                    if let Some(record) = rule["record"].as_str() {
                        known.insert(record.to_string());
                    }
                }
            }
        }
    }
    assert!(
        known.iter().any(|name| name.starts_with("nightjar:")),
        "{known:?}"
    );

    let (exprs, variables) = dashboard_queries();
    assert!(exprs.len() >= 10 && variables.len() >= 2);
    // Every expression is PromQL Prometheus accepts (Grafana's variables filled in).
    let mut as_rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (idx, expr) in exprs.iter().enumerate() {
        let filled = expr
            .replace("$__range", "1h")
            .replace("$check", ".*")
            .replace("$region", ".*");
        as_rules.push_str(&format!(
            "      - record: dashboard:query_{idx}:value\n        expr: {}\n",
            serde_json::to_string(&filled).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), as_rules).unwrap();
    run_ok(
        Command::new(require("promtool", "prometheus"))
            .args(["check", "rules"])
            .arg(dir.path().join("dashboard.yml")),
    );

    let label_values =
        regex::Regex::new(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_]\w*\s*\)$")
            .unwrap();
    let mut used = Vec::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        used.extend(names.into_iter().map(|name| (name, expr.clone())));
    }
    for query in &variables {
        let name = label_values
            .captures(query)
            .unwrap_or_else(|| panic!("{query}: not a label_values(metric, label) query"))[1]
            .to_string();
        used.push((name, query.clone()));
    }
    let unknown: Vec<&(String, String)> = used
        .iter()
        .filter(|(name, _)| !known.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries series nightjar neither exports nor records: {unknown:#?}\nknown: {known:#?}"
    );
    assert!(used.len() >= 12, "{used:?}");
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

/// State survives restarts by default: the unit's StateDirectory is the agent's state dir,
/// and the StatefulSet mounts a volume of its own per pod where NIGHTJAR_STATE_DIR points.
#[test]
fn the_unit_and_the_manifests_keep_the_state_dir() {
    let unit = std::fs::read_to_string(deploy().join("systemd/nightjar.service")).unwrap();
    let directory = unit
        .lines()
        .find_map(|line| line.strip_prefix("StateDirectory="))
        .expect("the unit sets a StateDirectory");
    assert!(
        unit.lines()
            .any(|line| line == format!("Environment=NIGHTJAR_STATE_DIR=/var/lib/{directory}")),
        "NIGHTJAR_STATE_DIR is the StateDirectory:\n{unit}"
    );

    let set = yaml(&deploy().join("kubernetes/base/statefulset.yaml"));
    let spec = &set[0]["spec"];
    let container = &spec["template"]["spec"]["containers"][0];
    let dir = container["env"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|env| env["name"].as_str() == Some("NIGHTJAR_STATE_DIR"))
        .and_then(|env| env["value"].as_str())
        .expect("NIGHTJAR_STATE_DIR is set");
    let mount = container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|mount| mount["mountPath"].as_str() == Some(dir))
        .expect("a volume is mounted at the state dir");
    let name = mount["name"].as_str().unwrap();
    assert!(
        spec["volumeClaimTemplates"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|claim| claim["metadata"]["name"].as_str() == Some(name)),
        "the state volume is a claim of each pod's own"
    );
}

/// The Prometheus Operator Probe example asks the base's service, on its metrics port, for
/// `/probe` with a module and static targets.
#[test]
fn the_probe_example_points_at_the_base_service() {
    let probe = &yaml(&deploy().join("kubernetes/probe-example.yaml"))[0];
    assert_eq!(
        probe["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(probe["kind"].as_str(), Some("Probe"));
    let spec = &probe["spec"];
    let url = spec["prober"]["url"].as_str().expect("prober.url");
    let (host, port) = url.rsplit_once(':').expect("prober.url is HOST:PORT");
    let service = &yaml(&deploy().join("kubernetes/base/service.yaml"))[0];
    let name = service["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        host.split('.').next(),
        Some(name),
        "prober.url {url} is not the service {name}"
    );
    let metrics_port = service["spec"]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .and_then(|p| p["port"].as_i64())
        .expect("the service's metrics port");
    assert_eq!(port, metrics_port.to_string(), "prober.url {url}");
    assert_eq!(spec["prober"]["path"].as_str(), Some("/probe"));
    assert!(spec["module"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        !spec["targets"]["staticConfig"]["static"]
            .as_vec()
            .expect("static targets")
            .is_empty()
    );
}
