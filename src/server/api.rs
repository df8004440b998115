//! `/api/v1/maintenance`: ad hoc maintenance windows. `GET` lists every window (configured
//! and ad hoc) with whether it is open; `POST` opens one for a `duration` over the named
//! checks, the checks with the given labels, or all; `DELETE /api/v1/maintenance/{id}` ends
//! one early. Opening and ending need the agent's credentials to be configured (a window
//! silences pages, so nobody may open one anonymously), on top of the server's usual rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::maintenance::{AdHoc, Maintenance, Mode, Selector};

/// The longest ad hoc window.
const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// The longest reason kept, in bytes.
const MAX_REASON: usize = 500;

/// The largest request body taken.
pub const MAX_BODY: usize = 64 * 1024;

/// `POST /api/v1/maintenance`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    #[serde(default)]
    checks: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    duration: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    mode: Mode,
}

/// One window as the API shows it.
#[derive(Debug, Serialize)]
struct WindowView {
    /// The configured window's name, or the ad hoc window's id.
    id: String,
    /// Opened through the API (it can be ended there).
    ad_hoc: bool,
    mode: Mode,
    /// Open now.
    open: bool,
    /// When the open window closes, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    /// When it opens and closes.
    schedule: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Every window, configured ones first.
fn views(maintenance: &Maintenance, now: SystemTime) -> Vec<WindowView> {
    let mut out: Vec<WindowView> = maintenance
        .configured()
        .iter()
        .map(|window| {
            let until = window.open_until(now);
            WindowView {
                id: window.name.clone(),
                ad_hoc: false,
                mode: window.mode,
                open: until.is_some(),
                until: until.map(rfc3339),
                schedule: window.describe(),
                checks: window.selector.checks.clone(),
                labels: window.selector.labels.clone(),
                reason: window.reason.clone(),
            }
        })
        .collect();
    out.extend(maintenance.ad_hoc(now).into_iter().map(ad_hoc_view));
    out
}

fn ad_hoc_view(window: AdHoc) -> WindowView {
    let at = crate::time::from_unix;
    WindowView {
        schedule: format!(
            "{} to {}",
            rfc3339(at(window.start)),
            rfc3339(at(window.end))
        ),
        id: window.id,
        ad_hoc: true,
        mode: window.mode,
        open: true,
        until: Some(rfc3339(at(window.end))),
        checks: window.selector.checks,
        labels: window.selector.labels,
        reason: window.reason,
    }
}

/// `GET /api/v1/maintenance`.
pub async fn list(State(state): State<AppState>) -> Response {
    let windows = views(&state.maintenance, SystemTime::now());
    Json(serde_json::json!({ "windows": windows })).into_response()
}

/// Refuses a change when the agent has no credentials configured.
fn needs_credentials(state: &AppState) -> Option<Response> {
    crate::access::Access::current(&state.access)
        .is_open()
        .then(|| {
            error(
                StatusCode::FORBIDDEN,
                "maintenance windows are opened and ended only on an agent with credentials: set [agent] bearer_token or basic_auth_users",
            )
        })
}

/// `POST /api/v1/maintenance`: 201 with the window, 400 for a body that does not say what to
/// cover or for how long, 429 when too many windows are open.
pub async fn open(
    State(state): State<AppState>,
    body: Result<Json<OpenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = needs_credentials(&state) {
        return refused;
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; send {{\"checks\": [...], \"labels\": {{...}}, \"duration\": \"30m\", \"reason\": \"...\"}}",
                    crate::text::sanitize(&rejection.body_text(), 300)
                ),
            );
        }
    };
    let duration = match crate::config::parse_duration(&request.duration) {
        Some(duration) if !duration.is_zero() && duration <= MAX_DURATION => duration,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "duration {:?} is not a duration from 1s to 7d, like \"30m\"",
                    crate::text::sanitize(&request.duration, 40)
                ),
            );
        }
    };
    let known = state.status.names();
    let unknown: Vec<&str> = request
        .checks
        .iter()
        .filter(|name| !known.contains(name.as_str()))
        .map(|name| name.as_str())
        .collect();
    if let Some(first) = unknown.first() {
        let mut message = no_such_check(&state.status, first);
        if unknown.len() > 1 {
            message.push_str(&format!(" ({} more unknown names)", unknown.len() - 1));
        }
        return error(StatusCode::BAD_REQUEST, message);
    }
    let reason = request
        .reason
        .map(|reason| crate::text::sanitize(&reason, MAX_REASON).into_owned());
    let selector = Selector {
        checks: request.checks,
        labels: request.labels,
    };
    match state
        .maintenance
        .add(selector, request.mode, duration, reason, SystemTime::now())
    {
        Some(window) => {
            tracing::info!(
                message = "Maintenance window opened through the API.",
                id = %window.id,
                duration = %humantime::format_duration(duration),
                reason = window.reason.as_deref().unwrap_or(""),
            );
            (StatusCode::CREATED, Json(ad_hoc_view(window))).into_response()
        }
        None => error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} ad hoc windows are open; end one first",
                crate::maintenance::MAX_AD_HOC
            ),
        ),
    }
}

/// `DELETE /api/v1/maintenance/{id}`: 204, 404 for no such window, 409 for a configured one.
pub async fn end(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if let Some(refused) = needs_credentials(&state) {
        return refused;
    }
    if state.maintenance.end(&id) {
        tracing::info!(message = "Maintenance window ended through the API.", id = %id);
        return StatusCode::NO_CONTENT.into_response();
    }
    let shown = crate::text::sanitize(&id, 100);
    if state
        .maintenance
        .configured()
        .iter()
        .any(|window| window.name == id)
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "maintenance {shown:?} is defined in the configuration; remove it there and reload"
            ),
        );
    }
    error(
        StatusCode::NOT_FOUND,
        format!("no open ad hoc maintenance window {shown:?}"),
    )
}

/// What the page shows of the windows: every window open now, configured or ad hoc.
pub fn open_now(maintenance: &Arc<Maintenance>, now: SystemTime) -> Vec<(String, String)> {
    views(maintenance, now)
        .into_iter()
        .filter(|view| view.open)
        .map(|view| {
            let until = view.until.unwrap_or_default();
            let what = match view.reason {
                Some(reason) => format!("until {until}: {reason}"),
                None => format!("until {until}"),
            };
            (view.id, what)
        })
        .collect()
}

/// "no check named "X" runs on this agent", with the likely intended name when there is one.
pub(super) fn no_such_check(status: &crate::status::StatusStore, name: &str) -> String {
    let shown = crate::text::sanitize(name, 100);
    match status.closest_name(name) {
        Some(closest) => {
            format!("no check named {shown:?} runs on this agent; did you mean {closest:?}?")
        }
        None => format!("no check named {shown:?} runs on this agent"),
    }
}
