//! `orch import PATH`: reads a mission of the original orchestrator (the system orch replaces)
//! and writes the equivalent orch mission, saying what it could not carry over.
//!
//! The original's mission: top-level `name`, `description`, `config` (`maxRounds`,
//! `maxConcurrency`, `agentTimeoutMs`), `agents[]` (`id`, `name`, `type`, `role`, `model`,
//! `maxModel`, `timeoutMs`, `fileOwnership`, `dependsOn`, `maxBudgetUsd`: the agent's
//! `budgetUsd`), `balanceConfig`
//! (`runPreSim`, `runPostSim`, `simTimeoutMs`), and sequences
//! `{"type": "sequence", "missions": [...]}` whose entries are missions or paths to them.
//! Its agents were Claude Code sessions, so imported agents call Claude Code the way `orch init
//! --agent claude` does. Every key the importer does not understand is named in the notes, never
//! dropped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::mission::{valid_agent_name, Mission};

/// The Claude Code command imported agents run (see `init`).
const CLAUDE: [&str; 8] = [
    "claude",
    "-p",
    "--model",
    "{model}",
    "--output-format",
    "json",
    "--permission-mode",
    "acceptEdits",
];
/// The original's simulation entry point, as its missions ran it.
const SIM: [&str; 4] = ["node", "sim/run.mjs", "--out", "{out}"];

/// What an import produced: files to write and what could not be carried over.
#[derive(Debug, Default)]
pub struct Imported {
    pub files: Vec<(PathBuf, String)>,
    pub notes: Vec<String>,
}

/// Converts the original mission at `path`; the orch mission is named `out` (a sequence also
/// writes one mission file per step beside it).
pub fn import(path: &Path, out: &Path) -> Result<Imported> {
    let v = read(path)?;
    let mut imp = Imported::default();
    if v.get("type").and_then(Value::as_str) == Some("sequence") {
        let missions = v.get("missions").and_then(Value::as_array).ok_or_else(|| {
            Error::mission(path, "missions", "a sequence needs a `missions` array")
        })?;
        let stem = out
            .file_stem()
            .map_or("orch".into(), |s| s.to_string_lossy().into_owned());
        let mut steps = Vec::new();
        for (i, m) in missions.iter().enumerate() {
            let (mv, from) = match m {
                Value::String(p) => {
                    let p = path.parent().unwrap_or(Path::new(".")).join(p);
                    (read(&p)?, p.display().to_string())
                }
                other => (other.clone(), format!("missions[{i}]")),
            };
            let rounds = mv
                .pointer("/config/maxRounds")
                .and_then(Value::as_u64)
                .unwrap_or(10) as u32;
            let (mission, notes) = convert(&mv, &from)?;
            imp.notes.extend(notes);
            let file = format!("{stem}-{}.json", i + 1);
            imp.files.push((
                out.with_file_name(&file),
                serde_json::to_string_pretty(&mission).unwrap_or_default() + "\n",
            ));
            steps.push(json!({"mission": file, "rounds": rounds.max(1)}));
        }
        let name = v.get("name").and_then(Value::as_str).unwrap_or("sequence");
        let seq = json!({"name": name, "sequence": steps});
        imp.files.insert(
            0,
            (
                out.to_path_buf(),
                serde_json::to_string_pretty(&seq).unwrap_or_default() + "\n",
            ),
        );
        note_unknown(
            &v,
            &["type", "name", "description", "missions"],
            "the sequence",
            &mut imp.notes,
        );
    } else {
        let (mission, notes) = convert(&v, &path.display().to_string())?;
        imp.notes.extend(notes);
        imp.files.push((
            out.to_path_buf(),
            serde_json::to_string_pretty(&mission).unwrap_or_default() + "\n",
        ));
    }
    Ok(imp)
}

fn read(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read the mission to import, {}: {e}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::mission(path, "", format!("not JSON: {e}")))
}

