//! `orch report` (placeholder: filled in by the report work).
