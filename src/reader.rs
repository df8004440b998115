//! A reader over the spanned TOML tree that records every problem instead of stopping at the
//! first one.
//!
//! serde's derive stops at the first unknown key or wrong type, and a config that fails one
//! problem at a time is a slow config to fix. [`Table`] instead hands out typed fields,
//! remembers which keys were asked for, and on [`Table::finish`] reports the keys nobody asked
//! for with a "did you mean" hint. Every problem carries the file, line and column.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::keys::{Section, Want};
use crate::net::{IpFamily, IpPreference};

/// One config file's text, with what is needed to turn byte offsets into line and column.
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Source {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(idx, _)| idx + 1));
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(idx) => idx,
            Err(idx) => idx - 1,
        };
        let start = self.line_starts[line_idx];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line_idx + 1, column + 1)
    }
}

/// What a secret reference stands for under [`Env::placeholders`] (`validate --no-secrets`):
/// 16 base32 letters, so it is also a valid TOTP secret, host name, path, header value and
/// long enough for the agent's bearer token.
pub(crate) const PLACEHOLDER: &str = "NIGHTJARNOSECRET";

/// What a reference that is a whole value stands for under [`Env::placeholders`]: such a
/// value may be an endpoint, and a URL is also a valid header value or password.
pub(crate) const PLACEHOLDER_URL: &str = "https://nightjar.invalid/NIGHTJARNOSECRET";

/// Secret references that could not be resolved, shared by every file's [`Diags`]: one
/// missing variable or file is one problem, reported at its first reference; the other
/// places are added to that report by [`Unresolved::amend`].
#[derive(Default)]
pub(crate) struct Unresolved {
    /// Per reference (`env:NAME`, `file:PATH`): the first place, then the others.
    seen: RefCell<Vec<(String, String, Vec<String>)>>,
}

impl Unresolved {
    /// Records that `reference` could not be resolved at `place`; true the first time.
    fn first(&self, reference: &str, place: String) -> bool {
        let mut seen = self.seen.borrow_mut();
        match seen.iter_mut().find(|(known, _, _)| known == reference) {
            Some((_, first, more)) => {
                if *first != place && !more.contains(&place) {
                    more.push(place);
                }
                false
            }
            None => {
                seen.push((reference.to_string(), place, Vec::new()));
                true
            }
        }
    }

    /// Adds the other places of each unresolved reference to the problem reported at its
    /// first place.
    pub fn amend(&self, errors: &mut [ConfigError]) {
        for (reference, first, more) in self.seen.borrow().iter() {
            if more.is_empty() {
                continue;
            }
            let quoted = format!("${{{reference}}}");
            let found = errors.iter_mut().find(|error| {
                let place = format!(
                    "{}:{}:{}",
                    error.path.display(),
                    error.line.unwrap_or(0),
                    error.column.unwrap_or(0)
                );
                place == *first && error.message.contains(&quoted)
            });
            if let Some(error) = found {
                let also = format!("; also referenced at {})", more.join(", "));
                if error.message.ends_with(')') {
                    error.message.pop();
                    error.message.push_str(&also);
                } else {
                    error.message.push_str(&format!(" ({}", &also[2..]));
                }
            }
        }
    }
}

/// Collects problems for one source; also resolves `${env:..}` and `${file:..}` references.
pub(crate) struct Diags<'s> {
    pub src: &'s Source,
    env: &'s dyn Env,
    unresolved: &'s Unresolved,
    errors: RefCell<Vec<ConfigError>>,
}

