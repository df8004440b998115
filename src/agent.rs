//! The long-running agent: wires config → scheduler → results → metrics and status → server,
//! and shuts it all down in order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::access::{Access, SharedAccess, SharedTls};
use crate::checks::domain::RdapState;
use crate::config::{CheckDef, Config, ConfigErrors, Origin};
use crate::detect::Tracker;
use crate::maintenance::Maintenance;
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::reload::{Changes, ReloadReply, ReloadRequest};
use crate::remote_write::Pushers;
use crate::result::{Failure, Status};
use crate::runner::RunEnv;
use crate::schedule::{Runner, Scheduler, SchedulerHandle, WallClock, plan, real_runner};
use crate::server::{AppState, router};
use crate::status::{StatusStore, Transition};
use crate::traffic::Injectors;

/// Loads the configuration again, from the same files and overrides, for a reload.
pub type Reloader = Arc<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// What runs checks: the runner, and the RDAP state whose answer cache the state dir keeps.
pub struct Probes {
    /// Runs one check.
    pub runner: Runner,
    /// The RDAP bootstrap, answers and backoffs `domain` checks share.
    pub rdap: Arc<RdapState>,
    /// What `/probe` runs share.
    pub env: RunEnv,
}

impl Probes {
    /// Real probes in `env`.
    pub fn real(env: RunEnv) -> Probes {
        Probes {
            rdap: env.rdap.clone(),
            runner: real_runner(env.clone()),
            env,
        }
    }

    /// A stand-in runner (tests), with an RDAP state of its own.
    pub fn with_runner(runner: Runner) -> Probes {
        let env = RunEnv::system();
        Probes {
            runner,
            rdap: env.rdap.clone(),
            env,
        }
    }
}

/// The running scheduler: what updates it, what stops it, and its task, which ends with each
/// check's state.
struct Running {
    handle: SchedulerHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<(Arc<str>, Tracker)>>,
}

/// The checks of `config` that run in its region.
fn regional(checks: &[Arc<CheckDef>], region: &str) -> Vec<Arc<CheckDef>> {
    checks
        .iter()
        .filter(|def| def.runs_in(region))
        .cloned()
        .collect()
}

/// Starts the scheduler for the checks of `config` that run in its region, each from its
/// state in `trackers`.
fn start_scheduler(
    config: &Config,
    agent: &Shared,
    results: &mpsc::Sender<Outcome>,
    trackers: Vec<(Arc<str>, Tracker)>,
) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let scheduler = Scheduler::new(
        regional(&config.checks, &config.agent.region),
        agent.runner.clone(),
        agent.metrics.clone(),
        results.clone(),
        config.agent.concurrency,
        WallClock::now(),
    )
    .trackers(trackers)
    .maintenance(agent.maintenance.clone());
    let (handle, task) = scheduler.start(stop_rx);
    Running { handle, stop, task }
}

