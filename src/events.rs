//! What happens during a run, as events, and the sinks that render them: plain lines for a
//! person or a CI log, one JSON object a line for scripts (`--json` and `events.ndjson`), and
//! GitHub Actions workflow commands.
//!
//! The engine emits events and never prints; what a person, a script or CI sees is the sinks'
//! choice. Events come from the main thread and from pool workers (an agent starting), so the
//! emitter is shared by reference and serializes sinks behind a mutex.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::roundlog::{Aside, Cause, Phase, RoundStatus, RunStatus, StepStatus};
use crate::units;

/// One thing that happened. Serialized with `"event"` as the tag, camelCase fields.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    RunStart {
        mission: String,
        first_round: u32,
        last_round: u32,
        agents: usize,
    },
    #[serde(rename_all = "camelCase")]
    RoundStart {
        round: u32,
        base: String,
        active: Vec<String>,
        idle: Vec<String>,
    },
    /// A phase's agents, in the order the pool starts them (priority, then the longest
    /// expected run first): the first `maxConcurrency` start at once, the rest wait in this
    /// order.
    #[serde(rename_all = "camelCase")]
    PhaseStart {
        round: u32,
        phase: Phase,
        queue: Vec<String>,
        max_concurrency: usize,
    },
    #[serde(rename_all = "camelCase")]
    AgentStart {
        round: u32,
        agent: String,
        phase: Phase,
        model: String,
        task: Option<String>,
        timeout_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    AgentEnd {
        round: u32,
        agent: String,
        phase: Phase,
        model: String,
        status: RunStatus,
        exit_code: Option<i32>,
        elapsed_ms: u64,
        cost_usd: f64,
        cost_known: bool,
        changed_files: u32,
        error: Option<String>,
        /// Why it failed (`rateLimited`, `auth`, ...; see `roundlog::Cause`).
        #[serde(skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
        /// When the usage limit it hit opens again (RFC 3339), when the CLI said.
        #[serde(skip_serializing_if = "Option::is_none")]
        resets_at: Option<String>,
        /// This `agentEnd` replaces the agent's earlier one in this round: a review agent ran
        /// beside the tests (its first `agentEnd` came when its process ended), and its change
        /// did not land: it did not merge after them, or the round was reverted (or its tests
        /// could not start) and it was kept aside. The fields are the run's again, with the
        /// status and error it ended as; only this one is news (no second run, no second cost).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        amended: bool,
        /// Its change was kept aside, not merged (`amended`): where, and why; as the round
        /// log's entry has it. The status stays the run's (`ok`).
        #[serde(skip_serializing_if = "Option::is_none")]
        aside: Option<Aside>,
        /// What it changed in the repository's own git settings, put back by orch (as the
        /// round log's entry has it): a person should look.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        git_settings_put_back: Vec<String>,
        /// Under a sandbox: the `host:port`s it tried to reach and was refused; as the round
        /// log's entry has them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sandbox_refused: Vec<String>,
    },
    /// What a running agent did last, each time that changes (issue 31): a tool call ("Bash
    /// `npm test`, 3rd time") or a change in its tree ("changed src/lib.rs").
    #[serde(rename_all = "camelCase")]
    AgentActivity {
        round: u32,
        agent: String,
        activity: String,
    },
    /// A provider's limit: none of its agents starts until `until`; then `agents` run again.
    #[serde(rename_all = "camelCase")]
    LimitWait {
        round: u32,
        provider: String,
        agents: Vec<String>,
        cause: Cause,
        error: String,
        /// RFC 3339.
        until: String,
        wait_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    LimitResume {
        round: u32,
        provider: String,
        agents: Vec<String>,
        waited_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    SimStart { round: u32, sim: String },
    #[serde(rename_all = "camelCase")]
    SimEnd {
        round: u32,
        sim: String,
        status: StepStatus,
        elapsed_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    TestsStart {
        round: u32,
        attempt: u32,
        /// The suite, when suites run instead of the full command.
        suite: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    TestsEnd {
        round: u32,
        status: StepStatus,
        elapsed_ms: u64,
        passed: Option<u64>,
        failed: Option<u64>,
        regression: bool,
        flaky: bool,
        /// A per-agent revert's extra run: the agents whose changes were left out.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        without: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    Revert {
        round: u32,
        /// The agent whose change alone was taken out (a per-agent revert); `None` for the round.
        agent: Option<String>,
        kept_ref: String,
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    Commit {
        round: u32,
        commit: String,
        what: String,
    },
    #[serde(rename_all = "camelCase")]
    Escalation {
        round: u32,
        agent: String,
        from: String,
        to: String,
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    RoundEnd {
        round: u32,
        status: RoundStatus,
        elapsed_ms: u64,
        cost_usd: f64,
        total_cost_usd: f64,
        commit: Option<String>,
        /// An `ok` round none of whose agents' work landed (the round log's `nothingLanded`).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        nothing_landed: bool,
    },
    #[serde(rename_all = "camelCase")]
    Stop { reason: String, exit_code: i32 },
    #[serde(rename_all = "camelCase")]
    RunEnd {
        rounds: u32,
        exit_code: i32,
        total_cost_usd: f64,
    },
    #[serde(rename_all = "camelCase")]
    Warning { round: Option<u32>, message: String },
}

#[derive(Serialize)]
struct Envelope<'a> {
    ts: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// Something that renders events.
pub trait Sink: Send {
    fn event(&mut self, event: &Event);
    fn finish(&mut self) {}
}

/// The emitter the engine holds. Cheap to share by reference across worker threads.
#[derive(Default)]
pub struct Events {
    sinks: Mutex<Vec<Box<dyn Sink>>>,
}

impl Events {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Events {
        Events {
            sinks: Mutex::new(sinks),
        }
    }

    /// An emitter that drops everything (library callers, dry runs).
    pub fn none() -> Events {
        Events::default()
    }

    pub fn emit(&self, event: Event) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        for s in sinks.iter_mut() {
            s.event(&event);
        }
    }

    pub fn finish(&self) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        for s in sinks.iter_mut() {
            s.finish();
        }
    }
}

pub fn to_json_line(event: &Event) -> String {
    let env = Envelope {
        ts: units::now_rfc3339(),
        event,
    };
    serde_json::to_string(&env).unwrap_or_else(|_| "{}".into())
}

/// `--json`: one object a line on stdout, flushed per event so pipes see it at once.
///
/// A write that fails (the reader of `orch run --json | head` went away, a full disk under
/// `events.ndjson`) silences this sink and nothing else: the run goes on, its agents' work is
/// handled and recorded as always (SIGPIPE stays ignored, so a closed stdout can never kill
/// orch mid-round), and the other sinks keep reporting.
pub struct JsonLines<W: Write + Send> {
    out: W,
    failed: bool,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out, failed: false }
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn event(&mut self, event: &Event) {
        if self.failed {
            return;
        }
        let r = writeln!(self.out, "{}", to_json_line(event)).and_then(|_| self.out.flush());
        if let Err(e) = r {
            self.failed = true;
            log::debug!("event output failed ({e}); no more events are written there");
        }
    }
}

/// `events.ndjson` in the state folder: every event of every run, appended.
pub fn ndjson_file(path: &Path) -> std::io::Result<EventFile> {
    Ok(EventFile {
        path: path.to_path_buf(),
        out: JsonLines::new(open_append(path)?),
    })
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The event log, opened again when it was deleted under orch (a `git clean -fdx` by an agent):
/// the events after that are not written into a file nobody can read.
pub struct EventFile {
    path: std::path::PathBuf,
    out: JsonLines<std::fs::File>,
}

impl Sink for EventFile {
    fn event(&mut self, event: &Event) {
        if !self.path.exists() {
            if let Ok(f) = open_append(&self.path) {
                self.out = JsonLines::new(f);
            }
        }
        self.out.event(event);
    }
}

/// How much a person wants to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Plain lines for a person or a CI log, on stderr. With `timestamps` (off a terminal) each
/// line starts with the time, so a CI log reads as a timeline.
pub struct Human<W: Write + Send> {
    out: W,
    timestamps: bool,
    verbosity: Verbosity,
    github: bool,
}

impl<W: Write + Send> Human<W> {
    pub fn new(out: W, timestamps: bool, verbosity: Verbosity, github: bool) -> Self {
        Human {
            out,
            timestamps,
            verbosity,
            github,
        }
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{}", stamp(text, self.timestamps));
    }

    /// A GitHub Actions workflow command; the value's special characters escaped as the
    /// runner expects.
    fn workflow(&mut self, cmd: &str, text: &str) {
        let esc = text
            .replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        let _ = writeln!(self.out, "::{cmd}::{esc}");
    }
}

impl<W: Write + Send> Sink for Human<W> {
    fn event(&mut self, event: &Event) {
        // The group opens whatever the verbosity, so that every `::endgroup::` has its group.
        if self.github {
            if let Event::RoundStart { round, .. } = event {
                self.workflow("group", &format!("Round {round}"));
            }
        }
        if let Some(text) = describe(event, self.verbosity) {
            self.line(&text);
        }
        if self.github {
            self.annotate(event);
        }
        let _ = self.out.flush();
    }
}

impl<W: Write + Send> Human<W> {
    /// GitHub Actions annotations: errors for what undid or stopped work (a revert, a round
    /// that failed, a stop by budget or stall guard), warnings for what a person should look at
    /// (a failed or timed-out agent, a merge conflict, tests failing no worse than the base).
    fn annotate(&mut self, event: &Event) {
        match event {
            Event::RoundEnd {
                round,
                status,
                nothing_landed,
                ..
            } => {
                match status {
                    RoundStatus::Ok if *nothing_landed => self.workflow(
                        "warning",
                        &format!("round {round}: nothing landed (every agent's work failed or was taken out)"),
                    ),
                    RoundStatus::Failed => self.workflow("error", &format!("round {round} failed")),
                    RoundStatus::Interrupted => {
                        self.workflow("warning", &format!("round {round} was interrupted"))
                    }
                    _ => {}
                }
                let _ = writeln!(self.out, "::endgroup::");
            }
            Event::Revert {
                round,
                agent: Some(agent),
                reason,
                ..
            } => self.workflow(
                "error",
                &format!("round {round}: {agent}'s change taken out: {reason}"),
            ),
            Event::Revert { round, reason, .. } => {
                self.workflow("error", &format!("round {round} reverted: {reason}"))
            }
            Event::TestsEnd {
                round,
                status,
                regression: false,
                failed,
                ..
            } if *status == StepStatus::Failed => self.workflow(
                "warning",
                &format!(
                    "round {round}: tests fail{} (no worse than the base, so the round is kept)",
                    failed.map(|f| format!(", {f} failed")).unwrap_or_default()
                ),
            ),
            Event::AgentEnd {
                round,
                agent,
                status,
                error,
                cause,
                ..
            } if matches!(
                status,
                RunStatus::Failed | RunStatus::Timeout | RunStatus::Conflict
            ) =>
            {
                self.workflow(
                    "warning",
                    &format!(
                        "round {round}: agent {agent} {status}{}",
                        because(*cause, error.as_deref())
                    ),
                )
            }
            Event::LimitWait {
                round,
                provider,
                cause,
                error,
                until,
                wait_ms,
                ..
            } => self.workflow(
                "warning",
                &format!(
                    "round {round}: waiting {} for {provider} ({}: {error}), until {until}",
                    units::duration_ms(*wait_ms),
                    cause.as_str()
                ),
            ),
            Event::Stop { reason, exit_code } if *exit_code != 0 => {
                self.workflow("error", &format!("orch stopped: {reason}"))
            }
            Event::Warning { round, message } => self.workflow(
                "warning",
                &match round {
                    Some(r) => format!("round {r}: {message}"),
                    None => message.clone(),
                },
            ),
            _ => {}
        }
    }
}

/// A line for stderr in the one format events and log lines share: the time (`HH:MM:SS`, UTC)
/// first when `timestamps` (off a terminal), then the text.
pub fn stamp(text: &str, timestamps: bool) -> String {
    if timestamps {
        let ts = units::now_rfc3339();
        format!("{} {text}", &ts[11..19])
    } else {
        text.to_string()
    }
}

/// A log record's text as an event line would read: `warning: ` and `error: ` as the
/// `warning` event and orch's errors say it, no tag for information.
pub fn log_text(level: log::Level, message: &std::fmt::Arguments) -> String {
    let tag = match level {
        log::Level::Error => "error: ",
        log::Level::Warn => "warning: ",
        log::Level::Info => "",
        log::Level::Debug => "debug: ",
        log::Level::Trace => "trace: ",
    };
    format!("{tag}{message}")
}

/// The one-line description of an event for people; `None` when the verbosity hides it.
pub fn describe(event: &Event, v: Verbosity) -> Option<String> {
    match event {
        Event::AgentEnd { .. } => describe_agent_end(event, v),
        Event::AgentStart { .. }
        | Event::AgentActivity { .. }
        | Event::Escalation { .. }
        | Event::LimitWait { .. }
        | Event::LimitResume { .. } => describe_agent(event, v),
        Event::SimStart { .. }
        | Event::SimEnd { .. }
        | Event::TestsStart { .. }
        | Event::TestsEnd { .. }
        | Event::Revert { .. } => describe_checks(event, v),
        _ => describe_run(event, v),
    }
}

/// A run's and a round's own events: start, phase, commit, end, stop, warnings.
fn describe_run(event: &Event, v: Verbosity) -> Option<String> {
    let normal = v >= Verbosity::Normal;
    let verbose = v >= Verbosity::Verbose;
    Some(match event {
        Event::RunStart {
            mission,
            first_round,
            last_round,
            agents,
        } if normal => {
            format!("orch: mission {mission}, rounds {first_round}..{last_round}, {agents} agents")
        }
        Event::RoundStart {
            round,
            active,
            idle,
            base,
        } if normal => {
            let idle = if idle.is_empty() {
                String::new()
            } else {
                format!("; idle: {}", idle.join(", "))
            };
            format!(
                "round {round}: base {}, agents: {}{idle}",
                short(base),
                if active.is_empty() {
                    "none".to_string()
                } else {
                    active.join(", ")
                }
            )
        }
        Event::PhaseStart {
            round,
            phase,
            queue,
            max_concurrency,
        } if verbose => format!(
            "round {round}: {phase} agents in pool order ({max_concurrency} at once): {}",
            queue.join(", ")
        ),
        Event::Commit {
            round,
            commit,
            what,
        } if normal => format!("round {round}: committed {} ({what})", short(commit)),
        Event::RoundEnd {
            round,
            status,
            elapsed_ms,
            cost_usd,
            total_cost_usd,
            nothing_landed,
            ..
        } if normal => format!(
            "round {round}: {status}{} in {}, cost {} (total {})",
            if *nothing_landed {
                ", nothing landed (see the round log's notes)"
            } else {
                ""
            },
            units::duration_ms(*elapsed_ms),
            units::usd(*cost_usd),
            units::usd(*total_cost_usd)
        ),
        Event::Stop { reason, .. } => format!("orch: stopping: {reason}"),
        Event::RunEnd {
            rounds,
            total_cost_usd,
            ..
        } if normal => format!(
            "orch: {rounds} round{} run, total cost {}",
            if *rounds == 1 { "" } else { "s" },
            units::usd(*total_cost_usd)
        ),
        Event::Warning { round, message } => match round {
            Some(r) => format!("round {r}: warning: {message}"),
            None => format!("warning: {message}"),
        },
        _ => return None,
    })
}

/// An agent's start, model change and waits on a provider's limit.
fn describe_agent(event: &Event, v: Verbosity) -> Option<String> {
    let normal = v >= Verbosity::Normal;
    let verbose = v >= Verbosity::Verbose;
    Some(match event {
        Event::AgentStart {
            round,
            agent,
            model,
            task,
            ..
        } if verbose => format!(
            "round {round}: {agent} started{}{}",
            if model.is_empty() {
                String::new()
            } else {
                format!(" ({model})")
            },
            task.as_deref()
                .map(|t| format!(" on task {t}"))
                .unwrap_or_default()
        ),
        Event::AgentActivity {
            round,
            agent,
            activity,
        } if verbose => format!("round {round}: {agent}: {activity}"),
        Event::LimitWait {
            round,
            provider,
            agents,
            cause,
            error,
            until,
            wait_ms,
        } => format!(
            "round {round}: waiting {} for {provider}'s limit ({}: {error}), until {until}; then {} run{} again",
            units::duration_ms(*wait_ms),
            cause.as_str(),
            agents.join(", "),
            if agents.len() == 1 { "s" } else { "" }
        ),
        Event::LimitResume {
            round,
            provider,
            agents,
            waited_ms,
        } if normal => format!(
            "round {round}: waited {} for {provider}; running {} again",
            units::duration_ms(*waited_ms),
            agents.join(", ")
        ),
        Event::Escalation {
            round,
            agent,
            from,
            to,
            reason,
        } if verbose => {
            format!("round {round}: {agent} moves from model {from:?} to {to:?}: {reason}")
        }
        _ => return None,
    })
}

/// An agent's end: set aside or failed after the tests, or its status, time, cost and cause.
fn describe_agent_end(event: &Event, v: Verbosity) -> Option<String> {
    let normal = v >= Verbosity::Normal;
    Some(match event {
        Event::AgentEnd {
            round,
            agent,
            amended: true,
            aside: Some(aside),
            ..
        } if normal => format!(
            "round {round}: {agent} {}{}",
            aside.reason,
            aside
                .kept_ref
                .as_deref()
                .map(|r| format!(" (kept in {r})"))
                .unwrap_or_default()
        ),
        Event::AgentEnd {
            round,
            agent,
            status,
            error,
            amended: true,
            ..
        } if normal => format!(
            "round {round}: {agent} {status} after the tests{}",
            error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        Event::AgentEnd {
            round,
            agent,
            status,
            elapsed_ms,
            cost_usd,
            cost_known,
            changed_files,
            error,
            cause,
            resets_at,
            ..
        } if normal => format!(
            "round {round}: {agent} {status} in {}, {} file{} changed, {}{}{}",
            units::duration_ms(*elapsed_ms),
            changed_files,
            if *changed_files == 1 { "" } else { "s" },
            if *cost_known {
                units::usd(*cost_usd)
            } else {
                "cost unknown".into()
            },
            match (cause, error) {
                (Some(c), Some(e)) => format!(" ({}: {e})", c.as_str()),
                (Some(c), None) => format!(" ({})", c.as_str()),
                (None, Some(e)) => format!(" ({e})"),
                (None, None) => String::new(),
            },
            resets_at
                .as_deref()
                .map(|t| format!(", resets at {t}"))
                .unwrap_or_default()
        ),
        _ => return None,
    })
}

/// The sims, the test runs and the reverts that follow them.
fn describe_checks(event: &Event, v: Verbosity) -> Option<String> {
    let normal = v >= Verbosity::Normal;
    let verbose = v >= Verbosity::Verbose;
    Some(match event {
        Event::SimStart { round, sim } if verbose => format!("round {round}: {sim}-sim started"),
        Event::SimEnd {
            round,
            sim,
            status,
            elapsed_ms,
        } if normal => format!(
            "round {round}: {sim}-sim {status} in {}",
            units::duration_ms(*elapsed_ms)
        ),
        Event::TestsStart {
            round,
            attempt,
            suite,
        } if verbose => format!(
            "round {round}: {} started (attempt {attempt})",
            suite
                .as_deref()
                .map(|s| format!("test suite {s}"))
                .unwrap_or_else(|| "tests".into())
        ),
        Event::TestsEnd {
            round,
            status,
            elapsed_ms,
            passed,
            failed,
            regression,
            flaky,
            without,
        } if normal => format!(
            "round {round}: tests{} {status} in {}{}{}{}",
            match without.as_slice() {
                [] => String::new(),
                [one] => format!(" without {one}'s change"),
                many => format!(" without the changes of {}", many.join(", ")),
            },
            units::duration_ms(*elapsed_ms),
            match (passed, failed) {
                (Some(p), Some(f)) => format!(" ({p} passed, {f} failed)"),
                _ => String::new(),
            },
            if *regression { ", a regression" } else { "" },
            if *flaky {
                ", flaky (passed on retry)"
            } else {
                ""
            }
        ),
        Event::Revert {
            round,
            agent: Some(agent),
            kept_ref,
            reason,
        } => {
            format!("round {round}: took out {agent}'s change ({reason}); it is kept in {kept_ref}")
        }
        Event::Revert {
            round,
            agent: None,
            kept_ref,
            reason,
        } => format!("round {round}: reverted ({reason}); the work is kept in {kept_ref}"),
        _ => return None,
    })
}

/// ": rateLimited: API Error: ..." for an annotation.
fn because(cause: Option<Cause>, error: Option<&str>) -> String {
    match (cause, error) {
        (Some(c), Some(e)) => format!(" ({}): {e}", c.as_str()),
        (Some(c), None) => format!(" ({})", c.as_str()),
        (None, Some(e)) => format!(": {e}"),
        (None, None) => String::new(),
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_one_object_with_event_and_ts() {
        let line = to_json_line(&Event::AgentEnd {
            round: 2,
            agent: "a".into(),
            phase: Phase::Code,
            model: "m".into(),
            status: RunStatus::Ok,
            exit_code: Some(0),
            elapsed_ms: 5,
            cost_usd: 0.5,
            cost_known: true,
            changed_files: 1,
            error: None,
            cause: None,
            resets_at: None,
            amended: false,
            aside: None,
            git_settings_put_back: Vec::new(),
            sandbox_refused: Vec::new(),
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "agentEnd");
        assert_eq!(v["elapsedMs"], 5);
        // Typed fields, written as the strings the round log uses.
        assert_eq!(v["phase"], "code");
        assert_eq!(v["status"], "ok");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert!(!line.contains('\n'));
        // Only an amending agentEnd says so: the line of every other run is as it was.
        assert!(v.get("amended").is_none(), "{line}");
    }

    #[test]
    fn github_mode_groups_rounds_and_annotates_reverts() {
        let mut buf = Vec::new();
        {
            let mut h = Human::new(&mut buf, false, Verbosity::Normal, true);
            h.event(&Event::RoundStart {
                round: 1,
                base: "abc".into(),
                active: vec!["a".into()],
                idle: vec![],
            });
            h.event(&Event::Revert {
                round: 1,
                agent: None,
                kept_ref: "refs/orch/rejected/round-1".into(),
                reason: "tests regressed\n3 failed".into(),
            });
            h.event(&Event::RoundEnd {
                round: 1,
                status: RoundStatus::Reverted,
                elapsed_ms: 1,
                cost_usd: 0.0,
                total_cost_usd: 0.0,
                commit: None,
                nothing_landed: false,
            });
        }
        let s = String::from_utf8(buf).unwrap();
        assert!(s.starts_with("::group::Round 1\n"), "{s}");
        assert!(
            s.contains("::error::round 1 reverted: tests regressed%0A3 failed"),
            "{s}"
        );
        assert!(s.trim_end().ends_with("::endgroup::"), "{s}");
    }

    #[test]
    fn a_round_that_landed_nothing_is_a_warning_under_github_and_said_on_its_line() {
        let end = Event::RoundEnd {
            round: 2,
            status: RoundStatus::Ok,
            elapsed_ms: 1500,
            cost_usd: 0.5,
            total_cost_usd: 1.0,
            commit: None,
            nothing_landed: true,
        };
        let mut buf = Vec::new();
        Human::new(&mut buf, false, Verbosity::Normal, true).event(&end);
        let s = String::from_utf8(buf).unwrap();
        assert!(s.contains("::warning::round 2: nothing landed"), "{s}");
        let mut buf = Vec::new();
        Human::new(&mut buf, false, Verbosity::Normal, false).event(&end);
        let s = String::from_utf8(buf).unwrap();
        assert!(
            s.contains("round 2: ok, nothing landed (see the round log's notes) in 1.5s"),
            "{s}"
        );
        assert!(to_json_line(&end).contains("\"nothingLanded\":true"));
        assert!(to_json_line(&end).contains("\"status\":\"ok\""));
        let tests = Event::TestsEnd {
            round: 2,
            status: StepStatus::Failed,
            elapsed_ms: 1,
            passed: None,
            failed: Some(1),
            regression: true,
            flaky: false,
            without: vec![],
        };
        assert!(to_json_line(&tests).contains("\"status\":\"failed\""));
        assert_eq!(
            describe(&tests, Verbosity::Normal).unwrap(),
            "round 2: tests failed in 1ms, a regression"
        );
    }
}
