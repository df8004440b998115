//! What survives a restart: each check's state and since-when, its recent history and last
//! result, the ad hoc maintenance windows, and the RDAP answer cache, kept in one file,
//! `state.json`, in `[agent] state_dir`.
//!
//! The file is written whole, to a temporary file that is synced and then renamed over the
//! old one, so a crash leaves either the old state or the new one, never half of each. It is
//! written at most every [`SAVE_EVERY`] (sooner, within a second, after an ad hoc window is
//! opened or ended) and at shutdown, and its size is bounded: a check's last result goes in
//! only if it serialises to at most [`MAX_LAST_BYTES`]. A file that cannot be read, does not
//! parse, or is not nightjar's for this region is a warning and a fresh start, never a failure
//! to start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::checks::domain::CachedAnswer;
use crate::detect::Tracker;
use crate::maintenance::{AdHoc, Maintenance};
use crate::result::CheckResult;

/// The file's name in the state dir.
pub const FILE: &str = "state.json";

/// What the file says it is.
const FORMAT: &str = "nightjar-state";

/// The version of the file's layout; another version is a fresh start.
const VERSION: u32 = 1;

/// How often the state is written while it changes.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);

/// The largest last result a check keeps in the file, serialised; a larger one (a long flow
/// with big DNS answers) is left out and the page shows the history without it.
pub const MAX_LAST_BYTES: usize = 16 * 1024;

/// The largest state file read at start.
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// One check as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedCheck {
    /// Its decided state, pending change and failures in a row.
    pub tracker: Tracker,
    /// When it entered its state, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Recent results, oldest first: success and duration in microseconds.
    #[serde(default)]
    pub history: Vec<(bool, u32)>,
    /// Its last result, serialised once when the state is gathered (`last_result` makes it,
    /// `CheckResult` reads it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Box<serde_json::value::RawValue>>,
}

/// The whole file. Every field has a default, so a file of another format reads as one and
/// is refused by its `format`, not as a parse error.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    format: String,
    version: u32,
    /// The region the agent ran in: another region's file holds other checks' history.
    region: String,
    /// When it was written, Unix seconds.
    saved_at: i64,
    /// The checks, by name.
    pub checks: BTreeMap<String, SavedCheck>,
    /// Ad hoc maintenance windows.
    #[serde(default)]
    pub maintenance: Vec<AdHoc>,
    /// The RDAP answer cache (`RdapState::answers_snapshot`, `RdapState::restore_answers`).
    #[serde(default)]
    pub rdap: Vec<CachedAnswer>,
}

impl Saved {
    /// A state to write, for `region`, at `saved_at` (Unix seconds).
    pub fn new(region: &str, saved_at: i64) -> Saved {
        Saved {
            format: FORMAT.to_string(),
            version: VERSION,
            region: region.to_string(),
            saved_at,
            ..Saved::default()
        }
    }
}

/// Reads the state in `dir` for an agent in `region`. A missing file is a fresh start; any
/// other problem is logged as a warning and is a fresh start too.
pub fn load(dir: &Path, region: &str) -> Option<Saved> {
    let path = dir.join(FILE);
    match read(&path, region) {
        Ok(saved) => saved,
        Err(problem) => {
            tracing::warn!(
                message = "The state file is not usable; starting without the saved state.",
                path = %path.display(),
                problem = %problem,
            );
            None
        }
    }
}

fn read(path: &Path, region: &str) -> Result<Option<Saved>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot open it: {error}")),
    };
    let metadata = file.metadata().map_err(|error| error.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".to_string());
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "it is {} bytes, more than the {MAX_FILE_BYTES} a state file can be",
            metadata.len()
        ));
    }
    let saved: Saved = serde_json::from_reader(std::io::BufReader::new(file))
        .map_err(|error| format!("it does not parse as nightjar's state: {error}"))?;
    if saved.format != FORMAT || saved.version != VERSION {
        return Err(format!(
            "it is {:?} version {}, not {FORMAT:?} version {VERSION}",
            saved.format, saved.version
        ));
    }
    if saved.region != region {
        return Err(format!(
            "it was written by an agent in region {:?}, not {region:?}",
            saved.region
        ));
    }
    Ok(Some(saved))
}

