//! The keys of a `tcp` check.

use super::TcpSpec;
use crate::net::HostPort;
use crate::reader::{Table, read_ip_preference};

/// Reads the keys of a `tcp` check (`validate::read_spec` dispatches
/// here). Returns the spec and the target as shown to humans.
pub(crate) fn read(
    table: &Table<'_>,
    _cx: &mut crate::reader::SpecCx<'_>,
) -> Option<(TcpSpec, String)> {
    let d = table.diags();
    let target = match table.str("target") {
        Some((text, span)) => match HostPort::parse(text, 0) {
            Some(target) if target.port != 0 => Some(target),
            _ => {
                d.error_hint(
                    &span,
                    format!("target {text:?} is not HOST:PORT"),
                    "write it like \"db.example.com:5432\" or \"[2001:db8::1]:6379\"",
                );
                None
            }
        },
        None => {
            table.missing(
                "target",
                "set the endpoint to connect to, like target = \"db.example.com:5432\"",
            );
            None
        }
    };
    let ip = read_ip_preference(table);
    let send = table.str("send").map(|(text, _)| text.as_bytes().to_vec());
    let matches = match table.table("expect", format!("`expect` of {}", table.what())) {
        Some(expect) => {
            let matches = expect.regex_list("matches");
            expect.finish();
            matches
        }
        None => Vec::new(),
    };
    let (Some(target), Some(ip)) = (target, ip) else {
        return None;
    };
    let shown = target.to_string();
    Some((
        TcpSpec {
            host: target.host,
            port: target.port,
            target: shown.clone(),
            ip,
            send,
            matches,
        },
        shown,
    ))
}
