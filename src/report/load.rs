//! Reading the round logs back: finds `rounds/round-NNNN.json` under a state folder, parses them
//! in parallel, and brings v8 and v9 logs to one shape ([`Round`]) for the summary.
//!
//! A v9 log is the typed [`RoundLog`]. A v8 log (no `schema`, or one below 9) has a single serial
//! `timing.sims` and may lack fields v9 has, so it is read field by field from a
//! `serde_json::Value` with defaults; its serial sims figure is kept apart (`serial_sims_ms`) so
//! that no one mistakes it for a pre-sim that ran beside Phase A. Whether each process's
//! `startMs` was actually written is recorded too: a missing start is not a start at 0, and the
//! hidden-time figure and the Gantt chart must know the difference.
//!
//! A file that cannot be read or parsed is a [`Warning`], never an error: one bad log must not
//! hide the other rounds of an overnight run.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::error::{Error, IoContext, Result};
use crate::roundlog::{
    AgentEntry, Phase, RoundLog, RoundStatus, RunStatus, SimEntry, Sims, StepStatus, TestsEntry,
    Timing,
};

/// Every round log that parsed, sorted by round number, and what went wrong with the others.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state_dir: PathBuf,
    pub rounds: Vec<Round>,
    pub warnings: Vec<Warning>,
}

/// A log file that was skipped or read with a caveat.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub file: PathBuf,
    pub message: String,
}

/// One round log, v8 or v9, in the v9 shape.
#[derive(Debug, Clone)]
pub struct Round {
    pub file: PathBuf,
    /// The log's `schema`; 0 when a v8 log has none.
    pub schema: u32,
    /// For a v8 log, the single serial `timing.sims`; `None` for v9. The v9 `timing.preSim` and
    /// `timing.postSim` of a v8 round are 0.
    pub serial_sims_ms: Option<u64>,
    pub log: RoundLog,
    pub starts: StartsKnown,
    /// Fields the report reads from the file as written, whether or not this orch's
    /// [`RoundLog`] has them yet (issue 17's failure causes and limit waits).
    pub extra: Extra,
}

/// What the report reads leniently beside the typed log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    /// Each agent entry's `cause` (index-aligned with `log.agents`).
    pub causes: Vec<Option<String>>,
    /// `timing.waited`: milliseconds spent waiting on a provider limit.
    pub waited_ms: u64,
}

impl Extra {
    fn read(v: &Value) -> Extra {
        Extra {
            causes: v
                .get("agents")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            e.get("cause")
                                .and_then(Value::as_str)
                                .filter(|c| !c.is_empty())
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            waited_ms: v
                .get("timing")
                .and_then(|t| u64_at(t, "waited"))
                .unwrap_or(0),
        }
    }
}

impl Round {
    pub fn is_legacy(&self) -> bool {
        self.serial_sims_ms.is_some()
    }
}

/// Which `startMs` fields the file really had (the typed log defaults a missing one to 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartsKnown {
    /// Index-aligned with `log.agents`.
    pub agents: Vec<bool>,
    pub pre_sim: bool,
    pub post_sim: bool,
    pub tests: bool,
    /// v8 only: `sims.startMs` of the serial sims run.
    pub serial_sims: Option<u64>,
}

