//! Provider limits and permanent CLI errors, end to end: the real binary on scratch
//! repositories, with the fixture agent printing what the real CLIs printed
//! (fixtures/cli-output/real/, recorded from Claude Code 2.1.332 against the mock model API).
//! The agents are marked `"cli": "claude"`, so the Claude adapter reads them and they share one
//! provider, as real `claude` agents would.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{agent_cmd, Repo};
use serde_json::{json, Value};

fn recorded(name: &str) -> String {
    format!(
        "{}/fixtures/cli-output/real/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A fake Claude agent: the options are the fixture agent's, read by the Claude adapter.
fn claude(name: &str, args: &[&str]) -> Value {
    json!({"name": name, "phase": "code", "cli": "claude", "models": ["small", "big"],
           "escalateAfter": 1, "command": agent_cmd(args)})
}

fn events(repo: &Repo) -> Vec<Value> {
    repo.read(".orch/events.ndjson")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn a_rate_limited_run_waits_and_runs_again_in_the_same_round() {
    let repo = Repo::new();
    let counter = repo.pathbuf("../a-runs").display().to_string();
    let _ = std::fs::remove_file(&counter);
    let limited = recorded("claude-429.stdout");
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "limits": {"backoffS": 0.4},
        "stop": {"afterEmptyRounds": 1},
        "agents": [claude("a", &[
            "--first", &counter, "2", "--cat", &limited, "--no-json", "--exit", "1",
            "--later", "--write", "src/a.txt=a", "--cost", "0.01"])]
    }));
    let base = repo.head();
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    // One entry: the run that got through, with the two limited runs before it.
    let agents = log["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{log:#}");
    let a = &agents[0];
    assert_eq!(a["status"], "ok");
    assert_eq!(
        a["model"], "small",
        "escalated although only limited: {a:#}"
    );
    let runs = a["limitedRuns"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{a:#}");
    for r in runs {
        assert_eq!(r["cause"], "rateLimited");
        assert!(
            r["error"].as_str().unwrap().contains("429"),
            "the CLI's words: {r}"
        );
    }
    // The waits are their own figure, not overhead: at least the two halves of the backoff.
    let t = &log["timing"];
    let waited = t["waited"].as_u64().unwrap();
    assert!(waited >= 200 + 400, "waited {waited}: {t}");
    assert_eq!(
        t["overhead"].as_u64().unwrap(),
        t["total"].as_u64().unwrap()
            - t["phaseA"].as_u64().unwrap()
            - t["phaseB"].as_u64().unwrap()
            - t["tests"].as_u64().unwrap()
            - waited
    );
    // One commit, the agent's work; no escalation; no stall count.
    assert_eq!(
        repo.git(&["rev-list", "--count", &format!("{base}..HEAD")]),
        "1"
    );
    assert_eq!(repo.read("src/a.txt"), "a\n");
    let ev = events(&repo);
    assert_eq!(of(&ev, "limitWait").len(), 2, "{ev:#?}");
    assert_eq!(of(&ev, "limitResume").len(), 2);
    assert!(of(&ev, "escalation").is_empty(), "{ev:#?}");
    let wait = of(&ev, "limitWait")[0];
    assert_eq!(wait["provider"], "anthropic");
    assert_eq!(wait["agents"], json!(["a"]));
    assert_eq!(wait["cause"], "rateLimited");
    let state = repo.state();
    assert_eq!(state["agents"]["a"]["modelIndex"], 0);
    assert_eq!(state["agents"]["a"]["consecutiveFailures"], 0);
    assert_eq!(state["emptyRoundsInARow"], 0);
    let _ = std::fs::remove_file(&counter);
}

#[test]
fn an_auth_failure_stops_the_run_with_exit_6_and_starts_no_other_agent() {
    let repo = Repo::new();
    let b_ran = repo.pathbuf("../b-ran").display().to_string();
    let _ = std::fs::remove_file(&b_ran);
    repo.mission(json!({
        "name": "t", "rounds": 3, "maxConcurrency": 1,
        "agents": [
            claude("a", &["--cat", &recorded("claude-401.stdout"), "--no-json", "--exit", "1"]),
            claude("b", &["--pid", &b_ran, "--write", "src/b.txt=b"])
        ]
    }));
    let run = repo.orch(&["run"]).expect(6);
    let err = run.stderr();
    assert!(err.contains("agent a"), "{err}");
    assert!(
        err.contains("Invalid API key · Fix external API key"),
        "{err}"
    );
    assert!(err.contains("ANTHROPIC_API_KEY"), "the fix: {err}");
    assert!(!std::path::Path::new(&b_ran).exists(), "b started");
    let log = repo.round_log(1);
    assert_eq!(Repo::agent(&log, "a")["cause"], "auth");
    assert_eq!(Repo::agent(&log, "b")["status"], "cancelled");
    assert!(!repo.has_round_log(2), "a second round ran");
    // The round did not finish: the next run (once the key is fixed) runs it again.
    assert_eq!(repo.state()["lastRound"], 0);
    let ev = events(&repo);
    assert!(of(&ev, "stop")
        .iter()
        .any(|s| s["exitCode"] == 6 && s["reason"].as_str().unwrap().contains("auth")));
}

/// Gemini CLI in a folder it does not trust (the real 0.61.0's stderr and exit 55, replayed):
/// cause `untrustedFolder`, not `exit`; a run of it would fail the same way every round, so it
/// stops like `auth` (exit 6), the console naming the fix (`--skip-trust`), and it is not
/// counted against the agent (no streak, no escalation).
#[test]
fn an_untrusted_folder_stops_the_run_naming_the_fix() {
    let repo = Repo::new();
    let replay = format!(
        "cat '{}' >&2; exit \"$(cat '{}')\"",
        recorded("gemini-untrusted.stderr"),
        recorded("gemini-untrusted.exit")
    );
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [{"name": "g", "phase": "code", "cli": "gemini",
                    "models": ["gemini-2.5-flash", "gemini-2.5-pro"], "escalateAfter": 1,
                    "command": ["sh", "-c", replay]}]
    }));
    let run = repo.orch(&["run"]).expect(6);
    let err = run.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("round 1: g failed"))
        .unwrap_or_else(|| panic!("no console line for g: {err}"));
    assert!(
        line.contains("(untrustedFolder: Gemini CLI is not running in a trusted directory"),
        "{line}"
    );
    let stops: Vec<&str> = err.lines().filter(|l| l.contains("Fix:")).collect();
    assert_eq!(stops.len(), 1, "the stop printed once: {err}");
    let stop = stops[0];
    assert!(stop.contains("orch: stopping: agent g (gemini)"), "{stop}");
    assert!(
        stop.contains("untrustedFolder") && stop.contains("Fix: add --skip-trust"),
        "{stop}"
    );
    let log = repo.round_log(1);
    let g = Repo::agent(&log, "g");
    assert_eq!(g["cause"], "untrustedFolder", "{g:#}");
    assert!(!repo.has_round_log(2), "a second round ran");
    let state = repo.state();
    assert_eq!(state["agents"]["g"]["consecutiveFailures"], 0, "{state:#}");
    assert_eq!(state["agents"]["g"]["modelIndex"], 0, "{state:#}");
}

