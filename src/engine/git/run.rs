//! Plumbing: the `Git` handle on one working tree and the one place orch runs git for it. A
//! call gets the tree as its folder, orch's commit identity when git has none, the hooks off
//! (`core.hooksPath=/dev/null`, see the module comment of `git`), no terminal on its input, and
//! its output captured; a failure is `Error::Git` with the command and git's stderr. The state
//! folder is kept out here too (`run_outside_state`, `add_all`, `exclude`), because every
//! command that walks the tree must carry that pathspec. What orch does with git is in the
//! files beside this one, each an `impl Git` of its own concern.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::noexec::{self, Listing, NoExec};
use super::parse::linked_git_dir;

/// The author orch commits as when git has no identity configured.
const FALLBACK_NAME: &str = "orch";
const FALLBACK_EMAIL: &str = "orch@localhost";

#[derive(Debug, Clone)]
pub struct Git {
    pub(super) root: PathBuf,
    /// Environment for commits when the user has no git identity.
    pub(super) identity: Vec<(String, String)>,
    /// The repository's common git folder (`git rev-parse --git-common-dir`, absolute): shared
    /// by the main tree and every linked worktree, out of reach of `git clean`.
    pub(super) common_dir: PathBuf,
    /// orch's state folder relative to `root`, left out of every add, status and clean.
    pub(super) keep_out: Option<String>,
    /// `tree_of_files`' private index and the tree's own index (`git rev-parse --git-path`),
    /// asked once: they do not change while orch runs, and the tree is snapshotted around
    /// every test run.
    pub(super) index_paths: std::sync::OnceLock<(PathBuf, PathBuf)>,
    /// The settings that keep this tree's git calls from running a program from the config.
    pub(super) noexec: Arc<NoExec>,
}

impl Git {
    /// Opens the repository that contains `dir`.
    pub fn open(dir: &Path) -> Result<Git> {
        let out = command(
            dir,
            &[],
            &["rev-parse", "--show-toplevel", "--git-common-dir"],
        )
        .output()
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
        // The config as it is before any agent ran: the user's (see `noexec`).
        let trusted = command(&root, &[], &["config", "-z", "--list", "--show-origin"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| Listing::parse(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default();
        let noexec = NoExec::new(Arc::new(trusted), &root, &common_dir, &own_git_dir(&root));
        let mut git = Git {
            root,
            identity: Vec::new(),
            common_dir,
            keep_out: None,
            index_paths: std::sync::OnceLock::new(),
            noexec: Arc::new(noexec),
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
    pub(super) fn run_outside_state(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
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

    /// `git ARGS` in this tree with orch's identity when git has none: the command every
    /// method of `Git` runs (`command`).
    fn command(&self, args: &[&str]) -> std::process::Command {
        let settings = self.noexec.settings(|| {
            command(
                &self.root,
                &[],
                &["config", "-z", "--list", "--show-origin"],
            )
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        });
        let mut cmd = command(&self.root, &settings, args);
        for (k, v) in &self.identity {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs git and returns its output whatever its exit status: for a command whose status is
    /// an answer (`merge-tree`: 1 is a conflict). Only a git that cannot start is an error.
    pub(super) fn run_status(&self, args: &[&str]) -> Result<std::process::Output> {
        self.command(args)
            .output()
            .map_err(|e| Error::io(format!("running git {}", args[0]), e))
    }

    /// Runs git with `input` on its standard input (path lists, `--index-info`).
    pub(crate) fn run_input(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<String> {
        let mut cmd = self.command(args);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
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

    /// A handle on another working tree of the same repository (a linked worktree), with the
    /// same commit identity.
    pub fn at(&self, dir: &Path) -> Git {
        let noexec = NoExec::new(
            self.noexec.trusted(),
            dir,
            &self.common_dir,
            &own_git_dir(dir),
        );
        Git {
            root: dir.to_path_buf(),
            identity: self.identity.clone(),
            common_dir: self.common_dir.clone(),
            keep_out: None,
            index_paths: std::sync::OnceLock::new(),
            noexec: Arc::new(noexec),
        }
    }
}

/// The one builder of every git command orch runs itself: `git ARGS` in `dir` with the
/// repository's hooks and everything else in its config that could run a program turned off
/// (`noexec::FIXED` and `settings`, see the module comment of `git`), no input, its output
/// captured.
pub(super) fn command(
    dir: &Path,
    settings: &[(String, String)],
    args: &[&str],
) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    noexec::apply(&mut cmd, settings);
    cmd
}

/// The git folder of the tree at `root`: a linked worktree's own, else `root/.git`.
fn own_git_dir(root: &Path) -> PathBuf {
    linked_git_dir(root).unwrap_or_else(|| root.join(".git"))
}
