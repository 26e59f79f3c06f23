//! Spawning and supervising the child processes orch runs for a round: agents, sims and tests.
//! This is the only module that starts them or sends them signals.
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

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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
// The registry of live process groups.

type Observer = Box<dyn Fn(&[i32]) + Send + Sync>;

fn registry() -> &'static Mutex<BTreeSet<i32>> {
    static LIVE: OnceLock<Mutex<BTreeSet<i32>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(BTreeSet::new()))
}

fn observer() -> &'static Mutex<Option<Observer>> {
    static OBS: OnceLock<Mutex<Option<Observer>>> = OnceLock::new();
    OBS.get_or_init(|| Mutex::new(None))
}

/// Called with the live groups whenever one starts or ends (the crash journal listens).
pub fn set_observer(f: Option<Observer>) {
    *observer().lock().unwrap_or_else(|e| e.into_inner()) = f;
}

fn registry_change(add: Option<i32>, remove: Option<i32>) {
    // The observer is told under the registry's lock, so that what it records can never be an
    // older snapshot written after a newer one.
    let mut live = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = add {
        live.insert(p);
    }
    if let Some(p) = remove {
        live.remove(&p);
    }
    if let Some(f) = observer()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        f(&live.iter().copied().collect::<Vec<_>>());
    }
}

pub fn live_groups() -> Vec<i32> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect()
}

fn kill_all(signal: i32) {
    for pgid in live_groups() {
        signal_group(pgid, signal);
    }
}

/// Sends `signal` to process group `pgid`; a group that is gone already is not an error.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Whether any process of group `pgid` is still alive.
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

/// The variable every child gets with orch's pid: how a later orch recognises, in a crashed
/// one's journal, the process groups that are really its children's.
pub const PID_VAR: &str = "ORCH_PID";

/// Whether some live process of group `pgid` carries `ORCH_PID=<orch_pid>` in its environment,
/// i.e. was started by that orch (directly or as a grandchild). Hours can pass between a crash
/// and the next orch; by then a group id in the journal may belong to someone else's processes.
pub fn group_started_by(pgid: i32, orch_pid: u32) -> bool {
    let pid = orch_pid.to_string();
    processes()
        .any(|p| p.pgrp() == Some(pgid) && p.env_var(PID_VAR).is_some_and(|v| v == pid.as_bytes()))
}

/// The variable every child gets with its run's token, `<session>-<n>`.
pub const RUN_VAR: &str = "ORCH_RUN";

/// This orch's session: its pid and its start time (clock ticks since boot), unique on this
/// machine until the next reboot even when pids are reused.
pub fn session() -> &'static str {
    static SESSION: OnceLock<String> = OnceLock::new();
    SESSION.get_or_init(|| {
        let start = Proc::me().stat_field(22).unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map(|d| d.as_nanos()).unwrap_or(0).to_string()
        });
        format!("{}.{start}", std::process::id())
    })
}

/// The session token (`<pid>.<start time>`) of live process `pid`, as `session()` makes it
/// for orch; `None` when it is gone or a zombie. A match with a recorded session means that
/// very process, not a later one that reused its pid.
pub fn session_of(pid: i32) -> Option<String> {
    let p = Proc {
        pid,
        dir: PathBuf::from(format!("/proc/{pid}")),
    };
    if p.stat_field(3)? == "Z" {
        return None;
    }
    Some(format!("{pid}.{}", p.stat_field(22)?))
}

/// The processes other than orch that hold `path` open, even deleted since: each pid with the
/// `/proc/PID/fd/N` path through which the file can still be read.
pub fn holders_of(path: &std::path::Path) -> Vec<(i32, PathBuf)> {
    let want = path.as_os_str().as_encoded_bytes().to_vec();
    let mut deleted = want.clone();
    deleted.extend_from_slice(b" (deleted)");
    let mut found = Vec::new();
    for p in processes() {
        let Ok(fds) = std::fs::read_dir(p.dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.as_os_str().as_encoded_bytes();
            if t == want.as_slice() || t == deleted.as_slice() {
                found.push((p.pid, fd.path()));
            }
        }
    }
    found
}

