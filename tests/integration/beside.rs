//! Phase B beside the tests (`phaseB: "besideTests"`, issue 20): the review agents start when
//! Phase A's merges are done, in orch's worktree of the merged tree, while the tests and the
//! post-sim run in the main tree; their work lands after the code commit when the tests pass,
//! and is kept in a ref (not merged) when the round is reverted. All of it read back from the
//! real binary's round logs, refs and commits.

use crate::common::*;
use serde_json::{json, Value};

fn ms_at(log: &Value, key: &str) -> u64 {
    log["timing"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("timing.{key} missing in {:#}", log["timing"]))
}

/// Events, one JSON object a line (events.ndjson, or `orch run --json`'s stdout).
fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `agent`'s agentEnd events, in order.
fn agent_ends<'a>(events: &'a [Value], agent: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == "agentEnd" && e["agent"] == agent)
        .collect()
}

/// Ctrl-C to a running orch: it exits 130 and round 1 is logged `interrupted`; its log.
fn interrupt(orch: &mut Orch, repo: &Repo) -> Value {
    orch.signal(libc::SIGINT);
    assert_eq!(
        orch.wait(std::time::Duration::from_secs(15)),
        130,
        "{}",
        orch.stderr()
    );
    let log = repo.round_log(1);
    assert_eq!(log["status"], "interrupted", "{log:#}");
    log
}

fn subjects(repo: &Repo) -> Vec<String> {
    repo.git(&["log", "--format=%s"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn review_agents_run_beside_the_tests_and_land_after_the_code_commit() {
    let repo = Repo::new();
    let env_file = repo
        .path()
        .join(".orch/review-env.txt")
        .display()
        .to_string();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "reviewer", "phase": "review",
             "command": agent_cmd(&["--env", &env_file, "--sleep", "0.2",
                                    "--write", "docs/review.md=reviewed"])},
            {"name": "producer", "phase": "review",
             "command": agent_cmd(&["--task-for", "coder:1:next thing"])}
        ],
        "sims": {"pre": {"command": sim_cmd("0")}, "post": {"command": sim_cmd("0.3")},
                 "publishTo": "sim-data"},
        "tests": {"command": tests_cmd("1.5")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    // Started before the tests ended, as the round log tells it.
    let tests_end = ms_at(&log, "testsEndMs");
    let b_start = ms_at(&log, "phaseBStartMs");
    let reviewer = Repo::agent(&log, "reviewer");
    assert!(
        b_start < tests_end && ms(&reviewer["startMs"]) < tests_end,
        "Phase B at {b_start}, reviewer at {}, tests ended at {tests_end}",
        reviewer["startMs"]
    );
    // Phase B ended before the tests: all of it ran beside them, counted once in overhead.
    assert!(
        ms_at(&log, "phaseBEndMs") < tests_end,
        "{:#}",
        log["timing"]
    );
    assert!(ms_at(&log, "beside") > 0, "{:#}", log["timing"]);
    assert!(ms(&log["tests"]["elapsedMs"]) >= 1500);
    // It worked in orch's worktree of Phase A's tree, which had the code agent's change.
    let env = repo.read(".orch/review-env.txt");
    assert!(
        env.contains("/.orch/worktrees/.phase-b"),
        "the reviewer's working folder: {env}"
    );
    assert_eq!(reviewer["status"], "ok");
    // Two commits on the base: the code commit, then the review commit on it. (Two review
    // agents at once in one tree: the producer, which wrote no file, may be credited with the
    // reviewer's, so the review commit's name is checked for the reviewer only.)
    let subjects = subjects(&repo);
    assert!(
        subjects[0].starts_with("orch: round 1 review: ") && subjects[0].contains("reviewer"),
        "{subjects:?}"
    );
    assert_eq!(subjects[1], "orch: round 1 code: coder");
    assert_eq!(repo.git(&["rev-parse", "HEAD~2"]), base);
    assert_eq!(repo.read("docs/review.md"), "reviewed\n");
    assert_eq!(repo.read("src/a.txt"), "code\n");
    // The review commit holds only the reviewer's file.
    assert_eq!(
        repo.git(&["diff", "--name-only", "HEAD~1", "HEAD"]),
        "docs/review.md"
    );
    // The post-sim's data, published after the tests, is in the code commit.
    assert!(repo.read("sim-data/latest.json").contains("post"));
    // The producer's task reached the queue.
    let tasks = repo.read(".orch/tasks.json");
    assert!(tasks.contains("next thing"), "{tasks}");
    assert!(repo.status().is_empty(), "{}", repo.status());
    // The Gantt draws the reviewer where it ran: its bar starts before the tests' bar ends.
    let svg = repo.orch(&["report", "--format", "svg"]).expect(0).stdout();
    let x_of = |label: &str| -> (f64, f64) {
        let at = svg
            .find(&format!("<title>{label} ("))
            .unwrap_or_else(|| panic!("no bar {label} in {svg}"));
        let rect = &svg[svg[..at].rfind("<rect").unwrap()..at];
        let num = |k: &str| -> f64 {
            let i = rect.find(&format!(" {k}=\"")).unwrap() + k.len() + 3;
            rect[i..].split('"').next().unwrap().parse().unwrap()
        };
        (num("x"), num("x") + num("width"))
    };
    let (review_x, _) = x_of("reviewer");
    let (tests_x, tests_end_x) = x_of("tests");
    assert!(
        review_x < tests_end_x && review_x >= tests_x - 1.0,
        "reviewer at x={review_x}, tests {tests_x}..{tests_end_x}"
    );
}

#[test]
fn after_tests_keeps_todays_order() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "phaseB": "afterTests",
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "reviewer", "phase": "review", "command": agent_cmd(&["--write", "docs/review.md=ok"])}
        ],
        "tests": {"command": tests_cmd("0.5")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok");
    let tests_end = ms_at(&log, "testsEndMs");
    assert!(ms(&Repo::agent(&log, "reviewer")["startMs"]) >= tests_end);
    assert!(log["timing"].get("beside").is_none(), "{:#}", log["timing"]);
    assert_eq!(repo.read("docs/review.md"), "ok\n");
}

