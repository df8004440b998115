//! Templates: a `[[check]]` with `targets = [...]` (or targets found by service discovery)
//! instead of one target. Each target becomes a check of its own (`NAME@INSTANCE`), sharing
//! the rest of the definition, exported under the template's `check` name with an `instance`
//! label, with its own offset, state, page row and shard placement.
//!
//! A template is validated once where it is written, with a placeholder target, so every
//! problem has its place. Each target is then read by the same check reader from the
//! template's table as TOML text with the target filled in, under the environment values the
//! template was validated with, so a target found later (discovery) builds exactly as one
//! written in the file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::CheckDef;
use super::module::{Recorded, Recording, owned, placeholder_of, problems_text, raw_kind};
use crate::checks::CheckKind;
use crate::reader::{Diags, Source, Table, Unresolved, Value};

/// The text standing for a target in a template's own strings.
pub const TARGET_REFERENCE: &str = "${target}";

/// The keys that make a `[[check]]` a template.
const TEMPLATE_KEYS: [&str; 2] = ["targets", "targets_from"];

/// The most targets one template may list in `targets`.
pub const MAX_TARGETS: usize = 100_000;

/// A `[[check]]` with many targets, validated.
#[derive(Debug)]
pub struct Template {
    /// The template's name: the `check` label of every target's series.
    pub name: Arc<str>,
    /// The kind of its checks.
    pub kind: CheckKind,
    /// `file:line:column` where it is defined.
    pub defined_at: String,
    /// The targets written in `targets`, in file order.
    pub targets: Vec<String>,
    /// Where more targets come from (`targets_from`).
    pub sources: Vec<crate::discovery::Source>,
    /// The secret values the sources use (HTTP SD credentials), redacted from what they
    /// report.
    pub source_secrets: Vec<String>,
    /// The definition as written, with what it takes from `[defaults]` and the environment
    /// (`config::revision`): equal across a reload when the template is unchanged.
    pub revision: u64,
    /// The template's check for a placeholder target, named as the template, with an empty
    /// `instance`: what its targets' checks share (kind, regions, schedule), for what is
    /// written per template rather than per target (`nightjar rules`).
    pub sample: Arc<CheckDef>,
    /// The table without `targets` and `targets_from`.
    table: toml::Table,
    /// Whether the table places the target itself with `${target}`.
    placed: bool,
    /// Whether its targets' checks differ in their target key only (`url`: no `${target}`
    /// anywhere else), so an http template's targets share one request ([`share_request`]).
    target_key_only: bool,
    /// The file it is defined in.
    path: PathBuf,
    /// The values of the environment variables it referred to when it was validated.
    vars: BTreeMap<String, String>,
    /// The check reader with the settings it reads beside the table.
    read: ReadCheck,
}

/// The check reader (`validate`'s) with the `[defaults]`, `[agent]` and agent labels it reads
/// beside a check's table; handed in so this module does not import `validate`, which reads
/// templates through it.
#[derive(Clone)]
pub(super) struct ReadCheck(pub Arc<ReadFn>);

/// Reads a check's table; the map holds the check names read so far and where.
type ReadFn = dyn Fn(Table<'_>, &mut HashMap<String, String>) -> Option<CheckDef> + Send + Sync;

impl std::fmt::Debug for ReadCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadCheck")
    }
}

