//! The sandbox (issue 30) with the real bubblewrap: a command run under a
//! `orch::engine::exec::sandbox::Policy`, with the built `orch` as the relay of its network
//! allowlist, reaches only what the policy allows.
//!
//! Where bwrap cannot run, a loud SKIP, unless `ORCH_REQUIRE_SANDBOX=1` (`.ci/run` sets it):
//! then a failure.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orch::engine::exec::sandbox::net::Broker;
use orch::engine::exec::sandbox::{GitAccess, HostPort, Network, Policy};

use crate::common::{bwrap_runs, left_after, Repo};

/// Runs `sh -c script` under `policy` (with `broker`'s socket when given) and returns what it
/// did.
fn run(policy: &Policy, broker: Option<&Broker>, script: &str) -> Output {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_orch"));
    let command = ["sh".to_string(), "-c".to_string(), script.to_string()];
    let argv = policy.argv(&command, broker.map(|b| (exe.as_path(), b.socket())));
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The tests that only assert a connection fails would pass without `curl` (nothing would
/// try to connect): they check it is there first.
fn require_curl() {
    let ok = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "curl is needed to try the connections this test expects to fail"
    );
}

/// A server on the host's loopback that answers each connection with `hello` and closes.
fn hello_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = c.set_read_timeout(Some(std::time::Duration::from_millis(200)));
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        }
    });
    port
}

/// A repository with one agent worktree under its state folder, as orch lays them out.
fn repo_with_worktree(name: &str) -> (Repo, PathBuf) {
    let repo = Repo::new();
    let wt = repo.path().join(".orch/worktrees").join(name);
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        &wt.display().to_string(),
    ]);
    (repo, wt)
}

fn worktree_policy(repo: &Repo, wt: &Path, name: &str) -> Policy {
    let mut p = Policy::new(wt);
    p.hide = vec![repo.path().join(".orch")];
    p.git = Some(GitAccess {
        common_dir: repo.path().join(".git"),
        admin_dir: Some(repo.path().join(".git/worktrees").join(name)),
    });
    p
}

#[test]
fn an_allowed_loopback_port_is_reached_and_another_is_refused() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    let allowed = hello_server();
    let other = hello_server();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Policy::new(dir.path());
    let allow = vec![HostPort::parse(&format!("127.0.0.1:{allowed}")).unwrap()];
    p.network = Network::Allow(allow.clone());
    let broker = Broker::start(&std::env::temp_dir(), allow).unwrap();
    let o = run(
        &p,
        Some(&broker),
        &format!(
            "curl -fsS --noproxy '*' --max-time 10 http://127.0.0.1:{allowed}/ && echo; \
             curl -fsS --noproxy '*' --max-time 10 http://127.0.0.1:{other}/ && echo REACHED-OTHER; \
             curl -fsS --max-time 10 http://127.0.0.1:{other}/ && echo REACHED-OTHER-VIA-PROXY; \
             curl -fsS --max-time 10 --noproxy '' -x http://127.0.0.1:3128 http://127.0.0.1:{other}/ \
               && echo REACHED-OTHER-VIA-PROXY; true"
        ),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("stdout: hello"),
        "the allowed port answers:\n{out}"
    );
    assert!(!out.contains("REACHED-OTHER"), "{out}");
    assert!(
        broker.denied().contains(&format!("127.0.0.1:{other}")),
        "the refused attempt is kept for orch to report: {:?}\n{out}",
        broker.denied()
    );
}

#[test]
fn an_allowed_host_is_reached_through_the_proxy_by_connect() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    // A "remote" host stands in as 127.0.0.1 reached through the proxy's CONNECT: what
    // HTTPS_PROXY clients do for api.anthropic.com:443.
    let allowed = hello_server();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Policy::new(dir.path());
    let allow = vec![HostPort::parse(&format!("127.0.0.1:{allowed}")).unwrap()];
    p.network = Network::Allow(allow.clone());
    let broker = Broker::start(&std::env::temp_dir(), allow).unwrap();
    let o = run(
        &p,
        Some(&broker),
        &format!(
            "curl -fsS --max-time 10 -p -x http://127.0.0.1:3128 http://127.0.0.1:{allowed}/; echo; \
             curl -fsS --max-time 10 -p -x http://127.0.0.1:3128 https://example.com/ \
               && echo REACHED-EXAMPLE; true"
        ),
    );
    let out = text(&o);
    assert!(out.contains("stdout: hello"), "{out}");
    assert!(!out.contains("REACHED-EXAMPLE"), "{out}");
    assert!(
        broker.denied().contains(&"example.com:443".to_string()),
        "{out}"
    );
}

