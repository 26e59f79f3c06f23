//! What one agent run is given: the [`Planned`] agent of a round and the [`Job`] queued for it
//! in the pool (its model, task, timeout, prompt, worktree, cap, session). The plan makes
//! them, the dispatcher queues them, the executor (`agent`) runs them.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::store::sessions;
use crate::engine::store::tasks::Task;
use crate::mission::Agent;

/// The plan for one agent this round.
pub(super) struct Planned<'a> {
    pub(super) agent: &'a Agent,
    pub(super) index: usize,
}

/// One agent run queued in the pool.
#[derive(Clone)]
pub(super) struct Job<'a> {
    pub(super) agent: &'a Agent,
    pub(super) index: usize,
    pub(super) model: String,
    pub(super) task: Option<Task>,
    pub(super) timeout: Duration,
    pub(super) prompt_file: PathBuf,
    pub(super) priority: u8,
    pub(super) expected_ms: u64,
    /// The agent's own worktree (worktree isolation), made from `base` before it starts.
    pub(super) worktree: Option<PathBuf>,
    pub(super) base: String,
    /// The arguments that cap this run at what is left of the agent's `budgetUsd`
    /// (`agents::cap_args`), appended to its command.
    pub(super) cap_args: Vec<String>,
    /// What is left of the agent's `budgetUsd` when it starts: its watch stops it once the
    /// cost its output streams passes it (issue 31).
    pub(super) budget_left: Option<f64>,
    /// The CLI session it starts or resumes (`session: true`).
    pub(super) session: Option<sessions::Plan>,
    /// The agent's how-manieth job this round (0: its first; a review agent run again after a
    /// revert has a second): its prompt and log files are its own.
    pub(super) nth: usize,
}

/// The names of `planned` agents.
pub(super) fn names(planned: &[&Planned]) -> Vec<String> {
    planned.iter().map(|a| a.agent.name.clone()).collect()
}
