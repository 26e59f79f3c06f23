//! Who runs in a round and how: each agent's `when` gate and dependencies, its job (task,
//! model, timeout, expected run time), the pool's order and the rendered prompt. The rules a
//! round applies, and the same ones `--dry-run` shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agents::{self};
use crate::engine::exec::process::{self, Ending, Spec};
use crate::engine::prompt;
use crate::engine::store::inputs::{prompt_hash, RecordedJob, RoundInputs};
use crate::engine::store::sessions;
use crate::engine::store::state::State;
use crate::engine::store::tasks::{Queue, Task, TaskStatus};
use crate::error::{IoContext, Result};
use crate::events::Event;
use crate::mission::{Agent, Mission, When, WhenKeyword};
use crate::roundlog::{Choice, Decision, Handoff};

use super::agent::describe_ending;
use super::env::{run_stem, Env};
use super::job::{Job, Planned};
use super::state::Round;

/// The timeout of an agent's next run: adaptive once it has enough history.
pub fn timeout_for(agent: &Agent, st: &crate::engine::store::state::AgentState) -> Duration {
    adaptive_timeout(agent, st).unwrap_or_else(|| Duration::from_secs_f64(agent.timeout_s))
}

/// The adaptive timeout, once the agent has `minSamples` runs to measure; `None` before.
pub fn adaptive_timeout(
    agent: &Agent,
    st: &crate::engine::store::state::AgentState,
) -> Option<Duration> {
    let a = agent.adaptive_timeout.as_ref()?;
    if st.recent_run_ms.len() < a.min_samples {
        return None;
    }
    let mean = st.mean_run_ms()?;
    let secs = (a.factor * mean as f64 / 1000.0).clamp(a.min_s, a.max_s);
    Some(Duration::from_secs_f64(secs))
}

/// What an agent's `when` rule says for a round, before anything runs. The round and
/// `--dry-run` both ask this, so they never disagree. A `{"command": ...}` rule cannot be decided
/// without running its command: the round runs it, the dry run says so instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// In (true) or out, and why.
    Decided(bool, String),
    /// Waiting for the agents it depends on (`dependsOn`), and which.
    Blocked(String),
    /// Run this argv in the main tree; the agent takes part when it exits 0.
    Command(Vec<String>),
    /// Its `budgetUsd` is spent: it is not started again (whatever `--agent` says) until the
    /// budget is raised.
    OverBudget(String),
}

/// Why `agent` may not start again: what it has spent (`state.json`, across every run of the
/// state) has reached its `budgetUsd`.
pub fn over_budget(agent: &Agent, state: &State) -> Option<String> {
    let budget = agent.budget_usd?;
    let spent = state.agent(&agent.name).cost_usd;
    (spent >= budget).then(|| {
        format!(
            "{} spent of its budgetUsd {}",
            crate::units::usd(spent),
            crate::units::usd(budget)
        )
    })
}

/// The pending tasks of an agent over its `budgetUsd`: they wait on its budget (empty when it
/// is not over it).
pub fn waiting_on_budget(agent: &Agent, state: &State, queue: &Queue) -> Vec<String> {
    if over_budget(agent, state).is_none() {
        return Vec::new();
    }
    queue
        .tasks
        .iter()
        .filter(|t| t.agent == agent.name && t.status == TaskStatus::Pending)
        .map(|t| t.id.clone())
        .collect()
}

/// Hands the pending tasks of each agent over its `budgetUsd` to the agent its
/// `overBudgetTasksTo` names, when that one may still start (a task must not bounce between
/// two spent agents, nor go to one that would not run it). Each task keeps its priority and
/// attempts, and its body says where it came from. One line a handover, for the round's notes.
pub fn hand_over_budget_tasks(
    mission: &Mission,
    state: &State,
    queue: &mut Queue,
    round: u32,
) -> Vec<String> {
    let mut lines = Vec::new();
    for agent in &mission.agents {
        let Some(to) = agent
            .over_budget_tasks_to
            .as_deref()
            .and_then(|n| mission.agent(n))
        else {
            continue;
        };
        if over_budget(to, state).is_some() {
            continue;
        }
        let Some(why) = over_budget(agent, state) else {
            continue;
        };
        let ids = waiting_on_budget(agent, state, queue);
        if ids.is_empty() {
            continue;
        }
        let note = format!(
            "Round {round}: handed over from {} ({why}; overBudgetTasksTo)",
            agent.name
        );
        for id in &ids {
            if let Some(t) = queue.get_mut(id) {
                t.agent = to.name.clone();
            }
            queue.requeue(id, None, Some(&note));
        }
        lines.push(format!(
            "{}'s pending task{} {} went to {} (its budgetUsd is spent: {why}; overBudgetTasksTo)",
            agent.name,
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", "),
            to.name
        ));
    }
    lines
}

