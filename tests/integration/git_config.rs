//! An agent that plants a command in the repository's git config (issue 30, without a sandbox):
//! orch's own git calls never run it. Each agent here writes its change and one setting that
//! makes git run a program (`core.fsmonitor`, `core.hooksPath`, a `filter` driver named by
//! `.gitattributes`, a `gpg.program` with signing turned on); the program touches a marker file
//! outside the repository, which must not exist when orch is done. The agent's own change still
//! lands. The setting itself is put back after the agent (`engine::round::guard`), kept under
//! the round's logs and reported: the last test here.
//!
//! The test reads the marker before running any git of its own in the repository: the test's
//! git would run the planted command too.

use crate::common::Repo;
use serde_json::{json, Value};

fn sh_agent(name: &str, script: &str) -> Value {
    json!({"name": name, "phase": "code", "command": ["sh", "-c", script]})
}

/// Runs one round of a mission whose one agent runs `plant` (with `MARKER` replaced by the
/// marker's path) and writes `mine.txt`, in `isolation`; checks that the marker never appeared
/// (`what` ran, else), and that the agent's change landed.
fn planted(isolation: &str, plant: &str, what: &str) {
    let repo = Repo::new();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("ran");
    let script = format!(
        "{}; echo mine > mine.txt",
        plant.replace("MARKER", &marker.display().to_string())
    );
    repo.mission(json!({
        "name": "planted", "rounds": 1,
        "git": {"isolation": isolation, "commit": true},
        "agents": [sh_agent("a", &script)],
    }));
    let run = repo.orch(&["run"]);
    assert!(
        !marker.exists(),
        "{isolation}: orch's git ran {what}\n{}",
        run.stderr()
    );
    let log = repo.round_log(1);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(Repo::agent(&log, "a")["status"], "ok", "{log:#}");
    assert_eq!(repo.read("mine.txt"), "mine\n");
}

#[test]
fn a_planted_fsmonitor_never_runs_in_orchs_git() {
    for isolation in ["worktree", "shared"] {
        let plant = "git config core.fsmonitor 'touch MARKER; false'";
        planted(isolation, plant, "core.fsmonitor");
    }
}

#[test]
fn a_planted_hooks_path_never_runs_in_orchs_git() {
    let hooks = "d=$(mktemp -d); \
                 for h in pre-commit commit-msg post-commit post-checkout post-merge \
                 pre-merge-commit post-rewrite reference-transaction post-index-change; do \
                 printf '#!/bin/sh\\ntouch MARKER\\n' > $d/$h; chmod +x $d/$h; done; \
                 git config core.hooksPath $d";
    for isolation in ["worktree", "shared"] {
        planted(isolation, hooks, "a hook");
    }
}

#[test]
fn a_planted_filter_driver_never_runs_in_orchs_git() {
    let filter = "git config filter.x.clean 'touch MARKER; cat'; \
                  git config filter.x.smudge 'touch MARKER; cat'; \
                  git config filter.x.process 'touch MARKER'; \
                  git config filter.x.required true; \
                  echo '* filter=x' > .gitattributes";
    for isolation in ["worktree", "shared"] {
        planted(isolation, filter, "a filter driver");
    }
}

#[test]
fn a_planted_signing_program_never_runs_in_orchs_git() {
    let signing = "d=$(mktemp -d); printf '#!/bin/sh\\ntouch MARKER\\nexit 1\\n' > $d/gpg; \
                   chmod +x $d/gpg; git config commit.gpgsign true; git config gpg.program $d/gpg";
    planted("worktree", signing, "gpg.program");
}

/// Runs one round whose agent `a` plants a `core.fsmonitor` and a `post-commit` hook in the
/// repository's common git folder (from its worktree, or the shared tree) beside its honest
/// change, with an `attention` hook; returns the repository, the run's stderr and what the
/// attention hook got.
fn put_back_round(isolation: &str) -> (Repo, String, String) {
    let repo = Repo::new();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("ran");
    let attention = outside.path().join("attention.ndjson");
    let script = format!(
        "common=$(git rev-parse --path-format=absolute --git-common-dir); \
         git config core.fsmonitor 'touch {m}; false'; \
         printf '#!/bin/sh\\ntouch {m}\\n' > \"$common/hooks/post-commit\"; \
         chmod +x \"$common/hooks/post-commit\"; echo mine > mine.txt",
        m = marker.display()
    );
    repo.mission(json!({
        "name": "put-back", "rounds": 1,
        "git": {"isolation": isolation, "commit": true},
        "hooks": {"attention": format!("cat >> {}", attention.display())},
        "agents": [sh_agent("a", &script)],
    }));
    let run = repo.orch(&["run"]);
    assert!(!marker.exists(), "{isolation}: a planted command ran");
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let got = std::fs::read_to_string(&attention).unwrap_or_default();
    (repo, run.stderr().to_string(), got)
}

#[test]
fn a_planted_setting_and_hook_are_put_back_kept_and_reported() {
    for isolation in ["worktree", "shared"] {
        let (repo, stderr, attention) = put_back_round(isolation);
        let config = std::fs::read_to_string(repo.path().join(".git/config")).unwrap();
        assert!(!config.contains("fsmonitor"), "{isolation}: {config}");
        assert!(
            !repo.path().join(".git/hooks/post-commit").exists(),
            "{isolation}: the hook stayed"
        );
        let kept = repo.path().join(".orch/logs/round-0001/git-settings/a");
        let kept_config = std::fs::read_to_string(kept.join("config")).unwrap();
        assert!(kept_config.contains("fsmonitor"), "{isolation}");
        assert!(kept.join("hooks/post-commit").is_file(), "{isolation}");
        let log = repo.round_log(1);
        let a = Repo::agent(&log, "a");
        assert_eq!(a["status"], "ok", "{log:#}");
        let put_back: Vec<String> = a["gitSettingsPutBack"]
            .as_array()
            .unwrap_or_else(|| panic!("{isolation}: {log:#}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(put_back.len(), 2, "{put_back:?}");
        assert!(
            put_back[0].starts_with("changed .git/config (put back;"),
            "{put_back:?}"
        );
        assert!(
            put_back[1].starts_with("added .git/hooks/post-commit (put back;"),
            "{put_back:?}"
        );
        assert!(
            stderr.contains("agent a changed the repository's git settings"),
            "{isolation}: {stderr}"
        );
        assert!(
            attention.contains("gitSettingsPutBack"),
            "{isolation}: the attention hook got: {attention}"
        );
        // The agent's honest change landed, and the user's own git runs nothing planted.
        assert_eq!(repo.read("mine.txt"), "mine\n");
    }
}
