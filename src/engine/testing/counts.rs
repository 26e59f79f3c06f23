//! Passed and failed test counts read from a test run's output (SPEC section 6), and the tail of
//! that output for logs and for the `testFailures` prompt section.
//!
//! The exit status decides whether tests passed; these counts only feed the report and the
//! "more failures than the base" regression check, so a missing count is `None`, never an error.
//! Each runner gets a small line parser, tried from the most specific summary shape (nextest's
//! `Summary [..] N tests run:` line) to the least (a bare `N passed, N failed` line); the first
//! runner that recognises any line wins, so a pytest summary is not also read as a plain line.
//! Within that runner every summary line is added up: a cargo workspace prints one
//! `test result:` line per test binary, and `npm test` may run the same runner twice.
//!
//! Hand-written parsing, no regex: each shape is a prefix to find and a list of `N label` parts,
//! which reads plainly and cannot backtrack on a huge log. ANSI colour codes are removed first,
//! and `\r` counts as a line end, so progress redraws do not glue lines together.

use std::borrow::Cow;
use std::ops::Add;

/// How many tests passed and failed in one run (errors and timeouts count as failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
}

impl Add for Counts {
    type Output = Counts;
    fn add(self, other: Counts) -> Counts {
        Counts {
            passed: self.passed.saturating_add(other.passed),
            failed: self.failed.saturating_add(other.failed),
        }
    }
}

/// A runner's summary parser: the sum of its summary lines, or `None` if it printed none.
type Runner = fn(&[&str]) -> Option<Counts>;

/// Most specific first: an earlier runner's summary is never mistaken for a later one's.
const RUNNERS: [Runner; 8] = [
    nextest, cargo_test, pytest, jest, vitest, node_test, go_test, plain,
];

/// The counts from the first runner whose summary appears in `output`, most specific runner
/// first; `None` when no known summary is found.
pub fn parse(output: &str) -> Option<Counts> {
    let clean = strip_ansi(output);
    let lines: Vec<&str> = clean.split(['\n', '\r']).map(str::trim).collect();
    RUNNERS.iter().find_map(|runner| runner(&lines))
}

/// The last `max_lines` lines of `output`, decoded lossily, and at most `max_bytes` bytes of
/// them (cut at a character boundary, keeping the end, where failures are reported).
pub fn tail(output: &[u8], max_lines: usize, max_bytes: usize) -> String {
    if max_lines == 0 || max_bytes == 0 {
        return String::new();
    }
    // A trailing newline ends the last line; it does not start an empty one.
    let body = output.strip_suffix(b"\n").unwrap_or(output);
    // Walk back over `max_lines` newlines; fewer lines than that keeps everything.
    let mut first_line = 0;
    let mut end = body.len();
    for _ in 0..max_lines {
        match body
            .get(..end)
            .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
        {
            Some(newline) => {
                first_line = newline + 1;
                end = newline;
            }
            None => {
                first_line = 0;
                break;
            }
        }
    }
    // Cut bytes before decoding so a huge log is not decoded whole; then skip the continuation
    // bytes of a character the cut split, instead of showing it as U+FFFD.
    let mut from = first_line.max(body.len().saturating_sub(max_bytes));
    while body
        .get(from)
        .is_some_and(|&b| b & 0b1100_0000 == 0b1000_0000)
    {
        from += 1;
    }
    let text = String::from_utf8_lossy(body.get(from..).unwrap_or_default());
    // Lossy decoding can grow invalid bytes into 3-byte U+FFFD: trim again, on a char boundary.
    let mut cut = text.len().saturating_sub(max_bytes);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.get(cut..).unwrap_or_default().to_string()
}

/// Removes ANSI escape sequences: CSI (`ESC [ ... final`, colours and cursor moves), OSC
/// (`ESC ] ... BEL` or `ESC ] ... ESC \`, hyperlinks and titles) and short escapes (`ESC ( B`).
fn strip_ansi(s: &str) -> Cow<'_, str> {
    if !s.contains('\x1b') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameter and intermediate bytes, then one final byte in `@`..=`~`.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' {
                        chars.next(); // the `\` of the string terminator
                        break;
                    }
                }
            }
            // `ESC ( B` and kin: intermediate bytes, then one final byte.
            Some(' '..='/') => {
                chars.next();
            }
            _ => {}
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------------
// The runners, most specific first. Each returns the sum of its summary lines, or None.

