//! What an agent-CLI adapter is: the [`AgentCli`] trait and the values that cross it (the
//! [`Output`] orch hands an adapter, the [`Reading`] and [`Failure`] it hands back, how a
//! session or a spending cap goes into the command). It sits below every adapter and below the
//! registry in `agents/mod.rs`, so an adapter file imports only this, its helpers (`scan`,
//! `classify`) and the data model: no adapter reaches another, or the registry.

use std::time::Duration;

use super::classify;
use super::progress::{self, Activity};
use super::resets;
use super::scan::non_empty;
use crate::roundlog::{Cause, PermissionDenial, Tokens};

/// How much of the end of stderr is classified (the error is usually the last lines).
const WORDS_TAIL: usize = 2048;

/// How a CLI is called unattended: what `orch init --agent X` writes.
pub struct Invocation {
    /// The agent's `command`, a JSON argv array.
    pub command: &'static str,
    /// The prompt goes on standard input (`"stdin": "prompt"`).
    pub stdin: bool,
    /// The model ladder, a JSON array.
    pub models: &'static str,
    /// `//` comment lines written above the agents: what the command does, what it allows.
    pub comments: &'static [&'static str],
    /// A `pricing` table (JSON object) for CLIs that print tokens but no cost.
    pub pricing: Option<&'static str>,
    /// The variables the CLI needs beyond the common ones (its API keys and settings): the
    /// head of the `inheritEnv` list.
    pub inherit_env: &'static [&'static str],
    /// A comment on the agent's `budgetUsd`, for a CLI that caps one run's spend itself
    /// ([`AgentCli::budget_args`]): how it is given what is left.
    pub budget_comment: Option<&'static str>,
    /// The command runs the bundled fake agent (`agents/fake-agent.sh`, written out beside the
    /// mission): it hits no rate limit, and the tests command is a placeholder.
    pub bundled_agent: bool,
}

/// What orch hands an adapter to read: the tails of the run's stdout and stderr logs and how it
/// exited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output<'a> {
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    /// `None` when it was killed by a signal or never started.
    pub exit_code: Option<i32>,
}

/// Why a run failed, as its CLI said.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub cause: Cause,
    /// The CLI's own words: one line, bounded ([`classify::one_line`]).
    pub error: String,
    /// When a usage limit opens again, when the CLI said so.
    pub resets_at: Option<jiff::Timestamp>,
    /// How long the CLI asked to wait (a retry-after), when it said so.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure of `cause` with the CLI's `words`; reset time and retry-after are read from the
    /// words themselves.
    pub fn from_words(cause: Cause, words: &str) -> Failure {
        let now = jiff::ZonedDateTime::now();
        Failure {
            cause,
            error: classify::one_line(words),
            resets_at: resets::resets_at(words, &now),
            retry_after: resets::retry_after(words),
        }
    }

    /// Classifies `words` (and an HTTP status, when the CLI gave one); `None` when nothing in
    /// them names a known cause.
    pub fn classify(words: &str, status: Option<u16>) -> Option<Failure> {
        classify::cause(words, status).map(|c| Failure::from_words(c, words))
    }

    /// Classifies `words`, falling back to `exit` for anything unknown.
    pub fn classify_or_exit(words: &str, status: Option<u16>) -> Failure {
        Failure::classify(words, status).unwrap_or_else(|| Failure::from_words(Cause::Exit, words))
    }
}

/// What a CLI's output says about one run. Every field is optional: a CLI that crashed before
/// printing anything says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// The cost the CLI printed itself (Claude's `total_cost_usd`, aider's session cost).
    pub cost_usd: Option<f64>,
    /// Every prompt token read (cached or not) and every token written.
    pub tokens: Option<Tokens>,
    /// Tokens per model, when the CLI splits them (Gemini's `stats.models`): each is priced at
    /// its own model's price.
    pub tokens_by_model: Vec<(String, Tokens)>,
    /// The CLI's session, for resuming it (issue 20).
    pub session_id: Option<String>,
    /// The final message, or why the run failed.
    pub summary: Option<String>,
    pub num_turns: Option<u64>,
    /// The CLI said the run failed, and why.
    pub failure: Option<Failure>,
    /// Tool calls the CLI refused to run.
    pub permission_denials: Vec<PermissionDenial>,
    pub source: CostSource,
}

