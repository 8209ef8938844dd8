//! Log returns and h-day position losses.

use crate::error::{Result, check_prices};

/// Log returns `ln(P[t] / P[t-1])`: one fewer than the prices.
///
/// ```
/// let r = foresight_core::features::log_returns(&[100.0, 110.0, 99.0]).unwrap();
/// assert!((r[0] - (1.1f64).ln()).abs() < 1e-15);
/// assert!((r[1] - (0.9f64).ln()).abs() < 1e-15);
/// ```
pub fn log_returns(prices: &[f64]) -> Result<Vec<f64>> {
    check_prices("price", prices)?;
    Ok(prices.windows(2).map(|w| (w[1] / w[0]).ln()).collect())
}

/// The log return into each day, aligned with the prices (`None` on the first): the daily
/// returns of a history as training, backtests and the service all align them. Prices are
/// checked by their callers (this never fails; a non-positive price gives a NaN or infinite
/// return).
///
/// ```
/// let r = foresight_core::features::aligned_log_returns(&[100.0, 110.0]);
/// assert_eq!(r[0], None);
/// assert!((r[1].unwrap() - (1.1f64).ln()).abs() < 1e-15);
/// ```
pub fn aligned_log_returns(prices: &[f64]) -> Vec<Option<f64>> {
    std::iter::once(None).chain(prices.windows(2).map(|w| Some((w[1] / w[0]).ln()))).take(prices.len()).collect()
}

/// Log returns in percent (`100 · ln(P[t]/P[t-1])`), the scale GARCH models are fitted on.
pub fn percent_log_returns(prices: &[f64]) -> Result<Vec<f64>> {
    Ok(log_returns(prices)?.into_iter().map(|r| 100.0 * r).collect())
}

/// Which side of a unit notional position bears a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Long one unit of notional: loses when the price falls.
    Long,
    /// Short one unit of notional: loses when the price rises.
    Short,
}

impl Side {
    /// Both sides, long first.
    pub const BOTH: [Side; 2] = [Side::Long, Side::Short];

    /// Loss of a unit notional position of this side when the price moves from `from` to `to`,
    /// as a simple return: long `1 - to/from`, short `to/from - 1` (negative = gain).
    pub fn loss(self, from: f64, to: f64) -> f64 {
        match self {
            Side::Long => 1.0 - to / from,
            Side::Short => to / from - 1.0,
        }
    }

    /// `"long"` or `"short"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Long => "long",
            Side::Short => "short",
        }
    }
}

/// Losses over `h` bars of a unit position of `side`: element `t` is the loss from `P[t-h]` to
/// `P[t]`, `None` for `t < h` (the loss is known at the close of `t`).
pub fn horizon_losses(prices: &[f64], h: usize, side: Side) -> Result<Vec<Option<f64>>> {
    check_prices("price", prices)?;
    Ok((0..prices.len())
        .map(|t| (t >= h && h > 0).then(|| side.loss(prices[t - h], prices[t])))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_positive_prices_with_index() {
        let err = log_returns(&[1.0, 0.0, 2.0]).unwrap_err().to_string();
        assert!(err.contains("index 1"), "{err}");
        assert!(err.contains("logarithmic"), "{err}");
        assert!(log_returns(&[1.0, f64::NAN]).is_err());
        let pct = percent_log_returns(&[100.0, 110.0]).unwrap();
        assert!((pct[0] - 100.0 * 1.1f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn losses_by_side_by_hand() {
        // 100 -> 90: long loses 10%, short gains 10%.
        assert!((Side::Long.loss(100.0, 90.0) - 0.10).abs() < 1e-15);
        assert!((Side::Short.loss(100.0, 90.0) + 0.10).abs() < 1e-15);
        let l = horizon_losses(&[100.0, 90.0, 99.0, 120.0], 2, Side::Short).unwrap();
        assert_eq!(l[0], None);
        assert_eq!(l[1], None);
        assert!((l[2].unwrap() - (-0.01)).abs() < 1e-15);
        assert!((l[3].unwrap() - (120.0 / 90.0 - 1.0)).abs() < 1e-15);
    }
}
