//! The benchmarks run end to end at a small size: a bench that stops counting what it
//! measures fails here, not in the sitting where its figures were wanted.

use serde_json::Value;
use syncledger_testkit::binary::TestEnv;
use syncledger_testkit::db::PgTestDb;

/// A bench's JSON lines (other output skipped), and the `phase` of each that has one.
fn json_lines(out: &str) -> (Vec<Value>, Vec<String>) {
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let phases = lines
        .iter()
        .filter_map(|l| l["phase"].as_str().map(str::to_string))
        .collect();
    (lines, phases)
}

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
    let (lines, phases) = json_lines(&out);
    assert_eq!(phases, ["import", "backlog", "live"], "{out}");
    assert_eq!(lines[0]["records"], RECORDS, "{out}");
    assert!(lines[1]["rows"].as_u64().unwrap_or_default() > 0, "{out}");
    target.cleanup().await;
}

/// `bench import` on the embedded store: the first import creates a record per row, the
/// same file again with a tenth of its rows edited updates those and leaves the rest.
#[tokio::test]
async fn bench_import_creates_then_updates_a_tenth() {
    let env = TestEnv::sqlite();
    let out = env.run_ok(&["bench", "import", "--rows", "500"]).await;
    let (lines, phases) = json_lines(&out);
    assert_eq!(phases, ["first", "again"], "{out}");
    assert_eq!(lines[0]["created"], 500, "{out}");
    assert_eq!(
        (
            &lines[1]["created"],
            &lines[1]["updated"],
            &lines[1]["unchanged"]
        ),
        (&0.into(), &50.into(), &450.into()),
        "{out}"
    );
    assert!(
        lines[0]["rows_per_s"].as_f64().unwrap_or_default() > 0.0,
        "{out}"
    );
}

/// `bench merge` at a tiny size prints one JSON line whose figures are there and add up:
/// every record merged, some fields changed and some in conflict (the generator makes
/// both), and a positive time per record.
#[tokio::test]
async fn bench_merge_prints_one_line_of_figures() {
    let env = TestEnv::sqlite();
    let out = env
        .run_ok(&[
            "bench",
            "merge",
            "--records",
            "300",
            "--distinct",
            "100",
            "--fields",
            "20",
        ])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let line: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(line["bench"], "merge", "{out}");
    assert_eq!(line["records"], 300, "{out}");
    assert_eq!(line["distinct"], 100, "{out}");
    assert_eq!(line["fields"], 20, "{out}");
    for figure in [
        "us_per_record_p50",
        "us_per_record_p99",
        "us_per_record_mean",
        "records_per_second",
    ] {
        let x = line[figure].as_f64().unwrap_or_default();
        assert!(x > 0.0, "{figure}: {out}");
    }
    assert!(
        line["us_per_record_p50"].as_f64() <= line["us_per_record_p99"].as_f64(),
        "{out}"
    );
    assert!(
        line["field_changes"].as_u64().unwrap_or_default() > 300,
        "{out}"
    );
    assert!(line["conflicts"].as_u64().unwrap_or_default() > 0, "{out}");
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
    let (lines, phases) = json_lines(&out);
    assert_eq!(phases, ["full", "projection", "incremental"], "{out}");
    let full = &lines[0];
    assert_eq!(full["created"], 450, "{out}");
    assert_eq!(full["min_api_calls"], 5, "{out}");
    assert_eq!(full["api_calls"], 5, "{out}");
    assert!(lines[2]["updated"].as_u64() >= Some(4), "{out}");
}

