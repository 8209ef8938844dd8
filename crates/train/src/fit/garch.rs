//! Maximum-likelihood fitting of GARCH(1,1) and GJR-GARCH(1,1,1) with normal or Student-t
//! innovations, with `arch`'s constraints, starting values and robust standard errors.
//!
//! The constraints (ω > 0, α ≥ 0, α + γ ≥ 0, β ≥ 0, α + γ/2 + β ≤ 1, ν > 2) are built into a
//! smooth reparametrisation, so an unconstrained quasi-Newton method (argmin's L-BFGS) searches
//! only admissible models: persistence `P = α + γ/2 + β = logistic(θ₂)`, its split between the
//! ARCH terms and β by another logistic, and, for GJR, the split of the ARCH part between
//! positive (α) and negative (α + γ) shocks by a third. A maximum on the stationarity boundary
//! is reached in the limit and reported as `at_boundary`, not as a failure.

use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use foresight_core::volatility::{ArchData, ArchModel, Garch, Innovation};
use serde_json::{Map, Value, json};

use super::linalg::{invert, matmul};
use crate::error::{DataError, Result};

/// Persistence above `1 − BOUNDARY_TOL` counts as on the stationarity boundary.
const BOUNDARY_TOL: f64 = 1e-5;
/// Smallest ν searched (arch bounds ν at 2.05).
const NU_MIN: f64 = 2.05;

/// Hyper-parameters of a GARCH fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GarchParams {
    model: ArchModel,
    max_iters: u64,
}

impl GarchParams {
    /// GARCH(1,1) (`asymmetric = false`) or GJR-GARCH(1,1,1), with normal innovations.
    pub fn new(asymmetric: bool) -> Self {
        Self { model: ArchModel { volatility: Garch { asymmetric }, innovation: Innovation::Normal }, max_iters: 1000 }
    }

    /// Sets the innovation distribution.
    pub fn innovation(mut self, innovation: Innovation) -> Self {
        self.model.innovation = innovation;
        self
    }

    /// Caps optimizer iterations (≥ 1, see [`check`](Self::check)).
    pub fn max_iters(mut self, max_iters: u64) -> Self {
        self.max_iters = max_iters;
        self
    }

    /// Rejects an iteration cap of 0 (the optimizer would return its start as the estimate),
    /// naming it.
    pub fn check(&self) -> Result<()> {
        if self.max_iters == 0 {
            return Err(super::invalid(self.name(), "max_iters", "≥ 1", self.max_iters));
        }
        Ok(())
    }

    /// `garch` or `gjr`, then the distribution: `garch-normal`, `gjr-t`, ...
    pub fn name(&self) -> String {
        model_name(&self.model)
    }

    /// Fits the model to percent returns (100 × log return), with a constant mean.
    pub fn fit(&self, returns_pct: &[f64]) -> Result<FittedGarch> {
        self.fit_from(returns_pct, None)
    }

    /// Re-fits on `returns_pct` (typically the previous sample plus new days) starting from the
    /// `previous` estimate instead of the grid search, as a walk-forward refit does. A previous
    /// fit of another model is refused, naming both; an estimate of this model that the new
    /// sample makes unusable (a likelihood that is not finite there) falls back to the grid.
    pub fn refit(&self, returns_pct: &[f64], previous: &FittedGarch) -> Result<FittedGarch> {
        if previous.model != self.model {
            return Err(super::invalid(self.name(), "the previous fit to start from", "of the same model", previous.name()));
        }
        self.fit_from(returns_pct, Some(&previous.params))
    }

