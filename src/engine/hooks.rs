//! `hooks`: the mission's commands told about the run while it goes (`roundEnd`, `attention`,
//! `runEnd`), so that a night that needs a person can page one. Built as an event sink, so the
//! engine knows nothing about them: the sink picks the events a hook wants and hands them to one
//! worker thread, which runs the hooks one after another, in event order, through
//! [`process::run_past_interrupt`].
//!
//! A hook never holds up a round: the sink only queues (a full queue drops the event with a
//! warning), and a hook that fails, hangs past `hooks.timeoutS` or cannot start is a warning.
//! Each hook gets the event as one JSON line on standard input (the `--json` line) and `ORCH_*`
//! variables for shell one-liners. Hooks run in their own process group and are killed with
//! their descendants at their timeout, like every child of orch; when the run ends, the sink
//! waits for the hooks still queued (the `runEnd` one is usually last), each within its timeout,
//! and drops those that could not start by then: nothing a hook starts outlives orch.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use crate::engine::exec::process::{self, Ending, Spec};
use crate::events::{self, Event, Sink, Verbosity};
use crate::mission::{Command, Hooks};
use crate::roundlog::RunStatus;

/// Which hook an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    RoundEnd,
    Attention,
    RunEnd,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::RoundEnd => "roundEnd",
            Hook::Attention => "attention",
            Hook::RunEnd => "runEnd",
        }
    }

    /// The hook an event goes to, if any.
    pub fn for_event(event: &Event) -> Option<Hook> {
        match event {
            Event::RoundEnd { .. } => Some(Hook::RoundEnd),
            Event::RunEnd { .. } => Some(Hook::RunEnd),
            e if needs_attention(e) => Some(Hook::Attention),
            _ => None,
        }
    }
}

/// Whether an event is one a person may have to act on: work taken out (a revert), an agent
/// that failed, timed out or conflicted or changed the repository's git settings, a run that stopped before its rounds were done. The
/// one list to extend when the engine learns a new kind of trouble.
pub fn needs_attention(event: &Event) -> bool {
    match event {
        Event::Revert { .. } | Event::Stop { .. } => true,
        Event::AgentEnd {
            status,
            git_settings_put_back,
            ..
        } => {
            matches!(
                status,
                RunStatus::Failed | RunStatus::Timeout | RunStatus::Conflict
            ) || !git_settings_put_back.is_empty()
        }
        _ => false,
    }
}

/// Where hooks run and what they are told about the run.
#[derive(Debug, Clone)]
pub struct Context {
    pub mission: String,
    /// The repository root: the hooks' working folder (`ORCH_REPO`).
    pub repo: PathBuf,
    /// The state folder (`ORCH_STATE_DIR`); hook input and output go to `logs/hooks/` in it.
    pub state_dir: PathBuf,
    pub grace: Duration,
    /// Extra `ORCH_*` variables every hook gets (the run's branch).
    pub env: Vec<(String, String)>,
}

struct Job {
    hook: Hook,
    command: Command,
    line: String,
    env: Vec<(String, String)>,
}

/// The sink that runs hooks. Made only when the mission has at least one.
pub struct HookSink {
    hooks: Hooks,
    ctx: Arc<Context>,
    tx: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    /// Set by `finish`: a queued hook that has not started by then is dropped.
    last_start: Arc<Mutex<Option<Instant>>>,
}

/// How many events may wait for the worker before new ones are dropped.
const QUEUE: usize = 256;

