//! The user's repository and orch's own records, against the built binary: one lock per
//! repository whatever the state folder (and when its file is deleted), orch's files never
//! committed whatever the `.gitignore` says, a `git clean -fdx` by an agent or the tests losing
//! nothing orch needs, the user's uncommitted work kept through every outcome of a round
//! (`--allow-dirty`), and nothing orch started outliving it, even a SIGKILL.
//!
//! Each test asserts what the user is left with: exit status, files byte for byte, refs, HEAD,
//! and `/proc` for the processes carrying the test's marker.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{agent_cmd, alive, assert_none_left, processes_with, Orch, Repo};
use serde_json::json;

fn marker(test: &str) -> String {
    format!("orch-safety-{test}-{}", std::process::id())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------------------------
// One lock per repository.

/// Two missions with different state folders, and an orch started from a linked worktree of
/// the same repository: while the first runs, each other exits 4 naming the first one's pid and
/// state folder, and the branch keeps what the first one does.
#[test]
fn a_second_orch_of_any_state_folder_or_worktree_exits_4() {
    let m = marker("lock-repo");
    let f = tempfile::tempdir().unwrap();
    let started = f.path().join("started");
    let repo = Repo::new();
    repo.write(
        "other.json",
        &serde_json::to_string(&json!({
            "name": "other", "rounds": 1, "stateDir": ".orch-other",
            "agents": [{"name": "b", "phase": "code", "command": agent_cmd(&["--write", "src/b.txt=b"])}]
        }))
        .unwrap(),
    );
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--write", "src/a.txt=a",
            "--write", &format!("{}=1", s(&started)), "--hang-once", &s(&f.path().join("hung"))])}]
    }));
    let base = repo.head();
    let wt = f.path().join("linked");
    repo.git(&["worktree", "add", "-q", "--detach", &s(&wt)]);
    let mut first = Orch::start_in(repo.path(), &["run"]);
    first.wait_for(&f.path().join("hung"), Duration::from_secs(10));
    let pid = format!("pid {}", first.pid());
    let other = repo.orch(&["run", "-m", "other.json"]).expect(4);
    assert!(other.stderr().contains(&pid), "{}", other.stderr());
    assert!(other.stderr().contains(".orch"), "{}", other.stderr());
    let from_wt = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["run"])
        .current_dir(&wt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&from_wt.stderr);
    assert_eq!(from_wt.status.code(), Some(4), "{err}");
    assert!(err.contains(&pid), "{err}");
    assert!(!repo.exists(".orch-other/rounds"), "the loser wrote state");
    assert_eq!(repo.head(), base);
    first.signal(libc::SIGINT);
    assert_eq!(
        first.wait(Duration::from_secs(10)),
        130,
        "{}",
        first.stderr()
    );
    assert_none_left(&m);
    // With the first one gone, the other mission runs; the branch has the first one's base.
    repo.orch(&["run", "-m", "other.json"]).expect(0);
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]), base);
}

