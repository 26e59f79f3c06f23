//! The [`Mission`] itself and its blocks besides the agents (prompt sections, sims, tests,
//! git, hooks, tasks, stop rules, provider limits, pricing): the serde types of the file
//! (`deny_unknown_fields` everywhere), each default in one place (a `default_*` function or a
//! `Default` impl), and the accessors the engine reads a mission through.
//!
//! Its checks are not here: `bounds.rs` and `validate.rs` add them to `Mission`, and
//! `load.rs` adds the parsing, so the types read as the file's reference.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::agent::{Agent, Command, InheritEnv};
use super::sandbox::Sandbox;
use super::stuck::{Limits as StuckLimits, Stuck};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mission {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How many rounds `orch run` runs in all (it resumes after the last finished one).
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    pub agents: Vec<Agent>,
    /// Prompt sections agents' templates may name (`{{brief}}`), besides the built-ins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sections: BTreeMap<String, Section>,
    /// The most a rendered prompt may be; the largest sections are cut first.
    #[serde(default = "default_max_prompt_bytes")]
    pub max_prompt_bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sims: Option<Sims>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<Tests>,
    #[serde(default)]
    pub git: GitConfig,
    #[serde(default)]
    pub stop: StopConfig,
    /// USD per million tokens per model, for agents whose output gives tokens but no cost.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pricing: Pricing,
    /// An argv prefix every agent command runs under (for example `srun ... --`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TasksConfig>,
    /// With `owns` globs: take changes outside an agent's globs out before its work is merged
    /// (worktree isolation), instead of only reporting them.
    #[serde(default)]
    pub enforce_ownership: bool,
    /// On a regression: `per-agent` takes the code agents' changes out one at a time to find
    /// the culprits and keeps the rest (worktree isolation); `round` reverts the whole round.
    #[serde(default)]
    pub revert_strategy: RevertStrategy,
    /// How many candidate trees the per-agent revert tests at once (each in its own worktree,
    /// the first in the main tree); unset: `maxConcurrency`, the slots the agents leave idle
    /// while the tests run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bisect_jobs: Option<usize>,
    /// Run Phase B (again) after a revert. Unset: after a per-agent revert with `besideTests`
    /// (the review work it set aside is done again on the tree that stays, which holds the
    /// round's other changes), never after a whole-round revert (the spec's: its agents would
    /// review the base again). Read it through [`Mission::phase_b_after_revert`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_b_after_revert: Option<bool>,
    /// When Phase B (the review agents) runs: beside the tests and the post-sim, in a worktree
    /// of Phase A's merged tree, its work landing after the code commit (`besideTests`), or
    /// after them on the committed tree (`afterTests`).
    #[serde(default)]
    pub phase_b: PhaseB,
    /// What becomes of the change of a code agent whose process ended badly by itself (out of
    /// turns, an error exit after its edits): tested and merged like any other (`test`, the
    /// default: the tests decide), or kept aside untested (`aside`). A run orch ended (a
    /// timeout, an interrupt) or that a signal killed is kept aside either way.
    #[serde(default)]
    pub failed_changes: FailedChanges,
    /// Seconds between SIGTERM and SIGKILL when a process group must go.
    #[serde(default = "default_grace")]
    pub kill_grace_s: f64,
    /// Commands told about the run as it goes (a round ended, something needs a person, the
    /// run ended); they run beside the rounds, never holding one up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Which of orch's environment variables agents get (besides `ORCH_*` and their `env`):
    /// `"all"` (the default) or a list of names and globs (`"LC_*"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit_env: Option<InheritEnv>,
    /// Whether agents (and the tests, sims and review agents that run their code) run in a
    /// sandbox: `"none"` (the default), `"bwrap"`, or an object (mission/sandbox.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Sandbox>,
    /// Provider limits: how to wait out rate and usage limits, and how to space agent starts.
    #[serde(default)]
    pub limits: Limits,
    /// When a run that is still going is stopped for what it does (issue 31); each key can be
    /// set again per agent. Read through [`Mission::stuck_for`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<Stuck>,
}

