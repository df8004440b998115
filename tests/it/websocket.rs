//! The `websocket` check against a real WebSocket server (Python's `websockets`, from the test
//! virtualenv; tests/servers/websocket_echo.py) over ws and wss, and against in-process servers
//! for what no real server does: silence, floods, oversized messages, garbage.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use nightjar::result::{Details, FailureReason, WebsocketDetails};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    KillOnDrop, assert_check_contract, assert_fail, assert_pass, config_errors, free_port,
    metrics_after, metrics_after_full, pki, run_check, run_check_env, sample, venv_python,
    wait_for_tcp,
};

/// The real server, started once for the whole test binary.
struct Server {
    plain: SocketAddr,
    tls: SocketAddr,
    _child: KillOnDrop,
    /// Held open for the life of the test process: the server exits when it closes.
    _stdin: ChildStdin,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/websocket_echo.py");
        let pki = pki();
        let mut child = Command::new(venv_python())
            .arg(script)
            .arg(plain.port().to_string())
            .arg(tls.port().to_string())
            .arg(&pki.leaf.chain)
            .arg(&pki.leaf.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map(KillOnDrop)
            .expect("start the WebSocket server");
        let stdin = child.0.stdin.take().expect("server stdin");
        let mut ready = String::new();
        BufReader::new(child.0.stdout.take().expect("server stdout"))
            .read_line(&mut ready)
            .expect("the server's first line");
        assert_eq!(ready.trim(), "ready", "the WebSocket server did not start");
        wait_for_tcp(plain, Duration::from_secs(10));
        wait_for_tcp(tls, Duration::from_secs(10));
        Server {
            plain,
            tls,
            _child: child,
            _stdin: stdin,
        }
    })
}

fn check(url: &str, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"ws\"\ntype = \"websocket\"\nurl = \"{url}\"\ninterval = \"30s\"\ntimeout = \"2s\"\n{extra}\n"
    )
}

fn details(res: &nightjar::result::CheckResult) -> &WebsocketDetails {
    match &res.details {
        Details::Websocket(details) => details,
        other => panic!("no websocket details in {other:?}"),
    }
}

fn ca_file() -> String {
    format!("tls = {{ ca_file = \"{}\" }}", pki().ca.display())
}

