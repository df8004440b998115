//! blackbox_exporter's configuration, read as nightjar's.
//!
//! A blackbox module (`prober` and its options) becomes a nightjar check table without a name
//! and a target: TOML text in nightjar's own keys ([`Module::table`]). The same text serves
//! `/probe?module=&target=` (the target filled in per request through [`target_entry`]) and
//! `nightjar import blackbox` (which writes it out), so an imported check and a `/probe` of
//! the same module and target run the same probe. Options that have no nightjar equivalent
//! are [`Unsupported`], each with its place in the file and the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kind::CheckKind;
use crate::reader::ConfigError;

pub mod import;
mod map;
mod targets;
mod toml_out;
pub(crate) mod yaml;

/// What a `blackbox.yml` holds: its modules in nightjar's keys, and the options that could not
/// be carried over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The modules, in the file's order.
    pub modules: Vec<Module>,
    /// Every option that has no nightjar equivalent, in the file's order. A module with such
    /// an option is still in [`Parsed::modules`], without that option.
    pub unsupported: Vec<Unsupported>,
}

/// Reads blackbox_exporter's configuration (`modules:` → name → `prober`, `timeout` and the
/// prober's table) from `text`, the contents of `path` (named in errors and origins).
///
/// `Err` is a file that is not blackbox configuration at all: YAML that does not parse (with
/// its line and column), a top level without `modules`, a module that is not a mapping or has
/// an unknown `prober`. Everything blackbox_exporter would reject or nightjar cannot do inside
/// a module (an unknown or unsupported option, a value of the wrong type) is an
/// [`Unsupported`] entry instead, so a file is read as far as it can be.
pub fn parse(path: &Path, text: &str) -> Result<Parsed, ConfigError> {
    let root = yaml::load(path, text)?;
    map::modules(path, &root)
}

/// One module: a check without its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// The module's name, as `/probe?module=` asks for it.
    pub name: String,
    /// The check kind its prober maps onto.
    pub kind: CheckKind,
    /// The module as the body of a nightjar `[[check]]` table in TOML text, with `type` and
    /// every option, but without `name` and the target key ([`target_entry`] gives that).
    pub table: String,
    /// Where it was defined.
    pub origin: Origin,
    /// Secrets written inline in the YAML (passwords, bearer tokens, client secrets): the
    /// [`Module::table`] refers to each as `${env:NAME}`, and this maps each such `NAME` to
    /// the value from the file. A reader of the table resolves these names from here before
    /// the process environment and registers the values as secrets (so they are redacted
    /// like any `${env:..}` value); `nightjar import` instead writes the references and lists
    /// the variables to set. The names are `BLACKBOX_<MODULE>_<OPTION>` in upper case.
    pub secrets: BTreeMap<String, String>,
    /// blackbox_exporter's prober (`http`, `tcp`, `icmp`, `dns`, `grpc`, `unix`,
    /// `websocket`): `unix` is a `tcp` check whose target is `unix:PATH` ([`Module::target`]).
    pub prober: String,
}

impl Module {
    /// [`target_entry`] for this module's prober: a `unix` module's socket path becomes
    /// `unix:PATH`.
    pub fn target(&self, target: &str) -> (&'static str, String) {
        if self.prober == "unix" && !target.starts_with("unix:") {
            return ("target", format!("unix:{target}"));
        }
        target_entry(self.kind, target)
    }
}

/// A place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
}

/// An option of a blackbox module that nightjar cannot carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Where the option is written.
    pub origin: Origin,
    /// The module it belongs to (empty for an option outside `modules`).
    pub module: String,
    /// The option's path, e.g. `http.http_client_config.follow_redirects`.
    pub option: String,
    /// Why it cannot be carried over, and what to do instead where there is something.
    pub reason: String,
}

/// The key and value that put a `/probe` target into a module's check table, as
/// blackbox_exporter reads the target for that prober: a URL for `http` (`http://` added when
/// it has no scheme) and `websocket`, the name server for `dns`, `HOST:PORT` for `tcp` and
/// `grpc`, a host for `icmp`, and a socket path for `unix` (a `tcp` check on `unix:PATH`).
pub fn target_entry(kind: CheckKind, target: &str) -> (&'static str, String) {
    match kind {
        CheckKind::Http if !target.contains("://") => ("url", format!("http://{target}")),
        CheckKind::Http | CheckKind::Websocket | CheckKind::Flow => ("url", target.to_owned()),
        CheckKind::Dns => ("server", target.to_owned()),
        CheckKind::Domain => ("domain", target.to_owned()),
        CheckKind::Tls | CheckKind::Tcp | CheckKind::Grpc | CheckKind::Icmp | CheckKind::Udp => {
            ("target", target.to_owned())
        }
    }
}
