//! One round, top to bottom as SPEC section 1 tells it: plan; Phase A (code agents in the
//! pool) beside the pre-sim; the tests beside the post-sim when Phase A changed the tree; commit,
//! or revert on a regression (the rejected tree kept in a ref, the post-sim discarded); Phase B
//! (review agents); the round log.
//!
//! Concurrency: `std::thread::scope` runs each sim on its own thread beside the pool (Phase A)
//! or beside the test process; the pool's results are handled here, on the calling thread, in
//! completion order, so the tracking state, the task queue and git need no locks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result};
use crate::events::{Event, Events};
use crate::git::{Git, Merge};
use crate::mission::{Agent, Isolation, Mission, StdinMode, When, WhenKeyword};
use crate::pool::{self, Done};
use crate::process::{self, Ending, Spec};
use crate::prompt::{self, Sections};
use crate::results::{self, RawRun};
use crate::roundlog::{
    Decision, Phase, RoundLog, RoundStatus, RunStatus, Sims, StepStatus, Timing, SCHEMA,
};
use crate::sims::{self, SimRun, Which};
use crate::state::{write_json, Journal, Layout, State, TestBaseline};
use crate::tasks::{Queue, Task, TaskStatus};
use crate::tests_run::{self, TestRun};
use crate::units;

/// What every round of a run shares.
pub struct Env<'a> {
    pub mission: &'a Mission,
    /// The mission file's folder: prompt templates are relative to it.
    pub mission_dir: &'a Path,
    pub git: &'a Git,
    pub layout: &'a Layout,
    pub events: &'a Events,
    pub max_concurrency: usize,
    pub budget: Option<f64>,
    /// `--agent NAME`: only these agents (forced in, whatever their `when`).
    pub only: &'a [String],
}

/// What a round hands back to the run loop.
pub struct Outcome {
    pub log: RoundLog,
    pub budget_reached: bool,
    pub interrupted: bool,
    /// Something was committed this round.
    pub committed: bool,
}

/// The plan for one agent this round.
struct Planned<'a> {
    agent: &'a Agent,
    index: usize,
}

/// One agent run queued in the pool.
struct Job<'a> {
    agent: &'a Agent,
    index: usize,
    model: String,
    task: Option<Task>,
    timeout: Duration,
    prompt_file: PathBuf,
    priority: u8,
    expected_ms: u64,
    /// The agent's own worktree (worktree isolation), made from `base` before it starts.
    worktree: Option<PathBuf>,
    base: String,
}

impl Env<'_> {
    fn root(&self) -> &Path {
        self.git.root()
    }

    fn worktree_for(&self, agent: &Agent) -> Option<PathBuf> {
        (agent.phase == Phase::Code && self.mission.git.isolation == Isolation::Worktree)
            .then(|| self.layout.dir.join("worktrees").join(&agent.name))
    }

    fn sim_data(&self) -> Option<PathBuf> {
        self.mission
            .sims
            .as_ref()
            .map(|s| self.root().join(&s.publish_to))
    }
}

/// Runs round `round`. The tree must be clean (the caller checks, unless `--allow-dirty`).
pub fn run(env: &Env, state: &mut State, queue: &mut Queue, round: u32) -> Result<Outcome> {
    let t0 = Instant::now();
    let started_at = units::now_rfc3339();
    let base = env.git.base()?;
    let journal = Arc::new(Mutex::new(Journal {
        round,
        base: base.clone(),
        pid: std::process::id(),
        started_at: started_at.clone(),
        process_groups: Vec::new(),
    }));
    journal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .save(env.layout)?;
    {
        let (journal, layout) = (journal.clone(), env.layout.clone());
        process::set_observer(Some(Box::new(move |groups: &[i32]| {
            let mut j = journal.lock().unwrap_or_else(|e| e.into_inner());
            j.process_groups = groups.to_vec();
            if let Err(e) = j.save(&layout) {
                log::warn!("cannot update the journal: {e}");
            }
        })));
    }
    let mut r = Round {
        env,
        state,
        queue,
        round,
        t0,
        journal: journal.clone(),
        log: RoundLog {
            schema: SCHEMA,
            round,
            mission: env.mission.name.clone(),
            status: RoundStatus::Ok,
            started_at,
            finished_at: String::new(),
            base: base.clone(),
            commit: None,
            agents: Vec::new(),
            sims: Sims::default(),
            tests: None,
            reverted: false,
            kept_ref: None,
            timing: Timing::default(),
            cost_usd: 0.0,
            total_cost_usd: 0.0,
            stop_reason: None,
            decisions: Vec::new(),
            notes: Vec::new(),
        },
        budget_reached: false,
        committed: false,
    };
    let result = r.pipeline(&base);
    process::set_observer(None);
    let outcome = match result {
        Ok(()) => r.finish(),
        Err(e) => {
            // The round could not run its steps: leave the base as it was, keep what was
            // written, record the failure, then report it.
            r.log.status = RoundStatus::Failed;
            r.log.stop_reason = Some(e.to_string());
            let abandoned = r.abandon("failed");
            let _ = r.finish();
            // The base is back: the journal has done its job. If it is not, the next orch
            // recovers from the journal.
            if abandoned.is_ok() {
                let _ = Journal::clear(env.layout);
            }
            return Err(e);
        }
    };
    Journal::clear(env.layout)?;
    outcome
}

