//! Backtest statistics: coverage tests, the Basel traffic light, procyclicality measures.
//!
//! References: Kupiec (1995) "Techniques for verifying the accuracy of risk measurement models";
//! Christoffersen (1998) "Evaluating interval forecasts"; Basel Committee (1996) "Supervisory
//! framework for the use of backtesting in conjunction with the internal models approach".

use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

/// Significance level at which the coverage tests reject.
pub const REJECT_AT: f64 = 0.05;

/// A likelihood-ratio statistic and its asymptotic chi-square p-value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrTest {
    /// The LR statistic.
    pub lr: f64,
    /// `P(χ²(df) > lr)`.
    pub p_value: f64,
}

impl LrTest {
    fn new(lr: f64, df: f64) -> Self {
        // Rounding can make an LR of zero come out as -1e-16.
        let lr = lr.max(0.0);
        Self { lr, p_value: chi_square_sf(lr, df) }
    }

    /// True when the test rejects at [`REJECT_AT`].
    pub fn rejects(&self) -> bool {
        self.p_value < REJECT_AT
    }
}

/// Survival function of the chi-square distribution with `df` degrees of freedom.
pub fn chi_square_sf(x: f64, df: f64) -> f64 {
    match ChiSquared::new(df) {
        Ok(d) => d.sf(x).clamp(0.0, 1.0),
        Err(_) => f64::NAN, // df is always 1 or 2 here
    }
}

/// Quantile of the chi-square distribution (used to show the critical values in reports).
pub fn chi_square_quantile(p: f64, df: f64) -> f64 {
    ChiSquared::new(df).map(|d| d.inverse_cdf(p)).unwrap_or(f64::NAN)
}

/// `a · ln(b)` with the convention `0 · ln 0 = 0` the likelihoods need.
fn xlogy(a: f64, b: f64) -> f64 {
    if a == 0.0 { 0.0 } else { a * b.ln() }
}

/// Kupiec's proportion-of-failures test: `x` exceptions in `n` observations against the
/// expected exception probability `p` (1 − confidence). LR ~ χ²(1).
pub fn kupiec_pof(n: usize, x: usize, p: f64) -> LrTest {
    let (n, x) = (n as f64, x as f64);
    if n == 0.0 {
        return LrTest { lr: 0.0, p_value: 1.0 };
    }
    let phat = x / n;
    let null = xlogy(n - x, 1.0 - p) + xlogy(x, p);
    let alt = xlogy(n - x, 1.0 - phat) + xlogy(x, phat);
    LrTest::new(-2.0 * (null - alt), 1.0)
}

/// Transition counts of an exception indicator sequence (`n_ij`: state i followed by j).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transitions {
    /// No exception followed by none.
    pub n00: usize,
    /// No exception followed by an exception.
    pub n01: usize,
    /// Exception followed by none.
    pub n10: usize,
    /// Exception followed by an exception.
    pub n11: usize,
}

impl Transitions {
    /// Counts transitions in `hits`.
    pub fn count(hits: &[bool]) -> Self {
        let mut t = Self::default();
        for w in hits.windows(2) {
            match (w[0], w[1]) {
                (false, false) => t.n00 += 1,
                (false, true) => t.n01 += 1,
                (true, false) => t.n10 += 1,
                (true, true) => t.n11 += 1,
            }
        }
        t
    }
}

/// Christoffersen's independence test (first-order Markov alternative). LR ~ χ²(1).
pub fn christoffersen_independence(hits: &[bool]) -> LrTest {
    let t = Transitions::count(hits);
    let (n00, n01, n10, n11) = (t.n00 as f64, t.n01 as f64, t.n10 as f64, t.n11 as f64);
    let total = n00 + n01 + n10 + n11;
    if total == 0.0 {
        return LrTest { lr: 0.0, p_value: 1.0 };
    }
    let pi = (n01 + n11) / total;
    let pi01 = if n00 + n01 > 0.0 { n01 / (n00 + n01) } else { 0.0 };
    let pi11 = if n10 + n11 > 0.0 { n11 / (n10 + n11) } else { 0.0 };
    let null = xlogy(n00 + n10, 1.0 - pi) + xlogy(n01 + n11, pi);
    let alt = xlogy(n00, 1.0 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1.0 - pi11) + xlogy(n11, pi11);
    LrTest::new(-2.0 * (null - alt), 1.0)
}

