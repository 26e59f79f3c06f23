//! The one rule every sandboxed run follows, agent or test command: from where it works and
//! what orch hands it, the [`Policy`] it runs under.
//!
//! It writes its tree (an agent's worktree, or the shared tree), the files orch hands it and
//! its CLI's state folders in the home folder; it reads the system, the programs on its `PATH`
//! and `readPaths`; the home folder, orch's state folder and (for a worktree) the main checkout
//! are hidden; the repository's git folder is read-only but for what a commit needs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{GitAccess, HostPort, Network, Policy, Prepared};
use crate::agents::adapter::SandboxNeeds;
use crate::engine::git::linked_git_dir;
use crate::mission::sandbox::{NetworkSetting, Sandbox};

/// Where a run works, in the repository: what [`wrap`] needs besides the setting.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    pub tree: &'a Path,
    pub repo_root: &'a Path,
    pub common_dir: &'a Path,
    pub state_dir: &'a Path,
    /// Folders orch hands it to write (created if missing) and to read.
    pub write: Vec<PathBuf>,
    pub read: Vec<PathBuf>,
}

/// `argv` made to run under `setting` at `place`, for a CLI with `needs`: the run's
/// environment (`vars` on top of orch's own, or `vars` alone when `env_clear`) says where the
/// home folder is, the `PATH` the program is found on and the base URLs its API is at.
pub fn wrap(
    setting: &Sandbox,
    needs: &SandboxNeeds,
    place: &Place<'_>,
    vars: &[(String, String)],
    env_clear: bool,
    argv: &[String],
) -> std::io::Result<Prepared> {
    let var = |k: &str| -> Option<String> {
        vars.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| (!env_clear).then(|| std::env::var(k).ok()).flatten())
    };
    let (home_state, cli_hosts) = from_needs(needs, var);
    let network = match &setting.network {
        Some(NetworkSetting::None) => Network::None,
        Some(NetworkSetting::Open) => Network::Open,
        Some(NetworkSetting::Hosts(h)) => allow(h.iter().chain(&setting.allow_hosts)),
        None => allow(cli_hosts.iter().chain(&setting.allow_hosts)),
    };
    for w in &place.write {
        std::fs::create_dir_all(w)?;
    }
    let home = var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let read_paths = setting
        .read_paths
        .iter()
        .map(|p| match (p.strip_prefix("~"), &home) {
            (Ok(rest), Some(h)) => h.join(rest),
            _ => p.clone(),
        })
        .collect();
    let run = Run {
        tree: place.tree.to_path_buf(),
        repo_root: place.repo_root.to_path_buf(),
        git: GitAccess {
            common_dir: place.common_dir.to_path_buf(),
            admin_dir: linked_git_dir(place.tree),
        },
        state_dir: place.state_dir.to_path_buf(),
        write: place.write.clone(),
        read: place.read.clone(),
        home,
        home_state,
        read_paths,
        program: argv.first().cloned().unwrap_or_default(),
        files: argv
            .iter()
            .skip(1)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_file())
            .collect(),
        path_env: var("PATH").map(Into::into),
        network,
    };
    let mut policy = run.policy();
    // Its temporary files go to the sandbox's own /tmp: the TMPDIR outside may be hidden (under
    // the home folder) or shared with everything else the user runs. A folder of it rather
    // than /tmp itself: Codex refuses a CODEX_HOME under TMPDIR, and a home folder under /tmp
    // (a container's, a CI runner's) would put it there.
    policy
        .setenv
        .push(("TMPDIR".into(), super::SANDBOX_TMPDIR.into()));
    policy.prepare(argv)
}

/// The sandbox of the commands that run the agents' code besides the agents themselves (the
/// test command, the sims), under `sandbox.tests`: one per orch process, set once the mission
/// is loaded ([`set_fence`]), read where those commands start ([`fence`]). A process-wide value
/// rather than a parameter through the round's stages, which only pass it along.
#[derive(Debug, Clone)]
pub struct Fence {
    pub setting: Sandbox,
    pub repo_root: PathBuf,
    pub common_dir: PathBuf,
    pub state_dir: PathBuf,
}

static FENCE: std::sync::Mutex<Option<Fence>> = std::sync::Mutex::new(None);

/// Sets (or, with `None`, clears) the fence of this process's test commands and sims.
pub fn set_fence(fence: Option<Fence>) {
    *FENCE.lock().unwrap_or_else(|e| e.into_inner()) = fence;
}

