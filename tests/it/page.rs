//! The status page: server-rendered HTML read as a client reads it (order, filters, paging,
//! detail pages, escaping), then a real headless Chromium driving it while a target breaks
//! and recovers.

use std::time::Duration;

use fantoccini::Locator;
use scraper::{Html, Selector};

use crate::support::browser::Browser;
use crate::support::{Nginx, RunningAgent, eventually, load, pki};

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn text(element: &scraper::ElementRef<'_>) -> String {
    element.text().collect::<Vec<_>>().join("")
}

/// `(name, state)` of every row of the list, in order.
fn rows(html: &str) -> Vec<(String, String)> {
    let doc = Html::parse_document(html);
    select(&doc, "#checks tbody tr")
        .iter()
        .map(|row| {
            (
                row.attr("data-check").unwrap().to_string(),
                row.attr("data-state").unwrap().to_string(),
            )
        })
        .collect()
}

/// 150 TCP checks: every seventh fails (a closed port), the rest pass against nginx; half
/// carry `parity=odd`. One more never runs (a yearly cron far away).
fn many_checks(nginx: &Nginx) -> String {
    let mut text = String::from("[agent]\nregion = \"lab\"\n");
    for i in 0..150 {
        let target = if i % 7 == 0 {
            "127.0.0.1:1".to_string()
        } else {
            nginx.http.to_string()
        };
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        text.push_str(&format!(
            "\n[[check]]\nname = \"check-{i:03}\"\ntype = \"tcp\"\ntarget = \"{target}\"\ninterval = \"1s\"\ntimeout = \"1s\"\nlabels = {{ parity = \"{parity}\" }}\n"
        ));
    }
    text.push_str(&format!(
        "\n[[check]]\nname = \"yearly\"\ntype = \"http\"\nurl = \"{}\"\ncron = \"0 0 1 1 *\"\nlabels = {{ note = \"<i>x</i>\" }}\n",
        nginx.url("/ok")
    ));
    text
}

