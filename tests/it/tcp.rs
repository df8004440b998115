//! The `tcp` check: a plain connect to nginx, a banner conversation with nginx's SMTP mail
//! module, a closed port, and a silent server (the one thing nginx will not do).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nightjar::result::{Details, FailureReason};

use crate::support::{
    Nginx, assert_check_contract, assert_fail, assert_pass, config_errors, free_port,
    metrics_after, run_check, sample,
};

fn tcp_check(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[check]]\nname = \"port\"\ntype = \"tcp\"\ntarget = \"{addr}\"\ninterval = \"30s\"\ntimeout = \"2s\"\n{extra}\n"
    )
}

#[tokio::test]
async fn a_connect_passes_and_reports_its_phases() {
    let nginx = Nginx::start();
    let text = tcp_check(nginx.http, "");
    let res = run_check(&text).await;
    assert_pass(&res);
    let Details::Tcp(details) = &res.details else {
        panic!("no tcp details in {res:?}")
    };
    assert!(details.connect > Duration::ZERO);
    assert_eq!(details.remote_addr, Some(nginx.http));
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    assert_eq!(
        sample(&metrics, "probe_ip_protocol", &[("check", "port")]),
        Some(4.0)
    );
    assert!(
        sample(
            &metrics,
            "nightjar_tcp_duration_seconds",
            &[("check", "port"), ("phase", "connect")]
        )
        .is_some_and(|secs| secs > 0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_conversation_matches_what_the_server_says() {
    let nginx = Nginx::start();
    // nginx's SMTP server greets with 220 and answers EHLO with 250 lines.
    let text = tcp_check(
        nginx.smtp,
        "send = \"EHLO probe.example\\r\\n\"\nexpect = { matches = ['^220 ', '(?m)^250[ -]STARTTLS'] }",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let Details::Tcp(details) = &res.details else {
        panic!()
    };
    assert!(details.received > 0 && details.exchange > Duration::ZERO);

    let text = tcp_check(
        nginx.smtp,
        "send = \"QUIT\\r\\n\"\nexpect = { matches = ['^\\+PONG'] }",
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "closed the connection before sending a match for \"^\\\\+PONG\"; it sent: \"220 ",
    );
}

#[tokio::test]
async fn a_closed_port_fails_with_connect() {
    let port = free_port();
    let res = run_check(&tcp_check(SocketAddr::from(([127, 0, 0, 1], port)), "")).await;
    assert_fail(&res, FailureReason::Connect, "refused");
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds connections without a word.
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let start = Instant::now();
    let res = run_check(&tcp_check(addr, "expect = { matches = ['^SSH-2\\.0-'] }")).await;
    let took = start.elapsed();
    assert_fail(
        &res,
        FailureReason::Timeout,
        "timed out waiting for \"^SSH-2\\\\.0-\" from 127.0.0.1",
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    server.abort();
}

#[test]
fn a_target_without_a_port_is_a_config_error() {
    let errors = config_errors(
        "tcp.toml",
        "[[check]]\nname = \"db\"\ntype = \"tcp\"\ntarget = \"db.example.com\"\nexpect = { matches = ['(unclosed'] }\n",
    );
    assert!(
        errors.contains("tcp.toml:4:10: target \"db.example.com\" is not HOST:PORT"),
        "{errors}"
    );
    assert!(
        errors.contains("tcp.toml:5:23: invalid regex in `matches`"),
        "{errors}"
    );
}
