//! Point-in-time reads: `GET /v1/records/{id}?as_of=` and `GET /v1/integrations/{id}?as_of=`
//! answer exactly the states captured while the events were being written (through the API
//! and through sync runs against the HubSpot sandbox), and refuse what they must.

use crate::sync::{approve, edit_remote, run};
use anyhow::Context;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_domain::Plan;
use syncledger_sandbox::Sandbox;
use syncledger_testkit::app::{on_both_backends, send, sync_config, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    records_as_of_every_step,
    integrations_as_of_every_step,
    a_record_as_of_a_value_own_timestamp_shows_that_value
);

const FAR_FUTURE: &str = "9999-12-31T23:59:59Z";

/// The states of one resource, each with an instant taken after it was answered.
struct Captured {
    path: String,
    states: Vec<(DateTime<Utc>, Value)>,
}

impl Captured {
    fn new(path: String) -> Self {
        Captured {
            path,
            states: Vec::new(),
        }
    }

    /// The resource's current state (settled read models), then the client's clock.
    async fn take(&mut self, app: &TestApp) -> anyhow::Result<()> {
        app.caught_up().await;
        let resp = app.get(&self.path, &app.admin).await?;
        let state = resp.expect(StatusCode::OK).clone();
        self.states.push((Utc::now(), state));
        Ok(())
    }

    /// Every captured instant answers its state, written in UTC with nanoseconds and in
    /// another offset; each step changed the state.
    async fn check(&self, app: &TestApp) -> anyhow::Result<()> {
        let plus_two = FixedOffset::east_opt(2 * 3600).context("offset")?;
        for (i, (at, state)) in self.states.iter().enumerate() {
            for written in [
                at.to_rfc3339_opts(SecondsFormat::Nanos, true),
                at.with_timezone(&plus_two)
                    .to_rfc3339_opts(SecondsFormat::Micros, false),
            ] {
                let resp = as_of(app, &self.path, &app.admin, &written).await?;
                assert_eq!(
                    resp.expect(StatusCode::OK),
                    state,
                    "step {i}, as of {written}"
                );
            }
            if i > 0 {
                assert_ne!(&self.states[i - 1].1, state, "step {i} changed nothing");
            }
        }
        Ok(())
    }
}

async fn as_of(
    app: &TestApp,
    path: &str,
    token: &str,
    at: &str,
) -> anyhow::Result<syncledger_testkit::app::Resp> {
    send(
        app.request(Method::GET, path, token)
            .query(&[("as_of", at)]),
    )
    .await
}

/// Refusals common to both resources: before creation (404 as an unknown id), another
/// workspace (404), a malformed instant (400 naming `as_of`); the far future is now; a
/// viewer reads as for the current state.
async fn refusals(
    app: &TestApp,
    path: &str,
    unknown: &str,
    before: DateTime<Utc>,
) -> anyhow::Result<()> {
    let admin = &app.admin;
    let missing = app.get(unknown, admin).await?;
    missing.expect_error(StatusCode::NOT_FOUND, "not_found", "not found");
    let early = as_of(app, path, admin, &before.to_rfc3339()).await?;
    assert_eq!(early.status, StatusCode::NOT_FOUND, "{}", early.text);
    assert_eq!(early.body, missing.body, "the same answer as an unknown id");
    let unknown_early = as_of(app, unknown, admin, FAR_FUTURE).await?;
    assert_eq!(unknown_early.body, missing.body);

    let current = app.get(path, admin).await?;
    let future = as_of(app, path, admin, FAR_FUTURE).await?;
    assert_eq!(
        future.expect(StatusCode::OK),
        current.expect(StatusCode::OK)
    );

    for bad in [
        "yesterday",
        "",
        "2024-13-01T00:00:00Z",
        "2024-01-01 00:00:00",
    ] {
        as_of(app, path, admin, bad).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "as_of",
        );
    }
    // A raw '+' in a query string is a space: not an instant.
    send(
        app.client
            .get(app.url(&format!("{path}?as_of=2024-01-01T00:00:00+02:00")))
            .bearer_auth(admin),
    )
    .await?
    .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "as_of");

    let other = app.new_workspace("Other", Plan::Enterprise).await?;
    for at in [FAR_FUTURE.to_string(), Utc::now().to_rfc3339()] {
        let resp = as_of(app, path, &other.admin, &at).await?;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text);
        assert_eq!(resp.body, missing.body);
    }
    let (_, viewer) = app.issue_token("viewer").await?;
    let resp = as_of(app, path, &viewer, FAR_FUTURE).await?;
    assert_eq!(resp.expect(StatusCode::OK), current.expect(StatusCode::OK));
    Ok(())
}

