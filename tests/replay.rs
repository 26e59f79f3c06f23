//! One round for debugging: `orch show N` reads a round back for a person (and `--json` for
//! scripts); `orch round N` past the next round is refused. The real binary on scratch
//! repositories, after a real three-round run.

mod common;

use common::{agent_cmd, tests_cmd, Repo};
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

    let v: Value =
        serde_json::from_str(&repo.orch(&["show", "2", "--json"]).expect(0).stdout()).unwrap();
    assert_eq!(v["round"], repo.round_log(2));
    let refs: Vec<&str> = v["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["refs/orch/rejected/round-2/b"]);
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
    assert_eq!(names, ["a", "b", "rev"]);
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
