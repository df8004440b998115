//! `hostile-clients`: one agent (basic auth at bcrypt cost 10 and a bearer token, one check of
//! its own health every second) under hostile clients, phase by phase: none, 1,000 idle
//! connections, 1,000 slowloris connections (a header line every 500 ms), and 50 clients
//! sending wrong passwords, each from its own loopback address. For each phase: fresh
//! `/metrics` scrapes with the bearer token and with a remembered basic-auth password (p50,
//! p99, max), and the check's failures.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::Opts;
use crate::targets::{Process, free_port};

const TOKEN: &str = "bench-token-0123456789abcdef0123456789";
const PASSWORD: &str = "bench-Pa55-word";

pub fn hostile_clients(opts: &Opts) {
    raise_fd_limit();
    let seconds = opts.num("seconds", 10.0);
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = write_config(dir.path(), listen);
    let agent = start(&config, listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Remember the basic-auth password once, as a scraper's first request would.
        let (status, _) = request(SCRAPER, listen, &basic("ops", PASSWORD)).await;
        assert_eq!(status, 200);
        println!(
            "{:<26} {:>24} {:>24} {:>9} {:>14}",
            "phase",
            "bearer p50/p99/max ms",
            "cached p50/p99/max ms",
            "failures",
            "clients' answers"
        );
        for phase in [
            "none",
            "1,000 idle",
            "1,000 slowloris",
            "50-client bad logins",
        ] {
            let stop = Arc::new(AtomicBool::new(false));
            let answers = Arc::new(Answers::default());
            let load = tokio::spawn(hostile(phase, listen, stop.clone(), answers.clone()));
            // Let the clients arrive.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let before = failures(listen).await;
            let (mut bearer, mut cached) = (Vec::new(), Vec::new());
            let started = Instant::now();
            while started.elapsed().as_secs_f64() < seconds {
                bearer.push(timed(listen, &format!("Authorization: Bearer {TOKEN}\r\n")).await);
                cached.push(timed(listen, &basic("ops", PASSWORD)).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let failed = failures(listen).await - before;
            stop.store(true, Ordering::Relaxed);
            let _ = load.await;
            println!(
                "{phase:<26} {:>24} {:>24} {failed:>9} {:>14}",
                summary(&mut bearer),
                summary(&mut cached),
                answers.text()
            );
        }
    });
    drop(agent);
}

const SCRAPER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn attacker(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, (n % 250) as u8 + 1))
}

fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn write_config(dir: &Path, listen: SocketAddr) -> std::path::PathBuf {
    let text = format!(
        "[agent]\nlisten = \"{listen}\"\nbasic_auth_users = {{ ops = \"{}\" }}\nbearer_token = \"${{env:BENCH_TOKEN}}\"\n\n\
[[check]]\nname = \"self\"\ntype = \"http\"\nurl = \"http://{listen}/-/healthy\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n",
        bcrypt::hash(PASSWORD, 10).expect("hash")
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn start(config: &Path, listen: SocketAddr) -> Process {
    let child = std::process::Command::new(crate::NIGHTJAR)
        .args(["run", "--log-level", "warn", "--config"])
        .arg(config)
        .env("BENCH_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start nightjar");
    crate::targets::wait_for_tcp(listen, "nightjar");
    Process(child)
}

async fn connect(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// A GET of `/metrics` with `headers`: status and body.
async fn request(source: IpAddr, to: SocketAddr, headers: &str) -> (u16, String) {
    let Ok(mut stream) = connect(source, to).await else {
        return (0, String::new());
    };
    let text = format!("GET /metrics HTTP/1.1\r\nHost: {to}\r\n{headers}Connection: close\r\n\r\n");
    if stream.write_all(text.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn timed(to: SocketAddr, headers: &str) -> Duration {
    let started = Instant::now();
    let (status, _) = request(SCRAPER, to, headers).await;
    assert_eq!(status, 200, "a scrape failed");
    started.elapsed()
}

async fn failures(to: SocketAddr) -> f64 {
    let (_, text) = request(SCRAPER, to, &format!("Authorization: Bearer {TOKEN}\r\n")).await;
    crate::sum_of(&text, "nightjar_check_runs_total", "result=\"failure\"")
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("{:.1} / {:.1} / {:.1}", at(0.5), at(0.99), at(1.0))
}

/// What the hostile clients were answered: 401s and 429s (the flood only).
#[derive(Default)]
struct Answers {
    unauthorized: AtomicUsize,
    throttled: AtomicUsize,
}

impl Answers {
    fn text(&self) -> String {
        let (u, t) = (
            self.unauthorized.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
        );
        if u + t == 0 {
            "-".to_string()
        } else {
            format!("{u}×401 {t}×429")
        }
    }
}

/// Runs the phase's hostile clients until `stop`.
async fn hostile(
    phase: &'static str,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
) {
    match phase {
        "1,000 idle" | "1,000 slowloris" => {
            let slow = phase.contains("slowloris");
            let mut held = Vec::new();
            for n in 0..1000 {
                if let Ok(mut stream) = connect(attacker(n), to).await {
                    if slow {
                        let _ = stream
                            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
                            .await;
                    }
                    held.push(stream);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if slow {
                    for stream in &mut held {
                        let _ = stream.write_all(b"X-Slow: 1\r\n").await;
                    }
                }
            }
        }
        "50-client bad logins" => {
            let mut clients = tokio::task::JoinSet::new();
            for n in 0..50 {
                let (stop, answers) = (stop.clone(), answers.clone());
                clients.spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (status, _) =
                            request(attacker(n), to, &basic("ops", &format!("guess{i}"))).await;
                        match status {
                            401 => answers.unauthorized.fetch_add(1, Ordering::Relaxed),
                            429 => answers.throttled.fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                        i += 1;
                    }
                });
            }
            while clients.join_next().await.is_some() {}
        }
        _ => {}
    }
}