impl<'s> Diags<'s> {
    pub fn new(src: &'s Source, env: &'s dyn Env, unresolved: &'s Unresolved) -> Diags<'s> {
        Diags {
            src,
            env,
            unresolved,
            errors: RefCell::new(Vec::new()),
        }
    }

    /// The environment variable `name` as the readers see it (never read with placeholders,
    /// as for `validate --no-secrets`): for settings taken from the environment, like
    /// `proxy_from_environment`.
    pub fn env_var(&self, name: &str) -> Option<String> {
        if self.env.placeholders() {
            return None;
        }
        self.env.var(name).filter(|value| !value.is_empty())
    }

    /// A problem found by a reader with diagnostics of its own over the same source.
    pub fn push_error(&self, error: ConfigError) {
        self.errors.borrow_mut().push(error);
    }

    pub fn error(&self, span: &Range<usize>, message: impl Into<String>) {
        self.push(span, message.into(), None);
    }

    pub fn error_hint(
        &self,
        span: &Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(span, message.into(), Some(hint.into()));
    }

    fn push(&self, span: &Range<usize>, message: String, hint: Option<String>) {
        let (line, column) = self.src.line_col(span.start);
        self.errors.borrow_mut().push(ConfigError {
            path: self.src.path.clone(),
            line: Some(line),
            column: Some(column),
            message,
            hint,
        });
    }

    pub fn location(&self, span: &Range<usize>) -> String {
        let (line, column) = self.src.line_col(span.start);
        format!("{}:{line}:{column}", self.src.path.display())
    }

    /// The problems found, in the order they appear in the file.
    pub fn into_errors(self) -> Vec<ConfigError> {
        let mut errors = self.errors.into_inner();
        errors.sort_by_key(|error| (error.line, error.column));
        errors
    }

    pub fn error_count(&self) -> usize {
        self.errors.borrow().len()
    }

    /// Replaces `${env:NAME}` and `${file:PATH}` in `text`. Returns the expanded string and
    /// the secret values it now contains (so they can be redacted from any output).
    /// `$${` stands for a literal `${`.
    pub fn interpolate(&self, text: &str, span: &Range<usize>) -> Option<Interpolated> {
        let mut out = String::with_capacity(text.len());
        let mut secrets = Vec::new();
        let mut ok = true;
        let pieces = self.pieces(text, span)?;
        if self.env.placeholders()
            && let [Piece::Ref(reference)] = pieces.as_slice()
            && let Some(Some(_)) = self.secret(reference, span)
        {
            return Some(Interpolated {
                value: PLACEHOLDER_URL.to_string(),
                secrets: vec![PLACEHOLDER_URL.to_string()],
            });
        }
        for piece in pieces {
            match piece {
                Piece::Text(literal) => out.push_str(&literal),
                Piece::Ref(reference) => match self.secret(&reference, span) {
                    Some(Some(value)) => {
                        out.push_str(&value);
                        secrets.push(value);
                    }
                    Some(None) => {
                        ok = false;
                        self.error_hint(
                            span,
                            format!("unknown reference ${{{reference}}}"),
                            "use ${env:NAME} or ${file:PATH}; flow variables like ${name} exist only in flow checks; write $${ for a literal ${",
                        );
                    }
                    None => ok = false,
                },
            }
        }
        secrets.retain(|secret| !secret.is_empty());
        ok.then_some(Interpolated {
            value: out,
            secrets,
        })
    }

    /// Splits `text` into literal text and `${...}` references (`$${` is a literal `${`).
    pub fn pieces(&self, text: &str, span: &Range<usize>) -> Option<Vec<Piece>> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(idx) = rest.find('$') {
            literal.push_str(&rest[..idx]);
            let tail = &rest[idx..];
            if let Some(after) = tail.strip_prefix("$${") {
                literal.push_str("${");
                rest = after;
                continue;
            }
            let Some(body) = tail.strip_prefix("${") else {
                literal.push('$');
                rest = &tail[1..];
                continue;
            };
            let Some(end) = body.find('}') else {
                self.error_hint(
                    span,
                    format!("unterminated reference in {text:?}"),
                    "close it with `}`, or write `$${` for a literal `${`",
                );
                return None;
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Ref(body[..end].to_string()));
            rest = &body[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Some(pieces)
    }

    /// Resolves a secret reference: `env:NAME` or `file:PATH`. `Some(None)` when `reference`
    /// is not a secret reference at all; `None` (with the problem reported) when it cannot be
    /// resolved.
    ///
    /// Under [`Env::placeholders`] every well-formed reference stands for [`PLACEHOLDER`]
    /// and nothing is read. A reference that cannot be resolved is reported once, at its
    /// first place ([`Unresolved`]).
    pub fn secret(&self, reference: &str, span: &Range<usize>) -> Option<Option<String>> {
        let secret =
            matches!(reference.split_once(':'), Some(("env" | "file", rest)) if !rest.is_empty());
        if secret && self.env.placeholders() {
            return Some(Some(PLACEHOLDER.to_string()));
        }
        let first = || self.unresolved.first(reference, self.location(span));
        match reference.split_once(':') {
            Some(("env", name)) if !name.is_empty() => match self.env.var(name) {
                Some(value) => Some(Some(value)),
                None => {
                    if first() {
                        self.error_hint(
                                span,
                                format!("environment variable {name} is not set (referenced as ${{env:{name}}})"),
                                format!("set {name} in the agent's environment, or use ${{file:PATH}}"),
                            );
                    }
                    None
                }
            },
            Some(("file", path)) if !path.is_empty() => {
                let error = match read_secret_file(Path::new(path)) {
                    Ok(value) => {
                        return Some(Some(value.trim_end_matches(['\n', '\r']).to_string()));
                    }
                    Err(error) => error,
                };
                if !first() {
                    return None;
                }
                let (message, hint) = match error {
                    SecretFileError::Io(error) => (
                        format!(
                            "cannot read secret file {path} (referenced as ${{file:{path}}}): {error}"
                        ),
                        "check the path and that the agent's user may read it",
                    ),
                    SecretFileError::NotRegular(what) => (
                        format!(
                            "secret file {path} (referenced as ${{file:{path}}}) is {what}, not a regular file"
                        ),
                        "point ${file:PATH} at a regular file holding the secret",
                    ),
                    SecretFileError::TooBig(size) => (
                        format!(
                            "secret file {path} (referenced as ${{file:{path}}}) is {size} bytes; secrets files may be at most 64 KiB"
                        ),
                        "a secret file holds one secret: a token, a password, a key",
                    ),
                };
                self.error_hint(span, message, hint);
                None
            }
            _ => Some(None),
        }
    }
}

/// The most a `${file:..}` secret file may hold.
pub(crate) const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Why a secret file could not be read.
pub(crate) enum SecretFileError {
    /// It is not a regular file: what it is instead ("a FIFO", "a directory", ...).
    NotRegular(&'static str),
    /// It holds more than [`MAX_SECRET_FILE`] bytes: how many (at least).
    TooBig(u64),
    /// Opening or reading failed.
    Io(std::io::Error),
}

/// Reads a secret file: a regular file of at most [`MAX_SECRET_FILE`] bytes, UTF-8.
///
/// A FIFO, a socket or a device (`/dev/zero`) is refused before it is opened, so nothing
/// blocks or reads without end; the opened handle is checked again (the path may have been
/// replaced in between), and the read itself is bounded whatever the file claims.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let bytes = read_regular_file(path, MAX_SECRET_FILE)?;
    String::from_utf8(bytes).map_err(|_| {
        SecretFileError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })
}

/// Reads a regular file of at most `max` bytes, as [`read_secret_file`] does (a FIFO, a
/// socket or a device refused, the read bounded whatever the file claims); any bytes.
pub(crate) fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, SecretFileError> {
    use std::io::Read;
    let regular = |metadata: &std::fs::Metadata| -> Result<(), SecretFileError> {
        let kind = metadata.file_type();
        if kind.is_file() {
            return Ok(());
        }
        Err(SecretFileError::NotRegular(file_kind(&kind)))
    };
    let metadata = std::fs::metadata(path).map_err(SecretFileError::Io)?;
    regular(&metadata)?;
    if metadata.len() > max {
        return Err(SecretFileError::TooBig(metadata.len()));
    }
    // Opened without blocking, so a FIFO swapped in after the check above cannot hang the
    // load; the handle is checked again below.
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path).map_err(SecretFileError::Io)?;
    let metadata = file.metadata().map_err(SecretFileError::Io)?;
    regular(&metadata)?;
    let mut bytes = Vec::with_capacity(metadata.len().min(max) as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(SecretFileError::Io)?;
    if bytes.len() as u64 > max {
        return Err(SecretFileError::TooBig(bytes.len() as u64));
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, for messages.
#[cfg(not(unix))]
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else {
        "something else"
    }
}

/// What a file that is not a regular file is, for messages.
#[cfg(unix)]
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// A piece of a string with references.
pub(crate) enum Piece {
    /// Literal text.
    Text(String),
    /// The inside of a `${...}`.
    Ref(String),
}

/// A string with its `${...}` references expanded.
pub(crate) struct Interpolated {
    pub value: String,
    pub secrets: Vec<String>,
}

/// A TOML table being read; remembers which keys were read.
pub(crate) struct Table<'a> {
    d: &'a Diags<'a>,
    table: &'a DeTable<'a>,
    span: Range<usize>,
    what: String,
    known: RefCell<Vec<&'static str>>,
    /// Set when every key is a name of the user's (like variable names): none is unknown.
    open: std::cell::Cell<bool>,
    /// The keys it may have (`keys`): the section it was made with, and those added since
    /// (a check's kind's, once its `type` is known).
    sections: RefCell<Vec<&'static Section>>,
}

pub(crate) type Value<'a> = Spanned<DeValue<'a>>;

impl<'a> Table<'a> {
    /// Reads `value` as a table, recording an error if it is something else.
    pub fn new(
        d: &'a Diags<'a>,
        value: &'a Value<'a>,
        what: impl Into<String>,
        section: &'static Section,
    ) -> Option<Table<'a>> {
        let what = what.into();
        match value.get_ref() {
            DeValue::Table(table) => Some(Table {
                d,
                table,
                span: value.span(),
                what,
                known: RefCell::new(Vec::new()),
                open: std::cell::Cell::new(false),
                sections: RefCell::new(vec![section]),
            }),
            other => {
                d.error(
                    &value.span(),
                    format!("{what} must be a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn from_root(
        d: &'a Diags<'a>,
        table: &'a DeTable<'a>,
        span: Range<usize>,
        section: &'static Section,
    ) -> Table<'a> {
        Table {
            d,
            table,
            span,
            what: "the file".to_string(),
            known: RefCell::new(Vec::new()),
            open: std::cell::Cell::new(false),
            sections: RefCell::new(vec![section]),
        }
    }

    /// Adds the keys of `section` to those the table may have (a check's kind's).
    pub fn with_keys(&self, section: &'static Section) {
        self.sections.borrow_mut().push(section);
    }

    /// The entry of `key` among the table's sections.
    fn entry(&self, key: &str) -> Option<(&'static Section, &'static crate::keys::Key)> {
        self.sections
            .borrow()
            .iter()
            .find_map(|section| section.find(key))
    }

    /// Marks `key` as known (asked for as `want`) and returns its value if present. Under
    /// test, also records the question for the schema's drift test (`keys`).
    fn ask(&self, key: &'static str, want: Want) -> Option<&'a Value<'a>> {
        #[cfg(test)]
        asked::record(self, key, want, self.entry(key));
        #[cfg(not(test))]
        let _ = want;
        self.known.borrow_mut().push(key);
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// The same table, named differently in messages.
    pub fn renamed(mut self, what: impl Into<String>) -> Table<'a> {
        self.what = what.into();
        self
    }

    pub fn diags(&self) -> &'a Diags<'a> {
        self.d
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// Marks `key` as known and returns its value if present.
    pub fn get(&self, key: &'static str) -> Option<&'a Value<'a>> {
        self.ask(key, Want::Any)
    }

    /// The span of a key (for errors about a key that is present).
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span())
    }

    fn type_error(&self, key: &str, value: &Value<'_>, expected: &str) {
        self.d.error(
            &value.span(),
            format!(
                "`{key}` in {} must be {expected}, found {}",
                self.what,
                type_name(value.get_ref())
            ),
        );
    }

    /// Reports a required key as missing, unless it is present (with a wrong type, already
    /// reported).
    pub fn missing(&self, key: &str, hint: &str) {
        if self.key_span(key).is_some() {
            return;
        }
        self.d.error_hint(
            &self.span,
            format!("{} is missing the required key `{key}`", self.what),
            hint.to_string(),
        );
    }

    pub fn str(&self, key: &'static str) -> Option<(&'a str, Range<usize>)> {
        let value = self.ask(key, Want::Str)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), value.span())),
            _ => {
                self.type_error(key, value, "a string");
                None
            }
        }
    }

    pub fn bool(&self, key: &'static str) -> Option<bool> {
        let value = self.ask(key, Want::Bool)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(key, value, "true or false");
                None
            }
        }
    }

    pub fn int(&self, key: &'static str) -> Option<(i64, Range<usize>)> {
        let value = self.ask(key, Want::Int)?;
        match as_int(value.get_ref()) {
            Some(n) => Some((n, value.span())),
            None => {
                self.type_error(key, value, "an integer");
                None
            }
        }
    }

    /// A duration with units, like `"30s"` or `"1h 30m"`; must be positive.
    pub fn duration(&self, key: &'static str) -> Option<(Duration, Range<usize>)> {
        let (text, span) = self.str(key)?;
        let parsed = parse_duration(text).filter(|d| !d.is_zero());
        match parsed {
            Some(duration) => Some((duration, span)),
            None => {
                self.d.error_hint(
                    &span,
                    format!("`{key}` in {}: {text:?} is not a positive duration", self.what),
                    "write a number with a unit, like \"500ms\", \"30s\", \"5m\", \"1h\" or \"21d\"",
                );
                None
            }
        }
    }

    /// A size like `"10MiB"`, `"512KiB"`, `"1MB"` or `"4096B"`.
    pub fn size(&self, key: &'static str) -> Option<u64> {
        let (text, span) = self.str(key)?;
        match parse_size(text) {
            Some(size) => Some(size),
            None => {
                self.d.error_hint(
                    &span,
                    format!("`{key}` in {}: {text:?} is not a size", self.what),
                    "write a number with a unit, like \"512KiB\", \"10MiB\" or \"1GB\"",
                );
                None
            }
        }
    }

    /// The required `name` of a `what` (`[a-z0-9_-]+`), reported when missing or invalid.
    pub fn name(&self, what: &str, hint: &str) -> Option<String> {
        match self.str("name") {
            Some((name, span)) => {
                if !valid_check_name(name) {
                    self.d.error_hint(
                        &span,
                        format!("{what} name {name:?} is not valid"),
                        "use lowercase letters, digits, `-` and `_`",
                    );
                }
                Some(name.to_string())
            }
            None => {
                self.missing("name", hint);
                None
            }
        }
    }

    /// A list of regexes; each invalid one is reported at its place.
    pub fn regex_list(&self, key: &'static str) -> Vec<regex::Regex> {
        let mut compiled = Vec::new();
        for (pattern, span) in self.str_list(key).unwrap_or_default() {
            match compile_regex(pattern) {
                Ok(regex) => compiled.push(regex),
                Err(message) => self
                    .d
                    .error(&span, format!("invalid regex in `{key}`: {message}")),
            }
        }
        compiled
    }

    /// A number of days (integer or float, not negative), like `min_days_left = 21`.
    pub fn days(&self, key: &'static str) -> Option<f64> {
        let value = self.ask(key, Want::Int)?;
        let days = match value.get_ref() {
            DeValue::Integer(_) => as_int(value.get_ref()).map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        };
        match days {
            Some(days) if days >= 0.0 && days.is_finite() => Some(days),
            _ => {
                self.d.error_hint(
                    &value.span(),
                    format!("`{key}` must be a number of days"),
                    format!("like {key} = 21"),
                );
                None
            }
        }
    }

    pub fn array(&self, key: &'static str) -> Option<Vec<&'a Value<'a>>> {
        let value = self.ask(key, Want::Array)?;
        match value.get_ref() {
            DeValue::Array(items) => Some(items.iter().collect()),
            _ => {
                self.type_error(key, value, "an array");
                None
            }
        }
    }

    pub fn str_list(&self, key: &'static str) -> Option<Vec<(&'a str, Range<usize>)>> {
        let items = self.array(key)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.as_ref(), item.span())),
                other => self.d.error(
                    &item.span(),
                    format!(
                        "`{key}` in {} must hold strings, found {}",
                        self.what,
                        type_name(other)
                    ),
                ),
            }
        }
        Some(out)
    }

    /// An inline table of string values, e.g. `labels = { team = "shop" }`.
    pub fn str_map(&self, key: &'static str) -> Option<Vec<MapEntry<'a>>> {
        let value = self.ask(key, Want::Table)?;
        let DeValue::Table(table) = value.get_ref() else {
            self.type_error(key, value, "a table of strings");
            return None;
        };
        let mut out = Vec::with_capacity(table.len());
        for (k, v) in table.iter() {
            match v.get_ref() {
                DeValue::String(s) => out.push(MapEntry {
                    key: k.get_ref().as_ref(),
                    key_span: k.span(),
                    value: s.as_ref(),
                    value_span: v.span(),
                }),
                other => self.d.error(
                    &v.span(),
                    format!(
                        "`{key}.{}` in {} must be a string, found {}",
                        k.get_ref(),
                        self.what,
                        type_name(other)
                    ),
                ),
            }
        }
        Some(out)
    }

    /// The table at `key`, read with the section its entry names.
    pub fn table(&self, key: &'static str, what: impl Into<String>) -> Option<Table<'a>> {
        let value = self.ask(key, Want::Table)?;
        let section = self.entry(key).and_then(|(_, entry)| entry.ty.section());
        Table::new(
            self.d,
            value,
            what,
            section.unwrap_or(&crate::keys::UNKNOWN),
        )
    }

    /// The section of the tables in the array at `key` (a kind's `steps`).
    pub fn items_section(&self, key: &str) -> &'static Section {
        self.entry(key)
            .and_then(|(_, entry)| entry.ty.section())
            .unwrap_or(&crate::keys::UNKNOWN)
    }

    /// Every entry as a table, for tables whose keys are the user's names (variables).
    pub fn subtables(&self, what: impl Fn(&str) -> String) -> Vec<(&'a str, Table<'a>)> {
        self.open.set(true);
        let section = self
            .sections
            .borrow()
            .iter()
            .find_map(|section| section.values)
            .unwrap_or(&crate::keys::UNKNOWN);
        self.table
            .iter()
            .filter_map(|(key, value)| {
                let name: &'a str = key.get_ref().as_ref();
                Table::new(self.d, value, what(name), section).map(|table| (name, table))
            })
            .collect()
    }

    /// The table's content as text without positions (keys in order, values with their
    /// types), wherever in the file its parts were written: moving a definition, or editing
    /// another one, leaves this unchanged. Feeds `config::revision`.
    pub fn written(&self) -> String {
        fn walk(value: &DeValue<'_>, out: &mut String) {
            use std::fmt::Write as _;
            match value {
                DeValue::String(text) => {
                    let _ = write!(out, "{text:?}");
                }
                DeValue::Integer(number) => {
                    let _ = write!(out, "i{}", number.as_str());
                }
                DeValue::Float(number) => {
                    let _ = write!(out, "f{}", number.as_str());
                }
                DeValue::Boolean(flag) => {
                    let _ = write!(out, "{flag}");
                }
                DeValue::Datetime(time) => {
                    let _ = write!(out, "d{time}");
                }
                DeValue::Array(items) => {
                    out.push('[');
                    for item in items {
                        walk(item.get_ref(), out);
                        out.push(',');
                    }
                    out.push(']');
                }
                DeValue::Table(table) => walk_table(table, out),
            }
        }
        fn walk_table(table: &DeTable<'_>, out: &mut String) {
            out.push('{');
            for (key, item) in table.iter() {
                out.push_str(&format!("{:?}=", key.get_ref()));
                walk(item.get_ref(), out);
                out.push(',');
            }
            out.push('}');
        }
        let mut out = String::new();
        walk_table(self.table, &mut out);
        out
    }

    /// Reports every key that no accessor asked for, with a "did you mean" hint.
    pub fn finish(self) {
        if self.open.get() {
            return;
        }
        let known = self.known.into_inner();
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if known.contains(&name) {
                continue;
            }
            let message = format!("unknown key `{name}` in {}", self.what);
            match closest(name, &known) {
                Some(best) => {
                    self.d
                        .error_hint(&key.span(), message, format!("did you mean `{best}`?"))
                }
                None => {
                    let mut keys: Vec<&str> = known.clone();
                    keys.sort_unstable();
                    keys.dedup();
                    self.d.error_hint(
                        &key.span(),
                        message,
                        format!("known keys: {}", keys.join(", ")),
                    )
                }
            }
        }
    }
}

