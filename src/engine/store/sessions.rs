//! CLI sessions that carry over from run to run (`session: true`, issue 20): which session an
//! agent's next run resumes or starts, when one is dropped and why, and the new session's id.
//! The `{{changes}}` section a resumed run gets instead of its whole template is a prompt
//! section like the others (`prompt::changes`), and the session itself is a field of the
//! tracking state (`state::AgentSession`): neither needs this module, which needs both.
//!
//! A session goes on only while what the agent remembers is still true: it is dropped (and the
//! next run starts a new one with the full prompt) when the agent's change was taken out (a
//! revert, a conflict, a run that failed), when its model changed (escalation, or the mission
//! names another), after `sessionMaxRounds` runs, and when the mission or the agent's prompt
//! template changed (their hash differs). The session lives in the tracking state
//! (`state.json`, written atomically), so it carries across `orch run` invocations.
//!
//! The adapter says how its CLI takes a session (`agents::with_session`); this module never
//! builds an argv.

use crate::agents;
use crate::engine::store::state::{AgentSession, AgentState};
use crate::mission::{Agent, Mission};

/// The session of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: String,
    pub resume: bool,
    /// Runs in the session before this one.
    pub runs: u32,
    pub mission_hash: String,
    /// For a new session after one was dropped: why it was.
    pub dropped: Option<String>,
}

/// A new session id: a version 4 UUID (Claude Code's `--session-id` takes nothing else), from
/// the kernel's generator, else from `/dev/urandom`, else from the clock and the pid.
pub fn new_id() -> String {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        let s = s.trim();
        if s.len() == 36 {
            return s.to_string();
        }
    }
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !read {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mix = t ^ (u128::from(std::process::id()) << 64);
        b = mix.to_le_bytes();
    }
    uuid_v4(b)
}

/// 16 random bytes as a version 4, variant 1 UUID.
fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// What a session was started under: the mission as parsed (a comment or spacing change in the
/// file does not count) and the agent's prompt template.
pub fn mission_hash(mission: &Mission, template: &str) -> String {
    let mut bytes = serde_json::to_vec(mission).unwrap_or_default();
    bytes.push(0);
    bytes.extend_from_slice(template.as_bytes());
    crate::engine::store::inputs::prompt_hash(&bytes)
}

/// The session of `agent`'s next run with `model`: the kept one resumed, or a new one (with
/// why the kept one was dropped); `None` for an agent without `session: true`.
pub fn plan(agent: &Agent, st: &AgentState, model: &str, hash: &str) -> Option<Plan> {
    if !agent.session {
        return None;
    }
    let fresh = |dropped: Option<String>| Plan {
        id: new_id(),
        resume: false,
        runs: 0,
        mission_hash: hash.to_string(),
        dropped,
    };
    let Some(s) = &st.session else {
        return Some(fresh(st.session_dropped.clone()));
    };
    let why = if s.cli != agents::for_agent(agent).name() {
        Some(format!("its CLI changed from {}", s.cli))
    } else if s.model != model {
        Some(format!("its model changed from {:?} to {model:?}", s.model))
    } else if s.mission_hash != hash {
        Some("the mission or its prompt template changed".to_string())
    } else if s.runs >= agent.session_rounds() {
        Some(format!(
            "it served {} runs (sessionMaxRounds {})",
            s.runs,
            agent.session_rounds()
        ))
    } else {
        None
    };
    Some(match why {
        Some(w) => fresh(Some(w)),
        None => Plan {
            id: s.id.clone(),
            resume: true,
            runs: s.runs,
            mission_hash: hash.to_string(),
            dropped: None,
        },
    })
}

