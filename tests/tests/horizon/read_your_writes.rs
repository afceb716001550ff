//! A command's response reflects the command, even while PostgreSQL holds the feed back.

use reqwest::StatusCode;
use sqlx::{Connection, Executor, PgConnection};
use syncledger_testkit::app::{integration_body, Backend, TestApp};

/// Any open transaction that has taken a transaction id, in any database of the cluster,
/// holds `pg_snapshot_xmin` back, and with it the feed and the projections. Commands
/// committed meanwhile must still be answered with their own result.
///
/// Ignored by default: the open transaction holds back every feed on the server for
/// several seconds, which would slow the other tests running alongside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_answer_their_own_result_while_another_transaction_is_open() -> anyhow::Result<()>
{
    let Some(app) = TestApp::spawn(Backend::Postgres).await? else {
        return Ok(());
    };
    let connected = app.create_integration(&app.admin, "Connected").await?;
    app.set_api_key(&app.admin, &connected, "sk_live_held")
        .await?;
    let url = app.pg_url().unwrap_or_default();
    let mut other = PgConnection::connect(&url).await?;
    other.execute("BEGIN").await?;
    other.execute("SELECT pg_current_xact_id()").await?;

    let created = app
        .post(
            "/v1/integrations",
            &app.admin,
            integration_body("Held back"),
        )
        .await;
    let paused = app
        .post_empty(&format!("/v1/integrations/{connected}/pause"), &app.admin)
        .await;
    other.execute("ROLLBACK").await?;
    drop(other);
    let (created, paused) = (created?, paused?);
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "create: {}",
        created.text
    );
    assert_eq!(created.body["name"], "Held back");
    assert_eq!(paused.status, StatusCode::OK, "pause: {}", paused.text);
    assert_eq!(paused.body["status"], "paused", "pause: {}", paused.text);
    app.finish().await
}