/// One entry of an inline string table.
pub(crate) struct MapEntry<'a> {
    pub key: &'a str,
    pub key_span: Range<usize>,
    pub value: &'a str,
    pub value_span: Range<usize>,
}

/// Compiles a regex with a size limit, so a config cannot make the agent build a huge one.
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|error| {
            error
                .to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string()
        })
}

pub(crate) fn as_int(value: &DeValue<'_>) -> Option<i64> {
    match value {
        DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix()).ok(),
        _ => None,
    }
}

pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Parses `"30s"`, `"1h 30m"`, `"21d"`, `"250ms"`. A bare number is rejected: units are required.
///
/// ```
/// use std::time::Duration;
/// use nightjar::config::parse_duration;
///
/// assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("30"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() || text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    humantime::parse_duration(text).ok()
}

/// Parses `"10MiB"`, `"1MB"`, `"512KiB"`, `"4096B"` or a bare byte count.
///
/// ```
/// assert_eq!(nightjar::config::parse_size("10MiB"), Some(10 * 1024 * 1024));
/// assert_eq!(nightjar::config::parse_size("ten"), None);
/// ```
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * multiplier;
    (0.0..1e18).contains(&bytes).then_some(bytes as u64)
}

pub(crate) use crate::text::closest;

/// Labels map after validation of names: valid Prometheus label names, none of `reserved`
/// (names nightjar writes itself), none of `taken` (names set elsewhere on the same series,
/// with where they are set).
pub(crate) fn read_labels(
    table: &Table<'_>,
    key: &'static str,
    reserved: &[&str],
    taken: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some(entries) = table.str_map(key) else {
        return labels;
    };
    for entry in entries {
        let valid_name =
            entry.key.chars().enumerate().all(|(idx, c)| {
                c == '_' || c.is_ascii_alphabetic() || (idx > 0 && c.is_ascii_digit())
            }) && !entry.key.is_empty()
                && !entry.key.starts_with("__");
        if !valid_name {
            table.diags().error_hint(
                &entry.key_span,
                format!(
                    "label name `{}` is not a valid Prometheus label name",
                    entry.key
                ),
                "use letters, digits and underscores, not starting with a digit or `__`",
            );
            continue;
        }
        if reserved.contains(&entry.key) {
            table.diags().error_hint(
                &entry.key_span,
                format!(
                    "label name `{}` is reserved: nightjar writes it itself, and a series cannot carry a label twice",
                    entry.key
                ),
                format!("rename it, e.g. `service_{}`", entry.key),
            );
            continue;
        }
        if let Some(place) = taken.get(entry.key) {
            table.diags().error_hint(
                &entry.key_span,
                format!(
                    "label `{}` is also set in [agent] labels (at {place}), and a series cannot carry a label twice",
                    entry.key
                ),
                "keep it in one place: drop it here, or rename one of them",
            );
            continue;
        }
        if entry.value.contains("${") {
            table.diags().error_hint(
                &entry.value_span,
                "label values cannot reference secrets or variables",
                "labels end up on every series; use a literal value",
            );
            continue;
        }
        labels.insert(entry.key.to_string(), entry.value.to_string());
    }
    labels
}