/// The round number in a file name `round-NNNN.json`; `None` for anything else, including the
/// `round-0003.prev-1.json` copies that `orch round N` keeps of a re-run round.
pub fn round_number(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_prefix("round-")?.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Loads the round logs of `state_dir`, those numbered within `rounds` (inclusive) when given.
pub fn load(state_dir: &Path, rounds: Option<(u32, u32)>) -> Result<Loaded> {
    let dir = state_dir.join("rounds");
    let none_yet = || {
        Error::Usage(format!(
            "no round logs in {}; run `orch run` first",
            dir.display()
        ))
    };
    if !dir.is_dir() {
        return Err(none_yet());
    }
    let mut files: Vec<(u32, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))? {
        let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(round_number) {
            files.push((n, entry.path()));
        }
    }
    if files.is_empty() {
        return Err(none_yet());
    }
    if let Some((a, b)) = rounds {
        let (first, last) = span(&files);
        files.retain(|(n, _)| (a..=b).contains(n));
        if files.is_empty() {
            return Err(Error::Usage(format!(
                "no round logs for rounds {a}..{b} in {} (it has rounds {first}..{last})",
                dir.display()
            )));
        }
    }
    files.sort();

    let parsed: Vec<(Option<Round>, Vec<Warning>)> = files
        .par_iter()
        .map(|(n, path)| read_one(*n, path))
        .collect();
    let mut loaded = Loaded {
        state_dir: state_dir.to_path_buf(),
        rounds: Vec::with_capacity(parsed.len()),
        warnings: Vec::new(),
    };
    for (round, warnings) in parsed {
        for w in &warnings {
            log::warn!("{}: {}", w.file.display(), w.message);
        }
        loaded.warnings.extend(warnings);
        loaded.rounds.extend(round);
    }
    // The file name decides the order when a log disagrees with its name: that is the number
    // `orch round N` and the user see.
    loaded.rounds.sort_by_key(|r| {
        (
            round_number(&file_name(&r.file)).unwrap_or(r.log.round),
            r.log.round,
        )
    });
    Ok(loaded)
}

/// Reads one round log (any version); an error naming the file when it cannot be read.
pub fn read_round(number: u32, path: &Path) -> Result<Round> {
    let bytes = fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    match parse(number, path, &bytes) {
        Ok((round, notes)) => {
            for n in notes {
                log::warn!("{}: {n}", path.display());
            }
            Ok(round)
        }
        Err(message) => Err(Error::CorruptState {
            file: path.to_path_buf(),
            message,
        }),
    }
}

fn span(files: &[(u32, PathBuf)]) -> (u32, u32) {
    let first = files.iter().map(|f| f.0).min().unwrap_or(0);
    let last = files.iter().map(|f| f.0).max().unwrap_or(0);
    (first, last)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_one(number: u32, path: &Path) -> (Option<Round>, Vec<Warning>) {
    let warn = |message: String| Warning {
        file: path.to_path_buf(),
        message,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return (None, vec![warn(format!("cannot read it ({e}); skipped"))]),
    };
    match parse(number, path, &bytes) {
        Ok((round, notes)) => (Some(round), notes.into_iter().map(warn).collect()),
        Err(message) => (None, vec![warn(format!("{message}; skipped"))]),
    }
}

/// Parses one log; the `Vec<String>` holds caveats about a log that was still used.
pub(crate) fn parse(
    number: u32,
    path: &Path,
    bytes: &[u8],
) -> std::result::Result<(Round, Vec<String>), String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "not a round log (not a JSON object)".to_string())?;
    let schema = match obj.get("schema") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| format!("`schema` is {v}, not a version number"))?,
    };
    if schema >= 9 {
        let round = obj.get("round").and_then(Value::as_u64);
        if round.and_then(|n| u32::try_from(n).ok()).is_none() {
            return Err(format!(
                "not a valid v{schema} round log (no `round` number)"
            ));
        }
        let mut notes = Vec::new();
        let mut value = value.clone();
        let mut log = conform(&mut value, &mut notes)
            .map_err(|e| format!("not a valid v{schema} round log ({e})"))?;
        fold_beside_costs(&mut log);
        if schema > crate::roundlog::SCHEMA {
            notes.push(format!(
                "schema {schema} is newer than this orch knows ({}); read as v{}",
                crate::roundlog::SCHEMA,
                crate::roundlog::SCHEMA
            ));
        }
        let starts = StartsKnown {
            agents: (0..log.agents.len())
                .map(|i| has(&value, &["agents", &i.to_string(), "startMs"]))
                .collect(),
            pre_sim: has(&value, &["sims", "pre", "startMs"]),
            post_sim: has(&value, &["sims", "post", "startMs"]),
            tests: has(&value, &["tests", "startMs"]),
            serial_sims: None,
        };
        return Ok((
            Round {
                file: path.to_path_buf(),
                schema,
                serial_sims_ms: None,
                extra: Extra::read(&value),
                log,
                starts,
            },
            notes,
        ));
    }
    legacy(number, path, schema, &value)
}

