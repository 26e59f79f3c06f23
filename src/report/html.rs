//! The HTML report: one self-contained page (inline CSS, the Gantt SVG inline, no script, no
//! external asset) that can be mailed, attached to a CI run or opened from disk years later.
//! It says what the Markdown report says, with the same wording ([`super::text`]), plus the
//! chart. The markup is also well-formed XML (void elements closed with `/>`), so the tests
//! read it with an XML parser. The live page (`STATE/report.html`, [`super::write_live`]) adds
//! when it was written and, while the run is going, a meta refresh.

use std::fmt::Write;

use super::escape::escape_xml;
use super::format::Exporter;
use super::model::Summary;
use super::svg;
use super::text::{self, round_list};
use crate::units::duration_ms;

pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn export(&self, s: &Summary) -> Vec<u8> {
        render(s).into_bytes()
    }
}

const CSS: &str = "
body { font: 14px/1.45 'DejaVu Sans', Helvetica, Arial, sans-serif; color: #222; margin: 24px;
       max-width: 1140px; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #e3e5e8; padding-bottom: 4px; }
dl.totals { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.totals dt { font-weight: bold; color: #444; }
dl.totals dd { margin: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
th, td { border: 1px solid #dde0e4; padding: 3px 8px; white-space: nowrap; }
th { background: #f1f3f5; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.legacy td { color: #666; background: #fbfbf4; }
tr.st-reverted td:nth-child(2) { color: #a3312a; font-weight: bold; }
tr.st-failed td:nth-child(2) { color: #d64541; font-weight: bold; }
tr.st-interrupted td:nth-child(2) { color: #b85f00; font-weight: bold; }
tr.st-skipped td:nth-child(2) { color: #777; }
tr.total td { font-weight: bold; background: #f1f3f5; }
p.note { color: #555; margin: 4px 0 8px; max-width: 900px; }
.chart { overflow-x: auto; }
.chart svg { max-width: 100%; height: auto; }
ul.warnings li { color: #8a4b00; }
p.headline { font-size: 16px; font-weight: bold; margin: 4px 0 12px; }
p.headline.nothing { color: #a3312a; }
p.live { color: #555; font-style: italic; margin: 0 0 8px; }
p.live.running { color: #1d6b2a; }
tr.nothing td:nth-child(2) { color: #a3312a; }
ul.attention li { margin: 2px 0; }
ul.attention li.k-revert, ul.attention li.k-failed, ul.attention li.k-timeout { color: #8a1f17; }
pre.review { background: #f6f7f9; border: 1px solid #e3e5e8; padding: 8px 12px; font-size: 12.5px;
             overflow-x: auto; }
pre.review .c { color: #777; }
";

fn table<R: AsRef<[String]>>(
    out: &mut String,
    header: &[&str],
    rows: impl Iterator<Item = (String, R)>,
) {
    out.push_str("<table><thead><tr>");
    for (i, h) in header.iter().enumerate() {
        let cls = if text::is_numeric(header, i) {
            " class=\"n\""
        } else {
            ""
        };
        let _ = write!(out, "<th{cls}>{}</th>", escape_xml(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (class, cells) in rows {
        if class.is_empty() {
            out.push_str("<tr>");
        } else {
            let _ = write!(out, "<tr class=\"{}\">", escape_xml(&class));
        }
        for (i, c) in cells.as_ref().iter().enumerate() {
            let cls = if text::is_numeric(header, i) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(out, "<td{cls}>{}</td>", escape_xml(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// The whole page: one section after another, each written by its own function below.
fn render(s: &Summary) -> String {
    let mut out = String::with_capacity(8192 + s.rounds.len() * 900);
    head(&mut out, s);
    totals(&mut out, s);
    attention(&mut out, s);
    landed_and_review(&mut out, s);
    timeline(&mut out, s);
    agents_and_decisions(&mut out, s);
    files_and_hidden(&mut out, s);
    warnings(&mut out, s);
    out.push_str("</body></html>\n");
    out
}

/// The document head (title, style, the live page's refresh), the live line and the headline.
fn head(out: &mut String, s: &Summary) {
    let title = if s.mission.is_empty() {
        "orch report".to_string()
    } else {
        format!("orch report: {}", s.mission)
    };
    // The live page reloads itself while the run is going; the final one does not.
    let refresh = match &s.live {
        Some(l) if l.running => {
            format!("<meta http-equiv=\"refresh\" content=\"{}\"/>", l.refresh_s)
        }
        _ => String::new(),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>{refresh}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <title>{t}</title><style>{CSS}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape_xml(&title)
    );
    if let Some(l) = &s.live {
        let _ = writeln!(
            out,
            "<p class=\"live{}\">{}</p>",
            if l.running { " running" } else { "" },
            escape_xml(&text::live(l))
        );
        for (name, last) in &l.agents {
            let _ = writeln!(
                out,
                "<p class=\"live running\">{}</p>",
                escape_xml(&text::live_agent(name, last.as_ref()))
            );
        }
    }
    let _ = writeln!(
        out,
        "<p class=\"headline{}\">{}</p>",
        if s.totals.nothing_rounds > 0 {
            " nothing"
        } else {
            ""
        },
        escape_xml(&s.totals.headline)
    );
}

/// The totals as a definition list.
fn totals(out: &mut String, s: &Summary) {
    let t = &s.totals;
    out.push_str("<dl class=\"totals\">\n");
    let mut item = |k: &str, v: &str| {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape_xml(k), escape_xml(v));
    };
    item("Round statuses", &text::rounds_by_status(s));
    if let (Some(a), Some(b)) = (t.first_round, t.last_round) {
        item("Round range", &format!("{a}..{b}"));
    }
    item("Wall time", &duration_ms(t.wall_ms));
    if t.waited_ms > 0 {
        item("Waited on provider limits", &duration_ms(t.waited_ms));
    }
    item("Cost", &text::cost(s));
    item("Tests", &text::tests_trend(s));
    item("Flaky tests in rounds", &round_list(&t.flaky_rounds));
    if t.has_pipelining() {
        item("Pipelining hid", &text::hidden(s));
    }
    if let Some(reason) = &t.stop_reason {
        item("Stopped", reason);
    }
    out.push_str("</dl>\n");
}

/// What needs attention, one item per row.
fn attention(out: &mut String, s: &Summary) {
    if !s.attention.is_empty() {
        out.push_str("<h2>Needs attention</h2>\n<ul class=\"attention\">\n");
        for a in &s.attention {
            let _ = writeln!(
                out,
                "<li class=\"k-{}\">{} {}{}: {}</li>",
                escape_xml(&a.kind),
                text::rounds_of(&a.rounds),
                escape_xml(&a.kind),
                a.agent
                    .as_deref()
                    .map(|n| format!(" ({})", escape_xml(n)))
                    .unwrap_or_default(),
                escape_xml(&a.detail)
            );
        }
        out.push_str("</ul>\n");
    }
}

/// What landed, per round, and the commands to review it.
fn landed_and_review(out: &mut String, s: &Summary) {
    if !s.rounds.is_empty() {
        out.push_str(
            "<h2>What landed</h2>\n<p class=\"note\">Per round: the agents whose change stayed, \
             those a revert took out, and the tests of the first attempt and of the tree that was \
             committed.</p>\n",
        );
        table(
            out,
            &text::LANDED_HEADER,
            s.rounds.iter().map(|r| {
                (
                    if r.landed {
                        String::new()
                    } else {
                        "nothing".to_string()
                    },
                    text::landed_cells(r),
                )
            }),
        );
    }

    if !s.review.commands.is_empty() {
        out.push_str("<h2>How to review</h2>\n<pre class=\"review\">");
        for c in &s.review.commands {
            let _ = writeln!(
                out,
                "{}  <span class=\"c\"># {}</span>",
                escape_xml(&c.command),
                escape_xml(&c.what)
            );
        }
        out.push_str("</pre>\n");
    }
}

/// The timeline table and the Gantt chart.
fn timeline(out: &mut String, s: &Summary) {
    out.push_str("<h2>Timeline</h2>\n");
    let head = text::timeline_header(s);
    table(
        out,
        &head,
        s.rounds.iter().map(|r| {
            let mut class = format!("st-{}", r.status.as_str());
            if r.legacy {
                class.push_str(" legacy");
            }
            if !r.landed {
                class.push_str(" nothing");
            }
            (class, text::timeline_cells(s, r))
        }),
    );

    out.push_str("<h2>Rounds as a Gantt chart</h2>\n<div class=\"chart\">");
    out.push_str(&svg::chart(s));
    out.push_str("</div>\n");
}

/// The agents' table and the decisions' table.
fn agents_and_decisions(out: &mut String, s: &Summary) {
    if !s.agents.is_empty() {
        out.push_str(
            "<h2>Agents</h2>\n<p class=\"note\">Kept: runs whose change stayed (a failed run \
             whose change was tested too: its failures by cause say how it ended); rejected: \
             finished but taken out by a revert. Per kept change: the agent's cost over its kept \
             changes.</p>\n",
        );
        table(
            out,
            &text::agent_header(s),
            s.agents
                .iter()
                .map(|a| (String::new(), text::agent_row(s, a))),
        );
    }

    if !s.decisions.is_empty() {
        let rounds = s.decisions.first().map(|d| d.rounds).unwrap_or(0);
        let _ = write!(
            out,
            "<h2>Decisions</h2>\n<p class=\"note\">Over the {rounds} rounds whose logs record the \
             plan. Kept is the share of inclusions whose change stayed; idle is the share of those \
             rounds the agent was not included.</p>\n"
        );
        table(
            out,
            &text::DECISION_HEADER,
            s.decisions
                .iter()
                .map(|d| (String::new(), text::decision_cells(d))),
        );
    }
}

/// Every file modified, and the time pipelining hid.
fn files_and_hidden(out: &mut String, s: &Summary) {
    let t = &s.totals;
    if !s.files.is_empty() {
        out.push_str(
            "<h2>All files modified</h2>\n<p class=\"note\">Every file a kept change touched, \
             with the rounds and agents that changed it (a rejected, failed or conflicting run's \
             files are in its kept ref, not here).</p>\n",
        );
        table(
            out,
            &text::FILES_HEADER,
            s.files.iter().map(|f| (String::new(), text::file_cells(f))),
        );
    }

    if t.has_pipelining() {
        out.push_str(
            "<h2>Time pipelining hid</h2>\n<p class=\"note\">The pre-sim runs beside Phase A's \
             agents, the post-sim and Phase B (<code>phaseB: \"besideTests\"</code>) beside the \
             tests; this is the time that lay under that other work, which a serial (v8) loop \
             would have added. v8 rounds hid nothing. (est.) marks rounds without start \
             times.</p>\n",
        );
        table(
            out,
            &text::HIDDEN_HEADER,
            s.rounds
                .iter()
                .map(|r| (String::new(), text::hidden_cells(r)))
                .chain(std::iter::once((
                    "total".to_string(),
                    text::hidden_total_cells(s),
                ))),
        );
    }
}

/// The warnings met while reading the logs.
fn warnings(out: &mut String, s: &Summary) {
    if !s.warnings.is_empty() {
        out.push_str("<h2>Warnings</h2>\n<ul class=\"warnings\">\n");
        for w in &s.warnings {
            let _ = writeln!(
                out,
                "<li>{}: {}</li>",
                escape_xml(&w.file),
                escape_xml(&w.message)
            );
        }
        out.push_str("</ul>\n");
    }
}
