//! `tcp` conversations over Unix stream sockets (`target = "unix:PATH"`, blackbox_exporter's
//! `unix` prober with `query_response`): Redis on a socket its own redis.conf names
//! (PING/PONG, a capture sent back), PostgreSQL's socket (SSLRequest, which it declines on a
//! Unix socket), nginx speaking TLS from the first byte on a socket, a path that does not
//! exist, a socket nobody listens on, and one the agent (run as nobody) may not open.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nightjar::result::{Details, FailureReason, TcpDetails};

use crate::support::{
    assert_check_contract, assert_fail, assert_pass, config_errors, metrics_after, pki, require,
    run_check, sample,
};
use crate::tcp_conversations::{Daemon, postgres, server_dir};

/// Waits until something accepts connections on the socket at `path`.
fn wait_for_socket(path: &Path, limit: Duration) {
    let start = Instant::now();
    while UnixStream::connect(path).is_err() {
        assert!(
            start.elapsed() < limit,
            "nothing listens on {} after {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Redis listening on a Unix socket only (`port 0`), from a redis.conf this test writes.
struct Redis {
    socket: PathBuf,
    _daemon: Daemon,
}

fn redis() -> &'static Redis {
    static REDIS: OnceLock<Redis> = OnceLock::new();
    REDIS.get_or_init(|| {
        let program = require("redis-server", "redis-server");
        let dir = server_dir("nightjar-redis-unix-");
        let socket = dir.join("redis.sock");
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\nunixsocket {}\nunixsocketperm 700\nsave \"\"\nappendonly no\ndir {}\n",
                socket.display(),
                dir.display()
            ),
        )
        .unwrap();
        let daemon = Daemon::start(&dir, "TERM", &program, &[conf.display().to_string()]);
        wait_for_socket(&socket, Duration::from_secs(20));
        Redis {
            socket,
            _daemon: daemon,
        }
    })
}

/// nginx answering HTTP over TLS (the test PKI's leaf) on a Unix socket.
struct TlsNginx {
    socket: PathBuf,
    _daemon: Daemon,
}

fn tls_nginx() -> &'static TlsNginx {
    static NGINX: OnceLock<TlsNginx> = OnceLock::new();
    NGINX.get_or_init(|| {
        let nginx = require("nginx", "nginx-light");
        let dir = server_dir("nightjar-nginx-unix-");
        let d = dir.display();
        let socket = dir.join("tls.sock");
        let leaf = &pki().leaf;
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen unix:{socket} ssl;\n    ssl_certificate {chain};\n    ssl_certificate_key {key};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n",
            socket = socket.display(),
            chain = leaf.chain.display(),
            key = leaf.key.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let args = [
            "-p".to_string(),
            dir.display().to_string(),
            "-c".to_string(),
            conf_path.display().to_string(),
        ];
        let daemon = Daemon::start(&dir, "TERM", &nginx, &args);
        wait_for_socket(&socket, Duration::from_secs(20));
        TlsNginx {
            socket,
            _daemon: daemon,
        }
    })
}

fn unix_check(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"{name}\"\ntype = \"tcp\"\ntarget = \"unix:{}\"\ntimeout = \"5s\"\n{extra}\n",
        path.display()
    )
}

fn tcp_details(res: &nightjar::result::CheckResult) -> &TcpDetails {
    let Details::Tcp(details) = &res.details else {
        panic!("no tcp details in {res:?}")
    };
    details
}

/// The phases of a check on a Unix socket: `connect` and `exchange` (and `tls` when it speaks
/// TLS), never `resolve`; and no address family or name lookup series.
fn assert_unix_metrics(text: &str, res: &nightjar::result::CheckResult, tls: bool) -> String {
    let metrics = metrics_after(text, res);
    assert_check_contract(res, &metrics);
    let phase = |phase: &str| {
        sample(
            &metrics,
            "nightjar_tcp_duration_seconds",
            &[("check", &*res.check), ("phase", phase)],
        )
    };
    assert!(phase("connect").is_some(), "{metrics}");
    assert!(phase("exchange").is_some(), "{metrics}");
    assert_eq!(phase("resolve"), None, "{metrics}");
    assert_eq!(phase("tls").is_some(), tls, "{metrics}");
    let check = [("check", &*res.check)];
    assert_eq!(sample(&metrics, "probe_ip_protocol", &check), None);
    assert_eq!(
        sample(&metrics, "probe_dns_lookup_time_seconds", &check),
        None
    );
    metrics
}

