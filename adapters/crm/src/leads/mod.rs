//! Write-only CRMs: Light Blue and ShootQ accept new leads and nothing else (no read,
//! update, delete or webhook API; `PROTOCOLS-NICHE.md` §9 and §10). One adapter shape
//! serves both: each record of a push is one lead, one request, and its answer is that
//! record's result. Reads answer a "not supported" error; the engine never asks for
//! them, because integrations of these providers push only.
//!
//! A lead carries the app record's id as its reference ([`REFERENCE`], set by the
//! engine): Light Blue checks it for duplicates, and it is the remote id recorded for
//! the record, since neither vendor answers with an id of its own.

mod lightblue;
mod shootq;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use syncledger_domain::Entity;

use crate::adapter::CrmAdapter;
use crate::error::CrmError;
use crate::http::{build_client, pacer, Executor, FailureClassifier, RetryPolicy};
use crate::outbound::{outbound::OutboundPolicy, Guard};
use crate::types::{
    Credentials, Cursor, FieldInfo, Identity, Page, PushKind, PushOp, PushResult, Tokens, Usage,
};

pub use lightblue::{form_body, status_outcome, LightBlue};
pub use shootq::{error_dict_text, ShootQ};

/// The property of a lead's operation that carries the app record's id (set by the
/// engine, never sent under this name).
pub const REFERENCE: &str = "$reference";

/// Where a lead provider is reached, and how patiently.
#[derive(Clone, Debug)]
pub struct LeadsConfig {
    /// The vendor's host (`https://online.lightbluesoftware.com`,
    /// `https://api.shootq.com`) or an override (a sandbox).
    pub base_url: String,
    pub outbound: OutboundPolicy,
    /// Client-side pacing; `None` leaves it to the retries.
    pub requests_per_minute: Option<u32>,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl LeadsConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            outbound: OutboundPolicy::default(),
            requests_per_minute: None,
            max_retries: 3,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The executor every request of this provider goes through: the outbound policy
    /// checks `base_url` now and every URL and resolved address at use.
    fn executor(
        &self,
        provider: &'static str,
        classifier: Option<FailureClassifier>,
    ) -> Result<Executor, CrmError> {
        let guard = Guard::builtin(self.outbound, provider);
        guard.check("base_url", &self.base_url)?;
        let client = build_client(self.connect_timeout, self.request_timeout, &guard)?;
        let policy = RetryPolicy {
            max_retries: self.max_retries,
            base_delay: self.retry_base_delay,
            max_delay: self.retry_max_delay,
        };
        let general = self
            .requests_per_minute
            .and_then(|n| pacer(n, Duration::from_secs(60)));
        let http = Executor::new(client, guard, general, None, policy).with_provider(provider);
        Ok(match classifier {
            Some(c) => http.with_classifier(c),
            None => http,
        })
    }
}

/// One lead: the mapped fields with a value, and the app record's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lead {
    pub fields: BTreeMap<String, String>,
    pub reference: String,
}

impl Lead {
    /// The lead an operation carries: blank values are left out (neither vendor has a
    /// way to say "unset"). `None` without a reference.
    pub fn of(op: &PushOp) -> Option<Lead> {
        let reference = op.properties.get(REFERENCE).cloned().flatten()?;
        let fields = op
            .properties
            .iter()
            .filter(|(name, _)| name.as_str() != REFERENCE)
            .filter_map(|(name, value)| {
                let value = value.as_deref()?.trim();
                (!value.is_empty()).then(|| (name.clone(), value.to_owned()))
            })
            .collect();
        Some(Lead { fields, reference })
    }
}

/// Why a lead was not delivered.
#[derive(Debug)]
pub enum Undelivered {
    /// The vendor refused this lead; the next one may go.
    Refused(String),
    /// The call failed (unreachable, 5xx, a timeout): maybe applied, so nothing more
    /// is sent in this batch.
    Failed(CrmError),
}

impl From<CrmError> for Undelivered {
    fn from(e: CrmError) -> Self {
        match e {
            CrmError::Rejected { .. } | CrmError::Malformed(_) => {
                Undelivered::Refused(e.to_string())
            }
            other => Undelivered::Failed(other),
        }
    }
}

