//! Shared wording of the cells and totals, so Markdown and HTML say the same words: the tables'
//! headers and cells, money as far as it is known, lists of rounds. Below the formats, which
//! only lay these strings out.

use super::model::{AgentRow, Known, RoundRow, RunCounts, Summary, TestResult};
use crate::units::{duration_ms, usd};

pub const NONE: &str = "—";

/// Columns of figures are right-aligned; names, statuses and models are not.
pub fn is_numeric(header: &[&str], i: usize) -> bool {
    !matches!(
        header.get(i).copied(),
        Some(
            "Round"
                | "Status"
                | "Agents"
                | "Agent"
                | "Model now"
                | "Landed"
                | "Rejected agents"
                | "Failures by cause"
                | "Tests, first attempt"
                | "Tests, committed tree"
                | "Commit"
                | "File"
                | "Rounds"
                | "Sessions"
        ) | None
    )
}

/// An amount of money as far as it is known: `$0.0013`, `≥ $1.20` (some runs' costs were
/// not known), `unknown`.
pub fn money(v: f64, known: Known) -> String {
    match known {
        Known::All => usd(v),
        Known::Part => format!("≥ {}", usd(v)),
        Known::None => "unknown".to_string(),
    }
}

/// The live page's line: when it was written and whether it reloads.
pub fn live(l: &super::model::LiveInfo) -> String {
    if l.running {
        format!(
            "Written {} while the run is going; this page reloads every {} s.",
            l.written_at, l.refresh_s
        )
    } else {
        format!("Written {}, after the run ended.", l.written_at)
    }
}

/// A running agent on the live page: "coder: Bash `npm test`, 3rd time (at 19:20:04 UTC)",
/// or "coder: running" before its first tool call or change.
pub fn live_agent(name: &str, last: Option<&(String, String)>) -> String {
    match last {
        Some((what, at)) => format!(
            "{name}: {what} (at {} UTC)",
            at.get(11..19).unwrap_or(at.as_str())
        ),
        None => format!("{name}: running"),
    }
}

/// `round 3`, `rounds 2–6, 9`.
pub fn rounds_of(rounds: &[u32]) -> String {
    let mut spans: Vec<(u32, u32)> = Vec::new();
    for &r in rounds {
        match spans.last_mut() {
            Some((_, end)) if *end + 1 == r => *end = r,
            _ => spans.push((r, r)),
        }
    }
    let parts: Vec<String> = spans
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}–{b}")
            }
        })
        .collect();
    format!(
        "round{} {}",
        if rounds.len() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

pub fn round(r: &RoundRow) -> String {
    if r.legacy {
        format!("{} (v8)", r.round)
    } else {
        r.round.to_string()
    }
}

pub fn agents(c: &RunCounts) -> String {
    let parts = c.parts();
    if parts.is_empty() {
        return c.total.to_string();
    }
    let inner: Vec<String> = parts.iter().map(|(n, s)| format!("{n} {s}")).collect();
    format!("{} ({})", c.total, inner.join(", "))
}

pub fn opt_ms(v: Option<u64>) -> String {
    v.map(duration_ms).unwrap_or_else(|| NONE.to_string())
}

/// The Tests cell: every test run's time, then the first attempt's counts.
pub fn tests_cell(r: &RoundRow) -> String {
    let Some(ms) = r.tests_ms else {
        return NONE.to_string();
    };
    let mut s = match &r.tests {
        Some(t) => format!("{}{}", duration_ms(ms), counts(t)),
        None => duration_ms(ms),
    };
    if r.revert_runs > 0 {
        s.push_str(&format!(
            " + {} revert run{}",
            r.revert_runs,
            if r.revert_runs == 1 { "" } else { "s" }
        ));
    }
    s
}

fn counts(t: &TestResult) -> String {
    format!(" ({})", result(t))
}

/// `900 passed, 0 failed` (or the status when the runner printed no counts), `flaky`.
pub fn result(t: &TestResult) -> String {
    let mut parts = Vec::new();
    if t.passed.is_some() || t.failed.is_some() {
        parts.push(format!(
            "{} passed, {} failed",
            t.passed.unwrap_or(0),
            t.failed.unwrap_or(0)
        ));
    } else {
        parts.push(t.status.as_str().to_string());
    }
    if t.flaky {
        parts.push("flaky".to_string());
    }
    parts.join(", ")
}

/// `ui-dev, api-dev (5 files)` or `nothing: every agent failed (rateLimited 1)`.
pub fn landed(r: &RoundRow) -> String {
    if r.landed {
        format!(
            "{} ({} file{})",
            r.kept.join(", "),
            r.files,
            if r.files == 1 { "" } else { "s" }
        )
    } else {
        let why = r.nothing_why.as_deref().unwrap_or("nothing kept");
        if r.causes.is_empty() {
            format!("nothing: {why}")
        } else {
            let c: Vec<String> = r.causes.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!("nothing: {why} ({})", c.join(", "))
        }
    }
}

/// The timeline's columns: the sim columns only when a round had sims, `Waited` only when
/// a round waited on a provider limit.
pub fn timeline_header(s: &Summary) -> Vec<&'static str> {
    let mut h = vec!["Round", "Status", "Agents", "Phase A", "Phase B", "Tests"];
    if s.totals.has_sims {
        h.extend(["Pre-Sim", "Post-Sim"]);
    }
    if s.totals.waited_ms > 0 {
        h.push("Waited");
    }
    h.extend(["Overhead", "Total", "Cost"]);
    h
}

