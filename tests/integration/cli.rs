//! The command line as scripts, CI and people meet it: `--json` on stdout, GitHub Actions
//! mode, the demo, `--dry-run` leaving no trace, completions, the man page, help and errors.
//! The real binary on scratch repositories, off a terminal (the tests' stderr is a pipe).

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{agent_cmd, sim_cmd, tests_cmd, Repo};
use serde_json::{json, Value};

/// Every stdout line parsed as one JSON object; panics on any line that is not.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object: {l:?}: {e}\n{stdout}"));
            assert!(v.is_object(), "{l}");
            assert!(v["event"].is_string() && v["ts"].is_string(), "{l}");
            v
        })
        .collect()
}

fn kinds(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// A round with everything in it: two code agents, a reviewer, both sims, tests.
fn full_mission(repo: &Repo) {
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 1,
        "agents": [
            {"name": "a", "phase": "code", "model": "m1",
             "command": agent_cmd(&["--cost", "0.5", "--write", "src/a.txt=a"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--write", "src/b.txt=b"])},
            {"name": "rev", "phase": "review", "command": agent_cmd(&["--write", "review.md=ok"])}
        ],
        "sims": {"pre": {"command": sim_cmd("0")}, "post": {"command": sim_cmd("0")}},
        "tests": {"command": tests_cmd("0")}
    }));
}

#[test]
fn json_is_one_object_a_line_and_covers_a_whole_round() {
    let repo = Repo::new();
    full_mission(&repo);
    let run = repo.orch(&["run", "--json"]).expect(0);
    let events = json_lines(&run.stdout());
    let k = kinds(&events);
    for want in [
        "runStart",
        "roundStart",
        "phaseStart",
        "agentStart",
        "agentEnd",
        "simStart",
        "simEnd",
        "testsStart",
        "testsEnd",
        "commit",
        "roundEnd",
        "runEnd",
    ] {
        assert!(k.contains(want), "no {want} event in {k:?}");
    }
    assert_eq!(events.first().unwrap()["event"], "runStart");
    assert_eq!(events.last().unwrap()["event"], "runEnd");
    // Agent ends carry status, cost and model.
    let a = events
        .iter()
        .find(|e| e["event"] == "agentEnd" && e["agent"] == "a")
        .unwrap();
    assert_eq!(a["status"], "ok");
    assert_eq!(a["model"], "m1");
    assert_eq!(a["costUsd"], 0.5);
    // The pool's queue, per phase, in the order it starts the agents.
    let phases: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "phaseStart")
        .collect();
    assert_eq!(phases[0]["phase"], "code");
    assert_eq!(phases[0]["queue"], json!(["a", "b"]));
    assert_eq!(phases[0]["maxConcurrency"], 1);
    assert_eq!(phases[1]["queue"], json!(["rev"]));
    let sims: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "simEnd")
        .map(|e| e["sim"].as_str().unwrap())
        .collect();
    assert_eq!(sims, BTreeSet::from(["pre", "post"]));
    // The same events are in events.ndjson; stderr has the lines for people, no escape codes.
    let ndjson = repo.read(".orch/events.ndjson");
    assert_eq!(json_lines(&ndjson).len(), events.len());
    assert!(run.stderr().contains("round 1: ok in"), "{}", run.stderr());
    assert!(!run.stderr().contains('\x1b'), "{:?}", run.stderr());
}

