//! Policy: the repository's own git settings guarded around an agent (issue 30, without a
//! sandbox). An agent can write the common git folder from any worktree: a `core.fsmonitor` or
//! a filter in `config`, a hook in `hooks/`, an attribute in `info/`, which the user's next git
//! command would run. [`Guard::take`] copies `config`, `hooks/` and `info/` (contents, modes,
//! symbolic links) before the agent; [`Guard::changes`] compares after it; [`Guard::put_back`]
//! writes back what was there and moves what the agent wrote into a folder the caller names
//! (under the state folder), so the change is undone, kept and can be reported.
//!
//! The round (`engine::round::guard`) takes them before its first pool, compares as each run
//! is settled, and puts a change back into `<stateDir>/logs/round-NNNN/git-settings/AGENT/`,
//! naming the agent and the ones still running beside it (in a shared tree or with worktrees
//! run at once, a change is not the work of one agent for sure).
//!
//! A `config` that only gained the submodule sections orch's own worktree preparation
//! registers (`url`, `active`) is not a change.
//!
//! The folders are small (hooks' samples, `info/exclude`), read whole: a few hundred
//! microseconds. Only the common folder's files are guarded; a worktree's own `config.worktree`
//! is not (git reads it only with `extensions.worktreeConfig`, which lives in `config`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What is guarded, relative to the common git folder.
const GUARDED: &[&str] = &["config", "hooks", "info"];

/// One entry as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { bytes: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Link(PathBuf),
}

/// How a guarded path changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(PathBuf),
    Removed(PathBuf),
    Modified(PathBuf),
}

impl Change {
    /// The path, relative to the common git folder.
    pub fn path(&self) -> &Path {
        match self {
            Change::Added(p) | Change::Removed(p) | Change::Modified(p) => p,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, p) = match self {
            Change::Added(p) => ("added", p),
            Change::Removed(p) => ("removed", p),
            Change::Modified(p) => ("changed", p),
        };
        write!(f, "{what} .git/{}", p.display())
    }
}

/// The guarded files of one repository as they were at `take`.
#[derive(Debug, Clone)]
pub struct Guard {
    common: PathBuf,
    was: BTreeMap<PathBuf, Entry>,
}

impl Guard {
    /// Copies `config`, `hooks/` and `info/` of the common git folder `common`.
    pub fn take(common: &Path) -> Result<Guard> {
        Ok(Guard {
            common: common.to_path_buf(),
            was: read_all(common)?,
        })
    }

    /// What changed since `take`, in path order.
    pub fn changes(&self) -> Result<Vec<Change>> {
        let now = read_all(&self.common)?;
        let mut out = Vec::new();
        for (p, e) in &self.was {
            match now.get(p) {
                None => out.push(Change::Removed(p.clone())),
                Some(n) if n != e && !submodules_registered(p, e, n) => {
                    out.push(Change::Modified(p.clone()))
                }
                Some(_) => {}
            }
        }
        for p in now.keys().filter(|p| !self.was.contains_key(*p)) {
            out.push(Change::Added(p.clone()));
        }
        out.sort_by(|a, b| a.path().cmp(b.path()));
        Ok(out)
    }

    /// Undoes `changes`: each path back as it was at `take`, and what the agent left at a
    /// changed or added path moved to the same path under `keep` (made as needed). A file is
    /// put back by a rename of a full copy, so git never reads half a config.
    pub fn put_back(&self, changes: &[Change], keep: &Path) -> Result<()> {
        // Kept first, deepest first, so that an added folder is emptied before it goes.
        let mut gone: Vec<&Change> = changes
            .iter()
            .filter(|c| !matches!(c, Change::Removed(_)))
            .collect();
        gone.sort_by(|a, b| b.path().cmp(a.path()));
        for c in gone {
            let at = self.common.join(c.path());
            let meta = match std::fs::symlink_metadata(&at) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.is_dir() {
                // An added folder: its entries were kept on their own (they are changes too).
                if matches!(c, Change::Added(_)) {
                    let _ = std::fs::remove_dir(&at);
                }
                continue;
            }
            let to = keep.join(c.path());
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
            move_file(&at, &to)?;
        }
        // Then what was there, shallowest first (a folder before its files).
        let mut back: Vec<&Change> = changes
            .iter()
            .filter(|c| !matches!(c, Change::Added(_)))
            .collect();
        back.sort_by(|a, b| a.path().cmp(b.path()));
        for c in back {
            let Some(entry) = self.was.get(c.path()) else {
                continue;
            };
            write_entry(&self.common.join(c.path()), entry)?;
        }
        Ok(())
    }
}

