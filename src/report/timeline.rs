//! Time within one round: the Gantt bars (agents, sims, tests, reviews, from their start times
//! or estimated when a log lacks them) and the time pipelining hid ([`overlap_ms`], [`hidden`]):
//! the sim and Phase B time that ran beside other work, which a serial loop would have added.
//!
//! Pure arithmetic over spans of one round log, unit-tested here without any file.

use super::load::Round;
use super::model::{Bar, BarKind, BarStatus, Hidden};
use crate::roundlog::{Phase, StepStatus};

/// A half-open span of milliseconds from the round's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn new(start: u64, elapsed: u64) -> Span {
        Span {
            start,
            end: start.saturating_add(elapsed),
        }
    }

    fn intersect(self, other: Span) -> u64 {
        self.end
            .min(other.end)
            .saturating_sub(self.start.max(other.start))
    }
}

/// How much of `target` lies under the union of `others` (overlapping `others` count once).
pub fn overlap_ms(target: Span, others: &[Span]) -> u64 {
    let mut spans: Vec<Span> = others.iter().copied().filter(|s| s.end > s.start).collect();
    spans.sort_unstable();
    let mut total = 0;
    let mut merged: Option<Span> = None;
    for s in spans {
        merged = match merged {
            Some(m) if s.start <= m.end => Some(Span {
                start: m.start,
                end: m.end.max(s.end),
            }),
            Some(m) => {
                total += m.intersect(target);
                Some(s)
            }
            None => Some(s),
        };
    }
    if let Some(m) = merged {
        total += m.intersect(target);
    }
    total
}

/// The time of round `r` that ran beside other work: the sims', and Phase B's beside the
/// tests. v8 ran its sims serially: nothing hid.
pub fn hidden(r: &Round) -> Hidden {
    if r.is_legacy() {
        return Hidden::default();
    }
    let log = &r.log;
    let mut h = Hidden::default();

    if let Some(pre) = log.sims.pre.as_ref().filter(|p| p.elapsed_ms > 0) {
        let code: Vec<(usize, Span)> = log
            .agents
            .iter()
            .enumerate()
            .filter(|(_, a)| a.phase == Phase::Code)
            .map(|(i, a)| (i, Span::new(a.start_ms, a.elapsed_ms)))
            .collect();
        if !code.is_empty() {
            let known = r.starts.pre_sim
                && code
                    .iter()
                    .all(|(i, _)| r.starts.agents.get(*i).copied().unwrap_or(false));
            if known {
                let spans: Vec<Span> = code.iter().map(|(_, s)| *s).collect();
                h.pre_sim_ms = overlap_ms(Span::new(pre.start_ms, pre.elapsed_ms), &spans);
            } else {
                h.pre_sim_ms = pre.elapsed_ms.min(log.timing.phase_a);
                h.estimated = true;
            }
        }
    }

    if let (Some(post), Some(tests)) = (
        log.sims.post.as_ref().filter(|p| p.elapsed_ms > 0),
        log.tests.as_ref(),
    ) {
        if r.starts.post_sim && r.starts.tests {
            h.post_sim_ms = overlap_ms(
                Span::new(post.start_ms, post.elapsed_ms),
                &[Span::new(tests.start_ms, tests.elapsed_ms)],
            );
        } else {
            h.post_sim_ms = post.elapsed_ms.min(tests.elapsed_ms);
            h.estimated = true;
        }
    }
    // Measured by the engine from the two stages' own start and end.
    h.phase_b_ms = log.timing.beside;
    h.total_ms = h.pre_sim_ms + h.post_sim_ms + h.phase_b_ms;
    h
}

/// The Gantt bars of one round. Code agents and the pre-sim start with the round; the tests and
/// the post-sim start when Phase A ends; review agents when the tests stage ends, or beside it
/// (their logged start says). A log without a start time gets that place, marked `estimated`. v8 ran sims after Phase A, then tests.
pub(super) fn bars(r: &Round) -> Vec<Bar> {
    let log = &r.log;
    let t = &log.timing;
    let serial = r.serial_sims_ms.unwrap_or(0);
    let tests_at = t.phase_a + serial;
    let review_at = tests_at + t.tests;
    let mut out = Vec::new();
    pre_sim_bars(r, &mut out);
    let mut code: Vec<Bar> = (0..log.agents.len())
        .filter(|i| log.agents[*i].phase == Phase::Code)
        .map(|i| agent_bar(r, i, 0))
        .collect();
    code.sort_by_key(|b| b.start_ms);
    out.extend(code);
    test_and_post_sim_bars(r, tests_at, &mut out);
    review_bars(r, review_at, &mut out);
    out
}