#[test]
fn without_a_network_nothing_on_the_host_is_reached() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    require_curl();
    let port = hello_server();
    let dir = tempfile::tempdir().unwrap();
    let p = Policy::new(dir.path());
    let o = run(
        &p,
        None,
        &format!("curl -fsS --max-time 5 http://127.0.0.1:{port}/ && echo REACHED"),
    );
    let out = text(&o);
    assert!(!o.status.success() && !out.contains("REACHED"), "{out}");
}

#[test]
fn a_file_in_the_hidden_home_cannot_be_read_but_a_named_one_can() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/id_rsa"), "SECRET-KEY").unwrap();
    std::fs::create_dir_all(home.path().join(".claude")).unwrap();
    std::fs::write(home.path().join(".claude/settings.json"), "{}").unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut p = Policy::new(work.path());
    p.hide = vec![home.path().to_path_buf()];
    p.write.push(home.path().join(".claude"));
    let h = home.path().display();
    let o = run(
        &p,
        None,
        &format!(
            "cat {h}/.ssh/id_rsa; echo x > {h}/.bashrc && echo WROTE-BASHRC; \
             cat {h}/.claude/settings.json && echo > {h}/.claude/new && echo CLAUDE-OK"
        ),
    );
    let out = text(&o);
    assert!(!out.contains("SECRET-KEY"), "{out}");
    assert!(
        out.contains("CLAUDE-OK"),
        "the named state folder is writable:\n{out}"
    );
    assert!(home.path().join(".claude/new").exists(), "{out}");
    // The hidden home is an empty folder of the sandbox's own: a write there lands nowhere.
    assert!(!home.path().join(".bashrc").exists(), "{out}");
}

#[test]
fn a_worktree_commits_but_cannot_touch_config_hooks_or_another_worktree() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    let (repo, wt) = repo_with_worktree("a");
    let other = repo.path().join(".orch/worktrees/b");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        &other.display().to_string(),
    ]);
    let config_before = repo.read(".git/config");
    let p = worktree_policy(&repo, &wt, "a");
    let g = repo.path().join(".git").display().to_string();
    let o = run(
        &p,
        None,
        &format!(
            "git -c user.name=a -c user.email=a@b commit -q --allow-empty -m honest && echo COMMITTED; \
             git config core.fsmonitor 'touch /tmp/pwned; false' && echo CONFIG-WRITTEN; \
             echo 'touch /tmp/pwned' > {g}/hooks/post-commit && echo HOOK-WRITTEN; \
             echo x > {g}/info/exclude && echo INFO-WRITTEN; \
             echo x > {b}/planted.txt && echo PLANTED; \
             echo x > {s}/state.json && echo STATE-WRITTEN; \
             ls {s}; true",
            b = other.display(),
            s = repo.path().join(".orch").display(),
        ),
    );
    let out = text(&o);
    assert!(out.contains("COMMITTED"), "{out}");
    for planted in ["CONFIG-WRITTEN", "HOOK-WRITTEN", "INFO-WRITTEN", "PLANTED"] {
        assert!(!out.contains(planted), "{planted}:\n{out}");
    }
    assert_eq!(repo.read(".git/config"), config_before);
    assert!(!repo.exists(".git/hooks/post-commit"));
    assert!(!other.join("planted.txt").exists());
    // orch's state folder is an empty folder of the sandbox's own: a write there lands nowhere.
    assert!(!repo.exists(".orch/state.json"), "{out}");
    // The commit landed in the worktree's own HEAD.
    let log = Command::new("git")
        .args(["log", "-1", "--format=%s"])
        .current_dir(&wt)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), "honest");
}

#[test]
fn in_the_main_tree_the_git_folder_stays_read_only() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    // Shared isolation: the agent writes the main tree, which holds .git and .orch.
    let repo = Repo::new();
    std::fs::create_dir_all(repo.path().join(".orch")).unwrap();
    std::fs::write(repo.path().join(".orch/state.json"), "{}").unwrap();
    let mut p = Policy::new(repo.path());
    p.hide = vec![repo.path().join(".orch")];
    p.git = Some(GitAccess {
        common_dir: repo.path().join(".git"),
        admin_dir: None,
    });
    let o = run(
        &p,
        None,
        "echo work > src/app.txt && echo EDITED; git diff --stat; \
         git config core.hooksPath /tmp && echo CONFIG-WRITTEN; \
         echo x > .git/hooks/pre-commit && echo HOOK-WRITTEN; \
         cat .orch/state.json && echo STATE-READ; true",
    );
    let out = text(&o);
    assert!(
        out.contains("EDITED") && out.contains("src/app.txt"),
        "{out}"
    );
    for bad in ["CONFIG-WRITTEN", "HOOK-WRITTEN", "STATE-READ"] {
        assert!(!out.contains(bad), "{bad}:\n{out}");
    }
    assert_eq!(repo.read("src/app.txt"), "work\n");
}

