//! blackbox_exporter's configuration, read as nightjar's.
//!
//! A blackbox module (`prober` and its options) becomes a nightjar check table without a name
//! and a target: TOML text in nightjar's own keys ([`Module::table`]). The same text serves
//! `/probe?module=&target=` (the target filled in per request through [`target_entry`]) and
//! `nightjar import blackbox` (which writes it out), so an imported check and a `/probe` of
//! the same module and target run the same probe. Options that have no nightjar equivalent
//! are [`Unsupported`], each with its place in the file and the reason.

use std::path::PathBuf;

use crate::kind::CheckKind;

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
    /// The module it belongs to.
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
