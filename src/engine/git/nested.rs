//! Repositories inside the repository: the user's submodules and the nested repositories an
//! agent makes (`git init`, `git clone`).
//!
//! A linked worktree gets an empty folder for each submodule, so an agent there would work on
//! nothing and its edits would be dropped. orch checks every submodule out in its worktrees
//! from the main tree's own checkout of it (a local clone: no network, whatever the URL in
//! `.gitmodules` says), and refuses a mission up front when one cannot be (not initialised in
//! the main tree, or the commit it names is not there).
//!
//! What an agent leaves inside a repository folder (its edits inside a submodule, or a
//! repository it made) is never committed: git would record only a gitlink, to a commit this
//! repository does not have, and the files would be lost to anyone checking the branch out. The
//! folder's files are kept instead as plain files in a commit under
//! `refs/orch/nested/round-N/AGENT`, the folder is put back (a
//! submodule at the commit the base names, a new repository removed), and the run says so.

use std::path::Path;

use crate::error::{Error, Result};

use super::parse::short;
use super::run::Git;

/// The submodules `.gitmodules` declares in the tree of `dir` (a checkout): `(name, path)`.
fn declared(dir: &Git) -> Vec<(String, String)> {
    if !dir.root().join(".gitmodules").is_file() {
        return Vec::new();
    }
    let out = dir
        .run(&[
            "config",
            "-z",
            "-f",
            ".gitmodules",
            "--get-regexp",
            r"^submodule\..*\.path$",
        ])
        .unwrap_or_default();
    out.split('\0')
        .filter_map(|rec| {
            let (key, path) = rec.split_once('\n')?;
            let name = key.strip_prefix("submodule.")?.strip_suffix(".path")?;
            Some((name.to_string(), path.trim_end_matches('/').to_string()))
        })
        .collect()
}

/// The gitlinks (mode 160000) of `rev`'s tree: `(path, commit)`.
fn gitlinks(git: &Git, rev: &str) -> Result<Vec<(String, String)>> {
    let out = git.run(&["ls-tree", "-r", "-z", "--full-tree", rev])?;
    Ok(out
        .split('\0')
        .filter_map(|rec| {
            let (meta, path) = rec.split_once('\t')?;
            let mut f = meta.split(' ');
            (f.next()? == "160000" && f.next()? == "commit")
                .then(|| (path.to_string(), f.next().unwrap_or_default().to_string()))
        })
        .collect())
}

/// Whether `dir` is the top of a git repository of its own (a `.git` file or folder in it).
pub fn is_repository(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && std::fs::symlink_metadata(dir.join(".git")).is_ok()
}

/// Why the submodules of `rev` cannot be checked out in orch's worktrees, or `Ok` when they
/// can: each gitlink must be declared in `.gitmodules` and checked out in the main tree (the
/// source orch clones it from) with the commit it names; the same inside each submodule.
/// Called before a round spends anything, under worktree isolation; exit 2 naming the path.
pub fn check_submodules(git: &Git) -> Result<()> {
    check_level(git, "HEAD", "")
}

