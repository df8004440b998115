//! The `dns` check: one query of any record type to the system resolver or a given server,
//! over UDP, TCP, DNS-over-TLS or DNS-over-HTTPS, checked against expectations on the rcode,
//! the answers, the authoritative flag, TTLs and DNSSEC signature expiry. In `consistency`
//! mode it asks every authoritative server of a zone for the SOA and compares the serials.
//!
//! Messages are built and parsed with hickory-proto; the transports are thin and local so
//! each phase is timed and each misbehaviour (a mismatched ID, a truncated or malformed
//! answer) becomes a precise failure reason.

pub(crate) mod config;
mod rules;

pub use rules::{RrRules, SectionRules, rr_text};

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use bytes::Bytes;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method};
use regex::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::CheckCtx;
use super::http::{HttpExpect, HttpOptions, HttpSpec, TlsOptions, fetch, show_url};
pub use crate::net::HostPort;
use crate::net::{self, IpPreference};
use crate::result::{
    Details, DnsAnswer, DnsDetails, Failure, FailureReason, HttpDetails, SoaServer, Status,
    rcode_name,
};
use crate::time;

/// The reasons a `dns` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::Closed,
    FailureReason::Protocol,
    FailureReason::Status,
    FailureReason::TooLarge,
    FailureReason::Rcode,
    FailureReason::Answer,
    FailureReason::RrsigExpiring,
    FailureReason::Inconsistent,
];

/// Largest DNS message nightjar reads (the protocol maximum).
const MAX_MESSAGE: usize = 65_535;

/// A validated `dns` check.
#[derive(Debug, Clone)]
pub struct DnsSpec {
    /// The name asked about.
    pub query: Name,
    /// The record type asked for.
    pub record: RecordType,
    /// Where to ask.
    pub server: DnsServer,
    /// Set the RD bit (ask for recursion).
    pub recursion_desired: bool,
    /// Set the DO bit, so signed zones return their RRSIGs.
    pub dnssec_ok: bool,
    /// Address family preference for resolving a server given by name.
    pub ip: IpPreference,
    /// Compare the SOA serials of the zone's authoritative servers instead.
    pub consistency: Option<Consistency>,
    /// What must hold.
    pub expect: DnsExpect,
    /// The class asked about (`IN` unless given; `CH` for `version.bind`).
    pub class: DNSClass,
    /// Send an EDNS OPT record (a 4096-byte UDP payload, and the DO bit if `dnssec_ok`); off,
    /// the query is the plain one blackbox_exporter sends.
    pub edns: bool,
}

/// Where queries go.
#[derive(Debug, Clone)]
pub enum DnsServer {
    /// The first name server of the system configuration (`/etc/resolv.conf`).
    System {
        /// Over TCP instead of UDP.
        tcp: bool,
    },
    /// Plain DNS over UDP (falling back to TCP when the answer is truncated).
    Udp(HostPort),
    /// Plain DNS over TCP.
    Tcp(HostPort),
    /// DNS over TLS (RFC 7858).
    Tls(Box<TlsServer>),
    /// DNS over HTTPS (RFC 8484), POST.
    Https(Box<HttpsServer>),
}

/// A DNS-over-TLS server.
#[derive(Debug, Clone)]
pub struct TlsServer {
    /// Where it listens.
    pub addr: HostPort,
    /// Its TLS client, verifier and name (always set: the configured one, or the host's).
    pub tls: TlsOptions,
}

/// A DNS-over-HTTPS endpoint.
#[derive(Debug, Clone)]
pub struct HttpsServer {
    /// The endpoint, e.g. `https://dns.example/dns-query`.
    pub url: Url,
    /// Its TLS client, verifier and name.
    pub tls: TlsOptions,
}

/// The servers whose SOA serials must agree.
#[derive(Debug, Clone)]
pub struct Consistency {
    /// Explicit servers; empty means the zone's NS records.
    pub servers: Vec<HostPort>,
    /// The port of the servers found through NS records (53).
    pub ns_port: u16,
}

