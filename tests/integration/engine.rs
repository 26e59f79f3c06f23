//! The round engine, end to end: the real binary on scratch repositories with fixture agents.

use crate::common::{agent_cmd, overlap, sim_cmd, tests_cmd, Find, Repo};
use orch::roundlog::{RoundStatus, StepStatus};
use serde_json::json;

#[test]
fn pre_sim_runs_beside_phase_a_and_two_code_agents_share_the_pool() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--sleep", "1", "--write", "src/a.txt=a"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--sleep", "1", "--write", "src/b.txt=b"])}
        ],
        "sims": {"pre": {"command": sim_cmd("1")}, "publishTo": "sim-data"}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log_typed(1);
    assert_eq!(log.schema, 9);
    assert_eq!(log.status, RoundStatus::Ok);
    let (a, b) = (log.agent("a"), log.agent("b"));
    assert!(
        overlap(a, b) > 500,
        "a and b ran one after the other: {log:#?}"
    );
    let pre = log.sims.pre.as_ref().expect("no pre-sim in the log");
    assert!(
        overlap(pre, a) > 500,
        "the pre-sim did not run beside Phase A: {log:#?}"
    );
    // Phase A is the wall-clock of the pool and the pre-sim together: about 1 s, not 2 or 3.
    let phase_a = log.timing.phase_a;
    assert!((900..1900).contains(&phase_a), "phaseA {phase_a}");
    assert!(pre.published);
    assert!(repo
        .read("sim-data/latest.json")
        .contains("\"sim\": \"pre\""));
    // Both agents' work and the published sim data are in one commit; the tree is clean.
    assert_eq!(repo.read("src/a.txt"), "a\n");
    assert!(repo.status().is_empty(), "{}", repo.status());
    let files = repo.git(&["show", "--name-only", "--format=", "HEAD"]);
    assert!(
        files.contains("src/a.txt") && files.contains("sim-data/latest.json"),
        "{files}"
    );
    assert!(
        !files.contains(".orch"),
        "the state folder was committed: {files}"
    );
}

#[test]
fn post_sim_runs_beside_the_tests_and_is_published_when_they_pass() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])}],
        "sims": {"post": {"command": sim_cmd("1")}},
        "tests": {"command": tests_cmd("1")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log_typed(1);
    let tests = log.tests.as_ref().expect("no tests in the log");
    assert_eq!(tests.status, StepStatus::Passed);
    assert_eq!(tests.passed, Some(4));
    let post = log.sims.post.as_ref().expect("no post-sim in the log");
    assert!(overlap(post, tests) > 500, "{log:#?}");
    let tests_stage = log.timing.tests;
    assert!(
        (900..1900).contains(&tests_stage),
        "tests stage {tests_stage}"
    );
    assert!(post.published);
    assert!(repo.read("sim-data/latest.json").contains("post"));
}

