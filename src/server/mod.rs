//! The agent's own HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`,
//! `/api/v1/checks[/{name}]`, `/api/v1/maintenance` ([`api`]), `/probe` ([`probe`]) and the status page at `/` and `/checks/{name}` ([`crate::page`]),
//! served by [`serve`]: its own accept loop over hyper, with a connection cap, header-read,
//! handshake and write timeouts, and a shutdown deadline, so clients that stall or flood
//! cannot take the server, the checks' descriptors or the agent's shutdown with them.

pub mod api;
pub mod probe;

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
use crate::reload::ReloadReply;
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
    pub reload: Option<tokio::sync::mpsc::Sender<crate::reload::ReloadRequest>>,
    /// Who may use the server.
    pub access: crate::access::SharedAccess,
    /// The maintenance windows (`/api/v1/maintenance` opens and ends ad hoc ones).
    pub maintenance: Arc<crate::maintenance::Maintenance>,
    /// The modules `/probe` runs, and what its runs share.
    pub probes: Arc<probe::Probing>,
}

/// The router; exposed so tests can serve it on any listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/metrics",
            get(metrics).layer(axum::Extension(Arc::new(Renders::new(RENDERS)))),
        )
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/checks/{name}", get(check_page))
        .route("/api/v1/checks", get(checks))
        .route("/api/v1/checks/{name}", get(check_json))
        .route("/-/reload", axum::routing::post(reload))
        .route(
            "/api/v1/maintenance",
            get(api::list)
                .post(api::open)
                .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY)),
        )
        .route("/api/v1/maintenance/{id}", axum::routing::delete(api::end))
        .route("/probe", get(probe::probe))
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
    for (name, value) in security_header_values() {
        headers
            .entry(name)
            .or_insert(header::HeaderValue::from_static(value));
    }
    response
}

/// The headers every answer carries, the raw 503 at the connection cap included.
fn security_header_values() -> [(header::HeaderName, &'static str); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            page::content_security_policy(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ]
}

/// `GET /metrics`, streamed: a blocking task renders chunk by chunk while the client reads,
/// so a scrape of many thousand checks never holds the whole exposition in memory. At most
/// [`RENDERS`] renders run at once (each holds a blocking thread and up to a few chunks); a
/// scrape beyond them takes the place of a render that has run for [`PREEMPT_AFTER`] from an
/// address with more renders in progress than its own, or waits in line for [`RENDER_WAIT`],
/// then gets 503 with `Retry-After`.
async fn metrics(
    State(state): State<AppState>,
    axum::Extension(renders): axum::Extension<Arc<Renders>>,
    extensions: axum::http::Extensions,
) -> Response {
    let peer = extensions
        .get::<crate::access::ConnInfo>()
        .map(|conn| crate::access::client_key(conn.peer.ip()));
    let slot = extensions.get::<OnSlot>().map(|on| on.0.clone());
    let Some(render) = renders.acquire(peer, slot, &state.metrics.http).await else {
        tracing::debug!(
            message = "Scrape refused: every /metrics render is busy.",
            ?peer
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "Every /metrics render of this agent is busy; retry shortly.\n",
        )
            .into_response();
    };
    let render = Arc::new(render);
    state.metrics.runtime_tasks(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    );
    let (chunks, receiver) = tokio::sync::mpsc::channel::<String>(2);
    let rendering = render.clone();
    tokio::task::spawn_blocking(move || {
        let _rendering = rendering;
        // The renderer stops at its next chunk once the connection is gone: a reader that
        // stops reading is reset after WRITE_TIMEOUT without progress, a slow one at the
        // RESPONSE_DEADLINE, either way dropping the body. It never gives up on its own, which
        // would end the body early and hand the scraper a partial exposition that looks whole.
        state
            .metrics
            .write_text(&mut |chunk| chunks.blocking_send(chunk).is_ok());
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::new(Chunks {
            receiver,
            _render: render,
        }),
    )
        .into_response()
}

/// A response body fed by a channel of text chunks; its render's place is given back once
/// both the body and the renderer are gone.
struct Chunks {
    receiver: tokio::sync::mpsc::Receiver<String>,
    _render: Arc<Render>,
}

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|text| Ok(http_body::Frame::data(bytes::Bytes::from(text)))))
    }
}

