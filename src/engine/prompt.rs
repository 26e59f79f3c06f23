//! Agents' prompts: a template file with `{{name}}` placeholders, filled with sections (SPEC
//! section 4, "Prompts") and written to `prompts/round-NNNN/AGENT.md`, where the agent finds it
//! (`{prompt_file}`, `ORCH_PROMPT_FILE`, or standard input).
//!
//! Sections are the built-ins (`agent`, `round`, `model`, `task`, `testFailures`, `sims`,
//! `history`, `changes`: what changed since the agent's last run, the whole prompt of a resumed
//! session) and the mission's own (`sections`: a file, a text, or a command's stdout). Only
//! the sections a template names are read or computed, so an agent pays only for the context it
//! asked for. Each section is cut to its `maxBytes` (head and tail kept, the cut said); then the
//! whole prompt is held to `maxPromptBytes` by cutting the largest sections first. An unknown
//! placeholder is a validation error naming the template file and line, caught before any round
//! starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::exec::process::{self, Ending, Spec};
use crate::engine::git::Git;
use crate::engine::store::state::State;
use crate::engine::store::tasks::Task;
use crate::error::{Error, Result};
use crate::mission::{Agent, Mission, Section};

/// The sections orch computes itself (their names are the mission schema's).
pub use crate::mission::BUILTIN_SECTIONS as BUILTIN;

/// The most of a section or a prompt that orch keeps when a value is larger: the head and the
/// tail, with a marker saying how much was cut.
pub const DEFAULT_SECTION_BYTES: usize = 16 * 1024;

/// The smallest a section is cut to when the whole prompt is too long.
const MIN_SECTION_BYTES: usize = 256;

/// What a prompt can be filled with; each value is computed only when asked for.
pub trait Sections {
    fn section(&self, name: &str) -> String;
}

/// Everything a section may be computed from.
pub struct Context<'a> {
    pub agent: &'a Agent,
    pub round: u32,
    pub model: &'a str,
    pub task: Option<&'a Task>,
    pub state: &'a State,
    /// The published sim folder, when the mission has sims.
    pub sim_data: Option<PathBuf>,
    pub mission: &'a Mission,
    pub mission_dir: &'a Path,
    /// The repository, for `{{changes}}`' history (`None`: not read, as in `--dry-run`).
    pub git: Option<&'a Git>,
    /// Where section commands run: the repository root.
    pub root: &'a Path,
    pub grace: Duration,
    /// Run section commands (off for `--dry-run`, which must run nothing).
    pub run_commands: bool,
}

/// One section as it went into a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSize {
    pub name: String,
    /// Bytes in the prompt.
    pub bytes: usize,
    /// Bytes cut away (0 when it fit).
    pub cut: usize,
}

/// A rendered prompt, with what went into it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub text: String,
    pub sections: Vec<SectionSize>,
    /// Sections that could not be computed (missing file, failing command).
    pub warnings: Vec<String>,
}

/// Renders `template` for one agent. `cache` holds the mission sections computed this round
/// (they are the same for every agent; a section command runs once).
pub fn build(template: &str, ctx: &Context, cache: &mut BTreeMap<String, String>) -> Rendered {
    let mut warnings = Vec::new();
    let mut values: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (_, name) in placeholders(template) {
        if values.contains_key(name) {
            continue;
        }
        let (raw, max) = match ctx.mission.sections.get(name) {
            Some(def) => {
                let raw = match cache.get(name) {
                    Some(v) => v.clone(),
                    None => {
                        let v = compute(name, def, ctx).unwrap_or_else(|w| {
                            warnings.push(w.clone());
                            format!("[section {name} unavailable: {w}]")
                        });
                        cache.insert(name.to_string(), v.clone());
                        v
                    }
                };
                (raw, def.max_bytes.unwrap_or(DEFAULT_SECTION_BYTES))
            }
            None => (builtin(name, ctx), DEFAULT_SECTION_BYTES),
        };
        let original = raw.len();
        values.insert(name.to_string(), (trim(&raw, max), original));
    }
    fit(template, &mut values, ctx.mission.max_prompt_bytes);
    let sections = values
        .iter()
        .map(|(name, (v, original))| SectionSize {
            name: name.clone(),
            bytes: v.len(),
            cut: original.saturating_sub(v.len()),
        })
        .collect();
    let text = render(template, &Values(&values));
    Rendered {
        text,
        sections,
        warnings,
    }
}

