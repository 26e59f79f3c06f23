//! Sessions that carry over (`session: true`): the built binary against a stand-in for Claude
//! Code, a script named `claude` (so orch reads it with the Claude adapter) that records each
//! run's argv and prompt and prints a Claude-shaped JSON result with the session it was given.
//! The stand-in does no session work of its own: which id, which flag and which prompt it gets
//! are orch's.

use crate::common::Repo;
use serde_json::json;

/// The stand-in CLI. What it does in a round comes from `do.N` beside its logs: `work` (the
/// default) appends a line to work-AGENT.txt, `break` writes what the tests reject, `nothing` leaves
/// the tree alone.
const FAKE_CLAUDE: &str = r#"#!/bin/sh
log="$FAKE_LOG"
n=$(( $(cat "$log/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$log/count"
printf '%s\n' "$*" > "$log/argv.$n"
cat > "$log/prompt.$n"
sid=""
while [ $# -gt 0 ]; do
  case "$1" in --session-id|--resume) sid="$2"; shift ;; esac
  shift
done
# Without a session flag Claude Code starts a session of its own and reports its id (as in
# fixtures/cli-output/real/claude-ok.stdout).
[ -n "$sid" ] || sid=$(cat /proc/sys/kernel/random/uuid)
act=$(cat "$log/do.$ORCH_ROUND" 2>/dev/null || echo work)
case "$act" in
  work) echo "round $ORCH_ROUND" >> "work-$ORCH_AGENT.txt" ;;
  break) echo "break" >> "work-$ORCH_AGENT.txt" ;;
esac
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"did %s","session_id":"%s","total_cost_usd":0.01}\n' "$act" "$sid"
"#;

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        let bin = dir.path().join("bin/claude");
        std::fs::write(&bin, FAKE_CLAUDE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fake { dir }
    }

    fn bin(&self) -> String {
        self.dir.path().join("bin/claude").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.path().join("log").display().to_string()
    }

    /// What it does in round `round`.
    fn will(&self, round: u32, act: &str) {
        std::fs::write(self.dir.path().join(format!("log/do.{round}")), act).unwrap();
    }

    /// The argv of its `n`th run (1-based), as words.
    fn argv(&self, n: u32) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(format!("log/argv.{n}")))
            .unwrap_or_else(|e| panic!("run {n} of the fake CLI: {e}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn prompt(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("log/prompt.{n}"))).unwrap()
    }

    /// The value after `flag` in run `n`'s argv.
    fn flag(&self, n: u32, flag: &str) -> Option<String> {
        let argv = self.argv(n);
        let i = argv.iter().position(|w| w == flag)?;
        argv.get(i + 1).cloned()
    }
}

/// Fails when any agent's file says `break`.
const TESTS: &str = "! cat work-*.txt 2>/dev/null | grep -q break";

const TEMPLATE: &str = "FULL TEMPLATE: you are {{agent}}, round {{round}}.\n{{task}}\n";

fn agent(name: &str, fake: &Fake, extra: serde_json::Value) -> serde_json::Value {
    let mut agent = json!({
        "name": name,
        "phase": "code",
        "command": [fake.bin(), "-p", "--model", "{model}", "--output-format", "json"],
        "stdin": "prompt",
        "prompt": "prompt.md",
        "model": "sonnet",
        "session": true,
        "env": {"FAKE_LOG": fake.log()},
    });
    for (k, v) in extra.as_object().unwrap() {
        agent[k] = v.clone();
    }
    agent
}

