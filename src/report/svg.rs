//! The Gantt chart of the rounds, as SVG: the `svg` format on its own and the picture inside the
//! HTML report.
//!
//! Each round is a block with one lane per agent run, the pre-sim, the tests and the post-sim,
//! all on the round's own time axis (milliseconds from the round's start, ticks in seconds).
//! Sims sit on their own lanes but share the axis with the agents and the tests, so the time
//! pipelining hid shows as bars stacked above one another rather than end to end. Bars are
//! coloured by status; a bar placed without a logged start time is drawn dashed and pale.
//!
//! The chart must stay readable and well-formed for any input: at most [`MAX_ROUNDS`] rounds (the
//! latest) and [`MAX_AGENT_LANES`] agent lanes per round are drawn, the rest is said in words;
//! every string from a log goes through [`escape_xml`].

use std::fmt::Write;

use super::escape::escape_xml;
use super::format::Exporter;
use super::model::{Bar, BarKind, BarStatus, RoundRow, Summary};
use crate::roundlog::{RunStatus, StepStatus};
use crate::units::duration_ms;

pub struct SvgExporter;

impl Exporter for SvgExporter {
    fn export(&self, s: &Summary) -> Vec<u8> {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&chart(s));
        out.into_bytes()
    }
}

/// Rounds drawn at most (the latest ones); a long overnight run is summed up by the tables.
pub const MAX_ROUNDS: usize = 60;
/// Agent lanes per round at most; runs beyond share one last lane.
pub const MAX_AGENT_LANES: usize = 12;

const WIDTH: f64 = 1100.0;
const LABEL_W: f64 = 170.0;
const RIGHT_PAD: f64 = 24.0;
const PLOT_W: f64 = WIDTH - LABEL_W - RIGHT_PAD;
const LANE_H: f64 = 17.0;
const BAR_H: f64 = 12.0;
const ROUND_HEAD: f64 = 24.0;
const AXIS_H: f64 = 18.0;
const ROUND_GAP: f64 = 16.0;
const TOP: f64 = 92.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

/// Fill colour of a bar: agents by run status; sims and tests have their own hues, with the
/// failure colours darkened so they read as a step, not an agent.
pub fn colour(kind: BarKind, status: BarStatus) -> &'static str {
    use BarStatus::{Run, Step};
    match kind {
        BarKind::Agent => match status {
            Run(RunStatus::Ok) => "#2e9e44",
            Run(RunStatus::Empty) => "#9aa0a6",
            Run(RunStatus::Failed) => "#d64541",
            Run(RunStatus::Timeout) => "#f08c00",
            Run(RunStatus::Conflict) => "#8e44ad",
            _ => "#d5d8dc",
        },
        BarKind::PreSim | BarKind::PostSim | BarKind::Sims => match status {
            Step(StepStatus::Ok | StepStatus::Passed) => "#3b7dd8",
            Step(StepStatus::Failed) => "#a3312a",
            Step(StepStatus::Timeout) => "#b85f00",
            _ => "#c3d3ea",
        },
        BarKind::Tests => match status {
            Step(StepStatus::Ok | StepStatus::Passed) => "#14898a",
            Step(StepStatus::Failed) => "#a3312a",
            Step(StepStatus::Timeout) => "#b85f00",
            _ => "#c2e0e0",
        },
        // A revert's extra runs: the tests' hues, lighter, so they read as the same step
        // repeated.
        BarKind::RevertTests => match status {
            Step(StepStatus::Ok | StepStatus::Passed) => "#6cc3c4",
            Step(StepStatus::Failed) => "#d98b84",
            Step(StepStatus::Timeout) => "#e0a35c",
            _ => "#c2e0e0",
        },
    }
}

const LEGEND: [(&str, &str); 13] = [
    ("#2e9e44", "agent ok"),
    ("#9aa0a6", "empty"),
    ("#d64541", "failed"),
    ("#f08c00", "timeout"),
    ("#8e44ad", "conflict"),
    ("#d5d8dc", "cancelled"),
    ("#3b7dd8", "sim ok"),
    ("#14898a", "tests passed"),
    ("#a3312a", "sim/tests failed"),
    ("#b85f00", "sim/tests timeout"),
    ("#6cc3c4", "revert run passed"),
    ("#d98b84", "revert run failed"),
    ("", "no start time logged"),
];

struct Lane<'a> {
    label: String,
    bars: Vec<&'a Bar>,
    overflow: bool,
}

