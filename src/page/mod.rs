//! The status page: `/` lists every check, what needs attention first, filtered and paged;
//! `/checks/{name}` shows one check in full. Plain server-rendered HTML with its CSS and a
//! little JavaScript embedded (agents run in closed networks), usable without script, on a
//! phone and with a screen reader (semantic tables, labelled controls, state in words).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::result::Failure;
use crate::status::{
    AnswerView, CheckView, DnsView, DomainView, GrpcView, HistoryPoint, IcmpView, RunView, State,
    StatusStore, StepView, Summary, Timestamp, TlsView, WebsocketView,
};
use crate::time::{days_text, left_text, unix_secs};

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("page.js");

/// The Content-Security-Policy of every response: the page's own style and script are
/// allowed by their SHA-256 hashes (no `'unsafe-inline'`), the refresh may fetch the same
/// origin, forms post to it, and nothing may frame the page.
pub fn content_security_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine as _;
        let hash = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
        };
        format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; img-src data:; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            hash(STYLE),
            hash(SCRIPT)
        )
    })
}

/// Rows per page of the list.
pub const PAGE_SIZE: usize = 100;
/// Seconds between the page's in-place refreshes.
const REFRESH_SECONDS: u32 = 5;
/// At most this many `key=value` suggestions in the label filter.
const LABEL_SUGGESTIONS: usize = 200;
/// The list shows this many characters of a failure detail; the check's page shows it all.
const DETAIL_CHARS: usize = 240;

/// The list's query string. Every field is optional and an unknown value matches nothing, so
/// a hand-edited URL never errors.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// `attention` (failing or expiring), `failing`, `expiring`, `unknown` or `passing`.
    pub state: Option<String>,
    /// A check type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `key=value`, or `key` for any value.
    pub label: Option<String>,
    /// Part of the check's name or target.
    pub q: Option<String>,
    /// 1-based page number.
    pub page: Option<String>,
}

impl Filter {
    fn get(field: &Option<String>) -> &str {
        field.as_deref().map_or("", str::trim)
    }

    /// The query string for `page`, keeping the filters.
    fn href(&self, page: usize) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("state", &self.state),
            ("type", &self.kind),
            ("label", &self.label),
            ("q", &self.q),
        ] {
            let value = Filter::get(value);
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        if page > 1 {
            query.append_pair("page", &page.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{query}")
        }
    }

    /// Whether `row` passes the filters; `q` is the lower-cased name-or-target filter.
    fn matches(&self, row: &Summary, expiring: bool, q: &str) -> bool {
        let state = Filter::get(&self.state);
        let state_ok = match state {
            "" => true,
            "attention" => row.state == State::Failing || expiring,
            "expiring" => expiring,
            other => row.state.as_str() == other,
        };
        let kind = Filter::get(&self.kind);
        let kind_ok = kind.is_empty() || row.def.kind().as_str() == kind;
        let label = Filter::get(&self.label);
        let label_ok = label.is_empty()
            || match label.split_once('=') {
                Some((key, value)) => {
                    row.def.labels.get(key.trim()).map(String::as_str) == Some(value.trim())
                }
                None => row.def.labels.contains_key(label),
            };
        let q_ok =
            q.is_empty() || row.def.name.contains(q) || row.def.target.to_lowercase().contains(q);
        state_ok && kind_ok && label_ok && q_ok
    }
}

/// Seconds from now until `at` (Unix seconds); negative once past.
fn seconds_until(at: i64, now: SystemTime) -> i64 {
    at - unix_secs(now)
}

/// Whether `at` falls within the warning lead time.
fn within(at: i64, now: SystemTime, lead: Duration) -> bool {
    seconds_until(at, now) < lead.as_secs() as i64
}

/// The list page.
pub fn list(store: &StatusStore, filter: &Filter, windows: &[(String, String)]) -> String {
    let now = SystemTime::now();
    let (warning, critical) = store.expiry_leads();
    let mut rows = store.summaries();
    let expiring = |row: &Summary| row.expiry.is_some_and(|(_, at)| within(at, now, warning));
    let tally = Tally::of(&rows, expiring);
    let total = rows.len();

    let q = Filter::get(&filter.q).to_lowercase();
    rows.retain(|row| filter.matches(row, expiring(row), &q));
    by_attention(&mut rows, expiring);
    let matching = rows.len();
    let pages = matching.div_ceil(PAGE_SIZE).max(1);
    let page = Filter::get(&filter.page)
        .parse::<usize>()
        .unwrap_or(1)
        .clamp(1, pages);
    let first = (page - 1) * PAGE_SIZE;
    let shown = &rows[first.min(matching)..(first + PAGE_SIZE).min(matching)];

    let mut html = list_head(store, tally.failing);
    filter_form(&mut html, filter, &tally.kinds, &tally.labels);
    let _ = writeln!(html, "<div id=\"live\" data-refresh=\"{REFRESH_SECONDS}\">");
    counts(&mut html, &tally, total, warning);
    open_windows(&mut html, windows);
    if matching == 0 {
        html.push_str(if total == 0 {
            "<p>This agent runs no checks in its region.</p>\n"
        } else {
            "<p>No check matches these filters. <a href=\"/\">Show all checks</a>.</p>\n"
        });
    } else {
        checks_table(
            &mut html,
            shown,
            first,
            (matching, total),
            now,
            (warning, critical),
        );
    }
    if pages > 1 {
        pager(&mut html, filter, page, pages);
    }
    html.push_str("</div>\n</main>\n");
    foot(&mut html);
    html
}