#[test]
fn a_revert_keeps_the_review_work_in_a_ref_not_merged() {
    let repo = Repo::new();
    // One slot: review agents share their tree, so only one at a time is credited exactly.
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1,
        "agents": [
            {"name": "breaker", "phase": "code", "command": agent_cmd(&["--write", "src/app.txt=BROKEN"])},
            {"name": "reviewer", "phase": "review", "command": agent_cmd(&["--write", "docs/review.md=seen"])},
            {"name": "producer", "phase": "review",
             "command": agent_cmd(&["--task-for", "breaker:1:fix it"])}
        ],
        "tests": {"command": tests_cmd("0.5")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "reverted", "{log:#}");
    let reviewer = Repo::agent(&log, "reviewer");
    assert_eq!(
        reviewer["aside"]["keptRef"], "refs/orch/review-aside/round-1/reviewer",
        "{reviewer:#}"
    );
    assert!(reviewer["aside"]["reason"]
        .as_str()
        .unwrap()
        .contains("the round was reverted"));
    assert!(ms(&reviewer["startMs"]) < ms_at(&log, "testsEndMs"));
    // The ref holds the work; nothing of it is merged.
    let r = "refs/orch/review-aside/round-1/reviewer";
    assert!(repo.has_ref(r));
    assert_eq!(repo.git(&["show", &format!("{r}:docs/review.md")]), "seen");
    assert!(!repo.exists("docs/review.md"));
    assert_eq!(
        repo.head(),
        base,
        "nothing committed after a whole-round revert"
    );
    assert!(!repo
        .git(&["log", "--all", "--format=%s", "HEAD"])
        .contains("review: reviewer"));
    let notes = log["notes"].to_string();
    assert!(
        notes.contains("kept aside") && notes.contains(r),
        "the round log says so: {notes}"
    );
    // The producer changed no file: no ref, but said in its entry; its task reached the queue.
    let producer = Repo::agent(&log, "producer");
    assert!(producer["aside"]["keptRef"].is_null());
    assert!(repo.read(".orch/tasks.json").contains("fix it"));
    // `orch show` and the report say it.
    let show = repo.orch(&["show", "1"]).expect(0).stdout();
    assert!(show.contains(r), "{show}");
    let report = repo.orch(&["report"]).expect(0).stdout();
    assert!(report.contains("kept aside"), "{report}");
    assert!(repo.status().is_empty(), "{}", repo.status());
}

