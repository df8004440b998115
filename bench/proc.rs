//! What a process has cost so far, from /proc: CPU time (utime + stime, every thread, dead
//! ones included) and memory (current and peak resident set).

/// Linux reports utime and stime in clock ticks of 1/100 s (USER_HZ) on every architecture.
const USER_HZ: f64 = 100.0;

#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

impl Usage {
    pub fn of(pid: u32) -> Usage {
        Usage::read(&format!("/proc/{pid}"))
    }

    pub fn of_self() -> Usage {
        Usage::read("/proc/self")
    }

    fn read(dir: &str) -> Usage {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).expect("read /proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat has a command name")
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        let status = std::fs::read_to_string(format!("{dir}/status")).expect("read status");
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Usage {
            cpu_seconds: ticks as f64 / USER_HZ,
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
        }
    }
}
