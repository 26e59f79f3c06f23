//! Landing the round as its verdict says: the code agents' sessions and tasks settled, the sims
//! published, the round's commits made, a round abandoned (interrupted, failed) kept in refs with
//! its base restored, and the round's status.

use std::path::Path;
use std::time::Duration;

use crate::engine::exec::process::{self, Spec};
use crate::engine::git::Git;
use crate::engine::sims::{self, Which};
use crate::engine::store::sessions;
use crate::engine::store::tasks::TaskStatus;
use crate::error::Result;
use crate::events::Event;
use crate::roundlog::{Phase, RoundStatus, RunStatus, StepStatus, Strategy};
use crate::units;

use super::beside::clean_phase_b_worktree;
use super::env::inbox_path;
use super::state::Round;
use super::verdict::Verdict;

impl<'e> Round<'e, '_> {
    /// The code agents' work lands as the verdict says: the sessions and tasks of the agents
    /// whose work was taken out settled, the sims published (the post-sim's not after a
    /// regression), the round's code commit made, and the test baseline pointed at it.
    pub(super) fn land_code(&mut self, verdict: &Verdict) -> Result<()> {
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

    /// The round's status from its verdict (`reverted` after a whole-round revert, `failed`
    /// when nothing could be tested or no code agent could start), and whether anything landed.
    pub(super) fn close(&mut self, verdict: &Verdict) {
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
        let code_unstartable = self.ledger.could_not_start.iter().any(|n| {
            self.env
                .mission
                .agent(n)
                .is_some_and(|a| a.phase == Phase::Code)
        });
        if code_unstartable && !code_ran_ok && self.log.status == RoundStatus::Ok {
            self.log.status = RoundStatus::Failed;
            let why = format!(
                "round failed: no code agent could start ({})",
                self.ledger.could_not_start.join(", ")
            );
            self.note(&why);
        }
        self.check_nothing_landed();
    }

    /// An `ok` round whose agents all ran to no avail (failed, timed out, conflicted, changed
    /// nothing, or had their change taken out by the tests) says so: `nothingLanded`, a note
    /// naming how each run ended, the console's round line and `orch status`.
    pub(super) fn check_nothing_landed(&mut self) {
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

    /// Code agents whose work was taken out after the tests: their sessions remember a change
    /// that is not on the branch, so each is dropped.
    pub(super) fn drop_sessions(&mut self, rejected: &[String], untested: bool) {
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

    /// Tasks of the phase's agents: done when the run was ok (and kept), back to pending
    /// otherwise.
    pub(super) fn settle_tasks(&mut self, phase: Phase, rejected: &[String]) {
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
                    self.split(id, status, error.as_deref());
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
    pub(super) fn should_split(&self, id: &str, status: RunStatus) -> bool {
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
    /// `error` is the run's: a run stopped as stuck (issue 31) says what was seen instead of
    /// "timed out".
    pub(super) fn split(&mut self, id: &str, status: RunStatus, error: Option<&str>) {
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
        // The error's first clause: "no output or file change for 5m00s", without where its
        // work is kept.
        let seen = error
            .and_then(|e| e.split(';').next())
            .filter(|e| !e.starts_with("timed out"));
        let why = match (status, seen) {
            (RunStatus::Timeout, Some(seen)) => format!("was stopped as stuck ({seen})"),
            (RunStatus::Timeout, None) => "timed out".to_string(),
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
    pub(super) fn take_inboxes(&mut self, agents: &[String]) {
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
    pub(super) fn publish(&mut self, regressed: bool) -> Result<()> {
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
    pub(super) fn check_convergence(&mut self, dest: &Path) {
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

    pub(super) fn commit(&mut self, what: &str) -> Result<()> {
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
    pub(super) fn commit_message(&self, what: &str) -> String {
        format!(
            "orch: round {} {what}\n\nmission: {}",
            self.round, self.env.mission.name
        )
    }

    /// A phase's commit is named for the agents whose changed files it holds (`code: a, b`),
    /// or `otherwise` when none did. A code agent's change is in it only if its run was ok (or
    /// failed with its change tested anyway) and not taken out; a review agent's, whatever its status (review agents share the tree).
    pub(super) fn commit_label(
        &self,
        phase: Phase,
        rejected: &[String],
        otherwise: &str,
    ) -> String {
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
    pub(super) fn set_journal_base(&mut self, commit: &str) {
        self.journal.base = commit.to_string();
        if let Err(e) = self.journal.save(self.env.layout) {
            log::warn!("cannot update the journal: {e}");
        }
    }

    /// Interrupted: keep what the agents wrote in a ref, restore the stage's base.
    pub(super) fn interrupted(&mut self) -> Result<()> {
        self.log.status = RoundStatus::Interrupted;
        self.log.stop_reason = Some("interrupted by a signal".into());
        self.abandon("interrupted")
    }

    /// Saves uncommitted work under `refs/orch/<kind>/round-N` and restores the last base.
    pub(super) fn abandon(&mut self, kind: &str) -> Result<()> {
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

    /// Files over `git.maxFileBytes` in `git`'s tree are kept under `refs/orch/too-big/WHAT`
    /// and taken out, with a warning naming them: never committed, never lost.
    pub(super) fn set_aside_oversized(&mut self, git: &Git, what: &str) {
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
}
