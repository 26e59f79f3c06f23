//! The state folder (`.orch/` by default): its layout, the tracking state carried between
//! rounds (`state.json`), the lock that keeps one orch per repository, the journal of the round
//! in progress, and the one way orch writes a file there (temporary file, fsync, rename).
//!
//! The tracking state is what the seed passed around as `ctx`: a named struct owned by the main
//! thread. A state file that does not parse is an error that names it; it is never reset
//! silently, because the streaks and costs in it steer the next rounds.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::roundlog::RunStatus;

/// How many recent run times an agent keeps for adaptive timeouts and longest-first ordering.
pub const RECENT_RUNS: usize = 10;

/// Paths inside the state folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Layout {
        Layout { dir }
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.json")
    }
    /// The live process groups of the round in progress, beside the journal.
    pub fn journal_groups(&self) -> PathBuf {
        self.dir.join("journal-groups.json")
    }
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.ndjson")
    }
    pub fn rounds(&self) -> PathBuf {
        self.dir.join("rounds")
    }
    pub fn round_log(&self, round: u32) -> PathBuf {
        self.rounds().join(format!("round-{round:04}.json"))
    }
    /// What round `round` started from (base, state, queue, jobs, prompts), beside its log.
    pub fn round_inputs(&self, round: u32) -> PathBuf {
        self.rounds().join(format!("round-{round:04}.inputs.json"))
    }
    pub fn logs(&self, round: u32) -> PathBuf {
        self.dir.join("logs").join(format!("round-{round:04}"))
    }
    pub fn prompts(&self, round: u32) -> PathBuf {
        self.dir.join("prompts").join(format!("round-{round:04}"))
    }
    pub fn scratch(&self, round: u32) -> PathBuf {
        self.dir.join("scratch").join(format!("round-{round:04}"))
    }
    /// `path` relative to the state folder, for round logs.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never a
/// truncated mix: a temporary file beside it, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, true)
}

/// Replaces `path` with `bytes` through a temporary file and a rename, so that no reader ever
/// sees it half written; `durable` also syncs the file and its folder, so that it survives a
/// power loss (without it the kernel writes it back in its own time).
fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.ctx(|| format!("writing {}", path.display()))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Other(format!("serializing {}: {e}", path.display())))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads JSON orch wrote; `None` when the file does not exist, `CorruptState` when it does not
/// parse.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::CorruptState {
                file: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Tracking state.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The mission the state belongs to.
    #[serde(default)]
    pub mission: String,
    /// The highest round that finished (0: none yet).
    #[serde(default)]
    pub last_round: u32,
    #[serde(default)]
    pub total_cost_usd: f64,
    /// Rounds in a row that committed nothing (the stall guard).
    #[serde(default)]
    pub empty_rounds_in_a_row: u32,
    /// Rounds in a row whose tests failed (the circuit breaker).
    #[serde(default)]
    pub test_failures_in_a_row: u32,
    /// Test results at the base, when known: what a regression is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_baseline: Option<TestBaseline>,
    /// The tail of the last failing test run, for agents' `testFailures`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_test_failure: String,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestBaseline {
    pub passed: bool,
    #[serde(default)]
    pub failed_count: Option<u64>,
    /// The commit the figures were measured at.
    #[serde(default)]
    pub commit: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    #[serde(default)]
    pub last_run_round: Option<u32>,
    #[serde(default)]
    pub last_status: Option<RunStatus>,
    #[serde(default)]
    pub consecutive_empty_rounds: u32,
    /// failed/timeout/empty runs in a row: the escalation trigger.
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub consecutive_successes: u32,
    #[serde(default)]
    pub model_index: usize,
    /// The model the agent uses now, for people reading the file.
    #[serde(default)]
    pub model: String,
    /// Elapsed ms of recent runs that ended ok or empty, newest last.
    #[serde(default)]
    pub recent_run_ms: Vec<u64>,
    #[serde(default)]
    pub runs: u32,
    #[serde(default)]
    pub cost_usd: f64,
    /// The last status the agent reported in its handoff file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<String>,
}

