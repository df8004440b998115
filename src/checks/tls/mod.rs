//! The `tls` check: connect (optionally after an SMTP STARTTLS exchange), complete a TLS
//! handshake whatever the certificate, read the whole presented chain, and judge it.
//!
//! Success means: the handshake completed, and every expectation held: the earliest expiry
//! in the chain is at least `min_days_left` away, the chain validates to the configured roots,
//! the leaf is valid for the server name, and the version is at least `min_version`.

pub(crate) mod config;

use std::time::SystemTime;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::CheckCtx;
use super::http::TlsOptions;
use crate::net::IpPreference;
use crate::result::{Details, Failure, FailureReason, Status, TlsDetails, TlsInfo};
use crate::time;
use crate::tlsinfo;

/// The reasons a `tls` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::CertExpiring,
    FailureReason::Closed,
    FailureReason::Protocol,
];

/// A validated `tls` check.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    /// Host name or IP address to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// Address family preference.
    pub ip: IpPreference,
    /// The TLS client (client certificate), the verifier that judges the presented chain
    /// against the configured roots, and the name sent in SNI and verified against the
    /// certificate (always set: the configured one, or the host's).
    pub tls: TlsOptions,
    /// A plain-text protocol to upgrade from first.
    pub starttls: Option<StartTls>,
    /// What must hold.
    pub expect: TlsExpect,
}

/// Plain-text protocols that upgrade to TLS in-band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// SMTP (RFC 3207): greeting, EHLO, STARTTLS.
    Smtp,
}

pub use super::http::TlsVersion;

/// Expectations of a `tls` check.
#[derive(Debug, Clone)]
pub struct TlsExpect {
    /// The earliest expiry in the chain must be at least this many days away.
    pub min_days_left: Option<f64>,
    /// The chain must validate to the configured roots.
    pub chain_valid: bool,
    /// The leaf must be valid for the server name.
    pub hostname_match: bool,
    /// The negotiated version must be at least this.
    pub min_version: Option<TlsVersion>,
}

impl Default for TlsExpect {
    fn default() -> Self {
        TlsExpect {
            min_days_left: None,
            chain_valid: true,
            hostname_match: true,
            min_version: None,
        }
    }
}

/// Runs a `tls` check once.
pub async fn run(spec: &TlsSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = TlsDetails::default();
    let status = match spec.tls.name_for(&spec.host) {
        Ok(server_name) => match handshake(spec, &server_name, ctx, &mut details).await {
            Ok(info) => {
                let status = evaluate(&spec.expect, &info, &server_name, SystemTime::now());
                details.info = Some(info);
                status
            }
            Err(failure) => failure.into(),
        },
        Err(failure) => failure.into(),
    };
    (status, Details::Tls(details))
}

async fn handshake(
    spec: &TlsSpec,
    server_name: &ServerName<'static>,
    ctx: &CheckCtx,
    details: &mut TlsDetails,
) -> Result<TlsInfo, Failure> {
    let target = format!("{}:{}", spec.host, spec.port);
    let (mut tcp, remote) = super::dial(
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

    if let Some(StartTls::Smtp) = spec.starttls {
        let start = Instant::now();
        let upgraded = smtp_starttls(&mut tcp, ctx.deadline, &target).await;
        details.starttls = start.elapsed();
        upgraded?;
    }

    let (mut tls, info) = super::tls_handshake(
        &spec.tls,
        server_name,
        tcp,
        ctx.deadline,
        &format!("{target} at {remote}"),
        &mut details.handshake,
    )
    .await?;
    // Say goodbye politely; the verdict does not depend on it.
    let _ = timeout_at(ctx.deadline, tls.shutdown()).await;
    Ok(info)
}

/// Judges what the handshake showed; the first expectation that fails decides.
pub fn evaluate(
    expect: &TlsExpect,
    info: &TlsInfo,
    server_name: &ServerName<'_>,
    now: SystemTime,
) -> Status {
    if let (Some(min_days), Some((position, cert))) = (expect.min_days_left, info.earliest_cert()) {
        let days_left = time::days_until(cert.not_after, now);
        if days_left < min_days {
            let when = time::expiry_verdict(days_left);
            return Status::fail(
                FailureReason::CertExpiring,
                format!(
                    "certificate #{position} ({}) {when} (not after {}), less than min_days_left {min_days}",
                    cert.subject,
                    time::rfc3339_unix(cert.not_after),
                ),
            );
        }
    }
    if expect.chain_valid && !info.chain_valid {
        return Status::fail(
            FailureReason::CertInvalid,
            format!(
                "the chain does not validate: {}",
                info.verify_error.as_deref().unwrap_or("unknown error")
            ),
        );
    }
    if expect.hostname_match && !info.hostname_match {
        let sans = info
            .chain
            .first()
            .map(|leaf| leaf.sans.join(", "))
            .unwrap_or_default();
        return Status::fail(
            FailureReason::CertInvalid,
            format!(
                "the certificate is not valid for {} (it names: {})",
                tlsinfo::name_text(server_name),
                if sans.is_empty() {
                    "no DNS or IP names"
                } else {
                    &sans
                }
            ),
        );
    }
    if let Some(min) = expect.min_version {
        let negotiated = TlsVersion::from_name(info.version);
        if negotiated.is_none_or(|version| version < min) {
            return Status::fail(
                FailureReason::Tls,
                format!(
                    "negotiated {}, expected at least {}",
                    info.version,
                    min.name()
                ),
            );
        }
    }
    Status::Pass
}

/// Longest SMTP reply nightjar reads before calling the server broken.
const MAX_SMTP_REPLY: usize = 16 * 1024;

/// RFC 3207: read the greeting, say EHLO, ask for STARTTLS.
async fn smtp_starttls(
    stream: &mut TcpStream,
    deadline: Instant,
    target: &str,
) -> Result<(), Failure> {
    let greeting = smtp_reply(stream, deadline, target, "the greeting").await?;
    expect_code(&greeting, 220, target, "greeting")?;
    smtp_send(stream, deadline, target, b"EHLO nightjar.invalid\r\n").await?;
    let ehlo = smtp_reply(stream, deadline, target, "the EHLO reply").await?;
    expect_code(&ehlo, 250, target, "EHLO")?;
    let offers_starttls = ehlo.lines().any(|line| {
        line.get(4..)
            .is_some_and(|word| word.trim().eq_ignore_ascii_case("STARTTLS"))
    });
    if !offers_starttls {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!("{target} does not offer STARTTLS in its EHLO reply"),
        ));
    }
    smtp_send(stream, deadline, target, b"STARTTLS\r\n").await?;
    let ready = smtp_reply(stream, deadline, target, "the STARTTLS reply").await?;
    expect_code(&ready, 220, target, "STARTTLS")
}

