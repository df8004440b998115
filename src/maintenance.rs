//! Planned work: maintenance windows, from `[[maintenance]]` tables and from the API.
//!
//! A window covers checks by name, by label matches, or all of them, either between two fixed
//! times or for a `duration` after each firing of a cron expression (UTC). During a window a
//! check's state reads "maintenance", its `nightjar_check_maintenance` series is 1 (the
//! generated rules do not page while it is), and with `mode = "skip"` it does not run at all.
//!
//! A leaf: it imports nothing from the crate, so `config` reads windows into it and the
//! scheduler, the agent and the server share one [`Maintenance`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Whether runs go on in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Runs go on; their results are marked as taken in maintenance.
    #[default]
    Mark,
    /// No run starts while the window is open.
    Skip,
}

impl Mode {
    /// `mark` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mark => "mark",
            Mode::Skip => "skip",
        }
    }
}

/// When a window is open.
#[derive(Debug, Clone)]
pub enum When {
    /// From `start` (inclusive) to `end` (exclusive).
    Between {
        /// Opens.
        start: SystemTime,
        /// Closes.
        end: SystemTime,
    },
    /// For `duration` after each firing of a cron expression, in UTC.
    Cron {
        /// The expression.
        schedule: Box<cron::Schedule>,
        /// As written, for display.
        expr: String,
        /// How long each window lasts.
        duration: Duration,
    },
}

/// Which checks a window covers: the named ones and those whose labels match all of `labels`;
/// with neither, every check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Check names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Labels a check must all carry, with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    /// Whether the check `name` with `labels` is covered.
    pub fn covers(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.checks.is_empty() && self.labels.is_empty() {
            return true;
        }
        // A template's name covers each of its targets' checks (`TEMPLATE@INSTANCE`).
        let template = name.split_once('@').map(|(template, _)| template);
        self.checks
            .iter()
            .any(|check| check == name || Some(check.as_str()) == template)
            || (!self.labels.is_empty()
                && self
                    .labels
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value)))
    }
}

/// One window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Its name (`[[maintenance]] name`) or, for one made through the API, its id.
    pub name: String,
    /// When it is open.
    pub when: When,
    /// What it covers.
    pub selector: Selector,
    /// Whether runs go on.
    pub mode: Mode,
    /// Why, as given (shown on the page).
    pub reason: Option<String>,
    /// Whether it came from the API (it can be ended there, and is kept in the state dir).
    pub ad_hoc: bool,
}

/// A window that is open now, as a check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The window's name.
    pub name: Arc<str>,
    /// Whether runs go on.
    pub mode: Mode,
    /// When it closes.
    pub until: SystemTime,
    /// Why.
    pub reason: Option<Arc<str>>,
}

impl Window {
    /// When the window open at `at` closes, if it is open then.
    pub fn open_until(&self, at: SystemTime) -> Option<SystemTime> {
        match &self.when {
            When::Between { start, end } => (*start <= at && at < *end).then_some(*end),
            When::Cron {
                schedule, duration, ..
            } => {
                // The first firing after `at - duration`, if it is not after `at`, opened a
                // window that is still open; a later overlapping one extends it.
                let from = at.checked_sub(*duration)?;
                let mut until = None;
                for firing in schedule.after(&chrono_of(from)).take(64) {
                    let firing = SystemTime::from(firing);
                    if firing > at {
                        break;
                    }
                    until = Some(firing + *duration);
                }
                until
            }
        }
    }

    /// The first time after `at` at which the window opens or closes.
    pub fn next_change(&self, at: SystemTime) -> Option<SystemTime> {
        if let Some(until) = self.open_until(at) {
            return Some(until);
        }
        match &self.when {
            When::Between { start, .. } => (*start > at).then_some(*start),
            When::Cron { schedule, .. } => {
                schedule.after(&chrono_of(at)).next().map(SystemTime::from)
            }
        }
    }

    /// When it opens and closes, for display: RFC 3339 times or the cron expression and
    /// duration.
    pub fn describe(&self) -> String {
        match &self.when {
            When::Between { start, end } => {
                format!(
                    "{} to {}",
                    chrono_of(*start).to_rfc3339(),
                    chrono_of(*end).to_rfc3339()
                )
            }
            When::Cron { expr, duration, .. } => {
                format!("cron \"{expr}\" for {}s", duration.as_secs())
            }
        }
    }
}

fn chrono_of(at: SystemTime) -> chrono::DateTime<chrono::Utc> {
    at.into()
}

