//! The audit trail: every action with its actor, correlation id and the client's request
//! id, filters, paging, and a hash chain that verifies.

use anyhow::Context;
use chrono::{DateTime, FixedOffset, SecondsFormat};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use syncledger_testkit::app::{integration_body, on_both_backends, send, Backend, TestApp};

on_both_backends!(
    audit_trail_records_filters_pages_and_verifies,
    the_person_an_app_acts_for_is_recorded_beside_its_token
);

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One request sent with a chosen request id (`x-request-id`); the server mints the
/// correlation id and keeps the client's beside it.
struct Step<'a> {
    token: &'a str,
    method: Method,
    path: String,
    body: Option<Value>,
    correlation: &'static str,
    status: StatusCode,
}

impl Step<'_> {
    async fn run(self, app: &TestApp) -> anyhow::Result<Value> {
        let mut rb = app
            .request(self.method, &self.path, self.token)
            .header("x-request-id", self.correlation);
        if let Some(body) = self.body {
            rb = rb.json(&body);
        }
        let resp = send(rb).await?;
        resp.expect(self.status);
        assert_eq!(resp.headers["x-request-id"], self.correlation);
        Ok(resp.body)
    }
}

fn step<'a>(token: &'a str, method: Method, path: String, correlation: &'static str) -> Step<'a> {
    Step {
        token,
        method,
        path,
        body: None,
        correlation,
        status: StatusCode::OK,
    }
}

/// What `record_actions` did: the integration it drove, a bystander, the operator token.
struct Recorded {
    x: String,
    y: String,
    op_id: String,
}

/// Drive an integration through its life, as the admin and as an operator.
async fn record_actions(app: &TestApp) -> anyhow::Result<Recorded> {
    let admin = app.admin.as_str();
    let (op_id, op) = app.issue_token("operator").await?;
    let created = Step {
        body: Some(integration_body("Audited")),
        status: StatusCode::CREATED,
        ..step(
            admin,
            Method::POST,
            "/v1/integrations".into(),
            "corr-create",
        )
    }
    .run(app)
    .await?;
    let x = created["id"].as_str().unwrap_or_default().to_string();
    let one = format!("/v1/integrations/{x}");
    let creds = json!({"type": "api_key", "api_key": "sk_live_audit"});
    let config = json!({"sync_config": {"direction": "push", "frequency": "manual",
        "entities": ["companies"], "conflict_strategy": "crm_wins"}});
    let steps = [
        Step {
            body: Some(creds.clone()),
            ..step(
                admin,
                Method::POST,
                format!("{one}/credentials"),
                "corr-creds",
            )
        },
        step(&op, Method::POST, format!("{one}/pause"), "corr-pause"),
        step(&op, Method::POST, format!("{one}/resume"), "corr-resume"),
        Step {
            body: Some(config),
            ..step(admin, Method::PATCH, one.clone(), "corr-patch")
        },
        Step {
            body: Some(creds),
            ..step(
                admin,
                Method::POST,
                format!("{one}/credentials"),
                "corr-rotate",
            )
        },
        // A refused command leaves no trace.
        Step {
            status: StatusCode::CONFLICT,
            ..step(admin, Method::POST, format!("{one}/resume"), "corr-refused")
        },
    ];
    for s in steps {
        s.run(app).await?;
    }
    let y = app.create_integration(admin, "Bystander").await?;
    step(admin, Method::DELETE, one, "corr-disconnect")
        .run(app)
        .await?;
    let (viewer_id, _) = app.issue_token("viewer").await?;
    let revoke = format!("/v1/tokens/{viewer_id}");
    Step {
        status: StatusCode::NO_CONTENT,
        ..step(admin, Method::DELETE, revoke, "corr-revoke")
    }
    .run(app)
    .await?;
    Ok(Recorded { x, y, op_id })
}

fn seqs(rows: &[Value]) -> Vec<i64> {
    rows.iter()
        .filter_map(|r| r["chain_seq"].as_i64())
        .collect()
}

fn actions(rows: &[Value]) -> Vec<&str> {
    rows.iter().filter_map(|r| r["action"].as_str()).collect()
}