#[test]
fn json_covers_revert_escalation_and_the_budget_stop() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 3, "maxConcurrency": 1, "budgetUsd": 0.3,
        "agents": [
            {"name": "breaker", "phase": "code",
             "command": agent_cmd(&["--cost", "0.2", "--write", "src/app.txt=BROKEN"])},
            {"name": "loser", "phase": "code", "models": ["small", "big"], "escalateAfter": 1,
             "command": agent_cmd(&["--cost", "0.2", "--exit", "1"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    let run = repo.orch(&["run", "--json"]).expect(3);
    let events = json_lines(&run.stdout());
    let k = kinds(&events);
    for want in ["revert", "escalation", "stop", "roundEnd", "runEnd"] {
        assert!(k.contains(want), "no {want} event in {k:?}");
    }
    let stop = events.iter().find(|e| e["event"] == "stop").unwrap();
    assert_eq!(stop["exitCode"], 3);
    assert!(
        stop["reason"].as_str().unwrap().contains("budget"),
        "{stop}"
    );
    let end = events.iter().find(|e| e["event"] == "roundEnd").unwrap();
    assert_eq!(end["status"], "reverted");
    let esc = events.iter().find(|e| e["event"] == "escalation").unwrap();
    assert_eq!((&esc["from"], &esc["to"]), (&json!("small"), &json!("big")));
}

#[test]
fn github_mode_groups_each_round_and_marks_a_revert_as_an_error() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 2,
        "agents": [
            {"name": "breaker", "phase": "code",
             "command": agent_cmd(&["--round", "1", "--write", "src/app.txt=BROKEN",
                                    "--round", "2", "--exit", "1"])}
        ],
        "tests": {"command": tests_cmd("0")}
    }));
    let summary = repo.path().join("summary.md");
    let summary_s = summary.display().to_string();
    let run = repo
        .orch_env(
            &["run", "-q"],
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_STEP_SUMMARY", &summary_s),
            ],
        )
        .expect(0);
    let err = run.stderr();
    let lines: Vec<&str> = err.lines().collect();
    // Every round in its own group, even with -q; groups never nest.
    let groups: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("::group::"))
        .collect();
    assert_eq!(
        groups,
        vec![&"::group::Round 1", &"::group::Round 2"],
        "{err}"
    );
    let mut open = false;
    for l in &lines {
        if l.starts_with("::group::") {
            assert!(!open, "nested group\n{err}");
            open = true;
        } else if *l == "::endgroup::" {
            assert!(open, "endgroup without group\n{err}");
            open = false;
        }
    }
    assert!(!open, "a group left open\n{err}");
    assert!(
        err.contains("::error::round 1 reverted: the tests regressed"),
        "{err}"
    );
    assert!(
        err.contains("::warning::round 2: agent breaker failed"),
        "{err}"
    );
    // The report lands in the job summary.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| Round |"), "{md}");
}

#[test]
fn the_demo_runs_in_an_empty_folder() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .env_remove("GITHUB_ACTIONS")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // Three rounds, one of them reverted, and the markdown report at the end.
    for n in 1..=3 {
        assert!(dir.join(format!(".orch/rounds/round-{n:04}.json")).exists());
    }
    assert!(
        stderr.contains("round 2: took out ui-dev's change"),
        "{stderr}"
    );
    assert!(stdout.contains("| Round |"), "no report in\n{stdout}");
    assert!(stdout.contains(&dir.display().to_string()), "{stdout}");
    // Log lines and event lines on stderr share one format: off a terminal, each starts with
    // the time.
    for line in stderr.lines() {
        let b = line.as_bytes();
        assert!(
            b.len() > 9 && b[2] == b':' && b[5] == b':' && b[8] == b' ',
            "a stderr line not in the common format: {line:?}\n{stderr}"
        );
    }
    // The hints name commands that work from there, without `orch` on PATH, and the HTML
    // report goes outside the working tree, so the next run finds it clean.
    let hints: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("Try, there:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(hints.len() >= 5, "{stdout}");
    assert!(
        !hints.iter().any(|h| h.trim_start().starts_with("orch ")),
        "{hints:?}"
    );
    let script = hints.join("\n");
    let ran = std::process::Command::new("sh")
        .args(["-ec", &script])
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let html = hints.iter().find(|h| h.contains("--format html")).unwrap();
    let html = html.rsplit(' ').next().unwrap().trim_matches('\'');
    assert!(!html.starts_with(&dir.display().to_string()), "{html}");
    assert!(std::fs::read_to_string(html).unwrap().contains("<html"));
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        status.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&status.stdout)
    );
    // A folder that is not empty is refused with the reason.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

/// Every file under `dir` (`.git` included), with its contents' length and mtime.
fn snapshot(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(p);
                out.insert(format!("{rel}/"));
            } else if rel != ".git/index" {
                // git status may refresh the index's stat cache; that is not a trace.
                out.insert(format!("{rel} {} {:?}", meta.len(), meta.modified().ok()));
            }
        }
    }
    out
}

