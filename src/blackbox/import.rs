//! `nightjar import blackbox`: a `blackbox.yml`, and optionally the targets that Prometheus
//! probes with it, written as nightjar TOML: one `[[module]]` per module (what `/probe`
//! serves), and one `[[check]]` per module and target (a scheduled check).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::targets::{self, Target};
use super::toml_out::{key_text, string};
use super::{Module, Unsupported};
use crate::metrics::names::RESERVED_LABELS;
use crate::reader::ConfigError;

/// Whether a target's label cannot become a check label: nightjar writes a label of that name
/// itself (the configuration refuses them), or Prometheus sets it at the scrape (`job`,
/// `instance`).
fn reserved(name: &str) -> bool {
    RESERVED_LABELS.contains(&name) || matches!(name, "job" | "instance")
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// `[[module]]` tables and `[[check]]` tables.
    #[default]
    Both,
    /// Only the `[[check]]` tables (scheduled checks).
    Checks,
    /// Only the `[[module]]` tables (for `/probe`).
    Modules,
}

/// The importer's input.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `blackbox.yml`.
    pub config: PathBuf,
    /// Prometheus configurations or file_sd files listing targets per module.
    pub targets: Vec<PathBuf>,
    /// Write what can be carried over even when some options cannot.
    pub allow_partial: bool,
    /// What to write.
    pub emit: Emit,
}

/// What the importer produced.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// The TOML to write; `None` when nothing is to be written (options that cannot be
    /// carried over, without `allow_partial`).
    pub toml: Option<String>,
    /// Lines for stderr: each option not carried over (`file:line: module M: option: why`),
    /// notes about the targets, and the environment variables to set.
    pub messages: Vec<String>,
    /// Whether something could not be carried over (the exit status is 1 then).
    pub incomplete: bool,
}

/// Runs the import. `Err` is input that cannot be read at all (exit status 2).
pub fn run(options: &Options) -> Result<Imported, ConfigError> {
    let text = std::fs::read_to_string(&options.config).map_err(|e| ConfigError {
        path: options.config.clone(),
        line: None,
        column: None,
        message: format!("cannot read it: {e}"),
        hint: None,
    })?;
    let parsed = super::parse(&options.config, &text)?;
    let mut problems: Vec<Unsupported> = parsed.unsupported;
    let mut messages = Vec::new();
    let mut found = Vec::new();
    for path in &options.targets {
        let mut read = targets::read(path)?;
        messages.append(&mut read.notes);
        found.append(&mut read.targets);
    }
    let mut unknown = Vec::new();
    for target in &mut found {
        let before = target.labels.len();
        let dropped: Vec<String> = target
            .labels
            .keys()
            .filter(|name| reserved(name))
            .cloned()
            .collect();
        target.labels.retain(|name, _| !reserved(name));
        if target.labels.len() != before {
            messages.push(format!("{}: label(s) {} dropped from target {}: nightjar writes labels of that name itself", target.from, dropped.join(", "), target.target));
        }
    }
    found.retain(|target| {
        let known = parsed.modules.iter().any(|m| m.name == target.module);
        if !known {
            unknown.push(format!(
                "{}: module {:?} is not in {}; target {} skipped",
                target.from,
                target.module,
                options.config.display(),
                target.target
            ));
        }
        known
    });
    // With only checks written, a module no target uses leaves nothing behind.
    if options.emit == Emit::Checks {
        let used: BTreeSet<&str> = found.iter().map(|t| t.module.as_str()).collect();
        problems.retain(|p| p.module.is_empty() || used.contains(p.module.as_str()));
    }
    for problem in &problems {
        messages.push(describe(problem));
    }
    let incomplete = !problems.is_empty() || !unknown.is_empty();
    messages.extend(unknown);
    let modules = &parsed.modules;
    let variables = variables(modules, options.emit, &found);
    if !variables.is_empty() {
        let names: Vec<&str> = variables.iter().map(|(name, _)| name.as_str()).collect();
        messages.push(format!(
            "secrets written inline in {} are not copied: set {} in the agent's environment (the checks read them as ${{env:NAME}})",
            options.config.display(),
            names.join(", ")
        ));
    }
    if incomplete && !options.allow_partial {
        return Ok(Imported {
            toml: None,
            messages,
            incomplete,
        });
    }
    problems.sort_by_key(|p| p.origin.line);
    let toml = write(options, modules, &problems, &found, &variables);
    Ok(Imported {
        toml: Some(toml),
        messages,
        incomplete,
    })
}

/// `file:line: module M: option: reason`.
fn describe(problem: &Unsupported) -> String {
    let module = if problem.module.is_empty() {
        String::new()
    } else {
        format!("module {}: ", problem.module)
    };
    format!(
        "{}:{}: {module}{}: {}",
        problem.origin.path.display(),
        problem.origin.line,
        problem.option,
        problem.reason
    )
}

/// The secret variables the written tables refer to: name, module.
fn variables(modules: &[Module], emit: Emit, found: &[Target]) -> Vec<(String, String)> {
    let used: BTreeSet<&str> = found.iter().map(|t| t.module.as_str()).collect();
    let mut out = Vec::new();
    for module in modules {
        let written = emit != Emit::Checks || used.contains(module.name.as_str());
        if written {
            out.extend(
                module
                    .secrets
                    .keys()
                    .map(|name| (name.clone(), module.name.clone())),
            );
        }
    }
    out
}

