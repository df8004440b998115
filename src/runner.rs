//! Runs one check once: applies the timeout, measures the duration, and redacts secrets from
//! whatever the check says about the target.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, debug, debug_span};

use crate::checks::CheckCtx;
use crate::checks::domain::RdapState;
use crate::config::CheckDef;
use crate::net::Resolver;
use crate::result::{CheckResult, Details, FailureReason, Status};

/// The `User-Agent` nightjar sends.
pub const USER_AGENT: &str = concat!("nightjar/", env!("CARGO_PKG_VERSION"));

/// What every run shares.
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// Name resolution.
    pub resolver: Resolver,
    /// RDAP state shared by every `domain` check.
    pub rdap: Arc<RdapState>,
}

impl RunEnv {
    /// The environment for real runs: the system resolver, empty RDAP caches.
    pub fn system() -> RunEnv {
        RunEnv {
            resolver: Resolver::system(),
            rdap: Arc::new(RdapState::new()),
        }
    }
}

/// Runs `def` once. Never panics on target behaviour and always returns by the check's
/// timeout (plus scheduling noise).
pub async fn run_one(def: &Arc<CheckDef>, env: &RunEnv) -> CheckResult {
    let span = debug_span!("check", check = %def.name, kind = def.kind().as_str());
    async {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let deadline = start + def.timeout;
        let ctx = CheckCtx {
            resolver: env.resolver.clone(),
            rdap: env.rdap.clone(),
            deadline,
            user_agent: USER_AGENT,
        };
        // The check honours the deadline itself so it can say which phase was too slow; this
        // outer timeout is the backstop should any step not.
        let (status, details) = match timeout_at(deadline, def.spec.run(&ctx)).await {
            Ok(outcome) => outcome,
            Err(_) => (
                Status::fail(
                    FailureReason::Timeout,
                    format!(
                        "timed out after {}",
                        humantime::format_duration(def.timeout)
                    ),
                ),
                Details::None,
            ),
        };
        let status = match status {
            Status::Pass => Status::Pass,
            Status::Fail { reason, detail } => Status::Fail {
                reason,
                detail: def.redact(&detail),
            },
        };
        let res = CheckResult {
            check: def.name.clone(),
            kind: def.kind(),
            started_at,
            duration: start.elapsed(),
            status,
            details,
        };
        debug!(message = "Check ran.", success = res.is_success(), duration = ?res.duration);
        res
    }
    .instrument(span)
    .await
}
