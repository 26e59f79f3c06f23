//! `orch run` and `orch round N`: everything around the rounds. Takes the lock, recovers from
//! a crashed predecessor, refuses a dirty tree, measures the test baseline, then runs rounds
//! until the mission's round count, a stop condition (budget, stall guard) or an interrupt,
//! and says why it stopped through its exit status.

use std::path::PathBuf;

use crate::engine::exec::launcher;
use crate::engine::exec::limits::Limits;
use crate::engine::exec::process;
use crate::engine::git::branch;
use crate::engine::git::userwork;
use crate::engine::git::Git;
use crate::engine::preflight;
use crate::engine::round::{self, Env};
use crate::engine::store::state::{Journal, Layout, Lock, State, TestBaseline};
use crate::engine::store::tasks::Queue;
use crate::engine::testing::run::TestRun;
pub use crate::engine::workspace::Workspace;
use crate::engine::workspace::{keep_worktrees, record_dead_round};
use crate::error::{
    Error, Result, EXIT_AGENT_CLI, EXIT_FINISHED, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROUND_FAILED,
    EXIT_STOPPED, EXIT_TEMPFAIL,
};
use crate::events::{Event, Events};
use crate::mission::Mission;
use crate::roundlog::{Handoff, RoundStatus, RunStatus, StepStatus};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The repository to work in (its root is found from here).
    pub dir: PathBuf,
    pub mission: PathBuf,
    /// `--rounds N`: run N more rounds instead of up to the mission's count.
    pub more_rounds: Option<u32>,
    /// `orch round N`: exactly this round.
    pub only_round: Option<u32>,
    pub max_concurrency: Option<usize>,
    pub budget: Option<f64>,
    pub allow_dirty: bool,
    pub strict: bool,
    pub agents: Vec<String>,
    /// `--branch NAME` or `git.branch`, placeholders filled in: the run's own branch.
    pub branch: Option<String>,
    /// `--no-wait`: a provider limit ends the run at once (exit 75) instead of waiting.
    pub no_wait: bool,
}

/// Runs rounds; returns the exit status. The caller holds the lock (`lock`): it is taken before
/// anything else in the state folder is opened, the event log included.
pub fn run(ws: &Workspace, opts: &RunOptions, events: &Events, lock: &Lock) -> Result<i32> {
    run_counted(ws, opts, events, lock).map(|(code, _)| code)
}

/// Runs rounds; returns the exit status and how many rounds ran.
pub fn run_counted(
    ws: &Workspace,
    opts: &RunOptions,
    events: &Events,
    lock: &Lock,
) -> Result<(i32, u32)> {
    let mission = ws.mission();
    let (mut state, mut queue) = open_run(ws, opts, events)?;
    let rounds = rounds_to_run(mission, &state, opts);
    if rounds.is_empty() {
        log::info!(
            "all {} rounds of mission {} are done; `orch run --rounds N` runs N more",
            mission.rounds,
            mission.name
        );
        return Ok((EXIT_OK, 0));
    }
    check_before_spending(ws, opts)?;
    // `--allow-dirty`: the rounds run on the clean base; the user's work comes back when this
    // value is dropped, however the run ends.
    let _user_work = userwork::set_aside(&ws.git, &ws.layout, events, rounds[0], opts.allow_dirty)?;
    // `--branch`: on the clean tree, the run's branch; the user's branch comes back when this
    // value is dropped (before `_user_work`, so their work comes back on their branch).
    let _branch = branch::enter(&ws.git, &ws.layout, opts.branch.as_deref())?;
    let limits = Limits::new(&mission.limits, opts.no_wait, &state.limits);
    let env = Env {
        mission,
        mission_dir: &ws.loaded.dir,
        git: &ws.git,
        layout: &ws.layout,
        events,
        max_concurrency: opts
            .max_concurrency
            .unwrap_or(mission.max_concurrency)
            .max(1),
        budget: opts.budget.or(mission.budget_usd),
        only: &opts.agents,
        refs: round::LIVE_REFS,
        replay: None,
        limits: &limits,
    };
    events.emit(Event::RunStart {
        mission: mission.name.clone(),
        first_round: rounds[0],
        last_round: *rounds.last().unwrap_or(&rounds[0]),
        agents: mission.agents.len(),
    });
    warn_detached_head(ws, events)?;
    // The tests at the base (round 0 in the events), once a run has started; not when the run
    // is to stop before its first round (a spent budget): the tests can be the dearest thing a
    // night runs, and the stop comes first.
    if stop_before(&env, &state).is_none() {
        baseline(ws, &mut state, events)?;
    }
    let mut code = EXIT_OK;
    let mut ran = 0;
    let mut agent_failed = false;
    for (i, &n) in rounds.iter().enumerate() {
        // A signal between rounds (or during the baseline) must not start another round.
        if process::interrupted() {
            code = stop(events, "interrupted by a signal".into(), EXIT_INTERRUPTED);
            break;
        }
        if let Some(reason) = stop_before(&env, &state) {
            code = stop(events, reason, EXIT_STOPPED);
            break;
        }
        if i > 0 {
            check_clean(&ws.git, opts.allow_dirty)?;
        }
        if let Some(w) = lock.check() {
            warn(events, Some(n), w);
        }
        let outcome = round::run(&env, &mut state, &mut queue, n)?;
        ran += 1;
        agent_failed |= outcome
            .log
            .agents
            .iter()
            .any(|a| matches!(a.status, RunStatus::Failed | RunStatus::Timeout));
        if let Some((why, exit)) = stop_after(mission, &state, &outcome, opts) {
            code = stop(events, why, exit);
            break;
        }
        if opts.only_round.is_some()
            && matches!(
                outcome.log.status,
                RoundStatus::Reverted | RoundStatus::Failed
            )
        {
            code = EXIT_ROUND_FAILED;
        }
    }
    if code == EXIT_OK && opts.strict && agent_failed {
        code = EXIT_ROUND_FAILED;
    }
    events.emit(Event::RunEnd {
        rounds: ran,
        exit_code: code,
        total_cost_usd: state.total_cost_usd,
    });
    Ok((code, ran))
}

