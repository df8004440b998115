//! Modules: what `/probe?module=NAME&target=TARGET` runs. A module is a check without a name and
//! a target, from a `[[module]]` table (`name`, `type` and the keys of a check of that type) or
//! from `[agent] blackbox_config` (blackbox_exporter's own file, read by `blackbox::parse`).
//!
//! Each module is validated at load time by its kind's own reader, with a placeholder target,
//! so every other problem is reported with its place. A `/probe` builds the module's check for
//! its target ([`ModuleDef::check`]) through the same reader, from the module's TOML text and
//! the environment values it was validated with: a `/probe` of a module and an imported check
//! of the same module and target run the same probe.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{AgentConfig, CheckDef, ConfigError, Env, Origin, Schedule};
use crate::checks::{CheckKind, CheckSpec};
use crate::reader::{Diags, Source, SpecCx, Table, Unresolved, Value, as_int};

/// blackbox_exporter's default `--timeout-offset`.
pub const DEFAULT_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// The timeout a module without its own is validated with: blackbox_exporter's when a scrape
/// sends no `X-Prometheus-Scrape-Timeout-Seconds` (a real `/probe` gets its own per request).
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// One module, validated.
#[derive(Debug, Clone)]
pub struct ModuleDef {
    /// The name `/probe?module=` asks for.
    pub name: String,
    /// The check kind it runs.
    pub kind: CheckKind,
    /// The module as the body of a check table in TOML text, without `name` and target.
    pub table: String,
    /// `file:line[:column]` where it is defined.
    pub defined_at: String,
    /// The module's own `timeout`; without one a `/probe` takes the scrape's.
    pub timeout: Option<Duration>,
    /// The file it is defined in (named in the problems of a `/probe`'s target).
    path: PathBuf,
    /// The values of the environment variables it referred to when it was validated.
    vars: BTreeMap<String, String>,
    /// A blackbox_exporter `unix` module: its target is a socket path (`unix:PATH`).
    unix: bool,
    /// The agent's RDAP settings (`domain` modules).
    rdap_bootstrap: url::Url,
    rdap_servers: BTreeMap<String, url::Url>,
}

impl ModuleDef {
    /// The module's check for `target` (as blackbox_exporter reads a target of that prober,
    /// [`crate::blackbox::target_entry`]), with the module's timeout or `fallback`. `Err` holds
    /// every problem the target makes (an unparseable URL, a `HOST` without a port), one a
    /// line, secrets redacted.
    pub fn check(&self, target: &str, fallback: Duration) -> Result<CheckDef, String> {
        let env = Recorded(self.vars.clone());
        match self.build(target, &env, fallback) {
            Ok(built) => Ok(built.into_def(self, fallback)),
            Err(errors) => Err(problems_text(&errors, &self.vars)),
        }
    }

    /// The module as TOML for `/probe?debug=true`: `name` and its table, with the values of
    /// keys that hold credentials (passwords, tokens, secrets, authorization and cookie
    /// headers) shown as `<secret>` as blackbox_exporter does, and `secrets` redacted.
    pub fn shown(&self, secrets: &[String]) -> String {
        fn hide(value: &mut toml::Value) {
            match value {
                toml::Value::Table(table) => {
                    for (key, value) in table.iter_mut() {
                        let key = key.to_ascii_lowercase();
                        let secret = ["password", "token", "secret", "authorization", "cookie"]
                            .iter()
                            .any(|word| key.contains(word));
                        if secret && let toml::Value::String(text) = value {
                            *text = "<secret>".to_string();
                        } else {
                            hide(value);
                        }
                    }
                }
                toml::Value::Array(items) => items.iter_mut().for_each(hide),
                _ => {}
            }
        }
        let mut table: toml::Table = self.table.parse().unwrap_or_default();
        for (_, value) in table.iter_mut() {
            hide(value);
        }
        let mut shown = toml::Table::new();
        shown.insert("name".to_string(), toml::Value::String(self.name.clone()));
        shown.extend(table);
        let mut secrets = secrets.to_vec();
        secrets.extend(self.vars.values().cloned());
        super::redact(&secrets, &toml::to_string(&shown).unwrap_or_default())
    }

