//! Every exported model type agrees with its trained form when ONNX Runtime (`ort`, loaded from
//! the bootstrap's `libonnxruntime.so.1.31.1`) runs the `.onnx` file, on hold-out rows.

use std::path::Path;
use std::sync::OnceLock;

use foresight_core::features::{har_components, percent_log_returns};
use foresight_core::volatility::{ArchData, Innovation};
use foresight_train::data::load_ohlcv;
use foresight_train::evaluate::DailyHistory;
use foresight_train::fit::{GarchParams, HarParams};
use foresight_train::onnx::{OnnxModel, export_garch, export_har};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

const REL: f64 = 1e-5;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)
}

/// Runs `model` on `rows` (each `input_columns` wide); returns each output's values.
fn run_ort(model: &OnnxModel, rows: &[Vec<f64>]) -> Vec<(String, Vec<f64>)> {
    run_ort_shaped(model, rows, &[model.input_columns.len()])
}

/// Runs `model` on `rows`, each the flattened `shape` of one batch element.
fn run_ort_shaped(model: &OnnxModel, rows: &[Vec<f64>], shape: &[usize]) -> Vec<(String, Vec<f64>)> {
    // ORT_DYLIB_PATH comes from .cargo/config.toml (the bootstrap's venv).
    static ENV: OnceLock<Environment> = OnceLock::new();
    let env = ENV.get_or_init(|| ort::init().build().expect("ONNX Runtime loads (run ./scripts/bootstrap.sh)"));
    let mut session = Session::builder(env).unwrap().commit_from_memory(&model.to_bytes()).unwrap();
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let dims: Vec<usize> = std::iter::once(rows.len()).chain(shape.iter().copied()).collect();
    let input = TensorRef::from_array_view((dims, flat.as_slice())).unwrap();
    let outputs = session.run(ort::inputs![model.input.as_str() => input]).unwrap();
    model
        .outputs
        .iter()
        .map(|name| {
            let (_, values) = outputs[name.as_str()].try_extract_tensor::<f64>().unwrap();
            (name.clone(), values.to_vec())
        })
        .collect()
}

#[track_caller]
fn assert_rel(what: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= REL * want.abs(), "{what}: onnx {got} vs native {want}");
}

#[test]
fn har_models_round_trip_through_onnx() {
    let history = DailyHistory::from_bars(&load_ohlcv(&data("btc_usdt_2h.csv")).unwrap()).unwrap();
    let train_end = 2000;
    let components = har_components(&history.rv);
    let holdout: Vec<_> = (train_end + 1..history.rv.len()).filter_map(|t| components[t]).collect();
    assert!(holdout.len() > 800);
    for log in [true, false] {
        let fits: Vec<_> = [1, 5, 22]
            .iter()
            .map(|&h| if log { HarParams::log(h) } else { HarParams::levels(h) }.fit(&history.rv, train_end).unwrap())
            .collect();
        let model = export_har(&fits, &[("foresight.training_end".into(), history.dates[train_end].to_string())]).unwrap();
        assert_eq!(model.metadata("foresight.model_type"), Some(if log { "log-har" } else { "har" }));
        assert_eq!(model.metadata("foresight.horizons"), Some("1,5,22"));
        let rows: Vec<Vec<f64>> = holdout.iter().map(|c| vec![c.daily, c.weekly, c.monthly]).collect();
        let out = run_ort(&model, &rows);
        for (k, fit) in fits.iter().enumerate() {
            let (name, variances) = &out[k];
            assert_eq!(name, &format!("variance_h{}", fit.horizon()));
            let (_, sigmas) = &out[k + fits.len()];
            for (i, c) in holdout.iter().enumerate() {
                let want = fit.predict(c).unwrap();
                assert_rel(&format!("{name} row {i}"), variances[i], want);
                assert_rel(&format!("sigma row {i}"), sigmas[i], want.sqrt());
            }
        }
    }
}

