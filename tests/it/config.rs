//! Config loading and validation: every problem at once, with file:line:column and a hint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nightjar::config::{self, MapEnv, Overrides, Schedule};

/// Validates `text` as `test.toml` and renders every error, one per line.
fn errors(text: &str, env: &[(&str, &str)]) -> String {
    let env = MapEnv(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    match config::load_str(Path::new("test.toml"), text, &env, &Overrides::default()) {
        Ok(_) => String::new(),
        Err(errors) => errors.to_string(),
    }
}

fn check(text: &str, expect: &str) {
    let got = errors(text, &[]);
    assert_eq!(got.trim(), expect.trim(), "\n--- got ---\n{got}\n");
}

#[test]
fn every_problem_is_reported_at_once_with_its_place() {
    let text = r#"[agent]
regoin = "eu-west-1"

[[check]]
name = "Shop Home"
type = "http"
urll = "https://example.com/"

[[check]]
name = "api"
type = "http"
url = "example.com/health"
interval = "30s"
timeout = "1m"
expect = { status = ["2xx"], body_matches = ["(unclosed"] }

[[check]]
name = "api"
type = "htp"
cron = "*/5 * * *"

[[check]]
name = "secret"
type = "http"
url = "https://example.com/?key=${env:API_KEY}"
"#;
    check(
        text,
        r#"
test.toml:2:1: unknown key `regoin` in [agent] (hint: did you mean `region`?)
test.toml:4:1: check "Shop Home" is missing the required key `url` (hint: set the URL to request, like url = "https://example.com/")
test.toml:5:8: check name "Shop Home" is not valid (hint: use lowercase letters, digits, `-` and `_` only, like "shop-home")
test.toml:7:1: unknown key `urll` in check "Shop Home" (hint: did you mean `url`?)
test.toml:12:7: invalid URL "example.com/health": relative URL without a base (hint: did you mean "https://example.com/health"?)
test.toml:14:11: timeout 1m is longer than the interval 30s of check "api" (hint: a run must end before the next one is due; lower the timeout or raise the interval)
test.toml:15:46: invalid regex in `body_matches`: error: unclosed group
test.toml:18:8: duplicate check name "api" (hint: it is already defined at test.toml:10:8; check names must be unique)
test.toml:19:8: unknown check type "htp" (hint: did you mean "http"? supported types: http, tls, tcp, dns, domain, flow, websocket, grpc, icmp, udp)
test.toml:20:8: invalid cron expression "*/5 * * *": expected 5 or 6 fields, found 4 (hint: use 5 fields (minute hour day-of-month month day-of-week, like "*/5 * * * *") or 6 with seconds first; times are UTC)
test.toml:25:7: environment variable API_KEY is not set (referenced as ${env:API_KEY}) (hint: set API_KEY in the agent's environment, or use ${file:PATH})
"#,
    );
}

#[test]
fn toml_syntax_errors_name_line_and_column() {
    let got = errors("[[check]]\nname = \"a\"\ntype = \"http\nurl = 3\n", &[]);
    assert!(
        got.starts_with("test.toml:3:13: invalid TOML: invalid basic string"),
        "{got}"
    );
}

#[test]
fn wrong_types_are_reported_with_their_place() {
    check(
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = 3\ninterval = \"30\"\nfollow_redirects = \"yes\"\n",
        r#"
test.toml:4:7: `url` in check "a" must be a string, found an integer
test.toml:5:12: `interval` in check "a": "30" is not a positive duration (hint: write a number with a unit, like "500ms", "30s", "5m", "1h" or "21d")
test.toml:6:20: `follow_redirects` in check "a" must be true or false, found a string
"#,
    );
}

#[test]
fn secrets_come_from_env_and_files_and_stay_out_of_targets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("password");
    std::fs::write(&secret_file, "hunter2\n").unwrap();
    let text = format!(
        r#"[[check]]
name = "a"
type = "http"
url = "https://example.com/api?token=${{env:TOKEN}}"
headers = {{ x-api-key = "${{file:{}}}" }}
"#,
        secret_file.display()
    );
    let config = super::support::load(&text, &[("TOKEN", "t0ps3cret")]);
    let def = &config.checks[0];
    assert_eq!(def.target, "https://example.com/api");
    assert!(def.secrets.contains(&"t0ps3cret".to_string()));
    assert!(
        def.secrets.contains(&"hunter2".to_string()),
        "file secrets lose their trailing newline"
    );
    assert_eq!(
        def.redact("got t0ps3cret and hunter2"),
        "got <redacted> and <redacted>"
    );
}

#[test]
fn missing_secret_file_is_an_error_that_names_it() {
    let got = errors(
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\nbearer_token = \"${file:/nonexistent/token}\"\n",
        &[],
    );
    assert!(
        got.contains("test.toml:5:16: cannot read secret file /nonexistent/token"),
        "{got}"
    );
}

#[test]
fn unknown_references_and_flow_variables_are_rejected_in_http_checks() {
    let got = errors(
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/${csrf}\"\n",
        &[],
    );
    assert!(got.contains("unknown reference ${csrf}"), "{got}");
    // `$${` is a literal `${`.
    let config = super::support::load(
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\nbody = \"$${literal}\"\n",
        &[],
    );
    let nightjar::checks::CheckSpec::Http(spec) = &config.checks[0].spec else {
        panic!("an http check")
    };
    assert_eq!(spec.body.as_deref(), Some(&b"${literal}"[..]));
}

#[test]
fn cron_accepts_five_and_six_fields() {
    for expr in ["*/5 * * * *", "0 */5 * * * *", "@hourly"] {
        let config = super::support::load(
            &format!(
                "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\ncron = \"{expr}\"\n"
            ),
            &[],
        );
        assert!(
            matches!(config.checks[0].schedule, Schedule::Cron(_)),
            "{expr}"
        );
    }
    let got = errors(
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\ncron = \"* * * * *\"\ninterval = \"1m\"\n",
        &[],
    );
    assert!(got.contains("sets both `interval` and `cron`"), "{got}");
}

#[test]
fn a_cron_more_frequent_than_the_timeout_is_rejected() {
    let got = errors(
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\ncron = \"*/10 * * * * *\"\ntimeout = \"30s\"\n",
        &[],
    );
    assert!(
        got.contains("timeout 30s is longer than the interval 10s"),
        "{got}"
    );
}

#[test]
fn defaults_apply_and_an_implicit_timeout_never_exceeds_the_interval() {
    let config = super::support::load(
        r#"[defaults]
interval = "2m"
timeout = "20s"

[[check]]
name = "a"
type = "http"
url = "https://example.com/"

[[check]]
name = "b"
type = "http"
url = "https://example.com/"
interval = "5s"
"#,
        &[],
    );
    let a = &config.checks[0];
    assert!(matches!(a.schedule, Schedule::Interval(d) if d == Duration::from_secs(120)));
    assert_eq!(a.timeout, Duration::from_secs(20));
    assert_eq!(config.checks[1].timeout, Duration::from_secs(5));
}

#[test]
fn directories_load_sorted_and_duplicates_across_files_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[[check]]\nname = \"x\"\ntype = \"http\"\nurl = \"https://a.example/\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        "\n[[check]]\nname = \"x\"\ntype = \"http\"\nurl = \"https://b.example/\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a config").unwrap();
    let err = config::load(
        &[dir.path().to_path_buf()],
        &MapEnv::default(),
        &Overrides::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    let b = dir.path().join("b.toml");
    let a = dir.path().join("a.toml");
    assert_eq!(
        text,
        format!(
            "{}:3:8: duplicate check name \"x\" (hint: it is already defined at {}:2:8; check names must be unique)",
            b.display(),
            a.display()
        )
    );
}

