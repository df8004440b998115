//! Push every series to Prometheus remote-write endpoints (protocol 1.0: protobuf, snappy
//! block compression), so agents behind NAT report with no inbound port.
//!
//! Every `interval` the registry is snapshotted into batches and queued; the queue is bounded
//! (in samples) and drops its oldest batches when full, counting them. Batches are sent in
//! order; a 5xx, a 429 or a network error is retried with exponential backoff, any other 4xx is
//! dropped (the endpoint will not accept it however often it is sent).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method};
use prometheus::proto::MetricType;
use prost::Message as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use crate::checks::http::{HttpOptions, HttpSpec, fetch};
use crate::config::RemoteWriteDef;
use crate::metrics::{Metrics, RemoteResult};
use crate::reload::Changes;
use crate::result::{Failure, HttpDetails};
use crate::runner::RunEnv;

/// `prometheus.WriteRequest` of remote-write 1.0.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Hands every series of `families` to `each` as a remote-write series at `timestamp_ms`,
/// with the `extra` labels (the agent's name), one at a time, so a caller can encode batches
/// without holding every series' labels at once.
pub fn each_series(
    families: &[prometheus::proto::MetricFamily],
    extra: &[(String, String)],
    timestamp_ms: i64,
    each: &mut dyn FnMut(TimeSeries),
) {
    for family in families {
        let name = family.name();
        for metric in family.get_metric() {
            let base: Vec<(String, String)> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name().to_string(), pair.value().to_string()))
                .chain(extra.iter().cloned())
                .collect();
            let mut push = |suffix: &str, more: Option<(&str, String)>, value: f64| {
                let mut labels: Vec<Label> = base
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect();
                labels.push(Label {
                    name: "__name__".to_string(),
                    value: format!("{name}{suffix}"),
                });
                if let Some((label, value)) = more {
                    labels.push(Label {
                        name: label.to_string(),
                        value,
                    });
                }
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                each(TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value,
                        timestamp: timestamp_ms,
                    }],
                });
            };
            match family.get_field_type() {
                MetricType::COUNTER => push("", None, metric.get_counter().get_value()),
                MetricType::GAUGE => push("", None, metric.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let histogram = metric.get_histogram();
                    for bucket in histogram.get_bucket() {
                        push(
                            "_bucket",
                            Some(("le", format_le(bucket.upper_bound()))),
                            bucket.cumulative_count() as f64,
                        );
                    }
                    push(
                        "_bucket",
                        Some(("le", "+Inf".to_string())),
                        histogram.get_sample_count() as f64,
                    );
                    push("_sum", None, histogram.get_sample_sum());
                    push("_count", None, histogram.get_sample_count() as f64);
                }
                _ => {}
            }
        }
    }
}

fn format_le(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_string()
    } else {
        format!("{bound}")
    }
}

/// Encodes and compresses a batch as the remote-write body.
pub fn encode(series: &[TimeSeries]) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: series.to_vec(),
    };
    let raw = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input")
}

/// How long the last flush at shutdown may take, whatever the endpoints' timeouts.
pub const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// The endpoint a pusher pushes to, and the `agent` label it adds; replaced on reload.
type Target = (Arc<RemoteWriteDef>, String);

/// The running pushers, one per endpoint, keyed by name. A reload replaces an endpoint's
/// definition in place, so its queue (samples waiting while the endpoint was down) is kept;
/// removed endpoints stop, new ones start.
pub struct Pushers {
    env: RunEnv,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    agent: String,
    running: BTreeMap<String, Pusher>,
}

struct Pusher {
    target: watch::Sender<Target>,
    task: JoinHandle<()>,
}

