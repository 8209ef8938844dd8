//! GARCH and GJR-GARCH fits agree with Python's `arch` 8.0.0 (fixture written by
//! `training/reference/garch_reference.py`) on the bundled S&P 500 and BTC daily history.

use std::path::Path;

use foresight_core::features::percent_log_returns;
use foresight_core::volatility::Innovation;
use foresight_train::data::load_daily_closes;
use foresight_train::fit::GarchParams;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn fits_match_arch_parameters_likelihood_and_standard_errors() {
    let text = std::fs::read_to_string(root().join("tests/data/garch_arch_reference.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    for reference in fixture["fits"].as_array().unwrap() {
        let label = format!("{} {} {}", reference["series"], reference["model"], reference["dist"]);
        let closes = load_daily_closes(&root().join(reference["data"].as_str().unwrap())).unwrap();
        let returns = percent_log_returns(&closes.values).unwrap();
        let innovation = if reference["dist"] == "t" { Innovation::StudentT } else { Innovation::Normal };
        let fit = GarchParams::new(reference["model"] == "gjr").innovation(innovation).fit(&returns).unwrap();
        let want_ll = reference["loglik"].as_f64().unwrap();
        // Log-likelihood to 1e-4 relative, or higher (a better maximum inside the constraints).
        assert!(
            fit.loglik() >= want_ll - 1e-4 * want_ll.abs(),
            "{label}: loglik {} vs arch {want_ll}",
            fit.loglik()
        );
        let better = fit.loglik() > want_ll + 1e-6 * want_ll.abs();
        let json = fit.to_json();
        for (name, want) in reference["params"].as_object().unwrap() {
            let want = want.as_f64().unwrap();
            let got = fit.param(name).unwrap();
            // 1e-3 relative; a parameter at zero (arch's bound) is compared absolutely.
            let ok = (got - want).abs() <= 1e-3 * want.abs().max(1e-2);
            assert!(ok || better, "{label} {name}: {got} vs arch {want}");
            let se = json["std_err"][name].as_f64();
            let want_se = reference["std_err"][name].as_f64().unwrap();
            if want.abs() > 1e-4 && !fit.at_boundary() {
                let se = se.unwrap_or(f64::NAN);
                assert!((se - want_se).abs() <= 0.05 * want_se, "{label} std_err {name}: {se} vs arch {want_se}");
            }
        }
        let persistence = reference["params"]["alpha"].as_f64().unwrap()
            + 0.5 * reference["params"]["gamma"].as_f64().unwrap_or(0.0)
            + reference["params"]["beta"].as_f64().unwrap();
        assert_eq!(fit.at_boundary(), persistence > 1.0 - 1e-5, "{label}: at_boundary");
        assert_eq!(json["nobs"], reference["nobs"]);
    }
}