fn mission(repo: &Repo, fake: &Fake, extra: serde_json::Value) {
    repo.write("prompt.md", TEMPLATE);
    repo.mission(json!({
        "name": "sessions",
        "rounds": 3,
        "agents": [agent("coder", fake, extra)],
        "tests": {"command": ["sh", "-c", TESTS], "timeoutS": 30},
    }));
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[test]
fn a_session_is_resumed_with_the_changes_prompt_and_dropped_after_a_revert() {
    let repo = Repo::new();
    let fake = Fake::new();
    mission(&repo, &fake, json!({}));
    fake.will(2, "break");
    // Round 1 in one `orch run`, rounds 2 and 3 in another: the session is in the state.
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    let first = fake
        .flag(1, "--session-id")
        .expect("round 1 starts a session");
    assert!(is_uuid(&first), "{first}");
    assert_eq!(fake.flag(1, "--resume"), None);
    assert!(
        fake.prompt(1).contains("FULL TEMPLATE"),
        "{}",
        fake.prompt(1)
    );
    assert_eq!(repo.state()["agents"]["coder"]["session"]["id"], first);
    let r1 = repo.round_log(1);
    let e1 = Repo::agent(&r1, "coder");
    assert_eq!(e1["sessionId"], first);
    assert!(e1.get("sessionResumed").is_none(), "{e1}");

    repo.orch(&["run", "--rounds", "2"]).expect(0);
    // Round 2: the same session resumed, with what changed instead of the template.
    assert_eq!(fake.flag(2, "--resume").as_deref(), Some(first.as_str()));
    assert_eq!(fake.flag(2, "--session-id"), None);
    let short = fake.prompt(2);
    assert!(!short.contains("FULL TEMPLATE"), "{short}");
    assert!(
        short.contains("What changed since your last run (round 1"),
        "{short}"
    );
    assert!(short.contains("orch: round 1 code: coder"), "{short}");
    assert!(short.contains("work-coder.txt"), "{short}");
    assert!(
        short.contains("Tests at the branch's head: passed"),
        "{short}"
    );
    assert!(short.contains("Go on with your instructions"), "{short}");
    let r2 = repo.round_log(2);
    assert_eq!(r2["status"], "reverted", "{r2}");
    let e2 = Repo::agent(&r2, "coder");
    assert_eq!(e2["sessionId"], first);
    assert_eq!(e2["sessionResumed"], true);
    // Round 3: its change was taken out, so a new session and the full prompt again.
    let second = fake
        .flag(3, "--session-id")
        .expect("round 3 starts a new session");
    assert_ne!(second, first);
    assert!(is_uuid(&second), "{second}");
    assert_eq!(fake.flag(3, "--resume"), None);
    assert!(
        fake.prompt(3).contains("FULL TEMPLATE"),
        "{}",
        fake.prompt(3)
    );
    let r3 = repo.round_log(3);
    let e3 = Repo::agent(&r3, "coder");
    assert_eq!(e3["sessionId"], second);
    assert!(e3.get("sessionResumed").is_none(), "{e3}");
    let why = e3["sessionDropped"].as_str().unwrap_or_default();
    assert!(why.contains("round 2") && why.contains("taken out"), "{e3}");
    let shown = repo.orch(&["show", "2"]).expect(0).stdout();
    assert!(
        shown.contains(&format!("session {first} resumed")),
        "{shown}"
    );
    // The prompt the round recorded is what the CLI got.
    let recorded = repo.read(".orch/prompts/round-0002/coder.md");
    assert_eq!(recorded, short);
}

#[test]
fn a_per_agent_revert_drops_only_the_culprits_session() {
    let repo = Repo::new();
    let (good, bad) = (Fake::new(), Fake::new());
    bad.will(2, "break");
    repo.write("prompt.md", TEMPLATE);
    repo.mission(json!({
        "name": "sessions",
        "rounds": 3,
        "revertStrategy": "per-agent",
        "agents": [agent("good", &good, json!({})), agent("bad", &bad, json!({}))],
        "tests": {"command": ["sh", "-c", TESTS], "timeoutS": 30},
    }));
    repo.orch(&["run"]).expect(0);
    let r2 = repo.round_log(2);
    assert_eq!(r2["revert"]["strategy"], "per-agent", "{r2:#}");
    assert_eq!(r2["revert"]["culprits"], json!(["bad"]), "{r2:#}");
    // The agent whose change stayed goes on in its session; the culprit starts a new one.
    let g1 = good.flag(1, "--session-id").unwrap();
    assert_eq!(good.flag(2, "--resume").as_deref(), Some(g1.as_str()));
    assert_eq!(good.flag(3, "--resume").as_deref(), Some(g1.as_str()));
    let b1 = bad.flag(1, "--session-id").unwrap();
    assert_eq!(bad.flag(2, "--resume").as_deref(), Some(b1.as_str()));
    let b3 = bad
        .flag(3, "--session-id")
        .expect("the culprit starts a new session");
    assert_ne!(b3, b1);
    assert!(bad.prompt(3).contains("FULL TEMPLATE"));
    assert!(!good.prompt(3).contains("FULL TEMPLATE"));
    let why = Repo::agent(&repo.round_log(3), "bad")["sessionDropped"].clone();
    assert!(
        why.as_str().is_some_and(|w| w.contains("broke the tests")),
        "{why}"
    );
}

#[test]
fn a_model_change_drops_the_session() {
    let repo = Repo::new();
    let fake = Fake::new();
    // An empty run escalates at once: the next run has another model.
    mission(
        &repo,
        &fake,
        json!({"model": null, "models": ["sonnet", "opus"], "escalateAfter": 1}),
    );
    fake.will(2, "nothing");
    repo.orch(&["run"]).expect(0);
    let first = fake.flag(1, "--session-id").unwrap();
    assert_eq!(fake.flag(2, "--resume").as_deref(), Some(first.as_str()));
    assert_eq!(fake.flag(2, "--model").as_deref(), Some("sonnet"));
    assert_eq!(Repo::agent(&repo.round_log(2), "coder")["status"], "empty");
    // Round 3 runs opus: a new session, with the full prompt.
    assert_eq!(fake.flag(3, "--model").as_deref(), Some("opus"));
    let second = fake
        .flag(3, "--session-id")
        .expect("a new session for the new model");
    assert_ne!(second, first);
    assert!(fake.prompt(3).contains("FULL TEMPLATE"));
    let e3 = Repo::agent(&repo.round_log(3), "coder").clone();
    let why = e3["sessionDropped"].as_str().unwrap_or_default();
    assert!(why.contains("model") && why.contains("opus"), "{e3}");
}

#[test]
fn a_mission_change_and_session_max_rounds_drop_the_session() {
    let repo = Repo::new();
    let fake = Fake::new();
    mission(&repo, &fake, json!({"sessionMaxRounds": 2}));
    repo.orch(&["run", "--rounds", "3"]).expect(0);
    // Runs 1 and 2 in one session; the third starts another (sessionMaxRounds 2).
    let first = fake.flag(1, "--session-id").unwrap();
    assert_eq!(fake.flag(2, "--resume").as_deref(), Some(first.as_str()));
    let third = fake
        .flag(3, "--session-id")
        .expect("sessionMaxRounds ends the session");
    assert_ne!(third, first);
    let e3 = Repo::agent(&repo.round_log(3), "coder").clone();
    assert!(
        e3["sessionDropped"]
            .as_str()
            .is_some_and(|w| w.contains("sessionMaxRounds 2")),
        "{e3}"
    );
    // The template changes between two `orch run`s: the kept session is dropped.
    repo.write("prompt.md", &format!("{TEMPLATE}Be brief.\n"));
    repo.git(&["commit", "-qam", "a new template"]);
    repo.orch(&["run", "--rounds", "1"]).expect(0);
    assert_ne!(fake.flag(4, "--session-id"), None, "{:?}", fake.argv(4));
    assert!(fake.prompt(4).contains("Be brief."));
    let e4 = Repo::agent(&repo.round_log(4), "coder").clone();
    assert!(
        e4["sessionDropped"]
            .as_str()
            .is_some_and(|w| w.contains("mission")),
        "{e4}"
    );
}

#[test]
fn session_is_refused_for_a_cli_without_sessions() {
    let repo = Repo::new();
    for (cmd, says) in [
        (json!(["gemini", "-p", ""]), "gemini"),
        (json!(["sh", "-c", "exec claude -p"]), "sh -c"),
    ] {
        repo.write(
            "orch.json",
            &json!({"name": "n", "agents": [
                {"name": "gem", "phase": "code", "command": cmd, "session": true}]})
            .to_string(),
        );
        let run = repo.orch(&["validate"]).expect(2);
        let err = run.stderr();
        assert!(err.contains("agents[0].session"), "{err}");
        assert!(err.contains("gem") && err.contains(says), "{err}");
    }
    repo.write(
        "orch.json",
        &json!({"name": "n", "agents": [
            {"name": "a", "phase": "code", "command": ["claude"], "sessionMaxRounds": 3}]})
        .to_string(),
    );
    let err = repo.orch(&["validate"]).expect(2).stderr();
    assert!(err.contains("agents[0].sessionMaxRounds"), "{err}");
}

#[test]
fn the_report_shows_each_agents_sessions_resumed_and_dropped_with_why() {
    let repo = Repo::new();
    let (good, bad, plain) = (Fake::new(), Fake::new(), Fake::new());
    bad.will(2, "break");
    repo.write("prompt.md", TEMPLATE);
    repo.mission(json!({
        "name": "sessions",
        "rounds": 3,
        "revertStrategy": "per-agent",
        "agents": [
            agent("good", &good, json!({})),
            agent("bad", &bad, json!({})),
            // The same CLI without `session: true`: it reports a session id for each run, but
            // keeps none, so the report shows none.
            agent("plain", &plain, json!({"session": false})),
        ],
        "tests": {"command": ["sh", "-c", TESTS], "timeoutS": 30},
    }));
    repo.orch(&["run"]).expect(0);
    assert!(Repo::agent(&repo.round_log(1), "plain")["sessionId"].is_string());
    let report = repo.orch_json(&["report", "--format", "json"]);
    let row = |name: &str| {
        report["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no row {name} in {report:#}"))
            .clone()
    };
    let g = row("good");
    assert_eq!(g["sessions"]["resumed"], 2, "{g:#}");
    assert_eq!(g["sessions"]["new"], 1, "{g:#}");
    assert_eq!(g["sessions"]["dropped"], json!([]), "{g:#}");
    assert_eq!(g["sessions"]["lastResumed"], true);
    assert_eq!(
        g["sessions"]["lastId"].as_str(),
        good.flag(1, "--session-id").as_deref()
    );
    let b = row("bad");
    assert_eq!(b["sessions"]["resumed"], 1, "{b:#}");
    assert_eq!(b["sessions"]["new"], 2, "{b:#}");
    let dropped = b["sessions"]["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{b:#}");
    assert_eq!(dropped[0]["round"], 3);
    let why = dropped[0]["reason"].as_str().unwrap();
    assert!(
        why.contains("round 2") && why.contains("broke the tests"),
        "{why}"
    );
    assert_eq!(b["sessions"]["lastResumed"], false);
    assert_eq!(
        b["sessions"]["lastId"].as_str(),
        bad.flag(3, "--session-id").as_deref()
    );
    // Additive: the other keys of a row are all still there.
    for k in [
        "runs",
        "kept",
        "rejected",
        "costUsd",
        "modelNow",
        "lastRound",
        "budgetUsd",
    ] {
        assert!(b.get(k).is_some(), "{k} missing in {b:#}");
    }
    assert!(row("plain")["sessions"].is_null(), "{:#}", row("plain"));

    // The text report: a Sessions column in the agents table.
    let md = repo.orch(&["report"]).expect(0).stdout();
    let agents = &md[md.find("## Agents").expect("an agents table")..];
    let header = agents.lines().find(|l| l.starts_with("| Agent")).unwrap();
    assert!(header.ends_with("| Sessions |"), "{header}");
    let line = |name: &str| {
        agents
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row {name} in {agents}"))
            .to_string()
    };
    assert!(
        line("good").ends_with("| 2 resumed, 1 new |"),
        "{}",
        line("good")
    );
    let bad_line = line("bad");
    assert!(
        bad_line.contains(
            "| 1 resumed, 2 new; dropped in round 3: its change from round 2 broke the tests"
        ),
        "{bad_line}"
    );
    assert!(line("plain").ends_with("| — |"), "{}", line("plain"));
    let html = repo
        .orch(&["report", "--format", "html"])
        .expect(0)
        .stdout();
    assert!(
        html.contains("<th>Sessions</th>"),
        "no Sessions column in the HTML"
    );
    assert!(html.contains("dropped in round 3: its change from round 2"));
}

#[test]
fn a_report_without_sessions_has_no_sessions_column() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "plain", "rounds": 1,
        "agents": [{"name": "a", "phase": "code",
                    "command": crate::common::agent_cmd(&["--write", "a.txt=1"])}],
    }));
    repo.orch(&["run"]).expect(0);
    let md = repo.orch(&["report"]).expect(0).stdout();
    assert!(!md.contains("Sessions"), "{md}");
    let report = repo.orch_json(&["report", "--format", "json"]);
    assert!(report["agents"][0]["sessions"].is_null(), "{report:#}");
}
