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

/// The service builds a HAR-X model's rows from the days a margin engine sends (closes, realized
/// variance, DVOL in percent) exactly as training built them from the data files: the card's
/// exogenous spec is read once, in the registry, by both.
#[test]
fn the_service_feeds_a_har_x_model_the_rows_training_fed_it() {
    use foresight_registry::exogenous::ExogenousSpec;
    use foresight_registry::inputs::ModelInput;
    use foresight_serve::engine::EngineConfig;
    use foresight_serve::series::{Day, Series};
    use foresight_serve::{Engine, Split};
    use foresight_train::data::{load_exogenous, load_ohlcv};
    use foresight_train::evaluate::{DailyHistory, market_days};

    let registry = Registry::open(root().join("models")).unwrap();
    let (card, _, _) = registry.load(&"btc-dvol-har-x@v1".parse().unwrap()).unwrap();
    let spec = ExogenousSpec::from_card(&card).unwrap().expect("a HAR-X card names its input");
    // Training: the card's bars and its exogenous file, through the card's spec.
    let history = DailyHistory::from_bars(&load_ohlcv(&crate::util::data("btc_usdt_2h.csv")).unwrap()).unwrap();
    let exogenous = load_exogenous(&ExogenousSpec { file: root().join(&spec.file), ..spec.clone() }, &history.dates).unwrap();
    let trained = ModelInput::from_card(&card).unwrap().rows(&history.rv, &history.returns, &exogenous);
    // The service: the days as an engine publishes them, DVOL in percent.
    let days = market_days(&crate::util::data("btc_usdt_1d.csv"), &crate::util::data("btc_usdt_2h.csv"), Some(&crate::util::data("btc_dvol_1d.csv"))).unwrap();
    let days: Vec<Day> = days
        .iter()
        .map(|d| Day { date: d.date.to_string(), close: d.close, realized_variance: d.realized_variance, implied_vol_percent: d.implied_vol_percent })
        .collect();
    let series = Series::from_days(&days, "history").unwrap();
    let mut config = EngineConfig::new(root().join("models"));
    config.split = Split { arms: vec![foresight_serve::engine::ArmWeight { arm: "model:btc-dvol-har-x@v1".into(), weight: 1.0 }], shadow: false };
    let engine = Engine::load(config).unwrap();
    let (_, served) = engine.served().into_iter().find(|(_, s)| s.reference == "btc-dvol-har-x@v1").unwrap();
    let served_rows = served.rows(&series);
    let index_of: std::collections::HashMap<String, usize> = history.dates.iter().enumerate().map(|(i, d)| (d.to_string(), i)).collect();
    let (mut compared, mut with_input) = (0, 0);
    for (date, row) in series.dates.iter().zip(&served_rows).skip(30) {
        let trained_row = &trained[index_of[date]];
        let same = match (row, trained_row) {
            (Some(a), Some(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            (None, None) => true,
            _ => false,
        };
        assert!(same, "{date}: served {row:?}, trained {trained_row:?}");
        compared += 1;
        with_input += usize::from(row.as_ref().is_some_and(|r| !r[3].is_nan()));
    }
    assert!(compared > 2000 && with_input > 1000, "{compared} days compared, {with_input} with DVOL");

    // A HAR-X model whose input the service cannot build from what it receives (funding summed
    // per day) is refused by name, not fed NaN and run as its log-HAR fallback.
    let scratch = crate::serve_ops::scratch_registry();
    let card_file = scratch.path().join("btc-dvol-har-x/v1/card.json");
    let text = std::fs::read_to_string(&card_file).unwrap().replace("\"transform\": \"iv\"", "\"transform\": \"sum\"");
    std::fs::write(&card_file, text).unwrap();
    let mut config = EngineConfig::new(scratch.path());
    config.split = Split { arms: vec![foresight_serve::engine::ArmWeight { arm: "model:btc-dvol-har-x@v1".into(), weight: 1.0 }], shadow: false };
    let e = Engine::load(config).err().expect("refused").to_string();
    assert!(e.contains("btc-dvol-har-x@v1") && e.contains("params.exogenous.transform is `sum`"), "{e}");
}
