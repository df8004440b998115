//! `soak`: one agent with many checks against targets that flap, for a long time. Every
//! sample period it prints the agent's resident memory, open file descriptors, threads and
//! runtime tasks, the runs done, and whether every check's counters agree with each other;
//! at the end, the trend of each after the warm-up. Exits 1 on growth or disagreement.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::proc::Usage;
use crate::targets::{Nginx, Pki, free_port};
use crate::{Opts, scrape, start_nightjar};

/// Files under `/flip/`; file `k` appears and disappears every `(k + 1) * 7` seconds.
const FLIPPERS: usize = 10;

/// The value of label `name` in a series line.
fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Per check: (successful runs, their duration histogram's count, failures by reason minus
/// failed runs). They must agree.
fn consistency(metrics: &str) -> (usize, Vec<String>) {
    let mut per: HashMap<&str, [f64; 3]> = HashMap::new();
    for line in metrics.lines() {
        let slot = if line.starts_with("nightjar_check_runs_total{") {
            0
        } else if line.starts_with("nightjar_check_duration_seconds_count{") {
            1
        } else if line.starts_with("nightjar_check_failures_total{") {
            2
        } else {
            continue;
        };
        let Some(check) = label(line, "check") else {
            continue;
        };
        let entry = per.entry(check).or_default();
        let failed = label(line, "result") == Some("failure");
        if slot == 0 && failed {
            // Failures are also counted by reason: compare against the failure runs.
            entry[2] -= value(line);
        } else if slot != 1 || !failed {
            // The histogram of successful runs against their count (lean metrics have no
            // histogram of failed runs).
            entry[slot] += value(line);
        }
    }
    // A scrape renders family after family while checks keep running, so a run that ends
    // between two families shows in one and not yet in the other: a difference of one is a
    // run in flight, more is a bug.
    let bad = per
        .iter()
        .filter(|(_, [runs, count, failures_minus_failed])| {
            (runs - count).abs() > 1.0 || failures_minus_failed.abs() > 1.0
        })
        .map(|(check, counts)| format!("{check}: {counts:?}"))
        .collect();
    (per.len(), bad)
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .map_or(f64::NAN, value)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Least-squares slope of `ys` against `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

pub fn soak(opts: &Opts) {
    let checks = opts.num("checks", 1000.0) as usize;
    let interval = opts.num("interval", 10.0);
    let minutes = opts.num("minutes", 30.0);
    let every = opts.num("every", 60.0);
    let warmup = opts.num("warmup", (minutes * 60.0 / 6.0).min(300.0));
    let dir = tempfile::Builder::new()
        .prefix("nightjar-soak-")
        .tempdir()
        .expect("temp dir");
    let pki = Pki::make(dir.path());
    let nginx = Nginx::start(dir.path(), &pki);

    // Flapping targets: a thread adds and removes the files.
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let flip = nginx.www.join("flip");
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let secs = started.elapsed().as_secs() as usize;
                for k in 0..FLIPPERS {
                    let path = flip.join(k.to_string());
                    if (secs / ((k + 1) * 7)).is_multiple_of(2) {
                        let _ = std::fs::write(&path, "ok\n");
                    } else {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    // A remote-write endpoint that is down for the whole soak: the queue must stay bounded
    // and the drops counted.
    let down = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut text = format!(
        "[agent]\nlisten = \"{listen}\"\nconcurrency = 1024\n\n[defaults]\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\n",
        (interval * 1000.0) as u64,
        ((interval * 1000.0) as u64).min(5000)
    );
    // `--remote-write no` leaves it out, to tell its memory from the checks'.
    if opts.text("remote-write", "yes") != "no" {
        text.push_str(&format!(
            "\n[[remote_write]]\nurl = \"http://{down}/api/v1/write\"\ninterval = \"15s\"\nmax_queue = 200000\n"
        ));
    }
    // Nine in ten plain HTTP, one in ten HTTPS through the test CA, all on flapping paths.
    for idx in 0..checks {
        let k = idx % FLIPPERS;
        let (url, tls) = if idx % 10 == 9 {
            (
                format!("https://localhost:{}/flip/{k}", nginx.https.port()),
                format!("tls = {{ ca_file = \"{}\" }}\n", pki.ca.display()),
            )
        } else {
            (format!("http://{}/flip/{k}", nginx.http), String::new())
        };
        text.push_str(&format!(
            "\n[[check]]\nname = \"s{idx:05}\"\ntype = \"http\"\nurl = \"{url}\"\n{tls}"
        ));
    }
    let config = dir.path().join("soak.toml");
    std::fs::write(&config, text).expect("write config");
    let (process, _) = start_nightjar(&config, listen);
    let pid = process.pid();
    eprintln!(
        "soak: {checks} checks every {interval} s against {FLIPPERS} flapping paths for {minutes} min; a row every {every} s; trend after {warmup} s"
    );
    println!(
        "| minute | RSS MiB | open fds | threads | runtime tasks | runs in period | expected | failing now | counters agree | remote write queued / dropped |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    let started = Instant::now();
    let mut last_runs = 0.0;
    let mut samples: Vec<(f64, f64, f64, f64)> = Vec::new();
    let mut disagreements = 0;
    while started.elapsed().as_secs_f64() < minutes * 60.0 {
        std::thread::sleep(Duration::from_secs_f64(every));
        let metrics = scrape(listen);
        let runs: f64 = metrics
            .lines()
            .filter(|line| line.starts_with("nightjar_check_runs_total{"))
            .map(value)
            .sum();
        let failing = metrics
            .lines()
            .filter(|line| line.starts_with("probe_success{") && value(line) == 0.0)
            .count();
        let usage = Usage::of(pid);
        let fds = open_fds(pid);
        let tasks = gauge(&metrics, "nightjar_runtime_tasks");
        let (seen, bad) = consistency(&metrics);
        let queued = gauge(&metrics, "nightjar_remote_write_queue_samples");
        let dropped: f64 = metrics
            .lines()
            .filter(|line| {
                line.starts_with("nightjar_remote_write_samples_total{")
                    && label(line, "result") == Some("dropped")
            })
            .map(value)
            .sum();
        let at = started.elapsed().as_secs_f64();
        println!(
            "| {:.1} | {:.1} | {fds} | {} | {tasks} | {:.0} | {:.0} | {failing} | {} | {} |",
            at / 60.0,
            usage.rss_kib as f64 / 1024.0,
            threads(pid),
            runs - last_runs,
            checks as f64 * every / interval,
            if bad.is_empty() && seen == checks {
                "yes".to_string()
            } else {
                format!(
                    "NO: {} of {seen}: {:?}",
                    bad.len(),
                    bad.iter().take(3).collect::<Vec<_>>()
                )
            },
            if queued.is_nan() {
                "-".to_string()
            } else {
                format!("{queued} / {dropped}")
            }
        );
        if !bad.is_empty() || seen != checks {
            disagreements += 1;
        }
        last_runs = runs;
        if at >= warmup {
            samples.push((at, usage.rss_kib as f64, fds as f64, tasks));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    drop(process);

    let mut growth = false;
    if samples.len() >= 3 {
        let window = samples.last().map_or(0.0, |s| s.0) - samples[0].0;
        let xs: Vec<f64> = samples.iter().map(|s| s.0).collect();
        for (name, ys, unit, allowed) in [
            (
                "RSS",
                samples.iter().map(|s| s.1 / 1024.0).collect::<Vec<_>>(),
                "MiB",
                2.0,
            ),
            ("open fds", samples.iter().map(|s| s.2).collect(), "", 8.0),
            (
                "runtime tasks",
                samples.iter().map(|s| s.3).collect(),
                "",
                8.0,
            ),
        ] {
            let per_hour = slope(&xs, &ys) * 3600.0;
            let over_window = slope(&xs, &ys) * window;
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            // Growth: more than `allowed` units and 2% of the mean over the window.
            let grows = over_window > allowed && over_window > 0.02 * mean;
            growth |= grows;
            println!(
                "trend of {name} after warm-up: {per_hour:+.2}{unit} per hour ({over_window:+.2}{unit} over {:.0} min, mean {mean:.1}{unit}): {}",
                window / 60.0,
                if grows { "GROWS" } else { "flat" }
            );
        }
    } else {
        println!("too few samples after the warm-up for a trend; run longer or sample more often");
    }
    if growth || disagreements > 0 {
        std::process::exit(1);
    }
}
