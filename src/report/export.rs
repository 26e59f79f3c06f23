//! The dispatcher of `orch report`: load the round logs, build the one [`Summary`], pick the
//! [`Exporter`] for the asked format and let it write. It sits above the formats (it names each
//! one in [`exporter`]) and below the live page, which renders through it; nothing under it
//! imports it.

use std::path::{Path, PathBuf};

use super::format::{Exporter, Format};
use super::html::HtmlExporter;
use super::json::JsonExporter;
use super::load::Loaded;
use super::markdown::MarkdownExporter;
use super::model::Summary;
use super::svg::SvgExporter;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub state_dir: PathBuf,
    pub format: Format,
    /// Only rounds A..=B.
    pub rounds: Option<(u32, u32)>,
}

/// The exporter for `format`.
pub fn exporter(format: Format) -> Box<dyn Exporter> {
    match format {
        Format::Markdown => Box::new(MarkdownExporter),
        Format::Json => Box::new(JsonExporter),
        Format::Html => Box::new(HtmlExporter),
        Format::Svg => Box::new(SvgExporter),
    }
}

/// Loads the round logs of `state_dir`: `rounds/round-NNNN.json`, v8 and v9, in parallel,
/// sorted by round. A missing or empty rounds folder is an [`Error::Usage`]; a log that does not
/// parse is a warning (also sent to `log::warn!`) and is skipped.
pub fn load(state_dir: &Path, rounds: Option<(u32, u32)>) -> Result<Loaded> {
    super::load::load(state_dir, rounds)
}

/// Builds the summary every format renders; `state_json` (the parsed `state.json`) gives each
/// agent's current model.
pub fn summarize(loaded: &Loaded, state_json: Option<&serde_json::Value>) -> Summary {
    super::summary::summarize(loaded, state_json)
}

/// Load, summarize and export: the whole of `orch report`.
pub fn render(opts: &ReportOptions) -> Result<Vec<u8>> {
    let loaded = load(&opts.state_dir, opts.rounds)?;
    let state = read_state(&opts.state_dir);
    let summary = summarize(&loaded, state.as_ref());
    Ok(exporter(opts.format).export(&summary))
}

/// The Markdown report of every round, for `$GITHUB_STEP_SUMMARY`.
pub fn markdown(state_dir: &Path) -> Result<String> {
    let bytes = render(&ReportOptions {
        state_dir: state_dir.to_path_buf(),
        format: Format::Markdown,
        rounds: None,
    })?;
    String::from_utf8(bytes).map_err(|e| Error::Other(format!("markdown report is not UTF-8: {e}")))
}

/// `state.json`, when it is there and parses. The report only borrows a model name from it, so
/// a missing or broken state is a warning, not a failure.
pub(super) fn read_state(state_dir: &Path) -> Option<serde_json::Value> {
    let path = state_dir.join("state.json");
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!(
                "{}: not valid JSON ({e}); models come from the round logs",
                path.display()
            );
            None
        }
    }
}
