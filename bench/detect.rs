//! `detect`: how fast an outage is known and paged, how fast the recovery is seen, and what a
//! target that fails one request in ten costs, for four detection settings side by side.
//!
//! One nginx serves `/detect` to every check: 200, then 503 for the outage, 200 again, then a
//! 500 for one request in ten (`split_clients` on `$request_id`) for the flapping phase. Each
//! setting has three agents of its own (`nightjar run`, regions eu, us and ap) running the same
//! checks; every Prometheus scrapes all of them every 15 s and evaluates the rules of
//! `nightjar rules` every 15 s, one Prometheus per `[rules] quorum_for` compared.
//!
//! Where each figure comes from: the decided state and the run that decided it (`since`) from
//! each agent's `/api/v1/checks`; state changes from the agents' JSON logs ("Check is
//! failing.", "Check recovered."); runs from their metrics; pages from each Prometheus's
//! `ALERTS` series (one sample per evaluation while firing).

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::targets::{Process, free_port, program, run_nginx, wait_for_tcp};
use crate::{NIGHTJAR, Opts, get, sum_of};

/// The regions every check runs in; the quorum alert pages when two of them fail.
const REGIONS: [&str; 3] = ["eu", "us", "ap"];
/// Prometheus's scrape and rule evaluation interval.
const EVAL: f64 = 15.0;
const ALERT: &str = "NightjarCheckFailingInRegions";

/// One detection setting: how often a check runs and how it confirms a failure.
#[derive(Clone, Copy)]
struct Setting {
    interval: u64,
    retry: Option<u64>,
    confirm: u32,
}

/// Today's behaviour (one failed run decides) and the confirmation compared with it, at a
/// 60 s and a 15 s interval. Three runs in a row decide a failure: one failed run is a blip
/// (a dropped connection, a restarting pod), and the chance that a target failing one run in
/// ten fails three in a row is 1 in 1,000. The retries come a sixth of the interval apart
/// (10 s at 60 s, 5 s at 15 s): confirming costs a third of an interval, the three runs span
/// 10 to 20 s, longer than most blips, and both retries come before the next regular run.
const SETTINGS: [Setting; 4] = [
    Setting {
        interval: 60,
        retry: None,
        confirm: 1,
    },
    Setting {
        interval: 60,
        retry: Some(10),
        confirm: 3,
    },
    Setting {
        interval: 15,
        retry: None,
        confirm: 1,
    },
    Setting {
        interval: 15,
        retry: Some(5),
        confirm: 3,
    },
];

impl Setting {
    /// The prefix of its checks' names and its Prometheus job.
    fn name(self) -> String {
        match self.retry {
            None => format!("i{}", self.interval),
            Some(retry) => format!("i{}-r{retry}-c{}", self.interval, self.confirm),
        }
    }

    /// As the tables show it.
    fn label(self) -> String {
        match self.retry {
            None => format!("{} s, confirm 1", self.interval),
            Some(retry) => format!(
                "{} s, retry {retry} s, confirm {}",
                self.interval, self.confirm
            ),
        }
    }

    /// The longest from outage start to a decided failure: an interval to the first failed
    /// run, then a retry for each further confirmation.
    fn worst(self) -> u64 {
        self.interval + self.retry.unwrap_or(self.interval) * u64::from(self.confirm - 1)
    }