/// What the list's summary and filter form show of every check, filtered or not.
#[derive(Default)]
struct Tally {
    /// Checks failing.
    failing: usize,
    /// Checks whose certificate, signature or registration expires within the warning lead
    /// time (whatever their state).
    expiring: usize,
    /// Checks not run yet.
    unknown: usize,
    /// Checks in maintenance.
    maintenance: usize,
    /// Checks passing.
    passing: usize,
    /// The check types present, for the type filter.
    kinds: BTreeSet<&'static str>,
    /// Up to [`LABEL_SUGGESTIONS`] `key=value` pairs, for the label filter.
    labels: BTreeSet<String>,
}

impl Tally {
    fn of(rows: &[Summary], expiring: impl Fn(&Summary) -> bool) -> Tally {
        let mut tally = Tally::default();
        for row in rows {
            match row.state {
                State::Failing => tally.failing += 1,
                State::Unknown => tally.unknown += 1,
                State::Maintenance => tally.maintenance += 1,
                State::Passing => tally.passing += 1,
            }
            if expiring(row) {
                tally.expiring += 1;
            }
            tally.kinds.insert(row.def.kind().as_str());
            for (key, value) in row.def.labels.iter() {
                if tally.labels.len() < LABEL_SUGGESTIONS {
                    tally.labels.insert(format!("{key}={value}"));
                }
            }
        }
        tally
    }
}

/// What needs attention first: failing (the newest failure first), then expiring (the
/// soonest first), then not run yet, then in maintenance, then passing; by name within each.
fn by_attention(rows: &mut [Summary], expiring: impl Fn(&Summary) -> bool) {
    rows.sort_by_cached_key(|row| {
        let rank = match row.state {
            State::Failing => 0,
            _ if expiring(row) => 1,
            State::Unknown => 2,
            State::Maintenance => 3,
            State::Passing => 4,
        };
        let order = match rank {
            0 => row.since.map_or(0, |since| -unix_secs(since)),
            1 => row.expiry.map_or(0, |(_, at)| at),
            _ => 0,
        };
        (rank, order, row.def.name.clone())
    });
}

/// The document head, titled with the failing count, and the page header.
fn list_head(store: &StatusStore, failing: usize) -> String {
    let title = if failing > 0 {
        format!("{failing} failing · nightjar {}", store.region())
    } else {
        format!("nightjar {}", store.region())
    };
    let mut html = head(&title);
    let _ = write!(
        html,
        "<header><h1>nightjar</h1><p class=\"agent\">Region <strong>{region}</strong> · version {version} · \
<a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/checks\">JSON</a></p></header>\n<main id=\"main\">\n",
        region = escape(store.region()),
        version = env!("CARGO_PKG_VERSION"),
    );
    html
}

/// The summary line: how many checks fail, expire, have not run and pass, of how many.
fn counts(html: &mut String, tally: &Tally, total: usize, warning: Duration) {
    let _ = writeln!(
        html,
        "<ul class=\"counts\" aria-label=\"Summary\">\
<li class=\"failing\">{} failing</li><li class=\"warn\">{} expiring within {}</li>\
<li class=\"unknown\">{} not run yet</li>{}<li class=\"passing\">{} passing</li><li class=\"muted\">{total} checks</li></ul>",
        tally.failing,
        tally.expiring,
        days_text(warning.as_secs() as i64),
        tally.unknown,
        if tally.maintenance > 0 {
            format!(
                "<li class=\"maintenance\">{} in maintenance</li>",
                tally.maintenance
            )
        } else {
            String::new()
        },
        tally.passing,
    );
}

/// The maintenance windows open now: each one's name, end and reason.
fn open_windows(html: &mut String, windows: &[(String, String)]) {
    if windows.is_empty() {
        return;
    }
    html.push_str("<ul class=\"windows\" aria-label=\"Maintenance windows open now\">");
    for (name, what) in windows {
        let _ = write!(
            html,
            "<li><span class=\"maintenance\">Maintenance</span> <strong>{}</strong> {}</li>",
            escape(name),
            escape(what)
        );
    }
    html.push_str("</ul>\n");
}

