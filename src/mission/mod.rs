//! The mission file: its schema (docs/src/mission.md), its defaults, and its validation.
//!
//! It is the bottom of the data model and imports nothing above it. What validation must ask
//! of the agent CLIs (which names `cli` takes, whether an agent's command can keep a session)
//! comes in through [`CliCatalog`], which the agents layer implements and the caller hands to
//! [`Mission::parse`]; the names of the built-in prompt sections and the `pricing` table's
//! types live here, since the file's schema is theirs.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere) and goes through `serde_path_to_error`
//! so that a typo is reported with its key path (`agents[2].comand`) and the file it is in.
//! After parsing, [`Mission::validate`] checks what serde cannot (name syntax, duplicate names,
//! unknown placeholders, references between agents) and reports the same way. Everything the
//! rest of orch reads from the mission goes through the accessors here, so a default lives in
//! one place. A key is never accepted and then ignored: a key exists here only once orch does
//! what it says.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::roundlog::Phase;

/// What a mission's validation asks of the agent CLIs, which live above the data model
/// (`agents::Adapters` answers from the adapters' registry).
pub trait CliCatalog {
    /// The names an agent's `cli` may take, in the order an error lists them.
    fn names(&self) -> &'static [&'static str];

    /// Whether `agent`'s command can keep a session (`session: true`); `Err` says why not.
    fn session_support(&self, agent: &Agent) -> std::result::Result<(), String>;
}

thread_local! {
    /// The names of [`CliCatalog::names`] while [`Mission::parse`] deserializes: serde's derive
    /// cannot carry them to the `cli` field, and checking them there keeps serde's error (with
    /// its line and column) and its place among the other errors of the file.
    static CLI_NAMES: Cell<Option<&'static [&'static str]>> = const { Cell::new(None) };
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

/// Placeholders allowed inside an agent's argv.
const AGENT_PLACEHOLDERS: &[&str] = &[
    "model",
    "prompt_file",
    "round",
    "agent",
    "task_file",
    "workdir",
];
/// How many runs one session serves when `sessionMaxRounds` is not given: past this, a long
/// conversation costs more to resume (its context is re-read) than a fresh full prompt.
pub const DEFAULT_SESSION_ROUNDS: u32 = 8;
/// The bound on `sessionMaxRounds`.
pub const MAX_SESSION_ROUNDS: u32 = 1000;
/// Placeholders allowed inside a sim's argv.
const SIM_PLACEHOLDERS: &[&str] = &["out", "round"];

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
    /// Provider limits: how to wait out rate and usage limits, and how to space agent starts.
    #[serde(default)]
    pub limits: Limits,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agent {
    pub name: String,
    pub phase: Phase,
    pub command: Command,
    #[serde(default)]
    pub stdin: StdinMode,
    /// The prompt template, relative to the mission file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default = "default_escalate_after")]
    pub escalate_after: u32,
    /// Successes in a row after which the agent steps back down its ladder; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deescalate_after: Option<u32>,
    #[serde(default = "default_agent_timeout")]
    pub timeout_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_timeout: Option<AdaptiveTimeout>,
    #[serde(default)]
    pub when: When,
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<Vec<String>>,
    /// Agents whose work this one waits for: it is `blocked` until each reports `complete` (or
    /// `all-done`) in its handoff file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Globs of the files this agent owns; a change outside them is a violation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owns: Vec<String>,
    /// This agent's `inheritEnv`, instead of the mission's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit_env: Option<InheritEnv>,
    /// Keep the CLI's session from run to run (Claude Code `--session-id`/`--resume`, Codex
    /// `exec resume`): a resumed run's prompt is the `{{changes}}` section alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session: bool,
    /// The most runs one session serves; the next run starts a new one with the full prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_max_rounds: Option<u32>,
    /// Which agent-CLI adapter reads its runs, by its name (`claude`, `codex`, `gemini`,
    /// `aider`, `plain`: the [`CliCatalog`]'s); by default the one its command's program names.
    #[serde(
        default,
        deserialize_with = "known_cli",
        skip_serializing_if = "Option::is_none"
    )]
    pub cli: Option<String>,
    /// What this agent may spend over the whole state's life (`state.json` keeps its spend):
    /// once spent it is not started again (decision `over budget`), and a CLI that can cap one
    /// run (Claude Code) is given the rest. The original orchestrator's `maxBudgetUsd` is read
    /// as this.
    #[serde(
        default,
        alias = "maxBudgetUsd",
        skip_serializing_if = "Option::is_none"
    )]
    pub budget_usd: Option<f64>,
    /// Who takes this agent's pending tasks once its `budgetUsd` is spent (they move to that
    /// agent's queue, each with a note saying so), while that agent may still start; without
    /// it they wait for the budget to be raised, and `orch status` and the report say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_budget_tasks_to: Option<String>,
}

