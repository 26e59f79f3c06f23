//! When a provider takes requests again, read from the CLI's words: a usage limit's reset time
//! with its time zone, or a retry-after.
//!
//! The forms seen in the CLIs' output (issue 17 quotes them from public issue threads):
//! - Claude Code: "You've hit your session limit · resets 8pm (America/New_York)": a wall-clock
//!   time in a named zone, the next one to come; "resets Apr 16, 8:30pm (Europe/Paris)" with a
//!   date; without a zone, the local one.
//! - Claude Code, earlier releases: `Claude AI usage limit reached|1760000000`: Unix seconds.
//! - Codex: "try again at Apr 16th, 2026 12:04 AM.": a local date and time.
//! - Codex and the OpenAI API: "try again in 4 days 23 hours 2 minutes", "Please try again in
//!   20s": a retry-after.
//!
//! Times are read in the named zone through the system's tz database (`/usr/share/zoneinfo`);
//! an unknown zone name is read as the local zone rather than dropped, since "8pm somewhere"
//! beats backing off blindly for hours.

use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// When the limit the words describe resets, if they say; `now` gives the present and the local
/// zone.
pub fn resets_at(words: &str, now: &ZonedDateTime) -> Option<Timestamp> {
    unix_after_bar(words)
        .or_else(|| resets_clock(words, now))
        .or_else(|| try_again_at(words, now))
}

/// How long the words ask to wait ("try again in 20s", "retry after 30 seconds").
pub fn retry_after(words: &str) -> Option<Duration> {
    let lower = words.to_lowercase();
    for key in [
        "try again in ",
        "retry after ",
        "retry-after: ",
        "retry in ",
    ] {
        if let Some(i) = lower.find(key) {
            if let Some(d) = parse_span(&lower[i + key.len()..]) {
                return Some(d);
            }
        }
    }
    None
}

/// `...limit reached|1760000000` (seconds, or milliseconds when it is that large).
fn unix_after_bar(words: &str) -> Option<Timestamp> {
    let i = words.find("limit reached|")?;
    let digits: String = words[i + "limit reached|".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: i64 = digits.parse().ok()?;
    let secs = if n > 100_000_000_000 { n / 1000 } else { n };
    Timestamp::from_second(secs).ok()
}

/// "resets 8pm (America/New_York)", "resets at 3:15 am", "resets Apr 16, 8pm (UTC)".
fn resets_clock(words: &str, now: &ZonedDateTime) -> Option<Timestamp> {
    let lower = words.to_lowercase();
    let i = lower.find("resets ")?;
    let rest = &words[i + "resets ".len()..];
    let rest = rest
        .strip_prefix("at ")
        .or_else(|| rest.strip_prefix("At "))
        .unwrap_or(rest);
    let tokens = tokenize(rest);
    let mut pos = 0;
    // An optional date: "Apr 16," (this year, or next if it has passed).
    let mut date = None;
    if let (Some(m), Some(d)) = (
        tokens.first().and_then(|t| month(t)),
        tokens.get(1).and_then(|t| day(t)),
    ) {
        date = Some((m, d));
        pos = 2;
    }
    let (time, used) = clock(&tokens[pos.min(tokens.len())..])?;
    pos += used;
    let zone = zone_after(rest, &tokens, pos).unwrap_or_else(|| now.time_zone().clone());
    let here = now.with_time_zone(zone.clone());
    match date {
        Some((m, d)) => {
            let year = here.date().year();
            [year, year.saturating_add(1)].into_iter().find_map(|y| {
                let at = Date::new(y, m, d).ok()?.to_datetime(time);
                let z = at.to_zoned_datetime(zone.clone()).ok()?;
                (z.timestamp() > now.timestamp()).then(|| z.timestamp())
            })
        }
        None => {
            // The next time the clock shows it: today, or tomorrow when it has passed.
            let today = here.date().to_datetime(time);
            let z = today.to_zoned_datetime(zone.clone()).ok()?;
            if z.timestamp() > now.timestamp() {
                return Some(z.timestamp());
            }
            let tomorrow: DateTime = here.date().tomorrow().ok()?.to_datetime(time);
            Some(tomorrow.to_zoned_datetime(zone).ok()?.timestamp())
        }
    }
}

/// "try again at Apr 16th, 2026 12:04 AM." in the local zone.
fn try_again_at(words: &str, now: &ZonedDateTime) -> Option<Timestamp> {
    let lower = words.to_lowercase();
    let i = lower.find("try again at ")?;
    let tokens = tokenize(&words[i + "try again at ".len()..]);
    let m = month(tokens.first()?)?;
    let d = day(tokens.get(1)?)?;
    let (year, pos) = match tokens.get(2).and_then(|t| t.parse::<i16>().ok()) {
        Some(y) if y > 1900 => (y, 3),
        _ => (now.date().year(), 2),
    };
    let (time, _) = clock(&tokens[pos.min(tokens.len())..])?;
    let at = Date::new(year, m, d).ok()?.to_datetime(time);
    Some(
        at.to_zoned_datetime(now.time_zone().clone())
            .ok()?
            .timestamp(),
    )
}

/// Words and punctuation apart: "Apr 16th, 2026 12:04 AM." -> ["Apr", "16th", "2026", "12:04",
/// "AM"]; "8pm" stays one token; "(America/New_York)" becomes "America/New_York".
fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '·'))
        .map(|t| t.trim_end_matches(['.', ';']))
        .filter(|t| !t.is_empty())
        .take(8)
        .map(str::to_string)
        .collect()
}

