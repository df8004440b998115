//! Protecting the agent's own server: HTTPS, basic auth with bcrypt hashes, a bearer token;
//! scraped by a real Prometheus with the same settings it would use in production.

use std::time::Duration;

use crate::support::{
    Prometheus, RunningAgent, assert_fail, assert_pass, config_errors, eventually, load, pki,
    run_check_env,
};

const PASSWORD: &str = "scrape-Pa55-word";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn protected_agent_config() -> String {
    let pki = pki();
    // Cost 4 keeps the test fast; the agent accepts any cost.
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    format!(
        "[agent]\nregion = \"lab\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
basic_auth_users = {{ prometheus = \"{hash}\" }}\nbearer_token = \"${{env:WEB_TOKEN}}\"\n",
        pki.leaf.chain.display(),
        pki.leaf.key.display(),
    )
}

/// An http check of the agent's own server, through nightjar's own client.
fn probe(agent: &RunningAgent, path: &str, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"probe\"\ntype = \"http\"\nurl = \"https://localhost:{}{path}\"\ntimeout = \"5s\"\n\
tls = {{ ca_file = \"{}\" }}\n{extra}\n",
        agent.addr.port(),
        pki().ca.display()
    )
}

#[tokio::test]
async fn https_with_basic_auth_or_a_bearer_token() {
    let agent = RunningAgent::start(load(&protected_agent_config(), &[("WEB_TOKEN", TOKEN)])).await;
    let env = [("PW", PASSWORD), ("TOKEN", TOKEN), ("WRONG", "guess")];
    let check = |path: &str, extra: &str| {
        let text = probe(&agent, path, extra);
        async move { run_check_env(&text, &env).await }
    };
    let basic = "basic_auth = { username = \"prometheus\", password = \"${env:PW}\" }";
    // A client that connects and never starts its handshake holds up no one.
    let _stalled = tokio::net::TcpStream::connect(agent.addr).await.unwrap();

    // Credentials are needed for everything but health and readiness.
    for path in ["/metrics", "/", "/api/v1/checks", "/checks/x", "/nope"] {
        let res = check(path, "expect = { status = [401], headers = { www-authenticate = '^Basic realm=\"nightjar\"' } }").await;
        assert_pass(&res);
    }
    assert_pass(&check("/-/healthy", "").await);
    assert_pass(&check("/-/ready", "").await);
    // A wrong password, an unknown user, a wrong token: 401.
    let wrong = "basic_auth = { username = \"prometheus\", password = \"${env:WRONG}\" }\nexpect = { status = [401] }";
    assert_pass(&check("/metrics", wrong).await);
    let stranger = "basic_auth = { username = \"mallory\", password = \"${env:PW}\" }\nexpect = { status = [401] }";
    assert_pass(&check("/metrics", stranger).await);
    let bad_token = "bearer_token = \"${env:WRONG}\"\nexpect = { status = [401] }";
    assert_pass(&check("/metrics", bad_token).await);
    // The right ones: 200, and the body is the exposition.
    let res = check(
        "/metrics",
        &format!("{basic}\nexpect = {{ body_contains = [\"nightjar_build_info\"] }}"),
    )
    .await;
    assert_pass(&res);
    let res = check("/metrics", "bearer_token = \"${env:TOKEN}\"").await;
    assert_pass(&res);
    // Reload needs credentials too (and POST); this agent cannot reload, so 503 once in.
    let post = "method = \"POST\"\nexpect = { status = [401] }";
    assert_pass(&check("/-/reload", post).await);
    let post = format!("method = \"POST\"\n{basic}\nexpect = {{ status = [503] }}");
    assert_pass(&check("/-/reload", &post).await);
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let answer = tokio::time::timeout(Duration::from_secs(15), async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
        stream
            .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer
    })
    .await
    .expect("a plain request to the TLS port ends");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    // A certificate the client does not trust fails as it should.
    let untrusted = format!(
        "[[check]]\nname = \"probe\"\ntype = \"http\"\nurl = \"https://localhost:{}/-/healthy\"\ntimeout = \"5s\"\n",
        agent.addr.port()
    );
    let res = run_check_env(&untrusted, &env).await;
    assert_fail(&res, nightjar::result::FailureReason::CertInvalid, "");
    agent.stop().await;
}

