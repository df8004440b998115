//! A small ordered TOML writer for module tables: keys keep the order the mapping sets them in
//! (so the output reads like the YAML it came from), and `expect`, `tls` and `oauth2` are
//! written as dotted keys, one option a line.

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    Arr(Vec<Val>),
    Table(Entries),
}

/// An ordered table.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Entries(pub Vec<(String, Val)>);

impl Entries {
    /// Sets `path` (dotted: `expect.status`), creating the tables on the way; a later value
    /// replaces an earlier one in its place.
    pub fn set(&mut self, path: &str, value: Val) {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        let Some(rest) = rest else {
            match self.0.iter_mut().find(|(key, _)| key == head) {
                Some((_, slot)) => *slot = value,
                None => self.0.push((head.to_owned(), value)),
            }
            return;
        };
        if !self
            .0
            .iter()
            .any(|(key, v)| key == head && matches!(v, Val::Table(_)))
        {
            self.0.retain(|(key, _)| key != head);
            self.0
                .push((head.to_owned(), Val::Table(Entries::default())));
        }
        if let Some((_, Val::Table(table))) = self.0.iter_mut().find(|(key, _)| key == head) {
            table.set(rest, value);
        }
    }

    /// The value at `path`, if set.
    pub fn get(&self, path: &str) -> Option<&Val> {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        let (_, value) = self.0.iter().find(|(key, _)| key == head)?;
        match (rest, value) {
            (None, value) => Some(value),
            (Some(rest), Val::Table(table)) => table.get(rest),
            _ => None,
        }
    }

    /// The table as the body of a `[[check]]` table: one `key = value` a line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.0 {
            match value {
                Val::Table(table)
                    if !table.0.is_empty()
                        && matches!(key.as_str(), "expect" | "tls" | "oauth2") =>
                {
                    for (sub, value) in &table.0 {
                        out.push_str(&format!(
                            "{}.{} = {}\n",
                            key_text(key),
                            key_text(sub),
                            value.inline()
                        ));
                    }
                }
                Val::Arr(items) if items.iter().any(|item| matches!(item, Val::Table(_))) => {
                    out.push_str(&format!("{} = [\n", key_text(key)));
                    for item in items {
                        out.push_str(&format!("  {},\n", item.inline()));
                    }
                    out.push_str("]\n");
                }
                _ => out.push_str(&format!("{} = {}\n", key_text(key), value.inline())),
            }
        }
        out
    }
}

impl Val {
    /// The value on one line.
    pub fn inline(&self) -> String {
        match self {
            Val::Str(text) => string(text),
            Val::Int(number) => number.to_string(),
            Val::Bool(flag) => flag.to_string(),
            Val::Arr(items) => {
                let items: Vec<String> = items.iter().map(Val::inline).collect();
                format!("[{}]", items.join(", "))
            }
            Val::Table(table) if table.0.is_empty() => "{}".to_owned(),
            Val::Table(table) => {
                let items: Vec<String> = table
                    .0
                    .iter()
                    .map(|(key, value)| format!("{} = {}", key_text(key), value.inline()))
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
        }
    }
}

/// A TOML string: a literal string (`'...'`, no escapes: regexes read as written) when the
/// text allows it, else a basic string with escapes.
pub(crate) fn string(text: &str) -> String {
    let literal_ok = !text.contains('\'')
        && !text
            .chars()
            .any(|c| c.is_control() && c != '\t' || c == '\u{7f}');
    if literal_ok && text.contains('\\') {
        return format!("'{text}'");
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key: bare when it can be, else quoted.
pub(crate) fn key_text(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        string(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_literal_when_they_hold_backslashes() {
        assert_eq!(string(r"^\d+$"), r"'^\d+$'");
        assert_eq!(string("it's\n"), r#""it's\n""#);
        assert_eq!(string("a\"b"), r#""a\"b""#);
        assert_eq!(string("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn tables_render_in_order_with_dotted_expect() {
        let mut table = Entries::default();
        table.set("type", Val::Str("http".into()));
        table.set("expect.status", Val::Arr(vec![Val::Int(200)]));
        table.set("headers.X-Key", Val::Str("v".into()));
        table.set("headers.Host Name", Val::Str("h".into()));
        table.set("expect.tls", Val::Bool(true));
        let mut step = Entries::default();
        step.set("send", Val::Str("PING\n".into()));
        table.set("steps", Val::Arr(vec![Val::Table(step)]));
        assert_eq!(
            table.render(),
            "type = \"http\"\nexpect.status = [200]\nexpect.tls = true\nheaders = { X-Key = \"v\", \"Host Name\" = \"h\" }\nsteps = [\n  { send = \"PING\\n\" },\n]\n"
        );
        let parsed: toml::Table = table.render().parse().unwrap();
        assert_eq!(parsed["expect"]["tls"].as_bool(), Some(true));
        assert_eq!(
            table.get("expect.status"),
            Some(&Val::Arr(vec![Val::Int(200)]))
        );
    }
}
