//! A run wakes this process's followers of the feed (read models, destinations,
//! webhooks) as each of its pages commits, not only when it ends: without it they would
//! see a long run's records only at their next poll.

use syncledger_domain::sync_run::RunStatus;

use crate::crm::{PagedCrm, PER_PAGE};
use crate::support::{finished, on, records_created, Backend, Pipeline, TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_each_committed_page_wakes_the_followers() -> anyhow::Result<()> {
    on(Backend::Sqlite, each_committed_page_wakes_the_followers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_each_committed_page_wakes_the_followers() -> anyhow::Result<()> {
    on(Backend::Postgres, each_committed_page_wakes_the_followers).await
}

async fn each_committed_page_wakes_the_followers(
    store: syncledger_store::Store,
) -> anyhow::Result<()> {
    let crm = PagedCrm::start().await?;
    let pipeline = Pipeline::connect(store, &crm).await?;
    let committed = pipeline.runs.committed();
    // The second page's answer waits: the run cannot end before the test lets it go.
    crm.hold(1);
    let woken = committed.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let (_, execution) = pipeline.start_full_run().await?;
    tokio::time::timeout(TIMEOUT, woken)
        .await
        .map_err(|_| anyhow::anyhow!("no commit of the run woke the followers"))?;
    // Woken by the first page's commit: its records are stored, the run goes on. (Read
    // from the events table: on PostgreSQL the feed may still hold back a commit while an
    // older transaction anywhere on the server is open.)
    let (records, _) = records_created(&pipeline.store).await?;
    assert!(records >= PER_PAGE, "{records} records when woken");
    assert!(
        !execution.is_finished(),
        "the run ended while a page was held"
    );
    crm.release();
    assert_eq!(finished(execution).await?, RunStatus::Completed);
    Ok(())
}
