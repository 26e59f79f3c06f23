//! Claude Code (`claude -p`): its `--output-format json` result object, or the last `result`
//! event of `--output-format stream-json` (which needs `--verbose` with `-p`).
//!
//! What the result says: `total_cost_usd` (`cost_usd` in older releases), `usage` (cache reads
//! and writes reported apart from `input_tokens`, so they are added in), `num_turns`,
//! `session_id`, the final message in `result`, and `permission_denials` (every tool call the
//! permission mode refused: `tool_name` and `tool_input`). A failed run is `is_error: true` —
//! with `subtype: "success"` (sic) when the API failed after Claude's own retries, the HTTP
//! status in `api_error_status` and the reason in `result` ("API Error: Request rejected (429)
//! · …", "Invalid API key · Fix external API key") — or a `subtype` starting `error`
//! (`error_max_turns`, `error_during_execution`).
//!
//! While it runs, `stream-json` prints one line per message ([`progress`]): an `assistant`
//! line holds the message's `tool_use` blocks (name and input) and its `usage` (the input
//! tokens; the output count is the stream's first figure, 1, not the message's), a `user` line
//! the tool results. The cost comes only with the final `result`, as the run ends: what streams
//! before it is each message's tokens.

use serde_json::{Map, Value};

use super::adapter::{
    AgentCli, CostSource, Failure, Invocation, Output, Place, Reading, SandboxNeeds, Session,
    SessionArgs,
};
use super::progress::{json_line, label, Activity, ToolCall};
use super::scan::{for_each_json_object, non_empty, str_of, usd};
use crate::roundlog::{Cause, PermissionDenial, Tokens};

pub struct Claude;

impl AgentCli for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn programs(&self) -> &'static [&'static str] {
        &["claude", "claude-code", "anthropic-ai/claude-code"]
    }

    fn provider(&self) -> Option<&'static str> {
        Some("anthropic")
    }

    fn sandbox_needs(&self) -> SandboxNeeds {
        SandboxNeeds {
            // Its login (.credentials.json), settings and sessions; .claude.json its
            // onboarding state (it runs without it too: measured, 2.1.332).
            home_state: &[".claude", ".claude.json"],
            state_var: Some("CLAUDE_CONFIG_DIR"),
            base_url_vars: &["ANTHROPIC_BASE_URL"],
            default_hosts: &["api.anthropic.com:443"],
        }
    }

    fn invocation(&self) -> Invocation {
        Invocation {
            command: r#"["claude", "-p", "--model", "{model}", "--output-format", "stream-json", "--verbose", "--include-partial-messages", "--permission-mode", "acceptEdits", "--allowedTools", "Bash(git:*),Bash(npm test:*)"]"#,
            stdin: true,
            models: r#"["sonnet", "opus"]"#,
            comments: &[
                "Claude Code in print mode (-p): the prompt on stdin; stream-json (which needs --verbose with -p) prints",
                "each message and tool call as it happens, and --include-partial-messages each token as it comes, which",
                "orch watches for a stuck run (stuck.*); it ends with the JSON result with total_cost_usd.",
                "Permissions: acceptEdits lets it edit files in its folder; --allowedTools adds the shell",
                "commands it may run: git, and `npm test` (put your tests.command there, e.g. Bash(cargo test:*)).",
                "Any other command is denied and listed in the round log (permissionDenials). To widen it,",
                "add rules (Bash(make:*),WebFetch) or use --permission-mode bypassPermissions, which runs",
                "everything and, as root, needs IS_SANDBOX=1 in the agent's env.",
                "Limits: 429/529 wait and run again (limits.*).",
            ],
            pricing: None,
            inherit_env: &["ANTHROPIC_*", "CLAUDE_*", "AWS_REGION", "AWS_PROFILE"],
            budget_comment: Some("Claude Code gets what is left as --max-budget-usd"),
            bundled_agent: false,
        }
    }

    fn parse(&self, out: &Output) -> Option<Reading> {
        parse(out)
    }

    fn progress(&self, line: &[u8]) -> Vec<Activity> {
        progress(line)
    }

    /// `--include-partial-messages` (with `--output-format stream-json`): a `stream_event`
    /// line per piece of text, thinking or tool input as the model writes it.
    fn streams_every_token(&self, argv: &[String]) -> bool {
        argv.iter().any(|a| a == "--include-partial-messages")
    }

    fn fix(&self, cause: Cause) -> String {
        match cause {
            Cause::Auth => "set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) where orch runs or in the agent's `env`, or log in with `claude /login` as the user orch runs as".into(),
            Cause::BadRequest => "check the agent's --model (a model name Claude Code knows, such as sonnet or opus) and the other flags of its `command`".into(),
            _ => "check the agent's command".into(),
        }
    }

    /// `--session-id UUID` names a new session (it must be a UUID); `--resume UUID` goes on
    /// with it (the same id: without `--fork-session` Claude Code keeps it).
    fn session_args(&self, session: &Session) -> Option<SessionArgs> {
        let flag = if session.resume {
            "--resume"
        } else {
            "--session-id"
        };
        Some(SessionArgs {
            args: vec![flag.into(), session.id.into()],
            place: Place::AfterProgram,
            takes_id: true,
        })
    }

    fn budget_args(&self, usd: f64) -> Option<Vec<String>> {
        // `--max-budget-usd <amount>` (`claude --help`, 2.1.332: "only works with --print").
        Some(vec![
            "--max-budget-usd".into(),
            super::adapter::cap_amount(usd),
        ])
    }
}

