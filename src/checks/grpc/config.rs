//! The keys of a `grpc` check.

use http::{HeaderName, HeaderValue};

use super::GrpcSpec;
use crate::checks::tls::config::read_tls_options;
use crate::net::HostPort;
use crate::reader::{Table, read_ip_preference};
use crate::reader::{header_name, header_value};

/// Metadata names the call sets itself, or that HTTP/2 forbids.
const RESERVED: [&str; 9] = [
    "content-type",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "user-agent",
];

/// Reads the keys of a `grpc` check (`spec::read_spec` dispatches here). Returns the spec
/// and the target as shown to humans.
pub(crate) fn read(
    table: &Table<'_>,
    cx: &mut crate::reader::SpecCx<'_>,
) -> Option<(GrpcSpec, String)> {
    let d = table.diags();
    let plaintext = table.bool("plaintext").unwrap_or(false);
    let default_port = if plaintext { 80 } else { 443 };
    let target = match table.str("target") {
        Some((text, span)) => match HostPort::parse(text, default_port) {
            Some(target) => Some(target),
            None => {
                d.error_hint(
                    &span,
                    format!("target {text:?} is not HOST:PORT"),
                    "write it like \"api.example.com:443\" or \"[2001:db8::1]:50051\"",
                );
                None
            }
        },
        None => {
            table.missing(
                "target",
                "set the gRPC server, like target = \"api.example.com:443\"",
            );
            None
        }
    };
    let service = table
        .str("service")
        .map(|(text, _)| text.to_string())
        .unwrap_or_default();
    let ip = read_ip_preference(table);
    let tls = if plaintext {
        if let Some(span) = table.key_span("tls") {
            table.get("tls");
            d.error_hint(
                &span,
                "a `tls` table on a check with plaintext = true",
                "remove `tls`, or `plaintext` to speak TLS",
            );
            return None;
        }
        Some(None)
    } else {
        read_tls_options(table, vec![b"h2".to_vec()], true).map(Some)
    };
    let metadata = read_metadata(table, cx.secrets);
    let (Some(target), Some(ip), Some(tls), Some(metadata)) = (target, ip, tls, metadata) else {
        return None;
    };
    let shown = target.to_string();
    Some((
        GrpcSpec {
            host: target.host,
            port: target.port,
            target: shown.clone(),
            ip,
            tls,
            service,
            metadata,
        },
        shown,
    ))
}

/// `metadata`: names and values sent with the call, secrets substituted (and marked
/// sensitive); `None` if any is invalid (each reported).
fn read_metadata(
    table: &Table<'_>,
    secrets: &mut Vec<String>,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let d = table.diags();
    let mut ok = true;
    let mut metadata = Vec::new();
    for entry in table.str_map("metadata").unwrap_or_default() {
        let Some(name) = header_name(d, entry.key, &entry.key_span) else {
            ok = false;
            continue;
        };
        if name.as_str().starts_with("grpc-") || RESERVED.contains(&name.as_str()) {
            d.error_hint(
                &entry.key_span,
                format!("metadata {:?} is set by the call itself", entry.key),
                "names starting with grpc- and the HTTP/2 connection headers are reserved",
            );
            ok = false;
            continue;
        }
        match header_value(d, &entry, "metadata", secrets) {
            Some(value) => metadata.push((name, value)),
            None => ok = false,
        }
    }
    ok.then_some(metadata)
}
