//! The report's one model: [`Summary`], built once from the loaded round logs and handed to every
//! exporter, so Markdown, JSON, HTML and SVG can never disagree on a figure.
//!
//! Everything here is plain numbers and strings; formatting (durations, money, escaping) is the
//! exporters' business. The computations worth their own names: what each round *landed* (the
//! agents' changes that stayed after any revert, and the committed tree's tests, which after a
//! per-agent revert are not the first attempt's), the rounds that landed nothing and why (the
//! headline), money that is only partly known, and the time pipelining hid ([`overlap_ms`]).
//!
//! The JSON exporter serializes this type as it is, so field names are a contract with scripts:
//! rename nothing without bumping [`REPORT_SCHEMA`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::load::{Loaded, Round};
use crate::roundlog::{AgentEntry, Choice, Phase, RoundStatus, RunStatus, StepStatus, Strategy};
use crate::units::{ser_opt_usd, ser_usd};

/// Version of the JSON report's shape (`reportSchema`). 2: outcomes with `rejected`, what
/// landed, money with `costKnown`, the committed tree's tests, refs to review.
pub const REPORT_SCHEMA: u32 = 2;

/// Everything the report shows. Serialized (camelCase) as `orch report --format json`:
///
/// - `reportSchema` (number), `mission` (string, the last round's), `stateDir` (string)
/// - `totals`: `rounds`, `headline` (the sentence that opens the report: "8 rounds: 1 landed
///   work, 7 landed nothing: every agent failed (rateLimited 5, auth 2)"), `landedRounds`,
///   `nothingRounds`, `nothingWhy` ([{`why`, `rounds`, `causes` {cause: runs}}]), `legacyRounds`
///   (v8 logs), `byStatus` {`ok`, `skipped`, `reverted`, `failed`, `interrupted`} (the logs'
///   round status), `firstRound`/`lastRound` (null when no round parsed), `wallMs` (sum of
///   `timing.total`), `waitedMs` (time waiting on provider limits), `costUsd` (sum of round
///   costs), `costKnown` (`all`, `part` or `none`: whether every run's cost was known),
///   `lastTotalCostUsd` (the last round's cumulative `totalCostUsd`), `testsFirst`/`testsLast`
///   ({`round`, `passed`, `failed`} of the *committed* tree, or null), `flakyRounds`, `hasSims`,
///   `stopReason` (the last round's, or null), `hiddenMs` (sim and Phase B time that ran beside
///   other work), `serialEquivalentMs` (`wallMs + hiddenMs`)
/// - `rounds[]`: `round`, `schema`, `legacy`, `status`, `startedAt`, `agents` {`total`, `ok`
///   (kept), `rejected` (ok but taken out by a revert), `empty`, `failed`, `timeout`,
///   `conflict`, `cancelled`}, `landed` (true when an agent's change stayed), `kept` and
///   `rejected` (agent names), `files` (files changed by the kept agents), `nothingWhy` (null
///   when it landed work), `causes` {cause: runs}, `phaseAMs`, `phaseBMs`, `testsMs` (every test
///   run of the round, a revert's extra runs included), `preSimMs` (a v8 round's serial sims),
///   `postSimMs`, `waitedMs`, `overheadMs` (orch's own time), `totalMs`, `costUsd`,
///   `costKnown`, `tests` (the first attempt: {`status`, `passed`, `failed`, `flaky`,
///   `regression`} or null), `testsCommitted` (the committed tree's result, same shape, or
///   null when unknown; after a whole-round revert the base stays and this is null),
///   `revertRuns`, `hidden` {`preSimMs`, `postSimMs`, `phaseBMs`, `totalMs`, `estimated`},
///   `serialEquivalentMs`, `commit`, `stopReason`, `bars[]` (the Gantt chart: {`label`, `kind`
///   = `agent`|`preSim`|`postSim`|`sims`|`tests`|`revertTests`, `status`, `startMs`,
///   `elapsedMs`, `estimated`})
/// - `agents[]`: `name`, `runs`, `kept` (changes that stayed), `rejected`, `empty`, `failed`,
///   `timeouts`, `conflicts`, `cancelled`, `failedByCause` {cause: runs}, `meanMs`,
///   `longestMs`, `costUsd`, `costKnown`, `costPerKeptUsd` (null with nothing kept or no cost
///   known), `modelNow`, `lastRound`, `budgetUsd` and `spentUsd` (null without a budget),
///   `sessions` (null for an agent that kept no CLI session): {`resumed`, `new` (runs that
///   started a session), `dropped` [{`round` (of the run that started anew), `reason`}],
///   `lastId`, `lastResumed`}
/// - `decisions[]` (empty when no log has decisions): `agent`, `rounds`, `included`, `skipped`,
///   `blocked`, `overBudget`, `kept`, `successRate` (kept / included, null when never
///   included), `idlePct`
/// - `attention[]`: what a person should look at in the morning, one entry per round and
///   thing: {`round`, `kind` (`revert`, `conflict`, `failed`, `timeout`, `cancelled`,
///   `interrupted`, `ownership`, `kept aside`, `over budget`: an agent whose pending tasks
///   wait on its spent budget), `agent` (null for a whole round), `detail`, `keptRef`}
/// - `review`: {`base`, `head`, `commands` [{`command`, `what`}]}: the git commands that show
///   the night's work and each kept ref
/// - `files[]` ("All files modified"): every file a kept change touched, by path: {`path`,
///   `rounds` (the rounds whose kept work changed it), `agents` (who changed it, in the order
///   they first did)}; from the agents' `files` lists, so empty for logs without them
/// - `warnings[]`: {`file`, `message`} for each log skipped or read with a caveat
/// - `live` (only on the live page): {`writtenAt`, `running`, `refreshS`}
///
/// Times are milliseconds, money is US dollars as a number rounded to 1e-6.
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
    pub review: Review,
    pub files: Vec<FileRow>,
    pub warnings: Vec<WarningRow>,
    /// Set for the live page orch rewrites after each round (`STATE/report.html`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveInfo>,
}

