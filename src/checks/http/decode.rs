//! `compression`: the response body decoded as the check says (gzip, br, deflate, zstd),
//! streamed, and capped on the decoded side.
//!
//! As blackbox_exporter does, the body is decoded with the configured algorithm whatever the
//! response's `Content-Encoding` says (the check asserts that the server compresses); a body
//! that does not decode fails with reason `body`, and the detail names what the response said
//! it was. Decoding pulls compressed bytes only as decoded output is wanted, 16 KiB at a time,
//! and stops one byte past the cap, so a decompression bomb costs at most the cap in memory
//! and the work of producing that many bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{
    BrotliDecoder, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
};
use bytes::{Buf, Bytes};
use http::header::CONTENT_ENCODING;
use http_body::Body;
use hyper::body::Incoming;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::{Received, classify_hyper, show_url};
use crate::result::{Failure, FailureReason, HttpDetails};

/// The largest zstd window accepted: 8 MiB, the limit RFC 9659 sets for the `zstd` content
/// coding (zstd's own default would let a frame ask for 128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Decoded bytes asked of the decoder at a time.
const CHUNK: usize = 16 * 1024;

/// How a check asks for and decodes its response body (`compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `identity`: asked for uncompressed, read as it comes.
    Identity,
    /// `gzip` (RFC 1952; several members are read one after another).
    Gzip,
    /// `br`, Brotli (RFC 7932).
    Br,
    /// `deflate`: zlib-wrapped as RFC 9110 says, or raw DEFLATE as some servers (and
    /// blackbox_exporter) take it; told apart by the zlib header.
    Deflate,
    /// `zstd` (RFC 8878), with a window of at most 8 MiB (RFC 9659).
    Zstd,
}

impl Compression {
    /// Every algorithm, in the order the README lists them.
    pub const ALL: [Compression; 5] = [
        Compression::Gzip,
        Compression::Br,
        Compression::Deflate,
        Compression::Zstd,
        Compression::Identity,
    ];

    /// The name in the configuration and in `Accept-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Identity => "identity",
            Compression::Gzip => "gzip",
            Compression::Br => "br",
            Compression::Deflate => "deflate",
            Compression::Zstd => "zstd",
        }
    }

    /// The algorithm named `name` (case-insensitive), if it is one.
    pub fn parse(name: &str) -> Option<Compression> {
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
    }
}

/// What reading the wire side saw: compressed bytes, and the transport's error if it broke.
#[derive(Default)]
struct WireStats {
    bytes: u64,
    error: Option<hyper::Error>,
}

/// The response body as an `AsyncBufRead` of its compressed bytes, counted.
struct WireReader<'a> {
    body: &'a mut Incoming,
    chunk: Bytes,
    stats: &'a mut WireStats,
}

impl AsyncBufRead for WireReader<'_> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while !this.chunk.has_remaining() {
            match Pin::new(&mut *this.body).poll_frame(cx) {
                Poll::Ready(None) => break,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.stats.bytes += data.len() as u64;
                        this.chunk = data;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    let message = error.to_string();
                    this.stats.error = Some(error);
                    return Poll::Ready(Err(io::Error::other(message)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(this.chunk.chunk()))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().chunk.advance(amt);
    }
}

impl AsyncRead for WireReader<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(available)) => available,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

