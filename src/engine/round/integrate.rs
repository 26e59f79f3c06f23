//! Where a settled run's change goes: checked against the agent's `owns` globs, merged from
//! its worktree into the main tree (a conflict or a failed merge kept in a ref), or, in the
//! shared tree, a failed run's files kept aside or taken out once the phase is over; what a
//! worktree held is kept under `refs/orch/<kind>/round-N/AGENT` whenever it is not merged.
//! The dispatcher (`dispatch.rs`) calls it as each run is settled.

use std::path::Path;
use std::sync::Mutex;

use crate::engine::exec::process::Ending;
use crate::engine::git::Merge;
use crate::error::Result;
use crate::mission::{Agent, FailedChanges};
use crate::roundlog::{AgentEntry, Phase, RunStatus};

use super::agent::SharedTree;
use super::results::{tested_anyway, RawRun};
use super::state::{Round, SharedFailure};

impl<'e> Round<'e, '_> {
    /// Changes outside the agent's `owns` globs: reported, and with `enforceOwnership` kept
    /// under `refs/orch/ownership/round-N/AGENT` and taken out (before the merge, in a
    /// worktree; from the shared tree by the agent's own fingerprint).
    pub(super) fn check_ownership(
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
    pub(super) fn integrate(
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
                                self.ledger
                                    .limited
                                    .get(&entry.name)
                                    .map_or(0, |l| l.runs.len())
                                    + 1
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
    pub(super) fn merge_change(
        &mut self,
        commit: &str,
        msg: &str,
        entry: &mut AgentEntry,
    ) -> Result<bool> {
        let keep = |kind: &str| self.env.kept_ref(kind, self.round, Some(&entry.name));
        match self.env.git.merge(commit, msg)? {
            Merge::Merged => {
                self.dispatched
                    .merged
                    .push((entry.name.clone(), commit.to_string()));
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
    pub(super) fn tests_failed_change(&self, raw: &RawRun, entry: &AgentEntry) -> bool {
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
    pub(super) fn keep_failed_shared_run(
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
            self.dispatched.shared_failures.push(SharedFailure {
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
    pub(super) fn take_out_shared(
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
    pub(super) fn settle_shared_failures(&mut self, shared: &Mutex<SharedTree>) {
        for f in std::mem::take(&mut self.dispatched.shared_failures) {
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

    /// Keeps what is in a worktree (its files and any commits of the agent's) under
    /// `refs/orch/<kind>/round-N/AGENT`; the text to append to the run's error.
    pub(super) fn keep_worktree(&self, wt: &Path, base: &str, kind: &str, agent: &str) -> String {
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
}