/// What differs between the lead vendors.
#[async_trait]
pub trait Vendor: Send + Sync + std::fmt::Debug {
    /// The catalogue id.
    fn id(&self) -> &'static str;
    /// As people name it.
    fn name(&self) -> &'static str;
    fn http(&self) -> &Executor;
    /// The parameters a lead may carry, for the field catalogue.
    fn parameters(&self) -> &'static [(&'static str, &'static str, bool)];
    async fn deliver(&self, credentials: &Credentials, lead: &Lead) -> Result<(), Undelivered>;
    async fn check(&self, credentials: &Credentials) -> Result<Identity, CrmError>;
}

/// A write-only provider as a [`CrmAdapter`].
#[derive(Debug)]
pub struct LeadsAdapter<V: Vendor> {
    vendor: V,
}

impl<V: Vendor> LeadsAdapter<V> {
    pub fn new(vendor: V) -> Self {
        Self { vendor }
    }

    fn no_reads(&self) -> CrmError {
        CrmError::Config(format!(
            "{} accepts new leads only and offers no read API",
            self.vendor.name()
        ))
    }

    fn no_oauth(&self) -> CrmError {
        CrmError::Config(format!(
            "{} is connected with its key, not OAuth",
            self.vendor.name()
        ))
    }

    /// One result per operation, in order. A lead the vendor refused fails alone; a
    /// call that failed fails its lead and every later one, unsent.
    async fn push(&self, credentials: &Credentials, ops: &[PushOp]) -> Vec<PushResult> {
        let mut results = Vec::with_capacity(ops.len());
        let mut stopped: Option<String> = None;
        for (index, op) in ops.iter().enumerate() {
            let outcome = match (&stopped, &op.kind) {
                (Some(reason), _) => Err(format!("not sent: {reason}")),
                (None, PushKind::Update { .. }) => Err(format!(
                    "{} accepts new leads only: a change to a lead already sent is not sent",
                    self.vendor.name()
                )),
                (None, PushKind::Create | PushKind::Upsert { .. }) => {
                    self.deliver(credentials, op, &mut stopped).await
                }
            };
            results.push(match outcome {
                Ok(reference) => PushResult {
                    index,
                    remote_id: Some(reference),
                    error: None,
                },
                Err(error) => PushResult {
                    index,
                    remote_id: None,
                    error: Some(error),
                },
            });
        }
        results
    }

    async fn deliver(
        &self,
        credentials: &Credentials,
        op: &PushOp,
        stopped: &mut Option<String>,
    ) -> Result<String, String> {
        let Some(lead) = Lead::of(op) else {
            return Err("the lead has no reference to send".into());
        };
        // Whatever the vendor answered, its text never carries the key back out.
        let secret = api_key(credentials, self.vendor.name()).unwrap_or_default();
        match self.vendor.deliver(credentials, &lead).await {
            Ok(()) => Ok(lead.reference),
            Err(Undelivered::Refused(reason)) => Err(without(&reason, secret)),
            Err(Undelivered::Failed(e)) => {
                let reason = without(&e.to_string(), secret);
                *stopped = Some(reason.clone());
                Err(reason)
            }
        }
    }
}

#[async_trait]
impl<V: Vendor> CrmAdapter for LeadsAdapter<V> {
    fn supports_oauth(&self) -> bool {
        false
    }

    fn usage(&self) -> Usage {
        self.vendor.http().usage()
    }

    /// One lead a request, each recorded before the next is sent: a crash sends at
    /// most one lead again.
    fn push_batch_size(&self) -> usize {
        1
    }

    fn authorization_url(&self, _: &str, _: &str) -> Result<(String, String), CrmError> {
        Err(self.no_oauth())
    }

    async fn exchange_code(&self, _: &str, _: &str, _: &str) -> Result<Tokens, CrmError> {
        Err(self.no_oauth())
    }

    async fn refresh(&self, _: &str) -> Result<Tokens, CrmError> {
        Err(self.no_oauth())
    }