#[tokio::test]
async fn the_list_puts_failures_first_and_filters_and_pages() {
    let nginx = Nginx::start();
    let agent = RunningAgent::start(load(&many_checks(&nginx), &[])).await;
    eventually(Duration::from_secs(20), "every check to run", || async {
        let (status, body) = agent.get("/?state=unknown").await;
        assert_eq!(status, 200);
        (rows(&body).len() == 1).then_some(())
    })
    .await;

    let (status, body) = agent.get("/").await;
    assert_eq!(status, 200);
    let listed = rows(&body);
    assert_eq!(listed.len(), 100, "one page holds 100 rows");
    // 22 failing (0, 7, ..., 147) come first, then the one not run yet, then passing.
    assert!(
        listed[..22].iter().all(|(_, state)| state == "failing"),
        "{listed:?}"
    );
    assert_eq!(listed[22], ("yearly".to_string(), "unknown".to_string()));
    assert!(listed[23..].iter().all(|(_, state)| state == "passing"));
    let doc = Html::parse_document(&body);
    assert_eq!(
        text(&select(&doc, "#checks caption")[0]),
        "Checks 1–100 of 151, what needs attention first"
    );
    assert_eq!(text(&select(&doc, "nav.pages span")[0]), "Page 1 of 2");
    assert_eq!(
        select(&doc, "nav.pages a[rel=next]")[0].attr("href"),
        Some("/?page=2")
    );
    let counts = text(&select(&doc, "ul.counts")[0]);
    assert!(
        counts.contains("22 failing")
            && counts.contains("128 passing")
            && counts.contains("1 not run yet"),
        "{counts}"
    );
    assert!(
        select(&doc, "title")[0]
            .inner_html()
            .starts_with("22 failing")
    );
    // The failing row says why, the history strip says it in words.
    let first = &select(&doc, "#checks tbody tr")[0];
    let reason = text(
        &first
            .select(&Selector::parse(".detail").unwrap())
            .next()
            .unwrap(),
    );
    assert!(reason.starts_with("connect"), "{reason}");
    let strip = first
        .select(&Selector::parse(".strip").unwrap())
        .next()
        .unwrap();
    assert!(
        strip.attr("aria-label").unwrap().starts_with("Last "),
        "{strip:?}"
    );
    // Label values are escaped, never markup.
    assert!(body.contains("note=&lt;i&gt;x&lt;/i&gt;"));
    assert!(!body.contains("<i>x</i>"));
    // Accessibility: every control has a label, the table a caption and column headers.
    for control in select(&doc, "form.filters select, form.filters input") {
        let id = control.attr("id").expect("a control id");
        assert_eq!(select(&doc, &format!("label[for={id}]")).len(), 1, "{id}");
    }
    assert_eq!(select(&doc, "#checks thead th[scope=col]").len(), 9);

    let (_, second) = agent.get("/?page=2").await;
    assert_eq!(rows(&second).len(), 51);
    let (_, beyond) = agent.get("/?page=99").await;
    assert_eq!(
        rows(&beyond).len(),
        51,
        "a page past the end shows the last"
    );
    let (_, junk) = agent.get("/?page=abc&state=nonsense").await;
    assert!(rows(&junk).is_empty());
    assert!(junk.contains("No check matches these filters"));

    let (_, failing) = agent.get("/?state=failing").await;
    assert_eq!(rows(&failing).len(), 22);
    let (_, attention) = agent.get("/?state=attention").await;
    assert_eq!(rows(&attention).len(), 22);
    let (_, odd) = agent.get("/?label=parity%3Dodd&state=failing").await;
    let odd = rows(&odd);
    assert_eq!(odd.len(), 11, "{odd:?}");
    let (_, http) = agent.get("/?type=http").await;
    assert_eq!(rows(&http), [("yearly".to_string(), "unknown".to_string())]);
    let (_, named) = agent.get("/?q=check-01").await;
    assert_eq!(rows(&named).len(), 10);
    let (_, with_key) = agent.get("/?label=note").await;
    assert_eq!(rows(&with_key).len(), 1);

    // The detail page and its JSON.
    let (status, detail) = agent.get("/checks/check-007").await;
    assert_eq!(status, 200);
    let doc = Html::parse_document(&detail);
    assert_eq!(text(&select(&doc, "h1")[0]), "check-007");
    assert!(detail.contains("Connection refused"), "{detail}");
    let phases: Vec<String> = select(&doc, "table.compact tbody th")
        .iter()
        .map(text)
        .collect();
    assert_eq!(phases[..2], ["resolve", "connect"]);
    let (status, json) = agent.get("/api/v1/checks/check-007").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["state"], "failing");
    assert_eq!(json["last_run"]["reason"], "connect");
    let (status, missing) = agent.get("/checks/nope").await;
    assert_eq!(status, 404);
    assert!(missing.contains("No check named"));
    assert!(!missing.contains("Did you mean"), "{missing}");
    // A typo of a check's name points at it.
    let (status, typo) = agent.get("/checks/check-07").await;
    assert_eq!(status, 404);
    assert!(
        typo.contains("Did you mean <a href=\"/checks/check-007\">check-007</a>?"),
        "{typo}"
    );
    let (status, json) = agent.get("/api/v1/checks/chek-007").await;
    assert_eq!(status, 404);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["error"],
        "no check named \"chek-007\" runs on this agent; did you mean \"check-007\"?"
    );
    assert_eq!(agent.get("/api/v1/checks/nope").await.0, 404);
    agent.stop().await;
}

/// What the browser sees of one row: its state and reason text.
async fn row_state(browser: &Browser, check: &str) -> Option<(String, String)> {
    let row = browser
        .client
        .find(Locator::Css(&format!("tr[data-check=\"{check}\"]")))
        .await
        .ok()?;
    let state = row.attr("data-state").await.ok()??;
    let text = row.text().await.ok()?;
    Some((state, text))
}

