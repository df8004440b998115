//! `/probe` against the real blackbox_exporter: ONE `blackbox.yml` served by Debian's
//! blackbox_exporter and by a nightjar agent (`[agent] blackbox_config`), every module that
//! can run on loopback probed against the same real targets (nginx plain, TLS and HTTP/2, a
//! redirect, a gzip-compressing location, expired and misnamed chains; BIND's signed zone;
//! nginx's SMTP and Dovecot's IMAP with STARTTLS; Redis; ICMP on 127.0.0.1; the gRPC health
//! server), and the answers compared series by series. Then the same file through `nightjar
//! import blackbox`: the checks it writes validate and give the same verdicts.
//!
//! Everything is started once for this file's one test and the (module, target) pairs run
//! concurrently.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::bind::{Bind, SERIAL, ZONE};
use crate::support::blackbox::{Exporter, Probe, Samples, probe};
use crate::support::{KillOnDrop, Nginx, free_port, nightjar, pki, venv_python, wait_for_tcp};

/// The scrape timeout both sides are told (`X-Prometheus-Scrape-Timeout-Seconds`).
const SCRAPE_TIMEOUT: f64 = 10.0;

/// Families compared by value and labels. Every other family is compared for presence only
/// (durations, timings, sizes that depend on the moment).
const COMPARED: &[&str] = &[
    "probe_success",
    "probe_http_status_code",
    "probe_http_version",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_tls_version_info",
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_additional_rrs",
    "probe_dns_serial",
    "probe_icmp_reply_hop_limit",
    "probe_grpc_status_code",
    "probe_grpc_healthcheck_response",
    "probe_failed_due_to_regex",
];

/// Families left out of the family-set comparison, each with the reason. None at present:
/// for these modules nightjar writes every family blackbox_exporter 0.23 writes, and no other.
const NOT_COMPARED: &[(&str, &str)] = &[];

