//! Loading, secret substitution and validation of the TOML configuration.
//!
//! This is the only module that reads config files, secret files or the environment for
//! values: everything downstream receives validated, built values ([`Config`], [`CheckDef`]).
//! Every problem in every file is reported at once, each as `file:line:column: message`.

mod maintenance;
mod metrics_mode;
pub mod module;
mod remote_write;
pub mod schema;
mod slo;
mod spec;
pub mod template;
mod traffic;
mod validate;
pub mod web;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::checks::{CheckKind, CheckSpec};

pub use crate::reader::{
    ConfigError, Env, MapEnv, NoSecrets, ProcessEnv, parse_duration, parse_size,
};

/// The default address of the agent's own server: loopback only, so nothing is exposed by
/// accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9465";

/// Default buckets of `nightjar_check_duration_seconds`, in seconds.
pub const DEFAULT_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Default buckets of `nightjar_check_duration_seconds` with lean metrics, in seconds (each
/// edge is a series per check); an `[[slo]]`'s latency threshold among
/// [`DEFAULT_DURATION_BUCKETS`] is added to them.
pub const LEAN_DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Which per-check series the agent exports (`[agent] metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsMode {
    /// The SLI counters, one duration histogram (successful runs), the current state, the
    /// blackbox gauges; failure reasons, retries, skips and maintenance from their first use.
    #[default]
    Lean,
    /// Every series, each created at 0 when the check is loaded.
    Full,
}

impl MetricsMode {
    /// The value as written in the configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricsMode::Lean => "lean",
            MetricsMode::Full => "full",
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `[agent]` table, with command-line and environment overrides applied.
    pub agent: AgentConfig,
    /// Every check, in file order.
    pub checks: Vec<Arc<CheckDef>>,
    /// Every `[[slo]]`, in file order.
    pub slos: Vec<Slo>,
    /// The `[rules]` table: settings of `nightjar rules`.
    pub rules: RulesConfig,
    /// Every `[[traffic]]`: synthetic good traffic for quiet hours.
    pub traffic: Vec<Arc<TrafficDef>>,
    /// Every `[[remote_write]]` endpoint.
    pub remote_write: Vec<Arc<RemoteWriteDef>>,
    /// Every `[[maintenance]]` window.
    pub maintenance: Vec<crate::maintenance::Window>,
    /// Where the configuration came from.
    pub origin: Origin,
    /// [`fingerprint`] of the files as they were when loaded, for `watch_config`.
    pub fingerprint: u64,
    /// Every module `/probe?module=` can run: `[[module]]` tables and the modules of
    /// `[agent] blackbox_config`, each validated.
    pub modules: Vec<Arc<module::ModuleDef>>,
    /// Every check written with `targets` or `targets_from`, whose targets' checks are in
    /// `checks`; those with `targets_from` get more from service discovery.
    pub templates: Vec<Arc<template::Template>>,
    /// The shard this agent runs (`--shard`: index from 0, count), if any.
    pub shard: Option<(u64, u64)>,
}

impl Config {
    /// Keeps only the checks and traffic injectors of shard `index` (0-based) of `count`:
    /// those whose stable name hash modulo `count` is `index`, like Prometheus's `hashmod`.
    /// A template's targets are placed by their own names (`TEMPLATE@INSTANCE`), so its
    /// targets spread over the shards, and targets discovered later follow the same rule
    /// ([`Config::in_shard`]).
    pub fn select_shard(&mut self, index: u64, count: u64) {
        self.shard = Some((index, count));
        let shard = self.shard;
        self.checks.retain(|def| in_shard(shard, &def.name));
        self.traffic.retain(|def| in_shard(shard, &def.name));
    }

    /// Whether the check or injector `name` belongs to this agent's shard.
    pub fn in_shard(&self, name: &str) -> bool {
        in_shard(self.shard, name)
    }
}

/// Whether `name` falls in `shard` (index from 0, count): its stable hash modulo the count is
/// the index, like Prometheus's `hashmod`. No shard holds every name.
pub fn in_shard(shard: Option<(u64, u64)>, name: &str) -> bool {
    shard.is_none_or(|(index, count)| crate::hash::stable_hash(name) % count.max(1) == index)
}

/// A hash of a definition as written: its table's content (`Table::written`), what it takes
/// from outside the table (inherited defaults, a referenced check), and its secret values. Reloads compare revisions to tell
/// an unchanged check, injector or remote-write endpoint from a changed one. Stable within
/// one process, which is all a reload needs.
pub(crate) fn revision(written: &str, outside: &str, secrets: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (written, outside, secrets).hash(&mut hasher);
    hasher.finish()
}

/// A fingerprint of the config files (paths, sizes, modification times, and the listing of
/// directories), to notice edits, additions, removals and ConfigMap-style renames.
pub fn fingerprint(origin: &Origin) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Origin::Files(files) = origin {
        let mut paths: Vec<PathBuf> = files.clone();
        for file in files {
            if let Some(dir) = file.parent()
                && let Ok(entries) = std::fs::read_dir(dir)
            {
                paths.extend(
                    entries
                        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                        .filter(|path| path.extension().is_some_and(|ext| ext == "toml")),
                );
            }
        }
        paths.sort();
        paths.dedup();
        for path in paths {
            path.hash(&mut hasher);
            if let Ok(metadata) = std::fs::metadata(&path) {
                metadata.len().hash(&mut hasher);
                metadata.modified().ok().hash(&mut hasher);
            }
        }
    }
    hasher.finish()
}

/// Where a [`Config`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The files that were loaded.
    Files(Vec<PathBuf>),
    /// The built-in default (no `--config` given).
    Embedded,
}

/// The `[agent]` table.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Region label on every series.
    pub region: String,
    /// This agent's name: the `agent` label of pushed series (default: the host name).
    pub name: String,
    /// Address of the agent's own server.
    pub listen: SocketAddr,
    /// Extra labels on every series.
    pub labels: BTreeMap<String, String>,
    /// How many check runs may be in flight at once, across all checks.
    pub concurrency: usize,
    /// Bucket upper bounds of `nightjar_check_duration_seconds`, in seconds.
    pub duration_buckets: Vec<f64>,
    /// Reload when the config files change, checking this often (off when `None`).
    pub watch_config: Option<Duration>,
    /// Where `domain` checks find the RDAP bootstrap registry.
    pub rdap_bootstrap: url::Url,
    /// RDAP base URLs by TLD, used before the bootstrap registry.
    pub rdap_servers: BTreeMap<String, url::Url>,
    /// Where check states, histories, ad hoc maintenance windows and the RDAP cache are kept
    /// across restarts (`state_dir`); nothing is kept without it.
    pub state_dir: Option<PathBuf>,
    /// HTTPS and authentication of the agent's own server.
    pub web: web::WebConfig,
    /// blackbox_exporter's configuration whose modules `/probe` serves (`blackbox_config`),
    /// resolved against the directory of the file that names it.
    pub blackbox_config: Option<PathBuf>,
    /// Taken off `X-Prometheus-Scrape-Timeout-Seconds` for a `/probe`'s timeout
    /// (`probe_timeout_offset`, blackbox_exporter's `--timeout-offset`).
    pub probe_timeout_offset: Duration,
    /// Which per-check series are exported (`metrics`).
    pub metrics: MetricsMode,
}

/// One validated check.
#[derive(Debug, Clone)]
pub struct CheckDef {
    /// Unique name, `[a-z0-9_-]+`.
    pub name: Arc<str>,
    /// When it runs.
    pub schedule: Schedule,
    /// Upper bound on one run.
    pub timeout: Duration,
    /// Extra labels on this check's series (a template's targets with the same labels share
    /// one map).
    pub labels: Arc<BTreeMap<String, String>>,
    /// Regions the check runs in; empty means every region.
    pub regions: Vec<String>,
    /// What to probe and what to expect.
    pub spec: CheckSpec,
    /// Human description of the target without credentials or query strings.
    pub target: String,
    /// Secret values substituted into this check, to be redacted from any text it produces.
    pub secrets: Vec<String>,
    /// `file:line:column` where the check is defined.
    pub defined_at: String,
    /// Whether the check runs once soon after it is loaded (within `min(interval, 60 s)`)
    /// rather than waiting for its first slot.
    pub run_on_load: bool,
    /// After a run that leaves a change of state unconfirmed, the next run comes this soon
    /// instead of a whole interval later (`retry_interval`).
    pub retry_interval: Option<Duration>,
    /// Runs in a row that decide a change of state (`confirm_failures`,
    /// `confirm_recoveries`).
    pub confirm: crate::detect::Confirm,
    /// The local address its connections and datagrams leave from (`source_ip`); `None` lets
    /// the system choose.
    pub source_ip: Option<std::net::IpAddr>,
    /// The definition as written (`config::revision`): equal across a reload when the check is
    /// unchanged.
    pub revision: u64,
    /// A template's check (`targets`, `targets_from`): the target it was made for, without
    /// credentials or query string (its `instance` label). Its `name` is then
    /// `TEMPLATE@INSTANCE`.
    pub instance: Option<Arc<str>>,
}

impl CheckDef {
    /// The name its series carry as `check`: the template's for a template's check, else
    /// the check's own.
    pub fn check_name(&self) -> &str {
        match self.instance {
            Some(_) => self
                .name
                .split_once('@')
                .map_or(&*self.name, |(name, _)| name),
            None => &self.name,
        }
    }

    /// The check's type.
    pub fn kind(&self) -> CheckKind {
        self.spec.kind()
    }

    /// Whether the check runs in `region`.
    pub fn runs_in(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }

    /// Replaces every secret value in `text` with `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        redact(&self.secrets, text)
    }
}

