//! nightjar's benchmarks. Run through `bench/compare.sh` and `bench/scale.sh`, which install
//! what they need and call `cargo bench --bench nightjar -- <command>`.
//!
//! - `compare`: CPU per probe of nightjar, Prometheus blackbox_exporter and a floor reference
//!   (the same network work with nothing else), per check type, at one fixed probe rate.
//! - `scale`: one agent with many checks (10,000 at 60 s, 1,000 at 1 s): CPU share, memory,
//!   scheduler lag, `/metrics` and status page render time, config load and startup time;
//!   then 50,000 targets of one template from file_sd at 60 s, and a discovery change of
//!   5,000 of them (`fleet.rs`).
//! - `soak`: 1,000 checks against flapping targets for 30 minutes: memory, descriptors,
//!   threads, runtime tasks and counter agreement every minute, and their trend.
//! - `detect`: an outage, a recovery and a flapping target against four detection settings
//!   (three agents each, a real Prometheus with the generated rules): time to the failing
//!   state, to the page and back to passing, and the state changes and pages of the flapping.
//! - `hostile-clients`: one agent under 1,000 idle, 1,000 slowloris and a 50-client bad-login
//!   flood: fresh-scrape latency (bearer and cached basic auth) and check failures per phase.
//!   Its `probe` row: nightjar's `/probe` against blackbox_exporter's, serving the same scrapes.
//! - `floor` and `drive` are the helpers `compare` runs as their own processes.
//!
//! Every figure is read from /proc or from the agent's own metrics; see README, Performance.

#![forbid(unsafe_code)]

mod detect;
mod fleet;
mod hostile;
mod load;
mod probe;
mod proc;
mod soak;
mod targets;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use load::Kind;
use probe::{compare_probe, print_probe_rows};
use proc::Usage;
use targets::{Bind, GrpcServer, Nginx, Pki, Process, free_port, wait_for_tcp};

const NIGHTJAR: &str = env!("CARGO_BIN_EXE_nightjar");
const BLACKBOX: &str = "prometheus-blackbox-exporter";
/// How often Prometheus scrapes nightjar during `compare`; the scrapes count in its share.
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

fn main() {
    // `cargo bench` appends `--bench`; it means nothing here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--bench")
        .collect();
    let Some((command, rest)) = args.split_first() else {
        usage();
    };
    let opts = Opts::parse(rest);
    match command.as_str() {
        "compare" => compare(&opts),
        "scale" => scale(&opts),
        "soak" => soak::soak(&opts),
        "detect" => detect::detect(&opts),
        "hostile-clients" => hostile::hostile_clients(&opts),
        "floor" => {
            let kind = Kind::parse(&opts.text("kind", "http")).unwrap_or_else(|| usage());
            let target: SocketAddr = opts.text("target", "").parse().unwrap_or_else(|_| usage());
            let ca = opts.values.get("ca").map(String::as_str);
            load::floor(
                kind,
                target,
                ca,
                opts.num("rate", 200.0),
                opts.num("warmup", 5.0),
                opts.num("seconds", 20.0),
            );
        }
        "drive" => load::drive(
            &opts.text("url", ""),
            opts.num("rate", 200.0),
            opts.num("seconds", 20.0),
        ),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench nightjar -- compare [--rate 200] [--seconds 20] [--warmup 5] [--kinds http,https,dns,tcp,grpc,icmp,probe]\n\
         \x20      cargo bench --bench nightjar -- scale [--checks 10000] [--interval 60] [--seconds 60] [--fast-checks 1000] [--discovered 50000] [--discovered-change 5000]\n\
         \x20      cargo bench --bench nightjar -- soak [--checks 1000] [--interval 10] [--minutes 30] [--every 60] [--warmup SECONDS] [--remote-write no]\n\
         \x20      cargo bench --bench nightjar -- detect [--minutes 4] [--checks 20] [--quorum-for 5m,1m,1s] [--fail-percent 10]\n\
         \x20      cargo bench --bench nightjar -- hostile-clients [--seconds 10]"
    );
    std::process::exit(2)
}

