//! OAuth2 client credentials for `http` checks (blackbox_exporter's `oauth2`, from
//! prometheus/common): a bearer token fetched from the token endpoint before the request,
//! cached until shortly before it expires (shared by the check's runs), and dropped when the
//! target answers 401 to it, so the next run fetches a fresh one.
//!
//! The grant is the `oauth2` crate's; its HTTP requests go through nightjar's own
//! `fetch`, so the token request has the check's TLS roots and client
//! certificate, its proxy, the run's deadline and a capped body.

pub(crate) mod config;

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use oauth2::basic::BasicClient;
use oauth2::{
    AsyncHttpClient, AuthUrl, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use tokio::time::Instant;
use url::Url;

use super::{HttpOptions, HttpSpec, TlsOptions, show_url};
use crate::checks::CheckCtx;
use crate::result::{Failure, FailureReason, HttpDetails, Status};

/// The most of a token endpoint's answer that is read.
const MAX_TOKEN_BODY: u64 = 64 * 1024;
/// A token is fetched afresh this long before it expires (less for short-lived tokens: a
/// tenth of their lifetime), as Go's oauth2 package does.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// A check's `oauth2` table, read at load time, and the token it holds.
pub struct OAuth2 {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret` (already registered as a secret of the check).
    pub client_secret: String,
    /// `token_url`.
    pub token_url: Url,
    /// `scopes`, sent space-separated as `scope`.
    pub scopes: Vec<String>,
    /// `endpoint_params`, sent as extra form parameters.
    pub endpoint_params: Vec<(String, String)>,
    /// The token of the last successful grant, and tokens dropped since (bounded), for
    /// redaction.
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    current: Option<Cached>,
    /// The last token dropped (expired or refused), still redacted from details.
    retired: Option<String>,
}

struct Cached {
    token: String,
    header: HeaderValue,
    /// When it is fetched afresh; `None` when the endpoint gave no `expires_in`.
    refresh_at: Option<Instant>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("client_id", &self.client_id)
            .field("token_url", &show_url(&self.token_url))
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl OAuth2 {
    /// Client credentials with nothing cached yet.
    pub fn new(
        client_id: String,
        client_secret: String,
        token_url: Url,
        scopes: Vec<String>,
        endpoint_params: Vec<(String, String)>,
    ) -> OAuth2 {
        OAuth2 {
            client_id,
            client_secret,
            token_url,
            scopes,
            endpoint_params,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached token, unless it is due for a refresh (then it is dropped).
    fn cached(&self) -> Option<Bearer> {
        let mut cache = self.lock();
        let fresh = cache
            .current
            .as_ref()
            .is_some_and(|c| c.refresh_at.is_none_or(|at| Instant::now() < at));
        if !fresh {
            if let Some(old) = cache.current.take() {
                cache.retired = Some(old.token);
            }
            return None;
        }
        cache.current.as_ref().map(|c| Bearer {
            header: c.header.clone(),
            token: c.token.clone(),
        })
    }

    fn store(&self, token: String, header: HeaderValue, expires_in: Option<Duration>) {
        let refresh_at = expires_in.map(|lifetime| {
            let margin = EXPIRY_MARGIN.min(lifetime / 10);
            Instant::now() + lifetime.saturating_sub(margin)
        });
        let mut cache = self.lock();
        if let Some(old) = cache.current.take() {
            cache.retired = Some(old.token);
        }
        cache.current = Some(Cached {
            token,
            header,
            refresh_at,
        });
    }

    /// Drops `token` if it is the cached one.
    fn drop_token(&self, token: &str) {
        let mut cache = self.lock();
        if cache.current.as_ref().is_some_and(|c| c.token == token) {
            cache.retired = cache.current.take().map(|c| c.token);
        }
    }

    /// Every token this client holds or held last, for redaction.
    fn tokens(&self) -> Vec<String> {
        let cache = self.lock();
        cache
            .current
            .iter()
            .map(|c| c.token.clone())
            .chain(cache.retired.clone())
            .collect()
    }
}

/// A token to send, as its `Authorization` header (sensitive).
pub(crate) struct Bearer {
    /// `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    token: String,
}

/// The bearer token for a request of `spec`: the cached one, or a fresh one from the token
/// endpoint. `None` when the check has no `oauth2`.
///
/// The future is boxed with its type spelled out: the token request goes through `fetch`,
/// which awaits this, and a named type is what lets the compiler see that both are `Send`.
pub(crate) fn bearer<'a>(
    spec: &'a HttpSpec,
    ctx: &'a CheckCtx,
) -> Pin<Box<dyn Future<Output = Result<Option<Bearer>, Failure>> + Send + 'a>> {
    Box::pin(async move {
        match spec.oauth2.as_deref() {
            Some(oauth) => fresh_or_cached(oauth, spec, ctx).await.map(Some),
            None => Ok(None),
        }
    })
}