#[test]
fn garch_models_round_trip_through_onnx() {
    let closes = load_ohlcv(&data("btc_usdt_1d.csv")).unwrap();
    let closes: Vec<f64> = closes.bars.iter().map(|b| b.close).collect();
    let pct = percent_log_returns(&closes).unwrap();
    let train = 2000;
    let horizons = [1, 5, 22];
    for (asymmetric, innovation) in [(false, Innovation::Normal), (true, Innovation::StudentT)] {
        let fit = GarchParams::new(asymmetric).innovation(innovation).fit(&pct[..train]).unwrap();
        let model = export_garch(&fit, &horizons, &[]).unwrap();
        // Hold-out states: the filtered variance of every day after the training window.
        let all = ArchData::new(&pct).unwrap();
        let sigma2 = fit.model().conditional_variance(fit.params(), &all);
        let rows: Vec<Vec<f64>> = (train..pct.len()).map(|t| vec![pct[t], sigma2[t]]).collect();
        let out = run_ort(&model, &rows);
        let (mu, vol, _) = fit.model().split(fit.params());
        for (i, row) in rows.iter().enumerate() {
            let path = fit.model().volatility.forecast(vol, row[0] - mu, row[1], 22);
            for (k, h) in horizons.iter().enumerate() {
                let want = path[..*h].iter().sum::<f64>() / *h as f64 / 1e4;
                assert_rel(&format!("{} h={h} row {i}", model.metadata("foresight.model_type").unwrap()), out[k].1[i], want);
            }
        }
        // The last hold-out row's forecast equals the fitted model's own forecast from all data.
        let last = fit.model().forecast_variance(fit.params(), &all, 5);
        assert_rel("last row h=5", out[1].1[rows.len() - 1], last.iter().sum::<f64>() / 5.0 / 1e4);
    }
}

#[test]
fn regime_model_round_trips_through_onnx_and_beats_climatology_out_of_sample() {
    use foresight_core::features::regime_features;
    use foresight_core::forecast::brier;
    use foresight_core::regime::stressed_within;
    use foresight_train::fit::RegimeParams;
    use foresight_train::onnx::export_regime;

    let history = DailyHistory::from_bars(&load_ohlcv(&data("btc_usdt_2h.csv")).unwrap()).unwrap();
    let features = regime_features(&history.rv, &history.returns);
    let train_end = history.dates.iter().position(|d| d.to_string() == "2021-12-31").unwrap();
    let fit = RegimeParams::new(3, &[1, 5]).fit(&features, train_end).unwrap();
    // Regimes are ranked calm → stressed by their typical volatility.
    let summary = fit.summary();
    assert!(summary.windows(2).all(|w| w[0].typical_daily_vol_pct < w[1].typical_daily_vol_pct), "{summary:?}");

    let model = export_regime(&fit, &[]).unwrap();
    assert_eq!(model.outputs, vec!["p_high_regime_h1", "p_high_regime_h5"]);
    let origins: Vec<usize> = (train_end..features.len()).filter(|&t| features[t].is_some()).collect();
    let rows: Vec<Vec<f64>> = origins.iter().map(|&t| features[t].unwrap().to_vec()).collect();
    let out = run_ort(&model, &rows);
    for (i, &t) in origins.iter().enumerate() {
        let native = fit.predict(&features[t].unwrap());
        for k in 0..2 {
            assert_rel(&format!("p h{} row {i}", [1, 5][k]), out[k].1[i], native[k]);
        }
    }
    // Out of sample (2022-2025), the 5-day probability beats always saying the training frequency.
    let labels = fit.classify(&features);
    let (p, y): (Vec<f64>, Vec<bool>) =
        origins.iter().filter_map(|&t| stressed_within(&labels, t, 5, 3).map(|y| (fit.predict(&features[t].unwrap())[1], y))).unzip();
    let model_brier = brier(&p, &y).unwrap();
    let climatology = brier(&vec![fit.base_rates()[1]; p.len()], &y).unwrap();
    assert!(model_brier < 0.9 * climatology, "Brier {model_brier} vs climatology {climatology}");
}

