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
//! The stages live beside this file, one concern a file, each an `impl Round` block or free
//! functions over the types below them: `plan` (who runs and how: gates, jobs, pool order,
//! prompts, the inputs kept for a replay), `dispatch` (a phase's pool and each result settled
//! as it arrives: the ledger of spend, budget, stops and holds), `integrate` (where a settled
//! run's change goes: ownership checked, merged, or kept aside in a ref), `agent` (the executor: one agent run on a worker and what it changed), `verify` (the tests
//! and the verdict), `revert` (a regression: find the culprits or revert the round),
//! `culprits` (the culprit search's decisions, without git), `beside` (Phase B beside the
//! tests and what becomes of its work), `land` (commits, sims published, tasks and sessions
//! settled, a round abandoned into refs), `results` (what one run's output says) and `record`
//! (the round log and the state written at the end). Below them all, read by every stage and
//! reading none: `env` (where the round runs), `job` (what one run is given), `state` (the
//! round's state in its owned parts) and `verdict`. No file imports this one: the stages'
//! imports go one way, which `scripts/code-shape --check-cycles` holds.

use std::time::Instant;

use crate::engine::exec::process;
use crate::engine::sims::{SimRun, Which};
use crate::engine::store::state::{Journal, State};
use crate::engine::store::tasks::Queue;
use crate::error::{IoContext, Result};
use crate::events::Event;
use crate::roundlog::{AgentEntry, Choice, Phase, RoundStatus};

mod agent;
mod beside;
mod culprits;
mod dispatch;
mod env;
mod guard;
mod integrate;
mod job;
mod land;
mod plan;
mod record;
pub mod results;
mod revert;
mod state;
mod verdict;
mod verify;

use beside::clean_phase_b_worktree;
pub use env::{Env, Replaying, LIVE_REFS};
use job::{names, Planned};
pub use plan::{
    adaptive_timeout, budget_left, gate, hand_over_budget_tasks, job_plan, over_budget, queue_key,
    render_prompt, timeout_for, waiting_on_budget, Gate, JobPlan, QueueKey,
};
pub use record::Outcome;
use state::Round;
use verdict::Verdict;

/// Runs round `round`. The tree must be clean (the caller checks, unless `--allow-dirty`).
pub fn run(env: &Env, state: &mut State, queue: &mut Queue, round: u32) -> Result<Outcome> {
    let mut r = Round::start(env, state, queue, round)?;
    let base = r.log.base.clone();
    {
        // The journal keeps the live process groups, for a later orch to reap after a crash.
        // Called one at a time, in order (under the process registry's lock).
        let layout = env.layout.clone();
        process::set_observer(Some(Box::new(move |groups: &[i32]| {
            if let Err(e) = Journal::save_groups(&layout, groups) {
                log::warn!("cannot update the journal: {e}");
            }
        })));
    }
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
        } else if self.ledger.budget_reached {
            Some(("the budget is reached", "the budget is reached"))
        } else if self.ledger.stopping() {
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
}
