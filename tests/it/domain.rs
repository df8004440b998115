//! The `domain` check against RDAP fixtures served by nginx: bootstrap, overrides, caching,
//! expiry, and every way an RDAP answer can be unusable.

use std::sync::Arc;

use nightjar::config::CheckDef;
use nightjar::result::{CheckResult, Details, DomainDetails, FailureReason};
use nightjar::runner::{RunEnv, run_one};

use crate::support::{
    Nginx, assert_check_contract, assert_fail, assert_pass, free_port, load, metrics_after, sample,
};

fn domain_check(domain: &str, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"reg\"\ntype = \"domain\"\ndomain = \"{domain}\"\ntimeout = \"5s\"\n{extra}\n"
    )
}

fn with_bootstrap(nginx: &Nginx, check: &str) -> String {
    format!(
        "[agent]\nrdap_bootstrap = \"{}\"\n\n{check}",
        nginx.url("/rdap/dns.json")
    )
}

fn def(text: &str) -> Arc<CheckDef> {
    load(text, &[]).checks[0].clone()
}

fn found(res: &CheckResult) -> &DomainDetails {
    match &res.details {
        Details::Domain(found) => found,
        other => panic!("no domain details in {other:?}"),
    }
}

#[tokio::test]
async fn expiry_through_the_bootstrap_registry_then_from_the_cache() {
    let nginx = Nginx::start();
    let env = RunEnv::system();
    let text = with_bootstrap(
        &nginx,
        &domain_check("good.test", "expect = { min_days_left = 30 }"),
    );
    let check = def(&text);
    let res = run_one(&check, &env).await;
    assert_pass(&res);
    let details = found(&res);
    assert!(!details.cached);
    let expiry = details.expiry.expect("an expiry");
    let days = (expiry - time::OffsetDateTime::now_utc().unix_timestamp()) as f64 / 86_400.0;
    assert!((199.0..=200.1).contains(&days), "{days}");
    assert_eq!(
        details.server.as_deref(),
        Some(format!("http://{}/rdap/", nginx.http).as_str())
    );
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(
            &metrics,
            "nightjar_domain_expiry_timestamp_seconds",
            &[("check", "reg")]
        ),
        Some(expiry as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_expiry_timestamp_seconds",
            &[("check", "reg"), ("expires", "domain")]
        ),
        Some(expiry as f64)
    );
    // The next run within cache_for asks nobody.
    let again = run_one(&check, &env).await;
    assert!(again.is_success());
    assert!(found(&again).cached);
    assert_eq!(found(&again).http.connect.as_nanos(), 0);
    assert_eq!(found(&again).expiry, Some(expiry));
}

#[tokio::test]
async fn a_registration_about_to_expire() {
    let nginx = Nginx::start();
    let res = run_one(
        &def(&with_bootstrap(
            &nginx,
            &domain_check("soon.test", "expect = { min_days_left = 30 }"),
        )),
        &RunEnv::system(),
    )
    .await;
    assert_fail(
        &res,
        FailureReason::DomainExpiring,
        "the registration of soon.test expires in 10.0 days",
    );
    assert_fail(
        &res,
        FailureReason::DomainExpiring,
        "less than min_days_left 30",
    );
}

#[tokio::test]
async fn servers_can_be_set_per_check_or_per_tld_without_the_bootstrap() {
    let nginx = Nginx::start();
    // The bootstrap registry is unreachable: only the overrides can work.
    let closed = format!("http://127.0.0.1:{}/dns.json", free_port());
    let per_check = format!(
        "[agent]\nrdap_bootstrap = \"{closed}\"\n\n{}",
        domain_check(
            "good.test",
            &format!("rdap_server = \"{}\"", nginx.url("/rdap"))
        )
    );
    let res = run_one(&def(&per_check), &RunEnv::system()).await;
    assert_pass(&res);
    let per_tld = format!(
        "[agent]\nrdap_bootstrap = \"{closed}\"\nrdap_servers = {{ test = \"{}\" }}\n\n{}",
        nginx.url("/rdap/"),
        domain_check("good.test", "")
    );
    let res = run_one(&def(&per_tld), &RunEnv::system()).await;
    assert_pass(&res);
    let neither = format!(
        "[agent]\nrdap_bootstrap = \"{closed}\"\n\n{}",
        domain_check("good.test", "")
    );
    let res = run_one(&def(&neither), &RunEnv::system()).await;
    assert_fail(
        &res,
        FailureReason::Rdap,
        "cannot load the RDAP bootstrap registry",
    );
}