/// When the live page was written and whether the run was still going.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveInfo {
    pub written_at: String,
    pub running: bool,
    /// Seconds between reloads while the run is going.
    pub refresh_s: u32,
}

/// Something a person should look at: a revert (and its culprits), a merge conflict, a failed
/// or timed-out run whose partial work is kept, a change outside an agent's files.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttentionRow {
    /// The first round it happened in.
    pub round: u32,
    /// Every round it happened in, the same way (a failure repeated night-long is one row).
    pub rounds: Vec<u32>,
    pub kind: String,
    pub agent: Option<String>,
    pub detail: String,
    pub kept_ref: Option<String>,
}

/// How much of a sum of money is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Known {
    /// Every run's cost was known (or nothing ran).
    #[default]
    All,
    /// Some runs' costs were unknown: the sum is a lower bound.
    Part,
    /// No run's cost was known.
    None,
}

impl Known {
    fn of(known: usize, unknown: usize) -> Known {
        match (known, unknown) {
            (_, 0) => Known::All,
            (0, _) => Known::None,
            _ => Known::Part,
        }
    }

    fn and(self, other: Known) -> Known {
        match (self, other) {
            (Known::All, Known::All) => Known::All,
            (Known::None, Known::None) => Known::None,
            _ => Known::Part,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub rounds: u32,
    pub headline: String,
    pub landed_rounds: u32,
    pub nothing_rounds: u32,
    pub nothing_why: Vec<NothingGroup>,
    pub legacy_rounds: u32,
    pub by_status: StatusCounts,
    pub first_round: Option<u32>,
    pub last_round: Option<u32>,
    pub wall_ms: u64,
    pub waited_ms: u64,
    #[serde(serialize_with = "ser_usd")]
    pub cost_usd: f64,
    pub cost_known: Known,
    #[serde(serialize_with = "ser_opt_usd")]
    pub last_total_cost_usd: Option<f64>,
    pub tests_first: Option<TestPoint>,
    pub tests_last: Option<TestPoint>,
    pub flaky_rounds: Vec<u32>,
    pub has_sims: bool,
    pub stop_reason: Option<String>,
    pub hidden_ms: u64,
    pub serial_equivalent_ms: u64,
}

impl Totals {
    /// Whether the report has a "time pipelining hid" to show: a round had sims, or review
    /// agents that ran beside the tests.
    pub fn has_pipelining(&self) -> bool {
        self.has_sims || self.hidden_ms > 0
    }
}

/// Rounds that landed nothing for one reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NothingGroup {
    pub why: String,
    pub rounds: u32,
    /// Failure causes of the runs in those rounds (`rateLimited`, `auth`, ..., or the run's
    /// status when the log names no cause).
    pub causes: BTreeMap<String, u32>,
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

/// One file of "All files modified": the rounds and agents whose kept change touched it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRow {
    pub path: String,
    pub rounds: Vec<u32>,
    pub agents: Vec<String>,
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
    pub landed: bool,
    pub kept: Vec<String>,
    pub rejected: Vec<String>,
    pub files: u32,
    pub nothing_why: Option<String>,
    pub causes: BTreeMap<String, u32>,
    pub phase_a_ms: u64,
    pub phase_b_ms: u64,
    pub tests_ms: Option<u64>,
    pub pre_sim_ms: Option<u64>,
    pub post_sim_ms: Option<u64>,
    pub waited_ms: u64,
    pub overhead_ms: u64,
    pub total_ms: u64,
    #[serde(serialize_with = "ser_usd")]
    pub cost_usd: f64,
    pub cost_known: Known,
    pub tests: Option<TestResult>,
    pub tests_committed: Option<TestResult>,
    pub revert_runs: u32,
    pub hidden: Hidden,
    pub serial_equivalent_ms: u64,
    pub commit: Option<String>,
    pub stop_reason: Option<String>,
    pub bars: Vec<Bar>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    pub total: u32,
    pub ok: u32,
    pub rejected: u32,
    pub empty: u32,
    pub failed: u32,
    pub timeout: u32,
    pub conflict: u32,
    pub cancelled: u32,
}

impl RunCounts {
    fn add(&mut self, a: &crate::roundlog::AgentEntry, rejected: bool) {
        self.total += 1;
        *match a.status {
            _ if rejected && went_in(a) => &mut self.rejected,
            RunStatus::Ok => &mut self.ok,
            RunStatus::Empty => &mut self.empty,
            RunStatus::Failed => &mut self.failed,
            RunStatus::Timeout => &mut self.timeout,
            RunStatus::Conflict => &mut self.conflict,
            RunStatus::Cancelled => &mut self.cancelled,
        } += 1;
    }

