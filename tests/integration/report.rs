//! `orch report` through the library API, one scenario per fixture folder under
//! `fixtures/logs/` (v8 only, v9 only, mixed, a corrupt log, a reverted, a skipped and an
//! interrupted round, and hostile names). Each test checks the figures a reader would check, in
//! the formats that show them. The `#[ignore]`d tests at the end are the benchmark
//! (`scripts/bench-report`) and a helper that renders a folder to files for looking at.

use std::path::{Path, PathBuf};
use std::time::Instant;

use orch::report::{self, Format, ReportOptions};
use orch::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/logs")
        .join(name)
}

fn render(name: &str, format: Format) -> String {
    render_dir(&fixture(name), format)
}

fn render_dir(dir: &Path, format: Format) -> String {
    let bytes = report::render(&ReportOptions {
        state_dir: dir.to_path_buf(),
        format,
        rounds: None,
    })
    .unwrap_or_else(|e| panic!("report over {}: {e}", dir.display()));
    String::from_utf8(bytes).expect("the report is UTF-8")
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&render(name, Format::Json)).expect("the JSON report parses")
}

/// The Markdown table row whose first cell is `first`, as trimmed cells.
fn md_row(md: &str, first: &str) -> Vec<String> {
    md.lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{md}"))
        .trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect()
}

/// The Markdown section under `## title`, up to the next section.
fn section<'a>(md: &'a str, title: &str) -> &'a str {
    let start = md
        .find(&format!("## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title:?} in\n{md}"));
    let rest = &md[start + 3..];
    match rest.find("\n## ") {
        Some(end) => &rest[..end],
        None => rest,
    }
}

fn timeline(md: &str) -> &str {
    section(md, "Timeline")
}

fn assert_svg_is_xml(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG is not XML: {e}\n{svg}"))
}

fn assert_self_contained(html: &str) {
    for bad in [
        "src=",
        "href=\"http",
        "href=http",
        "href='http",
        "<script",
        "<link",
        "@import",
    ] {
        assert!(!html.contains(bad), "HTML has {bad:?}");
    }
}

#[test]
fn v9_totals_timeline_agents_and_hidden_time() {
    let md = render("v9", Format::Markdown);
    assert!(md.contains("- **Round statuses:** 2 (2 ok)"), "{md}");
    assert!(md.contains("- **Wall time:** 8m13s"), "{md}");
    assert!(md.contains("- **Cost:** $1.31 (cumulative $1.31)"), "{md}");
    assert!(
        md.contains("900 passed, 0 failed after round 1 → 903 passed, 1 failed after round 2 (committed trees)"),
        "{md}"
    );
    assert!(md.contains("- **Flaky tests in rounds:** 2"), "{md}");
    assert!(md.contains(
        "| Round | Status | Agents | Phase A | Phase B | Tests | Pre-Sim | Post-Sim | Overhead | Total | Cost |"
    ));
    assert_eq!(
        md_row(timeline(&md), "1"),
        [
            "1",
            "ok",
            "3 (2 ok, 1 failed)",
            "3m12s",
            "1m30s",
            "1m01s (900 passed, 0 failed)",
            "45.0s",
            "44.9s",
            "60ms",
            "5m43s",
            "$1.01"
        ]
    );
    assert_eq!(
        md_row(timeline(&md), "2")[5],
        "50.0s (903 passed, 1 failed, flaky)"
    );
    // Agents: ui-dev's model comes from state.json, api-dev's from its latest run.
    assert_eq!(
        md_row(&md, "ui-dev"),
        [
            "ui-dev",
            "2",
            "2",
            "0",
            "0",
            "0",
            "0",
            "0",
            "—",
            "2m26s",
            "$0.71",
            "$0.35",
            "opus-next",
            "2"
        ]
    );
    assert_eq!(md_row(&md, "api-dev")[5], "1");
    assert_eq!(md_row(&md, "api-dev")[8], "failed 1");
    assert_eq!(
        md_row(&md, "api-dev")[11],
        "—",
        "no kept change: no cost per change"
    );
    assert_eq!(md_row(&md, "api-dev")[12], "sonnet");
    assert_eq!(md_row(&md, "producer")[12], "opus");

    // Pre-sim 0..45012 under ui-dev 3..192007: 45009; post-sim 192105..236995 under the tests
    // from 192110: 44885. Round 2 has no start times for the post-sim: min(30000, 50000). No
    // review agent ran beside the tests: Phase B hid nothing.
    assert_eq!(
        md_row(&md, "**All**"),
        [
            "**All**",
            "**1m25s**",
            "**1m14s**",
            "**0ms**",
            "**2m39s**",
            "**8m13s**",
            "**10m53s**"
        ]
    );
    let v = json("v9");
    assert_eq!(v["rounds"][0]["hidden"]["preSimMs"], 45009);
    assert_eq!(v["rounds"][0]["hidden"]["postSimMs"], 44885);
    assert_eq!(v["rounds"][0]["hidden"]["estimated"], false);
    assert_eq!(v["rounds"][1]["hidden"]["totalMs"], 70000);
    assert_eq!(v["rounds"][1]["hidden"]["estimated"], true);
    assert_eq!(v["totals"]["hiddenMs"], 159_894);
    assert_eq!(v["totals"]["serialEquivalentMs"], 493_460 + 159_894);
    assert_eq!(md_row(timeline(&md), "2")[0], "2");
}

