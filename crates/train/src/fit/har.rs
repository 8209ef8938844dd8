//! HAR-RV (Corsi, 2009): the mean realized variance over the next `h` days regressed on the
//! daily, weekly and monthly RV components, in levels or in logs, by OLS through linfa.
//!
//! Log-HAR regresses `ln(mean RV over t+1..t+h)` on the logs of the components and turns a
//! log forecast back into variance with the lognormal bias correction `exp(ŷ + s²/2)`, `s²`
//! the residual variance. A level-HAR forecast can fall below zero; it is floored at the
//! smallest target seen in training so that every forecast is a variance.

use foresight_core::features::{HarComponents, har_components};
use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};

use crate::error::{DataError, Result};

/// Hyper-parameters of a HAR-RV regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HarParams {
    log: bool,
    horizon: usize,
}

impl HarParams {
    /// Log-HAR for the mean RV over the next `horizon` days (≥ 1, see [`check`](Self::check)).
    pub fn log(horizon: usize) -> Self {
        Self { log: true, horizon }
    }

    /// Level HAR for the mean RV over the next `horizon` days (≥ 1, see [`check`](Self::check)).
    pub fn levels(horizon: usize) -> Self {
        Self { log: false, horizon }
    }

    /// Rejects a horizon of 0 days (there is no mean over no days), naming it.
    pub fn check(&self) -> Result<()> {
        if self.horizon == 0 {
            return Err(super::invalid(self.name(), "horizon", "≥ 1 day", self.horizon));
        }
        Ok(())
    }

    /// The forecast horizon in days.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Fits on the days of `rv` (daily realized variance, `None` where missing) whose target
    /// window ends at or before day `upto`: nothing after `upto` is looked at.
    pub fn fit(&self, rv: &[Option<f64>], upto: usize) -> Result<FittedHar> {
        let upto = upto.min(rv.len().saturating_sub(1));
        self.fit_components(rv, &har_components(rv.get(..=upto).unwrap_or_default()), upto)
    }

    /// [`fit`](Self::fit) with the HAR components of `rv` computed once by the caller (a
    /// component at `t` looks back only, so the walk-forward refits can share them).
    pub fn fit_components(&self, rv: &[Option<f64>], components: &[Option<HarComponents>], upto: usize) -> Result<FittedHar> {
        self.check()?;
        if rv.is_empty() || components.is_empty() {
            return Err(self.too_few_days(0));
        }
        let upto = upto.min(rv.len().saturating_sub(1)).min(components.len().saturating_sub(1));
        // Prefix sums of RV and of missing days: each target window in O(1).
        let mut sum = Vec::with_capacity(upto + 2);
        let mut missing = Vec::with_capacity(upto + 2);
        sum.push(0.0);
        missing.push(0usize);
        for v in &rv[..=upto] {
            sum.push(sum[sum.len() - 1] + v.unwrap_or(0.0));
            missing.push(missing[missing.len() - 1] + usize::from(v.is_none()));
        }
        let mut rows: Vec<[f64; 3]> = Vec::new();
        let mut targets: Vec<f64> = Vec::new();
        for (t, c) in components[..(upto + 1).saturating_sub(self.horizon)].iter().enumerate() {
            let Some(c) = *c else { continue };
            let (from, to) = (t + 1, t + self.horizon + 1);
            if missing[to] > missing[from] {
                continue; // a target with a missing day is left out, never filled in
            }
            let target = (sum[to] - sum[from]) / self.horizon as f64;
            if self.log && (target <= 0.0 || c.daily <= 0.0 || c.weekly <= 0.0 || c.monthly <= 0.0) {
                continue;
            }
            rows.push(self.regressors(&c));
            targets.push(if self.log { target.ln() } else { target });
        }
        if rows.len() < 30 {
            return Err(self.too_few_days(rows.len()));
        }
        let x = Array2::from_shape_fn((rows.len(), 3), |(i, j)| rows[i][j]);
        let y = Array1::from(targets.clone());
        let fitted = LinearRegression::new()
            .fit(&Dataset::new(x.clone(), y))
            .map_err(|e| DataError::Fit { model: self.name(), message: e.to_string() })?;
        let coef = [fitted.params()[0], fitted.params()[1], fitted.params()[2]];
        let intercept = fitted.intercept();
        let predicted = fitted.predict(&x);
        let sse: f64 = predicted.iter().zip(&targets).map(|(p, t)| (t - p).powi(2)).sum();
        let resid_var = sse / (rows.len() as f64 - 4.0);
        let floor = if self.log { 0.0 } else { targets.iter().copied().fold(f64::INFINITY, f64::min).max(1e-12) };
        Ok(FittedHar { params: *self, intercept, coef, resid_var, floor, nobs: rows.len() })
    }

    fn too_few_days(&self, found: usize) -> DataError {
        DataError::Fit { model: self.name(), message: format!("needs at least 30 complete training days, found {found}") }
    }

    fn regressors(&self, c: &HarComponents) -> [f64; 3] {
        if self.log { [c.daily.ln(), c.weekly.ln(), c.monthly.ln()] } else { [c.daily, c.weekly, c.monthly] }
    }

