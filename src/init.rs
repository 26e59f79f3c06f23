//! placeholder
pub fn init(_: &std::path::Path, _: &str, _: bool) -> crate::Result<()> { Ok(()) }
