//! What each catalogue provider supports, for `GET /v1/providers/{id}`: how it
//! authenticates, what each entity's pulls, deletions and writes can do, and whether
//! its changes arrive by webhook. A provider with a shipped template is described from
//! the template itself, so the answer cannot drift from what the binary does.

use syncledger_crm::custom::{self, AuthSpec, CustomSpec, EntitySpec, Scan};
use syncledger_domain::provider::{self, ProviderInfo};
use syncledger_domain::Entity;

use crate::error::EngineError;

/// A provider and what it supports.
#[derive(Clone, Debug)]
pub struct ProviderDetails {
    pub info: &'static ProviderInfo,
    /// Whether the binary ships a spec for it (an integration may still give its own).
    pub template: bool,
    /// Whether creating an integration needs a spec.
    pub spec_required: bool,
    /// The credential and where it goes; `None` when a spec declares it.
    pub auth: Option<AuthDetails>,
    /// What creating an integration asks for besides credentials.
    pub parameters: Vec<ParameterDetails>,
    /// Per entity; empty when a spec declares them.
    pub entities: Vec<EntityDetails>,
    /// Changes the provider announces to syncledger (each starts an incremental run).
    pub webhooks: Option<String>,
    /// The provider's limits in words.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct AuthDetails {
    /// oauth2, api_key, bearer or basic.
    pub kind: &'static str,
    /// The header (or query parameter) an API key goes in.
    pub header: Option<String>,
    pub query: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ParameterDetails {
    pub name: String,
    pub description: Option<String>,
    /// digits or slug.
    pub format: &'static str,
}

#[derive(Clone, Debug)]
pub struct EntityDetails {
    pub entity: Entity,
    /// incremental (the provider filters by modification time), descending_scan
    /// (read newest first down to the last run's mark), full_scan (everything, every run),
    /// import (no API: records are handed over by CSV import or inbound webhook) or none
    /// (nothing can be read: a write-only provider).
    pub sync: &'static str,
    /// feed (the provider lists deletions), delete_flag (a flag on listed records),
    /// after_full_scan (records a complete read no longer lists) or none.
    pub deletions: &'static str,
    pub creates: bool,
    pub updates: bool,
    /// Whether one request writes one record (else in batches); `None` when unknown.
    pub one_record_per_request: Option<bool>,
    /// Whether an update reads the record and writes back the whole document.
    pub full_document_writes: bool,
    /// Which accounts have the entity, when not every one does (an edition or feature
    /// of the vendor's); `None`: every account.
    pub limit: Option<String>,
}

/// The provider `id`, described; `None` when the catalogue does not have it.
pub fn describe(id: &str) -> Result<Option<ProviderDetails>, EngineError> {
    let Some(info) = provider::find(id) else {
        return Ok(None);
    };
    if provider::publishes_no_api(id) {
        return Ok(Some(without_api(info)));
    }
    let details = match custom::template(id) {
        Some(parsed) => {
            let spec = parsed.map_err(|_| EngineError::Corrupt("a shipped template"))?;
            from_template(info, &spec)
        }
        None if info.leads_only => leads(info),
        None if info.via_custom_spec => ProviderDetails {
            info,
            template: false,
            spec_required: true,
            auth: None,
            parameters: Vec::new(),
            entities: Vec::new(),
            webhooks: None,
            notes: vec![
                "Connected through a spec written for the provider's API (docs/custom-provider.md); what it supports is what the spec declares.".into(),
            ],
        },
        None => built_in(info),
    };
    Ok(Some(details))
}

fn built_in(info: &'static ProviderInfo) -> ProviderDetails {
    let entities = info
        .entities
        .iter()
        .map(|&entity| EntityDetails {
            entity,
            sync: "incremental",
            deletions: "feed",
            creates: true,
            updates: true,
            one_record_per_request: None,
            full_document_writes: false,
            limit: None,
        })
        .collect();
    ProviderDetails {
        info,
        template: false,
        spec_required: false,
        auth: Some(AuthDetails {
            kind: match info.auth_type {
                provider::AuthType::Oauth2 => "oauth2",
                provider::AuthType::ApiKey => "api_key",
                provider::AuthType::Basic => "basic",
                provider::AuthType::Configurable => "configurable",
                provider::AuthType::None => "none",
            },
            header: None,
            query: None,
        }),
        parameters: Vec::new(),
        entities,
        webhooks: webhooks_note(info.id),
        notes: Vec::new(),
    }
}

/// A vendor that publishes no API: records come in by CSV import and the integration's
/// inbound webhook; nothing is read from or written to the vendor.
fn without_api(info: &'static ProviderInfo) -> ProviderDetails {
    let entities = info
        .entities
        .iter()
        .map(|&entity| EntityDetails {
            entity,
            sync: "import",
            deletions: "none",
            creates: false,
            updates: false,
            one_record_per_request: None,
            full_document_writes: false,
            limit: None,
        })
        .collect();
    ProviderDetails {
        info,
        template: false,
        spec_required: false,
        auth: Some(AuthDetails {
            kind: "none",
            header: None,
            query: None,
        }),
        parameters: Vec::new(),
        entities,
        webhooks: Some(
            "inbound: Zapier, Make or any HTTP client posts records as JSON to the \
             integration's inbound webhook (POST /v1/integrations/{id}/inbound-webhook makes \
             its URL and secret)"
                .to_owned(),
        ),
        notes: vec![
            info.ways_in_reason.to_owned(),
            "Integrations pull only (direction pull, frequency manual): there is no API to \
             push to or to run a sync against; each CSV import or webhook delivery is a sync \
             run of kind import (history, audit, rollback)."
                .to_owned(),
            "Deletions in the vendor are not seen: a record missing from a later export stays."
                .to_owned(),
        ],
    }
}

/// A write-only provider: contacts sent as new leads, nothing read, changed or deleted.
fn leads(info: &'static ProviderInfo) -> ProviderDetails {
    let (parameters, vendor_notes): (Vec<ParameterDetails>, &[&str]) = match info.id {
        "shootq" => (
            vec![ParameterDetails {
                name: "form_link_code".into(),
                description: Some(
                    "The code in the link of the ShootQ contact form leads go to; it is all \
                     ShootQ asks for, and is kept as the integration's key"
                        .into(),
                ),
                format: "slug",
            }],
            &[
                "Each lead is the contact form's submit (first_name, last_name, email, phone, …); ShootQ refuses a lead without an email.",
                "ShootQ has no duplicate check: a lead sent again after a crash at the moment of sending arrives twice.",
            ],
        ),
        _ => (
            Vec::new(),
            &[
                "Each lead is a contact form sent to the Light Blue Inbox (key, type=contact form, ContactNameFirst, ContactEmail, …), to be imported there by hand.",
                "Each lead carries the app record's id as its ID (with Source=syncledger): Light Blue answers a repeat as a duplicate (-4), which counts as delivered.",
            ],
        ),
    };
    let mut notes = vec![
        format!(
            "{} accepts new leads only: integrations push, and pull or two-way is refused (the vendor offers no read API).",
            info.name
        ),
        "Only new app records are sent, once each; later edits and archiving send nothing (the vendor has no update or delete API).".to_owned(),
    ];
    notes.extend(vendor_notes.iter().map(|n| (*n).to_owned()));
    ProviderDetails {
        info,
        template: false,
        spec_required: false,
        auth: Some(AuthDetails {
            kind: "api_key",
            header: None,
            query: None,
        }),
        parameters,
        entities: vec![EntityDetails {
            entity: Entity::Contacts,
            sync: "none",
            deletions: "none",
            creates: true,
            updates: false,
            one_record_per_request: Some(true),
            full_document_writes: false,
            limit: None,
        }],
        webhooks: None,
        notes,
    }
}

fn from_template(info: &'static ProviderInfo, spec: &CustomSpec) -> ProviderDetails {
    let auth = match &spec.auth {
        AuthSpec::ApiKey { header, query, .. } => AuthDetails {
            kind: "api_key",
            header: header.clone(),
            query: query.clone(),
        },
        AuthSpec::Bearer {} => AuthDetails {
            kind: "bearer",
            header: Some("Authorization".into()),
            query: None,
        },
        AuthSpec::Basic {} => AuthDetails {
            kind: "basic",
            header: Some("Authorization".into()),
            query: None,
        },
        AuthSpec::Oauth2 { .. } => AuthDetails {
            kind: "oauth2",
            header: Some("Authorization".into()),
            query: None,
        },
    };
    let parameters = spec
        .parameters
        .iter()
        .map(|(name, p)| ParameterDetails {
            name: name.clone(),
            description: p.description.clone(),
            format: match p.format {
                custom::ParameterFormat::Digits => "digits",
                custom::ParameterFormat::Slug => "slug",
            },
        })
        .collect();
    let entities = [Entity::Contacts, Entity::Companies]
        .into_iter()
        .filter_map(|entity| spec.entity(entity).map(|e| entity_details(entity, e)))
        .collect();
    ProviderDetails {
        info,
        template: true,
        spec_required: false,
        auth: Some(auth),
        parameters,
        entities,
        webhooks: webhooks_note(info.id),
        notes: spec.notes.clone(),
    }
}

fn entity_details(entity: Entity, spec: &EntitySpec) -> EntityDetails {
    let write = spec.write.as_ref();
    EntityDetails {
        entity,
        sync: match spec.scan {
            Scan::Filtered => "incremental",
            Scan::Descending { .. } => "descending_scan",
            Scan::Full {} => "full_scan",
        },
        deletions: match (spec.scan, &spec.delete_flag_path) {
            (Scan::Full {}, _) => "after_full_scan",
            (_, Some(_)) => "delete_flag",
            _ => "none",
        },
        creates: write.is_some_and(|w| w.create.is_some()),
        updates: write.is_some_and(|w| w.update.is_some()),
        // A declarative spec writes one record per request.
        one_record_per_request: Some(true),
        full_document_writes: write
            .and_then(|w| w.update.as_ref())
            .is_some_and(|u| u.read_modify_write),
        limit: spec.unavailable.as_ref().map(|u| {
            let statuses: Vec<String> = u.statuses.iter().map(u16::to_string).collect();
            format!(
                "only where the account has them: elsewhere the list answers {} ({}), \
                 which ends this entity's pass while the others sync",
                statuses.join(" or "),
                u.reason
            )
        }),
    }
}

/// What the provider's webhooks do here, if syncledger receives them.
fn webhooks_note(id: &str) -> Option<String> {
    match provider::hook_auth(id) {
        Some(provider::HookAuth::Signed) => Some(
            "signed contact_created / contact_updated webhooks to /v1/webhooks/chatwoot/{id} \
             start incremental runs (set the secret with PUT /v1/integrations/{id}/webhook-secret)"
                .to_owned(),
        ),
        Some(provider::HookAuth::UrlToken) => Some(
            "REST hooks (contact.created; unsigned, the record's id only) to the URL made by \
             POST /v1/integrations/{id}/hook-url start incremental runs"
                .to_owned(),
        ),
        None => provider::sends_webhooks(id)
            .then(|| "signed change notifications start incremental runs".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_say_how_far_each_vendor_goes() -> Result<(), EngineError> {
        let chatwoot = describe("chatwoot")?.ok_or(EngineError::NotFound)?;
        assert!(chatwoot.template && !chatwoot.spec_required);
        assert_eq!(
            chatwoot.parameters.first().map(|p| p.name.as_str()),
            Some("account_id")
        );
        let contacts = chatwoot.entities.first().ok_or(EngineError::NotFound)?;
        assert_eq!(
            (contacts.sync, contacts.deletions),
            ("full_scan", "after_full_scan")
        );
        assert!(contacts.limit.is_none());
        let companies = chatwoot.entities.get(1).ok_or(EngineError::NotFound)?;
        assert_eq!(
            (companies.entity, companies.sync, companies.creates),
            (Entity::Companies, "full_scan", true)
        );
        let limit = companies.limit.as_deref().unwrap_or_default();
        assert!(
            limit.contains("403 or 404") && limit.contains("Enterprise"),
            "{limit}"
        );
        let tave = describe("tave")?.ok_or(EngineError::NotFound)?;
        assert_eq!(
            tave.auth.and_then(|a| a.header).as_deref(),
            Some("X-API-KEY")
        );
        assert_eq!(tave.entities.len(), 2);
        assert!(tave
            .entities
            .iter()
            .all(|e| e.sync == "descending_scan" && e.full_document_writes));
        let dubsado = describe("dubsado")?.ok_or(EngineError::NotFound)?;
        assert!(!dubsado.spec_required && !dubsado.template);
        assert!(dubsado
            .entities
            .iter()
            .all(|e| e.sync == "import" && !e.creates));
        let zoho = describe("zoho")?.ok_or(EngineError::NotFound)?;
        assert!(!zoho.spec_required && !zoho.template);
        assert_eq!(zoho.auth.map(|a| a.kind), Some("oauth2"));
        assert!(zoho
            .entities
            .iter()
            .all(|e| e.sync == "incremental" && e.deletions == "feed"));
        for id in ["lightblue", "shootq"] {
            let leads = describe(id)?.ok_or(EngineError::NotFound)?;
            assert!(!leads.spec_required && !leads.template, "{id}");
            let contacts = leads.entities.first().ok_or(EngineError::NotFound)?;
            assert_eq!(
                (contacts.sync, contacts.creates, contacts.updates),
                ("none", true, false)
            );
            assert!(leads.notes.iter().any(|n| n.contains("no read API")));
        }
        assert!(describe("myspace")?.is_none());
        Ok(())
    }
}
