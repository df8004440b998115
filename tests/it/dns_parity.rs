//! The `dns` options that blackbox_exporter modules carry, against the real BIND: `class`
//! (`version.bind` in class CH), the record rules of each section (`expect.answer_rrs`,
//! `authority_rrs`, `additional_rrs`, blackbox's `validate_*_rrs`) passing and failing, and
//! the section counts and serial of a check with `dnssec = false` and `edns = false` beside
//! the real blackbox_exporter's for the same queries to the same BIND.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use nightjar::result::FailureReason;

use crate::dns::{bind, dns_check, found};
use crate::support::bind::{SERIAL, VERSION, ZONE};
use crate::support::{
    KillOnDrop, assert_check_contract, assert_fail, assert_pass, config_errors, free_port,
    http_get, metrics_after, run_check, sample, wait_for_tcp,
};

/// The query blackbox_exporter sends: no OPT record, so no DO bit.
const AS_BLACKBOX: &str = "dnssec = false\nedns = false\n";

#[tokio::test]
async fn version_bind_in_class_ch() {
    let bind = bind(false).await;
    let extra = format!(
        "class = \"CH\"\n{AS_BLACKBOX}expect = {{ answers = ['{VERSION}'], answer_rrs = {{ fail_if_not_matches = ['^version\\.bind\\.\\t\\d+\\tCH\\tTXT\\t\"{VERSION}\"$'] }}, authority_rrs = {{ fail_if_matches = ['.'] }} }}"
    );
    let text = dns_check(&bind.dns.to_string(), "version.bind", "TXT", &extra);
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_eq!(found(&res).answers[0].data, VERSION);
    assert_check_contract(&res, &metrics_after(&text, &res));
    let config = crate::support::load(&text, &[]);
    assert!(
        config.checks[0]
            .target
            .starts_with("version.bind. CH TXT @ ")
    );

    // The same name in class IN is not BIND's to answer.
    let text = dns_check(&bind.dns.to_string(), "version.bind", "TXT", AS_BLACKBOX);
    let res = run_check(&text).await;
    assert_fail(&res, FailureReason::Rcode, "got REFUSED");
}