async fn fresh_or_cached(
    oauth: &OAuth2,
    spec: &HttpSpec,
    ctx: &CheckCtx,
) -> Result<Bearer, Failure> {
    if let Some(cached) = oauth.cached() {
        return Ok(cached);
    }
    let (token, expires_in) = grant(oauth, spec, ctx).await?;
    let Ok(mut header) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return Err(Failure::new(
            FailureReason::Auth,
            format!(
                "OAuth2 token endpoint {} issued a token that cannot be sent in a header",
                show_url(&oauth.token_url)
            ),
        ));
    };
    header.set_sensitive(true);
    oauth.store(token.clone(), header.clone(), expires_in);
    Ok(Bearer { header, token })
}

/// What the target answered to `bearer`: a 401 drops the token, so the next run fetches one.
pub(crate) fn answered(spec: &HttpSpec, bearer: Option<&Bearer>, code: u16) {
    if let (Some(oauth), Some(bearer), 401) = (spec.oauth2.as_deref(), bearer, code) {
        oauth.drop_token(&bearer.token);
    }
}

/// `status` with every token of the check's OAuth2 client removed from its detail: a target
/// may echo the token into a body that a failure quotes.
pub(crate) fn scrub(spec: &HttpSpec, status: Status) -> Status {
    match (spec.oauth2.as_deref(), status) {
        (Some(oauth), Status::Fail(mut failure)) => {
            failure.detail = crate::text::redact(&oauth.tokens(), &failure.detail);
            Status::Fail(failure)
        }
        (_, status) => status,
    }
}

/// Why one token request went wrong in transport: the failure `fetch` reported.
#[derive(Debug)]
struct Transport(Failure);

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.detail)
    }
}

impl std::error::Error for Transport {}

type TokenFuture<'c> = Pin<Box<dyn Future<Output = Result<HttpResponse, Transport>> + Send + 'c>>;

/// Runs the client-credentials grant; returns the token and its lifetime.
async fn grant(
    oauth: &OAuth2,
    spec: &HttpSpec,
    ctx: &CheckCtx,
) -> Result<(String, Option<Duration>), Failure> {
    let shown = show_url(&oauth.token_url);
    let token_url = TokenUrl::from_url(oauth.token_url.clone());
    // The crate's client type wants an authorization URL; the client-credentials grant never
    // uses it.
    let auth_url = AuthUrl::from_url(oauth.token_url.clone());
    let client = BasicClient::new(ClientId::new(oauth.client_id.clone()))
        .set_client_secret(ClientSecret::new(oauth.client_secret.clone()))
        .set_auth_uri(auth_url)
        .set_token_uri(token_url);
    let mut request = client
        .exchange_client_credentials()
        .add_scopes(oauth.scopes.iter().cloned().map(Scope::new));
    for (name, value) in &oauth.endpoint_params {
        request = request.add_extra_param(name.clone(), value.clone());
    }
    // Owned, so the client is one type for every lifetime the crate asks it for.
    let http_client = Client {
        tls: TlsOptions {
            server_name: None,
            ..spec.tls.clone()
        },
        ip: spec.ip,
        proxy: spec.proxy.clone(),
        ctx: ctx.clone(),
        status: AtomicU16::new(0),
    };
    match request.request_async(&http_client).await {
        Ok(answer) => Ok((answer.access_token().secret().clone(), answer.expires_in())),
        Err(error) => Err(token_failure(
            error,
            &shown,
            http_client.status.load(Ordering::Relaxed),
        )),
    }
}

