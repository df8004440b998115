//! The `http` check: one request (plus redirects) over a fresh connection per run, timed in
//! the five phases blackbox_exporter users know (resolve, connect, tls, processing,
//! transfer), then checked against the expectations.
//!
//! Success means: every hop connected, the final response arrived before the deadline, and
//! status, headers, body, JSON and duration expectations all held.

pub(crate) mod config;
mod decode;
pub mod oauth2;
pub mod proxy;
mod rules;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use regex::Regex;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::CheckCtx;
use crate::net::{self, IpPreference};
use crate::result::{Details, Failure, FailureReason, HttpDetails, Status};
pub use decode::Compression;
pub use rules::{CelExpect, HeaderRule};

/// The reasons an `http` check can produce.
pub const REASONS: &[FailureReason] = &[
    FailureReason::Timeout,
    FailureReason::Dns,
    FailureReason::Connect,
    FailureReason::Tls,
    FailureReason::CertInvalid,
    FailureReason::Closed,
    FailureReason::Protocol,
    FailureReason::Redirect,
    FailureReason::Status,
    FailureReason::Body,
    FailureReason::Header,
    FailureReason::Json,
    FailureReason::TooSlow,
    FailureReason::TooLarge,
    FailureReason::HttpVersion,
    FailureReason::Auth,
    FailureReason::Proxy,
];

/// A validated `http` check: the URL requested first, and the rest of the request.
///
/// The rest is shared: the targets of a template that places its target in the URL only
/// have one [`HttpOptions`] between them (see `config::template`), so 50,000 targets hold
/// 50,000 URLs and one request. Its fields read through the spec (`spec.method`); writing one
/// copies it first if it is shared.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The URL requested first.
    pub url: Url,
    /// Everything else.
    pub options: Arc<HttpOptions>,
}

impl HttpSpec {
    /// A spec requesting `url` with `options`.
    pub fn new(url: Url, options: HttpOptions) -> HttpSpec {
        HttpSpec {
            url,
            options: Arc::new(options),
        }
    }

    /// A request nightjar makes for itself; see [`HttpOptions::internal`].
    pub fn internal(method: Method, url: Url, tls: TlsOptions) -> HttpSpec {
        HttpSpec::new(url, HttpOptions::internal(method, tls))
    }
}

impl std::ops::Deref for HttpSpec {
    type Target = HttpOptions;

    fn deref(&self) -> &HttpOptions {
        &self.options
    }
}

impl std::ops::DerefMut for HttpSpec {
    fn deref_mut(&mut self) -> &mut HttpOptions {
        Arc::make_mut(&mut self.options)
    }
}

/// An `http` request but its URL: see [`HttpSpec`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Request method.
    pub method: Method,
    /// Extra request headers (secrets already substituted).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request body.
    pub body: Option<Bytes>,
    /// Whether redirects are followed.
    pub follow_redirects: bool,
    /// How many redirects are followed before the check fails.
    pub max_redirects: u32,
    /// Address family preference.
    pub ip: IpPreference,
    /// Which HTTP version to speak.
    pub version: HttpVersionPref,
    /// TLS for `https` URLs.
    pub tls: TlsOptions,
    /// At most this many body bytes are kept for body assertions; the rest is read and
    /// discarded.
    pub max_body: u64,
    /// What the response must look like.
    pub expect: HttpExpect,
    /// `compression`: the algorithm asked for (the reader adds it to `Accept-Encoding` unless
    /// the check sets that header) and decoded whatever the response says; `None` reads the
    /// body as it comes.
    pub compression: Option<Compression>,
    /// Proxies the requests go through (`proxy_url`, `proxy_from_environment`).
    pub proxy: Option<Arc<proxy::ProxyOptions>>,
    /// OAuth2 client credentials: a bearer token fetched, cached and sent.
    pub oauth2: Option<Arc<oauth2::OAuth2>>,
}

impl HttpOptions {
    /// A request nightjar makes for itself (DNS over HTTPS, RDAP, remote write, a Prometheus
    /// query): no headers, no body, no redirects followed, either address family, HTTP/2 when
    /// the server offers it, 64 KiB of body kept, nothing expected. Callers set what differs
    /// with struct update syntax (`HttpOptions { body, ..HttpOptions::internal(..) }`).
    pub fn internal(method: Method, tls: TlsOptions) -> HttpOptions {
        HttpOptions {
            method,
            headers: Vec::new(),
            body: None,
            follow_redirects: false,
            max_redirects: 0,
            ip: IpPreference::default(),
            version: HttpVersionPref::Auto,
            tls,
            max_body: 64 * 1024,
            expect: HttpExpect::default(),
            compression: None,
            proxy: None,
            oauth2: None,
        }
    }
}

