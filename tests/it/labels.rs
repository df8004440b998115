//! Label names: every name nightjar writes is in `metrics::RESERVED_LABELS`, and any
//! configuration that validates renders a `/metrics` that the real `promtool check metrics`
//! accepts, over many generated configurations (reserved names, `[agent] labels` keys, odd
//! names and values with quotes, backslashes, newlines and non-ASCII) with results of every
//! check kind observed, certificate chains, DNS servers, domain expiry and flow steps
//! included.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use nightjar::checks::{CheckKind, CheckSpec};
use nightjar::config::{self, CheckDef, Config, MapEnv, Overrides};
use nightjar::metrics::{Metrics, RESERVED_LABELS, RemoteResult, TrafficResult};
use nightjar::result::{
    CertInfo, CheckResult, Details, DnsDetails, DomainDetails, FlowDetails, GrpcDetails,
    HttpDetails, IcmpDetails, IcmpSocketKind, SoaServer, Status, StepResult, TcpDetails,
    TlsDetails, TlsInfo, UdpDetails, WebsocketDetails,
};

use super::support::require;

/// A small deterministic generator (SplitMix64), so every run tests the same configurations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_str(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Label names the generator draws from: every reserved name, Prometheus's `__` prefix, keys
/// the generated `[agent] labels` use, ordinary names and invalid ones.
fn name_pool() -> Vec<String> {
    let mut names: Vec<String> = RESERVED_LABELS.iter().map(|s| s.to_string()).collect();
    names.extend(
        [
            "__meta_x",
            "__x",
            "env",
            "team",
            "service",
            "owner",
            "tier",
            "Team",
            "_private",
            "a1",
            "bad-name",
            "1abc",
            "dotted.name",
            "é",
            "",
            "severity",
        ]
        .map(String::from),
    );
    names
}

/// Names no part of nightjar writes and that are valid.
const USABLE: &[&str] = &[
    "service", "owner", "tier", "Team", "_private", "a1", "severity",
];

const VALUES: &[&str] = &[
    "x",
    "",
    "with \"quotes\"",
    "back\\slash",
    "new\nline",
    "tab\there",
    "ünïcödé ✓ 名前",
    "}",
    "a,b=c",
    "${env:SECRET}",
    "trailing\\",
    "\\n literally",
];

const CHECK_NAMES: &[&str] = &[
    "shop", "api", "db", "mail", "zone", "login", "shop", "Bad Name",
];

/// One check's TOML of `kind`, with `labels`.
fn check_toml(rng: &mut Rng, kind: CheckKind, name: &str, labels: &str) -> String {
    let mut out = format!(
        "[[check]]\nname = {}\ntype = \"{}\"\ninterval = \"1m\"\n",
        toml_str(name),
        kind.as_str()
    );
    if !labels.is_empty() {
        let _ = writeln!(out, "labels = {{ {labels} }}");
    }
    if rng.chance(10) {
        out.push_str("regions = [\"elsewhere\"]\n");
    }
    match kind {
        CheckKind::Http => out.push_str("url = \"https://shop.example.com/health\"\n"),
        CheckKind::Tls => out.push_str("target = \"shop.example.com:443\"\n"),
        CheckKind::Tcp => {
            out.push_str("target = \"db.example.com:5432\"\n");
            if rng.chance(50) {
                out.push_str("tls = true\n");
            }
        }
        CheckKind::Dns => out.push_str(
            "query = \"example.com\"\nrecord = \"SOA\"\nserver = \"127.0.0.1:53\"\n",
        ),
        CheckKind::Domain => out.push_str("domain = \"example.com\"\n"),
        CheckKind::Flow => out.push_str(
            "  [[check.steps]]\n  name = \"login\"\n  url = \"https://shop.example.com/login\"\n  extract = { csrf = { form_field = \"csrf\" } }\n  [[check.steps]]\n  name = \"submit\"\n  method = \"POST\"\n  url = \"https://shop.example.com/login\"\n  form = { csrf = \"${csrf}\" }\n",
        ),
        CheckKind::Websocket => out.push_str(
            "url = \"wss://chat.example.com/socket\"\nsteps = [{ send = \"ping\" }, { expect = 'pong' }]\n",
        ),
        CheckKind::Grpc => out.push_str("target = \"api.example.com:443\"\nservice = \"shop\"\n"),
        CheckKind::Icmp => out.push_str("target = \"gateway.example.com\"\n"),
        CheckKind::Udp => {
            out.push_str("target = \"ntp.example.com:123\"\nsend_hex = \"1b\"\n")
        }
    }
    out
}