/// Expectations of a `dns` check.
#[derive(Debug, Clone)]
pub struct DnsExpect {
    /// Accepted response codes.
    pub rcodes: Vec<ResponseCode>,
    /// Every answer of the queried type must match each regex.
    pub answers_match: Vec<Regex>,
    /// Each regex must match at least one answer.
    pub answers_match_any: Vec<Regex>,
    /// No answer may match any regex.
    pub answers_match_none: Vec<Regex>,
    /// The answers, exactly (order does not matter).
    pub answers: Option<Vec<String>>,
    /// At least this many answers of the queried type.
    pub min_answers: Option<usize>,
    /// The AA flag must be this.
    pub authoritative: Option<bool>,
    /// Every answer's TTL must be at least this.
    pub min_ttl: Option<u32>,
    /// Every answer's TTL must be at most this.
    pub max_ttl: Option<u32>,
    /// The earliest RRSIG among the answers must expire at least this many days away.
    pub min_rrsig_days_left: Option<f64>,
    /// blackbox_exporter's regex rules over each section's records (`answer_rrs`,
    /// `authority_rrs`, `additional_rrs`).
    pub sections: SectionRules,
}

impl Default for DnsExpect {
    fn default() -> Self {
        DnsExpect {
            rcodes: vec![ResponseCode::NoError],
            answers_match: Vec::new(),
            answers_match_any: Vec::new(),
            answers_match_none: Vec::new(),
            answers: None,
            min_answers: None,
            authoritative: None,
            min_ttl: None,
            max_ttl: None,
            min_rrsig_days_left: None,
            sections: SectionRules::default(),
        }
    }
}

/// Runs a `dns` check once.
pub async fn run(spec: &DnsSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = DnsDetails::default();
    let status = match &spec.consistency {
        Some(consistency) => run_consistency(spec, consistency, ctx, &mut details).await,
        None => match ask(
            spec,
            ctx,
            &spec.server,
            &spec.query,
            spec.record,
            spec.recursion_desired,
            &mut details,
        )
        .await
        {
            Ok(answer) => judge(&answer, spec.record, &spec.expect, &mut details),
            Err(failure) => failure.into(),
        },
    };
    (status, Details::Dns(details))
}

/// Fills the details from an answer.
fn record_answer(message: &Message, record: RecordType, details: &mut DnsDetails) {
    details.rcode = Some(message.metadata.response_code);
    details.authoritative = message.metadata.authoritative;
    details.answer_rrs = message.answers.len();
    details.authority_rrs = message.authorities.len();
    details.additional_rrs = message.additionals.len();
    for answer in &message.answers {
        match &answer.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                let expiry = i64::from(sig.input().sig_expiration.get());
                details.earliest_rrsig =
                    Some(details.earliest_rrsig.map_or(expiry, |e| e.min(expiry)));
            }
            RData::SOA(soa) if details.soa_serial.is_none() => {
                details.soa_serial = Some(soa.serial)
            }
            _ => {}
        }
        if answer.record_type() == record || record == RecordType::ANY {
            details.answers.push(DnsAnswer {
                name: answer.name.to_string(),
                kind: answer.record_type().to_string(),
                ttl: answer.ttl,
                data: answer.data.to_string(),
            });
        }
    }
}

/// Records an answer and judges it: the expectations of [`evaluate`], then the sections'
/// record rules.
fn judge(
    message: &Message,
    record: RecordType,
    expect: &DnsExpect,
    details: &mut DnsDetails,
) -> Status {
    record_answer(message, record, details);
    match evaluate(expect, details, SystemTime::now()) {
        Status::Pass => match expect.sections.judge(message) {
            Ok(()) => Status::Pass,
            Err(failure) => failure.into(),
        },
        failed => failed,
    }
}

/// Judges an answer; the first expectation that fails decides.
pub fn evaluate(expect: &DnsExpect, details: &DnsDetails, now: SystemTime) -> Status {
    let verdict = expect_rcode(expect, details)
        .and_then(|()| expect_answers(expect, &details.answers))
        .and_then(|()| expect_authoritative(expect, details))
        .and_then(|()| expect_ttls(expect, &details.answers))
        .and_then(|()| expect_rrsig(expect, details, now));
    match verdict {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    }
}

/// The response code is one of `rcodes`.
fn expect_rcode(expect: &DnsExpect, details: &DnsDetails) -> Result<(), Failure> {
    if details
        .rcode
        .is_some_and(|rcode| expect.rcodes.contains(&rcode))
    {
        return Ok(());
    }
    let rcode = details.rcode_name();
    let rcode = rcode.as_deref().unwrap_or("none");
    let wanted: Vec<_> = expect.rcodes.iter().map(|code| rcode_name(*code)).collect();
    Err(Failure::new(
        FailureReason::Rcode,
        format!("expected rcode {}, got {rcode}", wanted.join(" or ")),
    ))
}

