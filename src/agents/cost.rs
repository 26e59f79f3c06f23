//! What an agent run cost (SPEC section 3), and the little else an agent CLI says about how the
//! run went: tokens, error flag, turns and a one-line summary.
//!
//! Three sources, in order of trust: the JSON the agent itself wrote to `ORCH_RESULT_FILE`
//! ([`from_result_file`]), what a known agent CLI printed on stdout ([`from_stdout`]: Claude
//! Code's `--output-format json` / `stream-json` result, Codex's `exec --json` events), and last
//! token counts priced with the mission's `pricing` table. [`assess`] applies that precedence.
//!
//! The stdout parser is deliberately forgiving, because it reads the *tail* of a log file that
//! orch never controls: the tail may start mid-line, hold log noise, be truncated, or not be UTF-8
//! at all. It scans for JSON objects that start a line, keeps the ones it recognises and ignores
//! everything else; it never fails, it only finds nothing. Fields are read from
//! `serde_json::Value` rather than typed structs so that a CLI adding or renaming a field costs us
//! that field, not the whole parse.
//!
//! Token counts mean "every prompt token the model read, cached or not" for input and "every token
//! it wrote" for output. Codex already reports input that way (its `cached_input_tokens` is a
//! subset of `input_tokens`); Claude reports cache reads and writes apart, so they are added in.
//! Pricing those totals at the plain input rate over-estimates cached runs, which is the safe side
//! for a budget; CLIs that print their own cost are not priced at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::roundlog::Tokens;

/// Price of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelPrice {
    // Spelled out: `rename_all` would give `inputPerMTok` too, but the file format should not hang
    // on how serde splits `m_tok`.
    #[serde(rename = "inputPerMTok")]
    pub input_per_m_tok: f64,
    #[serde(rename = "outputPerMTok")]
    pub output_per_m_tok: f64,
}

/// The mission's `pricing`: model name (as the mission spells it) -> price.
pub type Pricing = BTreeMap<String, ModelPrice>;

/// Where a run's cost figure came from, for the round log and for trusting it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CostSource {
    /// `costUsd` in the agent's `ORCH_RESULT_FILE`.
    ResultFile,
    /// Claude Code `--output-format json`: a single result object.
    ClaudeJson,
    /// Claude Code `--output-format stream-json`: the last `result` event of the stream.
    ClaudeStream,
    /// Codex `exec --json` events (or the older `{"msg": ...}` protocol lines).
    CodexJson,
    /// Token counts priced with the mission's `pricing` table.
    Pricing,
    /// No source gave a cost.
    #[default]
    Unknown,
}

/// What orch learned about one agent run's cost and outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunCost {
    pub cost_usd: f64,
    /// False when no source gave a cost; `cost_usd` is then 0 and must not be read as "free".
    pub known: bool,
    pub tokens: Option<Tokens>,
    /// The CLI said the run failed (Claude `is_error`, Codex `turn.failed`/`error`).
    pub is_error: bool,
    pub num_turns: Option<u64>,
    pub summary: Option<String>,
    /// Where `cost_usd` came from when `known`; otherwise where the other fields came from.
    pub source: CostSource,
}

/// Reads the JSON an agent wrote to `ORCH_RESULT_FILE`:
/// `{"costUsd": 0.12, "tokens": {"input": N, "output": N}, "summary": "..."}`, every key optional,
/// other keys allowed (the file is the agent's to extend). A key of the wrong type is an error
/// that names it, so the agent's author learns why the figure was not used.
pub fn from_result_file(text: &str) -> Result<RunCost, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("result file is not JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "result file is not a JSON object".to_string())?;

    let mut run = RunCost {
        source: CostSource::ResultFile,
        ..RunCost::default()
    };
    match obj.get("costUsd") {
        None | Some(Value::Null) => {}
        Some(v) => {
            run.cost_usd = usd(v).ok_or_else(|| {
                format!("result file: costUsd must be a non-negative number, got {v}")
            })?;
            run.known = true;
        }
    }
    match obj.get("tokens") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            let count = |key: &str| match t.get(key) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| {
                    format!("result file: tokens.{key} must be a non-negative integer, got {v}")
                }),
            };
            run.tokens = Some(Tokens {
                input: count("input")?,
                output: count("output")?,
            });
        }
        Some(v) => return Err(format!("result file: tokens must be an object, got {v}")),
    }
    match obj.get("summary") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => run.summary = non_empty(s),
        Some(v) => return Err(format!("result file: summary must be a string, got {v}")),
    }
    Ok(run)
}