/// Runs the agent on `listener` until `shutdown` resolves; then stops scheduling, lets runs in
/// flight finish within their timeouts, and returns. With a `reloader`, SIGHUP, `POST
/// /-/reload` and (with `[agent] watch_config`) changed files reload the configuration.
pub async fn run(
    config: Config,
    listener: TcpListener,
    probes: Probes,
    shutdown: impl Future<Output = ()>,
    reloader: Option<Reloader>,
) -> std::io::Result<()> {
    let probes_env_resolver = probes.env.resolver.clone();
    let shared = Shared {
        metrics: Arc::new(Metrics::new(&config)),
        status: Arc::new(StatusStore::new(&config)),
        maintenance: Arc::new(Maintenance::new(config.maintenance.clone())),
        runner: probes.runner,
        rdap: probes.rdap,
        probing: Arc::new(crate::server::probe::Probing::new(&config, probes.env)),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let local = listener.local_addr()?;
    log_other_regions(&config);
    if let Some(dir) = &config.agent.state_dir {
        restore_state(dir, &config, &shared);
    }
    let metrics_for_fleet = shared.metrics.clone();
    let (found, mut discovered) = mpsc::channel::<crate::fleet::Discovered>(16);
    let discovery = crate::discovery::DiscoveryEnv::new(
        probes_env_resolver.clone(),
        shared.rdap.clone(),
        crate::runner::USER_AGENT,
    );
    let mut agent = Agent::start(
        config,
        shared,
        crate::fleet::Fleet::new(discovery, found, metrics_for_fleet),
    );

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(8);
    let state = AppState {
        metrics: agent.shared.metrics.clone(),
        status: agent.shared.status.clone(),
        ready: ready.clone(),
        reload: reloader.as_ref().map(|_| reload_tx.clone()),
        access: agent.access.clone(),
        maintenance: agent.shared.maintenance.clone(),
        probes: agent.shared.probing.clone(),
    };
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let stopped = async move {
        let mut server_stop_rx = server_stop_rx;
        let _ = server_stop_rx.wait_for(|stop| *stop).await;
    };
    let server = serve(listener, &agent, router(state), stopped);
    let triggers = reload_triggers(&agent.current, reloader.is_some(), reload_tx);
    ready.store(true, Ordering::Release);
    log_started(&agent.current, local, agent.tls.is_some());

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(reply) = reload_rx.recv() => {
                let Some(reloader) = &reloader else { continue };
                let answer = agent.reload(reloader).await;
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            Some(found) = discovered.recv() => agent.discovered(found).await,
        }
    }
    info!(message = "Shutting down: no new runs; waiting for runs in flight.");
    ready.store(false, Ordering::Release);
    for trigger in triggers {
        trigger.abort();
    }
    agent.stop().await;
    let _ = server_stop_tx.send(true);
    match server.await {
        Ok(result) => result?,
        Err(error) => warn!(message = "Server task ended abnormally.", %error),
    }
    info!(message = "Agent stopped.");
    Ok(())
}

/// Logs each check that does not run in this agent's region.
fn log_other_regions(config: &Config) {
    let region = &config.agent.region;
    for def in config.checks.iter().filter(|def| !def.runs_in(region)) {
        info!(message = "Check not scheduled: it does not run in this region.", check = %def.name, region = %region, regions = ?def.regions);
    }
}

/// Logs where the agent answers and what it runs, once it is ready.
fn log_started(config: &Config, local: SocketAddr, https: bool) {
    let scheme = if https { "https" } else { "http" };
    match &config.origin {
        Origin::Embedded => info!(
            message = "No --config given: running the embedded default, which checks this agent's own endpoints. Point nightjar at real checks with --config FILE_OR_DIR (see checks/ for examples).",
            status_page = %format!("{scheme}://{local}/"),
            metrics = %format!("{scheme}://{local}/metrics"),
            checks_api = %format!("{scheme}://{local}/api/v1/checks"),
        ),
        Origin::Files(files) => info!(
            message = "Configuration loaded.",
            files = files.len(),
            status_page = %format!("{scheme}://{local}/"),
            metrics = %format!("{scheme}://{local}/metrics"),
            authentication = config.agent.web.requires_auth(),
        ),
    }
    let region = &config.agent.region;
    let checks = config
        .checks
        .iter()
        .filter(|def| def.runs_in(region))
        .count();
    info!(message = "Agent started.", listen = %local, region = %region, checks, version = env!("CARGO_PKG_VERSION"));
}

/// What asks for reloads beside `POST /-/reload`, when the agent can reload: SIGHUP, and
/// changed files with `[agent] watch_config`.
fn reload_triggers(
    config: &Config,
    reloads: bool,
    requests: mpsc::Sender<ReloadRequest>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut triggers = Vec::new();
    if reloads {
        triggers.push(tokio::spawn(on_sighup(requests.clone())));
        if let (Some(every), Origin::Files(_)) = (config.agent.watch_config, &config.origin) {
            triggers.push(tokio::spawn(watch_files(
                config.origin.clone(),
                config.fingerprint,
                every,
                requests,
            )));
        }
    }
    triggers
}

