//! Credentials set through the API never come back out: not in a response, an event on the
//! stream, a log line, a `Debug` string, or any plaintext byte of the database.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row;
use syncledger_domain::Integration;
use syncledger_store::Position;
use syncledger_testkit::app::{
    captured_logs, on_both_backends, random_hex, Backend, Resp, Sse, TestApp,
};
use syncledger_vault::{ExposeSecret, Sealed};

on_both_backends!(credentials_never_leak);

struct Secrets {
    api_key: String,
    rotated_key: String,
    password: String,
}

impl Secrets {
    fn all(&self) -> [&str; 3] {
        [&self.api_key, &self.rotated_key, &self.password]
    }

    #[track_caller]
    fn assert_absent(&self, what: &str, text: &str) {
        for s in self.all() {
            assert!(!text.contains(s), "{what} contains the secret {s}:\n{text}");
        }
    }

    #[track_caller]
    fn assert_absent_bytes(&self, what: &str, bytes: &[u8]) {
        for s in self.all() {
            let found = bytes.windows(s.len()).any(|w| w == s.as_bytes());
            assert!(!found, "{what} contains the secret {s} in plaintext");
        }
    }
}

async fn credentials_never_leak(backend: Backend) -> anyhow::Result<()> {
    let logs = captured_logs();
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let secrets = Secrets {
        api_key: format!("sk_live_{}", random_hex()),
        rotated_key: format!("sk_live_{}", random_hex()),
        password: format!("pw_{}", random_hex()),
    };
    let marker = format!("Leak check {}", random_hex());
    let admin = app.admin.clone();
    let mut stream = Sse::open(&app, &admin).await?;
    let keyed = app.create_integration(&admin, &marker).await?;
    let basic = app.create_integration(&admin, "Basic auth").await?;

    let mut responses: Vec<Resp> = Vec::new();
    responses.push(app.set_api_key(&admin, &keyed, &secrets.api_key).await?);
    responses.push(
        app.set_api_key(&admin, &keyed, &secrets.rotated_key)
            .await?,
    );
    let body = json!({"type": "basic", "username": "svc-user", "password": secrets.password});
    let resp = app
        .post(
            &format!("/v1/integrations/{basic}/credentials"),
            &admin,
            body,
        )
        .await?;
    assert_eq!(resp.expect(StatusCode::OK)["credential_kind"], "basic");
    responses.push(resp);
    // A failed credentials call must not echo the secret either.
    let bad = json!({"type": "api_key", "api_key": secrets.api_key, "extra": secrets.password});
    let resp = app
        .post(
            &format!("/v1/integrations/{keyed}/credentials"),
            &admin,
            bad,
        )
        .await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "extra");
    responses.push(resp);
    let malformed = format!(r#"{{"type": "api_key", "api_key": "{}"#, secrets.api_key);
    let resp = syncledger_testkit::app::send(
        app.request(
            reqwest::Method::POST,
            &format!("/v1/integrations/{keyed}/credentials"),
            &admin,
        )
        .header("content-type", "application/json")
        .body(malformed),
    )
    .await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "malformed_json", "");
    responses.push(resp);
    let gone = app
        .delete(&format!("/v1/integrations/{basic}"), &admin)
        .await?;
    responses.push(gone);

    // Every API response.
    for path in [
        format!("/v1/integrations/{keyed}"),
        format!("/v1/integrations/{basic}"),
        "/v1/integrations".to_string(),
        "/v1/tokens".to_string(),
        "/v1/audit/verify".to_string(),
    ] {
        responses.push(app.get(&path, &admin).await?);
    }
    for r in &responses {
        secrets.assert_absent("an API response", &r.text);
    }
    app.caught_up().await;
    let audit = app.list_all("/v1/audit", &admin, &[], 500).await?;
    secrets.assert_absent("the audit list", &serde_json::to_string(&audit)?);

    // Every event on the stream, down to the disconnect.
    stream
        .wait_for(
            "IntegrationDisconnected of the basic-auth integration",
            |e| e.event == "IntegrationDisconnected" && e.data["aggregate_id"] == basic.as_str(),
        )
        .await?;
    let credential_events: Vec<_> = stream
        .seen
        .iter()
        .filter(|e| e.event.starts_with("Credentials"))
        .collect();
    assert_eq!(
        credential_events.len(),
        3,
        "stored, rotated, stored (basic)"
    );
    for e in &stream.seen {
        secrets.assert_absent("an SSE event", &e.raw);
    }
    for e in credential_events {
        let secret = &e.data["payload"];
        assert!(secret.to_string().contains("[redacted]"), "{}", e.raw);
    }
    drop(stream);

    // The database: raw bytes on SQLite, every table as text on PostgreSQL. The integration's
    // name is stored in plaintext, which shows the search itself works.
    match backend {
        Backend::Sqlite => {
            let files = data_dir_bytes(&app)?;
            assert!(
                files.iter().any(|(n, _)| n == "syncledger.db"),
                "{:?}",
                names(&files)
            );
            let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
            assert!(
                contains(&all, marker.as_bytes()),
                "the name is not in the database files"
            );
            for (name, bytes) in &files {
                secrets.assert_absent_bytes(name, bytes);
            }
        }
        Backend::Postgres => {
            let dump = postgres_dump(&app).await?;
            assert!(
                dump.iter().any(|(_, t)| t.contains(&marker)),
                "the name is in no table"
            );
            for (table, text) in &dump {
                secrets.assert_absent(&format!("table {table}"), text);
            }
        }
    }

    // Debug output of whatever holds the credential.
    let aggregate: Integration = app.state.integrations.load(&keyed).await?;
    let sealed = aggregate.secret.clone().map(|s| Sealed {
        key_id: s.key_id,
        nonce: s.nonce,
        ciphertext: s.ciphertext,
    });
    let sealed = sealed.ok_or_else(|| anyhow::anyhow!("the integration has no secret"))?;
    let opened = app.state.vault.open(&app.workspace_id, &sealed).await?;
    // The vault does hold the rotated key: the ciphertext is the real thing.
    let plain = String::from_utf8_lossy(opened.expose_secret()).to_string();
    assert!(
        plain.contains(&secrets.rotated_key),
        "the sealed value is not the key"
    );
    let events = app.state.store.feed().read(Position::START, 10_000).await?;
    let bus_events: Vec<_> = events
        .iter()
        .map(syncledger_bus::BusEvent::from_stored)
        .collect();
    let workspace = app.state.workspaces.load(&app.workspace_id).await?;
    let debug = [
        format!("{aggregate:?}"),
        format!("{sealed:?}"),
        format!("{opened:?}"),
        format!("{events:?}"),
        format!("{bus_events:?}"),
        format!("{workspace:?}"),
        format!("{:?}", app.state.vault),
        format!("{:?}", app.state.store),
        format!("{:?}", app.state.nats),
        format!("{:?}", responses),
    ];
    for text in &debug {
        secrets.assert_absent("a Debug string", text);
    }

    // And no log line.
    let logged = logs.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(!logged.is_empty(), "no log line was captured");
    secrets.assert_absent_bytes("the logs", &logged);
    assert!(
        !contains(&logged, admin.as_bytes()),
        "the admin bearer token was logged"
    );
    app.finish().await
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn names(files: &[(String, Vec<u8>)]) -> Vec<&str> {
    files.iter().map(|(n, _)| n.as_str()).collect()
}

/// Every file in the data directory (database, WAL, shared memory, key file), as bytes.
fn data_dir_bytes(app: &TestApp) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(app.data_dir.path())? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().to_string();
            files.push((name, std::fs::read(entry.path())?));
        }
    }
    Ok(files)
}

/// Every row of every table in the public schema, rendered as text by PostgreSQL itself.
async fn postgres_dump(app: &TestApp) -> anyhow::Result<Vec<(String, String)>> {
    let pool = &app.state.store.any;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    for wanted in [
        "events",
        "integration_status",
        "audit_log",
        "data_keys",
        "api_tokens",
    ] {
        assert!(
            tables.iter().any(|t| t == wanted),
            "no table {wanted} in {tables:?}"
        );
    }
    let mut dump = Vec::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT t::text AS row FROM \"{table}\" t"))
            .fetch_all(pool)
            .await?;
        let mut text = String::new();
        for row in rows {
            text.push_str(&row.try_get::<String, _>("row")?);
            text.push('\n');
        }
        dump.push((table, text));
    }
    Ok(dump)
}