/// Seen from events.ndjson: the reviewer's first agentEnd (its process ended beside the tests)
/// said ok; once the round is reverted and its change kept aside, a second agentEnd
/// (`amended: true`) says so with the ref and the reason, as the round log's entry does, so
/// the live view and scripts do not take it for landed work.
#[test]
fn review_work_kept_aside_by_a_revert_is_an_amended_agent_end() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1,
        "agents": [
            {"name": "breaker", "phase": "code", "command": agent_cmd(&["--write", "src/app.txt=BROKEN"])},
            {"name": "reviewer", "phase": "review", "command": agent_cmd(&["--write", "docs/review.md=seen"])}
        ],
        "tests": {"command": tests_cmd("0.5")}
    }));
    let run = repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "reverted", "{log:#}");
    let events = ndjson(&repo.read(".orch/events.ndjson"));
    let ends = agent_ends(&events, "reviewer");
    assert_eq!(ends.len(), 2, "{ends:#?}");
    assert_eq!(ends[0]["status"], "ok");
    assert!(ends[0].get("amended").is_none(), "{:#}", ends[0]);
    assert!(ends[0].get("aside").is_none(), "{:#}", ends[0]);
    let r = "refs/orch/review-aside/round-1/reviewer";
    assert_eq!(ends[1]["amended"], true, "{:#}", ends[1]);
    assert_eq!(ends[1]["aside"]["keptRef"], r, "{:#}", ends[1]);
    assert!(
        ends[1]["aside"]["reason"]
            .as_str()
            .unwrap()
            .contains("the round was reverted"),
        "{:#}",
        ends[1]
    );
    // The same run: its cost and time as the first said.
    assert_eq!(ends[1]["costUsd"], ends[0]["costUsd"]);
    assert_eq!(ends[1]["elapsedMs"], ends[0]["elapsedMs"]);
    assert_eq!(
        ends[1]["aside"],
        Repo::agent(&log, "reviewer")["aside"],
        "the event and the round log say the same"
    );
    // After the revert, before the round's end.
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    let amended = at(&|e| e["event"] == "agentEnd" && e["amended"] == true);
    assert!(at(&|e| e["event"] == "revert") < amended);
    assert!(amended < at(&|e| e["event"] == "roundEnd"));
    // The line for a person says it too.
    assert!(
        run.stderr().contains(&format!(
            "round 1: reviewer ran beside the tests, and the round was reverted: its work is not merged (kept in {r})"
        )),
        "{}",
        run.stderr()
    );
}

#[test]
fn phase_b_after_revert_runs_the_review_agents_again_on_the_tree_that_stays() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "phaseBAfterRevert": true,
        "agents": [
            {"name": "breaker", "phase": "code", "command": agent_cmd(&["--write", "src/app.txt=BROKEN"])},
            {"name": "reviewer", "phase": "review",
             "command": agent_cmd(&["--write", "docs/review.md=round {round} seen",
                                    "--task-for", "breaker:1:look again"])}
        ],
        "tests": {"command": tests_cmd("0.5")}
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "reverted", "{log:#}");
    let reviewer = Repo::agent(&log, "reviewer");
    let beside = &reviewer["besideRun"];
    assert_eq!(
        beside["aside"]["keptRef"],
        "refs/orch/review-aside/round-1/reviewer"
    );
    assert!(ms(&beside["startMs"]) < ms_at(&log, "testsEndMs"));
    // The run again started after the revert, on the base, and its work is committed.
    assert!(ms(&reviewer["startMs"]) >= ms_at(&log, "testsEndMs"));
    assert_eq!(reviewer["status"], "ok");
    assert!(reviewer["aside"].is_null());
    assert_eq!(repo.git(&["rev-parse", "HEAD~1"]), base);
    assert_eq!(subjects(&repo)[0], "orch: round 1 review: reviewer");
    assert_eq!(repo.read("docs/review.md"), "round 1 seen\n");
    assert_eq!(repo.read("src/app.txt"), "app\n");
    assert!(repo.has_ref("refs/orch/review-aside/round-1/reviewer"));
    // One entry for the agent, both runs' cost in the round; the task filed once.
    assert_eq!(
        log["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["name"] == "reviewer")
            .count(),
        1
    );
    let tasks = repo.read(".orch/tasks.json");
    assert_eq!(tasks.matches("look again").count(), 1, "{tasks}");
    // The report says the first run's work was kept aside and it ran again; the Gantt draws
    // both runs.
    let report = repo.orch(&["report"]).expect(0).stdout();
    assert!(
        report.contains("kept aside") && report.contains("ran again after the revert"),
        "{report}"
    );
    let svg = repo.orch(&["report", "--format", "svg"]).expect(0).stdout();
    assert!(
        svg.contains("reviewer (beside the tests, kept aside)"),
        "{svg}"
    );
}