    /// The non-zero counts in status order, for "3 (1 ok, 1 rejected, 1 failed)".
    pub fn parts(&self) -> Vec<(u32, &'static str)> {
        [
            (self.ok, "ok"),
            (self.rejected, "rejected"),
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

/// Time that ran beside other work in one round: the sims', and Phase B's beside the tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hidden {
    /// Pre-sim time under Phase A's code agents.
    pub pre_sim_ms: u64,
    /// Post-sim time under the tests.
    pub post_sim_ms: u64,
    /// Phase B's time under the tests stage (`phaseB: "besideTests"`, the log's
    /// `timing.beside`): a serial loop would have run the review agents after the tests.
    pub phase_b_ms: u64,
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
    /// An extra test run of a per-agent revert.
    RevertTests,
}

/// How the process of a bar ended: an agent's run, or a step's (a sim, the tests). Written as
/// the round log writes the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BarStatus {
    Run(RunStatus),
    Step(StepStatus),
}

impl std::fmt::Display for BarStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BarStatus::Run(s) => s.fmt(f),
            BarStatus::Step(s) => s.fmt(f),
        }
    }
}

/// One bar of a round's Gantt chart, in milliseconds from the round's start.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bar {
    pub label: String,
    pub kind: BarKind,
    pub status: BarStatus,
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
    pub kept: u32,
    pub rejected: u32,
    pub empty: u32,
    pub failed: u32,
    pub timeouts: u32,
    pub conflicts: u32,
    pub cancelled: u32,
    pub failed_by_cause: BTreeMap<String, u32>,
    pub mean_ms: u64,
    pub longest_ms: u64,
    #[serde(serialize_with = "ser_usd")]
    pub cost_usd: f64,
    pub cost_known: Known,
    #[serde(serialize_with = "ser_opt_usd")]
    pub cost_per_kept_usd: Option<f64>,
    pub model_now: String,
    pub last_round: u32,
    /// Its `budgetUsd` (from the last round log whose plan recorded one) and what it has spent
    /// (`state.json`'s `costUsd`, every run of the state; the round logs' sum when the state
    /// file is not there); `null` without a budget.
    #[serde(serialize_with = "ser_opt_usd")]
    pub budget_usd: Option<f64>,
    #[serde(serialize_with = "ser_opt_usd")]
    pub spent_usd: Option<f64>,
    /// Its CLI sessions (`session: true`), from the round logs' `sessionResumed` and
    /// `sessionDropped`; `null` for an agent that kept no session.
    pub sessions: Option<SessionRow>,
}

