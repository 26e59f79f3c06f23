//! Builds the [`Summary`] from the loaded round logs: one call, [`summarize`], that takes the
//! rows of its parts (attention and review from [`super::attention`], the agents and decisions
//! from [`super::agents`], each round's bars and hidden time from [`super::timeline`]) and adds
//! its own: one row per round and the night's totals.
//!
//! The computations worth their own names here: what each round *landed* (the agents' changes
//! that stayed after any revert, and the committed tree's tests, which after a per-agent revert
//! are not the first attempt's), the rounds that landed nothing and why (the headline), and
//! money that is only partly known.

use std::collections::BTreeMap;

use serde_json::Value;

use super::agents::{agent_rows, decision_rows};
use super::attention::{attention_rows, review};
use super::load::{Loaded, Round};
use super::model::*;
use super::outcome::{cause_of, rejected_agents, went_in};
use super::timeline::{bars, hidden};
use crate::roundlog::{RoundStatus, RunStatus, Strategy};

/// Builds the summary. `state_json` is the parsed `state.json`, used for each agent's current
/// model (`agents.<name>.model`).
pub fn summarize(loaded: &Loaded, state_json: Option<&Value>) -> Summary {
    let rounds: Vec<RoundRow> = loaded.rounds.iter().map(round_row).collect();
    let totals = totals(loaded, &rounds);
    let attention = attention_rows(loaded);
    Summary {
        report_schema: REPORT_SCHEMA,
        mission: loaded
            .rounds
            .iter()
            .rev()
            .map(|r| r.log.mission.as_str())
            .find(|m| !m.is_empty())
            .unwrap_or_default()
            .to_string(),
        state_dir: loaded.state_dir.display().to_string(),
        totals,
        agents: agent_rows(loaded, state_json),
        decisions: decision_rows(loaded),
        review: review(loaded, &attention),
        attention,
        files: file_rows(loaded),
        warnings: loaded
            .warnings
            .iter()
            .map(|w| WarningRow {
                file: w.file.display().to_string(),
                message: w.message.clone(),
            })
            .collect(),
        rounds,
        live: None,
    }
}

/// Every file a kept change touched (an agent that finished `ok`, or failed with its change
/// tested, and no revert took out), with its rounds and agents, sorted by path. A rejected,
/// failed (untested) or conflicting run's files are not in the night's work: they are in its
/// kept ref.
fn file_rows(loaded: &Loaded) -> Vec<FileRow> {
    let mut by_path: BTreeMap<&str, FileRow> = BTreeMap::new();
    for r in &loaded.rounds {
        let rejected = rejected_agents(r);
        for a in &r.log.agents {
            if !went_in(a) || rejected.contains(&a.name) {
                continue;
            }
            for f in &a.files {
                let row = by_path.entry(f.as_str()).or_insert_with(|| FileRow {
                    path: f.clone(),
                    rounds: Vec::new(),
                    agents: Vec::new(),
                });
                if row.rounds.last() != Some(&r.log.round) {
                    row.rounds.push(r.log.round);
                }
                if !row.agents.contains(&a.name) {
                    row.agents.push(a.name.clone());
                }
            }
        }
    }
    by_path.into_values().collect()
}

/// Why round `r` landed nothing, or `None` when an agent's change stayed.
fn nothing_why(r: &Round, row: &RoundRow) -> Option<String> {
    if row.landed {
        return None;
    }
    let c = &row.agents;
    Some(
        match r.log.status {
            RoundStatus::Skipped => "skipped",
            RoundStatus::Interrupted => "interrupted",
            _ if c.total == 0 => "no agent ran",
            _ if c.rejected > 0 => "reverted",
            _ if c.failed + c.timeout + c.cancelled == c.total => "every agent failed",
            _ if c.empty == c.total => "no agent changed anything",
            _ if c.conflict > 0 => "conflicts",
            _ if r.log.status == RoundStatus::Failed => "the round failed",
            _ => "nothing kept",
        }
        .to_string(),
    )
}

fn test_result(t: &crate::roundlog::TestsEntry) -> TestResult {
    TestResult {
        status: t.status,
        passed: t.passed,
        failed: t.failed,
        flaky: t.flaky,
        regression: t.regression,
    }
}

