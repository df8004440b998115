//! The `dns` check against a real BIND on loopback (a DNSSEC-signed zone over UDP, TCP, TLS and
//! HTTPS; a stale secondary for consistency) and an in-process responder for hostile answers.

use std::time::Duration;

use nightjar::result::{CheckResult, Details, DnsDetails, Failure, FailureReason, Status};

use crate::support::bind::{Bind, RRSIG_DAYS, SERIAL, STALE_SERIAL, ZONE};
use crate::support::hostile_dns::{Answer, HostileDns};
use crate::support::{
    assert_check_contract, assert_fail, assert_pass, eventually, metrics_after, pki, run_check,
    sample,
};

pub(crate) fn dns_check(server: &str, query: &str, record: &str, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"dns\"\ntype = \"dns\"\nquery = \"{query}\"\nrecord = \"{record}\"\nserver = \"{server}\"\ntimeout = \"3s\"\n{extra}\n"
    )
}

pub(crate) fn found(res: &CheckResult) -> &DnsDetails {
    match &res.details {
        Details::Dns(found) => found,
        other => panic!("no DNS details in {other:?}"),
    }
}

/// Starts BIND and waits until it answers for the zone.
pub(crate) async fn bind(stale: bool) -> Bind {
    let bind = if stale {
        Bind::stale()
    } else {
        Bind::primary()
    };
    let text = dns_check(&bind.dns.to_string(), ZONE, "SOA", "");
    eventually(Duration::from_secs(20), "BIND to serve the zone", || {
        let text = text.clone();
        async move { run_check(&text).await.is_success().then_some(()) }
    })
    .await;
    bind
}

