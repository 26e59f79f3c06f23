//! `orch init`: writes a commented example mission (`orch.json`) and a prompt template per
//! role, for the agent CLI the user names. Each real CLI is called the way it must be called
//! unattended: non-interactive mode, the model from `{model}`, the prompt on standard input,
//! and machine-readable output where the CLI has one so that its adapter (`agents/`) can read
//! what a run cost and why it failed. The invocation itself is the adapter's (`AgentCli::invocation`).

use std::path::Path;

use crate::agents::{self, AgentCli};
use crate::error::{Error, IoContext, Result};

/// The bundled fake agent; `orch init --agent script` and `orch demo` write it out.
pub const FAKE_AGENT: &str = include_str!("../../fixtures/agents/fake-agent.sh");
pub const FAKE_TESTS: &str = include_str!("../../fixtures/agents/fake-tests.sh");
pub const FAKE_SIM: &str = include_str!("../../fixtures/agents/fake-sim.sh");

/// The adapter whose unattended invocation `--agent NAME` writes: the one whose
/// [`AgentCli::init_name`] it is (`script`: the bundled fake agent, read by the plain adapter).
fn adapter(agent: &str) -> Result<&'static dyn AgentCli> {
    agents::all()
        .find(|a| a.init_name() == agent)
        .ok_or_else(|| {
            let names: Vec<&str> = agents::all().map(|a| a.init_name()).collect();
            let (last, rest) = names.split_last().expect("the registry is not empty");
            Error::Usage(format!(
                "--agent {agent}: expected {} or {last}",
                rest.join(", ")
            ))
        })
}

pub fn mission_text(agent: &str) -> Result<String> {
    let f = adapter(agent)?.invocation();
    let stdin = if f.stdin {
        "\n      \"stdin\": \"prompt\","
    } else {
        ""
    };
    let pricing = match f.pricing {
        Some(p) => format!(
            "\n  // USD per million tokens, for CLIs that print tokens but no cost (check your provider's prices).\n  \"pricing\": {p},"
        ),
        None => String::new(),
    };
    let note = f.comments.join("\n  // ");
    // The real CLIs wait out rate and usage limits; the fake agent never hits one.
    let limits = if f.bundled_agent {
        ""
    } else {
        "\n  // Rate and usage limits: wait (until the reset time the CLI gives, else backing off from\n  // backoffS) and run the agent again; a wait beyond maxWaitS ends the run with exit 75.\n  \"limits\": { \"backoffS\": 60, \"maxWaitS\": 21600, \"startSpacingMs\": 2000 },"
    };
    let (sandbox, sandbox_note) = sandbox_setting();
    let git = match adapter(agent)?.needs_worktree() {
        Some(why) => format!(
            "// Each agent in a worktree of its own:\n  // {why}.\n  \"git\": {{ \"isolation\": \"worktree\", \"commit\": true }},"
        ),
        None => r#""git": { "isolation": "shared", "commit": true },"#.to_string(),
    };
    let tests = if f.bundled_agent {
        r#"["sh", "-c", "echo 'replace me with your test command'; echo '1 passed, 0 failed'"],"#
    } else {
        r#"["npm", "test"],           // your test command (claude: allow it in --allowedTools too)"#
    };
    Ok(format!(
        r#"{{
  // orch mission: JSON with // comments. `orch validate` checks it; docs/src/mission.md (the book) explains every key.
  // {note}
  "name": "my-mission",
  "rounds": 10,                  // `orch run` resumes after the last finished round
  "maxConcurrency": 2,           // agents at once in a phase
  "budgetUsd": 20,               // no new agent starts once this much is spent (exit 3)
  "stateDir": ".orch",           // logs, round logs, state; kept out of git by orch itself
  // Review agents start when the code agents' merges are done, beside the tests (their work
  // lands after the code commit, or is kept in a ref when the round is reverted, and after a
  // per-agent revert they run again on what stays: phaseBAfterRevert, true/false to force);
  // "afterTests" runs them after the tests, on the committed tree.
  "phaseB": "besideTests",
  // A code agent that ends badly by itself after its edits (out of turns, an error exit): its
  // change is tested with the others' and the tests decide; "aside" keeps it in a ref, untested.
  "failedChanges": "test",
  // When the tests regress, the per-agent revert finds whose change broke them and takes out
  // only that, testing up to this many candidate trees at once (unset: maxConcurrency, the
  // slots the agents leave idle). It needs "isolation": "worktree" below; "shared" reverts
  // the whole round.
  "bisectJobs": 2,{pricing}{limits}
  // A run with no output, tool call, file change or CPU use for idleS seconds, or that makes
  // the same tool call repeats times in a row, is stopped as at a timeout: its work kept in a
  // ref, the round log saying what was seen (0 turns a rule off; an agent can set its own).
  // idleS unset: 120 for a CLI that prints every token (Claude Code with
  // --include-partial-messages) while no tool call of it runs, else 300.
  "stuck": {{ "repeats": 5 }},
  // What agents get of orch's environment (besides ORCH_* and their own `env`): the CLI's own
  // keys and settings, where to find programs and its login (PATH, HOME), the terminal and
  // locale, proxies and CA certificates. Nothing else: a GITHUB_TOKEN or cloud key in your
  // shell does not reach an unattended agent. "all" passes everything.
  "inheritEnv": [{cli_env}"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_*", "TZ", "TMPDIR",
                 "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                 "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS"],
  // Each agent, and the tests and sims that run its code, in a sandbox (bubblewrap): it writes
  // its tree, its CLI's state folder and the files orch hands it, never .git/config or hooks;
  // the rest of the home folder is hidden (readPaths: what the tests need, e.g. "~/.cargo");
  // the network is its model API only (allowHosts: more). "none" runs them as you.
  // docs/src/sandbox.md says what each CLI needs.{sandbox_note}
  "sandbox": "{sandbox}",
  "agents": [
    {{
      "name": "coder",
      "phase": "code",           // code agents run first; their work is tested, then committed
      "command": {command},{stdin}
      "prompt": "prompts/coder.md",
      "models": {models},        // the escalation ladder: next model after escalateAfter bad runs
      "escalateAfter": 2,
      "timeoutS": 900,
      "budgetUsd": 12            // what this agent may spend in all (kept across runs in
                                 // state.json); then it is not started again (`over budget`){cap}
    }},
    {{
      "name": "reviewer",
      "phase": "review",         // review agents run after the code agents (see phaseB)
      "command": {command},{stdin}
      "prompt": "prompts/reviewer.md",
      "models": {models},
      "when": {{ "every": 2 }},     // every second round
      "budgetUsd": 4
    }}
  ],
  // The command that decides whether a round's code is kept: a regression is reverted.
  "tests": {{
    "command": {tests}
    "timeoutS": 900,
    "retries": 1
  }},
  {git}
  "stop": {{ "afterEmptyRounds": 3 }}
}}
"#,
        cli_env = f
            .inherit_env
            .iter()
            .map(|v| format!("\"{v}\", "))
            .collect::<String>(),
        command = f.command,
        models = f.models,
        // Only a CLI that caps a run itself says how; the others are held between runs.
        cap = f
            .budget_comment
            .map(|c| format!("\n                                 // {c}"))
            .unwrap_or_default(),
    ))
}

