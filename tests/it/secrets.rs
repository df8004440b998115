//! One secret in every place a secret can go, and every output searched for it: the agent's
//! debug logs, `/metrics`, the JSON API, the status page, `nightjar check` in every format,
//! and the errors of `nightjar validate`. Each secret is also looked for URL-encoded and in
//! base64, standard and URL-safe, alone and as `user:secret` (basic auth).

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use crate::support::{Nginx, free_port, http_get};

/// `(environment variable, value)`: characters that change under URL encoding where the
/// place allows them.
const SECRETS: &[(&str, &str)] = &[
    ("S_USERINFO", "Us3rinfo-pw-7731"),
    ("S_QUERY", "Qu3ry-tok-5521"),
    ("S_HEADER", "H3ader s3cret/+=x"),
    ("S_BEARER", "B3arer-tok3n-0042"),
    ("S_BASIC", "B4sic p@ss:word"),
    ("S_FORM", "F0rm s3cret&x=1"),
    ("S_JSON", "J5on \"s3cret\" \\ x"),
    ("S_TOTP", "JBSWY3DPEHPK3PXPJBSWY3DP"),
    ("S_RW_TOKEN", "Rw-b3arer-9911"),
    ("S_RW_PASSWORD", "Rw-p4ss-word-8812"),
    // Characters a URL path or query percent-encodes (space, quote, backtick, braces,
    // non-ASCII) beside ones it keeps (`@`, `'`, `/`, `%`).
    ("S_PATH", "P4th s3cret@\"é/%x'{`}"),
];

/// Every form a secret could leak in.
fn forms(secret: &str) -> Vec<String> {
    let url: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let path = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect::<String>();
    let mut out = vec![secret.to_string(), url, path];
    // As the url crate writes it in a path, a query and user-info (what a `target` shows).
    let parsed = url::Url::parse(&format!("http://h/{secret}?{secret}")).unwrap();
    out.push(parsed.path()[1..].to_string());
    out.push(parsed.query().unwrap().to_string());
    let mut userinfo = url::Url::parse("http://h/").unwrap();
    userinfo.set_password(Some(secret)).unwrap();
    out.push(userinfo.password().unwrap().to_string());
    // Rust's debug escaping, as a quoted detail carries it.
    out.push(format!("{secret:?}").trim_matches('"').to_string());
    for text in [
        secret.to_string(),
        format!("probe:{secret}"),
        format!("rw:{secret}"),
    ] {
        out.push(base64::engine::general_purpose::STANDARD.encode(&text));
        out.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&text));
    }
    // JSON-escaped, as a log or API field would carry it.
    out.push(
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_string(),
    );
    out.sort();
    out.dedup();
    out
}

fn assert_clean(what: &str, text: &str) {
    for (name, secret) in SECRETS {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{name} leaked into {what} as {form:?}:\n{text}"
            );
        }
    }
}

/// The start of the log line a remote-write endpoint tries to forge.
const FORGED: &str = "FORGED-LINE level=error";

