//! The floor reference (the same network work as one probe, with nothing else) and the load
//! generator that drives blackbox_exporter's `/probe` endpoint the way Prometheus does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, MissedTickBehavior};

use crate::proc::Usage;

/// What one probe of the floor reference does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Https,
    Dns,
    Tcp,
    /// The gRPC health check in plain-text HTTP/2.
    Grpc,
    Icmp,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Http,
        Kind::Https,
        Kind::Dns,
        Kind::Tcp,
        Kind::Grpc,
        Kind::Icmp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Dns => "dns",
            Kind::Tcp => "tcp",
            Kind::Grpc => "grpc",
            Kind::Icmp => "icmp",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == text)
    }
}

/// Counts of a fixed-rate run.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn record(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Calls `start` `rate` times a second, spread evenly, until `until`.
async fn at_rate<F>(rate: f64, until: Instant, start: F)
where
    F: Fn(),
{
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        let tick = ticks.tick().await;
        if tick >= until {
            return;
        }
        start();
    }
}

/// The floor reference: `rate` probes a second against `target` for `warmup` and then
/// `window`, on one thread with no scheduling, metrics or assertions beyond "it answered".
/// Prints `probes ok cpu_seconds window_seconds peak_rss_kib` for the window; the CPU time
/// includes finishing the probes started in it.
pub fn floor(
    kind: Kind,
    target: SocketAddr,
    ca: Option<&str>,
    rate: f64,
    warmup: f64,
    window: f64,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tls = ca.map(|path| {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(path).expect("read CA file");
        for cert in rustls_pemfile_certs(&pem) {
            roots.add(cert).expect("CA certificate");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    });
    runtime.block_on(async move {
        let counts = Arc::new(Counts::default());
        let started = Arc::new(AtomicU64::new(0));
        let probe = {
            let counts = counts.clone();
            let started = started.clone();
            move || {
                started.fetch_add(1, Ordering::Relaxed);
                let counts = counts.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let work = one_probe(kind, target, tls);
                    let ok = tokio::time::timeout(Duration::from_secs(5), work)
                        .await
                        .unwrap_or(false);
                    counts.record(ok);
                });
            }
        };
        let start = Instant::now();
        at_rate(rate, start + Duration::from_secs_f64(warmup), &probe).await;
        let before = Usage::of_self();
        let (started0, (ok0, _)) = (started.load(Ordering::Relaxed), counts.read());
        let window_start = Instant::now();
        at_rate(rate, window_start + Duration::from_secs_f64(window), &probe).await;
        let elapsed = window_start.elapsed().as_secs_f64();
        // Let the probes started in the window finish (bounded by their 5 s timeout).
        let total = started.load(Ordering::Relaxed);
        while {
            let (ok, failed) = counts.read();
            ok + failed < total
        } {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = Usage::of_self();
        let (ok1, _) = counts.read();
        println!(
            "{} {} {:.4} {elapsed:.3} {}",
            total - started0,
            ok1 - ok0,
            after.cpu_seconds - before.cpu_seconds,
            after.peak_rss_kib
        );
    });
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// One probe's network work: true when the target answered as expected.
async fn one_probe(
    kind: Kind,
    target: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
) -> bool {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    match kind {
        Kind::Tcp => TcpStream::connect(target).await.is_ok(),
        Kind::Grpc => grpc_health(target).await,
        Kind::Icmp => echo(target.ip()).await,
        Kind::Http => {
            let Ok(mut tcp) = TcpStream::connect(target).await else {
                return false;
            };
            read_response(&mut tcp, REQUEST).await
        }
        Kind::Https => {
            let Ok(tcp) = TcpStream::connect(target).await else {
                return false;
            };
            let connector = tls.expect("https needs a CA");
            let name = ServerName::IpAddress(target.ip().into());
            let Ok(mut stream) = connector.connect(name, tcp).await else {
                return false;
            };
            read_response(&mut stream, REQUEST).await
        }
        Kind::Dns => {
            let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                return false;
            };
            if socket.connect(target).await.is_err() {
                return false;
            }
            let mut query = Message::new(next_id(), MessageType::Query, OpCode::Query);
            query.add_query(Query::query(
                Name::from_ascii(crate::targets::QUERY_NAME).expect("query name"),
                RecordType::A,
            ));
            let Ok(bytes) = query.to_vec() else {
                return false;
            };
            if socket.send(&bytes).await.is_err() {
                return false;
            }
            let mut buf = [0u8; 1232];
            let Ok(len) = socket.recv(&mut buf).await else {
                return false;
            };
            Message::from_vec(&buf[..len]).is_ok_and(|answer| !answer.answers.is_empty())
        }
    }
}

