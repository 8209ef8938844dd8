//! The error type of `foresight-train`.

use std::path::PathBuf;

/// What can go wrong while loading data or writing reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable CSV or Parquet table.
    #[error("{}: cannot read as {format}: {message}", file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// `CSV` or `Parquet`.
        format: &'static str,
        /// The reader's message.
        message: String,
    },
    /// Required columns are absent.
    #[error("{}: missing column(s) {}; found {}", file.display(), missing.join(", "), found.join(", "))]
    MissingColumns {
        /// The file.
        file: PathBuf,
        /// Required columns not found.
        missing: Vec<String>,
        /// Columns the file has.
        found: Vec<String>,
    },
    /// A value breaks a validation rule.
    #[error("{}: {}, column `{column}`: {message}", file.display(), where_(*row, *line))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based data row (header excluded).
        row: usize,
        /// 1-based line in a CSV file (header included), when the file is a CSV.
        line: Option<usize>,
        /// The column.
        column: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The file has no data rows.
    #[error("{}: no data rows", file.display())]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// A computation on valid data failed (e.g. too little history for a backtest).
    #[error(transparent)]
    Core(#[from] foresight_core::CoreError),
    /// A model could not be fitted.
    #[error("fitting {model}: {message}")]
    Fit {
        /// The model.
        model: String,
        /// What went wrong.
        message: String,
    },
    /// The model registry refused or failed (hash, golden rows, I/O, ONNX Runtime).
    #[error(transparent)]
    Registry(#[from] foresight_registry::RegistryError),
    /// A training recipe is invalid.
    #[error("{}: {message}", file.display())]
    Recipe {
        /// The recipe file.
        file: PathBuf,
        /// What is wrong, with the key.
        message: String,
    },
    /// A report could not be drawn.
    #[error("{}: cannot draw chart: {message}", file.display())]
    Chart {
        /// The image file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn where_(row: usize, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("row {row} (line {line})"),
        None => format!("row {row}"),
    }
}

/// Result alias of `foresight-train`.
pub type Result<T> = std::result::Result<T, DataError>;
