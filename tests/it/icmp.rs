//! The `icmp` check against the kernel's own echo responder: 127.0.0.1 and ::1 in this
//! process (root: the socket this namespace's `ping_group_range` implies, left as it is), and
//! targets in network namespaces reached from a prober namespace, where the binary runs as
//! root (raw socket) or as `nobody` with `ping_group_range` open (datagram socket) or closed
//! (`permission`); with loss from iptables `statistic` rules, ICMP errors from `REJECT`,
//! delay from a `tbf` qdisc (and netem where the kernel has it), `ttl`, `dont_fragment` and
//! `payload_size` through a router namespace with a 1280-byte link, `source_ip` seen by the
//! target, and a flood of replies that are not the check's.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nightjar::result::{Details, FailureReason, IcmpSocketKind};
use serde_json::Value;

use crate::support::netns::{ConfigFile, FAR_V4, PROBER_V6, Pair, TARGET_V4, TARGET_V6};
use crate::support::{
    assert_check_contract, assert_fail, assert_pass, config_errors, metrics_after, run_check,
    sample,
};

fn icmp_check(target: &str, extra: &str) -> String {
    let mut text = format!(
        "[[check]]\nname = \"ping\"\ntype = \"icmp\"\ntarget = \"{target}\"\ninterval = \"30s\"\n{extra}\n"
    );
    if !extra.contains("timeout") {
        text.push_str("timeout = \"2s\"\n");
    }
    if !extra.contains("packet_interval") {
        text.push_str("packet_interval = \"20ms\"\n");
    }
    text
}

#[tokio::test]
async fn loopback_answers_over_ipv4_and_ipv6() {
    for (target, family) in [("127.0.0.1", 4.0), ("::1", 6.0)] {
        let text = icmp_check(target, "count = 4");
        let res = run_check(&text).await;
        assert_pass(&res);
        let Details::Icmp(details) = &res.details else {
            panic!("no icmp details in {res:?}")
        };
        assert_eq!((details.sent, details.received), (4, 4), "{details:?}");
        assert_eq!(
            details.socket,
            Some(socket_for_this_namespace()),
            "the socket this namespace's ping_group_range implies for group 0"
        );
        assert_eq!(details.reply_hop_limit, Some(64), "{target}");
        assert!(details.rtt_min <= details.rtt && details.rtt <= details.rtt_max);
        assert!(details.rtt > Duration::ZERO && details.rtt < Duration::from_millis(50));
        let metrics = metrics_after(&text, &res);
        assert_check_contract(&res, &metrics);
        let check = [("check", "ping")];
        assert_eq!(sample(&metrics, "probe_ip_protocol", &check), Some(family));
        assert_eq!(
            sample(&metrics, "probe_icmp_reply_hop_limit", &check),
            Some(64.0)
        );
        assert_eq!(
            sample(&metrics, "nightjar_icmp_packets_sent", &check),
            Some(4.0)
        );
        assert_eq!(
            sample(&metrics, "nightjar_icmp_packets_received", &check),
            Some(4.0)
        );
        let rtt = sample(
            &metrics,
            "probe_icmp_duration_seconds",
            &[("check", "ping"), ("phase", "rtt")],
        );
        assert!(rtt.is_some_and(|secs| secs > 0.0), "{metrics}");
        for name in ["min", "avg", "max", "stddev"] {
            let family = format!("nightjar_icmp_rtt_{name}_seconds");
            assert!(
                sample(&metrics, &family, &check).is_some(),
                "{family}: {metrics}"
            );
        }
    }
}

/// The socket a check opens here as root (group 0): a datagram socket where this
/// namespace's `net.ipv4.ping_group_range` includes group 0, a raw one otherwise. The
/// namespace tests below set the range themselves and assert each kind.
fn socket_for_this_namespace() -> IcmpSocketKind {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let bounds: Vec<u64> = range
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    if bounds[0] == 0 && bounds[1] >= bounds[0] {
        IcmpSocketKind::Datagram
    } else {
        IcmpSocketKind::Raw
    }
}

