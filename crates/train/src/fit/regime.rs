//! Volatility regimes: a Gaussian mixture (linfa-clustering) on each day's (log realized
//! variance, log return) finds 2 or 3 states, ranked calm → stressed by their mean log RV; then
//! one logistic regression (linfa-logistic) per horizon forecasts P(the stressed state occurs
//! within the next h days) from today's regime features (`foresight_core::features::regime_features`).
//!
//! Everything is fitted on days up to `upto` only: the mixture on their features, each logistic
//! regression on the origins whose whole outcome window ends by `upto`.

use foresight_core::features::REGIME_FEATURES;
use foresight_core::regime::stressed_within;
use foresight_core::regime::Mixture;
use linfa::prelude::*;
use linfa_clustering::GaussianMixtureModel;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::Serialize;

use crate::error::{DataError, Result};

const WIDTH: usize = REGIME_FEATURES.len();

/// Hyper-parameters of the regime model.
#[derive(Debug, Clone, PartialEq)]
pub struct RegimeParams {
    states: usize,
    horizons: Vec<usize>,
    l2: f64,
}

fn fit_error(message: impl Into<String>) -> DataError {
    DataError::Fit { model: "regime".into(), message: message.into() }
}

impl RegimeParams {
    /// `states` regimes (2 or 3) and one probability forecast per horizon (days ≥ 1).
    pub fn new(states: usize, horizons: &[usize]) -> Self {
        Self { states, horizons: horizons.to_vec(), l2: 1.0 }
    }

    /// L2 penalty of the logistic regressions (linfa's `alpha`, on standardised features;
    /// finite and ≥ 0, see [`check`](Self::check)).
    pub fn l2(mut self, l2: f64) -> Self {
        self.l2 = l2;
        self
    }

    /// Rejects a hyper-parameter outside its domain, naming it and its value: states (2 or 3),
    /// horizons (at least one, each ≥ 1, distinct) and a finite L2 penalty ≥ 0.
    pub fn check(&self) -> Result<()> {
        if !(2..=3).contains(&self.states) {
            return Err(super::invalid("regime", "states", "2 or 3", self.states));
        }
        super::check_horizons("regime", &self.horizons)?;
        // `!(x >= 0.0)` is also true of NaN, which a plain `x < 0.0` would let through.
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(super::invalid("regime", "l2", "finite and ≥ 0", self.l2));
        }
        Ok(())
    }

    /// Fits on the days `..=upto` of `features` (one row per day, `None` where missing).
    pub fn fit(&self, features: &[Option<[f64; WIDTH]>], upto: usize) -> Result<FittedRegime> {
        self.check()?;
        let upto = upto.min(features.len().saturating_sub(1));
        let days: Vec<usize> = (0..=upto).filter(|&t| features.get(t).is_some_and(Option::is_some)).collect();
        if days.len() < 250 {
            return Err(fit_error(format!("needs ≥ 250 days with features before the end of training, has {}", days.len())));
        }
        // 1. The mixture on (ln RV daily, return).
        let points = Array2::from_shape_fn((days.len(), 2), |(i, j)| {
            let f = features[days[i]].expect("filtered");
            if j == 0 { f[0] } else { f[3] }
        });
        let gmm = GaussianMixtureModel::params(self.states)
            .n_runs(5)
            .tolerance(1e-6)
            .max_n_iterations(500)
            .fit(&DatasetBase::from(points.clone()))
            .map_err(|e| fit_error(format!("Gaussian mixture: {e}")))?;
        let means = gmm.means();
        let mut rank: Vec<usize> = (0..self.states).collect();
        rank.sort_by(|&a, &b| means[[a, 0]].total_cmp(&means[[b, 0]]));
        let mut state = FittedRegime {
            states: self.states,
            horizons: self.horizons.clone(),
            gmm,
            rank,
            mean: [0.0; WIDTH],
            sd: [1.0; WIDTH],
            logistic: Vec::new(),
            base_rates: Vec::new(),
            nobs: days.len(),
        };
        // 2. Standardisation and one logistic regression per horizon.
        let rows: Vec<[f64; WIDTH]> = days.iter().map(|&t| features[t].expect("filtered")).collect();
        for k in 0..WIDTH {
            let m = rows.iter().map(|r| r[k]).sum::<f64>() / rows.len() as f64;
            let v = rows.iter().map(|r| (r[k] - m).powi(2)).sum::<f64>() / (rows.len() - 1) as f64;
            state.mean[k] = m;
            state.sd[k] = if v > 0.0 { v.sqrt() } else { 1.0 };
        }
        let labels = state.classify(&features[..=upto]);
        for &h in &self.horizons {
            let origins: Vec<usize> = (0..=upto).filter(|&t| features[t].is_some() && stressed_within(&labels, t, h, self.states).is_some()).collect();
            let y: Array1<usize> = origins.iter().map(|&t| stressed_within(&labels, t, h, self.states).expect("filtered") as usize).collect();
            let positives = y.iter().filter(|&&v| v == 1).count();
            if positives == 0 || positives == y.len() {
                return Err(fit_error(format!("h={h}: the stressed regime {} in every training window; nothing to learn", if positives == 0 { "never occurs" } else { "occurs" })));
            }
            let x = Array2::from_shape_fn((origins.len(), WIDTH), |(i, k)| state.standardise(&features[origins[i]].expect("filtered"))[k]);
            let fit = LogisticRegression::default()
                .alpha(self.l2)
                .max_iterations(500)
                .fit(&Dataset::new(x, y))
                .map_err(|e| fit_error(format!("logistic regression h={h}: {e}")))?;
            // linfa models P(its positive class), the more frequent label; when that is 0 ("no
            // stressed day"), P(event) = 1 − σ(z) = σ(−z): flip the signs.
            let sign = if fit.labels().pos.class == 1 { 1.0 } else { -1.0 };
            let mut coef = [0.0; WIDTH];
            coef.iter_mut().zip(fit.params().iter()).for_each(|(c, p)| *c = sign * p);
            state.logistic.push((sign * fit.intercept(), coef));
            state.base_rates.push(positives as f64 / origins.len() as f64);
        }
        Ok(state)
    }
}

