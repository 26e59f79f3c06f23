//! `--branch NAME` / `git.branch`: a run's commits go on a branch of its own, and the user's
//! branch stays where it was.
//!
//! orch checks the branch out in the main working tree for the run and checks the user's
//! branch (or detached commit) out again at its end, including after an interrupt. The rounds
//! run where they always run, so everything the mission relies on is there: the state folder,
//! untracked files the agents, sims and tests need (`.env`, `node_modules`, build caches), the
//! agents' worktrees; a worktree of its own for the run would have none of them and double the
//! disk. The price is that the main tree shows the branch while orch runs, which orch's rule of a
//! clean tree already keeps the user out of.
//!
//! The switch comes after `--allow-dirty` has set the user's uncommitted work aside, and the
//! return before it is put back, so that work comes back on the user's branch. The switch is
//! recorded in `branch.json` (beside the journal, under the git common directory) before it is
//! made, so that a run that died on
//! the branch (SIGKILL, a second Ctrl-C) is not forgotten: the next orch goes on on that branch
//! and returns the user's branch at its end.

use serde::{Deserialize, Serialize};

use crate::engine::git::Git;
use crate::engine::store::state::{read_json, write_json, Layout};
use crate::error::{Error, Result};

/// The run's branch and what to return to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BranchRun {
    /// The branch the rounds commit on.
    pub branch: String,
    /// The user's branch when the run started; `None` for a detached HEAD.
    pub original_branch: Option<String>,
    /// The commit HEAD was at when the run started (the branch's fork point).
    pub original_commit: String,
}

impl BranchRun {
    /// What `git checkout` returns to.
    fn original(&self) -> &str {
        self.original_branch
            .as_deref()
            .unwrap_or(&self.original_commit)
    }
}

/// Beside the journal, under the git common directory, where an agent's `git clean -fdx`
/// cannot reach it.
fn record_path(layout: &Layout) -> std::path::PathBuf {
    layout.private.join("branch.json")
}

/// The branch name from a template: `{mission}` and `{date}` (UTC, `YYYY-MM-DD`) replaced, then
/// checked as git checks branch names. `from` names the flag or key for the error.
pub fn resolve(git: &Git, template: &str, mission: &str, from: &str) -> Result<String> {
    let date = &crate::units::now_rfc3339()[..10];
    let name = template
        .replace("{mission}", mission)
        .replace("{date}", date);
    let ok = !name.is_empty()
        && git
            .run(&["check-ref-format", "--branch", &name])
            .is_ok_and(|s| s.trim() == name);
    if !ok {
        return Err(Error::Usage(format!(
            "{from} {template:?}: {name:?} is not a valid git branch name (see `git check-ref-format --branch`)"
        )));
    }
    Ok(name)
}

/// The branch HEAD is on, or `None` when it is detached.
fn current_branch(git: &Git) -> Result<Option<String>> {
    match git.run(&["symbolic-ref", "-q", "--short", "HEAD"]) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(Error::Git { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn branch_tip(git: &Git, name: &str) -> Result<Option<String>> {
    match git.run(&[
        "rev-parse",
        "--verify",
        "-q",
        &format!("refs/heads/{name}^{{commit}}"),
    ]) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(Error::Git { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The run's branch, checked out; the user's branch is checked out again when this is dropped
/// (every way out of the run: its end, an interrupt, an error).
pub struct OnBranch<'a> {
    git: &'a Git,
    layout: &'a Layout,
    run: Option<BranchRun>,
}

impl Drop for OnBranch<'_> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            leave(self.git, self.layout, &run);
        }
    }
}

/// Puts the main tree on the run's branch: creates it from HEAD, or goes on with it when it
/// holds HEAD; refuses a branch that does not. `requested` is the resolved name (flag or
/// mission), `None` for a run on the current branch. A run that died on its branch is gone on
/// with whatever is requested. Called on a clean tree (after recovery, the dirty-tree check and
/// `--allow-dirty`'s setting aside), so the switch touches nothing of the user's.
pub fn enter<'a>(
    git: &'a Git,
    layout: &'a Layout,
    requested: Option<&str>,
) -> Result<OnBranch<'a>> {
    let run = switch(git, layout, requested)?;
    Ok(OnBranch { git, layout, run })
}

