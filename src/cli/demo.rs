//! `orch demo`: a real run, on a scratch repository, with the fake agents the binary carries.
//! No API key, no network: only orch, git and sh.
//!
//! The mission is scripted so that three rounds show what orch does: two code agents at once
//! beside a pre-sim, the tests beside a post-sim, a producer filing a task that a task-driven
//! agent picks up, a reviewer, a round where one agent breaks the tests and only its change is
//! taken out (kept in a ref), and an agent that fails and moves up its model ladder.
//!
//! With `--real-model URL` the two code agents are real Claude Code (`claude` on PATH) on a
//! local model behind URL (an Anthropic Messages server: tests/mock_api/mock_api.py
//! --real-model, llama.cpp's server, Ollama), each asked for a small edit of the app; the
//! producer, the fixer, the reviewer and the tests stay the bundled scripts. What a small model
//! makes of the edits varies: that is the point, orch's handling of them is what is shown.

use std::path::{Path, PathBuf};

use crate::cli::drive::drive;
use crate::cli::init::{FAKE_AGENT, FAKE_SIM, FAKE_TESTS};
use crate::engine::git::Git;
use crate::engine::runner::RunOptions;
use crate::error::{Error, IoContext, Result};
use crate::events::Verbosity;

const MISSION: &str = r#"{
  // The demo mission: fake agents whose behaviour depends on the round (--round N).
  "name": "demo",
  "rounds": 3,
  "maxConcurrency": 2,
  "budgetUsd": 5,
  "agents": [
    { "name": "ui-dev", "phase": "code", "models": ["haiku", "sonnet"],
      "command": ["sh", "tools/fake-agent.sh", "--cost", "0.21", "--sleep", "1.2",
                  "--round", "1", "--write", "src/ui.txt=a header and a footer",
                  "--round", "2", "--write", "src/ui.txt=BROKEN layout (this breaks the tests)",
                  "--round", "3", "--write", "src/ui.txt=a sidebar"] },
    { "name": "api-dev", "phase": "code", "models": ["haiku", "sonnet"], "escalateAfter": 1,
      "command": ["sh", "tools/fake-agent.sh", "--cost", "0.14", "--sleep", "0.8",
                  "--round", "1", "--write", "src/api.txt=GET /items",
                  "--round", "2", "--exit", "1",
                  "--round", "3", "--write", "src/api.txt=POST /items"] },
    { "name": "fixer", "phase": "code", "when": "tasks",
      "command": ["sh", "tools/fake-agent.sh", "--cost", "0.09", "--sleep", "0.5",
                  "--write", "src/fixes.txt=round {round}: fixed what the producer asked"] },
    { "name": "producer", "phase": "review",
      "command": ["sh", "tools/fake-agent.sh", "--cost", "0.05", "--sleep", "0.4",
                  "--round", "1", "--task-for", "fixer:1:validate item names in the API"] },
    { "name": "reviewer", "phase": "review",
      "command": ["sh", "tools/fake-agent.sh", "--cost", "0.08", "--sleep", "0.6",
                  "--write", "docs/reviews.md=round {round}: reviewed"] }
  ],
  "sims": {
    "pre":  { "command": ["sh", "tools/fake-sim.sh", "{out}", "1.0"] },
    "post": { "command": ["sh", "tools/fake-sim.sh", "{out}", "0.7"] },
    "publishTo": "sim-data"
  },
  "tests": { "command": ["sh", "tools/fake-tests.sh", "0.5"], "timeoutS": 60 }
}
"#;

/// The code agents of `orch demo --real-model`: real Claude Code on a local model. A short
/// system prompt and three tools keep each request small (a 1.5B model on a CPU reads about
/// 60 tokens a second; Claude Code's own system prompt is about 11,000).
const REAL_AGENTS: &[(&str, &str, &str)] = &[
    (
        "ui-dev",
        "src/ui.txt",
        "src/ui.txt describes the page layout of the app in one line. Round {{round}}: add one \
         more part of the layout (a menu, a sidebar, a search box) to that line. First Read \
         src/ui.txt; then Edit it, with old_string its line exactly as you read it and \
         new_string that line with the new part. Then stop.",
    ),
    (
        "api-dev",
        "src/api.txt",
        "src/api.txt lists the endpoints of the app's API, one a line. Round {{round}}: add one \
         endpoint (such as POST /items). First Read src/api.txt; then Edit it, with old_string \
         its last line exactly as you read it and new_string that line, a newline and the new \
         endpoint. Then stop.",
    ),
];

/// Where the code agents' model is, for `orch demo --real-model`.
pub struct RealModel<'a> {
    /// The base URL of an Anthropic Messages server (ANTHROPIC_BASE_URL).
    pub url: &'a str,
    /// The model name Claude Code asks for.
    pub model: &'a str,
}

