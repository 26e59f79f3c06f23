//! Stuck runs (issue 31): an agent that says nothing and changes nothing is stopped as `idle`
//! after `stuck.idleS`, one that makes the same tool call again and again as `loop` after
//! `stuck.repeats` calls, both as at a timeout (the work kept in its ref, unproductive), long
//! before the timeout; one that is slow but busy, or says the same words again, is left alone;
//! one whose streamed cost passes what is left of its budget is stopped as `overBudget`.
//!
//! The fake agents print only shapes: the looping one repeats a line of a recording of the real
//! Claude Code (`fixtures/cli-output/real/claude-stream-loop.stdout`, its tool call).

use std::time::{Duration, Instant};

use crate::common::{agent_cmd, tests_cmd, Repo};
use serde_json::json;

/// The recorded tool-call line (line 2) of Claude Code's `loop` recording, as fake-agent.sh's
/// `--loop-line` takes it.
fn recorded_call() -> String {
    format!(
        "{}/fixtures/cli-output/real/claude-stream-loop.stdout:2",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `orch run` in `repo`, exit 0, in under a minute: its stuck agents' timeouts are 120 s, so
/// a stuck run was stopped by its stuck rule, not by the clock.
fn run_well_before_the_timeout(repo: &Repo) {
    let t = Instant::now();
    repo.orch(&["run"]).expect(0);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "took {took:?}, the timeout is 120 s"
    );
}

fn refs(repo: &Repo) -> String {
    repo.git(&["for-each-ref", "--format=%(refname)", "refs/orch/"])
}

#[test]
fn a_silent_agent_is_stopped_as_idle_after_idle_s_not_at_its_timeout() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "killGraceS": 0.5, "maxConcurrency": 1,
        "stuck": {"idleS": 2, "repeats": 5},
        "tests": {"command": tests_cmd("0")},
        "agents": [{"name": "silent", "phase": "code", "timeoutS": 120,
                    "models": ["small", "large"], "escalateAfter": 1,
                    "command": agent_cmd(&["--round", "1", "--write", "src/half.txt=half",
                                           "--hang", "--round", "2",
                                           "--write", "src/done.txt=done"])}]
    }));
    run_well_before_the_timeout(&repo);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "silent");
    assert_eq!(a["status"], "timeout", "{log:#}");
    assert_eq!(a["cause"], "idle", "{log:#}");
    assert_eq!(
        a["error"],
        "no output or file change for 2.0s; its partial work is kept in \
         refs/orch/timeout/round-1/silent",
        "{log:#}"
    );
    assert!(a["elapsedMs"].as_u64().unwrap() < 30_000, "{log:#}");
    // Stopped as at a timeout: its partial work in its ref, out of the tree.
    assert!(!repo.exists("src/half.txt"));
    let r = "refs/orch/timeout/round-1/silent";
    assert!(refs(&repo).contains(r), "{}", refs(&repo));
    assert!(repo
        .git(&["ls-tree", "-r", "--name-only", r])
        .contains("src/half.txt"));
    // The report's attention list says how it was stopped, not "timed out".
    let report = repo.orch(&["report"]).expect(0).stdout();
    assert!(
        report.contains("stopped as stuck after") && report.contains("cause idle"),
        "{report}"
    );
    // Unproductive: with escalateAfter 1 the next run is on the next model.
    let two = repo.round_log(2);
    let b = Repo::agent(&two, "silent");
    assert_eq!(b["model"], "large", "{two:#}");
    assert_eq!(b["status"], "ok", "{two:#}");
}

#[test]
fn an_agent_repeating_one_tool_call_is_stopped_as_loop_at_repeats() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "stuck": {"idleS": 60, "repeats": 5},
        "agents": [{"name": "looper", "phase": "code", "cli": "claude", "timeoutS": 120,
                    "command": agent_cmd(&["--write", "src/half.txt=half",
                                           "--loop-line", &recorded_call()])}]
    }));
    run_well_before_the_timeout(&repo);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "looper");
    assert_eq!(a["status"], "timeout", "{log:#}");
    assert_eq!(a["cause"], "loop", "{log:#}");
    assert_eq!(
        a["error"],
        "Bash `git status --short` called 5 times; its partial work is kept in \
         refs/orch/timeout/round-1/looper",
        "{log:#}"
    );
    assert!(refs(&repo).contains("refs/orch/timeout/round-1/looper"));
}

