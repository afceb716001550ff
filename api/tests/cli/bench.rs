//! The benchmarks run end to end at a small size: a bench that stops counting what it
//! measures fails here, not in the sitting where its figures were wanted.

use serde_json::Value;
use syncledger_testkit::binary::TestEnv;
use syncledger_testkit::db::PgTestDb;

const RECORDS: usize = 2_000;

/// `bench sink` on the embedded store: the import phase finds every imported contact in
/// the app's table (its log was cut short of the last import's records when the shape
/// bounded it at two events per record), and each phase prints its JSON line.
#[tokio::test]
async fn bench_sink_writes_every_imported_record() {
    // The app's database lives on the test PostgreSQL server.
    let Some(target) = PgTestDb::create().await else {
        return;
    };
    let env = TestEnv::sqlite();
    let records = RECORDS.to_string();
    let out = env
        .run_ok(&[
            "bench",
            "sink",
            "--records",
            &records,
            "--events",
            "20000",
            "--live",
            "20",
            "--live-rate",
            "200",
            "--batch",
            "500",
            "--target-url",
            &target.url,
        ])
        .await;
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let phases: Vec<&str> = lines.iter().filter_map(|l| l["phase"].as_str()).collect();
    assert_eq!(phases, ["import", "backlog", "live"], "{out}");
    assert_eq!(lines[0]["records"], RECORDS, "{out}");
    assert!(lines[1]["rows"].as_u64().unwrap_or_default() > 0, "{out}");
    target.cleanup().await;
}

/// `bench sync --provider zoho` on the embedded store: a full import and an incremental
/// run against the Zoho sandbox, each line counting records and API calls, the full
/// import at the fewest calls Zoho's pages allow (pages of 200, the field catalogue, the
/// deleted records).
#[tokio::test]
async fn bench_sync_imports_from_zoho_at_the_fewest_calls() {
    let env = TestEnv::sqlite();
    let out = env
        .run_ok(&["bench", "sync", "--provider", "zoho", "--records", "450"])
        .await;
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let phases: Vec<&str> = lines.iter().filter_map(|l| l["phase"].as_str()).collect();
    assert_eq!(phases, ["full", "projection", "incremental"], "{out}");
    let full = &lines[0];
    assert_eq!(full["created"], 450, "{out}");
    assert_eq!(full["min_api_calls"], 5, "{out}");
    assert_eq!(full["api_calls"], 5, "{out}");
    assert!(lines[2]["updated"].as_u64() >= Some(4), "{out}");
}
