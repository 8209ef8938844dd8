//! The server: the Foresight services and the Open Inference Protocol behind optional bearer-token auth, gRPC health and server
//! reflection beside them, optional TLS (rustls), message-size limits, a per-call time limit
//! (callers' own deadlines are honoured too) and graceful shutdown. The binary and the tests
//! start it through [`run`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};

use crate::error::ServeError;
use crate::inference::InferenceApi;
use crate::oip::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::proto;
use crate::proto::calibration_service_server::CalibrationServiceServer;
use crate::proto::market_data_service_server::MarketDataServiceServer;
use crate::proto::model_service_server::ModelServiceServer;
use crate::service::{CalibrationApi, MarketDataApi, ModelApi};
use crate::serving::Serving;

/// How the server talks to callers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest message in either direction, bytes.
    pub max_message_bytes: usize,
    /// Longest a call may run before DEADLINE_EXCEEDED (a caller's shorter deadline wins).
    pub request_timeout: Duration,
    /// PEM certificate chain and private key: TLS on (plaintext callers are refused).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Bearer tokens accepted by the Foresight services; empty: no authentication. Health and
    /// reflection stay open (probes carry no token).
    pub tokens: Vec<String>,
}

impl Default for ServerOptions {
    /// 16 MiB messages (a 10,000-account batch with inline history fits), 30 s per call, no TLS,
    /// no tokens.
    fn default() -> Self {
        Self { max_message_bytes: 16 << 20, request_timeout: Duration::from_secs(30), tls: None, tokens: Vec::new() }
    }
}

/// Checks `authorization: Bearer <token>` against the configured tokens.
#[derive(Clone)]
pub struct BearerAuth {
    tokens: Arc<Vec<String>>,
}

impl BearerAuth {
    /// Accepts `tokens` (none: everyone).
    pub fn new(tokens: Vec<String>) -> Self {
        Self { tokens: Arc::new(tokens) }
    }
}

/// Equality in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.tokens.is_empty() {
            return Ok(request);
        }
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ServeError::Unauthenticated("a `Bearer <token>` header is required"))?;
        if self.tokens.iter().any(|t| same(t.as_bytes(), given.as_bytes())) {
            Ok(request)
        } else {
            Err(ServeError::Unauthenticated("the token is not accepted").into())
        }
    }
}

/// Serves every service on `listener` until `shutdown` resolves, then lets calls in progress
/// finish.
pub async fn run(serving: Arc<Serving>, options: &ServerOptions, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let max = options.max_message_bytes;
    let auth = BearerAuth::new(options.tokens.clone());
    let calibration = CalibrationServiceServer::new(CalibrationApi::new(serving.clone())).max_decoding_message_size(max).max_encoding_message_size(max);
    let market = MarketDataServiceServer::new(MarketDataApi::new(serving.clone())).max_decoding_message_size(max).max_encoding_message_size(max);
    let models = ModelServiceServer::new(ModelApi::new(serving.clone()));
    let inference = GrpcInferenceServiceServer::new(InferenceApi::new(serving.clone())).max_decoding_message_size(max).max_encoding_message_size(max);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CalibrationServiceServer<CalibrationApi>>().await;
    health.set_serving::<MarketDataServiceServer<MarketDataApi>>().await;
    health.set_serving::<ModelServiceServer<ModelApi>>().await;
    health.set_serving::<GrpcInferenceServiceServer<InferenceApi>>().await;
    if serving.market.as_ref().is_some_and(|m| !m.caught_up()) {
        // A replica joining a shared market stream answers from stale state until it has
        // applied what the stream held when it started: probes keep traffic away meanwhile.
        // The whole server ("", what Kubernetes' gRPC probes ask by default) too.
        health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        health.set_not_serving::<CalibrationServiceServer<CalibrationApi>>().await;
        health.set_not_serving::<MarketDataServiceServer<MarketDataApi>>().await;
        let (serving, health) = (serving.clone(), health.clone());
        tokio::spawn(async move {
            if let Some(market) = serving.market.as_ref() {
                market.wait_caught_up().await;
            }
            health.set_serving::<CalibrationServiceServer<CalibrationApi>>().await;
            health.set_serving::<MarketDataServiceServer<MarketDataApi>>().await;
            health.set_service_status("", tonic_health::ServingStatus::Serving).await;
            tracing::info!("market state caught up with the shared stream");
        });
    }
    // Reflection in both versions: grpcurl and newer clients speak v1, Python's
    // grpcio-reflection and several GUI clients still v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1().map_err(|e| ServeError::setup("reflection", e))?;
    let reflection_v1alpha = reflection_builder().build_v1alpha().map_err(|e| ServeError::setup("reflection", e))?;

    let mut builder = Server::builder().timeout(options.request_timeout);
    if let Some((cert, key)) = &options.tls {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| ServeError::setup(format!("tls: {}", p.display()), e));
        builder = builder.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?))).map_err(|e| ServeError::setup("tls", e))?;
    }
    builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(calibration, auth.clone()))
        .add_service(InterceptedService::new(market, auth.clone()))
        .add_service(InterceptedService::new(models, auth.clone()))
        .add_service(InterceptedService::new(inference, auth))
        // No Nagle: small responses would otherwise wait on the client's delayed ACK (40 ms).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)).map(|c| c.map(Lingering::new)), async {
            shutdown.await;
            // Probes see the server going before it stops accepting.
            health.set_not_serving::<CalibrationServiceServer<CalibrationApi>>().await;
        })
        .await
        .map_err(|e| ServeError::setup("server", e))?;
    // Connections finish closing before the process may exit.
    let deadline = tokio::time::Instant::now() + LINGER;
    while LINGERING.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Binds `address` and serves `GET /metrics` (Prometheus text) there in the background, for a
