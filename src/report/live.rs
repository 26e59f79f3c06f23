//! The live report: `STATE/report.html`, rewritten (atomically) after every round of a run so
//! a person can watch the night from a browser (`python3 -m http.server -d .orch`). While the
//! run goes on the page reloads itself every [`REFRESH_S`] seconds and says when it was
//! written; the copy written when the run ends does not reload.
//!
//! It is an event sink: the engine knows nothing of it, and a page that cannot be written is a
//! warning, never a failed round. Between round ends it is written again when a running agent
//! does something new (`agentActivity`), at most every [`REFRESH_S`] seconds, so the page says
//! what each running agent did last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::export::{exporter, load, read_state, summarize};
use super::format::Format;
use super::model::LiveInfo;
use crate::error::Result;
use crate::events::{Event, Sink};

/// Seconds between reloads of the live page.
pub const REFRESH_S: u32 = 30;

/// Writes `state_dir/report.html` over every round log; `running` adds the reload, and `agents`
/// the agents running now with what each did last and when.
pub fn write_live(
    state_dir: &Path,
    running: bool,
    agents: Vec<(String, Option<(String, String)>)>,
) -> Result<PathBuf> {
    let loaded = load(state_dir, None)?;
    let state = read_state(state_dir);
    let mut summary = summarize(&loaded, state.as_ref());
    summary.live = Some(LiveInfo {
        written_at: crate::units::now_rfc3339(),
        running,
        refresh_s: REFRESH_S,
        agents,
    });
    let bytes = exporter(Format::Html).export(&summary);
    let path = state_dir.join("report.html");
    crate::engine::store::state::write_atomic(&path, &bytes)?;
    Ok(path)
}

/// The sink that rewrites the live page when a round ends and when the run ends.
pub struct LiveReport {
    state_dir: PathBuf,
    /// A round ended in this run: there is a page to finish.
    wrote: bool,
    /// The agents running now, with what each did last and when (RFC 3339).
    running: BTreeMap<String, Option<(String, String)>>,
    /// When the page was last written for an agent's activity.
    activity_written: Option<Instant>,
}

impl LiveReport {
    pub fn new(state_dir: &Path) -> LiveReport {
        LiveReport {
            state_dir: state_dir.to_path_buf(),
            wrote: false,
            running: BTreeMap::new(),
            activity_written: None,
        }
    }

    fn write(&self, running: bool) {
        let agents = if running {
            self.running
                .iter()
                .map(|(n, a)| (n.clone(), a.clone()))
                .collect()
        } else {
            Vec::new()
        };
        if let Err(e) = write_live(&self.state_dir, running, agents) {
            log::warn!(
                "cannot write the live report {}: {e}",
                self.state_dir.join("report.html").display()
            );
        }
    }
}

impl Sink for LiveReport {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RoundEnd { .. } => {
                self.running.clear();
                self.write(true);
                self.wrote = true;
            }
            Event::AgentStart { agent, .. } => {
                self.running.insert(agent.clone(), None);
            }
            Event::AgentEnd { agent, .. } => {
                self.running.remove(agent);
            }
            Event::AgentActivity {
                agent, activity, ..
            } => {
                if let Some(last) = self.running.get_mut(agent) {
                    *last = Some((activity.clone(), crate::units::now_rfc3339()));
                }
                // A page to update (a round has ended), and not rewritten in the last
                // REFRESH_S: the reader sees it at the next reload anyway.
                let due = self
                    .activity_written
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(u64::from(REFRESH_S)));
                if self.wrote && due {
                    self.activity_written = Some(Instant::now());
                    self.write(true);
                }
            }
            _ => {}
        }
    }

    /// The run is over (however it ended): the last page does not reload.
    fn finish(&mut self) {
        if self.wrote {
            self.write(false);
        }
    }
}
