//! The `grpc` check against a real gRPC server (Python grpcio with the standard health
//! service, tests/fixtures/grpc_server.py): serving, not serving, unknown service, TLS, mTLS,
//! plain text, metadata, source_ip; against nginx (HTTP/1.1, h2c and HTTPS with HTTP/2 that
//! is not gRPC, HTTPS without HTTP/2); and against in-process servers that stall, answer
//! garbage, flood or stop reading (in the real agent, which must not keep their sockets).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nightjar::result::{Details, FailureReason, GrpcDetails};

use crate::support::hostile::{Behaviour, Hostile};
use crate::support::{
    Nginx, assert_check_contract, assert_fail, assert_pass, config_errors, free_port, load,
    metrics_after, metrics_after_full, pki, run_check, run_check_env, sample, venv_python,
    wait_for_tcp,
};

/// The token the `auth` listener wants in `x-probe-token`.
const TOKEN: &str = "s3cret-t0ken";

/// The Python server, started once for the whole test binary. It exits when the test
/// process does (its standard input, held here, closes).
struct Servers {
    plain: SocketAddr,
    tls: SocketAddr,
    mtls: SocketAddr,
    auth: SocketAddr,
    /// Answers only calls from 127.0.0.2.
    from: SocketAddr,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let pki = pki();
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (plain, tls, mtls, auth, from) = (addr(), addr(), addr(), addr(), addr());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc_server.py");
        let mut child = Command::new(venv_python())
            .arg(script)
            .args(["--status", "=SERVING"])
            .args(["--status", "shop=SERVING"])
            .args(["--status", "down=NOT_SERVING"])
            .args(["--status", "starting=UNKNOWN"])
            .args(["--plain", &plain.port().to_string()])
            .args(["--tls", &tls.port().to_string()])
            .args(["--mtls", &mtls.port().to_string()])
            .args(["--auth", &auth.port().to_string(), "--token", TOKEN])
            .args(["--from", &from.port().to_string(), "--from-ip", "127.0.0.2"])
            .arg("--cert")
            .arg(&pki.leaf.chain)
            .arg("--key")
            .arg(&pki.leaf.key)
            .arg("--client-ca")
            .arg(&pki.ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gRPC server");
        let stdin = child.stdin.take().expect("its standard input");
        for addr in [plain, tls, mtls, auth, from] {
            wait_for_tcp(addr, Duration::from_secs(30));
        }
        Servers {
            plain,
            tls,
            mtls,
            auth,
            from,
            _child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
        }
    })
}

fn grpc_check(target: impl std::fmt::Display, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"health\"\ntype = \"grpc\"\ntarget = \"{target}\"\ninterval = \"30s\"\ntimeout = \"3s\"\n{extra}\n"
    )
}

fn tls_keys() -> String {
    format!("tls = {{ ca_file = {:?} }}", pki().ca.display().to_string())
}

fn details(res: &nightjar::result::CheckResult) -> &GrpcDetails {
    match &res.details {
        Details::Grpc(details) => details,
        other => panic!("no grpc details in {other:?}"),
    }
}

fn gauge(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = vec![("check", "health")];
    all.extend_from_slice(labels);
    sample(metrics, name, &all)
}