/// A CLI session to start or resume (`session: true`): orch names a new one with `id` when the
/// CLI takes a name (Claude Code's `--session-id`); a CLI that names its own (Codex) ignores
/// it, and the id comes from its output.
pub struct Session<'a> {
    pub id: &'a str,
    pub resume: bool,
}

/// Where the session arguments go in the agent's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Right after the program's word (`claude --resume ID -p ...`): options parsed anywhere.
    AfterProgram,
    /// After the options, before a trailing `-` (the prompt from stdin) or at the end: a
    /// subcommand (`codex exec --json ... resume ID -`), whose own options are fewer.
    End,
}

/// What a CLI needs to start or resume a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionArgs {
    pub args: Vec<String>,
    pub place: Place,
    /// The CLI uses the id orch gave (so it can be resumed even when the output does not say
    /// it); false when the CLI names the session itself.
    pub takes_id: bool,
}

/// What a CLI needs of the machine under a sandbox (`"sandbox": "bwrap"`, issue 30): the rest
/// of the home folder stays hidden, and the network allows only its model API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxNeeds {
    /// Its state in the home folder, relative to it: its login, settings and sessions, written
    /// as it runs. Bound back writable when there.
    pub home_state: &'static [&'static str],
    /// A variable that moves that state elsewhere (`CODEX_HOME`): its value is bound back too.
    pub state_var: Option<&'static str>,
    /// The variables naming its model API's base URL: each one set is allowed (its host and
    /// port).
    pub base_url_vars: &'static [&'static str],
    /// The hosts it reaches when no base-URL variable is set (`host:port`).
    pub default_hosts: &'static [&'static str],
}

impl SandboxNeeds {
    /// A plain command: nothing of the home folder, no host.
    pub const NOTHING: SandboxNeeds = SandboxNeeds {
        home_state: &[],
        state_var: None,
        base_url_vars: &[],
        default_hosts: &[],
    };
}

/// One agent CLI: how to call it, and how to read what it printed.
pub trait AgentCli: Sync {
    /// Its name: the mission's `agents[].cli`, the CLI a session in `state.json` belongs to.
    fn name(&self) -> &'static str;

