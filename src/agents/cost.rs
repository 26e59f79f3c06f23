//! What an agent run cost (SPEC section 3): the generic part, whatever the CLI.
//!
//! Three sources, in order of trust: the JSON the agent itself wrote to `ORCH_RESULT_FILE`
//! ([`from_result_file`]), the cost the CLI printed (its adapter's [`Reading`]: Claude's
//! `total_cost_usd`, aider's session cost), and last the tokens priced with the mission's
//! `pricing` table (Codex, Gemini: per model when the CLI splits them). [`assess`] applies that
//! precedence.
//!
//! Token counts mean "every prompt token the model read, cached or not" for input and "every token
//! it wrote" for output; the adapters count them so. Pricing those totals at the plain input rate
//! over-estimates cached runs, which is the safe side for a budget; CLIs that print their own cost
//! are not priced at all.

use serde_json::Value;

use super::adapter::{Failure, Reading};
use super::scan::{non_empty, usd};
use crate::roundlog::{PermissionDenial, Tokens};

pub use super::adapter::CostSource;
/// The mission's `pricing` table is the data model's; priced here.
pub use crate::mission::{ModelPrice, Pricing};

/// What orch learned about one agent run's cost and outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunCost {
    pub cost_usd: f64,
    /// False when no source gave a cost; `cost_usd` is then 0 and must not be read as "free".
    pub known: bool,
    pub tokens: Option<Tokens>,
    /// The CLI said the run failed, and why (Claude `is_error`, Codex `turn.failed`, Gemini's
    /// error object, a failed script's last words).
    pub failure: Option<Failure>,
    pub num_turns: Option<u64>,
    pub summary: Option<String>,
    pub session_id: Option<String>,
    pub permission_denials: Vec<PermissionDenial>,
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

/// The cost of one run, from the best source available (SPEC section 3): the result file's
/// `costUsd`, else the cost the CLI printed, else tokens × `pricing` (per model when the CLI
/// split them, else at `model`'s price), else 0 and unknown. Tokens and summary are taken from
/// whichever source has them (the result file first, since the agent wrote it on purpose); the
/// failure, turns, session and denials come from the CLI. A bad result file is logged and
/// ignored, never fatal: the run's work matters more than its bill.
pub fn assess(
    result_file: Option<&str>,
    printed: Option<Reading>,
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
    let printed = printed.unwrap_or_default();
    let mut run = RunCost {
        tokens: file
            .as_ref()
            .and_then(|f| f.tokens.clone())
            .or_else(|| printed.tokens.clone()),
        summary: file
            .as_ref()
            .and_then(|f| f.summary.clone())
            .or_else(|| printed.summary.clone()),
        num_turns: printed.num_turns,
        failure: printed.failure.clone(),
        session_id: printed.session_id.clone(),
        permission_denials: printed.permission_denials.clone(),
        ..RunCost::default()
    };
    let file_tokens = file.as_ref().is_some_and(|f| f.tokens.is_some());
    if let Some(f) = file.as_ref().filter(|f| f.known) {
        run.cost_usd = f.cost_usd;
        run.known = true;
        run.source = CostSource::ResultFile;
    } else if let Some(cost) = printed.cost_usd {
        run.cost_usd = cost;
        run.known = true;
        run.source = printed.source;
    } else if let Some(cost) = (!file_tokens)
        .then(|| price_by_model(&printed.tokens_by_model, pricing))
        .flatten()
    {
        run.cost_usd = cost;
        run.known = true;
        run.source = CostSource::Pricing;
    } else if let (Some(tokens), Some(price)) = (&run.tokens, pricing.get(model)) {
        run.cost_usd = price_tokens(tokens, price);
        run.known = true;
        run.source = CostSource::Pricing;
    } else if file.is_some() {
        run.source = CostSource::ResultFile;
    } else {
        // Cost unknown, but say where the tokens or summary came from.
        run.source = printed.source;
    }
    run
}

/// Each model's tokens at its own price; `None` unless every model has one (a partial sum would
/// pass for the whole bill).
fn price_by_model(by_model: &[(String, Tokens)], pricing: &Pricing) -> Option<f64> {
    if by_model.is_empty() {
        return None;
    }
    by_model
        .iter()
        .map(|(m, t)| pricing.get(m).map(|p| price_tokens(t, p)))
        .sum()
}

