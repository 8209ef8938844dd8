//! Realized-volatility estimators over a window of OHLC bars.
//!
//! Each returns the variance of log returns per bar interval. Formulas:
//! - close-to-close: sample variance of `ln(C[i]/C[i-1])` (denominator N-1);
//! - Parkinson (1980): `Σ ln(H/L)² / (4 ln2 · N)`;
//! - Garman-Klass (1980): `Σ [½ ln(H/L)² − (2 ln2 − 1) ln(C/O)²] / N`;
//! - Rogers-Satchell (1991): `Σ [ln(H/C) ln(H/O) + ln(L/C) ln(L/O)] / N`;
//! - Yang-Zhang (2000): `σ²_overnight + k σ²_open-close + (1 − k) σ²_RS` with
//!   `k = 0.34 / (1.34 + (N+1)/(N−1))`.
//!
//! Close-to-close and Yang-Zhang need the close before the window: they take `N + 1` bars for a
//! window of `N` (see [`VolEstimator::bars_needed`]).

use crate::error::{CoreError, Result, check_prices};

/// One OHLC bar. Prices must be finite and positive, with `low ≤ open, close ≤ high`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bar {
    /// First traded price of the interval.
    pub open: f64,
    /// Highest price of the interval.
    pub high: f64,
    /// Lowest price of the interval.
    pub low: f64,
    /// Last traded price of the interval.
    pub close: f64,
}

impl Bar {
    /// Checks positivity and the range ordering; `index` names the bar in the error.
    pub fn validate(&self, index: usize) -> Result<()> {
        check_prices("open", &[self.open]).map_err(|e| reindex(e, index))?;
        check_prices("high", &[self.high]).map_err(|e| reindex(e, index))?;
        check_prices("low", &[self.low]).map_err(|e| reindex(e, index))?;
        check_prices("close", &[self.close]).map_err(|e| reindex(e, index))?;
        let bad = |field, value, reason| Err(CoreError::InvalidInput { field, index, value, reason });
        if self.high < self.low {
            return bad("high", self.high, "high is below low");
        }
        if self.open < self.low || self.open > self.high {
            return bad("open", self.open, "open is outside [low, high]");
        }
        if self.close < self.low || self.close > self.high {
            return bad("close", self.close, "close is outside [low, high]");
        }
        Ok(())
    }
}

fn reindex(e: CoreError, index: usize) -> CoreError {
    match e {
        CoreError::InvalidInput { field, value, reason, .. } => {
            CoreError::InvalidInput { field, index, value, reason }
        }
        other => other,
    }
}

/// A realized-volatility estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolEstimator {
    /// Sample variance of close-to-close log returns.
    CloseToClose,
    /// Parkinson high-low range estimator.
    Parkinson,
    /// Garman-Klass OHLC estimator.
    GarmanKlass,
    /// Rogers-Satchell drift-independent estimator.
    RogersSatchell,
    /// Yang-Zhang estimator (overnight + open-close + Rogers-Satchell).
    YangZhang,
}

impl VolEstimator {
    /// All estimators, in a stable order.
    pub const ALL: [VolEstimator; 5] = [
        VolEstimator::CloseToClose,
        VolEstimator::Parkinson,
        VolEstimator::GarmanKlass,
        VolEstimator::RogersSatchell,
        VolEstimator::YangZhang,
    ];