#[test]
fn a_review_change_that_conflicts_with_the_code_commit_is_kept_in_a_ref() {
    // The post-sim's data is published after the tests, into the code commit; a review agent
    // beside the tests wrote the same file in its worktree: that change cannot land.
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1,
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "curator", "phase": "review",
             "command": agent_cmd(&["--write", "sim-data/latest.json=curated by hand"])},
            {"name": "reviewer", "phase": "review",
             "command": agent_cmd(&["--write", "docs/review.md=ok"])}
        ],
        "sims": {"post": {"command": sim_cmd("0.2")}, "publishTo": "sim-data"},
        "tests": {"command": tests_cmd("0.5")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let curator = Repo::agent(&log, "curator");
    assert_eq!(curator["status"], "conflict", "{curator:#}");
    let r = "refs/orch/conflicts/round-1/curator";
    assert!(curator["error"].as_str().unwrap().contains(r));
    assert_eq!(
        repo.git(&["show", &format!("{r}:sim-data/latest.json")]),
        "curated by hand"
    );
    // The post-sim's data stands; the other review agent's work landed.
    assert!(repo.read("sim-data/latest.json").contains("post"));
    assert_eq!(repo.read("docs/review.md"), "ok\n");
    assert_eq!(subjects(&repo)[0], "orch: round 1 review: reviewer");
    assert_eq!(repo.state()["agents"]["curator"]["lastStatus"], "conflict");
    assert!(repo.status().is_empty(), "{}", repo.status());
}

#[test]
fn a_review_change_that_conflicts_after_the_tests_is_an_agent_end_the_attention_hook_gets() {
    // The same conflict as above, seen from the event stream: the curator's first agentEnd
    // (its process ended beside the tests) said ok; when its change cannot land after them, an
    // agentEnd says `conflict` with the kept ref, as a code agent's conflict does, so the
    // attention hook pages someone and scripts see what it ended as.
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let attention = out.path().join("attention.ndjson");
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1,
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "curator", "phase": "review",
             "command": agent_cmd(&["--write", "sim-data/latest.json=curated by hand"])},
            {"name": "reviewer", "phase": "review",
             "command": agent_cmd(&["--write", "docs/review.md=ok"])}
        ],
        "sims": {"post": {"command": sim_cmd("0.2")}, "publishTo": "sim-data"},
        "tests": {"command": tests_cmd("0.5")},
        "hooks": {"attention": format!("cat >> {}", attention.display())}
    }));
    let run = repo.orch(&["run", "--json"]).expect(0);
    let events = ndjson(&run.stdout());
    let ends = agent_ends(&events, "curator");
    assert_eq!(ends.len(), 2, "{ends:#?}");
    assert_eq!(ends[0]["status"], "ok");
    assert!(ends[0].get("amended").is_none(), "{:#}", ends[0]);
    let r = "refs/orch/conflicts/round-1/curator";
    assert_eq!(ends[1]["status"], "conflict", "{:#}", ends[1]);
    assert_eq!(ends[1]["amended"], true);
    assert!(
        ends[1]["error"].as_str().unwrap().contains(r),
        "{:#}",
        ends[1]
    );
    // It comes after the tests, before the round's end, and no warning says it instead.
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    let amended = at(&|e| e["event"] == "agentEnd" && e["amended"] == true);
    assert!(at(&|e| e["event"] == "testsEnd") < amended);
    assert!(amended < at(&|e| e["event"] == "roundEnd"));
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "warning" && e["message"].as_str().unwrap().contains(r)),
        "{events:#?}"
    );
    // The work is where the round log says, and the person is told (the hooks end with orch).
    assert_eq!(
        repo.git(&["show", &format!("{r}:sim-data/latest.json")]),
        "curated by hand"
    );
    let told = std::fs::read_to_string(&attention).unwrap_or_default();
    let told: Vec<Value> = told
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        told.iter().any(|e| e["event"] == "agentEnd"
            && e["agent"] == "curator"
            && e["status"] == "conflict"),
        "attention got {told:#?}"
    );
    // The line for a person says it too.
    assert!(
        run.stderr()
            .contains("round 1: curator conflict after the tests (its change (made beside the tests) conflicts"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_failed_review_agent_beside_the_tests_is_kept_in_a_ref_never_committed() {
    let repo = Repo::new();
    // One slot: in a shared tree a moved HEAD is blamed on the first agent to end after it.
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1,
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "halfway", "phase": "review",
             "command": agent_cmd(&["--write", "docs/half.md=half", "--exit", "1"])},
            {"name": "mover", "phase": "review",
             "command": agent_cmd(&["--write", "docs/moved.md=x", "--amend", "rewritten"])}
        ],
        "tests": {"command": tests_cmd("0.5")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let halfway = Repo::agent(&log, "halfway");
    assert_eq!(halfway["status"], "failed");
    let r = "refs/orch/failed/round-1/halfway";
    assert!(repo.has_ref(r), "{halfway:#}");
    assert_eq!(repo.git(&["show", &format!("{r}:docs/half.md")]), "half");
    // Its HEAD moved off the worktree's base: failed, its tree kept, nothing committed.
    let mover = Repo::agent(&log, "mover");
    assert_eq!(mover["status"], "failed", "{mover:#}");
    assert!(repo.has_ref("refs/orch/moved-head/round-1/mover"));
    assert!(!repo.exists("docs/half.md") && !repo.exists("docs/moved.md"));
    assert_eq!(subjects(&repo)[0], "orch: round 1 code: coder");
    assert!(repo.status().is_empty(), "{}", repo.status());
}

#[test]
fn with_no_change_in_phase_a_phase_b_runs_as_before() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [
            {"name": "idle", "phase": "code", "command": agent_cmd(&[])},
            {"name": "reviewer", "phase": "review", "command": agent_cmd(&["--write", "docs/r.md=ok"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert!(log["tests"].is_null());
    assert!(log["timing"].get("beside").is_none());
    assert!(!repo.path().join(".orch/worktrees/.phase-b").exists());
    assert_eq!(repo.read("docs/r.md"), "ok\n");
}

#[test]
fn a_bad_phase_b_value_is_exit_2_naming_the_key() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "phaseB": "sometimes",
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[])}]
    }));
    let run = repo.orch(&["validate"]).expect(2);
    assert!(run.stderr().contains("phaseB"), "{}", run.stderr());
}

