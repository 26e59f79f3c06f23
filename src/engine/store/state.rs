//! The state folder (`.orch/` by default): its layout, the tracking state carried between
//! rounds (`state.json`), the lock that keeps one orch per repository, the journal of the round
//! in progress, and the one way orch writes a file there (temporary file, fsync, rename).
//!
//! What orch cannot rebuild from memory lives where an agent's `git clean -fdx` cannot reach
//! it, under the repository's common git folder as git keeps its own rebase state: the lock
//! (`<git-common-dir>/orch/lock`, one per repository whatever the state folder, shared by its
//! linked worktrees) and the journal (`<git-common-dir>/orch/<state-id>/`). The rest of the
//! state folder is rewritten from memory when it vanishes (state, tasks) or recreated empty
//! (logs, prompts), with a warning saying what was lost.
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

/// Paths inside the state folder, and orch's private folder under the git common directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    /// `<git-common-dir>/orch/<state-id>`: the journal, out of reach of `git clean`.
    pub private: PathBuf,
    /// `<git-common-dir>/orch/lock`: one lock per repository.
    lock: PathBuf,
}

impl Layout {
    /// A state folder on its own (reading logs, unit tests): everything inside `dir`.
    pub fn new(dir: PathBuf) -> Layout {
        Layout {
            private: dir.clone(),
            lock: dir.join("lock"),
            dir,
        }
    }

    /// The state folder `dir` of a repository whose common git folder is `common`.
    pub fn in_repo(dir: PathBuf, common: &Path) -> Layout {
        let orch = common.join("orch");
        Layout {
            private: orch.join(state_id(&dir)),
            lock: orch.join("lock"),
            dir,
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.lock.clone()
    }
    pub fn journal(&self) -> PathBuf {
        self.private.join("journal.json")
    }
    /// The live process groups of the round in progress, beside the journal.
    pub fn journal_groups(&self) -> PathBuf {
        self.private.join("journal-groups.json")
    }
    /// The user's uncommitted work set aside by `--allow-dirty` while rounds run.
    pub fn user_stash(&self) -> PathBuf {
        self.private.join("user-stash.json")
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

/// A name for a state folder, unique per absolute path (two worktrees' `.orch` differ) and
/// readable: `orch-1f2e3d4c5b6a7980`.
fn state_id(dir: &Path) -> String {
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}-{h:016x}", name.trim_matches('-'))
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
    #[serde(default, serialize_with = "crate::units::ser_usd")]
    pub total_cost_usd: f64,
    /// Rounds in a row that committed nothing (the stall guard).
    #[serde(default)]
    pub empty_rounds_in_a_row: u32,
    /// Rounds in a row that failed the tests for good (the circuit breaker's count): their
    /// committed tree fails the tests, or the whole round was reverted.
    #[serde(default)]
    pub test_failures_in_a_row: u32,
    /// Rounds in a row whose first test run failed, a per-agent revert's rescue included (shown
    /// by `orch status`; stops nothing).
    #[serde(default)]
    pub test_failed_rounds_in_a_row: u32,
    /// Test results at the base, when known: what a regression is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_baseline: Option<TestBaseline>,
    /// The tail of the last failing test run, for agents' `testFailures`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_test_failure: String,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentState>,
    /// Providers held off by a limit that outlasted the last run (exit 75): the next run waits
    /// for them (or exits 75 again) before starting their agents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, crate::engine::exec::limits::Hold>,
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
    #[serde(default, serialize_with = "crate::units::ser_usd")]
    pub cost_usd: f64,
    /// Runs whose cost its CLI did not tell (counted as $0 in `costUsd`): the agent's
    /// `budgetUsd` cannot hold them back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_cost_runs: u32,
    /// The last status the agent reported in its handoff file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<crate::roundlog::Handoff>,
    /// The round's base commit when the agent last ran: `{{changes}}` tells what changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_base: Option<String>,
    /// The CLI session its next run resumes (`session: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<AgentSession>,
    /// Why its last session was dropped, until the next run starts a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_dropped: Option<String>,
}

/// The session an agent's next run resumes, kept in its tracking state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSession {
    pub id: String,
    /// The name of its CLI's adapter.
    #[serde(deserialize_with = "cli_name")]
    pub cli: String,
    /// The model it was started with: another model starts another session.
    pub model: String,
    /// The mission and template it was started under (`sessions::mission_hash`).
    pub mission_hash: String,
    /// Runs in this session so far.
    pub runs: u32,
    /// The round it started in.
    pub started_round: u32,
}

/// A session's CLI in `state.json`: one of the adapters' names.
fn cli_name<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    use crate::mission::CliCatalog;
    crate::mission::cli_name(d, Some(crate::agents::Adapters.names()))
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

/// Who holds the lock, written into the lock file: enough for a second orch to name the holder
/// and to tell a live orch from a pid that was reused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Holder {
    pid: u32,
    /// `process::session()`: the pid and its start time.
    #[serde(default)]
    session: String,
    #[serde(default)]
    state_dir: String,
}

