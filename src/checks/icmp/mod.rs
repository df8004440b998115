//! The `icmp` check: `count` echo requests `packet_interval` apart to a host, the replies
//! counted and timed (loss, round trips, the hop limit they came back with).
//!
//! Success means: at most `max_loss` of the requests went without a reply by the deadline,
//! and the average round trip is within `max_rtt` when set.
//!
//! # Sockets
//!
//! An unprivileged ICMP datagram socket (`SOCK_DGRAM`, `IPPROTO_ICMP`/`IPPROTO_ICMPV6`) when
//! `net.ipv4.ping_group_range` includes the agent's group, a raw socket (CAP_NET_RAW)
//! otherwise; when neither opens, the run fails with `permission` and names the sysctl and
//! the capability. On a datagram socket the kernel owns the identifier (it rewrites it on the
//! way out and delivers only this socket's replies), so replies are matched by sequence
//! number, source address (the socket is connected) and payload; on a raw socket, which sees
//! every echo reply of the host, by identifier too. Every other message is ignored, at most
//! [`MAX_IGNORED`] of them per run.
//!
//! The reply's TTL (hop limit) comes from `IP_RECVTTL`/`IPV6_RECVHOPLIMIT` control messages,
//! or the IPv4 header on a raw socket. ICMP errors about the requests (destination
//! unreachable with its code, time exceeded) come from the socket's error queue
//! (`IP_RECVERR`/`IPV6_RECVERR`), on either kind of socket.
//!
//! # Why no ping crate
//!
//! `surge-ping`, the common async ping crate, reads the reply TTL only from a raw IPv4
//! socket's header (none on datagram sockets or over IPv6), has no don't-fragment option,
//! ignores ICMP errors (an unreachable host looks like loss), matches datagram-socket replies
//! by an identifier the kernel has rewritten, and spawns a receive task per client. What it
//! would save is [`codec`]'s hundred lines; the socket options and control messages it lacks
//! come from `nix` (safe wrappers: the crate forbids `unsafe`), don't-fragment on IPv4 from
//! `rustix`.

pub mod codec;
pub(crate) mod config;
mod socket;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout_at};

use super::CheckCtx;
use crate::net::IpPreference;
use crate::result::{Details, Failure, FailureReason, IcmpDetails, IcmpSocketKind, Status};
use socket::{IcmpSocket, Options, Received};

/// The reasons an `icmp` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Loss,
    FailureReason::TooSlow,
    FailureReason::Unreachable,
    FailureReason::Permission,
];

/// The most messages a run reads that are not its replies (other hosts' pings seen by a raw
/// socket, garbage, socket errors) before it stops reading and counts what is missing as
/// lost.
pub const MAX_IGNORED: usize = 4096;

/// A validated `icmp` check.
#[derive(Debug, Clone)]
pub struct IcmpSpec {
    /// Host name or IP address to ping.
    pub host: String,
    /// Address family preference.
    pub ip: IpPreference,
    /// Echo requests per run.
    pub count: u16,
    /// Time between two requests.
    pub interval: Duration,
    /// Bytes after the ICMP header of each request.
    pub payload_size: usize,
    /// The TTL (hop limit) of the requests; the system's default when `None`.
    pub ttl: Option<u8>,
    /// Whether the requests may not be fragmented.
    pub dont_fragment: bool,
    /// The largest share of requests that may go without a reply, from 0 to 1 (exclusive).
    pub max_loss: f64,
    /// The largest average round trip allowed.
    pub max_rtt: Option<Duration>,
}

/// Runs an `icmp` check once.
pub async fn run(spec: &IcmpSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = IcmpDetails::default();
    let status = match ping(spec, ctx, &mut details).await {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    };
    (status, Details::Icmp(details))
}

async fn ping(spec: &IcmpSpec, ctx: &CheckCtx, details: &mut IcmpDetails) -> Result<(), Failure> {
    let addr =
        super::resolve_one(ctx, &spec.host, spec.ip, &spec.host, &mut details.resolve).await?;
    details.remote_addr = Some(SocketAddr::new(addr, 0));
    let setup = Instant::now();
    let options = Options {
        ttl: spec.ttl,
        dont_fragment: spec.dont_fragment,
    };
    let opened = IcmpSocket::open(addr, ctx.source_ip, options);
    details.setup = setup.elapsed();
    let mut socket = opened?;
    details.socket = Some(socket.kind);
    let mut exchange = Exchange::new(spec, addr, &socket);
    exchange.run(spec, &mut socket, ctx.deadline).await;
    exchange.report(details);
    exchange.judge(spec, addr, details)
}

/// An ICMP error about one of the requests.
#[derive(Debug, Clone)]
struct IcmpError {
    kind: u8,
    code: u8,
    from: Option<IpAddr>,
}

