//! A sandbox per agent (issue 30): what a command orch runs may write, read and reach, and the
//! bubblewrap command line that enforces it.
//!
//! orch runs agents and the code they wrote (tests, sims) unattended, with the rights of the
//! person who started it. Under a [`Policy`] the command instead runs in `bwrap` (Debian's
//! `bubblewrap` package) with:
//! - the system read-only (`--ro-bind / /`), a private `/tmp`, its own `/dev` and `/proc`;
//! - the folders the policy hides (the home folder, orch's state folder) replaced by empty
//!   ones, and only the paths it names bound back: writable ([`Policy::write`]: the agent's
//!   tree, its scratch files, its CLI's state folder) or read-only ([`Policy::read`]);
//! - the repository's git folder read-only except what a commit in the agent's tree writes
//!   ([`GitAccess`]): never its `config`, `hooks/` or `info/`, so nothing an agent plants there
//!   runs later as orch or as the user;
//! - its own PID namespace (it cannot see or signal orch or the other agents) and death with
//!   orch (`--die-with-parent`);
//! - a network namespace of its own unless the network is [`Network::Open`]: with
//!   [`Network::None`] only its own loopback, with [`Network::Allow`] the hosts listed, reached
//!   through orch's relay ([`net`]).
//!
//! Whether bwrap can run here at all is [`probe`]'s question, asked before anything is spent.
//! The order of the mounts matters (a later mount covers an earlier one), and [`Policy::argv`]
//! is the one place that decides it.

pub mod net;
pub mod probe;
pub mod rules;

pub use crate::mission::sandbox::HostPort;

use std::path::{Path, PathBuf};

/// Where the relay's Unix socket appears inside the sandbox: on the sandbox's private `/tmp`
/// (a fresh tmpfs, so bwrap can make the mount point), whatever its path is outside.
pub const SOCKET_INSIDE: &str = "/tmp/.orch-net.sock";

/// The sandbox's `TMPDIR`: a folder of its private `/tmp`, made by bwrap (`--dir`).
pub const SANDBOX_TMPDIR: &str = "/tmp/tmp";

/// The port of the relay's HTTP proxy on the sandbox's own loopback (exported as
/// `HTTPS_PROXY`/`HTTP_PROXY`), unless an allowed loopback address already uses it.
const PROXY_PORT: u16 = 3128;

/// What a sandboxed command may reach over the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Nothing but the sandbox's own loopback.
    None,
    /// The host's network, as without a sandbox.
    Open,
    /// Only these `host:port`s, through orch's relay; a connection anywhere else fails.
    Allow(Vec<HostPort>),
}

/// What of the repository's git folder a command may write: what a commit in its own tree
/// needs, nothing that orch or the user would later run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitAccess {
    /// The repository's common git folder (`git rev-parse --git-common-dir`), bound read-only.
    pub common_dir: PathBuf,
    /// The linked worktree's admin folder (`<common>/worktrees/<name>`: its HEAD, index, logs,
    /// ORIG_HEAD), writable; `None` for a command working in the main tree, which then cannot
    /// stage (the index is the repository's) but can read and diff.
    pub admin_dir: Option<PathBuf>,
}

/// What a sandboxed command may write, read and reach. Paths are absolute; [`Policy::argv`]
/// skips a read path that does not exist and makes no other check.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where the command starts.
    pub cwd: PathBuf,
    /// Folders replaced by empty ones (the home folder, orch's state folder): nothing under
    /// them is visible unless bound back by `write` or `read`.
    pub hide: Vec<PathBuf>,
    /// Bound writable; each must exist.
    pub write: Vec<PathBuf>,
    /// Bound writable when they exist (a CLI's state folder, which a user without the CLI's
    /// login has not got): a missing one is an empty place inside, and what is written there
    /// lands nowhere.
    pub write_if_there: Vec<PathBuf>,
    /// Bound read-only, after the hidden folders; missing ones are skipped.
    pub read: Vec<PathBuf>,
    pub git: Option<GitAccess>,
    pub network: Network,
    /// Environment variables set inside (after orch's own).
    pub setenv: Vec<(String, String)>,
}

