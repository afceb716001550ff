//! Postgres destinations from the command line and across a crash: `syncledger
//! destinations add|list|rebuild` act as `/v1/destinations` does, and a server killed
//! while its sink has a batch written but not committed (`SYNCLEDGER_CRASH_AT=
//! sink:applied:1`) leaves the app's table untouched; the next server writes it exactly
//! as the events say, once.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use syncledger_testkit::binary::{describe, poll_until, TestEnv};
use syncledger_testkit::db::PgTestDb;

const SIGABRT: i32 = 6;
const RECORDS: usize = 30;

#[tokio::test]
async fn a_sink_killed_mid_batch_resumes_exactly_on_sqlite() {
    killed_mid_batch(TestEnv::sqlite()).await;
}

#[tokio::test]
async fn a_sink_killed_mid_batch_resumes_exactly_on_postgres() {
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    killed_mid_batch(env).await;
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The table's rows: key → (name, email, times written).
async fn rows(pool: &PgPool) -> BTreeMap<String, (String, String, i64)> {
    sqlx::query_as::<_, (String, String, String, i64)>(
        "SELECT crm_ref, given_name, coalesce(email_address, ''), writes FROM clients",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("read clients: {e}"))
    .into_iter()
    .map(|(k, n, e, w)| (k, (n, e, w)))
    .collect()
}

async fn killed_mid_batch(env: TestEnv) {
    let target = PgTestDb::create()
        .await
        .expect("PostgreSQL for the app's database");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&target.url)
        .await
        .unwrap_or_else(|e| panic!("connect to the app's database: {e}"));
    // `writes` counts the row's inserts and updates: a batch applied twice would show.
    for sql in [
        "CREATE TABLE clients (crm_ref text PRIMARY KEY, given_name text NOT NULL,
                               email_address text, writes bigint NOT NULL DEFAULT 0)",
        "CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.writes := coalesce(OLD.writes, 0) + 1; RETURN NEW; END $$",
        "CREATE TRIGGER counted BEFORE INSERT OR UPDATE ON clients
           FOR EACH ROW EXECUTE FUNCTION count_write()",
    ] {
        sqlx::query(sql)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let ws = env.create_workspace("Acme").await;

    // Records first, with the destination's future unknown to the server.
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let mut expected = BTreeMap::new();
    for i in 0..RECORDS {
        let body = json!({"entity": "contacts",
                          "fields": {"first_name": format!("Person {i}"),
                                     "email": format!(" P{i}@Example.com ")}});
        let made = api
            .expect(
                Method::POST,
                "/v1/records",
                Some(&body),
                StatusCode::CREATED,
            )
            .await;
        let made: Value = serde_json::from_str(&made).unwrap_or_default();
        let id = made["id"].as_str().unwrap_or_default().to_owned();
        expected.insert(id, (format!("Person {i}"), format!("p{i}@example.com")));
    }
    server.stop_ok().await;

    let mappings = env.data_dir().join("mappings.json");
    std::fs::write(
        &mappings,
        json!([{"entity": "contacts", "table": "clients",
                "key": {"column": "crm_ref", "source": "record_id"},
                "columns": [
                    {"column": "given_name", "field": "first_name", "type": "text", "required": true},
                    {"column": "email_address", "field": "email", "type": "text",
                     "normalise": {"kind": "email"}}]}])
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("write the mappings: {e}"));
    let mappings = mappings.to_string_lossy().into_owned();
    let add = [
        "destinations",
        "add",
        "--workspace",
        &ws.id,
        "--name",
        "App",
        "--mappings",
        &mappings,
    ];
    // Without the URL's variable: refused, nothing made.
    let refused = env.run(&add).await;
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        describe(&refused).contains("DESTINATION_DATABASE_URL"),
        "{}",
        describe(&refused)
    );
    let added = env
        .command(&add)
        .env("DESTINATION_DATABASE_URL", &target.url)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run destinations add: {e}"));
    assert!(added.status.success(), "{}", describe(&added));
    let added = lines(&String::from_utf8_lossy(&added.stdout))
        .pop()
        .unwrap_or_default();
    let id = added["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        added["tables"],
        json!([{"entity": "contacts", "table": "clients"}]),
        "{added}"
    );
    let listed = lines(
        &env.run_ok(&["destinations", "list", "--workspace", &ws.id])
            .await,
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());

    // The backfill's first batch is written in the app's database and the process dies
    // before it commits: nothing of it stays.
    let crashing = env
        .serve_with(&[], &[("SYNCLEDGER_CRASH_AT", "sink:applied:1")])
        .await;
    let stopped = crashing.exited().await;
    assert_eq!(stopped.status.signal(), Some(SIGABRT), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("crash point sink:applied reached"),
        "{}",
        stopped.stderr
    );
    assert!(
        rows(&pool).await.is_empty(),
        "an uncommitted batch left rows"
    );

    // The next server writes every row once, as the events say.
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let got = poll_until("every record in the app's table", || async {
        let r = rows(&pool).await;
        if r.len() == RECORDS {
            Ok(r)
        } else {
            Err(format!("{} rows", r.len()))
        }
    })
    .await;
    for (key, (name, email)) in &expected {
        assert_eq!(
            got.get(key),
            Some(&(name.clone(), email.clone(), 1)),
            "{key}"
        );
    }
    // A later edit follows.
    let (first, _) = expected
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_default();
    api.expect(
        Method::PATCH,
        &format!("/v1/records/{first}"),
        Some(&json!({"fields": {"first_name": "Edited"}})),
        StatusCode::OK,
    )
    .await;
    poll_until("the edit in the app's table", || async {
        let r = rows(&pool).await;
        let row = r.get(&first).map(|(n, _, w)| (n.clone(), *w));
        if row == Some(("Edited".to_owned(), 2)) {
            Ok(())
        } else {
            Err(format!("{row:?}"))
        }
    })
    .await;

    // A rebuild asked from the command line is swapped in by the running server.
    let rebuilt = lines(
        &env.run_ok(&[
            "destinations",
            "rebuild",
            "--workspace",
            &ws.id,
            "--destination",
            &id,
        ])
        .await,
    );
    assert_eq!(
        rebuilt.first().map(|d| d["generation"].clone()),
        Some(json!(1)),
        "{rebuilt:?}"
    );
    let caught_up = poll_until("the rebuild swapped in", || async {
        let v = api.get_json(&format!("/v1/destinations/{id}")).await;
        let sink = v["sink"].clone();
        if sink["caught_up"] == true && sink["rebuilding"].is_null() {
            Ok(sink)
        } else {
            Err(v.to_string())
        }
    })
    .await;
    assert_eq!(caught_up["held"], 0, "{caught_up}");
    let after = rows(&pool).await;
    assert_eq!(after.len(), RECORDS);
    assert_eq!(after[&first].0, "Edited");
    server.stop_ok().await;
    pool.close().await;
    target.cleanup().await;
}
