//! Policy: where HEAD and the tree must be after an agent, and putting them back. An agent
//! must leave HEAD on its branch at a commit descending from the base (`head_moved` says why
//! not); `put_back` returns HEAD there carrying the uncommitted files, and `restore` puts the
//! tree exactly at the base.

use crate::error::{Error, Result};

use super::parse::short;
use super::run::Git;

impl Git {
    /// Why HEAD is not where an agent must leave it: on `branch` (or detached, when `branch`
    /// is `None`), at a commit that descends from `base`. `None` when it is.
    pub fn head_moved(&self, branch: Option<&str>, base: &str) -> Option<String> {
        let now = self.branch();
        if now.as_deref() != branch {
            let name = |b: Option<&str>| match b {
                Some(b) => format!("branch {}", b.trim_start_matches("refs/heads/")),
                None => "a detached HEAD".to_string(),
            };
            return Some(format!(
                "it moved HEAD from {} to {}",
                name(branch),
                name(now.as_deref())
            ));
        }
        match self.head_fast() {
            None => Some("it left HEAD on a branch with no commits".into()),
            Some(h) if h == base => None,
            Some(h) => match self.is_ancestor(base, &h) {
                Ok(true) => None,
                _ => Some(format!(
                    "it moved {} to {}, which does not descend from the base {}",
                    branch.map_or("HEAD".into(), |b| b
                        .trim_start_matches("refs/heads/")
                        .to_string()),
                    short(&h),
                    short(base)
                )),
            },
        }
    }

    /// After an agent moved HEAD (`head_moved`) and its work was kept: HEAD back on `branch`
    /// (or detached at `good`), the branch back at `good` unless it still descends from
    /// `base`, and the files moved from the agent's HEAD to the restored one carrying what is
    /// uncommitted (as `git checkout` does); when that cannot be done, the tree is reset there.
    pub fn put_back(&self, branch: Option<&str>, base: &str, good: &str) -> Result<()> {
        let from = self.head()?;
        match branch {
            Some(b) => {
                self.run(&["symbolic-ref", "HEAD", b])?;
                let tip = self.head()?;
                let keeps = match &tip {
                    Some(t) => self.is_ancestor(base, t)?,
                    None => false,
                };
                if !keeps {
                    self.run(&["update-ref", b, good])?;
                }
            }
            None => {
                self.run(&["update-ref", "--no-deref", "HEAD", good])?;
            }
        }
        let now = self.base()?;
        let carried = match &from {
            Some(f) if *f == now => Ok(String::new()),
            Some(f) => self.run(&["read-tree", "-m", "-u", f, &now]),
            None => Err(Error::Other("no HEAD to move from".into())),
        };
        if carried.is_err() {
            self.run(&["reset", "-q", "--hard", &now])?;
        }
        Ok(())
    }

    /// Puts the working tree and HEAD back exactly at `base`: tracked files reset, untracked
    /// non-ignored files removed (ignored files, orch's state folder among them, stay).
    pub fn restore(&self, base: &str) -> Result<()> {
        // A folder an agent left read-only would stop the reset half-way (as a non-root user):
        // the folders holding what is put back get their write bits again, the others are left
        // as they are; one that cannot be made writable is named before anything is reset.
        let changed = self.changed_since(base)?;
        crate::engine::exec::perms::unlock_for(
            &self.root,
            &changed,
            &format!("putting the tree back at {}", short(base)),
        )?;
        self.run(&["reset", "-q", "--hard", base])?;
        self.run_outside_state(&["clean", "-q", "-f", "-d"], &[])?;
        Ok(())
    }
}