/// `--key value` options.
struct Opts {
    values: HashMap<String, String>,
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut values = HashMap::new();
        let mut iter = args.iter();
        while let Some(key) = iter.next() {
            let Some(key) = key.strip_prefix("--") else {
                usage()
            };
            let Some(value) = iter.next() else { usage() };
            values.insert(key.to_string(), value.clone());
        }
        Opts { values }
    }

    fn text(&self, key: &str, default: &str) -> String {
        self.values
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    fn num(&self, key: &str, default: f64) -> f64 {
        self.values.get(key).map_or(default, |value| {
            value.parse().unwrap_or_else(|_| {
                eprintln!("--{key} {value}: not a number");
                std::process::exit(2)
            })
        })
    }
}

/// One agent's figures over a measured window.
struct Row {
    agent: &'static str,
    probes: u64,
    ok: u64,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

impl Row {
    fn cpu_us_per_probe(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.probes.max(1) as f64
    }
}

/// A blocking HTTP/1.0 GET on loopback: status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect to the agent");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response with a header");
    let status = std::str::from_utf8(&response[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response.split_off(split + 4))
}

/// The sum of every sample of `name` whose labels contain `having`.
fn sum_of(metrics: &str, name: &str, having: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| line.contains(having))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How long a GET of `path` (`/metrics`, the status page) takes to arrive in full, read as a
/// scraper reads it (into a reused buffer), and its size.
fn timed_get(addr: SocketAddr, path: &str) -> (Duration, usize) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect to the agent");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0;
    loop {
        match stream.read(&mut buffer).expect("read the response") {
            0 => return (start.elapsed(), size),
            n => size += n,
        }
    }
}

fn scrape(addr: SocketAddr) -> String {
    String::from_utf8(get(addr, "/metrics").1).expect("metrics are UTF-8")
}

/// Successful and failed runs so far, from nightjar's SLI counters.
fn runs(metrics: &str) -> (f64, f64) {
    (
        sum_of(metrics, "nightjar_check_runs_total", "result=\"success\""),
        sum_of(metrics, "nightjar_check_runs_total", "result=\"failure\""),
    )
}