fn lanes(r: &RoundRow) -> Vec<Lane<'_>> {
    let agents = r.bars.iter().filter(|b| b.kind == BarKind::Agent).count();
    let mut shown_agents = 0;
    let mut out: Vec<Lane> = Vec::new();
    let mut overflow = Lane {
        label: String::new(),
        bars: Vec::new(),
        overflow: true,
    };
    for b in &r.bars {
        if b.kind == BarKind::Agent && agents > MAX_AGENT_LANES {
            if shown_agents + 1 >= MAX_AGENT_LANES {
                overflow.bars.push(b);
                continue;
            }
            shown_agents += 1;
        }
        out.push(Lane {
            label: b.label.clone(),
            bars: vec![b],
            overflow: false,
        });
    }
    if !overflow.bars.is_empty() {
        overflow.label = format!("{} more agent runs", overflow.bars.len());
        // Keep the overflow lane with the code agents, before the tests.
        let at = out
            .iter()
            .position(|l| l.bars.iter().any(|b| b.kind == BarKind::Tests))
            .unwrap_or(out.len());
        out.insert(at, overflow);
    }
    out
}

fn block_height(lanes: usize) -> f64 {
    ROUND_HEAD + (lanes.max(1) as f64) * LANE_H + AXIS_H + ROUND_GAP
}

/// A tick step that gives at most eight ticks over `domain_ms`.
fn tick_step(domain_ms: u64) -> u64 {
    const STEPS: [u64; 17] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| domain_ms / s <= 8)
        .unwrap_or_else(|| (domain_ms / 8).max(1))
}

fn seconds(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Cut a label to fit the label column, by characters (never inside a UTF-8 sequence).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The `<svg>` element alone, for standalone files and for inlining in HTML.
pub fn chart(s: &Summary) -> String {
    let skip = s.rounds.len().saturating_sub(MAX_ROUNDS);
    let shown = &s.rounds[skip..];
    let laid: Vec<Vec<Lane>> = shown.iter().map(lanes).collect();
    let height = TOP
        + laid.iter().map(|l| block_height(l.len())).sum::<f64>()
        + if shown.is_empty() { 40.0 } else { 0.0 };

    let mut out = String::with_capacity(4096 + shown.len() * 2048);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="11" role="img">"##
    );
    let title = if s.mission.is_empty() {
        "orch rounds".to_string()
    } else {
        format!("orch rounds: {}", s.mission)
    };
    let _ = write!(
        out,
        r##"<title>{}</title><rect width="100%" height="100%" fill="#ffffff"/>"##,
        escape_xml(&title)
    );
    let _ = write!(
        out,
        r##"<text x="12" y="24" font-size="16" font-weight="bold" fill="#222">{}</text>"##,
        escape_xml(&title)
    );
    let mut note = format!(
        "Gantt chart of each round: bars from each process's start, x = time from the round's start ({} rounds",
        s.rounds.len()
    );
    if skip > 0 {
        let _ = write!(note, ", the last {} shown", shown.len());
    }
    note.push(')');
    let _ = write!(
        out,
        r##"<text x="12" y="42" fill="#555">{}</text>"##,
        escape_xml(&note)
    );
    legend(&mut out);

    if shown.is_empty() {
        let _ = write!(
            out,
            r##"<text x="12" y="{}" fill="#555">No rounds to show.</text>"##,
            TOP + 20.0
        );
    }
    let mut y = TOP;
    for (r, lanes) in shown.iter().zip(&laid) {
        round_block(&mut out, r, lanes, y);
        y += block_height(lanes.len());
    }
    out.push_str("</svg>\n");
    out
}

fn legend(out: &mut String) {
    let mut x = 12.0;
    let y = 54.0;
    let mut y = y;
    for (fill, label) in LEGEND {
        let w = 22.0 + label.chars().count() as f64 * 6.2 + 12.0;
        if x + w > WIDTH - 12.0 {
            x = 12.0;
            y += 15.0;
        }
        if fill.is_empty() {
            let _ = write!(
                out,
                r##"<rect x="{x}" y="{y}" width="14" height="10" fill="#9aa0a6" fill-opacity="0.6" stroke="#444" stroke-dasharray="3,2"/>"##
            );
        } else {
            let _ = write!(
                out,
                r##"<rect x="{x}" y="{y}" width="14" height="10" fill="{fill}"/>"##
            );
        }
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" fill="#333">{label}</text>"##,
            x + 18.0,
            y + 9.0
        );
        x += w;
    }
}

/// The round's heading: number, status, what landed, time, cost, waits, what pipelining hid.
fn round_head(r: &RoundRow) -> String {
    let mut head = format!("Round {}", r.round);
    if r.legacy {
        head.push_str(" (v8)");
    }
    let _ = write!(
        head,
        " · {} · {} · {} · {}",
        r.status.as_str(),
        if r.landed {
            format!(
                "landed {} file{}",
                r.files,
                if r.files == 1 { "" } else { "s" }
            )
        } else {
            format!(
                "landed nothing ({})",
                r.nothing_why.as_deref().unwrap_or("nothing kept")
            )
        },
        duration_ms(r.total_ms),
        super::text::money(r.cost_usd, r.cost_known)
    );
    if r.waited_ms > 0 {
        let _ = write!(head, " · waited {}", duration_ms(r.waited_ms));
    }
    if r.hidden.total_ms > 0 {
        let _ = write!(head, " · pipelining hid {}", duration_ms(r.hidden.total_ms));
    }
    head
}

