//! The round's record: its log, timing and the run's tracking state written when it ends
//! (`finish`, whatever happened before), and an earlier run of the same round (an interrupted
//! one, resumed) kept aside under `.prev-K` names so that this run does not write over it.

use super::env::Env;
use super::state::{Dispatched, Ledger};
use crate::engine::exec::process;
use crate::engine::store::inputs::{RoundInputs, INPUTS_VERSION};
use crate::engine::store::state::{Journal, State};
use crate::engine::store::tasks::Queue;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::engine::store::state::{write_json, Layout};
use crate::error::{IoContext, Result};
use crate::events::Event;
use crate::roundlog::{RoundLog, RoundStatus, StepStatus, Strategy};
use crate::units;

use super::state::Round;

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

impl<'e, 's> Round<'e, 's> {
    /// The round begins on the tree's HEAD: its journal written (what a crash leaves for the
    /// next orch), an earlier run of the same round kept aside, and its inputs taken for a
    /// replay.
    pub(super) fn start(
        env: &'e Env<'e>,
        state: &'s mut State,
        queue: &'s mut Queue,
        round: u32,
    ) -> Result<Round<'e, 's>> {
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
        Ok(Round {
            env,
            state,
            queue,
            round,
            t0,
            journal,
            inputs,
            prev,
            log: RoundLog::new(round, env.mission.name.clone(), base.clone(), started_at),
            committed: false,
            sections: BTreeMap::new(),
            converged: false,
            breaker: false,
            ledger: Ledger::default(),
            dispatched: Dispatched::default(),
            beside: None,
        })
    }
}

impl<'e> Round<'e, '_> {
    /// Timing, the round log, the state. Always runs, whatever happened before.
    pub(super) fn finish(&mut self) -> Result<Outcome> {
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
        self.count_test_failures();
        self.count_stall();
        self.state.limits = env.limits.snapshot();
        // A run that stops for a provider's limit or a bad key leaves the round unfinished
        // (its limited agents did not get their run, Phase B was skipped): the next `orch run`
        // runs it again, from what this one committed.
        if self.ledger.stopping() {
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
            budget_reached: self.ledger.budget_reached,
            interrupted: self.log.status == RoundStatus::Interrupted && !self.ledger.stopping(),
            committed: self.committed,
            converged: self.converged,
            breaker: self.breaker,
            cli_stop: self.ledger.cli_stop.clone(),
            limit_stop: self.ledger.limit_stop.clone(),
        })
    }

    /// The circuit breaker counts rounds in a row that failed the tests for good: the tree
    /// they committed fails (a red base, no revert), or the whole round was reverted. A round
    /// whose per-agent revert took the bad change out committed a tree that passes: healthy,
    /// though its first test run failed (that count is kept too, for `orch status`). Tests
    /// that could not start count as neither: they tested nothing. Nor do the tests of a round
    /// interrupted before it committed (during its culprit search): the next `orch run` runs it
    /// again from the same base, and counts those.
    fn count_test_failures(&mut self) {
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
                    let limit = self.env.mission.stop.after_test_failures;
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
    }

    /// The stall guard counts rounds that committed nothing, skipped ones included, but not a
    /// round that a provider's limit kept from working.
    fn count_stall(&mut self) {
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
    }
}

/// A round that runs again (an interrupted one, resumed): its earlier log is kept, renamed to
/// `round-NNNN.prev-K.json`, its paths into the logs and prompts folders pointing where
/// `keep_earlier_run` moved them.
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

/// A round that runs again (an interrupted one, resumed) keeps what its earlier run wrote
/// under the K its earlier log gets when this run ends (`keep_earlier_log`): the inputs as
/// `round-NNNN.prev-K.inputs.json`, the agents', tests' and sims' logs in
/// `logs/round-NNNN.prev-K/`, the prompts in `prompts/round-NNNN.prev-K/`. Without it this
/// run would write over them, and the interrupted run's output, the thing to look at, would
/// be gone. Returns K.
pub(super) fn keep_earlier_run(layout: &Layout, round: u32) -> Result<u32> {
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
