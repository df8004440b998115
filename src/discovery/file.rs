//! file_sd: files of target groups, watched.
//!
//! Each pattern's directory is watched with inotify (through `notify`, non-recursively): an
//! edit, a new or removed file and a Kubernetes ConfigMap update (kubelet writes a new
//! timestamped directory and renames a `..data` symlink over the old one; the files are
//! symlinks through it) each change the directory or a file in it. Events are debounced
//! ([`DEBOUNCE`]), then the matching files are listed and each is stat'ed (following
//! symlinks): only files whose identity (device, inode, size, modification time) changed are
//! read again. Every `refresh` every file is read again whatever its identity, and where a
//! directory cannot be watched (it does not exist yet, the inotify limit is reached) the
//! identities are compared every [`POLL`] instead.
//!
//! A file that cannot be read or parsed keeps its last good targets (as Prometheus does),
//! and the failure is reported; a file that no longer exists (or no longer matches) takes
//! its targets with it. Reading and parsing run on the blocking pool, so a file of 50,000
//! targets never holds up a probe.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{FileSource, Read, Target, Updates, groups};

/// How long after a change event the files are read: kubelet's swap and an editor's save
/// are several events each.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often a directory that cannot be watched is looked at.
const POLL: Duration = Duration::from_secs(1);
/// The largest file_sd file read (about 1,000,000 short targets).
pub(crate) const MAX_FILE: u64 = 64 * 1024 * 1024;

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

/// One matched file: its identity when last read, and its last good targets.
#[derive(Debug, Clone)]
struct Known {
    identity: Option<Identity>,
    targets: Arc<Vec<Target>>,
    error: Option<String>,
}

/// Every file a source matched, by path.
#[derive(Debug, Default, Clone)]
struct State {
    files: BTreeMap<PathBuf, Known>,
}

/// The files `patterns` match now (sorted), with their identities; a pattern without a
/// wildcard that names no file is reported.
fn matched(patterns: &[PathBuf]) -> (BTreeMap<PathBuf, Option<Identity>>, Vec<String>) {
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for pattern in patterns {
        let Some(name) = pattern.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if !name.contains(['*', '?']) {
            match identity(pattern) {
                Some(id) => {
                    found.insert(pattern.clone(), Some(id));
                }
                None => missing.push(format!("{} does not exist", pattern.display())),
            }
            continue;
        }
        let dir = pattern.parent().unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            // Kubelet's own entries (`..data`, `..2026_11_30_...`) are never targets.
            if file.starts_with("..") || !glob_matches(name.as_bytes(), file.as_bytes()) {
                continue;
            }
            let path = entry.path();
            if let Some(id) = identity(&path) {
                found.insert(path, Some(id));
            }
        }
    }
    (found, missing)
}

