//! Where a round runs and what every round of a run shares: the [`Env`] (the mission, the
//! tree, the state folder, the events, the ref namespace, a replay's recorded inputs), and the
//! places it hands an agent or a test run (its handoff file, its inbox, its logs' stem, the
//! test stage). Everything else in `round/` reads these; this file reads nothing of theirs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::engine::exec::limits::Limits;
use crate::engine::git::Git;
use crate::engine::store::inputs::RoundInputs;
use crate::engine::store::state::Layout;
use crate::engine::testing::{self, run::Stage};
use crate::events::Events;
use crate::mission::{Agent, Isolation, Mission};
use crate::roundlog::Phase;

/// The live run's ref namespace.
pub const LIVE_REFS: &str = "refs/orch/";

/// What every round of a run shares.
pub struct Env<'a> {
    pub mission: &'a Mission,
    /// The mission file's folder: prompt templates are relative to it.
    pub mission_dir: &'a Path,
    pub git: &'a Git,
    pub layout: &'a Layout,
    pub events: &'a Events,
    pub max_concurrency: usize,
    pub budget: Option<f64>,
    /// `--agent NAME`: only these agents (forced in, whatever their `when`).
    pub only: &'a [String],
    /// The namespace of the refs the round keeps work under: `refs/orch/` for the live run, a
    /// replay's own (`refs/orch/replay/round-N-K/`) for a replay. With `git` (the tree the
    /// round works in: the repository, or a replay's scratch worktree at the recorded base)
    /// and `layout` (the state folder, or the replay's folder) it is where the round runs.
    pub refs: &'a str,
    /// A replay: the plan and the prompts come from what the round recorded.
    pub replay: Option<&'a Replaying>,
    /// The providers held off by a limit, and start spacing.
    pub limits: &'a Limits,
}

/// What a replay of a round gives the pipeline in place of planning from today's mission.
#[derive(Debug, Clone, Default)]
pub struct Replaying {
    /// The recorded inputs to plan from; `None` re-plans (`--fresh`) with the mission's rules.
    pub recorded: Option<RoundInputs>,
    /// The live state folder: the recorded prompt files are relative to it.
    pub prompts_from: PathBuf,
    /// `--agent NAME`: replay only these of the recorded agents.
    pub agents: Vec<String>,
}

impl Env<'_> {
    /// `refs/orch/<kind>/round-N[/AGENT]`, under the round's ref namespace.
    pub fn kept_ref(&self, kind: &str, round: u32, agent: Option<&str>) -> String {
        match agent {
            Some(a) => format!("{}{kind}/round-{round}/{a}", self.refs),
            None => format!("{}{kind}/round-{round}", self.refs),
        }
    }

    pub(super) fn root(&self) -> &Path {
        self.git.root()
    }

    pub(super) fn worktree_for(&self, agent: &Agent) -> Option<PathBuf> {
        (agent.phase == Phase::Code && self.mission.git.isolation == Isolation::Worktree)
            .then(|| self.layout.dir.join("worktrees").join(&agent.name))
    }

    pub(super) fn sim_data(&self) -> Option<PathBuf> {
        self.mission
            .sims
            .as_ref()
            .map(|s| self.root().join(&s.publish_to))
    }
}

/// Runs the test suites `changed` calls for in the tree at `root` (the main tree, or a
/// per-agent revert's worktree), their logs under `log_dir`.
pub(super) fn run_tests(
    env: &Env,
    root: &Path,
    tests: &crate::mission::Tests,
    log_dir: &Path,
    changed: &[String],
    round: u32,
    round_start: Instant,
) -> crate::roundlog::TestsEntry {
    let relative = |p: &Path| env.layout.relative(p);
    Stage {
        tests,
        root,
        log_dir,
        relative: &relative,
        round,
        grace: env.mission.grace(),
        round_start,
    }
    .run(&testing::select::select(tests, changed), env.events)
}

/// The agent's handoff file: it persists across rounds, so the last report stands. In a folder
/// of the agent's own, which is all of the handoff folder a sandboxed run may write.
pub(super) fn handoff_path(layout: &Layout, agent: &str) -> PathBuf {
    layout.dir.join("handoff").join(agent).join("handoff.json")
}

/// Where orch kept an agent's handoff file before it had a folder of its own
/// (`handoff/NAME.json`): moved to [`handoff_path`] before the agent's next run.
pub(super) fn old_handoff_path(layout: &Layout, agent: &str) -> PathBuf {
    layout.dir.join("handoff").join(format!("{agent}.json"))
}

/// The agent's own folder in the round's scratch folder: the files orch hands its runs (result,
/// task, inbox). A sandboxed run writes only this of the scratch folder, never another agent's
/// files or the sims' staging.
pub(super) fn handed_dir(layout: &Layout, round: u32, agent: &str) -> PathBuf {
    layout.scratch(round).join("agents").join(agent)
}

pub(super) fn inbox_path(layout: &Layout, round: u32, agent: &str) -> PathBuf {
    handed_dir(layout, round, agent).join("tasks.jsonl")
}

/// The file stem of an agent's `nth` run in a round, for its prompt and logs: `NAME`, then
/// `NAME.2`, ... (a run again after a revert keeps the first run's files: `orch round N` gives
/// its prompt again, and its round-log entry's `besideRun` points at its log).
pub(super) fn run_stem(agent: &str, nth: usize) -> String {
    match nth {
        0 => agent.to_string(),
        n => format!("{agent}.{}", n + 1),
    }
}
