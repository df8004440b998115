//! The `http` options blackbox_exporter users bring, against a real nginx (and the login
//! application for a POST): `compression`, `expect.headers_match`/`headers_not_match`,
//! `expect.http_versions`, `expect.json_cel`, `body_file` and `tls.min_version`.

use async_compression::tokio::bufread::{BrotliEncoder, DeflateEncoder, ZlibEncoder, ZstdEncoder};
use nightjar::result::{Details, FailureReason, HttpDetails};
use tokio::io::AsyncReadExt;

use crate::support::{
    LoginApp, Nginx, assert_check_contract, assert_fail, assert_pass, config_errors, http_check,
    metrics_after, metrics_after_full, pki, run_check, sample,
};

fn http(res: &nightjar::result::CheckResult) -> &HttpDetails {
    match &res.details {
        Details::Http(http) => http,
        other => panic!("no HTTP details in {other:?}"),
    }
}

/// A JSON document of about 6 KiB that compresses well.
fn document() -> Vec<u8> {
    let items: Vec<String> = (0..200)
        .map(|idx| format!("{{\"id\":\"item-{idx}\",\"ok\":true}}"))
        .collect();
    format!(
        "{{\"status\":\"ok\",\"region\":\"eu-west\",\"items\":[{}]}}",
        items.join(",")
    )
    .into_bytes()
}

async fn encoded(compression: &str, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match compression {
        "br" => BrotliEncoder::new(plain).read_to_end(&mut out).await,
        "zstd" => ZstdEncoder::new(plain).read_to_end(&mut out).await,
        "deflate" => ZlibEncoder::new(plain).read_to_end(&mut out).await,
        "raw-deflate" => DeflateEncoder::new(plain).read_to_end(&mut out).await,
        other => panic!("no encoder for {other}"),
    }
    .expect("encode");
    out
}

/// nginx with `/gzip` (nginx's own gzip) and `/encoded/*` (files compressed here) in place.
async fn nginx_with_bodies() -> Nginx {
    let nginx = Nginx::start();
    let www = nginx.www();
    std::fs::write(www.join("gzip"), document()).unwrap();
    std::fs::create_dir_all(www.join("encoded")).unwrap();
    for name in ["br", "zstd", "deflate", "raw-deflate"] {
        std::fs::write(
            www.join("encoded").join(name),
            encoded(name, &document()).await,
        )
        .unwrap();
    }
    nginx
}

#[tokio::test]
async fn gzip_from_nginx_is_asked_for_and_decoded() {
    let nginx = nginx_with_bodies().await;
    let text = http_check(
        &nginx.url("/gzip"),
        "compression = \"gzip\"\nexpect = { body_contains = ['\"id\":\"item-199\"'], json_cel = \"body.status == 'ok' && size(body.items) == 200\" }",
    );
    let res = run_check(&text).await;
    assert_pass(&res);
    let details = http(&res);
    let plain = document().len() as u64;
    assert_eq!(details.uncompressed_length, Some(plain));
    let wire = details.content_length.unwrap();
    assert!(wire < plain / 4, "nginx sent {wire} bytes for {plain}");
    let metrics = metrics_after(&text, &res);
    assert_check_contract(&res, &metrics);
    // The decoded length is a full-metrics gauge; lean has the bytes on the wire only.
    let full = metrics_after_full(&text, &res);
    assert_eq!(
        sample(
            &full,
            "probe_http_uncompressed_body_length",
            &[("check", "t")]
        ),
        Some(plain as f64)
    );
    assert!(
        !metrics.contains("probe_http_uncompressed_body_length"),
        "lean exports the decoded length:\n{metrics}"
    );
    assert_eq!(
        sample(&metrics, "probe_http_content_length", &[("check", "t")]),
        Some(wire as f64)
    );

    // Without `compression` nothing asks for gzip: nginx sends the document as it is, and no
    // decoded length is reported.
    let text = http_check(&nginx.url("/gzip"), "");
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_eq!(http(&res).content_length, Some(plain));
    assert_eq!(http(&res).uncompressed_length, None);
    let metrics = metrics_after(&text, &res);
    assert_eq!(
        sample(
            &metrics,
            "probe_http_uncompressed_body_length",
            &[("check", "t")]
        ),
        None
    );

    // Asked for br, which this nginx cannot make: the plain body does not decode as br.
    let res = run_check(&http_check(&nginx.url("/gzip"), "compression = \"br\"")).await;
    assert_fail(
        &res,
        FailureReason::Body,
        "does not decode as br (compression = \"br\"; the response has no Content-Encoding)",
    );

    // Only the final response is decoded: a redirect's own (plain) body is not.
    let res = run_check(&http_check(
        &nginx.url("/to-gzip"),
        "compression = \"gzip\"\nexpect = { json_cel = \"body.status == 'ok'\" }",
    ))
    .await;
    assert_pass(&res);
    assert_eq!(http(&res).redirects, 1);
    assert_eq!(http(&res).uncompressed_length, Some(plain));

    // Over HTTP/2 too.
    let res = run_check(&http_check(
        &nginx.https_url("/gzip"),
        &format!(
            "compression = \"gzip\"\ntls = {{ ca_file = \"{}\" }}\nexpect = {{ http_versions = [\"HTTP/2\"], json_cel = \"body.region == 'eu-west'\" }}",
            pki().ca.display()
        ),
    ))
    .await;
    assert_pass(&res);
    assert_eq!(http(&res).uncompressed_length, Some(plain));
}

