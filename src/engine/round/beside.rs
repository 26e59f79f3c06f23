//! Phase B beside the tests (`phaseB: "besideTests"`): orch's worktree of Phase A's tree, the
//! review agents there while the tests run, the chain of their changes, and what becomes of it:
//! landed after the code commit, or kept in refs after a revert, untested tests or an interrupt.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::engine::exec::process::{self};
use crate::engine::git::Git;
use crate::engine::sims::{self, Which};
use crate::engine::store::sessions;
use crate::engine::store::state::AgentState;
use crate::error::Result;
use crate::events::Event;
use crate::mission::{Agent, PhaseB};
use crate::roundlog::{AgentEntry, Aside, Phase, RunStatus, StepStatus};

use super::agent::SharedTree;
use super::env::inbox_path;
use super::job::Planned;
use super::results::agent_end;
use super::state::{Beside, Link, Round};
use super::{agent, results};

impl<'e> Round<'e, '_> {
    /// The tree the phase's agents share: orch's Phase B worktree while the review agents run
    /// beside the tests, else the main tree.
    pub(super) fn phase_git(&self) -> &Git {
        self.beside.as_ref().map_or(self.env.git, |b| &b.git)
    }

    /// Whether Phase B runs beside the tests this round (`phaseB: "besideTests"`, review agents
    /// planned, a tests stage to run beside, nothing that would skip Phase B anyway).
    pub(super) fn beside_tests(&mut self, review: &[&Planned<'e>]) -> bool {
        let m = self.env.mission;
        let post = m.sims.as_ref().is_some_and(|s| s.post.is_some());
        if m.phase_b != PhaseB::BesideTests || review.is_empty() || !(m.tests.is_some() || post) {
            return false;
        }
        if self.ledger.budget_reached || self.ledger.stopping() || process::interrupted() {
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
    pub(super) fn run_beside(
        &mut self,
        base: &str,
        tested: &str,
        review: &[&Planned<'e>],
    ) -> Result<()> {
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
    pub(super) fn beside_link(
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
    pub(super) fn review_chain(&self, b: &Beside) -> Result<Vec<Link>> {
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
    pub(super) fn keep_beside_unsorted(&mut self) {
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
    pub(super) fn land_review(&mut self, mut b: Beside) -> Result<()> {
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
    pub(super) fn keep_review_aside(&mut self, mut b: Beside, why: &str, rerun: bool) {
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
    pub(super) fn fold_beside_runs(&mut self, earlier: Vec<AgentEntry>) {
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

    /// A round abandoned (`kind`: interrupted) while review agents ran beside its tests: the
    /// work of those that ended did not land, and is in Phase B's worktree ref (`kept`). Their
    /// entries say so, as after a revert; a session that would remember that work is dropped.
    pub(super) fn set_review_aside(&mut self, kept: Option<String>, kind: &str) {
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
    pub(super) fn mark_review_aside(
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
}

/// Phase B's worktree once its work is resolved (landed, or kept in its refs): put back at the
/// commit it was made from and cleaned, so that nothing in it reads as work still to do (the
/// next round resets it anyway; this is for the time between, and after the last round).
pub(super) fn clean_phase_b_worktree(git: &Git, base: &str) {
    if let Err(e) = git.restore(base) {
        log::warn!(
            "Phase B's worktree {} could not be cleaned: {e}",
            git.root().display()
        );
    }
}