/// `ip_protocol` and `ip_protocol_fallback`, shared by every check that connects.
pub(crate) fn read_ip_preference(table: &Table<'_>) -> Option<IpPreference> {
    let prefer = match table.str("ip_protocol") {
        Some(("ip4", _)) => IpFamily::V4,
        Some(("ip6", _)) | None => IpFamily::V6,
        Some((other, span)) => {
            table.diags().error_hint(
                &span,
                format!("unknown ip_protocol {other:?}"),
                "use \"ip4\" or \"ip6\"",
            );
            return None;
        }
    };
    let fallback = table.bool("ip_protocol_fallback").unwrap_or(true);
    Some(IpPreference { prefer, fallback })
}

/// Names defined in the configuration whose definitions are invalid. A reference to one is
/// no problem of its own: the definition's problem is reported where it is defined, and
/// reporting the reference too would bury the root cause under its consequences.
pub(crate) struct Failed {
    /// Checks with a valid, unique name whose definition has a problem.
    pub checks: BTreeSet<String>,
    /// SLOs whose definition has a problem (or names a failed check).
    pub slos: BTreeSet<String>,
}

/// Whether `name` is a valid check name: `[a-z0-9_-]+`, at most 128 characters.
pub(crate) fn valid_check_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// What a kind's config reader may use beyond its table.
pub(crate) struct SpecCx<'a> {
    /// Secret values the check uses, to be redacted from whatever it produces.
    pub secrets: &'a mut Vec<String>,
    /// Where `domain` checks find the RDAP bootstrap registry (`[agent] rdap_bootstrap`).
    pub rdap_bootstrap: &'a url::Url,
    /// RDAP base URLs by TLD (`[agent] rdap_servers`).
    pub rdap_servers: &'a BTreeMap<String, url::Url>,
    /// The check's timeout: every run ends by then.
    pub timeout: Duration,
}

