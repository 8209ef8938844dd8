//! The versioned feature specification: which features, over which windows, in which units.
//!
//! A model card stores the spec it was trained with; the service recomputes features with the
//! same spec (and refuses a model whose spec version it does not know).

use super::estimators::{Bar, VolEstimator, rolling_variance};
use super::ewma::Ewma;
use super::har::{HAR_MONTHLY, HAR_WEEKLY, har_components};
use crate::error::{CoreError, Result};

/// Version of [`FeatureSpec::v1`]. Bump it whenever a name, window, unit or formula changes.
pub const FEATURE_SPEC_VERSION: &str = "foresight-features/1";

/// What a feature measures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// `ln(C[t]/C[t-1])`.
    LogReturn,
    /// A range or close-to-close variance estimator over a trailing window.
    RealizedVariance {
        /// Which estimator.
        estimator: VolEstimator,
    },
    /// EWMA variance of daily log returns.
    EwmaVariance {
        /// Decay factor.
        lambda: f64,
    },
    /// HAR component: mean of daily RV over the window (1, 5 or 22 days).
    Har,
}

/// One named feature.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureDef {
    /// Column name in feature frames and ONNX inputs.
    pub name: String,
    /// What it measures.
    #[serde(flatten)]
    pub kind: FeatureKind,
    /// Trailing window in bars (days for daily data).
    pub window: usize,
    /// Unit of the value.
    pub unit: String,
}

/// An ordered list of features with a version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSpec {
    /// Spec version, e.g. [`FEATURE_SPEC_VERSION`].
    pub version: String,
    /// Daily RV for the HAR features: `intraday` when an intraday series gave it, else the
    /// one-day Garman-Klass range variance (`range_gk`).
    pub har_source_default: String,
    /// The features, in column order.
    pub features: Vec<FeatureDef>,
}

/// Features computed over a daily series: one column per feature, one row per bar; a value is
/// `None` until its window is full (or when its input is missing).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureFrame {
    /// Column names, in spec order.
    pub names: Vec<String>,
    /// Columns, each as long as the input bars.
    pub columns: Vec<Vec<Option<f64>>>,
}

impl FeatureFrame {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&[Option<f64>]> {
        self.names.iter().position(|n| n == name).map(|i| self.columns[i].as_slice())
    }
}

const VARIANCE_UNIT: &str = "variance of log returns per day";

impl FeatureSpec {
    /// The first feature spec: log return, the five realized-variance estimators over 22 days,
    /// RiskMetrics EWMA variance, and the HAR daily/weekly/monthly components.
    pub fn v1() -> Self {
        let mut features = vec![FeatureDef {
            name: "log_return".into(),
            kind: FeatureKind::LogReturn,
            window: 1,
            unit: "log return".into(),
        }];
        for estimator in VolEstimator::ALL {
            features.push(FeatureDef {
                name: format!("rv_{}_22d", estimator.short_name()),
                kind: FeatureKind::RealizedVariance { estimator },
                window: 22,
                unit: VARIANCE_UNIT.into(),
            });
        }
        features.push(FeatureDef {
            name: "ewma_var_0.94".into(),
            kind: FeatureKind::EwmaVariance { lambda: Ewma::RISKMETRICS_LAMBDA },
            window: crate::features::DEFAULT_EWMA_INIT,
            unit: VARIANCE_UNIT.into(),
        });
        for (name, window) in [("har_d", 1), ("har_w", HAR_WEEKLY), ("har_m", HAR_MONTHLY)] {
            features.push(FeatureDef {
                name: name.into(),
                kind: FeatureKind::Har,
                window,
                unit: VARIANCE_UNIT.into(),
            });
        }
        Self { version: FEATURE_SPEC_VERSION.into(), har_source_default: "range_gk".into(), features }
    }

    /// Computes every feature over daily `bars`. `daily_rv`, when given (from intraday data,
    /// aligned with `bars`), feeds the HAR features; otherwise each day's Garman-Klass range
    /// variance does.
    pub fn compute(&self, bars: &[Bar], daily_rv: Option<&[Option<f64>]>) -> Result<FeatureFrame> {
        for (i, b) in bars.iter().enumerate() {
            b.validate(i)?;
        }
        if let Some(rv) = daily_rv
            && rv.len() != bars.len()
        {
            return Err(CoreError::InsufficientHistory {
                what: "daily_rv aligned with the bars".into(),
                needed: bars.len(),
                available: rv.len(),
            });
        }
        let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
        let returns = crate::features::log_returns(&closes)?;
        let rv: Vec<Option<f64>> = match daily_rv {
            Some(rv) => rv.to_vec(),
            None => bars.iter().map(|b| VolEstimator::GarmanKlass.variance(&[*b]).ok()).collect(),
        };
        let har = har_components(&rv);
        let mut columns = Vec::with_capacity(self.features.len());
        for def in &self.features {
            let column = match &def.kind {
                FeatureKind::LogReturn => std::iter::once(None).chain(returns.iter().map(|r| Some(*r))).collect(),
                FeatureKind::RealizedVariance { estimator } => rolling_variance(bars, *estimator, def.window)?,
                FeatureKind::EwmaVariance { lambda } => {
                    let ewma = Ewma::new(*lambda)?.with_init(def.window.max(1))?;
                    // Return t-1 is the move into bar t: shift by one so row t uses bars ..= t.
                    std::iter::once(None).chain(ewma.variance_series(&returns)).collect()
                }
                FeatureKind::Har => har
                    .iter()
                    .map(|c| {
                        c.map(|c| match def.window {
                            1 => c.daily,
                            HAR_WEEKLY => c.weekly,
                            _ => c.monthly,
                        })
                    })
                    .collect(),
            };
            columns.push(column);
        }
        Ok(FeatureFrame { names: self.features.iter().map(|f| f.name.clone()).collect(), columns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(n: usize) -> Vec<Bar> {
        (0..n)
            .map(|i| {
                let c = 100.0 * (1.0 + 0.01 * ((i * 7 % 5) as f64 - 2.0));
                Bar { open: c * 0.995, high: c * 1.02, low: c * 0.98, close: c }
            })
            .collect()
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = FeatureSpec::v1();
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"estimator\":\"yang_zhang\""));
        let back: FeatureSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn frame_rows_align_with_bars_and_match_the_functions() {
        let b = bars(40);
        let frame = FeatureSpec::v1().compute(&b, None).unwrap();
        assert_eq!(frame.columns.len(), FeatureSpec::v1().features.len());
        assert!(frame.columns.iter().all(|c| c.len() == 40));
        let r = frame.column("log_return").unwrap();
        assert_eq!(r[0], None);
        assert!((r[3].unwrap() - (b[3].close / b[2].close).ln()).abs() < 1e-15);
        let pk = frame.column("rv_parkinson_22d").unwrap();
        assert!(pk[20].is_none() && pk[21].is_some());
        let want = VolEstimator::Parkinson.variance(&b[18..40]).unwrap();
        assert!((pk[39].unwrap() - want).abs() < 1e-15);
        let ewma = frame.column("ewma_var_0.94").unwrap();
        assert!(ewma[29].is_none() && ewma[30].is_some());
        let hm = frame.column("har_m").unwrap();
        assert!(hm[20].is_none() && hm[21].is_some());
    }

    #[test]
    fn intraday_rv_must_align() {
        let b = bars(10);
        let rv = vec![Some(1e-4); 9];
        assert!(FeatureSpec::v1().compute(&b, Some(&rv)).is_err());
    }
}
