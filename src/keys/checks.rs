//! The keys of each check kind (`checks::<kind>::config::read`), one module per kind named as
//! the kind's module, each with its `KEYS`, and the groups of keys several kinds share.

use super::{Key, Section, Ty, key, required, section};

/// `ip_protocol` and `ip_protocol_fallback` (`reader::read_ip_preference`).
pub static IP: Section = section(
    "ip",
    &[
        key(
            "ip_protocol",
            Ty::Enum(&["ip4", "ip6"]),
            "\"ip6\"",
            "Address family tried first: `\"ip4\"` or `\"ip6\"`.",
        ),
        key(
            "ip_protocol_fallback",
            Ty::Bool,
            "true",
            "Also try the other family; every address is tried in order, each with a fair share of the time left.",
        ),
    ],
);

/// The `tls` table (`checks::tls::config::read_tls_options`).
pub static TLS: Section = section(
    "tls",
    &[
        key(
            "insecure_skip_verify",
            Ty::Bool,
            "false",
            "Go on when the certificate does not verify (the handshake signature is still checked, and the verdict is still reported).",
        ),
        key(
            "min_version",
            Ty::Enum(&["1.2", "1.3"]),
            "",
            "`\"1.2\"` or `\"1.3\"`: the client offers only that version and later ones, so a server that cannot speak one of them fails the handshake with reason `tls`.",
        ),
        key(
            "ca",
            Ty::Enum(&["bundled", "system"]),
            "\"bundled\"",
            "Roots: `\"bundled\"` (Mozilla's, built in: the same verdict on every host) or `\"system\"` (the host's CA store).",
        ),
        key(
            "ca_file",
            Ty::Str,
            "",
            "A PEM file of CA certificates to trust instead.",
        ),
        key(
            "cert_file",
            Ty::Str,
            "",
            "Client certificate (PEM) for mTLS; with `key_file`.",
        ),
        key(
            "key_file",
            Ty::Str,
            "",
            "Client key (PEM) for mTLS; with `cert_file`.",
        ),
        key(
            "server_name",
            Ty::Str,
            "",
            "Name sent in SNI and verified against the certificate. Default: the target's host.",
        ),
    ],
);

/// The `tls` key of the kinds that take a table of TLS options.
pub(crate) const TLS_KEY: Key = key(
    "tls",
    Ty::Table(&TLS),
    "",
    "TLS options: `ca`, `ca_file`, `cert_file`, `key_file`, `server_name`, `insecure_skip_verify`, `min_version`.",
);

/// `headers`, `basic_auth` and `bearer_token` (`checks::http::config::read_headers`).
pub static HTTP_AUTH: Section = section(
    "http.auth",
    &[
        key(
            "headers",
            Ty::Map(&Ty::Secret),
            "",
            "Request headers, e.g. `{ accept = \"application/json\" }`; a value may be or hold a `${file:PATH}` or `${env:NAME}` secret, read at load and kept out of every detail.",
        ),
        key(
            "basic_auth",
            Ty::Table(&BASIC_AUTH),
            "",
            "`{ username = \"...\", password = \"...\" }`.",
        ),
        key(
            "bearer_token",
            Ty::Secret,
            "",
            "Sends `Authorization: Bearer ...`.",
        ),
    ],
);

/// `basic_auth`.
pub static BASIC_AUTH: Section = section(
    "basic_auth",
    &[
        key("username", Ty::Secret, "", "The user name."),
        key(
            "password",
            Ty::Secret,
            "",
            "The password; a `${env:..}` or `${file:..}` reference.",
        ),
    ],
);

/// What an http check and a flow step share (`checks::http::config::read_request_options`).
pub static HTTP_OPTIONS: Section = Section {
    name: "http.options",
    keys: &[
        key("method", Ty::Str, "\"GET\"", "Any HTTP method."),
        key(
            "follow_redirects",
            Ty::Bool,
            "true",
            "Follow 301, 302, 303, 307 and 308 (303, and 301/302 after a POST, become a GET without body); credentials are dropped when the origin changes.",
        ),
        key(
            "max_redirects",
            Ty::IntIn(0, 100),
            "10",
            "Fail with reason `redirect` beyond this many.",
        ),
        key(
            "http_version",
            Ty::Enum(&["auto", "1.1", "2"]),
            "\"auto\"",
            "`\"auto\"`: HTTP/2 when the server offers it by ALPN, else HTTP/1.1; `\"1.1\"`; `\"2\"`: HTTP/2 only.",
        ),
        key(
            "max_body",
            Ty::Size,
            "\"10MiB\"",
            "At most this much of the body is kept for body assertions; the rest is read and discarded.",
        ),
        TLS_KEY,
        key(
            "expect",
            Ty::Table(&HTTP_EXPECT),
            "",
            "Expectations; the first that fails decides the reason.",
        ),
    ],
    also: &[&IP],
    values: None,
};