/// A TLS protocol version, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<TlsVersion> {
        match name {
            "TLS 1.2" => Some(TlsVersion::Tls12),
            "TLS 1.3" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

/// How a request's TLS is set up: a check's `tls` table, built at load time, or an internal
/// client's.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The client configuration: any chain accepted during the handshake (the verdict is
    /// taken afterwards), client certificate, ALPN.
    pub client: Arc<rustls::ClientConfig>,
    /// Judges the presented chain against the configured roots, right after the handshake.
    pub verifier: Arc<rustls::client::WebPkiServerVerifier>,
    /// Name sent in SNI and verified against the certificate, instead of the target's host.
    /// Always set for a `tls` check and a DNS-over-TLS server: their readers resolve it.
    pub server_name: Option<ServerName<'static>>,
    /// Go on when the chain or name does not verify (the verdict is still reported).
    pub insecure_skip_verify: bool,
    /// `tls.min_version`: the client offers only this version and later ones.
    pub min_version: Option<TlsVersion>,
}

impl TlsOptions {
    /// A client whose chain must verify for the URL's host.
    pub fn verified(
        client: Arc<rustls::ClientConfig>,
        verifier: Arc<rustls::client::WebPkiServerVerifier>,
    ) -> TlsOptions {
        TlsOptions {
            client,
            verifier,
            server_name: None,
            insecure_skip_verify: false,
            min_version: None,
        }
    }

    /// The name sent in SNI and verified against the certificate: `server_name`, or else
    /// `host`'s (a domain name or an IP address).
    pub(crate) fn name_for(&self, host: &str) -> Result<Cow<'_, ServerName<'static>>, Failure> {
        if let Some(name) = &self.server_name {
            return Ok(Cow::Borrowed(name));
        }
        match ServerName::try_from(host) {
            Ok(name) => Ok(Cow::Owned(name.to_owned())),
            Err(_) => Err(Failure::new(
                FailureReason::Tls,
                format!("{host} is not a valid TLS server name"),
            )),
        }
    }
}

/// Which HTTP version a check speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersionPref {
    /// HTTP/2 when the server offers it by ALPN, else HTTP/1.1; plain `http` uses HTTP/1.1.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (by ALPN over TLS, by prior knowledge over plain `http`).
    Http2,
}

/// Expectations on the response.
#[derive(Debug, Clone, Default)]
pub struct HttpExpect {
    /// Accepted status codes; empty means any 2xx.
    pub status: Vec<StatusMatch>,
    /// Strings the body must contain.
    pub body_contains: Vec<String>,
    /// Strings the body must not contain.
    pub body_not_contains: Vec<String>,
    /// Regexes the body must match.
    pub body_matches: Vec<Regex>,
    /// Regexes the body must not match.
    pub body_not_matches: Vec<Regex>,
    /// Headers that must be present with a value matching the regex.
    pub headers: Vec<(HeaderName, Regex)>,
    /// JSON pointer expectations on the body.
    pub json: Vec<JsonExpect>,
    /// The whole run must take at most this long.
    pub max_duration: Option<Duration>,
    /// The body must be at most this many bytes.
    pub max_size: Option<u64>,
    /// Whether the final hop must (true) or must not (false) use TLS.
    pub tls: Option<bool>,
    /// HTTP versions the final response may have; empty means any.
    pub http_versions: Vec<Version>,
    /// Header rules that must hold: a value matching (`allow_missing` or not).
    pub headers_match: Vec<HeaderRule>,
    /// Header rules that must not hold: no value may match.
    pub headers_not_match: Vec<HeaderRule>,
    /// A CEL expression over the JSON body that must be true.
    pub json_cel: Option<CelExpect>,
}

/// One accepted status: an exact code or a class like `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Exactly this code.
    Code(u16),
    /// Any code in `N00..=N99`.
    Class(u16),
}

impl StatusMatch {
    fn matches(self, code: u16) -> bool {
        match self {
            StatusMatch::Code(expected) => code == expected,
            StatusMatch::Class(class) => code / 100 == class,
        }
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(code) => write!(f, "{code}"),
            StatusMatch::Class(class) => write!(f, "{class}xx"),
        }
    }
}

/// An expectation on the value at a JSON pointer.
#[derive(Debug, Clone)]
pub struct JsonExpect {
    /// RFC 6901 pointer, e.g. `/status` or `/items/0/id`.
    pub pointer: String,
    /// What the value must be.
    pub test: JsonTest,
}