/// Whether `head` starts a zlib stream (RFC 1950: deflate method, a window of at most
/// 32 KiB, and the header check).
fn is_zlib_header(head: &[u8]) -> bool {
    match head {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// What bounds a decoded body.
struct Caps {
    /// `max_body`: decoding stops past it and the run fails.
    pub max_body: u64,
    /// `expect.max_size`, on the decoded body.
    pub max_size: Option<u64>,
}

/// A body read through its decoder.
struct Decoded {
    /// The decoded body (at most the cap), or why there is none.
    pub body: Result<Vec<u8>, Failure>,
    /// Compressed bytes read from the wire.
    pub wire: u64,
    /// Bytes decoded, up to where decoding stopped (for
    /// `probe_http_uncompressed_body_length`).
    pub decoded: u64,
}

/// The rest of a response whose head is `parts`: its body read through `compression`'s
/// decoder, the transfer timed and both lengths recorded.
pub(crate) async fn finish(
    spec: &super::HttpSpec,
    compression: Compression,
    url: &Url,
    parts: http::response::Parts,
    mut incoming: Incoming,
    deadline: Instant,
    details: &mut HttpDetails,
) -> Result<Received, Failure> {
    let transfer_start = Instant::now();
    let caps = Caps {
        max_body: spec.max_body,
        max_size: spec.expect.max_size,
    };
    let decoded = read_decoded(
        compression,
        &mut incoming,
        &parts.headers,
        &caps,
        url,
        deadline,
    )
    .await;
    details.transfer += transfer_start.elapsed();
    details.content_length = Some(decoded.wire);
    details.uncompressed_length = Some(decoded.decoded);
    let body = decoded.body?;
    Ok(Received {
        status: parts.status,
        headers: parts.headers,
        total_len: body.len() as u64,
        body,
        version: parts.version,
    })
}

/// Reads and decodes the body of a response from `url` with `compression`, within `caps`
/// and before `deadline`.
async fn read_decoded(
    compression: Compression,
    incoming: &mut Incoming,
    headers: &http::HeaderMap,
    caps: &Caps,
    url: &Url,
    deadline: Instant,
) -> Decoded {
    let mut stats = WireStats::default();
    let mut decoded = 0;
    let body = decode(
        compression,
        incoming,
        caps,
        deadline,
        &mut stats,
        &mut decoded,
    )
    .await;
    let body = body.map_err(|stop| match stop {
        Stop::Io(error) => match &stats.error {
            Some(hyper_error) => classify_hyper(hyper_error, "reading the body from", url),
            None => corrupt(&error, compression, headers, url, decoded),
        },
        Stop::Timeout => timed_out(url, stats.bytes, decoded),
        Stop::OverCap => over_cap(caps, url, compression, decoded, stats.bytes),
    });
    Decoded {
        body,
        wire: stats.bytes,
        decoded,
    }
}

/// Why decoding stopped early.
enum Stop {
    Io(io::Error),
    Timeout,
    OverCap,
}

async fn decode(
    compression: Compression,
    incoming: &mut Incoming,
    caps: &Caps,
    deadline: Instant,
    stats: &mut WireStats,
    decoded: &mut u64,
) -> Result<Vec<u8>, Stop> {
    let mut wire = WireReader {
        body: incoming,
        chunk: Bytes::new(),
        stats,
    };
    // An empty body (HEAD, 204, 304) decodes to nothing.
    let head = match timeout_at(deadline, wire_head(&mut wire)).await {
        Ok(Ok(head)) => head,
        Ok(Err(error)) => return Err(Stop::Io(error)),
        Err(_) => return Err(Stop::Timeout),
    };
    let Some(zlib) = head else {
        return Ok(Vec::new());
    };
    let mut reader: Pin<Box<dyn AsyncRead + Send + '_>> = match compression {
        Compression::Identity => Box::pin(wire),
        Compression::Gzip => {
            let mut decoder = GzipDecoder::new(wire);
            decoder.multiple_members(true);
            Box::pin(decoder)
        }
        Compression::Br => Box::pin(BrotliDecoder::new(wire)),
        Compression::Deflate if zlib => Box::pin(ZlibDecoder::new(wire)),
        Compression::Deflate => Box::pin(DeflateDecoder::new(wire)),
        Compression::Zstd => {
            let params = [async_compression::zstd::DParameter::window_log_max(
                ZSTD_WINDOW_LOG_MAX,
            )];
            let mut decoder = ZstdDecoder::with_params(wire, &params);
            decoder.multiple_members(true);
            Box::pin(decoder)
        }
    };
    let limit = caps
        .max_size
        .map_or(caps.max_body, |size| size.min(caps.max_body));
    let mut body: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        // One byte past the limit is enough to know it is over.
        let room = usize::try_from((limit + 1).saturating_sub(body.len() as u64))
            .unwrap_or(usize::MAX)
            .clamp(1, CHUNK);
        let n = match timeout_at(deadline, reader.read(&mut buf[..room])).await {
            Ok(Ok(n)) => n,
            Ok(Err(error)) => return Err(Stop::Io(error)),
            Err(_) => return Err(Stop::Timeout),
        };
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&buf[..n]);
        *decoded = body.len() as u64;
        if *decoded > limit {
            return Err(Stop::OverCap);
        }
    }
}

