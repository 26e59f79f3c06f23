//! Plumbing: reading what git prints and the few files of a repository orch reads without
//! running git. Pure functions, no git process, so that the rest can be tested on text.

use std::path::{Path, PathBuf};

/// The first ten digits of a commit id, for messages.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}

/// git's message on one line, bounded: the lines that say what went wrong (`error:`/`fatal:`
/// first), joined.
pub fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = lines.join(" ");
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The git folder a linked worktree's `.git` file points to (`gitdir: PATH`).
pub(super) fn linked_git_dir(worktree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let dir = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
    Some(if dir.is_absolute() {
        dir
    } else {
        worktree.join(dir)
    })
}