/// Christoffersen's conditional-coverage test: `LR_pof + LR_ind ~ χ²(2)`.
pub fn christoffersen_conditional_coverage(hits: &[bool], p: f64) -> LrTest {
    let x = hits.iter().filter(|h| **h).count();
    let lr = kupiec_pof(hits.len(), x, p).lr + christoffersen_independence(hits).lr;
    LrTest::new(lr, 2.0)
}

/// Basel traffic-light zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    /// The model is fine.
    Green,
    /// Problems possible: more exceptions than an accurate model likely shows.
    Yellow,
    /// The model is almost surely wrong.
    Red,
}

impl Zone {
    /// `"green"`, `"yellow"` or `"red"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Green => "green",
            Zone::Yellow => "yellow",
            Zone::Red => "red",
        }
    }
}

/// `P(X ≤ x)` for `X ~ Binomial(n, p)`.
pub fn binomial_cdf(n: usize, p: f64, x: usize) -> f64 {
    match Binomial::new(p, n as u64) {
        Ok(b) => b.cdf(x as u64),
        Err(_) => f64::NAN,
    }
}

/// The Basel zone of `x` exceptions in `n` observations with exception probability `p`, by the
/// 1996 framework's rule on the cumulative binomial probability: green while `P(X ≤ x) < 95%`,
/// red from `P(X ≤ x) ≥ 99.99%`, yellow between. For `n = 250, p = 1%` this gives the published
/// table: green 0-4, yellow 5-9, red 10 or more.
pub fn traffic_light(n: usize, x: usize, p: f64) -> Zone {
    let cdf = binomial_cdf(n, p, x);
    if cdf < 0.95 {
        Zone::Green
    } else if cdf < 0.9999 {
        Zone::Yellow
    } else {
        Zone::Red
    }
}

/// The largest rise of a series over `n` steps, absolute (`m[t] − m[t−n]`) and relative
/// (`m[t]/m[t−n] − 1`), each the maximum over `t` (they may come from different dates).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rise {
    /// Largest absolute rise, in margin-rate units.
    pub abs: f64,
    /// Largest relative rise (0.5 = +50%); `None` where every base was zero.
    pub rel: Option<f64>,
}

/// Largest `n`-step rise of `m`; `None` when the series has no `n`-step pair.
pub fn max_rise(m: &[f64], n: usize) -> Option<Rise> {
    if n == 0 || m.len() <= n {
        return None;
    }
    let abs = m.windows(n + 1).map(|w| w[n] - w[0]).fold(f64::NEG_INFINITY, f64::max);
    let rel = m
        .windows(n + 1)
        .filter(|w| w[0] > 0.0)
        .map(|w| w[n] / w[0] - 1.0)
        .fold(None, |acc: Option<f64>, r| Some(acc.map_or(r, |a| a.max(r))));
    Some(Rise { abs, rel })
}

/// Peak-to-trough ratio `max(m) / min(m)`; `None` for an empty series or a zero minimum.
pub fn peak_to_trough(m: &[f64]) -> Option<f64> {
    let max = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = m.iter().copied().fold(f64::INFINITY, f64::min);
    (!m.is_empty() && min > 0.0).then(|| max / min)
}

/// Days after an event over which [`readiness`] looks for the peak margin.
pub const READINESS_WINDOW: usize = 30;

