//! The `http` check against a real nginx on loopback.

use std::time::Duration;

use nightjar::result::{Details, Failure, FailureReason, HttpDetails, Status};

use crate::support::{
    LARGE_BODY, LoginApp, Nginx, assert_check_contract, assert_fail, assert_pass, encode,
    free_port, http_check, metrics_after, pki, run_check, run_check_env, sample,
};

fn http(res: &nightjar::result::CheckResult) -> &HttpDetails {
    match &res.details {
        Details::Http(http) => http,
        other => panic!("no HTTP details in {other:?}"),
    }
}

fn detail(res: &nightjar::result::CheckResult) -> &str {
    match &res.status {
        Status::Pass => "",
        Status::Fail(Failure { detail, .. }) => detail,
    }
}

#[tokio::test]
async fn status_codes_and_classes() {
    let nginx = Nginx::start();
    let text = http_check(&nginx.url("/ok"), "");
    let res = run_check(&text).await;
    assert_pass(&res);
    let details = http(&res);
    assert_eq!(details.status_code, Some(200));
    assert_eq!(details.http_version, Some(1.1));
    assert!(details.connect > Duration::ZERO && details.processing > Duration::ZERO);
    assert_eq!(details.tls, Duration::ZERO);
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(&metrics, "probe_http_status_code", &[("check", "t")]),
        Some(200.0),
        "{metrics}"
    );
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(
            metrics.contains(&format!("phase=\"{phase}\"")),
            "phase {phase} missing"
        );
    }

    let res = run_check(&http_check(&nginx.url("/notfound"), "")).await;
    assert_fail(
        &res,
        FailureReason::Status,
        "expected status 2xx, got 404 Not Found",
    );
    let text = http_check(
        &nginx.url("/unavailable"),
        "expect = { status = [200, \"3xx\"] }",
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Status,
        "expected status 200, 3xx, got 503 Service Unavailable",
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
    assert_pass(
        &run_check(&http_check(
            &nginx.url("/unavailable"),
            "expect = { status = [\"5xx\"] }",
        ))
        .await,
    );
}

