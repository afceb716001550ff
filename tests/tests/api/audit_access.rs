//! Who may do what with the audit trail: an auditor reads the trail and nothing else, no
//! role can change it, no secret ever reaches it, and an altered event is named by
//! `GET /v1/audit/verify`.

use crate::audit_export::export;
use crate::sync::approve;
use anyhow::Context;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::Row;
use syncledger_sandbox::SandboxConfig;
use syncledger_store::Position;
use syncledger_testkit::app::{on_both_backends, send, Backend, TestApp};
use syncledger_testkit::sandbox;
use syncledger_vault::Sealed;

on_both_backends!(
    an_auditor_reads_the_trail_and_nothing_else,
    no_role_can_change_the_trail,
    no_secret_reaches_the_trail_or_its_exports,
    verify_names_an_altered_event,
);

/// A concrete path for a documented route template.
fn concrete(template: &str, integration: &str, record: &str) -> String {
    let id = if template.starts_with("/v1/integrations/") {
        integration
    } else if template.starts_with("/v1/records/") {
        record
    } else {
        "0190c4e2-9f5e-7a4b-8c1d-2e3f4a5b6c7d"
    };
    template
        .replace("{id}", id)
        .replace("{entity}", "contacts")
        .replace("{field}", "email")
}

async fn an_auditor_reads_the_trail_and_nothing_else(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let (_, auditor) = app.issue_token("auditor").await?;
    let integration = app.create_integration(&admin, "Watched").await?;
    let record = app
        .post(
            "/v1/records",
            &admin,
            json!({"entity": "contacts", "fields": {"email": "a@b.c"}}),
        )
        .await?;
    let record = record.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    app.caught_up().await;
    let before = app.snapshot().await?;

    // Every operation the API documents as needing a token.
    let doc = app.get("/v1/openapi.json", "").await?;
    let paths = doc.expect(StatusCode::OK)["paths"]
        .as_object()
        .cloned()
        .context("paths")?;
    let (mut refused, mut allowed) = (Vec::new(), Vec::new());
    for (template, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            if op.get("security").is_none() {
                continue; // public: health, the document itself, OAuth callback, webhooks
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let path = concrete(template, &integration, &record);
            let mut rb = app.request(method.clone(), &path, &auditor);
            if method != Method::GET && method != Method::DELETE {
                rb = rb.json(&json!({}));
            }
            let resp = send(rb).await?;
            if template.starts_with("/v1/audit") {
                assert_eq!(
                    resp.status,
                    StatusCode::OK,
                    "{method} {path}: {}",
                    resp.text
                );
                allowed.push(template.clone());
            } else {
                resp.expect_error(StatusCode::FORBIDDEN, "forbidden", "auditor");
                refused.push(format!("{method} {template}"));
            }
        }
    }
    allowed.sort();
    assert_eq!(
        allowed,
        ["/v1/audit", "/v1/audit/export", "/v1/audit/verify"]
    );
    for wanted in [
        "GET /v1/records",
        "POST /v1/records",
        "PATCH /v1/records/{id}",
        "GET /v1/records/{id}/history",
        "GET /v1/integrations",
        "POST /v1/integrations",
        "DELETE /v1/integrations/{id}",
        "POST /v1/integrations/{id}/credentials",
        "GET /v1/integrations/{id}/sync-runs",
        "POST /v1/integrations/{id}/sync-runs",
        "GET /v1/sync-runs/{id}",
        "POST /v1/sync-runs/{id}/cancel",
        "GET /v1/conflicts",
        "POST /v1/conflicts/{id}/resolve",
        "GET /v1/tokens",
        "POST /v1/tokens",
        "DELETE /v1/tokens/{id}",
        "GET /v1/providers",
        "GET /v1/events/stream",
    ] {
        assert!(
            refused.iter().any(|r| r == wanted),
            "{wanted} not tried: {refused:?}"
        );
    }
    assert_eq!(
        app.snapshot().await?,
        before,
        "the auditor changed something"
    );
    // An undocumented route is no way round it either.
    let resp = app.get("/v1/nowhere", &auditor).await?;
    resp.expect_error(StatusCode::NOT_FOUND, "not_found", "");
    app.finish().await
}