#[tokio::test]
async fn a_round_trip_over_max_rtt_is_too_slow() {
    let res = run_check(&icmp_check("127.0.0.1", "max_rtt = \"1ns\"")).await;
    assert_fail(&res, FailureReason::TooSlow, "over max_rtt 1ns (3 replies");
}

/// The results of `text` run by the binary inside the pair's prober.
fn check_in(pair: &Pair, text: &str, unprivileged: bool) -> Value {
    let config = ConfigFile::new(text);
    let mut results = pair.check(&config.path(), unprivileged);
    assert_eq!(results.len(), 1, "{results:?}");
    results.remove(0)
}

fn icmp_of(result: &Value) -> (u64, u64, Value) {
    let icmp = &result["icmp"];
    (
        icmp["sent"].as_u64().unwrap_or_default(),
        icmp["received"].as_u64().unwrap_or_default(),
        icmp.clone(),
    )
}

#[test]
fn a_namespace_answers_over_the_datagram_and_the_raw_socket() {
    let pair = Pair::new();
    // Every group but root's: `nobody` gets a datagram socket, root falls back to raw.
    pair.ping_group_range("1 2147483647");
    for target in [TARGET_V4, TARGET_V6] {
        let text = icmp_check(target, "count = 3");
        for (unprivileged, socket) in [(true, "datagram"), (false, "raw")] {
            let result = check_in(&pair, &text, unprivileged);
            assert_eq!(result["success"], true, "{result:#}");
            let (sent, received, icmp) = icmp_of(&result);
            assert_eq!((sent, received), (3, 3), "{icmp:#}");
            assert_eq!(icmp["socket"], socket, "{icmp:#}");
            // One link, no router: the target's own default hop limit comes back.
            assert_eq!(
                icmp["reply_hop_limit"], 64,
                "{target} over {socket}: {icmp:#}"
            );
        }
    }
}

#[test]
fn without_a_datagram_socket_or_cap_net_raw_the_failure_says_what_to_change() {
    let pair = Pair::new();
    // A new namespace's range is "1 0": no group may open a datagram socket.
    let result = check_in(&pair, &icmp_check(TARGET_V4, ""), true);
    assert_eq!(result["reason"], "permission", "{result:#}");
    let detail = result["detail"].as_str().unwrap();
    for part in [
        "group 65534",
        "net.ipv4.ping_group_range",
        "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
        "CAP_NET_RAW",
        "setcap cap_net_raw+ep",
        "AmbientCapabilities=CAP_NET_RAW",
    ] {
        assert!(detail.contains(part), "{detail:?} lacks {part:?}");
    }
}

