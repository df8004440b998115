//! The synthetic good-traffic injector: for each `[[traffic]]`, send requests to the service at
//! `max(0, floor − real rate)`, so that quiet hours carry enough requests for one failure not
//! to page (see README, "SLOs and quiet hours").
//!
//! The real rate comes from a PromQL query against Prometheus's HTTP API, re-evaluated every
//! `refresh`. Arrivals are spread evenly or as a Poisson process, never above `max_rate`,
//! optionally only inside an active time window. Every request is marked (a header and the
//! user agent) and counted; failed injected requests are real failures and are counted and
//! logged as such. If Prometheus cannot be asked, the configured fallback applies, and a metric
//! and a log line say so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::ACCEPT;
use http::{HeaderValue, Method};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};
use url::Url;

use crate::checks::http::{HttpOptions, HttpSpec, HttpVersionPref, TlsOptions, fetch};
use crate::config::{Fallback, TrafficDef};
use crate::metrics::{Metrics, TrafficResult};
use crate::net::{self, TlsSetup};
use crate::reload::Changes;
use crate::result::{Failure, Status};
use crate::runner::RunEnv;

/// The user agent of injected requests.
pub const SYNTHETIC_USER_AGENT: &str =
    concat!("nightjar/", env!("CARGO_PKG_VERSION"), " (synthetic)");

/// At most this many injected requests of one `[[traffic]]` in flight at once; arrivals beyond
/// it are dropped and counted, so a slow service cannot pile requests up.
const MAX_IN_FLIGHT: usize = 64;

/// The running injectors, one per `[[traffic]]`, keyed by name. A reload restarts the
/// injectors whose definition changed, stops removed ones and starts new ones; unchanged
/// ones go on undisturbed.
pub struct Injectors {
    env: RunEnv,
    metrics: Arc<Metrics>,
    running: BTreeMap<String, Injector>,
    /// Replaced injectors still finishing their requests in flight.
    stopping: Vec<JoinHandle<()>>,
}

struct Injector {
    revision: u64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Injectors {
    /// Starts an injector per definition.
    pub fn start(defs: &[Arc<TrafficDef>], env: RunEnv, metrics: Arc<Metrics>) -> Injectors {
        let mut injectors = Injectors {
            env,
            metrics,
            running: BTreeMap::new(),
            stopping: Vec::new(),
        };
        injectors.apply(defs);
        injectors
    }

    /// Applies a new configuration: removed and changed injectors stop, changed and new
    /// ones start (in the configuration's order).
    pub fn apply(&mut self, defs: &[Arc<TrafficDef>]) -> Changes {
        let changes = Changes::between(
            self.running
                .iter()
                .map(|(name, injector)| (name.as_str(), injector.revision)),
            defs.iter().map(|def| (def.name.as_str(), def.revision)),
        );
        for name in &changes.removed {
            self.retire(name);
        }
        self.stopping.retain(|task| !task.is_finished());
        for name in &changes.changed {
            self.retire(name);
        }
        for def in defs {
            if self.running.contains_key(&def.name) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(inject(
                def.clone(),
                self.env.clone(),
                self.metrics.clone(),
                stopped,
            ));
            self.running.insert(
                def.name.clone(),
                Injector {
                    revision: def.revision,
                    stop,
                    task,
                },
            );
        }
        changes
    }

    /// Stops an injector; its requests in flight finish on their own (each within its
    /// timeout).
    fn retire(&mut self, name: &str) {
        if let Some(injector) = self.running.remove(name) {
            let _ = injector.stop.send(true);
            self.stopping.push(injector.task);
        }
    }

    /// Stops every injector at once (no new request starts) and waits at most `within` for
    /// their requests in flight; those still going then are abandoned.
    pub async fn stop(mut self, within: Duration) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.retire(&name);
        }
        let deadline = Instant::now() + within;
        for task in self.stopping {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// What one refresh decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// The real rate Prometheus reported, if it could be asked (requests per second).
    pub real: Option<f64>,
    /// The rate to inject (requests per second).
    pub inject: f64,
}

/// The rate to inject: `max(0, floor − real)`, never above the floor nor `max_rate`; the
/// fallback when the real rate is unknown; nothing outside the active window. A real rate that
/// is not a finite, non-negative number is treated as unknown, so a broken query can never
/// raise the injected rate.
pub fn plan(def: &TrafficDef, real: Option<f64>, active: bool) -> Plan {
    let real = real.filter(|rate| rate.is_finite() && *rate >= 0.0);
    let inject = if !active {
        0.0
    } else {
        match real {
            Some(real) => def.floor - real,
            None => match def.fallback {
                Fallback::Floor => def.floor,
                Fallback::None => 0.0,
            },
        }
    };
    Plan {
        real,
        inject: inject.min(def.floor).min(def.max_rate).max(0.0),
    }
}

/// Runs the injector of `def` until `shutdown` turns true: every `refresh`, reads the real
/// rate, plans, and sends at the planned rate until the next refresh.
async fn inject(
    def: Arc<TrafficDef>,
    env: RunEnv,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let mut injector = Injection {
        def,
        env,
        metrics,
        shutdown,
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        prometheus_was_up: true,
        next: None,
    };
    loop {
        if *injector.shutdown.borrow() {
            break;
        }
        let def = injector.def.clone();
        let refresh_end = Instant::now() + def.refresh;
        let active = def
            .active
            .is_none_or(|window| window.contains(chrono::Utc::now()));
        let real = injector.real_rate(active).await;
        if *injector.shutdown.borrow() {
            // Retired during the query (a reload removed or replaced it, and its series may be
            // gone): nothing more to plan or report.
            break;
        }
        let planned = plan(&def, real, active);
        injector.metrics.traffic_plan(
            &def.name,
            def.floor,
            planned.real,
            planned.inject,
            injector.prometheus_was_up,
        );
        debug!(message = "Traffic planned.", traffic = %def.name, real = ?planned.real, inject = planned.inject);
        injector.send_until(refresh_end, planned.inject).await;
    }
    // Let requests in flight finish (each is bounded by its timeout).
    let _ = injector.permits.acquire_many(MAX_IN_FLIGHT as u32).await;
}

/// A running injector's state across refreshes.
struct Injection {
    def: Arc<TrafficDef>,
    env: RunEnv,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    /// Places for requests in flight, [`MAX_IN_FLIGHT`] in all.
    permits: Arc<Semaphore>,
    /// Whether the last query reached Prometheus, so a change is logged once.
    prometheus_was_up: bool,
    /// The next arrival; `None` until the first plan that injects.
    next: Option<Instant>,
}

impl Injection {
    /// The real rate from Prometheus, when it is configured and the window is `active`; a
    /// failure to read it, or reading it again after one, is logged once.
    async fn real_rate(&mut self, active: bool) -> Option<f64> {
        let def = &self.def;
        let (Some(prometheus), Some(query)) = (&def.prometheus, &def.real_rate) else {
            return None;
        };
        if !active {
            return None;
        }
        match query_rate(&self.env, prometheus, query).await {
            Ok(rate) => {
                if !self.prometheus_was_up {
                    info!(message = "Prometheus answers again; injecting from the real rate.", traffic = %def.name);
                }
                self.prometheus_was_up = true;
                Some(rate)
            }
            Err(error) => {
                if self.prometheus_was_up {
                    warn!(
                        message = "Cannot read the real rate from Prometheus; using the fallback.",
                        traffic = %def.name,
                        fallback = def.fallback.as_str(),
                        error = %crate::text::sanitize(&error, crate::text::MAX_REPLY)
                    );
                }
                self.prometheus_was_up = false;
                None
            }
        }
    }

