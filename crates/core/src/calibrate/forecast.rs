//! From a variance forecast to a margin rate: filtered historical simulation (FHS).
//!
//! The standardised residuals `z[s] = r[s] / σ(s | s−1)` of past days carry the shape of the
//! return distribution (fat tails, skew) that a normal quantile misses; scaling their empirical
//! quantiles by the forecast σ over the horizon makes the rate forward-looking. As for the
//! parametric arms, rates are quantiles of the h-day log return: long `−Q(1−c)·σ_h`,
//! short `Q(c)·σ_h`, with `σ_h = √(h · forecast mean daily variance)`, floored at zero.

use super::reactive::{CalibrationParams, SideRates};
use crate::error::{CoreError, Result};

/// Standardised residuals a model arm needs before its first rate.
pub const FHS_MIN_RESIDUALS: usize = 100;

/// The forecast horizons a model arm's FHS rate needs, for a margin period of `margin_horizon`
/// days and the arm's look-ahead: the one that standardises returns (1 day, or the look-ahead)
/// and the one that scales the margin (the larger of the margin horizon and the look-ahead), in
/// that order; one when they coincide.
pub fn fhs_horizons(margin_horizon: usize, lookahead: Option<usize>) -> Vec<usize> {
    let standardise = lookahead.unwrap_or(1);
    let scale = margin_horizon.max(standardise);
    if standardise == scale { vec![scale] } else { vec![standardise, scale] }
}

/// Carries the last rate over days without one (a day without a forecast keeps the previous
/// day's rate).
pub fn forward_fill(rates: &mut [Option<SideRates>]) {
    let mut last = None;
    for r in rates.iter_mut() {
        match r {
            Some(v) => last = Some(*v),
            None => *r = last,
        }
    }
}

/// Type-7 quantile of an already sorted, non-empty slice.
fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// FHS margin rates. Per day `t`: `returns[t]` is the log return into day `t`;
/// `next_day_var[t]` the variance forecast made at `t` for day `t+1`; `horizon_var[t]` the
/// forecast made at `t` of the mean daily variance over `t+1..t+h`. The rate at `t` uses the
/// residuals of days up to `t` only, and exists once `min_residuals` of them do.
pub fn fhs_rates(
    returns: &[Option<f64>],
    next_day_var: &[Option<f64>],
    horizon_var: &[Option<f64>],
    params: &CalibrationParams,
    min_residuals: usize,
) -> Result<Vec<Option<SideRates>>> {
    let n = returns.len();
    if next_day_var.len() != n || horizon_var.len() != n {
        return Err(CoreError::InsufficientHistory {
            what: "variance forecasts aligned with returns".into(),
            needed: n,
            available: next_day_var.len().min(horizon_var.len()),
        });
    }
    for (field, series) in [("return", returns), ("next_day_var", next_day_var), ("horizon_var", horizon_var)] {
        if let Some(index) = series.iter().position(|v| v.is_some_and(|v| !v.is_finite() || (field != "return" && v < 0.0))) {
            return Err(CoreError::InvalidInput {
                field,
                index,
                value: series[index].unwrap_or(f64::NAN),
                reason: "forecasts and returns must be finite, variances ≥ 0",
            });
        }
    }
    let c = params.confidence();
    let h = params.horizon() as f64;
    let mut residuals: Vec<f64> = Vec::with_capacity(n);
    let mut out = vec![None; n];
    for t in 1..n {
        if let (Some(r), Some(v)) = (returns[t], next_day_var[t - 1])
            && v > 0.0
        {
            let z = r / v.sqrt();
            let at = residuals.partition_point(|x| *x < z);
            residuals.insert(at, z);
        }
        if residuals.len() < min_residuals.max(2) {
            continue;
        }
        if let Some(var) = horizon_var[t] {
            let sigma_h = (h * var).sqrt();
            out[t] = Some(SideRates {
                long: (-sorted_quantile(&residuals, 1.0 - c) * sigma_h).max(0.0),
                short: (sorted_quantile(&residuals, c) * sigma_h).max(0.0),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_past_standardised_residuals_by_the_forecast() {
        // Constant forecast variance 1e-4 (σ = 1%): z = r / 0.01.
        let returns: Vec<Option<f64>> =
            std::iter::once(None).chain((1..=300).map(|i| Some(0.01 * (((i * 37) % 21) as f64 - 10.0) / 10.0))).collect();
        let var = vec![Some(1e-4); returns.len()];
        let p = CalibrationParams::new(0.99, 4, 365.0).unwrap();
        let rates = fhs_rates(&returns, &var, &var, &p, 250).unwrap();
        assert!(rates[249].is_none() && rates[250].is_some());
        let mut z: Vec<f64> = returns[1..=300].iter().map(|r| r.unwrap() / 0.01).collect();
        z.sort_by(f64::total_cmp);
        let r = rates[300].unwrap();
        let sigma_h = (4.0 * 1e-4f64).sqrt();
        assert!((r.long - (-sorted_quantile(&z, 0.01) * sigma_h)).abs() < 1e-15);
        assert!((r.short - sorted_quantile(&z, 0.99) * sigma_h).abs() < 1e-15);
    }

    #[test]
    fn horizons_and_forward_fill() {
        assert_eq!(fhs_horizons(1, None), vec![1]);
        assert_eq!(fhs_horizons(1, Some(22)), vec![22]);
        assert_eq!(fhs_horizons(5, Some(2)), vec![2, 5]);
        assert_eq!(fhs_horizons(5, None), vec![1, 5]);
        let mut rates = vec![None, Some(SideRates::both(0.1)), None, Some(SideRates::both(0.2)), None];
        forward_fill(&mut rates);
        assert_eq!(rates, vec![None, Some(SideRates::both(0.1)), Some(SideRates::both(0.1)), Some(SideRates::both(0.2)), Some(SideRates::both(0.2))]);
    }

    #[test]
    fn uses_no_later_residual_and_rejects_bad_input() {
        let mut returns: Vec<Option<f64>> = (0..400).map(|i| Some(0.001 * ((i % 7) as f64 - 3.0))).collect();
        let var = vec![Some(1e-6); 400];
        let p = CalibrationParams::new(0.99, 1, 365.0).unwrap();
        let before = fhs_rates(&returns, &var, &var, &p, 100).unwrap();
        // A crash from day 350 on: no rate before it moves, later long rates rise.
        for r in returns.iter_mut().skip(350).take(10) {
            *r = Some(-0.5);
        }
        let after = fhs_rates(&returns, &var, &var, &p, 100).unwrap();
        assert_eq!(&before[..350], &after[..350]);
        assert!(after[359].unwrap().long > before[359].unwrap().long);
        let mut bad = var.clone();
        bad[7] = Some(f64::NAN);
        let e = fhs_rates(&returns, &bad, &var, &p, 100).unwrap_err().to_string();
        assert!(e.contains("next_day_var at index 7"), "{e}");
    }
}