struct Values<'a>(&'a BTreeMap<String, (String, usize)>);

impl Sections for Values<'_> {
    fn section(&self, name: &str) -> String {
        self.0.get(name).map(|(v, _)| v.clone()).unwrap_or_default()
    }
}

/// Holds the prompt to `max` bytes by cutting the largest section, again and again, until it
/// fits or every section is at its floor.
fn fit(template: &str, values: &mut BTreeMap<String, (String, usize)>, max: usize) {
    for _ in 0..64 {
        let total = render(template, &Values(values)).len();
        if total <= max {
            return;
        }
        let Some((name, len)) = values
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.len()))
            .max_by_key(|(_, l)| *l)
        else {
            return;
        };
        if len <= MIN_SECTION_BYTES {
            return;
        }
        // A section used n times costs n times its size; cut enough for the whole excess.
        let uses = placeholders(template)
            .iter()
            .filter(|(_, n)| *n == name)
            .count()
            .max(1);
        let target = len
            .saturating_sub((total - max).div_ceil(uses))
            .max(MIN_SECTION_BYTES);
        if let Some((v, _)) = values.get_mut(&name) {
            *v = trim(v, target);
        }
    }
}

/// The value of a built-in section; empty for a name that is not one.
fn builtin(name: &str, ctx: &Context) -> String {
    match name {
        "agent" => ctx.agent.name.clone(),
        "round" => ctx.round.to_string(),
        "model" => ctx.model.to_string(),
        "task" => ctx
            .task
            .map(|t| {
                format!(
                    "Your task ({}, priority {}): {}\n\n{}",
                    t.id, t.priority, t.title, t.body
                )
            })
            .unwrap_or_default(),
        "testFailures" => {
            let f = &ctx.state.last_test_failure;
            if f.is_empty() {
                String::new()
            } else {
                format!("The last test run failed:\n{f}")
            }
        }
        "sims" => ctx.sim_data.as_deref().map(read_folder).unwrap_or_default(),
        "changes" => changes(
            ctx.git,
            ctx.state,
            &ctx.agent.name,
            ctx.round,
            &builtin("task", ctx),
        ),
        "history" => {
            let st = ctx.state.agent(&ctx.agent.name);
            format!(
                "runs: {}, last: {}, failures in a row: {}, empty in a row: {}, mean time: {}",
                st.runs,
                st.last_status.map_or("none", |s| s.as_str()),
                st.consecutive_failures,
                st.consecutive_empty_rounds,
                st.mean_run_ms()
                    .map(crate::units::duration_ms)
                    .unwrap_or_else(|| "-".into())
            )
        }
        _ => String::new(),
    }
}

/// A mission section's raw value.
fn compute(name: &str, def: &Section, ctx: &Context) -> std::result::Result<String, String> {
    if let Some(text) = &def.text {
        return Ok(text.clone());
    }
    if let Some(file) = &def.file {
        let path = ctx.mission_dir.join(file);
        return std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    let Some(cmd) = &def.command else {
        return Ok(String::new());
    };
    if !ctx.run_commands {
        return Ok(format!(
            "[section {name}: the output of `{}`, run when the round runs]",
            cmd.argv().join(" ")
        ));
    }
    let out = std::env::temp_dir().join(format!(
        "orch-section-{}-{name}-{}.out",
        std::process::id(),
        ctx.round
    ));
    let f = process::run(&Spec {
        label: format!("section {name}"),
        argv: cmd.argv(),
        cwd: ctx.root.to_path_buf(),
        env: vec![("ORCH_ROUND".into(), ctx.round.to_string())],
        stdin: None,
        stdout: out.clone(),
        stderr: out.with_extension("err"),
        timeout: Duration::from_secs(120),
        grace: ctx.grace,
        launched: false,
        env_clear: false,
    });
    let text = std::fs::read(&out)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(out.with_extension("err"));
    match f.ending {
        Ending::Exited(0) => Ok(text),
        other => Err(format!("its command did not succeed ({other:?})")),
    }
}

/// The text files of a folder, each under its name.
fn read_folder(dir: &Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            out.push_str(&format!(
                "== {} ==\n{text}\n",
                e.file_name().to_string_lossy()
            ));
        }
    }
    out
}

