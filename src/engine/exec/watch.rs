//! Watching a running agent for being stuck (issue 31): the [`Watch`] reads what the run
//! wrote to its stdout log since it last looked (each new line through its CLI's adapter,
//! [`AgentCli::activity`]), notes whether stderr grew, looks at the worktree's state now and
//! then ([`fingerprint`]) and at the CPU time its process group used ([`group_cpu`]), feeds all
//! of it to the pure [`Detector`], and says when the run is to be stopped and why. The process supervisor asks it between its waits; it never touches
//! the process itself.
//!
//! Cheap on purpose: the logs are read from where the last look ended (a flood is skipped
//! past, counted as output), and the tree is looked at no more than every few seconds with
//! `git status` (through orch's own git, so nothing in the repository's config runs a
//! program; without taking git's optional locks, so an agent running git at the same moment
//! never finds `index.lock` held by orch) plus a hash of the changed files' contents.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agents::stuck::{Budget, Detector, Settings, Verdict};
use crate::agents::AgentCli;
use crate::engine::exec::reap::group_cpu;
use crate::engine::git::Git;
use crate::roundlog::Cause;

/// How often the logs are read.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// The most read from a log in one look; beyond it the bytes are skipped (still output).
const READ_MAX: u64 = 4 << 20;
/// Files above this size are fingerprinted by size and time, not read.
const HASH_MAX: u64 = 1 << 20;

/// Why a watched run is to be stopped: the cause for the round log and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub cause: Cause,
    pub words: String,
    /// The cost so far as the stream told it (a running total, or tokens at the price), for a
    /// run stopped before its CLI could print its bill.
    pub cost_usd: Option<Usd>,
}

/// A dollar figure that compares exactly (a stopped run's cost so far; `Ending` is `Eq`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usd(pub f64);

impl Eq for Usd {}

/// One run's watch.
pub struct Watch<'a> {
    adapter: &'static dyn AgentCli,
    detector: Detector,
    stdout: PathBuf,
    read: u64,
    partial: Vec<u8>,
    stderr: PathBuf,
    stderr_len: u64,
    tree: Git,
    tree_every: Duration,
    next_tree: Instant,
    next_look: Instant,
    files: BTreeMap<String, u64>,
    /// Told each new last activity ([`Watch::reporting`]).
    report: Option<Box<dyn FnMut(String) + 'a>>,
    reported: Option<String>,
}

impl<'a> Watch<'a> {
    /// A watch over the run whose stdout and stderr logs are `stdout` and `stderr`, working
    /// in the tree of `tree`, read by `adapter`, started at `start`.
    pub fn new(
        adapter: &'static dyn AgentCli,
        settings: Settings,
        budget: Option<Budget>,
        logs: (PathBuf, PathBuf),
        tree: Git,
        start: Instant,
    ) -> Watch<'a> {
        // A tenth of the idle time, within 0.5 s and 10 s: an idle run is seen within 10 %,
        // and a big repository is not walked more than every 10 s.
        let tree_every =
            (settings.idle / 10).clamp(Duration::from_millis(500), Duration::from_secs(10));
        Watch {
            adapter,
            detector: Detector::new(settings, budget, start),
            stdout: logs.0,
            read: 0,
            partial: Vec::new(),
            stderr: logs.1,
            stderr_len: 0,
            tree,
            tree_every,
            next_tree: start,
            next_look: start,
            files: BTreeMap::new(),
            report: None,
            reported: None,
        }
    }

    /// Tells `report` what the run did last ("Bash `npm test`, 3rd time", "changed
    /// src/lib.rs"), each time that changes.
    pub fn reporting(mut self, report: Box<dyn FnMut(String) + 'a>) -> Watch<'a> {
        self.report = Some(report);
        self
    }

    /// Looks at what the run did since the last look (at most every 200 ms); `pgid` is its
    /// process group. `Some` when it is to be stopped.
    pub fn look(&mut self, now: Instant, pgid: i32) -> Option<Stuck> {
        if now < self.next_look {
            return None;
        }
        self.next_look = now + LOOK_EVERY;
        self.read_stdout(now);
        if self.stderr != self.stdout {
            let len = std::fs::metadata(&self.stderr).map_or(0, |m| m.len());
            if len > self.stderr_len {
                self.stderr_len = len;
                self.detector
                    .activity(now, &crate::agents::progress::Activity::Output);
            }
        }
        if now >= self.next_tree {
            self.next_tree = now + self.tree_every;
            if let Some(cpu) = group_cpu(pgid) {
                self.detector.cpu(now, cpu);
            }
            if let Some((print, files)) = fingerprint(&self.tree) {
                let what = changed(&self.files, &files);
                self.files = files;
                self.detector.tree(now, print, &what);
            }
        }
        if let Some(report) = self.report.as_mut() {
            let last = self.detector.last_label();
            if last.is_some() && last != self.reported {
                report(last.clone().unwrap_or_default());
                self.reported = last;
            }
        }
        let verdict = self.detector.verdict(now);
        let cause = match verdict {
            Verdict::Working => return None,
            Verdict::Idle { .. } => Cause::Idle,
            Verdict::Loop { .. } => Cause::Loop,
            Verdict::OverBudget { .. } => Cause::OverBudget,
        };
        Some(Stuck {
            cause,
            words: verdict.describe(),
            cost_usd: self.detector.cost_usd().map(Usd),
        })
    }

    /// The last thing the run did, for the live view ("Bash `npm test`, 3rd time, 4 s ago").
    pub fn last_activity(&self, now: Instant) -> Option<String> {
        self.detector.last_activity(now)
    }

    /// Feeds the stdout lines written since the last look.
    fn read_stdout(&mut self, now: Instant) {
        let Ok(mut file) = std::fs::File::open(&self.stdout) else {
            return;
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len <= self.read {
            return;
        }
        if len - self.read > READ_MAX {
            // A flood: skip to its last READ_MAX bytes; what was skipped was output.
            self.detector
                .activity(now, &crate::agents::progress::Activity::Output);
            self.read = len - READ_MAX;
            self.partial.clear();
        }
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.read)).is_err()
            || file.take(len - self.read).read_to_end(&mut bytes).is_err()
        {
            return;
        }
        self.read += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            if self.partial.len() as u64 > READ_MAX {
                self.partial.clear();
            }
            return;
        };
        let lines: Vec<u8> = self.partial.drain(..=end).collect();
        for line in lines.split(|b| *b == b'\n') {
            for activity in self.adapter.activity(line) {
                self.detector.activity(now, &activity);
            }
        }
    }
}

