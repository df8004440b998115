//! YAML with the line and column of every node, built from `yaml-rust2`'s parser events (its
//! own tree drops the positions), for errors and origins that point into the file.

use std::path::Path;

use base64::Engine as _;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::reader::ConfigError;

/// One node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// A node's value. Mappings keep their order (and duplicate keys, which the readers report).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A scalar as written; `plain` when it was not quoted (so `true`, `12` and `~` are
    /// typed as YAML reads them).
    Scalar {
        text: String,
        plain: bool,
    },
    /// A `!!binary` scalar, decoded.
    Binary(Vec<u8>),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text, for a string, number or boolean.
    pub fn str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Whether the node is YAML's null (`~`, `null`, or nothing at all).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A plain boolean as go-yaml v3 reads one into a `bool` field: YAML 1.2's `true`/`false`,
    /// and for compatibility YAML 1.1's `yes`/`no`/`on`/`off`/`y`/`n`.
    pub fn bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y"
                | "Y" => Some(true),
                "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n"
                | "N" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// An integer (decimal, or `0x`/`0o` as YAML 1.2 writes them).
    pub fn int(&self) -> Option<i64> {
        let text = self.str()?.replace('_', "");
        if let Some(hex) = text.strip_prefix("0x") {
            return i64::from_str_radix(hex, 16).ok();
        }
        if let Some(oct) = text.strip_prefix("0o") {
            return i64::from_str_radix(oct, 8).ok();
        }
        text.parse().ok()
    }

    /// The entries of a mapping (null counts as empty).
    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ if self.is_null() => Some(&[]),
            _ => None,
        }
    }

    /// The items of a sequence (null counts as empty).
    pub fn items(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ if self.is_null() => Some(&[]),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.str() == Some(key))
            .map(|(_, v)| v)
    }

    /// What the node is, for messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Binary(_) => "binary data",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses the first document of `text` (a file with none is an empty mapping).
pub(crate) fn load(path: &Path, text: &str) -> Result<Node, ConfigError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, false) {
        let mark = error.marker();
        return Err(ConfigError {
            path: path.to_path_buf(),
            line: Some(mark.line()),
            column: Some(mark.col() + 1),
            message: format!("YAML syntax error: {}", error.info()),
            hint: None,
        });
    }
    if let Some((line, column, message)) = builder.error {
        return Err(ConfigError {
            path: path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message,
            hint: None,
        });
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Map(Vec::new()),
        line: 1,
        column: 1,
    }))
}

/// Builds the tree from the parser's events.
#[derive(Default)]
struct Builder {
    /// Open collections: the node, and for a mapping the key waiting for its value.
    stack: Vec<(Node, Option<Node>)>,
    /// Anchored nodes by id, for aliases.
    anchors: Vec<(usize, Node)>,
    /// Anchor ids of the open collections (0 for none).
    open_anchors: Vec<usize>,
    root: Option<Node>,
    error: Option<(usize, usize, String)>,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((parent, pending)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                _ => {}
            },
        }
    }
}

fn is_binary(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|tag| {
        tag.suffix == "binary" && (tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:")
    })
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let at = |value| Node {
            value,
            line: mark.line(),
            column: mark.col() + 1,
        };
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = if is_binary(tag.as_ref()) {
                    let compact: String = text.split_whitespace().collect();
                    match base64::engine::general_purpose::STANDARD.decode(compact) {
                        Ok(bytes) => Value::Binary(bytes),
                        Err(error) => {
                            self.error.get_or_insert((
                                mark.line(),
                                mark.col() + 1,
                                format!("!!binary value is not base64: {error}"),
                            ));
                            Value::Binary(Vec::new())
                        }
                    }
                } else {
                    Value::Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                    }
                };
                self.push(at(value), anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((at(Value::Seq(Vec::new())), None));
                self.open_anchors.push(anchor);
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((at(Value::Map(Vec::new())), None));
                self.open_anchors.push(anchor);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let (Some((mut node, _)), Some(anchor)) =
                    (self.stack.pop(), self.open_anchors.pop())
                {
                    // The parser marks a block mapping where its first key's value starts;
                    // the first key is where a reader looks for it.
                    if let Value::Map(entries) = &node.value
                        && let Some((key, _)) = entries.first()
                    {
                        (node.line, node.column) = (key.line, key.column);
                    }
                    self.push(node, anchor);
                }
            }
            Event::Alias(id) => {
                let found = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(anchor, _)| *anchor == id)
                    .map(|(_, node)| node.clone());
                if let Some(mut node) = found {
                    node.line = mark.line();
                    node.column = mark.col() + 1;
                    self.push(node, 0);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_ok(text: &str) -> Node {
        load(Path::new("b.yml"), text).unwrap()
    }

    #[test]
    fn nodes_carry_their_line_and_column() {
        let root = load_ok("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n");
        let module = root.get("modules").unwrap().get("http_2xx").unwrap();
        let prober = module.get("prober").unwrap();
        assert_eq!(
            (prober.str(), prober.line, prober.column),
            (Some("http"), 3, 13)
        );
        let (key, _) = &module.entries().unwrap()[1];
        assert_eq!((key.str(), key.line, key.column), (Some("timeout"), 4, 5));
    }

    #[test]
    fn binary_values_are_decoded() {
        let root = load_ok("send: !!binary AAAACATSFi8= # SSLRequest\n");
        assert_eq!(
            root.get("send").unwrap().value,
            Value::Binary(vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
        );
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let error = load(Path::new("b.yml"), "modules:\n  a: [1, 2\n").unwrap_err();
        assert_eq!(error.line, Some(3));
        assert!(error.message.starts_with("YAML syntax error"), "{error}");
        let error = load(Path::new("b.yml"), "a: b\n c: d\n").unwrap_err();
        assert_eq!(error.to_string().split(':').nth(1), Some("2"), "{error}");
    }

    #[test]
    fn scalars_keep_whether_they_were_quoted() {
        let root = load_ok("a: true\nb: 'true'\nc: 0x10\nd: ~\nx: &x {k: v}\ny: *x\n");
        assert_eq!(root.get("a").unwrap().bool(), Some(true));
        assert_eq!(root.get("b").unwrap().bool(), None);
        assert_eq!(root.get("c").unwrap().int(), Some(16));
        assert!(root.get("d").unwrap().is_null());
        assert_eq!(root.get("y").unwrap().get("k").unwrap().str(), Some("v"));
    }
}
