//! Policy: the linked worktrees agents work in. Made once and reused clean (reset and cleaned,
//! not re-added), made again when broken, never trusted through a link an agent could have
//! rewritten; submodules checked out in each.

use std::path::Path;

use crate::error::{Error, Result};

use super::nested;
use super::parse::linked_git_dir;
use super::run::Git;

impl Git {
    /// Makes `path` a linked worktree checked out (detached) at `base`, clean. An existing
    /// worktree is reset and cleaned instead of re-added: on a large repository that touches
    /// only the files the last round changed. A broken one (a crash mid-way) is removed and
    /// made again.
    pub fn prepare_worktree(&self, path: &Path, base: &str) -> Result<Git> {
        let wt = self.at(path);
        // A worktree's `.git` is a file naming its folder under the repository's `.git`; when
        // that link is intact both ways, the worktree is reused (reading files costs less than
        // a git process, and this runs once per agent per round). If git then disagrees, it is
        // made again. A link an agent deleted or rewrote is never followed: git would work on
        // whatever repository it names (the main one, once the file is gone).
        if self.worktree_intact(path) {
            // The worktree is orch's: a folder the agent left read-only (`chmod a-w`) gets its
            // write bits back, else git could neither replace nor clean files in it.
            crate::engine::exec::perms::unlock_tree(path);
            // Detached again, whatever branch the agent may have checked out there last time.
            match wt.run(&["checkout", "-q", "-f", "--detach", base]) {
                Ok(_) => {
                    wt.run(&["clean", "-q", "-f", "-d"])?;
                    nested::init_submodules(&wt, &self.root)?;
                    return Ok(wt);
                }
                Err(e) => log::info!(
                    "worktree {} is broken ({e}); making it again",
                    path.display()
                ),
            }
        }
        let removed = path.exists();
        if removed {
            crate::engine::exec::perms::unlock_tree(path);
            std::fs::remove_dir_all(path).map_err(|e| {
                Error::io(format!("removing broken worktree {}", path.display()), e)
            })?;
        }
        // Workers prepare their worktrees at once; a `worktree prune` running beside another
        // worker's `worktree add` deletes the metadata that add is writing ("could not open
        // .git/worktrees/X/gitdir"), and two adds at once read each other's half-written
        // metadata ("failed to read .git/worktrees/X/commondir"). Making worktrees is rare (the
        // first round), so one at a time.
        static ADMIN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _admin = ADMIN.lock().unwrap_or_else(|e| e.into_inner());
        // The run pruned once at its start; after that only a folder removed here leaves
        // metadata behind. (`add -f` takes a path that is registered but missing either way.)
        if removed {
            let _ = self.run(&["worktree", "prune"]);
        }
        let p = path.to_string_lossy();
        self.run(&["worktree", "add", "-q", "-f", "--detach", &p, base])?;
        drop(_admin);
        // A worktree gets an empty folder for each submodule: checked out from the main tree's.
        nested::init_submodules(&wt, &self.root)?;
        Ok(wt)
    }

    /// Whether `path` is a linked worktree of this repository with its link intact: its `.git`
    /// file names a folder under this repository's `worktrees/`, which has a HEAD and whose
    /// `gitdir` names `path/.git` back.
    pub fn worktree_intact(&self, path: &Path) -> bool {
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        let Some(dir) = linked_git_dir(path) else {
            return false;
        };
        let under = canon(&dir).and_then(|d| d.parent().map(Path::to_path_buf));
        if under.is_none() || under != canon(&self.common_dir.join("worktrees")) {
            return false;
        }
        let back = std::fs::read_to_string(dir.join("gitdir")).unwrap_or_default();
        dir.join("HEAD").is_file()
            && canon(Path::new(back.trim())).is_some()
            && canon(Path::new(back.trim())) == canon(&path.join(".git"))
    }

    /// Drops the metadata of worktrees whose folders are gone.
    pub fn prune_worktrees(&self) -> Result<()> {
        self.run(&["worktree", "prune"]).map(|_| ())
    }
}