/// `bench sync --live` runs the projections alongside the full import, as `serve` does,
/// and reports, when the run ends, how many of the log's events the records read model
/// had not applied and how long it took to apply them all; the catch-up line after it
/// then finds (almost) nothing left to apply.
#[tokio::test]
async fn bench_sync_live_reports_the_read_models_lag_at_the_runs_end() {
    let env = TestEnv::sqlite();
    let out = env
        .run_ok(&["bench", "sync", "--records", "300", "--live"])
        .await;
    let (lines, phases) = json_lines(&out);
    assert_eq!(
        phases,
        ["full", "live_lag", "projection", "incremental"],
        "{out}"
    );
    let (full, lag) = (&lines[0], &lines[1]);
    assert_eq!(full["created"], 300, "{out}");
    assert_eq!(lag["projection"], "records", "{out}");
    let events = lag["events"].as_i64().unwrap_or_default();
    let written = full["events_written"].as_i64().unwrap_or_default();
    assert!(events >= written && written > 300, "{out}");
    let behind = lag["behind_events_at_run_end"].as_i64().unwrap_or(-1);
    assert!((0..=events).contains(&behind), "{out}");
    assert!(lag["lag_seconds"].as_f64() >= Some(0.0), "{out}");
    assert_eq!(lines[2]["events"], lag["events"], "{out}");
}

/// `bench sync --concurrent K`: one import alone, then K at once, each creating every
/// contact in its own workspace (the bench checks that), and a line that compares them.
#[tokio::test]
async fn bench_sync_concurrent_compares_k_runs_with_one_alone() {
    let env = TestEnv::sqlite();
    let out = env
        .run_ok(&["bench", "sync", "--records", "150", "--concurrent", "3"])
        .await;
    let (lines, phases) = json_lines(&out);
    assert_eq!(phases, ["alone", "concurrent"], "{out}");
    let (alone, together) = (&lines[0], &lines[1]);
    assert_eq!(together["runs"], 3, "{out}");
    assert_eq!(together["records_per_run"], 150, "{out}");
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(-1.0);
    let rates = &together["run_records_per_s"];
    assert!(
        0.0 < f(&rates["min"]) && f(&rates["min"]) <= f(&rates["mean"]),
        "{out}"
    );
    assert!(f(&rates["mean"]) <= f(&rates["max"]), "{out}");
    let slowest = f(&together["slowest_vs_mean"]);
    assert!(0.0 < slowest && slowest <= 1.0, "{out}");
    let aggregate = 450.0 / f(&together["seconds"]);
    assert!(
        (aggregate / f(&together["aggregate_records_per_s"]) - 1.0).abs() < 0.02,
        "{out}"
    );
    assert_eq!(
        together["alone_records_per_s"], alone["records_per_s"],
        "{out}"
    );
}

/// `bench live` on the embedded store: every event of the workspace committed while the
/// stream was open reaches it (at this size nothing overflows the bus), and the
/// latencies are ordered.
#[tokio::test]
async fn bench_live_receives_every_event_the_import_commits() {
    let env = TestEnv::sqlite();
    let out = env.run_ok(&["bench", "live", "--records", "200"]).await;
    let (lines, _) = json_lines(&out);
    let line = lines
        .iter()
        .find(|l| l["bench"] == "live")
        .unwrap_or_else(|| panic!("no live line: {out}"));
    let expected = line["events_expected"].as_u64().unwrap_or_default();
    // Two entities of 200 records, an event each, besides the run's own.
    assert!(expected >= 400, "{out}");
    assert_eq!(line["events_received"].as_u64(), Some(expected), "{out}");
    assert_eq!(line["events_lost"], 0, "{out}");
    let ms = |k: &str| line[k].as_f64().unwrap_or(-1.0);
    assert!(0.0 <= ms("p50_ms") && ms("p50_ms") <= ms("p99_ms"), "{out}");
    assert!(ms("p99_ms") <= ms("max_ms"), "{out}");
    // The editing client's first edit goes at once; each is timed until it is listed.
    assert!(line["own_effects"].as_u64() >= Some(1), "{out}");
    assert!(
        line["own_effect_late"].as_u64() <= line["own_effects"].as_u64(),
        "{out}"
    );
    let own = |k: &str| ms(&format!("own_effect_{k}_ms"));
    assert!(
        0.0 < own("p50") && own("p50") <= own("p99") && own("p99") <= own("max"),
        "{out}"
    );
}
