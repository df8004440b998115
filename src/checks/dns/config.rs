//! The keys of a `dns` check.

use std::ops::Range;
use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RecordType};
use rustls::pki_types::ServerName;
use toml::de::DeValue;

use super::{
    Consistency, DnsExpect, DnsServer, DnsSpec, HostPort, HttpsServer, RrRules, TlsServer,
};
use crate::checks::http::TlsOptions;
use crate::checks::tls::config::read_tls_options;
use crate::reader::{Diags, Table, read_ip_preference};

/// Record types a `dns` check may ask for.
const RECORD_TYPES: &[&str] = &[
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "CAA", "SRV", "PTR", "DS", "DNSKEY", "HTTPS",
    "SVCB", "TLSA", "NAPTR", "ANY",
];

/// How a `dns` check reaches its server: the `transport` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
    Tls,
    Https,
}

impl Transport {
    fn parse(text: &str) -> Option<Transport> {
        Some(match text {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "https" => Transport::Https,
            _ => return None,
        })
    }

    /// As written in the config, and shown in the target.
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Https => "https",
        }
    }
}

/// Reads the keys of a `dns` check (`spec::read_spec` dispatches
/// here). Returns the spec and the target as shown to humans.
pub(crate) fn read(
    table: &Table<'_>,
    _cx: &mut crate::reader::SpecCx<'_>,
) -> Option<(DnsSpec, String)> {
    let query = read_query(table);
    let record = read_record(table);
    let transport = read_transport(table);
    let mut ok = transport.is_some();
    let transport = transport.unwrap_or(Transport::Udp);
    let server_text = table.str("server");
    let tls = if matches!(transport, Transport::Tls | Transport::Https) {
        read_tls_options(
            table,
            if transport == Transport::Https {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                Vec::new()
            },
            true,
        )
    } else {
        None
    };
    let server = read_server(table, transport, server_text, tls.as_ref());
    let recursion_desired = table.bool("recursion_desired").unwrap_or(true);
    let dnssec = table.bool("dnssec");
    let edns = read_edns(table, dnssec);
    ok &= edns.is_some();
    let edns = edns.unwrap_or(true);
    let dnssec_ok = dnssec.unwrap_or(edns);
    let class = read_class(table);
    ok &= class.is_some();
    let class = class.unwrap_or(DNSClass::IN);
    let ip = read_ip_preference(table);
    let consistency = read_mode(table);
    ok &= consistency.is_some();
    let expect = read_dns_expect(table);
    let (Some(query), Some(record), Some(server), Some(ip), Some(expect), Some(consistency), true) =
        (query, record, server, ip, expect, consistency, ok)
    else {
        return None;
    };
    let where_to = match &server {
        DnsServer::System { .. } => "system resolver".to_string(),
        DnsServer::Udp(addr) | DnsServer::Tcp(addr) => addr.to_string(),
        DnsServer::Tls(tls) => format!("tls://{}", tls.addr),
        DnsServer::Https(https) => crate::checks::http::show_url(&https.url),
    };
    let class_shown = if class == DNSClass::IN {
        String::new()
    } else {
        format!("{class} ")
    };
    let shown = format!(
        "{} {class_shown}{record} @ {where_to} ({})",
        query,
        transport.as_str()
    );
    Some((
        DnsSpec {
            query,
            record,
            server,
            recursion_desired,
            dnssec_ok,
            ip,
            consistency,
            expect,
            class,
            edns,
        },
        shown,
    ))
}

/// `query`: the name to ask about, made fully qualified.
fn read_query(table: &Table<'_>) -> Option<Name> {
    let Some((text, span)) = table.str("query") else {
        table.missing(
            "query",
            "set the name to ask about, like query = \"shop.example.com\"",
        );
        return None;
    };
    match Name::from_str_relaxed(text) {
        Ok(mut name) if !text.trim().is_empty() => {
            name.set_fqdn(true);
            Some(name)
        }
        _ => {
            table.diags().error_hint(
                &span,
                format!("{text:?} is not a domain name"),
                "like query = \"shop.example.com\"",
            );
            None
        }
    }
}

/// `record`: one of [`RECORD_TYPES`], `A` unless given.
fn read_record(table: &Table<'_>) -> Option<RecordType> {
    let Some((text, span)) = table.str("record") else {
        return Some(RecordType::A);
    };
    let upper = text.to_ascii_uppercase();
    match RecordType::from_str(&upper) {
        Ok(record) if RECORD_TYPES.contains(&upper.as_str()) => Some(record),
        _ => {
            table.diags().error_hint(
                &span,
                format!("unknown record type {text:?}"),
                format!("use one of {}", RECORD_TYPES.join(", ")),
            );
            None
        }
    }
}

/// `transport`: UDP unless given; `None` (reported) if it is unknown.
fn read_transport(table: &Table<'_>) -> Option<Transport> {
    let Some((text, span)) = table.str("transport") else {
        return Some(Transport::Udp);
    };
    let transport = Transport::parse(text);
    if transport.is_none() {
        table.diags().error_hint(
            &span,
            format!("unknown transport {text:?}"),
            "use \"udp\", \"tcp\", \"tls\" or \"https\"",
        );
    }
    transport
}

