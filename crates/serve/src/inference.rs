//! The Open Inference Protocol v2 (`inference.GRPCInferenceService`) over the served models, so
//! KServe- and Triton-style clients can call the raw forecasters: a model is named by its
//! registry name, its version is the registry version (`"1"` for `btc-log-har@v1`), its one
//! input is an FP64 tensor `[rows, …]` of model inputs (the card's columns) and each output an
//! FP64 tensor `[rows]`. Margin needs the calibration API; this one is for the models alone.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::convert::{InferInput, model_metadata};
use crate::engine::{Engine, Served};
use crate::error::ServeError;
use crate::oip;
use crate::oip::grpc_inference_service_server::GrpcInferenceService;
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
fn find<'a>(engine: &'a Engine, name: &str, version: &str) -> Result<&'a Served, ServeError> {
    let version = version.trim_start_matches('v');
    engine
        .served()
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s.card.name == name && (version.is_empty() || s.card.version.to_string() == version))
        .ok_or_else(|| {
            let served: Vec<String> = engine.served().iter().map(|(_, s)| s.reference.clone()).collect();
            ServeError::NotFound(format!("model_name: `{name}` version `{version}` is not served (served: {})", served.join(", ")))
        })
}

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
        Ok(Response::new(model_metadata(find(&engine, &r.name, &r.version)?)))
    }

    async fn model_infer(&self, request: Request<oip::ModelInferRequest>) -> Result<Response<oip::ModelInferResponse>, Status> {
        let r = request.into_inner();
        let permit = self.serving.admit()?;
        let engine = self.serving.engine();
        let served = find(&engine, &r.model_name, &r.model_version)?;
        let input = InferInput::try_from(&r)?;
        input.check_for(served)?;
        let serving = self.serving.clone();
        let (name, version) = (served.card.name.clone(), served.card.version.to_string());
        let (values, v) = (input.values.clone(), version.clone());
        let outputs = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let engine = serving.engine();
            find(&engine, &name, &v)?.run_rows(&values).map_err(ServeError::Internal)
        })
        .await
        .map_err(ServeError::from)??;
        Ok(Response::new(input.response(&r, version, outputs)))
    }
}