struct Round<'e, 's> {
    env: &'e Env<'e>,
    state: &'s mut State,
    queue: &'s mut Queue,
    round: u32,
    t0: Instant,
    journal: Arc<Mutex<Journal>>,
    log: RoundLog,
    budget_reached: bool,
    committed: bool,
}

impl<'e> Round<'e, '_> {
    fn pipeline(&mut self, base: &str) -> Result<()> {
        let env = self.env;
        let layout = env.layout;

        // 1. Plan.
        let active = self.plan();
        let names = |p: Phase| -> Vec<String> {
            active
                .iter()
                .filter(|a| a.agent.phase == p)
                .map(|a| a.agent.name.clone())
                .collect()
        };
        env.events.emit(Event::RoundStart {
            round: self.round,
            base: base.to_string(),
            active: active.iter().map(|a| a.agent.name.clone()).collect(),
            idle: self
                .log
                .decisions
                .iter()
                .filter(|d| d.decision != "included")
                .map(|d| d.agent.clone())
                .collect(),
        });
        if active.is_empty() {
            self.log.status = RoundStatus::Skipped;
            return Ok(());
        }
        for dir in [
            layout.logs(self.round),
            layout.prompts(self.round),
            layout.scratch(self.round),
        ] {
            std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let code: Vec<&Planned> = active
            .iter()
            .filter(|a| a.agent.phase == Phase::Code)
            .collect();
        let review: Vec<&Planned> = active
            .iter()
            .filter(|a| a.agent.phase == Phase::Review)
            .collect();

        // 2. Phase A ‖ pre-sim.
        let a_start = Instant::now();
        let jobs = self.jobs(&code, base)?;
        let pre_sim = env.mission.sims.as_ref().and_then(|s| s.pre.as_ref());
        let pre = std::thread::scope(|s| {
            let handle = pre_sim.map(|sim| {
                let run = self.sim_run(Which::Pre, sim);
                std::thread::Builder::new()
                    .name("orch-pre-sim".into())
                    .spawn_scoped(s, move || run.run(env.events))
                    .expect("spawning the pre-sim thread")
            });
            self.run_pool(jobs);
            handle.map(|h| h.join().expect("the pre-sim thread panicked"))
        });
        self.log.timing.phase_a = a_start.elapsed().as_millis() as u64;
        self.log.timing.pre_sim = pre.as_ref().map_or(0, |p| p.elapsed_ms);
        self.log.sims.pre = pre;
        self.take_inboxes(&names(Phase::Code));
        if process::interrupted() {
            return self.interrupted();
        }

        // 3. Tests ‖ post-sim, only when Phase A changed the tree.
        let changed = env.git.changed_since(base)?;
        let mut reverted = false;
        if !changed.is_empty() {
            let t_start = Instant::now();
            let post_sim = env.mission.sims.as_ref().and_then(|s| s.post.as_ref());
            let (tests, post) = std::thread::scope(|s| {
                let handle = post_sim.map(|sim| {
                    let run = self.sim_run(Which::Post, sim);
                    std::thread::Builder::new()
                        .name("orch-post-sim".into())
                        .spawn_scoped(s, move || run.run(env.events))
                        .expect("spawning the post-sim thread")
                });
                let tests = env.mission.tests.as_ref().map(|t| {
                    let log = layout.logs(self.round).join("tests.log");
                    let mut entry = TestRun {
                        tests: t,
                        root: env.root(),
                        log: &log,
                        round: self.round,
                        grace: env.mission.grace(),
                        round_start: self.t0,
                    }
                    .run(env.events);
                    entry.log = layout.relative(&log);
                    entry
                });
                (
                    tests,
                    handle.map(|h| h.join().expect("the post-sim thread panicked")),
                )
            });
            self.log.timing.tests = t_start.elapsed().as_millis() as u64;
            self.log.timing.post_sim = post.as_ref().map_or(0, |p| p.elapsed_ms);
            self.log.sims.post = post;
            if process::interrupted() {
                self.log.tests = tests;
                return self.interrupted();
            }
            if let Some(mut tests) = tests {
                tests.regression =
                    tests_run::is_regression(&tests, self.state.test_baseline.as_ref());
                self.env.events.emit(Event::TestsEnd {
                    round: self.round,
                    status: tests.status.as_str().into(),
                    elapsed_ms: tests.elapsed_ms,
                    passed: tests.passed,
                    failed: tests.failed,
                    regression: tests.regression,
                    flaky: tests.flaky,
                });
                if tests.status != StepStatus::Passed {
                    self.state.last_test_failure = tests.tail.clone();
                }
                if tests.regression {
                    self.revert(base, &tests.tail)?;
                    reverted = true;
                } else {
                    self.state.test_baseline = Some(TestBaseline {
                        passed: tests.status == StepStatus::Passed,
                        failed_count: tests.failed,
                        commit: String::new(),
                    });
                    if tests.status == StepStatus::Passed {
                        self.state.last_test_failure.clear();
                    }
                }
                self.log.tests = Some(tests);
            }
        }
        self.settle_tasks(Phase::Code, reverted);
        self.publish(reverted)?;
        let what = if reverted {
            "sim data".to_string()
        } else {
            format!("code: {}", names(Phase::Code).join(", "))
        };
        self.commit(&what)?;

        // 4. Phase B.
        let after_revert_skip = reverted && !env.mission.phase_b_after_revert;
        if !review.is_empty() {
            if after_revert_skip {
                self.note("Phase B skipped: the round was reverted (phaseBAfterRevert is off)");
                self.decide_skipped(&review, "skipped: the round was reverted");
            } else if self.budget_reached {
                self.note("Phase B skipped: the budget is reached");
                self.decide_skipped(&review, "skipped: the budget is reached");
            } else {
                let b_base = self.env.git.base()?;
                self.set_journal_base(&b_base);
                let b_start = Instant::now();
                let jobs = self.jobs(&review, &b_base)?;
                self.run_pool(jobs);
                self.log.timing.phase_b = b_start.elapsed().as_millis() as u64;
                self.take_inboxes(&names(Phase::Review));
                if process::interrupted() {
                    return self.interrupted();
                }
                self.settle_tasks(Phase::Review, false);
                self.commit(&format!("review: {}", names(Phase::Review).join(", ")))?;
            }
        }
        if reverted {
            self.log.status = RoundStatus::Reverted;
            self.log.reverted = true;
        }
        Ok(())
    }

    /// Decides which agents take part and why the others do not.
    fn plan(&mut self) -> Vec<Planned<'e>> {
        let env: &'e Env<'e> = self.env;
        let mut active = Vec::new();
        for (index, agent) in env.mission.agents.iter().enumerate() {
            let (included, reason) = if !env.only.is_empty() {
                if env.only.contains(&agent.name) {
                    (true, "selected with --agent".to_string())
                } else {
                    (false, "not selected with --agent".to_string())
                }
            } else {
                self.gate(agent)
            };
            self.log.decisions.push(Decision {
                agent: agent.name.clone(),
                decision: if included { "included" } else { "skipped" }.into(),
                reason,
            });
            if included {
                active.push(Planned { agent, index });
            }
        }
        active
    }

    /// The agent's `when` rule for this round.
    fn gate(&self, agent: &Agent) -> (bool, String) {
        match &agent.when {
            When::Keyword(WhenKeyword::Always) => (true, "runs every round".into()),
            When::Keyword(WhenKeyword::Tasks) => match self.queue.next_for(&agent.name) {
                Some(t) => (true, format!("task {} is pending", t.id)),
                None => (false, "no pending task".into()),
            },
            When::Every { every } => {
                if self.round % every == 0 {
                    (true, format!("runs every {every} rounds"))
                } else {
                    let next = (self.round / every + 1) * every;
                    (
                        false,
                        format!("runs every {every} rounds; next in round {next}"),
                    )
                }
            }
            When::Command { command } => {
                let log = self
                    .env
                    .layout
                    .logs(self.round)
                    .join(format!("{}.when.log", agent.name));
                let argv = command
                    .argv()
                    .into_iter()
                    .map(|a| {
                        a.replace("{round}", &self.round.to_string())
                            .replace("{agent}", &agent.name)
                    })
                    .collect();
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
        }
    }

    /// Builds the pool's jobs: picks tasks, renders prompts, sets timeouts, and orders them:
    /// priority, then the longest expected run first, then mission order.
    fn jobs<'p>(&mut self, planned: &[&Planned<'p>], base: &str) -> Result<Vec<Job<'p>>> {
        let mut jobs = Vec::new();
        for p in planned {
            let agent = p.agent;
            let st = self.state.agent(&agent.name);
            let model = agent.model_at(st.model_index);
            let task = if agent.when == When::Keyword(WhenKeyword::Tasks)
                || self.queue.has_pending(&agent.name)
            {
                self.queue.next_for(&agent.name).cloned()
            } else {
                None
            };
            if let Some(t) = &task {
                if let Some(q) = self.queue.get_mut(&t.id) {
                    q.status = TaskStatus::Running;
                    q.attempts += 1;
                }
            }
            let timeout = timeout_for(agent, &st);
            let prompt_file = self.write_prompt(agent, &model, task.as_ref())?;
            jobs.push(Job {
                worktree: self.env.worktree_for(agent),
                base: base.to_string(),
                agent,
                index: p.index,
                model,
                priority: task.as_ref().map_or(agent.priority, |t| t.priority),
                task,
                timeout,
                prompt_file,
                expected_ms: st.mean_run_ms().unwrap_or(0),
            });
        }
        if !jobs.is_empty() {
            self.queue.save(self.env.layout)?;
        }
        jobs.sort_by_key(|j| (j.priority, std::cmp::Reverse(j.expected_ms), j.index));
        Ok(jobs)
    }

    fn write_prompt(&self, agent: &Agent, model: &str, task: Option<&Task>) -> Result<PathBuf> {
        let template = prompt::load_template(self.env.mission_dir, agent)?;
        let sections = Builtins {
            agent,
            round: self.round,
            model,
            task,
            state: self.state,
            sim_data: self.env.sim_data(),
        };
        let text = prompt::render(&template, &sections);
        let path = self
            .env
            .layout
            .prompts(self.round)
            .join(format!("{}.md", agent.name));
        std::fs::write(&path, text).ctx(|| format!("writing prompt {}", path.display()))?;
        Ok(path)
    }

    /// Runs jobs in the pool and settles each result as it arrives.
    fn run_pool(&mut self, jobs: Vec<Job<'_>>) {
        let env = self.env;
        let (round, t0) = (self.round, self.t0);
        pool::run(
            env.max_concurrency,
            jobs,
            || !process::interrupted(),
            |job| run_agent(env, round, t0, job),
            |done, control| {
                let raw = match done {
                    Done::Finished(raw) => raw,
                    Done::NotStarted(job) => not_started(env, round, job),
                };
                self.settle(raw);
                if self.budget_reached {
                    control.stop_starting();
                }
            },
        );
    }

    /// The bookkeeping for one finished run (completion order, main thread).
    fn settle(&mut self, raw: RawRun) {
        let env = self.env;
        let Some(agent) = env.mission.agent(&raw.agent) else {
            return;
        };
        let st = self.state.agent_mut(&agent.name);
        let mut settled = results::settle(&raw, agent, st, &env.mission.pricing, self.round);
        if let Some(wt) = &raw.worktree {
            if let Err(e) = self.integrate(wt, &raw.base, &mut settled.entry) {
                log::warn!(
                    "agent {}: its worktree could not be merged: {e}",
                    agent.name
                );
                settled.entry.error = Some(format!("merging its worktree failed: {e}"));
                settled.entry.status = RunStatus::Failed;
            }
        }
        let e = &settled.entry;
        self.log.cost_usd += e.cost_usd;
        self.state.total_cost_usd += e.cost_usd;
        env.events.emit(Event::AgentEnd {
            round: self.round,
            agent: e.name.clone(),
            phase: e.phase.as_str().into(),
            model: e.model.clone(),
            status: e.status.as_str().into(),
            exit_code: e.exit_code,
            elapsed_ms: e.elapsed_ms,
            cost_usd: e.cost_usd,
            cost_known: e.cost_known,
            changed_files: e.changed_files,
            error: e.error.clone(),
        });
        if let Some((from, to, why)) = &settled.model_change {
            log::info!("agent {}: model {from:?} -> {to:?}: {why}", agent.name);
            env.events.emit(Event::Escalation {
                round: self.round,
                agent: agent.name.clone(),
                from: from.clone(),
                to: to.clone(),
                reason: why.clone(),
            });
        }
        if let Some(b) = env.budget {
            if !self.budget_reached && self.state.total_cost_usd >= b {
                self.budget_reached = true;
                let why = format!(
                    "budget reached: {} spent of {}",
                    units::usd(self.state.total_cost_usd),
                    units::usd(b)
                );
                log::warn!("{why}; no new agent starts");
                self.log.stop_reason = Some(why);
            }
        }
        self.log.agents.push(settled.entry);
    }

    /// Worktree isolation: commits an agent's change in its worktree and merges it into the main
    /// tree at once, in completion order. A change that conflicts with one merged earlier is kept
    /// under `refs/orch/conflicts/round-N/AGENT` and the run becomes `conflict`; the partial work
    /// of a failed, timed-out or cancelled run is kept under `refs/orch/<status>/round-N/AGENT`
    /// and not merged. The worktree is then reset, so nothing lingers there.
    fn integrate(
        &mut self,
        wt: &Path,
        base: &str,
        entry: &mut crate::roundlog::AgentEntry,
    ) -> Result<()> {
        let git = self.env.git.at(wt);
        if entry.changed_files > 0 {
            let msg = format!(
                "orch: round {} {} ({})",
                self.round,
                entry.name,
                entry.status.as_str()
            );
            if let Some(commit) = git.commit_all(&msg)? {
                let keep =
                    |kind: &str| format!("refs/orch/{kind}/round-{}/{}", self.round, entry.name);
                match entry.status {
                    RunStatus::Ok => match self.env.git.merge(&commit, &msg)? {
                        Merge::Merged => {}
                        Merge::Conflict(files) => {
                            let r = keep("conflicts");
                            self.env.git.set_ref(&r, &commit)?;
                            entry.status = RunStatus::Conflict;
                            entry.error = Some(format!(
                                "conflicts with work merged earlier this round in {}; kept in {r}",
                                files.join(", ")
                            ));
                        }
                    },
                    other => {
                        let r = keep(other.as_str());
                        self.env.git.set_ref(&r, &commit)?;
                        let note = format!("its partial work is kept in {r}");
                        entry.error = Some(match entry.error.take() {
                            Some(e) => format!("{e}; {note}"),
                            None => note,
                        });
                    }
                }
            }
        }
        git.restore(base)
    }

    /// Tasks of the phase's agents: done when the run was ok (and kept), back to pending
    /// otherwise.
    fn settle_tasks(&mut self, phase: Phase, reverted: bool) {
        let failure = self.state.last_test_failure.clone();
        for e in self.log.agents.iter().filter(|e| e.phase == phase) {
            let Some(id) = &e.task else { continue };
            match (e.status, reverted) {
                (RunStatus::Ok, false) => {
                    let _ = self.queue.set_status(id, TaskStatus::Done);
                }
                (_, true) if matches!(e.status, RunStatus::Ok | RunStatus::Empty) => {
                    self.queue.requeue(
                        id,
                        Some(1),
                        Some(&format!(
                            "Round {}: this work was reverted because the tests regressed:\n{failure}",
                            self.round
                        )),
                    );
                }
                (RunStatus::Conflict, _) => self.queue.requeue(
                    id,
                    None,
                    Some(&format!(
                        "Round {}: not merged: {}",
                        self.round,
                        e.error.as_deref().unwrap_or("a merge conflict")
                    )),
                ),
                _ => self.queue.requeue(id, None, None),
            }
        }
        if let Err(e) = self.queue.save(self.env.layout) {
            log::warn!("cannot save the task queue: {e}");
        }
    }

    /// Takes in the tasks the phase's agents filed.
    fn take_inboxes(&mut self, agents: &[String]) {
        let known: Vec<&str> = self
            .env
            .mission
            .agents
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        let mut any = false;
        for name in agents {
            let inbox = inbox_path(self.env.layout, self.round, name);
            if !inbox.exists() {
                continue;
            }
            any = true;
            for w in self.queue.take_inbox(&inbox, name, &known, self.round) {
                log::warn!("{w}");
                self.env.events.emit(Event::Warning {
                    round: Some(self.round),
                    message: w,
                });
            }
        }
        if any {
            if let Err(e) = self.queue.save(self.env.layout) {
                log::warn!("cannot save the task queue: {e}");
            }
        }
    }

    /// Keeps the rejected tree in a ref and restores the base exactly.
    fn revert(&mut self, base: &str, failure: &str) -> Result<()> {
        let kept = format!("refs/orch/rejected/round-{}", self.round);
        self.env.git.save_tree(
            base,
            &kept,
            &format!(
                "orch: round {} rejected (tests regressed)\n\n{}",
                self.round,
                prompt::trim(failure, 2000)
            ),
        )?;
        self.env.git.restore(base)?;
        self.env.events.emit(Event::Revert {
            round: self.round,
            kept_ref: kept.clone(),
            reason: "the tests regressed".into(),
        });
        self.log.kept_ref = Some(kept);
        Ok(())
    }

    /// Publishes the sims that may be published: a successful pre-sim always, a successful
    /// post-sim only when the round was not reverted.
    fn publish(&mut self, reverted: bool) -> Result<()> {
        let Some(dest) = self.env.sim_data() else {
            return Ok(());
        };
        let scratch = self.env.layout.scratch(self.round);
        for (which, entry) in [
            (Which::Pre, &mut self.log.sims.pre),
            (Which::Post, &mut self.log.sims.post),
        ] {
            let Some(entry) = entry else { continue };
            if entry.status != StepStatus::Ok {
                entry
                    .note
                    .get_or_insert_with(|| "not published: the sim did not succeed".into());
                continue;
            }
            if which == Which::Post && reverted {
                entry.note =
                    Some("discarded: the tests regressed and the round was reverted".into());
                continue;
            }
            sims::publish(&scratch.join(which.as_str()), &dest)?;
            entry.published = true;
        }
        Ok(())
    }

    fn commit(&mut self, what: &str) -> Result<()> {
        if !self.env.mission.git.commit {
            return Ok(());
        }
        let msg = format!(
            "orch: round {} {what}\n\nmission: {}",
            self.round, self.env.mission.name
        );
        // Worktree merges moved HEAD along the round; the round lands as one commit on the base.
        let base = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .base
            .clone();
        if self.env.git.head()?.as_deref() != Some(base.as_str()) {
            self.env.git.run(&["reset", "-q", "--soft", &base])?;
        }
        if let Some(c) = self.env.git.commit_all(&msg)? {
            self.env.events.emit(Event::Commit {
                round: self.round,
                commit: c.clone(),
                what: what.into(),
            });
            self.set_journal_base(&c);
            self.log.commit = Some(c);
            self.committed = true;
        }
        Ok(())
    }

    /// After a commit the base to return to on a crash is the new HEAD: tested, committed work
    /// is not undone by an interrupt in a later stage.
    fn set_journal_base(&self, commit: &str) {
        let mut j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        j.base = commit.to_string();
        if let Err(e) = j.save(self.env.layout) {
            log::warn!("cannot update the journal: {e}");
        }
    }

    /// Interrupted: keep what the agents wrote in a ref, restore the stage's base.
    fn interrupted(&mut self) -> Result<()> {
        self.log.status = RoundStatus::Interrupted;
        self.log.stop_reason = Some("interrupted by a signal".into());
        self.abandon("interrupted")
    }

    /// Saves uncommitted work under `refs/orch/<kind>/round-N` and restores the last base.
    fn abandon(&mut self, kind: &str) -> Result<()> {
        let base = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .base
            .clone();
        let moved = self.env.git.head()?.as_deref() != Some(base.as_str());
        if !moved && self.env.git.changed_since(&base)?.is_empty() {
            return Ok(());
        }
        let kept = format!("refs/orch/{kind}/round-{}", self.round);
        self.env.git.save_tree(
            &base,
            &kept,
            &format!("orch: round {} {kind}; the tree as it was", self.round),
        )?;
        self.env.git.restore(&base)?;
        self.log.kept_ref = Some(kept);
        Ok(())
    }

    fn note(&mut self, text: &str) {
        log::info!("round {}: {text}", self.round);
        self.log.notes.push(text.to_string());
    }

    fn decide_skipped(&mut self, planned: &[&Planned], reason: &str) {
        for p in planned {
            if let Some(d) = self
                .log
                .decisions
                .iter_mut()
                .find(|d| d.agent == p.agent.name)
            {
                d.decision = "skipped".into();
                d.reason = reason.into();
            }
            if let Some(t) = self
                .log
                .agents
                .iter()
                .find(|e| e.name == p.agent.name)
                .and_then(|e| e.task.clone())
            {
                self.queue.requeue(&t, None, None);
            }
        }
    }

    fn sim_run(&self, which: Which, sim: &'e crate::mission::Sim) -> SimRun<'e> {
        let env: &'e Env<'e> = self.env;
        let layout = env.layout;
        SimRun {
            which,
            sim,
            root: env.git.root(),
            staging: layout.scratch(self.round).join(which.as_str()),
            log: layout
                .logs(self.round)
                .join(format!("{}-sim.log", which.as_str())),
            round: self.round,
            grace: self.env.mission.grace(),
            round_start: self.t0,
        }
    }

    /// Timing, the round log, the state. Always runs, whatever happened before.
    fn finish(&mut self) -> Result<Outcome> {
        let env = self.env;
        if let Some(pre) = &mut self.log.sims.pre {
            pre.log = env
                .layout
                .relative(&env.layout.logs(self.round).join("pre-sim.log"));
        }
        if let Some(post) = &mut self.log.sims.post {
            post.log = env
                .layout
                .relative(&env.layout.logs(self.round).join("post-sim.log"));
        }
        self.log.timing.total = self.t0.elapsed().as_millis() as u64;
        self.log.timing = std::mem::take(&mut self.log.timing).with_overhead();
        self.log.finished_at = units::now_rfc3339();
        self.log.total_cost_usd = self.state.total_cost_usd;
        // The stall guard counts rounds that committed nothing, skipped ones included.
        if self.committed {
            self.state.empty_rounds_in_a_row = 0;
        } else {
            self.state.empty_rounds_in_a_row += 1;
        }
        self.state.last_round = self.state.last_round.max(self.round);
        self.state.mission = env.mission.name.clone();
        keep_earlier_log(env.layout, self.round)?;
        write_json(&env.layout.round_log(self.round), &self.log)?;
        self.state.save(env.layout)?;
        env.events.emit(Event::RoundEnd {
            round: self.round,
            status: self.log.status.as_str().into(),
            elapsed_ms: self.log.timing.total,
            cost_usd: self.log.cost_usd,
            total_cost_usd: self.log.total_cost_usd,
            commit: self.log.commit.clone(),
        });
        Ok(Outcome {
            log: self.log.clone(),
            budget_reached: self.budget_reached,
            interrupted: self.log.status == RoundStatus::Interrupted,
            committed: self.committed,
        })
    }
}

