//! The three reactive base calibrators: static, EWMA parametric VaR, historical simulation.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{CoreError, Result, check_prices};
use crate::features::{Ewma, Side, horizon_losses, log_returns};

/// Margin rates (fractions of notional) for a long and a short unit position.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SideRates {
    /// Rate covering a long position.
    pub long: f64,
    /// Rate covering a short position.
    pub short: f64,
}

impl SideRates {
    /// The same rate for both sides.
    pub fn both(rate: f64) -> Self {
        Self { long: rate, short: rate }
    }

    /// The rate of `side`.
    pub fn get(&self, side: Side) -> f64 {
        match side {
            Side::Long => self.long,
            Side::Short => self.short,
        }
    }

    /// Applies `f` to each side.
    pub fn map(self, mut f: impl FnMut(Side, f64) -> f64) -> Self {
        Self { long: f(Side::Long, self.long), short: f(Side::Short, self.short) }
    }
}

/// Confidence, margin period of risk and calendar shared by every calibrator of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationParams {
    confidence: f64,
    horizon: usize,
    periods_per_year: f64,
}

impl CalibrationParams {
    /// `confidence` in (0.5, 1), `horizon` (margin period of risk, in bars) ≥ 1, and the number
    /// of bars in a year (365 for crypto, about 252 for exchange-traded equities), which turns
    /// lookbacks given in years into bars.
    pub fn new(confidence: f64, horizon: usize, periods_per_year: f64) -> Result<Self> {
        if !(confidence > 0.5 && confidence < 1.0) {
            return Err(CoreError::InvalidParameter {
                name: "confidence",
                value: confidence,
                reason: "must lie strictly between 0.5 and 1 (e.g. 0.99)",
            });
        }
        if horizon == 0 {
            return Err(CoreError::InvalidParameter {
                name: "horizon",
                value: 0.0,
                reason: "the margin period of risk is at least 1 day",
            });
        }
        if !(periods_per_year.is_finite() && periods_per_year >= 1.0) {
            return Err(CoreError::InvalidParameter {
                name: "periods_per_year",
                value: periods_per_year,
                reason: "must be a finite number of bars per year ≥ 1",
            });
        }
        Ok(Self { confidence, horizon, periods_per_year })
    }

    /// Confidence level, e.g. 0.99.
    pub fn confidence(&self) -> f64 {
        self.confidence
    }

    /// Margin period of risk in bars.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Bars per year.
    pub fn periods_per_year(&self) -> f64 {
        self.periods_per_year
    }

    /// Standard normal quantile of the confidence.
    pub fn z(&self) -> f64 {
        // Normal::new(0, 1) cannot fail.
        Normal::new(0.0, 1.0).map(|n| n.inverse_cdf(self.confidence)).unwrap_or(f64::NAN)
    }
}

/// How the base margin rate is set from past prices.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseCalibrator {
    /// A fixed rate in (0, 1].
    Static {
        /// The rate, e.g. 0.10.
        rate: f64,
    },
    /// RiskMetrics EWMA parametric VaR.
    Ewma {
        /// Decay factor, default 0.94.
        lambda: f64,
    },
    /// Historical simulation over the last `window` h-day losses.
    HistoricalSimulation {
        /// Number of (overlapping) h-day loss observations.
        window: usize,
    },
    /// A forward-looking forecaster's variance forecast turned into a rate by filtered
    /// historical simulation ([`super::fhs_rates`]); its forecasts come from `foresight-train`.
    Model {
        /// Which forecaster.
        forecaster: ModelName,
    },
    /// A model from the registry (`name` or `name@vN`), run through ONNX Runtime on the days
    /// after its training window; its forecasts become rates by filtered historical simulation.
    Registered {
        /// The model reference as written.
        model: String,
    },
}

/// Forecasters a `model:<name>` arm can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelName {
    /// GARCH(1,1), normal innovations.
    Garch,
    /// GARCH(1,1), Student-t innovations.
    GarchT,
    /// GJR-GARCH(1,1,1), normal innovations.
    Gjr,
    /// GJR-GARCH(1,1,1), Student-t innovations.
    GjrT,
    /// HAR-RV in levels.
    Har,
    /// HAR-RV in logs.
    LogHar,
    /// Log-HAR with the log implied variance (VIX, DVOL) as a fourth regressor; log-HAR on days
    /// without it.
    HarX,
    /// The neural forecaster (an MLP over ten days of regime features, trained with libtorch).
    Neural,
}

