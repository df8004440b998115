//! Service discovery: where a template's targets come from when the configuration does not
//! list them, in Prometheus's own formats so the tooling that feeds Prometheus feeds nightjar.
//!
//! A check's `targets_from` lists [`Source`]s, read and validated at load by
//! `config::read_sources`:
//! - [`FileSource`]: file_sd files (JSON or YAML target groups), globs in the last path
//!   element, watched with inotify (edits, new and removed files, a ConfigMap's `..data`
//!   symlink swap), and re-read whole every `refresh`;
//! - [`HttpSource`]: Prometheus HTTP SD, through `checks::http::fetch` (auth, TLS, timeouts,
//!   capped body);
//! - [`DnsSource`]: SRV, A or AAAA records, as Prometheus's `dns_sd_configs` reads them.
//!
//! [`run`] keeps one template's sources running and publishes the union of their targets
//! whenever it changes; [`discover_once`] reads each once (`nightjar check`, tests). A
//! source that fails keeps its last good set: a discovery error never drops targets (a
//! vanished file, an NXDOMAIN and an empty answer are not errors: they are what is there).
//!
//! This module reads files at run time (file_sd), so it is one of the configuration's readers
//! (ARCHITECTURE.md). It never imports `config`, `metrics` (only the leaf `metrics::names`), `agent` or the
//! server: what a
//! refresh found is reported through [`DiscoveryEnv::report`], which the agent wires to its
//! metrics.

pub(crate) mod config;
mod dns;
mod file;
mod groups;
mod http;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::checks::domain::RdapState;
use crate::net::Resolver;

pub use config::sources_from_toml;
pub use groups::{parse_json, parse_yaml};

/// One entry of a check's `targets_from` list, read and validated at load.
#[derive(Debug, Clone)]
pub enum Source {
    /// `{ file = "sd/*.json" }` or `{ files = [...] }`: file_sd files.
    File(FileSource),
    /// `{ http = "https://..." }`: Prometheus HTTP SD.
    Http(HttpSource),
    /// `{ dns = "_https._tcp.example.com", type = "SRV" }`: DNS records.
    Dns(DnsSource),
}

impl Source {
    /// The source as shown in logs, errors and the `source` label: `file sd/*.json`,
    /// `http https://sd.example/targets` (no credentials, no query string),
    /// `dns SRV _https._tcp.example.com`.
    pub fn describe(&self) -> String {
        match self {
            Source::File(file) => format!("file {}", file.shown.join(",")),
            Source::Http(http) => format!("http {}", http.shown),
            Source::Dns(dns) => {
                let mut text = format!("dns {} {}", dns.record.as_str(), dns.name);
                if let Some(server) = &dns.server {
                    text.push_str(&format!(" @{server}"));
                }
                text
            }
        }
    }

    /// How often the source is read again (files: the full re-read behind the watch).
    pub fn refresh(&self) -> Duration {
        match self {
            Source::File(file) => file.refresh,
            Source::Http(http) => http.refresh,
            Source::Dns(dns) => dns.refresh,
        }
    }
}

/// file_sd: JSON (`.json`) or YAML (`.yml`, `.yaml`) files of target groups.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The patterns as resolved (relative ones from the directory of the configuration file
    /// naming them); `*` and `?` only in the last path element.
    pub patterns: Vec<PathBuf>,
    /// The patterns as written, for [`Source::describe`].
    pub shown: Vec<String>,
    /// How often every file is read again, changed or not (`refresh`, default 5m).
    pub refresh: Duration,
}

/// Prometheus HTTP SD: a JSON list of target groups from a URL.
#[derive(Debug, Clone)]
pub struct HttpSource {
    /// The request: URL, headers (auth included), TLS, timeouts and body cap.
    pub spec: Arc<crate::checks::HttpSpec>,
    /// The URL without credentials or query string.
    pub shown: String,
    /// How often it is fetched (`refresh`, default 1m).
    pub refresh: Duration,
    /// How long one fetch may take (`timeout`, default 10s).
    pub timeout: Duration,
    /// Secret values the request holds, redacted from every error.
    pub secrets: Arc<Vec<String>>,
}

/// DNS SD: SRV, A or AAAA records of one name.
#[derive(Debug, Clone)]
pub struct DnsSource {
    /// The name queried (the system resolver's search list applies to a relative one).
    pub name: String,
    /// The record type.
    pub record: RecordKind,
    /// The port of A and AAAA targets; SRV records carry their own.
    pub port: Option<u16>,
    /// The server asked (`server`; a name is resolved at each refresh); `None` for the
    /// system resolver.
    pub server: Option<crate::net::HostPort>,
    /// How often it is asked (`refresh`, default 30s).
    pub refresh: Duration,
    /// How long one query may take (`timeout`, default 10s).
    pub timeout: Duration,
}

