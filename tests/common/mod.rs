//! Helpers for the integration tests: a scratch git repository, a mission using the fixture
//! agents, and a way to run the real `orch` binary in it and read back what it wrote.
//!
//! A round log is read back two ways: typed, through orch's own `orch::roundlog` types
//! ([`Repo::round_log_typed`], [`Find`], [`Span`]), for what the round did (a misspelt field is
//! a compile error, not a `Null` that compares unequal); and as the JSON orch wrote
//! ([`Repo::round_log`]), for checks of the file itself: that a key is absent, how a number is
//! written, what an older reader would see.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orch::roundlog::{AgentEntry, RoundLog, SimEntry, SuiteEntry, TestsEntry};

pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/agents")
        .join(name)
        .display()
        .to_string()
}

/// `["sh", "<fixtures>/fake-agent.sh", args...]` as a JSON array.
pub fn agent_cmd(args: &[&str]) -> serde_json::Value {
    let mut v = vec!["sh".to_string(), fixture("fake-agent.sh")];
    v.extend(args.iter().map(|s| s.to_string()));
    serde_json::json!(v)
}

pub fn tests_cmd(sleep: &str) -> serde_json::Value {
    serde_json::json!(["sh", fixture("fake-tests.sh"), sleep])
}

pub fn sim_cmd(sleep: &str) -> serde_json::Value {
    serde_json::json!(["sh", fixture("fake-sim.sh"), "{out}", sleep])
}

pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// A git repository with one commit (src/app.txt) and a git identity.
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo { dir };
        r.write("src/app.txt", "app\n");
        r.git(&["init", "-q"]);
        r.git(&["config", "user.name", "Test"]);
        r.git(&["config", "user.email", "test@example.com"]);
        r.git(&["add", "-A"]);
        r.git(&["commit", "-qm", "init"]);
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path().join(rel).exists()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether the ref (or any revision) `name` resolves.
    pub fn has_ref(&self, name: &str) -> bool {
        Command::new("git")
            .args(["rev-parse", "--verify", "-q", name])
            .current_dir(self.path())
            .output()
            .unwrap()
            .status
            .success()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn status(&self) -> String {
        self.git(&["status", "--porcelain", "--untracked-files=all"])
    }

    /// Writes orch.json and commits it, with anything else written so far, so the tree is clean.
    pub fn mission(&self, m: serde_json::Value) {
        self.write("orch.json", &serde_json::to_string_pretty(&m).unwrap());
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", "mission"]);
    }

    pub fn orch(&self, args: &[&str]) -> Run {
        self.orch_env(args, &[])
    }

    /// `orch ARGS` that must exit 0 and print one JSON document (`report --format json`,
    /// `status --json`): that document.
    pub fn orch_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.orch(args).expect(0).stdout();
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("orch {args:?} printed no JSON: {e}\n{out}"))
    }

    pub fn orch_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("GITHUB_ACTIONS")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().unwrap())
    }

    /// Round `n`'s log as the JSON orch wrote, for checks of the file itself; for what the
    /// round did, [`Repo::round_log_typed`].
    pub fn round_log(&self, n: u32) -> serde_json::Value {
        let p = self.path().join(format!(".orch/rounds/round-{n:04}.json"));
        let text =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// Round `n`'s log read as orch reads it back (`orch report`, `orch status`): a log that
    /// does not parse as [`RoundLog`] fails the test, naming the file and what is wrong.
    pub fn round_log_typed(&self, n: u32) -> RoundLog {
        let p = self.path().join(format!(".orch/rounds/round-{n:04}.json"));
        let text =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} as a round log: {e}", p.display()))
    }

    pub fn has_round_log(&self, n: u32) -> bool {
        self.path()
            .join(format!(".orch/rounds/round-{n:04}.json"))
            .exists()
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.read(".orch/state.json")).unwrap()
    }

    pub fn agent<'a>(log: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        log["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no agent {name} in {log:#}"))
    }

    pub fn pathbuf(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the exit status, showing the output when it is not.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// A test that cannot run on this machine (`why`): a failure when the environment sets
/// `require` to `1` (`.ci/run` sets the ones CI meets), otherwise a loud skip. Straight to the
/// stderr handle, not `eprintln!`: the test harness captures the macros' output of a passing
/// test, and a skip must not pass silently.
pub fn skip(test: &str, require: &str, why: &str) {
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{test}: {require}=1 but {why}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: SKIPPED: {why} ***\n*** (set {require}=1 to make this a failure) ***\n"
    );
}

