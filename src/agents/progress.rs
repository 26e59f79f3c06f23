//! What a running agent is doing, read from its stdout one line at a time (issue 31): the
//! [`Activity`] a line shows (a tool call, tokens or cost so far, or just output), which the
//! stuck detector ([`super::stuck`]) weighs. Each adapter reads its own CLI's streaming format
//! ([`AgentCli::progress`](super::AgentCli::progress)); this file holds what they share: the
//! values, the digest of a call's input and the short label a person reads.
//!
//! A line is read alone, without the lines before it: a reader that kept state would have to
//! be fed every line, and the executor may see a log only from where it last looked. So a
//! figure that is a running total (a cost) says so, and one that is not (a message's tokens)
//! carries the message's id, for the one who adds them up to count each message once.

use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

use crate::roundlog::Tokens;

/// How long a label may be, in characters: one line of the live view.
const LABEL_CHARS: usize = 60;

/// What one line of a running agent's stdout shows it doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// It called a tool.
    Tool(ToolCall),
    /// A tool call's result came back: the model has the turn again.
    ToolDone,
    /// A model message's tokens. `message` is the message's id when the CLI gives one (Claude
    /// Code prints a message with several content blocks as several lines, each with the whole
    /// message's usage).
    Tokens {
        message: Option<String>,
        tokens: Tokens,
    },
    /// The run's cost so far, in USD, as the CLI printed it: a running total (aider's
    /// "$Y session", Claude Code's final `total_cost_usd`).
    Cost(f64),
    /// Anything else it printed: it is alive and saying something.
    Output,
}

/// One tool call as the CLI printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The tool's name as the CLI calls it (`Bash`, `Write`, `command_execution`, `write_file`).
    pub name: String,
    /// A digest of the name and the input: two calls with the same digest did the same thing.
    pub digest: u64,
    /// What a person reads: "Bash `npm test`", "Write hello.txt".
    pub label: String,
}

impl ToolCall {
    /// A call of `name` with `input`, labelled `label`. Keys that only describe the call (a
    /// `description`, which the model words anew each time) are left out of the digest.
    pub fn new(name: &str, input: &Value, label: String) -> ToolCall {
        let input = match input {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| k.as_str() != "description")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        // serde_json's map is ordered by key here (no `preserve_order`), so equal inputs print
        // the same.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        input.to_string().hash(&mut h);
        ToolCall {
            name: name.to_string(),
            digest: h.finish(),
            label: bounded(&label),
        }
    }
}

/// A non-empty line that no format reads: plain output.
pub fn output(line: &[u8]) -> Option<Activity> {
    (!line.iter().all(u8::is_ascii_whitespace)).then_some(Activity::Output)
}

/// The JSON object a line holds, if it holds one.
pub fn json_line(line: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if !text.starts_with('{') {
        return None;
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The label of a call of `tool` with `input`: the tool's name and what it is about — the
/// command in backquotes, or the file, pattern or address — on one line.
pub fn label(tool: &str, input: &Value) -> String {
    let get = |k: &str| input.get(k).and_then(Value::as_str);
    if let Some(cmd) = get("command").or_else(|| get("cmd")) {
        return format!("{tool} `{}`", one_line(cmd));
    }
    if let Some(cmd) = input.get("command").and_then(Value::as_array) {
        let words: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        return format!("{tool} `{}`", one_line(&words.join(" ")));
    }
    for key in [
        "file_path",
        "path",
        "notebook_path",
        "absolute_path",
        "pattern",
        "url",
        "query",
    ] {
        if let Some(v) = get(key) {
            return format!("{tool} {}", one_line(v));
        }
    }
    tool.to_string()
}

/// `text` on one line, blanks squeezed.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most [`LABEL_CHARS`] characters, an ellipsis marking a cut.
fn bounded(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        return label.to_string();
    }
    let mut s: String = label.chars().take(LABEL_CHARS - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_description_does_not_change_the_digest() {
        let a = ToolCall::new(
            "Bash",
            &json!({"command": "npm test", "description": "Run the tests"}),
            "x".into(),
        );
        let b = ToolCall::new(
            "Bash",
            &json!({"description": "Test again", "command": "npm test"}),
            "x".into(),
        );
        let c = ToolCall::new("Bash", &json!({"command": "npm test -- a"}), "x".into());
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        let other_tool = ToolCall::new("Shell", &json!({"command": "npm test"}), "x".into());
        assert_ne!(a.digest, other_tool.digest);
    }

    #[test]
    fn labels_name_the_command_or_the_file() {
        assert_eq!(
            label("Bash", &json!({"command": "npm  test\n--quiet"})),
            "Bash `npm test --quiet`"
        );
        assert_eq!(
            label("Edit", &json!({"file_path": "src/a.rs", "old_string": "x"})),
            "Edit src/a.rs"
        );
        assert_eq!(
            label("shell", &json!({"command": ["bash", "-lc", "ls"]})),
            "shell `bash -lc ls`"
        );
        assert_eq!(label("TodoWrite", &json!({"todos": []})), "TodoWrite");
        let long = ToolCall::new("Bash", &json!({}), "x".repeat(100));
        assert_eq!(long.label.chars().count(), LABEL_CHARS);
        assert!(long.label.ends_with('…'));
    }

    #[test]
    fn blank_lines_are_nothing() {
        assert_eq!(output(b"  \n"), None);
        assert_eq!(output(b"compiling\n"), Some(Activity::Output));
        assert_eq!(json_line(b"{\"a\": 1"), None);
        assert!(json_line(b" {\"a\": 1}\n").is_some());
    }
}
