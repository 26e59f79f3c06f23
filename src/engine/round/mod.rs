//! One round, top to bottom: `pipeline` runs the stages in order, each taking what the one
//! before produced: the plan; Phase A (code agents in the pool) beside the pre-sim; the
//! verification (the tests beside the post-sim, and Phase B beside them by default) ending in a
//! `Verdict`; the code landed as the verdict says (committed, culprits taken out, or the round
//! reverted, the rejected tree kept in a ref); Phase B; the round log.
//!
//! Concurrency: `std::thread::scope` runs each sim on its own thread beside the pool (Phase A)
//! or beside the test process; the pool's results are handled here, on the calling thread, in
//! completion order, so the tracking state, the task queue and git need no locks.
//!
//! Provider limits: a run that hit a rate, usage or overload limit is not the agent's failure.
//! Its provider is held off (`engine::exec::limits`: no agent of it starts, the others go on), and
//! the limited agent, with any of that provider's agents refused a start meanwhile, goes back
//! into the pool to start when the hold ends, beside the agents still running (`heldMs` in its
//! entry). Only when nothing else is left to run does orch wait around the pool (`run_phase`)
//! for the hold to end: that wait is `timing.waited`. A wait beyond `limits.maxWaitS`
//! (or any wait under `--no-wait`) ends the run after this round (exit 75); an invalid key or a
//! rejected request stops it too (exit 6): no new agent starts, running ones finish.
//!
//! The stages live beside this file, one concern a file: `plan` (who runs and how: gates, jobs,
//! pool order, prompts, the inputs kept for a replay), `dispatch` (a phase's pool and each
//! result settled as it arrives: the ledger of spend, budget, stops and holds, the run merged or
//! kept aside), `agent` (the executor: one agent run on a worker and what it changed),
//! `verify` (the tests and the verdict), `revert` (a regression: find the culprits or revert
//! the round), `culprits` (the culprit search's decisions, without git), `beside` (Phase B
//! beside the tests and what becomes of its work), `land` (commits, sims published, tasks and
//! sessions settled, a round abandoned into refs) and `results` (what one run's output says).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::agents::{self, Failure};
use crate::engine::exec::limits::{self, Hold, Limits};
use crate::engine::exec::pool::{self, Done};
use crate::engine::exec::process::{self, Ending, Spec};
use crate::engine::git::{Git, Merge};
use crate::engine::prompt;
use crate::engine::sims::{self, SimRun, Which};
use crate::engine::store::inputs::{prompt_hash, RecordedJob, RoundInputs, INPUTS_VERSION};
use crate::engine::store::sessions;
use crate::engine::store::state::{
    write_json, AgentState, Journal, Layout, LimitWait, State, TestBaseline,
};
use crate::engine::store::tasks::{Queue, Task, TaskStatus};
use crate::engine::testing::{self, run::Stage};
use crate::error::{IoContext, Result};
use crate::events::{Event, Events};
use crate::mission::{Agent, FailedChanges, Isolation, Mission, PhaseB, When, WhenKeyword};
use crate::roundlog::{
    AgentEntry, Aside, Choice, Decision, Handoff, LimitedRun, Phase, RoundLog, RoundStatus,
    RunStatus, SimEntry, Sims, StepStatus, Strategy, TestsEntry, Timing, SCHEMA,
};
use crate::units;
use results::{RawRun, Settled};

mod agent;
mod beside;
mod culprits;
mod dispatch;
mod land;
mod plan;
pub mod results;
mod revert;
mod verify;

use agent::{describe_ending, not_started, run_agent, SharedTree};
pub use plan::{
    adaptive_timeout, budget_left, gate, hand_over_budget_tasks, job_plan, over_budget, queue_key,
    render_prompt, timeout_for, waiting_on_budget, Gate, JobPlan, QueueKey,
};
use revert::Early;

/// The live run's ref namespace.
pub const LIVE_REFS: &str = "refs/orch/";

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
    /// The namespace of the refs the round keeps work under: `refs/orch/` for the live run, a
    /// replay's own (`refs/orch/replay/round-N-K/`) for a replay. With `git` (the tree the
    /// round works in: the repository, or a replay's scratch worktree at the recorded base)
    /// and `layout` (the state folder, or the replay's folder) it is where the round runs.
    pub refs: &'a str,
    /// A replay: the plan and the prompts come from what the round recorded.
    pub replay: Option<&'a Replaying>,
    /// The providers held off by a limit, and start spacing.
    pub limits: &'a Limits,
}