impl Policy {
    /// A policy that writes `cwd` only, hides nothing, reaches nothing.
    pub fn new(cwd: impl Into<PathBuf>) -> Policy {
        let cwd = cwd.into();
        Policy {
            write: vec![cwd.clone()],
            write_if_there: Vec::new(),
            cwd,
            hide: Vec::new(),
            read: Vec::new(),
            git: None,
            network: Network::None,
            setenv: Vec::new(),
        }
    }

    /// The loopback port the relay's HTTP proxy listens on inside the sandbox: the first from
    /// 3128 up that no allowed loopback address takes.
    pub fn proxy_port(&self) -> u16 {
        let taken: Vec<u16> = match &self.network {
            Network::Allow(list) => list
                .iter()
                .filter(|h| h.is_loopback())
                .map(|h| h.port)
                .collect(),
            _ => Vec::new(),
        };
        (PROXY_PORT..=u16::MAX)
            .find(|p| !taken.contains(p))
            .unwrap_or(PROXY_PORT)
    }

    /// The full command line: `bwrap`, its options, then `command` (under `Network::Allow`,
    /// behind the relay: `relay_exe __sandbox-run ... -- command`, the relay's Unix socket being
    /// `socket` outside). `relay_exe` is orch's own executable; it is bound in read-only.
    pub fn argv(&self, command: &[String], relay: Option<(&Path, &Path)>) -> Vec<String> {
        let mut a = Args::default();
        a.flags(&["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
        a.flags(&["--tmpfs", "/tmp", "--dir", SANDBOX_TMPDIR]);
        for (path, mount) in self.mounts() {
            match mount {
                Mount::Hide if path.is_dir() => a.path("--tmpfs", &path),
                Mount::Hide => {}
                Mount::Write => a.bind("--bind", &path),
                Mount::WriteIfThere => a.bind("--bind-try", &path),
                Mount::ReadOnly => a.bind("--ro-bind", &path),
                Mount::ReadIfThere => a.bind("--ro-bind-try", &path),
            }
        }
        a.flags(&["--unshare-pid", "--unshare-ipc", "--unshare-uts"]);
        a.flags(&["--die-with-parent"]);
        if self.network != Network::Open {
            a.flags(&["--unshare-net"]);
        }
        for (k, v) in &self.setenv {
            a.flags(&["--setenv", k, v]);
        }
        let mut inner: Vec<String> = Vec::new();
        if let (Network::Allow(list), Some((exe, socket))) = (&self.network, relay) {
            a.bind("--ro-bind", exe);
            a.0.extend(["--bind".into(), s(socket), SOCKET_INSIDE.into()]);
            let port = self.proxy_port();
            let proxy = format!("http://127.0.0.1:{port}");
            for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
                a.flags(&["--setenv", k, &proxy]);
            }
            // Loopback addresses are served by the relay on the sandbox's own loopback: direct.
            for k in ["NO_PROXY", "no_proxy"] {
                a.flags(&["--setenv", k, "localhost,127.0.0.1,::1"]);
            }
            inner.extend([s(exe), net::RELAY_ARG.into(), SOCKET_INSIDE.into()]);
            inner.push(port.to_string());
            inner.extend(
                list.iter()
                    .filter(|h| h.is_loopback())
                    .map(|h| h.to_string()),
            );
            inner.push("--".into());
        }
        a.path("--chdir", &self.cwd);
        a.0.push("--".into());
        let mut argv = vec!["bwrap".to_string()];
        argv.extend(a.0);
        argv.extend(inner);
        argv.extend(command.iter().cloned());
        argv
    }
}

/// A command ready to run in its sandbox: the argv to spawn in place of the command's, and the
/// broker of its allowlist, which serves as long as this value lives (drop it once the run has
/// ended).
pub struct Prepared {
    pub argv: Vec<String>,
    broker: Option<net::Broker>,
}

impl Prepared {
    /// The `host:port`s the command asked for and was refused.
    pub fn denied(&self) -> Vec<String> {
        self.broker.as_ref().map(|b| b.denied()).unwrap_or_default()
    }
}

impl Policy {
    /// `command` wrapped in bwrap; under `Network::Allow`, with orch's broker listening (its
    /// socket in the temporary folder) and orch's own executable as the relay inside.
    pub fn prepare(&self, command: &[String]) -> std::io::Result<Prepared> {
        let Network::Allow(list) = &self.network else {
            return Ok(Prepared {
                argv: self.argv(command, None),
                broker: None,
            });
        };
        let exe = std::env::current_exe()?;
        let broker = net::Broker::start(&std::env::temp_dir(), list.clone())?;
        Ok(Prepared {
            argv: self.argv(command, Some((&exe, broker.socket()))),
            broker: Some(broker),
        })
    }

