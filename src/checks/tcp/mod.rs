//! The `tcp` check: connect to HOST:PORT, optionally over TLS from the first byte, then
//! optionally hold a scripted conversation: `expect` a line, `send` text (with groups the
//! last `expect` captured), `expect_bytes` of a binary protocol, `starttls` to upgrade in
//! the middle (IMAP, POP3, SMTP, FTP, PostgreSQL's SSLRequest). The `send`/`expect.matches`
//! shorthand is one step: send, then read until every pattern matched. The same
//! conversation runs over a Unix stream socket (`target = "unix:PATH"`): the engine is
//! generic over the stream.
//!
//! Success means: the connection was accepted, every step held before the deadline (at most
//! [`MAX_READ`] bytes read in all), and a TLS session's chain, name, expiry and version met
//! the expectations before anything was sent over it.

pub(crate) mod config;

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use regex::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::client::TlsStream;

use super::CheckCtx;
use super::http::TlsOptions;
use super::tls::TlsExpect;
use crate::net::IpPreference;
use crate::result::{Details, Failure, FailureReason, Status, TcpDetails, TcpStep};

/// The reasons a `tcp` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Closed,
    FailureReason::Body,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::CertExpiring,
    FailureReason::Protocol,
];

/// The most a `tcp` check reads from its target, over the whole conversation.
pub const MAX_READ: usize = 64 * 1024;

/// A validated `tcp` check.
#[derive(Debug, Clone)]
pub struct TcpSpec {
    /// Host name or IP address to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// `HOST:PORT` as shown in failure details.
    pub target: String,
    /// Address family preference.
    pub ip: IpPreference,
    /// The conversation, in order; empty for a plain connect.
    pub steps: Vec<Step>,
    /// The steps are the `send`/`expect.matches` shorthand (whose failures read as they
    /// always did, without a step number).
    pub shorthand: bool,
    /// TLS, from the first byte or at the `starttls` step; `None` for plain TCP.
    pub tls: Option<TcpTls>,
    /// A Unix stream socket to connect to instead of `host` and `port` (`unix:PATH`).
    pub unix: Option<PathBuf>,
}

/// How a `tcp` check speaks TLS.
#[derive(Debug, Clone)]
pub struct TcpTls {
    /// Client, verifier and server name (always set: the configured one or the host).
    pub options: TlsOptions,
    /// TLS from the first byte (no `starttls` step).
    pub from_start: bool,
    /// What the session must satisfy before anything is sent over it.
    pub expect: TlsExpect,
}

/// One entry of `steps`: its actions, in the order they run.
#[derive(Debug, Clone)]
pub struct Step {
    /// Read, then write, then upgrade.
    pub actions: Vec<Action>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Read lines until one matches `regex` (its groups become the captures); a line that
    /// matches `fail_if` first fails the step (a refusal).
    Expect {
        /// What the awaited line matches.
        regex: regex::bytes::Regex,
        /// What a refusal matches.
        fail_if: Option<regex::bytes::Regex>,
    },
    /// Read exactly these bytes.
    ExpectBytes(Vec<u8>),
    /// Write these parts.
    Send(Vec<SendPart>),
    /// Upgrade the connection to TLS.
    StartTls,
    /// The shorthand: read until every pattern matched what came so far.
    MatchAll(Vec<Regex>),
}

/// What the `expect`s matched so far, for the `send`s after them (the `websocket` kind's
/// conversations keep theirs the same way).
#[derive(Default)]
pub(crate) struct Captured {
    /// The groups of the latest `expect` (group 0 is the whole match).
    numbered: Vec<Vec<u8>>,
    /// The named groups of every `expect` so far, the latest value of each.
    named: Vec<(String, Vec<u8>)>,
}

impl Captured {
    /// Keeps the groups of a match of `regex` (over bytes).
    pub(crate) fn record(
        &mut self,
        regex: &regex::bytes::Regex,
        found: &regex::bytes::Captures<'_>,
    ) {
        let numbered = found.iter().map(|group| group.map(|g| g.as_bytes()));
        let named = regex
            .capture_names()
            .flatten()
            .map(|name| (name, found.name(name).map(|g| g.as_bytes())));
        self.keep(numbered, named);
    }

