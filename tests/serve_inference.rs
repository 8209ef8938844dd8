//! The Open Inference Protocol v2 over the served forecasters: a generic KServe/Triton-style
//! client finds the models and runs a card's golden rows, getting the card's outputs back.

use foresight_registry::Registry;
use foresight_serve::oip::grpc_inference_service_client::GrpcInferenceServiceClient;
use foresight_serve::oip::model_infer_request::InferInputTensor;
use foresight_serve::oip::{self, InferTensorContents, ModelInferRequest};
use tonic::Code;

use crate::serve::{config, serve};
use crate::util::root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_inference_clients_run_the_served_models() {
    let (address, _serving) = serve(config(&root().join("models"), None)).await;
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{address}")).await.unwrap();
    assert!(client.server_live(oip::ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(client.server_ready(oip::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let ready = |name: &str, version: &str| oip::ModelReadyRequest { name: name.into(), version: version.into() };
    assert!(client.model_ready(ready("btc-dvol-har-x", "1")).await.unwrap().into_inner().ready);
    assert!(client.model_ready(ready("btc-dvol-har-x", "")).await.unwrap().into_inner().ready);
    assert!(!client.model_ready(ready("btc-dvol-har-x", "7")).await.unwrap().into_inner().ready);
    assert!(!client.model_ready(ready("btc-neural", "1")).await.unwrap().into_inner().ready, "a challenger is not served");

    let card = Registry::open(root().join("models")).unwrap().card(&"btc-dvol-har-x@v1".parse().unwrap()).unwrap();
    let meta = client.model_metadata(oip::ModelMetadataRequest { name: card.name.clone(), version: "1".into() }).await.unwrap().into_inner();
    assert_eq!(meta.inputs[0].name, card.onnx.input);
    assert_eq!(meta.inputs[0].shape[0], -1);
    assert_eq!(meta.outputs.iter().map(|o| o.name.clone()).collect::<Vec<_>>(), card.onnx.outputs);

    // The card's golden rows, batched, give the card's outputs (the null DVOL row included).
    let width = card.golden[0].input.len();
    let values: Vec<f64> = card.golden.iter().flat_map(|g| g.input.clone()).collect();
    let input = |values: Vec<f64>, shape: Vec<i64>| InferInputTensor {
        name: card.onnx.input.clone(),
        datatype: "FP64".into(),
        shape,
        parameters: Default::default(),
        contents: Some(InferTensorContents { fp64_contents: values, ..Default::default() }),
    };
    let request = |inputs: Vec<InferInputTensor>| ModelInferRequest {
        model_name: card.name.clone(),
        model_version: "1".into(),
        id: "golden".into(),
        inputs,
        ..Default::default()
    };
    let rows = card.golden.len() as i64;
    let response = client.model_infer(request(vec![input(values.clone(), vec![rows, width as i64])])).await.unwrap().into_inner();
    assert_eq!((response.id.as_str(), response.model_version.as_str()), ("golden", "1"));
    for out in &response.outputs {
        let got = &out.contents.as_ref().unwrap().fp64_contents;
        for (i, g) in card.golden.iter().enumerate() {
            let want = g.outputs[&out.name];
            assert!((got[i] - want).abs() <= 1e-9 * want.abs().max(1e-12), "{} row {i}: {} vs {want}", out.name, got[i]);
        }
    }
    assert_eq!(response.outputs.len(), card.onnx.outputs.len());

    // Wrong shapes, types and names are INVALID_ARGUMENT / NOT_FOUND naming the field.
    let e = client.model_infer(request(vec![input(values[..width - 1].to_vec(), vec![1, width as i64 - 1])])).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("inputs[0].shape"), "{e:?}");
    let mut wrong_type = input(values.clone(), vec![rows, width as i64]);
    wrong_type.datatype = "FP32".into();
    let e = client.model_infer(request(vec![wrong_type])).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("inputs[0].datatype"), "{e:?}");
    let e = client.model_infer(ModelInferRequest { model_name: "nope".into(), ..request(vec![]) }).await.unwrap_err();
    assert!(e.code() == Code::NotFound && e.message().starts_with("model_name"), "{e:?}");
}