impl ModelName {
    /// Every name, in a stable order.
    pub const ALL: [ModelName; 8] = [
        ModelName::Garch,
        ModelName::GarchT,
        ModelName::Gjr,
        ModelName::GjrT,
        ModelName::Har,
        ModelName::LogHar,
        ModelName::HarX,
        ModelName::Neural,
    ];

    /// The name as written in arms: `garch`, `garch-t`, `gjr`, `gjr-t`, `har`, `log-har`,
    /// `har-x`, `neural`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Garch => "garch",
            ModelName::GarchT => "garch-t",
            ModelName::Gjr => "gjr",
            ModelName::GjrT => "gjr-t",
            ModelName::Har => "har",
            ModelName::LogHar => "log-har",
            ModelName::HarX => "har-x",
            ModelName::Neural => "neural",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// For the GARCH family: (GJR leverage term, innovation distribution); `None` for HAR.
    pub fn garch_spec(self) -> Option<(bool, crate::volatility::Innovation)> {
        use crate::volatility::Innovation::{Normal, StudentT};
        match self {
            ModelName::Garch => Some((false, Normal)),
            ModelName::GarchT => Some((false, StudentT)),
            ModelName::Gjr => Some((true, Normal)),
            ModelName::GjrT => Some((true, StudentT)),
            ModelName::Har | ModelName::LogHar | ModelName::HarX | ModelName::Neural => None,
        }
    }
}

impl BaseCalibrator {
    /// Checks the calibrator's own parameter.
    pub fn validate(&self) -> Result<()> {
        match *self {
            BaseCalibrator::Static { rate } if !(rate > 0.0 && rate <= 1.0) => Err(CoreError::InvalidParameter {
                name: "static rate",
                value: rate,
                reason: "a static margin rate is a fraction of notional in (0, 1]",
            }),
            BaseCalibrator::Ewma { lambda } => Ewma::new(lambda).map(|_| ()),
            BaseCalibrator::HistoricalSimulation { window } if window < 20 => Err(CoreError::InvalidParameter {
                name: "hs window",
                value: window as f64,
                reason: "historical simulation needs at least 20 loss observations for a tail quantile",
            }),
            _ => Ok(()),
        }
    }

    /// Element `t` is the rate set at the close of bar `t` from `prices[..=t]` only; `None`
    /// until the calibrator has enough history.
    pub fn rates(&self, prices: &[f64], params: &CalibrationParams) -> Result<Vec<Option<SideRates>>> {
        self.validate()?;
        check_prices("price", prices)?;
        let sqrt_h = (params.horizon() as f64).sqrt();
        Ok(match *self {
            BaseCalibrator::Static { rate } => vec![Some(SideRates::both(rate)); prices.len()],
            BaseCalibrator::Ewma { lambda } => {
                let returns = log_returns(prices)?;
                let z = params.z();
                // Return i moves bar i into bar i+1: shift so that element t uses bars ..= t.
                std::iter::once(None)
                    .chain(Ewma::new(lambda)?.variance_series(&returns))
                    .map(|v| v.map(|v| SideRates::both(z * v.sqrt() * sqrt_h)))
                    .collect()
            }
            BaseCalibrator::Model { .. } | BaseCalibrator::Registered { .. } => {
                return Err(CoreError::InvalidArm {
                    spec: format!("{self:?}"),
                    reason: "a model arm's rates come from its forecasts (foresight-train), not from prices alone".into(),
                });
            }
            BaseCalibrator::HistoricalSimulation { window } => {
                let long = rolling_hs(prices, params, Side::Long, window, window)?;
                let short = rolling_hs(prices, params, Side::Short, window, window)?;
                long.into_iter()
                    .zip(short)
                    .map(|(l, s)| Some(SideRates { long: l?, short: s? }))
                    .collect()
            }
        })
    }
}

/// Rolling HS rate of one side: the `confidence`-quantile of the last `window` h-day losses
/// (fewer, down to `min_window`, while history is short), floored at zero.
pub(crate) fn rolling_hs(
    prices: &[f64],
    params: &CalibrationParams,
    side: Side,
    window: usize,
    min_window: usize,
) -> Result<Vec<Option<f64>>> {
    let h = params.horizon();
    let losses = horizon_losses(prices, h, side)?;
    let mut scratch = Vec::with_capacity(window);
    Ok((0..prices.len())
        .map(|t| {
            // Losses exist from index h on; the window holds the last `window` of them.
            let available = (t + 1).saturating_sub(h);
            if available < min_window.max(1) {
                return None;
            }
            let len = available.min(window);
            scratch.clear();
            scratch.extend(losses[t + 1 - len..=t].iter().flatten());
            Some(empirical_quantile(&mut scratch, params.confidence()).max(0.0))
        })
        .collect())
}

