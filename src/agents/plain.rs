//! A command orch has no adapter for (a script, a wrapper, a CLI of its own): its output is
//! read in every format orch knows — a wrapper around `claude -p` still gets its cost read —
//! and otherwise it says only how it exited. A run that failed without a format orch knows
//! gives the last line it wrote on stderr (else stdout) as its words, classified like any CLI's
//! ("429 Too Many Requests" from a script is still a rate limit).

use super::scan::non_empty;
use super::{AgentCli, CliKind, Failure, Invocation, Output, Reading};
use crate::roundlog::Cause;

/// How much of the end of stderr is classified (the error is usually the last lines).
const WORDS_TAIL: usize = 2048;

pub struct Plain;

impl AgentCli for Plain {
    fn kind(&self) -> CliKind {
        CliKind::Plain
    }

    fn provider(&self) -> Option<&'static str> {
        None
    }

    fn invocation(&self) -> Invocation {
        Invocation {
            command: r#"["sh", "agents/fake-agent.sh", "--sleep", "1", "--write", "notes/{agent}.md=round {round}", "--cost", "0.02"]"#,
            stdin: false,
            models: r#"["small", "large"]"#,
            comments: &[
                "A bundled fake agent (agents/fake-agent.sh): replace it with your own script or CLI.",
                "A command orch has no adapter for is read in every format it knows; set \"cli\" to choose one.",
            ],
            pricing: None,
        }
    }

    fn read(&self, out: &Output) -> Option<Reading> {
        super::claude::parse(out)
            .or_else(|| super::codex::parse(out))
            .or_else(|| super::gemini::parse(out))
            .or_else(|| super::aider::parse(out))
            .or_else(|| from_words(out))
    }

    fn fix(&self, cause: Cause) -> String {
        match cause {
            Cause::Auth => "check the credentials the agent's command uses (its key variable, in the agent's `env` or where orch runs)".into(),
            Cause::UntrustedFolder => super::gemini::UNTRUSTED_FIX.into(),
            _ => "check the agent's command and its flags".into(),
        }
    }
}

/// A failed run's own words: the last non-empty line of stderr, else of stdout, classified by
/// the tail around it. `None` for a run that exited 0 or wrote nothing.
pub(super) fn from_words(out: &Output) -> Option<Reading> {
    if matches!(out.exit_code, Some(0) | None) {
        return None;
    }
    let (line, tail) = [out.stderr, out.stdout].iter().find_map(|s| {
        let text = String::from_utf8_lossy(s);
        let line = text.lines().rev().find_map(non_empty)?;
        let start = text.len().saturating_sub(WORDS_TAIL);
        let tail = text.get(start..).unwrap_or(&text).to_string();
        Some((line, tail))
    })?;
    let cause = super::classify::cause(&tail, None).unwrap_or(Cause::Exit);
    Some(Reading {
        summary: None,
        failure: Some(Failure::from_words(cause, &line)),
        ..Reading::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stdout: &[u8], stderr: &[u8], exit: Option<i32>) -> Option<Reading> {
        Plain.read(&Output {
            stdout,
            stderr,
            exit_code: exit,
        })
    }

    #[test]
    fn reads_every_known_format() {
        let claude = read(
            include_bytes!("../../fixtures/cli-output/claude-json.json"),
            b"",
            Some(0),
        )
        .unwrap();
        assert!(claude.cost_usd.is_some());
        let codex = read(
            include_bytes!("../../fixtures/cli-output/codex-exec.ndjson"),
            b"",
            Some(0),
        )
        .unwrap();
        assert!(codex.tokens.is_some());
        let gemini = read(
            include_bytes!("../../fixtures/cli-output/gemini-0.61-ok.json"),
            b"",
            Some(0),
        )
        .unwrap();
        assert_eq!(gemini.tokens_by_model.len(), 1);
    }

    #[test]
    fn a_failed_script_gives_its_last_line() {
        let run = read(
            b"working...\n",
            b"step 1\nfatal: cannot reach the server\n\n",
            Some(2),
        )
        .unwrap();
        let f = run.failure.unwrap();
        assert_eq!(f.cause, Cause::Exit);
        assert_eq!(f.error, "fatal: cannot reach the server");
        let run = read(b"", b"HTTP 429 Too Many Requests\n", Some(1)).unwrap();
        assert_eq!(run.failure.unwrap().cause, Cause::RateLimited);
    }

    #[test]
    fn nothing_said_is_nothing() {
        assert_eq!(read(b"All done.\n", b"", Some(0)), None);
        assert_eq!(read(b"", b"", Some(1)), None);
        assert_eq!(
            read(
                include_bytes!("../../fixtures/cli-output/malformed.txt"),
                b"",
                Some(0)
            ),
            None
        );
        assert_eq!(
            read(
                include_bytes!("../../fixtures/cli-output/binary-garbage.bin"),
                b"",
                Some(0)
            ),
            None
        );
        assert_eq!(read(br#"{"type":"result","ok":true}"#, b"", Some(0)), None);
    }

    #[test]
    fn every_prefix_and_suffix_of_the_fixtures_is_safe() {
        // The tail may be cut anywhere, including inside a UTF-8 sequence.
        for fixture in [
            &include_bytes!("../../fixtures/cli-output/claude-stream.ndjson")[..],
            &include_bytes!("../../fixtures/cli-output/codex-exec.ndjson")[..],
            &include_bytes!("../../fixtures/cli-output/noisy-prefix.txt")[..],
            &include_bytes!("../../fixtures/cli-output/gemini-0.61-invalid-key.stderr")[..],
        ] {
            for i in 0..fixture.len() {
                let _ = read(&fixture[i..], &fixture[i..], Some(1));
                let _ = read(&fixture[..i], &fixture[..i], Some(1));
            }
        }
    }
}
