//! `syncledger import --integration I FILE.csv`: a CSV import into an integration of a CRM
//! that publishes no API, from the command line, on SQLite and PostgreSQL: the first
//! import creates, a second with edits updates without duplicating, the run rolls back
//! with `syncledger rollback`; a bad file is refused naming its line and changes nothing;
//! an unknown integration, or one with an API, is refused.

use chrono::Utc;
use serde_json::Value;
use syncledger_domain::{ConflictStrategy, Direction, Entity, Frequency, Integration};
use syncledger_domain::{IntegrationCommand, SyncConfig};
use syncledger_store::Metadata;
use syncledger_testkit::binary::{describe, stderr, TestEnv};

async fn integration(env: &TestEnv, workspace: &str, provider: &str) -> String {
    let store = env.store().await;
    let meta = Metadata::new("test", workspace, uuid::Uuid::now_v7().to_string());
    let id = uuid::Uuid::now_v7().to_string();
    let sync_config = SyncConfig {
        direction: Direction::Pull,
        frequency: Frequency::Manual,
        entities: vec![Entity::Contacts],
        conflict_strategy: ConflictStrategy::CrmWins,
        ..SyncConfig::default()
    };
    store
        .cqrs::<Integration>()
        .execute(
            &id,
            IntegrationCommand::Create {
                integration_id: id.clone(),
                workspace_id: workspace.into(),
                provider: provider.into(),
                name: format!("{provider} clients"),
                sync_config,
                base_url: None,
                spec: None,
                at: Utc::now(),
            },
            &meta,
        )
        .await
        .expect("create the integration");
    store.close().await;
    id
}

fn line(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not one JSON line: {out:?}: {e}"))
}

async fn imports_update_and_roll_back(env: TestEnv) {
    let ws = env.create_workspace("Studio").await;
    let id = integration(&env, &ws.id, "dubsado").await;
    let file = env.data_dir().join("clients.csv");
    let path = file.to_string_lossy().into_owned();

    std::fs::write(
        &file,
        "id,email,first_name\nd1,ada@example.com,Ada\nd2,grace@example.com,Grace\n",
    )
    .expect("write the file");
    let first = line(&env.run_ok(&["import", "--integration", &id, &path]).await);
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["stats"]["created"], 2, "{first}");

    std::fs::write(
        &file,
        "first_name,id,email\nAugusta,d1,ada@example.com\nGrace,d2,grace@example.com\nKat,,kat@example.com\n",
    )
    .expect("write the file");
    let second = line(&env.run_ok(&["import", "--integration", &id, &path]).await);
    assert_eq!(
        (
            &second["stats"]["created"],
            &second["stats"]["updated"],
            &second["stats"]["unchanged"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{second}"
    );

    let run_id = second["run_id"].as_str().expect("a run id");
    let undone = line(&env.run_ok(&["rollback", run_id]).await);
    assert_eq!(undone["status"], "completed", "{undone}");
    // After the rollback, importing again is a run like any other.
    let again = line(&env.run_ok(&["import", "--integration", &id, &path]).await);
    assert_eq!(again["status"], "completed", "{again}");

    // A ragged file is refused naming its line; nothing is imported.
    std::fs::write(&file, "id,email\nd9,x@example.com\nd10\n").expect("write the file");
    let out = env.run(&["import", "--integration", &id, &path]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("line 3: 1 field(s)"),
        "{}",
        describe(&out)
    );
    let runs_before = count_runs(&env).await;
    std::fs::write(&file, b"id,name\n1,Jos\xe9\n").expect("write the file");
    let out = env.run(&["import", "--integration", &id, &path]).await;
    assert!(stderr(&out).contains("line 2"), "{}", describe(&out));
    assert_eq!(
        count_runs(&env).await,
        runs_before,
        "a refused file made a run"
    );

    let out = env
        .run(&["import", "--integration", "no-such-integration", &path])
        .await;
    assert!(stderr(&out).contains("not found"), "{}", describe(&out));
    let hubspot = integration(&env, &ws.id, "hubspot").await;
    std::fs::write(&file, "id\n1\n").expect("write the file");
    let out = env.run(&["import", "--integration", &hubspot, &path]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("has an API"), "{}", describe(&out));
    let missing = env.data_dir().join("missing.csv");
    let out = env
        .run(&["import", "--integration", &id, &missing.to_string_lossy()])
        .await;
    assert!(stderr(&out).contains("missing.csv"), "{}", describe(&out));
}

/// The sync runs in the store (each queued run is one `RunQueued` event).
async fn count_runs(env: &TestEnv) -> i64 {
    let store = env.store().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'RunQueued'")
        .fetch_one(&store.any)
        .await
        .expect("count the runs");
    store.close().await;
    n
}

#[tokio::test]
async fn import_on_sqlite() {
    imports_update_and_roll_back(TestEnv::sqlite()).await;
}

#[tokio::test]
async fn import_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        imports_update_and_roll_back(env).await;
    }
}