#[tokio::test]
async fn a_records_with_every_expectation_and_dnssec() {
    let bind = bind(false).await;
    let extra = r#"expect = { rcode = "NOERROR", answers_match = ['^203\.0\.113\.'], answers_match_any = ['\.6$'], answers_match_none = ['^10\.'], answers = ["203.0.113.5", "203.0.113.6"], authoritative = true, min_ttl = "1m", max_ttl = "1h", min_rrsig_days_left = 7 }"#;
    let text = dns_check(&bind.dns.to_string(), &format!("www.{ZONE}"), "A", extra);
    let res = run_check(&text).await;
    assert_pass(&res);
    let dns = found(&res);
    assert_eq!(dns.rcode_name().as_deref(), Some("NOERROR"));
    assert!(dns.authoritative);
    assert_eq!(dns.answers.len(), 2);
    assert!(dns.answer_rrs >= 3, "the answers and their RRSIG");
    let rrsig = dns.earliest_rrsig.expect("RRSIG expiry");
    let days = (rrsig - time::OffsetDateTime::now_utc().unix_timestamp()) as f64 / 86_400.0;
    assert!(
        (RRSIG_DAYS as f64 - 0.1..=RRSIG_DAYS as f64).contains(&days),
        "{days}"
    );

    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(&metrics, "probe_dns_answer_rrs", &[("check", "dns")]),
        Some(dns.answer_rrs as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_dns_rcode_info",
            &[("check", "dns"), ("rcode", "NOERROR")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_dns_answer_min_ttl_seconds",
            &[("check", "dns")]
        ),
        Some(300.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_dns_rrsig_expiry_timestamp_seconds",
            &[("check", "dns")]
        ),
        Some(rrsig as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_expiry_timestamp_seconds",
            &[("check", "dns"), ("expires", "dnssec_signature")]
        ),
        Some(rrsig as f64)
    );
    assert!(
        sample(
            &metrics,
            "probe_dns_duration_seconds",
            &[("check", "dns"), ("phase", "request")]
        )
        .unwrap()
            > 0.0
    );

    let res = run_check(&dns_check(
        &bind.dns.to_string(),
        &format!("www.{ZONE}"),
        "A",
        "expect = { min_rrsig_days_left = 14 }",
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::RrsigExpiring,
        "the earliest RRSIG expires in",
    );
    assert_fail(
        &res,
        FailureReason::RrsigExpiring,
        "less than min_rrsig_days_left 14",
    );
    let res = run_check(&dns_check(
        &bind.dns.to_string(),
        &format!("www.{ZONE}"),
        "A",
        r#"expect = { answers = ["203.0.113.5"] }"#,
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Answer,
        "expected exactly the answers [\"203.0.113.5\"]",
    );
    let res = run_check(&dns_check(
        &bind.dns.to_string(),
        &format!("www.{ZONE}"),
        "A",
        r#"expect = { max_ttl = "1m" }"#,
    ))
    .await;
    assert_fail(&res, FailureReason::Answer, "is above max_ttl 60s");
}

#[tokio::test]
async fn every_record_type() {
    let bind = bind(false).await;
    let server = bind.dns.to_string();
    for (name, record, want) in [
        (format!("www.{ZONE}"), "AAAA", "2001:db8::5"),
        (ZONE.to_string(), "MX", "10 mx1.nightjar.test."),
        (ZONE.to_string(), "TXT", "v=spf1 -all"),
        (ZONE.to_string(), "NS", "ns1.nightjar.test."),
        (
            ZONE.to_string(),
            "SOA",
            "ns1.nightjar.test. hostmaster.nightjar.test.",
        ),
        (ZONE.to_string(), "CAA", "letsencrypt.org"),
        (
            format!("_sip._tcp.{ZONE}"),
            "SRV",
            "10 5 5060 sip.nightjar.test.",
        ),
        (format!("alias.{ZONE}"), "CNAME", "www.nightjar.test."),
        (ZONE.to_string(), "DNSKEY", "257 3 13"),
    ] {
        let regex = regex::escape(want);
        let text = dns_check(
            &server,
            &name,
            record,
            &format!("expect = {{ answers_match_any = ['{regex}'], min_answers = 1 }}"),
        );
        let res = run_check(&text).await;
        assert!(
            res.is_success(),
            "{record}: {:?} / {:?}",
            res.status,
            found(&res).answers
        );
    }
    let text = dns_check(&server, ZONE, "SOA", "");
    let res = run_check(&text).await;
    assert_eq!(found(&res).soa_serial, Some(SERIAL));
    assert_eq!(
        sample(
            &metrics_after(&text, &res),
            "probe_dns_serial",
            &[("check", "dns")]
        ),
        Some(f64::from(SERIAL))
    );
    // PTR and DS: nothing here, and that is an answer too.
    for record in ["PTR", "DS"] {
        let res = run_check(&dns_check(
            &server,
            ZONE,
            record,
            "expect = { min_answers = 0 }",
        ))
        .await;
        assert_pass(&res);
    }
}

#[tokio::test]
async fn response_codes() {
    let bind = bind(false).await;
    let server = bind.dns.to_string();
    let res = run_check(&dns_check(&server, &format!("nothere.{ZONE}"), "A", "")).await;
    assert_fail(
        &res,
        FailureReason::Rcode,
        "expected rcode NOERROR, got NXDOMAIN",
    );
    assert_pass(
        &run_check(&dns_check(
            &server,
            &format!("nothere.{ZONE}"),
            "A",
            "expect = { rcode = \"NXDOMAIN\" }",
        ))
        .await,
    );
    let res = run_check(&dns_check(&server, "example.com", "A", "")).await;
    assert_fail(&res, FailureReason::Rcode, "got REFUSED");
    let res = run_check(&dns_check(
        &server,
        &format!("www.{ZONE}"),
        "A",
        "expect = { authoritative = false }",
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Answer,
        "expected a non-authoritative answer",
    );
}

#[tokio::test]
async fn tcp_tls_and_https_transports() {
    let bind = bind(false).await;
    let ca = pki().ca.display().to_string();
    let name = format!("www.{ZONE}");
    let expect = r#"expect = { answers = ["203.0.113.5", "203.0.113.6"] }"#;
    let tcp = dns_check(
        &bind.dns.to_string(),
        &name,
        "A",
        &format!("transport = \"tcp\"\n{expect}"),
    );
    let res = run_check(&tcp).await;
    assert_pass(&res);
    assert!(found(&res).connect > Duration::ZERO);

    let dot = dns_check(
        &format!("localhost:{}", bind.dot.port()),
        &name,
        "A",
        &format!(
            "transport = \"tls\"\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}\n{expect}"
        ),
    );
    let res = run_check(&dot).await;
    assert_pass(&res);
    assert!(found(&res).tls > Duration::ZERO);
    let metrics = metrics_after(&dot, &res);
    assert!(
        sample(
            &metrics,
            "probe_ssl_earliest_cert_expiry",
            &[("check", "dns")]
        )
        .is_some(),
        "the DoT certificate is reported"
    );

    let doh = dns_check(
        &format!("https://localhost:{}/dns-query", bind.doh.port()),
        &name,
        "A",
        &format!(
            "transport = \"https\"\nip_protocol = \"ip4\"\ntls = {{ ca_file = \"{ca}\" }}\n{expect}"
        ),
    );
    let res = run_check(&doh).await;
    assert_pass(&res);

    // Without the test CA, DoT refuses to ask.
    let untrusted = dns_check(
        &format!("localhost:{}", bind.dot.port()),
        &name,
        "A",
        "transport = \"tls\"\nip_protocol = \"ip4\"",
    );
    assert_fail(
        &run_check(&untrusted).await,
        FailureReason::CertInvalid,
        "did not verify",
    );
}

#[tokio::test]
async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let bind = bind(false).await;
    let res = run_check(&dns_check(
        &bind.dns.to_string(),
        &format!("big.{ZONE}"),
        "TXT",
        "expect = { min_answers = 40 }",
    ))
    .await;
    assert_pass(&res);
    assert!(found(&res).truncated);
}

#[tokio::test]
async fn consistency_across_authoritative_servers() {
    let primary = bind(false).await;
    let stale = bind(true).await;
    let consistent = format!(
        "[[check]]\nname = \"soa\"\ntype = \"dns\"\nquery = \"{ZONE}\"\nmode = \"consistency\"\nservers = [\"{0}\", \"{0}\"]\ntimeout = \"3s\"\n",
        primary.dns
    );
    let res = run_check(&consistent).await;
    assert_pass(&res);
    let text = format!(
        "[[check]]\nname = \"soa\"\ntype = \"dns\"\nquery = \"{ZONE}\"\nmode = \"consistency\"\nservers = [\"{}\", \"{}\"]\ntimeout = \"3s\"\n",
        primary.dns, stale.dns
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Inconsistent,
        &format!(
            "SOA serials of {ZONE}. differ: {} has {SERIAL}, {} has {STALE_SERIAL}",
            primary.dns, stale.dns
        ),
    );
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(
            &metrics,
            "nightjar_dns_soa_serial",
            &[("check", "soa"), ("server", &stale.dns.to_string())]
        ),
        Some(f64::from(STALE_SERIAL))
    );
}

#[tokio::test]
async fn consistency_discovers_the_zone_name_servers() {
    // The zone's NS records (ns1, ns2) have in-zone glue pointing at 127.0.0.1; the servers
    // listen on the test's port instead of 53.
    let primary = bind(false).await;
    let text = format!(
        "[[check]]\nname = \"soa\"\ntype = \"dns\"\nquery = \"{ZONE}\"\nmode = \"consistency\"\nserver = \"{}\"\nns_port = {}\ntimeout = \"3s\"\n",
        primary.dns,
        primary.dns.port()
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let servers: Vec<String> = found(&res)
        .soa_servers
        .iter()
        .map(|server| server.server.clone())
        .collect();
    assert_eq!(
        servers,
        [
            format!("ns1.{ZONE}. (127.0.0.1)"),
            format!("ns2.{ZONE}. (127.0.0.1)")
        ]
    );
    assert!(
        found(&res)
            .soa_servers
            .iter()
            .all(|server| server.serial == Some(SERIAL))
    );
}

#[tokio::test]
async fn hostile_answers_fail_with_a_precise_reason_in_time() {
    for (answer, reason, part) in [
        (
            Answer::WrongId,
            FailureReason::Timeout,
            "answers with a mismatched ID were ignored",
        ),
        (
            Answer::Truncated,
            FailureReason::Connect,
            "was truncated and the TCP retry failed",
        ),
        (
            Answer::Garbage,
            FailureReason::Protocol,
            "malformed DNS answer",
        ),
        (
            Answer::PointerLoop,
            FailureReason::Protocol,
            "malformed DNS answer",
        ),
        (
            Answer::Oversized,
            FailureReason::Protocol,
            "malformed DNS answer",
        ),
    ] {
        let responder = HostileDns::start(answer).await;
        let text = dns_check(&responder.addr.to_string(), "www.example.test", "A", "")
            .replace("timeout = \"3s\"", "timeout = \"1s\"");
        let started = std::time::Instant::now();
        let res = run_check(&text).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{answer:?} took {:?}",
            started.elapsed()
        );
        match &res.status {
            Status::Fail(Failure {
                reason: got,
                detail,
            }) => {
                assert_eq!(*got, reason, "{answer:?}: {detail}");
                assert!(
                    detail.contains(part),
                    "{answer:?}: {detail:?} lacks {part:?}"
                );
            }
            Status::Pass => panic!("{answer:?} passed"),
        }
        assert_check_contract(&res, &metrics_after(&text, &res));
    }
}

#[test]
fn dns_config_errors() {
    let text = "[[check]]\nname = \"d\"\ntype = \"dns\"\nquery = \"example.com\"\nrecord = \"AXFR\"\ntransport = \"quic\"\nservers = [\"1.2.3.4\"]\nexpect = { rcode = \"NOPE\", answers_match = ['('] }\n";
    let err = crate::support::config_errors("d.toml", text);
    for part in [
        "d.toml:5:10: unknown record type \"AXFR\"",
        "d.toml:6:13: unknown transport \"quic\"",
        "d.toml:7:1: `servers` goes with mode = \"consistency\"",
        "d.toml:8:20: unknown rcode \"NOPE\"",
        "d.toml:8:45: invalid regex in `answers_match`",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    let err = crate::support::config_errors(
        "d.toml",
        "[[check]]\nname = \"d\"\ntype = \"dns\"\nquery = \"example.com\"\ntransport = \"tls\"\n",
    );
    assert!(err.contains("missing the required key `server`"), "{err}");
}