/// Reads what a known agent CLI printed: the tail of its stdout, as raw bytes. `None` when
/// nothing recognisable is there (plain text output, a shell script, garbage).
///
/// A Claude result wins over Codex events if, oddly, both appear: it carries a cost.
pub fn from_stdout(tail: &[u8]) -> Option<RunCost> {
    let text = String::from_utf8_lossy(tail);
    let mut claude: Option<RunCost> = None;
    let mut claude_events = 0usize;
    let mut codex = CodexTally::default();

    for_each_json_object(&text, |event| {
        match event.get("type").and_then(Value::as_str) {
            Some("result") if is_claude_result(&event) => claude = Some(claude_result(&event)),
            // The other stream-json events: only counted, to tell the two Claude formats apart.
            Some("system" | "assistant" | "user" | "stream_event") => claude_events += 1,
            _ => codex.observe(&event),
        }
    });

    if let Some(mut run) = claude {
        if claude_events > 0 {
            run.source = CostSource::ClaudeStream;
        }
        return Some(run);
    }
    codex.finish()
}

/// The cost of one run, from the best source available (SPEC section 3): the result file's
/// `costUsd`, else the cost the CLI printed, else tokens × `pricing[model]`, else 0 and unknown.
/// Tokens, summary, turns and the error flag are taken from whichever source has them (the
/// result file first, since the agent wrote it on purpose). A bad result file is logged and
/// ignored, never fatal: the run's work matters more than its bill.
pub fn assess(
    result_file: Option<&str>,
    stdout_tail: &[u8],
    model: &str,
    pricing: &Pricing,
) -> RunCost {
    let file = result_file.and_then(|text| match from_result_file(text) {
        Ok(run) => Some(run),
        Err(e) => {
            log::warn!("ignoring the agent's result file: {e}");
            None
        }
    });
    let printed = from_stdout(stdout_tail);
    let sources: Vec<&RunCost> = file.iter().chain(printed.iter()).collect();

    let mut run = RunCost {
        tokens: sources.iter().find_map(|s| s.tokens.clone()),
        summary: sources.iter().find_map(|s| s.summary.clone()),
        num_turns: sources.iter().find_map(|s| s.num_turns),
        is_error: sources.iter().any(|s| s.is_error),
        ..RunCost::default()
    };

    if let Some(priced) = sources.iter().find(|s| s.known) {
        run.cost_usd = priced.cost_usd;
        run.known = true;
        run.source = priced.source;
    } else if let (Some(tokens), Some(price)) = (&run.tokens, pricing.get(model)) {
        run.cost_usd = price_tokens(tokens, price);
        run.known = true;
        run.source = CostSource::Pricing;
    } else if let Some(first) = sources.first() {
        // Cost unknown, but say where the tokens or summary came from.
        run.source = first.source;
    }
    run
}

/// USD for `tokens` at `price` (per million tokens).
pub fn price_tokens(tokens: &Tokens, price: &ModelPrice) -> f64 {
    tokens.input as f64 / 1e6 * price.input_per_m_tok
        + tokens.output as f64 / 1e6 * price.output_per_m_tok
}

/// Calls `visit` with every JSON object in `text` that starts a line (after leading blanks), in
/// order. A visitor rather than a `Vec`: a multi-MiB stream of events is dropped one at a time.
///
/// An object may span several lines (a pretty-printed result); after one is read the scan
/// resumes after its end, so the objects nested inside it are not read twice. Lines that do not
/// parse (a truncated first line, log noise that happens to start with `{`) are skipped.
fn for_each_json_object(text: &str, mut visit: impl FnMut(Map<String, Value>)) {
    let mut pos = 0;
    while pos < text.len() {
        let rest = text.get(pos..).unwrap_or("");
        let line_len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let start = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let candidate = rest.get(start..).unwrap_or("");
        if candidate.starts_with('{') {
            let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
            if let Some(Ok(Value::Object(obj))) = stream.next() {
                visit(obj);
                pos += start + stream.byte_offset().max(1);
                continue;
            }
        }
        pos += line_len;
    }
}

