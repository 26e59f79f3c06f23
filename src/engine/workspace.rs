//! The repository and mission a run works on ([`Workspace`]: the mission loaded and checked,
//! the repository opened with orch's state folder kept out of it), and what a dead orch left
//! there that the next one takes care of before anything else: agent worktrees whose work was
//! never integrated, kept in refs, and the dead round's log. Below both `runner` (the live run)
//! and `replay` (a replay's own state folder), which each recover their own.

use std::path::Path;

use crate::engine::git::Git;
use crate::engine::preflight;
use crate::engine::prompt;
use crate::engine::store::state::{write_json, Journal, Layout, State};
use crate::error::Result;
use crate::mission::{self, Mission};
use crate::roundlog::{RoundLog, RoundStatus};

/// What the repository and mission look like once opened and locked.
pub struct Workspace {
    pub loaded: mission::Loaded,
    pub git: Git,
    pub layout: Layout,
}

impl Workspace {
    /// Loads and validates the mission and opens the repository, without locking.
    pub fn open(dir: &Path, mission_path: &Path) -> Result<Workspace> {
        let loaded = mission::Loaded::from_path(
            &mission::locate(dir, mission_path),
            &crate::agents::Adapters,
        )?;
        prompt::validate(&loaded.mission, &loaded.dir, &loaded.file)?;
        let git = Git::open(dir)?;
        preflight::check_state_dir(&loaded.mission, &loaded.file, &git)?;
        let layout = Layout::in_repo(git.root().join(&loaded.mission.state_dir), git.common_dir());
        let git = git.keep_out(&layout.dir);
        // Under `sandbox.tests`: the test command and the sims run fenced like the agents.
        let mission = &loaded.mission;
        let setting = mission.sandbox.clone().unwrap_or_default();
        crate::engine::exec::sandbox::rules::set_fence(setting.covers_tests().then(|| {
            crate::engine::exec::sandbox::rules::Fence {
                setting,
                repo_root: git.root().to_path_buf(),
                common_dir: git.common_dir().to_path_buf(),
                state_dir: layout.dir.clone(),
            }
        }));
        Ok(Workspace {
            loaded,
            git,
            layout,
        })
    }

    pub fn mission(&self) -> &Mission {
        &self.loaded.mission
    }
}

/// Saves the work of every agent worktree under `state_dir/worktrees/` that a dead orch never
/// integrated into the tree of `main` (uncommitted files, and commits the agent made itself
/// that the tree does not hold) under `refs` (`refs/orch/`, or a replay's own namespace) and
/// cleans the worktree. Returns (agent, ref) for each one kept.
pub(crate) fn keep_worktrees(
    main: &Git,
    state_dir: &Path,
    refs: &str,
    round: u32,
) -> Result<Vec<(String, String)>> {
    let mut kept = Vec::new();
    let main_head = main.head()?.unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(state_dir.join("worktrees")) else {
        return Ok(kept);
    };
    for e in entries.flatten() {
        let path = e.path();
        // A worktree whose link is gone or wrong is never used (git would follow it elsewhere);
        // it is made again before its agent's next run.
        if !main.worktree_intact(&path) {
            continue;
        }
        let wt = main.at(&path);
        let (Ok(Some(head)), Ok(status)) = (wt.head(), wt.status()) else {
            continue;
        };
        // A worktree's HEAD is the base, or a change orch committed there and merged (the
        // main tree holds it), or the agent's own commits, never merged.
        let unmerged = !main_head.is_empty() && !main.is_ancestor(&head, &main_head)?;
        if status.is_empty() && !unmerged {
            continue;
        }
        let agent = e.file_name().to_string_lossy().into_owned();
        // Phase B's worktree beside the tests (`.phase-b`: not an agent, and a ref name cannot
        // start with a dot): its uncommitted files are the review agents' work; its HEAD is a
        // commit of Phase A's tree, never merged as such.
        let phase_b = agent.starts_with('.');
        if phase_b && status.is_empty() {
            continue;
        }
        let r = if phase_b {
            format!("{refs}interrupted-review/round-{round}")
        } else {
            format!("{refs}cancelled/round-{round}/{agent}")
        };
        if status.is_empty() {
            main.set_ref(&r, &head)?;
        } else {
            wt.save_tree(
                &head,
                &r,
                &format!("orch: round {round} {agent} (orch died); its partial work"),
            )?;
            wt.restore(&head)?;
        }
        kept.push((agent, r));
    }
    Ok(kept)
}

/// The dead round gets a round log (status `interrupted`) in the state folder of `layout` (the
/// live one, or a replay's) unless it wrote one before dying. Like an interrupted round it does
/// not count as finished: the next `orch run` runs it again (the interrupted log is kept aside
/// as `round-NNNN.prev-K.json`).
pub(crate) fn record_dead_round(
    layout: &Layout,
    mission: &str,
    j: &Journal,
    kept_ref: Option<String>,
    what: &str,
) -> Result<()> {
    let path = layout.round_log(j.round);
    let mut state = State::load(layout)?;
    if !path.exists() {
        let log = RoundLog {
            status: RoundStatus::Interrupted,
            finished_at: crate::units::now_rfc3339(),
            kept_ref,
            total_cost_usd: state.total_cost_usd,
            stop_reason: Some("orch died during the round (killed or crashed)".into()),
            notes: vec![what.to_string()],
            ..RoundLog::new(j.round, mission, j.base.clone(), j.started_at.clone())
        };
        write_json(&path, &log)?;
    }
    state.mission = mission.to_string();
    state.save(layout)
}
