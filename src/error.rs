//! The error type every fallible part of orch returns, and the exit status each kind maps to.
//!
//! Callers branch on the kind (a held lock is exit 4, a bad mission exit 2), so the kinds that
//! change what happens next are variants; everything else is `Io`/`Git`/`Other` with a context
//! string that names the file, agent or round involved. The exit codes are the contract of
//! docs/src/commands.md (its table of exit statuses) and live here, in one place.

use std::fmt;
use std::path::{Path, PathBuf};

/// Exit status: every round ran.
pub const EXIT_OK: i32 = 0;
/// Exit status: the round failed or was reverted (`orch round N`), or agents failed with `--strict`.
pub const EXIT_ROUND_FAILED: i32 = 1;
/// Exit status: bad usage or an invalid mission.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: stopped by the budget, the empty-rounds guard or the circuit breaker.
pub const EXIT_STOPPED: i32 = 3;
/// Exit status: another orch holds the lock on this repository.
pub const EXIT_LOCKED: i32 = 4;
/// Exit status: the mission finished before its round count: every agent reported `all-done`,
/// or `sims.stopWhen` said the run converged. Distinct from 0 so a sequence (or a script) can
/// tell "done" from "out of rounds".
pub const EXIT_FINISHED: i32 = 5;
/// Exit status: an agent CLI failed in a way no retry heals (an invalid key, a rejected
/// request): orch stopped starting agents; the message names the agent, the CLI's words and the
/// fix.
pub const EXIT_AGENT_CLI: i32 = 6;
/// Exit status (EX_TEMPFAIL): a provider's limit would outlast `limits.maxWaitS`, or `--no-wait`
/// was given; the state is saved and a later `orch run` picks up.
pub const EXIT_TEMPFAIL: i32 = 75;
/// Exit status: interrupted by SIGINT/SIGTERM.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit status: standard output was closed (`orch status | head -1`): what a shell reports for
/// a process SIGPIPE ended (128 + 13).
pub const EXIT_STDOUT_CLOSED: i32 = 141;

#[derive(Debug)]
pub enum Error {
    /// The user asked for something that cannot be done as asked (bad flag value, dirty tree,
    /// no such round). Exit 2.
    Usage(String),
    /// The mission file is invalid. `path` is the key path (`agents[2].comand`), empty when the
    /// whole file is at fault. Exit 2.
    Mission {
        file: PathBuf,
        path: String,
        message: String,
    },
    /// Another orch holds the repository's lock. Exit 4.
    Locked {
        lock: PathBuf,
        pid: Option<u32>,
        /// The holder's state folder, when its lock file says.
        state_dir: Option<PathBuf>,
    },
    /// An I/O operation failed; `context` says what orch was doing and on which file.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A git command failed; `command` is what ran and `stderr` what git said.
    Git { command: String, stderr: String },
    /// A state file orch wrote earlier cannot be read back. Never reset silently.
    CorruptState { file: PathBuf, message: String },
    /// The run was interrupted by a signal. Exit 130.
    Interrupted,
    /// Standard output was closed under a command writing its result (`| head -1`). Exit 141,
    /// and nothing on stderr: the reader chose to stop reading.
    StdoutClosed,
    /// A folder orch must write in to put files back (a revert, a take-out) is not writable by
    /// orch's user and cannot be made so (not its folder): nothing was reset. Exit 1.
    Unwritable {
        path: PathBuf,
        /// What orch was doing ("reverting round 3").
        doing: String,
        /// The folder's owner (uid).
        owner: u32,
    },
    /// Anything else, with a message that already names what failed.
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Mission { .. } => EXIT_USAGE,
            Error::Locked { .. } => EXIT_LOCKED,
            Error::Interrupted => EXIT_INTERRUPTED,
            Error::StdoutClosed => EXIT_STDOUT_CLOSED,
            // A corrupt state or an unwritable state folder is something the user must fix
            // before orch can go on, like a bad mission.
            Error::CorruptState { .. } => EXIT_USAGE,
            Error::Io { .. } | Error::Git { .. } | Error::Unwritable { .. } | Error::Other(_) => {
                EXIT_ROUND_FAILED
            }
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn mission(file: &Path, path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Mission {
            file: file.to_path_buf(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Mission {
                file,
                path,
                message,
            } => {
                if path.is_empty() || path == "?" || path == "." {
                    write!(f, "invalid mission {}: {message}", file.display())
                } else {
                    write!(f, "invalid mission {}: {path}: {message}", file.display())
                }
            }
            Error::Locked {
                lock,
                pid,
                state_dir,
            } => {
                write!(f, "another orch")?;
                match (pid, state_dir) {
                    (Some(pid), Some(d)) => {
                        write!(f, " (pid {pid}, state folder {})", d.display())?
                    }
                    (Some(pid), None) => write!(f, " (pid {pid})")?,
                    _ => {}
                }
                write!(
                    f,
                    " is running on this repository (lock {})",
                    lock.display()
                )
            }
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Git { command, stderr } => {
                write!(f, "`{command}` failed: {}", stderr.trim())
            }
            Error::CorruptState { file, message } => write!(
                f,
                "{} is corrupt ({message}); {}",
                file.display(),
                corrupt_state_advice(file)
            ),
            Error::Interrupted => write!(f, "interrupted"),
            Error::StdoutClosed => write!(f, "standard output was closed"),
            Error::Unwritable { path, doing, owner } => write!(
                f,
                "{doing}: cannot write in {} (owned by uid {owner}, not writable by orch's user, \
                 so orch cannot give it its write bit back); nothing was reset. Make it writable \
                 (chmod u+w, or as its owner) and run orch again",
                path.display()
            ),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Adds a context string to an `io::Result`, the way `anyhow::Context` would.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

/// What to do about a corrupt file of the state folder, by which file it is: moving each aside
/// costs something different.
fn corrupt_state_advice(file: &Path) -> &'static str {
    match file.file_name().and_then(|n| n.to_str()) {
        Some("journal.json") => {
            "it describes a round an earlier orch was running when it died. Check `git status` \
             and `git worktree list` for that round's partial work and that no agent is still \
             running, then move the file aside"
        }
        Some("tasks.json") => {
            "move it aside to start with an empty task queue (agents' pending tasks are lost), \
             or restore it from a backup"
        }
        Some("sequence.json") => {
            "move it aside to start the sequence again from its first mission, or restore it \
             from a backup"
        }
        _ => {
            "move it aside to start the tracking state afresh (rounds, streaks, models and cost \
             start from zero), or restore it from a backup"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_file_is_named_with_advice_for_that_file() {
        let msg = |name: &str| {
            Error::CorruptState {
                file: PathBuf::from(format!(".orch/{name}")),
                message: "expected value".into(),
            }
            .to_string()
        };
        assert!(msg("state.json").contains(".orch/state.json is corrupt (expected value)"));
        assert!(msg("state.json").contains("start from zero"));
        assert!(msg("tasks.json").contains("empty task queue"));
        assert!(msg("journal.json").contains("git worktree list"));
        assert!(msg("sequence.json").contains("first mission"));
    }
}
