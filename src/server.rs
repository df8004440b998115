//! The agent's own HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, `/api/v1/checks` and a
//! small index page at `/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;

use crate::metrics::Metrics;
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
}

/// The router; exposed so tests can serve it on any listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/api/v1/checks", get(checks))
        .route("/-/reload", axum::routing::post(reload))
        .with_state(state)
}

/// `GET /metrics`, streamed: a blocking task renders chunk by chunk while the client reads,
/// so a scrape of many thousand checks never holds the whole exposition in memory.
async fn metrics(State(state): State<AppState>) -> Response {
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

async fn index(State(state): State<AppState>) -> Html<String> {
    let views = state.status.views();
    let mut rows = String::new();
    for view in &views {
        let (reason, detail) = view
            .last_run
            .as_ref()
            .map(|run| {
                (
                    run.reason.unwrap_or(""),
                    run.detail.clone().unwrap_or_default(),
                )
            })
            .unwrap_or(("", String::new()));
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&view.name),
            view.kind,
            escape(&view.target),
            view.state,
            view.state,
            reason,
            escape(&detail)
        ));
    }
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>nightjar</title><style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
td,th{{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}}.failing{{color:#b00}}.passing{{color:#070}}</style></head>\
<body><h1>nightjar</h1><p>Region <b>{region}</b>, version {version}. \
<a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/checks\">/api/v1/checks</a> · <a href=\"/-/ready\">/-/ready</a></p>\
<table><caption>Checks</caption><thead><tr><th scope=\"col\">Check</th><th scope=\"col\">Type</th><th scope=\"col\">Target</th>\
<th scope=\"col\">State</th><th scope=\"col\">Reason</th><th scope=\"col\">Detail</th></tr></thead><tbody>\n{rows}</tbody></table></body></html>\n",
        region = escape(state.status.region()),
        version = env!("CARGO_PKG_VERSION"),
    ))
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