/// Source of environment variables for `${env:NAME}`; a trait so tests never touch the
/// process environment.
pub trait Env {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;

    /// Whether secret references are only checked for syntax and stand for a placeholder,
    /// with no variable or file read ([`NoSecrets`]).
    fn placeholders(&self) -> bool {
        false
    }
}

/// For `nightjar validate --no-secrets`: every `${env:..}` and `${file:..}` reference stands
/// for a placeholder, so a repository of check definitions validates in CI without the
/// production secrets. Everything else is validated as usual.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl Env for NoSecrets {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }

    fn placeholders(&self) -> bool {
        true
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed map of variables, for tests.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub HashMap<String, String>);

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or directory) the problem is in.
    pub path: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column in characters.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, where that helps.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Parses a cron expression, accepting the usual 5-field crontab form (minute first) and the
/// 6/7-field form with seconds first.
pub(crate) fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let trimmed = expr.trim();
    let fields = trimmed.split_whitespace().count();
    let full = if fields == 5 && !trimmed.starts_with('@') {
        format!("0 {trimmed}")
    } else {
        trimmed.to_string()
    };
    if !(trimmed.starts_with('@') || (6..=7).contains(&fields) || fields == 5) {
        return Err(format!("expected 5 or 6 fields, found {fields}"));
    }
    // The cron crate's error repeats the expression (in the 6-field form nightjar made of it)
    // with a caret on lines of their own; the last line says what is wrong, and a problem is
    // one line.
    <cron::Schedule as std::str::FromStr>::from_str(&full).map_err(|error| {
        let text = error.to_string();
        text.lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or(&text)
            .trim()
            .to_string()
    })
}

