//! ARCHITECTURE.md's invariants about the module graph, checked by reading the source as text
//! (as rust-analyzer's tidy tests do): every file under `src/` is scanned for `crate::...`
//! paths (in `use` items and inline), comments and `#[cfg(test)]` items left out, and each
//! file is mapped to its top-level module (`src/checks/dns/mod.rs` is `checks`). A failure names
//! the file, the line and the import.
//!
//! Checked: no cycle between top-level modules; the leaf modules import nothing from the
//! crate; `checks` and `config` stay below the agent's outputs, and `checks` below `config`;
//! only the configuration readers (`config/`, `reader.rs`, each kind's `config.rs`, `blackbox/`, `discovery/`) read files or
//! the environment for values; only `metrics` spells metric names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Modules that import nothing from the crate, so anything may import them without a loop.
/// `metrics::names` is a file of `metrics` that counts as a module of its own here: the names
/// other modules spell, without the registry.
const LEAVES: &[&str] = &[
    "detect",
    "hash",
    "keys",
    "kind",
    "maintenance",
    "metrics::names",
    "reload",
    "synthetic",
    "text",
    "tiers",
    "time",
];

/// What a module must not import: a check returns a value, and the configuration is read
/// before anything that reports on it exists.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "checks",
        &[
            "config",
            "metrics",
            "metrics::names",
            "status",
            "server",
            "page",
            "agent",
            "access",
            "cli",
        ],
    ),
    (
        "reader",
        &[
            "checks", "config", "metrics", "status", "server", "page", "agent", "access", "cli",
        ],
    ),
    (
        "config",
        &[
            "metrics", "status", "server", "page", "agent", "access", "cli",
        ],
    ),
    (
        "blackbox",
        &[
            "config", "metrics", "status", "server", "page", "agent", "access", "cli",
        ],
    ),
    // Discovery runs below the agent and is read by `config`: it reports through a hook.
    (
        "discovery",
        &[
            "config", "metrics", "status", "server", "page", "agent", "access", "cli",
        ],
    ),
];

/// Calls that read files or the environment; only `config/` makes them.
const READS: &[&str] = &[
    "env::var",
    "env::vars",
    "fs::read",
    "File::open",
    "OpenOptions",
];

/// Reads outside `config/` that are not values: (file, text on the same line).
const READS_ALLOWED: &[(&str, &str)] = &[
    // Whether to colour a terminal (https://no-color.org), not a configuration value.
    ("src/cli.rs", "\"NO_COLOR\""),
    // The state dir's own file (and syncing its directory): data the agent wrote, not a value.
    ("src/state.rs", "File::open(path)"),
    ("src/state.rs", "File::open(dir)"),
];

/// One source file, lexed.
struct File {
    /// `src/checks/dns.rs`.
    path: String,
    /// The module it belongs to: `checks`, or `metrics::names`; `None` for the crate root.
    module: Option<String>,
    /// How many `super::` lead from it to the crate root.
    depth: usize,
    /// The code with comments, string and character literals blanked and `#[cfg(test)]` items
    /// removed; newlines kept, so offsets give line numbers.
    code: String,
    /// The string literals outside `#[cfg(test)]` items: (line, contents).
    strings: Vec<(usize, String)>,
    /// The original text, for quoting lines.
    text: String,
}

/// An import of one module by another.
struct Import {
    from: String,
    to: String,
    path: String,
    line: usize,
    quote: String,
}

impl Import {
    fn describe(&self) -> String {
        format!(
            "{}:{}: {} imports {}: `{}`",
            self.path, self.line, self.from, self.to, self.quote
        )
    }
}