/// What a JSON value must be.
#[derive(Debug, Clone)]
pub enum JsonTest {
    /// Equal to this value (numbers compare by value).
    Equals(serde_json::Value),
    /// A string (or a number or boolean, in its JSON text) matching this regex.
    Matches(Regex),
    /// Present at all.
    Exists,
}

/// Runs an `http` check once.
pub async fn run(spec: &HttpSpec, ctx: &CheckCtx) -> (Status, Details) {
    let mut details = HttpDetails::default();
    let status = oauth2::scrub(spec, run_inner(spec, ctx, &mut details).await);
    (status, Details::Http(details))
}

/// One received response, head and (capped) body.
pub(crate) struct Received {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The body, at most `max_body` bytes of it.
    pub body: Vec<u8>,
    /// Body bytes received in all.
    pub total_len: u64,
    /// The response's HTTP version.
    pub version: Version,
}

async fn run_inner(spec: &HttpSpec, ctx: &CheckCtx, details: &mut HttpDetails) -> Status {
    let started = Instant::now();
    match fetch(spec, ctx, details).await {
        Ok(received) => evaluate(&spec.expect, &received, started.elapsed(), details),
        Err(failure) => failure.into(),
    }
}

/// Sends the request, following redirects as the spec says, and returns the final response.
/// Used by the `http` check and by other checks that speak HTTP (RDAP).
pub(crate) async fn fetch(
    spec: &HttpSpec,
    ctx: &CheckCtx,
    details: &mut HttpDetails,
) -> Result<Received, Failure> {
    fetch_with_cookies(spec, ctx, details, None).await
}

/// [`fetch`], with a cookie jar applied to every hop: its cookies are sent, and every
/// `Set-Cookie`, redirects included, is stored.
pub(crate) async fn fetch_with_cookies(
    spec: &HttpSpec,
    ctx: &CheckCtx,
    details: &mut HttpDetails,
    mut jar: Option<&mut cookie_store::CookieStore>,
) -> Result<Received, Failure> {
    let mut hop = Hop {
        url: Cow::Borrowed(&spec.url),
        method: spec.method.clone(),
        body: spec.body.clone(),
        headers: Cow::Borrowed(&spec.headers),
    };
    let bearer = oauth2::bearer(spec, ctx).await?;
    if let Some(bearer) = &bearer {
        hop.headers
            .to_mut()
            .push((AUTHORIZATION, bearer.header.clone()));
    }
    loop {
        let headers = with_cookies(&hop.headers, jar.as_deref(), &hop.url);
        let response = exchange(
            spec,
            ctx,
            &hop.url,
            &hop.method,
            &headers,
            hop.body.clone(),
            details,
        )
        .await?;
        if let Some(jar) = jar.as_deref_mut() {
            store_cookies(jar, &response, &hop.url);
        }
        let code = response.status.as_u16();
        if !(spec.follow_redirects && is_redirect(code)) {
            oauth2::answered(spec, bearer.as_ref(), code);
            return Ok(response);
        }
        let next = redirect_target(spec, &hop.url, code, &response, details.redirects)?;
        hop.redirect(code, next)?;
        details.redirects += 1;
    }
}

/// Whether `code` is a redirect that `follow_redirects` follows.
fn is_redirect(code: u16) -> bool {
    matches!(code, 301 | 302 | 303 | 307 | 308)
}

/// The decoder a response with `status` is read through: `compression`, unless it is a
/// redirect that will be followed (not the response the check judges, and discarded as
/// blackbox_exporter's client discards it).
fn decoded_with(spec: &HttpSpec, status: StatusCode) -> Option<Compression> {
    let followed = spec.follow_redirects && is_redirect(status.as_u16());
    spec.compression.filter(|_| !followed)
}

/// What a hop sends: the first hop's as the spec says, changed by each redirect followed.
struct Hop<'a> {
    url: Cow<'a, Url>,
    method: Method,
    body: Option<Bytes>,
    headers: Cow<'a, [(HeaderName, HeaderValue)]>,
}

