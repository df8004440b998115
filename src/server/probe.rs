//! `GET /probe?module=NAME&target=TARGET[&debug=true]`, answering as blackbox_exporter's
//! handler does (`prober/handler.go`): the module's probe run now against the target, its
//! `probe_*` series ([`crate::metrics::blackbox`]), or with `debug=true` the probe's log, those
//! series and the module. An unknown module and a missing target are 400 with
//! blackbox_exporter's messages; no module means `http_2xx`; the timeout is the scrape's
//! (`X-Prometheus-Scrape-Timeout-Seconds`, 120 s without it) less `[agent]
//! probe_timeout_offset`, capped by the module's `timeout`.
//!
//! A `/probe` run never touches the scheduled checks' metrics, states or SLI counters. Built
//! checks are cached per (module, target) in a bounded map that a reload clears, so a scrape
//! reads no TOML, CA file or regex again; at most [`PROBE_RUNS`] run at once, and a request
//! beyond them gets 503 at once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::AppState;
use crate::checks::CheckSpec;
use crate::config::module::ModuleDef;
use crate::config::{CheckDef, Config};
use crate::metrics::blackbox::{ProbeResult, ProbeRun, render};
use crate::result::Status;
use crate::runner::RunEnv;

/// `/probe` runs at once; a request beyond them is answered 503 at once.
pub const PROBE_RUNS: usize = 64;

/// Built checks kept per (module, target).
const CACHE_ENTRIES: usize = 4096;

/// blackbox_exporter's timeout when a scrape sends no header.
const DEFAULT_SCRAPE_TIMEOUT: f64 = 120.0;

/// The module a request without `module=` asks for, as blackbox_exporter.
const DEFAULT_MODULE: &str = "http_2xx";

/// What `/probe` needs: the modules of the current configuration, the cache of built
/// checks, the limit on runs and what runs share.
#[derive(Debug)]
pub struct Probing {
    current: RwLock<Current>,
    cache: Mutex<HashMap<(String, String), Built>>,
    runs: Arc<Semaphore>,
    env: RunEnv,
}

#[derive(Debug, Default)]
struct Current {
    modules: HashMap<String, Arc<ModuleDef>>,
    offset: Duration,
}

/// A module's check for one target, or why the target cannot be probed.
type Built = Result<Arc<CheckDef>, Arc<str>>;

impl Probing {
    /// `/probe` for `config`'s modules, running in `env`.
    pub fn new(config: &Config, env: RunEnv) -> Probing {
        let probing = Probing {
            current: RwLock::new(Current::default()),
            cache: Mutex::new(HashMap::new()),
            runs: Arc::new(Semaphore::new(PROBE_RUNS)),
            env,
        };
        probing.reconfigure(config);
        probing
    }

    /// Takes the modules and offset of `config` (after a reload) and forgets every built check.
    pub fn reconfigure(&self, config: &Config) {
        let modules = config
            .modules
            .iter()
            .map(|module| (module.name.clone(), module.clone()))
            .collect();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Current {
            modules,
            offset: config.agent.probe_timeout_offset,
        };
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn module(&self, name: &str) -> Option<(Arc<ModuleDef>, Duration)> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        let module = current.modules.get(name)?.clone();
        Some((module, current.offset))
    }

    /// The module's check for `target`, built once (off the async workers: it may read CA
    /// and secret files) and then kept.
    async fn built(&self, module: &Arc<ModuleDef>, target: &str) -> Built {
        let key = (module.name.clone(), target.to_string());
        if let Some(built) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return built.clone();
        }
        let (building, owned) = (module.clone(), target.to_string());
        let built: Built = tokio::task::spawn_blocking(move || {
            building
                .check(&owned, Duration::from_secs_f64(DEFAULT_SCRAPE_TIMEOUT))
                .map(Arc::new)
                .map_err(Arc::from)
        })
        .await
        .unwrap_or_else(|_| Err(Arc::from("building the check failed")));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // The module may have been reloaded meanwhile: keep only what the current one built.
        let current = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .modules
            .get(&module.name)
            .is_some_and(|now| Arc::ptr_eq(now, module));
        if current {
            if cache.len() >= CACHE_ENTRIES
                && let Some(evict) = cache.keys().next().cloned()
            {
                cache.remove(&evict);
            }
            cache.insert(key, built.clone());
        }
        built
    }
}

