//! Fault injection: what happens at night, done for real to the built binary. A hung agent, a
//! Ctrl-C, a second Ctrl-C, a SIGKILLed orch, a second orch from cron, a corrupt state file,
//! garbage and floods from agents, a daemon left holding a log open, hostile missions, no git,
//! no commits, an unwritable or full state folder.
//!
//! Each test asserts what the user is left with: the exit status, the round log's status, HEAD
//! and the working tree, the refs that keep the agents' work, and that no process carrying the
//! test's unique marker survives. Bounds on time are generous (a loaded CI machine must pass);
//! waits poll for a file an agent writes instead of sleeping a guessed time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{agent_cmd, assert_none_left, gone, skip, tests_cmd, Find, Orch, Repo};
use orch::roundlog::{RoundStatus, RunStatus};
use serde_json::json;

/// A marker unique to one test, put on every agent's command line (`--tag`).
fn marker(test: &str) -> String {
    format!("orch-fault-{test}-{}", std::process::id())
}

/// Runs orch until the agent hangs (its `--hang-once` file `hung` appears, after everything it
/// writes, so its next run will not hang), then SIGKILLs orch mid-round.
fn kill_orch_once_hung(repo: &Repo, hung: &Path) {
    let mut orch = Orch::start(repo, &["run"]);
    orch.wait_for(hung, Duration::from_secs(10));
    orch.signal(libc::SIGKILL);
    assert_eq!(orch.wait(Duration::from_secs(5)), 128 + libc::SIGKILL);
}

/// Whether process `pid` (from a pid file) is alive and not a zombie.
fn alive(pid_file: &Path) -> bool {
    crate::common::alive(&std::fs::read_to_string(pid_file).unwrap_or_default())
}

/// The files of a commit (or ref), one a line.
fn files_at(repo: &Repo, rev: &str) -> String {
    repo.git(&["ls-tree", "-r", "--name-only", rev])
}

/// The journal file `name` of the repository's one state folder, kept by orch under the git
/// common folder (`.git/orch/<state-id>/`), out of reach of `git clean`; `None` if absent.
fn journal(repo: &Repo, name: &str) -> Option<PathBuf> {
    let dirs = std::fs::read_dir(repo.path().join(".git/orch")).ok()?;
    dirs.flatten()
        .map(|d| d.path().join(name))
        .find(|p| p.exists())
}

/// A scratch folder outside the repository, for the files agents write to say they started.
fn flags() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------------------------
// Signals.

/// A hung agent (and the daemon it left, which ignores SIGTERM) in the shared tree, then
/// Ctrl-C: children terminated, the tree kept under refs/orch/interrupted/round-1, the base
/// restored, the round logged as interrupted, exit 130.
#[test]
fn sigint_stops_the_round_keeps_the_tree_and_restores_the_base() {
    let m = marker("sigint");
    let f = flags();
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 3, "killGraceS": 0.5, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", "src/wip.txt=half done",
            "--daemon", &path_str(&f.path().join("daemon.pid")),
            "--hang-once", &path_str(&f.path().join("hung"))])}]
    }));
    let base = repo.head();
    let mut orch = Orch::start(&repo, &["run"]);
    // `hung` appears just before the agent hangs: once it exists, the agent is past everything
    // it writes, and its next run will not hang.
    orch.wait_for(&f.path().join("hung"), Duration::from_secs(10));
    orch.signal(libc::SIGINT);
    let code = orch.wait(Duration::from_secs(10));
    assert_eq!(code, 130, "{}", orch.stderr());
    assert_none_left(&m);
    let log = repo.round_log_typed(1);
    assert_eq!(log.status, RoundStatus::Interrupted, "{log:#?}");
    assert_eq!(log.agent("a").status, RunStatus::Cancelled);
    assert_eq!(
        log.kept_ref.as_deref(),
        Some("refs/orch/interrupted/round-1")
    );
    assert!(
        !repo.has_round_log(2),
        "a round started after the interrupt"
    );
    assert_eq!(repo.head(), base);
    assert_eq!(repo.status(), "");
    assert_eq!(
        repo.git(&["show", "refs/orch/interrupted/round-1:src/wip.txt"]),
        "half done"
    );
    assert!(journal(&repo, "journal.json").is_none());
    // The interrupted round did not finish: the next run runs it again, keeping its log.
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert_eq!(repo.round_log_typed(1).status, RoundStatus::Ok);
    assert!(repo.exists(".orch/rounds/round-0001.prev-1.json"));
    assert!(!repo.has_round_log(2));
    assert_none_left(&m);
}