/// What a replay of a round gives the pipeline in place of planning from today's mission.
#[derive(Debug, Clone, Default)]
pub struct Replaying {
    /// The recorded inputs to plan from; `None` re-plans (`--fresh`) with the mission's rules.
    pub recorded: Option<RoundInputs>,
    /// The live state folder: the recorded prompt files are relative to it.
    pub prompts_from: PathBuf,
    /// `--agent NAME`: replay only these of the recorded agents.
    pub agents: Vec<String>,
}

/// What a round hands back to the run loop.
pub struct Outcome {
    pub log: RoundLog,
    pub budget_reached: bool,
    pub interrupted: bool,
    /// Something was committed this round.
    pub committed: bool,
    /// `sims.stopWhen` passed: the run has converged.
    pub converged: bool,
    /// The circuit breaker tripped: too many rounds in a row with failing tests.
    pub breaker: bool,
    /// An agent CLI failed for good (auth, bad request): why, naming the agent and the fix.
    pub cli_stop: Option<String>,
    /// A provider's limit would outlast `limits.maxWaitS` (or `--no-wait`): why.
    pub limit_stop: Option<String>,
}

/// The plan for one agent this round.
struct Planned<'a> {
    agent: &'a Agent,
    index: usize,
}

/// One agent run queued in the pool.
#[derive(Clone)]
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
    /// The arguments that cap this run at what is left of the agent's `budgetUsd`
    /// (`agents::cap_args`), appended to its command.
    cap_args: Vec<String>,
    /// The CLI session it starts or resumes (`session: true`).
    session: Option<sessions::Plan>,
    /// The agent's how-manieth job this round (0: its first; a review agent run again after a
    /// revert has a second): its prompt and log files are its own.
    nth: usize,
}

