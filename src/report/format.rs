//! What a report format is: [`Format`], the name `orch report --format` takes, and [`Exporter`],
//! the one small trait every format implements (hyperfine's shape: one file per format behind
//! it). It sits below the formats and the dispatcher ([`super::export`]), which both import it,
//! so a format never imports the module that picks it.

use std::fmt;
use std::str::FromStr;

use super::model::Summary;
use crate::error::{Error, Result};

/// The output format of `orch report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Json,
    Html,
    Svg,
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "markdown" | "md" => Ok(Format::Markdown),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            "svg" => Ok(Format::Svg),
            _ => Err(Error::Usage(format!(
                "unknown report format {s:?}; use markdown, json, html or svg"
            ))),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Markdown => "markdown",
            Format::Json => "json",
            Format::Html => "html",
            Format::Svg => "svg",
        })
    }
}

/// Turns the summary into one format's bytes. Exporters only format: every figure is already in
/// the [`Summary`].
pub trait Exporter {
    fn export(&self, s: &Summary) -> Vec<u8>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_alias() {
        assert_eq!("md".parse::<Format>().ok(), Some(Format::Markdown));
        assert_eq!("Markdown".parse::<Format>().ok(), Some(Format::Markdown));
        assert_eq!("svg".parse::<Format>().ok(), Some(Format::Svg));
        assert!(matches!("pdf".parse::<Format>(), Err(Error::Usage(_))));
    }
}
