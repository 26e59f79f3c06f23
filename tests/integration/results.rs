//! Agent results across rounds: cost, empty work, model escalation, the budget and stall
//! stops, and `orch status`.

use crate::common::{agent_cmd, tests_cmd, Repo};
use serde_json::json;

#[test]
fn cost_from_claude_output_is_summed_across_rounds() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 3,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--cost", "0.25", "--write", "src/a.txt=x"])},
            {"name": "b", "phase": "review", "command": agent_cmd(&["--cost", "0.125", "--result", "reviewed"])}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    for n in 1..=3 {
        let log = repo.round_log(n);
        assert!(
            (log["costUsd"].as_f64().unwrap() - 0.375).abs() < 1e-9,
            "{log:#}"
        );
        assert_eq!(Repo::agent(&log, "a")["costKnown"], true);
        assert!((log["totalCostUsd"].as_f64().unwrap() - 0.375 * n as f64).abs() < 1e-9);
    }
    let st = repo.state();
    assert!((st["totalCostUsd"].as_f64().unwrap() - 1.125).abs() < 1e-9);
    assert!((st["agents"]["a"]["costUsd"].as_f64().unwrap() - 0.75).abs() < 1e-9);
}

#[test]
fn an_agent_without_a_known_cost_is_flagged_not_guessed() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--no-json", "--write", "src/a.txt=x"])}]
    }));
    repo.orch(&["run"]).expect(0);
    let a = Repo::agent(&repo.round_log(1), "a").clone();
    assert_eq!(a["costKnown"], false);
    assert_eq!(a["costUsd"], 0.0);
}

#[test]
fn a_claude_is_error_result_is_a_failed_run_even_with_exit_0() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--is-error", "--write", "src/a.txt=x"])}]
    }));
    repo.orch(&["run"]).expect(0);
    let a = Repo::agent(&repo.round_log(1), "a").clone();
    assert_eq!(a["status"], "failed");
    assert_eq!(a["exitCode"], 0);
    assert!(a["error"].as_str().unwrap().contains("is_error"));
}

#[test]
fn a_failing_agent_moves_up_its_ladder_after_escalate_after_failures() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 4,
        "agents": [{"name": "a", "phase": "code", "models": ["small", "medium", "large"], "escalateAfter": 2,
                    "command": agent_cmd(&["--exit", "1"])}]
    }));
    let run = repo.orch(&["run", "--json"]).expect(0);
    let models: Vec<String> = (1..=4)
        .map(|n| {
            Repo::agent(&repo.round_log(n), "a")["model"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(models, ["small", "small", "medium", "medium"]);
    assert_eq!(
        Repo::agent(&repo.round_log(2), "a")["escalatedTo"],
        "medium"
    );
    assert_eq!(repo.state()["agents"]["a"]["model"], "large");
    let escalations: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "escalation")
        .collect();
    assert_eq!(escalations.len(), 2, "{}", run.stdout());
    assert_eq!(escalations[0]["from"], "small");
    assert_eq!(escalations[0]["to"], "medium");
    assert!(escalations[0]["reason"]
        .as_str()
        .unwrap()
        .contains("escalateAfter 2"));
}

#[test]
fn an_agent_that_changes_nothing_is_empty_and_counted() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [
            {"name": "idle", "phase": "code", "command": agent_cmd(&[])},
            {"name": "quiet-reviewer", "phase": "review", "command": agent_cmd(&[])},
            {"name": "reviewer", "phase": "review", "command": agent_cmd(&["--result", "looked at it"])}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(2);
    assert_eq!(Repo::agent(&log, "idle")["status"], "empty");
    assert_eq!(Repo::agent(&log, "quiet-reviewer")["status"], "empty");
    assert_eq!(Repo::agent(&log, "reviewer")["status"], "ok");
    assert_eq!(Repo::agent(&log, "reviewer")["summary"], "looked at it");
    assert_eq!(repo.state()["agents"]["idle"]["consecutiveEmptyRounds"], 2);
}

#[test]
fn the_budget_stops_the_run_with_exit_3_and_no_further_round() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 5, "maxConcurrency": 1, "budgetUsd": 1.0,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--cost", "0.4", "--write", "src/a.txt=x"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--cost", "0.4", "--write", "src/b.txt=x"])}
        ]
    }));
    let run = repo.orch(&["run"]).expect(3);
    assert!(run.stderr().contains("budget reached"), "{}", run.stderr());
    // Round 1 spent 0.8; round 2's first job reached 1.2 and the second never started.
    let log = repo.round_log(2);
    let statuses: Vec<&str> = log["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "cancelled"], "{log:#}");
    assert!(log["stopReason"]
        .as_str()
        .unwrap()
        .contains("budget reached"));
    assert!(!repo.has_round_log(3));
    // The work of the run that finished was kept (committed), not thrown away.
    assert!(repo.status().is_empty());
    // A later run refuses to start a round; --budget raises the limit.
    repo.orch(&["run"]).expect(3);
    assert!(!repo.has_round_log(3));
    repo.orch(&["run", "--budget", "100", "--rounds", "1"])
        .expect(0);
    assert!(repo.has_round_log(3));
}

#[test]
fn the_stall_guard_stops_after_empty_rounds() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 10, "stop": {"afterEmptyRounds": 2},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[])}]
    }));
    let run = repo.orch(&["run"]).expect(3);
    assert!(
        run.stderr().contains("afterEmptyRounds"),
        "{}",
        run.stderr()
    );
    assert!(repo.has_round_log(2));
    assert!(!repo.has_round_log(3));
}