#[test]
fn neural_forecaster_is_deterministic_and_round_trips_through_onnx() {
    use foresight_core::features::regime_features;
    use foresight_core::features::feature_window;
    use foresight_train::fit::{NeuralParams, RegimeParams};
    use foresight_train::onnx::export_neural;

    let history = DailyHistory::from_bars(&load_ohlcv(&data("spx_1d.csv")).unwrap()).unwrap();
    let features = regime_features(&history.rv, &history.returns);
    let train_end = history.dates.iter().rposition(|d| d.to_string().as_str() <= "2010-12-31").unwrap();
    let regimes = RegimeParams::new(3, &[1, 5]).fit(&features, train_end).unwrap();
    let labels = regimes.classify(&features);
    let fit = |seed| {
        let mut epochs = Vec::new();
        let f = NeuralParams::new(&[1, 5])
            .max_epochs(60)
            .seed(seed)
            .fit(&features, &history.rv, &labels, 3, train_end, &mut |e| epochs.push(e.validation_loss))
            .unwrap();
        (f, epochs)
    };
    let (a, epochs) = fit(7);
    assert!(!epochs.is_empty() && epochs.len() <= 60);
    let (b, _) = fit(7);
    assert_eq!(a, b, "same seed, same weights");
    assert_ne!(a, fit(8).0, "the seed matters");

    let model = export_neural(&a, &[]).unwrap();
    assert_eq!(model.input_shape, vec![-1, 10, 5]);
    assert_eq!(model.outputs, vec!["variance_h1", "variance_h5", "sigma_h1", "sigma_h5", "p_high_regime_h1", "p_high_regime_h5"]);
    let rows: Vec<Vec<f64>> = (train_end..features.len()).filter_map(|t| feature_window(&features, t, 10)).collect();
    assert!(rows.len() > 1900);
    // run_ort feeds [batch, width]; reshape to the model's [batch, 10, 5] through a wrapper.
    let out = run_ort_shaped(&model, &rows, &[10, 5]);
    for (i, row) in rows.iter().enumerate() {
        let native = a.predict(row);
        for k in 0..2 {
            assert_rel(&format!("variance h{} row {i}", [1, 5][k]), out[k].1[i], native.variance[k]);
            assert_rel(&format!("sigma row {i}"), out[2 + k].1[i], native.variance[k].sqrt());
            assert_rel(&format!("p row {i}"), out[4 + k].1[i], native.p_high_regime[k]);
        }
    }
}

#[test]
fn har_x_round_trips_and_falls_back_to_log_har_where_the_input_is_missing() {
    use foresight_train::data::{ExogenousSpec, load_exogenous};
    use foresight_train::fit::HarXParams;
    use foresight_train::onnx::export_har_x;

    let history = DailyHistory::from_bars(&load_ohlcv(&data("btc_usdt_2h.csv")).unwrap()).unwrap();
    let dvol = ExogenousSpec::parse(&format!("{}:iv", data("btc_dvol_1d.csv").display()), 365.0).unwrap();
    let x = load_exogenous(&dvol, &history.dates).unwrap();
    let train_end = history.dates.iter().position(|d| d.to_string() == "2024-06-30").unwrap();
    let fits: Vec<_> = [1, 5].iter().map(|&h| HarXParams::new(h).fit(&history.rv, &x, train_end, 250).unwrap()).collect();
    let fallback: Vec<_> = [1, 5].iter().map(|&h| HarParams::log(h).fit(&history.rv, train_end).unwrap()).collect();
    let model = export_har_x(&fits, &fallback, &[]).unwrap();
    let components = har_components(&history.rv);
    // Hold-out days, every third one with the input removed.
    let mut rows = Vec::new();
    let mut want = Vec::new();
    for (i, t) in (train_end + 1..history.dates.len()).enumerate() {
        let Some(c) = components[t] else { continue };
        let xt = if i % 3 == 0 { None } else { x[t] };
        rows.push(vec![c.daily, c.weekly, c.monthly, xt.unwrap_or(f64::NAN)]);
        want.push(fits.iter().zip(&fallback).map(|(fx, f)| fx.predict(&c, xt).unwrap_or_else(|| f.predict(&c).unwrap())).collect::<Vec<_>>());
        if xt.is_none() {
            assert_eq!(want.last().unwrap()[1], fallback[1].predict(&c).unwrap(), "a missing input means log-HAR");
        }
    }
    assert!(rows.len() > 400 && rows.iter().filter(|r| r[3].is_nan()).count() > 100);
    let out = run_ort(&model, &rows);
    for (i, w) in want.iter().enumerate() {
        for k in 0..2 {
            assert_rel(&format!("har-x h{} row {i} (input {})", [1, 5][k], rows[i][3]), out[k].1[i], w[k]);
        }
    }
}