impl Template {
    /// The check for `target`, with `labels` (a discovered group's) over the template's own.
    /// `Err` holds every problem the target makes, one a line, secrets redacted.
    pub fn expand(
        &self,
        target: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<CheckDef, String> {
        let instance = instance_of(target);
        let mut table = self.table.clone();
        // A target is data: a `${...}` in it is text, never a reference to read.
        let escaped = target.replace("${", "$${");
        if self.placed {
            fill(&mut table, &escaped);
        } else {
            let (key, value) = crate::blackbox::target_entry(self.kind, target);
            table.insert(
                key.to_string(),
                toml::Value::String(value.replace("${", "$${")),
            );
        }
        if !labels.is_empty() {
            let own = table
                .entry("labels")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(own) = own {
                for (key, value) in labels {
                    own.insert(key.clone(), toml::Value::String(value.clone()));
                }
            }
        }
        let text = toml::to_string(&table).map_err(|error| error.to_string())?;
        let env = Recorded(self.vars.clone());
        let unresolved = Unresolved::default();
        let source = Source::new(self.path.clone(), text);
        let doc = DeTable::parse(&source.text).map_err(|error| error.message().to_string())?;
        let d = Diags::new(&source, &env, &unresolved);
        let table = Table::from_root(&d, doc.get_ref(), doc.span(), &crate::keys::CHECK);
        let read = (self.read.0)(table, &mut HashMap::new());
        let mut errors = d.into_errors();
        unresolved.amend(&mut errors);
        match read {
            Some(mut def) if errors.is_empty() => {
                def.name = Arc::from(format!("{}@{instance}", self.name).as_str());
                def.instance = Some(Arc::from(instance.as_str()));
                def.defined_at = self.defined_at.clone();
                Ok(def)
            }
            _ => Err(problems_text(&errors, &self.vars)),
        }
    }
}

/// A template's checks for the targets it has now. Each target's check is remembered, so a
/// target found again with the same labels keeps its definition: its slot, state and
/// counters stay as they are.
#[derive(Debug, Default)]
pub struct Expansion {
    /// By target: its group's labels when its check was built, and the check.
    checks: HashMap<Arc<str>, (Labels, Arc<CheckDef>)>,
    /// One map of labels per distinct set, shared by the checks that carry it.
    labels: HashMap<Labels, Labels>,
}

/// A group's labels, shared by the group's targets and their checks.
type Labels = Arc<BTreeMap<String, String>>;

/// A target a template could not build a check for, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The target as discovered.
    pub target: String,
    /// Every problem it makes, one a line, secrets redacted.
    pub reason: String,
}

impl Expansion {
    /// The checks of `template` for `targets` (target and its group's labels), in order,
    /// those `keep` refuses (another shard's) left out. A target that builds no check, or
    /// whose `instance` an earlier target already has, is refused with the reason.
    pub fn update<'t>(
        &mut self,
        template: &Template,
        targets: impl IntoIterator<Item = (&'t Arc<str>, &'t Labels)>,
        keep: impl Fn(&str) -> bool,
    ) -> (Vec<Arc<CheckDef>>, Vec<Refused>) {
        // Sized as the last set up front: 50,000 targets are not rehashed as they come.
        let size = self.checks.len();
        let mut before = std::mem::replace(&mut self.checks, HashMap::with_capacity(size));
        let mut checks = Vec::with_capacity(before.len());
        let mut refused = Vec::new();
        let mut instances: HashSet<Arc<str>> = HashSet::with_capacity(before.len());
        let mut request = None;
        for (target, labels) in targets {
            let (key, kept) = match before.remove_entry(&**target) {
                Some((key, (built_with, def))) => (key, (built_with == *labels).then_some(def)),
                None => (target.clone(), None),
            };
            let def = match kept {
                Some(def) => def,
                None => match template.expand(target, labels) {
                    Ok(mut def) => {
                        if template.target_key_only {
                            share_request(&mut def, &mut request);
                        }
                        let shared = self
                            .labels
                            .entry(std::mem::take(&mut def.labels))
                            .or_insert_with_key(Arc::clone);
                        def.labels = shared.clone();
                        Arc::new(def)
                    }
                    Err(reason) => {
                        refused.push(Refused {
                            target: target.to_string(),
                            reason,
                        });
                        continue;
                    }
                },
            };
            if !instances.insert(def.instance.clone().unwrap_or_default()) {
                refused.push(Refused {
                    target: target.to_string(),
                    reason: "another target has the same instance (they differ only in credentials or query string)".to_string(),
                });
                continue;
            }
            if keep(&def.name) {
                checks.push(def.clone());
            }
            self.checks.insert(key, (labels.clone(), def));
        }
        // Only the label sets still in use stay: one held by no check but this map (as its
        // key and its value) goes. A pass over the few distinct sets, not the targets.
        drop(before);
        self.labels.retain(|set, _| Arc::strong_count(set) > 2);
        (checks, refused)
    }
}

