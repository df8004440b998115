//! Targets per module, from Prometheus configurations (the scrape jobs that send
//! `/probe?module=&target=`) and from file_sd files (JSON or YAML target groups).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::yaml::{self, Node};
use crate::reader::ConfigError;

/// One target of one module, with its labels and where it was listed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub module: String,
    pub target: String,
    pub labels: BTreeMap<String, String>,
    /// `prometheus.yml:30 job "blackbox"`, or `targets.yml:4`.
    pub from: String,
    /// The job's `scrape_interval` (or the global one), as a nightjar duration.
    pub interval: Option<String>,
}

/// What a scrape job gives each of its targets.
#[derive(Debug, Default)]
struct Job {
    /// `params.module` (blackbox_exporter's `http_2xx` without it).
    module: Option<String>,
    /// A label the job's relabelling copies into `__param_module`.
    module_label: Option<String>,
    interval: Option<String>,
}

/// What a targets file gave: its targets, and problems that do not stop the import (a job
/// without the usual relabelling, say), each with its place.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

/// blackbox_exporter's module when a scrape asks for none.
const DEFAULT_MODULE: &str = "http_2xx";

/// Reads `path`: a Prometheus configuration (a mapping with `scrape_configs`) or a file_sd
/// file (a list of target groups, whose module is their `__param_module` label).
pub(crate) fn read(path: &Path) -> Result<Found, ConfigError> {
    let text = read_text(path)?;
    let root = yaml::load(path, &text)?;
    let mut found = Found::default();
    if root.items().is_some() && !root.is_null() {
        groups(path, &root, &Job::default(), "", &mut found)?;
        return Ok(found);
    }
    let global = root
        .get("global")
        .and_then(|global| global.get("scrape_interval"))
        .and_then(Node::str)
        .unwrap_or("1m");
    let Some(jobs) = root.get("scrape_configs") else {
        return Err(error(
            path,
            &root,
            "neither a Prometheus configuration (no `scrape_configs`) nor a file_sd file (a list of target groups)",
            None,
        ));
    };
    for job in jobs.items().unwrap_or_default() {
        scrape_config(path, job, global, &mut found)?;
    }
    Ok(found)
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        message: format!("cannot read it: {e}"),
        hint: None,
    })
}

fn error(path: &Path, node: &Node, message: &str, hint: Option<&str>) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line: Some(node.line),
        column: Some(node.column),
        message: message.to_owned(),
        hint: hint.map(str::to_owned),
    }
}

/// One job of `scrape_configs`: a blackbox job is one whose `metrics_path` is `/probe`.
fn scrape_config(
    path: &Path,
    job: &Node,
    global_interval: &str,
    found: &mut Found,
) -> Result<(), ConfigError> {
    if job.get("metrics_path").and_then(Node::str) != Some("/probe") {
        return Ok(());
    }
    let name = job.get("job_name").and_then(Node::str).unwrap_or("?");
    let module = job
        .get("params")
        .and_then(|params| params.get("module"))
        .and_then(|module| match module.items() {
            Some(items) => items.first().and_then(Node::str),
            None => module.str(),
        })
        .unwrap_or(DEFAULT_MODULE);
    let interval = job
        .get("scrape_interval")
        .and_then(Node::str)
        .unwrap_or(global_interval);
    let rules = job
        .get("relabel_configs")
        .and_then(Node::items)
        .unwrap_or_default();
    let defaults = Job {
        module: Some(module.to_owned()),
        module_label: rules.iter().find_map(|rule| {
            let sources = rule.get("source_labels").and_then(Node::items)?;
            (rule.get("target_label").and_then(Node::str) == Some("__param_module")
                && sources.len() == 1)
                .then(|| sources[0].str().map(str::to_owned))?
        }),
        interval: Some(super::map::go_duration(interval).unwrap_or_else(|| interval.to_owned())),
    };
    let copies_target = job
        .get("relabel_configs")
        .and_then(Node::items)
        .unwrap_or_default()
        .iter()
        .any(|rule| {
            rule.get("target_label").and_then(Node::str) == Some("__param_target")
                && rule
                    .get("source_labels")
                    .and_then(Node::items)
                    .is_some_and(|labels| labels.iter().any(|l| l.str() == Some("__address__")))
        });
    if !copies_target {
        found.notes.push(format!(
            "{}:{}: job {name:?} has no relabelling from __address__ to __param_target; its targets are read as the probe targets anyway",
            path.display(),
            job.line
        ));
    }
    let from = |line: usize| format!("{}:{line} job {name:?}", path.display());
    for group in job
        .get("static_configs")
        .and_then(Node::items)
        .unwrap_or_default()
    {
        one_group(path, group, &defaults, &from(group.line), found)?;
    }
    let base = path.parent().unwrap_or(Path::new("."));
    for sd in job
        .get("file_sd_configs")
        .and_then(Node::items)
        .unwrap_or_default()
    {
        for pattern in sd.get("files").and_then(Node::items).unwrap_or_default() {
            let Some(pattern) = pattern.str() else {
                continue;
            };
            let files = glob(&base.join(pattern));
            if files.is_empty() {
                found.notes.push(format!(
                    "{}:{}: job {name:?}: file_sd pattern {pattern:?} matches no file",
                    path.display(),
                    sd.line
                ));
            }
            for file in files {
                let text = read_text(&file)?;
                let root = yaml::load(&file, &text)?;
                let suffix = format!(" (file_sd of {})", from(sd.line));
                groups(&file, &root, &defaults, &suffix, found)?;
            }
        }
    }
    Ok(())
}

