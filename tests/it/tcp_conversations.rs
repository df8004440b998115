//! `tcp` conversations against real servers started once for this test binary: Dovecot
//! (IMAP and POP3 with STARTTLS), nginx's mail module (SMTP submission with STARTTLS, one
//! with a self-signed certificate, one that offers no STARTTLS), PostgreSQL (SSLRequest, then
//! TLS), vsftpd (AUTH TLS) and Redis (PING, a capture sent back, the peer address it sees).
//! The conversations are the ones of `checks/tcp-conversations.toml`, pointed at these
//! servers. In-process servers play what no real server does: a stall, a flood, garbage in
//! place of a TLS handshake.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nightjar::checks::tcp::MAX_READ;
use nightjar::result::{Details, FailureReason, TcpDetails};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    assert_check_contract, assert_fail, assert_pass, config_errors, free_port, metrics_after,
    metrics_after_full, pki, require, run_check, run_ok, sample, wait_for_tcp,
};

/// A server that lives as long as this test process. Statics are never dropped, so it is
/// started under a shell that holds the read end of a pipe whose write end only this process
/// has: when the process ends, however it ends, the pipe closes and the shell stops the
/// server with `signal` and removes its directory.
pub(crate) struct Daemon {
    _wrapper: Child,
}

impl Daemon {
    pub(crate) fn start(dir: &Path, signal: &str, program: &Path, args: &[String]) -> Daemon {
        let script = r#"dir="$1"; signal="$2"; shift 2
"$@" </dev/null >>"$dir/server.log" 2>&1 &
pid=$!
cat >/dev/null
kill -"$signal" "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir""#;
        let wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(dir)
            .arg(signal)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the server's wrapper");
        Daemon { _wrapper: wrapper }
    }
}

/// A directory for one server, readable by the unprivileged users the servers switch to.
pub(crate) fn server_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
        .keep();
    set_mode(&dir, 0o755);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Dovecot with IMAP and POP3 listeners (STARTTLS with the test PKI's leaf).
pub(crate) struct Dovecot {
    pub(crate) imap: SocketAddr,
    pop3: SocketAddr,
    /// POP3 over TLS from the first byte.
    pop3s: SocketAddr,
    _daemon: Daemon,
}

pub(crate) fn dovecot() -> &'static Dovecot {
    static DOVECOT: OnceLock<Dovecot> = OnceLock::new();
    DOVECOT.get_or_init(|| {
        let program = require("dovecot", "dovecot-imapd dovecot-pop3d");
        let dir = server_dir("nightjar-dovecot-");
        let (imap, pop3, pop3s) = (
            loopback(free_port()),
            loopback(free_port()),
            loopback(free_port()),
        );
        let d = dir.display();
        let leaf = &pki().leaf;
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = static
  args = password=unused
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s_port}
    ssl = yes
  }}
}}
"#,
            cert = leaf.chain.display(),
            key = leaf.key.display(),
            imap_port = imap.port(),
            pop3_port = pop3.port(),
            pop3s_port = pop3s.port(),
        );
        let conf_path = dir.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let args = [
            "-F".to_string(),
            "-c".to_string(),
            conf_path.display().to_string(),
        ];
        let daemon = Daemon::start(&dir, "TERM", &program, &args);
        wait_for_tcp(imap, Duration::from_secs(20));
        wait_for_tcp(pop3, Duration::from_secs(20));
        wait_for_tcp(pop3s, Duration::from_secs(20));
        Dovecot {
            imap,
            pop3,
            pop3s,
            _daemon: daemon,
        }
    })
}

/// nginx's mail module: SMTP submission with STARTTLS (the leaf), the same with a
/// self-signed certificate, and one without STARTTLS.
struct Smtp {
    submission: SocketAddr,
    self_signed: SocketAddr,
    plain_only: SocketAddr,
    _daemon: Daemon,
}

