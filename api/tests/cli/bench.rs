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
