//! Transport security and discovery: bearer tokens (UNAUTHENTICATED without the right one), TLS
//! (a plaintext client gets nothing), gRPC health and server reflection, deadlines.

use std::time::Duration;

use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;
use foresight_serve::server::ServerOptions;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request::MessageRequest, server_reflection_response::MessageResponse};

use crate::serve::{btc_market, config, linear, request, serve_with};
use crate::util::root;

fn fixture(name: &str) -> std::path::PathBuf {
    root().join("tests/fixtures/tls").join(name)
}

fn with_token(token: Option<&str>) -> tonic::Request<foresight_serve::proto::CalibrateRequest> {
    let mut r = tonic::Request::new(request(vec![linear(1.0)], btc_market(120)));
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {t}")).unwrap());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_bearer_tokens_guard_the_api_while_health_and_reflection_stay_open() {
    let options = ServerOptions {
        tls: Some((fixture("server.crt"), fixture("server.key"))),
        tokens: vec!["engine-token".into()],
        ..ServerOptions::default()
    };
    let (address, _serving) = serve_with(config(&root().join("models"), None), options).await;
    let port = address.port();

    // A plaintext client gets no answer from a TLS server.
    let plaintext = async {
        let mut c = CalibrationServiceClient::connect(format!("http://127.0.0.1:{port}")).await?;
        c.calibrate(with_token(Some("engine-token"))).await.map_err(anyhow::Error::from)
    };
    assert!(tokio::time::timeout(Duration::from_secs(10), plaintext).await.is_ok_and(|r| r.is_err()), "plaintext must be refused");

    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(fixture("ca.crt")).unwrap())).domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    let mut client = CalibrationServiceClient::new(channel.clone());
    for token in [None, Some("wrong"), Some("engine-token ")] {
        let e = client.calibrate(with_token(token)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}: {e:?}");
        assert!(e.message().starts_with("authorization"), "{}", e.message());
    }
    let ok = client.calibrate(with_token(Some("engine-token"))).await.unwrap().into_inner();
    assert!(ok.initial_margin > 0.0);

    // Health and reflection answer without a token.
    let mut health = HealthClient::new(channel.clone());
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let serving = health.check(check("foresight.v1.CalibrationService")).await.unwrap().into_inner();
    assert_eq!(serving.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let ask = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter(vec![ask])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.message().await.unwrap().unwrap().message_response else { panic!("no service list") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    let apis = ["foresight.v1.CalibrationService", "foresight.v1.MarketDataService", "foresight.v1.ModelService", "inference.GRPCInferenceService"];
    for expected in apis.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
    }
    // The older v1alpha protocol (Python's grpcio-reflection, several GUI clients) lists the same.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut old = alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let ask = alpha::ServerReflectionRequest { host: String::new(), message_request: Some(alpha::server_reflection_request::MessageRequest::ListServices(String::new())) };
    let mut answers = old.server_reflection_info(tokio_stream::iter(vec![ask])).await.unwrap().into_inner();
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) = answers.message().await.unwrap().unwrap().message_response else {
        panic!("no v1alpha service list")
    };
    let old_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in apis {
        assert!(old_names.iter().any(|n| n == expected), "v1alpha: {expected} not in {old_names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_time_limit_ends_a_long_call() {
    let options = ServerOptions { request_timeout: Duration::from_millis(20), ..ServerOptions::default() };
    let (address, _serving) = serve_with(config(&root().join("models"), None), options).await;
    let mut client = CalibrationServiceClient::connect(format!("http://{address}")).await.unwrap();
    // 5,000 accounts cannot be calibrated in 20 ms; the client sets no deadline of its own.
    let one = foresight_serve::proto::CalibrateRequest { markets: vec![], ..request(vec![linear(1.0)], btc_market(1)) };
    let accounts = (0..5_000).map(|i| foresight_serve::proto::CalibrateRequest { account_id: format!("a{i}"), ..one.clone() }).collect();
    let batch = foresight_serve::proto::CalibrateBatchRequest { accounts, markets: vec![btc_market(400)] };
    let started = std::time::Instant::now();
    let e = client.calibrate_batch(batch).await.unwrap_err();
    assert_eq!(e.code(), Code::Cancelled, "{e:?}");
    assert!(e.message().contains("Timeout expired"), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A small call still fits.
    assert!(client.calibrate(request(vec![linear(1.0)], btc_market(120))).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_are_refused_before_any_work() {
    let options = ServerOptions { max_message_bytes: 64 * 1024, ..ServerOptions::default() };
    let (address, serving) = serve_with(config(&root().join("models"), None), options).await;
    let mut client = CalibrationServiceClient::connect(format!("http://{address}")).await.unwrap();
    // 400 days inline fit in 64 KiB; 5,000 accounts do not.
    assert!(client.calibrate(request(vec![linear(1.0)], btc_market(400))).await.is_ok());
    let one = foresight_serve::proto::CalibrateRequest { markets: vec![], ..request(vec![linear(1.0)], btc_market(1)) };
    let accounts = (0..5_000).map(|i| foresight_serve::proto::CalibrateRequest { account_id: format!("a{i}"), ..one.clone() }).collect();
    let batch = foresight_serve::proto::CalibrateBatchRequest { accounts, markets: vec![btc_market(400)] };
    let e = client.calibrate_batch(batch).await.unwrap_err();
    assert!(matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted), "{e:?}");
    assert!(e.message().contains("too large"), "{e:?}");
    let metrics = serving.metrics.encode(serving.engine().generation());
    assert!(!metrics.contains("method=\"calibrate_batch\""), "the batch never reached the engine");
}
