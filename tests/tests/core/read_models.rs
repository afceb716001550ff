//! The sync-run, record and conflict read models show what the aggregates hold: run status
//! and counters, record values with their provenance, match keys and CRM links, and each
//! conflict from detection to its end.

use sqlx::Row;
use syncledger_projections::conflicts::Conflicts;
use syncledger_projections::{Projection, Tables};
use syncledger_store::Store;
use syncledger_testkit::fixtures::{seed_conflicts, seed_sync_activity, seed_workspace};
use syncledger_testkit::projections::{all_events, runner};
use syncledger_testkit::rows::dump;
use syncledger_testkit::{feed_settled, with_postgres, with_sqlite};

async fn runs_and_records_are_projected(store: Store) -> anyhow::Result<()> {
    let ws = seed_workspace(&store, "Acme").await?;
    let integration = &ws.integrations[0].id;
    let activity = seed_sync_activity(&store, &ws.id, integration).await?;
    feed_settled(&store).await;
    runner(&store, 3).catch_up().await?;

    let run = sqlx::query("SELECT status, kind, trigger_kind, stats, worker, integration_id FROM sync_runs WHERE id = $1")
        .bind(&activity.run_id)
        .fetch_one(&store.any)
        .await?;
    assert_eq!(run.try_get::<String, _>("status")?, "completed");
    assert_eq!(run.try_get::<String, _>("kind")?, "full");
    assert_eq!(run.try_get::<String, _>("trigger_kind")?, "manual");
    assert_eq!(run.try_get::<String, _>("integration_id")?, *integration);
    assert_eq!(
        run.try_get::<Option<String>, _>("worker")?.as_deref(),
        Some("worker-test")
    );
    let stats: serde_json::Value = serde_json::from_str(&run.try_get::<String, _>("stats")?)?;
    assert_eq!(
        (stats["processed"].as_u64(), stats["created"].as_u64()),
        (Some(2), Some(2))
    );

    let kept = sqlx::query("SELECT entity, match_key, fields, version FROM records WHERE id = $1")
        .bind(&activity.kept)
        .fetch_one(&store.any)
        .await?;
    assert_eq!(kept.try_get::<String, _>("entity")?, "contacts");
    assert_eq!(
        kept.try_get::<Option<String>, _>("match_key")?.as_deref(),
        Some("ada@example.com"),
        "match keys are lower case"
    );
    let fields: serde_json::Value = serde_json::from_str(&kept.try_get::<String, _>("fields")?)?;
    assert_eq!(fields["email"]["value"], "Ada@Example.com");
    assert_eq!(fields["email"]["source"]["kind"], "crm");
    assert_eq!(fields["phone"]["value"], "+1 555 0100");
    assert_eq!(fields["phone"]["source"]["kind"], "app");
    // Imported in one event, then edited by the app.
    assert_eq!(kept.try_get::<i64, _>("version")?, 2);

    let links: Vec<(String, String)> = sqlx::query(
        "SELECT remote_id, record_id FROM record_links WHERE workspace_id = $1 AND integration_id = $2 ORDER BY remote_id",
    )
    .bind(&ws.id)
    .bind(integration)
    .fetch_all(&store.any)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("remote_id")?, r.try_get("record_id")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    assert_eq!(
        links,
        [("101".to_string(), activity.kept.clone())],
        "the deleted CRM record is no longer linked"
    );
    let unlinked: i64 =
        sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM records WHERE id = $1")
            .bind(&activity.unlinked)
            .fetch_one(&store.any)
            .await?;
    assert_eq!(
        unlinked, 1,
        "the app keeps the record whose CRM copy was deleted"
    );
    assert!(activity.events > 0);
    Ok(())
}

#[tokio::test]
async fn sqlite_runs_and_records_are_projected() -> anyhow::Result<()> {
    with_sqlite(runs_and_records_are_projected).await
}

#[tokio::test]
async fn postgres_runs_and_records_are_projected() -> anyhow::Result<()> {
    with_postgres(runs_and_records_are_projected).await
}

/// Status, resolution and who resolved each seeded conflict, by record.
async fn conflict_rows(store: &Store, record_id: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let rows = sqlx::query(
        "SELECT status, resolution, resolved_by, app_value, crm_value, resolved_value, entity,
                workspace_id
           FROM conflicts WHERE record_id = $1 ORDER BY record_version",
    )
    .bind(record_id)
    .fetch_all(&store.any)
    .await?;
    rows.iter()
        .map(|r| {
            (0..8)
                .map(|i| Ok(r.try_get::<Option<String>, _>(i)?.unwrap_or_default()))
                .collect()
        })
        .collect()
}

async fn conflicts_are_projected_once(store: Store) -> anyhow::Result<()> {
    let ws = seed_workspace(&store, "Acme").await?;
    let seeded = seed_conflicts(&store, &ws.id, &ws.integrations[0].id).await?;
    feed_settled(&store).await;
    runner(&store, 3).catch_up().await?;

    let row = |status: &str, resolution: &str, by: &str, crm: &str, value: &str| {
        [
            status,
            resolution,
            by,
            "app@example.com",
            crm,
            value,
            "contacts",
            ws.id.as_str(),
        ]
        .map(str::to_string)
        .to_vec()
    };
    let crm = "crm@example.com";
    assert_eq!(
        conflict_rows(&store, &seeded.resolved).await?,
        [row("resolved", "use_crm", "token:reviewer", crm, crm)]
    );
    assert_eq!(
        conflict_rows(&store, &seeded.ignored).await?,
        [row("ignored", "ignored", "token:reviewer", crm, "")]
    );
    assert_eq!(
        conflict_rows(&store, &seeded.open).await?,
        [row("open", "", "", crm, "")]
    );
    assert_eq!(
        conflict_rows(&store, &seeded.superseded).await?,
        [
            row("superseded", "", "", crm, ""),
            row("open", "", "", "newer@example.com", "")
        ]
    );
    assert_eq!(
        conflict_rows(&store, &seeded.auto).await?,
        [row("resolved", "auto", "policy", crm, crm)]
    );

    // Every event applied again, in one batch or one at a time, changes nothing.
    let before = dump(&store.any, "conflicts", "id").await?;
    let events = all_events(&store).await?;
    let tables = Tables::live(Conflicts.tables());
    for batch in [&events[..], &events[events.len() / 2..]] {
        let mut tx = store.any.begin().await?;
        Conflicts.apply(&mut tx, &tables, batch).await?;
        for e in batch {
            Conflicts
                .apply(&mut tx, &tables, std::slice::from_ref(e))
                .await?;
        }
        tx.commit().await?;
    }
    assert_eq!(dump(&store.any, "conflicts", "id").await?, before);
    Ok(())
}

#[tokio::test]
async fn sqlite_conflicts_are_projected_once() -> anyhow::Result<()> {
    with_sqlite(conflicts_are_projected_once).await
}

#[tokio::test]
async fn postgres_conflicts_are_projected_once() -> anyhow::Result<()> {
    with_postgres(conflicts_are_projected_once).await
}