    /// Keeps the groups of a match of `regex` (over text).
    pub(crate) fn record_text(&mut self, regex: &Regex, found: &regex::Captures<'_>) {
        let numbered = found
            .iter()
            .map(|group| group.map(|g| g.as_str().as_bytes()));
        let named = regex
            .capture_names()
            .flatten()
            .map(|name| (name, found.name(name).map(|g| g.as_str().as_bytes())));
        self.keep(numbered, named);
    }

    fn keep<'h>(
        &mut self,
        numbered: impl Iterator<Item = Option<&'h [u8]>>,
        named: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        self.numbered = numbered
            .map(|group| group.unwrap_or_default().to_vec())
            .collect();
        for (name, value) in named {
            self.named.retain(|(known, _)| known != name);
            self.named
                .push((name.to_string(), value.unwrap_or_default().to_vec()));
        }
    }

    /// The bytes of a `send`, with the captures filled in (a group that did not take part
    /// is empty).
    pub(crate) fn fill_in(&self, parts: &[SendPart]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                SendPart::Bytes(bytes) => out.extend_from_slice(bytes),
                SendPart::Group(group) => {
                    if let Some(value) = self.numbered.get(*group) {
                        out.extend_from_slice(value);
                    }
                }
                SendPart::Named(name) => {
                    if let Some((_, value)) = self.named.iter().find(|(known, _)| known == name) {
                        out.extend_from_slice(value);
                    }
                }
            }
        }
        out
    }
}

/// A piece of what a `send` writes.
#[derive(Clone)]
pub enum SendPart {
    /// Literal bytes (secrets from `${env:..}`/`${file:..}` already in them).
    Bytes(Vec<u8>),
    /// `${N}`: a group of the latest `expect` (empty if it did not take part).
    Group(usize),
    /// `${name}`: a named group of an earlier `expect`.
    Named(String),
}

impl std::fmt::Debug for SendPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendPart::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            SendPart::Group(group) => write!(f, "Group({group})"),
            SendPart::Named(name) => write!(f, "Named({name})"),
        }
    }
}

impl Action {
    /// How the action is named in failure details and the steps' list.
    fn describe(&self) -> String {
        match self {
            Action::Expect { regex, .. } => format!("expect {:?}", regex.as_str()),
            Action::ExpectBytes(bytes) => format!("expect_bytes {}", hex(bytes)),
            Action::Send(_) => "send".to_string(),
            Action::StartTls => "starttls".to_string(),
            Action::MatchAll(patterns) => {
                let shown: Vec<String> = patterns
                    .iter()
                    .map(|p| format!("{:?}", p.as_str()))
                    .collect();
                format!("matches {}", shown.join(", "))
            }
        }
    }
}

impl Step {
    fn describe(&self) -> String {
        let parts: Vec<String> = self.actions.iter().map(Action::describe).collect();
        parts.join(", ")
    }
}

/// Runs a `tcp` check once.
pub async fn run(spec: &TcpSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = TcpDetails {
        tls: spec.tls.as_ref().map(|_| Duration::ZERO),
        ..TcpDetails::default()
    };
    let status = match converse(spec, ctx, &mut details).await {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    };
    (status, Details::Tcp(details))
}

async fn converse(spec: &TcpSpec, ctx: &CheckCtx, details: &mut TcpDetails) -> Result<(), Failure> {
    if let Some(path) = &spec.unix {
        details.unix_socket = true;
        let stream = connect_unix(path, ctx.deadline, &mut details.connect).await?;
        return hold(stream, spec, ctx, details, spec.target.clone()).await;
    }
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
    let peer = format!("{} at {remote}", spec.target);
    hold(tcp, spec, ctx, details, peer).await
}