/// What runs the configuration and what a reload changes in place: the scheduler, the
/// injectors and pushers, the credentials and certificate, and what results go to.
struct Agent {
    current: Config,
    shared: Shared,
    access: SharedAccess,
    tls: Option<SharedTls>,
    results: mpsc::Sender<Outcome>,
    sink: tokio::task::JoinHandle<()>,
    running: Running,
    /// The templates' discovery, and the checks it found.
    fleet: crate::fleet::Fleet,
    injectors: Injectors,
    pushers: Pushers,
    /// Tells the pushers to push once more and stop.
    stop_pushing: watch::Sender<bool>,
    /// Wakes the maintenance watcher after a reload (checks came or went).
    rewatch: Arc<tokio::sync::Notify>,
    /// Stops the maintenance watcher and the state keeper (after the last results).
    stop_keeping: watch::Sender<bool>,
    keepers: Vec<tokio::task::JoinHandle<()>>,
}

/// What the agent's parts share for its whole life, across reloads.
#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    status: Arc<StatusStore>,
    maintenance: Arc<Maintenance>,
    runner: Runner,
    rdap: Arc<RdapState>,
    probing: Arc<crate::server::probe::Probing>,
}

impl Agent {
    /// Starts consuming results, the injectors, the pushers and the scheduler of `config`.
    fn start(config: Config, shared: Shared, mut fleet: crate::fleet::Fleet) -> Agent {
        let metrics = shared.metrics.clone();
        let (results, results_rx) = mpsc::channel::<Outcome>(1024);
        let sink = tokio::spawn(sink(
            results_rx,
            metrics.clone(),
            shared.status.clone(),
            config.agent.region.clone(),
        ));
        let rewatch = Arc::new(tokio::sync::Notify::new());
        let (stop_keeping, keeping) = watch::channel(false);
        let mut keepers = vec![tokio::spawn(watch_maintenance(
            shared.clone(),
            rewatch.clone(),
            keeping.clone(),
        ))];
        if let Some(dir) = &config.agent.state_dir {
            keepers.push(tokio::spawn(keep_state(
                dir.clone(),
                config.agent.region.clone(),
                shared.clone(),
                keeping,
            )));
        }
        // Traffic injectors and remote-write pushers; a reload changes them in place.
        let (stop_pushing, stop_rx) = watch::channel(false);
        let injectors = Injectors::start(
            &config.traffic,
            crate::runner::RunEnv::system(),
            metrics.clone(),
        );
        let pushers = Pushers::start(
            &config.remote_write,
            config.agent.name.clone(),
            crate::runner::RunEnv::system(),
            metrics.clone(),
            stop_rx,
        );
        let running = start_scheduler(&config, &shared, &results, shared.status.trackers());
        fleet.apply(&config);
        let access = Access::shared(&config.agent.web);
        let tls = config
            .agent
            .web
            .tls
            .clone()
            .map(|tls| Arc::new(std::sync::RwLock::new(tls)));
        Agent {
            current: config,
            shared,
            access,
            tls,
            results,
            sink,
            running,
            fleet,
            injectors,
            pushers,
            stop_pushing,
            rewatch,
            stop_keeping,
            keepers,
        }
    }

    /// Loads the configuration again and applies it, or keeps the current one if it is
    /// invalid or cannot apply in place; the answer says which.
    async fn reload(&mut self, reloader: &Reloader) -> ReloadReply {
        let outcome = match reloader() {
            Ok(mut next) => {
                self.fleet.carry_over(&self.current, &mut next).await;
                self.apply(&next).map(|summary| (next, summary))
            }
            Err(errors) => {
                for error in &errors.0 {
                    error!(message = "The new configuration is invalid; keeping the old one.", error = %error);
                }
                Err(errors.to_string())
            }
        };
        self.shared.metrics.config_reloaded(outcome.is_ok());
        match outcome {
            Ok((next, summary)) => {
                self.fleet.apply(&next);
                self.update_scheduler(next).await;
                info!(message = "Configuration reloaded.", changes = %summary);
                ReloadReply::Reloaded(summary)
            }
            Err(message) => {
                warn!(message = "Reload rejected; the old configuration keeps running.", reason = %message);
                ReloadReply::Rejected(message)
            }
        }
    }

