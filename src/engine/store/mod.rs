//! What orch keeps on disk between rounds and runs: [`state`] owns the state folder's layout,
//! the tracking state, the lock and the journal (atomic JSON writes); [`tasks`] the durable task
//! queue; [`inputs`] what each round started from, so that a replay can run it again;
//! [`sessions`] the agent CLI sessions carried from run to run.

pub mod inputs;
pub mod sessions;
pub mod state;
pub mod tasks;