    /// Short name used in feature names (`cc`, `parkinson`, `gk`, `rs`, `yz`).
    pub fn short_name(self) -> &'static str {
        match self {
            VolEstimator::CloseToClose => "cc",
            VolEstimator::Parkinson => "parkinson",
            VolEstimator::GarmanKlass => "gk",
            VolEstimator::RogersSatchell => "rs",
            VolEstimator::YangZhang => "yz",
        }
    }

    /// Smallest window this estimator accepts.
    pub fn min_window(self) -> usize {
        match self {
            // A sample variance needs two returns; Yang-Zhang's k needs N > 1.
            VolEstimator::CloseToClose | VolEstimator::YangZhang => 2,
            _ => 1,
        }
    }

    /// Bars needed for a window of `window` intervals (one more for estimators that use the
    /// previous close).
    pub fn bars_needed(self, window: usize) -> usize {
        match self {
            VolEstimator::CloseToClose | VolEstimator::YangZhang => window + 1,
            _ => window,
        }
    }

    /// Variance per bar interval over `bars`, which must hold exactly
    /// [`bars_needed`](Self::bars_needed)`(window)` bars for some `window ≥ min_window`.
    /// Bars are assumed validated (see [`Bar::validate`]).
    pub fn variance(self, bars: &[Bar]) -> Result<f64> {
        let window = match self {
            VolEstimator::CloseToClose | VolEstimator::YangZhang => bars.len().saturating_sub(1),
            _ => bars.len(),
        };
        if window < self.min_window() {
            return Err(CoreError::InsufficientHistory {
                what: format!("the {} estimator", self.short_name()),
                needed: self.bars_needed(self.min_window()),
                available: bars.len(),
            });
        }
        let n = window as f64;
        let ln2 = std::f64::consts::LN_2;
        let v = match self {
            VolEstimator::CloseToClose => {
                let r: Vec<f64> = bars.windows(2).map(|w| (w[1].close / w[0].close).ln()).collect();
                sample_variance(&r)
            }
            VolEstimator::Parkinson => {
                bars.iter().map(|b| (b.high / b.low).ln().powi(2)).sum::<f64>() / (4.0 * ln2 * n)
            }
            VolEstimator::GarmanKlass => {
                bars.iter()
                    .map(|b| {
                        0.5 * (b.high / b.low).ln().powi(2)
                            - (2.0 * ln2 - 1.0) * (b.close / b.open).ln().powi(2)
                    })
                    .sum::<f64>()
                    / n
            }
            VolEstimator::RogersSatchell => rogers_satchell_sum(bars) / n,
            VolEstimator::YangZhang => {
                let overnight: Vec<f64> =
                    bars.windows(2).map(|w| (w[1].open / w[0].close).ln()).collect();
                let open_close: Vec<f64> = bars[1..].iter().map(|b| (b.close / b.open).ln()).collect();
                let k = 0.34 / (1.34 + (n + 1.0) / (n - 1.0));
                sample_variance(&overnight)
                    + k * sample_variance(&open_close)
                    + (1.0 - k) * rogers_satchell_sum(&bars[1..]) / n
            }
        };
        Ok(v)
    }
}

fn rogers_satchell_sum(bars: &[Bar]) -> f64 {
    bars.iter()
        .map(|b| {
            (b.high / b.close).ln() * (b.high / b.open).ln()
                + (b.low / b.close).ln() * (b.low / b.open).ln()
        })
        .sum()
}

/// Unbiased sample variance (denominator N−1). Callers guarantee `x.len() ≥ 2`.
fn sample_variance(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
}