#[test]
fn no_wait_exits_75_at_once_with_the_state_saved() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "limits": {"backoffS": 600},
        "agents": [claude("a", &["--cat", &recorded("claude-529.stdout"), "--no-json", "--exit", "1"])]
    }));
    let t0 = Instant::now();
    let run = repo.orch(&["run", "--no-wait"]).expect(75);
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "it waited: {:?}",
        t0.elapsed()
    );
    assert!(run.stderr().contains("--no-wait"), "{}", run.stderr());
    let log = repo.round_log(1);
    assert_eq!(Repo::agent(&log, "a")["cause"], "overloaded");
    assert_eq!(log["status"], "interrupted");
    let state = repo.state();
    assert_eq!(state["lastRound"], 0);
    assert_eq!(state["limits"]["anthropic"]["cause"], "overloaded");
    // The hold outlives the run: the next --no-wait run starts no agent of the provider.
    repo.orch(&["run", "--no-wait"]).expect(75);
    let log = repo.round_log(1);
    assert_eq!(Repo::agent(&log, "a")["status"], "cancelled", "{log:#}");
}

#[test]
fn a_wait_beyond_max_wait_exits_75_and_the_next_run_resumes() {
    let repo = Repo::new();
    let counter = repo.pathbuf("../a-runs-maxwait").display().to_string();
    let _ = std::fs::remove_file(&counter);
    let agent = claude(
        "a",
        &[
            "--first",
            &counter,
            "1",
            "--cat",
            &recorded("claude-429.stdout"),
            "--no-json",
            "--exit",
            "1",
            "--later",
            "--write",
            "src/a.txt=a",
        ],
    );
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "limits": {"backoffS": 4, "maxWaitS": 1},
        "agents": [agent.clone()]
    }));
    let run = repo.orch(&["run"]).expect(75);
    assert!(run.stderr().contains("limits.maxWaitS"), "{}", run.stderr());
    assert_eq!(repo.state()["lastRound"], 0);
    assert!(repo.state()["limits"]["anthropic"]["until"].is_string());
    // Allowed a longer wait, the next run waits out what is left of the hold and goes on.
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "limits": {"backoffS": 4, "maxWaitS": 60},
        "agents": [agent]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    assert_eq!(Repo::agent(&log, "a")["status"], "ok");
    assert!(log["timing"]["waited"].as_u64().unwrap() > 0, "{log:#}");
    assert_eq!(repo.read("src/a.txt"), "a\n");
    assert_eq!(repo.state()["lastRound"], 1);
    assert!(repo.state().get("limits").is_none());
    // The first, limited, round log is kept aside.
    assert!(repo.exists(".orch/rounds/round-0001.prev-1.json"));
    let _ = std::fs::remove_file(&counter);
}