/// The `q`-quantile of `values` by linear interpolation between order statistics (Hyndman and
/// Fan's type 7, NumPy's default). Reorders `values`; O(n). Returns NaN for an empty slice.
pub fn empirical_quantile(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, &mut x_lo, upper) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let frac = pos - lo as f64;
    if frac == 0.0 || upper.is_empty() {
        return x_lo;
    }
    let x_hi = upper.iter().copied().fold(f64::INFINITY, f64::min);
    x_lo + frac * (x_hi - x_lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(h: usize) -> CalibrationParams {
        CalibrationParams::new(0.99, h, 365.0).unwrap()
    }

    #[test]
    fn quantile_type7_by_hand() {
        let mut v: Vec<f64> = (1..=10).map(f64::from).rev().collect();
        // pos = 0.99 · 9 = 8.91 -> 9 + 0.91 · (10 - 9)
        assert!((empirical_quantile(&mut v, 0.99) - 9.91).abs() < 1e-12);
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(empirical_quantile(&mut v, 0.5), 2.0);
        assert!(empirical_quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn ewma_rate_is_z_sigma_sqrt_h() {
        let prices: Vec<f64> = (0..60).map(|i| 100.0 * (1.0 + 0.01 * ((i % 3) as f64 - 1.0))).collect();
        let p = params(4);
        let rates = BaseCalibrator::Ewma { lambda: 0.94 }.rates(&prices, &p).unwrap();
        let returns = log_returns(&prices).unwrap();
        let var = Ewma::new(0.94).unwrap().variance_series(&returns);
        // Rate at bar 40 uses returns up to index 39 (the move into bar 40).
        let want = 2.326_347_874 * var[39].unwrap().sqrt() * 2.0;
        let got = rates[40].unwrap();
        assert!((got.long - want).abs() < 1e-9 && got.long == got.short);
        assert!(rates[29].is_none() && rates[30].is_some());
    }

    #[test]
    fn hs_rate_uses_only_past_losses_of_the_side() {
        // Prices rise 1% a day except one -20% day at bar 30: the long HS rate sees the crash
        // from bar 30 on, never before; the short side's losses are the +1% days.
        let mut prices = vec![100.0];
        for i in 1..45 {
            let f = if i == 30 { 0.8 } else { 1.01 };
            prices.push(prices[i - 1] * f);
        }
        let p = params(1);
        let rates = BaseCalibrator::HistoricalSimulation { window: 20 }.rates(&prices, &p).unwrap();
        assert!(rates[19].is_none(), "20 one-day losses exist only from bar 20");
        // Before the crash the long side only ever gained: the rate is floored at zero.
        assert_eq!(rates[29].unwrap().long, 0.0);
        assert!((rates[29].unwrap().short - 0.01).abs() < 1e-12);
        let r = rates[30].unwrap();
        let mut long: Vec<f64> = (11..=30).map(|t| 1.0 - prices[t] / prices[t - 1]).collect();
        // Type 7 over 20 values at 0.99: pos 18.81, between a -1% loss and the 20% crash.
        let want = -0.01 + 0.81 * (0.2 + 0.01);
        assert!((r.long - empirical_quantile(&mut long, 0.99)).abs() < 1e-15);
        assert!((r.long - want).abs() < 1e-12, "{} vs {want}", r.long);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(CalibrationParams::new(1.0, 1, 365.0).is_err());
        assert!(CalibrationParams::new(0.99, 0, 365.0).is_err());
        assert!(CalibrationParams::new(0.99, 1, f64::NAN).is_err());
        assert!(BaseCalibrator::Static { rate: 0.0 }.validate().is_err());
        assert!(BaseCalibrator::Static { rate: 1.5 }.validate().is_err());
        assert!(BaseCalibrator::Ewma { lambda: 1.0 }.validate().is_err());
        assert!(BaseCalibrator::HistoricalSimulation { window: 5 }.validate().is_err());
        let p = params(1);
        assert!(BaseCalibrator::Static { rate: 0.1 }.rates(&[1.0, -1.0], &p).is_err());
    }
}
