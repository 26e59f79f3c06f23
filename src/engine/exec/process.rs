//! Spawning and supervising the child processes orch runs for a round: agents, sims and tests.
//! This module and the two beside it (`reap`, `watchdog`) are the only ones that start them or
//! send them signals.
//!
//! Every child runs in its own process group (so a timeout or an interrupt reaches the
//! grandchildren it spawned too; a launcher such as srun in a session of its own, which Slurm
//! records with its job), with standard input from a file or empty (never the
//! terminal), and stdout/stderr going straight to log files (never through orch's memory, so
//! neither a 200 MB flood nor a daemon holding the pipe open can hold orch). On Linux the child
//! also gets `PR_SET_PDEATHSIG`, so that if orch itself is killed it does not run on
//! unsupervised. A timeout or an interrupt sends SIGTERM to the group, waits a grace period,
//! then SIGKILLs it; a second interrupt SIGKILLs at once (cargo-nextest's rule).
//!
//! The live process groups are kept in a registry so that the interrupt path and the crash
//! journal (see `state::Journal`) know which groups to kill. Every child also gets `ORCH_PID`
//! (orch's pid), which its grandchildren inherit: the next orch kills a group named in a dead
//! orch's journal only if it still holds that orch's processes, never a stranger that reused the
//! group id in the meantime.
//!
//! A descendant can leave its group (`setsid`, a double-forking daemon), and then no group
//! signal reaches it. So every child also gets `ORCH_RUN`, a token unique to that one run
//! (`<orch session>-<n>`), which descendants inherit whatever group they move to: when a run
//! ends, any process still carrying its token is killed by pid; after a crash the next orch
//! kills every process carrying the dead orch's session.
//!
//! The registry of live groups, the markers and the reaping live in `reap`, the watchdog in
//! `watchdog`, both beside this file (they signal processes too, never start a run); their
//! public items are re-exported here, the paths callers use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

pub use super::reap::{
    group_alive, group_started_by, holders_of, live_groups, reap_orphan_groups, reap_session,
    session, session_of, set_observer, signal_group, PID_VAR, RUN_VAR,
};
use super::reap::{kill_all, kill_carriers, next_run_token, registry_change};
use super::watchdog::{self, monotonic_ns};
pub use super::watchdog::{enable_watchdog, run_watchdog_if_asked, WATCHDOG_ARG};

/// What to run and where its output goes.
#[derive(Debug, Clone)]
pub struct Spec {
    /// A short name for log lines: `agent ui-dev`, `pre-sim`, `tests`.
    pub label: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// A file fed on standard input; empty input when `None`.
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub timeout: Duration,
    pub grace: Duration,
    /// The command starts with a launcher (`srun`, `docker run`): if orch dies without
    /// stopping it, it gets SIGTERM (`PR_SET_PDEATHSIG`), which lets it end what it started
    /// elsewhere (srun cancels its job step; a SIGKILLed docker client leaves its container
    /// running). Every other child gets SIGKILL, which nothing can ignore. It also runs in a
    /// session of its own: a srun that has to be SIGKILLed has its job found by that session
    /// and cancelled (`cancel_srun_job`).
    pub launched: bool,
    /// Start from an empty environment: the child gets `env` (and orch's markers) only. Off,
    /// it inherits orch's whole environment with `env` on top.
    pub env_clear: bool,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by this signal (not by orch).
    Signalled(i32),
    /// orch killed it at its timeout.
    TimedOut,
    /// orch killed it because the run was interrupted.
    Cancelled,
    /// orch killed it because its watch saw it stuck (idle, looping, over budget: issue 31).
    Stuck(super::watch::Stuck),
    /// It could not be started; the OS error.
    SpawnFailed(String),
}

impl Ending {
    pub fn success(&self) -> bool {
        matches!(self, Ending::Exited(0))
    }