/// A service level objective: `[[slo]]`.
#[derive(Debug, Clone)]
pub struct Slo {
    /// Unique name; the `slo` label of its rules.
    pub name: String,
    /// The service it belongs to (Sloth's `sloth_service`); defaults to the name.
    pub service: String,
    /// The target ratio of good events, e.g. 0.999.
    pub objective: f64,
    /// The SLO period, e.g. 30 days.
    pub window: Duration,
    /// Where good and bad events are counted.
    pub source: SliSource,
    /// How many failures in a tier's long window must not page: the traffic floor's `k`.
    pub tolerated_failures: u32,
    /// Divide by at least the floor's request count (the "virtual floor").
    pub virtual_floor: bool,
    /// Leave runs taken in maintenance windows out of the SLI (checks SLIs only).
    pub exclude_maintenance: bool,
    /// Extra labels on the SLO's rules.
    pub labels: BTreeMap<String, String>,
}

/// The events an SLI counts.
#[derive(Debug, Clone)]
pub enum SliSource {
    /// nightjar's own runs of these checks: availability, or latency under a threshold.
    Checks {
        /// The checks.
        names: Vec<String>,
        /// Latency threshold in seconds (a bucket edge), for a latency SLI.
        latency: Option<f64>,
    },
    /// The service's own metrics: PromQL with a `$window` placeholder.
    Queries {
        /// Failed events per second over `$window`.
        errors: String,
        /// All events per second over `$window`.
        total: String,
    },
}