/// The `sandbox` orch init writes: on where the machine allows it (`orch validate` would refuse
/// "bwrap" where it cannot run), else "none" with a comment saying why and the fix.
fn sandbox_setting() -> (&'static str, String) {
    match crate::engine::exec::sandbox::probe::probe() {
        Ok(()) => ("bwrap", String::new()),
        Err(e) => (
            "none",
            format!(
                "\n  // Not here: {} ({}).",
                e.reason.replace('\n', " "),
                e.fix.replace('\n', " ")
            ),
        ),
    }
}

const CODER_PROMPT: &str = "You are {{agent}}, a coding agent working unattended on this repository (round {{round}}, model {{model}}).\n\nMake one small, complete, tested improvement. Do not commit: orch tests and commits your work.\nIf you find more work than fits, append tasks as JSON lines ({\"title\": ..., \"body\": ...}) to the file named by $ORCH_TASKS_INBOX.\n\n{{task}}\n\n{{testFailures}}\n";
const REVIEWER_PROMPT: &str = "You are {{agent}}, reviewing round {{round}} of an unattended run.\n\nRead the latest commits and write a short review to docs/reviews/round-{{round}}.md.\nFile follow-up work for the coder as JSON lines ({\"agent\": \"coder\", \"title\": ..., \"priority\": 1-3}) in $ORCH_TASKS_INBOX.\n\nYour recent runs: {{history}}\n";

/// Writes the example files into `dir`; refuses to overwrite without `force`.
pub fn init(dir: &Path, agent: &str, force: bool) -> Result<()> {
    let mut files = vec![
        ("orch.json".to_string(), mission_text(agent)?),
        ("prompts/coder.md".to_string(), CODER_PROMPT.to_string()),
        (
            "prompts/reviewer.md".to_string(),
            REVIEWER_PROMPT.to_string(),
        ),
    ];
    if adapter(agent)?.invocation().bundled_agent {
        files.push(("agents/fake-agent.sh".into(), FAKE_AGENT.into()));
    }
    if !force {
        if let Some((p, _)) = files.iter().find(|(p, _)| dir.join(p).exists()) {
            return Err(Error::Usage(format!(
                "{} exists already; pass --force to overwrite",
                dir.join(p).display()
            )));
        }
    }
    for (p, text) in &files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("next: `orch validate`, commit these files, then `orch run`");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mission::Mission;

    #[test]
    fn every_flavor_writes_a_valid_mission() {
        for a in agents::all().map(|a| a.init_name()) {
            let text = mission_text(a).unwrap();
            let m = Mission::parse(&text, Path::new("orch.json"), &crate::agents::Adapters)
                .unwrap_or_else(|e| panic!("{a}: {e}\n{text}"));
            assert_eq!(m.agents.len(), 2);
            // The command it writes is read by the adapter it was written from.
            let want = adapter(a).unwrap().name();
            assert_eq!(agents::for_agent(&m.agents[0]).name(), want, "{a}");
        }
        // aider needs its own worktree under the sandbox; the others share the tree.
        let parsed = |a: &str| {
            Mission::parse(
                &mission_text(a).unwrap(),
                Path::new("orch.json"),
                &crate::agents::Adapters,
            )
            .unwrap()
        };
        assert_eq!(
            parsed("aider").git.isolation,
            crate::mission::Isolation::Worktree
        );
        assert_eq!(
            parsed("claude").git.isolation,
            crate::mission::Isolation::Shared
        );
        let claude = mission_text("claude").unwrap();
        assert!(claude.contains("--allowedTools"), "{claude}");
        assert!(claude.contains("IS_SANDBOX=1"), "{claude}");
        assert!(mission_text("gpt").is_err());
    }
}
