//! HAR-RV components (Corsi, 2009): daily, weekly and monthly averages of realized variance.

/// Days in the daily component.
pub const HAR_DAILY: usize = 1;
/// Days in the weekly component.
pub const HAR_WEEKLY: usize = 5;
/// Days in the monthly component.
pub const HAR_MONTHLY: usize = 22;

/// The three HAR regressors at one date.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HarComponents {
    /// RV of the day.
    pub daily: f64,
    /// Mean RV over the last 5 days.
    pub weekly: f64,
    /// Mean RV over the last 22 days.
    pub monthly: f64,
}

/// HAR components for each day of a daily RV series (missing days as `None`).
///
/// The daily component needs that day's RV. A weekly or monthly mean is taken over the days of
/// its window that have an RV and needs at least half of them: a missing day is left out of the
/// average, never filled in.
pub fn har_components(rv: &[Option<f64>]) -> Vec<Option<HarComponents>> {
    let mean_of_window = |t: usize, len: usize| -> Option<f64> {
        if t + 1 < len {
            return None;
        }
        let present: Vec<f64> = rv[t + 1 - len..=t].iter().flatten().copied().collect();
        (2 * present.len() >= len).then(|| present.iter().sum::<f64>() / present.len() as f64)
    };
    (0..rv.len())
        .map(|t| {
            Some(HarComponents {
                daily: rv[t]?,
                weekly: mean_of_window(t, HAR_WEEKLY)?,
                monthly: mean_of_window(t, HAR_MONTHLY)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_by_hand() {
        let rv: Vec<Option<f64>> = (1..=22).map(|i| Some(i as f64)).collect();
        let h = har_components(&rv);
        assert!(h[20].is_none());
        let last = h[21].unwrap();
        assert_eq!(last.daily, 22.0);
        assert_eq!(last.weekly, (18.0 + 19.0 + 20.0 + 21.0 + 22.0) / 5.0);
        assert_eq!(last.monthly, 11.5); // mean of 1..=22
    }

    #[test]
    fn missing_days_are_left_out_not_filled() {
        let mut rv: Vec<Option<f64>> = (1..=22).map(|i| Some(i as f64)).collect();
        rv[20] = None;
        rv[19] = None;
        let last = har_components(&rv)[21].unwrap();
        assert_eq!(last.weekly, (18.0 + 19.0 + 22.0) / 3.0);
        rv[18] = None; // now only 2 of 5 weekly days remain
        assert!(har_components(&rv)[21].is_none());
        rv[21] = None; // no RV today: no daily component
        assert!(har_components(&rv)[21].is_none());
    }
}
