//! The agent CLIs: one adapter per CLI (Claude Code, Codex, Gemini CLI, aider, and a plain
//! command) behind the small [`AgentCli`] trait. An adapter knows how its CLI is called
//! unattended (what `orch init --agent X` writes) and what its output says about a run: the
//! cost or the tokens, the session id, the final message, and when the run failed, why
//! ([`Failure`]: a [`Cause`] and the CLI's own words). The round engine asks the adapter; it
//! never parses a CLI's text itself.
//!
//! Which adapter reads an agent: its `cli` key, else the program its command runs (argv[0]'s
//! name, looking through `env VAR=x`, `npx pkg` and `sh -c "..."`), else the plain one, which
//! recognises any of the known output formats (a shell script that wraps `claude` still gets
//! its cost read) and otherwise only the exit status.
//!
//! Beside the adapters: `cost` (the generic part of a run's bill: pricing, the
//! `ORCH_RESULT_FILE`, which source wins), `scan` (finding JSON objects in a log tail),
//! `classify` (an error message or HTTP status to a cause) and `resets` (when a usage limit
//! opens again, with its time zone).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mission::Agent;
use crate::roundlog::{Cause, PermissionDenial, Tokens};

pub mod aider;
pub mod classify;
pub mod claude;
pub mod codex;
pub mod cost;
pub mod gemini;
pub mod plain;
pub mod resets;
pub mod scan;

#[cfg(test)]
mod recorded;

use cost::CostSource;

/// The agent CLIs orch has an adapter for (the mission's `agents[].cli`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CliKind {
    Claude,
    Codex,
    Gemini,
    Aider,
    Plain,
}

impl CliKind {
    pub const ALL: [CliKind; 5] = [
        CliKind::Claude,
        CliKind::Codex,
        CliKind::Gemini,
        CliKind::Aider,
        CliKind::Plain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CliKind::Claude => "claude",
            CliKind::Codex => "codex",
            CliKind::Gemini => "gemini",
            CliKind::Aider => "aider",
            CliKind::Plain => "plain",
        }
    }

    pub fn adapter(self) -> &'static dyn AgentCli {
        match self {
            CliKind::Claude => &claude::Claude,
            CliKind::Codex => &codex::Codex,
            CliKind::Gemini => &gemini::Gemini,
            CliKind::Aider => &aider::Aider,
            CliKind::Plain => &plain::Plain,
        }
    }
}

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

/// One agent CLI: how to call it, and how to read what it printed.
pub trait AgentCli: Sync {
    fn kind(&self) -> CliKind;

    /// Who serves the model: agents of one provider share its limits, so when one is told to
    /// wait, orch starts no other agent of that provider until the wait is over. `None`: the
    /// provider is not known from the CLI (aider, a plain command), and only that agent waits.
    fn provider(&self) -> Option<&'static str>;

    /// What `orch init --agent X` writes for this CLI.
    fn invocation(&self) -> Invocation;

    /// What the run's output says; `None` when nothing in it is this CLI's.
    fn read(&self, out: &Output) -> Option<Reading>;

    /// For a permanent failure: what to fix, naming the variable or the flag.
    fn fix(&self, cause: Cause) -> String;

    /// The arguments that start (`resume: false`) or resume a CLI session; `None` when the CLI
    /// has no sessions orch can resume (then `session: true` is refused by validation).
    fn session_args(&self, _session: &Session) -> Option<SessionArgs> {
        None
    }

    /// The arguments that cap one run's spend at `usd` (Claude's `--max-budget-usd`): what is
    /// left of the agent's `budgetUsd`. `None`: the CLI has no such cap, and the budget is only
    /// checked between runs.
    fn budget_args(&self, _usd: f64) -> Option<Vec<String>> {
        None
    }
}

/// The arguments that cap `agent`'s next run at `usd`, appended to its command; `None` when its
/// CLI has no cap or its command cannot take more arguments: a shell script (`sh -c "..."`, a
/// command string) or a program that is not the CLI itself (a wrapper named by `cli`), which
/// would get arguments it may not pass on.
pub fn cap_args(agent: &Agent, usd: f64) -> Option<Vec<String>> {
    let argv = agent.command.argv();
    if matches!(agent.command, crate::mission::Command::Shell(_)) || through_shell(&argv) {
        return None;
    }
    let kind = detect(&argv);
    if kind != kind_of(agent) {
        return None;
    }
    kind.adapter().budget_args(usd)
}

