//! `--allow-dirty`: the user's uncommitted work (tracked edits, staged changes, untracked
//! files) is set aside before the rounds and put back exactly as it was after them, whatever
//! they did, so that orch never commits it, reverts it or deletes it.
//!
//! How: before the first round, the dirty tree is saved as a commit under
//! `refs/orch/user/round-N`, shaped like a `git stash` entry (first parent the base, second a
//! commit of the user's index, its tree the working files, untracked ones included), made with
//! private indexes so the user's index is never written. A record of it goes to the private
//! folder under the git common directory (`user-stash.json`), then the tree is put back at the
//! base. The rounds run on the clean base: agents, in the shared tree or their worktrees, see
//! the last commit, never the user's edits, and what orch commits is only theirs. When the run
//! ends (passing, reverted, interrupted, failed), the user's files are written back from the
//! ref (only the paths they had changed; a path the rounds changed too gets the user's version
//! and a warning) and their staged changes go back into the index; the record is removed, the
//! ref stays. If orch is killed in between, the record tells the next orch, which puts the
//! work back before anything else.
//!
//! Not kept: empty untracked folders (git has no name for them) and ignored files (never
//! touched, so nothing to keep).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::git::Git;
use crate::engine::store::state::{read_json, write_json, Layout};
use crate::error::{Error, Result};
use crate::events::{Event, Events};

/// What was set aside, recorded until it is back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    /// `refs/orch/user/round-N`.
    pub refname: String,
    /// The commit of the working files (its second parent holds the index).
    pub commit: String,
    /// HEAD when it was set aside.
    pub base: String,
}

/// The user's work set aside for a run; put back when dropped (every way out of the run,
/// an error or a panic included).
pub struct SetAside<'a> {
    git: &'a Git,
    layout: &'a Layout,
    events: &'a Events,
    saved: Option<Saved>,
}

impl Drop for SetAside<'_> {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            report(self.events, put_back(self.git, self.layout, &saved), &saved);
        }
    }
}

/// Sets the user's uncommitted work aside before round `round` when `allowed` and the tree is
/// dirty; `None` when there is nothing to set aside.
pub fn set_aside<'a>(
    git: &'a Git,
    layout: &'a Layout,
    events: &'a Events,
    round: u32,
    allowed: bool,
) -> Result<SetAside<'a>> {
    let mut guard = SetAside {
        git,
        layout,
        events,
        saved: None,
    };
    if !allowed || git.status()?.is_empty() {
        return Ok(guard);
    }
    let base = git.base()?;
    let refname = format!("refs/orch/user/round-{round}");
    let tmp = private_index(git, "orch-user.index")?;
    let result = (|| {
        // The index as the user left it, through a copy: `write-tree` on the real one may
        // rewrite its cache.
        let real = git.run(&["rev-parse", "--git-path", "index"])?;
        let real = git.root().join(real.trim());
        if real.exists() {
            std::fs::copy(&real, &tmp)
                .map_err(|e| Error::io(format!("copying the index {}", real.display()), e))?;
        }
        let tmp_s = tmp.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", tmp_s.as_str())];
        let index_tree = git.run_env(&["write-tree"], &env).map_err(|e| {
            Error::Usage(format!(
                "--allow-dirty cannot set your work aside: the index has unresolved conflicts \
                 (finish or abort the merge first): {e}"
            ))
        })?;
        let index_commit = commit_tree(
            git,
            index_tree.trim(),
            &[&base],
            &format!("index on round {round}"),
        )?;
        git.run_env(&["read-tree", &base], &env)?;
        git.add_all(&env)?;
        let tree = git.run_env(&["write-tree"], &env)?;
        let commit = commit_tree(
            git,
            tree.trim(),
            &[&base, &index_commit],
            &format!(
                "orch: your uncommitted work before round {round} (--allow-dirty)\n\n\
                 Set aside while orch ran and put back after; `git stash apply {refname}` \
                 applies it by hand."
            ),
        )?;
        git.run(&["update-ref", &refname, &commit])?;
        Ok(Saved {
            refname: refname.clone(),
            commit,
            base: base.clone(),
        })
    })();
    let _ = std::fs::remove_file(&tmp);
    let saved = result?;
    // The record first: from here on, a killed orch leaves the next one what to put back.
    write_json(&layout.user_stash(), &saved)?;
    git.restore(&base)?;
    log::info!(
        "your uncommitted work is set aside in {refname} while the rounds run on {}; it comes \
         back when orch ends",
        &base[..base.len().min(10)]
    );
    guard.saved = Some(saved);
    Ok(guard)
}

/// A dead orch's set-aside work, put back (by the next orch, before anything else). Returns
/// a message saying so.
pub fn recover(git: &Git, layout: &Layout, events: &Events) -> Result<Option<String>> {
    let Some(saved) = read_json::<Saved>(&layout.user_stash())? else {
        return Ok(None);
    };
    let result = put_back(git, layout, &saved);
    let ok = result.is_ok();
    report(events, result, &saved);
    Ok(ok.then(|| {
        format!(
            "your uncommitted work, set aside by an orch that died, is back in the tree (also kept in {})",
            saved.refname
        )
    }))
}