/// SIGINT during a replay (`orch round 1` after round 1): the replay stops as a round does, its
/// agent's partial work is kept under the replay's own refs, and nothing live moves: not the
/// branch, the tree (a file the user has not committed included), the live refs, the state or
/// round 1's log.
#[test]
fn sigint_during_a_replay_keeps_its_work_in_its_own_refs_and_touches_nothing_live() {
    let m = marker("replay-sigint");
    let f = flags();
    let hung = f.path().join("hung");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", "src/wip.txt=half done", "--hang-once", &path_str(&hung)])}]
    }));
    // The round itself does not hang (the file is there); its replay will.
    std::fs::write(&hung, "").unwrap();
    repo.orch(&["run"]).expect(0);
    std::fs::remove_file(&hung).unwrap();
    repo.write("notes.txt", "mine, not committed\n");
    let (head, status) = (repo.head(), repo.status());
    let refs = repo.git(&["for-each-ref"]);
    let (state, log1) = (
        repo.read(".orch/state.json"),
        repo.read(".orch/rounds/round-0001.json"),
    );
    let mut orch = Orch::start(&repo, &["round", "1"]);
    orch.wait_for(&hung, Duration::from_secs(10));
    orch.signal(libc::SIGINT);
    let code = orch.wait(Duration::from_secs(10));
    assert_eq!(code, 130, "{}", orch.stderr());
    assert_none_left(&m);
    assert_eq!(repo.head(), head);
    assert_eq!(repo.status(), status);
    assert_eq!(repo.read("notes.txt"), "mine, not committed\n");
    assert_eq!(repo.read(".orch/state.json"), state);
    assert_eq!(repo.read(".orch/rounds/round-0001.json"), log1);
    let after: Vec<String> = repo
        .git(&["for-each-ref"])
        .lines()
        .filter(|l| !l.contains("refs/orch/replay/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(after.join("\n"), refs);
    let log: serde_json::Value =
        serde_json::from_str(&repo.read(".orch/replays/round-0001-1/rounds/round-0001.json"))
            .unwrap();
    assert_eq!(log["status"], "interrupted", "{log:#}");
    let kept = "refs/orch/replay/round-1-1/cancelled/round-1/a";
    assert_eq!(
        repo.git(&["show", &format!("{kept}:src/wip.txt")]),
        "half done"
    );
    let worktrees = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(!worktrees.contains("replays"), "{worktrees}");
}

/// A replay SIGKILLed mid-round leaves its journal and its worktrees. The next `orch run` (or
/// `orch round N`) cleans up after it as after a dead round, under the replay's own refs: its
/// agent's partial work kept in `refs/orch/replay/round-1-1/cancelled/round-1/a`, its
/// worktrees removed, its log `interrupted`, its journal cleared, nothing live touched. Old
/// replay folders are pruned to the newest 10; their refs stay, and a new replay never takes
/// a pruned one's number.
#[test]
fn a_killed_replay_is_cleaned_up_by_the_next_run_and_old_replays_are_pruned() {
    let m = marker("replay-kill");
    let f = flags();
    let hung = f.path().join("hung");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", "src/wip.txt=half done", "--hang-once", &path_str(&hung)])}]
    }));
    std::fs::write(&hung, "").unwrap();
    repo.orch(&["run"]).expect(0);
    std::fs::remove_file(&hung).unwrap();
    let (head, state) = (repo.head(), repo.read(".orch/state.json"));
    let mut orch = Orch::start(&repo, &["round", "1"]);
    orch.wait_for(&hung, Duration::from_secs(10));
    orch.signal(libc::SIGKILL);
    orch.wait(Duration::from_secs(10));
    let dead = ".orch/replays/round-0001-1";
    assert!(repo.exists(&format!("{dead}/journal.json")));
    let worktrees = || repo.git(&["worktree", "list", "--porcelain"]);
    assert!(worktrees().contains("replays"), "{}", worktrees());

    let run = repo.orch(&["run"]).expect(0);
    let err = run.stderr();
    assert!(err.contains("replay 1 of round 1"), "{err}");
    assert_none_left(&m);
    assert!(!repo.exists(&format!("{dead}/journal.json")), "{err}");
    assert!(!worktrees().contains("replays"), "{}", worktrees());
    assert_eq!(
        repo.git(&[
            "show",
            "refs/orch/replay/round-1-1/cancelled/round-1/a:src/wip.txt"
        ]),
        "half done"
    );
    let log: serde_json::Value =
        serde_json::from_str(&repo.read(&format!("{dead}/rounds/round-0001.json"))).unwrap();
    assert_eq!(log["status"], "interrupted", "{log:#}");
    assert_eq!(repo.head(), head);
    assert_eq!(repo.status(), "");
    assert_eq!(repo.read(".orch/state.json"), state);

    // Eleven more replays, then a run: the newest 10 folders are kept.
    for _ in 0..11 {
        repo.orch(&["round", "1"]).expect(0);
    }
    repo.orch(&["run"]).expect(0);
    let mut kept: Vec<String> = std::fs::read_dir(repo.pathbuf(".orch/replays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let want: Vec<String> = (3..=12).map(|k| format!("round-0001-{k}")).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(kept, want_sorted);
    // The pruned replays' refs stay; the next replay takes a number of its own.
    assert_eq!(
        repo.git(&[
            "show",
            "refs/orch/replay/round-1-1/cancelled/round-1/a:src/wip.txt"
        ]),
        "half done"
    );
    repo.git(&["rev-parse", "--verify", "refs/orch/replay/round-1-2/commit"]);
    repo.orch(&["round", "1"]).expect(0);
    assert!(repo.exists(".orch/replays/round-0001-13"));
}

/// A dead replay whose journal cannot be read (torn, hand-edited) never stops the live run: it
/// is said and left as it is.
#[test]
fn a_replay_journal_that_cannot_be_read_does_not_stop_the_run() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt={round}"])}]
    }));
    repo.write(
        ".orch/replays/round-0001-1/journal.json",
        "{\"round\": 1, torn",
    );
    let run = repo.orch(&["run"]).expect(0);
    let err = run.stderr();
    assert!(err.contains("could not be cleaned up"), "{err}");
    assert_eq!(repo.round_log(1)["status"], "ok");
    assert!(repo.exists(".orch/replays/round-0001-1/journal.json"));
}

/// The same with worktree isolation and SIGTERM: the agent's partial work, in its own
/// worktree, is kept under refs/orch/cancelled/round-1/AGENT; the main tree never moved.
#[test]
fn sigterm_keeps_a_worktree_agents_partial_work() {
    let m = marker("sigterm");
    let f = flags();
    let started = f.path().join("started");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&[
                "--tag", &m, "--write", "src/wip.txt=half done",
                "--write", &format!("{}=1", path_str(&started)), "--hang"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--tag", &m, "--hang"])}
        ]
    }));
    let base = repo.head();
    let mut orch = Orch::start(&repo, &["run", "--max-concurrency", "1"]);
    orch.wait_for(&started, Duration::from_secs(10));
    orch.signal(libc::SIGTERM);
    assert_eq!(orch.wait(Duration::from_secs(10)), 130, "{}", orch.stderr());
    assert_none_left(&m);
    let log = repo.round_log_typed(1);
    assert_eq!(log.status, RoundStatus::Interrupted);
    // b never started: with one slot it was queued behind a, and nothing starts after a signal.
    assert_eq!(log.agent("b").status, RunStatus::Cancelled);
    assert_eq!(log.agent("b").elapsed_ms, 0);
    assert_eq!(repo.head(), base);
    assert_eq!(repo.status(), "");
    assert_eq!(
        repo.git(&["show", "refs/orch/cancelled/round-1/a:src/wip.txt"]),
        "half done"
    );
}

/// An agent that ignores SIGTERM and a grace period of 30 s: the second Ctrl-C kills it at
/// once, and orch exits 130 long before the grace period would have ended.
#[test]
fn a_second_signal_kills_at_once() {
    let m = marker("second");
    let f = flags();
    let started = f.path().join("started");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 30, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--ignore-term", "--write", "src/wip.txt=x",
            "--write", &format!("{}=1", path_str(&started)), "--hang"])}]
    }));
    let base = repo.head();
    let mut orch = Orch::start(&repo, &["run"]);
    orch.wait_for(&started, Duration::from_secs(10));
    let t0 = Instant::now();
    orch.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        orch.child.try_wait().unwrap().is_none(),
        "the first signal must wait out the grace period"
    );
    orch.signal(libc::SIGINT);
    assert_eq!(orch.wait(Duration::from_secs(10)), 130, "{}", orch.stderr());
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_none_left(&m);
    // Killing at once still leaves the round recorded and the base restored.
    assert_eq!(repo.round_log(1)["status"], "interrupted");
    assert_eq!(repo.head(), base);
    assert_eq!(repo.status(), "");
    assert!(repo.has_ref("refs/orch/interrupted/round-1"));
}

// ---------------------------------------------------------------------------------------------
// A killed orch and the next one.

