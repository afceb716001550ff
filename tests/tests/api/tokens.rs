//! API tokens: issue per role, use, list without secrets, revoke.

use reqwest::StatusCode;
use serde_json::json;
use syncledger_testkit::app::{integration_body, on_both_backends, Backend, TestApp};

on_both_backends!(
    tokens_are_issued_used_listed_and_revoked,
    a_token_stops_working_when_it_expires
);

async fn tokens_are_issued_used_listed_and_revoked(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut issued = Vec::new();
    for role in ["viewer", "operator", "auditor"] {
        let label = format!("the {role}");
        let resp = app
            .post(
                "/v1/tokens",
                &app.admin,
                json!({"role": role, "label": label}),
            )
            .await?;
        let body = resp.expect(StatusCode::CREATED);
        assert_eq!(body["role"], role);
        assert_eq!(body["label"], label.as_str());
        assert!(body["created_at"].is_string(), "{body}");
        let (id, bearer) = (resp.str("id")?, resp.str("token")?);
        assert!(
            bearer.starts_with(&format!("slk_{id}_")),
            "bearer {bearer} for id {id}"
        );
        issued.push((role, id, bearer));
    }
    let bearer_of = |role: &str| -> String {
        issued
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, _, b)| b.clone())
            .unwrap_or_default()
    };

    // Each token works, with its role.
    app.get("/v1/integrations", &bearer_of("viewer"))
        .await?
        .expect(StatusCode::OK);
    let made = app
        .post(
            "/v1/integrations",
            &bearer_of("operator"),
            integration_body("By operator"),
        )
        .await?;
    made.expect(StatusCode::CREATED);
    app.get("/v1/audit", &bearer_of("auditor"))
        .await?
        .expect(StatusCode::OK);
    for role in ["viewer", "operator", "auditor"] {
        let resp = app
            .post("/v1/tokens", &bearer_of(role), json!({"role": "admin"}))
            .await?;
        resp.expect_error(StatusCode::FORBIDDEN, "forbidden", role);
    }

    // The list shows every token and no secret.
    let listed = app.get("/v1/tokens", &app.admin).await?;
    let data = listed.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(data.len(), 4, "admin + 3 issued: {}", listed.text);
    for t in &data {
        assert!(
            t.get("token").is_none(),
            "a listed token shows its bearer: {t}"
        );
        assert!(
            t.get("secret_hash").is_none(),
            "a listed token shows its hash: {t}"
        );
    }
    for bearer in issued.iter().map(|(_, _, b)| b).chain([&app.admin]) {
        let secret = bearer.rsplit('_').next().unwrap_or(bearer);
        assert!(
            !listed.text.contains(secret),
            "the list holds a token secret"
        );
    }
    let admin_row = data.iter().find(|t| t["id"] == app.admin_id.as_str());
    assert_eq!(admin_row.map(|t| t["role"].clone()), Some(json!("admin")));

    // Revoke the viewer: it stops working at once, shows as revoked, and can't be revoked twice.
    let (_, viewer_id, viewer) = issued[0].clone();
    let revoked = app
        .delete(&format!("/v1/tokens/{viewer_id}"), &app.admin)
        .await?;
    revoked.expect(StatusCode::NO_CONTENT);
    assert!(revoked.text.is_empty());
    let refused = app.get("/v1/integrations", &viewer).await?;
    refused.expect_error(StatusCode::UNAUTHORIZED, "unauthorized", "");
    let listed = app.list_all("/v1/tokens", &app.admin, &[], 1).await?;
    assert_eq!(listed.len(), 4, "a revoked token stays listed");
    let row = listed.iter().find(|t| t["id"] == viewer_id.as_str());
    assert!(
        row.is_some_and(|t| t["revoked_at"].is_string()),
        "{listed:?}"
    );
    let live = listed.iter().filter(|t| t["revoked_at"].is_null()).count();
    assert_eq!(live, 3);
    let before = app.snapshot().await?;
    let twice = app
        .delete(&format!("/v1/tokens/{viewer_id}"), &app.admin)
        .await?;
    twice.expect_error(StatusCode::NOT_FOUND, "not_found", "");
    assert_eq!(
        app.snapshot().await?,
        before,
        "a second revoke changed something"
    );

    // The other tokens are unaffected.
    app.get("/v1/audit", &bearer_of("auditor"))
        .await?
        .expect(StatusCode::OK);
    app.get("/v1/integrations", &bearer_of("operator"))
        .await?
        .expect(StatusCode::OK);

    // An admin token issued through the API can issue tokens too.
    let (second_id, second_admin) = app.issue_token("admin").await?;
    app.issue_token_as(&second_admin, "viewer").await?;

    // One admin may revoke the other, but never the last one: the workspace would be
    // locked out. The refusal changes nothing, and the token keeps working.
    app.delete(&format!("/v1/tokens/{second_id}"), &app.admin)
        .await?
        .expect(StatusCode::NO_CONTENT);
    let before = app.snapshot().await?;
    app.delete(&format!("/v1/tokens/{}", app.admin_id), &app.admin)
        .await?
        .expect_error(
            StatusCode::CONFLICT,
            "last_admin_token",
            "last active admin",
        );
    assert_eq!(
        app.snapshot().await?,
        before,
        "a refused revoke changed something"
    );
    app.get("/v1/tokens", &app.admin)
        .await?
        .expect(StatusCode::OK);
    app.finish().await
}

