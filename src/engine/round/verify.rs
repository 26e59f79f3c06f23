//! Verification: the tests, the post-sim and Phase B beside them, and the verdict on what the
//! tests said (`Verdict`): passed, regressed (the culprits taken out by
//! `revert`), untested, interrupted. What the tests wrote in the tree is put back.

use std::time::Instant;

use crate::engine::exec::process::{self};
use crate::engine::sims::Which;
use crate::engine::store::state::TestBaseline;
use crate::engine::testing::{self};
use crate::error::Result;
use crate::events::Event;
use crate::roundlog::{Phase, RoundStatus, SimEntry, StepStatus, Strategy, TestsEntry};

use super::env::run_tests;
use super::job::Planned;
use super::revert::Early;
use super::state::Round;
use super::verdict::{tests_end, Verdict};

impl<'e> Round<'e, '_> {
    /// Verification, only when Phase A changed the tree: the tests and the post-sim (and Phase
    /// B with `phaseB: "besideTests"`), then the verdict on what the tests said. One snapshot
    /// of the tree (tracked and untracked files, the state folder left out) tells both what
    /// changed since the base and, should the tests run, what they were given: two git
    /// processes fewer than asking git for the changes and then taking the snapshot.
    /// `--no-renames`: a renamed file names both its paths, as the deleted and the untracked
    /// file did.
    pub(super) fn verify(&mut self, base: &str, review: &[&Planned<'e>]) -> Result<Verdict> {
        let tested = self.env.git.tree_of_files(base)?;
        let changed = self.env.git.files_between(base, &tested)?;
        if changed.is_empty() {
            return Ok(Verdict::Unchanged);
        }
        let beside = self.beside_tests(review);
        let merged = self.dispatched.merged.clone();
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
    pub(super) fn run_verification<'m>(
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
    pub(super) fn record_verification(
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
    pub(super) fn judge(
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
            self.env
                .events
                .emit(tests_end(self.round, &tests, tests.regression));
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

    /// What the test command (or the post-sim beside it) wrote in the tree is put back as it
    /// was before them, with a note naming the files: it was not tested, and is nobody's change.
    pub(super) fn discard_test_writes(&mut self, base: &str, tested: &str) -> Result<()> {
        let undone = self.env.git.put_files_back(base, tested)?;
        self.note_test_writes(undone);
        Ok(())
    }

    /// The note naming the files the tests wrote and that were put back.
    pub(super) fn note_test_writes(&mut self, undone: Vec<String>) {
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

    /// The test command could not start (exit 126/127, or no such program): the round's change
    /// is kept under `refs/orch/untested/round-N`, the tree goes back to the base, and the run
    /// stops, since every later round would fail the same way after its agents had spent.
    /// Nothing is counted against the agents (no revert, no test failure, no breaker count).
    /// Returns the code agents whose work was set aside.
    pub(super) fn set_aside_untested(&mut self, base: &str, why: &str) -> Result<Vec<String>> {
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
}

/// What the verification stage ran: the tests' result (none without a test command) and when
/// they ended, the post-sim, what the tests wrote put back (on the tests' thread, beside Phase
/// B), why Phase B could not run beside them, and a culprit search begun beside Phase B.
pub(super) struct Verification<'m> {
    pub(super) started: Instant,
    pub(super) start_ms: u64,
    pub(super) tests: Option<TestsEntry>,
    pub(super) done_ms: u64,
    pub(super) post: Option<SimEntry>,
    pub(super) put_back: Option<Result<Vec<String>>>,
    pub(super) beside_failed: Option<crate::error::Error>,
    pub(super) early: Option<Early<'m>>,
}
