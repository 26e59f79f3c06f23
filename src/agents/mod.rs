//! The agent CLIs: one adapter per CLI (Claude Code, Codex, Gemini CLI, aider, and a plain
//! command) behind the small [`AgentCli`] trait (`adapter.rs`). An adapter owns everything
//! about its CLI: its name (the mission's `cli`), the program names it is recognised by, how
//! it is called unattended and which variables it needs (what `orch init --agent X` writes),
//! and what its output says about a run: the cost or the tokens, the session id, the final
//! message, and when the run failed, why ([`Failure`]: a [`Cause`](crate::roundlog::Cause) and
//! the CLI's own words). The round engine asks the adapter; it never parses a CLI's text itself.
//!
//! [`ADAPTERS`] is the registry: adding a CLI is its file and one line there. This module
//! then answers the questions asked about an agent: which adapter reads it (its `cli` key, else
//! the program its command runs: `argv[0]`'s name, looking through `env VAR=x`, `npx pkg` and
//! `sh -c "..."`, else [`PLAIN`], which recognises every registered output format — a shell
//! script that wraps `claude` still gets its cost read — and otherwise only the exit status),
//! where session and budget arguments go in its command, and what a mission's validation asks
//! of the CLIs ([`Adapters`], handed to `Mission::parse`, which cannot import this layer).
//!
//! Beside the adapters: `cost` (the generic part of a run's bill: pricing, the
//! `ORCH_RESULT_FILE`, which source wins), `scan` (finding JSON objects in a log tail),
//! `classify` (an error message or HTTP status to a cause), `resets` (when a usage limit
//! opens again, with its time zone), `progress` (what a line of a running agent's output shows
//! it doing) and `stuck` (whether a run that is still going is idle, looping or over budget).

use std::sync::OnceLock;

use crate::mission::{Agent, CliCatalog, Mission};

pub mod adapter;
pub mod aider;
pub mod classify;
pub mod claude;
pub mod codex;
pub mod cost;
pub mod gemini;
pub mod plain;
pub mod progress;
pub mod resets;
pub mod scan;
pub mod stuck;

#[cfg(test)]
mod recorded;

pub use adapter::{
    cap_amount, AgentCli, Failure, Invocation, Output, Place, Reading, Session, SessionArgs,
};

/// Every agent CLI orch has an adapter for, in the order the plain adapter tries their output
/// formats (and error messages list their names). Adding a CLI: its file, and a line here.
pub const ADAPTERS: &[&dyn AgentCli] = &[
    &claude::Claude,
    &codex::Codex,
    &gemini::Gemini,
    &aider::Aider,
];

/// The adapter for a command orch has none for: it reads every format of [`ADAPTERS`].
pub static PLAIN: plain::Plain = plain::Plain { formats: ADAPTERS };

/// Every adapter, the plain one last.
pub fn all() -> impl Iterator<Item = &'static dyn AgentCli> {
    ADAPTERS
        .iter()
        .copied()
        .chain(std::iter::once(&PLAIN as &dyn AgentCli))
}

/// The adapter named `name` (the mission's `cli`, a session's CLI in `state.json`).
pub fn by_cli_name(name: &str) -> Option<&'static dyn AgentCli> {
    all().find(|a| a.name() == name)
}

/// What a mission's validation asks of the agent CLIs (the data model cannot import them):
/// pass `&Adapters` to `Mission::parse`.
pub struct Adapters;

impl CliCatalog for Adapters {
    fn names(&self) -> &'static [&'static str] {
        static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
        NAMES.get_or_init(|| all().map(|a| a.name()).collect())
    }

    fn session_support(&self, agent: &Agent) -> Result<(), String> {
        session_support(agent)
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
    let cli = detect(&argv);
    if cli.name() != for_agent(agent).name() {
        return None;
    }
    cli.budget_args(usd)
}

/// Whether `detect` reads `argv`'s CLI out of a `sh -c` script.
fn through_shell(argv: &[String]) -> bool {
    argv.iter().any(|w| {
        let name = w.rsplit('/').next().unwrap_or(w);
        matches!(name, "sh" | "bash" | "zsh" | "dash")
    }) && argv.iter().any(|w| w == "-c" || w == "-lc")
}

/// The adapter that reads `agent`'s runs: its `cli` key's, else the one its command runs.
pub fn for_agent(agent: &Agent) -> &'static dyn AgentCli {
    agent
        .cli
        .as_deref()
        .and_then(by_cli_name)
        .unwrap_or_else(|| detect(&agent.command.argv()))
}

/// The stuck rules `agent`'s runs are watched with (a round and `--dry-run` both ask this): the
/// mission's `stuck` keys, and where they are unset the defaults for what its CLI prints (every
/// token or not).
pub fn stuck_limits(mission: &Mission, agent: &Agent) -> crate::mission::StuckLimits {
    let every_token = for_agent(agent).streams_every_token(&agent.command.argv());
    mission.stuck_for(agent, every_token)
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
pub fn detect(argv: &[String]) -> &'static dyn AgentCli {
    program(argv).0
}