impl Pushers {
    /// Starts a pusher per endpoint; they push until `shutdown` turns true, then once more.
    pub fn start(
        defs: &[Arc<RemoteWriteDef>],
        agent: String,
        env: RunEnv,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Pushers {
        let mut pushers = Pushers {
            env,
            metrics,
            shutdown,
            agent,
            running: BTreeMap::new(),
        };
        pushers.apply(defs, &pushers.agent.clone());
        pushers
    }

    /// Applies a new configuration: new endpoints start, removed ones stop (their queues are
    /// dropped), changed ones go on with the new definition and the same queue.
    pub fn apply(&mut self, defs: &[Arc<RemoteWriteDef>], agent: &str) -> Changes {
        let mut changes = Changes::between(
            self.running
                .iter()
                .map(|(name, pusher)| (name.as_str(), pusher.target.borrow().0.revision)),
            defs.iter().map(|def| (def.name.as_str(), def.revision)),
        );
        if agent != self.agent {
            // Every kept endpoint's series get the new `agent` label.
            changes.changed = defs
                .iter()
                .filter(|def| self.running.contains_key(&def.name))
                .map(|def| def.name.clone())
                .collect();
            self.agent = agent.to_string();
        }
        for name in &changes.removed {
            // Aborted, a push in flight included; its queue and series go.
            if let Some(pusher) = self.running.remove(name) {
                pusher.task.abort();
            }
        }
        for def in defs {
            let target = (def.clone(), self.agent.clone());
            match self.running.get(&def.name) {
                Some(pusher) if changes.changed.contains(&def.name) => {
                    pusher.target.send_replace(target);
                }
                Some(_) => {}
                None => self.spawn(def, target),
            }
        }
        changes
    }

    /// Starts the pusher of `def`, pushing to `target`.
    fn spawn(&mut self, def: &RemoteWriteDef, target: Target) {
        let (sender, receiver) = watch::channel(target);
        let task = tokio::spawn(push_loop(
            receiver,
            self.env.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ));
        self.running.insert(
            def.name.clone(),
            Pusher {
                target: sender,
                task,
            },
        );
    }

    /// Waits for every pusher to end: after shutdown each pushes once more, so this returns
    /// within the longest push timeout.
    pub async fn join(self) {
        for (_, pusher) in self.running {
            let _ = pusher.task.await;
        }
    }
}

enum Outcome {
    Sent,
    Rejected(String),
    Retry(String),
}

/// Pushes to the endpoint of `target` every interval until `shutdown` turns true, then once
/// more, within [`FINAL_FLUSH`].
async fn push_loop(
    target: watch::Receiver<Target>,
    env: RunEnv,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let mut push = Push {
        env,
        metrics,
        shutdown,
        queue: Queue::default(),
        failing: false,
    };
    let mut next_tick = Instant::now();
    loop {
        // The definition of this round: a reload may have replaced it.
        let (def, agent) = target.borrow().clone();
        let stopping = *push.shutdown.borrow();
        push.snapshot(&def, agent);
        next_tick += def.interval;
        push.send_queue(&def, stopping, next_tick).await;
        push.metrics
            .remote_write_queue(&def.name, push.queue.samples);
        if stopping {
            break;
        }
        if *push.shutdown.borrow() {
            // Stopped during this round: the last flush now, not at the next tick.
            continue;
        }
        // Wait for the next round; a new definition applies from it.
        tokio::select! {
            () = sleep_until(next_tick) => {}
            _ = push.shutdown.changed() => {}
        }
        if Instant::now() > next_tick + def.interval {
            next_tick = Instant::now();
        }
    }
}

/// A pusher's state across rounds: its queue, whether its endpoint is failing, and what it
/// pushes with and reports to.
struct Push {
    env: RunEnv,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    queue: Queue,
    failing: bool,
}

impl Push {
    /// Queues a snapshot of the registry in batches of at most `max_batch` series, with the
    /// `agent` label, then drops the oldest batches beyond `max_queue` samples.
    fn snapshot(&mut self, def: &RemoteWriteDef, agent: String) {
        let extra = vec![("agent".to_string(), agent)];
        let now_ms = crate::time::since_epoch(SystemTime::now()).as_millis() as i64;
        let mut batch = Vec::with_capacity(def.max_batch.min(5_000));
        let queue = &mut self.queue;
        each_series(&self.metrics.gather(), &extra, now_ms, &mut |series| {
            batch.push(series);
            if batch.len() >= def.max_batch {
                queue.seal(&mut batch);
            }
        });
        queue.seal(&mut batch);
        while queue.samples > def.max_queue {
            let Some(oldest) = queue.pop() else {
                break;
            };
            self.metrics
                .remote_write(&def.name, RemoteResult::Dropped, oldest.samples);
        }
    }

