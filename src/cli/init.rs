//! `orch init`: writes a commented example mission (`orch.json`) and a prompt template per
//! role, for the agent CLI the user names. Each real CLI is called the way it must be called
//! unattended: non-interactive mode, the model from `{model}`, the prompt on standard input,
//! and machine-readable output where the CLI has one so that `cost` can read what a run cost.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// The bundled fake agent; `orch init --agent script` and `orch demo` write it out.
pub const FAKE_AGENT: &str = include_str!("../../fixtures/agents/fake-agent.sh");
pub const FAKE_TESTS: &str = include_str!("../../fixtures/agents/fake-tests.sh");
pub const FAKE_SIM: &str = include_str!("../../fixtures/agents/fake-sim.sh");

/// How one agent CLI is called unattended.
struct Flavor {
    command: &'static str,
    /// The variables, beyond the common ones, this CLI needs (its API keys and settings).
    env: &'static str,
    stdin: bool,
    models: &'static str,
    note: &'static str,
}

fn flavor(agent: &str) -> Result<Flavor> {
    Ok(match agent {
        "claude" => Flavor {
            command: r#"["claude", "-p", "--model", "{model}", "--output-format", "json", "--permission-mode", "acceptEdits"]"#,
            stdin: true,
            models: r#"["sonnet", "opus"]"#,
            env: r#""ANTHROPIC_*", "CLAUDE_*", "AWS_REGION", "AWS_PROFILE""#,
            note: "Claude Code in print mode: the prompt on stdin, a JSON result with total_cost_usd on stdout.",
        },
        "codex" => Flavor {
            command: r#"["codex", "exec", "--json", "--model", "{model}", "--sandbox", "workspace-write", "-"]"#,
            stdin: true,
            models: r#"["gpt-5-mini", "gpt-5"]"#,
            env: r#""OPENAI_*", "CODEX_*""#,
            note: "Codex exec: the prompt on stdin (`-`), JSON events with token usage on stdout; costs come from `pricing`.",
        },
        "aider" => Flavor {
            command: r#"["aider", "--model", "{model}", "--yes-always", "--no-auto-commits", "--no-stream", "--no-pretty", "--message-file", "{prompt_file}"]"#,
            stdin: false,
            models: r#"["sonnet", "opus"]"#,
            env: r#""ANTHROPIC_*", "OPENAI_*", "AIDER_*""#,
            note: "aider: one message from the prompt file, no questions, no commits of its own (orch commits).",
        },
        "script" => Flavor {
            command: r#"["sh", "agents/fake-agent.sh", "--sleep", "1", "--write", "notes/{agent}.md=round {round}", "--cost", "0.02"]"#,
            stdin: false,
            models: r#"["small", "large"]"#,
            env: "",
            note: "A bundled fake agent (agents/fake-agent.sh): replace it with your own script or CLI.",
        },
        other => {
            return Err(Error::Usage(format!(
                "--agent {other}: expected claude, codex, aider or script"
            )))
        }
    })
}

pub fn mission_text(agent: &str) -> Result<String> {
    let f = flavor(agent)?;
    let stdin = if f.stdin {
        "\n      \"stdin\": \"prompt\","
    } else {
        ""
    };
    let pricing = if agent == "codex" {
        "\n  // USD per million tokens, for CLIs that print tokens but no cost.\n  \"pricing\": { \"gpt-5-mini\": { \"inputPerMTok\": 0.25, \"outputPerMTok\": 2.0 }, \"gpt-5\": { \"inputPerMTok\": 1.25, \"outputPerMTok\": 10.0 } },"
    } else {
        ""
    };
    Ok(format!(
        r#"{{
  // orch mission: JSON with // comments. `orch validate` checks it; README.md explains every key.
  // {note}
  "name": "my-mission",
  "rounds": 10,                  // `orch run` resumes after the last finished round
  "maxConcurrency": 2,           // agents at once in a phase
  "budgetUsd": 20,               // no new agent starts once this much is spent (exit 3)
  "stateDir": ".orch",           // logs, round logs, state; kept out of git by orch itself{pricing}
  // What agents get of orch's environment (besides ORCH_* and their own `env`): the CLI's own
  // keys and settings, where to find programs and its login (PATH, HOME), the terminal and
  // locale, proxies and CA certificates. Nothing else: a GITHUB_TOKEN or cloud key in your
  // shell does not reach an unattended agent. "all" passes everything.
  "inheritEnv": [{cli_env}"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_*", "TZ", "TMPDIR",
                 "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                 "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS"],
  "agents": [
    {{
      "name": "coder",
      "phase": "code",           // code agents run first; their work is tested, then committed
      "command": {command},{stdin}
      "prompt": "prompts/coder.md",
      "models": {models},        // the escalation ladder: next model after escalateAfter bad runs
      "escalateAfter": 2,
      "timeoutS": 900
    }},
    {{
      "name": "reviewer",
      "phase": "review",         // review agents run after the tests, on the committed result
      "command": {command},{stdin}
      "prompt": "prompts/reviewer.md",
      "models": {models},
      "when": {{ "every": 2 }}      // every second round
    }}
  ],
  // The command that decides whether a round's code is kept: a regression is reverted.
  "tests": {{ "command": ["sh", "-c", "echo 'replace me with your test command'; echo '1 passed, 0 failed'"], "timeoutS": 900, "retries": 1 }},
  "git": {{ "isolation": "shared", "commit": true }},
  "stop": {{ "afterEmptyRounds": 3 }}
}}
"#,
        note = f.note,
        cli_env = if f.env.is_empty() {
            String::new()
        } else {
            format!("{}, ", f.env)
        },
        command = f.command,
        models = f.models,
    ))
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
    if agent == "script" {
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
        for a in ["claude", "codex", "aider", "script"] {
            let text = mission_text(a).unwrap();
            let m = Mission::parse(&text, Path::new("orch.json"))
                .unwrap_or_else(|e| panic!("{a}: {e}\n{text}"));
            assert_eq!(m.agents.len(), 2);
        }
        assert!(mission_text("gpt").is_err());
    }
}
