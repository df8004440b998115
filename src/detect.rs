//! Whether a check is passing or failing, decided from consecutive results: one failed run is
//! a blip until `confirm_failures` of them in a row say otherwise, and one passing run after an
//! outage is a recovery only after `confirm_recoveries`.
//!
//! A leaf: it imports nothing from the crate. The scheduler owns one [`Tracker`] per check
//! (it picks the next run by it: a retry while a change is pending), and hands a copy with
//! every result to the status store, the metrics and the state file.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A decided state: what the check is, once confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Its runs pass.
    Passing,
    /// Its runs fail.
    Failing,
}

impl Verdict {
    /// `passing` or `failing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passing => "passing",
            Verdict::Failing => "failing",
        }
    }

    fn of(passed: bool) -> Verdict {
        if passed {
            Verdict::Passing
        } else {
            Verdict::Failing
        }
    }
}

/// How many consecutive results decide a change: both at least 1 (1 is "at once").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    /// Failed runs in a row before a passing (or new) check is failing.
    pub failures: u32,
    /// Passing runs in a row before a failing check is passing again.
    pub recoveries: u32,
}

impl Default for Confirm {
    fn default() -> Confirm {
        Confirm {
            failures: 1,
            recoveries: 1,
        }
    }
}

impl Confirm {
    /// The runs in a row that decide `to`, coming from `from` (a first pass decides at once:
    /// there is nothing to recover from).
    fn needed(self, from: Option<Verdict>, to: Verdict) -> u32 {
        match (from, to) {
            (_, Verdict::Failing) => self.failures,
            (None, Verdict::Passing) => 1,
            (Some(_), Verdict::Passing) => self.recoveries,
        }
        .max(1)
    }
}

/// A change that has been seen but not yet confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The state the check is moving to.
    pub to: Verdict,
    /// Runs in a row that said so.
    pub seen: u32,
    /// Runs in a row that decide it.
    pub needed: u32,
}

impl fmt::Display for Pending {
    /// "failing, confirming 1 of 3" or "recovering, confirming 1 of 2".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = match self.to {
            Verdict::Failing => "failing",
            Verdict::Passing => "recovering",
        };
        write!(f, "{to}, confirming {} of {}", self.seen, self.needed)
    }
}

/// What one result did to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The state is decided anew: `from` is `None` for a check's first decision.
    Decided {
        /// The state before.
        from: Option<Verdict>,
        /// The state now.
        to: Verdict,
    },
    /// A change was seen and waits for confirmation.
    Pending(Pending),
    /// The result agrees with the decided state.
    Unchanged,
}

/// A check's decided state, the change it may be confirming, and its failures in a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    decided: Option<Verdict>,
    pending: Option<Pending>,
    consecutive_failures: u32,
}

impl Tracker {
    /// Records one result.
    pub fn record(&mut self, passed: bool, confirm: Confirm) -> Change {
        self.consecutive_failures = if passed {
            0
        } else {
            self.consecutive_failures.saturating_add(1)
        };
        let to = Verdict::of(passed);
        if self.decided == Some(to) {
            self.pending = None;
            return Change::Unchanged;
        }
        let needed = confirm.needed(self.decided, to);
        let seen = match self.pending {
            Some(pending) if pending.to == to => pending.seen.saturating_add(1),
            _ => 1,
        };
        if seen >= needed {
            let from = self.decided.replace(to);
            self.pending = None;
            Change::Decided { from, to }
        } else {
            let pending = Pending { to, seen, needed };
            self.pending = Some(pending);
            Change::Pending(pending)
        }
    }

    /// The decided state; `None` until the first decision.
    pub fn decided(&self) -> Option<Verdict> {
        self.decided
    }

    /// The change being confirmed, if any.
    pub fn pending(&self) -> Option<Pending> {
        self.pending
    }

    /// Whether the state waits on more runs: a change being confirmed (the scheduler then
    /// runs the check again after `retry_interval` instead of a whole interval).
    pub fn undecided(&self) -> bool {
        self.pending.is_some()
    }

    /// Failed runs in a row, up to now.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_TWO: Confirm = Confirm {
        failures: 3,
        recoveries: 2,
    };

    #[test]
    fn one_run_decides_by_default() {
        let mut t = Tracker::default();
        assert_eq!(
            t.record(false, Confirm::default()),
            Change::Decided {
                from: None,
                to: Verdict::Failing
            }
        );
        assert_eq!(
            t.record(true, Confirm::default()),
            Change::Decided {
                from: Some(Verdict::Failing),
                to: Verdict::Passing
            }
        );
        assert_eq!(t.record(true, Confirm::default()), Change::Unchanged);
        assert!(!t.undecided());
    }

    #[test]
    fn failures_are_confirmed_by_consecutive_runs() {
        let mut t = Tracker::default();
        assert_eq!(
            t.record(true, THREE_TWO),
            Change::Decided {
                from: None,
                to: Verdict::Passing
            }
        );
        let pending = |seen| {
            Change::Pending(Pending {
                to: Verdict::Failing,
                seen,
                needed: 3,
            })
        };
        assert_eq!(t.record(false, THREE_TWO), pending(1));
        assert_eq!(
            t.pending().unwrap().to_string(),
            "failing, confirming 1 of 3"
        );
        assert_eq!(t.record(false, THREE_TWO), pending(2));
        assert!(t.undecided());
        assert_eq!(t.decided(), Some(Verdict::Passing));
        assert_eq!(
            t.record(false, THREE_TWO),
            Change::Decided {
                from: Some(Verdict::Passing),
                to: Verdict::Failing
            }
        );
        assert_eq!(t.consecutive_failures(), 3);
        assert!(!t.undecided());
    }

    #[test]
    fn a_blip_resets_the_count() {
        let mut t = Tracker::default();
        t.record(true, THREE_TWO);
        t.record(false, THREE_TWO);
        t.record(false, THREE_TWO);
        assert_eq!(t.record(true, THREE_TWO), Change::Unchanged);
        assert_eq!(t.pending(), None);
        assert_eq!(t.consecutive_failures(), 0);
        assert!(matches!(
            t.record(false, THREE_TWO),
            Change::Pending(Pending { seen: 1, .. })
        ));
    }

    #[test]
    fn recoveries_are_confirmed_and_a_first_failure_too() {
        let mut t = Tracker::default();
        assert!(matches!(
            t.record(false, THREE_TWO),
            Change::Pending(Pending {
                to: Verdict::Failing,
                seen: 1,
                ..
            })
        ));
        assert_eq!(t.decided(), None);
        t.record(false, THREE_TWO);
        t.record(false, THREE_TWO);
        assert_eq!(t.decided(), Some(Verdict::Failing));
        let change = t.record(true, THREE_TWO);
        assert_eq!(
            change,
            Change::Pending(Pending {
                to: Verdict::Passing,
                seen: 1,
                needed: 2
            })
        );
        assert_eq!(
            t.pending().unwrap().to_string(),
            "recovering, confirming 1 of 2"
        );
        assert_eq!(
            t.record(true, THREE_TWO),
            Change::Decided {
                from: Some(Verdict::Failing),
                to: Verdict::Passing
            }
        );
    }
}