#[tokio::test]
async fn a_browser_sees_a_target_break_and_recover_without_reloading() {
    let nginx = Nginx::start();
    let flip = nginx.www().join("flip");
    std::fs::write(&flip, "ok\n").unwrap();
    let config = format!(
        "[agent]\nregion = \"eu-west-1\"\n\n\
[[check]]\nname = \"shop-home\"\ntype = \"http\"\nurl = \"{flip_url}\"\ninterval = \"1s\"\nlabels = {{ team = \"shop\" }}\n\n\
[[check]]\nname = \"shop-cert\"\ntype = \"tls\"\ntarget = \"localhost:{short}\"\ninterval = \"1s\"\ntls = {{ ca_file = \"{ca}\" }}\nexpect = {{ min_days_left = 3 }}\nlabels = {{ team = \"shop\" }}\n\n\
[[check]]\nname = \"api-health\"\ntype = \"http\"\nurl = \"{ok}\"\ninterval = \"1s\"\nlabels = {{ team = \"api\" }}\n\n\
[[check]]\nname = \"nginx-port\"\ntype = \"tcp\"\ntarget = \"{tcp}\"\ninterval = \"1s\"\nlabels = {{ team = \"sre\" }}\n",
        flip_url = nginx.url("/flip"),
        short = nginx.short_intermediate.port(),
        ca = pki().ca.display(),
        ok = nginx.url("/ok"),
        tcp = nginx.http,
    );
    let agent = RunningAgent::start(load(&config, &[])).await;
    let base = format!("http://{}", agent.addr);
    let browser = Browser::start(1280, 720).await;
    browser.client.goto(&format!("{base}/")).await.unwrap();

    // The page fills in by itself as results arrive.
    eventually(
        Duration::from_secs(20),
        "shop-home to show as passing",
        || async {
            row_state(&browser, "shop-home")
                .await
                .filter(|(state, _)| state == "passing")
        },
    )
    .await;
    let marker = "window.nightjarTestMarker = 'same document'; return true;";
    browser.client.execute(marker, vec![]).await.unwrap();

    // Break the target: the row turns failing with its reason, first in the table.
    std::fs::remove_file(&flip).unwrap();
    let (_, text) = eventually(
        Duration::from_secs(20),
        "shop-home to show as failing",
        || async {
            row_state(&browser, "shop-home")
                .await
                .filter(|(state, _)| state == "failing")
        },
    )
    .await;
    assert!(
        text.contains("Failing") && text.contains("status") && text.contains("404"),
        "{text}"
    );
    let first = browser
        .client
        .find(Locator::Css("#checks tbody tr"))
        .await
        .unwrap();
    assert_eq!(
        first.attr("data-check").await.unwrap().as_deref(),
        Some("shop-home")
    );
    // The expiring intermediate (10 days) is next, with its days left.
    let (_, cert) = row_state(&browser, "shop-cert").await.unwrap();
    assert!(
        cert.contains("days left") && cert.contains("certificate"),
        "{cert}"
    );
    let same = browser
        .client
        .execute("return window.nightjarTestMarker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(
        same, "same document",
        "the page refreshed in place, not by reloading"
    );
    publish(browser.screenshot("status-page").await);

    // Fix it: the row recovers.
    std::fs::write(&flip, "ok\n").unwrap();
    eventually(Duration::from_secs(20), "shop-home to recover", || async {
        row_state(&browser, "shop-home")
            .await
            .filter(|(state, _)| state == "passing")
    })
    .await;

    // Filters: choosing a type applies it at once; a label filter by the form.
    let select = browser.client.find(Locator::Css("#f-type")).await.unwrap();
    select.select_by_value("tcp").await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the type filter to apply",
        || async {
            let url = browser.client.current_url().await.ok()?;
            let shown = names(&browser).await;
            (url.query().unwrap_or_default().contains("type=tcp") && shown == ["nginx-port"])
                .then_some(())
        },
    )
    .await;
    let shown = names(&browser).await;
    assert_eq!(shown, ["nginx-port"]);
    browser.client.goto(&format!("{base}/")).await.unwrap();
    let label = browser.client.find(Locator::Css("#f-label")).await.unwrap();
    label.send_keys("team=shop").await.unwrap();
    browser
        .client
        .find(Locator::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the label filter to apply",
        || async {
            let shown = names(&browser).await;
            (shown == ["shop-cert", "shop-home"]).then_some(())
        },
    )
    .await;

    // The detail page of the TLS check shows the chain.
    browser
        .client
        .find(Locator::LinkText("shop-cert"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the detail page", || async {
        let heading = browser.client.find(Locator::Css("h1")).await.ok()?;
        (heading.text().await.ok()? == "shop-cert").then_some(())
    })
    .await;
    let chain = browser
        .client
        .find_all(Locator::XPath(
            "//table[caption='The presented chain, leaf first']/tbody/tr",
        ))
        .await
        .unwrap();
    assert_eq!(chain.len(), 2, "the leaf and the intermediate");
    let page = browser.client.source().await.unwrap();
    assert!(page.contains("The presented chain, leaf first"));
    assert!(page.contains("CN=localhost"));
    browser.client.set_window_size(1280, 1500).await.unwrap();
    publish(browser.screenshot("status-page-detail").await);

    // On a phone the page fits the screen's width.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.client.goto(&format!("{base}/")).await.unwrap();
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page is wider than a phone: {overflow}"
    );
    publish(browser.screenshot("status-page-phone").await);

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // The Content-Security-Policy is on, and a violation is a console error this test sees:
    // an inline style attribute added now is refused.
    browser
        .client
        .execute(
            "var p = document.createElement('p'); p.setAttribute('style', 'color: red'); document.body.appendChild(p);",
            vec![],
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    while !seen
        .iter()
        .any(|error: &String| error.contains("Content Security Policy"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no CSP violation in the console: {seen:?}"
        );
        seen.extend(browser.console_errors().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.close().await;
    agent.stop().await;
}

/// With `NIGHTJAR_UPDATE_SCREENSHOTS` set, copies a screenshot into `docs/` for the README.
fn publish(shot: std::path::PathBuf) {
    if std::env::var_os("NIGHTJAR_UPDATE_SCREENSHOTS").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&shot, docs.join(shot.file_name().unwrap())).unwrap();
    }
}

