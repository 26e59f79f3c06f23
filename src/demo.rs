//! placeholder
pub fn run(_: Option<std::path::PathBuf>, _: u32, _: bool, _: crate::events::Verbosity) -> crate::Result<i32> { Ok(0) }
