//! One round, top to bottom as SPEC section 1 tells it: plan; Phase A (code agents in the
//! pool) beside the pre-sim; the tests beside the post-sim when Phase A changed the tree; commit,
//! or revert on a regression (the rejected tree kept in a ref, the post-sim discarded); Phase B
//! (review agents); the round log.
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
//! Beside this file: `plan` (who runs and how: gates, jobs, pool order, prompts), `agent` (one
//! agent run on a worker and what it changed), `revert` (a regression: find the culprits or
//! revert the round) and `culprits` (the culprit search's decisions, without git).

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
mod culprits;
mod plan;
pub mod results;
mod revert;

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

    /// Verification, only when Phase A changed the tree: the tests and the post-sim (and Phase
    /// B with `phaseB: "besideTests"`), then the verdict on what the tests said. One snapshot
    /// of the tree (tracked and untracked files, the state folder left out) tells both what
    /// changed since the base and, should the tests run, what they were given: two git
    /// processes fewer than asking git for the changes and then taking the snapshot.
    /// `--no-renames`: a renamed file names both its paths, as the deleted and the untracked
    /// file did.
    fn verify(&mut self, base: &str, review: &[&Planned<'e>]) -> Result<Verdict> {
        let tested = self.env.git.tree_of_files(base)?;
        let changed = self.env.git.files_between(base, &tested)?;
        if changed.is_empty() {
            return Ok(Verdict::Unchanged);
        }
        let beside = self.beside_tests(review);
        let merged = self.merged.clone();
        let mut v = self.run_verification(base, &tested, &changed, beside, review, &merged);
        self.record_verification(base, &tested, &mut v)?;
        // An interrupt during a culprit search begun beside Phase B is settled with the
        // search (`undo_regression`): the round is interrupted there, its runs logged.
        if process::interrupted() && v.early.is_none() {
            self.log.tests = v.tests.take();
            self.interrupted()?;
            return Ok(Verdict::Interrupted);
        }
        match v.tests.take() {
            Some(tests) => self.judge(base, tests, v.early.take()),
            // No test command: the change lands as it is.
            None => Ok(Verdict::Passed),
        }
    }

    /// The tests and the post-sim in the main tree, and with `beside` the review agents in
    /// orch's worktree of the tested tree at the same time. Only what was tested is committed:
    /// the tree as the tests found it (`tested`) is put back after them (coverage files,
    /// caches, edits to tracked files are the tests', not the agents').
    fn run_verification<'m>(
        &mut self,
        base: &'m str,
        tested: &str,
        changed: &[String],
        beside: bool,
        review: &[&Planned<'e>],
        merged: &'m [(String, String)],
    ) -> Verification<'m> {
        let env = self.env;
        let started = Instant::now();
        let start_ms = self.t0.elapsed().as_millis() as u64;
        let post_sim = env.mission.sims.as_ref().and_then(|s| s.post.as_ref());
        let post_run = post_sim.map(|sim| self.sim_run(Which::Post, sim));
        let (round, t0) = (self.round, self.t0);
        let log_dir = env.layout.logs(round);
        let tests_cfg = env.mission.tests.as_ref();
        let log_dir_ref = &log_dir;
        let run_the_tests = move || {
            let t =
                tests_cfg.map(|t| run_tests(env, env.root(), t, log_dir_ref, changed, round, t0));
            (t, t0.elapsed().as_millis() as u64)
        };
        // A regression's culprit search begins on the tests' thread as soon as they end,
        // beside the review agents still at work (in worktrees only), rather than after
        // Phase B: the round's changes and the tests' baseline, owned.
        let early_ctx = (beside && self.per_agent()).then(|| self.ctx(false));
        std::thread::scope(|s| {
            let handle = post_run.map(|run| {
                std::thread::Builder::new()
                    .name("orch-post-sim".into())
                    .spawn_scoped(s, move || run.run(env.events))
                    .expect("spawning the post-sim thread")
            });
            if !beside {
                let (tests, done_ms) = run_the_tests();
                let post = handle.map(|h| h.join().expect("the post-sim thread panicked"));
                return Verification {
                    started,
                    start_ms,
                    tests,
                    done_ms,
                    post,
                    put_back: None,
                    beside_failed: None,
                    early: None,
                };
            }
            // The tests on a thread of their own, which also waits for the post-sim and puts
            // back what they wrote in the tree (while the review agents may still run); the
            // review agents' pool here, where their results are settled as always.
            let tests = std::thread::Builder::new()
                .name("orch-tests".into())
                .spawn_scoped(s, move || {
                    let (tests, done_ms) = run_the_tests();
                    let early = match (&tests, &early_ctx) {
                        (Some(t), Some(ctx)) => ctx.search_beside(t, base, merged),
                        _ => None,
                    };
                    let post = handle.map(|h| h.join().expect("the post-sim thread panicked"));
                    let put_back = env.git.put_files_back(base, tested);
                    (tests, done_ms, post, put_back, early)
                })
                .expect("spawning the tests thread");
            let beside_failed = self.run_beside(base, tested, review).err();
            let (tests, done_ms, post, put_back, early) =
                tests.join().expect("the tests thread panicked");
            Verification {
                started,
                start_ms,
                tests,
                done_ms,
                post,
                put_back: Some(put_back),
                beside_failed,
                early,
            }
        })
    }

    /// What the verification leaves in the round log besides the tests' result: Phase B run
    /// after the tests if its worktree could not be made, the stages' times, the files the
    /// tests wrote put back, the post-sim.
    fn record_verification(
        &mut self,
        base: &str,
        tested: &str,
        v: &mut Verification<'_>,
    ) -> Result<()> {
        if let Some(e) = v.beside_failed.take() {
            // Its worktree could not be made: Phase B runs after the tests, as it would
            // with `afterTests`. (An agent that ran there is kept by `abandon` if the round
            // fails later.)
            let why = format!("Phase B could not run beside the tests ({e}); it runs after them");
            log::warn!("round {}: {why}", self.round);
            self.note(&why);
            if self.log.agents.iter().any(|a| a.phase == Phase::Review) {
                self.keep_beside_unsorted();
            }
            self.beside = None;
        }
        let post_end = v.post.as_ref().map(|p| p.start_ms + p.elapsed_ms);
        let tests_end_ms = if self.beside.is_some() {
            v.done_ms.max(post_end.unwrap_or(0))
        } else {
            self.t0.elapsed().as_millis() as u64
        };
        self.log.timing.tests = if self.beside.is_some() {
            tests_end_ms.saturating_sub(v.start_ms)
        } else {
            v.started.elapsed().as_millis() as u64
        };
        self.log.timing.tests_start_ms = Some(v.start_ms);
        self.log.timing.tests_end_ms = Some(tests_end_ms);
        if let (Some(b0), Some(b1)) = (
            self.log.timing.phase_b_start_ms,
            self.log.timing.phase_b_end_ms,
        ) {
            self.log.timing.beside = tests_end_ms.min(b1).saturating_sub(v.start_ms.max(b0));
        }
        match v.put_back.take() {
            Some(undone) => self.note_test_writes(undone?),
            None => self.discard_test_writes(base, tested)?,
        }
        self.log.timing.post_sim = v.post.as_ref().map_or(0, |p| p.elapsed_ms);
        self.log.sims.post = v.post.take();
        Ok(())
    }

    /// The verdict on the tests' result: passed (or no worse than the base: the test baseline
    /// moves to it), regressed (the culprits' changes taken out, or the whole round reverted),
    /// untested (the test command could not start: the change set aside), or interrupted
    /// during the culprit search.
    fn judge(
        &mut self,
        base: &str,
        mut tests: TestsEntry,
        early: Option<Early<'_>>,
    ) -> Result<Verdict> {
        let cannot_start = tests.cannot_start.clone();
        tests.regression = cannot_start.is_none()
            && testing::run::is_regression(&tests, self.state.test_baseline.as_ref());
        // A search begun beside Phase B sent it before its own runs'.
        if early.is_none() {
            self.env.events.emit(Event::TestsEnd {
                round: self.round,
                status: tests.status,
                elapsed_ms: tests.elapsed_ms,
                passed: tests.passed,
                failed: tests.failed,
                regression: tests.regression,
                flaky: tests.flaky,
                without: Vec::new(),
            });
        }
        if tests.status != StepStatus::Passed && cannot_start.is_none() {
            self.state.last_test_failure = tests.tail.clone();
        }
        let verdict = if let Some(why) = cannot_start {
            // Not the agents' doing, and nothing was tested: set the change aside.
            let rejected = self.set_aside_untested(base, &why)?;
            Verdict::Untested { rejected }
        } else if tests.regression {
            let rejected = self.undo_regression(base, &tests.tail, early)?;
            // An interrupt stopped the culprit search before it settled: the round ends
            // there, as one at any other stage does.
            if self.log.status == RoundStatus::Interrupted {
                self.log.tests = Some(tests);
                return Ok(Verdict::Interrupted);
            }
            let whole_round = self
                .log
                .revert
                .as_ref()
                .is_some_and(|r| r.strategy == Strategy::Round);
            // After a per-agent revert the tree committed is the one tested without the
            // culprits: its result is the next base's known one (filled in with the commit
            // below), as after a round that passed. Otherwise the old baseline stays, naming a
            // commit that is no longer HEAD, and the next `orch run` measures the tests again
            // for nothing.
            if let Some(c) = self.log.revert.as_ref().and_then(|r| r.committed.as_ref()) {
                self.state.test_baseline = Some(TestBaseline {
                    passed: c.status == StepStatus::Passed,
                    failed_count: c.failed,
                    commit: String::new(),
                });
            }
            Verdict::Regressed {
                rejected,
                whole_round,
            }
        } else {
            self.state.test_baseline = Some(TestBaseline {
                passed: tests.status == StepStatus::Passed,
                failed_count: tests.failed,
                commit: String::new(),
            });
            if tests.status == StepStatus::Passed {
                self.state.last_test_failure.clear();
            }
            Verdict::Passed
        };
        self.log.tests = Some(tests);
        Ok(verdict)
    }

    /// The code agents' work lands as the verdict says: the sessions and tasks of the agents
    /// whose work was taken out settled, the sims published (the post-sim's not after a
    /// regression), the round's code commit made, and the test baseline pointed at it.
    fn land_code(&mut self, verdict: &Verdict) -> Result<()> {
        let rejected = verdict.rejected();
        let untested = matches!(verdict, Verdict::Untested { .. });
        self.drop_sessions(rejected, untested);
        self.settle_tasks(Phase::Code, rejected);
        self.publish(verdict.regressed() || untested)?;
        let what = if verdict.whole_round_reverted() || untested {
            "sim data".to_string()
        } else {
            // With no agent's change, what changed is the published sims' data (or files the
            // tests or sims wrote in the tree).
            self.commit_label(Phase::Code, rejected, "sim data")
        };
        self.commit(&what)?;
        // The tests just passed (or failed no worse than the base) on what was committed: that
        // is the known result for the next round's base, so the next run need not measure it.
        if let (Some(b), Some(c)) = (self.state.test_baseline.as_mut(), &self.log.commit) {
            if b.commit.is_empty() {
                b.commit = c.clone();
            }
        }
        Ok(())
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

    /// The round's status from its verdict (`reverted` after a whole-round revert, `failed`
    /// when nothing could be tested or no code agent could start), and whether anything landed.
    fn close(&mut self, verdict: &Verdict) {
        if verdict.whole_round_reverted() {
            self.log.status = RoundStatus::Reverted;
            self.log.reverted = true;
        }
        if matches!(verdict, Verdict::Untested { .. }) {
            self.log.status = RoundStatus::Failed;
        }
        // Code agents were meant to work and none could even start: the round did nothing
        // for a reason that is not the agents', so it does not read as `ok`.
        let code_ran_ok = self
            .log
            .agents
            .iter()
            .any(|e| e.phase == Phase::Code && e.status == RunStatus::Ok);
        let code_unstartable = self.could_not_start.iter().any(|n| {
            self.env
                .mission
                .agent(n)
                .is_some_and(|a| a.phase == Phase::Code)
        });
        if code_unstartable && !code_ran_ok && self.log.status == RoundStatus::Ok {
            self.log.status = RoundStatus::Failed;
            let why = format!(
                "round failed: no code agent could start ({})",
                self.could_not_start.join(", ")
            );
            self.note(&why);
        }
        self.check_nothing_landed();
    }

    /// An `ok` round whose agents all ran to no avail (failed, timed out, conflicted, changed
    /// nothing, or had their change taken out by the tests) says so: `nothingLanded`, a note
    /// naming how each run ended, the console's round line and `orch status`.
    fn check_nothing_landed(&mut self) {
        if self.log.status != RoundStatus::Ok || self.log.agents.is_empty() {
            return;
        }
        let culprits = self
            .log
            .revert
            .as_ref()
            .map(|r| r.culprits.clone())
            .unwrap_or_default();
        let landed = self.log.agents.iter().any(|e| {
            (e.status == RunStatus::Ok || e.change_tested)
                && e.aside.is_none()
                && !culprits.contains(&e.name)
        });
        if landed {
            return;
        }
        let runs: Vec<String> = self
            .log
            .agents
            .iter()
            .map(|e| match e.cause {
                Some(c) => format!("{} {} ({})", e.name, e.status.as_str(), c.as_str()),
                None if culprits.contains(&e.name) => format!("{} taken out", e.name),
                None => format!("{} {}", e.name, e.status.as_str()),
            })
            .collect();
        self.log.nothing_landed = true;
        self.note(&format!(
            "nothing landed: no agent's work went in ({})",
            runs.join(", ")
        ));
    }

    /// The tree the phase's agents share: orch's Phase B worktree while the review agents run
    /// beside the tests, else the main tree.
    fn phase_git(&self) -> &Git {
        self.beside.as_ref().map_or(self.env.git, |b| &b.git)
    }

    /// Whether Phase B runs beside the tests this round (`phaseB: "besideTests"`, review agents
    /// planned, a tests stage to run beside, nothing that would skip Phase B anyway).
    fn beside_tests(&mut self, review: &[&Planned<'e>]) -> bool {
        let m = self.env.mission;
        let post = m.sims.as_ref().is_some_and(|s| s.post.is_some());
        if m.phase_b != PhaseB::BesideTests || review.is_empty() || !(m.tests.is_some() || post) {
            return false;
        }
        if self.budget_reached
            || self.cli_stop.is_some()
            || self.limit_stop.is_some()
            || process::interrupted()
        {
            return false;
        }
        if !m.git.commit {
            self.note(
                "Phase B runs after the tests: besideTests lands the review agents' work as a \
                 commit after the code commit, and git.commit is off",
            );
            return false;
        }
        true
    }

    /// Phase B beside the tests: a commit of Phase A's merged tree (`tested`, on `base`), orch's
    /// worktree of it (with this round's pre-sim data published in it, as the review agents
    /// would find it after the tests), and the review agents' pool there, on this thread, while
    /// the tests and the post-sim run in the main tree.
    fn run_beside(&mut self, base: &str, tested: &str, review: &[&Planned<'e>]) -> Result<()> {
        let env = self.env;
        self.ensure_state_dir("Phase B started")?;
        let start_ms = self.t0.elapsed().as_millis() as u64;
        let b_start = Instant::now();
        // The review agents are shown the commit that lands if the tests pass: the round's code
        // commit, made now with the message it will have (`commit` moves the branch to it when
        // the tree it commits is this one), so a review that names it names what lands.
        let shown_message = self.commit_message(&self.commit_label(Phase::Code, &[], "sim data"));
        let snapshot = env.git.commit_of_tree(tested, base, &shown_message)?;
        let path = env.layout.dir.join("worktrees").join(".phase-b");
        let git = env.git.prepare_worktree(&path, &snapshot)?;
        let mut b_base = snapshot.clone();
        let mut tip_tree = tested.to_string();
        if let (Some(sims), Some(pre)) = (&env.mission.sims, &self.log.sims.pre) {
            if pre.status == StepStatus::Ok {
                let staging = env.layout.scratch(self.round).join(Which::Pre.as_str());
                sims::publish(&staging, &git.root().join(&sims.publish_to))?;
                if let Some(c) = git.commit_all(&format!(
                    "orch: round {}: the pre-sim's data, for Phase B",
                    self.round
                ))? {
                    tip_tree = git
                        .run(&["rev-parse", &format!("{c}^{{tree}}")])?
                        .trim()
                        .into();
                    b_base = c;
                }
            }
        }
        let main = SharedTree::new(env.git, &env.git.base()?);
        self.beside = Some(Beside {
            git,
            shown: (snapshot, shown_message),
            base: b_base.clone(),
            changed: Vec::new(),
            chain: Some(Ok(Vec::new())),
            tip_tree,
            before: BTreeMap::new(),
            main,
        });
        self.log.timing.phase_b_start_ms = Some(start_ms);
        let waited_before = self.log.timing.waited;
        let jobs = self.jobs(review, &b_base)?;
        self.run_phase(jobs);
        self.log.timing.phase_b = (b_start.elapsed().as_millis() as u64)
            .saturating_sub(self.log.timing.waited - waited_before);
        self.log.timing.phase_b_end_ms = Some(self.t0.elapsed().as_millis() as u64);
        Ok(())
    }

    /// A review agent beside the tests ended: its files over `git.maxFileBytes` are set aside
    /// (`refs/orch/too-big/round-N/AGENT`), and the rest becomes the chain's next commit, made
    /// now, while the tests and the other agents may still run (what is left to do once the
    /// last one ends is small).
    fn beside_link(
        &mut self,
        agent: &Agent,
        changed: &[String],
        entry: &mut AgentEntry,
        before: &AgentState,
    ) {
        let env = self.env;
        let round = self.round;
        let Some(b) = self.beside.as_mut() else {
            return;
        };
        b.before.insert(agent.name.clone(), before.clone());
        if entry.changed_files == 0 {
            return;
        }
        let mut files = changed.to_vec();
        if let Some(big) = agent::set_aside_oversized(env, &b.git, &files, round, &agent.name) {
            files.retain(|f| !big.contains(f));
            entry.files.retain(|f| !big.contains(f));
            entry.changed_files = entry.changed_files.saturating_sub(big.len() as u32);
        }
        b.changed.push((agent.name.clone(), files.clone()));
        let Some(Ok(links)) = &mut b.chain else {
            return;
        };
        let parent = links
            .last()
            .map_or_else(|| b.base.clone(), |l| l.commit.clone());
        let msg = format!("orch: round {round} {} (beside the tests)", agent.name);
        match b.git.commit_paths_tree(&parent, &msg, &files) {
            Ok((commit, tree)) => {
                if tree != b.tip_tree {
                    links.push(Link {
                        agent: agent.name.clone(),
                        parent,
                        commit,
                    });
                    b.tip_tree = tree;
                }
            }
            Err(e) => b.chain = Some(Err(e.to_string())),
        }
    }

    /// The review agents' work beside the tests as a chain of commits on the worktree's base,
    /// one per agent that changed files, in completion order. Files
    /// two agents wrote go with the first (the tree holds the last writer's version).
    fn review_chain(&self, b: &Beside) -> Result<Vec<Link>> {
        let mut parent = b.base.clone();
        let mut chain = Vec::new();
        for (name, files) in &b.changed {
            let msg = format!("orch: round {} {name} (beside the tests)", self.round);
            let commit = b.git.commit_paths(&parent, &msg, files)?;
            let trees = b.git.run(&[
                "rev-parse",
                &format!("{commit}^{{tree}}"),
                &format!("{parent}^{{tree}}"),
            ])?;
            let mut t = trees.lines();
            if t.next() == t.next() {
                continue;
            }
            chain.push(Link {
                agent: name.clone(),
                parent: parent.clone(),
                commit: commit.clone(),
            });
            parent = commit;
        }
        Ok(chain)
    }

    /// When the chain cannot be made: the worktree as it is, whole, under
    /// `refs/orch/review-unsorted/round-N`, so nothing of the review agents' is lost when it is
    /// reset next round.
    fn keep_beside_unsorted(&mut self) {
        let Some(b) = &self.beside else { return };
        let r = self.env.kept_ref("review-unsorted", self.round, None);
        let msg = format!(
            "orch: round {}: Phase B's worktree as it was (beside the tests)",
            self.round
        );
        let note = match b.git.save_tree(&b.base, &r, &msg) {
            Ok(_) => format!("Phase B's worktree is kept whole in {r}"),
            Err(e) => format!("Phase B's worktree could not be kept ({e})"),
        };
        log::warn!("round {}: {note}", self.round);
        self.note(&note);
    }

    /// The tests passed: each review agent's change is applied on the code commit in turn
    /// (`Git::pick`); one that conflicts is kept under `refs/orch/conflicts/round-N/AGENT`
    /// (one git refuses, under `refs/orch/unmerged/...`) and its run becomes `conflict`
    /// (`failed`); the rest land as the round's review commit.
    fn land_review(&mut self, mut b: Beside) -> Result<()> {
        let env = self.env;
        let chain = match b.chain.take() {
            Some(c) => c,
            None => self.review_chain(&b).map_err(|e| e.to_string()),
        };
        let chain = match chain {
            Ok(c) => c,
            Err(e) => {
                self.beside = Some(b);
                self.keep_beside_unsorted();
                self.beside = None;
                self.note(&format!(
                    "Phase B's work could not be sorted by agent ({e}); not merged"
                ));
                return Ok(());
            }
        };
        self.settle_tasks(Phase::Review, &[]);
        // Usually it all applies at once: the whole chain on the code commit, as the round's
        // review commit (one three-way merge, no commit of the tree to make afterwards).
        if let Some(Link { commit: tip, .. }) = chain.last() {
            let what = self.commit_label(Phase::Review, &[], "review");
            let msg = format!(
                "orch: round {} {what}\n\nmission: {}",
                self.round, env.mission.name
            );
            if env.git.pick(&b.base, tip, &msg)? == crate::engine::git::Merge::Merged {
                if let Some(c) = env.git.head()? {
                    env.events.emit(Event::Commit {
                        round: self.round,
                        commit: c.clone(),
                        what,
                    });
                    self.set_journal_base(&c);
                    self.log.commit = Some(c);
                    self.committed = true;
                }
                return Ok(());
            }
        }
        // Something does not apply: agent by agent, to find whose change it is.
        for Link {
            agent: name,
            parent,
            commit,
        } in chain
        {
            let msg = format!("orch: round {} {name}", self.round);
            let (status, kind, error) = match env.git.pick(&parent, &commit, &msg)? {
                crate::engine::git::Merge::Merged => continue,
                crate::engine::git::Merge::Conflict(files) => (
                    RunStatus::Conflict,
                    "conflicts",
                    format!(
                        "its change (made beside the tests) conflicts with the round's code commit in {}",
                        files.join(", ")
                    ),
                ),
                crate::engine::git::Merge::Refused(why) => (
                    RunStatus::Failed,
                    "unmerged",
                    format!("its change (made beside the tests) could not be merged ({why})"),
                ),
            };
            let r = env.kept_ref(kind, self.round, Some(&name));
            env.git.set_ref(&r, &commit)?;
            log::warn!("agent {name}: {error}; kept in {r}");
            let Some(i) = self.log.agents.iter().position(|e| e.name == name) else {
                continue;
            };
            let e = &mut self.log.agents[i];
            e.status = status;
            e.error = Some(match e.error.take() {
                Some(old) => format!("{old}; {error}; kept in {r}"),
                None => format!("{error}; kept in {r}"),
            });
            if status == RunStatus::Failed {
                e.cause.get_or_insert(crate::roundlog::Cause::Exit);
            }
            let e = e.clone();
            // Tracked as what it ended as: a change that did not land is no success.
            if let (Some(agent), Some(before)) = (env.mission.agent(&name), b.before.get(&name)) {
                let st = self.state.agent_mut(&name);
                let change = results::retrack(st, before.clone(), agent, &e, self.round);
                self.log.agents[i].escalated_to = change.as_ref().map(|c| c.to.clone());
                if agent.session {
                    // Its conversation remembers a change that is not on the branch.
                    let why = format!(
                        "its change from round {} (beside the tests) did not land",
                        self.round
                    );
                    sessions::forget(self.state.agent_mut(&name), why);
                }
            }
            if let Some(d) = self.log.decisions.iter_mut().find(|d| d.agent == name) {
                d.outcome = Some(status);
            }
            // Its first agentEnd (when its process ended, beside the tests) said ok: this one
            // says what it ended as, like a code agent's conflict, for the attention hook, the
            // live view and scripts.
            env.events.emit(agent_end(self.round, &e, true));
        }
        let what = self.commit_label(Phase::Review, &[], "review");
        self.commit(&what)
    }

    /// The round was reverted (or its tests could not start) while Phase B ran beside them:
    /// each review agent's change is kept under `refs/orch/review-aside/round-N/AGENT`, not
    /// merged, and its entry says so. With `rerun` (phaseBAfterRevert) the agents run again on
    /// the tree that stays: their tasks go back to pending for that run and the tasks they
    /// filed beside the tests are set aside (the rerun files its own); otherwise the tasks
    /// they filed reach the queue and their own tasks come back with a note.
    fn keep_review_aside(&mut self, mut b: Beside, why: &str, rerun: bool) {
        let env = self.env;
        let mut kept: BTreeMap<String, String> = BTreeMap::new();
        let chain = match b.chain.take() {
            Some(c) => c,
            None => self.review_chain(&b).map_err(|e| e.to_string()),
        };
        match chain {
            Ok(chain) => {
                for Link {
                    agent: name,
                    commit,
                    ..
                } in chain
                {
                    let r = env.kept_ref("review-aside", self.round, Some(&name));
                    match env.git.set_ref(&r, &commit) {
                        Ok(()) => {
                            kept.insert(name, r);
                        }
                        Err(e) => {
                            log::warn!("agent {name}: its work could not be kept in {r}: {e}")
                        }
                    }
                }
            }
            Err(e) => {
                self.beside = Some(b);
                self.keep_beside_unsorted();
                self.beside = None;
                log::warn!(
                    "round {}: Phase B's work could not be sorted by agent: {e}",
                    self.round
                );
            }
        }
        let reason = format!(
            "ran beside the tests, and {why}: its work is not merged{}",
            if rerun {
                "; it ran again after the revert (phaseBAfterRevert)"
            } else {
                ""
            }
        );
        let names = self.mark_review_aside(&|name| kept.get(name).cloned(), &reason);
        for name in kept.keys() {
            if env.mission.agent(name).is_some_and(|a| a.session) {
                let why = format!(
                    "its change from round {} (beside the tests) was kept aside: {why}",
                    self.round
                );
                sessions::forget(self.state.agent_mut(name), why);
            }
        }
        let refs: Vec<&str> = kept.values().map(String::as_str).collect();
        self.note(&format!(
            "Phase B ran beside the tests and {why}: the review agents' work is kept aside, not merged{}{}",
            if refs.is_empty() {
                " (they changed no file)".to_string()
            } else {
                format!(", in {}", refs.join(", "))
            },
            if rerun { "; they run again on the tree that stays (phaseBAfterRevert)" } else { "" }
        ));
        if rerun {
            for name in &names {
                let inbox = inbox_path(env.layout, self.round, name);
                if inbox.exists() {
                    let aside = inbox.with_extension("aside.jsonl");
                    if std::fs::rename(&inbox, &aside).is_ok() {
                        self.note(&format!(
                            "{name}: the tasks it filed beside the tests are set aside in {} (it runs again)",
                            env.layout.relative(&aside)
                        ));
                    }
                }
            }
            let tasks: Vec<String> = self
                .log
                .agents
                .iter()
                .filter(|e| e.phase == Phase::Review)
                .filter_map(|e| e.task.clone())
                .collect();
            for id in tasks {
                // Not its failure: the run again gets the task, its attempts as they were.
                self.queue.requeue(&id, None, None);
                if let Some(t) = self.queue.get_mut(&id) {
                    t.attempts = t.attempts.saturating_sub(1);
                }
            }
        } else {
            self.take_inboxes(&names);
            let aside: Vec<String> = kept.keys().cloned().collect();
            self.settle_tasks(Phase::Review, &aside);
        }
    }

    /// After Phase B ran again (phaseBAfterRevert): each run beside the tests goes into the
    /// entry of the agent's run again (`besideRun`), or stays an entry of its own when the
    /// agent did not run again. The entry's cost is then the agent's whole spend in the round,
    /// both runs, so the entries' costs add up to the round's as a script summing them expects.
    fn fold_beside_runs(&mut self, earlier: Vec<AgentEntry>) {
        for e in earlier {
            match self.log.agents.iter_mut().find(|a| a.name == e.name) {
                Some(now) => {
                    now.cost_usd += e.cost_usd;
                    now.cost_known &= e.cost_known;
                    now.beside_run = Some(Box::new(e));
                }
                None => self.log.agents.push(e),
            }
        }
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

    /// The test command could not start (exit 126/127, or no such program): the round's change
    /// is kept under `refs/orch/untested/round-N`, the tree goes back to the base, and the run
    /// stops, since every later round would fail the same way after its agents had spent.
    /// Nothing is counted against the agents (no revert, no test failure, no breaker count).
    /// Returns the code agents whose work was set aside.
    fn set_aside_untested(&mut self, base: &str, why: &str) -> Result<Vec<String>> {
        let kept = format!("refs/orch/untested/round-{}", self.round);
        self.env.git.save_tree(
            base,
            &kept,
            &format!(
                "orch: round {} set aside untested (the test command could not start)\n\n{why}",
                self.round
            ),
        )?;
        self.env.git.restore(base)?;
        let reason = format!(
            "the test command could not start ({why}); the round's change is kept in {kept}, \
             the base restored; fix the command, then `orch run` goes on"
        );
        self.env.events.emit(Event::Warning {
            round: Some(self.round),
            message: reason.clone(),
        });
        log::error!("round {}: {reason}", self.round);
        self.note(&reason);
        self.log.kept_ref = Some(kept);
        self.log.stop_reason = Some(reason);
        self.breaker = true;
        Ok(self
            .log
            .agents
            .iter()
            .filter(|e| e.phase == Phase::Code)
            .map(|e| e.name.clone())
            .collect())
    }

    /// Decides which agents take part and why the others do not.
    fn plan(&mut self) -> Vec<Planned<'e>> {
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
    fn when_command(&self, agent: &Agent, argv: Vec<String>) -> (bool, String) {
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
    fn jobs<'p>(&mut self, planned: &[&Planned<'p>], base: &str) -> Result<Vec<Job<'p>>> {
        let mut jobs = Vec::new();
        for p in planned {
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
            let recorded_prompt = |r: &RecordedJob| match r.resumed {
                true => Err(
                    "it was a resumed session's short prompt, and a replay resumes no \
                             session"
                        .to_string(),
                ),
                false => self.recorded_prompt(r),
            };
            let (prompt_file, text) = match recorded.map(recorded_prompt) {
                Some(Ok(done)) => done,
                Some(Err(why)) => {
                    self.note(&format!(
                        "{}: the recorded prompt cannot be used ({why}); rendered from today's templates",
                        agent.name
                    ));
                    self.write_prompt(agent, &plan.model, task.as_ref(), false, nth)?
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
                    self.write_prompt(agent, &plan.model, task.as_ref(), resumed, nth)?
                }
            };
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
            jobs.push(Job {
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
                session,
                nth,
            });
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

    /// Writes the agent's prompt file; returns its path and text.
    fn write_prompt(
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
    fn recorded_prompt(&self, job: &RecordedJob) -> std::result::Result<(PathBuf, String), String> {
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
    fn save_inputs(&self) {
        if let Err(e) = self.inputs.save(self.env.layout) {
            log::warn!("round {}: cannot record its inputs: {e}", self.round);
        }
    }

    /// Runs a phase's jobs in the pool; then, while some of them hit a provider's limit, waits
    /// until the first hold among theirs ends and runs them again (the others' holds may end
    /// meanwhile; an agent whose provider is still held is handed back at once). A wait beyond
    /// `limits.maxWaitS`, `--no-wait`, an interrupt, the budget or a permanent CLI error ends
    /// the retries: the limited runs keep their last entry.
    fn run_phase(&mut self, jobs: Vec<Job<'e>>) {
        let env = self.env;
        let mut jobs = jobs;
        loop {
            let mut by_name: BTreeMap<String, Job> = jobs
                .iter()
                .map(|j| (j.agent.name.clone(), j.clone()))
                .collect();
            self.again.clear();
            self.run_pool(jobs);
            let names = std::mem::take(&mut self.again);
            let again: Vec<Job> = names
                .iter()
                .filter_map(|n| by_name.remove(n))
                .filter_map(|j| self.ready_again(j))
                .collect();
            if again.is_empty() {
                return;
            }
            if process::interrupted()
                || self.budget_reached
                || self.cli_stop.is_some()
                || self.limit_stop.is_some()
            {
                self.give_up(again);
                return;
            }
            // The hold that ends first among the waiting agents' providers.
            let mut holds: BTreeMap<String, (Hold, Vec<String>)> = BTreeMap::new();
            for j in &again {
                let p = agents::provider_of(j.agent);
                if let Some(h) = env.limits.held(&p) {
                    holds
                        .entry(p)
                        .or_insert_with(|| (h, Vec::new()))
                        .1
                        .push(j.agent.name.clone());
                }
            }
            let Some((provider, (hold, waiting))) =
                holds.into_iter().min_by_key(|(_, (h, _))| h.remaining())
            else {
                // Every hold has ended already: run them now.
                jobs = again;
                continue;
            };
            let wait = hold.remaining();
            if env.limits.no_wait || wait > env.limits.max_wait() {
                let why = if env.limits.no_wait {
                    format!(
                        "{provider} is limited ({}: {}) until {}, and --no-wait is set; the state is saved: run `orch run` again later",
                        hold.cause.as_str(),
                        hold.error,
                        hold.until
                    )
                } else {
                    format!(
                        "{provider} is limited ({}: {}) until {}, {} away: longer than limits.maxWaitS ({}); the state is saved: run `orch run` again then",
                        hold.cause.as_str(),
                        hold.error,
                        hold.until,
                        units::duration_ms(wait.as_millis() as u64),
                        units::duration_ms(env.limits.max_wait().as_millis() as u64)
                    )
                };
                log::warn!("round {}: {why}", self.round);
                self.log.stop_reason = Some(why.clone());
                self.limit_stop = Some(why);
                self.give_up(again);
                return;
            }
            self.wait_out(&provider, &hold, &waiting, wait);
            if process::interrupted() {
                self.give_up(again);
                return;
            }
            jobs = again;
        }
    }

    /// A job held back by its provider's limit (a limited run, or a start refused), before it
    /// goes again: a limited run may have cost something, so one whose budget is spent does
    /// not run again (its entry says why); the others' caps are what is left now.
    fn ready_again(&mut self, mut j: Job<'e>) -> Option<Job<'e>> {
        if let Some(why) = over_budget(j.agent, self.state) {
            if let Some(Limited { last: e, .. }) = self.limited.get_mut(&j.agent.name) {
                let note = format!("not run again: its budgetUsd is spent ({why})");
                e.error = Some(match e.error.take() {
                    Some(old) => format!("{old}; {note}"),
                    None => note,
                });
            }
            self.give_up(vec![j]);
            return None;
        }
        j.cap_args = budget_left(j.agent, self.state)
            .and_then(|left| agents::cap_args(j.agent, left))
            .unwrap_or_default();
        // A new session that hit a limit may exist already under its id: the run again
        // starts another (a resumed one is resumed again).
        if let Some(s) = j.session.as_mut().filter(|s| !s.resume) {
            s.id = sessions::new_id();
        }
        Some(j)
    }

    /// Milliseconds from the round's start to now.
    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Waits `wait` for `provider`'s hold to end, interruptibly, telling the sinks and the
    /// journal (for `orch status`) while it does.
    fn wait_out(&mut self, provider: &str, hold: &Hold, waiting: &[String], wait: Duration) {
        let env = self.env;
        env.events.emit(Event::LimitWait {
            round: self.round,
            provider: provider.to_string(),
            agents: waiting.to_vec(),
            cause: hold.cause,
            error: hold.error.clone(),
            until: hold.until.clone(),
            wait_ms: wait.as_millis() as u64,
        });
        self.journal.limit_wait = Some(LimitWait {
            provider: provider.to_string(),
            agents: waiting.to_vec(),
            cause: hold.cause.as_str().to_string(),
            error: hold.error.clone(),
            until: hold.until.clone(),
            since: units::now_rfc3339(),
        });
        if let Err(e) = self.journal.save(env.layout) {
            log::warn!("cannot update the journal: {e}");
        }
        let t = Instant::now();
        limits::sleep_interruptibly(wait);
        let waited = t.elapsed().as_millis() as u64;
        self.log.timing.waited += waited;
        self.journal.limit_wait = None;
        if let Err(e) = self.journal.save(env.layout) {
            log::warn!("cannot update the journal: {e}");
        }
        env.events.emit(Event::LimitResume {
            round: self.round,
            provider: provider.to_string(),
            agents: waiting.to_vec(),
            waited_ms: waited,
        });
    }

    /// The jobs that will not run again this round: a limited one keeps its last run as its
    /// entry; one that never started is `cancelled`.
    fn give_up(&mut self, jobs: Vec<Job<'_>>) {
        let env = self.env;
        for job in jobs {
            let name = job.agent.name.clone();
            match self.limited.remove(&name) {
                Some(Limited {
                    mut runs,
                    last: mut entry,
                }) => {
                    runs.pop();
                    entry.limited_runs = runs;
                    if let Some(since) = self.held_since.remove(&name) {
                        entry.held_ms = self.now_ms().saturating_sub(since);
                    }
                    self.record(entry, false);
                }
                None => {
                    let shared = Mutex::new(SharedTree::new(self.phase_git(), &job.base));
                    let raw = not_started(env, self.round, job);
                    self.settle(raw, None, &shared);
                }
            }
        }
    }

    /// An agent with a `budgetUsd`: a run of unknown cost is counted (it spent $0 as far as
    /// the budget can tell, so the budget cannot hold it back), and the run that spends the
    /// budget says that the agent will not start again.
    fn count_against_budget(&mut self, agent: &Agent, raw: &RawRun, e: &AgentEntry, before: f64) {
        let Some(budget) = agent.budget_usd else {
            return;
        };
        let ran = !matches!(
            raw.finished.ending,
            Ending::SpawnFailed(_) | Ending::Cancelled
        );
        let st = self.state.agent_mut(&agent.name);
        let (message, warn) = if ran && !e.cost_known {
            st.unknown_cost_runs += 1;
            let first = st.unknown_cost_runs == 1;
            (
                Some(format!(
                "agent {}: its CLI did not say what this run cost, so it counts $0 against its \
                 budgetUsd {} (print a cost, give `pricing`, or write ORCH_RESULT_FILE)",
                agent.name,
                units::usd(budget)
            )),
                first,
            )
        } else if before < budget && st.cost_usd >= budget {
            (
                Some(format!(
                "agent {} is over budget: {} spent of its budgetUsd {}; it is not started again",
                agent.name,
                units::usd(st.cost_usd),
                units::usd(budget)
            )),
                true,
            )
        } else {
            (None, false)
        };
        let Some(message) = message else {
            return;
        };
        // Every such run is noted in the round log; a person is told the first time
        // (`orch status` counts them).
        if warn {
            self.log.notes.push(message.clone());
        } else {
            self.note(&message);
        }
        if warn {
            self.env.events.emit(Event::Warning {
                round: Some(self.round),
                message,
            });
        }
    }

    /// Runs jobs in the pool and settles each result as it arrives. An agent held back by its
    /// provider's limit goes back into the pool, to start when the hold ends, while the other
    /// agents run; if they all end first, it is left in `again` for `run_phase` to wait for.
    fn run_pool(&mut self, jobs: Vec<Job<'e>>) {
        let env = self.env;
        let (round, t0) = (self.round, self.t0);
        let base = jobs.first().map_or_else(String::new, |j| j.base.clone());
        let shared = Mutex::new(SharedTree::new(self.phase_git(), &base));
        let by_name: BTreeMap<String, Job> = jobs
            .iter()
            .map(|j| (j.agent.name.clone(), j.clone()))
            .collect();
        pool::run(
            env.max_concurrency,
            jobs,
            || !process::interrupted(),
            |job| run_agent(env, round, t0, &shared, job),
            |done, control| {
                let raw = match done {
                    Done::Finished(raw) => raw,
                    Done::NotStarted(job) => not_started(env, round, job),
                    Done::Deferred(job) => {
                        self.again.push(job.agent.name.clone());
                        return;
                    }
                };
                let before = self.again.len();
                self.settle(raw, Some(control), &shared);
                if control.stopped()
                    || process::interrupted()
                    || self.cli_stop.is_some()
                    || self.limit_stop.is_some()
                {
                    return;
                }
                for name in self.again.split_off(before) {
                    let Some(job) = by_name.get(&name).cloned() else {
                        continue;
                    };
                    let Some(job) = self.ready_again(job) else {
                        continue;
                    };
                    let provider = agents::provider_of(job.agent);
                    // A little past the hold's end: the hold is kept to the millisecond, and a
                    // start refused again a moment early costs a round trip through the pool.
                    let wait = env.limits.held(&provider).map_or(Duration::ZERO, |h| {
                        h.remaining() + Duration::from_millis(20)
                    });
                    log::info!(
                        "agent {name}: {provider} is held; it starts in {} if a slot is free",
                        units::duration_ms(wait.as_millis() as u64)
                    );
                    control.defer(job, Instant::now() + wait);
                }
            },
        );
        self.settle_shared_failures(&shared);
    }

    /// The bookkeeping for one finished run (completion order, main thread): the dispatcher of
    /// the pool's results. Once the run's cost is counted against the budget (the ledger), the
    /// pool may start the next job: the git work that follows (merging a worktree) does not
    /// hold a free slot idle. A run its provider's limit stopped is held for a run again;
    /// every other one is recorded.
    fn settle(
        &mut self,
        raw: RawRun,
        control: Option<&pool::Control<Job<'e>>>,
        shared: &Mutex<SharedTree>,
    ) {
        let env = self.env;
        let Some(agent) = env.mission.agent(&raw.agent) else {
            return;
        };
        if raw.deferred {
            // Its provider is held off: it did not start, and runs once the hold ends.
            let now = self.now_ms();
            self.held_since.entry(raw.agent.clone()).or_insert(now);
            self.again.push(raw.agent.clone());
            return;
        }
        let st = self.state.agent_mut(&agent.name);
        // What the agent's state was before this run: should git's checks below turn the run
        // into a failure, it is tracked again from here with the status it ends with.
        let before = (st.clone(), st.cost_usd);
        let mut settled = results::settle(&raw, agent, st, &env.mission.pricing, self.round);
        let first_status = settled.entry.status;
        for why in &raw.kept_aside {
            self.note(&format!("agent {}: {why}", agent.name));
        }
        self.note_spawn_failure(agent, &raw);
        let main_moved = self.main_tree_moved(agent, &raw, shared);
        if let Some(why) = raw.rejected.as_ref().or(main_moved.as_ref()) {
            settled.entry.status = RunStatus::Failed;
            settled.entry.error = Some(match settled.entry.error.take() {
                Some(e) => format!("{why}; {e}"),
                None => why.clone(),
            });
        }
        let limit = self.count_spend(agent, &settled);
        if let Some(c) = control {
            if self.budget_reached || self.cli_stop.is_some() {
                c.stop_starting();
            } else {
                c.start_next();
            }
        }
        let landing = Landing {
            to_test: main_moved.is_none(),
            first_status,
            before,
        };
        self.land_run(agent, &raw, &mut settled, shared, landing);
        self.emit_run_end(agent, &settled);
        if let Some((f, hold)) = limit {
            self.hold_for_limit(agent, settled.entry, f, &hold);
            return;
        }
        if let Some(plan) = &raw.session {
            self.carry_session(agent, &raw, plan, &settled.entry);
        }
        let escalated = settled.model_change.is_some();
        let mut entry = settled.entry;
        if let Some(Limited { runs, .. }) = self.limited.remove(&entry.name) {
            entry.limited_runs = runs;
        }
        if let Some(since) = self.held_since.remove(&entry.name) {
            entry.held_ms = entry.start_ms.saturating_sub(since);
        }
        self.record(entry, escalated);
    }

    /// A program that could not start is a broken setup, not a bad change (it went missing
    /// after the start-up check, or hides behind shell syntax): said where a person looks.
    fn note_spawn_failure(&mut self, agent: &Agent, raw: &RawRun) {
        if let Ending::SpawnFailed(why) = &raw.finished.ending {
            let msg = format!("agent {} could not start: {why}", agent.name);
            self.env.events.emit(Event::Warning {
                round: Some(self.round),
                message: msg.clone(),
            });
            self.note(&msg);
            self.could_not_start.push(agent.name.clone());
        }
    }

    /// Why the main tree's HEAD or branch moved under this run, when it did. Worktree
    /// isolation: the main tree is orch's alone during Phase A, so a HEAD or branch that moved
    /// there was moved by an agent (through an absolute path): the one that just ended is the
    /// first to answer for it. Beside the tests a review agent works in orch's worktree; the
    /// main tree, where the tests run, must be as the phase found it.
    fn main_tree_moved(
        &mut self,
        agent: &Agent,
        raw: &RawRun,
        shared: &Mutex<SharedTree>,
    ) -> Option<String> {
        let env = self.env;
        let moved = raw
            .worktree
            .as_ref()
            .and_then(|_| {
                shared.lock().unwrap_or_else(|e| e.into_inner()).check_head(
                    env.git,
                    self.round,
                    &agent.name,
                )
            })
            .map(|why| format!("in the main tree, {why}"));
        moved.or_else(|| {
            let b = self
                .beside
                .as_mut()
                .filter(|_| raw.phase == Phase::Review)?;
            b.main
                .check_head(env.git, self.round, &agent.name)
                .map(|why| format!("in the main tree, {why}"))
        })
    }

    /// The ledger's part of a run's end: its cost added to the round's and the run's, the
    /// budget checked (reached: no new agent starts), a permanent failure (bad credentials, an
    /// untrusted folder) stops the run, and a transient one (a rate limit) holds its provider
    /// off before the pool may start the next job, else an agent of the same provider could
    /// start into the same limit. Returns the limit and its hold, for a run again.
    fn count_spend(&mut self, agent: &Agent, settled: &Settled) -> Option<(Failure, Hold)> {
        let env = self.env;
        self.log.cost_usd += settled.entry.cost_usd;
        self.state.total_cost_usd += settled.entry.cost_usd;
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
        let permanent = settled.failure.as_ref().filter(|f| f.cause.is_permanent());
        if let (Some(f), None) = (permanent, &self.cli_stop) {
            let cli = agents::for_agent(agent);
            let why = format!(
                "agent {} ({}): {} — {}. Fix: {}. orch starts no new agent (exit 6)",
                agent.name,
                cli.name(),
                f.cause.as_str(),
                f.error,
                cli.fix(f.cause)
            );
            // Printed once, as the `stop` event's line when the running agents are done;
            // the agent's own line says the cause now.
            self.log.stop_reason = Some(why.clone());
            self.cli_stop = Some(why);
        }
        let provider = agents::provider_of(agent);
        let transient = settled
            .failure
            .as_ref()
            .filter(|f| f.cause.is_transient())
            .cloned()?;
        let hold = env.limits.hold(&provider, &transient);
        Some((transient, hold))
    }

    /// Where a run's change goes and how it is tracked: its handoff read, its ownership
    /// checked, its worktree merged (a code agent that failed by itself after its edits too:
    /// its change goes to the tests) or its failed files in the shared tree kept aside, its link
    /// in Phase B's chain beside the tests, its state tracked again as what it ended as, its
    /// cost counted against its budget, its session, the base it ran on, its provider's limit
    /// cleared by a good run.
    fn land_run(
        &mut self,
        agent: &Agent,
        raw: &RawRun,
        settled: &mut Settled,
        shared: &Mutex<SharedTree>,
        landing: Landing,
    ) {
        let env = self.env;
        let (st_before, spent_before) = landing.before;
        settled.entry.handoff = self.read_handoff(agent);
        if !agent.owns.is_empty() {
            self.check_ownership(agent, raw, &mut settled.entry, shared);
        }
        let to_test = landing.to_test && self.tests_failed_change(raw, &settled.entry);
        if let Some(wt) = &raw.worktree {
            if let Err(e) = self.integrate(wt, raw, to_test, &mut settled.entry) {
                log::warn!(
                    "agent {}: its worktree could not be merged: {e}",
                    agent.name
                );
                let kept = self.keep_worktree(wt, &raw.base, "unmerged", &agent.name);
                settled.entry.error = Some(format!("merging its worktree failed: {e}{kept}"));
                settled.entry.status = RunStatus::Failed;
                settled
                    .entry
                    .cause
                    .get_or_insert(crate::roundlog::Cause::Exit);
            }
        } else if to_test {
            // The shared tree holds it already: it is tested with the rest.
            tested_anyway(&mut settled.entry);
        } else {
            self.keep_failed_shared_run(raw, &mut settled.entry, shared);
        }
        if raw.phase == Phase::Review && self.beside.is_some() {
            self.beside_link(agent, &raw.changed, &mut settled.entry, &st_before);
        }
        if settled.entry.status != landing.first_status || settled.entry.change_tested {
            // Counted as what it ended as, not as what the process's exit said (a run whose
            // merge failed is no success for the streaks, the escalation or `orch status`).
            let st = self.state.agent_mut(&agent.name);
            settled.model_change =
                results::retrack(st, st_before, agent, &settled.entry, self.round);
            settled.entry.escalated_to = settled.model_change.as_ref().map(|c| c.to.clone());
        }
        self.count_against_budget(agent, raw, &settled.entry, spent_before);
        match &raw.session {
            Some(plan) => {
                let e = &mut settled.entry;
                e.session_id = sessions::run_id(agent, plan, settled.session_id.as_deref());
                e.session_resumed = plan.resume;
                e.session_dropped = plan.dropped.clone();
            }
            None => settled.entry.session_id = settled.session_id.clone(),
        }
        if !matches!(
            raw.finished.ending,
            Ending::SpawnFailed(_) | Ending::Cancelled
        ) || raw.finished.elapsed > Duration::ZERO
        {
            self.state.agent_mut(&agent.name).last_base = Some(raw.base.clone());
        }
        if matches!(settled.entry.status, RunStatus::Ok | RunStatus::Empty) {
            let started = self.t0 + Duration::from_millis(settled.entry.start_ms);
            env.limits.clear(&agents::provider_of(agent), started);
        }
    }

    /// The run's `agentEnd` and, when its model changed, its `escalation`.
    fn emit_run_end(&self, agent: &Agent, settled: &Settled) {
        let events = self.env.events;
        events.emit(agent_end(self.round, &settled.entry, false));
        if let Some(results::ModelChange { from, to, why }) = &settled.model_change {
            log::info!("agent {}: model {from:?} -> {to:?}: {why}", agent.name);
            events.emit(Event::Escalation {
                round: self.round,
                agent: agent.name.clone(),
                from: from.clone(),
                to: to.clone(),
                reason: why.clone(),
            });
        }
    }

    /// A run its provider's limit stopped: not the agent's failure. Its provider is held off
    /// (by `count_spend`), the run is kept among the agent's limited runs, and the agent runs
    /// again after the wait.
    fn hold_for_limit(&mut self, agent: &Agent, e: AgentEntry, f: Failure, hold: &Hold) {
        log::info!(
            "agent {}: {} ({}); {} is held until {}",
            agent.name,
            f.cause.as_str(),
            f.error,
            agents::provider_of(agent),
            hold.until
        );
        let slot = self
            .limited
            .entry(e.name.clone())
            .or_insert_with(|| Limited {
                runs: Vec::new(),
                last: e.clone(),
            });
        slot.runs.push(LimitedRun {
            cause: f.cause,
            error: f.error.clone(),
            resets_at: e.resets_at.clone(),
            start_ms: e.start_ms,
            elapsed_ms: e.elapsed_ms,
            cost_usd: e.cost_usd,
        });
        let end = slot.runs.last().map_or(0, |r| r.start_ms + r.elapsed_ms);
        slot.last = e;
        self.held_since.entry(agent.name.clone()).or_insert(end);
        self.again.push(agent.name.clone());
    }

    /// After a run with a session: kept for the next run when its change went in whole (or it
    /// had none), dropped otherwise. A run that never started leaves the session as it was.
    fn carry_session(
        &mut self,
        agent: &Agent,
        raw: &RawRun,
        plan: &sessions::Plan,
        entry: &AgentEntry,
    ) {
        let never_ran = match raw.finished.ending {
            Ending::SpawnFailed(_) => true,
            Ending::Cancelled => raw.finished.elapsed.is_zero(),
            _ => false,
        };
        if never_ran {
            return;
        }
        let round = self.round;
        let kept = match entry.status {
            RunStatus::Ok | RunStatus::Empty if !raw.kept_aside.is_empty() => Err(format!(
                "part of its change in round {round} was kept aside: {}",
                raw.kept_aside.join("; ")
            )),
            RunStatus::Ok | RunStatus::Empty
                if self.env.mission.enforce_ownership && !entry.ownership_violations.is_empty() =>
            {
                Err(format!(
                    "part of its change in round {round} was taken out (outside its owns globs)"
                ))
            }
            RunStatus::Ok | RunStatus::Empty => Ok(()),
            // Its change went in with the others' (a revert after the tests drops the
            // session then, as an ok run's).
            _ if entry.change_tested => Ok(()),
            other => Err(format!(
                "its run in round {round} ended {}, so its change was not kept",
                other.as_str()
            )),
        };
        let st = self.state.agent_mut(&agent.name);
        sessions::after_run(
            st,
            agent,
            plan,
            entry.session_id.as_deref(),
            &entry.model,
            round,
            kept,
        );
    }

    /// Code agents whose work was taken out after the tests: their sessions remember a change
    /// that is not on the branch, so each is dropped.
    fn drop_sessions(&mut self, rejected: &[String], untested: bool) {
        let round = self.round;
        let why = if untested {
            format!("its change from round {round} was set aside untested")
        } else if self
            .log
            .revert
            .as_ref()
            .is_some_and(|r| r.strategy == Strategy::Round)
        {
            format!("its change from round {round} was taken out (the round was reverted)")
        } else {
            format!("its change from round {round} broke the tests and was taken out")
        };
        for name in rejected {
            if self.env.mission.agent(name).is_some_and(|a| a.session) {
                sessions::forget(self.state.agent_mut(name), why.clone());
            }
        }
    }

    /// An agent's final entry for the round: its decision's outcome, and the log.
    fn record(&mut self, entry: AgentEntry, escalated: bool) {
        if let Some(d) = self
            .log
            .decisions
            .iter_mut()
            .find(|d| d.agent == entry.name)
        {
            d.model = Some(entry.model.clone());
            d.escalated = escalated;
            d.outcome = Some(entry.status);
            d.elapsed_ms = Some(entry.elapsed_ms);
        }
        self.log.agents.push(entry);
    }

    /// What the agent reported in its handoff file, kept in the state for `dependsOn`.
    fn read_handoff(&mut self, agent: &Agent) -> Option<Handoff> {
        let path = handoff_path(self.env.layout, &agent.name);
        let text = std::fs::read_to_string(&path).ok()?;
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                log::warn!(
                    "agent {}: its handoff file {} is not JSON ({e}); ignored",
                    agent.name,
                    path.display()
                );
                return None;
            }
        };
        let status = v.get("status").and_then(|s| s.as_str()).unwrap_or_default();
        let Some(handoff) = Handoff::parse(status) else {
            log::warn!(
                "agent {}: handoff status {status:?} is not in-progress, complete or all-done; ignored",
                agent.name
            );
            return None;
        };
        self.state.agent_mut(&agent.name).handoff = Some(handoff);
        Some(handoff)
    }

    /// Changes outside the agent's `owns` globs: reported, and with `enforceOwnership` kept
    /// under `refs/orch/ownership/round-N/AGENT` and taken out (before the merge, in a
    /// worktree; from the shared tree by the agent's own fingerprint).
    fn check_ownership(
        &mut self,
        agent: &Agent,
        raw: &RawRun,
        entry: &mut crate::roundlog::AgentEntry,
        shared: &Mutex<SharedTree>,
    ) {
        let outside: Vec<String> = raw
            .changed
            .iter()
            .filter(|f| !agent.owns.iter().any(|g| crate::glob::matches(g, f)))
            .cloned()
            .collect();
        if outside.is_empty() {
            return;
        }
        log::warn!(
            "agent {} changed files outside what it owns: {}",
            agent.name,
            outside.join(", ")
        );
        if self.env.mission.enforce_ownership {
            // What is taken out is kept first, in both modes: in a worktree its files there; in
            // the shared tree the files its own fingerprint says it changed (under the tree's
            // lock, so no other agent's fingerprint is taken meanwhile).
            let r = format!("refs/orch/ownership/round-{}/{}", self.round, agent.name);
            let msg = format!(
                "orch: round {} {}: changes outside its owns globs",
                self.round, agent.name
            );
            let taken = match &raw.worktree {
                Some(wt) => {
                    let git = self.env.git.at(wt);
                    git.save_paths(&raw.base, &r, &msg, &outside).map(|_| {
                        for f in &outside {
                            // Tracked at the base: put it back; new: remove it.
                            if git.run(&["checkout", &raw.base, "--", f]).is_err() {
                                let _ = std::fs::remove_file(wt.join(f));
                            }
                        }
                    })
                }
                None => {
                    let mut tree = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let git = tree.git.clone();
                    let done = git.base().and_then(|head| {
                        git.save_paths(&head, &r, &msg, &outside)?;
                        git.take_out(&outside)
                    });
                    tree.forget();
                    done
                }
            };
            match taken {
                Ok(()) => {
                    entry.changed_files = entry.changed_files.saturating_sub(outside.len() as u32);
                    entry.files.retain(|f| !outside.contains(f));
                    if entry.changed_files == 0 && entry.status == RunStatus::Ok {
                        entry.status = RunStatus::Empty;
                    }
                    self.note(&format!(
                        "{}: changes outside its owns globs were taken out and kept in {r}: {}",
                        agent.name,
                        outside.join(", ")
                    ));
                }
                Err(e) => {
                    // Not kept, so not taken out: the work stays where it is.
                    log::warn!(
                        "agent {}: its changes outside its owns globs could not be kept in {r} ({e}); left in place",
                        agent.name
                    );
                }
            }
        }
        entry.ownership_violations = outside;
    }

    /// Worktree isolation: commits an agent's change in its worktree and merges it into the main
    /// tree at once, in completion order. A change that conflicts with one merged earlier is kept
    /// under `refs/orch/conflicts/round-N/AGENT` and the run becomes `conflict`; the partial work
    /// of a failed, timed-out or cancelled run is kept under `refs/orch/<status>/round-N/AGENT`
    /// and not merged. The worktree is left clean (its change committed there), not reset: the
    /// agent's next run resets it (`Git::prepare_worktree`), so a reset here would be two more git
    /// calls on the main thread, where each merge waits for the one before.
    fn integrate(
        &mut self,
        wt: &Path,
        raw: &RawRun,
        to_test: bool,
        entry: &mut crate::roundlog::AgentEntry,
    ) -> Result<()> {
        let (base, made) = (raw.base.as_str(), &raw.commit);
        let git = self.env.git.at(wt);
        if entry.changed_files > 0 {
            let msg = format!("orch: round {} {}", self.round, entry.name);
            let commit = match made {
                Ok(Some(c)) => Some(c.clone()),
                // Committed after the ownership check; an agent that committed its own work
                // may leave nothing more to commit, and its HEAD is the change then.
                Ok(None) => match git.commit_agent_change(&msg)? {
                    Some(c) => Some(c),
                    None => git.head_moved_from(base),
                },
                Err(e) => {
                    // Whatever it is, the files it left are kept before the worktree is reused.
                    let r = self.env.kept_ref("failed", self.round, Some(&entry.name));
                    let kept = git
                        .save_tree(
                            base,
                            &r,
                            &format!("orch: round {} {}: not merged", self.round, entry.name),
                        )
                        .map(|_| format!("; its files are kept in {r}"))
                        .unwrap_or_default();
                    return Err(crate::error::Error::Other(format!("{e}{kept}")));
                }
            };
            if let Some(commit) = commit {
                let keep = |kind: &str| self.env.kept_ref(kind, self.round, Some(&entry.name));
                match entry.status {
                    RunStatus::Ok => {
                        self.merge_change(&commit, &msg, entry)?;
                    }
                    RunStatus::Failed if to_test => {
                        if self.merge_change(&commit, &msg, entry)? {
                            tested_anyway(entry);
                        }
                    }
                    other => {
                        // A limited run is run again: each of its partial trees gets a ref.
                        let r = match entry.cause.filter(|c| c.is_transient()) {
                            Some(_) => format!(
                                "{}-{}",
                                keep("limited"),
                                self.limited.get(&entry.name).map_or(0, |l| l.runs.len()) + 1
                            ),
                            None => keep(other.as_str()),
                        };
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
        Ok(())
    }

    /// Merges a run's change into the main tree: merged (a candidate for the per-agent
    /// revert; true), or kept in a ref when git refuses it (`failed`) or it conflicts
    /// (`conflict`).
    fn merge_change(&mut self, commit: &str, msg: &str, entry: &mut AgentEntry) -> Result<bool> {
        let keep = |kind: &str| self.env.kept_ref(kind, self.round, Some(&entry.name));
        match self.env.git.merge(commit, msg)? {
            Merge::Merged => {
                self.merged.push((entry.name.clone(), commit.to_string()));
                return Ok(true);
            }
            Merge::Refused(why) => {
                // Not a conflict (an untracked file in the main tree the merge would
                // overwrite, ...): the change is kept, the run failed.
                let r = keep("unmerged");
                self.env.git.set_ref(&r, commit)?;
                entry.status = RunStatus::Failed;
                entry.error = Some(format!("its merge failed ({why}); kept in {r}"));
            }
            Merge::Conflict(files) => {
                let r = keep("conflicts");
                self.env.git.set_ref(&r, commit)?;
                entry.status = RunStatus::Conflict;
                entry.error = Some(format!(
                    "conflicts with work merged earlier this round in {}; kept in {r}",
                    files.join(", ")
                ));
            }
        }
        Ok(false)
    }

    /// Whether a failed code agent's change goes to the tests like an ok run's
    /// (`failedChanges: "test"`, the default): its process ended by itself (out of turns, an
    /// error exit after its edits, an `is_error` result), so its change is as complete as orch
    /// can tell, and the tests decide. Not a run orch ended (timeout, interrupt), one a signal
    /// killed (it may have died mid-write), one git's checks rejected (it moved HEAD or the
    /// branch), nor one that hit a provider's limit (it runs again).
    fn tests_failed_change(&self, raw: &RawRun, entry: &AgentEntry) -> bool {
        self.env.mission.failed_changes == FailedChanges::Test
            && raw.phase == Phase::Code
            && entry.status == RunStatus::Failed
            && entry.changed_files > 0
            && matches!(raw.finished.ending, Ending::Exited(_))
            && raw.rejected.is_none()
            && raw.commit.is_ok()
            && !entry.cause.is_some_and(|c| c.is_transient())
    }

    /// In the shared tree: a review agent that failed or timed out, a code agent that timed
    /// out or failed without its change going to the tests (a signal killed it,
    /// `failedChanges: "aside"`), or any agent git's checks rejected (it moved HEAD), has the
    /// files it changed (by its fingerprint) kept under `refs/orch/<status>/round-N/AGENT` and
    /// taken out of the tree, so its half-work is never tested, committed nor named in a
    /// commit. A code agent held off by a provider's limit keeps its files in the tree for its
    /// run again. One that failed while others worked in the tree may have seen their files
    /// change: those are decided once the pool ends (`settle_shared_failures`), so another
    /// agent's work is never taken for its.
    fn keep_failed_shared_run(
        &mut self,
        raw: &RawRun,
        entry: &mut crate::roundlog::AgentEntry,
        shared: &Mutex<SharedTree>,
    ) {
        let failed = matches!(entry.status, RunStatus::Failed | RunStatus::Timeout);
        let limited = raw.phase == Phase::Code
            && raw.rejected.is_none()
            && entry.cause.is_some_and(|c| c.is_transient());
        if !failed || raw.changed.is_empty() || limited {
            return;
        }
        let note = if raw.rejected.is_none() && !raw.shared_with.is_empty() {
            self.shared_failures.push(SharedFailure {
                agent: entry.name.clone(),
                status: entry.status,
                changed: raw.changed.clone(),
                with: raw.shared_with.clone(),
            });
            format!(
                "the files that changed while it ran are decided when {} end{} (they worked in the tree too)",
                raw.shared_with.join(", "),
                if raw.shared_with.len() == 1 { "s" } else { "" }
            )
        } else {
            self.take_out_shared(shared, &entry.name, entry.status, &raw.changed)
        };
        entry.changed_files = 0;
        entry.files.clear();
        entry.error = Some(match entry.error.take() {
            Some(e) => format!("{e}; {note}"),
            None => note,
        });
    }

    /// `files` of `agent`'s failed run kept under `refs/orch/<status>/round-N/AGENT` and taken
    /// out of the shared tree (under its lock: no agent's fingerprint is taken while the files
    /// change); the sentence that says so.
    fn take_out_shared(
        &self,
        shared: &Mutex<SharedTree>,
        agent: &str,
        status: RunStatus,
        files: &[String],
    ) -> String {
        let mut tree = shared.lock().unwrap_or_else(|e| e.into_inner());
        let git = tree.git.clone();
        let r = format!("refs/orch/{}/round-{}/{agent}", status.as_str(), self.round);
        let Ok(Some(head)) = git.head() else {
            return "its files could not be kept: no HEAD".into();
        };
        let msg = format!(
            "orch: round {} {agent}: {}, not committed",
            self.round,
            status.as_str()
        );
        let note = match git
            .save_paths(&head, &r, &msg, files)
            .and_then(|_| git.take_out(files))
        {
            Ok(()) => format!("its files are kept in {r} and taken out of the tree, not committed"),
            Err(e) => format!("its files could not be kept and taken out ({e})"),
        };
        tree.forget();
        drop(tree);
        log::warn!("agent {agent}: {note}");
        note
    }

    /// Once the pool has ended: of the files that changed while a review agent that failed
    /// worked beside others in the shared tree, those no agent that ended well changed in its
    /// own run are the failed one's (taken out, kept in its ref, as for a failed run alone);
    /// the others' files stay theirs. Its entry lists no file either way, as a failed run's.
    fn settle_shared_failures(&mut self, shared: &Mutex<SharedTree>) {
        for f in std::mem::take(&mut self.shared_failures) {
            let theirs: std::collections::BTreeSet<&String> = self
                .log
                .agents
                .iter()
                .filter(|e| f.with.contains(&e.name))
                .filter(|e| {
                    e.change_tested
                        || !matches!(
                            e.status,
                            RunStatus::Failed | RunStatus::Timeout | RunStatus::Cancelled
                        )
                })
                .flat_map(|e| e.files.iter())
                .collect();
            let (left, own): (Vec<String>, Vec<String>) =
                f.changed.iter().cloned().partition(|p| theirs.contains(p));
            let mut notes = Vec::new();
            if !left.is_empty() {
                notes.push(format!(
                    "{} changed while it ran and left to the agents beside it that changed {} too",
                    left.join(", "),
                    if left.len() == 1 { "it" } else { "them" }
                ));
            }
            if !own.is_empty() {
                notes.push(self.take_out_shared(shared, &f.agent, f.status, &own));
            }
            let Some(e) = self.log.agents.iter_mut().find(|e| e.name == f.agent) else {
                continue;
            };
            for note in notes {
                e.error = Some(match e.error.take() {
                    Some(old) => format!("{old}; {note}"),
                    None => note,
                });
            }
        }
    }

    /// Files over `git.maxFileBytes` in `git`'s tree are kept under `refs/orch/too-big/WHAT`
    /// and taken out, with a warning naming them: never committed, never lost.
    fn set_aside_oversized(&mut self, git: &Git, what: &str) {
        let max = self.env.mission.git.max_file_bytes;
        let big = match git.oversized(max) {
            Ok(b) if !b.is_empty() => b,
            _ => return,
        };
        let r = format!("refs/orch/too-big/{what}");
        let names: Vec<String> = big
            .iter()
            .map(|(p, n)| format!("{p} ({})", units::bytes(*n)))
            .collect();
        let msg = format!("orch: {what}: files over git.maxFileBytes");
        let message = match git.set_aside(&big, &r, &msg) {
            Ok(()) => format!(
                "left out of the commit, over git.maxFileBytes ({}), kept in {r}: {}",
                units::bytes(max),
                names.join(", ")
            ),
            Err(e) => format!(
                "over git.maxFileBytes ({}) but could not be set aside ({e}): {}",
                units::bytes(max),
                names.join(", ")
            ),
        };
        self.log.notes.push(message.clone());
        self.env.events.emit(Event::Warning {
            round: Some(self.round),
            message,
        });
    }

    /// What the test command (or the post-sim beside it) wrote in the tree is put back as it
    /// was before them, with a note naming the files: it was not tested, and is nobody's change.
    fn discard_test_writes(&mut self, base: &str, tested: &str) -> Result<()> {
        let undone = self.env.git.put_files_back(base, tested)?;
        self.note_test_writes(undone);
        Ok(())
    }

    /// The note naming the files the tests wrote and that were put back.
    fn note_test_writes(&mut self, undone: Vec<String>) {
        if !undone.is_empty() {
            let mut names = undone
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if undone.len() > 10 {
                names.push_str(&format!(" and {} more", undone.len() - 10));
            }
            self.note(&format!(
                "the tests changed {} file{} in the tree, put back as the tests found them: {names}",
                undone.len(),
                if undone.len() == 1 { "" } else { "s" }
            ));
        }
    }

    /// Keeps what is in a worktree (its files and any commits of the agent's) under
    /// `refs/orch/<kind>/round-N/AGENT`; the text to append to the run's error.
    fn keep_worktree(&self, wt: &Path, base: &str, kind: &str, agent: &str) -> String {
        let r = self.env.kept_ref(kind, self.round, Some(agent));
        let msg = format!("orch: round {} {agent}: not merged", self.round);
        match self.env.git.at(wt).save_tree(base, &r, &msg) {
            Ok(_) => format!("; its files are kept in {r}"),
            Err(e) => {
                log::warn!("agent {agent}: its files could not be kept in {r}: {e}");
                format!("; its files could not be kept ({e})")
            }
        }
    }

    /// Tasks of the phase's agents: done when the run was ok (and kept), back to pending
    /// otherwise.
    fn settle_tasks(&mut self, phase: Phase, rejected: &[String]) {
        let failure = self.state.last_test_failure.clone();
        let untested = self.log.tests.as_ref().and_then(|t| t.cannot_start.clone());
        let runs: Vec<_> = self
            .log
            .agents
            .iter()
            .filter(|e| e.phase == phase)
            .filter_map(|e| {
                Some((
                    e.task.clone()?,
                    e.status,
                    e.error.clone(),
                    rejected.contains(&e.name),
                    e.cause.is_some_and(|c| {
                        c.is_transient()
                            || c.is_permanent()
                            || c == crate::roundlog::Cause::OverBudget
                    }),
                    e.change_tested,
                ))
            })
            .collect();
        for (id, status, error, reverted, not_its_fault, change_tested) in runs {
            let id = id.as_str();
            if not_its_fault && status != RunStatus::Ok {
                // A limit, a bad key or the agent's budget cap: the task did not get its try. It
                // stays pending, its attempts as they were (no split, no failure counted).
                self.queue.requeue(id, None, None);
                if let Some(t) = self.queue.get_mut(id) {
                    t.attempts = t.attempts.saturating_sub(1);
                }
                continue;
            }
            match (status, reverted) {
                (RunStatus::Ok, false) => {
                    let _ = self.queue.set_status(id, TaskStatus::Done);
                }
                (_, true)
                    if matches!(status, RunStatus::Ok | RunStatus::Empty) || change_tested =>
                {
                    let note = match &untested {
                        Some(why) => format!(
                            "Round {}: this work was set aside untested (the test command could not start: {why})",
                            self.round
                        ),
                        None => format!(
                            "Round {}: this work was reverted because the tests regressed:\n{failure}",
                            self.round
                        ),
                    };
                    self.queue.requeue(id, Some(1), Some(&note));
                }
                (RunStatus::Timeout | RunStatus::Failed, _) if self.should_split(id, status) => {
                    self.split(id, status);
                }
                // Its change landed, but the run did not end well (out of turns, ...): the task
                // is not done; its next run goes on from the change on the branch.
                (_, false) if change_tested => self.queue.requeue(
                    id,
                    None,
                    Some(&format!(
                        "Round {}: the run ended badly ({}), but its change was tested and \
                         committed: go on from there",
                        self.round,
                        error.as_deref().unwrap_or("failed")
                    )),
                ),
                (RunStatus::Conflict, _) => self.queue.requeue(
                    id,
                    None,
                    Some(&format!(
                        "Round {}: not merged: {}",
                        self.round,
                        error.as_deref().unwrap_or("a merge conflict")
                    )),
                ),
                _ => self.queue.requeue(id, None, None),
            }
        }
        if let Err(e) = self.queue.save(self.env.layout) {
            log::warn!("cannot save the task queue: {e}");
        }
    }

    /// A task that timed out, or failed `tasks.splitAfter` times, is split when the mission
    /// names a `splitBy` agent.
    fn should_split(&self, id: &str, status: RunStatus) -> bool {
        let Some(cfg) = &self.env.mission.tasks else {
            return false;
        };
        cfg.split_by.is_some()
            && (status == RunStatus::Timeout
                || self
                    .queue
                    .get(id)
                    .is_some_and(|t| t.attempts >= cfg.split_after))
    }

    /// Marks the task `split` and asks the `splitBy` agent, at priority 1, to break it into
    /// subtasks of about five minutes that name it as their parent.
    fn split(&mut self, id: &str, status: RunStatus) {
        let Some(by) = self
            .env
            .mission
            .tasks
            .as_ref()
            .and_then(|c| c.split_by.clone())
        else {
            return;
        };
        let Some(task) = self.queue.get(id).cloned() else {
            return;
        };
        let _ = self.queue.set_status(id, TaskStatus::Split);
        let why = match status {
            RunStatus::Timeout => "timed out".to_string(),
            _ => format!("failed {} times", task.attempts),
        };
        let body = format!(
            "Task {id} for agent {agent} {why}: it is too big for one run.\n\
             Break it into subtasks of about five minutes each. File each one as a JSON line in \
             $ORCH_TASKS_INBOX: {{\"agent\": \"{agent}\", \"parent\": \"{id}\", \"title\": ..., \"body\": ...}}.\n\n\
             Original title: {title}\n\nOriginal body:\n{body}",
            agent = task.agent,
            title = task.title,
            body = task.body,
        );
        let new = self.queue.add(
            &by,
            1,
            &format!("Split {id} into smaller tasks: {}", task.title),
            &body,
            Some(id.to_string()),
            self.round,
        );
        log::info!(
            "round {}: task {id} {why}; {new} asks {by} to split it",
            self.round
        );
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

    /// Publishes the sims that may be published: a successful pre-sim always, a successful
    /// post-sim only when the round was not reverted.
    fn publish(&mut self, regressed: bool) -> Result<()> {
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
            if which == Which::Post && regressed {
                entry.note = Some("discarded: the tests regressed on the tree it simulated".into());
                continue;
            }
            sims::publish(&scratch.join(which.as_str()), &dest)?;
            entry.published = true;
        }
        if self.log.sims.post.as_ref().is_some_and(|p| p.published) {
            self.check_convergence(&dest);
        }
        Ok(())
    }

    /// `sims.stopWhen`: a command run in the published folder; exit 0 means converged.
    fn check_convergence(&mut self, dest: &Path) {
        let Some(cmd) = self
            .env
            .mission
            .sims
            .as_ref()
            .and_then(|s| s.stop_when.as_ref())
        else {
            return;
        };
        let log = self.env.layout.logs(self.round).join("stop-when.log");
        let f = process::run(&Spec {
            label: "sims.stopWhen".into(),
            argv: cmd
                .argv()
                .into_iter()
                .map(|a| a.replace("{round}", &self.round.to_string()))
                .collect(),
            cwd: dest.to_path_buf(),
            env: vec![
                ("ORCH_ROUND".into(), self.round.to_string()),
                ("ORCH_SIM_DATA".into(), dest.display().to_string()),
            ],
            stdin: None,
            stdout: log.clone(),
            stderr: log,
            timeout: Duration::from_secs(300),
            grace: self.env.mission.grace(),
            launched: false,
            env_clear: false,
        });
        if f.ending.success() {
            self.converged = true;
            self.note("converged: sims.stopWhen exited 0 on the published post-sim output");
        }
    }

    fn commit(&mut self, what: &str) -> Result<()> {
        if !self.env.mission.git.commit {
            return Ok(());
        }
        let msg = self.commit_message(what);
        self.set_aside_oversized(self.env.git, &format!("round-{}", self.round));
        // Worktree merges moved HEAD along the round; the round lands as one commit on the base.
        let base = self.journal.base.clone();
        let merged = self.env.git.head_fast().as_deref() != Some(base.as_str());
        if merged {
            self.env.git.run(&["reset", "-q", "--soft", &base])?;
        }
        // The commit the review agents beside the tests were shown, when this is it.
        let shown = self
            .beside
            .as_ref()
            .filter(|b| b.shown.1 == msg)
            .map(|b| b.shown.0.clone());
        let made = match shown {
            Some(c) if self.env.git.land_made(&c, &base)? => Some(c),
            _ if merged => self.env.git.commit_changes(&msg)?,
            _ => self.env.git.commit_all(&msg)?,
        };
        if let Some(c) = made {
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

    /// The message of the round's commit of `what` (`code: a, b`, `review: r`, `sim data`).
    fn commit_message(&self, what: &str) -> String {
        format!(
            "orch: round {} {what}\n\nmission: {}",
            self.round, self.env.mission.name
        )
    }

    /// A phase's commit is named for the agents whose changed files it holds (`code: a, b`),
    /// or `otherwise` when none did. A code agent's change is in it only if its run was ok (or
    /// failed with its change tested anyway) and not taken out; a review agent's, whatever its status (review agents share the tree).
    fn commit_label(&self, phase: Phase, rejected: &[String], otherwise: &str) -> String {
        let names: Vec<&str> = self
            .log
            .agents
            .iter()
            .filter(|e| e.phase == phase && e.changed_files > 0)
            .filter(|e| {
                e.status == RunStatus::Ok
                    || e.change_tested
                    || (phase == Phase::Review
                        && !matches!(e.status, RunStatus::Conflict | RunStatus::Failed))
            })
            .filter(|e| e.aside.is_none())
            .filter(|e| !rejected.contains(&e.name))
            .map(|e| e.name.as_str())
            .collect();
        if names.is_empty() {
            otherwise.to_string()
        } else {
            format!("{}: {}", phase.as_str(), names.join(", "))
        }
    }

    /// After a commit the base to return to on a crash is the new HEAD: tested, committed work
    /// is not undone by an interrupt in a later stage.
    fn set_journal_base(&mut self, commit: &str) {
        self.journal.base = commit.to_string();
        if let Err(e) = self.journal.save(self.env.layout) {
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
        if let Some(b) = self.beside.take() {
            // The review agents' worktree beside the tests: kept whole before anything else.
            let r = self
                .env
                .kept_ref(&format!("{kind}-review"), self.round, None);
            let msg = format!(
                "orch: round {} {kind}; Phase B's worktree as it was",
                self.round
            );
            let kept = match b.git.save_tree(&b.base, &r, &msg) {
                Ok(_) => {
                    self.note(&format!(
                        "Phase B's worktree (beside the tests) is kept in {r}"
                    ));
                    Some(r)
                }
                Err(e) => {
                    log::warn!("Phase B's worktree could not be kept in {r}: {e}");
                    None
                }
            };
            self.set_review_aside(kept, kind);
            clean_phase_b_worktree(&b.git, &b.base);
        }
        let base = self.journal.base.clone();
        let moved = self.env.git.head()?.as_deref() != Some(base.as_str());
        if !moved && self.env.git.changed_since(&base)?.is_empty() {
            return Ok(());
        }
        let kept = self.env.kept_ref(kind, self.round, None);
        self.env.git.save_tree(
            &base,
            &kept,
            &format!("orch: round {} {kind}; the tree as it was", self.round),
        )?;
        self.env.git.restore(&base)?;
        self.log.kept_ref = Some(kept);
        Ok(())
    }

    /// A round abandoned (`kind`: interrupted) while review agents ran beside its tests: the
    /// work of those that ended did not land, and is in Phase B's worktree ref (`kept`). Their
    /// entries say so, as after a revert; a session that would remember that work is dropped.
    fn set_review_aside(&mut self, kept: Option<String>, kind: &str) {
        let reason =
            format!("ran beside the tests, and the round was {kind}: its work is not merged");
        for name in self.mark_review_aside(&|_| kept.clone(), &reason) {
            if self.env.mission.agent(&name).is_some_and(|a| a.session) {
                let why = format!(
                    "its change from round {} (beside the tests) did not land: the round was {kind}",
                    self.round
                );
                sessions::forget(self.state.agent_mut(&name), why);
            }
        }
    }

    /// Review work that did not land: each review entry not marked yet gets `aside` (its ref,
    /// `kept(agent)`, and `reason`), and one whose first agentEnd (when its process ended,
    /// beside the tests) said ok gets a second (`amended: true`) saying its change did not
    /// land, as after a conflict. Returns the agents marked.
    fn mark_review_aside(
        &mut self,
        kept: &dyn Fn(&str) -> Option<String>,
        reason: &str,
    ) -> Vec<String> {
        let mut names = Vec::new();
        let mut amended = Vec::new();
        for e in self
            .log
            .agents
            .iter_mut()
            .filter(|e| e.phase == Phase::Review && e.aside.is_none())
        {
            e.aside = Some(Aside {
                kept_ref: kept(&e.name),
                reason: reason.to_string(),
            });
            names.push(e.name.clone());
            if e.status == RunStatus::Ok {
                amended.push(agent_end(self.round, e, true));
            }
        }
        for event in amended {
            self.env.events.emit(event);
        }
        names
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