/// A `[[remote_write]]` endpoint.
#[derive(Debug, Clone)]
pub struct RemoteWriteDef {
    /// Name; the `remote` label of its metrics.
    pub name: String,
    /// The endpoint, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: url::Url,
    /// Extra headers (authentication), secrets substituted.
    pub headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
    /// How often every series is pushed.
    pub interval: Duration,
    /// Upper bound on one push.
    pub timeout: Duration,
    /// Samples kept while the endpoint is down; the oldest are dropped beyond it.
    pub max_queue: usize,
    /// Samples per request.
    pub max_batch: usize,
    /// Address family preference.
    pub ip: crate::net::IpPreference,
    /// TLS client, verifier and name.
    pub tls: crate::checks::http::TlsOptions,
    /// Secret values to redact from logs.
    pub secrets: Vec<String>,
    /// The definition as written (`config::revision`), with its secret values.
    pub revision: u64,
}

impl RemoteWriteDef {
    /// Replaces every secret value in `text` with `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        redact(&self.secrets, text)
    }
}

/// A `[[traffic]]` injector.
#[derive(Debug, Clone)]
pub struct TrafficDef {
    /// Unique name; the `traffic` label.
    pub name: String,
    /// The request sent, marked as synthetic: an inline HTTP request or a check's (http or flow).
    pub request: CheckSpec,
    /// The SLO the floor comes from, if any.
    pub slo: Option<String>,
    /// The traffic floor, requests per second.
    pub floor: f64,
    /// Prometheus's base URL, for the real rate.
    pub prometheus: Option<url::Url>,
    /// PromQL giving the real request rate per second.
    pub real_rate: Option<String>,
    /// Never inject faster than this, requests per second.
    pub max_rate: f64,
    /// How often the real rate is read again.
    pub refresh: Duration,
    /// Poisson arrivals (true) or evenly spaced ones.
    pub poisson: bool,
    /// Inject only inside this daily window (UTC).
    pub active: Option<ActiveWindow>,
    /// What to inject when Prometheus cannot be asked.
    pub fallback: Fallback,
    /// Upper bound on one request (or flow).
    pub timeout: Duration,
    /// Secret values in the request, redacted from any output.
    pub secrets: Vec<String>,
    /// The definition as written (`config::revision`), with the check it sends and its floor.
    pub revision: u64,
}