#[test]
fn module_graph_keeps_the_invariants() {
    let files = read_sources();
    assert!(
        files
            .iter()
            .any(|file| file.path == "src/checks/dns/mod.rs"),
        "the scan found the sources"
    );
    let imports: Vec<Import> = files.iter().flat_map(imports_of).collect();
    assert!(
        imports
            .iter()
            .any(|import| import.from == "config" && import.to == "checks"),
        "the scan finds `use crate::...` imports"
    );
    let mut problems = Vec::new();

    for import in &imports {
        if LEAVES.contains(&import.from.as_str()) {
            problems.push(format!(
                "{}: a leaf module imports nothing from the crate",
                import.describe()
            ));
        }
        for (module, forbidden) in FORBIDDEN {
            if import.from == *module && forbidden.contains(&import.to.as_str()) {
                problems.push(format!(
                    "{}: {module} must not import {}",
                    import.describe(),
                    import.to
                ));
            }
        }
    }
    problems.extend(cycles(&imports));

    for file in &files {
        if is_config_reader(&file.path) {
            continue;
        }
        for read in READS {
            for (at, _) in file.code.match_indices(read) {
                let line = line_of(&file.code, at);
                let quote = quote(&file.text, line);
                let allowed = READS_ALLOWED
                    .iter()
                    .any(|(path, text)| file.path == *path && quote.contains(text));
                if !allowed {
                    problems.push(format!(
                        "{}:{line}: `{quote}`: only the configuration readers (config/, reader.rs, checks/<kind>/config.rs, blackbox/, discovery/) read files or the environment for values",
                        file.path
                    ));
                }
            }
        }
        if file.path.starts_with("src/metrics/") {
            continue;
        }
        for (line, text) in &file.strings {
            if is_metric_name(text) {
                problems.push(format!(
                    "{}:{line}: `{}`: only metrics/ spells metric names (use metrics::names)",
                    file.path,
                    quote(&file.text, *line)
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md's invariants are broken:\n{}",
        problems.join("\n")
    );
}

/// The most lines a function may span (from `fn` to its closing brace) without a comment above
/// it that says why it is long (`Long because ...`).
const MAX_FUNCTION_LINES: usize = 100;

/// No function under `src/` (test items left out) is longer than [`MAX_FUNCTION_LINES`] unless
/// the comment above it gives the reason.
#[test]
fn functions_are_short_or_say_why_not() {
    let mut long = Vec::new();
    for file in read_sources() {
        for (line, name, lines) in functions(&file.code) {
            if lines <= MAX_FUNCTION_LINES {
                continue;
            }
            let above: Vec<&str> = file.text.lines().take(line - 1).collect();
            let reason = above
                .iter()
                .rev()
                .take_while(|text| {
                    let text = text.trim_start();
                    text.starts_with("//") || text.starts_with("#[")
                })
                .any(|text| text.contains("Long because"));
            if !reason {
                long.push(format!("{}:{line}: fn {name} is {lines} lines", file.path));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these into helpers named by what they do, or say why they are long (a `// Long because ...` comment above):\n{}",
        long.join("\n")
    );
    // The scan itself finds functions and measures them.
    let sample = "fn a() {\n    if x {\n        y();\n    }\n}\nfn b();\npub(crate) async fn c(x: u8) -> u8 {\n    x\n}\n";
    assert_eq!(
        functions(sample),
        vec![(1, "a".to_string(), 5), (7, "c".to_string(), 3)]
    );
}

/// Every function with a body in lexed `code`: its first line, name and length in lines.
fn functions(code: &str) -> Vec<(usize, String, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = code[at..].find("fn ") {
        let start = at + offset;
        at = start + 3;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let name: String = code[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !boundary || name.is_empty() {
            continue;
        }
        // The body: the first `{` before a `;` ends the signature.
        let Some(open) = code[at..].find(['{', ';']).map(|i| at + i) else {
            break;
        };
        if bytes[open] == b';' {
            continue;
        }
        let mut depth = 0usize;
        let mut close = open;
        for (i, byte) in bytes.iter().enumerate().skip(open) {
            match byte {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let first = line_of(code, start);
        found.push((first, name, line_of(code, close) - first + 1));
    }
    found
}

/// The scanner itself: comments, strings and test modules do not count as imports.
#[test]
fn the_scanner_reads_imports_as_written() {
    let file = lex(
        "src/checks/x.rs",
        r##"
//! Mentions crate::status in a comment.
use crate::{net::{self, Resolver}, result::Status};
use super::http::fetch;
/* crate::server in a block comment /* nested crate::page */ */
fn f() {
    let _ = "crate::agent in a string";
    let _ = r#"crate::cli in a raw string "quoted" "#;
    let _ = '"';
    let _ = crate::tlsinfo::verifier(x);
    let _ = crate::metrics::names::label::CHECK;
    let _: &'static str = "nightjar_check_runs_total";
}
#[cfg(test)]
#[allow(unused)]
mod tests {
    use crate::metrics::Metrics;
    const S: &str = "probe_success";
}
"##,
    );
    let found: BTreeSet<(String, usize)> = imports_of(&file)
        .map(|import| (import.to, import.line))
        .collect();
    let expected: BTreeSet<(String, usize)> = [
        ("net", 3),
        ("result", 3),
        ("tlsinfo", 10),
        ("metrics::names", 11),
    ]
    .into_iter()
    .map(|(to, line)| (to.to_string(), line))
    .collect();
    assert_eq!(found, expected);
    let metric_names: Vec<&(usize, String)> = file
        .strings
        .iter()
        .filter(|(_, text)| is_metric_name(text))
        .collect();
    assert_eq!(
        metric_names,
        [&(12, "nightjar_check_runs_total".to_string())]
    );

    // A top-level file's `super::` is the crate.
    let top = lex("src/traffic.rs", "use super::checks::CheckCtx;\n");
    let found: Vec<String> = imports_of(&top).map(|import| import.to).collect();
    assert_eq!(found, ["checks"]);
    let lib = lex("src/lib.rs", "pub use crate::checks::CheckKind;\n");
    assert_eq!(imports_of(&lib).count(), 0);

    // A cycle is reported with the imports that close it.
    let cycle = lex("src/status.rs", "use crate::checks::X;\n");
    let back = lex("src/checks/mod.rs", "use crate::status::Y;\n");
    let imports: Vec<Import> = [&cycle, &back].into_iter().flat_map(imports_of).collect();
    let report = cycles(&imports).join("\n");
    assert!(
        report.contains("src/status.rs:1: status imports checks"),
        "{report}"
    );
    assert!(
        report.contains("src/checks/mod.rs:1: checks imports status"),
        "{report}"
    );
}

fn read_sources() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    collect(&root.join("src"), &mut paths);
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let relative = path
                .strip_prefix(root)
                .expect("under the crate")
                .to_string_lossy()
                .replace('\\', "/");
            lex(&relative, &text)
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Whether `path` is one of the configuration's readers: `config/`, the TOML reader they share,
/// each kind's `checks/<kind>/config.rs`, `blackbox/` (blackbox_exporter's files), and
/// `discovery/` (file_sd files, read and watched at run time: they are target lists the
/// configuration names, not the agent's own data).
fn is_config_reader(path: &str) -> bool {
    path.starts_with("src/config/")
        || path.starts_with("src/blackbox/")
        || path.starts_with("src/discovery/")
        || path == "src/reader.rs"
        || (path.starts_with("src/checks/") && path.ends_with("/config.rs"))
}

/// The module of a file and its distance from the crate root.
fn module_of(path: &str) -> (Option<String>, usize) {
    let parts: Vec<&str> = path
        .trim_start_matches("src/")
        .trim_end_matches(".rs")
        .split('/')
        .collect();
    match parts.as_slice() {
        ["lib"] | ["main"] => (None, 0),
        [top] => (Some(top.to_string()), 1),
        [top, "mod"] => (Some(top.to_string()), 1),
        ["metrics", "names"] => (Some("metrics::names".to_string()), 2),
        [top, rest @ ..] => (
            Some(top.to_string()),
            rest.len() + usize::from(rest.last() != Some(&"mod")),
        ),
        [] => (None, 0),
    }
}

/// Lexes `text`: blanks comments and literals, records string literals, drops test items.
fn lex(path: &str, text: &str) -> File {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut strings = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Pushes `c` as code, or as a blank if it is inside a comment or literal.
    let blank = |code: &mut String, c: char| code.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut code, chars[i]);
                i += 1;
            }
            continue;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    blank(&mut code, ' ');
                    blank(&mut code, ' ');
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    blank(&mut code, ' ');
                    blank(&mut code, ' ');
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    blank(&mut code, chars[i]);
                    i += 1;
                }
            }
            continue;
        } else if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start.min(chars.len())..]
                .iter()
                .take_while(|&&h| h == '#')
                .count();
            chars.get(start + hashes) == Some(&'"')
        } {
            // A raw string: r"..", r#".."#, br"..".
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            let open_line = line;
            for &ch in &chars[i..start + hashes + 1] {
                blank(&mut code, ch);
            }
            i = start + hashes + 1;
            let mut contents = String::new();
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                    && chars.len() > i + hashes
                {
                    for _ in 0..=hashes {
                        blank(&mut code, ' ');
                    }
                    i += hashes + 1;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                contents.push(chars[i]);
                blank(&mut code, chars[i]);
                i += 1;
            }
            strings.push((open_line, contents));
            continue;
        } else if c == '"' {
            let open_line = line;
            blank(&mut code, c);
            i += 1;
            let mut contents = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    contents.push(chars[i]);
                    blank(&mut code, chars[i]);
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    if ch == '\n' {
                        line += 1;
                    }
                    contents.push(ch);
                    blank(&mut code, ch);
                    i += 1;
                }
            }
            blank(&mut code, '"');
            i += 1;
            strings.push((open_line, contents));
            continue;
        } else if c == '\'' && (!prev_ident || byte_prefix(&chars, i)) {
            // A character literal ('a', '\n', '\'', b'"'), or a lifetime ('a), which stays
            // code.
            let end = if next == Some('\\') {
                chars[(i + 3).min(chars.len())..]
                    .iter()
                    .position(|&ch| ch == '\'')
                    .map(|at| i + 3 + at)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                for &ch in &chars[i..=end] {
                    blank(&mut code, ch);
                }
                i = end + 1;
                continue;
            }
            code.push(c);
        } else {
            if c == '\n' {
                line += 1;
            }
            code.push(c);
        }
        i += 1;
    }
    let code = drop_test_items(&code);
    // Strings inside test items were blanked with them: keep those whose line still has code
    // around it, i.e. that are not inside a removed range.
    let removed = removed_lines(&code, text);
    strings.retain(|(line, _)| !removed.contains(line));
    let (module, depth) = module_of(path);
    File {
        path: path.to_string(),
        module,
        depth,
        code,
        strings,
        text: text.to_string(),
    }
}

