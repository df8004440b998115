//! The `websocket` check: connect to a `ws://` or `wss://` URL (resolve, connect and TLS as
//! every check does them), upgrade to a WebSocket with tokio-tungstenite, hold an optional
//! conversation (messages sent, patterns expected in what comes back), then close cleanly.
//!
//! Success means: the server accepted the upgrade (101), every `expect` step saw a message
//! matching its pattern (within [`MAX_MESSAGES`] messages), and the server answered the close
//! frame with a normal closure, all before the deadline.

pub(crate) mod config;

use std::borrow::Cow;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{AUTHORIZATION, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue};
use regex::Regex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use url::Url;

use super::CheckCtx;
use super::http::{TlsOptions, show_url};
use super::tcp::{Captured, SendPart};
use crate::net::IpPreference;
use crate::result::{Details, Failure, FailureReason, Status, WebsocketDetails};

/// The reasons a `websocket` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::Closed,
    FailureReason::Protocol,
    FailureReason::Status,
    FailureReason::Body,
    FailureReason::TooLarge,
];

/// The most messages (text or binary) an `expect` step reads looking for a match.
pub const MAX_MESSAGES: u32 = 100;

/// The most pings and pongs an `expect` step, or the close, passes over.
pub const MAX_CONTROL: u32 = 1000;

/// The default `max_message_size`: the largest message (and frame) read.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

/// The read buffer of a connection: small, as thousands of checks may run (tungstenite's
/// default is 128 KiB, allocated up front).
const READ_BUFFER: usize = 16 * 1024;

/// How many characters of a received message a failure detail shows.
const EXCERPT: usize = 120;

/// A validated `websocket` check.
#[derive(Debug, Clone)]
pub struct WebsocketSpec {
    /// The `ws://` or `wss://` URL.
    pub url: Url,
    /// The URL's host, as connected to and named in SNI.
    pub host: String,
    /// The URL's port (80 or 443 when it has none).
    pub port: u16,
    /// Extra request headers (secrets already substituted; `basic_auth` and `bearer_token`
    /// among them).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Address family preference.
    pub ip: IpPreference,
    /// TLS for `wss` URLs (ALPN http/1.1).
    pub tls: TlsOptions,
    /// The conversation, in order.
    pub steps: Vec<Step>,
    /// The largest message and frame read; a larger one fails the run.
    pub max_message_size: usize,
}

/// One step of a conversation.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send a text message (`send`): literal text, and the groups of earlier `expect`s
    /// (`${1}`, `${name}`) filled in when it is sent.
    Text(Vec<SendPart>),
    /// Send a binary message (`send_hex`).
    Binary(Bytes),
    /// Read messages until one matches (`expect`); binary ones are read as lossy UTF-8.
    Expect(Regex),
}

/// Runs a `websocket` check once.
pub async fn run(spec: &WebsocketSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = WebsocketDetails::default();
    let status = match connect(spec, ctx, &mut details).await {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    };
    (status, Details::Websocket(details))
}

/// Resolve, connect and (for `wss`) TLS, then the session.
async fn connect(
    spec: &WebsocketSpec,
    ctx: &CheckCtx,
    details: &mut WebsocketDetails,
) -> Result<(), Failure> {
    let target = show_url(&spec.url);
    let (tcp, remote) = super::dial(
        ctx,
        &spec.host,
        spec.port,
        spec.ip,
        &target,
        &mut details.resolve,
        &mut details.connect,
    )
    .await?;
    details.remote_addr = Some(remote);
    if spec.url.scheme() != "wss" {
        return session(spec, ctx, tcp, &target, details).await;
    }
    let server_name = spec.tls.name_for(&spec.host)?;
    let shown = format!("{target} at {remote}");
    let (tls, info) = super::tls_handshake(
        &spec.tls,
        &server_name,
        tcp,
        ctx.deadline,
        &shown,
        &mut details.tls,
    )
    .await?;
    let verified = super::require_verified(&info, spec.tls.insecure_skip_verify, &shown);
    details.tls_info = Some(info);
    verified?;
    session(spec, ctx, tls, &target, details).await
}