/// `inheritEnv`: `"all"`, or the names (and `*`/`?` globs) of the variables passed through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InheritEnv {
    All(InheritAll),
    Only(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InheritAll {
    All,
}

impl InheritEnv {
    /// Whether variable `name` passes; `ORCH_*` always does (orch sets its own anyway).
    pub fn passes(&self, name: &str) -> bool {
        match self {
            InheritEnv::All(_) => true,
            InheritEnv::Only(list) => {
                name.starts_with("ORCH_") || list.iter().any(|p| crate::glob::matches(p, name))
            }
        }
    }
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

/// An argv array, or a string run with `sh -c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Argv(Vec<String>),
    Shell(String),
}

impl Command {
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(v) => v.clone(),
            Command::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdinMode {
    /// Standard input is empty (never the terminal).
    #[default]
    None,
    /// The rendered prompt is fed on standard input.
    Prompt,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdaptiveTimeout {
    #[serde(default = "default_factor")]
    pub factor: f64,
    #[serde(default = "default_min_s")]
    pub min_s: f64,
    #[serde(default = "default_max_s")]
    pub max_s: f64,
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
}

/// When an agent takes part in a round (its `when` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum When {
    Keyword(WhenKeyword),
    Every { every: u32 },
    Command { command: Command },
}

impl Default for When {
    fn default() -> Self {
        When::Keyword(WhenKeyword::Always)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenKeyword {
    Always,
    Tasks,
}

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
fn default_escalate_after() -> u32 {
    2
}
fn default_agent_timeout() -> f64 {
    1800.0
}
fn default_priority() -> u8 {
    2
}
fn default_factor() -> f64 {
    2.0
}
fn default_min_s() -> f64 {
    60.0
}
fn default_max_s() -> f64 {
    3600.0
}
fn default_min_samples() -> usize {
    3
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

/// A mission as loaded: the parsed file and where it came from (prompt paths are relative to
/// its folder).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub mission: Mission,
    pub file: PathBuf,
    pub dir: PathBuf,
}

/// The name `-m -` goes by: standard input.
pub const STDIN: &str = "-";

/// Where the mission given as `-m PATH` is, seen from `dir`: `-` (standard input) stays `-`,
/// anything else is joined to `dir` (an absolute path stays itself).
pub fn locate(dir: &Path, path: &Path) -> PathBuf {
    if path.as_os_str() == STDIN {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// Standard input, read once: a command may load its mission more than once (the sequence
/// check, then the mission; the state folder, then the workspace), and stdin can be read only
/// once.
fn stdin_text() -> Result<String> {
    static TEXT: std::sync::OnceLock<std::result::Result<String, String>> =
        std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map(|_| s)
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| {
        Error::Usage(format!(
            "reading the mission from standard input (-m -): {e}"
        ))
    })
}

impl Loaded {
    /// Reads and validates a mission file; `-` reads standard input, and its relative paths
    /// (prompts, section files) then resolve from the current folder.
    pub fn from_path(path: &Path, clis: &dyn CliCatalog) -> Result<Loaded> {
        let (text, dir) = if path.as_os_str() == STDIN {
            let cwd =
                std::env::current_dir().map_err(|e| Error::io("reading the current folder", e))?;
            (stdin_text()?, cwd)
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::Usage(format!(
                    "no mission file at {} (write one with `orch init`, or pass -m FILE)",
                    path.display()
                )),
                _ => Error::io(format!("reading mission {}", path.display()), e),
            })?;
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| ".".into());
            (text, dir)
        };
        // Errors about a mission read from stdin name it as such.
        let shown = if path.as_os_str() == STDIN {
            Path::new("<stdin>")
        } else {
            path
        };
        let mission = Mission::parse(&text, shown, clis)?;
        Ok(Loaded {
            mission,
            file: shown.to_path_buf(),
            dir,
        })
    }
}

impl Mission {
    /// Whether Phase B runs (again) after this revert (`whole_round`: the round was reverted
    /// whole): `phaseBAfterRevert` when set; unset, only after a per-agent revert beside the
    /// tests.
    pub fn phase_b_after_revert(&self, whole_round: bool) -> bool {
        self.phase_b_after_revert
            .unwrap_or(self.phase_b == PhaseB::BesideTests && !whole_round)
    }

    /// Parses and validates mission text; `file` is only used in error messages, `clis` is
    /// what the agent CLIs say (pass `&agents::Adapters`).
    pub fn parse(text: &str, file: &Path, clis: &dyn CliCatalog) -> Result<Mission> {
        let text = strip_comments(text);
        let de = &mut serde_json::Deserializer::from_str(&text);
        let before = CLI_NAMES.replace(Some(clis.names()));
        let parsed: std::result::Result<Mission, _> = serde_path_to_error::deserialize(de);
        CLI_NAMES.set(before);
        let mission = parsed.map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::mission(file, path, explain_serde(&inner))
        })?;
        mission.validate(file, clis)?;
        Ok(mission)
    }

    /// Checks what the schema cannot express. Errors name the key path; the checks run in the
    /// order of the keys' sections below, so the first error reported stays the same.
    pub fn validate(&self, file: &Path, clis: &dyn CliCatalog) -> Result<()> {
        self.check_top_level(file)?;
        let mut seen = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            check_agent_identity(file, i, a, &mut seen)?;
            self.check_agent_budget(file, i, a)?;
            check_adaptive_timeout(file, i, a)?;
            self.check_agent_schedule(file, i, a)?;
            check_agent_session(file, clis, i, a)?;
        }
        self.check_sections(file)?;
        self.check_sims(file)?;
        self.check_tests(file)?;
        self.check_tasks_git_hooks(file)?;
        self.check_stop_limits_pricing(file)?;
        self.check_bounds(file)?;
        self.check_dependency_cycles(file)?;
        check_inherit_env(file, "inheritEnv", self.inherit_env.as_ref())?;
        for (i, a) in self.agents.iter().enumerate() {
            check_inherit_env(
                file,
                &format!("agents[{i}].inheritEnv"),
                a.inherit_env.as_ref(),
            )?;
            check_path_inherited(file, i, a, self.inherit_env.as_ref())?;
        }
        Ok(())
    }

    /// The mission's own keys: name, agents present, concurrency, budget, grace, state folder,
    /// launcher.
    fn check_top_level(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if self.name.trim().is_empty() {
            return err("name".into(), "must not be empty".into());
        }
        if self.agents.is_empty() {
            return err("agents".into(), "a mission needs at least one agent".into());
        }
        if self.max_concurrency == 0 {
            return err("maxConcurrency".into(), "must be at least 1".into());
        }
        if let Some(b) = self.budget_usd {
            if !(b.is_finite() && b >= 0.0) {
                return err(
                    "budgetUsd".into(),
                    format!("must be a non-negative number, not {b}"),
                );
            }
        }
        if !(self.kill_grace_s.is_finite() && self.kill_grace_s >= 0.0) {
            return err("killGraceS".into(), "must be a non-negative number".into());
        }
        check_state_dir_shape(file, &self.state_dir)?;
        check_relative(file, "stateDir", &self.state_dir)?;
        if let Some(l) = &self.launcher {
            check_argv(file, "launcher", l, AGENT_PLACEHOLDERS)?;
        }
        Ok(())
    }

    /// An agent's money keys: `timeoutS`, `budgetUsd` and where its tasks go over budget.
    fn check_agent_budget(&self, file: &Path, i: usize, a: &Agent) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        let at = |k: &str| format!("agents[{i}].{k}");
        check_seconds(file, &at("timeoutS"), a.timeout_s)?;
        if let Some(b) = a.budget_usd {
            if !(b.is_finite() && b > 0.0 && b <= 1e9) {
                return err(
                    at("budgetUsd"),
                    format!(
                        "agent {}: must be a number of dollars above 0 and at most 1e9, not {b}",
                        a.name
                    ),
                );
            }
        }
        if let Some(to) = &a.over_budget_tasks_to {
            let why = if a.budget_usd.is_none() {
                Some(format!(
                    "agent {:?} has no budgetUsd (set one, or remove this key)",
                    a.name
                ))
            } else if to == &a.name {
                Some("an agent cannot hand its tasks to itself".to_string())
            } else if self.agent(to).is_none() {
                Some(format!("no agent named {to:?} in this mission"))
            } else {
                None
            };
            if let Some(why) = why {
                return err(at("overBudgetTasksTo"), why);
            }
        }
        Ok(())
    }

    /// When and after whom an agent runs, and what it owns: `priority`, `when`, `dependsOn`,
    /// `owns`, `env`.
    fn check_agent_schedule(&self, file: &Path, i: usize, a: &Agent) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        let at = |k: &str| format!("agents[{i}].{k}");
        if !(1..=3).contains(&a.priority) {
            return err(
                at("priority"),
                format!("must be 1, 2 or 3 (1 runs first), not {}", a.priority),
            );
        }
        match &a.when {
            When::Every { every: 0 } => return err(at("when.every"), "must be at least 1".into()),
            When::Command { command } => {
                check_command(file, &at("when.command"), command, &["round", "agent"])?
            }
            _ => {}
        }
        for (j, d) in a.depends_on.iter().enumerate() {
            if d == &a.name {
                return err(
                    at(&format!("dependsOn[{j}]")),
                    "an agent cannot depend on itself".into(),
                );
            }
            if self.agent(d).is_none() {
                return err(
                    at(&format!("dependsOn[{j}]")),
                    format!("no agent named {d:?} in this mission"),
                );
            }
        }
        for (j, p) in a.owns.iter().enumerate() {
            if let Err(m) = crate::glob::validate(p) {
                return err(at(&format!("owns[{j}]")), m);
            }
        }
        for k in a.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return err(at("env"), format!("{k:?} is not a valid variable name"));
            }
        }
        Ok(())
    }

    /// `maxPromptBytes` and the mission's own prompt `sections`.
    fn check_sections(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if self.max_prompt_bytes < 1024 {
            return err("maxPromptBytes".into(), "must be at least 1024".into());
        }
        for (name, sec) in &self.sections {
            let at = |k: &str| format!("sections.{name}{k}");
            if BUILTIN_SECTIONS.contains(&name.as_str()) {
                return err(
                    at(""),
                    format!("{name:?} is a built-in section; pick another name"),
                );
            }
            let sources =
                sec.file.is_some() as u8 + sec.text.is_some() as u8 + sec.command.is_some() as u8;
            if sources != 1 {
                return err(
                    at(""),
                    "give exactly one of `file`, `text` or `command`".into(),
                );
            }
            if let Some(c) = &sec.command {
                check_command(file, &at(".command"), c, &[])?;
            }
            if sec.max_bytes == Some(0) {
                return err(at(".maxBytes"), "must be at least 1".into());
            }
        }
        Ok(())
    }

    /// The `sims` block: where sims publish, and each sim's command, timeout and launcher.
    fn check_sims(&self, file: &Path) -> Result<()> {
        let Some(s) = &self.sims else {
            return Ok(());
        };
        check_relative(file, "sims.publishTo", &s.publish_to)?;
        for (k, sim) in [("pre", &s.pre), ("post", &s.post)] {
            if let Some(sim) = sim {
                check_command(
                    file,
                    &format!("sims.{k}.command"),
                    &sim.command,
                    SIM_PLACEHOLDERS,
                )?;
                check_seconds(file, &format!("sims.{k}.timeoutS"), sim.timeout_s)?;
                if let Some(l) = &sim.launcher {
                    check_argv(file, &format!("sims.{k}.launcher"), l, SIM_PLACEHOLDERS)?;
                }
            }
        }
        Ok(())
    }

    /// The `tests` block: its command, timeout and named suites.
    fn check_tests(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        let Some(t) = &self.tests else {
            return Ok(());
        };
        check_command(file, "tests.command", &t.command, &["round"])?;
        check_seconds(file, "tests.timeoutS", t.timeout_s)?;
        let mut names = HashSet::new();
        for (i, suite) in t.suites.iter().enumerate() {
            let at = |k: &str| format!("tests.suites[{i}].{k}");
            if !valid_agent_name(&suite.name) {
                return err(
                    at("name"),
                    format!(
                        "{:?} is not a valid suite name (lowercase letters, digits, `-`, `_`)",
                        suite.name
                    ),
                );
            }
            if !names.insert(suite.name.as_str()) {
                return err(at("name"), format!("suite {:?} is named twice", suite.name));
            }
            check_command(file, &at("command"), &suite.command, &["round"])?;
            if suite.paths.is_empty() && !suite.always {
                return err(
                    at("paths"),
                    "a suite needs `paths` globs, or `always: true`".into(),
                );
            }
            for (j, p) in suite.paths.iter().enumerate() {
                if let Err(m) = crate::glob::validate(p) {
                    return err(at(&format!("paths[{j}]")), m);
                }
            }
        }
        Ok(())
    }

    /// The `tasks`, `git.branch` and `hooks` blocks.
    fn check_tasks_git_hooks(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if let Some(t) = &self.tasks {
            if t.split_after == 0 {
                return err("tasks.splitAfter".into(), "must be at least 1".into());
            }
            if let Some(by) = &t.split_by {
                if self.agent(by).is_none() {
                    return err(
                        "tasks.splitBy".into(),
                        format!("no agent named {by:?} in this mission"),
                    );
                }
            }
        }
        if let Some(b) = &self.git.branch {
            if b.trim().is_empty() {
                return err("git.branch".into(), "must not be empty".into());
            }
            check_placeholders(file, "git.branch", b, &["mission", "date"])?;
        }
        if let Some(h) = &self.hooks {
            for (k, c) in [
                ("roundEnd", &h.round_end),
                ("attention", &h.attention),
                ("runEnd", &h.run_end),
            ] {
                if let Some(c) = c {
                    check_hook(file, &format!("hooks.{k}"), c)?;
                }
            }
            check_seconds(file, "hooks.timeoutS", h.timeout_s)?;
        }
        Ok(())
    }

    /// The `stop` rules, `sims.stopWhen`, the `limits` waits and the `pricing` table.
    fn check_stop_limits_pricing(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if self.stop.after_test_failures == 0 {
            return err("stop.afterTestFailures".into(), "must be at least 1".into());
        }
        if let Some(c) = self.sims.as_ref().and_then(|s| s.stop_when.as_ref()) {
            check_command(file, "sims.stopWhen", c, &["round"])?;
        }
        if !(self.limits.backoff_s.is_finite() && self.limits.backoff_s > 0.0) {
            return err(
                "limits.backoffS".into(),
                "must be a positive number of seconds".into(),
            );
        }
        if !(self.limits.max_wait_s.is_finite() && self.limits.max_wait_s >= 0.0) {
            return err(
                "limits.maxWaitS".into(),
                "must be a non-negative number of seconds".into(),
            );
        }
        if self.stop.after_empty_rounds == Some(0) {
            return err("stop.afterEmptyRounds".into(), "must be at least 1".into());
        }
        for (model, p) in &self.pricing {
            for (k, v) in [
                ("inputPerMTok", p.input_per_m_tok),
                ("outputPerMTok", p.output_per_m_tok),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return err(
                        format!("pricing.{model}.{k}"),
                        "must be a non-negative number".into(),
                    );
                }
            }
        }
        Ok(())
    }

    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.kill_grace_s)
    }
}

