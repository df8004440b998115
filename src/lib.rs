//! nightjar: a synthetic-probe agent. It runs scheduled checks defined in TOML, exports the
//! results as Prometheus metrics that serve as availability and latency SLIs, and serves them
//! from its own small HTTP server.
//!
//! # Layout
//!
//! Read in this order; each module is one stage of the pipeline
//! config → schedule → check → result → metrics/status → server.
//!
//! - [`config`]: load TOML files, substitute `${env:..}`/`${file:..}` secrets, validate, and
//!   report every problem at once as `file:line:column: message`.
//! - [`schedule`]: one task per check; interval at a stable offset or cron; no overlap; a
//!   concurrency cap; graceful shutdown.
//! - [`runner`]: run one check once under its timeout; redact secrets from the outcome.
//! - [`checks`]: the check kinds (`http`, `tls`), each returning a value, never an `Err`, for a
//!   failing target.
//! - [`net`]: resolver, timed connects, rustls client configurations.
//! - [`tlsinfo`]: the presented certificate chain, parsed, and the verdicts on it.
//! - [`text`]: text from targets made safe to show; secrets redacted in every URL encoding.
//! - [`result`]: [`result::CheckResult`], [`result::Status`], the bounded
//!   [`result::FailureReason`].
//! - [`metrics`]: the only place metric names exist.
//! - [`status`]: the latest result per check and the JSON views.
//! - [`server`]: `/metrics`, `/-/healthy`, `/-/ready`, `/api/v1/checks`.
//! - [`rules`]: `nightjar rules`: burn-rate, expiry, quorum and agent alerts for Prometheus.
//! - [`remote_write`]: push every series to Prometheus remote-write endpoints.
//! - [`traffic`]: the synthetic good-traffic injector for quiet hours.
//! - [`blackbox`]: blackbox_exporter's modules as nightjar checks, for `/probe` and the importer.
//! - [`discovery`]: templates' targets from file_sd files, HTTP SD and DNS records.
//! - [`agent`]: wires the stages together for `nightjar run`.
//! - [`cli`]: the command line.
//! - Leaves, which import nothing from the crate: [`time`] (the clock, RFC 3339, days left and
//!   the expiry text), [`tiers`] (alert tiers and floor maths), [`kind`] (check kinds by name),
//!   [`hash`] (the stable hash of names), [`synthetic`] (the injected requests' header),
//!   [`reload`] (reload requests and replies), [`text`].
//!
//! # Invariants
//!
//! - No cycle between modules; `checks` never imports `metrics`, `status` or `server`
//!   (`tests/it/architecture.rs` reads the imports and fails on a violation).
//! - Only `config` reads config files, secret files and the environment for values.
//! - Only `metrics` spells metric names.
//! - Every run is bounded by its check's timeout; no target can make the agent panic, hang or
//!   grow without bound.
//! - Secret values never leave a check: details are redacted before they leave the runner.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod agent;
pub mod blackbox;
pub mod checks;
pub mod cli;
pub mod config;
pub mod detect;
pub mod discovery;
pub mod fleet;
pub mod hash;
pub mod keys;
pub mod kind;
pub mod maintenance;
pub mod metrics;
pub mod net;
pub mod outcome;
pub mod page;
mod reader;
pub mod reload;
pub mod remote_write;
pub mod result;
pub mod rules;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod state;
pub mod status;
pub mod synthetic;
pub mod text;
pub mod tiers;
pub mod time;
pub mod tlsinfo;
pub mod traffic;