/// blackbox_exporter's plain-text error answer (Go's `http.Error`).
fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// blackbox_exporter's `getTimeout`: the scrape's timeout (120 s without the header) less
/// `offset`, unless the module's own is shorter (or the difference negative).
fn probe_timeout(
    headers: &HeaderMap,
    module: Option<Duration>,
    offset: Duration,
) -> Result<f64, String> {
    let mut seconds = match headers.get("x-prometheus-scrape-timeout-seconds") {
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            text.trim()
                .parse::<f64>()
                .map_err(|_| format!("strconv.ParseFloat: parsing {text:?}: invalid syntax"))?
        }
        None => 0.0,
    };
    if seconds == 0.0 {
        seconds = DEFAULT_SCRAPE_TIMEOUT;
    }
    let most = seconds - offset.as_secs_f64();
    let module = module.map_or(0.0, |timeout| timeout.as_secs_f64());
    Ok(if (module < most && module > 0.0) || most < 0.0 {
        module
    } else {
        most
    })
}

/// `GET /probe`.
pub(super) async fn probe(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    let counter = &state.metrics.probes;
    let name = param("module").unwrap_or(DEFAULT_MODULE);
    let Some((module, offset)) = state.probes.module(name) else {
        counter.count("", ProbeResult::Invalid);
        return error(StatusCode::BAD_REQUEST, format!("Unknown module {name:?}"));
    };
    let seconds = match probe_timeout(&headers, module.timeout, offset) {
        Ok(seconds) => seconds,
        Err(message) => {
            counter.count(&module.name, ProbeResult::Invalid);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Failed to parse timeout from Prometheus header: {message}"),
            );
        }
    };
    let Some(target) = param("target") else {
        counter.count(&module.name, ProbeResult::Invalid);
        return error(
            StatusCode::BAD_REQUEST,
            "Target parameter is missing".to_string(),
        );
    };
    let Ok(_permit) = state.probes.runs.clone().try_acquire_owned() else {
        counter.count(&module.name, ProbeResult::Throttled);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            format!("Too many /probe requests in flight (at most {PROBE_RUNS}); try again.\n"),
        )
            .into_response();
    };
    let debug = params
        .iter()
        .any(|(key, value)| key == "debug" && value == "true");
    let timeout = Duration::from_secs_f64(seconds.max(0.0));
    let answer = run(&state.probes, &module, target, timeout, seconds).await;
    counter.count(
        &module.name,
        if answer.success {
            ProbeResult::Success
        } else {
            ProbeResult::Failure
        },
    );
    if debug {
        let text = format!(
            "Logs for the probe:\n{}\n\n\nMetrics that would have been returned:\n{}\n\n\nModule configuration:\n{}",
            answer.log,
            answer.metrics,
            module.shown(&answer.secrets)
        );
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response();
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        answer.metrics,
    )
        .into_response()
}

/// What a probe gives back.
struct Answer {
    success: bool,
    metrics: String,
    log: String,
    secrets: Vec<String>,
}

/// Runs `module` against `target` within `timeout`.
async fn run(
    probing: &Probing,
    module: &Arc<ModuleDef>,
    target: &str,
    timeout: Duration,
    seconds: f64,
) -> Answer {
    let mut log = Log::new(&module.name, target);
    log.line(
        "info",
        "Beginning probe",
        &[
            ("probe", module.kind.as_str().to_string()),
            ("timeout_seconds", seconds.to_string()),
        ],
    );
    let start = Instant::now();
    let built = probing.built(module, target).await;
    let (result, def) = match &built {
        Ok(def) => (
            Some(crate::runner::run_within(def, &probing.env, timeout).await),
            Some(def),
        ),
        Err(problem) => {
            for line in problem.lines() {
                log.line("error", line, &[]);
            }
            (None, None)
        }
    };
    let duration = start.elapsed();
    let success = result.as_ref().is_some_and(|result| result.is_success());
    if let Some(result) = &result {
        log_facts(&mut log, &result.details);
    }
    if let Some(Status::Fail(failure)) = result.as_ref().map(|result| &result.status) {
        log.line(
            "error",
            &failure.detail,
            &[("reason", failure.reason.as_str().to_string())],
        );
    }
    let seconds = duration.as_secs_f64().to_string();
    if success {
        log.line("info", "Probe succeeded", &[("duration_seconds", seconds)]);
    } else {
        log.line("error", "Probe failed", &[("duration_seconds", seconds)]);
    }
    let none = crate::result::Details::None;
    let soa_query = def.is_some_and(|def| {
        matches!(&def.spec, CheckSpec::Dns(dns)
            if dns.record == hickory_proto::rr::RecordType::SOA)
    });
    let metrics = render(&ProbeRun {
        kind: module.kind,
        target_ok: def.is_some(),
        success,
        duration,
        details: result.as_ref().map_or(&none, |result| &result.details),
        status: result.as_ref().map(|result| &result.status),
        soa_query,
        target_ip: def.and_then(|_| literal_ip(module, target)),
    });
    let secrets = def.map(|def| def.secrets.clone()).unwrap_or_default();
    Answer {
        success,
        metrics,
        log: crate::config::redact(&secrets, &log.text),
        secrets,
    }
}

