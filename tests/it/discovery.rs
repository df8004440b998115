//! Service discovery against real sources: nginx serving HTTP SD documents (plain, and over
//! TLS with basic auth), BIND serving SRV, A and AAAA records, and file_sd files rewritten,
//! renamed and swapped in the ConfigMap way. `discover_once` and `run` are tested directly;
//! the metrics through the hook the agent uses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nightjar::checks::domain::RdapState;
use nightjar::config::MapEnv;
use nightjar::discovery::{self, DiscoveryEnv, Source, SourceResult, Target};
use nightjar::net::Resolver;
use tokio::sync::watch;

use crate::support::bind::Bind;
use crate::support::{eventually, free_port, pki, require, sample, wait_for_tcp};

/// The HTTP SD endpoint's basic-auth password.
const PASSWORD: &str = "sd-pass-3141";

/// nginx serving `www/sd/` as JSON: at `/sd/` over plain HTTP, and at `/private/` over
/// HTTPS (the test CA) behind basic auth (`sd`, [`PASSWORD`]).
struct SdServer {
    http: std::net::SocketAddr,
    https: std::net::SocketAddr,
    dir: PathBuf,
    _child: Child,
}

impl Drop for SdServer {
    fn drop(&mut self) {
        let _ = self._child.kill();
    }
}

fn sd_server() -> &'static SdServer {
    static SERVER: OnceLock<SdServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let nginx = require("nginx", "nginx-light");
        let pki = pki();
        let dir = tempfile::Builder::new()
            .prefix("nightjar-sd-")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::create_dir_all(dir.join("www/sd")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("htpasswd"), format!("sd:{{PLAIN}}{PASSWORD}\n")).unwrap();
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let https = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  default_type application/json;
  server {{
    listen {http};
    listen {https} ssl;
    ssl_certificate {leaf};
    ssl_certificate_key {leaf_key};
    root {d}/www;
    location /sd/ {{ }}
    location /private/ {{ auth_basic "sd"; auth_basic_user_file {d}/htpasswd; alias {d}/www/sd/; }}
    location = /text {{ default_type text/plain; return 200 "[]"; }}
  }}
}}
"#,
            leaf = pki.leaf.chain.display(),
            leaf_key = pki.leaf.key.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        wait_for_tcp(http, Duration::from_secs(10));
        wait_for_tcp(https, Duration::from_secs(10));
        SdServer {
            http,
            https,
            dir: dir.join("www/sd"),
            _child: child,
        }
    })
}

fn env() -> DiscoveryEnv {
    DiscoveryEnv::new(
        Resolver::system(),
        Arc::new(RdapState::new()),
        "nightjar-test",
    )
}

/// The sources of `targets_from = [...]` written in a config file in `dir`.
fn sources(dir: &Path, list: &str) -> Vec<Source> {
    let env = MapEnv(
        [("SD_PASSWORD".to_string(), PASSWORD.to_string())]
            .into_iter()
            .collect(),
    );
    let text = format!("targets_from = [{list}]\n");
    discovery::sources_from_toml(&dir.join("checks.toml"), &text, &env).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// `target (label=value,...)` per target, for assertions.
fn shown(targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .map(|t| {
            let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if labels.is_empty() {
                t.target.to_string()
            } else {
                format!("{} ({})", t.target, labels.join(","))
            }
        })
        .collect()
}

const DOC: &str = r#"[
  {"targets": ["https://shop.example/", "https://api.example/"], "labels": {"team": "shop", "__meta_dc": "x"}},
  {"targets": ["https://blog.example/"]}
]"#;

