//! The Markdown report: what a terminal user pipes to a file and what GitHub renders in a job
//! summary (`$GITHUB_STEP_SUMMARY`). GitHub-flavoured tables; every user-supplied string goes
//! through [`escape_md`] so a name with `|` cannot add a column.

use std::fmt::Write;

use super::escape::escape_md;
use super::format::Exporter;
use super::model::Summary;
use super::text::{self, round_list};

pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn export(&self, s: &Summary) -> Vec<u8> {
        render(s).into_bytes()
    }
}

fn row<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    out.push('|');
    for c in cells {
        out.push(' ');
        out.push_str(c.as_ref());
        out.push_str(" |");
    }
    out.push('\n');
}

fn header(out: &mut String, cells: &[&str]) {
    row(out, cells);
    out.push('|');
    for i in 0..cells.len() {
        out.push_str(if text::is_numeric(cells, i) {
            " ---: |"
        } else {
            " --- |"
        });
    }
    out.push('\n');
}

fn escaped<I: IntoIterator<Item = String>>(cells: I) -> Vec<String> {
    cells.into_iter().map(|c| escape_md(&c)).collect()
}

/// The whole document: one section after another, each written by its own function below.
fn render(s: &Summary) -> String {
    let mut out = String::with_capacity(256 + s.rounds.len() * 160);
    title(&mut out, s);
    totals(&mut out, s);
    attention(&mut out, s);
    landed_and_review(&mut out, s);
    timeline_agents_decisions(&mut out, s);
    files_and_hidden(&mut out, s);
    warnings(&mut out, s);
    out
}

/// The title, the live line and the headline.
fn title(out: &mut String, s: &Summary) {
    if s.mission.is_empty() {
        out.push_str("# orch report\n\n");
    } else {
        let _ = writeln!(out, "# orch report: {}\n", escape_md(&s.mission));
    }
    if let Some(live) = &s.live {
        let _ = writeln!(out, "_{}_\n", escape_md(&text::live(live)));
    }
    let _ = writeln!(out, "**{}**\n", escape_md(&s.totals.headline));
}

/// The totals as a bullet list.
fn totals(out: &mut String, s: &Summary) {
    let t = &s.totals;
    let _ = writeln!(
        out,
        "- **Round statuses:** {}",
        escape_md(&text::rounds_by_status(s))
    );
    if let (Some(a), Some(b)) = (t.first_round, t.last_round) {
        let _ = writeln!(out, "- **Round range:** {a}..{b}");
    }
    let _ = writeln!(
        out,
        "- **Wall time:** {}",
        crate::units::duration_ms(t.wall_ms)
    );
    if t.waited_ms > 0 {
        let _ = writeln!(
            out,
            "- **Waited on provider limits:** {}",
            crate::units::duration_ms(t.waited_ms)
        );
    }
    let _ = writeln!(out, "- **Cost:** {}", escape_md(&text::cost(s)));
    let _ = writeln!(out, "- **Tests:** {}", text::tests_trend(s));
    let _ = writeln!(
        out,
        "- **Flaky tests in rounds:** {}",
        round_list(&t.flaky_rounds)
    );
    if t.has_pipelining() {
        let _ = writeln!(out, "- **Pipelining hid:** {}", text::hidden(s));
    }
    if let Some(reason) = &t.stop_reason {
        let _ = writeln!(out, "- **Stopped:** {}", escape_md(reason));
    }
}

/// What needs attention, one bullet per row.
fn attention(out: &mut String, s: &Summary) {
    if !s.attention.is_empty() {
        out.push_str("\n## Needs attention\n\n");
        for a in &s.attention {
            let _ = writeln!(
                out,
                "- {} {}{}: {}",
                text::rounds_of(&a.rounds),
                escape_md(&a.kind),
                a.agent
                    .as_deref()
                    .map(|n| format!(" ({})", escape_md(n)))
                    .unwrap_or_default(),
                escape_md(&a.detail)
            );
        }
    }
}

