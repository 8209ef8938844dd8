//! Scoring variance forecasts against realized variance: QLIKE and MSE losses, the
//! Mincer-Zarnowitz regression and the Diebold-Mariano test of equal predictive accuracy.
//!
//! References: Patton (2011) "Volatility forecast comparison using imperfect volatility
//! proxies" (QLIKE is robust to a noisy proxy); Mincer and Zarnowitz (1969); Diebold and
//! Mariano (1995), with a Newey-West (Bartlett) long-run variance over `h − 1` lags because
//! h-step forecast errors overlap.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{CoreError, Result};

fn check_pair(forecast: &[f64], realized: &[f64]) -> Result<()> {
    if forecast.len() != realized.len() || forecast.is_empty() {
        return Err(CoreError::InsufficientHistory {
            what: "forecasts aligned with realized values".into(),
            needed: forecast.len().max(1),
            available: realized.len(),
        });
    }
    for (field, values) in [("forecast variance", forecast), ("realized variance", realized)] {
        if let Some(index) = values.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(CoreError::InvalidInput {
                field,
                index,
                value: values[index],
                reason: "variances must be finite and > 0 to be scored",
            });
        }
    }
    Ok(())
}

/// QLIKE loss of each forecast, normalised so that a perfect forecast scores 0:
/// `RV/F − ln(RV/F) − 1`.
pub fn qlike(forecast: &[f64], realized: &[f64]) -> Result<Vec<f64>> {
    check_pair(forecast, realized)?;
    Ok(forecast.iter().zip(realized).map(|(f, r)| r / f - (r / f).ln() - 1.0).collect())
}

/// Squared error of each forecast, `(RV − F)²`.
pub fn squared_error(forecast: &[f64], realized: &[f64]) -> Result<Vec<f64>> {
    check_pair(forecast, realized)?;
    Ok(forecast.iter().zip(realized).map(|(f, r)| (r - f).powi(2)).collect())
}

/// The Mincer-Zarnowitz regression `RV = a + b·F + e`: an unbiased forecast has a = 0, b = 1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MincerZarnowitz {
    /// Intercept a.
    pub intercept: f64,
    /// Slope b.
    pub slope: f64,
    /// R² of the regression.
    pub r2: f64,
}

/// Fits the Mincer-Zarnowitz regression (needs two or more distinct forecasts).
pub fn mincer_zarnowitz(forecast: &[f64], realized: &[f64]) -> Result<MincerZarnowitz> {
    check_pair(forecast, realized)?;
    let n = forecast.len() as f64;
    let mf = forecast.iter().sum::<f64>() / n;
    let mr = realized.iter().sum::<f64>() / n;
    let sff: f64 = forecast.iter().map(|f| (f - mf).powi(2)).sum();
    let srr: f64 = realized.iter().map(|r| (r - mr).powi(2)).sum();
    let sfr: f64 = forecast.iter().zip(realized).map(|(f, r)| (f - mf) * (r - mr)).sum();
    if sff <= 0.0 || srr <= 0.0 {
        return Err(CoreError::InsufficientHistory {
            what: "a Mincer-Zarnowitz regression (forecasts and outcomes must vary)".into(),
            needed: 2,
            available: 1,
        });
    }
    let slope = sfr / sff;
    Ok(MincerZarnowitz { intercept: mr - slope * mf, slope, r2: sfr * sfr / (sff * srr) })
}

/// A Diebold-Mariano test of equal expected loss.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DieboldMariano {
    /// Mean loss difference `mean(loss_a − loss_b)` (negative: a is better).
    pub mean_difference: f64,
    /// The standardised statistic, asymptotically N(0, 1).
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

impl DieboldMariano {
    /// P-value of the one-sided alternative "forecast a has the lower expected loss":
    /// `P(Z ≤ statistic)` under the null of equal accuracy.
    pub fn p_value_a_better(&self) -> f64 {
        if self.statistic < 0.0 { self.p_value / 2.0 } else { 1.0 - self.p_value / 2.0 }
    }
}