/// What is left of `agent`'s `budgetUsd`: the cap of its next run (`None` without a budget).
pub fn budget_left(agent: &Agent, state: &State) -> Option<f64> {
    let budget = agent.budget_usd?;
    Some((budget - state.agent(&agent.name).cost_usd).max(0.0))
}

/// The rules that decide whether an agent takes part in round `round`: its `budgetUsd` first
/// (a spending cap is not lifted by naming the agent), then `--agent NAME` (forced in,
/// whatever its `when`), then a reported `all-done`, then `dependsOn` (blocked until each
/// dependency reports `complete` in its handoff file), then its `when`.
pub fn gate(agent: &Agent, round: u32, queue: &Queue, only: &[String], state: &State) -> Gate {
    if let Some(why) = over_budget(agent, state) {
        return Gate::OverBudget(why);
    }
    if !only.is_empty() {
        return if only.contains(&agent.name) {
            Gate::Decided(true, "selected with --agent".into())
        } else {
            Gate::Decided(false, "not selected with --agent".into())
        };
    }
    if state.agent(&agent.name).handoff == Some(Handoff::AllDone) {
        return Gate::Decided(false, "it reported all-done".into());
    }
    let pending: Vec<String> = agent
        .depends_on
        .iter()
        .filter_map(|d| match state.agent(d).handoff {
            Some(h) if h.is_done() => None,
            Some(other) => Some(format!("{d} (it reported {other})")),
            None => Some(format!("{d} (no report yet)")),
        })
        .collect();
    if !pending.is_empty() {
        return Gate::Blocked(format!("waiting for {}", pending.join(", ")));
    }
    match &agent.when {
        When::Keyword(WhenKeyword::Always) => Gate::Decided(true, "runs every round".into()),
        When::Keyword(WhenKeyword::Tasks) => match queue.next_for(&agent.name) {
            Some(t) => Gate::Decided(true, format!("task {} is pending", t.id)),
            None => Gate::Decided(false, "no pending task".into()),
        },
        When::Every { every } => {
            if round % every == 0 {
                Gate::Decided(true, format!("runs every {every} rounds"))
            } else {
                let next = (round / every + 1) * every;
                Gate::Decided(
                    false,
                    format!("runs every {every} rounds; next in round {next}"),
                )
            }
        }
        When::Command { command } => Gate::Command(
            command
                .argv()
                .into_iter()
                .map(|a| {
                    a.replace("{round}", &round.to_string())
                        .replace("{agent}", &agent.name)
                })
                .collect(),
        ),
    }
}

/// One agent's next run as the state and the task queue decide it: the model on its ladder,
/// the task it takes, its timeout, its place in the pool. Pure: the round then marks the task
/// running and writes the prompt; `--dry-run` only shows it.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub model: String,
    pub task: Option<Task>,
    pub timeout: Duration,
    /// The timeout comes from the agent's history (`adaptiveTimeout`), not `timeoutS`.
    pub adaptive: bool,
    pub priority: u8,
    /// The agent's mean run time so far; 0 without history.
    pub expected_ms: u64,
}

pub fn job_plan(agent: &Agent, state: &State, queue: &Queue) -> JobPlan {
    let st = state.agent(&agent.name);
    let task = if agent.when == When::Keyword(WhenKeyword::Tasks) || queue.has_pending(&agent.name)
    {
        queue.next_for(&agent.name).cloned()
    } else {
        None
    };
    let adaptive = adaptive_timeout(agent, &st);
    JobPlan {
        model: agent.model_at(st.model_index),
        priority: task.as_ref().map_or(agent.priority, |t| t.priority),
        task,
        timeout: adaptive.unwrap_or_else(|| Duration::from_secs_f64(agent.timeout_s)),
        adaptive: adaptive.is_some(),
        expected_ms: st.mean_run_ms().unwrap_or(0),
    }
}

pub type QueueKey = (u8, std::cmp::Reverse<u64>, usize);

/// The order in which the pool starts a phase's agents: priority first, then the longest
/// expected run first (the phase's makespan approaches its longest chain), then mission order.
pub fn queue_key(priority: u8, expected_ms: u64, index: usize) -> QueueKey {
    (priority, std::cmp::Reverse(expected_ms), index)
}

