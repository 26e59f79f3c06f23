//! Codex (`codex exec --json`): JSON events on stdout, one a line. It prints no cost, only
//! token usage per turn (`turn.completed.usage`, its `cached_input_tokens` a subset of
//! `input_tokens`), so a run is priced with the mission's `pricing`. The final message is the
//! last `agent_message` item; the session is `thread.started.thread_id`. A failed run ends
//! with `turn.failed` (`error.message`, e.g. "exceeded retry limit, last status: 429 Too Many
//! Requests") or an `error` event, and exit 1. The older protocol printed
//! `{"id":..,"msg":{"type":"token_count",..}}` lines; they are still read.
//!
//! While it runs ([`progress`]): an `item.started` line per tool call (recorded:
//! `command_execution`, its `command` the shell line, `/bin/bash -lc '...'`), its
//! `item.completed` when it ends, and the turn's tokens only with `turn.completed`, at the end.

use serde_json::{Map, Value};

use super::adapter::{
    AgentCli, CostSource, Failure, Invocation, Output, Place, Reading, SandboxNeeds, Session,
    SessionArgs,
};
use super::progress::{json_line, label, Activity, ToolCall};
use super::scan::{for_each_json_object, non_empty, str_of};
use crate::roundlog::{Cause, Tokens};

pub struct Codex;

impl AgentCli for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn programs(&self) -> &'static [&'static str] {
        &["codex", "openai/codex"]
    }

    fn provider(&self) -> Option<&'static str> {
        Some("openai")
    }

    fn sandbox_needs(&self) -> SandboxNeeds {
        SandboxNeeds {
            home_state: &[".codex"],
            state_var: Some("CODEX_HOME"),
            // A provider in config.toml names its own base_url: give it in allowHosts.
            base_url_vars: &["OPENAI_BASE_URL"],
            // ChatGPT sign-in talks to chatgpt.com, an API key to api.openai.com.
            default_hosts: &["api.openai.com:443", "chatgpt.com:443"],
        }
    }

    fn invocation(&self) -> Invocation {
        Invocation {
            command: r#"["codex", "exec", "--json", "--model", "{model}", "--sandbox", "workspace-write", "--skip-git-repo-check", "-"]"#,
            stdin: true,
            models: r#"["gpt-5-mini", "gpt-5"]"#,
            comments: &[
                "Codex exec: the prompt on stdin (`-`), JSON events with token usage on stdout; costs come from `pricing`.",
                "--sandbox workspace-write lets it edit its folder and run commands there (no network).",
                "To widen it: --sandbox danger-full-access. Limits: 429s wait and run again (limits.*).",
            ],
            pricing: Some(
                r#"{ "gpt-5-mini": { "inputPerMTok": 0.25, "outputPerMTok": 2.0 }, "gpt-5": { "inputPerMTok": 1.25, "outputPerMTok": 10.0 } }"#,
            ),
            inherit_env: &["OPENAI_*", "CODEX_*"],
            budget_comment: None,
            bundled_agent: false,
        }
    }

    fn parse(&self, out: &Output) -> Option<Reading> {
        parse(out)
    }

    fn progress(&self, line: &[u8]) -> Vec<Activity> {
        progress(line)
    }

    /// Codex names its own session (`thread.started.thread_id`); resuming is the `resume ID`
    /// subcommand of `exec`, after `exec`'s options (`exec resume` refuses `--sandbox`) and
    /// before the `-` that reads the prompt from stdin.
    fn session_args(&self, session: &Session) -> Option<SessionArgs> {
        Some(SessionArgs {
            args: if session.resume {
                vec!["resume".into(), session.id.into()]
            } else {
                Vec::new()
            },
            place: Place::End,
            takes_id: session.resume,
        })
    }

    fn session_needs(&self, prompt_on_stdin: bool) -> Result<(), String> {
        if !prompt_on_stdin {
            // `exec resume ID [PROMPT]`: a prompt in the argv would take the id's place.
            return Err(
                "a Codex session needs the prompt on standard input (`\"stdin\": \"prompt\"`, \
                 the command ending in `-`)"
                    .into(),
            );
        }
        Ok(())
    }

    fn session_command(&self, argv: &[String], at: usize) -> Result<(), String> {
        if argv.get(at + 1).map(String::as_str) != Some("exec") {
            return Err(
                "a Codex session needs `codex exec ...` (its `exec resume` subcommand)".into(),
            );
        }
        Ok(())
    }

    fn fix(&self, cause: Cause) -> String {
        match cause {
            Cause::Auth => "set OPENAI_API_KEY (or run `codex login`) as the user orch runs as; a custom model provider reads the variable its env_key names in ~/.codex/config.toml; \"Quota exceeded\" means the account's plan or billing".into(),
            Cause::BadRequest => "check the agent's --model (a model your account can use) and the other flags of its `command`".into(),
            _ => "check the agent's command".into(),
        }
    }
}

