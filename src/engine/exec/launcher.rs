//! Launchers: the argv prefixes (`srun ... --`, `ssh host --`, `kubectl exec POD --`) that run
//! agents and sims through another engine, on other machines. This module owns the start-up
//! probe that checks, before the first round, that the launcher works and that where it runs
//! things sees the same files orch does.
//!
//! orch hands an agent its working folder, prompt, task and result files as paths, and reads
//! back what the agent changed there. That only works if the node the launcher picks mounts
//! the repository at the same path (a shared filesystem). Finding that out at 3 a.m. as a
//! round of `failed` agents is the worst way; so `orch run` runs each distinct launcher once
//! with a tiny command that prints a token orch has just written into its state folder (where
//! the worktrees live), and refuses to start (exit 2) when the launcher cannot run, takes too
//! long, or runs somewhere that cannot read the token.
//!
//! Applying a launcher stays with the callers (`round::agent::run_agent`, `sims`), which own the
//! placeholders; the probe fills the same placeholders with stand-ins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::exec::process::{self, Ending, Spec};
use crate::error::{Error, Result};
use crate::mission::Mission;

/// How long a probe may take. A busy cluster can queue a job for longer; then the user learns
/// that at start-up, from a message that says so, rather than from timed-out agents.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The agent name the probe runs as (`{agent}`), so a job named `orch-{agent}` shows up as
/// `orch-probe` in the queue.
pub const PROBE_AGENT: &str = "probe";

/// One launcher as the mission wrote it, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// The key path: `launcher`, `agents[2].launcher`, `sims.pre.launcher`.
    pub at: String,
    pub argv: Vec<String>,
}

/// The launchers the mission will actually use, each template once: the top-level one only
/// if some agent has none of its own.
pub fn in_use(mission: &Mission) -> Vec<Use> {
    let mut out: Vec<Use> = Vec::new();
    let mut add = |at: String, argv: &Vec<String>| {
        if !out.iter().any(|u| &u.argv == argv) {
            out.push(Use {
                at,
                argv: argv.clone(),
            });
        }
    };
    if let Some(l) = &mission.launcher {
        if mission.agents.iter().any(|a| a.launcher.is_none()) {
            add("launcher".into(), l);
        }
    }
    for (i, a) in mission.agents.iter().enumerate() {
        if let Some(l) = &a.launcher {
            add(format!("agents[{i}].launcher"), l);
        }
    }
    if let Some(s) = &mission.sims {
        for (k, sim) in [("pre", &s.pre), ("post", &s.post)] {
            if let Some(l) = sim.as_ref().and_then(|s| s.launcher.as_ref()) {
                add(format!("sims.{k}.launcher"), l);
            }
        }
    }
    out
}

/// Where the probe may write: its token and its log.
pub struct ProbeSite<'a> {
    /// The repository root (the main working tree).
    pub root: &'a Path,
    /// orch's state folder (the worktrees are made under it).
    pub state_dir: &'a Path,
    pub grace: Duration,
    pub timeout: Duration,
}

/// The start-up check of `orch run`: probes every launcher the mission uses, with the
/// mission's kill grace and [`PROBE_TIMEOUT`]. Nothing to do for a mission without launchers.
pub fn check(mission: &Mission, root: &Path, state_dir: &Path) -> Result<()> {
    probe_all(
        mission,
        &ProbeSite {
            root,
            state_dir,
            grace: mission.grace(),
            timeout: PROBE_TIMEOUT,
        },
    )
}

/// Runs every launcher the mission uses once; the first that fails is an `Error::Usage`
/// (exit 2) that names it and what it could not do.
pub fn probe_all(mission: &Mission, site: &ProbeSite<'_>) -> Result<()> {
    for u in in_use(mission) {
        probe(&u, site)?;
    }
    Ok(())
}

/// Runs `launcher + [cat, TOKEN]` and checks that the token comes back.
pub fn probe(launcher: &Use, site: &ProbeSite<'_>) -> Result<()> {
    let dir = site.state_dir.join("launcher-probe");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let token = format!(
        "orch-probe-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n"))
        .map_err(|e| Error::io(format!("writing {}", token_file.display()), e))?;
    let log = dir.join("probe.log");
    let argv = probe_argv(&launcher.argv, site.root, &token_file, site.state_dir);
    let finished = process::run(&Spec {
        label: format!("launcher probe ({})", launcher.at),
        argv,
        cwd: site.root.to_path_buf(),
        env: vec![
            ("ORCH_AGENT".into(), PROBE_AGENT.into()),
            ("ORCH_ROUND".into(), "0".into()),
            ("ORCH_WORKDIR".into(), site.root.display().to_string()),
        ],
        stdin: None,
        stdout: log.clone(),
        stderr: log.clone(),
        timeout: site.timeout,
        grace: site.grace,
        launched: true,
        env_clear: false,
    });
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&token_file);
    let seen = output.lines().any(|l| l.trim() == token);
    let problem = match finished.ending {
        Ending::Exited(0) if seen => {
            log::info!(
                "launcher {} ({}) reaches {} in {:.2}s",
                shown(&launcher.argv),
                launcher.at,
                site.root.display(),
                finished.elapsed.as_secs_f64()
            );
            return Ok(());
        }
        Ending::Exited(0) => format!(
            "it ran, but what it ran could not read {} (it printed something else): the \
             working folders are not on a filesystem shared with where the launcher runs \
             agents, or not at the same path",
            token_file.display()
        ),
        Ending::Exited(c) => format!(
            "it exited with status {c}: it could not run a command, or what it ran could not \
             read {}, a file in {} (the working folders must be on a filesystem shared with \
             where the launcher runs agents, at the same path)",
            token_file.display(),
            site.root.display(),
        ),
        Ending::Signalled(s) => format!("it was killed by signal {s}"),
        Ending::TimedOut => format!(
            "it did not answer within {:.0}s (is the cluster's queue full, or is it waiting \
             for a password?)",
            site.timeout.as_secs_f64()
        ),
        Ending::Cancelled => return Err(Error::Interrupted),
        // Not watched: never stopped as stuck.
        Ending::Stuck(s) => s.words,
        Ending::SpawnFailed(e) => e,
    };
    Err(Error::Usage(format!(
        "the launcher {} ({}) failed its start-up check: {problem}.{}\nThe check ran: {}",
        shown(&launcher.argv),
        launcher.at,
        tail(&output),
        shown(&probe_argv(
            &launcher.argv,
            site.root,
            &token_file,
            site.state_dir
        )),
    )))
}

