//! The JSON report: the [`Summary`] as it is, camelCase, pretty-printed, for scripts. The keys
//! are documented on [`Summary`] and versioned by `reportSchema`.

use super::format::Exporter;
use super::model::Summary;

pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, s: &Summary) -> Vec<u8> {
        // Serializing plain structs with string keys cannot fail; should serde ever say
        // otherwise, scripts still get JSON that says what went wrong.
        let mut out = serde_json::to_vec_pretty(s).unwrap_or_else(|e| {
            serde_json::json!({ "reportSchema": s.report_schema, "error": e.to_string() })
                .to_string()
                .into_bytes()
        });
        out.push(b'\n');
        out
    }
}
