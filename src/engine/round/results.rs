//! The bookkeeping after every agent run (the seed's `processAgentResult()`), done once per
//! result on the main thread as it arrives from the pool: the run's status (ok, empty, failed,
//! timeout, cancelled) and, for a failed one, its cause and the CLI's words (asked of the agent's
//! CLI adapter, `agents::for_agent`: this module never reads CLI text itself), its cost, and the
//! agent's tracking state (streaks, recent run times, model escalation) carried across rounds.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::agents::cost::{self, Pricing};
use crate::agents::{self, Failure, Output};
use crate::engine::exec::process::{Ending, Finished};
use crate::engine::store::state::{AgentState, RECENT_RUNS};
use crate::events::Event;
use crate::mission::Agent;
use crate::roundlog::{AgentEntry, Cause, Phase, RunStatus};

/// How much of the end of an agent's stdout the cost parser reads: result objects come last.
const STDOUT_TAIL: u64 = 4 * 1024 * 1024;
/// How much of `ORCH_RESULT_FILE` is read.
const RESULT_FILE_MAX: u64 = 1024 * 1024;
/// How much of the end of an agent's stderr its adapter reads (error objects, last words).
const STDERR_TAIL: u64 = 256 * 1024;

/// What a worker hands back for one agent run.
#[derive(Debug)]
pub struct RawRun {
    pub agent: String,
    pub phase: Phase,
    pub model: String,
    pub task: Option<String>,
    pub timeout_ms: u64,
    pub start_ms: u64,
    pub finished: Finished,
    /// Files this run changed.
    pub changed: Vec<String>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub log_rel: String,
    pub result_file: PathBuf,
    /// Whether the agent filed tasks through its inbox (review agents' work counts).
    pub filed_tasks: bool,
    /// Not started because its provider is held off by a limit: it runs once the hold ends.
    pub deferred: bool,
    /// The worktree it ran in (worktree isolation), made from `base`.
    pub worktree: Option<PathBuf>,
    pub base: String,
    /// Why git's checks after the run reject it whatever its exit said (it moved HEAD or the
    /// branch, ...), naming the ref its work is kept in: the run is `failed` with this reason.
    pub rejected: Option<String>,
    /// Worktree isolation: the commit of its change, made in its worktree on the worker thread
    /// (`Ok(None)`: not made there, the main thread commits), or why committing failed.
    pub commit: std::result::Result<Option<String>, String>,
    /// What was kept aside from its change and why (a repository it made, its edits inside a
    /// submodule), each naming the ref that keeps it.
    pub kept_aside: Vec<String>,
    /// The CLI session it started or resumed (`session: true`).
    pub session: Option<crate::engine::store::sessions::Plan>,
    /// In a shared tree: the other agents that worked there at some moment of its run (any of
    /// them may have written a file in `changed`).
    pub shared_with: Vec<String>,
    /// Under a sandbox: the `host:port`s it was refused.
    pub sandbox_refused: Vec<String>,
}

/// An agent's model changed after a run (`escalateAfter`, `deescalateAfter`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChange {
    pub from: String,
    pub to: String,
    /// Why: the streak that moved it.
    pub why: String,
}

/// The outcome of settling one run.
#[derive(Debug)]
pub struct Settled {
    pub entry: AgentEntry,
    /// When the agent's model changed.
    pub model_change: Option<ModelChange>,
    /// Why the run failed, with what the CLI said about waiting (reset time, retry-after): the
    /// round engine waits on a transient cause and stops on a permanent one.
    pub failure: Option<Failure>,
    /// The session id the CLI reported.
    pub session_id: Option<String>,
}

