//! Who a round's outcome took in and who it took out, read from one round log: whether a run's
//! change went in, the agents a revert rejected, why a run failed in one word, the kept ref a
//! message names.
//!
//! Its own module because the rows of every part of the summary (rounds, agents, files,
//! attention) ask the same questions and must get the same answers; it knows the round log and
//! nothing of the report's model, so the model can count with it.

use super::load::Round;
use crate::roundlog::{Phase, RoundStatus, RunStatus, Strategy};

/// Whether a run's change went into the round's tree: it ended `ok`, or it failed by itself and
/// its change was tested with the others' (`changeTested`).
pub(super) fn went_in(a: &crate::roundlog::AgentEntry) -> bool {
    a.status == RunStatus::Ok || a.change_tested
}

/// The names of the agents whose change a revert took out: the culprits of a per-agent revert,
/// every code agent whose change went in (`ok`, or `changeTested`) on a whole-round revert,
/// and the review agents that ran beside the tests of a reverted round, their work kept aside
/// (`aside`).
pub fn rejected_agents(r: &Round) -> Vec<String> {
    let log = &r.log;
    let mut out = code_rejected(r);
    out.extend(
        log.agents
            .iter()
            .filter(|a| a.status == RunStatus::Ok && a.aside.is_some())
            .map(|a| a.name.clone()),
    );
    out
}

fn code_rejected(r: &Round) -> Vec<String> {
    let log = &r.log;
    let ok_code = |a: &&crate::roundlog::AgentEntry| a.phase == Phase::Code && went_in(a);
    match &log.revert {
        // Interrupted before it settled: nothing was taken out (nor landed).
        Some(rv) if rv.strategy == Strategy::Interrupted => Vec::new(),
        Some(rv) if rv.strategy == Strategy::PerAgent => log
            .agents
            .iter()
            .filter(ok_code)
            .filter(|a| rv.culprits.contains(&a.name))
            .map(|a| a.name.clone())
            .collect(),
        Some(_) => log
            .agents
            .iter()
            .filter(ok_code)
            .map(|a| a.name.clone())
            .collect(),
        None if log.reverted || log.status == RoundStatus::Reverted => log
            .agents
            .iter()
            .filter(ok_code)
            .map(|a| a.name.clone())
            .collect(),
        None => Vec::new(),
    }
}

/// Why a failed run failed, in one word: the log's `cause` (issue 17), else its status.
pub(super) fn cause_of(r: &Round, i: usize) -> String {
    r.extra
        .causes
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or_else(|| r.log.agents[i].status.as_str().to_string())
}

/// The `refs/orch/...` a message names (orch writes "kept in refs/orch/..." into `error`).
pub fn kept_ref_in(text: &str) -> Option<String> {
    let at = text.find("refs/orch/")?;
    let r: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ';' | ',' | ')' | '"' | '\''))
        .collect();
    Some(r.trim_end_matches('.').to_string())
}
