//! The write bits orch needs on folders an agent made read-only (`chmod a-w dir`).
//!
//! Creating, replacing or removing a file needs write (and search) permission on its folder,
//! for git's `checkout`, `reset --hard` and `clean` as for orch's own removals. As a non-root
//! user, a folder an agent left read-only would make every later reset of its worktree fail, or
//! a revert of the shared tree stop half-way. So before orch resets or removes a tree of its own
//! (a worktree) it gives its owner back `rwx` on every folder in it; in the user's main tree it
//! does so only on the folders that hold what is being put back (the agents' change), never on
//! the user's other folders. A folder orch cannot make writable (not its owner's) is named in a
//! typed error ([`Error::Unwritable`]) before git half-does anything.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The owner's read, write and search bits.
const OWNER_RWX: u32 = 0o700;

/// Gives the owner `rwx` back on `dir` when it lacks one of them and orch's user owns it.
/// `Ok(false)`: nothing was needed; `Ok(true)`: the bits were added.
fn unlock_dir(dir: &Path, meta: &std::fs::Metadata) -> std::io::Result<bool> {
    let mode = meta.permissions().mode();
    if mode & OWNER_RWX == OWNER_RWX || meta.uid() != effective_uid() {
        return Ok(false);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | OWNER_RWX))?;
    Ok(true)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Every folder under `root` (itself included, symlinks not followed) that orch's user owns
/// gets `rwx` back for its owner: orch's own worktree, or a folder orch is about to remove.
/// Best effort: what it cannot change, the git call or removal that follows reports.
pub fn unlock_tree(root: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    if let Err(e) = unlock_dir(root, &meta) {
        log::debug!("cannot make {} writable: {e}", root.display());
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            unlock_tree(&entry.path());
        }
    }
}

/// Makes writable, in the tree at `root`, the folders that hold `paths` (relative to `root`:
/// the files a revert or a take-out is about to put back) and the folders among them: the
/// folders between `root` and each path, `root` excluded. A folder that stays unwritable (not
/// orch's user's, so its mode cannot be changed) is an [`Error::Unwritable`] naming it, before
/// anything is written.
pub fn unlock_for(root: &Path, paths: &[String], doing: &str) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for p in paths {
        let p = p.trim_end_matches('/');
        let full = root.join(p);
        let mut dirs: Vec<PathBuf> = full
            .ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(root) && *d != root)
            .map(Path::to_path_buf)
            .collect();
        if std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir()) {
            // A folder of the change (a new one, or a repository folder): all of it goes.
            unlock_tree(&full);
        }
        dirs.reverse();
        for d in dirs {
            if !seen.insert(d.clone()) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&d) else {
                // Not there (the change deleted it): git makes it again in its writable parent.
                break;
            };
            if !meta.is_dir() {
                break;
            }
            if let Err(e) = unlock_dir(&d, &meta) {
                log::debug!("cannot make {} writable: {e}", d.display());
            }
            if !writable(&d) {
                return Err(Error::Unwritable {
                    path: d,
                    doing: doing.to_string(),
                    owner: meta.uid(),
                });
            }
        }
    }
    Ok(())
}

/// Whether orch's user may create and remove entries in `dir` (write and search), by the
/// kernel's own check (groups, ACLs and root included).
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_tree_gives_the_owner_rwx_back_on_every_folder() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a/b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("f"), "x").unwrap();
        let ro = std::fs::Permissions::from_mode(0o555);
        std::fs::set_permissions(&a, ro.clone()).unwrap();
        std::fs::set_permissions(d.path().join("a"), ro).unwrap();
        unlock_tree(d.path());
        for p in [d.path().join("a"), a] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{}", p.display());
        }
    }

    /// What giving the write bits back costs on every worktree reuse when nothing needs it:
    /// `cargo test --release --lib unlock_tree_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn unlock_tree_cost() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..2_000 {
            let dir = d.path().join(format!("d{}/e{i}", i % 50));
            std::fs::create_dir_all(&dir).unwrap();
            for j in 0..10 {
                std::fs::write(dir.join(format!("f{j}")), "x").unwrap();
            }
        }
        unlock_tree(d.path());
        let t = std::time::Instant::now();
        let n = 20;
        for _ in 0..n {
            unlock_tree(d.path());
        }
        eprintln!(
            "unlock_tree over 2,051 folders and 20,000 files: {:.2} ms",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    }

    #[test]
    fn unlock_for_touches_only_the_folders_of_the_paths() {
        let d = tempfile::tempdir().unwrap();
        for f in ["mine/x/f", "users/g"] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let ro = std::fs::Permissions::from_mode(0o555);
        for dir in ["mine", "mine/x", "users"] {
            std::fs::set_permissions(d.path().join(dir), ro.clone()).unwrap();
        }
        unlock_for(d.path(), &["mine/x/f".to_string()], "reverting").unwrap();
        let mode = |p: &str| {
            std::fs::metadata(d.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("mine"), 0o755);
        assert_eq!(mode("mine/x"), 0o755);
        assert_eq!(
            mode("users"),
            0o555,
            "the user's other folder is left as it was"
        );
        std::fs::set_permissions(
            d.path().join("users"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
}
