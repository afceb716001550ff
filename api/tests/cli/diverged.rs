//! `diverged`: the fields a rollback left diverged from an integration's CRM, listed and
//! settled from the command line, as `/v1/integrations/{id}/diverged` does.

use chrono::Utc;
use serde_json::Value;
use std::collections::BTreeMap;
use syncledger_domain::merge::MergePolicy;
use syncledger_domain::record::{Divergence, Record, RecordCommand, Source};
use syncledger_domain::rollback::Compensation;
use syncledger_domain::{ConflictStrategy, Entity, Integration, IntegrationCommand, SyncConfig};
use syncledger_store::Metadata;
use syncledger_testkit::binary::{describe, stderr, TestEnv};

fn text(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// An integration and one record whose `name` a rollback left diverged: the app holds
/// "Ada", the CRM "Ada L".
async fn seed(env: &TestEnv, workspace: &str) -> (String, String) {
    let store = env.store().await;
    let meta = Metadata::new("test", workspace, uuid::Uuid::now_v7().to_string());
    let integration = uuid::Uuid::now_v7().to_string();
    store
        .cqrs::<Integration>()
        .execute(
            &integration,
            IntegrationCommand::Create {
                integration_id: integration.clone(),
                workspace_id: workspace.into(),
                provider: "hubspot".into(),
                name: "Main".into(),
                sync_config: SyncConfig::default(),
                base_url: None,
                spec: None,
                at: Utc::now(),
            },
            &meta,
        )
        .await
        .expect("create the integration");
    let record = uuid::Uuid::now_v7().to_string();
    let records = store.cqrs::<Record>();
    let fields = BTreeMap::from([("name".to_string(), text("Ada L"))]);
    records
        .execute(
            &record,
            RecordCommand::Ingest {
                record_id: record.clone(),
                workspace_id: workspace.into(),
                entity: Entity::Contacts,
                integration_id: integration.clone(),
                remote_id: "101".into(),
                remote_updated_at: Utc::now(),
                remote: fields.clone(),
                fields,
                policy: MergePolicy {
                    strategy: ConflictStrategy::CrmWins,
                    always: BTreeMap::new(),
                },
                run_id: "pull".into(),
                at: Utc::now(),
            },
            &meta,
        )
        .await
        .expect("import the record");
    let state = records.load(&record).await.expect("the record");
    let mut link = state.links[&integration].clone();
    link.diverged.insert(
        "name".into(),
        Divergence {
            app: text("Ada"),
            crm: text("Ada L"),
            rollback_run_id: "rollback".into(),
        },
    );
    let mut restored = state.fields["name"].clone();
    restored.value = text("Ada");
    let compensation = Compensation {
        run_id: "rollback".into(),
        reverts_run_id: "pull".into(),
        fields: BTreeMap::from([("name".to_string(), Some(restored))]),
        links: BTreeMap::from([(integration.clone(), Some(link))]),
        at: Utc::now(),
        ..Compensation::default()
    };
    records
        .execute(&record, RecordCommand::RollBack(compensation), &meta)
        .await
        .expect("roll the pull back");
    store.close().await;
    (integration, record)
}

#[tokio::test]
async fn diverged_lists_and_settles_from_the_command_line() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let (integration, record) = seed(&env, &ws.id).await;

    let listed: Value = serde_json::from_str(
        &env.run_ok(&["diverged", "--integration", &integration])
            .await,
    )
    .expect("a JSON list");
    assert_eq!(listed[0]["record_id"], record.as_str(), "{listed}");
    assert_eq!(listed[0]["fields"]["name"]["app"], "Ada", "{listed}");
    assert_eq!(listed[0]["fields"]["name"]["crm"], "Ada L", "{listed}");

    // A record with nothing diverged is refused, and nothing changes.
    let out = env
        .run(&[
            "diverged",
            "--integration",
            &integration,
            "--keep",
            "crm",
            "--record",
            "no-such-record",
        ])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no-such-record"),
        "{}",
        describe(&out)
    );

    let settled: Value = serde_json::from_str(
        &env.run_ok(&["diverged", "--integration", &integration, "--keep", "crm"])
            .await,
    )
    .expect("a JSON line");
    assert_eq!(
        (&settled["records"], &settled["fields"]),
        (&1.into(), &1.into())
    );

    let store = env.store().await;
    let state = store
        .cqrs::<Record>()
        .load(&record)
        .await
        .expect("the record");
    store.close().await;
    assert_eq!(state.fields["name"].value, text("Ada L"));
    assert_eq!(
        state.fields["name"].source,
        Source::Crm {
            integration_id: integration.clone(),
            decided_by: Some("cli".into()),
        }
    );
    assert!(state.links[&integration].diverged.is_empty());
    let listed = env
        .run_ok(&["diverged", "--integration", &integration])
        .await;
    assert_eq!(listed.trim(), "[]");

    let out = env
        .run(&["diverged", "--integration", "no-such-integration"])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("not found"), "{}", describe(&out));
}