/// The `{{name}}` placeholders of a template, with the 1-based line each is on.
pub fn placeholders(template: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for (n, line) in template.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            match after.find("}}") {
                Some(end) => {
                    out.push((n + 1, after[..end].trim()));
                    rest = &after[end + 2..];
                }
                None => break,
            }
        }
    }
    out
}

/// Fills a template; placeholders were validated up front.
pub fn render(template: &str, sections: &dyn Sections) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(&sections.section(after[..end].trim()));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The prompt of an agent without a template: enough for a fake agent or a script to know
/// where it is, and for a real agent to start from.
pub fn default_template(agent: &Agent) -> String {
    format!(
        "You are the {{{{agent}}}} agent ({} phase), round {{{{round}}}}.\n\n{{{{task}}}}\n\n{{{{testFailures}}}}\n",
        agent.phase.as_str()
    )
}

/// The template of a resumed session's run: what changed, and its task, nothing else (the
/// session holds the rest).
pub const RESUMED_TEMPLATE: &str = "{{changes}}";

/// Reads an agent's template (relative to the mission's folder).
pub fn load_template(mission_dir: &Path, agent: &Agent) -> Result<String> {
    match &agent.prompt {
        None => Ok(default_template(agent)),
        Some(p) => {
            let path = mission_dir.join(p);
            std::fs::read_to_string(&path).map_err(|e| {
                Error::Usage(format!(
                    "agent {}: cannot read its prompt template {}: {e}",
                    agent.name,
                    path.display()
                ))
            })
        }
    }
}

