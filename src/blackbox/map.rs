//! blackbox_exporter's modules mapped onto nightjar's keys, prober by prober.
//!
//! Options are read as blackbox_exporter reads them (`config/config.go`, strict: an unknown
//! option is an error there, and an [`Unsupported`] here); a key is written only where the
//! YAML sets the option, except where blackbox_exporter's default differs from nightjar's
//! (`grpc` is plain text unless `tls: true`, `icmp` sends one echo of 28 bytes, `dns` asks
//! for `ANY` without the DO bit), which is written out so the check probes as the module did.

use std::collections::BTreeMap;
use std::path::Path;

use super::toml_out::{Entries, Val};
use super::yaml::{Node, Value};
use super::{Module, Origin, Parsed, Unsupported};
use crate::kind::CheckKind;
use crate::reader::ConfigError;

mod probers;

pub(crate) use probers::literal;

/// The probers blackbox_exporter knows, with the check kind each becomes.
const PROBERS: &[(&str, CheckKind)] = &[
    ("http", CheckKind::Http),
    ("tcp", CheckKind::Tcp),
    ("icmp", CheckKind::Icmp),
    ("dns", CheckKind::Dns),
    ("grpc", CheckKind::Grpc),
    ("unix", CheckKind::Tcp),
    ("websocket", CheckKind::Websocket),
];

/// The modules of a parsed `blackbox.yml`.
pub(crate) fn modules(path: &Path, root: &Node) -> Result<Parsed, ConfigError> {
    let error = |node: &Node, message: String, hint: &str| ConfigError {
        path: path.to_path_buf(),
        line: Some(node.line),
        column: Some(node.column),
        message,
        hint: (!hint.is_empty()).then(|| hint.to_owned()),
    };
    let mut parsed = Parsed::default();
    let Some(entries) = root.entries() else {
        return Err(error(
            root,
            format!(
                "expected blackbox_exporter's configuration, a mapping with `modules`, found {}",
                root.describe()
            ),
            "",
        ));
    };
    let mut modules = None;
    for (key, value) in entries {
        if key.str() == Some("modules") {
            modules = Some(value);
        } else {
            parsed.unsupported.push(Unsupported {
                origin: Origin { path: path.to_path_buf(), line: key.line },
                module: String::new(),
                option: key.str().unwrap_or("?").to_owned(),
                reason: "unknown top-level option; blackbox_exporter only reads `modules` (and rejects this file)".into(),
            });
        }
    }
    let Some(modules) = modules else {
        return Err(error(
            root,
            "no `modules` in this file".into(),
            "blackbox_exporter's configuration is `modules:` with one entry per module",
        ));
    };
    let Some(modules) = modules.entries() else {
        return Err(error(
            modules,
            format!(
                "`modules` must be a mapping of module names, found {}",
                modules.describe()
            ),
            "",
        ));
    };
    let mut seen = Vec::new();
    for (key, body) in modules {
        let (name, prober, kind) = module_head(path, key, body, &seen)?;
        seen.push(name);
        let mut cx = Cx::new(path, name);
        cx.module(prober, body);
        parsed.unsupported.append(&mut cx.unsupported);
        parsed.modules.push(Module {
            name: name.to_owned(),
            kind,
            table: cx.out.render(),
            origin: Origin {
                path: path.to_path_buf(),
                line: key.line,
            },
            secrets: cx.secrets,
            prober: prober.to_owned(),
        });
    }
    Ok(parsed)
}

/// A module's name, prober and kind, or why the file is not blackbox_exporter's
/// configuration (a name given twice, a body that is not a mapping, no or an unknown prober).
fn module_head<'n>(
    path: &Path,
    key: &'n Node,
    body: &'n Node,
    seen: &[&str],
) -> Result<(&'n str, &'static str, CheckKind), ConfigError> {
    let error = |node: &Node, message: String, hint: &str| ConfigError {
        path: path.to_path_buf(),
        line: Some(node.line),
        column: Some(node.column),
        message,
        hint: (!hint.is_empty()).then(|| hint.to_owned()),
    };
    let Some(name) = key.str() else {
        return Err(error(key, "a module name must be a string".into(), ""));
    };
    if seen.contains(&name) {
        return Err(error(
            key,
            format!("module {name:?} is defined twice"),
            "blackbox_exporter rejects duplicate keys; remove one",
        ));
    }
    if body.entries().is_none() {
        return Err(error(
            body,
            format!(
                "module {name:?} must be a mapping, found {}",
                body.describe()
            ),
            "",
        ));
    }
    let Some(prober_node) = body.get("prober") else {
        return Err(error(
            key,
            format!("module {name:?} has no `prober`"),
            "one of http, tcp, icmp, dns, grpc, unix, websocket",
        ));
    };
    let prober = prober_node.str().unwrap_or_default();
    let Some(&(prober, kind)) = PROBERS.iter().find(|(known, _)| *known == prober) else {
        return Err(error(
            prober_node,
            format!("prober {prober:?} of module {name:?} is not valid"),
            "one of http, tcp, icmp, dns, grpc, unix, websocket",
        ));
    };
    Ok((name, prober, kind))
}

