use std::path::Path;

use super::probers::{base2_bytes, expand};
use super::*;

/// The module `m`'s table from a module body written in YAML (indented by 4).
fn table(body: &str) -> (String, Vec<Unsupported>, BTreeMap<String, String>) {
    let text = format!("modules:\n  m:\n{body}");
    let parsed = super::super::parse(Path::new("b.yml"), &text).unwrap();
    let module = parsed.modules.into_iter().next().unwrap();
    // Every table is TOML that parses.
    toml::from_str::<toml::Table>(&module.table)
        .unwrap_or_else(|e| panic!("{e}\n{}", module.table));
    (module.table, parsed.unsupported, module.secrets)
}

fn only(body: &str) -> String {
    let (table, unsupported, _) = table(body);
    assert!(unsupported.is_empty(), "{unsupported:?}");
    table
}

#[test]
fn http_options_map_onto_native_keys() {
    let toml = only(
        "    prober: http\n    timeout: 5s\n    http:\n      valid_status_codes: [200, 301]\n      valid_http_versions: [\"HTTP/1.1\", \"HTTP/2.0\"]\n      method: POST\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n      fail_if_not_ssl: true\n      fail_if_body_matches_regexp: ['err\\d']\n      fail_if_body_not_matches_regexp: [ok]\n      body: '{\"a\": \"${x}\"}'\n      compression: gzip\n      follow_redirects: false\n      enable_http2: false\n      body_size_limit: 1MB\n      skip_resolve_phase_with_proxy: true\n",
    );
    assert_eq!(
        toml,
        "type = \"http\"\ntimeout = \"5s\"\nexpect.status = [200, 301]\nexpect.http_versions = [\"HTTP/1.1\", \"HTTP/2.0\"]\nexpect.tls = true\nexpect.body_matches = [\"ok\"]\nexpect.body_not_matches = ['err\\d']\nexpect.max_size = \"1048576B\"\nip_protocol = \"ip4\"\nip_protocol_fallback = false\nmethod = \"POST\"\nbody = \"{\\\"a\\\": \\\"$${x}\\\"}\"\nskip_resolve_phase_with_proxy = true\nfollow_redirects = false\ncompression = \"gzip\"\nhttp_version = \"1.1\"\nmax_body = \"1048576B\"\n"
    );
}

#[test]
fn http_headers_auth_and_secrets() {
    let (toml, unsupported, secrets) = table(
        "    prober: http\n    http:\n      headers:\n        Host: vhost.example.com\n      http_headers:\n        Accept-Language:\n          values: [en-US, fr]\n        X-Key:\n          secrets: [s3cret]\n          files: [/etc/key]\n      basic_auth:\n        username: probe\n        password: hunter2\n      fail_if_header_matches:\n        - header: Set-Cookie\n          allow_missing: true\n          regexp: '.*'\n      fail_if_header_not_matches:\n        - header: Access-Control-Allow-Origin\n          regexp: '(\\*|example\\.com)'\n      fail_if_body_json_not_matches_cel: \"body.foo == 'bar'\"\n      fail_if_ssl: true\n",
    );
    assert!(unsupported.is_empty(), "{unsupported:?}");
    assert!(
        !toml.contains("hunter2") && !toml.contains("s3cret"),
        "{toml}"
    );
    assert!(toml.contains("headers = { Accept-Language = \"en-US, fr\", X-Key = \"${env:BLACKBOX_M_HEADER_X_KEY}, ${file:/etc/key}\", Host = \"vhost.example.com\" }\n"), "{toml}");
    assert!(toml.contains("basic_auth = { username = \"probe\", password = \"${env:BLACKBOX_M_BASIC_AUTH_PASSWORD}\" }\n"), "{toml}");
    assert!(toml.contains("expect.headers_not_match = [{ header = \"Set-Cookie\", regex = \".*\", allow_missing = true }]\n"), "{toml}");
    assert!(toml.contains("expect.headers_match = [{ header = \"Access-Control-Allow-Origin\", regex = '(\\*|example\\.com)' }]\n"), "{toml}");
    assert!(
        toml.contains("expect.json_cel = \"body.foo == 'bar'\"\n"),
        "{toml}"
    );
    assert!(toml.contains("expect.tls = false\n"), "{toml}");
    assert_eq!(secrets["BLACKBOX_M_BASIC_AUTH_PASSWORD"], "hunter2");
    assert_eq!(secrets["BLACKBOX_M_HEADER_X_KEY"], "s3cret");
}