fn round_row(r: &Round) -> RoundRow {
    let log = &r.log;
    let rejected = rejected_agents(r);
    let mut agents = RunCounts::default();
    let mut causes = BTreeMap::new();
    let mut kept = Vec::new();
    let mut files = 0;
    let (mut known, mut unknown) = (0, 0);
    for (i, a) in log.agents.iter().enumerate() {
        let is_rejected = rejected.contains(&a.name);
        agents.add(a, is_rejected);
        if went_in(a) && !is_rejected {
            kept.push(a.name.clone());
            files += a.changed_files;
        }
        if matches!(a.status, RunStatus::Failed | RunStatus::Timeout) {
            *causes.entry(cause_of(r, i)).or_insert(0) += 1;
        }
        if a.cost_known {
            known += 1;
        } else {
            unknown += 1;
        }
    }
    let (pre_sim_ms, post_sim_ms) = match r.serial_sims_ms {
        Some(serial) => (Some(serial), None),
        None => (
            (log.sims.pre.is_some() || log.timing.pre_sim > 0).then_some(log.timing.pre_sim),
            (log.sims.post.is_some() || log.timing.post_sim > 0).then_some(log.timing.post_sim),
        ),
    };
    let tests = log.tests.as_ref().map(test_result);
    let tests_committed = match &log.revert {
        Some(rv) if rv.strategy == Strategy::PerAgent => {
            rv.committed.as_ref().map(|c| TestResult {
                status: c.status,
                passed: c.passed,
                failed: c.failed,
                flaky: false,
                regression: false,
            })
        }
        Some(_) => None,
        None if log.reverted => None,
        None => tests.clone(),
    };
    let hidden = hidden(r);
    let waited = r.extra.waited_ms;
    let mut row = RoundRow {
        round: log.round,
        schema: r.schema,
        legacy: r.is_legacy(),
        status: log.status,
        started_at: log.started_at.clone(),
        landed: !kept.is_empty(),
        kept,
        rejected,
        files,
        nothing_why: None,
        causes,
        agents,
        phase_a_ms: log.timing.phase_a,
        phase_b_ms: log.timing.phase_b,
        tests_ms: (log.tests.is_some() || log.timing.tests > 0).then_some(log.timing.tests),
        pre_sim_ms,
        post_sim_ms,
        waited_ms: waited,
        overhead_ms: log.timing.overhead,
        total_ms: log.timing.total,
        cost_usd: log.cost_usd,
        cost_known: if log.agents.is_empty() {
            Known::All
        } else {
            Known::of(known, unknown)
        },
        tests,
        tests_committed,
        revert_runs: log
            .revert
            .as_ref()
            .map_or(0, |rv| rv.test_runs.len() as u32),
        serial_equivalent_ms: log.timing.total + hidden.total_ms,
        hidden,
        commit: log.commit.clone(),
        stop_reason: log.stop_reason.clone(),
        bars: bars(r),
    };
    row.nothing_why = nothing_why(r, &row);
    row
}

fn totals(loaded: &Loaded, rows: &[RoundRow]) -> Totals {
    let mut t = Totals {
        rounds: rows.len() as u32,
        first_round: rows.first().map(|r| r.round),
        last_round: rows.last().map(|r| r.round),
        ..Totals::default()
    };
    let mut cost_known: Option<Known> = None;
    for r in rows {
        let c = &mut t.by_status;
        *match r.status {
            RoundStatus::Ok => &mut c.ok,
            RoundStatus::Skipped => &mut c.skipped,
            RoundStatus::Reverted => &mut c.reverted,
            RoundStatus::Failed => &mut c.failed,
            RoundStatus::Interrupted => &mut c.interrupted,
        } += 1;
        if r.legacy {
            t.legacy_rounds += 1;
        }
        if r.pre_sim_ms.is_some() || r.post_sim_ms.is_some() {
            t.has_sims = true;
        }
        t.wall_ms += r.total_ms;
        t.waited_ms += r.waited_ms;
        t.cost_usd += r.cost_usd;
        if r.agents.total > 0 {
            cost_known = Some(cost_known.map_or(r.cost_known, |k| k.and(r.cost_known)));
        }
        t.hidden_ms += r.hidden.total_ms;
        if r.landed {
            t.landed_rounds += 1;
        } else {
            t.nothing_rounds += 1;
            let why = r.nothing_why.clone().unwrap_or_default();
            let at = match t.nothing_why.iter().position(|g| g.why == why) {
                Some(i) => i,
                None => {
                    t.nothing_why.push(NothingGroup {
                        why,
                        ..NothingGroup::default()
                    });
                    t.nothing_why.len() - 1
                }
            };
            let g = &mut t.nothing_why[at];
            g.rounds += 1;
            for (cause, n) in &r.causes {
                *g.causes.entry(cause.clone()).or_insert(0) += n;
            }
        }
        if r.tests.as_ref().is_some_and(|x| x.flaky) {
            t.flaky_rounds.push(r.round);
        }
        if let Some(tests) = &r.tests_committed {
            if tests.passed.is_some() || tests.failed.is_some() {
                let point = TestPoint {
                    round: r.round,
                    passed: tests.passed.unwrap_or(0),
                    failed: tests.failed.unwrap_or(0),
                };
                if t.tests_first.is_none() {
                    t.tests_first = Some(point.clone());
                }
                t.tests_last = Some(point);
            }
        }
    }
    t.cost_known = cost_known.unwrap_or_default();
    t.nothing_why.sort_by_key(|g| std::cmp::Reverse(g.rounds));
    t.serial_equivalent_ms = t.wall_ms + t.hidden_ms;
    if let Some(last) = loaded.rounds.last() {
        t.last_total_cost_usd = Some(last.log.total_cost_usd);
        t.stop_reason = last.log.stop_reason.clone();
    }
    t.headline = headline(&t);
    t
}

/// "8 rounds: 1 landed work, 7 landed nothing: every agent failed (rateLimited 5, auth 2)".
fn headline(t: &Totals) -> String {
    let rounds = if t.rounds == 1 {
        "1 round".to_string()
    } else {
        format!("{} rounds", t.rounds)
    };
    if t.rounds == 0 {
        return "no rounds".to_string();
    }
    let causes = |g: &NothingGroup| {
        if g.causes.is_empty() {
            return String::new();
        }
        let mut c: Vec<(&String, &u32)> = g.causes.iter().collect();
        c.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = c.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(" ({})", parts.join(", "))
    };
    let mut out = format!("{rounds}: {} landed work", t.landed_rounds);
    if t.nothing_rounds > 0 {
        out.push_str(&format!(", {} landed nothing", t.nothing_rounds));
        match t.nothing_why.as_slice() {
            [one] => out.push_str(&format!(": {}{}", one.why, causes(one))),
            many => {
                let parts: Vec<String> = many
                    .iter()
                    .map(|g| format!("{} in {}{}", g.why, g.rounds, causes(g)))
                    .collect();
                out.push_str(&format!(": {}", parts.join("; ")));
            }
        }
    }
    out
}