/// orch is SIGKILLed mid-round. Its agent dies with it (PR_SET_PDEATHSIG) and its watchdog kills
/// the daemons the agent started; the next orch keeps the tree, restores the base, logs the
/// dead round and goes on.
#[test]
fn a_killed_orch_is_recovered_by_the_next_one() {
    let m = marker("sigkill");
    let f = flags();
    let (agent_pid, daemon_pid, escaped_pid) = (
        f.path().join("agent.pid"),
        f.path().join("daemon.pid"),
        f.path().join("escaped.pid"),
    );
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "killGraceS": 0.5, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--round", "1", "--pid", &path_str(&agent_pid),
            "--write", "src/wip.txt=half done", "--daemon", &path_str(&daemon_pid),
            "--setsid-daemon", &path_str(&escaped_pid),
            "--hang-once", &path_str(&f.path().join("hung"))])}]
    }));
    let base = repo.head();
    kill_orch_once_hung(&repo, &f.path().join("hung"));
    // orch's watchdog kills the agent, its daemon and the daemon in a session of its own
    // within a second of the kill, without waiting for a next orch.
    let t0 = Instant::now();
    while [&agent_pid, &daemon_pid, &escaped_pid]
        .iter()
        .any(|p| alive(p))
        && t0.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(&agent_pid), "the agent outlived the SIGKILLed orch");
    assert!(!alive(&daemon_pid), "the agent's daemon outlived orch");
    assert!(
        !alive(&escaped_pid),
        "the daemon in its own session outlived orch"
    );
    assert!(journal(&repo, "journal.json").is_some());

    let run = repo.orch(&["run"]).expect(0);
    assert!(run.stderr().contains("recovered"), "{}", run.stderr());
    assert_none_left(&m);
    assert!(journal(&repo, "journal.json").is_none());
    assert!(journal(&repo, "journal-groups.json").is_none());
    assert_eq!(
        repo.git(&["show", "refs/orch/interrupted/round-1:src/wip.txt"]),
        "half done"
    );
    // The dead round's log is kept aside; the round did not finish, so it ran again (the agent
    // does not hang the second time), then round 2 (where the agent does nothing).
    let dead: serde_json::Value =
        serde_json::from_str(&repo.read(".orch/rounds/round-0001.prev-1.json")).unwrap();
    assert_eq!(dead["status"], "interrupted", "{dead:#}");
    assert_eq!(dead["keptRef"], "refs/orch/interrupted/round-1");
    assert_eq!(repo.round_log(1)["status"], "ok");
    assert_eq!(repo.round_log(2)["status"], "ok");
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]), base);
    assert_eq!(repo.read("src/wip.txt"), "half done\n");
    assert_eq!(repo.status(), "");
}

/// Worktree isolation: what the dead orch never merged sits in the agent's worktree. The next
/// orch recovers only (`--rounds 0`): nothing left running, the dead round logged, the main tree
/// at its base and clean. Returns the recovering orch's stderr.
fn recover_a_worktree_agent(test: &str, repo: &Repo, agent_args: &[&str]) -> String {
    let m = marker(test);
    let f = flags();
    let hung = f.path().join("hung");
    let mut args = vec!["--tag", m.as_str()];
    args.extend_from_slice(agent_args);
    args.extend(["--hang-once", hung.to_str().unwrap()]);
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&args)}]
    }));
    let base = repo.head();
    kill_orch_once_hung(repo, &hung);
    let run = repo.orch(&["run", "--rounds", "0"]).expect(0);
    assert_none_left(&m);
    assert_eq!(repo.round_log(1)["status"], "interrupted");
    assert_eq!(repo.head(), base);
    assert_eq!(repo.status(), "");
    run.stderr()
}

/// The partial work is kept where an interrupt would keep it, refs/orch/cancelled/round-1/AGENT,
/// and the worktree is cleaned so the next round there starts from the base.
#[test]
fn recovery_keeps_the_work_left_in_an_agents_worktree() {
    let repo = Repo::new();
    let stderr =
        recover_a_worktree_agent("sigkill-wt", &repo, &["--write", "src/wip.txt=half done"]);
    assert!(stderr.contains("recovered"), "{stderr}");
    assert_eq!(
        repo.git(&["show", "refs/orch/cancelled/round-1/a:src/wip.txt"]),
        "half done"
    );
    assert!(!repo.exists(".orch/worktrees/a/src/wip.txt"));
}

/// The same when the agent had committed its work itself before orch died: its commit is in
/// no tree but its worktree's, and recovery keeps it in the ref.
#[test]
fn recovery_keeps_an_agents_own_commit_left_in_its_worktree() {
    let repo = Repo::new();
    let stderr = recover_a_worktree_agent(
        "sigkill-commit",
        &repo,
        &[
            "--write",
            "src/done.txt=committed by the agent",
            "--commit",
            "agent's own commit",
        ],
    );
    assert!(stderr.contains("refs/orch/cancelled/round-1/a"), "{stderr}");
    assert_eq!(
        repo.git(&["show", "refs/orch/cancelled/round-1/a:src/done.txt"]),
        "committed by the agent"
    );
}

// ---------------------------------------------------------------------------------------------
// The lock.

/// A second orch (cron) while one runs: exit 4, naming the first one's pid; it changes nothing.
#[test]
fn a_second_orch_exits_4_naming_the_first() {
    let m = marker("lock");
    let f = flags();
    let started = f.path().join("started");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", &format!("{}=1", path_str(&started)), "--hang"])}]
    }));
    let mut first = Orch::start(&repo, &["run"]);
    first.wait_for(&started, Duration::from_secs(10));
    let events_before = repo.read(".orch/events.ndjson");
    let second = repo.orch(&["run"]).expect(4);
    assert!(
        second.stderr().contains(&format!("pid {}", first.pid())),
        "{}",
        second.stderr()
    );
    repo.orch(&["task", "add", "--agent", "a", "t"]).expect(4);
    repo.orch(&["round", "1"]).expect(4);
    // The losers wrote nothing into the state folder (the lock comes before the event log).
    assert_eq!(repo.read(".orch/events.ndjson"), events_before);
    first.signal(libc::SIGINT);
    assert_eq!(first.wait(Duration::from_secs(10)), 130);
    assert_none_left(&m);
}

/// A lock file left by a dead orch (its pid and session inside) never blocks: the kernel
/// dropped the flock, and no live process holds the file.
#[test]
fn a_stale_lock_never_blocks() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])}]
    }));
    repo.write(
        ".git/orch/lock",
        "{\"pid\": 999999999, \"session\": \"999999999.1\", \"stateDir\": \"/x/.orch\"}\n",
    );
    repo.orch(&["run"]).expect(0);
    assert_eq!(repo.round_log(1)["status"], "ok");
    // The lock file now names the orch that just exited: no more a block than the first was.
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert_eq!(repo.round_log(2)["status"], "ok");
}

// ---------------------------------------------------------------------------------------------
// Corrupt and hostile input.

/// A state.json that does not parse stops orch before any round, naming the file and the way
/// out; nothing runs and the repository is untouched.
#[test]
fn a_corrupt_state_file_is_an_error_that_names_it() {
    let f = flags();
    let ran = f.path().join("ran");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--write", &format!("{}=1", path_str(&ran)), "--write", "src/a.txt=a"])}]
    }));
    let base = repo.head();
    repo.write(
        ".orch/state.json",
        "{\"lastRound\": 3, \"agents\": {\0garbage",
    );
    let run = repo.orch(&["run"]).expect(2);
    assert!(
        run.stderr().contains(".orch/state.json") && run.stderr().contains("corrupt"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("move it aside"), "{}", run.stderr());
    repo.orch(&["status"]).expect(2);
    assert!(!ran.exists());
    assert_eq!(repo.head(), base);
    assert_eq!(repo.status(), "");
}