    /// A module written as TOML text elsewhere (blackbox_exporter's file, through
    /// `blackbox::parse`), validated with a placeholder target under `env`. `Err`: the
    /// problems, each a message (their place is the module's).
    pub(super) fn from_blackbox(
        module: &crate::blackbox::Module,
        env: &dyn Env,
        agent: &AgentConfig,
    ) -> Result<ModuleDef, Vec<String>> {
        let (name, kind, table) = (&module.name, module.kind, &module.table);
        // The secrets written inline in the file first, then the environment.
        let env = Overlay {
            first: &module.secrets,
            then: env,
        };
        let env: &dyn Env = &env;
        let mut module = ModuleDef {
            name: name.to_string(),
            kind,
            table: table.to_string(),
            defined_at: format!("{}:{}", module.origin.path.display(), module.origin.line),
            timeout: None,
            path: module.origin.path.clone(),
            unix: module.prober == "unix",
            vars: BTreeMap::new(),
            rdap_bootstrap: agent.rdap_bootstrap.clone(),
            rdap_servers: agent.rdap_servers.clone(),
        };
        let recording = Recording {
            inner: env,
            seen: RefCell::new(BTreeMap::new()),
        };
        let placeholder = if module.unix {
            "/nonexistent.sock"
        } else {
            placeholder(kind, table)
        };
        let built = module.build(placeholder, &recording, VALIDATION_TIMEOUT);
        match built {
            Ok(built) => {
                module.timeout = built.timeout;
                module.vars = recording.seen.into_inner();
                Ok(module)
            }
            Err(errors) => Err(errors
                .into_iter()
                .map(|error| match error.hint {
                    Some(hint) => format!("{} (hint: {hint})", error.message),
                    None => error.message,
                })
                .collect()),
        }
    }

    /// Reads the module's text with `target` filled in, under `env`.
    fn build(
        &self,
        target: &str,
        env: &dyn Env,
        fallback: Duration,
    ) -> Result<Built, Vec<ConfigError>> {
        let (key, value) = match crate::blackbox::target_entry(self.kind, target) {
            (key, target) if self.unix && !target.starts_with("unix:") => {
                (key, format!("unix:{target}"))
            }
            entry => entry,
        };
        // A target is data: a `${...}` in it is text, never a reference to read.
        let value = value.replace("${", "$${");
        let text = format!(
            "name = {}\n{key} = {}\n{}",
            toml::Value::String(self.name.clone()),
            toml::Value::String(value),
            self.table
        );
        let doc = DeTable::parse(&text).map_err(|error| {
            vec![ConfigError {
                path: self.path.clone(),
                line: None,
                column: None,
                message: error.message().trim().to_string(),
                hint: None,
            }]
        })?;
        let source = Source::new(self.path.clone(), text.clone());
        let unresolved = Unresolved::default();
        let d = Diags::new(&source, env, &unresolved);
        let table = Table::from_root(&d, doc.get_ref(), doc.span(), &crate::keys::MODULE)
            .renamed(format!("module {:?}", self.name));
        let _ = table.str("name");
        let kind = super::spec::read_kind(&table);
        let read = read_spec_of(
            &table,
            kind,
            fallback,
            &self.rdap_bootstrap,
            &self.rdap_servers,
        );
        table.finish();
        let mut errors = d.into_errors();
        unresolved.amend(&mut errors);
        match read {
            Some(built) if errors.is_empty() => Ok(built),
            _ => Err(errors),
        }
    }
}

