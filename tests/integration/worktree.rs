//! Worktree isolation: each code agent in its own worktree, merged in completion order.

use crate::common::{agent_cmd, tests_cmd, Repo};
use serde_json::json;

#[test]
fn two_agents_writing_different_files_are_both_merged_into_one_commit() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--sleep", "0.3", "--write", "src/a.txt=a"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--sleep", "0.3", "--write", "src/b.txt=b"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    for n in ["a", "b"] {
        let a = Repo::agent(&log, n);
        assert_eq!(a["status"], "ok");
        // Exact attribution: each agent changed its own file only.
        assert_eq!(a["changedFiles"], 1, "{a}");
    }
    assert_eq!(repo.read("src/a.txt"), "a\n");
    assert_eq!(repo.read("src/b.txt"), "b\n");
    // One commit on the base, not a chain of merges.
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]), base);
    assert_eq!(
        repo.git(&["rev-list", "--count", &format!("{base}..HEAD")]),
        "1"
    );
    assert!(repo.status().is_empty(), "{}", repo.status());
    // No worktree metadata left dangling.
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(!list.contains("prunable"), "{list}");
}

#[test]
fn an_agent_does_not_see_another_agents_uncommitted_work() {
    let repo = Repo::new();
    let seen = repo.pathbuf("seen.out").display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "writer", "phase": "code", "command": agent_cmd(&["--write", "src/w.txt=half done", "--sleep", "1"])},
            {"name": "looker", "phase": "code",
             "command": ["sh", "-c", format!("sleep 0.5; if [ -e src/w.txt ]; then echo saw > {seen}; else echo clean > {seen}; fi; echo l >> src/l.txt")]}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "clean");
    let env_wd = repo.round_log(1);
    assert_eq!(Repo::agent(&env_wd, "looker")["status"], "ok");
}

#[test]
fn two_agents_editing_the_same_line_the_first_to_finish_wins() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "slow", "phase": "code", "command": ["sh", "-c", "sleep 1; echo slow > src/app.txt"]},
            {"name": "fast", "phase": "code", "command": ["sh", "-c", "sleep 0.2; echo fast > src/app.txt"]}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(Repo::agent(&log, "fast")["status"], "ok");
    let slow = Repo::agent(&log, "slow");
    assert_eq!(slow["status"], "conflict", "{slow}");
    assert!(
        slow["error"].as_str().unwrap().contains("src/app.txt"),
        "{slow}"
    );
    assert_eq!(repo.read("src/app.txt"), "fast\n");
    let kept = repo.git(&["rev-parse", "refs/orch/conflicts/round-1/slow"]);
    assert_eq!(repo.git(&["show", &format!("{kept}:src/app.txt")]), "slow");
    assert!(repo.status().is_empty(), "{}", repo.status());
}

#[test]
fn a_conflicting_agents_task_returns_to_the_queue_naming_the_files() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "slow", "phase": "code", "when": "tasks", "command": ["sh", "-c", "sleep 1; echo slow > src/app.txt"]},
            {"name": "fast", "phase": "code", "command": ["sh", "-c", "sleep 0.2; echo fast > src/app.txt"]}
        ]
    }));
    let id = repo
        .orch(&["task", "add", "--agent", "slow", "change the app"])
        .expect(0)
        .stdout();
    repo.orch(&["run"]).expect(0);
    let list = repo.orch(&["task", "list", "--json"]).expect(0).stdout();
    let tasks: serde_json::Value = serde_json::from_str(&list).unwrap();
    let t = &tasks[0];
    assert_eq!(t["id"], id.trim());
    assert_eq!(t["status"], "pending");
    assert!(t["body"].as_str().unwrap().contains("src/app.txt"), "{t}");
}