/// A token's times read the same when it is issued and when it is listed, in the API's
/// time format (RFC 3339, UTC, `Z`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_times_are_consistent() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let issued = app
        .post("/v1/tokens", &app.admin, json!({"role": "viewer"}))
        .await?;
    let id = issued.str("id")?;
    app.delete(&format!("/v1/tokens/{id}"), &app.admin)
        .await?
        .expect(StatusCode::NO_CONTENT);
    let listed = app.list_all("/v1/tokens", &app.admin, &[], 50).await?;
    let row = listed
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["created_at"], issued.body["created_at"], "{row}");
    for t in &listed {
        for field in ["created_at", "revoked_at"] {
            if let Some(time) = t[field].as_str() {
                assert!(time.ends_with('Z'), "{field} {time} of {t}");
            }
        }
    }
    app.finish().await
}

/// A token issued with `expires_at` works until then and is refused (401) from then on;
/// an expiry that is not in the future, or not a time, is refused at issue (400 naming
/// `expires_at`) and issues nothing. The audit trail records the expiry.
async fn a_token_stops_working_when_it_expires(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let soon = (chrono::Utc::now() + chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let resp = app
        .post(
            "/v1/tokens",
            &app.admin,
            json!({"role": "viewer", "label": "contractor", "expires_at": soon}),
        )
        .await?;
    let body = resp.expect(StatusCode::CREATED).clone();
    assert_eq!(body["expires_at"], soon.as_str(), "{body}");
    let (id, token) = (
        body["id"].as_str().unwrap_or_default().to_string(),
        body["token"].as_str().unwrap_or_default().to_string(),
    );
    app.get("/v1/integrations", &token)
        .await?
        .expect(StatusCode::OK);
    let listed = app.get("/v1/tokens", &app.admin).await?;
    let listed = listed.expect(StatusCode::OK)["data"].clone();
    let row = listed
        .as_array()
        .and_then(|all| all.iter().find(|t| t["id"] == id.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["expires_at"], soon.as_str(), "{row}");
    app.caught_up().await;
    let audit = app.get("/v1/audit?action=TokenIssued", &app.admin).await?;
    assert!(audit.text.contains("expires"), "{}", audit.text);

    // Time passes: the stored expiry is moved into the past, as the clock would.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    sqlx::query("UPDATE api_tokens SET expires_at = $1 WHERE id = $2")
        .bind(&past)
        .bind(&id)
        .execute(&app.state.store.any)
        .await?;
    let refused = app.get("/v1/integrations", &token).await?;
    refused.expect_error(StatusCode::UNAUTHORIZED, "unauthorized", "");

    let before = app.event_count().await?;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    for expires_at in [yesterday.as_str(), "next tuesday"] {
        let resp = app
            .post(
                "/v1/tokens",
                &app.admin,
                json!({"role": "viewer", "expires_at": expires_at}),
            )
            .await?;
        resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "expires_at");
    }
    assert_eq!(
        app.event_count().await?,
        before,
        "a refused token was issued"
    );
    app.finish().await
}
