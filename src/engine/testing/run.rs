//! Running the mission's tests for a round and deciding whether the round regressed
//! (a failure the base did not have; a pass on retry is flaky, not a regression).
//!
//! The exit status decides pass or fail; the passed/failed counts come from the runner's own
//! summary line (see `testcounts`) for the report and for comparing against the base. A failing
//! run is retried `retries` times; a pass on a retry is not a regression but is flagged
//! `flaky`. With suites (see `tests_select`), the selected suites run in parallel, at most one
//! per core, each in its own process group with its own log; the stage's result is their union.
//! A regression is a failure when the base passed (or is not known), or more failed tests than
//! the base had.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::exec::pool;
use crate::engine::exec::process::{self, Ending, Spec};
use crate::engine::store::state::TestBaseline;
use crate::engine::testing;
use crate::engine::testing::select::Selection;
use crate::events::{Event, Events};
use crate::mission::Tests;
use crate::roundlog::{StepStatus, SuiteEntry, TestsEntry};

/// How much of the output the round log keeps.
const TAIL_LINES: usize = 40;
const TAIL_BYTES: usize = 4096;
/// How much of the end of the output is read for the counts and the tail: a test command that
/// floods its log must not flood orch's memory, and runners print their summary last.
const READ_BYTES: u64 = 8 * 1024 * 1024;

/// One test command to run, with retries.
pub struct TestRun<'a> {
    /// `tests` for the full command, the suite's name otherwise.
    pub name: String,
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub root: &'a Path,
    pub log: PathBuf,
    pub round: u32,
    pub grace: Duration,
    /// When the round started, for `startMs`.
    pub round_start: Instant,
}

impl<'a> TestRun<'a> {
    /// The full `tests.command`.
    pub fn full(tests: &Tests, root: &'a Path, log: PathBuf, round: u32, grace: Duration) -> Self {
        TestRun {
            name: "tests".into(),
            argv: tests.command.argv(),
            timeout: Duration::from_secs_f64(tests.timeout_s),
            retries: tests.retries,
            root,
            log,
            round,
            grace,
            round_start: Instant::now(),
        }
    }

    /// Runs the command, with retries, and returns the entry for the round log (without the
    /// regression verdict, which needs the baseline).
    pub fn run(&self, events: &Events) -> TestsEntry {
        let started = Instant::now();
        let mut attempts = 0;
        let mut first_failed = false;
        let suite = (self.name != "tests").then(|| self.name.clone());
        loop {
            attempts += 1;
            events.emit(Event::TestsStart {
                round: self.round,
                attempt: attempts,
                suite: suite.clone(),
            });
            let log = if attempts == 1 {
                self.log.clone()
            } else {
                self.log
                    .with_extension(format!("retry-{}.log", attempts - 1))
            };
            let env = vec![("ORCH_ROUND".into(), self.round.to_string())];
            // Under `sandbox.tests`: the agents' code runs with what an agent has, no more.
            let (argv, sandbox) = crate::engine::exec::sandbox::rules::fenced(
                self.root,
                Vec::new(),
                &env,
                self.argv.clone(),
            );
            let finished = process::run(&Spec {
                label: self.name.clone(),
                argv,
                cwd: self.root.to_path_buf(),
                env,
                stdin: None,
                stdout: log.clone(),
                stderr: log.clone(),
                timeout: self.timeout,
                grace: self.grace,
                launched: false,
                env_clear: false,
            });
            if let Some(refused) = sandbox.map(|s| s.denied()).filter(|d| !d.is_empty()) {
                log::warn!(
                    "{}: its sandbox refused connections to {} (not on the allowlist)",
                    self.name,
                    refused.join(", ")
                );
            }
            let output = crate::engine::round::results::read_tail(&log, READ_BYTES);
            let text = String::from_utf8_lossy(&output);
            let counts = testing::counts::parse(&text);
            let status = match finished.ending {
                Ending::Exited(0) => StepStatus::Passed,
                Ending::TimedOut => StepStatus::Timeout,
                Ending::Cancelled => StepStatus::Cancelled,
                _ => StepStatus::Failed,
            };
            let cannot_start = cannot_start(&finished.ending, &output);
            // Retrying a command that cannot start only burns the retries.
            let retry = (status == StepStatus::Failed || status == StepStatus::Timeout)
                && cannot_start.is_none();
            if retry && attempts <= self.retries && !process::interrupted() {
                first_failed = true;
                continue;
            }
            let mut tail = testing::counts::tail(&output, TAIL_LINES, TAIL_BYTES);
            if let Ending::SpawnFailed(e) = &finished.ending {
                tail = format!("{e}\n{tail}");
            }
            return TestsEntry {
                status,
                exit_code: finished.ending.exit_code(),
                start_ms: started.duration_since(self.round_start).as_millis() as u64,
                elapsed_ms: started.elapsed().as_millis() as u64,
                passed: counts.map(|c| c.passed),
                failed: counts.map(|c| c.failed),
                suites: Vec::new(),
                attempts,
                flaky: first_failed && status == StepStatus::Passed,
                regression: false,
                log: String::new(),
                tail,
                reason: None,
                suite_runs: Vec::new(),
                cannot_start,
            };
        }
    }
}