/// The record types DNS SD asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `host:port` from each SRV record.
    Srv,
    /// `ip:port` from each A record.
    A,
    /// `[ip]:port` from each AAAA record.
    Aaaa,
}

impl RecordKind {
    /// The type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Srv => "SRV",
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
        }
    }
}

/// A discovered target: the text that fills the template's target, and its group's labels
/// (valid Prometheus label names, none of `metrics::names::RESERVED_LABELS`; `__`-prefixed
/// ones, Prometheus's meta labels, dropped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// What fills the template's target (a URL, `host:port`, a domain); shared by the copies
    /// of a set (a merge, a template's expansion), so 50,000 targets are held once.
    pub target: Arc<str>,
    /// The labels of its group, shared by the group's targets (50,000 targets of one group
    /// hold one map).
    pub labels: Arc<BTreeMap<String, String>>,
}

/// What one refresh of a source found, for [`DiscoveryEnv::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceResult<'a> {
    /// Read whole: it has `targets` targets now.
    Ok {
        /// Targets from the source now.
        targets: usize,
    },
    /// Failed (or, for files, one of them failed): `targets` kept from the last good reads.
    Failed {
        /// Targets from the source now (kept).
        targets: usize,
        /// Why, without secrets.
        error: &'a str,
    },
}

/// The reporting hook: called after every refresh with the template's check name, the
/// source and what the refresh found. The agent wires it to its metrics.
pub type Report = Arc<dyn Fn(&str, &Source, SourceResult<'_>) + Send + Sync>;

/// What the sources need to run.
#[derive(Clone)]
pub struct DiscoveryEnv {
    /// Name resolution for HTTP SD endpoints.
    pub resolver: Resolver,
    /// What `checks::http::fetch` shares with RDAP (its context holds one).
    pub rdap: Arc<RdapState>,
    /// The `User-Agent` of HTTP SD requests.
    pub user_agent: &'static str,
    /// Called after every refresh of every source.
    pub report: Report,
}

impl std::fmt::Debug for DiscoveryEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryEnv")
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

impl DiscoveryEnv {
    /// An environment that reports nowhere.
    pub fn new(resolver: Resolver, rdap: Arc<RdapState>, user_agent: &'static str) -> Self {
        DiscoveryEnv {
            resolver,
            rdap,
            user_agent,
            report: Arc::new(|_, _, _| {}),
        }
    }

    /// The same environment, reporting every refresh to `report`.
    pub fn with_report(self, report: Report) -> Self {
        DiscoveryEnv { report, ..self }
    }
}

/// What one source's read gave: its targets, and the error if any part failed (the targets
/// then include what was kept from the last good reads).
pub(crate) struct Read {
    pub targets: Arc<Vec<Target>>,
    pub error: Option<String>,
}

/// Reads every source once and returns the union of their targets, as [`run`] publishes it.
/// `Err` names the first source that failed and why.
pub async fn discover_once(sources: &[Source], env: &DiscoveryEnv) -> Result<Vec<Target>, String> {
    let mut sets = Vec::with_capacity(sources.len());
    for source in sources {
        let read = read_source(source, env, None).await;
        if let Some(error) = read.error {
            return Err(format!("{}: {error}", source.describe()));
        }
        sets.push(read.targets);
    }
    Ok(union(&sets))
}

/// One read of `source`; `kept` is what it had, for a failure to keep (a file keeps its own).
async fn read_source(source: &Source, env: &DiscoveryEnv, kept: Option<Arc<Vec<Target>>>) -> Read {
    match source {
        Source::File(file) => file::read_once(file).await,
        Source::Http(http) => http::read(http, env, kept).await,
        Source::Dns(dns) => dns::read(dns, env, kept).await,
    }
}

/// Reads a polled source (HTTP, DNS) every `refresh` until [`run`] is gone.
async fn poll(source: Source, env: DiscoveryEnv, mut updates: Updates) {
    let mut ticks = tokio::time::interval(source.refresh());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let read = read_source(&source, &env, Some(updates.current())).await;
        if !updates.publish(read).await {
            return;
        }
    }
}