impl Hop<'_> {
    /// Turns this hop into the one a `code` redirect to `next` asks for.
    fn redirect(&mut self, code: u16, next: Url) -> Result<(), Failure> {
        // 303, and 301/302 after a POST, turn into a GET without a body, as browsers do.
        if code == 303 || (matches!(code, 301 | 302) && self.method == Method::POST) {
            self.method = Method::GET;
            self.body = None;
        }
        // Credentials never follow a redirect to another origin (as browsers and curl do):
        // Authorization, Proxy-Authorization and Cookie headers, and every header that holds
        // a secret, stay behind, for the rest of the redirects. The jar's cookies still go
        // where their own domain rules send them. A body (a login form, an API key in JSON)
        // is not re-sent there either: a 307 or 308 (or a 301/302 of a method other than
        // POST) that would carry one to another origin fails the run.
        if next.origin() != self.url.origin() {
            if self.body.as_ref().is_some_and(|body| !body.is_empty()) {
                return Err(Failure::new(
                    FailureReason::Redirect,
                    format!(
                        "{code} redirect to another origin ({}); the request body is not re-sent there",
                        next.origin().ascii_serialization()
                    ),
                ));
            }
            self.headers.to_mut().retain(|(name, value)| {
                !value.is_sensitive()
                    && name != AUTHORIZATION
                    && name != PROXY_AUTHORIZATION
                    && name != COOKIE
            });
        }
        self.url = Cow::Owned(next);
        Ok(())
    }
}

/// The headers of a hop to `url`: `headers`, with the jar's cookies for `url` as the one
/// `Cookie` header (in place of a configured one) when it has any.
fn with_cookies<'h>(
    headers: &'h [(HeaderName, HeaderValue)],
    jar: Option<&cookie_store::CookieStore>,
    url: &Url,
) -> Cow<'h, [(HeaderName, HeaderValue)]> {
    let Some(jar) = jar else {
        return Cow::Borrowed(headers);
    };
    let mut cookies = String::new();
    for (name, value) in jar.get_request_values(url) {
        if !cookies.is_empty() {
            cookies.push_str("; ");
        }
        cookies.push_str(name);
        cookies.push('=');
        cookies.push_str(value);
    }
    if cookies.is_empty() {
        return Cow::Borrowed(headers);
    }
    let Ok(mut value) = HeaderValue::from_str(&cookies) else {
        return Cow::Borrowed(headers);
    };
    value.set_sensitive(true);
    let mut with = headers.to_vec();
    with.retain(|(name, _)| name != COOKIE);
    with.push((COOKIE, value));
    Cow::Owned(with)
}

/// Stores every `Set-Cookie` of a response from `url` in the jar.
fn store_cookies(jar: &mut cookie_store::CookieStore, response: &Received, url: &Url) {
    for set_cookie in response.headers.get_all(http::header::SET_COOKIE) {
        if let Ok(text) = set_cookie.to_str() {
            let _ = jar.parse(text, url);
        }
    }
}

/// Where a `code` redirect from `url` leads: its `Location`, resolved against `url`. Fails
/// when there is no usable one, or when `redirects` already followed are the most allowed.
fn redirect_target(
    spec: &HttpSpec,
    url: &Url,
    code: u16,
    response: &Received,
    redirects: u32,
) -> Result<Url, Failure> {
    let Some(location) = response.headers.get(LOCATION).and_then(|v| v.to_str().ok()) else {
        return Err(Failure::new(
            FailureReason::Redirect,
            format!(
                "{} {code} redirect has no usable Location header",
                show_url(url)
            ),
        ));
    };
    let next = match url.join(location) {
        Ok(next) if matches!(next.scheme(), "http" | "https") => next,
        _ => {
            return Err(Failure::new(
                FailureReason::Redirect,
                format!("{} redirected to an unusable location", show_url(url)),
            ));
        }
    };
    if redirects >= spec.max_redirects {
        return Err(Failure::new(
            FailureReason::Redirect,
            format!(
                "stopped after {redirects} redirects (max_redirects = {}); the last pointed to {}",
                spec.max_redirects,
                show_url(&next)
            ),
        ));
    }
    Ok(next)
}

fn timed_out(phase: &str, url: &Url) -> Failure {
    Failure::new(
        FailureReason::Timeout,
        format!("timed out {phase} {}", show_url(url)),
    )
}