/// One run's requests and what became of them.
struct Exchange {
    /// The identifier (raw sockets; a datagram socket's kernel sets its own).
    ident: u16,
    /// The payload of every request.
    payload: Vec<u8>,
    /// When each request went out, by sequence number.
    sent_at: Vec<Option<Instant>>,
    /// Each request's round trip, once its reply came.
    rtt: Vec<Option<Duration>>,
    /// Each request's ICMP error, if one came instead.
    errors: Vec<Option<IcmpError>>,
    /// The first error sending gave, and how many sends failed.
    send_error: Option<(String, u32)>,
    /// The first error reading the socket gave.
    socket_error: Option<nix::errno::Errno>,
    /// The TTL (hop limit) of the last reply.
    hop_limit: Option<u8>,
    /// Messages read that were not this run's.
    ignored: usize,
    /// Whether the deadline came before every request was sent.
    cut_short: bool,
}

impl Exchange {
    fn new(spec: &IcmpSpec, addr: IpAddr, socket: &IcmpSocket) -> Exchange {
        let [a, b, c, d] = random_bytes(addr);
        let count = usize::from(spec.count);
        Exchange {
            ident: if socket.kind == IcmpSocketKind::Raw {
                u16::from_be_bytes([a, b])
            } else {
                0
            },
            payload: codec::payload(spec.payload_size, u16::from_be_bytes([c, d])),
            sent_at: vec![None; count],
            rtt: vec![None; count],
            errors: vec![None; count],
            send_error: None,
            socket_error: None,
            hop_limit: None,
            ignored: 0,
            cut_short: false,
        }
    }

    /// Sends the requests `spec.interval` apart and reads until every one is answered (by a
    /// reply or an error), the deadline passes, or too much else arrived.
    async fn run(&mut self, spec: &IcmpSpec, socket: &mut IcmpSocket, deadline: Instant) {
        let count = usize::from(spec.count);
        let mut next = 0usize;
        let mut next_at = Instant::now();
        loop {
            let settled =
                (0..next).all(|seq| self.rtt[seq].is_some() || self.errors[seq].is_some());
            if (next == count && settled) || self.ignored >= MAX_IGNORED {
                return;
            }
            // Checked here too: a timeout over a future that is always ready never fires.
            if Instant::now() >= deadline {
                self.cut_short = next < count;
                return;
            }
            let sending = next < count;
            let woke = timeout_at(deadline, async {
                tokio::select! {
                    () = sleep_until(next_at), if sending => true,
                    () = socket.ready() => false,
                }
            })
            .await;
            match woke {
                Err(_) => {
                    self.cut_short = next < count;
                    return;
                }
                Ok(true) => {
                    self.send(socket, next);
                    next += 1;
                    next_at += spec.interval;
                }
                Ok(false) => self.read(socket),
            }
        }
    }

    fn send(&mut self, socket: &IcmpSocket, seq: usize) {
        let packet = codec::echo_request(socket.v6, self.ident, seq as u16, &self.payload);
        self.sent_at[seq] = Some(Instant::now());
        if let Err(errno) = socket.send(&packet) {
            let (_, failed) = self
                .send_error
                .get_or_insert_with(|| (socket::describe(errno), 0));
            *failed += 1;
        }
    }

    /// Reads everything the socket holds now.
    fn read(&mut self, socket: &mut IcmpSocket) {
        let (v6, kind, ip_header) = (socket.v6, socket.kind, socket.ip_header());
        socket.drain(|received, data| {
            let now = Instant::now();
            let taken = match received {
                Received::Message { hop_limit } => {
                    self.take_reply(kind, v6, ip_header, data, hop_limit, now)
                }
                Received::Error {
                    kind: icmp_type,
                    code,
                    from,
                } => {
                    let quoted = codec::quoted_request(data, v6);
                    match quoted.and_then(|(ident, seq)| self.ours(kind, ident, seq)) {
                        Some(seq) if self.rtt[seq].is_none() => {
                            self.errors[seq] = Some(IcmpError {
                                kind: icmp_type,
                                code,
                                from,
                            });
                            true
                        }
                        _ => false,
                    }
                }
                // A pending error the kernel also reports on the next read (the error queue
                // holds its details), or a local one.
                Received::Errno(errno) => {
                    self.socket_error.get_or_insert(errno);
                    false
                }
            };
            if !taken {
                self.ignored += 1;
            }
            self.ignored < MAX_IGNORED
        });
    }

    fn take_reply(
        &mut self,
        kind: IcmpSocketKind,
        v6: bool,
        ip_header: bool,
        data: &[u8],
        hop_limit: Option<u8>,
        now: Instant,
    ) -> bool {
        let Some(reply) = codec::parse_reply(data, v6, ip_header) else {
            return false;
        };
        let Some(seq) = self.ours(kind, reply.ident, reply.seq) else {
            return false;
        };
        if reply.payload != self.payload.as_slice() || self.rtt[seq].is_some() {
            return false;
        }
        let Some(sent) = self.sent_at[seq] else {
            return false;
        };
        self.rtt[seq] = Some(now.saturating_duration_since(sent));
        self.hop_limit = hop_limit.or(reply.ttl);
        true
    }

