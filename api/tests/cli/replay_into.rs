//! `replay --until T --into DIR`: projections as they were at T, in new SQLite files with
//! a manifest, while the live tables, checkpoints and a running server carry on untouched.

use chrono::{DateTime, SecondsFormat};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Row};
use std::path::{Path, PathBuf};
use syncledger_testkit::binary::{describe, random_hex, stderr, Api, TestEnv};

/// Every live projection table and the checkpoints.
const LIVE: [&str; 7] = [
    "integration_status",
    "audit_log",
    "sync_runs",
    "records",
    "record_links",
    "conflicts",
    "projection_checkpoints",
];

/// Every row of `table`, each column as text, in a stable order.
async fn dump(pool: &sqlx::AnyPool, postgres: bool, table: &str) -> Vec<Vec<Option<String>>> {
    let sql = if postgres {
        "SELECT column_name::text FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
    } else {
        "SELECT name FROM pragma_table_info($1) ORDER BY cid"
    };
    let columns: Vec<String> = sqlx::query_scalar(sql)
        .bind(table)
        .fetch_all(pool)
        .await
        .expect("list columns");
    assert!(!columns.is_empty(), "{table} has columns");
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("CAST({c} AS TEXT) AS {c}"))
        .collect();
    let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
    let rows = sqlx::query(&format!(
        "SELECT {} FROM {table} ORDER BY {}",
        list.join(", "),
        order.join(", ")
    ))
    .fetch_all(pool)
    .await
    .expect("dump a table");
    rows.iter()
        .map(|r| {
            (0..columns.len())
                .map(|i| r.try_get::<Option<String>, _>(i).expect("a text column"))
                .collect()
        })
        .collect()
}

async fn live_snapshot(env: &TestEnv) -> Vec<Vec<Vec<Option<String>>>> {
    let store = env.store().await;
    let mut out = Vec::new();
    for table in LIVE {
        out.push(dump(&store.any, env.is_postgres(), table).await);
    }
    store.close().await;
    out
}

async fn create_record(api: &Api, email: &str) -> String {
    let body = json!({"entity": "contacts", "fields": {"email": email, "jobtitle": "Engineer"}});
    let text = api
        .expect(
            Method::POST,
            "/v1/records",
            Some(&body),
            StatusCode::CREATED,
        )
        .await;
    let v: Value = serde_json::from_str(&text).expect("a record");
    v["id"].as_str().expect("an id").to_string()
}

/// A read-only connection to a file the replay wrote.
async fn open(path: &Path) -> sqlx::SqliteConnection {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    sqlx::SqliteConnection::connect_with(&opts)
        .await
        .expect("open the replayed database")
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read the file")))
}

