//! The real agent CLIs under orch: Claude Code, Codex and Gemini CLI, as installed by
//! `scripts/real-cli-install` (pinned versions from npm in `~/.cache/orch-real-cli`, or
//! `ORCH_REAL_CLI_DIR`), each pointed at the scripted mock model API `tests/mock_api/mock_api.py`
//! on 127.0.0.1 (a free port per test). The agent's command line is the one `orch init --agent X`
//! writes, so these tests also prove that what init writes runs unattended.
//!
//! A CLI that is not installed is a loud SKIP (the test passes, saying so on stderr), unless
//! `ORCH_REQUIRE_REAL_CLI=1` (`.ci/run` sets it): then it is a failure.
//!
//! Each CLI gets a fresh `HOME` (and `CODEX_HOME`), so nothing of the user's own configuration
//! or credentials is read, and small retry counts, so a failing API costs seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{skip, Repo};
use serde_json::{json, Value};

/// Where the installed CLIs' executables are.
fn bin_dir() -> PathBuf {
    let base = std::env::var_os("ORCH_REAL_CLI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/orch-real-cli")
        });
    base.join("node_modules/.bin")
}

/// Whether the test can run: the CLI and python3 are there. If not, a loud SKIP, or a panic
/// under `ORCH_REQUIRE_REAL_CLI=1`.
fn available(cli: &str) -> bool {
    let exe = bin_dir().join(cli);
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if !exe.exists() {
        format!(
            "{} is not installed (run scripts/real-cli-install)",
            exe.display()
        )
    } else if !python {
        "python3 is not installed (the mock model API needs it)".to_string()
    } else {
        return true;
    };
    skip(&format!("a {cli} test"), "ORCH_REQUIRE_REAL_CLI", &missing);
    false
}

/// The mock model API, running for the life of the value.
struct Mock {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Mock {
    fn start(args: &[&str]) -> Mock {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mock_api/mock_api.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .arg("--log")
            .arg(dir.path().join("requests.jsonl"))
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting python3 tests/mock_api/mock_api.py");
        let t0 = Instant::now();
        let mut mock = Mock {
            child,
            port: 0,
            dir,
        };
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                mock.port = text.trim().parse().unwrap();
                return mock;
            }
            if let Ok(Some(status)) = mock.child.try_wait() {
                panic!("the mock model API exited at start ({status}); its stderr is above");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the mock model API did not start within 20 s");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request it received, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Requests for a model answer (not count_tokens or the like).
    fn model_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                let p = r["path"].as_str().unwrap_or("");
                p.contains("/v1/messages?")
                    || p.ends_with("/v1/messages")
                    || p.ends_with("/responses")
                    || p.contains(":streamGenerateContent")
                    || p.contains(":generateContent")
            })
            .count()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tokens the mock reports per model request (tests/mock_api/mock_api.py, USAGE).
const MOCK_INPUT_TOKENS: u64 = 1200;
const MOCK_OUTPUT_TOKENS: u64 = 80;

/// A scratch repository whose mission is `orch init --agent CLI`'s coder agent, as written,
/// plus `extra` keys at the top level; and the environment that points the CLI at the mock.
struct Setup {
    repo: Repo,
    env: Vec<(String, String)>,
    _home: tempfile::TempDir,
}

impl Setup {
    fn new(cli: &str, mock: &Mock, agents: usize, extra: Value) -> Setup {
        Setup::new_with_home(cli, mock, agents, extra, tempfile::tempdir().unwrap())
    }

