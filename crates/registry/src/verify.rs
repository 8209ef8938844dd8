//! Checks that a registered model is the one its card describes: the file's sha256 and the
//! golden rows re-run through ONNX Runtime.

use sha2::{Digest, Sha256};

use crate::card::{GOLDEN_TOLERANCE, ModelCard};
use crate::error::{RegistryError, Result};
use crate::runtime::LoadedModel;

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The sha256 that matched.
    pub sha256: String,
    /// Golden rows re-run.
    pub golden_rows: usize,
    /// Largest relative difference between ONNX Runtime and the card over all golden values.
    pub max_relative_error: f64,
}

/// Relative difference with an absolute floor for values at zero.
fn relative_error(actual: f64, expected: f64) -> f64 {
    (actual - expected).abs() / expected.abs().max(1e-300)
}

/// Checks `onnx_bytes` against `card`: sha256 first, then every golden row through ONNX Runtime
/// within [`GOLDEN_TOLERANCE`]. Returns the loaded model so a caller can keep serving it.
pub fn verify(card: &ModelCard, onnx_bytes: &[u8]) -> Result<(LoadedModel, Verified)> {
    let model = card.reference().to_string();
    let sha256 = sha256_hex(onnx_bytes);
    if sha256 != card.onnx.sha256 {
        return Err(RegistryError::HashMismatch { model, expected: card.onnx.sha256.clone(), actual: sha256 });
    }
    if card.golden.is_empty() {
        return Err(RegistryError::Refused(format!("{model}: its card has no golden rows, so it cannot be checked")));
    }
    let mut loaded = LoadedModel::from_bytes(onnx_bytes, &card.onnx)?;
    let width = loaded.row_width();
    if let Some((row, g)) = card.golden.iter().enumerate().find(|(_, g)| g.input.len() != width) {
        return Err(RegistryError::Format {
            file: "card.json".into(),
            message: format!("{model}: golden row {row} has {} inputs, the model takes {width}", g.input.len()),
        });
    }
    let rows: Vec<f64> = card.golden.iter().flat_map(|g| g.input.iter().copied()).collect();
    let outputs = loaded.run(&rows)?;
    let mut max_relative_error = 0.0f64;
    for (row, golden) in card.golden.iter().enumerate() {
        for (output, &expected) in &golden.outputs {
            let actual = outputs.get(output).map(|v| v[row]).ok_or_else(|| RegistryError::Format {
                file: "card.json".into(),
                message: format!("{model}: golden row {row} expects output `{output}`, which the signature does not list"),
            })?;
            let error = relative_error(actual, expected);
            if error.is_nan() || error > GOLDEN_TOLERANCE {
                return Err(RegistryError::GoldenMismatch { model, row, output: output.clone(), expected, actual, tolerance: GOLDEN_TOLERANCE });
            }
            max_relative_error = max_relative_error.max(error);
        }
    }
    Ok((loaded, Verified { sha256, golden_rows: card.golden.len(), max_relative_error }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_string() {
        // FIPS 180-2 appendix B.1 test vector.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