/// Whether `config` went from `was` to `now` only by submodules registered: what orch's own
/// `submodule update --init` writes when it prepares a worktree (a `[submodule "NAME"]`
/// section with its `url` and `active`). Every line that was there is still there, in order,
/// and each added line is such a header or key; nothing else (an `update = !command` among
/// them) passes.
fn submodules_registered(path: &Path, was: &Entry, now: &Entry) -> bool {
    let (Entry::File { bytes: was, .. }, Entry::File { bytes: now, .. }) = (was, now) else {
        return false;
    };
    if path != Path::new("config") {
        return false;
    }
    let (was, now) = (String::from_utf8_lossy(was), String::from_utf8_lossy(now));
    let mut old = was.lines().peekable();
    for line in now.lines() {
        if old.peek() == Some(&line) {
            old.next();
            continue;
        }
        let l = line.trim();
        let header = l.starts_with("[submodule \"") && l.ends_with("\"]");
        let key = l
            .split_once('=')
            .is_some_and(|(k, _)| matches!(k.trim(), "url" | "active"));
        if !header && !key {
            return false;
        }
    }
    old.peek().is_none()
}

/// Moves `from` to `to` (a rename, else a copy and a removal: `keep` may be on another disk).
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let what = || format!("keeping {} in {}", from.display(), to.display());
    let meta = std::fs::symlink_metadata(from).map_err(|e| Error::io(what(), e))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io(what(), e))?;
        std::os::unix::fs::symlink(target, to).map_err(|e| Error::io(what(), e))?;
    } else {
        std::fs::copy(from, to).map_err(|e| Error::io(what(), e))?;
    }
    std::fs::remove_file(from).map_err(|e| Error::io(what(), e))
}

/// Puts `entry` at `at`, whatever is there now.
fn write_entry(at: &Path, entry: &Entry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let what = || format!("putting back {}", at.display());
    if let Ok(m) = std::fs::symlink_metadata(at) {
        let removed = if m.is_dir() && !matches!(entry, Entry::Dir { .. }) {
            std::fs::remove_dir_all(at)
        } else if !m.is_dir() && matches!(entry, Entry::Dir { .. }) {
            std::fs::remove_file(at)
        } else {
            Ok(())
        };
        removed.map_err(|e| Error::io(what(), e))?;
    }
    match entry {
        Entry::Dir { mode } => {
            std::fs::create_dir_all(at).map_err(|e| Error::io(what(), e))?;
            std::fs::set_permissions(at, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| Error::io(what(), e))
        }
        Entry::File { bytes, mode } => {
            let mut tmp = at.as_os_str().to_owned();
            tmp.push(".orch-guard");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, bytes).map_err(|e| Error::io(what(), e))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| Error::io(what(), e))?;
            std::fs::rename(&tmp, at).map_err(|e| Error::io(what(), e))
        }
        Entry::Link(target) => {
            let _ = std::fs::remove_file(at);
            std::os::unix::fs::symlink(target, at).map_err(|e| Error::io(what(), e))
        }
    }
}