/// The upgrade, the conversation and the close, each timed as its phase.
async fn session<S>(
    spec: &WebsocketSpec,
    ctx: &CheckCtx,
    stream: S,
    target: &str,
    details: &mut WebsocketDetails,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let upgraded = upgrade(spec, ctx, stream, target, details).await;
    details.upgrade = start.elapsed();
    let mut ws = upgraded?;
    let start = Instant::now();
    let talked = talk(spec, ctx.deadline, &mut ws, target, details).await;
    details.exchange = start.elapsed();
    talked?;
    let start = Instant::now();
    let closed = close(&mut ws, ctx.deadline, target, details).await;
    details.close = start.elapsed();
    closed
}

/// The HTTP/1.1 upgrade request: tungstenite's (Host, the WebSocket headers), the
/// `User-Agent`, the URL's credentials as basic auth, then the configured headers.
fn request(spec: &WebsocketSpec, user_agent: &str) -> Result<http::Request<()>, Failure> {
    let mut url = spec.url.clone();
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut request = url.as_str().into_client_request().map_err(|error| {
        Failure::new(
            FailureReason::Protocol,
            format!("cannot build the upgrade request: {error}"),
        )
    })?;
    let headers = request.headers_mut();
    if let Ok(value) = HeaderValue::from_str(user_agent) {
        headers.insert(USER_AGENT, value);
    }
    if !spec.url.username().is_empty() {
        let decode = super::http::percent_decode;
        let user = decode(spec.url.username());
        let password = spec.url.password().map(decode).unwrap_or_default();
        if let Ok(mut value) = HeaderValue::from_str(&super::http::basic_auth(&user, &password)) {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
    }
    for (name, value) in &spec.headers {
        if name == HOST || name == USER_AGENT || name == AUTHORIZATION {
            headers.insert(name, value.clone());
        } else {
            headers.append(name, value.clone());
        }
    }
    Ok(request)
}

async fn upgrade<S>(
    spec: &WebsocketSpec,
    ctx: &CheckCtx,
    stream: S,
    target: &str,
    details: &mut WebsocketDetails,
) -> Result<WebSocketStream<S>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = request(spec, ctx.user_agent)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(spec.max_message_size))
        .max_frame_size(Some(spec.max_message_size));
    let upgraded = timeout_at(
        ctx.deadline,
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)),
    )
    .await;
    match upgraded {
        Ok(Ok((ws, response))) => {
            details.status_code = Some(response.status().as_u16());
            Ok(ws)
        }
        Ok(Err(WsError::Http(response))) => {
            let status = response.status();
            details.status_code = Some(status.as_u16());
            let body = response
                .body()
                .as_deref()
                .filter(|body| !body.is_empty())
                .map(|body| format!(": {}", excerpt(&String::from_utf8_lossy(body))))
                .unwrap_or_default();
            Err(Failure::new(
                FailureReason::Status,
                format!("{target} refused the WebSocket upgrade with HTTP {status}{body}"),
            ))
        }
        Ok(Err(error)) => Err(classify(error, "during the upgrade", target)),
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!(
                "timed out in the upgrade phase: {target} did not answer the WebSocket upgrade request"
            ),
        )),
    }
}

/// The conversation's steps, in order.
async fn talk<S>(
    spec: &WebsocketSpec,
    deadline: Instant,
    ws: &mut WebSocketStream<S>,
    target: &str,
    details: &mut WebsocketDetails,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut captured = Captured::default();
    for (idx, step) in spec.steps.iter().enumerate() {
        let number = idx + 1;
        let message = match step {
            Step::Expect(pattern) => {
                let seen = Seen {
                    number,
                    target,
                    captured: &mut captured,
                };
                expect(ws, deadline, pattern, seen, details).await?;
                continue;
            }
            Step::Text(parts) => Message::Text(Utf8Bytes::from(
                String::from_utf8_lossy(&captured.fill_in(parts)).into_owned(),
            )),
            Step::Binary(bytes) => Message::Binary(bytes.clone()),
        };
        let doing = format!("while sending step {number}");
        match timeout_at(deadline, ws.send(message)).await {
            Ok(Ok(())) => details.messages_sent += 1,
            Ok(Err(error)) => return Err(classify(error, &doing, target)),
            Err(_) => {
                return Err(Failure::new(
                    FailureReason::Timeout,
                    format!("timed out in the exchange phase sending step {number} to {target}"),
                ));
            }
        }
    }
    Ok(())
}

/// Which step an `expect` is, of which target, and where its groups go.
struct Seen<'a> {
    number: usize,
    target: &'a str,
    captured: &'a mut Captured,
}

