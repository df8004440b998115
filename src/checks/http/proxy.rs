//! HTTP proxies for `http` checks (blackbox_exporter's `proxy_url`, `no_proxy`,
//! `proxy_from_environment`, `proxy_connect_header` and `skip_resolve_phase_with_proxy`).
//!
//! A plain `http` request goes to the proxy in absolute form (`GET http://host/path`); an
//! `https` one goes through an HTTP CONNECT tunnel, and TLS runs to the target over it, so
//! the target's chain is read and judged as on a direct connection. The phases stay
//! meaningful: `resolve` is the target's name resolved locally (none with
//! `skip_resolve_phase_with_proxy`) plus the proxy's, `connect` is the TCP connect to the
//! proxy plus the CONNECT exchange, `tls` the handshake with the target through the tunnel.

pub(crate) mod config;

use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::{HttpSpec, show_url};
use crate::checks::CheckCtx;
use crate::result::{Failure, FailureReason, HttpDetails};

/// The most a CONNECT answer's head may be; a longer one fails the run.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// How a check reaches its targets through proxies, read at load time.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The proxy for `http://` URLs.
    pub http: Option<ProxyServer>,
    /// The proxy for `https://` URLs.
    pub https: Option<ProxyServer>,
    /// Hosts that bypass the proxy.
    pub no_proxy: NoProxy,
    /// Extra headers sent on every CONNECT (secrets already substituted).
    pub connect_headers: Vec<(HeaderName, HeaderValue)>,
    /// The target's name is not resolved locally; the proxy resolves it.
    pub skip_resolve: bool,
}

/// One proxy: where it is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ProxyServer {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `Proxy-Authorization: Basic ...` from the URL's user-info, marked sensitive.
    pub authorization: Option<HeaderValue>,
}

impl ProxyServer {
    /// The proxy as shown in details: `http://host:port`, never its credentials.
    pub fn shown(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }
}

/// `no_proxy`, read as Go's `golang.org/x/net/http/httpproxy` reads it (prometheus/common
/// uses it): `*` bypasses every host; IP addresses and CIDRs match IP hosts; `example.com`
/// matches it and its subdomains, `.example.com` and `*.example.com` only the subdomains; any
/// entry may end in `:port`. When it is in use (`no_proxy` set, or the proxy from the
/// environment), `localhost` and loopback addresses always bypass the proxy, as in Go.
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    /// Whether Go's rules are in use at all (else every host goes through the proxy).
    pub active: bool,
    all: bool,
    ips: Vec<(IpAddr, Option<u16>)>,
    cidrs: Vec<(IpAddr, u8)>,
    domains: Vec<DomainMatch>,
}

#[derive(Debug, Clone)]
struct DomainMatch {
    /// With a leading dot.
    suffix: String,
    /// Whether the name itself (without the dot) matches too.
    exact_too: bool,
    port: Option<u16>,
}

impl NoProxy {
    /// Parses a comma-separated list; entries Go would ignore are ignored.
    pub fn parse(list: &str, active: bool) -> NoProxy {
        let mut no_proxy = NoProxy {
            active,
            ..NoProxy::default()
        };
        for entry in list.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
                continue;
            }
            if let Some(cidr) = parse_cidr(&entry) {
                no_proxy.cidrs.push(cidr);
                continue;
            }
            let (host, port) = split_host_port(&entry);
            if let Ok(ip) = host.parse::<IpAddr>() {
                no_proxy.ips.push((ip, port));
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            if host.is_empty() || host == "." {
                continue;
            }
            let (suffix, exact_too) = match host.strip_prefix('.') {
                Some(_) => (host.to_string(), false),
                None => (format!(".{host}"), true),
            };
            no_proxy.domains.push(DomainMatch {
                suffix,
                exact_too,
                port,
            });
        }
        no_proxy
    }

    /// Whether a request to `host` (lower case, no brackets) on `port` bypasses the proxy.
    pub fn bypasses(&self, host: &str, port: u16) -> bool {
        if !self.active {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) || self.all {
            return true;
        }
        let port_ok = |want: Option<u16>| want.is_none_or(|want| want == port);
        let ip_listed = ip.is_some_and(|ip| {
            self.ips
                .iter()
                .any(|(entry, want)| *entry == ip && port_ok(*want))
                || self
                    .cidrs
                    .iter()
                    .any(|(net, bits)| in_cidr(ip, *net, *bits))
        });
        if ip_listed {
            return true;
        }
        self.domains.iter().any(|domain| {
            (host.ends_with(&domain.suffix) || (domain.exact_too && host == domain.suffix[1..]))
                && port_ok(domain.port)
        })
    }
}

