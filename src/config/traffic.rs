//! The `[[traffic]]` tables: synthetic good traffic for quiet hours.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::{ActiveWindow, CheckDef, Fallback, Slo, TrafficDef};
use crate::checks::CheckSpec;
use crate::checks::flow::{Part, Template};
use crate::reader::{Diags, Table};
use crate::synthetic::synthetic_header;

const DEFAULT_MAX_RATE: f64 = 5.0;
/// The highest `floor` or `max_rate` accepted, in requests per second. A floor exists to carry
/// quiet hours; a thousand requests a second is load generation, and a typo (`1e9/s`) must not
/// turn the injector into one.
pub const MAX_INJECT_RATE: f64 = 1000.0;
const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn read_traffic(
    table: Table<'_>,
    checks: &[Arc<CheckDef>],
    slos: &[Slo],
    failed: &crate::reader::Failed,
) -> Option<TrafficDef> {
    let d = table.diags();
    let errors_before = d.error_count();
    let name = table.name(
        "traffic",
        "name the injector, like name = \"shop-night-floor\"",
    );
    let table = match &name {
        Some(name) => table.renamed(format!("traffic {name:?}")),
        None => table,
    };
    let (slo_name, floor) = read_floor(&table, slos, failed);
    let mut secrets = Vec::new();
    let mut check_revision = 0u64;
    let request = read_request(&table, checks, failed, &mut secrets, &mut check_revision);
    let (prometheus, real_rate) = read_real_rate(&table);
    let max_rate = read_max_rate(&table);
    let refresh = table
        .duration("refresh")
        .map_or(DEFAULT_REFRESH, |(every, _)| every);
    let timeout = table
        .duration("timeout")
        .map_or(DEFAULT_TIMEOUT, |(limit, _)| limit);
    let poisson = read_arrivals(&table);
    let fallback = read_fallback(&table);
    let active = read_active_hours(&table);
    let written = table.written();
    table.finish();
    if d.error_count() > errors_before {
        return None;
    }
    let floor = floor?;
    let outside = format!("{check_revision} {floor}");
    let revision = super::revision(&written, &outside, &secrets);
    Some(TrafficDef {
        name: name?,
        request: mark(request?),
        slo: slo_name,
        floor,
        prometheus,
        real_rate,
        max_rate,
        refresh,
        poisson,
        active,
        fallback,
        timeout,
        secrets,
        revision,
    })
}

/// The floor: from an SLO's alert tiers (`slo`, whose name is returned too), or given
/// (`floor`).
fn read_floor(
    table: &Table<'_>,
    slos: &[Slo],
    failed: &crate::reader::Failed,
) -> (Option<String>, Option<f64>) {
    let d = table.diags();
    let slo = table.str("slo");
    let floor = table.str("floor");
    match (slo, floor) {
        (Some((slo_name, span)), None) => slo_floor(d, slo_name, &span, slos, failed),
        (None, Some((text, span))) => match parse_rate(text) {
            Some(rate) if rate > MAX_INJECT_RATE => {
                d.error_hint(
                    &span,
                    format!("floor {text:?} is above {MAX_INJECT_RATE:.0}/s"),
                    "a floor carries quiet hours; write it like \"100/h\" or \"2/s\" (at most 1000/s)",
                );
                (None, None)
            }
            Some(rate) => (None, Some(rate)),
            None => {
                d.error_hint(
                    &span,
                    format!("floor {text:?} is not a rate"),
                    "write it like \"100/h\", \"2/m\" or \"0.5/s\"",
                );
                (None, None)
            }
        },
        (Some((_, span)), Some(_)) => {
            d.error_hint(
                &span,
                format!("{} sets both `slo` and `floor`", table.what()),
                "keep one",
            );
            (None, None)
        }
        (None, None) => {
            table.missing("slo", "derive the floor from an SLO (slo = \"shop-availability\"), or set floor = \"100/h\"");
            (None, None)
        }
    }
}

