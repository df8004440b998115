//! Who may use the agent's own server: HTTPS through a listener that completes TLS
//! handshakes off the accept path, and the authentication middleware (basic auth checked
//! against bcrypt hashes, or a bearer token), both configured in `[agent]`
//! ([`crate::config::web`]) and replaced in place on reload.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::digest::{SHA256, digest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;

use crate::config::web::WebConfig;

/// Paths anyone may read: liveness and readiness say nothing about the checks, and
/// orchestrators probe them without credentials.
const OPEN_PATHS: [&str; 2] = ["/-/healthy", "/-/ready"];
/// Successful (user, password) pairs remembered, so a scrape every 15 s does not cost a
/// bcrypt verification each time.
const CACHE_SIZE: usize = 64;
/// bcrypt verifications at once; more wait, so guessing cannot take the agent's CPU.
const BCRYPT_AT_ONCE: usize = 2;
/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A hash of a password nobody has, verified for unknown users so they take as long as
/// known ones; made once, at the first unknown user.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            bcrypt::hash("nightjar: no such user", bcrypt::DEFAULT_COST).unwrap_or_default()
        })
        .clone()
}

/// The current access rules; the agent swaps them on reload.
pub type SharedAccess = Arc<RwLock<Arc<Access>>>;

/// Who may use the server.
#[derive(Debug)]
pub struct Access {
    users: BTreeMap<String, String>,
    token: Option<[u8; 32]>,
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Semaphore,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
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
            bcrypt: Semaphore::new(BCRYPT_AT_ONCE),
        }
    }

    /// Shared rules for `web`.
    pub fn shared(web: &WebConfig) -> SharedAccess {
        Arc::new(RwLock::new(Arc::new(Access::new(web))))
    }

    fn open(&self) -> bool {
        self.users.is_empty() && self.token.is_none()
    }

    /// Whether the request's `Authorization` header passes.
    async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        else {
            return false;
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            // Comparing digests takes the same time wherever the first difference is.
            return self
                .token
                .is_some_and(|token| token == sha256(credentials.trim().as_bytes()));
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.users.is_empty() {
            return false;
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
            return false;
        };
        let key = sha256(format!("{user}\0{password}").as_bytes());
        if self.lock().contains(&key) {
            return true;
        }
        let known = self.users.get(&user).cloned();
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        let is_known = known.is_some();
        let matches = tokio::task::spawn_blocking(move || {
            let hash = known.unwrap_or_else(dummy_hash);
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if matches && is_known {
            let mut verified = self.lock();
            if verified.len() >= CACHE_SIZE {
                verified.clear();
            }
            verified.insert(key);
            return true;
        }
        false
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
}

/// The middleware: every path but `/-/healthy` and `/-/ready` needs credentials when any are
/// configured.
pub async fn require(State(access): State<SharedAccess>, request: Request, next: Next) -> Response {
    let access = access
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if access.open() || OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    if access.allows(request.headers()).await {
        return next.run(request).await;
    }
    tracing::debug!(message = "Request refused: no valid credentials.", path = %request.uri().path());
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, access.challenge())],
        "Unauthorized: this agent requires credentials (see [agent] basic_auth_users and bearer_token).\n",
    )
        .into_response()
}

/// The current TLS configuration; the agent swaps it on reload (a renewed certificate).
pub type SharedTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// A listener that hands out connections whose TLS handshake completed. Handshakes run in
/// their own tasks with a time limit, so a client that stalls mid-handshake delays no one.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener` with the configuration in `tls`.
    pub fn new(listener: TcpListener, tls: SharedTls) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (done, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: wait, then go on.
                        tracing::warn!(message = "Cannot accept a connection.", error = %error);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let config = tls
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = done.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(message = "TLS handshake failed.", peer = %peer, error = %error);
                        }
                        Err(_) => {
                            tracing::debug!(message = "TLS handshake timed out.", peer = %peer);
                        }
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