/// One page of rows (`first` is the index of the first), with a caption saying which of how
/// many matching checks they are.
fn checks_table(
    html: &mut String,
    shown: &[Summary],
    first: usize,
    (matching, total): (usize, usize),
    now: SystemTime,
    (warning, critical): (Duration, Duration),
) {
    let _ = write!(
        html,
        "<div class=\"scroll\"><table id=\"checks\">\n<caption>Checks {}–{} of {matching}{}, what needs attention first</caption>\n\
<thead><tr><th scope=\"col\">State</th><th scope=\"col\">Check</th><th scope=\"col\" class=\"wide\">Type</th>\
<th scope=\"col\" class=\"wide\">Target</th><th scope=\"col\">For</th><th scope=\"col\">Last run</th>\
<th scope=\"col\" class=\"wide\">History</th><th scope=\"col\">Expires</th><th scope=\"col\">Reason</th></tr></thead>\n<tbody>\n",
        first + 1,
        first + shown.len(),
        if matching < total { " matching" } else { "" },
    );
    for row in shown {
        list_row(html, row, now, warning, critical);
    }
    html.push_str("</tbody></table></div>\n");
}

/// Links to the previous and next pages, keeping the filters.
fn pager(html: &mut String, filter: &Filter, page: usize, pages: usize) {
    html.push_str("<nav class=\"pages\" aria-label=\"Pages\">");
    if page > 1 {
        let _ = write!(
            html,
            "<a href=\"{}\" rel=\"prev\">← Previous</a>",
            escape(&filter.href(page - 1))
        );
    }
    let _ = write!(html, "<span>Page {page} of {pages}</span>");
    if page < pages {
        let _ = write!(
            html,
            "<a href=\"{}\" rel=\"next\">Next →</a>",
            escape(&filter.href(page + 1))
        );
    }
    html.push_str("</nav>\n");
}

fn filter_form(
    html: &mut String,
    filter: &Filter,
    kinds: &BTreeSet<&str>,
    labels: &BTreeSet<String>,
) {
    let state = Filter::get(&filter.state);
    let kind = Filter::get(&filter.kind);
    html.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/\" role=\"search\" aria-label=\"Filter checks\">\n\
<div><label for=\"f-state\">State</label><select id=\"f-state\" name=\"state\">",
    );
    for (value, text) in [
        ("", "All"),
        ("attention", "Needs attention"),
        ("failing", "Failing"),
        ("expiring", "Expiring"),
        ("unknown", "Not run yet"),
        ("maintenance", "In maintenance"),
        ("passing", "Passing"),
    ] {
        option(html, value, text, value == state);
    }
    html.push_str("</select></div>\n<div><label for=\"f-type\">Type</label><select id=\"f-type\" name=\"type\">");
    option(html, "", "All", kind.is_empty());
    for each in kinds {
        option(html, each, each, *each == kind);
    }
    let _ = write!(
        html,
        "</select></div>\n<div><label for=\"f-label\">Label</label><input id=\"f-label\" name=\"label\" \
list=\"f-labels\" placeholder=\"env=prod\" value=\"{}\" autocomplete=\"off\"><datalist id=\"f-labels\">",
        escape(Filter::get(&filter.label))
    );
    for label in labels {
        let _ = write!(html, "<option value=\"{}\">", escape(label));
    }
    let _ = write!(
        html,
        "</datalist></div>\n<div><label for=\"f-q\">Name or target</label><input id=\"f-q\" name=\"q\" type=\"search\" value=\"{}\"></div>\n\
<button type=\"submit\">Filter</button><a href=\"/\">Clear filters</a>\n</form>\n",
        escape(Filter::get(&filter.q))
    );
}

fn option(html: &mut String, value: &str, text: &str, selected: bool) {
    let _ = write!(
        html,
        "<option value=\"{}\"{}>{}</option>",
        escape(value),
        if selected { " selected" } else { "" },
        escape(text)
    );
}

