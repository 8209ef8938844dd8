//! Hyper-parameters outside their domain are refused with an error naming the value: by the
//! fitters' public API, and in a training recipe with the recipe file and the key.

use foresight_train::error::DataError;
use foresight_train::fit::{GarchParams, HarParams, HarXParams, NeuralParams, RegimeParams};
use foresight_train::recipe::Recipe;

#[test]
fn fitters_name_the_bad_value() {
    let cases = [
        (HarParams::log(0).check(), "fitting log-har(h=0): horizon must be ≥ 1 day, got 0"),
        (HarParams::levels(0).check(), "fitting har(h=0): horizon must be ≥ 1 day, got 0"),
        (HarXParams::new(0).check(), "fitting har-x(h=0): horizon must be ≥ 1 day, got 0"),
        (GarchParams::new(true).max_iters(0).check(), "fitting gjr-normal: max_iters must be ≥ 1, got 0"),
        (NeuralParams::new(&[1, 5]).window(0).check(), "fitting neural: window must be ≥ 1 day, got 0"),
        (NeuralParams::new(&[1, 5]).max_epochs(0).check(), "fitting neural: max_epochs must be ≥ 1, got 0"),
        (NeuralParams::new(&[0]).check(), "fitting neural: horizons must be ≥ 1 day each, got [0]"),
        (RegimeParams::new(5, &[1]).check(), "fitting regime: states must be 2 or 3, got 5"),
        (RegimeParams::new(3, &[1]).l2(-0.5).check(), "fitting regime: l2 must be finite and ≥ 0, got -0.5"),
    ];
    for (result, want) in cases {
        let err = result.unwrap_err();
        assert!(matches!(err, DataError::Fit { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
    for result in [
        HarParams::log(1).check(),
        HarXParams::new(22).check(),
        GarchParams::new(false).max_iters(1).check(),
        NeuralParams::new(&[1, 5, 22]).window(1).max_epochs(1).seed(-7).check(),
        RegimeParams::new(2, &[1]).l2(0.0).check(),
    ] {
        result.unwrap();
    }
}

/// A recipe with `extra` keys appended; the data file is not read by the checks.
fn recipe_text(horizons: &str, extra: &str) -> String {
    format!(
        "asset = \"BTC\"\nname = \"t\"\ndata = \"data/btc_usdt_1d.csv\"\nmodels = [\"log-har\", \"regime\", \"neural\"]\n\
         horizons = {horizons}\nprimary_horizon = 5\ntrain_end = \"2021-12-31\"\n{extra}"
    )
}

#[test]
fn recipes_name_the_file_the_key_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipe.toml");
    let cases = [
        ("[1, 5]", "neural_window = 0\n", "neural_window: must be ≥ 1 day, got 0"),
        ("[1, 5]", "neural_max_epochs = 0\n", "neural_max_epochs: must be ≥ 1, got 0"),
        ("[1, 5]", "regime_states = 4\n", "regime_states: must be 2 or 3, got 4"),
        ("[0, 5]", "", "horizons: give days ≥ 1, got [0, 5]"),
        ("[5, 1, 5]", "", "horizons: 5 is listed twice in [5, 1, 5]"),
        ("[1, 5]", "refit_every = 0\n", "refit_every: must be ≥ 1, got 0"),
    ];
    for (horizons, extra, want) in cases {
        std::fs::write(&path, recipe_text(horizons, extra)).unwrap();
        match Recipe::from_file(&path) {
            Err(DataError::Recipe { file, message }) => {
                assert_eq!(file, path);
                assert!(message.starts_with(want), "{message}");
            }
            other => panic!("{extra}{horizons}: {other:?}"),
        }
    }
    // A negative count is not a `usize`: TOML's reader refuses it, naming the key.
    std::fs::write(&path, recipe_text("[1, 5]", "neural_window = -3\n")).unwrap();
    let err = Recipe::from_file(&path).unwrap_err();
    assert!(matches!(&err, DataError::Recipe { .. }) && err.to_string().contains("neural_window"), "{err}");
    // Edge values that are valid still pass.
    std::fs::write(&path, recipe_text("[5]", "neural_window = 1\nneural_max_epochs = 1\nregime_states = 2\nrefit_every = 1\nseed = -1\n")).unwrap();
    Recipe::from_file(&path).unwrap();
}

/// The bundled training recipes still pass the stricter checks.
#[test]
fn bundled_recipes_pass() {
    let training = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../training"));
    let mut checked = 0;
    for entry in std::fs::read_dir(training).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // `frontier_*` and `reactive_*` files are other kinds of configuration.
        if name.ends_with(".toml") && !name.starts_with("frontier_") && !name.starts_with("reactive_") {
            Recipe::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} recipes found");
}