/// Connects to a Unix stream socket within the deadline, adding the time to `took`.
async fn connect_unix(
    path: &Path,
    deadline: Instant,
    took: &mut Duration,
) -> Result<UnixStream, Failure> {
    let start = Instant::now();
    let connected = timeout_at(deadline, UnixStream::connect(path)).await;
    *took += start.elapsed();
    let shown = path.display();
    match connected {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => {
            let why = match error.kind() {
                io::ErrorKind::NotFound => "no such socket".to_string(),
                io::ErrorKind::ConnectionRefused => {
                    "connection refused (nothing listens on it)".to_string()
                }
                io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => error.to_string(),
            };
            Err(Failure::new(
                FailureReason::Connect,
                format!("cannot connect to the Unix socket {shown}: {why}"),
            ))
        }
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out connecting to the Unix socket {shown}"),
        )),
    }
}

/// The conversation over a connected stream: TLS from the first byte if asked, then the
/// steps. `peer` names the far end in TLS details.
async fn hold<S>(
    stream: S,
    spec: &TcpSpec,
    ctx: &CheckCtx,
    details: &mut TcpDetails,
    peer: String,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut talk = Talk {
        conn: Conn::Plain(stream),
        buf: Vec::with_capacity(if spec.steps.is_empty() { 0 } else { 1024 }),
        consumed: 0,
        eof: false,
        deadline: ctx.deadline,
        host: &spec.host,
        target: &spec.target,
        peer,
        captured: Captured::default(),
    };
    if let Some(tls) = spec.tls.as_ref().filter(|tls| tls.from_start) {
        talk.start_tls(tls, details, "").await?;
    }
    let start = Instant::now();
    let handshakes_before = details.tls.unwrap_or_default();
    let result = talk.steps(spec, details).await;
    if !spec.steps.is_empty() {
        let in_handshakes = details.tls.unwrap_or_default() - handshakes_before;
        details.exchange = start.elapsed().saturating_sub(in_handshakes);
    }
    details.received = talk.buf.len() as u64;
    if result.is_ok() {
        talk.close().await;
    }
    result
}

/// The connection: plain, or TLS after a handshake.
enum Conn<S> {
    Plain(S),
    Tls(Box<TlsStream<Recorded<S>>>),
    /// Only while a handshake owns the stream.
    Gone,
}

/// A conversation in progress: the connection and everything read so far.
struct Talk<'a, S> {
    conn: Conn<S>,
    /// Every byte read (at most [`MAX_READ`]); `consumed` of them belong to earlier steps.
    buf: Vec<u8>,
    consumed: usize,
    /// The target closed its side.
    eof: bool,
    deadline: Instant,
    /// The host, for the TLS server name when none is configured.
    host: &'a str,
    /// `HOST:PORT`.
    target: &'a str,
    /// `HOST:PORT at ADDRESS`, for TLS details.
    peer: String,
    /// What the `expect`s matched, for later `send`s.
    captured: Captured,
}

/// Why reading stopped short.
enum Ended {
    Closed,
    Full,
    TimedOut,
    Failed(io::Error),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Talk<'_, S> {
    async fn steps(&mut self, spec: &TcpSpec, details: &mut TcpDetails) -> Result<(), Failure> {
        for (idx, step) in spec.steps.iter().enumerate() {
            let label = if spec.shorthand {
                String::new()
            } else {
                format!("step {} ({}): ", idx + 1, step.describe())
            };
            let start = Instant::now();
            let mut result = Ok(());
            for action in &step.actions {
                result = self.act(action, spec, details, &label).await;
                if result.is_err() {
                    break;
                }
            }
            if !spec.shorthand {
                details.steps.push(TcpStep {
                    what: step.describe(),
                    success: result.is_ok(),
                    duration: start.elapsed(),
                });
            }
            result?;
        }
        Ok(())
    }

    async fn act(
        &mut self,
        action: &Action,
        spec: &TcpSpec,
        details: &mut TcpDetails,
        label: &str,
    ) -> Result<(), Failure> {
        match action {
            Action::Expect { regex, fail_if } => {
                self.expect_line(regex, fail_if.as_ref(), label).await
            }
            Action::ExpectBytes(bytes) => self.expect_bytes(bytes, label).await,
            Action::Send(parts) => {
                let bytes = self.captured.fill_in(parts);
                self.send(&bytes, label).await
            }
            Action::StartTls => match &spec.tls {
                Some(tls) => self.start_tls(tls, details, label).await,
                None => Err(Failure::new(
                    FailureReason::Tls,
                    format!("{label}no TLS set-up for {}", self.target),
                )),
            },
            Action::MatchAll(patterns) => self.match_all(patterns).await,
        }
    }