#[tokio::test]
async fn a_serving_server_passes_over_plain_http2() {
    let servers = servers();
    let text = grpc_check(servers.plain, "plaintext = true");
    let res = run_check(&text).await;
    assert_pass(&res);
    let got = details(&res);
    assert_eq!(got.status_code, Some(0));
    assert_eq!(got.serving_status_name().as_deref(), Some("SERVING"));
    assert!(!got.tls_used && got.tls_info.is_none());
    assert!(got.check > Duration::ZERO && got.connect > Duration::ZERO);
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(gauge(&metrics, "probe_grpc_status_code", &[]), Some(0.0));
    assert_eq!(gauge(&metrics, "probe_grpc_ssl", &[]), Some(0.0));
    for (status, value) in [
        ("SERVING", 1.0),
        ("NOT_SERVING", 0.0),
        ("UNKNOWN", 0.0),
        ("SERVICE_UNKNOWN", 0.0),
    ] {
        assert_eq!(
            gauge(
                &metrics,
                "probe_grpc_healthcheck_response",
                &[("serving_status", status)]
            ),
            Some(value),
            "{status}"
        );
    }
    for phase in ["resolve", "connect", "tls", "check"] {
        assert!(
            gauge(&metrics, "probe_grpc_duration_seconds", &[("phase", phase)]).is_some(),
            "{phase}:\n{metrics}"
        );
    }
    let view = nightjar::status::RunView::new(&res);
    let grpc = view.grpc.expect("the API shows the gRPC answer");
    assert_eq!(grpc.status.as_deref(), Some("OK"));
    assert_eq!(grpc.serving_status.as_deref(), Some("SERVING"));
    let store = nightjar::status::StatusStore::new(&load(&text, &[]));
    store.update(res);
    let page = nightjar::page::detail(&store, "health").expect("the check's page");
    assert!(
        page.contains("<dt>Serving status</dt><dd>SERVING</dd>"),
        "{page}"
    );
    // The phases in the order they happen.
    let at = |phase: &str| page.find(&format!(">{phase}</th>")).expect(phase);
    assert!(
        at("resolve") < at("connect") && at("tls") < at("check"),
        "{page}"
    );
}

#[tokio::test]
async fn a_named_service_is_asked_about() {
    let servers = servers();
    let res = run_check(&grpc_check(
        servers.plain,
        "plaintext = true\nservice = \"shop\"",
    ))
    .await;
    assert_pass(&res);
}

#[tokio::test]
async fn not_serving_fails_with_the_status() {
    let servers = servers();
    for (service, status) in [("down", "NOT_SERVING"), ("starting", "UNKNOWN")] {
        let text = grpc_check(
            servers.plain,
            &format!("plaintext = true\nservice = \"{service}\""),
        );
        let res = run_check(&text).await;
        assert_fail(
            &res,
            FailureReason::NotServing,
            &format!("service \"{service}\" of {} at", servers.plain),
        );
        assert_fail(
            &res,
            FailureReason::NotServing,
            &format!("is {status}, expected SERVING"),
        );
        let metrics = metrics_after(&text, &res);
        assert_check_contract(&res, &metrics);
        assert_eq!(gauge(&metrics, "probe_grpc_status_code", &[]), Some(0.0));
        assert_eq!(
            gauge(
                &metrics,
                "probe_grpc_healthcheck_response",
                &[("serving_status", status)]
            ),
            Some(1.0)
        );
        assert_eq!(
            gauge(
                &metrics,
                "probe_grpc_healthcheck_response",
                &[("serving_status", "SERVING")]
            ),
            Some(0.0)
        );
    }
}

#[tokio::test]
async fn an_unknown_service_is_a_grpc_status() {
    let servers = servers();
    let text = grpc_check(servers.plain, "plaintext = true\nservice = \"nope\"");
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::GrpcStatus, "NOT_FOUND");
    assert_eq!(details(&res).status_code, Some(5));
    assert_eq!(details(&res).serving_status, None);
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(gauge(&metrics, "probe_grpc_status_code", &[]), Some(5.0));
    let view = nightjar::status::RunView::new(&res);
    assert_eq!(view.grpc.unwrap().status.as_deref(), Some("NOT_FOUND"));
    // The status page's detail view says what the server said.
    let store = nightjar::status::StatusStore::new(&load(&text, &[]));
    store.update(res);
    let page = nightjar::page::detail(&store, "health").expect("the check's page");
    assert!(
        page.contains("<dt>gRPC status</dt><dd>NOT_FOUND (5)</dd>"),
        "{page}"
    );
    assert!(page.contains("plain-text HTTP/2 (h2c)"), "{page}");
}