/// The run as this CLI's own output format tells it; `None` when none of it is there.
pub fn parse(out: &Output) -> Option<Reading> {
    let text = String::from_utf8_lossy(out.stdout);
    let mut result: Option<Reading> = None;
    let mut stream_events = 0usize;
    for_each_json_object(&text, |event| match str_of(&event, "type") {
        Some("result") if is_result(&event) => result = Some(reading(&event)),
        // The other stream-json events: only counted, to tell the two formats apart.
        Some("system" | "assistant" | "user" | "stream_event") => stream_events += 1,
        _ => {}
    });
    // No result: it died before printing one (a bad flag, root refusing
    // --dangerously-skip-permissions); `read` falls back to its words on stderr.
    let mut r = result?;
    if stream_events > 0 {
        r.source = CostSource::ClaudeStream;
    }
    Some(r)
}

/// What one `stream-json` line shows the run doing; empty for a line of another format.
pub fn progress(line: &[u8]) -> Vec<Activity> {
    let Some(event) = json_line(line) else {
        return Vec::new();
    };
    match str_of(&event, "type") {
        Some("assistant") => {
            let message = event.get("message").and_then(Value::as_object);
            let mut seen: Vec<Activity> = message
                .and_then(|m| m.get("content"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
                .map(|b| {
                    let name = b.get("name").and_then(Value::as_str).unwrap_or("tool");
                    let input = b.get("input").unwrap_or(&Value::Null);
                    Activity::Tool(ToolCall::new(name, input, label(name, input)))
                })
                .collect();
            if let Some(usage) = message
                .and_then(|m| m.get("usage"))
                .and_then(Value::as_object)
            {
                seen.push(Activity::Tokens {
                    message: message.and_then(|m| str_of(m, "id")).map(str::to_string),
                    tokens: usage_tokens(usage),
                });
            }
            if seen.is_empty() {
                seen.push(Activity::Output);
            }
            seen
        }
        // A tool's result, handed back to the model.
        Some("user") if has_tool_result(&event) => vec![Activity::ToolDone],
        // `--include-partial-messages`: a message's last usage figure, its final output count
        // (the whole message's line has only the stream's first), named by `api_message_id`.
        Some("stream_event") => match stream_usage(&event) {
            Some(tokens) => vec![Activity::Tokens {
                message: str_of(&event, "api_message_id").map(str::to_string),
                tokens,
            }],
            None => vec![Activity::Output],
        },
        // The final result: its cost is the run's bill, read when the run ends; the CLI is
        // ending by itself, and its own words (a spent --max-budget-usd) are the ones to keep.
        Some("result" | "system" | "user") => vec![Activity::Output],
        _ => Vec::new(),
    }
}

/// The usage a `stream_event`'s `message_delta` carries.
fn stream_usage(event: &Map<String, Value>) -> Option<Tokens> {
    let inner = event.get("event").and_then(Value::as_object)?;
    if str_of(inner, "type") != Some("message_delta") {
        return None;
    }
    inner
        .get("usage")
        .and_then(Value::as_object)
        .map(usage_tokens)
}

/// Whether a `user` message carries a `tool_result` block.
fn has_tool_result(event: &Map<String, Value>) -> bool {
    event
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

/// A `usage` object's tokens: cache reads and writes are reported apart from `input_tokens`,
/// so they are added in.
fn usage_tokens(u: &Map<String, Value>) -> Tokens {
    let n = |key: &str| u.get(key).and_then(Value::as_u64).unwrap_or(0);
    Tokens {
        input: n("input_tokens")
            .saturating_add(n("cache_creation_input_tokens"))
            .saturating_add(n("cache_read_input_tokens")),
        output: n("output_tokens"),
    }
}

/// A Claude Code result object: `type: "result"` plus one of the fields only it carries. The
/// extra check keeps some other tool's `{"type":"result"}` line from being read as a zero-cost
/// run.
pub(super) fn is_result(event: &Map<String, Value>) -> bool {
    [
        "total_cost_usd",
        "cost_usd",
        "subtype",
        "is_error",
        "session_id",
    ]
    .iter()
    .any(|k| event.contains_key(*k))
}

fn reading(event: &Map<String, Value>) -> Reading {
    let cost = event
        .get("total_cost_usd")
        .or_else(|| event.get("cost_usd"))
        .and_then(usd);
    let subtype = str_of(event, "subtype");
    let subtype_is_error = subtype.is_some_and(|s| s.starts_with("error"));
    let is_error = event
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || subtype_is_error;
    let tokens = event
        .get("usage")
        .and_then(Value::as_object)
        .map(usage_tokens);
    let result_text = str_of(event, "result").and_then(non_empty);
    let summary = match &result_text {
        Some(text) => Some(text.clone()),
        // Error results often have no `result` text; the subtype says what went wrong.
        None if is_error => subtype.and_then(non_empty),
        None => None,
    };
    // `--max-budget-usd` spent (recorded from 2.1.332: exit 1, `subtype:
    // "error_max_budget_usd"`, `terminal_reason: "budget_exhausted"`, the words in `errors`,
    // the cost so far in `total_cost_usd`): the cap orch passed, not a failure of the agent.
    let over_budget = subtype == Some("error_max_budget_usd")
        || str_of(event, "terminal_reason") == Some("budget_exhausted");
    let errors = event.get("errors").and_then(Value::as_array).map(|list| {
        list.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; ")
    });
    let failure = is_error.then(|| {
        let words = result_text
            .clone()
            .or_else(|| errors.as_deref().and_then(non_empty))
            .or_else(|| subtype.map(str::to_string))
            .unwrap_or_else(|| "the result says is_error".into());
        if over_budget {
            return Failure::from_words(Cause::OverBudget, &words);
        }
        // `--max-turns` reached (recorded from 2.1.332: exit 1, `subtype: "error_max_turns"`,
        // `terminal_reason: "max_turns"`, "Reached maximum number of turns (N)" in `errors`).
        if subtype == Some("error_max_turns")
            || str_of(event, "terminal_reason") == Some("max_turns")
        {
            return Failure::from_words(Cause::MaxTurns, &words);
        }
        let status = event
            .get("api_error_status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        Failure::classify_or_exit(&words, status)
    });
    Reading {
        cost_usd: cost,
        tokens,
        session_id: str_of(event, "session_id").and_then(non_empty),
        summary,
        num_turns: event.get("num_turns").and_then(Value::as_u64),
        failure,
        permission_denials: denials(event),
        source: CostSource::ClaudeJson,
        ..Reading::default()
    }
}

/// `permission_denials: [{tool_name, tool_use_id, tool_input: {command | file_path | ...}}]`.
fn denials(event: &Map<String, Value>) -> Vec<PermissionDenial> {
    let Some(list) = event.get("permission_denials").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(Value::as_object)
        .map(|d| {
            let input = d.get("tool_input").and_then(Value::as_object);
            let command = input.and_then(|i| {
                ["command", "file_path", "path", "url", "pattern"]
                    .iter()
                    .find_map(|k| str_of(i, k))
                    .map(super::classify::one_line)
            });
            PermissionDenial {
                tool: str_of(d, "tool_name").unwrap_or("?").to_string(),
                command,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = include_str!("../../fixtures/cli-output/claude-json.json");
    const JSON_ERROR: &str = include_str!("../../fixtures/cli-output/claude-json-error.json");
    const STREAM: &str = include_str!("../../fixtures/cli-output/claude-stream.ndjson");
    const NOISY_PREFIX: &str = include_str!("../../fixtures/cli-output/noisy-prefix.txt");

    fn read(stdout: &str) -> Option<Reading> {
        Claude.read(&Output {
            stdout: stdout.as_bytes(),
            stderr: b"",
            exit_code: Some(0),
        })
    }

    fn tokens(input: u64, output: u64) -> Option<Tokens> {
        Some(Tokens { input, output })
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn json_result() {
        let run = read(JSON).unwrap();
        assert_eq!(run.source, CostSource::ClaudeJson);
        assert!(close(run.cost_usd, 0.4127305));
        assert!(run.failure.is_none());
        assert_eq!(run.num_turns, Some(12));
        // 38 + 21404 cache writes + 310552 cache reads.
        assert_eq!(run.tokens, tokens(331_994, 4821));
        assert_eq!(
            run.summary.as_deref(),
            Some("Fixed the off-by-one in src/ui/list.rs and added a regression test; cargo test passes.")
        );
        assert!(run.session_id.is_some());
    }

    #[test]
    fn json_error_result() {
        let run = read(JSON_ERROR).unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::MaxTurns);
        assert_eq!(f.error, "error_max_turns");
        assert!(close(run.cost_usd, 1.2034));
        assert_eq!(run.num_turns, Some(31));
        assert_eq!(run.tokens, tokens(112 + 40_210 + 1_203_340, 15_003));
        assert_eq!(run.summary.as_deref(), Some("error_max_turns"));
    }

    #[test]
    fn error_from_subtype_alone_and_old_cost_field() {
        let line =
            r#"{"type":"result","subtype":"error_during_execution","cost_usd":0.05,"num_turns":1}"#;
        let run = read(line).unwrap();
        assert!(run.failure.is_some());
        assert!(close(run.cost_usd, 0.05));
    }

    #[test]
    fn stream_takes_the_last_result() {
        let run = read(STREAM).unwrap();
        assert_eq!(run.source, CostSource::ClaudeStream);
        assert!(close(run.cost_usd, 0.18832));
        assert_eq!(run.num_turns, Some(7));
        assert_eq!(run.tokens, tokens(22 + 10_744 + 86_420, 2210));
        // A second result after the first (a wrapper that ran claude twice): the last one is
        // what the run ended with.
        let twice = format!("{STREAM}{JSON}");
        assert!(close(read(&twice).unwrap().cost_usd, 0.4127305));
    }

    #[test]
    fn partial_messages_read_as_the_stream_and_stream_every_token() {
        // Recorded with --include-partial-messages: the same result and bill as without.
        let partial = read(include_str!(
            "../../fixtures/cli-output/real/claude-partial-ok.stdout"
        ))
        .unwrap();
        let plain = read(include_str!(
            "../../fixtures/cli-output/real/claude-stream-ok.stdout"
        ))
        .unwrap();
        assert_eq!(partial.source, CostSource::ClaudeStream);
        assert!(close(partial.cost_usd, plain.cost_usd.unwrap()));
        assert_eq!(partial.tokens, plain.tokens);
        assert_eq!(partial.failure, None);
        // What `orch init` writes streams every token; stream-json alone does not.
        let argv = |s: &str| -> Vec<String> { s.split(' ').map(str::to_string).collect() };
        let init: Vec<String> = serde_json::from_str(Claude.invocation().command).unwrap();
        assert!(Claude.streams_every_token(&init));
        assert!(
            !Claude.streams_every_token(&argv("claude -p --output-format stream-json --verbose"))
        );
    }

    #[test]
    fn stream_cut_at_the_front_still_finds_the_result() {
        let cut = STREAM.get(700..).unwrap();
        assert!(close(read(cut).unwrap().cost_usd, 0.18832));
    }

    #[test]
    fn noisy_prefix_before_a_result() {
        let run = read(NOISY_PREFIX).unwrap();
        assert_eq!(run.source, CostSource::ClaudeJson);
        assert!(close(run.cost_usd, 0.0213));
        assert_eq!(run.tokens, tokens(9 + 14_210, 311));
    }

    #[test]
    fn pretty_printed_result_spanning_lines() {
        let pretty = "log line\n{\n  \"type\": \"result\",\n  \"usage\": {\n    \"input_tokens\": 5,\n    \"output_tokens\": 6\n  },\n  \"total_cost_usd\": 0.25\n}\n";
        let run = read(pretty).unwrap();
        assert!(close(run.cost_usd, 0.25));
        assert_eq!(run.tokens, tokens(5, 6));
    }

    #[test]
    fn not_a_claude_result() {
        assert_eq!(read(r#"{"type":"result","ok":true}"#), None);
        let run = read(r#"{"type":"result","is_error":false,"total_cost_usd":-1}"#).unwrap();
        assert_eq!(run.cost_usd, None);
        let run = read(r#"{"type":"result","total_cost_usd":"0.3"}"#).unwrap();
        assert_eq!(run.cost_usd, None);
    }

    /// The shape issue 17 quotes for Claude Code 2.1 after its own retries on a 429: exit 1,
    /// `is_error: true`, `subtype: "success"`, `api_error_status`, the reason in `result`.
    #[test]
    fn api_errors_after_claudes_retries() {
        let result = |status: u16, text: &str| {
            format!(
                r#"{{"type":"result","subtype":"success","is_error":true,"api_error_status":{status},"duration_ms":180000,"num_turns":1,"result":"{text}","session_id":"s-1","total_cost_usd":0,"usage":{{"input_tokens":0,"output_tokens":0}}}}"#
            )
        };
        let cause = |status: u16, text: &str| read(&result(status, text)).unwrap().failure.unwrap();
        let f = cause(429, "API Error: Request rejected (429) · Rate limited");
        assert_eq!(f.cause, Cause::RateLimited);
        assert_eq!(f.error, "API Error: Request rejected (429) · Rate limited");
        assert_eq!(
            cause(529, "API Error: 529 Overloaded").cause,
            Cause::Overloaded
        );
        assert_eq!(
            cause(500, "API Error: 500 Internal server error").cause,
            Cause::Overloaded
        );
        assert_eq!(
            cause(401, "Invalid API key · Fix external API key").cause,
            Cause::Auth
        );
        assert_eq!(
            cause(400, "API Error: 400 invalid_request_error").cause,
            Cause::BadRequest
        );
        let f = cause(
            429,
            "You've hit your session limit · resets 8pm (America/New_York)",
        );
        assert_eq!(f.cause, Cause::UsageLimit);
        assert!(f.resets_at.is_some());
        let f = cause(429, "Claude AI usage limit reached|1776384000");
        assert_eq!(f.cause, Cause::UsageLimit);
        assert_eq!(
            f.resets_at,
            Some(jiff::Timestamp::from_second(1_776_384_000).unwrap())
        );
    }

    /// Recorded from Claude Code 2.1.332 against a mock API whose model asks to run
    /// `cargo test --quiet`, under `--permission-mode acceptEdits` without `--allowedTools`:
    /// exit 0, not an error, the command in `permission_denials`. With
    /// `--allowedTools "Bash(cargo test:*)"` (or `Bash(cargo test *)`) the list was empty.
    #[test]
    fn permission_denials_are_listed() {
        let run = read(include_str!(
            "../../fixtures/cli-output/claude-2.1-permission-denied.json"
        ))
        .unwrap();
        assert!(run.failure.is_none());
        assert_eq!(
            run.permission_denials,
            vec![PermissionDenial {
                tool: "Bash".into(),
                command: Some("cargo test --quiet".into())
            }]
        );
    }

    /// Recorded from Claude Code 2.1.332 with `--max-budget-usd 0.001` against the mock API,
    /// whose one turn costs $0.0032: exit 1, `error_max_budget_usd`, the cost it did spend.
    #[test]
    fn max_budget_reached_is_over_budget_with_its_cost() {
        for (name, stdout, source) in [
            (
                "json",
                &include_bytes!("../../fixtures/cli-output/real/claude-max-budget.stdout")[..],
                CostSource::ClaudeJson,
            ),
            (
                "stream",
                &include_bytes!("../../fixtures/cli-output/real/claude-stream-max-budget.stdout")[..],
                CostSource::ClaudeStream,
            ),
        ] {
            let run = Claude
                .read(&Output {
                    stdout,
                    stderr: b"",
                    exit_code: Some(1),
                })
                .unwrap();
            assert_eq!(run.source, source, "{name}");
            assert!(close(run.cost_usd, 0.0032), "{name}: {:?}", run.cost_usd);
            let f = run.failure.unwrap();
            assert_eq!(f.cause, Cause::OverBudget, "{name}");
            assert_eq!(f.error, "Reached maximum budget ($0.001)", "{name}");
        }
        assert_eq!(
            Claude.budget_args(0.25),
            Some(vec!["--max-budget-usd".to_string(), "0.25".to_string()])
        );
    }

    /// Recorded from Claude Code 2.1.332 as root: it refuses before printing a result.
    #[test]
    fn no_result_but_words_on_stderr() {
        let run = Claude
            .read(&Output {
                stdout: b"",
                stderr: include_bytes!(
                    "../../fixtures/cli-output/claude-2.1-root-skip-permissions.stderr"
                ),
                exit_code: Some(1),
            })
            .unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::Exit);
        assert_eq!(
            f.error,
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
        );
    }

    /// Recorded from Claude Code 2.1.332 with no key and no login: exit 1, `is_error`, no
    /// `api_error_status`.
    #[test]
    fn not_logged_in_is_auth() {
        let run = read(include_str!(
            "../../fixtures/cli-output/claude-2.1-not-logged-in.json"
        ))
        .unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::Auth);
        assert_eq!(f.error, "Not logged in · Please run /login");
        assert_eq!(run.cost_usd, Some(0.0));
        assert!(run.permission_denials.is_empty());
    }
}