/// The answers of the queried type: how many, what they match, and exactly which.
fn expect_answers(expect: &DnsExpect, records: &[DnsAnswer]) -> Result<(), Failure> {
    let answers = || records.iter().map(|answer| answer.data.as_str());
    let shown = || {
        if records.is_empty() {
            "no answers".to_string()
        } else {
            let listed: Vec<String> = answers().take(10).map(|a| format!("{a:?}")).collect();
            format!("answers {}", listed.join(", "))
        }
    };
    let fail = |detail: String| Err(Failure::new(FailureReason::Answer, detail));
    if let Some(min) = expect.min_answers
        && records.len() < min
    {
        return fail(format!("expected at least {min} answers, got {}", shown()));
    }
    for regex in &expect.answers_match {
        if records.is_empty() || answers().any(|answer| !regex.is_match(answer)) {
            return fail(format!(
                "expected every answer to match /{regex}/, got {}",
                shown()
            ));
        }
    }
    for regex in &expect.answers_match_any {
        if !answers().any(|answer| regex.is_match(answer)) {
            return fail(format!(
                "expected an answer matching /{regex}/, got {}",
                shown()
            ));
        }
    }
    for regex in &expect.answers_match_none {
        if let Some(found) = answers().find(|answer| regex.is_match(answer)) {
            return fail(format!(
                "expected no answer matching /{regex}/, got {found:?}"
            ));
        }
    }
    if let Some(exact) = &expect.answers {
        let mut got: Vec<&str> = answers().collect();
        let mut wanted: Vec<&str> = exact.iter().map(String::as_str).collect();
        got.sort_unstable();
        wanted.sort_unstable();
        if got != wanted {
            return fail(format!(
                "expected exactly the answers {wanted:?}, got {}",
                shown()
            ));
        }
    }
    Ok(())
}

/// The AA flag is what `authoritative` says.
fn expect_authoritative(expect: &DnsExpect, details: &DnsDetails) -> Result<(), Failure> {
    match expect.authoritative {
        Some(want) if want != details.authoritative => {
            let detail = if want {
                "expected an authoritative answer (AA flag), got a non-authoritative one"
            } else {
                "expected a non-authoritative answer, got one with the AA flag"
            };
            Err(Failure::new(FailureReason::Answer, detail))
        }
        _ => Ok(()),
    }
}

/// Every answer's TTL within `min_ttl` and `max_ttl`.
fn expect_ttls(expect: &DnsExpect, answers: &[DnsAnswer]) -> Result<(), Failure> {
    for answer in answers {
        if let Some(min) = expect.min_ttl
            && answer.ttl < min
        {
            return Err(Failure::new(
                FailureReason::Answer,
                format!(
                    "TTL {} of {:?} is below min_ttl {min}s",
                    answer.ttl, answer.data
                ),
            ));
        }
        if let Some(max) = expect.max_ttl
            && answer.ttl > max
        {
            return Err(Failure::new(
                FailureReason::Answer,
                format!(
                    "TTL {} of {:?} is above max_ttl {max}s",
                    answer.ttl, answer.data
                ),
            ));
        }
    }
    Ok(())
}

/// The earliest RRSIG among the answers, when `min_rrsig_days_left` asks for one, at least
/// that many days from expiring.
fn expect_rrsig(expect: &DnsExpect, details: &DnsDetails, now: SystemTime) -> Result<(), Failure> {
    let Some(min_days) = expect.min_rrsig_days_left else {
        return Ok(());
    };
    let Some(expiry) = details.earliest_rrsig else {
        return Err(Failure::new(
            FailureReason::RrsigExpiring,
            "expected RRSIG records among the answers (a signed zone), found none",
        ));
    };
    let days_left = time::days_until(expiry, now);
    if days_left < min_days {
        let state = format!(
            "{} ({})",
            time::expiry_verdict(days_left),
            time::rfc3339_unix(expiry)
        );
        return Err(Failure::new(
            FailureReason::RrsigExpiring,
            format!("the earliest RRSIG {state}, less than min_rrsig_days_left {min_days}"),
        ));
    }
    Ok(())
}