/// `orch round N` on a round that has a log already: the earlier log is kept, renamed.
fn keep_earlier_log(layout: &Layout, round: u32) -> Result<()> {
    let path = layout.round_log(round);
    if !path.exists() {
        return Ok(());
    }
    for k in 1.. {
        let aside = layout
            .rounds()
            .join(format!("round-{round:04}.prev-{k}.json"));
        if !aside.exists() {
            return std::fs::rename(&path, &aside).ctx(|| {
                format!(
                    "keeping the earlier log of round {round} as {}",
                    aside.display()
                )
            });
        }
    }
    Ok(())
}

/// The timeout of an agent's next run: adaptive once it has enough history.
pub fn timeout_for(agent: &Agent, st: &crate::state::AgentState) -> Duration {
    if let Some(a) = &agent.adaptive_timeout {
        if st.recent_run_ms.len() >= a.min_samples {
            if let Some(mean) = st.mean_run_ms() {
                let secs = (a.factor * mean as f64 / 1000.0).clamp(a.min_s, a.max_s);
                return Duration::from_secs_f64(secs);
            }
        }
    }
    Duration::from_secs_f64(agent.timeout_s)
}

fn inbox_path(layout: &Layout, round: u32, agent: &str) -> PathBuf {
    layout.scratch(round).join(format!("{agent}.tasks.jsonl"))
}