/// An http check's (and a flow step's) `expect`.
pub static HTTP_EXPECT: Section = section(
    "http.expect",
    &[
        key(
            "headers",
            Ty::Map(&Ty::Str),
            "",
            "Header name → regex its value must match; a missing header fails (reason `header`).",
        ),
        key(
            "body_contains",
            Ty::List(&Ty::Str),
            "",
            "Strings the body must contain (reason `body`).",
        ),
        key(
            "body_not_contains",
            Ty::List(&Ty::Str),
            "",
            "Strings the body must not contain (reason `body`).",
        ),
        key(
            "body_matches",
            Ty::List(&Ty::Str),
            "",
            "Regexes the body must match; also sets `probe_failed_due_to_regex` (reason `body`).",
        ),
        key(
            "body_not_matches",
            Ty::List(&Ty::Str),
            "",
            "Regexes the body must not match; also sets `probe_failed_due_to_regex` (reason `body`).",
        ),
        key(
            "max_duration",
            Ty::Duration,
            "",
            "The whole run, redirects included, must take at most this long (reason `too_slow`).",
        ),
        key(
            "max_size",
            Ty::Size,
            "",
            "The body must not be larger; reading stops there (reason `too_large`).",
        ),
        key(
            "tls",
            Ty::Bool,
            "",
            "`true`: the final response must come over TLS; `false`: must not (reason `tls`).",
        ),
        key(
            "status",
            Ty::List(&Ty::AnyOf(&[Ty::IntIn(100, 999), Ty::Str])),
            "",
            "Accepted status codes and classes, e.g. `[200, 204, \"3xx\"]`; default: any 2xx (reason `status`).",
        ),
        key(
            "json",
            Ty::Tables(&JSON_TEST),
            "",
            "List of `{ pointer = \"/a/0/b\", equals = <any TOML value> }`, `{ pointer = ..., matches = 'regex' }` or `{ pointer = ... }` (must exist); RFC 6901 pointers (reason `json`).",
        ),
        key(
            "http_versions",
            Ty::List(&Ty::Enum(&["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0"])),
            "",
            "The final response's HTTP version is one of these (blackbox_exporter's `valid_http_versions`) (reason `http_version`).",
        ),
        key(
            "headers_match",
            Ty::Tables(&HEADER_RULE),
            "",
            "List of `{ header = \"...\", regex = '...', allow_missing = false }` (blackbox_exporter's `fail_if_header_not_matches`): at least one value of the header matches (reason `header`).",
        ),
        key(
            "headers_not_match",
            Ty::Tables(&HEADER_RULE),
            "",
            "The same shape (blackbox_exporter's `fail_if_header_matches`): no value of the header matches (reason `header`).",
        ),
        key(
            "json_cel",
            Ty::Str,
            "",
            "A CEL expression over the JSON body, bound as `body`, that must be `true` (blackbox_exporter's `fail_if_body_json_not_matches_cel`) (reason `json`).",
        ),
    ],
);

/// An entry of `expect.json`.
pub static JSON_TEST: Section = section(
    "http.expect.json",
    &[
        required(
            "pointer",
            Ty::Str,
            "An RFC 6901 JSON pointer, like `\"/a/0/b\"`; alone, the value must exist.",
        ),
        key(
            "equals",
            Ty::Any,
            "",
            "The value there must equal this (numbers compare by value).",
        ),
        key(
            "matches",
            Ty::Str,
            "",
            "A regex the value there must match.",
        ),
    ],
);

/// An entry of `expect.headers_match` and `expect.headers_not_match`.
pub static HEADER_RULE: Section = section(
    "http.expect.header_rule",
    &[
        required("header", Ty::Str, "The header name."),
        required(
            "regex",
            Ty::Str,
            "The regex a value of the header is matched against.",
        ),
        key(
            "allow_missing",
            Ty::Bool,
            "false",
            "A missing header passes.",
        ),
    ],
);