/// One row of the timeline, unescaped, in [`timeline_header`]'s column order.
pub fn timeline_cells(s: &Summary, r: &RoundRow) -> Vec<String> {
    let mut c = vec![
        round(r),
        r.status.as_str().to_string(),
        agents(&r.agents),
        duration_ms(r.phase_a_ms),
        duration_ms(r.phase_b_ms),
        tests_cell(r),
    ];
    if s.totals.has_sims {
        c.push(opt_ms(r.pre_sim_ms));
        c.push(opt_ms(r.post_sim_ms));
    }
    if s.totals.waited_ms > 0 {
        c.push(duration_ms(r.waited_ms));
    }
    c.push(duration_ms(r.overhead_ms));
    c.push(duration_ms(r.total_ms));
    c.push(money(r.cost_usd, r.cost_known));
    c
}

pub const LANDED_HEADER: [&str; 6] = [
    "Round",
    "Landed",
    "Rejected agents",
    "Tests, first attempt",
    "Tests, committed tree",
    "Commit",
];

/// One row of "What landed": the round's kept work and its tests before and after.
pub fn landed_cells(r: &RoundRow) -> [String; 6] {
    let first = r.tests.as_ref().map(result);
    let committed = match &r.tests_committed {
        _ if r.tests.is_none() => NONE.to_string(),
        Some(t) => result(t),
        // A per-agent revert in a log older than the committed tree's record.
        None if r.landed => "not recorded".to_string(),
        None => "the base stays (round reverted)".to_string(),
    };
    [
        round(r),
        landed(r),
        if r.rejected.is_empty() {
            NONE.to_string()
        } else {
            r.rejected.join(", ")
        },
        first.unwrap_or_else(|| NONE.to_string()),
        committed,
        r.commit
            .as_deref()
            .map(|c| c.chars().take(12).collect())
            .unwrap_or_else(|| NONE.to_string()),
    ]
}

pub const FILES_HEADER: [&str; 3] = ["File", "Rounds", "Agents"];

/// One row of "All files modified".
pub fn file_cells(f: &super::model::FileRow) -> [String; 3] {
    [f.path.clone(), rounds_of(&f.rounds), f.agents.join(", ")]
}

pub const AGENT_HEADER: [&str; 14] = [
    "Agent",
    "Runs",
    "Kept",
    "Rejected",
    "Empty",
    "Failed",
    "Timeouts",
    "Conflicts",
    "Failures by cause",
    "Mean",
    "Cost",
    "Per kept change",
    "Model now",
    "Last round",
];

