//! Prompt sections with trimming, and incremental tests with flaky retries and a baseline.

use crate::common::{agent_cmd, tests_cmd, Repo};
use serde_json::json;

#[test]
fn an_over_long_section_is_trimmed_with_a_marker_and_an_unreferenced_one_is_never_read() {
    let repo = Repo::new();
    repo.write("docs/brief.md", &format!("HEAD{}TAIL", "x".repeat(5000)));
    repo.write(
        "prompts/a.md",
        "Brief:\n{{brief}}\nStatus: {{status}}\nRound {{round}}\n",
    );
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "sections": {
            "brief": {"file": "docs/brief.md", "maxBytes": 500},
            "status": {"command": ["sh", "-c", "echo all green"]},
            "unused": {"file": "docs/does-not-exist.md"},
            "slow": {"command": ["sh", "-c", "touch never-run; exit 1"]}
        },
        "agents": [{"name": "a", "phase": "code", "prompt": "prompts/a.md",
                    "command": agent_cmd(&["--write", "src/a.txt=x"])}]
    }));
    let run = repo.orch(&["run"]).expect(0);
    let prompt = repo.read(".orch/prompts/round-0001/a.md");
    assert!(
        prompt.contains("HEAD") && prompt.contains("TAIL"),
        "{prompt}"
    );
    assert!(prompt.contains("bytes cut by orch"), "{prompt}");
    assert!(prompt.len() < 800, "{}", prompt.len());
    assert!(prompt.contains("Status: all green"), "{prompt}");
    assert!(!run.stderr().contains("does-not-exist"), "{}", run.stderr());
    assert!(!repo.exists("never-run"));
}

#[test]
fn the_whole_prompt_obeys_max_prompt_bytes_by_cutting_the_largest_section() {
    let repo = Repo::new();
    repo.write("prompts/a.md", "{{big}}\n---\n{{small}}\n");
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxPromptBytes": 3000,
        "sections": {
            "big": {"text": "B".repeat(10000), "maxBytes": 100000},
            "small": {"text": "small section kept whole"}
        },
        "agents": [{"name": "a", "phase": "code", "prompt": "prompts/a.md", "command": agent_cmd(&["--write", "src/a.txt=x"])}]
    }));
    repo.orch(&["run"]).expect(0);
    let prompt = repo.read(".orch/prompts/round-0001/a.md");
    assert!(prompt.len() <= 3000, "{}", prompt.len());
    assert!(prompt.contains("small section kept whole"));
    assert!(prompt.contains("bytes cut by orch"));
}

fn suites_mission(repo: &Repo, agent_write: &str, extra: serde_json::Value) {
    let marker = |name: &str| {
        json!([
            "sh",
            "-c",
            format!("sleep 0.8; echo {name} >> ran.txt; echo '2 passed, 0 failed'")
        ])
    };
    // The baseline (on by default) would add a run of the full command at the base.
    let mut tests = json!({
        "baseline": false,
        "command": ["sh", "-c", "echo full >> ran.txt; echo '9 passed, 0 failed'"],
        "suites": [
            {"name": "ui", "paths": ["src/ui/**"], "command": marker("ui")},
            {"name": "api", "paths": ["src/api/**"], "command": marker("api")},
            {"name": "lint", "always": true, "command": marker("lint")}
        ]
    });
    if let (Some(t), Some(e)) = (tests.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
    repo.write(".gitignore", "ran.txt\n");
    repo.git(&["add", ".gitignore"]);
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", agent_write])}],
        "tests": tests
    }));
}

