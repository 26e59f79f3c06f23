//! The round log: the record of one round that orch writes to `rounds/round-NNNN.json`
//! (schema v9, docs/src/writes.md) and that `orch report` and `orch status` read back.
//!
//! These types are the file format. Fields beyond the spec's example (decisions, revert details,
//! flaky tests) are optional with serde defaults so that older v9 logs still parse. Reading v8
//! logs (a single serial `timing.sims`) is the report's business; see `report::load`.
//!
//! Where the program branches on a value of the log (a run's status, its cause, the plan's
//! choice, a revert's strategy, an agent's handoff) the value is an enum serialized as the
//! string the file holds: a `match` on it is checked by the compiler, and the JSON is what it
//! was when these were strings. Each has `as_str` and `Display` for messages.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const SCHEMA: u32 = 9;

/// How many changed paths an agent entry lists (`changedFiles` counts them all).
pub const MAX_FILES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RoundStatus {
    Ok,
    Skipped,
    Reverted,
    Failed,
    Interrupted,
}

impl RoundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundStatus::Ok => "ok",
            RoundStatus::Skipped => "skipped",
            RoundStatus::Reverted => "reverted",
            RoundStatus::Failed => "failed",
            RoundStatus::Interrupted => "interrupted",
        }
    }
}

/// How one agent run ended (docs/src/agents.md, "How a run ends").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Empty,
    Failed,
    Timeout,
    Conflict,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Empty => "empty",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
            RunStatus::Conflict => "conflict",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Counts towards model escalation and the failure streak.
    pub fn is_unproductive(self) -> bool {
        matches!(
            self,
            RunStatus::Failed | RunStatus::Timeout | RunStatus::Empty
        )
    }
}

/// Why a run failed, as the agent CLI's output (or orch) tells it. The transient causes wait
/// for the provider instead of counting against the agent; the permanent ones stop the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    /// HTTP 429 / "rate limit": the provider asks to slow down.
    RateLimited,
    /// HTTP 529, 5xx, "overloaded": the provider cannot serve now.
    Overloaded,
    /// A subscription's usage window is used up; `resetsAt` says when it opens again when the
    /// CLI says so.
    UsageLimit,
    /// An invalid or missing key, an expired login, a plan or billing problem.
    Auth,
    /// The provider rejected the request itself (HTTP 400, unknown model).
    BadRequest,
    /// The CLI denied the tools the agent needed and the run changed nothing.
    PermissionDenied,
    /// The CLI refused to work in a folder it was not told to trust (Gemini CLI's exit 55,
    /// without `--skip-trust`): every run of it fails the same way until its command changes.
    UntrustedFolder,
    /// orch killed the run at its timeout.
    Timeout,
    /// orch stopped the run, as at a timeout, because it showed no progress of any kind (no
    /// output, no tool call, no change in its tree) for `stuck.idleS` (issue 31).
    Idle,
    /// orch stopped the run, as at a timeout, because it made the same tool call with the same
    /// input `stuck.repeats` times in a row, or its tree came back to one state that often.
    Loop,
    /// The CLI stopped the run at the spending cap orch passed it (the rest of the agent's
    /// `budgetUsd`; Claude Code's `--max-budget-usd`): not the agent's fault, and it is not
    /// started again until its budget is raised.
    OverBudget,
    /// The CLI stopped the run at its own cap on turns (Claude Code's `--max-turns`:
    /// `subtype: "error_max_turns"`, "Reached maximum number of turns (N)"; Gemini CLI's
    /// `model.maxSessionTurns`: exit 53, "Reached max session turns for this session"). The
    /// process ended by itself, so its change is tested like any other (`failedChanges`).
    MaxTurns,
    /// Anything else: a non-zero exit, a signal, a spawn failure, an error result.
    Exit,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::RateLimited => "rateLimited",
            Cause::Overloaded => "overloaded",
            Cause::UsageLimit => "usageLimit",
            Cause::Auth => "auth",
            Cause::BadRequest => "badRequest",
            Cause::PermissionDenied => "permissionDenied",
            Cause::UntrustedFolder => "untrustedFolder",
            Cause::Timeout => "timeout",
            Cause::Idle => "idle",
            Cause::Loop => "loop",
            Cause::OverBudget => "overBudget",
            Cause::MaxTurns => "maxTurns",
            Cause::Exit => "exit",
        }
    }

    /// Heals by waiting: the run is retried once the provider takes requests again.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Cause::RateLimited | Cause::Overloaded | Cause::UsageLimit
        )
    }

    /// Cannot heal by itself: the run stops (exit 6) until a person fixes it.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Cause::Auth | Cause::BadRequest | Cause::UntrustedFolder
        )
    }
}

