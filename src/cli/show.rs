//! `orch show N`: one round for a person, from its round log: status, base -> commit, each
//! agent (status, cause and message, model, task, time, cost, changed files), the refs kept for
//! the round with the git command that shows each, the tests (counts, suites, attempts, the
//! revert's extra runs and culprits), the sims, the plan's decisions and where the log files
//! are. `--json` gives scripts the same as one object; `--replay K` shows the K-th replay of
//! the round (`replays/round-NNNN-K/`) instead.
//!
//! It only reads: the round log (through `report::load`, so logs of every version read), the
//! state folder's file list and `git for-each-ref`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::engine::git::Git;
use crate::engine::replay::{replay_dir, replay_refs};
use crate::engine::store::state::{Layout, State};
use crate::error::{Error, Result, EXIT_OK};
use crate::roundlog::{AgentEntry, Choice, RoundLog};
use crate::units;

/// What `orch show N --json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    /// The round log's path.
    pub file: PathBuf,
    /// The replay shown (`--replay K`), if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<u32>,
    /// The round log as written (every field, including ones this orch does not know).
    pub round: Value,
    /// The refs kept for the round, each with the git command that shows it.
    pub refs: Vec<KeptRef>,
    /// Every file under the round's logs folder, relative to the repository.
    pub logs: Vec<String>,
    /// The prompts the agents were given.
    pub prompts: Vec<String>,
    /// The recorded inputs of the round (`rounds/round-NNNN.inputs.json`), when it has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub commit: String,
    pub show: String,
}

/// Where the round's files are: the live state folder or a replay's folder.
pub struct Where {
    pub layout: Layout,
    /// The ref namespace of the round's kept refs: `refs/orch/` or a replay's.
    pub refs: String,
    pub replay: Option<u32>,
}

impl Where {
    pub fn live(layout: Layout) -> Where {
        Where {
            layout,
            refs: "refs/orch/".into(),
            replay: None,
        }
    }

    pub fn replay(state: &Layout, round: u32, k: u32) -> Where {
        Where {
            layout: Layout::new(replay_dir(state, round, k)),
            refs: replay_refs(round, k),
            replay: Some(k),
        }
    }
}

/// Prints round `n` (of the live run or of replay `replay`); exit 2 when it has no log.
pub fn print(git: &Git, layout: &Layout, n: u32, replay: Option<u32>, json: bool) -> Result<i32> {
    let at = match replay {
        Some(k) => Where::replay(layout, n, k),
        None => Where::live(layout.clone()),
    };
    let shown = collect(git, layout, &at, n)?;
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&shown).unwrap_or_else(|_| "{}".into())
        )?;
    } else {
        let log = crate::report::read_round(n, &shown.file)?;
        crate::out!("{}", text(&shown, &log.log, git.root(), &at.layout.dir))?;
    }
    Ok(EXIT_OK)
}

/// Reads what `orch show` shows of round `n` at `at`.
pub fn collect(git: &Git, state: &Layout, at: &Where, n: u32) -> Result<Shown> {
    let file = at.layout.round_log(n);
    if !file.exists() {
        let last = State::load(state)?.last_round;
        return Err(Error::Usage(match at.replay {
            Some(k) => format!(
                "round {n} has no replay {k} ({} does not exist); `orch round {n}` makes one",
                file.display()
            ),
            None if last == 0 => format!(
                "no log of round {n} in {}: no round has run yet",
                at.layout.rounds().display()
            ),
            None => format!(
                "no log of round {n} in {} (the last round is {last})",
                at.layout.rounds().display()
            ),
        }));
    }
    let bytes =
        std::fs::read(&file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let round: Value = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let root = git.root();
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let inputs = at.layout.round_inputs(n);
    Ok(Shown {
        refs: kept_refs(git, &at.refs, n)?,
        logs: files_under(&at.layout.logs(n))
            .iter()
            .map(|p| rel(p))
            .collect(),
        prompts: files_under(&at.layout.prompts(n))
            .iter()
            .map(|p| rel(p))
            .collect(),
        inputs: inputs.exists().then(|| rel(&inputs)),
        file,
        replay: at.replay,
        round,
    })
}

/// The refs under `prefix` that belong to round `n`: `<prefix><kind>/round-N` and
/// `<prefix><kind>/round-N/AGENT` (a replay's own namespace is left out of the live round's).
pub fn kept_refs(git: &Git, prefix: &str, n: u32) -> Result<Vec<KeptRef>> {
    let out = git.run(&[
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        prefix.trim_end_matches('/'),
    ])?;
    let round = format!("round-{n}");
    let mut refs = Vec::new();
    for line in out.lines() {
        let Some((commit, name)) = line.split_once(' ') else {
            continue;
        };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if prefix == "refs/orch/" && rest.starts_with("replay/") {
            continue;
        }
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() >= 2 && parts[1] == round {
            refs.push(KeptRef {
                name: name.to_string(),
                commit: commit.to_string(),
                show: format!("git show --stat {name}"),
            });
        }
    }
    Ok(refs)
}

/// Every file under `dir`, sorted; none when it does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn short(c: &str) -> &str {
    &c[..c.len().min(10)]
}