    /// `har` or `log-har` with the horizon, e.g. `log-har(h=5)`.
    pub fn name(&self) -> String {
        format!("{}(h={})", if self.log { "log-har" } else { "har" }, self.horizon)
    }
}

/// A fitted HAR-RV regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FittedHar {
    params: HarParams,
    intercept: f64,
    coef: [f64; 3],
    resid_var: f64,
    floor: f64,
    nobs: usize,
}

impl FittedHar {
    /// Intercept and the daily, weekly, monthly coefficients.
    pub fn coefficients(&self) -> (f64, [f64; 3]) {
        (self.intercept, self.coef)
    }

    /// Whether this is a log-HAR.
    pub fn is_log(&self) -> bool {
        self.params.log
    }

    /// The forecast horizon in days.
    pub fn horizon(&self) -> usize {
        self.params.horizon
    }

    /// Smallest forecast a level HAR gives (0 for log-HAR).
    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// Training rows used.
    pub fn nobs(&self) -> usize {
        self.nobs
    }

    /// Residual variance of the regression (log units for log-HAR).
    pub fn residual_variance(&self) -> f64 {
        self.resid_var
    }

    /// Forecast of the mean daily RV over the next `horizon` days from today's components;
    /// `None` when a log-HAR component is not positive.
    pub fn predict(&self, c: &HarComponents) -> Option<f64> {
        if self.params.log && (c.daily <= 0.0 || c.weekly <= 0.0 || c.monthly <= 0.0) {
            return None;
        }
        let x = self.params.regressors(c);
        let y = self.intercept + self.coef.iter().zip(x).map(|(b, v)| b * v).sum::<f64>();
        Some(if self.params.log { (y + 0.5 * self.resid_var).exp() } else { y.max(self.floor) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RV following a HAR law with noise: the level fit recovers the law, with no look-ahead.
    #[test]
    fn level_har_recovers_known_coefficients() {
        // A deterministic LCG drives the shocks, so the test is reproducible.
        let mut state: u64 = 42;
        let mut uniform = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rv: Vec<Option<f64>> = (0..30).map(|_| Some(1.0 + uniform())).collect();
        for t in 30..4000 {
            let avg = |k: usize| rv[t - k..t].iter().flatten().sum::<f64>() / k as f64;
            let mean = 0.2 + 0.4 * avg(1) + 0.3 * avg(5) + 0.2 * avg(22);
            rv.push(Some(mean + (uniform() - 0.5) * 0.8));
        }
        let fit = HarParams::levels(1).fit(&rv, 3999).unwrap();
        let (b0, b) = fit.coefficients();
        let want = [0.4, 0.3, 0.2];
        for (got, want) in b.iter().zip(want) {
            assert!((got - want).abs() < 0.06, "{b0} {b:?}");
        }
        // Fitting up to day 200 ignores everything after it.
        let mut altered = rv.clone();
        for v in altered.iter_mut().skip(201) {
            *v = Some(100.0);
        }
        assert_eq!(HarParams::levels(5).fit(&rv, 200).unwrap(), HarParams::levels(5).fit(&altered, 200).unwrap());
    }

    #[test]
    fn log_har_applies_the_lognormal_correction() {
        let rv: Vec<Option<f64>> = (0..300).map(|i| Some((1.0 + ((i * 7919) % 13) as f64 / 13.0) * 1e-4)).collect();
        let fit = HarParams::log(5).fit(&rv, 299).unwrap();
        let c = har_components(&rv)[299].unwrap();
        let (b0, b) = fit.coefficients();
        let y = b0 + b[0] * c.daily.ln() + b[1] * c.weekly.ln() + b[2] * c.monthly.ln();
        let want = (y + fit.residual_variance() / 2.0).exp();
        assert!((fit.predict(&c).unwrap() - want).abs() < 1e-18);
        assert!(HarParams::log(5).fit(&rv, 40).is_err(), "too few complete days");
    }

    /// A horizon of 0 is refused by name, by both entry points and with no data at all, where it
    /// used to be raised to 1 without a word; horizon 1 still fits.
    #[test]
    fn a_zero_horizon_is_rejected_naming_it() {
        let rv: Vec<Option<f64>> = (0..300).map(|i| Some((1.0 + ((i * 7919) % 13) as f64 / 13.0) * 1e-4)).collect();
        let components = har_components(&rv);
        for params in [HarParams::log(0), HarParams::levels(0)] {
            for result in [params.check().map(|_| ()), params.fit(&rv, 299).map(|_| ()), params.fit_components(&rv, &components, 299).map(|_| ()), params.fit(&[], 0).map(|_| ())] {
                let message = result.unwrap_err().to_string();
                assert!(message.contains("horizon must be ≥ 1 day, got 0"), "{message}");
            }
        }
        for params in [HarParams::log(1), HarParams::levels(1)] {
            assert_eq!(params.fit(&rv, 299).unwrap().horizon(), 1);
        }
        // No data is too little data, not a panic.
        let message = HarParams::log(1).fit(&[], 0).unwrap_err().to_string();
        assert!(message.contains("found 0"), "{message}");
    }
}
