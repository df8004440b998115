//! Turns parsed TOML documents into a validated [`Config`], collecting every problem.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeTable;

use super::spec::{read_kind, read_source_ip, read_spec};
use super::template::Template;
use super::{
    AgentConfig, CheckDef, Config, ConfigError, ConfigErrors, DEFAULT_DURATION_BUCKETS,
    DEFAULT_LISTEN, Env, LEAN_DURATION_BUCKETS, MetricsMode, Origin, Overrides, Schedule,
};
use crate::checks::CheckKind;
use crate::metrics::names::RESERVED_LABELS;
use crate::reader::{
    Diags, Failed, Source, Table, Unresolved, Value, parse_cron, read_labels, valid_check_name,
};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONCURRENCY: usize = 256;
const DOMAIN_INTERVAL: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone)]
pub(super) struct Defaults {
    interval: Duration,
    timeout: Option<Duration>,
    run_on_load: bool,
    detection: Detection,
    source_ip: Option<std::net::IpAddr>,
}

/// How a check's state is decided: `retry_interval`, `confirm_failures`,
/// `confirm_recoveries` (per check, defaulting to `[defaults]`).
#[derive(Debug, Clone, Copy, Default)]
struct Detection {
    retry_interval: Option<Duration>,
    confirm: crate::detect::Confirm,
}

/// The most consecutive runs `confirm_failures` and `confirm_recoveries` may ask for.
const MAX_CONFIRM: i64 = 100;

/// The shortest `retry_interval`.
const MIN_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// `retry_interval`, `confirm_failures` and `confirm_recoveries` of `table`, each defaulting to
/// `inherited`'s.
fn read_detection(table: &Table<'_>, inherited: Detection) -> Detection {
    let d = table.diags();
    let retry_interval = match table.duration("retry_interval") {
        Some((every, span)) if every < MIN_RETRY_INTERVAL => {
            d.error_hint(
                &span,
                format!(
                    "retry_interval {} is shorter than 1s",
                    humantime::format_duration(every)
                ),
                "retries come at most once a second; use retry_interval = \"10s\" or so",
            );
            inherited.retry_interval
        }
        Some((every, _)) => Some(every),
        None => inherited.retry_interval,
    };
    let count = |key: &'static str, inherited: u32| match table.int(key) {
        Some((n, _)) if (1..=MAX_CONFIRM).contains(&n) => u32::try_from(n).unwrap_or(1),
        Some((n, span)) => {
            d.error_hint(
                &span,
                format!("{key} = {n} is out of range"),
                format!(
                    "give the runs in a row that decide a change, 1 (at once) to {MAX_CONFIRM}"
                ),
            );
            inherited
        }
        None => inherited,
    };
    let failures = count("confirm_failures", inherited.confirm.failures);
    let recoveries = count("confirm_recoveries", inherited.confirm.recoveries);
    Detection {
        retry_interval,
        confirm: crate::detect::Confirm {
            failures,
            recoveries,
        },
    }
}