/// The sims' bar before the agents: the pre-sim, or a v8 log's serial sims.
fn pre_sim_bars(r: &Round, out: &mut Vec<Bar>) {
    let log = &r.log;
    let t = &log.timing;
    let serial = r.serial_sims_ms.unwrap_or(0);
    if let Some(pre) = &log.sims.pre {
        let (kind, label, known, fallback) = if r.is_legacy() {
            (
                BarKind::Sims,
                "sims (serial)",
                r.starts.serial_sims.is_some(),
                t.phase_a,
            )
        } else {
            (BarKind::PreSim, "pre-sim", r.starts.pre_sim, 0)
        };
        out.push(Bar {
            label: label.to_string(),
            kind,
            status: BarStatus::Step(pre.status),
            start_ms: if known { pre.start_ms } else { fallback },
            elapsed_ms: pre.elapsed_ms,
            estimated: !known,
        });
    } else if r.is_legacy() && serial > 0 {
        out.push(Bar {
            label: "sims (serial)".to_string(),
            kind: BarKind::Sims,
            status: BarStatus::Step(StepStatus::Ok),
            start_ms: t.phase_a,
            elapsed_ms: serial,
            estimated: true,
        });
    }
}

/// Agent `i`'s bar; `fallback` is where it starts when its log has no start time.
fn agent_bar(r: &Round, i: usize, fallback: u64) -> Bar {
    let log = &r.log;
    let a = &log.agents[i];
    let known = r.starts.agents.get(i).copied().unwrap_or(false);
    Bar {
        label: if a.aside.is_some() {
            format!("{} (kept aside)", a.name)
        } else {
            a.name.clone()
        },
        kind: BarKind::Agent,
        status: BarStatus::Run(a.status),
        start_ms: if known { a.start_ms } else { fallback },
        elapsed_ms: a.elapsed_ms,
        estimated: !known,
    }
}

/// The tests' bar, a revert's extra test runs after it, and the post-sim's bar.
fn test_and_post_sim_bars(r: &Round, tests_at: u64, out: &mut Vec<Bar>) {
    let log = &r.log;
    let t = &log.timing;
    if let Some(tests) = &log.tests {
        out.push(Bar {
            label: "tests".to_string(),
            kind: BarKind::Tests,
            status: BarStatus::Step(tests.status),
            start_ms: if r.starts.tests {
                tests.start_ms
            } else {
                tests_at
            },
            elapsed_ms: tests.elapsed_ms,
            estimated: !r.starts.tests,
        });
        // A revert's extra runs follow the first, one after another.
        let mut next = out.last().map_or(tests_at, |b| b.start_ms + b.elapsed_ms);
        for run in log.revert.iter().flat_map(|rv| &rv.test_runs) {
            let start = run.start_ms.unwrap_or(next);
            out.push(Bar {
                label: format!("tests without {}", run.without.join(", ")),
                kind: BarKind::RevertTests,
                status: BarStatus::Step(run.status),
                start_ms: start,
                elapsed_ms: run.elapsed_ms,
                estimated: run.start_ms.is_none(),
            });
            next = start + run.elapsed_ms;
        }
    }
    if let Some(post) = &log.sims.post {
        out.push(Bar {
            label: "post-sim".to_string(),
            kind: BarKind::PostSim,
            status: BarStatus::Step(post.status),
            start_ms: if r.starts.post_sim {
                post.start_ms
            } else {
                t.phase_a
            },
            elapsed_ms: post.elapsed_ms,
            estimated: !r.starts.post_sim,
        });
    }
}

