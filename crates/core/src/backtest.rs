//! The walk-forward margin backtest: the yardstick every arm is judged by.
//!
//! The margin rate posted at the close of bar `t` (a fraction of notional, computed from prices
//! up to `t` only) covers the loss from `t` to `t + h` of a long and of a short unit position,
//! the loss being a simple return (long `1 − P[t+h]/P[t]`, short `P[t+h]/P[t] − 1`). An
//! exception is a loss strictly above the margin.
//!
//! All arms of a run are scored on the same bars: from the burn-in (or the first bar at which
//! every arm has a rate, if later) to the last bar whose `h`-day loss is known.
//!
//! Overlap: with `h > 1` consecutive windows share `h − 1` days, so exceptions cluster by
//! construction. Counts, rates, margins and shortfall use every bar; the coverage tests
//! (Kupiec, Christoffersen) and the traffic light use the non-overlapping subsample
//! `start, start + h, start + 2h, …`, on which their independence assumption holds.

use crate::calibrate::{Arm, CalibrationParams, SideRates};
use crate::error::{CoreError, Result, check_prices};
use crate::features::Side;
use crate::stats::{self, LrTest, Rise, Zone};

/// Observations in a Basel traffic-light window.
pub const TRAFFIC_LIGHT_WINDOW: usize = 250;

/// Settings of one backtest run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BacktestConfig {
    /// Confidence, horizon and calendar of the calibrators.
    pub params: CalibrationParams,
    /// Bars skipped at the start before scoring (history the calibrators learn from).
    pub burn_in: usize,
}

/// One scored bar of one arm.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BacktestRow {
    /// Index of bar `t` in the price series.
    pub index: usize,
    /// Rates posted at the close of `t`.
    pub margin: SideRates,
    /// Losses from `t` to `t + h`.
    pub loss: SideRates,
}

impl BacktestRow {
    /// True when the side's loss exceeds its margin.
    pub fn exception(&self, side: Side) -> bool {
        self.loss.get(side) > self.margin.get(side)
    }
}

/// Basel traffic-light zones of a side.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrafficLight {
    /// Zone of the last 250 test observations.
    pub last_250: Zone,
    /// Exceptions among them.
    pub last_250_exceptions: usize,
    /// Zone of the worst rolling window of 250 test observations.
    pub worst_250: Zone,
    /// Exceptions in that window.
    pub worst_250_exceptions: usize,
    /// Bar index at which the worst window ends.
    pub worst_250_end: usize,
    /// Observations per window (fewer than 250 only when the whole test sample is shorter).
    pub window: usize,
}

/// Every statistic of one side of one arm.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SideSummary {
    /// Scored bars.
    pub observations: usize,
    /// Bars whose loss exceeded the margin.
    pub exceptions: usize,
    /// `exceptions / observations`.
    pub exception_rate: f64,
    /// Non-overlapping observations the tests use (= observations when h = 1).
    pub test_observations: usize,
    /// Exceptions among them.
    pub test_exceptions: usize,
    /// Kupiec proportion-of-failures test.
    pub kupiec: LrTest,
    /// Christoffersen independence test.
    pub christoffersen_ind: LrTest,
    /// Christoffersen conditional-coverage test.
    pub christoffersen_cc: LrTest,
    /// Basel zones.
    pub traffic_light: TrafficLight,
    /// Mean margin rate.
    pub avg_margin: f64,
    /// `max / min` margin rate over the scored bars (`None` when the minimum is zero).
    pub peak_to_trough: Option<f64>,
    /// Largest 1-bar margin rise.
    pub max_rise_1d: Option<Rise>,
    /// Largest 5-bar margin rise.
    pub max_rise_5d: Option<Rise>,
    /// Largest 30-bar margin rise.
    pub max_rise_30d: Option<Rise>,
    /// Mean of `loss − margin` on exception bars (`None` without exceptions).
    pub mean_shortfall: Option<f64>,
}