/// An http request's proxy (`checks::http::proxy::config::read`).
pub static PROXY: Section = section(
    "http.proxy",
    &[
        key(
            "proxy_url",
            Ty::Secret,
            "",
            "An `http://` proxy, like `\"http://user:${env:PROXY_PASSWORD}@proxy:3128\"`: plain `http` requests go to it in absolute form, `https` through a CONNECT tunnel.",
        ),
        key(
            "proxy_from_environment",
            Ty::Bool,
            "false",
            "Take the proxy from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (or their lower-case forms) when the configuration is loaded; not with `proxy_url` or `no_proxy`.",
        ),
        key(
            "no_proxy",
            Ty::Str,
            "",
            "With `proxy_url`: hosts that go direct, like `\"localhost,.internal,10.0.0.0/8\"`, read as Go's `httpproxy` reads it.",
        ),
        key(
            "skip_resolve_phase_with_proxy",
            Ty::Bool,
            "false",
            "Do not resolve the target's name here; the proxy is told the name and resolves it.",
        ),
        key(
            "proxy_connect_header",
            Ty::Map(&Ty::Secret),
            "",
            "Headers sent on the CONNECT (values may be secrets), like `{ Proxy-Authorization = \"Bearer ${env:PROXY_TOKEN}\" }`.",
        ),
    ],
);

/// `oauth2`.
pub static OAUTH2: Section = section(
    "http.oauth2",
    &[
        required("client_id", Ty::Str, "The client ID."),
        required(
            "client_secret",
            Ty::Secret,
            "The client secret: `\"${env:NAME}\"` or `\"${file:PATH}\"`.",
        ),
        required(
            "token_url",
            Ty::Str,
            "The token endpoint, an `http://` or `https://` URL.",
        ),
        key("scopes", Ty::List(&Ty::Str), "", "Scopes asked for."),
        key(
            "endpoint_params",
            Ty::Map(&Ty::Secret),
            "",
            "Extra parameters sent to the token endpoint, like `{ audience = \"api\" }`.",
        ),
    ],
);

/// A `min_days_left` in an `expect`.
const fn min_days_left(doc: &'static str) -> Key {
    key("min_days_left", Ty::Number, "", doc)
}

/// `type = "http"`.
pub mod http {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.http",
        keys: &[
            required(
                "url",
                Ty::Secret,
                "`http://` or `https://` URL; credentials in it become basic auth.",
            ),
            key("body", Ty::Secret, "", "Request body."),
            key(
                "body_file",
                Ty::Str,
                "",
                "The request body read from this file when the configuration loads (a relative path is taken from the directory of the file that names it): at most 1 MiB; not with `body`.",
            ),
            key(
                "compression",
                Ty::Enum(&["gzip", "br", "deflate", "zstd", "identity"]),
                "",
                "Sends `Accept-Encoding: <it>` unless `headers` sets one, and decodes the body with it whatever the response's `Content-Encoding` says.",
            ),
            key(
                "oauth2",
                Ty::Table(&OAUTH2),
                "",
                "OAuth2 client credentials: `{ client_id = \"probe\", client_secret = \"${env:OAUTH_SECRET}\", token_url = \"https://auth.example.com/oauth2/token\", scopes = [\"read\"] }`. Not with `basic_auth` or `bearer_token`.",
            ),
        ],
        also: &[&HTTP_AUTH, &HTTP_OPTIONS, &PROXY],
        values: None,
    };
}

/// `type = "tls"`.
pub mod tls {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.tls",
        keys: &[
            required(
                "target",
                Ty::Str,
                "`HOST:PORT` (`[IPv6]:PORT`); the port defaults to 443.",
            ),
            key(
                "starttls",
                Ty::Enum(&["smtp"]),
                "",
                "`\"smtp\"`: read the greeting, `EHLO`, `STARTTLS`, then the handshake (ports 25 and 587).",
            ),
            TLS_KEY,
            key(
                "expect",
                Ty::Table(&EXPECT),
                "",
                "Expectations on the chain.",
            ),
        ],
        also: &[&IP],
        values: None,
    };

    /// Its `expect`.
    pub static EXPECT: Section = section(
        "check.tls.expect",
        &[
            min_days_left(
                "The earliest `notAfter` in the chain (intermediates included) is at least this many days away (reason `cert_expiring`).",
            ),
            key(
                "chain_valid",
                Ty::Bool,
                "true",
                "The chain validates to the roots (reason `cert_invalid`).",
            ),
            key(
                "hostname_match",
                Ty::Bool,
                "true",
                "The leaf is valid for the server name (reason `cert_invalid`).",
            ),
            key(
                "min_version",
                Ty::Enum(&["1.2", "1.3"]),
                "",
                "`\"1.2\"` or `\"1.3\"` (reason `tls`).",
            ),
        ],
    );
}

