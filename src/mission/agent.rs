//! An entry of the mission's `agents`: what it runs (its command, launcher, standard input),
//! with which models, when, under which limits (timeout, budget, session), and the value types
//! it shares with the rest of the file (a command, `inheritEnv`), with their defaults and the
//! accessors the engine reads them through.
//!
//! It sits below `schema.rs` (the mission holds its agents), so it imports nothing of it:
//! [`Agent::inherit_env`], which falls back on the mission's key, is written there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cli::known_cli;
use super::stuck::Stuck;
use crate::roundlog::Phase;

/// How many runs one session serves when `sessionMaxRounds` is not given: past this, a long
/// conversation costs more to resume (its context is re-read) than a fresh full prompt.
pub const DEFAULT_SESSION_ROUNDS: u32 = 8;
/// The bound on `sessionMaxRounds`.
pub const MAX_SESSION_ROUNDS: u32 = 1000;

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
    /// The mission's `stuck` keys for this agent alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<Stuck>,
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
    /// This agent's `sandbox`, instead of the mission's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<super::sandbox::Sandbox>,
    /// Keep the CLI's session from run to run (Claude Code `--session-id`/`--resume`, Codex
    /// `exec resume`): a resumed run's prompt is the `{{changes}}` section alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session: bool,
    /// The most runs one session serves; the next run starts a new one with the full prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_max_rounds: Option<u32>,
    /// Which agent-CLI adapter reads its runs, by its name (`claude`, `codex`, `gemini`,
    /// `aider`, `plain`: the [`CliCatalog`](super::CliCatalog)'s); by default the one its
    /// command's program names.
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

impl Agent {
    /// The most runs one session of this agent serves.
    pub fn session_rounds(&self) -> u32 {
        self.session_max_rounds.unwrap_or(DEFAULT_SESSION_ROUNDS)
    }

    /// The model ladder: `models`, or the single `model`, or one empty rung.
    pub fn ladder(&self) -> Vec<String> {
        if !self.models.is_empty() {
            self.models.clone()
        } else {
            vec![self.model.clone().unwrap_or_default()]
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
