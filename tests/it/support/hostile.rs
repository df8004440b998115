//! In-process servers for what nginx cannot do: misbehaving peers. Each serves one behaviour
//! on 127.0.0.1 for every connection, and stops when dropped. Every loop is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a hostile server behaves once a client connects.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// A status line, then header lines forever (fast), bounded at 64 MiB.
    EndlessHeaders,
    /// A status line, then one header byte every 100 ms, bounded at 10 minutes.
    SlowHeaders,
    /// Headers promising a large body, then one byte every 100 ms.
    TrickleBody,
    /// An SSH banner in answer to the request.
    NotHttp,
    /// Reads the request, then resets the connection.
    Reset,
    /// Accepts and never writes (a TLS server stalled before its ServerHello).
    Silent,
    /// A 200 with more headers than any client should keep.
    ManyHeaders,
    /// A 200 `application/rdap+json` body of 100 MB, as fast as the client reads.
    HugeBody,
    /// A 302 to itself, forever.
    RedirectLoop,
    /// Accepts the WebSocket upgrade, then sends text messages as fast as the client reads,
    /// at most a million.
    WebSocketFlood,
    /// Accepts the WebSocket upgrade, then sends one 100 MiB text message in 64 KiB fragments,
    /// as fast as the client reads.
    WebSocketHuge,
    /// A 200 whose body is 10 GiB of zeros as one gzip stream, compressed as the client
    /// reads (a decompression bomb: about 10 MiB on the wire).
    GzipBomb,
    /// The same as one zstd frame (about 300 KiB on the wire).
    ZstdBomb,
}

/// What a decompression bomb decodes to.
pub const BOMB_DECODED: u64 = 10 * 1024 * 1024 * 1024;

/// A running hostile server.
pub struct Hostile {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    pub async fn start(behaviour: Behaviour) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hostile server");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, behaviour));
            }
        });
        Hostile { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn read_request(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 65536 {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour) {
    match behaviour {
        Behaviour::EndlessHeaders => {
            read_request(&mut stream).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
            for _ in 0..65536 {
                if stream.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::SlowHeaders => {
            read_request(&mut stream).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ").await;
            for _ in 0..6000 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"a").await.is_err() {
                    return;
                }
            }
        }
        Behaviour::TrickleBody => {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n")
                .await;
            for _ in 0..6000 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
        Behaviour::NotHttp => {
            // After the request, so the client is waiting for a response when it comes (a
            // banner sent first may reach an idle client connection, which just closes).
            // The first bytes of the request (an HTTP head or a TLS ClientHello) will do.
            let mut first = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first)).await;
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Reset => {
            read_request(&mut stream).await;
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Behaviour::Silent => {
            let mut buf = [0u8; 1024];
            // Read and discard until the client gives up; never answer.
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await
            {
                if n == 0 {
                    return;
                }
            }
        }
        Behaviour::HugeBody => {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/rdap+json\r\nContent-Length: 104857600\r\n\r\n{\"objectClassName\":\"domain\",\"x\":\"")
                .await;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..1600 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::RedirectLoop => {
            // Keep-alive: answer every request on the connection, at most 1,000.
            for _ in 0..1000 {
                read_request(&mut stream).await;
                if stream
                    .write_all(
                        b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n",
                    )
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        Behaviour::WebSocketFlood => {
            use futures_util::SinkExt;
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            for idx in 0..1_000_000 {
                let message = tokio_tungstenite::tungstenite::Message::text(format!("noise {idx}"));
                if ws.send(message).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::WebSocketHuge => {
            websocket_huge_message(stream, |_| {}).await;
        }
        Behaviour::ManyHeaders => {
            read_request(&mut stream).await;
            let mut head = String::from("HTTP/1.1 200 OK\r\n");
            for idx in 0..100_000 {
                head.push_str(&format!("X-H{idx}: v\r\n"));
            }
            head.push_str("Content-Length: 0\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
        }
        Behaviour::GzipBomb | Behaviour::ZstdBomb => {
            use async_compression::Level;
            use async_compression::tokio::bufread::{GzipEncoder, ZstdEncoder};
            read_request(&mut stream).await;
            let coding = if matches!(behaviour, Behaviour::GzipBomb) {
                "gzip"
            } else {
                "zstd"
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {coding}\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Made as the client reads: nothing is held but the encoder's window.
            let zeros = tokio::io::BufReader::new(tokio::io::repeat(0).take(BOMB_DECODED));
            let mut body: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = if coding == "gzip"
            {
                Box::pin(GzipEncoder::with_quality(zeros, Level::Fastest))
            } else {
                Box::pin(ZstdEncoder::with_quality(zeros, Level::Fastest))
            };
            // Written a kilobyte at a time, so the first bytes come at once (a larger read
            // of the encoder would compress hundreds of megabytes first).
            let mut chunk = [0u8; 1024];
            while let Ok(n) = body.read(&mut chunk).await {
                if n == 0 || stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A TLS server presenting a chain of 100 certificates (the leaf and 99 intermediates under
/// the returned root), for what a client does with a chain no real server sends.
pub struct LongChain {
    pub addr: SocketAddr,
    /// The root, PEM, for `ca_file`.
    pub ca: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for LongChain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LongChain {
    pub async fn start() -> LongChain {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_params = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("long chain root");
        let root = root_params.self_signed(&root_key).unwrap();
        let ca = dir.path().join("root.pem");
        std::fs::write(&ca, root.pem()).unwrap();
        let mut issuer = rcgen::Issuer::new(root_params, root_key);
        let mut intermediates = Vec::new();
        for idx in 0..99 {
            let key = KeyPair::generate().unwrap();
            let params = ca_params(&format!("intermediate {idx}"));
            let cert = params.signed_by(&key, &issuer).unwrap();
            intermediates.push(cert.der().clone());
            issuer = rcgen::Issuer::new(params, key);
        }
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let mut chain = vec![leaf.der().clone()];
        chain.extend(intermediates.into_iter().rev());
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(mut tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                    {
                        read_request_tls(&mut tls).await;
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                            .await;
                    }
                });
            }
        });
        LongChain {
            addr,
            ca,
            task,
            _dir: dir,
        }
    }
}

async fn read_request_tls(stream: &mut tokio_rustls::server::TlsStream<TcpStream>) {
    let mut buf = vec![0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
}

/// Accepts a WebSocket upgrade on `stream`, then sends one 100 MiB text message in 64 KiB
/// fragments (text first, continuation frames after, FIN on the last; 64-bit lengths) as
/// fast as the client reads, telling `wrote` the size of each frame written.
pub async fn websocket_huge_message(stream: TcpStream, mut wrote: impl FnMut(usize)) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut stream = ws.into_inner();
    let chunk = vec![b'x'; 64 * 1024];
    for idx in 0..1600 {
        let fin = if idx == 1599 { 0x80 } else { 0 };
        let opcode = if idx == 0 { 0x1 } else { 0x0 };
        let mut frame = vec![fin | opcode, 127];
        frame.extend_from_slice(&(chunk.len() as u64).to_be_bytes());
        frame.extend_from_slice(&chunk);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
        wrote(frame.len());
    }
}