/// A remote-write endpoint that rejects every batch with a body echoing the Authorization
/// header it was sent and a newline followed by a forged log line. In process: no real
/// endpoint misbehaves this way on purpose.
async fn echoing_endpoint() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 8192];
                // The head, then the body its Content-Length announces; bounded.
                let head_end = loop {
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                    match stream.read(&mut buf).await {
                        Ok(n) if n > 0 && seen.len() < 1 << 20 => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                };
                let head = String::from_utf8_lossy(&seen[..head_end]).to_string();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|line| {
                            let (key, value) = line.split_once(':')?;
                            key.eq_ignore_ascii_case(name)
                                .then(|| value.trim().to_string())
                        })
                        .unwrap_or_default()
                };
                let length: usize = header("content-length").parse().unwrap_or(0);
                while seen.len() < head_end + length.min(64 << 20) {
                    match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let body = format!(
                    "bad batch; you sent Authorization: {}\n{FORGED} msg=\"all checks pass\"\n",
                    header("authorization")
                );
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn config(nginx: &Nginx, remote: std::net::SocketAddr, echoing: std::net::SocketAddr) -> String {
    let echo = nginx.url("/echo");
    let http = nginx.http;
    format!(
        r#"[agent]
region = "lab"

[[check]]
name = "userinfo-query-header"
type = "http"
url = "http://probe:${{env:S_USERINFO}}@{http}/echo?token=${{env:S_QUERY}}"
headers = {{ x-probe = "${{env:S_HEADER}}" }}
interval = "1s"
expect = {{ body_matches = ["^never"] }}

[[check]]
name = "path"
type = "http"
url = "http://{http}/echo/${{env:S_PATH}}/x?q=${{env:S_PATH}}"
interval = "1s"

[[check]]
name = "bearer"
type = "http"
url = "{echo}"
bearer_token = "${{env:S_BEARER}}"
interval = "1s"
expect = {{ status = [201] }}

[[check]]
name = "basic"
type = "http"
url = "{echo}"
basic_auth = {{ username = "probe", password = "${{env:S_BASIC}}" }}
interval = "1s"
expect = {{ body_contains = ["never there"] }}

[[check]]
name = "login"
type = "flow"
interval = "1s"
  [[check.steps]]
  name = "form"
  url = "{echo}"
  method = "POST"
  form = {{ user = "probe", password = "${{env:S_FORM}}", code = "${{totp:env:S_TOTP}}" }}
  [[check.steps]]
  name = "api"
  url = "{echo}"
  method = "POST"
  json = {{ secret = "${{env:S_JSON}}", nested = {{ list = ["${{env:S_JSON}}"] }} }}
  headers = {{ x-probe = "${{totp:env:S_TOTP}}" }}
  expect = {{ status = [204] }}

[[remote_write]]
url = "http://{remote}/api/v1/write"
bearer_token = "${{env:S_RW_TOKEN}}"
interval = "1s"

[[remote_write]]
name = "basic"
url = "http://{remote}/api/v1/write"
basic_auth = {{ username = "rw", password = "${{env:S_RW_PASSWORD}}" }}
interval = "1s"

[[remote_write]]
name = "echoing"
url = "http://{echoing}/api/v1/write"
bearer_token = "${{env:S_RW_TOKEN}}"
interval = "1s"
"#
    )
}

/// The real binary with every secret in its environment.
fn nightjar() -> Command {
    let mut cmd = crate::support::nightjar();
    for (name, value) in SECRETS {
        cmd.env(name, value);
    }
    cmd
}

// Two workers: the echoing endpoint keeps answering while the test thread waits for the
// agent to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_output() {
    let nginx = Nginx::start();
    // remote_write to a port that refuses, so its errors are logged.
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let echoing = echoing_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.toml");
    std::fs::write(&path, config(&nginx, closed, echoing)).unwrap();

    // The agent, logging at debug in JSON and in text.
    for format in ["json", "text"] {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = crate::support::start_agent(
            nightjar()
                .args([
                    "run",
                    "--log-level",
                    "debug",
                    "--log-format",
                    format,
                    "--config",
                ])
                .arg(&path),
            listen,
        );
        crate::support::eventually(
            Duration::from_secs(20),
            "every check to fail twice",
            || async {
                let (_, body) = http_get(listen, "/api/v1/checks").await;
                let json: serde_json::Value = serde_json::from_str(&body).ok()?;
                json["checks"]
                    .as_array()?
                    .iter()
                    .all(|check| {
                        check["history"].as_array().is_some_and(|h| h.len() >= 2)
                            && check["state"] == "failing"
                    })
                    .then_some(())
            },
        )
        .await;
        let mut pages = Vec::new();
        for page in [
            "/metrics",
            "/api/v1/checks",
            "/",
            "/?state=failing",
            "/checks/userinfo-query-header",
            "/checks/path",
            "/api/v1/checks/path",
            "/checks/bearer",
            "/checks/basic",
            "/checks/login",
            "/api/v1/checks/login",
        ] {
            let (status, body) = http_get(listen, page).await;
            assert_eq!(status, 200, "{page}");
            assert_clean(page, &body);
            pages.push(body);
        }
        // The failures are there to be seen, only without secrets.
        assert!(pages[1].contains("expected status 201"), "{}", pages[1]);
        let out = crate::support::terminate(&mut child);
        let logs = String::from_utf8_lossy(&out.stderr);
        assert!(
            logs.contains("remote") && logs.to_lowercase().contains("debug"),
            "debug logs, remote write included:\n{logs}"
        );
        assert_clean(&format!("the {format} logs"), &logs);
        // The endpoint's reply is in the log, on the line that reports it, its newline
        // escaped: it forged no line of its own.
        assert!(
            logs.contains("bad batch; you sent Authorization: <redacted>"),
            "{logs}"
        );
        assert!(
            !logs
                .lines()
                .any(|line| line.trim_start().starts_with(FORGED)),
            "a forged log line:\n{logs}"
        );
    }

    // One-shot runs in every format.
    for format in ["text", "json", "junit"] {
        let out = nightjar()
            .args([
                "check",
                "--log-level",
                "debug",
                "--format",
                format,
                "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "every check fails");
        assert_clean(
            &format!("check --format {format}"),
            &format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }

    // Configuration errors around secret references.
    let broken = config(&nginx, closed, echoing)
        .replace(
            "interval = \"1s\"\nexpect = { status = [201] }",
            "interval = \"soon\"",
        )
        .replace(
            "bearer_token = \"${env:S_RW_TOKEN}\"",
            "bearer_token = \"${env:S_RW_TOKEN}\"\nbogus = \"${env:S_RW_TOKEN}\"",
        );
    let broken_path = dir.path().join("broken.toml");
    std::fs::write(&broken_path, broken).unwrap();
    let out = nightjar()
        .args(["validate", "--config"])
        .arg(&broken_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.contains("bogus"), "{errors}");
    assert_clean("validate's errors", &errors);
}