/// Reads messages until one matches `pattern`: at most [`MAX_MESSAGES`] of them, passing
/// over at most [`MAX_CONTROL`] pings and pongs.
async fn expect<S>(
    ws: &mut WebSocketStream<S>,
    deadline: Instant,
    pattern: &Regex,
    seen_by: Seen<'_>,
    details: &mut WebsocketDetails,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Seen {
        number,
        target,
        captured,
    } = seen_by;
    let mut seen = 0u32;
    let mut control = 0u32;
    let mut last: Option<String> = None;
    let waiting = || {
        format!(
            "step {number} waited for a message matching {:?}",
            pattern.as_str()
        )
    };
    let came = |seen: u32, last: &Option<String>| match last {
        Some(last) => format!("{seen} message(s) came, the last: {last}"),
        None => "no message came".to_string(),
    };
    loop {
        if seen >= MAX_MESSAGES || control >= MAX_CONTROL {
            let read = if seen >= MAX_MESSAGES {
                format!("the first {MAX_MESSAGES} messages")
            } else {
                format!("{seen} message(s) and {MAX_CONTROL} pings and pongs")
            };
            return Err(Failure::new(
                FailureReason::Body,
                format!(
                    "no match for {:?} (step {number}) in {read} from {target}; {}",
                    pattern.as_str(),
                    came(seen, &last)
                ),
            ));
        }
        let text = match timeout_at(deadline, ws.next()).await {
            // Messages came and none matched: the server answered, wrongly.
            Err(_) if seen > 0 => {
                return Err(Failure::new(
                    FailureReason::Body,
                    format!(
                        "no match for {:?} (step {number}) from {target} before the timeout; {}",
                        pattern.as_str(),
                        came(seen, &last)
                    ),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    FailureReason::Timeout,
                    format!(
                        "timed out in the exchange phase: {} from {target}; {}",
                        waiting(),
                        came(seen, &last)
                    ),
                ));
            }
            Ok(None) => {
                return Err(Failure::new(
                    FailureReason::Closed,
                    format!(
                        "{target} closed the connection without a close frame while {}",
                        waiting()
                    ),
                ));
            }
            Ok(Some(Err(error))) => {
                return Err(classify(error, &format!("while {}", waiting()), target));
            }
            Ok(Some(Ok(message))) => match judge(message, pattern, captured, details) {
                Judged::Matched => return Ok(()),
                Judged::Control => {
                    control += 1;
                    continue;
                }
                Judged::Other(text) => {
                    seen += 1;
                    text
                }
                Judged::Closed(said) => {
                    return Err(Failure::new(
                        FailureReason::Closed,
                        format!("{target} closed the WebSocket ({said}) while {}", waiting()),
                    ));
                }
            },
        };
        last = Some(text);
    }
}

/// What a message read by an `expect` step was.
enum Judged {
    /// A message matching the pattern.
    Matched,
    /// A message that does not match, as shown in details.
    Other(String),
    /// A ping or a pong.
    Control,
    /// The server's close frame, described.
    Closed(String),
}

fn judge(
    message: Message,
    pattern: &Regex,
    captured: &mut Captured,
    details: &mut WebsocketDetails,
) -> Judged {
    let (text, shown) = match &message {
        Message::Text(text) => (Cow::Borrowed(text.as_str()), None),
        Message::Binary(bytes) => (
            String::from_utf8_lossy(bytes),
            Some(format!(" ({} bytes, binary)", bytes.len())),
        ),
        Message::Close(frame) => {
            let said = close_text(frame.as_ref());
            record_close(frame.clone(), details);
            return Judged::Closed(said);
        }
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Judged::Control,
    };
    details.messages_received += 1;
    if let Some(found) = pattern.captures(&text) {
        captured.record_text(pattern, &found);
        return Judged::Matched;
    }
    Judged::Other(format!("{}{}", excerpt(&text), shown.unwrap_or_default()))
}