impl Holder {
    fn me(layout: &Layout) -> Holder {
        Holder {
            pid: std::process::id(),
            session: crate::engine::exec::process::session().to_owned(),
            state_dir: layout.dir.display().to_string(),
        }
    }

    /// What a lock file says; older ones held only the pid.
    fn parse(text: &str) -> Option<Holder> {
        serde_json::from_str(text).ok().or_else(|| {
            text.trim().parse().ok().map(|pid| Holder {
                pid,
                ..Holder::default()
            })
        })
    }

    fn locked(self, lock: &Path) -> Error {
        Error::Locked {
            lock: lock.to_path_buf(),
            pid: Some(self.pid),
            state_dir: (!self.state_dir.is_empty()).then(|| PathBuf::from(self.state_dir)),
        }
    }
}

/// The repository's lock: an advisory lock (flock) on `<git-common-dir>/orch/lock`, held for
/// the life of the value, whatever the state folder, so that two missions (or an orch started
/// from a linked worktree) never drive one repository at once. The kernel drops it when the
/// process dies, so the lock of a dead orch never blocks the next one.
///
/// A file can be deleted under its holder (`rm`, `rm -rf .git/orch`): a newcomer would then
/// lock a new file at the same path. So a newcomer that gets the flock also looks in `/proc`
/// for a live orch holding the path open (deleted or not) and checks it is that orch by the
/// session token inside (pid and start time, so a reused pid is never taken for it); and the
/// holder puts a deleted file back (`check`).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
    holder: Holder,
    /// Lock files made again after the first was deleted; held to the end.
    remade: std::sync::Mutex<Vec<File>>,
}