/// A Claude Code result object: `type: "result"` plus one of the fields only it carries. The extra
/// check keeps some other tool's `{"type":"result"}` line from being read as a zero-cost run.
fn is_claude_result(event: &Map<String, Value>) -> bool {
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

fn claude_result(event: &Map<String, Value>) -> RunCost {
    // `total_cost_usd` today; `cost_usd` in older releases.
    let cost = event
        .get("total_cost_usd")
        .or_else(|| event.get("cost_usd"))
        .and_then(usd);
    let subtype_is_error = event
        .get("subtype")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("error"));
    let is_error = event
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tokens = event.get("usage").and_then(Value::as_object).map(|u| {
        let n = |key: &str| u.get(key).and_then(Value::as_u64).unwrap_or(0);
        Tokens {
            input: n("input_tokens")
                .saturating_add(n("cache_creation_input_tokens"))
                .saturating_add(n("cache_read_input_tokens")),
            output: n("output_tokens"),
        }
    });
    let summary = match event.get("result").and_then(Value::as_str) {
        Some(text) => non_empty(text),
        // Error results often have no `result` text; the subtype says what went wrong.
        None if is_error || subtype_is_error => event
            .get("subtype")
            .and_then(Value::as_str)
            .and_then(non_empty),
        None => None,
    };
    RunCost {
        cost_usd: cost.unwrap_or(0.0),
        known: cost.is_some(),
        tokens,
        is_error: is_error || subtype_is_error,
        num_turns: event.get("num_turns").and_then(Value::as_u64),
        summary,
        source: CostSource::ClaudeJson,
    }
}

/// Running totals over Codex events. `codex exec --json` prints no cost, only per-turn usage;
/// the older protocol printed `{"id":..,"msg":{"type":"token_count",..}}` lines instead.
#[derive(Default)]
struct CodexTally {
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
}

