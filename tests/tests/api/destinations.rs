//! Postgres destinations end to end, against a plain PostgreSQL database standing in for
//! a Supabase project: schema `public`, a `clients` table whose columns differ from the
//! CRM's names (an identity primary key the app owns, an enum-typed status, a
//! `timestamptz` from a local time, a lookup into `suppliers` by email, a required name),
//! row-level security as Supabase has it. A HubSpot import reaches the table mapped and
//! normalised; an app edit, a CRM edit, a rollback's compensations and an archive follow;
//! what cannot be written is held, listed, and released; a rebuild refills the table and
//! leaves the app's policies in place; refusals name each problem and create nothing.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;
use std::time::Duration;
use syncledger_testkit::app::{connect, on_both_backends, send, wait_run, Backend, TestApp};
use syncledger_testkit::db::PgTestDb;
use syncledger_testkit::wait::poll_every;

on_both_backends!(
    an_import_and_every_change_after_it_reach_the_apps_table,
    a_mapping_that_does_not_fit_is_refused_naming_each_mismatch
);

const SUPPLIER: &str = "8c5b2d36-3b8e-4f43-9f55-2d4c7b1e0a11";
const LATE_SUPPLIER: &str = "1f0e3c27-6a4d-4b2f-8e71-5c9d0b3a2e44";

/// The app's schema, as a Supabase project would have it.
const APP_SCHEMA: &[&str] = &[
    "CREATE TYPE client_status AS ENUM ('lead', 'active', 'lost')",
    "CREATE TABLE suppliers (id uuid PRIMARY KEY, email text NOT NULL)",
    "CREATE TABLE clients (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        crm_ref text UNIQUE,
        given_name text NOT NULL,
        email_address text,
        status client_status,
        first_seen timestamptz,
        supplier_id uuid REFERENCES suppliers (id),
        archived boolean NOT NULL DEFAULT false,
        inserted_at timestamptz NOT NULL DEFAULT now())",
    "ALTER TABLE clients ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY clients_read ON clients FOR SELECT USING (true)",
];

fn mapping() -> Value {
    json!({
        "entity": "contacts",
        "table": "clients",
        "key": {"column": "crm_ref", "source": "record_id"},
        "columns": [
            {"column": "given_name", "field": "first_name", "type": "text", "required": true},
            {"column": "email_address", "field": "email", "type": "text",
             "normalise": {"kind": "email"}},
            {"column": "status", "field": "lifecycle", "type": "text",
             "normalise": {"kind": "enum", "unknown": "hold",
                           "map": {"Lead": "lead", "Customer": "active", "Churned": "lost"}}},
            {"column": "first_seen", "field": "first_seen", "type": "timestamptz",
             "normalise": {"kind": "local_time", "zone": "Europe/Berlin"}},
            {"column": "supplier_id", "field": "supplier_email", "type": "uuid",
             "normalise": {"kind": "lookup", "table": "suppliers", "by": "email",
                           "match_column": "email"}}
        ],
        "on_archive": {"action": "set", "column": "archived", "value": "true", "restored": "false"}
    })
}

/// A fresh database standing in for the app's, with its schema; the URL given to
/// syncledger carries a password (ignored by the test server's trust authentication)
/// that must never be shown back.
async fn app_database() -> anyhow::Result<(PgTestDb, PgPool, String)> {
    let db = PgTestDb::create()
        .await
        .context("PostgreSQL for the app's database")?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await?;
    for sql in APP_SCHEMA {
        sqlx::query(sql).execute(&pool).await?;
    }
    sqlx::query("INSERT INTO suppliers VALUES ($1::uuid, 'Supply@Example.com')")
        .bind(SUPPLIER)
        .execute(&pool)
        .await?;
    let url = db.url.replacen(
        "postgres://postgres@",
        "postgres://postgres:pw-n0t-sh0wn@",
        1,
    );
    anyhow::ensure!(url.contains("pw-n0t-sh0wn"), "{url}");
    Ok((db, pool, url))
}