    /// Reads once more into the buffer, within the deadline and [`MAX_READ`].
    async fn fill(&mut self) -> Result<(), Ended> {
        if self.eof {
            return Err(Ended::Closed);
        }
        if self.buf.len() >= MAX_READ {
            return Err(Ended::Full);
        }
        let mut chunk = [0u8; 4096];
        let want = chunk.len().min(MAX_READ - self.buf.len());
        let read = match &mut self.conn {
            Conn::Plain(plain) => timeout_at(self.deadline, plain.read(&mut chunk[..want])).await,
            Conn::Tls(tls) => timeout_at(self.deadline, tls.read(&mut chunk[..want])).await,
            Conn::Gone => Ok(Ok(0)),
        };
        match read {
            Ok(Ok(0)) => {
                self.eof = true;
                Err(Ended::Closed)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            // A TLS peer that closes without close_notify has still closed.
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                self.eof = true;
                Err(Ended::Closed)
            }
            Ok(Err(error)) => Err(Ended::Failed(error)),
            Err(_) => Err(Ended::TimedOut),
        }
    }

    /// Reads lines until one matches `regex` (as blackbox_exporter does: lines that do not
    /// match are passed over); its groups become the captures.
    async fn expect_line(
        &mut self,
        regex: &regex::bytes::Regex,
        fail_if: Option<&regex::bytes::Regex>,
        label: &str,
    ) -> Result<(), Failure> {
        let from = self.consumed;
        loop {
            while let Some(line_end) = self.next_line_end() {
                let line = trim_line_end(&self.buf[self.consumed..line_end]);
                let found = regex.captures(line);
                if let (None, Some(refusal)) = (&found, fail_if)
                    && refusal.is_match(line)
                {
                    return Err(Failure::new(
                        FailureReason::Body,
                        format!(
                            "{label}{} answered {}, which matches fail_if {:?}",
                            self.target,
                            excerpt(line),
                            refusal.as_str()
                        ),
                    ));
                }
                if let Some(found) = found {
                    self.captured.record(regex, &found);
                    self.consumed = line_end;
                    return Ok(());
                }
                self.consumed = line_end;
            }
            if let Err(ended) = self.fill().await {
                if matches!(ended, Ended::Closed) && self.consumed < self.buf.len() {
                    continue; // the last line, without a line end
                }
                let waiting = format!("a line matching {:?}", regex.as_str());
                return Err(self.ended(ended, label, &waiting, &self.buf[from..]));
            }
        }
    }

    /// Where the next complete line ends (after its `\n`); at the end of what came once the
    /// target closed.
    fn next_line_end(&self) -> Option<usize> {
        let rest = &self.buf[self.consumed..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(idx) => Some(self.consumed + idx + 1),
            None if self.eof && !rest.is_empty() => Some(self.buf.len()),
            None => None,
        }
    }

    /// Reads exactly `want`, failing at the first byte that differs.
    async fn expect_bytes(&mut self, want: &[u8], label: &str) -> Result<(), Failure> {
        loop {
            let have = &self.buf[self.consumed..];
            let n = have.len().min(want.len());
            if have[..n] != want[..n] {
                let got = &have[..have.len().min(want.len().max(8))];
                return Err(Failure::new(
                    FailureReason::Body,
                    format!(
                        "{label}{} sent {} ({}) instead",
                        self.target,
                        hex(got),
                        excerpt(got)
                    ),
                ));
            }
            if n == want.len() {
                self.consumed += n;
                return Ok(());
            }
            if let Err(ended) = self.fill().await {
                let waiting = format!("{} bytes", want.len());
                return Err(self.ended(ended, label, &waiting, &self.buf[self.consumed..]));
            }
        }
    }

