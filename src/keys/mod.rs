//! Every configuration key, once: its name, its type, its default and what it means (the
//! README's words). The readers are handed these tables (`reader::Table` is made with the
//! section it reads and consults it), and `nightjar schema` writes them out as a JSON Schema
//! (`config::schema`), so the two cannot drift: `config::schema`'s unit test runs every
//! reader over the example configurations and fails on a key a reader asks for that has no
//! entry here, on a reader asking for a key as another type than its entry says, and on an
//! entry no reader asks for.
//!
//! A leaf: it imports nothing from the crate, so the kinds' readers in `checks/` and the
//! readers in `config/` both use it.

pub mod checks;

/// One key of a section.
#[derive(Debug)]
pub struct Key {
    /// As written in the file.
    pub name: &'static str,
    /// What it holds.
    pub ty: Ty,
    /// The default as a JSON literal (`"\"GET\""`, `"true"`, `"10"`), or empty when the default
    /// is no value or not a literal (then `doc` says what it is).
    pub default: &'static str,
    /// What it means, from the README.
    pub doc: &'static str,
    /// Whether a table of this section must have it.
    pub required: bool,
}

/// What a key holds.
#[derive(Debug)]
pub enum Ty {
    /// Any string.
    Str,
    /// A string that may hold `${env:NAME}` and `${file:PATH}` references.
    Secret,
    /// A duration with units, like `"30s"` or `"1h 30m"`.
    Duration,
    /// A size, like `"10MiB"`.
    Size,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// One of these strings, in any case (written here in upper case).
    EnumNoCase(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// Any integer.
    Int,
    /// An integer from the first to the second, both included.
    IntIn(i64, i64),
    /// An integer or a float.
    Number,
    /// An array of this.
    List(&'static Ty),
    /// A table whose keys are the user's names, each holding this.
    Map(&'static Ty),
    /// A table of this section.
    Table(&'static Section),
    /// An array of tables of this section.
    Tables(&'static Section),
    /// Any one of these.
    AnyOf(&'static [Ty]),
    /// Any value.
    Any,
}

/// What a reader's accessor asks a key to be (`Table::str` a string, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A string (`str`, `duration`, `size`).
    Str,
    /// A boolean.
    Bool,
    /// An integer.
    Int,
    /// An array.
    Array,
    /// A table.
    Table,
    /// Anything (`get`).
    Any,
}

impl Ty {
    /// Whether a value of this type can be what `want` asks for.
    pub fn admits(&self, want: Want) -> bool {
        match (self, want) {
            (_, Want::Any) | (Ty::Any, _) => true,
            (Ty::AnyOf(options), want) => options.iter().any(|ty| ty.admits(want)),
            (
                Ty::Str | Ty::Secret | Ty::Duration | Ty::Size | Ty::Enum(_) | Ty::EnumNoCase(_),
                Want::Str,
            ) => true,
            (Ty::Bool, Want::Bool) => true,
            (Ty::Int | Ty::IntIn(..) | Ty::Number, Want::Int) => true,
            (Ty::List(_) | Ty::Tables(_), Want::Array) => true,
            (Ty::Map(_) | Ty::Table(_), Want::Table) => true,
            _ => false,
        }
    }

    /// The section of the tables this type holds, if it holds tables.
    pub fn section(&self) -> Option<&'static Section> {
        match self {
            Ty::Table(section) | Ty::Tables(section) => Some(section),
            Ty::AnyOf(options) => options.iter().find_map(Ty::section),
            _ => None,
        }
    }
}

/// The keys of one kind of table.
#[derive(Debug)]
pub struct Section {
    /// Unique, for messages and the drift test: `"check"`, `"http.expect"`.
    pub name: &'static str,
    /// Its own keys.
    pub keys: &'static [Key],
    /// Sections whose keys it has too (the request options an http check and a flow step
    /// share).
    pub also: &'static [&'static Section],
    /// For a table whose keys are the user's names (a flow step's `extract`): each value is a
    /// table of this section.
    pub values: Option<&'static Section>,
}

impl Section {
    /// The entry of `key` and the section that holds it, searching `also` too.
    pub fn find(&'static self, key: &str) -> Option<(&'static Section, &'static Key)> {
        if let Some(found) = self.keys.iter().find(|entry| entry.name == key) {
            return Some((self, found));
        }
        self.also.iter().find_map(|section| section.find(key))
    }

    /// Every key, its own first, then those of `also`, in order.
    pub fn all_keys(&'static self) -> Vec<(&'static Section, &'static Key)> {
        let mut out: Vec<(&'static Section, &'static Key)> =
            self.keys.iter().map(|key| (self, key)).collect();
        for section in self.also {
            out.extend(section.all_keys());
        }
        out
    }
}

/// What a table gets when its key has no entry (already a problem of the parent's).
pub static UNKNOWN: Section = section("?", &[]);

/// A section of `keys`.
pub(crate) const fn section(name: &'static str, keys: &'static [Key]) -> Section {
    Section {
        name,
        keys,
        also: &[],
        values: None,
    }
}

/// An optional key.
pub(crate) const fn key(
    name: &'static str,
    ty: Ty,
    default: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        name,
        ty,
        default,
        doc,
        required: false,
    }
}

/// A required key.
pub(crate) const fn required(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        default: "",
        doc,
        required: true,
    }
}

/// Label names and values.
pub(crate) const LABELS: Ty = Ty::Map(&Ty::Str);

/// The top level of a file.
pub static ROOT: Section = section(
    "root",
    &[
        key(
            "agent",
            Ty::Table(&AGENT),
            "",
            "The agent's own settings; at most one file may hold it.",
        ),
        key(
            "defaults",
            Ty::Table(&DEFAULTS),
            "",
            "Defaults for every check, in every file; at most one file may hold it.",
        ),
        key(
            "check",
            Ty::Tables(&CHECK),
            "",
            "A check: the keys every check has, and those of its `type`.",
        ),
        key(
            "slo",
            Ty::Tables(&SLO),
            "",
            "A service level objective: `nightjar rules` writes its recording rules and burn-rate alerts.",
        ),
        key(
            "rules",
            Ty::Table(&RULES),
            "",
            "Settings of the rules `nightjar rules` writes.",
        ),
        key(
            "traffic",
            Ty::Tables(&TRAFFIC),
            "",
            "A traffic floor: marked requests that top the real rate up to what the SLO's alerts need.",
        ),
        key(
            "remote_write",
            Ty::Tables(&REMOTE_WRITE),
            "",
            "A remote-write endpoint every series is pushed to.",
        ),
        key(
            "maintenance",
            Ty::Tables(&MAINTENANCE),
            "",
            "A planned maintenance window: the checks it covers do not page.",
        ),
        key(
            "module",
            Ty::Tables(&MODULE),
            "",
            "What /probe?module=NAME runs: a check without a name and a target.",
        ),
    ],
);

/// `[agent]`.
pub static AGENT: Section = section(
    "agent",
    &[
        key(
            "labels",
            LABELS,
            "",
            "Extra labels on every series, e.g. `{ env = \"prod\" }`; the same names as a check's `labels` are refused, and a check may not set a label this table sets.",
        ),
        key(
            "concurrency",
            Ty::IntIn(1, i64::MAX),
            "256",
            "At most this many runs in flight across all checks; waiting shows up as scheduler lag.",
        ),
        key(
            "rdap_bootstrap",
            Ty::Str,
            "\"https://data.iana.org/rdap/dns.json\"",
            "Where `domain` checks find RDAP servers (RFC 9224); point it at a copy in a closed network.",
        ),
        key(
            "rdap_servers",
            Ty::Map(&Ty::Str),
            "",
            "RDAP base URLs by TLD, asked before the bootstrap registry, e.g. `{ com = \"https://rdap.verisign.com/com/v1/\" }`.",
        ),
        key(
            "name",
            Ty::Str,
            "",
            "The agent's name: the `agent` label of series pushed by remote write. Default: the host name.",
        ),
        key(
            "watch_config",
            Ty::Duration,
            "",
            "Reload when the config files change, checking this often, e.g. `\"5s\"`. Default: off.",
        ),
        key(
            "state_dir",
            Ty::Str,
            "",
            "A directory where each check's state and since-when, its last 30 results and last run, the ad hoc maintenance windows and the RDAP answer cache survive restarts; `--state-dir` / `NIGHTJAR_STATE_DIR` override it.",
        ),
        key(
            "region",
            Ty::Str,
            "\"default\"",
            "The `region` label on every series; checks with `regions` run only where it matches.",
        ),
        key(
            "listen",
            Ty::Str,
            "\"127.0.0.1:9465\"",
            "Address of the agent's server.",
        ),
        key(
            "duration_buckets",
            Ty::List(&Ty::Duration),
            "",
            "Bucket edges of `nightjar_check_duration_seconds`, as durations (default 5ms … 30s); put your latency SLO threshold on an edge.",
        ),
        key(
            "max_connections",
            Ty::IntIn(1, 65536),
            "256",
            "Connections the server keeps open at most (1–65536); at the cap the longest-idle connection of the address holding the most is closed to make room.",
        ),
        key(
            "allowed_hosts",
            Ty::List(&Ty::Str),
            "",
            "Host names or IP addresses (no scheme or port) answered besides `localhost`, `*.localhost`, `127.0.0.0/8` and `[::1]`; other names get 421 (DNS rebinding), except `/-/healthy` and `/-/ready`.",
        ),
        key(
            "tls_cert_file",
            Ty::Str,
            "",
            "Serve HTTPS (TLS 1.2 and 1.3, rustls) with this PEM certificate chain (leaf first); with `tls_key_file`.",
        ),
        key(
            "tls_key_file",
            Ty::Str,
            "",
            "The PEM key of `tls_cert_file`; both or neither.",
        ),
        key(
            "basic_auth_users",
            Ty::Map(&Ty::Str),
            "",
            "User name → bcrypt hash; requests must then authenticate, e.g. `{ prometheus = \"$2y$10$...\" }`.",
        ),
        key(
            "bearer_token",
            Ty::Secret,
            "",
            "A token accepted as `Authorization: Bearer TOKEN`; a `${env:...}` or `${file:...}` reference, at least 16 characters.",
        ),
        key(
            "blackbox_config",
            Ty::Str,
            "",
            "blackbox_exporter's configuration file (relative to the file that names it) whose modules `/probe` serves beside the `[[module]]` tables; reloaded with the rest and watched by `watch_config`.",
        ),
        key(
            "metrics",
            Ty::Enum(&["lean", "full"]),
            "\"lean\"",
            "Which per-check series `/metrics` and remote write carry: `\"lean\"` (the SLI counters, one histogram of successful runs, the current state, the blackbox gauges; failure reasons, retries and skips from their first count) or `\"full\"` (every series, created at 0 when a check loads). A reload that changes it is refused: restart the agent.",
        ),
        key(
            // Spelt in two pieces: the architecture test reads a whole `probe_...` literal
            // outside `metrics/` as a metric name.
            concat!("probe_", "timeout_offset"),
            Ty::Duration,
            "\"500ms\"",
            "Taken off a scrape's `X-Prometheus-Scrape-Timeout-Seconds` for a `/probe`'s timeout, as blackbox_exporter's `--timeout-offset`.",
        ),
    ],
);

/// `[defaults]`.
pub static DEFAULTS: Section = section(
    "defaults",
    &[
        key(
            "interval",
            Ty::Duration,
            "\"60s\"",
            "For checks that set neither `interval` nor `cron`.",
        ),
        key(
            "timeout",
            Ty::Duration,
            "\"10s\"",
            "For checks that set no `timeout`; an implicit timeout is capped at the check's interval.",
        ),
        key(
            "run_on_load",
            Ty::Bool,
            "true",
            "For checks that do not set it.",
        ),
        key(
            "source_ip",
            Ty::Str,
            "",
            "For checks that do not set it. Default: none (the system chooses).",
        ),
        RETRY_INTERVAL,
        CONFIRM_FAILURES,
        CONFIRM_RECOVERIES,
    ],
);

const RETRY_INTERVAL: Key = key(
    "retry_interval",
    Ty::Duration,
    "",
    "While a change of state waits for confirmation, run again after this long instead of a whole interval (at least `1s`, shorter than the interval), e.g. `\"10s\"`.",
);
const CONFIRM_FAILURES: Key = key(
    "confirm_failures",
    Ty::IntIn(1, 100),
    "1",
    "Failed runs in a row before the check is failing (1–100; default 1, at once).",
);
const CONFIRM_RECOVERIES: Key = key(
    "confirm_recoveries",
    Ty::IntIn(1, 100),
    "1",
    "Passing runs in a row before a failing check is passing again (1–100; default 1).",
);
const SOURCE_IP: Key = key(
    "source_ip",
    Ty::Str,
    "",
    "The local address the check's connections and datagrams leave from (default: `[defaults] source_ip`, else the system chooses).",
);

/// The check types, as `type = "..."` takes them (the same list as `kind::CheckKind::ALL`,
/// which `config::schema`'s test compares).
pub const KINDS: &[&str] = &[
    "http",
    "tls",
    "tcp",
    "dns",
    "domain",
    "flow",
    "websocket",
    "grpc",
    "icmp",
    "udp",
];

/// The keys every `[[check]]` has; each kind's own are in [`checks`].
pub static CHECK: Section = section(
    "check",
    &[
        required("name", Ty::Str, "Unique, `[a-z0-9_-]+`."),
        required(
            "type",
            Ty::Enum(KINDS),
            "The kind of check: `http`, `tls`, `tcp`, `dns`, `domain`, `flow`, `websocket`, `grpc`, `icmp` or `udp`.",
        ),
        key(
            "interval",
            Ty::Duration,
            "",
            "Run every interval (default: `[defaults] interval`); each check starts at a stable offset inside its interval derived from its name.",
        ),
        key(
            "cron",
            Ty::Str,
            "",
            "Instead of `interval`: a cron expression in UTC, either the usual 5 fields (`\"*/5 * * * *\"`, minute first) or 6 with seconds first, or `@hourly`/`@daily`/...",
        ),
        key(
            "timeout",
            Ty::Duration,
            "",
            "Upper bound on one run; must not exceed the interval (for cron, the shortest gap between firings).",
        ),
        key(
            "labels",
            LABELS,
            "",
            "Extra labels on this check's series: Prometheus label names, none of the names nightjar writes itself, and none of the `[agent] labels` keys.",
        ),
        key(
            "regions",
            Ty::List(&Ty::Str),
            "",
            "Run only in these regions (default: every region).",
        ),
        key(
            "run_on_load",
            Ty::Bool,
            "true",
            "`true` (the default, or `[defaults] run_on_load`): run once soon after the check is loaded, then keep the slot; `false`: wait for the first slot.",
        ),
        CONFIRM_FAILURES,
        CONFIRM_RECOVERIES,
        RETRY_INTERVAL,
        SOURCE_IP,
        key(
            "targets",
            Ty::List(&Ty::Str),
            "",
            "A template: the targets, as the kind's target key takes them (a URL for http; a bare `HOST:PORT` becomes `http://HOST:PORT`; `HOST:PORT` for tcp), each a check of its own sharing the rest of the definition; at most 100,000; each once.",
        ),
        key(
            "targets_from",
            Ty::Tables(&TARGETS_FROM),
            "",
            "A template: targets found by service discovery, in Prometheus's formats (`{ file = \"sd/*.json\" }`, `{ http = \"https://...\" }`, `{ dns = \"_https._tcp.example.com\" }`); with or without `targets`.",
        ),
    ],
);

/// A source of `targets_from`.
pub static TARGETS_FROM: Section = Section {
    name: "check.targets_from",
    keys: &[
        key(
            "file",
            Ty::Str,
            "",
            "One file_sd file, or a pattern with `*` and `?` in its last path element (`sd/*.json`); relative to the configuration file naming it. `.json` is JSON; `.yml` and `.yaml` are YAML.",
        ),
        key(
            "files",
            Ty::List(&Ty::Str),
            "",
            "Several file_sd files or patterns, as a list.",
        ),
        key(
            "http",
            Ty::Secret,
            "",
            "A Prometheus HTTP SD URL (`http` or `https`): a GET every `refresh`, answered with a JSON list of target groups.",
        ),
        key(
            "dns",
            Ty::Str,
            "",
            "A DNS name whose records give the targets (the system resolver's search list applies to a relative one).",
        ),
        key(
            "refresh",
            Ty::Duration,
            "",
            "How often the source is read again. Default: `\"5m\"` (file), `\"1m\"` (http), `\"30s\"` (dns).",
        ),
        key(
            "timeout",
            Ty::Duration,
            "\"10s\"",
            "http and dns: how long one fetch or query may take.",
        ),
        key(
            "max_body",
            Ty::Size,
            "\"16MiB\"",
            "http: the largest answer read.",
        ),
        key(
            "tls",
            Ty::Table(&checks::TLS),
            "",
            "http: the `tls` table of an `http` check (`ca_file`, `cert_file`/`key_file`, `server_name`, `insecure_skip_verify`, `min_version`); default: bundled roots.",
        ),
        key(
            "type",
            Ty::Enum(&["SRV", "A", "AAAA"]),
            "\"SRV\"",
            "dns: `\"SRV\"` (`host:port` from each record), `\"A\"` or `\"AAAA\"` (`ip:port`, with `port`).",
        ),
        key(
            "port",
            Ty::IntIn(1, 65535),
            "",
            "dns: the port of A and AAAA targets; required for them, refused for SRV.",
        ),
        key(
            "server",
            Ty::Str,
            "",
            "dns: `\"HOST:PORT\"` (port 53 if left out) of the server to ask. Default: the system resolver.",
        ),
    ],
    also: &[&checks::HTTP_AUTH],
    values: None,
};

/// The top level of a file of sources only (`discovery::config::sources_from_toml`).
pub static SOURCES: Section = section(
    "sources",
    &[key(
        "targets_from",
        Ty::Tables(&TARGETS_FROM),
        "",
        "The sources.",
    )],
);

/// The keys every `[[module]]` has besides those of its kind (less its target key).
pub static MODULE: Section = section(
    "module",
    &[
        required(
            "name",
            Ty::Str,
            "What `/probe?module=` asks for, unique across the `[[module]]` tables and `blackbox_config`.",
        ),
        required(
            "type",
            Ty::Enum(KINDS),
            "The kind of check the module runs.",
        ),
        key(
            "timeout",
            Ty::Duration,
            "",
            "Without one a probe takes the scrape's timeout less `[agent] probe_timeout_offset`.",
        ),
        SOURCE_IP,
    ],
);

/// `[[slo]]`.
pub static SLO: Section = section(
    "slo",
    &[
        required(
            "name",
            Ty::Str,
            "`[a-z0-9_-]+`; the `slo` label of its rules.",
        ),
        key(
            "labels",
            LABELS,
            "",
            "Extra labels on the SLO's rules and alerts.",
        ),
        key(
            "exclude_maintenance",
            Ty::Bool,
            "false",
            "With `checks`: leave the runs taken in maintenance windows out of the SLI (neither good nor bad events).",
        ),
        required(
            "objective",
            Ty::Number,
            "The target ratio, e.g. `0.999` (between 0 and 1).",
        ),
        key(
            "window",
            Ty::Duration,
            "\"30d\"",
            "The SLO period; at least 3 days; tier factors scale with it.",
        ),
        key(
            "checks",
            Ty::List(&Ty::Str),
            "",
            "SLI from nightjar's probes: runs of these checks (`nightjar_check_runs_total`).",
        ),
        key(
            "errors",
            Ty::Str,
            "",
            "SLI from the service's own metrics: PromQL of failed events per second, with `$window` where the range goes.",
        ),
        key(
            "total",
            Ty::Str,
            "",
            "SLI from the service's own metrics: PromQL of all events per second, with `$window` where the range goes.",
        ),
        key(
            "latency",
            Ty::Duration,
            "",
            "With `checks`: a latency SLI instead, successful runs within this threshold, which must be a bucket edge of `[agent] duration_buckets`.",
        ),
        key(
            "tolerated_failures",
            Ty::IntIn(0, 1000),
            "1",
            "`k`: failures in an alert's long window that must not page.",
        ),
        key(
            "floor",
            Ty::Enum(&["none", "virtual"]),
            "\"none\"",
            "`\"virtual\"`: the virtual floor.",
        ),
        key(
            "service",
            Ty::Str,
            "",
            "The service it belongs to (`sloth_service` with Sloth naming). Default: the SLO's name.",
        ),
    ],
);

/// `[rules]`.
pub static RULES: Section = section(
    "rules",
    &[
        key(
            "expiry_warning",
            Ty::Duration,
            "\"21d\"",
            "Lead time of the warning expiry alerts.",
        ),
        key(
            "expiry_critical",
            Ty::Duration,
            "\"7d\"",
            "Lead time of the critical ones.",
        ),
        key(
            "quorum",
            Ty::IntIn(1, i64::MAX),
            "",
            "Regions that must fail for the region-quorum alert. Default: more than half.",
        ),
        key(
            "quorum_for",
            Ty::Duration,
            "\"5m\"",
            "How long they must fail.",
        ),
        key(
            "naming",
            Ty::Enum(&["nightjar", "sloth"]),
            "\"nightjar\"",
            "`\"sloth\"`: record the SLO series under Sloth's names and labels, so Sloth's Grafana dashboards work.",
        ),
    ],
);

/// `[[traffic]]`: its own keys, and an inline http request's.
pub static TRAFFIC: Section = Section {
    name: "traffic",
    keys: &[
        required("name", Ty::Str, "The `traffic` label."),
        key(
            "refresh",
            Ty::Duration,
            "\"1m\"",
            "How often the real rate is read again.",
        ),
        key(
            "timeout",
            Ty::Duration,
            "\"10s\"",
            "Per request (or per flow).",
        ),
        key(
            "slo",
            Ty::Str,
            "",
            "The floor, derived from this SLO's tiers (the largest `k / (B·(1−S)·W)`, plus 20%); or `floor`.",
        ),
        key(
            "floor",
            Ty::Str,
            "",
            "The floor as a rate like `\"100/h\"`, `\"2/m\"`, `\"0.5/s\"`; or `slo`.",
        ),
        key(
            "check",
            Ty::Str,
            "",
            "Send the request of this `http` or `flow` check (a whole login); or `url` and the keys of an `http` check.",
        ),
        key(
            "prometheus",
            Ty::Str,
            "",
            "The Prometheus to ask for the real rate; without it the whole floor is sent.",
        ),
        key(
            "real_rate",
            Ty::Str,
            "",
            "The PromQL of the real request rate per second.",
        ),
        key(
            "max_rate",
            Ty::Str,
            "\"5/s\"",
            "Never send faster; at most `\"1000/s\"`.",
        ),
        key(
            "arrivals",
            Ty::Enum(&["poisson", "even"]),
            "\"poisson\"",
            "How requests are spread: `\"poisson\"` or `\"even\"`.",
        ),
        key(
            "fallback",
            Ty::Enum(&["floor", "none"]),
            "\"floor\"",
            "When Prometheus cannot be asked, or answers with something that is not a request rate: `\"floor\"` sends the whole floor (capped), `\"none\"` sends nothing.",
        ),
        key(
            "active_hours",
            Ty::Str,
            "",
            "A daily window in UTC, like `\"20:00-08:00\"`. Default: always.",
        ),
    ],
    also: &[&checks::http::KEYS],
    values: None,
};

/// `[[remote_write]]`.
pub static REMOTE_WRITE: Section = Section {
    name: "remote_write",
    keys: &[
        key(
            "name",
            Ty::Str,
            "",
            "The `remote` label of its metrics. Default: `remote-N`.",
        ),
        required(
            "url",
            Ty::Secret,
            "The endpoint, e.g. `http://prometheus:9090/api/v1/write`; `${env:..}`/`${file:..}` allowed.",
        ),
        key(
            "interval",
            Ty::Duration,
            "\"15s\"",
            "How often every series is pushed.",
        ),
        key("timeout", Ty::Duration, "\"10s\"", "Per request."),
        key(
            "max_queue",
            Ty::IntIn(1, i64::MAX),
            "500000",
            "Samples kept while the endpoint is down.",
        ),
        key(
            "max_batch",
            Ty::IntIn(1, i64::MAX),
            "5000",
            "Samples per request.",
        ),
        checks::TLS_KEY,
    ],
    also: &[&checks::HTTP_AUTH, &checks::IP],
    values: None,
};

/// `[[maintenance]]`.
pub static MAINTENANCE: Section = section(
    "maintenance",
    &[
        key(
            "mode",
            Ty::Enum(&["mark", "skip"]),
            "\"mark\"",
            "`\"mark\"`: runs go on and are marked; `\"skip\"`: no run starts while the window is open.",
        ),
        key("reason", Ty::Str, "", "Free text shown on the page."),
        required(
            "name",
            Ty::Str,
            "`[a-z0-9_-]+`, unique; shown on the page and in logs.",
        ),
        key(
            "start",
            Ty::Str,
            "",
            "An RFC 3339 time the window opens; with `end`.",
        ),
        key("end", Ty::Str, "", "An RFC 3339 time the window closes."),
        key(
            "cron",
            Ty::Str,
            "",
            "Or: a cron expression in UTC, with `duration`.",
        ),
        key(
            "duration",
            Ty::Duration,
            "",
            "How long each window of `cron` lasts (up to 7 days).",
        ),
        key(
            "checks",
            Ty::List(&Ty::Str),
            "",
            "The checks named; with neither this nor `labels`, every check.",
        ),
        key(
            "labels",
            LABELS,
            "",
            "The checks carrying all these labels.",
        ),
    ],
);