fn month(t: &str) -> Option<i8> {
    const NAMES: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let t = t.to_lowercase();
    if t.len() < 3 {
        return None;
    }
    NAMES
        .iter()
        .position(|n| t.starts_with(n))
        .map(|i| i as i8 + 1)
}

/// "16", "16th", "1st".
fn day(t: &str) -> Option<i8> {
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let rest = &t[digits.len()..];
    if !(rest.is_empty() || ["st", "nd", "rd", "th"].contains(&rest.to_lowercase().as_str())) {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

/// A clock time at the start of `tokens`: "8pm", "8:30pm", "8:30 pm", "12:04 AM", "20:00".
/// Returns the time and how many tokens it took.
fn clock(tokens: &[String]) -> Option<(Time, usize)> {
    let first = tokens.first()?.to_lowercase();
    let (body, mut meridiem) = match first.strip_suffix("am") {
        Some(b) => (b.to_string(), Some(false)),
        None => match first.strip_suffix("pm") {
            Some(b) => (b.to_string(), Some(true)),
            None => (first.clone(), None),
        },
    };
    let mut used = 1;
    if meridiem.is_none() {
        match tokens.get(1).map(|t| t.to_lowercase()).as_deref() {
            Some("am") => (meridiem, used) = (Some(false), 2),
            Some("pm") => (meridiem, used) = (Some(true), 2),
            _ => {}
        }
    }
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h.parse::<i8>().ok()?, m.parse::<i8>().ok()?),
        None => (body.parse::<i8>().ok()?, 0),
    };
    let hour = match meridiem {
        Some(pm) if (1..=12).contains(&h) => (h % 12) + if pm { 12 } else { 0 },
        Some(_) => return None,
        // A bare number is no time ("resets 3 times"); a 24-hour time has its minutes.
        None if body.contains(':') && (0..24).contains(&h) => h,
        None => return None,
    };
    Some((Time::new(hour, m, 0, 0).ok()?, used))
}

/// The zone named after the time: "(America/New_York)", "UTC", "PT"-style abbreviations are
/// not names and are left to the local zone.
fn zone_after(rest: &str, tokens: &[String], pos: usize) -> Option<TimeZone> {
    let t = tokens.get(pos)?;
    // Only a name the text put in parentheses, or a bare UTC/GMT, is a zone.
    let bracketed = rest.contains(&format!("({t})"));
    if !(bracketed || t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("gmt")) {
        return None;
    }
    match TimeZone::get(t) {
        Ok(tz) => Some(tz),
        Err(e) => {
            log::debug!("unknown time zone {t:?} in a reset time ({e}); reading it as local");
            None
        }
    }
}

