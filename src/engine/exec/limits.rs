//! Provider limits during a run: which providers orch is holding off (a rate limit, an
//! overloaded API, a used-up usage window) and until when, the backoff when the CLI did not say
//! when, the least time between two starts on one provider (`limits.startSpacingMs`), and the
//! interruptible sleep a wait is made of.
//!
//! Shared by the pool's workers (a worker asks before it starts an agent: a held provider's
//! agent is not started but handed back, deferred) and the round on the main thread (which sets
//! holds as limited runs come back and waits around the pool). The holds still in force when a
//! run ends go into the state, so the next `orch run` honours them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::agents::Failure;
use crate::engine::exec::process;
use crate::roundlog::Cause;

/// The longest backoff step: a provider that recovered is noticed within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// One provider held off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// When its agents may start again (RFC 3339).
    pub until: String,
    pub cause: Cause,
    pub error: String,
    /// Limited runs of this provider in a row: the backoff's exponent.
    #[serde(default)]
    pub attempts: u32,
    /// When this run set the hold (not kept in the state): only a run that started after it
    /// shows the limit has lifted.
    #[serde(skip)]
    pub set_at: Option<Instant>,
}

impl Hold {
    fn until_ts(&self) -> Option<Timestamp> {
        self.until.parse().ok()
    }

    /// How long from now until the hold ends (zero when it has).
    pub fn remaining(&self) -> Duration {
        let Some(until) = self.until_ts() else {
            return Duration::ZERO;
        };
        let ms = until.as_millisecond() - Timestamp::now().as_millisecond();
        Duration::from_millis(ms.max(0) as u64)
    }
}

/// The run's view of its providers' limits.
pub struct Limits {
    cfg: crate::mission::Limits,
    /// `--no-wait`: a wait ends the run at once (exit 75).
    pub no_wait: bool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    holds: BTreeMap<String, Hold>,
    /// When the next agent of a provider may start (start spacing).
    next_start: BTreeMap<String, Instant>,
}

