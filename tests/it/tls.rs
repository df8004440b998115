//! The `tls` check against nginx serving chains made at test time, and SMTP STARTTLS through
//! nginx's mail module.

use std::net::SocketAddr;

use nightjar::result::{CheckResult, Details, FailureReason, TlsInfo};

use crate::support::{
    Nginx, assert_check_contract, assert_fail, assert_pass, free_port, metrics_after, pki,
    run_check, sample,
};

fn tls_check(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"cert\"\ntype = \"tls\"\ntarget = \"localhost:{}\"\ninterval = \"1h\"\ntimeout = \"5s\"\n{extra}\n",
        addr.port()
    )
}

fn with_ca(extra: &str) -> String {
    format!("tls = {{ ca_file = \"{}\" }}\n{extra}", pki().ca.display())
}

fn info(res: &CheckResult) -> &TlsInfo {
    res.details
        .tls_info()
        .unwrap_or_else(|| panic!("no TLS info in {res:?}"))
}

#[tokio::test]
async fn a_valid_chain_passes_and_is_reported_in_full() {
    let nginx = Nginx::start();
    let text = tls_check(
        nginx.https,
        &with_ca("expect = { min_days_left = 21, min_version = \"1.3\" }"),
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let info = info(&res);
    assert_eq!(info.version, "TLS 1.3");
    assert!(info.chain_valid && info.hostname_match);
    assert_eq!(info.chain[0].subject, "O=nightjar tests, CN=localhost");
    assert_eq!(
        info.chain[0].issuer,
        "O=nightjar tests, CN=nightjar test root"
    );
    assert_eq!(info.chain[0].fingerprint_sha256.len(), 64);
    let Details::Tls(details) = &res.details else {
        panic!()
    };
    assert!(details.handshake.as_nanos() > 0 && details.connect.as_nanos() > 0);

    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    let leaf = &info.chain[0];
    let not_after = leaf.not_after as f64;
    assert_eq!(
        sample(
            &metrics,
            "probe_ssl_earliest_cert_expiry",
            &[("check", "cert")]
        ),
        Some(not_after)
    );
    assert_eq!(
        sample(
            &metrics,
            "probe_ssl_last_chain_expiry_timestamp_seconds",
            &[("check", "cert")]
        ),
        Some(not_after)
    );
    let sans = leaf.sans.join(",");
    assert_eq!(
        sample(
            &metrics,
            "probe_ssl_last_chain_info",
            &[
                ("check", "cert"),
                ("fingerprint_sha256", &leaf.fingerprint_sha256),
                ("subject", &leaf.subject),
                ("subjectalternative", &sans),
                ("serialnumber", &leaf.serial),
            ]
        ),
        Some(1.0)
    );
    let cert_labels = [
        ("check", "cert"),
        ("position", "0"),
        ("subject", leaf.subject.as_str()),
    ];
    assert_eq!(
        sample(
            &metrics,
            "nightjar_tls_cert_not_after_timestamp_seconds",
            &cert_labels
        ),
        Some(not_after)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_tls_cert_not_before_timestamp_seconds",
            &cert_labels
        ),
        Some(leaf.not_before as f64)
    );
    assert_eq!(
        sample(&metrics, "nightjar_tls_chain_valid", &[("check", "cert")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_tls_hostname_match",
            &[("check", "cert")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "probe_tls_version_info",
            &[("check", "cert"), ("version", "TLS 1.3")]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            "nightjar_tls_duration_seconds",
            &[("check", "cert"), ("phase", "tls")]
        )
        .unwrap()
            > 0.0
    );
}

#[tokio::test]
async fn an_intermediate_expiring_before_the_leaf_decides_the_expiry() {
    let nginx = Nginx::start();
    let text = tls_check(
        nginx.short_intermediate,
        &with_ca("expect = { min_days_left = 21 }"),
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::CertExpiring,
        "certificate #1 (O=nightjar tests, CN=nightjar test intermediate) expires in",
    );
    assert_fail(
        &res,
        FailureReason::CertExpiring,
        "less than min_days_left 21",
    );
    let info = info(&res);
    assert_eq!(info.chain.len(), 2);
    assert!(info.chain_valid, "{:?}", info.verify_error);
    assert!(info.chain[1].not_after < info.chain[0].not_after);
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(
            &metrics,
            "probe_ssl_earliest_cert_expiry",
            &[("check", "cert")]
        ),
        Some(info.chain[1].not_after as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_tls_cert_not_after_timestamp_seconds",
            &[("check", "cert"), ("position", "1")]
        ),
        Some(info.chain[1].not_after as f64)
    );
    // Ten days is enough for a 7-day lead time.
    let res = run_check(&tls_check(
        nginx.short_intermediate,
        &with_ca("expect = { min_days_left = 7 }"),
    ))
    .await;
    assert_pass(&res);
}

#[tokio::test]
async fn an_expired_certificate() {
    let nginx = Nginx::start();
    let res = run_check(&tls_check(nginx.expired, &with_ca(""))).await;
    assert_fail(
        &res,
        FailureReason::CertInvalid,
        "the chain does not validate: invalid peer certificate: certificate expired",
    );
    let res = run_check(&tls_check(
        nginx.expired,
        &with_ca("expect = { min_days_left = 7 }"),
    ))
    .await;
    assert_fail(&res, FailureReason::CertExpiring, "expired 2.0 days ago");
    // Watching expiry only: the invalid chain is data, not a failure.
    let res = run_check(&tls_check(
        nginx.expired,
        &with_ca("expect = { chain_valid = false }"),
    ))
    .await;
    assert_pass(&res);
    assert!(!info(&res).chain_valid);
}

#[tokio::test]
async fn a_certificate_for_another_name() {
    let nginx = Nginx::start();
    let text = tls_check(nginx.wrong_host, &with_ca(""));
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::CertInvalid,
        "the certificate is not valid for localhost (it names: other.example)",
    );
    let metrics = metrics_after(&text, &res);
    assert_eq!(
        sample(&metrics, "nightjar_tls_chain_valid", &[("check", "cert")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_tls_hostname_match",
            &[("check", "cert")]
        ),
        Some(0.0)
    );
    // The server name can be set, and that server only speaks TLS 1.2.
    let res = run_check(&tls_check(
        nginx.wrong_host,
        &format!(
            "tls = {{ ca_file = \"{}\", server_name = \"other.example\" }}",
            pki().ca.display()
        ),
    ))
    .await;
    assert_pass(&res);
    assert_eq!(info(&res).version, "TLS 1.2");
    let res = run_check(&tls_check(
        nginx.wrong_host,
        &with_ca("expect = { hostname_match = false, min_version = \"1.3\" }"),
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Tls,
        "negotiated TLS 1.2, expected at least TLS 1.3",
    );
}

#[tokio::test]
async fn a_self_signed_certificate_and_unknown_roots_are_still_read() {
    let nginx = Nginx::start();
    let res = run_check(&tls_check(nginx.self_signed, &with_ca(""))).await;
    assert_fail(
        &res,
        FailureReason::CertInvalid,
        "the chain does not validate",
    );
    assert_eq!(info(&res).chain.len(), 1);
    // The bundled roots do not know the test CA: the verdict is data, the chain is read.
    let res = run_check(&tls_check(nginx.https, "")).await;
    assert_fail(&res, FailureReason::CertInvalid, "UnknownIssuer");
    let info = info(&res);
    assert!(!info.chain_valid && info.hostname_match);
    assert!(info.earliest_expiry().is_some());
}

#[tokio::test]
async fn smtp_starttls() {
    let nginx = Nginx::start();
    let text = format!(
        "[[check]]\nname = \"mail\"\ntype = \"tls\"\ntarget = \"127.0.0.1:{}\"\nstarttls = \"smtp\"\ntimeout = \"5s\"\ntls = {{ ca_file = \"{}\", server_name = \"localhost\" }}\nexpect = {{ min_days_left = 21 }}\n",
        nginx.smtp.port(),
        pki().ca.display()
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let Details::Tls(details) = &res.details else {
        panic!()
    };
    assert!(details.starttls.as_nanos() > 0);
    assert_eq!(
        info(&res).chain[0].subject,
        "O=nightjar tests, CN=localhost"
    );
    // Without STARTTLS, the plain-text greeting is not a TLS handshake.
    let plain = text.replace("starttls = \"smtp\"\n", "");
    let res = run_check(&plain).await;
    assert_fail(&res, FailureReason::Tls, "TLS handshake failed");
    // STARTTLS against a server that is not SMTP.
    let res = run_check(&text.replace(
        &nginx.smtp.port().to_string(),
        &nginx.https.port().to_string(),
    ))
    .await;
    assert!(
        matches!(
            res.reason(),
            Some(FailureReason::Timeout | FailureReason::Protocol | FailureReason::Closed)
        ),
        "{:?}",
        res.status
    );
}

#[tokio::test]
async fn unreachable_targets_and_stale_series() {
    let port = free_port();
    let text =
        format!("[[check]]\nname = \"cert\"\ntype = \"tls\"\ntarget = \"127.0.0.1:{port}\"\n");
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Connect, &format!("127.0.0.1:{port}"));

    // A series seen in one run is gone after a run that saw no certificate.
    let nginx = Nginx::start();
    let good = run_check(&tls_check(nginx.short_intermediate, &with_ca(""))).await;
    let config = crate::support::load(&text, &[]);
    let metrics = nightjar::metrics::Metrics::new(&config);
    metrics.observe(&good);
    assert!(
        metrics
            .render()
            .contains("nightjar_tls_cert_not_after_timestamp_seconds{")
    );
    metrics.observe(&res);
    let rendered = metrics.render();
    for family in [
        "probe_ssl_earliest_cert_expiry{",
        "nightjar_tls_cert_not_after_timestamp_seconds{",
        "probe_ssl_last_chain_info{",
    ] {
        assert!(
            !rendered.contains(family),
            "{family} left behind:\n{rendered}"
        );
    }
}

#[test]
fn tls_config_errors() {
    let text = "[[check]]\nname = \"c\"\ntype = \"tls\"\ntarget = \"no port here:x\"\nstarttls = \"imap\"\ntls = { insecure_skip_verify = true }\nexpect = { min_days_left = \"soon\", min_version = \"1.1\" }\n";
    let err = crate::support::config_errors("t.toml", text);
    for part in [
        "t.toml:4:10: target \"no port here:x\" is not HOST:PORT",
        "t.toml:5:12: unknown starttls \"imap\"",
        "t.toml:6:9: unknown key `insecure_skip_verify` in `tls` of check \"c\"",
        "t.toml:7:28: `min_days_left` must be a number of days",
        "t.toml:7:50: unknown min_version \"1.1\"",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
}

/// nginx serving only the certificate whose names hold terminal escapes; stopped on drop.
struct HostileCertServer {
    addr: SocketAddr,
    child: crate::support::KillOnDrop,
    _dir: tempfile::TempDir,
}

impl HostileCertServer {
    fn start() -> HostileCertServer {
        let nginx = crate::support::require("nginx", "nginx-light");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let served = &pki().hostile;
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen {addr} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n",
            served.chain.display(),
            served.key.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map(crate::support::KillOnDrop)
            .expect("start nginx");
        crate::support::wait_for_tcp(addr, std::time::Duration::from_secs(10));
        HostileCertServer {
            addr,
            child,
            _dir: dir,
        }
    }
}

/// Fails unless `text` is free of raw control characters: no C0 byte but the newlines
/// between lines (and the tabs JUnit or logs may indent with), no DEL, no C1 control, no bidi
/// override or isolate.
fn assert_no_controls(what: &str, text: &str) {
    for (idx, c) in text.char_indices() {
        let bad = (c < ' ' && c != '\n' && c != '\t')
            || c == '\u{7f}'
            || ('\u{80}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        assert!(
            !bad,
            "{what} carries a raw {c:?} at byte {idx}:\n{}",
            text.escape_debug()
        );
    }
}

#[tokio::test]
async fn control_characters_in_certificate_names_are_escaped_everywhere() {
    use crate::support::pki::{HOSTILE_CN, HOSTILE_O};

    let server = HostileCertServer::start();
    // min_days_left far away: the check fails and its detail names the subject.
    let text = tls_check(server.addr, &with_ca("expect = { min_days_left = 1000 }"));

    // In the library's own result: the names are kept, escaped.
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::CertExpiring, "evil\\x1b]0;pwned\\x07");
    let leaf = &info(&res).chain[0];
    assert!(
        leaf.subject
            .contains("evil\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred"),
        "{}",
        leaf.subject
    );
    assert!(
        leaf.subject.contains("corp\\u{202e}exe.txt\\x7f"),
        "{}",
        leaf.subject
    );
    assert!(
        leaf.sans
            .iter()
            .any(|san| san == "x\\x1b[31m\\nforged.localhost"),
        "{:?}",
        leaf.sans
    );
    assert!(!leaf.subject.contains(HOSTILE_CN) && !leaf.subject.contains(HOSTILE_O));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.toml");
    // Every five seconds (the timeout), so the agent runs it soon.
    std::fs::write(
        &path,
        text.replace("interval = \"1h\"", "interval = \"5s\""),
    )
    .unwrap();

    // `nightjar check` in text: what reaches a terminal.
    for format in ["text", "json", "junit"] {
        let out = crate::support::nightjar()
            .args(["check", "--format", format, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "the check fails: {stderr}");
        assert_no_controls(&format!("check --format {format}"), &stdout);
        assert_no_controls(&format!("check --format {format} (stderr)"), &stderr);
        if format == "text" {
            assert!(stdout.contains("evil\\x1b]0;pwned\\x07"), "{stdout}");
        }
    }

    // The agent: its text log, /metrics, the page and the API.
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = crate::support::start_agent(
        crate::support::nightjar()
            .args(["run", "--log-format", "text", "--config"])
            .arg(&path),
        listen,
    );
    crate::support::eventually(
        std::time::Duration::from_secs(20),
        "the check to fail",
        || async {
            let (_, body) = crate::support::http_get(listen, "/api/v1/checks").await;
            body.contains("cert_expiring").then_some(())
        },
    )
    .await;
    for page in ["/metrics", "/api/v1/checks", "/", "/checks/cert"] {
        let (status, body) = crate::support::http_get(listen, page).await;
        assert_eq!(status, 200, "{page}");
        assert_no_controls(page, &body);
        assert!(
            body.contains("x1b]0;pwned"),
            "{page} shows the name escaped:\n{body}"
        );
    }
    let (_, metrics) = crate::support::http_get(listen, "/metrics").await;
    // The exposition format escapes the backslash of `\x1b` once more.
    assert!(
        metrics.contains(r"evil\\x1b]0;pwned\\x07\\x1b[2J"),
        "{metrics}"
    );
    let out = crate::support::terminate(&mut child.0);
    let logs = String::from_utf8(out.stderr).unwrap();
    assert_no_controls("the agent's text log", &logs);
    assert!(logs.contains("Check is failing."), "{logs}");
    assert!(logs.contains("evil\\x1b]0;pwned\\x07"), "{logs}");
    drop(server.child);
}
