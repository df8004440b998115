//! Network namespaces a test creates: a prober and a target joined by a veth pair, with IPv4
//! and IPv6 addresses, firewall rules inside the target, and the `nightjar` binary run inside
//! the prober (as root, or as `nobody` for the unprivileged paths). Deleted on drop, failed
//! test or not; names are unique per test process and per instance.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{require, run_ok};

/// The prober's and the target's addresses (the same in every instance: namespaces do not
/// share them).
pub const PROBER_V4: &str = "10.77.0.1";
pub const TARGET_V4: &str = "10.77.0.2";
pub const PROBER_V6: &str = "fd77::1";
pub const TARGET_V6: &str = "fd77::2";

/// A prober namespace and a target namespace joined by a veth pair.
pub struct Pair {
    /// The prober's namespace.
    pub prober: String,
    /// The target's namespace.
    pub target: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    run_ok(Command::new(require("ip", "iproute2")).args(args));
}

impl Pair {
    /// Creates both namespaces, the link and the addresses, loopback up in each, and waits
    /// until IPv6 is usable (no duplicate address detection).
    pub fn new() -> Pair {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let pair = Pair {
            prober: format!("nj{pid}-{n}-p"),
            target: format!("nj{pid}-{n}-t"),
        };
        ip(&["netns", "add", &pair.prober]);
        ip(&["netns", "add", &pair.target]);
        let (a, b) = (format!("nj{pid}x{n}a"), format!("nj{pid}x{n}b"));
        ip(&[
            "link",
            "add",
            &a,
            "netns",
            &pair.prober,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &pair.target,
        ]);
        for (ns, dev, v4, v6) in [
            (&pair.prober, &a, PROBER_V4, PROBER_V6),
            (&pair.target, &b, TARGET_V4, TARGET_V6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// Runs `program args` inside the target namespace and returns its output; fails the test
    /// on a non-zero exit.
    pub fn in_target(&self, program: &str, args: &[&str]) -> String {
        let mut command = Command::new(require("ip", "iproute2"));
        command
            .args(["netns", "exec", &self.target, program])
            .args(args);
        run_ok(&mut command)
    }

    /// Sets `net.ipv4.ping_group_range` in the prober's namespace (it is per namespace; a new
    /// one starts with "1 0", no group).
    pub fn ping_group_range(&self, range: &str) {
        let mut command = Command::new(require("ip", "iproute2"));
        command.args(["netns", "exec", &self.prober, "sysctl", "-q", "-w"]);
        command.arg(format!("net.ipv4.ping_group_range={range}"));
        run_ok(&mut command);
    }

    /// Runs `nightjar check --format json` on `config` inside the prober, as root or as
    /// `nobody` (uid and gid 65534, no supplementary groups, so no capability), and returns
    /// the parsed results.
    pub fn check(&self, config: &Path, unprivileged: bool) -> Vec<serde_json::Value> {
        let mut command = Command::new(require("ip", "iproute2"));
        command.args(["netns", "exec", &self.prober]);
        if unprivileged {
            command.arg(require("setpriv", "util-linux")).args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ]);
        }
        command
            .arg(env!("CARGO_BIN_EXE_nightjar"))
            .args(["check", "--format", "json", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("NIGHTJAR_REGION");
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str::<Vec<serde_json::Value>>(&stdout).unwrap_or_else(|error| {
            panic!(
                "nightjar check printed no JSON ({error}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end,
        // and its firewall rules.
        for ns in [&self.prober, &self.target] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A config file readable by `nobody`: a directory of its own with the file mode 0644.
pub struct ConfigFile {
    dir: tempfile::TempDir,
}

impl ConfigFile {
    /// Writes `text` as `checks.toml`.
    pub fn new(text: &str) -> ConfigFile {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("nightjar-netns-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("checks.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        ConfigFile { dir }
    }

    /// The file's path.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("checks.toml")
    }
}