#[test]
fn loss_applied_in_the_target_is_the_loss_measured() {
    let pair = Pair::new();
    pair.ping_group_range("0 2147483647");
    // Every request dropped: exactly 100 %, for both families.
    pair.in_target(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-p",
            "icmp",
            "--icmp-type",
            "echo-request",
            "-j",
            "DROP",
        ],
    );
    pair.in_target(
        "ip6tables",
        &[
            "-A",
            "INPUT",
            "-p",
            "ipv6-icmp",
            "--icmpv6-type",
            "echo-request",
            "-j",
            "DROP",
        ],
    );
    for target in [TARGET_V4, TARGET_V6] {
        let start = Instant::now();
        let result = check_in(
            &pair,
            &icmp_check(target, "count = 5\ntimeout = \"1s\""),
            true,
        );
        assert_eq!(result["reason"], "loss", "{result:#}");
        assert!(
            result["detail"]
                .as_str()
                .unwrap()
                .contains("5 echo requests to"),
            "{result:#}"
        );
        let (sent, received, icmp) = icmp_of(&result);
        assert_eq!((sent, received), (5, 0));
        assert_eq!(icmp["loss_ratio"], 1.0);
        assert!(
            icmp["rtt_avg_seconds"].is_null(),
            "no reply, no round trip: {icmp:#}"
        );
        // Waits for the replies until its timeout, no longer.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
    // Half of them: 200 requests, so the measured share is within ±0.2 of 0.5 but for
    // odds of about 1e-8 (binomial, sd 0.035).
    pair.in_target("iptables", &["-F", "INPUT"]);
    pair.in_target(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-p",
            "icmp",
            "--icmp-type",
            "echo-request",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.5",
            "-j",
            "DROP",
        ],
    );
    let text = icmp_check(
        TARGET_V4,
        "count = 200\npacket_interval = \"2ms\"\ntimeout = \"3s\"",
    );
    let result = check_in(&pair, &text, true);
    assert_eq!(result["reason"], "loss", "{result:#}");
    let (sent, received, icmp) = icmp_of(&result);
    assert_eq!(sent, 200);
    let loss = icmp["loss_ratio"].as_f64().unwrap();
    assert!(
        (0.3..=0.7).contains(&loss),
        "measured loss {loss}, {received} replies"
    );
    // With max_loss above what is applied, the same run passes.
    let result = check_in(
        &pair,
        &text.replace("count = 200", "count = 200\nmax_loss = 0.9"),
        true,
    );
    assert_eq!(result["success"], true, "{result:#}");
    // No loss: exactly 0 %.
    pair.in_target("iptables", &["-F", "INPUT"]);
    let result = check_in(
        &pair,
        &icmp_check(TARGET_V4, "count = 20\npacket_interval = \"5ms\""),
        true,
    );
    assert_eq!(result["success"], true, "{result:#}");
    assert_eq!(icmp_of(&result).2["loss_ratio"], 0.0);
}

/// The round trips of `count` echo requests `interval` apart whose replies leave through a
/// token bucket of `rate` bytes a second and `burst` bytes, each reply `len` bytes on the
/// link: a reply waits until the bucket holds its length.
fn token_bucket_rtts(count: usize, interval: f64, rate: f64, burst: f64, len: f64) -> Vec<f64> {
    let (mut tokens, mut last) = (burst, 0.0_f64);
    (0..count)
        .map(|k| {
            let sent = k as f64 * interval;
            let mut at = sent.max(last);
            tokens = (tokens + (at - last) * rate).min(burst);
            if tokens < len {
                at += (len - tokens) / rate;
                tokens = len;
            }
            tokens -= len;
            last = at;
            at - sent
        })
        .collect()
}

