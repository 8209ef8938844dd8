//! The cross-asset correlation artifact the service uses for portfolio offsets: daily log
//! returns of each asset on the dates every asset traded (a return spans the same interval for
//! all, so a weekend in BTC lines up with Friday→Monday in the S&P 500), standardised and shrunk
//! toward no correlation (Schäfer-Strimmer, `foresight_core::correlation`).

use chrono::NaiveDate;
use foresight_core::correlation::shrunk_correlation;
use serde::Serialize;

use crate::data::Values;
use crate::error::{DataError, Result};

/// Version tag of the artifact.
pub const CORRELATION_FORMAT: &str = "foresight-correlation/1";

/// The stored artifact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorrelationArtifact {
    /// [`CORRELATION_FORMAT`].
    pub format: String,
    /// Asset names, the order of the matrix rows and columns.
    pub assets: Vec<String>,
    /// Input files, one per asset.
    pub data: Vec<String>,
    /// First and last common date used (the first is the base of the first return).
    pub window: (NaiveDate, NaiveDate),
    /// Aligned returns.
    pub observations: usize,
    /// How it was estimated.
    pub method: String,
    /// Shrinkage intensity.
    pub intensity: f64,
    /// Sample correlation.
    pub sample: Vec<Vec<f64>>,
    /// The shrunk matrix to use.
    pub matrix: Vec<Vec<f64>>,
}

/// Estimates the artifact from each asset's daily closes, on the common dates within
/// `[start, end]` (either open).
pub fn estimate(assets: &[(String, Values)], start: Option<NaiveDate>, end: Option<NaiveDate>) -> Result<CorrelationArtifact> {
    let fail = |message: String| DataError::Fit { model: "correlation".into(), message };
    if assets.len() < 2 {
        return Err(fail("needs at least two assets".into()));
    }
    let in_window = |d: &NaiveDate| start.is_none_or(|s| *d >= s) && end.is_none_or(|e| *d <= e);
    let mut common: Vec<NaiveDate> = assets[0].1.timestamps.iter().map(|t| t.date()).filter(in_window).collect();
    for (_, v) in &assets[1..] {
        let dates: std::collections::HashSet<NaiveDate> = v.timestamps.iter().map(|t| t.date()).collect();
        common.retain(|d| dates.contains(d));
    }
    if common.len() < 31 {
        return Err(fail(format!(
            "the assets share {} dates{}; at least 31 are needed",
            common.len(),
            if common.is_empty() { String::new() } else { format!(" ({}..{})", common[0], common[common.len() - 1]) }
        )));
    }
    let returns: Vec<Vec<f64>> = assets
        .iter()
        .map(|(_, v)| {
            let by_date: std::collections::HashMap<NaiveDate, f64> = v.timestamps.iter().map(|t| t.date()).zip(v.values.iter().copied()).collect();
            common.windows(2).map(|w| (by_date[&w[1]] / by_date[&w[0]]).ln()).collect()
        })
        .collect();
    let c = shrunk_correlation(&returns)?;
    Ok(CorrelationArtifact {
        format: CORRELATION_FORMAT.into(),
        assets: assets.iter().map(|(n, _)| n.clone()).collect(),
        data: assets.iter().map(|(_, v)| v.source.display().to_string()).collect(),
        window: (common[0], common[common.len() - 1]),
        observations: c.observations,
        method: "daily log returns on common dates, standardised, Schäfer-Strimmer shrinkage toward the identity".into(),
        intensity: c.intensity,
        sample: c.sample,
        matrix: c.shrunk,
    })
}