    /// The index of the request `ident` and `seq` name, if this run sent it.
    fn ours(&self, kind: IcmpSocketKind, ident: u16, seq: u16) -> Option<usize> {
        let seq = usize::from(seq);
        let ident_ok = kind == IcmpSocketKind::Datagram || ident == self.ident;
        (ident_ok && self.sent_at.get(seq).copied().flatten().is_some()).then_some(seq)
    }

    fn report(&self, details: &mut IcmpDetails) {
        let rtts: Vec<f64> = self
            .rtt
            .iter()
            .flatten()
            .map(Duration::as_secs_f64)
            .collect();
        details.sent = self.sent_at.iter().flatten().count() as u32;
        details.received = rtts.len() as u32;
        details.reply_hop_limit = self.hop_limit;
        if rtts.is_empty() {
            return;
        }
        let n = rtts.len() as f64;
        let mean = rtts.iter().sum::<f64>() / n;
        let variance = rtts.iter().map(|rtt| (rtt - mean).powi(2)).sum::<f64>() / n;
        let secs = |value: f64| Duration::from_secs_f64(value.max(0.0));
        details.rtt = secs(mean);
        details.rtt_min = secs(rtts.iter().copied().fold(f64::INFINITY, f64::min));
        details.rtt_max = secs(rtts.iter().copied().fold(0.0, f64::max));
        details.rtt_stddev = secs(variance.sqrt());
    }

    fn judge(&self, spec: &IcmpSpec, addr: IpAddr, details: &IcmpDetails) -> Result<(), Failure> {
        let (sent, received) = (details.sent, details.received);
        if self.cut_short {
            return Err(Failure::new(
                FailureReason::Timeout,
                format!(
                    "timed out after sending {sent} of {} echo requests to {addr} ({received} replies)",
                    spec.count
                ),
            ));
        }
        // A run that stopped reading counts the requests it never sent as lost too.
        let due = if self.ignored >= MAX_IGNORED {
            u32::from(spec.count)
        } else {
            sent
        };
        let lost = due.saturating_sub(received);
        let loss = if due == 0 {
            1.0
        } else {
            f64::from(lost) / f64::from(due)
        };
        if loss > spec.max_loss {
            let counts = format!(
                "{sent} echo requests to {addr}, {received} replies ({:.0}% loss, max_loss {:.0}%)",
                loss * 100.0,
                spec.max_loss * 100.0
            );
            if let Some(error) = self.errors.iter().flatten().next() {
                let answered = self.errors.iter().flatten().count();
                let from = error
                    .from
                    .map(|from| format!(" from {from}"))
                    .unwrap_or_default();
                return Err(Failure::new(
                    FailureReason::Unreachable,
                    format!(
                        "{} (ICMP type {} code {}){from} for {answered} of {counts}",
                        codec::error_name(addr.is_ipv6(), error.kind, error.code),
                        error.kind,
                        error.code
                    ),
                ));
            }
            if let Some((error, failed)) = &self.send_error {
                return Err(Failure::new(
                    FailureReason::Unreachable,
                    format!("sending failed for {failed} of {counts}: {error}"),
                ));
            }
            if let Some(errno) = self.socket_error {
                return Err(Failure::new(
                    FailureReason::Unreachable,
                    format!("{counts}; the socket reported: {}", socket::describe(errno)),
                ));
            }
            let ignored = if self.ignored >= MAX_IGNORED {
                format!("; stopped reading after {MAX_IGNORED} messages that were not replies")
            } else {
                String::new()
            };
            return Err(Failure::new(
                FailureReason::Loss,
                format!("{counts}{ignored}"),
            ));
        }
        if let Some(max) = spec.max_rtt
            && details.rtt > max
        {
            return Err(Failure::new(
                FailureReason::TooSlow,
                format!(
                    "the average round trip to {addr} was {:.3} ms, over max_rtt {} ({received} replies, max {:.3} ms)",
                    details.rtt.as_secs_f64() * 1e3,
                    humantime::format_duration(max),
                    details.rtt_max.as_secs_f64() * 1e3,
                ),
            ));
        }
        Ok(())
    }
}

/// Four unpredictable bytes (the identifier and the payload's cookie), so two runs, or two
/// agents on one host, do not take each other's replies.
fn random_bytes(addr: IpAddr) -> [u8; 4] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No randomness: distinct enough per process, time and target.
        let mixed = crate::hash::stable_hash(&format!(
            "{addr} {:?} {}",
            Instant::now(),
            std::process::id()
        ));
        bytes = (mixed as u32).to_be_bytes();
    }
    bytes
}

impl IcmpDetails {
    /// Names of the phases of an `icmp` check, as blackbox_exporter names them.
    pub const PHASES: [&'static str; 3] = ["resolve", "setup", "rtt"];

    /// Each phase with its duration, in [`IcmpDetails::PHASES`] order; `rtt` is the average
    /// round trip of the replies.
    pub fn phases(&self) -> [(&'static str, Duration); 3] {
        let took = [self.resolve, self.setup, self.rtt];
        std::array::from_fn(|idx| (Self::PHASES[idx], took[idx]))
    }
}
