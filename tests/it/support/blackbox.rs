//! The real blackbox_exporter (Debian's `prometheus-blackbox-exporter`) on loopback with a
//! configuration the test writes, and what both it and nightjar answer on `/probe`: a GET
//! with Prometheus's scrape-timeout header, and the text exposition read into a map.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{encode, free_port, http_request_with, require};

/// A running blackbox_exporter. It is stopped when this value is dropped and, for one kept in
/// a static (never dropped), when the test process ends: it runs under a shell that holds the
/// read end of a pipe whose write end only this process has.
pub struct Exporter {
    pub addr: SocketAddr,
    /// The configuration file it was started with.
    pub config: PathBuf,
    wrapper: Child,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts blackbox_exporter with `config` (blackbox.yml text) and waits until it answers
    /// `/-/healthy`.
    pub fn start(config: &str) -> Exporter {
        let program = require(
            "prometheus-blackbox-exporter",
            "prometheus-blackbox-exporter",
        );
        let dir = tempfile::Builder::new()
            .prefix("nightjar-blackbox-")
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join("blackbox.yml");
        std::fs::write(&config_path, config).expect("write blackbox.yml");
        let check = Command::new(&program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg("--config.check")
            .output()
            .expect("run blackbox_exporter --config.check");
        assert!(
            check.status.success(),
            "blackbox_exporter refuses the configuration:\n{}{}\n{config}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let script = r#"log="$1"; shift
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
cat >/dev/null
kill -TERM "$pid" 2>/dev/null
wait "$pid""#;
        let wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(dir.path().join("blackbox.log"))
            .arg(&program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start blackbox_exporter");
        let exporter = Exporter {
            addr,
            config: config_path,
            wrapper,
            _dir: dir,
        };
        exporter.wait_healthy(Duration::from_secs(20));
        exporter
    }

    fn wait_healthy(&self, limit: Duration) {
        use std::io::{Read, Write};
        let start = Instant::now();
        loop {
            let answer =
                std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                    .and_then(|mut stream| {
                        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                        stream.write_all(
                        b"GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    )?;
                        let mut text = String::new();
                        stream.read_to_string(&mut text)?;
                        Ok(text)
                    });
            if answer.is_ok_and(|text| text.starts_with("HTTP/1.1 200")) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "blackbox_exporter did not answer /-/healthy on {} within {limit:?}: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("blackbox.log")).unwrap_or_default()
    }

    /// The directory its configuration lives in.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // Closing the pipe makes the shell stop the exporter and wait for it.
        drop(self.wrapper.stdin.take());
        let _ = self.wrapper.wait();
    }
}

/// One `/probe` answer: the HTTP status, the body, and the samples read from it.
#[derive(Debug, Clone)]
pub struct Probe {
    pub status: u16,
    pub body: String,
    pub samples: Samples,
}

/// GETs `/probe?module=MODULE&target=TARGET` from `base` (blackbox_exporter or a nightjar
/// agent), with `X-Prometheus-Scrape-Timeout-Seconds: timeout` as Prometheus sends it.
pub async fn probe(base: SocketAddr, module: &str, target: &str, timeout: f64) -> Probe {
    let path = format!("/probe?module={}&target={}", encode(module), encode(target));
    let headers = format!("X-Prometheus-Scrape-Timeout-Seconds: {timeout}\r\n");
    let (status, body) = http_request_with(base, "GET", &path, &headers).await;
    let samples = if status == 200 {
        Samples::parse(&body)
    } else {
        Samples::default()
    };
    Probe {
        status,
        body,
        samples,
    }
}

/// The samples of a text exposition: each series (its name and its labels, sorted) and its
/// value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub BTreeMap<Series, f64>);

/// A series: the metric name and its labels in name order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(name, value)| format!("{name}={value:?}"))
                .collect();
            write!(f, "{{{}}}", labels.join(","))?;
        }
        Ok(())
    }
}

impl Samples {
    /// Reads the text exposition format (comments skipped; a label value's escapes kept as
    /// written, which both sides write the same way).
    pub fn parse(text: &str) -> Samples {
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.find('{') {
                Some(open) => {
                    let close = line
                        .rfind('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    let labels = parse_labels(&line[open + 1..close]);
                    let value = line[close + 1..].split_whitespace().next().unwrap_or("");
                    (
                        Series {
                            name: line[..open].to_string(),
                            labels,
                        },
                        value,
                    )
                }
                None => {
                    let mut parts = line.split_whitespace();
                    let name = parts.next().unwrap_or_default().to_string();
                    (
                        Series {
                            name,
                            labels: Vec::new(),
                        },
                        parts.next().unwrap_or(""),
                    )
                }
            };
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                other => other
                    .parse()
                    .unwrap_or_else(|_| panic!("not a sample value in {line:?}")),
            };
            out.insert(series, value);
        }
        Samples(out)
    }

    /// The names of the families present.
    pub fn families(&self) -> BTreeSet<String> {
        self.0.keys().map(|series| series.name.clone()).collect()
    }

    /// Every series of the family `name`, with its value.
    pub fn family(&self, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
        self.0
            .iter()
            .filter(|(series, _)| series.name == name)
            .map(|(series, value)| (series.labels.clone(), *value))
            .collect()
    }

    /// The value of the series `name` without labels, or of its only series.
    pub fn value(&self, name: &str) -> Option<f64> {
        let family = self.family(name);
        (family.len() == 1).then(|| *family.values().next().unwrap())
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .unwrap_or_else(|| panic!("label without a value: {text}"));
        let name = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        assert!(after.starts_with('"'), "unquoted label value: {text}");
        let mut value = String::new();
        let mut chars = after[1..].char_indices();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push('\\');
                        value.push(escaped);
                    }
                }
                '"' => {
                    end = Some(at + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value: {text}"));
        labels.push((name, value));
        rest = after[1 + end..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    labels.sort();
    labels
}

#[test]
fn the_exposition_reads_into_series() {
    let samples = Samples::parse(
        "# HELP probe_success Displays whether or not the probe was a success\n\
         # TYPE probe_success gauge\nprobe_success 1\n\
         probe_tls_version_info{version=\"TLS 1.3\"} 1\n\
         probe_x{b=\"2\",a=\"a \\\"q\\\" , }\"} 1.5e+09\n",
    );
    assert_eq!(samples.value("probe_success"), Some(1.0));
    assert_eq!(
        samples.family("probe_tls_version_info"),
        BTreeMap::from([(vec![("version".to_string(), "TLS 1.3".to_string())], 1.0)])
    );
    assert_eq!(
        samples.family("probe_x"),
        BTreeMap::from([(
            vec![
                ("a".to_string(), "a \\\"q\\\" , }".to_string()),
                ("b".to_string(), "2".to_string())
            ],
            1.5e9
        )])
    );
}