/// The names the log writes, for messages (padding and width apply, as for a `str`).
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    )*};
}

display_as_str!(
    RoundStatus,
    RunStatus,
    Cause,
    Phase,
    StepStatus,
    Choice,
    Strategy,
    Handoff
);

/// A tool call the agent CLI refused to run (Claude Code's `permission_denials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionDenial {
    pub tool: String,
    /// The command or path it was refused for, when the CLI says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// An earlier run of the agent in the same round that hit a provider limit and was run again
/// after the wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitedRun {
    pub cause: Cause,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
    #[serde(default)]
    pub start_ms: u64,
    #[serde(default)]
    pub elapsed_ms: u64,
    #[serde(default)]
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Code,
    Review,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Code => "code",
            Phase::Review => "review",
        }
    }
}

/// How a sim or test process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ok,
    Passed,
    Failed,
    Timeout,
    Cancelled,
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Passed => "passed",
            StepStatus::Failed => "failed",
            StepStatus::Timeout => "timeout",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub output: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEntry {
    pub name: String,
    pub phase: Phase,
    /// The model this run used; empty when the agent names none.
    #[serde(default)]
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub status: RunStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Milliseconds from the round's start to this run's start.
    #[serde(default)]
    pub start_ms: u64,
    #[serde(default)]
    pub elapsed_ms: u64,
    #[serde(default)]
    pub timeout_ms: u64,
    #[serde(default, serialize_with = "crate::units::ser_usd")]
    pub cost_usd: f64,
    #[serde(default = "yes")]
    pub cost_known: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    #[serde(default)]
    pub changed_files: u32,
    /// The changed files' paths (at most [`MAX_FILES`]); empty in logs written before they
    /// were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The stdout log, relative to the state folder.
    #[serde(default)]
    pub log: String,
    /// Why the run failed when orch knows (spawn error, `is_error` result, conflict files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure it was (set on every failed or timed-out run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// When a usage limit opens again, as the CLI said (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
    /// Tool calls the CLI refused to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permission_denials: Vec<PermissionDenial>,
    /// Earlier runs this round that hit a provider limit and were run again after the wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limited_runs: Vec<LimitedRun>,
    /// How long a provider's limit held this agent back this round: from its first limited
    /// run's end (or its first start refused) to the start of this run (or, when it was not
    /// run again, to when the round gave up on it). Other agents may have run meanwhile.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Set when the model changed after this run: the model the agent moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_to: Option<String>,
    /// Changed files outside the agent's `owns` globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ownership_violations: Vec<String>,
    /// What was kept aside from the run's change instead of committed, and why, naming the ref
    /// that keeps it (a git repository it made, its edits inside a submodule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_aside: Vec<String>,
    /// Under a sandbox with an allowlist: the `host:port`s the run tried to reach and was
    /// refused (each once, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandbox_refused: Vec<String>,
    /// What the agent reported in its handoff file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// The CLI session of this run (as the CLI reported it, else the id orch gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// This run resumed the agent's session (`session: true`) with the short `{{changes}}`
    /// prompt; false for a new session, which got the full prompt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session_resumed: bool,
    /// For a new session: why the agent's previous one was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_dropped: Option<String>,
    /// A review agent that ran beside the tests (`phaseB: "besideTests"`) in a round that was
    /// then reverted (or whose tests could not start): its work was not merged, and is kept in
    /// a ref when it changed files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aside: Option<Aside>,
    /// A code agent's run that ended badly by itself (`failed`: out of turns, an error exit
    /// after its edits) and whose change went to the tests with the others' anyway
    /// (`failedChanges: "test"`, the default): merged, and committed unless the tests took it
    /// out (a per-agent revert names it a culprit, or the round is reverted). The status stays
    /// the run's, `cause` says how it ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub change_tested: bool,
    /// With `phaseBAfterRevert`: this entry is the run after the revert, and this its run
    /// beside the tests, whose work was kept aside. Its cost is in the entry's `cost_usd` (the
    /// agent's whole spend in the round) as well as the round's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beside_run: Option<Box<AgentEntry>>,
    /// What changed in the repository's own git settings (`config`, `hooks/`, `info/` of its
    /// common git folder) while this run went, put back by orch: each change (`added
    /// .git/hooks/post-commit`) and where what the agent wrote is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git_settings_put_back: Vec<String>,
}

