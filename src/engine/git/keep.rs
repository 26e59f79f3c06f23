//! Policy: nothing an agent wrote is destroyed. Its files are saved as commits under
//! `refs/orch/...` with private indexes (neither HEAD, nor the user's index, nor the files
//! move): the whole tree, some paths (one agent of a shared tree), a folder whose git link
//! cannot be trusted, repositories inside the tree as plain files; and then taken out of the
//! tree or put back as a saved tree had them.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::nested;
use super::parse::nul_list;
use super::run::Git;

impl Git {
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
    pub(super) fn index_paths(&self) -> Result<(PathBuf, PathBuf)> {
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
        let changed =
            nul_list(&self.run(&["diff", "--name-only", "--no-renames", "-z", tree, &now])?);
        let added = nul_list(&self.run(&[
            "diff",
            "--name-only",
            "--no-renames",
            "--diff-filter=A",
            "-z",
            tree,
            &now,
        ])?);
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
            let tracked = nul_list(&self.run(&a)?);
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
    pub(super) fn folder_tree(&self, dir: &Path, scratch: &Path) -> Result<String> {
        let inner = nested::repositories_under(dir);
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
}
