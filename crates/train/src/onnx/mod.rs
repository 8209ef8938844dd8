//! ONNX export: every forecaster becomes a standalone `.onnx` file (opset 17, double precision)
//! whose inputs are its features or state and whose outputs are named forecasts
//! (`variance_h5`, `sigma_h5`, ...), so the service runs it with ONNX Runtime and no training
//! stack. Graphs are written with prost types generated from `proto/onnx/onnx_subset.proto`.

mod builder;
mod export;

/// Protobuf types of the ONNX format (the subset Foresight writes).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use builder::GraphBuilder;
pub use export::{OnnxModel, export_garch, export_har, export_har_x, export_neural, export_regime};

/// ONNX operator set the exporter targets.
pub const OPSET: i64 = 17;
/// ONNX IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;