/// A coder that writes a file, and a reviewer that writes half a review, then (its first time)
/// writes `hung` and hangs beside tests that take `tests_s` seconds.
fn hung_reviewer_mission(hung: &std::path::Path, tests_s: &str) -> Value {
    json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "reviewer", "phase": "review",
             "command": agent_cmd(&["--write", "docs/half.md=half", "--hang-once", &hung.display().to_string()])}
        ],
        "tests": {"command": tests_cmd(tests_s), "baseline": false}
    })
}

#[test]
fn an_interrupt_while_review_agents_run_beside_the_tests_keeps_both_trees() {
    let flags = tempfile::tempdir().unwrap();
    let hung = flags.path().join("hung");
    let repo = Repo::new();
    repo.mission(hung_reviewer_mission(&hung, "30"));
    let base = repo.head();
    let mut orch = Orch::start(&repo, &["run"]);
    orch.wait_for(&hung, std::time::Duration::from_secs(20));
    // `orch status` says the review agents run beside the tests.
    let status = repo.orch_json(&["status", "--json"]);
    assert_eq!(
        status["running"]["phase"], "tests, review beside them",
        "{status:#}"
    );
    interrupt(&mut orch, &repo);
    // The main tree's (Phase A's merged work) and Phase B's worktree, each in a ref.
    assert_eq!(
        repo.git(&["show", "refs/orch/interrupted/round-1:src/a.txt"]),
        "code"
    );
    assert_eq!(
        repo.git(&["show", "refs/orch/interrupted-review/round-1:docs/half.md"]),
        "half"
    );
    assert_eq!(repo.head(), base);
    assert!(repo.status().is_empty(), "{}", repo.status());
}