#[test]
fn reverted_rounds_count_towards_the_stall_guard() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 10, "stop": {"afterEmptyRounds": 2},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=BROKEN"])}],
        "tests": {"command": tests_cmd("0")}
    }));
    repo.orch(&["run"]).expect(3);
    assert!(!repo.has_round_log(3));
}

#[test]
fn status_shows_where_the_run_stands() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 4, "budgetUsd": 10,
        "agents": [{"name": "a", "phase": "code", "models": ["m1", "m2"],
                    "command": agent_cmd(&["--cost", "0.5", "--write", "src/a.txt=x"])}]
    }));
    repo.orch(&["run", "--rounds", "2"]).expect(0);
    repo.orch(&[
        "task",
        "add",
        "--agent",
        "a",
        "--priority",
        "1",
        "do a thing",
    ])
    .expect(0);
    let run = repo.orch(&["status", "--json"]).expect(0);
    let s: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(s["lastRound"], 2);
    assert_eq!(s["lastRoundStatus"], "ok");
    assert_eq!(s["roundsLeft"], 2);
    assert!((s["budgetLeftUsd"].as_f64().unwrap() - 9.0).abs() < 1e-9);
    let a = &s["agents"][0];
    assert_eq!(a["model"], "m1");
    assert_eq!(a["runs"], 2);
    assert_eq!(a["pendingTasks"], 1);
    let human = repo.orch(&["status"]).expect(0).stdout();
    assert!(
        human.contains("round 2 of 4") && human.contains("$9.00 left"),
        "{human}"
    );
}

/// Claude Code's own output when it ran out of turns after its edit (recorded from 2.1.332
/// with `--max-turns 1` against the mock API: exit 1, `subtype: "error_max_turns"`).
fn out_of_turns(write: &str) -> serde_json::Value {
    let recorded = format!(
        "{}/fixtures/cli-output/real/claude-max-turns.stdout",
        env!("CARGO_MANIFEST_DIR")
    );
    agent_cmd(&[
        "--write",
        write,
        "--cat",
        &recorded,
        "--no-json",
        "--exit",
        "1",
    ])
}

fn refs(repo: &Repo) -> String {
    repo.git(&["for-each-ref", "--format=%(refname)", "refs/orch"])
}

