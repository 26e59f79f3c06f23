//! The Markdown report: what a terminal user pipes to a file and what GitHub renders in a job
//! summary (`$GITHUB_STEP_SUMMARY`). GitHub-flavoured tables; every user-supplied string goes
//! through [`escape_md`] so a name with `|` cannot add a column.

use std::fmt::Write;

use super::summary::Summary;
use super::text;
use super::{escape_md, round_list, Exporter};

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

fn escaped<const N: usize>(cells: [String; N]) -> Vec<String> {
    cells.iter().map(|c| escape_md(c)).collect()
}

fn render(s: &Summary) -> String {
    let mut out = String::with_capacity(256 + s.rounds.len() * 160);
    if s.mission.is_empty() {
        out.push_str("# orch report\n\n");
    } else {
        let _ = writeln!(out, "# orch report: {}\n", escape_md(&s.mission));
    }

    let t = &s.totals;
    let _ = writeln!(
        out,
        "- **Rounds:** {}",
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
    let _ = writeln!(out, "- **Cost:** {}", text::cost(s));
    let _ = writeln!(out, "- **Tests:** {}", text::tests_trend(s));
    let _ = writeln!(
        out,
        "- **Flaky tests in rounds:** {}",
        round_list(&t.flaky_rounds)
    );
    let _ = writeln!(out, "- **Pipelining hid:** {}", text::hidden(s));
    if let Some(reason) = &t.stop_reason {
        let _ = writeln!(out, "- **Stopped:** {}", escape_md(reason));
    }

    out.push_str("\n## Timeline\n\n");
    header(&mut out, &text::TIMELINE_HEADER);
    for r in &s.rounds {
        row(&mut out, &escaped(text::timeline_cells(r)));
    }

    if !s.agents.is_empty() {
        out.push_str("\n## Agents\n\n");
        header(&mut out, &text::AGENT_HEADER);
        for a in &s.agents {
            row(&mut out, &escaped(text::agent_cells(a)));
        }
    }

    if !s.decisions.is_empty() {
        out.push_str("\n## Decisions\n\n");
        let rounds = s.decisions.first().map(|d| d.rounds).unwrap_or(0);
        let _ = writeln!(
            out,
            "Over the {rounds} rounds whose logs record the plan. Success is ok runs per \
             inclusion; idle is the share of those rounds the agent was not included.\n"
        );
        header(&mut out, &text::DECISION_HEADER);
        for d in &s.decisions {
            row(&mut out, &escaped(text::decision_cells(d)));
        }
    }

    if !s.attention.is_empty() {
        out.push_str("\n## Needs attention\n\n");
        for a in &s.attention {
            let _ = writeln!(
                out,
                "- round {} {}{}: {}",
                a.round,
                escape_md(&a.kind),
                a.agent
                    .as_deref()
                    .map(|n| format!(" ({})", escape_md(n)))
                    .unwrap_or_default(),
                escape_md(&a.detail)
            );
        }
    }

    out.push_str("\n## Time pipelining hid\n\n");
    let _ = writeln!(
        out,
        "The pre-sim runs beside Phase A's agents and the post-sim beside the tests; this is the \
         sim time that lay under that other work, which a serial (v8) loop would have added. \
         v8 rounds hid nothing. (est.) marks rounds without start times.\n"
    );
    header(&mut out, &text::HIDDEN_HEADER);
    for r in &s.rounds {
        row(&mut out, &escaped(text::hidden_cells(r)));
    }
    row(
        &mut out,
        &text::hidden_total_cells(s)
            .iter()
            .map(|c| format!("**{}**", escape_md(c)))
            .collect::<Vec<_>>(),
    );

    if !s.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for w in &s.warnings {
            let _ = writeln!(out, "- {}: {}", escape_md(&w.file), escape_md(&w.message));
        }
    }
    out
}
