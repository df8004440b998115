//! The check kinds by name: what `type = "..."` accepts and the `type` label shows.
//!
//! A leaf: it imports nothing from the crate, so results, metrics and the configuration name
//! a kind without importing the checks. What each kind does lives in `checks/`.

use std::str::FromStr;

/// The type of a check, as written in `type = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckKind {
    /// An HTTP(S) request with assertions.
    Http,
    /// A TLS handshake: certificate chain, expiry, version.
    Tls,
    /// A TCP connect, optionally with a request and an expected answer.
    Tcp,
    /// Domain registration expiry from RDAP.
    Domain,
    /// A DNS query with expectations, or SOA consistency across a zone's servers.
    Dns,
    /// HTTP steps in order, sharing cookies and variables: a login.
    Flow,
}

impl CheckKind {
    /// Every supported kind.
    pub const ALL: &'static [CheckKind] = &[
        CheckKind::Http,
        CheckKind::Tls,
        CheckKind::Tcp,
        CheckKind::Dns,
        CheckKind::Domain,
        CheckKind::Flow,
    ];

    /// The name used in config and as the `type` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Http => "http",
            CheckKind::Tls => "tls",
            CheckKind::Tcp => "tcp",
            CheckKind::Domain => "domain",
            CheckKind::Dns => "dns",
            CheckKind::Flow => "flow",
        }
    }
}

impl FromStr for CheckKind {
    type Err = ();

    fn from_str(text: &str) -> Result<CheckKind, ()> {
        CheckKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
            .ok_or(())
    }
}
