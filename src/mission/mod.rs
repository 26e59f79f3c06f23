//! The mission file: its schema (docs/src/mission.md), its defaults, and its validation.
//!
//! It is the bottom of the data model and imports nothing above it. What validation must ask
//! of the agent CLIs (which names `cli` takes, whether an agent's command can keep a session)
//! comes in through [`CliCatalog`], which the agents layer implements and the caller hands to
//! [`Mission::parse`]; the names of the built-in prompt sections and the `pricing` table's
//! types live here, since the file's schema is theirs.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere) and goes through `serde_path_to_error`
//! so that a typo is reported with its key path (`agents[2].comand`) and the file it is in.
//! After parsing, [`Mission::validate`] checks what serde cannot (name syntax, duplicate names,
//! unknown placeholders, references between agents) and reports the same way. Everything the
//! rest of orch reads from the mission goes through the accessors here, so a default lives in
//! one place. A key is never accepted and then ignored: a key exists here only once orch does
//! what it says.
//!
//! The folder is laid out by concern, each file below the ones that use it, and no file here
//! imports this one (it only re-exports, so every `crate::mission::X` path the rest of orch
//! names is here): `cli.rs` reads an agent's `cli` name; `agent.rs` the `agents` entries and
//! the value types they share with the rest of the file; `schema.rs` the [`Mission`] and its
//! other blocks; `stuck.rs` the `stuck` block (an agent's and the mission's), with its check;
//! `bounds.rs` every number's range and the `dependsOn` graph; `validate.rs` the
//! other checks and [`CliCatalog`]; `load.rs` reading the file and [`Loaded`].

mod agent;
mod bounds;
mod cli;
mod load;
pub mod sandbox;
mod schema;
mod stuck;
mod validate;

pub use agent::{
    valid_agent_name, AdaptiveTimeout, Agent, Command, InheritAll, InheritEnv, StdinMode, When,
    WhenKeyword, DEFAULT_SESSION_ROUNDS, MAX_SESSION_ROUNDS,
};
pub use bounds::{
    MAX_BISECT_JOBS, MAX_CONCURRENCY, MAX_COUNT, MAX_FACTOR, MAX_GRACE_S, MAX_PROMPT_BYTES,
    MAX_RETRIES, MAX_ROUNDS,
};
pub use cli::cli_name;
pub use load::{locate, strip_comments, Loaded, STDIN};
pub use schema::{
    FailedChanges, GitConfig, Hooks, Isolation, Limits, Mission, ModelPrice, PhaseB, Pricing,
    RevertStrategy, Section, Sim, Sims, StopConfig, Suite, TasksConfig, Tests, BUILTIN_SECTIONS,
};
pub use stuck::{Limits as StuckLimits, Stuck};
pub use validate::{placeholders, CliCatalog};

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::error::Result;

    fn parse(s: &str) -> Result<Mission> {
        Mission::parse(s, Path::new("orch.json"), &crate::agents::Adapters)
    }

    #[test]
    fn minimal_mission_gets_the_spec_defaults() {
        let m = parse(r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"true"}]}"#)
            .unwrap();
        assert_eq!(m.state_dir, PathBuf::from(".orch"));
        assert_eq!(m.max_concurrency, 4);
        let a = &m.agents[0];
        assert_eq!(a.escalate_after, 2);
        assert_eq!(a.when, When::default());
        assert_eq!(a.command.argv(), ["sh", "-c", "true"]);
        assert_eq!(a.ladder(), [""]);
    }

    #[test]
    fn a_typo_is_reported_with_its_key_path() {
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x"},
                {"name":"b","phase":"code","command":"x"},
                {"name":"c","phase":"code","comand":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agents[2].comand"), "{e}");
        assert!(e.contains("orch.json"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let e = parse(r#"{"name":"n","agents":[{"name":"../x","phase":"code","command":"x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("agents[0].name"), "{e}");
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":["x","{modle}"]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("agents[0].command[1]") && e.contains("{modle}"),
            "{e}"
        );
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x","when":{"every":0}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agents[0].when.every"), "{e}");
    }

    #[test]
    fn when_forms_parse() {
        let m = parse(
            r#"{"name":"n","agents":[
              {"name":"a","phase":"code","command":"x","when":"tasks"},
              {"name":"b","phase":"code","command":"x","when":{"every":2}},
              {"name":"c","phase":"review","command":"x","when":{"command":["test","-f","x"]}},
              {"name":"d","phase":"review","command":"x","when":"always"}]}"#,
        )
        .unwrap();
        assert_eq!(m.agents[0].when, When::Keyword(WhenKeyword::Tasks));
        assert_eq!(m.agents[1].when, When::Every { every: 2 });
        assert!(matches!(m.agents[2].when, When::Command { .. }));
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x","when":"sometimes"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agents[0].when"), "{e}");
    }

    #[test]
    fn line_comments_are_allowed_outside_strings() {
        let m = parse(
            "{\n  // the mission\n  \"name\": \"a//b\", // trailing\n  \"agents\": [{\"name\":\"a\",\"phase\":\"code\",\"command\":\"echo \\\"//x\\\"\"}]\n}",
        )
        .unwrap();
        assert_eq!(m.name, "a//b");
        assert_eq!(m.agents[0].command.argv()[2], "echo \"//x\"");
        let e = parse("{\n// c\n\"name\": 1}").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn placeholders_ignore_shell_and_json_braces() {
        assert_eq!(placeholders("--model={model} ${HOME} { echo; }"), ["model"]);
        assert_eq!(placeholders("{out}/x{round}"), ["out", "round"]);
    }

    #[test]
    fn launchers_are_checked_like_commands() {
        let m = parse(
            r#"{"name":"n","launcher":["srun","--job-name=orch-{agent}","--"],
                "agents":[{"name":"a","phase":"code","command":"x","launcher":["ssh","h","--"]}],
                "sims":{"pre":{"command":"x","launcher":["srun","--output={out}/s.log","--"]}}}"#,
        )
        .unwrap();
        let pre = m.sims.unwrap().pre.unwrap();
        assert_eq!(pre.launcher.unwrap()[1], "--output={out}/s.log");
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x","launcher":[]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("agents[0].launcher") && e.contains("empty"),
            "{e}"
        );
        // {agent} means nothing to a sim.
        let e = parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x"}],
                "sims":{"post":{"command":"x","launcher":["srun","-J","{agent}"]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sims.post.launcher[2]") && e.contains("{agent}"),
            "{e}"
        );
    }

    #[test]
    fn state_dir_cannot_escape_the_repository() {
        let e = parse(
            r#"{"name":"n","stateDir":"../elsewhere","agents":[{"name":"a","phase":"code","command":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stateDir"), "{e}");
    }
}