pub(super) fn build(
    sources: &[Source],
    env: &dyn Env,
    overrides: &Overrides,
    origin: Origin,
) -> Result<Config, ConfigErrors> {
    let unresolved = Unresolved::default();
    let diags: Vec<Diags<'_>> = sources
        .iter()
        .map(|src| Diags::new(src, env, &unresolved))
        .collect();
    let (docs, parse_errors) = parse_documents(sources);
    let roots: Vec<(usize, Table<'_>)> = docs
        .iter()
        .map(|(idx, doc)| {
            (
                *idx,
                Table::from_root(&diags[*idx], doc.get_ref(), doc.span(), &crate::keys::ROOT),
            )
        })
        .collect();

    // Pass 1: the agent and defaults tables, each allowed in one file only.
    let singles = read_single_tables(&roots, &diags);
    let mut agent = singles.agent.unwrap_or_else(default_agent);
    if let Some(region) = &overrides.region {
        agent.region = region.clone();
    }
    if let Some(listen) = overrides.listen {
        agent.listen = listen;
    }
    if let Some(dir) = &overrides.state_dir {
        agent.state_dir = Some(dir.clone());
    }
    // Pass 2: the checks.
    let (checks, templates, mut failed) = read_checks(
        &roots,
        &diags,
        (env, &unresolved),
        &singles.defaults,
        &agent,
        &singles.agent_labels_at,
    );
    // Pass 3: the SLOs, which name checks.
    let slos = read_slos(
        &roots,
        &diags,
        (&checks, &templates),
        &mut failed,
        super::metrics_mode::slo_edges(&agent),
    );
    super::metrics_mode::add_slo_edges(&mut agent, &slos);
    // Pass 4: the traffic injectors, which name SLOs and checks.
    let traffic = read_traffics(&roots, &diags, &checks, &slos, &failed);
    let remote_write = read_remote_writes(&roots, &diags);
    let mut names: Vec<&str> = checks.iter().map(|def| def.check_name()).collect();
    names.extend(templates.iter().map(|template| &*template.name));
    names.dedup();
    let maintenance = read_maintenances(&roots, &diags, &names, &failed);
    let mut origin = origin;
    let (modules, module_errors) =
        super::module::read_modules(&roots, &diags, env, &unresolved, &agent, &mut origin);
    for (_, root) in roots {
        root.finish();
    }

    let mut errors = parse_errors;
    for d in diags {
        errors.extend(d.into_errors());
    }
    errors.extend(module_errors);
    unresolved.amend(&mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        agent,
        checks,
        slos,
        rules: singles.rules,
        traffic,
        remote_write,
        maintenance,
        origin,
        fingerprint: 0,
        modules,
        templates,
        shard: None,
    })
}

