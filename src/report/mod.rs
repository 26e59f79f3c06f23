//! `orch report` (placeholder until the report lands).
use std::path::{Path, PathBuf};

pub enum Format {
    Markdown,
}
impl std::str::FromStr for Format {
    type Err = ();
    fn from_str(_: &str) -> Result<Self, ()> {
        Ok(Format::Markdown)
    }
}
pub struct ReportOptions {
    pub state_dir: PathBuf,
    pub format: Format,
    pub rounds: Option<(u32, u32)>,
}
pub fn render(_: &ReportOptions) -> crate::Result<Vec<u8>> {
    Err(crate::Error::Other("the report is not built yet".into()))
}
pub fn markdown(_: &Path) -> crate::Result<String> {
    Err(crate::Error::Other("the report is not built yet".into()))
}