#[test]
fn a_regression_reverts_the_round_keeps_it_in_a_ref_and_discards_the_post_sim() {
    let repo = Repo::new();
    // Phase B after the tests, so that it is skipped after the revert (beside the tests it
    // runs and its work is kept aside: tests/integration/beside.rs).
    repo.mission(json!({
        "name": "t", "rounds": 1, "phaseB": "afterTests",
        "agents": [
            {"name": "breaker", "phase": "code",
             "command": agent_cmd(&["--write", "src/app.txt=BROKEN", "--write", "src/new.txt=new file"])},
            {"name": "reviewer", "phase": "review", "command": agent_cmd(&["--write", "review.md=ok"])}
        ],
        "sims": {"pre": {"command": sim_cmd("0")}, "post": {"command": sim_cmd("0")}},
        "tests": {"command": tests_cmd("0")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log_typed(1);
    assert_eq!(log.status, RoundStatus::Reverted);
    assert!(log.reverted);
    let tests = log.tests.as_ref().expect("no tests in the log");
    assert!(tests.regression);
    assert_eq!(tests.failed, Some(1));
    let (pre, post) = (log.sims.pre.as_ref(), log.sims.post.as_ref());
    assert!(!post.expect("no post-sim in the log").published);
    assert!(pre.expect("no pre-sim in the log").published);
    // The rejected tree, untracked file included, is kept; the base is restored exactly.
    let kept = repo.git(&["rev-parse", "refs/orch/rejected/round-1"]);
    assert_eq!(
        repo.git(&["show", &format!("{kept}:src/new.txt")]),
        "new file"
    );
    assert_eq!(repo.read("src/app.txt"), "app\n");
    assert!(!repo.exists("src/new.txt"));
    // Only the pre-sim's data was committed after the revert; Phase B was skipped.
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]), base);
    assert!(repo.read("sim-data/latest.json").contains("pre"));
    assert!(!repo.exists("review.md"));
    assert!(log.agents.iter().all(|a| a.name != "reviewer"));
    assert!(repo.status().is_empty(), "{}", repo.status());
}

#[test]
fn a_round_with_no_active_agent_is_skipped_but_logged() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "when": {"every": 2}, "command": agent_cmd(&[])}],
        "sims": {"pre": {"command": sim_cmd("0")}},
        "tests": {"command": tests_cmd("0")}
    }));
    let head = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "skipped");
    assert!(log["agents"].as_array().unwrap().is_empty());
    assert!(log["sims"].get("pre").is_none());
    assert!(log["tests"].is_null());
    assert_eq!(log["decisions"][0]["decision"], "skipped");
    assert!(log["decisions"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("every 2"));
    assert_eq!(repo.head(), head);
}

#[test]
fn a_timeout_kills_the_agent_and_its_grandchild() {
    let repo = Repo::new();
    let pidfile = repo.pathbuf("gc.pid");
    let pidfile_s = pidfile.display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [{"name": "hung", "phase": "code", "timeoutS": 1,
                    "command": agent_cmd(&["--grandchild", &pidfile_s, "--ignore-term", "--hang"])}]
    }));
    let t = std::time::Instant::now();
    repo.orch(&["run", "--allow-dirty"]).expect(0);
    assert!(t.elapsed().as_secs() < 10);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "hung");
    assert_eq!(a["status"], "timeout");
    assert_eq!(a["timeoutMs"], 1000);
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "grandchild survives: {stat}"
    );
}

#[test]
fn a_missing_program_is_refused_up_front_and_a_vanished_one_is_a_failed_run() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [
            {"name": "ghost", "phase": "code", "command": ["/no/such/agent-binary", "--flag"]},
            {"name": "real", "phase": "code", "command": agent_cmd(&["--write", "src/r.txt=r"])}
        ]
    }));
    let run = repo.orch(&["run"]).expect(2);
    assert!(
        run.stderr().contains("agents[0].command")
            && run.stderr().contains("/no/such/agent-binary"),
        "{}",
        run.stderr()
    );
    assert!(!repo.has_round_log(1));

    // A program there at the start-up check and gone when the agent starts (its when-command
    // removes it): the run is `failed` with the OS's words, not a crash, and said so.
    let bin = tempfile::tempdir().unwrap();
    let ghost = bin.path().join("ghost-agent");
    std::fs::write(&ghost, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&ghost, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let g = ghost.display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [
            {"name": "ghost", "phase": "code", "command": [g, "--flag"],
             "when": {"command": ["rm", "-f", g]}},
            {"name": "real", "phase": "code", "command": agent_cmd(&["--write", "src/r.txt=r"])}
        ]
    }));
    let run = repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert!(
        run.stderr().contains("ghost could not start"),
        "{}",
        run.stderr()
    );
    let log = repo.round_log(1);
    let ghost_entry = Repo::agent(&log, "ghost");
    assert_eq!(ghost_entry["status"], "failed");
    assert!(
        ghost_entry["error"]
            .as_str()
            .unwrap()
            .contains("ghost-agent"),
        "{ghost_entry}"
    );
    let err_log = repo.read(".orch/logs/round-0001/ghost.stderr.log");
    assert!(err_log.contains("not found"), "{err_log}");
    assert_eq!(Repo::agent(&log, "real")["status"], "ok");
    // The other agent's work is committed; the round says what went wrong.
    assert_eq!(log["status"], "ok");
    assert!(
        log["notes"].to_string().contains("ghost could not start"),
        "{log:#}"
    );
}