/// `type = "tcp"`.
pub mod tcp {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.tcp",
        keys: &[
            required(
                "target",
                Ty::Str,
                "`HOST:PORT` (`[IPv6]:PORT`), or `unix:PATH` for a Unix stream socket.",
            ),
            key(
                "send",
                Ty::Secret,
                "",
                "Short form: text written once connected (TOML escapes: `\"PING\\r\\n\"`; written as is).",
            ),
            key(
                "expect",
                Ty::Table(&EXPECT),
                "",
                "`matches`, and with TLS `min_days_left` and `min_version`.",
            ),
            key(
                "steps",
                Ty::Tables(&STEP),
                "",
                "A conversation (instead of `send` and `expect.matches`): a list of steps.",
            ),
            key(
                "tls",
                Ty::AnyOf(&[Ty::Bool, Ty::Table(&TLS)]),
                "false",
                "`true`, or a table of TLS options (which also means `true`): TLS from the first byte; with a `starttls` step these are the options of the upgrade.",
            ),
        ],
        also: &[&IP],
        values: None,
    };

    /// Its `expect`.
    pub static EXPECT: Section = section(
        "check.tcp.expect",
        &[
            key(
                "matches",
                Ty::List(&Ty::Str),
                "",
                "Short form: regexes that everything the target sent must all match; reading stops at the first 64 KiB.",
            ),
            min_days_left(
                "With TLS: the earliest `notAfter` in the chain is at least this many days away (reason `cert_expiring`).",
            ),
            key(
                "min_version",
                Ty::Enum(&["1.2", "1.3"]),
                "",
                "With TLS: `\"1.2\"` or `\"1.3\"` (reason `tls`).",
            ),
        ],
    );

    /// A step of `steps`.
    pub static STEP: Section = section(
        "check.tcp.step",
        &[
            key(
                "expect",
                Ty::Str,
                "",
                "A regex: lines are read until one matches; its groups become the captures.",
            ),
            key(
                "expect_bytes",
                Ty::Str,
                "",
                "Exact bytes that must come next: the text's UTF-8 bytes (TOML escapes, `\"\\u0000\"` included).",
            ),
            key(
                "expect_hex",
                Ty::Str,
                "",
                "The same, as hex pairs (spaces allowed), for bytes text cannot hold.",
            ),
            key(
                "fail_if",
                Ty::Str,
                "",
                "With `expect`: a regex for a refusal; a line that matches it fails the step at once.",
            ),
            key(
                "starttls",
                Ty::Bool,
                "",
                "`true`: upgrade the connection to TLS here (once per conversation).",
            ),
            key(
                "send",
                Ty::Secret,
                "",
                "Text to write (nothing is appended); `${1}`, `${name}` are captures of earlier `expect`s; `${env:NAME}` and `${file:PATH}` secrets.",
            ),
            key(
                "send_hex",
                Ty::Str,
                "",
                "Bytes to write, as hex pairs: `\"00 00 00 08 04 d2 16 2f\"`.",
            ),
        ],
    );
}