/// cargo-nextest: `Summary [   0.123s] 12 tests run: 10 passed, 2 failed, 0 skipped`, also
/// `1 test run: 1 passed`, `4/12 tests run: ...` when cancelled, `3 passed (1 flaky)`,
/// `1 timed out`.
fn nextest(lines: &[&str]) -> Option<Counts> {
    const WORDS: Vocabulary = Vocabulary {
        passed: &["passed"],
        failed: &["failed", "timed out", "exec failed"],
        other: &["skipped", "leaky", "flaky", "not run"],
    };
    sum_lines(lines, |line| {
        let (before, after) = line
            .split_once(" tests run:")
            .or_else(|| line.split_once(" test run:"))?;
        // What precedes is the count (`12` or `4/12`), after `Summary [ ..s]` when present.
        let count = before.rsplit([' ', ']']).next()?;
        if count.is_empty() || !count.chars().all(|c| c.is_ascii_digit() || c == '/') {
            return None;
        }
        WORDS.tally(after.split(','), Strictness::Lenient)
    })
}

/// cargo test: `test result: ok. 5 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out;
/// finished in 0.01s`, one line per test binary (and per doc-test run).
fn cargo_test(lines: &[&str]) -> Option<Counts> {
    const WORDS: Vocabulary = Vocabulary {
        passed: &["passed"],
        failed: &["failed"],
        other: &["ignored", "measured", "filtered out"],
    };
    sum_lines(lines, |line| {
        let rest = line.strip_prefix("test result: ")?;
        let (_status, parts) = rest.split_once(". ")?;
        WORDS.tally(parts.split(';'), Strictness::Lenient)
    })
}

/// pytest: `==== 3 failed, 10 passed, 1 skipped in 0.12s ====`, with `-q` the same without the
/// rules, `5 passed in 0.10s`, `1 error in 0.05s` (errors count as failed), long runs
/// `in 75.21s (0:01:15)`, and `no tests ran in 0.01s`.
fn pytest(lines: &[&str]) -> Option<Counts> {
    const WORDS: Vocabulary = Vocabulary {
        passed: &["passed"],
        failed: &["failed", "errors", "error"],
        other: &[
            "skipped",
            "xfailed",
            "xpassed",
            "warnings",
            "warning",
            "deselected",
            "rerun",
        ],
    };
    sum_lines(lines, |line| {
        let line = line.trim_matches(|c: char| c == '=' || c.is_whitespace());
        let (head, duration) = line.rsplit_once(" in ")?;
        let seconds = duration.split(' ').next()?;
        let number = seconds.strip_suffix('s')?;
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return None;
        }
        if head == "no tests ran" {
            return Some(Counts::default());
        }
        // Strict: every part must be a pytest outcome, so `Compiled 3 crates in 2.1s` is not one.
        WORDS.tally(head.split(','), Strictness::Strict)
    })
}

/// Jest: `Tests:       1 failed, 5 passed, 6 total` (the `Test Suites:` line above it is not
/// counted).
fn jest(lines: &[&str]) -> Option<Counts> {
    const WORDS: Vocabulary = Vocabulary {
        passed: &["passed"],
        failed: &["failed"],
        other: &["skipped", "todo", "pending", "total"],
    };
    sum_lines(lines, |line| {
        let rest = line.strip_prefix("Tests:")?;
        WORDS.tally(rest.split(','), Strictness::Strict)
    })
}

/// Vitest: `Tests  1 failed | 5 passed (6)` (the `Test Files` line is not counted).
fn vitest(lines: &[&str]) -> Option<Counts> {
    const WORDS: Vocabulary = Vocabulary {
        passed: &["passed"],
        failed: &["failed"],
        other: &["skipped", "todo", "expected fail"],
    };
    sum_lines(lines, |line| {
        let rest = line.strip_prefix("Tests ")?;
        // Drop the `(6)` total.
        let rest = match rest.rsplit_once('(') {
            Some((parts, total)) if total.trim_end_matches(')').parse::<u64>().is_ok() => parts,
            _ => rest,
        };
        WORDS.tally(rest.split('|'), Strictness::Strict)
    })
}

