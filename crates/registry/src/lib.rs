//! # foresight-registry
//!
//! Foresight's model registry, without MLflow: a folder (the checkout's `models/`) or an
//! S3-compatible bucket that training writes and the service reads. No libtorch and no polars, so both sides can depend on it
//! (it builds on the pure `foresight-core`).
//!
//! - [`card`]: the model card (`card.json`): signature, windows, data hashes, metrics, golden rows;
//! - [`store`]: `models/<name>/v<n>/`, champion/challenger pointers per `<asset>/<task>` slot in
//!   `registry.json`, promotion, rollback, diff, shared artifacts;
//! - [`promotion`]: the evidence a promotion rests on (both models on the same days, forecasts
//!   and margin) and the rule that judges it;
//! - [`inputs`]: the input rows a registered model takes, built from a daily history with the
//!   feature code of `foresight-core`, and one run of a model over every day of a history;
//! - [`exogenous`]: a HAR-X model's exogenous input as its card records it;
//! - [`verify`]: sha256 of the ONNX file and its golden rows re-run through ONNX Runtime;
//! - [`runtime`]: find and load ONNX Runtime (`ort`, load-dynamic) and run a model on `f64` rows;
//! - [`storage`]: where the registry is kept (a folder, or an S3-compatible store) and its
//!   conditional writes;
//! - [`atomic`]: temp-file + fsync + rename (or hard-link, for a file never overwritten) writes,
//!   so a crash never leaves a half-written registry folder.
#![deny(missing_docs)]

pub mod atomic;
pub mod card;
pub mod error;
pub mod exogenous;
pub mod inputs;
pub mod promotion;
pub mod runtime;
pub mod storage;
pub mod store;
pub mod verify;

pub use card::{GoldenRow, HorizonMetrics, ModelCard, ModelRef, Task};
pub use error::{RegistryError, Result};
pub use store::Registry;
