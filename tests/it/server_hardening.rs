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

/// Fresh `/metrics` scrapes every 100 ms until `until` resolves; their durations and what
/// `until` gave.
async fn scrape_while<T>(
    listen: SocketAddr,
    until: impl std::future::Future<Output = T>,
) -> (Vec<Duration>, T) {
    let mut took = Vec::new();
    tokio::pin!(until);
    loop {
        let (status, _, _, duration) = request_from(SCRAPER, listen, "GET", "/metrics", "").await;
        assert_eq!(status, 200);
        took.push(duration);
        tokio::select! {
            value = &mut until => return (took, value),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

fn slowest(durations: &[Duration]) -> Duration {
    durations.iter().copied().max().unwrap_or_default()
}

/// The `q` quantile (0 to 1) of `durations`, nearest rank.
fn quantile(durations: &[Duration], q: f64) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs `work` on a thread of its own with its own runtime, so the hostile clients it drives
/// never share the scraper's runtime or its timing.
fn on_own_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for hostile clients")
            .block_on(work)
    })
}

/// Whether `ran` runs of a check every second are on schedule over `elapsed`: a loaded
/// machine may delay a run past the end of the window, or start one late, not skip many.
fn on_schedule(ran: f64, elapsed: Duration) -> bool {
    ran >= (elapsed.as_secs_f64() * 0.8).floor() - 2.0
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

    // The hostile clients, on their own thread: a thousand connections that never send a
    // byte, then a thousand more that send a request head a header line at a time, every
    // 300 ms, all kept open until the end.
    let (idle_opened, idle_open) = tokio::sync::oneshot::channel::<usize>();
    let (go_slow, slow_go) = tokio::sync::oneshot::channel::<()>();
    let (slow_done, slow_finished) = tokio::sync::oneshot::channel::<usize>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let hostile = on_own_thread(async move {
        let mut idle = Vec::new();
        for n in 0..1000 {
            if let Ok(stream) = connect_from(attacker((n % 250) as u8 + 1), listen).await {
                idle.push(stream);
            }
        }
        let _ = idle_opened.send(idle.len());
        let _ = slow_go.await;
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
        let _ = slow_done.send(lines);
        let _ = released.await;
        drop((idle, slow));
    });

    // Fresh scrapes while the idle connections open, and a while (2 s) with all of them open.
    let (idle_scrapes, opened) = scrape_while(listen, async {
        let opened = idle_open.await.expect("the idle connections opened");
        tokio::time::sleep(Duration::from_secs(2)).await;
        opened
    })
    .await;
    assert_eq!(opened, 1000, "the kernel accepted every connection");
    // Fresh scrapes while the slowloris connections open and trickle.
    let _ = go_slow.send(());
    let (slow_scrapes, trickled) = scrape_while(listen, async {
        slow_finished.await.expect("the slowloris clients ran")
    })
    .await;
    assert!(trickled > 0);
    let elapsed = started.elapsed();
    let _ = release.send(());
    hostile.join().expect("the hostile clients' thread");

    let after = metrics_of(listen).await;
    for check in ["nginx", "self"] {
        assert_eq!(
            runs(&after, check, "failure"),
            runs(&before, check, "failure"),
            "{check} failed during the flood:\n{after}"
        );
        let ran = runs(&after, check, "success") - runs(&before, check, "success");
        assert!(
            on_schedule(ran, elapsed),
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

/// A `/metrics` client from `source` that reads slowly but steadily (up to 64 KiB every
/// 200 ms, so the agent's writes never stall for its write timeout), adding what it reads to
/// `read`, until the answer ends.
async fn steady_reader(
    source: IpAddr,
    listen: SocketAddr,
    read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::io::Result<()> {
    let mut stream = connect_from(source, listen).await?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match stream.read(&mut buffer).await? {
            0 => return Ok(()),
            n => read.fetch_add(n, std::sync::atomic::Ordering::Relaxed),
        };
    }
}

fn counter(metrics: &str, name: &str) -> f64 {
    sample(metrics, name, &[]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_reader_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Every series at 0 from load (the full set), so the exposition is large before any run.
    let config = write_config(
        dir.path(),
        &format!("[agent]\nmetrics = \"full\"\n\n{}", many_checks(4000, "")),
    );
    let (agent, listen) = run_agent(&config, &[]);
    let size = metrics_of(listen).await.len();
    assert!(
        size > 8 << 20,
        "the exposition ({size} bytes) outgrows socket buffers"
    );
    let mut stalled = stalled_reader(listen).await;
    let started = Instant::now();
    let mut status_line = [0u8; 12];
    stalled.read_exact(&mut status_line).await.unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 200");
    // Fresh scrapes are served meanwhile, until the agent gives up on the stalled one (which
    // it counts): its writes must have made no progress for the write timeout (10 s).
    let cut_off = eventually(
        Duration::from_secs(40),
        "the stalled reader to be cut off",
        || async {
            let metrics = metrics_of(listen).await;
            assert!(metrics.contains("nightjar_build_info"));
            (counter(&metrics, "nightjar_http_connections_timed_out_total") >= 1.0)
                .then(|| started.elapsed())
        },
    )
    .await;
    assert!(cut_off >= Duration::from_secs(10), "{cut_off:?}");
    // Its stream ends (with a reset) before the whole exposition came through.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut sink = vec![0u8; 1 << 16];
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
    eprintln!("stalled reader cut off after {cut_off:?} having received {drained} of {size} bytes");
    assert!(
        drained < size,
        "the whole exposition fit the buffers; no stall"
    );
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_busy_connection_of_the_address_holding_the_most_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[agent]\nmax_connections = 2\n\n{}", many_checks(4000, "")),
    );
    let (agent, listen) = run_agent(&config, &[]);
    // Two slow but steady /metrics readers from one address hold both connections.
    let progress: Vec<_> = (0..2)
        .map(|_| std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)))
        .collect();
    let first = tokio::spawn(steady_reader(SCRAPER, listen, progress[0].clone()));
    eventually(
        Duration::from_secs(20),
        "the first reader to read",
        || async { (progress[0].load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(()) },
    )
    .await;
    let second = tokio::spawn(steady_reader(SCRAPER, listen, progress[1].clone()));
    eventually(
        Duration::from_secs(20),
        "both readers to read 1 MiB",
        || async {
            progress
                .iter()
                .all(|read| read.load(std::sync::atomic::Ordering::Relaxed) > 1 << 20)
                .then_some(())
        },
    )
    .await;
    // A third connection from the same address is refused (503, or a reset if the request
    // was still unread when the agent closed it): an address does not push itself out.
    let mut third = connect_from(SCRAPER, listen).await.unwrap();
    let _ = third
        .write_all(format!("GET /-/healthy HTTP/1.1\r\nHost: {listen}\r\n\r\n").as_bytes())
        .await;
    let mut answer = Vec::new();
    match third.read_to_end(&mut answer).await {
        Ok(_) => {
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            assert!(text.starts_with("http/1.1 503"), "{text}");
            assert!(text.contains("retry-after: 1"), "{text}");
            assert!(text.contains("x-content-type-options: nosniff"), "{text}");
            assert!(text.contains("content-security-policy: "), "{text}");
        }
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
    }
    assert!(!first.is_finished() && !second.is_finished());
    // One from another address takes the place of the first reader, the one busy longest
    // (both have been busy for over 2 s: 1 MiB at 320 KiB/s at most).
    let (status, _, body, took) = request_from(attacker(1), listen, "GET", "/-/healthy", "").await;
    assert_eq!(status, 200, "{body}");
    let first = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("the first reader was cut off")
        .unwrap();
    assert!(
        first
            .as_ref()
            .is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionReset),
        "{first:?}"
    );
    assert!(!second.is_finished(), "the second reader goes on");
    eprintln!("a new client's request at the cap of busy connections took {took:?}");
    second.abort();
    let after = eventually(
        Duration::from_secs(20),
        "a connection to scrape",
        || async {
            let (status, _, body, _) =
                request_from(attacker(2), listen, "GET", "/metrics", "").await;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert!(counter(&after, "nightjar_http_connections_refused_total") >= 1.0);
    assert!(counter(&after, "nightjar_http_connections_evicted_total") >= 1.0);
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_but_steady_metrics_readers_from_one_address_do_not_lock_out_a_fresh_scrape() {
    raise_fd_limit(1024);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[agent]\nmax_connections = 16\n\n{}", many_checks(4000, "")),
    );
    let (agent, listen) = run_agent(&config, &[]);
    let size = metrics_of(listen).await.len();
    // Sixteen clients on one address, on their own thread, each asking for /metrics again as
    // soon as an answer ends (a 503 included) and reading it slowly but steadily.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hostile = on_own_thread({
        let (read, stop) = (read.clone(), stop.clone());
        async move {
            let mut readers = tokio::task::JoinSet::new();
            for _ in 0..16 {
                let (read, stop) = (read.clone(), stop.clone());
                readers.spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if steady_reader(attacker(1), listen, read.clone())
                            .await
                            .is_err()
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                });
            }
            while readers.join_next().await.is_some() {}
        }
    });
    // Until the four renders they hold have gone on for a while (4 MiB at 16 × 320 KiB/s at
    // most: over 0.8 s; at most four of the sixteen are answered at a time).
    eventually(
        Duration::from_secs(30),
        "the readers to read 8 MiB",
        || async { (read.load(std::sync::atomic::Ordering::Relaxed) > 8 << 20).then_some(()) },
    )
    .await;
    let mut took = Vec::new();
    for _ in 0..3 {
        let (status, _, body, duration) =
            request_from(SCRAPER, listen, "GET", "/metrics", "").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("nightjar_build_info") && body.len() > size / 2,
            "a whole exposition: {} bytes",
            body.len()
        );
        took.push(duration);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let after = metrics_of(listen).await;
    eprintln!(
        "fresh scrapes among 16 slow readers: {took:?}; evicted {}, refused {}, timed out {}",
        counter(&after, "nightjar_http_connections_evicted_total"),
        counter(&after, "nightjar_http_connections_refused_total"),
        counter(&after, "nightjar_http_connections_timed_out_total"),
    );
    assert!(counter(&after, "nightjar_http_connections_evicted_total") >= 1.0);
    drop(agent);
    hostile.join().expect("the readers' thread");
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
    // Cost 10: each verification is tens of milliseconds of work even in a release build, so
    // a scheduling delay of a few milliseconds is small beside it.
    let config = write_config(dir.path(), &protected(10, ""));
    let (agent, listen) = run_agent(&config, &[("WEB_TOKEN", TOKEN)]);
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // 25 of each, interleaved (the order alternating, so neither kind always goes first),
    // each from its own address so no back-off applies; medians compared.
    for n in 0..25u8 {
        let mut pair = [("ops", &mut known), ("mallory", &mut unknown)];
        if n % 2 == 1 {
            pair.reverse();
        }
        for (i, (user, times)) in pair.into_iter().enumerate() {
            let source = attacker(2 * n + i as u8 + 1);
            let (status, _, _, took) =
                request_from(source, listen, "GET", "/metrics", &basic(user, "wrong")).await;
            assert_eq!(status, 401);
            times.push(took);
        }
    }
    let (known, unknown) = (median(known), median(unknown));
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    eprintln!(
        "median 401 of 25 at cost 10: known user {known:?}, unknown user {unknown:?} (ratio {ratio:.2})"
    );
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

    // Fifty clients, each on its own address, sending wrong passwords as fast as answered,
    // on a thread and runtime of their own.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = on_own_thread({
        let stop = stop.clone();
        async move {
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
            let mut answers = std::collections::BTreeMap::<u16, usize>::new();
            while let Some(counts) = flood.join_next().await {
                for (status, count) in counts.expect("a flood client") {
                    *answers.entry(status).or_default() += count;
                }
            }
            answers
        }
    });
    let mut bearer_times = Vec::new();
    let mut cached_times = Vec::new();
    while started.elapsed() < Duration::from_secs(8) || bearer_times.len() < 20 {
        bearer_times.push(scrape(bearer.clone()).await.1);
        cached_times.push(scrape(basic("ops", PASSWORD)).await.1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = tokio::task::spawn_blocking(move || flood.join())
        .await
        .unwrap()
        .expect("the flood's thread");
    let elapsed = started.elapsed();
    let (after, _) = scrape(bearer.clone()).await;
    eprintln!(
        "bad-login flood ({answers:?}): {} bearer scrapes p50 {:?} p90 {:?} max {:?}; {} cached basic p50 {:?} p90 {:?} max {:?}",
        bearer_times.len(),
        quantile(&bearer_times, 0.5),
        quantile(&bearer_times, 0.9),
        slowest(&bearer_times),
        cached_times.len(),
        quantile(&cached_times, 0.5),
        quantile(&cached_times, 0.9),
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
    // Not waiting behind the flood's bcrypt work: a scrape queued behind 50 clients' password
    // checks takes seconds. How fast they are (about a millisecond) is measured by
    // `cargo bench --bench nightjar -- hostile-clients`, not asserted here, where a loaded CI machine decides timings.
    assert!(
        quantile(&bearer_times, 0.9) < Duration::from_secs(1),
        "{bearer_times:?}"
    );
    assert!(
        quantile(&cached_times, 0.9) < Duration::from_secs(1),
        "{cached_times:?}"
    );
    assert_eq!(
        runs(&after, "nginx", "failure"),
        runs(&before, "nginx", "failure")
    );
    let ran = runs(&after, "nginx", "success") - runs(&before, "nginx", "success");
    assert!(on_schedule(ran, elapsed), "ran {ran} times in {elapsed:?}");
    assert!(sample(&after, "nightjar_http_requests_throttled_total", &[]).unwrap() >= 1.0);
    drop(agent);
}

/// The value of `head`'s Retry-After header, in seconds.
fn retry_after(head: &str) -> Option<u64> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())?
    })
}

