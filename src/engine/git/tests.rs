//! Tests of `Git` on scratch repositories, across its files: saving and restoring a tree,
//! keeping paths, commits, worktrees, the state folder kept out.

use super::Git;

fn repo() -> (tempfile::TempDir, Git) {
    let d = tempfile::tempdir().unwrap();
    let sh = |c: &str| {
        assert!(std::process::Command::new("sh")
            .args(["-c", c])
            .current_dir(d.path())
            .status()
            .unwrap()
            .success())
    };
    sh("git init -q && echo a > a.txt && git add a.txt && git -c user.name=t -c user.email=t@t commit -qm init");
    let g = Git::open(d.path()).unwrap();
    (d, g)
}

#[test]
fn save_tree_keeps_untracked_files_and_restore_is_exact() {
    let (d, g) = repo();
    let base = g.base().unwrap();
    g.exclude(&d.path().join(".orch")).unwrap();
    std::fs::create_dir_all(d.path().join(".orch")).unwrap();
    std::fs::write(d.path().join(".orch/state.json"), "{}").unwrap();
    std::fs::write(d.path().join("a.txt"), "changed").unwrap();
    std::fs::write(d.path().join("new.txt"), "new").unwrap();
    let saved = g
        .save_tree(&base, "refs/orch/rejected/round-1", "r1")
        .unwrap();
    let files = g.run(&["ls-tree", "-r", "--name-only", &saved]).unwrap();
    assert!(
        files.contains("new.txt") && !files.contains(".orch"),
        "{files}"
    );
    g.restore(&base).unwrap();
    assert!(g.status().unwrap().is_empty());
    assert!(!d.path().join("new.txt").exists());
    assert!(d.path().join(".orch/state.json").exists(), "state survives");
    assert_eq!(g.head().unwrap().unwrap(), base);
}

/// A failed run's fingerprint can name a path that is in neither the tree nor the parent
/// (another failed run's file orch took out meanwhile): keeping its files must not fail on
/// it (it did: `git add` refused the unmatched path, and the run's files stayed in the tree
/// to be committed with the next agent's).
#[test]
fn keeping_paths_skips_one_that_is_nowhere_and_records_a_deletion() {
    let (d, g) = repo();
    let base = g.base().unwrap();
    std::fs::write(d.path().join("new.txt"), "new\n").unwrap();
    std::fs::remove_file(d.path().join("a.txt")).unwrap();
    let paths = ["new.txt", "gone-everywhere.txt", "a.txt"].map(String::from);
    let kept = g
        .save_paths(&base, "refs/orch/failed/round-1/x", "m", &paths)
        .unwrap();
    let files = g.run(&["ls-tree", "-r", "--name-only", &kept]).unwrap();
    assert_eq!(files.trim(), "new.txt", "a.txt deleted, new.txt added");
    g.take_out(&paths).unwrap();
    assert!(g.status().unwrap().is_empty());
}

#[test]
fn a_commit_tried_first_still_says_when_there_was_nothing_to_commit() {
    let (d, g) = repo();
    let g = g.keep_out(&d.path().join(".orch"));
    g.exclude(&d.path().join(".orch")).unwrap();
    let base = g.base().unwrap();
    // Nothing changed (orch's own folder does not count): no commit, HEAD where it was.
    std::fs::create_dir_all(d.path().join(".orch")).unwrap();
    std::fs::write(d.path().join(".orch/state.json"), "{}").unwrap();
    assert_eq!(g.commit_changes("m").unwrap(), None);
    assert_eq!(g.commit_agent_change("m").unwrap(), None);
    assert_eq!(g.commit_all("m").unwrap(), None);
    assert_eq!(g.base().unwrap(), base);
    // A change: committed, and the new HEAD (read from the files) returned.
    std::fs::write(d.path().join("b.txt"), "b\n").unwrap();
    let made = g.commit_changes("m").unwrap().expect("a commit");
    assert_ne!(made, base);
    assert_eq!(g.head().unwrap().as_deref(), Some(made.as_str()));
    assert_eq!(g.files_between(&base, &made).unwrap(), ["b.txt"]);
}

#[test]
fn a_tree_snapshot_against_the_base_names_both_paths_of_a_rename() {
    // The round takes what changed from its snapshot of the tree (`tree_of_files`): a
    // moved file is its old path and its new one, as the deleted and the untracked file
    // were when this came from `git diff` and `git ls-files --others`.
    let (d, g) = repo();
    let g = g.keep_out(&d.path().join(".orch"));
    g.exclude(&d.path().join(".orch")).unwrap();
    let base = g.base().unwrap();
    std::fs::rename(d.path().join("a.txt"), d.path().join("moved.txt")).unwrap();
    std::fs::create_dir_all(d.path().join(".orch")).unwrap();
    std::fs::write(d.path().join(".orch/x"), "x").unwrap();
    let tree = g.tree_of_files(&base).unwrap();
    assert_eq!(
        g.files_between(&base, &tree).unwrap(),
        ["a.txt", "moved.txt"]
    );
    let mut old = g.changed_since(&base).unwrap();
    old.sort();
    assert_eq!(old, ["a.txt", "moved.txt"]);
    // Asked twice (the second from the remembered index paths): the same tree.
    assert_eq!(g.tree_of_files(&base).unwrap(), tree);
}