/// How an agent's sessions went over the rounds shown: the runs that resumed one (and got the
/// short `{{changes}}` prompt), those that started one (the full prompt), and each session
/// dropped before a new one, with why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    pub resumed: u32,
    /// Runs that started a new session: its first, and each after one was dropped.
    pub new: u32,
    pub dropped: Vec<SessionDrop>,
    /// The session id of its last run that had one.
    pub last_id: Option<String>,
    /// Whether its last run resumed its session.
    pub last_resumed: bool,
}

impl SessionRow {
    /// Counts one run of round `round`; true when it shows the agent keeps sessions (it resumed
    /// one, or says why one was dropped).
    fn note(&mut self, a: &AgentEntry, round: u32) -> bool {
        if a.session_resumed {
            self.resumed += 1;
        } else if a.session_id.is_some() || a.session_dropped.is_some() {
            self.new += 1;
        }
        if let Some(why) = &a.session_dropped {
            self.dropped.push(SessionDrop {
                round,
                reason: why.clone(),
            });
        }
        if a.session_id.is_some() {
            self.last_id = a.session_id.clone();
            self.last_resumed = a.session_resumed;
        }
        a.session_resumed || a.session_dropped.is_some()
    }
}

/// A session dropped: the round of the run that started a new one, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionDrop {
    pub round: u32,
    pub reason: String,
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
    /// Rounds it was not started in because its `budgetUsd` was spent.
    pub over_budget: u32,
    /// Runs whose change was kept in rounds where the agent was included.
    pub kept: u32,
    pub success_rate: Option<f64>,
    pub idle_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarningRow {
    pub file: String,
    pub message: String,
}

/// The git commands a reviewer runs in the morning.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// The base of the first round shown; empty when the logs do not say.
    pub base: String,
    /// The last commit a round made, or `HEAD`.
    pub head: String,
    pub commands: Vec<ReviewCommand>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewCommand {
    pub command: String,
    pub what: String,
}

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

/// Whether a run's change went into the round's tree: it ended `ok`, or it failed by itself and
/// its change was tested with the others' (`changeTested`).
fn went_in(a: &crate::roundlog::AgentEntry) -> bool {
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
fn cause_of(r: &Round, i: usize) -> String {
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

/// What needs a person's eye, round by round, with repeats of one failure merged into one row.
fn attention_rows(loaded: &Loaded) -> Vec<AttentionRow> {
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

fn review(loaded: &Loaded, attention: &[AttentionRow]) -> Review {
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
fn bars(r: &Round) -> Vec<Bar> {
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
fn agent_rows(loaded: &Loaded, state_json: Option<&Value>) -> Vec<AgentRow> {
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

fn decision_rows(loaded: &Loaded) -> Vec<DecisionRow> {
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