/// `host:port`, `[v6]:port` or just a host; a port that does not parse stays in the host.
fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// `10.0.0.0/8`, `fd00::/8`: the network and its prefix length.
fn parse_cidr(entry: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = entry.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            (u128::from(u32::from(ip)), u128::from(u32::from(net)), 32)
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => (u128::from(ip), u128::from(net), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    ip >> shift == net >> shift
}

/// How one hop reaches its target.
pub(crate) enum Route<'a> {
    /// Straight to the target.
    Direct,
    /// A plain `http` request to the proxy, in absolute form.
    Forward(&'a ProxyServer),
    /// A CONNECT tunnel through the proxy, then TLS to the target.
    Tunnel(&'a ProxyServer),
}

/// Which way a request to `url` goes.
pub(crate) fn route<'a>(options: Option<&'a ProxyOptions>, url: &Url) -> Route<'a> {
    let Some(options) = options else {
        return Route::Direct;
    };
    let https = url.scheme() == "https";
    let server = if https {
        options.https.as_ref()
    } else {
        options.http.as_ref()
    };
    let Some(server) = server else {
        return Route::Direct;
    };
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Route::Direct,
    };
    let port = url.port_or_known_default().unwrap_or(80);
    if options.no_proxy.bypasses(&host, port) {
        Route::Direct
    } else if https {
        Route::Tunnel(server)
    } else {
        Route::Forward(server)
    }
}