#[test]
fn worktrees_made_at_once_by_several_threads_all_work() {
    // Before worktree creation was serialized, one thread's `worktree prune` beside another's
    // `worktree add` made this fail in two runs of three ("could not open
    // .git/worktrees/X/locked").
    let (d, g) = repo();
    let base = g.base().unwrap();
    for attempt in 0..3 {
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (g, base) = (&g, &base);
                    let p = d.path().join(format!(".orch/wt-{attempt}-{i}"));
                    s.spawn(move || g.prepare_worktree(&p, base).map(|_| ()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            r.unwrap();
        }
    }
}

#[test]
fn a_worktree_is_reused_clean_and_made_again_when_its_metadata_is_gone() {
    let (d, g) = repo();
    g.exclude(&d.path().join(".orch")).unwrap();
    let base = g.base().unwrap();
    let p = d.path().join(".orch/worktrees/a");
    let wt = g.prepare_worktree(&p, &base).unwrap();
    std::fs::write(p.join("a.txt"), "changed").unwrap();
    std::fs::write(p.join("new.txt"), "untracked").unwrap();
    // Reused: reset and cleaned.
    let wt2 = g.prepare_worktree(&p, &base).unwrap();
    assert!(wt2.status().unwrap().is_empty());
    assert!(!p.join("new.txt").exists());
    assert_eq!(wt.head().unwrap().unwrap(), base);
    // An agent that checked out a branch of its own and committed there: the next round
    // starts detached at the base, and the branch keeps the agent's commit.
    wt.run(&["checkout", "-q", "-b", "agent-branch"]).unwrap();
    std::fs::write(p.join("a.txt"), "on the branch").unwrap();
    let on_branch = wt.commit_all("agent").unwrap().unwrap();
    let wt2 = g.prepare_worktree(&p, &base).unwrap();
    assert_eq!(wt2.head_fast().unwrap(), base);
    assert_eq!(wt2.head_moved_from(&base), None);
    assert_eq!(
        g.run(&["rev-parse", "agent-branch"]).unwrap().trim(),
        on_branch
    );
    // Its metadata deleted under it (a `git worktree prune` by hand, a copied repository):
    // made again instead of failing the agent.
    std::fs::remove_dir_all(d.path().join(".git/worktrees")).unwrap();
    std::fs::write(p.join("new.txt"), "untracked").unwrap();
    let wt3 = g.prepare_worktree(&p, &base).unwrap();
    assert_eq!(wt3.head().unwrap().unwrap(), base);
    assert!(wt3.status().unwrap().is_empty());
}

#[test]
fn state_folder_never_dirties_the_tree() {
    let (d, g) = repo();
    g.exclude(&d.path().join(".orch")).unwrap();
    g.exclude(&d.path().join(".orch")).unwrap();
    std::fs::create_dir_all(d.path().join(".orch/rounds")).unwrap();
    std::fs::write(d.path().join(".orch/rounds/x.json"), "{}").unwrap();
    assert!(g.status().unwrap().is_empty());
    let ex = std::fs::read_to_string(d.path().join(".git/info/exclude")).unwrap();
    assert_eq!(ex.matches("/.orch/").count(), 1);
}

/// What the settings that keep the config from running a program (`noexec`) cost a git call:
/// the same `git rev-parse HEAD` through `Git::run` and as a bare command. A figure for
/// BENCHMARKS.md, not a check:
/// `cargo test --release --lib noexec_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn noexec_cost() {
    let (d, g) = repo();
    let n = 200;
    let bare = || {
        let t = std::time::Instant::now();
        for _ in 0..n {
            let out = std::process::Command::new("git")
                .args(["-c", "core.hooksPath=/dev/null", "rev-parse", "HEAD"])
                .current_dir(d.path())
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        t.elapsed() / n
    };
    let orch = || {
        let t = std::time::Instant::now();
        for _ in 0..n {
            g.run(&["rev-parse", "HEAD"]).unwrap();
        }
        t.elapsed() / n
    };
    let (b1, o1, b2, o2) = (bare(), orch(), bare(), orch());
    eprintln!("one git call: bare {b1:?} / {b2:?}, through Git::run {o1:?} / {o2:?}");
    // A config change makes the next call read the config again (one more git process).
    let t = std::time::Instant::now();
    for i in 0..20 {
        let value = format!("v{i}");
        std::process::Command::new("git")
            .args(["config", "orch.bench", &value])
            .current_dir(d.path())
            .status()
            .unwrap();
        g.run(&["rev-parse", "HEAD"]).unwrap();
    }
    eprintln!(
        "a call after a config change (with the git config that changed it): {:?}",
        t.elapsed() / 20
    );
}