impl HookSink {
    /// `None` when the mission has no hook.
    pub fn new(hooks: Option<&Hooks>, ctx: Context) -> Option<HookSink> {
        let hooks = hooks?.clone();
        if hooks.round_end.is_none() && hooks.attention.is_none() && hooks.run_end.is_none() {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        let ctx = Arc::new(ctx);
        let last_start = Arc::new(Mutex::new(None::<Instant>));
        let timeout = Duration::from_secs_f64(hooks.timeout_s);
        let worker = {
            let ctx = Arc::clone(&ctx);
            let last_start = Arc::clone(&last_start);
            std::thread::Builder::new()
                .name("orch-hooks".into())
                .spawn(move || {
                    for job in rx {
                        let late = last_start
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .is_some_and(|t| Instant::now() > t);
                        if late {
                            log::warn!(
                                "hook {}: not run: orch is ending and the hooks before it used up the time",
                                job.hook.as_str()
                            );
                            continue;
                        }
                        run_one(&ctx, &job, timeout);
                    }
                })
        };
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                log::warn!("hooks: cannot start their thread ({e}); no hook will run");
                return None;
            }
        };
        Some(HookSink {
            hooks,
            ctx,
            tx: Some(tx),
            worker: Some(worker),
            last_start,
        })
    }

    fn command(&self, hook: Hook) -> Option<&Command> {
        match hook {
            Hook::RoundEnd => self.hooks.round_end.as_ref(),
            Hook::Attention => self.hooks.attention.as_ref(),
            Hook::RunEnd => self.hooks.run_end.as_ref(),
        }
    }
}