#[test]
fn dry_run_prints_the_plan_and_leaves_no_trace() {
    let repo = Repo::new();
    repo.write("prompts/a.md", "You are {{agent}} in round {{round}}.\n");
    repo.mission(json!({
        "name": "t", "rounds": 4, "maxConcurrency": 2,
        "agents": [
            {"name": "a", "phase": "code", "prompt": "prompts/a.md", "models": ["small", "big"],
             "timeoutS": 60, "command": agent_cmd(&[])},
            {"name": "fixer", "phase": "code", "when": "tasks", "command": agent_cmd(&[])},
            {"name": "every2", "phase": "code", "when": {"every": 2}, "command": agent_cmd(&[])},
            {"name": "gated", "phase": "review", "when": {"command": ["sh", "-c", "touch GATE_RAN"]},
             "command": agent_cmd(&[])}
        ],
        "sims": {"pre": {"command": sim_cmd("0")}},
        "tests": {"command": tests_cmd("0"), "retries": 1}
    }));
    let files = snapshot(repo.path());
    let refs = repo.git(&["for-each-ref"]);
    let (head, status) = (repo.head(), repo.status());

    let run = repo.orch(&["run", "--dry-run"]).expect(0);
    let out = run.stdout();
    assert!(out.contains("round 1 of mission \"t\""), "{out}");
    assert!(out.contains("no pending task"), "{out}");
    assert!(out.contains("next in round 2"), "{out}");
    assert!(out.contains("decided at run time"), "{out}");
    assert!(out.contains("1m00s (fixed)"), "{out}");
    assert!(out.contains("phase A (code):   a"), "{out}");
    assert!(out.contains("phase B (review): gated?"), "{out}");
    assert!(out.contains("pre-sim"), "{out}");
    assert!(out.contains("1 retry"), "{out}");
    // The prompt is rendered in memory: "You are a in round 1.\n" is 22 bytes.
    let a_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("a "))
        .unwrap();
    assert!(
        a_line.contains("22 B") && a_line.contains("small"),
        "{a_line}"
    );

    let plan = repo.orch_json(&["round", "1", "--dry-run", "--json", "--agent", "every2"]);
    assert_eq!(plan["round"], 1);
    assert_eq!(plan["queue"]["code"], json!(["every2"]));
    let a = &plan["agents"][0];
    assert_eq!(
        (&a["active"], &a["reason"]),
        (&json!(false), &json!("not selected with --agent"))
    );

    // No trace: no state folder, no lock, no events, no prompt files, nothing in git, and the
    // when-command was not run.
    assert!(!repo.exists(".orch"));
    assert!(!repo.exists("GATE_RAN"));
    assert_eq!(snapshot(repo.path()), files);
    assert_eq!(repo.git(&["for-each-ref"]), refs);
    assert_eq!(repo.head(), head);
    assert_eq!(repo.status(), status);
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    let repo = Repo::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = repo.orch(&["completions", shell]).expect(0).stdout();
        assert!(out.contains("orch"), "{shell}: {out}");
        assert!(
            out.contains("dry-run"),
            "{shell} completions lack --dry-run"
        );
    }
    let man = repo.orch(&["man"]).expect(0).stdout();
    assert!(man.starts_with(".ie") || man.contains(".TH orch"), "{man}");
    assert!(man.contains("completions"), "{man}");
    // It renders: groff turns it into text that names the tool and its commands.
    let mut groff = std::process::Command::new("groff")
        .args(["-man", "-Tutf8"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("groff renders man pages; install it to run this test");
    use std::io::Write;
    groff
        .stdin
        .take()
        .unwrap()
        .write_all(man.as_bytes())
        .unwrap();
    let raw = String::from_utf8_lossy(&groff.wait_with_output().unwrap().stdout).into_owned();
    // grotty emboldens by overstriking (`N\bN`): keep the last character of each.
    let mut text = String::new();
    for c in raw.chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(text.contains("NAME") && text.contains("orch"), "{text}");
    assert!(text.contains("demo"), "{text}");
}

#[test]
fn every_subcommand_has_examples_in_its_help() {
    let repo = Repo::new();
    for sub in [
        "run",
        "round",
        "report",
        "status",
        "task",
        "validate",
        "init",
        "demo",
        "completions",
        "man",
    ] {
        let out = repo.orch(&[sub, "--help"]).expect(0).stdout();
        assert!(out.contains("Examples:"), "orch {sub} --help:\n{out}");
    }
}

#[test]
fn common_errors_say_how_to_fix_them() {
    // No mission: suggests `orch init`.
    let repo = Repo::new();
    let run = repo.orch(&["run"]).expect(2);
    assert!(run.stderr().contains("orch init"), "{}", run.stderr());
    // Not a git repository: suggests `git init` or the demo.
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(
        plain.path().join("orch.json"),
        r#"{"name": "t", "agents": [{"name": "a", "phase": "code", "command": "true"}]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .current_dir(plain.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not inside a git repository") && err.contains("git init"),
        "{err}"
    );
    // An unknown --agent: names the agents there are, for round and task add alike.
    repo.mission(json!({"name": "t", "agents": [
        {"name": "ui-dev", "phase": "code", "command": agent_cmd(&[])}
    ]}));
    for args in [
        &["round", "1", "--agent", "ui"][..],
        &["round", "1", "--dry-run", "--agent", "ui"][..],
        &["task", "add", "--agent", "ui", "a title"][..],
    ] {
        let run = repo.orch(args).expect(2);
        assert!(
            run.stderr().contains("--agent ui") && run.stderr().contains("it has: ui-dev"),
            "{args:?}: {}",
            run.stderr()
        );
    }
}

#[test]
fn every_command_is_quiet_when_its_stdout_is_closed() {
    let repo = Repo::new();
    full_mission(&repo);
    repo.orch(&["run"]).expect(0);
    repo.orch(&["task", "add", "--agent", "a", "a task"])
        .expect(0);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["validate"],
        &["task", "list"],
        &["task", "list", "--json"],
        &["completions", "bash"],
        &["run", "--dry-run"],
        &["run", "--dry-run", "--json"],
        &["round", "2", "--dry-run"],
        &["round", "1", "--dry-run"],
        &["report"],
        &["report", "--format", "json"],
        &["show", "1"],
        &["show", "1", "--json"],
        &["man"],
        &["--help"],
        &["run", "--help"],
    ] {
        let run = repo.orch_closed_stdout(args);
        assert!(
            [0, 141].contains(&run.code()),
            "orch {args:?}: exit {}\n{}",
            run.code(),
            run.stderr()
        );
        assert_eq!(run.stderr(), "", "orch {args:?} wrote on stderr");
    }
}