impl AgentEntry {
    /// An entry with the keys a round log must hold (`name`, `phase`, `status`) and every other
    /// field as serde reads a log that lacks it (`costKnown` true, the rest empty or zero), so
    /// a literal names only what it sets: `AgentEntry { elapsed_ms, ..AgentEntry::new(..) }`.
    pub fn new(name: impl Into<String>, phase: Phase, status: RunStatus) -> AgentEntry {
        AgentEntry {
            name: name.into(),
            phase,
            model: String::new(),
            task: None,
            status,
            exit_code: None,
            start_ms: 0,
            elapsed_ms: 0,
            timeout_ms: 0,
            cost_usd: 0.0,
            cost_known: yes(),
            tokens: None,
            changed_files: 0,
            files: Vec::new(),
            log: String::new(),
            error: None,
            cause: None,
            resets_at: None,
            permission_denials: Vec::new(),
            limited_runs: Vec::new(),
            held_ms: 0,
            summary: None,
            escalated_to: None,
            ownership_violations: Vec::new(),
            kept_aside: Vec::new(),
            sandbox_refused: Vec::new(),
            handoff: None,
            session_id: None,
            session_resumed: false,
            session_dropped: None,
            aside: None,
            change_tested: false,
            beside_run: None,
            git_settings_put_back: Vec::new(),
        }
    }
}

/// What an agent reported in its handoff file (`handoff/AGENT.json`'s `status`): `dependsOn`
/// waits for `complete` or `all-done`, and a mission whose agents all say `all-done` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Handoff {
    InProgress,
    Complete,
    AllDone,
}

impl Handoff {
    pub fn as_str(self) -> &'static str {
        match self {
            Handoff::InProgress => "in-progress",
            Handoff::Complete => "complete",
            Handoff::AllDone => "all-done",
        }
    }

    /// The status as the agent wrote it; `None` for anything else.
    pub fn parse(text: &str) -> Option<Handoff> {
        [Handoff::InProgress, Handoff::Complete, Handoff::AllDone]
            .into_iter()
            .find(|h| h.as_str() == text)
    }

    /// Its work is done: what depends on it may run.
    pub fn is_done(self) -> bool {
        matches!(self, Handoff::Complete | Handoff::AllDone)
    }
}

/// Review work done beside the tests and not merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aside {
    /// Where its change is kept (`refs/orch/review-aside/round-N/AGENT`); `None` when it
    /// changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_ref: Option<String>,
    /// Why it was not merged.
    pub reason: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimEntry {
    pub status: StepStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub start_ms: u64,
    #[serde(default)]
    pub elapsed_ms: u64,
    #[serde(default)]
    pub published: bool,
    #[serde(default)]
    pub log: String,
    /// Why it was not published, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<SimEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<SimEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestsEntry {
    pub status: StepStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub start_ms: u64,
    #[serde(default)]
    pub elapsed_ms: u64,
    #[serde(default)]
    pub passed: Option<u64>,
    #[serde(default)]
    pub failed: Option<u64>,
    /// Suites that ran; empty when the full command ran.
    #[serde(default)]
    pub suites: Vec<String>,
    /// How many times the tests ran (1 + retries used).
    #[serde(default = "one")]
    pub attempts: u32,
    /// Failed first, passed on a retry.
    #[serde(default)]
    pub flaky: bool,
    /// Worse than the base: the round was reverted because of it.
    #[serde(default)]
    pub regression: bool,
    #[serde(default)]
    pub log: String,
    /// The last lines of the output, for the report and for the agents' `testFailures`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tail: String,
    /// Why the full command ran, or why each suite ran (incremental testing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each suite that ran, when suites ran instead of the full command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suite_runs: Vec<SuiteEntry>,
    /// The test command could not start (no such program, not executable, exit 126 or 127):
    /// why. Not a regression: the round's change was set aside untested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cannot_start: Option<String>,
}

/// One test suite's run within a round's tests stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteEntry {
    pub name: String,
    pub reason: String,
    pub status: StepStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub start_ms: u64,
    #[serde(default)]
    pub elapsed_ms: u64,
    #[serde(default)]
    pub passed: Option<u64>,
    #[serde(default)]
    pub failed: Option<u64>,
    #[serde(default = "one")]
    pub attempts: u32,
    #[serde(default)]
    pub flaky: bool,
    #[serde(default)]
    pub log: String,
    /// The suite's command could not start: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cannot_start: Option<String>,
}

