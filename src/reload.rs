//! Reload requests and their replies, and what a reload changed, for the reply to
//! `POST /-/reload` and the log.

use std::collections::BTreeMap;
use std::fmt;

use tokio::sync::oneshot;

/// A reload request (SIGHUP, `POST /-/reload`, a changed file); a request with a sender
/// gets the [`ReloadReply`].
pub type ReloadRequest = Option<oneshot::Sender<ReloadReply>>;

/// What a reload request gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadReply {
    /// The new configuration runs; the summary of what changed.
    Reloaded(String),
    /// The old configuration keeps running; every problem of the new one, or why it cannot
    /// apply in place.
    Rejected(String),
}

/// The names of `running` that the new configuration's `kept` names leave out.
pub fn gone<V>(running: &BTreeMap<String, V>, kept: &[&str]) -> Vec<String> {
    running
        .keys()
        .filter(|name| !kept.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// The names a reload added, changed and removed, of one kind of definition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Started.
    pub added: Vec<String>,
    /// Defined differently than before, and applied.
    pub changed: Vec<String>,
    /// Stopped.
    pub removed: Vec<String>,
}

impl fmt::Display for Changes {
    /// `added a, b; changed none; removed c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        write!(
            f,
            "added {}; changed {}; removed {}",
            list(&self.added),
            list(&self.changed),
            list(&self.removed)
        )
    }
}
