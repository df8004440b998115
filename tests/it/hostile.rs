//! Misbehaving targets nginx cannot imitate. Each ends as a failed check with the right
//! reason, within the check's timeout.

use std::time::Duration;

use nightjar::result::{FailureReason, Status};

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
        Status::Fail {
            reason: got,
            detail,
        } => {
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
