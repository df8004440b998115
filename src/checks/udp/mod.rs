//! The `udp` check: send a datagram to HOST:PORT and wait for an answer that matches, sending
//! it again (up to `count` datagrams, `reply_timeout` apart) since UDP loses packets.
//!
//! Success means: a datagram came back from the target that matched every `expect` regex
//! (over the datagram read as UTF-8, invalid sequences replaced) and began with `expect_hex`,
//! before the deadline. Without expectations, any datagram back passes.
//!
//! The socket is connected, so only the target's datagrams are read, and an ICMP port
//! unreachable comes back from the socket as "connection refused": `unreachable`. Datagrams
//! that do not match are read and dropped, at most [`MAX_DATAGRAMS`] per run, each at most
//! [`MAX_DATAGRAM`] bytes.

pub(crate) mod config;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use regex::Regex;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use super::CheckCtx;
use crate::net::IpPreference;
use crate::result::{Details, Failure, FailureReason, Status, UdpDetails};

/// The reasons a `udp` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Body,
    FailureReason::Unreachable,
];

/// The most bytes of one datagram a run reads (the rest of a longer one is dropped).
pub const MAX_DATAGRAM: usize = 65_536;

/// The most datagrams a run reads before it gives up on a match.
pub const MAX_DATAGRAMS: u32 = 256;

/// A validated `udp` check.
#[derive(Debug, Clone)]
pub struct UdpSpec {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `HOST:PORT` as shown in failure details.
    pub target: String,
    /// Address family preference.
    pub ip: IpPreference,
    /// The datagram sent.
    pub send: Vec<u8>,
    /// Patterns the answer, read as UTF-8, must all match.
    pub expect: Vec<Regex>,
    /// Bytes the answer must start with.
    pub expect_prefix: Vec<u8>,
    /// Datagrams sent at most.
    pub count: u16,
    /// How long to wait for an answer to one datagram before sending the next.
    pub reply_timeout: Duration,
}

/// Runs a `udp` check once.
pub async fn run(spec: &UdpSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = UdpDetails::default();
    let status = match exchange(spec, ctx, &mut details).await {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    };
    (status, Details::Udp(details))
}

async fn exchange(spec: &UdpSpec, ctx: &CheckCtx, details: &mut UdpDetails) -> Result<(), Failure> {
    let addr =
        super::resolve_one(ctx, &spec.host, spec.ip, &spec.target, &mut details.resolve).await?;
    let remote = SocketAddr::new(addr, spec.port);
    details.remote_addr = Some(remote);
    let socket = connected(remote, ctx.source_ip, &spec.target).await?;
    let start = Instant::now();
    let mut answers = Answers::default();
    let result = talk(spec, &socket, ctx.deadline, details, &mut answers).await;
    details.exchange = start.elapsed();
    details.received = answers.bytes;
    result
}

/// A socket bound to `source` (or any local address) and connected to `remote`.
async fn connected(
    remote: SocketAddr,
    source: Option<IpAddr>,
    target: &str,
) -> Result<UdpSocket, Failure> {
    let local = match (source, remote) {
        (Some(source), _) => SocketAddr::new(source, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::from(([0, 0, 0, 0], 0)),
        (None, SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(local).await.map_err(|error| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot bind {local} to send to {target}: {error}"),
        )
    })?;
    socket.connect(remote).await.map_err(|error| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot send from {local} to {remote} ({target}): {error}"),
        )
    })?;
    Ok(socket)
}

/// What came back in a run.
#[derive(Default)]
struct Answers {
    /// Datagrams read.
    datagrams: u32,
    /// Bytes read.
    bytes: u64,
    /// The last datagram that did not match, for the failure detail.
    last: Option<Vec<u8>>,
}

