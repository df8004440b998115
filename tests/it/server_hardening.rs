//! Hostile clients of the agent's own server, against the real binary: a thousand idle and a
//! thousand slowloris connections, a `/metrics` reader that stops reading, SIGTERM while
//! clients stall, a flood of bad logins, login timing, and the browser-facing rules (security
//! headers, cross-site reload, Host names).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    KillOnDrop, Nginx, RunningAgent, eventually, free_port, load, nightjar, sample, start_agent,
    wait_for_tcp,
};

/// The open-files soft limit of this test process raised to the hard one: a thousand client
/// connections need more than the usual 1024.
fn raise_fd_limit(need: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < need) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
    let soft = getrlimit(Resource::Nofile).current;
    assert!(
        soft.is_none_or(|soft| soft >= need),
        "this test needs {need} open files; the hard limit allows {soft:?}"
    );
}

/// A connection to `to` from the loopback address `source` (each of 127.0.0.0/8 is this host).
async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// One HTTP/1.1 request on a fresh connection from `source`: status, head, body and how long
/// the whole answer took.
async fn request_from(
    source: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String, String, Duration) {
    let started = Instant::now();
    let mut stream = connect_from(source, to).await.expect("connect");
    let host = if headers.to_ascii_lowercase().contains("host:") {
        String::new()
    } else {
        format!("Host: {to}\r\n")
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\n{host}{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("read");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string(), took)
}

const SCRAPER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn attacker(n: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, n))
}