/// Checks every agent's template for unknown placeholders.
pub fn validate(mission: &Mission, mission_dir: &Path, mission_file: &Path) -> Result<()> {
    for (i, agent) in mission.agents.iter().enumerate() {
        let Some(rel) = &agent.prompt else { continue };
        let path = mission_dir.join(rel);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::mission(
                mission_file,
                format!("agents[{i}].prompt"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        for (line, name) in placeholders(&text) {
            if !BUILTIN.contains(&name) && !mission.sections.contains_key(name) {
                let mut known: Vec<&str> = BUILTIN.to_vec();
                known.extend(mission.sections.keys().map(String::as_str));
                return Err(Error::mission(
                    &path,
                    format!("line {line}"),
                    format!(
                        "unknown placeholder {{{{{name}}}}} (known: {}; add it to the mission's `sections` to define it)",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Keeps the head and the tail of `text` within `max` bytes, saying how much was cut.
pub fn trim(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(64) / 2;
    let head_end = floor_char(text, keep);
    let tail_start = ceil_char(text, text.len() - keep);
    let cut = tail_start - head_end;
    format!(
        "{}\n[... {cut} bytes cut by orch ...]\n{}",
        &text[..head_end],
        &text[tail_start..]
    )
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The most commits and files `{{changes}}` lists; the counts say how many there were.
const MAX_LISTED: usize = 40;

/// The `{{changes}}` section: what changed since the agent's last run (its outcome, the commits
/// on the branch and the files they changed, the tests), then its task (`task`, the `{{task}}`
/// text), and a line telling it to go on.
pub fn changes(git: Option<&Git>, state: &State, agent: &str, round: u32, task: &str) -> String {
    let st = state.agent(agent);
    let mut out = String::new();
    match (st.last_run_round, &st.last_base) {
        (Some(last), Some(since)) => {
            out.push_str(&format!(
                "Round {round}. What changed since your last run (round {last}, which ended {}):\n",
                st.last_status.map_or("-", |s| s.as_str())
            ));
            match git.map(|g| listed(g, since)) {
                Some(Ok(text)) => out.push_str(&text),
                Some(Err(e)) => out.push_str(&format!("(the history could not be read: {e})\n")),
                None => out.push_str("(the history is read when the round runs)\n"),
            }
        }
        _ => out.push_str(&format!(
            "Round {round}. This is your first run: there is no earlier run to compare with.\n"
        )),
    }
    out.push_str(&tests_line(state));
    if !task.is_empty() {
        out.push('\n');
        out.push_str(task);
        out.push('\n');
    }
    // A resumed session gets nothing else: say what to do with it.
    out.push_str("\nGo on with your instructions from this session, on the tree as it is now.\n");
    out
}

/// The commits from `since` to HEAD and the files they changed.
fn listed(git: &Git, since: &str) -> crate::error::Result<String> {
    let range = format!("{since}..HEAD");
    let count: usize = git
        .run(&["rev-list", "--count", &range])?
        .trim()
        .parse()
        .unwrap_or(0);
    if count == 0 {
        return Ok("No commits on the branch since then.\n".into());
    }
    let log = git.run(&[
        "log",
        "--format=%h %s",
        &format!("--max-count={MAX_LISTED}"),
        &range,
    ])?;
    let files = git.files_between(since, "HEAD")?;
    let mut out = format!("Commits on the branch since then ({count}):\n");
    for l in log.lines() {
        out.push_str(&format!("- {l}\n"));
    }
    if count > MAX_LISTED {
        out.push_str(&format!("- ... and {} more\n", count - MAX_LISTED));
    }
    out.push_str(&format!("Files they changed ({}):\n", files.len()));
    for f in files.iter().take(MAX_LISTED) {
        out.push_str(&format!("- {f}\n"));
    }
    if files.len() > MAX_LISTED {
        out.push_str(&format!("- ... and {} more\n", files.len() - MAX_LISTED));
    }
    Ok(out)
}

/// The tests as last measured, and the end of the last failing run.
fn tests_line(state: &State) -> String {
    let mut out = match &state.test_baseline {
        None => "Tests: not run yet.\n".to_string(),
        Some(b) => format!(
            "Tests at the branch's head: {}{}.\n",
            if b.passed { "passed" } else { "failing" },
            b.failed_count
                .map(|n| format!(" ({n} failed)"))
                .unwrap_or_default()
        ),
    };
    if !state.last_test_failure.is_empty() {
        out.push_str(&format!(
            "The last failing test run ended with:\n{}\n",
            trim(&state.last_test_failure, 4096)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Sections for Fixed {
        fn section(&self, name: &str) -> String {
            format!("<{name}>")
        }
    }

    #[test]
    fn placeholders_are_found_with_their_lines() {
        let t = "a {{agent}}\n\nb {{ round }} {{task}}";
        assert_eq!(
            placeholders(t),
            vec![(1, "agent"), (3, "round"), (3, "task")]
        );
        assert_eq!(render(t, &Fixed), "a <agent>\n\nb <round> <task>");
    }

    #[test]
    fn the_largest_section_is_cut_first_to_fit_the_prompt() {
        let mut values = BTreeMap::new();
        values.insert("big".to_string(), ("b".repeat(5000), 5000));
        values.insert("small".to_string(), ("s".repeat(300), 300));
        let template = "{{big}}\n{{small}}\n";
        fit(template, &mut values, 2000);
        let text = render(template, &Values(&values));
        assert!(text.len() <= 2000, "{}", text.len());
        assert_eq!(
            values["small"].0.len(),
            300,
            "the small section was left alone"
        );
        assert!(values["big"].0.contains("bytes cut by orch"));
    }

    #[test]
    fn trimming_keeps_head_and_tail_and_says_how_much() {
        let text = format!("{}{}", "h".repeat(1000), "t".repeat(1000));
        let t = trim(&text, 200);
        assert!(t.len() <= 200, "{}", t.len());
        assert!(t.starts_with("hhh") && t.ends_with("ttt"));
        assert!(t.contains("bytes cut by orch"));
        let e = "é".repeat(300);
        let t = trim(&e, 101);
        assert!(t.contains("cut"));
    }
}
