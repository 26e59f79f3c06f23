//! Scheduling: the task queue, priorities, longest-first, adaptive timeouts, `when` gating and
//! task decomposition.

use crate::common::{agent_cmd, tests_cmd, Repo};
use serde_json::{json, Value};

fn tasks(repo: &Repo, all: bool) -> Vec<Value> {
    let mut args = vec!["task", "list", "--json"];
    if all {
        args.push("--all");
    }
    let out = repo.orch(&args).expect(0).stdout();
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn start(log: &Value, name: &str) -> u64 {
    Repo::agent(log, name)["startMs"].as_u64().unwrap()
}

#[test]
fn the_highest_priority_task_goes_first() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [{"name": "w", "phase": "code", "when": "tasks",
                    "command": agent_cmd(&["--write", "src/w.txt=x"])}]
    }));
    let low = repo
        .orch(&["task", "add", "--agent", "w", "--priority", "3", "polish"])
        .expect(0)
        .stdout();
    let high = repo
        .orch(&[
            "task",
            "add",
            "--agent",
            "w",
            "--priority",
            "1",
            "--body",
            "now",
            "fix the crash",
        ])
        .expect(0)
        .stdout();
    repo.orch(&["run"]).expect(0);
    assert_eq!(Repo::agent(&repo.round_log(1), "w")["task"], high.trim());
    assert_eq!(Repo::agent(&repo.round_log(2), "w")["task"], low.trim());
    let all = tasks(&repo, true);
    assert!(all.iter().all(|t| t["status"] == "done"), "{all:?}");
    assert!(tasks(&repo, false).is_empty());
}

#[test]
fn an_agent_with_when_tasks_idles_without_one() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "w", "phase": "code", "when": "tasks", "command": agent_cmd(&["--write", "src/w.txt=x"])}]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "skipped");
    assert_eq!(log["decisions"][0]["reason"], "no pending task");
}

#[test]
fn inbox_lines_become_tasks_and_bad_lines_are_skipped() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [
            {"name": "w", "phase": "code", "when": "tasks", "command": agent_cmd(&["--write", "src/w.txt=x"])},
            {"name": "producer", "phase": "review",
             "command": ["sh", "-c", "echo '{\"agent\":\"w\",\"priority\":1,\"title\":\"first\"}' >> $ORCH_TASKS_INBOX; echo 'not json' >> $ORCH_TASKS_INBOX; echo '{\"agent\":\"nobody\",\"title\":\"x\"}' >> $ORCH_TASKS_INBOX"]}
        ]
    }));
    let run = repo.orch(&["run"]).expect(0);
    assert!(
        run.stderr().contains("line 2") && run.stderr().contains("not a task"),
        "{}",
        run.stderr()
    );
    let t = tasks(&repo, false);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0]["agent"], "w");
    assert_eq!(t[0]["title"], "first");
    assert_eq!(t[0]["priority"], 1);
    assert_eq!(t[0]["createdRound"], 1);
    assert_eq!(Repo::agent(&repo.round_log(1), "producer")["status"], "ok");
}

#[test]
fn a_reverted_task_comes_back_at_priority_1_with_the_failing_output() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "w", "phase": "code", "when": "tasks", "command": agent_cmd(&["--write", "src/w.txt=BROKEN"])}],
        "tests": {"command": tests_cmd("0")}
    }));
    repo.orch(&[
        "task",
        "add",
        "--agent",
        "w",
        "--priority",
        "3",
        "risky change",
    ])
    .expect(0);
    repo.orch(&["run"]).expect(0);
    let t = &tasks(&repo, false)[0];
    assert_eq!(t["status"], "pending");
    assert_eq!(t["priority"], 1);
    assert_eq!(t["attempts"], 1);
    let body = t["body"].as_str().unwrap();
    assert!(
        body.contains("reverted") && body.contains("3 passed, 1 failed"),
        "{body}"
    );
}

#[test]
fn a_timed_out_task_is_split_by_a_p1_decomposition_task() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.2,
        "tasks": {"splitBy": "planner"},
        "agents": [
            {"name": "w", "phase": "code", "when": "tasks", "timeoutS": 0.5, "command": agent_cmd(&["--sleep", "5"])},
            {"name": "planner", "phase": "review", "when": "tasks", "command": agent_cmd(&[])}
        ]
    }));
    let id = repo
        .orch(&[
            "task",
            "add",
            "--agent",
            "w",
            "--body",
            "all of it",
            "rewrite everything",
        ])
        .expect(0)
        .stdout();
    let id = id.trim();
    repo.orch(&["run"]).expect(0);
    let all = tasks(&repo, true);
    let orig = all.iter().find(|t| t["id"] == id).unwrap();
    assert_eq!(orig["status"], "split");
    let split = all.iter().find(|t| t["agent"] == "planner").unwrap();
    assert_eq!(split["priority"], 1);
    assert_eq!(split["parent"], id);
    let body = split["body"].as_str().unwrap();
    assert!(
        body.contains("rewrite everything")
            && body.contains("all of it")
            && body.contains("five minutes"),
        "{body}"
    );
    // The tree view shows the decomposition under the original.
    let list = repo.orch(&["task", "list", "--all"]).expect(0).stdout();
    assert!(list.contains("  Split"), "{list}");
}

