//! How an integration syncs: direction, schedule, entities, conflict strategy.

pub use crate::entity::Entity;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Pull,
    Push,
    Bidirectional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStrategy {
    LastWriteWins,
    CrmWins,
    AppWins,
    ManualReview,
}

/// What a deletion in the CRM does to the app record linked to the deleted CRM record.
/// No choice makes a deletion silently undone: only `keep_and_recreate` creates the CRM
/// record again, because an admin asked for exactly that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCrmDelete {
    /// The app record is archived and its link kept, marked deleted in the CRM; nothing
    /// of it is pushed to that CRM again.
    #[default]
    ArchiveRecord,
    /// The app record stays (app-only); its link is marked unlinked, so later runs
    /// neither push it nor create it in the CRM again.
    Unlink,
    /// The link is dropped and the next push creates the record in the CRM again.
    KeepAndRecreate,
}

impl OnCrmDelete {
    pub fn as_str(self) -> &'static str {
        match self {
            OnCrmDelete::ArchiveRecord => "archive_record",
            OnCrmDelete::Unlink => "unlink",
            OnCrmDelete::KeepAndRecreate => "keep_and_recreate",
        }
    }
}

/// What archiving an app record does to the CRM records it is linked to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAppArchive {
    /// The CRM record stays as it is (the link stays too).
    #[default]
    Nothing,
    /// The next push deletes the CRM record (where the provider can delete records)
    /// and marks the link deleted in the CRM.
    DeleteInCrm,
}

/// When scheduled runs happen. `Interval` carries minutes, 15 ..= 1440.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Frequency {
    Manual,
    Interval { minutes: u32 },
    Daily,
    Realtime,
}

pub const MIN_INTERVAL_MINUTES: u32 = 15;
pub const MAX_INTERVAL_MINUTES: u32 = 1440;

