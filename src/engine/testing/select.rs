//! Incremental testing (SPEC section 6): which test suites a round's changes call for. The
//! files the round changed (against its base) select the suites whose `paths` match them; a
//! changed file that no suite covers makes the full `tests.command` run instead; suites marked
//! `always` run every time. Each choice carries its reason, for the round log.

use crate::glob;
use crate::mission::{Suite, Tests};

/// What to run for a round's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The full `tests.command`, and why.
    Full(String),
    /// These suites (indices into `tests.suites`), each with why.
    Suites(Vec<(usize, String)>),
}

pub fn select(tests: &Tests, changed: &[String]) -> Selection {
    if tests.suites.is_empty() {
        return Selection::Full("no suites are defined".into());
    }
    let covers = |s: &Suite, f: &str| s.paths.iter().any(|p| glob::matches(p, f));
    if let Some(f) = changed
        .iter()
        .find(|f| !tests.suites.iter().any(|s| covers(s, f)))
    {
        return Selection::Full(format!("{f} is covered by no suite"));
    }
    let mut chosen = Vec::new();
    for (i, s) in tests.suites.iter().enumerate() {
        let hits: Vec<&String> = changed.iter().filter(|f| covers(s, f)).collect();
        if !hits.is_empty() {
            let more = if hits.len() > 1 {
                format!(" and {} more", hits.len() - 1)
            } else {
                String::new()
            };
            chosen.push((i, format!("{} changed{more}", hits[0])));
        } else if s.always {
            chosen.push((i, "always runs".into()));
        }
    }
    Selection::Suites(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mission::Mission;
    use std::path::Path;

    fn tests() -> Tests {
        let m = Mission::parse(
            r#"{"name":"n","agents":[{"name":"a","phase":"code","command":"x"}],
                "tests":{"command":"full","suites":[
                  {"name":"ui","paths":["src/ui/**"],"command":"ui"},
                  {"name":"api","paths":["src/api/**","proto/*.proto"],"command":"api"},
                  {"name":"lint","always":true,"command":"lint"}]}}"#,
            Path::new("m.json"),
            &crate::agents::Adapters,
        )
        .unwrap();
        m.tests.unwrap()
    }

    #[test]
    fn changed_paths_select_their_suites_and_always_ones() {
        let t = tests();
        let sel = select(&t, &["src/ui/a.rs".into(), "src/ui/b.rs".into()]);
        assert_eq!(
            sel,
            Selection::Suites(vec![
                (0, "src/ui/a.rs changed and 1 more".into()),
                (2, "always runs".into())
            ])
        );
    }

    #[test]
    fn an_uncovered_file_runs_the_full_command() {
        let t = tests();
        match select(&t, &["src/ui/a.rs".into(), "README.md".into()]) {
            Selection::Full(why) => assert!(why.contains("README.md")),
            other => panic!("{other:?}"),
        }
    }
}
