//! The round's state, in the parts each stage owns: the [`Round`] itself (the run's state and
//! queue, the round log being written, the journal), the [`Ledger`] of what spend, limits and
//! stops decided, what the dispatcher landed and has still to settle ([`Dispatched`]), and
//! Phase B beside the tests ([`Beside`], its chain of [`Link`]s).
//! The stages (`plan`, `dispatch`, `verify`, `revert`, `beside`, `land`, `record`) are `impl
//! Round` blocks in their own files; they all read these types, which read none of theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::engine::git::guard::Guard;
use crate::engine::git::Git;
use crate::engine::store::inputs::RoundInputs;
use crate::engine::store::state::{AgentState, Journal, State};
use crate::engine::store::tasks::Queue;
use crate::roundlog::{AgentEntry, LimitedRun, RoundLog, RunStatus};

use super::agent::SharedTree;
use super::env::Env;

/// One round while it runs. The stages read and write it in turn (never two at once: the
/// pool's workers get a job and hand back a result, they do not see this), each through the
/// part it owns: the plan through `sections`, the dispatcher through `ledger` and
/// `dispatched`, Phase B beside the tests through `beside`, the record through `log`.
pub(super) struct Round<'e, 's> {
    pub(super) env: &'e Env<'e>,
    /// The run's tracking state and task queue, saved by the record.
    pub(super) state: &'s mut State,
    pub(super) queue: &'s mut Queue,
    pub(super) round: u32,
    pub(super) t0: Instant,
    /// What a crash leaves for the next orch to recover from (the base, the process groups).
    pub(super) journal: Journal,
    /// What the round started from, recorded for a replay (`rounds/round-NNNN.inputs.json`).
    pub(super) inputs: RoundInputs,
    /// The K under which an earlier run of this round is kept (`round-NNNN.prev-K.json`).
    pub(super) prev: u32,
    /// The round log being written.
    pub(super) log: RoundLog,
    /// Prompt sections computed this round (a section command runs once a round).
    pub(super) sections: BTreeMap<String, String>,
    /// What spend, limits and stops decided so far.
    pub(super) ledger: Ledger,
    /// What the dispatcher landed, and the failures it settles when the pool ends.
    pub(super) dispatched: Dispatched,
    /// Phase B beside the tests (`phaseB: "besideTests"`), while it is to be resolved.
    pub(super) beside: Option<Beside>,
    /// Something was committed this round.
    pub(super) committed: bool,
    /// `sims.stopWhen` passed: the run has converged.
    pub(super) converged: bool,
    /// The circuit breaker tripped.
    pub(super) breaker: bool,
}

/// The ledger of what spend, provider limits and stops decided this round: written by the
/// dispatcher as each result settles, read by Phase B (which the budget or a stop skips) and
/// by the record (the run's outcome).
#[derive(Default)]
pub(super) struct Ledger {
    /// The run's `--budget` is reached: no new agent starts.
    pub(super) budget_reached: bool,
    /// Agents whose program could not start this round.
    pub(super) could_not_start: Vec<String>,
    /// Agents whose runs hit a provider limit this round: those runs, and the last one's entry
    /// (the agent's entry if it is not run again).
    pub(super) limited: BTreeMap<String, Limited>,
    /// Agents to run again once their provider's hold ends (filled while a pool runs).
    pub(super) again: Vec<String>,
    /// Since when (ms from the round's start) each agent held back by a limit has waited for
    /// its run that counts: its entry's `heldMs`.
    pub(super) held_since: BTreeMap<String, u64>,
    /// An agent CLI failed for good (auth, bad request): why. The run stops after this round.
    pub(super) cli_stop: Option<String>,
    /// A provider's limit would outlast `limits.maxWaitS` (or `--no-wait`): why.
    pub(super) limit_stop: Option<String>,
}

impl Ledger {
    /// The run stops after this round: an agent CLI failed for good, or a limit would be
    /// waited out too long. No new agent starts; running ones finish.
    pub(super) fn stopping(&self) -> bool {
        self.cli_stop.is_some() || self.limit_stop.is_some()
    }
}

/// What the dispatcher landed this round, and what it settles once the pool has ended.
#[derive(Default)]
pub(super) struct Dispatched {
    /// Worktree isolation: each code agent's commit merged this round, in merge order.
    pub(super) merged: Vec<(String, String)>,
    /// Review agents of the running pool that failed while others worked in the shared tree.
    pub(super) shared_failures: Vec<SharedFailure>,
    /// The repository's own git settings as they were before the round's first agent: each
    /// settled run is checked against them (`None` until the first pool, or when they could
    /// not be read).
    pub(super) guard: Option<Guard>,
    /// The running pool's agents whose results are not settled yet.
    pub(super) unsettled: BTreeSet<String>,
}

/// An agent whose runs hit a provider limit this round.
pub(super) struct Limited {
    /// Each run that hit the limit, in order.
    pub(super) runs: Vec<LimitedRun>,
    /// The last one's entry: the agent's entry if it is not run again.
    pub(super) last: AgentEntry,
}

/// A review agent's failed run in the shared tree while other agents worked there: which of
/// the files that changed meanwhile are its own is decided when the pool ends.
pub(super) struct SharedFailure {
    pub(super) agent: String,
    pub(super) status: RunStatus,
    /// Every file that changed during its run.
    pub(super) changed: Vec<String>,
    /// The agents that worked in the tree at some moment of its run.
    pub(super) with: Vec<String>,
}

/// One review agent's change beside the tests: a commit on the chain, on `parent`.
pub(super) struct Link {
    pub(super) agent: String,
    pub(super) parent: String,
    pub(super) commit: String,
}

/// Phase B running beside the tests: orch's worktree of Phase A's merged tree, and what each
/// review agent changed there.
pub(super) struct Beside {
    /// The worktree (`<stateDir>/worktrees/.phase-b`: no agent name starts with a dot).
    pub(super) git: Git,
    /// Phase A's tree committed on the round's base with the code commit's message, and that
    /// message: the round's code commit when the tests pass on that tree.
    pub(super) shown: (String, String),
    /// The commit it was made from: `shown`, plus this round's pre-sim data when the pre-sim
    /// succeeded.
    pub(super) base: String,
    /// Each review agent that changed files, in completion order, with the files.
    pub(super) changed: Vec<(String, Vec<String>)>,
    /// Their work as a chain of commits on `base`, one link made as each agent ends (while the
    /// tests and the other agents may still run), or why it could not be made.
    pub(super) chain: Option<std::result::Result<Vec<Link>, String>>,
    /// The tree of the chain's last commit (of `base` while it is empty).
    pub(super) tip_tree: String,
    /// Each review agent's tracking state before its run: a change that then cannot land is
    /// tracked as what it ends as.
    pub(super) before: BTreeMap<String, AgentState>,
    /// The main tree's HEAD and branch while the tests run there: a review agent that moved
    /// them (through an absolute path) answers for it.
    pub(super) main: SharedTree,
}
