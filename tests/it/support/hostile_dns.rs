//! An in-process UDP DNS responder for answers no real server gives: a wrong ID, a truncated
//! answer with no TCP behind it, garbage, a compression-pointer loop, an oversized lie.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// What the responder answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// The query echoed as a response, with the ID off by one.
    WrongId,
    /// A response with the TC bit set; nothing listens on TCP.
    Truncated,
    /// Bytes that are not DNS.
    Garbage,
    /// An answer whose owner name is a compression pointer to itself.
    PointerLoop,
    /// 60,000 bytes claiming 5,000 answers that are not there.
    Oversized,
}

/// A running responder; stops when dropped.
pub struct HostileDns {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileDns {
    pub async fn start(answer: Answer) -> HostileDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // Bounded: a test sends a handful of queries.
            for _ in 0..1000 {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let reply = respond(answer, &buf[..n]);
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        HostileDns { addr, task }
    }
}

/// The question section's end: the header (12 bytes), the name, type and class.
fn question_end(query: &[u8]) -> usize {
    let mut idx = 12;
    while idx < query.len() && query[idx] != 0 {
        idx += usize::from(query[idx]) + 1;
    }
    (idx + 5).min(query.len())
}

fn respond(answer: Answer, query: &[u8]) -> Vec<u8> {
    let end = question_end(query);
    let mut reply = query[..end].to_vec();
    reply[2] = 0x84; // QR, AA
    reply[3] = 0x00;
    reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    match answer {
        Answer::WrongId => {
            let id = u16::from_be_bytes([reply[0], reply[1]]).wrapping_add(1);
            reply[..2].copy_from_slice(&id.to_be_bytes());
        }
        Answer::Truncated => reply[2] |= 0x02,
        Answer::Garbage => {
            let mut garbage = query[..2].to_vec();
            garbage.extend_from_slice(b"\x81\x80\x00\x05 this is not a DNS message at all");
            return garbage;
        }
        Answer::PointerLoop => {
            reply[7] = 1; // ANCOUNT = 1
            let here = reply.len() as u16;
            reply.extend_from_slice(&(0xC000 | here).to_be_bytes());
            reply.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        }
        Answer::Oversized => {
            reply[6..8].copy_from_slice(&5000u16.to_be_bytes());
            reply.resize(60_000, 0xC0);
        }
    }
    reply
}