#[test]
fn slow_but_busy_agents_and_repeated_words_are_not_stopped() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "stuck": {"idleS": 3, "repeats": 5},
        "agents": [
            // No output at all, a new file every second for 6 s: twice the idle time.
            {"name": "busy", "phase": "code", "command": agent_cmd(&["--busy", "6:1"])},
            // The same words ten times over 5 s: output, not a tool call, so not a loop.
            {"name": "chatty", "phase": "code",
             "command": agent_cmd(&["--say-every", "0.5:10:waiting...", "--write", "src/c.txt=c"])}
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    for name in ["busy", "chatty"] {
        let a = Repo::agent(&log, name);
        assert_eq!(a["status"], "ok", "{name}: {log:#}");
        assert!(a.get("cause").is_none(), "{name}: {log:#}");
    }
    assert_eq!(repo.git(&["show", "HEAD:busy/6.md"]), "step 6");
    assert_eq!(repo.git(&["show", "HEAD:src/c.txt"]), "c");
}

#[test]
fn a_stream_whose_cost_passes_the_budget_left_is_stopped_then() {
    let repo = Repo::new();
    // The first 13 lines of Claude Code's recorded loop: its start and 6 tool calls, each a
    // message of 1200 input tokens (and the stream's first output figure, 1); no result yet.
    let recorded = std::fs::read_to_string(format!(
        "{}/fixtures/cli-output/real/claude-stream-loop.stdout",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let head: String = recorded.split_inclusive('\n').take(13).collect();
    repo.write("stream.ndjson", &head);
    let stream = repo.pathbuf("stream.ndjson").display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "pricing": {"sonnet": {"inputPerMTok": 3.0, "outputPerMTok": 15.0}},
        "agents": [{"name": "spender", "phase": "code", "cli": "claude", "models": ["sonnet"],
                    "budgetUsd": 0.01, "timeoutS": 120,
                    "command": agent_cmd(&["--write", "src/half.txt=half", "--cat", &stream,
                                           "--hang"])}]
    }));
    run_well_before_the_timeout(&repo);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "spender");
    assert_eq!(a["cause"], "overBudget", "{log:#}");
    // Stopped as the CLI's own cap would have: failed, its work kept aside, and the cost its
    // stream showed (6 messages of 1200 input tokens and 1 output token at $3 and $15 per
    // million) is what it cost.
    assert_eq!(a["status"], "failed", "{log:#}");
    assert_eq!(
        a["error"],
        "spent $0.02 while running, over the $0.01 left of its budgetUsd; its partial work \
         is kept in refs/orch/failed/round-1/spender",
        "{log:#}"
    );
    assert_eq!(a["costKnown"], true, "{log:#}");
    let want = 6.0 * (1200.0 * 3.0 + 15.0) / 1e6;
    assert!(
        (a["costUsd"].as_f64().unwrap() - want).abs() < 1e-6,
        "{log:#}"
    );
}

/// The live page (STATE/report.html) says what each running agent did last: between round
/// ends it is written again on an agent's new activity (at most every 30 s).
#[test]
fn the_live_page_shows_what_a_running_agent_did_last() {
    let repo = Repo::new();
    let dir = tempfile::tempdir().unwrap();
    let call = dir.path().join("call.ndjson");
    let recorded = std::fs::read_to_string(format!(
        "{}/fixtures/cli-output/real/claude-stream-loop.stdout",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    std::fs::write(&call, recorded.lines().nth(1).unwrap().to_string() + "\n").unwrap();
    let call = call.display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [{"name": "coder", "phase": "code", "cli": "claude",
                    "command": agent_cmd(&["--round", "2", "--cat", &call, "--sleep", "4",
                                           "--always", "--write", "src/a.txt={round}"])}]
    }));
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .current_dir(repo.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let page = repo.pathbuf(".orch/report.html");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while run.try_wait().unwrap().is_none() {
        let text = std::fs::read_to_string(&page).unwrap_or_default();
        if text.contains("coder: Bash `git status --short` (at ") {
            seen = Some(text);
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = seen.expect("the live page named the running agent's tool call");
    assert!(seen.contains("class=\"live running\""), "{seen}");
    // The page written when the run ended names no running agent.
    let last = std::fs::read_to_string(&page).unwrap();
    assert!(!last.contains("coder: Bash"), "{last}");
}

#[test]
fn stuck_settings_out_of_range_are_refused_and_an_agents_own_win() {
    let repo = Repo::new();
    let agent = json!({"name": "a", "phase": "code", "command": "true"});
    let cases: Vec<(serde_json::Value, serde_json::Value, &str)> = vec![
        (json!({"idleS": -1}), json!(null), "stuck.idleS"),
        (json!({"idleS": 1e300}), json!(null), "stuck.idleS"),
        (json!({"repeats": 1}), json!(null), "stuck.repeats"),
        (
            json!(null),
            json!({"repeats": 20000}),
            "agents[0].stuck.repeats",
        ),
        (json!({"idle": 3}), json!(null), "unknown field `idle`"),
    ];
    for (mission, own, key) in cases {
        let mut a = agent.clone();
        if !own.is_null() {
            a["stuck"] = own;
        }
        let mut m = json!({"name": "t", "agents": [a]});
        if !mission.is_null() {
            m["stuck"] = mission;
        }
        repo.write("orch.json", &m.to_string());
        let run = repo.orch(&["validate"]).expect(2);
        assert!(run.stderr().contains(key), "{key}: {}", run.stderr());
    }

    // Off for the mission (0), 2 s for the silent agent alone: its own key wins.
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "stuck": {"idleS": 0, "repeats": 0},
        "agents": [{"name": "silent", "phase": "code", "timeoutS": 120, "stuck": {"idleS": 2},
                    "command": agent_cmd(&["--hang"])}]
    }));
    run_well_before_the_timeout(&repo);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "silent");
    assert_eq!(a["cause"], "idle", "{log:#}");
    assert_eq!(a["error"], "no output or file change for 2.0s", "{log:#}");
}