/// The state of the tree of `git`: a digest of HEAD, of what `git status` lists (ignored files
/// and the state folder `git` keeps out, which orch writes all the time, left out) and of each
/// listed file's content; and each listed file's own digest, to tell which changed. `None`
/// when git cannot say.
pub fn fingerprint(git: &Git) -> Option<(u64, BTreeMap<String, u64>)> {
    let out = git.status_v2_unlocked().ok()?;
    let dir = git.root();
    let mut all = std::collections::hash_map::DefaultHasher::new();
    let mut files = BTreeMap::new();
    for record in out.split('\0') {
        let path = match record.split_once(' ') {
            // `# branch.oid SHA` and the other headers: HEAD moved when the agent committed.
            Some(("#", header)) => {
                if header.starts_with("branch.oid") {
                    header.hash(&mut all);
                }
                continue;
            }
            Some(("1", rest)) => rest.splitn(8, ' ').nth(7),
            Some(("u", rest)) => rest.splitn(10, ' ').nth(9),
            Some(("?", rest)) => Some(rest),
            _ => None,
        };
        let Some(path) = path else { continue };
        let digest = file_digest(&dir.join(path));
        path.hash(&mut all);
        digest.hash(&mut all);
        files.insert(path.to_string(), digest);
    }
    Some((all.finish(), files))
}

/// A file's content digest (size and time for a big one; 0 for one that is gone).
fn file_digest(path: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.len() > HASH_MAX || !meta.is_file() {
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
    } else if let Ok(bytes) = std::fs::read(path) {
        bytes.hash(&mut h);
    }
    h.finish()
}