/// Gives `def` (an http check's) the request `shared` holds, the first one's of this update:
/// a template whose targets differ in their URL only builds each target's request alike, so
/// 50,000 targets keep one (and an OAuth2 client's token is fetched once for all of them).
/// Targets built in a later update share that update's, read afresh (a secret file may have
/// changed since).
fn share_request(def: &mut CheckDef, shared: &mut Option<Arc<crate::checks::http::HttpOptions>>) {
    if let crate::checks::CheckSpec::Http(spec) = &mut def.spec {
        match shared {
            Some(options) => spec.options = options.clone(),
            None => *shared = Some(spec.options.clone()),
        }
    }
}

/// The `instance` label of a target: the target as written, without credentials, query
/// string or fragment when it is a URL.
pub fn instance_of(target: &str) -> String {
    match url::Url::parse(target) {
        Ok(url)
            if url.has_host()
                && (!url.username().is_empty()
                    || url.password().is_some()
                    || url.query().is_some()
                    || url.fragment().is_some()) =>
        {
            crate::checks::http::show_url(&url)
        }
        _ => target.to_string(),
    }
}

/// Whether `item` is a template: a table with `targets` or `targets_from`.
pub(super) fn is_template(item: &Value<'_>) -> bool {
    matches!(item.get_ref(), DeValue::Table(table)
        if table.iter().any(|(key, _)| TEMPLATE_KEYS.contains(&key.get_ref().as_ref())))
}

/// What reading one template gives: the template and its written targets' checks.
pub(super) struct Read {
    pub template: Template,
    pub checks: Vec<CheckDef>,
}

/// Where a template is read: its file's diagnostics and the environment.
pub(super) struct Place<'a> {
    pub d: &'a Diags<'a>,
    pub env: &'a dyn crate::reader::Env,
    pub unresolved: &'a Unresolved,
    pub n: usize,
}

/// The settings every check reads beside its table.
pub(super) struct Context {
    /// Reads a check's table.
    pub read: ReadCheck,
    /// What a check takes from outside its table (`[defaults]`), as text for the revision.
    pub inherited: String,
}

/// One templated `[[check]]`: validated with a placeholder target (every problem at its
/// place), then each of its `targets` built. `seen` holds the check names so far.
pub(super) fn read(
    place: &Place<'_>,
    item: &Value<'_>,
    cx: &Context,
    seen: &mut HashMap<String, String>,
) -> Option<Read> {
    let d = place.d;
    let DeValue::Table(written) = item.get_ref() else {
        return None;
    };
    let span = item.span();
    let errors_before = d.error_count();
    let outer = Table::new(
        d,
        item,
        format!("check #{}", place.n + 1),
        &crate::keys::CHECK,
    )?;
    let targets = read_targets(&outer);
    let mut source_secrets = Vec::new();
    let sources = match outer.get("targets_from") {
        Some(_) => {
            crate::discovery::config::read_sources(&outer, "targets_from", &mut source_secrets)
        }
        None => Some(Vec::new()),
    };
    let kind = raw_kind(written);
    let placed = written_strings(written, &[]).any(|text| text.contains(TARGET_REFERENCE));
    let target_key_only = kind.is_some_and(|kind| {
        let (key, _) = crate::blackbox::target_entry(kind, "");
        !written_strings(written, &[key]).any(|text| text.contains(TARGET_REFERENCE))
    });
    // The table as its checks read it, with a placeholder target, positions kept.
    let validated = kind.and_then(|kind| placeholder_table(&outer, written, kind, placed, &span));
    // The keys of the check are read below, on the placed table; here only the template's.
    let body = validated.map(|table| Spanned::new(span.clone(), DeValue::Table(table)));
    let recording = Recording::new(place.env);
    let rd = Diags::new(d.src, &recording, place.unresolved);
    let def = body.as_ref().and_then(|body| {
        let table = Table::new(
            &rd,
            body,
            format!("check #{}", place.n + 1),
            &crate::keys::CHECK,
        )?;
        (cx.read.0)(table, seen)
    });
    for error in rd.into_errors() {
        d.push_error(error);
    }
    let defined_at = d.location(&span);
    if d.error_count() > errors_before {
        return None;
    }
    let (def, kind, targets, sources) = (def?, kind?, targets?, sources?);
    let vars = recording.into_seen();
    let mut secrets: Vec<String> = vars.values().cloned().collect();
    secrets.extend(source_secrets.iter().cloned());
    let revision = super::revision(&outer.written(), &cx.inherited, &secrets);
    let mut table = toml::Table::new();
    for (key, value) in written.iter() {
        let key = key.get_ref().as_ref();
        if !TEMPLATE_KEYS.contains(&key) {
            table.insert(key.to_string(), owned(value.get_ref()));
        }
    }
    let mut sample = def;
    sample.instance = Some(Arc::from(""));
    let template = Template {
        name: sample.name.clone(),
        sample: Arc::new(sample),
        kind,
        defined_at,
        targets: targets.iter().map(|(target, _)| target.clone()).collect(),
        sources,
        source_secrets,
        table,
        placed,
        target_key_only,
        path: d.src.path.clone(),
        vars,
        revision,
        read: cx.read.clone(),
    };
    let checks = expand_written(d, &template, &targets);
    Some(Read { template, checks })
}

