//! One CRM record is never linked to two app records: an app-created record whose match
//! key (email, domain) belongs to a CRM record already linked to another app record is
//! neither upserted into it nor linked to it.

use std::collections::HashMap;

use syncledger_crm::PushResult;
use syncledger_domain::merge::Fields;
use syncledger_domain::Entity;

use super::execution::Execution;
use super::lookup::{self, Known};
use crate::EngineError;

/// The app record a CRM record (or a match key) already belongs to.
#[derive(Clone, Debug)]
pub(super) struct Owner {
    record_id: String,
    /// The CRM record it is linked to; `None`: it is being created in the same batch.
    remote_id: Option<String>,
}

/// Why a record is not created in (or linked to) the CRM: its key is another's.
pub(super) fn duplicate_error(entity: Entity, owner: &Owner) -> String {
    let key = entity.match_field();
    match &owner.remote_id {
        Some(remote) => format!(
            "duplicate: its {key} belongs to CRM record {remote}, already linked to app \
             record {}; not created in the CRM",
            owner.record_id
        ),
        None => format!(
            "duplicate: app record {} with the same {key} is created in the CRM first; \
             not created",
            owner.record_id
        ),
    }
}

/// The owner of `values`' match key, unless it is `record_id` itself; a free key is
/// claimed for `record_id` (so two records of one batch never both take it).
pub(super) fn claim_key(
    taken: &mut HashMap<String, Owner>,
    record_id: &str,
    values: &Fields,
    entity: Entity,
) -> Option<Owner> {
    let key = lookup::match_key_of(values, entity)?;
    match taken.get(&key) {
        Some(owner) if owner.record_id != record_id => Some(owner.clone()),
        Some(_) => None,
        None => {
            taken.insert(
                key,
                Owner {
                    record_id: record_id.to_owned(),
                    remote_id: None,
                },
            );
            None
        }
    }
}

/// CRM record → the app record linked to it, growing as a batch's creates are linked.
pub(super) struct Owners(HashMap<String, String>);

impl Owners {
    /// The other app record `remote` is linked to, if any; else it is now `record_id`'s.
    pub(super) fn claim(&mut self, remote: &str, record_id: &str) -> Option<Owner> {
        match self.0.get(remote) {
            Some(other) if other != record_id => Some(Owner {
                record_id: other.clone(),
                remote_id: Some(remote.to_owned()),
            }),
            Some(_) => None,
            None => {
                self.0.insert(remote.to_owned(), record_id.to_owned());
                None
            }
        }
    }
}

impl Execution<'_> {
    /// The match keys of the batch's records to create that already belong to a record
    /// linked to this integration's CRM.
    pub(super) async fn keys_taken(
        &self,
        entity: Entity,
        candidates: &[(String, Known)],
    ) -> Result<HashMap<String, Owner>, EngineError> {
        let integration_id = &self.run.integration_id;
        let keys: Vec<String> = candidates
            .iter()
            .filter(|(_, k)| !k.state.links.contains_key(integration_id))
            .filter_map(|(_, k)| lookup::match_key_of(&k.state.values(), entity))
            .collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let found = lookup::linked_by_match_key(
            &self.services.store.any,
            &self.run.workspace_id,
            entity,
            integration_id,
            &refs,
        )
        .await?;
        Ok(found
            .into_iter()
            .map(|(key, (record_id, remote_id))| {
                let remote_id = Some(remote_id);
                (
                    key,
                    Owner {
                        record_id,
                        remote_id,
                    },
                )
            })
            .collect())
    }

    /// Who the CRM records the batch's creates landed on are already linked to.
    pub(super) async fn created_owners(
        &self,
        entity: Entity,
        sent: &[super::Sent],
        results: &[Option<PushResult>],
    ) -> Result<Owners, EngineError> {
        let created: Vec<&str> = sent
            .iter()
            .zip(results)
            .filter(|((_, _, _, _, remote), _)| remote.is_none())
            .filter_map(|(_, r)| r.as_ref().and_then(|r| r.remote_id.as_deref()))
            .collect();
        if created.is_empty() {
            return Ok(Owners(HashMap::new()));
        }
        let linked = lookup::linked(
            &self.services.store.any,
            &self.run.workspace_id,
            &self.run.integration_id,
            entity,
            &created,
        )
        .await?;
        Ok(Owners(linked))
    }
}