fn smtp() -> &'static Smtp {
    static SMTP: OnceLock<Smtp> = OnceLock::new();
    SMTP.get_or_init(|| {
        let program = require("nginx", "nginx-light");
        let dir = server_dir("nightjar-smtp-");
        let pki = pki();
        let (submission, self_signed, plain_only) = (
            loopback(free_port()),
            loopback(free_port()),
            loopback(free_port()),
        );
        let d = dir.display();
        let server = |addr: SocketAddr, served: &crate::support::pki::Served, starttls: &str| {
            format!(
                "  server {{\n    listen {addr};\n    protocol smtp;\n    smtp_auth none;\n    starttls {starttls};\n    ssl_certificate {};\n    ssl_certificate_key {};\n  }}\n",
                served.chain.display(),
                served.key.display()
            )
        };
        let conf = format!(
            "load_module /usr/lib/nginx/modules/ngx_mail_module.so;\ndaemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 128; }}\nmail {{\n  server_name localhost;\n  auth_http 127.0.0.1:9/auth;\n{}{}{}}}\n",
            server(submission, &pki.leaf, "on"),
            server(self_signed, &pki.self_signed, "on"),
            server(plain_only, &pki.leaf, "off"),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let args = [
            "-p".to_string(),
            d.to_string(),
            "-c".to_string(),
            conf_path.display().to_string(),
            "-e".to_string(),
            format!("{d}/error.log"),
        ];
        let daemon = Daemon::start(&dir, "TERM", &program, &args);
        for addr in [submission, self_signed, plain_only] {
            wait_for_tcp(addr, Duration::from_secs(20));
        }
        Smtp {
            submission,
            self_signed,
            plain_only,
            _daemon: daemon,
        }
    })
}

/// PostgreSQL with `ssl = on` (the leaf), run as the `postgres` user (it refuses root).
pub(crate) struct Postgres {
    addr: SocketAddr,
    /// The directory of its Unix socket, `.s.PGSQL.<port>`.
    pub(crate) socket_dir: PathBuf,
    pub(crate) port: u16,
    _daemon: Daemon,
}

pub(crate) fn postgres() -> &'static Postgres {
    static POSTGRES: OnceLock<Postgres> = OnceLock::new();
    POSTGRES.get_or_init(|| {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| Some(v.ok()?.path().join("bin")))
                    .find(|bin| bin.join("postgres").exists())
            })
            .expect("PostgreSQL is not installed: run `bash scripts/test.sh` once, or `apt-get install postgresql`");
        let setpriv = require("setpriv", "util-linux");
        let dir = server_dir("nightjar-postgres-");
        run_ok(Command::new("chown").arg("postgres:postgres").arg(&dir));
        let data = dir.join("data");
        let as_postgres = |program: &Path| {
            let mut command = Command::new(&setpriv);
            command
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(program);
            command
        };
        run_ok(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"]),
        );
        let leaf = &pki().leaf;
        std::fs::copy(&leaf.chain, data.join("server.crt")).unwrap();
        std::fs::copy(&leaf.key, data.join("server.key")).unwrap();
        set_mode(&data.join("server.key"), 0o600);
        run_ok(
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(data.join("server.crt"))
                .arg(data.join("server.key")),
        );
        let addr = loopback(free_port());
        let args: Vec<String> = [
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            bin.join("postgres").display().to_string(),
            "-D".to_string(),
            data.display().to_string(),
            "-p".to_string(),
            addr.port().to_string(),
            "-k".to_string(),
            dir.display().to_string(),
            "-c".to_string(),
            "listen_addresses=127.0.0.1".to_string(),
            "-c".to_string(),
            "ssl=on".to_string(),
            "-c".to_string(),
            "fsync=off".to_string(),
        ])
        .collect();
        // SIGINT: a fast shutdown (SIGTERM waits for clients).
        let daemon = Daemon::start(&dir, "INT", &setpriv, &args);
        wait_for_tcp(addr, Duration::from_secs(30));
        Postgres {
            addr,
            socket_dir: dir,
            port: addr.port(),
            _daemon: daemon,
        }
    })
}