#[tokio::test]
async fn http_sd_reads_plain_and_authenticated_documents() {
    let server = sd_server();
    std::fs::write(server.dir.join("plain.json"), DOC).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let expected = [
        "https://api.example/ (team=shop)",
        "https://blog.example/",
        "https://shop.example/ (team=shop)",
    ];

    let plain = sources(
        tmp.path(),
        &format!("{{ http = \"http://{}/sd/plain.json\" }}", server.http),
    );
    let found = discovery::discover_once(&plain, &env()).await.unwrap();
    assert_eq!(shown(&found), expected);

    let ca = pki().ca.display().to_string();
    let authed = sources(
        tmp.path(),
        &format!(
            "{{ http = \"https://localhost:{}/private/plain.json\", basic_auth = {{ username = \"sd\", password = \"${{env:SD_PASSWORD}}\" }}, tls = {{ ca_file = \"{ca}\" }} }}",
            server.https.port()
        ),
    );
    let found = discovery::discover_once(&authed, &env()).await.unwrap();
    assert_eq!(shown(&found), expected);

    // Without credentials: 401, named with the source, and no secret anywhere.
    let anonymous = sources(
        tmp.path(),
        &format!(
            "{{ http = \"https://localhost:{}/private/plain.json\", tls = {{ ca_file = \"{ca}\" }} }}",
            server.https.port()
        ),
    );
    let error = discovery::discover_once(&anonymous, &env())
        .await
        .unwrap_err();
    assert!(
        error.starts_with(&format!(
            "http https://localhost:{}/private/plain.json: the endpoint answered HTTP 401",
            server.https.port()
        )),
        "{error}"
    );
    // Credentials in the URL are never shown.
    let in_url = sources(
        tmp.path(),
        &format!(
            "{{ http = \"https://sd:wrong-{PASSWORD}@localhost:{}/private/plain.json?token=${{env:SD_PASSWORD}}\", tls = {{ ca_file = \"{ca}\" }} }}",
            server.https.port()
        ),
    );
    let error = discovery::discover_once(&in_url, &env()).await.unwrap_err();
    assert!(!error.contains(PASSWORD), "{error}");
    assert_eq!(
        in_url[0].describe(),
        format!(
            "http https://localhost:{}/private/plain.json",
            server.https.port()
        )
    );
}

#[tokio::test]
async fn http_sd_refuses_what_is_not_a_target_list() {
    let server = sd_server();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        server.dir.join("malformed.json"),
        "[{\"targets\": [\"a\"]},\n {\"targets\": \"b\"}]",
    )
    .unwrap();
    let cases = [
        (
            "/sd/malformed.json",
            "the answer is not a target group list: invalid type: string \"b\", expected a sequence at line 2",
        ),
        ("/sd/absent.json", "the endpoint answered HTTP 404"),
        (
            "/text",
            "the answer's Content-Type is \"text/plain\"; HTTP SD wants application/json",
        ),
    ];
    for (path, expected) in cases {
        let source = sources(
            tmp.path(),
            &format!("{{ http = \"http://{}{path}\" }}", server.http),
        );
        let error = discovery::discover_once(&source, &env()).await.unwrap_err();
        assert!(error.contains(expected), "{path}: {error}");
    }
    // Over `max_body`: refused, not cut.
    let big: Vec<String> = (0..100).map(|idx| format!("\"host-{idx}:443\"")).collect();
    std::fs::write(
        server.dir.join("big.json"),
        format!("[{{\"targets\": [{}]}}]", big.join(",")),
    )
    .unwrap();
    let capped = sources(
        tmp.path(),
        &format!(
            "{{ http = \"http://{}/sd/big.json\", max_body = \"1KiB\" }}",
            server.http
        ),
    );
    let error = discovery::discover_once(&capped, &env()).await.unwrap_err();
    assert!(
        error.ends_with("the answer is over 1024 bytes (`max_body`)"),
        "{error}"
    );
    let down = sources(
        tmp.path(),
        &format!(
            "{{ http = \"http://127.0.0.1:{}/sd/plain.json\", timeout = \"2s\" }}",
            free_port()
        ),
    );
    let error = discovery::discover_once(&down, &env()).await.unwrap_err();
    assert!(error.contains("refused"), "{error}");
}

/// Each refresh reported: the source, and its target count or error.
type Reports = Arc<Mutex<Vec<(String, Result<usize, String>)>>>;

/// What `run` published and what it reported, for assertions.
struct Running {
    out: watch::Receiver<Arc<[Target]>>,
    reports: Reports,
    metrics: Arc<nightjar::metrics::Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(sources: Vec<Source>) -> Running {
        let reports: Reports = Arc::new(Mutex::new(Vec::new()));
        let config = crate::support::load("", &[]);
        let metrics = Arc::new(nightjar::metrics::Metrics::new(&config));
        let describe: Vec<String> = sources.iter().map(Source::describe).collect();
        metrics.discovery.set_sources("tpl", &describe);
        let to_metrics = nightjar::metrics::discovery::report_to(metrics.clone());
        let seen = reports.clone();
        let report: discovery::Report = Arc::new(move |check, source, result| {
            to_metrics(check, source, result);
            let entry = match result {
                SourceResult::Ok { targets } => Ok(targets),
                SourceResult::Failed { error, .. } => Err(error.to_string()),
            };
            seen.lock().unwrap().push((source.describe(), entry));
        });
        let (tx, out) = watch::channel(Arc::from(Vec::new()));
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(discovery::run(
            Arc::from("tpl"),
            sources,
            env().with_report(report),
            tx,
            shutdown,
        ));
        Running {
            out,
            reports,
            metrics,
            stop,
            task,
        }
    }

