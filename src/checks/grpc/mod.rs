//! The `grpc` check: the standard health check (`grpc.health.v1.Health/Check`) over a fresh
//! HTTP/2 connection, with TLS (ALPN `h2`, the chain read and judged like every TLS check) or
//! in plain text (h2c, prior knowledge).
//!
//! The connection is made with `checks::dial` and `checks::tls_handshake`, so its phases are
//! timed like every other kind's; hyper speaks HTTP/2 over it and tonic's generated health
//! client speaks gRPC over that. Success means: the call returned `OK` and the answer is
//! `SERVING`.

pub(crate) mod config;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use super::CheckCtx;
use super::http::TlsOptions;
use crate::net::{self, IpPreference};
use crate::result::{Details, Failure, FailureReason, GrpcDetails, Status, grpc_code_name};

/// The reasons a `grpc` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::Closed,
    FailureReason::Protocol,
    FailureReason::TooLarge,
    FailureReason::GrpcStatus,
    FailureReason::NotServing,
];

/// The largest health answer decoded; a `HealthCheckResponse` is a few bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The HTTP/2 flow-control windows offered to the server: what it may send before nightjar
/// reads, so also what a flooding server can make nightjar buffer.
const WINDOW: u32 = 64 * 1024;

/// Response headers and trailers nightjar accepts, in all (HTTP/2's header list size).
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// The path of the standard health check, as failure details name it.
const METHOD: &str = "grpc.health.v1.Health/Check";

/// A validated `grpc` check.
#[derive(Debug, Clone)]
pub struct GrpcSpec {
    /// Host name or IP address to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// `HOST:PORT` as shown in failure details and sent as the `:authority`.
    pub target: String,
    /// Address family preference.
    pub ip: IpPreference,
    /// The TLS set-up; `None` for plain-text HTTP/2 (h2c with prior knowledge).
    pub tls: Option<TlsOptions>,
    /// The service asked about; empty asks about the server as a whole.
    pub service: String,
    /// Metadata sent with the call (values that hold secrets are marked sensitive).
    pub metadata: Vec<(HeaderName, HeaderValue)>,
}

/// Runs a `grpc` check once.
pub async fn run(spec: &GrpcSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = GrpcDetails {
        tls_used: spec.tls.is_some(),
        ..GrpcDetails::default()
    };
    let status = match probe(spec, ctx, &mut details).await {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    };
    (status, Details::Grpc(details))
}

async fn probe(spec: &GrpcSpec, ctx: &CheckCtx, details: &mut GrpcDetails) -> Result<(), Failure> {
    let (tcp, remote) = super::dial(
        ctx,
        &spec.host,
        spec.port,
        spec.ip,
        &spec.target,
        &mut details.resolve,
        &mut details.connect,
    )
    .await?;
    details.remote_addr = Some(remote);
    let at = format!("{} at {remote}", spec.target);
    let Some(tls) = &spec.tls else {
        return health_check(spec, ctx, Recorded::new(tcp), "http", &at, details).await;
    };
    let server_name = tls.name_for(&spec.host)?;
    let (stream, info) =
        super::tls_handshake(tls, &server_name, tcp, ctx.deadline, &at, &mut details.tls)
            .await
            .map_err(|failure| alpn_refused(failure, &at))?;
    let verified = super::require_verified(&info, tls.insecure_skip_verify, &at);
    details.tls_info = Some(info);
    verified?;
    // nightjar offers h2 alone by ALPN: a server that takes part in ALPN either chooses it
    // or ends the handshake (see `alpn_refused`); rustls refuses one that chooses something
    // not offered. A server that does not take part in ALPN is tried anyway.
    health_check(spec, ctx, Recorded::new(stream), "https", &at, details).await
}

/// A TLS handshake that failed because the server will not speak h2, the one protocol
/// nightjar offers by ALPN, said so; other failures as they are.
fn alpn_refused(failure: Failure, at: &str) -> Failure {
    // What rustls says of a `no_application_protocol` alert (RFC 7301: the server supports
    // none of the protocols offered; nginx on a listener without `http2`), and of a server
    // that chose a protocol that was not offered.
    let refused = failure.detail.contains("NoApplicationProtocol");
    let unoffered = failure
        .detail
        .contains("SelectedUnofferedApplicationProtocol");
    if failure.reason != FailureReason::Tls || !(refused || unoffered) {
        return failure;
    }
    let how = if refused {
        "it refused ALPN h2 (TLS alert no_application_protocol)"
    } else {
        "it chose a protocol other than h2 by ALPN"
    };
    Failure::new(
        FailureReason::Protocol,
        format!("{at} is not an HTTP/2 server over TLS: {how}; gRPC needs h2"),
    )
}