    fn defaults(self) -> String {
        let mut text = format!(
            "[defaults]\ninterval = \"{}s\"\ntimeout = \"5s\"\nconfirm_failures = {}\n",
            self.interval, self.confirm
        );
        if let Some(retry) = self.retry {
            text.push_str(&format!("retry_interval = \"{retry}s\"\n"));
        }
        text
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

fn parse_time(text: &str) -> Option<f64> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(time.timestamp_micros() as f64 / 1e6)
}

/// What the target does.
#[derive(Clone, Copy)]
enum Mode {
    Up,
    Down,
    Flapping,
}

/// nginx serving `/detect`, switched between up, down and flapping by flag files it looks
/// for on every request.
struct Target {
    url: String,
    down: PathBuf,
    flapping: PathBuf,
    _process: Process,
}

impl Target {
    fn start(dir: &Path, fail_percent: f64) -> Target {
        let root = dir.join("nginx");
        std::fs::create_dir_all(root.join("tmp")).expect("nginx dir");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let d = root.display();
        let server = format!(
            r#"  split_clients "${{request_id}}" $flap {{ {fail_percent}% fail; * ok; }}
  server {{
    listen {http};
    location = /detect {{
      if (-f {d}/down) {{ return 503 "down\n"; }}
      if (-f {d}/flapping) {{ rewrite ^ /flap last; }}
      return 200 "ok\n";
    }}
    location = /flap {{
      internal;
      if ($flap = fail) {{ return 500 "flap\n"; }}
      return 200 "ok\n";
    }}
  }}
"#
        );
        let process = run_nginx(&root, "", 4096, &server);
        wait_for_tcp(http, "nginx");
        Target {
            url: format!("http://{http}/detect"),
            down: root.join("down"),
            flapping: root.join("flapping"),
            _process: process,
        }
    }

    /// Switches the target; returns when it took effect (Unix seconds): nginx looks for the
    /// flag files on every request.
    fn set(&self, mode: Mode) -> f64 {
        let flag = |path: &Path, on: bool| {
            if on {
                std::fs::write(path, "").expect("write a flag file");
            } else if path.exists() {
                std::fs::remove_file(path).expect("remove a flag file");
            }
        };
        flag(&self.down, matches!(mode, Mode::Down));
        flag(&self.flapping, matches!(mode, Mode::Flapping));
        now_unix()
    }
}

/// One `nightjar run` process: a setting's checks in one region.
struct Agent {
    setting: usize,
    listen: SocketAddr,
    log: PathBuf,
    _process: Process,
}

/// The configuration of a setting's agent in `region`.
fn agent_config(
    setting: Setting,
    region: &str,
    listen: SocketAddr,
    url: &str,
    checks: usize,
) -> String {
    let mut text = format!(
        "[agent]\nlisten = \"{listen}\"\nregion = \"{region}\"\n\n{}",
        setting.defaults()
    );
    for k in 0..checks {
        text.push_str(&format!(
            "\n[[check]]\nname = \"{}-{k:02}\"\ntype = \"http\"\nurl = \"{url}\"\nregions = [\"eu\", \"us\", \"ap\"]\n",
            setting.name()
        ));
    }
    text
}

/// Starts every setting's three agents (each logging JSON to a file of its own), waits until
/// each is ready, and returns them with one configuration file per setting for the rules.
fn start_agents(dir: &Path, url: &str, checks: usize) -> (Vec<Agent>, Vec<String>) {
    let mut agents = Vec::new();
    let mut for_rules = Vec::new();
    for (idx, setting) in SETTINGS.iter().enumerate() {
        for region in REGIONS {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let text = agent_config(*setting, region, listen, url, checks);
            let name = format!("{}-{region}", setting.name());
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, &text).expect("write an agent's config");
            if region == REGIONS[0] {
                for_rules.push(text);
            }
            let log = dir.join(format!("{name}.log"));
            let child = Command::new(NIGHTJAR)
                .args([
                    "run",
                    "--log-format",
                    "json",
                    "--log-level",
                    "info",
                    "--config",
                ])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("create an agent's log"))
                .spawn()
                .expect("start nightjar");
            agents.push(Agent {
                setting: idx,
                listen,
                log,
                _process: Process(child),
            });
        }
    }
    let start = Instant::now();
    for agent in &agents {
        while TcpStream::connect(agent.listen).is_err() || get(agent.listen, "/-/ready").0 != 200 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "an agent was not ready within 60 s; see {}",
                agent.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (agents, for_rules)
}