impl Frequency {
    /// Minutes between scheduled runs, if the schedule is periodic.
    pub fn period_minutes(self) -> Option<u32> {
        match self {
            Frequency::Interval { minutes } => Some(minutes),
            Frequency::Daily => Some(1440),
            Frequency::Manual | Frequency::Realtime => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConfig {
    pub direction: Direction,
    pub frequency: Frequency,
    pub entities: Vec<Entity>,
    pub conflict_strategy: ConflictStrategy,
    /// Integrations created before the setting existed get the default.
    #[serde(default)]
    pub on_crm_delete: OnCrmDelete,
    #[serde(default)]
    pub on_app_archive: OnAppArchive,
}

/// A validation failure that names the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl SyncConfig {
    /// [`SyncConfig::validate`], and what `provider` can do: `realtime` needs a provider
    /// whose webhooks syncledger receives; a vendor without an API (unless the
    /// integration has a spec of its own, `spec`) takes pull and manual only.
    pub fn validate_for(&self, provider: &str, spec: bool) -> Result<(), FieldError> {
        self.validate()?;
        if self.direction != Direction::Push && crate::provider::leads_only(provider) {
            return Err(FieldError {
                field: "sync_config.direction",
                message: leads_only_message(provider),
            });
        }
        if !spec && crate::provider::publishes_no_api(provider) {
            return self.validate_without_api(provider);
        }
        if self.on_app_archive == OnAppArchive::DeleteInCrm
            && !crate::provider::deletes_records(provider)
        {
            return Err(FieldError {
                field: "sync_config.on_app_archive",
                message: format!(
                    "delete_in_crm needs a provider syncledger can delete records in, and \
                     {provider} is not one; use nothing"
                ),
            });
        }
        if self.frequency == Frequency::Realtime && !crate::provider::sends_webhooks(provider) {
            return Err(FieldError {
                field: "sync_config.frequency",
                message: format!(
                    "realtime needs change notifications, which {provider} does not send to \
                     syncledger; use interval, daily or manual"
                ),
            });
        }
        Ok(())
    }

    /// A vendor without an API: records only come in (CSV import, inbound webhook), so
    /// the direction is pull and nothing runs on a schedule.
    fn validate_without_api(&self, provider: &str) -> Result<(), FieldError> {
        if self.direction != Direction::Pull {
            return Err(FieldError {
                field: "sync_config.direction",
                message: format!(
                    "{provider} publishes no API, so syncledger cannot write to it; use pull \
                     (records come in by CSV import or the integration's inbound webhook)"
                ),
            });
        }
        if self.frequency != Frequency::Manual {
            return Err(FieldError {
                field: "sync_config.frequency",
                message: format!(
                    "{provider} publishes no API, so there is nothing to fetch on a schedule; \
                     use manual (records come in by CSV import or the inbound webhook)"
                ),
            });
        }
        if self.on_app_archive == OnAppArchive::DeleteInCrm {
            return Err(FieldError {
                field: "sync_config.on_app_archive",
                message: format!("{provider} publishes no API; use nothing"),
            });
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if let Frequency::Interval { minutes } = self.frequency {
            if !(MIN_INTERVAL_MINUTES..=MAX_INTERVAL_MINUTES).contains(&minutes) {
                return Err(FieldError {
                    field: "sync_config.interval_minutes",
                    message: format!(
                        "must be between {MIN_INTERVAL_MINUTES} and {MAX_INTERVAL_MINUTES}, got {minutes}"
                    ),
                });
            }
        }
        if self.entities.is_empty() {
            return Err(FieldError {
                field: "sync_config.entities",
                message: "must name at least one entity".into(),
            });
        }
        let mut seen = self.entities.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.entities.len() {
            return Err(FieldError {
                field: "sync_config.entities",
                message: "must not repeat an entity".into(),
            });
        }
        Ok(())
    }
}

/// Why a write-only provider's integration cannot pull: the vendor has no read API.
pub fn leads_only_message(provider: &str) -> String {
    let provider = crate::provider::find(provider).map_or(provider, |p| p.name);
    format!(
        "{provider} accepts new leads only and offers no read API, so syncledger cannot pull \
         from it: use direction push"
    )
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            direction: Direction::Pull,
            frequency: Frequency::Manual,
            entities: vec![Entity::Contacts, Entity::Companies],
            conflict_strategy: ConflictStrategy::ManualReview,
            on_crm_delete: OnCrmDelete::default(),
            on_app_archive: OnAppArchive::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_interval(minutes: u32) -> SyncConfig {
        SyncConfig {
            frequency: Frequency::Interval { minutes },
            ..SyncConfig::default()
        }
    }

    #[test]
    fn entities_are_named_as_they_print() {
        for e in Entity::ALL {
            assert_eq!(Entity::parse(e.as_str()), Some(e));
        }
        for other in ["", "Contacts", "deals", "contacts "] {
            assert_eq!(Entity::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_match_key_is_the_trimmed_lower_case_email_or_domain() {
        assert_eq!(Entity::Contacts.match_field(), "email");
        assert_eq!(Entity::Companies.match_field(), "domain");
        assert_eq!(
            Entity::match_key(Some("  Ada@Example.COM ")).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(Entity::match_key(Some("   ")), None);
        assert_eq!(Entity::match_key(None), None);
    }

    #[test]
    fn realtime_needs_a_provider_that_sends_webhooks() {
        let realtime = SyncConfig {
            frequency: Frequency::Realtime,
            ..SyncConfig::default()
        };
        for provider in ["hubspot", "chatwoot", "tave"] {
            assert!(realtime.validate_for(provider, false).is_ok(), "{provider}");
        }
        for provider in ["salesforce", "pipedrive", "zoho"] {
            assert_eq!(
                realtime.validate_for(provider, false).map_err(|e| e.field),
                Err("sync_config.frequency"),
                "{provider}"
            );
        }
        assert!(SyncConfig::default()
            .validate_for("salesforce", false)
            .is_ok());
    }

    #[test]
    fn a_vendor_without_an_api_takes_pull_and_manual_only() {
        let pull = SyncConfig {
            entities: vec![Entity::Contacts],
            ..SyncConfig::default()
        };
        assert!(pull.validate_for("dubsado", false).is_ok());
        for (direction, frequency, field) in [
            (Direction::Push, Frequency::Manual, "sync_config.direction"),
            (
                Direction::Bidirectional,
                Frequency::Manual,
                "sync_config.direction",
            ),
            (Direction::Pull, Frequency::Daily, "sync_config.frequency"),
            (
                Direction::Pull,
                Frequency::Realtime,
                "sync_config.frequency",
            ),
        ] {
            let config = SyncConfig {
                direction,
                frequency,
                ..pull.clone()
            };
            let refused = config.validate_for("honeybook", false);
            assert_eq!(refused.as_ref().map_err(|e| e.field), Err(field));
            assert!(refused.is_err_and(|e| e.message.contains("publishes no API")));
        }
        // An integration with a spec of its own (an undocumented API) is a custom one.
        let two_way = SyncConfig {
            direction: Direction::Bidirectional,
            ..pull
        };
        assert!(two_way.validate_for("honeybook", true).is_ok());
    }

    #[test]
    fn configs_stored_before_the_deletion_setting_archive_by_default() -> serde_json::Result<()> {
        let old = r#"{"direction":"bidirectional","frequency":{"kind":"manual"},
                      "entities":["contacts"],"conflict_strategy":"crm_wins"}"#;
        let config: SyncConfig = serde_json::from_str(old)?;
        assert_eq!(config.on_crm_delete, OnCrmDelete::ArchiveRecord);
        Ok(())
    }

    #[test]
    fn deleting_in_the_crm_needs_a_provider_that_can() {
        let deletes = SyncConfig {
            on_app_archive: OnAppArchive::DeleteInCrm,
            ..SyncConfig::default()
        };
        assert!(deletes.validate_for("hubspot", false).is_ok());
        for provider in ["salesforce", "pipedrive", "tave", "custom"] {
            assert_eq!(
                deletes.validate_for(provider, false).map_err(|e| e.field),
                Err("sync_config.on_app_archive"),
                "{provider}"
            );
        }
        assert!(SyncConfig::default()
            .validate_for("pipedrive", false)
            .is_ok());
    }

    #[test]
    fn write_only_providers_push_only() {
        for provider in ["lightblue", "shootq"] {
            for direction in [Direction::Pull, Direction::Bidirectional] {
                let config = SyncConfig {
                    direction,
                    entities: vec![Entity::Contacts],
                    ..SyncConfig::default()
                };
                let refused = config
                    .validate_for(provider, false)
                    .map_err(|e| (e.field, e.message));
                let Err((field, message)) = refused else {
                    panic!("{provider} accepted {direction:?}");
                };
                assert_eq!(field, "sync_config.direction");
                assert!(message.contains("no read API"), "{message}");
            }
            let push = SyncConfig {
                direction: Direction::Push,
                ..SyncConfig::default()
            };
            assert!(push.validate_for(provider, false).is_ok(), "{provider}");
        }
        assert!(SyncConfig::default().validate_for("tave", false).is_ok());
    }

    #[test]
    fn interval_bounds_are_inclusive() {
        assert!(with_interval(15).validate().is_ok());
        assert!(with_interval(1440).validate().is_ok());
        assert_eq!(
            with_interval(14).validate().map_err(|e| e.field),
            Err("sync_config.interval_minutes")
        );
        assert!(with_interval(1441).validate().is_err());
    }

    #[test]
    fn entities_must_be_present_and_distinct() {
        let mut c = SyncConfig::default();
        c.entities.clear();
        assert!(c.validate().is_err());
        c.entities = vec![Entity::Contacts, Entity::Contacts];
        assert!(c.validate().is_err());
    }
}