/// `server` for the transport: the system resolver for UDP and TCP unless given; required for
/// TLS and HTTPS (`tls` is their options, `None` when those were invalid, already reported).
fn read_server(
    table: &Table<'_>,
    transport: Transport,
    server_text: Option<(&str, Range<usize>)>,
    tls: Option<&TlsOptions>,
) -> Option<DnsServer> {
    let d = table.diags();
    match (transport, server_text) {
        (Transport::Udp, None) => Some(DnsServer::System { tcp: false }),
        (Transport::Tcp, None) => Some(DnsServer::System { tcp: true }),
        (Transport::Udp | Transport::Tcp, Some((text, span))) => match HostPort::parse(text, 53) {
            Some(addr) if transport == Transport::Udp => Some(DnsServer::Udp(addr)),
            Some(addr) => Some(DnsServer::Tcp(addr)),
            None => {
                d.error_hint(
                    &span,
                    format!("server {text:?} is not HOST[:PORT]"),
                    "like server = \"192.0.2.53:53\"",
                );
                None
            }
        },
        (Transport::Tls, Some((text, span))) => tls_server(d, text, &span, tls),
        (Transport::Https, Some((text, span))) => match (url::Url::parse(text), tls) {
            (Ok(url), Some(tls)) if url.scheme() == "https" && url.host().is_some() => {
                Some(DnsServer::Https(Box::new(HttpsServer {
                    url,
                    tls: tls.clone(),
                })))
            }
            (_, None) => None,
            _ => {
                d.error_hint(
                    &span,
                    format!("server {text:?} is not an https URL"),
                    "like server = \"https://dns.example.net/dns-query\"",
                );
                None
            }
        },
        (Transport::Tls | Transport::Https, None) => {
            table.missing(
                "server",
                "DNS over TLS and HTTPS need a server, like server = \"dns.example.net:853\"",
            );
            None
        }
    }
}

/// A DNS-over-TLS server: HOST[:PORT] (853 unless given) with a name to verify.
fn tls_server(
    d: &Diags<'_>,
    text: &str,
    span: &Range<usize>,
    tls: Option<&TlsOptions>,
) -> Option<DnsServer> {
    match (HostPort::parse(text, 853), tls) {
        (Some(addr), Some(tls)) => {
            let name = tls
                .server_name
                .clone()
                .or_else(|| ServerName::try_from(addr.host.clone()).ok());
            match name {
                Some(server_name) => Some(DnsServer::Tls(Box::new(TlsServer {
                    addr,
                    tls: TlsOptions {
                        server_name: Some(server_name),
                        ..tls.clone()
                    },
                }))),
                None => {
                    d.error_hint(
                        span,
                        format!("{text:?} is not a TLS server name"),
                        "set tls = { server_name = \"...\" }",
                    );
                    None
                }
            }
        }
        (None, _) => {
            d.error_hint(
                span,
                format!("server {text:?} is not HOST[:PORT]"),
                "like server = \"dns.example.net:853\"",
            );
            None
        }
        (Some(_), None) => None,
    }
}

/// `mode`, with `servers` and `ns_port` for mode = "consistency". `Some(None)` is a plain
/// query; `None` means a problem was reported.
fn read_mode(table: &Table<'_>) -> Option<Option<Consistency>> {
    let d = table.diags();
    match table.str("mode") {
        None | Some(("query", _)) => {
            let mut ok = true;
            for key in ["servers", "ns_port"] {
                if let Some(span) = table.key_span(key) {
                    d.error_hint(
                        &span,
                        format!("`{key}` goes with mode = \"consistency\""),
                        format!("set mode = \"consistency\", or remove {key}"),
                    );
                    ok = false;
                }
            }
            ok.then_some(None)
        }
        Some(("consistency", _)) => read_consistency(table).map(Some),
        Some((other, span)) => {
            d.error_hint(
                &span,
                format!("unknown mode {other:?}"),
                "use \"query\" or \"consistency\"",
            );
            None
        }
    }
}

/// `servers` and `ns_port` of mode = "consistency".
fn read_consistency(table: &Table<'_>) -> Option<Consistency> {
    let d = table.diags();
    let mut ok = true;
    let mut servers = Vec::new();
    for (text, span) in table.str_list("servers").unwrap_or_default() {
        match HostPort::parse(text, 53) {
            Some(addr) => servers.push(addr),
            None => {
                d.error_hint(
                    &span,
                    format!("server {text:?} is not HOST[:PORT]"),
                    "like \"192.0.2.53:53\"",
                );
                ok = false;
            }
        }
    }
    let ns_port = match table.int("ns_port") {
        None => 53,
        Some((port, _)) if (1..=65_535).contains(&port) => port as u16,
        Some((port, span)) => {
            d.error(&span, format!("ns_port {port} is not a port"));
            ok = false;
            53
        }
    };
    ok.then_some(Consistency { servers, ns_port })
}