/// Parses every source as TOML: the documents that parse (with their source's index) and a
/// problem for each that does not.
fn parse_documents(
    sources: &[Source],
) -> (Vec<(usize, toml::Spanned<DeTable<'_>>)>, Vec<ConfigError>) {
    let mut parse_errors = Vec::new();
    let mut docs = Vec::new();
    for (idx, src) in sources.iter().enumerate() {
        match DeTable::parse(&src.text) {
            Ok(doc) => docs.push((idx, doc)),
            Err(error) => {
                let offset = error.span().map_or(0, |span| span.start);
                let (line, column) = src.line_col(offset);
                parse_errors.push(ConfigError {
                    path: src.path.clone(),
                    line: Some(line),
                    column: Some(column),
                    message: format!("invalid TOML: {}", error.message().trim()),
                    hint: None,
                });
            }
        }
    }
    (docs, parse_errors)
}

/// The tables each allowed in one file only: `[agent]`, `[rules]` and `[defaults]`.
struct SingleTables {
    agent: Option<AgentConfig>,
    /// Where each `[agent] labels` key is written: a check may not set the same label.
    agent_labels_at: BTreeMap<String, String>,
    defaults: Defaults,
    rules: super::RulesConfig,
}

fn read_single_tables<'a>(roots: &'a [(usize, Table<'a>)], diags: &'a [Diags<'a>]) -> SingleTables {
    let mut singles = SingleTables {
        agent: None,
        agent_labels_at: BTreeMap::new(),
        defaults: Defaults {
            interval: DEFAULT_INTERVAL,
            timeout: None,
            run_on_load: true,
            detection: Detection::default(),
            source_ip: None,
        },
        rules: super::RulesConfig::default(),
    };
    let mut agent_at: Option<String> = None;
    let mut defaults_at: Option<String> = None;
    let mut rules_at: Option<String> = None;
    for (idx, root) in roots {
        let d = &diags[*idx];
        if let Some(value) = only_table(d, root, "agent", &mut agent_at) {
            singles.agent = read_agent(d, value);
            singles.agent_labels_at = label_places(d, value);
        }
        if let Some(value) = only_table(d, root, "rules", &mut rules_at)
            && let Some(read) = super::slo::read_rules(d, value)
        {
            singles.rules = read;
        }
        if let Some(value) = only_table(d, root, "defaults", &mut defaults_at)
            && let Some(read) = read_defaults(d, value)
        {
            singles.defaults = read;
        }
    }
    singles
}

/// The agent when no file has an `[agent]` table.
fn default_agent() -> AgentConfig {
    AgentConfig {
        region: "default".to_string(),
        name: host_name(),
        listen: DEFAULT_LISTEN
            .parse()
            .expect("the default listen address parses"),
        labels: BTreeMap::new(),
        concurrency: DEFAULT_CONCURRENCY,
        rdap_bootstrap: default_bootstrap(),
        rdap_servers: BTreeMap::new(),
        watch_config: None,
        state_dir: None,
        web: super::web::WebConfig::default(),
        blackbox_config: None,
        probe_timeout_offset: super::module::DEFAULT_TIMEOUT_OFFSET,
        metrics: MetricsMode::Lean,
        duration_buckets: LEAN_DURATION_BUCKETS.to_vec(),
    }
}

/// Every `[[check]]` (a template's as one check per target), the templates, and the names
/// of those defined but invalid (naming one is no problem of its own).
fn read_checks<'a>(
    roots: &'a [(usize, Table<'a>)],
    diags: &'a [Diags<'a>],
    (env, unresolved): (&dyn Env, &Unresolved),
    defaults: &Defaults,
    agent: &AgentConfig,
    agent_labels_at: &BTreeMap<String, String>,
) -> (Vec<Arc<CheckDef>>, Vec<Arc<Template>>, Failed) {
    let mut checks = Vec::new();
    let mut templates = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    let cx = {
        let (defaults, agent, labels) = (defaults.clone(), agent.clone(), agent_labels_at.clone());
        super::template::Context {
            inherited: format!("{defaults:?}"),
            read: super::template::ReadCheck(Arc::new(move |table, seen| {
                read_check(table, &defaults, &agent, &labels, seen)
            })),
        }
    };
    for (d, n, item) in items(roots, diags, "check") {
        if super::template::is_template(item) {
            let place = super::template::Place {
                d,
                env,
                unresolved,
                n,
            };
            if let Some(read) = super::template::read(&place, item, &cx, &mut seen) {
                checks.extend(read.checks.into_iter().map(Arc::new));
                templates.push(Arc::new(read.template));
            }
            continue;
        }
        let Some(table) = Table::new(d, item, format!("check #{}", n + 1), &crate::keys::CHECK)
        else {
            continue;
        };
        if let Some(check) = read_check(table, defaults, agent, agent_labels_at, &mut seen) {
            checks.push(Arc::new(check));
        }
    }
    let valid: HashSet<&str> = checks
        .iter()
        .map(|def| def.check_name())
        .chain(templates.iter().map(|template| &*template.name))
        .collect();
    let failed = Failed {
        checks: seen
            .keys()
            .filter(|name| !valid.contains(name.as_str()))
            .cloned()
            .collect(),
        slos: BTreeSet::new(),
    };
    (checks, templates, failed)
}

/// Every `[[slo]]`; the names of those defined but invalid go to `failed`.
fn read_slos<'a>(
    roots: &'a [(usize, Table<'a>)],
    diags: &'a [Diags<'a>],
    (checks, templates): (&[Arc<CheckDef>], &[Arc<Template>]),
    failed: &mut Failed,
    buckets: &[f64],
) -> Vec<super::Slo> {
    // A template is named by its name, which its targets' series carry as `check`.
    let mut check_names: Vec<String> = checks
        .iter()
        .map(|def| def.check_name().to_string())
        .chain(templates.iter().map(|template| template.name.to_string()))
        .collect();
    check_names.sort();
    check_names.dedup();
    let mut slos: Vec<super::Slo> = Vec::new();
    for (d, n, item) in items(roots, diags, "slo") {
        let name = raw_name(item);
        let Some(table) = Table::new(d, item, format!("SLO #{}", n + 1), &crate::keys::SLO) else {
            continue;
        };
        let span = table.span();
        let read = super::slo::read_slo(table, &check_names, &failed.checks, buckets);
        if read.is_none()
            && let Some(name) = name
        {
            failed.slos.insert(name);
        }
        if let Some(slo) = read
            && unique(
                d,
                &span,
                "SLO",
                &slo.name,
                slos.iter().map(|known| &known.name),
            )
        {
            slos.push(slo);
        }
    }
    slos
}

