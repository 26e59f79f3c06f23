//! The report's one model: [`Summary`], built once from the loaded round logs and handed to every
//! exporter, so Markdown, JSON, HTML and SVG can never disagree on a figure.
//!
//! Everything here is plain numbers and strings; formatting (durations, money, escaping) is the
//! exporters' business. The one computation worth its own name is the time pipelining hid
//! ([`overlap_ms`]): the part of a sim's run that lay under other work, which a serial loop
//! (v8) would have added to the round.
//!
//! The JSON exporter serializes this type as it is, so field names are a contract with scripts:
//! rename nothing without bumping [`REPORT_SCHEMA`].

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::load::{Loaded, Round};
use crate::roundlog::{Phase, RoundStatus, RunStatus, StepStatus};

/// Version of the JSON report's shape (`reportSchema`).
pub const REPORT_SCHEMA: u32 = 1;

/// Everything the report shows. Serialized (camelCase) as `orch report --format json`:
///
/// - `reportSchema` (number), `mission` (string, the last round's), `stateDir` (string)
/// - `totals`: `rounds`, `legacyRounds` (v8 logs), `byStatus` {`ok`, `skipped`, `reverted`,
///   `failed`, `interrupted`}, `firstRound`/`lastRound` (null when no round parsed), `wallMs`
///   (sum of `timing.total`), `costUsd` (sum of round costs), `lastTotalCostUsd` (the last
///   round's cumulative `totalCostUsd`), `testsFirst`/`testsLast` ({`round`, `passed`, `failed`}
///   or null), `flakyRounds` (round numbers), `stopReason` (the last round's, or null),
///   `hiddenMs` (sim time that ran beside other work), `serialEquivalentMs` (`wallMs + hiddenMs`)
/// - `rounds[]`: `round`, `schema`, `legacy`, `status`, `startedAt`, `agents` {`total`, `ok`,
///   `empty`, `failed`, `timeout`, `conflict`, `cancelled`}, `phaseAMs`, `phaseBMs`, `testsMs`,
///   `preSimMs` (a v8 round's serial sims), `postSimMs` (null for v8 or no post-sim),
///   `overheadMs`, `totalMs`, `costUsd`, `tests` ({`status`, `passed`, `failed`, `flaky`,
///   `regression`} or null), `hidden` {`preSimMs`, `postSimMs`, `totalMs`, `estimated`},
///   `serialEquivalentMs`, `stopReason`, `bars[]` (the Gantt chart: {`label`, `kind` =
///   `agent`|`preSim`|`postSim`|`sims`|`tests`, `status`, `startMs`, `elapsedMs`, `estimated`})
/// - `agents[]`: `name`, `runs`, `ok`, `empty`, `failed`, `timeouts`, `conflicts`, `cancelled`,
///   `meanMs`, `longestMs`, `costUsd`, `modelNow`, `lastRound`
/// - `decisions[]` (empty when no log has decisions): `agent`, `rounds`, `included`, `skipped`,
///   `blocked`, `ok`, `successRate` (ok / included, null when never included), `idlePct`
/// - `attention[]`: what a person should look at in the morning, one entry per round and
///   thing: {`round`, `kind` (`revert`, `conflict`, `ownership`), `agent` (null for a whole
///   round), `detail`}
/// - `warnings[]`: {`file`, `message`} for each log skipped or read with a caveat
///
/// Times are milliseconds, money is US dollars as a number.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub report_schema: u32,
    pub mission: String,
    pub state_dir: String,
    pub totals: Totals,
    pub rounds: Vec<RoundRow>,
    pub agents: Vec<AgentRow>,
    pub decisions: Vec<DecisionRow>,
    pub attention: Vec<AttentionRow>,
    pub warnings: Vec<WarningRow>,
}

