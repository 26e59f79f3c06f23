//! `orch demo`: a real run, on a scratch repository, with the fake agents the binary carries.
//! No API key, no network: only orch, git and sh.
//!
//! The mission is scripted so that three rounds show what orch does: two code agents at once
//! beside a pre-sim, the tests beside a post-sim, a producer filing a task that a task-driven
//! agent picks up, a reviewer, a round where one agent breaks the tests and only its change is
//! taken out (kept in a ref), and an agent that fails and moves up its model ladder.

use std::path::{Path, PathBuf};

use crate::cli::drive;
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

/// Makes the scratch repository and runs the demo; prints the report at the end.
pub fn run(dir: Option<PathBuf>, rounds: u32, json: bool, verbosity: Verbosity) -> Result<i32> {
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
    setup(&dir)?;
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

/// The scratch project: a tiny "app", the fake tools, the mission, one commit.
fn setup(dir: &Path) -> Result<()> {
    let files: &[(&str, &str)] = &[
        (
            "README.md",
            "# demo app\n\nA scratch project that orch's demo agents work on.\n",
        ),
        ("src/app.txt", "the app\n"),
        ("tools/fake-agent.sh", FAKE_AGENT),
        ("tools/fake-tests.sh", FAKE_TESTS),
        ("tools/fake-sim.sh", FAKE_SIM),
        ("orch.json", MISSION),
    ];
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
