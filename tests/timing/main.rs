//! The tests that measure the round's time against its critical path: a test binary of its
//! own, because cargo runs test binaries one after the other, so nothing of
//! `tests/integration/` runs beside these (on a 2-core machine the other tests' load would go
//! into the overhead they measure). Within this binary each takes [`alone`] first, so they do
//! not run beside each other either.

#[path = "../common/mod.rs"]
mod common;

mod beside;
mod round;

/// Held for the whole of a timing test: the tests of this binary run one at a time.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed holding it poisons it; the next one may still run alone.
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}