/// What a run starts from: the agents it names checked, the state folder usable, a dead
/// predecessor's round (and replays) recovered, the user's work a killed run left aside put
/// back, stale worktrees pruned; the tracking state and the task queue.
fn open_run(ws: &Workspace, opts: &RunOptions, events: &Events) -> Result<(State, Queue)> {
    let mission = ws.mission();
    check_agents(mission, &opts.agents)?;
    ws.git.exclude(&ws.layout.dir)?;
    // A round needs a base to return to; say so before anything else (a fresh repository also
    // looks dirty, which would be the wrong complaint).
    ws.git.base()?;
    check_writable(&ws.layout)?;
    recover(ws, events)?;
    for message in crate::engine::replay::tidy(ws)? {
        warn(events, None, message);
    }
    if let Some(back) = userwork::recover(&ws.git, &ws.layout, events)? {
        warn(events, None, back);
    }
    // Worktrees whose folders a crash or a cleanup removed would otherwise block re-adding.
    ws.git.prune_worktrees()?;
    let state = State::load(&ws.layout)?;
    if !state.mission.is_empty() && state.mission != mission.name {
        log::warn!(
            "the state in {} belongs to mission {:?}, not {:?}; going on with it",
            ws.layout.dir.display(),
            state.mission,
            mission.name
        );
    }
    Ok((state, Queue::load(&ws.layout)?))
}

/// The rounds this run runs: `orch round N`'s one, else from the last one done to the
/// mission's `rounds` (or `--rounds N` more).
fn rounds_to_run(mission: &Mission, state: &State, opts: &RunOptions) -> Vec<u32> {
    match opts.only_round {
        Some(n) => vec![n],
        None => {
            let last = match opts.more_rounds {
                Some(n) => state.last_round.saturating_add(n),
                None => mission.rounds,
            };
            (state.last_round.saturating_add(1)..=last).collect()
        }
    }
}

/// What would fail every round is refused before anything is spent: a dirty tree, a program
/// that cannot start (it would fail every round, or read as a regression), a launcher, a
/// config that asks for signed commits and cannot sign, a submodule a worktree cannot check
/// out from the main tree's own checkout of it.
fn check_before_spending(ws: &Workspace, opts: &RunOptions) -> Result<()> {
    let mission = ws.mission();
    check_clean(&ws.git, opts.allow_dirty)?;
    preflight::check_programs(mission, &ws.loaded.file, &ws.git)?;
    launcher::check(mission, ws.git.root(), &ws.layout.dir)?;
    ws.git.check_signing()?;
    if mission.git.isolation == crate::mission::Isolation::Worktree {
        crate::engine::git::nested::check_submodules(&ws.git)?;
    }
    Ok(())
}

/// A detached HEAD: orch's commits would be on no branch; said once, before the rounds.
fn warn_detached_head(ws: &Workspace, events: &Events) -> Result<()> {
    if ws.git.branch().is_none() {
        let head = ws.git.base()?;
        let message = format!(
            "HEAD is detached at {}: orch's commits will be on no branch; to keep them, create \
             one now or afterwards (git switch -c NAME)",
            crate::engine::git::short(&head)
        );
        events.emit(Event::Warning {
            round: None,
            message,
        });
    }
    Ok(())
}

