//! A record in conflict, made through the real command path: imported from a CRM, edited
//! in the app, then changed in the CRM again under manual review, so one conflict on its
//! `email` waits in the queue. Shared by the conflict pages' HTTP and browser tests.

use crate::app::TestApp;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use syncledger_domain::merge::{Fields, MergePolicy};
use syncledger_domain::record::RecordCommand;
use syncledger_domain::{ConflictStrategy, Entity};
use syncledger_store::Metadata;

/// The email the record was imported with.
pub const OLD: &str = "old@example.com";
/// The email the app changed it to.
pub const APP: &str = "app@example.com";
/// The email the CRM changed it to meanwhile.
pub const CRM: &str = "crm@example.com";

/// A CRM version of `record` with this email, changed in the CRM at `remote_updated_at`
/// and merged under `policy` as a sync would (the merge happening now).
pub async fn ingest_email(
    app: &TestApp,
    (record, integration, entity): (&str, &str, Entity),
    email: &str,
    remote_updated_at: DateTime<Utc>,
    policy: &MergePolicy,
) -> anyhow::Result<()> {
    let fields: Fields = [("email".to_string(), Some(email.to_string()))].into();
    let command = RecordCommand::Ingest {
        record_id: record.into(),
        workspace_id: app.workspace_id.clone(),
        entity,
        integration_id: integration.into(),
        remote_id: format!("crm-{record}"),
        remote_updated_at,
        remote: fields.clone(),
        fields,
        policy: policy.clone(),
        run_id: "run-test".into(),
        // When the merge happened (the conflict's detection time): now, in call order.
        at: Utc::now(),
    };
    let meta = Metadata::new(
        "worker:test",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    app.state.records.execute(record, command, &meta).await?;
    Ok(())
}

/// Manual review: both sides' changes to a field open a conflict.
pub fn manual() -> MergePolicy {
    MergePolicy {
        strategy: ConflictStrategy::ManualReview,
        always: Default::default(),
    }
}

/// A record imported with OLD, edited in the app to APP, then changed in the CRM to CRM:
/// its id and its open conflict's.
pub async fn conflicted(
    app: &TestApp,
    integration: &str,
    entity: Entity,
) -> anyhow::Result<(String, String)> {
    let record = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let key = (record.as_str(), integration, entity);
    ingest_email(app, key, OLD, now + chrono::Duration::seconds(1), &manual()).await?;
    app.patch(
        &format!("/v1/records/{record}"),
        &app.admin,
        json!({"fields": {"email": APP}}),
    )
    .await?
    .expect(StatusCode::OK);
    ingest_email(app, key, CRM, now + chrono::Duration::seconds(2), &manual()).await?;
    app.caught_up().await;
    let resp = app
        .get(&format!("/v1/conflicts?record_id={record}"), &app.admin)
        .await?;
    let list = resp.expect(StatusCode::OK).clone();
    let id = list["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(!id.is_empty(), "a conflict for {record}: {list}");
    Ok((record, id))
}