#[tokio::test]
async fn redis_ping_pong_over_its_unix_socket() {
    let socket = &redis().socket;
    let text = unix_check(
        "redis-unix",
        socket,
        "send = \"PING\\r\\n\"\nexpect = { matches = ['^\\+PONG'] }",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let config = crate::support::load(&text, &[]);
    assert_eq!(
        config.checks[0].target,
        format!("unix:{}", socket.display())
    );
    let details = tcp_details(&res);
    assert!(details.unix_socket && details.remote_addr.is_none());
    assert_eq!(details.received, 7, "+PONG\\r\\n");
    assert!(details.exchange > Duration::ZERO);
    assert_unix_metrics(&text, &res, false);

    // The steps engine, with a capture sent back: the same conversation as over TCP.
    let steps = unix_check(
        "redis-unix-steps",
        socket,
        "steps = [\n  { send = \"CLIENT ID\\r\\n\" },\n  { expect = '^:(\\d+)$', send = \"CLIENT LIST ID ${1}\\r\\n\" },\n  { expect = '^id=\\d+ .*addr=/' },\n]",
    );
    let res = run_check(&steps).await;
    assert_pass(&res);
    assert_eq!(tcp_details(&res).steps.len(), 3);
    assert_unix_metrics(&steps, &res, false);

    let wrong = unix_check(
        "redis-unix-wrong",
        socket,
        "send = \"PING\\r\\n\"\nexpect = { matches = ['^\\+PANG'] }\ntimeout = \"1s\"",
    );
    let wrong = wrong.replace("timeout = \"5s\"\n", "");
    let res = run_check(&wrong).await;
    assert_fail(
        &res,
        FailureReason::Timeout,
        &format!(
            "timed out waiting for \"^\\\\+PANG\" from unix:{}",
            socket.display()
        ),
    );
}

#[tokio::test]
async fn postgres_declines_ssl_on_its_unix_socket() {
    let pg = postgres();
    let socket = pg.socket_dir.join(format!(".s.PGSQL.{}", pg.port));
    wait_for_socket(&socket, Duration::from_secs(30));
    // An SSLRequest: PostgreSQL answers 'N' on a Unix socket (it offers TLS only over TCP).
    let text = unix_check(
        "postgres-unix",
        &socket,
        "steps = [\n  { send_hex = \"00 00 00 08 04 d2 16 2f\" },\n  { expect_bytes = \"N\" },\n]",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_unix_metrics(&text, &res, false);
    let text = text.replace("expect_bytes = \"N\"", "expect_bytes = \"S\"");
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Body, "step 2 (expect_bytes 53): unix:");
}

#[tokio::test]
async fn tls_from_the_first_byte_on_a_unix_socket() {
    let nginx = tls_nginx();
    let tls = format!(
        "tls = {{ ca_file = \"{}\", server_name = \"localhost\" }}\nsteps = [\n  {{ send = \"GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n\" }},\n  {{ expect = '^HTTP/1\\.1 200 ' }},\n]",
        pki().ca.display()
    );
    let text = unix_check("nginx-unix-tls", &nginx.socket, &tls);
    let res = run_check(&text).await;
    assert_pass(&res);
    let details = tcp_details(&res);
    let info = details.tls_info.as_ref().expect("the chain was read");
    assert!(info.chain_valid && info.hostname_match, "{info:?}");
    let metrics = assert_unix_metrics(&text, &res, true);
    assert!(
        sample(
            &metrics,
            "probe_ssl_earliest_cert_expiry",
            &[("check", "nginx-unix-tls")]
        )
        .is_some_and(|at| at > 0.0)
    );

    // A name the certificate does not hold: judged before anything is sent.
    let res = run_check(&text.replace(
        "server_name = \"localhost\"",
        "server_name = \"other.example\"",
    ))
    .await;
    assert_fail(&res, FailureReason::CertInvalid, "");
}

#[tokio::test]
async fn a_missing_path_and_a_socket_nobody_listens_on_fail_to_connect() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.sock");
    let res = run_check(&unix_check("missing", &missing, "")).await;
    assert_fail(
        &res,
        FailureReason::Connect,
        &format!(
            "cannot connect to the Unix socket {}: no such socket",
            missing.display()
        ),
    );
    let text = unix_check("missing", &missing, "");
    assert_unix_metrics(&text, &res, false);

    // A socket file left behind by a server that is gone: refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let res = run_check(&unix_check("stale", &stale, "send = \"PING\\r\\n\"")).await;
    assert_fail(
        &res,
        FailureReason::Connect,
        &format!(
            "cannot connect to the Unix socket {}: connection refused",
            stale.display()
        ),
    );

    // A path that is not a socket.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let res = run_check(&unix_check("file", &file, "")).await;
    assert_fail(
        &res,
        FailureReason::Connect,
        &format!("cannot connect to the Unix socket {}", file.display()),
    );
}

#[test]
fn keys_of_ip_are_config_errors_with_a_unix_target() {
    let errors = config_errors(
        "unix.toml",
        "[[check]]\nname = \"u\"\ntype = \"tcp\"\ntarget = \"unix:/run/app.sock\"\nip_protocol = \"ip4\"\nsource_ip = \"127.0.0.1\"\n",
    );
    assert!(
        errors.contains("unix.toml:5:1")
            && errors.contains("`ip_protocol` does not apply to a Unix socket"),
        "{errors}"
    );
    assert!(
        errors.contains("unix.toml:6:1") && errors.contains("`source_ip` does not apply"),
        "{errors}"
    );

    let errors = config_errors(
        "unix.toml",
        "[[check]]\nname = \"u\"\ntype = \"tcp\"\ntarget = \"unix:run/app.sock\"\n",
    );
    assert!(errors.contains("is not an absolute path"), "{errors}");

    let long = format!("/{}", "x".repeat(120));
    let errors = config_errors(
        "unix.toml",
        &format!("[[check]]\nname = \"u\"\ntype = \"tcp\"\ntarget = \"unix:{long}\"\n"),
    );
    assert!(
        errors.contains("longer than a Unix socket address holds"),
        "{errors}"
    );

    let errors = config_errors(
        "unix.toml",
        "[[check]]\nname = \"u\"\ntype = \"tcp\"\ntarget = \"unix:/run/app.sock\"\ntls = true\n",
    );
    assert!(
        errors.contains("a Unix socket has no host name") && errors.contains("server_name"),
        "{errors}"
    );
}

#[test]
fn a_socket_the_agent_may_not_open_fails_to_connect_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let setpriv = require("setpriv", "util-linux");
    let dir = server_dir("nightjar-unix-perm-");
    let socket = dir.join("private.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("check.toml");
    std::fs::write(&config, unix_check("private", &socket, "")).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The agent as nobody: root would open any socket.
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_nightjar"))
        .args(["check", "--format", "json", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("\"connect\""), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "cannot connect to the Unix socket {}: permission denied",
            socket.display()
        )),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