    /// The names its program goes by in a command (the executable, the npm package without
    /// its scope's `@` or version): how orch recognises the CLI an agent runs.
    fn programs(&self) -> &'static [&'static str];

    /// The `--agent` name `orch init` writes this CLI's invocation for.
    fn init_name(&self) -> &'static str {
        self.name()
    }

    /// Who serves the model: agents of one provider share its limits, so when one is told to
    /// wait, orch starts no other agent of that provider until the wait is over. `None`: the
    /// provider is not known from the CLI (aider, a plain command), and only that agent waits.
    fn provider(&self) -> Option<&'static str>;

    /// What `orch init --agent X` writes for this CLI.
    fn invocation(&self) -> Invocation;

    /// What the run's output says in this CLI's own format; `None` when it is not there. The
    /// plain adapter tries every adapter's in turn on a command it has none for.
    fn parse(&self, out: &Output) -> Option<Reading>;

    /// What the run's output says; `None` when nothing in it is this CLI's: its own format,
    /// else a failed run's last words ([`from_words`]).
    fn read(&self, out: &Output) -> Option<Reading> {
        self.parse(out).or_else(|| from_words(out))
    }

    /// What one line of a running agent's stdout shows it doing, in this CLI's streaming format
    /// (issue 31): its tool calls, tokens or cost so far, and any other line of the format as
    /// [`Activity::Output`]. Empty when the line is not in the format; the plain adapter tries
    /// every adapter's in turn.
    fn progress(&self, _line: &[u8]) -> Vec<Activity> {
        Vec::new()
    }

    /// Whether a run of `argv` prints every token as the model writes it, tool calls' input
    /// included (Claude Code's `--include-partial-messages`): then a model turn is never
    /// silent, and a shorter silence is evidence of a stuck run (the shorter default
    /// `stuck.idleS`). `false` where a long turn prints nothing until it is whole.
    fn streams_every_token(&self, _argv: &[String]) -> bool {
        false
    }

    /// Why the mission `orch init` writes for it gives each agent its own worktree, when the CLI
    /// needs one; `None`: the shared tree does (aider `git add`s the files it creates, and under
    /// the sandbox the shared tree's git folder is read-only: it would give each new file up).
    fn needs_worktree(&self) -> Option<&'static str> {
        None
    }

    /// What one line of stdout shows: what [`progress`](AgentCli::progress) reads in it, else
    /// plain output (any non-blank line; aider and a plain command say no more).
    fn activity(&self, line: &[u8]) -> Vec<Activity> {
        let read = self.progress(line);
        if read.is_empty() {
            return progress::output(line).into_iter().collect();
        }
        read
    }

    /// For a permanent failure: what to fix, naming the variable or the flag.
    fn fix(&self, cause: Cause) -> String;

    /// The arguments that start (`resume: false`) or resume a CLI session; `None` when the CLI
    /// has no sessions orch can resume (then `session: true` is refused by validation).
    fn session_args(&self, _session: &Session) -> Option<SessionArgs> {
        None
    }

    /// What a session asks of the agent beyond [`session_args`](AgentCli::session_args):
    /// `prompt_on_stdin` is its `"stdin": "prompt"`. `Err` says what is missing.
    fn session_needs(&self, _prompt_on_stdin: bool) -> Result<(), String> {
        Ok(())
    }

    /// What a session asks of the command, `argv[at]` being the program's word. `Err` says
    /// what is missing.
    fn session_command(&self, _argv: &[String], _at: usize) -> Result<(), String> {
        Ok(())
    }

    /// What it needs under a sandbox: its state folders and its model API's hosts.
    fn sandbox_needs(&self) -> SandboxNeeds {
        SandboxNeeds::NOTHING
    }

    /// The arguments that cap one run's spend at `usd` (Claude's `--max-budget-usd`): what is
    /// left of the agent's `budgetUsd`. `None`: the CLI has no such cap, and the budget is only
    /// checked between runs.
    fn budget_args(&self, _usd: f64) -> Option<Vec<String>> {
        None
    }
}

/// A dollar amount for a CLI flag: rounded down to a hundredth of a cent (a cap never above what
/// is left), at least that, without trailing zeros (`0.3`, `2`, `0.0001`).
pub fn cap_amount(usd: f64) -> String {
    // The epsilon keeps a float difference such as 0.25 - 0.2 (0.04999999999999999) at 0.05.
    let tenths_of_mils = (usd * 10_000.0 + 1e-6).floor().max(1.0);
    let s = format!("{:.4}", tenths_of_mils / 10_000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Where a run's cost figure came from, for the round log and for trusting it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CostSource {
    /// `costUsd` in the agent's `ORCH_RESULT_FILE`.
    ResultFile,
    /// Claude Code `--output-format json`: a single result object.
    ClaudeJson,
    /// Claude Code `--output-format stream-json`: the last `result` event of the stream.
    ClaudeStream,
    /// Codex `exec --json` events (or the older `{"msg": ...}` protocol lines).
    CodexJson,
    /// Gemini CLI `--output-format json`: the result object's `stats`, or its error object.
    GeminiJson,
    /// aider's "Tokens: ... Cost: $X message, $Y session." lines.
    AiderText,
    /// Token counts priced with the mission's `pricing` table.
    Pricing,
    /// No source gave a cost.
    #[default]
    Unknown,
}

/// A failed run's own words: the last non-empty line of stderr, else of stdout, classified by
/// the tail around it. `None` for a run that exited 0 or wrote nothing.
pub fn from_words(out: &Output) -> Option<Reading> {
    if matches!(out.exit_code, Some(0) | None) {
        return None;
    }
    let (line, tail) = [out.stderr, out.stdout].iter().find_map(|s| {
        let text = String::from_utf8_lossy(s);
        let line = text.lines().rev().find_map(non_empty)?;
        let start = text.len().saturating_sub(WORDS_TAIL);
        let tail = text.get(start..).unwrap_or(&text).to_string();
        Some((line, tail))
    })?;
    let cause = classify::cause(&tail, None).unwrap_or(Cause::Exit);
    Some(Reading {
        summary: None,
        failure: Some(Failure::from_words(cause, &line)),
        ..Reading::default()
    })
}