    /// The exit code for the round log: the status, or 128+signal as a shell reports it.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Ending::Exited(c) => Some(*c),
            Ending::Signalled(s) => Some(128 + s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finished {
    pub ending: Ending,
    pub started: Instant,
    pub elapsed: Duration,
}

// ---------------------------------------------------------------------------------------------
// Interrupts. Signals are process-wide, so this state is too.

const RUNNING: u8 = 0;
const TERMINATE: u8 = 1;
const KILL: u8 = 2;

static INTERRUPT: AtomicU8 = AtomicU8::new(RUNNING);

/// First signal: stop starting processes, terminate running ones with a grace period.
/// Second: kill at once.
pub fn interrupt() {
    let _ = INTERRUPT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
        Some(if l == RUNNING { TERMINATE } else { KILL })
    });
    if INTERRUPT.load(Ordering::SeqCst) == KILL {
        // "At once", but with a last SIGTERM just before the SIGKILL: a launcher such as srun
        // needs that moment to cancel its job step, which a bare SIGKILL would leave running on
        // the cluster.
        kill_all(libc::SIGTERM);
        std::thread::sleep(KILL_NOTICE);
        kill_all(libc::SIGKILL);
    }
}

/// How long the second signal's SIGTERM precedes its SIGKILL.
const KILL_NOTICE: Duration = Duration::from_millis(300);

pub fn interrupted() -> bool {
    INTERRUPT.load(Ordering::SeqCst) != RUNNING
}

// ---------------------------------------------------------------------------------------------
// Running one process.

/// Runs `spec` to its end, whatever that end is. Never panics on a bad command: a program that
/// cannot start is `Ending::SpawnFailed`, with the OS error also written to its stderr log.
pub fn run(spec: &Spec) -> Finished {
    run_with(spec, true, None)
}

/// Like [`run`], with `watch` looking at the run between the waits: a run it sees stuck is
/// stopped as at a timeout, [`Ending::Stuck`].
pub fn run_watched(spec: &Spec, watch: &mut super::watch::Watch) -> Finished {
    run_with(spec, true, Some(watch))
}

/// Like [`run`], for a process that reports on the run rather than doing its work (a hook): it
/// starts even after an interrupt and the first signal leaves it alone, so "orch was stopped"
/// still reaches a person. Its own timeout and a second signal still end it, and it is killed
/// with its group and descendants like any child: nothing outlives orch.
pub fn run_past_interrupt(spec: &Spec) -> Finished {
    run_with(spec, false, None)
}

fn run_with(spec: &Spec, interruptible: bool, watch: Option<&mut super::watch::Watch>) -> Finished {
    let started = Instant::now();
    let done = |ending: Ending| Finished {
        ending,
        started,
        elapsed: started.elapsed(),
    };
    if interruptible && interrupted() {
        return done(Ending::Cancelled);
    }
    let (stdout, stderr) = match open_logs(spec) {
        Ok(f) => f,
        Err(e) => return done(Ending::SpawnFailed(e)),
    };
    let Some((program, args)) = spec.argv.split_first() else {
        return done(Ending::SpawnFailed("empty command".into()));
    };
    // A relative path (`./run.sh`, `tools/agent`) names a file in the folder the command runs
    // in, as a shell there would find it; duct would resolve it from orch's own folder.
    let program = if program.contains('/') && !program.starts_with('/') {
        spec.cwd.join(program).display().to_string()
    } else {
        program.clone()
    };
    let program = &program;
    let token = next_run_token();
    let expr = command(spec, program, args, stdout, stderr, &token);
    // The last moment the process is known not to have ended, until the first wait sees it
    // running: orch can be stopped or starved between the spawn and that first wait, and the
    // gap must count as orch's, not the process's (see `supervise`).
    watchdog::ready();
    let spawned = Instant::now();
    let handle = match expr.start() {
        Ok(h) => h,
        Err(e) => {
            let msg = spawn_error(program, &e);
            log::debug!("{}: {msg}", spec.label);
            let _ = append(&spec.stderr, &format!("orch: {msg}\n"));
            return done(Ending::SpawnFailed(msg));
        }
    };
    let pgid = handle.pids().first().map(|&p| p as i32).unwrap_or(0);
    // The watchdog first, the one witness of the child's end while orch is stopped (see
    // `end_time`); the crash journal's write can take a while.
    let end_file = end_file_of(spec);
    watchdog::started(pgid, spec.launched, spec.grace, &token, &end_file);
    registry_change(Some(pgid), None);
    let (ending, ended_at) = supervise(
        &handle,
        pgid,
        spec,
        interruptible,
        spawned,
        &end_file,
        watch,
    );
    // Whatever the leader's fate, nothing of its group may outlive it: a daemon an agent left
    // behind would hold files and CPU all night.
    signal_group(pgid, libc::SIGKILL);
    // The same for what left the group on purpose (setsid, double fork).
    let escaped = kill_carriers(&|v: &[u8]| v == token.as_bytes(), &[pgid]);
    if escaped > 0 {
        log::warn!(
            "{}: killed {escaped} process(es) it left running outside its process group",
            spec.label
        );
    }
    registry_change(None, Some(pgid));
    watchdog::ended(pgid);
    Finished {
        ending,
        started,
        elapsed: ended_at.saturating_duration_since(started),
    }
}