    /// Checks that `next` can replace the current configuration in place and applies it to
    /// everything but the scheduler. Returns a summary of the changes.
    fn apply(&mut self, next: &Config) -> Result<String, String> {
        let checks = apply(
            &self.current,
            next,
            &self.shared.metrics,
            &self.shared.status,
            &self.access,
            self.tls.as_ref(),
        )?;
        self.shared
            .maintenance
            .reconfigure(next.maintenance.clone());
        self.shared.probing.reconfigure(next);
        self.rewatch.notify_one();
        let summary = format!(
            "{checks}. Traffic: {}. Remote write: {}.",
            self.injectors.apply(&next.traffic),
            self.pushers.apply(&next.remote_write, &next.agent.name),
        );
        self.shared.metrics.reconfigure_outputs(
            &self.current.remote_write,
            &self.current.traffic,
            &next.remote_write,
            &next.traffic,
        );
        Ok(summary)
    }

    /// Applies `next`'s checks to the running scheduler (`schedule::plan`), and `next` becomes
    /// the current configuration: removed checks stop at once (a run in flight is aborted),
    /// changed ones start again from their state, added ones start, and unchanged ones keep
    /// their slots, states and runs in flight. The concurrency cap is resized in place.
    async fn update_scheduler(&mut self, next: Config) {
        let update = plan(
            &regional(&self.current.checks, &self.current.agent.region),
            &regional(&next.checks, &next.agent.region),
        );
        self.running.handle.set_concurrency(next.agent.concurrency);
        self.running.handle.apply(update).await;
        self.current = next;
    }

    /// Applies a template's newly discovered checks, touching only what changed: gone
    /// targets' checks stop at once and their series and rows go, new targets' checks start
    /// (series at 0), changed ones start again from their state; every other check keeps its
    /// slot, state, counters and run in flight. Checks from a template a reload has replaced
    /// since are dropped (the new template's come next).
    async fn discovered(&mut self, found: crate::fleet::Discovered) {
        let template = found.template.clone();
        let Some(before) = self.fleet.take(found, &self.current) else {
            return;
        };
        let after = self.fleet.checks_of(&template);
        // Every pass below is over up to every check (50,000 with a large template): on the
        // blocking pool, so no run waits for it. The agent's loop waits, so no reload comes
        // in between.
        let checks = std::mem::take(&mut self.current.checks);
        let region = self.current.agent.region.clone();
        let (status, metrics) = (self.shared.status.clone(), self.shared.metrics.clone());
        let worked = tokio::task::spawn_blocking(move || {
            let mut checks = checks;
            let planned = plan_discovered(&region, &before, &after, &mut checks);
            let applied = planned.map(|(mut update, removed)| {
                let upserted: Vec<Arc<CheckDef>> = update
                    .start
                    .iter()
                    .map(|(def, _)| def.clone())
                    .chain(update.refresh.iter().cloned())
                    .collect();
                // The rows and series first, so a new check's first result has somewhere
                // to go and a gone one's last is dropped.
                let restored = status.apply_checks(&removed, &upserted);
                metrics.apply_checks(&removed, &upserted);
                // Targets seen before a restart start from their saved state.
                for (name, tracker) in &restored {
                    metrics.set_tracker(name, tracker);
                }
                update.trackers = restored.into_iter().collect();
                (update, removed.len())
            });
            (checks, applied)
        })
        .await;
        let Ok((checks, applied)) = worked else {
            error!(message = "Applying discovered targets failed; they apply at the next change or reload.", check = %template);
            return;
        };
        self.current.checks = checks;
        let Some((update, removed)) = applied else {
            return;
        };
        let started = update.start.len();
        self.running.handle.apply(update).await;
        self.rewatch.notify_one();
        info!(message = "Discovered targets applied.", check = %template, checks = self.fleet.checks_of(&template).len(), started, removed);
    }

