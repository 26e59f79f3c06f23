//! The per-agent revert's culprit search with several candidate trees tested at once
//! (`bisectJobs`): the runs of a wave overlap on the clock, the culprits and the committed tree
//! are the ones the serial bisection (`bisectJobs: 1`) finds, for one culprit, two, and changes
//! that break the tests only together; the key's bounds; an interrupt mid-search.

use std::time::{Duration, Instant};

use crate::common::{agent_cmd, overlap, processes_with, tests_cmd, Orch, Repo};
use serde_json::{json, Value};

/// Code agents `a0`, `a1`, … each writing `src/aI.txt` with its text (`BROKEN` breaks the
/// tests alone, two `HALF`s break them together), merged in mission order (one slot), and
/// the per-agent revert testing up to `jobs` candidate trees at once.
fn run_night(jobs: usize, texts: &[&str], sleep: &str) -> (Repo, Value) {
    let repo = Repo::new();
    let agents: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"name": format!("a{i}"), "phase": "code",
                   "command": agent_cmd(&["--write", &format!("src/a{i}.txt={text}")])})
        })
        .collect();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1, "bisectJobs": jobs,
        "agents": agents, "tests": {"command": tests_cmd(sleep)}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    (repo, log)
}

/// What a search found: its culprits, the committed tree's `src/` (the mission file differs),
/// and the extra runs.
fn outcome(repo: &Repo, log: &Value) -> (Value, String, Vec<Value>) {
    let revert = &log["revert"];
    assert_eq!(revert["strategy"], "per-agent", "{log:#}");
    assert_eq!(revert["committed"]["status"], "passed", "{log:#}");
    let runs = revert["testRuns"].as_array().unwrap().clone();
    let last = runs.last().unwrap();
    assert_eq!(last["status"], "passed", "{log:#}");
    assert_eq!(last["without"], revert["culprits"], "{log:#}");
    assert!(repo.status().is_empty(), "{}", repo.status());
    (
        revert["culprits"].clone(),
        repo.git(&["rev-parse", "HEAD:src"]),
        runs,
    )
}

