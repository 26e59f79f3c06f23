//! `orch round N` for a round that ran (N <= the last round): takes the lock, replays the
//! round beside the branch (`engine::replay`), then prints the original and the replay side by
//! side on stdout (`--json`: the comparison as one object) and says whether the outcome is the
//! same: exit 0 when it is, 1 when it differs. `--dry-run` prints the plan as recorded.

use std::path::Path;

use crate::engine::replay::{self, Comparison, Prepared, ReplayOptions};
use crate::engine::runner::Workspace;
use crate::engine::store::state::{Layout, Lock};
use crate::error::{Error, Result, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROUND_FAILED};
use crate::events::Verbosity;
use crate::roundlog::Choice;
use crate::units;
use crate::{out, outln};

pub struct Args<'a> {
    pub dir: &'a Path,
    pub mission: &'a Path,
    pub opts: ReplayOptions,
    pub dry_run: bool,
    pub json: bool,
}

pub fn run(a: Args, verbosity: Verbosity) -> Result<i32> {
    let ws = Workspace::open(a.dir, a.mission)?;
    let n = a.opts.round;
    let path = ws.layout.round_log(n);
    if !path.exists() {
        return Err(Error::Usage(format!(
            "round {n} has no log ({} does not exist): nothing to replay",
            path.display()
        )));
    }
    let original = crate::report::read_round(n, &path)?.log;
    if a.dry_run {
        let p = replay::prepare(&ws, &original, &a.opts)?;
        if a.json {
            return plan_json(&p).map(|_| EXIT_OK);
        }
        out!("{}", plan_text(&p, ws.git.root()))?;
        return Ok(EXIT_OK);
    }
    crate::cli::drive::install_signal_handler();
    let _lock = Lock::acquire(&ws.layout)?;
    // A replay has no live events to tell: what it cleaned up is a warning line.
    for message in replay::tidy(&ws)? {
        log::warn!("{message}");
    }
    let p = replay::prepare(&ws, &original, &a.opts)?;
    std::fs::create_dir_all(&p.dir)
        .map_err(|e| Error::io(format!("creating {}", p.dir.display()), e))?;
    log::info!(
        "replaying round {n} from its base {} in {} (replay {})",
        short(&p.base),
        p.dir.display(),
        p.k
    );
    for t in &p.from_today {
        log::warn!("replay of round {n}: {t}");
    }
    // The replay's events go to its own folder, never to the live events.ndjson.
    let events = crate::cli::drive::sinks(&Layout::new(p.dir.clone()), false, verbosity);
    let result = replay::run(&ws, &p, &events);
    events.finish();
    let done = result?;
    let cmp = replay::compare(&original, &done.log, p.k, &p.opts.agents, &p.from_today);
    if a.json {
        let v = serde_json::json!({
            "comparison": cmp,
            "dir": p.dir,
            "refs": p.refs,
            "tree": done.tree,
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into())
        )?;
    } else {
        out!(
            "{}",
            comparison_text(&cmp, &p, ws.git.root(), done.tree.as_deref())
        )?;
    }
    if done.interrupted {
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(if cmp.same() {
        EXIT_OK
    } else {
        EXIT_ROUND_FAILED
    })
}

fn short(c: &str) -> &str {
    &c[..c.len().min(10)]
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// The original and the replay side by side.
pub fn comparison_text(c: &Comparison, p: &Prepared, root: &Path, tree: Option<&Path>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "round {} and its replay {} ({}), from base {}",
        c.round,
        c.replay,
        rel(root, &p.dir),
        short(&p.base)
    );
    let side = |a: &Option<replay::AgentSide>| match a {
        None => "did not run".to_string(),
        Some(a) => format!(
            "{}{}, {} file{}, {}",
            a.status,
            a.cause
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            a.changed_files,
            if a.changed_files == 1 { "" } else { "s" },
            units::usd(a.cost_usd)
        ),
    };
    let commit = |c: &Option<String>| c.as_deref().map(short).unwrap_or("no commit").to_string();
    let names = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut rows = vec![vec![String::new(), "original".into(), "replay".into()]];
    rows.push(vec![
        "status".into(),
        c.status.0.clone(),
        c.status.1.clone(),
    ]);
    rows.push(vec![
        "commit".into(),
        commit(&c.commit.0),
        commit(&c.commit.1),
    ]);
    for a in &c.agents {
        rows.push(vec![a.agent.clone(), side(&a.original), side(&a.replay)]);
    }
    rows.push(vec![
        "tests".into(),
        replay::describe_tests(&c.tests.0),
        replay::describe_tests(&c.tests.1),
    ]);
    rows.push(vec![
        "culprits".into(),
        names(&c.culprits.0),
        names(&c.culprits.1),
    ]);
    rows.push(vec![
        "cost".into(),
        units::usd(c.cost_usd.0),
        units::usd(c.cost_usd.1),
    ]);
    for line in crate::cli::status::table(&rows).lines() {
        let _ = writeln!(s, "  {line}");
    }
    for t in &c.from_today {
        let _ = writeln!(s, "taken from today: {t}");
    }
    if !c.whole_round {
        let _ = writeln!(
            s,
            "only {} replayed (--agent): the round's status, tests and culprits are shown, not compared",
            c.agents
                .iter()
                .map(|a| a.agent.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if c.same() {
        let _ = writeln!(s, "the same outcome");
    } else {
        let _ = writeln!(s, "the outcome differs:");
        for d in &c.differences {
            let _ = writeln!(s, "  {d}");
        }
    }
    let _ = writeln!(
        s,
        "refs under {} (git for-each-ref {}); orch show {} --replay {}",
        p.refs,
        p.refs.trim_end_matches('/'),
        c.round,
        c.replay
    );
    if let Some(t) = tree {
        let _ = writeln!(s, "worktree kept: {}", t.display());
    }
    s
}

/// `--dry-run`: the plan as recorded.
pub fn plan_text(p: &Prepared, root: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "replay {} of round {} of mission {:?}: from base {}, in {}; refs under {}",
        p.k,
        p.round,
        p.mission.name,
        short(&p.base),
        rel(root, &p.dir),
        p.refs
    );
    let _ = writeln!(
        s,
        "  {} agents at once, budget {}",
        p.max_concurrency,
        p.budget.map(units::usd).unwrap_or_else(|| "none".into())
    );
    if p.recorded.is_none() {
        let _ = writeln!(
            s,
            "  the plan is made at run time from today's mission (--fresh)"
        );
    }
    let only = &p.opts.agents;
    let mut rows = vec![[
        "agent", "phase", "decision", "model", "timeout", "task", "prompt",
    ]
    .map(String::from)
    .to_vec()];
    for d in &p.decisions {
        let job = p.jobs.iter().find(|j| j.agent == d.agent);
        let left_out = !only.is_empty() && !only.contains(&d.agent);
        let decision = if left_out && d.decision == Choice::Included {
            "not replayed"
        } else {
            d.decision.as_str()
        };
        let prompt = job.map_or(String::new(), |j| {
            let path = p.state_dir.join(&j.prompt);
            match crate::engine::store::inputs::recorded_prompt(&path, j) {
                Ok(b) if j.prompt_hash.is_empty() => {
                    format!("{} ({} B, unchecked)", j.prompt, b.len())
                }
                Ok(b) => format!("{} ({} B)", j.prompt, b.len()),
                Err(_) => format!("{} (gone or changed: re-rendered)", j.prompt),
            }
        });
        rows.push(vec![
            d.agent.clone(),
            job.map(|j| j.phase.as_str().to_string())
                .unwrap_or_default(),
            decision.to_string(),
            job.map(|j| j.model.clone()).unwrap_or_default(),
            job.map(|j| units::duration_ms(j.timeout_ms))
                .unwrap_or_default(),
            job.and_then(|j| j.task.as_ref().map(|t| t.id.clone()))
                .unwrap_or_default(),
            prompt,
        ]);
    }
    for line in crate::cli::status::table(&rows).lines() {
        let _ = writeln!(s, "  {line}");
    }
    for d in &p.decisions {
        let _ = writeln!(s, "  {}: {}", d.agent, d.reason);
    }
    for t in &p.from_today {
        let _ = writeln!(s, "taken from today: {t}");
    }
    s
}

fn plan_json(p: &Prepared) -> Result<()> {
    let v = serde_json::json!({
        "round": p.round,
        "replay": p.k,
        "dir": p.dir,
        "refs": p.refs,
        "base": p.base,
        "mission": p.mission.name,
        "maxConcurrency": p.max_concurrency,
        "budgetUsd": p.budget,
        "fresh": p.recorded.is_none(),
        "decisions": p.decisions,
        "jobs": p.jobs,
        "agents": p.opts.agents,
        "fromToday": p.from_today,
    });
    outln!(
        "{}",
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into())
    )
}
