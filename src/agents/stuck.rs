//! Whether a run that is still going is stuck (issue 31), decided on evidence: what its output
//! shows it doing ([`Activity`], from its adapter) and the states its tree passes through (a
//! fingerprint of the worktree, taken now and then by the executor). Pure: no clock, no files;
//! the caller says when each thing was seen, and asks for a [`Verdict`] when it likes.
//!
//! - **Idle**: no progress of any kind (a line of output, a tool call, a tree that changed, its
//!   processes using the CPU) for `idle`, or for `idle_in_tool` while one of its tool calls
//!   runs (seen called, its result not yet back): a CLI that prints every token is never quiet
//!   while its model writes, but a tool call may wait quietly on the network. A slow run that writes a file now and then is not
//!   idle, nor one whose tool call compiles or runs tests for a long time without a word: its
//!   processes use at least [`BUSY_SHARE`] of a core. A process waiting on a prompt, a lock or
//!   a dead connection uses next to none (Claude Code 2.1.332 waiting on a stalled stream: 1.7 %
//!   of a core, measured).
//! - **Loop**: the same tool call with the same input `repeats` times in a row (other output
//!   between them does not break the row; another call, or the tree reaching a state it never
//!   had, does), or the tree coming back to a state it had, for the `repeats`-th time (an edit
//!   made and undone, again and again). Output that repeats is not a loop: a plain command
//!   saying "waiting..." is alive, and only tool calls and tree states tell what it does.
//! - **Over budget**: the cost so far (the CLI's running total, else its tokens at the
//!   model's price) above what is left of the agent's budget.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::cost::{price_tokens, ModelPrice};
use super::progress::Activity;
use crate::roundlog::Tokens;
use crate::units::{duration_ms, usd};

/// The share of one core a run's processes must use between two samples for that to count as
/// progress.
pub const BUSY_SHARE: f64 = 0.10;

/// The most tool calls counted as running at once: a stream of calls whose results never come
/// (a loop printing one call, with `repeats` off) does not grow without end.
const RUNNING_MAX: usize = 64;

/// The mission's `stuck` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// No progress for this long is idle.
    pub idle: Duration,
    /// No progress for this long while a tool call runs is idle.
    pub idle_in_tool: Duration,
    /// The same call this many times in a row, or the tree back in one state this many times,
    /// is a loop.
    pub repeats: u32,
}

impl From<crate::mission::StuckLimits> for Settings {
    /// The mission's rules for one agent, 0 (off) as a limit never reached.
    fn from(l: crate::mission::StuckLimits) -> Settings {
        let seconds = |s: f64| {
            if s > 0.0 {
                Duration::from_secs_f64(s)
            } else {
                Duration::MAX
            }
        };
        Settings {
            idle: seconds(l.idle_s),
            idle_in_tool: seconds(l.idle_in_tool_s),
            repeats: if l.repeats > 0 { l.repeats } else { u32::MAX },
        }
    }
}

/// What is left to spend, and the price of tokens for a CLI that prints no cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub left_usd: f64,
    pub price: Option<ModelPrice>,
}

/// What the detector makes of a run so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Working,
    /// No progress for `silent` (the `idle` setting, or `idle_in_tool` while the tool call
    /// `tool` ran: at least that long).
    Idle {
        silent: Duration,
        tool: Option<String>,
    },
    /// `label` seen `times` times: a tool call, or a state of the tree.
    Loop {
        label: String,
        times: u32,
    },
    /// `cost_usd` spent, more than the `left_usd` the run had.
    OverBudget {
        cost_usd: f64,
        left_usd: f64,
    },
}

impl Verdict {
    /// What it saw, for the round log and the live view: "no output or file change for
    /// 4m00s", "Bash `npm test` called 6 times with the same input".
    pub fn describe(&self) -> String {
        match self {
            Verdict::Working => "working".into(),
            Verdict::Idle { silent, tool } => {
                let silent = duration_ms(silent.as_millis() as u64);
                match tool {
                    Some(tool) => {
                        format!("no output or file change for {silent} while {tool} ran")
                    }
                    None => format!("no output or file change for {silent}"),
                }
            }
            Verdict::Loop { label, times } => format!("{label} {times} times"),
            Verdict::OverBudget { cost_usd, left_usd } => format!(
                "spent {} while running, over the {} left of its budgetUsd",
                usd(*cost_usd),
                usd(*left_usd)
            ),
        }
    }
}