#[tokio::test]
async fn unusable_answers_are_failures_with_a_precise_reason() {
    let nginx = Nginx::start();
    let env = RunEnv::system();
    let cases = [
        (
            "missing.test",
            FailureReason::Rdap,
            "does not know missing.test (HTTP 404)",
        ),
        ("garbage.test", FailureReason::Rdap, "is not valid JSON"),
        ("noexp.test", FailureReason::Rdap, "has no expiration event"),
        ("huge.test", FailureReason::TooLarge, "larger than max_size"),
        (
            "unlisted.example",
            FailureReason::Rdap,
            "names no server for unlisted.example",
        ),
    ];
    for (domain, reason, part) in cases {
        let text = with_bootstrap(&nginx, &domain_check(domain, ""));
        let res = run_one(&def(&text), &env).await;
        assert_fail(&res, reason, part);
        assert_check_contract(&res, &metrics_after(&text, &res));
    }
}

#[tokio::test]
async fn a_rate_limited_server_is_left_alone_and_the_last_answer_stands_in() {
    let nginx = Nginx::start();
    let env = RunEnv::system();
    let limited = def(&with_bootstrap(&nginx, &domain_check("busy.limited", "")));
    let res = run_one(&limited, &env).await;
    assert_fail(
        &res,
        FailureReason::Rdap,
        "is rate-limiting (HTTP 429); no request before 120s from now",
    );
    // Within the pause, no request is made at all.
    let res = run_one(&limited, &env).await;
    assert_fail(&res, FailureReason::Rdap, "asked for a pause (HTTP 429)");
    assert_eq!(found(&res).http.connect.as_nanos(), 0);

    // A domain answered before keeps its last answer while its server pauses us. (A fresh
    // state: the pause above covers the whole server, which the next lookup shares.)
    let env = RunEnv::system();
    let good = def(&domain_check(
        "good.test",
        &format!(
            "rdap_server = \"{}\"\ncache_for = \"1ms\"",
            nginx.url("/rdap/")
        ),
    ));
    let first = run_one(&good, &env).await;
    assert_pass(&first);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let paused = def(&domain_check(
        "good.test",
        &format!(
            "rdap_server = \"{}\"\ncache_for = \"1ms\"",
            nginx.url("/limited/")
        ),
    ));
    let res = run_one(&paused, &env).await;
    assert_pass(&res);
    assert!(found(&res).cached);
    assert_eq!(found(&res).expiry, found(&first).expiry);
}

#[test]
fn domain_config_errors_and_defaults() {
    let config = load(&domain_check("Example.COM.", ""), &[]);
    let check = &config.checks[0];
    assert_eq!(check.target, "example.com");
    assert!(
        matches!(check.schedule, nightjar::config::Schedule::Interval(every) if every.as_secs() == 12 * 3600)
    );
    let err = crate::support::config_errors(
        "d.toml",
        "[agent]\nrdap_servers = { com = \"ftp://x\" }\n\n[[check]]\nname = \"d\"\ntype = \"domain\"\ndomain = \"not a domain\"\nexpect = { min_days_left = \"soon\" }\n",
    );
    for part in [
        "d.toml:2:24: \"ftp://x\" is not an http(s) URL",
        "d.toml:7:10: \"not a domain\" is not a registered domain name",
        "d.toml:8:28: `min_days_left` must be a number of days",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
}