/// scraper inside the deployment's network; returns the address bound.
pub async fn spawn_metrics(serving: Arc<Serving>, address: SocketAddr) -> Result<SocketAddr, ServeError> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| ServeError::setup(format!("metrics_listen {address}"), e))?;
    let bound = listener.local_addr().map_err(|e| ServeError::setup(format!("metrics_listen {address}"), e))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let serving = serving.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], serving.metrics.encode(serving.engine().generation())) }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}

/// How long a closing connection waits for its peer to close.
const LINGER: Duration = Duration::from_secs(2);
/// Connections still closing.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// A TCP connection that, once the server is done with it, half-closes and reads until the peer
/// closes (at most [`LINGER`]) before it is closed. Closing a socket with bytes still arriving
/// (a client's HTTP/2 flow-control updates while it reads a large response) makes the kernel
/// reset the connection, and the client loses the end of the response it had not read yet:
/// a graceful shutdown would cut the last large batch short.
struct Lingering {
    stream: Option<TcpStream>,
}

impl Lingering {
    fn new(stream: TcpStream) -> Self {
        Self { stream: Some(stream) }
    }

    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        self.stream.as_mut().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let (Some(mut stream), Ok(runtime)) = (self.stream.take(), tokio::runtime::Handle::try_current()) else { return };
        LINGERING.fetch_add(1, Ordering::SeqCst);
        runtime.spawn(async move {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            LINGERING.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

impl Connected for Lingering {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.as_ref().map(Connected::connect_info).unwrap_or(TcpConnectInfo { local_addr: None, remote_addr: None })
    }
}

impl AsyncRead for Lingering {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Reported as not vectored on purpose: h2 then copies DATA payloads of up to 1 KiB into its
    /// write buffer (with vectored writes it chains any payload over 256 bytes and must flush it
    /// before it can buffer the next frame). A unary response (HEADERS, a ~300-byte DATA frame,
    /// trailers) then leaves in one write instead of two: a system call and a packet less per call.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked() {
        let mut open = BearerAuth::new(vec![]);
        assert!(open.call(Request::new(())).is_ok());
        let mut auth = BearerAuth::new(vec!["s3cret".into(), "other".into()]);
        let with = |value: &str| {
            let mut r = Request::new(());
            r.metadata_mut().insert("authorization", value.parse().unwrap());
            r
        };
        assert!(auth.call(with("Bearer s3cret")).is_ok());
        assert!(auth.call(with("Bearer other")).is_ok());
        for bad in ["Bearer s3cre", "Bearer s3cret2", "s3cret", "Basic s3cret"] {
            assert_eq!(auth.call(with(bad)).unwrap_err().code(), tonic::Code::Unauthenticated, "{bad}");
        }
        assert_eq!(auth.call(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}