/// The fence set by [`set_fence`], if any.
pub fn fence() -> Option<Fence> {
    FENCE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `argv` of a test command or a sim, run in `tree` and writing `write` besides it, under the
/// fence when there is one: the argv to spawn, and the sandbox to keep while it runs. A sandbox
/// that cannot be prepared gives a command that fails saying why (exit 126): the agents' code
/// never runs without it.
pub fn fenced(
    tree: &Path,
    write: Vec<PathBuf>,
    vars: &[(String, String)],
    argv: Vec<String>,
) -> (Vec<String>, Option<Prepared>) {
    let Some(f) = fence() else {
        return (argv, None);
    };
    match f.wrap(tree, write, vars, &argv) {
        Ok(p) => (p.argv.clone(), Some(p)),
        Err(e) => (
            vec![
                "sh".into(),
                "-c".into(),
                "printf '%s\\n' \"$0\" >&2; exit 126".into(),
                format!("its sandbox could not be prepared: {e}"),
            ],
            None,
        ),
    }
}

impl Fence {
    /// `argv`, run in `tree` and writing `write` besides it, wrapped in the fence's sandbox. A
    /// plain command: no CLI state, and the network is the setting's own (`allowHosts`, a
    /// `network` list, `"open"`), not an agent CLI's.
    pub fn wrap(
        &self,
        tree: &Path,
        write: Vec<PathBuf>,
        vars: &[(String, String)],
        argv: &[String],
    ) -> std::io::Result<Prepared> {
        let place = Place {
            tree,
            repo_root: &self.repo_root,
            common_dir: &self.common_dir,
            state_dir: &self.state_dir,
            write,
            read: Vec::new(),
        };
        wrap(
            &self.setting,
            &SandboxNeeds::NOTHING,
            &place,
            vars,
            false,
            argv,
        )
    }
}

/// An allowlist, or no network at all when it is empty (nothing to relay).
fn allow<'h>(hosts: impl Iterator<Item = &'h HostPort>) -> Network {
    let mut list: Vec<HostPort> = hosts.cloned().collect();
    list.sort();
    list.dedup();
    if list.is_empty() {
        Network::None
    } else {
        Network::Allow(list)
    }
}

/// Where a run works and what it is handed.
#[derive(Debug, Clone)]
pub struct Run {
    /// Where it works, writable: an agent's worktree, the shared tree, the tests' tree.
    pub tree: PathBuf,
    /// The main checkout (`git rev-parse --show-toplevel` of the repository): hidden when the
    /// run has a worktree of its own, so another agent's work and the user's untracked files
    /// are out of reach.
    pub repo_root: PathBuf,
    /// The repository's common git folder and, for a linked worktree, its admin folder.
    pub git: GitAccess,
    /// orch's state folder: hidden; only `write` and `read` paths in it are bound back.
    pub state_dir: PathBuf,
    /// Folders orch hands the run to write (its scratch folder, the handoff folder).
    pub write: Vec<PathBuf>,
    /// Folders orch hands the run to read (the round's prompts).
    pub read: Vec<PathBuf>,
    /// The home folder, hidden; `None` when orch has none.
    pub home: Option<PathBuf>,
    /// Its CLI's state in the home folder (`.claude`, `.codex`), relative to `home` or
    /// absolute: writable when there.
    pub home_state: Vec<PathBuf>,
    /// `sandbox.readPaths`: read-only when there.
    pub read_paths: Vec<PathBuf>,
    /// The program (`argv[0]`) and the `PATH` it is looked up on: a program or a `PATH` folder
    /// under a hidden folder (a CLI installed in the home folder) is bound back read-only.
    pub program: String,
    /// The command's own files: its arguments that name an existing file by an absolute path
    /// (`sh /path/agent.sh`); one under `/tmp`, which the sandbox replaces with its own, is
    /// bound back read-only, unless it is in a hidden folder (the home folder stays hidden
    /// whatever the command names: `readPaths` is how to open it).
    pub files: Vec<PathBuf>,
    pub path_env: Option<std::ffi::OsString>,
    pub network: Network,
}

