//! Who runs in a round and how: each agent's `when` gate and dependencies, its job (task,
//! model, timeout, expected run time), the pool's order and the rendered prompt. The rules a
//! round applies, and the same ones `--dry-run` shows.

use super::*;

/// The timeout of an agent's next run: adaptive once it has enough history.
pub fn timeout_for(agent: &Agent, st: &crate::engine::store::state::AgentState) -> Duration {
    adaptive_timeout(agent, st).unwrap_or_else(|| Duration::from_secs_f64(agent.timeout_s))
}

/// The adaptive timeout, once the agent has `minSamples` runs to measure; `None` before.
pub fn adaptive_timeout(
    agent: &Agent,
    st: &crate::engine::store::state::AgentState,
) -> Option<Duration> {
    let a = agent.adaptive_timeout.as_ref()?;
    if st.recent_run_ms.len() < a.min_samples {
        return None;
    }
    let mean = st.mean_run_ms()?;
    let secs = (a.factor * mean as f64 / 1000.0).clamp(a.min_s, a.max_s);
    Some(Duration::from_secs_f64(secs))
}

/// What an agent's `when` rule says for a round, before anything runs. The round and
/// `--dry-run` both ask this, so they never disagree. A `{"command": ...}` rule cannot be decided
/// without running its command: the round runs it, the dry run says so instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// In (true) or out, and why.
    Decided(bool, String),
    /// Waiting for the agents it depends on (`dependsOn`), and which.
    Blocked(String),
    /// Run this argv in the main tree; the agent takes part when it exits 0.
    Command(Vec<String>),
    /// Its `budgetUsd` is spent: it is not started again (whatever `--agent` says) until the
    /// budget is raised.
    OverBudget(String),
}

/// Why `agent` may not start again: what it has spent (`state.json`, across every run of the
/// state) has reached its `budgetUsd`.
pub fn over_budget(agent: &Agent, state: &State) -> Option<String> {
    let budget = agent.budget_usd?;
    let spent = state.agent(&agent.name).cost_usd;
    (spent >= budget).then(|| {
        format!(
            "{} spent of its budgetUsd {}",
            crate::units::usd(spent),
            crate::units::usd(budget)
        )
    })
}

/// The pending tasks of an agent over its `budgetUsd`: they wait on its budget (empty when it
/// is not over it).
pub fn waiting_on_budget(agent: &Agent, state: &State, queue: &Queue) -> Vec<String> {
    if over_budget(agent, state).is_none() {
        return Vec::new();
    }
    queue
        .tasks
        .iter()
        .filter(|t| t.agent == agent.name && t.status == TaskStatus::Pending)
        .map(|t| t.id.clone())
        .collect()
}

/// Hands the pending tasks of each agent over its `budgetUsd` to the agent its
/// `overBudgetTasksTo` names, when that one may still start (a task must not bounce between
/// two spent agents, nor go to one that would not run it). Each task keeps its priority and
/// attempts, and its body says where it came from. One line a handover, for the round's notes.
pub fn hand_over_budget_tasks(
    mission: &Mission,
    state: &State,
    queue: &mut Queue,
    round: u32,
) -> Vec<String> {
    let mut lines = Vec::new();
    for agent in &mission.agents {
        let Some(to) = agent
            .over_budget_tasks_to
            .as_deref()
            .and_then(|n| mission.agent(n))
        else {
            continue;
        };
        if over_budget(to, state).is_some() {
            continue;
        }
        let Some(why) = over_budget(agent, state) else {
            continue;
        };
        let ids = waiting_on_budget(agent, state, queue);
        if ids.is_empty() {
            continue;
        }
        let note = format!(
            "Round {round}: handed over from {} ({why}; overBudgetTasksTo)",
            agent.name
        );
        for id in &ids {
            if let Some(t) = queue.get_mut(id) {
                t.agent = to.name.clone();
            }
            queue.requeue(id, None, Some(&note));
        }
        lines.push(format!(
            "{}'s pending task{} {} went to {} (its budgetUsd is spent: {why}; overBudgetTasksTo)",
            agent.name,
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", "),
            to.name
        ));
    }
    lines
}

/// What is left of `agent`'s `budgetUsd`: the cap of its next run (`None` without a budget).
pub fn budget_left(agent: &Agent, state: &State) -> Option<f64> {
    let budget = agent.budget_usd?;
    Some((budget - state.agent(&agent.name).cost_usd).max(0.0))
}