/// The health call over `io`, timed as the `check` phase, its answer judged.
async fn health_check<S>(
    spec: &GrpcSpec,
    ctx: &CheckCtx,
    io: Recorded<S>,
    scheme: &str,
    at: &str,
    details: &mut GrpcDetails,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let seen = io.seen.clone();
    let head = Head::default();
    let tasks = Arc::new(Mutex::new(JoinSet::new()));
    let start = Instant::now();
    let answer = timeout_at(
        ctx.deadline,
        call(
            spec,
            ctx,
            io,
            scheme,
            &head,
            RunTasks(Arc::downgrade(&tasks)),
        ),
    )
    .await;
    details.check = start.elapsed();
    close(tasks, ctx.deadline).await;
    let seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if answer.as_ref().is_ok_and(Result::is_err)
        && let Some((code, content_type)) = not_grpc(&head)
    {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!("{at} answered HTTP {code} ({content_type}), not gRPC: not a gRPC endpoint"),
        ));
    }
    match answer {
        Err(_) => Err(timed_out(&seen, at)),
        Ok(Err(Broken::Connection(error))) => Err(transport_failure(&error, &seen, spec, at)),
        Ok(Err(Broken::Call(status))) => Err(call_failure(&status, &seen, spec, at, details)),
        Ok(Ok(answer)) => {
            details.status_code = Some(0);
            details.serving_status = Some(answer.status);
            judge(answer.status, &spec.service, at)
        }
    }
}

/// Why the call gave no answer.
enum Broken {
    /// The HTTP/2 connection failed (before or during the call).
    Connection(hyper::Error),
    /// The call ended with a status other than `OK`, or its answer could not be read.
    Call(tonic::Status),
}

/// How long a finished call's connection may take to close cleanly (GOAWAY, and
/// close_notify over TLS): writes that need no answer from the server.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// What hyper's HTTP/2 client spawns for one run: the task that owns the connection (and so
/// the socket), the one that waits for each response, and one per request body it sends.
/// They run in the run's own set, which ends them with the run (or when the run's future
/// is dropped). Spawned on the runtime instead, the connection's task outlived the run
/// whenever its close could not be written: against a server that stops reading, it waited
/// forever to send its GOAWAY, holding the socket, one task and one socket per run.
#[derive(Clone)]
struct RunTasks(Weak<Mutex<JoinSet<()>>>);

impl<F> hyper::rt::Executor<F> for RunTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        // Once the run is over, what it would have spawned is dropped unrun.
        if let Some(tasks) = self.0.upgrade() {
            tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .spawn(async move {
                    task.await;
                });
        }
    }
}

/// Lets the run's connection close cleanly for at most [`CLOSE_GRACE`] (never past the
/// deadline), then aborts whatever of it is left, closing the socket.
async fn close(tasks: Arc<Mutex<JoinSet<()>>>, deadline: Instant) {
    let mut left = std::mem::take(
        &mut *tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    drop(tasks);
    let until = deadline.min(Instant::now() + CLOSE_GRACE);
    let _ = timeout_at(until, async { while left.join_next().await.is_some() {} }).await;
    // Dropping the set aborts the tasks still in it.
}

/// Starts HTTP/2 on `io` and makes the call, driving the request side of the connection
/// alongside it; what hyper spawns (the connection's own task) goes to `tasks`, which the
/// caller ends.
async fn call<S>(
    spec: &GrpcSpec,
    ctx: &CheckCtx,
    io: Recorded<S>,
    scheme: &str,
    head: &Head,
    tasks: RunTasks,
) -> Result<HealthCheckResponse, Broken>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(tasks)
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake(TokioIo::new(io))
        .await
        .map_err(Broken::Connection)?;
    let mut headers = Vec::with_capacity(spec.metadata.len() + 1);
    headers.push((
        http::header::USER_AGENT,
        HeaderValue::from_static(ctx.user_agent),
    ));
    headers.extend(spec.metadata.iter().cloned());
    let service = H2 {
        sender,
        headers: Arc::new(headers),
        head: head.clone(),
    };
    let origin = Uri::builder()
        .scheme(scheme)
        .authority(spec.target.as_str())
        .path_and_query("/")
        .build()
        .map_err(|error| Broken::Call(tonic::Status::internal(error.to_string())))?;
    let mut client =
        HealthClient::with_origin(service, origin).max_decoding_message_size(MAX_MESSAGE);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: spec.service.clone(),
    });
    // The server learns the deadline too (grpc-timeout), as every gRPC client tells it.
    request.set_timeout(ctx.deadline.saturating_duration_since(Instant::now()));
    let answer = client.check(request);
    tokio::pin!(answer, connection);
    tokio::select! {
        biased;
        answer = &mut answer => answer.map(tonic::Response::into_inner).map_err(Broken::Call),
        ended = &mut connection => match ended {
            Err(error) => Err(Broken::Connection(error)),
            // A clean close: the call, which can no longer be answered, says how it ended.
            Ok(()) => answer.await.map(tonic::Response::into_inner).map_err(Broken::Call),
        },
    }
}