/// Lines that `drop_test_items` emptied (marked with `\u{1}` at their start).
fn removed_lines(code: &str, _text: &str) -> BTreeSet<usize> {
    code.split('\n')
        .enumerate()
        .filter(|(_, line)| line.contains('\u{1}'))
        .map(|(index, _)| index + 1)
        .collect()
}

/// Removes every item under `#[cfg(test)]` (a test module, a test-only `use` or function):
/// its lines become a `\u{1}` marker.
fn drop_test_items(code: &str) -> String {
    let bytes = code.as_bytes();
    let mut out = code.to_string().into_bytes();
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let start = from + found;
        // The item ends at its first `;` outside braces, or at the brace closing its body.
        let mut depth = 0usize;
        let mut end = bytes.len();
        for (at, &byte) in bytes.iter().enumerate().skip(start + "#[cfg(test)]".len()) {
            match byte {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = at + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = at + 1;
                    break;
                }
                _ => {}
            }
        }
        let mut line_start = true;
        for byte in &mut out[start..end] {
            if *byte == b'\n' {
                line_start = true;
            } else if line_start {
                *byte = 1;
                line_start = false;
            } else {
                *byte = b' ';
            }
        }
        if start == 0 || bytes[start - 1] == b'\n' {
            out[start] = 1;
        }
        from = end;
    }
    String::from_utf8(out).expect("ASCII replaced by ASCII")
}