#[tokio::test]
async fn answer_rules_pass_and_fail_as_blackbox_judges() {
    let bind = bind(false).await;
    let server = bind.dns.to_string();
    let www = format!("www.{ZONE}");
    let rules = |rules: &str| format!("{AS_BLACKBOX}expect = {{ answer_rrs = {{ {rules} }} }}");
    let check = |rules: &str| dns_check(&server, &www, "A", rules);

    for passing in [
        r#"fail_if_matches = ['\t10\.']"#,
        r#"fail_if_all_match = ['^www\.nightjar\.test\.\t300\tIN\tA\t203\.0\.113\.[56]$']"#,
        r#"fail_if_not_matches = ['\tIN\tA\t203\.0\.113\.']"#,
        r#"fail_if_none_matches = ['nothing', '\t203\.0\.113\.6$']"#,
    ] {
        let text = check(&rules(passing));
        let res = run_check(&text).await;
        assert_pass(&res);
        assert_check_contract(&res, &metrics_after(&text, &res));
    }
    let res = run_check(&check(&rules(r#"fail_if_matches = ['\.6$']"#))).await;
    assert_fail(
        &res,
        FailureReason::Answer,
        "answer record \"www.nightjar.test.\\t300\\tIN\\tA\\t203.0.113.6\" matches fail_if_matches /\\.6$/",
    );
    let res = run_check(&check(&rules(r#"fail_if_all_match = ['\.5$']"#))).await;
    assert_fail(
        &res,
        FailureReason::Answer,
        "answer record \"www.nightjar.test.\\t300\\tIN\\tA\\t203.0.113.6\" does not match fail_if_all_match /\\.5$/",
    );
    let res = run_check(&check(&rules(r#"fail_if_not_matches = ['\.5$']"#))).await;
    assert_fail(
        &res,
        FailureReason::Answer,
        "does not match fail_if_not_matches /\\.5$/",
    );
    let res = run_check(&check(&rules(r#"fail_if_none_matches = ['\t10\.']"#))).await;
    assert_fail(
        &res,
        FailureReason::Answer,
        "answer section: no record matches fail_if_none_matches /\\t10\\./",
    );

    // With the DO bit the RRSIG is an answer too, and a rule over every record sees it, as
    // blackbox_exporter would if it asked for DNSSEC records.
    let text = dns_check(
        &server,
        &www,
        "A",
        r#"expect = { answer_rrs = { fail_if_not_matches = ['\tIN\tA\t'] } }"#,
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Answer,
        "answer record \"www.nightjar.test.\\t300\\tIN\\tRRSIG\\tA 13 3 300 ",
    );
}

#[tokio::test]
async fn authority_and_additional_rules() {
    let bind = bind(false).await;
    let server = bind.dns.to_string();
    let soa = format!(
        r"^nightjar\.test\.\t300\tIN\tSOA\tns1\.nightjar\.test\. hostmaster\.nightjar\.test\. {SERIAL} 3600 600 86400 300$"
    );
    // NXDOMAIN: the zone's SOA in the authority section.
    let nx = format!(
        "{AS_BLACKBOX}expect = {{ rcode = \"NXDOMAIN\", authority_rrs = {{ fail_if_not_matches = ['{soa}'] }}, answer_rrs = {{ fail_if_all_match = ['never'] }} }}"
    );
    let text = dns_check(&server, &format!("nope.{ZONE}"), "A", &nx);
    let res = run_check(&text).await;
    assert_pass(&res);
    let text = text.replace("fail_if_not_matches", "fail_if_matches");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Answer,
        &format!(
            "authority record \"nightjar.test.\\t300\\tIN\\tSOA\\tns1.nightjar.test. hostmaster.nightjar.test. {SERIAL} 3600 600 86400 300\" matches fail_if_matches"
        ),
    );
    // An empty section: rules that need records fail, the others pass.
    let text = dns_check(
        &server,
        &format!("nope.{ZONE}"),
        "A",
        &format!(
            "{AS_BLACKBOX}expect = {{ rcode = \"NXDOMAIN\", answer_rrs = {{ fail_if_none_matches = ['.'] }} }}"
        ),
    );
    assert_fail(
        &run_check(&text).await,
        FailureReason::Answer,
        "answer section: fail_if_none_matches /./ needs records, and there are none",
    );

    // NS: the name servers' addresses come as additional records.
    let glue = format!(
        "{AS_BLACKBOX}expect = {{ additional_rrs = {{ fail_if_not_matches = ['^ns[12]\\.nightjar\\.test\\.\\t300\\tIN\\tA\\t127\\.0\\.0\\.1$'] }}, answer_rrs = {{ fail_if_none_matches = ['\\tNS\\tns2\\.nightjar\\.test\\.$'] }} }}"
    );
    let text = dns_check(&server, ZONE, "NS", &glue);
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_eq!(found(&res).additional_rrs, 2);
    let text = text.replace("ns[12]", "ns1");
    assert_fail(
        &run_check(&text).await,
        FailureReason::Answer,
        "additional record \"ns2.nightjar.test.\\t300\\tIN\\tA\\t127.0.0.1\" does not match fail_if_not_matches",
    );

    // MX, SRV, CNAME, TXT and AAAA as miekg prints them.
    for (name, record, printed) in [
        (
            ZONE.to_string(),
            "MX",
            r"^nightjar\.test\.\t300\tIN\tMX\t10 mx1\.nightjar\.test\.$",
        ),
        (
            format!("_sip._tcp.{ZONE}"),
            "SRV",
            r"^_sip\._tcp\.nightjar\.test\.\t300\tIN\tSRV\t10 5 5060 sip\.nightjar\.test\.$",
        ),
        (
            format!("alias.{ZONE}"),
            "CNAME",
            r"^alias\.nightjar\.test\.\t300\tIN\tCNAME\twww\.nightjar\.test\.$",
        ),
        (
            ZONE.to_string(),
            "TXT",
            r#"^nightjar\.test\.\t300\tIN\tTXT\t"v=spf1 -all"$"#,
        ),
        (
            format!("www.{ZONE}"),
            "AAAA",
            r"^www\.nightjar\.test\.\t3600\tIN\tAAAA\t2001:db8::5$",
        ),
    ] {
        let extra = format!(
            "{AS_BLACKBOX}expect = {{ answer_rrs = {{ fail_if_none_matches = ['{printed}'] }} }}"
        );
        let res = run_check(&dns_check(&server, &name, record, &extra)).await;
        assert_pass(&res);
    }
}

#[test]
fn class_edns_and_rule_mistakes_are_config_errors() {
    let base = "[[check]]\nname = \"d\"\ntype = \"dns\"\nquery = \"example.com\"\nserver = \"127.0.0.1\"\n";
    let errors = config_errors("d.toml", &format!("{base}class = \"XX\"\n"));
    assert!(
        errors.contains("d.toml:6:9") && errors.contains("unknown class \"XX\""),
        "{errors}"
    );
    let errors = config_errors("d.toml", &format!("{base}edns = false\ndnssec = true\n"));
    assert!(
        errors.contains("d.toml:7:1") && errors.contains("needs EDNS"),
        "{errors}"
    );
    let errors = config_errors(
        "d.toml",
        &format!("{base}expect = {{ answer_rrs = {{ fail_if_match = ['x'] }} }}\n"),
    );
    assert!(errors.contains("fail_if_match"), "{errors}");
    let errors = config_errors(
        "d.toml",
        &format!("{base}expect = {{ authority_rrs = {{ fail_if_matches = ['('] }} }}\n"),
    );
    assert!(errors.contains("d.toml:6"), "{errors}");
}

/// The real blackbox_exporter (Debian's package) with `modules`, on a loopback port.
struct Blackbox {
    addr: SocketAddr,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

fn blackbox(modules: &str) -> Blackbox {
    let program = crate::support::require(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("blackbox.yml");
    std::fs::write(&config, format!("modules:\n{modules}")).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(program)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start blackbox_exporter");
    let child = KillOnDrop(child);
    wait_for_tcp(addr, Duration::from_secs(20));
    Blackbox {
        addr,
        _child: child,
        _dir: dir,
    }
}

/// A value of an unlabelled series in exposition text.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn section_counts_and_serial_agree_with_blackbox_exporter() {
    let bind = bind(false).await;
    let server = bind.dns.to_string();
    // (module, query, type, rcode, the class)
    let queries = [
        ("a", format!("www.{ZONE}"), "A", "NOERROR"),
        ("soa", ZONE.to_string(), "SOA", "NOERROR"),
        ("nxdomain", format!("nope.{ZONE}"), "A", "NXDOMAIN"),
        ("dnskey", ZONE.to_string(), "DNSKEY", "NOERROR"),
        ("ns", ZONE.to_string(), "NS", "NOERROR"),
        ("mx", ZONE.to_string(), "MX", "NOERROR"),
        ("big", format!("big.{ZONE}"), "TXT", "NOERROR"),
        ("any", format!("www.{ZONE}"), "ANY", "NOERROR"),
    ];
    let modules: String = queries
        .iter()
        .map(|(module, query, record, rcode)| {
            // ANY is blackbox_exporter's default type: that module leaves it out.
            let query_type = if *record == "ANY" {
                String::new()
            } else {
                format!("      query_type: {record}\n")
            };
            format!(
                "  {module}:\n    prober: dns\n    timeout: 3s\n    dns:\n      query_name: {query}\n{query_type}      valid_rcodes: [{rcode}]\n"
            )
        })
        .collect();
    let exporter = blackbox(&modules);
    for (module, query, record, rcode) in &queries {
        if *module == "big" {
            continue;
        }
        let (status, theirs) = http_get(
            exporter.addr,
            &format!("/probe?module={module}&target={server}"),
        )
        .await;
        assert_eq!(status, 200, "{theirs}");
        assert_eq!(
            value(&theirs, "probe_success"),
            Some(1.0),
            "{module}: {theirs}"
        );

        let text = dns_check(
            &server,
            query,
            record,
            &format!("{AS_BLACKBOX}expect = {{ rcode = \"{rcode}\" }}"),
        );
        let res = run_check(&text).await;
        assert_pass(&res);
        let ours = metrics_after(&text, &res);
        let check = [("check", "dns")];
        for family in [
            "probe_dns_answer_rrs",
            "probe_dns_authority_rrs",
            "probe_dns_additional_rrs",
        ] {
            assert_eq!(
                sample(&ours, family, &check),
                value(&theirs, family),
                "{module}: {family}\nblackbox_exporter:\n{theirs}"
            );
        }
        if *record == "SOA" {
            assert_eq!(value(&theirs, "probe_dns_serial"), Some(f64::from(SERIAL)));
            assert_eq!(
                sample(&ours, "probe_dns_serial", &check),
                Some(f64::from(SERIAL))
            );
        }
    }

    // With EDNS but no DO bit the counts agree too, as long as the answer fits in 512 bytes.
    for (module, query, record, rcode) in &queries[..4] {
        let (_, theirs) = http_get(
            exporter.addr,
            &format!("/probe?module={module}&target={server}"),
        )
        .await;
        let extra = format!("dnssec = false\nexpect = {{ rcode = \"{rcode}\" }}");
        let text = dns_check(&server, query, record, &extra);
        let ours = metrics_after(&text, &run_check(&text).await);
        for family in [
            "probe_dns_answer_rrs",
            "probe_dns_authority_rrs",
            "probe_dns_additional_rrs",
        ] {
            assert_eq!(
                sample(&ours, family, &[("check", "dns")]),
                value(&theirs, family),
                "{module}: {family}"
            );
        }
    }

    // The difference that stays: an answer too large for a datagram. blackbox_exporter counts
    // the truncated UDP answer; nightjar asks again over TCP and counts the whole answer.
    let (_, theirs) = http_get(exporter.addr, &format!("/probe?module=big&target={server}")).await;
    assert_eq!(value(&theirs, "probe_success"), Some(1.0), "{theirs}");
    let theirs = value(&theirs, "probe_dns_answer_rrs").expect("answer count");
    let text = dns_check(&server, &format!("big.{ZONE}"), "TXT", AS_BLACKBOX);
    let res = run_check(&text).await;
    assert!(found(&res).truncated);
    let ours = metrics_after(&text, &res);
    assert_eq!(
        sample(&ours, "probe_dns_answer_rrs", &[("check", "dns")]),
        Some(40.0)
    );
    assert!(theirs < 40.0, "blackbox_exporter counted {theirs}");

    // nightjar's default query carries the DO bit: the signed zone's RRSIGs are counted.
    let text = dns_check(&server, &format!("www.{ZONE}"), "A", "");
    let res = run_check(&text).await;
    let ours = metrics_after(&text, &res);
    let (_, theirs) = http_get(exporter.addr, &format!("/probe?module=a&target={server}")).await;
    let answers = |text: &str| value(text, "probe_dns_answer_rrs");
    assert_eq!(answers(&theirs), Some(2.0));
    assert_eq!(
        sample(&ours, "probe_dns_answer_rrs", &[("check", "dns")]),
        Some(3.0),
        "two A records and their RRSIG"
    );
}