/// The blackbox.yml both sides serve. Every module asks for IPv4 (blackbox_exporter prefers
/// IPv6, and the targets listen on 127.0.0.1 only) and trusts the test CA where it speaks
/// TLS.
fn blackbox_yml() -> String {
    let ca = pki().ca.display().to_string();
    format!(
        r#"modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: {ca}
  http_no_redirects:
    prober: http
    http:
      preferred_ip_protocol: ip4
      follow_redirects: false
  http_302:
    prober: http
    http:
      preferred_ip_protocol: ip4
      follow_redirects: false
      valid_status_codes: [302]
  http_post_2xx:
    prober: http
    http:
      preferred_ip_protocol: ip4
      method: POST
      headers:
        Content-Type: application/json
        X-Probe: parity
      body: '{{}}'
      fail_if_body_not_matches_regexp:
        - "method=POST"
        - "probe=parity"
  http_body:
    prober: http
    http:
      preferred_ip_protocol: ip4
      fail_if_body_not_matches_regexp:
        - "hello from nginx"
  http_body_forbidden:
    prober: http
    http:
      preferred_ip_protocol: ip4
      fail_if_body_matches_regexp:
        - "nginx"
  http_headers:
    prober: http
    http:
      preferred_ip_protocol: ip4
      fail_if_header_not_matches:
        - header: Content-Type
          regexp: "^text/plain"
      fail_if_header_matches:
        - header: Set-Cookie
          allow_missing: true
          regexp: ".*"
  http_header_required:
    prober: http
    http:
      preferred_ip_protocol: ip4
      fail_if_header_not_matches:
        - header: Access-Control-Allow-Origin
          regexp: ".*"
  http_gzip:
    prober: http
    http:
      preferred_ip_protocol: ip4
      compression: gzip
      # blackbox_exporter 0.23 asks for the encoding only when told to (later versions add
      # the header themselves, as nightjar does).
      headers:
        Accept-Encoding: gzip
      fail_if_body_not_matches_regexp:
        - "compressed by nginx"
  http_ssl_required:
    prober: http
    http:
      preferred_ip_protocol: ip4
      fail_if_not_ssl: true
      tls_config:
        ca_file: {ca}
  http_no_ssl:
    prober: http
    http:
      preferred_ip_protocol: ip4
      fail_if_ssl: true
      tls_config:
        ca_file: {ca}
  http_1_1_only:
    prober: http
    http:
      preferred_ip_protocol: ip4
      valid_http_versions: ["HTTP/1.1"]
      tls_config:
        ca_file: {ca}
  http_insecure:
    prober: http
    http:
      preferred_ip_protocol: ip4
      tls_config:
        insecure_skip_verify: true
  http_tls13:
    prober: http
    http:
      preferred_ip_protocol: ip4
      tls_config:
        insecure_skip_verify: true
        min_version: TLS13
  tcp_connect:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
  tls_connect:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: {ca}
  smtp_banner:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 "
        - send: "QUIT\r"
        - expect: "^221"
  smtp_starttls:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 ([^ ]+) ESMTP"
        - send: "EHLO prober\r"
        # STARTTLS may be the last line of nginx's EHLO answer ("250 STARTTLS").
        - expect: "^250[ -]STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\r"
        - expect: "^250 "
        - send: "QUIT\r"
      tls_config:
        ca_file: {ca}
        server_name: localhost
  imap_starttls:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "OK.*STARTTLS"
        - send: ". STARTTLS"
        - expect: "OK"
        - starttls: true
        - send: ". capability"
        - expect: "CAPABILITY IMAP4rev1"
      tls_config:
        ca_file: {ca}
        server_name: localhost
  redis_ping:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - send: "PING\r"
        - expect: "^\\+PONG"
  dns_a:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: www.{ZONE}
      query_type: A
      validate_answer_rrs:
        fail_if_not_matches_regexp:
          - "www\\.{zone_re}\\.\t300\tIN\tA\t203\\.0\\.113\\.[56]$"
  dns_a_every_rr:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: www.{ZONE}
      query_type: A
      validate_answer_rrs:
        # Every answer must match: www has .5 and .6, so this fails.
        fail_if_not_matches_regexp:
          - "\tA\t203\\.0\\.113\\.5$"
  dns_a_tcp:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      transport_protocol: tcp
      query_name: www.{ZONE}
      query_type: A
  dns_soa:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: {ZONE}
      query_type: SOA
  dns_mx_no_recursion:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: {ZONE}
      query_type: MX
      recursion_desired: false
      validate_answer_rrs:
        fail_if_none_matches_regexp:
          - "MX\t10 mx1\\."
  dns_nxdomain:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: nowhere.{ZONE}
      query_type: A
      valid_rcodes: [NXDOMAIN]
  dns_nxdomain_refused:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: nowhere.{ZONE}
      query_type: A
  dns_txt_forbidden:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: {ZONE}
      query_type: TXT
      validate_answer_rrs:
        fail_if_matches_regexp:
          - "v=spf1"
  dns_version_bind:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      query_name: version.bind
      query_type: TXT
      query_class: CH
  icmp:
    prober: icmp
    icmp:
      preferred_ip_protocol: ip4
  grpc:
    prober: grpc
    grpc:
      preferred_ip_protocol: ip4
  grpc_down:
    prober: grpc
    grpc:
      preferred_ip_protocol: ip4
      service: down
  grpc_tls:
    prober: grpc
    grpc:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: {ca}
        server_name: localhost
"#,
        zone_re = ZONE.replace('.', "\\\\."),
    )
}

/// One probe of the comparison, and the verdict the target is built to give.
struct Case {
    module: &'static str,
    target: String,
    success: bool,
}

fn case(module: &'static str, target: impl Into<String>, success: bool) -> Case {
    Case {
        module,
        target: target.into(),
        success,
    }
}

/// The real targets, started once.
struct Targets {
    nginx: Nginx,
    bind: Bind,
    grpc_plain: SocketAddr,
    grpc_tls: SocketAddr,
    _grpc: KillOnDrop,
    imap: SocketAddr,
    redis: SocketAddr,
    /// A port nothing listens on.
    closed: SocketAddr,
}