/// A review agent that ended ok beside the tests, then an interrupt: its work did not land.
/// Its entry says where it is (`aside`: Phase B's worktree ref) and a second agentEnd
/// (`amended: true`) says so to events.ndjson readers, whose first one said ok.
#[test]
fn a_review_run_ended_before_an_interrupt_is_an_amended_agent_end() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0.5,
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "reviewer", "phase": "review", "command": agent_cmd(&["--write", "docs/review.md=seen"])}
        ],
        "tests": {"command": tests_cmd("30"), "baseline": false}
    }));
    // Read while orch writes: a missing file or a half-written last line is no event yet.
    let ends = |repo: &Repo| -> Vec<Value> {
        std::fs::read_to_string(repo.path().join(".orch/events.ndjson"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == "agentEnd" && e["agent"] == "reviewer")
            .collect()
    };
    let mut orch = Orch::start(&repo, &["run"]);
    let t0 = std::time::Instant::now();
    while ends(&repo).is_empty() {
        assert!(
            t0.elapsed().as_secs() < 20,
            "no reviewer end: {}",
            orch.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = interrupt(&mut orch, &repo);
    let r = "refs/orch/interrupted-review/round-1";
    let reviewer = Repo::agent(&log, "reviewer");
    assert_eq!(reviewer["status"], "ok", "{reviewer:#}");
    assert_eq!(reviewer["aside"]["keptRef"], r, "{reviewer:#}");
    assert!(
        reviewer["aside"]["reason"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{reviewer:#}"
    );
    assert_eq!(repo.git(&["show", &format!("{r}:docs/review.md")]), "seen");
    let ends = ends(&repo);
    assert_eq!(ends.len(), 2, "{ends:#?}");
    assert!(ends[0].get("amended").is_none(), "{:#}", ends[0]);
    assert_eq!(ends[1]["amended"], true, "{:#}", ends[1]);
    assert_eq!(ends[1]["aside"], reviewer["aside"], "{:#}", ends[1]);
}

#[test]
fn a_killed_orch_while_review_agents_run_beside_the_tests_is_recovered_with_their_work() {
    let flags = tempfile::tempdir().unwrap();
    let hung = flags.path().join("hung");
    let repo = Repo::new();
    repo.mission(hung_reviewer_mission(&hung, "2"));
    let mut orch = Orch::start(&repo, &["run"]);
    orch.wait_for(&hung, std::time::Duration::from_secs(20));
    orch.signal(libc::SIGKILL);
    orch.wait(std::time::Duration::from_secs(10));
    // The next run recovers the dead round (the review agents' worktree in a ref of its own,
    // a name git accepts), then runs it again.
    let run = repo.orch(&["run"]).expect(0);
    assert_eq!(
        repo.git(&["show", "refs/orch/interrupted-review/round-1:docs/half.md"]),
        "half",
        "{}",
        run.stderr()
    );
    assert_eq!(repo.round_log(1)["status"], "ok");
    assert_eq!(repo.read("docs/half.md"), "half\n");
}

/// The default after a per-agent revert: the review work done beside the tests reviewed a tree
/// with the culprit in it, so it is kept aside, and the review agents run again on the tree
/// that stays (the other agents' work), as `phaseBAfterRevert: true` would; `false` keeps the
/// work aside only. (After a whole-round revert the default does not run them again: see
/// `a_revert_keeps_the_review_work_in_a_ref_not_merged`.)
#[test]
fn after_a_per_agent_revert_the_review_agents_run_again_by_default() {
    for key in [None, Some(false)] {
        let repo = Repo::new();
        let mut m = json!({
            "name": "t", "rounds": 1, "maxConcurrency": 2,
            "agents": [
                {"name": "good", "phase": "code", "command": agent_cmd(&["--write", "src/good.txt=good"])},
                {"name": "breaker", "phase": "code", "command": agent_cmd(&["--write", "src/app.txt=BROKEN"])},
                {"name": "reviewer", "phase": "review",
                 "command": agent_cmd(&["--write", "docs/review.md=seen {round}"])}
            ],
            "tests": {"command": tests_cmd("0.5")}
        });
        if let Some(k) = key {
            m["phaseBAfterRevert"] = json!(k);
        }
        repo.mission(m);
        repo.orch(&["run"]).expect(0);
        let log = repo.round_log(1);
        let what = format!("phaseBAfterRevert {key:?}: {log:#}");
        assert_eq!(log["revert"]["strategy"], "per-agent", "{what}");
        assert_eq!(log["revert"]["culprits"], json!(["breaker"]), "{what}");
        assert_eq!(repo.read("src/good.txt"), "good\n", "{what}");
        let reviewer = Repo::agent(&log, "reviewer");
        let aside = "refs/orch/review-aside/round-1/reviewer";
        assert!(repo.has_ref(aside), "{what}");
        if key.is_none() {
            // Its run beside the tests kept aside, its run again after them committed.
            assert_eq!(reviewer["besideRun"]["aside"]["keptRef"], aside, "{what}");
            assert!(
                ms(&reviewer["startMs"]) >= ms_at(&log, "testsEndMs"),
                "{what}"
            );
            assert_eq!(reviewer["status"], "ok", "{what}");
            assert_eq!(repo.read("docs/review.md"), "seen 1\n", "{what}");
            // Each run has its own log, and its entry points at it.
            let logs = [&reviewer["besideRun"]["log"], &reviewer["log"]];
            assert_eq!(
                logs.map(|l| l.as_str().unwrap().to_string()),
                [
                    "logs/round-0001/reviewer.log",
                    "logs/round-0001/reviewer.2.log"
                ],
                "{what}"
            );
            assert!(repo.exists(".orch/prompts/round-0001/reviewer.2.md"));
            assert_eq!(subjects(&repo)[0], "orch: round 1 review: reviewer");
        } else {
            assert_eq!(reviewer["aside"]["keptRef"], aside, "{what}");
            assert!(reviewer["besideRun"].is_null(), "{what}");
            assert!(!repo.exists("docs/review.md"), "{what}");
        }
    }
}

/// Phase B's worktree once its work is resolved: clean after a round whose review work landed
/// and after one whose review work was kept aside by a revert (old code: after the revert it
/// held the review agent's edits, ` M a.txt`, ` M review.txt`, until the next round reset it).
#[test]
fn phase_b_worktree_is_clean_once_its_work_is_landed_or_kept_aside() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a{round}"])},
            {"name": "r", "phase": "review", "command": agent_cmd(&[
                "--sleep", "0.3", "--write", "src/a.txt=r{round}", "--write", "review.txt=r{round}"])}
        ],
        "tests": {"command": ["sh", "-c", "sleep 0.1; grep -q a2 src/a.txt && exit 1; exit 0"]}
    }));
    let wt_status = |repo: &Repo| {
        let out = std::process::Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(repo.path().join(".orch/worktrees/.phase-b"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let run = repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert_eq!(repo.round_log(1)["status"], "ok", "{}", run.stderr());
    assert_eq!(
        wt_status(&repo),
        "",
        "after a round that landed its review work"
    );
    let run = repo.orch(&["run"]).expect(0);
    let log = repo.round_log(2);
    assert_eq!(log["status"], "reverted", "{}", run.stderr());
    assert!(repo.has_ref("refs/orch/review-aside/round-2/r"));
    assert_eq!(
        wt_status(&repo),
        "",
        "after a revert that kept the review work aside"
    );
}

/// The commit a review agent beside the tests is shown (its HEAD) is the round's code commit
/// when the tests pass, in both isolation modes, so a review that names it ("reviewed <sha>")
/// names what landed (old code: a commit "Phase A's tree, for Phase B beside the tests", with
/// the code commit's tree and parent but another hash, that no ref kept).
#[test]
fn the_commit_a_review_agent_beside_the_tests_sees_is_the_one_that_lands() {
    for isolation in ["worktree", "shared"] {
        let repo = Repo::new();
        repo.mission(json!({
            "name": "t", "rounds": 1, "git": {"isolation": isolation},
            "agents": [
                {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])},
                {"name": "b", "phase": "code", "command": agent_cmd(&["--write", "src/b.txt=b"])},
                {"name": "r", "phase": "review", "command": ["sh", "-c", "git rev-parse HEAD > seen.md"]}
            ],
            // Over a second: a commit made again after the tests has another time, so only
            // landing the very commit shown passes.
            "tests": {"command": ["sh", "-c", "sleep 1.1"]}
        }));
        let run = repo.orch(&["run"]).expect(0);
        let log = repo.round_log(1);
        assert_eq!(log["status"], "ok", "{isolation}: {}", run.stderr());
        let subjects = subjects(&repo);
        assert_eq!(subjects[0], "orch: round 1 review: r", "{isolation}");
        assert!(
            subjects[1].starts_with("orch: round 1 code: "),
            "{isolation}: {subjects:?}"
        );
        let code = repo.git(&["rev-parse", "HEAD~1"]);
        assert_eq!(repo.read("seen.md").trim(), code.trim(), "{isolation}");
        let events =
            ndjson(&std::fs::read_to_string(repo.path().join(".orch/events.ndjson")).unwrap());
        let commits: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == "commit")
            .filter_map(|e| e["commit"].as_str())
            .collect();
        assert_eq!(commits.first().copied(), Some(code.trim()), "{isolation}");
    }
}

