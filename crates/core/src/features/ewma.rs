//! Exponentially weighted moving-average variance (RiskMetrics, 1996).

use crate::error::{CoreError, Result};

/// Returns averaged (zero mean, as RiskMetrics) to seed the recursion.
pub const DEFAULT_EWMA_INIT: usize = 30;

/// EWMA variance `σ²[t] = λ σ²[t−1] + (1 − λ) r[t]²`, seeded with the mean squared return of the
/// first `init` returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    lambda: f64,
    init: usize,
}

impl Ewma {
    /// RiskMetrics' daily decay factor.
    pub const RISKMETRICS_LAMBDA: f64 = 0.94;

    /// An EWMA with decay `lambda` in (0, 1) and the default seed window.
    pub fn new(lambda: f64) -> Result<Self> {
        if !(lambda > 0.0 && lambda < 1.0) {
            return Err(CoreError::InvalidParameter {
                name: "lambda",
                value: lambda,
                reason: "the EWMA decay must lie strictly between 0 and 1",
            });
        }
        Ok(Self { lambda, init: DEFAULT_EWMA_INIT })
    }

    /// Changes the number of returns that seed the recursion (at least 1).
    pub fn with_init(mut self, init: usize) -> Result<Self> {
        if init == 0 {
            return Err(CoreError::InvalidParameter {
                name: "init",
                value: 0.0,
                reason: "the EWMA needs at least one return to seed its variance",
            });
        }
        self.init = init;
        Ok(self)
    }

    /// The decay factor λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Returns needed before the first variance exists.
    pub fn init(&self) -> usize {
        self.init
    }

    /// One step of the recursion.
    pub fn update(&self, previous_variance: f64, r: f64) -> f64 {
        self.lambda * previous_variance + (1.0 - self.lambda) * r * r
    }

    /// Element `t` is the variance after observing `returns[..=t]`: the forecast for return
    /// `t + 1`. `None` while fewer than `init` returns have been seen.
    pub fn variance_series(&self, returns: &[f64]) -> Vec<Option<f64>> {
        let mut out = vec![None; returns.len()];
        if returns.len() < self.init {
            return out;
        }
        let mut var = returns[..self.init].iter().map(|r| r * r).sum::<f64>() / self.init as f64;
        out[self.init - 1] = Some(var);
        for t in self.init..returns.len() {
            var = self.update(var, returns[t]);
            out[t] = Some(var);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursion_by_hand() {
        // init 2: seed (0.01² + 0.03²)/2 = 0.0005; then 0.94·0.0005 + 0.06·0.02² = 0.000494.
        let e = Ewma::new(0.94).unwrap().with_init(2).unwrap();
        let v = e.variance_series(&[0.01, -0.03, 0.02]);
        assert_eq!(v[0], None);
        assert!((v[1].unwrap() - 0.0005).abs() < 1e-18);
        assert!((v[2].unwrap() - 0.000494).abs() < 1e-18);
    }

    #[test]
    fn rejects_bad_lambda_and_init() {
        assert!(Ewma::new(1.0).is_err());
        assert!(Ewma::new(0.0).is_err());
        assert!(Ewma::new(f64::NAN).is_err());
        assert!(Ewma::new(0.9).unwrap().with_init(0).is_err());
    }

    #[test]
    fn short_series_has_no_variance() {
        let e = Ewma::new(0.94).unwrap();
        assert!(e.variance_series(&[0.01; 5]).iter().all(Option::is_none));
    }
}
