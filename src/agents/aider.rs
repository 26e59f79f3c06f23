//! aider (`aider --message-file F --yes-always`): plain text. After each model reply it prints
//! "Tokens: 2.3k sent, 156 received. Cost: $0.0094 message, $0.0094 session." (counts with `k`
//! and `M` suffixes; cache writes and hits listed between them when the provider reports them);
//! the last `session` figure is the run's cost, since one invocation is one session. API
//! failures come from litellm as lines naming the exception class
//! ("litellm.RateLimitError: ...", "litellm.AuthenticationError: ..."); aider retries
//! transient ones itself and reports the last.
//!
//! Read as aider 0.86.1 prints it (recorded against the mock model API:
//! `fixtures/cli-output/real/aider-*`): it exits 0 whatever the API said, so the error lines are
//! all there is; they are wrapped at 80 columns, the first holding the exception's name.

use super::adapter::{AgentCli, CostSource, Failure, Invocation, Output, Reading, SandboxNeeds};
use super::classify;
use super::progress::Activity;
use crate::roundlog::{Cause, Tokens};

pub struct Aider;

impl AgentCli for Aider {
    fn name(&self) -> &'static str {
        "aider"
    }

    fn programs(&self) -> &'static [&'static str] {
        &["aider", "aider-chat"]
    }

    fn provider(&self) -> Option<&'static str> {
        // aider talks to whichever provider the model names; only the agent itself waits.
        None
    }

    fn sandbox_needs(&self) -> SandboxNeeds {
        SandboxNeeds {
            // Its caches and analytics id; its history files live in the repository.
            home_state: &[".aider"],
            state_var: None,
            base_url_vars: &[
                "OPENAI_API_BASE",
                "OPENAI_BASE_URL",
                "ANTHROPIC_BASE_URL",
                "OLLAMA_API_BASE",
            ],
            // The model's provider is known only from the model's name: the two aider
            // defaults to; anything else goes in allowHosts.
            default_hosts: &["api.openai.com:443", "api.anthropic.com:443"],
        }
    }

    fn invocation(&self) -> Invocation {
        Invocation {
            command: r#"["aider", "--model", "{model}", "--yes-always", "--no-auto-commits", "--no-stream", "--no-pretty", "--no-check-update", "--message-file", "{prompt_file}"]"#,
            stdin: false,
            models: r#"["sonnet", "opus"]"#,
            comments: &[
                "aider: one message from the prompt file, no questions (--yes-always: it may run the shell",
                "commands it proposes), no commits of its own (orch commits). Its \"Tokens: ... Cost: $X message,",
                "$Y session.\" line gives the cost. The provider's key comes from its variable (ANTHROPIC_API_KEY, ...).",
            ],
            pricing: None,
            inherit_env: &["ANTHROPIC_*", "OPENAI_*", "GEMINI_*", "AIDER_*"],
            budget_comment: None,
            bundled_agent: false,
        }
    }

    fn parse(&self, out: &Output) -> Option<Reading> {
        parse(out)
    }

    /// Recorded under the sandbox (tests/integration/real_cli.rs): in the shared tree its
    /// `git add` of a new file fails on the read-only git folder and it gives the file up.
    fn needs_worktree(&self) -> Option<&'static str> {
        Some("aider `git add`s each file it creates, which the sandbox refuses in the shared tree")
    }

    /// A "Tokens: ..." line is the session's cost so far (it comes after each model reply);
    /// every other line is plain output.
    fn progress(&self, line: &[u8]) -> Vec<Activity> {
        let text = String::from_utf8_lossy(line);
        let Some(rest) = text.trim().strip_prefix("Tokens: ") else {
            return Vec::new();
        };
        match token_line(rest) {
            (_, Some(session)) => vec![Activity::Cost(session)],
            (tokens, None) => vec![Activity::Tokens {
                message: None,
                tokens,
            }],
        }
    }

    fn fix(&self, cause: Cause) -> String {
        match cause {
            Cause::Auth => "set the model provider's key variable (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY, ...) where orch runs or in the agent's `env`, or pass --api-key PROVIDER=KEY in its command".into(),
            Cause::BadRequest => "check the agent's --model (a name litellm knows, e.g. anthropic/claude-sonnet-4-5) and the other flags of its `command`".into(),
            _ => "check the agent's command".into(),
        }
    }
}