/// The value of a header-like `entry` (`what`: "header", "metadata"), its secrets expanded
/// into `secrets` and the value then marked sensitive; `None` after reporting a bad one.
pub(crate) fn header_value(
    d: &Diags<'_>,
    entry: &MapEntry<'_>,
    what: &str,
    secrets: &mut Vec<String>,
) -> Option<HeaderValue> {
    let expanded = d.interpolate(entry.value, &entry.value_span)?;
    let value = match HeaderValue::from_str(&expanded.value) {
        Ok(mut value) => {
            if !expanded.secrets.is_empty() {
                value.set_sensitive(true);
            }
            Some(value)
        }
        Err(_) => {
            d.error(
                &entry.value_span,
                format!(
                    "the value of {what} {:?} is not a valid header value",
                    entry.key
                ),
            );
            None
        }
    };
    secrets.extend(expanded.secrets);
    value
}

/// A header name as written at `span` (a `headers` key, an extraction's `header`); a problem
/// there if it is not one.
pub(crate) fn header_name(d: &Diags<'_>, name: &str, span: &Range<usize>) -> Option<HeaderName> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).ok();
    if parsed.is_none() {
        d.error(span, format!("{name:?} is not a valid header name"));
    }
    parsed
}

/// What the readers asked for, recorded under test for the schema's drift test
/// (`config::schema`).
#[cfg(test)]
pub(crate) mod asked {
    use std::cell::RefCell;