    /// Stops scheduling and injecting; waits for the runs and requests in flight, the last
    /// results and the pushers' last push.
    async fn stop(self) {
        let Agent {
            current,
            results,
            sink,
            mut running,
            fleet,
            injectors,
            pushers,
            stop_pushing,
            stop_keeping,
            keepers,
            ..
        } = self;
        fleet.stop().await;
        let _ = running.stop.send(true);
        let _ = stop_pushing.send(true);
        // Checks and injected requests in flight finish together, within the longest check
        // timeout; then the results are consumed and the last push (bounded by
        // `remote_write::FINAL_FLUSH`) goes out.
        let longest = current
            .checks
            .iter()
            .map(|def| def.timeout)
            .max()
            .unwrap_or_default();
        let (_, ()) = tokio::join!(&mut running.task, injectors.stop(longest));
        drop(results);
        let _ = sink.await;
        // The state file's last write, after the last results; a last push too.
        let _ = stop_keeping.send(true);
        let (_, ()) = tokio::join!(futures_join(keepers), pushers.join());
    }
}

/// Serves `app` on `listener` (HTTPS with the agent's certificate) until `stopped` resolves,
/// then closes every connection within `server::SHUTDOWN_GRACE`; keeps descriptors for
/// `[agent] concurrency` check runs out of the connection cap.
fn serve(
    listener: TcpListener,
    agent: &Agent,
    app: axum::Router,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let metrics = &agent.shared.metrics;
    let reserved = crate::server::FD_RESERVE
        + crate::server::FDS_PER_RUN
            * (agent.current.agent.concurrency + crate::server::probe::PROBE_RUNS);
    tokio::spawn(crate::server::serve(
        listener,
        agent.tls.clone(),
        app,
        agent.access.clone(),
        metrics.http.clone(),
        reserved,
        stopped,
    ))
}

/// Checks that `next` can replace `current` in place and reconfigures metrics and status.
/// Returns a summary of the changes.
fn apply(
    current: &Config,
    next: &Config,
    metrics: &Metrics,
    status: &StatusStore,
    access: &SharedAccess,
    tls: Option<&SharedTls>,
) -> Result<String, String> {
    // First: a switch of metrics set also changes the default duration_buckets.
    if current.agent.metrics != next.agent.metrics {
        return Err(format!(
            "[agent] metrics changed from \"{}\" to \"{}\"; restart the agent to apply that (the series start over)",
            current.agent.metrics.as_str(),
            next.agent.metrics.as_str()
        ));
    }
    let agent_changed = current.agent.listen != next.agent.listen
        || current.agent.region != next.agent.region
        || current.agent.labels != next.agent.labels
        || current.agent.duration_buckets != next.agent.duration_buckets;
    if agent_changed {
        return Err("[agent] listen, region, labels or duration_buckets changed; restart the agent to apply that".to_string());
    }
    if tls.is_some() != next.agent.web.tls.is_some() {
        return Err("[agent] tls_cert_file and tls_key_file were added or removed; restart the agent to switch between HTTP and HTTPS".to_string());
    }
    // Credentials and a renewed certificate apply to the next request and connection.
    *access
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(Access::new(&next.agent.web));
    if let (Some(tls), Some(next_tls)) = (tls, &next.agent.web.tls) {
        *tls.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = next_tls.clone();
    }
    metrics.reconfigure(next);
    status.reconfigure(next);
    let changes = Changes::between(
        current.checks.iter().map(|def| (&*def.name, def.revision)),
        next.checks.iter().map(|def| (&*def.name, def.revision)),
    );
    Ok(format!(
        "{} checks: {} added, {} changed, {} removed",
        next.checks.len(),
        changes.added.len(),
        changes.changed.len(),
        changes.removed.len()
    ))
}

/// SIGHUP as listened for by [`listen_for_hangups`], until the agent takes it.
#[cfg(unix)]
static HANGUPS: std::sync::Mutex<Option<tokio::signal::unix::Signal>> = std::sync::Mutex::new(None);