/// A fitted regime model.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedRegime {
    states: usize,
    horizons: Vec<usize>,
    gmm: GaussianMixtureModel<f64>,
    /// Mixture components ordered calm → stressed.
    rank: Vec<usize>,
    mean: [f64; WIDTH],
    sd: [f64; WIDTH],
    /// (intercept, coefficients on standardised features) per horizon.
    logistic: Vec<(f64, [f64; WIDTH])>,
    base_rates: Vec<f64>,
    nobs: usize,
}

/// One regime, as the mixture describes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegimeSummary {
    /// 0 = calmest.
    pub rank: usize,
    /// Mixture weight.
    pub weight: f64,
    /// Mean log RV of the component.
    pub mean_ln_rv: f64,
    /// `exp(mean_ln_rv / 2)` in percent: the component's typical daily volatility.
    pub typical_daily_vol_pct: f64,
    /// Mean daily log return of the component, in percent.
    pub mean_return_pct: f64,
}

impl FittedRegime {
    /// Number of regimes.
    pub fn states(&self) -> usize {
        self.states
    }

    /// Forecast horizons.
    pub fn horizons(&self) -> &[usize] {
        &self.horizons
    }

    /// Days the mixture was fitted on.
    pub fn nobs(&self) -> usize {
        self.nobs
    }

    /// Per-feature mean and standard deviation used to standardise the inputs.
    pub fn standardisation(&self) -> ([f64; WIDTH], [f64; WIDTH]) {
        (self.mean, self.sd)
    }

    /// (intercept, coefficients) of each horizon's logistic regression on standardised features.
    pub fn logistic(&self) -> &[(f64, [f64; WIDTH])] {
        &self.logistic
    }

    /// Training frequency of the event at each horizon (the climatological forecast).
    pub fn base_rates(&self) -> &[f64] {
        &self.base_rates
    }

    fn standardise(&self, x: &[f64; WIDTH]) -> [f64; WIDTH] {
        std::array::from_fn(|k| (x[k] - self.mean[k]) / self.sd[k])
    }

    /// The mixture's parameters, ranked calm → stressed (what a card stores to label days).
    pub fn mixture(&self) -> Mixture {
        let (w, m, c) = (self.gmm.weights(), self.gmm.means(), self.gmm.covariances());
        Mixture {
            weights: w.to_vec(),
            means: (0..self.states).map(|k| [m[[k, 0]], m[[k, 1]]]).collect(),
            covariances: (0..self.states).map(|k| [[c[[k, 0, 0]], c[[k, 0, 1]]], [c[[k, 1, 0]], c[[k, 1, 1]]]]).collect(),
            rank: self.rank.clone(),
        }
    }

    /// The regime (0 = calmest) of each day with features.
    pub fn classify(&self, features: &[Option<[f64; WIDTH]>]) -> Vec<Option<usize>> {
        let days: Vec<usize> = (0..features.len()).filter(|&t| features[t].is_some()).collect();
        let mut out = vec![None; features.len()];
        if days.is_empty() {
            return out;
        }
        let points = Array2::from_shape_fn((days.len(), 2), |(i, j)| {
            let f = features[days[i]].expect("filtered");
            if j == 0 { f[0] } else { f[3] }
        });
        let components: Array1<usize> = self.gmm.predict(&points);
        for (i, &t) in days.iter().enumerate() {
            out[t] = self.rank.iter().position(|&c| c == components[i]);
        }
        out
    }