impl Targets {
    fn start() -> Targets {
        let nginx = Nginx::start();
        let bind = Bind::primary();
        let pki = pki();
        let grpc_plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let grpc_tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc_server.py");
        let grpc = Command::new(venv_python())
            .arg(script)
            .args(["--status", "=SERVING", "--status", "down=NOT_SERVING"])
            .args(["--plain", &grpc_plain.port().to_string()])
            .args(["--tls", &grpc_tls.port().to_string()])
            .arg("--cert")
            .arg(&pki.leaf.chain)
            .arg("--key")
            .arg(&pki.leaf.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map(KillOnDrop)
            .expect("start the gRPC server");
        for addr in [grpc_plain, grpc_tls] {
            wait_for_tcp(addr, Duration::from_secs(30));
        }
        Targets {
            nginx,
            bind,
            grpc_plain,
            grpc_tls,
            _grpc: grpc,
            imap: crate::tcp_conversations::dovecot().imap,
            redis: crate::tcp_conversations::redis().addr,
            closed: SocketAddr::from(([127, 0, 0, 1], free_port())),
        }
    }

    /// Every (module, target) pair and its expected verdict.
    fn cases(&self) -> Vec<Case> {
        let n = &self.nginx;
        let tls = |addr: SocketAddr, path: &str| format!("https://localhost:{}{path}", addr.port());
        let dns = self.bind.dns.to_string();
        vec![
            case("http_2xx", n.url("/ok"), true),
            // blackbox_exporter adds http:// to a target without a scheme.
            case("http_2xx", format!("{}/ok", n.http), true),
            case("http_2xx", n.url("/notfound"), false),
            case("http_2xx", n.url("/unavailable"), false),
            case("http_2xx", n.url("/redirect"), true),
            case("http_2xx", n.url("/to-https"), true),
            case("http_2xx", n.url("/loop"), false),
            case("http_2xx", n.https_url("/ok"), true),
            case("http_2xx", tls(n.short_intermediate, "/"), true),
            case("http_2xx", tls(n.expired, "/"), false),
            case("http_2xx", tls(n.wrong_host, "/"), false),
            case("http_2xx", tls(n.self_signed, "/"), false),
            case("http_2xx", format!("http://{}/", self.closed), false),
            case("http_no_redirects", n.url("/redirect"), false),
            case("http_302", n.url("/redirect"), true),
            case("http_post_2xx", n.url("/echo"), true),
            case("http_body", n.url("/ok"), true),
            case("http_body", n.url("/notfound"), false),
            case("http_body_forbidden", n.url("/ok"), false),
            case("http_headers", n.url("/ok"), true),
            case("http_header_required", n.url("/ok"), false),
            case("http_gzip", n.url("/gzip.txt"), true),
            case("http_ssl_required", n.url("/ok"), false),
            case("http_ssl_required", n.https_url("/ok"), true),
            case("http_no_ssl", n.https_url("/ok"), false),
            case("http_1_1_only", n.https_url("/ok"), false),
            case("http_1_1_only", n.url("/ok"), true),
            case("http_insecure", tls(n.expired, "/"), true),
            case("http_insecure", tls(n.self_signed, "/"), true),
            case("http_tls13", n.https_url("/ok"), true),
            // The misnamed chain's server offers TLS 1.2 only.
            case("http_tls13", tls(n.wrong_host, "/"), false),
            case("tcp_connect", n.http.to_string(), true),
            case("tcp_connect", self.closed.to_string(), false),
            case("tls_connect", format!("localhost:{}", n.https.port()), true),
            case(
                "tls_connect",
                format!("localhost:{}", n.expired.port()),
                false,
            ),
            case("smtp_banner", n.smtp.to_string(), true),
            case("smtp_starttls", n.smtp.to_string(), true),
            case("imap_starttls", self.imap.to_string(), true),
            case("redis_ping", self.redis.to_string(), true),
            case("redis_ping", n.http.to_string(), false),
            case("dns_a", dns.clone(), true),
            case("dns_a_every_rr", dns.clone(), false),
            case("dns_a_tcp", dns.clone(), true),
            case("dns_soa", dns.clone(), true),
            case("dns_mx_no_recursion", dns.clone(), true),
            case("dns_nxdomain", dns.clone(), true),
            case("dns_nxdomain_refused", dns.clone(), false),
            case("dns_txt_forbidden", dns.clone(), false),
            case("dns_version_bind", dns.clone(), true),
            case("dns_a", self.closed.to_string(), false),
            case("icmp", "127.0.0.1", true),
            case("grpc", self.grpc_plain.to_string(), true),
            case("grpc_down", self.grpc_plain.to_string(), false),
            case("grpc_tls", self.grpc_tls.to_string(), true),
            case("grpc", n.http.to_string(), false),
        ]
    }
}

/// A nightjar agent (`nightjar run`) whose `/probe` serves the modules of `blackbox`.
fn start_nightjar(dir: &Path, blackbox: &Path) -> (KillOnDrop, SocketAddr) {
    let config = dir.join("nightjar.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nblackbox_config = {:?}\n",
            blackbox.display().to_string()
        ),
    )
    .unwrap();
    // Every module loads: `nightjar validate` says so (and names any that does not).
    crate::support::run_ok(nightjar().arg("validate").arg("--config").arg(&config));
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let agent =
        crate::support::start_agent(nightjar().arg("run").arg("--config").arg(&config), listen);
    (agent, listen)
}

