//! orch: runs teams of autonomous coding agents against a git repository, round after round,
//! unattended.
//!
//! The library holds everything; `main.rs` only parses the command line, sets up logging and
//! maps the result of [`cli::run`] to an exit status. The tree is laid out by layer, each
//! depending only on the ones above it in this list:
//!
//! - the data model shared by every layer: [`mission`] (the mission file and its validation),
//!   [`roundlog`] (the round log's schema), [`events`] (what the engine reports and the sinks
//!   that render it), [`error`], [`units`], [`glob`];
//! - [`agents`]: what an agent CLI's output means (cost, tokens, its result);
//! - [`engine`]: the round pipeline and what it stands on (processes, the pool, git, the state
//!   folder, tasks, tests, sims);
//! - [`report`]: reads round logs back and renders them;
//! - [`cli`]: the commands, the live view, `orch init`, the demo.

// Results go through `cli::out`, which turns a closed stdout into a quiet exit; `println!`
// would panic on it.
#![deny(clippy::print_stdout)]

pub mod agents;
pub mod cli;
pub mod engine;
pub mod error;
pub mod events;
pub mod glob;
pub mod mission;
pub mod report;
pub mod roundlog;
pub mod units;

pub use error::{Error, Result};