/// `SERVING` passes; anything else fails with the status named.
fn judge(status: i32, service: &str, at: &str) -> Result<(), Failure> {
    if status == ServingStatus::Serving as i32 {
        return Ok(());
    }
    let what = if service.is_empty() {
        format!("the server {at}")
    } else {
        format!("service {service:?} of {at}")
    };
    let name = ServingStatus::try_from(status).map_or_else(
        |_| format!("status {status}, which is not a known serving status"),
        |known| known.as_str_name().to_string(),
    );
    Err(Failure::new(
        FailureReason::NotServing,
        format!("{what} is {name}, expected SERVING"),
    ))
}

/// What a deadline that passed during the call means, by what the server had sent.
fn timed_out(seen: &Seen, at: &str) -> Failure {
    let detail = if seen.total == 0 {
        format!("timed out: {at} accepted the connection but sent nothing (no HTTP/2 settings)")
    } else {
        format!(
            "timed out waiting for the answer to {METHOD} from {at} ({} bytes received)",
            seen.total
        )
    };
    Failure::new(FailureReason::Timeout, detail)
}

/// A connection that failed: TLS refused after the handshake, not HTTP/2 at all, closed, or
/// broken.
fn transport_failure(error: &hyper::Error, seen: &Seen, spec: &GrpcSpec, at: &str) -> Failure {
    // TLS 1.3 servers judge the client's certificate after the client's handshake is over:
    // one that wants a certificate it did not get sends an alert and closes.
    let no_client_cert = spec
        .tls
        .as_ref()
        .is_some_and(|tls| !tls.client.client_auth_cert_resolver.has_certs());
    let hint = if no_client_cert {
        "; this check sends no client certificate: does the server require one (tls.cert_file, tls.key_file)?"
    } else {
        ""
    };
    if let Some(tls_error) = net::find_cause::<rustls::Error>(error) {
        return Failure::new(
            FailureReason::Tls,
            format!("{at} ended the TLS session before answering: {tls_error}{hint}"),
        );
    }
    if seen.first.starts_with(b"HTTP/") {
        let line = seen.first.split(|b| *b == b'\r' || *b == b'\n').next();
        let line = String::from_utf8_lossy(line.unwrap_or_default());
        return Failure::new(
            FailureReason::Protocol,
            format!(
                "{at} is not an HTTP/2 server: it answered HTTP/1 ({line:?}); gRPC needs HTTP/2"
            ),
        );
    }
    let closed = error.is_closed()
        || error.is_incomplete_message()
        || error.is_canceled()
        || net::find_cause::<io::Error>(error).is_some_and(net::closed_by_peer);
    if closed && seen.total == 0 && no_client_cert {
        return Failure::new(
            FailureReason::Tls,
            format!(
                "{at} closed the TLS connection right after the handshake, before any HTTP/2{hint}"
            ),
        );
    }
    if closed && seen.total == 0 {
        return Failure::new(
            FailureReason::Closed,
            format!(
                "{at} closed the connection without sending anything ({})",
                error_chain(error)
            ),
        );
    }
    if closed {
        return Failure::new(
            FailureReason::Closed,
            format!("{at} closed the connection before answering {METHOD}: {error}"),
        );
    }
    let chain = error_chain(error);
    // HTTP/2 gives up on a header block past the size it announced with a COMPRESSION_ERROR.
    if chain.contains("header compression") && seen.total > u64::from(MAX_HEADER_LIST) {
        return Failure::new(
            FailureReason::TooLarge,
            format!(
                "{at} sent response headers over the {} KiB nightjar accepts ({chain})",
                MAX_HEADER_LIST / 1024
            ),
        );
    }
    Failure::new(
        FailureReason::Protocol,
        format!(
            "{at} broke HTTP/2 ({chain}); its first bytes: {}",
            quote_bytes(&seen.first)
        ),
    )
}

/// A call that ended without an answer: a gRPC status from the server, or a reply that is
/// not gRPC.
fn call_failure(
    status: &tonic::Status,
    seen: &Seen,
    spec: &GrpcSpec,
    at: &str,
    details: &mut GrpcDetails,
) -> Failure {
    let source = std::error::Error::source(status);
    if let Some(error) = source.and_then(net::find_cause::<hyper::Error>) {
        return transport_failure(error, seen, spec, at);
    }
    let message = status.message();
    // tonic's own verdicts on what came back, which no server sends as a status.
    if message.starts_with("Error, decoded message length too large") {
        return Failure::new(
            FailureReason::TooLarge,
            format!("{at} answered {METHOD} with a message over {MAX_MESSAGE} bytes"),
        );
    }
    if let Some(code) =
        message.strip_prefix("grpc-status header missing, mapped from HTTP status code ")
    {
        return Failure::new(
            FailureReason::Protocol,
            format!("{at} answered HTTP {code} without a gRPC status: not a gRPC endpoint"),
        );
    }
    if message.starts_with("protocol error: missing grpc-status")
        || message.starts_with("failed to decode Protobuf message")
    {
        return Failure::new(
            FailureReason::Protocol,
            format!("{at} did not answer {METHOD} as gRPC: {message}"),
        );
    }
    let code = status.code() as i32;
    details.status_code = Some(code);
    let name = grpc_code_name(code);
    let detail = if message.is_empty() {
        format!("{name} from {at}")
    } else {
        format!("{name}: {message} (from {at})")
    };
    Failure::new(FailureReason::GrpcStatus, detail)
}

