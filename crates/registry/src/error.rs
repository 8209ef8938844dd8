//! Registry errors: each names the file, model or field at fault.

use std::path::PathBuf;

/// Result with a [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// What can go wrong reading, checking or changing the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file could not be read or written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file or folder.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file does not parse or lacks a field.
    #[error("{}: {message}", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong, with the field.
        message: String,
    },
    /// The object store (or folder) holding the registry failed.
    #[error("{object}: {message}")]
    Store {
        /// The object or registry, as a path or URL.
        object: String,
        /// What the store answered.
        message: String,
    },
    /// Another writer changed `registry.json` between this writer's read and its write, again
    /// and again.
    #[error("{0}")]
    Conflict(String),
    /// A model reference names nothing in the registry or is malformed.
    #[error("{0}")]
    NotFound(String),
    /// A reference or argument is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The ONNX file does not hash to the card's sha256.
    #[error("{model}: model.onnx has sha256 {actual}, its card says {expected}: the file changed after it was registered")]
    HashMismatch {
        /// The model.
        model: String,
        /// From the card.
        expected: String,
        /// Of the file on disk.
        actual: String,
    },
    /// A golden row's ONNX Runtime output differs from the card's expected value.
    #[error("{model}: golden row {row}, output `{output}`: ONNX Runtime gives {actual}, the card expects {expected} (relative tolerance {tolerance:e})")]
    GoldenMismatch {
        /// The model.
        model: String,
        /// Index of the golden row.
        row: usize,
        /// Output name.
        output: String,
        /// From the card.
        expected: f64,
        /// From ONNX Runtime.
        actual: f64,
        /// Relative tolerance.
        tolerance: f64,
    },
    /// ONNX Runtime is missing or failed.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// Promotion or rollback refused by a rule.
    #[error("{0}")]
    Refused(String),
}

impl RegistryError {
    pub(crate) fn io(file: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let file = file.into();
        move |source| RegistryError::Io { file, source }
    }
}