impl AgentState {
    pub fn mean_run_ms(&self) -> Option<u64> {
        if self.recent_run_ms.is_empty() {
            None
        } else {
            Some(self.recent_run_ms.iter().sum::<u64>() / self.recent_run_ms.len() as u64)
        }
    }
}

impl State {
    pub fn load(layout: &Layout) -> Result<State> {
        Ok(read_json(&layout.state())?.unwrap_or_default())
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        write_json(&layout.state(), self)
    }

    pub fn agent_mut(&mut self, name: &str) -> &mut AgentState {
        self.agents.entry(name.to_string()).or_default()
    }

    pub fn agent(&self, name: &str) -> AgentState {
        self.agents.get(name).cloned().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The lock.

/// An advisory lock (flock) on `<state>/lock`, held for the life of the value. The kernel
/// drops it when the process dies, so the lock of a dead orch never blocks the next one.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(layout: &Layout) -> Result<Lock> {
        let path = layout.lock();
        std::fs::create_dir_all(&layout.dir)
            .ctx(|| format!("creating the state folder {}", layout.dir.display()))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("opening the lock {}", path.display()))?;
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Err(Error::Locked {
                lock: path,
                pid: s.trim().parse().ok(),
            });
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        let _ = file.sync_all();
        Ok(Lock { _file: file })
    }
}

// ---------------------------------------------------------------------------------------------
// The journal of the round in progress.

/// Written when a round starts, updated as process groups start and end, removed when the round
/// ends. If it exists when orch starts, the previous orch died mid-round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub round: u32,
    pub base: String,
    pub pid: u32,
    pub started_at: String,
    /// Read from `journal-groups.json` (see `save_groups`), never written here; older journals
    /// carried them in this file.
    #[serde(default, skip_serializing)]
    pub process_groups: Vec<i32>,
    /// `process::session()` of the orch that wrote it: the prefix of the `ORCH_RUN` token its
    /// children's descendants carry even after leaving their groups. Empty in older journals.
    #[serde(default)]
    pub session: String,
}

impl Journal {
    pub fn load(layout: &Layout) -> Result<Option<Journal>> {
        let Some(mut j) = read_json::<Journal>(&layout.journal())? else {
            return Ok(None);
        };
        // Written without fsync (see `save_groups`): after a power loss it may be torn, and
        // then there is nothing left running to kill anyway.
        match read_json::<Vec<i32>>(&layout.journal_groups()) {
            Ok(Some(groups)) => j.process_groups = groups,
            Ok(None) => {}
            Err(e) => log::debug!("ignoring the journal's process groups: {e}"),
        }
        Ok(Some(j))
    }

    /// Records the live process groups. They change twice per process, so they go to a file of
    /// their own without fsync: they matter only while the machine stays up (a power loss
    /// ends every process), and the kernel keeps a renamed file for other processes at once.
    pub fn save_groups(layout: &Layout, groups: &[i32]) -> Result<()> {
        let bytes = serde_json::to_vec(groups)
            .map_err(|e| Error::Other(format!("serializing the process groups: {e}")))?;
        write_replacing(&layout.journal_groups(), &bytes, false)
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        write_json(&layout.journal(), self)
    }

    pub fn clear(layout: &Layout) -> Result<()> {
        // The groups first: a journal without them is complete, groups without a journal are
        // never read.
        for path in [layout.journal_groups(), layout.journal()] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("removing {}", path.display()), e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s/state.json");
        write_json(&p, &State::default()).unwrap();
        let mut s = State::load(&Layout::new(d.path().join("s"))).unwrap();
        s.last_round = 7;
        s.save(&Layout::new(d.path().join("s"))).unwrap();
        let back = State::load(&Layout::new(d.path().join("s"))).unwrap();
        assert_eq!(back.last_round, 7);
        let names: Vec<_> = std::fs::read_dir(d.path().join("s"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_corrupt_state_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path().to_path_buf());
        std::fs::write(l.state(), "{\"lastRound\": 3,").unwrap();
        let e = State::load(&l).unwrap_err();
        assert!(matches!(e, Error::CorruptState { .. }));
        assert!(e.to_string().contains("state.json"));
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path().to_path_buf());
        let _held = Lock::acquire(&l).unwrap();
        match Lock::acquire(&l) {
            Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
    }
}