/// A HubSpot integration on `sandbox`, connected through OAuth, syncing every hour; its
/// states are captured after it is created and after it is connected.
async fn hubspot(
    app: &TestApp,
    sandbox: &Sandbox,
    captured: &mut Captured,
) -> anyhow::Result<String> {
    let body = json!({"provider": "hubspot", "name": "Hub", "base_url": sandbox.base_url(),
                      "sync_config": sync_config()});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    captured.path = format!("/v1/integrations/{id}");
    captured.take(app).await?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let callback = approve(&resp.str("authorization_url")?).await?;
    let resp = send(app.client.get(&callback)).await?;
    assert_eq!(resp.expect(StatusCode::OK)["status"], "connected");
    captured.take(app).await?;
    Ok(id)
}

/// A record created and edited in the app, pushed to HubSpot, changed there and pulled
/// back, edited again: every state it went through is answered as of its instant.
async fn records_as_of_every_step(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(2).await;
    let integration = hubspot(&app, &sandbox, &mut Captured::new(String::new())).await?;
    let full = run(&app, &integration, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");

    let before = Utc::now();
    let body = json!({"entity": "contacts", "fields": {"email": "grace@example.com",
                      "first_name": "Grace", "last_name": "Hopper", "phone": null}});
    let resp = app.post("/v1/records", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let path = format!("/v1/records/{id}");
    let mut captured = Captured::new(path.clone());
    captured.take(&app).await?;
    for (n, fields) in [
        json!({"phone": "+1 555 0100"}),
        json!({"phone": "+1 555 0101", "title": "Rear Admiral"}),
        json!({"title": null}),
        json!({"first_name": "Grace B."}),
    ]
    .into_iter()
    .enumerate()
    {
        app.patch(&path, &app.admin, json!({ "fields": fields }))
            .await?
            .expect(StatusCode::OK);
        captured.take(&app).await.context(format!("edit {n}"))?;
    }
    // The push creates the contact in the CRM and links it.
    let pushed = run(&app, &integration, "push").await?;
    assert_eq!(pushed["stats"]["created"], 1, "{pushed}");
    captured.take(&app).await?;
    let (_, linked) = captured.states.last().context("a state")?;
    let remote_id = linked["links"][0]["remote_id"]
        .as_str()
        .context("a link")?
        .to_string();
    // A CRM user changes the job title; the next run brings it in.
    edit_remote(
        &sandbox,
        "contacts",
        &remote_id,
        json!({"jobtitle": "Computer Scientist"}),
    )
    .await?;
    let pulled = run(&app, &integration, "incremental").await?;
    assert_eq!(pulled["stats"]["updated"], 1, "{pulled}");
    captured.take(&app).await?;
    let (_, synced) = captured.states.last().context("a state")?;
    assert_eq!(synced["fields"]["title"]["source"], "crm", "{synced}");
    app.patch(
        &path,
        &app.admin,
        json!({"fields": {"phone": "+1 555 0199"}}),
    )
    .await?
    .expect(StatusCode::OK);
    captured.take(&app).await?;

    captured.check(&app).await?;
    refusals(&app, &path, "/v1/records/no-such-record", before).await?;
    sandbox.shutdown().await;
    app.finish().await
}

/// An integration created, connected, synced, paused, resumed, reconfigured, remapped,
/// given an API key and disconnected: every state is answered as of its instant.
async fn integrations_as_of_every_step(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(2).await;
    let before = Utc::now();
    let mut captured = Captured::new(String::new());
    let id = hubspot(&app, &sandbox, &mut captured).await?;
    let path = captured.path.clone();
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    captured.take(&app).await?;
    let (_, synced) = captured.states.last().context("a state")?;
    assert!(synced["last_sync_at"].is_string(), "{synced}");
    assert!(synced["next_sync_at"].is_string(), "{synced}");

    for step in ["pause", "resume"] {
        app.post_empty(&format!("{path}/{step}"), &app.admin)
            .await?
            .expect(StatusCode::OK);
        captured.take(&app).await?;
    }
    let mut config = sync_config();
    config["interval_minutes"] = json!(120);
    app.patch(&path, &app.admin, json!({ "sync_config": config }))
        .await?
        .expect(StatusCode::OK);
    captured.take(&app).await?;
    let mappings = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "both"},
        {"crm_field": "phone", "app_field": "mobile", "direction": "pull"}
    ], "filter": null});
    send(
        app.request(
            Method::PUT,
            &format!("{path}/mappings/contacts"),
            &app.admin,
        )
        .json(&mappings),
    )
    .await?
    .expect(StatusCode::OK);
    captured.take(&app).await?;
    app.set_api_key(&app.admin, &id, "pat-na1-as-of-test")
        .await?;
    captured.take(&app).await?;
    app.delete(&path, &app.admin).await?.expect(StatusCode::OK);
    captured.take(&app).await?;
    let (_, gone) = captured.states.last().context("a state")?;
    assert_eq!(gone["status"], "disconnected", "{gone}");
    assert!(
        !captured
            .states
            .iter()
            .any(|(_, s)| s.to_string().contains("pat-na1-as-of-test")),
        "no state shows the key"
    );

    captured.check(&app).await?;
    refusals(&app, &path, "/v1/integrations/no-such-integration", before).await?;
    sandbox.shutdown().await;
    app.finish().await
}

