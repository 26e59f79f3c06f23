//! `--dry-run` for `orch run` and `orch round N`: the plan of the next round, and nothing else.
//!
//! It asks the round's own rules (`round::gate`, `round::job_plan`, `round::queue_key`,
//! `round::render_prompt`) so that the plan shown is the plan a real round would make from the
//! same state, and it leaves no trace: no lock, no state folder, no events, no prompt files,
//! nothing in git. It only reads: the mission, the state and task queue when there are some,
//! `git rev-parse` and `git status`. A `{"command": ...}` rule is the one thing it cannot
//! decide without running something, so it says "decided at run time" instead.

use serde::Serialize;

use crate::engine::round::{self, Env, Gate};
use crate::engine::runner::{RunOptions, Workspace};
use crate::engine::store::state::{Journal, State};
use crate::engine::store::tasks::Queue;
use crate::error::Result;
use crate::events::Events;
use crate::mission::{Agent, Mission};
use crate::roundlog::Phase;
use crate::units;

/// What the next round would do. Also printed as JSON with `--json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub mission: String,
    pub round: u32,
    pub base: Option<String>,
    pub agents: Vec<AgentPlan>,
    /// Per phase, the agents in the order the pool would start them.
    pub queue: PhaseQueues,
    pub max_concurrency: usize,
    pub sims: Vec<String>,
    pub tests: Option<String>,
    /// Things a real run would do first or refuse (a dirty tree, a crashed run to recover).
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PhaseQueues {
    pub code: Vec<String>,
    pub review: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPlan {
    pub name: String,
    pub phase: String,
    /// `true` runs, `false` idles, `null` decided at run time (a when-command).
    pub active: Option<bool>,
    pub reason: String,
    pub model: String,
    pub ladder: Vec<String>,
    pub task: Option<String>,
    pub priority: u8,
    pub timeout_ms: u64,
    pub adaptive_timeout: bool,
    /// The stuck rules its run is watched with (0 is off).
    pub stuck: crate::mission::StuckLimits,
    pub expected_ms: u64,
    pub prompt_bytes: Option<usize>,
    pub prompt_error: Option<String>,
    /// Prompt sections that were cut to fit, as `name (-N bytes)`.
    pub trimmed: Vec<String>,
    /// Its `budgetUsd`, what it has spent (`state.json`) and the arguments that cap its run
    /// at the rest (empty when its CLI cannot be capped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent_usd: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_args: Vec<String>,
}

/// Works out the plan of the round `opts` would run next.
pub fn plan(ws: &Workspace, opts: &RunOptions) -> Result<Plan> {
    let mission = ws.mission();
    crate::engine::runner::check_agents(mission, &opts.agents)?;
    let state = State::load(&ws.layout)?;
    let mut queue = Queue::load(&ws.layout)?;
    let mut notes = Vec::new();
    let round = next_round(mission, &state, opts, &mut notes);
    if let Some(j) = Journal::load(&ws.layout)? {
        notes.push(format!(
            "an orch (pid {}) died during round {}: a real run first restores its base and keeps its tree under refs/orch/interrupted/round-{}",
            j.pid, j.round, j.round
        ));
    }
    if let Err(e) = crate::engine::runner::check_clean(&ws.git, opts.allow_dirty) {
        notes.push(format!("a real run would refuse to start: {e}"));
    }
    let events = Events::none();
    let max_concurrency = opts
        .max_concurrency
        .unwrap_or(mission.max_concurrency)
        .max(1);
    let limits = crate::engine::exec::limits::Limits::new(
        &mission.limits,
        false,
        &std::collections::BTreeMap::new(),
    );
    let env = Env {
        mission,
        mission_dir: &ws.loaded.dir,
        git: &ws.git,
        layout: &ws.layout,
        events: &events,
        max_concurrency,
        budget: opts.budget.or(mission.budget_usd),
        only: &opts.agents,
        refs: round::LIVE_REFS,
        replay: None,
        limits: &limits,
    };
    if let Some(why) = crate::engine::runner::stop_before(&env, &state) {
        notes.push(format!(
            "a real run would stop before this round (exit 3): {why}"
        ));
    }
    // The round hands an over-budget agent's tasks over before its gates (here, in memory).
    for line in round::hand_over_budget_tasks(mission, &state, &mut queue, round) {
        notes.push(format!("a real run would hand tasks over: {line}"));
    }
    let mut agents = Vec::new();
    let mut order: Vec<(round::QueueKey, Phase, String)> = Vec::new();
    for (index, agent) in mission.agents.iter().enumerate() {
        agents.push(agent_plan(
            &env, &state, &queue, round, index, agent, &mut order,
        ));
    }
    order.sort_by_key(|o| o.0);
    let of = |p: Phase| -> Vec<String> {
        order
            .iter()
            .filter(|o| o.1 == p)
            .map(|o| o.2.clone())
            .collect()
    };
    let sims = sim_lines(mission);
    let tests = tests_line(mission);
    Ok(Plan {
        mission: mission.name.clone(),
        round,
        base: ws.git.head()?,
        agents,
        queue: PhaseQueues {
            code: of(Phase::Code),
            review: of(Phase::Review),
        },
        max_concurrency,
        sims,
        tests,
        notes,
    })
}

/// The round the plan is for: `--round N`, else the next one; notes when the mission is done or
/// more rounds follow.
fn next_round(mission: &Mission, state: &State, opts: &RunOptions, notes: &mut Vec<String>) -> u32 {
    match opts.only_round {
        Some(n) => n,
        None => {
            let next = state.last_round.saturating_add(1);
            let last = match opts.more_rounds {
                Some(n) => state.last_round.saturating_add(n),
                None => mission.rounds,
            };
            if next > last {
                notes.push(format!(
                "all {} rounds of the mission are done: `orch run` would run nothing (`--rounds N` runs N more); showing round {next}",
                mission.rounds
            ));
            } else if last > next {
                notes.push(format!(
                "this is round {next} of rounds {next}..{last}; later rounds depend on what this one does"
            ));
            }
            next
        }
    }
}

/// Agent `index`'s plan; when it may run, its place in the pool goes into `order`.
fn agent_plan(
    env: &Env,
    state: &State,
    queue: &Queue,
    round: u32,
    index: usize,
    agent: &Agent,
    order: &mut Vec<(round::QueueKey, Phase, String)>,
) -> AgentPlan {
    let (active, reason) = gate_reason(agent, round, queue, env.only, state);
    let job = round::job_plan(agent, state, queue);
    let (prompt_bytes, prompt_error, trimmed) = prompt_figures(env, agent, round, &job, state);
    if active != Some(false) {
        let name = match active {
            Some(_) => agent.name.clone(),
            None => format!("{}?", agent.name),
        };
        order.push((
            round::queue_key(job.priority, job.expected_ms, index),
            agent.phase,
            name,
        ));
    }
    AgentPlan {
        name: agent.name.clone(),
        phase: agent.phase.as_str().into(),
        active,
        reason,
        model: job.model,
        ladder: agent
            .ladder()
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect(),
        task: job.task.map(|t| t.id),
        priority: job.priority,
        timeout_ms: job.timeout.as_millis() as u64,
        adaptive_timeout: job.adaptive,
        stuck: crate::agents::stuck_limits(env.mission, agent),
        expected_ms: job.expected_ms,
        prompt_bytes,
        prompt_error,
        trimmed,
        budget_usd: agent.budget_usd,
        spent_usd: agent.budget_usd.map(|_| state.agent(&agent.name).cost_usd),
        cap_args: round::budget_left(agent, state)
            .filter(|left| *left > 0.0)
            .and_then(|left| crate::agents::cap_args(agent, left))
            .unwrap_or_default(),
    }
}

/// Whether the agent runs (`None`: its when-command decides at run time) and why.
fn gate_reason(
    agent: &Agent,
    round: u32,
    queue: &Queue,
    only: &[String],
    state: &State,
) -> (Option<bool>, String) {
    match round::gate(agent, round, queue, only, state) {
        Gate::Decided(a, why) => (Some(a), why),
        Gate::Blocked(why) => (Some(false), format!("blocked: {why}")),
        Gate::OverBudget(why) => {
            let waiting = round::waiting_on_budget(agent, state, queue);
            let waiting = if waiting.is_empty() {
                String::new()
            } else {
                format!("; its pending tasks wait on it: {}", waiting.join(", "))
            };
            (Some(false), format!("over budget: {why}{waiting}"))
        }
        Gate::Command(argv) => (
            None,
            format!(
                "decided at run time by its when-command `{}`",
                argv.join(" ")
            ),
        ),
    }
}

/// The prompt a real round would render for the agent: its size or why it cannot be rendered,
/// and the sections cut to fit.
fn prompt_figures(
    env: &Env,
    agent: &Agent,
    round: u32,
    job: &round::JobPlan,
    state: &State,
) -> (Option<usize>, Option<String>, Vec<String>) {
    // A session the next run would resume gets the short `{{changes}}` prompt.
    let resumed = crate::engine::prompt::load_template(env.mission_dir, agent)
        .ok()
        .and_then(|t| {
            let hash = crate::engine::store::sessions::mission_hash(env.mission, &t);
            crate::engine::store::sessions::plan(
                agent,
                &state.agent(&agent.name),
                &job.model,
                &hash,
            )
        })
        .is_some_and(|p| p.resume);
    match round::render_prompt(
        env,
        agent,
        round,
        &job.model,
        job.task.as_ref(),
        state,
        None,
        resumed,
    ) {
        Ok(r) => (
            Some(r.text.len()),
            None,
            r.sections
                .iter()
                .filter(|s| s.cut > 0)
                .map(|s| format!("{} (-{} bytes)", s.name, s.cut))
                .collect(),
        ),
        Err(e) => (None, Some(e.to_string()), Vec::new()),
    }
}

/// One line per sim the mission runs.
fn sim_lines(mission: &Mission) -> Vec<String> {
    let mut sims = Vec::new();
    if let Some(s) = &mission.sims {
        for (which, sim, beside) in [
            ("pre", &s.pre, "beside phase A"),
            ("post", &s.post, "beside the tests"),
        ] {
            if let Some(sim) = sim {
                sims.push(format!(
                    "{which}-sim `{}` {beside}, timeout {}, published to {}",
                    sim.command.argv().join(" "),
                    units::duration_ms((sim.timeout_s * 1000.0) as u64),
                    s.publish_to.display()
                ));
            }
        }
    }
    sims
}

/// What the tests run, or `None` without tests.
fn tests_line(mission: &Mission) -> Option<String> {
    mission.tests.as_ref().map(|t| {
        format!(
            "`{}` when phase A changes the tree, timeout {}, {} retr{}",
            t.command.argv().join(" "),
            units::duration_ms((t.timeout_s * 1000.0) as u64),
            t.retries,
            if t.retries == 1 { "y" } else { "ies" }
        )
    })
}

/// The plan for a person.
pub fn text(p: &Plan) -> String {
    let mut out = format!(
        "Dry run: round {} of mission {:?} at {} (nothing runs, nothing is written)\n\n",
        p.round,
        p.mission,
        p.base
            .as_deref()
            .map(|b| &b[..b.len().min(10)])
            .unwrap_or("no commit yet")
    );
    let w = p
        .agents
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "  {:<w$}  {:<6}  {:<4}  {:<10}  {:<16}  {:>4}  {:>8}  WHY\n",
        "AGENT", "PHASE", "RUNS", "MODEL", "TIMEOUT", "PRIO", "PROMPT"
    ));
    for a in &p.agents {
        out.push_str(&agent_line(a, w));
    }
    out.push_str(&format!(
        "\nQueue (pool order: priority, longest expected run, mission order; {} at once):\n",
        p.max_concurrency
    ));
    let list = |v: &[String]| {
        if v.is_empty() {
            "nobody".to_string()
        } else {
            v.join(", ")
        }
    };
    out.push_str(&format!("  phase A (code):   {}\n", list(&p.queue.code)));
    out.push_str(&format!("  phase B (review): {}\n", list(&p.queue.review)));
    if p.queue
        .code
        .iter()
        .chain(&p.queue.review)
        .any(|n| n.ends_with('?'))
    {
        out.push_str("  (NAME? runs only if its when-command passes at run time)\n");
    }
    out.push_str("\nSims:\n");
    if p.sims.is_empty() {
        out.push_str("  none\n");
    }
    for s in &p.sims {
        out.push_str(&format!("  {s}\n"));
    }
    out.push_str(&format!(
        "Tests:\n  {}\n",
        p.tests
            .as_deref()
            .unwrap_or("none: the round's changes are committed untested")
    ));
    if !p.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &p.notes {
            out.push_str(&format!("  - {}\n", n.replace('\n', "\n    ")));
        }
    }
    out
}