/// The run of identical tool calls now going.
#[derive(Debug, Clone)]
struct Streak {
    digest: u64,
    times: u32,
}

/// The last thing seen, for the live view.
#[derive(Debug, Clone)]
struct Last {
    at: Instant,
    what: String,
    /// The tool call's place in its streak (1 for a call or a change seen once).
    times: u32,
}

/// One run's detector: feed it what the run does, ask it for a [`Verdict`].
#[derive(Debug, Clone)]
pub struct Detector {
    settings: Settings,
    budget: Option<Budget>,
    last_progress: Instant,
    streak: Option<Streak>,
    tree: Option<u64>,
    visits: HashMap<u64, u32>,
    /// The first loop seen, at the moment it reached `repeats`: kept, so that the verdict
    /// says `repeats` times however many more lines came in the same look.
    looped: Option<(String, u32)>,
    /// The CLI's running total.
    cost: Option<f64>,
    /// Every token so far: figures that name no message added up, and each named message's
    /// largest figures (a message's lines repeat its usage; its last streamed figure is its
    /// final output count), kept up to date as they grow.
    tokens: Tokens,
    /// Each named message's largest figures so far.
    messages: HashMap<String, Tokens>,
    last: Option<Last>,
    /// The last CPU sample: when, and the processes' CPU seconds then.
    cpu: Option<(Instant, f64)>,
    /// The tool calls running now (called, their results not back yet), oldest first: their
    /// labels. A result takes the oldest away (the CLIs print no call's id with it here).
    running: VecDeque<String>,
}

impl Detector {
    /// A detector for a run that started at `start` (no progress yet: it is idle from then).
    pub fn new(settings: Settings, budget: Option<Budget>, start: Instant) -> Detector {
        Detector {
            settings,
            budget,
            last_progress: start,
            streak: None,
            tree: None,
            visits: HashMap::new(),
            looped: None,
            cost: None,
            tokens: Tokens::default(),
            messages: HashMap::new(),
            last: None,
            cpu: None,
            running: VecDeque::new(),
        }
    }

    /// The CPU time the run's processes had used by `at`, in seconds (a running total): at
    /// least [`BUSY_SHARE`] of a core since the last sample is progress.
    pub fn cpu(&mut self, at: Instant, seconds: f64) {
        if let Some((then, before)) = self.cpu {
            let wall = at.saturating_duration_since(then).as_secs_f64();
            if wall > 0.0 && seconds - before >= BUSY_SHARE * wall {
                self.last_progress = self.last_progress.max(at);
            }
        }
        self.cpu = Some((at, seconds));
    }

    /// Something the run's output showed at `at`.
    pub fn activity(&mut self, at: Instant, activity: &Activity) {
        self.last_progress = self.last_progress.max(at);
        match activity {
            Activity::Tool(call) => {
                let times = match &mut self.streak {
                    Some(s) if s.digest == call.digest => {
                        s.times += 1;
                        s.times
                    }
                    _ => {
                        self.streak = Some(Streak {
                            digest: call.digest,
                            times: 1,
                        });
                        1
                    }
                };
                if times == self.settings.repeats && self.looped.is_none() {
                    self.looped = Some((format!("{} called", call.label), times));
                }
                self.last = Some(Last {
                    at,
                    what: call.label.clone(),
                    times,
                });
                if self.running.len() == RUNNING_MAX {
                    self.running.pop_front();
                }
                self.running.push_back(call.label.clone());
            }
            Activity::ToolDone => {
                self.running.pop_front();
            }
            Activity::Tokens { message, tokens } => {
                // What the figure adds: all of it, or what it grows its message's by.
                let (input, output) = match message {
                    Some(id) => {
                        let seen = self.messages.entry(id.clone()).or_default();
                        let grown = (
                            tokens.input.saturating_sub(seen.input),
                            tokens.output.saturating_sub(seen.output),
                        );
                        seen.input = seen.input.max(tokens.input);
                        seen.output = seen.output.max(tokens.output);
                        grown
                    }
                    None => (tokens.input, tokens.output),
                };
                self.tokens.input = self.tokens.input.saturating_add(input);
                self.tokens.output = self.tokens.output.saturating_add(output);
            }
            Activity::Cost(total) => self.cost = Some(self.cost.unwrap_or(0.0).max(*total)),
            Activity::Output => {}
        }
    }