async fn audit_trail_records_filters_pages_and_verifies(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let Recorded { x, y, op_id } = record_actions(&app).await?;
    app.caught_up().await;

    let all = app.list_all("/v1/audit", &admin, &[], 500).await?;
    let admin_actor = format!("token:{}", app.admin_id);
    let op_actor = format!("token:{op_id}");
    let expected: &[(&str, &[&str], &str)] = &[
        (
            "corr-create",
            &["IntegrationSlotReserved", "IntegrationCreated"],
            &admin_actor,
        ),
        ("corr-creds", &["CredentialsStored"], &admin_actor),
        ("corr-pause", &["IntegrationPaused"], &op_actor),
        ("corr-resume", &["IntegrationResumed"], &op_actor),
        ("corr-patch", &["SyncConfigChanged"], &admin_actor),
        ("corr-rotate", &["CredentialsRotated"], &admin_actor),
        ("corr-refused", &[], &admin_actor),
        (
            "corr-disconnect",
            &["IntegrationDisconnected", "IntegrationSlotReleased"],
            &admin_actor,
        ),
        ("corr-revoke", &["TokenRevoked"], &admin_actor),
    ];
    for (correlation, wanted, actor) in expected {
        let rows: Vec<Value> = all
            .iter()
            .filter(|r| r["request_id"] == *correlation)
            .cloned()
            .collect();
        assert_eq!(actions(&rows), *wanted, "actions of {correlation}");
        for r in &rows {
            assert_eq!(r["actor"], *actor, "{r}");
            assert_ne!(r["correlation_id"], *correlation, "{r}");
        }
    }
    let first = actions(&all);
    assert_eq!(first.first(), Some(&"WorkspaceCreated"));
    assert_eq!(first.iter().filter(|a| **a == "TokenIssued").count(), 3);

    // Every row is complete, and the rows form one unbroken chain.
    let mut prev_hash = GENESIS.to_string();
    let mut prev_time = String::new();
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["chain_seq"].as_i64(), Some(i as i64 + 1), "{r}");
        assert_eq!(r["workspace_id"], app.workspace_id.as_str());
        assert!(r["actor"].as_str().is_some_and(|a| !a.is_empty()), "{r}");
        assert!(
            r["correlation_id"].as_str().is_some_and(|c| !c.is_empty()),
            "{r}"
        );
        assert!(r["summary"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
        let time = r["time"].as_str().unwrap_or_default().to_string();
        assert!(DateTime::parse_from_rfc3339(&time).is_ok(), "time of {r}");
        assert!(time >= prev_time, "time goes backwards at {r}");
        assert_eq!(r["prev_hash"], prev_hash.as_str(), "chain broken at {r}");
        prev_hash = r["hash"].as_str().unwrap_or_default().to_string();
        prev_time = time;
        if r["aggregate_type"] == "integration" {
            assert_eq!(r["integration_id"], r["aggregate_id"], "{r}");
        }
    }

    // Filters.
    let by_x = app
        .list_all("/v1/audit", &admin, &[("integration_id", &x)], 500)
        .await?;
    assert_eq!(
        actions(&by_x),
        [
            "IntegrationCreated",
            "CredentialsStored",
            "IntegrationPaused",
            "IntegrationResumed",
            "SyncConfigChanged",
            "CredentialsRotated",
            "IntegrationDisconnected"
        ]
    );
    let by_y = app
        .list_all("/v1/audit", &admin, &[("integration_id", &y)], 500)
        .await?;
    assert_eq!(actions(&by_y), ["IntegrationCreated"]);
    let paused = app
        .list_all("/v1/audit", &admin, &[("action", "IntegrationPaused")], 500)
        .await?;
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0]["integration_id"], x.as_str());
    let by_op = app
        .list_all("/v1/audit", &admin, &[("actor", &op_actor)], 500)
        .await?;
    assert_eq!(actions(&by_op), ["IntegrationPaused", "IntegrationResumed"]);
    let both = app
        .list_all(
            "/v1/audit",
            &admin,
            &[("actor", &op_actor), ("action", "IntegrationResumed")],
            500,
        )
        .await?;
    assert_eq!(actions(&both), ["IntegrationResumed"]);
    let none = app
        .list_all("/v1/audit", &admin, &[("action", "NoSuchAction")], 500)
        .await?;
    assert!(none.is_empty());

    // from is inclusive, to exclusive: split at any row's time, the two halves are the whole.
    let all_seqs: BTreeSet<i64> = seqs(&all).into_iter().collect();
    for pivot_row in [&all[1], &all[all.len() / 2], &all[all.len() - 1]] {
        let pivot = pivot_row["time"].as_str().unwrap_or_default();
        let from = app
            .list_all("/v1/audit", &admin, &[("from", pivot)], 500)
            .await?;
        let to = app
            .list_all("/v1/audit", &admin, &[("to", pivot)], 500)
            .await?;
        let want_from: Vec<i64> = all
            .iter()
            .filter(|r| r["time"].as_str().unwrap_or_default() >= pivot)
            .filter_map(|r| r["chain_seq"].as_i64())
            .collect();
        assert_eq!(seqs(&from), want_from, "from={pivot}");
        assert!(seqs(&from).contains(&pivot_row["chain_seq"].as_i64().unwrap_or_default()));
        let mut union: BTreeSet<i64> = seqs(&from).into_iter().collect();
        let lower: BTreeSet<i64> = seqs(&to).into_iter().collect();
        assert!(union.is_disjoint(&lower), "from and to overlap at {pivot}");
        union.extend(lower);
        assert_eq!(union, all_seqs, "from + to miss rows at {pivot}");
        // The same instant in another offset selects the same rows.
        let shifted = DateTime::parse_from_rfc3339(pivot)?
            .with_timezone(&FixedOffset::east_opt(2 * 3600).context("a +02:00 offset")?)
            .to_rfc3339_opts(SecondsFormat::Micros, false);
        let from_shifted = app
            .list_all("/v1/audit", &admin, &[("from", &shifted)], 500)
            .await?;
        assert_eq!(seqs(&from_shifted), seqs(&from), "from={shifted}");
    }
    let future = app
        .list_all(
            "/v1/audit",
            &admin,
            &[("from", "2999-01-01T00:00:00Z")],
            500,
        )
        .await?;
    assert!(future.is_empty());
    let past = app
        .list_all("/v1/audit", &admin, &[("to", "2000-01-01T00:00:00Z")], 500)
        .await?;
    assert!(past.is_empty());

    // Paging by cursor gives the same rows, filtered or not.
    for limit in [1, 2, 3] {
        assert_eq!(
            app.list_all("/v1/audit", &admin, &[], limit).await?,
            all,
            "limit {limit}"
        );
        let paged = app
            .list_all("/v1/audit", &admin, &[("integration_id", &x)], limit)
            .await?;
        assert_eq!(paged, by_x, "filtered, limit {limit}");
    }

    // The chain verifies, for the admin and for an auditor.
    let (_, auditor) = app.issue_token("auditor").await?;
    app.caught_up().await;
    let total = app.list_all("/v1/audit", &auditor, &[], 500).await?.len();
    for token in [&admin, &auditor] {
        let verify = app.get("/v1/audit/verify", token).await?;
        let body = verify.expect(StatusCode::OK);
        assert_eq!(body["ok"], true, "{}", verify.text);
        assert_eq!(
            body["checked"].as_u64(),
            Some(total as u64),
            "{}",
            verify.text
        );
        assert_eq!(body["broken_at"], Value::Null);
    }
    app.finish().await
}

