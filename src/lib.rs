//! orch: runs teams of autonomous coding agents against a git repository, round after round,
//! unattended.
//!
//! The library holds everything; `main.rs` only parses the command line, sets up logging and
//! maps the result of [`cli::run`] to an exit status. The round pipeline (`round`) stands on
//! `process` (the only module that touches child processes), `pool` (the worker threads), `git`
//! and `state`; it reports what happens as `events`, which sinks render for people, scripts and
//! CI. `report` reads the round logs back.

pub mod cli;
pub mod cost;
pub mod demo;
pub mod dryrun;
pub mod error;
pub mod events;
pub mod git;
pub mod glob;
pub mod import;
pub mod init;
pub mod launcher;
pub mod live;
pub mod mission;
pub mod pool;
pub mod process;
pub mod prompt;
pub mod report;
pub mod results;
pub mod round;
pub mod roundlog;
pub mod runner;
pub mod sequence;
pub mod sims;
pub mod state;
pub mod status;
pub mod tasks;
pub mod testcounts;
pub mod tests_run;
pub mod tests_select;
pub mod units;

pub use error::{Error, Result};