pub fn settle(
    raw: &RawRun,
    agent: &Agent,
    st: &mut AgentState,
    pricing: &Pricing,
    round: u32,
) -> Settled {
    // An agent writes this file: read a bounded amount, so garbage cannot flood orch's memory
    // (a result is a small JSON object; a cut-off one simply does not parse).
    let result_text = read_head(&raw.result_file, RESULT_FILE_MAX);
    let ran = !matches!(
        raw.finished.ending,
        Ending::SpawnFailed(_) | Ending::Cancelled
    );
    let reading = if ran {
        let stdout = read_tail(&raw.stdout, STDOUT_TAIL);
        let stderr = read_tail(&raw.stderr, STDERR_TAIL);
        agents::for_agent(agent).read(&Output {
            stdout: &stdout,
            stderr: &stderr,
            exit_code: raw.finished.ending.exit_code(),
        })
    } else {
        None
    };
    let mut cost = cost::assess(result_text.as_deref(), reading, &raw.model, pricing);
    // Stopped before its CLI printed its bill: what its stream had cost so far (tokens at the
    // model's price, or the CLI's running total).
    if let (false, Ending::Stuck(s)) = (cost.known, &raw.finished.ending) {
        if let Some(usd) = s.cost_usd {
            cost.cost_usd = usd.0;
            cost.known = true;
            cost.source = cost::CostSource::Pricing;
        }
    }
    let changed = raw.changed.len() as u32;
    let wrote_result = result_text.is_some() || raw.filed_tasks;
    let (status, failure) = ending(raw, &cost, wrote_result);
    if !cost.permission_denials.is_empty() {
        log::warn!(
            "agent {}: its CLI denied {} (see permissionDenials in round {round}'s log; widen the permissions in its command)",
            agent.name,
            denial_list(&cost.permission_denials)
        );
    }
    let elapsed_ms = raw.finished.elapsed.as_millis() as u64;
    let cause = failure.as_ref().map(|f| f.cause);
    let model_change = track(st, agent, status, cause, elapsed_ms, cost.cost_usd, round);
    let entry = AgentEntry {
        model: raw.model.clone(),
        task: raw.task.clone(),
        exit_code: raw.finished.ending.exit_code(),
        start_ms: raw.start_ms,
        elapsed_ms,
        timeout_ms: raw.timeout_ms,
        cost_usd: cost.cost_usd,
        cost_known: cost.known,
        tokens: cost.tokens.clone(),
        changed_files: changed,
        files: raw
            .changed
            .iter()
            .take(crate::roundlog::MAX_FILES)
            .cloned()
            .collect(),
        log: raw.log_rel.clone(),
        error: failure.as_ref().map(|f| f.error.clone()),
        cause,
        resets_at: failure
            .as_ref()
            .and_then(|f| f.resets_at)
            .map(|t| t.to_string()),
        permission_denials: cost.permission_denials.clone(),
        summary: cost.summary.clone(),
        escalated_to: model_change.as_ref().map(|c| c.to.clone()),
        kept_aside: raw.kept_aside.clone(),
        sandbox_refused: raw.sandbox_refused.clone(),
        ..AgentEntry::new(raw.agent.clone(), raw.phase, status)
    };
    Settled {
        entry,
        model_change,
        failure,
        session_id: cost.session_id.clone(),
    }
}

