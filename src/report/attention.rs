//! What needs a person's eye in the morning: the attention rows (reverts, conflicts, failures,
//! timeouts, interrupts, ownership, kept-aside work, agents over budget), one per round and
//! thing with repeats of one failure merged, and the review block (the git commands that show
//! the night's work and each kept ref).
//!
//! Apart from the rest of the summary because it reads the logs' messages and refs rather than
//! their figures.

use super::load::{Loaded, Round};
use super::model::{AttentionRow, Review, ReviewCommand};
use super::outcome::kept_ref_in;
use crate::roundlog::{RoundStatus, RunStatus, Strategy};

/// What needs a person's eye, round by round, with repeats of one failure merged into one row.
pub(super) fn attention_rows(loaded: &Loaded) -> Vec<AttentionRow> {
    let mut out = Vec::new();
    for r in &loaded.rounds {
        round_outcome_rows(r, &mut out);
        kept_aside_rows(r, &mut out);
        over_budget_rows(r, &mut out);
        agent_attention_rows(r, &mut out);
    }
    // The same failure of the same agent, round after round, is one row.
    let mut merged: Vec<AttentionRow> = Vec::with_capacity(out.len());
    for row in out {
        let same = merged.iter_mut().find(|m| {
            m.kept_ref.is_none()
                && row.kept_ref.is_none()
                && m.kind == row.kind
                && m.agent == row.agent
                && m.detail == row.detail
        });
        match same {
            Some(m) => m.rounds.push(row.round),
            None => merged.push(row),
        }
    }
    merged
}

/// The round's own outcome when it needs a look: reverted (whole or per agent) or interrupted.
fn round_outcome_rows(r: &Round, out: &mut Vec<AttentionRow>) {
    let log = &r.log;
    let round = log.round;
    // A culprit search stopped by an interrupt reverted nothing: the round reads as
    // interrupted (below).
    if let Some(rv) = log
        .revert
        .as_ref()
        .filter(|rv| rv.strategy != Strategy::Interrupted)
    {
        let runs = rv.test_runs.len();
        let detail = match rv.strategy {
            Strategy::PerAgent => format!(
                "per-agent revert: took out {} after {runs} extra test run{}; the other agents' work was kept{}",
                rv.culprits.join(", "),
                if runs == 1 { "" } else { "s" },
                match (rv.culprits.len(), log.kept_ref.as_deref()) {
                    (1, Some(k)) => format!(" ({k})"),
                    (_, Some(_)) => format!(" (each under refs/orch/rejected/round-{round}/AGENT)"),
                    _ => String::new(),
                }
            ),
            _ => format!(
                "the whole round was reverted{}{}",
                if runs > 0 { format!(" after {runs} extra test runs found no agent whose work could be kept") } else { String::new() },
                log.kept_ref.as_deref().map(|k| format!("; kept in {k}")).unwrap_or_default()
            ),
        };
        out.push(AttentionRow {
            round,
            rounds: vec![round],
            kind: "revert".into(),
            agent: None,
            detail,
            kept_ref: log.kept_ref.clone(),
        });
    } else if log.reverted {
        out.push(AttentionRow {
            round,
            rounds: vec![round],
            kind: "revert".into(),
            agent: None,
            detail: format!(
                "the whole round was reverted{}",
                log.kept_ref
                    .as_deref()
                    .map(|k| format!("; kept in {k}"))
                    .unwrap_or_default()
            ),
            kept_ref: log.kept_ref.clone(),
        });
    } else if log.status == RoundStatus::Interrupted {
        out.push(AttentionRow {
            round,
            rounds: vec![round],
            kind: "interrupted".into(),
            agent: None,
            detail: format!(
                "the round was interrupted{}{}{}",
                log.stop_reason
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
                match log.revert.as_ref().map(|rv| rv.test_runs.len()) {
                    Some(n) => format!(
                        " during the per-agent revert's culprit search, after {n} extra test run{}",
                        if n == 1 { "" } else { "s" }
                    ),
                    None => String::new(),
                },
                log.kept_ref
                    .as_deref()
                    .map(|k| format!("; its tree is kept in {k}"))
                    .unwrap_or_default()
            ),
            kept_ref: log.kept_ref.clone(),
        });
    }
}