    use super::Table;
    use crate::keys::{Key, Section, Want};

    /// One key a reader asked for.
    #[derive(Debug, Clone)]
    pub(crate) struct Asked {
        /// The table, as messages name it.
        pub what: String,
        /// The sections the table had.
        pub sections: Vec<&'static str>,
        pub key: &'static str,
        pub want: Want,
        /// The section whose entry it is, and whether the entry's type admits `want`.
        pub found: Option<(&'static str, bool)>,
    }

    thread_local! {
        static LOG: RefCell<Vec<Asked>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record(
        table: &Table<'_>,
        key: &'static str,
        want: Want,
        entry: Option<(&'static Section, &'static Key)>,
    ) {
        let asked = Asked {
            what: table.what.clone(),
            sections: table.sections.borrow().iter().map(|s| s.name).collect(),
            key,
            want,
            found: entry.map(|(section, entry)| (section.name, entry.ty.admits(want))),
        };
        LOG.with(|log| log.borrow_mut().push(asked));
    }

    /// What this thread's readers asked for since the last call.
    pub(crate) fn take() -> Vec<Asked> {
        LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_forms() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("0 */5 * * * *").is_ok());
        assert!(parse_cron("@hourly").is_ok());
        assert!(parse_cron("* * *").is_err());
        assert!(parse_cron("61 * * * *").is_err());
        let error = parse_cron("0 25 * * *").unwrap_err();
        assert!(!error.contains('\n') && error.contains("'25'"), "{error:?}");
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("21d"), Some(Duration::from_secs(21 * 86400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12 parsecs"), None);
    }

    #[test]
    fn did_you_mean() {
        assert_eq!(closest("urll", &["url", "method"]), Some("url"));
        assert_eq!(
            closest("intreval", &["interval", "timeout"]),
            Some("interval")
        );
        assert_eq!(closest("zzzzzz", &["url", "method"]), None);
    }

    #[test]
    fn line_and_column() {
        let src = Source::new("x.toml".into(), "a = 1\nbé = 2\n".into());
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        assert_eq!(src.line_col(11), (2, 5));
    }
}