/// Garbage from an agent: binary stdout, a result file that is not JSON, a file whose name is
/// not UTF-8. The round runs, the file is committed byte for byte, the cost is unknown.
#[test]
fn garbage_output_and_non_utf8_file_names_are_handled() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--binary", "256", "--raw-result", "\u{1}{not json", "--bad-name", "src/bad", "--no-json"])}]
    }));
    let base = repo.head();
    let run = repo.orch(&["run"]).expect(0);
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    let a = Repo::agent(&log, "a");
    assert_eq!(a["status"], "ok");
    assert_eq!(a["costKnown"], false, "{a:#}");
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]), base);
    // `git ls-tree -z` gives the name's raw bytes.
    let out = Command::new("git")
        .args(["ls-tree", "-r", "-z", "--name-only", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert!(
        out.stdout
            .split(|&b| b == 0)
            .any(|name| name == b"src/bad\xff"),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(repo.status(), "");
}

/// The peak resident memory of a running process, in kB (0 once it is gone).
fn peak_rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 200 MB on an agent's stdout and 100 MB from the test command: the output goes to files,
/// and orch's own memory stays small (it reads only the tails).
#[test]
fn a_flood_of_output_does_not_grow_orchs_memory() {
    let m = marker("flood");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--flood", "200", "--write", "src/a.txt=a"])}],
        "tests": {"command": agent_cmd(&["--tag", &m, "--flood", "100"])}
    }));
    let mut orch = Orch::start(&repo, &["run"]);
    let mut peak = 0;
    let t0 = Instant::now();
    while orch.child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss_kb(orch.pid()));
        assert!(t0.elapsed() < Duration::from_secs(30), "orch hung");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(orch.wait(Duration::from_secs(1)), 0, "{}", orch.stderr());
    assert!(peak > 0, "never saw orch's memory");
    assert!(
        peak < 64 * 1024,
        "orch's peak RSS was {} MB for a 200 MB flood",
        peak / 1024
    );
    let log_size = std::fs::metadata(repo.pathbuf(".orch/logs/round-0001/a.log"))
        .unwrap()
        .len();
    assert!(log_size >= 200 * 1024 * 1024, "{log_size}");
    assert_eq!(repo.round_log(1)["status"], "ok");
    assert_none_left(&m);
}

/// An agent leaves a daemon in a session of its own (`setsid`), out of reach of any group
/// signal: it still carries its run's `ORCH_RUN` token, and orch kills it when the agent's run
/// ends, and says so.
#[test]
fn a_daemon_that_leaves_its_process_group_is_killed_with_its_agent() {
    let m = marker("setsid");
    let f = flags();
    let daemon = f.path().join("daemon.pid");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", "src/a.txt=a", "--setsid-daemon", &path_str(&daemon)])}]
    }));
    let run = repo.orch(&["run"]).expect(0);
    assert!(daemon.exists(), "the agent never started its daemon");
    assert!(
        gone(&std::fs::read_to_string(&daemon).unwrap()),
        "the daemon that left its group survived"
    );
    assert!(
        run.stderr().contains("outside its process group"),
        "{}",
        run.stderr()
    );
    assert_none_left(&m);
    assert_eq!(repo.round_log(1)["status"], "ok");
}

/// A test command that starts a daemon holding its stdout open: orch does not wait for the
/// daemon (outputs go to files) and kills the test command's group once its leader exits.
#[test]
fn a_daemon_left_by_the_tests_neither_hangs_orch_nor_survives() {
    let m = marker("daemon");
    let f = flags();
    let daemon = f.path().join("daemon.pid");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])}],
        "tests": {"command": agent_cmd(&["--tag", &m, "--daemon", &path_str(&daemon)])}
    }));
    let mut orch = Orch::start(&repo, &["run"]);
    assert_eq!(orch.wait(Duration::from_secs(15)), 0, "{}", orch.stderr());
    assert!(daemon.exists(), "the test command never started its daemon");
    assert!(!alive(&daemon));
    assert_none_left(&m);
    let log = repo.round_log(1);
    assert_eq!(log["tests"]["status"], "passed");
    assert!(log["commit"].is_string());
    assert_eq!(repo.status(), "");
}

/// Names and paths in a mission that would escape the state folder or the repository are
/// rejected with the key that holds them, exit 2, before anything runs.
#[test]
fn a_mission_that_tries_to_escape_is_rejected() {
    let repo = Repo::new();
    let cases = [
        (
            json!([{"name": "../x", "phase": "code", "command": "true"}]),
            json!(".orch"),
            "agents[0].name",
        ),
        (
            json!([{"name": "a/b", "phase": "code", "command": "true"}]),
            json!(".orch"),
            "agents[0].name",
        ),
        (
            json!([{"name": "a", "phase": "code", "command": "true"}]),
            json!("../outside"),
            "stateDir",
        ),
        (
            json!([{"name": "a", "phase": "code", "command": "true"}]),
            json!("/tmp/abs"),
            "stateDir",
        ),
    ];
    for (agents, state_dir, key) in cases {
        repo.write(
            "hostile.json",
            &json!({"name": "t", "agents": agents, "stateDir": state_dir}).to_string(),
        );
        for cmd in [
            &["validate", "-m", "hostile.json"][..],
            &["run", "-m", "hostile.json"],
        ] {
            let run = repo.orch(cmd).expect(2);
            assert!(run.stderr().contains(key), "{cmd:?}: {}", run.stderr());
        }
    }
    assert!(!repo.exists("../outside"));
    assert!(!repo.exists(".orch/rounds"));
}

/// 1,000 agents: the mission validates and a round runs quickly, with `when` gating most of
/// them off and ten no-op review agents running.
#[test]
fn a_mission_with_a_thousand_agents_runs_a_round_quickly() {
    let repo = Repo::new();
    let agents: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            if i % 100 == 0 {
                json!({"name": format!("r{i:04}"), "phase": "review", "command": "true"})
            } else {
                json!({"name": format!("c{i:04}"), "phase": "code", "command": "true", "when": "tasks"})
            }
        })
        .collect();
    repo.mission(json!({"name": "big", "rounds": 1, "maxConcurrency": 8, "agents": agents}));
    repo.orch(&["validate"]).expect(0);
    let t0 = Instant::now();
    repo.orch(&["run"]).expect(0);
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let log = repo.round_log(1);
    assert_eq!(log["decisions"].as_array().unwrap().len(), 1000);
    assert_eq!(log["agents"].as_array().unwrap().len(), 10);
    assert_eq!(repo.status(), "");
}

/// No git on PATH, a repository without commits, a folder that is no repository: a clear
/// error and exit 2, never a panic.
#[test]
fn no_git_no_commits_and_no_repository_are_clear_errors() {
    let mission =
        json!({"name": "t", "agents": [{"name": "a", "phase": "code", "command": "true"}]});
    let check = |dir: &Path, env: &[(&str, &str)], expect: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_orch"))
            .arg("run")
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // No git: PATH without it (orch itself is run by its full path).
    let repo = Repo::new();
    repo.mission(mission.clone());
    check(
        repo.path(),
        &[("PATH", "/nonexistent")],
        "git is not installed",
    );
    // No commits yet: the mission file is untracked, but the missing base is what matters.
    let empty = tempfile::tempdir().unwrap();
    assert!(Command::new("git")
        .args(["init", "-q"])
        .current_dir(empty.path())
        .status()
        .unwrap()
        .success());
    std::fs::write(empty.path().join("orch.json"), mission.to_string()).unwrap();
    check(empty.path(), &[], "no commits yet");
    // Not a repository at all.
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(plain.path().join("orch.json"), mission.to_string()).unwrap();
    check(plain.path(), &[], "not inside a git repository");
}