/// Review work that ran beside the tests of a reverted round and was kept aside, as one row.
fn kept_aside_rows(r: &Round, out: &mut Vec<AttentionRow>) {
    let log = &r.log;
    let round = log.round;
    // Review work done beside the tests of a round that was then reverted: kept aside.
    let aside: Vec<(&crate::roundlog::AgentEntry, bool)> = log
        .agents
        .iter()
        .filter_map(|a| match (&a.aside, &a.beside_run) {
            (Some(_), _) => Some((a, false)),
            (None, Some(b)) if b.aside.is_some() => Some((b.as_ref(), true)),
            _ => None,
        })
        .collect();
    if !aside.is_empty() {
        let names: Vec<String> = aside
            .iter()
            .map(
                |(a, _)| match a.aside.as_ref().and_then(|x| x.kept_ref.as_deref()) {
                    Some(r) => format!("{} ({r})", a.name),
                    None => format!("{} (no file changed)", a.name),
                },
            )
            .collect();
        let reason = aside[0]
            .0
            .aside
            .as_ref()
            .map(|x| x.reason.as_str())
            .unwrap_or("");
        let why = reason
            .split(": its work")
            .next()
            .unwrap_or(reason)
            .trim_start_matches("ran beside the tests, and ");
        let refs: Vec<&str> = aside
            .iter()
            .filter_map(|(a, _)| a.aside.as_ref()?.kept_ref.as_deref())
            .collect();
        out.push(AttentionRow {
            round,
            rounds: vec![round],
            kind: "kept aside".into(),
            agent: None,
            detail: format!(
                "review work kept aside: Phase B ran beside the tests and {why}, so it was not merged: {}{}",
                names.join(", "),
                if aside.iter().any(|(_, again)| *again) {
                    "; they ran again after the revert (phaseBAfterRevert)"
                } else {
                    ""
                }
            ),
            kept_ref: (refs.len() == 1).then(|| refs[0].to_string()),
        });
    }
}

/// One row per agent whose budget is spent while its tasks wait on it.
fn over_budget_rows(r: &Round, out: &mut Vec<AttentionRow>) {
    let log = &r.log;
    let round = log.round;
    // An agent over its budgetUsd whose tasks stay pending: nothing runs them until a
    // person raises the budget or names who takes them.
    for d in log.decisions.iter().filter(|d| !d.tasks_waiting.is_empty()) {
        out.push(AttentionRow {
            round,
            rounds: vec![round],
            kind: "over budget".into(),
            agent: Some(d.agent.clone()),
            detail: format!(
                "its budgetUsd is spent and its pending task{} {} wait{} on it: raise its budgetUsd, or name an agent in its overBudgetTasksTo",
                if d.tasks_waiting.len() == 1 { "" } else { "s" },
                d.tasks_waiting.join(", "),
                if d.tasks_waiting.len() == 1 { "s" } else { "" }
            ),
            kept_ref: None,
        });
    }
}

