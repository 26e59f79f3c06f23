//! Per-agent budgets (`agents[].budgetUsd`) against the built binary: an agent whose spend
//! reaches its budget is `over budget` in later rounds' plans and is not started again (across
//! `orch run` restarts), the others go on; a Claude Code agent is given what is left as
//! `--max-budget-usd`; the run that hits that cap is read as `overBudget` with its cost; when
//! every agent is over budget the run stops (exit 3); bad budgets are refused (exit 2).

use crate::common::{agent_cmd, fixture, Repo};
use serde_json::json;

/// A `claude` program (so orch detects Claude Code by its name) in a folder of its own: it
/// appends its arguments to `argv.log` beside it, then runs the fake agent with `args` (`{dir}`:
/// that folder).
fn fake_claude(args: &str) -> (tempfile::TempDir, String, std::path::PathBuf) {
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("argv.log");
    let args = args.replace("{dir}", &bin.path().display().to_string());
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec sh '{}' {args}\n",
        log.display(),
        fixture("fake-agent.sh")
    );
    let path = bin.path().join("claude");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = path.display().to_string();
    (bin, program, log)
}

fn decision<'a>(log: &'a serde_json::Value, agent: &str) -> &'a serde_json::Value {
    log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["agent"] == agent)
        .unwrap_or_else(|| panic!("no decision for {agent} in {log:#}"))
}

