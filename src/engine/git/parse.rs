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

/// The git folder a linked worktree's `.git` file points to (`gitdir: PATH`): its admin folder
/// (`<common>/worktrees/<name>`); `None` for the main tree, whose `.git` is a folder.
pub fn linked_git_dir(worktree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let dir = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
    Some(if dir.is_absolute() {
        dir
    } else {
        worktree.join(dir)
    })
}

/// The entries of a `-z` list (`diff --name-only -z`, `ls-files -z`, `ls-tree --name-only -z`).
pub(super) fn nul_list(out: &str) -> Vec<String> {
    out.split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// One entry of `git status`: the two-letter code and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub code: String,
    pub path: String,
}

/// The entries of `git status --porcelain=v1 -z`.
pub(super) fn status_entries(out: &str) -> Vec<StatusEntry> {
    let mut entries = Vec::new();
    let mut fields = out.split('\0').filter(|s| !s.is_empty());
    while let Some(f) = fields.next() {
        if f.len() < 4 {
            continue;
        }
        let code = f[..2].to_string();
        let path = f[3..].to_string();
        // A rename is followed by its source path.
        if code.starts_with('R') || code.starts_with('C') {
            fields.next();
        }
        entries.push(StatusEntry { code, path });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renames_source_path_is_not_an_entry_of_its_own() {
        let out = "R  new.txt\0old.txt\0?? a b.txt\0 M src/x.rs\0";
        let got: Vec<(String, String)> = status_entries(out)
            .into_iter()
            .map(|e| (e.code, e.path))
            .collect();
        let want = [("R ", "new.txt"), ("??", "a b.txt"), (" M", "src/x.rs")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(c, p)| (c.to_string(), p.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_nul_list_has_no_empty_entry() {
        assert_eq!(nul_list("a\0b c\0"), ["a", "b c"]);
        assert!(nul_list("").is_empty());
    }

    #[test]
    fn gits_message_is_one_bounded_line() {
        assert_eq!(one_line("error: x\n\nfatal: y\n"), "error: x fatal: y");
        let long = one_line(&"é".repeat(300));
        assert!(long.ends_with('…') && long.len() <= 400 + '…'.len_utf8());
        assert_eq!(short("0123456789abcdef"), "0123456789");
    }
}