fn list_row(
    html: &mut String,
    row: &Summary,
    now: SystemTime,
    warning: Duration,
    critical: Duration,
) {
    let name = escape(&row.def.name);
    let _ = write!(
        html,
        "<tr data-state=\"{state}\" data-check=\"{name}\"><td>{badge}</td><th scope=\"row\"><a href=\"/checks/{path}\">{name}</a>",
        path = escape(&path_segment(&row.def.name)),
        state = row.state.as_str(),
        badge = badge(row.state),
    );
    if let Some(pending) = row.pending {
        let _ = write!(html, "<br><span class=\"muted\">{pending}</span>");
    }
    if let Some(open) = &row.maintenance {
        let _ = write!(
            html,
            "<br><span class=\"muted\">{} until {}</span>",
            escape(&open.name),
            short_time(Timestamp::from(open.until))
        );
    }
    if !row.def.labels.is_empty() {
        html.push_str("<br><span class=\"muted mono\">");
        for (i, (key, value)) in row.def.labels.iter().enumerate() {
            if i > 0 {
                html.push(' ');
            }
            let _ = write!(html, "{}={}", escape(key), escape(value));
        }
        html.push_str("</span>");
    }
    let _ = write!(
        html,
        "</th><td class=\"wide\">{}</td><td class=\"target wide\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"wide\">",
        row.def.kind().as_str(),
        escape(&row.def.target),
        row.since
            .map_or_else(String::new, |since| since_cell(since, now)),
        row.duration
            .map_or_else(String::new, |took| took_text(took.as_secs_f64())),
    );
    strip(html, &row.history);
    html.push_str("</td>");
    match row.expiry {
        Some((what, at)) => {
            let left = seconds_until(at, now);
            let _ = write!(
                html,
                "<td class=\"num {}\">{}<br><span class=\"muted\">{}</span></td>",
                expiry_class(left, warning, critical),
                left_text(left),
                what.as_str()
            );
        }
        None => html.push_str("<td></td>"),
    }
    match &row.failure {
        Some(Failure { reason, detail }) => {
            let shown: String = detail.chars().take(DETAIL_CHARS).collect();
            let more = if shown.len() < detail.len() {
                "…"
            } else {
                ""
            };
            let _ = writeln!(
                html,
                "<td class=\"detail\"><span class=\"reason\">{reason}</span> {}{more}</td></tr>",
                escape(&shown)
            );
        }
        None => html.push_str("<td></td></tr>\n"),
    }
}

fn badge(state: State) -> &'static str {
    match state {
        State::Passing => "<span class=\"badge passing\">✓ Passing</span>",
        State::Failing => "<span class=\"badge failing\">✗ Failing</span>",
        State::Unknown => "<span class=\"badge unknown\">… Not run yet</span>",
        State::Maintenance => "<span class=\"badge maintenance\">⏸ Maintenance</span>",
    }
}

fn expiry_class(left: i64, warning: Duration, critical: Duration) -> &'static str {
    if left < critical.as_secs() as i64 {
        "crit"
    } else if left < warning.as_secs() as i64 {
        "warn"
    } else {
        ""
    }
}

