//! Git's edges and clumsy agents (issue 21), done for real to the built binary: a repository
//! with hooks, signing, submodules; agents that run `git reset`, `git checkout -b`, `git init`,
//! delete their worktree's `.git`, leave read-only folders. Each test asserts what the user is
//! left with: the refs that keep the agents' work, the branch, the state folder and the exit
//! status.
//!
//! Agents here are `sh -c SCRIPT` (the agent's own git commands, spelled out in the test) rather
//! than the fixture agent: each scenario is one clumsy thing an agent does.

mod common;

use common::Repo;
use serde_json::{json, Value};

/// An agent that runs `script` with `sh -c`, then prints the fixture's JSON result.
fn sh_agent(name: &str, phase: &str, script: &str) -> Value {
    json!({"name": name, "phase": phase, "command": ["sh", "-c", script]})
}

fn mission(agents: Vec<Value>, extra: Value) -> Value {
    let mut m = json!({"name": "edges", "rounds": 1, "agents": agents});
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

fn ref_exists(repo: &Repo, name: &str) -> bool {
    std::process::Command::new("git")
        .args(["rev-parse", "--verify", "-q", name])
        .current_dir(repo.path())
        .output()
        .unwrap()
        .status
        .success()
}

/// The file `path` as it is in `rev`, or empty when it is not there.
fn show(repo: &Repo, rev: &str, path: &str) -> String {
    let out = std::process::Command::new("git")
        .args(["show", &format!("{rev}:{path}")])
        .current_dir(repo.path())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn branch(repo: &Repo) -> String {
    repo.git(&["symbolic-ref", "-q", "--short", "HEAD"])
}

/// A `core.hooksPath` folder whose hooks all fail and leave a trace in `hooks.ran` (turned on
/// with `git config core.hooksPath .husky` once the test has committed its mission).
fn hostile_hooks(repo: &Repo) {
    for hook in [
        "commit-msg",
        "pre-commit",
        "pre-merge-commit",
        "post-checkout",
        "post-merge",
        "post-commit",
    ] {
        repo.write(
            &format!(".husky/{hook}"),
            &format!("#!/bin/sh\necho {hook} >> \"$(git rev-parse --git-common-dir)/hooks.ran\"\nexit 1\n"),
        );
        let p = repo.pathbuf(&format!(".husky/{hook}"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Item 1: a merge that fails without a conflict never drops the agent's work.

#[test]
fn a_commit_msg_hook_neither_rejects_nor_sees_orchs_merges() {
    let repo = Repo::new();
    hostile_hooks(&repo);
    repo.mission(mission(
        vec![
            sh_agent("a", "code", "echo a > a.txt"),
            sh_agent("b", "code", "echo b > b.txt"),
        ],
        json!({}),
    ));
    repo.git(&["config", "core.hooksPath", ".husky"]);
    let on = branch(&repo);
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    for name in ["a", "b"] {
        assert_eq!(Repo::agent(&log, name)["status"], "ok", "{log:#}");
    }
    assert_eq!(repo.read("a.txt"), "a\n");
    assert_eq!(repo.read("b.txt"), "b\n");
    assert_eq!(branch(&repo), on);
    assert!(
        !repo.exists(".git/hooks.ran"),
        "a hook ran for orch's own git: {}",
        repo.read(".git/hooks.ran")
    );
    assert!(repo.status().is_empty(), "{}", repo.status());
}

#[test]
fn a_merge_refused_for_an_untracked_file_keeps_the_change_and_counts_a_failure() {
    let repo = Repo::new();
    let main = repo.path().display().to_string();
    // The agent writes its file in its worktree and, by absolute path, in the main tree too
    // (as a pre-sim writing into the tree would): the merge would overwrite that untracked file.
    repo.mission(mission(
        vec![sh_agent(
            "a",
            "code",
            &format!("echo mine > new.txt; echo stray > '{main}/new.txt'"),
        )],
        json!({}),
    ));
    repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    let a = Repo::agent(&log, "a");
    assert_eq!(a["status"], "failed", "{log:#}");
    let kept = "refs/orch/unmerged/round-1/a";
    assert!(
        a["error"].as_str().unwrap().contains(kept),
        "{}",
        a["error"]
    );
    assert!(ref_exists(&repo, kept));
    assert_eq!(show(&repo, kept, "new.txt"), "mine\n");
    // Not a success anywhere it is counted.
    let st = repo.state();
    assert_eq!(st["agents"]["a"]["lastStatus"], "failed", "{st:#}");
    assert_eq!(st["agents"]["a"]["consecutiveFailures"], 1, "{st:#}");
    let status = repo.orch(&["status", "--json"]).expect(0).stdout();
    let status: Value = serde_json::from_str(&status).unwrap();
    let row = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(row["lastStatus"], "failed", "{status:#}");
}

// ---------------------------------------------------------------------------------------------
// Item 10: signing that cannot work stops orch before any agent runs.

#[test]
fn commit_gpgsign_without_a_usable_key_stops_before_agents_run() {
    let repo = Repo::new();
    let flag = tempfile::tempdir().unwrap();
    let ran = flag.path().join("ran");
    repo.mission(mission(
        vec![sh_agent(
            "a",
            "code",
            &format!("echo a > a.txt; touch '{}'", ran.display()),
        )],
        json!({}),
    ));
    repo.git(&["config", "commit.gpgsign", "true"]);
    repo.git(&["config", "gpg.program", "false"]);
    let head = repo.head();
    let run = repo.orch(&["run"]).expect(2);
    assert!(run.stderr().contains("commit.gpgsign"), "{}", run.stderr());
    assert!(
        !ran.exists(),
        "the agent ran although no commit could be made"
    );
    assert_eq!(repo.head(), head);
    assert!(repo.status().is_empty(), "{}", repo.status());
    assert!(!repo.has_round_log(1));
    // With a signer that works, orch's commits are signed as the config asks.
    let signer = flag.path().join("fake-gpg");
    std::fs::write(
        &signer,
        "#!/bin/sh\n# a stand-in signer: reads the data, prints a fixed signature and the status line\n\
         cat > /dev/null\necho '[GNUPG:] SIG_CREATED ' >&2\nprintf -- '-----BEGIN PGP SIGNATURE-----\\n\\nAA==\\n-----END PGP SIGNATURE-----\\n'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&signer, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.git(&["config", "gpg.program", &signer.display().to_string()]);
    repo.orch(&["run"]).expect(0);
    assert!(ran.exists());
    let raw = repo.git(&["cat-file", "commit", "HEAD"]);
    assert!(raw.contains("gpgsig"), "{raw}");
}
