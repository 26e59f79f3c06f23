//! Everything orch does to the user's repository, through the `git` command line.
//!
//! The rules this module keeps: the round's base is HEAD; nothing an agent wrote is ever
//! destroyed (a rejected or interrupted tree, tracked and untracked files alike, is first saved
//! as a commit under `refs/orch/...`, made with a private index so neither HEAD nor the user's
//! index moves); restoring the base is exact (`reset --hard` plus `clean` of untracked,
//! non-ignored files); and orch's state folder is kept out of git whatever the repository's
//! `.gitignore` says (a whitelist `*`, `!*/` beats `.git/info/exclude`): every `add`, `status`,
//! `diff`, `ls-files` and `clean` orch runs carries the pathspec `:(exclude)<stateDir>`, so the
//! folder never dirties the tree, never lands in a commit and is never cleaned away. The
//! `.git/info/exclude` line stays for the user's own `git status`.
//!
//! git commands are short and their output small, so they run to completion with captured
//! output; the long-running children (agents, sims, tests) go through `process`.
//!
//! orch's own git operations run with the repository's hooks off (`core.hooksPath=/dev/null`,
//! and `--no-verify` where git has it): a `commit-msg` hook that rejects orch's message, or a
//! `post-checkout` hook that writes a file, must neither drop an agent's work nor be credited to
//! an agent. Agents that run git themselves are unaffected (they run their own git).
//!
//! Beside it, the policies built on it: [`branch`] (a run's own branch), [`nested`]
//! (submodules and repositories an agent makes inside the tree), [`userwork`] (the user's
//! uncommitted work under `--allow-dirty`).

pub mod branch;
pub mod nested;
pub mod userwork;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::{Error, Result};

/// The author orch commits as when git has no identity configured.
const FALLBACK_NAME: &str = "orch";
const FALLBACK_EMAIL: &str = "orch@localhost";

#[derive(Debug, Clone)]
pub struct Git {
    root: PathBuf,
    /// Environment for commits when the user has no git identity.
    identity: Vec<(String, String)>,
    /// The repository's common git folder (`git rev-parse --git-common-dir`, absolute): shared
    /// by the main tree and every linked worktree, out of reach of `git clean`.
    common_dir: PathBuf,
    /// orch's state folder relative to `root`, left out of every add, status and clean.
    keep_out: Option<String>,
    /// `tree_of_files`' private index and the tree's own index (`git rev-parse --git-path`),
    /// asked once: they do not change while orch runs, and the tree is snapshotted around
    /// every test run.
    index_paths: std::sync::OnceLock<(PathBuf, PathBuf)>,
}

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

/// One entry of `git status`: the two-letter code and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub code: String,
    pub path: String,
}