/// The rules that decide whether an agent takes part in round `round`: its `budgetUsd` first
/// (a spending cap is not lifted by naming the agent), then `--agent NAME` (forced in,
/// whatever its `when`), then a reported `all-done`, then `dependsOn` (blocked until each
/// dependency reports `complete` in its handoff file), then its `when`.
pub fn gate(agent: &Agent, round: u32, queue: &Queue, only: &[String], state: &State) -> Gate {
    if let Some(why) = over_budget(agent, state) {
        return Gate::OverBudget(why);
    }
    if !only.is_empty() {
        return if only.contains(&agent.name) {
            Gate::Decided(true, "selected with --agent".into())
        } else {
            Gate::Decided(false, "not selected with --agent".into())
        };
    }
    if state.agent(&agent.name).handoff == Some(Handoff::AllDone) {
        return Gate::Decided(false, "it reported all-done".into());
    }
    let pending: Vec<String> = agent
        .depends_on
        .iter()
        .filter_map(|d| match state.agent(d).handoff {
            Some(h) if h.is_done() => None,
            Some(other) => Some(format!("{d} (it reported {other})")),
            None => Some(format!("{d} (no report yet)")),
        })
        .collect();
    if !pending.is_empty() {
        return Gate::Blocked(format!("waiting for {}", pending.join(", ")));
    }
    match &agent.when {
        When::Keyword(WhenKeyword::Always) => Gate::Decided(true, "runs every round".into()),
        When::Keyword(WhenKeyword::Tasks) => match queue.next_for(&agent.name) {
            Some(t) => Gate::Decided(true, format!("task {} is pending", t.id)),
            None => Gate::Decided(false, "no pending task".into()),
        },
        When::Every { every } => {
            if round % every == 0 {
                Gate::Decided(true, format!("runs every {every} rounds"))
            } else {
                let next = (round / every + 1) * every;
                Gate::Decided(
                    false,
                    format!("runs every {every} rounds; next in round {next}"),
                )
            }
        }
        When::Command { command } => Gate::Command(
            command
                .argv()
                .into_iter()
                .map(|a| {
                    a.replace("{round}", &round.to_string())
                        .replace("{agent}", &agent.name)
                })
                .collect(),
        ),
    }
}

/// One agent's next run as the state and the task queue decide it: the model on its ladder,
/// the task it takes, its timeout, its place in the pool. Pure: the round then marks the task
/// running and writes the prompt; `--dry-run` only shows it.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub model: String,
    pub task: Option<Task>,
    pub timeout: Duration,
    /// The timeout comes from the agent's history (`adaptiveTimeout`), not `timeoutS`.
    pub adaptive: bool,
    pub priority: u8,
    /// The agent's mean run time so far; 0 without history.
    pub expected_ms: u64,
}

pub fn job_plan(agent: &Agent, state: &State, queue: &Queue) -> JobPlan {
    let st = state.agent(&agent.name);
    let task = if agent.when == When::Keyword(WhenKeyword::Tasks) || queue.has_pending(&agent.name)
    {
        queue.next_for(&agent.name).cloned()
    } else {
        None
    };
    let adaptive = adaptive_timeout(agent, &st);
    JobPlan {
        model: agent.model_at(st.model_index),
        priority: task.as_ref().map_or(agent.priority, |t| t.priority),
        task,
        timeout: adaptive.unwrap_or_else(|| Duration::from_secs_f64(agent.timeout_s)),
        adaptive: adaptive.is_some(),
        expected_ms: st.mean_run_ms().unwrap_or(0),
    }
}

pub type QueueKey = (u8, std::cmp::Reverse<u64>, usize);

/// The pool's order (SPEC section 4): priority first, then the longest expected run first (the
/// phase's makespan approaches its longest chain), then mission order.
pub fn queue_key(priority: u8, expected_ms: u64, index: usize) -> QueueKey {
    (priority, std::cmp::Reverse(expected_ms), index)
}

/// An agent's prompt for a round, rendered in memory: the round writes it to the state folder,
/// `--dry-run` only measures it. A resumed session's prompt is `{{changes}}` alone.
#[allow(clippy::too_many_arguments)]
pub fn render_prompt(
    env: &Env,
    agent: &Agent,
    round: u32,
    model: &str,
    task: Option<&Task>,
    state: &State,
    cache: Option<&mut BTreeMap<String, String>>,
    resumed: bool,
) -> Result<prompt::Rendered> {
    let template = if resumed {
        prompt::RESUMED_TEMPLATE.to_string()
    } else {
        prompt::load_template(env.mission_dir, agent)?
    };
    let ctx = prompt::Context {
        agent,
        round,
        model,
        task,
        state,
        sim_data: env.sim_data(),
        mission: env.mission,
        mission_dir: env.mission_dir,
        git: cache.is_some().then_some(env.git),
        root: env.root(),
        grace: env.mission.grace(),
        run_commands: cache.is_some(),
    };
    let mut scratch = BTreeMap::new();
    Ok(prompt::build(
        &template,
        &ctx,
        cache.unwrap_or(&mut scratch),
    ))
}
