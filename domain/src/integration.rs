//! An integration: one workspace's connection to one CRM, with its credentials
//! (as ciphertext only), its status lifecycle, sync configuration and field mappings.

use crate::aggregate::{Aggregate, DomainEvent};
use crate::merge::{MergePolicy, Side};
use crate::sync_config::{Entity, FieldError, SyncConfig};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// pending_auth → connected → paused / error / disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    PendingAuth,
    Connected,
    Paused,
    Error,
    Disconnected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingAuth => "pending_auth",
            Status::Connected => "connected",
            Status::Paused => "paused",
            Status::Error => "error",
            Status::Disconnected => "disconnected",
        }
    }
}

/// What kind of secret the ciphertext holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Oauth2,
    ApiKey,
    Basic,
    /// The secret that authenticates deliveries to the integration's inbound webhook
    /// (a CRM without an API: Zapier or Make calls syncledger).
    InboundWebhook,
}

/// An AEAD ciphertext produced by the key vault. Never plaintext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedSecret {
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

impl std::fmt::Debug for EncryptedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedSecret")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingDirection {
    Pull,
    Push,
    Both,
    None,
}

/// CRM field ↔ app field, with an optional transform expression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapping {
    pub crm_field: String,
    pub app_field: String,
    pub direction: MappingDirection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IntegrationEvent {
    IntegrationCreated {
        integration_id: String,
        workspace_id: String,
        provider: String,
        name: String,
        sync_config: SyncConfig,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_url: Option<String>,
        /// A declarative provider spec (JSON), for custom and niche providers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spec: Option<String>,
        at: DateTime<Utc>,
    },
    CredentialsStored {
        kind: CredentialKind,
        secret: EncryptedSecret,
        expires_at: Option<DateTime<Utc>>,
        /// OAuth only: whether the provider issued a refresh token. `false`: the
        /// access token is used until it expires, then the integration must be
        /// connected again. Absent for other credentials (and in older events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_token: Option<bool>,
        at: DateTime<Utc>,
    },
    CredentialsRotated {
        kind: CredentialKind,
        secret: EncryptedSecret,
        expires_at: Option<DateTime<Utc>>,
        /// OAuth only: whether the provider issued a refresh token. `false`: the
        /// access token is used until it expires, then the integration must be
        /// connected again. Absent for other credentials (and in older events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_token: Option<bool>,
        at: DateTime<Utc>,
    },
    ConnectionTested {
        ok: bool,
        detail: String,
        /// The provider account the credentials belong to (HubSpot portal id,
        /// Salesforce org id...): how webhooks find their integration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account_id: Option<String>,
        at: DateTime<Utc>,
    },
    IntegrationFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    IntegrationPaused {
        at: DateTime<Utc>,
    },
    IntegrationResumed {
        at: DateTime<Utc>,
    },
    SyncConfigChanged {
        sync_config: SyncConfig,
        at: DateTime<Utc>,
    },
    FieldMappingsChanged {
        entity: Entity,
        mappings: Vec<FieldMapping>,
        /// A CEL predicate over the CRM record: which records of the entity sync.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        at: DateTime<Utc>,
    },
    IntegrationDisconnected {
        reason: String,
        at: DateTime<Utc>,
    },
    /// One caller won the right to refresh the credentials of `generation`;
    /// others wait for the result instead of spending the refresh token too.
    CredentialRefreshClaimed {
        holder: String,
        generation: u64,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The holder gave up a refresh that may succeed later (provider unreachable).
    CredentialRefreshReleased {
        holder: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A sync run became the integration's one active run.
    SyncRunBegun {
        run_id: String,
        at: DateTime<Utc>,
    },
    /// The active run ended; another may begin.
    SyncRunFinished {
        run_id: String,
        at: DateTime<Utc>,
    },
    /// A field's "always use" rule was set (`side`) or removed (`None`).
    ConflictRuleChanged {
        field: String,
        side: Option<Side>,
        at: DateTime<Utc>,
    },
    IntegrationRenamed {
        name: String,
        at: DateTime<Utc>,
    },
    /// Where the integration's requests go changed: its base URL override and its
    /// declarative spec, both as they are now.
    EndpointChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spec: Option<String>,
        /// The stored credentials were dropped because the new endpoint would have
        /// sent them to a host they were not given for: the integration must be
        /// connected again.
        credentials_dropped: bool,
        at: DateTime<Utc>,
    },
    /// The secret that authenticates the provider's webhooks to this integration was
    /// set or replaced (sealed; never shown again).
    WebhookSecretSet {
        secret: EncryptedSecret,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for IntegrationEvent {
    fn event_type(&self) -> &'static str {
        use IntegrationEvent as E;
        match self {
            E::IntegrationCreated { .. } => "IntegrationCreated",
            E::CredentialsStored { .. } => "CredentialsStored",
            E::CredentialsRotated { .. } => "CredentialsRotated",
            E::ConnectionTested { .. } => "ConnectionTested",
            E::IntegrationFailed { .. } => "IntegrationFailed",
            E::IntegrationPaused { .. } => "IntegrationPaused",
            E::IntegrationResumed { .. } => "IntegrationResumed",
            E::SyncConfigChanged { .. } => "SyncConfigChanged",
            E::FieldMappingsChanged { .. } => "FieldMappingsChanged",
            E::IntegrationDisconnected { .. } => "IntegrationDisconnected",
            E::CredentialRefreshClaimed { .. } => "CredentialRefreshClaimed",
            E::CredentialRefreshReleased { .. } => "CredentialRefreshReleased",
            E::SyncRunBegun { .. } => "SyncRunBegun",
            E::SyncRunFinished { .. } => "SyncRunFinished",
            E::ConflictRuleChanged { .. } => "ConflictRuleChanged",
            E::IntegrationRenamed { .. } => "IntegrationRenamed",
            E::EndpointChanged { .. } => "EndpointChanged",
            E::WebhookSecretSet { .. } => "WebhookSecretSet",
        }
    }

    fn summary(&self) -> String {
        use IntegrationEvent as E;
        match self {
            E::IntegrationCreated { provider, name, .. } => {
                format!("integration {name:?} created for provider {provider}")
            }
            E::CredentialsStored {
                kind,
                secret,
                refresh_token,
                ..
            } => format!(
                "{} credentials stored (encrypted with key {}, secret redacted){}",
                kind_label(*kind),
                secret.key_id,
                refresh_note(*refresh_token)
            ),
            E::CredentialsRotated {
                kind,
                secret,
                refresh_token,
                ..
            } => format!(
                "{} credentials rotated (encrypted with key {}, secret redacted){}",
                kind_label(*kind),
                secret.key_id,
                refresh_note(*refresh_token)
            ),
            E::ConnectionTested { ok: true, .. } => "connection test succeeded".into(),
            E::ConnectionTested {
                ok: false, detail, ..
            } => {
                format!("connection test failed: {detail}")
            }
            E::IntegrationFailed { reason, .. } => format!("integration failed: {reason}"),
            E::IntegrationPaused { .. } => "integration paused".into(),
            E::IntegrationResumed { .. } => "integration resumed".into(),
            E::SyncConfigChanged { sync_config, .. } => format!(
                "sync config changed: {:?}, {:?}, conflict strategy {:?}",
                sync_config.direction, sync_config.frequency, sync_config.conflict_strategy
            ),
            E::FieldMappingsChanged {
                entity,
                mappings,
                filter,
                ..
            } => format!(
                "field mappings for {} changed ({} mapping(s){})",
                entity.as_str(),
                mappings.len(),
                if filter.is_some() { ", filtered" } else { "" }
            ),
            E::IntegrationDisconnected { reason, .. } => {
                format!("integration disconnected: {reason}")
            }
            E::CredentialRefreshClaimed { holder, .. } => {
                format!("credential refresh started by {holder}")
            }
            E::CredentialRefreshReleased { holder, reason, .. } => {
                format!("credential refresh by {holder} abandoned: {reason}")
            }
            E::SyncRunBegun { run_id, .. } => format!("sync run {run_id} began"),
            E::SyncRunFinished { run_id, .. } => format!("sync run {run_id} finished"),
            E::ConflictRuleChanged {
                field,
                side: Some(side),
                ..
            } => format!(
                "conflicts on {field} now always keep the {} value",
                side_label(*side)
            ),
            E::ConflictRuleChanged {
                field, side: None, ..
            } => {
                format!("conflict rule for {field} removed")
            }
            E::IntegrationRenamed { name, .. } => format!("integration renamed to {name:?}"),
            E::EndpointChanged {
                base_url,
                spec,
                credentials_dropped,
                ..
            } => format!(
                "endpoint changed: base URL {}{}{}",
                base_url.as_deref().unwrap_or("(the provider's default)"),
                if spec.is_some() {
                    ", spec replaced"
                } else {
                    ""
                },
                if *credentials_dropped {
                    "; the credentials were dropped because they would have gone to another host: connect again"
                } else {
                    ""
                }
            ),
            E::WebhookSecretSet { secret, .. } => format!(
                "webhook secret set (encrypted with key {}, secret redacted)",
                secret.key_id
            ),
        }
    }
}

fn side_label(side: Side) -> &'static str {
    match side {
        Side::App => "app",
        Side::Crm => "CRM",
    }
}

/// What an audit reader must know about a connection's refresh token.
fn refresh_note(refresh_token: Option<bool>) -> &'static str {
    match refresh_token {
        Some(true) => "; with a refresh token",
        Some(false) => "; no refresh token was issued (refresh_token: false): the access token works until it expires, then the integration must be connected again",
        None => "",
    }
}