async fn run_consistency(
    spec: &DnsSpec,
    consistency: &Consistency,
    ctx: &CheckCtx,
    details: &mut DnsDetails,
) -> Status {
    let servers = if consistency.servers.is_empty() {
        match discover(spec, ctx, consistency.ns_port, details).await {
            Ok(servers) => servers,
            Err(failure) => return failure.into(),
        }
    } else {
        consistency
            .servers
            .iter()
            .map(|server| (server.to_string(), server.clone()))
            .collect()
    };
    for (label, server) in servers {
        let endpoint = DnsServer::Udp(server);
        let mut scratch = DnsDetails::default();
        let serial = match ask(
            spec,
            ctx,
            &endpoint,
            &spec.query,
            RecordType::SOA,
            false,
            &mut scratch,
        )
        .await
        {
            Ok(answer) => answer.answers.iter().find_map(|record| match &record.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            }),
            Err(Failure {
                reason: FailureReason::Timeout,
                ..
            }) if Instant::now() >= ctx.deadline => {
                details.soa_servers.push(SoaServer {
                    server: label,
                    serial: None,
                });
                break;
            }
            Err(_) => None,
        };
        details.soa_servers.push(SoaServer {
            server: label,
            serial,
        });
    }
    details.soa_serial = details.soa_servers.iter().find_map(|server| server.serial);
    let listing = || {
        details
            .soa_servers
            .iter()
            .map(|server| match server.serial {
                Some(serial) => format!("{} has {serial}", server.server),
                None => format!("{} gave no SOA", server.server),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if details
        .soa_servers
        .iter()
        .any(|server| server.serial.is_none())
    {
        return Status::fail(
            FailureReason::Inconsistent,
            format!(
                "not every server answered the SOA of {}: {}",
                spec.query,
                listing()
            ),
        );
    }
    let first = details.soa_servers.first().and_then(|server| server.serial);
    if details
        .soa_servers
        .iter()
        .any(|server| server.serial != first)
    {
        return Status::fail(
            FailureReason::Inconsistent,
            format!("SOA serials of {} differ: {}", spec.query, listing()),
        );
    }
    Status::Pass
}

/// The zone's authoritative servers: its NS records, their addresses from the glue or a
/// query, on `port`.
async fn discover(
    spec: &DnsSpec,
    ctx: &CheckCtx,
    port: u16,
    details: &mut DnsDetails,
) -> Result<Vec<(String, HostPort)>, Failure> {
    let ns = ask(
        spec,
        ctx,
        &spec.server,
        &spec.query,
        RecordType::NS,
        true,
        details,
    )
    .await?;
    let mut names: Vec<Name> = ns
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::NS(ns) => Some(ns.0.clone()),
            _ => None,
        })
        .collect();
    // Servers rotate their NS records; a stable order keeps details and labels stable.
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Failure::new(
            FailureReason::Answer,
            format!("{} has no NS records", spec.query),
        ));
    }
    let mut servers = Vec::new();
    for name in names {
        let glue: Vec<IpAddr> = ns
            .additionals
            .iter()
            .filter(|record| record.name == name)
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        let addrs = if glue.is_empty() {
            let mut scratch = DnsDetails::default();
            let answer = ask(
                spec,
                ctx,
                &spec.server,
                &name,
                RecordType::A,
                true,
                &mut scratch,
            )
            .await?;
            answer
                .answers
                .iter()
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect()
        } else {
            glue
        };
        let Some(addr) = net::order_addresses(&addrs, spec.ip).first().copied() else {
            details.soa_servers.push(SoaServer {
                server: name.to_string(),
                serial: None,
            });
            continue;
        };
        servers.push((
            format!("{name} ({addr})"),
            HostPort {
                host: addr.to_string(),
                port,
            },
        ));
    }
    Ok(servers)
}