/// The state of mapping one module.
pub(crate) struct Cx<'a> {
    path: &'a Path,
    module: &'a str,
    /// The table being written.
    pub out: Entries,
    pub unsupported: Vec<Unsupported>,
    pub secrets: BTreeMap<String, String>,
}

impl<'a> Cx<'a> {
    pub fn new(path: &'a Path, module: &'a str) -> Cx<'a> {
        Cx {
            path,
            module,
            out: Entries::default(),
            unsupported: Vec::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// Records an option that is not carried over.
    pub fn unsupported(&mut self, at: &Node, option: &str, reason: impl Into<String>) {
        self.unsupported.push(Unsupported {
            origin: Origin {
                path: self.path.to_path_buf(),
                line: at.line,
            },
            module: self.module.to_owned(),
            option: option.to_owned(),
            reason: reason.into(),
        });
    }

    /// Keeps a secret written in the YAML out of the table: returns the `${env:NAME}` that
    /// stands for it, and remembers the value under `NAME`.
    pub fn secret(&mut self, option: &str, value: &str) -> String {
        let base: String = format!("BLACKBOX_{}_{}", self.module, option)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while self.secrets.get(&name).is_some_and(|held| held != value) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.secrets.insert(name.clone(), value.to_owned());
        format!("${{env:{name}}}")
    }

    /// The entries of the mapping `node` at `prefix`, with each key that is not in `known`
    /// (or given twice) recorded as unsupported, as blackbox_exporter's strict reading would
    /// refuse it.
    pub fn fields<'n>(&mut self, node: &'n Node, prefix: &str, known: &[&str]) -> Fields<'n> {
        let mut fields = Fields(Vec::new());
        let Some(entries) = node.entries() else {
            self.unsupported(
                node,
                prefix,
                format!("expected a mapping, found {}", node.describe()),
            );
            return fields;
        };
        for (key, value) in entries {
            let name = key.str().unwrap_or("?");
            let option = format!("{prefix}.{name}");
            if !known.contains(&name) {
                let hint = crate::text::closest(name, known)
                    .map(|close| format!(" (did you mean `{close}`?)"))
                    .unwrap_or_default();
                self.unsupported(
                    key,
                    &option,
                    format!("unknown option{hint}; blackbox_exporter rejects it too"),
                );
            } else if fields.0.iter().any(|field| field.name == name) {
                self.unsupported(
                    key,
                    &option,
                    "given twice; blackbox_exporter rejects duplicate keys",
                );
            } else {
                fields.0.push(Field {
                    name: key.str().unwrap_or_default(),
                    key,
                    value,
                    option,
                });
            }
        }
        fields
    }

    /// A string option (numbers and booleans are read as their text, as go-yaml does for a
    /// string field); `None` with the problem recorded otherwise.
    pub fn str(&mut self, field: &Field<'_>) -> Option<String> {
        match &field.value.value {
            Value::Scalar { .. } if field.value.is_null() => Some(String::new()),
            Value::Scalar { text, .. } => Some(text.clone()),
            Value::Binary(bytes) => match String::from_utf8(bytes.clone()) {
                Ok(text) => Some(text),
                Err(_) => {
                    self.unsupported(
                        field.key,
                        &field.option,
                        "binary data that is not UTF-8 text cannot go here",
                    );
                    None
                }
            },
            _ => {
                self.unsupported(
                    field.key,
                    &field.option,
                    format!("expected a string, found {}", field.value.describe()),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, field: &Field<'_>) -> Option<bool> {
        if field.value.is_null() {
            return Some(false);
        }
        let flag = field.value.bool();
        if flag.is_none() {
            self.unsupported(
                field.key,
                &field.option,
                format!("expected true or false, found {}", field.value.describe()),
            );
        }
        flag
    }

    pub fn int(&mut self, field: &Field<'_>) -> Option<i64> {
        let number = field.value.int();
        if number.is_none() {
            self.unsupported(
                field.key,
                &field.option,
                format!(
                    "expected an integer, found {:?}",
                    field.value.str().unwrap_or(field.value.describe())
                ),
            );
        }
        number
    }

    /// The items of a list option, or `None` with the option reported as not a list.
    pub fn items<'n>(&mut self, field: &Field<'n>) -> Option<&'n [Node]> {
        let items = field.value.items();
        if items.is_none() {
            self.unsupported(
                field.key,
                &field.option,
                format!("expected a list, found {}", field.value.describe()),
            );
        }
        items
    }

    /// The entries of a mapping option, or `None` with the option reported as not a mapping.
    pub fn entries<'n>(&mut self, field: &Field<'n>) -> Option<&'n [(Node, Node)]> {
        let entries = field.value.entries();
        if entries.is_none() {
            self.unsupported(
                field.key,
                &field.option,
                format!("expected a mapping, found {}", field.value.describe()),
            );
        }
        entries
    }

    /// A list of strings (a single string counts as a list of one, as blackbox's lists never
    /// do; it is refused).
    pub fn str_list(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        let items = self.items(field)?;
        let mut out = Vec::new();
        for item in items {
            match item.str() {
                Some(text) => out.push(text.to_owned()),
                None => {
                    self.unsupported(
                        item,
                        &field.option,
                        format!("expected a string, found {}", item.describe()),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A Go duration (`5s`, `1m30s`, `250ms`) as a nightjar duration.
    pub fn duration(&mut self, field: &Field<'_>) -> Option<String> {
        let text = self.str(field)?;
        let converted = go_duration(&text);
        if converted.is_none() {
            self.unsupported(
                field.key,
                &field.option,
                format!("{text:?} is not a duration"),
            );
        }
        converted
    }

    /// `preferred_ip_protocol` and `ip_protocol_fallback`, as every prober has them.
    pub fn ip_protocol(&mut self, fields: &Fields<'_>) {
        if let Some(field) = fields.get("preferred_ip_protocol")
            && let Some(text) = self.str(field)
        {
            // blackbox_exporter: "ip6" or empty is IPv6 first, anything else IPv4 first.
            let family = if matches!(text.as_str(), "ip6" | "") {
                "ip6"
            } else {
                "ip4"
            };
            self.out.set("ip_protocol", Val::Str(family.into()));
        }
        if let Some(field) = fields.get("ip_protocol_fallback")
            && let Some(flag) = self.bool(field)
        {
            self.out.set("ip_protocol_fallback", Val::Bool(flag));
        }
    }

    /// `source_ip_address` → `source_ip`.
    pub fn source_ip(&mut self, fields: &Fields<'_>) {
        if let Some(field) = fields.get("source_ip_address")
            && let Some(text) = self.str(field)
            && !text.is_empty()
        {
            self.out.set("source_ip", Val::Str(text));
        }
    }

    fn module(&mut self, prober: &str, body: &Node) {
        let known = [
            "prober",
            "timeout",
            "http",
            "tcp",
            "icmp",
            "dns",
            "grpc",
            "unix",
            "websocket",
        ];
        let fields = self.fields(body, "", &known);
        let kind = match prober {
            "unix" => "tcp",
            other => other,
        };
        self.out.set("type", Val::Str(kind.into()));
        if let Some(field) = fields.get("timeout")
            && let Some(timeout) = self.duration(field)
            && timeout != "0s"
        {
            self.out.set("timeout", Val::Str(timeout));
        }
        let empty = Node {
            value: Value::Map(Vec::new()),
            line: body.line,
            column: body.column,
        };
        let table = fields.get(prober).map_or(&empty, |field| field.value);
        match prober {
            "http" => probers::http(self, table),
            "tcp" | "unix" => probers::tcp(self, table, prober),
            "icmp" => probers::icmp(self, table),
            "dns" => probers::dns(self, table),
            "grpc" => probers::grpc(self, table),
            _ => probers::websocket(self, table),
        }
    }
}

/// The known entries of one mapping.
pub(crate) struct Fields<'n>(Vec<Field<'n>>);

/// One entry: its name, key node (for the line), value, and option path.
pub(crate) struct Field<'n> {
    pub name: &'n str,
    pub key: &'n Node,
    pub value: &'n Node,
    pub option: String,
}

impl<'n> Fields<'n> {
    pub fn get(&self, name: &str) -> Option<&Field<'n>> {
        self.0.iter().find(|field| field.name == name)
    }
}

/// Go's `time.ParseDuration` text (`1h30m`, `1.5s`, `250ms`, `100us`) as a nightjar duration,
/// in the largest unit that keeps it whole (`"90s"`, `"250ms"`).
pub(crate) fn go_duration(text: &str) -> Option<String> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some("0s".into());
    }
    let mut nanos: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += number * scale;
        rest = tail;
    }
    let millis = (nanos / 1e6).round() as u64;
    Some(if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    })
}

#[cfg(test)]
mod tests;