/// Why a test command could not start, or `None` when it ran (whatever its verdict): it could
/// not be spawned, or its shell said 126 (found, not executable) or 127 (not found). A test
/// suite does not use those statuses for failing tests; a shell uses them for a command it
/// could not run.
pub fn cannot_start(ending: &Ending, output: &[u8]) -> Option<String> {
    let last_line = || {
        String::from_utf8_lossy(output)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", crate::engine::prompt::trim(l.trim(), 300)))
            .unwrap_or_default()
    };
    match ending {
        Ending::SpawnFailed(e) => Some(e.clone()),
        Ending::Exited(126) => Some(format!(
            "exit 126, a program was found but cannot be executed{}",
            last_line()
        )),
        Ending::Exited(127) => Some(format!("exit 127, a program was not found{}", last_line())),
        _ => None,
    }
}

/// Where a round's tests write their logs, and how they report.
pub struct Stage<'a> {
    pub tests: &'a Tests,
    pub root: &'a Path,
    pub log_dir: &'a Path,
    /// How to name a log in the round log (relative to the state folder).
    pub relative: &'a (dyn Fn(&Path) -> String + Sync),
    pub round: u32,
    pub grace: Duration,
    pub round_start: Instant,
}

impl Stage<'_> {
    /// Runs what `selection` asks for; one entry for the round log.
    pub fn run(&self, selection: &Selection, events: &Events) -> TestsEntry {
        match selection {
            Selection::Full(why) => {
                let log = self.log_dir.join("tests.log");
                let mut run =
                    TestRun::full(self.tests, self.root, log.clone(), self.round, self.grace);
                run.round_start = self.round_start;
                let mut e = run.run(events);
                e.log = (self.relative)(&log);
                e.reason = Some(format!("the full command ran: {why}"));
                e
            }
            Selection::Suites(chosen) => self.suites(chosen, events),
        }
    }

    fn suites(&self, chosen: &[(usize, String)], events: &Events) -> TestsEntry {
        let started = Instant::now();
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut runs: Vec<SuiteEntry> = Vec::new();
        let mut tails = Vec::new();
        pool::run(
            slots,
            chosen.to_vec(),
            || !process::interrupted(),
            |(i, reason)| {
                let suite = &self.tests.suites[i];
                let log = self.log_dir.join(format!("tests-{}.log", suite.name));
                let e = TestRun {
                    name: suite.name.clone(),
                    argv: suite.command.argv(),
                    timeout: Duration::from_secs_f64(self.tests.timeout_s),
                    retries: self.tests.retries,
                    root: self.root,
                    log: log.clone(),
                    round: self.round,
                    grace: self.grace,
                    round_start: self.round_start,
                }
                .run(events);
                (suite.name.clone(), reason, e, (self.relative)(&log))
            },
            |done, _| {
                if let pool::Done::Finished((name, reason, e, log)) = done {
                    if e.status != StepStatus::Passed {
                        tails.push(format!("== suite {name} ==\n{}", e.tail));
                    }
                    runs.push(SuiteEntry {
                        name,
                        reason,
                        status: e.status,
                        exit_code: e.exit_code,
                        start_ms: e.start_ms,
                        elapsed_ms: e.elapsed_ms,
                        passed: e.passed,
                        failed: e.failed,
                        attempts: e.attempts,
                        flaky: e.flaky,
                        log,
                        cannot_start: e.cannot_start,
                    });
                }
            },
        );
        runs.sort_by(|a, b| a.name.cmp(&b.name));
        union(runs, tails, started, self.round_start)
    }
}