fn next_run_token() -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", session(), RUNS.fetch_add(1, Ordering::Relaxed))
}

/// One process as /proc shows it.
struct Proc {
    pid: i32,
    dir: PathBuf,
}

impl Proc {
    fn me() -> Proc {
        Proc {
            pid: std::process::id() as i32,
            dir: PathBuf::from("/proc/self"),
        }
    }

    /// Field `n` of its `stat`, numbered as proc(5) numbers them (1 is the pid). The command
    /// name (field 2) may hold spaces and parentheses, so counting starts after its last `)`.
    fn stat_field(&self, n: usize) -> Option<String> {
        let stat = std::fs::read_to_string(self.dir.join("stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        rest.split_whitespace()
            .nth(n.checked_sub(3)?)
            .map(str::to_owned)
    }

    fn pgrp(&self) -> Option<i32> {
        self.stat_field(5)?.parse().ok()
    }

    /// The value of `name` in its environment. A zombie's environment reads empty, and a
    /// process of another user's cannot be read: neither has any variable.
    fn env_var(&self, name: &str) -> Option<Vec<u8>> {
        let environ = std::fs::read(self.dir.join("environ")).ok()?;
        environ.split(|&b| b == 0).find_map(|v| {
            v.strip_prefix(name.as_bytes())
                .and_then(|v| v.strip_prefix(b"="))
                .map(<[u8]>::to_vec)
        })
    }
}

/// Every process but orch itself.
fn processes() -> impl Iterator<Item = Proc> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(move |e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            (pid != me).then(|| Proc { pid, dir: e.path() })
        })
}

/// Pids of the live processes whose `ORCH_RUN` value satisfies `matches`, leaving out those
/// still in one of the groups `skip` (their group's signal reaches them).
fn carriers(matches: &dyn Fn(&[u8]) -> bool, skip: &[i32]) -> Vec<i32> {
    processes()
        .filter(|p| p.env_var(RUN_VAR).is_some_and(|v| matches(&v)))
        .filter(|p| skip.is_empty() || !p.pgrp().is_some_and(|g| skip.contains(&g)))
        .map(|p| p.pid)
        .collect()
}

/// SIGKILLs every process carrying a matching token, again until a pass finds none it has not
/// signalled (one may fork between the scan and its death). Returns how many it killed.
fn kill_carriers(matches: &dyn Fn(&[u8]) -> bool, skip: &[i32]) -> usize {
    let mut killed = BTreeSet::new();
    for _ in 0..5 {
        let found: Vec<i32> = carriers(matches, skip)
            .into_iter()
            .filter(|p| !killed.contains(p))
            .collect();
        if found.is_empty() {
            break;
        }
        for &p in &found {
            signal_pid(p, libc::SIGKILL);
            killed.insert(p);
        }
    }
    killed.len()
}

