//! The traffic injector end to end: a real Prometheus scrapes a loopback service's request
//! counter; the injector reads the real rate from it and tops traffic up to the floor, and
//! sends nothing when real traffic is above the floor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::{LoginApp, Prometheus, RunningAgent, http_get, load, sample};

/// The service's request counters: (real, synthetic).
async fn counters(app: SocketAddr) -> (f64, f64) {
    let (_, metrics) = http_get(app, "/metrics").await;
    let real = sample(&metrics, "http_requests_total", &[("synthetic", "false")]).unwrap_or(0.0);
    let synthetic =
        sample(&metrics, "http_requests_total", &[("synthetic", "true")]).unwrap_or(0.0);
    (real, synthetic)
}

/// Waits until the injector `name` has planned from a real rate Prometheus answered with
/// (`prometheus_up` 1) and `accept(observed, target)` holds; returns its metrics then.
async fn planned(agent: &RunningAgent, name: &str, accept: impl Fn(f64, f64) -> bool) -> String {
    crate::support::eventually(
        Duration::from_secs(30),
        &format!("injector {name} to plan from the real rate"),
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            let labels = [("traffic", name)];
            let up = sample(&metrics, "nightjar_traffic_prometheus_up", &labels)?;
            let observed = sample(&metrics, "nightjar_traffic_observed_rate", &labels)?;
            let target = sample(&metrics, "nightjar_traffic_target_rate", &labels)?;
            (up == 1.0 && accept(observed, target)).then_some(metrics)
        },
    )
    .await
}

/// The sum of `name` over every series of the injector `traffic` (every `result`).
fn sum(metrics: &str, name: &str, traffic: &str) -> f64 {
    let label = format!("traffic=\"{traffic}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Sends real (unmarked) requests at `rate` per second, evenly, until told to stop.
fn real_traffic(
    app: SocketAddr,
    rate: Arc<AtomicU32>,
    stop: Arc<AtomicU32>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = 0u64;
        // Bounded: at most two minutes of traffic.
        while stop.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(120) {
            let per_second = f64::from(rate.load(Ordering::Relaxed));
            let _ = http_get(app, "/ping").await;
            sent += 1;
            tokio::time::sleep(Duration::from_secs_f64(1.0 / per_second)).await;
        }
        let _ = sent;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injector_tops_real_traffic_up_to_the_floor_and_no_further() {
    let app = LoginApp::start("unused-password", "JBSWY3DPEHPK3PXP");
    let prometheus = Prometheus::start(&[("app", app.addr)]);
    prometheus.wait_ready().await;
    let text = format!(
        r#"[[traffic]]
name = "floor"
floor = "8/s"
url = "{ping}"
prometheus = "http://{prom}/"
real_rate = 'sum(rate(http_requests_total{{job="app",synthetic="false"}}[5s]))'
max_rate = "50/s"
refresh = "1s"
arrivals = "even"
"#,
        ping = app.url("/ping"),
        prom = prometheus.addr,
    );
    let rate = Arc::new(AtomicU32::new(2));
    let stop = Arc::new(AtomicU32::new(0));
    let sender = real_traffic(app.addr, rate.clone(), stop.clone());
    let agent = RunningAgent::start(load(&text, &[])).await;

    // Real traffic at 2/s, below the 8/s floor: once the injector has planned from a real
    // rate Prometheus measured, the service sees about 8/s in all.
    planned(&agent, "floor", |observed, target| {
        (1.0..=3.5).contains(&observed) && target > 0.0
    })
    .await;
    let (real_before, synthetic_before) = counters(app.addr).await;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (real_after, synthetic_after) = counters(app.addr).await;
    let seconds = window.elapsed().as_secs_f64();
    let total_rate = (real_after - real_before + synthetic_after - synthetic_before) / seconds;
    let synthetic_rate = (synthetic_after - synthetic_before) / seconds;
    assert!(
        (8.0 * 0.85..=8.0 * 1.15).contains(&total_rate),
        "total {total_rate:.2}/s (synthetic {synthetic_rate:.2}/s) is not within 15% of the 8/s floor"
    );
    assert!(
        synthetic_rate > 4.0,
        "the injector topped up: {synthetic_rate:.2}/s"
    );
    let (_, metrics) = agent.get("/metrics").await;
    assert!(
        sample(
            &metrics,
            "nightjar_traffic_requests_total",
            &[("traffic", "floor"), ("result", "success")]
        )
        .unwrap()
            > 30.0
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_traffic_prometheus_up",
            &[("traffic", "floor")]
        ),
        Some(1.0)
    );
    let observed = sample(
        &metrics,
        "nightjar_traffic_observed_rate",
        &[("traffic", "floor")],
    )
    .unwrap();
    assert!(
        (1.0..=3.5).contains(&observed),
        "observed real rate {observed}"
    );

    // Real traffic at 12/s, above the floor: once the injector has seen it and every request
    // it sent has arrived, nothing more is injected.
    rate.store(12, Ordering::Relaxed);
    planned(&agent, "floor", |observed, target| {
        observed > 8.0 && target == 0.0
    })
    .await;
    crate::support::eventually(
        Duration::from_secs(10),
        "every injected request to arrive",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            let sent = sum(&metrics, "nightjar_traffic_requests_total", "floor");
            let (_, arrived) = counters(app.addr).await;
            (sent == arrived).then_some(())
        },
    )
    .await;
    let (_, synthetic_before) = counters(app.addr).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, synthetic_after) = counters(app.addr).await;
    assert_eq!(
        synthetic_after - synthetic_before,
        0.0,
        "no injected traffic above the floor"
    );
    let (_, metrics) = agent.get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "nightjar_traffic_target_rate",
            &[("traffic", "floor")]
        ),
        Some(0.0)
    );

    stop.store(1, Ordering::Relaxed);
    let _ = sender.await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_the_fallback_applies_and_says_so() {
    let app = LoginApp::start("unused-password", "JBSWY3DPEHPK3PXP");
    let closed = crate::support::free_port();
    let text = format!(
        "[[traffic]]\nname = \"blind\"\nfloor = \"4/s\"\nurl = \"{}\"\nprometheus = \"http://127.0.0.1:{closed}/\"\nreal_rate = 'sum(rate(x[5m]))'\nrefresh = \"1s\"\narrivals = \"even\"\n",
        app.url("/ping")
    );
    let agent = RunningAgent::start(load(&text, &[])).await;
    // The first plan: Prometheus is reported down and the fallback (the full floor) applies.
    let metrics = crate::support::eventually(
        Duration::from_secs(20),
        "the injector's first plan",
        || async {
            let (_, metrics) = agent.get("/metrics").await;
            sample(
                &metrics,
                "nightjar_traffic_prometheus_up",
                &[("traffic", "blind")],
            )
            .map(|_| metrics)
        },
    )
    .await;
    assert_eq!(
        sample(
            &metrics,
            "nightjar_traffic_prometheus_up",
            &[("traffic", "blind")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_traffic_target_rate",
            &[("traffic", "blind")]
        ),
        Some(4.0)
    );
    let (_, before) = counters(app.addr).await;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, after) = counters(app.addr).await;
    let rate = (after - before) / window.elapsed().as_secs_f64();
    // Arrivals go on across refreshes: none is lost at a refresh (it used to send 3/s of a
    // 4/s plan with a 1 s refresh).
    assert!(
        (4.0 * 0.85..=4.0 * 1.15).contains(&rate),
        "the full 4/s floor is injected: {rate:.2}/s"
    );
    agent.stop().await;
}