fn ran(log: &serde_json::Value, agent: &str) -> bool {
    log["agents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == agent)
}

#[test]
fn an_agent_over_its_budget_is_not_started_again_and_the_others_go_on() {
    let repo = Repo::new();
    let (_bin, claude, argv_log) =
        fake_claude("--cost 0.1 --write \"src/capped.txt=round $ORCH_ROUND\"");
    repo.mission(json!({
        "name": "t", "rounds": 4, "maxConcurrency": 3,
        "agents": [
            // $0.10 a run against $0.25: rounds 1-3 run (capped at 0.25, 0.15, 0.05), then it
            // has spent $0.30.
            {"name": "capped", "phase": "code", "budgetUsd": 0.25,
             "command": [claude, "-p", "--output-format", "json"]},
            // A plain command cannot be capped per run (the fake agent exits 64 on an option it
            // does not know, so a flag passed to it would fail the run): only between runs.
            {"name": "plain", "phase": "code", "budgetUsd": 0.15,
             "command": agent_cmd(&["--cost", "0.1", "--write", "src/plain.txt=x"])},
            {"name": "free", "phase": "code",
             "command": agent_cmd(&["--cost", "0.1", "--write", "src/free.txt=x"])},
        ]
    }));
    let run = repo.orch(&["run"]).expect(0);
    let err = run.stderr();
    assert!(
        err.contains("agent capped is over budget") && err.contains("agent plain is over budget"),
        "{err}"
    );

    // The remainder, each run: what is left of $0.25 after $0.10 a run.
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(lines.len(), 3, "{argv}");
    for (line, cap) in lines.iter().zip(["0.25", "0.15", "0.05"]) {
        assert!(
            line.ends_with(&format!("--output-format json --max-budget-usd {cap}")),
            "{line}"
        );
    }

    for n in 1..=4 {
        let log = repo.round_log(n);
        assert!(ran(&log, "free"), "round {n}: {log:#}");
        assert_eq!(Repo::agent(&log, "free")["status"], "ok");
        let (want_capped, want_plain) = (n <= 3, n <= 2);
        for (agent, want, budget) in [("capped", want_capped, 0.25), ("plain", want_plain, 0.15)] {
            let d = decision(&log, agent);
            assert_eq!(d["budgetUsd"], budget, "round {n}: {d}");
            if want {
                assert_eq!(d["decision"], "included", "round {n} {agent}: {d}");
                assert_eq!(
                    Repo::agent(&log, agent)["status"],
                    "ok",
                    "round {n}: {log:#}"
                );
            } else {
                assert_eq!(d["decision"], "over budget", "round {n} {agent}: {d}");
                assert!(
                    d["reason"]
                        .as_str()
                        .unwrap()
                        .contains("spent of its budgetUsd"),
                    "{d}"
                );
                assert!(!ran(&log, agent), "round {n}: {agent} ran: {log:#}");
            }
        }
    }
    assert_eq!(decision(&repo.round_log(4), "capped")["spentUsd"], 0.3);
    let state = repo.state();
    assert_eq!(state["agents"]["capped"]["costUsd"], 0.3);
    assert_eq!(state["agents"]["capped"]["runs"], 3);
    assert_eq!(state["agents"]["plain"]["runs"], 2);

    // Status, text and JSON.
    let status = repo.orch_json(&["status", "--json"]);
    let capped = Repo::agent(&status, "capped");
    assert_eq!(capped["budgetUsd"], 0.25);
    assert_eq!(capped["budgetLeftUsd"], 0.0);
    assert_eq!(capped["overBudget"], true);
    let free = Repo::agent(&status, "free");
    assert_eq!(free["overBudget"], false);
    assert!(free["budgetUsd"].is_null());
    let text = repo.orch(&["status"]).expect(0).stdout();
    assert!(text.contains("of $0.25 (over budget)"), "{text}");

    // `orch show` and the report.
    let show = repo.orch(&["show", "4"]).expect(0).stdout();
    assert!(
        show.lines().any(|l| l.contains("capped")
            && l.contains("over budget")
            && l.contains("$0.30 spent of its budgetUsd $0.25")),
        "{show}"
    );
    let report = repo.orch_json(&["report", "--format", "json"]);
    let row = |table: &str, name: &str| -> serde_json::Value {
        report[table]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["agent"] == name || r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {table}: {report:#}"))
            .clone()
    };
    assert_eq!(row("agents", "capped")["budgetUsd"], 0.25);
    assert_eq!(row("agents", "capped")["spentUsd"], 0.3);
    assert_eq!(row("decisions", "capped")["overBudget"], 1);
    assert_eq!(row("decisions", "plain")["overBudget"], 2);
    assert_eq!(row("decisions", "free")["overBudget"], 0);
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(md.contains("of $0.25 budget, over"), "{md}");

    // The spend survives a restart: the next run still leaves both out, even when named.
    let plan = repo
        .orch(&["run", "--rounds", "1", "--dry-run"])
        .expect(0)
        .stdout();
    assert!(
        plan.lines()
            .any(|l| l.contains("capped") && l.contains("over budget:")),
        "{plan}"
    );
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    let log = repo.round_log(5);
    assert!(ran(&log, "free") && !ran(&log, "capped") && !ran(&log, "plain"));
    assert_eq!(decision(&log, "capped")["decision"], "over budget");
    let run = repo.orch(&["round", "6", "--agent", "capped"]).expect(3);
    assert!(
        run.stderr()
            .contains("every agent is over its budget: capped"),
        "{}",
        run.stderr()
    );
    assert!(!repo.has_round_log(6));
    assert_eq!(
        std::fs::read_to_string(&argv_log).unwrap().lines().count(),
        3
    );
}

/// The run Claude Code ends at `--max-budget-usd`: its recorded output (Claude Code 2.1.332
/// against the mock API, `fixtures/cli-output/real/claude-max-budget.stdout`) is an error result
/// with the cost it did spend. orch reads it as `overBudget` (no failure streak), counts the
/// cost, and with every agent over budget stops before the next round (exit 3).
#[test]
fn the_run_that_hits_the_cap_is_over_budget_and_a_run_with_every_agent_spent_stops() {
    let repo = Repo::new();
    let recorded = format!(
        "{}/fixtures/cli-output/real/claude-max-budget.stdout",
        env!("CARGO_MANIFEST_DIR")
    );
    let (_bin, claude, argv_log) = fake_claude(&format!(
        "--first '{{dir}}/runs' 1 --cost 0.1 --write src/c.txt=one --later --no-json --cat '{recorded}' --exit 1"
    ));
    repo.mission(json!({
        "name": "t", "rounds": 5, "maxConcurrency": 1,
        "agents": [{"name": "capped", "phase": "code", "budgetUsd": 0.101,
                    "command": [claude, "-p", "--output-format", "json"]}]
    }));
    let run = repo.orch(&["run"]).expect(3);
    let err = run.stderr();
    assert!(
        err.contains("every agent is over its budget: capped"),
        "{err}"
    );
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(lines.len(), 2, "{argv}");
    assert!(lines[0].ends_with("--max-budget-usd 0.101"), "{argv}");
    assert!(lines[1].ends_with("--max-budget-usd 0.001"), "{argv}");

    let log = repo.round_log(2);
    let a = Repo::agent(&log, "capped");
    assert_eq!(a["status"], "failed", "{a}");
    assert_eq!(a["cause"], "overBudget", "{a}");
    assert_eq!(a["costUsd"], 0.0032, "{a}");
    assert_eq!(a["costKnown"], true, "{a}");
    assert_eq!(a["error"], "Reached maximum budget ($0.001)", "{a}");
    assert!(!repo.has_round_log(3));
    let state = repo.state();
    assert_eq!(state["agents"]["capped"]["costUsd"], 0.1032);
    // The cap is not the agent's fault: no failure streak, no escalation.
    assert_eq!(state["agents"]["capped"]["consecutiveFailures"], 0);
    let plan = repo.orch(&["run", "--dry-run"]).expect(0).stdout();
    assert!(
        plan.contains(
            "a real run would stop before this round (exit 3): every agent is over its budget"
        ),
        "{plan}"
    );
}

#[test]
fn a_budget_that_is_not_a_positive_number_is_refused_naming_agent_and_key() {
    let repo = Repo::new();
    let ok = json!({"name": "a", "phase": "code", "command": "true"});
    for (budget, words) in [
        (
            json!(0),
            &["agents[1].budgetUsd", "agent api", "above 0"][..],
        ),
        (
            json!(-2.5),
            &["agents[1].budgetUsd", "agent api", "-2.5"][..],
        ),
        (
            json!(1e12),
            &["agents[1].budgetUsd", "agent api", "at most 1e9"][..],
        ),
        (json!("5"), &["agents[1].budgetUsd"][..]),
    ] {
        repo.write(
            "bad.json",
            &json!({"name": "t", "agents": [ok.clone(),
                {"name": "api", "phase": "code", "command": "true", "budgetUsd": budget}]})
            .to_string(),
        );
        for cmd in [
            &["validate", "-m", "bad.json"][..],
            &["run", "-m", "bad.json", "--allow-dirty"],
        ] {
            let run = repo.orch(cmd).expect(2);
            for w in words {
                assert!(
                    run.stderr().contains(w),
                    "{cmd:?} {budget}: {w:?} not in {}",
                    run.stderr()
                );
            }
            assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
        }
    }
    // The original orchestrator's spelling is read as the same key.
    repo.write(
        "orig.json",
        &json!({"name": "t", "agents": [
            {"name": "api", "phase": "code", "command": "true", "maxBudgetUsd": 2}]})
        .to_string(),
    );
    repo.orch(&["validate", "-m", "orig.json"]).expect(0);
}

/// A run whose cost its CLI does not tell counts $0: the budget cannot hold the agent back, and
/// orch says so (a warning the first time, a round note each time, the count in `orch status`).
#[test]
fn runs_of_unknown_cost_count_zero_and_are_said() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [{"name": "quiet", "phase": "code", "budgetUsd": 0.01,
                    "command": agent_cmd(&["--no-json", "--write", "src/q.txt=x"])}]
    }));
    let run = repo.orch(&["run"]).expect(0);
    let warned = run
        .stderr()
        .lines()
        .filter(|l| l.contains("warning") && l.contains("did not say what this run cost"))
        .count();
    assert!(warned >= 1, "{}", run.stderr());
    for n in 1..=2 {
        let log = repo.round_log(n);
        assert_eq!(Repo::agent(&log, "quiet")["costKnown"], false);
        assert_eq!(decision(&log, "quiet")["decision"], "included");
        assert!(
            log["notes"].as_array().unwrap().iter().any(|n| n
                .as_str()
                .unwrap()
                .contains("counts $0 against its budgetUsd")),
            "round {n}: {log:#}"
        );
    }
    assert_eq!(repo.state()["agents"]["quiet"]["unknownCostRuns"], 2);
    let status = repo.orch_json(&["status", "--json"]);
    assert_eq!(status["agents"][0]["unknownCostRuns"], 2);
    assert_eq!(status["agents"][0]["overBudget"], false);
    let text = repo.orch(&["status"]).expect(0).stdout();
    assert!(
        text.contains("quiet: 2 run(s) of unknown cost counted as $0"),
        "{text}"
    );
}