/// Sends one query and returns the answer whose ID and question match.
async fn ask(
    spec: &DnsSpec,
    ctx: &CheckCtx,
    server: &DnsServer,
    name: &Name,
    record: RecordType,
    recursion_desired: bool,
    details: &mut DnsDetails,
) -> Result<Message, Failure> {
    let id = if matches!(server, DnsServer::Https(_)) {
        0
    } else {
        random_id()
    };
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = recursion_desired;
    let mut question = Query::query(name.clone(), record);
    question.set_query_class(spec.class);
    query.add_query(question);
    if spec.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        edns.set_dnssec_ok(spec.dnssec_ok);
        query.set_edns(edns);
    }
    let wire = query.to_vec().map_err(|error| {
        Failure::new(
            FailureReason::Protocol,
            format!("cannot encode the query: {error}"),
        )
    })?;

    let started = Instant::now();
    let spent_before = details.resolve + details.connect + details.tls;
    let answer = match server {
        DnsServer::System { tcp } => {
            let Some(addr) = net::system_nameservers().first().copied() else {
                return Err(Failure::new(
                    FailureReason::Connect,
                    "the system has no name server configured (/etc/resolv.conf); set server",
                ));
            };
            details.server = addr.to_string();
            if *tcp {
                over_tcp(ctx, addr, &wire, id, details).await
            } else {
                over_udp(ctx, addr, &wire, id, details).await
            }
        }
        DnsServer::Udp(target) => {
            let addr = resolve(spec, ctx, target, details).await?;
            over_udp(ctx, addr, &wire, id, details).await
        }
        DnsServer::Tcp(target) => {
            let addr = resolve(spec, ctx, target, details).await?;
            over_tcp(ctx, addr, &wire, id, details).await
        }
        DnsServer::Tls(tls) => over_tls(spec, ctx, tls, &wire, id, details).await,
        DnsServer::Https(https) => over_https(spec, ctx, https, wire, details).await,
    }?;
    // The request phase is what is left once resolving, connecting and TLS are counted.
    let setting_up = (details.resolve + details.connect + details.tls).saturating_sub(spent_before);
    details.request += started.elapsed().saturating_sub(setting_up);
    parse_answer(&answer, &details.server, name, record)
}

/// Parses an answer's bytes and checks it answers the question asked.
fn parse_answer(
    answer: &[u8],
    server: &str,
    name: &Name,
    record: RecordType,
) -> Result<Message, Failure> {
    let message = Message::from_vec(answer).map_err(|error| {
        Failure::new(
            FailureReason::Protocol,
            format!("malformed DNS answer from {server}: {error}"),
        )
    })?;
    if message.metadata.message_type != MessageType::Response {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!("{server} sent a query, not a response"),
        ));
    }
    let asked = message.queries.first();
    if asked.is_some_and(|q| q.name() != name || q.query_type() != record) {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!("{server} answered a different question"),
        ));
    }
    Ok(message)
}

/// What a run makes of an answer's bytes to `name`/`record`: parsed, recorded and judged
/// against `expect`, exactly as after a real exchange. The fuzz target `dns_answer` feeds it
/// arbitrary bytes.
pub fn judge_answer(
    answer: &[u8],
    name: &Name,
    record: RecordType,
    expect: &DnsExpect,
) -> (Status, DnsDetails) {
    let mut details = DnsDetails {
        server: "fuzz".to_string(),
        ..DnsDetails::default()
    };
    let status = match parse_answer(answer, "fuzz", name, record) {
        Ok(message) => judge(&message, record, expect, &mut details),
        Err(failure) => failure.into(),
    };
    (status, details)
}

fn random_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u16::from_be_bytes(bytes)
}

async fn resolve(
    spec: &DnsSpec,
    ctx: &CheckCtx,
    target: &HostPort,
    details: &mut DnsDetails,
) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, target.port));
    }
    let start = Instant::now();
    let found = timeout_at(ctx.deadline, ctx.resolver.lookup(&target.host, spec.ip)).await;
    details.resolve += start.elapsed();
    match found {
        Ok(Ok(addrs)) => Ok(SocketAddr::new(addrs[0], target.port)),
        Ok(Err(message)) => Err(Failure::new(FailureReason::Dns, message)),
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out resolving {}", target.host),
        )),
    }
}

