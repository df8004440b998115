//! Runs one check once: applies the timeout, measures the duration, redacts secrets from
//! whatever the check says about the target, and makes the text that came from the target safe
//! to show (`text::sanitize`) before it reaches a terminal, a log, a label or a page.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, debug, debug_span};

use crate::checks::CheckCtx;
use crate::checks::domain::RdapState;
use crate::config::CheckDef;
use crate::net::Resolver;
use crate::result::{CheckResult, Details, Failure, FailureReason, Status};
use crate::text::{MAX_DETAIL, MAX_NAME, sanitize};

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

    /// What a run that must be over by `deadline` may use, sending `user_agent`.
    pub fn ctx(&self, deadline: Instant, user_agent: &'static str) -> CheckCtx {
        CheckCtx {
            resolver: self.resolver.clone(),
            rdap: self.rdap.clone(),
            deadline,
            user_agent,
            source_ip: None,
        }
    }
}

/// Runs `def` once. Never panics on target behaviour and always returns by the check's
/// timeout (plus scheduling noise).
pub async fn run_one(def: &Arc<CheckDef>, env: &RunEnv) -> CheckResult {
    run_within(def, env, def.timeout).await
}

/// Runs `def` once within `timeout` rather than its own (a `/probe`'s timeout comes from the
/// scrape), as [`run_one`] does.
pub async fn run_within(
    def: &Arc<CheckDef>,
    env: &RunEnv,
    timeout: std::time::Duration,
) -> CheckResult {
    let span = debug_span!("check", check = %def.name, kind = def.kind().as_str());
    async {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let deadline = start + timeout;
        let mut ctx = env.ctx(deadline, USER_AGENT);
        ctx.source_ip = def.source_ip;
        // The check honours the deadline itself so it can say which phase was too slow; this
        // outer timeout is the backstop should any step not.
        let (status, mut details) = match timeout_at(deadline, def.spec.run(&ctx)).await {
            Ok(outcome) => outcome,
            Err(_) => (
                Status::fail(
                    FailureReason::Timeout,
                    format!("timed out after {}", humantime::format_duration(timeout)),
                ),
                Details::None,
            ),
        };
        // Secrets out first (a secret may hold a character sanitising escapes), then whatever
        // the target said made safe to show.
        let status = match status {
            Status::Pass => Status::Pass,
            Status::Fail(Failure { reason, detail }) => Status::Fail(Failure {
                reason,
                detail: clean(&def.redact(&detail), MAX_DETAIL),
            }),
        };
        // A WebSocket server's close reason is the one free text a target chose that may echo
        // what the check sent it.
        if let Details::Websocket(websocket) = &mut details
            && let Some(reason) = &mut websocket.close_reason
        {
            *reason = def.redact(reason);
        }
        sanitize_details(&mut details);
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

fn clean(text: &str, max: usize) -> String {
    sanitize(text, max).into_owned()
}

fn clean_in_place(text: &mut String, max: usize) {
    if let std::borrow::Cow::Owned(clean) = sanitize(text, max) {
        *text = clean;
    }
}

/// Every piece of text in the details that a target chose and nothing sanitised on the way:
/// DNS names and record data, the RDAP server a bootstrap registry named. (Certificate names,
/// ALPN and verification errors are sanitised where `tlsinfo::inspect` reads them, on every
/// path, the injector's included.)
fn sanitize_details(details: &mut Details) {
    match details {
        Details::Dns(dns) => {
            for answer in &mut dns.answers {
                clean_in_place(&mut answer.name, MAX_NAME);
                clean_in_place(&mut answer.kind, MAX_NAME);
                clean_in_place(&mut answer.data, MAX_NAME);
            }
            for server in &mut dns.soa_servers {
                clean_in_place(&mut server.server, MAX_NAME);
            }
        }
        Details::Domain(domain) => {
            if let Some(server) = &mut domain.server {
                clean_in_place(server, MAX_NAME);
            }
        }
        Details::Websocket(websocket) => {
            if let Some(reason) = &mut websocket.close_reason {
                clean_in_place(reason, MAX_NAME);
            }
        }
        Details::Http(_) | Details::Tls(_) | Details::Tcp(_) | Details::Flow(_) | Details::None => {
        }
        // Codes and serving statuses are numbers; the server's message is in the detail.
        Details::Grpc(_) => {}
        Details::Icmp(_) | Details::Udp(_) => {}
    }
}