/// The run as this CLI's own output format tells it; `None` when none of it is there.
pub fn parse(out: &Output) -> Option<Reading> {
    let text = String::from_utf8_lossy(out.stdout);
    let mut tally = Tally::default();
    for_each_json_object(&text, |event| tally.observe(&event));
    tally.finish()
}

/// What one `exec --json` line shows the run doing; empty for a line of another format.
///
/// A tool call is its `item.started` (only `command_execution` is recorded; the other items
/// that act, an MCP call or a web search, are read the same way, with their fields as the
/// input); a `file_change` is read from its `item.completed`, the one line Codex prints for an
/// applied patch. Messages, reasoning and the item's end are output; so is `turn.completed`,
/// the only line with tokens, which comes as `exec` ends: nothing streams the spend before it.
pub fn progress(line: &[u8]) -> Vec<Activity> {
    let Some(event) = json_line(line) else {
        return Vec::new();
    };
    let item = event.get("item").and_then(Value::as_object);
    let kind = item.and_then(|i| str_of(i, "type"));
    let quiet = ["agent_message", "reasoning", "error", "todo_list"];
    match (str_of(&event, "type"), kind) {
        (Some("item.started"), Some(kind)) if !quiet.contains(&kind) => {
            vec![Activity::Tool(item_call(kind, item.unwrap_or(&Map::new())))]
        }
        // Printed only once done: a call and its end at once.
        (Some("item.completed"), Some("file_change")) => {
            vec![
                Activity::Tool(item_call("file_change", item.unwrap_or(&Map::new()))),
                Activity::ToolDone,
            ]
        }
        (Some("item.completed"), Some(kind)) if !quiet.contains(&kind) => {
            vec![Activity::ToolDone]
        }
        (Some(t), _)
            if t.starts_with("item.")
                || t.starts_with("turn.")
                || t.starts_with("thread.")
                || t == "error" =>
        {
            vec![Activity::Output]
        }
        _ => Vec::new(),
    }
}

/// A Codex item as a tool call: its fields but the ones that change as it runs.
fn item_call(kind: &str, item: &Map<String, Value>) -> ToolCall {
    let input: Map<String, Value> = item
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "id" | "type" | "status" | "aggregated_output" | "exit_code" | "result" | "error"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let input = Value::Object(input);
    let shown = match kind {
        "command_execution" => {
            let cmd = input.get("command").and_then(Value::as_str).unwrap_or("");
            format!("Shell `{}`", unwrap_shell(cmd))
        }
        "file_change" => {
            let paths: Vec<&str> = input
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("path").and_then(Value::as_str))
                .collect();
            format!("Edit {}", paths.join(", "))
        }
        "mcp_tool_call" => {
            let tool = input.get("tool").and_then(Value::as_str).unwrap_or("mcp");
            label(tool, input.get("arguments").unwrap_or(&Value::Null))
        }
        other => label(other, &input),
    };
    ToolCall::new(kind, &input, shown)
}

/// The script of `/bin/bash -lc 'SCRIPT'` (how Codex prints every shell call), else the line.
fn unwrap_shell(cmd: &str) -> String {
    let rest = ["/bin/bash -lc ", "bash -lc ", "/bin/sh -c ", "sh -c "]
        .iter()
        .find_map(|p| cmd.strip_prefix(p));
    let Some(rest) = rest else {
        return cmd.to_string();
    };
    let quoted = |q: char| rest.strip_prefix(q).and_then(|r| r.strip_suffix(q));
    match (quoted('\''), quoted('"')) {
        (Some(inner), _) => inner.to_string(),
        (None, Some(inner)) => inner.replace("\\\\", "\\").replace("\\\"", "\""),
        _ => rest.to_string(),
    }
}