/// Runs one agent on a worker thread.
fn run_agent(env: &Env, round: u32, t0: Instant, job: Job<'_>) -> RawRun {
    let agent = job.agent;
    let layout = env.layout;
    // Worktree isolation: the agent's own checkout of the base, made here on the worker so that
    // preparing several worktrees overlaps.
    let isolated = match &job.worktree {
        Some(wt) => match env.git.prepare_worktree(wt, &job.base) {
            Ok(g) => Some(g),
            Err(e) => {
                let mut raw = not_started(env, round, job);
                raw.finished.ending =
                    Ending::SpawnFailed(format!("preparing its worktree failed: {e}"));
                return raw;
            }
        },
        None => None,
    };
    let root = isolated.as_ref().map_or(env.root(), |g| g.root());
    let scratch = layout.scratch(round);
    let stdout = layout.logs(round).join(format!("{}.log", agent.name));
    let stderr = layout
        .logs(round)
        .join(format!("{}.stderr.log", agent.name));
    let result_file = scratch.join(format!("{}.result.json", agent.name));
    let inbox = inbox_path(layout, round, &agent.name);
    let task_file = job.task.as_ref().map(|t| {
        let p = scratch.join(format!("{}.task.json", agent.name));
        if let Err(e) = write_json(&p, t) {
            log::warn!("agent {}: cannot write its task file: {e}", agent.name);
        }
        p
    });
    let disp = |p: &Path| p.display().to_string();
    let fill = |a: &str| {
        a.replace("{model}", &job.model)
            .replace("{prompt_file}", &disp(&job.prompt_file))
            .replace("{round}", &round.to_string())
            .replace("{agent}", &agent.name)
            .replace(
                "{task_file}",
                &task_file.as_deref().map(disp).unwrap_or_default(),
            )
            .replace("{workdir}", &disp(root))
    };
    let launcher = agent.launcher.as_ref().or(env.mission.launcher.as_ref());
    let argv: Vec<String> = launcher
        .into_iter()
        .flatten()
        .cloned()
        .chain(agent.command.argv())
        .map(|a| fill(&a))
        .collect();
    let mut vars: Vec<(String, String)> = vec![
        ("ORCH_ROUND".into(), round.to_string()),
        ("ORCH_AGENT".into(), agent.name.clone()),
        ("ORCH_MODEL".into(), job.model.clone()),
        ("ORCH_PROMPT_FILE".into(), disp(&job.prompt_file)),
        ("ORCH_WORKDIR".into(), disp(root)),
        ("ORCH_TASKS_INBOX".into(), disp(&inbox)),
        ("ORCH_RESULT_FILE".into(), disp(&result_file)),
        ("ORCH_STATE_DIR".into(), disp(&layout.dir)),
    ];
    if let Some(d) = env.sim_data() {
        vars.push(("ORCH_SIM_DATA".into(), disp(&d)));
    }
    if let (Some(t), Some(f)) = (&job.task, &task_file) {
        vars.push(("ORCH_TASK_ID".into(), t.id.clone()));
        vars.push(("ORCH_TASK_FILE".into(), disp(f)));
    }
    vars.extend(agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let _ = std::fs::remove_file(&result_file);
    env.events.emit(Event::AgentStart {
        round,
        agent: agent.name.clone(),
        phase: agent.phase.as_str().into(),
        model: job.model.clone(),
        task: job.task.as_ref().map(|t| t.id.clone()),
        timeout_ms: job.timeout.as_millis() as u64,
    });
    let before = if isolated.is_none() {
        fingerprint(env.git)
    } else {
        Fingerprint::new()
    };
    let start_ms = t0.elapsed().as_millis() as u64;
    let finished = process::run(&Spec {
        label: format!("agent {}", agent.name),
        argv,
        cwd: root.to_path_buf(),
        env: vars,
        stdin: (agent.stdin == StdinMode::Prompt).then(|| job.prompt_file.clone()),
        stdout: stdout.clone(),
        stderr,
        timeout: job.timeout,
        grace: env.mission.grace(),
    });
    let changed = match &isolated {
        Some(g) => g
            .status()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path)
            .collect(),
        None => changed_between(&before, &fingerprint(env.git)),
    };
    RawRun {
        agent: agent.name.clone(),
        phase: agent.phase,
        model: job.model,
        task: job.task.map(|t| t.id),
        timeout_ms: job.timeout.as_millis() as u64,
        start_ms,
        finished,
        changed,
        worktree: job.worktree,
        base: job.base,
        log_rel: layout.relative(&stdout),
        stdout,
        result_file,
        filed_tasks: std::fs::metadata(&inbox).is_ok_and(|m| m.len() > 0),
    }
}

