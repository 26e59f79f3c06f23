//! Everything orch does to the user's repository, through the `git` command line.
//!
//! The rules this module keeps: the round's base is HEAD; nothing an agent wrote is ever
//! destroyed (a rejected or interrupted tree, tracked and untracked files alike, is first saved
//! as a commit under `refs/orch/...`, made with a private index so neither HEAD nor the user's
//! index moves); restoring the base is exact (`reset --hard` plus `clean` of untracked,
//! non-ignored files); and orch's state folder is kept out of git whatever the repository's
//! `.gitignore` says (a whitelist `*`, `!*/` beats `.git/info/exclude`): every `add`, `status`,
//! `diff`, `ls-files` and `clean` orch runs carries the pathspec `:(exclude)<stateDir>`, so the
//! folder never dirties the tree, never lands in a commit and is never cleaned away. The
//! `.git/info/exclude` line stays for the user's own `git status`.
//!
//! git commands are short and their output small, so they run to completion with captured
//! output; the long-running children (agents, sims, tests) go through `process`.
//!
//! orch's own git operations run with the repository's hooks off (`core.hooksPath=/dev/null`,
//! and `--no-verify` where git has it): a `commit-msg` hook that rejects orch's message, or a
//! `post-checkout` hook that writes a file, must neither drop an agent's work nor be credited to
//! an agent. The same goes for everything else in the config that would make git run a program
//! (`core.fsmonitor`, a filter or merge driver, a signing program set during the run: `noexec`),
//! which an agent can write from its worktree. Agents that run git themselves are unaffected
//! (they run their own git).
//!
//! Plumbing apart from policy, as jj keeps `git_subprocess.rs` apart from `git.rs`. Plumbing:
//! `run` (the `Git` handle, and the one place git is run: folder, identity, hooks off, the state
//! folder's pathspec, errors), `parse` (what git prints and the repository files read without
//! it), `read` (HEAD, branch, status, diffs: asking, never changing), `noexec` (the settings
//! every call carries so that the config runs no program). Policy, each an `impl Git`
//! of its own concern on that plumbing: `commit` (landing work: commits, merges, the pick of a
//! review, signing), `keep` (keeping work in refs and taking it out of the tree or putting it
//! back), `restore` (HEAD and the tree back where they belong), `worktree` (the agents'
//! worktrees), [`guard`] (the repository's `config`, `hooks/`, `info/` put back after an
//! agent), and the modules [`nested`] (submodules and repositories an agent makes inside
//! the tree), [`branch`] (a run's own branch), [`userwork`] (the user's uncommitted work under
//! `--allow-dirty`). The policies import the plumbing files directly, never this one, so no
//! import runs back up: every `Git` method is reached through the type, re-exported here.

pub mod branch;
mod commit;
pub mod guard;
mod keep;
pub mod nested;
mod noexec;
mod parse;
mod read;
mod restore;
mod run;
pub mod userwork;
mod worktree;

pub use commit::Merge;
pub use parse::{linked_git_dir, one_line, short, StatusEntry};
pub use run::Git;

#[cfg(test)]
mod tests;