/// A field of agent `i` in the raw log that the typed entry may not carry (older or newer
/// orch): `cause` and `resetsAt` of a failed run.
fn raw_str<'a>(raw: &'a Value, i: usize, key: &str) -> Option<&'a str> {
    raw.get("agents")?.get(i)?.get(key)?.as_str()
}

/// The text `orch show N` prints.
pub fn text(shown: &Shown, log: &RoundLog, root: &Path, state_dir: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    // Paths in the log are relative to the state folder; people read them from the root.
    let in_state = |p: &str| rel(&state_dir.join(p));
    let what = match shown.replay {
        Some(k) => format!("round {} (replay {k})", log.round),
        None => format!("round {}", log.round),
    };
    let _ = writeln!(
        s,
        "{what} of mission {}: {}, {} from {}, {} (total {})",
        log.mission,
        log.status.as_str(),
        units::duration_ms(log.timing.total),
        log.started_at,
        units::usd(log.cost_usd),
        units::usd(log.total_cost_usd)
    );
    let _ = writeln!(
        s,
        "  {} -> {}",
        short(&log.base),
        log.commit.as_deref().map(short).unwrap_or("no commit")
    );
    if let Some(r) = &log.stop_reason {
        let _ = writeln!(s, "  stopped: {r}");
    }
    for n in &log.notes {
        let _ = writeln!(s, "  note: {n}");
    }

    let _ = writeln!(s, "\nagents");
    if log.agents.is_empty() {
        let _ = writeln!(s, "  none ran");
    }
    for (i, a) in log.agents.iter().enumerate() {
        agent_block(&mut s, a, &shown.round, i, &in_state);
    }

    tests_block(&mut s, log, &in_state);
    sims_block(&mut s, log, &in_state);
    decisions_block(&mut s, log);

    let _ = writeln!(s, "\nkept refs");
    if shown.refs.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for r in &shown.refs {
        let _ = writeln!(s, "  {}  {}  ({})", r.name, short(&r.commit), r.show);
    }

    let _ = writeln!(s, "\nfiles");
    let _ = writeln!(s, "  round log: {}", rel(&shown.file));
    if let Some(i) = &shown.inputs {
        let _ = writeln!(s, "  inputs: {i}");
    }
    for p in shown.prompts.iter().chain(&shown.logs) {
        let _ = writeln!(s, "  {p}");
    }
    s
}

