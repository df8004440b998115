//! The `udp` check against a real UDP service (BIND: a DNS query sent as bytes, its ID
//! expected back, by address and by host name; BIND in a network namespace for `source_ip`,
//! which it sees through its `blackhole` list, and for an answer that comes only to the
//! resend, the first datagram dropped by an iptables `nth` rule), a port with nothing
//! listening (port unreachable), a black hole (a network namespace that drops every
//! datagram), and in-process servers for what no real one does: a flood of datagrams that
//! never match, and garbage.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nightjar::result::{Details, FailureReason};

use crate::support::bind::{Bind, ZONE};
use crate::support::netns::{ConfigFile, PROBER_V6, Pair, TARGET_V4};
use crate::support::{
    KillOnDrop, assert_check_contract, assert_fail, assert_pass, config_errors, eventually,
    free_port, metrics_after, require, run_check, sample,
};

fn udp_check(target: &str, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"udp\"\ntype = \"udp\"\ntarget = \"{target}\"\ninterval = \"30s\"\ntimeout = \"2s\"\n{extra}\n"
    )
}

/// A DNS query for the zone's SOA with the ID 0xbeef, as hex.
fn soa_query() -> String {
    let mut query = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ZONE.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 6, 0, 1]);
    query
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn a_dns_query_as_bytes_gets_its_id_back_from_bind() {
    let bind = Bind::primary();
    // The answer: the same ID, QR set, NOERROR (0x84 0x00 or 0x81 0x80 depending on AA).
    let text = udp_check(
        &bind.dns.to_string(),
        &format!("send_hex = \"{}\"\nexpect_hex = \"be ef\"", soa_query()),
    );
    let res = eventually(Duration::from_secs(20), "BIND to answer", || {
        let text = text.clone();
        async move {
            let res = run_check(&text).await;
            res.is_success().then_some(res)
        }
    })
    .await;
    let Details::Udp(details) = &res.details else {
        panic!("no udp details in {res:?}")
    };
    assert_eq!(details.sent, 1);
    assert!(details.received > 12, "{details:?}");
    assert_eq!(details.remote_addr, Some(bind.dns));
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    let check = [("check", "udp")];
    assert_eq!(
        sample(&metrics, "nightjar_udp_datagrams_sent", &check),
        Some(1.0)
    );
    assert!(sample(&metrics, "nightjar_udp_received_bytes", &check).is_some_and(|n| n > 12.0));
    let exchange = sample(
        &metrics,
        "nightjar_udp_duration_seconds",
        &[("check", "udp"), ("phase", "exchange")],
    );
    assert!(exchange.is_some_and(|secs| secs > 0.0), "{metrics}");

    // Another ID expected: every answer read, none matches.
    let text = udp_check(
        &bind.dns.to_string(),
        &format!(
            "send_hex = \"{}\"\nexpect_hex = \"1234\"\ncount = 2\nreply_timeout = \"300ms\"",
            soa_query()
        ),
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "2 datagrams came back from 127.0.0.1",
    );
    assert_fail(
        &res,
        FailureReason::Body,
        "(expect_hex 1234); the last: hex beef",
    );
    // A regex over the answer read as text: the zone's name is in it.
    let text = udp_check(
        &bind.dns.to_string(),
        &format!(
            "send_hex = \"{}\"\nexpect = ['nightjar.test', 'hostmaster']",
            soa_query()
        ),
    );
    assert_pass(&run_check(&text).await);
}

#[tokio::test]
async fn a_port_with_nothing_listening_is_unreachable() {
    let target = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let start = Instant::now();
    let res = run_check(&udp_check(&target.to_string(), "send = \"ping\\n\"")).await;
    assert_fail(
        &res,
        FailureReason::Unreachable,
        "port unreachable: nothing listens there",
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no waiting for the timeout"
    );
    let target = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, free_port()));
    let res = run_check(&udp_check(&target.to_string(), "send = \"ping\\n\"")).await;
    assert_fail(&res, FailureReason::Unreachable, "ICMP port unreachable");
}