fn task<'a>(tasks: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {tasks:#}"))
}

fn tasks_json(repo: &Repo) -> serde_json::Value {
    serde_json::from_str(&repo.read(".orch/tasks.json")).unwrap()
}

#[test]
fn the_tasks_of_an_agent_over_its_budget_are_shown_waiting_on_it() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 3,
        "agents": [
            // Round 1 takes t-1 and spends $0.20 of $0.10: t-2 is left for nobody.
            {"name": "spender", "phase": "code", "when": "tasks", "budgetUsd": 0.1,
             "command": agent_cmd(&["--cost", "0.2", "--write", "src/spender.txt=$ORCH_ROUND"])},
            {"name": "free", "phase": "code",
             "command": agent_cmd(&["--write", "src/free.txt=$ORCH_ROUND"])},
        ]
    }));
    for title in ["first", "second"] {
        repo.orch(&["task", "add", "--agent", "spender", title])
            .expect(0);
    }
    repo.orch(&["run"]).expect(0);
    assert_eq!(Repo::agent(&repo.round_log(1), "spender")["task"], "t-1");
    for n in [2, 3] {
        let log = repo.round_log(n);
        let d = decision(&log, "spender");
        assert_eq!(d["decision"], "over budget", "{d}");
        assert_eq!(d["tasksWaiting"], json!(["t-2"]), "{d}");
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("its pending task t-2 waits on its budget"),
            "{reason}"
        );
    }
    let tasks = tasks_json(&repo);
    assert_eq!(task(&tasks, "t-1")["status"], "done");
    assert_eq!(
        (
            &task(&tasks, "t-2")["status"],
            &task(&tasks, "t-2")["agent"]
        ),
        (&json!("pending"), &json!("spender"))
    );

    // orch status says why the task does not move, and what to do.
    let status = repo.orch_json(&["status", "--json"]);
    let spender = Repo::agent(&status, "spender");
    assert_eq!(spender["pendingTasks"], 1);
    assert_eq!(spender["tasksWaitingOnBudget"], 1);
    let text = repo.orch(&["status"]).expect(0).stdout();
    assert!(text.contains("1 (waiting on its budget)"), "{text}");
    assert!(
        text.contains("spender: 1 pending task(s) wait on its budgetUsd, which is spent"),
        "{text}"
    );

    let list = repo.orch(&["task", "list"]).expect(0).stdout();
    assert!(
        list.lines()
            .any(|l| l.starts_with("t-2") && l.contains("pending (its agent is over budget)")),
        "{list}"
    );
    // The JSON says it too, on every task (false for a task that does not wait on a budget).
    repo.orch(&["task", "add", "--agent", "free", "third"])
        .expect(0);
    let list = repo.orch_json(&["task", "list", "--json", "--all"]);
    let waiting: Vec<(&str, &serde_json::Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), &t["waitingOnBudget"]))
        .collect();
    assert_eq!(
        waiting,
        [
            ("t-1", &json!(false)),
            ("t-2", &json!(true)),
            ("t-3", &json!(false))
        ],
        "{list:#}"
    );
    assert_eq!(list[1]["status"], "pending", "{list:#}");
    assert_eq!(list[2]["status"], "pending", "{list:#}");

    // The report: one attention row for rounds 2 and 3.
    let report = repo.orch_json(&["report", "--format", "json"]);
    let rows: Vec<&serde_json::Value> = report["attention"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "over budget")
        .collect();
    assert_eq!(rows.len(), 1, "{report:#}");
    assert_eq!(rows[0]["agent"], "spender");
    assert_eq!(rows[0]["rounds"], json!([2, 3]));
    assert!(
        rows[0]["detail"].as_str().unwrap().contains("t-2"),
        "{:#}",
        rows[0]
    );
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(
        md.contains(
            "over budget (spender): its budgetUsd is spent and its pending task t-2 waits on it"
        ),
        "{md}"
    );
    // The dry run of the next round says the same.
    let plan = repo
        .orch(&["run", "--rounds", "4", "--dry-run"])
        .expect(0)
        .stdout();
    assert!(plan.contains("its pending tasks wait on it: t-2"), "{plan}");
}

