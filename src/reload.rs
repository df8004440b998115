//! Reload requests and their replies, and what a reload changed, for the reply to
//! `POST /-/reload` and the log.

use std::collections::{HashMap, HashSet};
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

impl Changes {
    /// What a reload changed, from each definition's name and revision before and after it:
    /// names only after it were added and names whose revision differs changed (both in
    /// `after`'s order), names only before it were removed (in `before`'s order).
    pub fn between<'a>(
        before: impl IntoIterator<Item = (&'a str, u64)>,
        after: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Changes {
        let before: Vec<(&str, u64)> = before.into_iter().collect();
        let after: Vec<(&str, u64)> = after.into_iter().collect();
        // Looked up by name, so a reload of 10,000 checks is not quadratic.
        let revisions: HashMap<&str, u64> = before.iter().copied().collect();
        let kept: HashSet<&str> = after.iter().map(|(name, _)| *name).collect();
        let mut changes = Changes::default();
        for (name, revision) in &after {
            match revisions.get(name) {
                None => changes.added.push(name.to_string()),
                Some(old) if old != revision => changes.changed.push(name.to_string()),
                Some(_) => {}
            }
        }
        changes.removed = before
            .iter()
            .filter(|(name, _)| !kept.contains(name))
            .map(|(name, _)| name.to_string())
            .collect();
        changes
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_between_two_revisions_of_a_list() {
        let before = [("a", 1), ("b", 2), ("c", 3)];
        let after = [("d", 4), ("c", 3), ("b", 5)];
        let changes = Changes::between(before, after);
        assert_eq!(changes.added, ["d"]);
        assert_eq!(changes.changed, ["b"]);
        assert_eq!(changes.removed, ["a"]);
        assert_eq!(changes.to_string(), "added d; changed b; removed a");
        assert_eq!(Changes::between(after, after), Changes::default());
    }
}
