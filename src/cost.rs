//! Cost of an agent run (placeholder until the parser lands).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelPrice {
    #[serde(rename = "inputPerMTok")]
    pub input_per_m_tok: f64,
    #[serde(rename = "outputPerMTok")]
    pub output_per_m_tok: f64,
}

pub type Pricing = std::collections::BTreeMap<String, ModelPrice>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunCost {
    pub cost_usd: f64,
    pub known: bool,
    pub tokens: Option<crate::roundlog::Tokens>,
    pub is_error: bool,
    pub summary: Option<String>,
}

pub fn assess(_r: Option<&str>, _t: &[u8], _m: &str, _p: &Pricing) -> RunCost {
    RunCost::default()
}
