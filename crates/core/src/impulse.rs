//! Impulse responses of margin models to a volatility step.
//!
//! After Gurrola-Perez & Murphy, "The impulsive approach to procyclicality" (2024): feed a
//! margin model return paths whose volatility steps up at day 0 and watch its margin over time:
//! how fast it reacts, whether it overshoots, and how many losses break through while it
//! catches up. Returns are `σ_t · z_t` with `z` drawn (with replacement) from a real series'
//! standardised residuals, so the shape of the tails is real while the volatility path is the
//! experiment's own.

use rand::Rng;

use crate::error::{CoreError, Result};

/// A volatility path: calm at `sigma`, a step to `step × sigma` at day 0 for `high_days`, then
/// calm again for `after_days`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepScenario {
    /// Calm days before the step (the models' history).
    pub calm_days: usize,
    /// Days at the higher volatility.
    pub high_days: usize,
    /// Calm days after it.
    pub after_days: usize,
    /// Calm daily volatility of log returns.
    pub sigma: f64,
    /// The step: the volatility multiplies by this at day 0.
    pub step: f64,
}

impl StepScenario {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return Err(CoreError::InvalidParameter { name: "sigma", value: self.sigma, reason: "calm volatility must be > 0" });
        }
        if !(self.step > 0.0 && self.step.is_finite()) {
            return Err(CoreError::InvalidParameter { name: "step", value: self.step, reason: "the step multiplies volatility: > 0" });
        }
        if self.calm_days < 2 || self.high_days < 1 {
            return Err(CoreError::InvalidParameter {
                name: "calm_days/high_days",
                value: self.calm_days.min(self.high_days) as f64,
                reason: "needs calm history and at least one day after the step",
            });
        }
        Ok(())
    }

    /// Days in a path; day index `calm_days` is day 0 of the step.
    pub fn len(&self) -> usize {
        self.calm_days + self.high_days + self.after_days
    }

    /// Always false (a scenario has calm days); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The volatility of the return into day index `t`.
    pub fn volatility(&self, t: usize) -> f64 {
        if (self.calm_days..self.calm_days + self.high_days).contains(&t) { self.sigma * self.step } else { self.sigma }
    }

    /// One path of prices starting at 100: the return into day `t ≥ 1` is
    /// `volatility(t) · z` with `z` drawn uniformly from `residuals`.
    pub fn simulate(&self, residuals: &[f64], rng: &mut impl Rng) -> Vec<f64> {
        let mut prices = Vec::with_capacity(self.len());
        let mut p = 100.0f64;
        prices.push(p);
        for t in 1..self.len() {
            p *= (self.volatility(t) * residuals[rng.random_range(0..residuals.len())]).exp();
            prices.push(p);
        }
        prices
    }
}

/// Standardised residuals of daily log returns: each return over the EWMA volatility known the
/// day before (λ, seeded with the first 30 returns), then centred and scaled to unit variance
/// so that a simulated path has exactly the volatility asked for.
pub fn standardized_residuals(returns: &[f64], lambda: f64) -> Result<Vec<f64>> {
    let ewma = crate::features::Ewma::new(lambda)?;
    let var = ewma.variance_series(returns);
    let z: Vec<f64> = (1..returns.len()).filter_map(|t| var[t - 1].filter(|v| *v > 0.0).map(|v| returns[t] / v.sqrt())).collect();
    if z.len() < 100 {
        return Err(CoreError::InsufficientHistory { what: "standardised residuals".into(), needed: 100, available: z.len() });
    }
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let sd = (z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / z.len() as f64).sqrt();
    Ok(z.iter().map(|x| (x - mean) / sd).collect())
}