    /// Waits until the published targets are `expected`.
    async fn until(&self, expected: &[&str], what: &str) {
        let out = self.out.clone();
        eventually(Duration::from_secs(10), what, || {
            let now = shown(&out.borrow());
            async move { (now == expected).then_some(()) }
        })
        .await;
    }

    fn failures(&self) -> Vec<String> {
        self.reports
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, result)| result.clone().err())
            .collect()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run stops at shutdown")
            .unwrap();
    }
}

#[tokio::test]
async fn http_sd_down_keeps_the_last_good_targets_and_counts_the_failure() {
    let server = sd_server();
    let tmp = tempfile::tempdir().unwrap();
    let file = server.dir.join("flaky.json");
    std::fs::write(&file, DOC).unwrap();
    let list = sources(
        tmp.path(),
        &format!(
            "{{ http = \"http://{}/sd/flaky.json\", refresh = \"100ms\" }}",
            server.http
        ),
    );
    let source = list[0].describe();
    let running = Running::start(list);
    let all = [
        "https://api.example/ (team=shop)",
        "https://blog.example/",
        "https://shop.example/ (team=shop)",
    ];
    running.until(&all, "the first answer").await;
    let metric = |name: &str| {
        sample(
            &running.metrics.render(),
            name,
            &[("check", "tpl"), ("source", &source)],
        )
    };
    assert_eq!(metric("nightjar_discovery_targets"), Some(3.0));
    assert_eq!(metric("nightjar_discovery_failures_total"), Some(0.0));
    let first_success = metric("nightjar_discovery_last_success_timestamp_seconds").unwrap();
    assert!(first_success > 1.7e9, "{first_success}");

    // The endpoint loses its document: failures counted, the targets kept.
    std::fs::remove_file(&file).unwrap();
    let metrics = running.metrics.clone();
    let source_label = source.clone();
    eventually(Duration::from_secs(10), "a failure counted", || {
        let count = sample(
            &metrics.render(),
            "nightjar_discovery_failures_total",
            &[("check", "tpl"), ("source", &source_label)],
        );
        async move { count.filter(|n| *n >= 2.0) }
    })
    .await;
    assert_eq!(shown(&running.out.borrow()), all);
    assert_eq!(metric("nightjar_discovery_targets"), Some(3.0));
    assert!(
        running
            .failures()
            .iter()
            .all(|error| error == "the endpoint answered HTTP 404; HTTP SD wants 200"),
        "{:?}",
        running.failures()
    );

    // Back, with one target fewer: applied.
    std::fs::write(
        &file,
        r#"[{"targets": ["https://blog.example/"], "labels": {"team": "blog"}}]"#,
    )
    .unwrap();
    running
        .until(&["https://blog.example/ (team=blog)"], "the new answer")
        .await;
    running.stop().await;

    // A template that goes away takes its series with it.
    running_metrics_removed(&metrics, &source);
}

fn running_metrics_removed(metrics: &nightjar::metrics::Metrics, source: &str) {
    metrics.discovery.remove("tpl");
    let text = metrics.render();
    assert!(!text.contains(source), "{text}");
}

#[tokio::test]
async fn dns_sd_reads_srv_a_and_aaaa_records() {
    let bind = Bind::primary();
    let tmp = tempfile::tempdir().unwrap();
    let server = bind.dns;
    let once = |list: String| {
        let list = sources(tmp.path(), &list);
        async move { discovery::discover_once(&list, &env()).await }
    };
    let srv = once(format!(
        "{{ dns = \"_https._tcp.nightjar.test\", server = \"{server}\" }}"
    ))
    .await
    .unwrap();
    assert_eq!(
        shown(&srv),
        [
            "web1.nightjar.test:8443",
            "web2.nightjar.test:8443",
            "web3.nightjar.test:443"
        ]
    );
    let a = once(format!(
        "{{ dns = \"pool.nightjar.test\", type = \"A\", port = 9100, server = \"{server}\" }}"
    ))
    .await
    .unwrap();
    assert_eq!(shown(&a), ["192.0.2.10:9100", "192.0.2.11:9100"]);
    let aaaa = once(format!(
        "{{ dns = \"pool.nightjar.test\", type = \"AAAA\", port = 443, server = \"{server}\" }}"
    ))
    .await
    .unwrap();
    assert_eq!(shown(&aaaa), ["[2001:db8::10]:443"]);

    // As Prometheus reads them: NXDOMAIN and "no such records" are empty sets.
    let nxdomain = once(format!(
        "{{ dns = \"_gone._tcp.nightjar.test\", server = \"{server}\" }}"
    ))
    .await
    .unwrap();
    assert!(nxdomain.is_empty());
    let no_srv = once(format!(
        "{{ dns = \"www.nightjar.test\", server = \"{server}\" }}"
    ))
    .await
    .unwrap();
    assert!(no_srv.is_empty());
    // A refusal (BIND serves no other zone and does not recurse) is an error.
    let error = once(format!(
        "{{ dns = \"_https._tcp.example.org\", server = \"{server}\" }}"
    ))
    .await
    .unwrap_err();
    assert!(
        error.starts_with(&format!("dns SRV _https._tcp.example.org @{server}: ")),
        "{error}"
    );
}

