//! Batched writes: create, update and upsert, at most 100 inputs a call, with
//! 207 partial failures mapped back to the inputs.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};
use syncledger_domain::Entity;

use super::{bearer, wire, HubSpotAdapter};
use crate::error::CrmError;
use crate::http::Lane;
use crate::types::{Credentials, PushKind, PushOp, PushResult};

pub(crate) const BATCH_LIMIT: usize = 100;

/// One input of a batch call, remembering where it came from.
struct Input {
    index: usize,
    /// What HubSpot echoes back in `context.ids` and results for this input.
    key: Option<String>,
    body: Value,
}

/// Calls group by endpoint and, for upserts, by the key property.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Create,
    Update,
    Upsert(String),
}

impl Group {
    fn path(&self) -> &'static str {
        match self {
            Group::Create => "/batch/create",
            Group::Update => "/batch/update",
            Group::Upsert(_) => "/batch/upsert",
        }
    }
}

fn properties_json(op: &PushOp) -> Map<String, Value> {
    // HubSpot clears a property when it is set to the empty string.
    op.properties
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.clone().unwrap_or_default())))
        .collect()
}

fn input(index: usize, op: &PushOp) -> Result<(Group, Input), String> {
    let properties = properties_json(op);
    Ok(match &op.kind {
        PushKind::Create => {
            let trace = index.to_string();
            let body = json!({ "properties": properties, "objectWriteTraceId": trace });
            (
                Group::Create,
                Input {
                    index,
                    key: None,
                    body,
                },
            )
        }
        PushKind::Update { id } => {
            let body = json!({ "id": id, "properties": properties });
            (
                Group::Update,
                Input {
                    index,
                    key: Some(id.clone()),
                    body,
                },
            )
        }
        PushKind::Upsert { key_property } => {
            let value = op
                .properties
                .get(key_property)
                .cloned()
                .flatten()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("no value for upsert key property {key_property}"))?;
            let body = json!({ "id": value, "idProperty": key_property, "properties": properties });
            let group = Group::Upsert(key_property.clone());
            (
                group,
                Input {
                    index,
                    key: Some(value),
                    body,
                },
            )
        }
    })
}

impl HubSpotAdapter {
    pub(super) async fn push(
        &self,
        tokens: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        let mut results: Vec<PushResult> = (0..ops.len())
            .map(|index| PushResult {
                index,
                remote_id: None,
                error: None,
            })
            .collect();
        let mut groups: BTreeMap<Group, Vec<Input>> = BTreeMap::new();
        for (index, op) in ops.iter().enumerate() {
            match input(index, op) {
                Ok((group, input)) => groups.entry(group).or_default().push(input),
                Err(message) => results[index].error = Some(message),
            }
        }
        for (group, inputs) in groups {
            for chunk in inputs.chunks(BATCH_LIMIT) {
                self.push_chunk(tokens, entity, &group, chunk, &mut results)
                    .await?;
            }
        }
        Ok(results)
    }

    async fn push_chunk(
        &self,
        tokens: &Credentials,
        entity: Entity,
        group: &Group,
        chunk: &[Input],
        results: &mut [PushResult],
    ) -> Result<(), CrmError> {
        let url = self.objects_url(entity, group.path());
        let auth = bearer(tokens)?;
        let body = json!({ "inputs": chunk.iter().map(|i| &i.body).collect::<Vec<_>>() });
        let build = |c: &reqwest::Client| c.post(&url).header("Authorization", &auth).json(&body);
        // A repeated create after an unanswered one would duplicate records.
        let reply = match group {
            Group::Create => self.http.send_non_idempotent(Lane::General, build).await,
            _ => {
                self.http
                    .send::<wire::BatchResponse>(Lane::General, build)
                    .await
            }
        };
        let response = match reply {
            Ok(reply) => reply.body.unwrap_or_default(),
            // The whole call was refused (e.g. a validation error): every input failed.
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
        map_response(group, chunk, response, results);
        Ok(())
    }
}

/// Errors are matched by `context.ids` (the input's id, key value or, for
/// creates, its position); results by id, key value or trace id, and the
/// rest in order to the inputs that neither failed nor matched.
fn map_response(
    group: &Group,
    chunk: &[Input],
    response: wire::BatchResponse,
    results: &mut [PushResult],
) {
    let mut pending: Vec<bool> = vec![true; chunk.len()];
    let position: HashMap<String, usize> = chunk
        .iter()
        .enumerate()
        .map(|(pos, input)| (input.key.clone().unwrap_or_else(|| pos.to_string()), pos))
        .collect();
    for error in response.errors {
        let message = format!(
            "{}: {}",
            error.category.unwrap_or_default(),
            error.message.unwrap_or_default()
        );
        let context = error.context.unwrap_or_default();
        for id in context.ids.iter().chain(&context.object_write_trace_id) {
            if let Some(&pos) = position.get(id) {
                pending[pos] = false;
                results[chunk[pos].index].error = Some(message.clone());
            }
        }
    }
    let mut unmatched = Vec::new();
    for record in response.results {
        let key = match group {
            Group::Create => record.object_write_trace_id.clone(),
            Group::Update => Some(record.id.clone()),
            Group::Upsert(property) => record.properties.get(property).cloned().flatten(),
        };
        let pos = key.and_then(|k| match group {
            Group::Create => k
                .parse::<usize>()
                .ok()
                .and_then(|i| chunk.iter().position(|c| c.index == i)),
            _ => position.get(&k).copied(),
        });
        match pos.filter(|&p| pending[p]) {
            Some(p) => {
                pending[p] = false;
                results[chunk[p].index].remote_id = Some(record.id);
            }
            None => unmatched.push(record.id),
        }
    }
    let mut unmatched = unmatched.into_iter();
    let left = chunk.iter().zip(&pending).filter(|(_, p)| **p);
    for (input, _) in left {
        let result = &mut results[input.index];
        match unmatched.next() {
            Some(id) => result.remote_id = Some(id),
            None => result.error = Some("the provider returned no result for this input".into()),
        }
    }
}