/// One original mission to an orch mission (as JSON, validated by orch's own parser).
fn convert(v: &Value, from: &str) -> Result<(Value, Vec<String>)> {
    let mut notes = Vec::new();
    let obj = v
        .as_object()
        .ok_or_else(|| Error::Usage(format!("{from}: a mission must be a JSON object")))?;
    note_unknown(
        v,
        &[
            "name",
            "description",
            "config",
            "agents",
            "balanceConfig",
            "type",
        ],
        from,
        &mut notes,
    );
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("imported");
    let config = obj.get("config").cloned().unwrap_or(Value::Null);
    note_unknown(
        &config,
        &["maxRounds", "maxConcurrency", "agentTimeoutMs"],
        &format!("{from} config"),
        &mut notes,
    );
    let default_timeout_ms = config.get("agentTimeoutMs").and_then(Value::as_f64);
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if let Some(d) = obj.get("description").and_then(Value::as_str) {
        m.insert("description".into(), json!(d));
    }
    if let Some(r) = config.get("maxRounds").and_then(Value::as_u64) {
        m.insert("rounds".into(), json!(r.max(1)));
    }
    if let Some(c) = config.get("maxConcurrency").and_then(Value::as_u64) {
        m.insert("maxConcurrency".into(), json!(c.max(1)));
    }
    let agents = obj
        .get("agents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if agents.is_empty() {
        return Err(Error::Usage(format!(
            "{from}: the mission has no agents to import"
        )));
    }
    // Original ids may be anything; orch names become file names.
    let names = agent_names(&agents, &mut notes);
    let mut out_agents = Vec::new();
    for a in &agents {
        out_agents.push(convert_agent(
            a,
            from,
            &names,
            default_timeout_ms,
            &mut notes,
        ));
    }
    m.insert("agents".into(), Value::Array(out_agents));
    if let Some(b) = obj.get("balanceConfig") {
        convert_sims(b, from, &mut m, &mut notes);
    }
    notes.push(format!(
        "{from}: no test command in the original mission; add `tests` so orch can revert a round that breaks them"
    ));
    let mission = Value::Object(m);
    // The result must be a valid orch mission: check it with orch's own parser.
    let text = serde_json::to_string(&mission).unwrap_or_default();
    Mission::parse(&text, Path::new(from), &crate::agents::Adapters)?;
    Ok((mission, notes))
}

/// The orch name of each original agent id (a file name: lowercase, unique), with a note for
/// each one renamed.
fn agent_names(agents: &[Value], notes: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (i, a) in agents.iter().enumerate() {
        let id = a
            .get("id")
            .or_else(|| a.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("agent-{}", i + 1));
        let mut n = sanitize(&id);
        while names.values().any(|v| v == &n) {
            n.push('x');
        }
        if n != id {
            notes.push(format!(
                "agent {id:?} is named {n:?} (orch names are lowercase letters, digits, - and _)"
            ));
        }
        names.insert(id, n);
    }
    names
}