impl Git {
    /// Opens the repository that contains `dir`.
    pub fn open(dir: &Path) -> Result<Git> {
        let out = duct::cmd("git", ["rev-parse", "--show-toplevel", "--git-common-dir"])
            .dir(dir)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::Usage("git is not installed or not on PATH; orch needs it".into())
                } else {
                    Error::io("running git", e)
                }
            })?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            // A repository owned by another user (a container's or CI's volume): git refuses
            // it, and says how to trust it; "not a git repository" would send the user to
            // `git init` over their own repository.
            if said.contains("dubious ownership") {
                let lines: Vec<&str> = said
                    .lines()
                    .map(|l| l.trim().trim_start_matches("fatal: "))
                    .filter(|l| !l.is_empty())
                    .collect();
                let fix = lines
                    .iter()
                    .find(|l| l.starts_with("git config"))
                    .map(|c| format!("if you trust it, run `{c}`, or run orch as its owner"))
                    .unwrap_or_else(|| lines[1..].join(" "));
                return Err(Error::Usage(format!(
                    "git refuses the repository at {}: {} (it belongs to another user than the \
                     one running orch); {fix}",
                    dir.display(),
                    lines[0]
                )));
            }
            return Err(Error::Usage(format!(
                "{} is not inside a git repository (run `git init` and commit once, or `orch demo` to try orch on a scratch repository)",
                dir.display()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let root = PathBuf::from(lines.next().unwrap_or_default().trim());
        // Relative to `dir` when it is (`.git` from the top, `../../.git` from a subfolder).
        let common = dir.join(lines.next().unwrap_or(".git").trim());
        let common_dir = common.canonicalize().unwrap_or(common);
        let mut git = Git {
            root,
            identity: Vec::new(),
            common_dir,
            keep_out: None,
            index_paths: std::sync::OnceLock::new(),
        };
        let has = |k: &str| {
            git.run(&["config", "--get", k])
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false)
        };
        if !(has("user.name") && has("user.email")) {
            for (k, v) in [
                ("GIT_AUTHOR_NAME", FALLBACK_NAME),
                ("GIT_COMMITTER_NAME", FALLBACK_NAME),
                ("GIT_AUTHOR_EMAIL", FALLBACK_EMAIL),
                ("GIT_COMMITTER_EMAIL", FALLBACK_EMAIL),
            ] {
                git.identity.push((k.into(), v.into()));
            }
        }
        Ok(git)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The common git folder of the repository (the main tree's `.git`, also for a linked
    /// worktree).
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// Leaves `state_dir` (inside the tree) out of every add, status, diff and clean.
    pub fn keep_out(mut self, state_dir: &Path) -> Git {
        if let Ok(rel) = state_dir.strip_prefix(&self.root) {
            let rel = rel.to_string_lossy().trim_end_matches('/').to_string();
            if !rel.is_empty() {
                self.keep_out = Some(rel);
            }
        }
        self
    }

    /// `git ARGS -- . :(exclude)<stateDir>`: `args` limited to everything but the state folder.
    fn run_outside_state(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        let exclude = self
            .keep_out
            .as_ref()
            .map(|rel| format!(":(top,exclude,literal){rel}"));
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--", "."]);
        all.extend(exclude.as_deref());
        self.run_env(&all, env)
    }

    /// `git add -A`, then the state folder taken out of the index again. (`add` with an
    /// exclude pathspec fails when the excluded folder is also ignored, as `.git/info/exclude`
    /// makes it: "The following paths are ignored".)
    pub(crate) fn add_all(&self, env: &[(&str, &str)]) -> Result<()> {
        self.run_env(&["add", "-A"], env)?;
        if let Some(rel) = &self.keep_out {
            self.unstage(&[format!(":(top,literal){rel}")], env)?;
        }
        Ok(())
    }

    /// Runs git in the repository root and returns its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.run_env(args, &[])
    }

    /// Runs git with extra environment variables (a private index: `GIT_INDEX_FILE`).
    pub(crate) fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        self.run_input(args, env, None)
    }

    /// `git rm -r --cached` of `specs` (pathspecs), the files left on disk; a spec that
    /// matches nothing is no error. Forced (`-f`): without it git refuses an entry whose staged
    /// content differs from both the file and HEAD, which is what a file written between the
    /// `add` and this call looks like (the state folder's `tasks.json`, Phase B's worktree
    /// committing beside the tests); only the index is touched, so forcing loses nothing.
    pub(crate) fn unstage(&self, specs: &[String], env: &[(&str, &str)]) -> Result<()> {
        let mut args = vec!["rm", "-r", "-q", "-f", "--cached", "--ignore-unmatch", "--"];
        args.extend(specs.iter().map(String::as_str));
        self.run_env(&args, env).map(drop)
    }

    /// Runs git with `input` on its standard input (path lists, `--index-info`).
    pub(crate) fn run_input(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<String> {
        // Hooks off for everything orch itself runs (see the module comment).
        let mut cmd = std::process::Command::new("git");
        cmd.args(["-c", "core.hooksPath=/dev/null"])
            .args(args)
            .current_dir(&self.root)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.identity {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        // std's `output` reads stdout and stderr in this thread (poll), where duct's capture
        // started a reader thread for each: about 1 ms less per call, and orch makes dozens of
        // git calls a round, most of them between one agent and the next. The input, when
        // there is any, is written from a thread of its own so that git's output cannot fill a
        // pipe while orch is still writing.
        let what = || format!("running git {}", args.join(" "));
        let out = match input {
            None => cmd.output().map_err(|e| Error::io(what(), e))?,
            Some(bytes) => {
                let mut child = cmd.spawn().map_err(|e| Error::io(what(), e))?;
                let mut stdin = child.stdin.take().expect("stdin is piped");
                let bytes = bytes.to_vec();
                let writer = std::thread::spawn(move || {
                    use std::io::Write;
                    // A git that exits early closes the pipe; its status says why.
                    let _ = stdin.write_all(&bytes);
                });
                let out = child.wait_with_output().map_err(|e| Error::io(what(), e))?;
                let _ = writer.join();
                out
            }
        };
        if !out.status.success() {
            return Err(Error::Git {
                command: format!("git {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

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

    /// Adds `/<state_dir>/` to `.git/info/exclude` unless it is there already.
    pub fn exclude(&self, state_dir: &Path) -> Result<()> {
        let path = self.run(&["rev-parse", "--git-path", "info/exclude"])?;
        let path = self.root.join(path.trim());
        let rel = state_dir.strip_prefix(&self.root).unwrap_or(state_dir);
        let line = format!("/{}/", rel.display().to_string().trim_end_matches('/'));
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current.lines().any(|l| l.trim() == line) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("# orch's state folder (added by orch)\n{line}\n"));
        std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Changes to tracked files and untracked files that are not ignored.
    pub fn status(&self) -> Result<Vec<StatusEntry>> {
        let out = self.run_outside_state(
            &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
            &[],
        )?;
        let mut entries = Vec::new();
        let mut fields = out.split('\0').filter(|s| !s.is_empty());
        while let Some(f) = fields.next() {
            if f.len() < 4 {
                continue;
            }
            let code = f[..2].to_string();
            let path = f[3..].to_string();
            // A rename is followed by its source path.
            if code.starts_with('R') || code.starts_with('C') {
                fields.next();
            }
            entries.push(StatusEntry { code, path });
        }
        Ok(entries)
    }

    /// Files that differ between `base` and the working tree, untracked ones included.
    pub fn changed_since(&self, base: &str) -> Result<Vec<String>> {
        let mut files: Vec<String> = self
            .run_outside_state(&["diff", "--name-only", "-z", base], &[])?
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        files.extend(
            self.run_outside_state(&["ls-files", "--others", "--exclude-standard", "-z"], &[])?
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        files.sort();
        files.dedup();
        Ok(files)
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
    fn head_from_files(&self) -> Option<String> {
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

    /// The files that differ between two commits.
    pub fn files_between(&self, a: &str, b: &str) -> Result<Vec<String>> {
        Ok(self
            .run(&["diff", "--name-only", "--no-renames", "-z", a, b])?
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Whether `ancestor` is `commit` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &str, commit: &str) -> Result<bool> {
        match self.run(&["merge-base", "--is-ancestor", ancestor, commit]) {
            Ok(_) => Ok(true),
            Err(Error::Git { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

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
    fn commit_all_with(
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

    /// Keeps the files of `big` (from `oversized`) under `refname` (a commit on HEAD) and
    /// takes them out of the tree, so no commit of orch's holds them.
    pub fn set_aside(&self, big: &[(String, u64)], refname: &str, message: &str) -> Result<()> {
        let paths: Vec<String> = big.iter().map(|(p, _)| p.clone()).collect();
        let head = self.base()?;
        self.save_paths(&head, refname, message, &paths)?;
        self.take_out(&paths)
    }

    /// Saves the working tree as it is (tracked and untracked, not ignored) as a commit whose
    /// parent is `base`, under `refname`, without touching HEAD, the index or the files.
    pub fn save_tree(&self, base: &str, refname: &str, message: &str) -> Result<String> {
        let commit = self.commit_tree(&self.tree_of_files(base)?, base, message)?;
        self.run(&["update-ref", refname, &commit])?;
        Ok(commit)
    }

    /// The working tree as it is (tracked and untracked, not ignored) as a tree object, made
    /// with a private index: a copy of the repository's own (whose file stats let git hash only
    /// what changed), or read from `base` when there is none.
    pub fn tree_of_files(&self, base: &str) -> Result<String> {
        let (index, real) = self.index_paths()?;
        let index_s = index.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", index_s.as_str())];
        let result = (|| {
            if std::fs::copy(&real, &index).is_err() {
                self.run_env(&["read-tree", base], &env)?;
            }
            self.add_all(&env)?;
            let tree = self.run_env(&["write-tree"], &env)?;
            Ok(tree.trim().to_string())
        })();
        let _ = std::fs::remove_file(&index);
        result
    }

    /// The private index of `tree_of_files` and the tree's own index.
    fn index_paths(&self) -> Result<(PathBuf, PathBuf)> {
        if let Some(p) = self.index_paths.get() {
            return Ok(p.clone());
        }
        let paths = self.run(&[
            "rev-parse",
            "--git-path",
            "orch-save.index",
            "--git-path",
            "index",
        ])?;
        let mut paths = paths.lines().map(|p| self.root.join(p.trim()));
        let (Some(index), Some(real)) = (paths.next(), paths.next()) else {
            return Err(Error::Other(
                "git rev-parse --git-path printed nothing".into(),
            ));
        };
        Ok(self.index_paths.get_or_init(|| (index, real)).clone())
    }

    /// Puts the files back as they were in `tree` (a `tree_of_files`), leaving HEAD and the
    /// index as they are: what changed since is undone, what was added since is removed.
    /// Returns the paths it put back (none: nothing had changed).
    pub fn put_files_back(&self, base: &str, tree: &str) -> Result<Vec<String>> {
        let now = self.tree_of_files(base)?;
        if now == tree {
            return Ok(Vec::new());
        }
        let changed: Vec<String> = self
            .run(&["diff", "--name-only", "--no-renames", "-z", tree, &now])?
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let added: Vec<String> = self
            .run(&[
                "diff",
                "--name-only",
                "--no-renames",
                "--diff-filter=A",
                "-z",
                tree,
                &now,
            ])?
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        crate::engine::exec::perms::unlock_for(&self.root, &changed, "putting files back")?;
        // The index as it is now, so that it can be put back after the files are.
        let index_tree = self.run(&["write-tree"]).ok();
        self.run(&["read-tree", "--reset", "-u", tree])?;
        for p in &added {
            let _ = std::fs::remove_file(self.root.join(p));
        }
        match index_tree {
            Some(t) => self.run(&["read-tree", t.trim()])?,
            None => self.run(&["reset", "-q"])?,
        };
        Ok(changed)
    }

    /// Saves the files `paths` as they are in the working tree (deleted ones as deletions) as a
    /// commit on `parent` under `refname`, without touching HEAD, the index or the files: what
    /// one agent of a shared tree wrote, by its own fingerprint.
    pub fn save_paths(
        &self,
        parent: &str,
        refname: &str,
        message: &str,
        paths: &[String],
    ) -> Result<String> {
        let commit = self.commit_paths(parent, message, paths)?;
        self.run(&["update-ref", refname, &commit])?;
        Ok(commit)
    }

    /// Puts `paths` back as they are in HEAD: tracked ones checked out, new ones removed.
    pub fn take_out(&self, paths: &[String]) -> Result<()> {
        crate::engine::exec::perms::unlock_for(&self.root, paths, "taking files out of the tree")?;
        for chunk in paths.chunks(500) {
            let mut args = vec![
                "ls-tree".to_string(),
                "-r".into(),
                "-z".into(),
                "--name-only".into(),
                "HEAD".into(),
                "--".into(),
            ];
            args.extend(chunk.iter().map(|p| format!(":(literal){p}")));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let tracked: Vec<String> = self
                .run(&a)?
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if !tracked.is_empty() {
                let mut args = vec![
                    "checkout".to_string(),
                    "-q".into(),
                    "HEAD".into(),
                    "--".into(),
                ];
                args.extend(tracked.iter().map(|p| format!(":(literal){p}")));
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                self.run(&a)?;
            }
            for p in chunk.iter().filter(|p| !tracked.contains(p)) {
                let full = self.root.join(p);
                match std::fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full),
                    Ok(_) => std::fs::remove_file(&full),
                    Err(_) => Ok(()),
                }
                .map_err(|e| Error::io(format!("taking out {}", full.display()), e))?;
            }
        }
        Ok(())
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

    /// A handle on another working tree of the same repository (a linked worktree), with the
    /// same commit identity.
    pub fn at(&self, dir: &Path) -> Git {
        Git {
            root: dir.to_path_buf(),
            identity: self.identity.clone(),
            common_dir: self.common_dir.clone(),
            keep_out: None,
            index_paths: std::sync::OnceLock::new(),
        }
    }

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
                    crate::engine::git::nested::init_submodules(&wt, &self.root)?;
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
        crate::engine::git::nested::init_submodules(&wt, &self.root)?;
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

    /// The files of a folder whose git link cannot be trusted (a worktree whose `.git` an
    /// agent deleted), as a commit on `parent` under `refname`: hashed by this repository
    /// with the folder as its work tree and a private index, so no git call follows the
    /// folder's own `.git`.
    pub fn save_folder(
        &self,
        dir: &Path,
        parent: &str,
        refname: &str,
        message: &str,
    ) -> Result<String> {
        // One index per call: several workers may keep broken worktrees at once.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let index = self
            .common_dir
            .join(format!("orch-folder-{}-{n}.index", std::process::id()));
        let index_s = index.to_string_lossy().into_owned();
        let work = format!("--work-tree={}", dir.display());
        let env = [("GIT_INDEX_FILE", index_s.as_str())];
        let result = (|| {
            self.run_env(&["read-tree", parent], &env)?;
            self.run_env(&[&work, "add", "-A"], &env)?;
            let tree = self.run_env(&["write-tree"], &env)?;
            let commit = self.commit_tree(tree.trim(), parent, message)?;
            self.run(&["update-ref", refname, &commit])?;
            Ok(commit)
        })();
        let _ = std::fs::remove_file(&index);
        result
    }

    /// A commit on `parent` under `refname` whose tree is `parent`'s with each of `folders`
    /// (repositories inside this tree: a submodule, a repository an agent made) replaced by
    /// the folder's files as plain files, hashed with the folder as the work tree and private
    /// indexes, so the folder's own `.git` is neither followed nor recorded as a gitlink.
    pub fn save_folders_as_files(
        &self,
        parent: &str,
        refname: &str,
        message: &str,
        folders: &[String],
    ) -> Result<String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let index = self.common_dir.join(format!("orch-nested-{pid}-{n}.index"));
        let scratch = self
            .common_dir
            .join(format!("orch-nested-{pid}-{n}.files.index"));
        let index_s = index.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", index_s.as_str())];
        let result = (|| {
            self.run_env(&["read-tree", parent], &env)?;
            for folder in folders {
                self.unstage(&[format!(":(literal){folder}")], &env)?;
                let tree = self.folder_tree(&self.root.join(folder), &scratch)?;
                let prefix = format!("--prefix={folder}/");
                self.run_env(&["read-tree", &prefix, tree.trim()], &env)?;
            }
            let tree = self.run_env(&["write-tree"], &env)?;
            let commit = self.commit_tree(tree.trim(), parent, message)?;
            self.run(&["update-ref", refname, &commit])?;
            Ok(commit)
        })();
        let _ = std::fs::remove_file(&index);
        let _ = std::fs::remove_file(&scratch);
        result
    }

    /// The files of the folder `dir` as a tree object, its own `.git` left out and each
    /// repository inside it (a submodule of a submodule, a repository with no commit yet) taken
    /// in as plain files too, level by level, with the private index `scratch` (one per level).
    fn folder_tree(&self, dir: &Path, scratch: &Path) -> Result<String> {
        let inner = crate::engine::git::nested::repositories_under(dir);
        let _ = std::fs::remove_file(scratch);
        let scratch_s = scratch.to_string_lossy().into_owned();
        let files = [("GIT_INDEX_FILE", scratch_s.as_str())];
        let work = format!("--work-tree={}", dir.display());
        let result = (|| {
            let mut args = vec![
                work.clone(),
                "add".into(),
                "-A".into(),
                "--".into(),
                ".".into(),
            ];
            args.extend(inner.iter().map(|p| format!(":(exclude,literal){p}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.run_env(&args, &files)?;
            for p in &inner {
                let deeper = scratch.with_extension("sub.index");
                let sub = self.folder_tree(&dir.join(p), &deeper)?;
                let prefix = format!("--prefix={p}/");
                self.run_env(&["read-tree", &prefix, &sub], &files)?;
            }
            Ok(self.run_env(&["write-tree"], &files)?.trim().to_string())
        })();
        let _ = std::fs::remove_file(scratch);
        result
    }

    /// Drops the metadata of worktrees whose folders are gone.
    pub fn prune_worktrees(&self) -> Result<()> {
        self.run(&["worktree", "prune"]).map(|_| ())
    }

    /// A commit of `tree` on `parent` made without touching HEAD (for the refs that keep work).
    /// Signed when the user's config asks and it works; should signing fail here (a key that
    /// went away mid-run), unsigned: keeping the work matters more than its signature.
    fn commit_tree(&self, tree: &str, parent: &str, message: &str) -> Result<String> {
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
        let argv: Vec<&str> = ["-c", "core.hooksPath=/dev/null"]
            .into_iter()
            .chain(args)
            .collect();
        let out = duct::cmd("git", argv)
            .dir(&self.root)
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|e| Error::io("running git merge-tree", e))?;
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

    /// A commit of `tree` on `parent` (not on any branch, no ref): the snapshot a worktree is
    /// made from.
    pub fn commit_of_tree(&self, tree: &str, parent: &str, message: &str) -> Result<String> {
        self.commit_tree(tree, parent, message)
    }

    /// The files `paths` as they are in the working tree (deleted ones as deletions) as a
    /// commit on `parent`, without a ref and without touching HEAD, the index or the files.
    pub fn commit_paths(&self, parent: &str, message: &str, paths: &[String]) -> Result<String> {
        self.commit_paths_tree(parent, message, paths)
            .map(|(c, _)| c)
    }

    /// `commit_paths`, with the commit's tree: (commit, tree).
    pub fn commit_paths_tree(
        &self,
        parent: &str,
        message: &str,
        paths: &[String],
    ) -> Result<(String, String)> {
        let index = self
            .run(&["rev-parse", "--git-path", "orch-paths.index"])
            .map(|p| self.root.join(p.trim()))?;
        let index_s = index.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", index_s.as_str())];
        let result = (|| {
            self.run_env(&["read-tree", parent], &env)?;
            // A path that is in the tree is added as it is; one that is not (deleted, or already
            // taken out by orch while a later run's fingerprint still named it) is removed from
            // the index if `parent` has it: `add` refuses a path that matches nothing at all,
            // which failed the whole commit and left a failed run's files in the tree.
            let (present, absent): (Vec<&String>, Vec<&String>) = paths.iter().partition(|p| {
                std::fs::symlink_metadata(self.root.join(p.trim_end_matches('/'))).is_ok()
            });
            for chunk in present.chunks(500) {
                let mut args = vec!["add".to_string(), "-A".into(), "--".into()];
                args.extend(chunk.iter().map(|p| format!(":(literal){p}")));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.run_env(&args, &env)?;
            }
            let specs: Vec<String> = absent.iter().map(|p| format!(":(literal){p}")).collect();
            for chunk in specs.chunks(500) {
                self.unstage(chunk, &env)?;
            }
            let tree = self.run_env(&["write-tree"], &env)?;
            let tree = tree.trim().to_string();
            Ok((self.commit_tree(&tree, parent, message)?, tree))
        })();
        let _ = std::fs::remove_file(&index);
        result
    }
}

/// The first ten digits of a commit id, for messages.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}

/// git's message on one line, bounded: the lines that say what went wrong (`error:`/`fatal:`
/// first), joined.
pub fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = lines.join(" ");
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The git folder a linked worktree's `.git` file points to (`gitdir: PATH`).
fn linked_git_dir(worktree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let dir = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
    Some(if dir.is_absolute() {
        dir
    } else {
        worktree.join(dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, Git) {
        let d = tempfile::tempdir().unwrap();
        let sh = |c: &str| {
            assert!(std::process::Command::new("sh")
                .args(["-c", c])
                .current_dir(d.path())
                .status()
                .unwrap()
                .success())
        };
        sh("git init -q && echo a > a.txt && git add a.txt && git -c user.name=t -c user.email=t@t commit -qm init");
        let g = Git::open(d.path()).unwrap();
        (d, g)
    }

    #[test]
    fn save_tree_keeps_untracked_files_and_restore_is_exact() {
        let (d, g) = repo();
        let base = g.base().unwrap();
        g.exclude(&d.path().join(".orch")).unwrap();
        std::fs::create_dir_all(d.path().join(".orch")).unwrap();
        std::fs::write(d.path().join(".orch/state.json"), "{}").unwrap();
        std::fs::write(d.path().join("a.txt"), "changed").unwrap();
        std::fs::write(d.path().join("new.txt"), "new").unwrap();
        let saved = g
            .save_tree(&base, "refs/orch/rejected/round-1", "r1")
            .unwrap();
        let files = g.run(&["ls-tree", "-r", "--name-only", &saved]).unwrap();
        assert!(
            files.contains("new.txt") && !files.contains(".orch"),
            "{files}"
        );
        g.restore(&base).unwrap();
        assert!(g.status().unwrap().is_empty());
        assert!(!d.path().join("new.txt").exists());
        assert!(d.path().join(".orch/state.json").exists(), "state survives");
        assert_eq!(g.head().unwrap().unwrap(), base);
    }

    /// A failed run's fingerprint can name a path that is in neither the tree nor the parent
    /// (another failed run's file orch took out meanwhile): keeping its files must not fail on
    /// it (it did: `git add` refused the unmatched path, and the run's files stayed in the tree
    /// to be committed with the next agent's).
    #[test]
    fn keeping_paths_skips_one_that_is_nowhere_and_records_a_deletion() {
        let (d, g) = repo();
        let base = g.base().unwrap();
        std::fs::write(d.path().join("new.txt"), "new\n").unwrap();
        std::fs::remove_file(d.path().join("a.txt")).unwrap();
        let paths = ["new.txt", "gone-everywhere.txt", "a.txt"].map(String::from);
        let kept = g
            .save_paths(&base, "refs/orch/failed/round-1/x", "m", &paths)
            .unwrap();
        let files = g.run(&["ls-tree", "-r", "--name-only", &kept]).unwrap();
        assert_eq!(files.trim(), "new.txt", "a.txt deleted, new.txt added");
        g.take_out(&paths).unwrap();
        assert!(g.status().unwrap().is_empty());
    }

    #[test]
    fn a_commit_tried_first_still_says_when_there_was_nothing_to_commit() {
        let (d, g) = repo();
        let g = g.keep_out(&d.path().join(".orch"));
        g.exclude(&d.path().join(".orch")).unwrap();
        let base = g.base().unwrap();
        // Nothing changed (orch's own folder does not count): no commit, HEAD where it was.
        std::fs::create_dir_all(d.path().join(".orch")).unwrap();
        std::fs::write(d.path().join(".orch/state.json"), "{}").unwrap();
        assert_eq!(g.commit_changes("m").unwrap(), None);
        assert_eq!(g.commit_agent_change("m").unwrap(), None);
        assert_eq!(g.commit_all("m").unwrap(), None);
        assert_eq!(g.base().unwrap(), base);
        // A change: committed, and the new HEAD (read from the files) returned.
        std::fs::write(d.path().join("b.txt"), "b\n").unwrap();
        let made = g.commit_changes("m").unwrap().expect("a commit");
        assert_ne!(made, base);
        assert_eq!(g.head().unwrap().as_deref(), Some(made.as_str()));
        assert_eq!(g.files_between(&base, &made).unwrap(), ["b.txt"]);
    }

    #[test]
    fn a_tree_snapshot_against_the_base_names_both_paths_of_a_rename() {
        // The round takes what changed from its snapshot of the tree (`tree_of_files`): a
        // moved file is its old path and its new one, as the deleted and the untracked file
        // were when this came from `git diff` and `git ls-files --others`.
        let (d, g) = repo();
        let g = g.keep_out(&d.path().join(".orch"));
        g.exclude(&d.path().join(".orch")).unwrap();
        let base = g.base().unwrap();
        std::fs::rename(d.path().join("a.txt"), d.path().join("moved.txt")).unwrap();
        std::fs::create_dir_all(d.path().join(".orch")).unwrap();
        std::fs::write(d.path().join(".orch/x"), "x").unwrap();
        let tree = g.tree_of_files(&base).unwrap();
        assert_eq!(
            g.files_between(&base, &tree).unwrap(),
            ["a.txt", "moved.txt"]
        );
        let mut old = g.changed_since(&base).unwrap();
        old.sort();
        assert_eq!(old, ["a.txt", "moved.txt"]);
        // Asked twice (the second from the remembered index paths): the same tree.
        assert_eq!(g.tree_of_files(&base).unwrap(), tree);
    }

    #[test]
    fn worktrees_made_at_once_by_several_threads_all_work() {
        // Before worktree creation was serialized, one thread's `worktree prune` beside another's
        // `worktree add` made this fail in two runs of three ("could not open
        // .git/worktrees/X/locked").
        let (d, g) = repo();
        let base = g.base().unwrap();
        for attempt in 0..3 {
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let (g, base) = (&g, &base);
                        let p = d.path().join(format!(".orch/wt-{attempt}-{i}"));
                        s.spawn(move || g.prepare_worktree(&p, base).map(|_| ()))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in results {
                r.unwrap();
            }
        }
    }

    #[test]
    fn a_worktree_is_reused_clean_and_made_again_when_its_metadata_is_gone() {
        let (d, g) = repo();
        g.exclude(&d.path().join(".orch")).unwrap();
        let base = g.base().unwrap();
        let p = d.path().join(".orch/worktrees/a");
        let wt = g.prepare_worktree(&p, &base).unwrap();
        std::fs::write(p.join("a.txt"), "changed").unwrap();
        std::fs::write(p.join("new.txt"), "untracked").unwrap();
        // Reused: reset and cleaned.
        let wt2 = g.prepare_worktree(&p, &base).unwrap();
        assert!(wt2.status().unwrap().is_empty());
        assert!(!p.join("new.txt").exists());
        assert_eq!(wt.head().unwrap().unwrap(), base);
        // An agent that checked out a branch of its own and committed there: the next round
        // starts detached at the base, and the branch keeps the agent's commit.
        wt.run(&["checkout", "-q", "-b", "agent-branch"]).unwrap();
        std::fs::write(p.join("a.txt"), "on the branch").unwrap();
        let on_branch = wt.commit_all("agent").unwrap().unwrap();
        let wt2 = g.prepare_worktree(&p, &base).unwrap();
        assert_eq!(wt2.head_fast().unwrap(), base);
        assert_eq!(wt2.head_moved_from(&base), None);
        assert_eq!(
            g.run(&["rev-parse", "agent-branch"]).unwrap().trim(),
            on_branch
        );
        // Its metadata deleted under it (a `git worktree prune` by hand, a copied repository):
        // made again instead of failing the agent.
        std::fs::remove_dir_all(d.path().join(".git/worktrees")).unwrap();
        std::fs::write(p.join("new.txt"), "untracked").unwrap();
        let wt3 = g.prepare_worktree(&p, &base).unwrap();
        assert_eq!(wt3.head().unwrap().unwrap(), base);
        assert!(wt3.status().unwrap().is_empty());
    }

    #[test]
    fn state_folder_never_dirties_the_tree() {
        let (d, g) = repo();
        g.exclude(&d.path().join(".orch")).unwrap();
        g.exclude(&d.path().join(".orch")).unwrap();
        std::fs::create_dir_all(d.path().join(".orch/rounds")).unwrap();
        std::fs::write(d.path().join(".orch/rounds/x.json"), "{}").unwrap();
        assert!(g.status().unwrap().is_empty());
        let ex = std::fs::read_to_string(d.path().join(".git/info/exclude")).unwrap();
        assert_eq!(ex.matches("/.orch/").count(), 1);
    }
}