fn report(events: &Events, result: Result<Vec<String>>, saved: &Saved) {
    let message = match result {
        Ok(both) if both.is_empty() => {
            log::info!("your uncommitted work is back in the tree");
            return;
        }
        Ok(both) => format!(
            "your uncommitted work is back in the tree; {} also changed by the rounds (their \
             version is in HEAD, yours in the tree): {}",
            if both.len() == 1 { "a file you had changed was" } else { "files you had changed were" },
            both.join(", ")
        ),
        Err(e) => format!(
            "putting your uncommitted work back failed ({e}); it is kept in {} (`git stash apply {}`)",
            saved.refname, saved.refname
        ),
    };
    events.emit(Event::Warning {
        round: None,
        message,
    });
}

/// Writes the user's changed paths back into the working tree and their staged changes into
/// the index, on top of whatever HEAD is now. Returns the paths the rounds changed as well.
fn put_back(git: &Git, layout: &Layout, saved: &Saved) -> Result<Vec<String>> {
    let head = git.base()?;
    let index_commit = format!("{}^2", saved.commit);
    // The working files: written from the saved tree through a private index.
    let changes = diff_tree(git, &saved.base, &saved.commit)?;
    let tmp = private_index(git, "orch-user-back.index")?;
    let tmp_s = tmp.to_string_lossy().into_owned();
    let env = [("GIT_INDEX_FILE", tmp_s.as_str())];
    let result = (|| {
        git.run_env(&["read-tree", &saved.commit], &env)?;
        let mut paths = Vec::new();
        for c in &changes {
            if c.deleted() {
                remove(&git.root().join(&c.path))?;
            } else {
                paths.extend_from_slice(c.path.as_bytes());
                paths.push(0);
            }
        }
        if !paths.is_empty() {
            // A file the round left where the user had a folder (or the reverse) goes first.
            for c in changes.iter().filter(|c| !c.deleted()) {
                clear_way(git.root(), &c.path);
            }
            git.run_input(
                &["checkout-index", "-f", "-z", "--stdin"],
                &env,
                Some(&paths),
            )?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    // The index: HEAD's, with the user's staged changes on top.
    let staged = diff_tree(git, &saved.base, &index_commit)?;
    if !staged.is_empty() {
        let mut info = Vec::new();
        for c in &staged {
            let line = if c.deleted() {
                format!("0 {}\t{}", "0".repeat(c.new_id.len()), c.path)
            } else {
                format!("{} {}\t{}", c.new_mode, c.new_id, c.path)
            };
            info.extend_from_slice(line.as_bytes());
            info.push(0);
        }
        git.run_input(&["update-index", "-z", "--index-info"], &[], Some(&info))?;
    }
    let rounds_changed = git.files_between(&saved.base, &head)?;
    let both: Vec<String> = changes
        .iter()
        .map(|c| c.path.clone())
        .filter(|p| rounds_changed.contains(p))
        .collect();
    match std::fs::remove_file(layout.user_stash()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(
                format!("removing {}", layout.user_stash().display()),
                e,
            ))
        }
        _ => {}
    }
    Ok(both)
}

/// One path of `git diff-tree -r` between two commits.
struct Change {
    new_mode: String,
    new_id: String,
    path: String,
}

impl Change {
    fn deleted(&self) -> bool {
        self.new_mode == "000000"
    }
}

fn diff_tree(git: &Git, a: &str, b: &str) -> Result<Vec<Change>> {
    let out = git.run(&["diff-tree", "-r", "--no-renames", "-z", a, b])?;
    let mut fields = out.split('\0');
    let mut changes = Vec::new();
    while let Some(meta) = fields.next() {
        let Some(path) = fields.next() else { break };
        // `:OLDMODE NEWMODE OLDID NEWID STATUS`
        let m: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        if m.len() < 5 {
            continue;
        }
        changes.push(Change {
            new_mode: m[1].to_string(),
            new_id: m[3].to_string(),
            path: path.to_string(),
        });
    }
    Ok(changes)
}

fn commit_tree(git: &Git, tree: &str, parents: &[&str], message: &str) -> Result<String> {
    let mut args = vec!["commit-tree", "--no-gpg-sign", tree];
    for p in parents {
        args.extend(["-p", p]);
    }
    args.extend(["-m", message]);
    Ok(git.run(&args)?.trim().to_string())
}

fn private_index(git: &Git, name: &str) -> Result<PathBuf> {
    let p = git.run(&["rev-parse", "--git-path", name])?;
    Ok(git.root().join(p.trim()))
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return Ok(()),
    }
    .map_err(|e| Error::io(format!("removing {}", path.display()), e))
}

/// Makes room for file `rel`: a folder at its path, or a file where one of its folders goes,
/// left by the rounds (checkout-index does not replace them).
fn clear_way(root: &Path, rel: &str) {
    let p = root.join(rel);
    if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
        let _ = std::fs::remove_dir_all(&p);
    }
    let mut dir = p.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(root) && *d != root) {
        if std::fs::symlink_metadata(d).is_ok_and(|m| !m.is_dir()) {
            let _ = std::fs::remove_file(d);
        }
        dir = d.parent();
    }
}
