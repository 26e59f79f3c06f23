//! The pre- and post-round simulations: processes that read the repository and write data into
//! a staging folder orch gives them (`{out}`, `ORCH_SIM_OUT`), published to `sims.publishTo`
//! only when the sim succeeded and, for the post-sim, the tests passed.
//!
//! Because a sim writes only to its own staging folder, it can run beside the agents (pre) and
//! beside the tests (post) without either seeing half-written data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::exec::process::{self, Ending, Spec};
use crate::error::{IoContext, Result};
use crate::events::{Event, Events};
use crate::mission::Sim;
use crate::roundlog::{SimEntry, StepStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Pre,
    Post,
}

impl Which {
    pub fn as_str(self) -> &'static str {
        match self {
            Which::Pre => "pre",
            Which::Post => "post",
        }
    }
}

pub struct SimRun<'a> {
    pub which: Which,
    pub sim: &'a Sim,
    pub root: &'a Path,
    pub staging: PathBuf,
    pub log: PathBuf,
    pub round: u32,
    pub grace: Duration,
    pub round_start: Instant,
}

impl SimRun<'_> {
    pub fn run(&self, events: &Events) -> SimEntry {
        events.emit(Event::SimStart {
            round: self.round,
            sim: self.which.as_str().into(),
        });
        let started = Instant::now();
        let _ = std::fs::remove_dir_all(&self.staging);
        let out = self.staging.display().to_string();
        let ending = match std::fs::create_dir_all(&self.staging) {
            Err(e) => Ending::SpawnFailed(format!("creating {out}: {e}")),
            Ok(()) => {
                // The sim's own launcher, if any, goes in front, its placeholders filled too.
                let argv: Vec<String> = self
                    .sim
                    .launcher
                    .iter()
                    .flatten()
                    .cloned()
                    .chain(self.sim.command.argv())
                    .map(|a| {
                        a.replace("{out}", &out)
                            .replace("{round}", &self.round.to_string())
                    })
                    .collect();
                let mut env: Vec<(String, String)> = self
                    .sim
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                env.push(("ORCH_SIM_OUT".into(), out.clone()));
                env.push(("ORCH_ROUND".into(), self.round.to_string()));
                env.push(("ORCH_SIM".into(), self.which.as_str().into()));
                // Under `sandbox.tests`: the sim runs the agents' code, fenced like them,
                // writing its output folder; one with a launcher runs elsewhere, as it is.
                let (argv, _sandbox) = if self.sim.launcher.is_some() {
                    (argv, None)
                } else {
                    crate::engine::exec::sandbox::rules::fenced(
                        self.root,
                        vec![self.staging.clone()],
                        &env,
                        argv,
                    )
                };
                process::run(&Spec {
                    label: format!("{}-sim", self.which.as_str()),
                    argv,
                    cwd: self.root.to_path_buf(),
                    env,
                    stdin: None,
                    stdout: self.log.clone(),
                    stderr: self.log.clone(),
                    timeout: Duration::from_secs_f64(self.sim.timeout_s),
                    grace: self.grace,
                    launched: self.sim.launcher.is_some(),
                    env_clear: false,
                })
                .ending
            }
        };
        let status = match &ending {
            Ending::Exited(0) => StepStatus::Ok,
            Ending::TimedOut => StepStatus::Timeout,
            Ending::Cancelled => StepStatus::Cancelled,
            _ => StepStatus::Failed,
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        events.emit(Event::SimEnd {
            round: self.round,
            sim: self.which.as_str().into(),
            status,
            elapsed_ms,
        });
        SimEntry {
            status,
            exit_code: ending.exit_code(),
            start_ms: started.duration_since(self.round_start).as_millis() as u64,
            elapsed_ms,
            published: false,
            log: String::new(),
            note: match ending {
                Ending::SpawnFailed(e) => Some(e),
                _ => None,
            },
        }
    }
}

/// Copies the staging folder's files into `dest` (creating it), replacing files of the same
/// name and leaving others: the latest data wins, older data not rewritten stays.
pub fn publish(staging: &Path, dest: &Path) -> Result<()> {
    copy_tree(staging, dest).ctx(|| {
        format!(
            "publishing sim output from {} to {}",
            staging.display(),
            dest.display()
        )
    })
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
        // Symlinks and special files are not published: a sim's output is data.
    }
    Ok(())
}