    fn fit_from(&self, returns_pct: &[f64], warm: Option<&[f64]>) -> Result<FittedGarch> {
        self.check()?;
        let data = ArchData::new(returns_pct)?;
        let transform = Transform { model: self.model };
        let warm = warm
            .filter(|p| p.len() == self.model.num_params() && self.model.is_admissible(p) && self.model.loglik(p, &data).is_finite())
            .map(|p| transform.theta_of(p))
            .filter(|theta| theta.iter().all(|v| v.is_finite()));
        let start = warm.unwrap_or_else(|| transform.theta_of(&starting_values(&self.model, &data)));
        let problem = Problem { model: self.model, transform, data: &data };
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(1e-10)
            .and_then(|s| s.with_tolerance_cost(1e-15))
            .map_err(optimizer_error)?;
        let result = Executor::new(problem, solver)
            .configure(|state| state.param(start).max_iters(self.max_iters))
            .run()
            .map_err(optimizer_error)?;
        let state = result.state();
        let theta = state.get_best_param().cloned().ok_or_else(|| optimizer_error("no parameter found"))?;
        let iterations = state.get_iter();
        let converged = iterations < self.max_iters;
        let params = transform.params_of(&theta);
        let loglik = self.model.loglik(&params, &data);
        if !loglik.is_finite() {
            return Err(optimizer_error("the likelihood is not finite at the optimum"));
        }
        let std_err = robust_std_err(&self.model, &params, &data);
        Ok(FittedGarch { model: self.model, params, std_err, loglik, iterations, converged, data })
    }
}

fn optimizer_error(e: impl std::fmt::Display) -> DataError {
    DataError::Fit { model: "garch".into(), message: e.to_string() }
}

/// A fitted GARCH model: parameters, inference and the data it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedGarch {
    model: ArchModel,
    params: Vec<f64>,
    std_err: Vec<Option<f64>>,
    loglik: f64,
    iterations: u64,
    converged: bool,
    data: ArchData,
}

impl FittedGarch {
    /// The composed model.
    pub fn model(&self) -> &ArchModel {
        &self.model
    }

    /// Estimated parameters, in [`ArchModel::param_names`] order.
    pub fn params(&self) -> &[f64] {
        &self.params
    }

    /// The estimate called `name` (`mu`, `omega`, `alpha`, `gamma`, `beta`, `nu`).
    pub fn param(&self, name: &str) -> Option<f64> {
        self.model.param_names().iter().position(|n| *n == name).map(|i| self.params[i])
    }

    /// Robust (sandwich) standard errors; `None` where the covariance is not defined.
    pub fn std_err(&self) -> &[Option<f64>] {
        &self.std_err
    }

    /// Maximised log-likelihood.
    pub fn loglik(&self) -> f64 {
        self.loglik
    }

    /// Observations fitted.
    pub fn nobs(&self) -> usize {
        self.data.nobs()
    }

    /// `α + γ/2 + β`.
    pub fn persistence(&self) -> f64 {
        self.model.volatility.persistence(self.model.split(&self.params).1)
    }

    /// True when the maximum lies on the stationarity boundary (persistence ≈ 1).
    pub fn at_boundary(&self) -> bool {
        self.persistence() > 1.0 - BOUNDARY_TOL
    }

    /// Whether the optimizer stopped before its iteration cap.
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// Analytic variance forecasts (percent² per day) for 1..=horizon days ahead.
    pub fn forecast_variance(&self, horizon: usize) -> Vec<f64> {
        self.model.forecast_variance(&self.params, &self.data, horizon)
    }

    /// `garch` or `gjr`, then the distribution: `garch-normal`, `gjr-t`, ...
    pub fn name(&self) -> String {
        model_name(&self.model)
    }