/// A review agent's entry with a `besideRun` says the agent's whole spend in the round (both
/// runs). Logs written before it said so held only the run after the revert: when the entries
/// add up to the round's cost only with their `besideRun`s (closer than without, costs being
/// rounded to the micro-dollar), each is added in, so old and new logs read the same.
fn fold_beside_costs(log: &mut RoundLog) {
    let beside: f64 = log
        .agents
        .iter()
        .filter_map(|a| a.beside_run.as_ref())
        .map(|b| b.cost_usd)
        .sum();
    let entries: f64 = log.agents.iter().map(|a| a.cost_usd).sum();
    if beside > 0.0 && (entries + beside - log.cost_usd).abs() < (entries - log.cost_usd).abs() {
        for a in &mut log.agents {
            if let Some(b) = &a.beside_run {
                a.cost_usd += b.cost_usd;
            }
        }
    }
}

/// Reads a v9 log leniently: each field the typed parse stumbles on (missing, of the wrong
/// type, an unknown status) is given its default, or dropped when it is optional, and a note
/// names it. Gives up only on a field it has no default for.
fn conform(value: &mut Value, out: &mut Vec<String>) -> std::result::Result<RoundLog, String> {
    let mut notes = Vec::new();
    let r = conform_notes(value, &mut notes);
    // One warning per log, not one per field: a log written before a field existed misses it
    // in every round.
    if !notes.is_empty() {
        out.push(format!("read with defaults: {}", notes.join("; ")));
    }
    r
}

fn conform_notes(
    value: &mut Value,
    notes: &mut Vec<String>,
) -> std::result::Result<RoundLog, String> {
    // Objects this repair put in whole: their own missing fields go unsaid.
    let mut inserted: Vec<String> = Vec::new();
    // Each pass fixes one field; a log has a few dozen fields at most that could be wrong.
    for _ in 0..200 {
        let err = match serde_path_to_error::deserialize::<_, RoundLog>(&*value) {
            Ok(log) => return Ok(log),
            Err(e) => e,
        };
        let path: Vec<Segment> = err.path().iter().cloned().collect();
        let inner = err.inner().to_string();
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let Some(default) = default_for(context(&path), field, true) else {
                return Err(format!("{inner} at `{}`", show(&path)));
            };
            let Some(Value::Object(parent)) = at(value, &path) else {
                return Err(format!("{inner} at `{}`", show(&path)));
            };
            let mut full = path.clone();
            full.push(Segment::Map {
                key: field.to_string(),
            });
            if !inserted.contains(&show(&path)) {
                notes.push(format!("`{}` is missing, read as {default}", show(&full)));
            }
            parent.insert(field.to_string(), default);
            inserted.push(show(&full));
            continue;
        }
        // A value of the wrong type or an unknown name: the field's default, or without it.
        let Some((last, parent_path)) = path.split_last() else {
            return Err(inner);
        };
        let default = match last {
            Segment::Map { key } => default_for(context(parent_path), key, false),
            _ => None,
        };
        let shown = show(&path);
        let Some(parent) = at(value, parent_path) else {
            return Err(format!("{inner} at `{shown}`"));
        };
        match (parent, last, default) {
            (Value::Object(m), Segment::Map { key }, Some(d)) => {
                notes.push(format!("`{shown}`: {inner}, read as {d}"));
                m.insert(key.clone(), d);
            }
            (Value::Object(m), Segment::Map { key }, None) => {
                notes.push(format!("`{shown}`: {inner}, left out"));
                m.remove(key);
            }
            (Value::Array(a), Segment::Seq { index }, _) if *index < a.len() => {
                notes.push(format!("`{shown}`: {inner}, left out"));
                a.remove(*index);
            }
            _ => return Err(format!("{inner} at `{shown}`")),
        }
    }
    Err("too many fields that do not parse".to_string())
}

