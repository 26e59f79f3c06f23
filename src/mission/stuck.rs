//! `stuck` (issue 31): when a run that is still going is stopped for what it does, the
//! mission's block and an agent's own, with their defaults and their check. Below `agent.rs`
//! and `schema.rs`, which hold it; [`Mission::stuck_for`](super::Mission::stuck_for) reads it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A run that shows no progress of any kind (no output, no tool call, no change in its tree,
/// its processes not using the CPU) for `idleS` seconds, or makes the same tool call with the
/// same input `repeats` times in a row (or whose tree comes back to one state that often), is
/// stopped as at a timeout. 0 turns a rule off. Unset keys: the mission's, then
/// [`DEFAULT_IDLE_S`] and [`DEFAULT_REPEATS`].
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
/// An agent re-running its tests after an edit is not a loop (the edit breaks the row); five
/// identical calls with nothing between them is one, and costs little before it is stopped.
pub const DEFAULT_REPEATS: u32 = 5;
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
