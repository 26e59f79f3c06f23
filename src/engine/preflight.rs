//! Checks of a mission against the machine and the repository it will run on, made before a
//! round spends anything: `orch validate` and `orch run` both make them. The mission module
//! checks what the file alone can tell; this one what needs a filesystem, `PATH` and git.
//!
//! - **The state folder** must be a folder of orch's own: not git's folder (`.git`, the git
//!   directory of a linked worktree, the common directory they share) nor anything inside one,
//!   and not a folder holding tracked files (orch's files there would be ignored by git through
//!   `info/exclude`, or the user's files taken for orch's).
//! - **Every program** the mission names can start: each agent's, test and suite command, sim,
//!   `when.command`, `sims.stopWhen`, section command, hook and launcher. A program with a `/` is a
//!   path, resolved from the folder the command runs in (as `process::run` runs it); one without
//!   is looked up on `PATH` (the agent's own `env.PATH` when it sets one). A shell string
//!   (`sh -c`) is checked by its first word when that word is plain: no shell syntax (quotes,
//!   `$`, `=`, redirections, subshells) and not a shell builtin or keyword. Where a launcher
//!   runs a command (`srun ... --`, `ssh host --`), only the launcher's own program is checked
//!   here: the command runs on the node, whose `PATH` and files orch cannot see (the start-up
//!   probe of `launcher` checks that the node sees orch's files).
//!
//! Not checked, and said so in docs/src/mission.md: what a wrapper runs (`["sh", "x.sh"]`
//! checks `sh`, not `x.sh`), programs behind shell syntax, and a relative path in
//! `sims.stopWhen` when the published folder does not exist yet.

use std::path::{Path, PathBuf};

use crate::engine::git::Git;
use crate::error::{Error, Result};
use crate::mission::{Command, Isolation, Mission, When};
use crate::roundlog::Phase;

/// Refuses a `stateDir` inside git's own folders, or one holding tracked files.
pub fn check_state_dir(mission: &Mission, file: &Path, git: &Git) -> Result<()> {
    let rel = &mission.state_dir;
    let shown = rel.display().to_string();
    let refuse = |why: String| Err(Error::mission(file, "stateDir", format!("{shown:?} {why}")));
    let root = git.root();
    let target = normalize(&root.join(rel));
    for (what, flag) in [
        ("git's folder", "--absolute-git-dir"),
        ("git's common folder", "--git-common-dir"),
    ] {
        let Ok(out) = git.run(&["rev-parse", flag]) else {
            continue;
        };
        let dir = PathBuf::from(out.trim());
        let dir = normalize(&if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        });
        if target.starts_with(&dir) {
            return refuse(format!(
                "is inside {what} {}; orch's state there would corrupt the repository (the default is \".orch\")",
                dir.display()
            ));
        }
        if dir.starts_with(&target) {
            return refuse(format!(
                "holds {what} {}; orch needs a folder of its own (the default is \".orch\")",
                dir.display()
            ));
        }
    }
    let tracked = git.run(&["ls-files", "-z", "--", &shown])?;
    if let Some(first) = tracked.split('\0').find(|p| !p.is_empty()) {
        return refuse(format!(
            "holds files git tracks (such as {first}); orch needs a folder of its own, one git does not track (the default is \".orch\")"
        ));
    }
    Ok(())
}

/// The path with symlinks resolved as far as it exists, `.` and `..` folded.
fn normalize(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

/// One program the mission will start, and where its name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The key path: `agents[2].command`, `tests.suites[0].command`, `launcher`.
    pub at: String,
    pub name: String,
    /// The folder a relative path is resolved from.
    pub cwd: PathBuf,
    /// The `PATH` it is looked up on.
    pub path_var: Option<String>,
    /// A code agent in its own worktree: a relative path must be tracked, or the worktree
    /// will not have it.
    pub in_worktree: bool,
}

/// Every program the mission names that can be checked here (see the module comment).
pub fn programs(mission: &Mission, root: &Path) -> Vec<Program> {
    let path_var = std::env::var("PATH").ok();
    let mut out = Vec::new();
    agent_programs(mission, root, &path_var, &mut out);
    test_programs(mission, root, &path_var, &mut out);
    sim_programs(mission, root, &path_var, &mut out);
    section_and_hook_programs(mission, root, &path_var, &mut out);
    out
}

/// Adds the program of `cmd` (named at key `at`, run in `cwd` with `path` as its `PATH`; `wt`:
/// in a code agent's worktree), when it has one.
fn add(
    out: &mut Vec<Program>,
    at: String,
    cmd: &Command,
    cwd: &Path,
    path: Option<String>,
    wt: bool,
) {
    if let Some(name) = first_program(cmd) {
        out.push(Program {
            at,
            name,
            cwd: cwd.to_path_buf(),
            path_var: path,
            in_worktree: wt,
        });
    }
}