/// A duration in the unit that reads best: "0.4 ms", "87 ms", "1.24 s".
fn took_text(seconds: f64) -> String {
    if seconds < 0.001 {
        format!("{:.2} ms", seconds * 1000.0)
    } else if seconds < 0.01 {
        format!("{:.1} ms", seconds * 1000.0)
    } else if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

/// "45s", "12m 3s", "3h 4m", "2d 5h".
fn ago_text(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn since_cell(since: SystemTime, now: SystemTime) -> String {
    let stamp = crate::time::rfc3339(since);
    format!(
        "<time datetime=\"{stamp}\" title=\"since {stamp}\">{}</time>",
        ago_text(now.duration_since(since).map_or(0, |d| d.as_secs()))
    )
}

/// The history strip: one bar per run, oldest first, its height the run's duration relative to
/// the slowest shown, red when it failed; screen readers get the counts in words.
fn strip(html: &mut String, history: &[(bool, u32)]) {
    if history.is_empty() {
        return;
    }
    let failed = history.iter().filter(|(ok, _)| !ok).count();
    let slowest = history
        .iter()
        .map(|(_, micros)| *micros)
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = write!(
        html,
        "<span class=\"strip\" role=\"img\" aria-label=\"Last {} runs: {} passed, {failed} failed\">",
        history.len(),
        history.len() - failed
    );
    for (ok, micros) in history {
        // Heights in tenths, as classes: the Content-Security-Policy allows no inline style.
        let tenths = 2 + u64::from(*micros) * 8 / u64::from(slowest);
        let _ = write!(
            html,
            "<span class=\"h{tenths}{}\" title=\"{}, {}\"></span>",
            if *ok { "" } else { " f" },
            if *ok { "passed" } else { "failed" },
            took_text(f64::from(*micros) / 1e6)
        );
    }
    html.push_str("</span>");
}

/// The page of one check, or `None` when the agent does not run it.
pub fn detail(store: &StatusStore, name: &str) -> Option<String> {
    let view = store.view(name)?;
    let now = SystemTime::now();
    let (warning, critical) = store.expiry_leads();
    let state = view.state;
    let mut html = head(&format!(
        "{} {} · nightjar {}",
        view.name,
        state.as_str(),
        store.region()
    ));
    let _ = write!(
        html,
        "<header><p><a href=\"/\">← All checks</a></p><h1>{name}</h1><p class=\"agent\">Region <strong>{region}</strong> · version {version}</p></header>\n\
<main id=\"main\"><div id=\"live\" data-refresh=\"{REFRESH_SECONDS}\">\n",
        name = escape(&view.name),
        region = escape(store.region()),
        version = env!("CARGO_PKG_VERSION"),
    );
    check_facts(&mut html, &view, now);

    match &view.last_run {
        None => html.push_str("<h2>Last run</h2>\n<p>The check has not finished a run yet.</p>\n"),
        Some(run) => last_run(&mut html, run, now, (warning, critical)),
    }

    if !view.history.is_empty() {
        history(&mut html, &view.history);
    }
    let _ = write!(
        html,
        "<p class=\"muted\">As JSON: <a href=\"/api/v1/checks/{1}\">/api/v1/checks/{0}</a></p>\n</div></main>\n",
        escape(&view.name),
        escape(&path_segment(&view.name))
    );
    foot(&mut html);
    Some(html)
}

/// The check's state and since when, its type, target, schedule and labels.
fn check_facts(html: &mut String, view: &CheckView, now: SystemTime) {
    html.push_str("<dl class=\"facts\">\n");
    let since = view.since.map(|since| since_cell(since.time(), now));
    fact(
        html,
        "State",
        &format!(
            "{} {}",
            badge(view.state),
            since.map(|s| format!("for {s}")).unwrap_or_default()
        ),
    );
    if let Some(pending) = &view.pending {
        fact(html, "Confirming", &escape(pending));
    }
    if view.consecutive_failures > 0 {
        fact(
            html,
            "Failures in a row",
            &view.consecutive_failures.to_string(),
        );
    }
    if let Some(window) = &view.maintenance {
        let reason = window
            .reason
            .as_deref()
            .map(|reason| format!(": {}", escape(reason)))
            .unwrap_or_default();
        fact(
            html,
            "Maintenance",
            &format!(
                "{} ({}) until {}{reason}",
                escape(&window.window),
                window.mode,
                short_time(window.until)
            ),
        );
    }
    fact(html, "Type", view.kind);
    fact(html, "Target", &escape(&view.target));
    fact(html, "Schedule", &escape(&view.schedule));
    if !view.labels.is_empty() {
        let labels: Vec<String> = view
            .labels
            .iter()
            .map(|(key, value)| format!("<code>{}={}</code>", escape(key), escape(value)))
            .collect();
        fact(html, "Labels", &labels.join(" "));
    }
    html.push_str("</dl>\n");
}

/// The history strip, and every run it shows in a table, newest first.
fn history(html: &mut String, history: &[HistoryPoint]) {
    let points: Vec<(bool, u32)> = history
        .iter()
        .map(|point| (point.success, (point.duration_seconds * 1e6) as u32))
        .collect();
    html.push_str("<h2>History</h2>\n<p>");
    strip(html, &points);
    html.push_str("</p>\n<details><summary>Every run shown</summary><table class=\"compact\"><caption>Recent runs, newest first</caption>\
<thead><tr><th scope=\"col\">Run</th><th scope=\"col\">Result</th><th scope=\"col\">Duration</th></tr></thead><tbody>\n");
    for (age, point) in history.iter().rev().enumerate() {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td class=\"num\">{}</td></tr>",
            if age == 0 {
                "last".to_string()
            } else {
                format!("{age} before")
            },
            if point.success { "passing" } else { "failing" },
            if point.success { "passed" } else { "failed" },
            took_text(point.duration_seconds)
        );
    }
    html.push_str("</tbody></table></details>\n");
}

fn fact(html: &mut String, term: &str, value: &str) {
    let _ = writeln!(html, "<dt>{term}</dt><dd>{value}</dd>");
}

/// The last run's sections: its facts, then what its kind measured (phases, flow steps,
/// certificates, DNS answer, registration), each only when the run has it.
fn last_run(html: &mut String, run: &RunView, now: SystemTime, leads: (Duration, Duration)) {
    run_facts(html, run);
    if !run.phases.is_empty() {
        phases_table(html, &run.phases);
    }
    if !run.steps.is_empty() {
        steps_table(html, &run.steps);
    }
    if let Some(tls) = &run.tls {
        certificates(html, tls, now, leads);
    }
    if let Some(dns) = &run.dns {
        dns_answer(html, dns, now, leads);
    }
    if let Some(domain) = &run.domain {
        registration(html, domain, now, leads);
    }
    if let Some(websocket) = &run.websocket {
        conversation(html, websocket);
    }
    if let Some(icmp) = &run.icmp {
        icmp_facts(html, icmp);
    }
    if let Some(udp) = &run.udp {
        html.push_str("<h2>UDP</h2>\n<dl class=\"facts\">\n");
        fact(html, "Datagrams sent", &udp.sent.to_string());
        fact(html, "Bytes received", &udp.received_bytes.to_string());
        html.push_str("</dl>\n");
    }
}

/// A websocket check's messages and the server's close frame.
fn conversation(html: &mut String, websocket: &WebsocketView) {
    html.push_str("<h2>WebSocket</h2>\n<dl class=\"facts\">\n");
    fact(html, "Messages sent", &websocket.messages_sent.to_string());
    fact(
        html,
        "Messages received",
        &websocket.messages_received.to_string(),
    );
    if let Some(code) = websocket.close_code {
        let reason = websocket
            .close_reason
            .as_deref()
            .map(|reason| format!(" ({})", escape(reason)))
            .unwrap_or_default();
        fact(html, "Server's close", &format!("code {code}{reason}"));
    }
    html.push_str("</dl>\n");
}

/// What an icmp run counted: packets, loss, round trips, the reply's hop limit.
fn icmp_facts(html: &mut String, icmp: &IcmpView) {
    html.push_str("<h2>ICMP</h2>\n<dl class=\"facts\">\n");
    fact(
        html,
        "Packets",
        &format!(
            "{} sent, {} received, {:.0}% loss",
            icmp.sent,
            icmp.received,
            icmp.loss_ratio * 100.0
        ),
    );
    if let (Some(min), Some(avg), Some(max), Some(stddev)) = (
        icmp.rtt_min_seconds,
        icmp.rtt_avg_seconds,
        icmp.rtt_max_seconds,
        icmp.rtt_stddev_seconds,
    ) {
        fact(
            html,
            "Round trip min/avg/max/stddev",
            &format!(
                "{:.3}/{:.3}/{:.3}/{:.3} ms",
                min * 1e3,
                avg * 1e3,
                max * 1e3,
                stddev * 1e3
            ),
        );
    }
    if let Some(hops) = icmp.reply_hop_limit {
        fact(html, "Reply hop limit", &hops.to_string());
    }
    if let Some(socket) = icmp.socket {
        let socket = match socket {
            crate::result::IcmpSocketKind::Datagram => "unprivileged datagram",
            crate::result::IcmpSocketKind::Raw => "raw (CAP_NET_RAW)",
        };
        fact(html, "Socket", socket);
    }
    html.push_str("</dl>\n");
}

/// When the run started, how long it took, its result and what HTTP and TLS said.
fn run_facts(html: &mut String, run: &RunView) {
    html.push_str("<h2>Last run</h2>\n<dl class=\"facts\">\n");
    fact(
        html,
        "Started",
        &format!("<time datetime=\"{0}\">{0}</time>", run.started_at),
    );
    fact(html, "Took", &took_text(run.duration_seconds));
    fact(
        html,
        "Result",
        if run.success {
            "<span class=\"passing\">passed</span>"
        } else {
            "<span class=\"failing\">failed</span>"
        },
    );
    if let Some(reason) = run.reason {
        fact(
            html,
            "Reason",
            &format!("<span class=\"reason\">{reason}</span>"),
        );
    }
    if let Some(detail) = &run.detail {
        fact(html, "Detail", &escape(detail));
    }
    if let Some(code) = run.status_code {
        fact(html, "HTTP status", &code.to_string());
    }
    if let Some(version) = run.http_version {
        fact(html, "HTTP version", &version.to_string());
    }
    if let Some(redirects) = run.redirects {
        fact(html, "Redirects", &redirects.to_string());
    }
    if let Some(length) = run.content_length {
        fact(html, "Body", &format!("{length} bytes"));
    }
    if let Some(version) = run.tls_version {
        fact(html, "TLS", version);
    }
    if let Some(grpc) = &run.grpc {
        grpc_facts(html, grpc);
    }
    html.push_str("</dl>\n");
}

/// What a gRPC server answered: the call's status and the serving status.
fn grpc_facts(html: &mut String, grpc: &GrpcView) {
    let status = match (&grpc.status, grpc.status_code) {
        (Some(name), Some(code)) => format!("{} ({code})", escape(name)),
        _ => "none (no gRPC answer)".to_string(),
    };
    fact(html, "gRPC status", &status);
    if let Some(serving) = &grpc.serving_status {
        fact(html, "Serving status", &escape(serving));
    }
    if !grpc.tls {
        fact(html, "Transport", "plain-text HTTP/2 (h2c)");
    }
}

/// The time each phase took, in the order they happen.
fn phases_table(html: &mut String, phases: &BTreeMap<&'static str, f64>) {
    html.push_str(
        "<h2>Phases</h2>\n<table class=\"compact\"><caption>Time per phase of the last run</caption>\
<thead><tr><th scope=\"col\">Phase</th><th scope=\"col\">Took</th></tr></thead><tbody>\n",
    );
    // STARTTLS is a phase only of checks that use it.
    for (phase, seconds) in in_order(phases)
        .into_iter()
        .filter(|(phase, seconds)| *phase != "starttls" || *seconds > 0.0)
    {
        let _ = writeln!(
            html,
            "<tr><th scope=\"row\">{phase}</th><td class=\"num\">{}</td></tr>",
            took_text(seconds)
        );
    }
    html.push_str("</tbody></table>\n");
}

/// A flow's or a tcp conversation's steps, in order: state, HTTP status (when a step has
/// one), time and phases of each.
fn steps_table(html: &mut String, steps: &[StepView]) {
    let with_status = steps.iter().any(|step| step.status_code.is_some());
    html.push_str(
        "<h2>Steps</h2>\n<table><caption>The steps, in order</caption><thead><tr>\
<th scope=\"col\">Step</th><th scope=\"col\">State</th>",
    );
    if with_status {
        html.push_str("<th scope=\"col\">HTTP status</th>");
    }
    html.push_str(
        "<th scope=\"col\">Took</th><th scope=\"col\" class=\"wide\">Phases</th></tr></thead><tbody>\n",
    );
    for step in steps {
        let phases: Vec<String> = in_order(&step.phases)
            .into_iter()
            .map(|(phase, seconds)| format!("{phase} {}", took_text(seconds)))
            .collect();
        let status = if with_status {
            format!(
                "<td class=\"num\">{}</td>",
                step.status_code
                    .map(|code| code.to_string())
                    .unwrap_or_default()
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            html,
            "<tr><th scope=\"row\">{}</th><td>{}</td>{status}<td class=\"num\">{}</td><td class=\"wide muted\">{}</td></tr>",
            escape(&step.name),
            badge(if step.success {
                State::Passing
            } else {
                State::Failing
            }),
            took_text(step.duration_seconds),
            phases.join(", ")
        );
    }
    html.push_str("</tbody></table>\n");
}

/// The TLS verdicts, then the presented chain with each certificate's expiry.
fn certificates(
    html: &mut String,
    tls: &TlsView,
    now: SystemTime,
    (warning, critical): (Duration, Duration),
) {
    html.push_str("<h2>Certificates</h2>\n<dl class=\"facts\">\n");
    fact(html, "Version", tls.version);
    fact(
        html,
        "Chain",
        if tls.chain_valid {
            "valid"
        } else {
            "<span class=\"failing\">not valid</span>"
        },
    );
    fact(
        html,
        "Name",
        if tls.hostname_match {
            "matches"
        } else {
            "<span class=\"failing\">does not match</span>"
        },
    );
    if let Some(error) = &tls.verify_error {
        fact(html, "Verification", &escape(error));
    }
    html.push_str("</dl>\n<div class=\"scroll\"><table><caption>The presented chain, leaf first</caption><thead><tr>\
<th scope=\"col\">#</th><th scope=\"col\">Subject</th><th scope=\"col\" class=\"wide\">Issuer</th>\
<th scope=\"col\">Expires</th><th scope=\"col\" class=\"wide\">Names</th><th scope=\"col\" class=\"wide\">SHA-256</th></tr></thead><tbody>\n");
    for cert in &tls.chain {
        let left = seconds_until(cert.not_after.unix_secs(), now);
        let _ = writeln!(
            html,
            "<tr><td class=\"num\">{}</td><th scope=\"row\">{}</th><td class=\"wide\">{}</td>\
<td class=\"{}\">{}<br><span class=\"muted\">{}</span></td><td class=\"wide\">{}</td><td class=\"wide mono detail\">{}</td></tr>",
            cert.position,
            escape(&cert.subject),
            escape(&cert.issuer),
            expiry_class(left, warning, critical),
            left_text(left),
            short_time(cert.not_after),
            escape(&cert.sans.join(", ")),
            escape(&cert.fingerprint_sha256),
        );
    }
    html.push_str("</tbody></table></div>\n");
}

/// What the DNS server said: its flags, the answers, and each server's SOA serial.
fn dns_answer(html: &mut String, dns: &DnsView, now: SystemTime, leads: (Duration, Duration)) {
    html.push_str("<h2>DNS</h2>\n<dl class=\"facts\">\n");
    fact(html, "Server", &escape(&dns.server));
    fact(
        html,
        "Response code",
        &escape(dns.rcode.as_deref().unwrap_or("none")),
    );
    fact(
        html,
        "Authoritative",
        if dns.authoritative { "yes" } else { "no" },
    );
    if dns.truncated {
        fact(html, "Truncated", "yes, asked again over TCP");
    }
    if let Some(serial) = dns.soa_serial {
        fact(html, "SOA serial", &serial.to_string());
    }
    if let Some(expiry) = dns.rrsig_expiry {
        expiry_fact(html, "Signatures expire", expiry, now, leads);
    }
    html.push_str("</dl>\n");
    if !dns.answers.is_empty() {
        answers_table(html, &dns.answers);
    }
    if !dns.soa_servers.is_empty() {
        soa_servers_table(html, &dns.soa_servers);
    }
}

/// The answer records, in zone-file form.
fn answers_table(html: &mut String, answers: &[AnswerView]) {
    html.push_str("<div class=\"scroll\"><table><caption>Answers</caption><thead><tr><th scope=\"col\">Name</th>\
<th scope=\"col\">Type</th><th scope=\"col\">TTL</th><th scope=\"col\">Data</th></tr></thead><tbody>\n");
    for answer in answers {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"mono detail\">{}</td></tr>",
            escape(&answer.name),
            escape(&answer.kind),
            answer.ttl,
            escape(&answer.data)
        );
    }
    html.push_str("</tbody></table></div>\n");
}

/// Consistency mode: the SOA serial each of a zone's servers answered.
fn soa_servers_table(html: &mut String, servers: &BTreeMap<String, Option<u32>>) {
    html.push_str("<table class=\"compact\"><caption>SOA serial per server</caption><thead><tr><th scope=\"col\">Server</th>\
<th scope=\"col\">Serial</th></tr></thead><tbody>\n");
    for (server, serial) in servers {
        let _ = writeln!(
            html,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td></tr>",
            escape(server),
            serial.map_or_else(|| "no answer".to_string(), |s| s.to_string())
        );
    }
    html.push_str("</tbody></table>\n");
}

/// What RDAP said of a domain: when its registration expires, and where that came from.
fn registration(
    html: &mut String,
    domain: &DomainView,
    now: SystemTime,
    leads: (Duration, Duration),
) {
    html.push_str("<h2>Registration</h2>\n<dl class=\"facts\">\n");
    if let Some(expiry) = domain.expiry {
        expiry_fact(html, "Expires", expiry, now, leads);
    }
    if let Some(server) = &domain.server {
        fact(html, "RDAP server", &escape(server));
    }
    fact(html, "From cache", if domain.cached { "yes" } else { "no" });
    html.push_str("</dl>\n");
}

/// A fact saying when something expires: the time left, coloured by the `[rules]` lead
/// times, and the date.
fn expiry_fact(
    html: &mut String,
    term: &str,
    at: Timestamp,
    now: SystemTime,
    (warning, critical): (Duration, Duration),
) {
    let left = seconds_until(at.unix_secs(), now);
    fact(
        html,
        term,
        &format!(
            "<span class=\"{}\">{}</span> ({})",
            expiry_class(left, warning, critical),
            left_text(left),
            short_time(at)
        ),
    );
}

/// A time as "2027-01-21 11:21 UTC".
fn short_time(at: Timestamp) -> String {
    chrono::DateTime::<chrono::Utc>::from(at.time())
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// Phases in the order they happen, not alphabetical.
fn in_order(phases: &BTreeMap<&'static str, f64>) -> Vec<(&'static str, f64)> {
    const ORDER: [&str; 12] = [
        "resolve",
        "connect",
        "starttls",
        "tls",
        "handshake",
        "upgrade",
        "request",
        "exchange",
        "processing",
        "transfer",
        "close",
        "check",
    ];
    let mut ordered: Vec<(&'static str, f64)> = phases.iter().map(|(k, v)| (*k, *v)).collect();
    ordered.sort_by_key(|(phase, _)| ORDER.iter().position(|known| known == phase));
    ordered
}

/// The page for an unknown check.
pub fn not_found(name: &str, closest: Option<&str>) -> String {
    let mut html = head("Not found · nightjar");
    let suggestion = closest.map_or(String::new(), |closest| {
        format!(
            "Did you mean <a href=\"/checks/{1}\">{0}</a>? ",
            escape(closest),
            escape(&path_segment(closest))
        )
    });
    let _ = writeln!(
        html,
        "<main id=\"main\"><h1>No check named “{}”</h1><p>This agent does not run it (it may run in another region or shard). \
{suggestion}<a href=\"/\">All checks</a></p></main>",
        escape(name)
    );
    foot(&mut html);
    html
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\">\
<title>{}</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>\n<body>\
<a class=\"skip\" href=\"#main\">Skip to content</a>\n",
        escape(title)
    )
}

fn foot(html: &mut String) {
    let _ = write!(
        html,
        "<footer><p class=\"updated\" id=\"updated\">Updates every {REFRESH_SECONDS} seconds.</p></footer>\n<script>{SCRIPT}</script>\n</body></html>\n"
    );
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    crate::text::escape_markup(text, crate::text::Markup::Html)
}

/// `name` as one segment of a URL path: a template's check names hold its target
/// (`web@https://a.example/`), whose `/`, `?` and `#` must not split the path.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(ago_text(45), "45s");
        assert_eq!(ago_text(12 * 60 + 3), "12m 3s");
        assert_eq!(ago_text(3 * 3600 + 4 * 60 + 9), "3h 4m");
        assert_eq!(ago_text(2 * 86_400 + 5 * 3600), "2d 5h");
        assert_eq!(took_text(0.0004), "0.40 ms");
        assert_eq!(took_text(0.087), "87 ms");
        assert_eq!(took_text(1.2449), "1.24 s");
        assert_eq!(left_text(12 * 86_400), "12 days left");
        assert_eq!(left_text(-3 * 86_400), "expired 3.0 days ago");
        assert_eq!(left_text(7200), "2.0 hours left");
    }

    #[test]
    fn paging_links_keep_the_filters() {
        let filter = Filter {
            state: Some("failing".into()),
            kind: Some(String::new()),
            label: Some("env=prod & more".into()),
            q: None,
            page: Some("3".into()),
        };
        assert_eq!(
            filter.href(2),
            "/?state=failing&label=env%3Dprod+%26+more&page=2"
        );
        assert_eq!(Filter::default().href(1), "/");
    }
}