/// The CLI an argv runs and the index of its program's word in `argv`; `None` for the index
/// when the program is inside a `sh -c` script (no argument can be added to it there).
pub fn program(argv: &[String]) -> (&'static dyn AgentCli, Option<usize>) {
    let mut words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut i = 0;
    let mut in_script = false;
    for _ in 0..8 {
        let Some(first) = words.get(i).copied() else {
            return (&PLAIN, None);
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
                    return (&PLAIN, None);
                };
                let Some(script) = words.get(i + j + 1).copied() else {
                    return (&PLAIN, None);
                };
                words = script.split_whitespace().collect();
                i = 0;
                in_script = true;
            }
            // A leading `VAR=value` of a shell script.
            _ if name.contains('=') => {
                i += 1;
            }
            _ => return (by_program(name), (!in_script).then_some(i)),
        }
    }
    (&PLAIN, None)
}

/// Whether `agent`'s command can carry a session (`session: true`): its CLI has sessions orch
/// can resume, and its program is a word of the argv. `Err` says why not.
pub fn session_support(agent: &Agent) -> Result<(), String> {
    let cli = for_agent(agent);
    let probe = Session {
        id: "00000000-0000-4000-8000-000000000000",
        resume: true,
    };
    if cli.session_args(&probe).is_none() {
        return Err(format!(
            "its CLI ({}) has no session orch can resume; sessions work with Claude Code \
             (--session-id, --resume) and Codex (exec resume)",
            cli.name()
        ));
    }
    cli.session_needs(agent.stdin == crate::mission::StdinMode::Prompt)?;
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
    let cli = for_agent(agent);
    let Some(sa) = cli.session_args(session) else {
        return Err(format!("its CLI ({}) has no sessions", cli.name()));
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
    cli.session_command(argv, at)?;
    let mut out = argv.to_vec();
    let pos = match sa.place {
        Place::AfterProgram => at + 1,
        Place::End if out.last().is_some_and(|w| w == "-") && out.len() > at + 2 => out.len() - 1,
        Place::End => out.len(),
    };
    out.splice(pos..pos, sa.args);
    Ok(out)
}

/// The adapter whose program is named `name`: a program's name, or an npm package's
/// (`@anthropic-ai/claude-code@2.1`); the plain one for any other.
fn by_program(name: &str) -> &'static dyn AgentCli {
    let base = name.split('@').find(|s| !s.is_empty()).unwrap_or(name);
    ADAPTERS
        .iter()
        .copied()
        .find(|a| a.programs().contains(&base))
        .unwrap_or(&PLAIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_the_cli_from_the_program_name() {
        assert_eq!(detect(&argv(&["claude", "-p"])).name(), "claude");
        assert_eq!(
            detect(&argv(&["/usr/local/bin/codex", "exec"])).name(),
            "codex"
        );
        assert_eq!(detect(&argv(&["gemini", "-p", ""])).name(), "gemini");
        assert_eq!(detect(&argv(&["aider", "--yes-always"])).name(), "aider");
        assert_eq!(detect(&argv(&["sh", "agent.sh"])).name(), "plain");
        assert_eq!(detect(&argv(&["python3", "x.py"])).name(), "plain");
        assert_eq!(detect(&[]).name(), "plain");
    }

    #[test]
    fn detects_through_wrappers() {
        assert_eq!(
            detect(&argv(&["env", "A=1", "B=2", "claude", "-p"])).name(),
            "claude"
        );
        assert_eq!(
            detect(&argv(&["npx", "-y", "@openai/codex@0.171", "exec"])).name(),
            "codex"
        );
        assert_eq!(
            detect(&argv(&["pnpm", "dlx", "@google/gemini-cli"])).name(),
            "gemini"
        );
        assert_eq!(
            detect(&argv(&["timeout", "600", "claude", "-p"])).name(),
            "claude"
        );
        assert_eq!(
            detect(&argv(&["sh", "-c", "IS_SANDBOX=1 exec claude -p"])).name(),
            "claude"
        );
        assert_eq!(
            detect(&argv(&["bash", "-lc", "exec claude -p --model x"])).name(),
            "claude"
        );
        assert_eq!(detect(&argv(&["sh", "-c"])).name(), "plain");
    }

    fn agent(cmd: &[&str]) -> Agent {
        let m = crate::mission::Mission::parse(
            &serde_json::json!({"name": "n", "agents": [
                {"name": "a", "phase": "code", "command": cmd, "stdin": "prompt"}]})
            .to_string(),
            std::path::Path::new("orch.json"),
            &crate::agents::Adapters,
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
    fn every_adapter_has_its_own_name_and_programs() {
        let names: Vec<&str> = all().map(|a| a.name()).collect();
        assert_eq!(names, ["claude", "codex", "gemini", "aider", "plain"]);
        for a in all() {
            assert_eq!(by_cli_name(a.name()).unwrap().name(), a.name());
            for p in a.programs() {
                assert_eq!(detect(&argv(&[p])).name(), a.name(), "{p}");
            }
        }
        assert!(PLAIN.programs().is_empty());
    }
}