#[test]
fn a_run_out_of_turns_after_its_edit_has_its_change_tested_and_committed() {
    for isolation in ["worktree", "shared"] {
        let repo = Repo::new();
        repo.mission(json!({
            "name": "t", "rounds": 1, "git": {"isolation": isolation},
            "tests": {"command": tests_cmd("0")},
            "agents": [{"name": "fixer", "phase": "code", "models": ["small", "big"],
                        "escalateAfter": 1, "command": out_of_turns("src/fix.txt=right fix")}]
        }));
        let run = repo.orch(&["run"]).expect(0);
        let log = repo.round_log(1);
        let a = Repo::agent(&log, "fixer");
        // How it ended, in the status and the cause; that its change went on anyway.
        assert_eq!(a["status"], "failed", "{isolation}: {log:#}");
        assert_eq!(a["cause"], "maxTurns", "{isolation}: {log:#}");
        assert_eq!(a["changeTested"], true, "{isolation}: {log:#}");
        assert!(
            run.stderr().contains("fixer failed in")
                && run
                    .stderr()
                    .contains("(maxTurns: Reached maximum number of turns (1)"),
            "{isolation}: {}",
            run.stderr()
        );
        // Tested and committed, named in the commit; nothing kept aside.
        assert_eq!(log["tests"]["status"], "passed", "{isolation}: {log:#}");
        assert_eq!(log["status"], "ok");
        assert_eq!(repo.read("src/fix.txt"), "right fix\n", "{isolation}");
        assert_eq!(repo.git(&["show", "HEAD:src/fix.txt"]), "right fix");
        assert!(
            repo.git(&["log", "-1", "--format=%s"])
                .contains("code: fixer"),
            "{isolation}: {}",
            repo.git(&["log", "-1", "--format=%s"])
        );
        assert_eq!(refs(&repo), "", "{isolation}");
        // Its change landed: no escalation, no unproductive streak.
        let st = &repo.state()["agents"]["fixer"];
        assert_eq!(st["model"], "small", "{isolation}: {st:#}");
        assert_eq!(st["consecutiveFailures"], 0, "{isolation}: {st:#}");
        // The report counts it as landed work, kept, and names how it ended.
        let report = repo.orch_json(&["report", "--format", "json"]);
        assert_eq!(
            report["rounds"][0]["landed"], true,
            "{isolation}: {report:#}"
        );
        let row = &report["agents"][0];
        assert_eq!(
            (row["kept"].as_u64(), row["failed"].as_u64()),
            (Some(1), Some(0)),
            "{row:#}"
        );
    }
}

#[test]
fn a_failed_runs_change_that_breaks_the_tests_is_taken_out() {
    for isolation in ["worktree", "shared"] {
        let repo = Repo::new();
        repo.mission(json!({
            "name": "t", "rounds": 1, "git": {"isolation": isolation},
            "tests": {"command": tests_cmd("0")},
            "agents": [
                {"name": "good", "phase": "code", "command": agent_cmd(&["--write", "src/good.txt=fine"])},
                {"name": "fixer", "phase": "code", "command": out_of_turns("src/fix.txt=BROKEN")}
            ]
        }));
        let base = repo.head();
        repo.orch(&["run"]).expect(0);
        let log = repo.round_log(1);
        let a = Repo::agent(&log, "fixer");
        assert_eq!(a["changeTested"], true, "{isolation}: {log:#}");
        assert!(!repo.exists("src/fix.txt"), "{isolation}");
        if isolation == "worktree" {
            // The per-agent revert names it and keeps the other's work.
            assert_eq!(log["revert"]["strategy"], "per-agent", "{log:#}");
            assert_eq!(log["revert"]["culprits"], json!(["fixer"]), "{log:#}");
            assert_eq!(repo.read("src/good.txt"), "fine\n");
            let error = a["error"].as_str().unwrap();
            assert!(
                error.starts_with("Reached maximum number of turns (1)")
                    && error.contains("broke the tests and was taken out"),
                "{error}"
            );
            assert!(refs(&repo).contains("refs/orch/rejected/round-1/fixer"));
        } else {
            // The shared tree reverts the whole round.
            assert_eq!(log["status"], "reverted", "{log:#}");
            assert_eq!(repo.head(), base);
        }
    }
}

