//! Fields a rollback left diverged (see `syncledger_domain::record::Divergence`): listing
//! them per integration, and an admin's choice for a whole integration or some records —
//! push the app's values, or take the CRM's.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;
use syncledger_domain::merge::Side;
use syncledger_domain::record::{Divergence, Record, RecordCommand, RecordError};
use syncledger_store::{CommandError, Metadata, Store};

use crate::EngineError;

/// Records read per page while looking for divergences.
const PAGE: i64 = 500;

/// One record's diverged fields with one integration.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DivergedRecord {
    pub record_id: String,
    pub entity: String,
    pub fields: BTreeMap<String, Divergence>,
}

/// What settling did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Settled {
    pub records: u64,
    pub fields: u64,
}

/// Why a settlement was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Named records that have nothing diverged with the integration (or do not exist).
    #[error("nothing diverged with this integration on record(s) {}", .0.join(", "))]
    NotDiverged(Vec<String>),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn store_err<E: std::fmt::Display>(e: E) -> EngineError {
    EngineError::Store(e.to_string())
}

/// Every record of the workspace with fields diverged from `integration_id`, in id order.
pub async fn list(
    store: &Store,
    workspace_id: &str,
    integration_id: &str,
) -> Result<Vec<DivergedRecord>, EngineError> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (rows, last) = syncledger_projections::records::maybe_diverged(
            &store.any,
            workspace_id,
            integration_id,
            &after,
            PAGE,
        )
        .await
        .map_err(store_err)?;
        for row in rows {
            let state = row
                .state
                .map_err(|_| EngineError::Corrupt("record state in the read model"))?;
            if let Some(d) = diverged_of(&state, integration_id) {
                out.push(DivergedRecord {
                    record_id: row.id,
                    entity: state.entity.map(|e| e.as_str()).unwrap_or_default().into(),
                    fields: d,
                });
            }
        }
        match last {
            Some(last) => after = last,
            None => return Ok(out),
        }
    }
}

fn diverged_of(state: &Record, integration_id: &str) -> Option<BTreeMap<String, Divergence>> {
    state
        .links
        .get(integration_id)
        .map(|l| l.diverged.clone())
        .filter(|d| !d.is_empty())
}

/// Settles the divergences with `integration_id`: of every record (`records: None`), or of
/// the named ones, each of which must have some (else nothing is written).
pub async fn settle(
    store: &Store,
    integration_id: &str,
    keep: Side,
    records: Option<Vec<String>>,
    meta: &Metadata,
) -> Result<Settled, SettleError> {
    let targets: Vec<String> = match records {
        None => list(store, &meta.workspace_id, integration_id)
            .await?
            .into_iter()
            .map(|r| r.record_id)
            .collect(),
        Some(ids) => {
            let diverged: std::collections::BTreeSet<String> =
                list(store, &meta.workspace_id, integration_id)
                    .await?
                    .into_iter()
                    .map(|r| r.record_id)
                    .collect();
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !diverged.contains(*id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(SettleError::NotDiverged(missing));
            }
            ids
        }
    };
    let cqrs = store.cqrs::<Record>();
    let mut settled = Settled::default();
    for record_id in targets {
        let state = cqrs.load(&record_id).await.map_err(store_err)?;
        let fields = diverged_of(&state, integration_id).map_or(0, |d| d.len() as u64);
        let command = RecordCommand::SettleDivergence {
            integration_id: integration_id.to_owned(),
            fields: None,
            keep,
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        match cqrs.execute(&record_id, command, meta).await {
            Ok(()) => {
                settled.records += 1;
                settled.fields += fields;
            }
            // Settled meanwhile (an app edit, another admin): nothing left to do.
            Err(CommandError::Domain(RecordError::NotDiverged { .. })) => {}
            Err(e) => return Err(store_err(e).into()),
        }
    }
    Ok(settled)
}

/// The diverged-fields use cases; see [`crate::Engine::diverged`].
pub struct Diverged<'a>(&'a crate::Engine);

impl crate::Engine {
    pub fn diverged(&self) -> Diverged<'_> {
        Diverged(self)
    }
}

impl Diverged<'_> {
    /// The integration's records with diverged fields.
    pub async fn list(
        &self,
        workspace_id: &str,
        integration_id: &str,
    ) -> Result<Vec<DivergedRecord>, EngineError> {
        self.0
            .integrations()
            .owned(workspace_id, integration_id)
            .await?;
        // A rollback run's diverged fields are in the records read model once it has
        // applied the run, which may trail the run's own status.
        self.0
            .fresh
            .caught_up(syncledger_projections::records::TABLE)
            .await?;
        list(&self.0.store, workspace_id, integration_id).await
    }

    /// Keep one side of the diverged fields, of every record or of the named ones (at
    /// least one; each must have diverged fields, else nothing is written).
    pub async fn settle(
        &self,
        meta: &Metadata,
        integration_id: &str,
        keep: Side,
        records: Option<Vec<String>>,
    ) -> Result<Settled, EngineError> {
        self.0
            .integrations()
            .owned(&meta.workspace_id, integration_id)
            .await?;
        if records.as_ref().is_some_and(Vec::is_empty) {
            return Err(EngineError::invalid(
                "record_ids",
                "name at least one record, or leave it out to settle them all",
            ));
        }
        self.0
            .fresh
            .caught_up(syncledger_projections::records::TABLE)
            .await?;
        settle(&self.0.store, integration_id, keep, records, meta)
            .await
            .map_err(|e| match e {
                SettleError::NotDiverged(_) => EngineError::NotNow {
                    code: "not_diverged",
                    message: e.to_string(),
                },
                SettleError::Engine(e) => e,
            })
    }
}