/// The review agents' bars, in the order they started.
fn review_bars(r: &Round, review_at: u64, out: &mut Vec<Bar>) {
    let log = &r.log;
    // Review agents where they ran: beside the tests (`phaseB: "besideTests"`) or after them;
    // a run beside the tests that a revert kept aside, before the agent ran again, has its own
    // bar.
    let mut review: Vec<Bar> = (0..log.agents.len())
        .filter(|i| log.agents[*i].phase == Phase::Review)
        .map(|i| agent_bar(r, i, review_at))
        .collect();
    review.extend(log.agents.iter().filter_map(|a| {
        let b = a.beside_run.as_ref()?;
        Some(Bar {
            label: format!("{} (beside the tests, kept aside)", b.name),
            kind: BarKind::Agent,
            status: BarStatus::Run(b.status),
            start_ms: b.start_ms,
            elapsed_ms: b.elapsed_ms,
            estimated: false,
        })
    }));
    review.sort_by_key(|b| b.start_ms);
    out.extend(review);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start: u64, elapsed: u64) -> Span {
        Span::new(start, elapsed)
    }

    #[test]
    fn overlap_counts_overlapping_neighbours_once() {
        // Two agents that overlap each other cover 0..150; the sim runs 0..100.
        assert_eq!(overlap_ms(s(0, 100), &[s(0, 80), s(50, 100)]), 100);
    }

    #[test]
    fn overlap_skips_gaps_between_runs() {
        // Agents 0..30 and 60..90, sim 10..80: under agents 10..30 and 60..80.
        assert_eq!(overlap_ms(s(10, 70), &[s(60, 30), s(0, 30)]), 40);
    }

    #[test]
    fn overlap_of_nothing_is_nothing() {
        assert_eq!(overlap_ms(s(0, 100), &[]), 0);
        assert_eq!(overlap_ms(s(0, 0), &[s(0, 100)]), 0);
        assert_eq!(overlap_ms(s(200, 50), &[s(0, 100)]), 0);
        assert_eq!(overlap_ms(s(0, 100), &[s(40, 0)]), 0);
    }

    #[test]
    fn overlap_never_exceeds_the_target() {
        assert_eq!(overlap_ms(s(10, 20), &[s(0, 1000), s(5, 5)]), 20);
    }

    fn round(text: &str) -> Round {
        super::super::load::parse(1, std::path::Path::new("round-0001.json"), text.as_bytes())
            .expect("parses")
            .0
    }

    const V9: &str = r#"{"schema": 9, "round": 1, "mission": "m", "status": "ok",
        "startedAt": "", "finishedAt": "", "base": "", "commit": null,
        "agents": [AGENTS],
        "sims": {"pre": {"status": "ok", PRE "elapsedMs": 40000},
                 "post": {"status": "ok", POST "elapsedMs": 30000}},
        "tests": {"status": "passed", TESTS "elapsedMs": 20000},
        "timing": {"total": 100000, "phaseA": 60000, "phaseB": 0, "tests": 30000,
                   "preSim": 40000, "postSim": 30000, "overhead": 10000},
        "costUsd": 0, "totalCostUsd": 0}"#;

    #[test]
    fn hidden_time_is_measured_from_start_times() {
        let text = V9
            .replace("AGENTS", r#"{"name": "a", "phase": "code", "status": "ok", "startMs": 10000, "elapsedMs": 50000}"#)
            .replace("PRE", r#""startMs": 0,"#)
            .replace("POST", r#""startMs": 60000,"#)
            .replace("TESTS", r#""startMs": 60000,"#);
        let h = hidden(&round(&text));
        // Pre-sim 0..40000 under the agent 10000..60000; post-sim 60000..90000 under the tests
        // 60000..80000.
        assert_eq!(
            (h.pre_sim_ms, h.post_sim_ms, h.estimated),
            (30000, 20000, false)
        );
    }

    #[test]
    fn hidden_time_without_start_times_falls_back_to_the_shorter_side() {
        let text = V9
            .replace(
                "AGENTS",
                r#"{"name": "a", "phase": "code", "status": "ok", "elapsedMs": 50000}"#,
            )
            .replace("PRE", r#""startMs": 0,"#)
            .replace("POST", "")
            .replace("TESTS", "");
        let h = hidden(&round(&text));
        // min(pre-sim, Phase A) and min(post-sim, tests).
        assert_eq!(
            (h.pre_sim_ms, h.post_sim_ms, h.estimated),
            (40000, 20000, true)
        );
    }

    #[test]
    fn a_pre_sim_with_no_code_agent_beside_it_hid_nothing() {
        let text = V9
            .replace("AGENTS", r#"{"name": "r", "phase": "review", "status": "ok", "startMs": 90000, "elapsedMs": 5000}"#)
            .replace("PRE", r#""startMs": 0,"#)
            .replace("POST", r#""startMs": 60000,"#)
            .replace("TESTS", r#""startMs": 60000,"#);
        assert_eq!(hidden(&round(&text)).pre_sim_ms, 0);
    }

    #[test]
    fn spans_do_not_overflow() {
        assert_eq!(overlap_ms(s(u64::MAX - 1, 10), &[s(0, u64::MAX)]), 1);
    }
}
