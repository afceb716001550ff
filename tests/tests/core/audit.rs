//! The audit hash chain: verification passes on an untouched log and names the exact
//! position where one byte of an event or of an audit row was altered.

use syncledger_domain::{Aggregate, Integration};
use syncledger_projections::audit::verify;
use syncledger_store::{EventPool, Store, StoredEvent};
use syncledger_testkit::fixtures::{seed_workspace, SeededWorkspace, EVENTS_PER_WORKSPACE};
use syncledger_testkit::projections::{all_events, runner};
use syncledger_testkit::{feed_settled, with_postgres, with_sqlite};

/// The stored payload text of the event at `position`.
async fn payload_text(store: &Store, position: i64) -> anyhow::Result<String> {
    let text = match &store.events {
        EventPool::Postgres(pool) => {
            sqlx::query_scalar("SELECT payload::text FROM events WHERE global_position = $1")
                .bind(position)
                .fetch_one(pool)
                .await?
        }
        EventPool::Sqlite(pool) => {
            sqlx::query_scalar("SELECT payload FROM events WHERE global_position = $1")
                .bind(position)
                .fetch_one(pool)
                .await?
        }
    };
    Ok(text)
}

/// Replace `from` by `to` in the stored payload of the event at `position`, bypassing
/// every API, as someone with database access would.
async fn rewrite_payload(store: &Store, position: i64, from: &str, to: &str) -> anyhow::Result<()> {
    let changed = match &store.events {
        EventPool::Postgres(pool) => sqlx::query(
            "UPDATE events SET payload = replace(payload::text, $2, $3)::json WHERE global_position = $1",
        )
        .bind(position)
        .bind(from)
        .bind(to)
        .execute(pool)
        .await?
        .rows_affected(),
        EventPool::Sqlite(pool) => {
            sqlx::query("UPDATE events SET payload = replace(payload, $2, $3) WHERE global_position = $1")
                .bind(position)
                .bind(from)
                .bind(to)
                .execute(pool)
                .await?
                .rows_affected()
        }
    };
    assert_eq!(changed, 1);
    Ok(())
}

/// Flip the first hex digit of the audit row's hash at `position`.
async fn flip_audit_hash(store: &Store, position: i64) -> anyhow::Result<()> {
    let changed = sqlx::query(
        "UPDATE audit_log
            SET hash = CASE WHEN substr(hash, 1, 1) = '0' THEN '1' ELSE '0' END || substr(hash, 2)
          WHERE position = $1",
    )
    .bind(position)
    .execute(&store.any)
    .await?
    .rows_affected();
    assert_eq!(changed, 1);
    Ok(())
}

/// The `IntegrationCreated` event of the workspace's second integration.
fn created_event<'a>(
    events: &'a [StoredEvent],
    ws: &SeededWorkspace,
) -> anyhow::Result<&'a StoredEvent> {
    let id = &ws.integrations[1].id;
    events
        .iter()
        .find(|e| e.aggregate_type == Integration::TYPE && &e.aggregate_id == id && e.sequence == 1)
        .ok_or_else(|| anyhow::anyhow!("no IntegrationCreated for {id}"))
}

fn count_in(events: &[StoredEvent], ws: &SeededWorkspace) -> i64 {
    events.iter().filter(|e| e.workspace_id() == ws.id).count() as i64
}

async fn tampering_is_found_at_its_position(store: Store) -> anyhow::Result<()> {
    let acme = seed_workspace(&store, "Acme").await?;
    let globex = seed_workspace(&store, "Globex").await?;
    feed_settled(&store).await;
    runner(&store, 7).catch_up().await?;
    let events = all_events(&store).await?;
    assert_eq!(events.len() as i64, 2 * EVENTS_PER_WORKSPACE);

    let report = verify(&store, None).await?;
    assert_eq!(report.broken, None);
    assert_eq!(report.checked, events.len() as i64);
    assert_eq!(report.workspaces, 2);

    // One byte of one event's payload.
    let target = created_event(&events, &acme)?.position.pos;
    let original = payload_text(&store, target).await?;
    rewrite_payload(&store, target, "Acme", "Acmf").await?;
    let altered = payload_text(&store, target).await?;
    assert_eq!(original.len(), altered.len());
    assert_eq!(
        original
            .bytes()
            .zip(altered.bytes())
            .filter(|(a, b)| a != b)
            .count(),
        1
    );
    let broken = verify(&store, None)
        .await?
        .broken
        .expect("an altered event is detected");
    assert_eq!(
        (broken.position, broken.workspace_id.as_str()),
        (target, acme.id.as_str())
    );
    let only_globex = verify(&store, Some(&globex.id)).await?;
    assert_eq!(
        only_globex.broken, None,
        "the other workspace's chain is intact"
    );
    assert_eq!(only_globex.checked, count_in(&events, &globex));
    assert_eq!(only_globex.workspaces, 1);
    let only_acme = verify(&store, Some(&acme.id))
        .await?
        .broken
        .expect("detected with a filter");
    assert_eq!(only_acme.position, target);
    rewrite_payload(&store, target, "Acmf", "Acme").await?;
    assert_eq!(verify(&store, None).await?.broken, None, "restored");

    // One hex digit of one audit row's hash.
    let target = created_event(&events, &globex)?.position.pos;
    flip_audit_hash(&store, target).await?;
    let broken = verify(&store, None)
        .await?
        .broken
        .expect("an altered audit row is detected");
    assert_eq!(
        (broken.position, broken.workspace_id.as_str()),
        (target, globex.id.as_str())
    );
    let only_acme = verify(&store, Some(&acme.id)).await?;
    assert_eq!(only_acme.broken, None);
    assert_eq!(only_acme.checked, count_in(&events, &acme));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_verify_finds_the_altered_byte() -> anyhow::Result<()> {
    with_sqlite(tampering_is_found_at_its_position).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_verify_finds_the_altered_byte() -> anyhow::Result<()> {
    with_postgres(tampering_is_found_at_its_position).await
}