#[test]
fn traffic_config_errors() {
    let text = "[[check]]\nname = \"dns-check\"\ntype = \"dns\"\nquery = \"example.com\"\n\n[[traffic]]\nname = \"t\"\nslo = \"nope\"\ncheck = \"dns-check\"\nprometheus = \"http://p:9090/\"\nactive_hours = \"25:00-01:00\"\n";
    let err = crate::support::config_errors("t.toml", text);
    for part in [
        "t.toml:8:7: no SLO named \"nope\"",
        "t.toml:9:9: check \"dns-check\" is a dns check",
        "is missing the required key `real_rate`",
        "t.toml:11:16: active_hours \"25:00-01:00\" is not a daily window",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
}

/// A real Prometheus that answers with numbers no request rate can have (`-Inf`, a huge
/// negative, `NaN`): each counts as "Prometheus unavailable", so the fallback applies, and
/// the injected rate never goes above the floor (it used to go to `max_rate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_real_rates_count_as_unavailable_and_never_raise_the_rate() {
    let app = LoginApp::start("unused-password", "JBSWY3DPEHPK3PXP");
    let prometheus = Prometheus::start(&[("app", app.addr)]);
    prometheus.wait_ready().await;
    let mut text = String::new();
    for (name, query, fallback) in [
        ("minus-inf", "-Inf", "floor"),
        ("huge-negative", "vector(-1e300)", "floor"),
        ("nan", "NaN", "none"),
    ] {
        text.push_str(&format!(
            "[[traffic]]\nname = \"{name}\"\nfloor = \"2/s\"\nmax_rate = \"500/s\"\nurl = \"{ping}\"\nprometheus = \"http://{prom}/\"\nreal_rate = '{query}'\nrefresh = \"1s\"\narrivals = \"even\"\nfallback = \"{fallback}\"\n\n",
            ping = app.url("/ping"),
            prom = prometheus.addr,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traffic.toml");
    std::fs::write(&path, &text).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", crate::support::free_port())
        .parse()
        .unwrap();
    let mut agent = crate::support::start_agent(
        crate::support::nightjar()
            .args(["run", "--log-format", "text", "--config"])
            .arg(&path),
        listen,
    );
    // Poll until every injector has planned at least once, then measure a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = http_get(listen, "/metrics").await;
        let planned = ["minus-inf", "huge-negative", "nan"].iter().all(|name| {
            sample(
                &metrics,
                "nightjar_traffic_prometheus_up",
                &[("traffic", name)],
            ) == Some(0.0)
        });
        if planned {
            for (name, target) in [("minus-inf", 2.0), ("huge-negative", 2.0), ("nan", 0.0)] {
                assert_eq!(
                    sample(
                        &metrics,
                        "nightjar_traffic_target_rate",
                        &[("traffic", name)]
                    ),
                    Some(target),
                    "{name}: the fallback applies"
                );
                assert_eq!(
                    sample(
                        &metrics,
                        "nightjar_traffic_observed_rate",
                        &[("traffic", name)]
                    ),
                    None,
                    "{name}: no observed rate is reported"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the injectors never reported Prometheus unavailable:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, before) = counters(app.addr).await;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, after) = counters(app.addr).await;
    let rate = (after - before) / window.elapsed().as_secs_f64();
    // Two injectors at the 2/s floor: about 4/s, nowhere near 2 × 500/s.
    assert!(rate <= 6.0, "injected {rate:.1}/s in all");
    let output = crate::support::terminate(&mut agent);
    let log = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    for name in ["minus-inf", "huge-negative", "nan"] {
        let lines = log
            .lines()
            .filter(|line| line.contains("Cannot read the real rate") && line.contains(name))
            .count();
        assert_eq!(lines, 1, "one log line for {name}:\n{log}");
    }
}

#[test]
fn rates_above_the_sane_bound_are_refused() {
    let text = "[[traffic]]\nname = \"t\"\nfloor = \"1e9/s\"\nmax_rate = \"2000/s\"\nurl = \"http://127.0.0.1:1/\"\n";
    let err = crate::support::config_errors("t.toml", text);
    for part in [
        "t.toml:3:9: floor \"1e9/s\" is above 1000/s",
        "t.toml:4:12: max_rate \"2000/s\" is above 1000/s",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
}

/// SIGTERM with an injector and a remote-write endpoint that both hang: the injector stops
/// with the checks and the last push has a few seconds, so the agent still exits within the
/// longest check timeout plus 5 s.
#[tokio::test]
async fn sigterm_is_not_held_by_hanging_injected_requests_or_a_hanging_endpoint() {
    // Connections complete in the kernel's backlog and are never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = silent.local_addr().map(|addr| (silent, addr)).unwrap();
    let nginx = crate::support::Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[[check]]\nname = \"ok\"\ntype = \"http\"\nurl = \"{ok}\"\ninterval = \"5s\"\ntimeout = \"2s\"\n\n[[traffic]]\nname = \"stuck\"\nfloor = \"20/s\"\nmax_rate = \"20/s\"\nurl = \"http://{hang}/\"\ntimeout = \"30s\"\nrefresh = \"1s\"\n\n[[remote_write]]\nurl = \"http://{hang}/api/v1/write\"\ninterval = \"1s\"\ntimeout = \"30s\"\n",
            ok = nginx.url("/ok"),
            hang = silent.1,
        ),
    )
    .unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", crate::support::free_port())
        .parse()
        .unwrap();
    let mut agent = crate::support::start_agent(
        crate::support::nightjar()
            .args(["run", "--config"])
            .arg(&path),
        listen,
    );
    // Wait until the injector sends (at 20/s) and a push has started; both hang.
    crate::support::eventually(
        Duration::from_secs(20),
        "the injector planned and a check ran",
        || async {
            let (_, metrics) = http_get(listen, "/metrics").await;
            let planned = sample(
                &metrics,
                "nightjar_traffic_target_rate",
                &[("traffic", "stuck")],
            ) == Some(20.0);
            let ran = sample(
                &metrics,
                "nightjar_check_runs_total",
                &[("check", "ok"), ("result", "success")],
            )
            .is_some_and(|runs| runs >= 1.0);
            (planned && ran).then_some(())
        },
    )
    .await;
    let stopping = Instant::now();
    let output = crate::support::terminate(&mut agent);
    let took = stopping.elapsed();
    assert!(output.status.success(), "{output:?}");
    assert!(
        took < Duration::from_secs(2 + 5),
        "SIGTERM took {took:?}, more than the longest check timeout (2 s) plus 5 s"
    );
    drop(silent);
}
