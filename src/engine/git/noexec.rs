//! Plumbing: the settings every git command orch runs carries so that nothing written into
//! the repository's git config (which an agent can write, from any worktree) makes orch's own
//! git run a program (issue 30, without a sandbox). Agents' own git is left alone.
//!
//! Three kinds, all given through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`
//! (command-line scope: they beat every config file, reach the git processes git itself starts
//! for submodules and maintenance, and take a key with any subsection, where `-c` would split
//! one holding `=`):
//! - [`FIXED`]: what orch never needs, turned off outright (the file-system monitor, editors,
//!   pagers, askpass and credential helpers, every transport but local paths);
//! - the signing settings, pinned to what they were when orch opened the repository (orch signs
//!   as the user's config asks, with the user's program, never one set during the run);
//! - filter and merge drivers (which `.gitattributes` names, and `git add`, `status`,
//!   `checkout`, `merge` run): those defined when orch opened the repository are the user's
//!   (git-lfs) and pinned to those definitions; one defined since is turned off (a filter
//!   passes content through as it is; a merge driver becomes git's own `merge-file`). Finding
//!   one needs the config read again: it is, by one `git config --list` when a config file
//!   changed since the last read (a `stat` of each file per call, no git process otherwise).
//!
//! What is left: diff drivers (`diff.external`, `diff.<driver>.command`/`textconv`) are not
//! turned off (git has no empty value for them), and need not be: every diff orch runs is
//! `--name-only` or `--quiet`, which never runs them. A config change between the `stat` and
//! the git call it guards is not seen by that call. The definitions trusted are those of the
//! moment orch opened the repository: a driver an earlier run's agent left behind is trusted,
//! unless the repository's config was put back after that agent (see `guard`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Settings orch's git never needs, turned off for every call: hooks (also `--no-verify` where
/// git has it), the file-system monitor, editors (`:` is git's "no editor") and pagers (`cat`
/// is git's "no pager"), askpass and credential helpers, and every transport but local paths
/// (orch fetches nothing; submodules are cloned from the main tree's checkouts), which leaves
/// `core.sshCommand`, `core.gitProxy`, `ext::` and remote helpers unreachable.
pub const FIXED: &[(&str, &str)] = &[
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.editor", ":"),
    ("sequence.editor", ":"),
    ("core.pager", "cat"),
    ("core.askPass", ""),
    ("credential.helper", ""),
    ("protocol.allow", "never"),
    ("protocol.file.allow", "always"),
];

/// The signing settings (names as `git config --list` prints them), each group pinned to the
/// value git would use when orch opened the repository (the last one it read of the group), or
/// to the value given here when none was set (git's default: nothing new gets to run).
const SIGNING: &[(&[&str], &str)] = &[
    (&["commit.gpgsign"], "false"),
    (&["tag.gpgsign"], "false"),
    (&["gpg.format"], "openpgp"),
    (&["gpg.program", "gpg.openpgp.program"], "gpg"),
    (&["gpg.x509.program"], "gpgsm"),
    (&["gpg.ssh.program"], "ssh-keygen"),
];

/// What a merge driver defined during the run is replaced with: git's own three-way merge of
/// the file, in place, its status the number of conflicts (as a driver's must be).
pub const MERGE_FILE: &str = "git merge-file --marker-size=%L %A %O %B";

/// The filter and merge drivers of a config: `("filter", name)` → variable → value.
type Drivers = BTreeMap<(String, String), BTreeMap<String, String>>;

/// One reading of the config (`git config -z --list --show-origin`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Listing {
    /// The signing settings' values, by group of `SIGNING` (index), when set.
    signing: BTreeMap<usize, String>,
    drivers: Drivers,
    /// The files the values came from.
    files: Vec<PathBuf>,
}

