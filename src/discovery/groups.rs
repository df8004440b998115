//! Target groups, as Prometheus's file_sd and HTTP SD write them: a list of
//! `{ "targets": [...], "labels": {...} }`, strict as Prometheus reads them (unknown keys and
//! invalid label names are errors), and then as nightjar needs them: label names that a
//! check's series already carry (`metrics::names::RESERVED_LABELS`) refused with the reason,
//! Prometheus's `__` meta labels dropped, and text that could not be shown safely refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::Target;
use crate::metrics::names::RESERVED_LABELS;

/// The longest target, in bytes.
const MAX_TARGET: usize = 2048;
/// The longest label value, in bytes.
const MAX_LABEL_VALUE: usize = 1024;

/// One group as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Parses a JSON list of target groups (a file_sd `.json` file, an HTTP SD answer) into its
/// targets, in order. `Err` says what is wrong and where (line and column for JSON syntax,
/// the group's number for what is wrong inside one).
pub fn parse_json(bytes: &[u8]) -> Result<Vec<Target>, String> {
    let groups: Vec<Option<Group>> = serde_json::from_slice(bytes).map_err(|error| {
        let message = error.to_string();
        if error.is_data() && message.contains("expected a sequence") {
            format!("{message}: a target group list is a JSON array of {{\"targets\": [...], \"labels\": {{...}}}}")
        } else {
            message
        }
    })?;
    let mut targets = Vec::new();
    for (idx, group) in groups.into_iter().enumerate() {
        let Some(group) = group else {
            return Err(format!("group {}: null is not a target group", idx + 1));
        };
        let labels = check_labels(group.labels.unwrap_or_default())
            .map_err(|error| format!("group {}: {error}", idx + 1))?;
        push_targets(
            &mut targets,
            group.targets.unwrap_or_default(),
            &std::sync::Arc::new(labels),
        )
        .map_err(|error| format!("group {}: {error}", idx + 1))?;
    }
    Ok(targets)
}

/// Parses a YAML list of target groups (a file_sd `.yml` or `.yaml` file); errors name the
/// line.
pub fn parse_yaml(path: &Path, text: &str) -> Result<Vec<Target>, String> {
    use crate::blackbox::yaml::{Node, Value};
    let root = crate::blackbox::yaml::load(path, text).map_err(|error| match error.line {
        Some(line) => format!("line {line}: {}", error.message),
        None => error.message,
    })?;
    let Some(groups) = root.items() else {
        return Err(format!(
            "line {}: a file_sd file is a list of target groups, found {}",
            root.line,
            root.describe()
        ));
    };
    let scalar = |node: &Node, what: &str| -> Result<String, String> {
        match &node.value {
            Value::Scalar { text, .. } => Ok(text.clone()),
            _ => Err(format!(
                "line {}: {what} must be a string, found {}",
                node.line,
                node.describe()
            )),
        }
    };
    let mut targets = Vec::new();
    for group in groups {
        let at = |error: String| format!("line {}: {error}", group.line);
        let Some(entries) = group.entries().filter(|_| !group.is_null()) else {
            return Err(format!(
                "line {}: a target group is a mapping with `targets` and `labels`, found {}",
                group.line,
                group.describe()
            ));
        };
        let mut listed = Vec::new();
        let mut labels = BTreeMap::new();
        for (key, value) in entries {
            match key.str() {
                Some("targets") => {
                    let Some(items) = value.items() else {
                        return Err(at(format!(
                            "`targets` must be a list, found {}",
                            value.describe()
                        )));
                    };
                    for item in items {
                        listed.push(scalar(item, "a target")?);
                    }
                }
                Some("labels") => {
                    let Some(pairs) = value.entries() else {
                        return Err(at(format!(
                            "`labels` must be a mapping, found {}",
                            value.describe()
                        )));
                    };
                    for (name, value) in pairs {
                        labels.insert(
                            scalar(name, "a label name")?,
                            scalar(value, "a label value")?,
                        );
                    }
                }
                _ => {
                    return Err(format!(
                        "line {}: unknown key {:?} in a target group (it has `targets` and `labels`)",
                        key.line,
                        crate::text::sanitize(key.str().unwrap_or("?"), crate::text::MAX_NAME)
                    ));
                }
            }
        }
        let labels = check_labels(labels).map_err(at)?;
        push_targets(&mut targets, listed, &std::sync::Arc::new(labels)).map_err(at)?;
    }
    Ok(targets)
}

/// A group's labels as a check can carry them: `__` ones dropped, every other name valid and
/// not one nightjar writes itself, values safe to show.
fn check_labels(labels: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let mut kept = BTreeMap::new();
    for (name, value) in labels {
        if name.starts_with("__") {
            continue;
        }
        let shown = crate::text::sanitize(&name, crate::text::MAX_NAME);
        if !valid_label_name(&name) {
            return Err(format!(
                "label name {shown:?} is not a valid Prometheus label name (letters, digits and underscores, not starting with a digit)"
            ));
        }
        if RESERVED_LABELS.contains(&name.as_str()) {
            return Err(format!(
                "label name {shown:?} is reserved: nightjar writes it on the check's series itself, and a series cannot carry a label twice; rename it in the source, e.g. \"service_{shown}\""
            ));
        }
        if let Some(problem) = unsafe_text(&value, MAX_LABEL_VALUE) {
            return Err(format!("the value of label {shown:?} {problem}"));
        }
        kept.insert(name, value);
    }
    Ok(kept)
}