/// The stage's result from its suites: passed only if every suite passed; counts summed where
/// any suite printed them.
fn union(
    runs: Vec<SuiteEntry>,
    tails: Vec<String>,
    started: Instant,
    round_start: Instant,
) -> TestsEntry {
    let worst = runs
        .iter()
        .map(|r| r.status)
        .find(|s| *s != StepStatus::Passed)
        .unwrap_or(StepStatus::Passed);
    let sum = |f: fn(&SuiteEntry) -> Option<u64>| {
        runs.iter()
            .filter_map(f)
            .fold(None, |acc: Option<u64>, n| Some(acc.unwrap_or(0) + n))
    };
    TestsEntry {
        status: worst,
        exit_code: runs
            .iter()
            .find(|r| r.status != StepStatus::Passed)
            .and_then(|r| r.exit_code)
            .or(Some(0)),
        start_ms: started.duration_since(round_start).as_millis() as u64,
        elapsed_ms: started.elapsed().as_millis() as u64,
        passed: sum(|r| r.passed),
        failed: sum(|r| r.failed),
        suites: runs.iter().map(|r| r.name.clone()).collect(),
        attempts: runs.iter().map(|r| r.attempts).max().unwrap_or(1),
        flaky: runs.iter().any(|r| r.flaky),
        regression: false,
        log: String::new(),
        tail: tails.join("\n"),
        reason: Some(
            runs.iter()
                .map(|r| format!("{}: {}", r.name, r.reason))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        cannot_start: runs.iter().find_map(|r| {
            r.cannot_start
                .as_ref()
                .map(|why| format!("suite {}: {why}", r.name))
        }),
        suite_runs: runs,
    }
}

/// Whether a test result is worse than the base.
pub fn is_regression(entry: &TestsEntry, baseline: Option<&TestBaseline>) -> bool {
    if entry.status == StepStatus::Passed {
        return false;
    }
    match baseline {
        // Unknown base: assume it passed, so a failure now counts as a regression.
        None => true,
        Some(b) if b.passed => true,
        // The base failed too: only more failures are the agents' doing.
        Some(b) => match (b.failed_count, entry.failed) {
            (Some(before), Some(now)) => now > before,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: StepStatus, failed: Option<u64>) -> TestsEntry {
        TestsEntry {
            status,
            exit_code: None,
            start_ms: 0,
            elapsed_ms: 0,
            passed: None,
            failed,
            suites: vec![],
            attempts: 1,
            flaky: false,
            regression: false,
            log: String::new(),
            tail: String::new(),
            reason: None,
            suite_runs: vec![],
            cannot_start: None,
        }
    }

    #[test]
    fn regression_is_measured_against_the_base() {
        let failing_base = TestBaseline {
            passed: false,
            failed_count: Some(2),
            commit: "x".into(),
        };
        assert!(!is_regression(&entry(StepStatus::Passed, None), None));
        assert!(is_regression(&entry(StepStatus::Failed, Some(1)), None));
        assert!(!is_regression(
            &entry(StepStatus::Failed, Some(2)),
            Some(&failing_base)
        ));
        assert!(is_regression(
            &entry(StepStatus::Failed, Some(3)),
            Some(&failing_base)
        ));
        assert!(is_regression(
            &entry(StepStatus::Timeout, None),
            Some(&TestBaseline {
                passed: true,
                failed_count: None,
                commit: "x".into()
            })
        ));
    }

    #[test]
    fn the_union_fails_if_any_suite_fails_and_sums_counts() {
        let suite = |name: &str, status, passed, failed| SuiteEntry {
            name: name.into(),
            reason: "r".into(),
            status,
            exit_code: Some(if status == StepStatus::Passed { 0 } else { 1 }),
            start_ms: 0,
            elapsed_ms: 5,
            passed,
            failed,
            attempts: 1,
            flaky: false,
            log: String::new(),
            cannot_start: None,
        };
        let now = Instant::now();
        let u = union(
            vec![
                suite("a", StepStatus::Passed, Some(3), Some(0)),
                suite("b", StepStatus::Failed, Some(1), Some(2)),
                suite("c", StepStatus::Passed, None, None),
            ],
            vec![],
            now,
            now,
        );
        assert_eq!(u.status, StepStatus::Failed);
        assert_eq!((u.passed, u.failed), (Some(4), Some(2)));
        assert_eq!(u.suites, ["a", "b", "c"]);
    }
}