/// Each agent's launcher or command, and its when-command.
fn agent_programs(
    mission: &Mission,
    root: &Path,
    path_var: &Option<String>,
    out: &mut Vec<Program>,
) {
    for (i, a) in mission.agents.iter().enumerate() {
        let own_path = a.env.get("PATH").cloned().or(path_var.clone());
        let in_wt = a.phase == Phase::Code && mission.git.isolation == Isolation::Worktree;
        match (&a.launcher, &mission.launcher) {
            (Some(l), _) => add(
                out,
                format!("agents[{i}].launcher"),
                &Command::Argv(l.clone()),
                root,
                path_var.clone(),
                false,
            ),
            (None, Some(l)) => add(
                out,
                "launcher".into(),
                &Command::Argv(l.clone()),
                root,
                path_var.clone(),
                false,
            ),
            (None, None) => add(
                out,
                format!("agents[{i}].command"),
                &a.command,
                root,
                own_path.clone(),
                in_wt,
            ),
        }
        if let When::Command { command } = &a.when {
            add(
                out,
                format!("agents[{i}].when.command"),
                command,
                root,
                path_var.clone(),
                false,
            );
        }
    }
}

/// The tests' command and each suite's.
fn test_programs(
    mission: &Mission,
    root: &Path,
    path_var: &Option<String>,
    out: &mut Vec<Program>,
) {
    if let Some(t) = &mission.tests {
        add(
            out,
            "tests.command".into(),
            &t.command,
            root,
            path_var.clone(),
            false,
        );
        for (j, s) in t.suites.iter().enumerate() {
            add(
                out,
                format!("tests.suites[{j}].command"),
                &s.command,
                root,
                path_var.clone(),
                false,
            );
        }
    }
}

/// Each sim's launcher or command, and `sims.stopWhen` (run in the publish folder).
fn sim_programs(mission: &Mission, root: &Path, path_var: &Option<String>, out: &mut Vec<Program>) {
    if let Some(s) = &mission.sims {
        for (k, sim) in [("pre", &s.pre), ("post", &s.post)] {
            let Some(sim) = sim else { continue };
            let own_path = sim.env.get("PATH").cloned().or(path_var.clone());
            match &sim.launcher {
                Some(l) => add(
                    out,
                    format!("sims.{k}.launcher"),
                    &Command::Argv(l.clone()),
                    root,
                    path_var.clone(),
                    false,
                ),
                None => add(
                    out,
                    format!("sims.{k}.command"),
                    &sim.command,
                    root,
                    own_path,
                    false,
                ),
            }
        }
        if let Some(c) = &s.stop_when {
            let dest = root.join(&s.publish_to);
            let relative_path =
                first_program(c).is_some_and(|p| p.contains('/') && !p.starts_with('/'));
            if dest.is_dir() || !relative_path {
                add(
                    out,
                    "sims.stopWhen".into(),
                    c,
                    &dest,
                    path_var.clone(),
                    false,
                );
            }
        }
    }
}

/// The prompt sections' commands and the hooks.
fn section_and_hook_programs(
    mission: &Mission,
    root: &Path,
    path_var: &Option<String>,
    out: &mut Vec<Program>,
) {
    for (name, sec) in &mission.sections {
        if let Some(c) = &sec.command {
            add(
                out,
                format!("sections.{name}.command"),
                c,
                root,
                path_var.clone(),
                false,
            );
        }
    }
    // Hooks run in the repository root with orch's environment; one that cannot start would
    // otherwise be found only when it first fires (a warning, perhaps at the end of the night).
    if let Some(h) = &mission.hooks {
        for (k, c) in [
            ("roundEnd", &h.round_end),
            ("attention", &h.attention),
            ("runEnd", &h.run_end),
        ] {
            if let Some(c) = c {
                add(out, format!("hooks.{k}"), c, root, path_var.clone(), false);
            }
        }
    }
}

/// Checks that the sandbox the mission asks for can run here (bubblewrap installed, its
/// namespaces allowed): the error (exit 2) names the key, the reason and the fix. A launcher
/// and the sandbox on one agent are refused: the launcher runs the command elsewhere, out of
/// the sandbox's reach.
pub fn check_sandbox(mission: &Mission, file: &Path) -> Result<()> {
    let mut first_on: Option<String> = None;
    if mission.sandbox.as_ref().is_some_and(|s| s.is_on()) {
        first_on = Some("sandbox".into());
    }
    for (i, a) in mission.agents.iter().enumerate() {
        let at = format!("agents[{i}].sandbox");
        if !a.sandbox(mission).is_on() {
            continue;
        }
        if a.launcher.is_some() || mission.launcher.is_some() {
            return Err(Error::mission(
                file,
                at,
                format!(
                    "agent {} has both a sandbox and a launcher: the launcher runs its command \
                     elsewhere, out of the sandbox's reach (drop one; \"sandbox\": \"none\" for \
                     this agent)",
                    a.name
                ),
            ));
        }
        if first_on.is_none() {
            first_on = Some(if a.sandbox.is_some() {
                at
            } else {
                "sandbox".into()
            });
        }
    }
    let Some(at) = first_on else {
        return Ok(());
    };
    crate::engine::exec::sandbox::probe::probe().map_err(|e| {
        Error::mission(
            file,
            at,
            format!(
                "the sandbox \"bwrap\" cannot run on this machine: {}; fix: {}",
                e.reason, e.fix
            ),
        )
    })
}

