//! `http` checks through a real HTTP proxy (tinyproxy, with basic authentication and CONNECT)
//! and with OAuth2 client credentials from a real authorization server (Authlib on Flask,
//! `tests/fixtures/oauth2_server.py`), all on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nightjar::result::{Details, FailureReason, HttpDetails, Status};
use nightjar::runner::{RunEnv, run_one};

use crate::support::{
    KillOnDrop, Nginx, RunningAgent, assert_check_contract, assert_fail, assert_pass, eventually,
    free_port, http_check, http_get, http_post, load, metrics_after, pki, require, run_check,
    run_check_env, venv_python, wait_for_tcp,
};

const PROXY_USER: &str = "probe";
const PROXY_PASSWORD: &str = "Pr0xy-pass-4471";

/// tinyproxy on loopback with basic authentication, allowing CONNECT to `connect_ports`;
/// stopped on drop.
struct Tinyproxy {
    addr: SocketAddr,
    log: PathBuf,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(connect_ports: &[u16]) -> Tinyproxy {
        let tinyproxy = require("tinyproxy", "tinyproxy");
        let dir = tempfile::Builder::new()
            .prefix("nightjar-tinyproxy-")
            .tempdir()
            .expect("temp dir");
        // tinyproxy drops to nobody before it opens its log.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "User nobody\nGroup nogroup\nPort {}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\nMaxClients 20\nAllow 127.0.0.1\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\nDisableViaHeader Yes\n",
            addr.port(),
            log.display()
        );
        for port in connect_ports {
            conf.push_str(&format!("ConnectPort {port}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("tinyproxy.conf");
        let child = Command::new(tinyproxy)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let child = KillOnDrop(child);
        wait_for_tcp(addr, Duration::from_secs(10));
        Tinyproxy {
            addr,
            log,
            _child: child,
            _dir: dir,
        }
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// The requests tinyproxy logged (`GET http://...`, `CONNECT host:port`).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once("): ").map(|(_, request)| request))
            .filter(|request| request.starts_with("GET ") || request.starts_with("CONNECT "))
            .map(str::to_string)
            .collect()
    }
}

fn http(res: &nightjar::result::CheckResult) -> &HttpDetails {
    match &res.details {
        Details::Http(http) => http,
        other => panic!("no HTTP details in {other:?}"),
    }
}

/// The metrics text after observing `res` for the check in `text`, loaded with `env`.
fn metrics_env(text: &str, env: &[(&str, &str)], res: &nightjar::result::CheckResult) -> String {
    let metrics = nightjar::metrics::Metrics::new(&load(text, env));
    metrics.observe(res);
    metrics.render()
}

fn detail(res: &nightjar::result::CheckResult) -> String {
    match &res.status {
        Status::Pass => String::new(),
        Status::Fail(failure) => failure.detail.clone(),
    }
}

#[tokio::test]
async fn plain_http_goes_through_the_proxy_in_absolute_form() {
    let nginx = Nginx::start();
    let proxy = Tinyproxy::start(&[]);
    let text = http_check(
        &nginx.url("/ok"),
        &format!(
            "proxy_url = \"{}\"",
            proxy.url(PROXY_USER, "${env:PROXY_PASSWORD}")
        ),
    );
    let env = [("PROXY_PASSWORD", PROXY_PASSWORD)];
    let res = run_check_env(&text, &env).await;
    assert_pass(&res);
    let details = http(&res);
    assert_eq!(details.status_code, Some(200));
    assert_eq!(
        details.remote_addr,
        Some(proxy.addr),
        "the connection is the proxy's"
    );
    let wanted = format!("GET http://{}/ok HTTP/1.1", nginx.http);
    eventually(Duration::from_secs(5), "the proxy's log", || {
        let found = proxy.requests().contains(&wanted);
        async move { found.then_some(()) }
    })
    .await;
    let metrics = metrics_env(&text, &env, &res);
    assert_check_contract(&res, &metrics);
    assert!(!metrics.contains(PROXY_PASSWORD));
}

#[tokio::test]
async fn https_is_tunnelled_with_connect_and_the_chain_still_judged() {
    let nginx = Nginx::start();
    let proxy = Tinyproxy::start(&[nginx.https.port()]);
    let ca = pki().ca.display().to_string();
    let url = nginx.https_url("/ok");
    // Resolved here (blackbox_exporter's default): the proxy is told the address.
    let text = http_check(
        &url,
        &format!(
            "proxy_url = \"{}\"\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}",
            proxy.url(PROXY_USER, PROXY_PASSWORD)
        ),
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let details = http(&res);
    assert!(details.tls_used && details.tls > Duration::ZERO);
    let info = details
        .tls_info
        .as_ref()
        .expect("the target's chain is read");
    assert!(
        info.verify_error.is_none() && info.chain_valid && info.hostname_match,
        "{info:?}"
    );
    assert!(!info.chain.is_empty(), "{info:?}");
    assert_eq!(details.remote_addr, Some(proxy.addr));
    assert!(
        details.resolve > Duration::ZERO,
        "the target was resolved here"
    );
    assert_check_contract(&res, &metrics_after(&text, &res));

    // Not resolved here: the proxy resolves `localhost` itself.
    let text = http_check(
        &url,
        &format!(
            "proxy_url = \"{}\"\nskip_resolve_phase_with_proxy = true\ntls = {{ ca_file = \"{ca}\" }}",
            proxy.url(PROXY_USER, PROXY_PASSWORD)
        ),
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let port = nginx.https.port();
    let wanted_ip = format!("CONNECT 127.0.0.1:{port} HTTP/1.1");
    let wanted_name = format!("CONNECT localhost:{port} HTTP/1.1");
    eventually(Duration::from_secs(5), "both CONNECTs in the log", || {
        let requests = proxy.requests();
        let found = requests.contains(&wanted_ip) && requests.contains(&wanted_name);
        async move { found.then_some(()) }
    })
    .await;

    // A chain that does not verify is still judged through the tunnel.
    let expired = format!("https://localhost:{}/", nginx.expired.port());
    let proxy2 = Tinyproxy::start(&[nginx.expired.port()]);
    let text = http_check(
        &expired,
        &format!(
            "proxy_url = \"{}\"\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}",
            proxy2.url(PROXY_USER, PROXY_PASSWORD)
        ),
    );
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::CertInvalid, "did not verify");
}

#[tokio::test]
async fn a_proxy_that_refuses_or_is_down_fails_with_reason_proxy() {
    let nginx = Nginx::start();
    let proxy = Tinyproxy::start(&[nginx.https.port()]);
    let ca = pki().ca.display().to_string();
    let wrong = "Wr0ng-pass-9032";
    let shown = format!("http://{}", proxy.addr);

    // Plain http without credentials: the proxy answers 407 itself.
    let text = http_check(
        &nginx.url("/ok"),
        &format!("proxy_url = \"http://{}\"", proxy.addr),
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Proxy,
        "407 Proxy Authentication Required",
    );
    assert!(detail(&res).contains(&shown), "{}", detail(&res));
    assert_eq!(
        http(&res).status_code,
        Some(407),
        "what the proxy answered is reported"
    );

    // https without credentials: the CONNECT gets 407.
    let text = http_check(
        &nginx.https_url("/ok"),
        &format!(
            "proxy_url = \"http://{}\"\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}",
            proxy.addr
        ),
    );
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Proxy, "refused CONNECT");
    assert!(detail(&res).contains("407"), "{}", detail(&res));

    // https with wrong credentials: the CONNECT is refused (tinyproxy answers wrong
    // credentials with 401 rather than 407; to a plain request that 401 cannot be told from
    // the target's, so only CONNECT shows it as the proxy's).
    let text = http_check(
        &nginx.https_url("/ok"),
        &format!(
            "proxy_url = \"{}\"\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}",
            proxy.url(PROXY_USER, "${env:P}")
        ),
    );
    let env = [("P", wrong)];
    let res = run_check_env(&text, &env).await;
    assert_fail(&res, FailureReason::Proxy, "refused CONNECT");
    assert!(detail(&res).contains("401"), "{}", detail(&res));
    assert!(detail(&res).contains(&shown), "{}", detail(&res));
    assert!(!detail(&res).contains(wrong) && !detail(&res).contains(PROXY_USER));
    let metrics = metrics_env(&text, &env, &res);
    assert_check_contract(&res, &metrics);
    assert!(!metrics.contains(wrong));

    // A port the proxy does not allow CONNECT to: 403.
    let text = http_check(
        &format!("https://localhost:{}/", nginx.expired.port()),
        &format!(
            "proxy_url = \"{}\"\nip_protocol = \"ip4\"",
            proxy.url(PROXY_USER, PROXY_PASSWORD)
        ),
    );
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Proxy, "refused CONNECT");
    assert!(detail(&res).contains("403"), "{}", detail(&res));

    // Nothing listens where the proxy should be.
    let down = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = http_check(
        &nginx.url("/ok"),
        &format!("proxy_url = \"http://{PROXY_USER}:{PROXY_PASSWORD}@{down}\""),
    );
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Proxy, "cannot reach proxy");
    assert!(detail(&res).contains(&format!("http://{down}")));
    assert!(!detail(&res).contains(PROXY_PASSWORD));
    assert_check_contract(&res, &metrics_after(&text, &res));
}

