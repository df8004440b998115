//! `[[maintenance]]`: planned windows, between two times or after each firing of a cron
//! expression, covering checks by name, by labels, or all.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use crate::maintenance::{Mode, Selector, When, Window};
use crate::reader::{Failed, Table, closest, valid_check_name};

/// The longest window a cron firing may open.
const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// Reads one `[[maintenance]]` table; `seen` holds the names read so far and where.
pub(super) fn read_maintenance(
    table: Table<'_>,
    names: &[&str],
    failed: &Failed,
    seen: &mut HashMap<String, String>,
) -> Option<Window> {
    let d = table.diags();
    let errors_before = d.error_count();
    let name = read_name(&table, seen);
    let table = match &name {
        Some(name) => table.renamed(format!("maintenance {name:?}")),
        None => table,
    };
    let when = read_when(&table);
    let selector = read_selector(&table, names, failed);
    let mode = match table.str("mode") {
        None | Some(("mark", _)) => Mode::Mark,
        Some(("skip", _)) => Mode::Skip,
        Some((other, span)) => {
            d.error_hint(
                &span,
                format!("unknown maintenance mode {other:?}"),
                "use \"mark\" (runs go on, results are marked) or \"skip\" (no runs)",
            );
            Mode::Mark
        }
    };
    let reason = table.str("reason").map(|(text, _)| text.to_string());
    table.finish();
    if d.error_count() > errors_before {
        return None;
    }
    Some(Window {
        name: name?,
        when: when?,
        selector,
        mode,
        reason,
        ad_hoc: false,
    })
}

fn read_name(table: &Table<'_>, seen: &mut HashMap<String, String>) -> Option<String> {
    let d = table.diags();
    let Some((name, span)) = table.str("name") else {
        table.missing(
            "name",
            "name the window, like name = \"nightly-backup\"; it is shown on the page and in logs",
        );
        return None;
    };
    if !valid_check_name(name) {
        d.error_hint(
            &span,
            format!("maintenance name {name:?} is not valid"),
            "use lowercase letters, digits, `-` and `_`",
        );
        return None;
    }
    let here = d.location(&span);
    if let Some(first) = seen.insert(name.to_string(), here) {
        d.error_hint(
            &span,
            format!("maintenance {name:?} is defined twice"),
            format!("it is first defined at {first}; rename one"),
        );
        return None;
    }
    Some(name.to_string())
}

/// `start` and `end`, or `cron` and `duration`.
fn read_when(table: &Table<'_>) -> Option<When> {
    let d = table.diags();
    let start = table.str("start");
    let end = table.str("end");
    let cron = table.str("cron");
    let duration = table.duration("duration");
    let example = "give start = \"2026-12-01T02:00:00Z\" and end = \"2026-12-01T03:00:00Z\", or cron = \"0 2 * * *\" and duration = \"30m\" (UTC)";
    match (start, end, cron, duration) {
        (Some(start), Some(end), None, None) => {
            let start_at = read_time(table, start.clone())?;
            let end_at = read_time(table, end.clone())?;
            if end_at <= start_at {
                d.error_hint(
                    &end.1,
                    format!("the window ends ({}) before it starts ({})", end.0, start.0),
                    "end must be after start",
                );
                return None;
            }
            Some(When::Between {
                start: start_at,
                end: end_at,
            })
        }
        (None, None, Some((expr, span)), Some((duration, duration_span))) => {
            if duration.is_zero() || duration > MAX_DURATION {
                d.error_hint(
                    &duration_span,
                    format!(
                        "duration {} is out of range",
                        humantime::format_duration(duration)
                    ),
                    "a window lasts more than nothing and at most 7 days",
                );
                return None;
            }
            match crate::reader::parse_cron(expr) {
                Ok(schedule) => Some(When::Cron {
                    schedule: Box::new(schedule),
                    expr: expr.to_string(),
                    duration,
                }),
                Err(error) => {
                    d.error_hint(
                        &span,
                        format!("invalid cron expression {expr:?}: {error}"),
                        "use the crontab form, minute first, in UTC: \"0 2 * * *\" is 02:00 UTC daily",
                    );
                    None
                }
            }
        }
        _ => {
            d.error_hint(
                &table.span(),
                format!(
                    "{} needs either start and end, or cron and duration",
                    table.what()
                ),
                example,
            );
            None
        }
    }
}

fn read_time(
    table: &Table<'_>,
    (text, span): (&str, std::ops::Range<usize>),
) -> Option<SystemTime> {
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(at) => Some(SystemTime::from(at)),
        Err(error) => {
            table.diags().error_hint(
                &span,
                format!("{text:?} is not an RFC 3339 time: {error}"),
                "write it like \"2026-12-01T02:00:00Z\" or with an offset, \"2026-12-01T03:00:00+01:00\"",
            );
            None
        }
    }
}

/// `checks` (names that must exist: checks and templates, whose name covers all their
/// targets) and `labels` (matches); neither covers every check.
fn read_selector(table: &Table<'_>, names: &[&str], failed: &Failed) -> Selector {
    let d = table.diags();
    let mut selector = Selector::default();
    for (name, span) in table.str_list("checks").unwrap_or_default() {
        if !names.contains(&name) && !failed.checks.contains(name) {
            let hint = match closest(name, names) {
                Some(close) => format!("did you mean {close:?}?"),
                None => "name a [[check]] defined in the configuration".to_string(),
            };
            d.error_hint(&span, format!("no check is named {name:?}"), hint);
        }
        selector.checks.push(name.to_string());
    }
    let mut labels = BTreeMap::new();
    for entry in table.str_map("labels").unwrap_or_default() {
        labels.insert(entry.key.to_string(), entry.value.to_string());
    }
    selector.labels = labels;
    selector
}
