//! `nightjar import blackbox` through the real binary: blackbox_exporter's own example
//! configuration, Prometheus scrape jobs and file_sd files as target lists, the checks it
//! writes validated by `nightjar validate` and run by `nightjar check` against real nginx and
//! BIND.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::bind::{Bind, SERIAL, ZONE};
use crate::support::{Nginx, nightjar};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/blackbox/example.yml"
);

fn import(args: &[&str], dir: &Path) -> Output {
    nightjar()
        .current_dir(dir)
        .args(["import", "blackbox"])
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `nightjar validate --no-secrets` on `path`, asserting it passes; returns its stdout.
fn validate(path: &Path) -> String {
    let out = nightjar()
        .args(["validate", "--no-secrets", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "validate failed:\n{}{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        std::fs::read_to_string(path).unwrap()
    );
    text(&out.stdout)
}

/// The example's modules with a target each; the four left out read files that are not here
/// (`body_file: /files/body.txt`, `ca_file: /certs/my_cert.crt`, `/etc/blackbox_exporter/CA_cert.crt`).
const VALIDATES_HERE: &[(&str, &str)] = &[
    ("http_2xx_example", "https://example.com/"),
    ("http_with_proxy", "https://example.com/"),
    ("http_with_proxy_and_headers", "https://example.com/"),
    ("http_json_cel_match", "https://example.com/api"),
    (
        "http_2xx_oauth_client_credentials",
        "https://example.com/api",
    ),
    ("http_gzip", "https://example.com/"),
    ("http_gzip_with_accept_encoding", "https://example.com/"),
    ("http_with_header_from_files", "https://example.com/"),
    ("dns_udp_example", "127.0.0.1"),
    ("dns_tcp_example", "127.0.0.1"),
    ("unix_socket_ping", "/run/app.sock"),
    ("http_post_2xx", "https://example.com/api"),
    ("http_basic_auth_example", "https://example.com/login"),
    ("tls_connect", "example.com:443"),
    ("tcp_connect_example", "example.com:22"),
    ("imap_starttls", "mail.example.com:143"),
    ("smtp_starttls", "mail.example.com:25"),
    ("irc_banner_example", "irc.example.com:6667"),
    ("icmp_example", "127.0.0.1"),
    ("dns_soa", "127.0.0.1"),
    ("postgresql", "db.example.com:5432"),
    ("websocket_example_basic_auth", "wss://ws.example.com/chat"),
    (
        "websocket_example_bearer_token",
        "wss://ws.example.com/chat",
    ),
];

#[test]
fn the_example_configuration_carries_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = import(&["--config", EXAMPLE, "--emit", "modules"], dir.path());
    let stderr = text(&out.stderr);
    // Every module of blackbox_exporter's own example carries over.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.lines().any(|line| line.starts_with(EXAMPLE)),
        "{stderr}"
    );

    let out = import(
        &["--config", EXAMPLE, "--emit", "modules", "--allow-partial"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    let toml = text(&out.stdout);
    assert_eq!(toml.matches("[[module]]").count(), 27, "{toml}");
    let parsed: toml::Table = toml.parse().unwrap();
    assert_eq!(parsed["module"].as_array().unwrap().len(), 27);
    for (expected, why) in [
        (
            "# tests/fixtures/blackbox/example.yml:3 module http_2xx_example\n[[module]]\nname = \"http_2xx_example\"\ntype = \"http\"\ntimeout = \"5s\"\n",
            "origin and timeout",
        ),
        (
            "expect.headers_not_match = [{ header = \"Set-Cookie\", regex = \".*\", allow_missing = true }]\n",
            "fail_if_header_matches",
        ),
        (
            "send_hex = \"00 00 00 08 04 d2 16 2f 0a\"",
            "!!binary send, with blackbox's newline",
        ),
        ("{ send = \"PONG ${1}\\n\" }", "a send expanding a group"),
        (
            "{ send = \"Hello server, i'am ${1}\" }",
            "a websocket send expanding a group",
        ),
        (
            "password = \"${env:BLACKBOX_HTTP_BASIC_AUTH_EXAMPLE_BASIC_AUTH_PASSWORD}\"",
            "an inline password as a variable",
        ),
        (
            "headers = { X-API-Key = \"${file:/path/to/api-key.txt}\" }",
            "a header from a file",
        ),
        ("record = \"ANY\"", "blackbox's default query type"),
    ] {
        let expected = expected.replace("tests/fixtures/blackbox/example.yml", EXAMPLE);
        assert!(toml.contains(&expected), "{why}: {expected}\n{toml}");
    }
    for secret in [
        "mysecret",
        "secret_token",
        "client_secret\"",
        "password\"",
        "Bearer token",
    ] {
        assert!(!toml.contains(secret), "{secret} copied:\n{toml}");
    }
    // The variables to set are listed, on stderr and in the file.
    for name in [
        "BLACKBOX_HTTP_BASIC_AUTH_EXAMPLE_BASIC_AUTH_PASSWORD",
        "BLACKBOX_HTTP_2XX_OAUTH_CLIENT_CREDENTIALS_OAUTH2_CLIENT_SECRET",
        "BLACKBOX_HTTP_WITH_PROXY_AND_HEADERS_PROXY_CONNECT_HEADER_PROXY_AUTHORIZATION",
        "BLACKBOX_WEBSOCKET_EXAMPLE_BASIC_AUTH_BASIC_AUTH_PASSWORD",
        "BLACKBOX_WEBSOCKET_EXAMPLE_BEARER_TOKEN_AUTHORIZATION_CREDENTIALS",
    ] {
        assert!(stderr.contains(name), "{name} not listed:\n{stderr}");
        assert!(
            toml.contains(&format!("#   {name} (module")),
            "{name} not listed:\n{toml}"
        );
    }

    // Checks from the modules whose keys exist in this build validate.
    let mut groups = String::new();
    for (module, target) in VALIDATES_HERE {
        let _ = writeln!(
            groups,
            "- targets: [{target:?}]\n  labels: {{__param_module: {module}, team: web}}"
        );
    }
    let targets = write(dir.path(), "targets.yml", &groups);
    let out = import(
        &[
            "--config",
            EXAMPLE,
            "--emit",
            "checks",
            "--allow-partial",
            "--targets",
            targets.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let checks = write(dir.path(), "checks.toml", &text(&out.stdout));
    assert_eq!(
        validate(&checks),
        format!("configuration is valid: {} checks\n", VALIDATES_HERE.len())
    );
}

#[test]
fn options_that_cannot_be_carried_over_stop_the_import_unless_partial() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "blackbox.yml",
        "modules:\n  h3:\n    prober: http\n    http:\n      enable_http3: true\n      valid_status_codes: [200]\n  typo:\n    prober: tcp\n    tcp:\n      tsl: true\n",
    );
    let out = import(&["--config", "blackbox.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "", "nothing is written");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(
            "blackbox.yml:5: module h3: http.enable_http3: nightjar does not speak HTTP/3"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(
            "blackbox.yml:10: module typo: tcp.tsl: unknown option (did you mean `tls`?)"
        ),
        "{stderr}"
    );
    assert!(lines[2].contains("--allow-partial"), "{stderr}");

    let out = import(
        &[
            "--config",
            config.to_str().unwrap(),
            "--allow-partial",
            "--output",
            "out.toml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "still not complete");
    let toml = std::fs::read_to_string(dir.path().join("out.toml")).unwrap();
    assert!(
        toml.contains("[[module]]\nname = \"h3\"\ntype = \"http\"\nexpect.status = [200]\n"),
        "{toml}"
    );
    assert!(
        toml.contains("# NOT CARRIED OVER (")
            && toml.contains(":5) http.enable_http3: nightjar does not speak HTTP/3"),
        "{toml}"
    );
    toml.parse::<toml::Table>().unwrap();
}

#[test]
fn unreadable_input_exits_2_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yml",
        "modules:\n  m:\n    prober: http\n   http: {}\n",
    );
    let out = import(&["--config", "bad.yml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("nightjar: bad.yml:4:"), "{stderr}");
    assert!(stderr.contains("YAML syntax error"), "{stderr}");

    let out = import(&["--config", "missing.yml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("nightjar: missing.yml: cannot read it"),
        "{}",
        text(&out.stderr)
    );

    write(
        dir.path(),
        "blackbox.yml",
        "modules:\n  http_2xx:\n    prober: http\n",
    );
    write(dir.path(), "sd.yml", "- targets: [a.example.com]\n");
    let out = import(
        &["--config", "blackbox.yml", "--targets", "sd.yml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("nightjar: sd.yml:1:3: these targets name no module (hint: give each group a `__param_module` label"), "{stderr}");
}

#[test]
fn prometheus_jobs_and_file_sd_give_one_check_per_target() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "blackbox.yml",
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n  tcp_connect:\n    prober: tcp\n",
    );
    std::fs::create_dir(dir.path().join("sd")).unwrap();
    write(
        dir.path(),
        "sd/web.json",
        r#"[{"targets": ["https://shop.example.com", "https://api.example.com/health"], "labels": {"team": "shop", "__meta_x": "y"}}]"#,
    );
    write(
        dir.path(),
        "sd/web.yml",
        "- targets: [https://blog.example.com]\n  labels: {team: blog, job: ignored, module: web}\n",
    );
    write(dir.path(), "sd/notes.txt", "not matched\n");
    write(
        dir.path(),
        "prometheus.yml",
        r#"global: {scrape_interval: 30s}
scrape_configs:
  - job_name: node
    static_configs: [{targets: ["localhost:9100"]}]
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [http_2xx]
    static_configs:
      - targets:
          - https://example.com
          - https://Example.com
        labels:
          env: prod
    file_sd_configs:
      - files: ["sd/*.json", "sd/web.yml"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115
  - job_name: blackbox_tcp
    metrics_path: /probe
    scrape_interval: 2m
    params:
      module: [tcp_connect]
    static_configs:
      - targets: ["db.example.com:5432"]
      - targets: ["https://status.example.com"]
        labels: {probe_module: http_2xx}
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [probe_module]
        target_label: __param_module
"#,
    );
    let out = import(
        &[
            "--config",
            "blackbox.yml",
            "--targets",
            "prometheus.yml",
            "--emit",
            "checks",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    assert_eq!(toml.matches("[[check]]").count(), 7, "{toml}");
    assert!(!toml.contains("[[module]]"));
    assert!(
        toml.contains("\n# blackbox.yml:2 module http_2xx; target from prometheus.yml:10 job \"blackbox\"\n[[check]]\nname = \"http_2xx-example-com\"\nurl = \"https://example.com\"\ninterval = \"30s\"\ntype = \"http\"\ntimeout = \"5s\"\nlabels = { env = \"prod\" }\n"),
        "{toml}"
    );
    assert!(
        toml.contains("name = \"http_2xx-example-com-2\"\nurl = \"https://Example.com\""),
        "{toml}"
    );
    assert!(toml.contains("# blackbox.yml:2 module http_2xx; target from sd/web.json:1 (file_sd of prometheus.yml:16 job \"blackbox\")\n"), "{toml}");
    assert!(toml.contains("name = \"http_2xx-api-example-com-health\"\nurl = \"https://api.example.com/health\"\ninterval = \"30s\"\ntype = \"http\"\ntimeout = \"5s\"\nlabels = { team = \"shop\" }\n"), "{toml}");
    assert!(toml.contains("url = \"https://blog.example.com\"\ninterval = \"30s\"\ntype = \"http\"\ntimeout = \"5s\"\nlabels = { team = \"blog\" }\n"), "{toml}");
    assert!(toml.contains("name = \"tcp_connect-db-example-com-5432\"\ntarget = \"db.example.com:5432\"\ninterval = \"120s\"\ntype = \"tcp\"\n"), "{toml}");
    // The module from a label the job relabels into __param_module.
    assert!(toml.contains("name = \"http_2xx-status-example-com\"\nurl = \"https://status.example.com\"\ninterval = \"120s\"\ntype = \"http\"\ntimeout = \"5s\"\nlabels = { probe_module = \"http_2xx\" }\n"), "{toml}");
    let checks = write(dir.path(), "checks.toml", &toml);
    assert_eq!(validate(&checks), "configuration is valid: 7 checks\n");
}

#[test]
fn five_hundred_targets_over_ten_modules_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut blackbox = String::from("modules:\n");
    let mut sd = String::new();
    for module in 0..10 {
        let (body, target): (String, fn(usize) -> String) = match module % 5 {
            0 => (format!("    prober: http\n    timeout: {}s\n    http:\n      valid_status_codes: [200, 204]\n      method: GET\n      headers: {{X-Probe: m{module}}}\n      fail_if_not_ssl: true\n      fail_if_body_matches_regexp: [error]\n      preferred_ip_protocol: ip4\n", 2 + module), |n| format!("https://host{n}.example.com/health")),
            1 => ("    prober: tcp\n    tcp:\n      tls: true\n      tls_config: {insecure_skip_verify: true}\n".into(), |n| format!("host{n}.example.com:443")),
            2 => ("    prober: dns\n    dns:\n      query_name: example.com\n      query_type: MX\n      valid_rcodes: [NOERROR]\n      transport_protocol: tcp\n".into(), |n| format!("10.0.{}.{}:53", n / 250, n % 250)),
            3 => ("    prober: icmp\n    icmp:\n      ttl: 32\n      dont_fragment: true\n".into(), |n| format!("host{n}.example.com")),
            _ => ("    prober: grpc\n    grpc:\n      service: api.v1\n".into(), |n| format!("grpc{n}.example.com:9090")),
        };
        let _ = write!(blackbox, "  m{module}:\n{body}");
        let targets: Vec<String> = (0..50)
            .map(|n| format!("{:?}", target(module * 50 + n)))
            .collect();
        let _ = writeln!(
            sd,
            "- targets: [{}]\n  labels: {{__param_module: m{module}, shard: s{}}}",
            targets.join(", "),
            module % 3
        );
    }
    write(dir.path(), "blackbox.yml", &blackbox);
    write(dir.path(), "sd.yml", &sd);
    let out = import(
        &[
            "--config",
            "blackbox.yml",
            "--targets",
            "sd.yml",
            "--emit",
            "checks",
            "-o",
            "checks.toml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let toml = std::fs::read_to_string(dir.path().join("checks.toml")).unwrap();
    assert_eq!(toml.matches("[[check]]").count(), 500);
    assert_eq!(
        validate(&dir.path().join("checks.toml")),
        "configuration is valid: 500 checks\n"
    );
}

#[test]
fn imported_checks_pass_against_real_nginx_and_bind() {
    let nginx = Nginx::start();
    let bind = Bind::primary();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "blackbox.yml",
        &format!(
            "modules:\n  http_ok:\n    prober: http\n    timeout: 5s\n    http:\n      valid_status_codes: [200]\n      fail_if_body_not_matches_regexp: ['hello from \\w+']\n      fail_if_ssl: true\n  http_down:\n    prober: http\n    http:\n      valid_status_codes: [200]\n  dns_soa:\n    prober: dns\n    dns:\n      query_name: {ZONE}\n      query_type: SOA\n      valid_rcodes: [NOERROR]\n      recursion_desired: false\n  tcp_connect:\n    prober: tcp\n"
        ),
    );
    write(
        dir.path(),
        "sd.json",
        &format!(
            r#"[{{"targets": ["{http}/ok"], "labels": {{"__param_module": "http_ok"}}}},
{{"targets": ["{http}/unavailable"], "labels": {{"__param_module": "http_down"}}}},
{{"targets": ["{dns}"], "labels": {{"__param_module": "dns_soa"}}}},
{{"targets": ["{http}"], "labels": {{"__param_module": "tcp_connect"}}}}]"#,
            http = nginx.http,
            dns = bind.dns
        ),
    );
    let out = import(
        &[
            "--config",
            "blackbox.yml",
            "--targets",
            "sd.json",
            "--emit",
            "checks",
            "-o",
            "checks.toml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = dir.path().join("checks.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    let name = |module: &str| {
        let at = toml.find(&format!("module {module};")).unwrap();
        let rest = &toml[at..];
        let start = rest.find("name = \"").unwrap() + 8;
        rest[start..start + rest[start..].find('"').unwrap()].to_owned()
    };
    for (module, passes) in [
        ("http_ok", true),
        ("http_down", false),
        ("dns_soa", true),
        ("tcp_connect", true),
    ] {
        let out = nightjar()
            .args(["check", "--format", "json", "--config"])
            .arg(&config)
            .args(["--only", &name(module)])
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.success(),
            passes,
            "{module}: {stdout}{}",
            text(&out.stderr)
        );
        if module == "dns_soa" {
            assert!(
                stdout.contains(&SERIAL.to_string()),
                "the SOA serial is reported: {stdout}"
            );
        }
    }
}