/// The floor the SLO named `slo_name` needs to be able to page.
fn slo_floor(
    d: &Diags<'_>,
    slo_name: &str,
    span: &Range<usize>,
    slos: &[Slo],
    failed: &crate::reader::Failed,
) -> (Option<String>, Option<f64>) {
    match slos.iter().find(|slo| slo.name == slo_name) {
        Some(slo) => {
            let floor =
                crate::tiers::binding_floor(slo.window, slo.objective, slo.tolerated_failures);
            if floor > MAX_INJECT_RATE {
                d.error_hint(
                    span,
                    format!(
                        "SLO {slo_name:?} needs a floor of {floor:.0}/s, above the {MAX_INJECT_RATE:.0}/s an injector may send"
                    ),
                    "an objective this strict needs real traffic, not a synthetic floor; set a lower floor = \"...\" or loosen the SLO",
                );
                (None, None)
            } else {
                (Some(slo.name.clone()), Some(floor))
            }
        }
        // Defined but invalid: reported where it is defined.
        None if failed.slos.contains(slo_name) => (None, None),
        None => {
            let names: Vec<&str> = slos.iter().map(|slo| slo.name.as_str()).collect();
            let hint = match crate::reader::closest(slo_name, &names) {
                Some(best) => format!("did you mean {best:?}?"),
                None => "name an SLO defined in [[slo]], or set floor = \"100/h\"".to_string(),
            };
            d.error_hint(span, format!("no SLO named {slo_name:?}"), hint);
            (None, None)
        }
    }
}

/// The request: a check's (`check`, whose revision and secrets the injector takes on), or an
/// inline one with the keys of an http check.
fn read_request(
    table: &Table<'_>,
    checks: &[Arc<CheckDef>],
    failed: &crate::reader::Failed,
    secrets: &mut Vec<String>,
    check_revision: &mut u64,
) -> Option<CheckSpec> {
    let d = table.diags();
    match (table.str("check"), table.key_span("url")) {
        (Some((check, span)), None) => match checks.iter().find(|def| &*def.name == check) {
            Some(def) => match &def.spec {
                CheckSpec::Http(_) | CheckSpec::Flow(_) => {
                    *check_revision = def.revision;
                    secrets.extend(def.secrets.iter().cloned());
                    Some(def.spec.clone())
                }
                _ => {
                    d.error_hint(
                        &span,
                        format!("check {check:?} is a {} check", def.kind().as_str()),
                        "traffic sends the request of an http or flow check",
                    );
                    None
                }
            },
            None if failed.checks.contains(check) => None,
            None if checks.iter().any(|def| def.check_name() == check) => {
                d.error_hint(
                    &span,
                    format!("check {check:?} is a template of many targets"),
                    format!("traffic sends one request: name one target's check, like \"{check}@TARGET\", or write url"),
                );
                None
            }
            None => {
                d.error(&span, format!("no check named {check:?}"));
                None
            }
        },
        (None, Some(_)) => crate::checks::http::config::read_http(table, secrets)
            .map(|(spec, _)| CheckSpec::Http(Box::new(spec))),
        (Some((_, span)), Some(_)) => {
            d.error_hint(
                &span,
                format!("{} sets both `check` and `url`", table.what()),
                "keep one",
            );
            None
        }
        (None, None) => {
            table.missing(
                "url",
                "give the request to send (url = ..., as in an http check) or check = \"NAME\"",
            );
            None
        }
    }
}

/// `prometheus` and `real_rate`, which go together.
fn read_real_rate(table: &Table<'_>) -> (Option<url::Url>, Option<String>) {
    let prometheus = table.str("prometheus").and_then(|(text, span)| {
        crate::checks::domain::config::read_base_url(table.diags(), text, &span)
    });
    let real_rate = table.str("real_rate").map(|(query, _)| query.to_string());
    match (&prometheus, &real_rate) {
        (Some(_), None) => table.missing("real_rate", "give the PromQL of the real request rate per second, like real_rate = 'sum(rate(http_requests_total{job=\"shop\"}[5m]))'"),
        (None, Some(_)) => table.missing("prometheus", "give the Prometheus to ask, like prometheus = \"http://prometheus:9090\""),
        _ => {}
    }
    (prometheus, real_rate)
}

