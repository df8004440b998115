//! The agent's own HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`,
//! `/api/v1/checks[/{name}]` and the status page at `/` and `/checks/{name}` ([`crate::page`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::page::{self, Filter};
use crate::status::{CheckView, StatusStore};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Latest results.
    pub status: Arc<StatusStore>,
    /// True once the config is loaded and the scheduler runs.
    pub ready: Arc<AtomicBool>,
    /// Where reload requests go; `None` when the agent cannot reload (the embedded default).
    pub reload: Option<tokio::sync::mpsc::Sender<crate::agent::ReloadRequest>>,
    /// Who may use the server.
    pub access: crate::access::SharedAccess,
}

/// The router; exposed so tests can serve it on any listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/checks/{name}", get(check_page))
        .route("/api/v1/checks", get(checks))
        .route("/api/v1/checks/{name}", get(check_json))
        .route("/-/reload", axum::routing::post(reload))
        .layer(axum::middleware::from_fn_with_state(
            state.access.clone(),
            crate::access::require,
        ))
        .with_state(state)
}

/// `GET /metrics`, streamed: a blocking task renders chunk by chunk while the client reads,
/// so a scrape of many thousand checks never holds the whole exposition in memory.
async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.runtime_tasks(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    );
    let (chunks, receiver) = tokio::sync::mpsc::channel::<String>(2);
    tokio::task::spawn_blocking(move || {
        state
            .metrics
            .write_text(&mut |chunk| chunks.blocking_send(chunk).is_ok());
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::new(Chunks(receiver)),
    )
        .into_response()
}

/// A response body fed by a channel of text chunks.
struct Chunks(tokio::sync::mpsc::Receiver<String>);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|text| Ok(http_body::Frame::data(bytes::Bytes::from(text)))))
    }
}

/// `POST /-/reload`: 200 with a summary, or 400 with every problem of the new configuration
/// (the old one keeps running).
async fn reload(State(state): State<AppState>) -> Response {
    let Some(requests) = state.reload else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "This agent runs the embedded default; there is nothing to reload.\n",
        )
            .into_response();
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if requests.send(Some(reply)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "The agent is shutting down.\n",
        )
            .into_response();
    }
    match answer.await {
        Ok(Ok(summary)) => (StatusCode::OK, format!("Reloaded: {summary}\n")).into_response(),
        Ok(Err(problems)) => (StatusCode::BAD_REQUEST, format!("{problems}\n")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The agent is shutting down.\n",
        )
            .into_response(),
    }
}

async fn healthy() -> &'static str {
    "OK\n"
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready\n").into_response()
    }
}

#[derive(Serialize)]
struct ChecksBody {
    region: String,
    version: &'static str,
    checks: Vec<CheckView>,
}

async fn checks(State(state): State<AppState>) -> Json<ChecksBody> {
    Json(ChecksBody {
        region: state.status.region().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        checks: state.status.views(),
    })
}

/// `GET /`: the status page, rendered off the async workers (sorting 10,000 checks takes a
/// few milliseconds the scheduler should not wait for).
async fn index(State(state): State<AppState>, Query(filter): Query<Filter>) -> Response {
    render(move || Some(page::list(&state.status, &filter))).await
}

/// `GET /checks/{name}`: one check in full.
async fn check_page(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let missing = name.clone();
    match render(move || page::detail(&state.status, &name)).await {
        response if response.status() == StatusCode::NOT_FOUND => {
            (StatusCode::NOT_FOUND, Html(page::not_found(&missing))).into_response()
        }
        response => response,
    }
}

/// `GET /api/v1/checks/{name}`: one check as JSON.
async fn check_json(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.status.view(&name) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no check named {name:?} runs on this agent") })),
        )
            .into_response(),
    }
}

async fn render(html: impl FnOnce() -> Option<String> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(html).await {
        Ok(Some(html)) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
