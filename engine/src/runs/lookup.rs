//! What a run reads from the read models is `syncledger_projections::run_reads`; here are
//! the pure rules a run applies to what it reads.

use syncledger_domain::sync_run::{Phase, SyncRun};
use syncledger_domain::Entity;
pub(crate) use syncledger_projections::run_reads::{
    active_links, active_runs, archived_linked, by_match_key, finished_runs, linked,
    linked_by_match_key, owing_push, queued_runs, states, Known,
};

/// The match key of a record's values: email for contacts, domain for companies, trimmed
/// and in lower case (as the records read model keeps it); `None` when empty.
pub(crate) fn match_key_of(
    values: &syncledger_domain::merge::Fields,
    entity: Entity,
) -> Option<String> {
    Entity::match_key(
        values
            .get(entity.match_field())
            .cloned()
            .flatten()
            .as_deref(),
    )
}

/// The pass of `phase` for `entity` of a finished run, if it ended.
pub(crate) fn ended_pass(
    run: &SyncRun,
    entity: Entity,
    phase: Phase,
) -> Option<&serde_json::Value> {
    run.pass(entity, phase)
        .filter(|p| p.done)
        .and_then(|p| p.cursor.as_ref())
}