#[test]
fn a_missing_config_path_is_an_error() {
    let err = config::load(
        &[PathBuf::from("/nonexistent/nightjar")],
        &MapEnv::default(),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/nightjar: cannot read config path"),
        "{err}"
    );
}

#[test]
fn agent_table_and_overrides() {
    let text = "[agent]\nregion = \"eu-west-1\"\nlisten = \"127.0.0.1:9999\"\nlabels = { env = \"prod\" }\nconcurrency = 8\nduration_buckets = [\"100ms\", \"500ms\", \"2s\"]\n";
    let config = super::support::load(text, &[]);
    assert_eq!(config.agent.region, "eu-west-1");
    assert_eq!(config.agent.concurrency, 8);
    assert_eq!(config.agent.duration_buckets, vec![0.1, 0.5, 2.0]);
    assert_eq!(
        config.agent.labels.get("env").map(String::as_str),
        Some("prod")
    );
    let overridden = config::load_str(
        Path::new("test.toml"),
        text,
        &MapEnv::default(),
        &Overrides {
            region: Some("us-east-1".into()),
            listen: Some("127.0.0.1:1234".parse().unwrap()),
            state_dir: Some("/var/lib/nightjar".into()),
        },
    )
    .unwrap();
    assert_eq!(overridden.agent.region, "us-east-1");
    assert_eq!(overridden.agent.listen.port(), 1234);
    assert_eq!(
        overridden.agent.state_dir.as_deref(),
        Some(Path::new("/var/lib/nightjar"))
    );
    check(
        "[agent]\nlabels = { check = \"x\", \"bad-name\" = \"y\" }\n",
        r#"
test.toml:2:12: label name `check` is reserved: nightjar writes it itself, and a series cannot carry a label twice (hint: rename it, e.g. `service_check`)
test.toml:2:25: label name `bad-name` is not a valid Prometheus label name (hint: use letters, digits and underscores, not starting with a digit or `__`)
"#,
    );
}