/// vsftpd with `ssl_enable` (the leaf), for AUTH TLS.
struct Ftp {
    addr: SocketAddr,
    _daemon: Daemon,
}

fn ftp() -> &'static Ftp {
    static FTP: OnceLock<Ftp> = OnceLock::new();
    FTP.get_or_init(|| {
        let program = require("vsftpd", "vsftpd");
        let dir = server_dir("nightjar-vsftpd-");
        let empty = dir.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let addr = loopback(free_port());
        let leaf = &pki().leaf;
        let conf = format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nanonymous_enable=YES\nno_anon_password=YES\nanon_root={empty}\nlocal_enable=NO\nssl_enable=YES\nrsa_cert_file={cert}\nrsa_private_key_file={key}\nssl_ciphers=HIGH\nsecure_chroot_dir={empty}\nseccomp_sandbox=NO\nxferlog_enable=NO\nvsftpd_log_file={d}/vsftpd.log\n",
            port = addr.port(),
            empty = empty.display(),
            cert = leaf.chain.display(),
            key = leaf.key.display(),
            d = dir.display(),
        );
        let conf_path = dir.join("vsftpd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        set_mode(&conf_path, 0o600);
        let daemon = Daemon::start(&dir, "TERM", &program, &[conf_path.display().to_string()]);
        wait_for_tcp(addr, Duration::from_secs(20));
        Ftp {
            addr,
            _daemon: daemon,
        }
    })
}

/// Redis on a loopback port, and on another with TLS (the leaf), without persistence.
pub(crate) struct Redis {
    pub(crate) addr: SocketAddr,
    tls: SocketAddr,
    _daemon: Daemon,
}

pub(crate) fn redis() -> &'static Redis {
    static REDIS: OnceLock<Redis> = OnceLock::new();
    REDIS.get_or_init(|| {
        let program = require("redis-server", "redis-server");
        let dir = server_dir("nightjar-redis-");
        let (addr, tls) = (loopback(free_port()), loopback(free_port()));
        let leaf = &pki().leaf;
        let args: Vec<String> = [
            "--port",
            &addr.port().to_string(),
            "--tls-port",
            &tls.port().to_string(),
            "--tls-cert-file",
            &leaf.chain.display().to_string(),
            "--tls-key-file",
            &leaf.key.display().to_string(),
            "--tls-ca-cert-file",
            &pki().ca.display().to_string(),
            "--tls-auth-clients",
            "no",
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let daemon = Daemon::start(&dir, "TERM", &program, &args);
        wait_for_tcp(addr, Duration::from_secs(20));
        wait_for_tcp(tls, Duration::from_secs(20));
        Redis {
            addr,
            tls,
            _daemon: daemon,
        }
    })
}

/// The check `name` of `checks/tcp-conversations.toml`, pointed at `addr`, with the test
/// CA as its roots when `tls` is set (its own `tls` line replaced).
fn example(name: &str, addr: SocketAddr, tls: bool) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("checks/tcp-conversations.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let block = text
        .split("[[check]]")
        .find(|block| block.contains(&format!("name = \"{name}\"")))
        .unwrap_or_else(|| panic!("no check {name} in checks/tcp-conversations.toml"));
    let mut out = String::from("[[check]]");
    for line in block.lines() {
        if line.starts_with("target = ") || line.starts_with("tls = ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("target = \"{addr}\"\ntimeout = \"5s\"\n"));
    if tls {
        out.push_str(&format!(
            "tls = {{ ca_file = \"{}\" }}\n",
            pki().ca.display()
        ));
    }
    out
}

fn tcp_details(res: &nightjar::result::CheckResult) -> &TcpDetails {
    let Details::Tcp(details) = &res.details else {
        panic!("no tcp details in {res:?}")
    };
    details
}

