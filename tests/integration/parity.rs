//! Parity with the original orchestrator: per-agent revert, the circuit breaker, dependencies
//! and handoffs, file ownership, the decision log, convergence, sequences and import.

use crate::common::{agent_cmd, sim_cmd, tests_cmd, Repo};
use serde_json::json;

#[test]
fn only_the_agent_that_broke_the_tests_is_reverted_and_the_other_keeps_its_work() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "good", "phase": "code", "command": agent_cmd(&["--write", "src/good.txt=fine"])},
            {"name": "bad", "phase": "code", "command": agent_cmd(&["--sleep", "0.3", "--write", "src/bad.txt=BROKEN"])}
        ],
        "sims": {"post": {"command": sim_cmd("0")}},
        "tests": {"command": tests_cmd("0")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    let revert = &log["revert"];
    assert_eq!(revert["strategy"], "per-agent");
    assert_eq!(revert["culprits"], json!(["bad"]));
    // bad merged last, so it was the first one left out, and that run passed.
    assert_eq!(revert["testRuns"][0]["without"], json!(["bad"]));
    assert_eq!(revert["testRuns"][0]["status"], "passed");
    // The committed tree's result is the run without exactly the culprit; the extra run has
    // its own start and its time is test time, not overhead.
    assert_eq!(revert["committed"]["status"], "passed", "{revert:#}");
    let run = &revert["testRuns"][0];
    assert!(
        run["startMs"].as_u64().unwrap() >= log["tests"]["startMs"].as_u64().unwrap(),
        "{log:#}"
    );
    let t = &log["timing"];
    assert!(
        t["tests"].as_u64().unwrap()
            >= log["tests"]["elapsedMs"].as_u64().unwrap() + run["elapsedMs"].as_u64().unwrap(),
        "{log:#}"
    );
    assert_eq!(
        log["sims"]["post"]["published"], false,
        "the post-sim saw the broken union"
    );
    assert!(repo.exists("src/good.txt"));
    assert!(!repo.exists("src/bad.txt"));
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]), base);
    let kept = repo.git(&["rev-parse", "refs/orch/rejected/round-1/bad"]);
    assert_eq!(
        repo.git(&["show", &format!("{kept}:src/bad.txt")]),
        "BROKEN"
    );
    assert!(repo.status().is_empty(), "{}", repo.status());
    // The committed tree's result is the known one for the next base: the next run does not
    // measure the tests at HEAD again.
    let st = repo.state();
    assert_eq!(st["testBaseline"]["commit"], repo.head(), "{st:#}");
    assert_eq!(st["testBaseline"]["passed"], true, "{st:#}");
    assert_eq!(st["testBaseline"]["failedCount"], 0, "{st:#}");
    let again = repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert!(
        !again.stderr().contains("test baseline at"),
        "{}",
        again.stderr()
    );
}