#[test]
fn v9_decisions_give_success_and_idle_rates() {
    let md = render("v9", Format::Markdown);
    let decisions = md.split("## Decisions").nth(1).expect("a decisions table");
    assert_eq!(
        md_row(decisions, "ui-dev"),
        ["ui-dev", "2", "0", "0", "100%", "0%"]
    );
    assert_eq!(
        md_row(decisions, "api-dev"),
        ["api-dev", "1", "1", "0", "0%", "50%"]
    );
    assert_eq!(
        md_row(decisions, "producer"),
        ["producer", "1", "0", "1", "100%", "50%"]
    );
    let v = json("v9");
    assert_eq!(v["decisions"][1]["successRate"], 0.0);
    assert_eq!(v["decisions"][1]["idlePct"], 50.0);
}

#[test]
fn v8_rows_show_serial_sims_under_pre_sim_and_hide_nothing() {
    let md = render("v8", Format::Markdown);
    assert_eq!(
        md_row(timeline(&md), "1 (v8)"),
        [
            "1 (v8)",
            "ok",
            "1 (1 ok)",
            "3m20s",
            "0ms",
            "1m00s (850 passed, 2 failed)",
            "2m19s",
            "—",
            "900ms",
            "6m40s",
            "$0.50"
        ]
    );
    let r2 = md_row(timeline(&md), "2 (v8)");
    assert_eq!(r2[2], "2 (1 ok, 1 failed)");
    assert_eq!(r2[5], "—");
    assert_eq!(r2[6], "2m10s");
    assert_eq!(r2[8], "10.0s");
    assert!(
        md.contains("- **Round statuses:** 2 (2 ok); 2 from v8 logs"),
        "{md}"
    );
    assert!(md.contains("a serial loop would have taken 10m00s instead of 10m00s"));
    assert_eq!(md_row(&md, "producer")[12], "—");

    let v = json("v8");
    assert_eq!(v["totals"]["hiddenMs"], 0);
    assert_eq!(v["rounds"][0]["legacy"], true);
    assert_eq!(v["rounds"][0]["preSimMs"], 139_000);
    assert!(v["rounds"][0]["postSimMs"].is_null());

    let svg = render("v8", Format::Svg);
    let doc = assert_svg_is_xml(&svg);
    assert!(doc
        .descendants()
        .any(|n| n.has_tag_name("title") && n.text().unwrap_or("").starts_with("sims (serial)")));
}

#[test]
fn mixed_logs_render_together_and_aside_copies_are_ignored() {
    let loaded = report::load(&fixture("mixed"), None).expect("loads");
    let numbers: Vec<u32> = loaded.rounds.iter().map(|r| r.log.round).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.rounds[0].is_legacy());
    assert!(!loaded.rounds[1].is_legacy());

    let s = report::summarize(&loaded, None);
    assert_eq!(s.totals.rounds, 3);
    assert_eq!(s.totals.legacy_rounds, 1);
    assert_eq!(s.totals.wall_ms, 400_000 + 343_360 + 150_100);
    assert_eq!(s.totals.hidden_ms, 89_894 + 70_000);
    assert_eq!(s.totals.last_total_cost_usd, Some(1.81));

    let md = render("mixed", Format::Markdown);
    assert_eq!(md_row(timeline(&md), "1 (v8)")[7], "—");
    assert_eq!(md_row(timeline(&md), "2")[7], "44.9s");
    assert!(md.contains(
        "850 passed, 2 failed after round 1 → 903 passed, 1 failed after round 3 (committed trees)"
    ));
}

