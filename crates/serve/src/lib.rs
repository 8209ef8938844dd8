//! # foresight-serve
//!
//! The gRPC calibration service: a thin tonic layer ([`service`]) over the [`engine`], which
//! runs the registry's champions with ONNX Runtime and turns forecasts and positions into
//! forward-looking margin with `foresight-core::margin`. Links ONNX Runtime, never libtorch.
#![deny(missing_docs)]

pub mod engine;
pub mod service;

/// The `foresight.v1` API generated from `proto/foresight/v1/calibration.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("foresight.v1");
}

pub use engine::{Engine, EngineConfig, EngineError};
pub use service::CalibrationApi;
