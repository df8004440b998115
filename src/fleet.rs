//! Templates' discovered targets while the agent runs: one task per template with
//! `targets_from` follows its discovery sources, expands each new set of targets into checks
//! off the async workers (a target seen before keeps its check, so its slot, state and
//! counters), and hands the template's checks to the agent, which applies them like a reload
//! that touches only that template's new and gone targets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::config::template::{Expansion, Template, instance_of};
use crate::config::{CheckDef, Config};
use crate::discovery::{DiscoveryEnv, Source, Target};
use crate::metrics::Metrics;

/// A template's checks from its discovered targets now.
#[derive(Debug)]
pub struct Discovered {
    /// The template's name.
    pub template: Arc<str>,
    /// Its revision when these were made (a reload may have replaced it since).
    pub revision: u64,
    /// The checks, those of this agent's shard only, without the targets the template lists
    /// itself (those are in the configuration's checks).
    pub checks: Vec<Arc<CheckDef>>,
}

/// The templates being followed.
pub struct Fleet {
    following: HashMap<Arc<str>, Following>,
    env: DiscoveryEnv,
    sender: mpsc::Sender<Discovered>,
    metrics: Arc<Metrics>,
    /// Each template's discovered checks as the agent runs them.
    discovered: HashMap<Arc<str>, Arc<Vec<Arc<CheckDef>>>>,
    /// Each template's targets as last discovered, to build a changed template's checks from
    /// at once.
    last: Last,
}

type Last = Arc<std::sync::Mutex<HashMap<Arc<str>, Arc<[Target]>>>>;

/// One template's task.
struct Following {
    revision: u64,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Fleet {
    /// No template followed yet; each template's checks will come on `sender`, and every
    /// refresh of a source is reported to `metrics`.
    pub fn new(
        env: DiscoveryEnv,
        sender: mpsc::Sender<Discovered>,
        metrics: Arc<Metrics>,
    ) -> Fleet {
        let env = env.with_report(crate::metrics::discovery::report_to(metrics.clone()));
        Fleet {
            following: HashMap::new(),
            env,
            sender,
            metrics,
            discovered: HashMap::new(),
            last: Last::default(),
        }
    }

    /// Adds to `next`, a reloaded configuration, the discovered checks it keeps: an unchanged
    /// template's as they run; a changed template's built anew from its last targets (off
    /// the async workers), so its targets stay while discovery runs again and keep their
    /// states (and their counters where their series stay the same); none of a removed
    /// template's.
    pub async fn carry_over(&mut self, current: &Config, next: &mut Config) {
        let mut kept = HashMap::new();
        let templates: Vec<Arc<Template>> = next
            .templates
            .iter()
            .filter(|template| !template.sources.is_empty())
            .cloned()
            .collect();
        for template in templates {
            let unchanged = current.shard == next.shard
                && current.templates.iter().any(|before| {
                    before.name == template.name && before.revision == template.revision
                });
            let checks = match self.discovered.get(&template.name) {
                Some(checks) if unchanged => checks.clone(),
                _ => Arc::new({
                    let last = lock(&self.last).get(&template.name).cloned();
                    match last {
                        Some(targets) => {
                            build(template.clone(), next.shard, targets, Expansion::default())
                                .await
                                .map(|(_, checks)| checks)
                                .unwrap_or_default()
                        }
                        None => Vec::new(),
                    }
                }),
            };
            next.checks.extend(checks.iter().cloned());
            kept.insert(template.name.clone(), checks);
        }
        self.discovered = kept;
    }

    /// Takes a template's newly discovered checks and returns the ones it had before; `None`
    /// for checks made from a template a reload has replaced or removed since.
    pub fn take(&mut self, found: Discovered, current: &Config) -> Option<Arc<Vec<Arc<CheckDef>>>> {
        let template = current
            .templates
            .iter()
            .find(|template| template.name == found.template)?;
        if template.revision != found.revision {
            return None;
        }
        Some(
            self.discovered
                .insert(found.template, Arc::new(found.checks))
                .unwrap_or_default(),
        )
    }

    /// A template's discovered checks as the agent runs them (shared, not copied).
    pub fn checks_of(&self, template: &str) -> Arc<Vec<Arc<CheckDef>>> {
        self.discovered.get(template).cloned().unwrap_or_default()
    }

    /// Follows the templates of `config` with `targets_from`: an unchanged template's task
    /// keeps running (and its checks stay), a new or changed one starts, a removed one stops.
    /// A changed template's task first hands on the targets it last had, built anew, so a
    /// reload never drops discovered targets while discovery runs again.
    pub fn apply(&mut self, config: &Config) {
        let wanted: HashMap<Arc<str>, &Arc<Template>> = config
            .templates
            .iter()
            .filter(|template| !template.sources.is_empty())
            .map(|template| (template.name.clone(), template))
            .collect();
        self.following.retain(|name, following| {
            let keep = wanted
                .get(name)
                .is_some_and(|template| template.revision == following.revision);
            if !keep {
                let _ = following.stop.send(true);
                following.task.abort();
                self.metrics.discovery.remove(name);
            }
            keep
        });
        lock(&self.last).retain(|name, _| wanted.contains_key(name));
        for (name, template) in wanted {
            if self.following.contains_key(&name) {
                continue;
            }
            let shown: Vec<String> = template.sources.iter().map(Source::describe).collect();
            self.metrics.discovery.set_sources(&name, &shown);
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(follow(
                (*template).clone(),
                config.shard,
                self.last.clone(),
                self.env.clone(),
                self.sender.clone(),
                stopped,
            ));
            self.following.insert(
                name,
                Following {
                    revision: template.revision,
                    stop,
                    task,
                },
            );
        }
    }

    /// Stops every template's task (at once: one may be waiting to hand on checks the agent
    /// no longer takes).
    pub async fn stop(self) {
        for following in self.following.into_values() {
            let _ = following.stop.send(true);
            following.task.abort();
            let _ = following.task.await;
        }
    }
}

/// One template: its sources' targets, each set expanded and handed on.
async fn follow(
    template: Arc<Template>,
    shard: Option<(u64, u64)>,
    last: Last,
    env: DiscoveryEnv,
    sender: mpsc::Sender<Discovered>,
    mut stopped: watch::Receiver<bool>,
) {
    let (found, mut targets) = watch::channel::<Arc<[Target]>>(Arc::from(Vec::new()));
    let discovery = tokio::spawn(crate::discovery::run(
        template.name.clone(),
        template.sources.clone(),
        env,
        found,
        stopped.clone(),
    ));
    let mut expansion = Some(Expansion::default());
    let seed = lock(&last).get(&template.name).cloned();
    if let Some(seed) = seed {
        expansion = hand_on(&template, shard, seed, expansion, &sender).await;
    }
    loop {
        tokio::select! {
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
            changed = targets.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = targets.borrow_and_update().clone();
                lock(&last).insert(template.name.clone(), now.clone());
                expansion = hand_on(&template, shard, now, expansion, &sender).await;
                if expansion.is_none() {
                    break;
                }
            }
        }
    }
    discovery.abort();
}

