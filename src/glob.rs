//! Path globs for test suites (`tests.suites[].paths`): `*` (any characters but `/`), `?` (one
//! character but `/`), `**` (any number of whole path segments) and `{a,b}`-free literal text.
//! Small on purpose: these patterns are matched against the few files a round changed, so a
//! backtracking matcher is plenty and keeps a regex engine out of the build.

/// Whether `path` (relative, `/`-separated) matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_start_matches("./").split('/').collect();
    let segs: Vec<&str> = path.trim_start_matches("./").split('/').collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => {
            // `**` swallows zero or more whole segments.
            (0..=segs.len()).any(|i| match_segments(rest, &segs[i..]))
        }
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => {
                match_segment(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)
            }
            None => false,
        },
    }
}

fn match_segment(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_segment(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_segment(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && match_segment(rest, &s[1..]),
    }
}

/// Checks a pattern is usable: relative, no empty segments.
pub fn validate(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".into());
    }
    if pattern.starts_with('/') {
        return Err(format!(
            "{pattern:?} must be relative to the repository root"
        ));
    }
    if pattern.split('/').any(|s| s.is_empty() || s == "..") {
        return Err(format!("{pattern:?} has an empty or `..` segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_stay_within_a_segment_and_double_stars_cross_them() {
        assert!(matches("src/ui/**", "src/ui/a.rs"));
        assert!(matches("src/ui/**", "src/ui/deep/er/a.rs"));
        assert!(!matches("src/ui/**", "src/api/a.rs"));
        assert!(matches("src/*.rs", "src/main.rs"));
        assert!(!matches("src/*.rs", "src/ui/main.rs"));
        assert!(matches("**/*.md", "README.md"));
        assert!(matches("**/*.md", "docs/x/y.md"));
        assert!(matches("tests/test_?.py", "tests/test_a.py"));
        assert!(!matches("tests/test_?.py", "tests/test_ab.py"));
        assert!(matches("Cargo.toml", "Cargo.toml"));
        assert!(matches("**", "anything/at/all"));
    }

    #[test]
    fn bad_patterns_are_named() {
        assert!(validate("/abs/**").is_err());
        assert!(validate("a//b").is_err());
        assert!(validate("../x").is_err());
        assert!(validate("src/**").is_ok());
    }
}