#[tokio::test]
async fn tls_passes_and_reports_the_chain() {
    let servers = servers();
    let text = grpc_check(servers.tls, &tls_keys());
    let res = run_check(&text).await;
    assert_pass(&res);
    let got = details(&res);
    assert!(got.tls_used && got.tls > Duration::ZERO);
    let info = got.tls_info.as_ref().expect("the chain is read");
    assert!(info.chain_valid && info.hostname_match);
    assert_eq!(info.alpn.as_deref(), Some("h2"));
    let metrics = metrics_after_full(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(gauge(&metrics, "probe_grpc_ssl", &[]), Some(1.0));
    assert!(gauge(&metrics, "probe_ssl_earliest_cert_expiry", &[]).is_some());
    assert_eq!(gauge(&metrics, "nightjar_tls_chain_valid", &[]), Some(1.0));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_the_call() {
    let servers = servers();
    // The bundled roots do not know the test CA.
    let res = run_check(&grpc_check(servers.tls, "")).await;
    assert_fail(&res, FailureReason::CertInvalid, "did not verify");
    assert_eq!(details(&res).check, Duration::ZERO, "nothing was sent");
    let res = run_check(&grpc_check(
        servers.tls,
        "tls = { insecure_skip_verify = true }",
    ))
    .await;
    assert_pass(&res);
}

#[tokio::test]
async fn mtls_needs_the_client_certificate() {
    let servers = servers();
    let pki = pki();
    let with_cert = format!(
        "tls = {{ ca_file = {:?}, cert_file = {:?}, key_file = {:?} }}",
        pki.ca.display().to_string(),
        pki.client.chain.display().to_string(),
        pki.client.key.display().to_string()
    );
    let res = run_check(&grpc_check(servers.mtls, &with_cert)).await;
    assert_pass(&res);

    let text = grpc_check(servers.mtls, &tls_keys());
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Tls,
        "this check sends no client certificate",
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
}

#[tokio::test]
async fn metadata_reaches_the_server() {
    let servers = servers();
    let text = grpc_check(
        servers.auth,
        "plaintext = true\nmetadata = { x-probe-token = \"${env:PROBE_TOKEN}\" }",
    );
    let res = run_check_env(&text, &[("PROBE_TOKEN", TOKEN)]).await;
    assert_pass(&res);

    let res = run_check_env(&text, &[("PROBE_TOKEN", "not-the-token")]).await;
    assert_fail(
        &res,
        FailureReason::GrpcStatus,
        "UNAUTHENTICATED: missing or wrong x-probe-token",
    );
    assert_eq!(details(&res).status_code, Some(16));
    let same_check = text.replace("${env:PROBE_TOKEN}", "x");
    assert_check_contract(&res, &metrics_after(&same_check, &res));
}

#[tokio::test]
async fn a_plain_http1_server_is_not_http2() {
    let nginx = Nginx::start();
    let text = grpc_check(nginx.http, "plaintext = true");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Protocol,
        "is not an HTTP/2 server: it answered HTTP/1",
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
    assert_eq!(details(&res).status_code, None);
    assert_eq!(
        gauge(&metrics_after(&text, &res), "probe_grpc_status_code", &[]),
        Some(-1.0)
    );
    // nginx's plain-text HTTP/2 listener (h2c) speaks HTTP/2 but is no gRPC server.
    let res = run_check(&grpc_check(nginx.h2c, "plaintext = true")).await;
    assert_fail(
        &res,
        FailureReason::Protocol,
        "answered HTTP 404 (text/html), not gRPC: not a gRPC endpoint",
    );
}

#[tokio::test]
async fn nginx_over_tls_is_not_grpc() {
    let nginx = Nginx::start();
    // The https listener chooses h2 by ALPN, then answers the call with a 404 page.
    let text = grpc_check(
        nginx.https,
        &format!(
            "tls = {{ ca_file = {:?}, server_name = \"localhost\" }}",
            pki().ca.display().to_string()
        ),
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Protocol,
        &format!(
            "{} at {} answered HTTP 404 (text/html), not gRPC: not a gRPC endpoint",
            nginx.https, nginx.https
        ),
    );
    let info = details(&res).tls_info.as_ref().expect("the chain is read");
    assert_eq!(info.alpn.as_deref(), Some("h2"));
    assert!(info.chain_valid && info.hostname_match);
    assert_eq!(details(&res).status_code, None);
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(gauge(&metrics, "probe_grpc_ssl", &[]), Some(1.0));
    assert_eq!(gauge(&metrics, "probe_grpc_status_code", &[]), Some(-1.0));

    // A listener without `http2` speaks HTTP/1.1 only: nginx ends the handshake with a
    // no_application_protocol alert when h2 is all the client offers.
    let text = grpc_check(nginx.self_signed, "tls = { insecure_skip_verify = true }");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Protocol,
        &format!(
            "{} at {} is not an HTTP/2 server over TLS: it refused ALPN h2 (TLS alert no_application_protocol); gRPC needs h2",
            nginx.self_signed, nginx.self_signed
        ),
    );
    assert_eq!(details(&res).check, Duration::ZERO, "nothing was sent");
    assert_check_contract(&res, &metrics_after(&text, &res));
}

#[tokio::test]
async fn source_ip_is_the_address_the_server_sees() {
    let servers = servers();
    // The server answers 127.0.0.2 only, and says whom it saw otherwise.
    let res = run_check(&grpc_check(servers.from, "plaintext = true")).await;
    assert_fail(
        &res,
        FailureReason::GrpcStatus,
        "PERMISSION_DENIED: only 127.0.0.2 may ask; this call came from 127.0.0.1",
    );
    let text = grpc_check(servers.from, "plaintext = true\nsource_ip = \"127.0.0.2\"");
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_check_contract(&res, &metrics_after(&text, &res));
}

#[tokio::test]
async fn nothing_listening_is_connect() {
    let port = free_port();
    let res = run_check(&grpc_check(format!("127.0.0.1:{port}"), "plaintext = true")).await;
    assert_fail(&res, FailureReason::Connect, "");
}

#[tokio::test]
async fn a_stalled_server_times_out_precisely() {
    let server = Hostile::start(Behaviour::Silent).await;
    let text = grpc_check(server.addr, "plaintext = true").replace("\"3s\"", "\"1s\"");
    let started = Instant::now();
    let res = run_check(&text).await;
    let took = started.elapsed();
    assert_fail(
        &res,
        FailureReason::Timeout,
        "accepted the connection but sent nothing (no HTTP/2 settings)",
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_check_contract(&res, &metrics_after(&text, &res));
}

#[tokio::test]
async fn a_server_that_answers_garbage_breaks_http2() {
    let server = Hostile::start(Behaviour::NotHttp).await;
    let text = grpc_check(server.addr, "plaintext = true");
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Protocol, "its first bytes: \"SSH-2.0");
    assert_check_contract(&res, &metrics_after(&text, &res));
}

/// A gRPC answer that announces a 2 GiB message, then sends zeros as fast as the client
/// reads (at most 1 GiB), counting what it hands to HTTP/2.
struct Flood {
    left: u64,
    written: Arc<AtomicU64>,
}

impl http_body::Body for Flood {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let chunk = if self.written.load(Ordering::Relaxed) == 0 {
            Bytes::from_static(&[0, 0x7f, 0xff, 0xff, 0xff])
        } else {
            Bytes::from(vec![0u8; 16 * 1024])
        };
        self.left = self.left.saturating_sub(chunk.len() as u64);
        self.written
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

/// An HTTP/2 server that answers every request with a [`Flood`], or with 1 MiB of headers.
async fn flood_server(
    huge_headers: bool,
) -> (SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let body = Flood {
                        left: 1 << 30,
                        written: counter.clone(),
                    };
                    async move {
                        let mut response = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap();
                        if huge_headers {
                            for idx in 0..1024 {
                                response.headers_mut().insert(
                                    http::HeaderName::try_from(format!("x-filler-{idx}")).unwrap(),
                                    http::HeaderValue::from_str(&"f".repeat(1024)).unwrap(),
                                );
                            }
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, written, task)
}

#[tokio::test]
async fn a_huge_answer_is_refused_in_bounded_memory() {
    let (addr, written, task) = flood_server(false).await;
    let text = grpc_check(addr, "plaintext = true");
    let started = Instant::now();
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::TooLarge,
        "with a message over 65536 bytes",
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Flow control let the server write a window's worth and what the sockets hold; nowhere
    // near the 2 GiB announced.
    let sent = written.load(Ordering::Relaxed);
    assert!(sent < 16 << 20, "the server wrote {sent} bytes");
    assert_check_contract(&res, &metrics_after(&text, &res));
    task.abort();
}

#[test]
fn config_errors_name_their_place() {
    let errors = config_errors(
        "grpc.toml",
        "[[check]]\nname = \"g\"\ntype = \"grpc\"\ntarget = \"a:1\"\ninterval = \"30s\"\nplaintext = true\ntls = { ca_file = \"x\" }\n",
    );
    assert!(errors.contains("grpc.toml:7:1"), "{errors}");
    assert!(errors.contains("plaintext = true"), "{errors}");
    let errors = config_errors(
        "grpc.toml",
        "[[check]]\nname = \"g\"\ntype = \"grpc\"\ntarget = \"a:1\"\ninterval = \"30s\"\nmetadata = { grpc-timeout = \"1S\" }\n",
    );
    assert!(errors.contains("grpc.toml:6:"), "{errors}");
    assert!(errors.contains("set by the call itself"), "{errors}");
    let errors = config_errors(
        "grpc.toml",
        "[[check]]\nname = \"g\"\ntype = \"grpc\"\ninterval = \"30s\"\n",
    );
    assert!(
        errors.contains("missing the required key `target`"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_megabyte_of_headers_is_refused() {
    let (addr, _, task) = flood_server(true).await;
    let text = grpc_check(addr, "plaintext = true");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::TooLarge,
        "sent response headers over the 16 KiB nightjar accepts",
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
    task.abort();
}

/// An HTTP/2 server that stops reading: it sends its SETTINGS, then PING frames as fast as
/// TCP takes them, and never reads. The client must acknowledge each PING, so its writes
/// back soon fill what the sockets hold: from then on nothing it writes (its request, a
/// GOAWAY) gets through. Small socket buffers keep that small. The server counts the
/// connections accepted and those still open (a write fails once the client closed).
async fn unread_server() -> (
    SocketAddr,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::AsyncWriteExt;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    let (counted, still_open) = (accepted.clone(), open.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            still_open.fetch_add(1, Ordering::SeqCst);
            let still_open = still_open.clone();
            tokio::spawn(async move {
                // An empty SETTINGS frame (type 4), then PINGs (type 6, 8 bytes of payload).
                let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
                let ping = [0u8, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
                let pings: Vec<u8> = ping
                    .iter()
                    .copied()
                    .cycle()
                    .take(ping.len() * 256)
                    .collect();
                if stream.write_all(&settings).await.is_ok() {
                    while stream.write_all(&pings).await.is_ok() {}
                }
                still_open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, open, task)
}

/// Sockets the process `pid` holds open.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's fds")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// The runs of every check so far, and the agent's runtime tasks, from its /metrics.
async fn runs_and_tasks(listen: SocketAddr) -> (f64, f64) {
    let (_, metrics) = crate::support::http_get(listen, "/metrics").await;
    let runs = metrics
        .lines()
        .filter(|line| line.starts_with("nightjar_check_runs_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let tasks = sample(&metrics, "nightjar_runtime_tasks", &[]).expect("the task gauge");
    (runs, tasks)
}

/// hyper's HTTP/2 client spawns the task that owns the connection on the executor it is
/// given; against a server that stops reading, that task can never finish its close. The
/// real agent runs such a check again and again: once each run is over, its tasks and its
/// socket are gone (the server sees every connection but the runs in flight closed).
#[tokio::test]
async fn a_stalled_call_leaves_no_task_or_socket_behind() {
    const CHECKS: u64 = 4;
    let (addr, accepted, open, server) = unread_server().await;
    // Long enough for the client's acknowledgements to fill the sockets before it gives up.
    let timeout = "900ms";
    let res = run_check(
        &grpc_check(addr, "plaintext = true").replace("\"3s\"", &format!("\"{timeout}\"")),
    )
    .await;
    assert_fail(
        &res,
        FailureReason::Timeout,
        "timed out waiting for the answer to grpc.health.v1.Health/Check",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("checks.toml");
    let text: String = (0..CHECKS)
        .map(|idx| {
            format!(
                "[[check]]\nname = \"stalled-{idx}\"\ntype = \"grpc\"\ntarget = \"{addr}\"\nplaintext = true\ninterval = \"1s\"\ntimeout = \"{timeout}\"\n\n"
            )
        })
        .collect();
    std::fs::write(&config, text).unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let agent = crate::support::start_agent(
        crate::support::nightjar()
            .args(["run", "--config"])
            .arg(&config),
        listen,
    );
    let pid = agent.id();
    let measure = |at_least: f64| async move {
        crate::support::eventually(Duration::from_secs(30), "runs", || async {
            let (runs, tasks) = runs_and_tasks(listen).await;
            (runs >= at_least).then_some((runs, tasks))
        })
        .await
    };
    let (runs_before, tasks_before) = measure(CHECKS as f64 * 2.0).await;
    let sockets_before = sockets(pid);
    let (runs_after, tasks_after) = measure(CHECKS as f64 * 8.0).await;
    let sockets_after = sockets(pid);
    let open_now = open.load(Ordering::SeqCst);
    let accepted_now = accepted.load(Ordering::SeqCst);
    eprintln!(
        "runs {runs_before} -> {runs_after}; runtime tasks {tasks_before} -> {tasks_after}; \
         agent sockets {sockets_before} -> {sockets_after}; server: {accepted_now} accepted, \
         {open_now} open"
    );
    assert!(
        accepted_now >= CHECKS * 8,
        "every run connects: {accepted_now}"
    );
    // At most one run of each check is in flight, and one may be closing as it is counted;
    // a socket left behind by each run would show as one more per run.
    let more_runs = runs_after - runs_before;
    let in_flight = CHECKS as usize * 2;
    assert!(
        open_now as usize <= in_flight,
        "{open_now} of {accepted_now} connections still open after {runs_after} runs"
    );
    assert!(
        sockets_after <= sockets_before + in_flight,
        "the agent's sockets went from {sockets_before} to {sockets_after} over {more_runs} runs"
    );
    assert!(
        tasks_after < tasks_before + more_runs / 2.0,
        "the agent's tasks went from {tasks_before} to {tasks_after} over {more_runs} runs"
    );
    drop(agent);
    server.abort();
}

/// `/probe` of grpc modules on a real agent answers as blackbox_exporter's grpc prober.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_of_a_grpc_module_answers_as_blackbox_exporter() {
    let servers = servers();
    let config = format!(
        "[[module]]\nname = \"grpc_plain\"\ntype = \"grpc\"\nplaintext = true\ntimeout = \"3s\"\n\n[[module]]\nname = \"grpc_tls\"\ntype = \"grpc\"\ntimeout = \"3s\"\n{}\n",
        tls_keys()
    );
    let agent = crate::support::RunningAgent::start(load(&config, &[])).await;
    let promtool = crate::support::require("promtool", "prometheus");
    for (module, target, ssl) in [
        ("grpc_plain", servers.plain.to_string(), 0.0),
        ("grpc_tls", format!("localhost:{}", servers.tls.port()), 1.0),
    ] {
        let (status, body) = agent
            .get(&format!("/probe?module={module}&target={target}"))
            .await;
        assert_eq!(status, 200, "{body}");
        crate::support::promtool_check_metrics(&promtool, &body).unwrap();
        assert_eq!(sample(&body, "probe_success", &[]), Some(1.0), "{body}");
        assert_eq!(sample(&body, "probe_grpc_status_code", &[]), Some(0.0));
        assert_eq!(sample(&body, "probe_grpc_ssl", &[]), Some(ssl));
        assert_eq!(
            sample(
                &body,
                "probe_grpc_healthcheck_response",
                &[("serving_status", "SERVING")]
            ),
            Some(1.0)
        );
        assert!(sample(&body, "probe_grpc_duration_seconds", &[("phase", "check")]).is_some());
        assert!(sample(&body, "probe_ssl_earliest_cert_expiry", &[]).is_some());
        assert_eq!(
            body.contains("probe_tls_version_info"),
            ssl == 1.0,
            "{body}"
        );
    }
    agent.stop().await;
}