#[test]
fn over_budget_tasks_to_hands_the_pending_tasks_to_another_agent() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [
            {"name": "spender", "phase": "code", "when": "tasks", "budgetUsd": 0.1,
             "overBudgetTasksTo": "helper",
             "command": agent_cmd(&["--cost", "0.2", "--write", "src/spender.txt=$ORCH_ROUND"])},
            {"name": "helper", "phase": "code", "when": "tasks",
             "command": agent_cmd(&["--write", "src/helper.txt=$ORCH_ROUND"])},
        ]
    }));
    for title in ["first", "second"] {
        repo.orch(&["task", "add", "--agent", "spender", title])
            .expect(0);
    }
    // Before round 2 the dry run says what the round will do.
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert!(!ran(&repo.round_log(1), "helper"));
    let plan = repo
        .orch(&["run", "--rounds", "2", "--dry-run"])
        .expect(0)
        .stdout();
    assert!(
        plan.contains(
            "a real run would hand tasks over: spender's pending task t-2 went to helper"
        ),
        "{plan}"
    );
    repo.orch(&["run", "--rounds", "2"]).expect(0);
    let log = repo.round_log(2);
    assert_eq!(decision(&log, "spender")["decision"], "over budget");
    assert!(decision(&log, "spender").get("tasksWaiting").is_none());
    // The helper takes it in the same round, and it is done.
    assert_eq!(decision(&log, "helper")["decision"], "included", "{log:#}");
    assert_eq!(Repo::agent(&log, "helper")["task"], "t-2");
    assert_eq!(Repo::agent(&log, "helper")["status"], "ok");
    assert!(
        log["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("spender's pending task t-2 went to helper")),
        "{log:#}"
    );
    let tasks = tasks_json(&repo);
    let t2 = task(&tasks, "t-2");
    assert_eq!(
        (&t2["agent"], &t2["status"]),
        (&json!("helper"), &json!("done"))
    );
    assert!(
        t2["body"]
            .as_str()
            .unwrap()
            .contains("Round 2: handed over from spender"),
        "{t2:#}"
    );
    // Its prompt carried the task, note and all.
    let prompt = repo.read(".orch/prompts/round-0002/helper.md");
    assert!(prompt.contains("handed over from spender"), "{prompt}");
}

