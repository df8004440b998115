//! The `[[slo]]` tables and the `[rules]` table.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use toml::de::DeValue;

use super::{RulesConfig, SliSource, Slo};
use crate::reader::{Diags, Table, Value, as_int, read_labels};
use crate::tiers::{TIERS, tier_factor};

/// Label names the generated rules set themselves.
const RESERVED: &[&str] = &[
    "slo",
    "severity",
    "check",
    "region",
    "type",
    "tier",
    "sloth_id",
    "sloth_service",
    "sloth_slo",
    "sloth_window",
];

pub(super) fn read_rules(d: &Diags<'_>, value: &Value<'_>) -> Option<RulesConfig> {
    let table = Table::new(d, value, "[rules]", &crate::keys::RULES)?;
    let mut rules = RulesConfig::default();
    if let Some((lead, _)) = table.duration("expiry_warning") {
        rules.expiry_warning = lead;
    }
    if let Some((lead, _)) = table.duration("expiry_critical") {
        rules.expiry_critical = lead;
    }
    if rules.expiry_critical >= rules.expiry_warning {
        let span = table
            .key_span("expiry_critical")
            .unwrap_or_else(|| table.span());
        d.error_hint(
            &span,
            "`expiry_critical` must be shorter than `expiry_warning`",
            "like expiry_warning = \"21d\", expiry_critical = \"7d\"",
        );
    }
    rules.quorum = match table.int("quorum") {
        None => None,
        Some((n, _)) if n >= 1 => Some(n as usize),
        Some((n, span)) => {
            d.error(&span, format!("`quorum` must be at least 1, found {n}"));
            None
        }
    };
    if let Some((every, _)) = table.duration("quorum_for") {
        rules.quorum_for = every;
    }
    rules.sloth_naming = match table.str("naming") {
        None | Some(("nightjar", _)) => false,
        Some(("sloth", _)) => true,
        Some((other, span)) => {
            d.error_hint(
                &span,
                format!("unknown naming {other:?}"),
                "use \"nightjar\" or \"sloth\"",
            );
            false
        }
    };
    table.finish();
    Some(rules)
}

/// Reads an `[[slo]]`. `check_names` are the valid checks; `failed_checks` those defined but
/// invalid, which an SLO may name without a problem of its own (it is then left out).
pub(super) fn read_slo(
    table: Table<'_>,
    check_names: &[String],
    failed_checks: &BTreeSet<String>,
    buckets: &[f64],
) -> Option<Slo> {
    let d = table.diags();
    let errors_before = d.error_count();
    let name = table.name("SLO", "name the SLO, like name = \"shop-availability\"");
    let table = match &name {
        Some(name) => table.renamed(format!("SLO {name:?}")),
        None => table,
    };
    let objective = read_objective(&table);
    let window = read_window(&table);
    let source = read_source(&table, check_names, failed_checks, buckets);
    let exclude_maintenance = read_exclude_maintenance(&table, source.as_ref());
    let tolerated_failures = read_tolerated_failures(&table);
    let virtual_floor = read_floor(&table);
    let labels: BTreeMap<String, String> =
        read_labels(&table, "labels", RESERVED, &BTreeMap::new());
    let service = read_service(&table);
    if let (Some(objective), Some(window)) = (objective, window) {
        check_tiers_can_fire(&table, objective, window);
    }
    table.finish();
    if d.error_count() > errors_before {
        return None;
    }
    let name = name?;
    Some(Slo {
        service: service.unwrap_or_else(|| name.clone()),
        name,
        objective: objective?,
        window: window?,
        source: source?,
        tolerated_failures,
        virtual_floor,
        exclude_maintenance,
        labels,
    })
}

/// `exclude_maintenance`: runs taken in a maintenance window count neither as good nor as bad
/// events. Only for SLIs from checks: nightjar counts those runs apart.
fn read_exclude_maintenance(table: &Table<'_>, source: Option<&SliSource>) -> bool {
    let exclude = table.bool("exclude_maintenance").unwrap_or(false);
    if exclude && matches!(source, Some(SliSource::Queries { .. })) {
        let span = table
            .key_span("exclude_maintenance")
            .unwrap_or_else(|| table.span());
        table.diags().error_hint(
            &span,
            "exclude_maintenance applies to SLIs from checks",
            "leave maintenance out in the PromQL of `errors` and `total`, or remove exclude_maintenance",
        );
    }
    exclude
}

