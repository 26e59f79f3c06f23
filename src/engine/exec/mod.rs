//! Running processes and deciding when they may start: [`process`] is the only module that
//! spawns children (process groups, timeouts), with `reap` (the registry of live groups, finding
//! and killing what a run or a dead orch left) and `watchdog` (what kills them when orch is
//! killed) beside it; [`pool`] runs agent jobs on worker threads and hands results back to the
//! main thread in completion order; [`launcher`] prefixes a command to run it elsewhere (Slurm,
//! ssh); [`limits`] holds off providers whose limits were hit; [`perms`] gives back write bits
//! an agent took from folders orch must clean; [`sandbox`] runs a command in bubblewrap with
//! only what its policy allows; [`watch`] reads a running agent's output and tree for being
//! stuck.

pub mod launcher;
pub mod limits;
pub mod perms;
pub mod pool;
pub mod process;
mod reap;
pub mod sandbox;
pub mod watch;
mod watchdog;