/// `targets`: strings, each once.
fn read_targets(table: &Table<'_>) -> Option<Vec<(String, Range<usize>)>> {
    let d = table.diags();
    let Some(list) = table.str_list("targets") else {
        if table.get("targets_from").is_some() {
            return Some(Vec::new());
        }
        return None;
    };
    if list.len() > MAX_TARGETS {
        d.error_hint(
            &table.key_span("targets").unwrap_or_else(|| table.span()),
            format!("{} targets in one check; at most {MAX_TARGETS}", list.len()),
            "split the template, or list the targets in a file_sd file under targets_from",
        );
        return None;
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (target, span) in list {
        let target = target.trim();
        if target.is_empty() {
            d.error_hint(&span, "empty target", "remove it, or write the target");
            continue;
        }
        if !seen.insert(instance_of(target)) {
            d.error_hint(
                &span,
                format!("target {target:?} is listed twice"),
                "list each target once (targets differing only in credentials or query string count as one)",
            );
            continue;
        }
        out.push((target.to_string(), span));
    }
    if out.is_empty() && table.get("targets_from").is_none() {
        d.error_hint(
            &table.key_span("targets").unwrap_or_else(|| table.span()),
            "`targets` is empty",
            "list at least one target, like targets = [\"https://a.example/\", \"https://b.example/\"]",
        );
        return None;
    }
    Some(out)
}

/// The written targets' checks; a target its checks cannot read is a problem at its place.
fn expand_written(
    d: &Diags<'_>,
    template: &Template,
    targets: &[(String, Range<usize>)],
) -> Vec<CheckDef> {
    let mut checks = Vec::with_capacity(targets.len());
    let mut request = None;
    for (target, span) in targets {
        match template.expand(target, &BTreeMap::new()) {
            Ok(mut def) => {
                if template.target_key_only {
                    share_request(&mut def, &mut request);
                }
                checks.push(def);
            }
            Err(problem) => d.error(
                span,
                format!(
                    "target {target:?} of check {:?}: {}",
                    template.name,
                    problem.replace('\n', "; ")
                ),
            ),
        }
    }
    checks
}

/// `written` with `targets` and `targets_from` left out and the target filled with a
/// placeholder: in each `${target}`, or as the kind's target key. `None` (a problem reported)
/// when the table writes the target key without `${target}`.
fn placeholder_table<'a>(
    table: &Table<'_>,
    written: &DeTable<'a>,
    kind: CheckKind,
    placed: bool,
    span: &Range<usize>,
) -> Option<DeTable<'a>> {
    let https = written.iter().any(|(key, value)| {
        key.get_ref().as_ref() == "transport"
            && matches!(value.get_ref(), DeValue::String(text) if text.as_ref() == "https")
    });
    let whole = placeholder_of(kind, https);
    let (key, _) = crate::blackbox::target_entry(kind, whole);
    let mut out = DeTable::new();
    for (k, value) in written.iter() {
        if TEMPLATE_KEYS.contains(&k.get_ref().as_ref()) {
            continue;
        }
        out.insert(k.clone(), placeholder_in(value, key, k.get_ref(), whole));
    }
    if placed {
        return Some(out);
    }
    if let Some((k, _)) = written.iter().find(|(k, _)| k.get_ref().as_ref() == key) {
        table.diags().error_hint(
            &k.span(),
            format!("`{key}` and `targets` both name the target"),
            format!(
                "remove `{key}` (each target fills it), or place each target in it with {TARGET_REFERENCE}, like {key} = \"{}\"",
                if key == "url" {
                    format!("https://{TARGET_REFERENCE}/health")
                } else {
                    format!("{TARGET_REFERENCE}:443")
                }
            ),
        );
        return None;
    }
    out.insert(
        Spanned::new(span.start..span.start, Cow::Borrowed(key)),
        Spanned::new(
            span.start..span.start,
            DeValue::String(Cow::Owned(whole.to_string())),
        ),
    );
    Some(out)
}