/// Asserts that no process with `marker` on its command line is alive, allowing a moment for
/// the kernel to finish killing a group that was just sent SIGKILL.
pub fn assert_none_left(marker: &str) {
    let left = left_after(marker, std::time::Duration::from_secs(3));
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

/// Milliseconds in a JSON number.
pub fn ms(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Finding a round log's entries by name.
pub trait Find {
    /// The run of agent `name` (its last one in the round); fails the test when there is none.
    fn agent(&self, name: &str) -> &AgentEntry;
}

impl Find for RoundLog {
    fn agent(&self, name: &str) -> &AgentEntry {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent {name} in round {}: {self:#?}", self.round))
    }
}

/// Something in a round log that ran: where, in milliseconds from the round's start.
pub trait Span {
    /// `(start, end)`: `[startMs, startMs + elapsedMs)`.
    fn span(&self) -> (u64, u64);
}

impl Span for AgentEntry {
    fn span(&self) -> (u64, u64) {
        (self.start_ms, self.start_ms + self.elapsed_ms)
    }
}

impl Span for SimEntry {
    fn span(&self) -> (u64, u64) {
        (self.start_ms, self.start_ms + self.elapsed_ms)
    }
}

impl Span for TestsEntry {
    fn span(&self) -> (u64, u64) {
        (self.start_ms, self.start_ms + self.elapsed_ms)
    }
}

impl Span for SuiteEntry {
    fn span(&self) -> (u64, u64) {
        (self.start_ms, self.start_ms + self.elapsed_ms)
    }
}

/// An entry of the JSON as written (`startMs`, `elapsedMs`), for the tests that read it raw.
impl Span for serde_json::Value {
    fn span(&self) -> (u64, u64) {
        let start = ms(&self["startMs"]);
        (start, start + ms(&self["elapsedMs"]))
    }
}

/// How many milliseconds two runs were under way at the same time.
pub fn overlap(a: &impl Span, b: &impl Span) -> u64 {
    let ((a0, a1), (b0, b1)) = (a.span(), b.span());
    a1.min(b1).saturating_sub(a0.max(b0))
}

/// Processes whose command line contains `marker` (checked in /proc).
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if cmd.contains(marker) && !stat.contains(") Z") {
            found.push(format!("{name}: {cmd}"));
        }
    }
    found
}

/// Whether process `pid` (its number, as text: a pid file's contents) is alive and not a
/// zombie, now.
pub fn alive(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z")
}

/// Whether process `pid` is gone (or a zombie), waiting up to 2 s: SIGKILL is delivered
/// asynchronously.
pub fn gone(pid: &str) -> bool {
    let dead = || !alive(pid);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !dead() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    dead()
}

impl Repo {
    /// Runs orch with its stdout a pipe whose reading end is already closed, as under
    /// `orch ... | head -c0` once head has gone: every write to stdout fails with EPIPE.
    pub fn orch_closed_stdout(&self, args: &[&str]) -> Run {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills both descriptors; each is owned exactly once below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let out = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .current_dir(self.path())
            .env_remove("GITHUB_ACTIONS")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        Run(out)
    }

    /// Runs orch in `dir` (relative to the repository) with `input` on standard input.
    pub fn orch_stdin(&self, dir: &str, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .current_dir(self.path().join(dir))
            .env_remove("GITHUB_ACTIONS")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run(child.wait_with_output().unwrap())
    }
}

/// `orch ARGS` started in the background (stdout and stderr to files in `out`), for the tests
/// that signal or kill it mid-round.
pub struct Orch {
    pub child: std::process::Child,
    pub out: tempfile::TempDir,
}

impl Drop for Orch {
    fn drop(&mut self) {
        // A failed assertion must not leave orch running behind the test.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Orch {
    pub fn start(repo: &Repo, args: &[&str]) -> Orch {
        Orch::start_in(repo.path(), args)
    }

    /// `orch ARGS` started in the background in `dir`.
    pub fn start_in(dir: &Path, args: &[&str]) -> Orch {
        let out = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .current_dir(dir)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(out.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(out.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Orch { child, out }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `limit` for the exit status; kills orch and fails the test past it.
    pub fn wait(&mut self, limit: std::time::Duration) -> i32 {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                return s.code().unwrap_or(128 + s.signal().unwrap_or(0));
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "orch did not exit within {limit:?}\n--- stderr\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.out.path().join("stderr")).unwrap_or_default()
    }

    /// Polls until `path` exists (an agent wrote it); fails the test after `limit`, showing
    /// orch's stderr so far.
    pub fn wait_for(&self, path: &Path, limit: std::time::Duration) {
        let t0 = std::time::Instant::now();
        while !path.exists() {
            assert!(
                t0.elapsed() < limit,
                "{} never appeared\n--- stderr\n{}",
                path.display(),
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Whether bubblewrap runs here (probed once per test binary): if not, a loud SKIP naming
/// `what` did not run, or a panic under `ORCH_REQUIRE_SANDBOX=1` (`.ci/run` sets it), so that
/// CI fails rather than passing a sandbox test that never ran.
pub fn bwrap_runs(what: &str) -> bool {
    static PROBE: std::sync::OnceLock<Result<(), orch::engine::exec::sandbox::probe::Unavailable>> =
        std::sync::OnceLock::new();
    match PROBE.get_or_init(orch::engine::exec::sandbox::probe::probe) {
        Ok(()) => true,
        Err(e) => {
            skip(
                &format!("this {what}"),
                "ORCH_REQUIRE_SANDBOX",
                &e.to_string(),
            );
            false
        }
    }
}

/// The processes with `marker` on their command line still there after waiting up to `limit`
/// for them to go (the kernel finishes a killed group asynchronously); empty when none is.
pub fn left_after(marker: &str, limit: std::time::Duration) -> Vec<String> {
    let t0 = std::time::Instant::now();
    let mut left = processes_with(marker);
    while !left.is_empty() && t0.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = processes_with(marker);
    }
    left
}
