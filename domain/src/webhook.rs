//! Outgoing webhooks: the catalogue of event types an app can subscribe to, which
//! committed events become which of them, the retry schedule of a delivery, and the
//! endpoint aggregate (its URL, subscriptions, signing secrets and whether it is on).
//!
//! The signing secret is kept as vault ciphertext only; the plaintext is shown once, when
//! it is made. Deliveries themselves are not events: the engine records each attempt in
//! its own table.

use crate::aggregate::{Aggregate, DomainEvent};
use crate::integration::{EncryptedSecret, IntegrationEvent};
use crate::record::RecordEvent;
use crate::sync_config::OnCrmDelete;
use crate::sync_run::{RunStatus, SyncRunEvent};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// An event type an endpoint can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "record.created")]
    RecordCreated,
    #[serde(rename = "record.updated")]
    RecordUpdated,
    #[serde(rename = "record.archived")]
    RecordArchived,
    #[serde(rename = "conflict.opened")]
    ConflictOpened,
    #[serde(rename = "conflict.resolved")]
    ConflictResolved,
    #[serde(rename = "sync_run.completed")]
    SyncRunCompleted,
    #[serde(rename = "sync_run.partial")]
    SyncRunPartial,
    #[serde(rename = "sync_run.failed")]
    SyncRunFailed,
    #[serde(rename = "sync_run.quota_exhausted")]
    SyncRunQuotaExhausted,
    #[serde(rename = "integration.error")]
    IntegrationError,
    #[serde(rename = "integration.reconnect_needed")]
    IntegrationReconnectNeeded,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::RecordCreated,
        EventType::RecordUpdated,
        EventType::RecordArchived,
        EventType::ConflictOpened,
        EventType::ConflictResolved,
        EventType::SyncRunCompleted,
        EventType::SyncRunPartial,
        EventType::SyncRunFailed,
        EventType::SyncRunQuotaExhausted,
        EventType::IntegrationError,
        EventType::IntegrationReconnectNeeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RecordCreated => "record.created",
            EventType::RecordUpdated => "record.updated",
            EventType::RecordArchived => "record.archived",
            EventType::ConflictOpened => "conflict.opened",
            EventType::ConflictResolved => "conflict.resolved",
            EventType::SyncRunCompleted => "sync_run.completed",
            EventType::SyncRunPartial => "sync_run.partial",
            EventType::SyncRunFailed => "sync_run.failed",
            EventType::SyncRunQuotaExhausted => "sync_run.quota_exhausted",
            EventType::IntegrationError => "integration.error",
            EventType::IntegrationReconnectNeeded => "integration.reconnect_needed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// What the event type means, for the catalogue (the OpenAPI document, the README).
    pub fn description(self) -> &'static str {
        match self {
            EventType::RecordCreated => "A record was created, in the app or from a CRM record seen for the first time",
            EventType::RecordUpdated => "A record's field values changed (an app edit, a sync, a resolution, a rollback)",
            EventType::RecordArchived => "A record was archived: by the app, after its CRM record was deleted, or by a rollback",
            EventType::ConflictOpened => "A field changed on both sides and waits for a person",
            EventType::ConflictResolved => "A queued conflict was resolved or ignored",
            EventType::SyncRunCompleted => "A sync run ended with every record processed",
            EventType::SyncRunPartial => "A sync run ended with some records failed",
            EventType::SyncRunFailed => "A sync run failed",
            EventType::SyncRunQuotaExhausted => "A sync run stopped because the CRM's API quota ran out",
            EventType::IntegrationError => "An integration went into error (credentials refused, connection test failed)",
            EventType::IntegrationReconnectNeeded => "An integration must be connected again (its credentials were dropped)",
        }
    }

    /// The types a record event is, for subscribers.
    pub fn of_record(event: &RecordEvent) -> Vec<EventType> {
        use EventType as T;
        use RecordEvent as R;
        match event {
            R::RecordCreated { .. } | R::RecordImported { .. } => vec![T::RecordCreated],
            R::FieldsChanged { .. } => vec![T::RecordUpdated],
            R::RemoteMerged { conflicts, .. } if !conflicts.is_empty() => vec![T::ConflictOpened],
            R::ConflictRaised { .. } => vec![T::ConflictOpened],
            R::ConflictResolved { .. } => vec![T::ConflictResolved, T::RecordUpdated],
            R::ConflictIgnored { .. } => vec![T::ConflictResolved],
            R::RecordArchived { .. } => vec![T::RecordArchived],
            R::RemoteDeleted {
                outcome: OnCrmDelete::ArchiveRecord,
                ..
            } => vec![T::RecordArchived],
            R::DivergenceSettled { .. } => vec![T::RecordUpdated],
            R::RolledBack {
                fields, archived, ..
            } => {
                let mut types = Vec::new();
                if !fields.is_empty() {
                    types.push(T::RecordUpdated);
                }
                if *archived == Some(true) {
                    types.push(T::RecordArchived);
                }
                types
            }
            _ => vec![],
        }
    }

    /// The app fields a record event changed (for `changed` in its payload).
    pub fn changed_fields(event: &RecordEvent) -> Vec<String> {
        use RecordEvent as R;
        match event {
            R::RecordImported { fields, .. } | R::FieldsChanged { fields, .. } => {
                fields.keys().cloned().collect()
            }
            R::ConflictResolved { field, .. } => vec![field.clone()],
            R::DivergenceSettled { settled, .. } => settled.keys().cloned().collect(),
            R::RolledBack { fields, .. } => fields.keys().cloned().collect(),
            _ => vec![],
        }
    }

    /// The type a sync run event is: its end, by status.
    pub fn of_run(event: &SyncRunEvent) -> Vec<EventType> {
        match event {
            SyncRunEvent::RunEnded { status, .. } => match status {
                RunStatus::Completed => vec![EventType::SyncRunCompleted],
                RunStatus::Partial => vec![EventType::SyncRunPartial],
                RunStatus::Failed => vec![EventType::SyncRunFailed],
                RunStatus::QuotaExhausted => vec![EventType::SyncRunQuotaExhausted],
                _ => vec![],
            },
            _ => vec![],
        }
    }

    /// The types an integration event is.
    pub fn of_integration(event: &IntegrationEvent) -> Vec<EventType> {
        match event {
            IntegrationEvent::IntegrationFailed { .. }
            | IntegrationEvent::ConnectionTested { ok: false, .. } => {
                vec![EventType::IntegrationError]
            }
            IntegrationEvent::EndpointChanged {
                credentials_dropped: true,
                ..
            } => vec![EventType::IntegrationReconnectNeeded],
            _ => vec![],
        }
    }
}

