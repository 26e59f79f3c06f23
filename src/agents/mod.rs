//! The agent CLIs: what an agent's output says about its run (cost from Claude Code's JSON
//! result, Codex's token usage, the `ORCH_RESULT_FILE` an agent writes). The engine asks this
//! layer; it never parses a CLI's text itself.

pub mod cost;