/// What landed, per round, and the commands to review it.
fn landed_and_review(out: &mut String, s: &Summary) {
    if !s.rounds.is_empty() {
        out.push_str("\n## What landed\n\n");
        out.push_str(
            "Per round: the agents whose change stayed, those a revert took out, and the tests of \
             the first attempt and of the tree that was committed.\n\n",
        );
        header(out, &text::LANDED_HEADER);
        for r in &s.rounds {
            row(out, &escaped(text::landed_cells(r)));
        }
    }

    if !s.review.commands.is_empty() {
        out.push_str("\n## How to review\n\n```sh\n");
        for c in &s.review.commands {
            // Inside a code block nothing is Markdown; a line break is all that could escape.
            let _ = writeln!(
                out,
                "{}  # {}",
                c.command.replace(['\n', '\r', '`'], " "),
                c.what.replace(['\n', '\r', '`'], " ")
            );
        }
        out.push_str("```\n");
    }
}

/// The timeline, agents' and decisions' tables.
fn timeline_agents_decisions(out: &mut String, s: &Summary) {
    out.push_str("\n## Timeline\n\n");
    let head = text::timeline_header(s);
    header(out, &head);
    for r in &s.rounds {
        row(out, &escaped(text::timeline_cells(s, r)));
    }

    if !s.agents.is_empty() {
        out.push_str("\n## Agents\n\n");
        out.push_str(
            "Kept: runs whose change stayed (a failed run whose change was tested too: its \
             failures by cause say how it ended); rejected: finished but taken out by a revert. \
             Per kept change: the agent's cost over its kept changes.\n\n",
        );
        header(out, &text::agent_header(s));
        for a in &s.agents {
            row(out, &escaped(text::agent_row(s, a)));
        }
    }

    if !s.decisions.is_empty() {
        out.push_str("\n## Decisions\n\n");
        let rounds = s.decisions.first().map(|d| d.rounds).unwrap_or(0);
        let _ = writeln!(
            out,
            "Over the {rounds} rounds whose logs record the plan. Kept is the share of inclusions \
             whose change stayed; idle is the share of those rounds the agent was not included.\n"
        );
        header(out, &text::DECISION_HEADER);
        for d in &s.decisions {
            row(out, &escaped(text::decision_cells(d)));
        }
    }
}

/// Every file modified, and the time pipelining hid.
fn files_and_hidden(out: &mut String, s: &Summary) {
    let t = &s.totals;
    if !s.files.is_empty() {
        out.push_str("\n## All files modified\n\n");
        out.push_str(
            "Every file a kept change touched, with the rounds and agents that changed it (a \
             rejected, failed or conflicting run's files are in its kept ref, not here).\n\n",
        );
        header(out, &text::FILES_HEADER);
        for f in &s.files {
            row(out, &escaped(text::file_cells(f)));
        }
    }

    if t.has_pipelining() {
        out.push_str("\n## Time pipelining hid\n\n");
        let _ = writeln!(
            out,
            "The pre-sim runs beside Phase A's agents, the post-sim and Phase B (`phaseB: \
             \"besideTests\"`) beside the tests; this is the time that lay under that other work, \
             which a serial (v8) loop would have added. v8 rounds hid nothing. (est.) marks \
             rounds without start times.\n"
        );
        header(out, &text::HIDDEN_HEADER);
        for r in &s.rounds {
            row(out, &escaped(text::hidden_cells(r)));
        }
        row(
            out,
            &text::hidden_total_cells(s)
                .iter()
                .map(|c| format!("**{}**", escape_md(c)))
                .collect::<Vec<_>>(),
        );
    }
}

/// The warnings met while reading the logs.
fn warnings(out: &mut String, s: &Summary) {
    if !s.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for w in &s.warnings {
            let _ = writeln!(out, "- {}: {}", escape_md(&w.file), escape_md(&w.message));
        }
    }
}
