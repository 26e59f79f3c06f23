//! How an agent's `cli` name is read: as the unit variant of an enum whose names the agents
//! layer gives ([`CliCatalog::names`](super::CliCatalog::names)), with serde's own errors (an
//! unknown name lists the known ones, with its line and column).
//!
//! It imports nothing of the mission: `agent.rs` reads an agent's `cli` through
//! [`known_cli`], `load.rs` gives the names while it parses ([`with_names`]), and `state.json`
//! reads a session's CLI through [`cli_name`]; the names live in a thread-local because
//! serde's derive cannot carry them to a field.

use std::cell::Cell;

use serde::Deserializer;

thread_local! {
    /// The names of [`CliCatalog::names`](super::CliCatalog::names) while
    /// [`Mission::parse`](super::Mission::parse) deserializes: serde's derive
    /// cannot carry them to the `cli` field, and checking them there keeps serde's error (with
    /// its line and column) and its place among the other errors of the file.
    static CLI_NAMES: Cell<Option<&'static [&'static str]>> = const { Cell::new(None) };
}

/// Runs `parse` (a deserialization) with `names` as the names an agent's `cli` may take, and
/// the names before it again afterwards.
pub(super) fn with_names<T>(names: &'static [&'static str], parse: impl FnOnce() -> T) -> T {
    let before = CLI_NAMES.replace(Some(names));
    let parsed = parse();
    CLI_NAMES.set(before);
    parsed
}

/// An agent's `cli`, while [`Mission::parse`](super::Mission::parse) gives the catalog's
/// names; outside it (an `Agent` built by hand) any name is taken.
pub(super) fn known_cli<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    struct OptionalCli;
    impl<'de> serde::de::Visitor<'de> for OptionalCli {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("option")
        }
        fn visit_none<E>(self) -> std::result::Result<Option<String>, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Option<String>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Option<String>, D::Error> {
            cli_name(d, CLI_NAMES.get()).map(Some)
        }
    }
    d.deserialize_option(OptionalCli)
}

/// A CLI's name (an agent's `cli`, a session's in `state.json`), read as the unit variant of an
/// enum of `names` the way serde's derive reads one: `"claude"`, with the same errors (an
/// unknown name lists the known ones). `None`: any name is taken.
pub fn cli_name<'de, D: Deserializer<'de>>(
    d: D,
    names: Option<&'static [&'static str]>,
) -> std::result::Result<String, D::Error> {
    use serde::de::{DeserializeSeed, EnumAccess, Unexpected, VariantAccess, Visitor};
    #[derive(Clone, Copy)]
    struct Name(Option<&'static [&'static str]>);
    impl<'de> DeserializeSeed<'de> for Name {
        type Value = String;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
            d.deserialize_identifier(self)
        }
    }
    impl Visitor<'_> for Name {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("variant identifier")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<String, E> {
            let names = self.0.unwrap_or_default();
            match names.get(v as usize) {
                Some(name) => Ok(name.to_string()),
                None => Err(E::invalid_value(
                    Unexpected::Unsigned(v),
                    &format!("variant index 0 <= i < {}", names.len()).as_str(),
                )),
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<String, E> {
            match self.0 {
                Some(names) if !names.contains(&v) => Err(E::unknown_variant(v, names)),
                _ => Ok(v.to_string()),
            }
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<String, E> {
            match std::str::from_utf8(v) {
                Ok(s) => self.visit_str(s),
                Err(_) => Err(E::unknown_variant(
                    &String::from_utf8_lossy(v),
                    self.0.unwrap_or_default(),
                )),
            }
        }
    }
    struct Cli(Name);
    impl<'de> Visitor<'de> for Cli {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            // The name of the enum these names were, before the adapters owned them.
            f.write_str("enum CliKind")
        }
        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> std::result::Result<String, A::Error> {
            let (name, variant) = data.variant_seed(self.0)?;
            variant.unit_variant()?;
            Ok(name)
        }
    }
    d.deserialize_enum("CliKind", names.unwrap_or_default(), Cli(Name(names)))
}
