//! What a round started from, recorded so that it can be run again (`orch round N` on a round
//! that ran): the base commit, the mission as it was loaded, the tracking state and the task
//! queue as they were before the round planned, the plan's decisions, and each agent job as
//! the pool got it (model, timeout, task, priority, the prompt file and a hash of its text).
//!
//! It is a file of its own beside the round log, `rounds/round-NNNN.inputs.json`, not fields
//! of the log: the state and the queue can be large (a long night's queue holds hundreds of
//! tasks with bodies), and the report and `orch status` parse every round log every time, while
//! the inputs are read only by a replay and `orch show`. `report::load` ignores the file (its
//! name is not `round-NNNN.json`). Written when the round starts and again as each phase plans
//! its jobs, so a round that dies midway still has what it started from.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::store::state::{read_json, write_json, Layout, State};
use crate::engine::store::tasks::{Queue, Task};
use crate::error::Result;
use crate::roundlog::{Decision, Phase};

/// Bumped when a field changes meaning; readers take older versions.
pub const INPUTS_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundInputs {
    pub version: u32,
    pub round: u32,
    /// The commit the round started from.
    pub base: String,
    pub started_at: String,
    /// The folder of the mission file (prompt templates are relative to it), and the mission
    /// as loaded.
    pub mission_dir: String,
    pub mission: serde_json::Value,
    /// `maxConcurrency` and the budget as they applied (flags included).
    pub max_concurrency: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// `--agent NAME` of `orch round N`, when given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    /// The tracking state and the task queue before the round planned.
    pub state: State,
    pub queue: Queue,
    /// The plan's verdict on each agent, as it stood when the round planned (the round log's
    /// decisions are updated as the round goes: a Phase B skipped after a revert).
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// Each job the pool got, in the order the phases planned them.
    #[serde(default)]
    pub jobs: Vec<RecordedJob>,
}

/// One agent run as it was set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedJob {
    pub agent: String,
    pub phase: Phase,
    pub model: String,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive_timeout: bool,
    /// The task it took, as it was when it took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    pub priority: u8,
    #[serde(default)]
    pub expected_ms: u64,
    /// The prompt file, relative to the state folder, and what was in it.
    pub prompt: String,
    pub prompt_bytes: u64,
    pub prompt_hash: String,
    /// The run resumed a CLI session: its prompt was the short `{{changes}}` one, which a
    /// replay (that resumes no session) cannot use.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

impl RoundInputs {
    pub fn load(layout: &Layout, round: u32) -> Result<Option<RoundInputs>> {
        read_json(&layout.round_inputs(round))
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        write_json(&layout.round_inputs(self.round), self)
    }

    /// The agent's `nth` job of the round (0: its first; an agent run again after a revert
    /// has a second).
    pub fn job(&self, agent: &str, nth: usize) -> Option<&RecordedJob> {
        self.jobs.iter().filter(|j| j.agent == agent).nth(nth)
    }
}

/// The hash a recorded prompt carries: FNV-1a, 64 bits, as `fnv1a64:<16 hex digits>`. It only
/// has to tell whether a prompt file still holds what the round gave the agent, not resist
/// forgery; no hashing crate is needed for that.
pub fn prompt_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// Whether the file at `path` holds the recorded prompt: `Ok(bytes)` when it does, `Err(why)`
/// when it is gone or changed.
pub fn recorded_prompt(path: &Path, job: &RecordedJob) -> std::result::Result<Vec<u8>, String> {
    match std::fs::read(path) {
        Ok(bytes) if job.prompt_hash.is_empty() => Ok(bytes),
        Ok(bytes) if prompt_hash(&bytes) == job.prompt_hash => Ok(bytes),
        Ok(_) => Err(format!(
            "{} no longer holds the prompt the round gave {} (its hash differs)",
            path.display(),
            job.agent
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_hash_is_fnv1a_and_tells_texts_apart() {
        // FNV-1a 64 of the empty string and of "a", the published test vectors.
        assert_eq!(prompt_hash(b""), "fnv1a64:cbf29ce484222325");
        assert_eq!(prompt_hash(b"a"), "fnv1a64:af63dc4c8601ec8c");
        assert_ne!(prompt_hash(b"round 2"), prompt_hash(b"round 3"));
    }

    #[test]
    fn the_mission_survives_the_record() {
        let text = r#"{"name": "t", "rounds": 3, "maxConcurrency": 2,
            "agents": [{"name": "a", "phase": "code", "command": "sh a.sh {round}",
                        "models": ["s", "b"], "when": {"every": 2}, "owns": ["src/**"]},
                       {"name": "r", "phase": "review", "command": ["x"], "when": "tasks"}],
            "tests": {"command": "make test"}, "sims": {"post": {"command": ["sim", "{out}"]}}}"#;
        let m =
            crate::mission::Mission::parse(text, Path::new("orch.json"), &crate::agents::Adapters)
                .unwrap();
        let v = serde_json::to_value(&m).unwrap();
        let back = crate::mission::Mission::parse(
            &v.to_string(),
            Path::new("orch.json"),
            &crate::agents::Adapters,
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
    }
}