fn start_nightjar(config: &Path, listen: SocketAddr) -> (Process, Duration) {
    let start = Instant::now();
    let child = Command::new(NIGHTJAR)
        .args(["run", "--log-level", "warn", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nightjar");
    let process = Process(child);
    loop {
        if TcpStream::connect(listen).is_ok() && get(listen, "/-/ready").0 == 200 {
            return (process, start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nightjar was not ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes a config of `count` checks of `kind` every `interval` seconds.
fn nightjar_config(
    dir: &Path,
    file: &str,
    listen: SocketAddr,
    count: usize,
    interval: f64,
    check: &str,
) -> PathBuf {
    let mut text = format!(
        "[agent]\nlisten = \"{listen}\"\nconcurrency = 4096\n\n[defaults]\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\n",
        (interval * 1000.0) as u64,
        ((interval * 1000.0) as u64).min(5000)
    );
    for idx in 0..count {
        text.push_str(&format!("\n[[check]]\nname = \"c{idx:05}\"\n{check}\n"));
    }
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write config");
    path
}

fn compare(opts: &Opts) {
    let rate = opts.num("rate", 200.0);
    let seconds = opts.num("seconds", 20.0);
    let warmup = opts.num("warmup", 5.0);
    let names = opts.text("kinds", "http,https,dns,tcp,grpc,icmp,probe");
    // `probe`: nightjar's /probe against blackbox_exporter's, both serving scrapes.
    let probe_row = names.split(',').any(|name| name == "probe");
    let kinds: Vec<Kind> = names
        .split(',')
        .filter(|name| *name != "probe")
        .map(|name| Kind::parse(name).unwrap_or_else(|| usage()))
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("nightjar-bench-")
        .tempdir()
        .expect("temp dir");
    let pki = Pki::make(dir.path());
    let nginx = Nginx::start(dir.path(), &pki);
    let bind = Bind::start(dir.path());
    let grpc = kinds.contains(&Kind::Grpc).then(GrpcServer::start);
    let blackbox_config = dir.path().join("blackbox.yml");
    std::fs::write(
        &blackbox_config,
        format!(
            "modules:\n  http:\n    prober: http\n    timeout: 5s\n    http: {{ preferred_ip_protocol: ip4 }}\n  \
             https:\n    prober: http\n    timeout: 5s\n    http: {{ preferred_ip_protocol: ip4, tls_config: {{ ca_file: {ca} }} }}\n  \
             dns:\n    prober: dns\n    timeout: 5s\n    dns: {{ query_name: {q}, query_type: A, transport_protocol: udp, preferred_ip_protocol: ip4 }}\n  \
             tcp:\n    prober: tcp\n    timeout: 5s\n    tcp: {{ preferred_ip_protocol: ip4 }}\n  \
             grpc:\n    prober: grpc\n    timeout: 5s\n    grpc: {{ tls: false, preferred_ip_protocol: ip4 }}\n  \
             icmp:\n    prober: icmp\n    timeout: 5s\n    icmp: {{ preferred_ip_protocol: ip4 }}\n",
            ca = pki.ca.display(),
            q = targets::QUERY_NAME,
        ),
    )
    .expect("write blackbox.yml");

    println!(
        "# {rate} probes/s for {seconds} s after {warmup} s of warm-up; CPU = utime+stime of the agent's process only"
    );
    let mut tables = Vec::new();
    for kind in kinds {
        let (target, blackbox_target, check) = match kind {
            Kind::Http => (
                nginx.http,
                format!("http://{}/", nginx.http),
                format!("type = \"http\"\nurl = \"http://{}/\"", nginx.http),
            ),
            Kind::Https => (
                nginx.https,
                format!("https://{}/", nginx.https),
                format!(
                    "type = \"http\"\nurl = \"https://{}/\"\ntls = {{ ca_file = \"{}\" }}",
                    nginx.https,
                    pki.ca.display()
                ),
            ),
            Kind::Dns => (
                bind.addr,
                bind.addr.to_string(),
                format!(
                    "type = \"dns\"\nquery = \"{}\"\nrecord = \"A\"\nserver = \"{}\"",
                    targets::QUERY_NAME,
                    bind.addr
                ),
            ),
            Kind::Tcp => (
                nginx.http,
                nginx.http.to_string(),
                format!("type = \"tcp\"\ntarget = \"{}\"", nginx.http),
            ),
            Kind::Grpc => {
                let addr = grpc.as_ref().expect("started for grpc").addr;
                (
                    addr,
                    addr.to_string(),
                    format!("type = \"grpc\"\ntarget = \"{addr}\"\nplaintext = true"),
                )
            }
            // One echo request per probe, as blackbox_exporter sends.
            Kind::Icmp => (
                SocketAddr::from(([127, 0, 0, 1], 0)),
                "127.0.0.1".to_string(),
                "type = \"icmp\"\ntarget = \"127.0.0.1\"\ncount = 1".to_string(),
            ),
        };
        eprintln!("{}: floor reference", kind.name());
        let floor = run_floor(kind, target, &pki.ca, rate, warmup, seconds);
        eprintln!("{}: blackbox_exporter", kind.name());
        let blackbox = run_blackbox(
            &blackbox_config,
            kind,
            &blackbox_target,
            rate,
            warmup,
            seconds,
        );
        eprintln!("{}: nightjar", kind.name());
        let nightjar = run_nightjar_at_rate(dir.path(), kind, &check, rate, warmup, seconds);
        tables.push((kind, [floor, blackbox, nightjar]));
    }
    let probe_rows = probe_row.then(|| {
        compare_probe(
            dir.path(),
            &blackbox_config,
            &format!("http://{}/", nginx.http),
            rate,
            warmup,
            seconds,
        )
    });
    if !tables.is_empty() {
        println!();
        println!(
            "| check | agent | probes/s | success | CPU µs/probe | peak RSS MiB | ÷ blackbox | ÷ floor |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
    }
    for (kind, rows) in &tables {
        let blackbox = rows[1].cpu_us_per_probe();
        let floor = rows[0].cpu_us_per_probe();
        for row in rows {
            let us = row.cpu_us_per_probe();
            println!(
                "| {} | {} | {:.1} | {:.1}% | {:.0} | {:.1} | {:.2} | {:.2} |",
                kind.name(),
                row.agent,
                row.probes as f64 / row.seconds,
                row.ok as f64 * 100.0 / row.probes.max(1) as f64,
                us,
                row.peak_rss_kib as f64 / 1024.0,
                us / blackbox,
                us / floor,
            );
        }
    }
    if let Some(rows) = probe_rows {
        print_probe_rows(&rows);
    }
}

fn run_floor(
    kind: Kind,
    target: SocketAddr,
    ca: &Path,
    rate: f64,
    warmup: f64,
    seconds: f64,
) -> Row {
    let me = std::env::current_exe().expect("own path");
    let output = Command::new(me)
        .args([
            "floor",
            "--kind",
            kind.name(),
            "--target",
            &target.to_string(),
            "--ca",
        ])
        .arg(ca)
        .args([
            "--rate",
            &rate.to_string(),
            "--warmup",
            &warmup.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the floor reference");
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert!(
        output.status.success() && fields.len() == 5,
        "floor reference failed: {text}"
    );
    Row {
        agent: "floor (minimal client)",
        probes: fields[0].parse().expect("probes"),
        ok: fields[1].parse().expect("ok"),
        cpu_seconds: fields[2].parse().expect("cpu"),
        seconds: fields[3].parse().expect("seconds"),
        peak_rss_kib: fields[4].parse().expect("rss"),
    }
}

fn drive(url: &str, rate: f64, seconds: f64) -> (u64, u64) {
    let me = std::env::current_exe().expect("own path");
    let output = Command::new(me)
        .args([
            "drive",
            "--url",
            url,
            "--rate",
            &rate.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the load generator");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
}

/// blackbox_exporter on `config`, listening on a free loopback port once it accepts.
pub(crate) fn start_blackbox(config: &Path) -> (Process, SocketAddr) {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(targets::program(BLACKBOX))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start blackbox_exporter");
    let process = Process(child);
    wait_for_tcp(listen, "blackbox_exporter");
    (process, listen)
}

fn run_blackbox(
    config: &Path,
    kind: Kind,
    target: &str,
    rate: f64,
    warmup: f64,
    seconds: f64,
) -> Row {
    let (process, listen) = start_blackbox(config);
    let encoded: String = target
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!(
        "http://{listen}/probe?module={}&target={encoded}",
        kind.name()
    );
    drive(&url, rate, warmup);
    let before = Usage::of(process.pid());
    let start = Instant::now();
    let (probes, ok) = drive(&url, rate, seconds);
    let after = Usage::of(process.pid());
    Row {
        agent: "blackbox_exporter",
        probes,
        ok,
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: after.cpu_seconds - before.cpu_seconds,
        peak_rss_kib: after.peak_rss_kib,
    }
}

fn run_nightjar_at_rate(
    dir: &Path,
    kind: Kind,
    check: &str,
    rate: f64,
    warmup: f64,
    seconds: f64,
) -> Row {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let count = rate.round().max(1.0) as usize;
    let config = nightjar_config(
        dir,
        &format!("{}.toml", kind.name()),
        listen,
        count,
        1.0,
        check,
    );
    let (process, _) = start_nightjar(&config, listen);
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (ok0, failed0) = runs(&scrape(listen));
    let before = Usage::of(process.pid());
    let start = Instant::now();
    let (ok1, failed1) = runs(&scraped_window(listen, seconds));
    let after = Usage::of(process.pid());
    Row {
        agent: "nightjar",
        probes: (ok1 + failed1 - ok0 - failed0) as u64,
        ok: (ok1 - ok0) as u64,
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: after.cpu_seconds - before.cpu_seconds,
        peak_rss_kib: after.peak_rss_kib,
    }
}

/// Waits `seconds` while Prometheus scrapes every 15 s (the scrapes are part of what nightjar
/// costs), and returns the last scrape, taken at the end.
fn scraped_window(listen: SocketAddr, seconds: f64) -> String {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut next_scrape = start + SCRAPE_EVERY;
    while next_scrape < end {
        std::thread::sleep(next_scrape.saturating_duration_since(Instant::now()));
        scrape(listen);
        next_scrape += SCRAPE_EVERY;
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    scrape(listen)
}

/// Cumulative `le` buckets of a histogram with no labels but `le` (besides agent labels).
fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    metrics
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, line.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// `histogram_quantile` over the difference of two scrapes' buckets.
fn quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            (
                *le,
                n - before
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0.0, |(_, m)| *m),
            )
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, count) in delta {
        if count >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let within = (rank - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
            return lower.0 + (le - lower.0) * within;
        }
        lower = (le, count);
    }
    f64::NAN
}

fn scale(opts: &Opts) {
    let checks = opts.num("checks", 10_000.0) as usize;
    let interval = opts.num("interval", 60.0);
    let seconds = opts.num("seconds", interval);
    let fast_checks = opts.num("fast-checks", 1_000.0) as usize;
    let dir = tempfile::Builder::new()
        .prefix("nightjar-scale-")
        .tempdir()
        .expect("temp dir");
    let pki = Pki::make(dir.path());
    let nginx = Nginx::start(dir.path(), &pki);
    let check = format!("type = \"http\"\nurl = \"http://{}/\"", nginx.http);
    println!(
        "| scenario | load+validate | startup | CPU % of one core | probes/s | success | RSS MiB (peak) | lag p50 | lag p99 | /metrics | /metrics size | status page |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (count, every, window, warmup) in [
        (checks, interval, seconds, interval + 5.0),
        (fast_checks, 1.0, seconds.min(30.0), 5.0),
    ] {
        if count == 0 {
            continue;
        }
        eprintln!("scale: {count} checks every {every} s (warm-up {warmup} s, window {window} s)");
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = nightjar_config(
            dir.path(),
            &format!("scale-{count}.toml"),
            listen,
            count,
            every,
            &check,
        );
        let validate_start = Instant::now();
        let validated = Command::new(NIGHTJAR)
            .args(["validate", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .status()
            .expect("run nightjar validate");
        let validate = validate_start.elapsed();
        assert!(validated.success(), "the generated config is invalid");
        let (process, startup) = start_nightjar(&config, listen);
        std::thread::sleep(Duration::from_secs_f64(warmup));
        let first = scrape(listen);
        let lag0 = buckets(&first, "nightjar_scheduler_lag_seconds");
        let (ok0, failed0) = runs(&first);
        let before = Usage::of(process.pid());
        let start = Instant::now();
        let last = scraped_window(listen, window);
        let after = Usage::of(process.pid());
        let elapsed = start.elapsed().as_secs_f64();
        let lag1 = buckets(&last, "nightjar_scheduler_lag_seconds");
        let (ok1, failed1) = runs(&last);
        let median = |path: &str| {
            let mut times: Vec<(Duration, usize)> =
                (0..5).map(|_| timed_get(listen, path)).collect();
            times.sort();
            times[2]
        };
        let (render, size) = median("/metrics");
        // The status page sorts every check and renders one page of 100.
        let (page, page_size) = median("/");
        let peak = Usage::of(process.pid()).peak_rss_kib;
        let probes = ok1 + failed1 - ok0 - failed0;
        println!(
            "| {count} checks every {every} s | {:.0} ms | {:.0} ms | {:.2}% | {:.1} | {:.1}% | {:.1} ({:.1}) | {:.2} ms | {:.2} ms | {:.0} ms | {:.1} MiB | {:.1} ms, {:.0} KiB |",
            validate.as_secs_f64() * 1e3,
            startup.as_secs_f64() * 1e3,
            (after.cpu_seconds - before.cpu_seconds) * 100.0 / elapsed,
            probes / elapsed,
            (ok1 - ok0) * 100.0 / probes.max(1.0),
            after.rss_kib as f64 / 1024.0,
            peak as f64 / 1024.0,
            quantile(0.5, &lag0, &lag1) * 1e3,
            quantile(0.99, &lag0, &lag1) * 1e3,
            render.as_secs_f64() * 1e3,
            size as f64 / (1024.0 * 1024.0),
            page.as_secs_f64() * 1e3,
            page_size as f64 / 1024.0,
        );
        drop(process);
    }
    fleet::fleet(opts, dir.path(), &pki, &nginx);
}
