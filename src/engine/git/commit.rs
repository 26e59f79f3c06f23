//! Policy: how orch lands work on the branch. Commits of the whole tree (the round's, an
//! agent's in its worktree), a commit made earlier landed as is, merges and the cherry-pick of
//! a review made beside the tests (a conflict or a refusal is a value, `Merge`, never a tree
//! left half-merged), commits made without touching HEAD for the refs that keep work, and the
//! signing check made before any agent runs.

use crate::error::{Error, Result};

use super::parse::one_line;
use super::run::Git;

/// What became of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    Merged,
    /// Conflicting paths; the merge was aborted.
    Conflict(Vec<String>),
    /// The merge failed without a conflict (an untracked file in the tree it would overwrite,
    /// a signing failure): git's words, one line. Nothing was merged.
    Refused(String),
}

impl Git {
    /// Commits every change in the tree (tracked and untracked, not ignored) on the current
    /// branch. Returns the new commit, or `None` when there was nothing to commit.
    pub fn commit_all(&self, message: &str) -> Result<Option<String>> {
        self.commit_all_with(message, &[], false)
    }

    /// `commit_all` for a change there is known to be (merges moved HEAD; an agent's changed
    /// files): the commit is tried first, and whether anything was staged is asked only if it
    /// fails (git refuses an empty commit), one git process fewer than asking first.
    pub fn commit_changes(&self, message: &str) -> Result<Option<String>> {
        self.commit_all_with(message, &[], true)
    }

    /// `config`: `-c` settings for the commit (`maintenance.auto=false`).
    pub(super) fn commit_all_with(
        &self,
        message: &str,
        config: &[&str],
        expected: bool,
    ) -> Result<Option<String>> {
        self.add_all(&[])?;
        let staged = || self.run(&["diff", "--cached", "--quiet"]).is_err();
        if !expected && !staged() {
            return Ok(None);
        }
        let mut args: Vec<&str> = config.iter().flat_map(|c| ["-c", *c]).collect();
        args.extend(["commit", "-q", "--no-verify", "-m", message]);
        if let Err(e) = self.run(&args) {
            if expected && !staged() {
                return Ok(None);
            }
            return Err(e);
        }
        // Read from the files (a detached HEAD in a worktree, a loose branch ref), else git.
        Ok(self.head_fast())
    }

    /// Lands `commit`, made earlier on `parent` (the code commit Phase B beside the tests was
    /// shown), as the branch's next commit when HEAD is at `parent` and the working tree, all
    /// added, is exactly `commit`'s tree: HEAD moves to it and no new commit is made. Returns
    /// whether it did; otherwise nothing moved (the index holds the tree, as `commit_all`'s
    /// own `add` leaves it).
    pub fn land_made(&self, commit: &str, parent: &str) -> Result<bool> {
        self.add_all(&[])?;
        let tree = self.run(&["write-tree"])?;
        let want = self.run(&[
            "rev-parse",
            &format!("{commit}^{{tree}}"),
            &format!("{commit}^"),
        ])?;
        let mut want = want.lines();
        let head = self.head_fast();
        if want.next() != Some(tree.trim())
            || want.next() != Some(parent)
            || head.as_deref() != Some(parent)
        {
            return Ok(false);
        }
        self.run(&["reset", "-q", "--soft", commit])?;
        Ok(true)
    }

    /// Commits an agent's change in its worktree (`commit_changes`). Git's automatic
    /// maintenance (`git maintenance run --auto`, a process after every commit and merge) is
    /// left to the round's own commit in the main tree: here it would run once per agent
    /// commit and merge, on the path from one agent to the next.
    pub fn commit_agent_change(&self, message: &str) -> Result<Option<String>> {
        self.commit_all_with(message, &["maintenance.auto=false"], true)
    }

    /// A commit of `tree` on `parent` made without touching HEAD (for the refs that keep work).
    /// Signed when the user's config asks and it works; should signing fail here (a key that
    /// went away mid-run), unsigned: keeping the work matters more than its signature.
    pub(super) fn commit_tree(&self, tree: &str, parent: &str, message: &str) -> Result<String> {
        let made = self
            .run(&["commit-tree", tree, "-p", parent, "-m", message])
            .or_else(|e| {
                log::warn!("signing a commit that keeps work failed ({e}); made unsigned");
                self.run(&[
                    "commit-tree",
                    "--no-gpg-sign",
                    tree,
                    "-p",
                    parent,
                    "-m",
                    message,
                ])
            })?;
        Ok(made.trim().to_string())
    }

    /// A commit of `tree` on `parent` (not on any branch, no ref): the snapshot a worktree is
    /// made from.
    pub fn commit_of_tree(&self, tree: &str, parent: &str, message: &str) -> Result<String> {
        self.commit_tree(tree, parent, message)
    }