/// A sim is given a staging folder but is not sandboxed: what it writes into the working tree
/// is part of the round's change like an agent's (committed with the round here; reverted and
/// kept in a ref when the tests regress). Nothing is lost and the tree ends clean.
#[test]
fn a_sim_writing_outside_its_folder_lands_in_the_rounds_change() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])}],
        "sims": {"pre": {"command": ["sh", "-c", "echo stray > stray.txt; echo '{}' > \"$ORCH_SIM_OUT/latest.json\""]}}
    }));
    repo.orch(&["run"]).expect(0);
    let files = files_at(&repo, "HEAD");
    assert!(
        files.contains("stray.txt") && files.contains("src/a.txt"),
        "{files}"
    );
    assert_eq!(repo.status(), "");
}

// ---------------------------------------------------------------------------------------------
// The state folder cannot be written.

/// `<state>/rounds` is a file, so no round log can be written (this works as root, where a
/// read-only folder would not stop writes): orch refuses before any agent starts, naming the
/// folder, and the repository stays at its base.
#[test]
fn an_unwritable_state_folder_stops_orch_before_the_round() {
    let f = flags();
    let ran = f.path().join("ran");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--write", &format!("{}=1", path_str(&ran)), "--write", "src/a.txt=a"])}]
    }));
    let base = repo.head();
    repo.write(".orch/rounds", "not a folder");
    let run = repo.orch(&["run"]).expect(2);
    assert!(run.stderr().contains(".orch/rounds"), "{}", run.stderr());
    assert!(
        !ran.exists(),
        "an agent ran although no round log could be written"
    );
    assert_eq!(repo.head(), base);
    assert_eq!(repo.status(), "");
    assert!(journal(&repo, "journal.json").is_none());
}

/// The state folder on a 256 kB tmpfs and an agent whose log fills it: orch stops with a clear
/// message naming the file it could not write, never hangs or panics, and leaves a clean tree
/// at the base or at the round's commit (made before the log). Needs root to mount; skipped
/// loudly otherwise.
#[test]
fn a_full_disk_stops_orch_cleanly() {
    let m = marker("full");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", "src/a.txt=a", "--flood", "1"])}]
    }));
    let base = repo.head();
    let state: PathBuf = repo.pathbuf(".orch");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&state)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        skip(
            "a_full_disk_stops_orch_cleanly",
            "ORCH_REQUIRE_MOUNT",
            "cannot mount a tmpfs (not root?)",
        );
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    let mut orch = Orch::start(&repo, &["run"]);
    let code = orch.wait(Duration::from_secs(15));
    let err = orch.stderr();
    eprintln!("full disk: exit {code}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The agent's log fills the disk, so the round log cannot be written: exit 1, naming it.
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("round-0001.json") && err.contains("No space left on device"),
        "{err}"
    );
    assert_none_left(&m);
    assert_eq!(repo.status(), "");
    let head = repo.head();
    assert!(
        head == base || repo.git(&["rev-parse", "HEAD~1"]) == base,
        "HEAD moved further than one round"
    );
}

#[test]
fn every_file_orch_names_to_an_agent_can_be_written_with_a_plain_redirect() {
    // No mkdir, no `>>` into a made folder: exactly what a careless agent (or a prompt that
    // says "write your status to $ORCH_HANDOFF_FILE") does.
    let repo = Repo::new();
    let agent = "echo '{\"status\":\"complete\",\"notes\":\"n\"}' > \"$ORCH_HANDOFF_FILE\" && \
                 echo '{\"costUsd\":0.25,\"summary\":\"s\"}' > \"$ORCH_RESULT_FILE\" && \
                 echo '{\"title\":\"follow up\"}' > \"$ORCH_TASKS_INBOX\" && \
                 echo x > src/a.txt";
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [
            {"name": "a", "phase": "code", "command": agent},
            {"name": "b", "phase": "code", "dependsOn": ["a"], "command": "echo y > src/b.txt"}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "a");
    assert_eq!(a["status"], "ok", "{log:#}");
    assert_eq!(a["handoff"], "complete", "{log:#}");
    assert_eq!(a["costUsd"], 0.25, "{log:#}");
    assert_eq!(
        repo.read(".orch/handoff/a/handoff.json"),
        "{\"status\":\"complete\",\"notes\":\"n\"}\n"
    );
    let tasks = repo.orch(&["task", "list", "--json"]).expect(0);
    assert!(tasks.stdout().contains("follow up"), "{}", tasks.stdout());
}

/// Writes `hostile.json` (not committed: validate and run read it from the tree) and expects
/// exit 2 from both `validate` and `run`, with every one of `words` in the message.
fn refused(repo: &Repo, mission: serde_json::Value, words: &[&str]) {
    repo.write("hostile.json", &mission.to_string());
    for cmd in [
        &["validate", "-m", "hostile.json"][..],
        &["run", "-m", "hostile.json", "--allow-dirty"],
    ] {
        let run = repo.orch(cmd).expect(2);
        for w in words {
            assert!(
                run.stderr().contains(w),
                "{cmd:?}: {w:?} not in {}",
                run.stderr()
            );
        }
        assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    }
}