/// The token and cost lines and the last API error, from stdout and stderr.
pub fn parse(out: &Output) -> Option<Reading> {
    let mut reading = Reading {
        source: CostSource::AiderText,
        ..Reading::default()
    };
    let mut seen = false;
    let mut tokens = Tokens::default();
    let mut last_error: Option<String> = None;
    for stream in [out.stdout, out.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("Tokens: ") {
                seen = true;
                let (t, cost) = token_line(rest);
                tokens.input = tokens.input.saturating_add(t.input);
                tokens.output = tokens.output.saturating_add(t.output);
                if cost.is_some() {
                    reading.cost_usd = cost;
                }
                // A reply came after the error: aider recovered from it.
                last_error = None;
            } else if line.contains("litellm.") && line.contains("Error") {
                seen = true;
                last_error = Some(line.to_string());
            }
        }
    }
    if !seen {
        return None;
    }
    if tokens != Tokens::default() {
        reading.tokens = Some(tokens);
    }
    if let Some(e) = last_error {
        let words = e.split_once("litellm.").map_or(e.as_str(), |(_, w)| w);
        reading.failure = Some(Failure::classify_or_exit(words, None));
        reading.summary = Some(classify::one_line(words));
    }
    Some(reading)
}

/// "2.3k sent, 1.1k cache write, 156 received. Cost: $0.0094 message, $0.0094 session."
fn token_line(rest: &str) -> (Tokens, Option<f64>) {
    let (counts, cost) = match rest.split_once("Cost:") {
        Some((c, k)) => (c, Some(k)),
        None => (rest, None),
    };
    let mut t = Tokens::default();
    for part in counts.split(',') {
        let part = part.trim().trim_end_matches('.');
        let Some((n, what)) = part.split_once(' ') else {
            continue;
        };
        let Some(n) = count(n) else { continue };
        match what.trim() {
            "sent" | "cache write" | "cache hit" => t.input = t.input.saturating_add(n),
            "received" => t.output = t.output.saturating_add(n),
            _ => {}
        }
    }
    let session = cost.and_then(|c| {
        c.split(',')
            .find(|p| p.contains("session"))
            .and_then(|p| p.trim().strip_prefix('$'))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|x| x.is_finite() && *x >= 0.0)
    });
    (t, session)
}

/// "156", "2.3k", "1.2M".
fn count(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'M' | 'm' => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| (n * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stdout: &str, exit: i32) -> Option<Reading> {
        Aider.read(&Output {
            stdout: stdout.as_bytes(),
            stderr: b"",
            exit_code: Some(exit),
        })
    }

    #[test]
    fn the_cost_line_quoted_in_the_issue() {
        let out = "Applied edit to src/app.py\nTokens: 2.3k sent, 156 received. Cost: $0.0094 message, $0.0094 session.\n";
        let run = read(out, 0).unwrap();
        assert_eq!(run.cost_usd, Some(0.0094));
        assert_eq!(
            run.tokens,
            Some(Tokens {
                input: 2300,
                output: 156
            })
        );
        assert!(run.failure.is_none());
        assert_eq!(run.source, CostSource::AiderText);
    }

    #[test]
    fn several_replies_sum_tokens_and_take_the_last_session_cost() {
        let out = "Tokens: 1k sent, 1.1k cache write, 10 received. Cost: $0.01 message, $0.01 session.\n\
                   Tokens: 2k sent, 1k cache hit, 20 received. Cost: $0.02 message, $0.03 session.\n";
        let run = read(out, 0).unwrap();
        assert_eq!(run.cost_usd, Some(0.03));
        assert_eq!(
            run.tokens,
            Some(Tokens {
                input: 5100,
                output: 30
            })
        );
    }

    #[test]
    fn litellm_errors_name_the_cause() {
        let err = |line: &str| read(line, 1).unwrap().failure.unwrap();
        assert_eq!(
            err("litellm.RateLimitError: AnthropicException - rate_limit_error").cause,
            Cause::RateLimited
        );
        assert_eq!(
            err("litellm.AuthenticationError: AnthropicException - invalid x-api-key").cause,
            Cause::Auth
        );
        assert_eq!(
            err("litellm.InternalServerError: AnthropicException - Overloaded").cause,
            Cause::Overloaded
        );
        assert_eq!(
            err("litellm.BadRequestError: model not found").cause,
            Cause::BadRequest
        );
        // A reply after the error: recovered.
        let run = read(
            "litellm.RateLimitError: slow down\nRetrying in 0.2 seconds...\nTokens: 10 sent, 2 received. Cost: $0.001 message, $0.001 session.\n",
            0,
        )
        .unwrap();
        assert!(run.failure.is_none());
    }

    #[test]
    fn plain_text_without_the_lines_is_nothing() {
        assert_eq!(read("Added src/app.py to the chat.\n", 0), None);
    }
}