fn check_level(git: &Git, rev: &str, prefix: &str) -> Result<()> {
    let links = gitlinks(git, rev)?;
    if links.is_empty() {
        return Ok(());
    }
    let names = declared(git);
    for (path, commit) in links {
        let shown = format!("{prefix}{path}");
        let refuse = |why: String| {
            Error::Usage(format!(
                "submodule {shown}: {why}; orch checks submodules out in its worktrees from the \
                 main tree's own checkout (offline), so it stops before any agent runs. Run \
                 `git submodule update --init --recursive`, or set \"git\": {{\"isolation\": \
                 \"shared\"}} to run the agents in the main tree"
            ))
        };
        if !names.iter().any(|(_, p)| *p == path) {
            return Err(refuse(
                "a gitlink with no entry in .gitmodules, so it cannot be checked out".into(),
            ));
        }
        let dir = git.root().join(&path);
        let sub = git.at(&dir);
        let top = sub
            .run(&["rev-parse", "--show-toplevel"])
            .ok()
            .map(|t| std::path::PathBuf::from(t.trim()));
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        if !is_repository(&dir) || top.as_deref().and_then(canon) != canon(&dir) {
            return Err(refuse("it is not initialised in the main tree".into()));
        }
        if sub
            .run(&["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .is_err()
        {
            return Err(refuse(format!(
                "the main tree's checkout of it does not have commit {}, which the branch names",
                short(&commit)
            )));
        }
        check_level(&sub, &commit, &format!("{shown}/"))?;
    }
    Ok(())
}

/// Checks out every submodule of the worktree `wt` (freshly checked out or reset) at the commit
/// its tree names, cloned from the matching folder of `main` (the main tree, or the submodule's
/// checkout there), and cleans what a last run left in it; then the same inside each. Nothing
/// to do (one file test) in a repository without `.gitmodules`.
pub fn init_submodules(wt: &Git, main: &Path) -> Result<()> {
    for (name, path) in declared(wt) {
        let staged = wt.run(&["ls-files", "-s", "-z", "--", &format!(":(literal){path}")])?;
        if !staged.starts_with("160000 ") {
            continue;
        }
        let source = main.join(&path);
        // The URL and file protocol given for this one command: the repository's config (shared
        // with the user's main tree) is left as it is, and no network is asked. `--checkout`
        // whatever `submodule.NAME.update` says: a `!command` there would run a program.
        let url = format!("submodule.{name}.url={}", source.display());
        wt.run(&[
            "-c",
            "protocol.file.allow=always",
            "-c",
            &url,
            "submodule",
            "update",
            "--init",
            "--force",
            "--checkout",
            "--",
            &path,
        ])
        .map_err(|e| {
            Error::Other(format!(
                "checking out submodule {path} in {} from {} failed: {e}",
                wt.root().display(),
                source.display()
            ))
        })?;
        let sub = wt.at(&wt.root().join(&path));
        sub.run(&["clean", "-q", "-f", "-d"])?;
        init_submodules(&sub, &source)?;
    }
    Ok(())
}

/// The folders among an agent's changed paths that are repositories of their own (a submodule
/// it edited, a repository it made), without a trailing `/`.
pub fn repository_folders(root: &Path, changed: &[String]) -> Vec<String> {
    let mut found: Vec<String> = changed
        .iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty() && is_repository(&root.join(p)))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The repositories inside the folder `dir` (folders below it holding a `.git`), relative to
/// it, not looked into further (each is a level of its own); `dir`'s own `.git` is not one.
pub fn repositories_under(dir: &Path) -> Vec<String> {
    fn walk(top: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name() == ".git" || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if is_repository(&p) {
                if let Ok(rel) = p.strip_prefix(top) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            } else {
                walk(top, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// What was done with one repository folder of an agent's change.
pub struct KeptFolder {
    pub path: String,
    /// `Some(commit)` for a submodule of the base (put back at that commit), `None` for a
    /// repository the agent made (removed).
    pub submodule: Option<String>,
}

/// Keeps the files of `folders` (repositories inside `git`'s tree) as plain files in a commit
/// on `parent` under `refname`, then puts each folder back: a submodule of `base` (the tree
/// before the agent ran) reset to the commit `base` names and cleaned, any other repository
/// removed (one the agent made, also when it committed it as a gitlink itself). What it did
/// per folder, or the error that stopped it (then nothing was put back).
pub fn keep_and_put_back(
    git: &Git,
    base: &str,
    parent: &str,
    refname: &str,
    message: &str,
    folders: &[String],
) -> Result<Vec<KeptFolder>> {
    let links = gitlinks(git, base)?;
    git.save_folders_as_files(parent, refname, message, folders)?;
    let mut done = Vec::new();
    for path in folders {
        let full = git.root().join(path);
        let submodule = links
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| c.clone());
        crate::engine::exec::perms::unlock_tree(&full);
        match &submodule {
            Some(commit) => put_back_submodule(&git.at(&full), commit)?,
            None => remove(&full)?,
        }
        done.push(KeptFolder {
            path: path.clone(),
            submodule,
        });
    }
    // An agent that staged or committed the folder as a gitlink: the index no longer names it.
    let specs: Vec<String> = done
        .iter()
        .filter(|k| k.submodule.is_none())
        .map(|k| format!(":(literal){}", k.path))
        .collect();
    if !specs.is_empty() {
        let _ = git.unstage(&specs, &[]);
    }
    Ok(done)
}

/// A submodule's checkout put back at `commit`, clean, and the same inside it: its own
/// submodules at the commits `commit` names, any other repository in it removed (`git clean`
/// leaves those alone).
fn put_back_submodule(sub: &Git, commit: &str) -> Result<()> {
    sub.run(&["checkout", "-q", "-f", "--detach", commit])?;
    sub.run(&["clean", "-q", "-f", "-d"])?;
    let links = gitlinks(sub, commit)?;
    for inner in repositories_under(sub.root()) {
        let full = sub.root().join(&inner);
        match links.iter().find(|(p, _)| *p == inner) {
            Some((_, c)) => put_back_submodule(&sub.at(&full), c)?,
            None => remove(&full)?,
        }
    }
    Ok(())
}

fn remove(dir: &Path) -> Result<()> {
    crate::engine::exec::perms::unlock_tree(dir);
    std::fs::remove_dir_all(dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}

/// The sentence the run, the round log and the warning carry for one kept folder.
pub fn describe(k: &KeptFolder, refname: &str) -> String {
    match &k.submodule {
        Some(commit) => format!(
            "{}: its edits inside submodule {} are not committed (orch commits no change inside \
             a submodule); they are kept as plain files in {refname}, and the submodule is put \
             back at {}",
            k.path,
            k.path,
            short(commit)
        ),
        None => format!(
            "{}: a git repository the agent made (git init or git clone) is not committed (git \
             would record only a gitlink to a commit this repository does not have); its files \
             are kept as plain files in {refname}, and the folder is removed",
            k.path
        ),
    }
}
