//! Daily realized variance from intraday bars.
//!
//! Each bar contributes one log return: from the previous bar's close when that bar is exactly
//! one interval earlier, else (first bar, or first bar after a gap) the bar's own open-to-close
//! move, so that an outage never turns into one giant "interval" return. A UTC day's RV is the
//! sum of its squared returns scaled by `expected / observed` intervals; a day with fewer than
//! half its expected intervals has no RV (missing, never extrapolated from a few returns).

use crate::error::{CoreError, Result, check_prices};

const SECONDS_PER_DAY: i64 = 86_400;

/// One UTC day of realized variance.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DailyRv {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Realized variance of log returns for the day, scaled to a full day; `None` when fewer
    /// than half the expected intervals were observed.
    pub rv: Option<f64>,
    /// Intervals observed that day.
    pub intervals: usize,
    /// Intervals a complete day has.
    pub expected: usize,
}

/// Daily RV from intraday bars at `timestamps` (UTC seconds, strictly increasing, each the start
/// of an interval of `interval_secs`). Every calendar day from the first to the last bar gets a
/// row, days without bars included (`intervals = 0`).
pub fn daily_realized_variance(
    timestamps: &[i64],
    opens: &[f64],
    closes: &[f64],
    interval_secs: i64,
) -> Result<Vec<DailyRv>> {
    if interval_secs <= 0 || SECONDS_PER_DAY % interval_secs != 0 {
        return Err(CoreError::InvalidParameter {
            name: "interval_secs",
            value: interval_secs as f64,
            reason: "an intraday interval must divide a day (e.g. 7200 for 2-hour bars)",
        });
    }
    if timestamps.len() != opens.len() || timestamps.len() != closes.len() {
        return Err(CoreError::InsufficientHistory {
            what: "opens and closes aligned with timestamps".into(),
            needed: timestamps.len(),
            available: opens.len().min(closes.len()),
        });
    }
    check_prices("open", opens)?;
    check_prices("close", closes)?;
    if let Some(i) = timestamps.windows(2).position(|w| w[1] <= w[0]) {
        return Err(CoreError::InvalidInput {
            field: "timestamp",
            index: i + 1,
            value: timestamps[i + 1] as f64,
            reason: "timestamps must be strictly increasing",
        });
    }
    let (Some(&first), Some(&last)) = (timestamps.first(), timestamps.last()) else {
        return Ok(Vec::new());
    };
    let expected = (SECONDS_PER_DAY / interval_secs) as usize;
    let first_day = first.div_euclid(SECONDS_PER_DAY);
    let last_day = last.div_euclid(SECONDS_PER_DAY);
    let mut sums = vec![(0.0f64, 0usize); (last_day - first_day + 1) as usize];
    for i in 0..timestamps.len() {
        let r = if i > 0 && timestamps[i] - timestamps[i - 1] == interval_secs {
            (closes[i] / closes[i - 1]).ln()
        } else {
            (closes[i] / opens[i]).ln()
        };
        let slot = &mut sums[(timestamps[i].div_euclid(SECONDS_PER_DAY) - first_day) as usize];
        slot.0 += r * r;
        slot.1 += 1;
    }
    Ok(sums
        .into_iter()
        .enumerate()
        .map(|(k, (sum, n))| DailyRv {
            day: first_day + k as i64,
            rv: (2 * n >= expected).then(|| sum * expected as f64 / n as f64),
            intervals: n,
            expected,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H2: i64 = 7_200;

    #[test]
    fn full_day_is_the_sum_of_squared_returns() {
        // 12 two-hour bars of day 0 and one bar of day 1.
        let ts: Vec<i64> = (0..13).map(|i| i * H2).collect();
        let closes: Vec<f64> = (0..13).map(|i| 100.0 + i as f64).collect();
        let opens: Vec<f64> = (0..13).map(|i| 99.5 + i as f64).collect();
        let rv = daily_realized_variance(&ts, &opens, &closes, H2).unwrap();
        assert_eq!(rv.len(), 2);
        // First bar has no predecessor: its own open-to-close return.
        let mut want = (100.0f64 / 99.5).ln().powi(2);
        for i in 1..12 {
            want += (closes[i] / closes[i - 1]).ln().powi(2);
        }
        assert_eq!(rv[0].intervals, 12);
        assert!((rv[0].rv.unwrap() - want).abs() < 1e-15);
        assert_eq!(rv[1].intervals, 1);
        assert_eq!(rv[1].rv, None, "one interval of twelve is not a day");
    }

    #[test]
    fn missing_intervals_scale_up_and_gaps_use_open_to_close() {
        // Day 0 with bars 0..6 and 8..12 (bar 6 and 7 missing): 10 of 12 intervals.
        let ts: Vec<i64> = (0..12).filter(|i| *i != 6 && *i != 7).map(|i| i * H2).collect();
        let closes: Vec<f64> = ts.iter().map(|t| 100.0 + (*t / H2) as f64).collect();
        let opens: Vec<f64> = closes.iter().map(|c| c - 0.25).collect();
        let rv = daily_realized_variance(&ts, &opens, &closes, H2).unwrap();
        let mut sum = 0.0;
        for i in 0..ts.len() {
            let r: f64 = if i > 0 && ts[i] - ts[i - 1] == H2 {
                (closes[i] / closes[i - 1]).ln()
            } else {
                (closes[i] / opens[i]).ln()
            };
            sum += r * r;
        }
        assert_eq!(rv[0].intervals, 10);
        assert!((rv[0].rv.unwrap() - sum * 12.0 / 10.0).abs() < 1e-15);
    }

    #[test]
    fn empty_days_get_a_row_and_bad_inputs_are_named() {
        let ts = [0, 3 * 86_400];
        let rv = daily_realized_variance(&ts, &[1.0, 1.0], &[1.0, 1.0], H2).unwrap();
        assert_eq!(rv.iter().map(|d| d.intervals).collect::<Vec<_>>(), vec![1, 0, 0, 1]);
        assert!(daily_realized_variance(&[0, 0], &[1.0; 2], &[1.0; 2], H2).is_err());
        assert!(daily_realized_variance(&[0], &[1.0], &[1.0], 7_000).is_err());
        let err = daily_realized_variance(&[0, H2], &[1.0; 2], &[1.0, 0.0], H2).unwrap_err();
        assert!(err.to_string().contains("index 1"), "{err}");
    }
}