/// After a run with session `plan`: `kept` (its change went in, or it had none, and its model
/// stays) keeps the session for the next run, under the id the CLI reported (else the one orch
/// gave, when the CLI takes it); otherwise it is dropped, for `why`.
pub fn after_run(
    st: &mut AgentState,
    agent: &Agent,
    plan: &Plan,
    reported: Option<&str>,
    model: &str,
    round: u32,
    kept: Result<(), String>,
) {
    let cli = agents::for_agent(agent).name();
    match (kept, run_id(agent, plan, reported)) {
        (Ok(()), Some(id)) => {
            let id = id.as_str();
            let started_round = match &st.session {
                Some(s) if plan.resume => s.started_round,
                _ => round,
            };
            st.session = Some(AgentSession {
                id: id.to_string(),
                cli: cli.to_string(),
                model: model.to_string(),
                mission_hash: plan.mission_hash.clone(),
                runs: plan.runs + 1,
                started_round,
            });
            st.session_dropped = None;
        }
        (Ok(()), None) => forget(
            st,
            format!("its CLI did not say the session id of round {round}'s run"),
        ),
        (Err(why), _) => forget(st, why),
    }
}

/// The session id of a run: as the CLI reported it, else the one orch gave when the CLI takes
/// it (a CLI that names its own, Codex, gives nothing to resume then).
pub fn run_id(agent: &Agent, plan: &Plan, reported: Option<&str>) -> Option<String> {
    let given = agents::for_agent(agent)
        .session_args(&agents::Session {
            id: &plan.id,
            resume: plan.resume,
        })
        .is_some_and(|a| a.takes_id);
    reported
        .map(str::to_string)
        .or_else(|| given.then(|| plan.id.clone()))
}

/// Drops the agent's session: its next run starts a new one with the full prompt.
pub fn forget(st: &mut AgentState, why: String) {
    if st.session.take().is_some() || st.session_dropped.is_none() {
        st.session_dropped = Some(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(json: serde_json::Value) -> Agent {
        let m = Mission::parse(
            &serde_json::json!({"name": "n", "agents": [json]}).to_string(),
            std::path::Path::new("orch.json"),
            &crate::agents::Adapters,
        )
        .unwrap();
        m.agents[0].clone()
    }

    #[test]
    fn new_ids_are_distinct_v4_uuids() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        for id in [&a, &b, &uuid_v4([0xff; 16]), &uuid_v4([0; 16])] {
            assert_eq!(id.len(), 36, "{id}");
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!("89ab".contains(&parts[3][..1]), "{id}");
        }
    }

    #[test]
    fn a_session_goes_on_until_something_it_remembers_changes() {
        let a = agent(serde_json::json!({"name": "a", "phase": "code",
            "command": ["claude", "-p"], "session": true, "sessionMaxRounds": 2}));
        let mut st = AgentState::default();
        let p = plan(&a, &st, "m1", "h1").unwrap();
        assert!(!p.resume);
        after_run(&mut st, &a, &p, Some("id-1"), "m1", 1, Ok(()));
        let p = plan(&a, &st, "m1", "h1").unwrap();
        assert_eq!((p.id.as_str(), p.resume), ("id-1", true));
        // Another model, another mission, or the rounds used up: a new session, and why.
        let why = plan(&a, &st, "m2", "h1").unwrap().dropped.unwrap();
        assert!(why.contains("model"), "{why}");
        let why = plan(&a, &st, "m1", "h2").unwrap().dropped.unwrap();
        assert!(why.contains("mission"), "{why}");
        after_run(&mut st, &a, &p, None, "m1", 2, Ok(()));
        assert_eq!(st.session.as_ref().unwrap().id, "id-1", "the id orch gave");
        let p = plan(&a, &st, "m1", "h1").unwrap();
        assert!(!p.resume && p.dropped.unwrap().contains("sessionMaxRounds 2"));
        // Its change taken out: dropped, and the next run says why.
        forget(&mut st, "its change was taken out".into());
        let p = plan(&a, &st, "m1", "h1").unwrap();
        assert!(!p.resume);
        assert_eq!(p.dropped.as_deref(), Some("its change was taken out"));
        // No session for an agent without `session: true`.
        let b = agent(serde_json::json!({"name": "b", "phase": "code", "command": ["claude"]}));
        assert!(plan(&b, &st, "m1", "h1").is_none());
    }
}