#[test]
fn delay_from_a_token_bucket_in_the_target_is_the_round_trip_measured() {
    // The target's replies leave through `tbf` at 80 kbit/s (10,000 bytes a second) with a
    // 1600-byte bucket; requests of 1000 payload bytes sent 1 ms apart queue their replies
    // behind each other, each 1042 bytes on the link (14 Ethernet + 20 IP + 8 ICMP + 1000),
    // so 104.2 ms of serialisation per queued reply.
    let pair = Pair::new();
    let text = icmp_check(
        TARGET_V4,
        "count = 5\npacket_interval = \"1ms\"\npayload_size = 1000\ntimeout = \"3s\"",
    );
    let rtts = |result: &Value| {
        let icmp = &result["icmp"];
        let secs = |key: &str| {
            icmp[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {icmp:#}"))
        };
        (secs("rtt_avg_seconds"), secs("rtt_max_seconds"))
    };
    // Unshaped first (this also settles ARP, whose reply would otherwise take tokens).
    let result = check_in(&pair, &text, false);
    assert_eq!(result["success"], true, "{result:#}");
    let (fast_avg, fast_max) = rtts(&result);
    pair.in_target(
        "tc",
        &[
            "qdisc",
            "add",
            "dev",
            &pair.target_link,
            "root",
            "tbf",
            "rate",
            "80kbit",
            "burst",
            "1600",
            "latency",
            "2s",
        ],
    );
    let model = token_bucket_rtts(5, 0.001, 10_000.0, 1600.0, 1042.0);
    let model_avg = model.iter().sum::<f64>() / model.len() as f64;
    let model_max = model.iter().copied().fold(0.0, f64::max);
    let result = check_in(&pair, &text, false);
    assert_eq!(result["success"], true, "{result:#}");
    let (avg, max) = rtts(&result);
    eprintln!(
        "tbf 80kbit: avg {:.1} ms (model {:.1}), max {:.1} ms (model {:.1}); unshaped avg {:.3} ms, max {:.3} ms",
        avg * 1e3,
        model_avg * 1e3,
        max * 1e3,
        model_max * 1e3,
        fast_avg * 1e3,
        fast_max * 1e3
    );
    for (what, measured, applied) in [("avg", avg, model_avg), ("max", max, model_max)] {
        assert!(
            (applied * 0.8..applied * 1.25 + 0.01).contains(&measured),
            "{what}: the qdisc applied {applied} s, {measured} s measured"
        );
    }
    assert!(
        fast_max < model_avg / 10.0,
        "unshaped max {fast_max} s is not far below the shaped avg {model_avg} s"
    );
}

#[test]
fn delay_applied_in_the_target_is_the_round_trip_measured_where_netem_exists() {
    let pair = Pair::new();
    let link = links_in(&pair.target);
    let added = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.target,
            "tc",
            "qdisc",
            "add",
            "dev",
            &link,
            "root",
            "netem",
            "delay",
            "40ms",
        ])
        .output()
        .unwrap();
    if !added.status.success() {
        // This kernel has no sch_netem: loss comes from iptables above, and delay cannot be
        // applied at all. Say so instead of passing silently.
        eprintln!(
            "netem is not available ({}): the delay case is not run",
            String::from_utf8_lossy(&added.stderr).trim()
        );
        return;
    }
    let result = check_in(&pair, &icmp_check(TARGET_V4, "count = 3"), false);
    assert_eq!(result["success"], true, "{result:#}");
    let avg = icmp_of(&result).2["rtt_avg_seconds"].as_f64().unwrap();
    assert!(
        (0.040..0.5).contains(&avg),
        "40 ms applied, {avg} s measured"
    );
}

/// The veth end inside `ns`.
fn links_in(ns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "type", "veth"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let name = text.split(": ").nth(1).unwrap_or_default();
    name.split('@').next().unwrap_or_default().to_string()
}

#[test]
fn a_target_that_rejects_is_unreachable_with_the_icmp_code_named() {
    let pair = Pair::new();
    pair.ping_group_range("1 2147483647");
    pair.in_target(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-p",
            "icmp",
            "--icmp-type",
            "echo-request",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-host-unreachable",
        ],
    );
    pair.in_target(
        "ip6tables",
        &[
            "-A",
            "INPUT",
            "-p",
            "ipv6-icmp",
            "--icmpv6-type",
            "echo-request",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp6-adm-prohibited",
        ],
    );
    let cases = [
        (
            TARGET_V4,
            "destination host unreachable (ICMP type 3 code 1) from 10.77.0.2",
        ),
        (
            TARGET_V6,
            "communication with destination administratively prohibited (ICMP type 1 code 1) from fd77::2",
        ),
    ];
    for (target, said) in cases {
        for unprivileged in [true, false] {
            let start = Instant::now();
            let result = check_in(&pair, &icmp_check(target, "count = 3"), unprivileged);
            assert_eq!(result["reason"], "unreachable", "{result:#}");
            let detail = result["detail"].as_str().unwrap();
            assert!(detail.contains(said), "{detail:?} lacks {said:?}");
            // Every request answered by an error: the run ends without waiting for its
            // timeout.
            assert!(
                start.elapsed() < Duration::from_millis(1500),
                "{:?}",
                start.elapsed()
            );
        }
    }
}