/// `grpc.health.v1.Health/Check` for the whole server over a fresh plain-text HTTP/2
/// connection: true when the answer is SERVING with status OK. The request (an empty
/// message) and the answer (field 1 = 1) are written and read by hand.
async fn grpc_health(target: SocketAddr) -> bool {
    let Ok(tcp) = TcpStream::connect(target).await else {
        return false;
    };
    let Ok((mut sender, connection)) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    else {
        return false;
    };
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{target}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .expect("request");
    let Ok(response) = sender.send_request(request).await else {
        return false;
    };
    let Ok(body) = response.into_body().collect().await else {
        return false;
    };
    let status_ok = body
        .trailers()
        .and_then(|trailers| trailers.get("grpc-status"))
        .is_some_and(|status| status == "0");
    status_ok && body.to_bytes().as_ref() == [0, 0, 0, 0, 2, 0x08, 1]
}

/// One ICMP echo request and its reply, over a datagram socket where `ping_group_range`
/// allows it, a raw one otherwise (as nightjar and blackbox_exporter choose), without the
/// reply's hop limit or the error queue.
async fn echo(target: std::net::IpAddr) -> bool {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn};
    let std::net::IpAddr::V4(v4) = target else {
        return false;
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let Ok(fd) = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        flags,
        SockProtocol::Icmp,
    )
    .or_else(|_| {
        socket::socket(
            AddressFamily::Inet,
            SockType::Raw,
            flags,
            SockProtocol::Icmp,
        )
    }) else {
        return false;
    };
    let to = SockaddrIn::from(std::net::SocketAddrV4::new(v4, 0));
    if socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &to).is_err() {
        return false;
    }
    let Ok(socket) = UdpSocket::from_std(std::net::UdpSocket::from(fd)) else {
        return false;
    };
    let id = next_id();
    let payload = [0x5au8; 56];
    let request = nightjar::checks::icmp::codec::echo_request(false, id, id, &payload);
    if socket.send(&request).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    // A raw socket also sees the request on loopback and other hosts' replies: read until
    // ours.
    loop {
        let Ok(len) = socket.recv(&mut buf).await else {
            return false;
        };
        let raw = buf[0] >> 4 == 4;
        if let Some(reply) = nightjar::checks::icmp::codec::parse_reply(&buf[..len], false, raw)
            && reply.seq == id
        {
            return true;
        }
    }
}

fn next_id() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u16
}

async fn read_response<S>(stream: &mut S, request: &[u8]) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut response = Vec::with_capacity(512);
    if stream.read_to_end(&mut response).await.is_err() {
        return false;
    }
    response.starts_with(b"HTTP/1.1 200")
}

/// Drives `url` (blackbox_exporter's `/probe?...`) `rate` times a second for `seconds` over
/// kept-alive connections, as Prometheus scrapes do. Prints `sent ok`, where ok counts answers
/// holding `probe_success 1`.
pub fn drive(url: &str, rate: f64, seconds: f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let uri: http::Uri = url.parse().expect("drive URL");
    let authority = uri.authority().expect("URL with host:port").to_string();
    runtime.block_on(async move {
        let counts = Arc::new(Counts::default());
        let (jobs, receiver) = tokio::sync::mpsc::channel::<()>(4096);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let mut workers = Vec::new();
        for _ in 0..64 {
            let receiver = receiver.clone();
            let counts = counts.clone();
            let uri = uri.clone();
            let authority = authority.clone();
            workers.push(tokio::spawn(async move {
                let tcp = TcpStream::connect(&authority)
                    .await
                    .expect("connect to the exporter");
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .expect("HTTP handshake");
                tokio::spawn(connection);
                loop {
                    let job = receiver.lock().await.recv().await;
                    if job.is_none() {
                        return;
                    }
                    let request = http::Request::get(uri.clone())
                        .header(http::header::HOST, authority.as_str())
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let ok = match sender.send_request(request).await {
                        Ok(response) => match response.into_body().collect().await {
                            Ok(body) => {
                                let body = body.to_bytes();
                                body.windows(16).any(|w| w == b"probe_success 1\n")
                            }
                            Err(_) => false,
                        },
                        Err(_) => false,
                    };
                    counts.record(ok);
                }
            }));
        }
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        at_rate(rate, until, || {
            let _ = jobs.try_send(());
        })
        .await;
        drop(jobs);
        for worker in workers {
            let _ = worker.await;
        }
        let (ok, failed) = counts.read();
        println!("{} {ok}", ok + failed);
    });
}