/// An ad hoc window as the API takes it and the state dir keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdHoc {
    /// Its id, `adhoc-` and a number.
    pub id: String,
    /// When it was opened, Unix seconds.
    pub start: i64,
    /// When it closes, Unix seconds.
    pub end: i64,
    /// What it covers.
    #[serde(flatten)]
    pub selector: Selector,
    /// Whether runs go on.
    #[serde(default)]
    pub mode: Mode,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AdHoc {
    fn window(&self) -> Window {
        let at = |secs: i64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        };
        Window {
            name: self.id.clone(),
            when: When::Between {
                start: at(self.start),
                end: at(self.end),
            },
            selector: self.selector.clone(),
            mode: self.mode,
            reason: self.reason.clone(),
            ad_hoc: true,
        }
    }
}

/// How many ad hoc windows may be open at once: the API refuses more.
pub const MAX_AD_HOC: usize = 256;

/// Every window the agent knows: the configured ones (replaced on reload) and the ad hoc
/// ones (added and ended through the API; closed ones are forgotten).
#[derive(Debug, Default)]
pub struct Maintenance {
    configured: RwLock<Arc<Vec<Window>>>,
    ad_hoc: RwLock<Vec<(AdHoc, Window)>>,
    /// Bumped on every change, so the state file knows it has something to write.
    changes: std::sync::atomic::AtomicU64,
}

impl Maintenance {
    /// A set with the configured `windows`.
    pub fn new(windows: Vec<Window>) -> Maintenance {
        Maintenance {
            configured: RwLock::new(Arc::new(windows)),
            ..Maintenance::default()
        }
    }

    /// Replaces the configured windows (a reload); ad hoc ones stay.
    pub fn reconfigure(&self, windows: Vec<Window>) {
        *self
            .configured
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(windows);
        self.bump();
    }

    /// The window covering the check `name` (with `labels`) that is open at `at`: a skipping
    /// one before a marking one, then the one closing last.
    pub fn open_for(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        at: SystemTime,
    ) -> Option<Open> {
        let mut best: Option<Open> = None;
        self.each(|window| {
            if !window.selector.covers(name, labels) {
                return;
            }
            let Some(until) = window.open_until(at) else {
                return;
            };
            let better = best.as_ref().is_none_or(|open| {
                (window.mode == Mode::Skip, until) > (open.mode == Mode::Skip, open.until)
            });
            if better {
                best = Some(Open {
                    name: Arc::from(window.name.as_str()),
                    mode: window.mode,
                    until,
                    reason: window.reason.as_deref().map(Arc::from),
                });
            }
        });
        best
    }

    /// The first time after `at` at which any window opens or closes.
    pub fn next_change(&self, at: SystemTime) -> Option<SystemTime> {
        let mut next: Option<SystemTime> = None;
        self.each(|window| {
            if let Some(change) = window.next_change(at) {
                next = Some(next.map_or(change, |next| next.min(change)));
            }
        });
        next
    }

    fn each(&self, mut f: impl FnMut(&Window)) {
        let configured = self
            .configured
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        configured.iter().for_each(&mut f);
        let ad_hoc = self
            .ad_hoc
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ad_hoc.iter().for_each(|(_, window)| f(window));
    }