/// An agent's conflict, failure, timeout or cancellation with work kept, and its ownership breaches.
fn agent_attention_rows(r: &Round, out: &mut Vec<AttentionRow>) {
    let log = &r.log;
    let round = log.round;
    for (i, a) in log.agents.iter().enumerate() {
        let kept_ref = a.error.as_deref().and_then(kept_ref_in);
        match a.status {
            RunStatus::Conflict => out.push(AttentionRow {
                round,
                rounds: vec![round],
                kind: "conflict".into(),
                agent: Some(a.name.clone()),
                detail: a
                    .error
                    .clone()
                    .unwrap_or_else(|| "not merged: a conflict".into()),
                kept_ref,
            }),
            RunStatus::Failed | RunStatus::Timeout | RunStatus::Cancelled => {
                let cause = r.extra.causes.get(i).cloned().flatten();
                let mut detail = match a.status {
                    // Stopped as stuck (issue 31): as at a timeout, but not by the clock.
                    RunStatus::Timeout if matches!(cause.as_deref(), Some("idle" | "loop")) => {
                        format!(
                            "stopped as stuck after {}",
                            crate::units::duration_ms(a.elapsed_ms)
                        )
                    }
                    RunStatus::Timeout => format!(
                        "timed out after {}",
                        crate::units::duration_ms(a.elapsed_ms)
                    ),
                    RunStatus::Cancelled => "cancelled".to_string(),
                    _ => match a.exit_code {
                        Some(c) => format!("failed (exit code {c})"),
                        None => "failed".to_string(),
                    },
                };
                if let Some(c) = &cause {
                    detail.push_str(&format!(", cause {c}"));
                }
                match &a.error {
                    Some(e) => {
                        detail.push_str(": ");
                        detail.push_str(e);
                    }
                    None if cause.is_none() => detail.push_str("; the log records no reason"),
                    None => {}
                }
                // A cancelled run of an interrupted round is said once, for the round,
                // unless it left work in a ref.
                if a.status != RunStatus::Cancelled || kept_ref.is_some() {
                    out.push(AttentionRow {
                        round,
                        rounds: vec![round],
                        kind: a.status.as_str().into(),
                        agent: Some(a.name.clone()),
                        detail,
                        kept_ref,
                    });
                }
            }
            _ => {}
        }
        if !a.ownership_violations.is_empty() {
            out.push(AttentionRow {
                round,
                rounds: vec![round],
                kind: "ownership".into(),
                agent: Some(a.name.clone()),
                detail: format!(
                    "changed files it does not own: {}",
                    a.ownership_violations.join(", ")
                ),
                kept_ref: None,
            });
        }
    }
}

pub(super) fn review(loaded: &Loaded, attention: &[AttentionRow]) -> Review {
    let base = loaded
        .rounds
        .iter()
        .map(|r| r.log.base.as_str())
        .find(|b| !b.is_empty())
        .unwrap_or_default()
        .to_string();
    let head = loaded
        .rounds
        .iter()
        .rev()
        .find_map(|r| r.log.commit.clone())
        .unwrap_or_else(|| "HEAD".to_string());
    let short = |c: &str| {
        if c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()) {
            c[..12].to_string()
        } else {
            c.to_string()
        }
    };
    let mut commands = Vec::new();
    if !base.is_empty() {
        let range = format!("{}..{}", short(&base), short(&head));
        commands.push(ReviewCommand {
            command: format!("git log --oneline {range}"),
            what: "the night's commits, one per round and phase".into(),
        });
        commands.push(ReviewCommand {
            command: format!("git diff --stat {range}"),
            what: "every file the night changed".into(),
        });
        commands.push(ReviewCommand {
            command: format!("git diff {range}"),
            what: "the whole change".into(),
        });
    }
    let mut seen: Vec<String> = Vec::new();
    let mut show = |r: &str, what: String| {
        if !seen.iter().any(|s| s == r) {
            seen.push(r.to_string());
            commands.push(ReviewCommand {
                command: format!("git show --stat {r}"),
                what,
            });
        }
    };
    for a in attention {
        let Some(r) = &a.kept_ref else { continue };
        let what = format!(
            "round {} {}{}",
            a.round,
            a.kind,
            a.agent
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        show(r, what);
    }
    // Every other ref a log names: each culprit of a per-agent revert, say.
    for r in &loaded.rounds {
        for a in &r.log.agents {
            if let Some(k) = a.error.as_deref().and_then(kept_ref_in) {
                show(&k, format!("round {} {}", r.log.round, a.name));
            }
        }
    }
    Review {
        base,
        head,
        commands,
    }
}