fn read_dns_expect(table: &Table<'_>) -> Option<DnsExpect> {
    let d = table.diags();
    let Some(expect) = table.table("expect", format!("`expect` of {}", table.what())) else {
        return Some(DnsExpect::default());
    };
    let mut ok = true;
    let mut out = DnsExpect::default();
    if let Some(value) = expect.get("rcode") {
        let texts: Vec<(String, std::ops::Range<usize>)> = match value.get_ref() {
            DeValue::String(s) => vec![(s.to_string(), value.span())],
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| {
                    item.get_ref()
                        .as_str()
                        .map(|s| (s.to_string(), item.span()))
                })
                .collect(),
            _ => Vec::new(),
        };
        if texts.is_empty() {
            d.error_hint(
                &value.span(),
                "`rcode` must be a response code or a list of them",
                "like rcode = \"NOERROR\"",
            );
            ok = false;
        }
        out.rcodes.clear();
        for (text, span) in texts {
            match parse_rcode(&text) {
                Some(code) => out.rcodes.push(code),
                None => {
                    d.error_hint(
                        &span,
                        format!("unknown rcode {text:?}"),
                        "use NOERROR, NXDOMAIN, SERVFAIL, REFUSED, FORMERR or NOTIMP",
                    );
                    ok = false;
                }
            }
        }
    }
    out.answers_match = expect.regex_list("answers_match");
    out.answers_match_any = expect.regex_list("answers_match_any");
    out.answers_match_none = expect.regex_list("answers_match_none");
    out.answers = expect.str_list("answers").map(|items| {
        items
            .into_iter()
            .map(|(text, _)| text.to_string())
            .collect()
    });
    out.min_answers = match expect.int("min_answers") {
        Some((n, _)) if n >= 0 => Some(n as usize),
        Some((_, span)) => {
            d.error(&span, "`min_answers` cannot be negative");
            ok = false;
            None
        }
        None => None,
    };
    out.authoritative = expect.bool("authoritative");
    out.min_ttl = expect
        .duration("min_ttl")
        .map(|(ttl, _)| ttl.as_secs() as u32);
    out.max_ttl = expect
        .duration("max_ttl")
        .map(|(ttl, _)| ttl.as_secs() as u32);
    out.min_rrsig_days_left = expect.days("min_rrsig_days_left");
    out.sections.answer = read_rr_rules(&expect, "answer_rrs");
    out.sections.authority = read_rr_rules(&expect, "authority_rrs");
    out.sections.additional = read_rr_rules(&expect, "additional_rrs");
    expect.finish();
    ok.then_some(out)
}

fn parse_rcode(text: &str) -> Option<ResponseCode> {
    Some(match text.to_ascii_uppercase().as_str() {
        "NOERROR" => ResponseCode::NoError,
        "FORMERR" => ResponseCode::FormErr,
        "SERVFAIL" => ResponseCode::ServFail,
        "NXDOMAIN" => ResponseCode::NXDomain,
        "NOTIMP" => ResponseCode::NotImp,
        "REFUSED" => ResponseCode::Refused,
        "YXDOMAIN" => ResponseCode::YXDomain,
        "NOTAUTH" => ResponseCode::NotAuth,
        _ => return None,
    })
}

/// `edns`: `true` unless given; `false` sends no OPT record (the query blackbox_exporter
/// sends), which cannot carry the DO bit, so `dnssec = true` beside it is a problem.
fn read_edns(table: &Table<'_>, dnssec: Option<bool>) -> Option<bool> {
    let edns = table.bool("edns").unwrap_or(true);
    if !edns
        && dnssec == Some(true)
        && let Some(span) = table.key_span("dnssec")
    {
        table.diags().error_hint(
            &span,
            "`dnssec = true` needs EDNS (the DO bit is in its OPT record), and edns = false",
            "remove one of them",
        );
        return None;
    }
    Some(edns)
}

/// `class`: the class asked about, `IN` unless given.
fn read_class(table: &Table<'_>) -> Option<DNSClass> {
    let Some((text, span)) = table.str("class") else {
        return Some(DNSClass::IN);
    };
    let class = match text.to_ascii_uppercase().as_str() {
        "IN" => DNSClass::IN,
        "CH" => DNSClass::CH,
        "HS" => DNSClass::HS,
        "NONE" => DNSClass::NONE,
        "ANY" => DNSClass::ANY,
        _ => {
            table.diags().error_hint(
                &span,
                format!("unknown class {text:?}"),
                "use \"IN\", \"CH\", \"HS\", \"NONE\" or \"ANY\"",
            );
            return None;
        }
    };
    Some(class)
}

/// `expect.<section>_rrs`: blackbox_exporter's rules over one section's records.
fn read_rr_rules(expect: &Table<'_>, key: &'static str) -> RrRules {
    let Some(rules) = expect.table(key, format!("`expect.{key}`")) else {
        return RrRules::default();
    };
    let out = RrRules {
        fail_if_matches: rules.regex_list("fail_if_matches"),
        fail_if_all_match: rules.regex_list("fail_if_all_match"),
        fail_if_not_matches: rules.regex_list("fail_if_not_matches"),
        fail_if_none_matches: rules.regex_list("fail_if_none_matches"),
    };
    rules.finish();
    out
}