/// Appends a group's targets with its labels; each target must be text that can be shown.
fn push_targets(
    out: &mut Vec<Target>,
    targets: Vec<String>,
    labels: &std::sync::Arc<BTreeMap<String, String>>,
) -> Result<(), String> {
    out.reserve(targets.len());
    for target in targets {
        if target.trim().is_empty() {
            return Err("a target is empty".to_string());
        }
        if let Some(problem) = unsafe_text(&target, MAX_TARGET) {
            return Err(format!("target {problem}"));
        }
        out.push(Target {
            target: target.into(),
            labels: labels.clone(),
        });
    }
    Ok(())
}

/// Why `text` cannot be a target or a label value: too long, or with control characters
/// (which would reach logs, the page and terminals).
fn unsafe_text(text: &str, max: usize) -> Option<String> {
    if text.len() > max {
        return Some(format!(
            "{:?} is {} bytes long; at most {max} are allowed",
            crate::text::sanitize(text, 64),
            text.len()
        ));
    }
    match crate::text::sanitize(text, max) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(shown) => Some(format!(
            "{shown:?} holds control or bidirectional characters"
        )),
    }
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(targets: &[Target]) -> Vec<(String, Vec<(String, String)>)> {
        targets
            .iter()
            .map(|t| {
                (
                    t.target.to_string(),
                    (*t.labels).clone().into_iter().collect::<Vec<_>>(),
                )
            })
            .collect()
    }

    #[test]
    fn json_groups_give_targets_with_their_labels() {
        let targets = parse_json(
            br#"[
              {"targets": ["https://a.example/", "https://b.example/"], "labels": {"team": "shop", "__meta_x": "dropped"}},
              {"targets": ["c.example:443"]},
              {"labels": {"team": "empty"}},
              {"targets": [], "labels": null}
            ]"#,
        )
        .unwrap();
        let shop = vec![("team".to_string(), "shop".to_string())];
        assert_eq!(
            pairs(&targets),
            [
                ("https://a.example/".to_string(), shop.clone()),
                ("https://b.example/".to_string(), shop),
                ("c.example:443".to_string(), vec![]),
            ]
        );
        assert!(parse_json(b"[]").unwrap().is_empty());
    }

    #[test]
    fn json_problems_are_precise() {
        let error = parse_json(b"[{\"targets\": [\"a\"], \"label\": {}}]").unwrap_err();
        assert!(error.contains("unknown field `label`"), "{error}");
        let error = parse_json(b"{\"targets\": [\"a\"]}").unwrap_err();
        assert!(error.contains("JSON array"), "{error}");
        let error = parse_json(b"[{\"targets\": [\"a\"]},\n {\"targets\": [3]}]").unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        let error =
            parse_json(b"[{\"targets\": [\"a\"], \"labels\": {\"instance\": \"x\"}}]").unwrap_err();
        assert!(
            error.starts_with("group 1: label name \"instance\" is reserved")
                && error.contains("service_instance"),
            "{error}"
        );
        let error =
            parse_json(b"[{}, {\"targets\": [\"a\"], \"labels\": {\"1x\": \"y\"}}]").unwrap_err();
        assert!(
            error.starts_with("group 2: label name \"1x\" is not a valid"),
            "{error}"
        );
        let error = parse_json(b"[{\"targets\": [\"a\\u001b[31m\"]}]").unwrap_err();
        assert!(error.contains("\\x1b"), "{error}");
        let error = parse_json(b"[null]").unwrap_err();
        assert_eq!(error, "group 1: null is not a target group");
        let error = parse_json(b"[{\"targets\": [\" \"]}]").unwrap_err();
        assert_eq!(error, "group 1: a target is empty");
    }

    #[test]
    fn yaml_groups_read_as_json_ones() {
        let text = "- targets: ['db1:5432', db2:5432]\n  labels:\n    env: prod\n    port: 5432\n    __address__: x\n- targets:\n";
        let targets = parse_yaml(Path::new("sd.yml"), text).unwrap();
        let labels = vec![
            ("env".to_string(), "prod".to_string()),
            ("port".to_string(), "5432".to_string()),
        ];
        assert_eq!(
            pairs(&targets),
            [
                ("db1:5432".to_string(), labels.clone()),
                ("db2:5432".to_string(), labels),
            ]
        );
        let error =
            parse_yaml(Path::new("sd.yml"), "- targets: [a]\n  lables: {a: b}\n").unwrap_err();
        assert!(
            error.starts_with("line 2: unknown key \"lables\""),
            "{error}"
        );
        let error =
            parse_yaml(Path::new("sd.yml"), "- targets: [a]\n  labels: {job: x}\n").unwrap_err();
        assert!(error.contains("\"job\" is reserved"), "{error}");
        let error = parse_yaml(Path::new("sd.yml"), "targets: [a]\n").unwrap_err();
        assert!(error.contains("a list of target groups"), "{error}");
        let error = parse_yaml(Path::new("sd.yml"), "- targets: [a\n").unwrap_err();
        assert!(error.starts_with("line "), "{error}");
    }

    #[test]
    fn label_names_follow_prometheus() {
        assert!(valid_label_name("team"));
        assert!(valid_label_name("_x9"));
        assert!(!valid_label_name("9x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name(""));
    }
}