/// The grant's HTTP client: nightjar's `fetch` for the check, remembering the last status.
struct Client {
    /// The check's roots and client certificate, but the token endpoint's own name.
    tls: TlsOptions,
    ip: crate::net::IpPreference,
    proxy: Option<std::sync::Arc<super::proxy::ProxyOptions>>,
    ctx: CheckCtx,
    status: AtomicU16,
}

impl<'c> AsyncHttpClient<'c> for Client {
    type Error = Transport;
    type Future = TokenFuture<'c>;

    fn call(&'c self, request: HttpRequest) -> TokenFuture<'c> {
        Box::pin(send(request, self))
    }
}

/// One HTTP request of the grant, through `fetch` with the check's TLS and proxy.
async fn send(request: HttpRequest, client: &Client) -> Result<HttpResponse, Transport> {
    let (parts, body) = request.into_parts();
    let url = Url::parse(&parts.uri.to_string()).map_err(|error| {
        Transport(Failure::new(
            FailureReason::Auth,
            format!("invalid token URL: {error}"),
        ))
    })?;
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let mut value = value.clone();
            if name == http::header::AUTHORIZATION {
                value.set_sensitive(true);
            }
            (name.clone(), value)
        })
        .collect();
    let token_spec = HttpSpec::new(
        url,
        HttpOptions {
            headers,
            body: Some(Bytes::from(body)),
            ip: client.ip,
            max_body: MAX_TOKEN_BODY,
            proxy: client.proxy.clone(),
            ..HttpOptions::internal(parts.method, client.tls.clone())
        },
    );
    let mut details = HttpDetails::default();
    let fetched = super::fetch(&token_spec, &client.ctx, &mut details).await;
    let received = fetched.map_err(Transport)?;
    client
        .status
        .store(received.status.as_u16(), Ordering::Relaxed);
    let mut response = http::Response::new(received.body);
    *response.status_mut() = received.status;
    *response.headers_mut() = received.headers;
    Ok(response)
}

type GrantError = RequestTokenError<Transport, oauth2::basic::BasicErrorResponse>;

/// A failed grant as the check's failure: `timeout` when the deadline passed, else `auth`,
/// naming the token URL and what it answered (status, OAuth2 error code).
fn token_failure(error: GrantError, shown: &str, status: u16) -> Failure {
    let phrase = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("");
    let answered = |what: String| {
        Failure::new(
            FailureReason::Auth,
            format!(
                "OAuth2 token endpoint {shown} answered {} {what}",
                format!("{status} {phrase}").trim_end()
            )
            .trim_end()
            .to_string(),
        )
    };
    match error {
        RequestTokenError::Request(Transport(failure)) => {
            let reason = match failure.reason {
                FailureReason::Timeout => FailureReason::Timeout,
                FailureReason::Proxy => FailureReason::Proxy,
                _ => FailureReason::Auth,
            };
            Failure::new(
                reason,
                format!("OAuth2 token request to {shown} failed: {}", failure.detail),
            )
        }
        RequestTokenError::ServerResponse(response) => {
            let mut what = format!("with OAuth2 error {:?}", response.error().as_ref());
            if let Some(description) = response.error_description() {
                what.push_str(&format!(": {description}"));
            }
            answered(what)
        }
        RequestTokenError::Parse(_, _) if status == 200 => {
            answered("with a body that is not an OAuth2 token response".to_string())
        }
        RequestTokenError::Parse(_, _) => {
            answered("with a body that is not an OAuth2 error response".to_string())
        }
        RequestTokenError::Other(message) => answered(format!("({message})")),
    }
}