/// node --test: the TAP reporter's `# pass 5` / `# fail 1` / `# cancelled 0` comments, or the
/// spec reporter's `ℹ pass 5` / `ℹ fail 1`. Cancelled tests fail the run, so they count as
/// failed.
fn node_test(lines: &[&str]) -> Option<Counts> {
    let mut total: Option<Counts> = None;
    for line in lines {
        let Some(rest) = line.strip_prefix("# ").or_else(|| line.strip_prefix("ℹ ")) else {
            continue;
        };
        let Some((label, n)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.trim().parse::<u64>() else {
            continue;
        };
        let counts = match label {
            "pass" => Counts {
                passed: n,
                failed: 0,
            },
            "fail" | "cancelled" => Counts {
                passed: 0,
                failed: n,
            },
            _ => continue,
        };
        total = Some(total.unwrap_or_default() + counts);
    }
    total
}

/// go test: with `-v`, one `--- PASS: TestX` / `--- FAIL: TestX` line per test and subtest
/// (subtests are indented; they are tests too, as `go test -json` counts them). Without `-v`
/// passing tests print nothing, so then the package lines are counted instead (`ok  \tpkg`,
/// `FAIL\tpkg`): coarser, but the same unit from one run to the next.
fn go_test(lines: &[&str]) -> Option<Counts> {
    let mut tests = Counts::default();
    let mut packages = Counts::default();
    for line in lines {
        if line.starts_with("--- PASS: ") {
            tests.passed += 1;
        } else if line.starts_with("--- FAIL: ") {
            tests.failed += 1;
        } else if line.starts_with("ok  \t") {
            packages.passed += 1;
        } else if line.starts_with("FAIL\t") {
            // The bare `FAIL` that ends a failed run has no tab and no package: not counted.
            packages.failed += 1;
        }
    }
    if tests.passed > 0 {
        Some(tests)
    } else if packages != Counts::default() {
        Some(packages)
    } else if tests.failed > 0 {
        // Failures without package lines: a cut-off log; the failures are still worth having.
        Some(tests)
    } else {
        None
    }
}

/// The plain line many scripts and smaller runners print: `7 passed, 2 failed`, `2 failed, 7
/// passed`, `12 passed`, `1 failed`, optionally after a `Label: ` and with a final `.`. Strict,
/// since it is the catch-all: every part must be a count of a known outcome.
fn plain(lines: &[&str]) -> Option<Counts> {
    const WORDS: Vocabulary = Vocabulary {
        passed: &["passed", "passing"],
        failed: &["failed", "failing"],
        other: &["skipped", "pending", "ignored", "todo", "total"],
    };
    sum_lines(lines, |line| {
        let line = line.trim_end_matches('.');
        let parts = line.rsplit_once(": ").map_or(line, |(_, after)| after);
        WORDS.tally(parts.split(','), Strictness::Strict)
    })
}

// ---------------------------------------------------------------------------------------------
// Shared pieces.

/// Sums `parse_line` over every line that it recognises; `None` if it recognises none.
fn sum_lines(lines: &[&str], parse_line: impl Fn(&str) -> Option<Counts>) -> Option<Counts> {
    lines
        .iter()
        .filter_map(|line| parse_line(line))
        .reduce(Counts::add)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// Parts that are not `N label` with a known label are skipped (`finished in 0.01s`).
    Lenient,
    /// Any such part means the line is not a summary.
    Strict,
}

/// The outcome labels one runner prints after its counts.
struct Vocabulary {
    passed: &'static [&'static str],
    failed: &'static [&'static str],
    /// Known but not counted (skipped, ignored, total, ...).
    other: &'static [&'static str],
}

impl Vocabulary {
    /// Adds up parts like `10 passed`, `2 failed`, `1 skipped`. A summary must name at least one
    /// passed or failed count; a line of only `3 skipped` says nothing about failures.
    fn tally<'a>(
        &self,
        parts: impl Iterator<Item = &'a str>,
        strictness: Strictness,
    ) -> Option<Counts> {
        let mut counts = Counts::default();
        let mut named = false;
        for part in parts {
            let part = part.trim();
            if part.is_empty() && strictness == Strictness::Lenient {
                continue;
            }
            let recognised = count_and_label(part).and_then(|(n, label)| {
                if starts_with_any(label, self.passed) {
                    counts.passed = counts.passed.saturating_add(n);
                    named = true;
                } else if starts_with_any(label, self.failed) {
                    counts.failed = counts.failed.saturating_add(n);
                    named = true;
                } else if !starts_with_any(label, self.other) {
                    return None;
                }
                Some(())
            });
            if recognised.is_none() && strictness == Strictness::Strict {
                return None;
            }
        }
        named.then_some(counts)
    }
}