/// Checks that every program of [`programs`] can start; the error (exit 2) names each one that
/// cannot, with its key.
pub fn check_programs(mission: &Mission, file: &Path, git: &Git) -> Result<()> {
    check_sandbox(mission, file)?;
    let problems: Vec<(String, String)> = programs(mission, git.root())
        .into_iter()
        .filter_map(|p| problem(&p, git).map(|why| (p.at, why)))
        .collect();
    match problems.as_slice() {
        [] => Ok(()),
        [(at, why)] => Err(Error::mission(file, at.clone(), why.clone())),
        many => Err(Error::mission(
            file,
            "",
            format!(
                "{} programs cannot start:\n{}",
                many.len(),
                many.iter()
                    .map(|(at, why)| format!("  {at}: {why}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        )),
    }
}

/// Why `p` cannot start, or `None` when it can.
fn problem(p: &Program, git: &Git) -> Option<String> {
    if p.name.contains('/') {
        let path = if Path::new(&p.name).is_absolute() {
            PathBuf::from(&p.name)
        } else {
            p.cwd.join(&p.name)
        };
        if let Some(why) = not_executable(&path) {
            return Some(format!("program `{}` {why} ({})", p.name, path.display()));
        }
        if p.in_worktree && !Path::new(&p.name).is_absolute() {
            let tracked = git
                .run(&["ls-files", "--", &p.name])
                .map(|s| !s.trim().is_empty())
                .unwrap_or(true);
            if !tracked {
                return Some(format!(
                    "program `{}` is not tracked by git, so the agent's worktree will not have it \
                     (commit it, or give an absolute path)",
                    p.name
                ));
            }
        }
        return None;
    }
    let dirs = p.path_var.as_deref().unwrap_or("");
    let found = std::env::split_paths(dirs).any(|d| {
        let d = if d.as_os_str().is_empty() {
            p.cwd.clone()
        } else {
            d
        };
        not_executable(&d.join(&p.name)).is_none()
    });
    if found {
        None
    } else {
        Some(format!("program `{}` is not found on PATH", p.name))
    }
}

/// Why `path` is not a program one can run, or `None`.
fn not_executable(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(_) => Some("does not exist"),
        Ok(m) if m.is_dir() => Some("is a folder"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Some("is not executable"),
        Ok(_) => None,
    }
}

/// The program a command starts, when it can be told without running a shell: argv[0], or the
/// first word of a `sh -c` string when that word is plain (see the module comment). `None`
/// for a placeholder in the program's name.
pub fn first_program(cmd: &Command) -> Option<String> {
    let name = match cmd {
        Command::Argv(v) => v.first()?.clone(),
        Command::Shell(s) => {
            let word: String = s
                .trim_start()
                .chars()
                .take_while(|c| !c.is_whitespace() && !";&|<>".contains(*c))
                .collect();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./+-@%:,".contains(c));
            if !plain || SHELL_WORDS.contains(&word.as_str()) {
                return None;
            }
            word
        }
    };
    (!name.is_empty() && !name.contains('{')).then_some(name)
}

/// Shell keywords and builtins: a first word that is one of these is not a program on `PATH`.
const SHELL_WORDS: &[&str] = &[
    "!", "{", "}", "[", "[[", ".", ":", "case", "do", "done", "elif", "else", "esac", "fi", "for",
    "function", "if", "in", "select", "then", "time", "until", "while", "alias", "bg", "break",
    "builtin", "cd", "command", "continue", "declare", "echo", "eval", "exec", "exit", "export",
    "false", "fg", "getopts", "hash", "jobs", "kill", "let", "local", "printf", "pwd", "read",
    "readonly", "return", "set", "shift", "source", "test", "times", "trap", "true", "type",
    "typeset", "ulimit", "umask", "unalias", "unset", "wait",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(s: &str) -> Option<String> {
        first_program(&Command::Shell(s.into()))
    }

    #[test]
    fn the_first_word_of_a_shell_string_is_checked_only_when_plain() {
        assert_eq!(shell("pytestt -q").as_deref(), Some("pytestt"));
        assert_eq!(shell("  ./run.sh&&x").as_deref(), Some("./run.sh"));
        assert_eq!(shell("npm test > log").as_deref(), Some("npm"));
        assert_eq!(shell("cd src && make"), None, "a builtin");
        assert_eq!(shell("if true; then x; fi"), None, "a keyword");
        assert_eq!(shell("FOO=1 make"), None, "an assignment");
        assert_eq!(shell("\"$HOME/bin/x\""), None, "quotes and $");
        assert_eq!(shell("(cd x; y)"), None, "a subshell");
        assert_eq!(shell("f() { x; }; f"), None, "a function");
        assert_eq!(
            first_program(&Command::Argv(vec!["{model}".into()])),
            None,
            "a placeholder"
        );
    }
}