/// `count` entries of an inline label table drawn from `names` and [`VALUES`].
fn labels_toml(rng: &mut Rng, names: &[String], count: usize) -> String {
    (0..count)
        .map(|_| {
            // Mostly usable names, so that many configurations validate; the rest from
            // the whole pool, so that many do not.
            let name: String = if rng.chance(80) {
                rng.pick(USABLE).to_string()
            } else {
                rng.pick(names).clone()
            };
            let value: &&str = rng.pick(VALUES);
            format!("{} = {}", toml_str(&name), toml_str(value))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A generated configuration: an optional `[agent]` with labels, checks of every kind with
/// labels, and sometimes an injector and a remote-write endpoint (whose families carry
/// `traffic` and `remote`).
fn generate(rng: &mut Rng, names: &[String]) -> String {
    let mut text = String::new();
    if rng.chance(70) {
        text.push_str("[agent]\nregion = \"lab\"\n");
        let count = rng.below(3);
        if count > 0 {
            // Agent labels lean on the names checks use too, so collisions happen.
            let agent_names: Vec<String> = ["env", "team", "service", "owner"]
                .iter()
                .map(|s| s.to_string())
                .chain(names.iter().take(4).cloned())
                .chain([rng.pick(names).clone()])
                .collect();
            let _ = writeln!(
                text,
                "labels = {{ {} }}",
                labels_toml(rng, &agent_names, count)
            );
        }
        text.push('\n');
    }
    let checks = 1 + rng.below(6);
    for idx in 0..checks {
        let kind = *rng.pick(CheckKind::ALL);
        let name = if rng.chance(90) {
            format!("{}-{idx}", rng.pick(CHECK_NAMES))
        } else {
            rng.pick(CHECK_NAMES).to_string()
        };
        let count = rng.below(4);
        let labels = labels_toml(rng, names, count);
        text.push_str(&check_toml(rng, kind, &name, &labels));
        text.push('\n');
    }
    if rng.chance(40) {
        text.push_str("[[traffic]]\nname = \"night-floor\"\nfloor = \"10/h\"\nurl = \"https://shop.example.com/ping\"\n\n");
    }
    if rng.chance(40) {
        text.push_str(
            "[[remote_write]]\nname = \"central\"\nurl = \"http://127.0.0.1:9/api/v1/write\"\n\n",
        );
    }
    text
}

/// A certificate whose names hold what real certificates may: quotes, commas, equals signs,
/// backslashes, non-ASCII.
fn cert(position: usize) -> CertInfo {
    CertInfo {
        subject: format!("CN=shop \"{position}\",O=Ex\\ample, Ünï"),
        issuer: "CN=Test CA,O=\"Quoted\" Inc.".to_string(),
        serial: format!("0{position}:ab:cd"),
        sans: vec!["shop.example.com".to_string(), "*.example.com".to_string()],
        not_before: 1_700_000_000,
        not_after: 1_800_000_000 + position as i64,
        fingerprint_sha256: "ab".repeat(32),
    }
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3",
        alpn: Some("h2".to_string()),
        chain: vec![cert(0), cert(1)],
        chain_valid: true,
        verify_error: None,
        hostname_match: false,
    }
}

fn http_details() -> HttpDetails {
    HttpDetails {
        resolve: Duration::from_millis(1),
        connect: Duration::from_millis(2),
        tls: Duration::from_millis(3),
        processing: Duration::from_millis(4),
        transfer: Duration::from_millis(5),
        status_code: Some(200),
        http_version: Some(2.0),
        content_length: Some(42),
        redirects: 1,
        tls_used: true,
        tls_version: Some("TLSv1.3"),
        remote_addr: Some("127.0.0.1:443".parse().unwrap()),
        tls_info: Some(tls_info()),
        uncompressed_length: Some(84),
        ..Default::default()
    }
}

/// The fullest details a run of `def` can have: every family of its kind appears.
pub(crate) fn details_of(def: &CheckDef) -> Details {
    match &def.spec {
        CheckSpec::Http(_) => Details::Http(http_details()),
        CheckSpec::Tls(_) => Details::Tls(TlsDetails {
            resolve: Duration::from_millis(1),
            connect: Duration::from_millis(2),
            handshake: Duration::from_millis(3),
            remote_addr: Some("[::1]:443".parse().unwrap()),
            info: Some(tls_info()),
            ..Default::default()
        }),
        CheckSpec::Tcp(spec) => Details::Tcp(TcpDetails {
            resolve: Duration::from_millis(1),
            connect: Duration::from_millis(2),
            exchange: Duration::from_millis(3),
            received: 10,
            remote_addr: Some("127.0.0.1:5432".parse().unwrap()),
            tls: spec.tls.as_ref().map(|_| Duration::from_millis(4)),
            tls_info: spec.tls.as_ref().map(|_| tls_info()),
            steps: Vec::new(),
            unix_socket: spec.unix.is_some(),
        }),
        CheckSpec::Dns(_) => Details::Dns(DnsDetails {
            server: "127.0.0.1:53".to_string(),
            rcode: Some(hickory_proto::op::ResponseCode::NoError),
            authoritative: true,
            answer_rrs: 1,
            soa_serial: Some(2024010101),
            earliest_rrsig: Some(1_800_000_000),
            soa_servers: vec![
                SoaServer {
                    server: "ns1.example.com \"a\"".to_string(),
                    serial: Some(1),
                },
                SoaServer {
                    server: "ns2.example.com".to_string(),
                    serial: Some(2),
                },
            ],
            tls_info: Some(tls_info()),
            ..Default::default()
        }),
        CheckSpec::Domain(_) => Details::Domain(Box::new(DomainDetails {
            expiry: Some(1_900_000_000),
            server: Some("https://rdap.example/".to_string()),
            http: http_details(),
            ..Default::default()
        })),
        CheckSpec::Flow(flow) => Details::Flow(FlowDetails {
            steps: flow
                .steps
                .iter()
                .map(|step| StepResult {
                    name: step.name.clone(),
                    duration: Duration::from_millis(7),
                    success: true,
                    status_code: Some(200),
                    http: http_details(),
                })
                .collect(),
            failed_step: None,
        }),
        CheckSpec::Websocket(_) => Details::Websocket(WebsocketDetails {
            resolve: Duration::from_millis(1),
            connect: Duration::from_millis(2),
            tls: Duration::from_millis(3),
            upgrade: Duration::from_millis(4),
            exchange: Duration::from_millis(5),
            close: Duration::from_millis(6),
            status_code: Some(101),
            messages_sent: 1,
            messages_received: 1,
            close_code: Some(1000),
            close_reason: Some("bye".to_string()),
            remote_addr: Some("[::1]:443".parse().unwrap()),
            tls_info: Some(tls_info()),
        }),
        CheckSpec::Grpc(_) => Details::Grpc(GrpcDetails {
            resolve: Duration::from_millis(1),
            connect: Duration::from_millis(2),
            tls: Duration::from_millis(3),
            check: Duration::from_millis(4),
            remote_addr: Some("[::1]:443".parse().unwrap()),
            tls_used: true,
            tls_info: Some(tls_info()),
            status_code: Some(0),
            serving_status: Some(1),
        }),
        CheckSpec::Icmp(_) => Details::Icmp(IcmpDetails {
            resolve: Duration::from_millis(1),
            setup: Duration::from_micros(50),
            rtt: Duration::from_millis(3),
            rtt_min: Duration::from_millis(2),
            rtt_max: Duration::from_millis(4),
            rtt_stddev: Duration::from_millis(1),
            sent: 3,
            received: 2,
            reply_hop_limit: Some(61),
            remote_addr: Some("192.0.2.1:0".parse().unwrap()),
            socket: Some(IcmpSocketKind::Datagram),
        }),
        CheckSpec::Udp(_) => Details::Udp(UdpDetails {
            resolve: Duration::from_millis(1),
            exchange: Duration::from_millis(2),
            sent: 2,
            received: 48,
            remote_addr: Some("[2001:db8::1]:123".parse().unwrap()),
        }),
    }
}

/// Metrics for `config` after a failed run (every reason of each kind counted) and then a
/// passing run with full details of every check, and after the injectors and remote-write
/// endpoints reported.
pub(crate) fn observed(config: &Config) -> Metrics {
    let metrics = Metrics::new(config);
    for def in &config.checks {
        let result = |status: Status, details: Details| CheckResult {
            check: def.name.clone(),
            kind: def.kind(),
            started_at: SystemTime::now(),
            duration: Duration::from_millis(12),
            status,
            details,
        };
        for reason in def.kind().reasons() {
            metrics.observe(&result(Status::fail(*reason, "failed"), Details::default()));
        }
        metrics.observe(&result(Status::Pass, details_of(def)));
        metrics.skipped(&def.name);
    }
    for def in &config.traffic {
        metrics.traffic_plan(&def.name, def.floor, Some(0.5), 1.0, true);
        metrics.traffic_request(&def.name, TrafficResult::Success);
    }
    for def in &config.remote_write {
        metrics.remote_write(&def.name, RemoteResult::Sent, 10);
        metrics.remote_write_retry(&def.name);
        metrics.remote_write_queue(&def.name, 3);
    }
    metrics.observe_lag(Duration::from_millis(3));
    metrics
}

/// The label names of one sample line of the text format, in order.
fn label_names(line: &str) -> Vec<String> {
    let Some(open) = line.find('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') || rest.is_empty() {
            return names;
        }
        let eq = rest.find('=').expect("a label has a value");
        names.push(rest[..eq].to_string());
        // Skip the quoted value, with its escapes.
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = 0;
        while let Some((idx, ch)) = chars.next() {
            match ch {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = idx;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[eq + 2 + end + 1..];
    }
}

/// Every series' label names: the text exposition and remote write's series.
fn every_label_set(config: &Config, metrics: &Metrics) -> Vec<(String, Vec<String>)> {
    let text = metrics.render();
    let mut sets: Vec<(String, Vec<String>)> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| (line.to_string(), label_names(line)))
        .collect();
    let extra = vec![("agent".to_string(), config.agent.name.clone())];
    nightjar::remote_write::each_series(&metrics.gather(), &extra, 0, &mut |series| {
        let names: Vec<String> = series.labels.iter().map(|l| l.name.clone()).collect();
        sets.push((format!("remote write {names:?}"), names));
    });
    sets
}

fn load(text: &str) -> Result<Config, String> {
    let env = MapEnv(
        [("SECRET".to_string(), "hunter2".to_string())]
            .into_iter()
            .collect(),
    );
    config::load_str(Path::new("gen.toml"), text, &env, &Overrides::default())
        .map_err(|errors| errors.to_string())
}

/// Every label name on any series nightjar writes (every check kind with its fullest details,
/// injectors, remote write, the agent's own series) is in `RESERVED_LABELS`: the list config
/// validation refuses is the list the code writes.
#[test]
fn every_label_nightjar_writes_is_reserved() {
    let mut text = String::from("[agent]\nregion = \"lab\"\n\n");
    for (idx, kind) in CheckKind::ALL.iter().enumerate() {
        text.push_str(&check_toml(&mut Rng(0), *kind, &format!("c{idx}"), ""));
    }
    text.push_str("[[traffic]]\nname = \"n\"\nfloor = \"10/h\"\nurl = \"https://shop.example.com/ping\"\n\n[[remote_write]]\nname = \"r\"\nurl = \"http://127.0.0.1:9/api/v1/write\"\n");
    let config = load(&text).unwrap_or_else(|errors| panic!("{errors}\n{text}"));
    assert_eq!(config.checks.len(), CheckKind::ALL.len());
    let metrics = observed(&config);
    // A template's discovery source.
    metrics.discovery.refreshed("c0", "file sd/*.json", 3);
    let mut written = BTreeSet::new();
    for (_, names) in every_label_set(&config, &metrics) {
        written.extend(names);
    }
    let missing: Vec<&String> = written
        .iter()
        .filter(|name| !RESERVED_LABELS.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "label names written but not reserved: {missing:?}"
    );
    // The fullest run writes the per-kind names the list exists for.
    for name in [
        "subject",
        "issuer",
        "position",
        "fingerprint_sha256",
        "step",
        "server",
        "rcode",
        "expires",
        "phase",
        "le",
        "traffic",
        "remote",
        "agent",
        "__name__",
        "source",
    ] {
        assert!(
            written.contains(name),
            "{name} was not written: {written:?}"
        );
    }
}

/// Any configuration that validates renders a `/metrics` that `promtool check metrics`
/// accepts, and remote write pushes no series with a label twice; over 400 generated
/// configurations, both accepted and refused ones occur, and each refusal of a label names the
/// place.
#[test]
fn generated_configs_that_validate_render_metrics_promtool_accepts() {
    let promtool = require("promtool", "prometheus");
    let names = name_pool();
    let mut rng = Rng(0x6e69_6768_746a_6172);
    let (mut accepted, mut refused, mut label_refusals) = (0, 0, 0);
    let mut kinds_seen = BTreeSet::new();
    for round in 0..400 {
        let text = generate(&mut rng, &names);
        let config = match load(&text) {
            Ok(config) => config,
            Err(errors) => {
                refused += 1;
                for line in errors.lines() {
                    assert!(
                        line.starts_with("gen.toml:"),
                        "every problem has its place: {line}"
                    );
                    if line.contains("label") {
                        label_refusals += 1;
                    }
                }
                continue;
            }
        };
        accepted += 1;
        for def in &config.checks {
            if def.runs_in(&config.agent.region) {
                kinds_seen.insert(def.kind().as_str());
            }
            for name in def.labels.keys() {
                assert!(
                    !nightjar::metrics::is_reserved_label(name)
                        && !config.agent.labels.contains_key(name),
                    "round {round}: label {name} validated\n{text}"
                );
            }
        }
        let metrics = observed(&config);
        for (series, names) in every_label_set(&config, &metrics) {
            let unique: BTreeSet<&String> = names.iter().collect();
            assert_eq!(
                unique.len(),
                names.len(),
                "round {round}: a label twice in {series}\n--- config ---\n{text}"
            );
        }
        if let Err(out) = crate::support::promtool_check_metrics(&promtool, &metrics.render()) {
            panic!(
                "round {round}: promtool check metrics refused the exposition:\n{out}\n--- config ---\n{text}"
            );
        }
    }
    eprintln!("{accepted} accepted, {refused} refused ({label_refusals} label problems)");
    assert!(
        accepted >= 50,
        "only {accepted} generated configs validated"
    );
    assert!(
        refused >= 50,
        "only {refused} generated configs were refused"
    );
    assert!(
        label_refusals >= 50,
        "labels were refused {label_refusals} times"
    );
    assert_eq!(
        kinds_seen.len(),
        CheckKind::ALL.len(),
        "every kind was observed in a valid config: {kinds_seen:?}"
    );
}