/// Readiness of a margin series for an event on day `event`: the margin in force the day
/// before, over the largest margin of the event day and the `window − 1` days after it,
/// `m(t−1) / max m(t..t+window−1)`. 1 means the margin was already at its peak when the event
/// came; a reactive margin that only climbs after the event scores low. `None` when the day
/// before or the event day is outside `m`, or the peak is not positive.
pub fn readiness(m: &[f64], event: usize, window: usize) -> Option<f64> {
    if event == 0 || event >= m.len() || window == 0 {
        return None;
    }
    let end = (event + window).min(m.len());
    let peak = m[event..end].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (peak > 0.0).then(|| m[event - 1] / peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_the_margin_before_over_the_peak_after() {
        let m = [0.05, 0.05, 0.10, 0.20, 0.15, 0.12];
        assert_eq!(readiness(&m, 2, 30), Some(0.25), "0.05 before, peak 0.20 within the window");
        assert_eq!(readiness(&m, 2, 1), Some(0.5), "a one-day window sees only the event day");
        assert!((readiness(&[0.3, 0.2, 0.1], 1, 30).unwrap() - 1.5).abs() < 1e-12, "a margin that falls after the event");
        assert_eq!(readiness(&m, 0, 30), None, "no day before");
        assert_eq!(readiness(&m, 6, 30), None, "event outside the series");
    }

    #[test]
    fn chi_square_quantiles_match_published_tables() {
        // Standard chi-square table values.
        assert!((chi_square_quantile(0.95, 1.0) - 3.841459).abs() < 1e-6);
        assert!((chi_square_quantile(0.99, 1.0) - 6.634897).abs() < 1e-6);
        assert!((chi_square_quantile(0.95, 2.0) - 5.991465).abs() < 1e-6);
        assert!((chi_square_sf(3.841459, 1.0) - 0.05).abs() < 1e-7);
        // For df = 2 the survival function is exp(-x/2).
        assert!((chi_square_sf(4.0, 2.0) - (-2.0f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn basel_1996_table_of_cumulative_probabilities() {
        // Basel Committee (1996), Table 2: 250 observations, 99% coverage. Cumulative
        // probability of x or fewer exceptions, in percent, as published (two decimals).
        let published = [8.11, 28.58, 54.32, 75.81, 89.22, 95.88, 98.63, 99.60, 99.89, 99.97, 99.99];
        for (x, want) in published.iter().enumerate() {
            let got = 100.0 * binomial_cdf(250, 0.01, x);
            assert!((got - want).abs() <= 0.005 + 1e-9, "x={x}: {got} vs {want}");
        }
        let zones: Vec<Zone> = (0..=12).map(|x| traffic_light(250, x, 0.01)).collect();
        assert!(zones[..5].iter().all(|z| *z == Zone::Green));
        assert!(zones[5..10].iter().all(|z| *z == Zone::Yellow));
        assert!(zones[10..].iter().all(|z| *z == Zone::Red));
    }

    #[test]
    fn kupiec_by_hand() {
        // No exception in 250 days: LR = -2·250·ln(0.99).
        let t = kupiec_pof(250, 0, 0.01);
        assert!((t.lr - (-500.0 * 0.99f64.ln())).abs() < 1e-12);
        assert!(t.rejects());
        // Exactly the expected rate: LR = 0, p = 1.
        let t = kupiec_pof(1000, 10, 0.01);
        assert!(t.lr.abs() < 1e-12 && (t.p_value - 1.0).abs() < 1e-12);
        // 10 in 250 is far too many.
        assert!(kupiec_pof(250, 10, 0.01).rejects());
    }

    #[test]
    fn christoffersen_by_hand() {
        // Clustered hits: 0 0 1 1 0 0 0 1 1 0 -> n00=3, n01=2, n10=2, n11=2.
        let hits: Vec<bool> = [0, 0, 1, 1, 0, 0, 0, 1, 1, 0].iter().map(|&h| h == 1).collect();
        let t = Transitions::count(&hits);
        assert_eq!((t.n00, t.n01, t.n10, t.n11), (3, 2, 2, 2));
        let pi = 4.0f64 / 9.0;
        let null = 5.0 * (1.0 - pi).ln() + 4.0 * pi.ln();
        let alt = 3.0 * 0.6f64.ln() + 2.0 * 0.4f64.ln() + 2.0 * 0.5f64.ln() + 2.0 * 0.5f64.ln();
        let ind = christoffersen_independence(&hits);
        assert!((ind.lr - (-2.0 * (null - alt))).abs() < 1e-12);
        let cc = christoffersen_conditional_coverage(&hits, 0.01);
        assert!((cc.lr - (ind.lr + kupiec_pof(10, 4, 0.01).lr)).abs() < 1e-12);
        // Independent of nothing: no hits at all gives LR 0.
        assert_eq!(christoffersen_independence(&[false; 20]).lr, 0.0);
    }

    #[test]
    fn procyclicality_measures_by_hand() {
        let m = [0.10, 0.12, 0.06, 0.09, 0.18];
        assert_eq!(peak_to_trough(&m), Some(3.0));
        let r1 = max_rise(&m, 1).unwrap();
        assert!((r1.abs - 0.09).abs() < 1e-15);
        assert!((r1.rel.unwrap() - 1.0).abs() < 1e-12); // 0.09 -> 0.18
        let r2 = max_rise(&m, 2).unwrap();
        assert!((r2.abs - 0.12).abs() < 1e-15); // 0.06 -> 0.18
        assert!((r2.rel.unwrap() - 2.0).abs() < 1e-12);
        assert!(max_rise(&m, 5).is_none());
        assert_eq!(peak_to_trough(&[0.0, 0.1]), None);
    }
}