impl Run {
    pub fn policy(&self) -> Policy {
        let mut p = Policy::new(&self.tree);
        p.hide.push(self.state_dir.clone());
        if let Some(h) = &self.home {
            p.hide.push(h.clone());
        }
        if self.tree != self.repo_root {
            p.hide.push(self.repo_root.clone());
        }
        p.git = Some(self.git.clone());
        p.write.extend(self.write.iter().cloned());
        p.read.extend(self.read.iter().cloned());
        if let Some(h) = &self.home {
            p.write_if_there
                .extend(self.home_state.iter().map(|rel| h.join(rel)));
        }
        p.read.extend(self.read_paths.iter().cloned());
        // The sandbox's /tmp is a fresh one: what the command needs from the real one (a CLI
        // installed there, its script) is bound back like what it needs from a hidden folder.
        let mut hidden: Vec<&Path> = p.hide.iter().map(PathBuf::as_path).collect();
        hidden.push(Path::new("/tmp"));
        p.read
            .extend(programs(&self.program, self.path_env.as_deref(), &hidden));
        p.read.extend(
            self.files
                .iter()
                .filter(|f| f.starts_with("/tmp") && !p.hide.iter().any(|h| f.starts_with(h)))
                .cloned(),
        );
        p.network = self.network.clone();
        p
    }
}

/// What an adapter's [`SandboxNeeds`] come to in a run's environment (`var` reads it): the
/// state paths to bind back writable (relative to the home folder, or the absolute value of
/// its state variable), and the hosts of its model API: those of the base-URL variables that
/// are set, else its default hosts.
pub fn from_needs(
    needs: &SandboxNeeds,
    var: impl Fn(&str) -> Option<String>,
) -> (Vec<PathBuf>, Vec<HostPort>) {
    let mut state: Vec<PathBuf> = needs.home_state.iter().map(PathBuf::from).collect();
    if let Some(v) = needs.state_var.and_then(&var).filter(|v| !v.is_empty()) {
        state.push(PathBuf::from(v));
    }
    let mut hosts: Vec<HostPort> = needs
        .base_url_vars
        .iter()
        .filter_map(|k| var(k))
        .filter_map(|url| HostPort::from_url(&url))
        .collect();
    if hosts.is_empty() {
        hosts = needs
            .default_hosts
            .iter()
            .filter_map(|h| HostPort::parse(h).ok())
            .collect();
    }
    hosts.sort();
    hosts.dedup();
    (state, hosts)
}