fn signal_pid(pid: i32, signal: i32) {
    // SAFETY: kill(2) on one pid; no memory is involved.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Sleeps in short steps while `busy` holds, for at most `limit`.
fn wait_while(limit: Duration, busy: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && busy() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills what a dead orch (`session`, from its journal) left running outside the groups its
/// journal names (`groups`, reaped by `reap_orphan_groups`): SIGTERM, up to `grace`, SIGKILL.
/// Returns how many processes there were.
pub fn reap_session(session: &str, groups: &[i32], grace: Duration) -> usize {
    if session.is_empty() {
        return 0;
    }
    let prefix = format!("{session}-");
    let ours = |v: &[u8]| v.starts_with(prefix.as_bytes());
    let found = carriers(&ours, groups);
    if found.is_empty() {
        return 0;
    }
    for &p in &found {
        signal_pid(p, libc::SIGTERM);
    }
    wait_while(grace, || !carriers(&ours, groups).is_empty());
    kill_carriers(&ours, groups);
    found.len()
}

/// Kills groups left behind by an earlier orch `orch_pid` that died (named in its journal):
/// SIGTERM, a grace period, SIGKILL. Only groups that are still that orch's are touched.
pub fn reap_orphan_groups(groups: &[i32], orch_pid: u32, grace: Duration) -> usize {
    let alive: Vec<i32> = groups
        .iter()
        .copied()
        .filter(|&g| group_alive(g))
        .filter(|&g| {
            let ours = group_started_by(g, orch_pid);
            if !ours {
                log::info!("process group {g} is no longer orch's (pid {orch_pid}); left alone");
            }
            ours
        })
        .collect();
    for &g in &alive {
        signal_group(g, libc::SIGTERM);
    }
    wait_while(grace, || alive.iter().any(|&g| group_alive(g)));
    for &g in &alive {
        signal_group(g, libc::SIGKILL);
    }
    alive.len()
}

// ---------------------------------------------------------------------------------------------
// The watchdog: what kills orch's children when orch itself is killed.

/// The hidden subcommand (`orch __watchdog SESSION`) that runs the watchdog.
pub const WATCHDOG_ARG: &str = "__watchdog";

/// A SIGKILLed orch can clean up nothing, and `PR_SET_PDEATHSIG` reaches only its direct
/// children: an agent's grandchildren, and daemons that left its group, would run on until the
/// next orch. So orch re-executes itself once, the first time it starts a child, as a small
/// watchdog in a session of its own, holding the read end of a pipe only orch writes to (the
/// write end is close-on-exec: no child holds it). orch tells it each process group it starts
/// and ends. When the pipe closes (orch died, however) or its parent changes, the watchdog
/// SIGKILLs every group still listed and every process carrying orch's session in `ORCH_RUN`
/// (any group), then exits. A launcher's group (srun) first gets the grace period: the kernel
/// already sent its leader SIGTERM (its parent-death signal), so that it can cancel its job
/// step. On a normal exit the list is empty and the watchdog only sweeps once.
///
/// The watchdog is also the one witness of a child's end that keeps running when orch is
/// stopped (SIGSTOP, Ctrl-Z): every 50 ms it looks at each listed group's leader, and when it
/// finds a zombie (ended, not yet reaped: orch is not looking) it writes the moment
/// (`CLOCK_MONOTONIC`, nanoseconds) to the group's end file, which orch reads when it wakes up
/// after a gap (see `end_time`) and the watchdog removes when the group is ended.
///
/// Cost: one process per orch, one short write per child started or ended, one read of
/// `/proc/PID/stat` per running child every 50 ms.
mod watchdog {
    use super::*;
    use std::io::{BufRead, Write};
    use std::sync::atomic::AtomicBool;

    static ENABLED: AtomicBool = AtomicBool::new(false);

    fn pipe() -> &'static Mutex<Option<std::process::ChildStdin>> {
        static PIPE: OnceLock<Mutex<Option<std::process::ChildStdin>>> = OnceLock::new();
        PIPE.get_or_init(|| Mutex::new(None))
    }

    pub fn enable() {
        ENABLED.store(true, Ordering::SeqCst);
    }

    /// `end_file`: where to write when it saw the group's leader end (the last field: a path
    /// may hold spaces).
    pub fn started(pgid: i32, launched: bool, grace: Duration, token: &str, end_file: &Path) {
        let grace_ms = grace.as_millis().min(u128::from(u32::MAX));
        tell(&format!(
            "+ {pgid} {} {grace_ms} {token} {}\n",
            u8::from(launched),
            end_file.display()
        ));
    }

    pub fn ended(pgid: i32) {
        tell(&format!("- {pgid}\n"));
    }

    /// Starts the watchdog if it is not running yet: before a child is spawned, so that it
    /// hears of the child at once (`started`), not after a start-up orch could be stopped in.
    pub fn ready() {
        if !ENABLED.load(Ordering::SeqCst) {
            return;
        }
        let mut pipe = pipe().lock().unwrap_or_else(|e| e.into_inner());
        if pipe.is_none() {
            *pipe = start();
        }
    }

    fn tell(line: &str) {
        if !ENABLED.load(Ordering::SeqCst) {
            return;
        }
        let mut pipe = pipe().lock().unwrap_or_else(|e| e.into_inner());
        if pipe.is_none() {
            *pipe = start();
        }
        if let Some(p) = pipe.as_mut() {
            if let Err(e) = p.write_all(line.as_bytes()) {
                log::warn!("the watchdog is gone ({e}); if orch is killed now, what its agents started may run on until the next orch");
                *pipe = None;
                ENABLED.store(false, Ordering::SeqCst);
            }
        }
    }

    fn start() -> Option<std::process::ChildStdin> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().ok()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args([WATCHDOG_ARG, session()])
            // Nothing of orch's: no marker a sweep would match, no terminal, no folder held.
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid is async-signal-safe. A session of its own: the terminal's Ctrl-C
        // (sent to orch's group) and a kill of orch's group do not reach it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => child.stdin.take(),
            Err(e) => {
                log::warn!("cannot start the watchdog ({e}); if orch is killed, what its agents started may run on until the next orch");
                None
            }
        }
    }

    struct Group {
        launched: bool,
        grace: Duration,
        token: String,
        end_file: Option<PathBuf>,
        /// The end file was written.
        end_seen: bool,
    }

    /// Writes the end file of each group whose leader is a zombie: it ended and orch has not
    /// reaped it (orch is stopped, or about to).
    fn note_ends(groups: &mut std::collections::BTreeMap<i32, Group>) {
        for (&pgid, g) in groups.iter_mut() {
            let Some(file) = g.end_file.as_ref().filter(|_| !g.end_seen) else {
                continue;
            };
            let leader = Proc {
                pid: pgid,
                dir: PathBuf::from(format!("/proc/{pgid}")),
            };
            if leader.stat_field(3).as_deref() == Some("Z") {
                g.end_seen = true;
                let _ = std::fs::write(file, format!("{}\n", monotonic_ns()));
            }
        }
    }

    /// The watchdog itself: reads orch's messages until the pipe closes or orch is no longer
    /// its parent, then kills what orch left.
    pub fn main(session: &str) -> i32 {
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let mut groups: std::collections::BTreeMap<i32, Group> = Default::default();
        let mut looked = Instant::now();
        loop {
            if looked.elapsed() >= Duration::from_millis(50) {
                note_ends(&mut groups);
                looked = Instant::now();
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let f: Vec<&str> = line.splitn(6, ' ').collect();
                    match f.as_slice() {
                        ["+", pgid, launched, grace, token, end_file @ ..] => {
                            if let (Ok(pgid), Ok(grace)) = (pgid.parse(), grace.parse()) {
                                let end_file = end_file.first().map(PathBuf::from);
                                // A pid reused by a new group: an old end file is not its own.
                                if let Some(f) = &end_file {
                                    let _ = std::fs::remove_file(f);
                                }
                                groups.insert(
                                    pgid,
                                    Group {
                                        launched: *launched == "1",
                                        grace: Duration::from_millis(grace),
                                        token: token.to_string(),
                                        end_file,
                                        end_seen: false,
                                    },
                                );
                            }
                        }
                        ["-", pgid] => {
                            if let Some(g) =
                                pgid.parse::<i32>().ok().and_then(|p| groups.remove(&p))
                            {
                                // orch has read it (or had no need to) before it said so.
                                if let (true, Some(f)) = (g.end_seen, &g.end_file) {
                                    let _ = std::fs::remove_file(f);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // SAFETY: as above.
                    if unsafe { libc::getppid() } != parent {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        clean_up(session, &groups);
        0
    }

    fn clean_up(session: &str, groups: &std::collections::BTreeMap<i32, Group>) {
        for g in groups.values().filter(|g| g.end_seen) {
            if let Some(f) = &g.end_file {
                let _ = std::fs::remove_file(f);
            }
        }
        if session.is_empty() {
            return;
        }
        let prefix = format!("{session}-");
        let launched: Vec<(i32, &Group)> = groups
            .iter()
            .filter(|(_, g)| g.launched)
            .map(|(&p, g)| (p, g))
            .collect();
        for (&pgid, g) in groups {
            if !g.launched {
                signal_group(pgid, libc::SIGKILL);
            }
        }
        let spared: Vec<i32> = launched.iter().map(|(p, _)| *p).collect();
        let is_launched = |v: &[u8]| launched.iter().any(|(_, g)| v == g.token.as_bytes());
        kill_carriers(
            &|v: &[u8]| v.starts_with(prefix.as_bytes()) && !is_launched(v),
            &spared,
        );
        if !launched.is_empty() {
            let grace = launched
                .iter()
                .map(|(_, g)| g.grace)
                .max()
                .unwrap_or_default();
            wait_while(grace, || spared.iter().any(|&g| group_alive(g)));
            for &g in &spared {
                signal_group(g, libc::SIGKILL);
            }
        }
        kill_carriers(&|v: &[u8]| v.starts_with(prefix.as_bytes()), &[]);
    }
}

/// From `main`: lets orch start its watchdog (see `watchdog`) when it first starts a child.
/// Off in library tests, whose executable is not orch.
pub fn enable_watchdog() {
    watchdog::enable();
}

/// From `main`: when orch was started as its own watchdog (`orch __watchdog SESSION`), runs
/// it and returns its exit status.
pub fn run_watchdog_if_asked() -> Option<i32> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(WATCHDOG_ARG) {
        return None;
    }
    Some(watchdog::main(&args.next().unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// Running one process.

/// Runs `spec` to its end, whatever that end is. Never panics on a bad command: a program that
/// cannot start is `Ending::SpawnFailed`, with the OS error also written to its stderr log.
pub fn run(spec: &Spec) -> Finished {
    run_with(spec, true)
}

/// Like [`run`], for a process that reports on the run rather than doing its work (a hook): it
/// starts even after an interrupt and the first signal leaves it alone, so "orch was stopped"
/// still reaches a person. Its own timeout and a second signal still end it, and it is killed
/// with its group and descendants like any child: nothing outlives orch.
pub fn run_past_interrupt(spec: &Spec) -> Finished {
    run_with(spec, false)
}

fn run_with(spec: &Spec, interruptible: bool) -> Finished {
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
    let (ending, ended_at) = supervise(&handle, pgid, spec, interruptible, spawned, &end_file);
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

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads on Linux, and one that orch and
/// its watchdog share.
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
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
    fn a_group_that_is_not_orchs_is_never_reaped() {
        use std::os::unix::process::CommandExt;
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = stranger.id() as i32;
        // A journal naming this group, written by an orch whose pid the stranger does not carry.
        let killed = reap_orphan_groups(&[pgid], 1, Duration::from_millis(100));
        let alive = stranger.try_wait().unwrap().is_none();
        let _ = stranger.kill();
        let _ = stranger.wait();
        assert_eq!(killed, 0);
        assert!(alive, "a stranger's process group was killed");
    }

    #[test]
    fn children_carry_orchs_pid_so_a_later_orch_can_reap_them() {
        use std::os::unix::process::CommandExt;
        let d = tempfile::tempdir().unwrap();
        // What an agent leaves when orch dies: a grandchild in the group, the leader gone.
        let pidfile = d.path().join("gc.pid");
        let script = format!("sleep 30 & echo $! > {}", pidfile.display());
        let leader = std::process::Command::new("sh")
            .args(["-c", &script])
            .env(PID_VAR, "4242")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id() as i32;
        let _ = leader.wait_with_output();
        assert!(group_started_by(pgid, 4242));
        assert!(!group_started_by(pgid, 4243));
        assert_eq!(
            reap_orphan_groups(&[pgid], 4242, Duration::from_millis(200)),
            1
        );
        let gc = std::fs::read_to_string(&pidfile).unwrap();
        let stat =
            || std::fs::read_to_string(format!("/proc/{}/stat", gc.trim())).unwrap_or_default();
        let t0 = Instant::now();
        while !(stat().is_empty() || stat().contains(") Z")) {
            assert!(t0.elapsed() < Duration::from_secs(3), "{}", stat());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the sweep for escaped processes costs at the end of every run: one pass over
    /// /proc that matches nothing. A figure for BENCHMARKS.md, not a check:
    /// `cargo test --release --lib sweep_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sweep_cost() {
        let t = Instant::now();
        for _ in 0..200 {
            kill_carriers(&|v: &[u8]| v == b"no such token", &[1]);
        }
        eprintln!(
            "one sweep over {} processes: {:?}",
            processes().count(),
            t.elapsed() / 200
        );
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