#[test]
fn over_budget_tasks_to_is_checked() {
    let repo = Repo::new();
    for (agent, says) in [
        (json!({"overBudgetTasksTo": "b"}), "has no budgetUsd"),
        (
            json!({"budgetUsd": 1, "overBudgetTasksTo": "a"}),
            "to itself",
        ),
        (
            json!({"budgetUsd": 1, "overBudgetTasksTo": "zed"}),
            "no agent named \"zed\"",
        ),
    ] {
        let mut a = json!({"name": "a", "phase": "code", "command": agent_cmd(&[])});
        for (k, v) in agent.as_object().unwrap() {
            a[k] = v.clone();
        }
        repo.mission(json!({"name": "t", "agents": [
            a, {"name": "b", "phase": "code", "command": agent_cmd(&[])}]}));
        let err = repo.orch(&["validate"]).expect(2).stderr();
        assert!(
            err.contains("agents[0].overBudgetTasksTo") && err.contains(says),
            "{err}"
        );
    }
}

/// A run started with the mission's budget already spent stops before anything costs: the
/// test baseline (which a night's tests can make the dearest step) is not run first.
#[test]
fn a_run_whose_budget_is_spent_stops_before_the_test_baseline() {
    let repo = Repo::new();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("test-runs");
    let tests = format!(
        "echo run >> '{}'; echo '4 passed, 0 failed'",
        marker.display()
    );
    repo.mission(json!({
        "name": "t", "rounds": 2, "budgetUsd": 0.1,
        "agents": [{"name": "dear", "phase": "code",
                    "command": agent_cmd(&["--cost", "0.2", "--write", "src/d.txt=d"])}],
        "tests": {"command": ["sh", "-c", tests]}
    }));
    // The first run: the baseline, round 1 (which spends 0.2) and its tests, then the stop.
    repo.orch(&["run"]).expect(3);
    let runs = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(runs(&marker), 2);
    // The user commits on top: the base has no baseline yet, and the budget is spent all the same.
    repo.write("src/user.txt", "mine\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "user's work"]);
    let again = repo.orch(&["run"]).expect(3);
    assert!(
        again.stderr().contains("budget reached"),
        "{}",
        again.stderr()
    );
    assert_eq!(runs(&marker), 2, "the tests ran again: {}", again.stderr());
    assert!(!repo.has_round_log(2));
}