/// Where the two answers differ, one line each; empty when they agree.
fn differences(blackbox: &Probe, nightjar: &Probe) -> Vec<String> {
    let mut out = Vec::new();
    if blackbox.status != nightjar.status {
        out.push(format!(
            "HTTP status: blackbox {} nightjar {}",
            blackbox.status, nightjar.status
        ));
        return out;
    }
    let ignored: BTreeSet<&str> = NOT_COMPARED.iter().map(|(name, _)| *name).collect();
    let families = |samples: &Samples| -> BTreeSet<String> {
        samples
            .families()
            .into_iter()
            .filter(|name| !ignored.contains(name.as_str()))
            .collect()
    };
    let (ours, theirs) = (families(&nightjar.samples), families(&blackbox.samples));
    for missing in theirs.difference(&ours) {
        out.push(format!(
            "family {missing} only in blackbox_exporter's answer"
        ));
    }
    for extra in ours.difference(&theirs) {
        out.push(format!("family {extra} only in nightjar's answer"));
    }
    for name in COMPARED {
        let (b, n) = (blackbox.samples.family(name), nightjar.samples.family(name));
        if b != n {
            out.push(format!(
                "{name}: blackbox {} nightjar {}",
                show(&b),
                show(&n)
            ));
        }
    }
    out
}

