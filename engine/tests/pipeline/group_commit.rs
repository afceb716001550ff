//! Pages decided while a commit is in flight land together in the next commit, each
//! page's record events followed by its own page event.

use syncledger_domain::sync_run::{Phase, RunStatus};
use syncledger_domain::Entity;

use crate::crm::{PagedCrm, PAGES, PER_PAGE};
use crate::support::{finished, on, pull_commits, records_created, Backend, CommitsHeld, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pages_decided_during_a_commit_land_in_one_commit() -> anyhow::Result<()> {
    on(
        Backend::Sqlite,
        pages_decided_during_a_commit_land_in_one_commit,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pages_decided_during_a_commit_land_in_one_commit() -> anyhow::Result<()> {
    on(
        Backend::Postgres,
        pages_decided_during_a_commit_land_in_one_commit,
    )
    .await
}

async fn pages_decided_during_a_commit_land_in_one_commit(
    store: syncledger_store::Store,
) -> anyhow::Result<()> {
    let crm = PagedCrm::start().await?;
    let pipeline = Pipeline::connect(store, &crm).await?;
    crm.hold(0);
    let (run_id, execution) = pipeline.start_full_run().await?;
    crm.asked_for(0, 1).await?;
    let held = CommitsHeld::hold(&pipeline.store).await?;
    crm.release();
    crm.asked_for(PAGES - 1, 1).await?;
    held.release().await?;
    assert_eq!(finished(execution).await?, RunStatus::Completed);

    let run = pipeline.run(&run_id).await?;
    let total = (PAGES * PER_PAGE) as u64;
    assert_eq!(run.stats.processed, total, "{:?}", run.stats);
    assert_eq!(run.stats.created, total, "{:?}", run.stats);
    assert_eq!(run.stats.failed, 0, "{:?}", run.stats);
    let pass = run.pass(Entity::Contacts, Phase::Pull);
    assert_eq!(pass.map(|p| p.pages), Some(PAGES as u64), "{pass:?}");
    assert_eq!(
        records_created(&pipeline.store).await?,
        (PAGES * PER_PAGE, 0)
    );

    let commits = pull_commits(&pipeline.store, &run_id).await?;
    // Every page event follows exactly its own page's record events.
    assert!(
        commits.iter().flatten().all(|&records| records == PER_PAGE),
        "{commits:?}"
    );
    assert_eq!(
        commits.iter().map(Vec::len).sum::<usize>(),
        PAGES,
        "{commits:?}"
    );
    // The first commit waited on the lock with one page (two at most); at least the next
    // four pages waited behind it and went in together.
    let largest = commits.iter().map(Vec::len).max().unwrap_or(0);
    assert!(largest >= 4, "no group commit: {commits:?}");
    Ok(())
}