impl TrafficDef {
    /// Replaces every secret value in `text` with `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        redact(&self.secrets, text)
    }
}

/// A daily window in UTC, e.g. 22:00 to 07:00 (it may wrap midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveWindow {
    /// Start, minutes after midnight.
    pub from: u32,
    /// End, minutes after midnight.
    pub to: u32,
}

impl ActiveWindow {
    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::Timelike;
        let minute = at.hour() * 60 + at.minute();
        if self.from <= self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

/// What an injector does when Prometheus cannot be asked for the real rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Inject the whole floor (capped by `max_rate`).
    Floor,
    /// Inject nothing.
    None,
}

impl Fallback {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Floor => "floor",
            Fallback::None => "none",
        }
    }
}

/// The `[rules]` table.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Lead time of the warning expiry alerts.
    pub expiry_warning: Duration,
    /// Lead time of the critical expiry alerts.
    pub expiry_critical: Duration,
    /// Regions that must fail for the region-quorum alert; default: more than half of the
    /// regions the check runs in.
    pub quorum: Option<usize>,
    /// How long the quorum must hold.
    pub quorum_for: Duration,
    /// Name the SLO series as Sloth does, so Sloth's dashboards work.
    pub sloth_naming: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            expiry_warning: Duration::from_secs(21 * 86_400),
            expiry_critical: Duration::from_secs(7 * 86_400),
            quorum: None,
            quorum_for: Duration::from_secs(300),
            sloth_naming: false,
        }
    }
}

/// Replaces every value of `secrets` in `text` with `<redacted>`, raw and in every encoding a
/// URL or a log gives it (`text::redact`).
pub fn redact(secrets: &[String], text: &str) -> String {
    crate::text::redact(secrets, text)
}

/// When a check runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `interval`, at a stable offset derived from the check name.
    Interval(Duration),
    /// On a cron expression (UTC), stored with the 6- or 7-field form the `cron` crate takes.
    Cron(Box<cron::Schedule>),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(every) => write!(f, "every {}", humantime::format_duration(*every)),
            Schedule::Cron(schedule) => write!(f, "cron {}", schedule.source()),
        }
    }
}

