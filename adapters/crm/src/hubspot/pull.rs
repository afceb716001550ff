//! Full pulls (list paging), incremental pulls (search) and deletions.

use chrono::{DateTime, Utc};
use syncledger_domain::Entity;

use super::{bearer, wire, HubSpotAdapter};
use crate::error::CrmError;
use crate::http::Lane;
use crate::types::{Credentials, Cursor, Page, RemoteRecord};

const LIST_LIMIT: u32 = 100;
const SEARCH_LIMIT: u32 = 200;
/// A search can page through at most this many results.
const SEARCH_CAP: u64 = 10_000;
/// The most ids one `NOT_IN` filter carries (HubSpot caps the values of a filter (?)).
pub(super) const MAX_SEEN: usize = 100;

fn modified_property(entity: Entity) -> &'static str {
    match entity {
        Entity::Contacts => "lastmodifieddate",
        Entity::Companies => "hs_lastmodifieddate",
    }
}

impl HubSpotAdapter {
    /// Property names to request: the list and search endpoints return only
    /// a default few unless asked. The catalogue is kept for a while (see
    /// [`crate::catalogue`]).
    async fn property_names(
        &self,
        tokens: &Credentials,
        entity: Entity,
    ) -> Result<Vec<String>, CrmError> {
        if let Some(names) = self.cached_properties(entity) {
            return Ok(names);
        }
        let names = super::CrmAdapter::fields(self, tokens, entity)
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect();
        Ok(names)
    }

    pub(super) async fn list_page(
        &self,
        tokens: &Credentials,
        entity: Entity,
        after: Option<String>,
        archived: bool,
    ) -> Result<Page, CrmError> {
        let properties = self.property_names(tokens, entity).await?.join(",");
        let url = self.objects_url(entity, "");
        let auth = bearer(tokens)?;
        let limit = LIST_LIMIT.to_string();
        let archived = archived.to_string();
        let reply = self
            .http
            .send::<wire::Collection>(Lane::General, |c| {
                let mut query = vec![
                    ("limit", limit.as_str()),
                    ("archived", archived.as_str()),
                    ("properties", properties.as_str()),
                ];
                if let Some(after) = &after {
                    query.push(("after", after.as_str()));
                }
                c.get(&url).header("Authorization", &auth).query(&query)
            })
            .await?;
        let body = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty list response".into()))?;
        let next = body.next_after().map(|after| Cursor::HubSpotList { after });
        Ok(Page {
            records: body.results.into_iter().map(RemoteRecord::from).collect(),
            next,
            // The list endpoint says nothing of how many there are.
            total: None,
        })
    }

    /// One page of the records modified at or after `since`, oldest first. The
    /// records at exactly `since` named in `seen` are left out (see
    /// [`super::CrmAdapter::pull_page_since`]); with more than [`MAX_SEEN`] of
    /// them the search stays inclusive and the engine deduplicates.
    pub(super) async fn search_page(
        &self,
        tokens: &Credentials,
        entity: Entity,
        since: DateTime<Utc>,
        after: Option<String>,
        seen: &[String],
    ) -> Result<Page, CrmError> {
        let properties = self.property_names(tokens, entity).await?;
        let modified = modified_property(entity);
        let at = since.timestamp_millis().to_string();
        let filter_groups = if seen.is_empty() || seen.len() > MAX_SEEN {
            vec![wire::FilterGroup {
                filters: vec![wire::Filter::compare(modified, "GTE", at)],
            }]
        } else {
            // Later than `since`, or at `since` and not yet held.
            vec![
                wire::FilterGroup {
                    filters: vec![wire::Filter::compare(modified, "GT", at.clone())],
                },
                wire::FilterGroup {
                    filters: vec![
                        wire::Filter::compare(modified, "EQ", at),
                        wire::Filter {
                            property_name: "hs_object_id",
                            operator: "NOT_IN",
                            value: None,
                            values: Some(seen),
                        },
                    ],
                },
            ]
        };
        let request = wire::SearchRequest {
            filter_groups,
            sorts: [wire::Sort {
                property_name: modified,
                direction: "ASCENDING",
            }],
            properties: &properties,
            limit: SEARCH_LIMIT,
            after: after.as_deref(),
        };
        let url = self.objects_url(entity, "/search");
        let auth = bearer(tokens)?;
        let reply = self
            .http
            .send::<wire::Collection>(Lane::Search, |c| {
                c.post(&url).header("Authorization", &auth).json(&request)
            })
            .await?;
        let body = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty search response".into()))?;
        let next = body.next_after();
        let total = body.total;
        let records: Vec<RemoteRecord> = body.results.into_iter().map(Into::into).collect();
        let next = next.map(|after| next_search_cursor(since, after, &records));
        Ok(Page {
            records,
            next,
            total,
        })
    }
}