/// The probe's argv: the launcher with its placeholders filled by stand-ins, then a command
/// that prints the token.
fn probe_argv(launcher: &[String], root: &Path, token: &Path, state_dir: &Path) -> Vec<String> {
    let root_s = root.display().to_string();
    let out: PathBuf = state_dir.join("launcher-probe");
    let fill = |a: &String| {
        a.replace("{agent}", PROBE_AGENT)
            .replace("{round}", "0")
            .replace("{model}", "")
            .replace("{prompt_file}", "")
            .replace("{task_file}", "")
            .replace("{workdir}", &root_s)
            .replace("{out}", &out.display().to_string())
    };
    launcher
        .iter()
        .map(fill)
        // A plain `cat PATH`, no shell syntax: `ssh` joins its argv into one string for the
        // remote shell, which would mangle a quoted `sh -c` script. The token lives in the
        // state folder, under the root, beside the worktrees: reading it proves all three.
        .chain(["cat".into(), token.display().to_string()])
        .collect()
}

/// An argv as a person would type it (quoted where a shell would need it).
fn shown(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@{}%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of the probe's output, for the error message.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let from = lines.len().saturating_sub(5);
    format!("\nIts output ended with:\n  {}", lines[from..].join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mission(json: &str) -> Mission {
        Mission::parse(json, Path::new("orch.json"), &crate::agents::Adapters).unwrap()
    }

    fn site(dir: &Path) -> ProbeSite<'_> {
        ProbeSite {
            root: dir,
            state_dir: dir,
            grace: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        }
    }

    fn with(argv: &[&str]) -> Use {
        Use {
            at: "launcher".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn each_launcher_in_use_is_listed_once() {
        let m = mission(
            r#"{"name":"n","launcher":["srun","--"],"agents":[
                {"name":"a","phase":"code","command":"x"},
                {"name":"b","phase":"code","command":"x","launcher":["ssh","h","--"]},
                {"name":"c","phase":"code","command":"x","launcher":["srun","--"]}],
                "sims":{"pre":{"command":"x","launcher":["ssh","h","--"]}}}"#,
        );
        let used = in_use(&m);
        assert_eq!(used.len(), 2, "{used:?}");
        assert_eq!(used[0].at, "launcher");
        assert_eq!(used[1].at, "agents[1].launcher");
        // A top-level launcher every agent overrides is never used.
        let m = mission(
            r#"{"name":"n","launcher":["srun","--"],"agents":[
                {"name":"a","phase":"code","command":"x","launcher":["ssh","h","--"]}]}"#,
        );
        assert_eq!(
            in_use(&m),
            [with(&["ssh", "h", "--"])].map(|mut u| {
                u.at = "agents[0].launcher".into();
                u
            })
        );
        let m = mission(r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x"}]}"#);
        assert!(in_use(&m).is_empty());
    }

    #[test]
    fn a_launcher_that_runs_the_command_here_passes() {
        let d = tempfile::tempdir().unwrap();
        probe(&with(&["env", "ORCH_X={agent}"]), &site(d.path())).unwrap();
    }

    #[test]
    fn a_launcher_that_cannot_see_the_folder_fails_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        // Runs the command with the token file out of sight, as on a node without the share.
        let hidden = with(&["sh", "-c", "cat /nonexistent/orch-token", "x"]);
        let e = probe(&hidden, &site(d.path())).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.contains("exited with status 1"), "{msg}");
        assert!(msg.contains("shared"), "{msg}");
        assert!(msg.contains("nonexistent"), "{msg}");
    }

    #[test]
    fn a_launcher_that_only_says_ok_does_not_fool_the_probe() {
        let d = tempfile::tempdir().unwrap();
        let e = probe(&with(&["sh", "-c", "echo ok", "x"]), &site(d.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("could not read"), "{e}");
        assert!(e.contains("'echo ok'"), "{e}");
    }

    #[test]
    fn a_missing_launcher_and_a_hanging_one_are_named() {
        let d = tempfile::tempdir().unwrap();
        let e = probe(&with(&["no-such-srun", "--"]), &site(d.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-srun") && e.contains("not found"), "{e}");
        let e = probe(&with(&["sh", "-c", "sleep 30", "x"]), &site(d.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not answer within 1s"), "{e}");
    }
}
