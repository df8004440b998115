//! The metrics every example under `checks/` renders, compared byte for byte with
//! `tests/golden/checks.prom` (with `[agent] metrics = "full"`) and `checks-lean.prom`: at load (every series created at 0) and after a failure of every
//! reason and a pass with the fullest details of each check (`labels::observed`). Refactoring
//! must not change them; a deliberate change of the metrics contract regenerates the file with
//! `NIGHTJAR_BLESS=1 cargo test --test it examples` and shows up in review as a diff of it.
//! Labels are compared in name order: the registry's agent-wide series put their constant
//! labels in an order that differs from one process to the next (Prometheus does not mind).

use nightjar::config::{self, MapEnv, MetricsMode, Overrides};
use nightjar::metrics::Metrics;
use std::path::Path;

/// Lines that depend on when or where the test runs.
const VARIABLE: [&str; 2] = [
    "nightjar_config_last_reload_success_timestamp_seconds",
    "nightjar_build_info",
];

#[test]
fn the_examples_render_the_same_metrics_as_before() {
    compare(MetricsMode::Full, "tests/golden/checks.prom");
}

/// The same with lean metrics (`checks/agent.toml` sets `metrics = "lean"`): counters at 0,
/// one histogram of successful runs, the current state, then each reason seen once.
#[test]
fn the_examples_render_the_same_lean_metrics_as_before() {
    compare(MetricsMode::Lean, "tests/golden/checks-lean.prom");
}

/// The examples under `checks/`, loaded with the secrets they refer to.
pub(crate) fn examples() -> nightjar::config::Config {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("checks");
    let env = MapEnv(
        [
            ("SHOP_API_TOKEN", "example-token"),
            ("STATUS_PASSWORD", "example-password"),
            ("SHOP_PROBE_PASSWORD", "example-password"),
            ("SHOP_PROBE_TOTP", "JBSWY3DPEHPK3PXP"),
            ("REMOTE_WRITE_TOKEN", "example-token"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    config::load(&[dir], &env, &Overrides::default())
        .unwrap_or_else(|errors| panic!("checks/ does not load:\n{errors}"))
}

/// Renders the examples' metrics in `mode` and compares them with the golden file `golden`
/// (or writes it, with `NIGHTJAR_BLESS`).
fn compare(mode: MetricsMode, golden: &str) {
    let mut config = examples();
    config.agent.metrics = mode;
    let mut rendered = String::from("# At load\n");
    rendered.push_str(&Metrics::new(&config).render());
    rendered.push_str(
        "# After a failure of every reason and a pass with the fullest details of each check\n",
    );
    rendered.push_str(&crate::labels::observed(&config).render());
    let rendered: String = rendered
        .lines()
        .filter(|line| !VARIABLE.iter().any(|name| line.starts_with(name)))
        .map(|line| format!("{}\n", sorted_labels(line)))
        .collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(golden);
    if std::env::var_os("NIGHTJAR_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if rendered != expected {
        let first = rendered
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(rendered.lines().count().min(expected.lines().count()));
        panic!(
            "the metrics of checks/ changed from line {} on:\n  now:    {:?}\n  before: {:?}\n(NIGHTJAR_BLESS=1 regenerates {golden} for a deliberate change)",
            first + 1,
            rendered.lines().nth(first),
            expected.lines().nth(first)
        );
    }
}

/// A sample line with its labels in name order.
fn sorted_labels(line: &str) -> String {
    let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
        return line.to_string();
    };
    if line.starts_with('#') || close < open {
        return line.to_string();
    }
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (open + 1, false, false);
    for (idx, c) in line[open + 1..close].char_indices() {
        let at = open + 1 + idx;
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&line[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    pairs.push(&line[start..close]);
    pairs.sort_unstable();
    format!(
        "{}{{{}}}{}",
        &line[..open],
        pairs.join(","),
        &line[close + 1..]
    )
}
