//! One round for debugging: `orch show N` reads a round back for a person (and `--json` for
//! scripts); `orch round N` past the next round is refused. The real binary on scratch
//! repositories, after a real three-round run.

use crate::common::{agent_cmd, tests_cmd, Repo};
use serde_json::{json, Value};

/// Three rounds of two code agents and a reviewer; in round 2 `b` breaks the tests and its
/// change is taken out (per-agent revert). `a` fails whenever `flag` exists (outside the
/// repository), so a test can make it behave differently on a replay.
fn three_rounds(flag: &std::path::Path) -> Repo {
    let repo = Repo::new();
    let flag = flag.display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 3, "maxConcurrency": 2,
        "agents": [
            {"name": "a", "phase": "code", "model": "m1",
             "command": agent_cmd(&["--fail-if", &flag, "--cost", "0.1", "--write", "src/a.txt=a"])},
            {"name": "b", "phase": "code",
             "command": agent_cmd(&["--sleep", "0.2", "--cost", "0.05",
                                    "--round", "2", "--write", "src/b.txt=BROKEN",
                                    "--always", "--write", "src/b.txt=b"])},
            {"name": "rev", "phase": "review", "command": agent_cmd(&["--write", "review.md=ok"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    repo.orch(&["run"]).expect(0);
    repo
}

#[test]
fn show_prints_one_round_for_a_person_and_as_json() {
    let outside = tempfile::tempdir().unwrap();
    let repo = three_rounds(&outside.path().join("flag"));
    let text = repo.orch(&["show", "2"]).expect(0).stdout();
    for want in [
        "round 2 of mission t: ok",
        "a (code): ok",
        "files: src/a.txt",
        "model m1",
        "b (code): ok",
        "its change broke the tests and was taken out",
        "revert: per-agent, culprits: b",
        "extra run 1: without b: passed",
        "refs/orch/rejected/round-2/b",
        "git show --stat refs/orch/rejected/round-2/b",
        "rev (review): ok",
        "round log: .orch/rounds/round-0002.json",
        ".orch/logs/round-0002/a.log",
        ".orch/prompts/round-0002/a.md",
        "decisions",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    // Round 3's refs are not round 2's.
    assert!(!text.contains("round-3"), "{text}");

    let v = repo.orch_json(&["show", "2", "--json"]);
    assert_eq!(v["round"], repo.round_log(2));
    let refs: Vec<&str> = v["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    // rev ran beside the tests (the default), and the per-agent revert took b out of the tree
    // it reviewed: its work is kept aside.
    assert_eq!(
        refs,
        [
            "refs/orch/rejected/round-2/b",
            "refs/orch/review-aside/round-2/rev"
        ]
    );
    assert_eq!(
        v["refs"][0]["commit"].as_str().unwrap(),
        repo.git(&["rev-parse", "refs/orch/rejected/round-2/b"])
    );
    assert!(v["logs"].as_array().unwrap().iter().any(|l| l
        == ".orch/logs/round-0002/revert-check-1/tests.log"
        || l.as_str()
            .unwrap()
            .starts_with(".orch/logs/round-0002/revert-check-1/")));

    let none = repo.orch(&["show", "7"]).expect(2);
    assert!(
        none.stderr().contains("no log of round 7")
            && none.stderr().contains("the last round is 3"),
        "{}",
        none.stderr()
    );
}

#[test]
fn a_round_past_the_next_one_is_refused_naming_the_last_round() {
    let outside = tempfile::tempdir().unwrap();
    let repo = three_rounds(&outside.path().join("flag"));
    let head = repo.head();
    let state = repo.read(".orch/state.json");
    let run = repo.orch(&["round", "9"]).expect(2);
    assert!(
        run.stderr().contains("round 9: the last round is 3")
            && run.stderr().contains("`orch round 4` runs the next one"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo.head(), head);
    assert_eq!(repo.read(".orch/state.json"), state);
    assert!(!repo.has_round_log(9));
    repo.orch(&["round", "9", "--dry-run"]).expect(2);

    // A sequence has no one round N: the message says so rather than misreading the file.
    repo.write(
        "seq.json",
        r#"{"name": "s", "sequence": [{"mission": "orch.json", "rounds": 1}]}"#,
    );
    let run = repo.orch(&["round", "2", "-m", "seq.json"]).expect(2);
    assert!(
        run.stderr().contains("is a sequence of missions"),
        "{}",
        run.stderr()
    );
}

/// FNV-1a 64, the hash `round-NNNN.inputs.json` gives each prompt.
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

#[test]
fn each_round_records_what_it_started_from() {
    let outside = tempfile::tempdir().unwrap();
    let repo = three_rounds(&outside.path().join("flag"));
    let log = repo.round_log(2);
    let inputs: Value =
        serde_json::from_str(&repo.read(".orch/rounds/round-0002.inputs.json")).unwrap();
    assert_eq!(inputs["round"], 2);
    assert_eq!(inputs["base"], log["base"]);
    assert_eq!(inputs["base"], repo_round_commit(&repo, 1));
    // The state as it was before round 2: one round done, a's cost so far.
    assert_eq!(inputs["state"]["lastRound"], 1);
    assert_eq!(inputs["state"]["agents"]["a"]["runs"], 1);
    assert_eq!(inputs["mission"]["name"], "t");
    assert_eq!(inputs["maxConcurrency"], 2);
    let decisions: Vec<&str> = inputs["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["included", "included", "included"]);
    let jobs = inputs["jobs"].as_array().unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j["agent"].as_str().unwrap()).collect();
    // rev ran beside the tests, then again after the per-agent revert took b out (the
    // default): two jobs.
    assert_eq!(names, ["a", "b", "rev", "rev"]);
    for j in jobs {
        let entry = Repo::agent(&log, j["agent"].as_str().unwrap());
        assert_eq!(j["model"], entry["model"], "{j}");
        assert_eq!(j["timeoutMs"], entry["timeoutMs"], "{j}");
        let prompt =
            std::fs::read(repo.pathbuf(".orch").join(j["prompt"].as_str().unwrap())).unwrap();
        assert_eq!(j["promptHash"], fnv1a64(&prompt), "{j}");
        assert_eq!(j["promptBytes"], prompt.len(), "{j}");
    }
    // The report and the show still read the rounds, and show names the inputs file.
    repo.orch(&["report", "--format", "json"]).expect(0);
    let text = repo.orch(&["show", "2"]).expect(0).stdout();
    assert!(
        text.contains("inputs: .orch/rounds/round-0002.inputs.json"),
        "{text}"
    );
}

/// The commit round `n` made.
fn repo_round_commit(repo: &Repo, n: u32) -> Value {
    repo.round_log(n)["commit"].clone()
}

/// Every file under `dir` with its bytes (empty when `dir` does not exist).
fn files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// What a replay must leave exactly as it was: the branch and HEAD, the working tree, every
/// ref, the live state, queue and event log, and round 2's log, inputs, logs and prompts.
#[derive(Debug, PartialEq)]
struct Live {
    branch: String,
    head: String,
    status: String,
    refs: String,
    state: String,
    tasks: String,
    events: String,
    round_files: std::collections::BTreeMap<String, Vec<u8>>,
    logs: std::collections::BTreeMap<String, Vec<u8>>,
    prompts: std::collections::BTreeMap<String, Vec<u8>>,
}

fn live(repo: &Repo) -> Live {
    Live {
        branch: repo.git(&["symbolic-ref", "HEAD"]),
        head: repo.head(),
        status: repo.status(),
        refs: repo
            .git(&["for-each-ref", "--format=%(objectname) %(refname)"])
            .lines()
            .filter(|l| !l.contains("refs/orch/replay/"))
            .collect::<Vec<_>>()
            .join("\n"),
        state: repo.read(".orch/state.json"),
        tasks: repo.read(".orch/tasks.json"),
        events: repo.read(".orch/events.ndjson"),
        round_files: files(&repo.pathbuf(".orch/rounds")),
        logs: files(&repo.pathbuf(".orch/logs")),
        prompts: files(&repo.pathbuf(".orch/prompts")),
    }
}

#[test]
fn a_replay_runs_round_2_again_beside_the_branch_and_touches_nothing_live() {
    let outside = tempfile::tempdir().unwrap();
    let repo = three_rounds(&outside.path().join("flag"));
    let before = live(&repo);
    let run = repo.orch(&["round", "2"]).expect(0);
    assert_eq!(live(&repo), before, "the replay changed something live");
    let out = run.stdout();
    assert!(out.contains("the same outcome"), "{out}\n{}", run.stderr());
    assert!(out.contains("round 2 and its replay 1"), "{out}");
    assert!(
        !out.contains("taken from today"),
        "everything came from the record: {out}"
    );
    assert!(
        out.contains("culprits  b") && out.contains("failed (3 passed, 1 failed)"),
        "{out}"
    );
    // The replay's record is in its own folder, its refs in their own namespace.
    let dir = ".orch/replays/round-0002-1";
    let log: Value =
        serde_json::from_str(&repo.read(&format!("{dir}/rounds/round-0002.json"))).unwrap();
    let original = repo.round_log(2);
    assert_eq!(log["base"], original["base"]);
    assert_eq!(log["round"], 2);
    assert_eq!(log["revert"]["culprits"], json!(["b"]));
    for name in ["a", "b", "rev"] {
        assert_eq!(
            Repo::agent(&log, name)["status"],
            Repo::agent(&original, name)["status"]
        );
        assert!(repo.exists(&format!("{dir}/logs/round-0002/{name}.log")));
        // The recorded prompt, byte for byte.
        assert_eq!(
            repo.read(&format!("{dir}/prompts/round-0002/{name}.md")),
            repo.read(&format!(".orch/prompts/round-0002/{name}.md"))
        );
    }
    // rev's run again after the revert had its own prompt, given again as recorded.
    assert_eq!(
        repo.read(&format!("{dir}/prompts/round-0002/rev.2.md")),
        repo.read(".orch/prompts/round-0002/rev.2.md")
    );
    let kept = repo.git(&["rev-parse", "refs/orch/replay/round-2-1/rejected/round-2/b"]);
    assert!(repo
        .git(&["show", &format!("{kept}:src/b.txt")])
        .contains("BROKEN"));
    // The replay's commits hold a's work on round 2's base, not on HEAD, and rev's run again
    // after the per-agent revert took b out; its run beside the tests is kept aside in the
    // replay's refs, as in the round.
    let commit = repo.git(&["rev-parse", "refs/orch/replay/round-2-1/commit"]);
    assert_eq!(log["commit"].as_str().unwrap(), commit);
    assert_eq!(
        repo.git(&["log", "--format=%s", "-2", &commit]),
        "orch: round 2 review: rev\norch: round 2 code: a"
    );
    let parent = repo.git(&["rev-parse", &format!("{commit}~2")]);
    repo.git(&[
        "rev-parse",
        "refs/orch/replay/round-2-1/review-aside/round-2/rev",
    ]);
    assert_eq!(parent, original["base"].as_str().unwrap());
    // Its scratch worktrees are gone.
    assert!(!repo.exists(&format!("{dir}/tree")));
    let worktrees = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(!worktrees.contains("replays"), "{worktrees}");

    // Shown like any round.
    let shown = repo
        .orch(&["show", "2", "--replay", "1"])
        .expect(0)
        .stdout();
    assert!(
        shown.contains("round 2 (replay 1)")
            && shown.contains("refs/orch/replay/round-2-1/rejected/round-2/b"),
        "{shown}"
    );
    let v = repo.orch_json(&["show", "2", "--replay", "1", "--json"]);
    assert_eq!(v["round"], log);
    repo.orch(&["show", "2", "--replay", "2"]).expect(2);
    // The live round 2 still shows no replay refs.
    let shown = repo.orch(&["show", "2"]).expect(0).stdout();
    assert!(!shown.contains("refs/orch/replay/"), "{shown}");
}

#[test]
fn a_replay_whose_agent_behaves_differently_exits_1_naming_it() {
    let outside = tempfile::tempdir().unwrap();
    let flag = outside.path().join("flag");
    let repo = three_rounds(&flag);
    let before = live(&repo);
    // What a steers by, outside the repository, has changed since round 2.
    std::fs::write(&flag, "fail\n").unwrap();
    let run = repo.orch(&["round", "2"]).expect(1);
    let out = run.stdout();
    assert!(out.contains("the outcome differs"), "{out}");
    assert!(out.contains("a: status ok -> failed"), "{out}");
    assert!(out.contains("a: changed files 1 -> 0"), "{out}");
    assert_eq!(live(&repo), before);

    // --agent b replays b alone: b did as it did, so the outcome compared is the same.
    let run = repo
        .orch(&["round", "2", "--agent", "b", "--json"])
        .expect(0);
    let v: Value = serde_json::from_str(&run.stdout()).unwrap();
    let c = &v["comparison"];
    assert_eq!(c["replay"], 2);
    assert_eq!(c["wholeRound"], false);
    let agents: Vec<&str> = c["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["b"]);
    let log: Value =
        serde_json::from_str(&repo.read(".orch/replays/round-0002-2/rounds/round-0002.json"))
            .unwrap();
    let ran: Vec<&str> = log["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["b"]);
    assert_eq!(live(&repo), before);
    repo.orch(&["round", "2", "--agent", "nobody"]).expect(2);
}

#[test]
fn a_replay_dry_run_prints_the_recorded_plan_and_keep_keeps_the_worktree() {
    let outside = tempfile::tempdir().unwrap();
    let repo = three_rounds(&outside.path().join("flag"));
    let before = live(&repo);
    let plan = repo.orch(&["round", "2", "--dry-run"]).expect(0).stdout();
    assert!(
        plan.contains("replay 1 of round 2") && plan.contains("prompts/round-0002/a.md"),
        "{plan}"
    );
    assert!(plan.contains("m1") && plan.contains("30m00s"), "{plan}");
    let fresh = repo
        .orch(&["round", "2", "--dry-run", "--fresh"])
        .expect(0)
        .stdout();
    assert!(
        fresh.contains("the mission, the plan and the prompts are today's (--fresh)"),
        "{fresh}"
    );
    assert!(!repo.exists(".orch/replays"), "a dry run leaves no trace");
    assert_eq!(live(&repo), before);

    let out = repo.orch(&["round", "3", "--keep"]).expect(0).stdout();
    let tree = repo.pathbuf(".orch/replays/round-0003-1/tree");
    assert!(
        out.contains(&format!("worktree kept: {}", tree.display())),
        "{out}"
    );
    // The kept tree is round 3 as the replay left it: its commit, a's and b's work in it.
    let g = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(&tree)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(
        g(&["rev-parse", "HEAD"]),
        repo.git(&["rev-parse", "refs/orch/replay/round-3-1/commit"])
    );
    assert!(std::fs::read_to_string(tree.join("src/b.txt"))
        .unwrap()
        .ends_with("b\n"));
    assert_eq!(live(&repo), before);
}

#[test]
fn a_round_logged_before_inputs_were_recorded_replays_saying_what_it_took_from_today() {
    let outside = tempfile::tempdir().unwrap();
    let repo = three_rounds(&outside.path().join("flag"));
    std::fs::remove_file(repo.pathbuf(".orch/rounds/round-0002.inputs.json")).unwrap();
    let run = repo.orch(&["round", "2"]).expect(0);
    let out = run.stdout();
    assert!(
        out.contains("taken from today: the tracking state and the task queue are today's"),
        "{out}"
    );
    assert!(
        out.contains("taken from today: the mission is today's"),
        "{out}"
    );
    assert!(out.contains("the same outcome"), "{out}");
}

#[test]
fn budget_caps_what_a_replay_spends_and_fresh_replans_from_todays_mission() {
    let outside = tempfile::tempdir().unwrap();
    let repo = three_rounds(&outside.path().join("flag"));
    let before = live(&repo);
    // a costs $0.10 and b $0.05, side by side: past $0.01, Phase B does not start.
    let run = repo.orch(&["round", "2", "--budget", "0.01"]).expect(1);
    let out = run.stdout();
    assert!(
        out.contains("rev: ran in the round, not in the replay"),
        "{out}"
    );
    let log: Value =
        serde_json::from_str(&repo.read(".orch/replays/round-0002-1/rounds/round-0002.json"))
            .unwrap();
    assert!(
        log["stopReason"]
            .as_str()
            .unwrap_or_default()
            .contains("budget reached"),
        "{log:#}"
    );
    assert_eq!(live(&repo), before);

    // --fresh: today's mission plans and renders; the same mission, so the same outcome.
    let run = repo.orch(&["round", "2", "--fresh"]).expect(0);
    assert!(run.stdout().contains("(--fresh)"), "{}", run.stdout());
    assert!(
        run.stdout().contains("the same outcome"),
        "{}",
        run.stdout()
    );
    assert_eq!(live(&repo), before);
}
