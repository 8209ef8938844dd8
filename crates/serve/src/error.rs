//! The library's one error type and its one mapping to gRPC status codes: handlers and the
//! engine return [`ServeError`], and only [`From<ServeError> for Status`] chooses a code.

use foresight_registry::RegistryError;
use tonic::{Code, Status};

use crate::journal::JournalError;

/// Why a request, a start-up or a reload failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A request field (or a setting) is invalid; the message names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field path, e.g. `markets[0].spot` or `split.arms[1].arm`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// What the request names is not here (an asset without market data, a model not served).
    #[error("{0}")]
    NotFound(String),
    /// The server is not set up for this call (no state folder).
    #[error("{0}")]
    Unsupported(&'static str),
    /// Too many calls at once.
    #[error("{0} calibrations are in flight, the most this server takes at once; retry with backoff")]
    Overloaded(usize),
    /// No or a wrong bearer token.
    #[error("authorization: {0}")]
    Unauthenticated(&'static str),
    /// The market journal or the audit log could not store what it was given.
    #[error("{what}: {source}")]
    Storage {
        /// `audit log`, `market state`.
        what: &'static str,
        /// Why.
        source: JournalError,
    },
    /// The registry, or a model in it, cannot be served.
    #[error("{context}: {source}")]
    Registry {
        /// What was being loaded.
        context: String,
        /// Why.
        source: RegistryError,
    },
    /// A reload that left the serving generation in place.
    #[error("reload refused: {0}")]
    ReloadRefused(Box<ServeError>),
    /// A file, socket or TLS identity the service needs at start-up.
    #[error("{what}: {message}")]
    Setup {
        /// The setting or file.
        what: String,
        /// Why.
        message: String,
    },
    /// Something failed inside the service.
    #[error("{0}")]
    Internal(String),
}

impl ServeError {
    /// An [`ServeError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    /// A [`ServeError::Setup`].
    pub fn setup(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Setup { what: what.into(), message: message.to_string() }
    }

    /// The same error with `prefix` before an invalid field's path (`positions[3]` + `.strike`).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::Invalid { field, message } => Self::Invalid { field: format!("{prefix}{field}"), message },
            other => other,
        }
    }
}

/// An [`ServeError::Invalid`].
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ServeError {
    ServeError::invalid(field, message)
}

impl ServeError {
    /// The gRPC code of this error: the one place a code is chosen.
    pub fn code(&self) -> Code {
        match self {
            Self::Invalid { .. } => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::Unsupported(_) | Self::Registry { .. } | Self::ReloadRefused(_) => Code::FailedPrecondition,
            Self::Overloaded(_) => Code::ResourceExhausted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Storage { .. } => Code::Unavailable,
            Self::Setup { .. } | Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ServeError> for Status {
    fn from(e: ServeError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<tokio::task::JoinError> for ServeError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(format!("a worker task failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_code_and_keeps_its_message() {
        let cases = [
            (invalid("positions[0].quantity", "must be finite"), Code::InvalidArgument),
            (ServeError::NotFound("asset: no market data".into()), Code::NotFound),
            (ServeError::Unsupported("no state folder"), Code::FailedPrecondition),
            (ServeError::Overloaded(64), Code::ResourceExhausted),
            (ServeError::Unauthenticated("the token is not accepted"), Code::Unauthenticated),
            (ServeError::Internal("x".into()), Code::Internal),
            (ServeError::ReloadRefused(Box::new(invalid("split", "empty"))), Code::FailedPrecondition),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!((status.code(), status.message()), (code, message.as_str()));
        }
        assert_eq!(invalid(".strike", "> 0").within("positions[3]").to_string(), "positions[3].strike: > 0");
    }
}