#[test]
fn a_round_range_selects_rounds_and_an_empty_one_is_a_usage_error() {
    let loaded = report::load(&fixture("mixed"), Some((2, 3))).expect("loads");
    assert_eq!(loaded.rounds.len(), 2);
    match report::load(&fixture("mixed"), Some((7, 9))) {
        Err(Error::Usage(m)) => assert!(m.contains("7..9") && m.contains("1..3"), "{m}"),
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn a_corrupt_log_is_named_in_a_warning_and_the_rest_still_renders() {
    // round-0002 is not JSON: skipped. round-0003 is a v9 log with an unknown status and most
    // fields missing: read with defaults, each missing field named.
    let loaded = report::load(&fixture("corrupt"), None).expect("loads");
    let numbers: Vec<u32> = loaded.rounds.iter().map(|r| r.log.round).collect();
    assert_eq!(numbers, [1, 3, 4]);
    let files: Vec<String> = loaded
        .warnings
        .iter()
        .map(|w| w.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(files
        .iter()
        .all(|f| f == "round-0002.json" || f == "round-0003.json"));
    assert_eq!(files[0], "round-0002.json");
    assert!(loaded.warnings[0].message.contains("not valid JSON"));
    assert!(loaded.warnings[0].message.ends_with("skipped"));
    let three: Vec<&str> = loaded
        .warnings
        .iter()
        .filter(|w| w.file.ends_with("round-0003.json"))
        .map(|w| w.message.as_str())
        .collect();
    assert!(
        three.iter().any(|m| m.contains("`base` is missing")),
        "{three:?}"
    );
    assert!(
        three
            .iter()
            .any(|m| m.contains("`status`") && m.contains("exploded")),
        "{three:?}"
    );
    assert!(!three.iter().any(|m| m.ends_with("skipped")));

    for format in [Format::Markdown, Format::Html, Format::Svg, Format::Json] {
        let out = render("corrupt", format);
        assert!(!out.is_empty());
        if format != Format::Svg {
            assert!(out.contains("round-0002.json"), "{format}: {out}");
        }
    }
    let md = render("corrupt", Format::Markdown);
    assert!(md.contains("3 rounds"), "{md}");
    assert_eq!(md_row(timeline(&md), "3")[1], "failed");
    assert!(md.contains("## Warnings"));
    // One warning per file: the skipped one and the one read with defaults.
    assert_eq!(
        json("corrupt")["warnings"].as_array().map(Vec::len),
        Some(2)
    );
}

/// A v9 log that lacks only `base` (written by an orch that did not have it yet) is read, not
/// dropped.
#[test]
fn a_v9_log_missing_one_field_is_read_and_the_warning_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = dir.path().join("rounds");
    std::fs::create_dir_all(&rounds).unwrap();
    let text = std::fs::read_to_string(fixture("reverted").join("rounds/round-0002.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("base");
    std::fs::write(rounds.join("round-0002.json"), v.to_string()).unwrap();
    let loaded = report::load(dir.path(), None).expect("loads");
    assert_eq!(loaded.rounds.len(), 1);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].message.contains("`base` is missing"),
        "{:?}",
        loaded.warnings
    );
    let md = render_dir(dir.path(), Format::Markdown);
    assert!(
        md.contains("`base` is missing") || md.contains("\\`base\\` is missing"),
        "{md}"
    );
}

#[test]
fn a_reverted_round_counts_as_reverted_with_its_failing_tests() {
    let md = render("reverted", Format::Markdown);
    assert!(
        md.contains("- **Round statuses:** 2 (1 ok, 1 reverted)"),
        "{md}"
    );
    let r1 = md_row(timeline(&md), "1");
    assert_eq!(r1[1], "reverted");
    // The agents finished, but the revert took their work out: rejected, not ok.
    assert_eq!(r1[2], "2 (2 rejected)");
    assert_eq!(r1[5], "1m20s (897 passed, 3 failed)");
    // The committed trees: round 1's failing tree was reverted, so only round 2 counts.
    assert!(
        md.contains("- **Tests:** 900 passed, 0 failed after round 2 (committed tree)"),
        "{md}"
    );
    assert_eq!(
        md_row(section(&md, "What landed"), "1"),
        [
            "1",
            "nothing: reverted",
            "ui-dev, api-dev",
            "897 passed, 3 failed",
            "the base stays (round reverted)",
            "—"
        ]
    );
    assert!(
        md.contains("**2 rounds: 1 landed work, 1 landed nothing: reverted**"),
        "{md}"
    );
    // Pre-sim 0..50000 under the agents (2..120004): 49998; post-sim under the tests: 69990.
    let v = json("reverted");
    assert_eq!(v["totals"]["byStatus"]["reverted"], 1);
    assert_eq!(v["rounds"][0]["hidden"]["preSimMs"], 49_998);
    assert_eq!(v["rounds"][0]["hidden"]["postSimMs"], 69_990);
    assert_eq!(v["rounds"][0]["tests"]["regression"], true);
    assert_eq!(md_row(timeline(&md), "1")[0], "1");
    assert_eq!(md_row(&md, "ui-dev")[1], "2");

    let html = render("reverted", Format::Html);
    assert!(html.contains("<tr class=\"st-reverted nothing\"><td>1</td><td>reverted</td>"));
}

#[test]
fn a_skipped_round_has_a_row_of_nothing() {
    let md = render("skipped", Format::Markdown);
    assert_eq!(
        md_row(timeline(&md), "1"),
        ["1", "skipped", "0", "0ms", "0ms", "—", "—", "—", "12ms", "12ms", "$0.00"]
    );
    assert!(md.contains("- **Round statuses:** 2 (1 ok, 1 skipped)"));
    let decisions = md.split("## Decisions").nth(1).expect("a decisions table");
    assert_eq!(md_row(decisions, "ui-dev")[5], "50%");
    let svg = render("skipped", Format::Svg);
    assert_svg_is_xml(&svg);
    assert!(svg.contains("nothing ran this round"));
}

#[test]
fn an_interrupted_round_shows_its_stop_reason_and_cancelled_runs() {
    let md = render("interrupted", Format::Markdown);
    assert!(md.contains("- **Round statuses:** 1 (1 interrupted)"));
    assert!(md.contains("- **Stopped:** interrupted by SIGINT"));
    assert_eq!(md_row(timeline(&md), "1")[2], "2 (1 ok, 1 cancelled)");
    let v = json("interrupted");
    assert_eq!(v["totals"]["stopReason"], "interrupted by SIGINT");
    assert_eq!(v["agents"][1]["cancelled"], 1);
    assert_eq!(v["rounds"][0]["hidden"]["preSimMs"], 70_000);
    let svg = render("interrupted", Format::Svg);
    assert!(
        svg.contains("fill=\"#d5d8dc\""),
        "a cancelled bar in light grey"
    );
}

#[test]
fn hostile_names_are_escaped_in_every_format() {
    let md = render("hostile", Format::Markdown);
    assert!(!md.contains("<script>"));
    assert!(!md.contains("<img"));
    assert!(md.contains("&lt;script&gt;a\\|b"), "{md}");
    assert_eq!(md_row(&md, "&lt;script&gt;a\\|b").len(), 14);
    assert!(
        md.contains("- **Stopped:** boom \\| \\`rm -rf\\` &lt;img"),
        "{md}"
    );
    assert!(md.contains("# orch report: &lt;b&gt;mission&lt;/b&gt; &amp; 'co'"));

    let html = render("hostile", Format::Html);
    assert!(!html.contains("<script"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>mission"));
    assert!(html.contains("&lt;script&gt;a|b"));
    assert!(html.contains("x&quot;&#39;&amp;y"));

    let svg = render("hostile", Format::Svg);
    let doc = assert_svg_is_xml(&svg);
    assert!(!svg.contains("<script"));
    assert!(doc
        .descendants()
        .any(|n| n.is_text() && n.text() == Some("<script>a|b")));

    let v = json("hostile");
    assert_eq!(v["agents"][0]["name"], "<script>a|b");
}

#[test]
fn every_fixture_renders_well_formed_svg_and_self_contained_html() {
    for name in [
        "v8",
        "v9",
        "mixed",
        "corrupt",
        "reverted",
        "skipped",
        "interrupted",
    ] {
        let svg = render(name, Format::Svg);
        let doc = assert_svg_is_xml(&svg);
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let tips = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .count();
        assert!(tips > 1, "{name}: bars carry <title> tooltips");

        let html = render(name, Format::Html);
        assert_self_contained(&html);
        assert!(html.contains("<svg"), "{name}: the chart is inline");
        assert!(html.starts_with("<!DOCTYPE html>"));
    }
}

#[test]
fn the_gantt_chart_puts_sims_beside_agents_on_one_axis() {
    let svg = render("v9", Format::Svg);
    let doc = assert_svg_is_xml(&svg);
    let bar = |label: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name("rect"))
            .find(|n| {
                n.children()
                    .any(|c| c.has_tag_name("title") && c.text().unwrap_or("").starts_with(label))
            })
            .unwrap_or_else(|| panic!("no bar {label}"))
    };
    let x = |n: roxmltree::Node| {
        n.attribute("x")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap()
    };
    let y = |n: roxmltree::Node| {
        n.attribute("y")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap()
    };
    let (pre, ui) = (bar("pre-sim"), bar("ui-dev"));
    // Same start on the axis, different lanes.
    assert!((x(pre) - x(ui)).abs() < 1.0);
    assert!(y(pre) != y(ui));
    let (tests, post) = (bar("tests"), bar("post-sim"));
    assert!((x(tests) - x(post)).abs() < 1.0);
    assert!(
        svg.contains("agent ok") && svg.contains("sim ok"),
        "a legend"
    );
}

#[test]
fn a_missing_rounds_folder_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    match report::load(dir.path(), None) {
        Err(Error::Usage(m)) => {
            assert!(m.contains(&dir.path().join("rounds").display().to_string()));
            assert!(m.contains("run `orch run` first"));
        }
        other => panic!("expected a usage error, got {other:?}"),
    }
    std::fs::create_dir(dir.path().join("rounds")).unwrap();
    assert!(matches!(
        report::load(dir.path(), None),
        Err(Error::Usage(_))
    ));
    assert!(report::markdown(dir.path()).is_err());
}

#[test]
fn markdown_for_the_step_summary_is_the_markdown_format() {
    let md = report::markdown(&fixture("v9")).expect("renders");
    assert_eq!(md, render("v9", Format::Markdown));
}

#[test]
fn many_rounds_and_lanes_keep_the_chart_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = dir.path().join("rounds");
    std::fs::create_dir(&rounds).unwrap();
    let template = std::fs::read_to_string(fixture("v9").join("rounds/round-0001.json")).unwrap();
    let mut log: serde_json::Value = serde_json::from_str(&template).unwrap();
    let agent = log["agents"][0].clone();
    let agents: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            let mut a = agent.clone();
            a["name"] = format!("agent-{i}").into();
            a
        })
        .collect();
    log["agents"] = agents.into();
    for n in 1..=80u32 {
        log["round"] = n.into();
        std::fs::write(
            rounds.join(format!("round-{n:04}.json")),
            serde_json::to_vec(&log).unwrap(),
        )
        .unwrap();
    }
    let svg = render_dir(dir.path(), Format::Svg);
    let doc = assert_svg_is_xml(&svg);
    let blocks = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("round"))
        .count();
    assert_eq!(blocks, 60);
    assert!(svg.contains("the last 60 shown"));
    assert!(svg.contains("29 more agent runs"));
    let md = render_dir(dir.path(), Format::Markdown);
    assert_eq!(md_row(timeline(&md), "80")[2], "40 (40 ok)");
}

