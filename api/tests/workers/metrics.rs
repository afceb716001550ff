//! A `syncledger worker` with `metrics_addr` serves `GET /metrics`: the runs it executes
//! and their provider calls are counted where they happen, not by `serve`.

use reqwest::StatusCode;
use serde_json::Value;
use syncledger_testkit::binary::{
    connect_hubspot, poll_until, start_run, wait_run, TestEnv, Worker, QUIET,
};
use syncledger_testkit::sandbox;

const LISTENING: &str = "worker metrics at GET /metrics";

#[tokio::test]
async fn a_worker_serves_the_metrics_of_the_runs_it_executes() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let server = env.serve_with(&[], &QUIET).await;
    let api = server.api(&ws.token);
    let sandbox = sandbox::hubspot(30).await;
    let integration = connect_hubspot(&api, &sandbox).await;

    let vars = [("SYNCLEDGER_METRICS_ADDR", "127.0.0.1:0")];
    let worker = Worker::start(&env, &["--poll-interval-ms", "100"], &vars);
    worker.wait_log(LISTENING).await;
    let url = format!("http://{}/metrics", listening_on(&worker.logs()));

    let idle = scrape(&url).await;
    assert!(idle.contains("syncledger_build_info{"), "{idle}");
    assert!(
        idle.contains("syncledger_db_pool_connections{pool=\"events\",state=\"idle\"}"),
        "{idle}"
    );
    // A worker answers no HTTP requests, holds no streams and runs no projections.
    for absent in [
        "syncledger_http_requests_total",
        "syncledger_sse_clients",
        "syncledger_projection_lag",
    ] {
        assert!(!idle.contains(absent), "{absent} in\n{idle}");
    }
    assert_eq!(completed_runs(&idle), 0.0, "{idle}");

    let run = start_run(&api, &integration, "full").await;
    assert_eq!(wait_run(&api, &run).await["status"], "completed");
    let counted = poll_until("the worker to count its run", || async {
        let text = scrape(&url).await;
        if completed_runs(&text) == 1.0 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    let processed = sample(
        &counted,
        "syncledger_sync_records_processed_total",
        &["provider=\"hubspot\"", "kind=\"full\""],
    );
    assert!(processed >= 60.0, "{counted}");
    assert!(
        counted.contains("syncledger_provider_requests_total{"),
        "{counted}"
    );
    worker.stop().await;
}

/// The address the worker logged (JSON logs, fields flattened into the line).
fn listening_on(logs: &str) -> String {
    logs.lines()
        .filter(|l| l.contains(LISTENING))
        .find_map(|l| {
            let line: Value = serde_json::from_str(l).ok()?;
            line["metrics"].as_str().map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no metrics address in the worker's logs:\n{logs}"))
}

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("the metrics text")
}

fn completed_runs(text: &str) -> f64 {
    sample(
        text,
        "syncledger_sync_runs_total",
        &[
            "provider=\"hubspot\"",
            "kind=\"full\"",
            "outcome=\"completed\"",
        ],
    )
}

/// The sum of `name`'s samples whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