/// A passing conversation that upgraded to TLS: every step passed and was timed, the chain
/// was read and judged valid, and the metrics show it like any TLS check's.
fn assert_upgraded(text: &str, res: &nightjar::result::CheckResult, steps: usize) {
    assert_pass(res);
    let details = tcp_details(res);
    assert_eq!(details.steps.len(), steps, "{:?}", details.steps);
    assert!(details.steps.iter().all(|step| step.success));
    assert!(details.tls.is_some_and(|took| took > Duration::ZERO));
    let info = details.tls_info.as_ref().expect("the chain was read");
    assert!(info.chain_valid && info.hostname_match, "{info:?}");
    assert!(info.chain[0].subject.contains("localhost"), "{info:?}");
    // The chain's verdicts are in the full set (lean keeps them for tls checks only).
    let metrics = metrics_after_full(text, res);
    assert_check_contract(res, &metrics);
    let check = [("check", &*res.check)];
    assert!(sample(&metrics, "probe_ssl_earliest_cert_expiry", &check).is_some_and(|at| at > 0.0));
    assert_eq!(
        sample(&metrics, "nightjar_tls_chain_valid", &check),
        Some(1.0)
    );
    let phase = |phase: &str| {
        sample(
            &metrics,
            "nightjar_tcp_duration_seconds",
            &[("check", &*res.check), ("phase", phase)],
        )
    };
    assert!(phase("tls").is_some_and(|secs| secs > 0.0), "{metrics}");
    assert!(
        phase("exchange").is_some_and(|secs| secs > 0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn imap_starttls_with_dovecot() {
    let text = example("imap-starttls", dovecot().imap, true);
    let res = run_check(&text).await;
    assert_upgraded(&text, &res, 7);
}

#[tokio::test]
async fn pop3_stls_with_dovecot() {
    let text = example("pop3-stls", dovecot().pop3, true);
    let res = run_check(&text).await;
    assert_upgraded(&text, &res, 7);
}

#[tokio::test]
async fn smtp_submission_starttls_with_nginx() {
    let text = example("smtp-submission-starttls", smtp().submission, true);
    let res = run_check(&text).await;
    assert_upgraded(&text, &res, 7);
}

#[tokio::test]
async fn postgres_sslrequest_then_tls() {
    let text = example("postgres-ssl", postgres().addr, true);
    let res = run_check(&text).await;
    assert_upgraded(&text, &res, 2);
    assert_eq!(tcp_details(&res).received, 1, "only the 'S' came in clear");
    // The same answer as hex, and a wrong expectation quoting what came.
    let hex = |answer: &str| {
        format!(
            "[[check]]\nname = \"pg\"\ntype = \"tcp\"\ntarget = \"{}\"\ntimeout = \"3s\"\nsteps = [\n  {{ send_hex = \"0000000804d2162f\" }},\n  {{ expect_hex = \"{answer}\" }},\n]\n",
            postgres().addr
        )
    };
    assert_pass(&run_check(&hex("53")).await);
    let res = run_check(&hex("4e")).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "step 2 (expect_bytes 4e): 127.0.0.1:",
    );
    assert_fail(&res, FailureReason::Body, " sent 53 (\"S\") instead");
}

#[tokio::test]
async fn ftp_auth_tls_with_vsftpd() {
    let text = example("ftp-auth-tls", ftp().addr, true);
    let res = run_check(&text).await;
    assert_upgraded(&text, &res, 5);
}

#[tokio::test]
async fn redis_ping_and_a_capture_sent_back() {
    let text = example("redis-conversation", redis().addr, false);
    let res = run_check(&text).await;
    assert_pass(&res);
    let details = tcp_details(&res);
    assert_eq!(details.steps.len(), 7);
    assert!(details.tls.is_none() && details.tls_info.is_none());
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(
            &metrics,
            "nightjar_tcp_duration_seconds",
            &[("check", "redis-conversation"), ("phase", "tls")]
        ),
        None,
        "a plain conversation has no tls phase"
    );

    // A numbered group, and a wrong id: the capture really is what is sent.
    let numbered = |send: &str| {
        format!(
            "[[check]]\nname = \"ids\"\ntype = \"tcp\"\ntarget = \"{}\"\ntimeout = \"3s\"\nsteps = [\n  {{ send = \"CLIENT ID\\r\\n\" }},\n  {{ expect = '^:(\\d+)$', send = \"{send}\" }},\n  {{ expect = '^id=(\\d+) ' }},\n]\n",
            redis().addr
        )
    };
    assert_pass(&run_check(&numbered("CLIENT LIST ID ${1}\\r\\n")).await);
    let res = run_check(&numbered("CLIENT LIST ID 9${1}9\\r\\n")).await;
    assert_fail(
        &res,
        FailureReason::Timeout,
        "step 3 (expect \"^id=(\\\\d+) \"): timed out waiting for a line matching",
    );
}

#[tokio::test]
async fn tls_from_the_first_byte_with_redis_and_dovecot() {
    let text = example("redis-tls", redis().tls, true);
    let res = run_check(&text).await;
    assert_upgraded(&text, &res, 2);
    let text = example("pop3s-banner", dovecot().pop3s, true);
    let res = run_check(&text).await;
    assert_upgraded(&text, &res, 1);
    // min_version applies to the session.
    let text = text.replace("min_version = \"1.2\"", "min_version = \"1.3\"");
    assert_pass(&run_check(&text).await);
}

#[tokio::test]
async fn a_secret_sent_and_echoed_back_stays_out_of_the_detail() {
    let text = format!(
        "[[check]]\nname = \"echo\"\ntype = \"tcp\"\ntarget = \"{}\"\ntimeout = \"1s\"\nsteps = [\n  {{ send = \"ECHO ${{env:PROBE_SECRET}}\\r\\n\" }},\n  {{ expect = '^never' }},\n]\n",
        redis().addr
    );
    let res = crate::support::run_check_env(&text, &[("PROBE_SECRET", "hunter2-secret")]).await;
    assert_fail(&res, FailureReason::Timeout, "step 2 (expect \"^never\")");
    let Some(reason) = res.reason() else {
        unreachable!()
    };
    let detail = format!("{:?} {:?}", reason, res.status);
    assert!(!detail.contains("hunter2-secret"), "{detail}");
    assert!(detail.contains("$14"), "the echo came back: {detail}");
}

/// A long secret echoed back past the end of the detail's excerpt (120 bytes) leaves none of
/// its start in the detail.
#[tokio::test]
async fn a_secret_echoed_across_the_excerpts_end_stays_out_of_the_detail() {
    let padding = "x".repeat(100);
    let text = format!(
        "[[check]]\nname = \"echo\"\ntype = \"tcp\"\ntarget = \"{}\"\ntimeout = \"1s\"\nsteps = [\n  {{ send = \"ECHO {padding}${{env:PROBE_SECRET}}\\r\\n\" }},\n  {{ expect = '^never' }},\n]\n",
        redis().addr
    );
    let secret = "Zq8sW2-long-secret-value-0123456789abcdefghij";
    let res = crate::support::run_check_env(&text, &[("PROBE_SECRET", secret)]).await;
    assert_fail(&res, FailureReason::Timeout, "step 2 (expect \"^never\")");
    let Some(reason) = res.reason() else {
        unreachable!()
    };
    let detail = format!("{:?} {:?}", reason, res.status);
    assert!(
        detail.contains(&padding[..50]),
        "the echo came back: {detail}"
    );
    assert!(detail.contains("<redacted>"), "{detail}");
    assert!(!detail.contains(&secret[..8]), "{detail}");
}

#[tokio::test]
async fn the_shorthand_still_speaks_to_redis() {
    let text = format!(
        "[[check]]\nname = \"ping\"\ntype = \"tcp\"\ntarget = \"{}\"\ntimeout = \"3s\"\nsend = \"PING\\r\\n\"\nexpect = {{ matches = ['^\\+PONG'] }}\n",
        redis().addr
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    assert!(tcp_details(&res).steps.is_empty());
}

#[tokio::test]
async fn source_ip_is_the_address_redis_sees() {
    let check = |source: &str, expect: &str| {
        format!(
            "[[check]]\nname = \"from\"\ntype = \"tcp\"\ntarget = \"{}\"\ntimeout = \"3s\"\nsource_ip = \"{source}\"\nsteps = [\n  {{ send = \"CLIENT INFO\\r\\n\" }},\n  {{ expect = '{expect}' }},\n]\n",
            redis().addr
        )
    };
    let text = check("127.0.0.2", r"addr=127\.0\.0\.2:");
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_check_contract(&res, &metrics_after(&text, &res));
    // The expectation would fail from any other address.
    let res = run_check(&check("127.0.0.3", r"addr=127\.0\.0\.2:")).await;
    assert_fail(&res, FailureReason::Timeout, "step 2");
    let res = run_check(&check("::1", "addr=")).await;
    assert_fail(&res, FailureReason::Connect, "the address families differ");
}

#[tokio::test]
async fn an_invalid_chain_after_starttls_fails_with_its_certificate_reason() {
    let text = example("smtp-submission-starttls", smtp().self_signed, true);
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::CertInvalid,
        "step 6 (starttls): 127.0.0.1:",
    );
    let details = tcp_details(&res);
    let info = details.tls_info.as_ref().expect("the chain is reported");
    assert!(!info.chain_valid);
    assert_eq!(details.steps.len(), 6, "nothing after the handshake ran");
    let metrics = metrics_after_full(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(
            &metrics,
            "nightjar_tls_chain_valid",
            &[("check", "smtp-submission-starttls")]
        ),
        Some(0.0)
    );

    // insecure_skip_verify goes on, and still reports the verdict.
    let text = text.replace(
        "tls = { ca_file",
        "tls = { insecure_skip_verify = true, ca_file",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    assert!(!tcp_details(&res).tls_info.as_ref().unwrap().chain_valid);
}

#[tokio::test]
async fn a_starttls_refusal_fails_precisely() {
    // nginx without STARTTLS: the EHLO reply ends without offering it.
    let text = example("smtp-submission-starttls", smtp().plain_only, true);
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "step 3 (expect \"^250[ -]STARTTLS\"): 127.0.0.1:",
    );
    assert_fail(&res, FailureReason::Body, ", which matches fail_if");
    // Asked anyway, it refuses the command.
    let addr = smtp().plain_only;
    let text = format!(
        "[[check]]\nname = \"refused\"\ntype = \"tcp\"\ntarget = \"{addr}\"\ntimeout = \"3s\"\nsteps = [\n  {{ expect = '^220 ' }},\n  {{ send = \"STARTTLS\\r\\n\" }},\n  {{ expect = '^220 ', fail_if = '^[45]\\d\\d ' }},\n  {{ starttls = true }},\n]\n"
    );
    let start = Instant::now();
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "step 3 (expect \"^220 \"): 127.0.0.1:",
    );
    assert_fail(&res, FailureReason::Body, "answered \"5");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a refusal fails at once"
    );
    // Without an `expect` for the answer, the handshake meets it and says so.
    let text = text.replace("  { expect = '^220 ', fail_if = '^[45]\\d\\d ' },\n", "");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Tls,
        "it answered in plain text instead: \"5",
    );
}

