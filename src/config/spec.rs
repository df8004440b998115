//! What every check's reading shares with a module's: its `type`, its `source_ip`, and the
//! dispatch of its table to its kind's reader (`checks::<kind>::config::read`), generated from
//! the kinds table. Both `validate` (checks) and `module` (`[[module]]` tables and blackbox
//! modules) read through here.

use std::str::FromStr;

use crate::checks::{CheckKind, CheckSpec};
use crate::reader::Table;

/// `source_ip`: the local address a check's connections and datagrams leave from, defaulting
/// to `[defaults]`'s (the system picks one when neither sets it).
pub(super) fn read_source_ip(
    table: &Table<'_>,
    inherited: Option<std::net::IpAddr>,
) -> Option<std::net::IpAddr> {
    let Some((text, span)) = table.str("source_ip") else {
        return inherited;
    };
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            table.diags().error_hint(
                &span,
                format!("source_ip {text:?} is not an IP address"),
                "write an address of this host, such as source_ip = \"192.0.2.10\" or \"2001:db8::10\"",
            );
            inherited
        }
    }
}

/// `type`: one of the check kinds.
pub(super) fn read_kind(table: &Table<'_>) -> Option<CheckKind> {
    let d = table.diags();
    match table.str("type") {
        Some((text, span)) => match CheckKind::from_str(text) {
            Ok(kind) => Some(kind),
            Err(()) => {
                let names: Vec<&str> = CheckKind::ALL.iter().map(|k| k.as_str()).collect();
                let hint = match crate::reader::closest(text, &names) {
                    Some(best) => format!(
                        "did you mean {best:?}? supported types: {}",
                        names.join(", ")
                    ),
                    None => format!("supported types: {}", names.join(", ")),
                };
                d.error_hint(&span, format!("unknown check type {text:?}"), hint);
                None
            }
        },
        None => {
            table.missing("type", "set type = \"http\" or \"tls\"");
            None
        }
    }
}

macro_rules! define_readers {
    ($(($variant:ident, $module:ident, $name:literal, $spec:ident, $doc:literal)),* $(,)?) => {
        /// Reads the kind-specific keys of a check of `kind` (each kind's `checks::<kind>::config::read`):
        /// its spec and its target as shown (without credentials).
        pub(super) fn read_spec(kind: CheckKind, table: &Table<'_>, cx: &mut crate::reader::SpecCx<'_>) -> Option<(CheckSpec, String)> {
            match kind {
                $(CheckKind::$variant => {
                    table.with_keys(&crate::keys::checks::$module::KEYS);
                    crate::checks::$module::config::read(table, cx)
                    .map(|(spec, target)| (CheckSpec::$variant(Box::new(spec)), target))
                })*
            }
        }
    };
}

crate::kind::for_each_kind!(define_readers);