/// Problems of a check built from text (a module's for a `/probe` target, a template's for
/// a discovered one), one a line with its hint, with the values of `vars` redacted.
pub(super) fn problems_text(errors: &[ConfigError], vars: &BTreeMap<String, String>) -> String {
    let secrets: Vec<String> = vars.values().cloned().collect();
    errors
        .iter()
        .map(|error| {
            let mut line = error.message.clone();
            if let Some(hint) = &error.hint {
                line.push_str(&format!(" (hint: {hint})"));
            }
            super::redact(&secrets, &line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a module's table builds.
struct Built {
    spec: CheckSpec,
    target: String,
    timeout: Option<Duration>,
    source_ip: Option<std::net::IpAddr>,
    secrets: Vec<String>,
}

impl Built {
    fn into_def(self, module: &ModuleDef, fallback: Duration) -> CheckDef {
        let target = super::redact(&self.secrets, &self.target);
        CheckDef {
            name: Arc::from(module.name.as_str()),
            schedule: Schedule::Interval(Duration::from_secs(60)),
            timeout: self.timeout.unwrap_or(fallback),
            labels: Arc::default(),
            regions: Vec::new(),
            spec: self.spec,
            target,
            secrets: self.secrets,
            defined_at: module.defined_at.clone(),
            run_on_load: false,
            retry_interval: None,
            confirm: crate::detect::Confirm::default(),
            source_ip: self.source_ip,
            revision: 0,
            instance: None,
        }
    }
}

fn read_spec_of(
    table: &Table<'_>,
    kind: Option<CheckKind>,
    fallback: Duration,
    rdap_bootstrap: &url::Url,
    rdap_servers: &BTreeMap<String, url::Url>,
) -> Option<Built> {
    let timeout = table.duration("timeout").map(|(timeout, _)| timeout);
    let mut secrets = Vec::new();
    let built = kind.and_then(|kind| {
        super::spec::read_spec(
            kind,
            table,
            &mut SpecCx {
                secrets: &mut secrets,
                rdap_bootstrap,
                rdap_servers,
                timeout: timeout.unwrap_or(fallback),
            },
        )
    });
    let source_ip = super::spec::read_source_ip(table, None);
    let (spec, target) = built?;
    Some(Built {
        spec,
        target,
        timeout,
        source_ip,
        secrets,
    })
}

/// An environment that remembers every variable it was asked for (for a module: a `/probe`
/// later builds its check with the same values), or answers only from what it holds.
pub(super) struct Recording<'e> {
    inner: &'e dyn Env,
    seen: RefCell<BTreeMap<String, String>>,
}

impl<'e> Recording<'e> {
    /// Records what `inner` answers.
    pub(super) fn new(inner: &'e dyn Env) -> Recording<'e> {
        Recording {
            inner,
            seen: RefCell::new(BTreeMap::new()),
        }
    }

    /// The variables asked for, with their values.
    pub(super) fn into_seen(self) -> BTreeMap<String, String> {
        self.seen.into_inner()
    }
}

impl Env for Recording<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let value = self.inner.var(name)?;
        self.seen
            .borrow_mut()
            .insert(name.to_string(), value.clone());
        Some(value)
    }

    fn placeholders(&self) -> bool {
        self.inner.placeholders()
    }
}

/// A blackbox module's inline secrets, then the environment.
struct Overlay<'e> {
    first: &'e BTreeMap<String, String>,
    then: &'e dyn Env,
}

impl Env for Overlay<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.first
            .get(name)
            .cloned()
            .or_else(|| self.then.var(name))
    }

    fn placeholders(&self) -> bool {
        self.then.placeholders()
    }
}

/// The variables a module was validated with.
pub(super) struct Recorded(pub(super) BTreeMap<String, String>);

