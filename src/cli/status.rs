//! `orch status`: where a run stands, from the state file, the last round log and the task
//! queue: last round and its status, rounds done and left, cost and budget left, and per agent
//! the model now, its streaks, last run, mean time, cost and pending tasks.

use std::path::Path;

use serde::Serialize;

use crate::engine::runner::Workspace;
use crate::engine::state::{read_json, State};
use crate::engine::tasks::{Queue, Task};
use crate::error::{Result, EXIT_OK};
use crate::roundlog::RoundLog;
use crate::units;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub mission: String,
    pub last_round: u32,
    pub last_round_status: Option<String>,
    pub rounds_done: u32,
    pub rounds_left: u32,
    pub total_cost_usd: f64,
    pub budget_usd: Option<f64>,
    pub budget_left_usd: Option<f64>,
    pub empty_rounds_in_a_row: u32,
    /// The circuit breaker's count: rounds in a row whose committed tree failed the tests, or
    /// that were wholly reverted.
    pub test_failures_in_a_row: u32,
    /// Rounds in a row whose first test run failed, rescued by a per-agent revert or not.
    pub test_failed_rounds_in_a_row: u32,
    /// `stop.afterTestFailures`: where the breaker stops the run.
    pub breaker_limit: u32,
    pub agents: Vec<AgentStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    pub name: String,
    pub phase: String,
    pub model: String,
    pub runs: u32,
    pub last_run_round: Option<u32>,
    pub last_status: Option<String>,
    pub consecutive_failures: u32,
    pub consecutive_empty_rounds: u32,
    pub mean_ms: Option<u64>,
    pub cost_usd: f64,
    pub pending_tasks: usize,
}

pub fn collect(ws: &Workspace) -> Result<Status> {
    let m = ws.mission();
    let state = State::load(&ws.layout)?;
    let queue = Queue::load(&ws.layout)?;
    let last: Option<RoundLog> = if state.last_round > 0 {
        read_json(&ws.layout.round_log(state.last_round)).unwrap_or(None)
    } else {
        None
    };
    let agents = m
        .agents
        .iter()
        .map(|a| {
            let st = state.agent(&a.name);
            AgentStatus {
                name: a.name.clone(),
                phase: a.phase.as_str().into(),
                model: a.model_at(st.model_index),
                runs: st.runs,
                last_run_round: st.last_run_round,
                last_status: st.last_status.map(|s| s.as_str().to_string()),
                consecutive_failures: st.consecutive_failures,
                consecutive_empty_rounds: st.consecutive_empty_rounds,
                mean_ms: st.mean_run_ms(),
                cost_usd: st.cost_usd,
                pending_tasks: queue.pending_count(&a.name),
            }
        })
        .collect();
    Ok(Status {
        mission: m.name.clone(),
        last_round: state.last_round,
        last_round_status: last.map(|l| l.status.as_str().to_string()),
        rounds_done: state.last_round,
        rounds_left: m.rounds.saturating_sub(state.last_round),
        total_cost_usd: state.total_cost_usd,
        budget_usd: m.budget_usd,
        budget_left_usd: m.budget_usd.map(|b| (b - state.total_cost_usd).max(0.0)),
        empty_rounds_in_a_row: state.empty_rounds_in_a_row,
        test_failures_in_a_row: state.test_failures_in_a_row,
        test_failed_rounds_in_a_row: state.test_failed_rounds_in_a_row,
        breaker_limit: m.stop.after_test_failures,
        agents,
    })
}

pub fn print(cwd: &Path, mission: &Path, json: bool) -> Result<i32> {
    let ws = Workspace::open(cwd, mission)?;
    let s = collect(&ws)?;
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&s).unwrap_or_else(|_| "{}".into())
        )?;
        return Ok(EXIT_OK);
    }
    crate::outln!(
        "mission {}: round {} of {} done{}, {} left",
        s.mission,
        s.rounds_done,
        s.rounds_done + s.rounds_left,
        s.last_round_status
            .as_deref()
            .map(|st| format!(" (last: {st})"))
            .unwrap_or_default(),
        s.rounds_left
    )?;
    crate::outln!(
        "cost {}{}",
        units::usd(s.total_cost_usd),
        match (s.budget_usd, s.budget_left_usd) {
            (Some(b), Some(l)) => format!(" of {} budget, {} left", units::usd(b), units::usd(l)),
            _ => String::new(),
        }
    )?;
    crate::outln!(
        "tests: {} round(s) in a row failed for good (circuit breaker, stops at {}); {} in a row failed a first run (a per-agent revert may have rescued them)",
        s.test_failures_in_a_row,
        s.breaker_limit,
        s.test_failed_rounds_in_a_row
    )?;
    let mut rows = vec![[
        "agent",
        "phase",
        "model",
        "runs",
        "last",
        "unproductive streak",
        "empty streak",
        "mean",
        "cost",
        "tasks",
    ]
    .map(String::from)
    .to_vec()];
    for a in &s.agents {
        rows.push(vec![
            a.name.clone(),
            a.phase.clone(),
            if a.model.is_empty() {
                "-".into()
            } else {
                a.model.clone()
            },
            a.runs.to_string(),
            match (a.last_run_round, &a.last_status) {
                (Some(r), Some(st)) => format!("{st} (r{r})"),
                _ => "-".into(),
            },
            a.consecutive_failures.to_string(),
            a.consecutive_empty_rounds.to_string(),
            a.mean_ms
                .map(units::duration_ms)
                .unwrap_or_else(|| "-".into()),
            units::usd(a.cost_usd),
            a.pending_tasks.to_string(),
        ]);
    }
    crate::out!("{}", table(&rows))?;
    Ok(EXIT_OK)
}

/// The task list as a table, children indented under their parent.
pub fn task_table(tasks: &[&Task]) -> String {
    fn add(rows: &mut Vec<Vec<String>>, tasks: &[&Task], t: &Task, depth: usize) {
        rows.push(vec![
            t.id.clone(),
            t.agent.clone(),
            t.priority.to_string(),
            format!("{:?}", t.status).to_lowercase(),
            t.attempts.to_string(),
            format!("{}{}", "  ".repeat(depth), t.title),
        ]);
        // Depth-bounded: a parent cycle in a hand-edited queue must not recurse forever.
        if depth < 8 {
            for child in tasks.iter().filter(|c| c.parent.as_deref() == Some(&t.id)) {
                add(rows, tasks, child, depth + 1);
            }
        }
    }
    let mut rows = vec![["id", "agent", "p", "status", "tries", "title"]
        .map(String::from)
        .to_vec()];
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    // Roots: no parent, or a parent not in the list.
    for t in tasks
        .iter()
        .filter(|t| t.parent.as_deref().is_none_or(|p| !ids.contains(&p)))
    {
        add(&mut rows, tasks, t, 0);
    }
    table(&rows)
}

/// Left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
