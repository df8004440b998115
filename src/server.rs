//! The agent's own HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`,
//! `/api/v1/checks[/{name}]` and the status page at `/` and `/checks/{name}` ([`crate::page`]),
//! served by [`serve`]: its own accept loop over hyper, with a connection cap, header-read,
//! handshake and write timeouts, and a shutdown deadline, so clients that stall or flood
//! cannot take the server, the checks' descriptors or the agent's shutdown with them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
            crate::access::Gate {
                access: state.access.clone(),
                limits: Arc::new(crate::access::Limits::new()),
                metrics: state.metrics.http.clone(),
            },
            crate::access::require,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every response carries: a Content-Security-Policy that allows only the page's own
/// style and script (by hash) and no framing, no MIME sniffing, no Referer to other sites.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(header::HeaderValue::from_static(
            page::content_security_policy(),
        ));
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(header::HeaderValue::from_static("nosniff"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(header::HeaderValue::from_static("no-referrer"));
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(header::HeaderValue::from_static("DENY"));
    response
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
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // A reader that stops reading lets the renderer give up after WRITE_TIMEOUT, so it
        // never holds a blocking thread for long (the connection is closed by then too).
        state.metrics.write_text(&mut |chunk| {
            runtime
                .block_on(tokio::time::timeout(WRITE_TIMEOUT, chunks.send(chunk)))
                .is_ok_and(|sent| sent.is_ok())
        });
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

/// How long a client has to send a whole request head, counted from the connection (or the
/// TLS handshake's end) and, on a kept-alive connection, from the end of the previous
/// response: so it is also the idle keep-alive timeout.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to a client may make no progress before the connection is closed (a
/// `/metrics` reader that stopped reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, how long requests in progress have to finish before their connections are
/// closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Descriptors kept for checks beyond the server's connections: this many, plus
/// [`FDS_PER_RUN`] per run the agent may have in flight.
pub const FD_RESERVE: usize = 64;
/// Descriptors a check run may hold (its connection, a resolver's sockets).
pub const FDS_PER_RUN: usize = 2;
/// The fewest connections served, whatever the descriptor limit.
const MIN_CONNECTIONS: usize = 4;

/// Raises the soft limit on open files to the hard limit, as Go programs do at start, so a
/// default soft limit of 1024 does not cap the checks and connections an agent can have.
/// Returns the soft limit now in force (`None` when it is unknown or unlimited).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(soft), Some(hard)) = (limit.current, limit.maximum)
            && soft < hard
        {
            match setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                },
            ) {
                Ok(()) => {
                    tracing::debug!(
                        message = "Raised the open-files limit.",
                        from = soft,
                        to = hard
                    )
                }
                Err(error) => {
                    tracing::debug!(message = "Cannot raise the open-files limit.", soft, hard, %error)
                }
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `stopped` resolves; then
/// stops accepting, lets requests in progress finish for [`SHUTDOWN_GRACE`], and closes every
/// connection still open.
///
/// Each connection has [`HEADER_READ_TIMEOUT`], [`HANDSHAKE_TIMEOUT`] and [`WRITE_TIMEOUT`].
/// At most `[agent] max_connections` are open (fewer when the open-files limit minus the
/// checks' reserve, `reserved_fds`, is lower): at the cap, an idle connection (no request in
/// progress: a kept-alive one, or one that has not sent a whole request head) is closed to
/// make room, the longest-idle one of the address holding the most connections, so idle and
/// slow clients cannot keep a fresh scrape out; when every connection has a request in
/// progress, the new one is refused.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<crate::access::SharedTls>,
    app: Router,
    access: crate::access::SharedAccess,
    metrics: crate::metrics::HttpMetrics,
    reserved_fds: usize,
    stopped: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let fd_cap = descriptor_cap(reserved_fds);
    let table = Arc::new(Table::default());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(stopped);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut stopped => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait, then go on.
                    tracing::warn!(message = "Cannot accept a connection.", %error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let cap = crate::access::Access::current(&access)
            .max_connections()
            .min(fd_cap);
        let slot = match table.admit(cap, peer.ip()) {
            Admitted::Yes(slot) => slot,
            Admitted::Evicting(slot) => {
                metrics.evicted();
                slot
            }
            Admitted::Full => {
                metrics.refused();
                if tls.is_none() {
                    // Best effort, never waiting: the socket buffer of a new connection is empty.
                    let _ = tcp.try_write(REFUSED);
                }
                tracing::debug!(message = "Connection refused: every connection is busy.", %peer, cap);
                continue;
            }
        };
        metrics.set_open(table.len());
        let _ = tcp.set_nodelay(true);
        tasks.spawn(connection(
            Guarded::new(tcp),
            crate::access::ConnInfo {
                peer,
                local,
                tls: tls.is_some(),
            },
            tls.clone(),
            app.clone(),
            slot,
            table.clone(),
            metrics.clone(),
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            message = "Closing connections whose requests did not finish in time.",
            connections = tasks.len()
        );
        tasks.shutdown().await;
    }
    metrics.set_open(0);
    Ok(())
}

/// The answer to a connection refused at the cap (plain HTTP only).
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 56\r\n\r\nEvery connection of this agent is busy; retry shortly.\r\n";

/// The connection cap the open-files limit allows, keeping `reserved` for the checks.
fn descriptor_cap(reserved: usize) -> usize {
    #[cfg(unix)]
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    #[cfg(not(unix))]
    let soft: Option<u64> = None;
    let Some(soft) = soft.and_then(|soft| usize::try_from(soft).ok()) else {
        return usize::MAX;
    };
    let cap = soft.saturating_sub(reserved);
    if cap < MIN_CONNECTIONS {
        tracing::warn!(
            message = "The open-files limit leaves almost no descriptors for the server's connections; raise it (systemd LimitNOFILE=, ulimit -n).",
            limit = soft,
            reserved_for_checks = reserved,
            connections = MIN_CONNECTIONS
        );
        return MIN_CONNECTIONS;
    }
    cap
}

/// The open connections, for the cap and for choosing which idle one to close.
#[derive(Default)]
struct Table {
    slots: std::sync::Mutex<std::collections::HashMap<u64, Arc<Slot>>>,
    next: std::sync::atomic::AtomicU64,
}

/// One open connection.
struct Slot {
    id: u64,
    /// The client's address.
    peer: std::net::IpAddr,
    /// Requests in progress (a request is in progress until its response body is dropped).
    busy: std::sync::atomic::AtomicUsize,
    /// Since when no request is in progress.
    idle_since: std::sync::Mutex<std::time::Instant>,
    /// Told to close to make room.
    evict: tokio::sync::Notify,
}

enum Admitted {
    Yes(Arc<Slot>),
    /// Admitted; the connection idle the longest was told to close.
    Evicting(Arc<Slot>),
    Full,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Slot>>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// A slot for a connection from `peer`, under `cap`. At the cap, the victim is the
    /// longest-idle connection of the address that holds the most, so one client's flood
    /// closes its own connections before anyone else's.
    fn admit(&self, cap: usize, peer: std::net::IpAddr) -> Admitted {
        let mut slots = self.lock();
        let mut evicting = false;
        if slots.len() >= cap {
            let mut held: std::collections::HashMap<std::net::IpAddr, usize> =
                std::collections::HashMap::new();
            for slot in slots.values() {
                *held.entry(slot.peer).or_default() += 1;
            }
            let idle = |slot: &&Arc<Slot>| slot.busy.load(Ordering::Acquire) == 0;
            let victim = slots
                .values()
                .filter(idle)
                .max_by_key(|slot| {
                    (
                        held.get(&slot.peer).copied().unwrap_or(0),
                        std::cmp::Reverse(*slot.since()),
                    )
                })
                .map(|slot| slot.id);
            let Some(victim) = victim.and_then(|id| slots.remove(&id)) else {
                return Admitted::Full;
            };
            victim.evict.notify_one();
            evicting = true;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            peer,
            busy: std::sync::atomic::AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(std::time::Instant::now()),
            evict: tokio::sync::Notify::new(),
        });
        slots.insert(id, slot.clone());
        if evicting {
            Admitted::Evicting(slot)
        } else {
            Admitted::Yes(slot)
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

impl Slot {
    fn since(&self) -> std::sync::MutexGuard<'_, std::time::Instant> {
        self.idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request in progress on a slot; dropped with the response body (or the request).
struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: Arc<Slot>) -> Busy {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy(slot)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.since() = std::time::Instant::now();
        }
    }
}

/// A response body that marks its request finished when hyper drops it.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// How a connection ended, for the counters.
enum Ended {
    Closed,
    TimedOut,
    Evicted,
}

/// One connection: the TLS handshake if any, then HTTP/1.1 until the client or a timeout
/// closes it, it is evicted, or the server stops.
#[allow(clippy::too_many_arguments)]
async fn connection(
    io: Guarded,
    info: crate::access::ConnInfo,
    tls: Option<crate::access::SharedTls>,
    app: Router,
    slot: Arc<Slot>,
    table: Arc<Table>,
    metrics: crate::metrics::HttpMetrics,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let serving = async {
        match tls {
            None => http(io, info, app, slot.clone(), stopping).await,
            Some(tls) => {
                let config = tls
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => http(stream, info, app, slot.clone(), stopping).await,
                    Ok(Err(error)) => {
                        tracing::debug!(message = "TLS handshake failed.", peer = %info.peer, %error);
                        Ended::Closed
                    }
                    Err(_) => {
                        tracing::debug!(message = "TLS handshake timed out.", peer = %info.peer);
                        Ended::TimedOut
                    }
                }
            }
        }
    };
    let ended = tokio::select! {
        ended = serving => ended,
        () = slot.evict.notified() => Ended::Evicted,
    };
    match ended {
        Ended::TimedOut => metrics.timed_out(),
        Ended::Evicted => {
            tracing::debug!(message = "Idle connection closed to make room.", peer = %info.peer)
        }
        Ended::Closed => {}
    }
    table.remove(slot.id);
    metrics.set_open(table.len());
}

/// HTTP/1.1 on `io` with the header-read timeout; on stop, a graceful close (idle connections
/// close at once, a request in progress finishes first).
async fn http<I>(
    io: I,
    info: crate::access::ConnInfo,
    app: Router,
    slot: Arc<Slot>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Ended
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper::service::Service as _;
    let app = hyper_util::service::TowerToHyperService::new(app);
    let service = hyper::service::service_fn(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            let busy = Busy::new(slot.clone());
            request.extensions_mut().insert(info);
            let call = app.call(request);
            async move {
                let response = call.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| axum::body::Body::new(Tracked { body, _busy: busy })),
                )
            }
        },
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => Ended::Closed,
        Err(error) if error.is_timeout() || timed_out(&error) => {
            tracing::debug!(message = "Connection timed out.", peer = %info.peer, %error);
            Ended::TimedOut
        }
        Err(error) => {
            tracing::debug!(message = "Connection ended with an error.", peer = %info.peer, %error);
            Ended::Closed
        }
    }
}

/// Whether `error` comes from [`Guarded`]'s write timeout.
fn timed_out(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = cause.source();
    }
    false
}

/// A client's TCP stream whose writes fail once they have made no progress for
/// [`WRITE_TIMEOUT`], so a client that stops reading cannot hold a connection (and the
/// renderer feeding it) forever.
struct Guarded {
    tcp: tokio::net::TcpStream,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Guarded {
    fn new(tcp: tokio::net::TcpStream) -> Guarded {
        Guarded { tcp, stalled: None }
    }

    /// After a write returned `Pending`: an error once it has been pending for too long.
    fn stall<T>(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<T>> {
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match timer.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing for the write timeout",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        match poll {
            std::task::Poll::Ready(result) => {
                self.stalled = None;
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => self.stall(cx),
        }
    }
}

impl tokio::io::AsyncRead for Guarded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Guarded {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.progress(cx, poll)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.tcp).poll_flush(cx);
        this.progress(cx, poll)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.tcp).poll_shutdown(cx);
        this.progress(cx, poll)
    }
}