/// Runs the same night serially and with `jobs` at once: the same culprits (`expected`) and
/// the same committed tree; every culprit's change kept in its rejected ref.
fn same_as_serial(texts: &[&str], jobs: usize, expected: Value) -> (Vec<Value>, Vec<Value>) {
    let (serial_repo, serial_log) = run_night(1, texts, "0");
    let (s_culprits, s_tree, s_runs) = outcome(&serial_repo, &serial_log);
    let (repo, log) = run_night(jobs, texts, "0");
    let (culprits, tree, runs) = outcome(&repo, &log);
    assert_eq!(s_culprits, expected, "{serial_log:#}");
    assert_eq!(culprits, expected, "{log:#}");
    assert_eq!(tree, s_tree, "the committed trees differ");
    for c in culprits.as_array().unwrap() {
        let name = c.as_str().unwrap();
        let kept = format!("refs/orch/rejected/round-1/{name}");
        let text = repo.git(&["show", &format!("{kept}:src/{name}.txt")]);
        assert!(text == "BROKEN" || text == "HALF", "{text}");
        assert!(!repo.exists(&format!("src/{name}.txt")));
    }
    // Every extra run is logged with its own log folder and counted as test time.
    let logs = std::fs::read_dir(repo.path().join(".orch/logs/round-0001"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("revert-check-"))
        .count();
    assert_eq!(logs, runs.len(), "{log:#}");
    (s_runs, runs)
}

/// The default (`bisectJobs` unset: `maxConcurrency`, 4): four changes, the first wave tests
/// each alone on the base at once, in the main tree and three worktrees under `.orch/bisect/`:
/// their runs overlap on the round's clock; then the union of the other three passes. (Tests
/// of 2 s: the worktrees are made one at a time, and a loaded machine must not make the first
/// run end before the last starts.)
#[test]
fn a_wave_tests_its_candidate_trees_at_once() {
    let repo = Repo::new();
    let agents: Vec<_> = (0..4)
        .map(|i| {
            let text = if i == 2 { "BROKEN" } else { "fine" };
            json!({"name": format!("a{i}"), "phase": "code",
                   "command": agent_cmd(&["--write", &format!("src/a{i}.txt={text}")])})
        })
        .collect();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 4, "agents": agents,
        "tests": {"command": tests_cmd("2")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let (culprits, _, runs) = outcome(&repo, &log);
    assert_eq!(culprits, json!(["a2"]), "{log:#}");
    assert_eq!(runs.len(), 5, "{log:#}");
    let wave = &runs[..4];
    for (i, a) in wave.iter().enumerate() {
        assert_eq!(a["without"].as_array().unwrap().len(), 3, "{log:#}");
        for b in &wave[i + 1..] {
            assert!(overlap(a, b) > 0, "not at once: {a} {b}");
        }
        assert!(
            overlap(a, &runs[4]) == 0,
            "the check of the union waits for the wave"
        );
    }
    let failed: Vec<_> = wave.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{log:#}");
    // Merged in the order they ended (four slots): the names in merge order.
    let mut without: Vec<String> = failed[0]["without"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    without.sort();
    assert_eq!(without, ["a0", "a1", "a3"]);
    // The test time counts the wave's seconds once, not once per tree.
    let sum: u64 = runs.iter().map(|r| r["elapsedMs"].as_u64().unwrap()).sum();
    let tests = log["timing"]["tests"].as_u64().unwrap();
    assert!(
        tests < log["tests"]["elapsedMs"].as_u64().unwrap() + sum,
        "{log:#}"
    );
    for slot in 1..4 {
        assert!(
            repo.exists(&format!(".orch/bisect/{slot}/.git")),
            "worktree {slot}"
        );
    }
    for i in [0, 1, 3] {
        assert!(
            repo.exists(&format!("src/a{i}.txt")),
            "a{i}'s work was lost"
        );
    }
}

#[test]
fn one_culprit_is_the_one_the_serial_search_finds() {
    let (serial, parallel) = same_as_serial(
        &["fine", "fine", "fine", "BROKEN", "fine"],
        8,
        json!(["a3"]),
    );
    // Five changes at once, then the union of four: two waves.
    assert_eq!(parallel.len(), 6);
    assert!(serial.len() >= 2);
}

#[test]
fn two_culprits_are_the_ones_the_serial_search_finds_with_fewer_slots_than_changes() {
    // Six changes, four trees at once: blocks [a0] [a1 a2] [a3 a4] [a5], then the failing
    // blocks' changes alone, then the union of the other four.
    let (serial, parallel) = same_as_serial(
        &["fine", "BROKEN", "fine", "fine", "BROKEN", "fine"],
        4,
        json!(["a1", "a4"]),
    );
    assert_eq!(serial.len(), 7);
    assert_eq!(parallel.len(), 9);
}

#[test]
fn changes_that_break_the_tests_only_together_are_found_as_the_serial_search_finds_them() {
    // a1 and a2 each pass alone and fail together: every change alone passes, so the
    // bisection decides, and takes out the later of the two, as the serial search does.
    same_as_serial(&["fine", "HALF", "HALF", "fine"], 4, json!(["a2"]));
    // A change that breaks the tests alone and a pair that breaks them together: the union of
    // the others still fails after a0 is out, so the bisection decides again.
    same_as_serial(&["BROKEN", "fine", "HALF", "HALF"], 4, json!(["a0", "a3"]));
}

#[test]
fn bisect_jobs_out_of_its_bounds_is_refused_naming_the_key() {
    for bad in [json!(0), json!(65), json!("two"), json!(-1)] {
        let repo = Repo::new();
        repo.mission(json!({
            "name": "t", "bisectJobs": bad,
            "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[])}]
        }));
        let run = repo.orch(&["validate"]).expect(2);
        assert!(
            run.stderr().contains("bisectJobs"),
            "{bad}: {}",
            run.stderr()
        );
    }
}

/// Ctrl-C while a wave's tests run, in the main tree and two worktrees: every test process
/// is stopped, the worktrees are removed, the round is `interrupted` with its work kept, and
/// the next run runs it again, as after an interrupt at any other stage.
#[test]
fn an_interrupt_during_the_search_stops_every_tree_and_keeps_the_work() {
    let repo = interrupt_during_the_search(false);
    // `orch status` and `orch report` read it as interrupted: no round finished, the breaker's
    // counts untouched (the round runs again and counts its tests then).
    let status = repo.orch_json(&["status", "--json"]);
    assert_eq!(status["lastRound"], 0, "{status:#}");
    assert_eq!(status["testFailuresInARow"], 0, "{status:#}");
    assert_eq!(status["testFailedRoundsInARow"], 0, "{status:#}");
    let report = repo.orch_json(&["report", "--format", "json"]);
    let text = report.to_string();
    assert!(text.contains("\"interrupted\""), "{report:#}");
    assert!(!text.contains("whole round was reverted"), "{report:#}");
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(md.contains("1 interrupted"), "{md}");
    assert!(md.contains("refs/orch/interrupted/round-1"), "{md}");
    // The interrupted round did not finish: the next run runs it again, keeping its log.
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    assert_eq!(log["revert"]["culprits"], json!(["a1"]), "{log:#}");
    assert!(repo.exists(".orch/rounds/round-0001.prev-1.json"));
    assert!(!repo.has_round_log(2));
    // The interrupted run's logs and prompts are kept beside this run's, and its kept log and
    // inputs point at them: the re-run wrote over none of them.
    let prev: Value =
        serde_json::from_str(&repo.read(".orch/rounds/round-0001.prev-1.json")).unwrap();
    let a0 = Repo::agent(&prev, "a0")["log"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a0, "logs/round-0001.prev-1/a0.log", "{prev:#}");
    assert!(repo.exists(&format!(".orch/{a0}")));
    assert!(repo.exists(".orch/logs/round-0001.prev-1/revert-check-3"));
    assert!(repo.exists(".orch/prompts/round-0001.prev-1/a0.md"));
    let inputs = repo.read(".orch/rounds/round-0001.prev-1.inputs.json");
    assert!(
        inputs.contains("\"prompts/round-0001.prev-1/a0.md\""),
        "{inputs}"
    );
    assert_eq!(Repo::agent(&log, "a0")["log"], "logs/round-0001/a0.log");
    assert!(repo.exists(".orch/logs/round-0001/a0.log"));
    assert!(repo.exists(".orch/prompts/round-0001/a0.md"));
}

/// The same with a review agent still at work beside the tests, the search begun beside it.
#[test]
fn an_interrupt_during_a_search_beside_the_review_agents_stops_every_tree_and_keeps_the_work() {
    let repo = interrupt_during_the_search(true);
    // Phase B's worktree is kept whole, as after an interrupt while the tests run beside it.
    repo.git(&[
        "rev-parse",
        "--verify",
        "refs/orch/interrupted-review/round-1",
    ]);
}

fn interrupt_during_the_search(review: bool) -> Repo {
    let repo = Repo::new();
    // A sleep no other test uses: the test processes carry it in their command line.
    let sleep = format!("3.{}", std::process::id() % 1000 + 1000);
    let agents: Vec<_> = (0..3)
        .map(|i| {
            let text = if i == 1 { "BROKEN" } else { "fine" };
            json!({"name": format!("a{i}"), "phase": "code",
                   "command": agent_cmd(&["--write", &format!("src/a{i}.txt={text}")])})
        })
        .collect();
    let mut agents = agents;
    if review {
        agents.push(json!({"name": "rev", "phase": "review",
            "command": agent_cmd(&["--sleep", "30", "--write", "notes.md=reviewed"])}));
    }
    repo.mission(json!({
        "name": "t", "rounds": 2, "maxConcurrency": 3, "killGraceS": 0.5, "agents": agents,
        "tests": {"command": tests_cmd(&sleep), "baseline": false}
    }));
    let base = repo.head();
    let mut orch = Orch::start(&repo, &["run"]);
    let third = repo.path().join(".orch/logs/round-0001/revert-check-3");
    let t0 = Instant::now();
    while !third.exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no wave started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        processes_with(&sleep).len() >= 3,
        "{:?}",
        processes_with(&sleep)
    );
    orch.signal(libc::SIGINT);
    let code = orch.wait(Duration::from_secs(20));
    assert_eq!(code, 130, "{}", orch.stderr());
    let t0 = Instant::now();
    while !processes_with(&sleep).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "left running: {:?}",
            processes_with(&sleep)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !repo.exists(".orch/bisect"),
        "the search's worktrees stayed"
    );
    let worktrees = repo.git(&["worktree", "list"]);
    assert!(!worktrees.contains("bisect"), "{worktrees}");
    assert!(
        !repo.has_round_log(2),
        "a round started after the interrupt"
    );
    let log = repo.round_log(1);
    // The interrupted runs are logged, each with its result (cancelled).
    if review {
        assert_eq!(Repo::agent(&log, "rev")["status"], "cancelled", "{log:#}");
    }
    let runs = log["revert"]["testRuns"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{log:#}");
    assert!(runs.iter().all(|r| r["status"] == "cancelled"), "{log:#}");
    assert_eq!(repo.head(), base);
    assert!(repo.status().is_empty(), "{}", repo.status());
    // An interrupt ends the round as `interrupted`, as at any other stage: nothing reverted,
    // no culprit named, the union of the changes kept under refs/orch/interrupted/.
    assert_eq!(log["status"], "interrupted", "{log:#}");
    assert_eq!(log["stopReason"], "interrupted by a signal", "{log:#}");
    assert_ne!(log["reverted"], true, "{log:#}");
    assert_eq!(log["revert"]["strategy"], "interrupted", "{log:#}");
    assert_eq!(log["revert"]["culprits"], json!([]), "{log:#}");
    let kept = log["keptRef"].as_str().unwrap().to_string();
    assert_eq!(kept, "refs/orch/interrupted/round-1");
    for i in 0..3 {
        let text = if i == 1 { "BROKEN" } else { "fine" };
        assert_eq!(
            repo.git(&["show", &format!("{kept}:src/a{i}.txt")]),
            text,
            "{kept}"
        );
    }
    let events = repo.read(".orch/events.ndjson");
    assert!(
        !events.lines().any(|l| l.contains("\"event\":\"revert\"")),
        "{events}"
    );
    repo
}

/// With the review agents beside the tests (the default `phaseB`), the search begins as soon
/// as the tests regress, while a review agent still runs, in worktrees only: the main tree,
/// whose HEAD the review agents answer for, is not touched until Phase B ends.
#[test]
fn the_search_begins_beside_the_review_agents_still_running() {
    let repo = Repo::new();
    let mut agents: Vec<_> = (0..3)
        .map(|i| {
            let text = if i == 1 { "BROKEN" } else { "fine" };
            json!({"name": format!("a{i}"), "phase": "code",
                   "command": agent_cmd(&["--write", &format!("src/a{i}.txt={text}")])})
        })
        .collect();
    agents.push(json!({"name": "rev", "phase": "review",
        "command": agent_cmd(&["--sleep", "3", "--write", "notes.md=reviewed"])}));
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 3, "agents": agents,
        "tests": {"command": tests_cmd("0.3")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let (culprits, _, runs) = outcome(&repo, &log);
    assert_eq!(culprits, json!(["a1"]), "{log:#}");
    let b_end = log["timing"]["phaseBEndMs"].as_u64().unwrap();
    let first = runs[0]["startMs"].as_u64().unwrap();
    assert!(first < b_end, "the search waited for Phase B: {log:#}");
    // Every run of the search was in a worktree: none in the main tree while Phase B ran.
    assert_eq!(Repo::agent(&log, "rev")["status"], "ok", "{log:#}");
    assert!(repo.exists(".orch/bisect/0/.git"));
    // The round's testsEnd comes before the search's.
    let ends: Vec<Value> = repo
        .read(".orch/events.ndjson")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "testsEnd" && e["round"] == 1)
        .collect();
    assert_eq!(ends.len(), runs.len() + 1, "{ends:#?}");
    let round_end = ends
        .iter()
        .position(|e| {
            e["without"].as_array().is_none_or(|w| w.is_empty()) && e["regression"] == true
        })
        .unwrap();
    assert!(ends[round_end + 1..]
        .iter()
        .all(|e| !e["without"].as_array().unwrap().is_empty()));
}