/// "4 days 23 hours 2 minutes", "20s", "1.5s", "6ms", "30 seconds", "2h 3m".
fn parse_span(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut any = false;
    let mut rest = text.trim_start();
    for _ in 0..6 {
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if num.is_empty() {
            break;
        }
        let Ok(n) = num.parse::<f64>() else { break };
        rest = rest[num.len()..].trim_start();
        let unit: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        let secs = match unit.as_str() {
            "ms" | "millisecond" | "milliseconds" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            // A bare number after "retry after" is seconds (the header's form).
            "" if !any => 1.0,
            _ => break,
        };
        total += n * secs;
        any = true;
        rest = rest[unit.len()..].trim_start_matches([' ', ',']);
        rest = rest.strip_prefix("and ").unwrap_or(rest);
    }
    (any && total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-04-15 17:00 in New York (21:00 UTC), as the local clock of the test.
    fn now_in(zone: &str) -> ZonedDateTime {
        let ts: Timestamp = "2026-04-15T21:00:00Z".parse().unwrap();
        ts.to_zoned_datetime(TimeZone::get(zone).unwrap())
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn claude_session_limit_with_its_zone() {
        let now = now_in("UTC");
        // 8pm New York on 2026-04-15 is 2026-04-16 00:00 UTC (EDT, UTC-4).
        assert_eq!(
            resets_at(
                "You've hit your session limit · resets 8pm (America/New_York)",
                &now
            ),
            Some(at("2026-04-16T00:00:00Z"))
        );
        // Already past 8pm in Tokyo (06:00 next day there): the next 8pm is that evening.
        assert_eq!(
            resets_at("limit · resets 8pm (Asia/Tokyo)", &now),
            Some(at("2026-04-16T11:00:00Z"))
        );
        assert_eq!(
            resets_at("resets 8:30pm (Europe/Paris)", &now),
            Some(at("2026-04-16T18:30:00Z")),
            "Paris is at 23:00 now (CEST), so 20:30 is tomorrow's"
        );
        assert_eq!(
            resets_at("resets Apr 20, 9am (America/New_York)", &now),
            Some(at("2026-04-20T13:00:00Z"))
        );
    }

    #[test]
    fn without_a_zone_the_local_one() {
        let now = now_in("America/New_York");
        assert_eq!(
            resets_at("You've hit your limit · resets 8pm", &now),
            Some(at("2026-04-16T00:00:00Z"))
        );
        // An unknown zone name is read as local.
        assert_eq!(
            resets_at("resets 8pm (Mars/Olympus)", &now),
            Some(at("2026-04-16T00:00:00Z"))
        );
    }

    #[test]
    fn claude_unix_seconds() {
        let now = now_in("UTC");
        assert_eq!(
            resets_at("Claude AI usage limit reached|1776384000", &now),
            Some(Timestamp::from_second(1_776_384_000).unwrap())
        );
        assert_eq!(
            resets_at("Claude AI usage limit reached|1776384000000", &now),
            Some(Timestamp::from_second(1_776_384_000).unwrap())
        );
    }

    #[test]
    fn codex_try_again_at_a_local_date() {
        let now = now_in("America/New_York");
        assert_eq!(
            resets_at(
                "You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing), or try again at Apr 16th, 2026 12:04 AM.",
                &now
            ),
            Some(at("2026-04-16T04:04:00Z"))
        );
        let utc = now_in("UTC");
        assert_eq!(
            resets_at("try again at Apr 16th, 2026 12:04 PM.", &utc),
            Some(at("2026-04-16T12:04:00Z"))
        );
    }

    #[test]
    fn retry_after_spans() {
        assert_eq!(
            retry_after("or try again in 4 days 23 hours 2 minutes."),
            Some(Duration::from_secs(4 * 86400 + 23 * 3600 + 120))
        );
        assert_eq!(
            retry_after("Rate limit reached for gpt-5. Please try again in 20s."),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            retry_after("Please try again in 1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after("Please try again in 6ms."),
            Some(Duration::from_millis(6))
        );
        assert_eq!(
            retry_after("retry-after: 30"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after("try again later"), None);
        assert_eq!(retry_after("nothing here"), None);
    }

    #[test]
    fn no_time_is_no_reset() {
        let now = now_in("UTC");
        assert_eq!(resets_at("API Error: 429 rate limited", &now), None);
        assert_eq!(resets_at("it resets 3 times", &now), None);
        assert_eq!(resets_at("resets 13pm (UTC)", &now), None);
        assert_eq!(resets_at("resets", &now), None);
        assert_eq!(resets_at("try again at noon", &now), None);
    }
}