/// Whether `detect` reads `argv`'s CLI out of a `sh -c` script.
fn through_shell(argv: &[String]) -> bool {
    argv.iter().any(|w| {
        let name = w.rsplit('/').next().unwrap_or(w);
        matches!(name, "sh" | "bash" | "zsh" | "dash")
    }) && argv.iter().any(|w| w == "-c" || w == "-lc")
}

/// A dollar amount for a CLI flag: rounded down to a hundredth of a cent (a cap never above what
/// is left), at least that, without trailing zeros (`0.3`, `2`, `0.0001`).
pub fn cap_amount(usd: f64) -> String {
    // The epsilon keeps a float difference such as 0.25 - 0.2 (0.04999999999999999) at 0.05.
    let tenths_of_mils = (usd * 10_000.0 + 1e-6).floor().max(1.0);
    let s = format!("{:.4}", tenths_of_mils / 10_000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The adapter that reads `agent`'s runs.
pub fn for_agent(agent: &Agent) -> &'static dyn AgentCli {
    kind_of(agent).adapter()
}

/// The agent's CLI: its `cli` key, else detected from its command.
pub fn kind_of(agent: &Agent) -> CliKind {
    agent.cli.unwrap_or_else(|| detect(&agent.command.argv()))
}

/// The provider whose limits `agent` shares: the CLI's, else the agent's own (`agent:NAME`).
pub fn provider_of(agent: &Agent) -> String {
    match for_agent(agent).provider() {
        Some(p) => p.to_string(),
        None => format!("agent:{}", agent.name),
    }
}

/// The CLI an argv runs, from its program's name. Looks through the usual wrappers: `env` (with
/// its `VAR=value` and flags), `npx`/`bunx`/`pnpm dlx` with a package name, `nice`, `nohup`,
/// `stdbuf`, `timeout N`, and `sh -c "..."` (the first word of the script).
pub fn detect(argv: &[String]) -> CliKind {
    program(argv).0
}

/// The CLI an argv runs and the index of its program's word in `argv`; `None` for the index
/// when the program is inside a `sh -c` script (no argument can be added to it there).
pub fn program(argv: &[String]) -> (CliKind, Option<usize>) {
    let mut words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut i = 0;
    let mut in_script = false;
    for _ in 0..8 {
        let Some(first) = words.get(i).copied() else {
            return (CliKind::Plain, None);
        };
        let name = first.rsplit('/').next().unwrap_or(first);
        match name {
            "env" | "nice" | "nohup" | "stdbuf" | "npx" | "bunx" | "exec" => {
                i += 1;
                while let Some(w) = words.get(i) {
                    if w.starts_with('-') || (name == "env" && w.contains('=')) {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            "pnpm" | "yarn" if words.get(i + 1).is_some_and(|w| *w == "dlx") => {
                i += 2;
            }
            "timeout" => {
                i += 1;
                while words.get(i).is_some_and(|w| w.starts_with('-')) {
                    i += 1;
                }
                if i < words.len() {
                    i += 1; // the duration
                }
            }
            "sh" | "bash" | "zsh" | "dash" => {
                let Some(j) = words[i..].iter().position(|w| *w == "-c" || *w == "-lc") else {
                    return (CliKind::Plain, None);
                };
                let Some(script) = words.get(i + j + 1).copied() else {
                    return (CliKind::Plain, None);
                };
                words = script.split_whitespace().collect();
                i = 0;
                in_script = true;
            }
            // A leading `VAR=value` of a shell script.
            _ if name.contains('=') => {
                i += 1;
            }
            _ => return (by_name(name), (!in_script).then_some(i)),
        }
    }
    (CliKind::Plain, None)
}

/// Whether `agent`'s command can carry a session (`session: true`): its CLI has sessions orch
/// can resume, and its program is a word of the argv. `Err` says why not.
pub fn session_support(agent: &Agent) -> Result<(), String> {
    let kind = kind_of(agent);
    let probe = Session {
        id: "00000000-0000-4000-8000-000000000000",
        resume: true,
    };
    if kind.adapter().session_args(&probe).is_none() {
        return Err(format!(
            "its CLI ({}) has no session orch can resume; sessions work with Claude Code \
             (--session-id, --resume) and Codex (exec resume)",
            kind.as_str()
        ));
    }
    if kind == CliKind::Codex && agent.stdin != crate::mission::StdinMode::Prompt {
        // `exec resume ID [PROMPT]`: a prompt in the argv would take the id's place.
        return Err(
            "a Codex session needs the prompt on standard input (`\"stdin\": \"prompt\"`, \
             the command ending in `-`)"
                .into(),
        );
    }
    with_session(agent, &agent.command.argv(), &probe).map(|_| ())
}

/// `argv` (the agent's command) with the arguments that start or resume `session` put in
/// place; `Err` when they cannot go in (the program is inside a `sh -c` script, a Codex
/// command without `exec`, a CLI without sessions).
pub fn with_session(
    agent: &Agent,
    argv: &[String],
    session: &Session,
) -> Result<Vec<String>, String> {
    let kind = kind_of(agent);
    let Some(sa) = kind.adapter().session_args(session) else {
        return Err(format!("its CLI ({}) has no sessions", kind.as_str()));
    };
    let at = match program(argv) {
        (_, Some(at)) => at,
        (_, None) => {
            return Err(
                "its program is not a word of its command (it runs inside `sh -c`), so orch \
                 cannot add the session arguments; give the command as an argv array"
                    .into(),
            )
        }
    };
    if kind == CliKind::Codex && argv.get(at + 1).map(String::as_str) != Some("exec") {
        return Err("a Codex session needs `codex exec ...` (its `exec resume` subcommand)".into());
    }
    let mut out = argv.to_vec();
    let pos = match sa.place {
        Place::AfterProgram => at + 1,
        Place::End if out.last().is_some_and(|w| w == "-") && out.len() > at + 2 => out.len() - 1,
        Place::End => out.len(),
    };
    out.splice(pos..pos, sa.args);
    Ok(out)
}

fn by_name(name: &str) -> CliKind {
    // npm package names (`@anthropic-ai/claude-code@2.1`) as well as the programs.
    let base = name.split('@').find(|s| !s.is_empty()).unwrap_or(name);
    match base {
        "claude" | "claude-code" | "anthropic-ai/claude-code" => CliKind::Claude,
        "codex" | "openai/codex" => CliKind::Codex,
        "gemini" | "gemini-cli" | "google/gemini-cli" => CliKind::Gemini,
        "aider" | "aider-chat" => CliKind::Aider,
        _ => CliKind::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_the_cli_from_the_program_name() {
        assert_eq!(detect(&argv(&["claude", "-p"])), CliKind::Claude);
        assert_eq!(
            detect(&argv(&["/usr/local/bin/codex", "exec"])),
            CliKind::Codex
        );
        assert_eq!(detect(&argv(&["gemini", "-p", ""])), CliKind::Gemini);
        assert_eq!(detect(&argv(&["aider", "--yes-always"])), CliKind::Aider);
        assert_eq!(detect(&argv(&["sh", "agent.sh"])), CliKind::Plain);
        assert_eq!(detect(&argv(&["python3", "x.py"])), CliKind::Plain);
        assert_eq!(detect(&[]), CliKind::Plain);
    }

    #[test]
    fn detects_through_wrappers() {
        assert_eq!(
            detect(&argv(&["env", "A=1", "B=2", "claude", "-p"])),
            CliKind::Claude
        );
        assert_eq!(
            detect(&argv(&["npx", "-y", "@openai/codex@0.171", "exec"])),
            CliKind::Codex
        );
        assert_eq!(
            detect(&argv(&["pnpm", "dlx", "@google/gemini-cli"])),
            CliKind::Gemini
        );
        assert_eq!(
            detect(&argv(&["timeout", "600", "claude", "-p"])),
            CliKind::Claude
        );
        assert_eq!(
            detect(&argv(&["sh", "-c", "IS_SANDBOX=1 exec claude -p"])),
            CliKind::Claude
        );
        assert_eq!(
            detect(&argv(&["bash", "-lc", "exec claude -p --model x"])),
            CliKind::Claude
        );
        assert_eq!(detect(&argv(&["sh", "-c"])), CliKind::Plain);
    }

    fn agent(cmd: &[&str]) -> Agent {
        let m = crate::mission::Mission::parse(
            &serde_json::json!({"name": "n", "agents": [
                {"name": "a", "phase": "code", "command": cmd, "stdin": "prompt"}]})
            .to_string(),
            std::path::Path::new("orch.json"),
        )
        .unwrap();
        m.agents[0].clone()
    }

    #[test]
    fn session_arguments_go_where_each_cli_reads_them() {
        let start = Session {
            id: "u-1",
            resume: false,
        };
        let resume = Session {
            id: "u-1",
            resume: true,
        };
        let a = agent(&["env", "A=1", "claude", "-p", "--model", "m"]);
        let cmd = a.command.argv();
        assert_eq!(
            with_session(&a, &cmd, &start).unwrap(),
            argv(&[
                "env",
                "A=1",
                "claude",
                "--session-id",
                "u-1",
                "-p",
                "--model",
                "m"
            ])
        );
        assert_eq!(
            with_session(&a, &cmd, &resume).unwrap(),
            argv(&["env", "A=1", "claude", "--resume", "u-1", "-p", "--model", "m"])
        );
        let c = agent(&[
            "codex",
            "exec",
            "--json",
            "--sandbox",
            "workspace-write",
            "-",
        ]);
        let cmd = c.command.argv();
        assert_eq!(
            with_session(&c, &cmd, &start).unwrap(),
            cmd.clone(),
            "codex names its own session"
        );
        assert_eq!(
            with_session(&c, &cmd, &resume).unwrap(),
            argv(&[
                "codex",
                "exec",
                "--json",
                "--sandbox",
                "workspace-write",
                "resume",
                "u-1",
                "-"
            ])
        );
        assert!(session_support(&a).is_ok());
        assert!(session_support(&c).is_ok());
        let e = session_support(&agent(&["sh", "-c", "exec claude -p"])).unwrap_err();
        assert!(e.contains("sh -c"), "{e}");
        let e = session_support(&agent(&["gemini", "-p", ""])).unwrap_err();
        assert!(e.contains("gemini"), "{e}");
        let e = session_support(&agent(&["codex", "--json"])).unwrap_err();
        assert!(e.contains("exec"), "{e}");
    }

    #[test]
    fn cap_amounts_round_down() {
        assert_eq!(cap_amount(0.3), "0.3");
        assert_eq!(cap_amount(2.0), "2");
        assert_eq!(cap_amount(0.1 + 0.2), "0.3");
        assert_eq!(cap_amount(0.25 - (0.1 + 0.1)), "0.05");
        assert_eq!(cap_amount(1.23456), "1.2345");
        assert_eq!(cap_amount(0.000_01), "0.0001");
    }

    #[test]
    fn caps_only_a_command_that_runs_the_cli_itself() {
        let agent = |command: &str, cli: Option<&str>| -> Agent {
            let cli = cli
                .map(|c| format!(r#", "cli": "{c}""#))
                .unwrap_or_default();
            serde_json::from_str(&format!(
                r#"{{"name": "a", "phase": "code", "command": {command}{cli}}}"#
            ))
            .unwrap()
        };
        let cap = |a: &Agent| cap_args(a, 1.5);
        let want = Some(vec!["--max-budget-usd".to_string(), "1.5".to_string()]);
        assert_eq!(cap(&agent(r#"["claude", "-p"]"#, None)), want);
        assert_eq!(cap(&agent(r#"["env", "A=1", "claude", "-p"]"#, None)), want);
        assert_eq!(cap(&agent(r#"["codex", "exec"]"#, None)), None);
        assert_eq!(cap(&agent(r#""claude -p""#, None)), None);
        assert_eq!(cap(&agent(r#"["sh", "-c", "claude -p"]"#, None)), None);
        assert_eq!(cap(&agent(r#"["./my-claude.sh"]"#, Some("claude"))), None);
    }

    #[test]
    fn every_kind_has_its_own_adapter() {
        for k in CliKind::ALL {
            assert_eq!(k.adapter().kind(), k);
        }
    }
}