/// An in-process server that runs `serve` on every connection; aborted on drop.
struct Scripted {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted<F, Fut>(serve: F) -> Scripted
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    Scripted { addr, task }
}

fn pop3_check(addr: SocketAddr, timeout: &str) -> String {
    format!(
        "[[check]]\nname = \"pop3\"\ntype = \"tcp\"\ntarget = \"{addr}\"\ntimeout = \"{timeout}\"\nsteps = [\n  {{ expect = '^\\+OK' }},\n  {{ send = \"STLS\\r\\n\" }},\n  {{ expect = '^\\+OK' }},\n  {{ starttls = true }},\n]\n"
    )
}

#[tokio::test]
async fn a_target_that_stalls_mid_conversation_times_out_naming_the_step() {
    let server = scripted(|mut stream| async move {
        let _ = stream.write_all(b"+OK ready\r\n").await;
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf).await;
        // Read STLS, answer nothing, hold the connection.
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let start = Instant::now();
    let res = run_check(&pop3_check(server.addr, "1s")).await;
    let took = start.elapsed();
    assert_fail(
        &res,
        FailureReason::Timeout,
        "step 3 (expect \"^\\\\+OK\"): timed out waiting for a line matching \"^\\\\+OK\"",
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let steps = &tcp_details(&res).steps;
    assert_eq!(
        steps.iter().map(|s| s.success).collect::<Vec<_>>(),
        [true, true, false]
    );
}

#[tokio::test]
async fn a_flood_is_read_up_to_the_cap() {
    let server = scripted(|mut stream| async move {
        let line = [b'x'; 1023];
        for _ in 0..100_000 {
            if stream.write_all(&line).await.is_err() || stream.write_all(b"\n").await.is_err() {
                return;
            }
        }
    })
    .await;
    let start = Instant::now();
    let res = run_check(&pop3_check(server.addr, "5s")).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "step 1 (expect \"^\\\\+OK\"): 127.0.0.1:",
    );
    assert_fail(
        &res,
        FailureReason::Body,
        "KiB a check reads without a line matching",
    );
    assert_eq!(tcp_details(&res).received, MAX_READ as u64);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn garbage_in_place_of_a_tls_handshake_is_a_tls_failure_that_quotes_it() {
    let server = scripted(|mut stream| async move {
        let _ = stream.write_all(b"+OK ready\r\n").await;
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"+OK go ahead\r\n").await;
        let _ = stream.read(&mut buf).await; // the ClientHello
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls at all")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let res = run_check(&pop3_check(server.addr, "2s")).await;
    assert_fail(
        &res,
        FailureReason::Tls,
        "step 4 (starttls): TLS handshake failed",
    );
    assert_fail(
        &res,
        FailureReason::Tls,
        "it answered in plain text instead: \"HTTP/1.1 400 Bad Request",
    );
    assert!(tcp_details(&res).tls_info.is_none());
}

#[test]
fn conversation_mistakes_are_config_errors_at_their_place() {
    let errors = config_errors(
        "conv.toml",
        r#"[[check]]
name = "a"
type = "tcp"
target = "db.example.com:5432"
send = "PING\r\n"
steps = [ { send = "PING\r\n" } ]

[[check]]
name = "b"
type = "tcp"
target = "db.example.com:5432"
steps = [
  { expect = '^\+OK (\S+)' },
  { send = "${2}" },
  { send = "${who}" },
  { send_hex = "0 1 2" },
  { expect = '^x', expect_bytes = "y" },
  { starttls = true },
  { starttls = true },
  { fail_if = '^-ERR' },
  {},
]

[[check]]
name = "c"
type = "tcp"
target = "db.example.com:5432"
expect = { min_days_left = 10 }
steps = [ { send = "QUIT\r\n" } ]

[[check]]
name = "d"
type = "tcp"
target = "db.example.com:5432"
steps = [ { send = "${1}" } ]
"#,
    );
    for want in [
        "conv.toml:6:9: `steps` and the `send`/`expect.matches` shorthand are both set",
        "conv.toml:14:12: ${2}: the latest `expect` has 1 capture group(s)",
        "conv.toml:15:12: unknown reference ${who}",
        "conv.toml:16:16: `send_hex` \"0 1 2\" is not hex bytes",
        "conv.toml:17:3: a step reads one way",
        "conv.toml:19:3: a second `starttls` (step 6 already starts TLS)",
        "conv.toml:20:15: `fail_if` goes with an `expect`",
        "conv.toml:21:3: a step does nothing",
        "conv.toml:28:12: `expect.min_days_left` and `expect.min_version` judge a TLS session",
        "conv.toml:35:20: ${1} refers to a capture group, and no earlier step has an `expect`",
    ] {
        assert!(errors.contains(want), "{want:?} missing from:\n{errors}");
    }
}