/// Diebold-Mariano test on paired losses of two forecasts of the same targets, `horizon` steps
/// ahead (the long-run variance uses Bartlett weights over `horizon − 1` lags).
pub fn diebold_mariano(loss_a: &[f64], loss_b: &[f64], horizon: usize) -> Result<DieboldMariano> {
    if loss_a.len() != loss_b.len() || loss_a.len() < 10 {
        return Err(CoreError::InsufficientHistory {
            what: "a Diebold-Mariano test (paired losses)".into(),
            needed: 10.max(loss_a.len()),
            available: loss_b.len().min(loss_a.len()),
        });
    }
    let d: Vec<f64> = loss_a.iter().zip(loss_b).map(|(a, b)| a - b).collect();
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let autocov = |lag: usize| d[lag..].iter().zip(&d).map(|(x, y)| (x - mean) * (y - mean)).sum::<f64>() / n;
    let lags = horizon.saturating_sub(1);
    let mut lrv = autocov(0);
    for lag in 1..=lags {
        lrv += 2.0 * (1.0 - lag as f64 / (lags as f64 + 1.0)) * autocov(lag);
    }
    let (statistic, p_value) = if lrv > 0.0 {
        let s = mean / (lrv / n).sqrt();
        let normal = Normal::new(0.0, 1.0).map_err(|_| CoreError::InvalidParameter {
            name: "normal",
            value: 0.0,
            reason: "unreachable",
        })?;
        (s, 2.0 * normal.sf(s.abs()))
    } else {
        // Identical losses: no evidence either way.
        (0.0, 1.0)
    };
    Ok(DieboldMariano { mean_difference: mean, statistic, p_value })
}

/// Brier score of probability forecasts of a binary event: the mean of `(p − y)²`
/// (Brier 1950); 0 is perfect, always saying 0.5 scores 0.25.
pub fn brier(probabilities: &[f64], outcomes: &[bool]) -> Result<f64> {
    if probabilities.len() != outcomes.len() || probabilities.is_empty() {
        return Err(CoreError::InsufficientHistory {
            what: "probabilities aligned with outcomes".into(),
            needed: probabilities.len().max(1),
            available: outcomes.len(),
        });
    }
    if let Some(index) = probabilities.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(CoreError::InvalidInput {
            field: "probability",
            index,
            value: probabilities[index],
            reason: "probabilities must lie in [0, 1]",
        });
    }
    let total: f64 = probabilities.iter().zip(outcomes).map(|(p, &y)| (p - if y { 1.0 } else { 0.0 }).powi(2)).sum();
    Ok(total / probabilities.len() as f64)
}

/// One bin of a reliability (calibration) table.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the forecast probability bin.
    pub from: f64,
    /// Upper edge.
    pub to: f64,
    /// Forecasts in the bin.
    pub n: usize,
    /// Their mean forecast probability.
    pub mean_forecast: f64,
    /// How often the event happened.
    pub observed: f64,
}