/// Six code agents merged in mission order (one slot), two of which break the tests: the
/// bisection finds both, takes out only their changes, and keeps the other four.
#[test]
fn two_culprits_among_six_agents_are_found_by_bisection_and_the_rest_is_kept() {
    let repo = Repo::new();
    let agents: Vec<_> = (0..6)
        .map(|i| {
            let text = if i == 1 || i == 4 { "BROKEN" } else { "fine" };
            json!({"name": format!("a{i}"), "phase": "code",
                   "command": agent_cmd(&["--write", &format!("src/a{i}.txt={text}")])})
        })
        .collect();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1, "agents": agents,
        "tests": {"command": tests_cmd("0")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    let revert = &log["revert"];
    assert_eq!(revert["strategy"], "per-agent");
    assert_eq!(revert["culprits"], json!(["a1", "a4"]));
    let runs = revert["testRuns"].as_array().unwrap();
    // Bisection: 3 runs to find a1, 1 to see the rest still fails, 2 to find a4, 1 to confirm.
    assert_eq!(runs.len(), 7, "{revert:#}");
    let last = runs.last().unwrap();
    assert_eq!(last["status"], "passed");
    assert_eq!(last["without"], json!(["a1", "a4"]));
    for i in [0, 2, 3, 5] {
        assert!(
            repo.exists(&format!("src/a{i}.txt")),
            "a{i}'s work was lost"
        );
    }
    for i in [1, 4] {
        assert!(!repo.exists(&format!("src/a{i}.txt")));
        let kept = format!("refs/orch/rejected/round-1/a{i}");
        assert_eq!(
            repo.git(&["show", &format!("{kept}:src/a{i}.txt")]),
            "BROKEN"
        );
    }
    assert!(repo.status().is_empty(), "{}", repo.status());
    assert_ne!(repo.head(), base);
    let reverts: Vec<serde_json::Value> = repo
        .read(".orch/events.ndjson")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "revert")
        .collect();
    let agents: Vec<_> = reverts.iter().map(|e| e["agent"].clone()).collect();
    assert_eq!(agents, vec![json!("a1"), json!("a4")], "{reverts:#?}");
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(
        md.contains("took out a1, a4 after 7 extra test runs"),
        "{md}"
    );
}

#[test]
fn when_no_single_agent_explains_the_failure_the_whole_round_is_reverted() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=BROKEN"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--sleep", "0.3", "--write", "src/b.txt=BROKEN"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "reverted");
    assert_eq!(log["revert"]["strategy"], "round");
    assert_eq!(log["revert"]["testRuns"].as_array().unwrap().len(), 2);
    assert_eq!(repo.head(), base);
    let kept = repo.git(&["rev-parse", "refs/orch/rejected/round-1"]);
    let files = repo.git(&["ls-tree", "-r", "--name-only", &kept]);
    assert!(
        files.contains("src/a.txt") && files.contains("src/b.txt"),
        "{files}"
    );
}

#[test]
fn the_circuit_breaker_stops_after_rounds_of_failing_tests() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 10, "stop": {"afterTestFailures": 2},
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=BROKEN {round}"])}],
        "tests": {"command": tests_cmd("0")}
    }));
    let run = repo.orch(&["run"]).expect(3);
    assert!(run.stderr().contains("circuit breaker"), "{}", run.stderr());
    assert!(!repo.has_round_log(3));
    let reason = repo.round_log(2)["stopReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("afterTestFailures 2"), "{reason}");
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(
        md.contains("circuit breaker"),
        "the report gives the reason: {md}"
    );
}

#[test]
fn a_dependent_agent_is_blocked_until_its_dependency_reports_complete() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 3,
        "agents": [
            {"name": "api", "phase": "code",
             "command": agent_cmd(&["--write", "src/api.txt={round}", "--round", "1", "--handoff", "in-progress", "--round", "2", "--handoff", "complete"])},
            {"name": "ui", "phase": "code", "dependsOn": ["api"], "command": agent_cmd(&["--write", "src/ui.txt={round}"])}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let decision = |r: u32| {
        repo.round_log(r)["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["agent"] == "ui")
            .unwrap()
            .clone()
    };
    assert_eq!(decision(1)["decision"], "blocked");
    assert!(decision(1)["reason"]
        .as_str()
        .unwrap()
        .contains("api (no report yet)"));
    assert_eq!(decision(2)["decision"], "blocked");
    assert!(decision(2)["reason"]
        .as_str()
        .unwrap()
        .contains("in-progress"));
    assert_eq!(decision(3)["decision"], "included");
    assert_eq!(decision(3)["outcome"], "ok");
    assert!(decision(3)["elapsedMs"].as_u64().is_some());
    assert_eq!(
        Repo::agent(&repo.round_log(2), "api")["handoff"],
        "complete"
    );
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(md.contains("| ui | 1 | 0 | 2 |"), "decision table: {md}");
}

#[test]
fn every_agent_all_done_finishes_the_run_with_exit_5() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 5,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=x", "--handoff", "all-done"])},
            {"name": "b", "phase": "review", "command": agent_cmd(&["--result", "r", "--handoff", "all-done"])}
        ]
    }));
    let run = repo.orch(&["run"]).expect(5);
    assert!(run.stderr().contains("all-done"), "{}", run.stderr());
    assert!(repo.has_round_log(1) && !repo.has_round_log(2));
}

