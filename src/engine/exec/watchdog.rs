//! The watchdog: what kills orch's children when orch itself is killed.
//!
//! A SIGKILLed orch can clean up nothing, and `PR_SET_PDEATHSIG` reaches only its direct
//! children: an agent's grandchildren, and daemons that left its group, would run on until the
//! next orch. So orch re-executes itself once, the first time it starts a child, as a small
//! watchdog in a session of its own, holding the read end of a pipe only orch writes to (the
//! write end is close-on-exec: no child holds it). orch tells it each process group it starts
//! and ends. When the pipe closes (orch died, however) or its parent changes, the watchdog
//! SIGKILLs every group still listed and every process carrying orch's session in `ORCH_RUN`
//! (any group), then exits. A launcher's group (srun) first gets the grace period: the kernel
//! already sent its leader SIGTERM (its parent-death signal), so that it can cancel its job
//! step. On a normal exit the list is empty and the watchdog only sweeps once.
//!
//! The watchdog is also the one witness of a child's end that keeps running when orch is
//! stopped (SIGSTOP, Ctrl-Z): every 50 ms it looks at each listed group's leader, and when it
//! finds a zombie (ended, not yet reaped: orch is not looking) it writes the moment
//! (`CLOCK_MONOTONIC`, nanoseconds) to the group's end file, which orch reads when it wakes up
//! after a gap (see `end_time`) and the watchdog removes when the group is ended.
//!
//! Cost: one process per orch, one short write per child started or ended, one read of
//! `/proc/PID/stat` per running child every 50 ms.
//!
//! `process` tells it of each group it starts and ends (`ready`, `started`, `ended`) and
//! re-exports the entry points `main` calls.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::reap::{group_alive, kill_carriers, session, signal_group, wait_while, Proc};

/// The hidden subcommand (`orch __watchdog SESSION`) that runs the watchdog.
pub const WATCHDOG_ARG: &str = "__watchdog";

static ENABLED: AtomicBool = AtomicBool::new(false);

fn pipe() -> &'static Mutex<Option<std::process::ChildStdin>> {
    static PIPE: OnceLock<Mutex<Option<std::process::ChildStdin>>> = OnceLock::new();
    PIPE.get_or_init(|| Mutex::new(None))
}

fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// `end_file`: where to write when it saw the group's leader end (the last field: a path
/// may hold spaces).
pub(super) fn started(pgid: i32, launched: bool, grace: Duration, token: &str, end_file: &Path) {
    let grace_ms = grace.as_millis().min(u128::from(u32::MAX));
    tell(&format!(
        "+ {pgid} {} {grace_ms} {token} {}\n",
        u8::from(launched),
        end_file.display()
    ));
}

pub(super) fn ended(pgid: i32) {
    tell(&format!("- {pgid}\n"));
}

/// Starts the watchdog if it is not running yet: before a child is spawned, so that it
/// hears of the child at once (`started`), not after a start-up orch could be stopped in.
pub(super) fn ready() {
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
fn main(session: &str) -> i32 {
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
                        if let Some(g) = pgid.parse::<i32>().ok().and_then(|p| groups.remove(&p)) {
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

/// From `main`: lets orch start its watchdog (see `watchdog`) when it first starts a child.
/// Off in library tests, whose executable is not orch.
pub fn enable_watchdog() {
    enable();
}

/// From `main`: when orch was started as its own watchdog (`orch __watchdog SESSION`), runs
/// it and returns its exit status.
pub fn run_watchdog_if_asked() -> Option<i32> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(WATCHDOG_ARG) {
        return None;
    }
    Some(main(&args.next().unwrap_or_default()))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads on Linux, and one that orch and
/// its watchdog share.
pub(super) fn monotonic_ns() -> u64 {
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
