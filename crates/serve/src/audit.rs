//! The audit log: one JSON line per margin an arm computed for an account (the posted one and,
//! in shadow mode, every other arm's), written before the response leaves, so every emitted
//! margin can be traced to its arm, model versions and inputs, and replayed by
//! `foresight backtest --from-audit`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{ArmMargin, Calibration};

/// One underlying of an audited margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditUnderlying {
    /// The underlying.
    pub asset: String,
    /// The last completed day of its history.
    pub as_of: String,
    /// That day's close.
    pub close: f64,
    /// The spot the margin was computed at.
    pub spot: f64,
    /// `name@vN` of the forecaster, if the arm used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The margin rate the arm used (its own, or the reactive one on a fallback).
    pub rate: f64,
    /// The reactive arm's rate.
    pub reactive_rate: f64,
    /// Why the arm fell back to the reactive rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// One audited margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it was computed (RFC 3339, UTC).
    pub time: String,
    /// The account.
    pub account_id: String,
    /// The arm.
    pub arm: String,
    /// Whether this margin was posted (false: a shadow arm's).
    pub posted: bool,
    /// The engine generation (changes at every reload or split change).
    pub generation: u64,
    /// sha256 of the request as received (protobuf bytes).
    pub inputs_sha256: String,
    /// Initial margin.
    pub initial_margin: f64,
    /// Maintenance margin.
    pub maintenance_margin: f64,
    /// Posted over reactive initial margin.
    pub multiplier: f64,
    /// Before the guard rails.
    pub raw_multiplier: f64,
    /// The reactive arm's initial margin.
    pub reactive_initial_margin: f64,
    /// Guard rails that moved the margin.
    pub guards: Vec<String>,
    /// The account's collateral after haircuts (this arm's forecasts).
    #[serde(default)]
    pub collateral_value: f64,
    /// Per underlying.
    pub underlyings: Vec<AuditUnderlying>,
}

/// sha256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(2 * digest.len());
    for b in digest.iter() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// The text of a serialisable enum value (`stale`, `max_rise`), or its debug form.
pub fn snake_name<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    // Serialised straight to text (no `Value` tree): a unit variant is a JSON string, a variant
    // with fields an object, kept whole.
    match serde_json::to_string(value) {
        Ok(text) if text.starts_with('"') => serde_json::from_str(&text).unwrap_or(text),
        Ok(text) => text,
        Err(_) => format!("{value:?}"),
    }
}

fn record(account_id: &str, arm: &ArmMargin, posted: bool, generation: u64, inputs_sha256: &str, time: &str) -> AuditRecord {
    let m = &arm.margin;
    let underlyings = m
        .inputs
        .iter()
        .map(|(asset, i)| {
            let f = &arm.forecasts[asset];
            AuditUnderlying {
                asset: asset.clone(),
                as_of: f.as_of.clone(),
                close: f.last_close,
                spot: i.market.spot,
                model: f.model.clone(),
                rate: *i.forward_rate.as_ref().unwrap_or(&i.reactive_rate),
                reactive_rate: i.reactive_rate,
                fallback: i.forward_rate.as_ref().err().map(snake_name),
            }
        })
        .collect();
    AuditRecord {
        time: time.to_string(),
        account_id: account_id.to_string(),
        arm: arm.arm.clone(),
        posted,
        generation,
        inputs_sha256: inputs_sha256.to_string(),
        initial_margin: m.posted.initial_margin,
        maintenance_margin: m.posted.maintenance_margin,
        multiplier: m.posted.multiplier,
        raw_multiplier: m.raw_multiplier,
        reactive_initial_margin: m.base.initial_margin,
        guards: m.posted.applied.iter().map(|g| g.name().to_string()).collect(),
        collateral_value: arm.collateral.iter().map(|c| c.value).sum(),
        underlyings,
    }
}

/// The audit records of one calibration: the posted arm's, then the shadow arms'.
pub fn records(account_id: &str, calibration: &Calibration, inputs_sha256: &str) -> Vec<AuditRecord> {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::iter::once(record(account_id, &calibration.posted, true, calibration.generation, inputs_sha256, &time))
        .chain(calibration.shadow.iter().map(|s| record(account_id, s, false, calibration.generation, inputs_sha256, &time)))
        .collect()
}

#[cfg(test)]
mod tests {
    use foresight_core::margin::Fallback;

    use super::snake_name;

    #[test]
    fn names_are_the_serialised_form() {
        assert_eq!(snake_name(&Fallback::NoModel), r#"{"reason":"no_model"}"#);
        let stale = Fallback::Stale { age_secs: 900.5, max_age_secs: 300.0 };
        assert_eq!(snake_name(&stale), serde_json::to_value(&stale).unwrap().to_string());
        assert_eq!(snake_name(&foresight_core::margin::OptionKind::Call), "call");
    }
}