/// The TOML text.
fn write(
    options: &Options,
    modules: &[Module],
    problems: &[Unsupported],
    found: &[Target],
    variables: &[(String, String)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `nightjar import blackbox` from {}.",
        options.config.display()
    );
    if !variables.is_empty() {
        let _ = writeln!(
            out,
            "# Secrets from it are not copied here; set these in the agent's environment:"
        );
        for (name, module) in variables {
            let _ = writeln!(out, "#   {name} (module {module})");
        }
    }
    let dropped = |out: &mut String, module: &str| {
        for problem in problems.iter().filter(|p| p.module == module) {
            let _ = writeln!(
                out,
                "# NOT CARRIED OVER ({}:{}) {}: {}",
                problem.origin.path.display(),
                problem.origin.line,
                problem.option,
                problem.reason
            );
        }
    };
    if options.emit != Emit::Checks {
        for module in modules {
            let _ = writeln!(
                out,
                "\n# {}:{} module {}",
                module.origin.path.display(),
                module.origin.line,
                module.name
            );
            dropped(&mut out, &module.name);
            let _ = writeln!(out, "[[module]]\nname = {}", string(&module.name));
            out.push_str(&module.table);
        }
    }
    if options.emit != Emit::Modules {
        let mut names = BTreeSet::new();
        for target in found {
            let Some(module) = modules.iter().find(|m| m.name == target.module) else {
                continue;
            };
            let name = check_name(&module.name, &target.target, &mut names);
            let _ = writeln!(
                out,
                "\n# {}:{} module {}; target from {}",
                module.origin.path.display(),
                module.origin.line,
                module.name,
                target.from
            );
            dropped(&mut out, &module.name);
            let (key, value) = module.target(&target.target);
            let _ = writeln!(
                out,
                "[[check]]\nname = {}\n{key} = {}",
                string(&name),
                string(&super::map::literal(&value))
            );
            if let Some(interval) = &target.interval {
                let _ = writeln!(out, "interval = {}", string(interval));
            }
            out.push_str(&capped(&module.table, target.interval.as_deref()));
            if !target.labels.is_empty() {
                let labels: Vec<String> = target
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{} = {}", key_text(k), string(v)))
                    .collect();
                let _ = writeln!(out, "labels = {{ {} }}", labels.join(", "));
            }
        }
    }
    out
}

/// The module's table for a check run every `interval`: a module `timeout` longer than that
/// is capped to it, as Prometheus's scrape timeout (at most the interval) caps
/// blackbox_exporter's.
fn capped(table: &str, interval: Option<&str>) -> String {
    let Some(every) = interval.and_then(crate::reader::parse_duration) else {
        return table.to_owned();
    };
    let mut out = String::with_capacity(table.len());
    for line in table.lines() {
        let timeout = line
            .strip_prefix("timeout = \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .and_then(crate::reader::parse_duration);
        match timeout {
            Some(timeout) if timeout > every => {
                let _ = writeln!(out, "# the module's timeout, capped at the scrape interval");
                let _ = writeln!(out, "timeout = {}", string(interval.unwrap_or_default()));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// A check name from the module and the target, in the config's alphabet (`[a-z0-9_-]`),
/// unique among `taken`.
fn check_name(module: &str, target: &str, taken: &mut BTreeSet<String>) -> String {
    let target = target.split_once("://").map_or(target, |(_, rest)| rest);
    let mut name = String::new();
    for c in format!("{module}-{target}").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let base = name.trim_matches('-').to_owned();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_timeout_longer_than_the_interval_is_capped() {
        let table = "type = \"tcp\"\ntimeout = \"30s\"\ntls = true\n";
        assert_eq!(
            capped(table, Some("15s")),
            "type = \"tcp\"\n# the module's timeout, capped at the scrape interval\ntimeout = \"15s\"\ntls = true\n"
        );
        assert_eq!(capped(table, Some("60s")), table);
        assert_eq!(capped(table, None), table);
    }

    #[test]
    fn check_names_are_valid_and_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(
            check_name("http_2xx", "https://Example.com:8443/a?b=c", &mut taken),
            "http_2xx-example-com-8443-a-b-c"
        );
        assert_eq!(
            check_name("http_2xx", "https://example.com:8443/a/b=c", &mut taken),
            "http_2xx-example-com-8443-a-b-c-2"
        );
        assert_eq!(check_name("icmp", "[::1]", &mut taken), "icmp-1");
    }

    #[test]
    fn problems_name_file_line_module_and_option() {
        let problem = Unsupported {
            origin: super::super::Origin {
                path: "blackbox.yml".into(),
                line: 7,
            },
            module: "m".into(),
            option: "http.enable_http3".into(),
            reason: "no HTTP/3".into(),
        };
        assert_eq!(
            describe(&problem),
            "blackbox.yml:7: module m: http.enable_http3: no HTTP/3"
        );
    }
}
