//! Agents' prompts: a template file with `{{name}}` placeholders, filled with the built-in
//! sections (SPEC section 4, "Prompts") and written to `prompts/round-NNNN/AGENT.md`, where the
//! agent finds it (`{prompt_file}`, `ORCH_PROMPT_FILE`, or standard input).
//!
//! Only the sections a template names are computed. An unknown placeholder is a validation
//! error naming the template file and line, caught before any round starts.

use std::path::Path;

use crate::error::{Error, Result};
use crate::mission::{Agent, Mission};

/// The sections orch computes itself.
pub const BUILTIN: &[&str] = &[
    "agent",
    "round",
    "model",
    "task",
    "testFailures",
    "sims",
    "history",
];

/// The most of a section or a prompt that orch keeps when a value is larger: the head and the
/// tail, with a marker saying how much was cut.
pub const DEFAULT_SECTION_BYTES: usize = 16 * 1024;

/// What a prompt can be filled with; each value is computed only when asked for.
pub trait Sections {
    fn section(&self, name: &str) -> String;
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
            if !BUILTIN.contains(&name) {
                return Err(Error::mission(
                    &path,
                    format!("line {line}"),
                    format!(
                        "unknown placeholder {{{{{name}}}}} (known: {})",
                        BUILTIN.join(", ")
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
