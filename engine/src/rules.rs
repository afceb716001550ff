//! "Always use" rules applied to the conflicts already waiting: a rule settles its
//! field's open conflicts at once, as the next merge would, instead of leaving them
//! open until a full run fetches each record again.

use chrono::Utc;
use syncledger_domain::merge::Side;
use syncledger_domain::record::{Record, RecordCommand, RecordError, Resolution};
use syncledger_store::{CommandError, Metadata, Store};

use crate::EngineError;

/// Resolves every open conflict on `field` with `integration_id` for `side`, in the name
/// of whoever set the rule (`meta.actor`). Answers how many it settled; one closed
/// meanwhile (resolved by a person, replaced by a merge) is left alone.
pub async fn settle_open_conflicts(
    store: &Store,
    integration_id: &str,
    field: &str,
    side: Side,
    meta: &Metadata,
) -> Result<u64, EngineError> {
    let records = syncledger_projections::conflicts::open_on_field(
        &store.any,
        &meta.workspace_id,
        integration_id,
        field,
    )
    .await
    .map_err(|e| EngineError::Store(e.to_string()))?;
    let cqrs = store.cqrs::<Record>();
    let mut settled = 0;
    for record_id in records {
        let command = RecordCommand::ResolveConflict {
            integration_id: integration_id.to_owned(),
            field: field.to_owned(),
            resolution: match side {
                Side::App => Resolution::UseApp,
                Side::Crm => Resolution::UseCrm,
            },
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        match cqrs.execute(&record_id, command, meta).await {
            Ok(()) => settled += 1,
            Err(CommandError::Domain(RecordError::NoSuchConflict { .. })) => {}
            Err(CommandError::Conflict) => return Err(EngineError::Conflict),
            Err(e) => return Err(EngineError::Store(e.to_string())),
        }
    }
    Ok(settled)
}
