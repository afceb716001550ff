//! Pulls through SOQL ordered by `SystemModstamp`, and deletions through `getDeleted`.

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use syncledger_domain::Entity;

use super::{bearer, sobject, wire, SalesforceAdapter};
use crate::error::CrmError;
use crate::http::Lane;
use crate::types::{Credentials, Cursor, Page, RemoteRecord};

/// How far back `getDeleted` answers.
const DELETED_WINDOW_DAYS: i64 = 15;
/// Kept off the 15-day edge so clock skew does not make the call fail.
const DELETED_MARGIN: Duration = Duration::hours(1);

/// A SOQL datetime literal, rounded down to the second (the documented
/// format has no fraction); with `>=` the rounding only adds overlap.
fn soql_time(at: DateTime<Utc>) -> String {
    at.duration_trunc(Duration::seconds(1))
        .unwrap_or(at)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The SOQL of a pull: every described field, oldest change first, `Id`
/// breaking ties so that records sharing a `SystemModstamp` keep one order.
fn soql(object: &str, fields: &[String], since: Option<DateTime<Utc>>) -> String {
    let filter = since
        .map(|at| format!(" WHERE SystemModstamp >= {}", soql_time(at)))
        .unwrap_or_default();
    format!(
        "SELECT {} FROM {object}{filter} ORDER BY SystemModstamp ASC, Id ASC",
        fields.join(", ")
    )
}

impl SalesforceAdapter {
    /// Field names to select, from `describe` once per entity.
    async fn field_names(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Vec<String>, CrmError> {
        if let Some(names) = self.cached_fields(entity) {
            return Ok(names);
        }
        let names: Vec<String> = super::CrmAdapter::fields(self, credentials, entity)
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect();
        Ok(names)
    }

    pub(super) async fn first_page(
        &self,
        credentials: &Credentials,
        entity: Entity,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        let fields = self.field_names(credentials, entity).await?;
        let query = soql(sobject(entity), &fields, since);
        let url = self.data_url(credentials, "/query");
        self.query_page(credentials, &url, Some(&query)).await
    }

    pub(super) async fn next_page(
        &self,
        credentials: &Credentials,
        next_records_url: &str,
    ) -> Result<Page, CrmError> {
        // The cursor is stored data: never send the session to another host.
        if !next_records_url.starts_with("/services/data/") {
            return Err(CrmError::Config(
                "a Salesforce cursor must be a /services/data/ path".into(),
            ));
        }
        let url = format!("{}{next_records_url}", self.instance(credentials));
        self.query_page(credentials, &url, None).await
    }

    async fn query_page(
        &self,
        credentials: &Credentials,
        url: &str,
        query: Option<&str>,
    ) -> Result<Page, CrmError> {
        let auth = bearer(credentials)?;
        let options = format!("batchSize={}", self.config.page_size);
        let reply = self
            .http
            .send::<wire::QueryPage>(Lane::General, |c| {
                let request = c
                    .get(url)
                    .header("Authorization", &auth)
                    .header("Sforce-Query-Options", &options);
                match query {
                    Some(q) => request.query(&[("q", q)]),
                    None => request,
                }
            })
            .await?;
        let body = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty query response".into()))?;
        let next = match (body.done, body.next_records_url) {
            (true, _) => None,
            (false, Some(next_records_url)) => Some(Cursor::SalesforceQuery { next_records_url }),
            (false, None) => {
                return Err(CrmError::Malformed(
                    "query not done but no nextRecordsUrl".into(),
                ))
            }
        };
        let total = body.total_size;
        let records = body
            .records
            .into_iter()
            .map(wire::record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CrmError::Malformed)?;
        Ok(Page {
            records,
            next,
            total,
        })
    }

    /// The records with these ids, by sObject Collections retrieve (200 per call);
    /// ids with no live record (deleted) are left out.
    pub(super) async fn retrieve(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Vec<RemoteRecord>, CrmError> {
        let fields = self.field_names(credentials, entity).await?.join(",");
        let url = self.data_url(
            credentials,
            &format!("/composite/sobjects/{}", sobject(entity)),
        );
        let auth = bearer(credentials)?;
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::push::COLLECTION_LIMIT) {
            let ids = chunk.join(",");
            let reply = self
                .http
                .send::<Vec<Option<serde_json::Map<String, serde_json::Value>>>>(
                    Lane::General,
                    |c| {
                        c.get(&url)
                            .header("Authorization", &auth)
                            .query(&[("ids", ids.as_str()), ("fields", fields.as_str())])
                    },
                )
                .await?;
            for found in reply.body.unwrap_or_default().into_iter().flatten() {
                records.push(wire::record(found).map_err(CrmError::Malformed)?);
            }
        }
        Ok(records)
    }

    /// `getDeleted` from `since` (clamped to what Salesforce still remembers)
    /// to now, in one page.
    pub(super) async fn deleted(
        &self,
        credentials: &Credentials,
        entity: Entity,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        let now = Utc::now();
        let earliest = now - Duration::days(DELETED_WINDOW_DAYS) + DELETED_MARGIN;
        // A `since` in the future asks for nothing yet; start must not pass end.
        let start = since.map_or(earliest, |s| s.max(earliest)).min(now);
        if since.is_some_and(|s| s < earliest) {
            tracing::warn!(%earliest, "deletions older than Salesforce keeps them may be missed");
        }
        // Rounded up: a deletion in the current second is covered.
        let end = now + Duration::seconds(1);
        let (start, end) = (soql_time(start), soql_time(end));
        let url = self.data_url(
            credentials,
            &format!("/sobjects/{}/deleted/", sobject(entity)),
        );
        let auth = bearer(credentials)?;
        let reply = self
            .http
            .send::<wire::Deleted>(Lane::General, |c| {
                c.get(&url)
                    .header("Authorization", &auth)
                    .query(&[("start", &start), ("end", &end)])
            })
            .await?;
        let body = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty getDeleted response".into()))?;
        let records = body
            .deleted_records
            .into_iter()
            .map(|d| {
                let at = wire::parse_time(&d.deleted_date).ok_or_else(|| {
                    CrmError::Malformed(format!("deletedDate of {} does not parse", d.id))
                })?;
                Ok(RemoteRecord {
                    id: d.id,
                    properties: Default::default(),
                    created_at: at,
                    updated_at: at,
                    archived: true,
                })
            })
            .collect::<Result<Vec<_>, CrmError>>()?;
        Ok(Page {
            records,
            next: None,
            total: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn incremental_soql_filters_with_at_or_after_and_orders_by_modstamp_then_id() {
        let since = Utc
            .timestamp_millis_opt(1_704_067_200_750)
            .single()
            .unwrap_or_default();
        let fields = ["Id".to_owned(), "Name".to_owned()];
        assert_eq!(
            soql("Account", &fields, Some(since)),
            "SELECT Id, Name FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z \
             ORDER BY SystemModstamp ASC, Id ASC"
        );
        assert!(!soql("Account", &fields, None).contains("WHERE"));
    }
}
