//! Anti-procyclicality (APC) tools, after EMIR Art. 28 (Commission Delegated Regulation (EU)
//! No 153/2013): a floor, a buffer released in stress, and a cap on daily rises.

use super::reactive::{BaseCalibrator, CalibrationParams, SideRates, rolling_hs};
use crate::error::{CoreError, Result};
use crate::features::{DEFAULT_EWMA_INIT, Side, log_returns};

/// A minimum margin rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Floor {
    /// A fixed minimum rate.
    Rate(f64),
    /// EMIR 28(1)(c): the rate the base method gives on an equally weighted lookback of `years`
    /// years (all of the history while shorter), so that calm periods cannot push margin below
    /// what the stressed years in the lookback justify.
    StressLookback {
        /// Lookback length in years.
        years: u32,
    },
}

/// The APC options of an arm. Applied as base → buffer → release → cap → floor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Apc {
    /// Hard minimum.
    pub floor: Option<Floor>,
    /// Buffer as a fraction of the base rate (EMIR 28(1)(a) asks for at least 0.25).
    pub buffer: Option<f64>,
    /// Half-life in bars of the posted rate's fall: it sinks to the base no faster than
    /// halving every this many bars, while rises pass in full. Margin released slowly after a
    /// stress is still there when the next shock comes, so the next call is smaller.
    pub release: Option<f64>,
    /// Largest relative rise per bar (0.25 = +25% a day).
    pub cap: Option<f64>,
}

impl Apc {
    /// Checks each option's value.
    pub fn validate(&self, base: &BaseCalibrator) -> Result<()> {
        match self.floor {
            Some(Floor::Rate(r)) if !(r > 0.0 && r <= 1.0) => {
                return Err(CoreError::InvalidParameter {
                    name: "floor",
                    value: r,
                    reason: "a floor rate is a fraction of notional in (0, 1]",
                });
            }
            Some(Floor::StressLookback { years: 0 }) => {
                return Err(CoreError::InvalidParameter {
                    name: "floor lookback years",
                    value: 0.0,
                    reason: "the lookback is at least one year",
                });
            }
            Some(Floor::StressLookback { .. })
                if matches!(base, BaseCalibrator::Static { .. } | BaseCalibrator::Model { .. }) =>
            {
                return Err(CoreError::InvalidParameter {
                    name: "floor:stressNy",
                    value: f64::NAN,
                    reason: "a lookback floor needs a reactive volatility arm (ewma or hs)",
                });
            }
            _ => {}
        }
        if let Some(b) = self.buffer
            && !(b > 0.0 && b <= 1.0)
        {
            return Err(CoreError::InvalidParameter {
                name: "buffer",
                value: b,
                reason: "the buffer is a fraction of margin in (0, 1] (EMIR asks for ≥ 0.25)",
            });
        }
        if let Some(days) = self.release
            && !(days >= 1.0 && days.is_finite())
        {
            return Err(CoreError::InvalidParameter {
                name: "release",
                value: days,
                reason: "the release half-life is a number of days ≥ 1",
            });
        }
        if let Some(c) = self.cap
            && !(c > 0.0 && c.is_finite())
        {
            return Err(CoreError::InvalidParameter {
                name: "cap",
                value: c,
                reason: "the cap is a relative daily rise > 0 (0.25 = +25% a day)",
            });
        }
        Ok(())
    }

    /// The floor in force at each bar (`None` where there is none).
    pub fn floor_series(
        &self,
        base: &BaseCalibrator,
        prices: &[f64],
        params: &CalibrationParams,
    ) -> Result<Vec<Option<SideRates>>> {
        Ok(match self.floor {
            None => vec![None; prices.len()],
            Some(Floor::Rate(r)) => vec![Some(SideRates::both(r)); prices.len()],
            Some(Floor::StressLookback { years }) => {
                let lookback = (years as f64 * params.periods_per_year()).round() as usize;
                match *base {
                    BaseCalibrator::Ewma { .. } => lookback_parametric(prices, params, lookback)?,
                    BaseCalibrator::HistoricalSimulation { window } => {
                        let long = rolling_hs(prices, params, Side::Long, lookback, window)?;
                        let short = rolling_hs(prices, params, Side::Short, lookback, window)?;
                        long.into_iter()
                            .zip(short)
                            .map(|(l, s)| Some(SideRates { long: l?, short: s? }))
                            .collect()
                    }
                    // Refused by validate.
                    BaseCalibrator::Static { .. } | BaseCalibrator::Model { .. } | BaseCalibrator::Registered { .. } => {
                        vec![None; prices.len()]
                    }
                }
            }
        })
    }

    /// Applies buffer, release, cap and floor, bar by bar, to the base rates. The buffer, the
    /// release and the cap look at the rate posted the bar before.
    pub fn apply(&self, base: &[Option<SideRates>], floor: &[Option<SideRates>]) -> Vec<Option<SideRates>> {
        let decay = self.release.map(|days| 0.5f64.powf(1.0 / days));
        let mut posted: Option<SideRates> = None;
        base.iter()
            .zip(floor)
            .map(|(b, f)| {
                let b = (*b)?;
                let next = b.map(|side, rate| {
                    let prev = posted.map(|p| p.get(side));
                    let mut m = rate;
                    if let Some(buffer) = self.buffer {
                        // Hold the posted level while it lies between the base and the full
                        // buffer: a rising base eats the buffer first, a falling one rebuilds it.
                        let full = rate * (1.0 + buffer);
                        m = prev.map_or(full, |p| p.clamp(rate, full));
                    }
                    if let (Some(decay), Some(p)) = (decay, prev) {
                        m = m.max(p * decay);
                    }
                    if let (Some(cap), Some(p)) = (self.cap, prev) {
                        m = m.min(p * (1.0 + cap));
                    }
                    if let Some(f) = f {
                        m = m.max(f.get(side));
                    }
                    m
                });
                posted = Some(next);
                Some(next)
            })
            .collect()
    }
}