/// Every `[[traffic]]`.
fn read_traffics<'a>(
    roots: &'a [(usize, Table<'a>)],
    diags: &'a [Diags<'a>],
    checks: &[Arc<CheckDef>],
    slos: &[super::Slo],
    failed: &Failed,
) -> Vec<Arc<super::TrafficDef>> {
    let mut traffic: Vec<Arc<super::TrafficDef>> = Vec::new();
    for (d, n, item) in items(roots, diags, "traffic") {
        let Some(table) = Table::new(
            d,
            item,
            format!("traffic #{}", n + 1),
            &crate::keys::TRAFFIC,
        ) else {
            continue;
        };
        let span = table.span();
        if let Some(def) = super::traffic::read_traffic(table, checks, slos, failed)
            && unique(
                d,
                &span,
                "traffic",
                &def.name,
                traffic.iter().map(|known| &known.name),
            )
        {
            traffic.push(Arc::new(def));
        }
    }
    traffic
}

/// Every `[[remote_write]]`.
fn read_remote_writes<'a>(
    roots: &'a [(usize, Table<'a>)],
    diags: &'a [Diags<'a>],
) -> Vec<Arc<super::RemoteWriteDef>> {
    let mut remote_write: Vec<Arc<super::RemoteWriteDef>> = Vec::new();
    for (d, _, item) in items(roots, diags, "remote_write") {
        // Numbered by the endpoints read so far, as `read_remote_write` names them.
        let Some(table) = Table::new(
            d,
            item,
            format!("remote_write #{}", remote_write.len() + 1),
            &crate::keys::REMOTE_WRITE,
        ) else {
            continue;
        };
        if let Some(def) = super::remote_write::read_remote_write(table, remote_write.len()) {
            remote_write.push(Arc::new(def));
        }
    }
    remote_write
}

/// Every `[[maintenance]]`.
fn read_maintenances<'a>(
    roots: &'a [(usize, Table<'a>)],
    diags: &'a [Diags<'a>],
    names: &[&str],
    failed: &Failed,
) -> Vec<crate::maintenance::Window> {
    let mut windows: Vec<crate::maintenance::Window> = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (d, n, item) in items(roots, diags, "maintenance") {
        let Some(table) = Table::new(
            d,
            item,
            format!("maintenance #{}", n + 1),
            &crate::keys::MAINTENANCE,
        ) else {
            continue;
        };
        if let Some(window) = super::maintenance::read_maintenance(table, names, failed, &mut seen)
        {
            windows.push(window);
        }
    }
    windows
}

/// Whether `name` is none of `known`; a problem at `span` if it is one (`what`: `SLO`).
fn unique<'k>(
    d: &Diags<'_>,
    span: &std::ops::Range<usize>,
    what: &str,
    name: &str,
    mut known: impl Iterator<Item = &'k String>,
) -> bool {
    if known.any(|known| known == name) {
        d.error_hint(
            span,
            format!("duplicate {what} name {name:?}"),
            format!("{what} names are unique"),
        );
        return false;
    }
    true
}

/// The `[key]` table of a file, unless an earlier file had one: then a problem here.
/// `first` remembers where the first one is.
fn only_table<'a>(
    d: &Diags<'_>,
    root: &Table<'a>,
    key: &'static str,
    first: &mut Option<String>,
) -> Option<&'a Value<'a>> {
    let value = root.get(key)?;
    if let Some(first) = first {
        d.error_hint(
            &value.span(),
            format!("a second [{key}] table"),
            format!("[{key}] is already defined at {first}; keep one"),
        );
        return None;
    }
    *first = Some(d.location(&value.span()));
    Some(value)
}

/// The items of every file's `[[key]]` array, file after file, each with its file's
/// diagnostics and its position in its file's array.
fn items<'a>(
    roots: &'a [(usize, Table<'a>)],
    diags: &'a [Diags<'a>],
    key: &'static str,
) -> impl Iterator<Item = (&'a Diags<'a>, usize, &'a Value<'a>)> {
    roots.iter().flat_map(move |(idx, root)| {
        let d = &diags[*idx];
        root.array(key)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(move |(n, item)| (d, n, item))
    })
}

