//! A command orch has no adapter for (a script, a wrapper, a CLI of its own): its output is
//! read in every format orch knows — a wrapper around `claude -p` still gets its cost read —
//! and otherwise it says only how it exited. A run that failed without a format orch knows
//! gives the last line it wrote on stderr (else stdout) as its words, classified like any CLI's
//! ("429 Too Many Requests" from a script is still a rate limit).
//!
//! The formats it tries are handed to it (`agents::PLAIN` gets the registry, `agents::ADAPTERS`),
//! so this file names no other adapter and a new one is tried without a line here.

use super::adapter::{AgentCli, Invocation, Output, Reading};
use super::classify;
use super::progress::Activity;
use crate::roundlog::Cause;

pub struct Plain {
    /// The adapters whose output formats are tried, in order.
    pub formats: &'static [&'static dyn AgentCli],
}

impl AgentCli for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    /// None: the plain adapter is what a program no adapter names gets.
    fn programs(&self) -> &'static [&'static str] {
        &[]
    }

    /// `orch init --agent script` writes the bundled fake agent, which this adapter reads.
    fn init_name(&self) -> &'static str {
        "script"
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
            inherit_env: &[],
            budget_comment: None,
            bundled_agent: true,
        }
    }

    fn parse(&self, out: &Output) -> Option<Reading> {
        self.formats.iter().find_map(|a| a.parse(out))
    }

    /// The first format that reads the line: a script that prints a CLI's stream (or wraps
    /// one) shows its tool calls; anything else is plain output.
    fn progress(&self, line: &[u8]) -> Vec<Activity> {
        self.formats
            .iter()
            .map(|a| a.progress(line))
            .find(|read| !read.is_empty())
            .unwrap_or_default()
    }

    fn fix(&self, cause: Cause) -> String {
        match cause {
            Cause::Auth => "check the credentials the agent's command uses (its key variable, in the agent's `env` or where orch runs)".into(),
            Cause::UntrustedFolder => classify::UNTRUSTED_FIX.into(),
            _ => "check the agent's command and its flags".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stdout: &[u8], stderr: &[u8], exit: Option<i32>) -> Option<Reading> {
        crate::agents::PLAIN.read(&Output {
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
