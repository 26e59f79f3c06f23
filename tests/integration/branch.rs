//! `--branch NAME` / `git.branch`: the rounds commit on a branch of their own and the user's
//! branch is left where it was. The real binary on scratch repositories.

use crate::common::{agent_cmd, tests_cmd, Repo};
use serde_json::json;

fn two_rounds(repo: &Repo, git: serde_json::Value) {
    repo.mission(json!({
        "name": "nightly", "rounds": 2, "maxConcurrency": 1,
        "agents": [{"name": "a", "phase": "code",
                    "command": agent_cmd(&["--write", "src/a.txt=round {round}"])}],
        "tests": {"command": tests_cmd("0")},
        "git": git
    }));
}

fn current_branch(repo: &Repo) -> String {
    repo.git(&["symbolic-ref", "--short", "HEAD"])
}

#[test]
fn branch_puts_the_rounds_on_their_own_branch_and_leaves_the_users_alone() {
    let repo = Repo::new();
    two_rounds(&repo, json!({}));
    let mine = current_branch(&repo);
    let before = repo.head();
    let run = repo.orch(&["run", "--branch", "orch/night"]).expect(0);
    let err = run.stderr();
    // The user's branch: same commit, checked out again, clean.
    assert_eq!(current_branch(&repo), mine, "{err}");
    assert_eq!(repo.git(&["rev-parse", &mine]), before);
    assert_eq!(repo.head(), before);
    assert_eq!(repo.status(), "");
    assert!(!repo.exists("src/a.txt"));
    // The rounds: two commits on the new branch, on top of the user's commit.
    let commits = repo.git(&["rev-list", "--count", &format!("{before}..orch/night")]);
    assert_eq!(commits, "2", "{err}");
    assert_eq!(
        repo.git(&["show", "orch/night:src/a.txt"]),
        "round 1\nround 2"
    );
    assert_eq!(
        repo.round_log(2)["commit"],
        repo.git(&["rev-parse", "orch/night"])
    );
    // What to do with it.
    for hint in [
        format!("git log --oneline {mine}..orch/night"),
        format!("git diff --stat {mine}...orch/night"),
        "git merge orch/night".to_string(),
        "gh pr create --head orch/night".to_string(),
    ] {
        assert!(err.contains(&hint), "no hint {hint:?} in\n{err}");
    }
    assert!(
        std::fs::read_dir(repo.pathbuf(".git/orch"))
            .unwrap()
            .flatten()
            .all(|d| !d.path().join("branch.json").exists()),
        "the branch record outlived the run"
    );

    // The next night goes on with the branch: it descends from HEAD.
    repo.orch(&["run", "--rounds", "1", "--branch", "orch/night"])
        .expect(0);
    assert_eq!(current_branch(&repo), mine);
    assert_eq!(repo.head(), before);
    let commits = repo.git(&["rev-list", "--count", &format!("{before}..orch/night")]);
    assert_eq!(commits, "3");
}

#[test]
fn git_branch_fills_in_mission_and_date() {
    let repo = Repo::new();
    two_rounds(&repo, json!({"branch": "orch/{mission}-{date}"}));
    let before = repo.head();
    let run = repo.orch(&["run", "--rounds", "1"]).expect(0);
    let date = &repo.round_log(1)["startedAt"].as_str().unwrap()[..10].to_string();
    let name = format!("orch/nightly-{date}");
    let tip = repo.git(&["rev-parse", &name]);
    assert_ne!(tip, before, "{}", run.stderr());
    assert_eq!(repo.head(), before);
}

#[test]
fn a_branch_that_does_not_hold_head_is_refused() {
    let repo = Repo::new();
    let first = repo.head();
    two_rounds(&repo, json!({}));
    // A branch from before the mission's commit: HEAD is not in it.
    repo.git(&["branch", "old", &first]);
    let run = repo.orch(&["run", "--branch", "old"]).expect(2);
    let err = run.stderr();
    assert!(
        err.contains("branch old exists and does not hold HEAD"),
        "{err}"
    );
    assert_eq!(repo.git(&["rev-parse", "old"]), first);
    assert!(!repo.has_round_log(1));

    let run = repo.orch(&["run", "--branch", "bad..name"]).expect(2);
    assert!(
        run.stderr().contains("not a valid git branch name"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_dirty_tree_is_refused_before_the_branch_is_made() {
    let repo = Repo::new();
    two_rounds(&repo, json!({}));
    repo.write("notes.txt", "mine\n");
    repo.orch(&["run", "--branch", "orch/x"]).expect(2);
    let branches = repo.git(&["branch", "--list", "orch/x"]);
    assert_eq!(
        branches, "",
        "the branch was made for a run that was refused"
    );
    assert_eq!(repo.read("notes.txt"), "mine\n");
}