/// One request/response over a fresh connection.
async fn exchange(
    spec: &HttpSpec,
    ctx: &CheckCtx,
    url: &Url,
    method: &Method,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<Bytes>,
    details: &mut HttpDetails,
) -> Result<Received, Failure> {
    let deadline = ctx.deadline;
    let https = url.scheme() == "https";
    let host = url
        .host()
        .ok_or_else(|| Failure::new(FailureReason::Protocol, "URL has no host"))?;
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });

    let host_text = match host {
        url::Host::Domain(name) => name.to_string(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    let target = show_url(url);
    let (tcp, remote, forward) =
        proxy::connect(spec, ctx, url, &host_text, port, &target, details).await?;
    details.remote_addr = Some(remote);

    // TLS, then HTTP.
    details.tls_used = https;
    if let Some(forward) = forward {
        let hop = (method, headers, body);
        return proxy::forward(spec, ctx, url, hop, tcp, forward, details).await;
    }
    if !https {
        let use_h2 = spec.version == HttpVersionPref::Http2;
        return request(
            spec, ctx, url, method, headers, body, tcp, use_h2, None, details,
        )
        .await;
    }
    let server_name = spec.tls.name_for(&host_text)?;
    let target = format!("{} at {remote}", show_url(url));
    let (tls, info) = super::tls_handshake(
        &spec.tls,
        &server_name,
        tcp,
        deadline,
        &target,
        &mut details.tls,
    )
    .await?;
    details.tls_version = Some(info.version);
    let verified = super::require_verified(&info, spec.tls.insecure_skip_verify, &target);
    details.tls_info = Some(info);
    verified?;
    let (_, session) = tls.get_ref();
    let use_h2 = session.alpn_protocol() == Some(b"h2");
    if spec.version == HttpVersionPref::Http2 && !use_h2 {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!(
                "{} did not negotiate HTTP/2 by ALPN (http_version = \"2\")",
                show_url(url)
            ),
        ));
    }
    request(
        spec, ctx, url, method, headers, body, tls, use_h2, None, details,
    )
    .await
}

/// Aborts the spawned connection driver when the exchange is over.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The request half of an HTTP/1.1 or HTTP/2 connection.
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> hyper::Result<http::Response<hyper::body::Incoming>> {
        match self {
            Sender::Http1(sender) => sender.send_request(request).await,
            Sender::Http2(sender) => sender.send_request(request).await,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn request<S>(
    spec: &HttpSpec,
    ctx: &CheckCtx,
    url: &Url,
    method: &Method,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<Bytes>,
    stream: S,
    use_h2: bool,
    absolute: Option<&str>,
    details: &mut HttpDetails,
) -> Result<Received, Failure>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let deadline = ctx.deadline;
    let io = TokioIo::new(stream);
    let request = build_request(url, method, headers, body, use_h2, ctx.user_agent)?;
    let request = proxy::absolute_form(request, url, absolute)?;
    let processing_start = Instant::now();
    let doing = if use_h2 {
        "starting HTTP/2 with"
    } else {
        "starting HTTP/1.1 with"
    };
    let (mut sender, driver) = match timeout_at(deadline, handshake(io, use_h2)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => return Err(classify_hyper(&error, doing, url)),
        Err(_) => return Err(timed_out(doing, url)),
    };
    // The connection task ends with this exchange, whatever the outcome.
    let _driver = AbortOnDrop(driver);
    let sent = timeout_at(deadline, sender.send(request)).await;
    finish_response(spec, url, sent, processing_start, deadline, details).await
}

/// Starts HTTP/1.1 or HTTP/2 on `io` and spawns the task that drives the connection.
async fn handshake<S>(
    io: TokioIo<S>,
    use_h2: bool,
) -> hyper::Result<(Sender, tokio::task::JoinHandle<()>)>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if use_h2 {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((Sender::Http2(sender), driver))
    } else {
        // hyper's defaults (at most 100 headers, a head of about 400 KiB) bound memory; a
        // larger head is a failure, not something to buffer.
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((Sender::Http1(sender), driver))
    }
}

