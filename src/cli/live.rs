//! The live view: what a person at a terminal sees while a round runs. A block at the bottom of
//! the terminal shows the round's running agents (ticking), the ones waiting in the pool's
//! queue, the sims and the tests, and the round's cost so far; above it, the same permanent
//! one-line summaries that [`events::describe`] gives everywhere else.
//!
//! Only used when stderr is a terminal that understands ANSI (`TERM` is not `dumb`); off a
//! terminal orch keeps plain timestamped lines, so CI logs and files never see an escape code.
//!
//! How it stays clean: the block is redrawn in place (cursor up over the lines it drew, erase to
//! the end of the screen, draw again), each line cut to the terminal's width so nothing wraps
//! and the count of lines drawn stays exact. A permanent line first erases the block, is printed,
//! and the block comes back under it; when a round ends the block is erased for good, so the
//! scrollback holds only permanent lines. Log records (`log::warn!` and friends) go through the
//! same screen ([`LogWriter`]), because a line written into the middle of the block would shift
//! it and leave a torn copy behind.
//!
//! Threads: events arrive under the emitter's mutex (from the main thread and pool workers); a
//! ticker thread (crossbeam `tick`, 10 a second, missed ticks do not pile up) redraws the
//! block so the times tick. Both go through one `Mutex<Screen>`, the only writer to stderr.

use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, tick, Sender};

use crate::events::{describe, Event, Sink, Verbosity};
use crate::roundlog::{Cause, Phase, RoundStatus, RunStatus};
use crate::units;

/// How often the block is redrawn: often enough for times to tick smoothly, rarely enough to
/// cost nothing and not to flicker.
const FRAME: Duration = Duration::from_millis(100);