async fn names(browser: &Browser) -> Vec<String> {
    let mut names = Vec::new();
    for row in browser
        .client
        .find_all(Locator::Css("#checks tbody tr"))
        .await
        .unwrap_or_default()
    {
        if let Ok(Some(name)) = row.attr("data-check").await {
            names.push(name);
        }
    }
    names.sort();
    names
}

#[tokio::test]
async fn detail_pages_show_steps_and_answers_and_never_a_secret() {
    use crate::support::bind::{Bind, ZONE};
    let nginx = Nginx::start();
    let bind = Bind::primary();
    let secret = "s3cr3t-Pa55word";
    let token = "tok-0123456789abcdef";
    let config = format!(
        "[agent]\nregion = \"lab\"\n\n\
[[check]]\nname = \"zone-www\"\ntype = \"dns\"\nquery = \"www.{ZONE}\"\nrecord = \"A\"\nserver = \"{dns}\"\ninterval = \"1s\"\n\n\
[[check]]\nname = \"login\"\ntype = \"flow\"\ninterval = \"1s\"\n\
[[check.steps]]\nname = \"home\"\nurl = \"{ok}\"\n\
[[check.steps]]\nname = \"account\"\nurl = \"{missing}\"\nbearer_token = \"${{env:TOKEN}}\"\n\n\
[[check]]\nname = \"echo\"\ntype = \"http\"\nurl = \"http://probe:${{env:PASSWORD}}@{http}/echo?key=${{env:TOKEN}}\"\n\
headers = {{ x-probe = \"${{env:PASSWORD}}\" }}\ninterval = \"1s\"\nexpect = {{ body_contains = [\"never there\"] }}\n",
        dns = bind.dns,
        ok = nginx.url("/ok"),
        missing = nginx.url("/notfound"),
        http = nginx.http,
    );
    let agent = RunningAgent::start(load(&config, &[("PASSWORD", secret), ("TOKEN", token)])).await;
    eventually(Duration::from_secs(20), "every check to run", || async {
        let (_, body) = agent.get("/?state=unknown").await;
        rows(&body).is_empty().then_some(())
    })
    .await;

    let (_, dns) = agent.get("/checks/zone-www").await;
    let doc = Html::parse_document(&dns);
    let answers: Vec<String> = select(&doc, "table")
        .iter()
        .filter(|table| text(&select_in(table, "caption")[0]) == "Answers")
        .flat_map(|table| select_in(table, "tbody tr"))
        .map(|row| text(&row))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.iter().any(|row| row.contains("203.0.113.5")));
    assert!(
        dns.contains("NOERROR") || dns.contains("NoError"),
        "the response code is shown"
    );

    let (_, flow) = agent.get("/checks/login").await;
    let doc = Html::parse_document(&flow);
    let steps: Vec<(String, String)> = select(&doc, "table")
        .iter()
        .filter(|table| text(&select_in(table, "caption")[0]) == "The steps, in order")
        .flat_map(|table| select_in(table, "tbody tr"))
        .map(|row| {
            let cells = select_in(&row, "th, td");
            (text(&cells[0]), text(&cells[1]))
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("home".to_string(), "✓ Passing".to_string()),
            ("account".to_string(), "✗ Failing".to_string())
        ]
    );
    assert!(
        flow.contains("step &quot;account&quot;"),
        "the detail names the step, escaped"
    );

    // The secret went into userinfo, the query string, a header and a bearer token; the echo
    // endpoint even sends the header back in the body the failing expectation looks at.
    for path in [
        "/",
        "/checks/echo",
        "/checks/login",
        "/api/v1/checks",
        "/api/v1/checks/echo",
    ] {
        let (status, body) = agent.get(path).await;
        assert_eq!(status, 200, "{path}");
        for needle in [secret, token] {
            assert!(
                !body.contains(needle),
                "{needle} leaked into {path}:\n{body}"
            );
        }
    }
    let (_, echo) = agent.get("/checks/echo").await;
    assert!(
        echo.contains("body"),
        "the echo check fails on its body: {echo}"
    );
    agent.stop().await;
}

fn select_in<'a>(element: &scraper::ElementRef<'a>, css: &str) -> Vec<scraper::ElementRef<'a>> {
    element.select(&Selector::parse(css).unwrap()).collect()
}