async fn metrics_of(listen: SocketAddr) -> String {
    let (status, _, body, _) = request_from(SCRAPER, listen, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn runs(metrics: &str, check: &str, result: &str) -> f64 {
    sample(
        metrics,
        "nightjar_check_runs_total",
        &[("check", check), ("result", result)],
    )
    .unwrap_or(0.0)
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `nightjar run --config config` on a fresh loopback port, its output discarded (a thousand
/// failing checks log more than a pipe nobody reads holds).
fn run_agent(config: &Path, env: &[(&str, &str)]) -> (KillOnDrop, SocketAddr) {
    run_agent_on(config, env, [127, 0, 0, 1])
}

/// The same on `ip` (reached through 127.0.0.1).
fn run_agent_on(config: &Path, env: &[(&str, &str)], ip: [u8; 4]) -> (KillOnDrop, SocketAddr) {
    let port = free_port();
    let mut command = nightjar();
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(SocketAddr::from((ip, port)).to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    let agent = KillOnDrop(
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nightjar run"),
    );
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_tcp(listen, Duration::from_secs(20));
    (agent, listen)
}

/// Fresh `/metrics` scrapes every 100 ms until `until` resolves; their durations.
async fn scrape_while(
    listen: SocketAddr,
    until: impl std::future::Future<Output = ()>,
) -> Vec<Duration> {
    let mut took = Vec::new();
    tokio::pin!(until);
    loop {
        let (status, _, _, duration) = request_from(SCRAPER, listen, "GET", "/metrics", "").await;
        assert_eq!(status, 200);
        took.push(duration);
        tokio::select! {
            () = &mut until => return took,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

fn slowest(durations: &[Duration]) -> Duration {
    durations.iter().copied().max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_and_a_thousand_slowloris_connections_fail_no_check_and_delay_no_scrape() {
    raise_fd_limit(4096);
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let listen_port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], listen_port));
    let config = write_config(
        dir.path(),
        &format!(
            "[[check]]\nname = \"nginx\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\n\
[[check]]\nname = \"self\"\ntype = \"http\"\nurl = \"http://{listen}/-/healthy\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n",
            nginx.url("/ok")
        ),
    );
    let mut command = nightjar();
    command.arg("run").arg("--config").arg(&config);
    let agent = start_agent(&mut command, listen);
    eventually(Duration::from_secs(20), "both checks to pass", || async {
        let metrics = metrics_of(listen).await;
        (runs(&metrics, "nginx", "success") >= 1.0 && runs(&metrics, "self", "success") >= 1.0)
            .then_some(())
    })
    .await;
    let before = metrics_of(listen).await;
    let started = Instant::now();

    // A thousand connections that never send a byte, opened while fresh scrapes run.
    let (idle, idle_scrapes) = {
        let opening = async {
            let mut idle = Vec::new();
            for n in 0..1000 {
                if let Ok(stream) = connect_from(attacker((n % 250) as u8 + 1), listen).await {
                    idle.push(stream);
                }
            }
            idle
        };
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let scrapes = scrape_while(listen, async {
            let _ = finished.await;
        });
        let opened = async {
            let idle = opening.await;
            // Scrapes go on a while with all of them open.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = done.send(());
            idle
        };
        tokio::join!(opened, scrapes)
    };
    assert_eq!(idle.len(), 1000, "the kernel accepted every connection");

    // A thousand more that send a request head a header line at a time, every 300 ms.
    let (slow_scrapes, trickled) = {
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let trickle = async {
            let mut slow = Vec::new();
            for n in 0..1000 {
                if let Ok(mut stream) = connect_from(attacker((n % 250) as u8 + 1), listen).await
                    && stream
                        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
                        .await
                        .is_ok()
                {
                    slow.push(stream);
                }
            }
            let mut lines = 0;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                for stream in &mut slow {
                    if stream.write_all(b"X-Slow: 1\r\n").await.is_ok() {
                        lines += 1;
                    }
                }
            }
            let _ = done.send(());
            lines
        };
        let scrapes = scrape_while(listen, async {
            let _ = finished.await;
        });
        let (lines, scrapes) = tokio::join!(trickle, scrapes);
        (scrapes, lines)
    };
    assert!(trickled > 0);
    let elapsed = started.elapsed();
    drop(idle);

    let after = metrics_of(listen).await;
    for check in ["nginx", "self"] {
        assert_eq!(
            runs(&after, check, "failure"),
            runs(&before, check, "failure"),
            "{check} failed during the flood:\n{after}"
        );
        let ran = runs(&after, check, "success") - runs(&before, check, "success");
        assert!(
            ran >= elapsed.as_secs_f64().floor() - 2.0,
            "{check} ran {ran} times in {elapsed:?}"
        );
    }
    assert!(
        sample(&after, "nightjar_http_connections_evicted_total", &[]).unwrap() >= 1000.0,
        "the cap (256) held by closing idle connections:\n{after}"
    );
    let (idle_worst, slow_worst) = (slowest(&idle_scrapes), slowest(&slow_scrapes));
    eprintln!(
        "fresh scrapes: {} during idle connections (slowest {idle_worst:?}), {} during slowloris (slowest {slow_worst:?})",
        idle_scrapes.len(),
        slow_scrapes.len()
    );
    assert!(idle_scrapes.len() >= 10 && slow_scrapes.len() >= 10);
    assert!(idle_worst < Duration::from_secs(1), "{idle_scrapes:?}");
    assert!(slow_worst < Duration::from_secs(1), "{slow_scrapes:?}");
    drop(agent);
}

/// A config of `n` checks that fail at once (nothing listens on port 1), for a large
/// exposition.
fn many_checks(n: usize, extra: &str) -> String {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "[[check]]\nname = \"c{i}\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1h\"\ntimeout = \"2s\"\n{extra}\n"
        ));
    }
    text
}

/// A client that asks for `/metrics` with a small receive window and never reads.
async fn stalled_reader(listen: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(listen).await.unwrap();
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {listen}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_reader_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[agent]\nmax_connections = 2\n\n{}", many_checks(4000, "")),
    );
    let (agent, listen) = run_agent(&config, &[]);
    let size = metrics_of(listen).await.len();
    assert!(
        size > 8 << 20,
        "the exposition ({size} bytes) outgrows socket buffers"
    );
    let mut stalled = stalled_reader(listen).await;
    let started = Instant::now();
    // Once the answer has begun, the connection is busy, not idle.
    let mut status_line = [0u8; 12];
    stalled.read_exact(&mut status_line).await.unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 200");
    // Fresh scrapes are served meanwhile.
    let metrics = metrics_of(listen).await;
    assert!(metrics.contains("nightjar_build_info"));
    // With both connections busy, a third is refused (503, or a reset if the request was
    // still unread when the agent closed it).
    let mut second = stalled_reader(listen).await;
    second.read_exact(&mut status_line).await.unwrap();
    let mut third = connect_from(SCRAPER, listen).await.unwrap();
    let _ = third
        .write_all(format!("GET /-/healthy HTTP/1.1\r\nHost: {listen}\r\n\r\n").as_bytes())
        .await;
    let mut answer = Vec::new();
    match third.read_to_end(&mut answer).await {
        Ok(_) => assert!(
            answer.starts_with(b"HTTP/1.1 503"),
            "{}",
            String::from_utf8_lossy(&answer)
        ),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
    }
    drop(second);
    // The agent gives up on the stalled one: once its buffers drain, the stream ends.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut sink = vec![0u8; 1 << 16];
        // Wait before reading, so the server's writes stall for longer than the timeout.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let mut total = 0usize;
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the stalled connection was closed");
    eprintln!(
        "stalled reader cut off after {:?} having received {drained} of {size} bytes",
        started.elapsed()
    );
    assert!(
        drained < size,
        "the whole exposition fit the buffers; no stall"
    );
    let after = metrics_of(listen).await;
    assert!(
        sample(&after, "nightjar_http_connections_timed_out_total", &[]).unwrap() >= 1.0
            && sample(&after, "nightjar_http_connections_refused_total", &[]).unwrap() >= 1.0,
        "{}",
        after
            .lines()
            .filter(|line| line.contains("nightjar_http"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_longest_check_timeout_plus_5s_while_clients_stall() {
    raise_fd_limit(2048);
    // A target that accepts and never answers, so a run is in flight for its whole timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let longest = Duration::from_secs(4);
    let config = write_config(
        dir.path(),
        &format!(
            "{}[[check]]\nname = \"hangs\"\ntype = \"http\"\nurl = \"http://{silent_addr}/\"\ninterval = \"4s\"\ntimeout = \"4s\"\n",
            many_checks(3000, "")
        ),
    );
    let (mut agent, listen) = run_agent(&config, &[]);
    // Its runs follow each other back to back (interval = timeout), so one is always in
    // flight once the first has ended.
    eventually(
        Duration::from_secs(30),
        "the hanging check's first run to end",
        || async {
            let metrics = metrics_of(listen).await;
            (runs(&metrics, "hangs", "failure") >= 1.0).then_some(())
        },
    )
    .await;
    // Stalled clients of every kind: /metrics readers, idle, mid-head.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(stalled_reader(listen).await);
    }
    for n in 0..200 {
        if let Ok(mut stream) = connect_from(attacker(n as u8 % 250 + 1), listen).await {
            if n % 2 == 0 {
                let _ = stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
                    .await;
            }
            clients.push(stream);
        }
    }
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < longest + Duration::from_secs(10),
            "the agent did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    eprintln!("SIGTERM to exit: {took:?} (longest check timeout {longest:?})");
    assert!(exited.success(), "{exited:?}");
    assert!(
        took < longest + Duration::from_secs(5),
        "took {took:?}, past the longest check timeout plus 5 s"
    );
    drop(clients);
    holder.abort();
}

const PASSWORD: &str = "right-Pa55-word";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn protected(cost: u32, extra: &str) -> String {
    format!(
        "[agent]\nbasic_auth_users = {{ ops = \"{}\", viewer = \"{}\" }}\nbearer_token = \"${{env:WEB_TOKEN}}\"\n{extra}",
        bcrypt::hash(PASSWORD, cost).unwrap(),
        bcrypt::hash("another-password", cost).unwrap()
    )
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_takes_as_long_as_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &protected(9, ""));
    let (agent, listen) = run_agent(&config, &[("WEB_TOKEN", TOKEN)]);
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Interleaved, each from its own address so no back-off applies; medians of 9.
    for n in 0..9u8 {
        let (status, _, _, took) = request_from(
            attacker(2 * n + 1),
            listen,
            "GET",
            "/metrics",
            &basic("ops", "wrong"),
        )
        .await;
        assert_eq!(status, 401);
        known.push(took);
        let (status, _, _, took) = request_from(
            attacker(2 * n + 2),
            listen,
            "GET",
            "/metrics",
            &basic("mallory", "wrong"),
        )
        .await;
        assert_eq!(status, 401);
        unknown.push(took);
    }
    let (known, unknown) = (median(known), median(unknown));
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    eprintln!("median 401: known user {known:?}, unknown user {unknown:?} (ratio {ratio:.2})");
    assert!(
        (0.8..=1.2).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}"
    );
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_login_flood_leaves_bearer_and_cached_scrapes_fast_and_checks_on_schedule() {
    raise_fd_limit(1024);
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &protected(
            10,
            &format!(
                "\n[[check]]\nname = \"nginx\"\ntype = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n",
                nginx.url("/ok")
            ),
        ),
    );
    let (agent, listen) = run_agent(&config, &[("WEB_TOKEN", TOKEN)]);
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let scrape = |headers: String| async move {
        let (status, _, body, took) =
            request_from(SCRAPER, listen, "GET", "/metrics", &headers).await;
        assert_eq!(status, 200, "{body}");
        (body, took)
    };
    // The right password once, so it is remembered.
    scrape(basic("ops", PASSWORD)).await;
    let (before, _) = scrape(bearer.clone()).await;
    let started = Instant::now();

    // Fifty clients, each on its own address, sending wrong passwords as fast as answered.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = tokio::task::JoinSet::new();
    for n in 0..50u8 {
        let stop = stop.clone();
        flood.spawn(async move {
            let mut answers = std::collections::BTreeMap::<u16, usize>::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let user = if i % 2 == 0 { "ops" } else { "nobody" };
                let (status, head, _, _) = request_from(
                    attacker(n + 1),
                    listen,
                    "GET",
                    "/metrics",
                    &basic(user, &format!("guess{i}")),
                )
                .await;
                if status == 429 {
                    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
                }
                *answers.entry(status).or_default() += 1;
                i += 1;
            }
            answers
        });
    }
    let mut bearer_times = Vec::new();
    let mut cached_times = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        bearer_times.push(scrape(bearer.clone()).await.1);
        cached_times.push(scrape(basic("ops", PASSWORD)).await.1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(counts) = flood.join_next().await {
        for (status, count) in counts.unwrap() {
            *answers.entry(status).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    let (after, _) = scrape(bearer.clone()).await;
    let p50 = |times: &[Duration]| median(times.to_vec());
    eprintln!(
        "bad-login flood ({answers:?}): bearer scrapes p50 {:?} max {:?}; cached basic p50 {:?} max {:?}",
        p50(&bearer_times),
        slowest(&bearer_times),
        p50(&cached_times),
        slowest(&cached_times)
    );
    assert!(
        answers.keys().all(|status| [401, 429].contains(status)),
        "{answers:?}"
    );
    assert!(
        answers.contains_key(&429),
        "the flood was throttled: {answers:?}"
    );
    assert!(
        p50(&bearer_times) < Duration::from_millis(100),
        "{bearer_times:?}"
    );
    assert!(
        p50(&cached_times) < Duration::from_millis(100),
        "{cached_times:?}"
    );
    assert!(
        slowest(&bearer_times) < Duration::from_secs(1),
        "{bearer_times:?}"
    );
    assert!(
        slowest(&cached_times) < Duration::from_secs(1),
        "{cached_times:?}"
    );
    assert_eq!(
        runs(&after, "nginx", "failure"),
        runs(&before, "nginx", "failure")
    );
    let ran = runs(&after, "nginx", "success") - runs(&before, "nginx", "success");
    assert!(
        ran >= elapsed.as_secs_f64().floor() - 2.0,
        "ran {ran} times in {elapsed:?}"
    );
    assert!(sample(&after, "nightjar_http_requests_throttled_total", &[]).unwrap() >= 1.0);
    drop(agent);
}

#[tokio::test]
async fn an_address_that_keeps_failing_backs_off_with_retry_after() {
    let agent = RunningAgent::start(load(&protected(4, ""), &[("WEB_TOKEN", TOKEN)])).await;
    let source = attacker(200);
    let mut statuses = Vec::new();
    for i in 0..7 {
        let (status, head, _, _) = request_from(
            source,
            agent.addr,
            "GET",
            "/metrics",
            &basic("ops", &format!("guess{i}")),
        )
        .await;
        if status == 429 {
            assert!(
                head.to_ascii_lowercase().contains("retry-after: "),
                "{head}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[6], 429, "{statuses:?}");
    // Even the right password waits (a cached one too: no oracle); another address does not.
    let (status, _, _, _) = request_from(
        source,
        agent.addr,
        "GET",
        "/metrics",
        &basic("ops", PASSWORD),
    )
    .await;
    assert_eq!(status, 429);
    let (status, _, _, _) = request_from(
        SCRAPER,
        agent.addr,
        "GET",
        "/metrics",
        &basic("ops", PASSWORD),
    )
    .await;
    assert_eq!(status, 200);
    // A bearer token is not throttled.
    let (status, _, _, _) = request_from(
        source,
        agent.addr,
        "GET",
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    agent.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let agent = RunningAgent::start(load(
        "[[check]]\nname = \"a\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1h\"\n",
        &[],
    ))
    .await;
    let mut policy = String::new();
    for path in [
        "/",
        "/checks/a",
        "/checks/nope",
        "/metrics",
        "/api/v1/checks",
        "/-/healthy",
        "/nope",
    ] {
        let (status, original_head, body, _) =
            request_from(SCRAPER, agent.addr, "GET", path, "").await;
        assert!(status == 200 || status == 404, "{path}: {status}");
        let head = original_head.to_ascii_lowercase();
        for expected in [
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "content-security-policy: default-src 'none';",
            "frame-ancestors 'none'",
        ] {
            assert!(head.contains(expected), "{path} lacks {expected}:\n{head}");
        }
        assert!(!head.contains("unsafe-inline"), "{head}");
        if path == "/" {
            policy = original_head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .starts_with("content-security-policy: ")
                        .then(|| line["content-security-policy: ".len()..].to_string())
                })
                .unwrap();
            // The page's own style and script are allowed by their hashes, and nothing is
            // inline elsewhere.
            let between = |open: &str, close: &str| {
                let start = body.find(open).unwrap() + open.len();
                let end = start + body[start..].find(close).unwrap();
                body[start..end].to_string()
            };
            for (inline, directive) in [
                (between("<style>", "</style>"), "style-src"),
                (between("<script>", "</script>"), "script-src"),
            ] {
                use base64::Engine as _;
                let hash = base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    inline.as_bytes(),
                ));
                assert!(
                    policy.contains(&format!("{directive} 'sha256-{hash}'")),
                    "{policy}"
                );
            }
            assert!(!body.contains(" style=\""), "no inline style attributes");
        }
    }
    assert!(!policy.is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn a_cross_site_reload_is_refused_and_a_same_origin_or_scripted_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[check]]\nname = \"a\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1h\"\n",
    );
    let agent = RunningAgent::start_reloadable(&path).await;
    let post = |headers: String| {
        let addr = agent.addr;
        async move {
            let (status, _, body, _) =
                request_from(SCRAPER, addr, "POST", "/-/reload", &headers).await;
            (status, body)
        }
    };
    let (status, body) =
        post("Origin: https://evil.example\r\nContent-Type: text/plain\r\n".to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"https://evil.example\""), "{body}");
    assert!(body.contains("another site"), "{body}");
    let (status, body) = post("Origin: null\r\n".to_string()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post("Sec-Fetch-Site: cross-site\r\n".to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Sec-Fetch-Site"), "{body}");
    // The agent's own page, and curl (no Origin), may reload.
    let (status, body) = post(format!(
        "Origin: http://{}\r\nSec-Fetch-Site: same-origin\r\n",
        agent.addr
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(String::new()).await;
    assert_eq!(status, 200, "{body}");
    agent.stop().await;
}

#[tokio::test]
async fn a_loopback_agent_answers_only_loopback_and_allowed_host_names() {
    let agent = RunningAgent::start(load(
        "[agent]\nallowed_hosts = [\"nightjar.example.com\"]\n\n[[check]]\nname = \"a\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1h\"\n",
        &[],
    ))
    .await;
    let port = agent.addr.port();
    let get = |host: String, path: &'static str| {
        let addr = agent.addr;
        async move {
            let (status, _, body, _) =
                request_from(SCRAPER, addr, "GET", path, &format!("Host: {host}\r\n")).await;
            (status, body)
        }
    };
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        "LOCALHOST".to_string(),
        format!("nightjar.example.com:{port}"),
    ] {
        assert_eq!(get(host.clone(), "/api/v1/checks").await.0, 200, "{host}");
    }
    let (status, body) = get(format!("rebound.evil.example:{port}"), "/api/v1/checks").await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("\"rebound.evil.example:"), "{body}");
    assert!(body.contains("allowed_hosts"), "{body}");
    assert_eq!(
        get(format!("rebound.evil.example:{port}"), "/").await.0,
        421
    );
    // Health and readiness answer any name (orchestrators probe by pod IP).
    assert_eq!(get("10.1.2.3:9465".to_string(), "/-/ready").await.0, 200);
    agent.stop().await;
}

#[tokio::test]
async fn an_agent_on_every_address_answers_any_host_unless_allowed_hosts_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[check]]\nname = \"a\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1h\"\n",
    );
    let (_agent, listen) = run_agent_on(&config, &[], [0, 0, 0, 0]);
    let (status, _, body, _) = request_from(
        SCRAPER,
        listen,
        "GET",
        "/api/v1/checks",
        "Host: agent.example.net\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn at_the_cap_idle_connections_make_room_for_a_fresh_request() {
    raise_fd_limit(1024);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[agent]\nmax_connections = 8\n\n[[check]]\nname = \"a\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"1h\"\n",
    );
    let (agent, listen) = run_agent(&config, &[]);
    let mut idle = Vec::new();
    for n in 0..50u8 {
        idle.push(connect_from(attacker(n + 1), listen).await.unwrap());
    }
    let (status, _, _, took) = request_from(SCRAPER, listen, "GET", "/-/healthy", "").await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let metrics = metrics_of(listen).await;
    assert!(sample(&metrics, "nightjar_http_connections_evicted_total", &[]).unwrap() >= 42.0);
    assert!(sample(&metrics, "nightjar_http_connections", &[]).unwrap() <= 8.0);
    drop(idle);
    drop(agent);
}