/// Something a person should look at: a revert (and its culprits), a merge conflict, a change
/// outside an agent's files.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttentionRow {
    pub round: u32,
    pub kind: String,
    pub agent: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub rounds: u32,
    pub legacy_rounds: u32,
    pub by_status: StatusCounts,
    pub first_round: Option<u32>,
    pub last_round: Option<u32>,
    pub wall_ms: u64,
    pub cost_usd: f64,
    pub last_total_cost_usd: Option<f64>,
    pub tests_first: Option<TestPoint>,
    pub tests_last: Option<TestPoint>,
    pub flaky_rounds: Vec<u32>,
    pub stop_reason: Option<String>,
    pub hidden_ms: u64,
    pub serial_equivalent_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    pub ok: u32,
    pub skipped: u32,
    pub reverted: u32,
    pub failed: u32,
    pub interrupted: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestPoint {
    pub round: u32,
    pub passed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundRow {
    pub round: u32,
    pub schema: u32,
    pub legacy: bool,
    pub status: RoundStatus,
    pub started_at: String,
    pub agents: RunCounts,
    pub phase_a_ms: u64,
    pub phase_b_ms: u64,
    pub tests_ms: Option<u64>,
    pub pre_sim_ms: Option<u64>,
    pub post_sim_ms: Option<u64>,
    pub overhead_ms: u64,
    pub total_ms: u64,
    pub cost_usd: f64,
    pub tests: Option<TestResult>,
    pub hidden: Hidden,
    pub serial_equivalent_ms: u64,
    pub stop_reason: Option<String>,
    pub bars: Vec<Bar>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    pub total: u32,
    pub ok: u32,
    pub empty: u32,
    pub failed: u32,
    pub timeout: u32,
    pub conflict: u32,
    pub cancelled: u32,
}

impl RunCounts {
    fn add(&mut self, s: RunStatus) {
        self.total += 1;
        *match s {
            RunStatus::Ok => &mut self.ok,
            RunStatus::Empty => &mut self.empty,
            RunStatus::Failed => &mut self.failed,
            RunStatus::Timeout => &mut self.timeout,
            RunStatus::Conflict => &mut self.conflict,
            RunStatus::Cancelled => &mut self.cancelled,
        } += 1;
    }

    /// The non-zero counts in status order, for "3 (2 ok, 1 failed)".
    pub fn parts(&self) -> Vec<(u32, &'static str)> {
        [
            (self.ok, "ok"),
            (self.empty, "empty"),
            (self.failed, "failed"),
            (self.timeout, "timeout"),
            (self.conflict, "conflict"),
            (self.cancelled, "cancelled"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub status: StepStatus,
    pub passed: Option<u64>,
    pub failed: Option<u64>,
    pub flaky: bool,
    pub regression: bool,
}

/// Sim time that ran beside other work in one round.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hidden {
    /// Pre-sim time under Phase A's code agents.
    pub pre_sim_ms: u64,
    /// Post-sim time under the tests.
    pub post_sim_ms: u64,
    pub total_ms: u64,
    /// Start times were missing, so the figure is `min(sim, stage)` rather than measured.
    pub estimated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BarKind {
    Agent,
    PreSim,
    PostSim,
    /// A v8 round's serial sims run.
    Sims,
    Tests,
}

/// One bar of a round's Gantt chart, in milliseconds from the round's start.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bar {
    pub label: String,
    pub kind: BarKind,
    pub status: String,
    pub start_ms: u64,
    pub elapsed_ms: u64,
    /// The log had no start time; the bar is placed where the pipeline would have put it.
    pub estimated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRow {
    pub name: String,
    pub runs: u32,
    pub ok: u32,
    pub empty: u32,
    pub failed: u32,
    pub timeouts: u32,
    pub conflicts: u32,
    pub cancelled: u32,
    pub mean_ms: u64,
    pub longest_ms: u64,
    pub cost_usd: f64,
    pub model_now: String,
    pub last_round: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRow {
    pub agent: String,
    /// Rounds whose log has decisions.
    pub rounds: u32,
    pub included: u32,
    pub skipped: u32,
    pub blocked: u32,
    /// Runs that ended `ok` in rounds where the agent was included.
    pub ok: u32,
    pub success_rate: Option<f64>,
    pub idle_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarningRow {
    pub file: String,
    pub message: String,
}

/// Builds the summary. `state_json` is the parsed `state.json`, used for each agent's current
/// model (`agents.<name>.model`).
pub fn summarize(loaded: &Loaded, state_json: Option<&Value>) -> Summary {
    let rounds: Vec<RoundRow> = loaded.rounds.iter().map(round_row).collect();
    let totals = totals(loaded, &rounds);
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
        attention: attention_rows(loaded),
        warnings: loaded
            .warnings
            .iter()
            .map(|w| WarningRow {
                file: w.file.display().to_string(),
                message: w.message.clone(),
            })
            .collect(),
        rounds,
    }
}

fn attention_rows(loaded: &Loaded) -> Vec<AttentionRow> {
    let mut out = Vec::new();
    for r in &loaded.rounds {
        let log = &r.log;
        let round = log.round;
        if let Some(rv) = &log.revert {
            let runs = rv.test_runs.len();
            let detail = match rv.strategy.as_str() {
                "per-agent" => format!(
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
                kind: "revert".into(),
                agent: None,
                detail,
            });
        } else if log.reverted {
            out.push(AttentionRow {
                round,
                kind: "revert".into(),
                agent: None,
                detail: format!(
                    "the whole round was reverted{}",
                    log.kept_ref
                        .as_deref()
                        .map(|k| format!("; kept in {k}"))
                        .unwrap_or_default()
                ),
            });
        }
        for a in &log.agents {
            if a.status == RunStatus::Conflict {
                out.push(AttentionRow {
                    round,
                    kind: "conflict".into(),
                    agent: Some(a.name.clone()),
                    detail: a
                        .error
                        .clone()
                        .unwrap_or_else(|| "not merged: a conflict".into()),
                });
            }
            if !a.ownership_violations.is_empty() {
                out.push(AttentionRow {
                    round,
                    kind: "ownership".into(),
                    agent: Some(a.name.clone()),
                    detail: format!(
                        "changed files it does not own: {}",
                        a.ownership_violations.join(", ")
                    ),
                });
            }
        }
    }
    out
}

fn totals(loaded: &Loaded, rows: &[RoundRow]) -> Totals {
    let mut t = Totals {
        rounds: rows.len() as u32,
        first_round: rows.first().map(|r| r.round),
        last_round: rows.last().map(|r| r.round),
        ..Totals::default()
    };
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
        t.wall_ms += r.total_ms;
        t.cost_usd += r.cost_usd;
        t.hidden_ms += r.hidden.total_ms;
        if let Some(tests) = &r.tests {
            if tests.flaky {
                t.flaky_rounds.push(r.round);
            }
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
    t.serial_equivalent_ms = t.wall_ms + t.hidden_ms;
    if let Some(last) = loaded.rounds.last() {
        t.last_total_cost_usd = Some(last.log.total_cost_usd);
        t.stop_reason = last.log.stop_reason.clone();
    }
    t
}

fn round_row(r: &Round) -> RoundRow {
    let log = &r.log;
    let mut agents = RunCounts::default();
    for a in &log.agents {
        agents.add(a.status);
    }
    let (pre_sim_ms, post_sim_ms) = match r.serial_sims_ms {
        Some(serial) => (Some(serial), None),
        None => (
            (log.sims.pre.is_some() || log.timing.pre_sim > 0).then_some(log.timing.pre_sim),
            (log.sims.post.is_some() || log.timing.post_sim > 0).then_some(log.timing.post_sim),
        ),
    };
    let hidden = hidden(r);
    RoundRow {
        round: log.round,
        schema: r.schema,
        legacy: r.is_legacy(),
        status: log.status,
        started_at: log.started_at.clone(),
        agents,
        phase_a_ms: log.timing.phase_a,
        phase_b_ms: log.timing.phase_b,
        tests_ms: (log.tests.is_some() || log.timing.tests > 0).then_some(log.timing.tests),
        pre_sim_ms,
        post_sim_ms,
        overhead_ms: log.timing.overhead,
        total_ms: log.timing.total,
        cost_usd: log.cost_usd,
        tests: log.tests.as_ref().map(|t| TestResult {
            status: t.status,
            passed: t.passed,
            failed: t.failed,
            flaky: t.flaky,
            regression: t.regression,
        }),
        serial_equivalent_ms: log.timing.total + hidden.total_ms,
        hidden,
        stop_reason: log.stop_reason.clone(),
        bars: bars(r),
    }
}

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

/// The sim time of round `r` that ran beside other work. v8 ran its sims serially: nothing hid.
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
    h.total_ms = h.pre_sim_ms + h.post_sim_ms;
    h
}

/// The Gantt bars of one round. Code agents and the pre-sim start with the round; the tests and
/// the post-sim start when Phase A ends; review agents when the tests stage ends. A log without
/// a start time gets that place, marked `estimated`. v8 ran sims after Phase A, then tests.
fn bars(r: &Round) -> Vec<Bar> {
    let log = &r.log;
    let t = &log.timing;
    let serial = r.serial_sims_ms.unwrap_or(0);
    let tests_at = t.phase_a + serial;
    let review_at = tests_at + t.tests;
    let mut out = Vec::new();

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
            status: pre.status.as_str().to_string(),
            start_ms: if known { pre.start_ms } else { fallback },
            elapsed_ms: pre.elapsed_ms,
            estimated: !known,
        });
    } else if r.is_legacy() && serial > 0 {
        out.push(Bar {
            label: "sims (serial)".to_string(),
            kind: BarKind::Sims,
            status: "ok".to_string(),
            start_ms: t.phase_a,
            elapsed_ms: serial,
            estimated: true,
        });
    }

    let agent_bar = |i: usize, fallback: u64| {
        let a = &log.agents[i];
        let known = r.starts.agents.get(i).copied().unwrap_or(false);
        Bar {
            label: a.name.clone(),
            kind: BarKind::Agent,
            status: a.status.as_str().to_string(),
            start_ms: if known { a.start_ms } else { fallback },
            elapsed_ms: a.elapsed_ms,
            estimated: !known,
        }
    };
    let mut code: Vec<Bar> = (0..log.agents.len())
        .filter(|i| log.agents[*i].phase == Phase::Code)
        .map(|i| agent_bar(i, 0))
        .collect();
    code.sort_by_key(|b| b.start_ms);
    out.extend(code);

    if let Some(tests) = &log.tests {
        out.push(Bar {
            label: "tests".to_string(),
            kind: BarKind::Tests,
            status: tests.status.as_str().to_string(),
            start_ms: if r.starts.tests {
                tests.start_ms
            } else {
                tests_at
            },
            elapsed_ms: tests.elapsed_ms,
            estimated: !r.starts.tests,
        });
    }
    if let Some(post) = &log.sims.post {
        out.push(Bar {
            label: "post-sim".to_string(),
            kind: BarKind::PostSim,
            status: post.status.as_str().to_string(),
            start_ms: if r.starts.post_sim {
                post.start_ms
            } else {
                t.phase_a
            },
            elapsed_ms: post.elapsed_ms,
            estimated: !r.starts.post_sim,
        });
    }

    let mut review: Vec<Bar> = (0..log.agents.len())
        .filter(|i| log.agents[*i].phase == Phase::Review)
        .map(|i| agent_bar(i, review_at))
        .collect();
    review.sort_by_key(|b| b.start_ms);
    out.extend(review);
    out
}

fn agent_rows(loaded: &Loaded, state_json: Option<&Value>) -> Vec<AgentRow> {
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<&str, (AgentRow, u64, &str)> = HashMap::new();
    for r in &loaded.rounds {
        for a in &r.log.agents {
            let (row, total_ms, model) = rows.entry(a.name.as_str()).or_insert_with(|| {
                order.push(a.name.clone());
                (
                    AgentRow {
                        name: a.name.clone(),
                        ..AgentRow::default()
                    },
                    0,
                    "",
                )
            });
            row.runs += 1;
            match a.status {
                RunStatus::Ok => row.ok += 1,
                RunStatus::Empty => row.empty += 1,
                RunStatus::Failed => row.failed += 1,
                RunStatus::Timeout => row.timeouts += 1,
                RunStatus::Conflict => row.conflicts += 1,
                RunStatus::Cancelled => row.cancelled += 1,
            }
            *total_ms += a.elapsed_ms;
            row.longest_ms = row.longest_ms.max(a.elapsed_ms);
            row.cost_usd += a.cost_usd;
            row.last_round = r.log.round;
            if !a.model.is_empty() {
                *model = a.model.as_str();
            }
        }
    }
    order
        .iter()
        .filter_map(|name| {
            let (mut row, total_ms, model) = rows.remove(name.as_str())?;
            row.mean_ms = total_ms / u64::from(row.runs.max(1));
            row.model_now = state_json
                .and_then(|s| s.get("agents"))
                .and_then(|a| a.get(name.as_str()))
                .and_then(|a| a.get("model"))
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or(model)
                .to_string();
            Some(row)
        })
        .collect()
}

fn decision_rows(loaded: &Loaded) -> Vec<DecisionRow> {
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<String, DecisionRow> = HashMap::new();
    let mut rounds = 0u32;
    for r in &loaded.rounds {
        if r.log.decisions.is_empty() {
            continue;
        }
        rounds += 1;
        for d in &r.log.decisions {
            let row = rows.entry(d.agent.clone()).or_insert_with(|| {
                order.push(d.agent.clone());
                DecisionRow {
                    agent: d.agent.clone(),
                    ..DecisionRow::default()
                }
            });
            match d.decision.as_str() {
                "included" => {
                    row.included += 1;
                    row.ok += r
                        .log
                        .agents
                        .iter()
                        .filter(|a| a.name == d.agent && a.status == RunStatus::Ok)
                        .count() as u32;
                }
                "blocked" => row.blocked += 1,
                _ => row.skipped += 1,
            }
        }
    }
    order
        .iter()
        .filter_map(|name| {
            let mut row = rows.remove(name)?;
            row.rounds = rounds;
            row.success_rate = (row.included > 0).then(|| row.ok as f64 / row.included as f64);
            row.idle_pct = if rounds == 0 {
                0.0
            } else {
                100.0 * f64::from(rounds - row.included.min(rounds)) / f64::from(rounds)
            };
            Some(row)
        })
        .collect()
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