/// Why the run stops after a round, with its exit status: an interrupt, an agent CLI that
/// cannot work (bad key, untrusted folder), a provider limit longer than orch waits, the sims
/// converged, every agent all-done, the circuit breaker, the budget, or too many empty rounds.
fn stop_after(
    mission: &Mission,
    state: &State,
    outcome: &round::Outcome,
    opts: &RunOptions,
) -> Option<(String, i32)> {
    if outcome.interrupted {
        return Some(("interrupted by a signal".into(), EXIT_INTERRUPTED));
    }
    if let Some(why) = &outcome.cli_stop {
        return Some((why.clone(), EXIT_AGENT_CLI));
    }
    if let Some(why) = &outcome.limit_stop {
        return Some((why.clone(), EXIT_TEMPFAIL));
    }
    if outcome.converged {
        return Some(("converged: sims.stopWhen passed".into(), EXIT_FINISHED));
    }
    if all_done(mission, state) {
        return Some(("every agent reported all-done".into(), EXIT_FINISHED));
    }
    if outcome.breaker {
        let why = outcome.log.stop_reason.clone().unwrap_or_default();
        return Some((why, EXIT_STOPPED));
    }
    if outcome.budget_reached {
        let why = outcome
            .log
            .stop_reason
            .clone()
            .unwrap_or_else(|| "budget reached".into());
        return Some((why, EXIT_STOPPED));
    }
    let limit = mission.stop.after_empty_rounds?;
    (opts.only_round.is_none() && state.empty_rounds_in_a_row >= limit).then(|| {
        (
            format!(
                "{} rounds in a row committed nothing (stop.afterEmptyRounds {limit})",
                state.empty_rounds_in_a_row
            ),
            EXIT_STOPPED,
        )
    })
}

fn warn(events: &Events, round: Option<u32>, message: String) {
    events.emit(Event::Warning { round, message });
}

/// Whether every agent has reported `all-done` in its handoff file: the mission is finished.
fn all_done(mission: &Mission, state: &State) -> bool {
    mission
        .agents
        .iter()
        .all(|a| state.agent(&a.name).handoff == Some(Handoff::AllDone))
}

