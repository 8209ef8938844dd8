//! HAR-X: log-HAR with one exogenous, forward-looking regressor (implied variance, funding),
//! fitted by OLS through linfa on the days where the regressor is known.
//!
//! `ln(mean RV over t+1..t+h) = b0 + b_d ln RV_d + b_w ln RV_w + b_m ln RV_m + b_x x_t + e`,
//! turned back into variance with the lognormal correction `exp(ŷ + s²/2)`. A day without `x`
//! has no HAR-X forecast: callers fall back to plain log-HAR explicitly and count it.

use foresight_core::features::{HarComponents, har_components};
use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};

use crate::error::{DataError, Result};

/// Hyper-parameters of a HAR-X regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HarXParams {
    horizon: usize,
}

/// A fitted HAR-X regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FittedHarX {
    horizon: usize,
    intercept: f64,
    coef: [f64; 4],
    resid_var: f64,
    nobs: usize,
}

impl HarXParams {
    /// For the mean RV over the next `horizon` days (≥ 1).
    pub fn new(horizon: usize) -> Self {
        Self { horizon: horizon.max(1) }
    }

    /// Fits on the days whose target window ends by `upto` and whose `x` is known; needs
    /// `min_rows` such days.
    pub fn fit(&self, rv: &[Option<f64>], x: &[Option<f64>], upto: usize, min_rows: usize) -> Result<FittedHarX> {
        let name = format!("har-x(h={})", self.horizon);
        let upto = upto.min(rv.len().saturating_sub(1));
        let components = har_components(&rv[..=upto]);
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        for t in 0..(upto + 1).saturating_sub(self.horizon) {
            let (Some(c), Some(xt)) = (components[t], x.get(t).copied().flatten()) else { continue };
            let window = &rv[t + 1..=t + self.horizon];
            let Some(sum) = window.iter().try_fold(0.0, |s, v| v.filter(|v| *v > 0.0).map(|v| s + v)) else { continue };
            let Some(r) = regressors(&c, xt) else { continue };
            rows.push(r);
            targets.push((sum / self.horizon as f64).ln());
        }
        if rows.len() < min_rows.max(30) {
            return Err(DataError::Fit { model: name, message: format!("needs {} training days with the input, found {}", min_rows.max(30), rows.len()) });
        }
        let xm = Array2::from_shape_fn((rows.len(), 4), |(i, j)| rows[i][j]);
        let fitted = LinearRegression::new()
            .fit(&Dataset::new(xm.clone(), Array1::from(targets.clone())))
            .map_err(|e| DataError::Fit { model: name.clone(), message: e.to_string() })?;
        let p = fitted.params();
        let predicted = fitted.predict(&xm);
        let sse: f64 = predicted.iter().zip(&targets).map(|(p, t)| (t - p).powi(2)).sum();
        Ok(FittedHarX { horizon: self.horizon, intercept: fitted.intercept(), coef: [p[0], p[1], p[2], p[3]], resid_var: sse / (rows.len() as f64 - 5.0), nobs: rows.len() })
    }
}

fn regressors(c: &HarComponents, x: f64) -> Option<[f64; 4]> {
    (c.daily > 0.0 && c.weekly > 0.0 && c.monthly > 0.0 && x.is_finite()).then(|| [c.daily.ln(), c.weekly.ln(), c.monthly.ln(), x])
}

impl FittedHarX {
    /// Forecast of the mean daily RV over the horizon; `None` without a usable `x` or components.
    pub fn predict(&self, c: &HarComponents, x: Option<f64>) -> Option<f64> {
        let r = regressors(c, x?)?;
        let y = self.intercept + self.coef.iter().zip(r).map(|(b, v)| b * v).sum::<f64>();
        Some((y + 0.5 * self.resid_var).exp())
    }

    /// The forecast horizon in days.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Intercept and the coefficients of ln RV daily, weekly, monthly and the input.
    pub fn coefficients(&self) -> (f64, [f64; 4]) {
        (self.intercept, self.coef)
    }

    /// Residual variance of the regression (log units).
    pub fn residual_variance(&self) -> f64 {
        self.resid_var
    }

    /// Coefficient of the exogenous regressor.
    pub fn exogenous_coefficient(&self) -> f64 {
        self.coef[3]
    }

    /// Training rows used.
    pub fn nobs(&self) -> usize {
        self.nobs
    }
}
