//! `/probe?module=&target=` on a real agent, answering as blackbox_exporter: modules from
//! `[[module]]` tables and from a blackbox.yml (`[agent] blackbox_config`), probes of nginx
//! (plain, TLS, a redirect), a TCP port, BIND and 127.0.0.1 by ICMP, blackbox_exporter's 400s,
//! the scrape's timeout header against a stalling target, `debug=true`, secrets kept out,
//! reloads, and every answer through `promtool check metrics`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::bind::{Bind, SERIAL, ZONE};
use crate::support::{
    Nginx, RunningAgent, config_errors, encode, eventually, http_post, http_request_with, load,
    pki, promtool_check_metrics, require, sample,
};

fn promtool() -> PathBuf {
    require("promtool", "prometheus")
}

/// `/probe` of `module` on `target`: the status and body.
async fn probe(agent: &RunningAgent, module: &str, target: &str) -> (u16, String) {
    agent
        .get(&format!(
            "/probe?module={}&target={}",
            encode(module),
            encode(target)
        ))
        .await
}

/// `/probe` that must answer 200 with an exposition promtool accepts.
async fn probed(agent: &RunningAgent, module: &str, target: &str) -> String {
    let (status, body) = probe(agent, module, target).await;
    assert_eq!(status, 200, "{module} {target}: {body}");
    promtool_check_metrics(&promtool(), &body)
        .unwrap_or_else(|problem| panic!("promtool refuses {module}:\n{problem}\n{body}"));
    body
}

fn value(body: &str, name: &str) -> Option<f64> {
    sample(body, name, &[])
}