impl Limits {
    pub fn new(
        cfg: &crate::mission::Limits,
        no_wait: bool,
        saved: &BTreeMap<String, Hold>,
    ) -> Limits {
        Limits {
            cfg: cfg.clone(),
            no_wait,
            inner: Mutex::new(Inner {
                holds: saved.clone(),
                next_start: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The longest wait orch makes before it ends the run instead.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs_f64(self.cfg.max_wait_s)
    }

    /// The hold on `provider` if it is still in force.
    pub fn held(&self, provider: &str) -> Option<Hold> {
        self.lock()
            .holds
            .get(provider)
            .filter(|h| h.remaining() > Duration::ZERO)
            .cloned()
    }

    /// Holds `provider` after a limited run: until the reset time the CLI gave, else for its
    /// retry-after, else for the backoff (`backoffS` doubling with each limited run in a row,
    /// at most [`MAX_BACKOFF`], with jitter so that several orchs do not come back at once).
    /// A hold already further out is kept.
    pub fn hold(&self, provider: &str, failure: &Failure) -> Hold {
        let mut inner = self.lock();
        let attempts = inner.holds.get(provider).map_or(0, |h| h.attempts) + 1;
        let now = Timestamp::now();
        let wait = match (failure.resets_at, failure.retry_after) {
            (Some(at), _) if at > now => {
                Duration::from_millis((at.as_millisecond() - now.as_millisecond()).max(0) as u64)
            }
            (_, Some(d)) => d,
            _ => backoff(self.cfg.backoff_s, attempts, jitter_seed()),
        };
        let until = add(now, wait);
        let keep_old = inner
            .holds
            .get(provider)
            .and_then(Hold::until_ts)
            .is_some_and(|old| old > until);
        let hold = Hold {
            until: if keep_old {
                inner.holds[provider].until.clone()
            } else {
                until.to_string()
            },
            cause: failure.cause,
            error: failure.error.clone(),
            attempts,
            set_at: Some(Instant::now()),
        };
        inner.holds.insert(provider.to_string(), hold.clone());
        hold
    }

    /// A run of `provider` that started at `started` got through: if it started after the
    /// hold was set, the limit has lifted and the backoff starts over. A run that was already
    /// going when another hit the limit proves nothing (it got in before), so it leaves the
    /// hold alone: clearing it then let the provider's queued agents start into the limit.
    pub fn clear(&self, provider: &str, started: Instant) {
        let mut inner = self.lock();
        let lifted = inner
            .holds
            .get(provider)
            .is_some_and(|h| h.set_at.is_none_or(|at| started >= at));
        if lifted {
            inner.holds.remove(provider);
        }
    }

    /// The holds to keep in the state: those still in force.
    pub fn snapshot(&self) -> BTreeMap<String, Hold> {
        self.lock()
            .holds
            .iter()
            .filter(|(_, h)| h.remaining() > Duration::ZERO)
            .map(|(p, h)| (p.clone(), h.clone()))
            .collect()
    }

    /// Takes the next start slot of `provider` (`startSpacingMs` after the one before) and
    /// returns how long to sleep until it.
    pub fn reserve_start(&self, provider: &str) -> Duration {
        if self.cfg.start_spacing_ms == 0 {
            return Duration::ZERO;
        }
        let spacing = Duration::from_millis(self.cfg.start_spacing_ms);
        let now = Instant::now();
        let mut inner = self.lock();
        let at = inner
            .next_start
            .get(provider)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        inner.next_start.insert(provider.to_string(), at + spacing);
        at - now
    }
}

/// Sleeps `d`, waking to check for a signal; false when interrupted.
pub fn sleep_interruptibly(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if process::interrupted() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The `attempt`-th backoff (1 = the first): `base · 2^(attempt-1)`, capped, then "equal
/// jitter": half of it fixed and half drawn from `seed`.
pub fn backoff(base_s: f64, attempt: u32, seed: u64) -> Duration {
    let full = (base_s * 2f64.powi(attempt.saturating_sub(1).min(30) as i32))
        .min(MAX_BACKOFF.as_secs_f64());
    let unit = (seed % 10_000) as f64 / 10_000.0;
    Duration::from_secs_f64(full / 2.0 + full / 2.0 * unit)
}

/// A little randomness without a crate: the clock's nanoseconds and the process id, mixed.
fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut x = nanos ^ ((std::process::id() as u64) << 32);
    // splitmix64's finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let ms = t
        .as_millisecond()
        .saturating_add(d.as_millis().min(i64::MAX as u128) as i64);
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(cause: Cause) -> Failure {
        Failure {
            cause,
            error: "API Error: 429".into(),
            resets_at: None,
            retry_after: None,
        }
    }

    fn cfg(backoff_s: f64, spacing_ms: u64) -> crate::mission::Limits {
        crate::mission::Limits {
            backoff_s,
            max_wait_s: 3600.0,
            start_spacing_ms: spacing_ms,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for seed in [0, 1234, 9999, u64::MAX] {
            for attempt in 1..6 {
                let full = 10.0 * 2f64.powi(attempt as i32 - 1);
                let d = backoff(10.0, attempt, seed).as_secs_f64();
                assert!(d >= full / 2.0 - 1e-9 && d <= full + 1e-9, "{attempt}: {d}");
            }
            assert!(backoff(10.0, 40, seed) <= MAX_BACKOFF);
            assert!(backoff(10.0, 40, seed) >= MAX_BACKOFF / 2);
        }
    }

    #[test]
    fn a_hold_lasts_until_the_reset_else_the_retry_after_else_the_backoff() {
        let l = Limits::new(&cfg(100.0, 0), false, &BTreeMap::new());
        assert!(l.held("anthropic").is_none());
        let h = l.hold("anthropic", &failure(Cause::RateLimited));
        assert_eq!(h.attempts, 1);
        let left = h.remaining().as_secs_f64();
        assert!((49.0..=100.0).contains(&left), "{left}");
        assert!(l.held("anthropic").is_some());
        assert!(l.held("openai").is_none());

        let mut f = failure(Cause::UsageLimit);
        f.resets_at = Some(add(Timestamp::now(), Duration::from_secs(5000)));
        let h = l.hold("openai", &f);
        assert!((4990..=5000).contains(&h.remaining().as_secs()), "{h:?}");

        let mut f = failure(Cause::RateLimited);
        f.retry_after = Some(Duration::from_secs(2));
        let h = l.hold("google", &f);
        assert!(h.remaining() <= Duration::from_secs(2));

        // The second limited run in a row backs off from a doubled base, and a hold further
        // out than the new one is kept.
        let h2 = l.hold("openai", &failure(Cause::RateLimited));
        assert_eq!(h2.attempts, 2);
        assert!(h2.remaining().as_secs() >= 4990);

        // A run that was already going when the limit was hit got in before it: it proves
        // nothing and leaves the hold; one started after the hold was set lifts it.
        let before = Instant::now() - Duration::from_secs(60);
        l.clear("anthropic", before);
        assert!(l.held("anthropic").is_some());
        l.clear("anthropic", Instant::now());
        assert!(l.held("anthropic").is_none());
        assert_eq!(
            l.snapshot().keys().cloned().collect::<Vec<_>>(),
            vec!["google".to_string(), "openai".to_string()]
        );
    }

    #[test]
    fn saved_holds_come_back_and_expired_ones_are_dropped() {
        let mut saved = BTreeMap::new();
        let future = add(Timestamp::now(), Duration::from_secs(600)).to_string();
        saved.insert(
            "anthropic".to_string(),
            Hold {
                until: future,
                cause: Cause::UsageLimit,
                error: "x".into(),
                attempts: 1,
                set_at: None,
            },
        );
        saved.insert(
            "openai".to_string(),
            Hold {
                until: "2001-01-01T00:00:00Z".into(),
                cause: Cause::RateLimited,
                error: "x".into(),
                attempts: 3,
                set_at: None,
            },
        );
        let l = Limits::new(&cfg(1.0, 0), true, &saved);
        assert!(l.held("anthropic").is_some());
        assert!(l.held("openai").is_none());
        assert_eq!(l.snapshot().len(), 1);
    }

    #[test]
    fn start_spacing_reserves_slots_per_provider() {
        let l = Limits::new(&cfg(1.0, 500), false, &BTreeMap::new());
        assert_eq!(l.reserve_start("a"), Duration::ZERO);
        let second = l.reserve_start("a");
        assert!(second > Duration::from_millis(400) && second <= Duration::from_millis(500));
        let third = l.reserve_start("a");
        assert!(third > Duration::from_millis(900), "{third:?}");
        assert_eq!(l.reserve_start("b"), Duration::ZERO);
        let off = Limits::new(&cfg(1.0, 0), false, &BTreeMap::new());
        assert_eq!(off.reserve_start("a"), Duration::ZERO);
        assert_eq!(off.reserve_start("a"), Duration::ZERO);
    }
}