/// The lock file deleted under a running orch (`rm`): a second orch is not fooled. It finds
/// the live holder in /proc (a process holding the deleted file, with orch's session token),
/// exits 4 naming its pid, and neither says it died nor touches its agent. The holder puts the
/// file back at its next round.
#[test]
fn a_deleted_lock_file_does_not_let_a_second_orch_in() {
    let m = marker("lock-rm");
    let f = tempfile::tempdir().unwrap();
    let (hung, agent_pid) = (f.path().join("hung"), f.path().join("agent.pid"));
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "killGraceS": 0.5, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--tag", &m, "--pid", &s(&agent_pid), "--write", "src/a.txt=a",
            "--sleep", "0.3", "--hang-once", &s(&hung)])}]
    }));
    let base = repo.head();
    let lock = repo.pathbuf(".git/orch/lock");
    let mut first = Orch::start_in(repo.path(), &["run"]);
    first.wait_for(&hung, Duration::from_secs(10));
    assert!(lock.exists());
    std::fs::remove_file(&lock).unwrap();
    let second = repo.orch(&["run"]).expect(4);
    assert!(
        second.stderr().contains(&format!("pid {}", first.pid())),
        "{}",
        second.stderr()
    );
    assert!(
        !second.stderr().contains("recovered"),
        "{}",
        second.stderr()
    );
    let pid = std::fs::read_to_string(&agent_pid).unwrap();
    assert!(alive(&pid), "the second orch killed the first one's agent");
    // The whole private folder gone (journal included) changes nothing either.
    std::fs::remove_dir_all(repo.pathbuf(".git/orch")).unwrap();
    repo.orch(&["run"]).expect(4);
    assert!(alive(&pid));
    assert_eq!(repo.head(), base);
    first.signal(libc::SIGINT);
    assert_eq!(
        first.wait(Duration::from_secs(10)),
        130,
        "{}",
        first.stderr()
    );
    assert_none_left(&m);
    // The interrupted round runs again, and the lock file is made again at the next round.
    let run = repo.orch(&["run"]).expect(0);
    assert!(lock.exists(), "{}", run.stderr());
    assert_eq!(repo.round_log(1)["status"], "ok");
}

// ---------------------------------------------------------------------------------------------
// orch's files never committed, never lost to `git clean`.

/// A whitelist `.gitignore` (`*`, `!*/`, `!*.json`, `!*.md`) beats `.git/info/exclude`, and
/// would have git commit orch's journal, state, tasks and a gitlink to each worktree. Over two
/// rounds, in both isolation modes, no commit holds anything of the state folder, and the
/// second round runs.
#[test]
fn a_whitelist_gitignore_never_gets_orchs_files_committed() {
    for isolation in ["worktree", "shared"] {
        let repo = Repo::new();
        repo.write(".gitignore", "*\n!*/\n!*.json\n!*.md\n");
        repo.git(&["add", "-f", ".gitignore"]);
        repo.mission(json!({
            "name": "t", "rounds": 2, "git": {"isolation": isolation},
            "agents": [
                {"name": "a", "phase": "code", "command": agent_cmd(&[
                    "--write", "src/a{round}.json=a", "--task", "more"])},
                {"name": "r", "phase": "review", "command": agent_cmd(&["--write", "notes.md=r"])}
            ]
        }));
        let run = repo.orch(&["run"]).expect(0);
        assert_eq!(repo.round_log(2)["status"], "ok", "{}", run.stderr());
        let files = repo.git(&["log", "--name-only", "--format=", "HEAD"]);
        assert!(files.contains("src/a2.json"), "{isolation}: {files}");
        assert!(!files.contains(".orch"), "{isolation}: {files}");
        let tree = repo.git(&["ls-tree", "-r", "HEAD"]);
        assert!(!tree.contains(" commit "), "a gitlink: {tree}");
        // The user's own `git status` shows the folder (their whitelist wins over
        // `.git/info/exclude`); nothing outside it is left over.
        let outside = repo.git(&["status", "--porcelain", "-uall", "--", ".", ":!.orch"]);
        assert_eq!(outside, "", "{isolation}");
    }
}