    /// The failure for reading that stopped while waiting for `waiting`.
    fn ended(&self, ended: Ended, label: &str, waiting: &str, came: &[u8]) -> Failure {
        let target = self.target;
        let sent = excerpt(came);
        match ended {
            Ended::Closed => Failure::new(
                FailureReason::Body,
                format!(
                    "{label}{target} closed the connection before sending {waiting}; it sent: {sent}"
                ),
            ),
            Ended::Full => Failure::new(
                FailureReason::Body,
                format!(
                    "{label}{target} sent the {} KiB a check reads without {waiting}; this step read: {sent}",
                    MAX_READ / 1024
                ),
            ),
            Ended::TimedOut => Failure::new(
                FailureReason::Timeout,
                format!("{label}timed out waiting for {waiting} from {target}; it sent: {sent}"),
            ),
            Ended::Failed(error) => Failure::new(
                FailureReason::Closed,
                format!("{label}reading from {target} failed: {error}"),
            ),
        }
    }

    async fn send(&mut self, bytes: &[u8], label: &str) -> Result<(), Failure> {
        let target = self.target;
        let written = match &mut self.conn {
            Conn::Plain(plain) => timeout_at(self.deadline, plain.write_all(bytes)).await,
            Conn::Tls(tls) => {
                let deadline = self.deadline;
                timeout_at(deadline, async {
                    tls.write_all(bytes).await?;
                    tls.flush().await
                })
                .await
            }
            Conn::Gone => Ok(Err(io::ErrorKind::NotConnected.into())),
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Failure::new(
                FailureReason::Closed,
                format!("{label}sending to {target} failed: {error}"),
            )),
            Err(_) => Err(Failure::new(
                FailureReason::Timeout,
                format!("{label}timed out sending to {target}"),
            )),
        }
    }

    /// The TLS handshake (from the first byte, or at a `starttls` step), then the verdict on
    /// the chain before anything is sent over it.
    async fn start_tls(
        &mut self,
        tls: &TcpTls,
        details: &mut TcpDetails,
        label: &str,
    ) -> Result<(), Failure> {
        if self.consumed < self.buf.len() {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!(
                    "{label}{} sent {} bytes no step read before the TLS handshake: {} (an `expect` should read the whole answer to the upgrade)",
                    self.target,
                    self.buf.len() - self.consumed,
                    excerpt(&self.buf[self.consumed..])
                ),
            ));
        }
        let Conn::Plain(plain) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            return Err(Failure::new(
                FailureReason::Tls,
                format!(
                    "{label}the connection to {} already speaks TLS",
                    self.target
                ),
            ));
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Recorded {
            inner: plain,
            seen: seen.clone(),
        };
        let server_name = tls.options.name_for(self.host)?.into_owned();
        let mut took = Duration::ZERO;
        let handshake = super::tls_handshake(
            &tls.options,
            &server_name,
            recorded,
            self.deadline,
            &self.peer,
            &mut took,
        )
        .await;
        *details.tls.get_or_insert_default() += took;
        let (stream, info) = match handshake {
            Ok(done) => done,
            Err(failure) => {
                let seen = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
                let mut detail = format!("{label}{}", failure.detail);
                if failure.reason == FailureReason::Tls && looks_like_text(&seen) {
                    detail.push_str(&format!(
                        "; it answered in plain text instead: {}",
                        excerpt(&seen)
                    ));
                }
                return Err(Failure::new(failure.reason, detail));
            }
        };
        let verdict = super::tls::evaluate(&tls.expect, &info, &server_name, SystemTime::now());
        details.tls_info = Some(info);
        if let Status::Fail(failure) = verdict {
            return Err(Failure::new(
                failure.reason,
                format!("{label}{}: {}", self.peer, failure.detail),
            ));
        }
        self.conn = Conn::Tls(Box::new(stream));
        Ok(())
    }

    /// The shorthand: read until every pattern matched everything that came.
    async fn match_all(&mut self, patterns: &[Regex]) -> Result<(), Failure> {
        let target = self.target;
        loop {
            let text = String::from_utf8_lossy(&self.buf);
            let missing = patterns.iter().find(|pattern| !pattern.is_match(&text));
            let Some(missing) = missing else {
                self.consumed = self.buf.len();
                return Ok(());
            };
            let wanted = missing.as_str().to_string();
            let sent = excerpt(&self.buf);
            let message = match self.fill().await {
                Ok(()) => continue,
                Err(Ended::Full) => Failure::new(
                    FailureReason::Body,
                    format!(
                        "no match for {wanted:?} in the first {} KiB from {target}: {sent}",
                        MAX_READ / 1024
                    ),
                ),
                Err(Ended::Closed) => Failure::new(
                    FailureReason::Body,
                    format!(
                        "{target} closed the connection before sending a match for {wanted:?}; it sent: {sent}"
                    ),
                ),
                Err(Ended::Failed(error)) => Failure::new(
                    FailureReason::Closed,
                    format!("reading from {target} failed: {error}"),
                ),
                Err(Ended::TimedOut) => Failure::new(
                    FailureReason::Timeout,
                    format!("timed out waiting for {wanted:?} from {target}; it sent: {sent}"),
                ),
            };
            return Err(message);
        }
    }

    /// Ends a TLS session politely (close_notify) within the deadline; the verdict does not
    /// depend on it.
    async fn close(&mut self) {
        if let Conn::Tls(tls) = &mut self.conn {
            let _ = timeout_at(self.deadline, tls.shutdown()).await;
        }
    }
}

