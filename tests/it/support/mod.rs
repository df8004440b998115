//! Test support: real servers on loopback (nginx, Prometheus), a test CA made at test time
//! with rcgen, an in-process agent, and the contract every check kind's results satisfy.

pub mod bind;
pub mod blackbox;
pub mod browser;
pub mod hostile;
pub mod hostile_dns;
pub mod netns;
pub mod pki;

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nightjar::config::{self, Config, MapEnv, Overrides};
use nightjar::result::CheckResult;
use nightjar::runner::{RunEnv, run_one};

/// Fails the test with a clear message when a required program is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!("{program} is not installed: run `bash .ci/run` once, or `apt-get install {package}`");
}

/// The Python of the test virtualenv that `scripts/test.sh` fills from
/// `scripts/test-requirements.txt` (real servers Debian does not package).
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("NIGHTJAR_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("nightjar/test-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test.sh` once to create the test virtualenv",
        python.display()
    );
    python
}

/// Runs `command` to completion, fails the test with its output unless it exits 0, and
/// returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `nightjar rules` on the config file `config` and returns the rule file it prints.
pub fn nightjar_rules(config: &Path) -> String {
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .args(["rules", "--config"])
            .arg(config),
    )
}

/// A port free on 127.0.0.1 for a server the test starts.
///
/// Ports come from a counter below Linux's ephemeral range (32768 and up), so no `bind(:0)`
/// or outgoing connection elsewhere in the suite can take one between this call and the
/// server binding it; each is checked free before it is handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 200) as u16 * 50;
    for _ in 0..2000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = base + offset;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 below the ephemeral range");
}

/// A child process killed when dropped, so a test that fails half-way leaves no agent running.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary, without the `NIGHTJAR_*` and `RUST_LOG` variables the test's own
/// environment may carry.
pub fn nightjar() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nightjar"));
    cmd.env_remove("RUST_LOG")
        .env_remove("NIGHTJAR_CONFIG")
        .env_remove("NIGHTJAR_LISTEN")
        .env_remove("NIGHTJAR_REGION");
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

/// Starts `command` (a `nightjar run` with its arguments) on `listen` with its output
/// captured, and waits until it accepts connections. It is killed if the test fails.
pub fn start_agent(command: &mut Command, listen: SocketAddr) -> KillOnDrop {
    let child = command
        .arg("--listen")
        .arg(listen.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .expect("start nightjar run");
    wait_for_tcp(listen, Duration::from_secs(20));
    child
}

/// Sends SIGTERM, waits at most 15 s for the agent to exit, and returns what it printed.
pub fn terminate(child: &mut Child) -> std::process::Output {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    std::process::Output {
        status: child.wait().unwrap(),
        stdout: out,
        stderr: err,
    }
}

/// How many threads of the process `pid` are tokio runtime threads (its workers, and any
/// blocking-pool thread alive), by their name in `/proc/PID/task/*/comm`.
pub fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "tokio-rt-worker")
        .count()
}

/// Polls until `addr` accepts a TCP connection; panics after `limit`.
pub fn wait_for_tcp(addr: SocketAddr, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listened on {addr} within {limit:?}");
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test PKI, made once per test process.
pub fn pki() -> &'static pki::Pki {
    static PKI: OnceLock<pki::Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("nightjar-pki-")
            .tempdir()
            .expect("temp dir")
            .keep();
        pki::Pki::make(&dir)
    })
}

/// nginx's mail module, from Debian's libnginx-mod-mail.
const MAIL_MODULE: &str = "/usr/lib/nginx/modules/ngx_mail_module.so";

/// A real nginx on loopback with the routes the HTTP tests use. Stopped on drop.
pub struct Nginx {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub mtls: SocketAddr,
    /// Plain-text HTTP/2 (h2c, prior knowledge).
    pub h2c: SocketAddr,
    /// HTTPS with a chain whose intermediate expires in 10 days.
    pub short_intermediate: SocketAddr,
    /// HTTPS with an expired leaf.
    pub expired: SocketAddr,
    /// HTTPS with a certificate for other.example.
    pub wrong_host: SocketAddr,
    /// HTTPS with a self-signed certificate.
    pub self_signed: SocketAddr,
    /// SMTP with STARTTLS (nginx's mail module).
    pub smtp: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Size of `/large` (20 MiB).
pub const LARGE_BODY: u64 = 20 * 1024 * 1024;

impl Nginx {
    pub fn start() -> Nginx {
        let nginx = require("nginx", "nginx-light");
        let pki = pki();
        assert!(
            Path::new(MAIL_MODULE).exists(),
            "{MAIL_MODULE} is missing: run `bash .ci/run` once, or `apt-get install libnginx-mod-mail`"
        );
        let dir = tempfile::Builder::new()
            .prefix("nightjar-nginx-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("www")).expect("www dir");
        std::fs::create_dir_all(root.join("tmp")).expect("tmp dir");
        let large = std::fs::File::create(root.join("www/large")).expect("large file");
        large.set_len(LARGE_BODY).expect("size large file");
        std::fs::write(root.join("www/slow"), vec![b'x'; 256 * 1024]).expect("slow file");
        std::fs::write(
            root.join("www/page.html"),
            "<html><body><h1>Add to cart</h1></body></html>\n",
        )
        .expect("page");
        // Served gzip-compressed to clients that accept it (/gzip.txt).
        std::fs::write(
            root.join("www/gzip.txt"),
            "compressed by nginx\n".repeat(64),
        )
        .expect("gzip file");

        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        write_rdap_fixtures(&root.join("www"), http);
        let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mtls = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let h2c = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let short_intermediate = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let expired = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let wrong_host = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let self_signed = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let smtp = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let tls_server = |addr: SocketAddr, served: &pki::Served, protocols: &str| {
            format!(
                "  server {{\n    listen {addr} ssl;\n    ssl_protocols {protocols};\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n",
                served.chain.display(),
                served.key.display()
            )
        };
        let extra_servers = [
            tls_server(
                short_intermediate,
                &pki.short_intermediate,
                "TLSv1.2 TLSv1.3",
            ),
            tls_server(expired, &pki.expired, "TLSv1.2 TLSv1.3"),
            // Also the one server that offers TLS 1.2 only.
            tls_server(wrong_host, &pki.wrong_host, "TLSv1.2"),
            tls_server(self_signed, &pki.self_signed, "TLSv1.2 TLSv1.3"),
        ]
        .concat();
        let d = root.display();
        let conf = format!(
            r#"load_module {MAIL_MODULE};
daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  default_type text/plain;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate {leaf};
  ssl_certificate_key {leaf_key};
  server {{
    listen {http};
    listen {https} ssl http2;
    listen {h2c} http2;
    server_name localhost;
    root {d}/www;
    location = /ok {{ return 200 "hello from nginx\n"; }}
    location = /json {{ default_type application/json; return 200 '{{"status":"ok","count":3,"items":[{{"id":"a1"}}]}}'; }}
    location = /notfound {{ return 404 "nope\n"; }}
    location = /unavailable {{ return 503 "down for maintenance\n"; }}
    location = /redirect {{ return 302 /ok; }}
    location = /loop {{ return 302 /loop; }}
    location = /to-https {{ return 301 https://localhost:{https_port}/ok; }}
    location = /echo {{ add_header X-Echo $http_x_probe always; return 200 "method=$request_method auth=$http_authorization probe=$http_x_probe ua=$http_user_agent\n"; }}
    location = /large {{ }}
    location = /slow {{ limit_rate 2k; }}
    location = /page.html {{ }}
    location /rdap/ {{ default_type application/rdap+json; access_log {d}/rdap.log; }}
    # Refuses (closes the connection on) the agent of region ap only.
    location = /regional {{ if ($http_x_probe_region = "ap") {{ return 444; }} return 200 "ok\n"; }}
    location /limited/ {{ add_header Retry-After 120 always; return 429; }}
    location = /gzip.txt {{ gzip on; gzip_types text/plain; gzip_min_length 1; }}
    # Compressed bodies: nginx's gzip on a file, and files compressed by the tests served
    # with their Content-Encoding.
    location = /gzip {{ gzip on; gzip_min_length 1; gzip_types application/json; default_type application/json; }}
    location = /to-gzip {{ return 302 /gzip; }}
    location = /encoded/br {{ default_type application/json; add_header Content-Encoding br; }}
    location = /encoded/zstd {{ default_type application/json; add_header Content-Encoding zstd; }}
    location = /encoded/deflate {{ default_type application/json; add_header Content-Encoding deflate; }}
    location = /encoded/raw-deflate {{ default_type application/json; add_header Content-Encoding deflate; }}
    location = /headers {{ add_header Access-Control-Allow-Origin "https://app.example.com" always; add_header X-Multi one always; add_header X-Multi two always; return 200 "ok\n"; }}
  }}
  server {{
    listen {mtls} ssl;
    server_name localhost;
    ssl_client_certificate {ca};
    ssl_verify_client on;
    location / {{ return 200 "client $ssl_client_s_dn\n"; }}
  }}
{extra_servers}}}
mail {{
  server_name localhost;
  auth_http 127.0.0.1:9/auth;
  server {{
    listen {smtp};
    protocol smtp;
    smtp_auth none;
    starttls on;
    ssl_certificate {leaf};
    ssl_certificate_key {leaf_key};
  }}
}}
"#,
            leaf = pki.leaf.chain.display(),
            leaf_key = pki.leaf.key.display(),
            ca = pki.ca.display(),
            https_port = https.port(),
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(root)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(root.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        for addr in [
            http,
            https,
            mtls,
            h2c,
            short_intermediate,
            expired,
            wrong_host,
            self_signed,
            smtp,
        ] {
            wait_for_tcp(addr, Duration::from_secs(10));
        }
        Nginx {
            http,
            https,
            mtls,
            h2c,
            short_intermediate,
            expired,
            wrong_host,
            self_signed,
            smtp,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// The directory nginx serves at `/`; a test may add or remove files to break a target.
    pub fn www(&self) -> PathBuf {
        self._dir.path().join("www")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Days from now, as an RFC 3339 date.
fn days_from_now(days: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// RDAP fixtures (RFC 9083 domain objects and an RFC 9224 bootstrap registry) under
/// `www/rdap/`, served by nginx as `application/rdap+json`.
fn write_rdap_fixtures(www: &Path, http: SocketAddr) {
    let dir = www.join("rdap/domain");
    std::fs::create_dir_all(&dir).unwrap();
    let bootstrap = format!(
        r#"{{"version":"1.0","publication":"2026-01-01T00:00:00Z","services":[[["test"],["http://{http}/rdap/"]],[["limited"],["http://{http}/limited/"]]]}}"#
    );
    std::fs::write(www.join("rdap/dns.json"), bootstrap).unwrap();
    let domain = |name: &str, events: &str| {
        format!(
            r#"{{"objectClassName":"domain","ldhName":"{name}","status":["active"],"events":[{events}]}}"#
        )
    };
    let registered = r#"{"eventAction":"registration","eventDate":"2001-05-04T00:00:00Z"}"#;
    let expires = |days: i64| {
        format!(
            r#"{{"eventAction":"expiration","eventDate":"{}"}}"#,
            days_from_now(days)
        )
    };
    let fixtures = [
        (
            "good.test",
            domain("good.test", &format!("{registered},{}", expires(200))),
        ),
        (
            "soon.test",
            domain("soon.test", &format!("{registered},{}", expires(10))),
        ),
        ("noexp.test", domain("noexp.test", registered)),
        (
            "garbage.test",
            "<html>Service temporarily unavailable</html>".to_string(),
        ),
    ];
    for (name, body) in fixtures {
        std::fs::write(dir.join(name), body).unwrap();
    }
    // Larger than nightjar reads for RDAP (4 MiB).
    std::fs::File::create(dir.join("huge.test"))
        .unwrap()
        .set_len(8 * 1024 * 1024)
        .unwrap();
}

/// Loads config text with a fixed environment.
pub fn load(text: &str, env: &[(&str, &str)]) -> Config {
    let env = MapEnv(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    match config::load_str(Path::new("test.toml"), text, &env, &Overrides::default()) {
        Ok(config) => config,
        Err(errors) => panic!("config does not load:\n{errors}"),
    }
}

/// Runs the only check of `text` once.
pub async fn run_check(text: &str) -> CheckResult {
    run_check_env(text, &[]).await
}

/// Runs the only check of `text` once, with environment variables for secrets.
pub async fn run_check_env(text: &str, env: &[(&str, &str)]) -> CheckResult {
    let config = load(text, env);
    assert_eq!(config.checks.len(), 1, "the test config holds one check");
    run_one(&config.checks[0], &RunEnv::system()).await
}

/// An `http` check's config text.
pub fn http_check(url: &str, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"t\"\ntype = \"http\"\nurl = \"{url}\"\ninterval = \"30s\"\ntimeout = \"5s\"\n{extra}\n"
    )
}

/// The metrics text after observing `res` for the check in `text`.
pub fn metrics_after(text: &str, res: &CheckResult) -> String {
    let config = load(text, &[]);
    let metrics = nightjar::metrics::Metrics::new(&config);
    metrics.observe(res);
    metrics.render()
}

/// The full set's metrics text (`[agent] metrics = "full"`) after observing `res` for the
/// check in `text`.
pub fn metrics_after_full(text: &str, res: &CheckResult) -> String {
    let mut config = load(text, &[]);
    config.agent.metrics = nightjar::config::MetricsMode::Full;
    let metrics = nightjar::metrics::Metrics::new(&config);
    metrics.observe(res);
    metrics.render()
}

/// Asserts the run passed.
#[track_caller]
pub fn assert_pass(res: &CheckResult) {
    assert!(res.is_success(), "expected a pass, got {:?}", res.status);
}

/// Asserts the run failed with `reason` and a detail containing `part`.
#[track_caller]
pub fn assert_fail(res: &CheckResult, reason: nightjar::result::FailureReason, part: &str) {
    match &res.status {
        nightjar::result::Status::Fail(nightjar::result::Failure {
            reason: got,
            detail,
        }) => {
            assert_eq!(*got, reason, "detail: {detail}");
            assert!(detail.contains(part), "detail {detail:?} lacks {part:?}");
        }
        nightjar::result::Status::Pass => panic!("expected a {reason} failure, got a pass"),
    }
}

/// Validates `text` as the file `file` and returns every problem, rendered; panics if it is
/// valid.
pub fn config_errors(file: &str, text: &str) -> String {
    config::load_str(
        Path::new(file),
        text,
        &MapEnv::default(),
        &Overrides::default(),
    )
    .expect_err("the config is invalid")
    .to_string()
}

/// The standard series exist for the result's check and every label comes from a bounded
/// set: the contract every check kind keeps.
pub fn assert_check_contract(res: &CheckResult, metrics_text: &str) {
    let check = format!("check=\"{}\"", res.check);
    // What both metrics sets have for every check; the failure counter of a failed run's
    // reason is checked below.
    for family in [
        "probe_success",
        "probe_duration_seconds",
        "nightjar_check_runs_total",
        "nightjar_check_duration_seconds_bucket",
    ] {
        assert!(
            metrics_text
                .lines()
                .any(|line| line.starts_with(family) && line.contains(&check)),
            "{family} missing for {}:\n{metrics_text}",
            res.check
        );
    }
    let success = if res.is_success() { 1 } else { 0 };
    assert!(
        metrics_text
            .lines()
            .any(|line| line.starts_with("probe_success{")
                && line.contains(&check)
                && line.ends_with(&format!(" {success}"))),
        "probe_success is not {success}"
    );
    let reasons: Vec<&str> = nightjar::result::FailureReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    for line in metrics_text
        .lines()
        .filter(|line| line.contains("reason=\""))
    {
        let reason = line
            .split("reason=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("");
        assert!(
            reasons.contains(&reason),
            "unbounded reason label in {line}"
        );
    }
    if let Some(reason) = res.reason() {
        let needle = format!("reason=\"{}\"", reason.as_str());
        assert!(
            metrics_text
                .lines()
                .any(|line| line.starts_with("nightjar_check_failures_total")
                    && line.contains(&needle)
                    && line.contains(&check)
                    && line.ends_with(" 1")),
            "failure counter for {reason} not incremented"
        );
    }
}

/// A running in-process agent.
pub struct RunningAgent {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningAgent {
    pub async fn start(config: Config) -> RunningAgent {
        RunningAgent::launch(
            config,
            nightjar::agent::Probes::real(RunEnv::system()),
            None,
        )
        .await
    }

    /// An agent that reloads its configuration from `path` (SIGHUP aside: that signal would
    /// reach the whole test process).
    pub async fn start_reloadable(path: &Path) -> RunningAgent {
        let path = path.to_path_buf();
        let config = config::load(
            std::slice::from_ref(&path),
            &MapEnv::default(),
            &Overrides::default(),
        )
        .unwrap_or_else(|errors| panic!("config does not load:\n{errors}"));
        let reloader: nightjar::agent::Reloader = std::sync::Arc::new(move || {
            config::load(
                std::slice::from_ref(&path),
                &MapEnv::default(),
                &Overrides::default(),
            )
        });
        RunningAgent::launch(
            config,
            nightjar::agent::Probes::real(RunEnv::system()),
            Some(reloader),
        )
        .await
    }

    async fn launch(
        config: Config,
        probes: nightjar::agent::Probes,
        reloader: Option<nightjar::agent::Reloader>,
    ) -> RunningAgent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind agent");
        let addr = listener.local_addr().expect("agent address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(nightjar::agent::run(
            config,
            listener,
            probes,
            async move {
                let _ = stopped.await;
            },
            reloader,
        ));
        RunningAgent {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("agent task").expect("agent ran cleanly");
        }
    }
}

/// A minimal HTTP/1.1 GET for talking to the agent and Prometheus in tests.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path).await
}

/// A minimal HTTP/1.1 POST without a body.
pub async fn http_post(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "POST", path).await
}

async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    http_request_with(addr, method, path, "").await
}

/// A minimal HTTP/1.1 request with extra header lines (each ending in `\r\n`).
pub async fn http_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String) {
    http_request_body(addr, method, path, headers, "").await
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The value of the series `name` whose labels include every pair in `labels`, parsed from
/// the text exposition (label order does not matter).
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    static LABEL: OnceLock<regex::Regex> = OnceLock::new();
    let label = LABEL.get_or_init(|| {
        regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap()
    });
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            if series_name != name {
                return None;
            }
            let found: Vec<(&str, &str)> = label
                .captures_iter(rest)
                .map(|c| (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str()))
                .collect();
            labels
                .iter()
                .all(|pair| found.contains(pair))
                .then(|| value.parse().ok())
                .flatten()
        })
}

/// The login application (tests/fixtures/login_app.py) on loopback; stopped on drop.
pub struct LoginApp {
    pub addr: SocketAddr,
    child: Child,
}

impl LoginApp {
    pub fn start(password: &str, totp_secret: &str) -> LoginApp {
        let python = require("python3", "python3");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/login_app.py");
        let child = Command::new(python)
            .arg(script)
            .arg(addr.port().to_string())
            .arg(password)
            .arg(totp_secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the login app");
        wait_for_tcp(addr, Duration::from_secs(20));
        LoginApp { addr, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for LoginApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus on loopback; stopped on drop.
pub struct Prometheus {
    pub addr: std::net::SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes each `(job, address)` every second.
    pub fn start(targets: &[(&str, std::net::SocketAddr)]) -> Prometheus {
        Prometheus::start_with(targets, &[], None, "")
    }

    /// Scrapes with the given `scrape_configs` entries (YAML, indented as list items).
    pub fn scraping(jobs: &str) -> Prometheus {
        Prometheus::start_with(&[], &[], None, jobs)
    }

    /// Scrapes the targets and evaluates the rules in `rules` every second.
    pub fn with_rules(targets: &[(&str, std::net::SocketAddr)], rules: &Path) -> Prometheus {
        Prometheus::start_with(targets, &[], Some(rules), "")
    }

    /// A Prometheus that accepts remote writes and scrapes nothing.
    pub fn receiver() -> Prometheus {
        Prometheus::start_with(&[], &["--web.enable-remote-write-receiver"], None, "")
    }

    /// A remote-write receiver on a given address (one an agent already pushes to).
    pub fn receiver_on(addr: std::net::SocketAddr) -> Prometheus {
        Prometheus::launch(&[], &["--web.enable-remote-write-receiver"], None, "", addr)
    }

    fn start_with(
        targets: &[(&str, std::net::SocketAddr)],
        extra: &[&str],
        rules: Option<&Path>,
        jobs: &str,
    ) -> Prometheus {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        Prometheus::launch(targets, extra, rules, jobs, addr)
    }

    fn launch(
        targets: &[(&str, std::net::SocketAddr)],
        extra: &[&str],
        rules: Option<&Path>,
        jobs: &str,
        addr: std::net::SocketAddr,
    ) -> Prometheus {
        let prometheus = require("prometheus", "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("nightjar-prom-")
            .tempdir()
            .unwrap();
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if let Some(rules) = rules {
            config.push_str(&format!("rule_files: ['{}']\n", rules.display()));
        }
        config.push_str("scrape_configs:\n");
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        config.push_str(jobs);
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let child = Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_tcp(addr, Duration::from_secs(30));
        Prometheus {
            addr,
            child,
            _dir: dir,
        }
    }

    pub async fn wait_ready(&self) {
        eventually(
            Duration::from_secs(30),
            "Prometheus to be ready",
            || async { (http_get(self.addr, "/-/ready").await.0 == 200).then_some(()) },
        )
        .await;
    }

    pub async fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        self.fetch(&format!("/api/v1/query?query={}", encode(promql)))
            .await
    }

    pub async fn query_at(&self, promql: &str, at: f64) -> Vec<(serde_json::Value, f64)> {
        self.fetch(&format!(
            "/api/v1/query?query={}&time={at:.3}",
            encode(promql)
        ))
        .await
    }

    /// When Prometheus last evaluated the rule group `group` (Unix seconds, its own clock),
    /// from its own metrics; `None` before the first evaluation.
    pub async fn last_evaluation(&self, group: &str) -> Option<f64> {
        let (_, metrics) = http_get(self.addr, "/metrics").await;
        let suffix = format!(";{group}\"");
        metrics
            .lines()
            .filter(|line| {
                line.starts_with("prometheus_rule_group_last_evaluation_timestamp_seconds{")
            })
            .find(|line| line.contains(&suffix))
            .and_then(|line| line.rsplit_once(' ')?.1.parse().ok())
            .filter(|at: &f64| *at > 0.0)
    }

    pub async fn fetch(&self, path: &str) -> Vec<(serde_json::Value, f64)> {
        let (status, body) = http_get(self.addr, path).await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sample| {
                let value: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
                (sample["metric"].clone(), value)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the real `promtool check metrics` on `text`; its output when it refuses.
pub fn promtool_check_metrics(promtool: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Nginx {
    /// The request lines nginx logged under `/rdap/` (the RDAP fixtures), oldest first: what
    /// the agents of a test asked RDAP. nginx logs a request once it has answered it.
    pub fn rdap_requests(&self) -> Vec<String> {
        match std::fs::read_to_string(self._dir.path().join("rdap.log")) {
            Ok(log) => log
                .lines()
                .filter_map(|line| line.split('"').nth(1).map(str::to_string))
                .collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => panic!("cannot read nginx's RDAP access log: {error}"),
        }
    }
}

/// A minimal HTTP/1.1 request with extra header lines (each ending in `\r\n`) and a body,
/// sent with its `Content-Length`.
pub async fn http_request_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

impl Prometheus {
    /// Scrapes with the given `scrape_configs` entries (YAML, indented as list items) and
    /// evaluates the rules in `rules` every second.
    pub fn with_rules_scraping(jobs: &str, rules: &Path) -> Prometheus {
        Prometheus::start_with(&[], &[], Some(rules), jobs)
    }
}