/// Which files differ between two looks, for a person: "src/lib.rs", "src/lib.rs and 2 more".
fn changed(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> String {
    let mut paths = now
        .iter()
        .filter(|(p, d)| before.get(*p) != Some(d))
        .map(|(p, _)| p.as_str())
        .chain(
            before
                .keys()
                .filter(|p| !now.contains_key(*p))
                .map(String::as_str),
        );
    let Some(first) = paths.next() else {
        return "the tree".into();
    };
    match paths.count() {
        0 => first.to_string(),
        n => format!("{first} and {n} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn the_fingerprint_follows_content_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q", "."]);
        std::fs::write(d.join("a.txt"), "one\n").unwrap();
        std::fs::write(d.join(".gitignore"), "target/\n").unwrap();
        git(d, &["add", "."]);
        git(d, &["commit", "-qm", "init"]);
        let g = Git::open(d).unwrap();
        let (clean, _) = fingerprint(&g).unwrap();
        std::fs::write(d.join("a.txt"), "two\n").unwrap();
        let (two, files) = fingerprint(&g).unwrap();
        std::fs::write(d.join("a.txt"), "three\n").unwrap();
        let (three, files3) = fingerprint(&g).unwrap();
        assert_ne!(two, three, "same status line, other content");
        assert_eq!(changed(&files, &files3), "a.txt");
        std::fs::write(d.join("a.txt"), "two\n").unwrap();
        assert_eq!(fingerprint(&g).unwrap().0, two);
        std::fs::write(d.join("a.txt"), "one\n").unwrap();
        assert_eq!(fingerprint(&g).unwrap().0, clean);
        // Ignored files are not the tree's state.
        std::fs::create_dir_all(d.join("target")).unwrap();
        std::fs::write(d.join("target/x.o"), "obj").unwrap();
        assert_eq!(fingerprint(&g).unwrap().0, clean);
        std::fs::create_dir_all(d.join("new")).unwrap();
        std::fs::write(d.join("new/b.md"), "b").unwrap();
        let (with_b, files_b) = fingerprint(&g).unwrap();
        assert_ne!(with_b, clean);
        assert_eq!(changed(&BTreeMap::new(), &files_b), "new/b.md");
        // A commit of it: the same files, another HEAD.
        git(d, &["add", "."]);
        git(d, &["commit", "-qm", "b"]);
        assert_ne!(fingerprint(&g).unwrap().0, clean);
        // The state folder of a shared tree, left out.
        std::fs::create_dir_all(d.join(".orch/logs")).unwrap();
        std::fs::write(d.join(".orch/logs/a.log"), "x").unwrap();
        let now = fingerprint(&g).unwrap().0;
        let keeping = g.clone().keep_out(&d.join(".orch"));
        let kept_out = fingerprint(&keeping).unwrap().0;
        std::fs::write(d.join(".orch/logs/a.log"), "xy").unwrap();
        assert_ne!(fingerprint(&g).unwrap().0, now);
        assert_eq!(fingerprint(&keeping).unwrap().0, kept_out);
        // A tree git cannot read (its folder gone).
        let gone = tempfile::tempdir().unwrap();
        git(gone.path(), &["init", "-q", "."]);
        let g2 = Git::open(gone.path()).unwrap();
        drop(gone);
        assert!(fingerprint(&g2).is_none());
    }

    #[test]
    fn a_group_that_computes_uses_cpu_and_a_sleeper_does_not() {
        use std::os::unix::process::CommandExt;
        let spin = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .unwrap();
        let sleep = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let (sp, sl) = (spin.id() as i32, sleep.id() as i32);
        let start = (group_cpu(sp).unwrap(), group_cpu(sl).unwrap());
        std::thread::sleep(Duration::from_millis(1500));
        let end = (group_cpu(sp).unwrap(), group_cpu(sl).unwrap());
        for mut c in [spin, sleep] {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A tenth of a core at least, even on a loaded machine; next to nothing.
        assert!(end.0 - start.0 >= 0.15, "spinner: {start:?} {end:?}");
        assert!(end.1 - start.1 < 0.05, "sleeper: {start:?} {end:?}");
        assert_eq!(group_cpu(i32::MAX), None);
    }

    #[test]
    fn a_watch_reads_lines_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = d.join("out.log");
        let err = d.join("err.log");
        std::fs::write(&out, "").unwrap();
        std::fs::write(&err, "").unwrap();
        let claude = crate::agents::by_cli_name("claude").unwrap();
        let settings = Settings {
            idle: Duration::from_secs(60),
            idle_in_tool: Duration::from_secs(60),
            repeats: 3,
        };
        let t0 = Instant::now();
        git(d, &["init", "-q", "."]);
        let g = Git::open(d).unwrap();
        let mut w = Watch::new(claude, settings, None, (out.clone(), err), g, t0);
        let recorded = include_str!("../../../fixtures/cli-output/real/claude-stream-loop.stdout");
        let call = recorded.lines().nth(1).unwrap();
        let mut t = t0;
        // Written in pieces, a line cut in two across looks.
        let (head, tail) = call.split_at(40);
        let mut log = String::new();
        for (i, piece) in [head, &format!("{tail}\n{call}\n"), &format!("{call}\n")]
            .iter()
            .enumerate()
        {
            log.push_str(piece);
            std::fs::write(&out, &log).unwrap();
            t += Duration::from_secs(1);
            let got = w.look(t, 0);
            if i < 2 {
                assert_eq!(got, None, "look {i}");
            } else {
                assert_eq!(
                    got,
                    Some(Stuck {
                        cause: Cause::Loop,
                        words: "Bash `git status --short` called 3 times".into(),
                        cost_usd: None,
                    })
                );
            }
        }
        assert_eq!(
            w.last_activity(t + Duration::from_secs(2)).as_deref(),
            Some("Bash `git status --short`, 3rd time, 2 s ago")
        );
    }
}