impl CodexTally {
    fn observe(&mut self, event: &Map<String, Value>) {
        match event.get("type").and_then(Value::as_str) {
            Some("thread.started" | "turn.started" | "item.started" | "item.updated") => {
                self.seen = true;
            }
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
            Some("error") => {
                self.seen = true;
                self.failed = true;
                self.error = event
                    .get("message")
                    .and_then(Value::as_str)
                    .and_then(non_empty);
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
        match msg.get("type").and_then(Value::as_str) {
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
                if let Some(text) = msg.get("last_agent_message").and_then(Value::as_str) {
                    self.summary = non_empty(text).or(self.summary.take());
                }
            }
            Some("agent_message") => {
                self.seen = true;
                if let Some(text) = msg.get("message").and_then(Value::as_str) {
                    self.summary = non_empty(text).or(self.summary.take());
                }
            }
            Some("error") => {
                self.seen = true;
                self.failed = true;
                self.error = msg
                    .get("message")
                    .and_then(Value::as_str)
                    .and_then(non_empty);
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

    fn finish(self) -> Option<RunCost> {
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
        // A failed run's most useful line is why it failed.
        let summary = if self.failed {
            self.error.or(self.summary)
        } else {
            self.summary
        };
        Some(RunCost {
            tokens,
            is_error: self.failed,
            summary,
            source: CostSource::CodexJson,
            ..RunCost::default()
        })
    }
}

/// A dollar figure: a finite, non-negative number.
fn usd(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite() && *x >= 0.0)
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUDE_JSON: &str = include_str!("../../fixtures/cli-output/claude-json.json");
    const CLAUDE_JSON_ERROR: &str =
        include_str!("../../fixtures/cli-output/claude-json-error.json");
    const CLAUDE_STREAM: &str = include_str!("../../fixtures/cli-output/claude-stream.ndjson");
    const CODEX_EXEC: &str = include_str!("../../fixtures/cli-output/codex-exec.ndjson");
    const CODEX_FAILED: &str = include_str!("../../fixtures/cli-output/codex-failed.ndjson");
    const CODEX_LEGACY: &str = include_str!("../../fixtures/cli-output/codex-legacy.ndjson");
    const NOISY_PREFIX: &str = include_str!("../../fixtures/cli-output/noisy-prefix.txt");
    const MALFORMED: &str = include_str!("../../fixtures/cli-output/malformed.txt");
    const GARBAGE: &[u8] = include_bytes!("../../fixtures/cli-output/binary-garbage.bin");

    fn tokens(input: u64, output: u64) -> Option<Tokens> {
        Some(Tokens { input, output })
    }

    fn pricing() -> Pricing {
        let mut p = Pricing::new();
        p.insert(
            "gpt-5-codex".into(),
            ModelPrice {
                input_per_m_tok: 1.25,
                output_per_m_tok: 10.0,
            },
        );
        p
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn model_price_uses_the_documented_keys() {
        let price = ModelPrice {
            input_per_m_tok: 3.0,
            output_per_m_tok: 15.0,
        };
        let json = serde_json::to_string(&price).unwrap();
        assert_eq!(json, r#"{"inputPerMTok":3.0,"outputPerMTok":15.0}"#);
        let back: ModelPrice = serde_json::from_str(&json).unwrap();
        assert_eq!(back, price);
        assert!(serde_json::from_str::<ModelPrice>(
            r#"{"inputPerMTok":3,"outputPerMTok":15,"cachedPerMTok":1}"#
        )
        .is_err());
    }

    #[test]
    fn claude_json_result() {
        let run = from_stdout(CLAUDE_JSON.as_bytes()).unwrap();
        assert_eq!(run.source, CostSource::ClaudeJson);
        assert!(run.known);
        assert!(close(run.cost_usd, 0.4127305));
        assert!(!run.is_error);
        assert_eq!(run.num_turns, Some(12));
        // 38 + 21404 cache writes + 310552 cache reads.
        assert_eq!(run.tokens, tokens(331_994, 4821));
        assert_eq!(
            run.summary.as_deref(),
            Some("Fixed the off-by-one in src/ui/list.rs and added a regression test; cargo test passes.")
        );
    }

    #[test]
    fn claude_json_error_result() {
        let run = from_stdout(CLAUDE_JSON_ERROR.as_bytes()).unwrap();
        assert!(run.is_error);
        assert!(run.known);
        assert!(close(run.cost_usd, 1.2034));
        assert_eq!(run.num_turns, Some(31));
        assert_eq!(run.tokens, tokens(112 + 40_210 + 1_203_340, 15_003));
        assert_eq!(run.summary.as_deref(), Some("error_max_turns"));
    }

    #[test]
    fn claude_error_from_subtype_alone_and_old_cost_field() {
        let line =
            r#"{"type":"result","subtype":"error_during_execution","cost_usd":0.05,"num_turns":1}"#;
        let run = from_stdout(line.as_bytes()).unwrap();
        assert!(run.is_error);
        assert!(close(run.cost_usd, 0.05));
        assert!(run.known);
    }

    #[test]
    fn claude_stream_takes_the_last_result() {
        let run = from_stdout(CLAUDE_STREAM.as_bytes()).unwrap();
        assert_eq!(run.source, CostSource::ClaudeStream);
        assert!(close(run.cost_usd, 0.18832));
        assert_eq!(run.num_turns, Some(7));
        assert_eq!(run.tokens, tokens(22 + 10_744 + 86_420, 2210));

        // A second result after the first (a wrapper that ran claude twice): the last one is
        // what the run ended with.
        let twice = format!("{CLAUDE_STREAM}{CLAUDE_JSON}");
        let run = from_stdout(twice.as_bytes()).unwrap();
        assert!(close(run.cost_usd, 0.4127305));
    }

    #[test]
    fn claude_stream_cut_at_the_front_still_finds_the_result() {
        let cut = CLAUDE_STREAM.get(700..).unwrap();
        let run = from_stdout(cut.as_bytes()).unwrap();
        assert!(close(run.cost_usd, 0.18832));
    }

    #[test]
    fn noisy_prefix_before_a_claude_result() {
        let run = from_stdout(NOISY_PREFIX.as_bytes()).unwrap();
        assert_eq!(run.source, CostSource::ClaudeJson);
        assert!(close(run.cost_usd, 0.0213));
        assert_eq!(run.tokens, tokens(9 + 14_210, 311));
        assert_eq!(
            run.summary.as_deref(),
            Some("Nothing to change: the docs already match.")
        );
    }

    #[test]
    fn pretty_printed_result_spanning_lines() {
        let pretty = "log line\n{\n  \"type\": \"result\",\n  \"usage\": {\n    \"input_tokens\": 5,\n    \"output_tokens\": 6\n  },\n  \"total_cost_usd\": 0.25\n}\n";
        let run = from_stdout(pretty.as_bytes()).unwrap();
        assert!(close(run.cost_usd, 0.25));
        assert_eq!(run.tokens, tokens(5, 6));
    }

    #[test]
    fn codex_exec_sums_turns() {
        let run = from_stdout(CODEX_EXEC.as_bytes()).unwrap();
        assert_eq!(run.source, CostSource::CodexJson);
        assert!(!run.known);
        assert_eq!(run.cost_usd, 0.0);
        assert!(!run.is_error);
        assert_eq!(run.tokens, tokens(26_549 + 8120, 1590 + 210));
        assert_eq!(run.summary.as_deref(), Some("Also updated the changelog."));
    }

    #[test]
    fn codex_failed_turn_is_an_error() {
        let run = from_stdout(CODEX_FAILED.as_bytes()).unwrap();
        assert!(run.is_error);
        assert_eq!(run.tokens, None);
        assert_eq!(
            run.summary.as_deref(),
            Some("stream disconnected before completion: Rate limit reached for gpt-5-codex")
        );
    }

    #[test]
    fn codex_error_then_completed_turn_recovered() {
        let text = concat!(
            r#"{"type":"turn.started"}"#,
            "\n",
            r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":2}}"#,
            "\n"
        );
        let run = from_stdout(text.as_bytes()).unwrap();
        assert!(!run.is_error);
        assert_eq!(run.tokens, tokens(10, 2));

        let ends_in_error = format!("{text}{}\n", r#"{"type":"error","message":"boom"}"#);
        let run = from_stdout(ends_in_error.as_bytes()).unwrap();
        assert!(run.is_error);
        assert_eq!(run.summary.as_deref(), Some("boom"));
    }

    #[test]
    fn codex_legacy_protocol() {
        let run = from_stdout(CODEX_LEGACY.as_bytes()).unwrap();
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
        assert_eq!(
            from_stdout(text.as_bytes()).unwrap().tokens,
            tokens(250, 19)
        );
    }

    #[test]
    fn unrecognised_output_is_none() {
        assert_eq!(from_stdout(b""), None);
        assert_eq!(from_stdout(b"All done.\nChanged 3 files.\n"), None);
        assert_eq!(from_stdout(MALFORMED.as_bytes()), None);
        assert_eq!(from_stdout(GARBAGE), None);
        // Some other tool's result line is not a Claude result.
        assert_eq!(from_stdout(br#"{"type":"result","ok":true}"#), None);
        // A negative or non-numeric cost is no cost.
        let run =
            from_stdout(br#"{"type":"result","is_error":false,"total_cost_usd":-1}"#).unwrap();
        assert!(!run.known);
        let run = from_stdout(br#"{"type":"result","total_cost_usd":"0.3"}"#).unwrap();
        assert!(!run.known);
    }

    #[test]
    fn every_prefix_and_suffix_of_the_fixtures_is_safe() {
        // The tail may be cut anywhere, including inside a UTF-8 sequence.
        for fixture in [CLAUDE_STREAM, CODEX_EXEC, NOISY_PREFIX] {
            let bytes = fixture.as_bytes();
            for i in 0..bytes.len() {
                let _ = from_stdout(bytes.get(i..).unwrap_or_default());
                let _ = from_stdout(bytes.get(..i).unwrap_or_default());
            }
        }
    }

    #[test]
    fn result_file_fields() {
        let run = from_result_file(
            r#"{"costUsd": 0.12, "tokens": {"input": 1000, "output": 200}, "summary": " did it ", "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(run.source, CostSource::ResultFile);
        assert!(run.known);
        assert!(close(run.cost_usd, 0.12));
        assert_eq!(run.tokens, tokens(1000, 200));
        assert_eq!(run.summary.as_deref(), Some("did it"));

        let run = from_result_file(r#"{"summary": "no cost here"}"#).unwrap();
        assert!(!run.known);
        assert_eq!(from_result_file("{}").unwrap().tokens, None);
        assert_eq!(
            from_result_file(r#"{"tokens": {"output": 5}}"#)
                .unwrap()
                .tokens,
            tokens(0, 5)
        );
    }

    #[test]
    fn bad_result_files_are_errors() {
        for bad in [
            "",
            "not json",
            "[1, 2]",
            "0.5",
            r#"{"costUsd": -0.1}"#,
            r#"{"costUsd": "0.1"}"#,
            r#"{"costUsd": true}"#,
            r#"{"tokens": 5}"#,
            r#"{"tokens": {"input": -3}}"#,
            r#"{"summary": 7}"#,
            r#"{"costUsd": 0.1"#,
        ] {
            assert!(from_result_file(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = from_result_file(r#"{"costUsd": -2}"#).unwrap_err();
        assert!(err.contains("costUsd"), "{err}");
    }

    #[test]
    fn assess_prefers_the_result_file() {
        let run = assess(
            Some(r#"{"costUsd": 0.5, "summary": "from file"}"#),
            CLAUDE_JSON.as_bytes(),
            "sonnet",
            &Pricing::new(),
        );
        assert_eq!(run.source, CostSource::ResultFile);
        assert!(close(run.cost_usd, 0.5));
        assert_eq!(run.summary.as_deref(), Some("from file"));
        // Fields the file lacks come from stdout.
        assert_eq!(run.tokens, tokens(331_994, 4821));
        assert_eq!(run.num_turns, Some(12));
    }

    #[test]
    fn assess_falls_back_to_stdout_when_the_file_has_no_cost_or_is_bad() {
        let run = assess(
            Some(r#"{"summary": "from file"}"#),
            CLAUDE_JSON_ERROR.as_bytes(),
            "",
            &Pricing::new(),
        );
        assert_eq!(run.source, CostSource::ClaudeJson);
        assert!(close(run.cost_usd, 1.2034));
        assert!(run.is_error);
        assert_eq!(run.summary.as_deref(), Some("from file"));

        let run = assess(Some("{oops"), CLAUDE_STREAM.as_bytes(), "", &Pricing::new());
        assert_eq!(run.source, CostSource::ClaudeStream);
        assert!(close(run.cost_usd, 0.18832));
    }

    #[test]
    fn assess_prices_tokens_when_no_one_printed_a_cost() {
        let run = assess(None, CODEX_EXEC.as_bytes(), "gpt-5-codex", &pricing());
        assert_eq!(run.source, CostSource::Pricing);
        assert!(run.known);
        // 34669 input tokens at $1.25/M + 1800 output tokens at $10/M.
        assert!(close(
            run.cost_usd,
            34_669.0 / 1e6 * 1.25 + 1800.0 / 1e6 * 10.0
        ));
        assert!(close(run.cost_usd, 0.06133625));

        // Tokens from the result file are priced too.
        let run = assess(
            Some(r#"{"tokens": {"input": 2000000, "output": 100000}}"#),
            b"plain text",
            "gpt-5-codex",
            &pricing(),
        );
        assert_eq!(run.source, CostSource::Pricing);
        assert!(close(run.cost_usd, 2.5 + 1.0));
    }

    #[test]
    fn assess_unknown_model_or_no_tokens_is_unknown() {
        let run = assess(None, CODEX_EXEC.as_bytes(), "o3", &pricing());
        assert!(!run.known);
        assert_eq!(run.cost_usd, 0.0);
        assert_eq!(run.source, CostSource::CodexJson);
        assert_eq!(run.tokens, tokens(34_669, 1800));

        let run = assess(None, b"hello\n", "gpt-5-codex", &pricing());
        assert_eq!(run, RunCost::default());

        let run = assess(None, MALFORMED.as_bytes(), "gpt-5-codex", &pricing());
        assert!(!run.known);
        let run = assess(None, GARBAGE, "gpt-5-codex", &pricing());
        assert!(!run.known);
    }

    #[test]
    fn assess_carries_the_codex_error() {
        let run = assess(
            Some(r#"{"costUsd": 0.01}"#),
            CODEX_FAILED.as_bytes(),
            "",
            &pricing(),
        );
        assert!(run.is_error);
        assert!(close(run.cost_usd, 0.01));
    }
}