#[tokio::test]
async fn replies_that_are_not_the_checks_are_ignored_and_a_flood_is_bounded() {
    // A raw socket floods 127.0.0.1 with echo replies of every wrong kind while the check
    // pings it: another identifier, sequence numbers the check never sent, a wrong payload,
    // truncated messages, other ICMP types.
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Raw,
        nix::sys::socket::SockFlag::empty(),
        nix::sys::socket::SockProtocol::Icmp,
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, flooded) = (stop.clone(), flooded.clone());
        std::thread::spawn(move || {
            let to = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(
                Ipv4Addr::LOCALHOST,
                0,
            ));
            let garbage: Vec<Vec<u8>> = vec![
                reply(0x1111, 0, &[0; 56]),
                reply(0x2222, 1, b"not the payload"),
                reply(0x3333, 9000, &[0xaa; 56]),
                vec![0, 0],
                vec![3, 1, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 28],
                vec![0xff; 200],
            ];
            while !stop.load(Ordering::Relaxed) {
                for packet in &garbage {
                    let _ = nix::sys::socket::sendto(
                        sock.as_raw_fd(),
                        packet,
                        &to,
                        nix::sys::socket::MsgFlags::empty(),
                    );
                    flooded.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let start = Instant::now();
    let text = icmp_check("127.0.0.1", "count = 5\npacket_interval = \"100ms\"");
    let res = run_check(&text).await;
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert!(flooded.load(Ordering::Relaxed) > 100, "the flood ran");
    // Either every reply was found among the flood, or the run stopped reading after
    // MAX_IGNORED other messages and counted the rest as lost; never a hang.
    match &res.status {
        nightjar::result::Status::Pass => {
            let Details::Icmp(details) = &res.details else {
                panic!()
            };
            assert_eq!(details.received, 5);
        }
        nightjar::result::Status::Fail(failure) => {
            assert_eq!(failure.reason, FailureReason::Loss, "{failure:?}");
            assert!(
                failure
                    .detail
                    .contains("stopped reading after 4096 messages that were not replies"),
                "{failure:?}"
            );
        }
    }
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_check_contract(&res, &metrics_after(&text, &res));
}

/// An ICMPv4 echo reply with a valid checksum.
fn reply(ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = nightjar::checks::icmp::codec::echo_request(false, ident, seq, payload);
    packet[0] = 0;
    packet[2..4].copy_from_slice(&[0, 0]);
    let sum = nightjar::checks::icmp::codec::checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

#[test]
fn config_errors_name_their_place() {
    let errors = config_errors(
        "icmp.toml",
        "[[check]]\nname = \"p\"\ntype = \"icmp\"\ntarget = \"db.example.com:22\"\ntimeout = \"2s\"\ncount = 5\npacket_interval = \"500ms\"\nmax_loss = 1\nttl = 300\n",
    );
    for part in [
        "icmp.toml:4:10: target \"db.example.com:22\" is not a host name or IP address",
        "icmp.toml:7:1: 5 echo requests 500ms apart take 2s to send, not less than the timeout 2s",
        "icmp.toml:8:12: `max_loss` in check \"p\" must be a ratio from 0 up to 1 (not 1)",
        "icmp.toml:9:7: `ttl` in check \"p\" must be from 1 to 255, found 300",
    ] {
        assert!(errors.contains(part), "{errors}\nlacks {part}");
    }
}

#[test]
fn ttl_dont_fragment_and_payload_size_are_what_the_path_sees() {
    // prober -- target, a router -- far, over a 1280-byte link.
    let pair = Pair::routed(1280);
    pair.ping_group_range("0 2147483647");
    let run = |extra: &str| check_in(&pair, &icmp_check(FAR_V4, extra), true);
    let detail = |result: &Value| result["detail"].as_str().unwrap_or_default().to_string();
    // ttl: one hop is one too few, the router says so; 64 gets there, and the reply comes
    // back through the router (64 - 1).
    let result = run("count = 3\nttl = 1");
    assert_eq!(result["reason"], "unreachable", "{result:#}");
    assert!(
        detail(&result).contains(
            "time to live exceeded in transit (ICMP type 11 code 0) from 10.77.0.2 for 3 of 3 echo requests"
        ),
        "{result:#}"
    );
    let result = run("count = 3\nttl = 64");
    assert_eq!(result["success"], true, "{result:#}");
    assert_eq!(result["icmp"]["reply_hop_limit"], 63, "{result:#}");
    // 1400 payload bytes are 1428 on the wire, over the far link's 1280: without DF the
    // router fragments them; with DF it answers "fragmentation needed" (and once the
    // prober has learnt the path MTU, sending fails here with "Message too long").
    let result = run("count = 3\npayload_size = 1400");
    assert_eq!(result["success"], true, "without DF: {result:#}");
    let result = run("count = 3\npayload_size = 1400\ndont_fragment = true");
    assert_eq!(result["reason"], "unreachable", "{result:#}");
    assert!(
        detail(&result)
            .contains("fragmentation needed and DF set (ICMP type 3 code 4) from 10.77.0.2"),
        "{result:#}"
    );
    let result = run("count = 3\npayload_size = 1400\ndont_fragment = true");
    assert_eq!(result["reason"], "unreachable", "{result:#}");
    assert!(
        detail(&result).contains("Message too long")
            || detail(&result).contains("fragmentation needed"),
        "{result:#}"
    );
    // A payload that fits passes with DF.
    let result = run("count = 3\npayload_size = 1200\ndont_fragment = true");
    assert_eq!(result["success"], true, "{result:#}");
    // payload_size: the router drops requests over 1000 bytes of IP packet (20 IP + 8 ICMP
    // header + payload), so 972 bytes pass and 973 are all lost.
    pair.in_target(
        "iptables",
        &[
            "-A",
            "FORWARD",
            "-p",
            "icmp",
            "--icmp-type",
            "echo-request",
            "-m",
            "length",
            "--length",
            "1001:65535",
            "-j",
            "DROP",
        ],
    );
    let result = run("count = 3\npayload_size = 972");
    assert_eq!(result["success"], true, "{result:#}");
    let result = run("count = 3\npayload_size = 973\ntimeout = \"1s\"");
    assert_eq!(result["reason"], "loss", "{result:#}");
    assert_eq!(icmp_of(&result).1, 0, "{result:#}");
}

#[test]
fn source_ip_is_the_address_the_target_sees_and_the_other_family_fails() {
    let pair = Pair::new();
    // Every group but root's: `nobody` gets a datagram socket, root a raw one.
    pair.ping_group_range("1 2147483647");
    pair.in_prober(
        "ip",
        &["addr", "add", "10.77.0.3/24", "dev", &pair.prober_link],
    );
    // The target drops echo requests from 10.77.0.3 only.
    pair.in_target(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-s",
            "10.77.0.3",
            "-p",
            "icmp",
            "--icmp-type",
            "echo-request",
            "-j",
            "DROP",
        ],
    );
    // Over the datagram socket (as `nobody`) and the raw one (as root).
    for (unprivileged, socket) in [(true, "datagram"), (false, "raw")] {
        let run = |extra: &str| {
            check_in(
                &pair,
                &icmp_check(TARGET_V4, &format!("count = 3\ntimeout = \"1s\"\n{extra}")),
                unprivileged,
            )
        };
        for extra in ["", "source_ip = \"10.77.0.1\""] {
            let result = run(extra);
            assert_eq!(result["success"], true, "{extra}: {result:#}");
            assert_eq!(result["icmp"]["socket"], socket, "{result:#}");
        }
        let result = run("source_ip = \"10.77.0.3\"");
        assert_eq!(result["reason"], "loss", "{result:#}");
        assert_eq!(icmp_of(&result).1, 0, "{result:#}");
        // An IPv6 source for an IPv4 target: `unreachable`, naming both.
        let result = run(&format!("source_ip = \"{PROBER_V6}\""));
        assert_eq!(result["reason"], "unreachable", "{result:#}");
        let detail = result["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("cannot send from {PROBER_V6} to {TARGET_V4}")),
            "{detail}"
        );
    }
}
