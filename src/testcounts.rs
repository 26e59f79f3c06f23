//! Passed/failed counts from test runners' output (placeholder: filled in by the test-count work).