    /// The tree's state at `at`: its `fingerprint`, and `what` changed (the files, for a
    /// person). The first call sets where the run started.
    pub fn tree(&mut self, at: Instant, fingerprint: u64, what: &str) {
        if self.tree == Some(fingerprint) {
            return;
        }
        let first = self.tree.is_none();
        self.tree = Some(fingerprint);
        let visits = self.visits.entry(fingerprint).or_insert(0);
        *visits += 1;
        let visits = *visits;
        if first {
            return;
        }
        self.last_progress = self.last_progress.max(at);
        if visits == 1 {
            // A state never seen: the run moved on, so a row of identical calls is broken.
            self.streak = None;
        } else if visits == self.settings.repeats && self.looped.is_none() {
            self.looped = Some((format!("the tree back to the same state ({what})"), visits));
        }
        self.last = Some(Last {
            at,
            what: format!("changed {what}"),
            times: 1,
        });
    }

    /// The cost so far: the CLI's own running total, else its tokens at the price.
    pub fn cost_usd(&self) -> Option<f64> {
        if let Some(c) = self.cost {
            return Some(c);
        }
        let price = self.budget.as_ref()?.price.as_ref()?;
        (self.tokens != Tokens::default()).then(|| price_tokens(&self.tokens, price))
    }

    /// What the run is, at `now`.
    pub fn verdict(&self, now: Instant) -> Verdict {
        if let (Some(cost), Some(budget)) = (self.cost_usd(), &self.budget) {
            if cost > budget.left_usd {
                return Verdict::OverBudget {
                    cost_usd: cost,
                    left_usd: budget.left_usd,
                };
            }
        }
        if let Some((label, times)) = &self.looped {
            return Verdict::Loop {
                label: label.clone(),
                times: *times,
            };
        }
        // The setting, not the time since: the words stay the same however late the look.
        let idle = match self.running.front() {
            Some(_) => self.settings.idle_in_tool,
            None => self.settings.idle,
        };
        if now.saturating_duration_since(self.last_progress) >= idle {
            return Verdict::Idle {
                silent: idle,
                tool: self.running.front().cloned(),
            };
        }
        Verdict::Working
    }

    /// The last thing the run did: "Bash `npm test`, 3rd time", "changed src/lib.rs"; `None`
    /// before its first tool call or change.
    pub fn last_label(&self) -> Option<String> {
        let last = self.last.as_ref()?;
        Some(match last.times {
            1 => last.what.clone(),
            n => format!("{}, {} time", last.what, ordinal(n)),
        })
    }

    /// [`last_label`](Detector::last_label) and how long ago, for the live view: "Bash `npm
    /// test`, 3rd time, 4 s ago", "changed src/lib.rs, 12 s ago".
    pub fn last_activity(&self, now: Instant) -> Option<String> {
        let ago = now
            .saturating_duration_since(self.last.as_ref()?.at)
            .as_secs();
        Some(format!("{}, {ago} s ago", self.last_label()?))
    }
}