impl Listing {
    /// Reads the output of `git config -z --list --show-origin`: `ORIGIN\0KEY\nVALUE\0` each.
    pub fn parse(out: &str) -> Listing {
        let mut l = Listing::default();
        let mut fields = out.split('\0');
        while let (Some(origin), Some(entry)) = (fields.next(), fields.next()) {
            if let Some(file) = origin.strip_prefix("file:") {
                let file = PathBuf::from(file);
                if !l.files.contains(&file) {
                    l.files.push(file);
                }
            }
            let (key, value) = entry.split_once('\n').unwrap_or((entry, ""));
            if let Some(g) = SIGNING.iter().position(|(keys, _)| keys.contains(&key)) {
                l.signing.insert(g, value.to_string());
            }
            let Some((section, rest)) = key.split_once('.') else {
                continue;
            };
            let Some((name, var)) = rest.rsplit_once('.') else {
                continue;
            };
            let programs: &[&str] = match section {
                "filter" => &["clean", "smudge", "process", "required"],
                "merge" => &["driver"],
                _ => continue,
            };
            if programs.contains(&var) {
                l.drivers
                    .entry((section.to_string(), name.to_string()))
                    .or_default()
                    .insert(var.to_string(), value.to_string());
            }
        }
        l
    }

    /// The settings that pin what `trusted` (the listing when orch opened the repository) had
    /// and turn off the drivers this listing has beyond it.
    pub fn settings(&self, trusted: &Listing) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (g, (keys, neutral)) in SIGNING.iter().enumerate() {
            let value = trusted.signing.get(&g).map_or(*neutral, String::as_str);
            out.extend(keys.iter().map(|k| (k.to_string(), value.to_string())));
        }
        let names = trusted.drivers.keys().chain(self.drivers.keys());
        let mut done = Vec::new();
        for id in names {
            if done.contains(&id) {
                continue;
            }
            done.push(id);
            let (section, name) = id;
            let had = trusted.drivers.get(id);
            let keep = |var: &str, neutral: &str| {
                let value = had.and_then(|h| h.get(var)).map_or(neutral, String::as_str);
                (format!("{section}.{name}.{var}"), value.to_string())
            };
            if section == "filter" {
                out.extend([
                    keep("clean", ""),
                    keep("smudge", ""),
                    keep("process", ""),
                    keep("required", "false"),
                ]);
            } else {
                out.push(keep("driver", MERGE_FILE));
            }
        }
        out
    }
}

/// A file's identity and state: a change to it changes this.
type Stamp = Option<(i64, i64, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((
        m.mtime_nsec() + m.mtime() * 1_000_000_000,
        m.ctime(),
        m.ino(),
        m.size(),
    ))
}

/// The config files git reads for a tree whose common git folder is `common` and whose own
/// git folder is `own`, whether they exist or not: a file made later counts as a change.
fn standard_files(common: &Path, own: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        common.join("config"),
        common.join("config.worktree"),
        own.join("config.worktree"),
        PathBuf::from("/etc/gitconfig"),
    ];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(h) = &home {
        files.push(h.join(".gitconfig"));
    }
    match std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        Some(x) => files.push(PathBuf::from(x).join("git/config")),
        None => files.extend(home.map(|h| h.join(".config/git/config"))),
    }
    for var in ["GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"] {
        files.extend(std::env::var_os(var).map(PathBuf::from));
    }
    files
}

/// The settings of one working tree's git calls, kept until a config file changes.
#[derive(Debug)]
pub struct NoExec {
    /// The config as it was when orch opened the repository.
    trusted: Arc<Listing>,
    /// The tree: git names its repository's config relative to it (`file:.git/config`).
    root: PathBuf,
    /// The config files git reads for this tree besides those a reading names.
    standard: Vec<PathBuf>,
    last: Mutex<Option<Reading>>,
}

/// The settings of the last reading of the config, and the files whose stamps say whether
/// they still hold.
#[derive(Debug)]
struct Reading {
    files: Vec<PathBuf>,
    stamps: Vec<Stamp>,
    settings: Arc<Vec<(String, String)>>,
}

impl NoExec {
    /// For the tree at `root`, whose common git folder is `common` and whose own is `own`.
    pub fn new(trusted: Arc<Listing>, root: &Path, common: &Path, own: &Path) -> NoExec {
        NoExec {
            trusted,
            root: root.to_path_buf(),
            standard: standard_files(common, own),
            last: Mutex::new(None),
        }
    }

    pub fn trusted(&self) -> Arc<Listing> {
        self.trusted.clone()
    }