async fn no_role_can_change_the_trail(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut tokens = vec![app.admin.clone()];
    for role in ["operator", "viewer", "auditor"] {
        tokens.push(app.issue_token(role).await?.1);
    }
    app.create_integration(&app.admin, "Recorded").await?;
    app.caught_up().await;
    let trail = app.list_all("/v1/audit", &app.admin, &[], 500).await?;
    let events = app.event_count().await?;
    let position = trail[1]["position"].to_string();
    let seq = trail[1]["chain_seq"].to_string();
    let paths = [
        "/v1/audit".to_string(),
        "/v1/audit/verify".into(),
        "/v1/audit/export".into(),
        format!("/v1/audit/{position}"),
        format!("/v1/audit/{seq}"),
    ];
    for token in &tokens {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for path in &paths {
                let body =
                    json!({"summary": "rewritten", "hash": "0", "position": trail[1]["position"]});
                let resp = send(app.request(method.clone(), path, token).json(&body)).await?;
                assert!(
                    matches!(
                        resp.status,
                        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND
                    ),
                    "{method} {path}: {} {}",
                    resp.status,
                    resp.text
                );
                assert!(resp.body["error"]["code"].is_string(), "{}", resp.text);
            }
        }
    }
    assert_eq!(
        app.list_all("/v1/audit", &app.admin, &[], 500).await?,
        trail
    );
    assert_eq!(app.event_count().await?, events);
    let verify = app.get("/v1/audit/verify", &app.admin).await?;
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true, "{}", verify.text);
    assert_eq!(verify.body["checked"].as_u64(), Some(trail.len() as u64));
    app.finish().await
}

/// Every secret the workspace holds or has held, in any form: credentials in clear, their
/// ciphertexts and nonces as stored in events, wrapped data keys, and bearer tokens.
async fn secrets(app: &TestApp, clear: &[String]) -> anyhow::Result<Vec<String>> {
    let mut found: Vec<String> = clear.to_vec();
    let events = app
        .state
        .store
        .feed()
        .read(Position::START, 100_000)
        .await?;
    for e in events {
        if let Some(secret) = e.payload.get("secret") {
            for key in ["ciphertext", "nonce"] {
                let v = secret[key].as_str().context("a sealed secret")?;
                found.push(v.to_string());
            }
        }
    }
    let keys = sqlx::query("SELECT wrapped_key FROM data_keys")
        .fetch_all(&app.state.store.any)
        .await?;
    for k in keys {
        found.push(k.try_get("wrapped_key")?);
    }
    Ok(found)
}

async fn oauth_tokens(app: &TestApp, id: &str) -> anyhow::Result<Vec<String>> {
    let agg = app.state.integrations.load(id).await?;
    let secret = agg.secret.context("stored credentials")?;
    let sealed = Sealed {
        key_id: secret.key_id,
        nonce: secret.nonce,
        ciphertext: secret.ciphertext,
    };
    let plain = app.state.vault.open(&app.workspace_id, &sealed).await?;
    let v: Value = serde_json::from_slice(plain.expose_secret())?;
    ["access_token", "refresh_token"]
        .iter()
        .map(|k| v[*k].as_str().map(str::to_string).context("a token"))
        .collect()
}