// ---------------------------------------------------------------------------------------------
// Bounds and the dependency graph: every number in a mission has a range, so no value (a
// `killGraceS` of 1e300, four billion rounds) reaches a `Duration`, an allocation or an addition
// that would panic or overflow; and `dependsOn` is checked as a graph, not key by key.

/// The most rounds a mission (or `--rounds N`) may ask for.
pub const MAX_ROUNDS: u32 = 1_000_000;
/// The most agents that may run at once (each is a worker thread and a process group).
pub const MAX_CONCURRENCY: usize = 1024;
/// The most candidate trees a per-agent revert tests at once (each a worktree and a test run).
pub const MAX_BISECT_JOBS: usize = 64;
/// The longest kill grace: an hour between SIGTERM and SIGKILL.
pub const MAX_GRACE_S: f64 = 3600.0;
/// The most test retries (each is a full test run).
pub const MAX_RETRIES: u32 = 100;
/// The largest prompt (and prompt section) orch renders.
pub const MAX_PROMPT_BYTES: usize = 64 << 20;
/// The largest adaptive-timeout factor.
pub const MAX_FACTOR: f64 = 1000.0;
/// The most past runs an adaptive timeout may wait for, and the most of any "N in a row"
/// counter (`escalateAfter`, `stop.afterTestFailures`, ...).
pub const MAX_COUNT: u32 = 10_000;