/// The demo's mission with its two code agents as Claude Code on the local model.
fn real_mission(real: &RealModel) -> Result<String> {
    let mut mission: serde_json::Value =
        serde_json::from_str(&crate::mission::strip_comments(MISSION))
            .map_err(|e| Error::Other(format!("the demo mission does not parse: {e}")))?;
    let system = "You are a coding agent working in the current folder. Use the tools to read \
                  and write files. Make the change asked, then stop.";
    for agent in mission["agents"].as_array_mut().into_iter().flatten() {
        let name = agent["name"].as_str().unwrap_or_default().to_string();
        let Some(_) = REAL_AGENTS.iter().find(|(n, _, _)| *n == name) else {
            continue;
        };
        *agent = serde_json::json!({
            "name": name, "phase": "code", "models": [real.model],
            "command": ["claude", "-p", "--bare", "--model", "{model}",
                        "--output-format", "stream-json", "--verbose",
                        "--include-partial-messages", "--permission-mode", "acceptEdits",
                        "--tools", "Read,Edit", "--max-turns", "6", "--system-prompt", system],
            "stdin": "prompt", "prompt": format!("prompts/{name}.md"), "timeoutS": 900,
            // A local model on a CPU may read a long prompt for minutes before its first
            // token: silence is stuck only after ten.
            "stuck": { "idleS": 600 },
            "env": { "ANTHROPIC_BASE_URL": real.url, "ANTHROPIC_API_KEY": "sk-local",
                     "CLAUDE_CODE_MAX_RETRIES": "2", "DISABLE_TELEMETRY": "1",
                     "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1" }
        });
    }
    // One code agent at a time: a local server answers one request at a time anyway.
    mission["maxConcurrency"] = serde_json::json!(1);
    mission["name"] = serde_json::json!("demo-real-model");
    serde_json::to_string_pretty(&mission)
        .map_err(|e| Error::Other(format!("writing the demo mission: {e}")))
}

/// Whether `claude` is a program on PATH.
fn claude_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("claude").is_file()))
}

/// Makes the scratch repository and runs the demo; prints the report at the end.
pub fn run(
    dir: Option<PathBuf>,
    rounds: u32,
    real: Option<RealModel>,
    json: bool,
    verbosity: Verbosity,
) -> Result<i32> {
    let mission = match &real {
        None => MISSION.to_string(),
        Some(real) => {
            if !real.url.starts_with("http://") && !real.url.starts_with("https://") {
                return Err(Error::Usage(format!(
                    "--real-model {}: expected the server's URL, such as http://127.0.0.1:8080",
                    real.url
                )));
            }
            if !claude_on_path() {
                return Err(Error::Usage(
                    "--real-model runs Claude Code: `claude` is not on PATH (npm install -g \
                     @anthropic-ai/claude-code, or scripts/real-cli-install in orch's repository)"
                        .into(),
                ));
            }
            real_mission(real)?
        }
    };
    let dir = match dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(&d)
                    .ctx(|| format!("reading {}", d.display()))?
                    .next()
                    .is_some()
            {
                return Err(Error::Usage(format!(
                    "{} is not empty; the demo needs an empty or new folder",
                    d.display()
                )));
            }
            d
        }
        None => scratch_dir()?,
    };
    setup(&dir, &mission, real.is_some())?;
    log::info!("demo repository: {}", dir.display());
    let opts = RunOptions {
        dir: dir.clone(),
        mission: "orch.json".into(),
        more_rounds: Some(rounds),
        ..RunOptions::default()
    };
    let code = drive(&opts, json, verbosity)?;
    if !json {
        let report = crate::report::markdown(&dir.join(".orch"))?;
        crate::outln!("{report}")?;
        let orch = self_command();
        let html = std::env::temp_dir().join("orch-demo-report.html");
        crate::outln!(
            "The demo repository is {dir}. Try, there:
  cd {dir}
  git log --oneline
  git show-ref | grep orch
  {orch} status
  {orch} report --format html -o {html}
(the report goes outside the repository: a file in its working tree would make the next `{orch} run` refuse the dirty tree)",
            dir = shell_word(&dir.display().to_string()),
            html = shell_word(&html.display().to_string()),
        )?;
    }
    Ok(code)
}

/// How to run this very orch from the demo's folder: `orch` when that is what PATH finds, else
/// the binary's full path (`cargo run --release -- demo` leaves no `orch` on PATH).
fn self_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "orch".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("orch"))
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
            .is_some_and(|p| p == me)
    });
    if on_path {
        "orch".into()
    } else {
        shell_word(&me.display().to_string())
    }
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn scratch_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..1000u32 {
        let d = base.join(format!("orch-demo-{}-{i}", std::process::id()));
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", d.display()), e)),
        }
    }
    Err(Error::Other(
        "cannot make a scratch folder for the demo".into(),
    ))
}

/// The scratch project: a tiny "app", the fake tools, the mission (and the real agents'
/// prompts), one commit.
fn setup(dir: &Path, mission: &str, real: bool) -> Result<()> {
    // The real agents' prompts, and the files they edit (Claude Code's Edit changes a file
    // that is there).
    let mut extra: Vec<(String, &str)> = Vec::new();
    if real {
        for (name, file, prompt) in REAL_AGENTS {
            extra.push((format!("prompts/{name}.md"), *prompt));
            let first = if *name == "ui-dev" {
                "a header and a footer\n"
            } else {
                "GET /items\n"
            };
            extra.push((file.to_string(), first));
        }
    }
    let mut files: Vec<(&str, &str)> = vec![
        (
            "README.md",
            "# demo app\n\nA scratch project that orch's demo agents work on.\n",
        ),
        ("src/app.txt", "the app\n"),
        ("tools/fake-agent.sh", FAKE_AGENT),
        ("tools/fake-tests.sh", FAKE_TESTS),
        ("tools/fake-sim.sh", FAKE_SIM),
        ("orch.json", mission),
    ];
    files.extend(extra.iter().map(|(p, t)| (p.as_str(), *t)));
    for (p, text) in files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))?;
    }
    let out = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .output()
        .map_err(|e| Error::Usage(format!("the demo needs git: {e}")))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "git init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let git = Git::open(dir)?;
    git.commit_all("demo app")?;
    Ok(())
}
