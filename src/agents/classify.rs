//! From an agent CLI's error words (and the HTTP status, when it gives one) to a [`Cause`], and
//! the words cut to one bounded line for the console, the events and the round log.
//!
//! The adapters find the words (Claude's `result`, Codex's `turn.failed` message, Gemini's
//! stderr `error.message`, aider's litellm line); this module is what they share, because the
//! providers' messages are alike whatever CLI relays them ("429 Too Many Requests",
//! "overloaded_error", "invalid x-api-key"). Order matters: a usage limit often arrives as a 429,
//! and a spent balance as a 429 too ("You exceeded your current quota, please check your plan
//! and billing details"), where waiting helps nobody.

use crate::roundlog::Cause;

/// What makes Gemini CLI work in the folder orch gives it (a worktree or scratch folder it
/// has never seen, so never trusted): the fix for [`Cause::UntrustedFolder`], which only its
/// words name, told to the Gemini adapter's agents and to a wrapper around it alike.
pub const UNTRUSTED_FIX: &str = "add --skip-trust to the agent's `command` (as `orch init --agent gemini` writes it), or set GEMINI_CLI_TRUST_WORKSPACE=true in its `env`";

/// The most of the CLI's words kept in `error`.
pub const MAX_ERROR_CHARS: usize = 300;

/// The words on one line: ANSI escapes out, every run of whitespace (newlines too) one blank,
/// cut at [`MAX_ERROR_CHARS`] characters with an ellipsis.
pub fn one_line(words: &str) -> String {
    let mut out = String::new();
    let mut chars = words.chars().peekable();
    let mut blank = false;
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        if c.is_whitespace() || c.is_control() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push(' ');
            blank = false;
        }
        out.push(c);
    }
    if out.chars().count() > MAX_ERROR_CHARS {
        let cut: String = out.chars().take(MAX_ERROR_CHARS - 1).collect();
        out = format!("{}…", cut.trim_end());
    }
    out
}

/// The cause the words (and `status`) name; `None` when they name none.
pub fn cause(words: &str, status: Option<u16>) -> Option<Cause> {
    let w = words.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| w.contains(n));
    // Gemini CLI in a folder it does not trust (exit 55): "Gemini CLI is not running in a
    // trusted directory. To proceed, either use `--skip-trust`, ...".
    if has(&["not running in a trusted directory"]) {
        return Some(Cause::UntrustedFolder);
    }
    // The CLI's own cap on turns (before the status scan: "(400)" turns is no HTTP 400).
    if has(&[
        "reached maximum number of turns",
        "reached max session turns",
    ]) {
        return Some(Cause::MaxTurns);
    }
    // A subscription's window: waiting until it resets helps.
    if has(&[
        "usage limit",
        "session limit",
        "hit your limit",
        "weekly limit",
        "limit reached|",
        "out of extra usage",
    ]) {
        return Some(Cause::UsageLimit);
    }
    // Money, not time: no wait helps (OpenAI sends these as 429s).
    if has(&[
        "plan and billing",
        "insufficient_quota",
        "credit balance",
        "billing details",
    ]) {
        return Some(Cause::Auth);
    }
    // A bad key named as such, whatever status carries it (Google sends an invalid key as a
    // 400 INVALID_ARGUMENT).
    if has(&[
        "invalid api key",
        "invalid x-api-key",
        "api key not valid",
        "api_key_invalid",
        "authentication_error",
        "authenticationerror",
        "please run /login",
        "not logged in",
        "oauth token has expired",
    ]) {
        return Some(Cause::Auth);
    }
    let status = status.or_else(|| status_in(&w));
    match status {
        Some(429) => return Some(Cause::RateLimited),
        Some(500 | 502 | 503 | 504 | 529) => return Some(Cause::Overloaded),
        Some(401 | 403) => return Some(Cause::Auth),
        Some(400 | 404 | 413 | 422) => return Some(Cause::BadRequest),
        _ => {}
    }
    if has(&[
        "rate limit",
        "rate_limit",
        "ratelimit",
        "too many requests",
        "quota exceeded",
        "resource_exhausted",
        "resource has been exhausted",
    ]) {
        return Some(Cause::RateLimited);
    }
    if has(&[
        "overloaded",
        "high demand",
        "temporarily unavailable",
        "service unavailable",
        "internal server error",
        "internalservererror",
        "serviceunavailable",
        "server_error",
        "\"unavailable\"",
    ]) {
        return Some(Cause::Overloaded);
    }
    if has(&["unauthorized", "auth method", "permission_error", "api key"]) {
        return Some(Cause::Auth);
    }
    if has(&[
        "invalid_request_error",
        "badrequesterror",
        "bad request",
        "not_found_error",
        "model not found",
        "unknown model",
        "invalid model",
        "model_not_found",
    ]) {
        return Some(Cause::BadRequest);
    }
    None
}