/// The connection a hop to `host:port` (of `url`, shown as `target`) goes over: straight
/// to the target, or to the proxy that `route` picks (a tunnel already open through it).
/// Returns the stream, the address connected to, and for a plain request through a proxy,
/// the proxy and the authority to name in the absolute-form request.
pub(crate) async fn connect<'s>(
    spec: &'s HttpSpec,
    ctx: &CheckCtx,
    url: &Url,
    host: &str,
    port: u16,
    target: &str,
    details: &mut HttpDetails,
) -> Result<(TcpStream, SocketAddr, Option<(&'s ProxyServer, String)>), Failure> {
    match route(spec.proxy.as_deref(), url) {
        Route::Direct => {
            let (tcp, remote) = crate::checks::dial(
                ctx,
                host,
                port,
                spec.ip,
                target,
                &mut details.resolve,
                &mut details.connect,
            )
            .await?;
            Ok((tcp, remote, None))
        }
        Route::Forward(server) => {
            let (tcp, remote, authority) =
                open(spec, ctx, server, false, host, port, url, details).await?;
            Ok((tcp, remote, Some((server, authority))))
        }
        Route::Tunnel(server) => {
            let (tcp, remote, _) = open(spec, ctx, server, true, host, port, url, details).await?;
            Ok((tcp, remote, None))
        }
    }
}

/// A plain request (`hop`: method, headers, body) through a proxy: HTTP/1.1 in absolute
/// form, with the proxy's credentials; a 407 from the proxy fails with reason `proxy`.
pub(crate) async fn forward(
    spec: &HttpSpec,
    ctx: &CheckCtx,
    url: &Url,
    hop: (
        &http::Method,
        &[(HeaderName, HeaderValue)],
        Option<bytes::Bytes>,
    ),
    tcp: TcpStream,
    (server, authority): (&ProxyServer, String),
    details: &mut HttpDetails,
) -> Result<super::Received, Failure> {
    let (method, headers, body) = hop;
    let mut via = headers.to_vec();
    if let Some(auth) = &server.authorization {
        via.push((http::header::PROXY_AUTHORIZATION, auth.clone()));
    }
    let absolute = Some(authority.as_str());
    let received = super::request(
        spec, ctx, url, method, &via, body, tcp, false, absolute, details,
    )
    .await?;
    match forward_refused(server, url, received.status.as_u16()) {
        Some(failure) => Err(failure),
        None => Ok(received),
    }
}

/// Opens the connection a proxied hop to `host:port` (of `url`) goes over: the target's name
/// resolved locally unless `skip_resolve_phase_with_proxy` (blackbox_exporter's default is
/// to resolve it, and then to name the target by its address to the proxy), the proxy dialled
/// and, for a tunnel, the CONNECT exchanged. Returns the stream and the proxy's address.
#[allow(clippy::too_many_arguments)]
async fn open(
    spec: &HttpSpec,
    ctx: &CheckCtx,
    server: &ProxyServer,
    tunnel: bool,
    host: &str,
    port: u16,
    url: &Url,
    details: &mut HttpDetails,
) -> Result<(TcpStream, SocketAddr, String), Failure> {
    let options = spec.proxy.as_deref();
    let skip_resolve = options.is_some_and(|options| options.skip_resolve);
    let target = show_url(url);
    // The target as the proxy is told it: its name, or the address it resolved to here.
    let authority_host = if skip_resolve {
        host.to_string()
    } else {
        let addrs =
            crate::checks::resolve_all(ctx, host, spec.ip, &target, &mut details.resolve).await?;
        addrs[0].to_string()
    };
    let authority = if authority_host.contains(':') {
        format!("[{authority_host}]:{port}")
    } else {
        format!("{authority_host}:{port}")
    };
    let shown = server.shown();
    let through = format!("proxy {shown} for {target}");
    let (mut tcp, remote) = match crate::checks::dial(
        ctx,
        &server.host,
        server.port,
        spec.ip,
        &through,
        &mut details.resolve,
        &mut details.connect,
    )
    .await
    {
        Ok(connected) => connected,
        Err(failure) if failure.reason == FailureReason::Timeout => return Err(failure),
        Err(failure) => {
            return Err(Failure::new(
                FailureReason::Proxy,
                format!("cannot reach proxy {shown}: {}", failure.detail),
            ));
        }
    };
    if tunnel {
        let started = Instant::now();
        let extra = options.map_or(&[][..], |options| &options.connect_headers[..]);
        let connected = connect_tunnel(&mut tcp, server, extra, &authority, ctx.deadline).await;
        details.connect += started.elapsed();
        connected.map_err(|failure| match failure.reason {
            FailureReason::Timeout => Failure::new(
                FailureReason::Timeout,
                format!("timed out {} via proxy {shown}", failure.detail),
            ),
            reason => Failure::new(
                reason,
                format!("proxy {shown} {} for {target}", failure.detail),
            ),
        })?;
    }
    Ok((tcp, remote, authority))
}

/// Sends `CONNECT authority` and reads the proxy's answer head (at most
/// [`MAX_CONNECT_HEAD`] bytes); anything but a 2xx fails with reason `proxy`.
async fn connect_tunnel(
    tcp: &mut TcpStream,
    server: &ProxyServer,
    extra: &[(HeaderName, HeaderValue)],
    authority: &str,
    deadline: Instant,
) -> Result<(), Failure> {
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
    let mut has_auth = false;
    for (name, value) in extra {
        has_auth |= name == http::header::PROXY_AUTHORIZATION;
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let (Some(auth), false) = (&server.authorization, has_auth) {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    match timeout_at(deadline, tcp.write_all(&head)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            return Err(fail(
                FailureReason::Proxy,
                format!("failed while the CONNECT was sent: {error}"),
            ));
        }
        Err(_) => return Err(fail(FailureReason::Timeout, "sending CONNECT".into())),
    }
    let (answer, end) = read_connect_head(tcp, deadline).await?;
    judge_connect_answer(&answer, end, authority)
}

fn fail(reason: FailureReason, detail: String) -> Failure {
    Failure::new(reason, detail)
}

/// The proxy's answer to a CONNECT, read until its blank line (at most
/// [`MAX_CONNECT_HEAD`] bytes), and where the head ends in it.
async fn read_connect_head(
    tcp: &mut TcpStream,
    deadline: Instant,
) -> Result<(Vec<u8>, usize), Failure> {
    let mut answer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(end) = find_head_end(&answer) {
            break end;
        }
        if answer.len() >= MAX_CONNECT_HEAD {
            return Err(fail(
                FailureReason::Proxy,
                format!("answered CONNECT with a head over {MAX_CONNECT_HEAD} bytes"),
            ));
        }
        let room = (MAX_CONNECT_HEAD - answer.len()).min(chunk.len());
        match timeout_at(deadline, tcp.read(&mut chunk[..room])).await {
            Ok(Ok(0)) => {
                return Err(fail(
                    FailureReason::Proxy,
                    format!(
                        "closed the connection after {} bytes of its CONNECT answer",
                        answer.len()
                    ),
                ));
            }
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Ok(Err(error)) => {
                return Err(fail(
                    FailureReason::Proxy,
                    format!("failed while its CONNECT answer was read: {error}"),
                ));
            }
            Err(_) => {
                return Err(fail(
                    FailureReason::Timeout,
                    "waiting for the CONNECT answer".into(),
                ));
            }
        }
    };
    Ok((answer, end))
}

/// A 2xx with nothing after the head opens the tunnel; anything else fails with `proxy`.
fn judge_connect_answer(answer: &[u8], end: usize, authority: &str) -> Result<(), Failure> {
    let status_line = String::from_utf8_lossy(&answer[..end]);
    let status_line = status_line.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().and_then(|code| code.parse::<u16>().ok());
    let phrase = parts.next().unwrap_or("").trim();
    match code {
        _ if !version.starts_with("HTTP/1.") => Err(fail(
            FailureReason::Proxy,
            "did not answer CONNECT with HTTP".to_string(),
        )),
        Some(code) if (200..300).contains(&code) => {
            if answer.len() > end {
                return Err(fail(
                    FailureReason::Proxy,
                    "sent bytes after its CONNECT answer before the TLS handshake".to_string(),
                ));
            }
            Ok(())
        }
        Some(code) => Err(fail(
            FailureReason::Proxy,
            format!(
                "refused CONNECT to {authority}: {code} {}",
                phrase.chars().take(80).collect::<String>()
            )
            .trim_end()
            .to_string(),
        )),
        None => Err(fail(
            FailureReason::Proxy,
            "answered CONNECT without a status code".to_string(),
        )),
    }
}

/// The length of the head up to and including its blank line, once it is all there.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|at| at + 2))
}