/// `type = "dns"`.
pub mod dns {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.dns",
        keys: &[
            key(
                "transport",
                Ty::Enum(&["udp", "tcp", "tls", "https"]),
                "\"udp\"",
                "`udp`, `tcp`, `tls` (DNS over TLS, RFC 7858) or `https` (DNS over HTTPS, RFC 8484, POST).",
            ),
            key(
                "server",
                Ty::Str,
                "",
                "`HOST[:PORT]` for `udp`/`tcp` (port 53) and `tls` (port 853); a URL for `https`. Default: the first `nameserver` of `/etc/resolv.conf` (`udp`/`tcp` only).",
            ),
            TLS_KEY,
            key(
                "recursion_desired",
                Ty::Bool,
                "true",
                "Set the RD bit; turn off to ask an authoritative server about its own zone.",
            ),
            key("dnssec", Ty::Bool, "true", "Set the DO bit."),
            required(
                "query",
                Ty::Str,
                "The name to ask about (in consistency mode, the zone).",
            ),
            key(
                "record",
                Ty::EnumNoCase(&[
                    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "CAA", "SRV", "PTR", "DS",
                    "DNSKEY", "HTTPS", "SVCB", "TLSA", "NAPTR", "ANY",
                ]),
                "\"A\"",
                "The record type asked for.",
            ),
            key(
                "mode",
                Ty::Enum(&["query", "consistency"]),
                "\"query\"",
                "`\"consistency\"`: compare the SOA serials of `query` (a zone) across its authoritative servers.",
            ),
            key(
                "servers",
                Ty::List(&Ty::Str),
                "",
                "Consistency mode: the servers to compare, `HOST[:PORT]`. Default: the zone's NS records, on port 53.",
            ),
            key(
                "ns_port",
                Ty::IntIn(1, 65535),
                "53",
                "Consistency mode: the port of the servers found through the NS records.",
            ),
            key(
                "expect",
                Ty::Table(&EXPECT),
                "",
                "Expectations on the answer.",
            ),
            key(
                "edns",
                Ty::Bool,
                "true",
                "Send an EDNS OPT record (a 4096-byte UDP payload, and the DO bit unless `dnssec = false`); `false` sends the plain query blackbox_exporter sends.",
            ),
            key(
                "class",
                Ty::EnumNoCase(&["IN", "CH", "HS", "NONE", "ANY"]),
                "\"IN\"",
                "The class asked about (blackbox_exporter's `query_class`).",
            ),
        ],
        also: &[&IP],
        values: None,
    };

    /// Its `expect`.
    pub static EXPECT: Section = section(
        "check.dns.expect",
        &[
            key(
                "rcode",
                Ty::AnyOf(&[Ty::Str, Ty::List(&Ty::Str)]),
                "\"NOERROR\"",
                "A response code or a list: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ... (reason `rcode`).",
            ),
            key(
                "answers_match",
                Ty::List(&Ty::Str),
                "",
                "Every answer must match each regex (and there must be one) (reason `answer`).",
            ),
            key(
                "answers_match_any",
                Ty::List(&Ty::Str),
                "",
                "Each regex must match at least one answer (reason `answer`).",
            ),
            key(
                "answers_match_none",
                Ty::List(&Ty::Str),
                "",
                "No answer may match any regex (reason `answer`).",
            ),
            key(
                "answers",
                Ty::List(&Ty::Str),
                "",
                "Exactly these answers, in any order (reason `answer`).",
            ),
            key(
                "min_answers",
                Ty::IntIn(0, i64::MAX),
                "",
                "At least this many answers (reason `answer`).",
            ),
            key(
                "authoritative",
                Ty::Bool,
                "",
                "The AA flag must be set (`true`) or clear (`false`) (reason `answer`).",
            ),
            key(
                "min_ttl",
                Ty::Duration,
                "",
                "Lower bound on every answer's TTL (reason `answer`).",
            ),
            key(
                "max_ttl",
                Ty::Duration,
                "",
                "Upper bound on every answer's TTL (reason `answer`).",
            ),
            key(
                "min_rrsig_days_left",
                Ty::Number,
                "",
                "The earliest RRSIG among the answers must expire at least this many days away (reason `rrsig_expiring`).",
            ),
            key(
                "answer_rrs",
                Ty::Table(&RR_RULES),
                "",
                "blackbox_exporter's `validate_answer_rrs`: regex lists over every record of the answer section (reason `answer`).",
            ),
            key(
                "authority_rrs",
                Ty::Table(&RR_RULES),
                "",
                "blackbox_exporter's `validate_authority_rrs` (reason `answer`).",
            ),
            key(
                "additional_rrs",
                Ty::Table(&RR_RULES),
                "",
                "blackbox_exporter's `validate_additional_rrs` (reason `answer`).",
            ),
        ],
    );

    /// `answer_rrs`, `authority_rrs`, `additional_rrs`.
    pub static RR_RULES: Section = section(
        "check.dns.expect.rrs",
        &[
            key(
                "fail_if_matches",
                Ty::List(&Ty::Str),
                "",
                "Fails if a record matches one.",
            ),
            key(
                "fail_if_all_match",
                Ty::List(&Ty::Str),
                "",
                "Fails unless every record matches every one (no records pass).",
            ),
            key(
                "fail_if_not_matches",
                Ty::List(&Ty::Str),
                "",
                "Fails if there are no records or a record does not match one.",
            ),
            key(
                "fail_if_none_matches",
                Ty::List(&Ty::Str),
                "",
                "Fails if there are no records or no record matches any.",
            ),
        ],
    );
}