#[test]
fn http_tokens_oauth2_proxy_and_tls() {
    let (toml, unsupported, secrets) = table(
        "    prober: http\n    http:\n      authorization:\n        credentials: tok\n      oauth2:\n        client_id: id\n        client_secret_file: /run/secret\n        token_url: https://auth.example.com/token\n        scopes: [read]\n        endpoint_params: {audience: api}\n      proxy_url: http://127.0.0.1:3128\n      no_proxy: localhost\n      proxy_from_environment: false\n      proxy_connect_header:\n        Proxy-Authorization: [Bearer token]\n      tls_config:\n        ca_file: /ca.pem\n        server_name: api\n        insecure_skip_verify: true\n        min_version: TLS13\n      no_follow_redirects: true\n      fail_if_body_json_matches_cel: body.down\n      enable_http3: true\n",
    );
    assert!(
        toml.contains("bearer_token = \"${env:BLACKBOX_M_AUTHORIZATION_CREDENTIALS}\"\n"),
        "{toml}"
    );
    assert!(toml.contains("oauth2.client_id = \"id\"\noauth2.client_secret = \"${file:/run/secret}\"\noauth2.token_url = \"https://auth.example.com/token\"\noauth2.scopes = [\"read\"]\noauth2.endpoint_params = { audience = \"api\" }\n"), "{toml}");
    assert!(toml.contains("proxy_url = \"http://127.0.0.1:3128\"\nno_proxy = \"localhost\"\nproxy_from_environment = false\nproxy_connect_header = { Proxy-Authorization = \"${env:BLACKBOX_M_PROXY_CONNECT_HEADER_PROXY_AUTHORIZATION}\" }\n"), "{toml}");
    assert!(toml.contains("follow_redirects = false\n"), "{toml}");
    assert!(toml.contains("tls.ca_file = \"/ca.pem\"\ntls.server_name = \"api\"\ntls.insecure_skip_verify = true\ntls.min_version = \"1.3\"\n"), "{toml}");
    assert!(
        toml.contains("expect.json_cel = \"!(body.down)\"\n"),
        "{toml}"
    );
    assert_eq!(
        secrets["BLACKBOX_M_PROXY_CONNECT_HEADER_PROXY_AUTHORIZATION"],
        "Bearer token"
    );
    assert_eq!(unsupported.len(), 1, "{unsupported:?}");
    assert_eq!(
        (unsupported[0].option.as_str(), unsupported[0].origin.line),
        ("http.enable_http3", 25)
    );
}

#[test]
fn unknown_options_are_unsupported_with_their_line() {
    let (_, unsupported, _) = table(
        "    prober: http\n    http:\n      metod: GET\n      tls_config:\n        ca: PEM\n",
    );
    let found: Vec<(&str, usize)> = unsupported
        .iter()
        .map(|u| (u.option.as_str(), u.origin.line))
        .collect();
    assert_eq!(found, [("http.metod", 5), ("http.tls_config.ca", 7)]);
    assert!(
        unsupported[0].reason.contains("did you mean `method`"),
        "{}",
        unsupported[0].reason
    );
}

