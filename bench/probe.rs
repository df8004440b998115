//! The `/probe` row of `compare`: nightjar and blackbox_exporter serving the same
//! blackbox-style scrapes (`/probe?module=http&target=...`, the same blackbox.yml) at one
//! fixed rate, each scrape one probe run then and there; CPU per probe and peak RSS of each
//! process, read from /proc.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Row, drive, get, start_blackbox, start_nightjar};
use crate::proc::Usage;
use crate::targets::{Process, free_port};

/// The module of the blackbox.yml `compare` writes that the row scrapes.
const MODULE: &str = "http";

/// blackbox_exporter then nightjar, each started on `config` and scraped for `target`.
pub(crate) fn compare_probe(
    dir: &Path,
    config: &Path,
    target: &str,
    rate: f64,
    warmup: f64,
    seconds: f64,
) -> [Row; 2] {
    eprintln!("/probe: blackbox_exporter");
    let (process, listen) = start_blackbox(config);
    let blackbox = measure(
        "blackbox_exporter",
        &process,
        listen,
        target,
        rate,
        warmup,
        seconds,
    );
    drop(process);

    eprintln!("/probe: nightjar");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nightjar_config = dir.join("probe.toml");
    std::fs::write(
        &nightjar_config,
        format!(
            "[agent]\nlisten = \"{listen}\"\nblackbox_config = {:?}\n",
            config.display().to_string()
        ),
    )
    .expect("write the /probe agent's config");
    let (process, _) = start_nightjar(&nightjar_config, listen);
    let nightjar = measure("nightjar", &process, listen, target, rate, warmup, seconds);
    [blackbox, nightjar]
}

/// Scrapes `/probe` on `listen` at `rate` for `warmup`, then for `seconds` measured.
fn measure(
    agent: &'static str,
    process: &Process,
    listen: SocketAddr,
    target: &str,
    rate: f64,
    warmup: f64,
    seconds: f64,
) -> Row {
    let encoded: String = target
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let path = format!("/probe?module={MODULE}&target={encoded}");
    let (status, body) = get(listen, &path);
    assert!(
        status == 200,
        "{agent} answers {path} with {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let url = format!("http://{listen}{path}");
    drive(&url, rate, warmup);
    let before = Usage::of(process.pid());
    let start = Instant::now();
    let (probes, ok) = drive(&url, rate, seconds);
    let elapsed = start.elapsed().max(Duration::from_millis(1));
    let after = Usage::of(process.pid());
    Row {
        agent,
        probes,
        ok,
        seconds: elapsed.as_secs_f64(),
        cpu_seconds: after.cpu_seconds - before.cpu_seconds,
        peak_rss_kib: after.peak_rss_kib,
    }
}

/// The `/probe` table, printed after the per-kind one.
pub(crate) fn print_probe_rows(rows: &[Row; 2]) {
    println!();
    println!(
        "| /probe (module http) | agent | scrapes/s | success | CPU µs/probe | peak RSS MiB | ÷ blackbox |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let blackbox = rows[0].cpu_us_per_probe();
    for row in rows {
        let us = row.cpu_us_per_probe();
        println!(
            "| /probe | {} | {:.1} | {:.1}% | {:.0} | {:.1} | {:.2} |",
            row.agent,
            row.probes as f64 / row.seconds,
            row.ok as f64 * 100.0 / row.probes.max(1) as f64,
            us,
            row.peak_rss_kib as f64 / 1024.0,
            us / blackbox,
        );
    }
}