#[test]
fn the_embedded_default_is_valid() {
    let config = config::embedded(&Overrides::default());
    assert_eq!(config.origin, config::Origin::Embedded);
    assert_eq!(config.checks.len(), 2);
}

/// Every example under `checks/` loads, one by one and all together.
#[test]
fn every_file_in_checks_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("checks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "checks/ holds examples");
    let env = MapEnv(
        [
            ("SHOP_API_TOKEN", "example-token"),
            ("STATUS_PASSWORD", "example-password"),
            ("SHOP_PROBE_PASSWORD", "example-password"),
            ("SHOP_PROBE_TOTP", "JBSWY3DPEHPK3PXP"),
            ("REMOTE_WRITE_TOKEN", "example-token"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    for file in &files {
        // slo.toml builds on the checks of http.toml and flow.toml, maintenance.toml on those of
        // tcp.toml; every other file stands alone.
        let mut paths = vec![file.clone()];
        if file.ends_with("slo.toml") {
            paths.extend([dir.join("http.toml"), dir.join("flow.toml")]);
        }
        if file.ends_with("maintenance.toml") {
            paths.push(dir.join("tcp.toml"));
        }
        if let Err(errors) = config::load(&paths, &env, &Overrides::default()) {
            panic!("{} does not load:\n{errors}", file.display());
        }
    }
    let all = config::load(&[dir], &env, &Overrides::default())
        .unwrap_or_else(|errors| panic!("checks/ does not load:\n{errors}"));
    assert!(all.checks.len() >= 3);
}

/// N shards cover every check exactly once, and the split is stable.
#[test]
fn shards_cover_every_check_exactly_once() {
    let text: String = (0..200)
        .map(|idx| format!("[[check]]\nname = \"check-{idx}\"\ntype = \"http\"\nurl = \"https://example.com/{idx}\"\n\n"))
        .collect();
    let config = super::support::load(&text, &[]);
    for count in [1u64, 2, 3, 7] {
        let mut seen: Vec<String> = Vec::new();
        for index in 0..count {
            let mut shard = config.clone();
            shard.select_shard(index, count);
            assert!(
                count == 1 || shard.checks.len() < 200,
                "a shard holds a share"
            );
            seen.extend(shard.checks.iter().map(|def| def.name.to_string()));
        }
        seen.sort();
        let mut all: Vec<String> = config
            .checks
            .iter()
            .map(|def| def.name.to_string())
            .collect();
        all.sort();
        assert_eq!(seen, all, "{count} shards");
    }
    // The same names land in the same shard every time (the hash is fixed).
    let mut first = config.clone();
    first.select_shard(0, 3);
    let mut again = config.clone();
    again.select_shard(0, 3);
    let names = |c: &nightjar::config::Config| {
        c.checks
            .iter()
            .map(|d| d.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), names(&again));
}

/// A check label or `[agent] labels` key that nightjar writes itself, or a check label the
/// `[agent]` table also sets, is refused at its place: each would repeat a label name on a
/// series, and Prometheus drops the whole scrape for it.
#[test]
fn reserved_and_repeated_label_names_are_refused_at_their_place() {
    check(
        r#"[agent]
labels = { team = "shop", agent = "a", le = "1" }

[[check]]
name = "a"
type = "http"
url = "https://example.com/"
labels = { target = "x", step = "s", subject = "s", schedule = "s", team = "web", __meta = "m", "9lives" = "x", ok_name = "fine" }
"#,
        r#"
test.toml:2:27: label name `agent` is reserved: nightjar writes it itself, and a series cannot carry a label twice (hint: rename it, e.g. `service_agent`)
test.toml:2:40: label name `le` is reserved: nightjar writes it itself, and a series cannot carry a label twice (hint: rename it, e.g. `service_le`)
test.toml:8:12: label name `target` is reserved: nightjar writes it itself, and a series cannot carry a label twice (hint: rename it, e.g. `service_target`)
test.toml:8:26: label name `step` is reserved: nightjar writes it itself, and a series cannot carry a label twice (hint: rename it, e.g. `service_step`)
test.toml:8:38: label name `subject` is reserved: nightjar writes it itself, and a series cannot carry a label twice (hint: rename it, e.g. `service_subject`)
test.toml:8:53: label name `schedule` is reserved: nightjar writes it itself, and a series cannot carry a label twice (hint: rename it, e.g. `service_schedule`)
test.toml:8:69: label `team` is also set in [agent] labels (at test.toml:2:12), and a series cannot carry a label twice (hint: keep it in one place: drop it here, or rename one of them)
test.toml:8:83: label name `__meta` is not a valid Prometheus label name (hint: use letters, digits and underscores, not starting with a digit or `__`)
test.toml:8:97: label name `9lives` is not a valid Prometheus label name (hint: use letters, digits and underscores, not starting with a digit or `__`)
"#,
    );
    // Every name the list holds is refused, on checks and on the agent.
    for name in nightjar::metrics::RESERVED_LABELS {
        for text in [
            format!("[agent]\nlabels = {{ {name:?} = \"x\" }}\n"),
            format!(
                "[[check]]\nname = \"a\"\ntype = \"tcp\"\ntarget = \"db:5432\"\nlabels = {{ {name:?} = \"x\" }}\n"
            ),
        ] {
            let got = errors(&text, &[]);
            assert!(
                got.contains(&format!("label name `{name}` is")),
                "{name}: {got}"
            );
        }
    }
}

/// `${file:..}` reads regular files of at most 64 KiB: a FIFO (which would block the load),
/// `/dev/zero` (which would never end), a directory and a socket are refused, each naming the
/// file and what it is, and the load never hangs.
#[test]
fn secret_files_are_small_regular_files_and_nothing_else_blocks_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).unwrap();
    let largest = dir.path().join("largest");
    std::fs::write(&largest, vec![b'a'; 64 * 1024]).unwrap();
    let cases = [
        (fifo.display().to_string(), "is a FIFO, not a regular file"),
        (
            "/dev/zero".to_string(),
            "is a character device, not a regular file",
        ),
        (
            dir.path().display().to_string(),
            "is a directory, not a regular file",
        ),
        (
            socket.display().to_string(),
            "is a socket, not a regular file",
        ),
        (
            big.display().to_string(),
            "is 65537 bytes; secrets files may be at most 64 KiB",
        ),
    ];
    for (path, expected) in cases {
        let text = format!(
            "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\nbearer_token = \"${{file:{path}}}\"\n"
        );
        // On a thread with a deadline: a FIFO opened for reading would block until a writer.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(errors(&text, &[]));
        });
        let got = result
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("loading ${{file:{path}}} hung"));
        assert!(
            got.contains(&format!(
                "test.toml:5:16: secret file {path} (referenced as ${{file:{path}}}) {expected}"
            )),
            "{path}: {got}"
        );
    }
    // 64 KiB exactly is allowed.
    let text = format!(
        "[[check]]\nname = \"a\"\ntype = \"http\"\nurl = \"https://example.com/\"\nbearer_token = \"${{file:{}}}\"\n",
        largest.display()
    );
    assert_eq!(errors(&text, &[]), "");
}