/// Every module `file` imports: `crate::x` (alone, in a `use` group, or inline) and, from a
/// file `depth` modules down, `super::` that many times.
fn imports_of(file: &File) -> impl Iterator<Item = Import> + '_ {
    let mut found = Vec::new();
    if let Some(from) = &file.module {
        let code = &file.code;
        let mut roots: Vec<(usize, usize)> = code
            .match_indices("crate::")
            .filter(|(at, _)| {
                *at == 0 || !is_ident(code.as_bytes()[at - 1]) && code.as_bytes()[at - 1] != b'$'
            })
            .map(|(at, text)| (at, at + text.len()))
            .collect();
        let supers = "super::".repeat(file.depth);
        roots.extend(
            code.match_indices(&supers)
                .filter(|(at, _)| {
                    (*at == 0
                        || !is_ident(code.as_bytes()[at - 1]) && code.as_bytes()[at - 1] != b':')
                        && !code[at + supers.len()..].starts_with("super::")
                })
                .map(|(at, text)| (at, at + text.len())),
        );
        for (at, rest) in roots {
            let line = line_of(code, at);
            for target in targets(&code[rest..]) {
                if target != *from && !target.starts_with(&format!("{from}::")) {
                    found.push(Import {
                        from: from.clone(),
                        to: target,
                        path: file.path.clone(),
                        line,
                        quote: quote(&file.text, line),
                    });
                }
            }
        }
    }
    found.into_iter()
}