/// The duct expression that starts `program args` as `spec` says: its folder, logs, stdin and
/// environment (with orch's pid and the run's `token`), in a process group of its own (a
/// launcher: a session of its own), dying with orch.
fn command(
    spec: &Spec,
    program: &str,
    args: &[String],
    stdout: File,
    stderr: File,
    token: &str,
) -> duct::Expression {
    let signal = if spec.launched {
        libc::SIGTERM
    } else {
        libc::SIGKILL
    };
    let launched = spec.launched;
    let mut expr = duct::cmd(program, args)
        .dir(&spec.cwd)
        .stdout_file(stdout)
        .stderr_file(stderr)
        .unchecked()
        .before_spawn(move |cmd| {
            use std::os::unix::process::CommandExt;
            // A launcher gets a session of its own (and so a group of its own, as every child):
            // Slurm records srun's session id with the job it makes, which is how orch finds
            // that job again when it had to SIGKILL srun (see `cancel_srun_job`).
            if !launched {
                cmd.process_group(0);
            }
            // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
            // calls (setsid, prctl, getppid).
            unsafe {
                cmd.pre_exec(move || {
                    if launched && libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    die_with_parent(signal)
                });
            }
            Ok(())
        });
    expr = match &spec.stdin {
        Some(p) => expr.stdin_path(p),
        None => expr.stdin_null(),
    };
    if spec.env_clear {
        let mut all: Vec<(String, String)> = spec.env.clone();
        all.push((PID_VAR.into(), std::process::id().to_string()));
        all.push((RUN_VAR.into(), token.to_string()));
        expr = expr.full_env(all);
    } else {
        for (k, v) in &spec.env {
            expr = expr.env(k, v);
        }
        expr = expr
            .env(PID_VAR, std::process::id().to_string())
            .env(RUN_VAR, token);
    }
    expr
}