#[test]
fn orch_and_other_processes_are_out_of_sight() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Policy::new(dir.path());
    let me = std::process::id();
    let o = run(
        &p,
        None,
        &format!("kill -0 {me} 2>/dev/null && echo SEES-ORCH; ls /proc | grep -c '^[0-9]'"),
    );
    let out = text(&o);
    assert!(!out.contains("SEES-ORCH"), "{out}");
    let count: u32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(99);
    assert!(
        count <= 5,
        "only the sandbox's own processes: {count}\n{out}"
    );
}

// ------------------------------------------------------------------ orch run with a sandbox

/// The hostile agent's command: `hostile-agent.sh NAME OTHER MARKER SECRET PORT`.
fn hostile(name: &str, other: &str, marker: &Path, secret: &Path, port: u16) -> serde_json::Value {
    serde_json::json!([
        "sh",
        crate::common::fixture("hostile-agent.sh"),
        name,
        other,
        marker.display().to_string(),
        secret.display().to_string(),
        port.to_string()
    ])
}

/// A home folder with a secret key in it, and the marker a planted command would create.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
        std::fs::write(dir.path().join(".ssh/id_rsa"), "SECRET-KEY-TEXT\n").unwrap();
        Home { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn secret(&self) -> PathBuf {
        self.path().join(".ssh/id_rsa")
    }
    fn marker(&self) -> PathBuf {
        self.path().join("pwned")
    }
    /// `orch ARGS` in `repo` with this folder as its HOME.
    fn orch(&self, repo: &Repo, args: &[&str]) -> crate::common::Run {
        repo.orch_env(args, &[("HOME", &self.path().display().to_string())])
    }
}

/// The mission of the hostile agent `a` beside the honest `b`, each in its worktree, under
/// `sandbox`; `off_list`: the port the hostile one tries.
fn hostile_beside_honest(
    home: &Home,
    sandbox: serde_json::Value,
    off_list: u16,
) -> serde_json::Value {
    serde_json::json!({
        "name": "hostile",
        "rounds": 1,
        "sandbox": sandbox,
        "agents": [
            {"name": "a", "phase": "code",
             "command": hostile("a", "b", &home.marker(), &home.secret(), off_list)},
            {"name": "b", "phase": "code",
             "command": crate::common::agent_cmd(&["--write", "src/b.txt=honest b"])},
        ],
        "tests": {"command": crate::common::tests_cmd("0")},
        "git": {"isolation": "worktree", "commit": true},
    })
}

/// Fails the test if the hostile agent's own account (`reach.txt`, in its commit) says it
/// reached any of `words`.
fn assert_reached_none(repo: &Repo, words: &[&str]) {
    let reached = repo.read("reach.txt");
    for word in words {
        assert!(
            !reached.lines().any(|l| l == *word),
            "the agent reached {word}:\n{reached}"
        );
    }
}

/// What of the hostile agent `a`'s forgeries in the files orch hands `b` (attempt 7 of
/// hostile-agent.sh) landed where orch reads them: `inbox` (a task in b's inbox, or in the
/// queue), `handoff` (b's handoff file), `scratch` (a file in the round's scratch folder, where
/// the sims stage their output).
fn forged(repo: &Repo) -> Vec<&'static str> {
    let has = |rel: &str| repo.exists(rel) && repo.read(rel).contains("forged by a");
    let mut landed = Vec::new();
    if has(".orch/scratch/round-0001/agents/b/tasks.jsonl")
        || has(".orch/scratch/round-0001/b.tasks.jsonl")
        || has(".orch/tasks.json")
    {
        landed.push("inbox");
    }
    if has(".orch/handoff/b/handoff.json") || has(".orch/handoff/b.json") {
        landed.push("handoff");
    }
    if repo.exists(".orch/scratch/round-0001/forged-by-a")
        || repo.exists(".orch/scratch/round-0001/agents/forged-by-a")
    {
        landed.push("scratch");
    }
    landed
}