#[test]
fn a_denied_command_is_recorded_and_a_run_that_changed_nothing_fails() {
    let repo = Repo::new();
    let denied = recorded("claude-denied.stdout");
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "agents": [
            claude("a", &["--cat", &denied, "--no-json"]),
            claude("b", &["--cat", &denied, "--no-json", "--write", "src/b.txt=b"])
        ]
    }));
    let run = repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "a");
    assert_eq!(a["status"], "failed");
    assert_eq!(a["cause"], "permissionDenied");
    let want = json!([{"tool": "Bash", "command": "cargo test --quiet"}]);
    assert_eq!(a["permissionDenials"], want);
    // b changed a file: it worked, and the denial is recorded and warned about.
    let b = Repo::agent(&log, "b");
    assert_eq!(b["status"], "ok");
    assert_eq!(b["permissionDenials"], want);
    assert!(
        run.stderr().contains("denied Bash(cargo test --quiet)"),
        "{}",
        run.stderr()
    );
}

#[test]
fn start_spacing_keeps_two_starts_on_one_provider_apart() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "limits": {"startSpacingMs": 800},
        "agents": [
            claude("a", &["--write", "src/a.txt=a"]),
            claude("b", &["--write", "src/b.txt=b"])
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let start = |n: &str| Repo::agent(&log, n)["startMs"].as_u64().unwrap();
    let (a, b) = (start("a"), start("b"));
    // 800 ms apart, less the few ms between the start and its `startMs` reading.
    assert!(a.abs_diff(b) >= 700, "starts {a} and {b} ms: {log:#}");
}