/// Sends a normal close frame and waits for the server's.
async fn close<S>(
    ws: &mut WebSocketStream<S>,
    deadline: Instant,
    target: &str,
    details: &mut WebsocketDetails,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static(""),
    };
    match timeout_at(deadline, ws.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(classify(error, "while sending the close frame", target)),
        Err(_) => {
            return Err(Failure::new(
                FailureReason::Timeout,
                format!("timed out in the close phase sending the close frame to {target}"),
            ));
        }
    }
    for _ in 0..MAX_MESSAGES + MAX_CONTROL {
        match timeout_at(deadline, ws.next()).await {
            Err(_) => {
                return Err(Failure::new(
                    FailureReason::Timeout,
                    format!(
                        "timed out in the close phase: {target} did not answer the close frame"
                    ),
                ));
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                // An answer echoes the normal closure (or has no code); another code is the
                // server closing on its own (an error, a shutdown) as the check ended.
                let normal = frame
                    .as_ref()
                    .is_none_or(|frame| frame.code == CloseCode::Normal);
                let said = close_text(frame.as_ref());
                record_close(frame, details);
                if normal {
                    return Ok(());
                }
                return Err(Failure::new(
                    FailureReason::Closed,
                    format!("{target} closed the WebSocket ({said}) instead of a normal closure"),
                ));
            }
            Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) => details.messages_received += 1,
            Ok(Some(Ok(_))) => {}
            Ok(None) => {
                return Err(Failure::new(
                    FailureReason::Closed,
                    format!("{target} closed the connection without answering the close frame"),
                ));
            }
            Ok(Some(Err(error))) => {
                return Err(classify(error, "while waiting for the close frame", target));
            }
        }
    }
    Err(Failure::new(
        FailureReason::Protocol,
        format!(
            "{target} sent over {} messages after the close frame and never answered it",
            MAX_MESSAGES + MAX_CONTROL
        ),
    ))
}

fn record_close(frame: Option<CloseFrame>, details: &mut WebsocketDetails) {
    if let Some(frame) = frame {
        details.close_code = Some(u16::from(frame.code));
        details.close_reason = Some(frame.reason.as_str().to_string()).filter(|r| !r.is_empty());
    }
}

/// "code 4000, reason "bye"", or what a close frame without a code means.
fn close_text(frame: Option<&CloseFrame>) -> String {
    match frame {
        None => "a close frame without a code".to_string(),
        Some(frame) if frame.reason.is_empty() => format!("code {}", u16::from(frame.code)),
        Some(frame) => format!(
            "code {}, reason {}",
            u16::from(frame.code),
            excerpt(frame.reason.as_str())
        ),
    }
}

/// A tungstenite error while `doing` something with `target`, as a failure.
fn classify(error: WsError, doing: &str, target: &str) -> Failure {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Failure::new(
            FailureReason::Closed,
            format!("the connection to {target} closed {doing}"),
        ),
        WsError::Io(io) if crate::net::closed_by_peer(&io) => Failure::new(
            FailureReason::Closed,
            format!("the connection to {target} was closed or reset {doing}: {io}"),
        ),
        WsError::Io(io) => Failure::new(
            FailureReason::Protocol,
            format!("I/O error with {target} {doing}: {io}"),
        ),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => Failure::new(
            FailureReason::TooLarge,
            format!(
                "{target} sent a message of {size} bytes or more, over max_message_size ({max_size} bytes)"
            ),
        ),
        WsError::Capacity(CapacityError::TooManyHeaders) => Failure::new(
            FailureReason::TooLarge,
            format!("the answer to the upgrade request from {target} has too many headers"),
        ),
        WsError::AttackAttempt => Failure::new(
            FailureReason::TooLarge,
            format!(
                "the answer to the upgrade request from {target} is over 64 KiB or comes in tiny pieces"
            ),
        ),
        WsError::Protocol(problem) => Failure::new(
            FailureReason::Protocol,
            format!("{target} broke the WebSocket protocol {doing}: {problem}"),
        ),
        other => Failure::new(
            FailureReason::Protocol,
            format!("{target} {doing}: {other}"),
        ),
    }
}

/// The start of `text`, quoted and printable, for failure details.
fn excerpt(text: &str) -> String {
    let shown: String = text.chars().take(EXCERPT).collect();
    let shown: String = shown.escape_debug().collect();
    if text.chars().nth(EXCERPT).is_some() {
        format!("\"{shown}\"…")
    } else {
        format!("\"{shown}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_quoted_and_capped() {
        assert_eq!(excerpt("pong\n"), "\"pong\\n\"");
        let long = "x".repeat(500);
        let shown = excerpt(&long);
        assert!(shown.ends_with("\"…") && shown.len() < 130, "{shown}");
    }

    #[test]
    fn close_frames_are_described() {
        assert_eq!(close_text(None), "a close frame without a code");
        let frame = CloseFrame {
            code: CloseCode::Library(4000),
            reason: Utf8Bytes::from_static("bye"),
        };
        assert_eq!(close_text(Some(&frame)), "code 4000, reason \"bye\"");
    }
}