/// Two review agents at once in their shared tree, `good` writing a file while `bad` runs and
/// then failing: `good.md` is `good`'s (committed, `good` ok), `bad` is failed with no file,
/// in both Phase B modes and both isolation modes (old code: every time `good.md` went to
/// `refs/orch/failed/round-1/bad`, not committed, and `good` was `empty`).
#[test]
fn a_review_agent_that_fails_beside_another_does_not_take_its_files() {
    for phase_b in ["besideTests", "afterTests"] {
        for isolation in ["worktree", "shared"] {
            let repo = Repo::new();
            repo.mission(json!({
                "name": "t", "rounds": 1, "phaseB": phase_b, "git": {"isolation": isolation},
                "agents": [
                    {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])},
                    {"name": "good", "phase": "review", "command": agent_cmd(&[
                        "--sleep", "0.2", "--write", "good.md=GOOD", "--sleep", "0.6"])},
                    {"name": "bad", "phase": "review", "command": agent_cmd(&[
                        "--sleep", "0.5", "--exit", "3", "--done"])}
                ]
            }));
            let what = format!("{phase_b}, {isolation}");
            let run = repo.orch(&["run"]).expect(0);
            let log = repo.round_log(1);
            let good = Repo::agent(&log, "good");
            let bad = Repo::agent(&log, "bad");
            assert_eq!(good["status"], "ok", "{what}: {}", run.stderr());
            assert_eq!(good["files"], json!(["good.md"]), "{what}");
            assert_eq!(bad["status"], "failed", "{what}");
            assert_eq!(bad["changedFiles"], 0, "{what}: {bad:#}");
            assert_eq!(repo.read("good.md"), "GOOD\n", "{what}");
            assert_eq!(subjects(&repo)[0], "orch: round 1 review: good", "{what}");
            assert!(!repo.has_ref("refs/orch/failed/round-1/bad"), "{what}");
        }
    }
}