impl Env for Recorded {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// `blackbox_config` and `probe_timeout_offset` of `[agent]`.
pub(super) fn read_agent_keys(table: &Table<'_>) -> (Option<PathBuf>, Duration) {
    let d = table.diags();
    let blackbox = table.str("blackbox_config").and_then(|(text, span)| {
        if text.trim().is_empty() {
            d.error_hint(
                &span,
                "blackbox_config is empty",
                "name blackbox_exporter's file, like blackbox_config = \"blackbox.yml\", or leave it out",
            );
            return None;
        }
        let base = d.src.path.parent().unwrap_or(std::path::Path::new(""));
        Some(base.join(text))
    });
    let offset = match table.str("probe_timeout_offset") {
        Some((text, span)) => match super::parse_duration(text) {
            Some(offset) => offset,
            None => {
                d.error_hint(
                    &span,
                    format!("probe_timeout_offset {text:?} is not a duration"),
                    "write it like \"500ms\" (blackbox_exporter's --timeout-offset) or \"0s\"",
                );
                DEFAULT_TIMEOUT_OFFSET
            }
        },
        None => DEFAULT_TIMEOUT_OFFSET,
    };
    (blackbox, offset)
}

/// Every module: the `[[module]]` tables of every file, then the modules of `[agent]
/// blackbox_config` (whose file joins `origin`, so `watch_config` sees it change). Names are
/// unique across both.
pub(super) fn read_modules<'a>(
    roots: &'a [(usize, Table<'a>)],
    diags: &'a [Diags<'a>],
    env: &dyn Env,
    unresolved: &Unresolved,
    agent: &AgentConfig,
    origin: &mut Origin,
) -> (Vec<Arc<ModuleDef>>, Vec<ConfigError>) {
    let mut modules: Vec<Arc<ModuleDef>> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (idx, root) in roots {
        let d = &diags[*idx];
        for (n, item) in root
            .array("module")
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let read = read_module(d.src, item, n, env, unresolved, agent, &mut errors);
            if let Some(module) = read {
                keep_unique(module, &mut seen, &mut modules, &mut errors);
            }
        }
    }
    if let Some(path) = &agent.blackbox_config {
        for module in read_blackbox_file(path, env, agent, &mut errors) {
            keep_unique(module, &mut seen, &mut modules, &mut errors);
        }
        if let Origin::Files(files) = origin {
            files.push(path.clone());
        }
    }
    (modules, errors)
}

/// Adds `module` unless its name is taken (then a problem naming both places).
fn keep_unique(
    module: ModuleDef,
    seen: &mut HashMap<String, String>,
    modules: &mut Vec<Arc<ModuleDef>>,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(first) = seen.get(&module.name) {
        errors.push(place_error(
            &module.defined_at,
            format!(
                "duplicate module name {:?}: it is already defined at {first}",
                module.name
            ),
            "module names are unique across [[module]] tables and blackbox_config; rename one",
        ));
        return;
    }
    seen.insert(module.name.clone(), module.defined_at.clone());
    modules.push(Arc::new(module));
}

/// A problem at `place` (`file:line[:column]`).
pub(super) fn place_error(place: &str, message: String, hint: &str) -> ConfigError {
    let mut parts = place.rsplitn(3, ':');
    let (a, b, rest) = (parts.next(), parts.next(), parts.next());
    let numbers = |text: Option<&str>| text.and_then(|text| text.parse::<usize>().ok());
    let (path, line, column) = match (rest, numbers(b), numbers(a)) {
        (Some(path), Some(line), Some(column)) => (path.to_string(), Some(line), Some(column)),
        _ => match (numbers(a), b) {
            (Some(line), Some(_)) => (
                place
                    .rsplit_once(':')
                    .map_or(place, |(path, _)| path)
                    .to_string(),
                Some(line),
                Some(1),
            ),
            _ => (place.to_string(), None, None),
        },
    };
    ConfigError {
        path: PathBuf::from(path),
        line,
        column,
        message,
        hint: Some(hint.to_string()),
    }
}

/// One `[[module]]` table, validated with a placeholder target.
fn read_module(
    src: &Source,
    item: &Value<'_>,
    n: usize,
    env: &dyn Env,
    unresolved: &Unresolved,
    agent: &AgentConfig,
    errors: &mut Vec<ConfigError>,
) -> Option<ModuleDef> {
    let recording = Recording {
        inner: env,
        seen: RefCell::new(BTreeMap::new()),
    };
    let d = Diags::new(src, &recording, unresolved);
    let read = read_module_in(&d, item, n, agent);
    errors.extend(d.into_errors());
    let (name, kind, table, defined_at, timeout) = read?;
    Some(ModuleDef {
        name,
        kind,
        table,
        defined_at,
        timeout,
        path: src.path.clone(),
        unix: false,
        vars: recording.seen.into_inner(),
        rdap_bootstrap: agent.rdap_bootstrap.clone(),
        rdap_servers: agent.rdap_servers.clone(),
    })
}