#[test]
fn a_round_whose_only_code_agent_cannot_start_is_failed() {
    let repo = Repo::new();
    let bin = tempfile::tempdir().unwrap();
    let ghost = bin.path().join("ghost-agent");
    std::fs::write(&ghost, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&ghost, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let g = ghost.display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "ghost", "phase": "code", "command": [g], "when": {"command": ["rm", "-f", g]}}]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "failed", "{log:#}");
    assert!(
        log["notes"]
            .to_string()
            .contains("no code agent could start"),
        "{log:#}"
    );
    // `orch round N` says so through its exit status.
    std::fs::write(&ghost, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&ghost, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    repo.orch(&["round", "1"]).expect(1);
}

#[test]
fn a_dirty_tree_is_refused_unless_allowed() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])}]
    }));
    repo.write("src/app.txt", "my own unsaved work\n");
    let run = repo.orch(&["run"]).expect(2);
    assert!(
        run.stderr().contains("uncommitted changes"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("src/app.txt"), "{}", run.stderr());
    assert!(run.stderr().contains("--allow-dirty"), "{}", run.stderr());
    assert!(!repo.has_round_log(1));
    assert_eq!(repo.read("src/app.txt"), "my own unsaved work\n");
}

#[test]
fn a_bad_mission_is_rejected_naming_the_key() {
    let repo = Repo::new();
    repo.write(
        "orch.json",
        r#"{"name": "t", "agents": [
            {"name": "a", "phase": "code", "command": "true"},
            {"name": "b", "phase": "code", "command": "true"},
            {"name": "c", "phase": "code", "comand": "true"}]}"#,
    );
    let run = repo.orch(&["validate"]).expect(2);
    assert!(
        run.stderr().contains("agents[2].comand"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("orch.json"), "{}", run.stderr());
    let run = repo.orch(&["run"]).expect(2);
    assert!(
        run.stderr().contains("agents[2].comand"),
        "{}",
        run.stderr()
    );
    assert!(!repo.exists(".orch/state.json"));
    repo.write(
        "orch.json",
        r#"{"name": "t", "maxConcurrency": 0, "agents": [{"name": "a", "phase": "code", "command": "true"}]}"#,
    );
    let run = repo.orch(&["validate"]).expect(2);
    assert!(run.stderr().contains("maxConcurrency"), "{}", run.stderr());
}

#[test]
fn run_resumes_after_the_last_round_and_round_n_replays_beside_the_branch() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=line {round}"])}]
    }));
    repo.orch(&["run"]).expect(0);
    assert!(repo.has_round_log(2));
    // All rounds done: nothing more to run.
    repo.orch(&["run"]).expect(0);
    assert!(!repo.has_round_log(3));
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert!(repo.has_round_log(3));
    assert_eq!(repo.state()["lastRound"], 3);
    // `orch round 2` replays round 2 beside the branch: the branch, round 2's log and the
    // state stay as they are (tests/integration/replay.rs has the details).
    let (head, log2) = (repo.head(), repo.read(".orch/rounds/round-0002.json"));
    repo.orch(&["round", "2"]).expect(0);
    assert!(!repo.exists(".orch/rounds/round-0002.prev-1.json"));
    assert_eq!(repo.read(".orch/rounds/round-0002.json"), log2);
    assert_eq!(repo.head(), head);
    assert_eq!(repo.state()["lastRound"], 3);
    assert_eq!(repo.read("src/a.txt"), "line 1\nline 2\nline 3\n");
    // `orch round 4` is the next round, on the branch.
    repo.orch(&["round", "4"]).expect(0);
    assert_eq!(repo.state()["lastRound"], 4);
    assert_eq!(repo.read("src/a.txt"), "line 1\nline 2\nline 3\nline 4\n");
}

