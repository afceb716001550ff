//! Writes. Pipedrive has no batch write endpoint, so each op is one call:
//! creates POST (never repeated after an unanswered attempt), updates PATCH,
//! upserts search by the key property and then PATCH or POST.

use serde_json::Value;
use syncledger_domain::Entity;

use super::fields::FieldMap;
use super::{path, wire, PipedriveAdapter};
use crate::error::CrmError;
use crate::http::Lane;
use crate::types::{Credentials, PushKind, PushOp, PushResult};

/// Properties usable as upsert keys: exact-match search supports them.
fn search_field(entity: Entity, key: &str) -> Option<&'static str> {
    match (entity, key) {
        (Entity::Contacts, "email") => Some("email"),
        (Entity::Contacts, "phone") => Some("phone"),
        (_, "name") => Some("name"),
        _ => None,
    }
}

/// Failures that concern the whole connection, not one record.
fn ends_the_call(error: &CrmError) -> bool {
    matches!(
        error,
        CrmError::Unauthorized | CrmError::QuotaExhausted(_) | CrmError::Config(_)
    )
}

fn describe(error: &CrmError) -> String {
    match error {
        CrmError::Rejected {
            status,
            category,
            message,
        } => format!("{status} {category}: {message}"),
        other => other.to_string(),
    }
}

impl PipedriveAdapter {
    pub(super) async fn push(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        let mut map = self.field_map(credentials, entity).await?;
        let unknown = ops
            .iter()
            .any(|op| wire::body(entity, &map, &op.properties).is_err());
        if unknown {
            // A property may name a custom field created since the catalogue was read.
            map = self.load_fields(credentials, entity).await?;
        }
        let mut results = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let outcome = self.push_one(credentials, entity, &map, op).await;
            let (remote_id, error) = match outcome {
                Ok(id) => (Some(id), None),
                Err(Op::Invalid(message)) => (None, Some(message)),
                Err(Op::Failed(e)) if ends_the_call(&e) => return Err(e),
                Err(Op::Failed(e)) => (None, Some(describe(&e))),
            };
            results.push(PushResult {
                index,
                remote_id,
                error,
            });
        }
        Ok(results)
    }

    async fn push_one(
        &self,
        credentials: &Credentials,
        entity: Entity,
        map: &FieldMap,
        op: &PushOp,
    ) -> Result<String, Op> {
        let body = wire::body(entity, map, &op.properties).map_err(Op::Invalid)?;
        match &op.kind {
            PushKind::Create => self.create(credentials, entity, &body).await,
            PushKind::Update { id } => self.update(credentials, entity, id, &body).await,
            PushKind::Upsert { key_property } => {
                let field = search_field(entity, key_property).ok_or_else(|| {
                    Op::Invalid(format!("upsert by {key_property} is not supported"))
                })?;
                let value = op
                    .properties
                    .get(key_property)
                    .cloned()
                    .flatten()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        Op::Invalid(format!("no value for upsert key property {key_property}"))
                    })?;
                match self.find(credentials, entity, field, &value).await? {
                    Some(id) => self.update(credentials, entity, &id, &body).await,
                    None => self.create(credentials, entity, &body).await,
                }
            }
        }
    }

    async fn create(
        &self,
        credentials: &Credentials,
        entity: Entity,
        body: &Value,
    ) -> Result<String, Op> {
        let (base, auth) = self.target(credentials).map_err(Op::Failed)?;
        let url = format!("{base}/api/v2/{}", path(entity));
        let reply = self
            .http
            .send_non_idempotent::<wire::Envelope<Value>>(Lane::General, |c| {
                auth.apply(c.post(&url)).json(body)
            })
            .await
            .map_err(Op::Failed)?;
        written_id(reply)
    }

    async fn update(
        &self,
        credentials: &Credentials,
        entity: Entity,
        id: &str,
        body: &Value,
    ) -> Result<String, Op> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Op::Invalid(format!("{id:?} is not a Pipedrive id")));
        }
        let (base, auth) = self.target(credentials).map_err(Op::Failed)?;
        let url = format!("{base}/api/v2/{}/{id}", path(entity));
        // The same PATCH applied twice leaves the same record: safe to retry.
        let reply = self
            .http
            .send::<wire::Envelope<Value>>(Lane::General, |c| auth.apply(c.patch(&url)).json(body))
            .await
            .map_err(Op::Failed)?;
        written_id(reply)
    }

    /// The id of the live record whose `field` equals `value` exactly.
    async fn find(
        &self,
        credentials: &Credentials,
        entity: Entity,
        field: &str,
        value: &str,
    ) -> Result<Option<String>, Op> {
        let path = format!("/api/v2/{}/search", path(entity));
        let query = [
            ("term", value.to_owned()),
            ("fields", field.to_owned()),
            ("exact_match", "true".to_owned()),
            ("limit", "1".to_owned()),
        ];
        let reply = self
            .get::<wire::Envelope<wire::SearchData>>(credentials, &path, &query)
            .await
            .map_err(Op::Failed)?;
        let hits = reply.body.and_then(|b| b.data).map(|d| d.items);
        Ok(hits
            .and_then(|items| items.into_iter().next())
            .and_then(|hit| wire::text(&hit.item.id)))
    }
}

/// Why one op produced no record.
enum Op {
    /// Refused before any call: the input cannot be written.
    Invalid(String),
    Failed(CrmError),
}

fn written_id(reply: crate::http::Reply<wire::Envelope<Value>>) -> Result<String, Op> {
    reply
        .body
        .and_then(|b| b.data)
        .and_then(|d| d.get("id").and_then(wire::text))
        .ok_or_else(|| Op::Failed(CrmError::Malformed("write answered without an id".into())))
}
