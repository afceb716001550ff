//! An execution that stops after its k-th committed page (its task dropped mid-run, as a
//! worker that dies would) is resumed by the next one from page k + 1: the pages already
//! committed are not fetched again, and no record is written twice.

use syncledger_domain::sync_run::{Phase, RunStatus};
use syncledger_domain::Entity;
use syncledger_store::Store;
use syncledger_testkit::wait_until;

use crate::crm::{PagedCrm, PAGES, PER_PAGE};
use crate::support::{finished, on, record_writes, records_created, Backend, Pipeline, TIMEOUT};

/// Pages committed before the execution is stopped.
const COMMITTED: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_run_resumes_after_its_last_committed_page() -> anyhow::Result<()> {
    on(Backend::Sqlite, a_run_resumes_after_its_last_committed_page).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_resumes_after_its_last_committed_page() -> anyhow::Result<()> {
    on(
        Backend::Postgres,
        a_run_resumes_after_its_last_committed_page,
    )
    .await
}

async fn a_run_resumes_after_its_last_committed_page(store: Store) -> anyhow::Result<()> {
    let crm = PagedCrm::start().await?;
    let pipeline = Pipeline::connect(store, &crm).await?;
    // The feeder asks for the next page as soon as one arrives: holding page k + 1 lets
    // pages 1 to k be decided and committed, and no more.
    crm.hold(COMMITTED);
    let (run_id, execution) = pipeline.start_full_run().await?;
    crm.asked_for(COMMITTED, 1).await?;
    wait_until(TIMEOUT, "the run has committed its first pages", || async {
        let run = pipeline.run(&run_id).await.ok();
        let pages = run.and_then(|r| r.pass(Entity::Contacts, Phase::Pull).map(|p| p.pages));
        pages == Some(COMMITTED as u64)
    })
    .await;
    execution.abort();
    assert!(execution.await.is_err_and(|e| e.is_cancelled()));
    let asked_before = crm.asked().len();
    crm.release();

    let resumed = pipeline.execute(&run_id);
    assert_eq!(finished(resumed).await?, RunStatus::Completed);
    let asked_after = crm.asked().split_off(asked_before);
    assert_eq!(asked_after, (COMMITTED..PAGES).collect::<Vec<_>>());

    let run = pipeline.run(&run_id).await?;
    let total = (PAGES * PER_PAGE) as u64;
    assert_eq!(run.stats.processed, total, "{:?}", run.stats);
    assert_eq!(run.stats.created, total, "{:?}", run.stats);
    assert_eq!(run.stats.failed, 0, "{:?}", run.stats);
    let pass = run.pass(Entity::Contacts, Phase::Pull);
    assert_eq!(pass.map(|p| p.pages), Some(PAGES as u64), "{pass:?}");
    let writes = record_writes(&pipeline.store, &run_id).await?;
    assert_eq!(writes.len(), PAGES * PER_PAGE, "{writes:?}");
    assert!(writes.values().all(|&n| n == 1), "{writes:?}");
    assert_eq!(
        records_created(&pipeline.store).await?,
        (PAGES * PER_PAGE, 0)
    );
    Ok(())
}