#[test]
fn a_task_failing_split_after_times_is_split() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "tasks": {"splitBy": "planner", "splitAfter": 2},
        "agents": [
            {"name": "w", "phase": "code", "when": "tasks", "command": agent_cmd(&["--exit", "1"])},
            {"name": "planner", "phase": "code", "when": "tasks", "command": agent_cmd(&["--write", "src/p.txt=p"])}
        ]
    }));
    repo.orch(&["task", "add", "--agent", "w", "hard thing"])
        .expect(0);
    repo.orch(&["run"]).expect(0);
    let all = tasks(&repo, true);
    assert_eq!(all[0]["status"], "split", "{all:?}");
    assert_eq!(all[0]["attempts"], 2);
    assert!(all.iter().any(|t| t["agent"] == "planner"));
}

#[test]
fn the_pool_runs_priority_first_then_the_longest_expected_run() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "maxConcurrency": 1, "git": {"isolation": "shared"},
        "agents": [
            {"name": "short", "phase": "code", "command": agent_cmd(&["--sleep", "0.1", "--write", "src/s.txt=s"])},
            {"name": "long", "phase": "code", "command": agent_cmd(&["--sleep", "0.6", "--write", "src/l.txt=l"])},
            {"name": "urgent", "phase": "code", "priority": 1, "command": agent_cmd(&["--write", "src/u.txt=u"])}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    // Round 1: no history, so priority then mission order.
    let r1 = repo.round_log(1);
    assert!(
        start(&r1, "urgent") < start(&r1, "short") && start(&r1, "short") < start(&r1, "long"),
        "{r1:#}"
    );
    // Round 2: the long agent goes before the short one.
    let r2 = repo.round_log(2);
    assert!(
        start(&r2, "urgent") < start(&r2, "long") && start(&r2, "long") < start(&r2, "short"),
        "{r2:#}"
    );
}

#[test]
fn adaptive_timeout_is_factor_times_the_mean_clamped() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 3,
        "agents": [
            {"name": "low", "phase": "code", "timeoutS": 30,
             "adaptiveTimeout": {"factor": 2.0, "minS": 1, "maxS": 5, "minSamples": 2},
             "command": agent_cmd(&["--sleep", "0.2", "--write", "src/a.txt=x"])},
            {"name": "mid", "phase": "code", "timeoutS": 30,
             "adaptiveTimeout": {"factor": 4.0, "minS": 0.1, "maxS": 50, "minSamples": 2},
             "command": agent_cmd(&["--sleep", "0.5", "--write", "src/b.txt=x"])}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    for r in 1..=2 {
        assert_eq!(Repo::agent(&repo.round_log(r), "low")["timeoutMs"], 30_000);
    }
    let r3 = repo.round_log(3);
    // low: 2 x ~0.2 s is below minS.
    assert_eq!(Repo::agent(&r3, "low")["timeoutMs"], 1000);
    // mid: 4 x the mean of its two runs, as recorded in the state before round 3.
    let mean: u64 = [1, 2]
        .iter()
        .map(|&r| {
            Repo::agent(&repo.round_log(r), "mid")["elapsedMs"]
                .as_u64()
                .unwrap()
        })
        .sum::<u64>()
        / 2;
    let t = Repo::agent(&r3, "mid")["timeoutMs"].as_u64().unwrap();
    assert!(t.abs_diff(4 * mean) <= 4, "timeout {t} vs 4 x {mean}");
}

#[test]
fn every_n_and_command_gates_decide_when_an_agent_runs() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 4,
        "agents": [
            {"name": "even", "phase": "code", "when": {"every": 2}, "command": agent_cmd(&["--write", "src/e.txt={round}"])},
            {"name": "gated", "phase": "code", "when": {"command": ["sh", "-c", "grep -q 2 src/e.txt 2>/dev/null"]},
             "command": agent_cmd(&["--write", "src/g.txt={round}"])}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let ran = |r: u32, n: &str| {
        repo.round_log(r)["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == n)
    };
    assert_eq!(
        (1..=4).map(|r| ran(r, "even")).collect::<Vec<_>>(),
        [false, true, false, true]
    );
    // The gate opens once round 2 wrote "2".
    assert_eq!(
        (1..=4).map(|r| ran(r, "gated")).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    let d = &repo.round_log(1)["decisions"][0];
    assert!(
        d["reason"].as_str().unwrap().contains("next in round 2"),
        "{d}"
    );
}