#[test]
fn tcp_query_response_becomes_steps() {
    let toml = only(
        "    prober: tcp\n    tcp:\n      source_ip_address: 127.0.0.2\n      query_response:\n        - expect: \"PING :([^ ]+)\"\n          send: \"PONG $1 ${1} $$ ${env:X}\"\n        - send: \"a ${b}\"\n        - send: !!binary AAAACATSFi8=\n        - expect_bytes: S\n        - starttls: true\n      tls_config:\n        insecure_skip_verify: true\n",
    );
    assert_eq!(
        toml,
        "type = \"tcp\"\nsource_ip = \"127.0.0.2\"\nsteps = [\n  { expect = \"PING :([^ ]+)\" },\n  { send = \"PONG ${1} ${1} $ $${env:X}\\n\" },\n  { send = \"a $${b}\\n\" },\n  { send_hex = \"00 00 00 08 04 d2 16 2f 0a\" },\n  { expect_bytes = \"S\" },\n  { starttls = true },\n]\ntls.insecure_skip_verify = true\n"
    );
    assert_eq!(
        only("    prober: tcp\n    tcp:\n      tls: true\n"),
        "type = \"tcp\"\ntls = true\n"
    );
    // tls_config without TLS is never used by blackbox_exporter.
    assert_eq!(
        only("    prober: tcp\n    tcp:\n      tls_config: {ca_file: /x}\n"),
        "type = \"tcp\"\n"
    );
}

#[test]
fn unix_is_tcp_on_a_socket_path() {
    let parsed = super::super::parse(Path::new("b.yml"), "modules:\n  u:\n    prober: unix\n    unix:\n      query_response:\n        - send: PING\n        - expect: PONG\n").unwrap();
    let module = &parsed.modules[0];
    assert_eq!(module.kind, CheckKind::Tcp);
    assert_eq!(
        module.table,
        "type = \"tcp\"\nsteps = [\n  { send = \"PING\\n\" },\n  { expect = \"PONG\" },\n]\n"
    );
    assert_eq!(
        module.target("/run/app.sock"),
        ("target", "unix:/run/app.sock".to_owned())
    );
}

#[test]
fn dns_icmp_and_grpc_defaults_are_blackbox_ones() {
    assert_eq!(
        only(
            "    prober: dns\n    dns:\n      query_name: example.com\n      transport_protocol: tcp\n      query_class: CH\n      recursion_desired: false\n      valid_rcodes: [NOERROR, NXDOMAIN]\n      validate_answer_rrs:\n        fail_if_matches_regexp: ['.*127.0.0.1']\n        fail_if_none_matches_regexp: ['127.0.0.1']\n      validate_additional_rrs:\n        fail_if_all_match_regexp: [x]\n"
        ),
        "type = \"dns\"\nquery = \"example.com\"\nrecord = \"ANY\"\nclass = \"CH\"\ntransport = \"tcp\"\nrecursion_desired = false\ndnssec = false\nedns = false\nexpect.rcode = [\"NOERROR\", \"NXDOMAIN\"]\nexpect.answer_rrs = { fail_if_matches = [\".*127.0.0.1\"], fail_if_none_matches = [\"127.0.0.1\"] }\nexpect.additional_rrs = { fail_if_all_match = [\"x\"] }\n"
    );
    assert_eq!(
        only(
            "    prober: dns\n    dns:\n      query_name: example.com\n      query_type: soa\n      dns_over_tls: true\n      tls_config: {server_name: ns}\n"
        ),
        "type = \"dns\"\nquery = \"example.com\"\nrecord = \"SOA\"\ntransport = \"tls\"\ntls.server_name = \"ns\"\ndnssec = false\nedns = false\n"
    );
    assert_eq!(
        only(
            "    prober: icmp\n    icmp:\n      preferred_ip_protocol: ip4\n      source_ip_address: 127.0.0.1\n      dont_fragment: true\n      ttl: 5\n"
        ),
        "type = \"icmp\"\ncount = 1\nip_protocol = \"ip4\"\nsource_ip = \"127.0.0.1\"\npayload_size = 28\ndont_fragment = true\nttl = 5\n"
    );
    assert_eq!(
        only("    prober: icmp\n    icmp:\n      payload_size: 1200\n"),
        "type = \"icmp\"\ncount = 1\npayload_size = 1200\n"
    );
    assert_eq!(
        only("    prober: grpc\n    grpc:\n      service: api\n"),
        "type = \"grpc\"\nservice = \"api\"\nplaintext = true\n"
    );
    assert_eq!(
        only(
            "    prober: grpc\n    grpc:\n      tls: true\n      tls_config: {ca_file: /ca}\n      metadata: {X-Tenant: [a]}\n"
        ),
        "type = \"grpc\"\ntls.ca_file = \"/ca\"\nmetadata = { x-tenant = \"a\" }\n"
    );
    let (_, unsupported, _) = table("    prober: dns\n    dns: {}\n");
    assert_eq!(unsupported[0].option, "dns.query_name");
}