/// The same whitelist with Phase B beside the tests (the default) and a review agent that
/// changes a file, in both isolation modes, with and without tests that `git clean -fdx`: the
/// state folder (its `tasks.json`, Phase B's worktree committing beside the tests) changes
/// between orch's `add -A` and its taking the folder out of the index again, which git refused
/// ("staged content different from both the file and the HEAD"): every round failed, with the
/// branch left at an unrecorded merge commit.
#[test]
fn a_whitelist_gitignore_with_review_agents_beside_the_tests_commits_every_round() {
    for isolation in ["worktree", "shared"] {
        for clean in [false, true] {
            let repo = Repo::new();
            repo.write(
                ".gitignore",
                "*\n!*/\n!*.txt\n!*.json\n!*.md\n!*.sh\n!.gitignore\n",
            );
            repo.git(&["add", "-f", ".gitignore"]);
            let tests = if clean {
                "git clean -q -fdx; exit 0"
            } else {
                "exit 0"
            };
            repo.mission(json!({
                "name": "t", "rounds": 2, "git": {"isolation": isolation},
                "agents": [
                    {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "a.txt=a{round}"])},
                    {"name": "r", "phase": "review", "command": agent_cmd(&["--write", "review.txt=r{round}"])}
                ],
                "tests": {"command": ["sh", "-c", tests]}
            }));
            let run = repo.orch(&["run"]).expect(0);
            let what = format!("{isolation}, clean {clean}: {}", run.stderr());
            // The tests' clean takes round 1's log with it (a known loss, warned about).
            for n in if clean { vec![2] } else { vec![1, 2] } {
                let log = repo.round_log(n);
                assert_eq!(log["status"], "ok", "{what}");
                assert!(log["commit"].is_string(), "round {n}, {what}");
            }
            assert_eq!(repo.read("a.txt"), "a1\na2\n", "{what}");
            assert_eq!(repo.read("review.txt"), "r1\nr2\n", "{what}");
            assert_eq!(
                repo.round_log(2)["commit"].as_str().map(str::to_owned),
                Some(repo.head()),
                "{what}"
            );
            let tree = repo.git(&["ls-tree", "-r", "--name-only", "HEAD"]);
            assert!(!tree.contains(".orch"), "{what}: {tree}");
        }
    }
}

/// A test command that runs `git clean -fdx` in the main tree, every round, and a review agent
/// after it: the lock and the journal are out of its reach, orch recreates the folders it
/// needs, writes the state and tasks again from memory, says what was lost, and goes on for
/// both rounds (Phase B's prompt included). Phase B after the tests, so that its prompt is
/// written after the clean: beside the tests the clean may take it with it, at whatever moment
/// it comes (a known limit in RELIABILITY.md), and the test would race.
#[test]
fn git_clean_by_the_tests_loses_nothing_orch_needs() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "phaseB": "afterTests",
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a{round}"])},
            {"name": "r", "phase": "review", "command": agent_cmd(&["--write", "notes.md=seen"])}
        ],
        "tests": {"command": ["sh", "-c", "git clean -q -fdx; exit 0"]}
    }));
    let run = repo.orch(&["run"]).expect(0);
    let err = run.stderr();
    assert!(err.contains("was deleted"), "{err}");
    assert_eq!(repo.round_log(2)["status"], "ok", "{err}");
    assert_eq!(repo.state()["lastRound"], 2);
    assert!(repo.exists(".orch/prompts/round-0002/r.md"));
    assert!(repo.exists(".orch/events.ndjson"));
    assert_eq!(
        repo.git(&["log", "--format=%s", "-4"]),
        "orch: round 2 review: r\norch: round 2 code: a\norch: round 1 review: r\norch: round 1 code: a"
    );
    // Round 1's log went with the clean; the warning in round 2's log says what was lost.
    let notes = repo.round_log(2)["notes"].to_string();
    assert!(notes.contains("lost"), "{notes}");
    assert_eq!(repo.status(), "");
}

/// The warning for a deleted state folder is one readable line (no run of spaces where the
/// source's string went on to the next line), printed once on stderr (not as a log line and then
/// again as the `warning` event's line), with `-q` as without.
#[test]
fn the_warning_for_a_deleted_state_folder_is_one_line_printed_once() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "phaseB": "afterTests",
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a{round}"])},
            {"name": "r", "phase": "review", "command": agent_cmd(&["--write", "notes.md=seen"])}
        ],
        "tests": {"command": ["sh", "-c", "git clean -q -fdx; exit 0"]}
    }));
    for args in [&["run"][..], &["run", "-q", "--rounds", "1"][..]] {
        let run = repo.orch(args).expect(0);
        let err = run.stderr();
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("was deleted")).collect();
        assert_eq!(lines.len(), 1, "{args:?}\n{err}");
        let line = lines[0];
        assert!(line.contains(": warning: the state folder "), "{line}");
        assert!(
            !line.contains("warning: round"),
            "the round said twice: {line}"
        );
        assert!(line.contains("by an agent or the tests?"), "{line}");
        assert!(!line.contains("  "), "a run of spaces: {line:?}");
    }
}