/// An HTTP error status named in the words: a standalone three-digit number that providers use
/// for errors ("API Error: 429", "(529)", "last status: 429 Too Many Requests").
fn status_in(w: &str) -> Option<u16> {
    const KNOWN: [u16; 10] = [400, 401, 403, 404, 429, 500, 502, 503, 504, 529];
    let b = w.as_bytes();
    let mut i = 0;
    while i + 3 <= b.len() {
        let digits = b[i..i + 3].iter().all(u8::is_ascii_digit);
        let before = i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'.';
        let after = i + 3 == b.len() || !b[i + 3].is_ascii_alphanumeric() && b[i + 3] != b'.';
        if digits && before && after {
            let n: u16 = w[i..i + 3].parse().unwrap_or(0);
            if KNOWN.contains(&n) {
                return Some(n);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_and_bounds() {
        assert_eq!(one_line("  a\n\n  b\tc  "), "a b c");
        assert_eq!(one_line("\u{1b}[31mred\u{1b}[0m text"), "red text");
        let long = "x".repeat(1000);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn the_texts_quoted_in_the_issue() {
        // Claude Code's result text on a 429 and a 529 (issue 17), Codex's turn.failed message.
        let c = |w: &str| cause(w, None);
        assert_eq!(
            c("API Error: Request rejected (429) · Rate limited"),
            Some(Cause::RateLimited)
        );
        assert_eq!(
            c("API Error: 529 Overloaded. This is a server-side issue"),
            Some(Cause::Overloaded)
        );
        assert_eq!(
            c("exceeded retry limit, last status: 429 Too Many Requests"),
            Some(Cause::RateLimited)
        );
        assert_eq!(
            c("You've hit your session limit · resets 8pm (America/New_York)"),
            Some(Cause::UsageLimit)
        );
        assert_eq!(
            c("Claude AI usage limit reached|1760000000"),
            Some(Cause::UsageLimit)
        );
        assert_eq!(
            c("You've hit your usage limit. Upgrade to Pro or try again at Apr 16th, 2026 12:04 AM."),
            Some(Cause::UsageLimit)
        );
        assert_eq!(
            c("Quota exceeded. Check your plan and billing details."),
            Some(Cause::Auth)
        );
        assert_eq!(
            c("Invalid API key · Fix external API key"),
            Some(Cause::Auth)
        );
    }

    #[test]
    fn statuses_decide_before_words() {
        assert_eq!(cause("whatever", Some(429)), Some(Cause::RateLimited));
        assert_eq!(cause("whatever", Some(500)), Some(Cause::Overloaded));
        assert_eq!(cause("whatever", Some(401)), Some(Cause::Auth));
        assert_eq!(cause("whatever", Some(400)), Some(Cause::BadRequest));
        assert_eq!(cause("whatever", Some(418)), None);
        // An invalid key is auth even as a 400 (Gemini's API_KEY_INVALID).
        assert_eq!(
            cause("API key not valid. Please pass a valid API key.", Some(400)),
            Some(Cause::Auth)
        );
        // But a usage limit or a spent balance wins over the 429 it comes with.
        assert_eq!(
            cause("You've hit your usage limit", Some(429)),
            Some(Cause::UsageLimit)
        );
        assert_eq!(
            cause(
                "You exceeded your current quota, please check your plan and billing details",
                Some(429)
            ),
            Some(Cause::Auth)
        );
    }

    #[test]
    fn numbers_that_are_not_statuses() {
        assert_eq!(status_in("exited with status 1"), None);
        assert_eq!(status_in("wrote 4290 lines"), None);
        assert_eq!(status_in("version 1.429.0"), None);
        assert_eq!(status_in("api error: 400 {\"type\":\"error\"}"), Some(400));
        assert_eq!(cause("done in 12 steps", None), None);
        assert_eq!(cause("", None), None);
    }
}