/// One check in one region as its agent's API shows it.
struct Seen {
    state: String,
    /// A change being confirmed ("failing, confirming 1 of 3").
    pending: bool,
    since: Option<f64>,
}

fn states(agent: &Agent) -> Vec<Seen> {
    let (status, body) = get(agent.listen, "/api/v1/checks");
    assert_eq!(status, 200, "GET /api/v1/checks");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("the API answers JSON");
    json["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .map(|check| Seen {
            state: check["state"].as_str().unwrap_or_default().to_string(),
            pending: !check["pending"].is_null(),
            since: check["since"].as_str().and_then(parse_time),
        })
        .collect()
}

/// Whether every check in every agent is decided `state`, with no change being confirmed.
fn all_in(agents: &[Agent], state: &str) -> bool {
    agents.iter().all(|agent| {
        states(agent)
            .iter()
            .all(|seen| seen.state == state && !seen.pending)
    })
}

/// A Prometheus with the rules of `nightjar rules` at one `quorum_for`, scraping every agent.
struct Prom {
    quorum_for: String,
    addr: SocketAddr,
    _process: Process,
}

/// `nightjar rules` for each setting's checks with `[rules] quorum_for` set: the rule files.
fn rule_files(root: &Path, quorum_for: &str, for_rules: &[String]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (setting, text) in SETTINGS.iter().zip(for_rules) {
        let toml = root.join(format!("{}.toml", setting.name()));
        std::fs::write(
            &toml,
            format!("{text}\n[rules]\nquorum_for = \"{quorum_for}\"\n"),
        )
        .expect("write the rules' config");
        let rules = root.join(format!("{}.rules.yml", setting.name()));
        let status = Command::new(NIGHTJAR)
            .args(["rules", "--config"])
            .arg(&toml)
            .arg("--output")
            .arg(&rules)
            .status()
            .expect("run nightjar rules");
        assert!(
            status.success(),
            "nightjar rules failed for {}",
            toml.display()
        );
        files.push(rules);
    }
    files
}