    /// Sends at `rate` per second until `refresh_end` (or the injector stops). The arrivals
    /// go on from where the last refresh left them (an arrival due at or after a refresh is
    /// sent in the next one), so a refresh neither drops nor adds one: a plan of 4/s sends 4
    /// a second, not 3.
    async fn send_until(&mut self, refresh_end: Instant, rate: f64) {
        if rate <= 0.0 {
            self.next = None;
            self.wait_until(refresh_end).await;
            return;
        }
        let poisson = self.def.poisson;
        loop {
            let at = *self
                .next
                .get_or_insert_with(|| Instant::now() + gap(rate, poisson));
            if at >= refresh_end {
                self.wait_until(refresh_end).await;
                return;
            }
            tokio::select! {
                () = sleep_until(at) => {}
                _ = self.shutdown.changed() => return,
            }
            if *self.shutdown.borrow() {
                return;
            }
            // Arrivals missed while the loop could not run (a slow Prometheus query, a
            // starved runtime) are skipped, not sent in a burst.
            self.next = Some((at + gap(rate, poisson)).max(Instant::now()));
            self.send_one();
        }
    }

    /// Waits until `until`, or until the injector is told to stop.
    async fn wait_until(&mut self, until: Instant) {
        tokio::select! {
            () = sleep_until(until) => {}
            _ = self.shutdown.changed() => {}
        }
    }

    /// Sends one request in a task of its own, or counts it dropped when [`MAX_IN_FLIGHT`]
    /// are in flight.
    fn send_one(&self) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics
                .traffic_request(&self.def.name, TrafficResult::Dropped);
            return;
        };
        let def = self.def.clone();
        let env = self.env.clone();
        let metrics = self.metrics.clone();
        let stopped = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let ok = send(&def, &env).await;
            // A request that ends after its injector stopped (removed or replaced by a
            // reload, whose series may be gone) is not counted.
            if !*stopped.borrow() {
                metrics.traffic_request(&def.name, TrafficResult::of(ok));
            }
        });
    }
}