/// `objective`: a ratio strictly between 0 and 1 (a percentage gets a hint).
fn read_objective(table: &Table<'_>) -> Option<f64> {
    let d = table.diags();
    let Some(value) = table.get("objective") else {
        table.missing("objective", "set the target, like objective = 0.999");
        return None;
    };
    let number = match value.get_ref() {
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        DeValue::Integer(_) => as_int(value.get_ref()).map(|n| n as f64),
        _ => None,
    };
    match number {
        Some(objective) if objective > 0.0 && objective < 1.0 => Some(objective),
        Some(objective) if objective > 1.0 && objective < 100.0 => {
            d.error_hint(
                &value.span(),
                format!("objective {objective} is not a ratio"),
                format!(
                    "write it as a ratio, like objective = {}",
                    objective / 100.0
                ),
            );
            None
        }
        _ => {
            d.error_hint(
                &value.span(),
                "the objective must be a ratio between 0 and 1, like 0.999",
                "an objective of 1 has no error budget: any failure burns it all and the alert can never clear",
            );
            None
        }
    }
}

/// `window`: 30 days unless given; never shorter than the longest alert window.
fn read_window(table: &Table<'_>) -> Option<Duration> {
    let Some((window, span)) = table.duration("window") else {
        return Some(Duration::from_secs(30 * 86_400));
    };
    let longest = TIERS.iter().map(|tier| tier.long).max().unwrap_or_default();
    if window < longest {
        table.diags().error_hint(
            &span,
            format!(
                "window {} is shorter than the longest alert window (3d)",
                humantime::format_duration(window)
            ),
            "SLO windows are usually 28d or 30d",
        );
    }
    Some(window)
}

/// The SLI: `checks` (with an optional `latency`), or the `errors` and `total` queries.
fn read_source(
    table: &Table<'_>,
    check_names: &[String],
    failed_checks: &BTreeSet<String>,
    buckets: &[f64],
) -> Option<SliSource> {
    let d = table.diags();
    let checks = table.str_list("checks");
    let errors = table.str("errors");
    let total = table.str("total");
    let latency = table.duration("latency");
    match (checks, errors, total) {
        (Some(list), None, None) => {
            checks_source(table, list, latency, check_names, failed_checks, buckets)
        }
        (None, Some(errors), Some(total)) => Some(queries_source(d, errors, total, latency)),
        (None, None, None) => {
            table.missing(
                "checks",
                "give the checks the SLI comes from, or errors and total PromQL queries",
            );
            None
        }
        _ => {
            d.error_hint(
                &table.span(),
                format!(
                    "{} must have either `checks`, or both `errors` and `total`",
                    table.what()
                ),
                "keep one SLI source",
            );
            None
        }
    }
}

/// An SLI from nightjar's own checks: each listed check must exist (one defined but invalid
/// leaves the SLO out without a problem of its own), and `latency` must be a bucket edge.
fn checks_source(
    table: &Table<'_>,
    list: Vec<(&str, Range<usize>)>,
    latency: Option<(Duration, Range<usize>)>,
    check_names: &[String],
    failed_checks: &BTreeSet<String>,
    buckets: &[f64],
) -> Option<SliSource> {
    let d = table.diags();
    let mut names = Vec::new();
    let mut cascaded = false;
    for (check, span) in list {
        if check_names.iter().any(|known| known == check) {
            names.push(check.to_string());
        } else if failed_checks.contains(check) {
            // Defined, but invalid: its own problem is reported where it is defined.
            cascaded = true;
        } else {
            let candidates: Vec<&str> = check_names.iter().map(String::as_str).collect();
            let hint = match crate::reader::closest(check, &candidates) {
                Some(best) => format!("did you mean {best:?}?"),
                None => "list checks defined in [[check]] tables".to_string(),
            };
            d.error_hint(&span, format!("no check named {check:?}"), hint);
        }
    }
    if names.is_empty() && !cascaded {
        let span = table.key_span("checks").unwrap_or_else(|| table.span());
        d.error(&span, "`checks` lists no check");
    }
    let latency = latency.and_then(|(threshold, span)| latency_edge(d, threshold, &span, buckets));
    (!cascaded).then_some(SliSource::Checks { names, latency })
}