fn kind_label(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Oauth2 => "OAuth 2.0",
        CredentialKind::ApiKey => "API key",
        CredentialKind::Basic => "basic-auth",
        CredentialKind::InboundWebhook => "inbound-webhook",
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum IntegrationCommand {
    Create {
        integration_id: String,
        workspace_id: String,
        provider: String,
        name: String,
        sync_config: SyncConfig,
        base_url: Option<String>,
        spec: Option<String>,
        at: DateTime<Utc>,
    },
    /// First credentials, or new ones after an error: moves the integration to connected.
    StoreCredentials {
        kind: CredentialKind,
        secret: EncryptedSecret,
        expires_at: Option<DateTime<Utc>>,
        /// OAuth only: whether the provider issued a refresh token.
        refresh_token: Option<bool>,
        at: DateTime<Utc>,
    },
    /// Replace the credentials of a working integration (refresh, key rotation).
    RotateCredentials {
        kind: CredentialKind,
        secret: EncryptedSecret,
        expires_at: Option<DateTime<Utc>>,
        /// OAuth only: whether the provider issued a refresh token.
        refresh_token: Option<bool>,
        at: DateTime<Utc>,
    },
    RecordConnectionTest {
        ok: bool,
        detail: String,
        account_id: Option<String>,
        at: DateTime<Utc>,
    },
    MarkFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    Pause {
        at: DateTime<Utc>,
    },
    Resume {
        at: DateTime<Utc>,
    },
    ChangeSyncConfig {
        sync_config: SyncConfig,
        at: DateTime<Utc>,
    },
    /// Replace an entity's mappings and filter. Only an entity the integration syncs;
    /// setting what is already set is a no-op. An empty filter means none.
    ChangeFieldMappings {
        entity: Entity,
        mappings: Vec<FieldMapping>,
        filter: Option<String>,
        at: DateTime<Utc>,
    },
    Disconnect {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Take the single right to refresh the credentials of `generation` until `until`.
    /// Fails with `CredentialsChanged` when they were already replaced, and with
    /// `RefreshInProgress` while another holder's claim is live.
    ClaimCredentialRefresh {
        holder: String,
        generation: u64,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The claimed refresh succeeded: store the new credentials.
    CompleteCredentialRefresh {
        holder: String,
        generation: u64,
        kind: CredentialKind,
        secret: EncryptedSecret,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// Make `run_id` the one active sync run. Only a connected integration runs, except
    /// a rollback (`rollback: true`), which runs in any status: pausing is an admin's first
    /// reaction to a bad run, and a disconnected integration still gets its app side back.
    /// `RunActive` while another run is active.
    BeginSyncRun {
        run_id: String,
        rollback: bool,
        at: DateTime<Utc>,
    },
    /// The active run ended (in any status). Ending another run, or none, is a no-op.
    FinishSyncRun {
        run_id: String,
        at: DateTime<Utc>,
    },
    /// The claimed refresh failed. `permanent` (the provider refused the grant) puts
    /// the integration in error with `reason`; otherwise the claim is released.
    AbandonCredentialRefresh {
        holder: String,
        generation: u64,
        reason: String,
        permanent: bool,
        at: DateTime<Utc>,
    },
    /// Settle every conflict on `field` for `side` from now on; `None` removes the rule.
    SetConflictRule {
        field: String,
        side: Option<Side>,
        at: DateTime<Utc>,
    },
    /// A new name (1 to 200 characters); its uniqueness is the workspace's to decide.
    Rename {
        name: String,
        at: DateTime<Utc>,
    },
    /// Send requests elsewhere: the base URL override and the spec as they should be
    /// (both checked by the caller against the outbound policy). Refused while a run is
    /// active. `keep_credentials`: whether every host the stored credentials would now
    /// go to is one they went to before; when not, they are dropped and the
    /// integration waits to be connected again.
    ChangeEndpoint {
        base_url: Option<String>,
        spec: Option<String>,
        keep_credentials: bool,
        at: DateTime<Utc>,
    },
    /// Set (or replace) the secret the provider's webhooks to this integration are
    /// authenticated with; only for providers with a per-integration webhook.
    SetWebhookSecret {
        secret: EncryptedSecret,
        at: DateTime<Utc>,
    },
}

impl IntegrationCommand {
    fn action(&self) -> &'static str {
        use IntegrationCommand as C;
        match self {
            C::Create { .. } => "create",
            C::StoreCredentials { .. } => "store credentials",
            C::RotateCredentials { .. } => "rotate credentials",
            C::RecordConnectionTest { .. } => "test the connection",
            C::MarkFailed { .. } => "mark as failed",
            C::Pause { .. } => "pause",
            C::Resume { .. } => "resume",
            C::ChangeSyncConfig { .. } => "change the sync config",
            C::ChangeFieldMappings { .. } => "change field mappings",
            C::Disconnect { .. } => "disconnect",
            C::ClaimCredentialRefresh { .. } => "refresh the credentials of",
            C::CompleteCredentialRefresh { .. } => "complete a credential refresh of",
            C::AbandonCredentialRefresh { .. } => "abandon a credential refresh of",
            C::BeginSyncRun { .. } => "start a sync run on",
            C::FinishSyncRun { .. } => "finish a sync run of",
            C::SetConflictRule { .. } => "change the conflict rules of",
            C::Rename { .. } => "rename",
            C::ChangeEndpoint { .. } => "change the endpoint of",
            C::SetWebhookSecret { .. } => "set the webhook secret of",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrationError {
    #[error("integration already exists")]
    AlreadyExists,
    #[error("integration not found")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("cannot {action} an integration that is {}", from.as_str())]
    InvalidTransition { from: Status, action: &'static str },
    /// The credentials were replaced since the caller read them: reload them.
    #[error("the credentials changed since they were read")]
    CredentialsChanged,
    /// Another caller is refreshing the credentials until `until`.
    #[error("another worker is refreshing the credentials")]
    RefreshInProgress { until: DateTime<Utc> },
    /// The integration already has an active sync run.
    #[error("sync run {run_id} is already active on this integration")]
    RunActive { run_id: String },
}

impl From<FieldError> for IntegrationError {
    fn from(e: FieldError) -> Self {
        IntegrationError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub id: Option<String>,
    pub workspace_id: String,
    pub provider: String,
    pub name: String,
    pub status: Status,
    pub sync_config: SyncConfig,
    pub base_url: Option<String>,
    pub credential_kind: Option<CredentialKind>,
    pub secret: Option<EncryptedSecret>,
    pub credentials_expire_at: Option<DateTime<Utc>>,
    /// When the current credentials were stored: with `credentials_expire_at` it gives
    /// a token's lifetime, which bounds the refresh margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_issued_at: Option<DateTime<Utc>>,
    /// When someone last stored credentials (connected, typed a key); rotations keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_set_at: Option<DateTime<Utc>>,
    /// When those credentials were last rotated (an OAuth refresh), if they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_rotated_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub mappings: Vec<(Entity, Vec<FieldMapping>)>,
    /// The sync filter of each entity that has one (see `mappings_for`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filters: BTreeMap<Entity, String>,
    /// How many events the state has seen (the aggregate's sequence).
    #[serde(default)]
    pub version: i64,
    /// The declarative provider spec (JSON), for custom and niche providers.
    #[serde(default)]
    pub spec: Option<String>,
    /// Bumped each time credentials are stored or replaced.
    #[serde(default)]
    pub credentials_generation: u64,
    /// Who may refresh the current credentials, and until when.
    #[serde(default)]
    pub refresh_lease: Option<RefreshLease>,
    /// The one queued or running sync run, if any.
    #[serde(default)]
    pub active_run: Option<String>,
    /// The provider account the credentials belong to, as the last connection test
    /// reported it.
    #[serde(default)]
    pub account_id: Option<String>,
    /// "Always use" rules: conflicts on these fields are settled for that side.
    #[serde(default)]
    pub conflict_rules: BTreeMap<String, Side>,
    /// The sealed secret of the provider's webhooks to this integration, if set.
    #[serde(default)]
    pub webhook_secret: Option<EncryptedSecret>,
}

/// A live claim on refreshing the credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshLease {
    pub holder: String,
    pub until: DateTime<Utc>,
}

/// An integration's name: 1 to 200 characters once trimmed.
fn validate_name(name: &str) -> Result<(), IntegrationError> {
    let n = name.trim().chars().count();
    if (1..=200).contains(&n) {
        Ok(())
    } else {
        Err(IntegrationError::Invalid {
            field: "name",
            message: "must be 1 to 200 characters".into(),
        })
    }
}

/// A conflict rule names one app field: 1 to 200 characters, no control characters.
fn validate_rule_field(field: &str) -> Result<(), IntegrationError> {
    let n = field.chars().count();
    let message = if field.trim().is_empty() {
        "must not be empty"
    } else if n > 200 {
        "must be at most 200 characters"
    } else if field.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(IntegrationError::Invalid {
        field: "field",
        message: message.into(),
    })
}

fn validate_mappings(mappings: &[FieldMapping]) -> Result<(), IntegrationError> {
    let invalid = |message: String| IntegrationError::Invalid {
        field: "mappings",
        message,
    };
    let mut app_fields = std::collections::BTreeSet::new();
    for m in mappings {
        if m.crm_field.trim().is_empty() || m.app_field.trim().is_empty() {
            return Err(invalid("crm_field and app_field must not be empty".into()));
        }
        let writes_app = matches!(m.direction, MappingDirection::Pull | MappingDirection::Both);
        if writes_app && !app_fields.insert(m.app_field.as_str()) {
            return Err(invalid(format!(
                "app field {:?} is filled by more than one CRM field",
                m.app_field
            )));
        }
    }
    Ok(())
}

impl Integration {
    /// The command that sets new credentials in the integration's current state: the
    /// first ones (or new ones after an error) are stored, a working integration's are
    /// rotated.
    pub fn credentials_command(
        &self,
        kind: CredentialKind,
        secret: EncryptedSecret,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<bool>,
        at: DateTime<Utc>,
    ) -> IntegrationCommand {
        if matches!(self.status, Status::PendingAuth | Status::Error) {
            IntegrationCommand::StoreCredentials {
                kind,
                secret,
                expires_at,
                refresh_token,
                at,
            }
        } else {
            IntegrationCommand::RotateCredentials {
                kind,
                secret,
                expires_at,
                refresh_token,
                at,
            }
        }
    }

    /// The stored mappings and filter of `entity`; `None` if they were never set, in
    /// which case the provider's defaults apply.
    pub fn mappings_for(&self, entity: Entity) -> Option<(&[FieldMapping], Option<&str>)> {
        let (_, mappings) = self.mappings.iter().find(|(e, _)| *e == entity)?;
        Some((mappings, self.filters.get(&entity).map(String::as_str)))
    }

    /// How this integration's merges settle conflicts: the sync config's strategy, with
    /// the "always use" rules first.
    pub fn merge_policy(&self) -> MergePolicy {
        MergePolicy {
            strategy: self.sync_config.conflict_strategy,
            always: self.conflict_rules.clone(),
        }
    }

    fn forget_credentials(&mut self) {
        self.secret = None;
        self.credential_kind = None;
        self.credentials_expire_at = None;
        self.credentials_issued_at = None;
        self.credentials_set_at = None;
        self.credentials_rotated_at = None;
        self.refresh_lease = None;
    }

    fn same_generation(&self, generation: u64) -> Result<(), IntegrationError> {
        if generation == self.credentials_generation {
            Ok(())
        } else {
            Err(IntegrationError::CredentialsChanged)
        }
    }

    fn reject(&self, command: &IntegrationCommand) -> IntegrationError {
        IntegrationError::InvalidTransition {
            from: self.status,
            action: command.action(),
        }
    }

    /// Which statuses each command may start from.
    fn allowed(&self, command: &IntegrationCommand) -> bool {
        use IntegrationCommand as C;
        use Status as S;
        match (command, self.status) {
            // A run that ends after a disconnection still releases its slot.
            (C::FinishSyncRun { .. }, _) => true,
            (C::BeginSyncRun { rollback: true, .. }, _) => true,
            (_, S::Disconnected) => false,
            (C::Disconnect { .. }, _) => true,
            (C::StoreCredentials { .. }, S::PendingAuth | S::Error) => true,
            (C::RotateCredentials { .. }, S::Connected | S::Paused | S::Error) => true,
            (C::RecordConnectionTest { .. }, S::Connected | S::Paused | S::Error) => true,
            (C::MarkFailed { .. }, S::Connected | S::Paused) => true,
            (C::Pause { .. }, S::Connected) => true,
            (C::Resume { .. }, S::Paused) => true,
            (C::ChangeSyncConfig { .. } | C::ChangeFieldMappings { .. }, _) => true,
            (C::BeginSyncRun { .. }, S::Connected) => true,
            (
                C::ClaimCredentialRefresh { .. }
                | C::CompleteCredentialRefresh { .. }
                | C::AbandonCredentialRefresh { .. },
                S::Connected | S::Paused,
            ) => true,
            (
                C::SetConflictRule { .. }
                | C::Rename { .. }
                | C::ChangeEndpoint { .. }
                | C::SetWebhookSecret { .. },
                _,
            ) => true,
            _ => false,
        }
    }
}

impl Aggregate for Integration {
    const TYPE: &'static str = "integration";
    type Command = IntegrationCommand;
    type Event = IntegrationEvent;
    type Error = IntegrationError;

    fn decide(
        &self,
        command: IntegrationCommand,
    ) -> Result<Vec<IntegrationEvent>, IntegrationError> {
        use IntegrationCommand as C;
        use IntegrationEvent as E;
        if let C::Create {
            integration_id,
            workspace_id,
            provider,
            name,
            sync_config,
            base_url,
            spec,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(IntegrationError::AlreadyExists);
            }
            validate_name(&name)?;
            sync_config.validate_for(&provider, spec.is_some())?;
            return Ok(vec![E::IntegrationCreated {
                integration_id,
                workspace_id,
                provider,
                name,
                sync_config,
                base_url,
                spec,
                at,
            }]);
        }
        if self.id.is_none() {
            return Err(IntegrationError::NotFound);
        }
        if !self.allowed(&command) {
            return Err(self.reject(&command));
        }
        let event = match command {
            C::Create { .. } => return Err(IntegrationError::AlreadyExists),
            C::StoreCredentials {
                kind,
                secret,
                expires_at,
                refresh_token,
                at,
            } => E::CredentialsStored {
                kind,
                secret,
                expires_at,
                refresh_token,
                at,
            },
            C::RotateCredentials {
                kind,
                secret,
                expires_at,
                refresh_token,
                at,
            } => E::CredentialsRotated {
                kind,
                secret,
                expires_at,
                refresh_token,
                at,
            },
            C::RecordConnectionTest {
                ok,
                detail,
                account_id,
                at,
            } => E::ConnectionTested {
                ok,
                detail,
                account_id,
                at,
            },
            C::MarkFailed { reason, at } => E::IntegrationFailed { reason, at },
            C::Pause { at } => E::IntegrationPaused { at },
            C::Resume { at } => E::IntegrationResumed { at },
            C::ChangeSyncConfig { sync_config, at } => {
                sync_config.validate_for(&self.provider, self.spec.is_some())?;
                if sync_config == self.sync_config {
                    return Ok(vec![]);
                }
                E::SyncConfigChanged { sync_config, at }
            }
            C::ChangeFieldMappings {
                entity,
                mappings,
                filter,
                at,
            } => {
                if !self.sync_config.entities.contains(&entity) {
                    return Err(IntegrationError::Invalid {
                        field: "entity",
                        message: format!("the integration does not sync {}", entity.as_str()),
                    });
                }
                validate_mappings(&mappings)?;
                let filter = filter.filter(|f| !f.trim().is_empty());
                if self.mappings_for(entity) == Some((&mappings[..], filter.as_deref())) {
                    return Ok(vec![]);
                }
                E::FieldMappingsChanged {
                    entity,
                    mappings,
                    filter,
                    at,
                }
            }
            C::Disconnect { reason, at } => E::IntegrationDisconnected { reason, at },
            C::BeginSyncRun { run_id, at, .. } => {
                if let Some(active) = &self.active_run {
                    return Err(IntegrationError::RunActive {
                        run_id: active.clone(),
                    });
                }
                E::SyncRunBegun { run_id, at }
            }
            C::FinishSyncRun { run_id, at } => {
                if self.active_run.as_ref() != Some(&run_id) {
                    return Ok(vec![]);
                }
                E::SyncRunFinished { run_id, at }
            }
            C::ClaimCredentialRefresh {
                holder,
                generation,
                until,
                at,
            } => {
                self.same_generation(generation)?;
                if let Some(lease) = &self.refresh_lease {
                    if lease.until > at && lease.holder != holder {
                        return Err(IntegrationError::RefreshInProgress { until: lease.until });
                    }
                }
                E::CredentialRefreshClaimed {
                    holder,
                    generation,
                    until,
                    at,
                }
            }
            C::CompleteCredentialRefresh {
                holder: _,
                generation,
                kind,
                secret,
                expires_at,
                at,
            } => {
                self.same_generation(generation)?;
                E::CredentialsRotated {
                    kind,
                    secret,
                    expires_at,
                    refresh_token: None,
                    at,
                }
            }
            C::AbandonCredentialRefresh {
                holder,
                generation,
                reason,
                permanent,
                at,
            } => {
                self.same_generation(generation)?;
                if permanent {
                    E::IntegrationFailed { reason, at }
                } else {
                    E::CredentialRefreshReleased { holder, reason, at }
                }
            }
            C::SetConflictRule { field, side, at } => {
                validate_rule_field(&field)?;
                if self.conflict_rules.get(&field) == side.as_ref() {
                    return Ok(vec![]);
                }
                E::ConflictRuleChanged { field, side, at }
            }
            C::Rename { name, at } => {
                validate_name(&name)?;
                let name = name.trim().to_string();
                if name == self.name {
                    return Ok(vec![]);
                }
                E::IntegrationRenamed { name, at }
            }
            C::ChangeEndpoint {
                base_url,
                spec,
                keep_credentials,
                at,
            } => {
                if base_url == self.base_url && spec == self.spec {
                    return Ok(vec![]);
                }
                if let Some(active) = &self.active_run {
                    return Err(IntegrationError::RunActive {
                        run_id: active.clone(),
                    });
                }
                E::EndpointChanged {
                    base_url,
                    spec,
                    credentials_dropped: !keep_credentials && self.secret.is_some(),
                    at,
                }
            }
            C::SetWebhookSecret { secret, at } => {
                if crate::provider::hook_auth(&self.provider).is_none() {
                    return Err(IntegrationError::Invalid {
                        field: "provider",
                        message: format!(
                            "syncledger receives no per-integration webhooks from {}",
                            self.provider
                        ),
                    });
                }
                E::WebhookSecretSet { secret, at }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &IntegrationEvent) {
        use IntegrationEvent as E;
        self.version += 1;
        match event {
            E::IntegrationCreated {
                integration_id,
                workspace_id,
                provider,
                name,
                sync_config,
                base_url,
                spec,
                ..
            } => {
                self.spec = spec.clone();
                self.id = Some(integration_id.clone());
                self.workspace_id = workspace_id.clone();
                self.provider = provider.clone();
                self.name = name.clone();
                self.sync_config = sync_config.clone();
                self.base_url = base_url.clone();
                // A vendor without an API has nothing to connect to: its integration
                // takes imports from the start.
                self.status = if spec.is_none() && crate::provider::publishes_no_api(provider) {
                    Status::Connected
                } else {
                    Status::PendingAuth
                };
            }
            E::CredentialsStored {
                kind,
                secret,
                expires_at,
                at,
                ..
            } => {
                self.credential_kind = Some(*kind);
                self.secret = Some(secret.clone());
                self.credentials_expire_at = *expires_at;
                self.credentials_issued_at = Some(*at);
                self.credentials_set_at = Some(*at);
                self.credentials_rotated_at = None;
                self.credentials_generation += 1;
                self.refresh_lease = None;
                self.status = Status::Connected;
                self.last_error = None;
            }
            E::CredentialsRotated {
                kind,
                secret,
                expires_at,
                at,
                ..
            } => {
                // An inbound webhook's first secret is stored on an integration that is
                // connected from its creation: a first secret, not a rotation. (Not
                // `secret`: the status read model folds these events without it.)
                if self.credential_kind.is_none() {
                    self.credentials_set_at = Some(*at);
                    self.credentials_rotated_at = None;
                } else {
                    self.credentials_rotated_at = Some(*at);
                }
                self.credential_kind = Some(*kind);
                self.secret = Some(secret.clone());
                self.credentials_expire_at = *expires_at;
                self.credentials_issued_at = Some(*at);
                self.credentials_generation += 1;
                self.refresh_lease = None;
            }
            E::ConnectionTested {
                ok,
                detail,
                account_id,
                ..
            } => {
                if account_id.is_some() {
                    self.account_id.clone_from(account_id);
                }
                match (ok, self.status) {
                    (true, Status::Error) => {
                        self.status = Status::Connected;
                        self.last_error = None;
                    }
                    (false, Status::Connected) => {
                        self.status = Status::Error;
                        self.last_error = Some(detail.clone());
                    }
                    _ => {}
                }
            }
            E::IntegrationFailed { reason, .. } => {
                self.status = Status::Error;
                self.last_error = Some(reason.clone());
                self.refresh_lease = None;
            }
            E::IntegrationPaused { .. } => self.status = Status::Paused,
            E::IntegrationResumed { .. } => self.status = Status::Connected,
            E::SyncConfigChanged { sync_config, .. } => self.sync_config = sync_config.clone(),
            E::FieldMappingsChanged {
                entity,
                mappings,
                filter,
                ..
            } => {
                self.mappings.retain(|(e, _)| e != entity);
                self.mappings.push((*entity, mappings.clone()));
                match filter {
                    Some(f) => self.filters.insert(*entity, f.clone()),
                    None => self.filters.remove(entity),
                };
            }
            E::IntegrationDisconnected { .. } => {
                self.status = Status::Disconnected;
                self.forget_credentials();
                self.webhook_secret = None;
            }
            E::IntegrationRenamed { name, .. } => self.name = name.clone(),
            E::WebhookSecretSet { secret, .. } => self.webhook_secret = Some(secret.clone()),
            E::EndpointChanged {
                base_url,
                spec,
                credentials_dropped,
                ..
            } => {
                self.base_url = base_url.clone();
                self.spec = spec.clone();
                if *credentials_dropped {
                    self.forget_credentials();
                    // A refresh or run holding the old generation must not store or use
                    // what it got for the old host.
                    self.credentials_generation += 1;
                    self.status = Status::PendingAuth;
                    self.last_error = None;
                    self.account_id = None;
                }
            }
            E::CredentialRefreshClaimed { holder, until, .. } => {
                self.refresh_lease = Some(RefreshLease {
                    holder: holder.clone(),
                    until: *until,
                });
            }
            E::CredentialRefreshReleased { .. } => self.refresh_lease = None,
            E::SyncRunBegun { run_id, .. } => self.active_run = Some(run_id.clone()),
            E::SyncRunFinished { .. } => self.active_run = None,
            E::ConflictRuleChanged { field, side, .. } => match side {
                Some(side) => {
                    self.conflict_rules.insert(field.clone(), *side);
                }
                None => {
                    self.conflict_rules.remove(field);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