fn read_agent(d: &Diags<'_>, value: &Value<'_>) -> Option<AgentConfig> {
    let table = Table::new(d, value, "[agent]", &crate::keys::AGENT)?;
    let region = read_region(&table);
    let listen = read_listen(&table);
    let labels = read_labels(&table, "labels", RESERVED_LABELS, &BTreeMap::new());
    let concurrency = match table.int("concurrency") {
        Some((n, _)) if n >= 1 => n as usize,
        Some((n, span)) => {
            d.error(
                &span,
                format!("`concurrency` must be at least 1, found {n}"),
            );
            DEFAULT_CONCURRENCY
        }
        None => DEFAULT_CONCURRENCY,
    };
    let duration_buckets = read_duration_buckets(&table);
    let rdap_bootstrap = match table.str("rdap_bootstrap") {
        Some((text, span)) => crate::checks::domain::config::read_base_url(d, text, &span)
            .unwrap_or_else(default_bootstrap),
        None => default_bootstrap(),
    };
    let mut rdap_servers = BTreeMap::new();
    for entry in table.str_map("rdap_servers").unwrap_or_default() {
        if let Some(url) =
            crate::checks::domain::config::read_base_url(d, entry.value, &entry.value_span)
        {
            rdap_servers.insert(entry.key.trim_matches('.').to_ascii_lowercase(), url);
        }
    }
    let name = match table.str("name") {
        Some((name, _)) => name.to_string(),
        None => host_name(),
    };
    let watch_config = table.duration("watch_config").map(|(every, _)| every);
    let state_dir = read_state_dir(&table);
    let web = super::web::read_web(&table);
    let (blackbox_config, probe_timeout_offset) = super::module::read_agent_keys(&table);
    let metrics = read_metrics_mode(&table);
    let duration_buckets = duration_buckets.unwrap_or_else(|| default_buckets(metrics));
    table.finish();
    Some(AgentConfig {
        region,
        name,
        listen,
        labels,
        concurrency,
        duration_buckets,
        rdap_bootstrap,
        rdap_servers,
        watch_config,
        state_dir,
        web,
        blackbox_config,
        probe_timeout_offset,
        metrics,
    })
}

/// `state_dir`: where the agent keeps what survives a restart. A path that exists must be a
/// directory; a missing one is created at start.
fn read_state_dir(table: &Table<'_>) -> Option<std::path::PathBuf> {
    let (text, span) = table.str("state_dir")?;
    if text.is_empty() {
        table.diags().error_hint(
            &span,
            "state_dir is empty",
            "give a directory the agent may write, like state_dir = \"/var/lib/nightjar\", or leave it out",
        );
        return None;
    }
    Some(std::path::PathBuf::from(text))
}

/// `region` of `[agent]`: "default" unless given (or invalid, reported).
fn read_region(table: &Table<'_>) -> String {
    let d = table.diags();
    match table.str("region") {
        Some((region, span)) if !valid_region(region) => {
            d.error_hint(
                &span,
                format!("region {region:?} is not a valid region name"),
                "use letters, digits, `-`, `_` and `.`, like \"eu-west-1\"",
            );
            "default".to_string()
        }
        Some((region, _)) => region.to_string(),
        None => "default".to_string(),
    }
}

/// `listen`: the address the agent's server listens on.
fn read_listen(table: &Table<'_>) -> SocketAddr {
    let d = table.diags();
    match table.str("listen") {
        Some((text, span)) => match SocketAddr::from_str(text) {
            Ok(addr) => addr,
            Err(_) => {
                d.error_hint(
                    &span,
                    format!("listen address {text:?} is not IP:PORT"),
                    "write it like \"127.0.0.1:9465\" or \"[::1]:9465\"",
                );
                DEFAULT_LISTEN
                    .parse()
                    .expect("the default listen address parses")
            }
        },
        None => DEFAULT_LISTEN
            .parse()
            .expect("the default listen address parses"),
    }
}

