//! The per-agent part of the summary: one row per agent over every round (runs by outcome,
//! failures by cause, time, money, its model now, its budget, its CLI sessions) and the
//! scheduler's decisions per agent (included, skipped, blocked, over budget, idle).
//!
//! Its own module because it reads the logs agent by agent, across rounds, where the rest of
//! the summary reads them round by round.

use std::collections::HashMap;

use serde_json::Value;

use super::load::{Loaded, Round};
use super::model::{AgentRow, DecisionRow, Known, SessionRow};
use super::outcome::{cause_of, rejected_agents, went_in};
use crate::roundlog::{AgentEntry, Choice, RunStatus};

/// An agent's figures while its rounds are read, before they become its row.
struct AgentAcc<'a> {
    row: AgentRow,
    total_ms: u64,
    model: &'a str,
    known: usize,
    unknown: usize,
    sessions: Option<SessionRow>,
    /// A run resumed a session or said why one was dropped: the agent keeps sessions (a
    /// CLI reports a session id for every run, kept or not).
    kept_session: bool,
}

/// One row per agent, in the order they first ran, from every round's log and the state file.
pub(super) fn agent_rows(loaded: &Loaded, state_json: Option<&Value>) -> Vec<AgentRow> {
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<&str, AgentAcc> = HashMap::new();
    for r in &loaded.rounds {
        let rejected = rejected_agents(r);
        for (i, a) in r.log.agents.iter().enumerate() {
            let acc = rows.entry(a.name.as_str()).or_insert_with(|| {
                order.push(a.name.clone());
                AgentAcc {
                    row: AgentRow {
                        name: a.name.clone(),
                        ..AgentRow::default()
                    },
                    total_ms: 0,
                    model: "",
                    known: 0,
                    unknown: 0,
                    sessions: None,
                    kept_session: false,
                }
            });
            count_run(acc, r, i, a, &rejected);
        }
    }
    order
        .iter()
        .filter_map(|name| {
            let acc = rows.remove(name.as_str())?;
            Some(agent_row(loaded, state_json, name, acc))
        })
        .collect()
}

/// Adds agent `a`'s run in round `r` (and its run beside the tests, if any) to its figures;
/// `rejected` names the agents whose change the round took out.
fn count_run<'a>(
    acc: &mut AgentAcc<'a>,
    r: &Round,
    i: usize,
    a: &'a AgentEntry,
    rejected: &[String],
) {
    let row = &mut acc.row;
    row.runs += 1;
    // A failed run whose change was tested is counted where its change went (kept or
    // rejected); how it ended is in its failures by cause.
    let went = went_in(a);
    match a.status {
        RunStatus::Ok | RunStatus::Failed if went && rejected.contains(&a.name) => {
            row.rejected += 1
        }
        RunStatus::Ok | RunStatus::Failed if went => row.kept += 1,
        RunStatus::Ok => row.kept += 1,
        RunStatus::Empty => row.empty += 1,
        RunStatus::Failed => row.failed += 1,
        RunStatus::Timeout => row.timeouts += 1,
        RunStatus::Conflict => row.conflicts += 1,
        RunStatus::Cancelled => row.cancelled += 1,
    }
    if matches!(a.status, RunStatus::Failed | RunStatus::Timeout) {
        *row.failed_by_cause.entry(cause_of(r, i)).or_insert(0) += 1;
    }
    acc.total_ms += a.elapsed_ms;
    row.longest_ms = row.longest_ms.max(a.elapsed_ms);
    row.cost_usd += a.cost_usd;
    if a.cost_known {
        acc.known += 1;
    } else {
        acc.unknown += 1;
    }
    row.last_round = r.log.round;
    if !a.model.is_empty() {
        acc.model = a.model.as_str();
    }
    let sessions = acc.sessions.get_or_insert_with(SessionRow::default);
    // Its run beside the tests (kept aside by a revert) came first.
    if let Some(b) = &a.beside_run {
        acc.kept_session |= sessions.note(b, r.log.round);
    }
    acc.kept_session |= sessions.note(a, r.log.round);
    // Its run beside the tests, kept aside by a revert before it ran again.
    if let Some(b) = &a.beside_run {
        row.runs += 1;
        match b.status {
            RunStatus::Ok => row.rejected += 1,
            RunStatus::Empty => row.empty += 1,
            RunStatus::Failed => row.failed += 1,
            RunStatus::Timeout => row.timeouts += 1,
            RunStatus::Conflict => row.conflicts += 1,
            RunStatus::Cancelled => row.cancelled += 1,
        }
        acc.total_ms += b.elapsed_ms;
        row.longest_ms = row.longest_ms.max(b.elapsed_ms);
        // Its cost is in the entry's already (the agent's whole spend in the round).
        if b.cost_known {
            acc.known += 1;
        } else {
            acc.unknown += 1;
        }
    }
}

