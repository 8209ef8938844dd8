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

/// How a model arm turns a variance forecast into the scale of its margin: which forecast
/// standardises past returns (the FHS residuals) and which scales the quantile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ForwardPolicy {
    /// Standardise by the 1-day forecast, scale by the forecast over the margin horizon.
    #[default]
    Horizon,
    /// `+lookahead:N`: standardise and scale by the forecast mean variance over the next N
    /// days (at least the margin horizon). Smoother, and it moves before the storm when the
    /// forecast path rises.
    Lookahead(usize),
    /// `+path:N`: standardise by the 1-day forecast and scale by the larger of the forecast
    /// mean variance over the margin horizon and over the next N days: the worst stretch of
    /// the forecast path. While the path rises (volatility below its forecast mean) margin is
    /// raised early to where the path is going; while it falls, margin follows the near end.
    Path(usize),
}

impl ForwardPolicy {
    /// The forecast horizons this policy needs for a margin period of `margin_horizon` days,
    /// ascending, without repeats ([`rates`](Self::rates) looks each up by its value).
    pub fn horizons(&self, margin_horizon: usize) -> Vec<usize> {
        let mut out = match *self {
            ForwardPolicy::Horizon => vec![1, margin_horizon],
            ForwardPolicy::Lookahead(days) => vec![days, margin_horizon.max(days)],
            ForwardPolicy::Path(days) => vec![1, margin_horizon, days.max(margin_horizon)],
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// FHS base rates of a model arm. `returns[t]` is the log return into day `t`;
    /// `forecast(h)` the forecasts of the mean daily variance over the next `h` days made at the
    /// close of each day (aligned with `returns`), for each of [`horizons`](Self::horizons).
    /// A day without a forecast keeps the previous day's rate.
    pub fn rates<'a>(
        &self,
        returns: &[Option<f64>],
        forecast: impl Fn(usize) -> Option<&'a [Option<f64>]>,
        params: &CalibrationParams,
    ) -> Result<Vec<Option<SideRates>>> {
        self.rates_scaled_by(returns, &forecast, &forecast, params)
    }

    /// [`rates`](Self::rates) with residuals standardised by `standardising(h)` and the quantile
    /// scaled by `scaling(h)`: an add-on to the margin (such as the regime raise) belongs to the
    /// scale only, or the residuals it shrinks would take it back.
    pub fn rates_scaled_by<'a, 'b>(
        &self,
        returns: &[Option<f64>],
        standardising: &dyn Fn(usize) -> Option<&'a [Option<f64>]>,
        scaling: &dyn Fn(usize) -> Option<&'b [Option<f64>]>,
        params: &CalibrationParams,
    ) -> Result<Vec<Option<SideRates>>> {
        let missing = |h: usize| CoreError::InsufficientHistory { what: format!("a variance forecast over {h} day(s)"), needed: returns.len(), available: 0 };
        let standard = |h: usize| standardising(h).ok_or_else(|| missing(h));
        let scale_of = |h: usize| scaling(h).ok_or_else(|| missing(h));
        let margin = params.horizon();
        // Looked up by horizon, not by position: with a 1-day margin the standardising and the
        // near-end forecast are one series.
        let (standardise, scale): (&[Option<f64>], Vec<Option<f64>>) = match *self {
            ForwardPolicy::Horizon => (standard(1)?, scale_of(margin)?.to_vec()),
            ForwardPolicy::Lookahead(days) => (standard(days)?, scale_of(margin.max(days))?.to_vec()),
            ForwardPolicy::Path(days) => {
                let (near, far) = (scale_of(margin)?, scale_of(margin.max(days))?);
                let worse = (0..returns.len()).map(|t| Some(near.get(t).copied().flatten()?.max(far.get(t).copied().flatten()?))).collect();
                (standard(1)?, worse)
            }
        };
        let mut rates = fhs_rates(returns, standardise, &scale, params, FHS_MIN_RESIDUALS)?;
        forward_fill(&mut rates);
        Ok(rates)
    }
}

/// The daily variance an annualised implied volatility in percent (VIX, DVOL) stands for,
/// `(iv/100)² / periods_per_year`; `None` unless `iv > 0` and the variance is finite.
pub fn implied_daily_variance(iv_percent: f64, periods_per_year: f64) -> Option<f64> {
    crate::features::implied_log_variance(iv_percent, periods_per_year).map(f64::exp).filter(|v| v.is_finite())
}

/// A variance forecast blended with implied variance: `(1 − weight)·forecast + weight·implied`
/// on days with both (implied alone when `weight` is 1), the forecast alone on days without an
/// implied volatility. Implied variance carries the market's risk premium; residuals
/// standardised by the blend absorb part of that level, but not those of days before the
/// implied series begins, which were standardised by the forecast alone.
pub fn blend_implied(forecast: &[Option<f64>], implied: &[Option<f64>], weight: f64) -> Vec<Option<f64>> {
    forecast
        .iter()
        .enumerate()
        .map(|(t, f)| match (implied.get(t).copied().flatten(), f) {
            (Some(iv), _) if weight >= 1.0 => Some(iv),
            (Some(iv), Some(f)) => Some((1.0 - weight) * f + weight * iv),
            (_, f) => *f,
        })
        .collect()
}

/// A regime model's view of one day: the probability that the stressed regime comes within the
/// arm's horizon, and that regime's typical daily variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stress {
    /// P(the stressed regime within h days), in [0, 1].
    pub probability: f64,
    /// Typical daily variance in the stressed regime.
    pub variance: f64,
}

