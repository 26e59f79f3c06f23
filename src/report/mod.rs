//! `orch report`: reads every round log of a state folder back and renders one report in
//! Markdown, JSON, HTML or SVG (docs/src/report.md).
//!
//! Shaped like hyperfine's exporters: [`load`] reads the logs (in parallel; v8 and v9),
//! [`summarize`] builds one [`Summary`] with every figure, and one [`Exporter`] per format turns
//! that summary into bytes without computing anything of its own. The formats therefore agree
//! to the character on every number, and a new format is one new file.
//!
//! What users wrote (agent names, statuses, stop reasons, paths, the mission name) reaches the
//! output only through the escaping helpers ([`escape_md`], [`escape_xml`]).
//!
//! Imports go one way, top to bottom: `live` (the page rewritten during a run) uses `export`
//! (the dispatcher), which uses the formats (`markdown`, `json`, `html`, `svg`), which use only
//! what is below them: `format` (the [`Exporter`] trait), `text` (shared wording), `escape`,
//! `model` (the [`Summary`] types). `summary` builds the model from `load`'s logs with its parts
//! `attention`, `agents`, `timeline` and `outcome`. This file only declares the modules and
//! re-exports the public names; no module imports it.

mod agents;
mod attention;
mod escape;
mod export;
mod format;
mod html;
mod json;
mod live;
mod load;
mod markdown;
mod model;
mod outcome;
mod summary;
mod svg;
pub(crate) mod text;
mod timeline;

pub use escape::{escape_md, escape_xml};
pub use export::{exporter, load, markdown, render, summarize, ReportOptions};
pub use format::{Exporter, Format};
pub use live::{write_live, LiveReport, REFRESH_S};
pub use load::{read_round, round_number, Extra, Loaded, Round, StartsKnown, Warning};
pub use model::{
    AgentRow, AttentionRow, Bar, BarKind, DecisionRow, Hidden, Known, LiveInfo, NothingGroup,
    Review, ReviewCommand, RoundRow, RunCounts, StatusCounts, Summary, TestPoint, TestResult,
    Totals, WarningRow, REPORT_SCHEMA,
};
pub use outcome::kept_ref_in;
pub use timeline::{hidden, overlap_ms, Span};