/// Issue 30's attempts, by an agent under `"sandbox": "bwrap"` beside an honest one, in
/// worktree isolation: each fails or lands nowhere, the honest work of both lands, and the
/// connection refused is reported (console, round log). Old code: the key `sandbox` was
/// unknown (exit 2); with `"sandbox": "none"` the same agent reached config, hooks-path, hook,
/// other-worktree, secret, port and orch-pid (`with_no_sandbox_the_same_agent_reaches_it_all`).
#[test]
fn a_hostile_agent_in_the_sandbox_reaches_nothing_and_honest_work_lands() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    require_curl();
    let repo = Repo::new();
    let home = Home::new();
    let allowed = hello_server();
    let off_list = hello_server();
    repo.mission(hostile_beside_honest(
        &home,
        serde_json::json!({"mode": "bwrap", "allowHosts": [format!("127.0.0.1:{allowed}")]}),
        off_list,
    ));
    let config_before = repo.read(".git/config");
    let run = home.orch(&repo, &["run"]);
    let stderr = run.stderr();
    assert_eq!(run.code(), 0, "{stderr}");

    // The honest work of both landed.
    let files = repo.git(&["show", "--name-only", "--format=", "HEAD"]);
    assert!(files.lines().any(|f| f == "src/a.txt"), "{files}\n{stderr}");
    assert!(files.lines().any(|f| f == "src/b.txt"), "{files}");
    // What the agent reached, from its own account in the commit.
    assert_reached_none(
        &repo,
        &[
            "config",
            "hooks-path",
            "hook",
            "other-worktree",
            "secret",
            "port",
            "orch-pid",
        ],
    );
    // Nothing forged in the files orch hands the other agent (old code: its inbox, handoff
    // file and the scratch folder were all writable).
    assert_eq!(forged(&repo), Vec::<&str>::new(), "{stderr}");
    // And from outside: nothing planted, nothing read.
    assert_eq!(repo.read(".git/config"), config_before);
    assert!(!repo.exists(".git/hooks/post-commit"));
    assert!(
        !repo.exists("planted.txt") && !files.contains("planted.txt"),
        "{files}"
    );
    assert!(!home.marker().exists(), "a planted command ran");
    assert!(
        !home.path().join(".bashrc").exists(),
        "~/.bashrc was written"
    );
    let history = repo.git(&["log", "-p", "--all"]);
    assert!(
        !history.contains("SECRET-KEY-TEXT"),
        "the secret reached the history"
    );
    // The refused connection is reported where orch sees it.
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "a");
    assert_eq!(
        a["sandboxRefused"],
        serde_json::json!([format!("127.0.0.1:{off_list}")]),
        "{a:#}"
    );
    assert!(
        stderr.contains(&format!(
            "agent a: its sandbox refused connections to 127.0.0.1:{off_list}"
        )),
        "{stderr}"
    );
    // And in the agent's `agentEnd` event, for scripts and hooks.
    let events = repo.read(".orch/events.ndjson");
    let end: serde_json::Value = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "agentEnd" && e["agent"] == "a")
        .unwrap_or_else(|| panic!("no agentEnd for a:\n{events}"));
    assert_eq!(
        end["sandboxRefused"],
        serde_json::json!([format!("127.0.0.1:{off_list}")]),
        "{end}"
    );
}

/// The control of the test above: the same agent, `"sandbox": "none"`, reaches what the
/// sandbox stops (what every agent could do before issue 30).
#[test]
fn with_no_sandbox_the_same_agent_reaches_it_all() {
    let repo = Repo::new();
    let home = Home::new();
    let off_list = hello_server();
    repo.mission(hostile_beside_honest(&home, "none".into(), off_list));
    let run = home.orch(&repo, &["run"]);
    let reached = repo.read("reach.txt");
    for word in ["config", "hook", "secret", "port", "orch-pid"] {
        assert!(
            reached.lines().any(|l| l == word),
            "without a sandbox the agent reaches {word}: {reached}\n{}",
            run.stderr()
        );
    }
    assert_eq!(
        forged(&repo),
        ["inbox", "handoff", "scratch"],
        "{}",
        run.stderr()
    );
}