    /// The JSON object `foresight fit --json` prints.
    pub fn to_json(&self) -> Value {
        let names = self.model.param_names();
        let mut out = Map::new();
        out.insert("model".into(), json!(if self.model.volatility.asymmetric { "gjr" } else { "garch" }));
        out.insert("dist".into(), json!(self.model.innovation.name()));
        for (n, v) in names.iter().zip(&self.params) {
            out.insert(n.to_string(), json!(v));
        }
        out.insert("loglik".into(), json!(self.loglik));
        out.insert("aic".into(), json!(self.model.aic(self.loglik)));
        out.insert("bic".into(), json!(self.model.bic(self.loglik, self.nobs())));
        out.insert("nobs".into(), json!(self.nobs()));
        let se: Map<String, Value> = names.iter().zip(&self.std_err).map(|(n, s)| (n.to_string(), json!(s))).collect();
        out.insert("std_err".into(), Value::Object(se));
        out.insert("persistence".into(), json!(self.persistence()));
        out.insert("at_boundary".into(), json!(self.at_boundary()));
        out.insert("converged".into(), json!(self.converged));
        out.insert("iterations".into(), json!(self.iterations));
        Value::Object(out)
    }
}

fn model_name(model: &ArchModel) -> String {
    let process = if model.volatility.asymmetric { "gjr" } else { "garch" };
    format!("{process}-{}", model.innovation.name())
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

/// Maps unconstrained θ to admissible parameters and back.
#[derive(Debug, Clone, Copy)]
struct Transform {
    model: ArchModel,
}

impl Transform {
    fn params_of(&self, th: &[f64]) -> Vec<f64> {
        let mut p = vec![th[0], th[1].exp()];
        let persistence = logistic(th[2]);
        let arch_share = logistic(th[3]);
        let arch = persistence * arch_share; // α + γ/2
        let beta = persistence * (1.0 - arch_share);
        let next = if self.model.volatility.asymmetric {
            // α = 2·arch·u (positive shocks), α + γ = 2·arch·(1 − u) (negative shocks).
            let u = logistic(th[4]);
            p.extend([2.0 * arch * u, 2.0 * arch * (1.0 - 2.0 * u), beta]);
            5
        } else {
            p.extend([arch, beta]);
            4
        };
        if self.model.innovation == Innovation::StudentT {
            p.push(NU_MIN + th[next].exp());
        }
        p
    }

    fn theta_of(&self, p: &[f64]) -> Vec<f64> {
        let (mu, vol, dist) = self.model.split(p);
        let (omega, alpha, gamma, beta) = self.model.volatility.unpack(vol);
        let arch = alpha + 0.5 * gamma;
        let persistence = arch + beta;
        let mut th = vec![mu, omega.ln(), logit(persistence), logit(arch / persistence)];
        if self.model.volatility.asymmetric {
            th.push(logit(alpha / (2.0 * arch)));
        }
        if let Some(nu) = dist.first() {
            th.push((nu - NU_MIN).max(1e-6).ln());
        }
        th
    }
}

/// arch's starting values: the sample mean, the best of a grid of (α, γ, persistence) by the
/// Gaussian likelihood with ω matching the sample variance, and ν from the kurtosis.
fn starting_values(model: &ArchModel, data: &ArchData) -> Vec<f64> {
    let n = data.nobs() as f64;
    let mu = data.returns.iter().sum::<f64>() / n;
    let resids: Vec<f64> = data.returns.iter().map(|r| r - mu).collect();
    let target = resids.iter().map(|e| e * e).sum::<f64>() / n;
    let gaussian = ArchModel { innovation: Innovation::Normal, ..*model };
    let grid = [0.01, 0.05, 0.1, 0.2];
    let gammas: &[f64] = if model.volatility.asymmetric { &grid } else { &[0.0] };
    let mut best: Option<(f64, Vec<f64>)> = None;
    for &alpha in &grid {
        for &gamma in gammas {
            for &persistence in &[0.5, 0.7, 0.9, 0.98] {
                let beta = persistence - alpha - gamma / 2.0;
                let mut p = vec![mu, (1.0 - persistence) * target, alpha];
                if model.volatility.asymmetric {
                    p.push(gamma);
                }
                p.push(beta);
                if !gaussian.is_admissible(&p) || beta <= 0.0 {
                    continue;
                }
                let ll = gaussian.loglik(&p, data);
                if ll.is_finite() && best.as_ref().is_none_or(|(b, _)| ll > *b) {
                    best = Some((ll, p));
                }
            }
        }
    }
    let mut start = best.map(|(_, p)| p).unwrap_or_else(|| {
        let mut p = vec![mu, 0.1 * target, 0.05];
        if model.volatility.asymmetric {
            p.push(0.05);
        }
        p.push(0.8);
        p
    });
    if model.innovation == Innovation::StudentT {
        let m2 = target;
        let m4 = resids.iter().map(|e| e.powi(4)).sum::<f64>() / n;
        let k = m4 / (m2 * m2);
        start.push(if k > 3.75 { ((4.0 * k - 6.0) / (k - 3.0)).max(4.0) } else { 12.0 });
    }
    start
}

struct Problem<'a> {
    model: ArchModel,
    transform: Transform,
    data: &'a ArchData,
}