impl Env<'_> {
    /// `refs/orch/<kind>/round-N[/AGENT]`, under the round's ref namespace.
    pub fn kept_ref(&self, kind: &str, round: u32, agent: Option<&str>) -> String {
        match agent {
            Some(a) => format!("{}{kind}/round-{round}/{a}", self.refs),
            None => format!("{}{kind}/round-{round}", self.refs),
        }
    }

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
    let journal = Journal {
        round,
        base: base.clone(),
        pid: std::process::id(),
        started_at: started_at.clone(),
        process_groups: Vec::new(),
        session: process::session().to_owned(),
        limit_wait: None,
    };
    journal.save(env.layout)?;
    let prev = keep_earlier_run(env.layout, round)?;
    let inputs = RoundInputs {
        version: INPUTS_VERSION,
        round,
        base: base.clone(),
        started_at: started_at.clone(),
        mission_dir: env.mission_dir.display().to_string(),
        mission: serde_json::to_value(env.mission).unwrap_or_default(),
        max_concurrency: env.max_concurrency,
        budget_usd: env.budget,
        only: env.only.to_vec(),
        state: state.clone(),
        queue: queue.clone(),
        decisions: Vec::new(),
        jobs: Vec::new(),
    };
    {
        // Called one at a time, in order (under the process registry's lock).
        let layout = env.layout.clone();
        process::set_observer(Some(Box::new(move |groups: &[i32]| {
            if let Err(e) = Journal::save_groups(&layout, groups) {
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
        journal,
        inputs,
        prev,
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
            revert: None,
            timing: Timing::default(),
            cost_usd: 0.0,
            total_cost_usd: 0.0,
            stop_reason: None,
            decisions: Vec::new(),
            notes: Vec::new(),
            nothing_landed: false,
        },
        budget_reached: false,
        committed: false,
        sections: BTreeMap::new(),
        merged: Vec::new(),
        converged: false,
        breaker: false,
        could_not_start: Vec::new(),
        limited: BTreeMap::new(),
        again: Vec::new(),
        held_since: BTreeMap::new(),
        cli_stop: None,
        limit_stop: None,
        beside: None,
        shared_failures: Vec::new(),
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
    journal: Journal,
    /// What the round started from, recorded for a replay (`rounds/round-NNNN.inputs.json`).
    inputs: RoundInputs,
    /// The K under which an earlier run of this round is kept (`round-NNNN.prev-K.json`).
    prev: u32,
    log: RoundLog,
    budget_reached: bool,
    committed: bool,
    /// Prompt sections computed this round (a section command runs once a round).
    sections: BTreeMap<String, String>,
    /// Worktree isolation: each code agent's commit merged this round, in merge order.
    merged: Vec<(String, String)>,
    converged: bool,
    breaker: bool,
    /// Agents whose program could not start this round.
    could_not_start: Vec<String>,
    /// Agents whose runs hit a provider limit this round: those runs, and the last one's entry
    /// (the agent's entry if it is not run again).
    limited: BTreeMap<String, Limited>,
    /// Agents to run again once their provider's hold ends (filled while a pool runs).
    again: Vec<String>,
    /// Since when (ms from the round's start) each agent held back by a limit has waited for
    /// its run that counts: its entry's `heldMs`.
    held_since: BTreeMap<String, u64>,
    cli_stop: Option<String>,
    limit_stop: Option<String>,
    /// Phase B beside the tests (`phaseB: "besideTests"`), while it is to be resolved.
    beside: Option<Beside>,
    /// Review agents of the running pool that failed while others worked in the shared tree.
    shared_failures: Vec<SharedFailure>,
}

/// An agent whose runs hit a provider limit this round.
struct Limited {
    /// Each run that hit the limit, in order.
    runs: Vec<LimitedRun>,
    /// The last one's entry: the agent's entry if it is not run again.
    last: AgentEntry,
}

/// A review agent's failed run in the shared tree while other agents worked there: which of
/// the files that changed meanwhile are its own is decided when the pool ends.
struct SharedFailure {
    agent: String,
    status: RunStatus,
    /// Every file that changed during its run.
    changed: Vec<String>,
    /// The agents that worked in the tree at some moment of its run.
    with: Vec<String>,
}

/// The file stem of an agent's `nth` run in a round, for its prompt and logs: `NAME`, then
/// `NAME.2`, ... (a run again after a revert keeps the first run's files: `orch round N` gives
/// its prompt again, and its round-log entry's `besideRun` points at its log).
fn run_stem(agent: &str, nth: usize) -> String {
    match nth {
        0 => agent.to_string(),
        n => format!("{agent}.{}", n + 1),
    }
}

/// One review agent's change beside the tests: a commit on the chain, on `parent`.
struct Link {
    agent: String,
    parent: String,
    commit: String,
}

/// What verification decided about the round's code changes: the landing, Phase B and the
/// round's status each follow from it.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Phase A changed nothing: no tests ran.
    Unchanged,
    /// The tests passed, failed no worse than the base did, or the mission has none.
    Passed,
    /// The tests regressed: the culprits' changes were taken out (`rejected`), or every
    /// change (`whole_round`).
    Regressed {
        rejected: Vec<String>,
        whole_round: bool,
    },
    /// The test command could not start: every change set aside untested (`rejected`).
    Untested { rejected: Vec<String> },
    /// An interrupt stopped the round during verification (logged `interrupted` there).
    Interrupted,
}

impl Verdict {
    /// The code agents whose work was taken out.
    fn rejected(&self) -> &[String] {
        match self {
            Verdict::Regressed { rejected, .. } | Verdict::Untested { rejected } => rejected,
            _ => &[],
        }
    }

    fn regressed(&self) -> bool {
        matches!(self, Verdict::Regressed { .. })
    }

    fn whole_round_reverted(&self) -> bool {
        matches!(
            self,
            Verdict::Regressed {
                whole_round: true,
                ..
            }
        )
    }
}

/// What the verification stage ran: the tests' result (none without a test command) and when
/// they ended, the post-sim, what the tests wrote put back (on the tests' thread, beside Phase
/// B), why Phase B could not run beside them, and a culprit search begun beside Phase B.
struct Verification<'m> {
    started: Instant,
    start_ms: u64,
    tests: Option<TestsEntry>,
    done_ms: u64,
    post: Option<SimEntry>,
    put_back: Option<Result<Vec<String>>>,
    beside_failed: Option<crate::error::Error>,
    early: Option<Early<'m>>,
}

/// What `settle` knows of a run before it lands it: whether its change may go to the tests
/// though it failed (the main tree was not moved under it), its status as its process ended,
/// and the agent's tracking state and spend before the run.
struct Landing {
    to_test: bool,
    first_status: RunStatus,
    before: (AgentState, f64),
}

/// The names of `planned` agents.
fn names(planned: &[&Planned]) -> Vec<String> {
    planned.iter().map(|a| a.agent.name.clone()).collect()
}

/// Phase B running beside the tests: orch's worktree of Phase A's merged tree, and what each
/// review agent changed there.
struct Beside {
    /// The worktree (`<stateDir>/worktrees/.phase-b`: no agent name starts with a dot).
    git: Git,
    /// Phase A's tree committed on the round's base with the code commit's message, and that
    /// message: the round's code commit when the tests pass on that tree.
    shown: (String, String),
    /// The commit it was made from: `shown`, plus this round's pre-sim data when the pre-sim
    /// succeeded.
    base: String,
    /// Each review agent that changed files, in completion order, with the files.
    changed: Vec<(String, Vec<String>)>,
    /// Their work as a chain of commits on `base`, one link made as each agent ends (while the
    /// tests and the other agents may still run), or why it could not be made.
    chain: Option<std::result::Result<Vec<Link>, String>>,
    /// The tree of the chain's last commit (of `base` while it is empty).
    tip_tree: String,
    /// Each review agent's tracking state before its run: a change that then cannot land is
    /// tracked as what it ends as.
    before: BTreeMap<String, AgentState>,
    /// The main tree's HEAD and branch while the tests run there: a review agent that moved
    /// them (through an absolute path) answers for it.
    main: SharedTree,
}

impl<'e> Round<'e, '_> {
    /// The round, stage by stage: plan, Phase A ‖ pre-sim, verification (tests ‖ post-sim ‖
    /// Phase B beside them) to a [`Verdict`], the code landed as the verdict says, Phase B, and
    /// the round's status. Each stage takes what the one before it produced.
    fn pipeline(&mut self, base: &str) -> Result<()> {
        // 1. Plan.
        let Some(active) = self.plan_stage(base)? else {
            return Ok(());
        };
        let (code, review): (Vec<&Planned>, Vec<&Planned>) =
            active.iter().partition(|a| a.agent.phase == Phase::Code);

        // 2. Phase A ‖ pre-sim.
        self.phase_a(&code, base)?;
        if process::interrupted() {
            return self.interrupted();
        }

        // 3. Tests ‖ post-sim (‖ Phase B beside them): the verdict.
        let verdict = self.verify(base, &review)?;
        if verdict == Verdict::Interrupted {
            return Ok(());
        }

        // 4. The code lands as the verdict says.
        self.land_code(&verdict)?;

        // 5. Phase B.
        if !self.phase_b(&review, &verdict)? {
            return Ok(());
        }

        // 6. The round's status.
        self.close(&verdict);
        Ok(())
    }

    /// The plan: which agents run, recorded (the round's inputs, `roundStart`). `None` when no
    /// agent runs: the round is skipped.
    fn plan_stage(&mut self, base: &str) -> Result<Option<Vec<Planned<'e>>>> {
        let active = self.plan();
        self.inputs.decisions = self.log.decisions.clone();
        self.save_inputs();
        self.env.events.emit(Event::RoundStart {
            round: self.round,
            base: base.to_string(),
            active: active.iter().map(|a| a.agent.name.clone()).collect(),
            idle: self
                .log
                .decisions
                .iter()
                .filter(|d| d.decision != Choice::Included)
                .map(|d| d.agent.clone())
                .collect(),
        });
        if active.is_empty() {
            self.log.status = RoundStatus::Skipped;
            return Ok(None);
        }
        self.ensure_state_dir("the round started")?;
        Ok(Some(active))
    }

    /// Phase A: the code agents in the pool, the pre-sim beside them; their tasks filed.
    fn phase_a(&mut self, code: &[&Planned<'e>], base: &str) -> Result<()> {
        let env = self.env;
        let a_start = Instant::now();
        let waited_before = self.log.timing.waited;
        let jobs = self.jobs(code, base)?;
        let pre_sim = env.mission.sims.as_ref().and_then(|s| s.pre.as_ref());
        let pre = std::thread::scope(|s| {
            let handle = pre_sim.map(|sim| {
                let run = self.sim_run(Which::Pre, sim);
                std::thread::Builder::new()
                    .name("orch-pre-sim".into())
                    .spawn_scoped(s, move || run.run(env.events))
                    .expect("spawning the pre-sim thread")
            });
            self.run_phase(jobs);
            handle.map(|h| h.join().expect("the pre-sim thread panicked"))
        });
        // A limit's wait is its own figure, not Phase A's.
        self.log.timing.phase_a = (a_start.elapsed().as_millis() as u64)
            .saturating_sub(self.log.timing.waited - waited_before);
        self.log.timing.pre_sim = pre.as_ref().map_or(0, |p| p.elapsed_ms);
        self.log.sims.pre = pre;
        self.take_inboxes(&names(code));
        self.ensure_state_dir("Phase A ended")
    }

    /// Phase B. Beside the tests it has run already: its work lands after the code commit, or,
    /// after a revert or untested tests, is kept in refs (and with `phaseBAfterRevert` the
    /// review agents run again, here, on the tree that stays). Otherwise the review agents
    /// run now, unless the verdict or the run's state skips them. `false`: the round was
    /// interrupted during it and ends there.
    fn phase_b(&mut self, review: &[&Planned<'e>], verdict: &Verdict) -> Result<bool> {
        let env = self.env;
        let untested = matches!(verdict, Verdict::Untested { .. });
        let reverted = verdict.whole_round_reverted();
        let ran_beside = self.beside.is_some();
        let mut rerun = false;
        if let Some(b) = self.beside.take() {
            let clean_after = (b.git.clone(), b.base.clone());
            if untested || verdict.regressed() {
                let why = if untested {
                    "the tests could not start, so nothing was tested"
                } else if reverted {
                    "the round was reverted"
                } else {
                    "a per-agent revert took code changes out of the tree they reviewed"
                };
                rerun = verdict.regressed() && env.mission.phase_b_after_revert(reverted);
                self.keep_review_aside(b, why, rerun);
            } else {
                self.take_inboxes(&names(review));
                self.land_review(b)?;
            }
            clean_phase_b_worktree(&clean_after.0, &clean_after.1);
        }
        if review.is_empty() || (ran_beside && !rerun) {
            return Ok(true);
        }
        let skipped = if untested {
            Some((
                "the tests could not start, so nothing was tested",
                "the tests could not start",
            ))
        } else if reverted && !env.mission.phase_b_after_revert(true) {
            Some((
                "the round was reverted (phaseBAfterRevert is off)",
                "the round was reverted",
            ))
        } else if self.budget_reached {
            Some(("the budget is reached", "the budget is reached"))
        } else if self.cli_stop.is_some() || self.limit_stop.is_some() {
            Some((
                "the run is stopping (see stopReason)",
                "the run is stopping",
            ))
        } else {
            None
        };
        if let Some((note, decision)) = skipped {
            self.note(&format!("Phase B skipped: {note}"));
            self.decide_skipped(review, &format!("skipped: {decision}"));
            return Ok(true);
        }
        self.run_phase_b_after(review, rerun)
    }

    /// The review agents after the tests (or again after a revert), on the tree that stays,
    /// and their commit. `false`: interrupted.
    fn run_phase_b_after(&mut self, review: &[&Planned<'e>], rerun: bool) -> Result<bool> {
        self.ensure_state_dir("Phase B started")?;
        let b_base = self.env.git.base()?;
        self.set_journal_base(&b_base);
        // The runs beside the tests, whose work was kept aside: each is folded into the entry
        // of its run again.
        let earlier: Vec<AgentEntry> = if rerun {
            let (b, keep) = std::mem::take(&mut self.log.agents)
                .into_iter()
                .partition(|e| e.phase == Phase::Review);
            self.log.agents = keep;
            b
        } else {
            Vec::new()
        };
        let b_start = Instant::now();
        let start_ms = self.t0.elapsed().as_millis() as u64;
        self.log.timing.phase_b_start_ms.get_or_insert(start_ms);
        let waited_before = self.log.timing.waited;
        let jobs = self.jobs(review, &b_base)?;
        self.run_phase(jobs);
        self.log.timing.phase_b += (b_start.elapsed().as_millis() as u64)
            .saturating_sub(self.log.timing.waited - waited_before);
        self.log.timing.phase_b_end_ms = Some(self.t0.elapsed().as_millis() as u64);
        self.fold_beside_runs(earlier);
        self.take_inboxes(&names(review));
        if process::interrupted() {
            self.interrupted()?;
            return Ok(false);
        }
        self.settle_tasks(Phase::Review, &[]);
        let what = self.commit_label(Phase::Review, &[], "review");
        self.commit(&what)?;
        Ok(true)
    }

    /// Makes the state folder's folders for this round, and puts back what an agent or the
    /// tests deleted (a `git clean -fdx` in the main tree): the folders, the tracking state and
    /// the task queue from memory, with a warning saying what was lost. The lock and the
    /// journal live under the git common folder, out of reach.
    fn ensure_state_dir(&mut self, when: &str) -> Result<()> {
        let layout = self.env.layout;
        // `rounds/` is made before the first round (`check_writable`) and never removed by orch.
        let vanished = !layout.rounds().is_dir();
        for dir in [
            layout.rounds(),
            layout.logs(self.round),
            layout.prompts(self.round),
            layout.scratch(self.round),
        ] {
            std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        if vanished {
            self.state.save(layout)?;
            self.queue.save(layout)?;
            // One line, printed once: the `warning` event is what a person sees (the round is
            // in its line), the note is what the round log keeps.
            let message = format!(
                "the state folder {} was deleted before {when} (a `git clean -fdx` by an agent \
                 or the tests?); lost: the earlier round logs, agent logs, prompts and \
                 events.ndjson; state.json and tasks.json were written again from memory, and \
                 the lock and journal were safe under {}",
                layout.dir.display(),
                layout.private.display()
            );
            self.log.notes.push(message.clone());
            self.env.events.emit(Event::Warning {
                round: Some(self.round),
                message,
            });
        }
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
                d.decision = Choice::Skipped;
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
        if let Err(e) = self.ensure_state_dir("the round log was written") {
            log::warn!("{e}");
        }
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
        // The circuit breaker counts rounds in a row that failed the tests for good: the tree
        // they committed fails (a red base, no revert), or the whole round was reverted. A
        // round whose per-agent revert took the bad change out committed a tree that passes:
        // healthy, though its first test run failed (that count is kept too, for `orch status`).
        // Tests that could not start count as neither: they tested nothing. Nor do the tests
        // of a round interrupted before it committed (during its culprit search): the next
        // `orch run` runs it again from the same base, and counts those.
        let rerun = self.log.status == RoundStatus::Interrupted && !self.committed;
        if let Some(t) = self
            .log
            .tests
            .as_ref()
            .filter(|t| t.cannot_start.is_none() && !rerun)
        {
            if t.status != StepStatus::Cancelled {
                let first_failed = t.status != StepStatus::Passed;
                let strategy = self.log.revert.as_ref().map(|r| r.strategy);
                let for_good = match strategy {
                    Some(Strategy::Round) => true,
                    Some(_) => false,
                    None => first_failed,
                };
                self.state.test_failed_rounds_in_a_row = if first_failed {
                    self.state.test_failed_rounds_in_a_row.saturating_add(1)
                } else {
                    0
                };
                if for_good {
                    self.state.test_failures_in_a_row =
                        self.state.test_failures_in_a_row.saturating_add(1);
                    let limit = env.mission.stop.after_test_failures;
                    if self.state.test_failures_in_a_row >= limit {
                        self.breaker = true;
                        self.log.stop_reason = Some(format!(
                            "circuit breaker: {} rounds in a row failed the tests (their committed tree failed, or the whole round was reverted; stop.afterTestFailures {limit})",
                            self.state.test_failures_in_a_row
                        ));
                    }
                } else {
                    self.state.test_failures_in_a_row = 0;
                }
            }
        }
        // The stall guard counts rounds that committed nothing, skipped ones included, but not
        // a round that a provider's limit kept from working.
        let limited = self
            .log
            .agents
            .iter()
            .any(|e| e.cause.is_some_and(|c| c.is_transient()));
        if self.committed {
            self.state.empty_rounds_in_a_row = 0;
        } else if !limited {
            self.state.empty_rounds_in_a_row += 1;
        }
        self.state.limits = env.limits.snapshot();
        // A run that stops for a provider's limit or a bad key leaves the round unfinished
        // (its limited agents did not get their run, Phase B was skipped): the next `orch run`
        // runs it again, from what this one committed.
        if self.limit_stop.is_some() || self.cli_stop.is_some() {
            self.log.status = RoundStatus::Interrupted;
        }
        // An interrupted round did not finish: `orch run` resumes by running it again.
        if self.log.status != RoundStatus::Interrupted {
            self.state.last_round = self.state.last_round.max(self.round);
        }
        self.state.mission = env.mission.name.clone();
        keep_earlier_log(env.layout, self.round, self.prev)?;
        write_json(&env.layout.round_log(self.round), &self.log)?;
        self.state.save(env.layout)?;
        env.events.emit(Event::RoundEnd {
            round: self.round,
            status: self.log.status,
            elapsed_ms: self.log.timing.total,
            cost_usd: self.log.cost_usd,
            total_cost_usd: self.log.total_cost_usd,
            commit: self.log.commit.clone(),
            nothing_landed: self.log.nothing_landed,
        });
        Ok(Outcome {
            log: self.log.clone(),
            budget_reached: self.budget_reached,
            interrupted: self.log.status == RoundStatus::Interrupted
                && self.limit_stop.is_none()
                && self.cli_stop.is_none(),
            committed: self.committed,
            converged: self.converged,
            breaker: self.breaker,
            cli_stop: self.cli_stop.clone(),
            limit_stop: self.limit_stop.clone(),
        })
    }
}

/// A round that runs again (an interrupted one, resumed): its earlier log is kept, renamed to
/// `round-NNNN.prev-K.json`, its paths into the logs and prompts folders pointing where
/// `keep_earlier_run` moved them.
/// Phase B's worktree once its work is resolved (landed, or kept in its refs): put back at the
/// commit it was made from and cleaned, so that nothing in it reads as work still to do (the
/// next round resets it anyway; this is for the time between, and after the last round).
fn clean_phase_b_worktree(git: &Git, base: &str) {
    if let Err(e) = git.restore(base) {
        log::warn!(
            "Phase B's worktree {} could not be cleaned: {e}",
            git.root().display()
        );
    }
}

fn keep_earlier_log(layout: &Layout, round: u32, k: u32) -> Result<()> {
    let path = layout.round_log(round);
    if !path.exists() {
        return Ok(());
    }
    let aside = layout
        .rounds()
        .join(format!("round-{round:04}.prev-{k}.json"));
    move_repointed(&path, &aside, round, k)
}

/// Moves a round log or inputs file (`from`) of an earlier run of `round` to `to`, its paths
/// into the round's logs and prompts folders pointing where they were moved aside (`.prev-K`).
fn move_repointed(from: &Path, to: &Path, round: u32, k: u32) -> Result<()> {
    let mut text = std::fs::read_to_string(from).ctx(|| format!("reading {}", from.display()))?;
    for dir in ["logs", "prompts"] {
        text = text.replace(
            &format!("\"{dir}/round-{round:04}/"),
            &format!("\"{dir}/round-{round:04}.prev-{k}/"),
        );
    }
    crate::engine::store::state::write_atomic(to, text.as_bytes())?;
    std::fs::remove_file(from).ctx(|| format!("removing {}", from.display()))
}

/// A replay's verdict on an agent: the recorded one, unless `--agent` leaves the agent out.
fn replayed_decision(rec: &RoundInputs, only: &[String], agent: &str) -> (Choice, String) {
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

/// A round that runs again (an interrupted one, resumed) keeps what its earlier run wrote
/// under the K its earlier log gets when this run ends (`keep_earlier_log`): the inputs as
/// `round-NNNN.prev-K.inputs.json`, the agents', tests' and sims' logs in
/// `logs/round-NNNN.prev-K/`, the prompts in `prompts/round-NNNN.prev-K/`. Without it this
/// run would write over them, and the interrupted run's output, the thing to look at, would
/// be gone. Returns K.
fn keep_earlier_run(layout: &Layout, round: u32) -> Result<u32> {
    let rounds = layout.rounds();
    let logs = layout.logs(round);
    let prompts = layout.prompts(round);
    let aside_dir = |dir: &Path, k: u32| {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        dir.with_file_name(format!("{}.prev-{k}", name.unwrap_or_default()))
    };
    let k = (1..)
        .find(|&k| {
            !rounds
                .join(format!("round-{round:04}.prev-{k}.json"))
                .exists()
                && !aside_dir(&logs, k).exists()
                && !aside_dir(&prompts, k).exists()
        })
        .unwrap_or(1);
    let inputs = layout.round_inputs(round);
    if inputs.exists() {
        let aside = rounds.join(format!("round-{round:04}.prev-{k}.inputs.json"));
        move_repointed(&inputs, &aside, round, k)?;
    }
    for dir in [&logs, &prompts] {
        if dir.exists() {
            let aside = aside_dir(dir, k);
            std::fs::rename(dir, &aside).ctx(|| {
                format!(
                    "keeping the earlier run's {} as {}",
                    dir.display(),
                    aside.display()
                )
            })?;
        }
    }
    Ok(k)
}

/// Runs the test suites `changed` calls for in the tree at `root` (the main tree, or a
/// per-agent revert's worktree), their logs under `log_dir`.
fn run_tests(
    env: &Env,
    root: &Path,
    tests: &crate::mission::Tests,
    log_dir: &Path,
    changed: &[String],
    round: u32,
    round_start: Instant,
) -> crate::roundlog::TestsEntry {
    let relative = |p: &Path| env.layout.relative(p);
    Stage {
        tests,
        root,
        log_dir,
        relative: &relative,
        round,
        grace: env.mission.grace(),
        round_start,
    }
    .run(&testing::select::select(tests, changed), env.events)
}

/// The agent's handoff file: it persists across rounds, so the last report stands.
fn handoff_path(layout: &Layout, agent: &str) -> PathBuf {
    layout.dir.join("handoff").join(format!("{agent}.json"))
}

fn inbox_path(layout: &Layout, round: u32, agent: &str) -> PathBuf {
    layout.scratch(round).join(format!("{agent}.tasks.jsonl"))
}

/// The `agentEnd` of a settled run; `amended` when it replaces the agent's earlier one of the
/// round (a review agent beside the tests whose change did not land after them).
/// Marks a failed run whose change went to the tests with the others' (`changeTested`), and
/// says so after its error, where the console line, `orch status` and the report show it.
fn tested_anyway(entry: &mut AgentEntry) {
    entry.change_tested = true;
    let note = "its change goes to the tests with the others (failedChanges: test)";
    entry.error = Some(match entry.error.take() {
        Some(e) => format!("{e}; {note}"),
        None => note.to_string(),
    });
}

/// The round's `testsEnd` for its tests' result (the full test command, nothing taken out);
/// `regression` as judged against the baseline.
fn tests_end(round: u32, t: &TestsEntry, regression: bool) -> Event {
    Event::TestsEnd {
        round,
        status: t.status,
        elapsed_ms: t.elapsed_ms,
        passed: t.passed,
        failed: t.failed,
        regression,
        flaky: t.flaky,
        without: Vec::new(),
    }
}

fn agent_end(round: u32, e: &AgentEntry, amended: bool) -> Event {
    Event::AgentEnd {
        round,
        agent: e.name.clone(),
        phase: e.phase,
        model: e.model.clone(),
        status: e.status,
        exit_code: e.exit_code,
        elapsed_ms: e.elapsed_ms,
        cost_usd: e.cost_usd,
        cost_known: e.cost_known,
        changed_files: e.changed_files,
        error: e.error.clone(),
        cause: e.cause,
        resets_at: e.resets_at.clone(),
        amended,
        aside: e.aside.clone(),
    }
}
