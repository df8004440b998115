//! `[agent] metrics`'s effect on the duration histogram's edges: with lean metrics and no
//! `duration_buckets`, the edges are [`LEAN_DURATION_BUCKETS`] plus the latency threshold of
//! every `[[slo]]`, which may be any edge of [`DEFAULT_DURATION_BUCKETS`] (so an SLO that
//! validated with the full default edges still does).

use super::{
    AgentConfig, DEFAULT_DURATION_BUCKETS, LEAN_DURATION_BUCKETS, MetricsMode, SliSource, Slo,
};

/// Whether `agent` has the lean default edges (no `duration_buckets` given).
fn lean_defaults(agent: &AgentConfig) -> bool {
    agent.metrics == MetricsMode::Lean && agent.duration_buckets == LEAN_DURATION_BUCKETS
}

/// The edges an SLO's latency threshold may be.
pub(super) fn slo_edges(agent: &AgentConfig) -> &[f64] {
    if lean_defaults(agent) {
        DEFAULT_DURATION_BUCKETS
    } else {
        &agent.duration_buckets
    }
}

/// Adds each SLO's latency threshold to the lean default edges.
pub(super) fn add_slo_edges(agent: &mut AgentConfig, slos: &[Slo]) {
    if !lean_defaults(agent) {
        return;
    }
    for slo in slos {
        if let SliSource::Checks {
            latency: Some(threshold),
            ..
        } = slo.source
            && !agent
                .duration_buckets
                .iter()
                .any(|edge| (edge - threshold).abs() < 1e-9)
        {
            agent.duration_buckets.push(threshold);
        }
    }
    agent.duration_buckets.sort_by(f64::total_cmp);
}