impl Sink for HookSink {
    fn event(&mut self, event: &Event) {
        let Some(hook) = Hook::for_event(event) else {
            return;
        };
        let Some(command) = self.command(hook).cloned() else {
            return;
        };
        let Some(tx) = &self.tx else {
            return;
        };
        let job = Job {
            hook,
            command,
            line: events::to_json_line(event),
            env: variables(hook, event, &self.ctx),
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => log::warn!(
                "hook {}: {QUEUE} events already wait for the hooks; this one is dropped",
                job.hook.as_str()
            ),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits for the queued hooks: each within its timeout, and none starts later than one
    /// timeout from now.
    fn finish(&mut self) {
        let timeout = Duration::from_secs_f64(self.hooks.timeout_s);
        *self.last_start.lock().unwrap_or_else(|e| e.into_inner()) =
            Instant::now().checked_add(timeout);
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for HookSink {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The `ORCH_*` variables of one hook run.
fn variables(hook: Hook, event: &Event, ctx: &Context) -> Vec<(String, String)> {
    let v = serde_json::to_value(event).unwrap_or_default();
    let text = |k: &str| match &v[k] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    let message = events::describe(event, Verbosity::Verbose).unwrap_or_default();
    let message = message.strip_prefix("orch: ").unwrap_or(&message);
    let mut env = vec![
        ("ORCH_HOOK".to_string(), hook.as_str().to_string()),
        ("ORCH_EVENT".into(), text("event").unwrap_or_default()),
        ("ORCH_MISSION".into(), ctx.mission.clone()),
        (
            "ORCH_MESSAGE".into(),
            format!("orch {}: {message}", ctx.mission),
        ),
        ("ORCH_REPO".into(), ctx.repo.display().to_string()),
        ("ORCH_STATE_DIR".into(), ctx.state_dir.display().to_string()),
    ];
    for (var, key) in [
        ("ORCH_ROUND", "round"),
        ("ORCH_STATUS", "status"),
        ("ORCH_AGENT", "agent"),
        ("ORCH_REASON", "reason"),
        ("ORCH_EXIT_CODE", "exitCode"),
        ("ORCH_COMMIT", "commit"),
        ("ORCH_TOTAL_COST_USD", "totalCostUsd"),
    ] {
        if let Some(val) = text(key) {
            env.push((var.into(), val));
        }
    }
    env.extend(ctx.env.iter().cloned());
    env
}

/// Runs one hook to its end and says, as a warning, how it failed if it did.
fn run_one(ctx: &Context, job: &Job, timeout: Duration) {
    let dir = ctx.state_dir.join("logs").join("hooks");
    let name = job.hook.as_str();
    let input = dir.join(format!("{name}.json"));
    let output = dir.join(format!("{name}.log"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&input, format!("{}\n", job.line)));
    if let Err(e) = written {
        log::warn!(
            "hook {name}: cannot write its input {}: {e}",
            input.display()
        );
        return;
    }
    let spec = Spec {
        label: format!("hook {name}"),
        argv: job.command.argv(),
        cwd: ctx.repo.clone(),
        env: job.env.clone(),
        stdin: Some(input),
        stdout: output.clone(),
        stderr: output.clone(),
        timeout,
        grace: ctx.grace,
        launched: false,
        env_clear: false,
    };
    let f = process::run_past_interrupt(&spec);
    let what = match &f.ending {
        Ending::Exited(0) => return,
        Ending::Exited(c) => format!("failed (exit status {c})"),
        Ending::Signalled(s) => format!("was killed by signal {s}"),
        Ending::TimedOut => format!(
            "did not finish within hooks.timeoutS ({}) and was killed",
            crate::units::duration_ms(timeout.as_millis() as u64)
        ),
        Ending::Cancelled => "was stopped by the second signal".into(),
        // Not watched: never stopped as stuck.
        Ending::Stuck(s) => format!("was stopped: {}", s.words),
        Ending::SpawnFailed(e) => format!("could not start: {e}"),
    };
    let last = std::fs::read_to_string(&output)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .map(|l| format!(": {}", l.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    log::warn!(
        "hook {name} {what}{last} (output in {}); the run goes on",
        output.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roundlog::Phase;

    #[test]
    fn attention_is_reverts_stops_and_agents_in_trouble() {
        let agent = |status: RunStatus| Event::AgentEnd {
            round: 1,
            agent: "a".into(),
            phase: Phase::Code,
            model: String::new(),
            status,
            exit_code: None,
            elapsed_ms: 0,
            cost_usd: 0.0,
            cost_known: false,
            changed_files: 0,
            error: None,
            cause: None,
            resets_at: None,
            amended: false,
            aside: None,
            git_settings_put_back: Vec::new(),
            sandbox_refused: Vec::new(),
        };
        for s in [RunStatus::Failed, RunStatus::Timeout, RunStatus::Conflict] {
            assert_eq!(Hook::for_event(&agent(s)), Some(Hook::Attention), "{s:?}");
        }
        for s in [RunStatus::Ok, RunStatus::Empty, RunStatus::Cancelled] {
            assert_eq!(Hook::for_event(&agent(s)), None, "{s:?}");
        }
        let stop = Event::Stop {
            reason: "budget".into(),
            exit_code: 3,
        };
        assert_eq!(Hook::for_event(&stop), Some(Hook::Attention));
        let warn = Event::Warning {
            round: None,
            message: "x".into(),
        };
        assert_eq!(Hook::for_event(&warn), None);
    }

    #[test]
    fn variables_carry_the_event_fields_that_exist() {
        let ctx = Context {
            mission: "m".into(),
            repo: "/r".into(),
            state_dir: "/r/.orch".into(),
            grace: Duration::from_secs(1),
            env: vec![("ORCH_BRANCH".into(), "b".into())],
        };
        let env = variables(
            Hook::RunEnd,
            &Event::RunEnd {
                rounds: 2,
                exit_code: 3,
                total_cost_usd: 1.5,
            },
            &ctx,
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ORCH_HOOK"), Some("runEnd"));
        assert_eq!(get("ORCH_EVENT"), Some("runEnd"));
        assert_eq!(get("ORCH_EXIT_CODE"), Some("3"));
        assert_eq!(get("ORCH_TOTAL_COST_USD"), Some("1.5"));
        assert_eq!(get("ORCH_ROUND"), None);
        assert_eq!(get("ORCH_BRANCH"), Some("b"));
        assert!(get("ORCH_MESSAGE")
            .unwrap()
            .starts_with("orch m: 2 rounds run"));
    }
}
