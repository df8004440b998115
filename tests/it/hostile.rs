//! Misbehaving targets nginx cannot imitate. Each ends as a failed check with the right
//! reason, within the check's timeout.

use std::time::Duration;

use nightjar::result::{Failure, FailureReason, Status};

use crate::support::hostile::{Behaviour, Hostile};
use crate::support::{assert_check_contract, http_check, metrics_after, run_check};

async fn expect_failure(
    behaviour: Behaviour,
    https: bool,
    reason: FailureReason,
    detail_part: &str,
) {
    let server = Hostile::start(behaviour).await;
    let url = if https {
        format!("https://{}/", server.addr)
    } else {
        server.url("/")
    };
    let text = http_check(&url, "").replace("timeout = \"5s\"", "timeout = \"2s\"");
    let started = std::time::Instant::now();
    let res = run_check(&text).await;
    let took = started.elapsed();
    match &res.status {
        Status::Fail(Failure {
            reason: got,
            detail,
        }) => {
            assert_eq!(*got, reason, "{behaviour:?}: {detail}");
            assert!(
                detail.contains(detail_part),
                "{behaviour:?}: {detail:?} lacks {detail_part:?}"
            );
        }
        Status::Pass => panic!("{behaviour:?} passed"),
    }
    assert!(
        took < Duration::from_millis(2500),
        "{behaviour:?} took {took:?}, past its 2s timeout"
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
}

#[tokio::test]
async fn headers_that_never_end() {
    expect_failure(
        Behaviour::EndlessHeaders,
        false,
        FailureReason::TooLarge,
        "response head from",
    )
    .await;
}

#[tokio::test]
async fn a_hundred_thousand_headers() {
    expect_failure(
        Behaviour::ManyHeaders,
        false,
        FailureReason::TooLarge,
        "over 100 headers",
    )
    .await;
}

#[tokio::test]
async fn headers_that_trickle() {
    expect_failure(
        Behaviour::SlowHeaders,
        false,
        FailureReason::Timeout,
        "waiting for the response headers",
    )
    .await;
}

#[tokio::test]
async fn a_body_that_trickles_forever() {
    expect_failure(
        Behaviour::TrickleBody,
        false,
        FailureReason::Timeout,
        "timed out reading the body",
    )
    .await;
}

#[tokio::test]
async fn a_reply_that_is_not_http() {
    expect_failure(
        Behaviour::NotHttp,
        false,
        FailureReason::Protocol,
        "did not answer valid HTTP",
    )
    .await;
}

#[tokio::test]
async fn a_connection_reset() {
    expect_failure(
        Behaviour::Reset,
        false,
        FailureReason::Closed,
        "while waiting for the response",
    )
    .await;
}

#[tokio::test]
async fn a_tls_server_that_stalls_mid_handshake() {
    expect_failure(
        Behaviour::Silent,
        true,
        FailureReason::Timeout,
        "during the TLS handshake",
    )
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers() {
    expect_failure(
        Behaviour::Silent,
        false,
        FailureReason::Timeout,
        "waiting for the response headers",
    )
    .await;
}

#[tokio::test]
async fn a_non_tls_reply_to_a_tls_client() {
    expect_failure(
        Behaviour::NotHttp,
        true,
        FailureReason::Tls,
        "TLS handshake failed",
    )
    .await;
}

#[tokio::test]
async fn decompression_bombs_stop_at_max_body() {
    use crate::support::hostile::BOMB_DECODED;
    for (behaviour, compression) in [(Behaviour::GzipBomb, "gzip"), (Behaviour::ZstdBomb, "zstd")] {
        let server = Hostile::start(behaviour).await;
        let text = http_check(
            &server.url("/"),
            &format!("compression = \"{compression}\""),
        )
        .replace("timeout = \"5s\"", "timeout = \"2s\"");
        let started = std::time::Instant::now();
        let res = run_check(&text).await;
        let took = started.elapsed();
        match &res.status {
            Status::Fail(Failure { reason, detail }) => {
                assert_eq!(*reason, FailureReason::TooLarge, "{detail}");
                assert!(
                    detail
                        .contains("over max_body (10485760 bytes): stopped at 10485761 bytes from"),
                    "{detail}"
                );
            }
            Status::Pass => panic!("a {compression} bomb passed"),
        }
        let nightjar::result::Details::Http(http) = &res.details else {
            panic!("no HTTP details");
        };
        // Decoding stopped one byte past the cap, having read a sliver of the bomb.
        assert_eq!(http.uncompressed_length, Some(10 * 1024 * 1024 + 1));
        let wire = http.content_length.unwrap();
        assert!(
            wire < BOMB_DECODED / 1000,
            "{compression}: read {wire} compressed bytes"
        );
        assert!(
            took < Duration::from_millis(2500),
            "{compression} bomb took {took:?}"
        );
        eprintln!("{compression} bomb: {wire} bytes read, stopped after {took:?}");
        assert_check_contract(&res, &metrics_after(&text, &res));
    }
}

/// Peak resident memory of process `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// The agent's peak memory over a whole hostile suite. Headroom over the ~13 MiB an idle agent
/// holds, far below what any one hostile target would take if the agent buffered it.
const PEAK_RSS_BOUND_MIB: u64 = 64;

#[tokio::test]
async fn the_agent_survives_every_hostile_target_in_bounded_memory() {
    use crate::support::hostile::LongChain;
    use crate::support::hostile_dns::{Answer, HostileDns};

    let mut servers = Vec::new();
    let mut checks = Vec::new();
    for (name, behaviour, https, reason) in [
        (
            "endless-headers",
            Behaviour::EndlessHeaders,
            false,
            "too_large",
        ),
        ("many-headers", Behaviour::ManyHeaders, false, "too_large"),
        ("slow-headers", Behaviour::SlowHeaders, false, "timeout"),
        ("trickle-body", Behaviour::TrickleBody, false, "timeout"),
        ("not-http", Behaviour::NotHttp, false, "protocol"),
        ("reset", Behaviour::Reset, false, "closed"),
        ("silent", Behaviour::Silent, false, "timeout"),
        ("tls-stall", Behaviour::Silent, true, "timeout"),
        ("redirect-loop", Behaviour::RedirectLoop, false, "redirect"),
        ("huge-body", Behaviour::HugeBody, false, "too_large"),
        ("gzip-bomb", Behaviour::GzipBomb, false, "too_large"),
        ("zstd-bomb", Behaviour::ZstdBomb, false, "too_large"),
    ] {
        let server = Hostile::start(behaviour).await;
        let scheme = if https { "https" } else { "http" };
        let extra = match name {
            "huge-body" => "max_body = \"1MiB\"\nexpect = { max_size = \"1MiB\" }\n",
            // 10 GiB of zeros each, decoded up to the default max_body (10 MiB).
            "gzip-bomb" => "compression = \"gzip\"\n",
            "zstd-bomb" => "compression = \"zstd\"\n",
            _ => "",
        };
        checks.push((
            name.to_string(),
            reason,
            format!(
                "[[check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{scheme}://{}/\"\n{extra}",
                server.addr
            ),
        ));
        servers.push(server);
    }
    // An RDAP server answering 100 MB.
    let rdap = Hostile::start(Behaviour::HugeBody).await;
    checks.push((
        "rdap-100mb".to_string(),
        "too_large",
        format!(
            "[[check]]\nname = \"rdap-100mb\"\ntype = \"domain\"\ndomain = \"example.test\"\nrdap_server = \"http://{}/\"\ncache_for = \"1s\"\ninterval = \"2s\"\n",
            rdap.addr
        ),
    ));
    // A chain of 100 certificates.
    let long = LongChain::start().await;
    checks.push((
        "chain-of-100".to_string(),
        "cert_invalid",
        format!(
            "[[check]]\nname = \"chain-of-100\"\ntype = \"tls\"\ntarget = \"localhost:{}\"\ntls = {{ ca_file = \"{}\" }}\n",
            long.addr.port(),
            long.ca.display()
        ),
    ));
    let mut responders = Vec::new();
    for (name, answer, reason) in [
        ("dns-wrong-id", Answer::WrongId, "timeout"),
        ("dns-truncated", Answer::Truncated, "connect"),
        ("dns-garbage", Answer::Garbage, "protocol"),
        ("dns-pointer-loop", Answer::PointerLoop, "protocol"),
        ("dns-oversized", Answer::Oversized, "protocol"),
    ] {
        let responder = HostileDns::start(answer).await;
        checks.push((
            name.to_string(),
            reason,
            format!(
                "[[check]]\nname = \"{name}\"\ntype = \"dns\"\nquery = \"www.example.test\"\nrecord = \"A\"\nserver = \"{}\"\n",
                responder.addr
            ),
        ));
        responders.push(responder);
    }
    // WebSocket peers: garbage for an upgrade, silence, an endless head, a flood of messages,
    // a 100 MiB message.
    for (name, behaviour, reason) in [
        ("ws-not-http", Behaviour::NotHttp, "protocol"),
        ("ws-silent", Behaviour::Silent, "timeout"),
        ("ws-endless-head", Behaviour::EndlessHeaders, "too_large"),
        ("ws-flood", Behaviour::WebSocketFlood, "body"),
        ("ws-huge-message", Behaviour::WebSocketHuge, "too_large"),
    ] {
        let server = Hostile::start(behaviour).await;
        checks.push((
            name.to_string(),
            reason,
            format!(
                "[[check]]\nname = \"{name}\"\ntype = \"websocket\"\nurl = \"ws://{}/\"\nsteps = [{{ expect = '^never$' }}]\n",
                server.addr
            ),
        ));
        servers.push(server);
    }
    // gRPC peers: an endless HTTP/1 head in place of HTTP/2, and silence.
    for (name, behaviour, reason) in [
        ("grpc-http1-flood", Behaviour::EndlessHeaders, "protocol"),
        ("grpc-silent", Behaviour::Silent, "timeout"),
    ] {
        let server = Hostile::start(behaviour).await;
        checks.push((
            name.to_string(),
            reason,
            format!(
                "[[check]]\nname = \"{name}\"\ntype = \"grpc\"\ntarget = \"{}\"\nplaintext = true\n",
                server.addr
            ),
        ));
        servers.push(server);
    }
    // tcp conversations: a flood that never matches (read up to the cap), and silence where a
    // greeting is expected.
    for (name, behaviour, steps, reason) in [
        (
            "tcp-steps-flood",
            Behaviour::EndlessHeaders,
            "[{ send = \"GET / HTTP/1.0\\r\\n\\r\\n\" }, { expect = '^never$' }]",
            "body",
        ),
        (
            "tcp-steps-silent",
            Behaviour::Silent,
            "[{ expect = '^\\* OK' }, { send = \"a STARTTLS\\r\\n\" }, { starttls = true }]",
            "timeout",
        ),
    ] {
        let server = Hostile::start(behaviour).await;
        checks.push((
            name.to_string(),
            reason,
            format!(
                "[[check]]\nname = \"{name}\"\ntype = \"tcp\"\ntarget = \"{}\"\nsteps = {steps}\n",
                server.addr
            ),
        ));
        servers.push(server);
    }
    // UDP: a server answering each datagram with a flood of large ones that never match, and
    // one that never answers.
    let flood = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (name, addr, reason) in [
        ("udp-flood", flood.local_addr().unwrap(), "body"),
        ("udp-silent", silent.local_addr().unwrap(), "timeout"),
    ] {
        checks.push((
            name.to_string(),
            reason,
            format!(
                "[[check]]\nname = \"{name}\"\ntype = \"udp\"\ntarget = \"{addr}\"\nsend = \"hi\"\nexpect = ['^OK']\n"
            ),
        ));
    }
    // ICMP: a namespace the test makes, linked to this one, with one address that drops
    // every echo request (a black hole) and one that answers them with an ICMP error.
    let spur = crate::support::netns::Spur::new();
    let (hole, reject) = (spur.addr(2), spur.addr(3));
    for (addr, verdict) in [
        (&hole, &["DROP"][..]),
        (
            &reject,
            &["REJECT", "--reject-with", "icmp6-adm-prohibited"][..],
        ),
    ] {
        let mut args = vec![
            "-A",
            "INPUT",
            "-d",
            addr.as_str(),
            "-p",
            "ipv6-icmp",
            "--icmpv6-type",
            "echo-request",
            "-j",
        ];
        args.extend_from_slice(verdict);
        spur.run("ip6tables", &args);
    }
    for (name, addr, reason) in [
        ("icmp-black-hole", &hole, "loss"),
        ("icmp-reject", &reject, "unreachable"),
    ] {
        checks.push((
            name.to_string(),
            reason,
            format!(
                "[[check]]\nname = \"{name}\"\ntype = \"icmp\"\ntarget = \"{addr}\"\ncount = 5\npacket_interval = \"100ms\"\n"
            ),
        ));
    }
    let flooding = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let big = [0x5a_u8; 8192];
        while let Ok((_, peer)) = flood.recv_from(&mut buf).await {
            for _ in 0..500 {
                if flood.send_to(&big, peer).await.is_err() {
                    break;
                }
            }
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("[defaults]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n\n");
    for (_, _, check) in &checks {
        text.push_str(check);
        text.push('\n');
    }
    let config = dir.path().join("hostile.toml");
    std::fs::write(&config, text).unwrap();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port()));
    let mut child = crate::support::start_agent(
        crate::support::nightjar()
            .args(["run", "--config"])
            .arg(&config),
        listen,
    );

    // Every check fails at least three times, each with its own reason.
    let started = std::time::Instant::now();
    let states = loop {
        let (_, body) = crate::support::http_get(listen, "/api/v1/checks").await;
        let json: serde_json::Value = serde_json::from_str(&body).expect("the checks API");
        let checks = json["checks"].as_array().expect("checks").clone();
        let runs = |check: &serde_json::Value| check["history"].as_array().map_or(0, Vec::len);
        if checks.iter().all(|check| runs(check) >= 3) {
            break checks;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let behind: Vec<String> = checks
                .iter()
                .filter(|check| runs(check) < 3)
                .map(|check| {
                    format!(
                        "{} ran {} times: {}",
                        check["name"],
                        runs(check),
                        check["last_run"]
                    )
                })
                .collect();
            panic!("not every hostile check ran three times in 60 s: {behind:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = started.elapsed();
    for (name, reason, _) in &checks {
        let state = states
            .iter()
            .find(|check| check["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing"));
        let history = state["history"].as_array().unwrap();
        assert!(
            history.iter().all(|run| run["success"] == false),
            "{name} passed once: {state}"
        );
        assert!(
            history
                .iter()
                .all(|run| run["duration_seconds"].as_f64().unwrap() < 2.0),
            "{name} ran past its 1.5 s timeout: {state}"
        );
        assert_eq!(state["last_run"]["reason"], *reason, "{name}: {state}");
    }
    // Still responsive, and within the memory bound over the whole suite.
    let (status, _) = crate::support::http_get(listen, "/-/healthy").await;
    assert_eq!(status, 200);
    let peak = peak_rss_kib(child.id());
    eprintln!(
        "hostile suite: {} checks failed 3+ times each in {took:?}; agent peak RSS {:.1} MiB",
        checks.len(),
        peak as f64 / 1024.0
    );
    assert!(
        peak < PEAK_RSS_BOUND_MIB * 1024,
        "the agent peaked at {} KiB, over {PEAK_RSS_BOUND_MIB} MiB",
        peak
    );
    let out = crate::support::terminate(&mut child);
    assert_eq!(out.status.code(), Some(0));
    flooding.abort();
    drop((servers, rdap, long, responders, silent, spur));
}