/// Waiting out provider limits (rate limits, overload, a subscription's usage window) instead
/// of failing the runs that hit them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// The first wait when the CLI says neither when the limit resets nor how long to wait; it
    /// doubles with each limited run of the provider in a row (with jitter), up to 30 minutes.
    #[serde(default = "default_backoff_s")]
    pub backoff_s: f64,
    /// The longest orch waits: a longer wait ends the run (exit 75, state saved) for a later
    /// `orch run` to pick up.
    #[serde(default = "default_max_wait_s")]
    pub max_wait_s: f64,
    /// The least time between two agent starts on one provider.
    #[serde(default)]
    pub start_spacing_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            backoff_s: default_backoff_s(),
            max_wait_s: default_max_wait_s(),
            start_spacing_ms: 0,
        }
    }
}

fn default_backoff_s() -> f64 {
    60.0
}
fn default_max_wait_s() -> f64 {
    6.0 * 3600.0
}

/// A prompt section: exactly one of `file` (relative to the mission's folder), `text`, or
/// `command` (its stdout, run in the repository root).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Section {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
}

/// The sections orch computes itself (the prompt engine fills them); a mission's own
/// `sections` may not take their names.
pub const BUILTIN_SECTIONS: &[&str] = &[
    "agent",
    "round",
    "model",
    "task",
    "testFailures",
    "sims",
    "history",
    "changes",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<Sim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Sim>,
    /// Where a successful sim's output is published, relative to the repository root.
    #[serde(default = "default_publish_to")]
    pub publish_to: PathBuf,
    /// Convergence: a command run in the published folder after a post-sim is published; exit
    /// 0 ends the run as converged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_when: Option<Command>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sim {
    pub command: Command,
    #[serde(default = "default_sim_timeout")]
    pub timeout_s: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// An argv prefix this sim runs under (for example `srun ... --`). The mission's top-level
    /// `launcher` is for agents only: a sim is often cheap and local, so it opts in here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tests {
    pub command: Command,
    #[serde(default = "default_tests_timeout")]
    pub timeout_s: f64,
    /// How many times a failing run is retried before it counts (flaky tests).
    #[serde(default)]
    pub retries: u32,
    /// Run the tests at the base before the first round when no result for the base is known,
    /// so an already-failing suite is not blamed on the agents. On unless turned off.
    #[serde(default = "yes")]
    pub baseline: bool,
    /// Incremental testing: the suites whose `paths` match the round's changed files run
    /// instead of `command`; a changed file no suite covers makes `command` run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<Suite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    /// Globs of the files this suite covers (`src/ui/**`).
    #[serde(default)]
    pub paths: Vec<String>,
    pub command: Command,
    /// Runs in every round with changes, whatever changed.
    #[serde(default)]
    pub always: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitConfig {
    #[serde(default)]
    pub isolation: Isolation,
    /// Commit each successful round. Off: the changes stay in the tree (and the next round
    /// starts from a dirty tree, so this is for `orch round N` experiments).
    #[serde(default = "yes")]
    pub commit: bool,
    /// A branch of the run's own (`{mission}`, `{date}` allowed): created from HEAD, checked
    /// out for the run, and the user's branch checked out again at its end. `--branch` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A file an agent (or anything else in a round) wrote that is larger than this is left
    /// out of the commit and kept aside in `refs/orch/too-big/...`, with a warning.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

/// 50 MB: past GitHub's warning size; a file that big in an agent's change is nearly always a
/// build artefact, a dump or a sparse file.
fn default_max_file_bytes() -> u64 {
    50_000_000
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            isolation: Isolation::default(),
            commit: true,
            branch: None,
            max_file_bytes: default_max_file_bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Each code agent in its own git worktree, merged in completion order.
    #[default]
    Worktree,
    /// Every agent in the main working tree at once.
    Shared,
}

/// `phaseB`: when the review agents run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PhaseB {
    /// While the tests and the post-sim run, in orch's own worktree of Phase A's merged tree;
    /// their work is merged after the code commit when the tests pass, kept in a ref when the
    /// round is reverted (and after a per-agent revert done again on the tree that stays,
    /// unless `phaseBAfterRevert` is false).
    #[default]
    BesideTests,
    /// After the tests, on the committed tree (the spec's order).
    AfterTests,
}

/// `failedChanges`: the change of a code agent whose run ended badly by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailedChanges {
    /// Merged and tested with the others'; a per-agent revert takes it out if it breaks them.
    #[default]
    Test,
    /// Kept under `refs/orch/failed/round-N/AGENT`, untested (the shared tree: taken out of
    /// the tree by the agent's fingerprint).
    Aside,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertStrategy {
    #[default]
    PerAgent,
    Round,
}

/// `hooks`: each command gets the event as one JSON line on standard input and `ORCH_*`
/// variables, in the repository root, with `timeoutS` to finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hooks {
    /// After every round (`roundEnd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_end: Option<Command>,
    /// When something needs a person: a revert, a merge conflict, a failed or timed-out agent,
    /// a stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<Command>,
    /// Once the run ends (`runEnd`, with its exit status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_end: Option<Command>,
    #[serde(default = "default_hook_timeout")]
    pub timeout_s: f64,
}