#[test]
fn a_closed_stdout_under_run_json_does_not_stop_or_spoil_the_round() {
    let repo = Repo::new();
    full_mission(&repo);
    let run = repo.orch_closed_stdout(&["run", "--json", "-q"]).expect(0);
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}");
    assert_eq!(repo.read("src/a.txt"), "a\n");
    assert_eq!(repo.status(), "", "the round was committed");
    // The events still reach the state folder's log.
    assert!(repo.read(".orch/events.ndjson").contains("\"runEnd\""));
}

#[test]
fn dash_m_dash_reads_the_mission_from_standard_input() {
    let repo = Repo::new();
    repo.write("sub/prompts/a.md", "You are {{agent}}.\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "prompt"]);
    let mission = json!({
        "name": "from-stdin", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "prompt": "prompts/a.md",
                    "command": agent_cmd(&["--write", "src/a.txt=a"])}]
    })
    .to_string();
    // The prompt resolves from the current folder (sub/), not from a file named `-`.
    let run = repo
        .orch_stdin("sub", &["validate", "-m", "-"], &mission)
        .expect(0);
    assert!(
        run.stdout().contains("\"from-stdin\" is valid"),
        "{}",
        run.stdout()
    );
    let run = repo
        .orch_stdin(".", &["validate", "-m", "-"], &mission)
        .expect(2);
    assert!(
        run.stderr().contains("prompts/a.md") && run.stderr().contains("<stdin>"),
        "{}",
        run.stderr()
    );
    repo.orch_stdin("sub", &["run", "-m", "-"], &mission)
        .expect(0);
    assert_eq!(repo.read("src/a.txt"), "a\n");
    assert_eq!(repo.round_log(1)["mission"], "from-stdin");
    let run = repo
        .orch_stdin("sub", &["status", "--json", "-m", "-"], &mission)
        .expect(0);
    assert!(
        run.stdout().contains("\"lastRound\": 1"),
        "{}",
        run.stdout()
    );
    let bad = repo
        .orch_stdin(".", &["validate", "-m", "-"], "{\"name\": 1}")
        .expect(2);
    assert!(bad.stderr().contains("<stdin>"), "{}", bad.stderr());
}