/// `sandbox.tests` (on with the sandbox): the test command runs the agents' code with what an
/// agent has: a test that reads a secret from the home folder fails, one that connects to a
/// port off the allowlist fails, and the refusal is reported.
#[test]
fn a_test_command_cannot_read_the_home_folder_or_reach_a_port_off_the_list() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    require_curl();
    let home = Home::new();
    let off_list = hello_server();
    let allowed = hello_server();
    let secret = home.secret().display().to_string();
    let probes = [
        (
            "secret",
            format!("cat {secret} && echo '1 passed, 0 failed'"),
        ),
        (
            "port",
            format!(
                "curl -fsS --max-time 5 --noproxy '' -x http://127.0.0.1:3128 \
                 http://127.0.0.1:{off_list}/ && echo '1 passed, 0 failed'"
            ),
        ),
    ];
    for (what, script) in probes {
        let repo = Repo::new();
        repo.mission(serde_json::json!({
            "name": "tests-fenced",
            "rounds": 1,
            "sandbox": {"mode": "bwrap", "allowHosts": [format!("127.0.0.1:{allowed}")]},
            "agents": [{"name": "a", "phase": "code",
                        "command": crate::common::agent_cmd(&["--write", "src/a.txt=a"])}],
            "tests": {"command": ["sh", "-c", script]},
            "git": {"isolation": "worktree", "commit": true},
        }));
        let run = home.orch(&repo, &["run"]);
        let stderr = run.stderr();
        let baseline = repo.read(".orch/logs/baseline-tests.log");
        assert!(
            !baseline.contains("SECRET-KEY-TEXT") && !baseline.contains("1 passed"),
            "{what}: the baseline test run reached it:\n{baseline}\n{stderr}"
        );
        let log = repo.round_log(1);
        let tests = &log["tests"];
        assert_ne!(tests["status"], "passed", "{what}: {tests:#}\n{stderr}");
        let text = repo.read(".orch/logs/round-0001/tests.log");
        assert!(!text.contains("SECRET-KEY-TEXT"), "{what}: {text}");
        if what == "port" {
            assert!(
                stderr.contains(&format!(
                    "tests: its sandbox refused connections to 127.0.0.1:{off_list}"
                )),
                "{stderr}"
            );
        }
    }
}

/// `orch validate` (and `orch run`) with `"sandbox": "bwrap"` where bwrap is not installed:
/// exit 2 before anything is spent, naming the key, the reason and the fix.
#[test]
fn bwrap_missing_is_refused_before_anything_is_spent() {
    let repo = Repo::new();
    repo.mission(serde_json::json!({
        "name": "no-bwrap",
        "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "sandbox": "bwrap",
                    "command": crate::common::agent_cmd(&["--write", "src/a.txt=a"])}],
    }));
    // A PATH with git and sh, and no bwrap.
    let bin = tempfile::tempdir().unwrap();
    for prog in ["git", "sh"] {
        let real = Command::new("sh")
            .args(["-c", &format!("command -v {prog}")])
            .output()
            .unwrap();
        let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
        std::os::unix::fs::symlink(real, bin.path().join(prog)).unwrap();
    }
    let path = bin.path().display().to_string();
    for cmd in [&["validate"][..], &["run"][..]] {
        let run = repo.orch_env(cmd, &[("PATH", path.as_str())]);
        let stderr = run.stderr();
        assert_eq!(run.code(), 2, "{cmd:?}: {stderr}");
        assert!(stderr.contains("agents[0].sandbox"), "{stderr}");
        assert!(
            stderr.contains("bubblewrap (bwrap) is not installed"),
            "{stderr}"
        );
        assert!(stderr.contains("apt-get install bubblewrap"), "{stderr}");
    }
    assert!(!repo.has_round_log(1));
}

/// A wrong `sandbox` value is an invalid mission: exit 2, naming the key and the value.
#[test]
fn a_wrong_sandbox_value_names_its_key() {
    let repo = Repo::new();
    repo.mission(serde_json::json!({
        "name": "bad",
        "agents": [{"name": "a", "phase": "code", "command": ["true"],
                    "sandbox": {"mode": "bwrap", "network": ["api.example.com:http"]}}],
    }));
    let run = repo.orch(&["validate"]);
    let stderr = run.stderr();
    assert_eq!(run.code(), 2, "{stderr}");
    assert!(stderr.contains("agents[0].sandbox"), "{stderr}");
    assert!(
        stderr.contains("\"network\": \"api.example.com:http\""),
        "{stderr}"
    );
}

