//! The engine: the round pipeline ([`round`], driven round after round by [`runner`]) and what
//! it stands on, grouped by concern:
//!
//! - [`exec`]: processes and when they may start ([`exec::process`] is the only module that
//!   spawns or signals children; [`exec::pool`] runs agent jobs on worker threads);
//! - [`git`]: every git call, and the policies built on them (branch, nested repositories, the
//!   user's uncommitted work);
//! - [`store`]: the state folder's files (atomic JSON, the lock, the journal, tasks, what each
//!   round started from, CLI sessions);
//! - [`testing`]: running the mission's tests, choosing suites, reading their counts;
//! - beside them: [`prompt`] (agents' prompts), [`sims`] (the pre- and post-round sims),
//!   [`hooks`] (the one event sink that lives here, since it runs the mission's hook commands as
//!   children), [`preflight`] (checks before anything is spent), [`replay`] (`orch round N`
//!   again beside the branch) and [`sequence`] (missions chained).
//!
//! The engine emits events and never prints.

pub mod exec;
pub mod git;
pub mod hooks;
pub mod preflight;
pub mod prompt;
pub mod replay;
pub mod round;
pub mod runner;
pub mod sequence;
pub mod sims;
pub mod store;
pub mod testing;
pub mod workspace;
