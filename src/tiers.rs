//! The alert tiers of the multiwindow, multi-burn-rate scheme and the traffic-floor maths
//! built on them: `rules` writes the alerts, `config` rejects SLOs whose alerts could never
//! fire and sizes injectors, `nightjar slo plan` explains the numbers.
//!
//! A leaf: it imports nothing from the crate, so the configuration can use the tiers without
//! importing the rule generator (which reads the configuration).

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// One alert tier of the multiwindow, multi-burn-rate scheme.
#[derive(Debug, Clone, Copy)]
pub struct Tier {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// The long window.
    pub long: Duration,
    /// The short window (1/12 of the long one, or the Workbook's choice).
    pub short: Duration,
    /// The share of the error budget the tier lets burn in its long window.
    pub budget_share: f64,
}

/// The Workbook's four conditions (chapter 5, the YAML example), as Sloth and Grafana use.
pub const TIERS: [Tier; 4] = [
    Tier {
        severity: "page",
        long: Duration::from_secs(HOUR),
        short: Duration::from_secs(5 * MINUTE),
        budget_share: 0.02,
    },
    Tier {
        severity: "page",
        long: Duration::from_secs(6 * HOUR),
        short: Duration::from_secs(30 * MINUTE),
        budget_share: 0.05,
    },
    Tier {
        severity: "ticket",
        long: Duration::from_secs(DAY),
        short: Duration::from_secs(2 * HOUR),
        budget_share: 0.10,
    },
    Tier {
        severity: "ticket",
        long: Duration::from_secs(3 * DAY),
        short: Duration::from_secs(6 * HOUR),
        budget_share: 0.10,
    },
];

/// Extra traffic above the exact floor, so rounding and `rate()` extrapolation never let
/// exactly `k` failures page.
pub const FLOOR_MARGIN: f64 = 0.2;

/// A tier's burn-rate factor for an SLO window: the budget share times window over the
/// tier's long window (14.4, 6, 3 and 1 for 30 days).
pub fn tier_factor(tier: Tier, window: Duration) -> f64 {
    tier.budget_share * window.as_secs_f64() / tier.long.as_secs_f64()
}

/// A tier's alert threshold for an SLO: the error ratio above which it fires, its burn-rate
/// factor `B` times the error budget: `B·(1−S)` (`objective` is `S`, `window` the SLO window).
pub fn tier_threshold(tier: Tier, window: Duration, objective: f64) -> f64 {
    tier_factor(tier, window) * (1.0 - objective)
}

/// The request rate (per second) at which `k` failures in a tier's long window stay below
/// its threshold: `k / (B·(1−S)·W)`.
/// `tolerated_failures` is `k`, `objective` is `S`, `window` the SLO window.
pub fn floor_rate(tier: Tier, window: Duration, objective: f64, tolerated_failures: u32) -> f64 {
    f64::from(tolerated_failures)
        / (tier_threshold(tier, window, objective) * tier.long.as_secs_f64())
}

/// The binding floor of an SLO (the largest [`floor_rate`] over its tiers), with the margin.
pub fn binding_floor(window: Duration, objective: f64, tolerated_failures: u32) -> f64 {
    TIERS
        .iter()
        .map(|tier| floor_rate(*tier, window, objective, tolerated_failures))
        .fold(0.0, f64::max)
        * (1.0 + FLOOR_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_for_thirty_days() {
        let month = Duration::from_secs(30 * DAY);
        let factors: Vec<f64> = TIERS
            .iter()
            .map(|tier| (tier_factor(*tier, month) * 10.0).round() / 10.0)
            .collect();
        assert_eq!(factors, [14.4, 6.0, 3.0, 1.0]);
    }
}
