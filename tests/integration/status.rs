//! `orch status` while a run is going: the lock's holder, the round, the phase and the
//! running agents from the events, `--json` too, and `--watch` redrawing until the run ends.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{agent_cmd, Repo};
use serde_json::json;

#[test]
fn status_shows_a_run_in_progress_and_watch_ends_with_it() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "slow", "phase": "code", "timeoutS": 120,
                    "command": agent_cmd(&["--sleep", "4", "--write", "src/s.txt=s"])}]
    }));
    // Before the run: nothing is going.
    let idle = repo.orch_json(&["status", "--json"]);
    assert!(idle["running"].is_null(), "{idle:#}");
    assert!(repo
        .orch(&["status"])
        .expect(0)
        .stdout()
        .starts_with("no run in progress"));

    let mut run = Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let v = repo.orch_json(&["status", "--json"]);
        if v["running"]["agents"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break v;
        }
        assert!(Instant::now() < deadline, "no running agent seen: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let r = &seen["running"];
    assert_eq!(r["pid"], run.id(), "{r:#}");
    assert_eq!(r["round"], 1);
    assert_eq!(r["phase"], "code");
    assert_eq!(r["agents"][0]["name"], "slow");
    assert_eq!(r["agents"][0]["timeoutMs"], 120_000);
    let text = repo.orch(&["status"]).expect(0).stdout();
    assert!(
        text.starts_with(&format!("RUNNING: orch pid {}, round 1 of 1,", run.id())),
        "{text}"
    );
    assert!(text.contains("agent slow (code"), "{text}");
    assert!(text.contains("of 2m00s timeout"), "{text}");

    // --watch redraws until the run ends, then exits by itself.
    let watch = repo.orch(&["status", "--watch"]).expect(0).stdout();
    assert!(watch.contains("RUNNING: orch pid"), "{watch}");
    assert!(watch.contains("no run in progress"), "{watch}");
    assert!(run.wait().unwrap().success());
    let after = repo.orch_json(&["status", "--json"]);
    assert!(after["running"].is_null(), "{after:#}");
    assert_eq!(after["roundsDone"], 1);
}

/// After each round orch rewrites STATE/report.html; while the run goes on it reloads every
/// 30 s, and the copy written when the run ended does not.
#[test]
fn the_live_report_is_rewritten_each_round_and_stops_reloading_at_the_end() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [{"name": "a", "phase": "code",
                    "command": agent_cmd(&["--sleep", "2", "--write", "src/a.txt=a"])}]
    }));
    let mut run = Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let page = repo.pathbuf(".orch/report.html");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut live = None;
    while run.try_wait().unwrap().is_none() {
        // The first page seen: the one after round 1 (round 2 takes 2 s). The last one read
        // before the process ended could be the final page, written just before its exit.
        if live.is_none() {
            live = std::fs::read_to_string(&page).ok();
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let live = live.expect("a live page was written while the run went on");
    assert!(
        live.contains("<meta http-equiv=\"refresh\" content=\"30\"/>"),
        "{live}"
    );
    assert!(live.contains("while the run is going; this page reloads every 30 s."));
    let last = std::fs::read_to_string(&page).unwrap();
    assert!(!last.contains("http-equiv=\"refresh\""), "{last}");
    assert!(last.contains("after the run ended."));
    assert!(last.contains("2 rounds: 2 landed work"), "{last}");
    let doc = roxmltree::Document::parse(last.trim_start_matches("<!DOCTYPE html>\n"))
        .expect("the page parses");
    assert!(doc.descendants().any(|n| n.has_tag_name("svg")));
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(repo.pathbuf(".orch"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("report"))
        .collect();
    assert_eq!(names, ["report.html"]);
}