/// `"12 passed (1 flaky)"` -> `(12, "passed (1 flaky)")`: a count, one or more spaces, a label.
fn count_and_label(part: &str) -> Option<(u64, &str)> {
    let digits = part.find(|c: char| !c.is_ascii_digit())?;
    let n = part.get(..digits)?.parse().ok()?;
    let label = part.get(digits..)?;
    let trimmed = label.trim_start_matches(' ');
    (trimmed.len() < label.len() && !trimmed.is_empty()).then_some((n, trimmed))
}

/// `label` is one of `words`, whole words only: `passed (1 flaky)` is `passed`, `passedx` and
/// `passed tests` are not (anything after the word must be a parenthesised note).
fn starts_with_any(label: &str, words: &[&str]) -> bool {
    words.iter().any(|word| {
        label.strip_prefix(word).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.is_empty() || rest.starts_with('(')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(passed: u64, failed: u64) -> Option<Counts> {
        Some(Counts { passed, failed })
    }

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../fixtures/test-output/", $name))
        };
    }

    #[test]
    fn cargo_workspace_sums_every_binary() {
        // 4 + 9 + 3 + 2 passed (the doc-tests count too), 2 failed.
        assert_eq!(parse(fixture!("cargo-workspace.txt")), counts(18, 2));
    }

    #[test]
    fn nextest_summary() {
        // Timed-out tests are failures; the flaky one passed on retry.
        assert_eq!(parse(fixture!("nextest.txt")), counts(10, 2));
        assert_eq!(
            parse("     Summary [   0.005s] 3 tests run: 3 passed, 0 skipped\n"),
            counts(3, 0)
        );
        assert_eq!(parse("Summary [ 0.1s] 1 test run: 1 passed"), counts(1, 0));
        assert_eq!(parse("7 tests run: 7 passed"), counts(7, 0));
        assert_eq!(
            parse("Summary [  2.000s] 4/12 tests run: 3 passed, 1 failed, 8 skipped"),
            counts(3, 1)
        );
    }

    #[test]
    fn pytest_summary() {
        // Errors count as failed.
        assert_eq!(parse(fixture!("pytest.txt")), counts(12, 2));
        assert_eq!(parse("5 passed in 0.10s"), counts(5, 0));
        assert_eq!(parse("=== 1 error in 0.05s ==="), counts(0, 1));
        assert_eq!(
            parse("==== 3 failed, 10 passed, 1 skipped in 0.12s ===="),
            counts(10, 3)
        );
        assert_eq!(
            parse("===== 400 passed, 2 xfailed in 75.21s (0:01:15) ====="),
            counts(400, 0)
        );
        assert_eq!(
            parse("============ no tests ran in 0.01s ============"),
            counts(0, 0)
        );
    }

    #[test]
    fn jest_summary() {
        assert_eq!(parse(fixture!("jest.txt")), counts(22, 1));
        assert_eq!(parse("Tests:       5 passed, 5 total"), counts(5, 0));
    }

    #[test]
    fn vitest_summary() {
        assert_eq!(parse(fixture!("vitest.txt")), counts(12, 1));
        assert_eq!(parse("      Tests  5 passed (5)"), counts(5, 0));
        assert_eq!(
            parse("Tests  1 failed | 4 passed | 1 skipped (6)"),
            counts(4, 1)
        );
    }

    #[test]
    fn node_test_runner() {
        assert_eq!(parse(fixture!("node-tap.txt")), counts(2, 1));
        assert_eq!(parse(fixture!("node-spec.txt")), counts(4, 1));
        assert_eq!(parse("# pass 3\n# fail 0\n# cancelled 2\n"), counts(3, 2));
    }

    #[test]
    fn go_test_counts_tests_or_packages() {
        // Three passes (one test, two subtests) and the ui package's test; one failure.
        assert_eq!(parse(fixture!("go-verbose.txt")), counts(4, 1));
        // Without -v: ok ui, ok save (cached); FAIL balance.
        assert_eq!(parse(fixture!("go-packages.txt")), counts(2, 1));
    }

    #[test]
    fn plain_lines_in_any_order() {
        assert_eq!(parse(fixture!("plain.txt")), counts(7, 2));
        assert_eq!(parse("7 passed, 2 failed"), counts(7, 2));
        assert_eq!(parse("2 failed, 7 passed"), counts(7, 2));
        assert_eq!(parse("12 passed"), counts(12, 0));
        assert_eq!(parse("1 failed"), counts(0, 1));
        assert_eq!(parse("3 passed, 1 skipped, 4 total."), counts(3, 0));
    }

    #[test]
    fn ansi_colours_are_ignored() {
        assert_eq!(parse(fixture!("jest-ansi.txt")), counts(40, 3));
        assert_eq!(parse(fixture!("pytest-ansi.txt")), counts(8, 1));
        assert_eq!(
            parse("\x1b[0m\x1b[1mtest result: \x1b[32mok\x1b[0m. 6 passed; 0 failed; 0 ignored"),
            counts(6, 0)
        );
    }

    #[test]
    fn no_summary_is_none() {
        assert_eq!(parse(fixture!("no-summary.txt")), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("3 skipped"), None);
        assert_eq!(parse("2 failed attempts to connect, retrying"), None);
        assert_eq!(parse("Compiled 3 crates in 2.1s"), None);
        assert_eq!(parse("Tests: none found"), None);
        assert_eq!(parse("99999999999999999999999 passed"), None);
    }

    #[test]
    fn the_most_specific_runner_wins() {
        // A pytest run whose captured output happens to hold a plain line and a go line.
        let mixed = "starting\n1 passed\n--- PASS: TestX (0.00s)\n===== 2 failed, 30 passed in 3.10s =====\n";
        assert_eq!(parse(mixed), counts(30, 2));
        // cargo's summary is more specific than the plain line a build script printed.
        let mixed = "lint: 4 passed, 1 failed\ntest result: ok. 9 passed; 0 failed; 0 ignored\n";
        assert_eq!(parse(mixed), counts(9, 0));
    }

    #[test]
    fn carriage_returns_split_lines() {
        assert_eq!(
            parse("progress 10%\rprogress 100%\rTests:       2 passed, 2 total\r\n"),
            counts(2, 0)
        );
    }

    #[test]
    fn strip_ansi_sequences() {
        assert_eq!(strip_ansi("plain"), "plain");
        assert_eq!(strip_ansi("\x1b[1;31mred\x1b[0m"), "red");
        assert_eq!(
            strip_ansi("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
        assert_eq!(strip_ansi("a\x1b(Bb"), "ab");
        assert_eq!(strip_ansi("cut\x1b["), "cut");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let out = b"one\ntwo\nthree\nfour\n";
        assert_eq!(tail(out, 2, 1000), "three\nfour");
        assert_eq!(tail(out, 10, 1000), "one\ntwo\nthree\nfour");
        assert_eq!(tail(out, 1, 1000), "four");
        assert_eq!(tail(b"no newline", 3, 1000), "no newline");
        assert_eq!(tail(b"", 3, 1000), "");
        assert_eq!(tail(out, 0, 1000), "");
        assert_eq!(tail(out, 2, 0), "");
        assert_eq!(tail(b"a\n\n\nb\n", 3, 100), "\n\nb");
    }

    #[test]
    fn tail_caps_bytes_at_a_char_boundary() {
        assert_eq!(tail(b"one\ntwo\nthree", 10, 7), "o\nthree");
        // "é" is two bytes: a cut through it drops it rather than leaving half.
        assert_eq!(tail("aé".as_bytes(), 1, 1), "");
        assert_eq!(tail("aéb".as_bytes(), 1, 2), "b");
        assert_eq!(tail("aéb".as_bytes(), 1, 3), "éb");
        // Invalid bytes become U+FFFD (3 bytes); the result still respects max_bytes.
        let t = tail(b"x\xff\xfe\xfdz", 1, 4);
        assert!(t.len() <= 4, "{t:?}");
        assert!(t.ends_with('z'));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u32 = 0x9e37_79b9;
        for len in 0..300usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    // Bias towards the bytes the parsers look for.
                    b"0123 passed,failed;|#\n\r\x1b[()=:.\xff\xc3\xa9"[(seed % 32) as usize % 31]
                })
                .collect();
            let _ = parse(&String::from_utf8_lossy(&bytes));
            for max in [0, 1, 2, 5, 50] {
                let t = tail(&bytes, 3, max);
                assert!(t.len() <= max);
            }
        }
    }
}