/// A job the pool never started (budget or interrupt): a `cancelled` run of no time.
fn not_started(env: &Env, round: u32, job: Job<'_>) -> RawRun {
    let layout = env.layout;
    RawRun {
        agent: job.agent.name.clone(),
        phase: job.agent.phase,
        model: job.model,
        task: job.task.map(|t| t.id),
        timeout_ms: job.timeout.as_millis() as u64,
        start_ms: 0,
        finished: process::Finished {
            ending: Ending::Cancelled,
            started: Instant::now(),
            elapsed: Duration::ZERO,
        },
        changed: Vec::new(),
        worktree: None,
        base: job.base,
        stdout: PathBuf::new(),
        log_rel: String::new(),
        result_file: layout.scratch(round).join("none"),
        filed_tasks: false,
    }
}

type Fingerprint = BTreeMap<String, Option<(i128, u64)>>;

/// The changed files of the tree and their mtime and size, to tell which files one agent run
/// changed in a shared tree. With several agents at once in one tree the attribution is
/// approximate (a file written by two is counted for both); worktree isolation makes it exact.
fn fingerprint(git: &Git) -> Fingerprint {
    let mut fp = Fingerprint::new();
    for e in git.status().unwrap_or_default() {
        let meta = std::fs::symlink_metadata(git.root().join(&e.path)).ok();
        let sig = meta.map(|m| {
            use std::os::unix::fs::MetadataExt;
            (
                m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                m.len(),
            )
        });
        fp.insert(e.path, sig);
    }
    fp
}