/// How a run ended, from its process's ending and what its CLI said (`cost`): its status and,
/// for a failure, why. An exit 0 is `ok` only with work done (a code agent's changed files, a
/// review agent's files, result or tasks), else `empty`, or `failed` when the CLI reported an
/// error or denied the tools the run needed.
pub(super) fn ending(
    raw: &RawRun,
    cost: &cost::RunCost,
    wrote_result: bool,
) -> (RunStatus, Option<Failure>) {
    let changed = raw.changed.len() as u32;
    let words = |cause: Cause, text: String| Failure {
        cause,
        error: text,
        resets_at: None,
        retry_after: None,
    };
    match &raw.finished.ending {
        Ending::SpawnFailed(e) => (RunStatus::Failed, Some(words(Cause::Exit, e.clone()))),
        Ending::TimedOut => (
            RunStatus::Timeout,
            Some(words(
                Cause::Timeout,
                format!(
                    "timed out after {}",
                    crate::units::duration_ms(raw.timeout_ms)
                ),
            )),
        ),
        Ending::Cancelled => (RunStatus::Cancelled, None),
        // Stopped for what it did (issue 31): idle or looping as at a timeout (its work kept
        // in its ref, unproductive); over its budget as the CLI's own cap would have stopped it.
        Ending::Stuck(s) => (
            if s.cause == Cause::OverBudget {
                RunStatus::Failed
            } else {
                RunStatus::Timeout
            },
            Some(words(s.cause, s.words.clone())),
        ),
        Ending::Exited(0) if cost.failure.is_some() => {
            let mut f = cost
                .failure
                .clone()
                .unwrap_or_else(|| words(Cause::Exit, String::new()));
            if f.cause == Cause::Exit {
                // No known cause: say why an exit 0 counts as a failure.
                f.error = crate::agents::classify::one_line(&format!(
                    "the CLI reported an error (is_error) although it exited 0: {}",
                    f.error
                ));
            }
            (RunStatus::Failed, Some(f))
        }
        Ending::Exited(0) => {
            let worked = match raw.phase {
                Phase::Code => changed > 0,
                Phase::Review => changed > 0 || wrote_result,
            };
            if worked {
                (RunStatus::Ok, None)
            } else if !cost.permission_denials.is_empty() {
                // It changed nothing because it was not allowed to: a failure of the setup,
                // not an empty run.
                let list = denial_list(&cost.permission_denials);
                (
                    RunStatus::Failed,
                    Some(words(
                        Cause::PermissionDenied,
                        crate::agents::classify::one_line(&format!(
                            "the CLI denied {list} and the run changed nothing"
                        )),
                    )),
                )
            } else {
                (RunStatus::Empty, None)
            }
        }
        Ending::Exited(c) => (
            RunStatus::Failed,
            Some(
                cost.failure
                    .clone()
                    .unwrap_or_else(|| words(Cause::Exit, format!("exited with status {c}"))),
            ),
        ),
        Ending::Signalled(s) => (
            RunStatus::Failed,
            Some(words(Cause::Exit, format!("killed by signal {s}"))),
        ),
    }
}