/// One cause, one problem: a flow step whose secret is missing still declares what it
/// extracts, an SLO or injector naming a check that is invalid for another reason says
/// nothing more, and a variable missing in several places is one problem that lists them.
#[test]
fn only_root_causes_are_reported() {
    let text = r#"[[check]]
name = "login"
type = "flow"
  [[check.steps]]
  name = "token"
  url = "https://example.com/token"
  form = { password = "${env:PASSWORD}" }
  extract = { token = { json_pointer = "/token" }, bad = { nothing = "x" } }
  [[check.steps]]
  name = "use"
  url = "https://example.com/${token}/${bad}"
  headers = { x-password = "${env:PASSWORD}" }

[[check]]
name = "broken"
type = "http"
url = "https://example.com/"
interval = "soon"

[[check]]
name = "fine"
type = "http"
url = "https://example.com/"

[[slo]]
name = "login-availability"
objective = 0.999
checks = ["login", "fine"]

[[slo]]
name = "broken-availability"
objective = 0.999
checks = ["broken", "nowhere"]

[[traffic]]
name = "login-floor"
slo = "login-availability"
check = "login"

[[traffic]]
name = "broken-floor"
floor = "1/h"
check = "broken"
"#;
    check(
        text,
        r#"
test.toml:7:23: environment variable PASSWORD is not set (referenced as ${env:PASSWORD}; also referenced at test.toml:12:28) (hint: set PASSWORD in the agent's environment, or use ${file:PATH})
test.toml:8:58: `extract.bad` of step "token" says nothing to extract (hint: use one of regex, json_pointer, header, cookie or form_field, like { form_field = "csrf_token" })
test.toml:8:60: unknown key `nothing` in `extract.bad` of step "token" (hint: known keys: cookie, form_field, header, json_pointer, regex)
test.toml:18:12: `interval` in check "broken": "soon" is not a positive duration (hint: write a number with a unit, like "500ms", "30s", "5m", "1h" or "21d")
test.toml:33:21: no check named "nowhere" (hint: list checks defined in [[check]] tables)
"#,
    );
}
