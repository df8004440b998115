//! The `tcp` check: connect to HOST:PORT; optionally send a line and read the answer until
//! every expected pattern has matched (a Redis `PING`, an SMTP or SSH banner).
//!
//! Success means: the connection was accepted and, when `expect.matches` is set, what the
//! target sent (at most [`MAX_READ`] bytes) matched every pattern before the deadline.

pub(crate) mod config;

use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::CheckCtx;
use crate::net::IpPreference;
use crate::result::{Details, Failure, FailureReason, Status, TcpDetails};

/// The reasons a `tcp` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Closed,
    FailureReason::Body,
];

/// The most a `tcp` check reads from its target.
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
    /// Bytes written once connected.
    pub send: Option<Vec<u8>>,
    /// Patterns that what the target sends must all match.
    pub matches: Vec<Regex>,
}

/// Runs a `tcp` check once.
pub async fn run(spec: &TcpSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = TcpDetails::default();
    let status = match exchange(spec, ctx, &mut details).await {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    };
    (status, Details::Tcp(details))
}

async fn exchange(spec: &TcpSpec, ctx: &CheckCtx, details: &mut TcpDetails) -> Result<(), Failure> {
    let (mut tcp, remote) = super::dial(
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
    if spec.send.is_none() && spec.matches.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let mut received = Vec::with_capacity(1024);
    let result = talk(spec, &mut tcp, ctx.deadline, &mut received).await;
    details.exchange = start.elapsed();
    details.received = received.len() as u64;
    result
}

/// Sends, then reads into `received` until every pattern matched.
async fn talk(
    spec: &TcpSpec,
    tcp: &mut tokio::net::TcpStream,
    deadline: Instant,
    received: &mut Vec<u8>,
) -> Result<(), Failure> {
    let target = &spec.target;
    if let Some(send) = &spec.send {
        match timeout_at(deadline, tcp.write_all(send)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let message = format!("sending to {target} failed: {error}");
                return Err(Failure::new(FailureReason::Closed, message));
            }
            Err(_) => {
                let message = format!("timed out sending to {target}");
                return Err(Failure::new(FailureReason::Timeout, message));
            }
        }
    }
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(received);
        let missing = spec.matches.iter().find(|pattern| !pattern.is_match(&text));
        let Some(missing) = missing else {
            return Ok(());
        };
        if received.len() >= MAX_READ {
            let message = format!(
                "no match for {:?} in the first {} KiB from {target}: {}",
                missing.as_str(),
                MAX_READ / 1024,
                excerpt(received)
            );
            return Err(Failure::new(FailureReason::Body, message));
        }
        let want = chunk.len().min(MAX_READ - received.len());
        match timeout_at(deadline, tcp.read(&mut chunk[..want])).await {
            Ok(Ok(0)) => {
                let message = format!(
                    "{target} closed the connection before sending a match for {:?}; it sent: {}",
                    missing.as_str(),
                    excerpt(received)
                );
                return Err(Failure::new(FailureReason::Body, message));
            }
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Ok(Err(error)) => {
                let message = format!("reading from {target} failed: {error}");
                return Err(Failure::new(FailureReason::Closed, message));
            }
            Err(_) => {
                let message = format!(
                    "timed out waiting for {:?} from {target}; it sent: {}",
                    missing.as_str(),
                    excerpt(received)
                );
                return Err(Failure::new(FailureReason::Timeout, message));
            }
        }
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

impl TcpDetails {
    /// Names of the phases of a `tcp` check.
    pub const PHASES: [&'static str; 3] = ["resolve", "connect", "exchange"];

    /// Each phase with its duration, in [`TcpDetails::PHASES`] order.
    pub fn phases(&self) -> [(&'static str, Duration); 3] {
        let took = [self.resolve, self.connect, self.exchange];
        std::array::from_fn(|idx| (Self::PHASES[idx], took[idx]))
    }
}