/// The same from a shared-tree code agent that cleans the tree before writing its file.
#[test]
fn git_clean_by_a_shared_tree_agent_loses_nothing_orch_needs() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command":
            ["sh", "-c", "git clean -q -fdx && echo \"$ORCH_ROUND\" >> src/a.txt"]}]
    }));
    let run = repo.orch(&["run"]).expect(0);
    assert_eq!(repo.round_log(2)["status"], "ok", "{}", run.stderr());
    assert_eq!(repo.read("src/a.txt"), "1\n2\n");
    assert_eq!(repo.state()["lastRound"], 2);
    assert_eq!(repo.status(), "");
    // A third run has its state: it does not run the two rounds again.
    repo.orch(&["run"]).expect(0);
    assert!(!repo.has_round_log(3));
}

// ---------------------------------------------------------------------------------------------
// `--allow-dirty`: the user's uncommitted work.

/// The user's uncommitted work: a tracked edit, an untracked file in a new folder, a staged new
/// file edited again after staging (index and working file differ), a deleted tracked file,
/// an executable untracked script.
fn make_dirty(repo: &Repo) {
    repo.write("src/gone.txt", "to delete\n");
    repo.git(&["add", "src/gone.txt"]);
    repo.git(&["commit", "-qm", "gone"]);
    repo.write("src/app.txt", "app\nmy edit\n");
    repo.write("notes/todo.txt", "my notes\n");
    repo.write("src/staged.txt", "staged\n");
    repo.git(&["add", "src/staged.txt"]);
    repo.write("src/staged.txt", "staged\nand edited after\n");
    std::fs::remove_file(repo.pathbuf("src/gone.txt")).unwrap();
    repo.write("run.sh", "#!/bin/sh\necho mine\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        repo.pathbuf("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

/// What the user sees of their work: the files byte for byte (and the script's mode), the
/// staged and unstaged diffs, and the status.
fn user_view(repo: &Repo) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(repo.pathbuf("run.sh"))
        .map(|m| format!("{:o}", m.permissions().mode()))
        .unwrap_or_default();
    format!(
        "app: {:?}\ntodo: {:?}\nstaged: {:?}\nrun.sh: {:?} {mode}\ngone exists: {}\n\
         --- cached\n{}\n--- diff\n{}\n--- status\n{}",
        repo.read("src/app.txt"),
        repo.read("notes/todo.txt"),
        repo.read("src/staged.txt"),
        repo.read("run.sh"),
        repo.exists("src/gone.txt"),
        repo.git(&["diff", "--cached", "--", ".", ":!.orch"]),
        repo.git(&["diff", "--", ".", ":!.orch"]),
        repo.git(&["status", "--porcelain", "-uall", "--", ".", ":!.orch"]),
    )
}

/// Whether orch's record of set-aside work (`.git/orch/<state-id>/user-stash.json`) exists.
fn stash_recorded(repo: &Repo) -> bool {
    std::fs::read_dir(repo.pathbuf(".git/orch"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("user-stash.json").exists())
}

/// Nothing of the user's is in orch's commits: each file of theirs is at HEAD as at the base.
fn assert_nothing_of_theirs_committed(repo: &Repo, base: &str) {
    let changed = repo.git(&["diff", "--name-only", base, "HEAD"]);
    for theirs in [
        "src/app.txt",
        "notes/todo.txt",
        "src/staged.txt",
        "run.sh",
        "src/gone.txt",
    ] {
        assert!(
            !changed.lines().any(|l| l == theirs),
            "{theirs} committed by orch: {changed}"
        );
    }
}

/// A passing round, a whole-round revert and a per-agent revert, each with the user's work in
/// the tree: their work is back byte for byte (staged stays staged), none of it is in orch's
/// commits, it is also kept in refs/orch/user/round-1, and a shared-tree agent saw the base,
/// not their edits.
#[test]
fn allow_dirty_keeps_the_users_work_through_every_round_outcome() {
    let f = tempfile::tempdir().unwrap();
    let seen = f.path().join("seen");
    let agent = |name: &str, file: &str| {
        json!({"name": name, "phase": "code", "command":
            ["sh", "-c", format!("cat src/app.txt > {}; echo {name} > {file}", s(&seen))]})
    };
    let cases = [
        ("pass", "shared", vec![agent("a", "src/a.txt")], "ok"),
        (
            "round revert",
            "shared",
            vec![agent("a", "src/bad.txt")],
            "reverted",
        ),
        (
            "per-agent revert",
            "worktree",
            vec![agent("a", "src/a.txt"), agent("b", "src/bad.txt")],
            "ok",
        ),
    ];
    for (case, isolation, agents, status) in cases {
        let repo = Repo::new();
        repo.mission(json!({
            "name": "t", "rounds": 1, "git": {"isolation": isolation},
            "agents": agents,
            "tests": {"command": ["sh", "-c", "test ! -e src/bad.txt"]}
        }));
        make_dirty(&repo);
        let base = repo.head();
        let before = user_view(&repo);
        let run = repo.orch(&["run", "--allow-dirty"]).expect(0);
        let log = repo.round_log(1);
        assert_eq!(log["status"], status, "{case}: {}", run.stderr());
        assert_eq!(user_view(&repo), before, "{case}: {}", run.stderr());
        assert_nothing_of_theirs_committed(&repo, &base);
        match case {
            "pass" => assert_eq!(repo.git(&["show", "HEAD:src/a.txt"]), "a"),
            "round revert" => assert_eq!(repo.head(), base),
            _ => {
                assert_eq!(log["revert"]["strategy"], "per-agent", "{log:#}");
                assert_eq!(repo.git(&["show", "HEAD:src/a.txt"]), "a");
                assert!(!repo.exists("src/bad.txt"));
            }
        }
        assert_eq!(
            repo.git(&["show", "refs/orch/user/round-1:notes/todo.txt"]),
            "my notes"
        );
        assert_eq!(
            repo.git(&["show", "refs/orch/user/round-1^2:src/staged.txt"]),
            "staged",
            "the ref's second parent keeps the index"
        );
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "app\n",
            "{case}: the agent saw the user's edit"
        );
        assert!(
            !stash_recorded(&repo),
            "{case}: the record outlived the run"
        );
    }
}

/// Ctrl-C mid-round, and SIGKILL mid-round followed by the next orch: the user's work is back
/// exactly, by the interrupted orch itself or by the next one's recovery, before anything else.
#[test]
fn allow_dirty_keeps_the_users_work_through_sigint_and_sigkill() {
    for sig in [libc::SIGINT, libc::SIGKILL] {
        let m = marker(&format!("dirty-{sig}"));
        let f = tempfile::tempdir().unwrap();
        let hung = f.path().join("hung");
        let repo = Repo::new();
        repo.mission(json!({
            "name": "t", "rounds": 1, "killGraceS": 0.5, "git": {"isolation": "shared"},
            "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
                "--tag", &m, "--write", "src/app.txt=agent line", "--write", "src/wip.txt=half",
                "--hang-once", &s(&hung)])}]
        }));
        make_dirty(&repo);
        let base = repo.head();
        let before = user_view(&repo);
        let mut orch = Orch::start_in(repo.path(), &["run", "--allow-dirty"]);
        orch.wait_for(&hung, Duration::from_secs(10));
        orch.signal(sig);
        let code = orch.wait(Duration::from_secs(10));
        assert_eq!(code, 128 + sig, "{}", orch.stderr());
        if sig == libc::SIGKILL {
            assert_none_left(&m);
            // Until the next orch, the work is in its ref (and the record says so).
            assert!(stash_recorded(&repo), "no record of the set-aside work");
            let next = repo.orch(&["run", "--rounds", "0"]).expect(0);
            assert!(next.stderr().contains("is back"), "{}", next.stderr());
        }
        assert_eq!(user_view(&repo), before, "signal {sig}");
        assert_eq!(repo.head(), base);
        assert_eq!(
            repo.git(&["show", "refs/orch/interrupted/round-1:src/wip.txt"]),
            "half"
        );
        // The agent's half-done edit to the user's file is in the interrupted ref, not theirs.
        assert_eq!(
            repo.git(&["show", "refs/orch/interrupted/round-1:src/app.txt"]),
            "app\nagent line"
        );
        assert_none_left(&m);
        // Without --allow-dirty the next run still refuses: the work is the user's again.
        repo.orch(&["run"]).expect(2);
    }
}

