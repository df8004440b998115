//! The discovery sources' series, by template (`check`) and source (`source`, as
//! `discovery::Source::describe` shows it): the targets each gives now, its failed refreshes,
//! and when it was last read whole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::names::{self, label};
use super::{counter_vec, gauge_vec, register};

/// The three families, and which (check, source) pairs have series, so a template's can be
/// removed whole.
pub struct DiscoveryMetrics {
    targets: IntGaugeVec,
    failures: IntCounterVec,
    last_success: GaugeVec,
    known: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl DiscoveryMetrics {
    pub(super) fn register(registry: &Registry) -> DiscoveryMetrics {
        let labels = &[label::CHECK, label::SOURCE];
        DiscoveryMetrics {
            targets: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        names::DISCOVERY_TARGETS,
                        "Targets each discovery source of a template gives now (its last good set while it fails).",
                    ),
                    labels,
                )
                .expect("metric definitions are valid"),
            ),
            failures: counter_vec(
                registry,
                names::DISCOVERY_FAILURES,
                "Refreshes of each discovery source that failed (the last good targets were kept).",
                labels,
            ),
            last_success: gauge_vec(
                registry,
                names::DISCOVERY_LAST_SUCCESS,
                "When each discovery source was last read whole, Unix seconds.",
                labels,
            ),
            known: Mutex::new(BTreeMap::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<String>>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets a template's sources: the failure counters of new ones start at 0, the series of
    /// sources it no longer has go; kept ones keep counting.
    pub fn set_sources(&self, check: &str, sources: &[String]) {
        let wanted: BTreeSet<String> = sources.iter().cloned().collect();
        let mut known = self.known();
        let had = known.remove(check).unwrap_or_default();
        for gone in had.difference(&wanted) {
            self.remove_pair(check, gone);
        }
        for source in &wanted {
            self.failures.with_label_values(&[check, source]).inc_by(0);
        }
        known.insert(check.to_string(), wanted);
    }

    /// Records a refresh of `source` that read it whole: `targets` now.
    pub fn refreshed(&self, check: &str, source: &str, targets: usize) {
        self.note(check, source);
        self.targets
            .with_label_values(&[check, source])
            .set(i64::try_from(targets).unwrap_or(i64::MAX));
        self.last_success
            .with_label_values(&[check, source])
            .set(super::unix_now());
    }

    /// Records a failed refresh of `source`, which keeps `targets`.
    pub fn failed(&self, check: &str, source: &str, targets: usize) {
        self.note(check, source);
        self.failures.with_label_values(&[check, source]).inc();
        self.targets
            .with_label_values(&[check, source])
            .set(i64::try_from(targets).unwrap_or(i64::MAX));
    }

    /// Removes every series of the template `check` (it went away).
    pub fn remove(&self, check: &str) {
        let had = self.known().remove(check).unwrap_or_default();
        for source in had {
            self.remove_pair(check, &source);
        }
    }

    fn note(&self, check: &str, source: &str) {
        let mut known = self.known();
        let sources = known.entry(check.to_string()).or_default();
        if !sources.contains(source) {
            sources.insert(source.to_string());
            self.failures.with_label_values(&[check, source]).inc_by(0);
        }
    }

    fn remove_pair(&self, check: &str, source: &str) {
        let _ = self.targets.remove_label_values(&[check, source]);
        let _ = self.failures.remove_label_values(&[check, source]);
        let _ = self.last_success.remove_label_values(&[check, source]);
    }
}

/// The [`crate::discovery::Report`] hook that records every refresh in `metrics`.
pub fn report_to(metrics: std::sync::Arc<super::Metrics>) -> crate::discovery::Report {
    std::sync::Arc::new(move |check, source, result| {
        let source = source.describe();
        match result {
            crate::discovery::SourceResult::Ok { targets } => {
                metrics.discovery.refreshed(check, &source, targets);
            }
            crate::discovery::SourceResult::Failed { targets, .. } => {
                metrics.discovery.failed(check, &source, targets);
            }
        }
    })
}