#[tokio::test]
async fn dns_sd_keeps_the_last_good_targets_when_the_server_stops_answering() {
    let bind = Bind::primary();
    let tmp = tempfile::tempdir().unwrap();
    let list = sources(
        tmp.path(),
        &format!(
            "{{ dns = \"pool.nightjar.test\", type = \"A\", port = 80, server = \"{}\", refresh = \"100ms\", timeout = \"300ms\" }}",
            bind.dns
        ),
    );
    let running = Running::start(list);
    let both = ["192.0.2.10:80", "192.0.2.11:80"];
    running.until(&both, "the A records").await;
    drop(bind);
    let reports = running.reports.clone();
    eventually(Duration::from_secs(10), "a failed query", || {
        let failed = reports.lock().unwrap().iter().any(|(_, r)| r.is_err());
        async move { failed.then_some(()) }
    })
    .await;
    assert_eq!(shown(&running.out.borrow()), both);
    running.stop().await;
}

/// A ConfigMap volume as kubelet writes it: `NAME -> ..data/NAME`, `..data -> ..<version>`.
fn configmap(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    for (name, text) in files {
        std::fs::write(versioned.join(name), text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    // The atomic swap.
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

#[tokio::test]
async fn file_sd_notices_edits_renames_and_configmap_swaps() {
    let tmp = tempfile::tempdir().unwrap();
    let sd = tmp.path().join("sd");
    let cm = tmp.path().join("cm");
    std::fs::create_dir_all(&sd).unwrap();
    std::fs::create_dir_all(&cm).unwrap();
    std::fs::write(
        sd.join("web.json"),
        r#"[{"targets": ["https://a.example/"], "labels": {"team": "web"}}]"#,
    )
    .unwrap();
    configmap(
        &cm,
        "2026_11_30_10_00_00.1",
        &[(
            "targets.yaml",
            "- targets: [db1:5432]\n  labels: {team: db}\n",
        )],
    );
    // The full re-read is an hour away: what follows is noticed by the watch.
    let list = sources(
        tmp.path(),
        "{ files = [\"sd/*.json\", \"sd/*.yml\"], refresh = \"1h\" }, { file = \"cm/targets.yaml\", refresh = \"1h\" }",
    );
    let running = Running::start(list);
    running
        .until(
            &["db1:5432 (team=db)", "https://a.example/ (team=web)"],
            "the first read",
        )
        .await;

    let started = Instant::now();
    std::fs::write(
        sd.join("web.json"),
        r#"[{"targets": ["https://a.example/", "https://b.example/"], "labels": {"team": "web"}}]"#,
    )
    .unwrap();
    running
        .until(
            &[
                "db1:5432 (team=db)",
                "https://a.example/ (team=web)",
                "https://b.example/ (team=web)",
            ],
            "an edit",
        )
        .await;
    let noticed = started.elapsed();
    assert!(noticed < Duration::from_secs(2), "{noticed:?}");

    // Renamed out of the pattern: its targets go; a new YAML file's come.
    std::fs::rename(sd.join("web.json"), sd.join("web.json.old")).unwrap();
    std::fs::write(sd.join("more.yml"), "- targets: ['https://c.example/']\n").unwrap();
    running
        .until(&["db1:5432 (team=db)", "https://c.example/"], "a rename")
        .await;

    // The ConfigMap is updated the kubelet way.
    configmap(
        &cm,
        "2026_11_30_10_05_00.2",
        &[(
            "targets.yaml",
            "- targets: [db1:5432, db2:5432]\n  labels: {team: db}\n",
        )],
    );
    running
        .until(
            &[
                "db1:5432 (team=db)",
                "db2:5432 (team=db)",
                "https://c.example/",
            ],
            "a ConfigMap swap",
        )
        .await;

    // A broken file keeps its last good targets, and the failure is reported with its place.
    std::fs::write(sd.join("more.yml"), "- targets: ['https://d.example/'\n").unwrap();
    let reports = running.reports.clone();
    eventually(Duration::from_secs(10), "the failure reported", || {
        let failed = reports
            .lock()
            .unwrap()
            .iter()
            .any(|(_, r)| r.as_ref().is_err_and(|e| e.contains("more.yml: line ")));
        async move { failed.then_some(()) }
    })
    .await;
    assert_eq!(
        shown(&running.out.borrow()),
        [
            "db1:5432 (team=db)",
            "db2:5432 (team=db)",
            "https://c.example/"
        ]
    );
    // Mended, it applies.
    std::fs::write(sd.join("more.yml"), "- targets: ['https://d.example/']\n").unwrap();
    running
        .until(
            &[
                "db1:5432 (team=db)",
                "db2:5432 (team=db)",
                "https://d.example/",
            ],
            "the mended file",
        )
        .await;
    running.stop().await;
}

#[tokio::test]
async fn file_sd_refuses_a_reserved_label_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("hosts.json"),
        r#"[{"targets": ["a:1"]}, {"targets": ["b:1"], "labels": {"check": "mine"}}]"#,
    )
    .unwrap();
    let list = sources(tmp.path(), "{ file = \"hosts.json\" }");
    let error = discovery::discover_once(&list, &env()).await.unwrap_err();
    let path = tmp.path().join("hosts.json");
    assert_eq!(
        error,
        format!(
            "file hosts.json: {}: group 2: label name \"check\" is reserved: nightjar writes it on the check's series itself, and a series cannot carry a label twice; rename it in the source, e.g. \"service_check\"",
            path.display()
        )
    );
    // A literal file that is not there is named; a glob matching nothing is an empty set.
    let missing = sources(tmp.path(), "{ file = \"absent.json\" }");
    let error = discovery::discover_once(&missing, &env())
        .await
        .unwrap_err();
    assert!(error.ends_with("absent.json does not exist"), "{error}");
    let none = sources(tmp.path(), "{ file = \"none-*.json\" }");
    assert!(
        discovery::discover_once(&none, &env())
            .await
            .unwrap()
            .is_empty()
    );
}

/// How long reading and parsing a file_sd file of 50,000 targets takes (printed), bounded
/// generously so a debug build on a busy machine passes.
#[tokio::test]
async fn file_sd_reads_fifty_thousand_targets_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut doc = String::from("[");
    for group in 0..500 {
        if group > 0 {
            doc.push(',');
        }
        let targets: Vec<String> = (0..100)
            .map(|idx| format!("\"https://host-{group}-{idx}.shop.example.com/health\""))
            .collect();
        doc.push_str(&format!(
            "{{\"targets\": [{}], \"labels\": {{\"team\": \"team-{}\", \"env\": \"prod\"}}}}",
            targets.join(","),
            group % 20
        ));
    }
    doc.push(']');
    std::fs::write(tmp.path().join("fleet.json"), &doc).unwrap();
    let list = sources(tmp.path(), "{ file = \"fleet.json\" }");
    let started = Instant::now();
    let parsed = discovery::parse_json(doc.as_bytes()).unwrap();
    println!("file_sd: parse_json alone {:?}", started.elapsed());
    drop(parsed);
    let started = Instant::now();
    let found = discovery::discover_once(&list, &env()).await.unwrap();
    let took = started.elapsed();
    println!(
        "file_sd: {} targets ({} bytes) read, parsed and merged in {took:?}",
        found.len(),
        doc.len()
    );
    assert_eq!(found.len(), 50_000);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A directory that does not exist yet cannot be watched: it is polled, and its files are
/// seen once it appears.
#[tokio::test]
async fn file_sd_sees_a_directory_that_appears_later() {
    let tmp = tempfile::tempdir().unwrap();
    let list = sources(tmp.path(), "{ file = \"later/*.yml\", refresh = \"1h\" }");
    let running = Running::start(list);
    let reports = running.reports.clone();
    eventually(Duration::from_secs(10), "the first, empty, read", || {
        let read = !reports.lock().unwrap().is_empty();
        async move { read.then_some(()) }
    })
    .await;
    std::fs::create_dir(tmp.path().join("later")).unwrap();
    std::fs::write(
        tmp.path().join("later/a.yml"),
        "- targets: [db1:5432]\n  labels: {team: db}\n",
    )
    .unwrap();
    running
        .until(&["db1:5432 (team=db)"], "the new directory's file")
        .await;
    running.stop().await;
}