#[test]
fn a_change_outside_an_agents_files_is_reported_and_with_enforcement_taken_out() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "enforceOwnership": true,
        "agents": [{"name": "ui", "phase": "code", "owns": ["src/ui/**"],
                    "command": agent_cmd(&["--write", "src/ui/a.txt=mine", "--write", "src/api/b.txt=not mine"])}]
    }));
    repo.orch(&["run"]).expect(0);
    let ui = Repo::agent(&repo.round_log(1), "ui").clone();
    assert_eq!(ui["ownershipViolations"], json!(["src/api/b.txt"]));
    assert_eq!(ui["changedFiles"], 1);
    assert!(repo.exists("src/ui/a.txt"));
    assert!(!repo.exists("src/api/b.txt"));
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(
        md.contains("round 1 ownership (ui): changed files it does not own: src/api/b.txt"),
        "{md}"
    );
}

#[test]
fn without_enforcement_an_ownership_violation_is_only_reported() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "ui", "phase": "code", "owns": ["src/ui/**"],
                    "command": agent_cmd(&["--write", "src/api/b.txt=not mine"])}]
    }));
    repo.orch(&["run"]).expect(0);
    let ui = Repo::agent(&repo.round_log(1), "ui").clone();
    assert_eq!(ui["ownershipViolations"], json!(["src/api/b.txt"]));
    assert!(repo.exists("src/api/b.txt"));
}

#[test]
fn a_converged_sim_ends_the_run_with_exit_5() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 5,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt={round}"])}],
        "sims": {"post": {"command": sim_cmd("0")}, "stopWhen": ["sh", "-c", "grep -q '\"round\": 2' latest.json"]}
    }));
    let run = repo.orch(&["run"]).expect(5);
    assert!(run.stderr().contains("converged"), "{}", run.stderr());
    assert!(repo.has_round_log(2) && !repo.has_round_log(3));
}

/// A `claude` on PATH that behaves like a Claude Code run: it writes a file named for the agent
/// and prints a JSON result with a cost.
fn fake_claude(repo: &Repo) -> String {
    let bin = repo.pathbuf("../bin-claude");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\nexec sh {} --cost 0.1 --write \"src/$ORCH_AGENT.txt=round $ORCH_ROUND\"\n",
        crate::common::fixture("fake-agent.sh")
    );
    let path = bin.join("claude");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn original(name: &str) -> String {
    format!("{}/fixtures/original/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn an_imported_mission_validates_and_runs() {
    let repo = Repo::new();
    let run = repo.orch(&["import", &original("mission.json")]).expect(0);
    let err = run.stderr();
    for gap in ["verboseLogs", "systemPrompt", "ghost", "no test command"] {
        assert!(err.contains(gap), "the notes should mention {gap}: {err}");
    }
    let m: serde_json::Value = serde_json::from_str(&repo.read("orch.json")).unwrap();
    assert_eq!(m["name"], "Balance Overnight");
    assert_eq!(m["rounds"], 2);
    // Each agent's maxBudgetUsd is its own budgetUsd; the mission has none.
    assert_eq!(m.get("budgetUsd"), None);
    assert_eq!(m["agents"][0]["budgetUsd"], 5.0);
    assert_eq!(m["agents"][1]["budgetUsd"], 3.0);
    assert_eq!(m["agents"][2].get("budgetUsd"), None);
    assert!(!err.contains("maxBudgetUsd"), "{err}");
    let ui = &m["agents"][0];
    assert_eq!(ui["name"], "ui-dev");
    assert_eq!(ui["models"], json!(["sonnet", "opus"]));
    assert_eq!(ui["timeoutS"], 900.0);
    assert_eq!(ui["owns"], json!(["src/ui/**"]));
    assert_eq!(m["agents"][1]["name"], "api-dev");
    assert_eq!(m["agents"][1]["timeoutS"], 600.0);
    assert_eq!(m["agents"][2]["phase"], "review");
    assert_eq!(m["agents"][2]["dependsOn"], json!(["ui-dev"]));
    assert_eq!(m["sims"]["pre"]["timeoutS"], 300.0);
    // `claude` is not installed here: validate says so, naming each agent.
    let run = repo.orch(&["validate"]).expect(2);
    assert!(
        run.stderr().contains("`claude` is not found on PATH"),
        "{}",
        run.stderr()
    );
    let path = fake_claude(&repo);
    repo.orch_env(&["validate"], &[("PATH", &path)]).expect(0);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "imported mission"]);
    repo.orch_env(&["run"], &[("PATH", &path)]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(Repo::agent(&log, "ui-dev")["status"], "ok");
    assert!(
        (log["costUsd"].as_f64().unwrap() - 0.2).abs() < 1e-9,
        "{log:#}"
    );
    // ui-dev writes outside src/ui: reported as an ownership violation.
    assert_eq!(
        Repo::agent(&log, "ui-dev")["ownershipViolations"],
        json!(["src/ui-dev.txt"])
    );
    assert!(repo.exists("src/api-dev.txt"));
}