#[tokio::test]
async fn an_address_that_keeps_failing_backs_off_with_retry_after() {
    let agent = RunningAgent::start(load(&protected(4, ""), &[("WEB_TOKEN", TOKEN)])).await;
    let source = attacker(200);
    let wrong = |i: usize| {
        let addr = agent.addr;
        async move {
            let sent = Instant::now();
            let (status, head, _, _) = request_from(
                source,
                addr,
                "GET",
                "/metrics",
                &basic("ops", &format!("guess{i}")),
            )
            .await;
            (status, retry_after(&head), sent)
        }
    };
    // Five failures are free.
    for i in 0..5 {
        assert_eq!(wrong(i).await.0, 401);
    }
    // Then the address backs off: each failure that gets through doubles the wait (1 s, 2 s,
    // 4 s, ...), so wrong guesses sent back to back meet a 429 within a few, whatever the
    // machine's speed. Its Retry-After is at least 1 s and at most 60 s.
    let mut i = 5;
    loop {
        let (status, wait, _) = wrong(i).await;
        i += 1;
        match status {
            401 => assert!(i < 12, "no back-off after {i} failures"),
            429 => {
                let wait = wait.expect("a Retry-After");
                assert!((1..=60).contains(&wait), "{wait}");
                break;
            }
            other => panic!("{other}"),
        }
    }
    // While it backs off, even the right password waits (a cached one too: no oracle). The
    // proof needs the right password checked inside a back-off: a 429 saying "retry in R s"
    // left more than R - 1 s, so a right password answered within R - 1 s of that 429's
    // request was checked inside it. Slower than that, the probe says nothing; try again.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "no conclusive probe of the back-off"
        );
        let (status, wait, sent) = wrong(i).await;
        i += 1;
        let Some(wait) = wait.filter(|&wait| status == 429 && wait >= 2) else {
            // A failure that got through (escalating the back-off), or one about to end.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (status, _, _, _) = request_from(
            source,
            agent.addr,
            "GET",
            "/metrics",
            &basic("ops", PASSWORD),
        )
        .await;
        if sent.elapsed() < Duration::from_secs(wait - 1) {
            assert_eq!(status, 429, "the right password got through a back-off");
            break;
        }
    }
    // Another address is not throttled.
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
    // A Host that is not visible ASCII names nothing answered (it is not taken for a request
    // without Host), and an absolute-form target must name an answered host too.
    let (status, _, body, _) = request_from(
        SCRAPER,
        agent.addr,
        "GET",
        "/api/v1/checks",
        &format!("Host: localhost\u{e9}:{port}\r\n"),
    )
    .await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("localhost\u{e9}"), "{body}");
    let (status, _, body, _) = request_from(
        SCRAPER,
        agent.addr,
        "GET",
        &format!("http://rebound.evil.example:{port}/api/v1/checks"),
        &format!("Host: localhost:{port}\r\n"),
    )
    .await;
    assert_eq!(status, 421, "{body}");
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