/// The instant a record shows for a value (`fields.*.at`) is inclusive: as of exactly
/// that instant the record has the value; a microsecond earlier it had the previous one
/// (or did not exist).
async fn a_record_as_of_a_value_own_timestamp_shows_that_value(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let body = json!({"entity": "contacts", "fields": {"email": "ada@example.com"}});
    let resp = app.post("/v1/records", &app.admin, body).await?;
    let created = resp.expect(StatusCode::CREATED).clone();
    let id = resp.str("id")?;
    let path = format!("/v1/records/{id}");
    let resp = app
        .patch(
            &path,
            &app.admin,
            json!({"fields": {"email": "ada@lovelace.example"}}),
        )
        .await?;
    let edited = resp.expect(StatusCode::OK).clone();
    let stamp = |view: &Value| -> anyhow::Result<DateTime<Utc>> {
        let at = view["fields"]["email"]["at"].as_str().context("an at")?;
        Ok(DateTime::parse_from_rfc3339(at)?.with_timezone(&Utc))
    };
    let as_of = |t: DateTime<Utc>| {
        let q = t
            .to_rfc3339_opts(SecondsFormat::Micros, true)
            .replace('+', "%2B");
        format!("{path}?as_of={q}")
    };
    let micro = chrono::Duration::microseconds(1);
    let (first, second) = (stamp(&created)?, stamp(&edited)?);
    app.get(&as_of(first - micro), &app.admin)
        .await?
        .expect(StatusCode::NOT_FOUND);
    for (t, email) in [
        (first, "ada@example.com"),
        (second - micro, "ada@example.com"),
        (second, "ada@lovelace.example"),
    ] {
        let resp = app.get(&as_of(t), &app.admin).await?;
        let body = resp.expect(StatusCode::OK);
        assert_eq!(
            body["fields"]["email"]["value"], email,
            "as of {t}: {}",
            resp.text
        );
    }
    app.finish().await
}