/// Waits for the first bytes of the body: `None` when it is empty, else whether they start a
/// zlib stream.
async fn wire_head(wire: &mut WireReader<'_>) -> io::Result<Option<bool>> {
    std::future::poll_fn(|cx| {
        Pin::new(&mut *wire)
            .poll_fill_buf(cx)
            .map_ok(|head| (!head.is_empty()).then(|| is_zlib_header(head)))
    })
    .await
}

/// What the response said its coding was, for a failure's detail.
fn said(headers: &http::HeaderMap) -> String {
    let codings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_string())
        .collect();
    if codings.is_empty() {
        "the response has no Content-Encoding".to_string()
    } else {
        format!("the response says Content-Encoding: {}", codings.join(", "))
    }
}

fn corrupt(
    error: &io::Error,
    compression: Compression,
    headers: &http::HeaderMap,
    url: &Url,
    decoded: u64,
) -> Failure {
    let error = match error.kind() {
        io::ErrorKind::UnexpectedEof => "it ends before the compressed stream does".to_string(),
        _ => error.to_string(),
    };
    let after = if decoded > 0 {
        format!(" after {decoded} decoded bytes")
    } else {
        String::new()
    };
    Failure::new(
        FailureReason::Body,
        format!(
            "the body of {} does not decode as {} (compression = \"{}\"; {}){after}: {error}",
            show_url(url),
            compression.as_str(),
            compression.as_str(),
            said(headers),
        ),
    )
}

fn timed_out(url: &Url, wire: u64, decoded: u64) -> Failure {
    Failure::new(
        FailureReason::Timeout,
        format!(
            "timed out reading the body from {} after {wire} compressed bytes ({decoded} decoded)",
            show_url(url)
        ),
    )
}

fn over_cap(caps: &Caps, url: &Url, compression: Compression, decoded: u64, wire: u64) -> Failure {
    let (key, cap) = match caps.max_size {
        Some(size) if size < caps.max_body => ("expect.max_size", size),
        _ => ("max_body", caps.max_body),
    };
    let what = if compression == Compression::Identity {
        "body"
    } else {
        "decoded body"
    };
    Failure::new(
        FailureReason::TooLarge,
        format!(
            "{what} of {} over {key} ({cap} bytes): stopped at {decoded} bytes from {wire} {} bytes",
            show_url(url),
            if compression == Compression::Identity {
                "received"
            } else {
                "compressed"
            }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for compression in Compression::ALL {
            assert_eq!(Compression::parse(compression.as_str()), Some(compression));
        }
        assert_eq!(Compression::parse("GZIP"), Some(Compression::Gzip));
        assert_eq!(Compression::parse("lz4"), None);
    }

    #[test]
    fn zlib_header_is_told_from_raw_deflate() {
        // zlib's default header, and its best-compression one.
        assert!(is_zlib_header(&[0x78, 0x9c]));
        assert!(is_zlib_header(&[0x78, 0xda]));
        // A raw DEFLATE block (final, fixed Huffman) and an empty input.
        assert!(!is_zlib_header(&[0x4b, 0x4c]));
        assert!(!is_zlib_header(&[0x78]));
    }
}