    /// Sends the queued batches in order, retrying with backoff until the next snapshot is
    /// due at `next_tick`. The last flush at shutdown (`stopping`) has [`FINAL_FLUSH`] in
    /// all, so a slow or dead endpoint cannot hold the agent's exit.
    async fn send_queue(&mut self, def: &RemoteWriteDef, stopping: bool, next_tick: Instant) {
        let flush_by = stopping.then(|| Instant::now() + FINAL_FLUSH);
        let mut backoff = Duration::from_millis(250);
        while let Some(batch) = self.queue.batches.front() {
            let deadline = match flush_by {
                Some(by) if Instant::now() >= by => break,
                Some(by) => by.min(Instant::now() + def.timeout),
                None => Instant::now() + def.timeout,
            };
            let samples = batch.samples;
            // A push in flight when the agent stops is abandoned (its batch stays queued)
            // for the bounded last flush.
            let outcome = tokio::select! {
                outcome = send(def, &self.env, batch.body.clone(), deadline) => outcome,
                _ = self.shutdown.changed(), if !stopping => break,
            };
            match outcome {
                Outcome::Sent => {
                    if self.failing {
                        info!(message = "Remote write recovered.", remote = %def.name);
                        self.failing = false;
                    }
                    self.metrics
                        .remote_write(&def.name, RemoteResult::Sent, samples);
                    self.queue.pop();
                    backoff = Duration::from_millis(250);
                }
                Outcome::Rejected(why) => {
                    warn!(message = "Remote write rejected a batch; dropping it.", remote = %def.name, reason = %why);
                    self.metrics
                        .remote_write(&def.name, RemoteResult::Rejected, samples);
                    self.queue.pop();
                }
                Outcome::Retry(why) => {
                    if !self.failing {
                        warn!(message = "Remote write failed; retrying with backoff.", remote = %def.name, reason = %why);
                        self.failing = true;
                    }
                    self.metrics.remote_write_retry(&def.name);
                    let wake = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    if stopping || wake >= next_tick {
                        break;
                    }
                    tokio::select! {
                        () = sleep_until(wake) => {}
                        _ = self.shutdown.changed() => break,
                    }
                }
            }
        }
    }
}

/// The batches waiting to be sent, oldest first. They are queued encoded and compressed, as
/// they will be sent: about 20 bytes a sample instead of about 1.4 KB of label strings, so a
/// long outage stays cheap.
#[derive(Default)]
struct Queue {
    batches: VecDeque<Batch>,
    /// The samples of every batch.
    samples: usize,
}

impl Queue {
    /// Queues `batch` as one request, unless it is empty, and empties it.
    fn seal(&mut self, batch: &mut Vec<TimeSeries>) {
        if !batch.is_empty() {
            self.samples += batch.len();
            self.batches.push_back(Batch {
                samples: batch.len(),
                body: Bytes::from(encode(batch)),
            });
            batch.clear();
        }
    }

    /// Takes the oldest batch off the queue.
    fn pop(&mut self) -> Option<Batch> {
        let oldest = self.batches.pop_front()?;
        self.samples -= oldest.samples;
        Some(oldest)
    }
}

/// One queued request: its body, encoded and compressed, and how many samples it holds.
struct Batch {
    samples: usize,
    body: Bytes,
}

async fn send(def: &RemoteWriteDef, env: &RunEnv, body: Bytes, deadline: Instant) -> Outcome {
    let mut headers = def.headers.clone();
    headers.push((CONTENT_ENCODING, HeaderValue::from_static("snappy")));
    headers.push((
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    ));
    headers.push((
        HeaderName::from_static("x-prometheus-remote-write-version"),
        HeaderValue::from_static("0.1.0"),
    ));
    let spec = HttpSpec::new(
        def.url.clone(),
        HttpOptions {
            headers,
            body: Some(body),
            ip: def.ip,
            max_body: 64 * 1024,
            ..HttpOptions::internal(Method::POST, def.tls.clone())
        },
    );
    let ctx = env.ctx(deadline, crate::runner::USER_AGENT);
    let mut details = HttpDetails::default();
    match fetch(&spec, &ctx, &mut details).await {
        Ok(received) => {
            let code = received.status.as_u16();
            // An error reply goes to a log: secrets out (an endpoint may echo the
            // credentials it was sent), control characters escaped so it cannot forge a log
            // line, length capped.
            let said = || format!("HTTP {code}: {}", reply_text(def, &received.body).trim());
            match code {
                200..=299 => Outcome::Sent,
                429 | 500..=599 => Outcome::Retry(said()),
                _ => Outcome::Rejected(said()),
            }
        }
        Err(Failure { detail, .. }) => Outcome::Retry(
            crate::text::sanitize(&def.redact(&detail), crate::text::MAX_DETAIL).into_owned(),
        ),
    }
}

/// An endpoint's reply as a log may show it: redacted of the endpoint's secrets and of every
/// sensitive header value sent to it, sanitised, at most `text::MAX_REPLY` bytes.
fn reply_text(def: &RemoteWriteDef, body: &[u8]) -> String {
    let mut secrets = def.secrets.clone();
    for (_, value) in def.headers.iter().filter(|(_, value)| value.is_sensitive()) {
        if let Ok(value) = value.to_str() {
            secrets.push(value.to_string());
            if let Some((_, credential)) = value.split_once(' ') {
                secrets.push(credential.to_string());
            }
        }
    }
    // Longest first, so a header value is replaced whole before a part of it.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    let text = crate::text::redact(&secrets, &String::from_utf8_lossy(body));
    crate::text::sanitize(text.trim(), crate::text::MAX_REPLY).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_snappy_and_protobuf() {
        let series = vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "probe_success".into(),
                },
                Label {
                    name: "check".into(),
                    value: "a".into(),
                },
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1_700_000_000_000,
            }],
        }];
        let body = encode(&series);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let decoded = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(decoded.timeseries, series);
    }
}