    /// P(stressed regime within h days) for each horizon, from one day's features.
    pub fn predict(&self, x: &[f64; WIDTH]) -> Vec<f64> {
        let z = self.standardise(x);
        self.logistic
            .iter()
            .map(|(b, w)| {
                let logit = b + w.iter().zip(&z).map(|(w, z)| w * z).sum::<f64>();
                1.0 / (1.0 + (-logit).exp())
            })
            .collect()
    }

    /// The regimes, calm → stressed.
    pub fn summary(&self) -> Vec<RegimeSummary> {
        self.rank
            .iter()
            .enumerate()
            .map(|(rank, &c)| {
                let mean_ln_rv = self.gmm.means()[[c, 0]];
                RegimeSummary {
                    rank,
                    weight: self.gmm.weights()[c],
                    mean_ln_rv,
                    typical_daily_vol_pct: 100.0 * (0.5 * mean_ln_rv).exp(),
                    mean_return_pct: 100.0 * self.gmm.means()[[c, 1]],
                }
            })
            .collect()
    }
}

/// Frequencies of moving from regime i (row) to regime j (column) between consecutive labelled
/// days, each row summing to 1 (0 where a regime never occurs).
pub fn transition_frequencies(labels: &[Option<usize>], states: usize) -> Vec<Vec<f64>> {
    let mut counts = vec![vec![0usize; states]; states];
    for w in labels.windows(2) {
        if let [Some(a), Some(b)] = w {
            counts[*a][*b] += 1;
        }
    }
    counts
        .iter()
        .map(|row| {
            let total: usize = row.iter().sum();
            row.iter().map(|&c| if total == 0 { 0.0 } else { c as f64 / total as f64 }).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_rows_sum_to_one() {
        let labels = [Some(0), Some(0), Some(1), Some(1), Some(0), None, Some(1)];
        let t = transition_frequencies(&labels, 2);
        assert_eq!(t, vec![vec![0.5, 0.5], vec![0.5, 0.5]]);
    }

    /// Each hyper-parameter outside its domain is refused by `check` and by `fit`, with a
    /// message naming the parameter and the value.
    #[test]
    fn bad_hyper_parameters_are_rejected_naming_the_value() {
        let cases = [
            (RegimeParams::new(1, &[1]), "states must be 2 or 3, got 1"),
            (RegimeParams::new(4, &[1]), "states must be 2 or 3, got 4"),
            (RegimeParams::new(3, &[]), "horizons must be at least one horizon, got []"),
            (RegimeParams::new(3, &[0, 5]), "horizons must be ≥ 1 day each, got [0, 5]"),
            (RegimeParams::new(2, &[5, 5]), "horizons must be distinct, got [5, 5]"),
            (RegimeParams::new(3, &[1]).l2(-1.0), "l2 must be finite and ≥ 0, got -1"),
            (RegimeParams::new(3, &[1]).l2(f64::NAN), "l2 must be finite and ≥ 0, got NaN"),
            (RegimeParams::new(3, &[1]).l2(f64::INFINITY), "l2 must be finite and ≥ 0, got inf"),
        ];
        for (params, want) in cases {
            let want = format!("fitting regime: {want}");
            assert_eq!(params.check().unwrap_err().to_string(), want);
            assert_eq!(params.fit(&[], 0).unwrap_err().to_string(), want);
        }
        // Two well-separated regimes in blocks of 40 days: good values fit.
        let features: Vec<Option<[f64; WIDTH]>> = (0..400)
            .map(|t: usize| {
                let noise = ((t * 7919) % 101) as f64 / 101.0 - 0.5;
                let ln_rv = if (t / 40) % 2 == 1 { -7.0 } else { -10.0 } + 0.3 * noise;
                Some([ln_rv, ln_rv, ln_rv, 0.01 * noise, 0.01 * noise.abs()])
            })
            .collect();
        let fit = RegimeParams::new(2, &[1, 5]).l2(0.0).fit(&features, 399).unwrap();
        assert_eq!((fit.states(), fit.horizons()), (2, &[1, 5][..]));
        // Good values (including no penalty) pass and reach the data, which here is empty.
        for params in [RegimeParams::new(2, &[1, 22]), RegimeParams::new(3, &[5]).l2(0.0)] {
            params.check().unwrap();
            let message = params.fit(&[], 0).unwrap_err().to_string();
            assert!(message.contains("needs ≥ 250 days with features"), "{message}");
        }
    }
}