/// Rolling variance: element `t` is the estimator over the window of `window` intervals ending at
/// bar `t` (inclusive), `None` until enough bars exist.
pub fn rolling_variance(bars: &[Bar], estimator: VolEstimator, window: usize) -> Result<Vec<Option<f64>>> {
    if window < estimator.min_window() {
        return Err(CoreError::InvalidParameter {
            name: "window",
            value: window as f64,
            reason: "too short for this estimator (close-to-close and Yang-Zhang need ≥ 2)",
        });
    }
    for (i, b) in bars.iter().enumerate() {
        b.validate(i)?;
    }
    let need = estimator.bars_needed(window);
    (0..bars.len())
        .map(|t| {
            if t + 1 < need {
                Ok(None)
            } else {
                estimator.variance(&bars[t + 1 - need..=t]).map(Some)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(open: f64, high: f64, low: f64, close: f64) -> Bar {
        Bar { open, high, low, close }
    }

    /// Three hand-made bars; every expected value below was worked out by hand from the
    /// formulas in the module docs (logs written out explicitly).
    fn three_bars() -> Vec<Bar> {
        vec![
            bar(100.0, 105.0, 98.0, 102.0),
            bar(103.0, 108.0, 101.0, 107.0),
            bar(106.0, 107.0, 95.0, 96.0),
        ]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-14 * b.abs().max(1.0)
    }

    #[test]
    fn parkinson_by_hand() {
        let b = three_bars();
        let s = (105.0f64 / 98.0).ln().powi(2) + (108.0f64 / 101.0).ln().powi(2) + (107.0f64 / 95.0).ln().powi(2);
        let want = s / (4.0 * 2f64.ln() * 3.0);
        assert!(close(VolEstimator::Parkinson.variance(&b).unwrap(), want));
        // numerically: ln(105/98)=0.068993, ln(108/101)=0.067014, ln(107/95)=0.118953;
        // squares sum to 0.0234007, over 4·ln2·3 = 8.317766
        assert!((VolEstimator::Parkinson.variance(&b).unwrap() - 0.0028133).abs() < 1e-7);
    }

    #[test]
    fn garman_klass_by_hand() {
        let b = three_bars();
        let c = 2.0 * 2f64.ln() - 1.0;
        let term = |o: f64, h: f64, l: f64, cl: f64| 0.5 * (h / l).ln().powi(2) - c * (cl / o).ln().powi(2);
        let want = (term(100.0, 105.0, 98.0, 102.0) + term(103.0, 108.0, 101.0, 107.0) + term(106.0, 107.0, 95.0, 96.0)) / 3.0;
        assert!(close(VolEstimator::GarmanKlass.variance(&b).unwrap(), want));
    }

    #[test]
    fn rogers_satchell_by_hand() {
        // One bar: ln(H/C)ln(H/O) + ln(L/C)ln(L/O) with O=100, H=105, L=98, C=102.
        let b = [bar(100.0, 105.0, 98.0, 102.0)];
        let want = (105.0f64 / 102.0).ln() * (105.0f64 / 100.0).ln() + (98.0f64 / 102.0).ln() * (98.0f64 / 100.0).ln();
        assert!(close(VolEstimator::RogersSatchell.variance(&b).unwrap(), want));
        // = 0.028988 * 0.048790 + (-0.040005)(-0.020203) = 0.0014143 + 0.0008082
        assert!((want - 0.0022225).abs() < 1e-6);
    }

    #[test]
    fn close_to_close_is_sample_variance_of_log_returns() {
        let b = three_bars();
        let r1 = (107.0f64 / 102.0).ln();
        let r2 = (96.0f64 / 107.0).ln();
        let m = (r1 + r2) / 2.0;
        let want = (r1 - m).powi(2) + (r2 - m).powi(2); // N-1 = 1
        assert!(close(VolEstimator::CloseToClose.variance(&b).unwrap(), want));
    }

    #[test]
    fn yang_zhang_by_hand() {
        let b = three_bars();
        let o1 = (103.0f64 / 102.0).ln();
        let o2 = (106.0f64 / 107.0).ln();
        let c1 = (107.0f64 / 103.0).ln();
        let c2 = (96.0f64 / 106.0).ln();
        let var2 = |a: f64, b: f64| (a - b).powi(2) / 2.0; // sample variance of two values
        let rs = |o: f64, h: f64, l: f64, c: f64| (h / c).ln() * (h / o).ln() + (l / c).ln() * (l / o).ln();
        let rs_mean = (rs(103.0, 108.0, 101.0, 107.0) + rs(106.0, 107.0, 95.0, 96.0)) / 2.0;
        let k = 0.34 / (1.34 + 3.0 / 1.0);
        let want = var2(o1, o2) + k * var2(c1, c2) + (1.0 - k) * rs_mean;
        assert!(close(VolEstimator::YangZhang.variance(&b).unwrap(), want));
    }

    #[test]
    fn rolling_aligns_to_the_last_bar_of_the_window() {
        let b = three_bars();
        let r = rolling_variance(&b, VolEstimator::Parkinson, 2).unwrap();
        assert_eq!(r[0], None);
        assert!(close(r[1].unwrap(), VolEstimator::Parkinson.variance(&b[0..2]).unwrap()));
        assert!(close(r[2].unwrap(), VolEstimator::Parkinson.variance(&b[1..3]).unwrap()));
        let r = rolling_variance(&b, VolEstimator::CloseToClose, 2).unwrap();
        assert_eq!(&r[..2], &[None, None]);
        assert!(r[2].is_some());
    }

    #[test]
    fn rejects_bad_bars_and_windows() {
        let bad = [bar(100.0, 99.0, 101.0, 100.0)];
        let e = rolling_variance(&bad, VolEstimator::Parkinson, 1).unwrap_err().to_string();
        assert!(e.contains("high") && e.contains("below low"), "{e}");
        let bad = [bar(100.0, 105.0, 98.0, 110.0)];
        let e = rolling_variance(&bad, VolEstimator::Parkinson, 1).unwrap_err().to_string();
        assert!(e.contains("close is outside"), "{e}");
        assert!(rolling_variance(&three_bars(), VolEstimator::YangZhang, 1).is_err());
        assert!(VolEstimator::YangZhang.variance(&three_bars()[..2]).is_err());
    }
}