/// Waits for the process, enforcing the timeout and interrupts; returns how it ended and
/// when. The end is the moment the wait returned, unless orch itself was not running for a
/// while just before (SIGSTOP): then the process ended somewhere in that gap, and the end
/// taken is the one orch's watchdog saw (`end_file`), else the later of the last moment it was
/// seen running (at first, `spawned`: a gap can open before the first wait) and its last write
/// to its logs (a kernel timestamp; a lower bound, since a run can work silently after its
/// last line), so a stopped orch neither inflates nor shrinks the run time that adaptive
/// timeouts learn from. A timeout that fell in the gap was not enforced: the process ended by
/// itself, and its ending says so.
fn supervise(
    handle: &duct::Handle,
    pgid: i32,
    spec: &Spec,
    interruptible: bool,
    spawned: Instant,
    end_file: &Path,
    mut watch: Option<&mut super::watch::Watch>,
) -> (Ending, Instant) {
    let deadline = Instant::now().checked_add(spec.timeout);
    let mut seen_running = spawned;
    loop {
        // Short slices keep the reaction to a timeout or an interrupt within tens of ms.
        let slice = Duration::from_millis(25);
        let asked = Instant::now();
        match handle.wait_timeout(slice) {
            Ok(Some(out)) => {
                return (
                    ending_of(&out.status),
                    end_time(seen_running, spec, end_file),
                );
            }
            // "Still running" is only news when the wait took about its slice: after a gap
            // (orch stopped, or starved), the wait can time out on its own clock without
            // looking at the process again, and moving `seen_running` past the gap would make
            // the exit seen next look as late as the resume.
            Ok(None) if asked.elapsed() < Duration::from_secs(1) => seen_running = Instant::now(),
            Ok(None) => {}
            Err(e) => {
                return (
                    Ending::SpawnFailed(format!("waiting for the process: {e}")),
                    Instant::now(),
                )
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            log::info!(
                "{}: timed out after {:.1}s; terminating its process group",
                spec.label,
                spec.timeout.as_secs_f64()
            );
            terminate(handle, pgid, spec);
            return (Ending::TimedOut, Instant::now());
        }
        if let Some(stuck) = watch
            .as_deref_mut()
            .and_then(|w| w.look(Instant::now(), pgid))
        {
            log::info!(
                "{}: stopped as {}: {}; terminating its process group",
                spec.label,
                stuck.cause,
                stuck.words
            );
            terminate(handle, pgid, spec);
            return (Ending::Stuck(stuck), Instant::now());
        }
        let stop = if interruptible {
            interrupted()
        } else {
            INTERRUPT.load(Ordering::SeqCst) == KILL
        };
        if stop {
            terminate(handle, pgid, spec);
            return (Ending::Cancelled, Instant::now());
        }
    }
}

/// When a process that was seen running at `seen_running` ended (see `supervise`).
fn end_time(seen_running: Instant, spec: &Spec, end_file: &Path) -> Instant {
    let now = Instant::now();
    // A wait slice is 25 ms; a gap far beyond it means orch was not running.
    if now.saturating_duration_since(seen_running) < Duration::from_secs(1) {
        return now;
    }
    // What the watchdog saw, on the clock `Instant` reads.
    let seen = std::fs::read_to_string(end_file)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .and_then(|ended| monotonic_ns().checked_sub(ended))
        .and_then(|age| now.checked_sub(Duration::from_nanos(age)));
    if let Some(ended) = seen {
        return ended.clamp(seen_running, now);
    }
    let last_write = [&spec.stdout, &spec.stderr]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
        .and_then(|age| now.checked_sub(age));
    match last_write {
        Some(w) => w.clamp(seen_running, now),
        None => seen_running,
    }
}

/// Where the watchdog writes when it saw the process end: beside its stdout log (and removes
/// once the run is over).
fn end_file_of(spec: &Spec) -> PathBuf {
    let mut name = spec.stdout.clone().into_os_string();
    name.push(".ended");
    PathBuf::from(name)
}

/// SIGTERM to the group, up to `grace` for the leader to go, then SIGKILL; reaps the leader.
/// A srun that had to be SIGKILLed has its job cancelled (`cancel_srun_job`).
fn terminate(handle: &duct::Handle, pgid: i32, spec: &Spec) {
    signal_group(pgid, libc::SIGTERM);
    let mut deadline = Instant::now() + spec.grace;
    while Instant::now() < deadline {
        if INTERRUPT.load(Ordering::SeqCst) == KILL {
            deadline = deadline.min(Instant::now() + KILL_NOTICE);
        }
        if let Ok(Some(_)) = handle.wait_timeout(Duration::from_millis(20)) {
            break;
        }
    }
    signal_group(pgid, libc::SIGKILL);
    let killed = handle.wait().is_ok_and(|out| {
        use std::os::unix::process::ExitStatusExt;
        out.status.signal() == Some(libc::SIGKILL)
    });
    if killed && spec.launched && is_srun(&spec.argv) {
        cancel_srun_job(pgid, spec);
    }
}

fn is_srun(argv: &[String]) -> bool {
    argv.first()
        .and_then(|p| Path::new(p).file_name())
        .is_some_and(|n| n == "srun")
}

/// A srun SIGKILLed before it could end its job (no grace, or an agent deaf to SIGTERM past
/// it) leaves that job holding its allocation until the cluster's InactiveLimit, minutes on
/// many clusters. srun ran in a session of its own, so the job's `AllocSID` is srun's pid
/// (`sid`), and its `WorkDir` the folder it ran in: the user's job with both is cancelled
/// (SIGKILL to its steps, whose grace is spent, then the job). Bounded; a failure is a warning.
fn cancel_srun_job(sid: i32, spec: &Spec) {
    let run = |args: &[&str]| -> Option<String> {
        let h = duct::cmd("timeout", [&["10"][..], args].concat())
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .ok()?;
        h.status
            .success()
            .then(|| String::from_utf8_lossy(&h.stdout).into_owned())
    };
    let cwd = spec.cwd.canonicalize().unwrap_or_else(|_| spec.cwd.clone());
    let Some(queue) = run(&["squeue", "--me", "-h", "-O", "JobID:|,AllocSID:|,WorkDir:"]) else {
        log::warn!(
            "{}: srun was killed before it could end its Slurm job, and squeue did not answer: \
             the job may hold its allocation until the cluster's InactiveLimit",
            spec.label
        );
        return;
    };
    let sid = sid.to_string();
    for line in queue.lines() {
        let mut f = line.splitn(3, '|');
        let (Some(job), Some(s), Some(dir)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if s.trim() != sid || Path::new(dir.trim_end()) != cwd {
            continue;
        }
        let job = job.trim();
        let killed = run(&["scancel", "--signal=KILL", "--full", job]).is_some();
        let cancelled = run(&["scancel", job]).is_some();
        if killed || cancelled {
            log::info!(
                "{}: srun was killed before it could end its Slurm job {job}: cancelled it",
                spec.label
            );
        } else {
            log::warn!(
                "{}: srun was killed before it could end its Slurm job {job}, and scancel \
                 failed: the job may hold its allocation until the cluster's InactiveLimit",
                spec.label
            );
        }
    }
}

fn ending_of(status: &std::process::ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => Ending::Exited(c),
        (None, Some(s)) => Ending::Signalled(s),
        (None, None) => Ending::Exited(-1),
    }
}

fn die_with_parent(signal: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        let parent = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong);
        // The parent may have died between fork and prctl: then no signal will ever come.
        if libc::getppid() != parent {
            libc::_exit(137);
        }
    }
    Ok(())
}