/// `request` in absolute form (`http://authority/path?query`), as a proxy takes a plain
/// request; unchanged when `absolute` is `None`.
pub(crate) fn absolute_form<B>(
    mut request: http::Request<B>,
    url: &Url,
    absolute: Option<&str>,
) -> Result<http::Request<B>, Failure> {
    let Some(authority) = absolute else {
        return Ok(request);
    };
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let uri = format!("http://{authority}{path}")
        .parse::<http::Uri>()
        .map_err(|error| {
            Failure::new(
                FailureReason::Protocol,
                format!(
                    "cannot build the proxied request for {}: {error}",
                    show_url(url)
                ),
            )
        })?;
    *request.uri_mut() = uri;
    Ok(request)
}

/// A 407 a proxy gave to a forwarded request, as the failure it is.
pub(crate) fn forward_refused(server: &ProxyServer, url: &Url, code: u16) -> Option<Failure> {
    (code == 407).then(|| {
        Failure::new(
            FailureReason::Proxy,
            format!(
                "proxy {} refused the request for {}: 407 Proxy Authentication Required",
                server.shown(),
                show_url(url)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_reads_as_go_does() {
        let list = NoProxy::parse(
            "example.com, .internal, *.corp.test, 10.0.0.0/8, 192.168.1.5, [::2]:8443, web.test:8080",
            true,
        );
        assert!(list.bypasses("example.com", 443));
        assert!(list.bypasses("www.example.com", 80));
        assert!(!list.bypasses("notexample.com", 80));
        assert!(!list.bypasses("internal", 80));
        assert!(list.bypasses("svc.internal", 80));
        assert!(!list.bypasses("corp.test", 80));
        assert!(list.bypasses("a.corp.test", 80));
        assert!(list.bypasses("10.20.30.40", 80));
        assert!(!list.bypasses("11.0.0.1", 80));
        assert!(list.bypasses("192.168.1.5", 80));
        assert!(list.bypasses("::2", 8443));
        assert!(!list.bypasses("::2", 443));
        assert!(list.bypasses("web.test", 8080));
        assert!(!list.bypasses("web.test", 80));
        // Go's rule: localhost and loopback never go through the proxy once no_proxy is used.
        assert!(list.bypasses("localhost", 80));
        assert!(list.bypasses("127.0.0.1", 80));
        assert!(list.bypasses("::1", 80));
        assert!(NoProxy::parse("*", true).bypasses("anything.example", 1));
        // Without no_proxy, everything is proxied.
        assert!(!NoProxy::parse("", false).bypasses("127.0.0.1", 80));
    }

    #[test]
    fn connect_heads_end() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\n"), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
