//! The engine: the round pipeline ([`round`], driven round after round by [`runner`]) and what
//! it stands on. [`process`] is the only module that spawns or signals children; [`pool`] runs
//! agent jobs on worker threads; [`git`] wraps every git call; [`state`] owns the files of the
//! state folder (atomic JSON, the lock, the journal); [`inputs`] records what each round started
//! from, so that [`replay`] can run it again beside the branch. The engine emits events and never
//! prints; [`hooks`] is the one sink that lives here, since it runs the mission's hook commands
//! as children; [`limits`] holds off providers whose limits were hit.

pub mod branch;
pub mod git;
pub mod hooks;
pub mod inputs;
pub mod launcher;
pub mod limits;
pub mod nested;
pub mod perms;
pub mod pool;
pub mod preflight;
pub mod process;
pub mod prompt;
pub mod replay;
pub mod results;
pub mod round;
pub mod runner;
pub mod sequence;
pub mod sessions;
pub mod sims;
pub mod state;
pub mod tasks;
pub mod testcounts;
pub mod tests_run;
pub mod tests_select;
pub mod userwork;
