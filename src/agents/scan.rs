//! Reading JSON out of a log tail that orch never controls: the tail may start mid-line, hold
//! log noise, be truncated, or not be UTF-8 at all. The scan finds JSON objects that start a
//! line and ignores everything else; it never fails, it only finds nothing. Fields are read from
//! `serde_json::Value` rather than typed structs so that a CLI adding or renaming a field costs
//! us that field, not the whole parse.

use serde_json::{Map, Value};

/// Calls `visit` with every JSON object in `text` that starts a line (after leading blanks), in
/// order. A visitor rather than a `Vec`: a multi-MiB stream of events is dropped one at a time.
///
/// An object may span several lines (a pretty-printed result); after one is read the scan
/// resumes after its end, so the objects nested inside it are not read twice. Lines that do not
/// parse (a truncated first line, log noise that happens to start with `{`) are skipped.
pub fn for_each_json_object(text: &str, mut visit: impl FnMut(Map<String, Value>)) {
    let mut pos = 0;
    while pos < text.len() {
        let rest = text.get(pos..).unwrap_or("");
        let line_len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let start = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let candidate = rest.get(start..).unwrap_or("");
        if candidate.starts_with('{') {
            let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
            if let Some(Ok(Value::Object(obj))) = stream.next() {
                visit(obj);
                pos += start + stream.byte_offset().max(1);
                continue;
            }
        }
        pos += line_len;
    }
}

/// A dollar figure: a finite, non-negative number.
pub fn usd(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite() && *x >= 0.0)
}

/// The trimmed text, or `None` when there is none.
pub fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// `obj[key]` as a string.
pub fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}