/// A line without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether what came in place of a TLS handshake looks like a plain-text answer (a TLS
/// record starts with a content type from 20 to 24).
fn looks_like_text(seen: &[u8]) -> bool {
    seen.first().is_some_and(|first| !(20..=24).contains(first))
}

/// Bytes as hex pairs, at most 32 of them.
fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 32 {
        format!("{}…", shown.join(" "))
    } else {
        shown.join(" ")
    }
}

/// The start of what came back, printable, for failure details.
fn excerpt(received: &[u8]) -> String {
    if received.is_empty() {
        return "nothing".to_string();
    }
    let text = String::from_utf8_lossy(&received[..received.len().min(120)]);
    let shown: String = text.escape_debug().collect();
    if received.len() > 120 {
        format!("\"{shown}\"… ({} bytes)", received.len())
    } else {
        format!("\"{shown}\"")
    }
}

/// A stream that keeps a copy of the first bytes read through it: what came in place of a
/// TLS handshake, for the failure detail.
struct Recorded<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

/// How much of what came during a handshake is kept.
const RECORDED: usize = 256;

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Ok(mut seen) = self.seen.lock()
            && seen.len() < RECORDED
        {
            let new = &buf.filled()[before..];
            let room = RECORDED - seen.len();
            seen.extend_from_slice(&new[..new.len().min(room)]);
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
}

impl TcpDetails {
    /// Names of the phases of a `tcp` check (`tls` only for checks that speak TLS, `resolve`
    /// not for a Unix socket).
    pub const PHASES: [&'static str; 4] = ["resolve", "connect", "tls", "exchange"];

    /// Each phase with its duration, in [`TcpDetails::PHASES`] order; `tls` only when the
    /// check speaks TLS.
    pub fn phases(&self) -> Vec<(&'static str, Duration)> {
        let mut phases = vec![("resolve", self.resolve), ("connect", self.connect)];
        if self.unix_socket {
            phases.remove(0);
        }
        if let Some(tls) = self.tls {
            phases.push(("tls", tls));
        }
        phases.push(("exchange", self.exchange));
        phases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_are_trimmed_and_text_told_from_tls() {
        assert_eq!(trim_line_end(b"+OK ready\r\n"), b"+OK ready");
        assert_eq!(trim_line_end(b"+OK\n"), b"+OK");
        assert_eq!(trim_line_end(b"tail"), b"tail");
        assert!(looks_like_text(b"-ERR no"));
        assert!(!looks_like_text(&[22, 3, 3, 0, 10]));
        assert!(!looks_like_text(b""));
        assert_eq!(hex(&[0, 0x2f, 0xd2]), "00 2f d2");
    }
}