/// Reliability table over `bins` equal-width probability bins (empty bins left out): a
/// calibrated forecast has `observed ≈ mean_forecast` in every bin.
pub fn calibration_table(probabilities: &[f64], outcomes: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0.0f64, 0usize); bins];
    for (p, &y) in probabilities.iter().zip(outcomes) {
        let k = ((p * bins as f64) as usize).min(bins - 1);
        acc[k].0 += 1;
        acc[k].1 += p;
        acc[k].2 += y as usize;
    }
    acc.iter()
        .enumerate()
        .filter(|(_, (n, _, _))| *n > 0)
        .map(|(k, &(n, sum, hits))| CalibrationBin {
            from: k as f64 / bins as f64,
            to: (k + 1) as f64 / bins as f64,
            n,
            mean_forecast: sum / n as f64,
            observed: hits as f64 / n as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qlike_and_mse_by_hand() {
        let q = qlike(&[2.0, 1.0], &[2.0, 2.0]).unwrap();
        assert_eq!(q[0], 0.0);
        assert!((q[1] - (2.0 - 2f64.ln() - 1.0)).abs() < 1e-15);
        assert_eq!(squared_error(&[2.0, 1.0], &[2.0, 4.0]).unwrap(), vec![0.0, 9.0]);
        let e = qlike(&[1.0, 0.0], &[1.0, 1.0]).unwrap_err().to_string();
        assert!(e.contains("forecast variance at index 1"), "{e}");
        assert!(qlike(&[1.0], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn mincer_zarnowitz_by_hand() {
        // RV = 1 + 2F exactly.
        let f = [1.0, 2.0, 3.0, 4.0];
        let r: Vec<f64> = f.iter().map(|x| 1.0 + 2.0 * x).collect();
        let mz = mincer_zarnowitz(&f, &r).unwrap();
        assert!((mz.intercept - 1.0).abs() < 1e-12 && (mz.slope - 2.0).abs() < 1e-12);
        assert!((mz.r2 - 1.0).abs() < 1e-12);
        assert!(mincer_zarnowitz(&[1.0, 1.0], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn diebold_mariano_by_hand() {
        // d alternates 1, 3: mean 2, variance 1 (lag 0), horizon 1 -> stat = 2 / sqrt(1/n).
        let a: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 2.0 } else { 4.0 }).collect();
        let b = vec![1.0; 100];
        let dm = diebold_mariano(&a, &b, 1).unwrap();
        assert!((dm.mean_difference - 2.0).abs() < 1e-12);
        assert!((dm.statistic - 20.0).abs() < 1e-9);
        assert!(dm.p_value < 1e-12);
        // With horizon 2 the lag-1 autocovariance (-99/100) enters with Bartlett weight 1/2:
        // lrv = 1 - 0.99 = 0.01, so the statistic is 2 / sqrt(0.01 / 100) = 200.
        let dm2 = diebold_mariano(&a, &b, 2).unwrap();
        assert!((dm2.statistic - 200.0).abs() < 1e-6, "{}", dm2.statistic);
        let same = diebold_mariano(&b, &b, 1).unwrap();
        assert_eq!(same.p_value, 1.0);
        // One-sided: a is worse here, so "a is better" has p near 1 and the reverse near 0,
        // and the two one-sided p-values of a pair add up to 1.
        let reverse = diebold_mariano(&b, &a, 1).unwrap();
        assert!(dm.p_value_a_better() > 0.999 && reverse.p_value_a_better() < 1e-12);
        let noisy: Vec<f64> = (0..100).map(|i| b[i] + if i % 3 == 0 { 1.2 } else { -0.5 }).collect();
        let (x, y) = (diebold_mariano(&noisy, &b, 1).unwrap(), diebold_mariano(&b, &noisy, 1).unwrap());
        assert!((x.p_value_a_better() + y.p_value_a_better() - 1.0).abs() < 1e-12);
        assert!((x.p_value_a_better().min(y.p_value_a_better()) - x.p_value / 2.0).abs() < 1e-15);
    }

    #[test]
    fn brier_score_and_reliability_table_by_hand() {
        let p = [0.7, 0.2, 0.9, 0.15, 0.55];
        let y = [true, false, true, true, false];
        // (0.09 + 0.04 + 0.01 + 0.7225 + 0.3025) / 5
        assert!((brier(&p, &y).unwrap() - 0.233).abs() < 1e-12);
        assert!(brier(&[1.2], &[true]).is_err());
        assert!(brier(&[0.5], &[]).is_err());
        let table = calibration_table(&p, &y, 5);
        // Bins [0,0.2): 0.15; [0.2,0.4): 0.2; [0.4,0.6): 0.55; [0.6,0.8): 0.7; [0.8,1]: 0.9.
        assert_eq!(table.len(), 5);
        assert_eq!((table[0].n, table[0].observed), (1, 1.0));
        assert_eq!((table[2].mean_forecast, table[2].observed), (0.55, 0.0));
        assert_eq!(table.iter().map(|b| b.n).sum::<usize>(), 5);
    }
}
