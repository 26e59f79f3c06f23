//! Gemini CLI (`gemini -p "" --output-format json`, the prompt on stdin): one pretty-printed
//! JSON object on stdout at the end, `{"session_id", "response", "stats": {"models": {MODEL:
//! {"tokens": {"input", "prompt", "candidates", "cached", "thoughts", "total", ...}}}}}`. It
//! prints no cost: each model's tokens are priced with the mission's `pricing` under that
//! model's own name. A failed run prints `{"session_id", "error": {"type", "message", "code"}}`
//! on stderr (after a stack trace for API errors); `code` is the exit status for its own fatal
//! errors (41: no auth method) or the HTTP status, and an API error's `message` is the API's JSON
//! body, whose own `error.message` and `error.code` are the words and status read.
//!
//! Recorded from Gemini CLI 0.61.0 (fixtures/cli-output/gemini-0.61-*): ok, no auth (exit 41),
//! an invalid key (the API's 400 API_KEY_INVALID, exit 144), a bad request (400, exit 144), a
//! 429 after its own ten attempts (exit 173). In a folder it does not trust (no `--skip-trust`:
//! fixtures/cli-output/real/gemini-untrusted) it prints no JSON, only a coloured line on stderr,
//! and exits 55: cause `untrustedFolder`, read from the words.
//!
//! `--output-format stream-json` (0.61.0, recorded as fixtures/cli-output/real/gemini-stream-*)
//! prints one JSON line per event while it runs ([`progress`]): `init`, `message`, `tool_use`
//! (`tool_name`, `parameters`), `tool_result`, `error` (its own loop detection: "Loop
//! detected, stopping execution" after 4 identical calls) and a final `result` with
//! `stats.input_tokens` and `stats.output_tokens` (the only spend it shows, as it ends).

use serde_json::{Map, Value};

use super::adapter::{AgentCli, CostSource, Failure, Invocation, Output, Reading, SandboxNeeds};
use super::classify;
use super::progress::{json_line, label, Activity, ToolCall};
use super::scan::{for_each_json_object, non_empty, str_of};
use crate::roundlog::{Cause, Tokens};

pub struct Gemini;

