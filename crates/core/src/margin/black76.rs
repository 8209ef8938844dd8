//! Black-76: European options on a forward (Black 1976), the pricing model of crypto option
//! venues and of futures options. Prices are per unit of the underlying; `t` in years, `r` the
//! continuously compounded discount rate, `sigma` the annual volatility.

use statrs::function::erf::erfc;

/// Call or put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    /// The right to buy.
    Call,
    /// The right to sell.
    Put,
}

/// Standard normal CDF through `erfc`, accurate in both tails (the margin grid prices deep
/// in- and out-of-the-money options); called directly, it skips a distribution object per call.
fn cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal density.
fn pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Black-76 price of a European option on forward `f` with strike `k`. At or past expiry, or
/// with zero volatility, the discounted intrinsic value.
pub fn price(kind: OptionKind, f: f64, k: f64, t: f64, r: f64, sigma: f64) -> f64 {
    Contract::new(kind, k, t, r).price(f, (f / k).ln(), sigma)
}

/// One option's terms with what every revaluation of it shares worked out once (discount,
/// √t): a scenario grid prices the same contract at many forwards and volatilities.
#[derive(Debug, Clone, Copy)]
pub struct Contract {
    kind: OptionKind,
    k: f64,
    t: f64,
    discount: f64,
    sqrt_t: f64,
}

impl Contract {
    /// The option `kind` struck at `k`, `t` years to expiry, discounted at `r`.
    pub fn new(kind: OptionKind, k: f64, t: f64, r: f64) -> Self {
        Self { kind, k, t, discount: (-r * t.max(0.0)).exp(), sqrt_t: t.sqrt() }
    }

    /// `ln(f / k)`, which a grid shares across its volatility shocks.
    pub fn log_moneyness(&self, f: f64) -> f64 {
        (f / self.k).ln()
    }

    /// The price at forward `f` (whose [`log_moneyness`](Self::log_moneyness) is `ln_fk`) and
    /// volatility `sigma`: [`price`].
    pub fn price(&self, f: f64, ln_fk: f64, sigma: f64) -> f64 {
        let (k, t) = (self.k, self.t);
        let intrinsic = match self.kind {
            OptionKind::Call => (f - k).max(0.0),
            OptionKind::Put => (k - f).max(0.0),
        };
        if t <= 0.0 || sigma <= 0.0 || f <= 0.0 || k <= 0.0 {
            return self.discount * intrinsic;
        }
        let sd = sigma * self.sqrt_t;
        let d1 = (ln_fk + 0.5 * sd * sd) / sd;
        let d2 = d1 - sd;
        self.discount
            * match self.kind {
                OptionKind::Call => f * cdf(d1) - k * cdf(d2),
                OptionKind::Put => k * cdf(-d2) - f * cdf(-d1),
            }
    }
}

/// Delta (∂price/∂f), gamma (∂²price/∂f²) and vega (∂price/∂σ, per 1.00 of volatility).
pub fn greeks(kind: OptionKind, f: f64, k: f64, t: f64, r: f64, sigma: f64) -> (f64, f64, f64) {
    if t <= 0.0 || sigma <= 0.0 || f <= 0.0 || k <= 0.0 {
        let itm = match kind {
            OptionKind::Call => f > k,
            OptionKind::Put => f < k,
        };
        let delta = if itm { if kind == OptionKind::Call { 1.0 } else { -1.0 } } else { 0.0 };
        return (delta * (-r * t.max(0.0)).exp(), 0.0, 0.0);
    }
    let discount = (-r * t).exp();
    let sd = sigma * t.sqrt();
    let d1 = ((f / k).ln() + 0.5 * sd * sd) / sd;
    let delta = discount * match kind {
        OptionKind::Call => cdf(d1),
        OptionKind::Put => cdf(d1) - 1.0,
    };
    let gamma = discount * pdf(d1) / (f * sd);
    let vega = discount * f * pdf(d1) * t.sqrt();
    (delta, gamma, vega)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hulls_futures_option_example() {
        // Hull, "Options, Futures, and Other Derivatives", Black's model example: a European put
        // on a futures price of 20, strike 20, 4 months, r = 9%, σ = 25%: price 1.12.
        let p = price(OptionKind::Put, 20.0, 20.0, 4.0 / 12.0, 0.09, 0.25);
        assert!((p - 1.1166).abs() < 5e-4, "{p}");
        // Put-call parity on a forward: c − p = e^{−rT}(F − K).
        let (f, k, t, r, s) = (105.0, 100.0, 0.5, 0.03, 0.6);
        let parity = price(OptionKind::Call, f, k, t, r, s) - price(OptionKind::Put, f, k, t, r, s);
        assert!((parity - (-r * t).exp() * (f - k)).abs() < 1e-10);
    }

    #[test]
    fn greeks_match_finite_differences() {
        let (f, k, t, r, s) = (30_000.0, 32_000.0, 0.25, 0.0, 0.7);
        for kind in [OptionKind::Call, OptionKind::Put] {
            let (delta, gamma, vega) = greeks(kind, f, k, t, r, s);
            let p = |f: f64, s: f64| price(kind, f, k, t, r, s);
            let h = 1.0;
            assert!((delta - (p(f + h, s) - p(f - h, s)) / (2.0 * h)).abs() < 1e-6);
            assert!((gamma - (p(f + h, s) - 2.0 * p(f, s) + p(f - h, s)) / (h * h)).abs() < 1e-7);
            assert!((vega - (p(f, s + 1e-4) - p(f, s - 1e-4)) / 2e-4).abs() < 1e-3);
        }
        // Expired: intrinsic value, delta ±1 or 0.
        assert_eq!(price(OptionKind::Call, 110.0, 100.0, 0.0, 0.0, 0.5), 10.0);
        assert_eq!(greeks(OptionKind::Put, 90.0, 100.0, 0.0, 0.0, 0.5), (-1.0, 0.0, 0.0));
    }
}