    /// Every mount of the policy, shallowest path first: a deeper path covers a shallower one
    /// whatever list it came from (the agent's worktree inside the hidden state folder, the
    /// read-only git folder inside a writable main tree, its writable `objects/` inside that).
    /// For the same path, read-only wins over writable, and both over hidden.
    fn mounts(&self) -> Vec<(PathBuf, Mount)> {
        let mut all: Vec<(PathBuf, Mount)> = Vec::new();
        all.extend(self.hide.iter().map(|p| (p.clone(), Mount::Hide)));
        all.extend(self.write.iter().map(|p| (p.clone(), Mount::Write)));
        all.extend(
            self.write_if_there
                .iter()
                .map(|p| (p.clone(), Mount::WriteIfThere)),
        );
        if let Some(g) = &self.git {
            all.push((g.common_dir.clone(), Mount::ReadOnly));
            all.push((g.common_dir.join("objects"), Mount::Write));
            if let Some(admin) = &g.admin_dir {
                all.push((admin.clone(), Mount::Write));
            }
        }
        all.extend(self.read.iter().map(|p| (p.clone(), Mount::ReadIfThere)));
        all.sort_by_key(|(p, m)| (p.components().count(), *m));
        all.dedup();
        all
    }
}

/// How one path is mounted, in the order that settles a tie on the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mount {
    Hide,
    Write,
    WriteIfThere,
    ReadIfThere,
    ReadOnly,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn flags(&mut self, f: &[&str]) {
        self.0.extend(f.iter().map(|x| x.to_string()));
    }
    fn path(&mut self, flag: &str, p: &Path) {
        self.0.extend([flag.to_string(), s(p)]);
    }
    fn bind(&mut self, flag: &str, p: &Path) {
        self.0.extend([flag.to_string(), s(p), s(p)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_git_folder_is_read_only_after_a_writable_tree_that_holds_it() {
        let mut p = Policy::new("/r");
        p.git = Some(GitAccess {
            common_dir: "/r/.git".into(),
            admin_dir: None,
        });
        let argv = p.argv(&["true".into()], None);
        let text = argv.join(" ");
        let w = text.find("--bind /r /r").unwrap();
        let ro = text.rfind("--ro-bind /r/.git /r/.git").unwrap();
        assert!(ro > w, "{text}");
        assert!(text.contains("--unshare-net"), "{text}");
        assert!(text.ends_with("--chdir /r -- true"), "{text}");
    }

    #[test]
    fn the_proxy_port_avoids_an_allowed_loopback_port() {
        let mut p = Policy::new("/r");
        p.network = Network::Allow(vec![HostPort::parse("127.0.0.1:3128").unwrap()]);
        assert_eq!(p.proxy_port(), 3129);
        let argv = p.argv(&["x".into()], Some((Path::new("/o"), Path::new("/s"))));
        let text = argv.join(" ");
        assert!(
            text.ends_with("-- /o __sandbox-run /tmp/.orch-net.sock 3129 127.0.0.1:3128 -- x"),
            "{text}"
        );
        assert!(text.contains("--bind /s /tmp/.orch-net.sock"), "{text}");
    }
}