async fn no_secret_reaches_the_trail_or_its_exports(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let mut clear = vec![admin.clone(), "sk_live_first_b7c1".to_string()];
    let keyed = app.create_integration(&admin, "Keyed").await?;
    app.set_api_key(&admin, &keyed, &clear[1]).await?;
    clear.push("sk_live_rotated_9d2e".into());
    app.set_api_key(&admin, &keyed, &clear[2]).await?;
    let basic = app.create_integration(&admin, "Basic").await?;
    let body = json!({"type": "basic", "username": "ops", "password": "hunter2-pass-5f3a"});
    app.post(
        &format!("/v1/integrations/{basic}/credentials"),
        &admin,
        body,
    )
    .await?
    .expect(StatusCode::OK);
    clear.push("hunter2-pass-5f3a".into());
    let sandbox = sandbox::hubspot_with(SandboxConfig::default()).await;
    let body = json!({"provider": "hubspot", "name": "OAuth", "base_url": sandbox.base_url(),
        "sync_config": syncledger_testkit::app::sync_config()});
    let oauth = app.post("/v1/integrations", &admin, body).await?;
    let oauth = oauth.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let started = app
        .post_empty(&format!("/v1/integrations/{oauth}/connect"), &admin)
        .await?;
    let callback = approve(&started.str("authorization_url")?).await?;
    send(app.client.get(&callback))
        .await?
        .expect(StatusCode::OK);
    clear.extend(oauth_tokens(&app, &oauth).await?);
    for role in ["operator", "auditor"] {
        clear.push(app.issue_token(role).await?.1);
    }
    app.caught_up().await;
    let secrets = secrets(&app, &clear).await?;
    // Four sealed credentials (ciphertext and nonce each) and the workspace's data key.
    let sealed = secrets.len() - clear.len();
    assert!(sealed >= 9, "{sealed} sealed secrets");

    let listed = app.get("/v1/audit?limit=500", &admin).await?;
    listed.expect(StatusCode::OK);
    let jsonl = export(&app, &admin, &[("format", "jsonl")]).await?.text;
    let csv = export(&app, &admin, &[("format", "csv")]).await?.text;
    for text in [&listed.text, &jsonl, &csv] {
        for action in ["CredentialsStored", "CredentialsRotated", "TokenIssued"] {
            assert!(text.contains(action), "no {action} in {text}");
        }
        for secret in &secrets {
            // A bearer token's secret part is what must not leak; its id is public.
            let secret = match secret.strip_prefix("slk_") {
                Some(rest) => rest.rsplit('_').next().unwrap_or(rest),
                None => secret.as_str(),
            };
            assert!(secret.len() >= 8, "{secret:?} is too short to search for");
            assert!(
                !text.contains(secret),
                "a secret ({} chars) in the trail",
                secret.len()
            );
        }
    }
    sandbox.shutdown().await;
    app.finish().await
}

/// Change one byte of the event's stored payload, bypassing every API.
async fn rewrite_payload(app: &TestApp, position: i64, from: &str, to: &str) -> anyhow::Result<()> {
    let sql = if app.state.store.is_postgres() {
        "UPDATE events SET payload = replace(payload::text, $2, $3)::json WHERE global_position = $1"
    } else {
        "UPDATE events SET payload = replace(payload, $2, $3) WHERE global_position = $1"
    };
    let done = sqlx::query(sql)
        .bind(position)
        .bind(from)
        .bind(to)
        .execute(&app.state.store.any)
        .await?;
    assert_eq!(done.rows_affected(), 1);
    Ok(())
}

async fn verify_names_an_altered_event(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (_, auditor) = app.issue_token("auditor").await?;
    let id = app.create_integration(&app.admin, "Tampered").await?;
    app.set_api_key(&app.admin, &id, "sk_live_tamper").await?;
    let record = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "contacts", "fields": {"email": "t@x.io"}}),
        )
        .await?;
    record.expect(StatusCode::CREATED);
    app.caught_up().await;
    let trail = app.list_all("/v1/audit", &auditor, &[], 500).await?;
    let created = trail
        .iter()
        .find(|r| r["action"] == "IntegrationCreated")
        .and_then(|r| r["position"].as_i64())
        .context("IntegrationCreated")?;
    let edit = trail
        .iter()
        .find(|r| r["action"] == "FieldsChanged")
        .and_then(|r| r["position"].as_i64())
        .context("FieldsChanged")?;
    for token in [&app.admin, &auditor] {
        let ok = app.get("/v1/audit/verify", token).await?;
        assert_eq!(ok.expect(StatusCode::OK)["ok"], true, "{}", ok.text);
    }
    for (position, from, to) in [
        (created, "Tampered", "Tampeted"),
        (edit, "t@x.io", "t@y.io"),
    ] {
        rewrite_payload(&app, position, from, to).await?;
        for token in [&app.admin, &auditor] {
            let resp = app.get("/v1/audit/verify", token).await?;
            let body = resp.expect(StatusCode::OK);
            assert_eq!(body["ok"], false, "{}", resp.text);
            assert_eq!(body["broken_at"].as_i64(), Some(position), "{}", resp.text);
            let reason = body["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("altered"), "{reason}");
        }
        rewrite_payload(&app, position, to, from).await?;
        let restored = app.get("/v1/audit/verify", &auditor).await?;
        assert_eq!(
            restored.expect(StatusCode::OK)["ok"],
            true,
            "{}",
            restored.text
        );
    }
    app.finish().await
}
