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
    /// The prober's end of the link.
    pub prober_link: String,
    /// The target's end of the link.
    pub target_link: String,
    /// A third namespace behind the target, when [`Pair::routed`] made one.
    pub far: Option<String>,
}

/// The far namespace's addresses behind the target's second link (IPv4 only), and the
/// target's own address on that link.
pub const ROUTER_FAR_V4: &str = "10.78.0.1";
pub const FAR_V4: &str = "10.78.0.2";

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
        let (a, b) = (format!("nj{pid}x{n}a"), format!("nj{pid}x{n}b"));
        let pair = Pair {
            prober: format!("nj{pid}-{n}-p"),
            target: format!("nj{pid}-{n}-t"),
            prober_link: a.clone(),
            target_link: b.clone(),
            far: None,
        };
        ip(&["netns", "add", &pair.prober]);
        ip(&["netns", "add", &pair.target]);
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

    /// A pair whose target is also a router (IPv4 forwarding on) to a third namespace,
    /// [`FAR_V4`], over a link of `far_mtu` bytes: the prober reaches it one hop away.
    pub fn routed(far_mtu: u32) -> Pair {
        let mut pair = Pair::new();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let far = format!("nj{pid}-{n}-f");
        ip(&["netns", "add", &far]);
        // Recorded before anything else can fail, so drop deletes it.
        pair.far = Some(far.clone());
        let (c, d) = (format!("nj{pid}x{n}c"), format!("nj{pid}x{n}d"));
        ip(&[
            "link",
            "add",
            &c,
            "netns",
            &pair.target,
            "type",
            "veth",
            "peer",
            "name",
            &d,
            "netns",
            &far,
        ]);
        let mtu = far_mtu.to_string();
        for (ns, dev, v4) in [(&pair.target, &c, ROUTER_FAR_V4), (&far, &d, FAR_V4)] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "mtu", &mtu, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &pair.prober,
            "route",
            "add",
            "10.78.0.0/24",
            "via",
            TARGET_V4,
        ]);
        ip(&["-n", &far, "route", "add", "default", "via", ROUTER_FAR_V4]);
        pair.in_target("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        pair
    }

    /// Runs `program args` inside the prober namespace and returns its output; fails the test
    /// on a non-zero exit.
    pub fn in_prober(&self, program: &str, args: &[&str]) -> String {
        let mut command = Command::new(require("ip", "iproute2"));
        command
            .args(["netns", "exec", &self.prober, program])
            .args(args);
        run_ok(&mut command)
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
        for ns in [&self.prober, &self.target].into_iter().chain(&self.far) {
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

/// A namespace linked to this process's own namespace by a veth pair, for an agent that runs
/// here to reach addresses whose behaviour the namespace's firewall sets. IPv6 only, in a
/// /64 of its own per test process (`fd79:0:<pid>::/64`), so nothing in this namespace's
/// routing changes but that prefix; deleting the namespace deletes the link, its addresses
/// and the route, failed test or not.
pub struct Spur {
    /// The namespace.
    pub ns: String,
    /// The link's /64, without the `::/64`.
    pub prefix: String,
}

impl Spur {
    /// Creates the namespace and the link: this side `<prefix>::1`, the namespace's side
    /// `<prefix>::2` to `<prefix>::4`.
    pub fn new() -> Spur {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let spur = Spur {
            ns: format!("nj{pid}-{n}-s"),
            prefix: format!("fd79:0:{:x}:{:x}", pid >> 16, pid & 0xffff),
        };
        ip(&["netns", "add", &spur.ns]);
        let (a, b) = (format!("nj{pid}x{n}h"), format!("nj{pid}x{n}s"));
        ip(&[
            "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &spur.ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}::1/64", spur.prefix),
            "dev",
            &a,
            "nodad",
        ]);
        ip(&["link", "set", &a, "up"]);
        for host in 2..=4 {
            ip(&[
                "-n",
                &spur.ns,
                "addr",
                "add",
                &format!("{}::{host}/64", spur.prefix),
                "dev",
                &b,
                "nodad",
            ]);
        }
        ip(&["-n", &spur.ns, "link", "set", &b, "up"]);
        ip(&["-n", &spur.ns, "link", "set", "lo", "up"]);
        spur
    }

    /// The address `<prefix>::<host>`.
    pub fn addr(&self, host: u8) -> String {
        format!("{}::{host}", self.prefix)
    }

    /// Runs `program args` inside the namespace; fails the test on a non-zero exit.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let mut command = Command::new(require("ip", "iproute2"));
        command
            .args(["netns", "exec", &self.ns, program])
            .args(args);
        run_ok(&mut command)
    }
}

impl Drop for Spur {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