/// The latency threshold in seconds, if it is one of the duration histogram's bucket edges.
fn latency_edge(
    d: &Diags<'_>,
    threshold: Duration,
    span: &Range<usize>,
    buckets: &[f64],
) -> Option<f64> {
    let seconds = threshold.as_secs_f64();
    if buckets.iter().any(|edge| (edge - seconds).abs() < 1e-9) {
        return Some(seconds);
    }
    let edges: Vec<String> = buckets.iter().map(|edge| format!("{edge}s")).collect();
    d.error_hint(
        span,
        format!(
            "latency threshold {} is not a bucket edge of {}",
            humantime::format_duration(threshold),
            crate::metrics::names::CHECK_DURATION
        ),
        format!(
            "add it to [agent] duration_buckets, or pick one of {}",
            edges.join(", ")
        ),
    );
    None
}

/// An SLI from service metrics: both queries take a `$window`; `latency` does not apply.
fn queries_source(
    d: &Diags<'_>,
    (errors, errors_span): (&str, Range<usize>),
    (total, total_span): (&str, Range<usize>),
    latency: Option<(Duration, Range<usize>)>,
) -> SliSource {
    for (query, span, key) in [
        (errors, &errors_span, "errors"),
        (total, &total_span, "total"),
    ] {
        if !query.contains("$window") {
            d.error_hint(
                span,
                format!("`{key}` has no $window placeholder"),
                "write the range as [$window], like sum(rate(http_requests_total{job=\"shop\"}[$window]))",
            );
        }
    }
    if let Some((_, span)) = latency {
        d.error_hint(
            &span,
            "`latency` goes with `checks`",
            "for a latency SLI from service metrics, write it in errors/total",
        );
    }
    SliSource::Queries {
        errors: errors.to_string(),
        total: total.to_string(),
    }
}

/// `tolerated_failures`: 1 unless given, at most 1000.
fn read_tolerated_failures(table: &Table<'_>) -> u32 {
    match table.int("tolerated_failures") {
        None => 1,
        Some((k, _)) if (0..=1000).contains(&k) => k as u32,
        Some((k, span)) => {
            table.diags().error(
                &span,
                format!("`tolerated_failures` must be between 0 and 1000, found {k}"),
            );
            1
        }
    }
}

/// `floor`: whether the SLO has a virtual floor.
fn read_floor(table: &Table<'_>) -> bool {
    match table.str("floor") {
        None | Some(("none", _)) => false,
        Some(("virtual", _)) => true,
        Some((other, span)) => {
            table.diags().error_hint(
                &span,
                format!("unknown floor {other:?}"),
                "use \"none\" or \"virtual\"",
            );
            false
        }
    }
}

/// `service`, validated like a check name.
fn read_service(table: &Table<'_>) -> Option<String> {
    let (service, span) = table.str("service")?;
    if !crate::reader::valid_check_name(service) {
        table
            .diags()
            .error(&span, format!("service name {service:?} is not valid"));
    }
    Some(service.to_string())
}

/// An alert whose threshold needs an error ratio above 1 can never fire.
fn check_tiers_can_fire(table: &Table<'_>, objective: f64, window: Duration) {
    let budget = 1.0 - objective;
    for tier in TIERS {
        let factor = tier_factor(tier, window);
        if factor * budget >= 1.0 {
            let span = table.key_span("objective").unwrap_or_else(|| table.span());
            table.diags().error_hint(
                &span,
                format!(
                    "with objective {objective} the {} alert ({} window, {:.1}x burn) needs an error ratio of {:.2}, above 1: it could never fire",
                    tier.severity,
                    humantime::format_duration(tier.long),
                    factor,
                    factor * budget
                ),
                "raise the objective (an objective below about 0.93 cannot page on the 1h window)",
            );
            break;
        }
    }
}