#[test]
fn websocket_takes_auth_headers_and_steps() {
    let (toml, unsupported, secrets) = table(
        "    prober: websocket\n    websocket:\n      http_config:\n        authorization:\n          credentials: tok\n        tls_config:\n          insecure_skip_verify: true\n      headers:\n        X-Some-Header: my_header\n      query_response:\n        - expect: ^Hello,\\s(.+)\n          send: \"Hello ${1}\"\n        - send: \"ping $$1\"\n",
    );
    assert_eq!(
        toml,
        "type = \"websocket\"\nbearer_token = \"${env:BLACKBOX_M_AUTHORIZATION_CREDENTIALS}\"\ntls.insecure_skip_verify = true\nheaders = { X-Some-Header = \"my_header\" }\nsteps = [\n  { expect = '^Hello,\\s(.+)' },\n  { send = \"Hello ${1}\" },\n  { send = \"ping $$1\" },\n]\n"
    );
    assert_eq!(secrets.len(), 1);
    // A send after an expect fills in its groups, as blackbox_exporter's does.
    assert!(unsupported.is_empty(), "{unsupported:?}");
}

#[test]
fn files_that_are_not_blackbox_configuration_are_errors() {
    let parse = |text: &str| {
        super::super::parse(Path::new("b.yml"), text)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        parse("- a\n"),
        "b.yml:1:1: expected blackbox_exporter's configuration, a mapping with `modules`, found a list"
    );
    assert!(
        parse("modules:\n  m:\n    prober: ftp\n")
            .starts_with("b.yml:3:13: prober \"ftp\" of module \"m\" is not valid")
    );
    assert!(
        parse("modules:\n  m:\n    timeout: 5s\n")
            .starts_with("b.yml:2:3: module \"m\" has no `prober`")
    );
    assert!(parse("modules:\n  m: [\n").starts_with("b.yml:3:"));
}

#[test]
fn go_values_convert() {
    assert_eq!(go_duration("5s").as_deref(), Some("5s"));
    assert_eq!(go_duration("1m30s").as_deref(), Some("90s"));
    assert_eq!(go_duration("1.5s").as_deref(), Some("1500ms"));
    assert_eq!(go_duration("5"), None);
    assert_eq!(base2_bytes("10MB"), Some(10 << 20));
    assert_eq!(base2_bytes("512KiB"), Some(512 << 10));
    assert_eq!(base2_bytes("1024"), Some(1024));
    assert_eq!(expand("$x1y ${x}$"), ("${x1y} ${x}$".to_owned(), true));
    assert_eq!(expand("a $$ $ {"), ("a $ $ {".to_owned(), false));
}

#[test]
fn credentials_from_files_and_other_authorization_types() {
    let (toml, unsupported, secrets) = table(
        "    prober: http\n    http:\n      basic_auth:\n        username_file: /run/user\n        password_file: /run/pass\n      authorization:\n        type: Token\n        credentials_file: /run/token\n      fail_if_ssl: yes\n",
    );
    assert!(unsupported.is_empty(), "{unsupported:?}");
    assert!(secrets.is_empty());
    assert_eq!(
        toml,
        "type = \"http\"\nexpect.tls = false\nbasic_auth = { username = \"${file:/run/user}\", password = \"${file:/run/pass}\" }\nheaders = { Authorization = \"Token ${file:/run/token}\" }\n"
    );
    let toml = only("    prober: http\n    http:\n      bearer_token_file: /run/t\n");
    assert_eq!(toml, "type = \"http\"\nbearer_token = \"${file:/run/t}\"\n");
    let (_, unsupported, _) = table("    prober: http\n    http:\n      valid_status_codes: 200\n");
    assert_eq!(unsupported[0].option, "http.valid_status_codes");
}