type ReadModule = (String, CheckKind, String, String, Option<Duration>);

fn read_module_in(
    d: &Diags<'_>,
    item: &Value<'_>,
    n: usize,
    agent: &AgentConfig,
) -> Option<ReadModule> {
    let DeValue::Table(written) = item.get_ref() else {
        d.error(&item.span(), format!("module #{} must be a table", n + 1));
        return None;
    };
    let span = item.span();
    let kind = raw_kind(written);
    let placed = kind.map(|kind| with_placeholder(d, written, kind, &span));
    let value = Spanned::new(
        span.clone(),
        DeValue::Table(placed.clone().flatten().unwrap_or_else(|| written.clone())),
    );
    let table = Table::new(
        d,
        &value,
        format!("module #{}", n + 1),
        &crate::keys::MODULE,
    )?;
    let errors_before = d.error_count();
    let name = match table.str("name") {
        Some((name, span)) if name.trim().is_empty() || name.chars().any(char::is_control) => {
            d.error_hint(
                &span,
                format!("module name {name:?} is not valid"),
                "give the name /probe?module= asks for, like name = \"http_2xx\"",
            );
            None
        }
        Some((name, _)) => Some(name.to_string()),
        None => {
            table.missing(
                "name",
                "give the module the name /probe?module= asks for, like name = \"http_2xx\"",
            );
            None
        }
    };
    let table = match &name {
        Some(name) => table.renamed(format!("module {name:?}")),
        None => table,
    };
    let kind = super::spec::read_kind(&table);
    let built = read_spec_of(
        &table,
        kind,
        VALIDATION_TIMEOUT,
        &agent.rdap_bootstrap,
        &agent.rdap_servers,
    );
    let defined_at = d.location(&span);
    table.finish();
    if d.error_count() > errors_before || placed.is_some_and(|placed| placed.is_none()) {
        return None;
    }
    let built = built?;
    let mut body = toml::Table::new();
    for (key, value) in written.iter() {
        if key.get_ref().as_ref() != "name" {
            body.insert(key.get_ref().to_string(), owned(value.get_ref()));
        }
    }
    let text = toml::to_string(&body).ok()?;
    Some((name?, kind?, text, defined_at, built.timeout))
}

/// The `type` of a table, read without reporting anything (the reader does).
pub(super) fn raw_kind(table: &DeTable<'_>) -> Option<CheckKind> {
    table.iter().find_map(|(key, value)| match value.get_ref() {
        DeValue::String(text) if key.get_ref().as_ref() == "type" => text.parse().ok(),
        _ => None,
    })
}

/// `table` with a placeholder for the target key of `kind`, so its reader reports every other
/// problem; `None` (a problem reported) when the table writes the target itself.
fn with_placeholder<'a>(
    d: &Diags<'_>,
    table: &DeTable<'a>,
    kind: CheckKind,
    span: &Range<usize>,
) -> Option<DeTable<'a>> {
    let https = table.iter().any(|(key, value)| {
        key.get_ref().as_ref() == "transport"
            && matches!(value.get_ref(), DeValue::String(text) if text.as_ref() == "https")
    });
    let placeholder = placeholder_of(kind, https);
    let (key, _) = crate::blackbox::target_entry(kind, placeholder);
    if let Some((written, _)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == key) {
        d.error_hint(
            &written.span(),
            format!("a module has no `{key}`: the target comes with each /probe"),
            format!("remove `{key}`; Prometheus passes it as /probe?module=...&target=..."),
        );
        return None;
    }
    let mut placed = table.clone();
    placed.insert(
        Spanned::new(span.start..span.start, Cow::Borrowed(key)),
        Spanned::new(
            span.start..span.start,
            DeValue::String(Cow::Owned(placeholder.to_string())),
        ),
    );
    Some(placed)
}

