//! The processes orch started, seen from outside any one run: the registry of live process
//! groups (which the interrupt path and the crash journal read), the markers every child carries
//! (`ORCH_PID`, `ORCH_RUN`) and the scans of /proc that find their carriers, and the reaping of
//! what a dead orch left behind. It stands apart from `process`, which starts and supervises one
//! run, because the watchdog and the next orch's recovery need it without running anything;
//! `process` re-exports its public items, the paths callers use.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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

pub(super) fn registry_change(add: Option<i32>, remove: Option<i32>) {
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

pub(super) fn kill_all(signal: i32) {
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

pub(super) fn next_run_token() -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", session(), RUNS.fetch_add(1, Ordering::Relaxed))
}

/// One process as /proc shows it.
pub(super) struct Proc {
    pub(super) pid: i32,
    pub(super) dir: PathBuf,
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
    pub(super) fn stat_field(&self, n: usize) -> Option<String> {
        self.stat_fields()?.into_iter().nth(n.checked_sub(3)?)
    }

    /// Its `stat` fields from the third (the state) on, read once.
    fn stat_fields(&self) -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(self.dir.join("stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        Some(rest.split_whitespace().map(str::to_owned).collect())
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
/// The CPU seconds used by the processes of group `pgid` and by their children that ended
/// (`utime`, `stime`, `cutime`, `cstime`; Linux `/proc`). `None` when none of it is left.
pub fn group_cpu(pgid: i32) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let mut total = 0u64;
    let mut seen = false;
    for fields in processes().filter_map(|p| p.stat_fields()) {
        // Numbered from the state (field 3): pgrp is field 5, utime..cstime fields 14 to 17.
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        seen = true;
        total += fields
            .get(11..15)
            .unwrap_or(&[])
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
    }
    seen.then(|| total as f64 / ticks as f64)
}

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
pub(super) fn kill_carriers(matches: &dyn Fn(&[u8]) -> bool, skip: &[i32]) -> usize {
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
pub(super) fn wait_while(limit: Duration, busy: impl Fn() -> bool) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
