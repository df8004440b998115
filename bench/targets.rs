//! Loopback targets for the benchmarks: nginx (HTTP and HTTPS with a test CA made with rcgen),
//! BIND (one authoritative zone) and a gRPC server with the standard health service (the
//! tests' grpcio server). Each is stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// The zone BIND serves; `www.bench.test A` is what the DNS probes ask.
pub const ZONE: &str = "bench.test";
pub const QUERY_NAME: &str = "www.bench.test";

/// A port nobody listens on right now (the kernel picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port on loopback")
}

/// Polls until `addr` accepts TCP connections.
pub fn wait_for_tcp(addr: SocketAddr, what: &str) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {addr} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed and reaped on drop.
pub struct Process(pub Child);

impl Process {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds a program on PATH or in /usr/sbin (where Debian puts nginx and named).
pub fn program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is not installed; run bench/compare.sh, which installs it")
    })
}

/// The CA certificate (what both agents trust) and the server's chain and key.
pub struct Pki {
    pub ca: PathBuf,
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// An ECDSA P-256 root and a leaf for 127.0.0.1 and localhost signed by it.
    pub fn make(dir: &Path) -> Pki {
        let mut root = CertificateParams::new(Vec::<String>::new()).expect("root params");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name
            .push(rcgen::DnType::CommonName, "nightjar bench root");
        let root_key = KeyPair::generate().expect("root key");
        let root_cert = root.self_signed(&root_key).expect("root certificate");
        let issuer = Issuer::from_params(&root, &root_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf certificate");
        let write = |file: &str, text: String| {
            let path = dir.join(file);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        Pki {
            ca: write("ca.pem", root_cert.pem()),
            chain: write("chain.pem", leaf.pem()),
            key: write("leaf.key", leaf_key.serialize_pem()),
        }
    }
}

/// nginx with one worker: HTTP on `http`, HTTPS on `https`, both answering `/` with 200.
pub struct Nginx {
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// Served under `/flip/`; the soak adds and removes files here to make targets flap.
    pub www: PathBuf,
    _process: Process,
}

impl Nginx {
    pub fn start(dir: &Path, pki: &Pki) -> Nginx {
        let root = dir.join("nginx");
        std::fs::create_dir_all(root.join("tmp")).expect("nginx dir");
        std::fs::create_dir_all(root.join("www/flip")).expect("nginx www dir");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let d = root.display();
        let server = format!(
            r#"  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate {chain};
  ssl_certificate_key {key};
  server {{
    listen {http};
    listen {https} ssl;
    root {d}/www;
    location / {{ return 200 "ok\n"; }}
    location /flip/ {{ }}
  }}
"#,
            chain = pki.chain.display(),
            key = pki.key.display(),
        );
        let process = run_nginx(&root, "worker_rlimit_nofile 65536;\n", 16384, &server);
        wait_for_tcp(http, "nginx");
        wait_for_tcp(https, "nginx");
        Nginx {
            http,
            https,
            www: root.join("www"),
            _process: process,
        }
    }
}

/// Starts nginx in `root` (which holds `tmp/`): one worker process with `main` directives,
/// `connections` per worker, access logging off, temporary files and the error log in `root`,
/// and `http` (servers and the rest) inside the `http` block.
pub fn run_nginx(root: &Path, main: &str, connections: u32, http: &str) -> Process {
    let d = root.display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
{main}error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  default_type text/plain;
{http}}}
"#
    );
    let conf_path = root.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new(program("nginx"))
        .arg("-p")
        .arg(root)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(root.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    Process(child)
}

/// BIND serving `bench.test` on UDP and TCP.
pub struct Bind {
    pub addr: SocketAddr,
    _process: Process,
}

impl Bind {
    pub fn start(dir: &Path) -> Bind {
        let root = dir.join("bind");
        std::fs::create_dir_all(&root).expect("bind dir");
        let zone = root.join("bench.zone");
        std::fs::write(
            &zone,
            format!(
                "$TTL 300\n@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. (1 3600 600 86400 300)\n\
                 @ IN NS ns1.{ZONE}.\nns1 IN A 127.0.0.1\nwww IN A 203.0.113.5\n"
            ),
        )
        .expect("write zone");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let d = root.display();
        let conf = format!(
            r#"options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  allow-query {{ any; }};
  notify no;
}};
zone "{ZONE}" {{ type primary; file "{zone}"; }};
"#,
            port = addr.port(),
            zone = zone.display(),
        );
        let conf_path = root.join("named.conf");
        std::fs::write(&conf_path, conf).expect("write named.conf");
        let child = Command::new(program("named"))
            .args(["-g", "-n", "1", "-c"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start named");
        let process = Process(child);
        wait_for_tcp(addr, "named");
        Bind {
            addr,
            _process: process,
        }
    }
}

/// The tests' gRPC server (Python grpcio with the standard health service, from the
/// virtualenv `scripts/test.sh` and `bench/compare.sh` create), serving in plain-text HTTP/2.
pub struct GrpcServer {
    pub addr: SocketAddr,
    _process: Process,
}

impl GrpcServer {
    pub fn start() -> GrpcServer {
        let venv = std::env::var_os("NIGHTJAR_TEST_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
                    });
                cache.join("nightjar/test-venv")
            });
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "{} is missing; run bench/compare.sh, which creates it",
            python.display()
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc_server.py");
        let child = Command::new(python)
            .arg(script)
            .args(["--status", "=SERVING", "--plain", &addr.port().to_string()])
            // It also stops when its standard input closes, with the benchmark.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gRPC server");
        let process = Process(child);
        wait_for_tcp(addr, "the gRPC server");
        GrpcServer {
            addr,
            _process: process,
        }
    }
}
