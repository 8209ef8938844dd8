//! Inputs of the regime model: where volatility stands now and how it has moved, from the same
//! realized variance and returns the HAR model uses.

use super::har::har_components;

/// Names of [`regime_features`]' columns, in order.
pub const REGIME_FEATURES: [&str; 5] = ["ln_rv_daily", "ln_rv_weekly", "ln_rv_monthly", "return", "abs_return"];

/// The regime model's feature vector of each day: the logs of the HAR components (daily,
/// weekly, monthly RV), the day's log return and its absolute value. `None` where a component
/// or the return is missing or an RV is not positive.
pub fn regime_features(rv: &[Option<f64>], returns: &[Option<f64>]) -> Vec<Option<[f64; 5]>> {
    har_components(rv)
        .into_iter()
        .zip(returns)
        .map(|(c, r)| {
            let (c, r) = (c?, (*r)?);
            if !(c.daily > 0.0 && c.weekly > 0.0 && c.monthly > 0.0 && r.is_finite()) {
                return None;
            }
            Some([c.daily.ln(), c.weekly.ln(), c.monthly.ln(), r, r.abs()])
        })
        .collect()
}

/// The flattened input of origin `t` for a model over the last `window` days of regime
/// features: days `t−window+1..=t`, oldest first; `None` when a day is missing or the history
/// is shorter than the window.
pub fn feature_window(features: &[Option<[f64; 5]>], t: usize, window: usize) -> Option<Vec<f64>> {
    if window == 0 || t + 1 < window || t >= features.len() {
        return None;
    }
    features[t + 1 - window..=t].iter().try_fold(Vec::with_capacity(window * REGIME_FEATURES.len()), |mut row, f| {
        row.extend_from_slice(&(*f)?);
        Some(row)
    })
}

/// An annualised implied volatility in percent (DVOL, VIX) as the log of the implied daily
/// variance, `ln((iv/100)² / periods_per_year)`: on the scale of log realized variance.
/// `None` unless `iv > 0`.
pub fn implied_log_variance(iv_percent: f64, periods_per_year: f64) -> Option<f64> {
    (iv_percent > 0.0 && periods_per_year > 0.0).then(|| ((iv_percent / 100.0).powi(2) / periods_per_year).ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_har_components_and_the_return() {
        let rv: Vec<Option<f64>> = (1..=30).map(|i| Some(i as f64 * 1e-4)).collect();
        let mut returns: Vec<Option<f64>> = (0..30).map(|i| Some(if i % 2 == 0 { 0.01 } else { -0.02 })).collect();
        returns[25] = None;
        let f = regime_features(&rv, &returns);
        assert!(f[20].is_none(), "the monthly mean needs 22 days");
        let row = f[21].unwrap();
        assert!((row[0] - (22e-4f64).ln()).abs() < 1e-12);
        assert!((row[1] - (20e-4f64).ln()).abs() < 1e-12, "mean of days 18..22 = 20e-4");
        assert!((row[2] - (11.5e-4f64).ln()).abs() < 1e-12, "mean of days 1..22 = 11.5e-4");
        assert_eq!((row[3], row[4]), (-0.02, 0.02));
        assert!(f[25].is_none(), "missing return");
    }

    #[test]
    fn windows_are_oldest_first_and_need_every_day() {
        let f: Vec<Option<[f64; 5]>> = (0..4).map(|i| Some([i as f64; 5])).chain([None]).collect();
        assert_eq!(feature_window(&f, 2, 2).unwrap(), [[1.0; 5], [2.0; 5]].concat());
        assert_eq!(feature_window(&f, 0, 2), None, "too early");
        assert_eq!(feature_window(&f, 4, 2), None, "a missing day");
        assert!((implied_log_variance(56.76, 365.0).unwrap() - (0.5676f64.powi(2) / 365.0).ln()).abs() < 1e-15);
        assert_eq!(implied_log_variance(0.0, 365.0), None);
    }
}
