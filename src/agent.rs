//! The long-running agent: wires config → scheduler → results → metrics and status → server,
//! and shuts it all down in order.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{Config, Origin};
use crate::metrics::Metrics;
use crate::result::{CheckResult, Status};
use crate::schedule::{Runner, Scheduler, WallClock};
use crate::server::{AppState, router};
use crate::status::{StatusStore, Transition};

/// Runs the agent on `listener` until `shutdown` resolves; then stops scheduling, lets runs in
/// flight finish within their timeouts, and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    runner: Runner,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::new(&config));
    let status = Arc::new(StatusStore::new(&config));
    let ready = Arc::new(AtomicBool::new(false));
    let local = listener.local_addr()?;

    let region = config.agent.region.clone();
    let (checks, elsewhere): (Vec<_>, Vec<_>) = config
        .checks
        .iter()
        .cloned()
        .partition(|def| def.runs_in(&region));
    for def in &elsewhere {
        info!(message = "Check not scheduled: it does not run in this region.", check = %def.name, region = %region, regions = ?def.regions);
    }

    let (results_tx, results_rx) = mpsc::channel::<CheckResult>(1024);
    let sink = tokio::spawn(sink(
        results_rx,
        metrics.clone(),
        status.clone(),
        region.clone(),
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let n_checks = checks.len();
    let scheduler = Scheduler::new(
        checks,
        runner,
        metrics.clone(),
        results_tx,
        config.agent.concurrency,
        WallClock::now(),
    );
    let injectors = tokio::spawn(crate::traffic::run(
        config.traffic.clone(),
        crate::runner::RunEnv::system(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let pushers = tokio::spawn(crate::remote_write::run(
        config.remote_write.clone(),
        config.agent.name.clone(),
        crate::runner::RunEnv::system(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let scheduler = tokio::spawn(scheduler.run(stop_rx));

    let state = AppState {
        metrics: metrics.clone(),
        status: status.clone(),
        ready: ready.clone(),
    };
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        let mut server_stop_rx = server_stop_rx;
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move {
                let _ = server_stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    ready.store(true, Ordering::Release);

    match &config.origin {
        Origin::Embedded => info!(
            message = "No --config given: running the embedded default, which checks this agent's own endpoints. Point nightjar at real checks with --config FILE_OR_DIR (see checks/ for examples).",
            metrics = %format!("http://{local}/metrics"),
            checks_api = %format!("http://{local}/api/v1/checks"),
        ),
        Origin::Files(files) => info!(
            message = "Configuration loaded.",
            files = files.len(),
            metrics = %format!("http://{local}/metrics"),
        ),
    }
    info!(message = "Agent started.", listen = %local, region = %region, checks = n_checks, version = env!("CARGO_PKG_VERSION"));

    shutdown.await;
    info!(message = "Shutting down: no new runs; waiting for runs in flight.");
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    let _ = injectors.await;
    let _ = sink.await;
    // A last push after the last results.
    let _ = pushers.await;
    let _ = server_stop_tx.send(true);
    match server.await {
        Ok(result) => result?,
        Err(error) => warn!(message = "Server task ended abnormally.", %error),
    }
    info!(message = "Agent stopped.");
    Ok(())
}

/// Consumes results: metrics, status store, and one log line per state change.
async fn sink(
    mut results: mpsc::Receiver<CheckResult>,
    metrics: Arc<Metrics>,
    status: Arc<StatusStore>,
    region: String,
) {
    while let Some(res) = results.recv().await {
        metrics.observe(&res);
        let check = res.check.clone();
        let kind = res.kind.as_str();
        let failure = match &res.status {
            Status::Pass => None,
            Status::Fail { reason, detail } => Some((reason.as_str(), detail.clone())),
        };
        match (status.update(res), failure) {
            (Transition::FirstPass, _) => {
                info!(message = "Check is passing.", check = %check, kind, region = %region)
            }
            (Transition::Recovered, _) => {
                info!(message = "Check recovered.", check = %check, kind, region = %region)
            }
            (Transition::FirstFail | Transition::Failed, Some((reason, detail))) => {
                warn!(message = "Check is failing.", check = %check, kind, region = %region, reason, detail = %detail)
            }
            _ => {}
        }
    }
}