#[tokio::test]
async fn no_proxy_bypasses_and_connect_headers_reach_the_proxy() {
    let nginx = Nginx::start();
    let proxy = Tinyproxy::start(&[nginx.https.port()]);
    let ca = pki().ca.display().to_string();
    // Credentials the proxy refuses: only a bypass can pass.
    let refused = proxy.url(PROXY_USER, "wrong");
    let text = http_check(
        &nginx.url("/ok"),
        &format!("proxy_url = \"{refused}\"\nno_proxy = \"example.com,127.0.0.0/8\""),
    );
    assert_pass(&run_check(&text).await);
    let text = http_check(
        &nginx.https_url("/ok"),
        &format!(
            "proxy_url = \"{refused}\"\nno_proxy = \"localhost\"\ntls = {{ ca_file = \"{ca}\" }}"
        ),
    );
    assert_pass(&run_check(&text).await);
    assert!(
        proxy.requests().is_empty(),
        "nothing went through the proxy: {:?}",
        proxy.requests()
    );

    // The CONNECT carries `proxy_connect_header`: here the proxy's credentials, from a
    // secret, in place of the (wrong) ones of the URL.
    let basic = nightjar::checks::http::basic_auth(PROXY_USER, PROXY_PASSWORD);
    let text = http_check(
        &nginx.https_url("/ok"),
        &format!(
            "proxy_url = \"{refused}\"\nip_protocol = \"ip4\"\nproxy_connect_header = {{ Proxy-Authorization = \"${{env:PROXY_AUTH}}\" }}\ntls = {{ ca_file = \"{ca}\" }}"
        ),
    );
    let res = run_check_env(&text, &[("PROXY_AUTH", &basic)]).await;
    assert_pass(&res);
    let port = nginx.https.port();
    let wanted = format!("CONNECT 127.0.0.1:{port} HTTP/1.1");
    eventually(Duration::from_secs(5), "the CONNECT in the log", || {
        let found = proxy.requests().contains(&wanted);
        async move { found.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn proxy_from_the_environment_and_redirects_through_the_proxy() {
    let nginx = Nginx::start();
    let proxy = Tinyproxy::start(&[nginx.https.port()]);
    let ca = pki().ca.display().to_string();
    // http -> https redirect: the first hop is forwarded, the second tunnelled.
    let text = http_check(
        &nginx.url("/to-https"),
        &format!(
            "proxy_from_environment = true\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}\nexpect = {{ tls = true }}"
        ),
    );
    let env = [
        ("HTTP_PROXY", proxy.url(PROXY_USER, PROXY_PASSWORD)),
        (
            "HTTPS_PROXY",
            format!("{PROXY_USER}:{PROXY_PASSWORD}@{}", proxy.addr),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = run_check_env(&text, &env).await;
    // NO_PROXY is unset, but from the environment Go's rule holds: loopback goes direct.
    assert_pass(&res);
    assert_eq!(http(&res).redirects, 1);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());

    // With proxy_url, loopback is proxied; the redirect goes through the proxy too.
    let text = http_check(
        &nginx.url("/to-https"),
        &format!(
            "proxy_url = \"{}\"\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}\nexpect = {{ tls = true }}",
            proxy.url(PROXY_USER, PROXY_PASSWORD)
        ),
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_eq!(http(&res).redirects, 1);
    let port = nginx.https.port();
    let first = format!("GET http://{}/to-https HTTP/1.1", nginx.http);
    let second = format!("CONNECT 127.0.0.1:{port} HTTP/1.1");
    eventually(Duration::from_secs(5), "both hops in the log", || {
        let requests = proxy.requests();
        let found = requests.contains(&first) && requests.contains(&second);
        async move { found.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn flow_steps_take_the_proxy_keys() {
    let nginx = Nginx::start();
    let proxy = Tinyproxy::start(&[]);
    let flow = |proxy_url: &str| {
        format!(
            "[[check]]\nname = \"f\"\ntype = \"flow\"\ninterval = \"30s\"\ntimeout = \"5s\"\n[[check.steps]]\nname = \"home\"\nurl = \"{}\"\nproxy_url = \"{proxy_url}\"\n",
            nginx.url("/ok")
        )
    };
    let text = flow(&proxy.url(PROXY_USER, PROXY_PASSWORD));
    let res = run_check(&text).await;
    assert_pass(&res);
    let wanted = format!("GET http://{}/ok HTTP/1.1", nginx.http);
    eventually(
        Duration::from_secs(5),
        "the step in the proxy's log",
        || {
            let found = proxy.requests().contains(&wanted);
            async move { found.then_some(()) }
        },
    )
    .await;
    let text = flow(&format!("http://{}", proxy.addr));
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Proxy, "step \"home\": proxy");
    assert_check_contract(&res, &metrics_after(&text, &res));
}

/// The OAuth2 server of `tests/fixtures/oauth2_server.py`; stopped on drop.
struct OAuthServer {
    addr: SocketAddr,
    _child: KillOnDrop,
}

impl OAuthServer {
    fn start() -> OAuthServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oauth2_server.py");
        let child = Command::new(venv_python())
            .arg(script)
            .arg(addr.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the OAuth2 server");
        let child = KillOnDrop(child);
        wait_for_tcp(addr, Duration::from_secs(30));
        OAuthServer {
            addr,
            _child: child,
        }
    }

    async fn stats(&self) -> serde_json::Value {
        let (code, body) = http_get(self.addr, "/stats").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("stats JSON")
    }

    async fn token_requests(&self) -> u64 {
        self.stats().await["token_requests"].as_u64().unwrap()
    }

    fn check(&self, client: &str, secret: &str, extra: &str) -> String {
        http_check(
            &format!("http://{}/api/resource", self.addr),
            &format!(
                "oauth2 = {{ client_id = \"{client}\", client_secret = \"{secret}\", token_url = \"http://{}/oauth/token\", scopes = [\"read\", \"write\"], endpoint_params = {{ audience = \"https://api.example\" }} }}\n{extra}",
                self.addr
            ),
        )
    }
}

#[tokio::test]
async fn oauth2_token_is_fetched_used_reused_and_refreshed() {
    let server = OAuthServer::start();
    let env = [("CLIENT_SECRET", "probe-secret")];
    let text = server.check(
        "probe",
        "${env:CLIENT_SECRET}",
        "expect = { body_contains = [\"hello probe\"] }",
    );
    let config = load(&text, &env);
    let run_env = &RunEnv::system();
    let check = &config.checks[0];

    let res = run_one(check, run_env).await;
    assert_pass(&res);
    assert_check_contract(&res, &metrics_env(&text, &env, &res));
    let stats = server.stats().await;
    assert_eq!(stats["token_requests"], 1);
    // Scopes and endpoint_params reach the token endpoint.
    assert_eq!(stats["last_form"]["scope"], "read write", "{stats}");
    assert_eq!(
        stats["last_form"]["audience"], "https://api.example",
        "{stats}"
    );
    assert_eq!(stats["last_form"]["grant_type"], "client_credentials");

    // Reused across runs while it lives.
    for _ in 0..3 {
        assert_pass(&run_one(check, run_env).await);
    }
    assert_eq!(server.token_requests().await, 1, "the token is cached");

    // A 401 from the target with the cached token drops it: that run fails, the next
    // fetches a fresh token and passes.
    let (code, _) = http_post(server.addr, "/revoke").await;
    assert_eq!(code, 200);
    let res = run_one(check, run_env).await;
    assert_fail(&res, FailureReason::Status, "401");
    assert_eq!(server.token_requests().await, 1);
    assert_pass(&run_one(check, run_env).await);
    assert_eq!(
        server.token_requests().await,
        2,
        "a fresh token after the 401"
    );

    // A token that lives 2 s is fetched afresh once it is (nearly) expired.
    let text = server.check("short", "short-secret", "");
    let config = load(&text, &[]);
    let check = &config.checks[0];
    assert_pass(&run_one(check, run_env).await);
    let before = server.token_requests().await;
    assert_pass(&run_one(check, run_env).await);
    let reused = server.token_requests().await;
    let server = &server;
    eventually(
        Duration::from_secs(10),
        "a refreshed token",
        move || async move {
            assert_pass(&run_one(check, run_env).await);
            (server.token_requests().await > reused).then_some(())
        },
    )
    .await;
    assert!(
        reused == before,
        "the short-lived token was reused while fresh ({before} then {reused})"
    );
    assert_eq!(server.stats().await["issued"], before + 1);
}

#[tokio::test]
async fn oauth2_wrong_secret_fails_with_auth_and_leaks_nothing() {
    let server = OAuthServer::start();
    let secret = "Wr0ng-client-s3cret-5513";
    let env = [("CLIENT_SECRET", secret)];
    let text = server.check("probe", "${env:CLIENT_SECRET}", "");
    let res = run_check_env(&text, &env).await;
    assert_fail(&res, FailureReason::Auth, "invalid_client");
    let detail = detail(&res);
    assert!(
        detail.contains(&format!("http://{}/oauth/token", server.addr)) && detail.contains("401"),
        "{detail}"
    );
    assert!(!detail.contains(secret));
    assert_check_contract(&res, &metrics_env(&text, &env, &res));

    // Nor in the API, the page or /metrics of a running agent.
    let text = text
        .replace("interval = \"30s\"", "interval = \"1s\"")
        .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let agent = RunningAgent::start(load(&text, &env)).await;
    let agent_ref = &agent;
    let api = eventually(
        Duration::from_secs(20),
        "a failed run in the API",
        move || async move {
            let (_, body) = agent_ref.get("/api/v1/checks").await;
            body.contains("invalid_client").then_some(body)
        },
    )
    .await;
    assert!(api.contains("\"auth\""), "{api}");
    let (_, page) = agent.get("/").await;
    let (_, check_page) = agent.get("/checks/t").await;
    let (_, metrics) = agent.get("/metrics").await;
    for (what, text) in [
        ("API", &api),
        ("page", &page),
        ("check page", &check_page),
        ("metrics", &metrics),
    ] {
        assert!(!text.contains(secret), "the secret is in the {what}");
    }
    assert!(metrics.contains("reason=\"auth\""), "{metrics}");
    agent.stop().await;

    // A token endpoint that is down is `auth` too, naming it.
    let down = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = http_check(
        &format!("http://{}/api/resource", server.addr),
        &format!(
            "oauth2 = {{ client_id = \"probe\", client_secret = \"probe-secret\", token_url = \"http://{down}/token\" }}"
        ),
    );
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Auth, &format!("http://{down}/token"));
}

#[test]
fn proxy_and_oauth2_config_errors() {
    let errors = crate::support::config_errors(
        "p.toml",
        &http_check("http://example.com/", "proxy_url = \"socks5://proxy:1080\""),
    );
    assert!(errors.contains("scheme \"socks5\""), "{errors}");
    let errors = crate::support::config_errors(
        "p.toml",
        &http_check("http://example.com/", "no_proxy = \"localhost\""),
    );
    assert!(
        errors.contains("`no_proxy` without `proxy_url`"),
        "{errors}"
    );
    let errors = crate::support::config_errors(
        "p.toml",
        &http_check(
            "http://example.com/",
            "proxy_url = \"http://p:3128\"\nproxy_from_environment = true",
        ),
    );
    assert!(errors.contains("not both"), "{errors}");
    let errors = crate::support::config_errors(
        "p.toml",
        &http_check(
            "http://example.com/",
            "bearer_token = \"x\"\noauth2 = { client_id = \"a\", client_secret = \"b\", token_url = \"https://auth.example/token\" }",
        ),
    );
    assert!(
        errors.contains("`bearer_token` does not go with `oauth2`"),
        "{errors}"
    );
    let errors = crate::support::config_errors(
        "p.toml",
        &http_check(
            "http://example.com/",
            "oauth2 = { client_id = \"a\", token_url = \"https://auth.example/token\", tls_config = {} }",
        ),
    );
    assert!(errors.contains("client_secret"), "{errors}");
    assert!(errors.contains("unknown key `tls_config`"), "{errors}");
}

/// A proxy whose CONNECT answer never ends, and one that never answers: both bounded (the
/// head is capped, the wait is under the deadline). In-process: no real proxy does this.
#[tokio::test]
async fn a_hostile_proxy_is_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let endless = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endless_addr = endless.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = endless.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
                let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
                for _ in 0..100 {
                    if stream.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let text = http_check(
        "https://target.example:8443/",
        &format!("proxy_url = \"http://{endless_addr}\"\nskip_resolve_phase_with_proxy = true"),
    );
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Proxy, "head over 16384 bytes");
    assert_check_contract(&res, &metrics_after(&text, &res));

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let text = http_check(
        "https://target.example:8443/",
        &format!("proxy_url = \"http://{silent_addr}\"\nskip_resolve_phase_with_proxy = true"),
    )
    .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let started = std::time::Instant::now();
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Timeout,
        "waiting for the CONNECT answer",
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    held.abort();
}
