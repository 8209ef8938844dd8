//! GARCH(1,1) and GJR-GARCH(1,1,1) variance recursions and their analytic forecasts.

/// A GARCH(1,1) process, with the GJR asymmetry term when `asymmetric`:
/// `σ²[t] = ω + (α + γ·1[ε[t−1] < 0])·ε[t−1]² + β·σ²[t−1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garch {
    /// Adds the GJR leverage term γ (o = 1).
    pub asymmetric: bool,
}

impl Garch {
    /// Number of process parameters (3 or 4).
    pub fn num_params(&self) -> usize {
        if self.asymmetric { 4 } else { 3 }
    }

    /// Parameter names in order.
    pub fn param_names(&self) -> &'static [&'static str] {
        if self.asymmetric { &["omega", "alpha", "gamma", "beta"] } else { &["omega", "alpha", "beta"] }
    }

    /// Splits a process parameter slice into (ω, α, γ, β), γ = 0 when symmetric.
    pub fn unpack(&self, p: &[f64]) -> (f64, f64, f64, f64) {
        if self.asymmetric { (p[0], p[1], p[2], p[3]) } else { (p[0], p[1], 0.0, p[2]) }
    }

    /// Persistence `α + γ/2 + β` (the stationarity condition is persistence < 1).
    pub fn persistence(&self, p: &[f64]) -> f64 {
        let (_, a, g, b) = self.unpack(p);
        a + 0.5 * g + b
    }

    /// Whether `p` satisfies arch's constraints: ω > 0, α ≥ 0, α + γ ≥ 0, β ≥ 0,
    /// α + γ/2 + β ≤ 1.
    pub fn is_admissible(&self, p: &[f64]) -> bool {
        let (w, a, g, b) = self.unpack(p);
        w > 0.0 && a >= 0.0 && a + g >= 0.0 && b >= 0.0 && a + 0.5 * g + b <= 1.0 + 1e-12
    }

    /// Fills `sigma2` with the conditional variances of `resids` (arch's recursion, including
    /// its backcast start and variance bounds).
    pub fn variance(&self, p: &[f64], resids: &[f64], backcast: f64, bounds: &[(f64, f64)], sigma2: &mut [f64]) {
        let (w, a, g, b) = self.unpack(p);
        for t in 0..resids.len() {
            let s = if t == 0 {
                // arch starts with every lagged term at the backcast; the leverage term at half.
                w + (a + 0.5 * g + b) * backcast
            } else {
                let e = resids[t - 1];
                let leverage = if e < 0.0 { g } else { 0.0 };
                w + (a + leverage) * e * e + b * sigma2[t - 1]
            };
            sigma2[t] = bound(s, bounds[t]);
        }
    }

    /// Conditional variances of `resids` for live use: the same recursion started from arch's
    /// backcast of the first residuals, without the estimation-time variance bounds (which
    /// only keep absurd trial parameters finite). Element `t` is σ² of residual `t`, known at
    /// the close before it; it uses residuals `..t` only.
    pub fn filter(&self, p: &[f64], resids: &[f64]) -> Vec<f64> {
        let tau = resids.len().min(super::model::BACKCAST_OBS);
        let weights: Vec<f64> = (0..tau).map(|i| super::model::BACKCAST_DECAY.powi(i as i32)).collect();
        let total: f64 = weights.iter().sum();
        let backcast = if tau == 0 { 0.0 } else { resids[..tau].iter().zip(&weights).map(|(e, w)| e * e * w).sum::<f64>() / total };
        let mut sigma2 = vec![0.0; resids.len()];
        let unbounded = vec![(0.0, f64::INFINITY); resids.len()];
        self.variance(p, resids, backcast, &unbounded, &mut sigma2);
        sigma2
    }

    /// Analytic variance forecasts for 1..=horizon steps after the last observation, from its
    /// residual and conditional variance.
    pub fn forecast(&self, p: &[f64], last_resid: f64, last_sigma2: f64, horizon: usize) -> Vec<f64> {
        let (w, a, g, b) = self.unpack(p);
        let mut out = Vec::with_capacity(horizon);
        let leverage = if last_resid < 0.0 { g } else { 0.0 };
        let mut s = w + (a + leverage) * last_resid * last_resid + b * last_sigma2;
        for _ in 0..horizon {
            out.push(s);
            s = w + (a + 0.5 * g + b) * s;
        }
        out
    }
}

/// arch's variance bound: floor at the lower bound; above the upper bound grow only
/// logarithmically, so the likelihood stays finite for absurd parameters.
fn bound(s: f64, (lower, upper): (f64, f64)) -> f64 {
    if s < lower {
        lower
    } else if s > upper {
        if s.is_finite() { upper + (s / upper).ln() } else { upper + 1000.0 }
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursion_and_forecast_by_hand() {
        let g = Garch { asymmetric: true };
        let p = [0.1, 0.05, 0.1, 0.8];
        let resids = [1.0, -2.0, 0.5];
        let wide = vec![(1e-12, 1e12); 3];
        let mut s = [0.0; 3];
        g.variance(&p, &resids, 2.0, &wide, &mut s);
        assert!((s[0] - (0.1 + (0.05 + 0.05 + 0.8) * 2.0)).abs() < 1e-15);
        assert!((s[1] - (0.1 + 0.05 * 1.0 + 0.8 * s[0])).abs() < 1e-15);
        assert!((s[2] - (0.1 + 0.15 * 4.0 + 0.8 * s[1])).abs() < 1e-15);
        let f = g.forecast(&p, -1.0, 2.0, 3);
        assert!((f[0] - (0.1 + 0.15 + 1.6)).abs() < 1e-15);
        assert!((f[1] - (0.1 + 0.9 * f[0])).abs() < 1e-15);
        assert!((g.persistence(&p) - 0.9).abs() < 1e-15);
        assert!(g.is_admissible(&p));
        assert!(!g.is_admissible(&[0.1, 0.05, -0.1, 0.8]), "alpha + gamma < 0");
        assert!(!Garch { asymmetric: false }.is_admissible(&[0.1, 0.3, 0.8]), "non-stationary");
    }

    #[test]
    fn bounds_keep_variances_finite() {
        assert_eq!(bound(1e-20, (1e-8, 1e8)), 1e-8);
        assert!((bound(1e10, (1e-8, 1e8)) - (1e8 + 100f64.ln())).abs() < 1e-6);
        assert_eq!(bound(f64::INFINITY, (1e-8, 1e8)), 1e8 + 1000.0);
    }
}