/// What a model's margin did around the step, over many paths.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Response {
    /// First day shown, relative to the step (negative: before it).
    pub first_day: i64,
    /// Median across paths of margin ÷ the path's pre-step margin (day −1), per day.
    pub median: Vec<f64>,
    /// 5% quantile across paths.
    pub p05: Vec<f64>,
    /// 95% quantile across paths.
    pub p95: Vec<f64>,
    /// The level the median settles at: its mean over the last 20 days of the step (the step
    /// itself for a margin proportional to volatility that has caught up).
    pub settled: f64,
    /// First day (from the step) the median reaches 90% of the new level, `step` × the
    /// pre-step margin; `None` if it never does while the step lasts.
    pub days_to_90: Option<usize>,
    /// Largest median during the step ÷ the new level (above 1: it overshoots).
    pub overshoot: f64,
    /// Mean exceptions per path (long and short counted apart) in the first 10 days.
    pub exceptions_10d: f64,
}

/// Type-7 quantile of an unsorted sample.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(values.len() - 1);
    values[lo] + (pos - lo as f64) * (values[hi] - values[lo])
}

/// Summarises margins around the step. `margins[path][t]` is the margin posted at the close of
/// day index `t` of `scenario`, `exceptions[path]` the path's exceptions in the first 10 days;
/// days from `show_before` days before the step to the end of the path are kept.
pub fn summarize(scenario: &StepScenario, margins: &[Vec<f64>], exceptions: &[usize], show_before: usize) -> Result<Response> {
    let step = scenario.calm_days;
    if margins.is_empty() || margins.iter().any(|m| m.len() != scenario.len()) || exceptions.len() != margins.len() {
        return Err(CoreError::InsufficientHistory { what: "a margin per day of every path".into(), needed: scenario.len(), available: 0 });
    }
    let show_before = show_before.min(step - 1);
    let ratios: Vec<Vec<f64>> = margins
        .iter()
        .map(|m| {
            let base = m[step - 1];
            m.iter().map(|x| if base > 0.0 { x / base } else { f64::NAN }).collect()
        })
        .collect();
    if ratios.iter().any(|r| r[step - show_before..].iter().any(|x| !x.is_finite())) {
        return Err(CoreError::InvalidInput { field: "margin", index: step - 1, value: 0.0, reason: "every path needs a positive margin before the step" });
    }
    let (mut median, mut p05, mut p95) = (Vec::new(), Vec::new(), Vec::new());
    for t in step - show_before..scenario.len() {
        let mut day: Vec<f64> = ratios.iter().map(|r| r[t]).collect();
        median.push(quantile(&mut day, 0.5));
        p05.push(quantile(&mut day, 0.05));
        p95.push(quantile(&mut day, 0.95));
    }
    let at = |t: usize| median[show_before + t]; // day t from the step
    let tail = 20.min(scenario.high_days);
    let settled = (scenario.high_days - tail..scenario.high_days).map(at).sum::<f64>() / tail as f64;
    let days_to_90 = (0..scenario.high_days).find(|&t| at(t) >= 0.9 * scenario.step);
    let overshoot = (0..scenario.high_days).map(at).fold(f64::NEG_INFINITY, f64::max) / scenario.step;
    Ok(Response {
        first_day: -(show_before as i64),
        median,
        p05,
        p95,
        settled,
        days_to_90,
        overshoot,
        exceptions_10d: exceptions.iter().sum::<usize>() as f64 / exceptions.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scenario(step: f64) -> StepScenario {
        StepScenario { calm_days: 300, high_days: 100, after_days: 50, sigma: 0.01, step }
    }

    #[test]
    fn paths_have_the_volatility_asked_for_and_repeat_with_the_seed() {
        let z: Vec<f64> = (0..1000).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let s = scenario(3.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let p = s.simulate(&z, &mut rng);
        assert_eq!(p.len(), 450);
        // |z| = 1: every calm return is ±1%, every stepped one ±3%.
        let r = |t: usize| (p[t] / p[t - 1]).ln().abs();
        assert!((r(299) - 0.01).abs() < 1e-12 && (r(300) - 0.03).abs() < 1e-12 && (r(399) - 0.03).abs() < 1e-12 && (r(400) - 0.01).abs() < 1e-12);
        let again = s.simulate(&z, &mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        assert_eq!(p, again);
    }

    #[test]
    fn residuals_are_centred_with_unit_variance() {
        let returns: Vec<f64> = (0..500).map(|i| 0.01 * ((i * 7919 % 13) as f64 - 6.0) / 6.0).collect();
        let z = standardized_residuals(&returns, 0.94).unwrap();
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|x| x * x).sum::<f64>() / z.len() as f64;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
        assert!(standardized_residuals(&returns[..50], 0.94).is_err());
    }

    #[test]
    fn summary_by_hand() {
        let s = StepScenario { calm_days: 5, high_days: 25, after_days: 0, sigma: 0.01, step: 2.0 };
        // Margin 1 before the step; from day 0: 1.5, 1.9, then 2.2 for two days, then 2.0.
        let m: Vec<f64> = (0..30)
            .map(|t| match t {
                0..5 => 1.0,
                5 => 1.5,
                6 => 1.9,
                7 | 8 => 2.2,
                _ => 2.0,
            })
            .collect();
        let r = summarize(&s, &[m.clone(), m], &[1, 2], 3).unwrap();
        assert_eq!(r.first_day, -3);
        assert_eq!(r.median.len(), 3 + 25);
        assert!((r.settled - 2.0).abs() < 1e-12);
        assert_eq!(r.days_to_90, Some(1), "1.9 ≥ 0.9 × the step 2.0 on day 1");
        assert!((r.overshoot - 1.1).abs() < 1e-12);
        assert!((r.exceptions_10d - 1.5).abs() < 1e-12);
        assert!(summarize(&s, &[vec![0.0; 30]], &[0], 3).is_err(), "a zero pre-step margin is an error, not a NaN");
    }

    #[test]
    fn ewma_follows_its_analytic_curve_and_a_flat_volatility_gives_a_flat_response() {
        // |z| = 1: every squared return is exactly σ², so EWMA's variance after t + 1 stepped
        // returns is λ^(t+1)·σ² + (1 − λ^(t+1))·k²σ² and its margin ratio the square root.
        let z = [1.0, -1.0];
        let params = crate::calibrate::CalibrationParams::new(0.99, 1, 365.0).unwrap();
        let arm: crate::calibrate::Arm = "ewma:0.94".parse().unwrap();
        for (k, flat) in [(3.0, false), (1.0, true)] {
            let s = scenario(k);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let margins: Vec<Vec<f64>> = (0..5)
                .map(|_| {
                    let prices = s.simulate(&z, &mut rng);
                    arm.margin_rates(&prices, &params).unwrap().iter().map(|r| r.map_or(0.0, |r| r.long)).collect()
                })
                .collect();
            let r = summarize(&s, &margins, &[0; 5], 10).unwrap();
            for t in 0..s.high_days {
                let decay = 0.94f64.powi(t as i32 + 1);
                let want = if flat { 1.0 } else { (decay + (1.0 - decay) * k * k).sqrt() };
                assert!((r.median[10 + t] - want).abs() < 1e-9, "day {t}: {} vs {want}", r.median[10 + t]);
                assert!((r.p05[10 + t] - r.p95[10 + t]).abs() < 1e-9, "identical paths have no band");
            }
            assert!(r.median[..10].iter().all(|x| (x - 1.0).abs() < 1e-9), "flat before the step");
        }
        // 0.94^(t+1) ≤ (9 − 0.81·9)/8: the 90% mark of a ×3 step is reached on day 24.
        let s = scenario(3.0);
        let prices = s.simulate(&z, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let m: Vec<f64> = arm.margin_rates(&prices, &params).unwrap().iter().map(|r| r.map_or(0.0, |r| r.long)).collect();
        assert_eq!(summarize(&s, &[m], &[0], 10).unwrap().days_to_90, Some(24));
    }
}