/// The folders to bind back read-only so that `program` runs: every `PATH` folder under a
/// hidden folder, and the install folder of the program itself (followed through its links:
/// npm's `.bin/claude` leads into `node_modules`, whose parent is bound whole).
fn programs(program: &str, path_env: Option<&OsStr>, hidden: &[&Path]) -> Vec<PathBuf> {
    let under_hidden = |p: &Path| hidden.iter().any(|h| p.starts_with(h));
    let mut out: Vec<PathBuf> = Vec::new();
    let dirs: Vec<PathBuf> = path_env
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for d in &dirs {
        if d.is_absolute() && under_hidden(d) {
            out.push(d.clone());
        }
    }
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        dirs.iter().map(|d| d.join(program)).find(|p| p.is_file())
    };
    if let Some(found) = found {
        let real = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
        for p in [found, real] {
            if !under_hidden(&p) {
                continue;
            }
            let install = p
                .ancestors()
                .find(|a| a.file_name() == Some(OsStr::new("node_modules")))
                .and_then(Path::parent)
                .or_else(|| p.parent());
            if let Some(i) = install {
                out.push(i.to_path_buf());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::adapter::AgentCli;

    fn run(tree: &str) -> Run {
        Run {
            tree: tree.into(),
            repo_root: "/home/u/repo".into(),
            git: GitAccess {
                common_dir: "/home/u/repo/.git".into(),
                admin_dir: Some("/home/u/repo/.git/worktrees/a".into()),
            },
            state_dir: "/home/u/repo/.orch".into(),
            write: vec!["/home/u/repo/.orch/scratch/round-0001".into()],
            read: vec!["/home/u/repo/.orch/prompts/round-0001".into()],
            home: Some("/home/u".into()),
            home_state: vec![".claude".into()],
            read_paths: vec![],
            program: "sh".into(),
            files: vec![],
            path_env: None,
            network: Network::None,
        }
    }

    #[test]
    fn the_commands_own_file_under_tmp_is_bound_back_but_never_one_in_the_home_folder() {
        let mut r = run("/home/u/repo/.orch/worktrees/a");
        r.home = Some("/tmp/h".into());
        r.files = vec![
            "/tmp/ci/fixtures/agent.sh".into(),
            "/tmp/h/.ssh/id_rsa".into(),
            "/usr/share/agent.sh".into(),
        ];
        let read = r.policy().read;
        assert!(
            read.contains(&PathBuf::from("/tmp/ci/fixtures/agent.sh")),
            "{read:?}"
        );
        assert!(
            !read.contains(&PathBuf::from("/tmp/h/.ssh/id_rsa")),
            "{read:?}"
        );
        // The system is readable as it is: nothing to bind.
        assert!(
            !read.contains(&PathBuf::from("/usr/share/agent.sh")),
            "{read:?}"
        );
    }

    #[test]
    fn a_worktree_run_hides_the_main_checkout_home_and_state() {
        let p = run("/home/u/repo/.orch/worktrees/a").policy();
        let hide: Vec<String> = p.hide.iter().map(|h| h.display().to_string()).collect();
        assert_eq!(hide, ["/home/u/repo/.orch", "/home/u", "/home/u/repo"]);
        assert_eq!(p.write_if_there, [PathBuf::from("/home/u/.claude")]);
        // Shallow first: home, the checkout, then the state folder, then what is bound back.
        let order: Vec<String> = p
            .mounts()
            .iter()
            .map(|(path, m)| format!("{m:?} {}", path.display()))
            .collect();
        assert_eq!(
            order,
            [
                "Hide /home/u",
                "Hide /home/u/repo",
                "WriteIfThere /home/u/.claude",
                "Hide /home/u/repo/.orch",
                "ReadOnly /home/u/repo/.git",
                "Write /home/u/repo/.git/objects",
                "Write /home/u/repo/.orch/worktrees/a",
                "Write /home/u/repo/.orch/scratch/round-0001",
                "Write /home/u/repo/.git/worktrees/a",
                "ReadIfThere /home/u/repo/.orch/prompts/round-0001",
            ]
        );
    }

    #[test]
    fn a_shared_run_writes_the_checkout_and_hides_only_state_and_home() {
        let p = run("/home/u/repo").policy();
        let hide: Vec<String> = p.hide.iter().map(|h| h.display().to_string()).collect();
        assert_eq!(hide, ["/home/u/repo/.orch", "/home/u"]);
    }

    #[test]
    fn needs_come_from_base_url_variables_else_the_defaults() {
        let claude = crate::agents::claude::Claude.sandbox_needs();
        let (state, hosts) = from_needs(&claude, |k| {
            (k == "ANTHROPIC_BASE_URL").then(|| "http://127.0.0.1:8080/v1".to_string())
        });
        assert_eq!(
            state,
            [PathBuf::from(".claude"), PathBuf::from(".claude.json")]
        );
        assert_eq!(hosts, [HostPort::parse("127.0.0.1:8080").unwrap()]);
        let (_, hosts) = from_needs(&claude, |_| None);
        assert_eq!(hosts, [HostPort::parse("api.anthropic.com:443").unwrap()]);
        let codex = crate::agents::codex::Codex.sandbox_needs();
        let (state, _) = from_needs(&codex, |k| (k == "CODEX_HOME").then(|| "/x/c".into()));
        assert_eq!(state, [PathBuf::from(".codex"), PathBuf::from("/x/c")]);
    }

    #[test]
    fn a_program_installed_under_home_is_bound_back_with_its_node_modules() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let pkg = h.join(".cache/cli/node_modules/@x/cli/bin");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("cli.exe"), "").unwrap();
        let bin = h.join(".cache/cli/node_modules/.bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink("../@x/cli/bin/cli.exe", bin.join("cli")).unwrap();
        let path = std::env::join_paths([bin.as_path(), Path::new("/usr/bin")]).unwrap();
        let got = programs("cli", Some(&path), &[h]);
        let real_home = std::fs::canonicalize(h).unwrap();
        let got: Vec<PathBuf> = got
            .iter()
            .map(|p| {
                p.strip_prefix(&real_home)
                    .or(p.strip_prefix(h))
                    .unwrap()
                    .to_path_buf()
            })
            .collect();
        assert_eq!(
            got,
            [
                PathBuf::from(".cache/cli"),
                PathBuf::from(".cache/cli/node_modules/.bin")
            ]
        );
        assert!(programs("sh", Some(OsStr::new("/usr/bin:/bin")), &[h]).is_empty());
    }
}