/// `duration_buckets`: strictly increasing bucket edges in seconds; `None` unless given (the
/// metrics mode's defaults apply).
fn read_duration_buckets(table: &Table<'_>) -> Option<Vec<f64>> {
    let d = table.diags();
    match table.str_list("duration_buckets") {
        Some(items) => {
            let mut buckets = Vec::new();
            for (text, span) in items {
                match super::parse_duration(text) {
                    Some(bucket) => buckets.push(bucket.as_secs_f64()),
                    None => d.error_hint(
                        &span,
                        format!("bucket {text:?} is not a positive duration"),
                        "write bucket edges as durations, like [\"100ms\", \"250ms\", \"1s\"]",
                    ),
                }
            }
            if buckets.windows(2).any(|pair| pair[0] >= pair[1]) {
                let span = table
                    .key_span("duration_buckets")
                    .unwrap_or_else(|| table.span());
                d.error(&span, "`duration_buckets` must be strictly increasing");
            }
            (!buckets.is_empty()).then_some(buckets)
        }
        None => None,
    }
}

/// The default `duration_buckets` of a metrics mode.
fn default_buckets(metrics: MetricsMode) -> Vec<f64> {
    match metrics {
        MetricsMode::Lean => LEAN_DURATION_BUCKETS.to_vec(),
        MetricsMode::Full => DEFAULT_DURATION_BUCKETS.to_vec(),
    }
}

/// `metrics`: `"lean"` (the default) or `"full"`.
fn read_metrics_mode(table: &Table<'_>) -> MetricsMode {
    let Some((text, span)) = table.str("metrics") else {
        return MetricsMode::Lean;
    };
    match text {
        "lean" => MetricsMode::Lean,
        "full" => MetricsMode::Full,
        other => {
            table.diags().error_hint(
                &span,
                format!("unknown metrics set {other:?}"),
                "use \"lean\" (the SLI counters, one histogram, the state and the blackbox gauges) or \"full\" (every series, created at 0)",
            );
            MetricsMode::Lean
        }
    }
}

/// The `name` string of a table, read without reporting anything (the table's reader does).
fn raw_name(item: &Value<'_>) -> Option<String> {
    let toml::de::DeValue::Table(table) = item.get_ref() else {
        return None;
    };
    table
        .iter()
        .find(|(key, _)| key.get_ref().as_ref() == "name")
        .and_then(|(_, value)| match value.get_ref() {
            toml::de::DeValue::String(name) => Some(name.to_string()),
            _ => None,
        })
}

/// Where each key of the `labels` of the `[agent]` table `agent` is written.
fn label_places(d: &Diags<'_>, agent: &Value<'_>) -> BTreeMap<String, String> {
    let toml::de::DeValue::Table(table) = agent.get_ref() else {
        return BTreeMap::new();
    };
    let labels = table
        .iter()
        .find(|(key, _)| key.get_ref().as_ref() == "labels");
    let Some(toml::de::DeValue::Table(labels)) = labels.map(|(_, value)| value.get_ref()) else {
        return BTreeMap::new();
    };
    labels
        .iter()
        .map(|(key, _)| (key.get_ref().to_string(), d.location(&key.span())))
        .collect()
}

/// The host name, for the `agent` label of pushed series.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "nightjar".to_string())
}

fn default_bootstrap() -> url::Url {
    url::Url::parse(crate::checks::domain::IANA_BOOTSTRAP).expect("the IANA bootstrap URL parses")
}