/// Agent `a`'s line of the plan's table; `w` is the width of the name column.
fn agent_line(a: &AgentPlan, w: usize) -> String {
    let runs = match a.active {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let model = if a.model.is_empty() { "-" } else { &a.model };
    let timeout = format!(
        "{} ({})",
        units::duration_ms(a.timeout_ms),
        if a.adaptive_timeout {
            "adaptive"
        } else {
            "fixed"
        }
    );
    let prompt = match (a.prompt_bytes, &a.prompt_error) {
        (Some(b), _) => bytes(b),
        (None, _) => "error".into(),
    };
    let mut why = a.reason.clone();
    if let Some(t) = &a.task {
        why.push_str(&format!("; takes task {t}"));
    }
    if a.ladder.len() > 1 {
        why.push_str(&format!("; ladder {}", a.ladder.join(" -> ")));
    }
    if let Some(e) = &a.prompt_error {
        why.push_str(&format!("; prompt: {e}"));
    }
    if !a.trimmed.is_empty() {
        why.push_str(&format!("; trimmed: {}", a.trimmed.join(", ")));
    }
    let said = a.reason.starts_with("over budget");
    if let (Some(b), Some(spent), false) = (a.budget_usd, a.spent_usd, said) {
        why.push_str(&format!(
            "; budget {} of {} spent{}",
            units::usd(spent),
            units::usd(b),
            if a.cap_args.is_empty() {
                String::new()
            } else {
                format!(", run capped with {}", a.cap_args.join(" "))
            }
        ));
    }
    format!(
        "  {:<w$}  {:<6}  {:<4}  {:<10}  {:<16}  {:>4}  {:>8}  {why}\n",
        a.name, a.phase, runs, model, timeout, a.priority, prompt
    )
}

fn bytes(n: usize) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