#[test]
fn sigint_during_a_wait_exits_130_promptly() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "limits": {"backoffS": 600},
        "agents": [claude("a", &["--cat", &recorded("claude-429.stdout"), "--no-json", "--exit", "1"])]
    }));
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["run"])
        .current_dir(repo.path())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    // The wait is visible in the journal while it lasts.
    let t0 = Instant::now();
    let journal = loop {
        // The journal lives in orch's private folder under the git common dir.
        let text = std::fs::read_dir(repo.path().join(".git/orch"))
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|d| std::fs::read_to_string(d.path().join("journal.json")).ok())
            .unwrap_or_default();
        if text.contains("limitWait") {
            break text;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no wait in the journal: {}",
            std::fs::read_to_string(out.path().join("stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(journal.contains("anthropic"), "{journal}");
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t1.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("orch kept waiting after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(repo.round_log(1)["status"], "interrupted");
}

#[test]
fn an_agent_whose_budget_is_spent_by_its_limited_runs_is_not_run_again_after_the_wait() {
    // Two agents of one provider hit its rate limit; what a limited run cost is counted (here
    // through ORCH_RESULT_FILE, beside the CLI's own 429 result, which says $0). `wait` has
    // $0.15: its first limited run costs $0.10, so it waits and runs again, and that run's
    // $0.10 spends its budget: after it, no wait and no run again. `spent` has $0.05: its
    // first limited run costs $0.10, so it never waits. `free` keeps the next round going.
    let repo = Repo::new();
    let dir = tempfile::tempdir().unwrap();
    let counter = |n: &str| dir.path().join(n).display().to_string();
    let limited = recorded("claude-429.stdout");
    let limited_run = |name: &str, budget: f64| {
        let mut a = claude(
            name,
            &[
                "--first",
                &counter(name),
                "5",
                "--cat",
                &limited,
                "--no-json",
                "--cost",
                "0.1",
                "--result",
                "limited",
                "--exit",
                "1",
                "--later",
                "--write",
                &format!("src/{name}.txt=x"),
                "--cost",
                "0.01",
            ],
        );
        a["budgetUsd"] = json!(budget);
        a
    };
    repo.mission(json!({
        "name": "t", "rounds": 2,
        // A hold long enough for `free` to end first even on a loaded machine: the held run
        // then starts when nothing else runs, which is what a `limitWait` is (a hold that
        // ends while another agent still runs starts the held one beside it, with no wait;
        // with 0.3 s a slow `free` made that happen under load, and the test saw no wait).
        "limits": {"backoffS": 1.5},
        "agents": [
            limited_run("wait", 0.15),
            limited_run("spent", 0.05),
            {"name": "free", "phase": "code", "command": agent_cmd(&["--write", "src/free.txt=$ORCH_ROUND"])}
        ]
    }));
    let run = repo.orch(&["run"]).expect(0);
    let runs = |n: &str| {
        std::fs::read_to_string(counter(n))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(runs("wait"), "2", "{}", run.stderr());
    assert_eq!(runs("spent"), "1", "{}", run.stderr());
    let log = repo.round_log(1);
    let wait = Repo::agent(&log, "wait");
    assert_eq!(
        (&wait["status"], &wait["cause"]),
        (&json!("failed"), &json!("rateLimited")),
        "{wait:#}"
    );
    assert_eq!(
        wait["limitedRuns"].as_array().map_or(0, Vec::len),
        1,
        "{wait:#}"
    );
    assert_eq!(wait["costUsd"], 0.1, "{wait:#}");
    assert!(
        wait["error"]
            .as_str()
            .unwrap()
            .contains("not run again: its budgetUsd is spent"),
        "{wait:#}"
    );
    let spent = Repo::agent(&log, "spent");
    assert!(spent.get("limitedRuns").is_none(), "{spent:#}");
    assert!(
        spent["error"]
            .as_str()
            .unwrap()
            .contains("not run again: its budgetUsd is spent"),
        "{spent:#}"
    );
    // One wait, for the agent that could still run; none after the run that spent its budget.
    let evs = events(&repo);
    let waits = of(&evs, "limitWait");
    assert_eq!(waits.len(), 1, "{waits:#?}");
    assert_eq!(waits[0]["agents"], json!(["wait"]), "{:#}", waits[0]);
    let state = repo.state();
    assert_eq!(state["agents"]["wait"]["costUsd"], 0.2);
    assert_eq!(state["agents"]["spent"]["costUsd"], 0.1);
    // The next round's plan: both `over budget`, neither started.
    let log2 = repo.round_log(2);
    for name in ["wait", "spent"] {
        let d = log2["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["agent"] == name)
            .unwrap();
        assert_eq!(d["decision"], "over budget", "{d}");
        assert!(!log2["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == name));
    }
    assert_eq!(runs("wait"), "2");
    assert_eq!(Repo::agent(&log2, "free")["status"], "ok");
}

#[test]
fn agents_held_back_by_a_limit_start_when_the_hold_ends_not_when_the_pool_drains() {
    // Two slots. `slow` (its own provider) works 4 s. `a` (anthropic) hits a 429 at once; `b`
    // (anthropic) is next in the queue. The hold is set before `b` may start, so `b` does not
    // start into the limit; both wait out the hold (backoff 0.4 s: at most 0.4 s) in the pool,
    // beside `slow`, and run then, seconds before `slow` ends: no round-level wait at all.
    let repo = Repo::new();
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("a-runs").display().to_string();
    let limited = recorded("claude-429.stdout");
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "limits": {"backoffS": 0.4},
        "agents": [
            {"name": "slow", "phase": "code",
             "command": agent_cmd(&["--sleep", "4", "--write", "src/slow.txt=s"])},
            claude("a", &["--first", &counter, "1", "--cat", &limited, "--no-json", "--exit", "1",
                          "--later", "--write", "src/a.txt=a", "--cost", "0.01"]),
            claude("b", &["--write", "src/b.txt=b", "--cost", "0.01"]),
        ]
    }));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    let ms = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v:#}"));
    let slow = Repo::agent(&log, "slow");
    let slow_end = ms(slow, "startMs") + ms(slow, "elapsedMs");
    let a = Repo::agent(&log, "a");
    let b = Repo::agent(&log, "b");
    assert_eq!((&a["status"], &b["status"]), (&json!("ok"), &json!("ok")));
    let limited_runs = a["limitedRuns"].as_array().expect("a was limited once");
    assert_eq!(limited_runs.len(), 1, "{a:#}");
    let limit_end = ms(&limited_runs[0], "startMs") + ms(&limited_runs[0], "elapsedMs");
    for x in [a, b] {
        // Held back: started after the limit, with its hold recorded, and long before `slow`
        // ended (old behaviour: after it, > 4 s in).
        assert!(ms(x, "startMs") >= limit_end, "{x:#}");
        assert!(ms(x, "heldMs") > 0, "{x:#}");
        assert!(
            ms(x, "startMs") + 1500 < slow_end,
            "started {} ms in, slow ended at {slow_end}: {log:#}",
            ms(x, "startMs")
        );
    }
    // The hold (at least half the 0.4 s backoff) was set before `a`'s slot went to `b`.
    assert!(
        ms(b, "startMs") >= limit_end + 190,
        "b started {} ms in, inside the hold from {limit_end}: {log:#}",
        ms(b, "startMs")
    );
    // The hold was waited out beside `slow`: the round never waited on it.
    assert_eq!(log["timing"]["waited"].as_u64().unwrap_or(0), 0, "{log:#}");
    assert!(of(&events(&repo), "limitWait").is_empty());
    for f in ["slow", "a", "b"] {
        assert!(repo.exists(&format!("src/{f}.txt")), "{f}'s change landed");
    }
}
