//! The operator's dashboard (`deploy/grafana/foresight.json`) against real data: Debian's
//! Prometheus (installed by the bootstrap) scrapes a live `foresight-serve` that publishes and
//! calibrates, and every panel's query must return data. A renamed metric or a wrong label in
//! the dashboard fails here, not on an operator's screen.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use foresight_serve::proto::calibration_service_client::CalibrationServiceClient;

use crate::serve_ops::{Process, btc_updates, from_state, publish, start_binary_args};
use crate::util::{free_port, root};

/// GET over HTTP/1.0 (no chunked bodies): the status line and the body.
fn get(address: SocketAddr, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every query of every panel of the dashboard, with its panel's title.
fn panel_queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root().join("deploy/grafana/foresight.json")).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten().map(move |t| (p["title"].as_str().unwrap_or("?").to_string(), t["expr"].as_str().unwrap_or("").to_string())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_has_data_from_a_live_service() {
    let prometheus = std::path::Path::new("/usr/bin/prometheus");
    assert!(prometheus.exists(), "Debian's prometheus is missing: run ./scripts/bootstrap.sh");
    let queries = panel_queries();
    assert!(queries.len() >= 7, "{queries:?}");

    let state = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let (_service, address) =
        start_binary_args(&root().join("models"), state.path(), &["--reload-interval", "0", "--metrics-listen", &metrics_listen]).await;

    let prometheus_dir = tempfile::tempdir().unwrap();
    let config = prometheus_dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: foresight\n    static_configs:\n      - targets: ['{metrics_listen}']\n"),
    )
    .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prometheus = Process(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", prometheus_dir.path().join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stderr(std::fs::File::create(prometheus_dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    // Days only: the history ends in the past, so calibrations fall back (stale); then ticks of
    // today, and margins from the forecasts.
    let days = btc_updates(0);
    publish(&address, days).await;
    let mut client = CalibrationServiceClient::connect(address.clone()).await.unwrap();
    client.calibrate(from_state("stale-1")).await.unwrap();
    publish(&address, btc_updates(5)).await;

    // Traffic while Prometheus scrapes, until every query has data (or a minute passes).
    let started = Instant::now();
    let mut missing = queries.clone();
    let mut k = 0;
    while !missing.is_empty() && started.elapsed() < Duration::from_secs(60) {
        for _ in 0..20 {
            k += 1;
            client.calibrate(from_state(&format!("acct-{k}"))).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        missing = tokio::task::spawn_blocking(move || {
            queries_without_data(web, &panel_queries())
        })
        .await
        .unwrap();
    }
    let log = std::fs::read_to_string(prometheus_dir.path().join("prometheus.log")).unwrap_or_default();
    let tail: String = log.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(missing.is_empty(), "panels without data after {:?}: {missing:#?}\nprometheus log tail: {tail}", started.elapsed());
    // The check itself: a metric the service does not export has no data.
    let bogus = vec![("bogus".to_string(), "sum(rate(foresight_no_such_metric_total[5m]))".to_string())];
    assert_eq!(tokio::task::spawn_blocking(move || queries_without_data(web, &bogus)).await.unwrap().len(), 1);
}

/// The (panel, query) pairs Prometheus answers with no series (or not at all).
fn queries_without_data(web: SocketAddr, queries: &[(String, String)]) -> Vec<(String, String)> {
    queries
        .iter()
        .filter(|(_, expr)| {
            let Some((status, body)) = get(web, &format!("/api/v1/query?query={}", encode(expr))) else { return true };
            if !status.contains(" 200") {
                return true;
            }
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            // Data: at least one series whose value is a number (a quantile over no traffic is NaN).
            let numbers = answer["data"]["result"].as_array().into_iter().flatten().filter(|r| r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).is_some_and(f64::is_finite));
            numbers.count() == 0
        })
        .cloned()
        .collect()
}