#[tokio::test]
async fn br_zstd_and_deflate_bodies_decode() {
    let nginx = nginx_with_bodies().await;
    let plain = document().len() as u64;
    for (path, compression) in [
        ("/encoded/br", "br"),
        ("/encoded/zstd", "zstd"),
        ("/encoded/deflate", "deflate"),
        ("/encoded/raw-deflate", "deflate"),
    ] {
        let text = http_check(
            &nginx.url(path),
            &format!(
                "compression = \"{compression}\"\nexpect = {{ body_matches = ['item-199'], json_cel = \"body.items.all(i, i.ok)\" }}"
            ),
        );
        let res = run_check(&text).await;
        assert!(res.is_success(), "{path}: {:?}", res.status);
        assert_eq!(http(&res).uncompressed_length, Some(plain), "{path}");
        assert!(http(&res).content_length.unwrap() < plain / 4, "{path}");
        assert_check_contract(&res, &metrics_after(&text, &res));
    }
    // A body decoded with the wrong algorithm fails, naming what the response said.
    let res = run_check(&http_check(
        &nginx.url("/encoded/br"),
        "compression = \"deflate\"",
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::Body,
        "does not decode as deflate (compression = \"deflate\"; the response says Content-Encoding: br)",
    );
    // `identity` reads the body as it comes: the compressed bytes.
    let res = run_check(&http_check(
        &nginx.url("/encoded/zstd"),
        "compression = \"identity\"",
    ))
    .await;
    assert_pass(&res);
    assert_eq!(
        http(&res).uncompressed_length,
        http(&res).content_length,
        "identity decodes nothing"
    );
}

#[tokio::test]
async fn max_body_caps_the_decoded_body() {
    let nginx = nginx_with_bodies().await;
    let res = run_check(&http_check(
        &nginx.url("/encoded/zstd"),
        "compression = \"zstd\"\nmax_body = \"1KiB\"",
    ))
    .await;
    assert_fail(&res, FailureReason::TooLarge, "decoded body of http://");
    assert_fail(&res, FailureReason::TooLarge, "over max_body (1024 bytes)");
    assert_eq!(http(&res).uncompressed_length, Some(1025));
    // expect.max_size is on the decoded body too.
    let res = run_check(&http_check(
        &nginx.url("/gzip"),
        "compression = \"gzip\"\nexpect = { max_size = \"2KiB\" }",
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::TooLarge,
        "over expect.max_size (2048 bytes): stopped at 2049 bytes from",
    );
}

#[test]
fn compression_and_accept_encoding_are_checked_at_load() {
    let errors = config_errors(
        "c.toml",
        &http_check(
            "http://127.0.0.1/",
            "headers = { Accept-Encoding = \"br, identity\" }\ncompression = \"gzip\"",
        ),
    );
    assert!(
        errors.contains("c.toml:8:15")
            && errors.contains(
                "compression = \"gzip\", but Accept-Encoding: br, identity does not accept gzip"
            ),
        "{errors}"
    );
    let errors = config_errors(
        "c.toml",
        &http_check(
            "http://127.0.0.1/",
            "headers = { Accept-Encoding = \"gzip;q=0\" }\ncompression = \"gzip\"",
        ),
    );
    assert!(errors.contains("does not accept gzip"), "{errors}");
    let errors = config_errors(
        "c.toml",
        &http_check("http://127.0.0.1/", "compression = \"lz4\""),
    );
    assert!(errors.contains("unknown compression \"lz4\""), "{errors}");
    // As blackbox_exporter: any quality above 0, or `*`, will do.
    for accept in ["br;q=1.0, gzip;q=0.9", "*", "GZIP-not, gzip"] {
        crate::support::load(
            &http_check(
                "http://127.0.0.1/",
                &format!("headers = {{ Accept-Encoding = \"{accept}\" }}\ncompression = \"gzip\""),
            ),
            &[],
        );
    }
}

#[tokio::test]
async fn header_rules_with_allow_missing() {
    let nginx = Nginx::start();
    let url = nginx.url("/headers");
    let run = |rules: &str| {
        let text = http_check(&url, &format!("expect = {{ {rules} }}"));
        async move { run_check(&text).await }
    };
    // Matches.
    let res = run(
        "headers_match = [{ header = \"Access-Control-Allow-Origin\", regex = '^https://app\\.example\\.com$' }]",
    )
    .await;
    assert_pass(&res);
    // Every value is tried: one of two is enough to match, and to fail a must-not.
    assert_pass(&run("headers_match = [{ header = \"X-Multi\", regex = '^two$' }]").await);
    let res = run("headers_not_match = [{ header = \"x-multi\", regex = '^two$' }]").await;
    assert_fail(
        &res,
        FailureReason::Header,
        "expected no x-multi header matching /^two$/ (expect.headers_not_match), got \"two\"",
    );
    assert!(http(&res).failed_due_to_regex);
    let res = run("headers_match = [{ header = \"X-Multi\", regex = '^three$' }]").await;
    assert_fail(
        &res,
        FailureReason::Header,
        "expected a x-multi header matching /^three$/ (expect.headers_match), got \"one\", \"two\"",
    );
    // A missing header fails either kind of rule, unless allow_missing.
    for key in ["headers_match", "headers_not_match"] {
        let res = run(&format!(
            "{key} = [{{ header = \"X-Absent\", regex = 'x' }}]"
        ))
        .await;
        assert_fail(
            &res,
            FailureReason::Header,
            "but the response has no x-absent header (allow_missing = false)",
        );
        let res = run(&format!(
            "{key} = [{{ header = \"X-Absent\", regex = 'x', allow_missing = true }}]"
        ))
        .await;
        assert_pass(&res);
    }
    // The old map form still works beside them.
    assert_pass(
        &run("headers = { x-multi = 'one' }, headers_not_match = [{ header = \"Server\", regex = 'IIS' }]")
            .await,
    );
    let errors = config_errors(
        "c.toml",
        &http_check(
            &url,
            "expect = { headers_match = [{ header = \"X\", regex = '(' }, { regex = 'a' }] }",
        ),
    );
    assert!(
        errors.contains("invalid regex in `headers_match`"),
        "{errors}"
    );
    assert!(
        errors.contains(
            "`expect.headers_match[1]` of check \"t\" is missing the required key `header`"
        ),
        "{errors}"
    );
}

#[tokio::test]
async fn http_versions_of_the_final_response() {
    let nginx = Nginx::start();
    let ca = format!("tls = {{ ca_file = \"{}\" }}", pki().ca.display());
    let https = nginx.https_url("/ok");
    let res = run_check(&http_check(
        &https,
        &format!("{ca}\nexpect = {{ http_versions = [\"HTTP/1.1\"] }}"),
    ))
    .await;
    assert_fail(
        &res,
        FailureReason::HttpVersion,
        "expected HTTP version HTTP/1.1 (expect.http_versions), got HTTP/2.0",
    );
    for versions in ["[\"HTTP/2\"]", "[\"HTTP/1.1\", \"HTTP/2.0\"]"] {
        let text = http_check(
            &https,
            &format!("{ca}\nexpect = {{ http_versions = {versions} }}"),
        );
        let res = run_check(&text).await;
        assert_pass(&res);
        assert_check_contract(&res, &metrics_after(&text, &res));
    }
    // Plain HTTP is HTTP/1.1 here; HTTP/2 by prior knowledge on the h2c port.
    assert_pass(
        &run_check(&http_check(
            &nginx.url("/ok"),
            "expect = { http_versions = [\"HTTP/1.1\"] }",
        ))
        .await,
    );
    let text = http_check(
        &format!("http://{}/ok", nginx.h2c),
        "http_version = \"2\"\nexpect = { http_versions = [\"HTTP/1.0\", \"HTTP/1.1\"] }",
    );
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::HttpVersion,
        "expected HTTP version HTTP/1.0 or HTTP/1.1 (expect.http_versions), got HTTP/2.0",
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
    let errors = config_errors(
        "c.toml",
        &http_check(&https, "expect = { http_versions = [\"HTTP/3.0\"] }"),
    );
    assert!(
        errors.contains("c.toml:7:29") && errors.contains("unknown HTTP version \"HTTP/3.0\""),
        "{errors}"
    );
}

#[tokio::test]
async fn json_cel_true_false_error_and_not_json() {
    let nginx = Nginx::start();
    // /json is {"status":"ok","count":3,"items":[{"id":"a1"}]}.
    let run = |url: String, cel: &str| {
        let text = http_check(&url, &format!("expect = {{ json_cel = \"{cel}\" }}"));
        async move { run_check(&text).await }
    };
    let json = || nginx.url("/json");
    assert_pass(
        &run(
            json(),
            "body.status == 'ok' && body.count >= 3 && body.items[0].id.startsWith('a')",
        )
        .await,
    );
    let res = run(json(), "body.status == 'degraded'").await;
    assert_fail(
        &res,
        FailureReason::Json,
        "json_cel \"body.status == 'degraded'\" was false for the body",
    );
    let res = run(json(), "body.count + 1.0").await;
    assert_fail(&res, FailureReason::Json, "gave a float, not a boolean");
    let res = run(json(), "body.missing == 1").await;
    assert_fail(&res, FailureReason::Json, "could not be evaluated");
    let res = run(nginx.url("/ok"), "body.status == 'ok'").await;
    assert_fail(
        &res,
        FailureReason::Json,
        "needs a JSON body, but it does not parse",
    );
    let text = http_check(&json(), "expect = { json_cel = \"body.status == 'ok'\" }");
    let res = run_check(&text).await;
    assert_check_contract(&res, &metrics_after(&text, &res));

    // A syntax error is a configuration error where it is in the file.
    let errors = config_errors(
        "c.toml",
        &http_check(
            &json(),
            "[check.expect]\njson_cel = '''\nbody.status == 'ok' &&\n  (body.count > '''",
        ),
    );
    assert!(
        errors.contains("c.toml:10:") && errors.contains("invalid CEL in `json_cel`"),
        "{errors}"
    );
}

#[tokio::test]
async fn body_file_is_posted() {
    let app = LoginApp::start("s3cret-pass", "JBSWY3DPEHPK3PXP");
    let dir = tempfile::tempdir().unwrap();
    let right = dir.path().join("right.json");
    std::fs::write(
        &right,
        r#"{"email": "probe@example.com", "password": "s3cret-pass"}"#,
    )
    .unwrap();
    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        r#"{"email": "probe@example.com", "password": "nope"}"#,
    )
    .unwrap();
    let check = |file: &std::path::Path| {
        http_check(
            &app.url("/api/token"),
            &format!(
                "method = \"POST\"\nheaders = {{ content-type = \"application/json\" }}\nbody_file = \"{}\"\nexpect = {{ json_cel = \"size(body.token) == 48\" }}",
                file.display()
            ),
        )
    };
    let text = check(&right);
    let res = run_check(&text).await;
    assert_pass(&res);
    assert_check_contract(&res, &metrics_after(&text, &res));
    assert_fail(
        &run_check(&check(&wrong)).await,
        FailureReason::Status,
        "got 401",
    );

    let errors = config_errors("c.toml", &check(&dir.path().join("absent.json")));
    assert!(
        errors.contains("c.toml:9:13")
            && errors.contains("cannot read body_file")
            && errors.contains("absent.json"),
        "{errors}"
    );
    let errors = config_errors("c.toml", &check(dir.path()));
    assert!(
        errors.contains("is a directory, not a regular file"),
        "{errors}"
    );
    let errors = config_errors("c.toml", &format!("{}body = \"x\"\n", check(&right)));
    assert!(
        errors.contains("`body` and `body_file` are both set"),
        "{errors}"
    );
}

#[tokio::test]
async fn tls_min_version_against_a_tls12_only_server() {
    let nginx = Nginx::start();
    // This server speaks TLS 1.2 only, with a certificate for other.example.
    let url = format!("https://127.0.0.1:{}/", nginx.wrong_host.port());
    let tls = |min: &str| {
        format!(
            "tls = {{ ca_file = \"{}\", server_name = \"other.example\", min_version = \"{min}\" }}",
            pki().ca.display()
        )
    };
    let text = http_check(&url, &tls("1.3"));
    let res = run_check(&text).await;
    assert_fail(
        &res,
        FailureReason::Tls,
        "the client offered TLS 1.3 and later only (tls.min_version)",
    );
    assert_check_contract(&res, &metrics_after(&text, &res));
    let res = run_check(&http_check(&url, &tls("1.2"))).await;
    assert_pass(&res);
    assert_eq!(http(&res).tls_version, Some("TLS 1.2"));
    // The TLS 1.3 server is fine with 1.3.
    let res = run_check(&http_check(
        &nginx.https_url("/ok"),
        &tls("1.3").replace(", server_name = \"other.example\"", ""),
    ))
    .await;
    assert_pass(&res);
    assert_eq!(http(&res).tls_version, Some("TLS 1.3"));
    // The tls kind takes it too.
    let res = run_check(&format!(
        "[[check]]\nname = \"t\"\ntype = \"tls\"\ntarget = \"127.0.0.1:{}\"\n{}\n",
        nginx.wrong_host.port(),
        tls("1.3")
    ))
    .await;
    assert_fail(&res, FailureReason::Tls, "TLS 1.3 and later only");
    let errors = config_errors("c.toml", &http_check(&url, &tls("1.1")));
    assert!(
        errors.contains("unknown tls.min_version \"1.1\""),
        "{errors}"
    );
}