/// The backtest of one arm.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmBacktest {
    /// The arm.
    pub arm: Arm,
    /// Scored bars, in order.
    pub rows: Vec<BacktestRow>,
    /// Long side statistics.
    pub long: SideSummary,
    /// Short side statistics.
    pub short: SideSummary,
}

impl ArmBacktest {
    /// Readiness of this arm's `side` margin for an event at price index `event` (see
    /// [`stats::readiness`]); `None` unless the event and the day before are scored days.
    pub fn readiness(&self, side: Side, event: usize) -> Option<f64> {
        let first = self.rows.first()?.index;
        let position = event.checked_sub(first)?;
        let margins: Vec<f64> = self.rows.iter().map(|r| r.margin.get(side)).collect();
        stats::readiness(&margins, position, stats::READINESS_WINDOW)
    }

    /// The statistics of `side`.
    pub fn side(&self, side: Side) -> &SideSummary {
        match side {
            Side::Long => &self.long,
            Side::Short => &self.short,
        }
    }
}

/// A backtest of several arms on one price series.
#[derive(Debug, Clone, PartialEq)]
pub struct Backtest {
    /// Settings.
    pub config: BacktestConfig,
    /// First scored bar.
    pub start: usize,
    /// Last scored bar (its loss ends at `end + h`).
    pub end: usize,
    /// One entry per arm, in the order given.
    pub arms: Vec<ArmBacktest>,
}

/// Runs every arm over `prices` (one per bar, e.g. daily closes).
pub fn run_backtest(prices: &[f64], arms: &[Arm], config: BacktestConfig) -> Result<Backtest> {
    check_prices("close", prices)?;
    let with_rates = arms
        .iter()
        .map(|arm| Ok((arm.clone(), arm.margin_rates(prices, &config.params)?)))
        .collect::<Result<Vec<_>>>()?;
    run_backtest_rates(prices, with_rates, config)
}