/// How long a delivery keeps being retried, and when an endpoint that keeps failing is
/// turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The wait before the first retry; each later one doubles it, up to `max_wait`.
    pub first: Duration,
    pub max_wait: Duration,
    /// A message not delivered this long after its first attempt is given up.
    pub give_up_after: Duration,
    /// An endpoint with no success for this long is disabled.
    pub disable_after: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            first: Duration::seconds(5),
            max_wait: Duration::hours(1),
            give_up_after: Duration::hours(24),
            disable_after: Duration::days(3),
        }
    }
}

impl RetrySchedule {
    /// When to try a message again after its `attempts`-th failed attempt at `now`, the
    /// first of which was at `first_attempt_at`; `None`: give it up. `retry_after` is what
    /// the receiver asked for (a 429's or 503's `Retry-After`), honoured within the
    /// 24-hour window; `jitter` in [0, 1) spreads retries of many messages apart (up to a
    /// fifth of the wait).
    pub fn next_attempt(
        &self,
        attempts: u32,
        first_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let doublings = attempts.saturating_sub(1).min(30);
        let base = self
            .first
            .checked_mul(1i32 << doublings.min(20))
            .unwrap_or(self.max_wait)
            .min(self.max_wait);
        let spread = base.num_milliseconds() as f64 * jitter.clamp(0.0, 1.0) / 5.0;
        let wait = base + Duration::milliseconds(spread as i64);
        let wait = retry_after.map_or(wait, |asked| asked.max(wait));
        let at = now + wait;
        (at <= first_attempt_at + self.give_up_after).then_some(at)
    }