async fn finish_response(
    spec: &HttpSpec,
    url: &Url,
    sent: Result<
        Result<http::Response<hyper::body::Incoming>, hyper::Error>,
        tokio::time::error::Elapsed,
    >,
    processing_start: Instant,
    deadline: Instant,
    details: &mut HttpDetails,
) -> Result<Received, Failure> {
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            details.processing += processing_start.elapsed();
            return Err(classify_hyper(&error, "waiting for the response from", url));
        }
        Err(_) => {
            details.processing += processing_start.elapsed();
            return Err(timed_out("waiting for the response headers from", url));
        }
    };
    details.processing += processing_start.elapsed();
    let (parts, mut incoming) = response.into_parts();
    details.status_code = Some(parts.status.as_u16());
    details.http_version = Some(version_number(parts.version));
    details.last_modified = last_modified(&parts.headers);
    details.declared_length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse().ok());

    if let Some(compression) = decoded_with(spec, parts.status) {
        return decode::finish(spec, compression, url, parts, incoming, deadline, details).await;
    }
    let transfer_start = Instant::now();
    let cap = usize::try_from(spec.max_body).unwrap_or(usize::MAX);
    let mut kept: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    loop {
        let frame = match timeout_at(deadline, incoming.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(error))) => {
                details.transfer += transfer_start.elapsed();
                details.content_length = Some(total);
                return Err(classify_hyper(&error, "reading the body from", url));
            }
            Err(_) => {
                details.transfer += transfer_start.elapsed();
                details.content_length = Some(total);
                return Err(Failure::new(
                    FailureReason::Timeout,
                    format!(
                        "timed out reading the body from {} after {total} bytes (status {})",
                        show_url(url),
                        parts.status.as_u16()
                    ),
                ));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if kept.len() < cap {
            let room = cap - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
        if let Some(max_size) = spec.expect.max_size
            && total > max_size
        {
            details.transfer += transfer_start.elapsed();
            details.content_length = Some(total);
            return Err(Failure::new(
                FailureReason::TooLarge,
                format!(
                    "body of {} is larger than max_size ({} bytes); stopped reading at {total} bytes",
                    show_url(url),
                    max_size
                ),
            ));
        }
    }
    details.transfer += transfer_start.elapsed();
    details.content_length = Some(total);
    Ok(Received {
        status: parts.status,
        headers: parts.headers,
        body: kept,
        total_len: total,
        version: parts.version,
    })
}

fn build_request(
    url: &Url,
    method: &Method,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<Bytes>,
    use_h2: bool,
    user_agent: &'static str,
) -> Result<Request<Full<Bytes>>, Failure> {
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    // HTTP/2 takes the absolute URI (it becomes :scheme/:authority); HTTP/1.1 the path and a
    // Host header.
    let uri = if use_h2 {
        let mut absolute = url.clone();
        absolute.set_fragment(None);
        let _ = absolute.set_username("");
        let _ = absolute.set_password(None);
        absolute.to_string()
    } else {
        path_and_query
    };
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    if use_h2 {
        builder = builder.version(Version::HTTP_2);
    } else {
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => String::new(),
        };
        builder = builder.header(HOST, host);
    }
    let has_user_agent = headers.iter().any(|(name, _)| name == USER_AGENT);
    if !has_user_agent {
        builder = builder.header(USER_AGENT, user_agent);
    }
    if !url.username().is_empty() {
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode).unwrap_or_default();
        builder = builder.header(AUTHORIZATION, basic_auth(&user, &password));
    }
    for (name, value) in headers {
        if use_h2 && name == HOST {
            continue;
        }
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|error| {
            Failure::new(
                FailureReason::Protocol,
                format!("cannot build the request: {error}"),
            )
        })
}

/// A URL's user-info part decoded (as `basic_auth` takes it).
pub(crate) fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// `Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::from("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for idx in 0..4 {
            if idx <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * idx)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn version_number(version: Version) -> f64 {
    match version {
        Version::HTTP_09 => 0.9,
        Version::HTTP_10 => 1.0,
        Version::HTTP_11 => 1.1,
        Version::HTTP_2 => 2.0,
        Version::HTTP_3 => 3.0,
        _ => 0.0,
    }
}

/// Maps a hyper error to a reason and a detail that says what happened where.
fn classify_hyper(error: &hyper::Error, doing: &str, url: &Url) -> Failure {
    let target = show_url(url);
    if error.is_parse_too_large() {
        return Failure::new(
            FailureReason::TooLarge,
            format!("response head from {target} is too large (over 100 headers or about 400 KiB)"),
        );
    }
    if error.is_parse() || error.is_parse_status() {
        return Failure::new(
            FailureReason::Protocol,
            format!("{target} did not answer valid HTTP: {error}"),
        );
    }
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        return Failure::new(
            FailureReason::Closed,
            format!("the server closed the connection while {doing} {target}"),
        );
    }
    if let Some(io_error) = net::find_cause::<std::io::Error>(error) {
        return if net::closed_by_peer(io_error) {
            Failure::new(
                FailureReason::Closed,
                format!("the connection was reset while {doing} {target}: {io_error}"),
            )
        } else {
            Failure::new(
                FailureReason::Protocol,
                format!("I/O error while {doing} {target}: {io_error}"),
            )
        };
    }
    Failure::new(
        FailureReason::Protocol,
        format!("HTTP error while {doing} {target}: {error}"),
    )
}

