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
    /// An SSH banner instead of HTTP.
    NotHttp,
    /// Reads the request, then resets the connection.
    Reset,
    /// Accepts and never writes (a TLS server stalled before its ServerHello).
    Silent,
    /// A 200 with more headers than any client should keep.
    ManyHeaders,
}

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
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                .await;
            read_request(&mut stream).await;
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
        Behaviour::ManyHeaders => {
            read_request(&mut stream).await;
            let mut head = String::from("HTTP/1.1 200 OK\r\n");
            for idx in 0..100_000 {
                head.push_str(&format!("X-H{idx}: v\r\n"));
            }
            head.push_str("Content-Length: 0\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
        }
    }
}
