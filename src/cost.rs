//! Cost of an agent run (placeholder: filled in by the cost work).
