//! The Open Inference Protocol v2 (`inference.GRPCInferenceService`) over the served models, so
//! KServe- and Triton-style clients can call the raw forecasters: a model is named by its
//! registry name, its version is the registry version (`"1"` for `btc-log-har@v1`), its one
//! input is an FP64 tensor `[rows, …]` of model inputs (the card's columns) and each output an
//! FP64 tensor `[rows]`. Margin needs the calibration API; this one is for the models alone.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::engine::{Engine, Served};
use crate::oip::grpc_inference_service_server::GrpcInferenceService;
use crate::oip::{self, model_infer_response::InferOutputTensor, model_metadata_response::TensorMetadata};
use crate::serving::Serving;

/// The inference service.
#[derive(Clone)]
pub struct InferenceApi {
    serving: Arc<Serving>,
}

impl InferenceApi {
    /// Serves `serving`'s models.
    pub fn new(serving: Arc<Serving>) -> Self {
        Self { serving }
    }
}

/// The served model `name` at `version` (empty: the one served).
fn find<'a>(engine: &'a Engine, name: &str, version: &str) -> Result<&'a Served, Status> {
    let version = version.trim_start_matches('v');
    engine
        .served()
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s.card.name == name && (version.is_empty() || s.card.version.to_string() == version))
        .ok_or_else(|| {
            let served: Vec<String> = engine.served().iter().map(|(_, s)| s.reference.clone()).collect();
            Status::not_found(format!("model_name: `{name}` version `{version}` is not served (served: {})", served.join(", ")))
        })
}

const FP64: &str = "FP64";

#[tonic::async_trait]
impl GrpcInferenceService for InferenceApi {
    async fn server_live(&self, _: Request<oip::ServerLiveRequest>) -> Result<Response<oip::ServerLiveResponse>, Status> {
        Ok(Response::new(oip::ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<oip::ServerReadyRequest>) -> Result<Response<oip::ServerReadyResponse>, Status> {
        Ok(Response::new(oip::ServerReadyResponse { ready: !self.serving.engine().served().is_empty() }))
    }

    async fn model_ready(&self, request: Request<oip::ModelReadyRequest>) -> Result<Response<oip::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let engine = self.serving.engine();
        Ok(Response::new(oip::ModelReadyResponse { ready: find(&engine, &r.name, &r.version).is_ok() }))
    }

    async fn server_metadata(&self, _: Request<oip::ServerMetadataRequest>) -> Result<Response<oip::ServerMetadataResponse>, Status> {
        Ok(Response::new(oip::ServerMetadataResponse { name: "foresight-serve".into(), version: env!("CARGO_PKG_VERSION").into(), extensions: vec![] }))
    }

    async fn model_metadata(&self, request: Request<oip::ModelMetadataRequest>) -> Result<Response<oip::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let engine = self.serving.engine();
        let s = find(&engine, &r.name, &r.version)?;
        let mut input_shape = s.card.onnx.input_shape.clone();
        if let Some(batch) = input_shape.first_mut() {
            *batch = -1;
        }
        Ok(Response::new(oip::ModelMetadataResponse {
            name: s.card.name.clone(),
            versions: vec![s.card.version.to_string()],
            platform: "onnxruntime_onnx".into(),
            inputs: vec![TensorMetadata { name: s.card.onnx.input.clone(), datatype: FP64.into(), shape: input_shape }],
            outputs: s.card.onnx.outputs.iter().map(|o| TensorMetadata { name: o.clone(), datatype: FP64.into(), shape: vec![-1] }).collect(),
        }))
    }

    async fn model_infer(&self, request: Request<oip::ModelInferRequest>) -> Result<Response<oip::ModelInferResponse>, Status> {
        let r = request.into_inner();
        let permit = self.serving.admit().map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let engine = self.serving.engine();
        let served = find(&engine, &r.model_name, &r.model_version)?;
        let [input] = r.inputs.as_slice() else {
            return Err(Status::invalid_argument(format!("inputs: {} has one input, `{}`; got {}", served.reference, served.card.onnx.input, r.inputs.len())));
        };
        if input.datatype != FP64 {
            return Err(Status::invalid_argument(format!("inputs[0].datatype: {FP64} expected, got `{}`", input.datatype)));
        }
        // Answer in the form the request used, as Triton does: raw little-endian bytes for raw
        // inputs (what tritonclient sends), typed contents otherwise.
        let raw = !r.raw_input_contents.is_empty();
        let values: Vec<f64> = match (r.raw_input_contents.first(), &input.contents) {
            (Some(raw), _) => {
                if raw.len() % 8 != 0 {
                    return Err(Status::invalid_argument("raw_input_contents[0]: not a whole number of little-endian FP64 values"));
                }
                raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default())).collect()
            }
            (None, Some(c)) => c.fp64_contents.clone(),
            (None, None) => return Err(Status::invalid_argument("inputs[0].contents: required (or raw_input_contents)")),
        };
        let width = served.row_width();
        let rows = usize::try_from(input.shape.first().copied().unwrap_or(0)).unwrap_or(0);
        let row_values = input.shape.iter().skip(1).try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?));
        let shape_values = row_values.and_then(|w| w.checked_mul(rows));
        if rows == 0 || row_values != Some(width) || shape_values != Some(values.len()) {
            return Err(Status::invalid_argument(format!(
                "inputs[0].shape: {:?} with {} values; {} takes [rows, {}] as its card says ({:?})",
                input.shape,
                values.len(),
                served.reference,
                width,
                served.card.onnx.input_shape
            )));
        }
        if let Some(i) = values.iter().position(|v| v.is_infinite()) {
            return Err(Status::invalid_argument(format!("inputs[0].contents[{i}]: infinite (NaN marks a missing value)")));
        }
        let wanted: Vec<String> = r.outputs.iter().map(|o| o.name.clone()).collect();
        if let Some(unknown) = wanted.iter().find(|w| !served.card.onnx.outputs.contains(w)) {
            return Err(Status::invalid_argument(format!("outputs: `{unknown}` is not an output of {} ({:?})", served.reference, served.card.onnx.outputs)));
        }
        let serving = self.serving.clone();
        let (name, version) = (served.card.name.clone(), served.card.version);
        let outputs = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let engine = serving.engine();
            let served = find(&engine, &name, &version.to_string())?;
            served.run_rows(&values).map_err(Status::internal)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        // The requested outputs in the order asked for (all, in the card's order, when none are).
        let mut outputs: Vec<(String, Vec<f64>)> = outputs.into_iter().filter(|(n, _)| wanted.is_empty() || wanted.contains(n)).collect();
        if !wanted.is_empty() {
            outputs.sort_by_key(|(n, _)| wanted.iter().position(|w| w == n));
        }
        let mut raw_output_contents = Vec::new();
        let outputs = outputs
            .into_iter()
            .map(|(name, values)| {
                let shape = vec![values.len() as i64];
                let contents = if raw {
                    raw_output_contents.push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
                    None
                } else {
                    Some(oip::InferTensorContents { fp64_contents: values, ..Default::default() })
                };
                InferOutputTensor { name, datatype: FP64.into(), shape, parameters: Default::default(), contents }
            })
            .collect();
        Ok(Response::new(oip::ModelInferResponse {
            model_name: r.model_name,
            model_version: version.to_string(),
            id: r.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        }))
    }
}
