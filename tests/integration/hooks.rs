//! `hooks`: the mission's commands told about the run (`roundEnd`, `attention`, `runEnd`).
//! The real binary on scratch repositories; the hooks are shell one-liners writing outside the
//! repository (a file they left in it would make the next round's tree dirty).

use crate::common::{agent_cmd, gone, processes_with, tests_cmd, Repo};
use serde_json::{json, Value};

fn lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l:?}: {e}"))
        })
        .collect()
}

#[test]
fn hooks_get_round_end_attention_and_run_end_as_json_lines() {
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display();
    let hook = |name: &str| {
        format!(
            "cat >> {o}/{name}.ndjson; echo \"$ORCH_HOOK $ORCH_EVENT round=$ORCH_ROUND mission=$ORCH_MISSION exit=$ORCH_EXIT_CODE\" >> {o}/env.txt; echo \"$ORCH_MESSAGE\" >> {o}/messages.txt"
        )
    };
    repo.mission(json!({
        "name": "night", "rounds": 3, "maxConcurrency": 1, "budgetUsd": 0.3,
        "agents": [
            {"name": "breaker", "phase": "code",
             "command": agent_cmd(&["--cost", "0.2", "--write", "src/app.txt=BROKEN"])},
            {"name": "loser", "phase": "code",
             "command": agent_cmd(&["--cost", "0.2", "--exit", "1"])}
        ],
        "tests": {"command": tests_cmd("0")},
        "hooks": {"roundEnd": hook("roundEnd"), "attention": hook("attention"),
                  "runEnd": hook("runEnd")}
    }));
    let run = repo.orch(&["run"]).expect(3);
    let ends = lines(&out.path().join("roundEnd.ndjson"));
    assert_eq!(ends.len(), 1, "{ends:?}\n{}", run.stderr());
    assert_eq!(ends[0]["event"], "roundEnd");
    assert_eq!(ends[0]["round"], 1);
    assert_eq!(ends[0]["status"], "reverted");
    assert!(ends[0]["ts"].is_string());

    let attention = lines(&out.path().join("attention.ndjson"));
    let kinds: Vec<&str> = attention
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"revert"), "{kinds:?}");
    assert!(kinds.contains(&"stop"), "{kinds:?}");
    let failed = attention
        .iter()
        .find(|e| e["event"] == "agentEnd")
        .unwrap_or_else(|| panic!("no failed agent in {attention:?}"));
    assert_eq!(
        (&failed["agent"], &failed["status"]),
        (&json!("loser"), &json!("failed"))
    );
    let stop = attention.iter().find(|e| e["event"] == "stop").unwrap();
    assert_eq!(stop["exitCode"], 3);

    let end = lines(&out.path().join("runEnd.ndjson"));
    assert_eq!(end.len(), 1);
    assert_eq!(end[0]["exitCode"], 3);

    let env = std::fs::read_to_string(out.path().join("env.txt")).unwrap();
    assert!(
        env.contains("roundEnd roundEnd round=1 mission=night"),
        "{env}"
    );
    assert!(
        env.contains("attention revert round=1 mission=night"),
        "{env}"
    );
    assert!(
        env.contains("runEnd runEnd round= mission=night exit=3"),
        "{env}"
    );
    // In event order: the run's end is told last.
    assert!(
        env.trim_end().lines().last().unwrap().starts_with("runEnd"),
        "{env}"
    );
    let messages = std::fs::read_to_string(out.path().join("messages.txt")).unwrap();
    assert!(
        messages.contains("orch night: round 1: reverted"),
        "{messages}"
    );
    assert_eq!(repo.status(), "", "hooks left files in the repository");
}

#[test]
fn a_hook_that_hangs_or_fails_delays_and_fails_nothing() {
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display();
    // Round 1's roundEnd hook stays alive until round 2's agent has started (it waits for the
    // agent's pid file), then hangs for good. If hooks held up rounds, round 2 could not start
    // before the hook's timeout killed it, and there would be no proof.
    let hang = format!(
        "if [ \"$ORCH_ROUND\" = 1 ]; then echo $$ > {o}/hook.pid; \
         while [ ! -e {o}/round2.pid ]; do sleep 0.05; done; echo alive > {o}/proof; \
         exec sleep 1000; fi"
    );
    repo.mission(json!({
        "name": "t", "rounds": 2, "maxConcurrency": 2,
        "agents": [
            {"name": "a", "phase": "code",
             "command": agent_cmd(&["--round", "1", "--write", "src/a.txt=one",
                                    "--round", "2", "--pid", &format!("{o}/round2.pid"),
                                    "--write", "src/a.txt=two"])},
            {"name": "b", "phase": "code",
             "command": agent_cmd(&["--round", "1", "--exit", "1",
                                    "--round", "2", "--write", "src/b.txt=two"])}
        ],
        "tests": {"command": tests_cmd("0")},
        "hooks": {"roundEnd": hang, "attention": "echo the pager is down >&2; exit 7",
                  "timeoutS": 20}
    }));
    let run = repo.orch(&["run"]).expect(0);
    let err = run.stderr();
    assert_eq!(
        std::fs::read_to_string(out.path().join("proof")).unwrap_or_default(),
        "alive\n",
        "round 2 did not run while round 1's hook was alive\n{err}"
    );
    assert_eq!(repo.round_log(1)["status"], "ok");
    assert_eq!(repo.round_log(2)["status"], "ok");
    assert_eq!(repo.read("src/a.txt"), "one\ntwo\n");
    assert!(
        err.contains("hook attention failed (exit status 7): the pager is down"),
        "{err}"
    );
    assert!(err.contains("hook roundEnd did not finish within"), "{err}");
    let pid = std::fs::read_to_string(out.path().join("hook.pid")).unwrap();
    assert!(gone(&pid), "the hung hook {} outlived orch", pid.trim());
    assert!(processes_with(&format!("{o}/round2.pid")).is_empty());
}

/// A hook whose program does not exist is found before anything is spent, as an agent's or the
/// tests' would be: `orch validate` and `orch run` exit 2 naming the hook's key and the
/// program, and no round runs (it was found only when the hook first fired, a warning then).
#[test]
fn a_hook_whose_program_does_not_exist_is_refused_before_the_run() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=1"])}],
        "hooks": {"roundEnd": "true", "attention": ["orch-no-such-notifier", "--page"]}
    }));
    for cmd in ["validate", "run"] {
        let run = repo.orch(&[cmd]).expect(2);
        let err = run.stderr();
        assert!(
            err.contains("hooks.attention") && err.contains("orch-no-such-notifier"),
            "{cmd}: {err}"
        );
    }
    assert!(!repo.has_round_log(1), "no round ran");
    assert_eq!(repo.git(&["rev-list", "--count", "HEAD"]), "2");
}