fn one() -> u32 {
    1
}

/// The v9 timing block. `overhead = total - phaseA - phaseB - tests - waited + beside`; the sims
/// run beside other work and are not in the formula, and `beside` (Phase B beside the tests) is
/// the time counted in both `phaseB` and `tests`. `waited` is the time spent waiting out provider
/// limits (rate, usage), which is in none of the phases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    pub total: u64,
    pub phase_a: u64,
    pub phase_b: u64,
    pub tests: u64,
    pub pre_sim: u64,
    pub post_sim: u64,
    pub overhead: u64,
    /// Milliseconds spent waiting for a provider's limit to pass (not overhead, not a phase).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waited: u64,
    /// Where the tests stage (the tests and the post-sim) ran, in milliseconds from the round's
    /// start: its start and its end (the first test run's; a revert's extra runs follow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_start_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_end_ms: Option<u64>,
    /// Where Phase B ran: its start and its end (after a revert's rerun, the rerun's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_b_start_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_b_end_ms: Option<u64>,
    /// `phaseB: "besideTests"`: the milliseconds Phase B and the tests stage ran at the same
    /// time, counted once in `overhead`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub beside: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Timing {
    /// Fills `overhead` from the other figures (saturating: clocks of different stages can
    /// disagree by a millisecond).
    pub fn with_overhead(mut self) -> Timing {
        self.overhead = (self.total + self.beside)
            .saturating_sub(self.phase_a + self.phase_b + self.tests + self.waited);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundLog {
    pub schema: u32,
    pub round: u32,
    pub mission: String,
    pub status: RoundStatus,
    pub started_at: String,
    pub finished_at: String,
    pub base: String,
    pub commit: Option<String>,
    pub agents: Vec<AgentEntry>,
    #[serde(default)]
    pub sims: Sims,
    #[serde(default)]
    pub tests: Option<TestsEntry>,
    #[serde(default)]
    pub reverted: bool,
    /// How a regression was undone, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<RevertInfo>,
    /// Where the rejected or interrupted tree was kept, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_ref: Option<String>,
    pub timing: Timing,
    #[serde(serialize_with = "crate::units::ser_usd")]
    pub cost_usd: f64,
    #[serde(serialize_with = "crate::units::ser_usd")]
    pub total_cost_usd: f64,
    /// Why the round ended early or the run stopped after it (budget, interrupt, error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Why each agent of the mission was or was not run this round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
    /// Free-form notes (Phase B skipped after a revert, recovered work, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// An `ok` round whose agents ran and none of whose work landed: every run failed, timed
    /// out, conflicted, changed nothing or was taken out by the tests (a note names each). The
    /// status stays `ok` (the round did what it should with what it got); this says that
    /// nothing came of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nothing_landed: bool,
}

impl RoundLog {
    /// The log of round `round` of `mission`, begun at `started_at` on `base`: status `ok`,
    /// this schema, nothing in it yet. A literal names only what it sets:
    /// `RoundLog { notes, ..RoundLog::new(..) }`.
    pub fn new(
        round: u32,
        mission: impl Into<String>,
        base: impl Into<String>,
        started_at: impl Into<String>,
    ) -> RoundLog {
        RoundLog {
            schema: SCHEMA,
            round,
            mission: mission.into(),
            status: RoundStatus::Ok,
            started_at: started_at.into(),
            finished_at: String::new(),
            base: base.into(),
            commit: None,
            agents: Vec::new(),
            sims: Sims::default(),
            tests: None,
            reverted: false,
            revert: None,
            kept_ref: None,
            timing: Timing::default(),
            cost_usd: 0.0,
            total_cost_usd: 0.0,
            stop_reason: None,
            decisions: Vec::new(),
            notes: Vec::new(),
            nothing_landed: false,
        }
    }
}

/// The plan's verdict on one agent for one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub agent: String,
    pub decision: Choice,
    pub reason: String,
    /// For included agents: the model, whether it changed after the run, how the run ended
    /// and how long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub escalated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// The agent's `budgetUsd`, when it has one, and what it had spent before the round (every
    /// round since the state began, from `state.json`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::units::ser_opt_usd"
    )]
    pub budget_usd: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::units::ser_opt_usd"
    )]
    pub spent_usd: Option<f64>,
    /// For an agent `over budget`: its pending tasks, which wait on its budget (none went to an
    /// `overBudgetTasksTo` agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks_waiting: Vec<String>,
}