/// Sends up to `count` datagrams, each followed by a wait of `reply_timeout` for a matching
/// answer.
async fn talk(
    spec: &UdpSpec,
    socket: &UdpSocket,
    deadline: Instant,
    details: &mut UdpDetails,
    answers: &mut Answers,
) -> Result<(), Failure> {
    let target = &spec.target;
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    for _ in 0..spec.count {
        if Instant::now() >= deadline {
            break;
        }
        match timeout_at(deadline, socket.send(&spec.send)).await {
            Ok(Ok(_)) => details.sent += 1,
            Ok(Err(error)) => return Err(io_failure(&error, target, "sending to")),
            Err(_) => break,
        }
        let wait_until = (Instant::now() + spec.reply_timeout).min(deadline);
        loop {
            let datagram = match timeout_at(wait_until, socket.recv(&mut buffer)).await {
                Ok(Ok(len)) => &buffer[..len],
                Ok(Err(error)) => return Err(io_failure(&error, target, "reading from")),
                Err(_) => break,
            };
            answers.datagrams += 1;
            answers.bytes += datagram.len() as u64;
            if matches(spec, datagram) {
                return Ok(());
            }
            if answers.datagrams >= MAX_DATAGRAMS {
                return Err(Failure::new(
                    FailureReason::Body,
                    format!(
                        "{target} sent {MAX_DATAGRAMS} datagrams and none matched; the last: {}",
                        excerpt(datagram)
                    ),
                ));
            }
            answers.last = Some(datagram.to_vec());
        }
    }
    let sent = details.sent;
    match &answers.last {
        Some(last) => Err(Failure::new(
            FailureReason::Body,
            format!(
                "{} datagrams came back from {target} for {sent} sent and none matched{}; the last: {}",
                answers.datagrams,
                expectation(spec),
                excerpt(last)
            ),
        )),
        None => Err(Failure::new(
            FailureReason::Timeout,
            format!(
                "no answer from {target} to {sent} datagrams, {} apart",
                humantime::format_duration(spec.reply_timeout)
            ),
        )),
    }
}

/// Whether `datagram` meets every expectation.
fn matches(spec: &UdpSpec, datagram: &[u8]) -> bool {
    if !datagram.starts_with(&spec.expect_prefix) {
        return false;
    }
    if spec.expect.is_empty() {
        return true;
    }
    let text = String::from_utf8_lossy(datagram);
    spec.expect.iter().all(|pattern| pattern.is_match(&text))
}

/// What the check waited for, for failure details.
fn expectation(spec: &UdpSpec) -> String {
    let mut parts = Vec::new();
    if !spec.expect_prefix.is_empty() {
        parts.push(format!("expect_hex {}", hex(&spec.expect_prefix)));
    }
    parts.extend(
        spec.expect
            .iter()
            .map(|pattern| format!("{:?}", pattern.as_str())),
    );
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// A socket error as a failure: a refused datagram is an ICMP port unreachable.
fn io_failure(error: &io::Error, target: &str, doing: &str) -> Failure {
    let what = match error.kind() {
        io::ErrorKind::ConnectionRefused => {
            "port unreachable: nothing listens there (ICMP port unreachable)".to_string()
        }
        _ => error.to_string(),
    };
    Failure::new(
        FailureReason::Unreachable,
        format!("{doing} {target}: {what}"),
    )
}

/// The start of a datagram, printable: text as text, anything else as hex.
fn excerpt(datagram: &[u8]) -> String {
    let shown = &datagram[..datagram.len().min(64)];
    let more = if datagram.len() > 64 {
        format!("… ({} bytes)", datagram.len())
    } else {
        String::new()
    };
    match std::str::from_utf8(shown) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
            format!("\"{}\"{more}", text.escape_debug())
        }
        _ => format!("hex {}{more}", hex(shown)),
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl UdpDetails {
    /// Names of the phases of a `udp` check.
    pub const PHASES: [&'static str; 2] = ["resolve", "exchange"];

    /// Each phase with its duration, in [`UdpDetails::PHASES`] order.
    pub fn phases(&self) -> [(&'static str, Duration); 2] {
        let took = [self.resolve, self.exchange];
        std::array::from_fn(|idx| (Self::PHASES[idx], took[idx]))
    }
}
