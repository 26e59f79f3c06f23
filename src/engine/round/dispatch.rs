//! The dispatcher of a phase: the pool run, each result settled as it arrives (completion
//! order, main thread): the ledger of spend, budget, stops and limit holds, the run landed
//! (through `integrate.rs`: merged from its worktree, or its failed files kept aside in the
//! shared tree), its tracking, its session and its record; held runs waited out and started
//! again.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::agents::{self, Failure};
use crate::engine::exec::limits::{self, Hold};
use crate::engine::exec::pool::{self, Done};
use crate::engine::exec::process::{self, Ending};
use crate::engine::store::sessions;
use crate::engine::store::state::{AgentState, LimitWait};
use crate::events::Event;
use crate::mission::Agent;
use crate::roundlog::{AgentEntry, Handoff, LimitedRun, Phase, RunStatus};
use crate::units;

use super::agent::{not_started, run_agent, SharedTree};
use super::env::handoff_path;
use super::job::Job;
use super::plan::{budget_left, over_budget};
use super::results;
use super::results::{agent_end, tested_anyway, RawRun, Settled};
use super::state::{Limited, Round};

impl<'e> Round<'e, '_> {
    /// Runs a phase's jobs in the pool; then, while some of them hit a provider's limit, waits
    /// until the first hold among theirs ends and runs them again (the others' holds may end
    /// meanwhile; an agent whose provider is still held is handed back at once). A wait beyond
    /// `limits.maxWaitS`, `--no-wait`, an interrupt, the budget or a permanent CLI error ends
    /// the retries: the limited runs keep their last entry.
    pub(super) fn run_phase(&mut self, jobs: Vec<Job<'e>>) {
        let env = self.env;
        let mut jobs = jobs;
        loop {
            let mut by_name: BTreeMap<String, Job> = jobs
                .iter()
                .map(|j| (j.agent.name.clone(), j.clone()))
                .collect();
            self.ledger.again.clear();
            self.run_pool(jobs);
            let names = std::mem::take(&mut self.ledger.again);
            let again: Vec<Job> = names
                .iter()
                .filter_map(|n| by_name.remove(n))
                .filter_map(|j| self.ready_again(j))
                .collect();
            if again.is_empty() {
                return;
            }
            if process::interrupted() || self.ledger.budget_reached || self.ledger.stopping() {
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
                self.ledger.limit_stop = Some(why);
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
    pub(super) fn ready_again(&mut self, mut j: Job<'e>) -> Option<Job<'e>> {
        if let Some(why) = over_budget(j.agent, self.state) {
            if let Some(Limited { last: e, .. }) = self.ledger.limited.get_mut(&j.agent.name) {
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
        j.budget_left = budget_left(j.agent, self.state);
        // A new session that hit a limit may exist already under its id: the run again
        // starts another (a resumed one is resumed again).
        if let Some(s) = j.session.as_mut().filter(|s| !s.resume) {
            s.id = sessions::new_id();
        }
        Some(j)
    }

    /// Milliseconds from the round's start to now.
    pub(super) fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Waits `wait` for `provider`'s hold to end, interruptibly, telling the sinks and the
    /// journal (for `orch status`) while it does.
    pub(super) fn wait_out(
        &mut self,
        provider: &str,
        hold: &Hold,
        waiting: &[String],
        wait: Duration,
    ) {
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
    pub(super) fn give_up(&mut self, jobs: Vec<Job<'_>>) {
        let env = self.env;
        for job in jobs {
            let name = job.agent.name.clone();
            match self.ledger.limited.remove(&name) {
                Some(Limited {
                    mut runs,
                    last: mut entry,
                }) => {
                    runs.pop();
                    entry.limited_runs = runs;
                    if let Some(since) = self.ledger.held_since.remove(&name) {
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
    pub(super) fn count_against_budget(
        &mut self,
        agent: &Agent,
        raw: &RawRun,
        e: &AgentEntry,
        before: f64,
    ) {
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
    pub(super) fn run_pool(&mut self, jobs: Vec<Job<'e>>) {
        let env = self.env;
        let (round, t0) = (self.round, self.t0);
        let base = jobs.first().map_or_else(String::new, |j| j.base.clone());
        let shared = Mutex::new(SharedTree::new(self.phase_git(), &base));
        let by_name: BTreeMap<String, Job> = jobs
            .iter()
            .map(|j| (j.agent.name.clone(), j.clone()))
            .collect();
        self.take_git_settings();
        self.dispatched.unsettled = by_name.keys().cloned().collect();
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
                        self.ledger.again.push(job.agent.name.clone());
                        return;
                    }
                };
                let before = self.ledger.again.len();
                self.settle(raw, Some(control), &shared);
                if control.stopped() || process::interrupted() || self.ledger.stopping() {
                    return;
                }
                for name in self.ledger.again.split_off(before) {
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
    pub(super) fn settle(
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
            self.ledger
                .held_since
                .entry(raw.agent.clone())
                .or_insert(now);
            self.ledger.again.push(raw.agent.clone());
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
        self.dispatched.unsettled.remove(&agent.name);
        let beside: Vec<String> = self.dispatched.unsettled.iter().cloned().collect();
        self.guard_git_settings(agent, &mut settled.entry, &beside);
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
            if self.ledger.budget_reached || self.ledger.cli_stop.is_some() {
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
        if let Some(Limited { runs, .. }) = self.ledger.limited.remove(&entry.name) {
            entry.limited_runs = runs;
        }
        if let Some(since) = self.ledger.held_since.remove(&entry.name) {
            entry.held_ms = entry.start_ms.saturating_sub(since);
        }
        self.record(entry, escalated);
    }

    /// A program that could not start is a broken setup, not a bad change (it went missing
    /// after the start-up check, or hides behind shell syntax): said where a person looks.
    pub(super) fn note_spawn_failure(&mut self, agent: &Agent, raw: &RawRun) {
        if let Ending::SpawnFailed(why) = &raw.finished.ending {
            let msg = format!("agent {} could not start: {why}", agent.name);
            self.env.events.emit(Event::Warning {
                round: Some(self.round),
                message: msg.clone(),
            });
            self.note(&msg);
            self.ledger.could_not_start.push(agent.name.clone());
        }
    }

    /// Why the main tree's HEAD or branch moved under this run, when it did. Worktree
    /// isolation: the main tree is orch's alone during Phase A, so a HEAD or branch that moved
    /// there was moved by an agent (through an absolute path): the one that just ended is the
    /// first to answer for it. Beside the tests a review agent works in orch's worktree; the
    /// main tree, where the tests run, must be as the phase found it.
    pub(super) fn main_tree_moved(
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
    pub(super) fn count_spend(
        &mut self,
        agent: &Agent,
        settled: &Settled,
    ) -> Option<(Failure, Hold)> {
        let env = self.env;
        self.log.cost_usd += settled.entry.cost_usd;
        self.state.total_cost_usd += settled.entry.cost_usd;
        if let Some(b) = env.budget {
            if !self.ledger.budget_reached && self.state.total_cost_usd >= b {
                self.ledger.budget_reached = true;
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
        if let (Some(f), None) = (permanent, &self.ledger.cli_stop) {
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
            self.ledger.cli_stop = Some(why);
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
    pub(super) fn land_run(
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
    pub(super) fn emit_run_end(&self, agent: &Agent, settled: &Settled) {
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
    pub(super) fn hold_for_limit(&mut self, agent: &Agent, e: AgentEntry, f: Failure, hold: &Hold) {
        log::info!(
            "agent {}: {} ({}); {} is held until {}",
            agent.name,
            f.cause.as_str(),
            f.error,
            agents::provider_of(agent),
            hold.until
        );
        let slot = self
            .ledger
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
        self.ledger
            .held_since
            .entry(agent.name.clone())
            .or_insert(end);
        self.ledger.again.push(agent.name.clone());
    }

    /// After a run with a session: kept for the next run when its change went in whole (or it
    /// had none), dropped otherwise. A run that never started leaves the session as it was.
    pub(super) fn carry_session(
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

    /// An agent's final entry for the round: its decision's outcome, and the log.
    pub(super) fn record(&mut self, entry: AgentEntry, escalated: bool) {
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
    pub(super) fn read_handoff(&mut self, agent: &Agent) -> Option<Handoff> {
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
}

/// What `settle` knows of a run before it lands it: whether its change may go to the tests
/// though it failed (the main tree was not moved under it), its status as its process ended,
/// and the agent's tracking state and spend before the run.
pub(super) struct Landing {
    pub(super) to_test: bool,
    pub(super) first_status: RunStatus,
    pub(super) before: (AgentState, f64),
}