#[test]
fn a_state_dir_in_gits_folders_the_root_or_a_tracked_folder_is_refused() {
    let repo = Repo::new();
    let with = |dir: &str| {
        json!({"name": "t", "stateDir": dir,
               "agents": [{"name": "a", "phase": "code", "command": "true"}]})
    };
    for dir in [".git", ".git/orch", "./.git/x", "sub/.GIT"] {
        refused(&repo, with(dir), &["stateDir", dir, "git"]);
    }
    for dir in [".", "./", ""] {
        refused(&repo, with(dir), &["stateDir", "repository root"]);
    }
    // src/ holds src/app.txt, which git tracks.
    refused(&repo, with("src"), &["stateDir", "\"src\"", "src/app.txt"]);
    refused(&repo, with("src/app.txt"), &["stateDir", "tracks"]);
    // A symlink into git's folder is git's folder.
    std::os::unix::fs::symlink(repo.pathbuf(".git"), repo.pathbuf("gitlink")).unwrap();
    refused(
        &repo,
        with("gitlink/orch"),
        &["stateDir", "inside git's folder"],
    );
    // git's folders were not touched, nothing ran.
    assert!(!repo.exists(".git/orch") && !repo.exists(".git/rounds"));
    assert!(!repo.exists(".orch/rounds"));
    repo.git(&["fsck", "--no-progress"]);

    // A linked worktree: its git dir and the common dir (the main repository's .git) are both
    // git's folders, wherever they are.
    let wt = repo.pathbuf("wt");
    repo.git(&["worktree", "add", "-q", wt.to_str().unwrap()]);
    let common = repo.pathbuf(".git");
    let in_wt = |args: &[&str], mission: &serde_json::Value| {
        std::fs::write(wt.join("hostile.json"), mission.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .current_dir(&wt)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Inside the worktree, `.git` is a file; a state folder in the common dir is reached by a
    // relative path out of the worktree, which is refused for leaving the repository, so the
    // case to prove is the symlink.
    std::os::unix::fs::symlink(&common, wt.join("common")).unwrap();
    for dir in ["common/orch", ".git"] {
        let (code, err) = in_wt(&["validate", "-m", "hostile.json"], &with(dir));
        assert_eq!(code, Some(2), "{dir}: {err}");
        assert!(
            err.contains("stateDir") && err.contains("git"),
            "{dir}: {err}"
        );
    }
    let (code, err) = in_wt(&["validate", "-m", "hostile.json"], &with(".orch"));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn every_number_in_a_mission_is_bounded() {
    let repo = Repo::new();
    let agent = json!({"name": "a", "phase": "code", "command": "true"});
    let base = || json!({"name": "t", "agents": [agent.clone()]});
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"killGraceS": 1e300}), "killGraceS"),
        (json!({"killGraceS": -1}), "killGraceS"),
        (json!({"rounds": 4294967295u32}), "rounds"),
        (json!({"rounds": 0}), "rounds"),
        (json!({"maxConcurrency": 1e15 as u64}), "maxConcurrency"),
        (json!({"budgetUsd": 1e300}), "budgetUsd"),
        (json!({"budgetUsd": -0.5}), "budgetUsd"),
        (json!({"maxPromptBytes": 1u64 << 62}), "maxPromptBytes"),
        (
            json!({"tests": {"command": "true", "retries": 4294967295u32}}),
            "tests.retries",
        ),
        (
            json!({"tests": {"command": "true", "timeoutS": 1e300}}),
            "tests.timeoutS",
        ),
        (
            json!({"stop": {"afterTestFailures": 4294967295u32}}),
            "stop.afterTestFailures",
        ),
        (
            json!({"pricing": {"m": {"inputPerMTok": 1e300, "outputPerMTok": 1}}}),
            "pricing.m.inputPerMTok",
        ),
        (
            json!({"sections": {"s": {"text": "x", "maxBytes": 1u64 << 62}}}),
            "sections.s.maxBytes",
        ),
        (
            json!({"sims": {"pre": {"command": "true", "timeoutS": -1}}}),
            "sims.pre.timeoutS",
        ),
    ];
    for (extra, key) in cases {
        let mut m = base();
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        refused(&repo, m, &[key]);
    }
    let agent_cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"timeoutS": 1e300}), "agents[0].timeoutS"),
        (json!({"timeoutS": 0}), "agents[0].timeoutS"),
        (
            json!({"escalateAfter": 4294967295u32}),
            "agents[0].escalateAfter",
        ),
        (
            json!({"adaptiveTimeout": {"factor": 1e300}}),
            "agents[0].adaptiveTimeout.factor",
        ),
        (
            json!({"adaptiveTimeout": {"minSamples": 1u64 << 62}}),
            "agents[0].adaptiveTimeout.minSamples",
        ),
        (
            json!({"adaptiveTimeout": {"maxS": 1e300}}),
            "agents[0].adaptiveTimeout.maxS",
        ),
        (json!({"priority": 200}), "agents[0].priority"),
        (
            json!({"when": {"every": 4294967295u32}}),
            "agents[0].when.every",
        ),
    ];
    for (extra, key) in agent_cases {
        let mut a = agent.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        refused(&repo, json!({"name": "t", "agents": [a]}), &[key]);
    }
    // Out of any number's range in the file itself: a parse error naming the key, not a panic.
    refused(
        &repo,
        json!({"name": "t", "rounds": -1, "agents": [agent.clone()]}),
        &["rounds"],
    );
    // The flags are bounded too.
    repo.mission(base());
    for args in [
        &["run", "--rounds", "4294967296"][..],
        &["run", "--max-concurrency", "100000000"],
        &["run", "--budget", "NaN"],
        &["run", "--budget", "-1"],
        &["run", "--budget", "1e400"],
    ] {
        let run = repo.orch(args).expect(2);
        assert!(
            !run.stderr().contains("panicked"),
            "{args:?}: {}",
            run.stderr()
        );
    }
}

#[test]
fn a_depends_on_cycle_is_a_validation_error_naming_it() {
    let repo = Repo::new();
    let a = |name: &str, deps: &[&str]| json!({"name": name, "phase": "code", "command": "true", "dependsOn": deps});
    refused(
        &repo,
        json!({"name": "t", "agents": [a("a", &["b"]), a("b", &["a"])]}),
        &["agents[0].dependsOn", "a -> b -> a"],
    );
    refused(
        &repo,
        json!({"name": "t", "agents": [a("x", &[]), a("a", &["b"]), a("b", &["c"]), a("c", &["a", "x"])]}),
        &["agents[1].dependsOn", "a -> b -> c -> a"],
    );
    refused(
        &repo,
        json!({"name": "t", "agents": [a("a", &["ghost"])]}),
        &["agents[0].dependsOn[0]", "ghost"],
    );
    // A chain and a diamond are fine.
    repo.write(
        "ok.json",
        &json!({"name": "t", "agents": [a("a", &[]), a("b", &["a"]), a("c", &["a"]), a("d", &["b", "c"])]}).to_string(),
    );
    repo.orch(&["validate", "-m", "ok.json"]).expect(0);
}