#[tokio::test]
async fn body_expectations() {
    let nginx = Nginx::start();
    let url = nginx.url("/page.html");
    assert_pass(&run_check(&http_check(&url, "expect = { body_contains = [\"Add to cart\"], body_not_contains = [\"Error\"], body_matches = ['<h1>\\w+ to'] }")).await);
    let res = run_check(&http_check(
        &url,
        "expect = { body_contains = [\"Checkout\"] }",
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Body,
        "expected the body to contain \"Checkout\"; not found in 47 body bytes",
    );
    let res = run_check(&http_check(
        &url,
        "expect = { body_not_contains = [\"cart\"] }",
    ))
    .await;
    assert_fail(&res, FailureReason::Body, "not to contain \"cart\"");
    let text = http_check(&url, "expect = { body_not_matches = ['Add\\s+to'] }");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "expected the body not to match /Add\\s+to/, but it does: \"Add to\"",
    );
    assert!(http(&res).failed_due_to_regex);
    assert_eq!(
        sample(
            &metrics_after(&text, &res),
            "probe_failed_due_to_regex",
            &[("check", "t")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn json_and_header_expectations() {
    let nginx = Nginx::start();
    let url = nginx.url("/json");
    let good = r#"expect = { headers = { content-type = "^application/json" }, json = [{ pointer = "/status", equals = "ok" }, { pointer = "/count", equals = 3 }, { pointer = "/items/0/id", matches = '^a\d$' }, { pointer = "/items" }] }"#;
    assert_pass(&run_check(&http_check(&url, good)).await);
    let res = run_check(&http_check(
        &url,
        r#"expect = { json = [{ pointer = "/status", equals = "degraded" }] }"#,
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Json,
        "expected /status to equal \"degraded\", got \"\\\"ok\\\"\"",
    );
    let res = run_check(&http_check(
        &url,
        r#"expect = { json = [{ pointer = "/missing" }] }"#,
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Json,
        "expected a value at JSON pointer /missing, found none",
    );
    let res = run_check(&http_check(
        &nginx.url("/ok"),
        r#"expect = { json = [{ pointer = "/status" }] }"#,
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Json,
        "expected a JSON body, but it does not parse",
    );
    let res = run_check(&http_check(
        &url,
        r#"expect = { headers = { content-type = "^text/html" } }"#,
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Header,
        "expected header content-type matching /^text/html/, got \"application/json\"",
    );
    let res = run_check(&http_check(
        &url,
        r#"expect = { headers = { x-request-id = "." } }"#,
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Header,
        "the response has no x-request-id header",
    );
}

#[tokio::test]
async fn redirects_are_followed_up_to_a_limit() {
    let nginx = Nginx::start();
    let res = run_check(&http_check(
        &nginx.url("/redirect"),
        "expect = { body_contains = [\"hello\"] }",
    ))
    .await;
    assert_pass(&res);
    assert_eq!(http(&res).redirects, 1);

    let res = run_check(&http_check(
        &nginx.url("/redirect"),
        "follow_redirects = false\nexpect = { status = [302] }",
    ))
    .await;
    assert_pass(&res);
    assert_eq!(http(&res).redirects, 0);

    let res = run_check(&http_check(&nginx.url("/loop"), "max_redirects = 3")).await;
    assert_fail(
        &res,
        FailureReason::Redirect,
        "stopped after 3 redirects (max_redirects = 3)",
    );

    // Plain HTTP redirected to HTTPS: both hops are timed, the last one used TLS.
    let extra = format!(
        "tls = {{ ca_file = \"{}\" }}\nexpect = {{ tls = true }}",
        pki().ca.display()
    );
    let res = run_check(&http_check(&nginx.url("/to-https"), &extra)).await;
    assert_pass(&res);
    let details = http(&res);
    assert!(details.tls_used && details.tls > Duration::ZERO);
    assert_eq!(details.redirects, 1);
}

#[tokio::test]
async fn https_with_a_test_ca_http2_and_tls_options() {
    let nginx = Nginx::start();
    let ca = pki().ca.display().to_string();
    let url = nginx.https_url("/ok");

    let text = http_check(&url, &format!("tls = {{ ca_file = \"{ca}\" }}"));
    let res = run_check(&text).await;
    assert_pass(&res);
    let details = http(&res);
    assert!(details.tls > Duration::ZERO && details.tls_used);
    assert_eq!(details.http_version, Some(2.0), "nginx offers h2 by ALPN");
    assert_eq!(details.tls_version, Some("TLS 1.3"));
    let metrics = metrics_after(&text, &res);
    assert_eq!(
        sample(&metrics, "probe_http_ssl", &[("check", "t")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "probe_http_version", &[("check", "t")]),
        Some(2.0)
    );

    let res = run_check(&http_check(
        &url,
        &format!("http_version = \"1.1\"\ntls = {{ ca_file = \"{ca}\" }}"),
    ))
    .await;
    assert_pass(&res);
    assert_eq!(http(&res).http_version, Some(1.1));

    // The test CA is not among the bundled roots.
    let res = run_check(&http_check(&url, "")).await;
    assert_fail(
        &res,
        FailureReason::CertInvalid,
        "did not verify: invalid peer certificate: UnknownIssuer",
    );

    let res = run_check(&http_check(&url, "tls = { insecure_skip_verify = true }")).await;
    assert_pass(&res);

    let res = run_check(&http_check(
        &url,
        &format!("tls = {{ ca_file = \"{ca}\", server_name = \"shop.example.com\" }}"),
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::CertInvalid,
        "the certificate is not valid for shop.example.com",
    );

    // Plain-text HTTP/2 with prior knowledge.
    let res = run_check(&http_check(
        &format!("http://{}/ok", nginx.h2c),
        "http_version = \"2\"",
    ))
    .await;
    assert_pass(&res);
    assert_eq!(http(&res).http_version, Some(2.0));

    // Connecting by IP verifies the IP SAN.
    let by_ip = format!("https://{}/ok", nginx.https);
    assert_pass(
        &run_check(&http_check(
            &by_ip,
            &format!("tls = {{ ca_file = \"{ca}\" }}"),
        ))
        .await,
    );
}

#[tokio::test]
async fn client_certificates_for_mtls() {
    let nginx = Nginx::start();
    let pki = pki();
    let url = format!("https://localhost:{}/", nginx.mtls.port());
    let with_cert = format!(
        "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}\nexpect = {{ body_contains = [\"CN=nightjar-probe\"] }}",
        pki.ca.display(),
        pki.client.chain.display(),
        pki.client.key.display()
    );
    assert_pass(&run_check(&http_check(&url, &with_cert)).await);
    let without = format!("tls = {{ ca_file = \"{}\" }}", pki.ca.display());
    let res = run_check(&http_check(&url, &without)).await;
    assert_fail(&res, FailureReason::Status, "got 400");
}

#[tokio::test]
async fn methods_headers_and_credentials_are_sent_and_secrets_redacted() {
    let nginx = Nginx::start();
    let url = nginx.url("/echo");
    let text = http_check(
        &url,
        "method = \"POST\"\nbody = \"{}\"\nheaders = { x-probe = \"${env:PROBE_SECRET}\" }\nbearer_token = \"${env:TOKEN}\"\nexpect = { body_contains = [\"method=POST\", \"auth=Bearer tok-123\", \"probe=s3cr3t-value\", \"ua=nightjar/\"] }",
    );
    let res = run_check_env(
        &text,
        &[("PROBE_SECRET", "s3cr3t-value"), ("TOKEN", "tok-123")],
    )
    .await;
    assert_pass(&res);

    // The server echoes the secret header back; the failure detail must not carry it.
    let text = http_check(
        &url,
        "headers = { x-probe = \"${env:PROBE_SECRET}\" }\nexpect = { headers = { x-echo = \"^nothing-like-it$\" } }",
    );
    let res = run_check_env(&text, &[("PROBE_SECRET", "s3cr3t-value")]).await;
    assert_fail(&res, FailureReason::Header, "got \"<redacted>\"");
    assert!(!detail(&res).contains("s3cr3t"), "{}", detail(&res));

    let text = http_check(
        &url,
        "basic_auth = { username = \"probe\", password = \"${env:PW}\" }\nexpect = { body_contains = [\"auth=Basic cHJvYmU6b3BlbiBzZXNhbWU=\"] }",
    );
    assert_pass(&run_check_env(&text, &[("PW", "open sesame")]).await);
}

#[tokio::test]
async fn large_bodies_are_capped_in_memory_and_counted() {
    let nginx = Nginx::start();
    let url = nginx.url("/large");
    let res = run_check(&http_check(&url, "max_body = \"64KiB\"")).await;
    assert_pass(&res);
    assert_eq!(http(&res).content_length, Some(LARGE_BODY));
    let res = run_check(&http_check(
        &url,
        "max_body = \"64KiB\"\nexpect = { body_contains = [\"needle\"] }",
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Body,
        "not found in the first 65536 of 20971520 body bytes",
    );
    let res = run_check(&http_check(&url, "expect = { max_size = \"1MiB\" }")).await;
    assert_fail(
        &res,
        FailureReason::TooLarge,
        "larger than max_size (1048576 bytes)",
    );
}

#[tokio::test]
async fn slow_responses_time_out_or_fail_max_duration() {
    let nginx = Nginx::start();
    let text = http_check(&nginx.url("/slow"), "").replace("timeout = \"5s\"", "timeout = \"1s\"");
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Timeout,
        "timed out reading the body from",
    );
    assert!(
        res.duration < Duration::from_millis(1500),
        "bounded by the timeout: {:?}",
        res.duration
    );

    let res = run_check(&http_check(
        &nginx.url("/ok"),
        "expect = { max_duration = \"1ns\" }",
    ))
    .await;
    assert_fail(&res, FailureReason::TooSlow, "more than max_duration 1ns");
}

#[tokio::test]
async fn unreachable_targets_fail_with_connect_and_dns_reasons() {
    let port = free_port();
    let res = run_check(&http_check(&format!("http://127.0.0.1:{port}/"), "")).await;
    assert_fail(
        &res,
        FailureReason::Connect,
        &format!("connect to 127.0.0.1:{port}"),
    );
    let res = run_check(&http_check("http://no-such-host.invalid/", "")).await;
    assert_fail(
        &res,
        FailureReason::Dns,
        "cannot resolve no-such-host.invalid",
    );
}

#[tokio::test]
async fn names_resolve_through_the_hosts_file() {
    let nginx = Nginx::start();
    let url = format!("http://localhost:{}/ok", nginx.http.port());
    let res = run_check(&http_check(&url, "ip_protocol = \"ip4\"")).await;
    assert_pass(&res);
    assert!(http(&res).remote_addr.is_some_and(|addr| addr.is_ipv4()));
}

/// What a login application's `/steal` recorded.
async fn stolen(app: &LoginApp) -> Vec<serde_json::Value> {
    let (status, body) = crate::support::http_get(app.addr, "/stolen").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_body_does_not_follow_a_redirect_to_another_origin() {
    // The login application's open redirect (/go?status=&next=) and, reached as localhost
    // rather than 127.0.0.1, a second origin that records what it is sent (/steal).
    let app = LoginApp::start("pw", "JBSWY3DPEHPK3PXP");
    let other = LoginApp::start("pw", "JBSWY3DPEHPK3PXP");
    let other_origin = format!("http://localhost:{}", other.addr.port());
    let elsewhere = format!("{other_origin}/steal");
    let go =
        |status: u16, next: &str| app.url(&format!("/go?status={status}&next={}", encode(next)));
    let env = [("API_KEY", "k3y-s3cr3t-value")];
    let request = |method: &str| {
        format!(
            "method = \"{method}\"\nbody = \"api_key=${{env:API_KEY}}\"\nbearer_token = \"${{env:API_KEY}}\""
        )
    };

    // 307 and 308 keep the method and the body: to another origin, the run fails instead.
    // So does a 301 or 302 of a PUT, which keeps them too.
    for (status, method) in [
        (307, "POST"),
        (308, "POST"),
        (307, "PUT"),
        (302, "PUT"),
        (301, "PUT"),
    ] {
        let res = run_check_env(&http_check(&go(status, &elsewhere), &request(method)), &env).await;
        assert_fail(
            &res,
            FailureReason::Redirect,
            &format!(
                "{status} redirect to another origin ({other_origin}); the request body is not re-sent there"
            ),
        );
        assert_eq!(http(&res).redirects, 0);
        assert!(!detail(&res).contains("k3y-s3cr3t"), "{}", detail(&res));
    }
    assert!(
        stolen(&other).await.is_empty(),
        "nothing reached the other origin"
    );

    // On the same origin they re-send it (and the token), as they must.
    for (status, method) in [(307, "POST"), (308, "PUT")] {
        let res = run_check_env(&http_check(&go(status, "/steal"), &request(method)), &env).await;
        assert_pass(&res);
        assert_eq!(http(&res).redirects, 1);
    }
    let seen = stolen(&app).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (hop, method) in seen.iter().zip(["POST", "PUT"]) {
        assert_eq!(hop["method"], method, "{seen:?}");
        assert_eq!(hop["body"], "api_key=k3y-s3cr3t-value", "{seen:?}");
        assert_eq!(hop["authorization"], "Bearer k3y-s3cr3t-value", "{seen:?}");
    }

    // 301, 302 and 303 of a POST become a GET without a body (and without the token), which
    // may go anywhere.
    for status in [301, 302, 303] {
        let res = run_check_env(&http_check(&go(status, &elsewhere), &request("POST")), &env).await;
        assert_pass(&res);
        assert_eq!(http(&res).redirects, 1);
    }
    let seen = stolen(&other).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for hop in &seen {
        assert_eq!(hop["method"], "GET", "{seen:?}");
        assert_eq!(hop["body"], "", "{seen:?}");
        assert_eq!(hop["authorization"], "", "{seen:?}");
    }
}