impl Mission {
    /// Every number in the mission within its range (see the constants above).
    fn check_bounds(&self, file: &Path) -> Result<()> {
        self.check_run_bounds(file)?;
        for (i, a) in self.agents.iter().enumerate() {
            check_agent_bounds(file, i, a)?;
        }
        self.check_stop_money_bounds(file)
    }

    /// The run's own numbers: rounds, concurrency, bisect jobs, grace, prompt sizes.
    fn check_run_bounds(&self, file: &Path) -> Result<()> {
        count(file, "rounds".into(), self.rounds, 1, MAX_ROUNDS)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return out_of(
                file,
                "maxConcurrency".into(),
                format!("from 1 to {MAX_CONCURRENCY}"),
                self.max_concurrency.to_string(),
            );
        }
        if let Some(j) = self.bisect_jobs {
            if !(1..=MAX_BISECT_JOBS).contains(&j) {
                return out_of(
                    file,
                    "bisectJobs".into(),
                    format!("from 1 to {MAX_BISECT_JOBS}"),
                    j.to_string(),
                );
            }
        }
        if !(self.kill_grace_s.is_finite() && (0.0..=MAX_GRACE_S).contains(&self.kill_grace_s)) {
            return out_of(
                file,
                "killGraceS".into(),
                format!("a number of seconds from 0 to {MAX_GRACE_S}"),
                self.kill_grace_s.to_string(),
            );
        }
        if !(1024..=MAX_PROMPT_BYTES).contains(&self.max_prompt_bytes) {
            return out_of(
                file,
                "maxPromptBytes".into(),
                format!("from 1024 to {MAX_PROMPT_BYTES}"),
                self.max_prompt_bytes.to_string(),
            );
        }
        for (name, sec) in &self.sections {
            if let Some(b) = sec.max_bytes {
                if !(1..=MAX_PROMPT_BYTES).contains(&b) {
                    return out_of(
                        file,
                        format!("sections.{name}.maxBytes"),
                        format!("from 1 to {MAX_PROMPT_BYTES}"),
                        b.to_string(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The counters after the agents: test retries, task splitting, the stop rules, and the
    /// dollar figures (budget, pricing).
    fn check_stop_money_bounds(&self, file: &Path) -> Result<()> {
        if let Some(t) = &self.tests {
            count(file, "tests.retries".into(), t.retries, 0, MAX_RETRIES)?;
        }
        if let Some(t) = &self.tasks {
            count(file, "tasks.splitAfter".into(), t.split_after, 1, MAX_COUNT)?;
        }
        count(
            file,
            "stop.afterTestFailures".into(),
            self.stop.after_test_failures,
            1,
            MAX_COUNT,
        )?;
        if let Some(n) = self.stop.after_empty_rounds {
            count(file, "stop.afterEmptyRounds".into(), n, 1, MAX_ROUNDS)?;
        }
        if let Some(b) = self.budget_usd {
            if !(b.is_finite() && (0.0..=1e9).contains(&b)) {
                return out_of(
                    file,
                    "budgetUsd".into(),
                    "a number of dollars from 0 to 1e9".into(),
                    b.to_string(),
                );
            }
        }
        for (model, p) in &self.pricing {
            for (k, v) in [
                ("inputPerMTok", p.input_per_m_tok),
                ("outputPerMTok", p.output_per_m_tok),
            ] {
                if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
                    return out_of(
                        file,
                        format!("pricing.{model}.{k}"),
                        "a number of dollars from 0 to 1e6".into(),
                        v.to_string(),
                    );
                }
            }
        }
        Ok(())
    }

    /// `dependsOn` must not loop: agents in a cycle would each wait for the other until the
    /// stall guard ended the run. The error names the cycle (`a -> b -> a`).
    fn check_dependency_cycles(&self, file: &Path) -> Result<()> {
        // 0: not seen, 1: on the current path, 2: done (no cycle through it).
        let mut mark = vec![0u8; self.agents.len()];
        let index = |name: &str| self.agents.iter().position(|a| a.name == name);
        fn visit(
            m: &Mission,
            i: usize,
            mark: &mut [u8],
            path: &mut Vec<usize>,
            index: &dyn Fn(&str) -> Option<usize>,
        ) -> Option<Vec<usize>> {
            mark[i] = 1;
            path.push(i);
            for d in &m.agents[i].depends_on {
                let Some(j) = index(d) else { continue };
                if mark[j] == 1 {
                    let from = path.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                if mark[j] == 0 {
                    if let Some(c) = visit(m, j, mark, path, index) {
                        return Some(c);
                    }
                }
            }
            path.pop();
            mark[i] = 2;
            None
        }
        for i in 0..self.agents.len() {
            if mark[i] != 0 {
                continue;
            }
            if let Some(cycle) = visit(self, i, &mut mark, &mut Vec::new(), &index) {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&k| self.agents[k].name.as_str())
                    .collect();
                return Err(Error::mission(
                    file,
                    format!("agents[{}].dependsOn", cycle[0]),
                    format!(
                        "a dependency cycle: {} (each would wait for the other forever)",
                        names.join(" -> ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Who agent `i` is and what it runs: a valid, unique name (`seen` holds the names before it),
/// its command and launcher, its model or model ladder and when the ladder moves.
fn check_agent_identity<'m>(
    file: &Path,
    i: usize,
    a: &'m Agent,
    seen: &mut HashSet<&'m str>,
) -> Result<()> {
    let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
    let at = |k: &str| format!("agents[{i}].{k}");
    if !valid_agent_name(&a.name) {
        return err(
            at("name"),
            format!(
                "{:?} is not a valid agent name: use lowercase letters, digits, `-` and `_`, \
                 starting with a letter or digit (it becomes a file name)",
                a.name
            ),
        );
    }
    if !seen.insert(a.name.as_str()) {
        return err(at("name"), format!("agent {:?} is named twice", a.name));
    }
    check_command(file, &at("command"), &a.command, AGENT_PLACEHOLDERS)?;
    if let Some(l) = &a.launcher {
        check_argv(file, &at("launcher"), l, AGENT_PLACEHOLDERS)?;
    }
    if a.model.is_some() && !a.models.is_empty() {
        return err(
            at("model"),
            "give either `model` or a `models` ladder, not both".into(),
        );
    }
    if a.models.iter().any(|m| m.trim().is_empty()) {
        return err(at("models"), "model names must not be empty".into());
    }
    if a.escalate_after == 0 {
        return err(at("escalateAfter"), "must be at least 1".into());
    }
    if a.deescalate_after == Some(0) {
        return err(at("deescalateAfter"), "must be at least 1".into());
    }
    Ok(())
}

/// Agent `i`'s `adaptiveTimeout`: a positive factor, a sane range of seconds, samples.
fn check_adaptive_timeout(file: &Path, i: usize, a: &Agent) -> Result<()> {
    let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
    let at = |k: &str| format!("agents[{i}].{k}");
    let Some(t) = &a.adaptive_timeout else {
        return Ok(());
    };
    if !(t.factor.is_finite() && t.factor > 0.0) {
        return err(at("adaptiveTimeout.factor"), "must be positive".into());
    }
    check_seconds(file, &at("adaptiveTimeout.minS"), t.min_s)?;
    check_seconds(file, &at("adaptiveTimeout.maxS"), t.max_s)?;
    if t.min_s > t.max_s {
        return err(
            at("adaptiveTimeout"),
            format!("minS ({}) is above maxS ({})", t.min_s, t.max_s),
        );
    }
    if t.min_samples == 0 {
        return err(
            at("adaptiveTimeout.minSamples"),
            "must be at least 1".into(),
        );
    }
    Ok(())
}

/// Agent `i`'s `session` (its CLI must be able to resume one) and `sessionMaxRounds`.
fn check_agent_session(file: &Path, clis: &dyn CliCatalog, i: usize, a: &Agent) -> Result<()> {
    let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
    let at = |k: &str| format!("agents[{i}].{k}");
    if a.session {
        if let Err(why) = clis.session_support(a) {
            return err(
                at("session"),
                format!("agent {:?} cannot keep a session: {why}", a.name),
            );
        }
    }
    match a.session_max_rounds {
        Some(_) if !a.session => err(
            at("sessionMaxRounds"),
            format!(
                "agent {:?} has no session (set `session: true`, or remove this key)",
                a.name
            ),
        ),
        Some(n) if !(1..=MAX_SESSION_ROUNDS).contains(&n) => err(
            at("sessionMaxRounds"),
            format!("must be 1 to {MAX_SESSION_ROUNDS}, not {n}"),
        ),
        _ => Ok(()),
    }
}

/// The error for a number out of its range: "must be RANGE, not V" at key `at`.
fn out_of(file: &Path, at: String, range: String, v: String) -> Result<()> {
    Err(Error::mission(
        file,
        at,
        format!("must be {range}, not {v}"),
    ))
}

/// A counter at key `at` within `min..=max`.
fn count(file: &Path, at: String, v: u32, min: u32, max: u32) -> Result<()> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        out_of(file, at, format!("from {min} to {max}"), v.to_string())
    }
}

/// Agent `i`'s numbers: its ladder counters, `when.every`, its adaptive timeout.
fn check_agent_bounds(file: &Path, i: usize, a: &Agent) -> Result<()> {
    let at = |k: &str| format!("agents[{i}].{k}");
    count(file, at("escalateAfter"), a.escalate_after, 1, MAX_COUNT)?;
    if let Some(d) = a.deescalate_after {
        count(file, at("deescalateAfter"), d, 1, MAX_COUNT)?;
    }
    if let When::Every { every } = a.when {
        count(file, at("when.every"), every, 1, MAX_ROUNDS)?;
    }
    if let Some(t) = &a.adaptive_timeout {
        if !(t.factor.is_finite() && t.factor > 0.0 && t.factor <= MAX_FACTOR) {
            return out_of(
                file,
                at("adaptiveTimeout.factor"),
                format!("above 0 and at most {MAX_FACTOR}"),
                t.factor.to_string(),
            );
        }
        if !(1..=MAX_COUNT as usize).contains(&t.min_samples) {
            return out_of(
                file,
                at("adaptiveTimeout.minSamples"),
                format!("from 1 to {MAX_COUNT}"),
                t.min_samples.to_string(),
            );
        }
    }
    Ok(())
}

/// The repository root itself (`.`, `./`, `""`) cannot be the state folder: orch would write its
/// journal, worktrees and logs among the user's files. (The checks that need the repository,
/// git's own folders and tracked files, are `engine::preflight`'s.)
fn check_state_dir_shape(file: &Path, p: &Path) -> Result<()> {
    use std::path::Component;
    if p.components().all(|c| matches!(c, Component::CurDir)) {
        return Err(Error::mission(
            file,
            "stateDir",
            format!(
                "{:?} is the repository root; orch needs a folder of its own there (the default is \".orch\")",
                p.display().to_string()
            ),
        ));
    }
    if p.components().any(|c| {
        matches!(c, Component::Normal(n) if n.to_str().is_some_and(|n| n.eq_ignore_ascii_case(".git")))
    }) {
        return Err(Error::mission(
            file,
            "stateDir",
            format!(
                "{:?} is inside git's own folder; orch's state would corrupt the repository (the default is \".orch\")",
                p.display().to_string()
            ),
        ));
    }
    Ok(())
}

/// Variable names and globs: letters, digits, `_`, and `*`/`?`.
fn check_inherit_env(file: &Path, at: &str, v: Option<&InheritEnv>) -> Result<()> {
    if let Some(InheritEnv::Only(list)) = v {
        for (j, p) in list.iter().enumerate() {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*' || c == '?');
            if !ok {
                return Err(Error::mission(
                    file,
                    format!("{at}[{j}]"),
                    format!(
                        "{p:?} is not a variable name or glob (letters, digits, `_`, `*`, `?`)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An `inheritEnv` list that leaves agent `i` without `PATH` (not listed, not in its `env`):
/// the agent would start with no search path, and whatever its CLI runs in turn (`node` behind
/// a `#!/usr/bin/env node`, git, the tests, a build tool) is looked for in the system's default
/// folders only (libc's `/bin:/usr/bin`, a shell's own default), so a CLI or tool installed
/// elsewhere (nvm, `~/.local/bin`, `~/.cargo/bin`) fails, every round.
/// Refused rather than patched by passing orch's `PATH` anyway: the list stays exactly what
/// the agent gets.
fn check_path_inherited(
    file: &Path,
    i: usize,
    agent: &Agent,
    mission: Option<&InheritEnv>,
) -> Result<()> {
    let (at, list) = match (agent.inherit_env.as_ref(), mission) {
        (Some(own), _) => (format!("agents[{i}].inheritEnv"), own),
        (None, Some(m)) => ("inheritEnv".to_string(), m),
        (None, None) => return Ok(()),
    };
    if list.passes("PATH") || agent.env.contains_key("PATH") {
        return Ok(());
    }
    Err(Error::mission(
        file,
        at,
        format!(
            "lists no PATH, so agent {:?} would start with no search path: what its CLI runs \
             (node, git, the tests, a build tool) is found only in the system's default folders \
             (/bin, /usr/bin), not where nvm, ~/.local/bin or ~/.cargo/bin put it; add \"PATH\" \
             to the list, or set agents[{i}].env.PATH",
            agent.name
        ),
    ))
}

impl Agent {
    /// The model ladder: `models`, or the single `model`, or one empty rung.
    /// The most runs one session of this agent serves.
    pub fn session_rounds(&self) -> u32 {
        self.session_max_rounds.unwrap_or(DEFAULT_SESSION_ROUNDS)
    }

    pub fn ladder(&self) -> Vec<String> {
        if !self.models.is_empty() {
            self.models.clone()
        } else {
            vec![self.model.clone().unwrap_or_default()]
        }
    }

    /// What this agent inherits of orch's environment: its own `inheritEnv`, else the
    /// mission's; `None` is everything.
    pub fn inherit_env<'m>(&'m self, mission: &'m Mission) -> Option<&'m [String]> {
        match self.inherit_env.as_ref().or(mission.inherit_env.as_ref()) {
            Some(InheritEnv::Only(list)) => Some(list),
            _ => None,
        }
    }

    pub fn model_at(&self, index: usize) -> String {
        let ladder = self.ladder();
        ladder[index.min(ladder.len() - 1)].clone()
    }
}

/// Agent names become file names: keep them to a safe, portable alphabet.
pub fn valid_agent_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

fn check_command(file: &Path, at: &str, cmd: &Command, allowed: &[&str]) -> Result<()> {
    match cmd {
        Command::Argv(v) => check_argv(file, at, v, allowed),
        Command::Shell(s) if s.trim().is_empty() => {
            Err(Error::mission(file, at, "the command is empty"))
        }
        Command::Shell(s) => check_placeholders(file, at, s, allowed),
    }
}

/// A hook's command gets no placeholders (the event comes on stdin and in `ORCH_*`), so braces
/// in it (a JSON body for curl) are the user's own text.
fn check_hook(file: &Path, at: &str, cmd: &Command) -> Result<()> {
    let empty = match cmd {
        Command::Argv(v) => v.first().is_none_or(|p| p.is_empty()),
        Command::Shell(s) => s.trim().is_empty(),
    };
    if empty {
        return Err(Error::mission(file, at, "the command is empty"));
    }
    Ok(())
}

fn check_argv(file: &Path, at: &str, argv: &[String], allowed: &[&str]) -> Result<()> {
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err(Error::mission(
            file,
            at,
            "the command is empty: give an argv array such as [\"claude\", \"-p\"] or a shell string",
        ));
    }
    for (j, arg) in argv.iter().enumerate() {
        check_placeholders(file, &format!("{at}[{j}]"), arg, allowed)?;
    }
    Ok(())
}

/// Finds `{name}` placeholders and rejects unknown ones, so a typo such as `{modle}` fails
/// at validation instead of reaching the agent verbatim. `{{` is not a placeholder.
fn check_placeholders(file: &Path, at: &str, s: &str, allowed: &[&str]) -> Result<()> {
    for name in placeholders(s) {
        if !allowed.contains(&name) {
            return Err(Error::mission(
                file,
                at,
                format!(
                    "unknown placeholder {{{name}}}; known here: {}",
                    allowed
                        .iter()
                        .map(|a| format!("{{{a}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The `{word}` placeholders in `s` (identifier characters only, so JSON or shell braces such
/// as `${HOME}` or `{ echo; }` are left alone).
pub fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' && (i == 0 || bytes[i - 1] != b'$') {
            if let Some(len) = s[i + 1..].find('}') {
                let name = &s[i + 1..i + 1 + len];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                {
                    out.push(name);
                    i += len + 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

fn check_seconds(file: &Path, at: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 && v <= 7.0 * 86_400.0 {
        Ok(())
    } else {
        Err(Error::mission(
            file,
            at,
            format!("must be a number of seconds above 0 and at most a week, not {v}"),
        ))
    }
}

/// Paths orch writes to must stay inside the repository.
fn check_relative(file: &Path, at: &str, p: &Path) -> Result<()> {
    use std::path::Component;
    if p.as_os_str().is_empty()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::mission(
            file,
            at,
            format!(
                "{} must be a relative path inside the repository (no `..`, not absolute)",
                p.display()
            ),
        ));
    }
    Ok(())
}

/// Blanks out `//` line comments outside strings, so a mission may carry its own explanations
/// (`orch init` writes a commented one). Blanking instead of removing keeps serde's line and
/// column numbers right.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut in_comment) = (false, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                out.push(c);
            } else {
                out.push(' ');
            }
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            out.push(c);
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '/' if chars.peek() == Some(&'/') => {
                in_comment = true;
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// serde's messages are good but end in "at line 1 column 71"; keep that, it locates the key.
fn explain_serde(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.contains("did not match any variant of untagged enum Command") {
        return format!(
            "expected a command: an argv array of strings or a shell string ({})",
            location(e)
        );
    }
    if msg.contains("did not match any variant of untagged enum When") {
        return format!(
            "expected \"always\", \"tasks\", {{\"every\": N}} or {{\"command\": [...]}} ({})",
            location(e)
        );
    }
    msg
}

fn location(e: &serde_json::Error) -> String {
    format!("line {} column {}", e.line(), e.column())
}

/// An agent's `cli`, while [`Mission::parse`] gives the catalog's names; outside it (an
/// `Agent` built by hand) any name is taken.
fn known_cli<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    struct OptionalCli;
    impl<'de> serde::de::Visitor<'de> for OptionalCli {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("option")
        }
        fn visit_none<E>(self) -> std::result::Result<Option<String>, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Option<String>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Option<String>, D::Error> {
            cli_name(d, CLI_NAMES.get()).map(Some)
        }
    }
    d.deserialize_option(OptionalCli)
}

/// A CLI's name (an agent's `cli`, a session's in `state.json`), read as the unit variant of an
/// enum of `names` the way serde's derive reads one: `"claude"`, with the same errors (an
/// unknown name lists the known ones). `None`: any name is taken.
pub fn cli_name<'de, D: Deserializer<'de>>(
    d: D,
    names: Option<&'static [&'static str]>,
) -> std::result::Result<String, D::Error> {
    use serde::de::{DeserializeSeed, EnumAccess, Unexpected, VariantAccess, Visitor};
    #[derive(Clone, Copy)]
    struct Name(Option<&'static [&'static str]>);
    impl<'de> DeserializeSeed<'de> for Name {
        type Value = String;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
            d.deserialize_identifier(self)
        }
    }
    impl Visitor<'_> for Name {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("variant identifier")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<String, E> {
            let names = self.0.unwrap_or_default();
            match names.get(v as usize) {
                Some(name) => Ok(name.to_string()),
                None => Err(E::invalid_value(
                    Unexpected::Unsigned(v),
                    &format!("variant index 0 <= i < {}", names.len()).as_str(),
                )),
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<String, E> {
            match self.0 {
                Some(names) if !names.contains(&v) => Err(E::unknown_variant(v, names)),
                _ => Ok(v.to_string()),
            }
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<String, E> {
            match std::str::from_utf8(v) {
                Ok(s) => self.visit_str(s),
                Err(_) => Err(E::unknown_variant(
                    &String::from_utf8_lossy(v),
                    self.0.unwrap_or_default(),
                )),
            }
        }
    }
    struct Cli(Name);
    impl<'de> Visitor<'de> for Cli {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            // The name of the enum these names were, before the adapters owned them.
            f.write_str("enum CliKind")
        }
        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> std::result::Result<String, A::Error> {
            let (name, variant) = data.variant_seed(self.0)?;
            variant.unit_variant()?;
            Ok(name)
        }
    }
    d.deserialize_enum("CliKind", names.unwrap_or_default(), Cli(Name(names)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mission> {
        Mission::parse(s, Path::new("orch.json"), &crate::agents::Adapters)
    }

    #[test]
    fn minimal_mission_gets_the_spec_defaults() {
        let m = parse(r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"true"}]}"#)
            .unwrap();
        assert_eq!(m.state_dir, PathBuf::from(".orch"));
        assert_eq!(m.max_concurrency, 4);
        let a = &m.agents[0];
        assert_eq!(a.escalate_after, 2);
        assert_eq!(a.when, When::default());
        assert_eq!(a.command.argv(), ["sh", "-c", "true"]);
        assert_eq!(a.ladder(), [""]);
    }

    #[test]
    fn a_typo_is_reported_with_its_key_path() {
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x"},
                {"name":"b","phase":"code","command":"x"},
                {"name":"c","phase":"code","comand":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agents[2].comand"), "{e}");
        assert!(e.contains("orch.json"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let e = parse(r#"{"name":"n","agents":[{"name":"../x","phase":"code","command":"x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("agents[0].name"), "{e}");
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":["x","{modle}"]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("agents[0].command[1]") && e.contains("{modle}"),
            "{e}"
        );
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x","when":{"every":0}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agents[0].when.every"), "{e}");
    }

    #[test]
    fn when_forms_parse() {
        let m = parse(
            r#"{"name":"n","agents":[
              {"name":"a","phase":"code","command":"x","when":"tasks"},
              {"name":"b","phase":"code","command":"x","when":{"every":2}},
              {"name":"c","phase":"review","command":"x","when":{"command":["test","-f","x"]}},
              {"name":"d","phase":"review","command":"x","when":"always"}]}"#,
        )
        .unwrap();
        assert_eq!(m.agents[0].when, When::Keyword(WhenKeyword::Tasks));
        assert_eq!(m.agents[1].when, When::Every { every: 2 });
        assert!(matches!(m.agents[2].when, When::Command { .. }));
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x","when":"sometimes"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agents[0].when"), "{e}");
    }

    #[test]
    fn line_comments_are_allowed_outside_strings() {
        let m = parse(
            "{\n  // the mission\n  \"name\": \"a//b\", // trailing\n  \"agents\": [{\"name\":\"a\",\"phase\":\"code\",\"command\":\"echo \\\"//x\\\"\"}]\n}",
        )
        .unwrap();
        assert_eq!(m.name, "a//b");
        assert_eq!(m.agents[0].command.argv()[2], "echo \"//x\"");
        let e = parse("{\n// c\n\"name\": 1}").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn placeholders_ignore_shell_and_json_braces() {
        assert_eq!(placeholders("--model={model} ${HOME} { echo; }"), ["model"]);
        assert_eq!(placeholders("{out}/x{round}"), ["out", "round"]);
    }

    #[test]
    fn launchers_are_checked_like_commands() {
        let m = parse(
            r#"{"name":"n","launcher":["srun","--job-name=orch-{agent}","--"],
                "agents":[{"name":"a","phase":"code","command":"x","launcher":["ssh","h","--"]}],
                "sims":{"pre":{"command":"x","launcher":["srun","--output={out}/s.log","--"]}}}"#,
        )
        .unwrap();
        let pre = m.sims.unwrap().pre.unwrap();
        assert_eq!(pre.launcher.unwrap()[1], "--output={out}/s.log");
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x","launcher":[]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("agents[0].launcher") && e.contains("empty"),
            "{e}"
        );
        // {agent} means nothing to a sim.
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x"}],
                "sims":{"post":{"command":"x","launcher":["srun","-J","{agent}"]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sims.post.launcher[2]") && e.contains("{agent}"),
            "{e}"
        );
    }

    #[test]
    fn state_dir_cannot_escape_the_repository() {
        let e = parse(
            r#"{"name":"n","stateDir":"../elsewhere","agents":[{"name":"a","phase":"code","command":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stateDir"), "{e}");
    }
}
