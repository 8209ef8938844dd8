//! The likelihood, recursion and forecasts agree with Python's `arch` 8.0.0 evaluated at its own
//! estimates (fixture written by `training/reference/garch_reference.py`), on the bundled S&P 500
//! and BTC daily history.

use std::path::Path;

use foresight_core::features::percent_log_returns;
use foresight_core::volatility::{ArchData, ArchModel, Garch, Innovation};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Percent log returns of the `close` column of a bundled CSV (plain parsing: core has no I/O
/// crate, and these files are known-good).
fn percent_returns(rel: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(root().join(rel)).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let k = header.iter().position(|h| *h == "close").unwrap();
    let closes: Vec<f64> = lines.map(|l| l.split(',').nth(k).unwrap().parse().unwrap()).collect();
    percent_log_returns(&closes).unwrap()
}

#[track_caller]
fn close(what: &str, a: f64, b: f64, rel: f64) {
    assert!((a - b).abs() <= rel * b.abs().max(1e-300), "{what}: {a} vs {b}");
}

#[test]
fn likelihood_at_arch_estimates_equals_arch() {
    let text = std::fs::read_to_string(root().join("tests/data/garch_arch_reference.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fits = fixture["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 8);
    for fit in fits {
        let model = ArchModel {
            volatility: Garch { asymmetric: fit["model"] == "gjr" },
            innovation: if fit["dist"] == "t" { Innovation::StudentT } else { Innovation::Normal },
        };
        let label = format!("{} {} {}", fit["series"], fit["model"], fit["dist"]);
        let data = ArchData::new(&percent_returns(fit["data"].as_str().unwrap())).unwrap();
        assert_eq!(data.nobs() as u64, fit["nobs"].as_u64().unwrap(), "{label}");
        close(&format!("{label} backcast"), data.backcast, fit["backcast"].as_f64().unwrap(), 1e-12);
        let params: Vec<f64> =
            model.param_names().iter().map(|n| fit["params"][*n].as_f64().unwrap()).collect();
        let ll = model.loglik(&params, &data);
        close(&format!("{label} loglik"), ll, fit["loglik"].as_f64().unwrap(), 1e-10);
        close(&format!("{label} aic"), model.aic(ll), fit["aic"].as_f64().unwrap(), 1e-10);
        close(&format!("{label} bic"), model.bic(ll, data.nobs()), fit["bic"].as_f64().unwrap(), 1e-10);
        let sigma2 = model.conditional_variance(&params, &data);
        close(&format!("{label} last σ²"), sigma2[sigma2.len() - 1], fit["last_sigma2"].as_f64().unwrap(), 1e-9);
        let want: Vec<f64> =
            fit["variance_forecast"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got = model.forecast_variance(&params, &data, want.len());
        for (h, (g, w)) in got.iter().zip(&want).enumerate() {
            close(&format!("{label} forecast h={}", h + 1), *g, *w, 1e-9);
        }
    }
}
