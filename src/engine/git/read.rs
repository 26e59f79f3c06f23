//! Plumbing: asking the repository what it is now, without changing anything: HEAD and its
//! branch (read from the files when they tell, a git process saved after every agent), the
//! tree's status and changed files (the state folder left out), the files between two commits,
//! ancestry, and the files of a change too large to commit.

use crate::error::{Error, Result};

use super::parse::{linked_git_dir, nul_list, status_entries, StatusEntry};
use super::run::Git;

impl Git {
    /// The commit HEAD points at, or `None` in a repository with no commits yet.
    pub fn head(&self) -> Result<Option<String>> {
        match self.run(&["rev-parse", "--verify", "-q", "HEAD^{commit}"]) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(Error::Git { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like `head`, but a repository without commits is a usage error: a round needs a base.
    /// Read from the files when they tell (`head_fast`): a round asks for its base at each
    /// stage.
    pub fn base(&self) -> Result<String> {
        if let Some(h) = self.head_from_files() {
            return Ok(h);
        }
        self.head()?.ok_or_else(|| {
            Error::Usage(format!(
                "the repository at {} has no commits yet; commit once so orch has a base to return to",
                self.root.display()
            ))
        })
    }

    /// HEAD when it is no longer `base`: the agent committed (or checked out) something itself.
    pub fn head_moved_from(&self, base: &str) -> Option<String> {
        self.head_fast().filter(|h| h != base)
    }

    /// HEAD's commit, read from the repository's files when it can be (a detached HEAD or a
    /// loose branch ref), else from git; `None` without commits. Cheap enough to take before
    /// and after every agent in the shared tree.
    pub fn head_fast(&self) -> Option<String> {
        self.head_from_files()
            .or_else(|| self.head().ok().flatten())
    }

    /// HEAD's commit as the repository's files say (a detached HEAD, or a branch whose ref is a
    /// loose file); `None` when only git can tell (a packed ref, no commits, odd contents).
    pub(super) fn head_from_files(&self) -> Option<String> {
        let dir = linked_git_dir(&self.root).unwrap_or_else(|| self.root.join(".git"));
        let head = std::fs::read_to_string(dir.join("HEAD")).ok()?;
        let head = head.trim();
        let is_id = |s: &str| s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id(head) {
            return Some(head.to_string());
        }
        let loose = head
            .strip_prefix("ref: ")
            .filter(|r| r.starts_with("refs/heads/") && !r.contains(".."))
            .and_then(|r| std::fs::read_to_string(dir.join(r)).ok());
        match loose {
            Some(id) if is_id(id.trim()) => Some(id.trim().to_string()),
            _ => None,
        }
    }

    /// The branch HEAD is on (`refs/heads/main`), `None` when it is detached. Read from the
    /// HEAD file when it can be (checked after every agent, so no git process in the common
    /// case), else from git.
    pub fn branch(&self) -> Option<String> {
        let dir = linked_git_dir(&self.root).unwrap_or_else(|| self.root.join(".git"));
        if let Ok(head) = std::fs::read_to_string(dir.join("HEAD")) {
            let head = head.trim();
            if let Some(r) = head.strip_prefix("ref: ") {
                return Some(r.trim().to_string());
            }
            if head.len() >= 40 && head.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
        }
        self.run(&["symbolic-ref", "-q", "HEAD"])
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Changes to tracked files and untracked files that are not ignored.
    pub fn status(&self) -> Result<Vec<StatusEntry>> {
        let out = self.run_outside_state(
            &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
            &[],
        )?;
        Ok(status_entries(&out))
    }

    /// `git status --porcelain=v2 -z --branch` over the tree (untracked files one by one, no
    /// renames, the state folder left out), taken without git's optional locks: a look at a
    /// tree an agent may be running git in at the same moment, which must never find
    /// `index.lock` held by orch.
    pub fn status_v2_unlocked(&self) -> Result<String> {
        self.run_outside_state(
            &[
                "-c",
                "core.quotepath=off",
                "status",
                "--porcelain=v2",
                "-z",
                "--branch",
                "--untracked-files=all",
                "--no-renames",
            ],
            &[("GIT_OPTIONAL_LOCKS", "0")],
        )
    }

    /// Files that differ between `base` and the working tree, untracked ones included.
    pub fn changed_since(&self, base: &str) -> Result<Vec<String>> {
        let mut files =
            nul_list(&self.run_outside_state(&["diff", "--name-only", "-z", base], &[])?);
        files.extend(nul_list(&self.run_outside_state(
            &["ls-files", "--others", "--exclude-standard", "-z"],
            &[],
        )?));
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// The files that differ between two commits.
    pub fn files_between(&self, a: &str, b: &str) -> Result<Vec<String>> {
        Ok(nul_list(&self.run(&[
            "diff",
            "--name-only",
            "--no-renames",
            "-z",
            a,
            b,
        ])?))
    }

    /// Whether `ancestor` is `commit` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &str, commit: &str) -> Result<bool> {
        match self.run(&["merge-base", "--is-ancestor", ancestor, commit]) {
            Ok(_) => Ok(true),
            Err(Error::Git { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Files of the tree's change (new or modified, not ignored) larger than `max` bytes.
    pub fn oversized(&self, max: u64) -> Result<Vec<(String, u64)>> {
        let paths: Vec<String> = self.status()?.into_iter().map(|e| e.path).collect();
        Ok(self.oversized_among(&paths, max))
    }

    /// Those of `paths` (relative to the tree) that are files larger than `max` bytes.
    pub fn oversized_among(&self, paths: &[String], max: u64) -> Vec<(String, u64)> {
        paths
            .iter()
            .filter_map(|p| {
                let m = std::fs::symlink_metadata(self.root.join(p)).ok()?;
                (m.is_file() && m.len() > max).then(|| (p.clone(), m.len()))
            })
            .collect()
    }
}