fn read_defaults(d: &Diags<'_>, value: &Value<'_>) -> Option<Defaults> {
    let table = Table::new(d, value, "[defaults]", &crate::keys::DEFAULTS)?;
    let interval = table
        .duration("interval")
        .map_or(DEFAULT_INTERVAL, |(i, _)| i);
    let timeout = table.duration("timeout").map(|(t, _)| t);
    if let Some(timeout) = timeout
        && timeout > interval
    {
        let span = table.key_span("timeout").unwrap_or_else(|| table.span());
        d.error_hint(
            &span,
            format!(
                "default timeout {} is longer than the default interval {}",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
            "a run must end before the next one is due; lower the timeout or raise the interval",
        );
    }
    let run_on_load = table.bool("run_on_load").unwrap_or(true);
    let detection = read_detection(&table, Detection::default());
    let source_ip = read_source_ip(&table, None);
    table.finish();
    Some(Defaults {
        interval,
        timeout,
        run_on_load,
        detection,
        source_ip,
    })
}

fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn read_check(
    table: Table<'_>,
    defaults: &Defaults,
    agent: &AgentConfig,
    agent_labels_at: &BTreeMap<String, String>,
    seen: &mut HashMap<String, String>,
) -> Option<CheckDef> {
    let d = table.diags();
    let errors_before = d.error_count();
    let name = read_check_name(&table, seen);
    let what = match &name {
        Some(name) => format!("check {name:?}"),
        None => table.what().to_string(),
    };
    let table = table.renamed(what);

    let kind = read_kind(&table);
    let schedule = read_schedule(&table, kind, defaults);
    let timeout = read_timeout(&table, schedule.as_ref(), defaults);
    let labels = read_labels(&table, "labels", RESERVED_LABELS, agent_labels_at);
    let regions = read_regions(&table);

    let mut secrets = Vec::new();
    let built = kind.and_then(|kind| {
        read_spec(
            kind,
            &table,
            &mut crate::reader::SpecCx {
                secrets: &mut secrets,
                rdap_bootstrap: &agent.rdap_bootstrap,
                rdap_servers: &agent.rdap_servers,
                timeout,
            },
        )
    });
    let run_on_load = table.bool("run_on_load").unwrap_or(defaults.run_on_load);
    let detection = read_detection(&table, defaults.detection);
    check_retry_interval(&table, detection, schedule.as_ref());
    let source_ip = read_source_ip(&table, defaults.source_ip);
    let defined_at = d.location(&table.span());
    let written = table.written();
    table.finish();

    if d.error_count() > errors_before {
        return None;
    }
    let (spec, target) = built?;
    // A secret in the URL's path must not reach the `target` label or the status page.
    let target = super::redact(&secrets, &target);
    let schedule = schedule?;
    let inherited = format!("{schedule} {timeout:?} {run_on_load} {detection:?} {source_ip:?}");
    let revision = super::revision(&written, &inherited, &secrets);
    Some(CheckDef {
        name: Arc::from(name?.as_str()),
        schedule,
        timeout,
        labels: Arc::new(labels),
        regions,
        spec,
        target,
        secrets,
        defined_at,
        run_on_load,
        retry_interval: detection.retry_interval,
        confirm: detection.confirm,
        source_ip,
        revision,
        instance: None,
    })
}

/// A `retry_interval` at least as long as the check's interval would never come first.
fn check_retry_interval(table: &Table<'_>, detection: Detection, schedule: Option<&Schedule>) {
    let (Some(retry), Some(gap)) = (detection.retry_interval, schedule.and_then(shortest_gap))
    else {
        return;
    };
    if retry >= gap {
        let span = table
            .key_span("retry_interval")
            .unwrap_or_else(|| table.span());
        table.diags().error_hint(
            &span,
            format!(
                "retry_interval {} is not shorter than the interval {} of {}",
                humantime::format_duration(retry),
                humantime::format_duration(gap),
                table.what()
            ),
            "a retry comes before the next regular run; lower retry_interval or leave it out",
        );
    }
}

/// `name`: valid, and unique among the checks read so far (`seen`: where each is defined).
fn read_check_name(table: &Table<'_>, seen: &mut HashMap<String, String>) -> Option<String> {
    let d = table.diags();
    match table.str("name") {
        Some((name, span)) => {
            if !valid_check_name(name) {
                d.error_hint(
                    &span,
                    format!("check name {name:?} is not valid"),
                    format!(
                        "use lowercase letters, digits, `-` and `_` only, like {:?}",
                        suggest_name(name)
                    ),
                );
            } else if let Some(first) = seen.get(name) {
                d.error_hint(
                    &span,
                    format!("duplicate check name {name:?}"),
                    format!("it is already defined at {first}; check names must be unique"),
                );
            } else {
                seen.insert(name.to_string(), d.location(&span));
            }
            Some(name.to_string())
        }
        None => {
            table.missing(
                "name",
                "give every check a unique name, like name = \"shop-home\"",
            );
            None
        }
    }
}

/// `interval` or `cron`: the defaults' interval (twice a day for domain checks) unless given.
fn read_schedule(
    table: &Table<'_>,
    kind: Option<CheckKind>,
    defaults: &Defaults,
) -> Option<Schedule> {
    let d = table.diags();
    let interval = table.duration("interval");
    let cron = table.str("cron");
    match (interval, cron) {
        (Some(_), Some((_, span))) => {
            d.error_hint(
                &span,
                format!("{} sets both `interval` and `cron`", table.what()),
                "keep one of them",
            );
            None
        }
        (Some((every, _)), None) => Some(Schedule::Interval(every)),
        (None, Some((expr, span))) => parse_cron(expr).map_or_else(
            |error| {
                d.error_hint(
                    &span,
                    format!("invalid cron expression {expr:?}: {error}"),
                    "use 5 fields (minute hour day-of-month month day-of-week, like \"*/5 * * * *\") or 6 with seconds first; times are UTC",
                );
                None
            },
            |schedule| Some(Schedule::Cron(Box::new(schedule))),
        ),
        // RDAP servers rate-limit and registrations change slowly: domain checks default to
        // twice a day.
        (None, None) if kind == Some(CheckKind::Domain) => {
            Some(Schedule::Interval(DOMAIN_INTERVAL))
        }
        (None, None) => Some(Schedule::Interval(defaults.interval)),
    }
}

/// `timeout`: never longer than the shortest gap of `schedule` (`None` when it was invalid);
/// an implicit one is cut down to it.
fn read_timeout(table: &Table<'_>, schedule: Option<&Schedule>, defaults: &Defaults) -> Duration {
    let d = table.diags();
    let explicit_timeout = table.duration("timeout");
    match (schedule, explicit_timeout) {
        (Some(schedule), Some((timeout, span))) => {
            if let Some(gap) = shortest_gap(schedule)
                && timeout > gap
            {
                d.error_hint(
                    &span,
                    format!(
                        "timeout {} is longer than the interval {} of {}",
                        humantime::format_duration(timeout),
                        humantime::format_duration(gap),
                        table.what()
                    ),
                    "a run must end before the next one is due; lower the timeout or raise the interval",
                );
            }
            timeout
        }
        (_, Some((timeout, _))) => timeout,
        (schedule, None) => {
            // An implicit timeout never exceeds the interval: a check every 5s with the
            // default 10s timeout gets 5s.
            let timeout = defaults.timeout.unwrap_or(DEFAULT_TIMEOUT);
            match schedule.and_then(shortest_gap) {
                Some(gap) => timeout.min(gap),
                None => timeout,
            }
        }
    }
}

/// `regions`: the valid region names listed.
fn read_regions(table: &Table<'_>) -> Vec<String> {
    let d = table.diags();
    table
        .str_list("regions")
        .map(|items| {
            let mut regions = Vec::new();
            for (region, span) in items {
                if valid_region(region) {
                    regions.push(region.to_string());
                } else {
                    d.error(
                        &span,
                        format!("region {region:?} is not a valid region name"),
                    );
                }
            }
            regions
        })
        .unwrap_or_default()
}

fn suggest_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        match c {
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            'a'..='z' | '0'..='9' | '-' | '_' => out.push(c),
            _ => {
                if !out.ends_with('-') {
                    out.push('-');
                }
            }
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "my-check".to_string()
    } else {
        out
    }
}

/// The interval, or for cron the shortest gap between the next few firings.
fn shortest_gap(schedule: &Schedule) -> Option<Duration> {
    match schedule {
        Schedule::Interval(every) => Some(*every),
        Schedule::Cron(cron) => {
            let upcoming: Vec<_> = cron.upcoming(chrono::Utc).take(8).collect();
            upcoming
                .windows(2)
                .filter_map(|pair| (pair[1] - pair[0]).to_std().ok())
                .min()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_check_name("shop-home_2"));
        assert!(!valid_check_name("Shop Home"));
        assert_eq!(suggest_name("Shop Home!"), "shop-home");
    }
}