fn open_logs(spec: &Spec) -> Result<(File, File), String> {
    let open = |p: &PathBuf| {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("creating log folder {}: {e}", dir.display()))?;
        }
        File::create(p).map_err(|e| format!("creating log {}: {e}", p.display()))
    };
    let out = open(&spec.stdout)?;
    // One log for both streams (tests, sims): share one open file so the writes interleave
    // instead of overwriting each other.
    let err = if spec.stderr == spec.stdout {
        out.try_clone()
            .map_err(|e| format!("sharing log {}: {e}", spec.stdout.display()))?
    } else {
        open(&spec.stderr)?
    };
    Ok((out, err))
}

fn append(path: &PathBuf, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?
        .write_all(text.as_bytes())
}

fn spawn_error(program: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("cannot run `{program}`: program not found ({e})")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot run `{program}`: permission denied (is it executable?) ({e})")
        }
        _ => format!("cannot run `{program}`: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, argv: &[&str], timeout_ms: u64) -> Spec {
        Spec {
            label: "test".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: dir.to_path_buf(),
            env: vec![("ORCH_X".into(), "42".into())],
            stdin: None,
            stdout: dir.join("out.log"),
            stderr: dir.join("err.log"),
            timeout: Duration::from_millis(timeout_ms),
            grace: Duration::from_millis(500),
            launched: false,
            env_clear: false,
        }
    }

    #[test]
    fn exit_status_env_and_output_file() {
        let d = tempfile::tempdir().unwrap();
        let f = run(&spec(
            d.path(),
            &["sh", "-c", "echo $ORCH_X; exit 3"],
            10_000,
        ));
        assert_eq!(f.ending, Ending::Exited(3));
        assert_eq!(
            std::fs::read_to_string(d.path().join("out.log")).unwrap(),
            "42\n"
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_failure_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let f = run(&spec(d.path(), &["/no/such/program"], 10_000));
        assert!(matches!(f.ending, Ending::SpawnFailed(ref m) if m.contains("not found")));
        let err = std::fs::read_to_string(d.path().join("err.log")).unwrap();
        assert!(err.contains("/no/such/program"), "{err}");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("gc.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let f = run(&spec(d.path(), &["sh", "-c", &script], 300));
        assert_eq!(f.ending, Ending::TimedOut);
        assert!(f.elapsed < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild is gone (or a zombie being reaped by init). SIGKILL is delivered
        // asynchronously, so give the kernel a moment to tear it down.
        let gone = || {
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            st.is_empty() || st.contains(") Z")
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone(), "the grandchild {pid} survived");
    }
}