async fn replay_into_shows_the_past(env: &TestEnv) {
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let integration = api.create_integration("Main").await;
    api.set_api_key(&integration, &format!("sk_live_{}", random_hex()))
        .await;
    let kept = create_record(&api, "ada@example.com").await;
    let edited = create_record(&api, "grace@example.com").await;
    env.settle().await;
    // The newest event's own instant: everything so far, nothing written after.
    let t = env.latest_recorded_at().await;
    let events_at_t = env.event_count().await;

    // After T: a new record, an edit, a paused integration.
    create_record(&api, "later@example.com").await;
    let body = json!({"fields": {"jobtitle": "Manager"}});
    api.expect(
        Method::PATCH,
        &format!("/v1/records/{edited}"),
        Some(&body),
        StatusCode::OK,
    )
    .await;
    api.expect(
        Method::POST,
        &format!("/v1/integrations/{integration}/pause"),
        None,
        StatusCode::OK,
    )
    .await;
    env.settle().await;
    let before = live_snapshot(env).await;
    let live_status = api
        .get_json(&format!("/v1/integrations/{integration}"))
        .await;

    // While the server keeps running on the same database.
    let out_dir = env.data_dir().join("audit-out");
    let until = t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let dir = out_dir.to_str().expect("a UTF-8 path");
    let args = [
        "replay",
        "--until",
        &until,
        "--projection",
        "records",
        "--projection",
        "integration_status",
        "--into",
        dir,
    ];
    let out = env.run_ok(&args).await;
    assert_eq!(out.lines().count(), 2, "one line per projection: {out}");
    assert_eq!(
        api.health().await,
        StatusCode::OK,
        "the server still answers"
    );
    assert_eq!(
        live_snapshot(env).await,
        before,
        "the live tables and checkpoints are untouched"
    );

    let stem = t.format("%Y%m%dT%H%M%S%.6fZ").to_string();
    let file = |name: &str, ext: &str| -> PathBuf { out_dir.join(format!("{name}-{stem}.{ext}")) };
    for name in ["records", "integration_status"] {
        let text = std::fs::read_to_string(file(name, "json")).expect("a manifest");
        let m: Value = serde_json::from_str(&text).expect("JSON manifest");
        assert_eq!(m["projection"], name, "{m}");
        assert_eq!(m["until"], until.as_str(), "{m}");
        assert_eq!(m["events_applied"], events_at_t, "{m}");
        let backend = if env.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        };
        assert_eq!(m["source_backend"], backend, "{m}");
        assert!(
            m["last_position"]["position"].as_i64().unwrap_or(0) > 0,
            "{m}"
        );
        assert_eq!(m["sha256"], sha256(&file(name, "sqlite")).as_str(), "{m}");
        assert!(DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap_or("")).is_ok());
        let mut db = open(&file(name, "sqlite")).await;
        let (events, position): (i64, i64) = sqlx::query_as(
            "SELECT events, position FROM projection_checkpoints WHERE projection = $1",
        )
        .bind(name)
        .fetch_one(&mut db)
        .await
        .expect("the replay's checkpoint");
        assert_eq!(events, events_at_t);
        assert_eq!(Some(position), m["last_position"]["position"].as_i64());
        let events_copied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&mut db)
            .await
            .expect("count events");
        assert_eq!(
            events_copied, 0,
            "the file holds the read model, not the log"
        );
    }

    // The records as they were at T: two of them, the edited one before its edit.
    let mut db = open(&file("records", "sqlite")).await;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, fields FROM records ORDER BY id")
        .fetch_all(&mut db)
        .await
        .expect("records");
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let mut expected = vec![kept.as_str(), edited.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let fields: Value =
        serde_json::from_str(&rows[ids.iter().position(|i| *i == edited).unwrap_or(0)].1)
            .expect("fields JSON");
    assert_eq!(fields["jobtitle"]["value"], "Engineer", "{fields}");

    // The integration as it was: not paused yet.
    let mut db = open(&file("integration_status", "sqlite")).await;
    let status: String = sqlx::query_scalar("SELECT status FROM integration_status WHERE id = $1")
        .bind(&integration)
        .fetch_one(&mut db)
        .await
        .expect("the integration's row");
    assert_eq!(live_status["status"], "paused");
    assert_ne!(status, "paused");

    // Never over an earlier replay.
    let again = env.run(&args).await;
    assert!(!again.status.success(), "{}", describe(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        describe(&again)
    );
    server.stop_ok().await;
}

#[tokio::test]
async fn replay_into_shows_the_past_on_sqlite() {
    replay_into_shows_the_past(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn replay_into_shows_the_past_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        replay_into_shows_the_past(&env).await;
    }
}

#[tokio::test]
async fn replay_refuses_a_past_state_in_the_live_tables_and_bad_times() {
    let env = TestEnv::sqlite();
    let dir = env.data_dir().join("out");
    let dir = dir.to_str().expect("a UTF-8 path");
    let cases: [(&[&str], &str); 3] = [
        (
            &["replay", "--until", "2026-01-01T00:00:00Z"],
            "--until needs --into",
        ),
        (
            &["replay", "--until", "yesterday", "--into", dir],
            "RFC 3339",
        ),
        (
            &[
                "replay",
                "--until",
                "2026-01-01T00:00:00Z",
                "--projection",
                "nope",
                "--into",
                dir,
            ],
            "unknown projection \"nope\"",
        ),
    ];
    for (args, needle) in cases {
        let out = env.run(args).await;
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: {}",
            describe(&out)
        );
    }
    assert!(!Path::new(dir).exists(), "nothing written");
}

/// How many items one page of `path` holds, or what went wrong.
async fn count_items(api: &Api, path: &str) -> Result<usize, String> {
    let (status, text) = api
        .send(Method::GET, path, None)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("GET {path}: {status} {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}"))?;
    Ok(v["data"].as_array().map_or(0, Vec::len))
}

/// `syncledger replay` (the live rebuild, another process) while `serve` answers on the
/// same database: every answer during it is whole, and the server carries on after.
async fn live_replay_while_serving(env: &TestEnv) {
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    api.create_integration("Main").await;
    for k in 0..40 {
        create_record(&api, &format!("c{k}@example.com")).await;
    }
    env.settle().await;
    let paths = [
        "/v1/records?limit=500",
        "/v1/audit?limit=500",
        "/v1/integrations?limit=500",
    ];
    let mut expected = Vec::new();
    for path in paths {
        expected.push(count_items(&api, path).await.expect("a first read"));
    }
    assert_eq!(expected[0], 40);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn({
        let (api, stop, expected) = (api.clone(), stop.clone(), expected.clone());
        async move {
            let (mut reads, mut wrong) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for (path, want) in paths.iter().zip(&expected) {
                    match count_items(&api, path).await {
                        Ok(n) if n == *want => {}
                        Ok(n) => wrong.push(format!("{path}: {n} items, not {want}")),
                        Err(e) => wrong.push(e),
                    }
                }
                reads += 1;
            }
            (reads, wrong)
        }
    });
    let out = env.run_ok(&["replay"]).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (reads, wrong) = reader.await.expect("the reader");
    assert!(wrong.is_empty(), "answers during the replay: {wrong:?}");
    assert!(reads > 0, "the reader read during the replay");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(": rebuilt from "))
            .count(),
        syncledger_projections::names().len(),
        "{out}"
    );

    // The server's runner follows the swapped-in tables.
    create_record(&api, "after@example.com").await;
    assert_eq!(count_items(&api, paths[0]).await, Ok(41));
    server.stop_ok().await;
}

#[tokio::test]
async fn live_replay_while_serving_on_sqlite() {
    live_replay_while_serving(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn live_replay_while_serving_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        live_replay_while_serving(&env).await;
    }
}
