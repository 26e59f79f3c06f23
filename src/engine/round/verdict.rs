//! What verification decided about the round's code changes: the [`Verdict`] that the
//! landing, Phase B and the round's status each follow from, and the `testsEnd` event of a
//! tests result.

use crate::events::Event;
use crate::roundlog::TestsEntry;

/// What verification decided about the round's code changes: the landing, Phase B and the
/// round's status each follow from it.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// Phase A changed nothing: no tests ran.
    Unchanged,
    /// The tests passed, failed no worse than the base did, or the mission has none.
    Passed,
    /// The tests regressed: the culprits' changes were taken out (`rejected`), or every
    /// change (`whole_round`).
    Regressed {
        rejected: Vec<String>,
        whole_round: bool,
    },
    /// The test command could not start: every change set aside untested (`rejected`).
    Untested { rejected: Vec<String> },
    /// An interrupt stopped the round during verification (logged `interrupted` there).
    Interrupted,
}

impl Verdict {
    /// The code agents whose work was taken out.
    pub(super) fn rejected(&self) -> &[String] {
        match self {
            Verdict::Regressed { rejected, .. } | Verdict::Untested { rejected } => rejected,
            _ => &[],
        }
    }

    pub(super) fn regressed(&self) -> bool {
        matches!(self, Verdict::Regressed { .. })
    }

    pub(super) fn whole_round_reverted(&self) -> bool {
        matches!(
            self,
            Verdict::Regressed {
                whole_round: true,
                ..
            }
        )
    }
}

/// The round's `testsEnd` for its tests' result (the full test command, nothing taken out);
/// `regression` as judged against the baseline.
pub(super) fn tests_end(round: u32, t: &TestsEntry, regression: bool) -> Event {
    Event::TestsEnd {
        round,
        status: t.status,
        elapsed_ms: t.elapsed_ms,
        passed: t.passed,
        failed: t.failed,
        regression,
        flaky: t.flaky,
        without: Vec::new(),
    }
}