/// `type = "domain"`.
pub mod domain {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.domain",
        keys: &[
            required(
                "domain",
                Ty::Str,
                "The registered domain, e.g. `\"example.com\"` (internationalised names in their `xn--` form).",
            ),
            key(
                "rdap_server",
                Ty::Str,
                "",
                "The RDAP base URL to ask. Default: from `[agent] rdap_servers` or the bootstrap registry.",
            ),
            key(
                "cache_for",
                Ty::Duration,
                "\"1h\"",
                "Reuse an answer this long before asking again.",
            ),
            key("expect", Ty::Table(&EXPECT), "", "`min_days_left`."),
        ],
        also: &[&IP],
        values: None,
    };

    /// Its `expect`.
    pub static EXPECT: Section = section(
        "check.domain.expect",
        &[min_days_left(
            "Fail with `domain_expiring` when the registration expires sooner.",
        )],
    );
}

/// `type = "flow"`.
pub mod flow {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = section(
        "check.flow",
        &[required(
            "steps",
            Ty::Tables(&STEP),
            "The requests, in order; each takes what an `http` check takes (not `oauth2`), and `name`, `form`, `json`, `timeout`, `extract`.",
        )],
    );

    /// A step.
    pub static STEP: Section = Section {
        name: "check.flow.step",
        keys: &[
            required(
                "name",
                Ty::Str,
                "Unique in the flow, `[a-z0-9_-]+`; the `step` label.",
            ),
            required(
                "url",
                Ty::Secret,
                "`http://` or `https://` URL; may hold `${NAME}` variables extracted by earlier steps.",
            ),
            key(
                "headers",
                Ty::Map(&Ty::Secret),
                "",
                "Request headers; values may hold variables and secrets.",
            ),
            key(
                "bearer_token",
                Ty::Secret,
                "",
                "Sends `Authorization: Bearer ...`.",
            ),
            key(
                "basic_auth",
                Ty::Table(&BASIC_AUTH),
                "",
                "`{ username = \"...\", password = \"...\" }`.",
            ),
            key(
                "timeout",
                Ty::Duration,
                "",
                "This step's own limit, inside the flow's.",
            ),
            key("body", Ty::Secret, "", "Request body."),
            key(
                "form",
                Ty::Map(&Ty::Secret),
                "",
                "A table of fields, sent `application/x-www-form-urlencoded`.",
            ),
            key(
                "json",
                Ty::Any,
                "",
                "A TOML table (any nesting, arrays, numbers, booleans), sent as `application/json`.",
            ),
            key(
                "extract",
                Ty::Table(&EXTRACT),
                "",
                "Variables from the response: `NAME = { regex = '...' }`, `{ json_pointer = \"/a/0\" }`, `{ header = \"location\" }`, `{ cookie = \"session\" }` or `{ form_field = \"csrf_token\" }`.",
            ),
        ],
        also: &[&HTTP_OPTIONS, &PROXY],
        values: None,
    };

    /// `extract`: variable names, each an extraction.
    pub static EXTRACT: Section = Section {
        name: "check.flow.step.extract",
        keys: &[],
        also: &[],
        values: Some(&RULE),
    };

    /// One extraction.
    pub static RULE: Section = section(
        "check.flow.step.extract.rule",
        &[
            key(
                "regex",
                Ty::Str,
                "",
                "Capture group 1 of this regex over the body, or the whole match.",
            ),
            key(
                "json_pointer",
                Ty::Str,
                "",
                "The value at this RFC 6901 pointer of the JSON body.",
            ),
            key("header", Ty::Str, "", "The value of this response header."),
            key(
                "cookie",
                Ty::Str,
                "",
                "The value of this cookie, from the jar after the step.",
            ),
            key(
                "form_field",
                Ty::Str,
                "",
                "The value of this form control, found by an HTML parser.",
            ),
        ],
    );
}