/// `--agent NAME`: every name must be one of the mission's agents.
pub fn check_agents(mission: &Mission, names: &[String]) -> Result<()> {
    for name in names {
        if mission.agent(name).is_none() {
            return Err(Error::Usage(format!(
                "--agent {name}: the mission has no agent of that name (it has: {})",
                mission
                    .agents
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// A reason to stop before starting the next round: the mission's budget is spent, or every
/// agent's own (`--agent`: every agent named) is.
pub fn stop_before(env: &Env, state: &State) -> Option<String> {
    if let Some(b) = env.budget {
        if state.total_cost_usd >= b {
            return Some(format!(
                "budget reached: {} spent of {}",
                crate::units::usd(state.total_cost_usd),
                crate::units::usd(b)
            ));
        }
    }
    let agents: Vec<&crate::mission::Agent> = env
        .mission
        .agents
        .iter()
        .filter(|a| env.only.is_empty() || env.only.contains(&a.name))
        .collect();
    let spent: Vec<String> = agents
        .iter()
        .filter_map(|a| round::over_budget(a, state).map(|why| format!("{} ({why})", a.name)))
        .collect();
    (!agents.is_empty() && spent.len() == agents.len()).then(|| {
        format!(
            "every agent is over its budget: {}; raise an agent's budgetUsd to go on",
            spent.join(", ")
        )
    })
}

fn stop(events: &Events, reason: String, code: i32) -> i32 {
    events.emit(Event::Stop {
        reason,
        exit_code: code,
    });
    code
}

/// Refuses a dirty tree: a revert would otherwise touch the user's own work.
pub fn check_clean(git: &Git, allow_dirty: bool) -> Result<()> {
    if allow_dirty {
        return Ok(());
    }
    let status = git.status()?;
    if status.is_empty() {
        return Ok(());
    }
    let mut list: Vec<String> = status
        .iter()
        .take(5)
        .map(|e| format!("  {} {}", e.code, e.path))
        .collect();
    if status.len() > 5 {
        list.push(format!("  ... and {} more", status.len() - 5));
    }
    Err(Error::Usage(format!(
        "the working tree of {} has uncommitted changes:\n{}\norch reverts rounds that break the tests, which would touch this work: commit or stash it first, or pass --allow-dirty",
        git.root().display(),
        list.join("\n")
    )))
}

/// Refuses to start when the state folder cannot take the round logs (a file where a folder
/// should be, a read-only or full file system): better now, before an agent runs, than after a
/// round whose record cannot be written.
fn check_writable(layout: &Layout) -> Result<()> {
    for dir in [layout.rounds(), layout.dir.join("logs")] {
        let probe = dir.join(format!(".orch-probe-{}", std::process::id()));
        let r = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&probe, b"probe\n"))
            .and_then(|_| std::fs::remove_file(&probe));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&probe);
            return Err(Error::Usage(format!(
                "cannot write in the state folder: {}: {e}; orch keeps its round logs there (make it a writable folder with free space)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// A journal left behind means the previous orch died mid-round: kill what it left running,
/// keep the tree it left under `refs/orch/interrupted/round-N` (and each agent worktree's
/// partial work under `refs/orch/cancelled/round-N/AGENT`, as an interrupt would), restore the
/// base, and record the dead round as `interrupted` so the run goes on after it.
fn recover(ws: &Workspace, events: &Events) -> Result<()> {
    let Some(j) = Journal::load(&ws.layout)? else {
        return Ok(());
    };
    // The lock says no orch holds this repository, but a journal's orch is never declared dead
    // while it lives (its lock file may have been deleted): the pid with the same start time.
    if !j.session.is_empty() && process::session_of(j.pid as i32).as_deref() == Some(&j.session) {
        return Err(Error::Locked {
            lock: ws.layout.lock(),
            pid: Some(j.pid),
            state_dir: Some(ws.layout.dir.clone()),
        });
    }
    let killed = process::reap_orphan_groups(&j.process_groups, j.pid, ws.mission().grace());
    let escaped = process::reap_session(&j.session, &j.process_groups, ws.mission().grace());
    let mut what = format!(
        "recovered from an orch (pid {}) that died during round {}",
        j.pid, j.round
    );
    if killed > 0 {
        what.push_str(&format!(
            "; killed {killed} process group(s) it left running"
        ));
    }
    if escaped > 0 {
        what.push_str(&format!(
            "; killed {escaped} process(es) that had left their process group"
        ));
    }
    for (agent, kept) in keep_worktrees(&ws.git, &ws.layout.dir, round::LIVE_REFS, j.round)? {
        what.push_str(&format!("; {agent}'s partial work is kept in {kept}"));
    }
    let head = ws.git.head()?.unwrap_or_default();
    let changed = !ws.git.changed_since(&j.base)?.is_empty() || head != j.base;
    let mut kept_ref = None;
    if changed {
        let kept = format!("refs/orch/interrupted/round-{}", j.round);
        ws.git.save_tree(
            &j.base,
            &kept,
            &format!(
                "orch: round {} interrupted (orch died); the tree as it was",
                j.round
            ),
        )?;
        ws.git.restore(&j.base)?;
        what.push_str(&format!(
            "; its tree is kept in {kept} and the base {} restored",
            &j.base[..j.base.len().min(10)]
        ));
        kept_ref = Some(kept);
    }
    record_dead_round(&ws.layout, &ws.mission().name, &j, kept_ref, &what)?;
    events.emit(Event::Warning {
        round: Some(j.round),
        message: what,
    });
    Journal::clear(&ws.layout)
}

/// `tests.baseline`: measure the tests at the base once, so that an already-failing suite is
/// not blamed on the agents.
fn baseline(ws: &Workspace, state: &mut State, events: &Events) -> Result<()> {
    let Some(tests) = ws.mission().tests.as_ref().filter(|t| t.baseline) else {
        return Ok(());
    };
    let head = ws.git.base()?;
    if state
        .test_baseline
        .as_ref()
        .is_some_and(|b| b.commit == head)
    {
        return Ok(());
    }
    let log = ws.layout.dir.join("logs").join("baseline-tests.log");
    // What the tests write in the tree (coverage, caches, formatting) is put back after them,
    // as after a round's tests: it would otherwise ride along with the first round's change.
    let before = ws.git.tree_of_files(&head)?;
    let entry = TestRun::full(tests, ws.git.root(), log, 0, ws.mission().grace()).run(events);
    let undone = ws.git.put_files_back(&head, &before)?;
    if !undone.is_empty() {
        log::info!(
            "the baseline tests changed {} file(s) in the tree; put back: {}",
            undone.len(),
            undone.join(", ")
        );
    }
    log::info!(
        "test baseline at {}: {}{}",
        &head[..head.len().min(10)],
        entry.status.as_str(),
        entry
            .failed
            .map(|f| format!(", {f} failed"))
            .unwrap_or_default()
    );
    state.test_baseline = Some(TestBaseline {
        passed: entry.status == StepStatus::Passed,
        failed_count: entry.failed,
        commit: head,
    });
    state.save(&ws.layout)
}