/// The identity of the regular file `path` names (symlinks followed); `None` for anything
/// else or nothing.
fn identity(path: &Path) -> Option<Identity> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt as _;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Some(Identity {
        dev,
        ino,
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Shell-style matching of `*` and `?` (iterative, linear in practice: a `*` backtracks to
/// its last position only).
pub(crate) fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Reads and parses one file by its extension.
fn parse_file(path: &Path) -> Result<Vec<Target>, String> {
    let bytes = crate::reader::read_regular_file(path, MAX_FILE).map_err(|error| match error {
        crate::reader::SecretFileError::Io(error) => format!("cannot read it: {error}"),
        crate::reader::SecretFileError::NotRegular(what) => format!("it is {what}"),
        crate::reader::SecretFileError::TooBig(size) => {
            format!("it is {size} bytes; a file_sd file may be at most 64 MiB")
        }
    })?;
    let extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("json") => groups::parse_json(&bytes),
        _ => {
            let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
            groups::parse_yaml(path, &text)
        }
    }
}

/// Brings `state` up to date with the files matched now: vanished files go, new ones and
/// those whose identity changed (all of them with `full`) are read; a file that fails keeps
/// its last good targets. Blocking: runs on the blocking pool.
fn refresh(state: &mut State, patterns: &[PathBuf], full: bool) -> Read {
    let (now, missing) = matched(patterns);
    state.files.retain(|path, _| now.contains_key(path));
    for (path, id) in now {
        let known = state.files.get(&path);
        if !full && known.is_some_and(|known| known.identity == id && id.is_some()) {
            continue;
        }
        match parse_file(&path) {
            Ok(targets) => {
                state.files.insert(
                    path,
                    Known {
                        identity: id,
                        targets: Arc::new(targets),
                        error: None,
                    },
                );
            }
            Err(error) => {
                let kept = known.map(|known| known.targets.clone()).unwrap_or_default();
                let error = crate::text::sanitize(
                    &format!("{}: {error}", path.display()),
                    crate::text::MAX_DETAIL,
                )
                .into_owned();
                state.files.insert(
                    path,
                    Known {
                        identity: id,
                        targets: kept,
                        error: Some(error),
                    },
                );
            }
        }
    }
    let mut errors: Vec<String> = missing;
    errors.extend(state.files.values().filter_map(|known| known.error.clone()));
    let targets = match state.files.values().collect::<Vec<_>>().as_slice() {
        [] => Arc::default(),
        // The common case, one file: its targets as they are.
        [one] => one.targets.clone(),
        several => Arc::new(
            several
                .iter()
                .flat_map(|known| known.targets.iter().cloned())
                .collect(),
        ),
    };
    Read {
        targets,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// Reads every file of `source` once.
pub(crate) async fn read_once(source: &FileSource) -> Read {
    let patterns = source.patterns.clone();
    tokio::task::spawn_blocking(move || refresh(&mut State::default(), &patterns, true))
        .await
        .unwrap_or_else(|_| Read {
            targets: Arc::default(),
            error: Some("reading the files failed".to_string()),
        })
}

/// The directories `patterns` live in, each once.
fn directories(patterns: &[PathBuf]) -> BTreeSet<PathBuf> {
    patterns
        .iter()
        .map(|pattern| pattern.parent().unwrap_or(Path::new(".")).to_path_buf())
        .collect()
}

/// A watcher on every directory that could be watched, and whether one could not (then the
/// files are polled).
fn start_watch(
    patterns: &[PathBuf],
    events: mpsc::Sender<()>,
) -> (Option<notify::RecommendedWatcher>, bool) {
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access()) {
            // Full means a wake-up is already queued.
            let _ = events.try_send(());
        }
    };
    let Ok(mut watcher) = notify::recommended_watcher(handler) else {
        return (None, true);
    };
    let mut all = true;
    for dir in directories(patterns) {
        if watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .is_err()
        {
            all = false;
        }
    }
    (Some(watcher), !all)
}

/// Watches `source`'s files until [`super::run`] is gone, publishing every refresh.
pub(crate) async fn watch(source: FileSource, mut updates: Updates) {
    let (events_tx, mut events) = mpsc::channel::<()>(1);
    // The watcher lives as long as this task; dropping it stops its thread.
    let (mut _watcher, mut polling) = start_watch(&source.patterns, events_tx.clone());
    let mut state = State::default();
    let mut full = true;
    let mut next_full = Instant::now() + source.refresh;
    let mut last_seen;
    loop {
        let patterns = source.patterns.clone();
        let mut taken = std::mem::take(&mut state);
        let done = tokio::task::spawn_blocking(move || {
            let read = refresh(&mut taken, &patterns, full);
            let seen = matched(&patterns).0;
            (taken, read, seen)
        })
        .await;
        let Ok((kept, read, seen)) = done else {
            return;
        };
        state = kept;
        last_seen = seen;
        if !updates.publish(read).await {
            return;
        }
        full = false;
        // Wait for a change, the full re-read, or (without a watch) the next poll.
        loop {
            let poll = tokio::time::sleep(POLL);
            tokio::select! {
                _ = tokio::time::sleep_until(next_full) => {
                    full = true;
                    next_full = Instant::now() + source.refresh;
                    if polling {
                        // A directory that did not exist may exist now.
                        (_watcher, polling) = start_watch(&source.patterns, events_tx.clone());
                    }
                    break;
                }
                Some(()) = events.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                    break;
                }
                _ = poll, if polling => {
                    let patterns = source.patterns.clone();
                    let now = tokio::task::spawn_blocking(move || matched(&patterns).0).await;
                    if now.as_ref().ok() != Some(&last_seen) {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names() {
        assert!(glob_matches(b"tg_*.json", b"tg_web.json"));
        assert!(glob_matches(b"*.json", b".json"));
        assert!(glob_matches(b"tg_?.yml", b"tg_1.yml"));
        assert!(glob_matches(b"*a*b*c", b"xxaxxbxxc"));
        assert!(!glob_matches(b"tg_*.json", b"tg_web.yml"));
        assert!(!glob_matches(b"*a*b*c", b"xxaxxbxx"));
        assert!(!glob_matches(b"a", b"ab"));
        let long = vec![b'a'; 10_000];
        assert!(!glob_matches(b"*a*a*a*b", &long));
    }
}