/// The same failing agent writing a file of its own while nobody else changed it keeps that
/// file out: it is taken out of the tree and kept in its ref, as before (this held on the old
/// code too: it guards the other side of the fix).
#[test]
fn a_review_agent_that_fails_beside_another_still_has_its_own_files_kept_aside() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "phaseB": "afterTests",
        "agents": [
            {"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a"])},
            {"name": "quick", "phase": "review", "command": agent_cmd(&["--write", "quick.md=Q"])},
            {"name": "bad", "phase": "review", "command": agent_cmd(&[
                "--sleep", "0.5", "--write", "bad.md=BAD", "--exit", "3", "--done"])}
        ]
    }));
    let run = repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let bad = Repo::agent(&log, "bad");
    assert_eq!(bad["status"], "failed", "{}", run.stderr());
    assert_eq!(bad["changedFiles"], 0, "{bad:#}");
    assert!(!repo.exists("bad.md"));
    assert!(repo.has_ref("refs/orch/failed/round-1/bad"));
    assert_eq!(Repo::agent(&log, "quick")["status"], "ok");
}

/// A review agent that ran beside the tests and again after a per-agent revert: its entry's
/// `costUsd` is its whole spend in the round (both runs; `besideRun.costUsd` is the first's),
/// so the agents' costs add up to the round's, as a script summing them expects, and the
/// round log, the report and `orch status` say the same figure.
#[test]
fn the_agents_costs_add_up_to_the_rounds_when_a_review_agent_ran_again() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            {"name": "good", "phase": "code",
             "command": agent_cmd(&["--cost", "0.1", "--write", "src/good.txt=good"])},
            {"name": "breaker", "phase": "code",
             "command": agent_cmd(&["--cost", "0.2", "--write", "src/app.txt=BROKEN"])},
            {"name": "reviewer", "phase": "review",
             "command": agent_cmd(&["--cost", "0.01", "--write", "docs/review.md=seen"])}
        ],
        "tests": {"command": tests_cmd("0.5")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["revert"]["strategy"], "per-agent", "{log:#}");
    let reviewer = Repo::agent(&log, "reviewer");
    assert_eq!(reviewer["besideRun"]["costUsd"], 0.01, "{reviewer:#}");
    assert_eq!(reviewer["costUsd"], 0.02, "{reviewer:#}");
    let sum: f64 = log["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["costUsd"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - log["costUsd"].as_f64().unwrap()).abs() < 1e-9 && (sum - 0.32).abs() < 1e-9,
        "agents add up to {sum}, the round says {}",
        log["costUsd"]
    );
    let cost_of = |v: &Value, key: &str| {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "reviewer")
            .unwrap_or_else(|| panic!("no reviewer in {v:#}"))["costUsd"]
            .clone()
    };
    let report = repo.orch_json(&["report", "--format", "json"]);
    assert_eq!(cost_of(&report, "agents"), 0.02, "{:#}", report["agents"]);
    let status = repo.orch_json(&["status", "--json"]);
    assert_eq!(cost_of(&status, "agents"), 0.02, "{:#}", status["agents"]);
}

/// The report's "time pipelining hid" counts the review agents' time beside the tests
/// (`timing.beside`), not only the sims': a serial loop would have run them after the tests.
#[test]
fn the_time_phase_b_hid_beside_the_tests_is_in_the_reports_hidden_time() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [
            {"name": "coder", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=code"])},
            {"name": "reviewer", "phase": "review",
             "command": agent_cmd(&["--sleep", "0.5", "--write", "docs/review.md=seen"])}
        ],
        "tests": {"command": tests_cmd("1.5")}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let beside = ms_at(&log, "beside");
    assert!(beside >= 500, "{:#}", log["timing"]);
    let report = repo.orch_json(&["report", "--format", "json"]);
    assert_eq!(
        report["totals"]["hiddenMs"], beside,
        "{:#}",
        report["totals"]
    );
    let round = &report["rounds"][0];
    assert_eq!(round["hidden"]["totalMs"], beside, "{:#}", round["hidden"]);
    assert_eq!(round["hidden"]["phaseBMs"], beside, "{:#}", round["hidden"]);
    assert_eq!(
        ms(&report["totals"]["serialEquivalentMs"]),
        ms(&report["totals"]["wallMs"]) + beside
    );
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(md.contains("## Time pipelining hid"), "{md}");
    assert!(md.contains("- **Pipelining hid:** "), "{md}");
}