/// Running totals over Codex events.
#[derive(Default)]
pub(super) struct Tally {
    seen: bool,
    input: u64,
    output: u64,
    has_tokens: bool,
    /// The latest cumulative total from the newer `token_count` shape (`info.total_token_usage`),
    /// which replaces rather than adds.
    cumulative: Option<(u64, u64)>,
    failed: bool,
    summary: Option<String>,
    error: Option<String>,
    session_id: Option<String>,
}

impl Tally {
    pub(super) fn observe(&mut self, event: &Map<String, Value>) {
        match str_of(event, "type") {
            Some("thread.started") => {
                self.seen = true;
                self.session_id = str_of(event, "thread_id").and_then(non_empty);
            }
            Some("turn.started" | "item.started" | "item.updated") => self.seen = true,
            Some("turn.completed") => {
                self.seen = true;
                if let Some(usage) = event.get("usage").and_then(Value::as_object) {
                    self.add(usage);
                }
                // A turn that completed after an `error` event (a stream retry) recovered.
                self.failed = false;
            }
            Some("turn.failed") => {
                self.seen = true;
                self.failed = true;
                self.error = event
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .and_then(non_empty);
            }
            // Gemini CLI's stream-json has `error` events too (its loop detection, a warning),
            // each with a `timestamp`, which Codex's events never carry: not a Codex failure
            // (the plain adapter tries Codex's format before Gemini's).
            Some("error") if !event.contains_key("timestamp") => {
                self.seen = true;
                self.failed = true;
                self.error = str_of(event, "message").and_then(non_empty);
            }
            Some("item.completed") => {
                self.seen = true;
                let item = event.get("item");
                let kind = item.and_then(|i| i.get("type")).and_then(Value::as_str);
                if kind == Some("agent_message") {
                    let text = item.and_then(|i| i.get("text")).and_then(Value::as_str);
                    if let Some(text) = text.and_then(non_empty) {
                        self.summary = Some(text);
                    }
                }
            }
            _ => {
                // The older protocol, on stdout as `msg`; the session file calls it `payload`.
                if let Some(msg) = event
                    .get("msg")
                    .or_else(|| event.get("payload"))
                    .and_then(Value::as_object)
                {
                    self.observe_legacy(msg);
                }
            }
        }
    }

    fn observe_legacy(&mut self, msg: &Map<String, Value>) {
        match str_of(msg, "type") {
            Some("token_count") => {
                self.seen = true;
                let total = msg
                    .get("info")
                    .and_then(|i| i.get("total_token_usage"))
                    .and_then(Value::as_object);
                match total {
                    Some(total) => {
                        let n = |key: &str| total.get(key).and_then(Value::as_u64).unwrap_or(0);
                        self.cumulative = Some((n("input_tokens"), n("output_tokens")));
                    }
                    // The first shape: flat counts, one event per model response.
                    None if msg.contains_key("input_tokens") => self.add(msg),
                    None => {}
                }
            }
            Some("task_complete") => {
                self.seen = true;
                if let Some(text) = str_of(msg, "last_agent_message") {
                    self.summary = non_empty(text).or(self.summary.take());
                }
            }
            Some("agent_message") => {
                self.seen = true;
                if let Some(text) = str_of(msg, "message") {
                    self.summary = non_empty(text).or(self.summary.take());
                }
            }
            Some("error") => {
                self.seen = true;
                self.failed = true;
                self.error = str_of(msg, "message").and_then(non_empty);
            }
            Some("task_started" | "session_configured" | "agent_reasoning") => self.seen = true,
            _ => {}
        }
    }

    fn add(&mut self, usage: &Map<String, Value>) {
        let n = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
        self.input = self.input.saturating_add(n("input_tokens"));
        self.output = self.output.saturating_add(n("output_tokens"));
        self.has_tokens = true;
    }