/// The table's rows by key, as JSON objects of the mapped columns.
async fn rows(pool: &PgPool) -> anyhow::Result<BTreeMap<String, Value>> {
    let got = sqlx::query(
        "SELECT crm_ref, json_build_object('given_name', given_name, 'email', email_address,
                'status', status::text, 'first_seen', first_seen, 'supplier_id', supplier_id,
                'archived', archived)::text AS row
           FROM clients ORDER BY crm_ref",
    )
    .fetch_all(pool)
    .await?;
    got.iter()
        .map(|r| {
            let key: Option<String> = r.try_get("crm_ref")?;
            let row: String = r.try_get("row")?;
            Ok((key.unwrap_or_default(), serde_json::from_str(&row)?))
        })
        .collect()
}

/// Waits until the table's rows satisfy `ok`.
async fn rows_until(
    pool: &PgPool,
    what: &str,
    ok: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> anyhow::Result<BTreeMap<String, Value>> {
    Ok(poll_every(
        Duration::from_millis(100),
        Duration::from_secs(60),
        what,
        || async {
            match rows(pool).await {
                Ok(r) if ok(&r) => Ok(r),
                Ok(r) => Err(format!("{r:?}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await)
}

async fn held(app: &TestApp, id: &str) -> anyhow::Result<Vec<Value>> {
    let resp = app
        .get(&format!("/v1/destinations/{id}/held"), &app.admin)
        .await?;
    Ok(resp.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn held_until(
    app: &TestApp,
    id: &str,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    Ok(poll_every(
        Duration::from_millis(250),
        Duration::from_secs(60),
        what,
        || async {
            match held(app, id).await {
                Ok(h) if ok(&h) => Ok(h),
                Ok(h) => Err(format!("{h:?}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await)
}

async fn new_contact(app: &TestApp, fields: Value) -> anyhow::Result<String> {
    let resp = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "contacts", "fields": fields}),
        )
        .await?;
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

async fn edit(app: &TestApp, id: &str, fields: Value) -> anyhow::Result<()> {
    app.patch(
        &format!("/v1/records/{id}"),
        &app.admin,
        json!({ "fields": fields }),
    )
    .await?
    .expect(StatusCode::OK);
    Ok(())
}

async fn run(app: &TestApp, integration: &str, kind: &str) -> anyhow::Result<Value> {
    let resp = app
        .post(
            &format!("/v1/integrations/{integration}/sync-runs"),
            &app.admin,
            json!({ "kind": kind }),
        )
        .await?;
    let id = resp.str("id")?;
    let done = wait_run(app, &id).await?;
    assert_eq!(done["status"], "completed", "{done}");
    Ok(done)
}

async fn an_import_and_every_change_after_it_reach_the_apps_table(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (db, pool, url) = app_database().await?;
    let created = app
        .post(
            "/v1/destinations",
            &app.admin,
            json!({"name": "App database", "database_url": url, "mappings": [mapping()]}),
        )
        .await?;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let dest = created.str("id")?;
    assert_eq!(created.body["schema"], "public");
    for shown in [
        created.text.clone(),
        app.get("/v1/destinations", &app.admin).await?.text,
        app.get(&format!("/v1/destinations/{dest}"), &app.admin)
            .await?
            .text,
        app.get("/v1/audit?limit=500", &app.admin).await?.text,
    ] {
        assert!(
            !shown.contains("pw-n0t-sh0wn"),
            "the password shows: {shown}"
        );
    }

    // A HubSpot import: every contact becomes a row, its email lower-cased.
    let sandbox = syncledger_testkit::sandbox::hubspot(4).await;
    let integration = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    run(&app, &integration, "full").await?;
    let contacts = app
        .list_all(
            "/v1/records",
            &app.admin,
            &[("entity", "contacts"), ("integration_id", &integration)],
            100,
        )
        .await?;
    assert_eq!(contacts.len(), 4);
    let imported = rows_until(&pool, "the imported contacts", |r| r.len() == 4).await?;
    for c in &contacts {
        let id = c["id"].as_str().context("id")?;
        let row = &imported[id];
        assert_eq!(
            row["given_name"], c["fields"]["first_name"]["value"],
            "{row}"
        );
        let email = c["fields"]["email"]["value"].as_str().context("email")?;
        assert_eq!(row["email"], json!(email.trim().to_lowercase()), "{row}");
        assert_eq!(row["archived"], false);
    }

    // An app edit: the enum mapped, the local time in UTC, the supplier looked up.
    let first = contacts[0]["id"].as_str().context("id")?.to_owned();
    edit(
        &app,
        &first,
        json!({"lifecycle": "Customer", "first_seen": "2024-07-01 14:30",
               "supplier_email": "  SUPPLY@example.com "}),
    )
    .await?;
    let after_edit = rows_until(&pool, "the app's edit", |r| {
        r.get(&first).is_some_and(|row| row["status"] == "active")
    })
    .await?;
    let row = &after_edit[&first];
    assert_eq!(row["supplier_id"], SUPPLIER, "{row}");
    let seen = row["first_seen"].as_str().context("first_seen")?;
    let seen = chrono::DateTime::parse_from_rfc3339(seen)?;
    assert_eq!(
        seen.with_timezone(&chrono::Utc).to_rfc3339(),
        "2024-07-01T12:30:00+00:00",
        "14:30 in Berlin in summer is 12:30 UTC"
    );

    // A CRM edit arrives with the next run; rolling that run back brings the name back.
    let remote = contacts[1]["links"][0]["remote_id"]
        .as_str()
        .context("remote id")?;
    let second = contacts[1]["id"].as_str().context("id")?.to_owned();
    let before = imported[&second]["given_name"].clone();
    send(
        reqwest::Client::new()
            .post(format!("{}/_sandbox/records/contacts", sandbox.base_url()))
            .json(&json!({"id": remote, "properties": {"firstname": "Renamed"}})),
    )
    .await?
    .expect(StatusCode::OK);
    let incremental = run(&app, &integration, "incremental").await?;
    rows_until(&pool, "the CRM's edit", |r| {
        r.get(&second)
            .is_some_and(|row| row["given_name"] == "Renamed")
    })
    .await?;
    let run_id = incremental["id"].as_str().context("run id")?;
    let rolled = app
        .post_empty(&format!("/v1/sync-runs/{run_id}/rollback"), &app.admin)
        .await?;
    let rolled_id = rolled.str("id")?;
    wait_run(&app, &rolled_id).await?;
    rows_until(&pool, "the rollback's compensation", |r| {
        r.get(&second)
            .is_some_and(|row| row["given_name"] == before)
    })
    .await?;

    // Held: an unmapped enum value, a missing required name, a supplier nobody has.
    let prospect = new_contact(
        &app,
        json!({"first_name": "Pia", "email": "pia@example.com", "lifecycle": "Prospect"}),
    )
    .await?;
    let nameless = new_contact(&app, json!({"email": "nameless@example.com"})).await?;
    let orphan = new_contact(
        &app,
        json!({"first_name": "Otto", "supplier_email": "late@supplier.example"}),
    )
    .await?;
    let listed = held_until(&app, &dest, "three held records", |h| h.len() == 3).await?;
    let reason = |id: &str| {
        listed
            .iter()
            .find(|h| h["record_id"] == id)
            .and_then(|h| h["reason"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(reason(&prospect).contains("no enum mapping"), "{listed:?}");
    assert!(reason(&nameless).contains("required"), "{listed:?}");
    assert!(reason(&orphan).contains("no suppliers row"), "{listed:?}");
    let now = rows(&pool).await?;
    for id in [&prospect, &nameless, &orphan] {
        assert!(!now.contains_key(id.as_str()), "a held record was written");
    }
    let shown = app
        .get(&format!("/v1/destinations/{dest}"), &app.admin)
        .await?;
    assert_eq!(
        shown.expect(StatusCode::OK)["sink"]["held"],
        3,
        "{}",
        shown.text
    );

    // Released: by a later edit, and (the lookup) once the supplier exists.
    edit(&app, &prospect, json!({"lifecycle": "Lead"})).await?;
    edit(&app, &nameless, json!({"first_name": "Nora"})).await?;
    sqlx::query("INSERT INTO suppliers VALUES ($1::uuid, 'late@supplier.example')")
        .bind(LATE_SUPPLIER)
        .execute(&pool)
        .await?;
    held_until(
        &app,
        &dest,
        "every held record released",
        <[Value]>::is_empty,
    )
    .await?;
    let released = rows_until(&pool, "the released rows", |r| r.len() == 7).await?;
    assert_eq!(released[&prospect]["status"], "lead");
    assert_eq!(released[&nameless]["given_name"], "Nora");
    assert_eq!(released[&orphan]["supplier_id"], LATE_SUPPLIER);

    // An archive marks the row, as the mapping says.
    app.post_empty(&format!("/v1/records/{prospect}/archive"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    let live = rows_until(&pool, "the archive", |r| {
        r.get(&prospect).is_some_and(|row| row["archived"] == true)
    })
    .await?;

    // A rebuild refills the table from the log: a row syncledger never wrote under a key
    // is gone, the others are as they were, and the app's row-level security stays.
    sqlx::query("INSERT INTO clients (crm_ref, given_name) VALUES ('stray', 'Stray')")
        .execute(&pool)
        .await?;
    let ids_before: Vec<i64> = sqlx::query_scalar("SELECT id FROM clients WHERE crm_ref = $1")
        .bind(&first)
        .fetch_all(&pool)
        .await?;
    let asked = app
        .post_empty(&format!("/v1/destinations/{dest}/rebuild"), &app.admin)
        .await?;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    assert_eq!(asked.body["generation"], 1);
    let rebuilt = rows_until(&pool, "the rebuild swapped in", |r| {
        !r.contains_key("stray")
    })
    .await?;
    assert_eq!(rebuilt, live);
    let ids_after: Vec<i64> = sqlx::query_scalar("SELECT id FROM clients WHERE crm_ref = $1")
        .bind(&first)
        .fetch_all(&pool)
        .await?;
    assert_eq!(ids_after, ids_before, "the app's own ids stay");
    let policies: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_policies WHERE tablename = 'clients'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(policies, 1, "the app's policy survives the rebuild");
    let exposed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables
          WHERE table_schema = 'public' AND table_name NOT IN ('clients', 'suppliers')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        exposed, 0,
        "nothing of the sink's own is in the app's schema"
    );
    let status = poll_every(
        Duration::from_millis(250),
        Duration::from_secs(30),
        "the destination caught up after its rebuild",
        || async {
            let v = app
                .get(&format!("/v1/destinations/{dest}"), &app.admin)
                .await
                .map_err(|e| e.to_string())?;
            let sink = v.body["sink"].clone();
            if sink["caught_up"] == true && sink["rebuilding"].is_null() {
                Ok(sink)
            } else {
                Err(v.text)
            }
        },
    )
    .await;
    assert_eq!(status["held"], 0, "{status}");
    assert!(status["last_error"].is_null(), "{status}");

    sandbox.shutdown().await;
    pool.close().await;
    db.cleanup().await;
    app.finish().await
}

async fn a_mapping_that_does_not_fit_is_refused_naming_each_mismatch(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (db, pool, url) = app_database().await?;
    let mut wrong = mapping();
    wrong["columns"][0]["column"] = json!("full_name");
    wrong["columns"][1] = json!({"column": "email_address", "field": "email", "type": "integer"});
    wrong["columns"][2]["normalise"]["map"]["Partner"] = json!("partner");
    let mut other_table = mapping();
    other_table["table"] = json!("customers");
    for (body, needles) in [
        (
            json!({"name": "x", "database_url": url, "mappings": [wrong]}),
            vec![
                "\"full_name\" (mapped) does not exist",
                "\"email_address\" is text",
                "no enum label \"partner\"",
                "\"given_name\" is NOT NULL without a default and is not mapped",
            ],
        ),
        (
            json!({"name": "x", "database_url": url, "mappings": [other_table]}),
            vec!["table \"customers\" does not exist"],
        ),
        (
            json!({"name": "x", "database_url": "postgres://u:p@169.254.169.254:5432/db",
                   "mappings": [mapping()]}),
            vec!["database_url", "link-local"],
        ),
        (
            json!({"name": "x", "database_url": "mysql://u@127.0.0.1/db", "mappings": [mapping()]}),
            vec!["database_url"],
        ),
        (
            json!({"name": "x", "database_url": url,
                   "mappings": [{"entity": "contacts", "table": "clients; drop table suppliers",
                                 "key": {"column": "crm_ref", "source": "record_id"},
                                 "columns": [{"column": "given_name", "field": "first_name", "type": "text"}]}]}),
            vec!["mappings[0].table"],
        ),
        (
            json!({"name": "x", "database_url": url,
                   "mappings": [{"entity": "contacts", "table": "clients",
                                 "key": {"column": "crm_ref", "source": "crm_id"},
                                 "columns": [{"column": "given_name", "field": "first_name", "type": "text"}]}]}),
            vec!["integration_id"],
        ),
        (
            json!({"name": "x", "database_url": url,
                   "mappings": [{"entity": "contacts", "table": "clients", "colour": "red",
                                 "key": {"column": "crm_ref", "source": "record_id"},
                                 "columns": []}]}),
            vec!["colour"],
        ),
    ] {
        let resp = app
            .post("/v1/destinations", &app.admin, body.clone())
            .await?;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text
        );
        let said = format!(
            "{} {}",
            resp.body["error"]["field"].as_str().unwrap_or_default(),
            resp.body["error"]["message"].as_str().unwrap_or_default()
        );
        for needle in needles {
            assert!(said.contains(needle), "{needle} in {said}");
        }
        assert!(!resp.text.contains("pw-n0t-sh0wn"), "{}", resp.text);
    }
    let listed = app.get("/v1/destinations", &app.admin).await?;
    assert_eq!(listed.expect(StatusCode::OK)["data"], json!([]));
    let (_, viewer) = app.issue_token("viewer").await?;
    let resp = app.get("/v1/destinations", &viewer).await?;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text);

    // Asked to, the destination creates a table that fits, and writes into it.
    let mut fresh = mapping();
    fresh["table"] = json!("people");
    fresh["columns"][2]["normalise"]["unknown"] = json!("null");
    let made = app
        .post(
            "/v1/destinations",
            &app.admin,
            json!({"name": "Created", "database_url": url, "mappings": [fresh],
                   "create_tables": true}),
        )
        .await?;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let id = new_contact(
        &app,
        json!({"first_name": "Ada", "lifecycle": "Unheard-of"}),
    )
    .await?;
    let got: (String, Option<String>) = poll_every(
        Duration::from_millis(100),
        Duration::from_secs(60),
        "the row in the created table",
        || async {
            sqlx::query_as("SELECT given_name, status FROM people WHERE crm_ref = $1")
                .bind(&id)
                .fetch_optional(&pool)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "not yet".to_owned())
        },
    )
    .await;
    assert_eq!(
        got,
        ("Ada".to_owned(), None),
        "unknown enum values are null here"
    );
    pool.close().await;
    db.cleanup().await;
    app.finish().await
}