/// The agent's row from its figures: means, cost per kept change, model, budget, sessions.
fn agent_row(loaded: &Loaded, state_json: Option<&Value>, name: &str, acc: AgentAcc) -> AgentRow {
    let mut row = acc.row;
    row.mean_ms = acc.total_ms / u64::from(row.runs.max(1));
    row.cost_known = Known::of(acc.known, acc.unknown);
    row.cost_per_kept_usd =
        (row.kept > 0 && row.cost_known != Known::None).then(|| row.cost_usd / f64::from(row.kept));
    row.model_now = state_json
        .and_then(|s| s.get("agents"))
        .and_then(|a| a.get(name))
        .and_then(|a| a.get("model"))
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(acc.model)
        .to_string();
    row.budget_usd = loaded
        .rounds
        .iter()
        .rev()
        .flat_map(|r| &r.log.decisions)
        .find(|d| d.agent == *name && d.budget_usd.is_some())
        .and_then(|d| d.budget_usd);
    // An agent that ran once with `session: true` has resumed and dropped nothing yet:
    // the state file says it keeps one.
    let agent_state = state_json
        .and_then(|s| s.get("agents"))
        .and_then(|a| a.get(name));
    let in_state = agent_state.is_some_and(|a| {
        a.get("session").is_some_and(|v| !v.is_null())
            || a.get("sessionDropped").is_some_and(|v| !v.is_null())
    });
    row.sessions = acc.sessions.filter(|_| acc.kept_session || in_state);
    row.spent_usd = row.budget_usd.map(|_| {
        state_json
            .and_then(|s| s.get("agents"))
            .and_then(|a| a.get(name))
            .and_then(|a| a.get("costUsd"))
            .and_then(Value::as_f64)
            .unwrap_or(row.cost_usd)
    });
    row
}

pub(super) fn decision_rows(loaded: &Loaded) -> Vec<DecisionRow> {
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<String, DecisionRow> = HashMap::new();
    let mut rounds = 0u32;
    for r in &loaded.rounds {
        if r.log.decisions.is_empty() {
            continue;
        }
        rounds += 1;
        let rejected = rejected_agents(r);
        for d in &r.log.decisions {
            let row = rows.entry(d.agent.clone()).or_insert_with(|| {
                order.push(d.agent.clone());
                DecisionRow {
                    agent: d.agent.clone(),
                    ..DecisionRow::default()
                }
            });
            match d.decision {
                Choice::Included => {
                    row.included += 1;
                    row.kept += r
                        .log
                        .agents
                        .iter()
                        .filter(|a| a.name == d.agent && went_in(a) && !rejected.contains(&a.name))
                        .count() as u32;
                }
                Choice::Blocked => row.blocked += 1,
                Choice::OverBudget => row.over_budget += 1,
                Choice::Skipped => row.skipped += 1,
            }
        }
    }
    order
        .iter()
        .filter_map(|name| {
            let mut row = rows.remove(name)?;
            row.rounds = rounds;
            row.success_rate = (row.included > 0).then(|| row.kept as f64 / row.included as f64);
            row.idle_pct = if rounds == 0 {
                0.0
            } else {
                100.0 * f64::from(rounds - row.included.min(rounds)) / f64::from(rounds)
            };
            Some(row)
        })
        .collect()
}