    pub(super) fn finish(self) -> Option<Reading> {
        if !self.seen {
            return None;
        }
        let tokens = match self.cumulative {
            Some((input, output)) => Some(Tokens { input, output }),
            None if self.has_tokens => Some(Tokens {
                input: self.input,
                output: self.output,
            }),
            None => None,
        };
        let failure = self.failed.then(|| {
            Failure::classify_or_exit(self.error.as_deref().unwrap_or("the turn failed"), None)
        });
        // A failed run's most useful line is why it failed.
        let summary = if self.failed {
            self.error.or(self.summary)
        } else {
            self.summary
        };
        Some(Reading {
            tokens,
            summary,
            failure,
            session_id: self.session_id,
            source: CostSource::CodexJson,
            ..Reading::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = include_str!("../../fixtures/cli-output/codex-exec.ndjson");
    const FAILED: &str = include_str!("../../fixtures/cli-output/codex-failed.ndjson");
    const LEGACY: &str = include_str!("../../fixtures/cli-output/codex-legacy.ndjson");

    fn read(stdout: &str) -> Option<Reading> {
        Codex.read(&Output {
            stdout: stdout.as_bytes(),
            stderr: b"",
            exit_code: Some(0),
        })
    }

    fn tokens(input: u64, output: u64) -> Option<Tokens> {
        Some(Tokens { input, output })
    }

    #[test]
    fn exec_sums_turns() {
        let run = read(EXEC).unwrap();
        assert_eq!(run.source, CostSource::CodexJson);
        assert_eq!(run.cost_usd, None);
        assert!(run.failure.is_none());
        assert_eq!(run.tokens, tokens(26_549 + 8120, 1590 + 210));
        assert_eq!(run.summary.as_deref(), Some("Also updated the changelog."));
    }

    #[test]
    fn failed_turn_is_a_failure_with_its_cause() {
        let run = read(FAILED).unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::RateLimited);
        assert_eq!(run.tokens, None);
        assert_eq!(
            f.error,
            "stream disconnected before completion: Rate limit reached for gpt-5-codex"
        );
    }

    /// The messages issue 17 quotes for Codex 0.171 (a 429 after its retries; a usage limit
    /// with a local reset time; a spent quota).
    #[test]
    fn turn_failed_messages() {
        let failed = |msg: &str| {
            let text = format!(
                "{}\n{}\n",
                r#"{"type":"thread.started","thread_id":"0199-t"}"#,
                serde_json::json!({"type": "turn.failed", "error": {"message": msg}})
            );
            read(&text).unwrap()
        };
        let run = failed("exceeded retry limit, last status: 429 Too Many Requests");
        assert_eq!(run.failure.unwrap().cause, Cause::RateLimited);
        assert_eq!(run.session_id.as_deref(), Some("0199-t"));
        let f = failed("You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing), or try again at Apr 16th, 2026 12:04 AM.").failure.unwrap();
        assert_eq!(f.cause, Cause::UsageLimit);
        assert!(f.resets_at.is_some());
        let f = failed("Quota exceeded. Check your plan and billing details.")
            .failure
            .unwrap();
        assert_eq!(f.cause, Cause::Auth);
    }

    #[test]
    fn error_then_completed_turn_recovered() {
        let text = concat!(
            r#"{"type":"turn.started"}"#,
            "\n",
            r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":2}}"#,
            "\n"
        );
        let run = read(text).unwrap();
        assert!(run.failure.is_none());
        assert_eq!(run.tokens, tokens(10, 2));

        let ends_in_error = format!("{text}{}\n", r#"{"type":"error","message":"boom"}"#);
        let run = read(&ends_in_error).unwrap();
        assert_eq!(run.failure.unwrap().cause, Cause::Exit);
        assert_eq!(run.summary.as_deref(), Some("boom"));
    }

    #[test]
    fn legacy_protocol() {
        let run = read(LEGACY).unwrap();
        assert_eq!(run.source, CostSource::CodexJson);
        assert_eq!(run.tokens, tokens(3804 + 4210, 95 + 402));
        assert_eq!(
            run.summary.as_deref(),
            Some("The loader now rejects unknown keys.")
        );
        // The later shape carries a running total: the last one replaces, never adds.
        let text = concat!(
            r#"{"id":"1","msg":{"type":"token_count","info":{"total_token_usage":{"input_tokens":100,"output_tokens":7},"last_token_usage":{"input_tokens":100,"output_tokens":7}}}}"#,
            "\n",
            r#"{"id":"1","msg":{"type":"token_count","info":{"total_token_usage":{"input_tokens":250,"output_tokens":19},"last_token_usage":{"input_tokens":150,"output_tokens":12}}}}"#,
            "\n"
        );
        assert_eq!(read(text).unwrap().tokens, tokens(250, 19));
    }
}