/// Writes `saved` into `dir` atomically: a synced temporary file renamed over the old one.
pub fn write(dir: &Path, saved: &Saved) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FILE);
    let temporary = dir.join(format!("{FILE}.tmp"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
    serde_json::to_writer(&mut file, saved).map_err(std::io::Error::other)?;
    let file = file.into_inner().map_err(|error| error.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    // The rename itself is durable once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// A last result as the file keeps it: serialised once, or `None` when that takes more than
/// [`MAX_LAST_BYTES`] (serialising stops there).
pub fn last_result(last: &CheckResult) -> Option<Box<serde_json::value::RawValue>> {
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() + buf.len() > MAX_LAST_BYTES {
                return Err(std::io::Error::other("too large"));
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new());
    serde_json::to_writer(&mut out, last).ok()?;
    let text = String::from_utf8(out.0).ok()?;
    serde_json::value::RawValue::from_string(text).ok()
}

/// Where the state goes and what is in it: gathered by `snapshot` when `changed` says so.
pub struct Keeper {
    /// The state dir.
    pub dir: PathBuf,
    /// The maintenance windows (the ad hoc ones are kept).
    pub maintenance: Arc<Maintenance>,
}

impl Keeper {
    /// Writes the state every [`SAVE_EVERY`] while `generation()` moves (and within a second
    /// of an ad hoc maintenance change), and once more when `shutdown` turns true. `snapshot`
    /// gathers the state to write.
    pub async fn run(
        self,
        generation: impl Fn() -> u64 + Send + 'static,
        snapshot: impl Fn() -> Saved + Send + Sync + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let snapshot = Arc::new(snapshot);
        let mut written = (generation(), self.maintenance.generation());
        let mut last_write = tokio::time::Instant::now();
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => false,
                changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
            };
            let now = (generation(), self.maintenance.generation());
            let due = stopping
                || now.1 != written.1
                || (now.0 != written.0 && last_write.elapsed() >= SAVE_EVERY);
            if due && now != written {
                let dir = self.dir.clone();
                let snapshot = snapshot.clone();
                let result = tokio::task::spawn_blocking(move || write(&dir, &snapshot())).await;
                match result {
                    Ok(Ok(())) => written = now,
                    Ok(Err(error)) => tracing::error!(
                        message = "Could not write the state file; the state of checks will not survive a restart until it can.",
                        dir = %self.dir.display(),
                        error = %error,
                    ),
                    Err(_) => {}
                }
                last_write = tokio::time::Instant::now();
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_a_foreign_or_corrupt_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("nightjar-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read(&dir.join(FILE), "eu").unwrap().is_none());

        let mut saved = Saved::new("eu", 1_700_000_000);
        saved.checks.insert(
            "web".into(),
            SavedCheck {
                tracker: Tracker::default(),
                since_ms: Some(1_700_000_000_000),
                history: vec![(true, 1200), (false, 5000)],
                last: None,
            },
        );
        write(&dir, &saved).unwrap();
        let back = read(&dir.join(FILE), "eu").unwrap().unwrap();
        assert_eq!(
            back.checks["web"].history,
            vec![(true, 1200), (false, 5000)]
        );
        assert!(read(&dir.join(FILE), "us").unwrap_err().contains("region"));

        std::fs::write(dir.join(FILE), "{\"format\":").unwrap();
        assert!(read(&dir.join(FILE), "eu").unwrap_err().contains("parse"));
        std::fs::write(dir.join(FILE), "{\"format\":\"other\",\"version\":1}").unwrap();
        assert!(read(&dir.join(FILE), "eu").unwrap_err().contains("other"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
