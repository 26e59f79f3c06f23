//! `stuck` (issue 31): when a run that is still going is stopped for what it does, the
//! mission's block and an agent's own, with their defaults and their check. Below `agent.rs`
//! and `schema.rs`, which hold it; [`Mission::stuck_for`](super::Mission::stuck_for) reads it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A run that shows no progress of any kind (no output, no tool call, no change in its tree,
/// its processes not using the CPU) for `idleS` seconds, or makes the same tool call with the
/// same input `repeats` times in a row (or whose tree comes back to one state that often), is
/// stopped as at a timeout. 0 turns a rule off. Unset keys: the mission's, then the defaults
/// ([`Limits::of`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stuck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<u32>,
}

/// Five minutes: longer than a model turn that writes a large file takes without a line of
/// stream-json, and than the network waits of a tool call (a build or a test run is seen by
/// its CPU time); a fraction of the adaptive timeouts of overnight runs (twice the mean, at
/// least two minutes, runs of tens of minutes).
pub const DEFAULT_IDLE_S: f64 = 300.0;
/// Two minutes, for a CLI that prints every token as its model writes it (Claude Code with
/// `--include-partial-messages`), while none of its tool calls runs: then nothing it does is
/// quiet but waiting for the model's first token (seconds) or on a dead connection, and Claude
/// Code prints its own retries (`api_retry`). A tool call keeps [`DEFAULT_IDLE_S`]: a quiet
/// one may be waiting on the network, and Claude Code's Bash stops its commands after two
/// minutes by itself unless the model asks for up to ten.
pub const DEFAULT_IDLE_STREAMED_S: f64 = 120.0;
/// An agent re-running its tests after an edit is not a loop (the edit breaks the row); five
/// identical calls with nothing between them is one, and costs little before it is stopped.
pub const DEFAULT_REPEATS: u32 = 5;
/// One agent's stuck rules, its own keys over the mission's over the defaults; 0 is off.
/// `orch run --dry-run --json` shows them as they are (`idleS`, `idleInToolS`, `repeats`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Seconds without progress that make a run idle.
    pub idle_s: f64,
    /// The same while one of its tool calls runs.
    pub idle_in_tool_s: f64,
    pub repeats: u32,
}

impl Limits {
    /// The rules from the keys set (`idle_s`, `repeats`: the agent's, else the mission's) for a
    /// CLI that prints every token (`every_token`) or not. A set `idleS` holds throughout; unset,
    /// it is [`DEFAULT_IDLE_STREAMED_S`] while the model writes a CLI that prints every token,
    /// [`DEFAULT_IDLE_S`] otherwise.
    pub fn of(idle_s: Option<f64>, repeats: Option<u32>, every_token: bool) -> Limits {
        let (idle_s, idle_in_tool_s) = match idle_s {
            Some(s) => (s, s),
            None if every_token => (DEFAULT_IDLE_STREAMED_S, DEFAULT_IDLE_S),
            None => (DEFAULT_IDLE_S, DEFAULT_IDLE_S),
        };
        Limits {
            idle_s,
            idle_in_tool_s,
            repeats: repeats.unwrap_or(DEFAULT_REPEATS),
        }
    }
}

/// The bound on `idleS`: a day.
const MAX_IDLE_S: f64 = 86_400.0;
/// The bound on `repeats`, as on the other counters.
const MAX_REPEATS: u32 = 10_000;

/// `stuck` at `path` (`stuck`, `agents[2].stuck`): `idleS` a number of seconds from 0 (off) to
/// a day, `repeats` 0 (off) or 2 to 10,000.
pub(super) fn check(file: &Path, path: &str, stuck: Option<&Stuck>) -> Result<()> {
    let Some(s) = stuck else {
        return Ok(());
    };
    if let Some(idle) = s.idle_s {
        if !(idle.is_finite() && (0.0..=MAX_IDLE_S).contains(&idle)) {
            return Err(Error::mission(
                file,
                format!("{path}.idleS"),
                format!("must be a number of seconds from 0 (off) to {MAX_IDLE_S}, not {idle}"),
            ));
        }
    }
    match s.repeats {
        Some(1) => Err(Error::mission(
            file,
            format!("{path}.repeats"),
            "must be 0 (off) or at least 2: with 1, every tool call would be a loop",
        )),
        Some(n) if n > MAX_REPEATS => Err(Error::mission(
            file,
            format!("{path}.repeats"),
            format!("must be at most {MAX_REPEATS}, not {n}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_idle_is_shorter_only_while_a_token_streaming_model_writes() {
        let streamed = Limits::of(None, None, true);
        assert_eq!(
            (streamed.idle_s, streamed.idle_in_tool_s, streamed.repeats),
            (DEFAULT_IDLE_STREAMED_S, DEFAULT_IDLE_S, DEFAULT_REPEATS)
        );
        let quiet = Limits::of(None, Some(7), false);
        assert_eq!(
            (quiet.idle_s, quiet.idle_in_tool_s, quiet.repeats),
            (DEFAULT_IDLE_S, DEFAULT_IDLE_S, 7)
        );
        // A set idleS is what the user asked for, in a tool call or not, streamed or not.
        for every_token in [true, false] {
            let set = Limits::of(Some(45.0), None, every_token);
            assert_eq!((set.idle_s, set.idle_in_tool_s), (45.0, 45.0));
            let off = Limits::of(Some(0.0), Some(0), every_token);
            assert_eq!((off.idle_s, off.idle_in_tool_s, off.repeats), (0.0, 0.0, 0));
        }
    }
}