    /// [`Setup::new`] with the CLI's `HOME` at `home`.
    fn new_with_home(
        cli: &str,
        mock: &Mock,
        agents: usize,
        extra: Value,
        home: tempfile::TempDir,
    ) -> Setup {
        let repo = Repo::new();
        repo.orch(&["init", "--agent", cli]).expect(0);
        let written = orch::mission::strip_comments(&repo.read("orch.json"));
        let init: Value = serde_json::from_str(&written)
            .unwrap_or_else(|e| panic!("orch init --agent {cli} wrote bad JSON: {e}\n{written}"));
        let coder = init["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["phase"] == "code")
            .expect("orch init writes a code agent")
            .clone();
        let mut coder = coder;
        if cli == "aider" {
            // The mock speaks OpenAI: a model litellm sends there, and prices.
            coder["models"] = json!(["openai/gpt-4o-mini"]);
        }
        let mut list = vec![coder.clone()];
        for i in 2..=agents {
            let mut a = coder.clone();
            a["name"] = json!(format!("coder{i}"));
            list.push(a);
        }
        let mut mission = json!({
            "name": format!("real-{cli}"),
            "rounds": 1,
            "maxConcurrency": 1,
            "agents": list,
            "tests": {"command": ["sh", "-c", "echo '1 passed, 0 failed'"], "timeoutS": 60},
            "git": {"isolation": "shared", "commit": true},
        });
        for (k, v) in extra.as_object().unwrap() {
            mission[k] = v.clone();
        }
        repo.mission(mission);

        let h = home.path();
        let tmp = h.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env = vec![
            ("PATH".to_string(), path),
            ("HOME".to_string(), h.display().to_string()),
            // A temporary folder of its own, beside HOME, not HOME itself: Codex refuses to make
            // its sandbox helpers (codex-linux-sandbox, which `--sandbox workspace-write` runs
            // under bwrap once bubblewrap is installed) in a CODEX_HOME under the temporary
            // folder, and its edit then never lands.
            ("TMPDIR".to_string(), tmp.display().to_string()),
        ];
        let mut set = |k: &str, v: String| env.push((k.to_string(), v));
        match cli {
            "claude" => {
                set("ANTHROPIC_BASE_URL", mock.url());
                set("ANTHROPIC_API_KEY", "sk-ant-mock".into());
                // Claude Code retries by itself; orch's own handling is what is under test.
                set("CLAUDE_CODE_MAX_RETRIES", "0".into());
                set("DISABLE_TELEMETRY", "1".into());
                set("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into());
            }
            "codex" => {
                // Codex ignores OPENAI_BASE_URL: a model provider of its own in config.toml.
                let codex_home = h.join(".codex");
                std::fs::create_dir_all(&codex_home).unwrap();
                std::fs::write(
                    codex_home.join("config.toml"),
                    format!(
                        "model_provider = \"mock\"\n\n[model_providers.mock]\nname = \"mock\"\n\
                         base_url = \"{}/v1\"\nwire_api = \"responses\"\nenv_key = \"MOCK_API_KEY\"\n\
                         request_max_retries = 0\nstream_max_retries = 0\n",
                        mock.url()
                    ),
                )
                .unwrap();
                set("CODEX_HOME", codex_home.display().to_string());
                set("MOCK_API_KEY", "sk-mock".into());
            }
            "aider" => {
                set("OPENAI_API_BASE", format!("{}/v1", mock.url()));
                set("OPENAI_API_KEY", "sk-mock".into());
            }
            "gemini" => {
                let dir = h.join(".gemini");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(
                    dir.join("settings.json"),
                    r#"{"general": {"maxAttempts": 1}, "security": {"auth": {"selectedType": "gemini-api-key"}}}"#,
                )
                .unwrap();
                set("GOOGLE_GEMINI_BASE_URL", mock.url());
                set("GEMINI_API_KEY", "mock-key".into());
            }
            other => panic!("no setup for {other}"),
        }
        Setup {
            repo,
            env,
            _home: home,
        }
    }

    fn run(&self, args: &[&str]) -> crate::common::Run {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.repo.orch_env(args, &env)
    }

    /// The first model on the coder's ladder, as the mission spells it.
    fn first_model(&self) -> String {
        let m: Value =
            serde_json::from_str(&orch::mission::strip_comments(&self.repo.read("orch.json")))
                .unwrap();
        m["agents"][0]["models"][0]
            .as_str()
            .or(m["agents"][0]["model"].as_str())
            .expect("the coder names a model")
            .to_string()
    }

    /// What the agent wrote on stdout in round 1 (orch's log of it).
    fn agent_log(&self, agent: &str) -> String {
        let log = self.repo.round_log(1);
        let rel = Repo::agent(&log, agent)["log"]
            .as_str()
            .unwrap()
            .to_string();
        self.repo.read(&format!(".orch/{rel}"))
    }

    /// The coder's entry in round 1's log.
    fn coder(&self) -> Value {
        Repo::agent(&self.repo.round_log(1), "coder").clone()
    }

    /// The `result` line Claude Code printed in round 1 (the coder's log); fails the test
    /// when there is none.
    fn claude_result(&self) -> Value {
        let out = self.agent_log("coder");
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["type"] == "result")
            .unwrap_or_else(|| panic!("no Claude result in the agent's log:\n{out}"))
    }

    fn events(&self) -> Vec<Value> {
        self.repo
            .read(".orch/events.ndjson")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The hello.txt the mock makes the CLI write is in the round's commit.
fn assert_committed(s: &Setup) {
    let files = s.repo.git(&["show", "--name-only", "--format=", "HEAD"]);
    assert!(
        files.lines().any(|f| f == "hello.txt"),
        "hello.txt is not in the last commit ({files}); round log {:#}",
        s.repo.round_log(1)
    );
    assert_eq!(s.repo.read("hello.txt").trim(), "hello from the mock model");
    assert_eq!(s.repo.status(), "", "the tree is clean after the round");
}

/// Prices with round figures for the first model `orch init --agent CLI` writes ($1 in,
/// $10 out per MTok), so that the expected cost is easy to check by hand: [`round_priced`].
fn round_pricing(cli: &str, mock: &Mock) -> Value {
    let model = Setup::new(cli, mock, 1, json!({})).first_model();
    json!({ model: {"inputPerMTok": 1.0, "outputPerMTok": 10.0} })
}

/// What `n` requests to the mock cost at [`round_pricing`].
fn round_priced(n: u64) -> f64 {
    (n * MOCK_INPUT_TOKENS) as f64 * 1.0 / 1e6 + (n * MOCK_OUTPUT_TOKENS) as f64 * 10.0 / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

// ------------------------------------------------------------------ (a) an edit, its exact cost

#[test]
fn claude_edit_is_committed_with_claudes_own_cost() {
    if !available("claude") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new("claude", &mock, 1, json!({}));
    s.run(&["run"]).expect(0);
    assert_committed(&s);

    // The cost is what Claude Code printed, not a figure orch worked out.
    let result = s.claude_result();
    let claude_cost = result["total_cost_usd"].as_f64().unwrap();
    assert!(claude_cost > 0.0, "Claude reported no cost: {result}");
    let log = s.repo.round_log(1);
    let agent = Repo::agent(&log, "coder");
    assert_eq!(agent["status"], "ok", "{agent:#}");
    let cost = agent["costUsd"].as_f64().unwrap();
    assert!(
        close(cost, claude_cost),
        "round log costUsd {cost} is not Claude's total_cost_usd {claude_cost}"
    );
}

/// aider 0.86.1 as `orch init --agent aider` writes it: it applies the mock's edit itself, and
/// the cost is the session figure it printed (litellm's price of the model), not orch's.
#[test]
fn aider_edit_is_committed_with_its_own_cost() {
    if !available("aider") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new("aider", &mock, 1, json!({}));
    s.run(&["run"]).expect(0);
    assert_committed(&s);
    let printed = s.agent_log("coder");
    assert!(
        printed.contains("Cost: $0.00023 message, $0.00023 session."),
        "{printed}"
    );
    let agent = s.coder();
    assert_eq!(agent["status"], "ok", "{agent:#}");
    assert_cost(&agent, 0.00023);
}

#[test]
fn codex_edit_is_committed_with_its_tokens_priced() {
    if !available("codex") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let pricing = round_pricing("codex", &mock);
    let s = Setup::new("codex", &mock, 1, json!({ "pricing": pricing }));
    s.run(&["run"]).expect(0);
    assert_committed(&s);

    let n = mock.model_requests() as u64;
    assert!(n >= 2, "Codex asked the model {n} times");
    let expected = round_priced(n);
    let agent = s.coder();
    assert_eq!(agent["status"], "ok", "{agent:#}");
    let cost = agent["costUsd"].as_f64().unwrap();
    assert!(
        close(cost, expected),
        "costUsd {cost}, expected {n} requests x ({MOCK_INPUT_TOKENS} in, {MOCK_OUTPUT_TOKENS} out) \
         at $1/$10 per MTok = {expected}: {agent:#}"
    );
}

// ------------------------------------------------------------------ under the sandbox

/// A HOME for a sandboxed CLI: not under /tmp (the sandbox's TMPDIR), where Codex would not
/// make its own sandbox's helpers in CODEX_HOME.
/// Whether a sandboxed test of `cli` can run: the CLI and bubblewrap are there (else a loud
/// SKIP, or a failure where `.ci/run` requires them).
fn sandboxed(cli: &str) -> bool {
    available(cli) && crate::common::bwrap_runs("sandboxed real-CLI test")
}

/// `"sandbox"` on, with the mock's port on its allowlist (for a CLI whose base URL is not in a
/// variable the sandbox reads).
fn allowing(mock: &Mock) -> Value {
    json!({"mode": "bwrap", "allowHosts": [format!("127.0.0.1:{}", mock.port)]})
}

/// `orch run` in the setup: exit 0, the edit committed, the coder `ok`; its round-log entry.
fn lands_ok(s: &Setup) -> Value {
    let run = s.run(&["run"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_committed(s);
    let agent = s.coder();
    assert_eq!(agent["status"], "ok", "{agent:#}");
    agent
}

/// The round-log entry `agent` says it cost `usd` (within a float's rounding).
fn assert_cost(agent: &Value, usd: f64) {
    let cost = agent["costUsd"].as_f64().unwrap();
    assert!(close(cost, usd), "costUsd {cost}, not {usd}: {agent:#}");
}

fn home_outside_tmp() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Claude Code under `"sandbox": "bwrap"`: its home hidden, the network only the mock API
/// (its host and port from ANTHROPIC_BASE_URL, relayed by orch): the edit is committed and the
/// cost is Claude's own, as without the sandbox.
#[test]
fn claude_in_the_sandbox_edits_and_is_priced_exactly() {
    if !sandboxed("claude") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new("claude", &mock, 1, json!({"sandbox": "bwrap"}));
    let agent = lands_ok(&s);
    let result = s.claude_result();
    let claude_cost = result["total_cost_usd"].as_f64().unwrap();
    assert_cost(&agent, claude_cost);
}

/// Claude Code in a sandbox whose allowlist names another port than the mock API's: it cannot
/// connect (the sandbox's loopback has nothing there, the host's is out of reach), the mock
/// gets no request, and the run fails.
#[test]
fn claude_in_the_sandbox_cannot_reach_a_port_off_its_list() {
    if !sandboxed("claude") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let s = Setup::new(
        "claude",
        &mock,
        1,
        json!({"sandbox": {"network": [format!("127.0.0.1:{other_port}")]}}),
    );
    let run = s.run(&["run"]);
    assert_eq!(
        mock.model_requests(),
        0,
        "the mock was reached: {}",
        run.stderr()
    );
    let agent = s.coder();
    assert_ne!(agent["status"], "ok", "{agent:#}");
    assert!(!s.repo.exists("hello.txt"));
}

/// Codex under `"sandbox": "bwrap"`, its own `--sandbox workspace-write` (bubblewrap too)
/// inside orch's: the edit is committed and its tokens priced exactly. Its model provider's
/// base URL is in config.toml, not a variable, so the mission allows the mock's port.
#[test]
fn codex_in_the_sandbox_edits_and_is_priced_exactly() {
    if !sandboxed("codex") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let pricing = round_pricing("codex", &mock);
    let sandbox = allowing(&mock);
    let extra = json!({ "pricing": pricing, "sandbox": sandbox });
    let s = Setup::new_with_home("codex", &mock, 1, extra, home_outside_tmp());
    let agent = lands_ok(&s);
    let expected = round_priced(mock.model_requests() as u64);
    assert_cost(&agent, expected);
}

/// aider under `"sandbox": "bwrap"`, installed in a Python venv under the cache folder (which the
/// sandbox binds back read-only as its program's), in its own worktree: the network the mock API
/// (OPENAI_API_BASE; litellm's fetch of its price list is refused and reported); the edit is
/// committed with aider's own cost.
#[test]
fn aider_in_the_sandbox_edits() {
    if !sandboxed("aider") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let sandbox = allowing(&mock);
    let s = Setup::new_with_home(
        "aider",
        &mock,
        1,
        // Its own worktree, as `orch init --agent aider` writes: in the shared tree the sandbox
        // keeps `.git` read-only, and aider gives up a new file when its `git add` fails.
        json!({ "sandbox": sandbox, "git": {"isolation": "worktree", "commit": true} }),
        home_outside_tmp(),
    );
    let agent = lands_ok(&s);
    assert_cost(&agent, 0.00023);
}

/// Gemini CLI under `"sandbox": "bwrap"`: its home hidden but `~/.gemini`, the network the
/// mock API (GOOGLE_GEMINI_BASE_URL): the edit is committed.
#[test]
fn gemini_in_the_sandbox_edits() {
    if !sandboxed("gemini") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new("gemini", &mock, 1, json!({"sandbox": "bwrap"}));
    lands_ok(&s);
}

#[test]
fn gemini_edit_is_committed_with_its_tokens_priced() {
    if !available("gemini") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let pricing = round_pricing("gemini", &mock);
    let s = Setup::new("gemini", &mock, 1, json!({ "pricing": pricing }));
    s.run(&["run"]).expect(0);
    assert_committed(&s);

    let n = mock.model_requests() as u64;
    let expected = round_priced(n);
    let agent = s.coder();
    let cost = agent["costUsd"].as_f64().unwrap_or(-1.0);
    assert!(
        close(cost, expected),
        "costUsd {cost}, expected {n} requests priced = {expected}: {agent:#}"
    );
}

// ------------------------------------------------------------- (b) a rate limit is waited out

/// The mock answers 429 for its first `secs` seconds; the CLI (its own retries off) fails fast;
/// orch waits and runs the agent again in the same round: one commit, no escalation, the wait
/// in the round log and the events.
fn rate_limit_is_waited_out(cli: &str) {
    if !available(cli) {
        return;
    }
    let mock = Mock::start(&["--scenario", "429", "--fail-seconds", "3"]);
    let s = Setup::new(
        cli,
        &mock,
        1,
        json!({"limits": {"backoffS": 1, "maxWaitS": 120}}),
    );
    // One unproductive run would be enough to escalate: the limited runs must not count.
    let mut m: Value =
        serde_json::from_str(&orch::mission::strip_comments(&s.repo.read("orch.json"))).unwrap();
    m["agents"][0]["escalateAfter"] = json!(1);
    s.repo.mission(m);
    let model = s.first_model();
    let commits = |s: &Setup| -> u32 {
        s.repo
            .git(&["rev-list", "--count", "HEAD"])
            .parse()
            .unwrap()
    };
    let before = commits(&s);
    s.run(&["run"]).expect(0);
    assert_committed(&s);
    assert_eq!(commits(&s), before + 1, "one round commit");

    let log = s.repo.round_log(1);
    let agent = Repo::agent(&log, "coder");
    assert_eq!(agent["status"], "ok", "{agent:#}");
    assert_eq!(agent["model"], json!(model), "no escalation: {agent:#}");
    let waited = log["timing"]["waited"].as_u64().unwrap_or(0);
    assert!(waited > 0, "timing.waited is {waited}: {:#}", log["timing"]);
    let events = s.events();
    assert!(
        events.iter().any(|e| e["event"] == "limitWait"),
        "no limitWait event: {events:#?}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "escalation"),
        "an escalation: {events:#?}"
    );
    let state = s.repo.state();
    let st = &state["agents"]["coder"];
    assert!(
        st["modelIndex"].as_u64().unwrap_or(0) == 0
            && st["model"].as_str().is_none_or(|m| m == model),
        "the coder moved on its ladder: {st}"
    );
    assert!(
        mock.model_requests() >= 3,
        "the CLI met the 429 at least once before it succeeded"
    );
}

#[test]
fn claude_rate_limit_is_waited_out() {
    rate_limit_is_waited_out("claude");
}

#[test]
fn codex_rate_limit_is_waited_out() {
    rate_limit_is_waited_out("codex");
}

#[test]
fn gemini_rate_limit_is_waited_out() {
    rate_limit_is_waited_out("gemini");
}

// ------------------------------------------------------------ (c) a bad key stops the run

/// A 401: the first agent's run fails with cause `auth`, no other agent starts, and orch exits
/// 6 with the CLI's own words and the agent's name.
fn invalid_key_stops_the_run(cli: &str, words: &str) {
    invalid_key_stops_the_run_with(cli, "401", words)
}

fn invalid_key_stops_the_run_with(cli: &str, scenario: &str, words: &str) {
    if !available(cli) {
        return;
    }
    let mock = Mock::start(&["--scenario", scenario]);
    let s = Setup::new(cli, &mock, 2, json!({"rounds": 3}));
    let run = s.run(&["run"]).expect(6);
    let err = run.stderr();
    assert!(
        err.contains(words),
        "the CLI's words {words:?} are not in:\n{err}"
    );
    // The stop names the agent and carries the CLI's words.
    let events = s.events();
    let stop = events
        .iter()
        .find(|e| e["event"] == "stop")
        .unwrap_or_else(|| panic!("no stop event: {events:#?}"));
    assert_eq!(stop["exitCode"], 6, "{stop}");
    let reason = stop["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("coder") && reason.contains(words),
        "the stop reason does not name the agent and the CLI's words: {stop}"
    );
    let starts = events.iter().filter(|e| e["event"] == "agentStart").count();
    assert_eq!(starts, 1, "only the first agent ran");
    let agent = s.coder();
    assert_eq!(agent["status"], "failed", "{agent:#}");
    assert_eq!(agent["cause"], "auth", "{agent:#}");
    assert!(
        agent["error"].as_str().unwrap_or("").contains(words),
        "{agent:#}"
    );
    assert!(!s.repo.has_round_log(2), "no second round");
}

#[test]
fn claude_invalid_key_stops_the_run() {
    invalid_key_stops_the_run("claude", "Invalid API key");
}

/// aider exits 0 whatever the model API said: its words alone say the key is wrong.
#[test]
fn aider_invalid_key_stops_the_run() {
    invalid_key_stops_the_run("aider", "OpenAIException - Incorrect");
}

#[test]
fn codex_invalid_key_stops_the_run() {
    invalid_key_stops_the_run("codex", "401 Unauthorized");
}

/// Google answers a wrong key with 400 INVALID_ARGUMENT / API_KEY_INVALID, not 401.
#[test]
fn gemini_invalid_key_stops_the_run() {
    invalid_key_stops_the_run_with("gemini", "badkey", "API key not valid");
}

/// The real Gemini CLI without `--skip-trust` (the rest of `orch init --agent gemini`'s
/// command as written) refuses the folder it is given: exit 55. orch reads cause
/// `untrustedFolder`, starts no other agent and stops with exit 6, naming the fix.
#[test]
fn gemini_in_an_untrusted_folder_stops_the_run_naming_the_fix() {
    if !available("gemini") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new("gemini", &mock, 2, json!({"rounds": 3}));
    let mut m: Value =
        serde_json::from_str(&orch::mission::strip_comments(&s.repo.read("orch.json"))).unwrap();
    for a in m["agents"].as_array_mut().unwrap() {
        a["command"]
            .as_array_mut()
            .unwrap()
            .retain(|w| w != "--skip-trust");
    }
    s.repo.mission(m);
    let run = s.run(&["run"]).expect(6);
    let err = run.stderr();
    let agent = s.coder();
    assert_eq!(agent["exitCode"], 55, "{agent:#}\n{err}");
    assert_eq!(agent["cause"], "untrustedFolder", "{agent:#}");
    assert!(
        err.contains("Fix: add --skip-trust"),
        "no fix on the console:\n{err}"
    );
    let starts = s
        .events()
        .iter()
        .filter(|e| e["event"] == "agentStart")
        .count();
    assert_eq!(starts, 1, "only the first agent ran");
    assert_eq!(mock.model_requests(), 0);
    assert!(!s.repo.has_round_log(2), "no second round");
}

// --------------------------------------------------- (d) a denied Bash command is recorded

#[test]
fn claude_denied_bash_command_is_in_the_round_log() {
    if !available("claude") {
        return;
    }
    // A command no permission setup orch init writes would allow.
    let mock = Mock::start(&["--scenario", "denied", "--deny-command", "sh ./deploy.sh"]);
    let s = Setup::new("claude", &mock, 1, json!({}));
    let run = s.run(&["run"]);
    let agent = s.coder();
    let denials = &agent["permissionDenials"];
    let text = denials.to_string();
    assert!(
        text.contains("Bash") && text.contains("sh ./deploy.sh"),
        "permissionDenials {denials} lacks the Bash command; stderr:\n{}",
        run.stderr()
    );
    // It changed nothing, so the run failed for that reason.
    assert_eq!(agent["status"], "failed", "{agent:#}");
    assert_eq!(agent["cause"], "permissionDenied", "{agent:#}");
}

// ------------------------------------------------------------------ a per-agent budget's cap

/// The coder `orch init --agent claude` writes, with `budgetUsd` $0.001: orch appends
/// `--max-budget-usd 0.001` to its command; the real Claude Code accepts it after the init
/// command's flags and stops after the mock's first turn ($0.0032); orch reads that run as
/// `overBudget` with Claude's cost, and with its only agent over budget stops before round 2
/// (exit 3).
#[test]
fn claude_is_capped_at_the_rest_of_its_budget() {
    if !available("claude") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new("claude", &mock, 1, json!({"rounds": 3}));
    let mut m: Value =
        serde_json::from_str(&orch::mission::strip_comments(&s.repo.read("orch.json"))).unwrap();
    m["agents"][0]["budgetUsd"] = json!(0.001);
    s.repo.mission(m);
    let run = s.run(&["run"]).expect(3);
    assert!(
        run.stderr()
            .contains("every agent is over its budget: coder"),
        "{}",
        run.stderr()
    );
    // One model request: without the cap Claude Code makes two (the edit, then its answer).
    assert_eq!(mock.model_requests(), 1, "{:#?}", mock.requests());
    let log = s.repo.round_log(1);
    let agent = Repo::agent(&log, "coder");
    assert_eq!(agent["status"], "failed", "{agent:#}");
    assert_eq!(agent["cause"], "overBudget", "{agent:#}");
    // Claude Code stops on its cap either before or after it runs the turn's Write (seen both
    // ways): a run that ended by itself after its edit has its change go to the tests all the
    // same (`failedChanges: "test"`, the default), and its error says so after Claude's words.
    if agent["changedFiles"] == 0 {
        assert_eq!(
            agent["error"], "Reached maximum budget ($0.001)",
            "{agent:#}"
        );
    } else {
        assert_eq!(
            agent["error"],
            "Reached maximum budget ($0.001); its change goes to the tests with the others (failedChanges: test)",
            "{agent:#}"
        );
        assert_eq!(agent["changeTested"], true, "{agent:#}");
    }
    let result = s.claude_result();
    let cost = agent["costUsd"].as_f64().unwrap();
    assert!(cost > 0.001, "{agent:#}");
    assert!(close(cost, result["total_cost_usd"].as_f64().unwrap()));
    assert!(!s.repo.has_round_log(2));
    assert_eq!(s.repo.state()["agents"]["coder"]["consecutiveFailures"], 0);
}

/// The real Claude Code stopped by `--max-turns 1` right after its edit (the mock's first turn
/// is the Write call): exit 1, `error_max_turns`. Its change is complete as far as orch can
/// tell, so it is tested and committed; the run stays `failed`, with cause `maxTurns`.
#[test]
fn claude_out_of_turns_after_its_edit_has_the_edit_tested_and_committed() {
    if !available("claude") {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new(
        "claude",
        &mock,
        1,
        json!({"git": {"isolation": "worktree", "commit": true}}),
    );
    let mut m: Value =
        serde_json::from_str(&orch::mission::strip_comments(&s.repo.read("orch.json"))).unwrap();
    let mut command = m["agents"][0]["command"].as_array().unwrap().clone();
    command.extend([json!("--max-turns"), json!("1")]);
    m["agents"][0]["command"] = json!(command);
    s.repo.mission(m);
    let run = s.run(&["run"]).expect(0);
    assert_eq!(mock.model_requests(), 1, "{:#?}", mock.requests());
    let log = s.repo.round_log(1);
    let agent = Repo::agent(&log, "coder");
    assert_eq!(agent["status"], "failed", "{agent:#}");
    assert_eq!(agent["exitCode"], 1, "{agent:#}");
    assert_eq!(agent["cause"], "maxTurns", "{agent:#}");
    assert_eq!(agent["changeTested"], true, "{agent:#}");
    assert!(
        run.stderr()
            .contains("(maxTurns: Reached maximum number of turns (1)"),
        "{}",
        run.stderr()
    );
    assert_committed(&s);
    assert_eq!(log["tests"]["status"], "passed", "{log:#}");
}

// ------------------------------------------------------------------ sessions that carry over

/// `session: true` with the real Claude Code: round 1 starts the session orch names
/// (`--session-id`), round 2 resumes it (`--resume`, with `-p --output-format json`) and sends
/// only the `{{changes}}` prompt; the model request of round 2 carries round 1's conversation.
#[test]
fn claude_session_is_resumed_with_the_changes_prompt() {
    session_is_resumed("claude");
}

/// The same with the real Codex: it names the session itself (`thread.started.thread_id`, read
/// from round 1's output) and round 2 runs `codex exec ... resume ID -`.
#[test]
fn codex_session_is_resumed_with_the_changes_prompt() {
    session_is_resumed("codex");
}

fn session_is_resumed(cli: &str) {
    if !available(cli) {
        return;
    }
    let mock = Mock::start(&["--scenario", "ok"]);
    let s = Setup::new(cli, &mock, 1, json!({"rounds": 2}));
    let mut m: Value =
        serde_json::from_str(&orch::mission::strip_comments(&s.repo.read("orch.json"))).unwrap();
    m["agents"][0]["session"] = json!(true);
    s.repo.mission(m);
    s.run(&["run"]).expect(0);

    let r1 = s.repo.round_log(1);
    let e1 = Repo::agent(&r1, "coder");
    assert_eq!(e1["status"], "ok", "{e1:#}");
    let id = e1["sessionId"]
        .as_str()
        .expect("round 1 has a session")
        .to_string();
    assert!(e1.get("sessionResumed").is_none(), "{e1:#}");
    let r2 = s.repo.round_log(2);
    let e2 = Repo::agent(&r2, "coder");
    assert!(
        matches!(e2["status"].as_str(), Some("ok" | "empty")),
        "round 2 resumed and ran: {e2:#}"
    );
    assert_eq!(e2["sessionResumed"], true, "{e2:#}");
    assert_eq!(e2["sessionId"], id.as_str(), "the CLI kept the session id");

    // What the model saw in round 2: the short prompt, after round 1's conversation.
    let first_prompt = s.repo.read(".orch/prompts/round-0001/coder.md");
    let second_prompt = s.repo.read(".orch/prompts/round-0002/coder.md");
    assert!(second_prompt.contains("What changed since your last run (round 1"));
    assert!(second_prompt.len() < first_prompt.len(), "{second_prompt}");
    let probe = first_prompt
        .lines()
        .find(|l| l.len() > 20)
        .expect("round 1's prompt has a line to look for")
        .to_string();
    let resumed = mock
        .requests()
        .into_iter()
        .map(|r| r["body"].to_string())
        .find(|b| b.contains("What changed since your last run"))
        .expect("a model request carries round 2's prompt");
    let probe_json = serde_json::to_string(&probe).unwrap();
    let probe_json = probe_json.trim_matches('"');
    assert!(
        resumed.contains(probe_json),
        "round 2's request does not carry round 1's prompt ({probe:?}): the session was not resumed"
    );
}

// ------------------------------------------------------------------ orch demo --real-model

/// `orch demo --real-model URL`: the demo's two code agents are the real Claude Code pointed at
/// URL (here the scripted mock, which answers ui-dev's prompt with an Edit of src/ui.txt), one
/// at a time; the rest of the demo (producer, fixer, reviewer, tests) is as without the flag.
/// Old code: `--real-model` was an unknown argument (exit 2).
#[test]
fn demo_real_model_runs_claude_code_against_the_url() {
    if !available("claude") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("demo");
    let file = dir.join(".orch/worktrees/ui-dev/src/ui.txt");
    let mock = Mock::start(&[
        "--scenario",
        "ok",
        "--edit-path",
        file.to_str().unwrap(),
        "--edit-old",
        "a header and a footer",
        "--edit-content",
        "a header, a menu and a footer",
    ]);
    let home = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["demo", "--rounds", "1", "--real-model", &mock.url()])
        .args(["--real-model-name", "qwen2.5-coder:1.5b", "--dir"])
        .arg(&dir)
        .env("PATH", path)
        .env("HOME", home.path())
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Claude Code asked the URL, with the demo's prompts and the model name.
    let bodies: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r["body"].to_string())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("src/ui.txt describes the page layout")),
        "no request carried ui-dev's prompt: {bodies:#?}"
    );
    assert!(bodies.iter().any(|b| b.contains("src/api.txt lists")));
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("\"model\":\"qwen2.5-coder:1.5b\"")),
        "no request named the model"
    );
    // ui-dev's edit is committed.
    let log: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".orch/rounds/round-0001.json")).unwrap(),
    )
    .unwrap();
    let ui = Repo::agent(&log, "ui-dev");
    assert_eq!(ui["status"], "ok", "{ui:#}");
    assert_eq!(ui["files"], json!(["src/ui.txt"]), "{ui:#}");
    assert_eq!(
        std::fs::read_to_string(dir.join("src/ui.txt")).unwrap(),
        "a header, a menu and a footer\n"
    );
    // One code agent at a time: a local server answers one request at a time.
    let m: Value = serde_json::from_str(&orch::mission::strip_comments(
        &std::fs::read_to_string(dir.join("orch.json")).unwrap(),
    ))
    .unwrap();
    assert_eq!(m["maxConcurrency"], 1);
}