/// "Bash(npm test), Write(/etc/x)".
pub(super) fn denial_list(denials: &[crate::roundlog::PermissionDenial]) -> String {
    denials
        .iter()
        .map(|d| match &d.command {
            Some(c) => format!("{}({c})", d.tool),
            None => d.tool.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A run counted again as what it ended as, not as what its exit said (its merge failed, or its
/// change conflicted after the tests): the agent's state goes back to `before`, the state from
/// before the run, except its handoff (the run's own), and the entry is tracked anew.
pub fn retrack(
    st: &mut AgentState,
    before: AgentState,
    agent: &Agent,
    e: &AgentEntry,
    round: u32,
) -> Option<ModelChange> {
    let handoff = st.handoff.take();
    *st = before;
    st.handoff = handoff;
    count(
        st,
        agent,
        RunOutcome {
            status: e.status,
            cause: e.cause,
            change_tested: e.change_tested,
        },
        e.elapsed_ms,
        e.cost_usd,
        round,
    )
}

/// Updates the agent's streaks and model; returns the model change, if any.
///
/// A run that failed for its provider's sake (a rate, usage or overload limit, which orch waits
/// out), for its setup's (a bad key or request, which stops the run) or at the spending cap orch
/// gave it (`budgetUsd`) says nothing about the agent or its model: it is counted and billed,
/// but moves no streak and escalates nothing (a dearer model would only spend faster).
pub fn track(
    st: &mut AgentState,
    agent: &Agent,
    status: RunStatus,
    cause: Option<Cause>,
    elapsed_ms: u64,
    cost_usd: f64,
    round: u32,
) -> Option<ModelChange> {
    count(
        st,
        agent,
        RunOutcome {
            status,
            cause,
            change_tested: false,
        },
        elapsed_ms,
        cost_usd,
        round,
    )
}

/// How a run ended, as the streaks count it.
pub(super) struct RunOutcome {
    pub(super) status: RunStatus,
    pub(super) cause: Option<Cause>,
    /// Its change went to the tests although the run failed (`failedChanges: "test"`).
    pub(super) change_tested: bool,
}

/// [`track`], for a run whose change may have gone to the tests although it failed
/// (`change_tested`): such a run did work that landed, so it ends the unproductive and empty
/// streaks (no escalation from it), but it ended badly, so it is no success towards
/// `deescalateAfter` either.
pub(super) fn count(
    st: &mut AgentState,
    agent: &Agent,
    RunOutcome {
        status,
        cause,
        change_tested,
    }: RunOutcome,
    elapsed_ms: u64,
    cost_usd: f64,
    round: u32,
) -> Option<ModelChange> {
    st.runs += 1;
    st.last_run_round = Some(round);
    st.last_status = Some(status);
    st.cost_usd += cost_usd;
    if cause.is_some_and(|c| c.is_transient() || c.is_permanent() || c == Cause::OverBudget) {
        return None;
    }
    if matches!(status, RunStatus::Ok | RunStatus::Empty) {
        st.recent_run_ms.push(elapsed_ms);
        let excess = st.recent_run_ms.len().saturating_sub(RECENT_RUNS);
        st.recent_run_ms.drain(..excess);
    }
    match status {
        RunStatus::Empty => st.consecutive_empty_rounds += 1,
        RunStatus::Ok => st.consecutive_empty_rounds = 0,
        _ if change_tested => st.consecutive_empty_rounds = 0,
        _ => {}
    }
    let ladder = agent.ladder();
    st.model_index = st.model_index.min(ladder.len() - 1);
    let before = ladder[st.model_index].clone();
    let mut why = None;
    if change_tested {
        st.consecutive_failures = 0;
        st.consecutive_successes = 0;
    } else if status.is_unproductive() {
        st.consecutive_failures += 1;
        st.consecutive_successes = 0;
        if st.consecutive_failures >= agent.escalate_after && st.model_index + 1 < ladder.len() {
            why = Some(format!(
                "{} unproductive runs in a row (escalateAfter {}), the last {}",
                st.consecutive_failures,
                agent.escalate_after,
                status.as_str()
            ));
            st.model_index += 1;
            st.consecutive_failures = 0;
        }
    } else if status == RunStatus::Ok {
        st.consecutive_failures = 0;
        st.consecutive_successes += 1;
        if let Some(n) = agent.deescalate_after {
            if st.consecutive_successes >= n && st.model_index > 0 {
                why = Some(format!(
                    "{} successful runs in a row (deescalateAfter {n})",
                    st.consecutive_successes
                ));
                st.model_index -= 1;
                st.consecutive_successes = 0;
            }
        }
    }
    st.model = ladder[st.model_index].clone();
    why.map(|why| ModelChange {
        from: before,
        to: st.model.clone(),
        why,
    })
}

/// The first `max` bytes of a file as text (lossy); `None` when it cannot be read.
pub(super) fn read_head(path: &Path, max: u64) -> Option<String> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut buf)
        .ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The last `max` bytes of a file (all of it when smaller); empty when unreadable.
pub fn read_tail(path: &Path, max: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > max {
            let _ = f.seek(SeekFrom::Start(len - max));
        }
        let _ = f.take(max).read_to_end(&mut buf);
    }
    buf
}

/// Marks a failed run whose change went to the tests with the others' (`changeTested`), and
/// says so after its error, where the console line, `orch status` and the report show it.
pub(super) fn tested_anyway(entry: &mut AgentEntry) {
    entry.change_tested = true;
    let note = "its change goes to the tests with the others (failedChanges: test)";
    entry.error = Some(match entry.error.take() {
        Some(e) => format!("{e}; {note}"),
        None => note.to_string(),
    });
}

/// The `agentEnd` of a settled run; `amended` when it replaces the agent's earlier one of the
/// round (a review agent beside the tests whose change did not land after them).
pub(super) fn agent_end(round: u32, e: &AgentEntry, amended: bool) -> Event {
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
        git_settings_put_back: e.git_settings_put_back.clone(),
        sandbox_refused: e.sandbox_refused.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mission::Mission;

    fn agent(extra: &str) -> Agent {
        let m = Mission::parse(
            &format!(
                r#"{{"name":"n","agents":[{{"name":"a","phase":"code","command":"x"{extra}}}]}}"#
            ),
            Path::new("m.json"),
            &crate::agents::Adapters,
        )
        .unwrap();
        m.agents[0].clone()
    }

    #[test]
    fn escalates_after_n_unproductive_runs_and_stops_at_the_top() {
        let a = agent(r#","models":["small","big"],"escalateAfter":2"#);
        let mut st = AgentState::default();
        assert!(track(&mut st, &a, RunStatus::Failed, None, 10, 0.0, 1).is_none());
        let change = track(&mut st, &a, RunStatus::Timeout, None, 10, 0.0, 2).unwrap();
        assert_eq!((change.from.as_str(), change.to.as_str()), ("small", "big"));
        assert_eq!(st.model, "big");
        for r in 3..8 {
            assert!(track(&mut st, &a, RunStatus::Empty, None, 10, 0.0, r).is_none());
        }
        assert_eq!(st.model_index, 1);
        assert_eq!(st.consecutive_empty_rounds, 5);
    }

    #[test]
    fn limits_and_bad_keys_move_no_streak() {
        let a = agent(r#","models":["small","big"],"escalateAfter":1"#);
        let mut st = AgentState::default();
        for cause in [
            Cause::RateLimited,
            Cause::Overloaded,
            Cause::UsageLimit,
            Cause::Auth,
            Cause::BadRequest,
            Cause::OverBudget,
        ] {
            assert!(track(&mut st, &a, RunStatus::Failed, Some(cause), 10, 0.01, 1).is_none());
        }
        assert_eq!(
            (st.model_index, st.consecutive_failures, st.runs),
            (0, 0, 6)
        );
        assert!((st.cost_usd - 0.06).abs() < 1e-9);
        // An ordinary failure still escalates.
        assert!(track(
            &mut st,
            &a,
            RunStatus::Failed,
            Some(Cause::Exit),
            10,
            0.0,
            2
        )
        .is_some());
    }

    #[test]
    fn deescalates_after_successes_when_asked() {
        let a = agent(r#","models":["small","big"],"escalateAfter":1,"deescalateAfter":2"#);
        let mut st = AgentState::default();
        track(&mut st, &a, RunStatus::Failed, None, 10, 0.0, 1).unwrap();
        assert!(track(&mut st, &a, RunStatus::Ok, None, 10, 0.0, 2).is_none());
        let back = track(&mut st, &a, RunStatus::Ok, None, 10, 0.0, 3).unwrap();
        assert_eq!(back.to, "small");
    }

    #[test]
    fn recent_runs_keep_only_ok_and_empty_and_are_bounded() {
        let a = agent("");
        let mut st = AgentState::default();
        for r in 0..15 {
            track(&mut st, &a, RunStatus::Ok, None, r, 0.1, r as u32);
        }
        track(&mut st, &a, RunStatus::Failed, None, 99_999, 0.0, 16);
        assert_eq!(st.recent_run_ms.len(), RECENT_RUNS);
        assert_eq!(*st.recent_run_ms.last().unwrap(), 14);
        assert!((st.cost_usd - 1.5).abs() < 1e-9);
    }
}
