//! Innovation distributions: standard normal and standardised Student-t (unit variance).

use statrs::function::gamma::ln_gamma;

/// The distribution of standardised residuals `ε/σ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Innovation {
    /// Standard normal.
    Normal,
    /// Student-t scaled to unit variance, with ν > 2 degrees of freedom.
    StudentT,
}

impl Innovation {
    /// Number of distribution parameters.
    pub fn num_params(&self) -> usize {
        match self {
            Innovation::Normal => 0,
            Innovation::StudentT => 1,
        }
    }

    /// Parameter names in order.
    pub fn param_names(&self) -> &'static [&'static str] {
        match self {
            Innovation::Normal => &[],
            Innovation::StudentT => &["nu"],
        }
    }

    /// `arch`'s name: `normal` or `t`.
    pub fn name(&self) -> &'static str {
        match self {
            Innovation::Normal => "normal",
            Innovation::StudentT => "t",
        }
    }

    /// Log density of residual `e` with conditional variance `sigma2`.
    pub fn log_density(&self, p: &[f64], e: f64, sigma2: f64) -> f64 {
        match self {
            Innovation::Normal => -0.5 * ((2.0 * std::f64::consts::PI).ln() + sigma2.ln() + e * e / sigma2),
            Innovation::StudentT => {
                let nu = p[0];
                ln_gamma((nu + 1.0) / 2.0) - ln_gamma(nu / 2.0)
                    - 0.5 * (std::f64::consts::PI * (nu - 2.0)).ln()
                    - 0.5 * sigma2.ln()
                    - 0.5 * (nu + 1.0) * (1.0 + e * e / (sigma2 * (nu - 2.0))).ln()
            }
        }
    }

    /// Whether `p` is admissible (ν > 2 for Student-t).
    pub fn is_admissible(&self, p: &[f64]) -> bool {
        match self {
            Innovation::Normal => true,
            Innovation::StudentT => p[0] > 2.0 && p[0].is_finite(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_density_by_hand() {
        let ll = Innovation::Normal.log_density(&[], 1.0, 1.0);
        assert!((ll - (-0.5 - 0.5 * (2.0 * std::f64::consts::PI).ln())).abs() < 1e-15);
    }

    #[test]
    fn student_t_tends_to_normal_and_integrates_to_one() {
        let n = Innovation::Normal.log_density(&[], 0.7, 2.0);
        let t = Innovation::StudentT.log_density(&[1e7], 0.7, 2.0);
        assert!((n - t).abs() < 1e-6);
        // Riemann sum of the density with ν = 5, σ² = 1: integrates to 1, variance 1.
        let (mut mass, mut var) = (0.0, 0.0);
        let dx = 1e-3;
        let mut x = -60.0;
        while x < 60.0 {
            let f = Innovation::StudentT.log_density(&[5.0], x, 1.0).exp();
            mass += f * dx;
            var += x * x * f * dx;
            x += dx;
        }
        assert!((mass - 1.0).abs() < 1e-6, "{mass}");
        assert!((var - 1.0).abs() < 1e-3, "{var}");
    }
}