/// Without `claude` on PATH, `--real-model` stops before making anything: exit 2, saying so.
#[test]
fn demo_real_model_needs_claude_on_path() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["demo", "--real-model", "http://127.0.0.1:9", "--dir"])
        .arg(&dir)
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`claude` is not on PATH"), "{stderr}");
    assert!(!dir.exists(), "nothing was made");
}

// ------------------------------------------------------------------ stuck runs (issue 31)

/// `cli` against the mock's `loop` (the same `git status --short` shell call answered to every
/// request, forever): orch reads the calls from the CLI's stream and stops the run as `loop` at
/// the fifth, as at a timeout, long before the timeout.
fn a_looping_cli_is_stopped_as_loop(cli: &str, tool: &str) {
    if !available(cli) {
        return;
    }
    let mock = Mock::start(&["--scenario", "loop"]);
    let s = Setup::new(
        cli,
        &mock,
        1,
        json!({"stuck": {"idleS": 120, "repeats": 5}}),
    );
    let t = Instant::now();
    s.run(&["run"]).expect(0);
    let took = t.elapsed();
    let log = s.repo.round_log(1);
    let a = Repo::agent(&log, "coder");
    assert_eq!(a["status"], "timeout", "{log:#}");
    assert_eq!(a["cause"], "loop", "{log:#}");
    let error = a["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{tool} `git status --short` called 5 times")),
        "{error}"
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
    // It asked the model at least five times (one request per call), and was stopped soon
    // after: a run left alone would ask forever.
    assert!(
        mock.model_requests() >= 5,
        "{} requests",
        mock.model_requests()
    );
}