/// A variance forecast raised toward the stressed regime's variance by the probability of
/// entering it, `f + p·max(0, v_stressed − f)`: in calm, margin rises before the turn as the
/// regime model grows wary; in stress (the forecast already above the stressed level) nothing
/// changes. Days without a regime view keep the forecast.
pub fn raise_by_stress(forecast: &[Option<f64>], stress: &[Option<Stress>]) -> Vec<Option<f64>> {
    forecast
        .iter()
        .enumerate()
        .map(|(t, f)| {
            let f = (*f)?;
            Some(match stress.get(t).copied().flatten() {
                Some(s) => f + s.probability.clamp(0.0, 1.0) * (s.variance - f).max(0.0),
                None => f,
            })
        })
        .collect()
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
        assert_eq!(ForwardPolicy::Horizon.horizons(5), vec![1, 5]);
        assert_eq!(ForwardPolicy::Lookahead(22).horizons(1), vec![22]);
        assert_eq!(ForwardPolicy::Lookahead(2).horizons(5), vec![2, 5]);
        assert_eq!(ForwardPolicy::Horizon.horizons(1), vec![1]);
        assert_eq!(ForwardPolicy::Path(22).horizons(1), vec![1, 22]);
        assert_eq!(ForwardPolicy::Path(22).horizons(2), vec![1, 2, 22]);
        assert_eq!(ForwardPolicy::Path(1).horizons(2), vec![1, 2]);
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

    #[test]
    fn the_path_policy_scales_by_the_worse_end_of_the_forecast_path() {
        // Returns of ±1% (σ = 1% by the 1-day forecast); the 2-day forecast says 1e-4, the
        // 22-day one 4e-4 on even days (a rising path) and 0.25e-4 on odd days (a falling one).
        let n = 300;
        let returns: Vec<Option<f64>> = (0..n).map(|i| (i > 0).then(|| if i % 2 == 0 { 0.01 } else { -0.01 })).collect();
        let one = vec![Some(1e-4); n];
        let two = vec![Some(1e-4); n];
        let month: Vec<Option<f64>> = (0..n).map(|i| Some(if i % 2 == 0 { 4e-4 } else { 0.25e-4 })).collect();
        let p = CalibrationParams::new(0.99, 2, 365.0).unwrap();
        let by_h = |h: usize| match h {
            1 => Some(&one[..]),
            2 => Some(&two[..]),
            22 => Some(&month[..]),
            _ => None,
        };
        let rates = ForwardPolicy::Path(22).rates(&returns, by_h, &p).unwrap();
        // Every residual is ±1, so the 1% and 99% quantiles are ∓1: rate = √(2·var).
        let rising = rates[298].unwrap();
        assert!((rising.long - (2.0f64 * 4e-4).sqrt()).abs() < 1e-12, "{rising:?}");
        let falling = rates[299].unwrap();
        assert!((falling.short - (2.0f64 * 1e-4).sqrt()).abs() < 1e-12, "{falling:?}");
        // The margin-horizon policy ignores the month; a missing horizon is an error.
        let plain = ForwardPolicy::Horizon.rates(&returns, by_h, &p).unwrap();
        assert!((plain[298].unwrap().long - (2.0f64 * 1e-4).sqrt()).abs() < 1e-12);
        let e = ForwardPolicy::Path(66).rates(&returns, by_h, &p).unwrap_err().to_string();
        assert!(e.contains("66 day(s)"), "{e}");
        // A 1-day margin: the near end is the 1-day forecast itself, and it counts in the max.
        let p1 = CalibrationParams::new(0.99, 1, 365.0).unwrap();
        let high_near: Vec<Option<f64>> = (0..n).map(|i| Some(if i % 2 == 0 { 1e-4 } else { 9e-4 })).collect();
        let by_h1 = |h: usize| match h {
            1 => Some(&high_near[..]),
            22 => Some(&month[..]),
            _ => None,
        };
        let rates = ForwardPolicy::Path(22).rates(&returns, by_h1, &p1).unwrap();
        let near_wins = rates[299].unwrap(); // 9e-4 near vs 0.25e-4 far
        let far_wins = rates[298].unwrap(); // 1e-4 near vs 4e-4 far
        assert!(near_wins.long > 0.0 && far_wins.long > 0.0);
        // Residuals alternate between ±0.01/σ₁ of the previous day; both rates use the same pool.
        assert!((near_wins.long / far_wins.long - (9e-4f64 / 4e-4).sqrt()).abs() < 1e-12, "{near_wins:?} {far_wins:?}");
    }

    #[test]
    fn implied_variance_blends_where_it_exists_and_falls_back_where_it_does_not() {
        // VIX 20 on a 252-day year: 0.04 / 252 a day.
        let iv = implied_daily_variance(20.0, 252.0).unwrap();
        assert!((iv - 0.04 / 252.0).abs() < 1e-18);
        assert_eq!(implied_daily_variance(0.0, 252.0), None);
        assert_eq!(implied_daily_variance(1e200, 252.0), None, "an absurd value is no variance, not an infinite one");
        let f = [Some(1e-4), Some(1e-4), None, Some(3e-4)];
        let implied = [Some(3e-4), None, Some(2e-4)];
        let half = blend_implied(&f, &implied, 0.5);
        assert!((half[0].unwrap() - 2e-4).abs() < 1e-18, "the mean of 1e-4 and 3e-4");
        assert_eq!(half[1], Some(1e-4), "no implied volatility that day: the forecast alone");
        assert_eq!(half[2], None, "a blend needs the forecast");
        assert_eq!(half[3], Some(3e-4), "past the implied series: the forecast alone");
        assert_eq!(blend_implied(&f, &implied, 1.0)[2], Some(2e-4), "weight 1: implied alone");
    }

    #[test]
    fn stress_raises_a_calm_forecast_in_proportion_to_its_probability() {
        let f = [Some(1e-4), Some(9e-4), Some(1e-4), None];
        let s = [Some(Stress { probability: 0.25, variance: 5e-4 }), Some(Stress { probability: 0.9, variance: 5e-4 }), None, Some(Stress { probability: 1.0, variance: 5e-4 })];
        let raised = raise_by_stress(&f, &s);
        assert!((raised[0].unwrap() - 2e-4).abs() < 1e-18, "1e-4 + 0.25 × (5e-4 − 1e-4)");
        assert_eq!(raised[1], Some(9e-4), "already above the stressed level: unchanged");
        assert_eq!(raised[2], Some(1e-4), "no regime view: the forecast");
        assert_eq!(raised[3], None, "no forecast: nothing to raise");
    }
}