#[test]
fn the_book_shows_the_nightly_workflow_file_as_it_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workflow = std::fs::read_to_string(root.join("docs/src/orch-nightly.yml")).unwrap();
    let chapter = std::fs::read_to_string(root.join("docs/src/ci.md")).unwrap();
    assert!(
        chapter.contains(&format!("```yaml\n{workflow}```")),
        "docs/src/ci.md's workflow differs from docs/src/orch-nightly.yml: copy the file into the chapter"
    );
    // Nothing to fill in by hand but the documented variable, and a branch of its own.
    assert!(!workflow.contains("OWNER"), "a placeholder in the workflow");
    assert!(workflow.contains("vars.ORCH_GIT_URL"));
    assert!(workflow.contains("--branch"));
    assert!(workflow.contains("gh pr create"));
}

#[test]
fn orch_init_writes_phase_b_bisect_jobs_and_per_agent_budgets_that_take_effect() {
    for cli in ["claude", "codex", "gemini", "aider", "script"] {
        let repo = Repo::new();
        repo.orch(&["init", "--agent", cli]).expect(0);
        let text = repo.read("orch.json");
        let m: serde_json::Value =
            serde_json::from_str(&orch::mission::strip_comments(&text)).unwrap();
        assert_eq!(m["phaseB"], "besideTests", "{cli}: {text}");
        let budgets: Vec<f64> = m["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a["budgetUsd"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{cli}: {a}"))
            })
            .collect();
        assert_eq!(budgets, [12.0, 4.0], "{cli}");
        // Within the mission's budget, and said where it is written.
        assert!(budgets.iter().sum::<f64>() <= m["budgetUsd"].as_f64().unwrap());
        assert!(text.contains("\"budgetUsd\": 12            // what this agent may spend"));
        assert!(text.contains("\"phaseB\": \"besideTests\","));
        // bisectJobs, with what it does and what it needs.
        assert_eq!(m["bisectJobs"], 2, "{cli}: {text}");
        let at = text.find("\"bisectJobs\": 2,").unwrap();
        let comment = &text[text[..at].rfind("\"phaseB\"").unwrap()..at];
        assert!(
            comment.contains("per-agent revert") && comment.contains("\"worktree\""),
            "{cli}: {comment}"
        );
        assert!(
            !text.contains("review agents run after the tests"),
            "{text}"
        );
        assert_eq!(
            text.contains("--max-budget-usd"),
            cli == "claude",
            "{cli}: only Claude Code caps a run"
        );
        // What it wrote is a valid mission (`orch validate` would also want the CLI installed).
        let parsed =
            orch::mission::Mission::parse(&text, Path::new("orch.json"), &orch::agents::Adapters)
                .unwrap_or_else(|e| panic!("{cli}: {e}"));
        assert_eq!(parsed.agents[0].budget_usd, Some(12.0));
        assert_eq!(parsed.bisect_jobs, Some(2), "{cli}");
    }
    // With the bundled fake agent it runs: the round log's plan carries the budgets.
    let repo = Repo::new();
    repo.orch(&["init", "--agent", "script"]).expect(0);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "orch init"]);
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    let log = repo.round_log(1);
    let d = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["agent"] == "coder")
        .unwrap()
        .clone();
    assert_eq!(d["budgetUsd"], 12.0, "{log:#}");
}