/// One round's block of the chart: its heading, the time axis, and a lane of bars per row.
fn round_block(out: &mut String, r: &RoundRow, lanes: &[Lane], y0: f64) {
    let domain = r
        .bars
        .iter()
        .map(|b| b.start_ms.saturating_add(b.elapsed_ms))
        .max()
        .unwrap_or(0)
        .max(r.total_ms)
        .max(1);
    let x_of = |ms: u64| LABEL_W + PLOT_W * (ms.min(domain) as f64) / (domain as f64);
    let lanes_h = (lanes.len().max(1) as f64) * LANE_H;
    let top = y0 + ROUND_HEAD;

    let head = round_head(r);
    let _ = write!(
        out,
        r##"<g class="round"><rect x="6" y="{}" width="{}" height="{}" fill="#f6f7f9" rx="4"/>"##,
        y0 + 4.0,
        WIDTH - 12.0,
        ROUND_HEAD + lanes_h + AXIS_H - 2.0
    );
    let _ = write!(
        out,
        r##"<text x="12" y="{}" font-weight="bold" fill="#222">{}</text>"##,
        y0 + 18.0,
        escape_xml(&head)
    );

    // A round where nothing ran gets no axis: ticks over a few milliseconds of bookkeeping
    // would suggest there was something to measure.
    let step = tick_step(domain);
    let mut t = 0;
    while !lanes.is_empty() && t <= domain {
        let x = x_of(t);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#d8dbe0" stroke-width="1"/><text x="{x:.1}" y="{}" fill="#666" font-size="10" text-anchor="middle">{}</text>"##,
            top + lanes_h,
            top + lanes_h + 12.0,
            seconds(t)
        );
        match t.checked_add(step) {
            Some(next) => t = next,
            None => break,
        }
    }

    if lanes.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{LABEL_W}" y="{}" fill="#777" font-style="italic">nothing ran this round</text>"##,
            top + 12.0
        );
    }
    for (i, lane) in lanes.iter().enumerate() {
        let ly = top + i as f64 * LANE_H;
        let kind = lane.bars.first().map(|b| b.kind).unwrap_or(BarKind::Agent);
        let label_fill = if kind == BarKind::Agent {
            "#222"
        } else {
            "#1d4f91"
        };
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" fill="{label_fill}" text-anchor="end"{}>{}</text>"##,
            LABEL_W - 8.0,
            ly + 12.0,
            if lane.overflow {
                r#" font-style="italic""#
            } else {
                ""
            },
            escape_xml(&clip(&lane.label, 26))
        );
        for b in &lane.bars {
            bar(out, b, ly, &x_of, lane.overflow);
        }
    }
    out.push_str("</g>");
}

fn bar(out: &mut String, b: &Bar, ly: f64, x_of: &dyn Fn(u64) -> f64, faint: bool) {
    let x = x_of(b.start_ms);
    let w = (x_of(b.start_ms.saturating_add(b.elapsed_ms)) - x).max(1.5);
    let fill = colour(b.kind, b.status);
    let style = if b.estimated {
        r##" fill-opacity="0.6" stroke="#444" stroke-dasharray="3,2""##
    } else if faint {
        r##" fill-opacity="0.7""##
    } else {
        ""
    };
    let tip = format!(
        "{} ({}): {}, {} from {}{}",
        b.label,
        kind_name(b.kind),
        b.status,
        duration_ms(b.elapsed_ms),
        seconds(b.start_ms),
        if b.estimated {
            ", start not logged"
        } else {
            ""
        }
    );
    let _ = write!(
        out,
        r##"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{BAR_H}" rx="2" fill="{fill}"{style}><title>{}</title></rect>"##,
        ly + (LANE_H - BAR_H) / 2.0,
        escape_xml(&tip)
    );
    let label = duration_ms(b.elapsed_ms);
    if w > label.len() as f64 * 6.5 + 8.0 && !faint {
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="{}" font-size="10" pointer-events="none">{label}</text>"##,
            x + 4.0,
            ly + 12.0,
            if b.estimated { "#222" } else { "#fff" }
        );
    }
}

fn kind_name(k: BarKind) -> &'static str {
    match k {
        BarKind::Agent => "agent",
        BarKind::PreSim => "pre-sim",
        BarKind::PostSim => "post-sim",
        BarKind::Sims => "serial sims",
        BarKind::Tests => "tests",
        BarKind::RevertTests => "revert test run",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_few_and_round() {
        assert_eq!(tick_step(500), 100);
        assert_eq!(tick_step(45_000), 10_000);
        assert_eq!(tick_step(551_000), 120_000);
        assert!(u64::MAX / tick_step(u64::MAX) <= 9);
    }

    #[test]
    fn clipping_respects_characters() {
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