/// Parametric rate `z σ √h` with σ² the mean squared daily log return over the last `lookback`
/// returns (all of them while fewer, from [`DEFAULT_EWMA_INIT`] returns on).
fn lookback_parametric(prices: &[f64], params: &CalibrationParams, lookback: usize) -> Result<Vec<Option<SideRates>>> {
    let returns = log_returns(prices)?;
    let mut prefix = Vec::with_capacity(returns.len() + 1);
    prefix.push(0.0);
    for r in &returns {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + r * r);
    }
    let scale = params.z() * (params.horizon() as f64).sqrt();
    Ok((0..prices.len())
        .map(|t| {
            // Returns known at bar t: indices 0..t (t of them).
            if t < DEFAULT_EWMA_INIT {
                return None;
            }
            let len = t.min(lookback.max(1));
            let var = (prefix[t] - prefix[t - len]) / len as f64;
            Some(SideRates::both(scale * var.sqrt()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(v: &[f64]) -> Vec<Option<SideRates>> {
        v.iter().map(|r| Some(SideRates::both(*r))).collect()
    }

    fn longs(v: &[Option<SideRates>]) -> Vec<f64> {
        v.iter().map(|r| r.unwrap().long).collect()
    }

    #[test]
    fn cap_limits_daily_rise_only() {
        let apc = Apc { cap: Some(0.25), ..Apc::default() };
        let base = series(&[0.10, 0.20, 0.20, 0.05]);
        let none = vec![None; 4];
        let got = longs(&apc.apply(&base, &none));
        let want = [0.10, 0.125, 0.15625, 0.05];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn buffer_is_released_in_stress_and_rebuilt_as_margins_fall() {
        let apc = Apc { buffer: Some(0.25), ..Apc::default() };
        let base = series(&[0.10, 0.11, 0.15, 0.12, 0.08]);
        let got = longs(&apc.apply(&base, &[None; 5]));
        // 0.125 full buffer; base 0.11: hold 0.125; base 0.15 eats it: 0.15; base 0.12: hold
        // 0.15 (= 0.12·1.25, buffer rebuilt); base 0.08: at most 0.10.
        let want = [0.125, 0.125, 0.15, 0.15, 0.10];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn release_halves_a_fall_per_half_life_and_passes_rises() {
        let apc = Apc { release: Some(2.0), ..Apc::default() };
        let got = longs(&apc.apply(&series(&[0.10, 0.40, 0.10, 0.10, 0.10, 0.30]), &[None; 6]));
        let d = 0.5f64.sqrt();
        // 0.40 sinks by √½ a day toward the base 0.10; the rise to 0.30 passes in full.
        let want = [0.10, 0.40, 0.40 * d, 0.20, 0.20 * d, 0.30];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
        assert!(Apc { release: Some(0.5), ..Apc::default() }.validate(&BaseCalibrator::Ewma { lambda: 0.94 }).is_err());
    }

    #[test]
    fn floor_wins_over_cap() {
        let apc = Apc { cap: Some(0.1), floor: Some(Floor::Rate(0.3)), ..Apc::default() };
        let got = longs(&apc.apply(&series(&[0.1, 0.5]), &series(&[0.3, 0.3])));
        assert!((got[0] - 0.3).abs() < 1e-15 && (got[1] - 0.33).abs() < 1e-15, "{got:?}");
    }

    #[test]
    fn lookback_floor_is_equally_weighted() {
        let prices: Vec<f64> = (0..50).map(|i| if i % 2 == 0 { 100.0 } else { 101.0 }).collect();
        let p = CalibrationParams::new(0.99, 1, 10.0).unwrap(); // 1 year = 10 bars
        let apc = Apc { floor: Some(Floor::StressLookback { years: 1 }), ..Apc::default() };
        let f = apc.floor_series(&BaseCalibrator::Ewma { lambda: 0.94 }, &prices, &p).unwrap();
        assert!(f[29].is_none());
        let r = (101.0f64 / 100.0).ln();
        let want = p.z() * r.abs(); // every squared return is r²
        assert!((f[40].unwrap().long - want).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_options() {
        let ewma = BaseCalibrator::Ewma { lambda: 0.94 };
        assert!(Apc { cap: Some(0.0), ..Apc::default() }.validate(&ewma).is_err());
        assert!(Apc { buffer: Some(1.5), ..Apc::default() }.validate(&ewma).is_err());
        assert!(Apc { floor: Some(Floor::Rate(-0.1)), ..Apc::default() }.validate(&ewma).is_err());
        assert!(Apc { floor: Some(Floor::StressLookback { years: 0 }), ..Apc::default() }.validate(&ewma).is_err());
        let stat = BaseCalibrator::Static { rate: 0.1 };
        assert!(Apc { floor: Some(Floor::StressLookback { years: 10 }), ..Apc::default() }.validate(&stat).is_err());
    }
}