/// Values from the command line and environment that override the `[agent]` table.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--region` / `NIGHTJAR_REGION`.
    pub region: Option<String>,
    /// `--listen` / `NIGHTJAR_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--state-dir` / `NIGHTJAR_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, error) in self.0.iter().enumerate() {
            if idx > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads, substitutes and validates every `*.toml` file named by `paths` (files, or
/// directories whose `*.toml` files are read in sorted order).
pub fn load(
    paths: &[PathBuf],
    env: &dyn Env,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        expand_path(path, &mut files, &mut errors);
    }
    let mut sources = Vec::with_capacity(files.len());
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => sources.push(crate::reader::Source::new(file.clone(), text)),
            Err(error) => errors.push(file_error(
                file,
                format!("cannot read config file: {error}"),
            )),
        }
    }
    // Taken before reading, so an edit racing the load is seen as a change.
    let fingerprint = fingerprint(&Origin::Files(files.clone()));
    let loaded = files.len();
    let result =
        validate::build(&sources, env, overrides, Origin::Files(files)).map(|mut config| {
            config.fingerprint = match &config.origin {
                // `blackbox_config` joined the files: its fingerprint too (taken after
                // reading it, so an edit within these milliseconds waits for the next one).
                Origin::Files(all) if all.len() > loaded => self::fingerprint(&config.origin),
                _ => fingerprint,
            };
            config
        });
    match result {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more.0);
            Err(ConfigErrors(errors))
        }
    }
}

/// Validates configuration text as if it were the file `path` (used for the embedded default
/// and in tests).
pub fn load_str(
    path: &Path,
    text: &str,
    env: &dyn Env,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    let sources = vec![crate::reader::Source::new(
        path.to_path_buf(),
        text.to_string(),
    )];
    validate::build(
        &sources,
        env,
        overrides,
        Origin::Files(vec![path.to_path_buf()]),
    )
}

/// The built-in configuration used when no `--config` is given: the agent probes its own
/// endpoints, so a newcomer sees checks run, metrics move and the JSON API fill in.
pub fn embedded(overrides: &Overrides) -> Config {
    let listen = overrides.listen.unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .expect("the default listen address parses")
    });
    let text = embedded_text(listen);
    let mut config = load_str(Path::new("<embedded>"), &text, &ProcessEnv, overrides)
        .expect("the embedded default configuration is valid");
    config.origin = Origin::Embedded;
    config
}

/// The text of the embedded default for an agent listening on `listen`.
pub fn embedded_text(listen: SocketAddr) -> String {
    format!(
        r#"# nightjar's embedded default: the agent checks its own endpoints.
[agent]
listen = "{listen}"

[[check]]
name = "self-health"
type = "http"
url = "http://{listen}/-/healthy"
interval = "10s"
timeout = "2s"
expect = {{ status = [200], body_contains = ["OK"] }}

[[check]]
name = "self-metrics"
type = "http"
url = "http://{listen}/metrics"
interval = "15s"
timeout = "5s"
expect = {{ status = ["2xx"], body_contains = ["nightjar_build_info"], headers = {{ content-type = "^text/plain" }}, max_duration = "1s" }}
"#
    )
}

fn expand_path(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ConfigError>) {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            errors.push(file_error(
                path,
                format!("cannot read config path: {error}"),
            ));
            return;
        }
    };
    if !metadata.is_dir() {
        files.push(path.to_path_buf());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(file_error(
                path,
                format!("cannot list config directory: {error}"),
            ));
            return;
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml") && p.is_file())
        .collect();
    found.sort();
    if found.is_empty() {
        errors.push(ConfigError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: "the config directory holds no *.toml files".to_string(),
            hint: Some("point --config at a directory of check files, or at one file".to_string()),
        });
    }
    files.extend(found);
}

fn file_error(path: &Path, message: String) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        message,
        hint: None,
    }
}