/// Whether the live view fits this terminal: stderr is a terminal and `TERM` is not `dumb`.
pub fn supported() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Colors unless `NO_COLOR` is set to something (https://no-color.org).
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The sink: owns the screen and the ticker thread.
pub struct Live {
    screen: Arc<Mutex<Screen>>,
    stop: Option<Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    /// A live view on stderr.
    pub fn stderr(verbosity: Verbosity, color: bool) -> Live {
        Live::new(Box::new(std::io::stderr()), verbosity, color, terminal_size)
    }

    /// A live view writing to `out`; `size` gives the terminal's columns and rows.
    pub fn new(
        out: Box<dyn Write + Send>,
        verbosity: Verbosity,
        color: bool,
        size: fn() -> (usize, usize),
    ) -> Live {
        let screen = Arc::new(Mutex::new(Screen {
            out,
            verbosity,
            color,
            size,
            round: None,
            total_before: 0.0,
            drawn: 0,
            last_draw: None,
            pending_log: Vec::new(),
        }));
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&screen));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let weak = Arc::downgrade(&screen);
        let ticker = std::thread::Builder::new()
            .name("orch-live".into())
            .spawn(move || {
                let ticks = tick(FRAME);
                loop {
                    select! {
                        recv(ticks) -> _ => {
                            let Some(screen) = weak.upgrade() else { break };
                            screen.lock().unwrap_or_else(|e| e.into_inner()).draw();
                        }
                        // The sender is dropped by `finish`: a disconnected channel is ready at
                        // once, which is exactly the signal to end.
                        recv(stopped) -> _ => break,
                    }
                }
            })
            .ok();
        Live {
            screen,
            stop: Some(stop),
            ticker,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Screen> {
        self.screen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for Live {
    fn event(&mut self, event: &Event) {
        self.lock().event(event);
    }

    fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let mut s = self.lock();
        s.round = None;
        s.erase_and_print(&[]);
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        *active = None;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.finish();
        }
    }
}

/// The screen the live view is drawn on, while there is one.
static ACTIVE: Mutex<Option<Weak<Mutex<Screen>>>> = Mutex::new(None);

/// Where log records go (env_logger's target): above the live block while there is one, else
/// straight to stderr.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let screen = ACTIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(Weak::upgrade);
        match screen {
            Some(s) => {
                s.lock().unwrap_or_else(|e| e.into_inner()).log(buf);
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// What the view knows of the round in progress.
struct RoundView {
    round: u32,
    started: Instant,
    stage: String,
    max_concurrency: usize,
    cost: f64,
    running: Vec<Running>,
    /// Waiting in the pool, in the order it starts them.
    queued: Vec<String>,
    /// Active, but their phase has not started yet (review agents during Phase A).
    later: Vec<String>,
    finished: usize,
    sims: Vec<(String, Instant)>,
    tests: Option<(Instant, u32)>,
    /// Providers being waited out.
    waits: Vec<Wait>,
}

/// A provider's limit being waited out (`limitWait` until `limitResume`).
struct Wait {
    provider: String,
    /// Its agents, which run again after the wait.
    agents: Vec<String>,
    cause: Cause,
    /// When the provider takes requests again.
    until: Instant,
}

struct Running {
    agent: String,
    model: String,
    task: Option<String>,
    started: Instant,
    timeout_ms: u64,
    /// What it did last (an `agentActivity` event) and when that came.
    activity: Option<(String, Instant)>,
}

struct Screen {
    out: Box<dyn Write + Send>,
    verbosity: Verbosity,
    color: bool,
    size: fn() -> (usize, usize),
    round: Option<RoundView>,
    /// The run's cost before the round in progress (from the last round's end).
    total_before: f64,
    /// Lines of the block on the screen now, the cursor on the line below them.
    drawn: usize,
    last_draw: Option<Instant>,
    /// A log record's bytes until its line ends.
    pending_log: Vec<u8>,
}

impl Screen {
    fn event(&mut self, event: &Event) {
        self.update(event);
        let line = describe(event, self.verbosity).map(|text| self.paint_line(event, &text));
        match line {
            Some(l) => self.erase_and_print(&[l]),
            None => {
                // The block changed (an agent started, a sim ended quietly): show it now unless
                // a frame was drawn just now; the ticker catches up within one frame.
                if self.last_draw.is_none_or(|t| t.elapsed() >= FRAME) {
                    self.draw();
                }
            }
        }
    }

    /// Follows one event: a round's start and end here, what happens within it in
    /// `update_round`.
    fn update(&mut self, event: &Event) {
        match event {
            Event::RoundStart { round, active, .. } => {
                self.round = Some(RoundView {
                    round: *round,
                    started: Instant::now(),
                    stage: "planning".into(),
                    max_concurrency: 0,
                    cost: 0.0,
                    running: Vec::new(),
                    queued: Vec::new(),
                    later: active.clone(),
                    finished: 0,
                    sims: Vec::new(),
                    tests: None,
                    waits: Vec::new(),
                })
            }
            Event::RoundEnd { total_cost_usd, .. } => {
                self.round = None;
                self.total_before = *total_cost_usd;
            }
            _ => {}
        }
        let Some(r) = self.round.as_mut() else { return };
        Self::update_round(r, event);
    }

    /// What an event within a round changes in its view: stage, queue, running agents, sims,
    /// tests, waits on a provider's limit.
    fn update_round(r: &mut RoundView, event: &Event) {
        match event {
            Event::PhaseStart {
                phase,
                queue,
                max_concurrency,
                ..
            } => {
                r.stage = match phase {
                    Phase::Code => "phase A (code)".into(),
                    Phase::Review => "phase B (review)".into(),
                };
                r.max_concurrency = *max_concurrency;
                r.later.retain(|a| !queue.contains(a));
                r.queued = queue.clone();
            }
            Event::AgentStart {
                agent,
                model,
                task,
                timeout_ms,
                ..
            } => {
                r.queued.retain(|a| a != agent);
                r.later.retain(|a| a != agent);
                r.running.push(Running {
                    agent: agent.clone(),
                    model: model.clone(),
                    task: task.clone(),
                    started: Instant::now(),
                    timeout_ms: *timeout_ms,
                    activity: None,
                });
            }
            Event::AgentActivity {
                agent, activity, ..
            } => {
                if let Some(a) = r.running.iter_mut().find(|a| &a.agent == agent) {
                    a.activity = Some((activity.clone(), Instant::now()));
                }
            }
            // An amending end is the same run settled again after the tests: counted once.
            Event::AgentEnd { amended: true, .. } => {}
            Event::AgentEnd {
                agent, cost_usd, ..
            } => {
                r.running.retain(|a| &a.agent != agent);
                r.queued.retain(|a| a != agent);
                r.later.retain(|a| a != agent);
                r.finished += 1;
                r.cost += cost_usd;
            }
            Event::SimStart { sim, .. } => r.sims.push((sim.clone(), Instant::now())),
            Event::SimEnd { sim, .. } => r.sims.retain(|(s, _)| s != sim),
            Event::TestsStart { attempt, .. } => {
                r.stage = "tests".into();
                r.tests = Some((Instant::now(), *attempt));
            }
            Event::TestsEnd { .. } => {
                r.tests = None;
                r.stage = "after the tests".into();
            }
            Event::Revert {
                agent: Some(agent), ..
            } => r.stage = format!("took out {agent}'s change"),
            Event::Revert { .. } => r.stage = "reverted".into(),
            Event::Commit { .. } => r.stage = "committed".into(),
            Event::LimitWait {
                provider,
                agents,
                cause,
                wait_ms,
                ..
            } => {
                r.waits.retain(|w| &w.provider != provider);
                r.waits.push(Wait {
                    provider: provider.clone(),
                    agents: agents.clone(),
                    cause: *cause,
                    until: Instant::now() + Duration::from_millis(*wait_ms),
                });
            }
            Event::LimitResume { provider, .. } => r.waits.retain(|w| &w.provider != provider),
            _ => {}
        }
    }

    /// A permanent line: the event's description, colored by what it means.
    fn paint_line(&self, event: &Event, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match event {
            Event::Revert { .. } | Event::Stop { .. } => "31",
            Event::Warning { .. } | Event::Escalation { .. } => "33",
            Event::AgentEnd { status, .. } => match status {
                RunStatus::Ok => "",
                RunStatus::Empty | RunStatus::Cancelled => "33",
                RunStatus::Failed | RunStatus::Timeout | RunStatus::Conflict => "31",
            },
            Event::TestsEnd { regression, .. } if *regression => "31",
            Event::RoundEnd { status, .. } => match status {
                RoundStatus::Ok => "1",
                RoundStatus::Skipped => "2",
                RoundStatus::Reverted | RoundStatus::Failed | RoundStatus::Interrupted => "1;31",
            },
            Event::Commit { .. } => "32",
            _ => "",
        };
        if code.is_empty() {
            text.to_string()
        } else {
            format!("\x1b[{code}m{text}\x1b[0m")
        }
    }

    /// A log record's bytes: printed above the block once its line is complete.
    fn log(&mut self, buf: &[u8]) {
        self.pending_log.extend_from_slice(buf);
        let Some(end) = self.pending_log.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let text: Vec<u8> = self.pending_log.drain(..=end).collect();
        let lines: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_string)
            .collect();
        self.erase_and_print(&lines);
    }

    /// Erases the block, prints permanent lines, draws the block again under them.
    fn erase_and_print(&mut self, lines: &[String]) {
        let mut buf = self.erase();
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        self.drawn = 0;
        let (frame, n) = self.frame();
        buf.extend_from_slice(&frame);
        self.drawn = n;
        self.last_draw = Some(Instant::now());
        let _ = self.out.write_all(&buf);
        let _ = self.out.flush();
    }

    /// Redraws the block in place.
    fn draw(&mut self) {
        if self.round.is_none() && self.drawn == 0 {
            return;
        }
        self.erase_and_print(&[]);
    }

    /// The escape codes that take the cursor back to the block's first line and erase it all.
    fn erase(&self) -> Vec<u8> {
        if self.drawn == 0 {
            Vec::new()
        } else {
            format!("\x1b[{}A\r\x1b[J", self.drawn).into_bytes()
        }
    }

    /// The block's bytes and its number of lines.
    fn frame(&self) -> (Vec<u8>, usize) {
        let Some(r) = &self.round else {
            return (Vec::new(), 0);
        };
        let (cols, rows) = (self.size)();
        let lines = block(r, self.total_before, Instant::now());
        // Never taller than the terminal: cursor-up stops at the top row, so a taller block
        // could not be erased and would tear.
        let max = rows.saturating_sub(2).max(1);
        let mut shown: Vec<(Style, String)> = lines.into_iter().take(max).collect();
        if shown.len() == max && max > 1 {
            shown.pop();
            shown.push((Style::Dim, "  ...".into()));
        }
        let mut out = Vec::new();
        for (style, text) in &shown {
            let text = cut(text, cols.saturating_sub(1).max(10));
            let line = match (self.color, style) {
                (false, _) => text,
                (true, Style::Head) => format!("\x1b[1m{text}\x1b[0m"),
                (true, Style::Running) => format!("\x1b[36m{text}\x1b[0m"),
                (true, Style::Dim) => format!("\x1b[2m{text}\x1b[0m"),
            };
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        (out, shown.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Head,
    Running,
    Dim,
}

/// The block's lines for a round at instant `now`.
fn block(r: &RoundView, total_before: f64, now: Instant) -> Vec<(Style, String)> {
    let since = |t: Instant| now.saturating_duration_since(t).as_millis() as u64;
    let mut lines = vec![(
        Style::Head,
        format!(
            "round {} · {} · {}{} · {} this round, {} in all",
            r.round,
            ticking(since(r.started)),
            r.stage,
            if r.max_concurrency > 0 && !r.running.is_empty() {
                format!(" · {}/{} slots busy", r.running.len(), r.max_concurrency)
            } else {
                String::new()
            },
            units::usd(r.cost),
            units::usd(total_before + r.cost)
        ),
    )];
    let width = r
        .running
        .iter()
        .map(|a| a.agent.len())
        .chain(r.queued.iter().map(String::len))
        .chain(["post-sim".len()])
        .max()
        .unwrap_or(8);
    for a in &r.running {
        let mut line = format!(
            "  > {:<width$}  running {:>7}",
            a.agent,
            ticking(since(a.started))
        );
        if a.timeout_ms > 0 {
            line.push_str(&format!(" of {}", units::duration_ms(a.timeout_ms)));
        }
        if !a.model.is_empty() {
            line.push_str(&format!("  {}", a.model));
        }
        if let Some(t) = &a.task {
            line.push_str(&format!("  task {t}"));
        }
        if let Some((what, at)) = &a.activity {
            line.push_str(&format!("  · {what}, {} s ago", at.elapsed().as_secs()));
        }
        lines.push((Style::Running, line));
    }
    for (i, q) in r.queued.iter().enumerate() {
        lines.push((
            Style::Dim,
            format!("  . {q:<width$}  queued #{} (pool full)", i + 1),
        ));
    }
    if !r.later.is_empty() {
        lines.push((
            Style::Dim,
            format!("  . {}  wait for phase B", r.later.join(", ")),
        ));
    }
    for (sim, t) in &r.sims {
        lines.push((
            Style::Running,
            format!(
                "  > {:<width$}  running {:>7}",
                format!("{sim}-sim"),
                ticking(since(*t))
            ),
        ));
    }
    for Wait {
        provider,
        agents,
        cause,
        until,
    } in &r.waits
    {
        // A countdown: the time left until the provider takes requests again.
        let left = until.saturating_duration_since(now).as_millis() as u64;
        lines.push((
            Style::Dim,
            format!(
                "  ~ {provider} limited ({cause}): {} left, then {}",
                ticking(left),
                agents.join(", ")
            ),
        ));
    }
    if let Some((t, attempt)) = r.tests {
        lines.push((
            Style::Running,
            format!(
                "  > {:<width$}  running {:>7}{}",
                "tests",
                ticking(since(t)),
                if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                }
            ),
        ));
    }
    lines
}

/// A ticking time: tenths of a second under a minute, so it moves at every frame.
fn ticking(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        units::duration_ms(ms)
    }
}

/// At most `max` characters (the block's text is plain: no escape codes yet).
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('~');
        s
    }
}

/// The terminal's columns and rows (stderr's), or 80x24 when it cannot say.
fn terminal_size() -> (usize, usize) {
    // SAFETY: TIOCGWINSZ fills a `winsize` we own; the fd is stderr, valid for the process.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (80, 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared buffer standing in for the terminal.
    #[derive(Clone, Default)]
    struct Term(Arc<Mutex<Vec<u8>>>);

    impl Write for Term {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Plays the bytes the view wrote on a tiny terminal (the escape codes the view uses:
    /// cursor up, carriage return, erase to the end of the screen, colors) and returns the
    /// lines left on it, scrollback included.
    fn play(bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines: Vec<String> = vec![String::new()];
        let mut row = 0usize;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => {
                    assert_eq!(chars.next(), Some('['), "unknown escape in {text:?}");
                    let mut arg = String::new();
                    let cmd = loop {
                        let c = chars.next().expect("an escape that does not end");
                        if c.is_ascii_alphabetic() {
                            break c;
                        }
                        arg.push(c);
                    };
                    match cmd {
                        'A' => row -= arg.parse::<usize>().unwrap(),
                        'J' => {
                            lines.truncate(row + 1);
                            lines[row].clear();
                        }
                        'm' => {}
                        other => panic!("unexpected escape {other}"),
                    }
                }
                '\r' => lines[row].clear(),
                '\n' => {
                    row += 1;
                    if lines.len() <= row {
                        lines.push(String::new());
                    }
                }
                c => lines[row].push(c),
            }
        }
        lines
    }

    fn size() -> (usize, usize) {
        (100, 20)
    }

    fn start(agent: &str) -> Event {
        Event::AgentStart {
            round: 1,
            agent: agent.into(),
            phase: Phase::Code,
            model: "haiku".into(),
            task: None,
            timeout_ms: 900_000,
        }
    }

    fn end(agent: &str) -> Event {
        Event::AgentEnd {
            round: 1,
            agent: agent.into(),
            phase: Phase::Code,
            model: "haiku".into(),
            status: RunStatus::Ok,
            exit_code: Some(0),
            elapsed_ms: 1200,
            cost_usd: 0.25,
            cost_known: true,
            changed_files: 1,
            error: None,
            cause: None,
            resets_at: None,
            amended: false,
            aside: None,
            git_settings_put_back: Vec::new(),
            sandbox_refused: Vec::new(),
        }
    }

    #[test]
    fn the_block_shows_running_and_queued_agents_and_leaves_only_permanent_lines() {
        let term = Term::default();
        let mut live = Live::new(Box::new(term.clone()), Verbosity::Normal, true, size);
        live.event(&Event::RoundStart {
            round: 1,
            base: "abcdef1234567".into(),
            active: vec!["a".into(), "b".into(), "c".into(), "rev".into()],
            idle: vec![],
        });
        live.event(&Event::PhaseStart {
            round: 1,
            phase: Phase::Code,
            queue: vec!["a".into(), "b".into(), "c".into()],
            max_concurrency: 2,
        });
        live.event(&start("a"));
        live.event(&start("b"));
        live.event(&Event::SimStart {
            round: 1,
            sim: "pre".into(),
        });
        // Mid-round: the screen shows the block under the round's first line.
        live.lock().draw();
        let mid = play(&term.0.lock().unwrap());
        let mid = mid.join("\n");
        assert!(mid.contains("round 1 · "), "{mid}");
        assert!(mid.contains("> a "), "{mid}");
        assert!(mid.contains("running"), "{mid}");
        assert!(mid.contains(". c "), "{mid}");
        assert!(mid.contains("queued #1"), "{mid}");
        assert!(mid.contains("rev  wait for phase B"), "{mid}");
        assert!(mid.contains("pre-sim"), "{mid}");
        assert!(mid.contains("2/2 slots busy"), "{mid}");
        // What a running agent did last shows on its line.
        live.event(&Event::AgentActivity {
            round: 1,
            agent: "b".into(),
            activity: "Bash `npm test`, 3rd time".into(),
        });
        live.lock().draw();
        let now = play(&term.0.lock().unwrap()).join("\n");
        assert!(
            now.lines()
                .any(|l| l.contains("> b ") && l.contains("· Bash `npm test`, 3rd time, 0 s ago")),
            "{now}"
        );
        live.event(&end("a"));
        live.event(&Event::RoundEnd {
            round: 1,
            status: RoundStatus::Ok,
            elapsed_ms: 2000,
            cost_usd: 0.25,
            total_cost_usd: 0.25,
            commit: None,
            nothing_landed: false,
        });
        live.finish();
        let screen: Vec<String> = play(&term.0.lock().unwrap())
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            screen,
            vec![
                "round 1: base abcdef1234, agents: a, b, c, rev".to_string(),
                "round 1: a ok in 1.2s, 1 file changed, $0.25".to_string(),
                "round 1: ok in 2.0s, cost $0.25 (total $0.25)".to_string(),
            ]
        );
    }

    #[test]
    fn a_limit_wait_shows_a_countdown_until_it_resumes() {
        let term = Term::default();
        let mut live = Live::new(Box::new(term.clone()), Verbosity::Normal, false, size);
        live.event(&Event::RoundStart {
            round: 1,
            base: "abcdef1234567".into(),
            active: vec!["a".into()],
            idle: vec![],
        });
        live.event(&Event::LimitWait {
            round: 1,
            provider: "anthropic".into(),
            agents: vec!["a".into()],
            cause: crate::roundlog::Cause::RateLimited,
            error: "API Error: 429".into(),
            until: "2026-01-01T00:00:00Z".into(),
            wait_ms: 90_000,
        });
        live.lock().draw();
        let mid = play(&term.0.lock().unwrap()).join("\n");
        assert!(
            mid.contains("~ anthropic limited (rateLimited): 1m") && mid.contains("s left, then a"),
            "{mid}"
        );
        assert!(
            mid.contains(
                "round 1: waiting 1m30s for anthropic's limit (rateLimited: API Error: 429)"
            ),
            "{mid}"
        );
        live.event(&Event::LimitResume {
            round: 1,
            provider: "anthropic".into(),
            agents: vec!["a".into()],
            waited_ms: 90_000,
        });
        live.lock().draw();
        let after = play(&term.0.lock().unwrap()).join("\n");
        assert!(!after.contains("left, then a"), "{after}");
        live.finish();
    }

    #[test]
    fn without_color_there_is_no_color_code() {
        let term = Term::default();
        let mut live = Live::new(Box::new(term.clone()), Verbosity::Normal, false, size);
        live.event(&Event::RoundStart {
            round: 1,
            base: "abc".into(),
            active: vec!["a".into()],
            idle: vec![],
        });
        live.event(&start("a"));
        live.lock().draw();
        live.finish();
        let out = String::from_utf8_lossy(&term.0.lock().unwrap()).into_owned();
        assert!(
            !out.contains("m\x1b") && !out.contains("\x1b[0m"),
            "{out:?}"
        );
    }

    #[test]
    fn block_lines_never_wrap_and_never_outgrow_the_terminal() {
        fn tiny() -> (usize, usize) {
            (30, 6)
        }
        let term = Term::default();
        let mut live = Live::new(Box::new(term.clone()), Verbosity::Quiet, false, tiny);
        let names: Vec<String> = (0..10)
            .map(|i| format!("agent-with-a-long-name-{i}"))
            .collect();
        live.event(&Event::RoundStart {
            round: 1,
            base: "abc".into(),
            active: names.clone(),
            idle: vec![],
        });
        live.event(&Event::PhaseStart {
            round: 1,
            phase: Phase::Code,
            queue: names,
            max_concurrency: 2,
        });
        let (frame, n) = live.lock().frame();
        assert!(n <= 4, "{n} lines on a 6-row terminal");
        for l in String::from_utf8(frame).unwrap().lines() {
            assert!(l.chars().count() < 30, "{l:?}");
        }
        live.finish();
    }

    #[test]
    fn log_records_print_above_the_block() {
        let term = Term::default();
        let mut live = Live::new(Box::new(term.clone()), Verbosity::Quiet, false, size);
        live.event(&Event::RoundStart {
            round: 1,
            base: "abc".into(),
            active: vec!["a".into()],
            idle: vec![],
        });
        live.event(&start("a"));
        live.lock().draw();
        live.lock().log(b"[WARN  budget rea");
        live.lock().log(b"ched]\n");
        live.event(&end("a"));
        live.event(&Event::RoundEnd {
            round: 1,
            status: RoundStatus::Ok,
            elapsed_ms: 2000,
            cost_usd: 0.25,
            total_cost_usd: 0.25,
            commit: None,
            nothing_landed: false,
        });
        live.finish();
        let screen: Vec<String> = play(&term.0.lock().unwrap())
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(screen, vec!["[WARN  budget reached]".to_string()]);
    }
}