/// The plan's verdict on an agent for a round: whether it runs, and if not, which gate kept it
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Included,
    Skipped,
    Blocked,
    /// Its `budgetUsd` is spent.
    #[serde(rename = "over budget")]
    OverBudget,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Included => "included",
            Choice::Skipped => "skipped",
            Choice::Blocked => "blocked",
            Choice::OverBudget => "over budget",
        }
    }
}

/// How a round's regression was undone (`revert.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Culprits found and taken out, the others' work kept.
    PerAgent,
    /// The whole round taken out: the base is what stays.
    Round,
    /// An interrupt stopped the culprit search before it settled: nothing was taken out, the
    /// round is `interrupted`; its extra runs so far are in `testRuns`.
    Interrupted,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::PerAgent => "per-agent",
            Strategy::Round => "round",
            Strategy::Interrupted => "interrupted",
        }
    }
}

/// How a regression was undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertInfo {
    pub strategy: Strategy,
    /// The agents whose changes were taken out.
    pub culprits: Vec<String>,
    /// Every extra test run made to find them: which agent was left out and the result.
    /// Their time is part of `timing.tests`.
    #[serde(default)]
    pub test_runs: Vec<BisectRun>,
    /// A per-agent revert: the tests of the tree that was committed (every change but the
    /// culprits'), i.e. the extra run that left out exactly the culprits. `None` for a whole
    /// round revert (the base is what stays) or in older logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<TreeTests>,
}

/// One extra test run of a per-agent revert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BisectRun {
    pub without: Vec<String>,
    pub status: StepStatus,
    /// Milliseconds from the round's start; absent in older logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    pub elapsed_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<u64>,
    #[serde(default)]
    pub failed: Option<u64>,
}

/// The test result of one tree, with the counts when the runner printed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeTests {
    pub status: StepStatus,
    #[serde(default)]
    pub passed: Option<u64>,
    #[serde(default)]
    pub failed: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `AgentEntry::new` is what serde reads from an entry with only the keys it must have, and
    /// writes the same JSON as that entry read back: a literal built on it writes what the
    /// same literal spelled out field by field wrote.
    #[test]
    fn a_new_agent_entry_is_the_entry_of_the_required_keys_alone() {
        let minimal = r#"{"name":"a","phase":"review","status":"timeout"}"#;
        let read: AgentEntry = serde_json::from_str(minimal).unwrap();
        let new = AgentEntry::new("a", Phase::Review, RunStatus::Timeout);
        assert_eq!(new, read);
        assert_eq!(
            serde_json::to_string(&new).unwrap(),
            serde_json::to_string(&read).unwrap()
        );
    }

    /// The enums are the file format: each variant is written as the string orch wrote before
    /// they were types, and `as_str` (the text `orch show` prints) says the same.
    #[test]
    fn choice_and_strategy_are_written_as_before() {
        for (c, text) in [
            (Choice::Included, "included"),
            (Choice::Skipped, "skipped"),
            (Choice::Blocked, "blocked"),
            (Choice::OverBudget, "over budget"),
        ] {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{text}\""));
            assert_eq!(c.as_str(), text);
            assert_eq!(
                serde_json::from_str::<Choice>(&format!("\"{text}\"")).unwrap(),
                c
            );
        }
        for (s, text) in [
            (Strategy::PerAgent, "per-agent"),
            (Strategy::Round, "round"),
            (Strategy::Interrupted, "interrupted"),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{text}\""));
            assert_eq!(s.as_str(), text);
            assert_eq!(
                serde_json::from_str::<Strategy>(&format!("\"{text}\"")).unwrap(),
                s
            );
        }
    }

    #[test]
    fn a_handoff_is_written_and_parsed_as_the_agent_wrote_it() {
        for (h, text) in [
            (Handoff::InProgress, "in-progress"),
            (Handoff::Complete, "complete"),
            (Handoff::AllDone, "all-done"),
        ] {
            assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{text}\""));
            assert_eq!(Handoff::parse(text), Some(h));
            assert_eq!(h.to_string(), text);
        }
        assert_eq!(Handoff::parse("done"), None);
        assert_eq!(Handoff::parse("Complete"), None);
        assert!(Handoff::Complete.is_done() && Handoff::AllDone.is_done());
        assert!(!Handoff::InProgress.is_done());
    }
}