/// `type = "websocket"`.
pub mod websocket {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.websocket",
        keys: &[
            key(
                "max_message_size",
                Ty::Size,
                "\"1MiB\"",
                "The largest message (and frame) read, up to `\"64MiB\"`.",
            ),
            required(
                "url",
                Ty::Secret,
                "`ws://` or `wss://` URL; credentials in it become basic auth.",
            ),
            key(
                "steps",
                Ty::Tables(&STEP),
                "",
                "The conversation, in order: `{ send = \"text\" }`, `{ send_hex = \"81 0a ff\" }`, `{ expect = 'regex' }`.",
            ),
            TLS_KEY,
        ],
        also: &[&HTTP_AUTH, &IP],
        values: None,
    };

    /// A step.
    pub static STEP: Section = section(
        "check.websocket.step",
        &[
            key(
                "send",
                Ty::Secret,
                "",
                "Sends a text message (TOML escapes, secrets and captures allowed).",
            ),
            key(
                "send_hex",
                Ty::Str,
                "",
                "Sends a binary message (hex digit pairs, spaces allowed between them).",
            ),
            key(
                "expect",
                Ty::Str,
                "",
                "Reads messages until one matches this regex.",
            ),
        ],
    );
}

/// `type = "grpc"`.
pub mod grpc {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.grpc",
        keys: &[
            key(
                "plaintext",
                Ty::Bool,
                "false",
                "`true`: plain-text HTTP/2 without TLS (a `tls` table is then an error).",
            ),
            required(
                "target",
                Ty::Str,
                "`HOST:PORT` (`[IPv6]:PORT`); the port defaults to 443 (80 with `plaintext`); also sent as the `:authority`.",
            ),
            key(
                "service",
                Ty::Str,
                "\"\"",
                "The service asked about; empty asks about the server as a whole.",
            ),
            TLS_KEY,
            key(
                "metadata",
                Ty::Map(&Ty::Secret),
                "",
                "Sent with the call, e.g. `{ authorization = \"Bearer ${env:TOKEN}\" }`; names in lower case, not `grpc-*`.",
            ),
        ],
        also: &[&IP],
        values: None,
    };
}

/// `type = "icmp"`.
pub mod icmp {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.icmp",
        keys: &[
            required(
                "target",
                Ty::Str,
                "A host name or an IP address, without a port.",
            ),
            key(
                "count",
                Ty::IntIn(1, 1000),
                "3",
                "Echo requests per run (1–1000).",
            ),
            key(
                "packet_interval",
                Ty::Duration,
                "\"1s\"",
                "Between two requests; `(count − 1) × packet_interval` must be shorter than `timeout`.",
            ),
            key(
                "payload_size",
                Ty::IntIn(0, 65507),
                "56",
                "Bytes after the 8-byte ICMP header (0–65507).",
            ),
            key(
                "ttl",
                Ty::IntIn(1, 255),
                "",
                "The TTL (IPv6: hop limit) of the requests, 1–255. Default: the system's (64).",
            ),
            key(
                "dont_fragment",
                Ty::Bool,
                "false",
                "`true`: the requests carry DF (IPv4) and are never fragmented here (IPv6): a path-MTU check.",
            ),
            key(
                "max_loss",
                Ty::Number,
                "0",
                "The share of requests that may go without a reply (a ratio from 0 up to, not including, 1).",
            ),
            key(
                "max_rtt",
                Ty::Duration,
                "",
                "The largest average round trip of the replies, like `\"50ms\"`.",
            ),
        ],
        also: &[&IP],
        values: None,
    };
}

/// `type = "udp"`.
pub mod udp {
    use super::*;

    /// Its keys.
    pub static KEYS: Section = Section {
        name: "check.udp",
        keys: &[
            required("target", Ty::Str, "`HOST:PORT` (`[IPv6]:PORT`)."),
            key(
                "expect",
                Ty::List(&Ty::Str),
                "",
                "Regexes the answer must all match, read as UTF-8: for text protocols.",
            ),
            key(
                "expect_hex",
                Ty::Str,
                "",
                "Bytes the answer must start with, in hex: for binary protocols.",
            ),
            key(
                "count",
                Ty::IntIn(1, 100),
                "3",
                "Datagrams sent at most (1–100).",
            ),
            key(
                "reply_timeout",
                Ty::Duration,
                "",
                "How long to wait for a matching answer to each datagram before sending the next. Default: `timeout / count`.",
            ),
            key(
                "send",
                Ty::Str,
                "",
                "The datagram as text (TOML escapes); this or `send_hex` is required.",
            ),
            key(
                "send_hex",
                Ty::Str,
                "",
                "The datagram as bytes in hex, spaces or colons allowed between bytes.",
            ),
        ],
        also: &[&IP],
        values: None,
    };
}