/// What the run saw, as blackbox_exporter's probers log it: the address, the HTTP status.
fn log_facts(log: &mut Log, details: &crate::result::Details) {
    if let Some(addr) = details.remote_addr().flatten() {
        log.line(
            "info",
            "Resolved target address",
            &[("ip", addr.ip().to_string())],
        );
    }
    if let crate::result::Details::Http(http) = details
        && let Some(code) = http.status_code
    {
        log.line(
            "info",
            "Received HTTP response",
            &[("status_code", code.to_string())],
        );
    }
}

/// The address a target names literally (`http://127.0.0.1:8080/`, `[::1]:53`, `10.0.0.1`).
fn literal_ip(module: &ModuleDef, target: &str) -> Option<std::net::IpAddr> {
    let (_, value) = crate::blackbox::target_entry(module.kind, target);
    if let Ok(url) = url::Url::parse(&value)
        && url.has_host()
    {
        return match url.host()? {
            url::Host::Ipv4(ip) => Some(ip.into()),
            url::Host::Ipv6(ip) => Some(ip.into()),
            url::Host::Domain(_) => None,
        };
    }
    value
        .parse::<std::net::SocketAddr>()
        .map(|addr| addr.ip())
        .or_else(|_| value.trim_matches(['[', ']']).parse())
        .ok()
}

/// The probe's log as blackbox_exporter's debug output shows it: logfmt lines.
struct Log {
    module: String,
    target: String,
    text: String,
}

impl Log {
    fn new(module: &str, target: &str) -> Log {
        Log {
            module: module.to_string(),
            target: crate::text::sanitize(target, crate::text::MAX_NAME).into_owned(),
            text: String::new(),
        }
    }

    fn line(&mut self, level: &str, message: &str, fields: &[(&str, String)]) {
        let ts = chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let _ = write!(
            self.text,
            "ts={ts} caller=probe module={} target={} level={level} msg={}",
            logfmt(&self.module),
            logfmt(&self.target),
            logfmt(message)
        );
        for (key, value) in fields {
            let _ = write!(self.text, " {key}={}", logfmt(value));
        }
        self.text.push('\n');
    }
}

/// A logfmt value: bare when it needs no quoting.
fn logfmt(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control())
    {
        return value.to_string();
    }
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-prometheus-scrape-timeout-seconds",
            value.parse().unwrap(),
        );
        headers
    }

    #[test]
    fn timeout_is_blackbox_exporters() {
        let half = Duration::from_millis(500);
        let none = HeaderMap::new();
        assert_eq!(probe_timeout(&none, None, half), Ok(119.5));
        assert_eq!(probe_timeout(&header("10"), None, half), Ok(9.5));
        // The module's timeout caps it when shorter.
        assert_eq!(
            probe_timeout(&header("10"), Some(Duration::from_secs(5)), half),
            Ok(5.0)
        );
        assert_eq!(
            probe_timeout(&header("3"), Some(Duration::from_secs(5)), half),
            Ok(2.5)
        );
        // Below the offset, the module's own.
        assert_eq!(
            probe_timeout(&header("0.2"), Some(Duration::from_secs(5)), half),
            Ok(5.0)
        );
        assert!(probe_timeout(&header("soon"), None, half).is_err());
    }
}