#[test]
fn a_two_mission_sequence_moves_on_when_the_first_runs_out_of_rounds() {
    let repo = Repo::new();
    repo.orch(&["import", &original("sequence.json"), "-o", "seq.json"])
        .expect(0);
    assert!(repo.exists("seq-1.json") && repo.exists("seq-2.json"));
    let seq: serde_json::Value = serde_json::from_str(&repo.read("seq.json")).unwrap();
    assert_eq!(seq["sequence"][0]["rounds"], 1);
    let path = fake_claude(&repo);
    repo.orch_env(&["validate", "-m", "seq.json"], &[("PATH", &path)])
        .expect(0);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "sequence"]);
    repo.orch_env(&["run", "-m", "seq.json"], &[("PATH", &path)])
        .expect(0);
    // Build ran its one round, then Polish its one round; numbering continues.
    assert_eq!(repo.round_log(1)["mission"], "Build");
    assert_eq!(repo.round_log(2)["mission"], "Polish");
    assert!(repo.exists("src/builder.txt") && repo.exists("src/polisher.txt"));
    let progress: serde_json::Value =
        serde_json::from_str(&repo.read(".orch/sequence.json")).unwrap();
    assert_eq!(progress["step"], 2);
    // Run again: the sequence is complete, nothing more runs.
    repo.orch_env(&["run", "-m", "seq.json"], &[("PATH", &path)])
        .expect(0);
    assert!(!repo.has_round_log(3));
}

#[test]
fn a_sequence_moves_on_when_a_mission_finishes_early() {
    let repo = Repo::new();
    repo.write("m1.json", &serde_json::to_string(&json!({
        "name": "one", "rounds": 10,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt={round}", "--handoff", "all-done"])}]
    })).unwrap());
    repo.write("m2.json", &serde_json::to_string(&json!({
        "name": "two", "rounds": 10,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/b.txt={round}"])}]
    })).unwrap());
    repo.write("seq.json", r#"{"name": "s", "sequence": [{"mission": "m1.json", "rounds": 5}, {"mission": "m2.json", "rounds": 2}]}"#);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "sequence"]);
    repo.orch(&["run", "-m", "seq.json"]).expect(0);
    // one: a single round (all-done); two: its 2 rounds, its agent not blocked by one's all-done.
    assert_eq!(repo.round_log(1)["mission"], "one");
    assert_eq!(repo.round_log(2)["mission"], "two");
    assert_eq!(repo.round_log(3)["mission"], "two");
    assert!(!repo.has_round_log(4));
}