/// Runs the sources of one template until `shutdown` turns true (or its sender goes):
/// publishes the union of their targets (sorted, deduplicated by `target`, the first
/// source's labels win) on `out` whenever it changes, the first time once every source has
/// been read once. Each source keeps its last good set: an error never drops it (it is
/// logged once per change of error, and reported through `env.report`).
pub async fn run(
    check: Arc<str>,
    sources: Vec<Source>,
    env: DiscoveryEnv,
    out: watch::Sender<Arc<[Target]>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<(usize, Arc<Vec<Target>>)>(sources.len().max(1) * 2);
    let mut tasks = tokio::task::JoinSet::new();
    for (idx, source) in sources.iter().enumerate() {
        let updates = Updates {
            idx,
            tx: tx.clone(),
            check: check.clone(),
            source: source.clone(),
            report: env.report.clone(),
            last_error: None,
            last: None,
        };
        match source.clone() {
            Source::File(file) => tasks.spawn(file::watch(file, updates)),
            polled => tasks.spawn(poll(polled, env.clone(), updates)),
        };
    }
    drop(tx);
    let mut sets: Vec<Option<Arc<Vec<Target>>>> = vec![None; sources.len()];
    let mut published = false;
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            update = rx.recv() => {
                let Some((idx, targets)) = update else { break };
                sets[idx] = Some(targets);
                // Coalesce what is already queued, so a burst publishes once.
                while let Ok((idx, targets)) = rx.try_recv() {
                    sets[idx] = Some(targets);
                }
                if !published && sets.iter().any(Option::is_none) {
                    continue;
                }
                published = true;
                let known: Vec<Arc<Vec<Target>>> = sets.iter().flatten().cloned().collect();
                let merged: Arc<[Target]> = tokio::task::spawn_blocking(move || union(&known).into())
                    .await
                    .unwrap_or_else(|_| Arc::from(Vec::new()));
                out.send_if_modified(|current| {
                    let changed = **current != *merged;
                    if changed {
                        *current = merged;
                    }
                    changed
                });
            }
        }
    }
    tasks.abort_all();
}

/// The union of `sets`, in their order: sorted by target, each target once, with the labels
/// of its first appearance. Sorts references and clones each kept target once.
fn union(sets: &[Arc<Vec<Target>>]) -> Vec<Target> {
    let mut all: Vec<&Target> = sets.iter().flat_map(|set| set.iter()).collect();
    // Stable: of equal targets, the first source's (and within it the first) stays first.
    all.sort_by(|a, b| a.target.cmp(&b.target));
    all.dedup_by(|later, first| later.target == first.target);
    all.into_iter().cloned().collect()
}

/// One source's way to the merge in [`run`]: hands on a new set when it changed, reports
/// every refresh, and logs an error once per change of error.
pub(crate) struct Updates {
    idx: usize,
    tx: mpsc::Sender<(usize, Arc<Vec<Target>>)>,
    check: Arc<str>,
    source: Source,
    report: Report,
    last_error: Option<String>,
    last: Option<Arc<Vec<Target>>>,
}

impl Updates {
    /// Records one refresh; false once [`run`] is gone.
    pub async fn publish(&mut self, read: Read) -> bool {
        let count = read.targets.len();
        match &read.error {
            Some(error) => {
                if self.last_error.as_deref() != Some(error.as_str()) {
                    warn!(
                        check = %self.check,
                        source = %self.source.describe(),
                        kept = count,
                        "Discovery failed; the last good targets are kept: {error}."
                    );
                }
                (self.report)(
                    &self.check,
                    &self.source,
                    SourceResult::Failed {
                        targets: count,
                        error,
                    },
                );
            }
            None => {
                if self.last_error.is_some() {
                    info!(
                        check = %self.check,
                        source = %self.source.describe(),
                        targets = count,
                        "Discovery recovered."
                    );
                }
                (self.report)(
                    &self.check,
                    &self.source,
                    SourceResult::Ok { targets: count },
                );
            }
        }
        self.last_error = read.error;
        if self.last.as_ref().is_some_and(|last| *last == read.targets) {
            return !self.tx.is_closed();
        }
        self.last = Some(read.targets.clone());
        self.tx.send((self.idx, read.targets)).await.is_ok()
    }

    /// The targets last handed on (the last good set), empty before the first read.
    pub fn current(&self) -> Arc<Vec<Target>> {
        self.last.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str, label: &str) -> Target {
        Target {
            target: text.into(),
            labels: Arc::new(BTreeMap::from([("from".to_string(), label.to_string())])),
        }
    }

    #[test]
    fn the_union_is_sorted_and_the_first_source_wins() {
        let first = Arc::new(vec![target("b", "first"), target("a", "first")]);
        let second = Arc::new(vec![target("c", "second"), target("a", "second")]);
        let merged = union(&[first, second]);
        let shown: Vec<(&str, &str)> = merged
            .iter()
            .map(|t| (&*t.target, t.labels["from"].as_str()))
            .collect();
        assert_eq!(shown, [("a", "first"), ("b", "first"), ("c", "second")]);
    }
}