    /// Whether an endpoint failing since `failing_since` is to be disabled at `now`.
    pub fn disables(&self, failing_since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - failing_since >= self.disable_after
    }
}

/// How long the previous signing secret still signs after a rotation.
pub fn rotation_overlap() -> Duration {
    Duration::hours(24)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WebhookEndpointEvent {
    WebhookEndpointCreated {
        endpoint_id: String,
        workspace_id: String,
        url: String,
        event_types: BTreeSet<EventType>,
        #[serde(default)]
        description: String,
        /// Created turned off: it sends nothing until turned on.
        #[serde(default = "on")]
        enabled: bool,
        secret: EncryptedSecret,
        at: DateTime<Utc>,
    },
    WebhookEndpointChanged {
        url: String,
        event_types: BTreeSet<EventType>,
        description: String,
        at: DateTime<Utc>,
    },
    WebhookEndpointEnabled {
        at: DateTime<Utc>,
    },
    /// Turned off by a person (`reason` says who) or because it kept failing.
    WebhookEndpointDisabled {
        reason: String,
        at: DateTime<Utc>,
    },
    /// A new signing secret; the previous one also signs until `previous_until`.
    WebhookSecretRotated {
        secret: EncryptedSecret,
        previous_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    WebhookEndpointDeleted {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for WebhookEndpointEvent {
    fn event_type(&self) -> &'static str {
        use WebhookEndpointEvent as E;
        match self {
            E::WebhookEndpointCreated { .. } => "WebhookEndpointCreated",
            E::WebhookEndpointChanged { .. } => "WebhookEndpointChanged",
            E::WebhookEndpointEnabled { .. } => "WebhookEndpointEnabled",
            E::WebhookEndpointDisabled { .. } => "WebhookEndpointDisabled",
            E::WebhookSecretRotated { .. } => "WebhookSecretRotated",
            E::WebhookEndpointDeleted { .. } => "WebhookEndpointDeleted",
        }
    }

    fn summary(&self) -> String {
        use WebhookEndpointEvent as E;
        match self {
            E::WebhookEndpointCreated {
                url, event_types, ..
            } => format!(
                "webhook endpoint {url} created for {} (signing secret redacted)",
                names(event_types)
            ),
            E::WebhookEndpointChanged {
                url, event_types, ..
            } => format!("webhook endpoint changed: {url} for {}", names(event_types)),
            E::WebhookEndpointEnabled { .. } => "webhook endpoint enabled".into(),
            E::WebhookEndpointDisabled { reason, .. } => {
                format!("webhook endpoint disabled: {reason}")
            }
            E::WebhookSecretRotated { previous_until, .. } => format!(
                "webhook signing secret rotated (redacted); the previous one signs until {}",
                previous_until.to_rfc3339()
            ),
            E::WebhookEndpointDeleted { .. } => "webhook endpoint deleted".into(),
        }
    }
}

fn on() -> bool {
    true
}

fn names(types: &BTreeSet<EventType>) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, PartialEq)]
pub enum WebhookEndpointCommand {
    Create {
        endpoint_id: String,
        workspace_id: String,
        url: String,
        event_types: BTreeSet<EventType>,
        description: String,
        enabled: bool,
        secret: EncryptedSecret,
        at: DateTime<Utc>,
    },
    /// `None` leaves a part as it is.
    Change {
        url: Option<String>,
        event_types: Option<BTreeSet<EventType>>,
        description: Option<String>,
        enabled: Option<bool>,
        actor: String,
        at: DateTime<Utc>,
    },
    RotateSecret {
        secret: EncryptedSecret,
        at: DateTime<Utc>,
    },
    /// The delivery worker's: no success since `failing_since`.
    DisableFailing {
        failing_since: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookEndpointError {
    #[error("webhook endpoint not found")]
    NotFound,
    #[error("webhook endpoint already exists")]
    AlreadyExists,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: Option<String>,
    pub workspace_id: String,
    pub url: String,
    pub event_types: BTreeSet<EventType>,
    pub description: String,
    pub enabled: bool,
    /// Why it is off, when it is.
    pub disabled_reason: Option<String>,
    pub secret: Option<EncryptedSecret>,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<(EncryptedSecret, DateTime<Utc>)>,
    pub deleted: bool,
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub version: i64,
}

fn invalid(field: &'static str, message: &str) -> WebhookEndpointError {
    WebhookEndpointError::Invalid {
        field,
        message: message.into(),
    }
}

fn validate(
    url: &str,
    event_types: &BTreeSet<EventType>,
    description: &str,
) -> Result<(), WebhookEndpointError> {
    if url.trim().is_empty() || url.len() > 2048 {
        return Err(invalid("url", "must be 1 to 2048 characters"));
    }
    if event_types.is_empty() {
        return Err(invalid(
            "event_types",
            "name at least one event type of the catalogue",
        ));
    }
    if description.chars().count() > 200 || description.chars().any(char::is_control) {
        return Err(invalid(
            "description",
            "must be at most 200 characters, without control characters",
        ));
    }
    Ok(())
}

impl WebhookEndpoint {
    /// Whether `t` is one of the endpoint's subscriptions.
    pub fn wants(&self, t: EventType) -> bool {
        self.event_types.contains(&t)
    }

    /// The secrets that sign a message sent at `now`: the current one, and the previous
    /// one during its overlap.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&EncryptedSecret> {
        let mut out: Vec<&EncryptedSecret> = self.secret.iter().collect();
        if let Some((previous, until)) = &self.previous_secret {
            if now < *until {
                out.push(previous);
            }
        }
        out
    }
}

impl Aggregate for WebhookEndpoint {
    const TYPE: &'static str = "webhook_endpoint";
    type Command = WebhookEndpointCommand;
    type Event = WebhookEndpointEvent;
    type Error = WebhookEndpointError;

    fn decide(
        &self,
        command: WebhookEndpointCommand,
    ) -> Result<Vec<WebhookEndpointEvent>, WebhookEndpointError> {
        use WebhookEndpointCommand as C;
        use WebhookEndpointEvent as E;
        if let C::Create {
            endpoint_id,
            workspace_id,
            url,
            event_types,
            description,
            enabled,
            secret,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(WebhookEndpointError::AlreadyExists);
            }
            validate(&url, &event_types, &description)?;
            return Ok(vec![E::WebhookEndpointCreated {
                endpoint_id,
                workspace_id,
                url,
                event_types,
                description,
                enabled,
                secret,
                at,
            }]);
        }
        if self.id.is_none() || self.deleted {
            return Err(WebhookEndpointError::NotFound);
        }
        Ok(match command {
            C::Create { .. } => return Err(WebhookEndpointError::AlreadyExists),
            C::Change {
                url,
                event_types,
                description,
                enabled,
                actor,
                at,
            } => {
                let url = url.unwrap_or_else(|| self.url.clone());
                let event_types = event_types.unwrap_or_else(|| self.event_types.clone());
                let description = description.unwrap_or_else(|| self.description.clone());
                validate(&url, &event_types, &description)?;
                let mut events = Vec::new();
                if url != self.url
                    || event_types != self.event_types
                    || description != self.description
                {
                    events.push(E::WebhookEndpointChanged {
                        url,
                        event_types,
                        description,
                        at,
                    });
                }
                match enabled {
                    Some(true) if !self.enabled => events.push(E::WebhookEndpointEnabled { at }),
                    Some(false) if self.enabled => events.push(E::WebhookEndpointDisabled {
                        reason: format!("disabled by {actor}"),
                        at,
                    }),
                    _ => {}
                }
                events
            }
            C::RotateSecret { secret, at } => vec![E::WebhookSecretRotated {
                secret,
                previous_until: at + rotation_overlap(),
                at,
            }],
            C::DisableFailing { failing_since, at } => {
                if !self.enabled {
                    return Ok(vec![]);
                }
                vec![E::WebhookEndpointDisabled {
                    reason: format!("no delivery succeeded since {}", failing_since.to_rfc3339()),
                    at,
                }]
            }
            C::Delete { at } => vec![E::WebhookEndpointDeleted { at }],
        })
    }

    fn apply(&mut self, event: &WebhookEndpointEvent) {
        use WebhookEndpointEvent as E;
        self.version += 1;
        match event {
            E::WebhookEndpointCreated {
                endpoint_id,
                workspace_id,
                url,
                event_types,
                description,
                enabled,
                secret,
                at,
            } => {
                self.id = Some(endpoint_id.clone());
                self.workspace_id = workspace_id.clone();
                self.url = url.clone();
                self.event_types = event_types.clone();
                self.description = description.clone();
                self.secret = Some(secret.clone());
                self.enabled = *enabled;
                self.created_at = Some(*at);
            }
            E::WebhookEndpointChanged {
                url,
                event_types,
                description,
                ..
            } => {
                self.url = url.clone();
                self.event_types = event_types.clone();
                self.description = description.clone();
            }
            E::WebhookEndpointEnabled { .. } => {
                self.enabled = true;
                self.disabled_reason = None;
            }
            E::WebhookEndpointDisabled { reason, .. } => {
                self.enabled = false;
                self.disabled_reason = Some(reason.clone());
            }
            E::WebhookSecretRotated {
                secret,
                previous_until,
                ..
            } => {
                if let Some(old) = self.secret.replace(secret.clone()) {
                    self.previous_secret = Some((old, *previous_until));
                }
            }
            E::WebhookEndpointDeleted { .. } => {
                self.deleted = true;
                self.enabled = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn secret(tag: &str) -> EncryptedSecret {
        EncryptedSecret {
            key_id: "k".into(),
            nonce: tag.into(),
            ciphertext: tag.into(),
        }
    }

    fn created() -> WebhookEndpointEvent {
        WebhookEndpointEvent::WebhookEndpointCreated {
            endpoint_id: "we1".into(),
            workspace_id: "ws1".into(),
            url: "https://app.example/hooks".into(),
            event_types: BTreeSet::from([EventType::RecordCreated]),
            description: String::new(),
            enabled: true,
            secret: secret("one"),
            at: t0(),
        }
    }

    fn change(enabled: Option<bool>, types: Option<BTreeSet<EventType>>) -> WebhookEndpointCommand {
        WebhookEndpointCommand::Change {
            url: None,
            event_types: types,
            description: None,
            enabled,
            actor: "token:t1".into(),
            at: t0(),
        }
    }

    #[test]
    fn the_catalogue_names_round_trip_through_serde_and_parse() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            let json = serde_json::to_value(t).unwrap_or_default();
            assert_eq!(json, serde_json::json!(t.as_str()));
            assert!(!t.description().is_empty());
        }
        assert_eq!(EventType::parse("record.deleted"), None);
    }

    #[test]
    fn an_endpoint_needs_a_subscription_and_a_sane_description() {
        let g = given::<WebhookEndpoint>([created()]);
        assert!(matches!(
            g.when(change(None, Some(BTreeSet::new()))),
            Err(WebhookEndpointError::Invalid {
                field: "event_types",
                ..
            })
        ));
        let g = given::<WebhookEndpoint>([created()]);
        let cmd = WebhookEndpointCommand::Change {
            url: None,
            event_types: None,
            description: Some("a\u{7}bell".into()),
            enabled: None,
            actor: "t".into(),
            at: t0(),
        };
        assert!(matches!(
            g.when(cmd),
            Err(WebhookEndpointError::Invalid {
                field: "description",
                ..
            })
        ));
    }

    #[test]
    fn disabling_twice_or_enabling_an_enabled_endpoint_is_a_no_op() {
        assert_eq!(
            given::<WebhookEndpoint>([created()]).when(change(Some(true), None)),
            Ok(vec![])
        );
        let off = WebhookEndpointEvent::WebhookEndpointDisabled {
            reason: "disabled by token:t1".into(),
            at: t0(),
        };
        assert_eq!(
            given::<WebhookEndpoint>([created()]).when(change(Some(false), None)),
            Ok(vec![off.clone()])
        );
        let failing = WebhookEndpointCommand::DisableFailing {
            failing_since: t0(),
            at: t0(),
        };
        assert_eq!(
            given::<WebhookEndpoint>([created(), off]).when(failing),
            Ok(vec![])
        );
    }

    #[test]
    fn a_rotation_keeps_the_previous_secret_signing_for_a_day() {
        let rotated = WebhookEndpointEvent::WebhookSecretRotated {
            secret: secret("two"),
            previous_until: t0() + Duration::hours(24),
            at: t0(),
        };
        let g = given::<WebhookEndpoint>([created(), rotated]);
        let s = g.state();
        let names = |at| -> Vec<String> {
            s.signing_secrets(at)
                .iter()
                .map(|x| x.nonce.clone())
                .collect()
        };
        assert_eq!(names(t0() + Duration::hours(1)), ["two", "one"]);
        assert_eq!(names(t0() + Duration::hours(24)), ["two"]);
    }

    #[test]
    fn a_deleted_endpoint_takes_no_more_commands() {
        let deleted = WebhookEndpointEvent::WebhookEndpointDeleted { at: t0() };
        assert_eq!(
            given::<WebhookEndpoint>([created(), deleted]).when(change(Some(true), None)),
            Err(WebhookEndpointError::NotFound)
        );
    }

    #[test]
    fn run_ends_and_record_changes_map_to_their_types() {
        let ended = |status| SyncRunEvent::RunEnded {
            status,
            reason: None,
            at: t0(),
        };
        assert_eq!(
            EventType::of_run(&ended(RunStatus::Completed)),
            [EventType::SyncRunCompleted]
        );
        assert_eq!(
            EventType::of_run(&ended(RunStatus::QuotaExhausted)),
            [EventType::SyncRunQuotaExhausted]
        );
        assert!(EventType::of_run(&ended(RunStatus::Cancelled)).is_empty());
        let archived = RecordEvent::RecordArchived {
            actor: "t".into(),
            at: t0(),
        };
        assert_eq!(EventType::of_record(&archived), [EventType::RecordArchived]);
    }

    proptest! {
        /// Waits grow, never pass the give-up window, and always honour Retry-After
        /// within it.
        #[test]
        fn retries_back_off_within_the_window(
            attempts in 1u32..60,
            elapsed_secs in 0i64..90_000,
            retry_after_secs in proptest::option::of(0i64..100_000),
            jitter in 0.0f64..1.0,
        ) {
            let s = RetrySchedule::default();
            let first = t0();
            let now = first + Duration::seconds(elapsed_secs);
            let asked = retry_after_secs.map(Duration::seconds);
            match s.next_attempt(attempts, first, now, asked, jitter) {
                Some(at) => {
                    prop_assert!(at > now);
                    prop_assert!(at <= first + s.give_up_after);
                    prop_assert!(at - now <= s.max_wait + s.max_wait / 5 || asked.is_some());
                    if let Some(asked) = asked {
                        prop_assert!(at - now >= asked);
                    }
                    let next = s.next_attempt(attempts + 1, first, now, None, 0.0);
                    if let Some(next) = next {
                        let this = s.next_attempt(attempts, first, now, None, 0.0);
                        prop_assert!(this.is_none_or(|t| t <= next));
                    }
                }
                None => {
                    // Given up only when even the shortest wait leaves the window.
                    let shortest = asked.map_or(s.first, |a| a.max(s.first));
                    prop_assert!(attempts > 1 || now + shortest > first + s.give_up_after);
                }
            }
        }
    }
}
