//! # foresight-serve
//!
//! The gRPC calibration service. Layout, from the wire inwards:
//! - [`server`]: transport, TLS, bearer auth, health and reflection around
//! - [`service`]: thin tonic services (calibration, market data, models) and [`inference`]
//!   (the Open Inference Protocol over the raw forecasters), which turn messages into domain
//!   types and back through [`convert`] and errors into gRPC codes through [`error`], over
//! - [`serving`]: the shared state: the current [`engine`] generation (hot-swapped), the
//!   forecast cache, the [`market`] state and the [`audit`] log, both on a [`journal`] (one
//!   machine) or the market state on a [`nats`] JetStream stream (replicas), restored from
//!   its last [`snapshot`];
//! - [`engine`]: the registry's models through ONNX Runtime, arms and their A/B split, and
//!   `foresight-core::margin` for the account, over a [`series`] of completed days.
//!
//! Modules import each other without a cycle, and protobuf types stay out of the engine, the
//! market state, the series and the journal (checked by `tests/serve_shape.rs`).
//!
//! Links ONNX Runtime, never libtorch.
#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod convert;
pub mod engine;
pub mod error;
pub mod inference;
pub mod journal;
pub mod market;
pub mod metrics;
pub mod nats;
pub mod series;
pub mod snapshot;
pub mod server;
pub mod service;
pub mod serving;

/// The `foresight.v1` API generated from `proto/foresight/v1/`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("foresight.v1");

    /// The file descriptor set of every API served (Foresight's and the inference protocol's),
    /// for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("foresight_descriptor");
}

/// The Open Inference Protocol v2 (`inference` package) generated from `proto/inference/`.
#[allow(missing_docs, clippy::all)]
pub mod oip {
    tonic::include_proto!("inference");
}

pub use engine::{Engine, EngineConfig, Split};
pub use error::ServeError;
pub use inference::InferenceApi;
pub use service::{CalibrationApi, MarketDataApi, ModelApi};
pub use serving::{Serving, ServingConfig};