impl Lock {
    pub fn acquire(layout: &Layout) -> Result<Lock> {
        let path = layout.lock();
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("opening the lock {}", path.display()))?;
        if !try_flock(&file) {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Err(match Holder::parse(&s) {
                Some(h) => h.locked(&path),
                None => Error::Locked {
                    lock: path,
                    pid: None,
                    state_dir: None,
                },
            });
        }
        // The flock is ours; the path may still be someone else's if they hold a deleted file.
        if let Some(h) = live_holder(&path) {
            return Err(h.locked(&path));
        }
        let holder = Holder::me(layout);
        write_holder(&mut file, &holder);
        Ok(Lock {
            file,
            path,
            holder,
            remade: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Puts the lock file back if it was deleted (or replaced) under orch: a new file with
    /// orch's name in it, locked, renamed into place. Returns a warning saying so.
    pub fn check(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let ours = self.file.metadata().ok()?;
        let mut remade = self.remade.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = vec![(ours.dev(), ours.ino())];
        known.extend(
            remade
                .iter()
                .filter_map(|f| f.metadata().ok())
                .map(|m| (m.dev(), m.ino())),
        );
        if std::fs::metadata(&self.path).is_ok_and(|m| known.contains(&(m.dev(), m.ino()))) {
            return None;
        }
        let dir = self.path.parent()?;
        let tmp = dir.join(format!(".lock.tmp-{}", std::process::id()));
        let made = std::fs::create_dir_all(dir).and_then(|_| {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            try_flock(&f);
            write_holder(&mut f, &self.holder);
            std::fs::rename(&tmp, &self.path)?;
            Ok(f)
        });
        Some(match made {
            Ok(f) => {
                remade.push(f);
                format!(
                    "the lock file {} was deleted while orch held it; made it again",
                    self.path.display()
                )
            }
            Err(e) => format!(
                "the lock file {} was deleted while orch held it and cannot be made again: {e}",
                self.path.display()
            ),
        })
    }
}

/// The orch that holds a repository's lock now, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// The state folder it runs on; `None` in lock files from before it was written.
    pub state_dir: Option<PathBuf>,
}

impl Lock {
    /// The live orch holding the repository's lock, if any, for `orch status`. Reads the lock
    /// file and checks its holder is alive and is that orch (its session: pid and start time,
    /// so a reused pid is not taken for it); never takes the lock itself, so it cannot get in
    /// the way of an orch starting at the same moment.
    pub fn holder(layout: &Layout) -> Option<LockHolder> {
        let path = layout.lock();
        let from_file = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| Holder::parse(&t))
            .filter(|h| h.pid != std::process::id() && is_live(h));
        // A deleted lock file is still held by the orch that has it open.
        let h = from_file.or_else(|| live_holder(&path))?;
        Some(LockHolder {
            pid: h.pid,
            state_dir: (!h.state_dir.is_empty()).then(|| PathBuf::from(h.state_dir)),
        })
    }
}

fn is_live(h: &Holder) -> bool {
    let Ok(pid) = i32::try_from(h.pid) else {
        return false;
    };
    if h.session.is_empty() {
        // SAFETY: signal 0 only checks that the process exists.
        return pid > 0 && unsafe { libc::kill(pid, 0) } == 0;
    }
    crate::engine::exec::process::session_of(pid).as_deref() == Some(h.session.as_str())
}

fn try_flock(file: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn write_holder(file: &mut File, holder: &Holder) {
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(
        file,
        "{}",
        serde_json::to_string(holder).unwrap_or_default()
    );
    let _ = file.sync_all();
}

/// A live orch other than this one that holds `path` open (the file itself or one deleted
/// from that path), identified by the session in its file matching the process's start time.
fn live_holder(path: &Path) -> Option<Holder> {
    use crate::engine::exec::process;
    process::holders_of(path).into_iter().find_map(|(pid, fd)| {
        let h = Holder::parse(&std::fs::read_to_string(fd).ok()?)?;
        (h.pid == pid as u32 && process::session_of(pid).as_deref() == Some(h.session.as_str()))
            .then_some(h)
    })
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
    /// Set while the round waits out a provider's limit, for `orch status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_wait: Option<LimitWait>,
}

/// The wait in progress: whose limit, which agents wait for it, until when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitWait {
    pub provider: String,
    pub agents: Vec<String>,
    pub cause: String,
    pub error: String,
    /// RFC 3339.
    pub until: String,
    /// RFC 3339: when the wait began.
    pub since: String,
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
    fn a_session_names_its_cli_as_the_adapters_do() {
        let json = |cli: &str| {
            format!(
                r#"{{"id":"x","cli":"{cli}","model":"m","missionHash":"h","runs":1,"startedRound":1}}"#
            )
        };
        let s: AgentSession = serde_json::from_str(&json("codex")).unwrap();
        assert_eq!(s.cli, "codex");
        assert_eq!(serde_json::to_string(&s).unwrap(), json("codex"));
        // An unknown name is refused as serde refused the enum the names once were.
        let e = serde_json::from_str::<AgentSession>(&json("foo")).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "unknown variant `foo`, expected one of `claude`, `codex`, `gemini`, `aider`, `plain`"
            ),
            "{e}"
        );
    }

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
            Err(Error::Locked { pid, state_dir, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(state_dir.as_deref(), Some(d.path()));
            }
            other => panic!("{other:?}"),
        }
    }
}
