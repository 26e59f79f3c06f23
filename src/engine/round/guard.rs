//! The repository's own git settings guarded around the agents (without a sandbox, or beside
//! one): an agent can write the common git folder from its worktree (a `core.fsmonitor` or a
//! filter in `config`, a hook in `hooks/`, a file in `info/`) that the user's next git command
//! would run. orch's own git never runs them (`git::noexec`); this puts them back. The
//! settings are taken before the round's first pool (`git::guard::Guard`), and each settled
//! run is checked against them on the main thread: a change is put back, what the agent wrote
//! kept under the round's logs (`git-settings/AGENT/`), and the run's entry, its `agentEnd`
//! (which the attention hook gets) and a warning name the agent.
//!
//! Several agents at once: the change is found when the first run that ends after it is
//! settled, and named after that agent, with the other agents that were running then (in a
//! shared tree, or when worktrees run side by side, it may be any of them).

use crate::engine::git::guard::Guard;
use crate::events::Event;
use crate::mission::Agent;
use crate::roundlog::AgentEntry;

use super::state::Round;

impl Round<'_, '_> {
    /// Takes the repository's git settings as they are, before the round's first agent.
    pub(super) fn take_git_settings(&mut self) {
        if self.dispatched.guard.is_some() {
            return;
        }
        match Guard::take(self.env.git.common_dir()) {
            Ok(g) => self.dispatched.guard = Some(g),
            Err(e) => log::warn!(
                "round {}: cannot read the git settings to guard: {e}",
                self.round
            ),
        }
    }

    /// Checks the repository's git settings after `agent`'s run: a change is put back, kept,
    /// and reported in `entry` and a warning. `running`: the agents still running beside it.
    pub(super) fn guard_git_settings(
        &mut self,
        agent: &Agent,
        entry: &mut AgentEntry,
        running: &[String],
    ) {
        let Some(guard) = &self.dispatched.guard else {
            return;
        };
        let changes = match guard.changes() {
            Ok(c) if c.is_empty() => return,
            Ok(c) => c,
            Err(e) => {
                log::warn!("round {}: cannot check the git settings: {e}", self.round);
                return;
            }
        };
        let keep = self
            .env
            .layout
            .logs(self.round)
            .join("git-settings")
            .join(&agent.name);
        let kept = self.env.layout.relative(&keep);
        let put_back = match guard.put_back(&changes, &keep) {
            Ok(()) => "put back",
            Err(e) => {
                log::warn!("round {}: putting back the git settings: {e}", self.round);
                "NOT put back"
            }
        };
        entry.git_settings_put_back = changes
            .iter()
            .map(|c| format!("{c} ({put_back}; what the agent wrote is in {kept}/)"))
            .collect();
        let beside = match running {
            [] => String::new(),
            r => format!(" (running beside it: {})", r.join(", ")),
        };
        let listed: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        self.env.events.emit(Event::Warning {
            round: Some(self.round),
            message: format!(
                "agent {}{beside} changed the repository's git settings: {}; {put_back}, what it \
                 wrote kept in {kept}/",
                agent.name,
                listed.join(", ")
            ),
        });
    }
}
