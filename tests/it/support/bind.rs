//! A real BIND 9 on loopback: the zone `nightjar.test`, signed with `dnssec-signzone` so its
//! RRSIGs expire ten days from now, served over UDP, TCP, DNS-over-TLS and DNS-over-HTTPS;
//! and a second BIND serving the same zone with an older SOA serial (a stuck secondary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, pki, require, wait_for_tcp};

/// The zone every BIND here serves.
pub const ZONE: &str = "nightjar.test";
/// The primary's SOA serial.
pub const SERIAL: u32 = 2_026_112_201;
/// The stale secondary's SOA serial.
pub const STALE_SERIAL: u32 = 2_026_111_501;
/// What BIND answers to `version.bind` (class CH, type TXT).
pub const VERSION: &str = "nightjar-test-bind";
/// How far ahead the RRSIGs expire.
pub const RRSIG_DAYS: i64 = 10;

/// A running BIND; stopped on drop.
pub struct Bind {
    /// Plain DNS, UDP and TCP.
    pub dns: SocketAddr,
    /// DNS over TLS.
    pub dot: SocketAddr,
    /// DNS over HTTPS, endpoint `/dns-query`.
    pub doh: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

fn zone_text(serial: u32) -> String {
    let mut zone = format!(
        "$TTL 300\n@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. ({serial} 3600 600 86400 300)\n\
@ IN NS ns1.{ZONE}.\n@ IN NS ns2.{ZONE}.\n\
ns1 IN A 127.0.0.1\nns2 IN A 127.0.0.1\n\
www IN A 203.0.113.5\nwww IN A 203.0.113.6\nwww 3600 IN AAAA 2001:db8::5\n\
@ IN MX 10 mx1.{ZONE}.\n@ IN TXT \"v=spf1 -all\"\n@ IN CAA 0 issue \"letsencrypt.org\"\n\
_sip._tcp IN SRV 10 5 5060 sip.{ZONE}.\nalias IN CNAME www.{ZONE}.\n"
    );
    // More than fits in a 4096-byte UDP answer: the answer comes truncated, then over TCP.
    for idx in 0..40 {
        zone.push_str(&format!("big IN TXT \"{idx:02}-{}\"\n", "x".repeat(200)));
    }
    // Service discovery: an SRV set and addresses of a pool (tests/it/discovery.rs).
    zone.push_str(&format!(
        "_https._tcp IN SRV 10 5 8443 web1.{ZONE}.\n_https._tcp IN SRV 10 5 8443 web2.{ZONE}.\n\
_https._tcp IN SRV 20 5 443 web3.{ZONE}.\n\
pool IN A 192.0.2.10\npool IN A 192.0.2.11\npool IN AAAA 2001:db8::10\n"
    ));
    zone
}

/// Signs the zone once per test process; returns the signed zone files (current and stale).
fn signed_zones() -> &'static (PathBuf, PathBuf) {
    static SIGNED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let keygen = require("dnssec-keygen", "bind9-utils");
        let signzone = require("dnssec-signzone", "bind9-utils");
        let dir = tempfile::Builder::new()
            .prefix("nightjar-zone-")
            .tempdir()
            .unwrap()
            .keep();
        for args in [
            &["-a", "ECDSAP256SHA256", "-K"][..],
            &["-a", "ECDSAP256SHA256", "-f", "KSK", "-K"][..],
        ] {
            let out = Command::new(&keygen)
                .args(args)
                .arg(&dir)
                .arg(ZONE)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "dnssec-keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let sign = |serial: u32, name: &str| -> PathBuf {
            let unsigned = dir.join(format!("{name}.zone"));
            std::fs::write(&unsigned, zone_text(serial)).unwrap();
            let signed = dir.join(format!("{name}.zone.signed"));
            let out = Command::new(&signzone)
                .arg("-S")
                .arg("-K")
                .arg(&dir)
                .args(["-e", &format!("+{}", RRSIG_DAYS * 86_400), "-o", ZONE, "-f"])
                .arg(&signed)
                .arg(&unsigned)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "dnssec-signzone: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            signed
        };
        (sign(SERIAL, "primary"), sign(STALE_SERIAL, "stale"))
    })
}

impl Bind {
    /// The primary, with the current serial.
    pub fn primary() -> Bind {
        Bind::start(&signed_zones().0)
    }

    /// A secondary stuck on an older serial.
    pub fn stale() -> Bind {
        Bind::start(&signed_zones().1)
    }

    fn start(zone: &Path) -> Bind {
        let named = require("named", "bind9");
        let pki = pki();
        let dir = tempfile::Builder::new()
            .prefix("nightjar-bind-")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dot = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let doh = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let conf = format!(
            r#"tls local-tls {{ cert-file "{cert}"; key-file "{key}"; }};
http local-http {{ endpoints {{ "/dns-query"; }}; }};
options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  listen-on port {dns_port} {{ 127.0.0.1; }};
  listen-on port {dot_port} tls local-tls {{ 127.0.0.1; }};
  listen-on port {doh_port} tls local-tls http local-http {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  allow-query {{ any; }};
  notify no;
  version "{VERSION}";
}};
zone "{ZONE}" {{ type primary; file "{zone}"; }};
"#,
            cert = pki.leaf.chain.display(),
            key = pki.leaf.key.display(),
            zone = zone.display(),
            dns_port = dns.port(),
            dot_port = dot.port(),
            doh_port = doh.port(),
        );
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log_path = dir.path().join("named.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(named)
            .arg("-g")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start named");
        for addr in [dns, dot, doh] {
            wait_for_tcp(addr, Duration::from_secs(20));
        }
        // named opens its sockets before it has loaded the zone; until it says "running", a
        // query can get SERVFAIL. Its banner's "running as: named ..." comes first and does
        // not count: the line that ends with "running" does.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log_path).is_ok_and(|log| {
            log.lines()
                .any(|line| line.trim_end().ends_with(" running"))
        }) {
            assert!(
                Instant::now() < deadline,
                "named did not say it was running within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Bind {
            dns,
            dot,
            doh,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