/// One original agent to an orch agent; `names` maps ids to orch names, `default_timeout_ms`
/// is the mission's `agentTimeoutMs`.
fn convert_agent(
    a: &Value,
    from: &str,
    names: &BTreeMap<String, String>,
    default_timeout_ms: Option<f64>,
    notes: &mut Vec<String>,
) -> Value {
    let id = a
        .get("id")
        .or_else(|| a.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = names.get(id).cloned().unwrap_or_else(|| sanitize(id));
    let at = format!("{from} agent {id}");
    note_unknown(
        a,
        &[
            "id",
            "name",
            "type",
            "role",
            "model",
            "maxModel",
            "timeoutMs",
            "fileOwnership",
            "dependsOn",
            "maxBudgetUsd",
        ],
        &at,
        notes,
    );
    let kind = [a.get("type"), a.get("role")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let phase = phase_of(&kind).unwrap_or_else(|| {
        notes.push(format!(
            "{at}: type/role {kind:?} is neither clearly code nor review; imported as code"
        ));
        "code"
    });
    let mut ag = Map::new();
    ag.insert("name".into(), json!(name));
    ag.insert("phase".into(), json!(phase));
    ag.insert("command".into(), json!(CLAUDE));
    ag.insert("stdin".into(), json!("prompt"));
    insert_models(a, &mut ag);
    if let Some(ms) = a
        .get("timeoutMs")
        .and_then(Value::as_f64)
        .or(default_timeout_ms)
    {
        ag.insert("timeoutS".into(), json!((ms / 1000.0).max(1.0)));
    }
    if let Some(globs) = a.get("fileOwnership").and_then(Value::as_array) {
        let globs: Vec<&str> = globs.iter().filter_map(Value::as_str).collect();
        if !globs.is_empty() {
            ag.insert("owns".into(), json!(globs));
        }
    }
    if let Some(deps) = a.get("dependsOn").and_then(Value::as_array) {
        let mut mapped = Vec::new();
        for d in deps.iter().filter_map(Value::as_str) {
            match names.get(d) {
                Some(n) if n != &name => mapped.push(n.clone()),
                _ => notes.push(format!(
                    "{at}: dependsOn {d:?} names no other agent; dropped"
                )),
            }
        }
        if !mapped.is_empty() {
            ag.insert("dependsOn".into(), json!(mapped));
        }
    }
    match a.get("maxBudgetUsd").map(|v| (v, v.as_f64())) {
        Some((_, Some(b))) if b > 0.0 && b <= 1e9 => {
            ag.insert("budgetUsd".into(), json!(b));
        }
        Some((v, _)) => notes.push(format!(
            "{at}: maxBudgetUsd {v} is not a number of dollars above 0; dropped"
        )),
        None => {}
    }

    Value::Object(ag)
}

/// The original `model` and `maxModel` as orch's `model`, or a two-step `models` ladder.
fn insert_models(a: &Value, ag: &mut Map<String, Value>) {
    match (
        a.get("model").and_then(Value::as_str),
        a.get("maxModel").and_then(Value::as_str),
    ) {
        (Some(m1), Some(m2)) if m1 != m2 => {
            ag.insert("models".into(), json!([m1, m2]));
        }
        (Some(m1), _) => {
            ag.insert("model".into(), json!(m1));
        }
        (None, Some(m2)) => {
            ag.insert("model".into(), json!(m2));
        }
        (None, None) => {}
    }
}

/// The original `balanceConfig` to orch's `sims` block, added to `m` when a sim runs.
fn convert_sims(b: &Value, from: &str, m: &mut Map<String, Value>, notes: &mut Vec<String>) {
    note_unknown(
        b,
        &["runPreSim", "runPostSim", "simTimeoutMs"],
        &format!("{from} balanceConfig"),
        notes,
    );
    let timeout = b
        .get("simTimeoutMs")
        .and_then(Value::as_f64)
        .map(|ms| (ms / 1000.0).max(1.0));
    let sim = || {
        let mut s = json!({"command": SIM});
        if let Some(t) = timeout {
            s["timeoutS"] = json!(t);
        }
        s
    };
    let mut sims = Map::new();
    if b.get("runPreSim").and_then(Value::as_bool) == Some(true) {
        sims.insert("pre".into(), sim());
    }
    if b.get("runPostSim").and_then(Value::as_bool) == Some(true) {
        sims.insert("post".into(), sim());
    }
    if !sims.is_empty() {
        sims.insert("publishTo".into(), json!("balance-data"));
        m.insert("sims".into(), Value::Object(sims));
        notes.push(format!(
            "{from}: the sims run `{}` into balance-data/; check that is your simulation's command",
            SIM.join(" ")
        ));
    }
}

fn phase_of(kind: &str) -> Option<&'static str> {
    const REVIEW: [&str; 9] = [
        "review", "plan", "design", "produc", "qa", "critic", "analy", "research", "manag",
    ];
    const CODE: [&str; 8] = [
        "code",
        "coder",
        "develop",
        "dev",
        "engineer",
        "implement",
        "build",
        "fix",
    ];
    if REVIEW.iter().any(|k| kind.contains(k)) {
        Some("review")
    } else if CODE.iter().any(|k| kind.contains(k)) {
        Some("code")
    } else {
        None
    }
}

fn sanitize(id: &str) -> String {
    let mut s: String = id
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches('-').to_string();
    if s.is_empty() || !valid_agent_name(&s) {
        s = format!("a{s}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(60)
            .collect();
    }
    s
}

fn note_unknown(v: &Value, known: &[&str], at: &str, notes: &mut Vec<String>) {
    if let Some(o) = v.as_object() {
        for k in o.keys().filter(|k| !known.contains(&k.as_str())) {
            notes.push(format!(
                "{at}: `{k}` is not carried over (orch has no equivalent)"
            ));
        }
    }
}

/// Writes the imported files (refusing to overwrite without `force`) and prints the notes.
pub fn write(imp: &Imported, force: bool) -> Result<()> {
    if !force {
        if let Some((p, _)) = imp.files.iter().find(|(p, _)| p.exists()) {
            return Err(Error::Usage(format!(
                "{} exists already; pass --force to overwrite",
                p.display()
            )));
        }
    }
    for (p, text) in &imp.files {
        std::fs::write(p, text).ctx(|| format!("writing {}", p.display()))?;
        log::info!("wrote {}", p.display());
    }
    for n in &imp.notes {
        log::warn!("not carried over: {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_valid_agent_names() {
        assert_eq!(sanitize("UI Developer"), "ui-developer");
        assert_eq!(sanitize("api_dev"), "api_dev");
        assert!(valid_agent_name(&sanitize("--")));
    }

    #[test]
    fn roles_map_to_phases() {
        assert_eq!(phase_of("code developer"), Some("code"));
        assert_eq!(phase_of("review"), Some("review"));
        assert_eq!(phase_of("game designer"), Some("review"));
        assert_eq!(phase_of("mystery"), None);
    }
}