    async fn revoke(&self, _: &Tokens) -> Result<(), CrmError> {
        Ok(())
    }

    async fn test_connection(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        self.vendor.check(credentials).await
    }

    async fn fields(&self, _: &Credentials, entity: Entity) -> Result<Vec<FieldInfo>, CrmError> {
        if entity != Entity::Contacts {
            return Ok(Vec::new());
        }
        Ok(self
            .vendor
            .parameters()
            .iter()
            .map(|(name, label, required)| FieldInfo {
                name: (*name).to_owned(),
                label: (*label).to_owned(),
                field_type: "string".into(),
                required: *required,
                writable: true,
            })
            .collect())
    }

    async fn pull_page(
        &self,
        _: &Credentials,
        _: Entity,
        _: Option<Cursor>,
        _: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        Err(self.no_reads())
    }

    async fn push_batch(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        if entity != Entity::Contacts {
            return Err(CrmError::Config(format!(
                "{} accepts contacts only",
                self.vendor.name()
            )));
        }
        Ok(self.push(credentials, &ops).await)
    }

    async fn deletions(
        &self,
        _: &Credentials,
        _: Entity,
        _: Option<Cursor>,
        _: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        Err(self.no_reads())
    }
}

/// The API key of these credentials, or why they do not fit.
fn api_key<'a>(credentials: &'a Credentials, name: &str) -> Result<&'a str, CrmError> {
    use secrecy::ExposeSecret;
    match credentials {
        Credentials::ApiKey(key) => Ok(key.expose_secret()),
        _ => Err(CrmError::Config(format!("{name} is connected with a key"))),
    }
}

/// `text` with every occurrence of `secret` replaced, then cleaned for showing.
fn without(text: &str, secret: &str) -> String {
    let text = if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, syncledger_domain::provider_text::REDACTED)
    };
    syncledger_domain::provider_text::clean(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Properties;

    #[test]
    fn a_lead_keeps_values_and_its_reference() {
        let properties: Properties = [
            (REFERENCE, Some("rec-1")),
            ("ContactEmail", Some(" ada@example.org ")),
            ("ContactNameLast", Some("  ")),
            ("ContactPhoneMobile", None),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
        .collect();
        let op = PushOp {
            kind: PushKind::Create,
            properties,
        };
        let lead = Lead::of(&op);
        assert_eq!(
            lead,
            Some(Lead {
                fields: BTreeMap::from([("ContactEmail".into(), "ada@example.org".into())]),
                reference: "rec-1".into(),
            })
        );
        let unreferenced = PushOp {
            kind: PushKind::Create,
            properties: Properties::new(),
        };
        assert_eq!(Lead::of(&unreferenced), None);
    }

    proptest::proptest! {
        /// Whatever an operation's properties hold, its lead has the reference it was
        /// given, never under its own name among the fields, and only trimmed, non-blank
        /// values of the other properties.
        #[test]
        fn a_lead_is_its_references_and_values(
            properties in proptest::collection::btree_map(
                "[$A-Za-z_]{0,12}", proptest::option::of("\\PC{0,20}"), 0..10),
            reference in proptest::option::of("[0-9a-f-]{1,36}"),
        ) {
            let mut properties: Properties = properties;
            if let Some(r) = &reference {
                properties.insert(REFERENCE.to_owned(), Some(r.clone()));
            } else {
                properties.remove(REFERENCE);
            }
            let op = PushOp { kind: PushKind::Create, properties: properties.clone() };
            let lead = Lead::of(&op);
            proptest::prop_assert_eq!(lead.as_ref().map(|l| l.reference.clone()), reference);
            if let Some(lead) = lead {
                proptest::prop_assert!(!lead.fields.contains_key(REFERENCE));
                for (name, value) in &lead.fields {
                    let given = properties.get(name).cloned().flatten().unwrap_or_default();
                    proptest::prop_assert_eq!(value.as_str(), given.trim());
                    proptest::prop_assert!(!value.is_empty());
                }
            }
        }
    }

    #[test]
    fn secrets_echoed_back_are_redacted() {
        assert_eq!(without("bad key lb-123", "lb-123"), "bad key [redacted]");
    }
}