#[tokio::test]
async fn an_echo_conversation_passes_and_reports_its_phases() {
    let server = server();
    let text = check(
        &format!("ws://{}/echo", server.plain),
        "steps = [\n  { send = \"hello\" },\n  { expect = '^hello$' },\n  { send_hex = \"00 ff41\" },\n  { expect = 'A$' },\n]",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let ws = details(&res);
    assert_eq!(ws.status_code, Some(101));
    assert_eq!((ws.messages_sent, ws.messages_received), (2, 2));
    assert_eq!(ws.close_code, Some(1000), "the server answered the close");
    assert_eq!(ws.remote_addr, Some(server.plain));
    assert!(ws.tls_info.is_none() && ws.tls.is_zero());
    for (phase, took) in res.details.phases() {
        assert!(
            phase == "tls" || phase == "resolve" || took > Duration::ZERO,
            "{phase}"
        );
    }
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    let series = |name, labels: &[(&str, &str)]| {
        let mut all = vec![("check", "ws")];
        all.extend_from_slice(labels);
        sample(&metrics, name, &all)
    };
    assert_eq!(series("nightjar_websocket_status_code", &[]), Some(101.0));
    assert_eq!(series("nightjar_websocket_messages_sent", &[]), Some(2.0));
    assert_eq!(
        series("nightjar_websocket_messages_received", &[]),
        Some(2.0)
    );
    for phase in ["connect", "upgrade", "exchange", "close"] {
        assert!(
            series("nightjar_websocket_duration_seconds", &[("phase", phase)])
                .is_some_and(|secs| secs > 0.0),
            "{phase}: {metrics}"
        );
    }
    assert_eq!(series("probe_ip_protocol", &[]), Some(4.0));

    // Without a conversation: the upgrade and the close.
    let res = run_check(&check(&format!("ws://{}/echo", server.plain), "")).await;
    assert_pass(&res);
    assert_eq!(details(&res).messages_sent, 0);
}

#[tokio::test]
async fn wss_reads_and_judges_the_certificate_chain() {
    let server = server();
    let url = format!("wss://localhost:{}/echo", server.tls.port());
    let text = check(
        &url,
        &format!(
            "{}\nsteps = [{{ send = \"over tls\" }}, {{ expect = 'tls' }}]",
            ca_file()
        ),
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let ws = details(&res);
    let info = ws.tls_info.as_ref().expect("the chain was read");
    assert!(info.chain_valid && info.hostname_match, "{info:?}");
    assert_eq!(info.alpn, None, "the server chose no ALPN protocol");
    assert!(ws.tls > Duration::ZERO);
    // The chain's verdicts are in the full set (lean keeps them for tls checks only).
    let metrics = metrics_after_full(&text, &res);
    assert_check_contract(&res, &metrics);
    assert!(
        sample(
            &metrics,
            "probe_ssl_earliest_cert_expiry",
            &[("check", "ws")]
        )
        .is_some()
    );
    assert_eq!(
        sample(&metrics, "nightjar_tls_chain_valid", &[("check", "ws")]),
        Some(1.0)
    );

    // Mozilla's roots do not know the test CA: nothing is sent to an unverified server.
    let res = run_check(&check(&url, "")).await;
    assert_fail(&res, FailureReason::CertInvalid, "did not verify");
    assert_eq!(details(&res).status_code, None);
    assert!(details(&res).tls_info.is_some());
    let res = run_check(&check(&url, "tls = { insecure_skip_verify = true }")).await;
    assert_pass(&res);
}

#[tokio::test]
async fn a_send_fills_in_the_groups_of_earlier_expects() {
    // blackbox_exporter's `query_response`: `send` after an `expect` expands its groups. The
    // echo server sends back what it gets, so each send proves what the captures held.
    let server = server();
    let text = check(
        &format!("ws://{}/echo", server.plain),
        "steps = [\n  { send = \"Hello, alice (id 42)\" },\n  { expect = '^Hello, (\\w+) \\(id (?P<id>\\d+)\\)$' },\n  { send = \"bye ${1} #${id} $${1}\" },\n  { expect = '^bye alice #42 \\$\\{1\\}$' },\n]",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_eq!(details(&res).messages_received, 2);
    assert_check_contract(&res, &metrics_after(&text, &res));

    // A group the latest expect does not have is a config error at load time.
    let text = check(
        &format!("ws://{}/echo", server.plain),
        "steps = [{ expect = '^(a)$' }, { send = \"${2}\" }]",
    );
    let env = nightjar::config::MapEnv(Default::default());
    let err = nightjar::config::load_str(
        std::path::Path::new("ws.toml"),
        &text,
        &env,
        &nightjar::config::Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("${2}: the latest `expect` has 1 capture group(s)"),
        "{err}"
    );
}

#[tokio::test]
async fn an_answer_that_does_not_match_fails_with_body() {
    let server = server();
    let text = check(
        &format!("ws://{}/echo", server.plain),
        "steps = [{ send = \"hello\" }, { expect = '^goodbye$' }]",
    );
    let started = Instant::now();
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "no match for \"^goodbye$\" (step 2) from ws://127.0.0.1",
    );
    assert_fail(
        &res,
        FailureReason::Body,
        "1 message(s) came, the last: \"hello\"",
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_check_contract(&res, &metrics_after(&text, &res));
}

#[tokio::test]
async fn a_refused_upgrade_fails_with_status() {
    let server = server();
    let text = check(&format!("ws://{}/refuse", server.plain), "");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Status,
        "refused the WebSocket upgrade with HTTP 403 Forbidden: \"no websockets for you\\n\"",
    );
    assert_eq!(details(&res).status_code, Some(403));
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(
            &metrics,
            "nightjar_websocket_status_code",
            &[("check", "ws")]
        ),
        Some(403.0)
    );
}

#[tokio::test]
async fn headers_and_a_bearer_token_reach_the_server_and_stay_secret() {
    let server = server();
    let url = format!("ws://{}/auth", server.plain);
    let steps = "headers = { X-Probe = \"nightjar\" }\nsteps = [{ expect = '^welcome ua=nightjar/\\S+ .*probe=nightjar$' }]";
    let text = check(
        &url,
        &format!("bearer_token = \"${{env:WS_TOKEN}}\"\n{steps}"),
    );
    let res = run_check_env(&text, &[("WS_TOKEN", "let-me-in")]).await;
    assert_pass(&res);
    assert_eq!(details(&res).messages_received, 1);

    let res = run_check_env(&text, &[("WS_TOKEN", "wrong")]).await;
    assert_fail(&res, FailureReason::Status, "HTTP 401 Unauthorized");
    let json = serde_json::to_string(&res).unwrap();
    assert!(!json.contains("wrong"), "{json}");

    let res = run_check(&check(&url, steps)).await;
    assert_fail(&res, FailureReason::Status, "401");

    // Basic auth, from the table or from the URL's user-info.
    let basic = "basic_auth = { username = \"probe\", password = \"${env:WS_PASSWORD}\" }";
    let res = run_check_env(
        &check(&url, &format!("{basic}\n{steps}")),
        &[("WS_PASSWORD", "let-me-in")],
    )
    .await;
    assert_pass(&res);
    let with_userinfo = format!("ws://probe:let-me-in@{}/auth", server.plain);
    let res = run_check(&check(&with_userinfo, steps)).await;
    assert_pass(&res);
    assert_eq!(res.details.phases().len(), 6);
}

#[tokio::test]
async fn an_early_close_fails_with_closed_and_its_code() {
    let server = server();
    let text = check(
        &format!("ws://{}/close-early", server.plain),
        "steps = [{ expect = 'anything' }]",
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Closed,
        "closed the WebSocket (code 4000, reason \"going away\") while step 1 waited for a message matching \"anything\"",
    );
    let ws = details(&res);
    assert_eq!(ws.close_code, Some(4000));
    assert_eq!(ws.close_reason.as_deref(), Some("going away"));
    assert_check_contract(&res, &metrics_after(&text, &res));

    // Without a conversation the server's close crosses the check's own.
    let res = run_check(&check(&format!("ws://{}/close-early", server.plain), "")).await;
    assert_fail(
        &res,
        FailureReason::Closed,
        "closed the WebSocket (code 4000, reason \"going away\") instead of a normal closure",
    );
}

#[tokio::test]
async fn source_ip_binds_the_connection() {
    let server = server();
    let text = check(
        &format!("ws://{}/whoami", server.plain),
        "source_ip = \"127.0.0.2\"\nsteps = [{ expect = '^127\\.0\\.0\\.2$' }]",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
}

/// Accepts connections and hands each to `serve`; the task stops when dropped.
struct InProcess {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn in_process<F, Fut>(serve: F) -> InProcess
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    InProcess { addr, task }
}

/// Runs `text` and asserts it fails with `reason` and `part` within its 2 s timeout.
async fn fails_in_time(text: &str, reason: FailureReason, part: &str) {
    let started = Instant::now();
    let res = run_check(text).await;
    let took = started.elapsed();
    assert_fail(&res, reason, part);
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert_check_contract(&res, &metrics_after(text, &res));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_in_the_upgrade_phase() {
    let silent = in_process(|mut stream| async move {
        let mut buf = [0u8; 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await
        {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    fails_in_time(
        &check(&format!("ws://{}/echo", silent.addr), ""),
        FailureReason::Timeout,
        "timed out in the upgrade phase",
    )
    .await;
}

/// The first bytes of the upgrade request (enough for these servers: they never parse it).
async fn read_some(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
}

#[tokio::test]
async fn garbage_instead_of_an_upgrade_fails_with_protocol() {
    let garbage = in_process(|mut stream| async move {
        read_some(&mut stream).await;
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2p1\r\n\r\n").await;
        let _ = stream.shutdown().await;
    })
    .await;
    fails_in_time(
        &check(&format!("ws://{}/", garbage.addr), ""),
        FailureReason::Protocol,
        "broke the WebSocket protocol during the upgrade: httparse error: invalid HTTP version",
    )
    .await;

    // A plain HTTP answer, no upgrade: a refusal.
    let plain = in_process(|mut stream| async move {
        read_some(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            .await;
    })
    .await;
    fails_in_time(
        &check(&format!("ws://{}/", plain.addr), ""),
        FailureReason::Status,
        "refused the WebSocket upgrade with HTTP 200 OK",
    )
    .await;

    // Header lines forever: the head is capped.
    let endless = in_process(|mut stream| async move {
        read_some(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\n")
            .await;
        let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
        for _ in 0..65536 {
            if stream.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    fails_in_time(
        &check(&format!("ws://{}/", endless.addr), ""),
        FailureReason::TooLarge,
        "over 64 KiB",
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_messages_is_read_only_so_far() {
    let flood = in_process(|stream| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        for idx in 0..100_000 {
            if ws
                .send(Message::text(format!("noise {idx}")))
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await;
    fails_in_time(
        &check(
            &format!("ws://{}/", flood.addr),
            "steps = [{ expect = '^signal$' }]",
        ),
        FailureReason::Body,
        "no match for \"^signal$\" (step 1) in the first 100 messages",
    )
    .await;

    let pings = in_process(|stream| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        for _ in 0..100_000 {
            if ws.send(Message::Ping(Default::default())).await.is_err() {
                return;
            }
        }
    })
    .await;
    fails_in_time(
        &check(
            &format!("ws://{}/", pings.addr),
            "steps = [{ expect = '^signal$' }]",
        ),
        FailureReason::Body,
        "in 0 message(s) and 1000 pings and pongs",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_message_fails_before_it_is_read() {
    // One text message in 64 KiB fragments, 100 MiB in all, as fast as the client reads.
    static WRITTEN: AtomicU64 = AtomicU64::new(0);
    let huge = in_process(|stream| async move {
        crate::support::hostile::websocket_huge_message(stream, |len| {
            WRITTEN.fetch_add(len as u64, Ordering::Relaxed);
        })
        .await;
    })
    .await;
    fails_in_time(
        &check(
            &format!("ws://{}/", huge.addr),
            "steps = [{ expect = 'x' }]",
        ),
        FailureReason::TooLarge,
        "over max_message_size (1048576 bytes)",
    )
    .await;
    let written = WRITTEN.load(Ordering::Relaxed);
    assert!(
        written < 16 * 1024 * 1024,
        "the server got {written} bytes out before the client gave up"
    );

    // A single frame that claims 1 TiB is refused on its header.
    let claim = in_process(|stream| async move {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let mut stream = ws.into_inner();
        let mut frame = vec![0x82, 127];
        frame.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let _ = stream.write_all(&frame).await;
        read_some(&mut stream).await;
    })
    .await;
    fails_in_time(
        &check(
            &format!("ws://{}/", claim.addr),
            "max_message_size = \"64KiB\"\nsteps = [{ expect = 'x' }]",
        ),
        FailureReason::TooLarge,
        "over max_message_size (65536 bytes)",
    )
    .await;
}

#[test]
fn config_errors_name_the_place_and_the_fix() {
    let errors = config_errors(
        "ws.toml",
        "[[check]]\nname = \"ws\"\ntype = \"websocket\"\nurl = \"https://chat.example.com/socket\"\n",
    );
    assert!(
        errors
            .contains("ws.toml:4:7: URL \"https://chat.example.com/socket\" has scheme \"https\""),
        "{errors}"
    );
    assert!(errors.contains("did you mean wss://?"), "{errors}");

    let errors = config_errors(
        "ws.toml",
        "[[check]]\nname = \"ws\"\ntype = \"websocket\"\nurl = \"wss://chat.example.com/\"\nheaders = { Upgrade = \"h2c\" }\nsteps = [\n  { send = \"a\", expect = 'b' },\n  { send_hex = \"0g\" },\n  { expect = '(' },\n  { sned = \"x\" },\n]\n",
    );
    for part in [
        "ws.toml:5:13: header \"Upgrade\" is set by the WebSocket handshake",
        "ws.toml:7:3: `steps[0]` of check \"ws\" sets more than one of `send`, `send_hex` and `expect`",
        "ws.toml:8:16: `send_hex` \"0g\": 'g' is not a hex digit",
        "ws.toml:9:14: invalid regex in `expect`",
        "ws.toml:10:3: `steps[3]` of check \"ws\" has none of `send`, `send_hex` and `expect`",
        "unknown key `sned`",
    ] {
        assert!(errors.contains(part), "{part:?} missing from:\n{errors}");
    }
}

#[tokio::test]
async fn the_page_and_the_api_show_the_upgrade_and_the_messages_and_no_secret() {
    use crate::support::{RunningAgent, eventually, load};
    let server = server();
    let secret = "ws-s3cret-4711";
    let text = format!(
        "[[check]]\nname = \"chat\"\ntype = \"websocket\"\nurl = \"wss://localhost:{tls}/echo\"\ninterval = \"1s\"\ntimeout = \"1s\"\n{ca}\nsteps = [{{ send = \"hi\" }}, {{ expect = '^hi$' }}]\n\n\
[[check]]\nname = \"leaving\"\ntype = \"websocket\"\nurl = \"ws://{plain}/close-early\"\ninterval = \"1s\"\ntimeout = \"1s\"\nsteps = [{{ expect = 'x' }}]\n\n\
[[check]]\nname = \"echo-secret\"\ntype = \"websocket\"\nurl = \"ws://{plain}/echo\"\ninterval = \"1s\"\ntimeout = \"1s\"\nsteps = [{{ send = \"${{env:WS_SECRET}}\" }}, {{ expect = '^never$' }}]\n",
        tls = server.tls.port(),
        ca = ca_file(),
        plain = server.plain,
    );
    let agent = RunningAgent::start(load(&text, &[("WS_SECRET", secret)])).await;
    let api = |name: &'static str| {
        let agent = &agent;
        async move {
            let (_, body) = agent.get(&format!("/api/v1/checks/{name}")).await;
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            (!json["last_run"].is_null()).then_some(json)
        }
    };
    let chat = eventually(Duration::from_secs(20), "chat to run", || api("chat")).await;
    let run = &chat["last_run"];
    assert_eq!(run["success"], true, "{chat}");
    assert_eq!(run["status_code"], 101);
    assert_eq!(run["tls_version"], "TLS 1.3");
    assert_eq!(run["websocket"]["messages_sent"], 1);
    assert_eq!(run["websocket"]["messages_received"], 1);
    assert_eq!(run["websocket"]["close_code"], 1000);
    assert!(
        run["tls"]["chain"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    let (_, page) = agent.get("/checks/chat").await;
    let doc = scraper::Html::parse_document(&page);
    let cells = |css: &str| -> Vec<String> {
        doc.select(&scraper::Selector::parse(css).unwrap())
            .map(|cell| cell.text().collect::<String>().trim().to_string())
            .collect()
    };
    assert_eq!(
        cells("table.compact tbody th")[..6],
        ["resolve", "connect", "tls", "upgrade", "exchange", "close"]
    );
    let facts = cells("dl.facts dt");
    for fact in [
        "HTTP status",
        "TLS",
        "Messages sent",
        "Messages received",
        "Server's close",
    ] {
        assert!(
            facts.iter().any(|dt| dt == fact),
            "{fact} missing: {facts:?}"
        );
    }

    let leaving = eventually(Duration::from_secs(20), "leaving to run", || api("leaving")).await;
    assert_eq!(leaving["last_run"]["reason"], "closed");
    assert_eq!(leaving["last_run"]["websocket"]["close_code"], 4000);
    assert_eq!(
        leaving["last_run"]["websocket"]["close_reason"],
        "going away"
    );
    let (_, page) = agent.get("/checks/leaving").await;
    assert!(page.contains("code 4000 (going away)"), "{page}");

    let echoed = eventually(Duration::from_secs(20), "echo-secret to run", || {
        api("echo-secret")
    })
    .await;
    assert_eq!(echoed["last_run"]["reason"], "body", "{echoed}");
    assert!(
        echoed["last_run"]["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("the last: \"<redacted>\"")),
        "the echoed secret is redacted from the detail: {echoed}"
    );
    for path in [
        "/checks/echo-secret",
        "/api/v1/checks/echo-secret",
        "/metrics",
    ] {
        let (_, body) = agent.get(path).await;
        assert!(
            !body.contains(secret),
            "the secret leaked into {path}:\n{body}"
        );
    }
    agent.stop().await;
}