/// Starts listening for SIGHUP now, so one sent before the agent's reload task runs (say,
/// as soon as its port answers) is neither fatal, as SIGHUP is by default, nor lost. Call
/// within the runtime, before binding the agent's port.
pub fn listen_for_hangups() {
    #[cfg(unix)]
    if let Ok(hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        *HANGUPS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hangups);
    }
}

#[cfg(unix)]
async fn on_sighup(requests: mpsc::Sender<ReloadRequest>) {
    let early = HANGUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let mut hangups = match early {
        Some(hangups) => hangups,
        None => match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(_) => return,
        },
    };
    while hangups.recv().await.is_some() {
        info!(message = "SIGHUP: reloading the configuration.");
        if requests.send(None).await.is_err() {
            return;
        }
    }
}

#[cfg(not(unix))]
async fn on_sighup(_requests: mpsc::Sender<ReloadRequest>) {}

/// Reloads when the config files change (checked every `every`).
async fn watch_files(
    origin: Origin,
    loaded: u64,
    every: std::time::Duration,
    requests: mpsc::Sender<ReloadRequest>,
) {
    let mut last = loaded;
    loop {
        tokio::time::sleep(every).await;
        let now = crate::config::fingerprint(&origin);
        if now != last {
            last = now;
            info!(message = "The configuration files changed: reloading.");
            if requests.send(None).await.is_err() {
                return;
            }
        }
    }
}

/// Consumes results: metrics, status store, and one log line per change of state (and per
/// change being confirmed).
async fn sink(
    mut results: mpsc::Receiver<Outcome>,
    metrics: Arc<Metrics>,
    status: Arc<StatusStore>,
    region: String,
) {
    while let Some(outcome) = results.recv().await {
        // A run of a check a reload has removed or redefined since: its series and row (if
        // any) are the new definition's.
        if !status.runs_revision(&outcome.result.check, outcome.revision) {
            debug!(message = "Result of a check no longer configured as it ran; dropped.", check = %outcome.result.check);
            continue;
        }
        metrics.observe_outcome(&outcome);
        let check = outcome.result.check.clone();
        let kind = outcome.result.kind.as_str();
        let window = outcome.maintenance.as_ref().map(|open| open.name.clone());
        let failure = match &outcome.result.status {
            Status::Pass => None,
            Status::Fail(Failure { reason, detail }) => Some((reason.as_str(), detail.clone())),
        };
        let maintenance = window.as_deref().unwrap_or("");
        match (status.update_outcome(outcome), failure) {
            (Transition::FirstPass, _) => {
                info!(message = "Check is passing.", check = %check, kind, region = %region)
            }
            (Transition::Recovered, _) => {
                info!(message = "Check recovered.", check = %check, kind, region = %region, maintenance)
            }
            (Transition::FirstFail | Transition::Failed, Some((reason, detail)))
                if window.is_some() =>
            {
                info!(message = "Check is failing, in a maintenance window.", check = %check, kind, region = %region, maintenance, reason, detail = %detail)
            }
            (Transition::FirstFail | Transition::Failed, Some((reason, detail))) => {
                warn!(message = "Check is failing.", check = %check, kind, region = %region, reason, detail = %detail)
            }
            (Transition::Pending(pending), failure) => {
                let (reason, detail) = failure.unwrap_or(("", String::new()));
                info!(message = "Check state change seen; confirming.", check = %check, kind, region = %region, pending = %pending, reason, detail = %detail)
            }
            _ => {}
        }
    }
}

/// Waits for every task in `tasks`.
async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Reads the state dir at start: each check's state, history and last result, the ad hoc
/// maintenance windows and the RDAP answers. A missing or unusable file is a fresh start.
fn restore_state(dir: &std::path::Path, config: &Config, shared: &Shared) {
    let Some(saved) = crate::state::load(dir, &config.agent.region) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let windows = saved.maintenance.len();
    let answers = saved.rdap.len();
    shared.maintenance.restore(saved.maintenance, now);
    shared.rdap.restore_answers(saved.rdap);
    let checks = shared.status.restore(saved.checks);
    for (name, tracker) in shared.status.trackers() {
        shared.metrics.set_tracker(&name, &tracker);
    }
    info!(message = "State restored from the state dir.", dir = %dir.display(), checks, maintenance_windows = windows, rdap_answers = answers);
}