#[tokio::test]
async fn a_real_prometheus_scrapes_over_https_with_basic_auth() {
    let agent = RunningAgent::start(load(&protected_agent_config(), &[("WEB_TOKEN", TOKEN)])).await;
    let job = |name: &str, credentials: &str| {
        [
            format!("  - job_name: {name}"),
            "    scrape_interval: 1s".to_string(),
            "    scrape_timeout: 900ms".to_string(),
            "    scheme: https".to_string(),
            "    tls_config:".to_string(),
            format!("      ca_file: {}", pki().ca.display()),
            "      server_name: localhost".to_string(),
            credentials.to_string(),
            "    static_configs:".to_string(),
            format!("      - targets: ['{}']", agent.addr),
        ]
        .iter()
        .filter(|line| !line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect::<String>()
    };
    let prometheus = Prometheus::scraping(&format!(
        "{}{}",
        job(
            "nightjar",
            &format!("    basic_auth:\n      username: prometheus\n      password: {PASSWORD}")
        ),
        job("no-credentials", "")
    ));
    prometheus.wait_ready().await;
    eventually(
        Duration::from_secs(30),
        "both scrapes to have run",
        || async {
            let up = prometheus.query("up").await;
            let of = |job: &str| {
                up.iter()
                    .find(|(labels, _)| labels["job"] == job)
                    .map(|(_, value)| *value)
            };
            match (of("nightjar"), of("no-credentials")) {
                (Some(with), Some(without)) => {
                    assert_eq!(without, 0.0, "a scrape without credentials must fail");
                    (with == 1.0).then_some(())
                }
                _ => None,
            }
        },
    )
    .await;
    let build = prometheus.query("nightjar_build_info").await;
    assert_eq!(build.len(), 1, "{build:?}");
    agent.stop().await;
}

#[test]
fn bad_protection_settings_are_config_errors() {
    let errors = config_errors(
        "agent.toml",
        "[agent]\ntls_cert_file = \"/nonexistent/tls.crt\"\ntls_key_file = \"/nonexistent/tls.key\"\n\
basic_auth_users = { alice = \"hunter2\" }\nbearer_token = \"inline-token-value-123\"\n",
    );
    assert!(
        errors.contains("agent.toml:2:17: cannot read the server certificate /nonexistent/tls.crt"),
        "{errors}"
    );
    assert!(
        errors.contains("agent.toml:4:30: the value for user \"alice\" is not a bcrypt hash"),
        "{errors}"
    );
    assert!(errors.contains("htpasswd -nBC 10 USER"), "{errors}");
    assert!(
        errors.contains("agent.toml:5:16: `bearer_token` is written inline"),
        "{errors}"
    );
    assert!(!errors.contains("hunter2") && !errors.contains("inline-token-value-123"));
    let errors = config_errors(
        "agent.toml",
        &format!(
            "[agent]\ntls_cert_file = \"{}\"\n",
            pki().leaf.chain.display()
        ),
    );
    assert!(
        errors.contains("agent.toml:2:17: `tls_cert_file` is set without `tls_key_file`"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_reload_applies_new_credentials_and_refuses_a_switch_to_https() {
    use crate::support::http_request_with;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let users = |password: &str| {
        format!(
            "[agent]\nbasic_auth_users = {{ ops = \"{}\" }}\n\n[[check]]\nname = \"a\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1h\"\n",
            bcrypt::hash(password, 4).unwrap()
        )
    };
    std::fs::write(&path, users("first-password")).unwrap();
    let agent = RunningAgent::start_reloadable(&path).await;
    let basic = |password: &str| {
        use base64::Engine as _;
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("ops:{password}"))
        )
    };
    let get = |password: &'static str| {
        let header = basic(password);
        let addr = agent.addr;
        async move {
            http_request_with(addr, "GET", "/api/v1/checks", &header)
                .await
                .0
        }
    };
    assert_eq!(get("first-password").await, 200);
    assert_eq!(get("second-password").await, 401);

    std::fs::write(&path, users("second-password")).unwrap();
    let (status, body) =
        http_request_with(agent.addr, "POST", "/-/reload", &basic("first-password")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get("second-password").await, 200);
    assert_eq!(
        get("first-password").await,
        401,
        "the old password no longer works"
    );

    // Turning HTTPS on needs a restart: the reload is refused and HTTP keeps serving.
    let pki = pki();
    let with_tls = users("second-password").replace(
        "[agent]\n",
        &format!(
            "[agent]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            pki.leaf.chain.display(),
            pki.leaf.key.display()
        ),
    );
    std::fs::write(&path, with_tls).unwrap();
    let (status, body) =
        http_request_with(agent.addr, "POST", "/-/reload", &basic("second-password")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("restart the agent to switch between HTTP and HTTPS"),
        "{body}"
    );
    assert_eq!(get("second-password").await, 200);
    agent.stop().await;
}

#[test]
fn bad_connection_cap_and_allowed_hosts_are_config_errors() {
    let errors = config_errors(
        "agent.toml",
        "[agent]\nmax_connections = 0\nallowed_hosts = [\"https://nightjar.example.com/\", \"ok.example.com\"]\n",
    );
    assert!(
        errors.contains("agent.toml:2:19: `max_connections` must be between 1 and 65536, found 0"),
        "{errors}"
    );
    assert!(
        errors.contains(
            "agent.toml:3:18: allowed host \"https://nightjar.example.com/\" is not a host name or IP address"
        ),
        "{errors}"
    );
    assert!(!errors.contains("ok.example.com\" is not"), "{errors}");
    let config = load(
        "[agent]\nmax_connections = 32\nallowed_hosts = [\"Nightjar.Example.com.\", \"[2001:db8::1]\"]\n",
        &[],
    );
    assert_eq!(config.agent.web.max_connections, 32);
    assert_eq!(
        config.agent.web.allowed_hosts,
        ["nightjar.example.com", "2001:db8::1"]
    );
}
