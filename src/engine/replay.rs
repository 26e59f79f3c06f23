//! `orch round N` on a round that ran: round N again, as it was, beside the branch.
//!
//! The replay runs the same round pipeline as the live run (`round::run`), pointed elsewhere
//! through its [`Env`]: the tree is a scratch worktree detached at the recorded base
//! (`replays/round-NNNN-K/tree`), the state folder is the replay's own (`replays/round-NNNN-K/`,
//! where its round log, logs, prompts, journal, state and queue go), and the refs it keeps work
//! under are `refs/orch/replay/round-N-K/…`. The plan and the prompts come from the round's
//! recorded inputs ([`RoundInputs`]); the state and the queue it starts from are the recorded
//! copies. So it never moves the branch nor touches the live state, the task queue, round N's
//! log, logs or refs.
//!
//! A round logged before inputs were recorded still replays: the base, the agents, their
//! models, timeouts and tasks come from its log, the rest from today (the mission, the state,
//! the queue), and [`Prepared::from_today`] says which. `--fresh` re-plans and re-renders the
//! prompts from today's mission, from the recorded state and queue.
//!
//! [`compare`] then sets the original and the replay side by side. [`tidy`], run before each
//! run and replay, cleans up after a replay that died and prunes old replay folders.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::exec::process;
use crate::engine::git::Git;
use crate::engine::round::{self, Env, Replaying};
use crate::engine::store::inputs::{RecordedJob, RoundInputs};
use crate::engine::store::state::{Journal, Layout, State};
use crate::engine::store::tasks::Queue;
use crate::engine::workspace::{self, Workspace};
use crate::error::{Error, IoContext, Result};
use crate::events::Events;
use crate::mission::Mission;
use crate::roundlog::{AgentEntry, Choice, Decision, RoundLog};

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub round: u32,
    /// `--agent NAME`: replay only these agents.
    pub agents: Vec<String>,
    /// `--fresh`: re-plan and re-render prompts from today's mission.
    pub fresh: bool,
    /// `--keep`: keep the scratch worktree.
    pub keep: bool,
    /// `--budget USD`: what the replay may spend.
    pub budget: Option<f64>,
}

/// What a replay will run from, worked out before anything runs (`--dry-run` prints it).
pub struct Prepared {
    pub round: u32,
    /// The live state folder (the recorded prompt files are relative to it).
    pub state_dir: PathBuf,
    /// Which replay of the round this is (`replays/round-NNNN-K`).
    pub k: u32,
    pub dir: PathBuf,
    pub refs: String,
    pub base: String,
    pub mission: Mission,
    pub mission_dir: PathBuf,
    pub state: State,
    pub queue: Queue,
    /// The plan to replay; `None` with `--fresh`.
    pub recorded: Option<RoundInputs>,
    /// The jobs as recorded (or as the log has them), for `--dry-run`.
    pub jobs: Vec<RecordedJob>,
    pub decisions: Vec<Decision>,
    pub max_concurrency: usize,
    pub budget: Option<f64>,
    /// What had to be taken from today rather than from the record.
    pub from_today: Vec<String>,
    pub opts: ReplayOptions,
}

/// What a replay left.
pub struct Replayed {
    pub log: RoundLog,
    pub interrupted: bool,
    /// The scratch worktree, when `--keep` kept it.
    pub tree: Option<PathBuf>,
}

