//! The live report: `STATE/report.html`, rewritten (atomically) after every round of a run so
//! a person can watch the night from a browser (`python3 -m http.server -d .orch`). While the
//! run goes on the page reloads itself every [`REFRESH_S`] seconds and says when it was
//! written; the copy written when the run ends does not reload.
//!
//! It is an event sink: the engine knows nothing of it, and a page that cannot be written is a
//! warning, never a failed round.

use std::path::{Path, PathBuf};

use super::export::{exporter, load, read_state, summarize};
use super::format::Format;
use super::model::LiveInfo;
use crate::error::Result;
use crate::events::{Event, Sink};

/// Seconds between reloads of the live page.
pub const REFRESH_S: u32 = 30;

/// Writes `state_dir/report.html` over every round log; `running` adds the reload.
pub fn write_live(state_dir: &Path, running: bool) -> Result<PathBuf> {
    let loaded = load(state_dir, None)?;
    let state = read_state(state_dir);
    let mut summary = summarize(&loaded, state.as_ref());
    summary.live = Some(LiveInfo {
        written_at: crate::units::now_rfc3339(),
        running,
        refresh_s: REFRESH_S,
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
}

impl LiveReport {
    pub fn new(state_dir: &Path) -> LiveReport {
        LiveReport {
            state_dir: state_dir.to_path_buf(),
            wrote: false,
        }
    }

    fn write(&self, running: bool) {
        if let Err(e) = write_live(&self.state_dir, running) {
            log::warn!(
                "cannot write the live report {}: {e}",
                self.state_dir.join("report.html").display()
            );
        }
    }
}

impl Sink for LiveReport {
    fn event(&mut self, event: &Event) {
        if let Event::RoundEnd { .. } = event {
            self.write(true);
            self.wrote = true;
        }
    }

    /// The run is over (however it ended): the last page does not reload.
    fn finish(&mut self) {
        if self.wrote {
            self.write(false);
        }
    }
}