/// A value of the spanned tree as an owned TOML value.
pub(super) fn owned(value: &DeValue<'_>) -> toml::Value {
    match value {
        DeValue::String(text) => toml::Value::String(text.to_string()),
        DeValue::Integer(_) => toml::Value::Integer(as_int(value).unwrap_or_default()),
        DeValue::Float(number) => {
            toml::Value::Float(number.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
        }
        DeValue::Boolean(flag) => toml::Value::Boolean(*flag),
        DeValue::Datetime(at) => toml::Value::Datetime(*at),
        DeValue::Array(items) => {
            toml::Value::Array(items.iter().map(|item| owned(item.get_ref())).collect())
        }
        DeValue::Table(table) => toml::Value::Table(
            table
                .iter()
                .map(|(key, value)| (key.get_ref().to_string(), owned(value.get_ref())))
                .collect(),
        ),
    }
}

/// A target that stands for any in validation: one each kind's reader accepts.
pub(super) fn placeholder_of(kind: CheckKind, https: bool) -> &'static str {
    match kind {
        CheckKind::Http | CheckKind::Flow => "http://probe.invalid/",
        CheckKind::Websocket => "ws://probe.invalid/",
        CheckKind::Dns if https => "https://probe.invalid/dns-query",
        CheckKind::Dns | CheckKind::Icmp | CheckKind::Domain => "probe.invalid",
        CheckKind::Tls | CheckKind::Tcp | CheckKind::Grpc | CheckKind::Udp => "probe.invalid:1",
    }
}

/// [`placeholder_of`] for a module written as text (DNS over HTTPS takes a URL).
fn placeholder(kind: CheckKind, table: &str) -> &'static str {
    let https = DeTable::parse(table).is_ok_and(|doc| {
        doc.get_ref().iter().any(|(key, value)| {
            key.get_ref().as_ref() == "transport"
                && matches!(value.get_ref(), DeValue::String(text) if text.as_ref() == "https")
        })
    });
    placeholder_of(kind, https)
}

// `[agent] blackbox_config`: blackbox_exporter's own file, read by `blackbox::parse`, each
// module validated as a `[[module]]` table is. Strict: an option nightjar cannot carry over is
// a problem naming its place, the option and the reason (a module that silently dropped it
// would give other verdicts than blackbox_exporter).

/// The modules of the blackbox_exporter configuration at `path`; problems go to `errors`.
fn read_blackbox_file(
    path: &Path,
    env: &dyn Env,
    agent: &AgentConfig,
    errors: &mut Vec<ConfigError>,
) -> Vec<ModuleDef> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            errors.push(ConfigError {
                path: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot read blackbox_config: {error}"),
                hint: Some("blackbox_config is relative to the file that names it".to_string()),
            });
            return Vec::new();
        }
    };
    let parsed = match crate::blackbox::parse(path, &text) {
        Ok(parsed) => parsed,
        Err(error) => {
            errors.push(error);
            return Vec::new();
        }
    };
    for unsupported in &parsed.unsupported {
        errors.push(ConfigError {
            path: unsupported.origin.path.clone(),
            line: Some(unsupported.origin.line),
            column: Some(1),
            message: format!(
                "module {:?}: option `{}` is not supported: {}",
                unsupported.module, unsupported.option, unsupported.reason
            ),
            hint: Some(
                "a module that dropped it would give other verdicts than blackbox_exporter; remove the option, or run nightjar import blackbox --allow-partial to see the rest".to_string(),
            ),
        });
    }
    let mut modules = Vec::new();
    for module in parsed.modules {
        let place = format!("{}:{}", module.origin.path.display(), module.origin.line);
        match ModuleDef::from_blackbox(&module, env, agent) {
            Ok(def) => modules.push(def),
            Err(problems) => errors.extend(problems.into_iter().map(|problem| {
                place_error(
                    &place,
                    format!("module {:?}: {problem}", module.name),
                    "the module's options as nightjar reads them; see the README's blackbox table",
                )
            })),
        }
    }
    modules
}