/// The modules named at the start of `rest`, the text after `crate::`.
fn targets(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        // `{a::b, c, d::{e, f}}`: the first segment of each top-level item.
        let mut depth = 0;
        let mut items = vec![String::new()];
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(String::new());
                    continue;
                }
                _ => {}
            }
            items.last_mut().expect("one item at least").push(c);
        }
        items
            .iter()
            .filter_map(|item| target(item.trim()))
            .collect()
    } else {
        target(rest).into_iter().collect()
    }
}

/// The module `path` (`metrics::names::label`, `checks::CheckKind`) starts with.
fn target(path: &str) -> Option<String> {
    let mut segments = path.split("::").map(|segment| {
        segment
            .trim()
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("")
    });
    let first = segments.next()?;
    if first.is_empty() || first == "self" || !first.starts_with(|c: char| c.is_ascii_lowercase()) {
        return None;
    }
    if first == "metrics" && segments.next() == Some("names") {
        return Some("metrics::names".to_string());
    }
    Some(first.to_string())
}

/// Every cycle between modules (Tarjan's strongly connected components), with the imports
/// that close it.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in imports {
        graph.entry(&import.from).or_default().insert(&import.to);
        graph.entry(&import.to).or_default();
    }
    struct Tarjan<'a> {
        graph: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a str) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            for &next in &self.graph[node] {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    component.push(top);
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    self.components.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        components: Vec::new(),
    };
    for &node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan
        .components
        .iter()
        .map(|component| {
            let mut report = format!(
                "a cycle between {}; an import of each arrow in it:",
                component.join(", ")
            );
            // The first import of each pair of modules: one line per arrow of the cycle.
            let mut seen = BTreeSet::new();
            for import in imports {
                if component.contains(&import.from.as_str())
                    && component.contains(&import.to.as_str())
                    && seen.insert((&import.from, &import.to))
                {
                    let _ = write!(report, "\n    {}", import.describe());
                }
            }
            report
        })
        .collect()
}

fn is_metric_name(text: &str) -> bool {
    ["nightjar_", "probe_"].iter().any(|prefix| {
        text.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
    })
}

/// Whether the quote at `at` follows a `b` prefix (`b'x'`), not an identifier.
fn byte_prefix(chars: &[char], at: usize) -> bool {
    at >= 1
        && chars[at - 1] == 'b'
        && (at < 2 || !(chars[at - 2].is_alphanumeric() || chars[at - 2] == '_'))
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn line_of(code: &str, at: usize) -> usize {
    code[..at].matches('\n').count() + 1
}

fn quote(text: &str, line: usize) -> String {
    text.lines().nth(line - 1).unwrap_or("").trim().to_string()
}