/// `/metrics` renders at once.
const RENDERS: usize = 4;
/// How long a scrape waits for a render's place before it is answered 503.
const RENDER_WAIT: Duration = Duration::from_secs(5);
/// How long a render (or a request, for the connection cap) must have been in progress before
/// a client from an address holding fewer may take its place: a scrape that is served
/// promptly is never cut off, one that a slow reader drags out is.
const PREEMPT_AFTER: Duration = Duration::from_secs(2);

/// A connection or a render, as the choice of which to close to make room sees it.
struct Holder<P> {
    id: u64,
    /// The client's address (an IPv6 /64).
    peer: P,
    /// Since when it has been idle or busy.
    since: std::time::Instant,
    state: Held,
}

/// What a [`Holder`] is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Waiting for a request.
    Idle,
    /// Serving a request (or a render).
    Busy,
    /// Not to be closed.
    Fixed,
}

/// Which of `holders` to close to make room for a client from `peer`: the longest idle of
/// the address that holds the most, so one client's flood closes its own connections before
/// anyone else's; when none is idle, the one busy longest (for [`PREEMPT_AFTER`] at least)
/// of the address holding the most, if that is more than `peer` holds, so one address's slow
/// requests cannot lock everyone out.
fn choose_victim<P: Copy + Eq + std::hash::Hash>(holders: &[Holder<P>], peer: P) -> Option<u64> {
    let mut held: std::collections::HashMap<P, usize> = std::collections::HashMap::new();
    for holder in holders {
        *held.entry(holder.peer).or_default() += 1;
    }
    let holds = |holder: &Holder<P>| held.get(&holder.peer).copied().unwrap_or(0);
    let mine = held.get(&peer).copied().unwrap_or(0);
    let idle = |holder: &&Holder<P>| holder.state == Held::Idle;
    let dragging = |holder: &&Holder<P>| {
        holder.state == Held::Busy
            && holds(holder) > mine
            && holder.since.elapsed() >= PREEMPT_AFTER
    };
    let longest = |holder: &&Holder<P>| (holds(holder), std::cmp::Reverse(holder.since));
    holders
        .iter()
        .filter(idle)
        .max_by_key(longest)
        .or_else(|| holders.iter().filter(dragging).max_by_key(longest))
        .map(|holder| holder.id)
}

/// The `/metrics` renders in progress and their places.
struct Renders {
    places: Arc<tokio::sync::Semaphore>,
    active: std::sync::Mutex<std::collections::HashMap<u64, Active>>,
    next: std::sync::atomic::AtomicU64,
}

/// A render in progress.
struct Active {
    /// The client's address (an IPv6 /64).
    peer: Option<std::net::IpAddr>,
    started: std::time::Instant,
    /// Its connection, to close when another client takes its place.
    slot: Option<Arc<Slot>>,
    place: tokio::sync::OwnedSemaphorePermit,
}

/// A render's place, given back on drop (unless another scrape took it over).
struct Render {
    renders: Arc<Renders>,
    id: u64,
}

impl Drop for Render {
    fn drop(&mut self) {
        self.renders.lock().remove(&self.id);
    }
}

/// The request's connection, in its extensions (for the render cap).
#[derive(Clone)]
struct OnSlot(Arc<Slot>);