/// The time to the next arrival at `rate` per second: fixed, or exponential (Poisson).
fn gap(rate: f64, poisson: bool) -> Duration {
    let mean = 1.0 / rate;
    let seconds = if poisson {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        // Uniform in (0, 1], then inverse-transform sampling.
        let uniform = ((u64::from_be_bytes(bytes) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        -mean * uniform.ln()
    } else {
        mean
    };
    Duration::from_secs_f64(seconds.clamp(0.000_1, 3600.0))
}

/// Sends one marked request; true if it passed.
async fn send(def: &TrafficDef, env: &RunEnv) -> bool {
    let ctx = env.ctx(Instant::now() + def.timeout, SYNTHETIC_USER_AGENT);
    let (status, _) = def.request.run(&ctx).await;
    match status {
        Status::Pass => true,
        Status::Fail(Failure { reason, detail }) => {
            debug!(message = "Injected request failed.", traffic = %def.name, reason = reason.as_str(), detail = %crate::text::sanitize(&def.redact(&detail), crate::text::MAX_DETAIL));
            false
        }
    }
}

/// Asks Prometheus for the real request rate (`GET /api/v1/query`): the sum of the vector, or
/// the scalar.
pub async fn query_rate(env: &RunEnv, prometheus: &Url, query: &str) -> Result<f64, String> {
    let mut url = prometheus
        .join("api/v1/query")
        .map_err(|error| format!("cannot build the query URL: {error}"))?;
    url.query_pairs_mut().append_pair("query", query);
    let client = net::client_config(TlsSetup {
        client_auth: None,
        alpn: vec![b"http/1.1".to_vec()],
    })?;
    let tls = TlsOptions::verified(
        Arc::new(client),
        crate::tlsinfo::verifier(net::bundled_roots())?,
    );
    let spec = HttpSpec::new(
        url,
        HttpOptions {
            headers: vec![(ACCEPT, HeaderValue::from_static("application/json"))],
            follow_redirects: true,
            max_redirects: 3,
            version: HttpVersionPref::Http1,
            max_body: 1024 * 1024,
            ..HttpOptions::internal(Method::GET, tls)
        },
    );
    let ctx = env.ctx(
        Instant::now() + Duration::from_secs(10),
        crate::runner::USER_AGENT,
    );
    let mut details = crate::result::HttpDetails::default();
    let received = fetch(&spec, &ctx, &mut details)
        .await
        .map_err(|failure| failure.detail)?;
    if received.status.as_u16() != 200 {
        return Err(format!(
            "Prometheus answered HTTP {}",
            received.status.as_u16()
        ));
    }
    parse_query_result(&received.body)
}

/// The sum of an instant-query result (a vector or a scalar); an empty vector is 0. A sample
/// that is not a number, not finite, or a negative total is an error: a request rate is
/// never negative, and trusting such a value would make the injector send at `max_rate`.
pub fn parse_query_result(body: &[u8]) -> Result<f64, String> {
    let document: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| format!("Prometheus's answer is not JSON: {error}"))?;
    if document["status"] != "success" {
        return Err(format!(
            "the query failed: {}",
            crate::text::sanitize(
                document["error"].as_str().unwrap_or("unknown error"),
                crate::text::MAX_REPLY
            )
        ));
    }
    let value = |sample: &serde_json::Value| -> Result<f64, String> {
        let text = sample
            .get(1)
            .and_then(serde_json::Value::as_str)
            .ok_or("a sample without a value")?;
        match text.parse::<f64>() {
            Ok(rate) if rate.is_finite() => Ok(rate),
            _ => Err(format!(
                "the rate {} is not a finite number",
                crate::text::sanitize(text, 40)
            )),
        }
    };
    let data = &document["data"];
    let total = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or("no result")?
            .iter()
            .map(|series| value(&series["value"]))
            .sum::<Result<f64, String>>()?,
        Some("scalar") => value(&data["result"])?,
        other => {
            return Err(format!(
                "the query gave a {}, not a vector or scalar",
                crate::text::sanitize(other.unwrap_or("nothing"), 40)
            ));
        }
    };
    if !total.is_finite() || total < 0.0 {
        return Err(format!("the real rate {total} is not a request rate"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_results() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2.5"]},{"metric":{},"value":[1,"0.5"]}]}}"#;
        assert_eq!(parse_query_result(vector), Ok(3.0));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_query_result(empty), Ok(0.0));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#;
        assert_eq!(parse_query_result(scalar), Ok(7.0));
        assert!(parse_query_result(br#"{"status":"error","error":"bad"}"#).is_err());
        for hostile in ["-Inf", "+Inf", "NaN", "-1e300", "-1", "1e309", "fast"] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{hostile}"]}}]}}}}"#
            );
            assert!(parse_query_result(body.as_bytes()).is_err(), "{hostile}");
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{hostile}"]}}}}"#
            );
            assert!(parse_query_result(body.as_bytes()).is_err(), "{hostile}");
        }
        // Two huge rates whose sum overflows.
        let overflow = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1e308"]},{"metric":{},"value":[1,"1e308"]}]}}"#;
        assert!(parse_query_result(overflow).is_err());
    }

    #[test]
    fn poisson_gaps_average_to_the_rate() {
        let n = 20_000;
        let total: f64 = (0..n).map(|_| gap(10.0, true).as_secs_f64()).sum();
        let mean = total / f64::from(n);
        assert!((mean - 0.1).abs() < 0.01, "{mean}");
        assert_eq!(gap(4.0, false), Duration::from_millis(250));
    }
}