// ---------------------------------------------------------------------------------------------
// Nothing outlives orch.

/// The processes whose command line holds `text`, zombies left out.
fn running_with(text: &str) -> Vec<String> {
    processes_with(text)
}

/// orch SIGKILLed mid-round (as the OOM killer would) while its agents have a grandchild and a
/// daemon in a session of its own, in both isolation modes: within one second of the kill,
/// the agent, the grandchild, the daemon and orch's own watchdog are all gone, with no orch
/// started afterwards.
#[test]
fn nothing_orch_started_outlives_a_sigkill() {
    for isolation in ["worktree", "shared"] {
        let m = marker(&format!("sigkill-{isolation}"));
        let f = tempfile::tempdir().unwrap();
        let (started, gc, daemon) = (
            f.path().join("started"),
            f.path().join("gc.pid"),
            f.path().join("daemon.pid"),
        );
        let repo = Repo::new();
        repo.mission(json!({
            "name": "t", "rounds": 1, "killGraceS": 5, "git": {"isolation": isolation},
            "agents": [
                {"name": "a", "phase": "code", "command": agent_cmd(&[
                    "--tag", &m, "--grandchild", &s(&gc), "--setsid-daemon", &s(&daemon),
                    "--write", &format!("{}=1", s(&started)), "--ignore-term", "--hang"])},
                {"name": "b", "phase": "code", "command": agent_cmd(&["--tag", &m, "--hang"])}
            ]
        }));
        let mut orch = Orch::start_in(repo.path(), &["run"]);
        orch.wait_for(&started, Duration::from_secs(10));
        let watchdog = format!("__watchdog {}.", orch.pid());
        assert_eq!(
            running_with(&watchdog).len(),
            1,
            "no watchdog: {}",
            orch.stderr()
        );
        let t0 = Instant::now();
        orch.signal(libc::SIGKILL);
        assert_eq!(orch.wait(Duration::from_secs(5)), 128 + libc::SIGKILL);
        let pids = [
            std::fs::read_to_string(&gc).unwrap(),
            std::fs::read_to_string(&daemon).unwrap(),
        ];
        while (!processes_with(&m).is_empty() || !running_with(&watchdog).is_empty())
            && t0.elapsed() < Duration::from_secs(1)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(processes_with(&m), Vec::<String>::new(), "{isolation}");
        assert!(!alive(&pids[0]), "{isolation}: the grandchild survived");
        assert!(!alive(&pids[1]), "{isolation}: the setsid daemon survived");
        assert_eq!(running_with(&watchdog), Vec::<String>::new(), "{isolation}");
        eprintln!("{isolation}: all gone {:?} after the kill", t0.elapsed());
    }
}