#[test]
fn changed_paths_select_the_suites_that_run_in_parallel() {
    let repo = Repo::new();
    suites_mission(&repo, "src/ui/button.txt=b", json!({}));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let t = &log["tests"];
    assert_eq!(t["suites"], json!(["lint", "ui"]), "{t:#}");
    assert_eq!(t["passed"], 4);
    let runs = t["suiteRuns"].as_array().unwrap();
    let ui = runs.iter().find(|r| r["name"] == "ui").unwrap();
    assert!(
        ui["reason"].as_str().unwrap().contains("src/ui/button.txt"),
        "{ui}"
    );
    assert!(ui["log"].as_str().unwrap().ends_with("tests-ui.log"));
    let mut ran: Vec<String> = repo.read("ran.txt").lines().map(String::from).collect();
    ran.sort();
    assert_eq!(ran, ["lint", "ui"]);
    // Two 0.8 s suites in parallel: the stage takes about 0.8 s, not 1.6 s.
    let stage = log["timing"]["tests"].as_u64().unwrap();
    assert!(
        stage < 1500,
        "tests stage {stage} ms: the suites did not run in parallel"
    );
}

#[test]
fn a_changed_file_no_suite_covers_runs_the_full_command() {
    let repo = Repo::new();
    suites_mission(&repo, "README.md=changed", json!({}));
    repo.orch(&["run"]).expect(0);
    let t = &repo.round_log(1)["tests"];
    assert_eq!(t["suites"], json!([]));
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("README.md is covered by no suite"),
        "{t}"
    );
    assert_eq!(t["passed"], 9);
    assert_eq!(repo.read("ran.txt"), "full\n");
}

#[test]
fn a_flaky_test_passing_on_retry_is_flagged_not_reverted() {
    let repo = Repo::new();
    let counter = repo.pathbuf("../flaky-counter").display().to_string();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=x"])}],
        "tests": {"retries": 2, "baseline": false, "command": ["sh", "-c",
            format!("n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; if [ $n -lt 2 ]; then echo '0 passed, 1 failed'; exit 1; fi; echo '1 passed, 0 failed'")]}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok");
    assert_eq!(log["tests"]["status"], "passed");
    assert_eq!(log["tests"]["flaky"], true);
    assert_eq!(log["tests"]["attempts"], 2);
    let _ = std::fs::remove_file(&counter);
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(md.contains("lak"), "the report names flaky rounds: {md}");
}

#[test]
fn a_pre_existing_failure_does_not_cause_a_revert() {
    let repo = Repo::new();
    repo.write("src/app.txt", "BROKEN since before orch\n");
    repo.git(&["commit", "-qam", "already broken"]);
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=x"])}],
        "tests": {"command": tests_cmd("0"), "baseline": true}
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["tests"]["status"], "failed");
    assert_eq!(log["tests"]["regression"], false);
    assert_eq!(log["status"], "ok");
    assert_eq!(repo.read("src/a.txt"), "x\n");
    assert_eq!(repo.state()["testBaseline"]["failedCount"], 1);
}

#[test]
fn without_a_baseline_the_same_failure_is_a_regression() {
    let repo = Repo::new();
    repo.write("src/app.txt", "BROKEN since before orch\n");
    repo.git(&["commit", "-qam", "already broken"]);
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=x"])}],
        "tests": {"command": tests_cmd("0"), "baseline": false}
    }));
    repo.orch(&["run"]).expect(0);
    assert_eq!(repo.round_log(1)["status"], "reverted");
}

#[test]
fn dry_run_shows_prompt_sizes_and_what_would_be_trimmed() {
    let repo = Repo::new();
    repo.write("prompts/a.md", "{{big}}\n");
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "sections": {"big": {"text": "B".repeat(3000), "maxBytes": 1000},
                     "cmd": {"command": ["sh", "-c", "touch ran-it"]}},
        "agents": [{"name": "a", "phase": "code", "prompt": "prompts/a.md", "command": agent_cmd(&[])}]
    }));
    let out = repo.orch(&["round", "1", "--dry-run"]).expect(0).stdout();
    assert!(out.contains("trimmed: big (-"), "{out}");
    assert!(!repo.exists(".orch") && !repo.exists("ran-it"));
}