/// UDP: one datagram; answers with another ID are ignored (and counted); a truncated answer
/// is asked again over TCP, as resolvers do.
async fn over_udp(
    ctx: &CheckCtx,
    addr: SocketAddr,
    wire: &[u8],
    id: u16,
    details: &mut DnsDetails,
) -> Result<Vec<u8>, Failure> {
    details.server = addr.to_string();
    let local: SocketAddr = match ctx.source_ip {
        Some(source) => (source, 0).into(),
        None if addr.is_ipv4() => ([0, 0, 0, 0], 0).into(),
        None => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|error| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot open a UDP socket on {local}: {error}"),
        )
    })?;
    socket.connect(addr).await.map_err(|error| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot reach {addr} over UDP: {error}"),
        )
    })?;
    socket.send(wire).await.map_err(|error| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot send to {addr} over UDP: {error}"),
        )
    })?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut mismatched = 0usize;
    loop {
        let received = match timeout_at(ctx.deadline, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(error)) => {
                return Err(Failure::new(
                    FailureReason::Connect,
                    format!("{addr} over UDP: {error}"),
                ));
            }
            Err(_) => {
                let note = if mismatched > 0 {
                    format!(" ({mismatched} answers with a mismatched ID were ignored)")
                } else {
                    String::new()
                };
                return Err(Failure::new(
                    FailureReason::Timeout,
                    format!("timed out waiting for {addr} over UDP{note}"),
                ));
            }
        };
        let answer = &buf[..received];
        if answer.len() < 12 || u16::from_be_bytes([answer[0], answer[1]]) != id {
            mismatched += 1;
            continue;
        }
        // The TC bit: the answer did not fit in a datagram.
        if answer[2] & 0x02 != 0 {
            details.truncated = true;
            return over_tcp(ctx, addr, wire, id, details).await.map_err(|Failure { reason, detail }| {
                Failure::new(
                    reason,
                    format!("the UDP answer from {addr} was truncated and the TCP retry failed: {detail}"),
                )
            });
        }
        return Ok(answer.to_vec());
    }
}

async fn over_tcp(
    ctx: &CheckCtx,
    addr: SocketAddr,
    wire: &[u8],
    id: u16,
    details: &mut DnsDetails,
) -> Result<Vec<u8>, Failure> {
    details.server = addr.to_string();
    let start = Instant::now();
    let connected = net::connect(&[addr.ip()], addr.port(), ctx.source_ip, ctx.deadline).await;
    details.connect += start.elapsed();
    let (mut stream, _) = connected.map_err(|error| match error {
        net::ConnectError::Timeout(addr) => Failure::new(
            FailureReason::Timeout,
            format!("timed out connecting to {addr}"),
        ),
        net::ConnectError::Failed(message) => Failure::new(FailureReason::Connect, message),
    })?;
    exchange_framed(&mut stream, ctx.deadline, wire, id, &addr.to_string()).await
}

async fn over_tls(
    spec: &DnsSpec,
    ctx: &CheckCtx,
    server: &TlsServer,
    wire: &[u8],
    id: u16,
    details: &mut DnsDetails,
) -> Result<Vec<u8>, Failure> {
    let target = server.addr.to_string();
    details.server = target.clone();
    let (tcp, _) = super::dial(
        ctx,
        &server.addr.host,
        server.addr.port,
        spec.ip,
        &target,
        &mut details.resolve,
        &mut details.connect,
    )
    .await?;
    let server_name = server.tls.name_for(&server.addr.host)?;
    let (mut tls, info) = super::tls_handshake(
        &server.tls,
        &server_name,
        tcp,
        ctx.deadline,
        &target,
        &mut details.tls,
    )
    .await?;
    let verified = super::require_verified(&info, server.tls.insecure_skip_verify, &target);
    details.tls_info = Some(info);
    verified?;
    exchange_framed(&mut tls, ctx.deadline, wire, id, &target).await
}

/// DNS over a stream: a two-byte length, then the message (RFC 1035 §4.2.2).
async fn exchange_framed<S>(
    stream: &mut S,
    deadline: Instant,
    wire: &[u8],
    id: u16,
    target: &str,
) -> Result<Vec<u8>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    framed.extend_from_slice(wire);
    match timeout_at(deadline, stream.write_all(&framed)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            return Err(Failure::new(
                FailureReason::Closed,
                format!("cannot send the query to {target}: {error}"),
            ));
        }
        Err(_) => {
            return Err(Failure::new(
                FailureReason::Timeout,
                format!("timed out sending the query to {target}"),
            ));
        }
    }
    // A server may send other messages first; a bounded number are skipped.
    for _ in 0..16 {
        let mut length = [0u8; 2];
        read_exact(stream, deadline, &mut length, target).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        read_exact(stream, deadline, &mut answer, target).await?;
        if answer.len() >= 12 && u16::from_be_bytes([answer[0], answer[1]]) == id {
            return Ok(answer);
        }
    }
    Err(Failure::new(
        FailureReason::Protocol,
        format!("{target} sent 16 messages, none with the query's ID"),
    ))
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
    buf: &mut [u8],
    target: &str,
) -> Result<(), Failure> {
    match timeout_at(deadline, stream.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(Failure::new(
            FailureReason::Closed,
            format!("{target} closed the connection mid-answer: {error}"),
        )),
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out waiting for the answer from {target}"),
        )),
    }
}