    /// Opens an ad hoc window; `None` when [`MAX_AD_HOC`] are open already.
    pub fn add(
        &self,
        selector: Selector,
        mode: Mode,
        duration: Duration,
        reason: Option<String>,
        now: SystemTime,
    ) -> Option<AdHoc> {
        let start = unix(now);
        let end = start.saturating_add(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX));
        let mut ad_hoc = self.ad_hoc_mut();
        ad_hoc.retain(|(window, _)| window.end > start);
        if ad_hoc.len() >= MAX_AD_HOC {
            return None;
        }
        let serial = ad_hoc
            .iter()
            .filter_map(|(window, _)| window.id.strip_prefix("adhoc-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            .max(u64::try_from(start).unwrap_or(0))
            + 1;
        let window = AdHoc {
            id: format!("adhoc-{serial}"),
            start,
            end,
            selector,
            mode,
            reason,
        };
        ad_hoc.push((window.clone(), window.window()));
        drop(ad_hoc);
        self.bump();
        Some(window)
    }

    /// Ends the ad hoc window `id`; whether there was one.
    pub fn end(&self, id: &str) -> bool {
        let mut ad_hoc = self.ad_hoc_mut();
        let before = ad_hoc.len();
        ad_hoc.retain(|(window, _)| window.id != id);
        let ended = ad_hoc.len() != before;
        drop(ad_hoc);
        if ended {
            self.bump();
        }
        ended
    }

    /// The ad hoc windows not yet closed at `now`, oldest first.
    pub fn ad_hoc(&self, now: SystemTime) -> Vec<AdHoc> {
        let now = unix(now);
        let ad_hoc = self
            .ad_hoc
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ad_hoc
            .iter()
            .filter(|(window, _)| window.end > now)
            .map(|(window, _)| window.clone())
            .collect()
    }

    /// Restores ad hoc windows from the state dir (closed ones are dropped).
    pub fn restore(&self, windows: Vec<AdHoc>, now: SystemTime) {
        let now = unix(now);
        let mut ad_hoc = self.ad_hoc_mut();
        for window in windows.into_iter().take(MAX_AD_HOC) {
            if window.end > now && !ad_hoc.iter().any(|(known, _)| known.id == window.id) {
                let compiled = window.window();
                ad_hoc.push((window, compiled));
            }
        }
    }

    /// The configured windows, for the page and the API.
    pub fn configured(&self) -> Arc<Vec<Window>> {
        self.configured
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A number that changes whenever a window is added, ended or reconfigured.
    pub fn generation(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn bump(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn ad_hoc_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(AdHoc, Window)>> {
        self.ad_hoc
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn selectors_cover_names_labels_or_everything() {
        let all = Selector::default();
        assert!(all.covers("web", &labels(&[])));
        let named = Selector {
            checks: vec!["web".into()],
            labels: BTreeMap::new(),
        };
        assert!(named.covers("web", &labels(&[])));
        assert!(!named.covers("api", &labels(&[])));
        let team = Selector {
            checks: vec![],
            labels: labels(&[("team", "db"), ("env", "prod")]),
        };
        assert!(team.covers(
            "pg",
            &labels(&[("team", "db"), ("env", "prod"), ("x", "y")])
        ));
        assert!(!team.covers("pg", &labels(&[("team", "db")])));
    }

    #[test]
    fn cron_windows_open_for_their_duration_after_each_firing() {
        // 02:00 UTC every day, for 30 minutes.
        let window = Window {
            name: "nightly".into(),
            when: When::Cron {
                schedule: Box::new(cron::Schedule::from_str("0 0 2 * * *").unwrap()),
                expr: "0 2 * * *".into(),
                duration: Duration::from_secs(1800),
            },
            selector: Selector::default(),
            mode: Mode::Mark,
            reason: None,
            ad_hoc: false,
        };
        let day = 86_400;
        let two = 2 * 3600;
        assert_eq!(window.open_until(at(day + two - 1)), None);
        assert_eq!(window.next_change(at(day + two - 1)), Some(at(day + two)));
        assert_eq!(window.open_until(at(day + two)), Some(at(day + two + 1800)));
        assert_eq!(
            window.open_until(at(day + two + 1799)),
            Some(at(day + two + 1800))
        );
        assert_eq!(window.open_until(at(day + two + 1800)), None);
        assert_eq!(
            window.next_change(at(day + two + 1800)),
            Some(at(2 * day + two))
        );
    }

    #[test]
    fn ad_hoc_windows_open_end_and_restore() {
        let set = Maintenance::new(vec![Window {
            name: "fixed".into(),
            when: When::Between {
                start: at(100),
                end: at(200),
            },
            selector: Selector {
                checks: vec!["web".into()],
                labels: BTreeMap::new(),
            },
            mode: Mode::Mark,
            reason: None,
            ad_hoc: false,
        }]);
        assert_eq!(set.open_for("web", &labels(&[]), at(50)), None);
        assert_eq!(
            set.open_for("web", &labels(&[]), at(150)).unwrap().until,
            at(200)
        );
        let added = set
            .add(
                Selector::default(),
                Mode::Skip,
                Duration::from_secs(60),
                Some("deploy".into()),
                at(160),
            )
            .unwrap();
        // The skipping window wins over the marking one.
        let open = set.open_for("web", &labels(&[]), at(170)).unwrap();
        assert_eq!((open.mode, open.until), (Mode::Skip, at(220)));
        assert_eq!(set.next_change(at(170)), Some(at(200)));
        assert_eq!(set.ad_hoc(at(170)), vec![added.clone()]);

        let restored = Maintenance::default();
        restored.restore(set.ad_hoc(at(170)), at(170));
        assert!(restored.open_for("api", &labels(&[]), at(171)).is_some());
        assert!(set.end(&added.id));
        assert!(!set.end(&added.id));
        assert_eq!(set.open_for("api", &labels(&[]), at(171)), None);
        // Closed windows are not restored.
        let late = Maintenance::default();
        late.restore(vec![added], at(500));
        assert!(late.ad_hoc(at(500)).is_empty());
    }
}