fn default_hook_timeout() -> f64 {
    30.0
}

/// Task decomposition: a task that timed out, or failed `splitAfter` times, is handed to the
/// `splitBy` agent to be broken into smaller ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TasksConfig {
    #[serde(default = "default_split_after")]
    pub split_after: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<String>,
}

fn default_split_after() -> u32 {
    2
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopConfig {
    /// Stop after this many rounds in a row that committed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_empty_rounds: Option<u32>,
    /// The circuit breaker: stop after this many rounds in a row whose tests failed.
    #[serde(default = "default_after_test_failures")]
    pub after_test_failures: u32,
}

impl Default for StopConfig {
    fn default() -> Self {
        StopConfig {
            after_empty_rounds: None,
            after_test_failures: default_after_test_failures(),
        }
    }
}

fn default_after_test_failures() -> u32 {
    3
}

/// Price of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelPrice {
    // Spelled out: `rename_all` would give `inputPerMTok` too, but the file format should not hang
    // on how serde splits `m_tok`.
    #[serde(rename = "inputPerMTok")]
    pub input_per_m_tok: f64,
    #[serde(rename = "outputPerMTok")]
    pub output_per_m_tok: f64,
}

/// The mission's `pricing`: model name (as the mission spells it) -> price.
pub type Pricing = BTreeMap<String, ModelPrice>;

fn default_rounds() -> u32 {
    10
}
fn default_concurrency() -> usize {
    4
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(".orch")
}
fn default_max_prompt_bytes() -> usize {
    200_000
}
fn default_grace() -> f64 {
    5.0
}
fn default_publish_to() -> PathBuf {
    PathBuf::from("sim-data")
}
fn default_sim_timeout() -> f64 {
    600.0
}
fn default_tests_timeout() -> f64 {
    1800.0
}
fn yes() -> bool {
    true
}

impl Mission {
    /// Whether Phase B runs (again) after this revert (`whole_round`: the round was reverted
    /// whole): `phaseBAfterRevert` when set; unset, only after a per-agent revert beside the
    /// tests.
    pub fn phase_b_after_revert(&self, whole_round: bool) -> bool {
        self.phase_b_after_revert
            .unwrap_or(self.phase_b == PhaseB::BesideTests && !whole_round)
    }

    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.kill_grace_s)
    }

    /// `agent`'s stuck rules: its own keys, else the mission's, else the defaults for a CLI
    /// that prints every token (`every_token`: the adapter knows from the command) or not. 0 is
    /// off.
    pub fn stuck_for(&self, agent: &Agent, every_token: bool) -> StuckLimits {
        let own = agent.stuck.as_ref();
        let all = self.stuck.as_ref();
        let idle = own.and_then(|s| s.idle_s).or(all.and_then(|s| s.idle_s));
        let repeats = own.and_then(|s| s.repeats).or(all.and_then(|s| s.repeats));
        StuckLimits::of(idle, repeats, every_token)
    }
}

impl Agent {
    /// What this agent inherits of orch's environment: its own `inheritEnv`, else the
    /// mission's; `None` is everything.
    pub fn inherit_env<'m>(&'m self, mission: &'m Mission) -> Option<&'m [String]> {
        match self.inherit_env.as_ref().or(mission.inherit_env.as_ref()) {
            Some(InheritEnv::Only(list)) => Some(list),
            _ => None,
        }
    }

    /// This agent's sandbox: its own `sandbox`, else the mission's, else none.
    pub fn sandbox(&self, mission: &Mission) -> Sandbox {
        self.sandbox
            .as_ref()
            .or(mission.sandbox.as_ref())
            .cloned()
            .unwrap_or_default()
    }
}
