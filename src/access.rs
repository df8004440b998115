//! Who may use the agent's own server: the Host names it answers (DNS rebinding), same-origin
//! state changes (cross-site `POST /-/reload`), and the authentication middleware (basic auth
//! checked against bcrypt hashes, or a bearer token), configured in `[agent]`
//! ([`crate::config::web`]) and replaced in place on reload. Basic auth is bounded: bcrypt
//! runs on a share of the cores with a short queue, and an address whose logins keep failing
//! backs off.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::digest::{SHA256, digest};
use tokio::sync::Semaphore;

use crate::config::web::WebConfig;
use crate::metrics::HttpMetrics;

/// Paths anyone may read: liveness and readiness say nothing about the checks, and
/// orchestrators probe them without credentials (and by pod IP, whatever the Host rules).
const OPEN_PATHS: [&str; 2] = ["/-/healthy", "/-/ready"];
/// Successful (user, password) pairs remembered, so a scrape every 15 s does not cost a
/// bcrypt verification each time.
const CACHE_SIZE: usize = 64;
/// Basic-auth attempts that may wait for a bcrypt slot, per slot; more are answered 429.
const QUEUE_PER_SLOT: usize = 2;
/// Failed basic-auth attempts an address may make before it backs off.
const FREE_FAILURES: u32 = 5;
/// The longest back-off of an address.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An address's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses whose failures are remembered at once (older ones are dropped first).
const TRACKED_ADDRESSES: usize = 4096;

/// What the server knows about the connection a request came on; the server puts it in each
/// request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The agent's address the client connected to.
    pub local: SocketAddr,
    /// Whether the connection is HTTPS.
    pub tls: bool,
}

/// The current access rules; the agent swaps them on reload.
pub type SharedAccess = Arc<RwLock<Arc<Access>>>;

/// The current TLS configuration; the agent swaps it on reload (a renewed certificate).
pub type SharedTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Who may use the server.
#[derive(Debug)]
pub struct Access {
    users: BTreeMap<String, String>,
    token: Option<[u8; 32]>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// A hash nobody's password matches, of the configured users' cost, verified for unknown
    /// users so they take as long as known ones.
    dummy: String,
    allowed_hosts: Vec<String>,
    max_connections: usize,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// A well-formed bcrypt hash of `cost` that no password matches, made without spending the
/// cost: a cost-4 hash with its cost field rewritten (so its digest is not one bcrypt yields
/// at `cost`). Verifying against it costs what verifying against a real hash of `cost` does.
fn dummy_hash(cost: u32) -> String {
    let cheap = bcrypt::hash("nightjar: no such user", 4).unwrap_or_default();
    match cheap.get(7..) {
        Some(salt_and_digest) => format!("$2b${cost:02}${salt_and_digest}"),
        None => cheap,
    }
}

/// The cost most configured hashes have (the highest of equals); bcrypt's default without users.
fn usual_cost(users: &BTreeMap<String, String>) -> u32 {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for hash in users.values() {
        if let Some(cost) = hash.get(4..6).and_then(|cost| cost.parse().ok()) {
            *counts.entry(cost).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(cost, count)| (count, cost))
        .map_or(bcrypt::DEFAULT_COST, |(cost, _)| cost)
}

/// The outcome of checking a request's credentials.
enum Verdict {
    Allowed,
    Denied,
    /// Not checked: too many verifications waiting, or the address backs off. Retry after.
    Throttled(Duration),
}

impl Access {
    /// The rules of `web`.
    pub fn new(web: &WebConfig) -> Access {
        Access {
            users: web.basic_auth_users.clone(),
            token: web
                .bearer_token
                .as_deref()
                .map(|token| sha256(token.as_bytes())),
            verified: Mutex::new(HashSet::new()),
            dummy: dummy_hash(usual_cost(&web.basic_auth_users)),
            allowed_hosts: web.allowed_hosts.clone(),
            max_connections: web.max_connections,
        }
    }

    /// Shared rules for `web`.
    pub fn shared(web: &WebConfig) -> SharedAccess {
        Arc::new(RwLock::new(Arc::new(Access::new(web))))
    }

    /// The current rules of `shared`.
    pub fn current(shared: &SharedAccess) -> Arc<Access> {
        shared
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// `[agent] max_connections`.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    fn open(&self) -> bool {
        self.users.is_empty() && self.token.is_none()
    }

    /// Whether no credentials are configured (every request is let in without them).
    pub fn is_open(&self) -> bool {
        self.open()
    }

    /// Whether the request's `Authorization` header passes.
    async fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>, limits: &Limits) -> Verdict {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        else {
            return Verdict::Denied;
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            // Comparing digests takes the same time wherever the first difference is.
            let good = self
                .token
                .is_some_and(|token| token == sha256(credentials.trim().as_bytes()));
            return if good {
                Verdict::Allowed
            } else {
                Verdict::Denied
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.users.is_empty() {
            return Verdict::Denied;
        }
        let Some((user, password)) = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                text.split_once(':')
                    .map(|(user, password)| (user.to_string(), password.to_string()))
            })
        else {
            return Verdict::Denied;
        };
        // An address that backs off is not answered at all, even for a remembered pair:
        // otherwise the cache would be an oracle that answers guesses without bcrypt's cost.
        if let Some(wait) = peer.and_then(|peer| limits.backing_off(peer)) {
            return Verdict::Throttled(wait);
        }
        let key = sha256(format!("{user}\0{password}").as_bytes());
        if self.lock().contains(&key) {
            return Verdict::Allowed;
        }
        let Some(_in_line) = limits.queue() else {
            return Verdict::Throttled(Duration::from_secs(1));
        };
        let Ok(_permit) = limits.bcrypt.acquire().await else {
            return Verdict::Denied;
        };
        let known = self.users.get(&user).cloned();
        let is_known = known.is_some();
        let dummy = self.dummy.clone();
        // Known and unknown users cost one verification of the same cost.
        let matches = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password, &known.unwrap_or(dummy)).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if matches && is_known {
            if let Some(peer) = peer {
                limits.succeeded(peer);
            }
            let mut verified = self.lock();
            if verified.len() >= CACHE_SIZE {
                verified.clear();
            }
            verified.insert(key);
            return Verdict::Allowed;
        }
        if let Some(peer) = peer {
            limits.failed(peer);
        }
        Verdict::Denied
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn challenge(&self) -> &'static str {
        if self.users.is_empty() {
            "Bearer realm=\"nightjar\""
        } else {
            "Basic realm=\"nightjar\", charset=\"UTF-8\""
        }
    }