impl Prom {
    fn start(dir: &Path, quorum_for: &str, for_rules: &[String], agents: &[Agent]) -> Prom {
        let root = dir.join(format!("prometheus-{quorum_for}"));
        std::fs::create_dir_all(&root).expect("prometheus dir");
        let mut config = format!(
            "global:\n  scrape_interval: {EVAL}s\n  scrape_timeout: 10s\n  evaluation_interval: {EVAL}s\nrule_files:\n"
        );
        for rules in rule_files(&root, quorum_for, for_rules) {
            config.push_str(&format!("  - '{}'\n", rules.display()));
        }
        config.push_str("scrape_configs:\n");
        for (idx, setting) in SETTINGS.iter().enumerate() {
            let targets: Vec<String> = agents
                .iter()
                .filter(|agent| agent.setting == idx)
                .map(|agent| format!("'{}'", agent.listen))
                .collect();
            config.push_str(&format!(
                "  - job_name: nightjar-{}\n    static_configs:\n      - targets: [{}]\n",
                setting.name(),
                targets.join(", ")
            ));
        }
        std::fs::write(root.join("prometheus.yml"), config).expect("write prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = File::create(root.join("prometheus.log")).expect("create prometheus.log");
        let child = Command::new(program("prometheus"))
            .arg(format!(
                "--config.file={}",
                root.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let process = Process(child);
        wait_for_tcp(addr, "prometheus");
        let prom = Prom {
            quorum_for: quorum_for.to_string(),
            addr,
            _process: process,
        };
        let start = Instant::now();
        while get(addr, "/-/ready").0 != 200 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Prometheus not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prom
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = get(self.addr, path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("Prometheus answers JSON")
    }

    /// The result of an instant query.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let query: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let json = self.api(&format!("/api/v1/query?query={query}"));
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn count(&self, promql: &str) -> f64 {
        self.query(&format!("count({promql})"))
            .first()
            .and_then(|sample| sample["value"][1].as_str()?.parse().ok())
            .unwrap_or(0.0)
    }

    fn firing(&self) -> f64 {
        self.count(&format!(
            "ALERTS{{alertname=\"{ALERT}\",alertstate=\"firing\"}}"
        ))
    }

    /// The rule groups that hold the quorum alert.
    fn quorum_groups(&self) -> usize {
        let json = self.api("/api/v1/rules");
        json["data"]["groups"].as_array().map_or(0, |groups| {
            groups
                .iter()
                .filter(|group| group["name"] == "nightjar-region-quorum")
                .count()
        })
    }

    /// The pages since `from` (Unix seconds): for each check, each run of firing `ALERTS`
    /// samples (one per evaluation) is one page, at its first sample.
    fn pages(&self, from: f64) -> Vec<(String, f64)> {
        let secs = (now_unix() - from).ceil() as u64 + 1;
        let matrix = self.query(&format!(
            "ALERTS{{alertname=\"{ALERT}\",alertstate=\"firing\"}}[{secs}s]"
        ));
        let mut pages = Vec::new();
        for series in &matrix {
            let check = series["metric"]["check"].as_str().unwrap_or_default();
            let mut last: Option<f64> = None;
            for value in series["values"].as_array().into_iter().flatten() {
                let Some(at) = value[0].as_f64() else {
                    continue;
                };
                if last.is_none_or(|last| at - last > 1.5 * EVAL) && at >= from {
                    pages.push((check.to_string(), at));
                }
                last = Some(at);
            }
        }
        pages
    }
}

/// Polls `done` every second until it holds or `limit` has passed; whether it held.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > limit {
            eprintln!(
                "detect: gave up waiting for {what} after {:.0} s",
                limit.as_secs_f64()
            );
            return false;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The setting a check belongs to, by the prefix of its name.
fn setting_of(check: &str) -> Option<usize> {
    let (prefix, _) = check.rsplit_once('-')?;
    SETTINGS.iter().position(|setting| setting.name() == prefix)
}

/// Seconds from `start` to each check's `since` in `state`, per setting; and, per setting, the
/// checks (in one region each) not in that state since `start`.
fn since_per_setting(agents: &[Agent], state: &str, start: f64) -> (Vec<Vec<f64>>, Vec<usize>) {
    let mut delays = vec![Vec::new(); SETTINGS.len()];
    let mut missed = vec![0; SETTINGS.len()];
    for agent in agents {
        for seen in states(agent) {
            match seen.since {
                // A run that started a moment before the switch may see it: up to a second.
                Some(since) if seen.state == state && since > start - 1.0 => {
                    delays[agent.setting].push(since - start);
                }
                _ => missed[agent.setting] += 1,
            }
        }
    }
    (delays, missed)
}

/// Per setting, the delays from `start` to each check's first page in `prom`.
fn first_pages(prom: &Prom, start: f64) -> (Vec<Vec<f64>>, Vec<usize>) {
    let mut first: HashMap<String, f64> = HashMap::new();
    let mut count = vec![0; SETTINGS.len()];
    for (check, at) in prom.pages(start) {
        if let Some(setting) = setting_of(&check) {
            count[setting] += 1;
        }
        let entry = first.entry(check).or_insert(at);
        *entry = entry.min(at);
    }
    let mut delays = vec![Vec::new(); SETTINGS.len()];
    for (check, at) in first {
        if let Some(setting) = setting_of(&check) {
            delays[setting].push(at - start);
        }
    }
    (delays, count)
}

/// `median (min–max)` of `values`, in seconds.
fn spread(values: &[f64]) -> String {
    if values.is_empty() {
        return "–".to_string();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    format!("{median:.1} ({:.1}–{:.1})", sorted[0], sorted[n - 1])
}

/// Regular runs, failed regular runs and retries so far, per setting, from the agents' metrics.
fn runs_per_setting(agents: &[Agent]) -> Vec<[f64; 3]> {
    let mut runs = vec![[0.0; 3]; SETTINGS.len()];
    for agent in agents {
        let (_, body) = get(agent.listen, "/metrics");
        let metrics = String::from_utf8_lossy(&body);
        let failed = sum_of(&metrics, "nightjar_check_runs_total", "result=\"failure\"");
        let all = sum_of(&metrics, "nightjar_check_runs_total", "");
        let retries = sum_of(&metrics, "nightjar_check_retry_runs_total", "");
        let row = &mut runs[agent.setting];
        row[0] += all;
        row[1] += failed;
        row[2] += retries;
    }
    runs
}

/// Changes of decided state each setting's agents logged at or after `from` (Unix seconds).
fn state_changes(agents: &[Agent], from: f64) -> Vec<usize> {
    let mut changes = vec![0; SETTINGS.len()];
    for agent in agents {
        let text = std::fs::read_to_string(&agent.log).expect("read an agent's log");
        changes[agent.setting] += text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| {
                matches!(
                    event["message"].as_str(),
                    Some("Check is failing." | "Check recovered.")
                )
            })
            .filter(|event| {
                event["timestamp"]
                    .as_str()
                    .and_then(parse_time)
                    .is_some_and(|at| at >= from)
            })
            .count();
    }
    changes
}

/// What the outage and recovery phase measured.
struct Outage {
    to_failing: Vec<Vec<f64>>,
    not_failing: Vec<usize>,
    /// Per Prometheus: delays to each check's first page, and pages per setting.
    to_page: Vec<(Vec<Vec<f64>>, Vec<usize>)>,
    to_passing: Vec<Vec<f64>>,
    not_passing: Vec<usize>,
    seconds: f64,
}

/// Takes the target down until every check fails everywhere and every Prometheus pages for
/// each (or the worst case has passed), then brings it back until every check passes and no
/// page is firing.
fn outage(target: &Target, agents: &[Agent], proms: &[Prom], checks: usize) -> Outage {
    let longest_for = proms
        .iter()
        .filter_map(|prom| humantime::parse_duration(&prom.quorum_for).ok())
        .map(|every| every.as_secs_f64())
        .fold(0.0, f64::max);
    let worst = SETTINGS.iter().map(|s| s.worst()).max().unwrap_or(60) as f64;
    let limit = Duration::from_secs_f64(worst + longest_for + 4.0 * EVAL + 60.0);
    let paged = (checks * SETTINGS.len()) as f64;
    let start = target.set(Mode::Down);
    eprintln!(
        "detect: outage; waiting for every check to fail and page (at most {:.0} s)",
        limit.as_secs_f64()
    );
    wait_for(limit, "every check failing and paged", || {
        all_in(agents, "failing") && proms.iter().all(|prom| prom.firing() >= paged)
    });
    let (to_failing, not_failing) = since_per_setting(agents, "failing", start);
    let back = target.set(Mode::Up);
    eprintln!("detect: recovery; waiting for every check to pass and every page to resolve");
    let settle = Duration::from_secs_f64(worst + 4.0 * EVAL + 60.0);
    wait_for(settle, "every check passing, no page firing", || {
        all_in(agents, "passing") && proms.iter().all(|prom| prom.firing() == 0.0)
    });
    let (to_passing, not_passing) = since_per_setting(agents, "passing", back);
    Outage {
        to_failing,
        not_failing,
        to_page: proms.iter().map(|prom| first_pages(prom, start)).collect(),
        to_passing,
        not_passing,
        seconds: back - start,
    }
}

/// What the flapping phase counted, per setting.
struct Flapping {
    runs: Vec<[f64; 3]>,
    changes: Vec<usize>,
    pages: Vec<Vec<usize>>,
    seconds: f64,
    settled: f64,
}

/// The target fails one request in ten for `minutes`; then, once every check passes again and
/// no page fires, what each setting ran, changed and paged since it began.
fn flapping(target: &Target, agents: &[Agent], proms: &[Prom], minutes: f64) -> Flapping {
    let before = runs_per_setting(agents);
    let start = target.set(Mode::Flapping);
    eprintln!("detect: flapping for {minutes} min");
    std::thread::sleep(Duration::from_secs_f64(minutes * 60.0));
    let end = target.set(Mode::Up);
    let worst = SETTINGS.iter().map(|s| s.worst()).max().unwrap_or(60) as f64;
    wait_for(
        Duration::from_secs_f64(worst + 4.0 * EVAL + 60.0),
        "every check passing, no page firing",
        || all_in(agents, "passing") && proms.iter().all(|prom| prom.firing() == 0.0),
    );
    let after = runs_per_setting(agents);
    let runs = before
        .iter()
        .zip(&after)
        .map(|(b, a)| [a[0] - b[0], a[1] - b[1], a[2] - b[2]])
        .collect();
    let pages = proms
        .iter()
        .map(|prom| first_pages(prom, start).1)
        .collect();
    Flapping {
        runs,
        changes: state_changes(agents, start),
        pages,
        seconds: end - start,
        settled: now_unix() - end,
    }
}

/// Every check decided passing in every agent, and every Prometheus holding each of those
/// states with the rules loaded.
fn warm_up(agents: &[Agent], proms: &[Prom], checks: usize) {
    let longest = SETTINGS.iter().map(|s| s.interval).max().unwrap_or(60) as f64;
    let ok = wait_for(
        Duration::from_secs_f64(longest + 60.0),
        "every check passing",
        || all_in(agents, "passing"),
    );
    assert!(ok, "the checks did not all pass against a healthy target");
    let series = (checks * SETTINGS.len() * REGIONS.len()) as f64;
    let ok = wait_for(
        Duration::from_secs_f64(4.0 * EVAL),
        "Prometheus to see every check passing",
        || {
            proms
                .iter()
                .all(|prom| prom.count("nightjar_check_state{state=\"passing\"} == 1") >= series)
        },
    );
    assert!(ok, "Prometheus did not see every check passing");
    for prom in proms {
        assert_eq!(
            prom.quorum_groups(),
            SETTINGS.len(),
            "Prometheus (quorum_for {}) did not load every setting's rules",
            prom.quorum_for
        );
    }
}

fn print_settings(checks: usize, proms: &[Prom], percent: f64) {
    println!(
        "# {} settings × {checks} checks × {} regions ({}); each setting its own agents; one nginx; \
         Prometheus scrapes every {EVAL} s and evaluates `nightjar rules` every {EVAL} s, one Prometheus per quorum_for ({}); \
         flapping: {percent}% of requests fail at random",
        SETTINGS.len(),
        REGIONS.len(),
        REGIONS.join(", "),
        proms
            .iter()
            .map(|prom| prom.quorum_for.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "| setting | interval | retry_interval | confirm_failures | confirm_recoveries | failing decided within (worst case) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for setting in SETTINGS {
        println!(
            "| {} | {} s | {} | {} | 1 | {} s |",
            setting.label(),
            setting.interval,
            setting
                .retry
                .map_or("–".to_string(), |retry| format!("{retry} s")),
            setting.confirm,
            setting.worst(),
        );
    }
}

fn print_outage(outage: &Outage, proms: &[Prom], checks: usize) {
    println!();
    println!(
        "Outage: one outage of {:.0} s, then the recovery; each cell is median (min–max) in seconds. \
         (a) and (c) over {checks} checks × {} regions per setting (a check runs at the same moment in every region), \
         (b) over {checks} checks (one alert per check).",
        outage.seconds,
        REGIONS.len()
    );
    println!();
    let mut head = "| setting | (a) outage → state failing |".to_string();
    let mut rule = "|---|---:|".to_string();
    for prom in proms {
        head.push_str(&format!(
            " (b) outage → page, quorum_for {} |",
            prom.quorum_for
        ));
        rule.push_str("---:|");
    }
    let fors: Vec<&str> = proms.iter().map(|prom| prom.quorum_for.as_str()).collect();
    head.push_str(&format!(
        " (c) recovery → state passing | pages during the outage (quorum_for {}) |",
        fors.join(" / ")
    ));
    rule.push_str("---:|---|");
    println!("{head}\n{rule}");
    for (idx, setting) in SETTINGS.iter().enumerate() {
        let mut row = format!(
            "| {} | {}{} |",
            setting.label(),
            spread(&outage.to_failing[idx]),
            missing(outage.not_failing[idx])
        );
        for (delays, _) in &outage.to_page {
            row.push_str(&format!(
                " {}{} |",
                spread(&delays[idx]),
                missing(checks.saturating_sub(delays[idx].len()))
            ));
        }
        let pages: Vec<String> = outage
            .to_page
            .iter()
            .map(|(_, count)| count[idx].to_string())
            .collect();
        row.push_str(&format!(
            " {}{} | {} for {checks} checks |",
            spread(&outage.to_passing[idx]),
            missing(outage.not_passing[idx]),
            pages.join(" / ")
        ));
        println!("{row}");
    }
}

fn missing(count: usize) -> String {
    if count == 0 {
        String::new()
    } else {
        format!(", {count} never")
    }
}

fn print_flapping(flap: &Flapping, proms: &[Prom], checks: usize, percent: f64) {
    println!();
    println!(
        "Flapping: {:.1} min of the target failing at random, counted until {:.0} s after it \
         stopped (every check passing again, no page firing); {checks} checks × {} regions per setting.",
        flap.seconds / 60.0,
        flap.settled,
        REGIONS.len()
    );
    println!();
    let mut head =
        "| setting | regular runs | failed (share) | retry runs | state changes | expected if independent |"
            .to_string();
    let mut rule = "|---|---:|---:|---:|---:|---:|".to_string();
    for prom in proms {
        head.push_str(&format!(" pages, quorum_for {} |", prom.quorum_for));
        rule.push_str("---:|");
    }
    println!("{head}\n{rule}");
    for (idx, setting) in SETTINGS.iter().enumerate() {
        let [runs, failed, retries] = flap.runs[idx];
        // A change to failing needs `confirm` failed runs in a row from a passing state
        // (p^c, with the state passing 1 - p^c of the time), and each is undone by a
        // recovery: about 2 · runs · p^c · (1 - p^c).
        let confirmed = (percent / 100.0).powi(setting.confirm as i32);
        let mut row = format!(
            "| {} | {runs:.0} | {failed:.0} ({:.1}%) | {retries:.0} | {} | {:.1} |",
            setting.label(),
            failed * 100.0 / runs.max(1.0),
            flap.changes[idx],
            2.0 * runs * confirmed * (1.0 - confirmed)
        );
        for pages in &flap.pages {
            row.push_str(&format!(" {} |", pages[idx]));
        }
        println!("{row}");
    }
}

pub fn detect(opts: &Opts) {
    let minutes = opts.num("minutes", 4.0);
    let checks = opts.num("checks", 20.0) as usize;
    let percent = opts.num("fail-percent", 10.0);
    let quorum_for = opts.text("quorum-for", "5m,1m,1s");
    let dir = tempfile::Builder::new()
        .prefix("nightjar-detect-")
        .tempdir()
        .expect("temp dir");
    let target = Target::start(dir.path(), percent);
    let (agents, for_rules) = start_agents(dir.path(), &target.url, checks);
    let proms: Vec<Prom> = quorum_for
        .split(',')
        .map(|every| Prom::start(dir.path(), every.trim(), &for_rules, &agents))
        .collect();
    eprintln!(
        "detect: {} agents and {} Prometheus started; warming up",
        agents.len(),
        proms.len()
    );
    warm_up(&agents, &proms, checks);
    let outage = outage(&target, &agents, &proms, checks);
    let flap = flapping(&target, &agents, &proms, minutes);
    print_settings(checks, &proms, percent);
    print_outage(&outage, &proms, checks);
    print_flapping(&flap, &proms, checks, percent);
}