fn switch(git: &Git, layout: &Layout, requested: Option<&str>) -> Result<Option<BranchRun>> {
    let current = current_branch(git)?;
    if let Some(rec) = read_json::<BranchRun>(&record_path(layout))? {
        if current.as_deref() == Some(rec.branch.as_str()) {
            log::warn!(
                "an earlier orch run ended on branch {} without returning to {}; going on there (it returns at the end of this run)",
                rec.branch,
                rec.original()
            );
            if requested.is_some_and(|r| r != rec.branch) {
                log::warn!(
                    "the branch asked for now ({}) is not used: finish or leave {} first (`git checkout {}`)",
                    requested.unwrap_or_default(),
                    rec.branch,
                    rec.original()
                );
            }
            return Ok(Some(rec));
        }
        // The user moved HEAD away since: the record describes nothing any more.
        let _ = std::fs::remove_file(record_path(layout));
    }
    let Some(name) = requested else {
        return Ok(None);
    };
    let head = git.base()?;
    let run = BranchRun {
        branch: name.to_string(),
        original_branch: current.clone(),
        original_commit: head.clone(),
    };
    if current.as_deref() == Some(name) {
        // Already there (checked out by hand): nothing to switch, nothing to return to.
        return Ok(Some(run));
    }
    let args: Vec<&str> = match branch_tip(git, name)? {
        Some(tip) if tip != head && !git.is_ancestor(&head, &tip)? => {
            return Err(Error::Usage(format!(
                "branch {name} exists and does not hold HEAD ({}, on {}): orch goes on with a branch only when it descends from HEAD. Merge {} into it, delete it (`git branch -D {name}`), or pick another name (`{{date}}` in git.branch gives one a night)",
                &head[..head.len().min(10)],
                run.original(),
                run.original()
            )));
        }
        Some(_) => vec!["checkout", "-q", name],
        None => vec!["checkout", "-q", "-b", name],
    };
    write_json(&record_path(layout), &run)?;
    if let Err(e) = git.run(&args) {
        let _ = std::fs::remove_file(record_path(layout));
        return Err(e);
    }
    log::info!(
        "working on branch {name} (from {} at {}); {} is left where it is",
        run.original(),
        &head[..head.len().min(10)],
        run.original()
    );
    Ok(Some(run))
}

/// Returns the user's branch and says what to do with the run's. Never fails the run: a branch
/// that cannot be left (something dirtied the tree after the rounds) is a warning, and the
/// record stays for the next run.
fn leave(git: &Git, layout: &Layout, run: &BranchRun) {
    let current = current_branch(git).ok().flatten();
    if current.as_deref() != Some(run.branch.as_str()) {
        log::warn!(
            "HEAD is no longer on branch {} (something checked out {}); left as it is",
            run.branch,
            current.as_deref().unwrap_or("a detached commit")
        );
        let _ = std::fs::remove_file(record_path(layout));
        return;
    }
    let back = run.original_branch.as_deref() != Some(run.branch.as_str());
    if back {
        let args: Vec<&str> = match &run.original_branch {
            Some(b) => vec!["checkout", "-q", b],
            None => vec!["checkout", "-q", "--detach", &run.original_commit],
        };
        if let Err(e) = git.run(&args) {
            log::warn!(
                "still on branch {}: `git {}` failed ({}); switch back yourself",
                run.branch,
                args.join(" "),
                e.to_string().lines().next().unwrap_or_default()
            );
            return;
        }
    }
    let _ = std::fs::remove_file(record_path(layout));
    log::info!("{}", hints(git, run, back));
}

/// What to do with the branch in the morning.
fn hints(git: &Git, run: &BranchRun, back: bool) -> String {
    let b = &run.branch;
    let base = if back {
        run.original().to_string()
    } else {
        run.original_commit[..run.original_commit.len().min(10)].to_string()
    };
    let ahead = git
        .run(&[
            "rev-list",
            "--count",
            &format!("{}..{b}", run.original_commit),
        ])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let mut s = format!(
        "the rounds' commits are on branch {b} ({ahead} commit(s) since {base}){}; next:\n  git log --oneline {base}..{b}\n  git diff --stat {base}...{b}\n",
        if back {
            format!("; you are back on {}", run.original())
        } else {
            String::new()
        }
    );
    match &run.original_branch {
        Some(o) if back => s.push_str(&format!(
            "  git merge {b}    # on {o}: keep it\n  git push -u origin {b} && gh pr create --head {b} --base {o} --fill    # or review it first"
        )),
        _ => s.push_str(&format!(
            "  git push -u origin {b} && gh pr create --head {b} --fill"
        )),
    }
    s
}