/// Scores arms whose rates were computed elsewhere (model arms: forecasts from
/// `foresight-train` turned into rates), each series aligned with `prices`.
pub fn run_backtest_rates(prices: &[f64], arms: Vec<(Arm, Vec<Option<SideRates>>)>, config: BacktestConfig) -> Result<Backtest> {
    check_prices("close", prices)?;
    if arms.is_empty() {
        return Err(CoreError::InsufficientHistory { what: "a backtest (arms)".into(), needed: 1, available: 0 });
    }
    if let Some((arm, r)) = arms.iter().find(|(_, r)| r.len() != prices.len()) {
        return Err(CoreError::InsufficientHistory { what: format!("rates of arm {arm} aligned with prices"), needed: prices.len(), available: r.len() });
    }
    let h = config.params.horizon();
    let (arms, rates): (Vec<Arm>, Vec<Vec<Option<SideRates>>>) = arms.into_iter().unzip();
    let mut start = config.burn_in;
    for (arm, r) in arms.iter().zip(&rates) {
        let first = r.iter().position(Option::is_some).ok_or_else(|| CoreError::InsufficientHistory {
            what: format!("arm {arm} (it has no rate on any bar yet)"),
            needed: prices.len() + 1,
            available: prices.len(),
        })?;
        start = start.max(first);
    }
    // The last bar whose h-day loss is known; at least two scored bars.
    if prices.len() < start + h + 2 {
        return Err(CoreError::InsufficientHistory {
            what: format!("the backtest (burn-in/arm history {start} + horizon {h} + 2 scored bars)"),
            needed: start + h + 2,
            available: prices.len(),
        });
    }
    let end = prices.len() - 1 - h;
    let loss_at = |t: usize| SideRates {
        long: Side::Long.loss(prices[t], prices[t + h]),
        short: Side::Short.loss(prices[t], prices[t + h]),
    };
    let arms = arms
        .iter()
        .zip(rates)
        .map(|(arm, rates)| {
            let rows = (start..=end)
                .map(|t| {
                    // Calibrators keep a rate once they have one, so this only guards the
                    // invariant: a gap would be an error, never a NaN margin.
                    let margin = rates[t].ok_or_else(|| CoreError::InsufficientHistory {
                        what: format!("arm {arm} at bar {t}"),
                        needed: t + 1,
                        available: t,
                    })?;
                    Ok(BacktestRow { index: t, margin, loss: loss_at(t) })
                })
                .collect::<Result<Vec<_>>>()?;
            let long = summarize(&rows, Side::Long, &config);
            let short = summarize(&rows, Side::Short, &config);
            Ok(ArmBacktest { arm: arm.clone(), rows, long, short })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Backtest { config, start, end, arms })
}

fn summarize(rows: &[BacktestRow], side: Side, config: &BacktestConfig) -> SideSummary {
    let p = 1.0 - config.params.confidence();
    let h = config.params.horizon();
    let margins: Vec<f64> = rows.iter().map(|r| r.margin.get(side)).collect();
    let hits: Vec<bool> = rows.iter().map(|r| r.exception(side)).collect();
    let exceptions = hits.iter().filter(|x| **x).count();
    let shortfalls: Vec<f64> = rows
        .iter()
        .filter(|r| r.exception(side))
        .map(|r| r.loss.get(side) - r.margin.get(side))
        .collect();
    // Non-overlapping subsample for the tests.
    let test_rows: Vec<&BacktestRow> = rows.iter().step_by(h).collect();
    let test_hits: Vec<bool> = test_rows.iter().map(|r| r.exception(side)).collect();
    let test_exceptions = test_hits.iter().filter(|x| **x).count();
    SideSummary {
        observations: rows.len(),
        exceptions,
        exception_rate: exceptions as f64 / rows.len() as f64,
        test_observations: test_hits.len(),
        test_exceptions,
        kupiec: stats::kupiec_pof(test_hits.len(), test_exceptions, p),
        christoffersen_ind: stats::christoffersen_independence(&test_hits),
        christoffersen_cc: stats::christoffersen_conditional_coverage(&test_hits, p),
        traffic_light: traffic_light(&test_rows, &test_hits, p),
        avg_margin: margins.iter().sum::<f64>() / margins.len() as f64,
        peak_to_trough: stats::peak_to_trough(&margins),
        max_rise_1d: stats::max_rise(&margins, 1),
        max_rise_5d: stats::max_rise(&margins, 5),
        max_rise_30d: stats::max_rise(&margins, 30),
        mean_shortfall: (!shortfalls.is_empty()).then(|| shortfalls.iter().sum::<f64>() / shortfalls.len() as f64),
    }
}

fn traffic_light(rows: &[&BacktestRow], hits: &[bool], p: f64) -> TrafficLight {
    let window = TRAFFIC_LIGHT_WINDOW.min(hits.len());
    let count = |w: &[bool]| w.iter().filter(|x| **x).count();
    let last = count(&hits[hits.len() - window..]);
    // Worst window: the most exceptions, the latest such window on ties.
    let (worst_end, worst) = hits
        .windows(window)
        .enumerate()
        .map(|(i, w)| (i + window - 1, count(w)))
        .fold((window - 1, 0), |best, cur| if cur.1 >= best.1 { cur } else { best });
    TrafficLight {
        last_250: stats::traffic_light(window, last, p),
        last_250_exceptions: last,
        worst_250: stats::traffic_light(window, worst, p),
        worst_250_exceptions: worst,
        worst_250_end: rows[worst_end].index,
        window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(h: usize, burn_in: usize) -> BacktestConfig {
        BacktestConfig { params: CalibrationParams::new(0.99, h, 365.0).unwrap(), burn_in }
    }

    /// A deterministic zig-zag with one crash.
    fn prices() -> Vec<f64> {
        let mut p = vec![100.0];
        for i in 1..400 {
            let f = match i {
                300 => 0.7,
                _ if i % 2 == 0 => 1.012,
                _ => 0.99,
            };
            p.push(p[i - 1] * f);
        }
        p
    }

    #[test]
    fn static_arm_by_hand() {
        let p = prices();
        let arm: Arm = "static:0.05".parse().unwrap();
        let bt = run_backtest(&p, &[arm], config(1, 250)).unwrap();
        assert_eq!(bt.start, 250);
        assert_eq!(bt.end, 398);
        let a = &bt.arms[0];
        assert_eq!(a.long.observations, 149);
        // Only the crash (bar 299 -> 300) exceeds 5%, on the long side.
        assert_eq!(a.long.exceptions, 1);
        assert_eq!(a.short.exceptions, 0);
        assert!((a.long.mean_shortfall.unwrap() - 0.25).abs() < 1e-12);
        assert!((a.long.avg_margin - 0.05).abs() < 1e-15);
        assert_eq!(a.long.peak_to_trough, Some(1.0));
        assert_eq!(a.long.max_rise_5d.unwrap().abs, 0.0);
        assert_eq!(a.long.traffic_light.window, 149);
        assert_eq!(a.long.kupiec, stats::kupiec_pof(149, 1, 0.01));
        let row = a.rows.iter().find(|r| r.index == 299).unwrap();
        assert!(row.exception(Side::Long) && !row.exception(Side::Short));
    }

    #[test]
    fn no_look_ahead_margin_at_t_ignores_later_prices() {
        let p = prices();
        let arm: Arm = "hs:100+cap:0.5".parse().unwrap();
        let full = run_backtest(&p, std::slice::from_ref(&arm), config(1, 250)).unwrap();
        // Changing every price after bar 320 must not change any margin posted up to 320.
        let mut altered = p.clone();
        for x in altered.iter_mut().skip(321) {
            *x *= 3.0;
        }
        let cut = run_backtest(&altered, &[arm], config(1, 250)).unwrap();
        for (a, b) in full.arms[0].rows.iter().zip(&cut.arms[0].rows).take_while(|(a, _)| a.index <= 320) {
            assert_eq!(a.margin, b.margin, "bar {}", a.index);
        }
    }

    #[test]
    fn overlapping_horizon_tests_use_every_hth_bar() {
        let p = prices();
        let bt = run_backtest(&p, &["ewma".parse().unwrap()], config(5, 250)).unwrap();
        let a = &bt.arms[0];
        assert_eq!(bt.end, 394);
        assert_eq!(a.long.observations, 145);
        assert_eq!(a.long.test_observations, 29); // 250, 255, ..., 390
        assert!((a.rows[1].loss.long - (1.0 - p[256] / p[251])).abs() < 1e-15);
    }

    #[test]
    fn arms_share_the_scored_window() {
        let p = prices();
        let arms: Vec<Arm> = ["static:0.1", "hs:280"].iter().map(|a| a.parse().unwrap()).collect();
        let bt = run_backtest(&p, &arms, config(1, 100)).unwrap();
        assert_eq!(bt.start, 280, "hs:280 needs 280 one-day losses, first at bar 280");
        assert_eq!(bt.arms[0].rows.len(), bt.arms[1].rows.len());
    }

    #[test]
    fn too_short_history_is_an_error_not_a_panic() {
        let p = prices();
        let err = run_backtest(&p[..260], &["ewma".parse().unwrap()], config(1, 259)).unwrap_err();
        assert!(err.to_string().contains("not enough history"), "{err}");
        assert!(run_backtest(&p, &[], config(1, 250)).is_err());
        let mut bad = p.clone();
        bad[17] = -1.0;
        let err = run_backtest(&bad, &["ewma".parse().unwrap()], config(1, 250)).unwrap_err();
        assert!(err.to_string().contains("index 17"), "{err}");
    }
}