#[test]
fn a_revert_undoes_every_merged_change_and_the_ref_holds_the_union() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2, "revertStrategy": "round",
        "agents": [
            {"name": "good", "phase": "code", "command": agent_cmd(&["--write", "src/good.txt=fine"])},
            {"name": "bad", "phase": "code", "command": agent_cmd(&["--sleep", "0.3", "--write", "src/bad.txt=BROKEN"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    assert_eq!(repo.round_log(1)["status"], "reverted");
    assert_eq!(repo.head(), base);
    assert!(!repo.exists("src/good.txt") && !repo.exists("src/bad.txt"));
    assert!(repo.status().is_empty(), "{}", repo.status());
    let kept = repo.git(&["rev-parse", "refs/orch/rejected/round-1"]);
    let files = repo.git(&["ls-tree", "-r", "--name-only", &kept]);
    assert!(
        files.contains("src/good.txt") && files.contains("src/bad.txt"),
        "{files}"
    );
}

#[test]
fn a_failed_agents_partial_work_is_kept_not_merged() {
    // With `failedChanges: "aside"`, an error exit after its edit; by default, a run a signal
    // killed (it may have died mid-write). Either way: kept in a ref, never merged.
    for (extra, command) in [
        (
            json!({"failedChanges": "aside"}),
            agent_cmd(&["--write", "src/half.txt=half", "--exit", "2"]),
        ),
        (
            json!({}),
            json!(["sh", "-c", "echo half > src/half.txt; kill -KILL $$"]),
        ),
    ] {
        let repo = Repo::new();
        let mut m = json!({
            "name": "t", "rounds": 1,
            "agents": [{"name": "a", "phase": "code", "command": command}]
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        repo.mission(m);
        repo.orch(&["run"]).expect(0);
        let a = Repo::agent(&repo.round_log(1), "a").clone();
        assert_eq!(a["status"], "failed", "{a:#}");
        assert!(a.get("changeTested").is_none(), "{a:#}");
        assert!(!repo.exists("src/half.txt"));
        let kept = repo.git(&["rev-parse", "refs/orch/failed/round-1/a"]);
        assert_eq!(repo.git(&["show", &format!("{kept}:src/half.txt")]), "half");
    }
}

#[test]
fn worktrees_are_reused_across_rounds_and_left_clean() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 3,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=round {round}"])}]
    }));
    repo.orch(&["run"]).expect(0);
    assert_eq!(repo.read("src/a.txt"), "round 1\nround 2\nround 3\n");
    let wt = repo.pathbuf(".orch/worktrees/a");
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&wt)
        .output()
        .unwrap();
    assert!(
        status.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // A deleted worktree folder (a crash, a cleanup) is made again on the next round.
    std::fs::remove_dir_all(&wt).unwrap();
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert_eq!(repo.round_log(4)["status"], "ok");
}

#[test]
fn shared_isolation_stays_available() {
    let repo = Repo::new();
    let env_file = repo.pathbuf("env.out").display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 1, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--env", &env_file, "--write", "src/a.txt=x"])}]
    }));
    repo.orch(&["run", "--allow-dirty"]).expect(0);
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env.contains(&format!(
            "PWD={}",
            repo.path().canonicalize().unwrap().display()
        )) || env.contains(&format!("PWD={}", repo.path().display())),
        "{env}"
    );
    assert!(!repo.exists(".orch/worktrees"));
}

/// Agents that commit their own work (aider does by default; Claude Code when asked). In a
/// worktree its HEAD moves: what it committed, and what it left uncommitted on top, is merged
/// like any change, not taken for an empty run and reset away next round.
#[test]
fn an_agent_that_commits_its_own_work_is_merged_not_lost() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "maxConcurrency": 2,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&[
                "--round", "1", "--write", "src/a.txt=committed", "--commit", "agent a's commit",
                "--write", "src/a2.txt=left uncommitted"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--round", "1", "--write", "src/b.txt=b"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "a");
    assert_eq!(a["status"], "ok", "{log:#}");
    assert_eq!(a["changedFiles"], 2, "{log:#}");
    for f in ["src/a.txt", "src/a2.txt", "src/b.txt"] {
        assert!(repo.exists(f), "{f} was lost");
    }
    // Round 2 reset the worktree to the new base; nothing of round 1 was undone.
    assert_eq!(repo.round_log(2)["status"], "ok");
    assert_eq!(repo.read("src/a.txt"), "committed\n");
    assert!(repo.status().is_empty(), "{}", repo.status());
}

/// An agent that rewrites the commit it started from leaves a HEAD that does not descend from
/// the round's base: it is not merged (that would bring in rewritten history), the run fails
/// with the reason, and its files are kept in a ref.
#[test]
fn an_agent_that_rewrites_the_base_is_not_merged_and_its_files_are_kept() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--write", "src/a.txt=rewritten", "--amend", "history rewritten"])}]
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let a = Repo::agent(&repo.round_log(1), "a").clone();
    assert_eq!(a["status"], "failed", "{a:#}");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("off the round's base"),
        "{a:#}"
    );
    assert_eq!(repo.head(), base);
    assert!(!repo.exists("src/a.txt"));
    let kept = repo.git(&["rev-parse", "refs/orch/failed/round-1/a"]);
    assert_eq!(
        repo.git(&["show", &format!("{kept}:src/a.txt")]),
        "rewritten"
    );
}

/// The same in the shared tree: the agent's own commit moves HEAD; its files count as its
/// change (it is not `empty`) and the round's commit carries them.
#[test]
fn in_the_shared_tree_an_agents_own_commit_counts_as_its_change() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "git": {"isolation": "shared"},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--write", "src/a.txt=committed", "--commit", "agent a's commit"])}],
        "tests": {"command": tests_cmd("0")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "a");
    assert_eq!(a["status"], "ok", "{log:#}");
    assert_eq!(a["changedFiles"], 1, "{log:#}");
    assert!(repo.exists("src/a.txt"));
    assert!(repo.status().is_empty(), "{}", repo.status());
}