    /// `commit.gpgsign` on: orch's commits are signed, so signing must work before a round
    /// spends anything (else every commit of the night fails after the agents ran). Tried once
    /// on an empty tree; the probe commit is left to git's garbage collection.
    pub fn check_signing(&self) -> Result<()> {
        let on = self
            .run(&["config", "--type=bool", "--get", "commit.gpgsign"])
            .is_ok_and(|v| v.trim() == "true");
        if !on {
            return Ok(());
        }
        let empty = self.run(&["hash-object", "-t", "tree", "-w", "--stdin"])?;
        match self.run(&[
            "commit-tree",
            "-S",
            empty.trim(),
            "-m",
            "orch: signing probe",
        ]) {
            Ok(_) => Ok(()),
            Err(Error::Git { stderr, .. }) => Err(Error::Usage(format!(
                "commit.gpgsign is on in {}, but git cannot sign a commit ({}); orch signs its \
                 commits as your config asks, so it stops before any agent runs. Make signing \
                 work (the key, gpg-agent, gpg.program), or turn it off for this repository: \
                 git config commit.gpgsign false",
                self.root.display(),
                one_line(&stderr)
            ))),
            Err(e) => Err(e),
        }
    }

    /// Merges `commit` into the current branch (hooks off, `--no-verify`). A conflict is aborted
    /// (the tree stays as it was) and reported with the conflicting paths; any other failure is
    /// `Refused` with git's words, the tree as it was.
    pub fn merge(&self, commit: &str, message: &str) -> Result<Merge> {
        // No automatic maintenance after each merge (see `commit_agent_change`).
        let args = [
            "-c",
            "maintenance.auto=false",
            "merge",
            "--no-ff",
            "--no-edit",
            "--no-verify",
            "-q",
            "-m",
            message,
            commit,
        ];
        match self.run(&args) {
            Ok(_) => Ok(Merge::Merged),
            Err(Error::Git { stderr, .. }) => {
                let files: Vec<String> = self
                    .run(&["diff", "--name-only", "--diff-filter=U"])
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect();
                // Only when a merge is under way (a refused one never started).
                if self
                    .run(&["rev-parse", "-q", "--verify", "MERGE_HEAD"])
                    .is_ok()
                {
                    let _ = self.run(&["merge", "--abort"]);
                }
                if files.is_empty() {
                    return Ok(Merge::Refused(one_line(&stderr)));
                }
                Ok(Merge::Conflict(files))
            }
            Err(e) => Err(e),
        }
    }

    /// Points `refname` at `commit`.
    pub fn set_ref(&self, refname: &str, commit: &str) -> Result<()> {
        self.run(&["update-ref", refname, commit]).map(|_| ())
    }

    /// Applies what `commit` changed on top of `parent` to HEAD, as `git cherry-pick` would,
    /// and moves HEAD's branch (and the files) there by a fast-forward to a commit of the
    /// result on HEAD with `message`. The three-way merge is computed by `git merge-tree`
    /// without touching the tree, so a conflict leaves the tree and HEAD exactly as they were
    /// (`Conflict` with the paths); a fast-forward git refuses (an untracked file in the way) is
    /// `Refused` with git's words. Review agents that worked beside the tests, on a commit of
    /// Phase A's tree, land this way on the round's code commit.
    pub fn pick(&self, parent: &str, commit: &str, message: &str) -> Result<Merge> {
        let head = self.base()?;
        let merge_base = format!("--merge-base={parent}");
        let args = [
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
            merge_base.as_str(),
            head.as_str(),
            commit,
        ];
        // Exit 0: merged, the tree's id first; exit 1: conflicts, the paths after it.
        let out = self.run_status(&args)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut fields = text.split('\0').filter(|s| !s.is_empty());
        let tree = fields.next().unwrap_or_default().trim().to_string();
        let conflicts = match out.status.code() {
            Some(0) => None,
            Some(1) => Some(fields.map(str::to_string).collect::<Vec<_>>()),
            _ => {
                return Err(Error::Git {
                    command: format!("git {}", args.join(" ")),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                })
            }
        };
        if let Some(mut files) = conflicts {
            files.dedup();
            return Ok(Merge::Conflict(files));
        }
        let made = self.commit_tree(&tree, &head, message)?;
        match self.run(&["merge", "--ff-only", "--no-verify", "-q", &made]) {
            Ok(_) => Ok(Merge::Merged),
            Err(Error::Git { stderr, .. }) => Ok(Merge::Refused(one_line(&stderr))),
            Err(e) => Err(e),
        }
    }
}