#[test]
fn the_idle_default_follows_what_the_cli_shows_and_a_set_idle_s_holds() {
    // What `--dry-run --json` says a run is watched with: the round asks the same function.
    let repo = Repo::new();
    let plan = |mission: serde_json::Value| -> serde_json::Value {
        repo.mission(mission);
        let out = repo
            .orch(&["run", "--dry-run", "--json", "--allow-dirty"])
            .expect(0)
            .stdout();
        let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
        plan["agents"][0]["stuck"].clone()
    };
    let agent = |command: serde_json::Value| json!({"name": "t", "agents": [{"name": "a", "phase": "code", "command": command}]});
    let claude = |extra: &[&str]| {
        let mut argv = vec![
            "claude",
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
        ];
        argv.extend_from_slice(extra);
        json!(argv)
    };
    // Claude Code printing every token: 2 minutes while its model writes, 5 in a tool call.
    assert_eq!(
        plan(agent(claude(&["--include-partial-messages"]))),
        json!({"idleS": 120.0, "idleInToolS": 300.0, "repeats": 5})
    );
    // Without it, or another CLI: 5 minutes throughout.
    for command in [
        claude(&[]),
        json!(["codex", "exec", "--json", "-"]),
        agent_cmd(&[]),
    ] {
        assert_eq!(
            plan(agent(command.clone())),
            json!({"idleS": 300.0, "idleInToolS": 300.0, "repeats": 5}),
            "{command}"
        );
    }
    // A set idleS holds in a tool call too.
    let mut m = agent(claude(&["--include-partial-messages"]));
    m["stuck"] = json!({"idleS": 45});
    assert_eq!(
        plan(m),
        json!({"idleS": 45.0, "idleInToolS": 45.0, "repeats": 5})
    );
}

#[test]
fn an_agent_silent_in_a_tool_call_is_stopped_naming_the_call() {
    // The recorded tool call, then nothing: not even the tool's result.
    let repo = Repo::new();
    let call = repo.pathbuf("call.jsonl");
    let line = std::fs::read_to_string(recorded_call().trim_end_matches(":2")).unwrap();
    std::fs::write(&call, format!("{}\n", line.lines().nth(1).unwrap())).unwrap();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "stuck": {"idleS": 2},
        "agents": [{"name": "quiet", "phase": "code", "timeoutS": 120,
                    "command": agent_cmd(&["--cat", call.to_str().unwrap(), "--hang"])}]
    }));
    repo.orch(&["run", "--allow-dirty"]).expect(0);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "quiet");
    assert_eq!(a["cause"], "idle", "{log:#}");
    assert_eq!(
        a["error"], "no output or file change for 2.0s while Bash `git status --short` ran",
        "{log:#}"
    );
}

#[test]
fn a_task_whose_run_loops_is_split_saying_what_was_seen() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "stuck": {"idleS": 60, "repeats": 5},
        "tasks": {"splitBy": "planner"},
        "agents": [
            {"name": "w", "phase": "code", "when": "tasks", "cli": "claude", "timeoutS": 120,
             "command": agent_cmd(&["--loop-line", &recorded_call()])},
            {"name": "planner", "phase": "review", "when": "tasks", "command": agent_cmd(&[])}
        ]
    }));
    let id = repo
        .orch(&["task", "add", "--agent", "w", "rewrite everything"])
        .expect(0)
        .stdout();
    let id = id.trim();
    repo.orch(&["run"]).expect(0);
    let out = repo
        .orch(&["task", "list", "--all", "--json"])
        .expect(0)
        .stdout();
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let orig = all.iter().find(|t| t["id"] == id).unwrap();
    assert_eq!(orig["status"], "split", "{all:?}");
    let split = all.iter().find(|t| t["agent"] == "planner").unwrap();
    let body = split["body"].as_str().unwrap();
    assert!(
        body.starts_with(&format!(
            "Task {id} for agent w was stopped as stuck (Bash `git status --short` called 5 \
             times): it is too big for one run."
        )),
        "{body}"
    );
}
