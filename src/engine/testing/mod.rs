//! The mission's tests: [`run`] runs them for a round (and the baseline) and decides whether the
//! round regressed; [`select`] picks the suites a round's changes call for; [`counts`] reads
//! passed and failed counts and the failure tail from a test run's output.

pub mod counts;
pub mod run;
pub mod select;