#[test]
fn claude_looping_on_one_tool_call_is_stopped_as_loop() {
    a_looping_cli_is_stopped_as_loop("claude", "Bash");
}

#[test]
fn codex_looping_on_one_tool_call_is_stopped_as_loop() {
    a_looping_cli_is_stopped_as_loop("codex", "Shell");
}

/// `cli` against the mock's `stall` (the edit, then a model stream that sends its first event
/// and stops answering, the connection open): the CLI prints nothing more, and orch stops it as
/// `idle` after `idleS`, not at its timeout, its edit kept in its ref.
fn a_stalled_cli_is_stopped_as_idle(cli: &str) {
    if !available(cli) {
        return;
    }
    let mock = Mock::start(&["--scenario", "stall"]);
    let s = Setup::new(cli, &mock, 1, json!({"stuck": {"idleS": 5, "repeats": 5}}));
    let t = Instant::now();
    s.run(&["run"]).expect(0);
    let took = t.elapsed();
    let log = s.repo.round_log(1);
    let a = Repo::agent(&log, "coder");
    assert_eq!(a["status"], "timeout", "{log:#}");
    assert_eq!(a["cause"], "idle", "{log:#}");
    let error = a["error"].as_str().unwrap();
    assert!(
        error.starts_with("no output or file change for 5.0s; ")
            && error.contains("refs/orch/timeout/round-1/coder"),
        "{error}"
    );
    let timeout = Duration::from_millis(a["timeoutMs"].as_u64().unwrap());
    assert!(
        took < timeout / 2,
        "took {took:?}; the timeout is {timeout:?}"
    );
    let kept = s.repo.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        "refs/orch/timeout/round-1/coder",
    ]);
    assert!(kept.contains("hello.txt"), "{kept}");
    assert!(!s.repo.exists("hello.txt"));
}

#[test]
fn claude_stalled_mid_stream_is_stopped_as_idle() {
    a_stalled_cli_is_stopped_as_idle("claude");
}

#[test]
fn codex_stalled_mid_stream_is_stopped_as_idle() {
    a_stalled_cli_is_stopped_as_idle("codex");
}
