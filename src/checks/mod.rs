//! Check kinds: a closed, tagged set. Each kind lives in its own file with its spec and its
//! `run`, which returns a value: a failing target is a [`Status::Fail`], never an `Err`.
//!
//! Nothing here knows about metrics, the status store or the server.

pub mod http;

use std::str::FromStr;

use tokio::time::Instant;

use crate::net::Resolver;
use crate::result::{Details, FailureReason, Status};

pub use http::HttpSpec;

/// The type of a check, as written in `type = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckKind {
    /// An HTTP(S) request with assertions.
    Http,
}

impl CheckKind {
    /// Every supported kind.
    pub const ALL: &'static [CheckKind] = &[CheckKind::Http];

    /// The name used in config and as the `type` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Http => "http",
        }
    }

    /// The failure reasons a check of this kind can produce; their counters start at 0.
    pub fn reasons(self) -> &'static [FailureReason] {
        match self {
            CheckKind::Http => FailureReason::ALL,
        }
    }
}

impl FromStr for CheckKind {
    type Err = ();

    fn from_str(text: &str) -> Result<CheckKind, ()> {
        CheckKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
            .ok_or(())
    }
}

/// What a check probes and expects; one variant per kind.
#[derive(Debug, Clone)]
pub enum CheckSpec {
    /// `type = "http"`.
    Http(HttpSpec),
}

impl CheckSpec {
    /// The kind of this spec.
    pub fn kind(&self) -> CheckKind {
        match self {
            CheckSpec::Http(_) => CheckKind::Http,
        }
    }

    /// Runs the check once. Must return by `ctx.deadline`.
    pub async fn run(&self, ctx: &CheckCtx) -> (Status, Details) {
        match self {
            CheckSpec::Http(spec) => http::run(spec, ctx).await,
        }
    }
}

/// What a running check may use.
#[derive(Debug, Clone)]
pub struct CheckCtx {
    /// Name resolution.
    pub resolver: Resolver,
    /// When the run must be over.
    pub deadline: Instant,
    /// The `User-Agent` to send.
    pub user_agent: &'static str,
}
