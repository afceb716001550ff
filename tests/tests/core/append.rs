//! The bulk append path (binary `COPY` on PostgreSQL, one transaction on SQLite): rows
//! arrive exactly as given, a duplicate sequence is a conflict that writes nothing of
//! its batch, and a writer keeps its connection across appends and conflicts.

use syncledger_store::append::{append, AppendError, NewEvent, Writer};
use syncledger_store::{Metadata, Store};
use syncledger_testkit::{postgres_store, sqlite_store};

fn event(id: &str, sequence: i64, payload: &str) -> NewEvent {
    NewEvent {
        aggregate_type: "append_test".into(),
        aggregate_id: id.into(),
        sequence,
        event_type: "Noted".into(),
        event_version: "1".into(),
        payload: payload.into(),
        metadata: Metadata::new("tester", "ws-1", "run-1"),
    }
}

async fn stored(store: &Store) -> anyhow::Result<Vec<(String, i64, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT aggregate_id, sequence, CAST(payload AS TEXT), CAST(metadata AS TEXT)
           FROM events WHERE aggregate_type = 'append_test' ORDER BY global_position",
    )
    .fetch_all(&store.any)
    .await?)
}

async fn append_path(store: Store) -> anyhow::Result<()> {
    // Text that needs escaping in every format, and a long value, arrive unchanged.
    let tricky = serde_json::json!({"note": "tab\there \"quoted\" back\\slash naïve 🙂\nline",
                                    "long": "x".repeat(20_000)})
    .to_string();
    let mut writer = Writer::default();
    writer
        .append(
            &store.events,
            &[event("a", 1, &tricky), event("b", 1, "{}")],
        )
        .await?;
    let rows = stored(&store).await?;
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("a", 1));
    let payload: serde_json::Value = serde_json::from_str(&rows[0].2)?;
    assert_eq!(payload, serde_json::from_str::<serde_json::Value>(&tricky)?);
    let metadata: serde_json::Value = serde_json::from_str(&rows[0].3)?;
    assert_eq!(metadata["correlation_id"], "run-1");
    assert_eq!(metadata["actor"], "tester");
    assert!(metadata["time"].is_string(), "stamped when written");

    // A batch holding one taken sequence conflicts and writes none of its rows.
    let clash = writer
        .append(&store.events, &[event("c", 1, "{}"), event("a", 1, "{}")])
        .await;
    assert!(matches!(clash, Err(AppendError::Conflict)), "{clash:?}");
    let clash = append(&store.events, &[event("b", 1, "{}")]).await;
    assert!(matches!(clash, Err(AppendError::Conflict)), "{clash:?}");
    assert_eq!(
        stored(&store).await?.len(),
        2,
        "nothing of a conflicting batch"
    );

    // The writer goes on after a conflict, and invalid JSON is refused, not stored.
    writer
        .append(&store.events, &[event("c", 1, "{}"), event("a", 2, "[1]")])
        .await?;
    let bad = writer
        .append(&store.events, &[event("d", 1, "{not json")])
        .await;
    if store.is_postgres() {
        assert!(matches!(bad, Err(AppendError::Db(_))), "{bad:?}");
    }
    writer.append(&store.events, &[event("e", 1, "{}")]).await?;
    let ids: Vec<(String, i64)> = stored(&store)
        .await?
        .into_iter()
        .filter(|r| r.0 != "d")
        .map(|r| (r.0, r.1))
        .collect();
    let expected: Vec<(String, i64)> = [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("e", 1)]
        .iter()
        .map(|(i, s)| (i.to_string(), *s))
        .collect();
    assert_eq!(ids, expected);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn sqlite_append_path() -> anyhow::Result<()> {
    let (store, _dir) = sqlite_store().await;
    append_path(store).await
}

#[tokio::test]
async fn postgres_append_path() -> anyhow::Result<()> {
    let Some((store, db)) = postgres_store().await else {
        return Ok(());
    };
    let result = append_path(store).await;
    db.cleanup().await;
    result
}