#[test]
fn a_black_hole_times_out_after_count_datagrams() {
    let pair = Pair::new();
    pair.in_target("iptables", &["-A", "INPUT", "-p", "udp", "-j", "DROP"]);
    let text = udp_check(
        &format!("{TARGET_V4}:123"),
        "send = \"hello\"\ncount = 3\nreply_timeout = \"200ms\"",
    );
    let config = ConfigFile::new(&text);
    let start = Instant::now();
    let results = pair.check(&config.path(), false);
    let took = start.elapsed();
    let result = &results[0];
    assert_eq!(result["reason"], "timeout", "{result:#}");
    assert_eq!(
        result["detail"], "no answer from 10.77.0.2:123 to 3 datagrams, 200ms apart",
        "{result:#}"
    );
    assert_eq!(result["udp"]["sent"], 3);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_flood_that_never_matches_is_bounded_and_garbage_is_shown_as_hex() {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    // Answers each datagram with a flood of datagrams that do not match.
    let flood = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((_, peer)) = server.recv_from(&mut buf).await {
            for _ in 0..1000 {
                if server
                    .send_to(&[0xff, 0x00, 0x13, 0x37], peer)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    let start = Instant::now();
    let text = udp_check(&addr.to_string(), "send = \"hi\"\nexpect = ['^OK']");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "sent 256 datagrams and none matched; the last: hex ff001337",
    );
    assert!(start.elapsed() < Duration::from_millis(2500));
    let Details::Udp(details) = &res.details else {
        panic!()
    };
    assert_eq!(details.received, 256 * 4, "reads stop at the cap");
    assert_check_contract(&res, &metrics_after(&text, &res));
    flood.abort();
}

#[test]
fn config_errors_name_their_place() {
    let errors = config_errors(
        "udp.toml",
        "[[check]]\nname = \"u\"\ntype = \"udp\"\ntarget = \"ntp.example.com\"\nsend = \"x\"\nsend_hex = \"zz\"\nexpect_hex = \"abc\"\n",
    );
    for part in [
        "udp.toml:4:10: target \"ntp.example.com\" is not HOST:PORT",
        "udp.toml:6:12: check \"u\" sets both `send` and `send_hex`",
        "udp.toml:7:14: `expect_hex` in check \"u\": \"abc\" is not hex bytes",
    ] {
        assert!(errors.contains(part), "{errors}\nlacks {part}");
    }
    let errors = config_errors(
        "udp.toml",
        "[[check]]\nname = \"u\"\ntype = \"udp\"\ntarget = \"ntp.example.com:123\"\n",
    );
    assert!(
        errors.contains("is missing the datagram to send"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_host_name_target_is_resolved_first() {
    let bind = Bind::primary();
    let query = format!("send_hex = \"{}\"\nexpect_hex = \"be ef\"", soa_query());
    let text = udp_check(
        &format!("localhost:{}", bind.dns.port()),
        &format!("{query}\nip_protocol = \"ip4\""),
    );
    let res = eventually(Duration::from_secs(20), "BIND to answer", || {
        let text = text.clone();
        async move {
            let res = run_check(&text).await;
            res.is_success().then_some(res)
        }
    })
    .await;
    let Details::Udp(details) = &res.details else {
        panic!("no udp details in {res:?}")
    };
    assert_eq!(
        details.remote_addr,
        Some(bind.dns),
        "localhost is 127.0.0.1"
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
    // A name that does not resolve is a `dns` failure, nothing sent.
    let res = run_check(&udp_check("nowhere.invalid:53", &query)).await;
    assert_fail(&res, FailureReason::Dns, "nowhere.invalid");
    let Details::Udp(details) = &res.details else {
        panic!("no udp details in {res:?}")
    };
    assert_eq!(details.sent, 0);
}

/// BIND inside the pair's target, on 10.77.0.2:53, with no zone and no recursion: it answers
/// every query with REFUSED and the query's ID, and ignores queries from `blackhole`.
fn named_in_target(pair: &Pair, dir: &tempfile::TempDir, blackhole: &str) -> KillOnDrop {
    let conf = dir.path().join("named.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  listen-on port 53 {{ {TARGET_V4}; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  blackhole {{ {blackhole}; }};\n  notify no;\n}};\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new(require("ip", "iproute2"))
        .args(["netns", "exec", &pair.target])
        .arg(require("named", "bind9"))
        .arg("-g")
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start named");
    KillOnDrop(child)
}

/// A query to the namespace's BIND, expecting its ID back, from `source` when set.
fn query_in(pair: &Pair, extra: &str) -> serde_json::Value {
    let text = udp_check(
        &format!("{TARGET_V4}:53"),
        &format!(
            "send_hex = \"{}\"\nexpect_hex = \"be ef\"\n{extra}",
            soa_query()
        ),
    );
    let config = ConfigFile::new(&text);
    let mut results = pair.check(&config.path(), false);
    assert_eq!(results.len(), 1, "{results:?}");
    results.remove(0)
}

/// Polls until the namespace's BIND answers (the first query a check sends).
fn wait_for_named(pair: &Pair) {
    let start = Instant::now();
    loop {
        let result = query_in(pair, "count = 1\nreply_timeout = \"500ms\"");
        if result["success"] == true {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "BIND in the namespace never answered: {result:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn source_ip_is_the_address_bind_sees_and_the_other_family_fails() {
    let pair = Pair::new();
    pair.in_prober(
        "ip",
        &["addr", "add", "10.77.0.3/24", "dev", &pair.prober_link],
    );
    let dir = tempfile::tempdir().unwrap();
    let _named = named_in_target(&pair, &dir, "10.77.0.3");
    wait_for_named(&pair);
    let quick = "count = 2\nreply_timeout = \"200ms\"\n";
    for source in ["", "source_ip = \"10.77.0.1\""] {
        let result = query_in(&pair, &format!("{quick}{source}"));
        assert_eq!(result["success"], true, "{source}: {result:#}");
    }
    // BIND ignores 10.77.0.3: only the source differs.
    let result = query_in(&pair, &format!("{quick}source_ip = \"10.77.0.3\""));
    assert_eq!(result["reason"], "timeout", "{result:#}");
    assert_eq!(
        result["detail"], "no answer from 10.77.0.2:53 to 2 datagrams, 200ms apart",
        "{result:#}"
    );
    // An IPv6 source for an IPv4 target: `connect`, naming both.
    let result = query_in(&pair, &format!("{quick}source_ip = \"{PROBER_V6}\""));
    assert_eq!(result["reason"], "connect", "{result:#}");
    let detail = result["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("[{PROBER_V6}]:0")) && detail.contains("10.77.0.2:53"),
        "{detail}"
    );
}

#[test]
fn an_answer_that_comes_only_to_the_resend_passes() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let _named = named_in_target(&pair, &dir, "none");
    wait_for_named(&pair);
    // From now on the target drops every other datagram to BIND, the first one included.
    pair.in_target(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            "53",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "2",
            "--packet",
            "0",
            "-j",
            "DROP",
        ],
    );
    let result = query_in(&pair, "count = 3\nreply_timeout = \"300ms\"");
    assert_eq!(result["success"], true, "{result:#}");
    assert_eq!(result["udp"]["sent"], 2, "{result:#}");
    // The answer came after the first datagram's reply_timeout, to the second.
    let exchange = result["phases"]["exchange"].as_f64().unwrap();
    assert!((0.3..0.6).contains(&exchange), "{result:#}");
    // The next datagram is dropped again: with no resend, no answer.
    let result = query_in(&pair, "count = 1\nreply_timeout = \"300ms\"");
    assert_eq!(result["reason"], "timeout", "{result:#}");
    assert_eq!(result["udp"]["sent"], 1, "{result:#}");
}