impl AgentCli for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn programs(&self) -> &'static [&'static str] {
        &["gemini", "gemini-cli", "google/gemini-cli"]
    }

    fn provider(&self) -> Option<&'static str> {
        Some("google")
    }

    fn sandbox_needs(&self) -> SandboxNeeds {
        SandboxNeeds {
            home_state: &[".gemini"],
            state_var: None,
            base_url_vars: &["GOOGLE_GEMINI_BASE_URL"],
            default_hosts: &["generativelanguage.googleapis.com:443"],
        }
    }

    fn invocation(&self) -> Invocation {
        Invocation {
            command: r#"["gemini", "-p", "", "-m", "{model}", "--output-format", "stream-json", "--approval-mode", "yolo", "--skip-trust"]"#,
            stdin: true,
            models: r#"["gemini-2.5-flash", "gemini-2.5-pro"]"#,
            comments: &[
                "Gemini CLI headless (-p \"\": the prompt comes on stdin); stream-json prints each message and tool",
                "call as it happens, which orch watches for a stuck run (stuck.*), and ends with the token stats;",
                "costs come from `pricing`. --approval-mode yolo runs its tools without asking (auto_edit: edits",
                "only, so shell commands are refused); --skip-trust trusts the agent's folder. It needs",
                "GEMINI_API_KEY and an auth type in ~/.gemini/settings.json. Limits: 429s wait and run again.",
            ],
            pricing: Some(
                r#"{ "gemini-2.5-flash": { "inputPerMTok": 0.30, "outputPerMTok": 2.50 }, "gemini-2.5-pro": { "inputPerMTok": 1.25, "outputPerMTok": 10.0 } }"#,
            ),
            inherit_env: &["GEMINI_*", "GOOGLE_*"],
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

    fn fix(&self, cause: Cause) -> String {
        match cause {
            Cause::Auth => "set GEMINI_API_KEY where orch runs (or in the agent's `env`) and name the auth type in ~/.gemini/settings.json (security.auth.selectedType \"gemini-api-key\"); Vertex AI: GOOGLE_API_KEY with GOOGLE_GENAI_USE_VERTEXAI=true".into(),
            Cause::BadRequest => "check the agent's -m model (one your key can use) and the other flags of its `command`".into(),
            Cause::UntrustedFolder => classify::UNTRUSTED_FIX.into(),
            _ => "check the agent's command".into(),
        }
    }
}

/// The run as this CLI's own output format tells it; `None` when none of it is there.
pub fn parse(out: &Output) -> Option<Reading> {
    let mut reading: Option<Reading> = None;
    // stream-json names the session in its first event, `init`, not in its result.
    let mut init_session: Option<String> = None;
    for stream in [out.stdout, out.stderr] {
        let text = String::from_utf8_lossy(stream);
        for_each_json_object(&text, |obj| {
            if str_of(&obj, "type") == Some("init") && obj.contains_key("timestamp") {
                init_session = str_of(&obj, "session_id").and_then(non_empty);
            }
            if let Some(r) = read_object(&obj) {
                // An error object wins over a response seen earlier.
                if reading.as_ref().is_none_or(|old| old.failure.is_none()) {
                    reading = Some(r);
                }
            }
        });
    }
    if let Some(r) = reading.as_mut().filter(|r| r.session_id.is_none()) {
        r.session_id = init_session;
    }
    reading
}

/// What one `stream-json` line shows the run doing; empty for a line of another format.
pub fn progress(line: &[u8]) -> Vec<Activity> {
    let Some(event) = json_line(line) else {
        return Vec::new();
    };
    // Every stream-json event carries a timestamp; that tells them from other JSON.
    if !event.contains_key("timestamp") {
        return Vec::new();
    }
    match str_of(&event, "type") {
        Some("tool_use") => {
            let name = str_of(&event, "tool_name").unwrap_or("tool");
            let input = event.get("parameters").unwrap_or(&Value::Null);
            vec![Activity::Tool(ToolCall::new(
                name,
                input,
                label(name, input),
            ))]
        }
        // The tokens come only in the final `result`, as the run ends: read then, not here.
        Some("tool_result") => vec![Activity::ToolDone],
        Some("init" | "message" | "error" | "result") => vec![Activity::Output],
        _ => Vec::new(),
    }
}

/// A Gemini CLI result or error object; `None` for any other JSON.
fn read_object(obj: &Map<String, Value>) -> Option<Reading> {
    let session_id = str_of(obj, "session_id").and_then(non_empty);
    if let Some(err) = obj.get("error").and_then(Value::as_object) {
        let message = str_of(err, "message").unwrap_or("");
        let code = err.get("code").and_then(Value::as_u64);
        let (words, status) = api_error(message).unwrap_or((message.to_string(), None));
        let status = status.or(code.filter(|c| (400..600).contains(c)).map(|c| c as u16));
        let failure = match code {
            // Its own fatal exit statuses: 41 authentication, 42 bad input.
            Some(41) => Failure::from_words(Cause::Auth, &words),
            Some(42) => Failure::from_words(Cause::BadRequest, &words),
            // 53: `model.maxSessionTurns` reached (FatalTurnLimitedError).
            Some(53) => Failure::from_words(Cause::MaxTurns, &words),
            _ => Failure::classify_or_exit(&words, status),
        };
        return Some(Reading {
            session_id,
            summary: non_empty(&words),
            failure: Some(failure),
            source: CostSource::GeminiJson,
            ..Reading::default()
        });
    }
    if !obj.contains_key("response") && !obj.contains_key("stats") {
        return None;
    }
    let by_model: Vec<(String, Tokens)> = obj
        .get("stats")
        .and_then(|s| s.get("models"))
        .and_then(Value::as_object)
        .map(|models| {
            models
                .iter()
                .filter_map(|(name, m)| {
                    let m = m.as_object()?;
                    let t = match m.get("tokens").and_then(Value::as_object) {
                        Some(t) => tokens(t),
                        None => stream_tokens(m)?,
                    };
                    Some((name.clone(), t))
                })
                .collect()
        })
        .unwrap_or_default();
    let total = (!by_model.is_empty()).then(|| Tokens {
        input: by_model.iter().map(|(_, t)| t.input).sum(),
        output: by_model.iter().map(|(_, t)| t.output).sum(),
    });
    Some(Reading {
        tokens: total,
        tokens_by_model: by_model,
        session_id,
        summary: str_of(obj, "response").and_then(non_empty),
        source: CostSource::GeminiJson,
        ..Reading::default()
    })
}

/// Input: `prompt` is every prompt token (`input` is the uncached part, `cached` the rest);
/// output: the `candidates` plus the `thoughts`, which are billed as output.
fn tokens(t: &Map<String, Value>) -> Tokens {
    let n = |k: &str| t.get(k).and_then(Value::as_u64);
    let input = n("prompt").unwrap_or_else(|| {
        n("input")
            .unwrap_or(0)
            .saturating_add(n("cached").unwrap_or(0))
    });
    Tokens {
        input,
        output: n("candidates")
            .unwrap_or(0)
            .saturating_add(n("thoughts").unwrap_or(0)),
    }
}

/// A model's figures in stream-json's `result` (recorded, 0.61.0: `{"total_tokens",
/// "input_tokens", "output_tokens", "cached", "input"}`): `input_tokens` is every prompt token
/// (`input` the uncached part), `output_tokens` every token written.
fn stream_tokens(m: &Map<String, Value>) -> Option<Tokens> {
    let n = |k: &str| m.get(k).and_then(Value::as_u64);
    Some(Tokens {
        input: n("input_tokens")?,
        output: n("output_tokens").unwrap_or(0),
    })
}

/// An API error's body, which Gemini CLI passes on as its message:
/// `{"error":{"code":400,"message":"API key not valid. ...","status":"INVALID_ARGUMENT"}}`.
fn api_error(message: &str) -> Option<(String, Option<u16>)> {
    let v: Value = serde_json::from_str(message.trim()).ok()?;
    let e = v.get("error")?;
    let words = e.get("message")?.as_str()?.to_string();
    let reason = e
        .pointer("/details/0/reason")
        .and_then(Value::as_str)
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let status = e
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok());
    Some((format!("{words}{reason}"), status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stdout: &[u8], stderr: &[u8], exit: i32) -> Option<Reading> {
        Gemini.read(&Output {
            stdout,
            stderr,
            exit_code: Some(exit),
        })
    }

    #[test]
    fn ok_run_tokens_per_model() {
        let run = read(
            include_bytes!("../../fixtures/cli-output/gemini-0.61-ok.json"),
            b"",
            0,
        )
        .unwrap();
        assert!(run.failure.is_none());
        assert_eq!(run.summary.as_deref(), Some("Done: wrote the file."));
        assert_eq!(
            run.tokens_by_model,
            vec![(
                "gemini-2.5-flash".to_string(),
                Tokens {
                    input: 2400,
                    output: 160
                }
            )]
        );
        assert_eq!(
            run.tokens,
            Some(Tokens {
                input: 2400,
                output: 160
            })
        );
        assert_eq!(
            run.session_id.as_deref(),
            Some("18987f59-8e25-42b4-abac-4f426a2f2080")
        );
        assert_eq!(run.cost_usd, None);
    }

    #[test]
    fn no_auth_method_is_auth() {
        let run = read(
            b"",
            include_bytes!("../../fixtures/cli-output/gemini-0.61-no-auth.stderr"),
            41,
        )
        .unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::Auth);
        assert!(
            f.error.starts_with("Please set an Auth method in your"),
            "{}",
            f.error
        );
    }

    #[test]
    fn an_invalid_key_is_auth_although_the_api_says_400() {
        let run = read(
            b"",
            include_bytes!("../../fixtures/cli-output/gemini-0.61-invalid-key.stderr"),
            144,
        )
        .unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::Auth);
        assert_eq!(
            f.error,
            "API key not valid. Please pass a valid API key. (mock) (API_KEY_INVALID)"
        );
    }

    #[test]
    fn a_bad_request() {
        let run = read(
            b"",
            include_bytes!("../../fixtures/cli-output/gemini-0.61-bad-request.stderr"),
            144,
        )
        .unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::BadRequest);
        assert_eq!(f.error, "Request contains an invalid argument. (mock)");
    }

    /// Ten attempts with backoff (its own retries), then exit 173 and the error object.
    #[test]
    fn a_429_after_its_own_retries_is_a_rate_limit() {
        let run = read(
            b"",
            include_bytes!("../../fixtures/cli-output/gemini-0.61-429.stderr"),
            173,
        )
        .unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::RateLimited);
        assert_eq!(
            f.error,
            "Resource has been exhausted (e.g. check quota). (mock)"
        );
    }

    #[test]
    fn other_json_is_not_geminis() {
        assert_eq!(read(b"{\"type\":\"x\"}\n", b"", 0), None);
        assert_eq!(read(b"", b"", 0), None);
    }
}