#[test]
fn a_program_that_cannot_start_is_refused_before_anything_runs() {
    let repo = Repo::new();
    repo.write("tools/not-exec.sh", "#!/bin/sh\n");
    repo.write("tools/ok.sh", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(
        repo.pathbuf("tools/ok.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "tools"]);
    let ok_agent = json!({"name": "a", "phase": "code", "command": "true"});
    let with = |extra: serde_json::Value| {
        let mut m = json!({"name": "t", "agents": [ok_agent.clone()]});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let cases: Vec<(serde_json::Value, &[&str])> = vec![
        (
            json!({"tests": {"command": "pytestt -q"}}),
            &["tests.command", "`pytestt`", "PATH"],
        ),
        (
            json!({"tests": {"command": ["pytestt"]}}),
            &["tests.command", "`pytestt`"],
        ),
        (
            json!({"tests": {"command": "true", "suites": [{"name": "u", "always": true, "command": "nosuchtool x"}]}}),
            &["tests.suites[0].command", "`nosuchtool`"],
        ),
        (
            json!({"agents": [{"name": "coder", "phase": "code", "command": ["claudee", "-p"]}]}),
            &["agents[0].command", "`claudee`"],
        ),
        (
            json!({"agents": [{"name": "a", "phase": "code", "command": "true", "when": {"command": "chekc-it"}}]}),
            &["agents[0].when.command", "`chekc-it`"],
        ),
        (
            json!({"sims": {"pre": {"command": ["./sim/nope"]}}}),
            &["sims.pre.command", "./sim/nope", "does not exist"],
        ),
        (
            json!({"sims": {"post": {"command": "true", "launcher": ["srunn", "--"]}}}),
            &["sims.post.launcher", "`srunn`"],
        ),
        (
            json!({"launcher": ["srunn", "--"]}),
            &["launcher", "`srunn`"],
        ),
        (
            json!({"sections": {"s": {"command": "gti log"}}}),
            &["sections.s.command", "`gti`"],
        ),
        (
            json!({"tests": {"command": ["tools/not-exec.sh"]}}),
            &["tests.command", "not executable"],
        ),
        (
            json!({"tests": {"command": ["tools"]}}),
            &["tests.command", "is not found on PATH"],
        ),
        (
            json!({"tests": {"command": ["./tools"]}}),
            &["tests.command", "is a folder"],
        ),
    ];
    for (extra, words) in cases {
        refused(&repo, with(extra), words);
    }
    // Two at once: both named.
    refused(
        &repo,
        with(
            json!({"tests": {"command": "pytestt"}, "agents": [{"name": "a", "phase": "code", "command": ["claudee"]}]}),
        ),
        &[
            "2 programs cannot start",
            "agents[0].command",
            "tests.command",
        ],
    );
    // An untracked script cannot reach a worktree agent; committed, it can.
    repo.write("local/agent.sh", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(
        repo.pathbuf("local/agent.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    refused(
        &repo,
        with(json!({"agents": [{"name": "a", "phase": "code", "command": ["./local/agent.sh"]}]})),
        &["agents[0].command", "not tracked"],
    );
    std::fs::remove_file(repo.pathbuf("hostile.json")).unwrap();
    // What is fine: shell syntax, builtins, an agent's own PATH, a relative path that exists,
    // a launcher's command (it runs on the node).
    repo.mission(with(json!({
        "agents": [
            {"name": "a", "phase": "code", "command": "cd src && nosuchtool-behind-cd"},
            {"name": "b", "phase": "code", "command": ["only-on-my-path"], "env": {"PATH": repo.pathbuf("tools").display().to_string()}, "when": "tasks"},
            {"name": "c", "phase": "code", "command": ["claude-on-the-node"], "launcher": ["env", "--"], "when": "tasks"}
        ],
        "tests": {"command": ["./tools/ok.sh"]}
    })));
    std::fs::copy(
        repo.pathbuf("tools/ok.sh"),
        repo.pathbuf("tools/only-on-my-path"),
    )
    .unwrap();
    repo.orch(&["validate"]).expect(0);
    // No round ran for any refused mission.
    assert!(!repo.exists(".orch/rounds/round-0001.json"));
}

#[test]
fn a_test_command_that_cannot_start_is_not_a_regression() {
    // `exec` is a shell builtin, so the start-up check cannot see past it: the command fails
    // with 127 (not found) or 126 (not executable) only when the round runs it.
    for (tests, code) in [("exec pytestt -q", "127"), ("exec ./tools/t.sh", "126")] {
        let repo = Repo::new();
        repo.write("tools/t.sh", "#!/bin/sh\nexit 0\n"); // not executable
        repo.mission(json!({
            "name": "t", "rounds": 5,
            "agents": [
                {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])},
                {"name": "b", "phase": "code", "command": agent_cmd(&["--write", "src/b.txt=b"])},
                {"name": "rev", "phase": "review", "command": agent_cmd(&["--write", "review.md=r"])}
            ],
            "tests": {"command": tests, "retries": 2}
        }));
        let base = repo.head();
        let run = repo.orch(&["run"]).expect(3);
        assert!(
            run.stderr().contains("test command could not start") && run.stderr().contains(code),
            "{tests}: {}",
            run.stderr()
        );
        // One round, then the run stops: every later round would fail the same way.
        assert!(!repo.has_round_log(2));
        let log = repo.round_log(1);
        assert_eq!(log["status"], "failed", "{log:#}");
        assert_eq!(log["tests"]["regression"], false);
        assert_eq!(
            log["tests"]["attempts"], 1,
            "no retries of a command that cannot start"
        );
        assert!(
            log["tests"]["cannotStart"].as_str().unwrap().contains(code),
            "{log:#}"
        );
        assert!(
            log["revert"].is_null(),
            "no agent's work was taken out: {log:#}"
        );
        for a in ["a", "b"] {
            assert_eq!(Repo::agent(&log, a)["status"], "ok", "{log:#}");
        }
        // The tree is back at the base, the agents' work kept in a ref.
        assert_eq!(repo.head(), base);
        assert_eq!(repo.status(), "");
        let kept = log["keptRef"].as_str().unwrap();
        assert_eq!(kept, "refs/orch/untested/round-1");
        let files = repo.git(&["ls-tree", "-r", "--name-only", kept]);
        assert!(
            files.contains("src/a.txt") && files.contains("src/b.txt"),
            "{files}"
        );
        // Phase B did not run on an untested tree; nothing counted against anyone.
        assert!(!repo.exists("review.md"));
        let state = repo.state();
        assert_eq!(state["testFailuresInARow"], 0, "{state:#}");
        assert_eq!(state["agents"]["a"]["consecutiveFailures"], 0, "{state:#}");
    }
}

#[test]
fn the_circuit_breaker_counts_rounds_that_fail_for_good_not_rescued_ones() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 4, "stop": {"afterTestFailures": 2},
        "agents": [
            {"name": "good", "phase": "code", "command": agent_cmd(&["--write", "src/good.txt={round}"])},
            {"name": "bad", "phase": "code", "command": agent_cmd(&["--write", "src/bad.txt=BROKEN"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    // Every round the per-agent revert takes `bad` out and commits `good`: four healthy rounds,
    // though every first test run failed.
    repo.orch(&["run"]).expect(0);
    for n in 1..=4 {
        let log = repo.round_log(n);
        assert_eq!(log["revert"]["strategy"], "per-agent", "{log:#}");
        assert!(log["commit"].is_string(), "round {n} committed good work");
    }
    let state = repo.state();
    assert_eq!(state["testFailuresInARow"], 0, "{state:#}");
    assert_eq!(state["testFailedRoundsInARow"], 4, "{state:#}");
    let status = repo.orch(&["status", "--json"]).expect(0).stdout();
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["testFailuresInARow"], 0);
    assert_eq!(s["testFailedRoundsInARow"], 4);
    assert_eq!(s["breakerLimit"], 2);
    let text = repo.orch(&["status"]).expect(0).stdout();
    assert!(text.contains("circuit breaker"), "{text}");

    // A lone bad agent: each round is wholly reverted; that is what stops the run.
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 4, "stop": {"afterTestFailures": 2},
        "agents": [{"name": "bad", "phase": "code", "command": agent_cmd(&["--write", "src/bad.txt=BROKEN {round}"])}],
        "tests": {"command": tests_cmd("0")}
    }));
    let run = repo.orch(&["run"]).expect(3);
    assert!(run.stderr().contains("circuit breaker"), "{}", run.stderr());
    assert!(!repo.has_round_log(3));
}

/// A stop is one line on stderr, the `stop` event's, with `-q` as without (it was a log
/// warning and then the same again as the event's line).
#[test]
fn a_stop_is_printed_once() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 4, "stop": {"afterTestFailures": 1},
        "agents": [{"name": "bad", "phase": "code", "command": agent_cmd(&["--write", "src/bad.txt=BROKEN {round}"])}],
        "tests": {"command": tests_cmd("0")}
    }));
    for args in [&["run"][..], &["run", "-q"][..]] {
        let run = repo.orch(args).expect(3);
        let err = run.stderr();
        let stops: Vec<&str> = err.lines().filter(|l| l.contains("stopping")).collect();
        assert_eq!(stops.len(), 1, "{args:?}\n{err}");
        assert!(stops[0].contains("circuit breaker"), "{err}");
    }
}

