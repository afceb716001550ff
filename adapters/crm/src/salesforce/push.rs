//! Writes through sObject Collections: up to 200 records a call, `allOrNone`
//! off so one bad record does not sink the others, results in request order.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use syncledger_domain::Entity;

use super::{bearer, sobject, wire, SalesforceAdapter};
use crate::error::CrmError;
use crate::http::Lane;
use crate::types::{Credentials, PushKind, PushOp, PushResult};

pub(crate) const COLLECTION_LIMIT: usize = 200;

/// Fields the server maintains; sending them fails the record, so they are dropped.
const SYSTEM_FIELDS: &[&str] = &[
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
];

/// Calls group by endpoint and, for upserts, by the external-id field.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Create,
    Update,
    Upsert(String),
}

struct Input {
    index: usize,
    body: Value,
}

fn input(object: &str, index: usize, op: &PushOp) -> Result<(Group, Input), String> {
    let mut body = Map::new();
    body.insert("attributes".into(), json!({ "type": object }));
    for (name, value) in &op.properties {
        let system = SYSTEM_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(name));
        let is_key = matches!(&op.kind, PushKind::Upsert { key_property } if key_property == name);
        if !system || is_key {
            // null clears the field.
            body.insert(
                name.clone(),
                value.clone().map_or(Value::Null, Value::String),
            );
        }
    }
    let group = match &op.kind {
        PushKind::Create => Group::Create,
        PushKind::Update { id } => {
            body.insert("id".into(), Value::String(id.clone()));
            Group::Update
        }
        PushKind::Upsert { key_property } => {
            let has_key = op
                .properties
                .get(key_property)
                .and_then(Option::as_deref)
                .is_some_and(|v| !v.is_empty());
            if !has_key {
                return Err(format!("no value for upsert key property {key_property}"));
            }
            Group::Upsert(key_property.clone())
        }
    };
    Ok((
        group,
        Input {
            index,
            body: Value::Object(body),
        },
    ))
}

impl SalesforceAdapter {
    pub(super) async fn push(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        let object = sobject(entity);
        let mut results: Vec<PushResult> = (0..ops.len())
            .map(|index| PushResult {
                index,
                remote_id: None,
                error: None,
            })
            .collect();
        let mut groups: BTreeMap<Group, Vec<Input>> = BTreeMap::new();
        for (index, op) in ops.iter().enumerate() {
            match input(object, index, op) {
                Ok((group, input)) => groups.entry(group).or_default().push(input),
                Err(message) => results[index].error = Some(message),
            }
        }
        for (group, inputs) in groups {
            for chunk in inputs.chunks(COLLECTION_LIMIT) {
                self.push_chunk(credentials, object, &group, chunk, &mut results)
                    .await?;
            }
        }
        Ok(results)
    }

    async fn push_chunk(
        &self,
        credentials: &Credentials,
        object: &str,
        group: &Group,
        chunk: &[Input],
        results: &mut [PushResult],
    ) -> Result<(), CrmError> {
        let url = match group {
            Group::Create | Group::Update => self.data_url(credentials, "/composite/sobjects"),
            Group::Upsert(key) => {
                self.data_url(credentials, &format!("/composite/sobjects/{object}/{key}"))
            }
        };
        let auth = bearer(credentials)?;
        let records: Vec<&Value> = chunk.iter().map(|i| &i.body).collect();
        let body = json!({ "allOrNone": false, "records": records });
        let reply = match group {
            // A repeated create after an unanswered one would duplicate records.
            Group::Create => {
                self.http
                    .send_non_idempotent::<Vec<wire::SaveResult>>(Lane::General, |c| {
                        c.post(&url).header("Authorization", &auth).json(&body)
                    })
                    .await
            }
            Group::Update | Group::Upsert(_) => {
                self.http
                    .send::<Vec<wire::SaveResult>>(Lane::General, |c| {
                        c.patch(&url).header("Authorization", &auth).json(&body)
                    })
                    .await
            }
        };
        let saved = match reply {
            Ok(reply) => reply.body.unwrap_or_default(),
            // The whole call was refused (bad external-id field, ...): every input failed.
            Err(CrmError::Rejected {
                status,
                category,
                message,
            }) => {
                for input in chunk {
                    results[input.index].error = Some(format!("{status} {category}: {message}"));
                }
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        map_results(chunk, saved, results);
        Ok(())
    }
}

/// Results come back in request order, one per record.
fn map_results(chunk: &[Input], saved: Vec<wire::SaveResult>, results: &mut [PushResult]) {
    let mut saved = saved.into_iter();
    for input in chunk {
        let result = &mut results[input.index];
        match saved.next() {
            Some(s) if s.success => result.remote_id = s.id,
            Some(s) => {
                result.remote_id = s.id;
                let message = s
                    .errors
                    .iter()
                    .map(|e| {
                        let fields = if e.fields.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", e.fields.join(", "))
                        };
                        format!("{}: {}{fields}", e.status_code, e.message)
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                result.error = Some(if message.is_empty() {
                    "the provider refused this record without a reason".into()
                } else {
                    message
                });
            }
            None => result.error = Some("the provider returned no result for this input".into()),
        }
    }
}