    /// Whether every Host is answered on a connection to `local`: not a loopback listener, and
    /// no `allowed_hosts`.
    fn answers_any(&self, local: SocketAddr) -> bool {
        !local.ip().is_loopback() && self.allowed_hosts.is_empty()
    }

    /// Whether a request for `host` (a Host header or URI authority) on a connection to
    /// `local` is answered: on a loopback listener, or with `allowed_hosts` set, only loopback
    /// names and the allowed ones are, so a page of another site whose name was rebound to
    /// this address cannot read or drive the agent.
    fn answers(&self, host: &str, local: SocketAddr) -> bool {
        if self.answers_any(local) {
            return true;
        }
        let name = host_name(host);
        is_loopback_name(&name) || self.allowed_hosts.contains(&name)
    }
}

/// The host of a Host header value, lower case, without port, brackets or trailing dot.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// `localhost`, a name under `.localhost` (browsers resolve those to loopback themselves), or
/// a loopback address.
fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a state-changing request comes from another site, if it does: its `Origin` is not this
/// agent's own, or (without `Origin`) the browser marked it cross-site. Requests without
/// either (curl, Prometheus-style tools) are not a browser's and pass.
fn cross_site(headers: &HeaderMap, conn: Option<&ConnInfo>) -> Option<String> {
    let text = |name| {
        headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    if let Some(origin) = text(header::ORIGIN) {
        let scheme = if conn.is_some_and(|conn| conn.tls) {
            "https"
        } else {
            "http"
        };
        let own = text(header::HOST).map(|host| format!("{scheme}://{}", host.trim()));
        if own
            .as_deref()
            .is_some_and(|own| own.eq_ignore_ascii_case(origin.trim()))
        {
            return None;
        }
        let shown: String = origin.chars().take(100).collect();
        return Some(format!(
            "Forbidden: the request comes from another site (Origin {shown:?} is not {}); \
state-changing requests are only taken from this agent's own pages or from clients that send no Origin (curl, scripts).\n",
            own.unwrap_or_else(|| "this agent's own origin".to_string())
        ));
    }
    match text(header::HeaderName::from_static("sec-fetch-site")).as_deref() {
        None | Some("same-origin" | "none") => None,
        Some(site) => Some(format!(
            "Forbidden: the browser marked this request {site:?} (Sec-Fetch-Site); \
state-changing requests are only taken from this agent's own pages or from clients that send no Origin (curl, scripts).\n"
        )),
    }
}

/// The bounds on basic-auth work, shared across reloads: bcrypt slots and their queue, and
/// the failures of each address.
#[derive(Debug)]
pub struct Limits {
    bcrypt: Semaphore,
    /// Attempts holding or waiting for a slot, and how many may.
    in_line: AtomicUsize,
    max_in_line: usize,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// A place in the bcrypt queue, given back on drop.
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limits {
    /// bcrypt on half the cores (at least one), with `QUEUE_PER_SLOT` waiting per slot.
    pub fn new() -> Limits {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Limits::with_slots((cores / 2).max(1))
    }

    fn with_slots(slots: usize) -> Limits {
        Limits {
            bcrypt: Semaphore::new(slots),
            in_line: AtomicUsize::new(0),
            max_in_line: slots * (1 + QUEUE_PER_SLOT),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn queue(&self) -> Option<InLine<'_>> {
        let before = self.in_line.fetch_add(1, Ordering::AcqRel);
        let place = InLine(&self.in_line);
        (before < self.max_in_line).then_some(place)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long `peer` must still wait, if it backs off: after [`FREE_FAILURES`] failures,
    /// 1 s after its last failure, doubling with each further one, at most [`MAX_BACKOFF`].
    fn backing_off(&self, peer: IpAddr) -> Option<Duration> {
        let failures = *self.table().get(&client_key(peer))?;
        if failures.count < FREE_FAILURES {
            return None;
        }
        let exponent = (failures.count - FREE_FAILURES).min(6);
        let backoff = Duration::from_secs(1 << exponent).min(MAX_BACKOFF);
        backoff.checked_sub(failures.last.elapsed())
    }

    fn failed(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut table = self.table();
        if table.len() >= TRACKED_ADDRESSES && !table.contains_key(&client_key(peer)) {
            table.retain(|_, failures| now.duration_since(failures.last) < FORGET_AFTER);
            if table.len() >= TRACKED_ADDRESSES {
                // Still full: forget the oldest quarter.
                let mut lasts: Vec<Instant> =
                    table.values().map(|failures| failures.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 4];
                table.retain(|_, failures| failures.last > cut);
            }
        }
        let entry = table.entry(client_key(peer)).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    fn succeeded(&self, peer: IpAddr) {
        self.table().remove(&client_key(peer));
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new()
    }
}

/// The address an attempt (or a connection, or a render) is counted against: IPv4 addresses
/// one by one, IPv6 by /64 (one host usually has a whole /64).
pub(crate) fn client_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    }
}

/// What the access middleware shares.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The current rules.
    pub access: SharedAccess,
    /// bcrypt slots and per-address failures, kept across reloads.
    pub limits: Arc<Limits>,
    /// Where throttled requests are counted.
    pub metrics: HttpMetrics,
}

/// The middleware: the Host must be one this agent answers to (but for `/-/healthy` and
/// `/-/ready`); a state-changing request must not come from another site; and every path but
/// `/-/healthy` and `/-/ready` needs credentials when any are configured.
pub async fn require(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let access = Access::current(&gate.access);
    let open_path = OPEN_PATHS.contains(&request.uri().path());
    let conn = request.extensions().get::<ConnInfo>().copied();
    if !open_path
        && let Some(conn) = conn
        && !access.answers_any(conn.local)
    {
        // The Host header and an absolute-form request's authority must both be answered; a
        // Host that is not visible ASCII names nothing this agent answers to. A request with
        // neither is no browser's: there is nothing to rebind.
        let refused = request
            .headers()
            .get_all(header::HOST)
            .iter()
            .map(|host| {
                host.to_str()
                    .ok()
                    .filter(|text| text.bytes().all(|byte| byte.is_ascii_graphic()))
                    .map(str::to_string)
                    .ok_or_else(|| String::from_utf8_lossy(host.as_bytes()).into_owned())
            })
            .chain(
                request
                    .uri()
                    .authority()
                    .map(|authority| Ok(authority.to_string())),
            )
            .find(|host| match host {
                Ok(host) => !access.answers(host, conn.local),
                Err(_) => true,
            })
            .map(|(Ok(host) | Err(host))| host);
        if let Some(host) = refused {
            let shown: String = host.chars().take(100).collect();
            tracing::debug!(message = "Request refused: Host not answered.", host = %shown.escape_debug());
            return (
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Misdirected request: this agent does not answer to the host {shown:?}. \
It answers to localhost, 127.0.0.0/8 and [::1]{}, and to the names in [agent] allowed_hosts.\n",
                    if conn.local.ip().is_loopback() {
                        " (it listens on a loopback address)"
                    } else {
                        ""
                    }
                ),
            )
                .into_response();
        }
    }
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && let Some(reason) = cross_site(request.headers(), conn.as_ref())
    {
        tracing::debug!(message = "Request refused: cross-site.", path = %request.uri().path());
        return (StatusCode::FORBIDDEN, reason).into_response();
    }
    if access.open() || open_path {
        return next.run(request).await;
    }
    match access
        .check(
            request.headers(),
            conn.map(|conn| conn.peer.ip()),
            &gate.limits,
        )
        .await
    {
        Verdict::Allowed => next.run(request).await,
        Verdict::Throttled(wait) => {
            gate.metrics.throttled();
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, seconds.to_string())],
                format!(
                    "Too many requests: too many failed logins from this address or too many being checked at once; retry in {seconds} s.\n"
                ),
            )
                .into_response()
        }
        Verdict::Denied => {
            tracing::debug!(message = "Request refused: no valid credentials.", path = %request.uri().path());
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, access.challenge())],
                "Unauthorized: this agent requires credentials (see [agent] basic_auth_users and bearer_token).\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_without_port_or_brackets() {
        assert_eq!(host_name("LocalHost:9465"), "localhost");
        assert_eq!(host_name("[::1]:9465"), "::1");
        assert_eq!(host_name("127.0.0.2"), "127.0.0.2");
        assert_eq!(host_name("example.com."), "example.com");
        for name in ["localhost", "a.localhost", "127.9.9.9", "::1"] {
            assert!(is_loopback_name(name), "{name}");
        }
        for name in ["localhost.evil.example", "10.0.0.1", "evil.example"] {
            assert!(!is_loopback_name(name), "{name}");
        }
    }

    #[test]
    fn a_loopback_listener_answers_loopback_names_and_allowed_hosts() {
        let mut web = WebConfig::default();
        let loopback: SocketAddr = "127.0.0.1:9465".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:9465".parse().unwrap();
        let access = Access::new(&web);
        assert!(access.answers("localhost:9465", loopback));
        assert!(access.answers("[::1]:9465", loopback));
        assert!(!access.answers("rebound.evil.example:9465", loopback));
        assert!(access.answers("rebound.evil.example:9465", public));
        web.allowed_hosts = vec!["nightjar.example.com".to_string()];
        let access = Access::new(&web);
        assert!(access.answers("NightJar.example.com:9465", loopback));
        assert!(access.answers("nightjar.example.com", public));
        assert!(access.answers("127.0.0.1:9465", public));
        assert!(!access.answers("other.example.com", public));
    }

    #[test]
    fn the_dummy_hash_has_the_configured_cost_and_matches_nothing() {
        let mut users = BTreeMap::new();
        assert_eq!(usual_cost(&users), bcrypt::DEFAULT_COST);
        users.insert("a".to_string(), bcrypt::hash("x", 5).unwrap());
        users.insert("b".to_string(), bcrypt::hash("y", 5).unwrap());
        users.insert("c".to_string(), bcrypt::hash("z", 4).unwrap());
        assert_eq!(usual_cost(&users), 5);
        let dummy = dummy_hash(5);
        assert!(dummy.starts_with("$2b$05$") && dummy.len() == 60, "{dummy}");
        assert_eq!(bcrypt::verify("", &dummy).ok(), Some(false));
        assert_eq!(bcrypt::verify("nightjar", &dummy).ok(), Some(false));
    }

    #[test]
    fn an_address_backs_off_after_repeated_failures_and_a_success_clears_it() {
        let limits = Limits::with_slots(1);
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert!(limits.backing_off(peer).is_none());
            limits.failed(peer);
        }
        let wait = limits.backing_off(peer).expect("backs off");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        limits.failed(peer);
        assert!(limits.backing_off(peer).unwrap() > Duration::from_secs(1));
        assert!(limits.backing_off("192.0.2.8".parse().unwrap()).is_none());
        limits.succeeded(peer);
        assert!(limits.backing_off(peer).is_none());
        // One IPv6 host is one /64.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
    }

    #[test]
    fn the_bcrypt_queue_is_short() {
        let limits = Limits::with_slots(1);
        let places: Vec<_> = (0..1 + QUEUE_PER_SLOT)
            .map(|_| limits.queue().expect("a place"))
            .collect();
        assert!(limits.queue().is_none());
        drop(places);
        assert!(limits.queue().is_some());
    }

    #[test]
    fn cross_site_state_changes_are_named() {
        let conn = ConnInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:9465".parse().unwrap(),
            tls: false,
        };
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let own = headers(&[
            ("host", "127.0.0.1:9465"),
            ("origin", "http://127.0.0.1:9465"),
        ]);
        assert!(cross_site(&own, Some(&conn)).is_none());
        let evil = headers(&[
            ("host", "127.0.0.1:9465"),
            ("origin", "https://evil.example"),
        ]);
        let reason = cross_site(&evil, Some(&conn)).unwrap();
        assert!(reason.contains("\"https://evil.example\""), "{reason}");
        let null = headers(&[("host", "127.0.0.1:9465"), ("origin", "null")]);
        assert!(cross_site(&null, Some(&conn)).is_some());
        let fetch = headers(&[("host", "127.0.0.1:9465"), ("sec-fetch-site", "cross-site")]);
        assert!(cross_site(&fetch, Some(&conn)).is_some());
        let curl = headers(&[("host", "127.0.0.1:9465")]);
        assert!(cross_site(&curl, Some(&conn)).is_none());
    }
}