/// `scheme://host:port/path`: no credentials, no query string, no fragment.
pub fn show_url(url: &Url) -> String {
    let mut shown = format!("{}://", url.scheme());
    if let Some(host) = url.host_str() {
        shown.push_str(host);
    }
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// Checks the final response against the expectations; the first that fails decides.
pub(crate) fn evaluate(
    expect: &HttpExpect,
    received: &Received,
    elapsed: Duration,
    details: &mut HttpDetails,
) -> Status {
    let verdict = expect_status(expect, received)
        .and_then(|()| rules::expect_version(&expect.http_versions, received))
        .and_then(|()| expect_headers(expect, received))
        .and_then(|()| {
            rules::expect_header_rules(
                &expect.headers_not_match,
                &expect.headers_match,
                received,
                details,
            )
        })
        .and_then(|()| expect_body(expect, received, details))
        .and_then(|()| expect_json(expect, received))
        .and_then(|()| rules::expect_cel(expect.json_cel.as_ref(), received))
        .and_then(|()| expect_tls(expect, details))
        .and_then(|()| expect_duration(expect, elapsed));
    match verdict {
        Ok(()) => Status::Pass,
        Err(failure) => failure.into(),
    }
}

/// The status code: one of `status`, or any 2xx when none is given.
fn expect_status(expect: &HttpExpect, received: &Received) -> Result<(), Failure> {
    let code = received.status.as_u16();
    let status_ok = if expect.status.is_empty() {
        (200..300).contains(&code)
    } else {
        expect.status.iter().any(|m| m.matches(code))
    };
    if status_ok {
        return Ok(());
    }
    let wanted = if expect.status.is_empty() {
        "2xx".to_string()
    } else {
        expect
            .status
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let phrase = received.status.canonical_reason().unwrap_or("");
    Err(Failure::new(
        FailureReason::Status,
        format!("expected status {wanted}, got {code} {phrase}")
            .trim_end()
            .to_string(),
    ))
}

/// Each expected header is present, with a value matching its regex.
fn expect_headers(expect: &HttpExpect, received: &Received) -> Result<(), Failure> {
    for (name, regex) in &expect.headers {
        let Some(value) = received.headers.get(name) else {
            return Err(Failure::new(
                FailureReason::Header,
                format!(
                    "expected header {name} matching /{regex}/, but the response has no {name} header"
                ),
            ));
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        if !regex.is_match(&text) {
            return Err(Failure::new(
                FailureReason::Header,
                format!(
                    "expected header {name} matching /{regex}/, got {}",
                    quote_short(&text)
                ),
            ));
        }
    }
    Ok(())
}

/// The body's contains, not-contains, matches and not-matches expectations, in that order,
/// on the bytes kept.
fn expect_body(
    expect: &HttpExpect,
    received: &Received,
    details: &mut HttpDetails,
) -> Result<(), Failure> {
    let body_text = String::from_utf8_lossy(&received.body);
    // What the body expectations saw, for their failure details.
    let seen = || {
        if received.total_len > received.body.len() as u64 {
            format!(
                "the first {} of {} body bytes",
                received.body.len(),
                received.total_len
            )
        } else {
            format!("{} body bytes", received.body.len())
        }
    };
    for needle in &expect.body_contains {
        if !body_text.contains(needle.as_str()) {
            return Err(Failure::new(
                FailureReason::Body,
                format!(
                    "expected the body to contain {needle:?}; not found in {}",
                    seen()
                ),
            ));
        }
    }
    for needle in &expect.body_not_contains {
        if body_text.contains(needle.as_str()) {
            return Err(Failure::new(
                FailureReason::Body,
                format!("expected the body not to contain {needle:?}, but it does"),
            ));
        }
    }
    for regex in &expect.body_matches {
        if !regex.is_match(&body_text) {
            details.failed_due_to_regex = true;
            return Err(Failure::new(
                FailureReason::Body,
                format!(
                    "expected the body to match /{regex}/; no match in {}",
                    seen()
                ),
            ));
        }
    }
    for regex in &expect.body_not_matches {
        if let Some(found) = regex.find(&body_text) {
            details.failed_due_to_regex = true;
            return Err(Failure::new(
                FailureReason::Body,
                format!(
                    "expected the body not to match /{regex}/, but it does: {}",
                    quote_short(found.as_str())
                ),
            ));
        }
    }
    Ok(())
}

/// The JSON pointer expectations, on the body parsed once (only when there are any).
fn expect_json(expect: &HttpExpect, received: &Received) -> Result<(), Failure> {
    if expect.json.is_empty() {
        return Ok(());
    }
    let document: serde_json::Value = serde_json::from_slice(&received.body).map_err(|error| {
        Failure::new(
            FailureReason::Json,
            format!("expected a JSON body, but it does not parse: {error}"),
        )
    })?;
    for json in &expect.json {
        if let Some(Status::Fail(failure)) = check_json(&document, json) {
            return Err(failure);
        }
    }
    Ok(())
}

/// Whether the final hop used TLS, when `tls` says which it must.
fn expect_tls(expect: &HttpExpect, details: &HttpDetails) -> Result<(), Failure> {
    match expect.tls {
        Some(want_tls) if want_tls != details.tls_used => {
            let detail = if want_tls {
                "expected the final response over TLS, but it came over plain HTTP"
            } else {
                "expected the final response over plain HTTP, but it came over TLS"
            };
            Err(Failure::new(FailureReason::Tls, detail))
        }
        _ => Ok(()),
    }
}

/// The whole run, redirects included, within `max_duration`.
fn expect_duration(expect: &HttpExpect, elapsed: Duration) -> Result<(), Failure> {
    match expect.max_duration {
        Some(max) if elapsed > max => Err(Failure::new(
            FailureReason::TooSlow,
            format!(
                "took {}, more than max_duration {}",
                format_secs(elapsed),
                humantime::format_duration(max)
            ),
        )),
        _ => Ok(()),
    }
}

fn check_json(document: &serde_json::Value, json: &JsonExpect) -> Option<Status> {
    let pointer = &json.pointer;
    let Some(found) = document.pointer(pointer) else {
        return Some(Status::fail(
            FailureReason::Json,
            format!("expected a value at JSON pointer {pointer}, found none"),
        ));
    };
    match &json.test {
        JsonTest::Exists => None,
        JsonTest::Equals(expected) => {
            let equal = match (expected.as_f64(), found.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => expected == found,
            };
            (!equal).then(|| {
                Status::fail(
                    FailureReason::Json,
                    format!(
                        "expected {pointer} to equal {expected}, got {}",
                        short_json(found)
                    ),
                )
            })
        }
        JsonTest::Matches(regex) => {
            let text = match found {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(_)
                | serde_json::Value::Bool(_)
                | serde_json::Value::Null => found.to_string(),
                _ => {
                    return Some(Status::fail(
                        FailureReason::Json,
                        format!(
                            "expected {pointer} to be a string matching /{regex}/, got {}",
                            short_json(found)
                        ),
                    ));
                }
            };
            (!regex.is_match(&text)).then(|| {
                Status::fail(
                    FailureReason::Json,
                    format!(
                        "expected {pointer} to match /{regex}/, got {}",
                        short_json(found)
                    ),
                )
            })
        }
    }
}

fn short_json(value: &serde_json::Value) -> String {
    quote_short(&value.to_string())
}

fn quote_short(text: &str) -> String {
    const LIMIT: usize = 120;
    if text.chars().count() <= LIMIT {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut:?}…")
    }
}

fn format_secs(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

/// The `Last-Modified` header as Unix seconds (the IMF-fixdate form RFC 9110 asks for, which
/// is RFC 2822's), `None` when it is missing or does not parse.
fn last_modified(headers: &http::HeaderMap) -> Option<i64> {
    let text = headers.get(http::header::LAST_MODIFIED)?.to_str().ok()?;
    chrono::DateTime::parse_from_rfc2822(text.trim())
        .ok()
        .map(|at| at.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
        assert_eq!(basic_auth("ab", ""), "Basic YWI6");
    }

    #[test]
    fn url_is_shown_without_secrets() {
        let url = Url::parse("https://user:pw@example.com:8443/a/b?token=x#frag").unwrap();
        assert_eq!(show_url(&url), "https://example.com:8443/a/b");
    }

    #[test]
    fn status_classes() {
        assert!(StatusMatch::Class(2).matches(204));
        assert!(!StatusMatch::Class(2).matches(301));
        assert!(StatusMatch::Code(404).matches(404));
    }

    #[test]
    fn json_numbers_compare_by_value() {
        let doc: serde_json::Value = serde_json::json!({"n": 3.0, "s": "ok"});
        let equals = JsonExpect {
            pointer: "/n".into(),
            test: JsonTest::Equals(serde_json::json!(3)),
        };
        assert!(check_json(&doc, &equals).is_none());
        let wrong = JsonExpect {
            pointer: "/s".into(),
            test: JsonTest::Equals(serde_json::json!("degraded")),
        };
        assert!(check_json(&doc, &wrong).is_some());
        let missing = JsonExpect {
            pointer: "/x".into(),
            test: JsonTest::Exists,
        };
        assert!(check_json(&doc, &missing).is_some());
    }
}