/// The agents table's columns: [`AGENT_HEADER`], and "Sessions" when an agent kept CLI
/// sessions (a night without them reads as before).
pub fn agent_header(s: &Summary) -> Vec<&'static str> {
    let mut h = AGENT_HEADER.to_vec();
    if with_sessions(s) {
        h.push("Sessions");
    }
    h
}

fn with_sessions(s: &Summary) -> bool {
    s.agents.iter().any(|a| a.sessions.is_some())
}

/// One row of the agents table, with the columns of [`agent_header`].
pub fn agent_row(s: &Summary, a: &AgentRow) -> Vec<String> {
    let mut cells = agent_cells(a).to_vec();
    if with_sessions(s) {
        cells.push(sessions(a));
    }
    cells
}

/// `2 resumed, 2 new; dropped in round 3: its change from round 2 broke the tests and was
/// taken out`: how the agent's sessions went, the last three drops with why.
pub fn sessions(a: &AgentRow) -> String {
    let Some(s) = &a.sessions else {
        return NONE.to_string();
    };
    let mut out = format!("{} resumed, {} new", s.resumed, s.new);
    const SHOWN: usize = 3;
    let skip = s.dropped.len().saturating_sub(SHOWN);
    for (i, d) in s.dropped.iter().skip(skip).enumerate() {
        out.push_str(if i == 0 { "; dropped" } else { ";" });
        if i == 0 && skip > 0 {
            out.push_str(&format!(" {} times, the last", s.dropped.len()));
        }
        out.push_str(&format!(" in round {}: {}", d.round, d.reason));
    }
    out
}

pub const DECISION_HEADER: [&str; 6] = ["Agent", "Included", "Skipped", "Blocked", "Kept", "Idle"];

pub const HIDDEN_HEADER: [&str; 7] = [
    "Round",
    "Pre-Sim hidden",
    "Post-Sim hidden",
    "Phase B hidden",
    "Hidden",
    "Total",
    "Serial equivalent",
];

/// `9 (6 ok, 1 skipped, 1 reverted, 1 interrupted)`: zero counts left out.
pub fn rounds_by_status(s: &Summary) -> String {
    let c = &s.totals.by_status;
    let parts: Vec<String> = [
        (c.ok, "ok"),
        (c.skipped, "skipped"),
        (c.reverted, "reverted"),
        (c.failed, "failed"),
        (c.interrupted, "interrupted"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, w)| format!("{n} {w}"))
    .collect();
    let mut out = if parts.is_empty() {
        s.totals.rounds.to_string()
    } else {
        format!("{} ({})", s.totals.rounds, parts.join(", "))
    };
    if s.totals.legacy_rounds > 0 {
        out.push_str(&format!("; {} from v8 logs", s.totals.legacy_rounds));
    }
    out
}

pub fn cost(s: &Summary) -> String {
    let t = &s.totals;
    let now = money(t.cost_usd, t.cost_known);
    match t.last_total_cost_usd {
        Some(c) if t.cost_known == Known::None && c == 0.0 => now,
        Some(c) => format!("{now} (cumulative {})", usd(c)),
        None => now,
    }
}

/// The committed trees' counts, first and last: what the branch passes, not what a first
/// attempt a revert undid passed.
pub fn tests_trend(s: &Summary) -> String {
    match (&s.totals.tests_first, &s.totals.tests_last) {
        (Some(a), Some(b)) if a.round != b.round => format!(
            "{} passed, {} failed after round {} → {} passed, {} failed after round {} (committed trees)",
            a.passed, a.failed, a.round, b.passed, b.failed, b.round
        ),
        (Some(a), _) => format!(
            "{} passed, {} failed after round {} (committed tree)",
            a.passed, a.failed, a.round
        ),
        _ => "no counts recorded for a committed tree".to_string(),
    }
}