/// The benchmark behind `scripts/bench-report`: loads, summarizes and renders the state folder
/// in `ORCH_REPORT_BENCH_DIR` and prints the times in milliseconds.
#[test]
#[ignore]
fn bench_report_5000() {
    let Some(dir) = std::env::var_os("ORCH_REPORT_BENCH_DIR") else {
        eprintln!("set ORCH_REPORT_BENCH_DIR to a state folder with rounds/");
        return;
    };
    let dir = PathBuf::from(dir);
    let runs: usize = std::env::var("ORCH_REPORT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;

    let mut first_ms = 0.0;
    let mut md_times = Vec::new();
    let mut all_times = Vec::new();
    let mut rounds = 0;
    for run in 0..runs {
        let t = Instant::now();
        let md = report::render(&ReportOptions {
            state_dir: dir.clone(),
            format: Format::Markdown,
            rounds: None,
        })
        .expect("renders");
        let md_ms = ms(t);
        if run == 0 {
            first_ms = md_ms;
        }
        md_times.push(md_ms);
        assert!(!md.is_empty());

        let t = Instant::now();
        let loaded = report::load(&dir, None).expect("loads");
        rounds = loaded.rounds.len();
        let s = report::summarize(&loaded, None);
        for f in [Format::Markdown, Format::Json, Format::Html, Format::Svg] {
            assert!(!report::exporter(f).export(&s).is_empty());
        }
        all_times.push(ms(t));
    }
    md_times.sort_by(f64::total_cmp);
    all_times.sort_by(f64::total_cmp);
    println!(
        "bench-report: {rounds} logs in {}: render(markdown) first {first_ms:.1} ms, median \
         {:.1} ms; load+summary+all four formats median {:.1} ms ({runs} runs)",
        dir.display(),
        md_times[md_times.len() / 2],
        all_times[all_times.len() / 2]
    );
}

/// Writes every format of the state folder `ORCH_REPORT_DIR` into `ORCH_REPORT_OUT`, for looking
/// at the result (docs/src/report-example.*).
#[test]
#[ignore]
fn write_report_files() {
    let (Some(dir), Some(out)) = (
        std::env::var_os("ORCH_REPORT_DIR"),
        std::env::var_os("ORCH_REPORT_OUT"),
    ) else {
        eprintln!("set ORCH_REPORT_DIR and ORCH_REPORT_OUT");
        return;
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).unwrap();
    for (format, ext) in [
        (Format::Markdown, "md"),
        (Format::Json, "json"),
        (Format::Html, "html"),
        (Format::Svg, "svg"),
    ] {
        let text = render_dir(Path::new(&dir), format);
        std::fs::write(out.join(format!("report.{ext}")), text).unwrap();
    }
}

/// A night like the issue's: round 1 had a per-agent revert (bad broke one test, the committed
/// tree passes 194/0), a conflict, a failed agent with its partial work in a ref, a $0.0013
/// Codex run and runs of unknown cost; rounds 2-8 every agent failed on API errors, one of them
/// after a two-minute limit wait. No sims.
#[test]
fn a_night_of_failures_is_said_in_the_headline_with_causes() {
    let md = render("night", Format::Markdown);
    assert!(
        md.contains(
            "**8 rounds: 1 landed work, 7 landed nothing: every agent failed (rateLimited 5, auth 2)**"
        ),
        "{md}"
    );
    let v = json("night");
    assert_eq!(v["totals"]["landedRounds"], 1);
    assert_eq!(v["totals"]["nothingRounds"], 7);
    assert_eq!(v["totals"]["nothingWhy"][0]["causes"]["rateLimited"], 5);
    assert_eq!(v["rounds"][1]["nothingWhy"], "every agent failed");
    assert_eq!(
        md_row(section(&md, "Agents"), "good")[8],
        "rateLimited 5, auth 2"
    );
    let html = render("night", Format::Html);
    assert!(html.contains(
        "8 rounds: 1 landed work, 7 landed nothing: every agent failed (rateLimited 5, auth 2)"
    ));
    // The repeated failure is one row of Needs attention, with its reason.
    assert!(md.contains(
        "- rounds 2–6 failed (good): failed (exit code 1), cause rateLimited: API Error: 429"
    ));
}

#[test]
fn the_tests_figure_is_the_committed_trees_not_the_first_attempt() {
    let md = render("night", Format::Markdown);
    assert!(
        md.contains("- **Tests:** 194 passed, 0 failed after round 1 (committed tree)"),
        "{md}"
    );
    assert_eq!(
        md_row(section(&md, "What landed"), "1"),
        [
            "1",
            "good (2 files)",
            "bad",
            "193 passed, 1 failed",
            "194 passed, 0 failed",
            "bbbbbbbbbbbb"
        ]
    );
    let v = json("night");
    assert_eq!(v["totals"]["testsLast"]["passed"], 194);
    assert_eq!(v["totals"]["testsLast"]["failed"], 0);
    assert_eq!(v["rounds"][0]["tests"]["passed"], 193);
    assert_eq!(v["rounds"][0]["testsCommitted"]["passed"], 194);
    let html = render("night", Format::Html);
    assert!(html.contains("<td>194 passed, 0 failed</td>"));
}

#[test]
fn the_culprit_of_a_revert_is_rejected_not_ok() {
    let md = render("night", Format::Markdown);
    assert_eq!(
        md_row(timeline(&md), "1")[2],
        "4 (1 ok, 1 rejected, 1 failed, 1 conflict)"
    );
    let bad = md_row(section(&md, "Agents"), "bad");
    assert_eq!((bad[2].as_str(), bad[3].as_str()), ("0", "1"), "{bad:?}");
    assert_eq!(md_row(section(&md, "Decisions"), "bad")[4], "0%");
    let v = json("night");
    assert_eq!(v["agents"][1]["kept"], 0);
    assert_eq!(v["agents"][1]["rejected"], 1);
    assert_eq!(v["rounds"][0]["agents"]["rejected"], 1);
    assert_eq!(v["rounds"][0]["rejected"], serde_json::json!(["bad"]));
    assert_eq!(v["decisions"][1]["successRate"], 0.0);
}

#[test]
fn a_reverts_test_runs_are_test_time_and_their_own_gantt_bars() {
    let md = render("night", Format::Markdown);
    // 4.0 s first run + 4.2 s revert run; orch's own time is what is left.
    assert_eq!(
        md_row(timeline(&md), "1")[5],
        "8.2s (193 passed, 1 failed) + 1 revert run"
    );
    assert_eq!(md_row(timeline(&md), "1")[7], "395ms");
    let v = json("night");
    let bars = v["rounds"][0]["bars"].as_array().unwrap();
    let run = bars
        .iter()
        .find(|b| b["kind"] == "revertTests")
        .expect("a bar for the revert's run");
    assert_eq!(run["label"], "tests without bad");
    assert_eq!(run["startMs"], 34_100);
    assert_eq!(run["elapsedMs"], 4_200);
    assert_eq!(run["status"], "passed");
    let svg = render("night", Format::Svg);
    let doc = assert_svg_is_xml(&svg);
    assert!(doc.descendants().any(|n| n.has_tag_name("rect")
        && n.children().any(|c| c.has_tag_name("title")
            && c.text()
                .unwrap_or("")
                .starts_with("tests without bad (revert test run): passed, 4.2s"))));
}

#[test]
fn money_says_unknown_at_least_and_fractions_of_a_cent() {
    let md = render("night", Format::Markdown);
    let agents = section(&md, "Agents");
    assert_eq!(md_row(agents, "good")[10], "≥ $0.0013");
    assert_eq!(md_row(agents, "clash")[10], "unknown");
    assert_eq!(md_row(agents, "bad")[10], "$0.03");
    assert_eq!(md_row(timeline(&md), "2")[9], "unknown");
    assert_eq!(md_row(timeline(&md), "1")[9], "≥ $0.04");
    assert!(
        md.contains("- **Cost:** ≥ $0.04 (cumulative $0.04)"),
        "{md}"
    );
    let text = render("night", Format::Json);
    // The log says 0.036000000000000004; JSON amounts are rounded to 1e-6.
    assert!(!text.contains("0.036000000000000004"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["totals"]["costUsd"], 0.036);
    assert_eq!(v["totals"]["costKnown"], "part");
    assert_eq!(v["rounds"][1]["costKnown"], "none");
    assert_eq!(v["agents"][0]["costPerKeptUsd"], 0.0013);
    let svg = render("night", Format::Svg);
    assert!(svg.contains("Round 2 · ok · landed nothing (every agent failed) · 1.7s · unknown"));
}

#[test]
fn a_v8_rounds_cost_comes_from_its_agents_when_the_round_says_zero() {
    let md = render("v8-cost", Format::Markdown);
    assert_eq!(md_row(timeline(&md), "1 (v8)").last().unwrap(), "$0.50");
    let v = json("v8-cost");
    assert_eq!(v["rounds"][0]["costUsd"], 0.5);
    assert!(v["warnings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("`costUsd` is missing or 0"));
}

#[test]
fn needs_attention_names_the_refs_of_failed_runs_and_how_to_review_shows_them() {
    let md = render("night", Format::Markdown);
    let attention = section(&md, "Needs attention");
    assert!(
        attention.contains("refs/orch/failed/round-1/flop"),
        "{attention}"
    );
    assert!(attention.contains("refs/orch/conflicts/round-1/clash"));
    let review = section(&md, "How to review");
    for line in [
        "git log --oneline aaaaaaaaaaaa..bbbbbbbbbbbb",
        "git diff --stat aaaaaaaaaaaa..bbbbbbbbbbbb",
        "git show --stat refs/orch/rejected/round-1/bad",
        "git show --stat refs/orch/conflicts/round-1/clash",
        "git show --stat refs/orch/failed/round-1/flop",
    ] {
        assert!(review.contains(line), "{line} not in\n{review}");
    }
    let v = json("night");
    assert_eq!(v["review"]["base"], "a".repeat(40));
    assert!(v["attention"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["keptRef"] == "refs/orch/failed/round-1/flop"));
    // One failed agent alone still gets the section.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rounds")).unwrap();
    std::fs::copy(
        fixture("night").join("rounds/round-0002.json"),
        dir.path().join("rounds/round-0002.json"),
    )
    .unwrap();
    let md = render_dir(dir.path(), Format::Markdown);
    assert!(
        section(&md, "Needs attention").contains("round 2 failed (good)"),
        "{md}"
    );
}

#[test]
fn a_mission_without_sims_has_no_pipelining_figures() {
    let md = render("night", Format::Markdown);
    assert!(!md.contains("Pipelining"), "{md}");
    assert!(!md.contains("## Time pipelining hid"));
    assert!(!timeline(&md).contains("Pre-Sim"));
    let html = render("night", Format::Html);
    assert!(!html.contains("Pipelining hid"));
    assert!(!html.contains("Time pipelining hid"));
    // With sims they are there.
    assert!(render("v9", Format::Markdown).contains("## Time pipelining hid"));
}

#[test]
fn the_html_report_parses_as_xml_with_its_tables_whole() {
    for name in ["night", "v9", "reverted", "hostile"] {
        let html = render(name, Format::Html);
        // The page is written as well-formed XHTML-compatible markup: a strict XML parser
        // reads it (after the doctype).
        let body = html.trim_start_matches("<!DOCTYPE html>\n");
        let doc = roxmltree::Document::parse(body)
            .unwrap_or_else(|e| panic!("{name}: the HTML does not parse: {e}"));
        for table in doc.descendants().filter(|n| n.has_tag_name("table")) {
            let head = table.descendants().filter(|n| n.has_tag_name("th")).count();
            for tr in table
                .descendants()
                .filter(|n| n.has_tag_name("tr") && n.children().any(|c| c.has_tag_name("td")))
            {
                let cells = tr.children().filter(|c| c.has_tag_name("td")).count();
                assert_eq!(
                    cells, head,
                    "{name}: a row with {cells} cells under {head} headers"
                );
            }
        }
    }
}

#[test]
fn all_files_modified_lists_the_kept_changes_files_by_path_with_rounds_and_agents() {
    // Round 1 of the night: good kept, bad taken out by the per-agent revert, clash conflicted,
    // flop failed; round 2: good again, this time kept. Only kept changes' files are listed.
    let dir = tempfile::tempdir().unwrap();
    let rounds = dir.path().join("rounds");
    std::fs::create_dir(&rounds).unwrap();
    let read = |n: u32| -> serde_json::Value {
        let p = fixture("night").join(format!("rounds/round-{n:04}.json"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let files = |log: &mut serde_json::Value, agent: &str, files: &[&str]| {
        let a = log["agents"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|a| a["name"] == agent)
            .unwrap();
        a["files"] = serde_json::json!(files);
    };
    let mut one = read(1);
    files(&mut one, "good", &["src/a.py", "src/util.py"]);
    files(&mut one, "bad", &["src/bad.py", "src/util.py"]);
    files(&mut one, "clash", &["src/clash.py", "src/a.py"]);
    let mut two = read(1);
    two["round"] = 2.into();
    two["revert"] = serde_json::Value::Null;
    two["agents"] = serde_json::json!([one["agents"][0].clone()]);
    files(&mut two, "good", &["src/a.py", "README.md"]);
    for (n, log) in [(1, &one), (2, &two)] {
        std::fs::write(
            rounds.join(format!("round-{n:04}.json")),
            serde_json::to_vec(log).unwrap(),
        )
        .unwrap();
    }
    let json: serde_json::Value =
        serde_json::from_str(&render_dir(dir.path(), Format::Json)).unwrap();
    assert_eq!(
        json["files"],
        serde_json::json!([
            {"path": "README.md", "rounds": [2], "agents": ["good"]},
            {"path": "src/a.py", "rounds": [1, 2], "agents": ["good"]},
            {"path": "src/util.py", "rounds": [1], "agents": ["good"]},
        ]),
        "{:#}",
        json["files"]
    );
    let md = render_dir(dir.path(), Format::Markdown);
    let files_md = section(&md, "All files modified");
    assert_eq!(
        md_row(files_md, "src/a.py"),
        ["src/a.py", "rounds 1–2", "good"]
    );
    for absent in ["src/bad.py", "src/clash.py"] {
        assert!(!files_md.contains(absent), "{absent} listed:\n{files_md}");
    }
    let html = render_dir(dir.path(), Format::Html);
    let doc = roxmltree::Document::parse(html.trim_start_matches("<!DOCTYPE html>\n"))
        .expect("the HTML report parses");
    let h2 = doc
        .descendants()
        .find(|n| n.has_tag_name("h2") && n.text() == Some("All files modified"))
        .expect("an All files modified heading");
    let table = h2
        .next_siblings()
        .find(|n| n.has_tag_name("table"))
        .expect("its table");
    let cells: Vec<String> = table
        .descendants()
        .filter(|n| n.has_tag_name("td"))
        .map(|n| n.text().unwrap_or_default().to_string())
        .collect();
    assert_eq!(cells[..3], ["README.md", "round 2", "good"]);
    // A night whose logs have no file lists has no such section.
    assert!(!render("night", Format::Markdown).contains("All files modified"));
}

#[test]
fn the_generated_logs_carry_the_later_fields_and_read_without_a_warning() {
    // scripts/gen-round-logs feeds the report benchmark: its logs must look like today's
    // writer's (files, causes, unknown costs, limit waits, per-agent reverts), spelled so the
    // reader takes every field (a misspelt one would be a warning naming it).
    let dir = tempfile::tempdir().unwrap();
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-round-logs");
    let out = std::process::Command::new("python3")
        .arg(&gen)
        .arg(dir.path())
        .arg("300")
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value =
        serde_json::from_str(&render_dir(dir.path(), Format::Json)).unwrap();
    assert_eq!(
        json["warnings"],
        serde_json::json!([]),
        "{:#}",
        json["warnings"]
    );
    let rounds = json["rounds"].as_array().unwrap();
    assert!(
        rounds.iter().any(|r| r["revertRuns"].as_u64() > Some(0)
            && r["landed"] == true
            && r["testsCommitted"]["status"] == "passed"),
        "no per-agent revert"
    );
    assert!(
        json["totals"]["waitedMs"].as_u64() > Some(0),
        "no limit wait"
    );
    assert!(
        json["files"].as_array().unwrap().len() > 10,
        "no file lists"
    );
    let causes: Vec<&str> = json["agents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["failedByCause"].as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    for c in ["rateLimited", "auth", "timeout"] {
        assert!(causes.contains(&c), "no {c} failure among {causes:?}");
    }
    assert!(
        rounds.iter().any(|r| r["costKnown"] == "part"),
        "no round with an unknown cost"
    );
}