impl HubSpotAdapter {
    /// The records with these ids, by batch read ([`super::push::BATCH_LIMIT`] per
    /// call); ids HubSpot no longer has (deleted) are left out.
    pub(super) async fn batch_read(
        &self,
        tokens: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Vec<RemoteRecord>, CrmError> {
        let properties = self.property_names(tokens, entity).await?;
        let url = self.objects_url(entity, "/batch/read");
        let auth = bearer(tokens)?;
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::push::BATCH_LIMIT) {
            let inputs: Vec<_> = chunk
                .iter()
                .map(|id| serde_json::json!({ "id": id }))
                .collect();
            let body = serde_json::json!({ "properties": properties, "inputs": inputs });
            let reply = self
                .http
                .send::<wire::Collection>(Lane::General, |c| {
                    c.post(&url).header("Authorization", &auth).json(&body)
                })
                .await?;
            // A 207 lists the missing ids as errors: deleted since, nothing to merge.
            if let Some(body) = reply.body {
                records.extend(body.results.into_iter().map(RemoteRecord::from));
            }
        }
        Ok(records)
    }
}

impl HubSpotAdapter {
    /// Archives (HubSpot's delete) the records with these ids by batch archive
    /// ([`super::push::BATCH_LIMIT`] per call). HubSpot answers 204 for the whole batch,
    /// ids already archived included, so each id is reported deleted.
    pub(super) async fn batch_archive(
        &self,
        tokens: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Vec<crate::types::PushResult>, CrmError> {
        let url = self.objects_url(entity, "/batch/archive");
        let auth = bearer(tokens)?;
        for chunk in ids.chunks(super::push::BATCH_LIMIT) {
            let inputs: Vec<_> = chunk
                .iter()
                .map(|id| serde_json::json!({ "id": id }))
                .collect();
            let body = serde_json::json!({ "inputs": inputs });
            self.http
                .send::<serde_json::Value>(Lane::General, |c| {
                    c.post(&url).header("Authorization", &auth).json(&body)
                })
                .await?;
        }
        Ok(ids
            .iter()
            .enumerate()
            .map(|(index, id)| crate::types::PushResult {
                index,
                remote_id: Some(id.clone()),
                error: None,
            })
            .collect())
    }
}

/// Continues the search, or restarts it from the last seen modification time
/// when the next page would pass the 10,000-result cap. The restart repeats
/// the records sharing that timestamp; the engine deduplicates them.
fn next_search_cursor(since: DateTime<Utc>, after: String, records: &[RemoteRecord]) -> Cursor {
    let past_cap = after
        .parse::<u64>()
        .is_ok_and(|offset| offset + u64::from(SEARCH_LIMIT) > SEARCH_CAP);
    let last_seen = records.iter().map(|r| r.updated_at).max();
    match last_seen {
        Some(last) if past_cap && last > since => Cursor::HubSpotSearch {
            since: last,
            after: None,
        },
        _ => {
            if past_cap {
                tracing::warn!(%since, "over 10,000 records share one modification time");
            }
            Cursor::HubSpotSearch {
                since,
                after: Some(after),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn record(ms: i64) -> RemoteRecord {
        let at = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
        RemoteRecord {
            id: ms.to_string(),
            properties: Default::default(),
            created_at: at,
            updated_at: at,
            archived: false,
        }
    }

    #[test]
    fn search_continues_below_the_cap() {
        let since = Utc.timestamp_millis_opt(0).single().unwrap_or_default();
        let cursor = next_search_cursor(since, "9800".into(), &[record(5)]);
        let after = Some("9800".to_owned());
        assert_eq!(cursor, Cursor::HubSpotSearch { since, after });
    }

    #[test]
    fn search_restarts_from_last_seen_past_the_cap() {
        let since = Utc.timestamp_millis_opt(0).single().unwrap_or_default();
        let cursor = next_search_cursor(since, "10000".into(), &[record(5), record(9)]);
        let since = record(9).updated_at;
        assert_eq!(cursor, Cursor::HubSpotSearch { since, after: None });
    }
}