/// `value` with each `${target}` replaced by a placeholder: the kind's whole one for the
/// target key written as `${target}` alone, else a `HOST:PORT` that fits in URLs and
/// addresses.
fn placeholder_in<'a>(
    value: &Spanned<DeValue<'a>>,
    target_key: &str,
    key: &str,
    whole: &str,
) -> Spanned<DeValue<'a>> {
    let span = value.span();
    let replaced = match value.get_ref() {
        DeValue::String(text) if text.contains(TARGET_REFERENCE) => {
            let filler = if key == target_key && text.as_ref() == TARGET_REFERENCE {
                whole
            } else {
                "probe.invalid:1"
            };
            DeValue::String(Cow::Owned(text.replace(TARGET_REFERENCE, filler)))
        }
        DeValue::Array(items) => DeValue::Array(
            items
                .iter()
                .map(|item| placeholder_in(item, target_key, "", whole))
                .collect(),
        ),
        DeValue::Table(table) => {
            let mut out = DeTable::new();
            for (k, item) in table.iter() {
                out.insert(k.clone(), placeholder_in(item, target_key, "", whole));
            }
            DeValue::Table(out)
        }
        other => other.clone(),
    };
    Spanned::new(span, replaced)
}

/// Every string in `table`, at any depth.
fn written_strings<'t>(table: &'t DeTable<'_>, skip: &[&str]) -> impl Iterator<Item = &'t str> {
    fn walk<'t>(value: &'t DeValue<'_>, out: &mut Vec<&'t str>) {
        match value {
            DeValue::String(text) => out.push(text.as_ref()),
            DeValue::Array(items) => items.iter().for_each(|item| walk(item.get_ref(), out)),
            DeValue::Table(table) => table.iter().for_each(|(_, item)| walk(item.get_ref(), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let key = key.get_ref().as_ref();
        if !TEMPLATE_KEYS.contains(&key) && !skip.contains(&key) {
            walk(value.get_ref(), &mut out);
        }
    }
    out.into_iter()
}

/// Each `${target}` in the strings of `table` replaced by `target`.
fn fill(table: &mut toml::Table, target: &str) {
    fn walk(value: &mut toml::Value, target: &str) {
        match value {
            toml::Value::String(text) if text.contains(TARGET_REFERENCE) => {
                *text = text.replace(TARGET_REFERENCE, target);
            }
            toml::Value::Array(items) => items.iter_mut().for_each(|item| walk(item, target)),
            toml::Value::Table(table) => table.iter_mut().for_each(|(_, item)| walk(item, target)),
            _ => {}
        }
    }
    table.iter_mut().for_each(|(_, value)| walk(value, target));
}

#[cfg(test)]
mod tests {
    use super::instance_of;

    #[test]
    fn instances_drop_credentials_and_query_strings() {
        assert_eq!(instance_of("https://a.example/x"), "https://a.example/x");
        assert_eq!(
            instance_of("https://user:pw@a.example/x?token=1#f"),
            "https://a.example/x"
        );
        assert_eq!(instance_of("db.example:5432"), "db.example:5432");
        assert_eq!(instance_of("[2001:db8::1]:443"), "[2001:db8::1]:443");
    }
}
