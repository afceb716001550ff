//! Writes in batches of at most 100: creates and upserts through
//! `POST /crm/v8/{module}/upsert` with `duplicate_check_fields`, updates through
//! `PUT /crm/v8/{module}` with each record's `id`. Zoho answers one result per record
//! in input order: 200 when all were written, 207 when some were, 400 when none was.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use syncledger_domain::Entity;

use super::{module, wire, ZohoAdapter, MAX_WRITE};
use crate::error::CrmError;
use crate::http::Lane;
use crate::types::{Credentials, Properties, PushKind, PushOp, PushResult};

/// Zoho's default duplicate check of a module (its system key).
fn default_key(entity: Entity) -> &'static str {
    match entity {
        Entity::Contacts => "Email",
        Entity::Companies => "Account_Name",
    }
}

/// Which request a write goes in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Upsert(String),
    Update,
}

/// A record's body, with the index of its input.
type Indexed = (usize, Map<String, Value>);

fn record(properties: &Properties) -> Map<String, Value> {
    properties
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                value.clone().map_or(Value::Null, Value::String),
            )
        })
        .collect()
}

impl ZohoAdapter {
    pub(super) async fn push(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        let mut groups: BTreeMap<Group, Vec<Indexed>> = BTreeMap::new();
        for (index, op) in ops.iter().enumerate() {
            let mut body = record(&op.properties);
            let group = match &op.kind {
                PushKind::Update { id } => {
                    body.insert("id".into(), Value::String(id.clone()));
                    Group::Update
                }
                PushKind::Upsert { key_property } => Group::Upsert(key_property.clone()),
                PushKind::Create => Group::Upsert(default_key(entity).to_owned()),
            };
            groups.entry(group).or_default().push((index, body));
        }
        let mut results: Vec<PushResult> = Vec::with_capacity(ops.len());
        for (group, members) in groups {
            for chunk in members.chunks(MAX_WRITE) {
                let outcomes = self.write(credentials, entity, &group, chunk).await?;
                results.extend(chunk.iter().zip(outcomes).map(|((index, _), outcome)| {
                    let (remote_id, error) = match outcome {
                        Ok(id) => (Some(id), None),
                        Err(reason) => (None, Some(reason)),
                    };
                    PushResult {
                        index: *index,
                        remote_id,
                        error,
                    }
                }));
            }
        }
        results.sort_by_key(|r| r.index);
        Ok(results)
    }

    /// One request; one outcome per record of `chunk`, in its order.
    async fn write(
        &self,
        credentials: &Credentials,
        entity: Entity,
        group: &Group,
        chunk: &[Indexed],
    ) -> Result<Vec<Result<String, String>>, CrmError> {
        let data: Vec<&Map<String, Value>> = chunk.iter().map(|(_, body)| body).collect();
        let (method, path, body, idempotent) = match group {
            Group::Update => (
                reqwest::Method::PUT,
                format!("/crm/v8/{}", module(entity)),
                json!({ "data": data }),
                true,
            ),
            Group::Upsert(key) => {
                // Without a value for the key, an upsert inserts: not safe to repeat.
                let keyed = data.iter().all(|d| {
                    d.get(key)
                        .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                });
                (
                    reqwest::Method::POST,
                    format!("/crm/v8/{}/upsert", module(entity)),
                    json!({ "data": data, "duplicate_check_fields": [key] }),
                    keyed,
                )
            }
        };
        let (base, token) = self.target(credentials)?;
        let url = format!("{base}{path}");
        let header = format!("Zoho-oauthtoken {token}");
        let reply = self
            .http
            .send_batch::<wire::WriteResults>(Lane::General, idempotent, |c| {
                c.request(method.clone(), &url)
                    .header(reqwest::header::AUTHORIZATION, &header)
                    .json(&body)
            })
            .await?;
        let results = reply
            .body
            .ok_or_else(|| CrmError::Malformed("a write answered without results".into()))?
            .data;
        if results.len() != chunk.len() {
            return Err(CrmError::Malformed(format!(
                "{} results for {} records",
                results.len(),
                chunk.len()
            )));
        }
        Ok(results.iter().map(wire::WriteResult::outcome).collect())
    }
}