/// `max_rate`: what the injector may add, at most [`MAX_INJECT_RATE`].
fn read_max_rate(table: &Table<'_>) -> f64 {
    let d = table.diags();
    match table.str("max_rate") {
        Some((text, span)) => match parse_rate(text) {
            Some(rate) if rate > MAX_INJECT_RATE => {
                d.error_hint(
                    &span,
                    format!("max_rate {text:?} is above {MAX_INJECT_RATE:.0}/s"),
                    "max_rate bounds what the injector may add; write it like \"5/s\" (at most 1000/s)",
                );
                DEFAULT_MAX_RATE
            }
            Some(rate) => rate,
            None => {
                d.error_hint(
                    &span,
                    format!("max_rate {text:?} is not a rate"),
                    "write it like \"5/s\"",
                );
                DEFAULT_MAX_RATE
            }
        },
        None => DEFAULT_MAX_RATE,
    }
}

/// `arrivals`: whether requests arrive as a Poisson process (the default) or evenly.
fn read_arrivals(table: &Table<'_>) -> bool {
    match table.str("arrivals") {
        None | Some(("poisson", _)) => true,
        Some(("even", _)) => false,
        Some((other, span)) => {
            table.diags().error_hint(
                &span,
                format!("unknown arrivals {other:?}"),
                "use \"poisson\" or \"even\"",
            );
            true
        }
    }
}

/// `fallback`: what to do when Prometheus cannot be asked.
fn read_fallback(table: &Table<'_>) -> Fallback {
    match table.str("fallback") {
        None | Some(("floor", _)) => Fallback::Floor,
        Some(("none", _)) => Fallback::None,
        Some((other, span)) => {
            table.diags().error_hint(
                &span,
                format!("unknown fallback {other:?}"),
                "use \"floor\" or \"none\"",
            );
            Fallback::Floor
        }
    }
}

/// `active_hours`: a daily window in UTC.
fn read_active_hours(table: &Table<'_>) -> Option<ActiveWindow> {
    table.str("active_hours").and_then(|(text, span)| {
        let window = parse_window(text);
        if window.is_none() {
            table.diags().error_hint(
                &span,
                format!("active_hours {text:?} is not a daily window"),
                "write it like \"22:00-07:00\" (UTC)",
            );
        }
        window
    })
}

/// Adds the synthetic marker header to every request the spec sends.
fn mark(spec: CheckSpec) -> CheckSpec {
    let (name, value) = synthetic_header();
    match spec {
        CheckSpec::Http(mut http) => {
            http.headers.push((name, value));
            CheckSpec::Http(http)
        }
        CheckSpec::Flow(mut flow) => {
            for step in &mut flow.steps {
                step.headers.push((
                    name.clone(),
                    Template {
                        parts: vec![Part::Text("1".to_string())],
                    },
                ));
            }
            CheckSpec::Flow(flow)
        }
        other => other,
    }
}

/// `"100/h"`, `"2/m"`, `"0.5/s"` (or a bare number per second) as requests per second.
pub(crate) fn parse_rate(text: &str) -> Option<f64> {
    let (number, per) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
    let count: f64 = number.trim().parse().ok()?;
    let seconds = match per.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    let rate = count / seconds;
    (rate.is_finite() && rate >= 0.0).then_some(rate)
}

fn parse_window(text: &str) -> Option<ActiveWindow> {
    let (from, to) = text.split_once('-')?;
    let minutes = |clock: &str| -> Option<u32> {
        let (hours, minutes) = clock.trim().split_once(':')?;
        let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
        (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
    };
    let window = ActiveWindow {
        from: minutes(from)?,
        to: minutes(to)?,
    };
    (window.from != window.to).then_some(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_windows() {
        assert_eq!(parse_rate("3600/h"), Some(1.0));
        assert_eq!(parse_rate("2/m"), Some(2.0 / 60.0));
        assert_eq!(parse_rate("5"), Some(5.0));
        assert_eq!(parse_rate("fast"), None);
        let night = parse_window("22:00-07:00").unwrap();
        let at = |h: u32| chrono::DateTime::from_timestamp(i64::from(h) * 3600, 0).unwrap();
        assert!(night.contains(at(23)) && night.contains(at(3)) && !night.contains(at(12)));
        assert_eq!(parse_window("25:00-01:00"), None);
    }
}