fn changed_between(before: &Fingerprint, after: &Fingerprint) -> Vec<String> {
    let mut out: Vec<String> = after
        .iter()
        .filter(|(p, sig)| before.get(*p) != Some(sig))
        .map(|(p, _)| p.clone())
        .collect();
    out.extend(before.keys().filter(|p| !after.contains_key(*p)).cloned());
    out
}

fn describe_ending(e: &Ending) -> String {
    match e {
        Ending::Exited(c) => format!("exit status {c}"),
        Ending::Signalled(s) => format!("killed by signal {s}"),
        Ending::TimedOut => "timed out".into(),
        Ending::Cancelled => "cancelled".into(),
        Ending::SpawnFailed(m) => m.clone(),
    }
}

/// The built-in prompt sections, computed only when a template names them.
struct Builtins<'a> {
    agent: &'a Agent,
    round: u32,
    model: &'a str,
    task: Option<&'a Task>,
    state: &'a State,
    sim_data: Option<PathBuf>,
}

impl Sections for Builtins<'_> {
    fn section(&self, name: &str) -> String {
        let max = prompt::DEFAULT_SECTION_BYTES;
        match name {
            "agent" => self.agent.name.clone(),
            "round" => self.round.to_string(),
            "model" => self.model.to_string(),
            "task" => self
                .task
                .map(|t| {
                    format!(
                        "Your task ({}, priority {}): {}\n\n{}",
                        t.id, t.priority, t.title, t.body
                    )
                })
                .unwrap_or_default(),
            "testFailures" => {
                let f = &self.state.last_test_failure;
                if f.is_empty() {
                    String::new()
                } else {
                    prompt::trim(&format!("The last test run failed:\n{f}"), max)
                }
            }
            "sims" => self
                .sim_data
                .as_deref()
                .map(|d| prompt::trim(&read_folder(d), max))
                .unwrap_or_default(),
            "history" => {
                let st = self.state.agent(&self.agent.name);
                format!(
                    "runs: {}, last: {}, failures in a row: {}, empty in a row: {}",
                    st.runs,
                    st.last_status.map_or("none", |s| s.as_str()),
                    st.consecutive_failures,
                    st.consecutive_empty_rounds
                )
            }
            _ => String::new(),
        }
    }
}

/// The text files of the published sim folder, each under its name.
fn read_folder(dir: &Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            out.push_str(&format!(
                "== {} ==\n{text}\n",
                e.file_name().to_string_lossy()
            ));
        }
    }
    out
}