fn modules(nginx_ca: &str) -> String {
    format!(
        r#"[[module]]
name = "http_2xx"
type = "http"
timeout = "5s"

[[module]]
name = "https_2xx"
type = "http"
timeout = "5s"
tls = {{ ca_file = "{nginx_ca}" }}

[[module]]
name = "tcp_connect"
type = "tcp"
timeout = "5s"

[[module]]
name = "dns_soa"
type = "dns"
query = "{ZONE}"
record = "SOA"
timeout = "5s"

[[module]]
name = "icmp"
type = "icmp"
timeout = "5s"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_as_blackbox_exporter_for_http_tcp_dns_and_icmp() {
    let nginx = Nginx::start();
    let bind = Bind::primary();
    let ca = pki().ca.display().to_string();
    let agent = RunningAgent::start(load(&modules(&ca), &[])).await;

    // Plain HTTP: the families blackbox_exporter's http prober writes.
    let body = probed(&agent, "http_2xx", &nginx.url("/ok")).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_http_status_code"), Some(200.0));
    assert_eq!(value(&body, "probe_http_version"), Some(1.1));
    assert_eq!(value(&body, "probe_http_ssl"), Some(0.0));
    assert_eq!(value(&body, "probe_http_redirects"), Some(0.0));
    assert_eq!(value(&body, "probe_ip_protocol"), Some(4.0));
    assert_eq!(value(&body, "probe_failed_due_to_regex"), Some(0.0));
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(
            sample(&body, "probe_http_duration_seconds", &[("phase", phase)]).is_some(),
            "phase {phase}: {body}"
        );
    }
    for family in [
        "probe_duration_seconds",
        "probe_dns_lookup_time_seconds",
        "probe_ip_addr_hash",
        "probe_http_content_length",
        "probe_http_uncompressed_body_length",
    ] {
        assert!(value(&body, family).is_some(), "{family}: {body}");
    }
    assert!(!body.contains("probe_ssl_earliest_cert_expiry"), "{body}");
    assert!(
        !body.contains("nightjar_"),
        "only blackbox families: {body}"
    );

    // The default module is http_2xx; a bare host:port target gets http://.
    let host_port = nginx.url("").trim_start_matches("http://").to_string();
    let (status, body) = agent
        .get(&format!(
            "/probe?target={}",
            encode(&format!("{host_port}/ok"))
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");

    // A redirect, followed.
    let body = probed(&agent, "http_2xx", &nginx.url("/redirect")).await;
    assert_eq!(value(&body, "probe_http_redirects"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_http_status_code"), Some(200.0));

    // A status outside 2xx fails with the code.
    let body = probed(&agent, "http_2xx", &nginx.url("/notfound")).await;
    assert_eq!(value(&body, "probe_success"), Some(0.0));
    assert_eq!(value(&body, "probe_http_status_code"), Some(404.0));

    // TLS: the chain's families.
    let body = probed(&agent, "https_2xx", &nginx.https_url("/ok")).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_http_ssl"), Some(1.0));
    assert!(
        sample(&body, "probe_tls_version_info", &[("version", "TLS 1.3")]).is_some()
            || sample(&body, "probe_tls_version_info", &[("version", "TLS 1.2")]).is_some(),
        "{body}"
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let expiry = value(&body, "probe_ssl_earliest_cert_expiry").expect("expiry");
    assert!(expiry > now, "{expiry} {body}");
    assert!(value(&body, "probe_ssl_last_chain_expiry_timestamp_seconds").unwrap() > now);
    assert!(
        body.contains("probe_ssl_last_chain_info{fingerprint_sha256=\""),
        "{body}"
    );

    // An unparseable URL is a failed probe (200), as blackbox_exporter answers it.
    let body = probed(&agent, "http_2xx", "http://[::1").await;
    assert_eq!(value(&body, "probe_success"), Some(0.0), "{body}");
    assert_eq!(value(&body, "probe_http_status_code"), Some(0.0));
    assert!(!body.contains("probe_ip_protocol"), "{body}");

    // TCP: HOST:PORT, and a host without a port fails before resolving.
    let body = probed(&agent, "tcp_connect", &host_port).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_ip_protocol"), Some(4.0));
    assert_eq!(value(&body, "probe_failed_due_to_regex"), Some(0.0));
    let body = probed(&agent, "tcp_connect", "127.0.0.1").await;
    assert_eq!(value(&body, "probe_success"), Some(0.0), "{body}");
    assert!(!body.contains("probe_ip_protocol"), "{body}");

    // DNS: BIND's SOA, with the serial and the section counts.
    let server = bind.dns.to_string();
    let body = eventually(Duration::from_secs(20), "BIND to answer", || {
        let (agent, server) = (&agent, server.clone());
        async move {
            let (_, body) = probe(agent, "dns_soa", &server).await;
            (value(&body, "probe_success") == Some(1.0)).then_some(body)
        }
    })
    .await;
    promtool_check_metrics(&promtool(), &body).unwrap();
    assert_eq!(value(&body, "probe_dns_serial"), Some(f64::from(SERIAL)));
    assert_eq!(value(&body, "probe_dns_query_succeeded"), Some(1.0));
    assert!(
        value(&body, "probe_dns_answer_rrs").unwrap() >= 1.0,
        "{body}"
    );
    for phase in ["resolve", "connect", "request"] {
        assert!(sample(&body, "probe_dns_duration_seconds", &[("phase", phase)]).is_some());
    }

    // ICMP: the kernel's echo reply, with its hop limit.
    let body = probed(&agent, "icmp", "127.0.0.1").await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_icmp_reply_hop_limit"), Some(64.0));
    for phase in ["resolve", "setup", "rtt"] {
        assert!(sample(&body, "probe_icmp_duration_seconds", &[("phase", phase)]).is_some());
    }

    // blackbox_exporter's 400s.
    let (status, body) = probe(&agent, "nope", "x").await;
    assert_eq!((status, body.as_str()), (400, "Unknown module \"nope\"\n"));
    let (status, body) = agent.get("/probe?module=http_2xx").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "Target parameter is missing\n")
    );

    // The agent's own counter; no scheduled check's series come from /probe runs.
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        sample(
            &metrics,
            "nightjar_probe_requests_total",
            &[("module", "http_2xx"), ("result", "success")]
        )
        .unwrap()
            >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_probe_requests_total",
            &[("module", ""), ("result", "invalid")]
        ),
        Some(1.0)
    );
    assert!(!metrics.contains("probe_success{"), "{metrics}");
    assert!(!metrics.contains("nightjar_check_runs_total{"), "{metrics}");
    agent.stop().await;
}

/// A server that accepts connections and never answers.
async fn stalling() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_timeout_header_less_the_offset_bounds_a_stalling_target() {
    let stall = stalling().await;
    let config = "[agent]\nprobe_timeout_offset = \"300ms\"\n\n[[module]]\nname = \"slow\"\ntype = \"http\"\n\n[[module]]\nname = \"capped\"\ntype = \"http\"\ntimeout = \"500ms\"\n";
    let agent = RunningAgent::start(load(config, &[])).await;
    let path = format!(
        "/probe?module=slow&target={}",
        encode(&format!("http://{stall}/"))
    );
    let started = Instant::now();
    let (status, body) = http_request_with(
        agent.addr,
        "GET",
        &path,
        "X-Prometheus-Scrape-Timeout-Seconds: 1.3\r\n",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&body, "probe_success"), Some(0.0), "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1300),
        "1.3 s less 0.3 s: {took:?}"
    );
    let duration = value(&body, "probe_duration_seconds").unwrap();
    assert!((0.9..1.2).contains(&duration), "{duration}");

    // The module's own timeout, when shorter, wins.
    let path = format!(
        "/probe?module=capped&target={}",
        encode(&format!("http://{stall}/"))
    );
    let started = Instant::now();
    let (_, body) = http_request_with(
        agent.addr,
        "GET",
        &path,
        "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n",
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(900), "{body}");
    assert_eq!(value(&body, "probe_success"), Some(0.0));

    // A header that is not a number is blackbox_exporter's 500.
    let (status, body) = http_request_with(
        agent.addr,
        "GET",
        &path,
        "X-Prometheus-Scrape-Timeout-Seconds: soon\r\n",
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.starts_with("Failed to parse timeout from Prometheus header: "),
        "{body}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_shows_the_log_the_metrics_and_the_module_without_its_secrets() {
    let nginx = Nginx::start();
    let config = r#"[[module]]
name = "auth"
type = "http"
timeout = "5s"
headers = { X-Probe = "${env:PROBE_TOKEN}" }
basic_auth = { username = "probe", password = "literal-password-1" }
expect = { status = [418] }
"#;
    let agent = RunningAgent::start(load(config, &[("PROBE_TOKEN", "token-value-42")])).await;
    let (status, body) = agent
        .get(&format!(
            "/probe?module=auth&target={}&debug=true",
            encode(&nginx.url("/echo"))
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let logs = body.find("Logs for the probe:\n").expect("the log");
    let metrics = body
        .find("\n\n\nMetrics that would have been returned:\n")
        .expect("the metrics");
    let module = body
        .find("\n\n\nModule configuration:\n")
        .expect("the module");
    assert!(logs < metrics && metrics < module, "{body}");
    assert!(body.contains("msg=\"Beginning probe\""), "{body}");
    assert!(body.contains("msg=\"Probe failed\""), "{body}");
    assert!(body.contains("probe_http_status_code 200"), "{body}");
    assert!(body[module..].contains("name = \"auth\""), "{body}");
    assert!(body[module..].contains("<secret>"), "{body}");
    for secret in ["token-value-42", "literal-password-1"] {
        assert!(!body.contains(secret), "{secret} leaked:\n{body}");
    }
    let start = metrics + "\n\n\nMetrics that would have been returned:\n".len();
    promtool_check_metrics(&promtool(), &body[start..module]).unwrap();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackbox_config_reloads_and_a_bad_one_keeps_the_old_modules() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("agent.toml");
    let yml = dir.path().join("blackbox.yml");
    std::fs::write(&toml, "[agent]\nblackbox_config = \"blackbox.yml\"\n").unwrap();
    std::fs::write(
        &yml,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n",
    )
    .unwrap();
    let agent = RunningAgent::start_reloadable(&toml).await;
    let host_port = nginx.url("").trim_start_matches("http://").to_string();
    let body = probed(&agent, "http_2xx", &nginx.url("/ok")).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    let (status, _) = probe(&agent, "tcp_connect", &host_port).await;
    assert_eq!(status, 400);

    // A module added to the file is there after a reload.
    std::fs::write(
        &yml,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n",
    )
    .unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let body = probed(&agent, "tcp_connect", &host_port).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");

    // An option nightjar cannot carry over is a rejected reload naming its line; the old
    // modules keep answering.
    std::fs::write(
        &yml,
        "modules:\n  http_2xx:\n    prober: http\n    http:\n      no_such_option: true\n",
    )
    .unwrap();
    let (status, body) = http_post(agent.addr, "/-/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("blackbox.yml:5"), "{body}");
    assert!(body.contains("no_such_option"), "{body}");
    let body = probed(&agent, "tcp_connect", &host_port).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    agent.stop().await;
}

#[test]
fn module_problems_are_config_errors_with_their_places() {
    let errors = config_errors(
        "agent.toml",
        r#"[[module]]
name = "web"
type = "http"

[[module]]
name = "bad"
type = "http"
url = "http://example.com/"
interval = "10s"

[[module]]
name = "web"
type = "tcp"
"#,
    );
    assert!(
        errors.contains("agent.toml:8:1: a module has no `url`"),
        "{errors}"
    );
    assert!(
        errors.contains("agent.toml:9:1: unknown key `interval` in module \"bad\""),
        "{errors}"
    );
    assert!(
        errors.contains("duplicate module name \"web\": it is already defined at agent.toml:1"),
        "{errors}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("blackbox.yml"),
        "modules:\n  web:\n    prober: tcp\n",
    )
    .unwrap();
    let toml = dir.path().join("agent.toml");
    std::fs::write(
        &toml,
        "[agent]\nblackbox_config = \"blackbox.yml\"\n\n[[module]]\nname = \"web\"\ntype = \"http\"\n",
    )
    .unwrap();
    let errors = nightjar::config::load(
        &[toml],
        &nightjar::config::MapEnv::default(),
        &nightjar::config::Overrides::default(),
    )
    .expect_err("a clash")
    .to_string();
    assert!(errors.contains("blackbox.yml:2"), "{errors}");
    assert!(errors.contains("agent.toml:4"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_needs_the_agents_credentials_when_it_has_them() {
    let nginx = Nginx::start();
    let config = "[agent]\nbearer_token = \"${env:AGENT_TOKEN}\"\n\n[[module]]\nname = \"http_2xx\"\ntype = \"http\"\ntimeout = \"5s\"\n";
    let token = "probe-agent-token-0123456789";
    let agent = RunningAgent::start(load(config, &[("AGENT_TOKEN", token)])).await;
    let path = format!(
        "/probe?module=http_2xx&target={}",
        encode(&nginx.url("/ok"))
    );
    let (status, _) = agent.get(&path).await;
    assert_eq!(status, 401);
    let (status, body) = http_request_with(
        agent.addr,
        "GET",
        &path,
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_sees_the_blackbox_config_change() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("agent.toml");
    let yml = dir.path().join("blackbox.yml");
    std::fs::write(
        &toml,
        "[agent]\nblackbox_config = \"blackbox.yml\"\nwatch_config = \"100ms\"\n",
    )
    .unwrap();
    std::fs::write(&yml, "modules:\n  http_2xx:\n    prober: http\n").unwrap();
    let agent = RunningAgent::start_reloadable(&toml).await;
    let host_port = nginx.url("").trim_start_matches("http://").to_string();
    assert_eq!(probe(&agent, "tcp_connect", &host_port).await.0, 400);
    std::fs::write(
        &yml,
        "modules:\n  http_2xx:\n    prober: http\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n",
    )
    .unwrap();
    let body = eventually(Duration::from_secs(10), "the new module", || {
        let (agent, host_port) = (&agent, host_port.clone());
        async move {
            let (status, body) = probe(agent, "tcp_connect", &host_port).await;
            (status == 200).then_some(body)
        }
    })
    .await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    agent.stop().await;
}