/// The value at `path`, for repair.
fn at<'a>(v: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Segment::Map { key } => cur.as_object_mut()?.get_mut(key)?,
            Segment::Seq { index } => cur.as_array_mut()?.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn show(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            _ => out.push_str(".?"),
        }
    }
    out
}

/// Which object of the log `path` (to an object) is: the name of the last key on it.
fn context(path: &[Segment]) -> &str {
    path.iter()
        .rev()
        .find_map(|s| match s {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// The value a field is read as when it is missing (`missing`) or does not parse. `None`:
/// an optional field (dropped when wrong) or one without a sensible default.
fn default_for(ctx: &str, field: &str, missing: bool) -> Option<Value> {
    use serde_json::json;
    Some(match (ctx, field) {
        ("", "schema") => json!(crate::roundlog::SCHEMA),
        // A missing status is the usual case, one that is not a status says something broke.
        ("", "status") => json!(if missing { "ok" } else { "failed" }),
        ("", "mission" | "startedAt" | "finishedAt" | "base") => json!(""),
        ("", "commit") => Value::Null,
        ("", "agents") => json!([]),
        ("", "timing") => json!({}),
        ("", "costUsd" | "totalCostUsd") => json!(0.0),
        ("timing", _) => json!(0),
        ("agents", "name") | ("suiteRuns", "name") | ("decisions", "agent") => json!("?"),
        ("agents", "phase") => json!("code"),
        ("agents", "status") => json!("failed"),
        ("agents", "costUsd") => json!(0.0),
        ("agents", "startMs" | "elapsedMs" | "timeoutMs" | "changedFiles") => json!(0),
        ("pre" | "post" | "tests" | "suiteRuns" | "testRuns" | "committed", "status") => {
            json!("failed")
        }
        ("suiteRuns" | "decisions", "reason") => json!(""),
        ("decisions", "decision") => json!("skipped"),
        ("revert", "strategy") => json!("round"),
        ("revert", "culprits") | ("testRuns", "without") => json!([]),
        ("testRuns", "elapsedMs") => json!(0),
        (_, "startMs" | "elapsedMs") => json!(0),
        _ => return None,
    })
}

fn has(v: &Value, keys: &[&str]) -> bool {
    let mut cur = v;
    for k in keys {
        cur = match cur {
            Value::Object(m) => match m.get(*k) {
                Some(x) => x,
                None => return false,
            },
            Value::Array(a) => match k.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    cur.is_u64()
}

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    let x = v.get(key)?;
    // Older writers sometimes wrote times as floats.
    x.as_u64()
        .or_else(|| x.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64))
}

fn f64_at(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A v8 log, read field by field. Only `timing` is required: without it there is nothing to
/// report.
fn legacy(
    number: u32,
    path: &Path,
    schema: u32,
    v: &Value,
) -> std::result::Result<(Round, Vec<String>), String> {
    let mut notes = Vec::new();
    let t = v
        .get("timing")
        .filter(|t| t.is_object())
        .ok_or_else(|| "v8 round log without a `timing` object".to_string())?;
    let (timing, sims_ms) = legacy_timing(t);
    let status = match str_at(v, "status") {
        Some(s) => round_status(s).unwrap_or_else(|| {
            notes.push(format!("unknown round status {s:?}, counted as failed"));
            RoundStatus::Failed
        }),
        None if v.get("reverted").and_then(Value::as_bool) == Some(true) => RoundStatus::Reverted,
        None => RoundStatus::Ok,
    };

    let mut agents = Vec::new();
    let mut agent_starts = Vec::new();
    for a in v
        .get("agents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        agent_starts.push(u64_at(a, "startMs").is_some());
        agents.push(legacy_agent(a, &mut notes));
    }

    let tests = legacy_tests(v, timing.tests);
    let tests_start = v
        .get("tests")
        .map(|t| u64_at(t, "startMs").is_some())
        .unwrap_or(false);
    let (sims, serial_start) = legacy_sims(v, sims_ms);
    let round_cost = legacy_round_cost(v, &agents, &mut notes);
    let log = RoundLog {
        schema,
        round: u64_at(v, "round")
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(number),
        mission: str_at(v, "mission").unwrap_or_default().to_string(),
        status,
        started_at: str_at(v, "startedAt").unwrap_or_default().to_string(),
        finished_at: str_at(v, "finishedAt").unwrap_or_default().to_string(),
        base: str_at(v, "base").unwrap_or_default().to_string(),
        commit: str_at(v, "commit").map(str::to_string),
        agents,
        sims,
        tests,
        reverted: v.get("reverted").and_then(Value::as_bool).unwrap_or(false)
            || status == RoundStatus::Reverted,
        kept_ref: None,
        revert: None,
        timing,
        cost_usd: round_cost,
        total_cost_usd: f64_at(v, "totalCostUsd"),
        stop_reason: str_at(v, "stopReason").map(str::to_string),
        decisions: Vec::new(),
        notes: Vec::new(),
        nothing_landed: false,
    };
    let starts = StartsKnown {
        agents: agent_starts,
        pre_sim: false,
        post_sim: false,
        tests: tests_start,
        serial_sims: serial_start,
    };
    Ok((
        Round {
            file: path.to_path_buf(),
            schema,
            serial_sims_ms: Some(sims_ms),
            extra: Extra::read(v),
            log,
            starts,
        },
        notes,
    ))
}

/// A v8 log's `timing`, and its one serial sims run's time (`timing.sims`).
fn legacy_timing(t: &Value) -> (Timing, u64) {
    let sims_ms = u64_at(t, "sims").unwrap_or(0);
    let timing = Timing {
        total: u64_at(t, "total").unwrap_or(0),
        phase_a: u64_at(t, "phaseA").unwrap_or(0),
        phase_b: u64_at(t, "phaseB").unwrap_or(0),
        tests: u64_at(t, "tests").unwrap_or(0),
        pre_sim: 0,
        post_sim: 0,
        overhead: 0,
        ..Timing::default()
    };
    let overhead = u64_at(t, "overhead").unwrap_or_else(|| {
        timing
            .total
            .saturating_sub(timing.phase_a + timing.phase_b + timing.tests + sims_ms)
    });
    let timing = Timing { overhead, ..timing };

    (timing, sims_ms)
}

/// One agent of a v8 log; an unknown status is counted as failed, with a note.
fn legacy_agent(a: &Value, notes: &mut Vec<String>) -> AgentEntry {
    let name = str_at(a, "name").unwrap_or("?").to_string();
    let status = match str_at(a, "status") {
        Some(s) => run_status(s).unwrap_or_else(|| {
            notes.push(format!(
                "agent {name:?} has unknown status {s:?}, counted as failed"
            ));
            RunStatus::Failed
        }),
        None => RunStatus::Failed,
    };
    let phase = match str_at(a, "phase") {
        Some("review") | Some("B") | Some("b") => Phase::Review,
        _ => Phase::Code,
    };
    AgentEntry {
        model: str_at(a, "model").unwrap_or_default().to_string(),
        task: str_at(a, "task").map(str::to_string),
        exit_code: a
            .get("exitCode")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
        start_ms: u64_at(a, "startMs").unwrap_or(0),
        elapsed_ms: u64_at(a, "elapsedMs").unwrap_or(0),
        timeout_ms: u64_at(a, "timeoutMs").unwrap_or(0),
        cost_usd: f64_at(a, "costUsd"),
        cost_known: a.get("costKnown").and_then(Value::as_bool).unwrap_or(true),
        changed_files: u64_at(a, "changedFiles")
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
        log: str_at(a, "log").unwrap_or_default().to_string(),
        error: str_at(a, "error").map(str::to_string),
        escalated_to: str_at(a, "escalatedTo").map(str::to_string),
        session_id: str_at(a, "sessionId").map(str::to_string),
        session_resumed: a
            .get("sessionResumed")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        session_dropped: str_at(a, "sessionDropped").map(str::to_string),
        ..AgentEntry::new(name, phase, status)
    }
}

/// A v8 log's tests, when it has a `tests` object; `timing_tests` stands in for a missing time.
fn legacy_tests(v: &Value, timing_tests: u64) -> Option<TestsEntry> {
    v.get("tests")
        .filter(|t| t.is_object())
        .map(|t| TestsEntry {
            status: str_at(t, "status")
                .and_then(step_status)
                .unwrap_or(StepStatus::Failed),
            exit_code: None,
            start_ms: u64_at(t, "startMs").unwrap_or(0),
            elapsed_ms: u64_at(t, "elapsedMs").unwrap_or(timing_tests),
            passed: u64_at(t, "passed"),
            failed: u64_at(t, "failed"),
            suites: Vec::new(),
            attempts: u64_at(t, "attempts")
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(1),
            flaky: t.get("flaky").and_then(Value::as_bool).unwrap_or(false),
            regression: t
                .get("regression")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            log: str_at(t, "log").unwrap_or_default().to_string(),
            tail: String::new(),
            reason: None,
            suite_runs: Vec::new(),
            cannot_start: str_at(t, "cannotStart").map(str::to_string),
        })
}

/// A v8 log's one sims run as the pre-sim slot, and its start when logged.
fn legacy_sims(v: &Value, sims_ms: u64) -> (Sims, Option<u64>) {
    let serial_sim = v.get("sims").filter(|s| s.get("status").is_some());
    let serial_start = serial_sim.and_then(|s| u64_at(s, "startMs"));
    let sims = Sims {
        pre: serial_sim.map(|s| SimEntry {
            status: str_at(s, "status")
                .and_then(step_status)
                .unwrap_or(StepStatus::Ok),
            exit_code: None,
            start_ms: serial_start.unwrap_or(0),
            elapsed_ms: u64_at(s, "elapsedMs").unwrap_or(sims_ms),
            published: s.get("published").and_then(Value::as_bool).unwrap_or(false),
            log: String::new(),
            note: None,
        }),
        post: None,
    };
    (sims, serial_start)
}

/// A v8 round's cost: its `costUsd`, or its agents' sum (with a note) when that is 0 or out.
fn legacy_round_cost(v: &Value, agents: &[AgentEntry], notes: &mut Vec<String>) -> f64 {
    let agents_cost: f64 = agents.iter().map(|a| a.cost_usd).sum();
    match v.get("costUsd").and_then(Value::as_f64) {
        Some(c) if c > 0.0 || agents_cost <= 0.0 => c,
        _ if agents_cost > 0.0 => {
            notes.push(format!(
                "`costUsd` is missing or 0 while its agents cost {}; the agents' sum is used",
                crate::units::usd(agents_cost)
            ));
            agents_cost
        }
        _ => 0.0,
    }
}

fn round_status(s: &str) -> Option<RoundStatus> {
    Some(match s {
        "ok" | "success" | "committed" => RoundStatus::Ok,
        "skipped" | "idle" => RoundStatus::Skipped,
        "reverted" => RoundStatus::Reverted,
        "failed" | "error" => RoundStatus::Failed,
        "interrupted" | "cancelled" => RoundStatus::Interrupted,
        _ => return None,
    })
}

fn run_status(s: &str) -> Option<RunStatus> {
    Some(match s {
        "ok" | "success" => RunStatus::Ok,
        "empty" | "noop" => RunStatus::Empty,
        "failed" | "error" => RunStatus::Failed,
        "timeout" | "timedout" | "timed_out" => RunStatus::Timeout,
        "conflict" => RunStatus::Conflict,
        "cancelled" | "canceled" => RunStatus::Cancelled,
        _ => return None,
    })
}

fn step_status(s: &str) -> Option<StepStatus> {
    Some(match s {
        "ok" | "success" => StepStatus::Ok,
        "passed" | "pass" => StepStatus::Passed,
        "failed" | "fail" | "error" => StepStatus::Failed,
        "timeout" => StepStatus::Timeout,
        "cancelled" => StepStatus::Cancelled,
        "skipped" => StepStatus::Skipped,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_agents_entry_reads_as_its_whole_spend_in_old_and_new_logs() {
        // The reviewer ran beside the tests (0.01) and again after a per-agent revert (0.01).
        let log = |entry: &str| {
            format!(
                r#"{{"schema": 9, "round": 1, "status": "ok", "mission": "m", "startedAt": "",
                "finishedAt": "", "base": "", "commit": null, "costUsd": 0.31, "totalCostUsd": 0.31,
                "timing": {{"total": 1, "phaseA": 0, "phaseB": 0, "tests": 0, "preSim": 0,
                            "postSim": 0, "overhead": 1}},
                "agents": [{{"name": "coder", "phase": "code", "status": "ok", "costUsd": 0.29}},
                           {{"name": "reviewer", "phase": "review", "status": "ok",
                             "costUsd": {entry},
                             "besideRun": {{"name": "reviewer", "phase": "review",
                                            "status": "ok", "costUsd": 0.01}}}}]}}"#
            )
        };
        // Written before the entry said the whole spend (0.01), and since (0.02).
        for entry in ["0.01", "0.02"] {
            let (r, _) =
                parse(1, Path::new("round-0001.json"), log(entry).as_bytes()).expect("parses");
            let cost = r.log.agents[1].cost_usd;
            assert!((cost - 0.02).abs() < 1e-9, "entry {entry}: read {cost}");
        }
    }

    #[test]
    fn a_v9_log_missing_fields_is_read_with_defaults_and_notes_naming_them() {
        let text = br#"{"schema": 9, "round": 3, "status": "exploded",
            "agents": [{"name": "a", "phase": "code", "status": "ok", "costUsd": "lots"},
                       {"phase": "code", "status": "weird"}, 7],
            "tests": {"status": "passed", "passed": 4},
            "timing": {"total": 10}}"#;
        let (r, notes) = parse(3, Path::new("round-0003.json"), text).expect("parses");
        assert_eq!(r.log.status, RoundStatus::Failed);
        assert_eq!(r.log.base, "");
        assert_eq!(r.log.timing.total, 10);
        assert_eq!(r.log.agents.len(), 2);
        assert_eq!(r.log.agents[0].cost_usd, 0.0);
        assert_eq!(r.log.agents[1].name, "?");
        assert_eq!(r.log.agents[1].status, RunStatus::Failed);
        let all = notes.join("\n");
        for field in [
            "`base` is missing",
            "`status`: unknown variant",
            "`agents[0].costUsd`",
            "`agents[1].name` is missing",
            "`agents[2]`",
            "`timing.phaseA` is missing",
        ] {
            assert!(all.contains(field), "{field} not in\n{all}");
        }
    }

    #[test]
    fn only_plain_round_files_count() {
        assert_eq!(round_number("round-0003.json"), Some(3));
        assert_eq!(round_number("round-12345.json"), Some(12345));
        assert_eq!(round_number("round-0003.prev-1.json"), None);
        assert_eq!(round_number("round-.json"), None);
        assert_eq!(round_number("round-0003.json.tmp"), None);
        assert_eq!(round_number("state.json"), None);
    }

    #[test]
    fn a_v8_log_keeps_its_serial_sims_apart() {
        let text = br#"{"round": 2, "status": "ok",
            "agents": [{"name": "a", "status": "ok", "elapsedMs": 1000}],
            "timing": {"total": 5000, "phaseA": 1000, "phaseB": 0, "tests": 1500, "sims": 2000}}"#;
        let (r, notes) = parse(2, Path::new("round-0002.json"), text).expect("parses");
        assert!(notes.is_empty());
        assert!(r.is_legacy());
        assert_eq!(r.serial_sims_ms, Some(2000));
        assert_eq!(r.log.timing.overhead, 500);
        assert_eq!(r.log.timing.pre_sim, 0);
        assert_eq!(r.starts.agents, vec![false]);
    }

    #[test]
    fn garbage_is_an_error_message_not_a_panic() {
        for text in [
            &b"{"[..],
            b"[]",
            b"{\"schema\": \"nine\"}",
            b"{\"schema\": 9}",
            b"{\"schema\": 9, \"round\": \"one\"}",
            b"{}",
        ] {
            assert!(parse(1, Path::new("x"), text).is_err(), "{:?}", text);
        }
    }
}
