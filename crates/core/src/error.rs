//! The one error type of `foresight-core`.

/// Everything that can go wrong in the pure risk math: always a bad input or parameter, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// An arm string that does not follow the arm grammar (see [`crate::calibrate::Arm`]).
    #[error("invalid arm `{spec}`: {reason}")]
    InvalidArm {
        /// The text given.
        spec: String,
        /// What is wrong with it, and what would be right.
        reason: String,
    },
    /// A numeric parameter outside its domain.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name, as a user would write it.
        name: &'static str,
        /// The value given.
        value: f64,
        /// The domain it must lie in.
        reason: &'static str,
    },
    /// An input series value that cannot be used (e.g. a non-positive price).
    #[error("invalid input: {field} at index {index} is {value}: {reason}")]
    InvalidInput {
        /// The series the value belongs to.
        field: &'static str,
        /// Zero-based position in the series.
        index: usize,
        /// The offending value.
        value: f64,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// Not enough observations for what was asked.
    #[error("not enough history: {what} needs {needed} observations, the series has {available}")]
    InsufficientHistory {
        /// What needed them.
        what: String,
        /// How many were needed.
        needed: usize,
        /// How many there were.
        available: usize,
    },
}

/// Result alias of `foresight-core`.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Checks that every value of a price series is finite and strictly positive (returns are
/// logarithmic, so a zero or negative price has no return).
pub(crate) fn check_prices(field: &'static str, prices: &[f64]) -> Result<()> {
    for (index, &value) in prices.iter().enumerate() {
        if !value.is_finite() || value <= 0.0 {
            return Err(CoreError::InvalidInput {
                field,
                index,
                value,
                reason: "prices must be finite and > 0 because returns are logarithmic",
            });
        }
    }
    Ok(())
}
