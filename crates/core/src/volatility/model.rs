//! The composed model: constant mean + GARCH process + innovation distribution.

use super::distribution::Innovation;
use super::process::Garch;
use crate::error::{CoreError, Result};

/// Returns prepared for likelihood evaluation: arch's backcast and variance bounds, computed
/// once from the residuals at the starting mean (the sample mean) and then held fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchData {
    /// Percent returns.
    pub returns: Vec<f64>,
    /// σ² used for the lagged terms of the first observation.
    pub backcast: f64,
    /// (lower, upper) variance bound per observation.
    pub bounds: Vec<(f64, f64)>,
}

/// Observations the backcast and bounds look at first.
pub(super) const BACKCAST_OBS: usize = 75;
pub(super) const BACKCAST_DECAY: f64 = 0.94;

impl ArchData {
    /// Prepares `returns` (finite, at least 30 of them).
    pub fn new(returns: &[f64]) -> Result<Self> {
        if let Some(index) = returns.iter().position(|r| !r.is_finite()) {
            return Err(CoreError::InvalidInput {
                field: "return",
                index,
                value: returns[index],
                reason: "returns must be finite",
            });
        }
        if returns.len() < 30 {
            return Err(CoreError::InsufficientHistory {
                what: "a GARCH fit".into(),
                needed: 30,
                available: returns.len(),
            });
        }
        let n = returns.len() as f64;
        let mean = returns.iter().sum::<f64>() / n;
        let resids: Vec<f64> = returns.iter().map(|r| r - mean).collect();
        let tau = resids.len().min(BACKCAST_OBS);
        let weights: Vec<f64> = (0..tau).map(|i| BACKCAST_DECAY.powi(i as i32)).collect();
        let total: f64 = weights.iter().sum();
        let backcast = resids[..tau].iter().zip(&weights).map(|(e, w)| e * e * w).sum::<f64>() / total;
        // Loose bounds around an EWMA of squared residuals, as arch's `variance_bounds`.
        let var = resids.iter().map(|e| e * e).sum::<f64>() / n;
        let max_sq = resids.iter().map(|e| e * e).fold(0.0, f64::max);
        let (floor, min_upper, max_upper) = (var / 1e8, 1.0 + max_sq, 1e7 * (1.0 + max_sq));
        let mut ewma = backcast;
        let bounds = resids
            .iter()
            .map(|e| {
                let b = (ewma / 1e6, ewma * 1e6);
                ewma = (1.0 - BACKCAST_DECAY) * e * e + BACKCAST_DECAY * ewma;
                (b.0.max(floor), b.1.max(min_upper).min(max_upper))
            })
            .collect();
        Ok(Self { returns: returns.to_vec(), backcast, bounds })
    }

    /// Number of observations.
    pub fn nobs(&self) -> usize {
        self.returns.len()
    }
}

/// Constant mean `μ`, a [`Garch`] process and an [`Innovation`] distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchModel {
    /// The variance process.
    pub volatility: Garch,
    /// The innovation distribution.
    pub innovation: Innovation,
}

impl ArchModel {
    /// Total parameters: μ, the process's, the distribution's.
    pub fn num_params(&self) -> usize {
        1 + self.volatility.num_params() + self.innovation.num_params()
    }

    /// Parameter names in order (`mu`, `omega`, `alpha`, [`gamma`], `beta`, [`nu`]).
    pub fn param_names(&self) -> Vec<&'static str> {
        let mut names = vec!["mu"];
        names.extend_from_slice(self.volatility.param_names());
        names.extend_from_slice(self.innovation.param_names());
        names
    }

    /// Splits `params` into (mean, process, distribution) slices.
    pub fn split<'a>(&self, params: &'a [f64]) -> (f64, &'a [f64], &'a [f64]) {
        let k = self.volatility.num_params();
        (params[0], &params[1..1 + k], &params[1 + k..])
    }

    /// Whether `params` satisfies every constraint.
    pub fn is_admissible(&self, params: &[f64]) -> bool {
        let (mu, vol, dist) = self.split(params);
        params.len() == self.num_params()
            && mu.is_finite()
            && self.volatility.is_admissible(vol)
            && self.innovation.is_admissible(dist)
    }

    /// Conditional variances at `params`.
    pub fn conditional_variance(&self, params: &[f64], data: &ArchData) -> Vec<f64> {
        let (mu, vol, _) = self.split(params);
        let resids: Vec<f64> = data.returns.iter().map(|r| r - mu).collect();
        let mut sigma2 = vec![0.0; resids.len()];
        self.volatility.variance(vol, &resids, data.backcast, &data.bounds, &mut sigma2);
        sigma2
    }

    /// Log-likelihood of each observation at `params`.
    pub fn loglik_terms(&self, params: &[f64], data: &ArchData) -> Vec<f64> {
        let (mu, _, dist) = self.split(params);
        let sigma2 = self.conditional_variance(params, data);
        data.returns
            .iter()
            .zip(&sigma2)
            .map(|(r, s)| self.innovation.log_density(dist, r - mu, *s))
            .collect()
    }

    /// Total log-likelihood at `params`.
    pub fn loglik(&self, params: &[f64], data: &ArchData) -> f64 {
        self.loglik_terms(params, data).iter().sum()
    }

    /// Analytic variance forecasts for 1..=horizon steps after the last observation.
    pub fn forecast_variance(&self, params: &[f64], data: &ArchData, horizon: usize) -> Vec<f64> {
        let (mu, vol, _) = self.split(params);
        let sigma2 = self.conditional_variance(params, data);
        let last = data.returns.len() - 1; // ArchData holds at least 30 returns
        self.volatility.forecast(vol, data.returns[last] - mu, sigma2[last], horizon)
    }

    /// Akaike information criterion `−2 ll + 2k`.
    pub fn aic(&self, loglik: f64) -> f64 {
        -2.0 * loglik + 2.0 * self.num_params() as f64
    }

    /// Bayesian information criterion `−2 ll + k ln n`.
    pub fn bic(&self, loglik: f64, nobs: usize) -> f64 {
        -2.0 * loglik + self.num_params() as f64 * (nobs as f64).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backcast_is_the_weighted_mean_of_early_squared_residuals() {
        let r: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let d = ArchData::new(&r).unwrap();
        assert!((d.backcast - 1.0).abs() < 1e-15, "mean 0, every residual squared is 1");
        assert!(ArchData::new(&r[..10]).is_err());
        let mut bad = r.clone();
        bad[3] = f64::NAN;
        assert!(ArchData::new(&bad).unwrap_err().to_string().contains("index 3"));
    }

    #[test]
    fn names_and_information_criteria() {
        let m = ArchModel { volatility: Garch { asymmetric: true }, innovation: Innovation::StudentT };
        assert_eq!(m.param_names(), vec!["mu", "omega", "alpha", "gamma", "beta", "nu"]);
        assert_eq!(m.aic(-100.0), 212.0);
        assert!((m.bic(-100.0, 100) - (200.0 + 6.0 * 100f64.ln())).abs() < 1e-12);
    }
}
