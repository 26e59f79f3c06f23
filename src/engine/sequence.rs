//! Mission sequences: a file that chains missions, each with its own round budget. The run moves
//! to the next mission when the current one finishes (every agent `all-done`, or converged) or
//! its rounds run out; an interrupt, a budget stop or an error ends the whole sequence.
//!
//! ```json
//! { "name": "release", "sequence": [ { "mission": "build.json", "rounds": 5 },
//!                                    { "mission": "polish.json", "rounds": 3 } ] }
//! ```
//!
//! The progress (which mission, how many of its rounds ran) is kept in `sequence.json` in the
//! first mission's state folder, written atomically, so `orch run` resumes a sequence where it
//! stopped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::runner::{self, RunOptions, Workspace};
use crate::engine::store::state::{read_json, write_json, Lock, State};
use crate::error::{Error, Result, EXIT_FINISHED, EXIT_OK};
use crate::events::Events;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sequence {
    pub name: String,
    pub sequence: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// The mission file, relative to the sequence file's folder.
    pub mission: PathBuf,
    /// How many rounds this mission gets at most.
    pub rounds: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    step: usize,
    rounds_done: u32,
}

/// Reads `path` as a sequence if it is one (a top-level `sequence` key); `None` for a mission.
pub fn detect(path: &Path) -> Result<Option<Sequence>> {
    if path.as_os_str() == "-" {
        return Ok(None);
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let text = crate::mission::strip_comments(&text);
    let is_sequence = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .is_some_and(|v| v.get("sequence").is_some());
    if !is_sequence {
        return Ok(None);
    }
    let de = &mut serde_json::Deserializer::from_str(&text);
    let seq: Sequence = serde_path_to_error::deserialize(de)
        .map_err(|e| Error::mission(path, e.path().to_string(), e.into_inner().to_string()))?;
    if seq.sequence.is_empty() {
        return Err(Error::mission(
            path,
            "sequence",
            "a sequence needs at least one mission",
        ));
    }
    for (i, s) in seq.sequence.iter().enumerate() {
        if s.rounds == 0 {
            return Err(Error::mission(
                path,
                format!("sequence[{i}].rounds"),
                "must be at least 1",
            ));
        }
    }
    Ok(Some(seq))
}

/// Runs the sequence from where it stopped; returns the exit status.
pub fn run(
    seq: &Sequence,
    file: &Path,
    opts: &RunOptions,
    events: &Events,
    lock: &Lock,
) -> Result<i32> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let rel = |m: &Path| dir.join(m);
    // Every mission must load before any round runs: a typo in the third mission should not
    // surface hours into the night.
    let spaces: Vec<Workspace> = seq
        .sequence
        .iter()
        .map(|s| Workspace::open(&opts.dir, &rel(&s.mission)))
        .collect::<Result<_>>()?;
    let progress_file = spaces[0].layout.dir.join("sequence.json");
    let mut progress: Progress = read_json(&progress_file)?.unwrap_or_default();
    while progress.step < seq.sequence.len() {
        let step = &seq.sequence[progress.step];
        let ws = &spaces[progress.step];
        let left = step.rounds.saturating_sub(progress.rounds_done);
        log::info!(
            "sequence {}: mission {} of {} ({}), {left} of {} rounds left",
            seq.name,
            progress.step + 1,
            seq.sequence.len(),
            ws.mission().name,
            step.rounds
        );
        let step_opts = RunOptions {
            mission: rel(&step.mission),
            more_rounds: Some(left),
            ..opts.clone()
        };
        // One lock per repository: the one taken for the first mission covers every state
        // folder of the sequence.
        let (code, ran) = if left == 0 {
            (EXIT_OK, 0)
        } else {
            runner::run_counted(ws, &step_opts, events, lock)?
        };
        progress.rounds_done += ran;
        let finished = code == EXIT_FINISHED || progress.rounds_done >= step.rounds;
        if !(finished && (code == EXIT_OK || code == EXIT_FINISHED)) {
            write_json(&progress_file, &progress)?;
            return Ok(code);
        }
        // The next mission starts afresh: its agents' handoffs are their own.
        forget_handoffs(ws)?;
        progress = Progress {
            step: progress.step + 1,
            rounds_done: 0,
        };
        write_json(&progress_file, &progress)?;
    }
    log::info!("sequence {}: every mission ran", seq.name);
    Ok(EXIT_OK)
}

fn forget_handoffs(ws: &Workspace) -> Result<()> {
    let mut state = State::load(&ws.layout)?;
    for a in state.agents.values_mut() {
        a.handoff = None;
    }
    state.save(&ws.layout)?;
    let _ = std::fs::remove_dir_all(ws.layout.dir.join("handoff"));
    Ok(())
}