fn show(family: &BTreeMap<Vec<(String, String)>, f64>) -> String {
    if family.is_empty() {
        return "(absent)".to_string();
    }
    family
        .iter()
        .map(|(labels, value)| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{{{}}} {value}", labels.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_match_blackbox_exporter_module_by_module() {
    let targets = Targets::start();
    let config = blackbox_yml();
    let exporter = Exporter::start(&config);
    let (_agent, agent) = start_nightjar(exporter.dir(), &exporter.config);
    let cases = targets.cases();

    let answers = futures_util::future::join_all(cases.iter().map(|case| async {
        let (theirs, ours) = tokio::join!(
            probe(exporter.addr, case.module, &case.target, SCRAPE_TIMEOUT),
            probe(agent, case.module, &case.target, SCRAPE_TIMEOUT),
        );
        (theirs, ours)
    }))
    .await;

    let mut problems = Vec::new();
    for (case, (theirs, ours)) in cases.iter().zip(&answers) {
        let expected = if case.success { 1.0 } else { 0.0 };
        let header = format!("module {} target {}", case.module, case.target);
        if theirs.samples.value("probe_success") != Some(expected) {
            problems.push(format!(
                "{header}: blackbox_exporter's probe_success is not {expected} (the target is not what the test built):\n{}",
                theirs.body
            ));
            continue;
        }
        if case.module == "dns_soa" {
            assert_eq!(
                theirs.samples.value("probe_dns_serial"),
                Some(f64::from(SERIAL)),
                "{header}: {}",
                theirs.body
            );
        }
        let diff = differences(theirs, ours);
        if !diff.is_empty() {
            problems.push(format!(
                "{header}:\n  {}\n--- blackbox_exporter:\n{}--- nightjar:\n{}",
                diff.join("\n  "),
                theirs.body,
                ours.body
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} (module, target) pairs differ:\n\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n\n")
    );

    import_round_trip(&exporter, &cases);

    // Unknown modules and missing targets are refused alike.
    for (module, target) in [("no_such_module", "127.0.0.1"), ("http_2xx", "")] {
        let (theirs, ours) = (
            probe(exporter.addr, module, target, SCRAPE_TIMEOUT).await,
            probe(agent, module, target, SCRAPE_TIMEOUT).await,
        );
        assert_eq!(
            (theirs.status, ours.status),
            (400, 400),
            "module {module:?} target {target:?}: blackbox {}, nightjar {}",
            theirs.body,
            ours.body
        );
    }
}

/// `nightjar import blackbox` on the same blackbox.yml and a file_sd file of the same targets
/// (`__param_module` per group): the checks it writes validate, and `nightjar check` gives
/// each (module, target) the verdict blackbox_exporter gave.
fn import_round_trip(exporter: &Exporter, cases: &[Case]) {
    let dir = exporter.dir();
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for case in cases {
        groups.entry(case.module).or_default().push(&case.target);
    }
    let file_sd: Vec<serde_json::Value> = groups
        .iter()
        .map(|(module, targets)| {
            serde_json::json!({ "targets": targets, "labels": { "__param_module": module } })
        })
        .collect();
    let targets = dir.join("targets.json");
    std::fs::write(&targets, serde_json::to_string_pretty(&file_sd).unwrap()).unwrap();
    let checks = dir.join("imported.toml");
    crate::support::run_ok(
        nightjar()
            .args(["import", "blackbox", "--config"])
            .arg(&exporter.config)
            .arg("--targets")
            .arg(&targets)
            .args(["--emit", "checks", "--output"])
            .arg(&checks),
    );
    crate::support::run_ok(nightjar().arg("validate").arg("--config").arg(&checks));
    let out = nightjar()
        .args(["check", "--format", "json", "--config"])
        .arg(&checks)
        .output()
        .unwrap();
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|error| {
            panic!(
                "nightjar check printed no JSON ({error}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // A check is named after its module and target; its target is shown as the check reads
    // it (`http://` added where blackbox_exporter adds it).
    // (a dns check shows `NAME TYPE @ SERVER (PROTOCOL)`: the server is the target).
    let shown = |target: &str| {
        let target = match target.split_once(" @ ") {
            Some((_, server)) => server.split(' ').next().unwrap_or(server),
            None => target,
        };
        target.trim_start_matches("http://").to_string()
    };
    let expected: BTreeMap<(&str, String), bool> = cases
        .iter()
        .map(|case| ((case.module, shown(&case.target)), case.success))
        .collect();
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for result in &results {
        let name = result["name"].as_str().unwrap();
        let target = shown(result["target"].as_str().unwrap());
        let module = groups
            .keys()
            .find(|module| name.starts_with(&format!("{module}-")))
            .unwrap_or_else(|| panic!("check {name} is named after no module"));
        let key = (*module, target.clone());
        let Some(success) = expected.get(&key) else {
            problems.push(format!(
                "check {name}: no case for module {module} target {target}"
            ));
            continue;
        };
        seen.insert(key);
        if result["success"].as_bool() != Some(*success) {
            problems.push(format!(
                "check {name} (module {module}, target {target}): success {} where blackbox_exporter's /probe said {success}: {result}",
                result["success"]
            ));
        }
    }
    let missing: Vec<String> = expected
        .keys()
        .filter(|key| !seen.contains(*key))
        .map(|(module, target)| format!("module {module} target {target}"))
        .collect();
    assert!(
        missing.is_empty(),
        "no imported check ran for:\n{}\n\nnightjar check printed:\n{}",
        missing.join("\n"),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        problems.is_empty(),
        "imported checks disagree with /probe:\n{}",
        problems.join("\n")
    );
}