    /// The settings for a call now: those of the last reading while no config file changed,
    /// else those of a new reading (`read` runs `git config -z --list --show-origin`).
    pub fn settings(&self, read: impl FnOnce() -> Option<String>) -> Arc<Vec<(String, String)>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = last.as_ref() {
            if r.files
                .iter()
                .map(|f| stamp(f))
                .eq(r.stamps.iter().copied())
            {
                return r.settings.clone();
            }
        }
        // Stamped before the reading: a change made while git reads is seen by the next call.
        let mut files = self.standard.clone();
        let mut stamps: Vec<Stamp> = files.iter().map(|f| stamp(f)).collect();
        let listing = match read() {
            Some(out) => Listing::parse(&out),
            // The config cannot be read (git refuses it): every git call will say why; until
            // then nothing but what was trusted is pinned.
            None => Listing::default(),
        };
        for f in listing.files.iter().map(|f| self.root.join(f)) {
            if !files.contains(&f) {
                stamps.push(stamp(&f));
                files.push(f);
            }
        }
        let settings = Arc::new(listing.settings(&self.trusted));
        *last = Some(Reading {
            files,
            stamps,
            settings: settings.clone(),
        });
        settings
    }
}

/// Sets `settings` on `cmd` as command-line config (after any the environment already holds).
pub fn apply(cmd: &mut std::process::Command, settings: &[(String, String)]) {
    let first: usize = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let fixed = FIXED.iter().map(|(k, v)| (*k, *v));
    let all = fixed.chain(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut n = first;
    for (k, v) in all {
        cmd.env(format!("GIT_CONFIG_KEY_{n}"), k);
        cmd.env(format!("GIT_CONFIG_VALUE_{n}"), v);
        n += 1;
    }
    cmd.env("GIT_CONFIG_COUNT", n.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[(&str, &str)]) -> Listing {
        let out: String = entries
            .iter()
            .map(|(k, v)| format!("file:/r/.git/config\0{k}\n{v}\0"))
            .collect();
        Listing::parse(&out)
    }

    fn get<'a>(s: &'a [(String, String)], key: &str) -> Option<&'a str> {
        s.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_driver_defined_since_is_turned_off_and_the_users_is_kept() {
        let trusted = listing(&[
            ("filter.lfs.clean", "git-lfs clean -- %f"),
            ("filter.lfs.required", "true"),
            ("merge.ours.driver", "true"),
        ]);
        let now = listing(&[
            ("filter.lfs.clean", "touch pwned"),
            ("filter.lfs.required", "true"),
            ("filter.x.y.clean", "touch pwned"),
            ("merge.ours.driver", "true"),
            ("merge.evil.driver", "touch pwned"),
            ("core.fsmonitor", "touch pwned"),
        ]);
        let s = now.settings(&trusted);
        assert_eq!(get(&s, "filter.lfs.clean"), Some("git-lfs clean -- %f"));
        assert_eq!(get(&s, "filter.lfs.process"), Some(""));
        assert_eq!(get(&s, "filter.lfs.required"), Some("true"));
        assert_eq!(get(&s, "filter.x.y.clean"), Some(""));
        assert_eq!(get(&s, "filter.x.y.required"), Some("false"));
        assert_eq!(get(&s, "merge.ours.driver"), Some("true"));
        assert_eq!(get(&s, "merge.evil.driver"), Some(MERGE_FILE));
        assert_eq!(now.files, [PathBuf::from("/r/.git/config")]);
    }

    #[test]
    fn signing_is_pinned_to_what_git_read_last_when_orch_opened_the_repository() {
        let trusted = listing(&[
            ("commit.gpgsign", "true"),
            ("gpg.openpgp.program", "gpg2"),
            ("gpg.program", "/usr/bin/gpg"),
        ]);
        let now = listing(&[("gpg.program", "touch pwned"), ("tag.gpgsign", "true")]);
        let s = now.settings(&trusted);
        assert_eq!(get(&s, "commit.gpgsign"), Some("true"));
        assert_eq!(get(&s, "gpg.program"), Some("/usr/bin/gpg"));
        assert_eq!(get(&s, "gpg.openpgp.program"), Some("/usr/bin/gpg"));
        assert_eq!(get(&s, "tag.gpgsign"), Some("false"));
        assert_eq!(get(&s, "gpg.x509.program"), Some("gpgsm"));
    }
}