/// Expands `targets` on the blocking pool and sends the template's checks; `None` once the
/// agent is gone.
async fn hand_on(
    template: &Arc<Template>,
    shard: Option<(u64, u64)>,
    targets: Arc<[Target]>,
    expansion: Option<Expansion>,
    sender: &mpsc::Sender<Discovered>,
) -> Option<Expansion> {
    let (expansion, checks) = build(template.clone(), shard, targets, expansion?).await?;
    sender
        .send(Discovered {
            template: template.name.clone(),
            revision: template.revision,
            checks,
        })
        .await
        .ok()?;
    Some(expansion)
}

/// The checks of `template` for `targets` in this agent's shard, built on the blocking pool
/// through `expansion` (which remembers them); the targets it refuses are logged.
async fn build(
    template: Arc<Template>,
    shard: Option<(u64, u64)>,
    targets: Arc<[Target]>,
    mut expansion: Expansion,
) -> Option<(Expansion, Vec<Arc<CheckDef>>)> {
    tokio::task::spawn_blocking(move || {
        let keep = keeper(&template, shard);
        let (checks, refused) = expansion.update(
            &template,
            targets
                .iter()
                .map(|target| (&target.target, &target.labels)),
            keep,
        );
        report_refused(&template, &refused);
        (expansion, checks)
    })
    .await
    .ok()
}

/// Logs the targets a template could not build a check for: the count, and the first few
/// with their reasons (a discovery file with 5,000 bad targets logs a line, not 5,000).
fn report_refused(template: &Template, refused: &[crate::config::template::Refused]) {
    const SHOWN: usize = 3;
    if refused.is_empty() {
        return;
    }
    let sample: Vec<String> = refused
        .iter()
        .take(SHOWN)
        .map(|one| {
            crate::text::sanitize(
                &format!(
                    "{:?}: {}",
                    crate::text::redact(&template.source_secrets, &one.target),
                    one.reason.replace('\n', "; ")
                ),
                300,
            )
            .into_owned()
        })
        .collect();
    warn!(message = "Discovered targets refused; the others apply.", check = %template.name, refused = refused.len(), first = %sample.join(" | "));
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads every template's sources once and adds the checks of the targets found to
/// `config` (`nightjar check`). `Err` names the template, the source and why; targets a
/// template cannot build a check for are logged and left out, as while running.
pub async fn discover_once(config: &mut Config, env: &DiscoveryEnv) -> Result<(), String> {
    let templates: Vec<Arc<Template>> = config
        .templates
        .iter()
        .filter(|template| !template.sources.is_empty())
        .cloned()
        .collect();
    for template in templates {
        let found = crate::discovery::discover_once(&template.sources, env)
            .await
            .map_err(|error| {
                format!(
                    "check {:?}: {}",
                    template.name,
                    crate::text::redact(&template.source_secrets, &error)
                )
            })?;
        let keep = keeper(&template, config.shard);
        let (checks, refused) = Expansion::default().update(
            &template,
            found.iter().map(|target| (&target.target, &target.labels)),
            keep,
        );
        report_refused(&template, &refused);
        config.checks.extend(checks);
    }
    Ok(())
}

/// Which discovered checks of `template` this agent runs: those of its shard, and not those
/// of a target the template lists itself (that check is already in the configuration).
fn keeper(template: &Template, shard: Option<(u64, u64)>) -> impl Fn(&str) -> bool + use<> {
    let written: HashSet<String> = template.targets.iter().map(|t| instance_of(t)).collect();
    move |name: &str| {
        let instance = name.split_once('@').map_or("", |(_, instance)| instance);
        !written.contains(instance) && crate::config::in_shard(shard, name)
    }
}