/// A list of target groups (a file_sd file).
fn groups(
    path: &Path,
    root: &Node,
    job: &Job,
    suffix: &str,
    found: &mut Found,
) -> Result<(), ConfigError> {
    let Some(groups) = root.items() else {
        return Err(error(
            path,
            root,
            "a file_sd file is a list of target groups",
            None,
        ));
    };
    for group in groups {
        let from = format!("{}:{}{suffix}", path.display(), group.line);
        one_group(path, group, job, &from, found)?;
    }
    Ok(())
}

/// `{ targets: [...], labels: {...} }`.
fn one_group(
    path: &Path,
    group: &Node,
    job: &Job,
    from: &str,
    found: &mut Found,
) -> Result<(), ConfigError> {
    let mut labels = BTreeMap::new();
    for (key, value) in group
        .get("labels")
        .and_then(Node::entries)
        .unwrap_or_default()
    {
        if let (Some(key), Some(value)) = (key.str(), value.str()) {
            labels.insert(key.to_owned(), value.to_owned());
        }
    }
    let relabelled = job
        .module_label
        .as_ref()
        .and_then(|label| labels.get(label));
    let module = match labels.get("__param_module").or(relabelled) {
        Some(module) => module.clone(),
        None => match &job.module {
            Some(module) => module.clone(),
            None => {
                return Err(error(
                    path,
                    group,
                    "these targets name no module",
                    Some(
                        "give each group a `__param_module` label (labels: {__param_module: http_2xx}), or list the file in a Prometheus job's file_sd_configs whose params.module names it",
                    ),
                ));
            }
        },
    };
    labels.retain(|name, _| !name.starts_with("__") && name != "job" && name != "instance");
    for target in group
        .get("targets")
        .and_then(Node::items)
        .unwrap_or_default()
    {
        let Some(text) = target.str() else { continue };
        found.targets.push(Target {
            module: module.clone(),
            target: text.to_owned(),
            labels: labels.clone(),
            from: from.to_owned(),
            interval: job.interval.clone(),
        });
    }
    Ok(())
}

/// The files a file_sd pattern names: `*` and `?` in its last path element, as Prometheus
/// allows them; in sorted order.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if pattern.is_file() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|file| matches(name.as_bytes(), file.as_bytes()))
        })
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Shell-style matching of `*` and `?`.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            matches(&pattern[1..], name) || (!name.is_empty() && matches(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names() {
        assert!(matches(b"tg_*.json", b"tg_web.json"));
        assert!(matches(b"tg_?.yml", b"tg_1.yml"));
        assert!(!matches(b"tg_*.json", b"tg_web.yml"));
    }
}