#[test]
fn a_run_on_its_branch_returns_the_users_branch_after_an_interrupt_and_after_a_kill() {
    let m = marker("branch");
    let f = flags();
    let (hung1, hung2) = (f.path().join("hung1"), f.path().join("hung2"));
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "killGraceS": 0.5,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", "src/a.txt=round {round}",
            "--round", "1", "--hang-once", &path_str(&hung1), "--hang-once", &path_str(&hung2)])}]
    }));
    let mine = repo.git(&["symbolic-ref", "--short", "HEAD"]);
    let base = repo.head();

    // Ctrl-C mid-round: the round is interrupted on the branch, the user's branch comes back.
    let mut orch = Orch::start(&repo, &["run", "--branch", "orch/n"]);
    orch.wait_for(&hung1, Duration::from_secs(10));
    orch.signal(libc::SIGINT);
    assert_eq!(orch.wait(Duration::from_secs(10)), 130, "{}", orch.stderr());
    assert_eq!(repo.git(&["symbolic-ref", "--short", "HEAD"]), mine);
    assert_eq!(repo.head(), base);
    assert_eq!(repo.git(&["rev-parse", "orch/n"]), base);
    assert_eq!(repo.status(), "");

    // SIGKILL mid-round: orch dies on the branch; the next run (no --branch) recovers, goes on
    // on that branch and returns the user's branch at its end.
    let mut orch = Orch::start(&repo, &["run", "--branch", "orch/n"]);
    orch.wait_for(&hung2, Duration::from_secs(10));
    orch.signal(libc::SIGKILL);
    assert_eq!(orch.wait(Duration::from_secs(5)), 128 + libc::SIGKILL);
    assert_eq!(repo.git(&["symbolic-ref", "--short", "HEAD"]), "orch/n");
    let run = repo.orch(&["run"]).expect(0);
    let err = run.stderr();
    assert!(err.contains("going on there"), "{err}");
    assert_eq!(
        repo.git(&["symbolic-ref", "--short", "HEAD"]),
        mine,
        "{err}"
    );
    assert_eq!(repo.head(), base);
    assert_eq!(repo.git(&["rev-parse", &mine]), base);
    let on_branch = repo.git(&["rev-list", "--count", &format!("{base}..orch/n")]);
    assert_eq!(on_branch, "2", "{err}");
    assert!(
        std::fs::read_dir(repo.pathbuf(".git/orch"))
            .unwrap()
            .flatten()
            .all(|d| !d.path().join("branch.json").exists()),
        "the branch record outlived the run"
    );
    assert_none_left(&m);
}

#[test]
fn inherit_env_keeps_orchs_credentials_from_the_agents() {
    let repo = Repo::new();
    let env_file = |n: &str| repo.pathbuf(&format!("../env-{n}-{}.txt", std::process::id()));
    let (a, b, c) = (env_file("a"), env_file("b"), env_file("c"));
    let cmd = |f: &PathBuf| {
        agent_cmd(&[
            "--env-all",
            f.to_str().unwrap(),
            "--write",
            "src/x.txt={agent}",
        ])
    };
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "inheritEnv": ["PATH", "HOME", "LC_*"],
        "agents": [
            {"name": "a", "phase": "code", "command": cmd(&a), "env": {"MINE": "1"}},
            {"name": "b", "phase": "code", "command": cmd(&b), "inheritEnv": "all"},
            {"name": "c", "phase": "review", "command": cmd(&c), "inheritEnv": ["GITHUB_*", "PATH"]}
        ]
    }));
    repo.orch_env(
        &["run"],
        &[
            ("GITHUB_TOKEN", "ghp_secret"),
            ("AWS_SECRET_ACCESS_KEY", "aws_secret"),
            ("LC_TEST_X", "kept"),
        ],
    )
    .expect(0);
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
    let (ea, eb, ec) = (read(&a), read(&b), read(&c));
    // The mission's list: only what it names, ORCH_* and the agent's own env.
    assert!(
        !ea.contains("ghp_secret") && !ea.contains("aws_secret"),
        "{ea}"
    );
    assert!(
        ea.contains("LC_TEST_X=kept") && ea.contains("MINE=1"),
        "{ea}"
    );
    assert!(
        ea.contains("PATH=") && ea.contains("ORCH_AGENT=a") && ea.contains("ORCH_RUN="),
        "{ea}"
    );
    assert!(
        ea.lines().all(|l| {
            let k = l.split('=').next().unwrap();
            ["PATH", "HOME", "MINE", "PWD", "SHLVL", "_", "OLDPWD"].contains(&k)
                || k.starts_with("ORCH_")
                || k.starts_with("LC_")
        }),
        "nothing else reaches the agent: {ea}"
    );
    // "all": today's behaviour.
    assert!(eb.contains("GITHUB_TOKEN=ghp_secret"), "{eb}");
    // Its own list instead of the mission's.
    assert!(
        ec.contains("GITHUB_TOKEN=ghp_secret") && !ec.contains("LC_TEST_X"),
        "{ec}"
    );
    for p in [a, b, c] {
        let _ = std::fs::remove_file(p);
    }
    // A bad name is exit 2 naming the key.
    repo.write("bad.json", &json!({"name": "t", "inheritEnv": ["A=B"], "agents": [{"name": "a", "phase": "code", "command": "true"}]}).to_string());
    let run = repo.orch(&["validate", "-m", "bad.json"]).expect(2);
    assert!(run.stderr().contains("inheritEnv[0]"), "{}", run.stderr());
}

/// A list without `PATH` would leave every agent with no search path (its CLI's `node`, git and
/// a shell's commands not found): refused before anything runs, exit 2 naming the key (the
/// mission's or the agent's own) and the fix. Listed by a glob, or set in the agent's own `env`,
/// it is accepted.
#[test]
fn an_inherit_env_list_without_path_is_refused_naming_the_key_and_the_fix() {
    let repo = Repo::new();
    let agent = |extra: serde_json::Value| {
        let mut a = json!({"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/x.txt=1"])});
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    };
    let write = |inherit: serde_json::Value, a: serde_json::Value| {
        let mut m = json!({"name": "t", "rounds": 1, "agents": [a]});
        if !inherit.is_null() {
            m["inheritEnv"] = inherit;
        }
        repo.write("m.json", &m.to_string());
    };
    write(json!(["HOME", "LC_*"]), agent(json!({})));
    for cmd in ["validate", "run"] {
        let run = repo.orch(&[cmd, "-m", "m.json"]).expect(2);
        let err = run.stderr();
        assert!(
            err.contains("m.json") && err.contains("inheritEnv"),
            "{err}"
        );
        assert!(
            err.contains("no PATH") && err.contains("add \"PATH\""),
            "{err}"
        );
    }
    assert!(!repo.exists(".orch/rounds"), "nothing ran");
    write(json!("all"), agent(json!({"inheritEnv": ["HOME"]})));
    let err = repo.orch(&["validate", "-m", "m.json"]).expect(2).stderr();
    assert!(err.contains("agents[0].inheritEnv"), "{err}");
    write(json!(["HOME", "P?TH"]), agent(json!({})));
    repo.orch(&["validate", "-m", "m.json"]).expect(0);
    write(
        json!(["HOME"]),
        agent(json!({"env": {"PATH": "/usr/bin:/bin"}})),
    );
    repo.orch(&["validate", "-m", "m.json"]).expect(0);
}