impl Problem<'_> {
    /// Mean negative log-likelihood (scaled by 1/n so that tolerances do not depend on n).
    fn objective(&self, theta: &[f64]) -> f64 {
        let ll = self.model.loglik(&self.transform.params_of(theta), self.data) / self.data.nobs() as f64;
        if ll.is_finite() { -ll } else { 1e10 }
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> std::result::Result<f64, ArgminError> {
        Ok(self.objective(theta))
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> std::result::Result<Vec<f64>, ArgminError> {
        Ok((0..theta.len())
            .map(|i| {
                let h = 1e-6 * theta[i].abs().max(1.0);
                let mut up = theta.clone();
                let mut down = theta.clone();
                up[i] += h;
                down[i] -= h;
                (self.objective(&up) - self.objective(&down)) / (2.0 * h)
            })
            .collect())
    }
}

/// Sandwich covariance `H⁻¹ S H⁻¹ / n` in the original parameters, with `H` the Hessian of the
/// mean log-likelihood and `S` the covariance of the per-observation scores (numerical
/// derivatives, as `arch` computes them).
fn robust_std_err(model: &ArchModel, params: &[f64], data: &ArchData) -> Vec<Option<f64>> {
    let k = params.len();
    let n = data.nobs() as f64;
    let step = |x: f64| 1e-4 * x.abs().max(0.1);
    let mean_ll = |p: &[f64]| model.loglik(p, data) / n;
    let shifted = |moves: &[(usize, f64)]| {
        let mut p = params.to_vec();
        for &(i, d) in moves {
            p[i] += d;
        }
        p
    };
    let mut hessian = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in i..k {
            let (hi, hj) = (step(params[i]), step(params[j]));
            let f = |si: f64, sj: f64| mean_ll(&shifted(&[(i, si * hi), (j, sj * hj)]));
            let v = (f(1.0, 1.0) - f(1.0, -1.0) - f(-1.0, 1.0) + f(-1.0, -1.0)) / (4.0 * hi * hj);
            hessian[i][j] = v;
            hessian[j][i] = v;
        }
    }
    // Per-observation scores by central differences.
    let mut scores: Vec<Vec<f64>> = vec![Vec::new(); k];
    for (i, column) in scores.iter_mut().enumerate() {
        let h = 1e-6 * params[i].abs().max(0.1);
        let up = model.loglik_terms(&shifted(&[(i, h)]), data);
        let down = model.loglik_terms(&shifted(&[(i, -h)]), data);
        *column = up.iter().zip(&down).map(|(u, d)| (u - d) / (2.0 * h)).collect();
    }
    let means: Vec<f64> = scores.iter().map(|c| c.iter().sum::<f64>() / n).collect();
    let score_cov: Vec<Vec<f64>> = (0..k)
        .map(|a| {
            (0..k)
                .map(|b| {
                    scores[a].iter().zip(&scores[b]).map(|(x, y)| (x - means[a]) * (y - means[b])).sum::<f64>()
                        / (n - 1.0)
                })
                .collect()
        })
        .collect();
    let Some(inv) = invert(&hessian) else {
        return vec![None; k];
    };
    let cov = matmul(&matmul(&inv, &score_cov), &inv);
    (0..k)
        .map(|i| {
            let v = cov[i][i] / n;
            (v.is_finite() && v >= 0.0).then(|| v.sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_round_trips_admissible_parameters() {
        for (asymmetric, innovation, p) in [
            (false, Innovation::Normal, vec![0.05, 0.02, 0.1, 0.85]),
            (true, Innovation::StudentT, vec![0.01, 0.02, 0.03, 0.12, 0.88, 6.5]),
            (true, Innovation::Normal, vec![0.01, 0.5, 0.07, -0.01, 0.9]),
        ] {
            let t = Transform { model: ArchModel { volatility: Garch { asymmetric }, innovation } };
            let back = t.params_of(&t.theta_of(&p));
            for (a, b) in p.iter().zip(&back) {
                assert!((a - b).abs() < 1e-12, "{p:?} -> {back:?}");
            }
            assert!(t.model.is_admissible(&back));
        }
    }

    /// Percent returns with volatility clustering (a GARCH(1,1) path driven by a fixed LCG).
    fn garch_returns(n: usize) -> Vec<f64> {
        let mut state: u64 = 11;
        let mut normal = move || {
            let mut uniform = || {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        let (mut sigma2, mut last) = (1.0_f64, 0.0);
        (0..n)
            .map(|_| {
                sigma2 = 0.05 + 0.1 * last * last + 0.85 * sigma2;
                last = sigma2.sqrt() * normal();
                last
            })
            .collect()
    }

    /// An iteration cap of 0 is refused by name where it used to be raised to 1 without a word;
    /// a cap of 1 is accepted (and reported as not converged, as a capped fit is).
    #[test]
    fn a_zero_iteration_cap_is_rejected_naming_it() {
        let returns = garch_returns(500);
        let zero = GarchParams::new(false).max_iters(0);
        for result in [zero.check(), zero.fit(&returns).map(|_| ())] {
            assert_eq!(result.unwrap_err().to_string(), "fitting garch-normal: max_iters must be ≥ 1, got 0");
        }
        let capped = GarchParams::new(false).max_iters(1).fit(&returns).unwrap();
        assert!(!capped.converged());
        let full = GarchParams::new(false).fit(&returns).unwrap();
        assert!(full.converged() && full.loglik() >= capped.loglik(), "{} vs {}", full.loglik(), capped.loglik());
        // The refit checks the cap too.
        assert!(zero.refit(&returns, &full).unwrap_err().to_string().contains("max_iters must be ≥ 1, got 0"));
    }

    /// A refit refuses to start from another model's estimate (it used to fall back to the grid
    /// without a word), and starts from its own.
    #[test]
    fn a_refit_from_another_model_is_rejected_naming_both() {
        let returns = garch_returns(500);
        let garch = GarchParams::new(false).fit(&returns[..400]).unwrap();
        let gjr_t = GarchParams::new(true).innovation(Innovation::StudentT);
        let message = gjr_t.refit(&returns, &garch).unwrap_err().to_string();
        assert_eq!(message, "fitting gjr-t: the previous fit to start from must be of the same model, got garch-normal");
        let refit = GarchParams::new(false).refit(&returns, &garch).unwrap();
        assert_eq!(refit.nobs(), 500);
    }

    #[test]
    fn any_theta_maps_to_an_admissible_model() {
        let t = Transform {
            model: ArchModel { volatility: Garch { asymmetric: true }, innovation: Innovation::StudentT },
        };
        for th in [[0.0, -30.0, 40.0, -40.0, 40.0, -20.0], [1.0, 5.0, -3.0, 3.0, -30.0, 8.0]] {
            assert!(t.model.is_admissible(&t.params_of(&th)), "{th:?}");
        }
    }
}