#[test]
fn a_timed_out_run_or_failed_changes_aside_keeps_the_work_aside_untested() {
    for isolation in ["worktree", "shared"] {
        let repo = Repo::new();
        repo.mission(json!({
            // One agent at a time: the shared tree tells who wrote what by its fingerprints
            // before and after each run, exact only when runs do not overlap.
            "name": "t", "rounds": 1, "git": {"isolation": isolation}, "killGraceS": 0.5,
            "failedChanges": "aside", "maxConcurrency": 1,
            "tests": {"command": tests_cmd("0")},
            "agents": [
                // 3 s: time enough to write its file on a loaded machine before it is killed.
                {"name": "slow", "phase": "code", "timeoutS": 3,
                 "command": agent_cmd(&["--write", "src/half.txt=half", "--hang"])},
                {"name": "fixer", "phase": "code", "command": out_of_turns("src/fix.txt=right fix")},
                {"name": "good", "phase": "code", "command": agent_cmd(&["--write", "src/good.txt=fine"])}
            ]
        }));
        repo.orch(&["run"]).expect(0);
        let log = repo.round_log(1);
        assert_eq!(Repo::agent(&log, "slow")["status"], "timeout", "{log:#}");
        let fixer = Repo::agent(&log, "fixer");
        assert_eq!(fixer["status"], "failed", "{log:#}");
        assert_eq!(fixer["cause"], "maxTurns", "{log:#}");
        assert!(fixer.get("changeTested").is_none(), "{log:#}");
        // Neither is tested nor committed: each is in its ref, out of the tree.
        for (file, r) in [
            ("src/half.txt", "refs/orch/timeout/round-1/slow"),
            ("src/fix.txt", "refs/orch/failed/round-1/fixer"),
        ] {
            assert!(!repo.exists(file), "{isolation}: {file} in the tree");
            assert!(
                refs(&repo).contains(r),
                "{isolation}: {}\n{log:#}",
                refs(&repo)
            );
            let kept = repo.git(&["ls-tree", "-r", "--name-only", r]);
            assert!(kept.contains(file), "{isolation}: {r}: {kept}");
        }
        assert_eq!(repo.git(&["show", "HEAD:src/good.txt"]), "fine");
        assert_eq!(
            repo.git(&["log", "-1", "--format=%s"]),
            "orch: round 1 code: good"
        );
        assert_eq!(repo.status(), "", "{isolation}");
    }
}

#[test]
fn a_round_in_which_nothing_landed_says_so_everywhere() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "tests": {"command": tests_cmd("0")},
        "agents": [
            {"name": "a", "phase": "code",
             "command": agent_cmd(&["--round", "1", "--exit", "1", "--round", "2", "--write", "src/a.txt=x"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--is-error"])}
        ]
    }));
    let run = repo.orch(&["run", "--json"]).expect(0);
    let one = repo.round_log(1);
    // The round did what it should with what it got: `ok`, and that nothing came of it.
    assert_eq!(one["status"], "ok", "{one:#}");
    assert_eq!(one["nothingLanded"], true, "{one:#}");
    let notes = one["notes"].to_string();
    // The runs are named in the order they ended: two that end at once come either way.
    assert!(
        [
            "nothing landed: no agent's work went in (a failed (exit), b failed (exit))",
            "nothing landed: no agent's work went in (b failed (exit), a failed (exit))"
        ]
        .iter()
        .any(|n| notes.contains(n)),
        "{notes}"
    );
    // Round 2 landed a's change: not said of it.
    let two = repo.round_log(2);
    assert!(two.get("nothingLanded").is_none(), "{two:#}");
    let ends: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "roundEnd")
        .collect();
    assert_eq!(ends[0]["status"], "ok");
    assert_eq!(ends[0]["nothingLanded"], true, "{ends:?}");
    assert!(ends[1].get("nothingLanded").is_none(), "{ends:?}");

    // The console line and `orch status` of a night whose last round landed nothing (a
    // changes nothing in round 3, b fails again).
    repo.write(
        "orch.json",
        &repo
            .read("orch.json")
            .replace("\"rounds\": 2", "\"rounds\": 3"),
    );
    repo.git(&["commit", "-qam", "one more round"]);
    let run = repo.orch(&["run"]).expect(0);
    assert!(
        run.stderr()
            .contains("round 3: ok, nothing landed (see the round log's notes) in"),
        "{}",
        run.stderr()
    );
    let status = repo.orch(&["status"]).expect(0).stdout();
    assert!(status.contains("(last: ok, nothing landed)"), "{status}");
    let status = repo.orch_json(&["status", "--json"]);
    assert_eq!(status["lastRoundStatus"], "ok");
    assert_eq!(status["lastRoundNothingLanded"], true);
}