/// `2nd`, `3rd`, `11th`, `21st`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{by_cli_name, AgentCli};

    const SETTINGS: Settings = Settings {
        idle: Duration::from_secs(300),
        idle_in_tool: Duration::from_secs(300),
        repeats: 5,
    };

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Every activity of a recorded stdout, read by `cli`'s adapter.
    fn recorded(cli: &str, stdout: &str) -> Vec<Activity> {
        let adapter: &dyn AgentCli = by_cli_name(cli).unwrap();
        stdout
            .split_inclusive('\n')
            .flat_map(|l| adapter.activity(l.as_bytes()))
            .collect()
    }

    /// A detector fed `activities`, one a second from `t0`.
    fn fed(d: &mut Detector, t0: Instant, activities: &[Activity]) -> Instant {
        let mut t = t0;
        for a in activities {
            t += s(1);
            d.activity(t, a);
        }
        t
    }

    #[test]
    fn the_missions_limits_become_settings_and_zero_is_never_reached() {
        use crate::mission::StuckLimits;
        let on: Settings = StuckLimits::of(None, None, true).into();
        assert_eq!((on.idle, on.idle_in_tool, on.repeats), (s(120), s(300), 5));
        let off: Settings = StuckLimits::of(Some(0.0), Some(0), true).into();
        assert_eq!(
            (off.idle, off.idle_in_tool, off.repeats),
            (Duration::MAX, Duration::MAX, u32::MAX)
        );
    }

    #[test]
    fn a_silent_run_is_idle_after_idle_s_not_before() {
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, None, t0);
        d.tree(t0, 1, "");
        assert_eq!(d.verdict(t0 + s(299)), Verdict::Working);
        let v = d.verdict(t0 + s(300));
        assert_eq!(
            v,
            Verdict::Idle {
                silent: s(300),
                tool: None
            }
        );
        assert_eq!(v.describe(), "no output or file change for 5m00s");
        // The same tree, polled again, is no progress.
        d.tree(t0 + s(200), 1, "");
        assert_eq!(
            d.verdict(t0 + s(300)),
            Verdict::Idle {
                silent: s(300),
                tool: None
            }
        );
    }

    #[test]
    fn a_running_tool_call_gets_idle_in_tool_and_is_named() {
        let settings = Settings {
            idle: s(120),
            idle_in_tool: s(300),
            repeats: 5,
        };
        let t0 = Instant::now();
        let mut d = Detector::new(settings, None, t0);
        // Claude Code's recorded Bash call, then nothing while it runs.
        let lines = include_str!("../../fixtures/cli-output/real/claude-stream-loop.stdout");
        let call = recorded("claude", lines.lines().nth(1).unwrap());
        assert!(matches!(call[0], Activity::Tool(_)), "{call:?}");
        let at = fed(&mut d, t0, &call);
        assert_eq!(d.verdict(at + s(299)), Verdict::Working);
        let v = d.verdict(at + s(300));
        assert_eq!(
            v,
            Verdict::Idle {
                silent: s(300),
                tool: Some("Bash `git status --short`".into())
            }
        );
        assert_eq!(
            v.describe(),
            "no output or file change for 5m00s while Bash `git status --short` ran"
        );
        // Its result back (the recorded `user` line): the model's turn, 120 s again.
        let done = recorded("claude", lines.lines().nth(2).unwrap());
        assert_eq!(done, vec![Activity::ToolDone]);
        let at = fed(&mut d, at, &done);
        assert_eq!(d.verdict(at + s(119)), Verdict::Working);
        assert_eq!(
            d.verdict(at + s(120)),
            Verdict::Idle {
                silent: s(120),
                tool: None
            }
        );
    }

    #[test]
    fn parallel_tool_calls_run_until_the_last_result() {
        let settings = Settings {
            idle: s(120),
            idle_in_tool: s(300),
            repeats: 5,
        };
        let call = |cmd: &str| {
            let input = serde_json::json!({ "command": cmd });
            Activity::Tool(crate::agents::progress::ToolCall::new(
                "Bash",
                &input,
                format!("Bash `{cmd}`"),
            ))
        };
        let t0 = Instant::now();
        let mut d = Detector::new(settings, None, t0);
        // One message with two calls, then one result: the other still runs.
        let at = fed(
            &mut d,
            t0,
            &[call("make"), call("npm test"), Activity::ToolDone],
        );
        assert_eq!(d.verdict(at + s(299)), Verdict::Working);
        assert_eq!(
            d.verdict(at + s(300)),
            Verdict::Idle {
                silent: s(300),
                tool: Some("Bash `npm test`".into())
            }
        );
        let at = fed(&mut d, at, &[Activity::ToolDone]);
        assert_eq!(
            d.verdict(at + s(120)),
            Verdict::Idle {
                silent: s(120),
                tool: None
            }
        );
        // A result with no call running changes nothing; calls that never get one are bounded.
        d.activity(at, &Activity::ToolDone);
        for i in 0..1000 {
            d.activity(at, &call(&format!("c{i}")));
        }
        assert_eq!(d.running.len(), RUNNING_MAX);
    }

    #[test]
    fn the_recorded_stall_goes_idle_after_its_last_line() {
        // Claude Code and Codex against the mock's `stall`: the edit, then a model stream that
        // stops answering. Nothing after the tool result: idle once `idle` has passed.
        for (cli, out) in [
            (
                "claude",
                include_str!("../../fixtures/cli-output/real/claude-stream-stall.stdout"),
            ),
            (
                "claude",
                include_str!("../../fixtures/cli-output/real/claude-partial-stall.stdout"),
            ),
            (
                "codex",
                include_str!("../../fixtures/cli-output/real/codex-stall.stdout"),
            ),
            (
                "gemini",
                include_str!("../../fixtures/cli-output/real/gemini-stream-stall.stdout"),
            ),
        ] {
            let t0 = Instant::now();
            let mut d = Detector::new(SETTINGS, None, t0);
            let last = fed(&mut d, t0, &recorded(cli, out));
            assert_eq!(d.verdict(last + s(299)), Verdict::Working, "{cli}");
            assert_eq!(
                d.verdict(last + s(300)),
                Verdict::Idle {
                    silent: s(300),
                    tool: None
                },
                "{cli}"
            );
        }
    }

    #[test]
    fn the_recorded_loop_is_a_loop_at_repeats() {
        // The mock's `loop`: the same shell call answered 6 times, then the final message.
        for (cli, out, label) in [
            (
                "claude",
                include_str!("../../fixtures/cli-output/real/claude-stream-loop.stdout"),
                "Bash `git status --short` called",
            ),
            (
                "claude",
                include_str!("../../fixtures/cli-output/real/claude-partial-loop.stdout"),
                "Bash `git status --short` called",
            ),
            (
                "codex",
                include_str!("../../fixtures/cli-output/real/codex-loop.stdout"),
                "Shell `git status --short` called",
            ),
        ] {
            let t0 = Instant::now();
            let mut d = Detector::new(SETTINGS, None, t0);
            let mut verdicts = Vec::new();
            let mut t = t0;
            for a in recorded(cli, out) {
                t += s(1);
                d.activity(t, &a);
                verdicts.push(d.verdict(t));
            }
            let first = verdicts
                .iter()
                .position(|v| matches!(v, Verdict::Loop { .. }))
                .unwrap_or_else(|| panic!("{cli}: no loop in {verdicts:?}"));
            assert_eq!(
                verdicts[first],
                Verdict::Loop {
                    label: label.into(),
                    times: 5
                },
                "{cli}"
            );
            assert_eq!(
                verdicts[first].describe(),
                format!("{label} 5 times"),
                "{cli}"
            );
            // Latched: the sixth call does not change what was seen at the fifth.
            assert_eq!(d.verdict(t), verdicts[first], "{cli}");
        }
        // Gemini CLI stops itself after 4 identical calls ("Loop detected"): 4 < 5.
        let t0 = Instant::now();
        let mut d = Detector::new(
            Settings {
                repeats: 4,
                ..SETTINGS
            },
            None,
            t0,
        );
        let gemini = include_str!("../../fixtures/cli-output/real/gemini-stream-loop.stdout");
        let t = fed(&mut d, t0, &recorded("gemini", gemini));
        assert_eq!(
            d.verdict(t),
            Verdict::Loop {
                label: "run_shell_command `git status --short` called".into(),
                times: 4
            }
        );
    }

    #[test]
    fn the_recorded_edit_is_working() {
        for (cli, out) in [
            (
                "claude",
                include_str!("../../fixtures/cli-output/real/claude-stream-ok.stdout"),
            ),
            (
                "codex",
                include_str!("../../fixtures/cli-output/real/codex-ok.stdout"),
            ),
            (
                "gemini",
                include_str!("../../fixtures/cli-output/real/gemini-stream-ok.stdout"),
            ),
        ] {
            let t0 = Instant::now();
            let mut d = Detector::new(SETTINGS, None, t0);
            let t = fed(&mut d, t0, &recorded(cli, out));
            assert_eq!(d.verdict(t), Verdict::Working, "{cli}");
        }
    }

    #[test]
    fn slow_but_busy_is_never_stopped() {
        // No output at all, a new file every 4 minutes for two hours: never idle (300 s), never
        // a loop.
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, None, t0);
        d.tree(t0, 0, "");
        for i in 1..=30u64 {
            let at = t0 + s(240 * i);
            assert_eq!(d.verdict(at), Verdict::Working, "minute {}", 4 * i);
            d.tree(at, i, &format!("notes/{i}.md"));
        }
        assert_eq!(
            d.last_activity(t0 + s(240 * 30 + 12)).as_deref(),
            Some("changed notes/30.md, 12 s ago")
        );
    }

    #[test]
    fn processes_using_the_cpu_are_busy_and_a_trickle_is_not() {
        // A tool call that compiles for ten minutes without a word: half a core.
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, None, t0);
        for i in 0..=60u64 {
            d.cpu(t0 + s(10 * i), 5.0 * i as f64);
        }
        assert_eq!(d.verdict(t0 + s(600)), Verdict::Working);
        // A CLI waiting on a dead connection: 2 % of a core.
        let mut d = Detector::new(SETTINGS, None, t0);
        for i in 0..=60u64 {
            d.cpu(t0 + s(10 * i), 0.2 * i as f64);
        }
        assert_eq!(
            d.verdict(t0 + s(600)),
            Verdict::Idle {
                silent: s(300),
                tool: None
            }
        );
    }

    #[test]
    fn repeated_output_is_not_a_loop() {
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, None, t0);
        let t = fed(&mut d, t0, &vec![Activity::Output; 50]);
        assert_eq!(d.verdict(t), Verdict::Working);
        assert_eq!(d.last_activity(t), None);
    }

    #[test]
    fn a_different_call_or_a_new_tree_breaks_the_row() {
        let claude = include_str!("../../fixtures/cli-output/real/claude-stream-loop.stdout");
        let calls: Vec<Activity> = recorded("claude", claude)
            .into_iter()
            .filter(|a| matches!(a, Activity::Tool(_)))
            .collect();
        let edit = recorded(
            "claude",
            include_str!("../../fixtures/cli-output/real/claude-stream-ok.stdout"),
        )
        .into_iter()
        .find(|a| matches!(a, Activity::Tool(_)))
        .unwrap();
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, None, t0);
        d.tree(t0, 0, "");
        // 4 calls, the edit, 4 calls: never 5 in a row.
        let t = fed(&mut d, t0, &calls[..4]);
        let t = fed(&mut d, t, std::slice::from_ref(&edit));
        let t = fed(&mut d, t, &calls[..4]);
        assert_eq!(d.verdict(t), Verdict::Working);
        assert_eq!(
            d.last_activity(t + s(3)).as_deref(),
            Some("Bash `git status --short`, 4th time, 3 s ago")
        );
        // 4 calls, the tree reaches a new state, 4 calls: the same.
        d.tree(t, 7, "src/a.rs");
        let t = fed(&mut d, t, &calls[..4]);
        assert_eq!(d.verdict(t), Verdict::Working);
        let t = fed(&mut d, t, &calls[..1]);
        assert!(matches!(d.verdict(t), Verdict::Loop { times: 5, .. }));
    }

    #[test]
    fn back_and_forth_edits_are_a_loop() {
        // The tree goes A, B, A, B, ...: A's fifth visit is the loop.
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, None, t0);
        let mut t = t0;
        d.tree(t, 10, "");
        for visit in 2..=5 {
            t += s(10);
            d.tree(t, 11, "src/a.rs");
            assert_eq!(d.verdict(t), Verdict::Working, "visit {visit}");
            t += s(10);
            d.tree(t, 10, "src/a.rs");
        }
        let v = d.verdict(t);
        assert_eq!(
            v,
            Verdict::Loop {
                label: "the tree back to the same state (src/a.rs)".into(),
                times: 5
            }
        );
        assert_eq!(
            v.describe(),
            "the tree back to the same state (src/a.rs) 5 times"
        );
    }

    #[test]
    fn a_running_cost_over_what_is_left_is_over_budget() {
        // aider's session total, as it prints it after each reply.
        let aider = by_cli_name("aider").unwrap();
        let line = |usd: &str| {
            aider.activity(
                format!("Tokens: 2.3k sent, 156 received. Cost: $0.01 message, ${usd} session.\n")
                    .as_bytes(),
            )
        };
        let budget = Budget {
            left_usd: 0.05,
            price: None,
        };
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, Some(budget), t0);
        for a in line("0.04") {
            d.activity(t0, &a);
        }
        assert_eq!(d.verdict(t0), Verdict::Working);
        for a in line("0.06") {
            d.activity(t0, &a);
        }
        let v = d.verdict(t0);
        assert!(
            matches!(v, Verdict::OverBudget { cost_usd, .. } if (cost_usd - 0.06).abs() < 1e-9)
        );
        assert_eq!(
            v.describe(),
            "spent $0.06 while running, over the $0.05 left of its budgetUsd"
        );
    }

    #[test]
    fn partial_messages_give_each_message_its_final_output_count() {
        // Claude Code with --include-partial-messages, recorded: two messages of 1200 input
        // and 80 output tokens; each whole message's line says 1 output token (the stream's
        // first figure), its `message_delta` line the final 80.
        let partial = include_str!("../../fixtures/cli-output/real/claude-partial-ok.stdout");
        let plain = include_str!("../../fixtures/cli-output/real/claude-stream-ok.stdout");
        let price = ModelPrice {
            input_per_m_tok: 1.0,
            output_per_m_tok: 1000.0,
        };
        let cost = |out: &str| {
            let budget = Budget {
                left_usd: 1.0,
                price: Some(price.clone()),
            };
            let t0 = Instant::now();
            let mut d = Detector::new(SETTINGS, Some(budget), t0);
            fed(&mut d, t0, &recorded("claude", out));
            d.cost_usd().unwrap()
        };
        let at_price = |input: f64, output: f64| (input + output * 1000.0) / 1e6;
        assert!((cost(partial) - at_price(2400.0, 160.0)).abs() < 1e-12);
        // Without partial messages, only the first figures: a lower bound.
        assert!((cost(plain) - at_price(2400.0, 2.0)).abs() < 1e-12);
    }

    #[test]
    fn tokens_are_priced_once_per_message() {
        // Claude Code's recorded loop: 7 messages of 1200 input tokens (and the stream's first
        // output figure, 1), each counted once; a running total (aider's) wins over them.
        let claude = include_str!("../../fixtures/cli-output/real/claude-stream-loop.stdout");
        let mut acts = recorded("claude", claude);
        // A message printed twice (one line per content block) is counted once.
        let again = acts
            .iter()
            .find(|a| matches!(a, Activity::Tokens { .. }))
            .cloned()
            .unwrap();
        acts.insert(1, again);
        let result = Activity::Cost(0.0224);
        let price = ModelPrice {
            input_per_m_tok: 3.0,
            output_per_m_tok: 15.0,
        };
        let budget = Budget {
            left_usd: 1.0,
            price: Some(price),
        };
        let t0 = Instant::now();
        let mut d = Detector::new(SETTINGS, Some(budget), t0);
        fed(&mut d, t0, &acts);
        let expected = (7.0 * 1200.0 * 3.0 + 7.0 * 15.0) / 1e6;
        assert!((d.cost_usd().unwrap() - expected).abs() < 1e-12);
        d.activity(t0, &result);
        assert!((d.cost_usd().unwrap() - 0.0224).abs() < 1e-12);
        // No price, no running total: no cost known, never over budget.
        let mut d = Detector::new(
            SETTINGS,
            Some(Budget {
                left_usd: 0.0,
                price: None,
            }),
            t0,
        );
        fed(
            &mut d,
            t0,
            &recorded(
                "codex",
                include_str!("../../fixtures/cli-output/real/codex-loop.stdout"),
            )[..5],
        );
        assert_eq!(d.cost_usd(), None);
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .into();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
