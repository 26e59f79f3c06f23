//! Running the mission's tests for a round and deciding whether the round regressed
//! (SPEC section 6).
//!
//! The exit status decides pass or fail; the passed/failed counts come from the runner's own
//! summary line (see `testcounts`) for the report and for comparing against the base. A failing
//! run is retried `retries` times; a pass on a retry is not a regression but is flagged
//! `flaky`. A regression is a failure when the base passed (or is not known), or more failed
//! tests than the base had.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::events::{Event, Events};
use crate::mission::Tests;
use crate::process::{self, Ending, Spec};
use crate::roundlog::{StepStatus, TestsEntry};
use crate::state::TestBaseline;
use crate::testcounts;

/// How much of the output the round log keeps.
const TAIL_LINES: usize = 40;
const TAIL_BYTES: usize = 4096;
/// How much of the end of the output is read for the counts and the tail: a test command that
/// floods its log must not flood orch's memory, and runners print their summary last.
const READ_BYTES: u64 = 8 * 1024 * 1024;

pub struct TestRun<'a> {
    pub tests: &'a Tests,
    pub root: &'a Path,
    pub log: &'a Path,
    pub round: u32,
    pub grace: Duration,
    /// When the round started, for `startMs`.
    pub round_start: Instant,
}

impl TestRun<'_> {
    /// Runs the tests, with retries, and returns the entry for the round log (without the
    /// regression verdict, which needs the baseline).
    pub fn run(&self, events: &Events) -> TestsEntry {
        let started = Instant::now();
        let mut attempts = 0;
        let mut first_failed = false;
        loop {
            attempts += 1;
            events.emit(Event::TestsStart {
                round: self.round,
                attempt: attempts,
            });
            let log = if attempts == 1 {
                self.log.to_path_buf()
            } else {
                self.log
                    .with_extension(format!("retry-{}.log", attempts - 1))
            };
            let finished = process::run(&Spec {
                label: "tests".into(),
                argv: self.tests.command.argv(),
                cwd: self.root.to_path_buf(),
                env: vec![("ORCH_ROUND".into(), self.round.to_string())],
                stdin: None,
                stdout: log.clone(),
                stderr: log.clone(),
                timeout: Duration::from_secs_f64(self.tests.timeout_s),
                grace: self.grace,
            });
            let output = crate::results::read_tail(&log, READ_BYTES);
            let text = String::from_utf8_lossy(&output);
            let counts = testcounts::parse(&text);
            let status = match finished.ending {
                Ending::Exited(0) => StepStatus::Passed,
                Ending::TimedOut => StepStatus::Timeout,
                Ending::Cancelled => StepStatus::Cancelled,
                _ => StepStatus::Failed,
            };
            let retry = status == StepStatus::Failed || status == StepStatus::Timeout;
            if retry && attempts <= self.tests.retries && !process::interrupted() {
                first_failed = true;
                continue;
            }
            let mut tail = testcounts::tail(&output, TAIL_LINES, TAIL_BYTES);
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
            };
        }
    }
}

/// Whether a test result is worse than the base.
pub fn is_regression(entry: &TestsEntry, baseline: Option<&TestBaseline>) -> bool {
    if entry.status == StepStatus::Passed {
        return false;
    }
    match baseline {
        // Unknown base: assume it passed (SPEC section 6).
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
}
