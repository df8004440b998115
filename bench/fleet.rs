//! `scale`'s fleet run: one template whose 50,000 targets come from a file_sd file, every
//! 60 s, against nginx on loopback. Prints CPU share, RSS, scheduler lag, and what a
//! discovery change touching 5,000 targets costs: the time from the file's rename to the
//! agent running the new targets without the old ones, and the lag around it. The floor
//! reference (the same requests with nothing else) runs at the same rate for comparison.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::proc::Usage;
use crate::targets::{Nginx, Pki, free_port};
use crate::{Opts, buckets, get, quantile, run_floor, scrape, start_nightjar};

/// Writes the file_sd file with the targets `range` (as a tool does: aside, then renamed).
fn write_targets(path: &Path, nginx: SocketAddr, range: std::ops::Range<usize>) {
    let mut text = String::from("[{\"labels\": {\"pool\": \"bench\"}, \"targets\": [");
    for (idx, n) in range.enumerate() {
        if idx > 0 {
            text.push(',');
        }
        text.push_str(&format!("\"http://{nginx}/t/{n}\""));
    }
    text.push_str("]}]\n");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write file_sd");
    std::fs::rename(&tmp, path).expect("rename file_sd");
}

/// Whether the agent runs the target `n` (its check's API entry exists).
fn runs(listen: SocketAddr, nginx: SocketAddr, n: usize) -> bool {
    let name = format!("fleet@http://{nginx}/t/{n}");
    let path: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    get(listen, &format!("/api/v1/checks/{path}")).0 == 200
}

/// Polls `done` every 5 ms for up to `limit`; the time it took.
fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// The scheduler's lag p99 between two scrapes, in ms.
fn lag_p99(before: &str, after: &str) -> f64 {
    let name = "nightjar_scheduler_lag_seconds";
    quantile(0.99, &buckets(before, name), &buckets(after, name)) * 1e3
}

/// Long because it is one measurement told in order: start, warm up, measure a window,
/// change the targets, measure again, print.
pub fn fleet(opts: &Opts, dir: &Path, pki: &Pki, nginx: &Nginx) {
    let targets = opts.num("discovered", 50_000.0) as usize;
    let changed = opts.num("discovered-change", 5_000.0) as usize;
    let seconds = opts.num("seconds", 60.0);
    if targets == 0 {
        return;
    }
    let interval = 60.0;
    let rate = targets as f64 / interval;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let sd = dir.join("fleet-sd");
    std::fs::create_dir_all(&sd).expect("sd dir");
    let file = sd.join("targets.json");
    write_targets(&file, nginx.http, 0..targets);
    let config = dir.join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"{listen}\"\nconcurrency = 4096\n\n[[check]]\nname = \"fleet\"\ntype = \"http\"\ninterval = \"60s\"\ntimeout = \"5s\"\ntargets_from = [{{ file = \"fleet-sd/*.json\" }}]\n"
        ),
    )
    .expect("write config");
    eprintln!("fleet: {targets} targets from file_sd every 60 s");
    let (process, _) = start_nightjar(&config, listen);
    let applied = until(Duration::from_secs(120), "the discovered targets", || {
        runs(listen, nginx.http, targets - 1)
    });
    // Every target has run once (early runs spread over the first minute), then a slot.
    std::thread::sleep(Duration::from_secs_f64(interval + 5.0));
    let scrape_start = Instant::now();
    let first = scrape(listen);
    let scrape_time = scrape_start.elapsed();
    let before = Usage::of(process.pid());
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let after = Usage::of(process.pid());
    let elapsed = start.elapsed().as_secs_f64();
    let steady = scrape(listen);
    let cpu = (after.cpu_seconds - before.cpu_seconds) * 100.0 / elapsed;
    let probes = |metrics: &str| crate::runs(metrics).0 + crate::runs(metrics).1;
    let measured = probes(&steady) - probes(&first);
    let success = crate::runs(&steady).0 - crate::runs(&first).0;

    // 5,000 targets go and 5,000 new ones come, in one rename.
    let change_start = Instant::now();
    write_targets(&file, nginx.http, changed..targets + changed);
    let took = until(Duration::from_secs(30), "the discovery change", || {
        runs(listen, nginx.http, targets + changed - 1) && !runs(listen, nginx.http, 0)
    });
    std::thread::sleep(Duration::from_secs(20).saturating_sub(change_start.elapsed()));
    let during = scrape(listen);
    let peak = Usage::of(process.pid()).peak_rss_kib;
    let floor = run_floor(
        crate::load::Kind::Http,
        nginx.http,
        &pki.ca,
        rate,
        5.0,
        seconds.min(30.0),
    );
    let floor_cpu = floor.cpu_seconds * 100.0 / floor.seconds;
    println!();
    println!(
        "| fleet | targets | discovered in | CPU % of one core | floor reference CPU % | probes/s | success | RSS MiB (peak) | lag p50 | lag p99 | /metrics | 5,000-target change applied in | lag p99 around the change |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| file_sd, every 60 s | {targets} | {:.2} s | {cpu:.1}% | {floor_cpu:.1}% | {:.1} | {:.1}% | {:.1} ({:.1}) | {:.2} ms | {:.2} ms | {:.1} s, {:.0} MiB | {:.0} ms | {:.2} ms |",
        applied.as_secs_f64(),
        measured / elapsed,
        success * 100.0 / measured.max(1.0),
        after.rss_kib as f64 / 1024.0,
        peak as f64 / 1024.0,
        quantile(
            0.5,
            &buckets(&first, "nightjar_scheduler_lag_seconds"),
            &buckets(&steady, "nightjar_scheduler_lag_seconds")
        ) * 1e3,
        lag_p99(&first, &steady),
        scrape_time.as_secs_f64(),
        first.len() as f64 / (1024.0 * 1024.0),
        took.as_secs_f64() * 1e3,
        lag_p99(&steady, &during),
    );
    drop(process);
}