impl Renders {
    fn new(places: usize) -> Renders {
        Renders {
            places: Arc::new(tokio::sync::Semaphore::new(places)),
            active: std::sync::Mutex::new(std::collections::HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Active>> {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a render for `peer` on `slot`: a free one, one taken over from a render
    /// dragged out by an address holding more, or one that comes free within [`RENDER_WAIT`]
    /// (first come, first served).
    async fn acquire(
        self: &Arc<Self>,
        peer: Option<std::net::IpAddr>,
        slot: Option<Arc<Slot>>,
        metrics: &crate::metrics::HttpMetrics,
    ) -> Option<Render> {
        let give_up = tokio::time::Instant::now() + RENDER_WAIT;
        let waiting = self.places.clone().acquire_owned();
        tokio::pin!(waiting);
        let mut first = true;
        loop {
            let pause = if first {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            first = false;
            tokio::select! {
                biased;
                place = &mut waiting => return place.ok().map(|place| self.register(peer, slot, place)),
                () = tokio::time::sleep(pause) => {}
            }
            if let Some(place) = self.take_over(peer) {
                metrics.evicted();
                return Some(self.register(peer, slot, place));
            }
            if tokio::time::Instant::now() >= give_up {
                return None;
            }
        }
    }

    fn register(
        self: &Arc<Self>,
        peer: Option<std::net::IpAddr>,
        slot: Option<Arc<Slot>>,
        place: tokio::sync::OwnedSemaphorePermit,
    ) -> Render {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Active {
                peer,
                started: std::time::Instant::now(),
                slot,
                place,
            },
        );
        Render {
            renders: self.clone(),
            id,
        }
    }

    /// The place of the render [`choose_victim`] picks (renders are never idle: the
    /// longest-running, of at least [`PREEMPT_AFTER`], of the address holding the most
    /// renders, if that is more than `peer` holds); its connection is closed.
    fn take_over(
        &self,
        peer: Option<std::net::IpAddr>,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let mut active = self.lock();
        let holders: Vec<Holder<Option<std::net::IpAddr>>> = active
            .iter()
            .map(|(id, render)| Holder {
                id: *id,
                peer: render.peer,
                since: render.started,
                // A render without a connection cannot be closed.
                state: if render.slot.is_some() {
                    Held::Busy
                } else {
                    Held::Fixed
                },
            })
            .collect();
        let victim = choose_victim(&holders, peer)?;
        let victim = active.remove(&victim)?;
        if let Some(slot) = &victim.slot {
            tracing::debug!(message = "A /metrics render dragged out by a slow reader gives its place to another client.", peer = %slot.peer);
            slot.cut();
        }
        Some(victim.place)
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
        Ok(ReloadReply::Reloaded(summary)) => {
            (StatusCode::OK, format!("Reloaded: {summary}\n")).into_response()
        }
        Ok(ReloadReply::Rejected(problems)) => {
            (StatusCode::BAD_REQUEST, format!("{problems}\n")).into_response()
        }
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
    let windows = api::open_now(&state.maintenance, std::time::SystemTime::now());
    render(move || Some(page::list(&state.status, &filter, &windows))).await
}

/// `GET /checks/{name}`: one check in full.
async fn check_page(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let missing = name.clone();
    let status = state.status.clone();
    match render(move || page::detail(&state.status, &name)).await {
        response if response.status() == StatusCode::NOT_FOUND => {
            let closest = status.closest_name(&missing);
            let html = page::not_found(&missing, closest.as_deref());
            (StatusCode::NOT_FOUND, Html(html)).into_response()
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
            Json(serde_json::json!({ "error": api::no_such_check(&state.status, &name) })),
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
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to a client may make no progress before the connection is closed (a
/// `/metrics` reader that stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take in all, from its head to its response's last byte, before its
/// connection is closed: a client that reads, but slowly, cannot hold a connection (and a
/// `/metrics` render) for longer. Prometheus gives up on a scrape after 10 s by default.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(60);
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
pub fn raise_open_files_limit() {
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
    }
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `stopped` resolves; then
/// stops accepting, lets requests in progress finish for [`SHUTDOWN_GRACE`], and closes every
/// connection still open.
///
/// Each connection has `HEADER_READ_TIMEOUT`, `HANDSHAKE_TIMEOUT`, `WRITE_TIMEOUT` and,
/// per request, `RESPONSE_DEADLINE`. At most `[agent] max_connections` are open (fewer when
/// the open-files limit minus the checks' reserve, `reserved_fds`, is lower): at the cap, an
/// idle connection (no request in progress: a kept-alive one, or one that has not sent a
/// whole request head) is closed to make room, the longest-idle one of the address holding
/// the most connections, so idle and slow clients cannot keep a fresh scrape out; when every
/// connection has a request in progress, the one busy longest (at least `PREEMPT_AFTER`) of
/// the address holding the most is closed, if that address holds more than the new
/// connection's; else the new one is refused.
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
    let listener = with_backlog(listener)?;
    let fd_cap = descriptor_cap(reserved_fds);
    let table = Arc::new(Table::default());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut warned: Option<std::time::Instant> = None;
    tokio::pin!(stopped);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut stopped => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if out_of_resources(&error) => {
                    // Out of descriptors or memory: accepting again at once would spin. Wait
                    // for connections or runs to end, warning once a minute.
                    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                        tracing::warn!(message = "Cannot accept a connection; retrying every 100 ms.", %error);
                        warned = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(error) => {
                    // A connection that failed before it was accepted (reset, aborted): only
                    // that one is lost.
                    tracing::debug!(message = "A connection failed before it was accepted.", %error);
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
                    let _ = tcp.try_write(refused_answer());
                }
                tracing::debug!(message = "Connection refused: every connection is busy.", %peer, cap);
                continue;
            }
        };
        metrics.set_open(table.len());
        let _ = tcp.set_nodelay(true);
        warned = None;
        tasks.spawn(connection(
            Guarded::new(tcp, slot.clone()),
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

/// Connections the kernel may complete before the accept loop takes them (it caps this at
/// `net.core.somaxconn`). Beyond it, a burst of connections has its SYNs dropped, and a fresh
/// scrape among them waits for the client's retransmission, a second later; the 128 a
/// listener gets by default is soon reached by a flood of a thousand.
const BACKLOG: u32 = 4096;

/// `listener` with a backlog of [`BACKLOG`] (listening again only changes the backlog).
fn with_backlog(listener: tokio::net::TcpListener) -> std::io::Result<tokio::net::TcpListener> {
    #[cfg(unix)]
    {
        let fd = std::os::fd::OwnedFd::from(listener.into_std()?);
        tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd)).listen(BACKLOG)
    }
    #[cfg(not(unix))]
    {
        Ok(listener)
    }
}

/// Whether an accept failed for want of descriptors or memory (then retrying at once spins),
/// rather than for that one connection.
fn out_of_resources(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
            .iter()
            .any(|errno| error.raw_os_error() == Some(errno.raw_os_error()))
    }
    #[cfg(not(unix))]
    {
        error.kind() == std::io::ErrorKind::OutOfMemory
    }
}

/// The answer to a connection refused at the cap (plain HTTP only), with the headers every
/// response carries.
fn refused_answer() -> &'static [u8] {
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(|| {
        let body = "Every connection of this agent is busy; retry shortly.\r\n";
        let security: String = security_header_values()
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\n{security}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

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

/// The open connections, for the cap and for choosing which one to close.
#[derive(Default)]
struct Table {
    slots: std::sync::Mutex<std::collections::HashMap<u64, Arc<Slot>>>,
    next: std::sync::atomic::AtomicU64,
}

/// One open connection.
struct Slot {
    id: u64,
    /// The client's address (an IPv6 /64).
    peer: std::net::IpAddr,
    /// Requests in progress (a request is in progress until its response body is dropped).
    busy: std::sync::atomic::AtomicUsize,
    /// Since when requests have been in progress, or none has.
    since: std::sync::Mutex<std::time::Instant>,
    /// When the request in progress must be answered in full ([`RESPONSE_DEADLINE`]).
    deadline: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
    /// Told to close to make room.
    evict: tokio::sync::Notify,
    /// Closed with a reset: what the client has not read yet is dropped rather than left in
    /// the kernel's buffers for a slow reader.
    reset: std::sync::atomic::AtomicBool,
}

enum Admitted {
    Yes(Arc<Slot>),
    /// Admitted; another connection was told to close.
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

    /// A slot for a connection from `peer`, under `cap`. At the cap, the connection that
    /// [`choose_victim`] picks is closed to make room; with none to pick, the table is full.
    fn admit(&self, cap: usize, peer: std::net::IpAddr) -> Admitted {
        let peer = crate::access::client_key(peer);
        let mut slots = self.lock();
        let mut evicting = false;
        if slots.len() >= cap {
            let holders: Vec<Holder<std::net::IpAddr>> = slots
                .values()
                .map(|slot| Holder {
                    id: slot.id,
                    peer: slot.peer,
                    since: *slot.since(),
                    state: if slot.busy.load(Ordering::Acquire) == 0 {
                        Held::Idle
                    } else {
                        Held::Busy
                    },
                })
                .collect();
            let victim = choose_victim(&holders, peer);
            let Some(victim) = victim.and_then(|id| slots.remove(&id)) else {
                return Admitted::Full;
            };
            if victim.busy.load(Ordering::Acquire) > 0 {
                tracing::debug!(message = "A connection busy for long closed to make room.", peer = %victim.peer);
            }
            victim.cut();
            evicting = true;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            peer,
            busy: std::sync::atomic::AtomicUsize::new(0),
            since: std::sync::Mutex::new(std::time::Instant::now()),
            deadline: tokio::sync::watch::Sender::new(None),
            evict: tokio::sync::Notify::new(),
            reset: std::sync::atomic::AtomicBool::new(false),
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
    /// Tells the connection to close at once, with a reset.
    fn cut(&self) {
        self.reset.store(true, Ordering::Release);
        self.evict.notify_one();
    }

    fn since(&self) -> std::sync::MutexGuard<'_, std::time::Instant> {
        self.since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request in progress on a slot; dropped with the response body (or the request). The
/// first request in progress starts the [`RESPONSE_DEADLINE`].
struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: Arc<Slot>) -> Busy {
        if slot.busy.fetch_add(1, Ordering::AcqRel) == 0 {
            *slot.since() = std::time::Instant::now();
            slot.deadline
                .send_replace(Some(tokio::time::Instant::now() + RESPONSE_DEADLINE));
        }
        Busy(slot)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.since() = std::time::Instant::now();
            self.0.deadline.send_replace(None);
        }
    }
}

/// Resolves once the request in progress on `deadline`'s slot is past its deadline.
async fn overdue(mut deadline: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>) {
    loop {
        let current = *deadline.borrow_and_update();
        let changed = match current {
            None => deadline.changed().await,
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => return,
                changed = deadline.changed() => changed,
            },
        };
        if changed.is_err() {
            // The slot is gone, and with it the connection.
            return std::future::pending().await;
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
            tracing::debug!(message = "Connection closed to make room.", peer = %info.peer)
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
    let deadline = slot.deadline.subscribe();
    let own = slot.clone();
    let service = hyper::service::service_fn(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            let busy = Busy::new(slot.clone());
            request.extensions_mut().insert(info);
            request.extensions_mut().insert(OnSlot(slot.clone()));
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
        () = overdue(deadline) => {
            own.reset.store(true, Ordering::Release);
            tracing::debug!(message = "Connection closed: its request took longer than the response deadline.", peer = %info.peer);
            return Ended::TimedOut;
        }
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
///
/// Closed by a timeout, an eviction or the response deadline, it is reset rather than closed
/// gracefully, so what the client has not read does not stay in the kernel's buffers.
struct Guarded {
    tcp: tokio::net::TcpStream,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    slot: Arc<Slot>,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.slot.reset.load(Ordering::Acquire) {
            let _ = self.tcp.set_zero_linger();
        }
    }
}

impl Guarded {
    fn new(tcp: tokio::net::TcpStream, slot: Arc<Slot>) -> Guarded {
        Guarded {
            tcp,
            stalled: None,
            slot,
        }
    }

    /// After a write returned `Pending`: an error once it has been pending for too long.
    fn stall<T>(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<T>> {
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match timer.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                self.slot.reset.store(true, Ordering::Release);
                std::task::Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client read nothing for the write timeout",
                )))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(table: &Table, peer: [u8; 4]) -> Arc<Slot> {
        match table.admit(usize::MAX, std::net::IpAddr::from(peer)) {
            Admitted::Yes(slot) => slot,
            _ => unreachable!("no cap"),
        }
    }

    /// Marks `slot` busy since `ago`.
    fn busy_for(slot: &Arc<Slot>, ago: Duration) -> Busy {
        let busy = Busy::new(slot.clone());
        *slot.since() = std::time::Instant::now() - ago;
        busy
    }

    /// Whether `slot` was told to close (takes the notification).
    fn evicted(slot: &Slot) -> bool {
        let notified = slot.evict.notified();
        tokio::pin!(notified);
        notified
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
            .is_ready()
    }

    #[test]
    fn at_the_cap_idle_connections_go_first_then_the_longest_busy_of_the_biggest_holder() {
        let table = Table::default();
        let (a, b, c, d) = (
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            [192, 0, 2, 3],
            [192, 0, 2, 4],
        );
        let a1 = slot(&table, a);
        let a2 = slot(&table, a);
        let b1 = slot(&table, b);
        let _busy_a1 = busy_for(&a1, Duration::from_secs(3));
        let _busy_b1 = busy_for(&b1, Duration::from_secs(4));
        // a2 is idle: it goes first, though b1 has been busy longer.
        let Admitted::Evicting(c1) = table.admit(3, c.into()) else {
            panic!("an idle connection makes room")
        };
        assert!(evicted(&a2) && !evicted(&a1) && !evicted(&b1));
        let _busy_c1 = busy_for(&c1, Duration::ZERO);
        // All busy, one each: a newcomer from an address already holding one gets nothing.
        assert!(matches!(table.admit(3, a.into()), Admitted::Full));
        // One from an address holding none takes the place of the connection busy longest
        // (for PREEMPT_AFTER at least; c1 is too young).
        let Admitted::Evicting(d1) = table.admit(3, d.into()) else {
            panic!("the longest-busy connection makes room")
        };
        assert!(evicted(&b1) && !evicted(&a1) && !evicted(&c1));
        let _busy_d1 = busy_for(&d1, Duration::ZERO);
        // An address holding two gives way to one holding fewer, its longest-busy one first,
        // but never to itself.
        let a3 = slot(&table, a);
        let _busy_a3 = busy_for(&a3, Duration::from_millis(2500));
        assert!(matches!(table.admit(4, a.into()), Admitted::Full));
        assert!(matches!(table.admit(4, b.into()), Admitted::Evicting(_)));
        assert!(evicted(&a1) && !evicted(&a3) && !evicted(&c1) && !evicted(&d1));
        // Connections busy for less than PREEMPT_AFTER are not cut off.
        let table = Table::default();
        let e1 = slot(&table, a);
        let e2 = slot(&table, a);
        let _busy = (busy_for(&e1, Duration::ZERO), busy_for(&e2, Duration::ZERO));
        assert!(matches!(table.admit(2, b.into()), Admitted::Full));
    }

    #[tokio::test]
    async fn a_scrape_takes_the_place_of_a_render_dragged_out_by_an_address_holding_more() {
        let metrics = crate::metrics::Metrics::new(&crate::config::embedded(
            &crate::config::Overrides::default(),
        ));
        let table = Table::default();
        let renders = Arc::new(Renders::new(2));
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        let a1 = slot(&table, [192, 0, 2, 1]);
        let a2 = slot(&table, [192, 0, 2, 1]);
        let first = renders
            .acquire(Some(a), Some(a1.clone()), &metrics.http)
            .await
            .unwrap();
        let second = renders
            .acquire(Some(a), Some(a2.clone()), &metrics.http)
            .await
            .unwrap();
        // Young renders keep their places: b waits, and gives up after RENDER_WAIT.
        tokio::time::pause();
        assert!(
            renders
                .acquire(Some(b), None, &metrics.http)
                .await
                .is_none()
        );
        tokio::time::resume();
        for render in renders.lock().values_mut() {
            render.started -= PREEMPT_AFTER;
        }
        if let Some(render) = renders.lock().get_mut(&first.id) {
            render.started -= Duration::from_secs(1);
        }
        // a cannot take its own; b takes a's oldest.
        assert!(renders.take_over(Some(a)).is_none());
        let taken = renders.acquire(Some(b), None, &metrics.http).await.unwrap();
        assert!(evicted(&a1) && !evicted(&a2));
        assert_eq!(renders.lock().len(), 2);
        drop(first);
        assert_eq!(renders.lock().len(), 2, "a taken place stays taken");
        drop((second, taken));
        assert!(renders.lock().is_empty());
        assert_eq!(renders.places.available_permits(), 2);
    }

    /// A body that never ends.
    struct Endless;

    impl http_body::Body for Endless {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
                vec![b'x'; 16 * 1024],
            )))))
        }
    }

    /// On paused time, over an in-memory stream: a client that reads a little every 5 s
    /// (never stalling the writes for long) is cut off once its request has lasted
    /// RESPONSE_DEADLINE, and its connection is reset.
    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_cut_off_at_the_response_deadline() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let table = Table::default();
        let slot = slot(&table, [192, 0, 2, 1]);
        let info = crate::access::ConnInfo {
            peer: "192.0.2.1:40000".parse().unwrap(),
            local: "127.0.0.1:9465".parse().unwrap(),
            tls: false,
        };
        let app = Router::new().route("/endless", get(|| async { axum::body::Body::new(Endless) }));
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = tokio::spawn({
            let slot = slot.clone();
            async move {
                let ended = http(server, info, app, slot, stopping).await;
                (ended, tokio::time::Instant::now())
            }
        });
        client
            .write_all(b"GET /endless HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let mut buffer = vec![0u8; 16 * 1024];
        let mut total = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            match client.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
            assert!(started.elapsed() < RESPONSE_DEADLINE * 2, "never cut off");
        }
        let (ended, at) = serving.await.unwrap();
        let took = at - started;
        assert!(
            took >= RESPONSE_DEADLINE && took < RESPONSE_DEADLINE + Duration::from_secs(5),
            "cut off after {took:?} having read {total} bytes"
        );
        assert!(total >= 16 * 1024 * 12, "it read all along: {total} bytes");
        assert!(matches!(ended, Ended::TimedOut));
        assert!(slot.reset.load(Ordering::Acquire), "closed with a reset");
        assert_eq!(slot.busy.load(Ordering::Acquire), 0);
    }
}