pub fn hidden(s: &Summary) -> String {
    format!(
        "{} of sim and review time ran beside other work; a serial loop would have taken {} instead of {}",
        duration_ms(s.totals.hidden_ms),
        duration_ms(s.totals.serial_equivalent_ms),
        duration_ms(s.totals.wall_ms)
    )
}

pub fn pct(v: f64) -> String {
    format!("{v:.0}%")
}

pub fn causes(c: &std::collections::BTreeMap<String, u32>) -> String {
    if c.is_empty() {
        return NONE.to_string();
    }
    let mut v: Vec<(&String, &u32)> = c.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn agent_cells(a: &AgentRow) -> [String; 14] {
    [
        a.name.clone(),
        a.runs.to_string(),
        a.kept.to_string(),
        a.rejected.to_string(),
        a.empty.to_string(),
        a.failed.to_string(),
        a.timeouts.to_string(),
        a.conflicts.to_string(),
        causes(&a.failed_by_cause),
        duration_ms(a.mean_ms),
        match (a.budget_usd, a.spent_usd) {
            (Some(b), Some(spent)) => format!(
                "{} ({} of {} budget{})",
                money(a.cost_usd, a.cost_known),
                usd(spent),
                usd(b),
                if spent >= b { ", over" } else { "" }
            ),
            _ => money(a.cost_usd, a.cost_known),
        },
        match (a.cost_per_kept_usd, a.cost_known) {
            (Some(v), Known::Part) => format!("≥ {}", usd(v)),
            (Some(v), _) => usd(v),
            (None, _) => NONE.to_string(),
        },
        if a.model_now.is_empty() {
            NONE.to_string()
        } else {
            a.model_now.clone()
        },
        a.last_round.to_string(),
    ]
}

pub fn decision_cells(d: &super::model::DecisionRow) -> [String; 6] {
    [
        d.agent.clone(),
        d.included.to_string(),
        if d.over_budget > 0 {
            format!("{} + {} over budget", d.skipped, d.over_budget)
        } else {
            d.skipped.to_string()
        },
        d.blocked.to_string(),
        d.success_rate
            .map(|r| pct(100.0 * r))
            .unwrap_or_else(|| NONE.to_string()),
        pct(d.idle_pct),
    ]
}

pub fn hidden_cells(r: &RoundRow) -> [String; 7] {
    let mark = if r.hidden.estimated { " (est.)" } else { "" };
    [
        round(r),
        duration_ms(r.hidden.pre_sim_ms),
        duration_ms(r.hidden.post_sim_ms),
        duration_ms(r.hidden.phase_b_ms),
        format!("{}{mark}", duration_ms(r.hidden.total_ms)),
        duration_ms(r.total_ms),
        duration_ms(r.serial_equivalent_ms),
    ]
}

pub fn hidden_total_cells(s: &Summary) -> [String; 7] {
    let pre: u64 = s.rounds.iter().map(|r| r.hidden.pre_sim_ms).sum();
    let post: u64 = s.rounds.iter().map(|r| r.hidden.post_sim_ms).sum();
    let phase_b: u64 = s.rounds.iter().map(|r| r.hidden.phase_b_ms).sum();
    [
        "All".to_string(),
        duration_ms(pre),
        duration_ms(post),
        duration_ms(phase_b),
        duration_ms(s.totals.hidden_ms),
        duration_ms(s.totals.wall_ms),
        duration_ms(s.totals.serial_equivalent_ms),
    ]
}

/// `rounds 4, 7` / `none`, for lists of round numbers.
pub fn round_list(rounds: &[u32]) -> String {
    if rounds.is_empty() {
        return "none".to_string();
    }
    const MAX: usize = 20;
    let mut s: Vec<String> = rounds.iter().take(MAX).map(u32::to_string).collect();
    if rounds.len() > MAX {
        s.push(format!("… ({} more)", rounds.len() - MAX));
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_round_lists_are_cut() {
        assert_eq!(round_list(&[]), "none");
        assert_eq!(round_list(&[4, 7]), "4, 7");
        let many: Vec<u32> = (1..=25).collect();
        assert!(round_list(&many).ends_with("… (5 more)"));
    }
}