#[test]
fn round_n_exits_1_when_its_round_is_reverted() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=BROKEN"])}],
        "tests": {"command": tests_cmd("0")}
    }));
    repo.orch(&["round", "1"]).expect(1);
    assert_eq!(repo.round_log(1)["status"], "reverted");
}

#[test]
fn the_agent_gets_its_environment_and_prompt() {
    let repo = Repo::new();
    let env_file = repo.pathbuf("env.out").display().to_string();
    let stdin_file = repo.pathbuf("stdin.out").display().to_string();
    repo.write(
        "prompts/a.md",
        "Hello {{agent}}, round {{round}}, model {{model}}.\n",
    );
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "prompt"]);
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "model": "m1", "stdin": "prompt",
                    "prompt": "prompts/a.md", "env": {"EXTRA": "1"},
                    "command": agent_cmd(&["--env", &env_file, "--stdin", &stdin_file, "--write", "src/x.txt={model}"])}]
    }));
    repo.orch(&["run", "--allow-dirty"]).expect(0);
    let env = std::fs::read_to_string(&env_file).unwrap();
    for k in [
        "ORCH_ROUND=1",
        "ORCH_AGENT=a",
        "ORCH_MODEL=m1",
        "ORCH_PROMPT_FILE=",
        "ORCH_WORKDIR=",
        "ORCH_TASKS_INBOX=",
        "ORCH_RESULT_FILE=",
    ] {
        assert!(env.contains(k), "{k} missing from\n{env}");
    }
    assert_eq!(
        std::fs::read_to_string(&stdin_file).unwrap(),
        "Hello a, round 1, model m1.\n"
    );
    assert_eq!(repo.read("src/x.txt"), "m1\n");
    assert!(repo.exists(".orch/prompts/round-0001/a.md"));
}

#[test]
fn an_unknown_prompt_placeholder_is_a_validation_error_naming_file_and_line() {
    let repo = Repo::new();
    repo.write("prompts/a.md", "line one\nHello {{agnet}}\n");
    repo.mission(json!({
        "name": "t",
        "agents": [{"name": "a", "phase": "code", "prompt": "prompts/a.md", "command": "true"}]
    }));
    let run = repo.orch(&["validate"]).expect(2);
    assert!(
        run.stderr().contains("prompts/a.md") && run.stderr().contains("line 2"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("agnet"), "{}", run.stderr());
}

/// The round's commits name the agents whose work they hold: not a review agent that changed
/// nothing, and "sim data" when no code agent changed a file. (One slot: review agents share
/// the tree, and two at once would each be credited with the other's files.)
#[test]
fn commit_messages_name_only_the_agents_whose_work_they_hold() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2, "maxConcurrency": 1,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--round", "1", "--write", "src/a.txt=a"])},
            {"name": "r1", "phase": "review", "command": agent_cmd(&["--write", "notes/r1.txt=seen {round}"])},
            {"name": "r2", "phase": "review", "command": agent_cmd(&[])}
        ],
        "sims": {"pre": {"command": sim_cmd("0")}, "publishTo": "sim-data"}
    }));
    repo.orch(&["run"]).expect(0);
    let subjects = repo.git(&["log", "--format=%s", "-4"]);
    let subjects: Vec<&str> = subjects.lines().collect();
    assert_eq!(
        subjects,
        vec![
            "orch: round 2 review: r1",
            "orch: round 2 sim data",
            "orch: round 1 review: r1",
            "orch: round 1 code: a",
        ],
        "{subjects:#?}"
    );
}