/// An agent's prompt for a round, rendered in memory: the round writes it to the state folder,
/// `--dry-run` only measures it. A resumed session's prompt is `{{changes}}` alone.
#[allow(clippy::too_many_arguments)]
pub fn render_prompt(
    env: &Env,
    agent: &Agent,
    round: u32,
    model: &str,
    task: Option<&Task>,
    state: &State,
    cache: Option<&mut BTreeMap<String, String>>,
    resumed: bool,
) -> Result<prompt::Rendered> {
    let template = if resumed {
        prompt::RESUMED_TEMPLATE.to_string()
    } else {
        prompt::load_template(env.mission_dir, agent)?
    };
    let ctx = prompt::Context {
        agent,
        round,
        model,
        task,
        state,
        sim_data: env.sim_data(),
        mission: env.mission,
        mission_dir: env.mission_dir,
        git: cache.is_some().then_some(env.git),
        root: env.root(),
        grace: env.mission.grace(),
        run_commands: cache.is_some(),
    };
    let mut scratch = BTreeMap::new();
    Ok(prompt::build(
        &template,
        &ctx,
        cache.unwrap_or(&mut scratch),
    ))
}

/// The round's plan as the round runs it: who runs (and why not), each agent's job (its
/// prompt, model, timeout, task, worktree, session) and the inputs recorded for a replay.
impl<'e> Round<'e, '_> {
    /// Decides which agents take part and why the others do not.
    pub(super) fn plan(&mut self) -> Vec<Planned<'e>> {
        let env: &'e Env<'e> = self.env;
        let mut active = Vec::new();
        let recorded = env.replay.and_then(|r| r.recorded.as_ref());
        if recorded.is_none() {
            // Before the gates: the agent taking an over-budget agent's tasks sees them now.
            let handed = hand_over_budget_tasks(env.mission, self.state, self.queue, self.round);
            if !handed.is_empty() {
                for line in &handed {
                    self.note(line);
                }
                if let Err(e) = self.queue.save(env.layout) {
                    log::warn!("cannot save the task queue: {e}");
                }
            }
        }
        for (index, agent) in env.mission.agents.iter().enumerate() {
            let (decision, reason) = if let Some(rec) = recorded {
                replayed_decision(rec, env.replay.map_or(&[], |r| &r.agents), &agent.name)
            } else {
                match gate(agent, self.round, self.queue, env.only, self.state) {
                    Gate::Decided(true, why) => (Choice::Included, why),
                    Gate::Decided(false, why) => (Choice::Skipped, why),
                    Gate::Blocked(why) => (Choice::Blocked, why),
                    Gate::OverBudget(why) => (Choice::OverBudget, why),
                    Gate::Command(argv) => match self.when_command(agent, argv) {
                        (true, why) => (Choice::Included, why),
                        (false, why) => (Choice::Skipped, why),
                    },
                }
            };
            let included = decision == Choice::Included;
            // Its tasks stay pending for as long as its budget is spent: the plan says which.
            let tasks_waiting = if decision == Choice::OverBudget {
                waiting_on_budget(agent, self.state, self.queue)
            } else {
                Vec::new()
            };
            let reason = match tasks_waiting.len() {
                0 => reason,
                n => format!(
                    "{reason}; its pending task{} {} wait{} on its budget (raise budgetUsd, or set overBudgetTasksTo)",
                    if n == 1 { "" } else { "s" },
                    tasks_waiting.join(", "),
                    if n == 1 { "s" } else { "" }
                ),
            };
            self.log.decisions.push(Decision {
                agent: agent.name.clone(),
                decision,
                tasks_waiting,
                reason,
                model: None,
                escalated: false,
                outcome: None,
                elapsed_ms: None,
                budget_usd: agent.budget_usd,
                spent_usd: agent
                    .budget_usd
                    .map(|_| self.state.agent(&agent.name).cost_usd),
            });
            if included {
                active.push(Planned { agent, index });
            }
        }
        active
    }

    /// A `{"command": ...}` rule: the agent runs when its command exits 0 in the main tree.
    pub(super) fn when_command(&self, agent: &Agent, argv: Vec<String>) -> (bool, String) {
        let log = self
            .env
            .layout
            .logs(self.round)
            .join(format!("{}.when.log", agent.name));
        let f = process::run(&Spec {
            label: format!("when-command of {}", agent.name),
            argv,
            cwd: self.env.root().to_path_buf(),
            env: vec![
                ("ORCH_ROUND".into(), self.round.to_string()),
                ("ORCH_AGENT".into(), agent.name.clone()),
            ],
            stdin: None,
            stdout: log.clone(),
            stderr: log,
            timeout: Duration::from_secs(120),
            grace: self.env.mission.grace(),
            launched: false,
            env_clear: false,
        });
        match f.ending {
            Ending::Exited(0) => (true, "its when-command exited 0".into()),
            other => (
                false,
                format!(
                    "its when-command did not pass ({})",
                    describe_ending(&other)
                ),
            ),
        }
    }

    /// Builds the pool's jobs: picks tasks, renders prompts, sets timeouts, and orders them
    /// (`queue_key`); tells the sinks the phase's queue.
    pub(super) fn jobs<'p>(
        &mut self,
        planned: &[&Planned<'p>],
        base: &str,
    ) -> Result<Vec<Job<'p>>> {
        let mut jobs = Vec::new();
        for p in planned {
            jobs.push(self.job(p, base)?);
        }
        if !jobs.is_empty() {
            self.queue.save(self.env.layout)?;
            self.save_inputs();
        }
        jobs.sort_by_key(|j| queue_key(j.priority, j.expected_ms, j.index));
        if let Some(first) = jobs.first() {
            self.env.events.emit(Event::PhaseStart {
                round: self.round,
                phase: first.agent.phase,
                queue: jobs.iter().map(|j| j.agent.name.clone()).collect(),
                max_concurrency: self.env.max_concurrency,
            });
        }
        Ok(jobs)
    }

    /// One planned agent's job: its plan (or the recorded one, in a replay), its task marked
    /// running, its session, its prompt written, and what a replay needs recorded.
    fn job<'p>(&mut self, p: &Planned<'p>, base: &str) -> Result<Job<'p>> {
        let agent = p.agent;
        let mut plan = job_plan(agent, self.state, self.queue);
        // A replay gives the agent what the round gave it: model, timeout, task, place.
        // Its runs so far this round: a run again after a revert is its second job, with a
        // prompt file of its own.
        let nth = self
            .inputs
            .jobs
            .iter()
            .filter(|j| j.agent == agent.name)
            .count();
        let recorded = self
            .env
            .replay
            .and_then(|r| r.recorded.as_ref())
            .and_then(|r| r.job(&agent.name, nth));
        if let Some(r) = recorded {
            plan = JobPlan {
                model: r.model.clone(),
                task: r
                    .task
                    .as_ref()
                    .map(|t| self.queue.get(&t.id).cloned().unwrap_or_else(|| t.clone())),
                timeout: Duration::from_millis(r.timeout_ms),
                adaptive: r.adaptive_timeout,
                priority: r.priority,
                expected_ms: r.expected_ms,
            };
        }
        let task = plan.task;
        let recorded_task = task.clone();
        if let Some(t) = &task {
            if let Some(q) = self.queue.get_mut(&t.id) {
                q.status = TaskStatus::Running;
                q.attempts += 1;
            }
        }
        // A session is the live run's: a replay resumes none (it would add to the live
        // conversation), so it starts none either.
        let session = match agent.session && self.env.replay.is_none() {
            true => {
                let template = prompt::load_template(self.env.mission_dir, agent)?;
                let hash = sessions::mission_hash(self.env.mission, &template);
                sessions::plan(agent, &self.state.agent(&agent.name), &plan.model, &hash)
            }
            false => None,
        };
        let resumed = session.as_ref().is_some_and(|s| s.resume);
        let (prompt_file, text) =
            self.job_prompt(agent, &plan.model, task.as_ref(), recorded, resumed, nth)?;
        self.inputs.jobs.push(RecordedJob {
            agent: agent.name.clone(),
            phase: agent.phase,
            model: plan.model.clone(),
            timeout_ms: plan.timeout.as_millis() as u64,
            adaptive_timeout: plan.adaptive,
            task: recorded_task,
            priority: plan.priority,
            expected_ms: plan.expected_ms,
            prompt: self.env.layout.relative(&prompt_file),
            prompt_bytes: text.len() as u64,
            prompt_hash: prompt_hash(text.as_bytes()),
            resumed,
        });
        Ok(Job {
            worktree: self.env.worktree_for(agent),
            base: base.to_string(),
            agent,
            index: p.index,
            model: plan.model,
            priority: plan.priority,
            task,
            timeout: plan.timeout,
            prompt_file,
            expected_ms: plan.expected_ms,
            cap_args: budget_left(agent, self.state)
                .and_then(|left| agents::cap_args(agent, left))
                .unwrap_or_default(),
            budget_left: budget_left(agent, self.state),
            session,
            nth,
        })
    }

    /// The prompt of an agent's `nth` job, and its text: in a replay the recorded one when it
    /// can be used (a resumed session's short prompt cannot: a replay resumes none), else
    /// rendered from today's templates, with a note saying why.
    fn job_prompt(
        &mut self,
        agent: &Agent,
        model: &str,
        task: Option<&Task>,
        recorded: Option<&RecordedJob>,
        resumed: bool,
        nth: usize,
    ) -> Result<(PathBuf, String)> {
        let recorded_prompt = |r: &RecordedJob| match r.resumed {
            true => Err(
                "it was a resumed session's short prompt, and a replay resumes no \
                         session"
                    .to_string(),
            ),
            false => self.recorded_prompt(r),
        };
        Ok(match recorded.map(recorded_prompt) {
            Some(Ok(done)) => done,
            Some(Err(why)) => {
                self.note(&format!(
                    "{}: the recorded prompt cannot be used ({why}); rendered from today's templates",
                    agent.name
                ));
                self.write_prompt(agent, model, task, false, nth)?
            }
            None => {
                if self.env.replay.is_some_and(|r| r.recorded.is_some()) {
                    // Included in the recorded plan but never started in the round (a
                    // Phase B skipped after a revert): nothing recorded to give it.
                    self.note(&format!(
                        "{}: no job was recorded for it (it did not start in the round); planned and rendered now",
                        agent.name
                    ));
                }
                self.write_prompt(agent, model, task, resumed, nth)?
            }
        })
    }

    /// Writes the agent's prompt file; returns its path and text.
    pub(super) fn write_prompt(
        &mut self,
        agent: &Agent,
        model: &str,
        task: Option<&Task>,
        resumed: bool,
        nth: usize,
    ) -> Result<(PathBuf, String)> {
        let rendered = render_prompt(
            self.env,
            agent,
            self.round,
            model,
            task,
            self.state,
            Some(&mut self.sections),
            resumed,
        )?;
        for w in &rendered.warnings {
            log::warn!("agent {}: {w}", agent.name);
        }
        for s in rendered.sections.iter().filter(|s| s.cut > 0) {
            log::info!(
                "agent {}: prompt section {} trimmed by {} bytes",
                agent.name,
                s.name,
                s.cut
            );
        }
        let text = rendered.text;
        let path = self
            .env
            .layout
            .prompts(self.round)
            .join(format!("{}.md", run_stem(&agent.name, nth)));
        std::fs::write(&path, &text).ctx(|| format!("writing prompt {}", path.display()))?;
        Ok((path, text))
    }

    /// A replay: the prompt the round gave the agent, copied into the replay's prompts folder
    /// when the recorded file still holds it; `Err(why)` when it does not.
    pub(super) fn recorded_prompt(
        &self,
        job: &RecordedJob,
    ) -> std::result::Result<(PathBuf, String), String> {
        let from = self
            .env
            .replay
            .map(|r| r.prompts_from.join(&job.prompt))
            .unwrap_or_default();
        let bytes = crate::engine::store::inputs::recorded_prompt(&from, job)?;
        let path = self.env.layout.prompts(self.round).join(
            Path::new(&job.prompt)
                .file_name()
                .map_or_else(|| format!("{}.md", job.agent).into(), |n| n.to_owned()),
        );
        std::fs::write(&path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok((path, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A round whose inputs cannot be recorded still runs: the record serves a later replay,
    /// not this round.
    pub(super) fn save_inputs(&self) {
        if let Err(e) = self.inputs.save(self.env.layout) {
            log::warn!("round {}: cannot record its inputs: {e}", self.round);
        }
    }
}

/// A replay's verdict on an agent: the recorded one, unless `--agent` leaves the agent out.
pub(super) fn replayed_decision(
    rec: &RoundInputs,
    only: &[String],
    agent: &str,
) -> (Choice, String) {
    let Some(d) = rec.decisions.iter().find(|d| d.agent == agent) else {
        return (Choice::Skipped, "not in the recorded round".into());
    };
    match d.decision {
        Choice::Included if !only.is_empty() && !only.iter().any(|n| n == agent) => {
            (Choice::Skipped, "not replayed (--agent)".into())
        }
        Choice::Included => (Choice::Included, d.reason.clone()),
        Choice::Blocked => (Choice::Blocked, d.reason.clone()),
        Choice::Skipped | Choice::OverBudget => (Choice::Skipped, d.reason.clone()),
    }
}