/// USD for `tokens` at `price` (per million tokens).
pub fn price_tokens(tokens: &Tokens, price: &ModelPrice) -> f64 {
    tokens.input as f64 / 1e6 * price.input_per_m_tok
        + tokens.output as f64 / 1e6 * price.output_per_m_tok
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::agents::{AgentCli, Output};
    use crate::roundlog::Cause;

    const CLAUDE_JSON: &str = include_str!("../../fixtures/cli-output/claude-json.json");
    const CLAUDE_JSON_ERROR: &str =
        include_str!("../../fixtures/cli-output/claude-json-error.json");
    const CLAUDE_STREAM: &str = include_str!("../../fixtures/cli-output/claude-stream.ndjson");
    const CODEX_EXEC: &str = include_str!("../../fixtures/cli-output/codex-exec.ndjson");
    const CODEX_FAILED: &str = include_str!("../../fixtures/cli-output/codex-failed.ndjson");
    const GEMINI_OK: &str = include_str!("../../fixtures/cli-output/gemini-0.61-ok.json");
    const MALFORMED: &str = include_str!("../../fixtures/cli-output/malformed.txt");
    const GARBAGE: &[u8] = include_bytes!("../../fixtures/cli-output/binary-garbage.bin");

    /// What the plain adapter (which reads every known format) makes of `stdout`.
    fn printed(stdout: &[u8]) -> Option<Reading> {
        crate::agents::PLAIN.read(&Output {
            stdout,
            stderr: b"",
            exit_code: Some(0),
        })
    }

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
            printed(CLAUDE_JSON.as_bytes()),
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
            printed(CLAUDE_JSON_ERROR.as_bytes()),
            "",
            &Pricing::new(),
        );
        assert_eq!(run.source, CostSource::ClaudeJson);
        assert!(close(run.cost_usd, 1.2034));
        assert!(run.failure.is_some());
        assert_eq!(run.summary.as_deref(), Some("from file"));

        let run = assess(
            Some("{oops"),
            printed(CLAUDE_STREAM.as_bytes()),
            "",
            &Pricing::new(),
        );
        assert_eq!(run.source, CostSource::ClaudeStream);
        assert!(close(run.cost_usd, 0.18832));
    }

    #[test]
    fn assess_prices_tokens_when_no_one_printed_a_cost() {
        let run = assess(
            None,
            printed(CODEX_EXEC.as_bytes()),
            "gpt-5-codex",
            &pricing(),
        );
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
            printed(b"plain text"),
            "gpt-5-codex",
            &pricing(),
        );
        assert_eq!(run.source, CostSource::Pricing);
        assert!(close(run.cost_usd, 2.5 + 1.0));
    }

    #[test]
    fn assess_unknown_model_or_no_tokens_is_unknown() {
        let run = assess(None, printed(CODEX_EXEC.as_bytes()), "o3", &pricing());
        assert!(!run.known);
        assert_eq!(run.cost_usd, 0.0);
        assert_eq!(run.source, CostSource::CodexJson);
        assert_eq!(run.tokens, tokens(34_669, 1800));

        let run = assess(None, printed(b"hello\n"), "gpt-5-codex", &pricing());
        assert_eq!(run, RunCost::default());

        let run = assess(
            None,
            printed(MALFORMED.as_bytes()),
            "gpt-5-codex",
            &pricing(),
        );
        assert!(!run.known);
        let run = assess(None, printed(GARBAGE), "gpt-5-codex", &pricing());
        assert!(!run.known);
    }

    #[test]
    fn assess_carries_the_codex_error() {
        let run = assess(
            Some(r#"{"costUsd": 0.01}"#),
            printed(CODEX_FAILED.as_bytes()),
            "",
            &pricing(),
        );
        assert_eq!(run.failure.unwrap().cause, Cause::RateLimited);
        assert!(close(run.cost_usd, 0.01));
    }

    #[test]
    fn assess_prices_each_gemini_model_at_its_own_price() {
        let mut p = Pricing::new();
        p.insert(
            "gemini-2.5-flash".into(),
            ModelPrice {
                input_per_m_tok: 0.30,
                output_per_m_tok: 2.50,
            },
        );
        // The agent's model is another name: the per-model figures decide.
        let run = assess(None, printed(GEMINI_OK.as_bytes()), "flash", &p);
        assert_eq!(run.source, CostSource::Pricing);
        assert!(close(
            run.cost_usd,
            2400.0 / 1e6 * 0.30 + 160.0 / 1e6 * 2.50
        ));
        // No price for its model: unknown, not a partial bill.
        let run = assess(None, printed(GEMINI_OK.as_bytes()), "", &pricing());
        assert!(!run.known);
        assert_eq!(run.source, CostSource::GeminiJson);
    }
}