/// The same attempts from the shared tree (`"isolation": "shared"`): the agent writes the main
/// tree but not its `.git` (config, hooks) nor orch's state folder inside it, and its honest
/// work still lands.
#[test]
fn a_hostile_agent_in_the_shared_tree_cannot_touch_git_or_orchs_state() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    require_curl();
    let repo = Repo::new();
    let home = Home::new();
    let off_list = hello_server();
    repo.mission(serde_json::json!({
        "name": "hostile-shared",
        "rounds": 1,
        "sandbox": "bwrap",
        "agents": [{"name": "a", "phase": "code",
                    "command": hostile("a", "b", &home.marker(), &home.secret(), off_list)}],
        "tests": {"command": crate::common::tests_cmd("0")},
        "git": {"isolation": "shared", "commit": true},
    }));
    let config_before = repo.read(".git/config");
    let run = home.orch(&repo, &["run"]);
    let stderr = run.stderr();
    assert_eq!(run.code(), 0, "{stderr}");
    let files = repo.git(&["show", "--name-only", "--format=", "HEAD"]);
    assert!(files.lines().any(|f| f == "src/a.txt"), "{files}\n{stderr}");
    assert_reached_none(
        &repo,
        &["config", "hooks-path", "hook", "secret", "port", "orch-pid"],
    );
    assert_eq!(repo.read(".git/config"), config_before);
    assert!(!repo.exists(".git/hooks/post-commit"));
    assert!(!home.marker().exists());
    assert!(repo.has_round_log(1), "orch's state folder is intact");
}

/// Nothing a sandboxed agent starts outlives its run: an agent that hangs past its timeout and
/// one that leaves a `setsid` daemon, both under `"sandbox": "bwrap"`, are gone when orch ends
/// (the group signals reach into the sandbox's PID namespace, and the namespace ends with its
/// agent), and the hung one is `timeout`.
#[test]
fn nothing_a_sandboxed_agent_starts_outlives_its_run() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    let m = format!("orch-sandbox-left-{}", std::process::id());
    let repo = Repo::new();
    repo.mission(serde_json::json!({
        "name": "left",
        "rounds": 1,
        "sandbox": "bwrap",
        "killGraceS": 1,
        "agents": [
            {"name": "hang", "phase": "code", "timeoutS": 2,
             "command": crate::common::agent_cmd(&["--tag", &m, "--ignore-term", "--hang"])},
            {"name": "daemon", "phase": "code",
             "command": crate::common::agent_cmd(&[
                 "--tag", &m, "--write", "src/d.txt=d", "--setsid-daemon", "daemon.pid"])},
        ],
        "git": {"isolation": "worktree", "commit": true},
    }));
    let run = repo.orch(&["run"]);
    let stderr = run.stderr();
    let log = repo.round_log(1);
    assert_eq!(Repo::agent(&log, "hang")["status"], "timeout", "{stderr}");
    let left = left_after(&m, std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "left running: {left:#?}\n{stderr}");
    // It did start its daemon (the pid file is in its commit); the daemon goes with the
    // sandbox's PID namespace, whose first process (bwrap's) ended with the agent: the kernel
    // kills the rest. orch's own search for the run's token may still see it dying and kill it
    // first ("killed 1 process(es) it left running outside its process group"): a race both of
    // whose ends leave nothing running, which is what this test holds.
    assert!(
        repo.exists("daemon.pid"),
        "the daemon never started: {stderr}"
    );
}

/// orch SIGKILLed while a sandboxed agent runs: nothing of the agent survives (bwrap's
/// `--die-with-parent` and orch's watchdog).
#[test]
fn a_sandboxed_agent_dies_with_a_killed_orch() {
    if !bwrap_runs("sandbox test") {
        return;
    }
    let m = format!("orch-sandbox-killed-{}", std::process::id());
    let repo = Repo::new();
    repo.mission(serde_json::json!({
        "name": "killed",
        "rounds": 1,
        "sandbox": "bwrap",
        "agents": [{"name": "hang", "phase": "code",
                    "command": crate::common::agent_cmd(&["--tag", &m, "--ignore-term", "--hang"])}],
    }));
    let mut orch = crate::common::Orch::start(&repo, &["run"]);
    let t0 = std::time::Instant::now();
    while crate::common::processes_with(&m).is_empty() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "the agent never started: {}",
            orch.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    orch.signal(libc::SIGKILL);
    orch.wait(std::time::Duration::from_secs(10));
    let left = left_after(&m, std::time::Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "left running after orch's SIGKILL: {left:#?}"
    );
}