async fn smtp_send(
    stream: &mut TcpStream,
    deadline: Instant,
    target: &str,
    line: &[u8],
) -> Result<(), Failure> {
    match timeout_at(deadline, stream.write_all(line)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure::new(
            FailureReason::Closed,
            format!("SMTP with {target}: {error}"),
        )),
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out writing to {target}"),
        )),
    }
}

/// Reads one (possibly multi-line) SMTP reply. Reads byte chunks, but the server sends
/// nothing past the final line before the client speaks, so nothing is lost.
async fn smtp_reply(
    stream: &mut TcpStream,
    deadline: Instant,
    target: &str,
    what: &str,
) -> Result<String, Failure> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&raw);
        let complete = text.ends_with("\r\n")
            && text
                .trim_end()
                .lines()
                .last()
                .is_some_and(|line| line.len() >= 4 && line.as_bytes()[3] == b' ');
        if complete {
            return Ok(text.into_owned());
        }
        if raw.len() > MAX_SMTP_REPLY {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!("{target} sent more than {MAX_SMTP_REPLY} bytes for {what}"),
            ));
        }
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) => {
                return Err(Failure::new(
                    FailureReason::Closed,
                    format!("{target} closed the connection before {what}"),
                ));
            }
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Ok(Err(error)) => {
                return Err(Failure::new(
                    FailureReason::Closed,
                    format!("SMTP with {target}: {error}"),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    FailureReason::Timeout,
                    format!("timed out waiting for {what} from {target}"),
                ));
            }
        }
    }
}

fn expect_code(reply: &str, code: u16, target: &str, step: &str) -> Result<(), Failure> {
    let last = reply.trim_end().lines().last().unwrap_or("");
    if last.get(..3).and_then(|c| c.parse::<u16>().ok()) == Some(code) {
        return Ok(());
    }
    let shown: String = last.chars().take(120).collect();
    Err(Failure::new(
        FailureReason::Protocol,
        format!("expected SMTP {code} after the {step} from {target}, got {shown:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::CertInfo;
    use std::time::{Duration, UNIX_EPOCH};

    fn info(not_after: i64) -> TlsInfo {
        TlsInfo {
            version: "TLS 1.2",
            chain: vec![
                CertInfo {
                    subject: "CN=leaf".into(),
                    not_after: not_after + 1000,
                    ..CertInfo::default()
                },
                CertInfo {
                    subject: "CN=intermediate".into(),
                    not_after,
                    ..CertInfo::default()
                },
            ],
            chain_valid: true,
            hostname_match: true,
            ..TlsInfo::default()
        }
    }

    #[test]
    fn expiry_is_judged_on_the_earliest_certificate() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let name = ServerName::try_from("example.com").unwrap();
        let expect = TlsExpect {
            min_days_left: Some(21.0),
            ..TlsExpect::default()
        };
        let soon = info(1_000_000_000 + 5 * 86_400);
        let Status::Fail(Failure { reason, detail }) = evaluate(&expect, &soon, &name, now) else {
            panic!()
        };
        assert_eq!(reason, FailureReason::CertExpiring);
        assert!(
            detail.starts_with("certificate #1 (CN=intermediate) expires in 5.0 days"),
            "{detail}"
        );
        assert_eq!(
            evaluate(&expect, &info(1_000_000_000 + 30 * 86_400), &name, now),
            Status::Pass
        );
        let expired = info(1_000_000_000 - 2 * 86_400);
        let Status::Fail(Failure { detail, .. }) = evaluate(&expect, &expired, &name, now) else {
            panic!()
        };
        assert!(detail.contains("expired 2.0 days ago"), "{detail}");
    }

    #[test]
    fn minimum_version() {
        let now = UNIX_EPOCH;
        let name = ServerName::try_from("example.com").unwrap();
        let expect = TlsExpect {
            min_version: Some(TlsVersion::Tls13),
            ..TlsExpect::default()
        };
        let Status::Fail(Failure { reason, detail }) = evaluate(&expect, &info(10), &name, now)
        else {
            panic!()
        };
        assert_eq!(reason, FailureReason::Tls);
        assert_eq!(detail, "negotiated TLS 1.2, expected at least TLS 1.3");
    }
}