/// Every guarded entry under `common`, by path relative to it (folders walked, links not
/// followed).
fn read_all(common: &Path) -> Result<BTreeMap<PathBuf, Entry>> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<PathBuf> = GUARDED.iter().map(PathBuf::from).collect();
    while let Some(rel) = todo.pop() {
        let at = common.join(&rel);
        let what = || format!("reading {}", at.display());
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(what(), e)),
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        let entry = if meta.file_type().is_symlink() {
            Entry::Link(std::fs::read_link(&at).map_err(|e| Error::io(what(), e))?)
        } else if meta.is_dir() {
            for e in std::fs::read_dir(&at).map_err(|e| Error::io(what(), e))? {
                let e = e.map_err(|e| Error::io(what(), e))?;
                todo.push(rel.join(e.file_name()));
            }
            Entry::Dir { mode }
        } else {
            let bytes = std::fs::read(&at).map_err(|e| Error::io(what(), e))?;
            Entry::File { bytes, mode }
        };
        out.insert(rel, entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch repository; returns it and its common git folder.
    fn repo() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(d.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let common = d.path().join(".git");
        (d, common)
    }

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn submodules_registered_by_orch_are_no_change_but_an_update_command_is() {
        let (_d, common) = repo();
        let g = Guard::take(&common).unwrap();
        let config = common.join("config");
        let was = std::fs::read_to_string(&config).unwrap();
        let registered = format!("{was}[submodule \"lib\"]\n\tactive = true\n\turl = /src/lib\n");
        std::fs::write(&config, &registered).unwrap();
        assert_eq!(g.changes().unwrap(), vec![]);
        std::fs::write(&config, format!("{registered}\tupdate = !touch /tmp/x\n")).unwrap();
        assert_eq!(
            g.changes().unwrap(),
            vec![Change::Modified(PathBuf::from("config"))]
        );
    }

    #[test]
    fn nothing_changed_is_no_change() {
        let (_d, common) = repo();
        let g = Guard::take(&common).unwrap();
        assert_eq!(g.changes().unwrap(), []);
    }

    #[test]
    fn a_planted_config_setting_is_put_back_and_kept() {
        let (d, common) = repo();
        let before = std::fs::read(common.join("config")).unwrap();
        let g = Guard::take(&common).unwrap();
        git(
            d.path(),
            &["config", "core.fsmonitor", "touch pwned; false"],
        );
        let changes = g.changes().unwrap();
        assert_eq!(changes, [Change::Modified("config".into())]);
        assert_eq!(changes[0].to_string(), "changed .git/config");
        let keep = d.path().join("kept");
        g.put_back(&changes, &keep).unwrap();
        assert_eq!(std::fs::read(common.join("config")).unwrap(), before);
        let kept = std::fs::read_to_string(keep.join("config")).unwrap();
        assert!(
            kept.contains("fsmonitor = \"touch pwned; false\""),
            "{kept}"
        );
        assert_eq!(g.changes().unwrap(), []);
    }

    #[test]
    fn an_added_hook_is_taken_out_and_a_removed_file_comes_back() {
        use std::os::unix::fs::PermissionsExt;
        let (d, common) = repo();
        std::fs::create_dir_all(common.join("info")).unwrap();
        std::fs::write(common.join("info/exclude"), "/.orch/\n").unwrap();
        let g = Guard::take(&common).unwrap();
        let hook = common.join("hooks/post-commit");
        std::fs::write(&hook, "#!/bin/sh\ntouch pwned\n").unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(common.join("hooks/lib")).unwrap();
        std::fs::write(common.join("hooks/lib/x.sh"), "x").unwrap();
        std::fs::remove_file(common.join("info/exclude")).unwrap();
        let changes = g.changes().unwrap();
        let paths: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            paths,
            [
                "added .git/hooks/lib",
                "added .git/hooks/lib/x.sh",
                "added .git/hooks/post-commit",
                "removed .git/info/exclude"
            ]
        );
        let keep = d.path().join("kept");
        g.put_back(&changes, &keep).unwrap();
        assert!(!hook.exists() && !common.join("hooks/lib").exists());
        let kept = keep.join("hooks/post-commit");
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            "#!/bin/sh\ntouch pwned\n"
        );
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_to_string(keep.join("hooks/lib/x.sh")).unwrap(),
            "x"
        );
        assert_eq!(
            std::fs::read_to_string(common.join("info/exclude")).unwrap(),
            "/.orch/\n"
        );
        assert_eq!(g.changes().unwrap(), []);
    }

    #[test]
    fn a_config_changed_from_a_linked_worktree_is_seen_in_the_common_folder() {
        let (d, common) = repo();
        git(
            d.path(),
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "init",
            ],
        );
        let wt = d.path().join("wt");
        git(
            d.path(),
            &["worktree", "add", "-q", "--detach", wt.to_str().unwrap()],
        );
        let g = Guard::take(&common).unwrap();
        git(&wt, &["config", "filter.x.clean", "touch pwned"]);
        assert_eq!(g.changes().unwrap(), [Change::Modified("config".into())]);
    }
}
