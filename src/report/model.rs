//! The report's one model: [`Summary`] and its rows, plain numbers and strings, built once from
//! the loaded round logs (by [`super::summary`]) and handed to every exporter, so Markdown, JSON,
//! HTML and SVG can never disagree on a figure.
//!
//! Only the types live here, below the formats and below the code that builds them: a format
//! imports the model and nothing of how it is built (the one thing the model asks of the round
//! log, whether a run's change went in, comes from [`super::outcome`], which knows only the log).
//! Formatting (durations, money, escaping) is the exporters' business.
//!
//! The JSON exporter serializes these types as they are, so field names are a contract with
//! scripts: rename nothing without bumping [`REPORT_SCHEMA`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::outcome::went_in;
use crate::roundlog::{AgentEntry, RoundStatus, RunStatus, StepStatus};
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
    /// The agents running when it was written, each with what it did last and when (its
    /// latest `agentActivity`, issue 31): `("coder", Some(("Bash `npm test`, 3rd time",
    /// "2026-12-06T19:20:04Z")))`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<(String, Option<(String, String)>)>,
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
    pub(super) fn of(known: usize, unknown: usize) -> Known {
        match (known, unknown) {
            (_, 0) => Known::All,
            (0, _) => Known::None,
            _ => Known::Part,
        }
    }

    pub(super) fn and(self, other: Known) -> Known {
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
    pub(super) fn add(&mut self, a: &crate::roundlog::AgentEntry, rejected: bool) {
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
    pub(super) fn note(&mut self, a: &AgentEntry, round: u32) -> bool {
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