/// An app acting for one of its users names them in `X-Acting-For`: every event the
/// request causes carries it, the trail shows it beside the token (list and export), and
/// the chain, which covers the events' metadata, still verifies. A value that is not 1 to
/// 254 visible characters is 400 naming the header, and nothing is written.
async fn the_person_an_app_acts_for_is_recorded_beside_its_token(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let created = send(
        app.request(Method::POST, "/v1/integrations", &app.admin)
            .header("x-acting-for", "ada@example.com")
            .json(&integration_body("For Ada")),
    )
    .await?;
    let id = created.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("/v1/integrations/{id}");
    let mut config = syncledger_testkit::app::sync_config();
    config["interval_minutes"] = json!(120);
    app.patch(&path, &app.admin, json!({"sync_config": config.clone()}))
        .await?
        .expect(StatusCode::OK);
    let before = app.event_count().await?;
    config["interval_minutes"] = json!(240);
    for bad in ["ada lovelace", "", &"a".repeat(255)] {
        let refused = send(
            app.request(Method::PATCH, &path, &app.admin)
                .header("x-acting-for", bad)
                .json(&json!({"sync_config": config.clone()})),
        )
        .await?;
        refused.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "X-Acting-For");
    }
    assert_eq!(
        app.event_count().await?,
        before,
        "a refused request wrote something"
    );

    app.caught_up().await;
    let trail = app
        .list_all("/v1/audit", &app.admin, &[("integration_id", &id)], 100)
        .await?;
    let acted = |action: &str| {
        trail
            .iter()
            .find(|e| e["action"] == action)
            .map(|e| (e["actor"].clone(), e["acting_for"].clone()))
    };
    let (actor, person) = acted("IntegrationCreated").context("the creation's entry")?;
    assert!(
        actor.as_str().is_some_and(|a| a.starts_with("token:")),
        "{actor}"
    );
    assert_eq!(person, "ada@example.com");
    let (_, person) = acted("SyncConfigChanged").context("the change's entry")?;
    assert_eq!(person, Value::Null, "the change named nobody");

    let csv = app
        .get(
            &format!("/v1/audit/export?format=csv&integration_id={id}"),
            &app.admin,
        )
        .await?;
    let header = csv.text.lines().next().unwrap_or_default();
    assert!(header.ends_with(",acting_for"), "{header}");
    assert!(csv.text.contains(",ada@example.com"), "{}", csv.text);
    let verify = app.get("/v1/audit/verify", &app.admin).await?;
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true, "{}", verify.text);
    app.finish().await
}