/// The tests of the round: status, counts, suites, log, and a revert's extra runs.
fn tests_block(s: &mut String, log: &RoundLog, in_state: &dyn Fn(&str) -> String) {
    use std::fmt::Write;
    let _ = writeln!(s, "\ntests");
    match &log.tests {
        None => {
            let _ = writeln!(s, "  none ran");
        }
        Some(t) => {
            let counts = match (t.passed, t.failed) {
                (Some(p), Some(f)) => format!(", {p} passed, {f} failed"),
                (None, Some(f)) => format!(", {f} failed"),
                (Some(p), None) => format!(", {p} passed"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  {} in {}{counts}, {} attempt{}{}{}",
                t.status.as_str(),
                units::duration_ms(t.elapsed_ms),
                t.attempts,
                if t.attempts == 1 { "" } else { "s" },
                if t.flaky { ", flaky" } else { "" },
                if t.regression { ", a regression" } else { "" }
            );
            if !t.suites.is_empty() {
                let _ = writeln!(s, "  suites: {}", t.suites.join(", "));
            }
            if let Some(r) = &t.reason {
                let _ = writeln!(s, "  why: {r}");
            }
            for su in &t.suite_runs {
                let _ = writeln!(
                    s,
                    "    {} {} in {}, {} attempt{}  {}",
                    su.name,
                    su.status.as_str(),
                    units::duration_ms(su.elapsed_ms),
                    su.attempts,
                    if su.attempts == 1 { "" } else { "s" },
                    in_state(&su.log)
                );
            }
            if !t.log.is_empty() {
                let _ = writeln!(s, "  log: {}", in_state(&t.log));
            }
        }
    }
    if let Some(r) = &log.revert {
        let _ = writeln!(
            s,
            "  revert: {}, culprits: {}",
            r.strategy.as_str(),
            if r.culprits.is_empty() {
                "none".into()
            } else {
                r.culprits.join(", ")
            }
        );
        for (i, run) in r.test_runs.iter().enumerate() {
            let _ = writeln!(
                s,
                "    extra run {}: without {}: {} in {}{}",
                i + 1,
                if run.without.is_empty() {
                    "nobody".into()
                } else {
                    run.without.join(", ")
                },
                run.status.as_str(),
                units::duration_ms(run.elapsed_ms),
                run.failed
                    .map(|f| format!(", {f} failed"))
                    .unwrap_or_default()
            );
        }
    }
}

/// The pre- and post-sim of the round, when they ran.
fn sims_block(s: &mut String, log: &RoundLog, in_state: &dyn Fn(&str) -> String) {
    use std::fmt::Write;
    let sims: Vec<_> = [("pre", &log.sims.pre), ("post", &log.sims.post)]
        .into_iter()
        .filter_map(|(w, e)| e.as_ref().map(|e| (w, e)))
        .collect();
    if !sims.is_empty() {
        let _ = writeln!(s, "\nsims");
        for (w, e) in sims {
            let _ = writeln!(
                s,
                "  {w}: {} in {}{}{}  {}",
                e.status.as_str(),
                units::duration_ms(e.elapsed_ms),
                if e.published { ", published" } else { "" },
                e.note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                in_state(&e.log)
            );
        }
    }
}

/// Who the round included or left idle, and why.
fn decisions_block(s: &mut String, log: &RoundLog) {
    use std::fmt::Write;
    if !log.decisions.is_empty() {
        let _ = writeln!(s, "\ndecisions");
        for d in &log.decisions {
            let budget = match (d.budget_usd, d.spent_usd) {
                // An `over budget` reason says it already.
                (Some(b), Some(spent)) if d.decision != Choice::OverBudget => format!(
                    " (budget: {} of {} spent before the round)",
                    units::usd(spent),
                    units::usd(b)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  {:<16} {:<11} {}{budget}",
                d.agent,
                d.decision.as_str(),
                d.reason
            );
        }
    }
}

fn agent_block(
    s: &mut String,
    a: &AgentEntry,
    raw: &Value,
    i: usize,
    in_state: &dyn Fn(&str) -> String,
) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "  {} ({}): {}{}  {}  {}{}  {} file{}",
        a.name,
        a.phase.as_str(),
        a.status.as_str(),
        raw_str(raw, i, "cause")
            .map(|c| format!(" ({c})"))
            .unwrap_or_default(),
        units::duration_ms(a.elapsed_ms),
        units::usd(a.cost_usd),
        if a.cost_known { "" } else { " (unknown)" },
        a.changed_files,
        if a.changed_files == 1 { "" } else { "s" }
    );
    let mut facts = Vec::new();
    if !a.model.is_empty() {
        facts.push(format!("model {}", a.model));
    }
    if let Some(t) = &a.task {
        facts.push(format!("task {t}"));
    }
    facts.push(format!("timeout {}", units::duration_ms(a.timeout_ms)));
    if let Some(c) = a.exit_code {
        facts.push(format!("exit {c}"));
    }
    if let Some(to) = &a.escalated_to {
        facts.push(format!("escalated to {to}"));
    }
    if let Some(h) = &a.handoff {
        facts.push(format!("handoff {h}"));
    }
    if let Some(id) = &a.session_id {
        facts.push(match (a.session_resumed, &a.session_dropped) {
            (true, _) => format!("session {id} resumed"),
            (false, Some(why)) => format!("new session {id} (the last one was dropped: {why})"),
            (false, None) => format!("session {id}"),
        });
    }
    let _ = writeln!(s, "      {}", facts.join(", "));
    if !a.files.is_empty() {
        let more = (a.changed_files as usize).saturating_sub(a.files.len());
        let _ = writeln!(
            s,
            "      files: {}{}",
            a.files.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    if let Some(e) = &a.error {
        let _ = writeln!(s, "      error: {e}");
    }
    if let Some(r) = raw_str(raw, i, "resetsAt") {
        let _ = writeln!(s, "      limit resets at {r}");
    }
    if let Some(sm) = &a.summary {
        let _ = writeln!(s, "      summary: {sm}");
    }
    if !a.ownership_violations.is_empty() {
        let _ = writeln!(
            s,
            "      outside its owns: {}",
            a.ownership_violations.join(", ")
        );
    }
    for k in &a.kept_aside {
        let _ = writeln!(s, "      kept aside: {k}");
    }
    if !a.log.is_empty() {
        let _ = writeln!(s, "      log: {}", in_state(&a.log));
    }
}