async fn over_https(
    spec: &DnsSpec,
    ctx: &CheckCtx,
    server: &HttpsServer,
    wire: Vec<u8>,
    details: &mut DnsDetails,
) -> Result<Vec<u8>, Failure> {
    details.server = show_url(&server.url);
    let request = HttpSpec::new(
        server.url.clone(),
        HttpOptions {
            headers: vec![
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/dns-message"),
                ),
                (ACCEPT, HeaderValue::from_static("application/dns-message")),
            ],
            body: Some(Bytes::from(wire)),
            ip: spec.ip,
            max_body: MAX_MESSAGE as u64,
            expect: HttpExpect {
                max_size: Some(MAX_MESSAGE as u64),
                ..HttpExpect::default()
            },
            ..HttpOptions::internal(Method::POST, server.tls.clone())
        },
    );
    let mut http = HttpDetails::default();
    let received = fetch(&request, ctx, &mut http).await;
    details.resolve += http.resolve;
    details.connect += http.connect;
    details.tls += http.tls;
    details.tls_info = http.tls_info.take();
    let received = received?;
    if received.status.as_u16() != 200 {
        return Err(Failure::new(
            FailureReason::Status,
            format!(
                "{} answered HTTP {} to the DNS query",
                details.server,
                received.status.as_u16()
            ),
        ));
    }
    Ok(received.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn details(answers: &[(&str, u32)]) -> DnsDetails {
        DnsDetails {
            rcode: Some(ResponseCode::NoError),
            answers: answers
                .iter()
                .map(|(data, ttl)| DnsAnswer {
                    name: "x.".into(),
                    kind: "A".into(),
                    ttl: *ttl,
                    data: (*data).into(),
                })
                .collect(),
            ..DnsDetails::default()
        }
    }

    fn fails(expect: &DnsExpect, details: &DnsDetails) -> String {
        match evaluate(expect, details, UNIX_EPOCH + Duration::from_secs(1_000_000)) {
            Status::Fail(Failure { detail, .. }) => detail,
            Status::Pass => panic!("passed"),
        }
    }

    #[test]
    fn answer_expectations() {
        let got = details(&[("203.0.113.5", 300), ("203.0.113.6", 300)]);
        let re = |p: &str| Regex::new(p).unwrap();
        let pass = DnsExpect {
            answers_match: vec![re(r"^203\.0\.113\.")],
            answers_match_any: vec![re(r"\.6$")],
            answers_match_none: vec![re(r"^10\.")],
            answers: Some(vec!["203.0.113.6".into(), "203.0.113.5".into()]),
            min_ttl: Some(60),
            max_ttl: Some(3600),
            ..DnsExpect::default()
        };
        assert_eq!(evaluate(&pass, &got, SystemTime::now()), Status::Pass);
        let all = DnsExpect {
            answers_match: vec![re(r"\.5$")],
            ..DnsExpect::default()
        };
        assert!(fails(&all, &got).starts_with("expected every answer to match /\\.5$/"));
        let exact = DnsExpect {
            answers: Some(vec!["203.0.113.5".into()]),
            ..DnsExpect::default()
        };
        assert!(fails(&exact, &got).starts_with("expected exactly the answers"));
        let ttl = DnsExpect {
            min_ttl: Some(600),
            ..DnsExpect::default()
        };
        assert_eq!(
            fails(&ttl, &got),
            "TTL 300 of \"203.0.113.5\" is below min_ttl 600s"
        );
        let rcode = DnsExpect {
            rcodes: vec![ResponseCode::NXDomain],
            ..DnsExpect::default()
        };
        assert_eq!(fails(&rcode, &got), "expected rcode NXDOMAIN, got NOERROR");
    }

    #[test]
    fn rrsig_expiry() {
        let mut got = details(&[("203.0.113.5", 300)]);
        let expect = DnsExpect {
            min_rrsig_days_left: Some(7.0),
            ..DnsExpect::default()
        };
        assert!(fails(&expect, &got).contains("found none"));
        got.earliest_rrsig = Some(1_000_000 + 3 * 86_400);
        assert!(fails(&expect, &got).starts_with("the earliest RRSIG expires in 3.0 days"));
        got.earliest_rrsig = Some(1_000_000 + 8 * 86_400);
        assert_eq!(
            evaluate(&expect, &got, UNIX_EPOCH + Duration::from_secs(1_000_000)),
            Status::Pass
        );
    }
}