/// Works out what replaying round `original.round` runs from.
pub fn prepare(ws: &Workspace, original: &RoundLog, opts: &ReplayOptions) -> Result<Prepared> {
    let n = opts.round;
    let mut from_today = Vec::new();
    let recorded = RoundInputs::load(&ws.layout, n)?;
    let (state, queue) = match &recorded {
        Some(r) => (r.state.clone(), r.queue.clone()),
        None => {
            from_today.push(format!(
                "the tracking state and the task queue are today's: round {n} was logged before orch recorded what rounds start from"
            ));
            (State::load(&ws.layout)?, Queue::load(&ws.layout)?)
        }
    };
    let mut mission = ws.mission().clone();
    let mut mission_dir = ws.loaded.dir.clone();
    match (&recorded, opts.fresh) {
        (_, true) => from_today.push("the mission, the plan and the prompts are today's (--fresh)".into()),
        (None, false) => from_today.push(format!(
            "the mission is today's ({}); the agents, models, timeouts and tasks are the round log's",
            ws.loaded.file.display()
        )),
        (Some(r), false) => {
            match Mission::parse(&r.mission.to_string(), &ws.layout.round_inputs(n), &crate::agents::Adapters) {
                Ok(m) => {
                    mission = m;
                    mission_dir = PathBuf::from(&r.mission_dir);
                }
                Err(e) => from_today.push(format!(
                    "the mission is today's: the recorded one does not load ({e})"
                )),
            }
        }
    }
    // A log without recorded inputs: the plan is what its log says ran.
    let recorded = match recorded {
        Some(r) => Some(r),
        None if !opts.fresh => Some(from_log(original, ws, &mission, &queue)),
        None => None,
    };
    for a in &opts.agents {
        let known = match (&recorded, opts.fresh) {
            (Some(r), false) => {
                r.job(a, 0).is_some()
                    || r.decisions
                        .iter()
                        .any(|d| &d.agent == a && d.decision == Choice::Included)
            }
            _ => mission.agent(a).is_some(),
        };
        if !known {
            return Err(Error::Usage(format!(
                "--agent {a}: round {n} ran no agent of that name (it ran: {})",
                original
                    .agents
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let k = next_replay(ws, n);
    let (jobs, decisions) = match &recorded {
        Some(r) => (r.jobs.clone(), r.decisions.clone()),
        None => (Vec::new(), Vec::new()),
    };
    let max_concurrency = recorded
        .as_ref()
        .map_or(mission.max_concurrency, |r| r.max_concurrency)
        .max(1);
    // The engine's budget is cumulative; a replay's --budget is what the replay may spend.
    let budget = match opts.budget {
        Some(b) => Some(state.total_cost_usd + b),
        None => match &recorded {
            Some(r) if !opts.fresh => r.budget_usd,
            _ => mission.budget_usd,
        },
    };
    Ok(Prepared {
        round: n,
        state_dir: ws.layout.dir.clone(),
        k,
        dir: replay_dir(&ws.layout, n, k),
        refs: replay_refs(n, k),
        base: original.base.clone(),
        mission,
        mission_dir,
        state,
        queue,
        recorded: if opts.fresh { None } else { recorded },
        jobs,
        decisions,
        max_concurrency,
        budget,
        from_today,
        opts: opts.clone(),
    })
}

/// The plan of a round logged before inputs were recorded, from its log: the agents that ran,
/// with their models, timeouts and tasks; their prompts from `prompts/round-NNNN/` (with no
/// hash to check them by).
fn from_log(log: &RoundLog, ws: &Workspace, mission: &Mission, queue: &Queue) -> RoundInputs {
    let ran = |name: &str| log.agents.iter().any(|e| e.name == name);
    let mut decisions: Vec<Decision> = log
        .decisions
        .iter()
        .map(|d| {
            let mut d = d.clone();
            // Included at planning, then skipped by what happened in the round.
            if ran(&d.agent) || d.reason.starts_with("skipped: ") {
                d.decision = Choice::Included;
            }
            d
        })
        .collect();
    for e in &log.agents {
        if !decisions.iter().any(|d| d.agent == e.name) {
            decisions.push(Decision {
                agent: e.name.clone(),
                decision: Choice::Included,
                reason: "it ran in the round".into(),
                model: None,
                escalated: false,
                outcome: None,
                elapsed_ms: None,
                budget_usd: None,
                spent_usd: None,
                tasks_waiting: Vec::new(),
            });
        }
    }
    let jobs = log
        .agents
        .iter()
        .map(|e: &AgentEntry| {
            let task = e.task.as_ref().and_then(|id| queue.get(id).cloned());
            RecordedJob {
                agent: e.name.clone(),
                phase: e.phase,
                model: e.model.clone(),
                timeout_ms: e.timeout_ms,
                adaptive_timeout: false,
                priority: task.as_ref().map_or_else(
                    || mission.agent(&e.name).map_or(2, |a| a.priority),
                    |t| t.priority,
                ),
                task,
                expected_ms: 0,
                prompt: ws
                    .layout
                    .relative(&ws.layout.prompts(log.round).join(format!("{}.md", e.name))),
                prompt_bytes: 0,
                prompt_hash: String::new(),
                resumed: e.session_resumed,
            }
        })
        .collect();
    RoundInputs {
        version: 0,
        round: log.round,
        base: log.base.clone(),
        started_at: log.started_at.clone(),
        mission_dir: ws.loaded.dir.display().to_string(),
        mission: serde_json::Value::Null,
        max_concurrency: mission.max_concurrency,
        budget_usd: mission.budget_usd,
        only: Vec::new(),
        state: State::default(),
        queue: Queue::default(),
        decisions,
        jobs,
    }
}

/// `replays/round-NNNN-K/` under the state folder: a replay's own state folder.
pub fn replay_dir(state: &Layout, round: u32, k: u32) -> PathBuf {
    state
        .dir
        .join("replays")
        .join(format!("round-{round:04}-{k}"))
}

/// `refs/orch/replay/round-N-K/`: the ref namespace of a replay.
pub fn replay_refs(round: u32, k: u32) -> String {
    format!("refs/orch/replay/round-{round}-{k}/")
}

/// The first K with neither a `replays/round-NNNN-K/` folder nor refs under
/// `refs/orch/replay/round-N-K/`: a pruned replay's refs stay, and are never written over.
fn next_replay(ws: &Workspace, round: u32) -> u32 {
    let refs_exist = |k: u32| {
        ws.git
            .run(&[
                "for-each-ref",
                "--count=1",
                "--format=%(refname)",
                &replay_refs(round, k),
            ])
            .is_ok_and(|out| !out.trim().is_empty())
    };
    (1..)
        .find(|k| !replay_dir(&ws.layout, round, *k).exists() && !refs_exist(*k))
        .unwrap_or(1)
}

/// How many replay folders `replays/` keeps: the newest, by when each last changed (a replay's
/// folder changes last when its journal is cleared, at its end).
pub const KEPT_REPLAYS: usize = 10;

/// Run by `orch run` and `orch round N` under the repository's lock, before anything else
/// touches the replays: a replay that died (SIGKILL, a crash) left its journal, its scratch
/// worktree and its agents' worktrees. As the next run does for a dead round, what it left
/// running is killed, its agents' partial work and its tree are kept under its own refs
/// (`refs/orch/replay/round-N-K/cancelled/round-N/AGENT`, `…/interrupted/round-N`), its
/// worktrees removed, its round log written `interrupted` and its journal cleared. Then the
/// replay folders past the newest [`KEPT_REPLAYS`] are removed (their refs stay, and so does a
/// folder holding a tree kept with `--keep`). Returns what was done, one message each.
pub fn tidy(ws: &Workspace) -> Result<Vec<String>> {
    let root = ws.layout.dir.join("replays");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut said = Vec::new();
    let mut folders = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let Some((round, k)) = replay_of(&e.file_name().to_string_lossy()) else {
            continue;
        };
        // A replay's leftovers never stop the night: what cannot be cleaned up is said and left.
        match recover_dead(ws, &dir, round, k) {
            Ok(Some(what)) => said.push(what),
            Ok(None) => {}
            Err(e) => said.push(format!(
                "replay {k} of round {round} ({}) died and could not be cleaned up: {e}; its folder is left as it is",
                dir.display()
            )),
        }
        folders.push(dir);
    }
    ws.git.prune_worktrees()?;
    // A folder with a journal still belongs to a live replay (it could not be recovered); one
    // with its tree kept (`--keep`) is the user's to remove.
    folders.retain(|d| !d.join("journal.json").exists() && !d.join("tree").exists());
    let changed = |d: &Path| {
        std::fs::metadata(d)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
    };
    folders.sort_by_key(|d| std::cmp::Reverse(changed(d)));
    let mut old = folders.split_off(folders.len().min(KEPT_REPLAYS));
    old.retain(|d| {
        crate::engine::exec::perms::unlock_tree(d);
        match std::fs::remove_dir_all(d) {
            Ok(()) => true,
            Err(e) => {
                said.push(format!("cannot remove the old replay {}: {e}", d.display()));
                false
            }
        }
    });
    if !old.is_empty() {
        said.push(format!(
            "removed {} old replay folder(s) from {}, keeping the newest {KEPT_REPLAYS} (their refs under refs/orch/replay/ stay): {}",
            old.len(),
            root.display(),
            old.iter()
                .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(said)
}

/// `round-NNNN-K` as (N, K).
fn replay_of(name: &str) -> Option<(u32, u32)> {
    let (n, k) = name.strip_prefix("round-")?.split_once('-')?;
    Some((n.parse().ok()?, k.parse().ok()?))
}

/// Cleans up after the replay in `dir` if it died mid-round (see [`tidy`]); `None` when it did
/// not (no journal), or when its orch still lives.
fn recover_dead(ws: &Workspace, dir: &Path, round: u32, k: u32) -> Result<Option<String>> {
    let layout = Layout::new(dir.to_path_buf());
    let Some(j) = Journal::load(&layout)? else {
        return Ok(None);
    };
    if !j.session.is_empty() && process::session_of(j.pid as i32).as_deref() == Some(&j.session) {
        return Ok(None);
    }
    let grace = ws.mission().grace();
    let killed = process::reap_orphan_groups(&j.process_groups, j.pid, grace)
        + process::reap_session(&j.session, &j.process_groups, grace);
    let refs = replay_refs(round, k);
    let mut what = format!(
        "replay {k} of round {round} (pid {}, {}) died; cleaned up after it",
        j.pid,
        dir.display()
    );
    if killed > 0 {
        what.push_str(&format!("; killed {killed} process(es) it left running"));
    }
    let tree_path = dir.join("tree");
    let mut kept_ref = None;
    if ws.git.worktree_intact(&tree_path) {
        let tree = ws.git.at(&tree_path);
        for (agent, kept) in workspace::keep_worktrees(&tree, dir, &refs, round)? {
            what.push_str(&format!("; {agent}'s partial work is kept in {kept}"));
        }
        let head = tree.head()?.unwrap_or_default();
        if head != j.base || !tree.changed_since(&j.base)?.is_empty() {
            let kept = format!("{refs}interrupted/round-{round}");
            tree.save_tree(
                &j.base,
                &kept,
                &format!("orch: replay {k} of round {round} interrupted (orch died); its tree"),
            )?;
            what.push_str(&format!("; its tree is kept in {kept}"));
            kept_ref = Some(kept);
        }
    }
    remove_worktrees(&ws.git, dir);
    what.push_str("; its worktrees are removed");
    workspace::record_dead_round(&layout, &ws.mission().name, &j, kept_ref, &what)?;
    Journal::clear(&layout)?;
    Ok(Some(what))
}

/// Runs the replay: the round pipeline in a scratch worktree at the base, with the replay's
/// own state folder and ref namespace. The replay's final HEAD is kept under
/// `<refs>commit` (its worktree goes, unless `--keep`).
pub fn run(ws: &Workspace, p: &Prepared, events: &Events) -> Result<Replayed> {
    let layout = Layout::new(p.dir.clone());
    std::fs::create_dir_all(&p.dir).ctx(|| format!("creating {}", p.dir.display()))?;
    let tree_path = p.dir.join("tree");
    let tree = ws.git.prepare_worktree(&tree_path, &p.base).map_err(|e| {
        Error::Other(format!(
            "cannot check out round {}'s base {} for the replay: {e}",
            p.round, p.base
        ))
    })?;
    let replaying = Replaying {
        recorded: p.recorded.clone(),
        prompts_from: p.state_dir.clone(),
        agents: p.opts.agents.clone(),
    };
    // With --fresh the mission's own rules plan, and --agent forces its agents in as it does
    // for a live `orch round N`.
    let only: Vec<String> = if p.recorded.is_none() {
        p.opts.agents.clone()
    } else {
        Vec::new()
    };
    // A replay waits out limits as a run does, from no holds of its own: the live run's are
    // not the replay's business.
    let limits = crate::engine::exec::limits::Limits::new(
        &p.mission.limits,
        false,
        &std::collections::BTreeMap::new(),
    );
    let env = Env {
        mission: &p.mission,
        mission_dir: &p.mission_dir,
        git: &tree,
        layout: &layout,
        events,
        max_concurrency: p.max_concurrency,
        budget: p.budget,
        only: &only,
        refs: &p.refs,
        replay: Some(&replaying),
        limits: &limits,
    };
    let mut state = p.state.clone();
    let mut queue = p.queue.clone();
    let outcome = round::run(&env, &mut state, &mut queue, p.round);
    if let Ok(Some(head)) = tree.head() {
        if head != p.base {
            ws.git.set_ref(&format!("{}commit", p.refs), &head)?;
        }
    }
    let kept = if p.opts.keep {
        Some(tree_path)
    } else {
        remove_worktrees(&ws.git, &p.dir);
        None
    };
    let outcome = outcome?;
    Ok(Replayed {
        interrupted: outcome.interrupted,
        log: outcome.log,
        tree: kept,
    })
}

/// Removes the replay's scratch worktree and its agents' worktrees (their work is in refs).
fn remove_worktrees(git: &Git, dir: &Path) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("worktrees"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.push(dir.join("tree"));
    for p in paths {
        let s = p.to_string_lossy().into_owned();
        // A folder an agent left read-only would stop the removal half-way.
        crate::engine::exec::perms::unlock_tree(&p);
        if let Err(e) = git.run(&["worktree", "remove", "--force", &s]) {
            log::warn!("cannot remove the replay's worktree {s}: {e}");
        }
    }
    let _ = std::fs::remove_dir(dir.join("worktrees"));
}

// ---------------------------------------------------------------------------------------------
// The comparison.

/// One agent's run, as compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSide {
    pub status: String,
    pub cause: Option<String>,
    pub changed_files: u32,
    /// Their paths, when the log lists them.
    pub files: Vec<String>,
    pub cost_usd: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRow {
    pub agent: String,
    pub original: Option<AgentSide>,
    pub replay: Option<AgentSide>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestsSide {
    pub status: String,
    pub passed: Option<u64>,
    pub failed: Option<u64>,
}

/// The round and its replay side by side, and what differs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub round: u32,
    pub replay: u32,
    pub status: (String, String),
    pub commit: (Option<String>, Option<String>),
    pub agents: Vec<AgentRow>,
    pub tests: (Option<TestsSide>, Option<TestsSide>),
    pub culprits: (Vec<String>, Vec<String>),
    pub cost_usd: (f64, f64),
    /// Whether the whole round was replayed; with `--agent` the round's status, tests and
    /// culprits are shown, not compared.
    pub whole_round: bool,
    pub differences: Vec<String>,
    pub from_today: Vec<String>,
}

impl Comparison {
    pub fn same(&self) -> bool {
        self.differences.is_empty()
    }
}

fn side(e: &AgentEntry) -> AgentSide {
    // `cause` is written by orchs that classify failures; read it from the entry as written.
    let cause = serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("cause").and_then(|c| c.as_str()).map(str::to_owned));
    AgentSide {
        status: e.status.as_str().into(),
        cause,
        changed_files: e.changed_files,
        files: e.files.clone(),
        cost_usd: e.cost_usd,
        error: e.error.clone(),
    }
}

fn tests_side(log: &RoundLog) -> Option<TestsSide> {
    log.tests.as_ref().map(|t| TestsSide {
        status: t.status.as_str().into(),
        passed: t.passed,
        failed: t.failed,
    })
}

fn culprits(log: &RoundLog) -> Vec<String> {
    let mut c = log
        .revert
        .as_ref()
        .map(|r| r.culprits.clone())
        .unwrap_or_default();
    c.sort();
    c
}

pub fn describe_tests(t: &Option<TestsSide>) -> String {
    match t {
        None => "none ran".into(),
        Some(t) => {
            let mut s = t.status.clone();
            if let (Some(p), Some(f)) = (t.passed, t.failed) {
                s.push_str(&format!(" ({p} passed, {f} failed)"));
            }
            s
        }
    }
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What differs for agent `n` between its run in the round (`o`) and in the replay (`r`).
fn agent_differences(
    n: &str,
    o: &Option<AgentSide>,
    r: &Option<AgentSide>,
    differences: &mut Vec<String>,
) {
    match (&o, &r) {
        (Some(o), Some(r)) => {
            if o.status != r.status {
                differences.push(format!("{n}: status {} -> {}", o.status, r.status));
            }
            if o.cause != r.cause {
                differences.push(format!(
                    "{n}: cause {} -> {}",
                    o.cause.as_deref().unwrap_or("none"),
                    r.cause.as_deref().unwrap_or("none")
                ));
            }
            if o.changed_files != r.changed_files {
                differences.push(format!(
                    "{n}: changed files {} -> {}",
                    o.changed_files, r.changed_files
                ));
            } else if !o.files.is_empty() && !r.files.is_empty() && o.files != r.files {
                // The same number of files, not the same files (older logs list none).
                differences.push(format!(
                    "{n}: changed files {} -> {}",
                    o.files.join(", "),
                    r.files.join(", ")
                ));
            }
        }
        (Some(_), None) => differences.push(format!("{n}: ran in the round, not in the replay")),
        (None, Some(_)) => differences.push(format!("{n}: ran in the replay, not in the round")),
        (None, None) => {}
    }
}

/// Sets round `original` and its replay side by side. Compared: the round's status, each
/// replayed agent's status, cause and number of changed files, the tests' status and counts,
/// the revert's culprits. Cost is shown, not compared (a real agent's cost varies run to run).
pub fn compare(
    original: &RoundLog,
    replay: &RoundLog,
    k: u32,
    agents: &[String],
    from_today: &[String],
) -> Comparison {
    let whole_round = agents.is_empty();
    let mut names: Vec<String> = original.agents.iter().map(|e| e.name.clone()).collect();
    for e in &replay.agents {
        if !names.contains(&e.name) {
            names.push(e.name.clone());
        }
    }
    names.retain(|n| whole_round || agents.contains(n));
    let mut differences = Vec::new();
    let rows: Vec<AgentRow> = names
        .iter()
        .map(|n| {
            let o = original.agents.iter().find(|e| &e.name == n).map(side);
            let r = replay.agents.iter().find(|e| &e.name == n).map(side);
            agent_differences(n, &o, &r, &mut differences);
            AgentRow {
                agent: n.clone(),
                original: o,
                replay: r,
            }
        })
        .collect();
    let tests = (tests_side(original), tests_side(replay));
    let cul = (culprits(original), culprits(replay));
    if whole_round {
        if original.status != replay.status {
            differences.push(format!(
                "round status {} -> {}",
                original.status.as_str(),
                replay.status.as_str()
            ));
        }
        if tests.0 != tests.1 {
            differences.push(format!(
                "tests {} -> {}",
                describe_tests(&tests.0),
                describe_tests(&tests.1)
            ));
        }
        if cul.0 != cul.1 {
            differences.push(format!(
                "revert culprits {} -> {}",
                or_none(&cul.0),
                or_none(&cul.1)
            ));
        }
    }
    Comparison {
        round: original.round,
        replay: k,
        status: (
            original.status.as_str().into(),
            replay.status.as_str().into(),
        ),
        commit: (original.commit.clone(), replay.commit.clone()),
        agents: rows,
        tests,
        culprits: cul,
        cost_usd: (original.cost_usd, replay.cost_usd),
        whole_round,
        differences,
        from_today: from_today.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roundlog::{Phase, RunStatus};

    fn entry(name: &str, status: RunStatus, files: &[&str]) -> AgentEntry {
        AgentEntry {
            exit_code: Some(0),
            elapsed_ms: 10,
            timeout_ms: 1000,
            cost_usd: 0.1,
            changed_files: files.len() as u32,
            files: files.iter().map(|f| f.to_string()).collect(),
            ..AgentEntry::new(name, Phase::Code, status)
        }
    }

    fn log(agents: Vec<AgentEntry>) -> RoundLog {
        RoundLog {
            schema: 9,
            agents,
            ..RoundLog::new(2, "t", "b", "")
        }
    }

    #[test]
    fn the_same_runs_compare_the_same_whatever_they_cost() {
        let a = log(vec![entry("a", RunStatus::Ok, &["x"])]);
        let mut b = a.clone();
        b.agents[0].cost_usd = 0.7;
        b.agents[0].elapsed_ms = 999;
        let c = compare(&a, &b, 1, &[], &[]);
        assert!(c.same(), "{:?}", c.differences);
    }

    #[test]
    fn differences_name_the_agent_and_what_changed() {
        let a = log(vec![
            entry("a", RunStatus::Ok, &["x"]),
            entry("b", RunStatus::Ok, &["y"]),
        ]);
        let b = log(vec![
            entry("a", RunStatus::Failed, &[]),
            entry("b", RunStatus::Ok, &["z"]),
        ]);
        let c = compare(&a, &b, 1, &[], &[]);
        assert_eq!(
            c.differences,
            [
                "a: status ok -> failed",
                "a: changed files 1 -> 0",
                "b: changed files y -> z"
            ]
        );
        // --agent b: only b is compared.
        let c = compare(&a, &b, 1, &["b".into()], &[]);
        assert_eq!(c.differences, ["b: changed files y -> z"]);
        assert!(!c.whole_round);
    }

    #[test]
    fn an_agent_missing_on_one_side_differs_and_old_logs_without_paths_compare_by_count() {
        let a = log(vec![entry("a", RunStatus::Ok, &["x"])]);
        let mut old = a.clone();
        old.agents[0].files.clear();
        let mut b = log(vec![entry("a", RunStatus::Ok, &["w"])]);
        assert!(compare(&old, &b, 1, &[], &[]).same());
        b.agents.push(entry("r", RunStatus::Ok, &[]));
        let c = compare(&old, &b, 1, &[], &[]);
        assert_eq!(c.differences, ["r: ran in the replay, not in the round"]);
    }
}