/// An error and its causes, each once.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = cause.source();
    }
    text
}

/// Bytes as a quoted, escaped string.
fn quote_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "none".to_string();
    }
    format!("\"{}\"", bytes.escape_ascii())
}

/// The HTTP/2 connection as tonic's client wants it: a service from request to response,
/// adding the user agent and the check's metadata to each request.
#[derive(Clone)]
struct H2 {
    sender: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    head: Head,
}

impl tower_service::Service<Request<tonic::body::Body>> for H2 {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<tonic::body::Body>) -> Self::Future {
        for (name, value) in self.headers.iter() {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let sent = self.sender.send_request(request);
        let head = self.head.clone();
        Box::pin(async move {
            let response = sent.await?;
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
            *head.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some((response.status().as_u16(), content_type));
            Ok(response)
        })
    }
}

/// The HTTP status and content type of the response, once its head came.
type Head = Arc<Mutex<Option<(u16, Option<String>)>>>;

/// A response that is not gRPC: an HTTP status other than 200, or another content type.
fn not_grpc(head: &Head) -> Option<(u16, String)> {
    let head = head.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (code, content_type) = head.as_ref()?;
    let is_grpc = content_type
        .as_deref()
        .is_some_and(|value| value.starts_with("application/grpc"));
    (*code != 200 || !is_grpc).then(|| {
        let shown = content_type.as_deref().unwrap_or("no content type");
        (*code, shown.chars().take(64).collect())
    })
}

/// How many bytes of the start of the server's answer are kept to describe it.
const FIRST_BYTES: usize = 32;

/// What the server sent: how much, and how it started.
#[derive(Debug, Default)]
struct Seen {
    total: u64,
    first: Vec<u8>,
}

/// A stream that keeps count of what it reads, and its first bytes: a server that answers
/// HTTP/1.1 or garbage is then described by what it said.
struct Recorded<S> {
    inner: S,
    seen: Arc<Mutex<Seen>>,
}

impl<S> Recorded<S> {
    fn new(inner: S) -> Recorded<S> {
        Recorded {
            inner,
            seen: Arc::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            seen.total += new.len() as u64;
            let room = FIRST_BYTES.saturating_sub(seen.first.len());
            seen.first.extend_from_slice(&new[..room.min(new.len())]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_passes_and_other_statuses_are_named() {
        assert!(judge(1, "", "x:1").is_ok());
        let failure = judge(2, "shop", "x:1").unwrap_err();
        assert_eq!(failure.reason, FailureReason::NotServing);
        assert_eq!(
            failure.detail,
            "service \"shop\" of x:1 is NOT_SERVING, expected SERVING"
        );
        let failure = judge(9, "", "x:1").unwrap_err();
        assert!(failure.detail.contains("status 9"), "{}", failure.detail);
    }

    #[test]
    fn codes_and_serving_statuses_are_named() {
        assert_eq!(grpc_code_name(tonic::Code::Ok as i32), "OK");
        assert_eq!(grpc_code_name(tonic::Code::NotFound as i32), "NOT_FOUND");
        assert_eq!(
            grpc_code_name(tonic::Code::Unauthenticated as i32),
            "UNAUTHENTICATED"
        );
        assert_eq!(grpc_code_name(42), "CODE42");
        let details = |serving_status| GrpcDetails {
            serving_status,
            ..GrpcDetails::default()
        };
        for status in [
            ServingStatus::Unknown,
            ServingStatus::Serving,
            ServingStatus::NotServing,
            ServingStatus::ServiceUnknown,
        ] {
            let named = details(Some(status as i32)).serving_status_name();
            assert_eq!(named.as_deref(), Some(status.as_str_name()));
        }
        assert_eq!(details(Some(7)).serving_status_name().as_deref(), Some("7"));
        assert_eq!(details(None).serving_status_name(), None);
    }

    #[test]
    fn garbage_is_quoted() {
        assert_eq!(quote_bytes(b"\x00ab\n"), "\"\\x00ab\\n\"");
        assert_eq!(quote_bytes(b""), "none");
    }
}
