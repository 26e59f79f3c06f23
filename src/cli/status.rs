//! `orch status`: whether a run is going (the lock's holder, and from `events.ndjson` its
//! round, phase, running agents with their time and timeout, a wait on a provider limit and
//! the cost so far), then where the mission stands, from the state file, the last round log and the task
//! queue: last round and its status, rounds done and left, cost and budget left, and per agent
//! the model now, its streaks, last run, mean time, cost and pending tasks.

use std::path::Path;

use serde::Serialize;

use crate::engine::runner::Workspace;
use crate::engine::store::state::{read_json, State};
use crate::engine::store::tasks::{Queue, Task};
use crate::error::{Result, EXIT_OK};
use crate::roundlog::RoundLog;
use crate::units;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub mission: String,
    /// The run going on now, when an orch holds the lock; `null` otherwise.
    pub running: Option<Running>,
    pub last_round: u32,
    pub last_round_status: Option<String>,
    /// The last round was `ok` but none of its agents' work landed (its `nothingLanded`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub last_round_nothing_landed: bool,
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
    /// Its `budgetUsd`, what is left of it, and whether it is spent (the agent is not started
    /// again). `null`/false without a budget.
    pub budget_usd: Option<f64>,
    pub budget_left_usd: Option<f64>,
    pub over_budget: bool,
    /// Runs whose cost its CLI did not tell: counted as $0, so the budget cannot hold them back.
    pub unknown_cost_runs: u32,
    pub pending_tasks: usize,
    /// Of those, the ones that wait on its spent `budgetUsd` (all of them while it is over
    /// budget: it is not started again, and no `overBudgetTasksTo` agent took them).
    pub tasks_waiting_on_budget: usize,
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
                budget_usd: a.budget_usd,
                budget_left_usd: crate::engine::round::budget_left(a, &state),
                over_budget: crate::engine::round::over_budget(a, &state).is_some(),
                unknown_cost_runs: st.unknown_cost_runs,
                pending_tasks: queue.pending_count(&a.name),
                tasks_waiting_on_budget: crate::engine::round::waiting_on_budget(a, &state, &queue)
                    .len(),
            }
        })
        .collect();
    Ok(Status {
        mission: m.name.clone(),
        running: running(ws, state.total_cost_usd),
        last_round: state.last_round,
        last_round_status: last.as_ref().map(|l| l.status.as_str().to_string()),
        last_round_nothing_landed: last.as_ref().is_some_and(|l| l.nothing_landed),
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

pub fn print(cwd: &Path, mission: &Path, json: bool, watch: bool) -> Result<i32> {
    let ws = Workspace::open(cwd, mission)?;
    if !watch {
        let s = collect(&ws)?;
        crate::cli::out::write(render(&s, json).as_bytes())?;
        return Ok(EXIT_OK);
    }
    // Redraw every second until the run ends, then once more with the final figures.
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    loop {
        let s = collect(&ws)?;
        let done = s.running.is_none();
        let text = render(&s, json);
        if tty && !json {
            crate::cli::out::write(format!("\x1b[H\x1b[2J{text}").as_bytes())?;
        } else {
            crate::cli::out::write(text.as_bytes())?;
        }
        if done {
            return Ok(EXIT_OK);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The status as text for a person, or as JSON (pretty; one line when watching would not
/// matter to a pretty-printer, so it stays pretty).
fn render(s: &Status, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(s).unwrap_or_else(|_| "{}".into())
        );
    }
    let mut out = String::new();
    match &s.running {
        Some(r) => out.push_str(&running_lines(r)),
        None => out.push_str("no run in progress\n"),
    }
    out.push_str(&summary_text(s));
    out
}

fn summary_text(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mission {}: round {} of {} done{}, {} left",
        s.mission,
        s.rounds_done,
        s.rounds_done + s.rounds_left,
        s.last_round_status
            .as_deref()
            .map(|st| format!(
                " (last: {st}{})",
                if s.last_round_nothing_landed {
                    ", nothing landed"
                } else {
                    ""
                }
            ))
            .unwrap_or_default(),
        s.rounds_left
    );
    let _ = writeln!(
        out,
        "cost {}{}",
        units::usd(s.total_cost_usd),
        match (s.budget_usd, s.budget_left_usd) {
            (Some(b), Some(l)) => format!(" of {} budget, {} left", units::usd(b), units::usd(l)),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "tests: {} round(s) in a row failed for good (circuit breaker, stops at {}); {} in a row failed a first run (a per-agent revert may have rescued them)",
        s.test_failures_in_a_row,
        s.breaker_limit,
        s.test_failed_rounds_in_a_row
    );
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
        rows.push(agent_cells(a));
    }
    out.push_str(&table(&rows));
    for a in s.agents.iter().filter(|a| a.tasks_waiting_on_budget > 0) {
        let _ = writeln!(
            out,
            "{}: {} pending task(s) wait on its budgetUsd, which is spent: raise it, or name an agent in its overBudgetTasksTo to take them",
            a.name, a.tasks_waiting_on_budget
        );
    }
    for a in s
        .agents
        .iter()
        .filter(|a| a.budget_usd.is_some() && a.unknown_cost_runs > 0)
    {
        let _ = writeln!(
            out,
            "{}: {} run(s) of unknown cost counted as $0: its budgetUsd cannot hold them back",
            a.name, a.unknown_cost_runs
        );
    }
    out
}

/// Agent `a`'s row of the status table.
fn agent_cells(a: &AgentStatus) -> Vec<String> {
    vec![
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
        match a.budget_usd {
            Some(b) => format!(
                "{} of {}{}",
                units::usd(a.cost_usd),
                units::usd(b),
                if a.over_budget { " (over budget)" } else { "" }
            ),
            None => units::usd(a.cost_usd),
        },
        if a.tasks_waiting_on_budget > 0 {
            format!("{} (waiting on its budget)", a.pending_tasks)
        } else {
            a.pending_tasks.to_string()
        },
    ]
}

/// The task list as a table, children indented under their parent; the pending tasks of an
/// agent over its `budgetUsd` (`waiting`, their ids) say they wait on it.
pub fn task_table(tasks: &[&Task], waiting: &[String]) -> String {
    fn add(
        rows: &mut Vec<Vec<String>>,
        tasks: &[&Task],
        t: &Task,
        depth: usize,
        waiting: &[String],
    ) {
        let status = format!("{:?}", t.status).to_lowercase();
        rows.push(vec![
            t.id.clone(),
            t.agent.clone(),
            t.priority.to_string(),
            if waiting.contains(&t.id) {
                format!("{status} (its agent is over budget)")
            } else {
                status
            },
            t.attempts.to_string(),
            format!("{}{}", "  ".repeat(depth), t.title),
        ]);
        // Depth-bounded: a parent cycle in a hand-edited queue must not recurse forever.
        if depth < 8 {
            for child in tasks.iter().filter(|c| c.parent.as_deref() == Some(&t.id)) {
                add(rows, tasks, child, depth + 1, waiting);
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
        add(&mut rows, tasks, t, 0, waiting);
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

/// A run in progress, from the repository's lock (who holds it) and the tail of
/// `events.ndjson` (what it is doing).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub pid: u32,
    /// False when the orch holding the lock runs another state folder of this repository.
    pub this_state_dir: bool,
    pub state_dir: Option<String>,
    pub round: Option<u32>,
    pub last_round: Option<u32>,
    pub round_started_at: Option<String>,
    pub round_elapsed_ms: Option<u64>,
    /// `starting`, `code`, `tests`, `revert tests`, `review`, `between rounds`.
    pub phase: Option<String>,
    pub agents: Vec<RunningAgent>,
    pub limit_wait: Option<LimitWait>,
    #[serde(serialize_with = "crate::units::ser_usd")]
    pub cost_so_far_usd: f64,
    /// False when a finished run's cost was not known: the figure is a lower bound.
    pub cost_known: bool,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningAgent {
    pub name: String,
    pub phase: String,
    pub model: String,
    pub task: Option<String>,
    pub elapsed_ms: u64,
    pub timeout_ms: u64,
    /// What it did last (its latest `agentActivity`: "Bash `npm test`, 3rd time") and how
    /// long ago.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity_ago_ms: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitWait {
    pub provider: String,
    pub agents: Vec<String>,
    pub cause: String,
    pub error: String,
    pub until: Option<String>,
    pub left_ms: Option<u64>,
}

/// The events of the latest run: the lines after the last `runStart` in the last few MiB.
fn latest_events(path: &Path) -> Vec<serde_json::Value> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 4 << 20;
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let mut out: Vec<serde_json::Value> = Vec::new();
    for line in text.lines() {
        // A line cut by the seek or being written now does not parse and is left out.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["event"] == "runStart" {
            out.clear();
        }
        out.push(v);
    }
    out
}

fn running(ws: &Workspace, state_total: f64) -> Option<Running> {
    let holder = crate::engine::store::state::Lock::holder(&ws.layout)?;
    let this = holder.state_dir.as_ref().is_none_or(|d| {
        d == &ws.layout.dir
            || std::fs::canonicalize(d).ok() == std::fs::canonicalize(&ws.layout.dir).ok()
    });
    let mut r = Running {
        pid: holder.pid,
        this_state_dir: this,
        state_dir: holder.state_dir.map(|d| d.display().to_string()),
        cost_so_far_usd: state_total,
        cost_known: true,
        ..Running::default()
    };
    if !this {
        return Some(r);
    }
    fold_events(&mut r, latest_events(&ws.layout.events()), state_total);
    Some(r)
}

/// What the latest run's events say of it: its round, phase, running agents, a limit wait,
/// and the cost so far (`state_total`, the finished rounds', plus this round's runs).
fn fold_events(r: &mut Running, events: Vec<serde_json::Value>, state_total: f64) {
    let now = units::now_ms() / 1000;
    let ago = |v: &serde_json::Value| {
        v["ts"]
            .as_str()
            .and_then(units::parse_rfc3339)
            .map(|t| now.saturating_sub(t) * 1000)
    };
    let mut round_cost = 0.0;
    let mut base_cost = state_total;
    let mut regressed = false;
    // Phase B beside the tests (`phaseB: "besideTests"`): the review agents start while the
    // tests run.
    let mut testing = false;
    const BESIDE: &str = "tests, review beside them";
    for e in events {
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        match e["event"].as_str().unwrap_or_default() {
            "runStart" => r.last_round = e["lastRound"].as_u64().map(|n| n as u32),
            "roundStart" => {
                r.round = e["round"].as_u64().map(|n| n as u32);
                r.round_started_at = e["ts"].as_str().map(str::to_string);
                r.phase = Some("starting".into());
                r.agents.clear();
                r.limit_wait = None;
                regressed = false;
                testing = false;
                round_cost = 0.0;
            }
            "phaseStart" if testing && s("phase") == "review" => r.phase = Some(BESIDE.into()),
            "phaseStart" => r.phase = Some(s("phase")),
            "testsStart" => {
                testing = true;
                r.phase = Some(if regressed { "revert tests" } else { "tests" }.into());
            }
            "testsEnd" => {
                testing = false;
                regressed |= e["regression"].as_bool().unwrap_or(false);
                if r.phase.as_deref() == Some(BESIDE) {
                    r.phase = Some("review".into());
                }
            }
            "agentStart" => {
                let name = s("agent");
                r.agents.retain(|a| a.name != name);
                r.agents.push(RunningAgent {
                    elapsed_ms: ago(&e).unwrap_or(0),
                    name,
                    phase: s("phase"),
                    model: s("model"),
                    task: e["task"].as_str().map(str::to_string),
                    timeout_ms: e["timeoutMs"].as_u64().unwrap_or(0),
                    ..RunningAgent::default()
                });
            }
            "agentActivity" => {
                let name = s("agent");
                if let Some(a) = r.agents.iter_mut().find(|a| a.name == name) {
                    a.last_activity = Some(s("activity"));
                    a.last_activity_ago_ms = ago(&e);
                }
            }
            // The same run settled again after the tests (a review change that did not land):
            // its cost is counted once, from its first agentEnd.
            "agentEnd" if e["amended"] == true => {}
            "agentEnd" => {
                let name = s("agent");
                r.agents.retain(|a| a.name != name);
                round_cost += e["costUsd"].as_f64().unwrap_or(0.0);
                if e["costKnown"] == false {
                    r.cost_known = false;
                }
            }
            "limitWait" => {
                r.limit_wait = Some(limit_wait(&e, now));
            }
            "limitResume" => r.limit_wait = None,
            "roundEnd" => {
                r.phase = Some("between rounds".into());
                r.agents.clear();
                base_cost = e["totalCostUsd"].as_f64().unwrap_or(base_cost);
                round_cost = 0.0;
            }
            _ => {}
        }
    }
    if let Some(w) = &r.limit_wait {
        if w.until.is_some() {
            r.phase = Some("waiting on a provider limit".into());
        }
    }
    r.round_elapsed_ms = r
        .round_started_at
        .as_deref()
        .and_then(units::parse_rfc3339)
        .map(|t| now.saturating_sub(t) * 1000);
    // The state file holds the cost of finished rounds; this round's runs come from the events.
    r.cost_so_far_usd = base_cost.max(state_total) + round_cost;
}

/// A `limitWait` event as the status shows it; `now` in seconds since the epoch.
fn limit_wait(e: &serde_json::Value, now: u64) -> LimitWait {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let until = e["until"].as_str().map(str::to_string);
    LimitWait {
        provider: s("provider"),
        agents: e["agents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        cause: s("cause"),
        error: s("error"),
        left_ms: until
            .as_deref()
            .and_then(units::parse_rfc3339)
            .map(|t| t.saturating_sub(now) * 1000),
        until,
    }
}

/// The lines that say a run is going, for the human view.
fn running_lines(r: &Running) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !r.this_state_dir {
        let _ = writeln!(
            out,
            "an orch (pid {}) is running on another state folder of this repository: {}",
            r.pid,
            r.state_dir.as_deref().unwrap_or("?")
        );
        return out;
    }
    let _ = writeln!(
        out,
        "RUNNING: orch pid {}{}{}{}",
        r.pid,
        match (r.round, r.last_round) {
            (Some(n), Some(l)) => format!(", round {n} of {l}"),
            (Some(n), None) => format!(", round {n}"),
            _ => String::new(),
        },
        r.phase
            .as_deref()
            .map(|p| format!(", {p}"))
            .unwrap_or_default(),
        r.round_elapsed_ms
            .map(|ms| format!(", {} into the round", units::duration_ms(ms)))
            .unwrap_or_default()
    );
    for a in &r.agents {
        let _ = writeln!(
            out,
            "  agent {} ({}{}): {} of {} timeout",
            a.name,
            a.phase,
            if a.model.is_empty() {
                String::new()
            } else {
                format!(", {}", a.model)
            },
            units::duration_ms(a.elapsed_ms),
            units::duration_ms(a.timeout_ms)
        );
        if let Some(what) = &a.last_activity {
            let _ = writeln!(
                out,
                "    last: {what}{}",
                a.last_activity_ago_ms
                    .map(|ms| format!(", {} ago", units::duration_ms(ms)))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(w) = &r.limit_wait {
        let _ = writeln!(
            out,
            "  waiting on a provider limit: {} ({}){}{}{}",
            w.provider,
            w.cause,
            w.until
                .as_deref()
                .map(|u| format!(" until {u}"))
                .unwrap_or_default(),
            w.left_ms
                .map(|ms| format!(", {} left", units::duration_ms(ms)))
                .unwrap_or_default(),
            if w.agents.is_empty() {
                String::new()
            } else {
                format!("; agents {}", w.agents.join(", "))
            }
        );
    }
    let _ = writeln!(
        out,
        "  cost so far: {}{}",
        if r.cost_known { "" } else { "≥ " },
        units::usd(r.cost_so_far_usd)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_amended_agent_end_is_not_counted_twice_in_the_cost_so_far() {
        let end = |amended: bool| {
            let mut e = json!({"event": "agentEnd", "round": 1, "agent": "rev",
                               "phase": "review", "status": "ok", "costUsd": 0.25,
                               "costKnown": true});
            if amended {
                e["amended"] = json!(true);
                e["status"] = json!("conflict");
            }
            e
        };
        let events = vec![
            json!({"event": "runStart", "lastRound": 1}),
            json!({"event": "roundStart", "round": 1}),
            json!({"event": "agentStart", "round": 1, "agent": "rev", "phase": "review"}),
            end(false),
            end(true),
        ];
        let mut r = Running::default();
        fold_events(&mut r, events, 1.0);
        assert!(
            (r.cost_so_far_usd - 1.25).abs() < 1e-9,
            "{}",
            r.cost_so_far_usd
        );
        assert!(r.agents.is_empty());
    }

    #[test]
    fn a_running_agent_shows_what_it_did_last() {
        let ts = units::now_rfc3339();
        let events = vec![
            json!({"event": "runStart", "lastRound": 1}),
            json!({"event": "roundStart", "round": 1, "ts": ts}),
            json!({"event": "agentStart", "round": 1, "agent": "coder", "phase": "code",
                   "model": "sonnet", "timeoutMs": 900000, "ts": ts}),
            json!({"event": "agentActivity", "round": 1, "agent": "coder",
                   "activity": "Write src/a.rs", "ts": ts}),
            json!({"event": "agentActivity", "round": 1, "agent": "coder",
                   "activity": "Bash `npm test`, 3rd time", "ts": ts}),
            // Not running: nothing to show it on.
            json!({"event": "agentActivity", "round": 1, "agent": "gone",
                   "activity": "Read x", "ts": ts}),
        ];
        let mut r = Running {
            this_state_dir: true,
            ..Running::default()
        };
        fold_events(&mut r, events, 0.0);
        assert_eq!(r.agents.len(), 1);
        let a = &r.agents[0];
        assert_eq!(
            a.last_activity.as_deref(),
            Some("Bash `npm test`, 3rd time")
        );
        let text = running_lines(&r);
        assert!(
            text.contains("    last: Bash `npm test`, 3rd time, "),
            "{text}"
        );
    }
}