/// Writes the state dir while the agent runs (see `state::Keeper`), and once more at the end.
async fn keep_state(
    dir: std::path::PathBuf,
    region: String,
    shared: Shared,
    stop: watch::Receiver<bool>,
) {
    let keeper = crate::state::Keeper {
        dir,
        maintenance: shared.maintenance.clone(),
    };
    let status = shared.status.clone();
    let snapshot = move || {
        let now = std::time::SystemTime::now();
        let mut saved = crate::state::Saved::new(&region, crate::time::unix_secs(now));
        saved.checks = shared.status.saved();
        saved.maintenance = shared.maintenance.ad_hoc(now);
        saved.rdap = shared.rdap.answers_snapshot();
        saved
    };
    keeper
        .run(move || status.generation(), snapshot, stop)
        .await;
}

/// The scheduler's update for a template's checks going from `before` to `after` (those of
/// `region`), and the names of the gone ones; `checks` (every check the agent runs) then holds
/// `after` in place of `before`. `None` when the scheduler has nothing to change.
fn plan_discovered(
    region: &str,
    before: &[Arc<CheckDef>],
    after: &[Arc<CheckDef>],
    checks: &mut Vec<Arc<CheckDef>>,
) -> Option<(crate::schedule::Update, Vec<Arc<str>>)> {
    let update = plan(&regional(before, region), &regional(after, region));
    // What stops and does not start again is gone.
    let restarted: std::collections::HashSet<&str> =
        update.start.iter().map(|(def, _)| &*def.name).collect();
    let removed: Vec<Arc<str>> = update
        .stop
        .iter()
        .filter(|name| !restarted.contains(&***name))
        .cloned()
        .collect();
    let gone: std::collections::HashSet<*const CheckDef> = before.iter().map(Arc::as_ptr).collect();
    checks.retain(|def| !gone.contains(&Arc::as_ptr(def)));
    checks.extend(after.iter().cloned());
    (!update.is_empty()).then_some((update, removed))
}

/// Sets each check's maintenance window as of `now` in the status store and metrics, logging
/// each check a window starts or stops covering.
fn set_windows(shared: &Shared, now: std::time::SystemTime) {
    for def in shared.status.defs() {
        let open = shared.maintenance.open_for(&def.name, &def.labels, now);
        let covered = open.is_some();
        let shown = open.clone();
        if shared.status.set_maintenance(&def.name, open) {
            shared.metrics.set_maintenance(&def.name, covered);
            match shown {
                Some(open) => {
                    info!(message = "Maintenance window covers the check.", check = %def.name, window = %open.name, mode = open.mode.as_str(), until = %crate::time::rfc3339(open.until))
                }
                None => {
                    info!(message = "Maintenance window over for the check.", check = %def.name)
                }
            }
        }
    }
}

/// Keeps each check's maintenance flag (status, metrics, logs) in step with the windows:
/// looked at when a window opens or closes, when one is added or ended, and after a reload.
async fn watch_maintenance(
    shared: Shared,
    rewatch: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let now = std::time::SystemTime::now();
        let generation = shared.maintenance.generation();
        // A pass over every check (50,000 with a large template) runs on the blocking pool, so
        // no run waits for it.
        let walked = shared.clone();
        let _ = tokio::task::spawn_blocking(move || set_windows(&walked, now)).await;
        // Until the next window opens or closes, or a change (API, reload), or once a minute.
        let wait = shared
            .maintenance
            .next_change(now)
            .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
            .unwrap_or(std::time::Duration::from_secs(60))
            .min(std::time::Duration::from_secs(60));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = rewatch.notified() => break,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                    if shared.maintenance.generation() != generation {
                        break;
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }
}
