use super::*;
use crate::aggregate::testing::{given, given_nothing};
use crate::merge::{merge, Side, Version};
use crate::sync_config::{ConflictStrategy, Direction, Frequency};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

fn t1() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_700_086_400, 0).unwrap_or_default()
}

fn config() -> SyncConfig {
    SyncConfig::default()
}

fn other_config() -> SyncConfig {
    SyncConfig {
        direction: Direction::Bidirectional,
        frequency: Frequency::Interval { minutes: 60 },
        entities: vec![Entity::Contacts],
        conflict_strategy: ConflictStrategy::LastWriteWins,
        on_crm_delete: crate::OnCrmDelete::Unlink,
        on_app_archive: crate::OnAppArchive::Nothing,
    }
}

fn with_interval(minutes: u32) -> SyncConfig {
    SyncConfig {
        frequency: Frequency::Interval { minutes },
        ..config()
    }
}

fn without_entities() -> SyncConfig {
    SyncConfig {
        entities: vec![],
        ..config()
    }
}

fn create_with(sync_config: SyncConfig) -> IntegrationCommand {
    IntegrationCommand::Create {
        integration_id: "int1".into(),
        workspace_id: "ws1".into(),
        provider: "hubspot".into(),
        name: "Main HubSpot".into(),
        sync_config,
        base_url: Some("https://api.hubapi.com".into()),
        spec: None,
        at: t0(),
    }
}

fn create() -> IntegrationCommand {
    create_with(config())
}

fn created() -> IntegrationEvent {
    IntegrationEvent::IntegrationCreated {
        integration_id: "int1".into(),
        workspace_id: "ws1".into(),
        provider: "hubspot".into(),
        name: "Main HubSpot".into(),
        sync_config: config(),
        base_url: Some("https://api.hubapi.com".into()),
        spec: None,
        at: t0(),
    }
}

fn secret(tag: &str) -> EncryptedSecret {
    EncryptedSecret {
        key_id: format!("key-{tag}"),
        nonce: format!("NONCE-{tag}-9f8e7d6c"),
        ciphertext: format!("CIPHERTEXT-{tag}-a1b2c3d4e5f6"),
    }
}

fn store() -> IntegrationCommand {
    IntegrationCommand::StoreCredentials {
        kind: CredentialKind::Oauth2,
        secret: secret("first"),
        expires_at: Some(t1()),
        refresh_token: None,
        at: t0(),
    }
}

fn stored() -> IntegrationEvent {
    IntegrationEvent::CredentialsStored {
        kind: CredentialKind::Oauth2,
        secret: secret("first"),
        expires_at: Some(t1()),
        refresh_token: None,
        at: t0(),
    }
}

fn rotate() -> IntegrationCommand {
    IntegrationCommand::RotateCredentials {
        kind: CredentialKind::ApiKey,
        secret: secret("second"),
        expires_at: None,
        refresh_token: None,
        at: t0(),
    }
}

fn rotated() -> IntegrationEvent {
    IntegrationEvent::CredentialsRotated {
        kind: CredentialKind::ApiKey,
        secret: secret("second"),
        expires_at: None,
        refresh_token: None,
        at: t0(),
    }
}

fn test_conn(ok: bool) -> IntegrationCommand {
    IntegrationCommand::RecordConnectionTest {
        ok,
        detail: "HTTP 401 from CRM".into(),
        account_id: None,
        at: t0(),
    }
}

fn tested(ok: bool) -> IntegrationEvent {
    IntegrationEvent::ConnectionTested {
        ok,
        detail: "HTTP 401 from CRM".into(),
        account_id: None,
        at: t0(),
    }
}

fn mark_failed() -> IntegrationCommand {
    IntegrationCommand::MarkFailed {
        reason: "token revoked".into(),
        at: t0(),
    }
}

fn failed() -> IntegrationEvent {
    IntegrationEvent::IntegrationFailed {
        reason: "token revoked".into(),
        at: t0(),
    }
}

fn pause() -> IntegrationCommand {
    IntegrationCommand::Pause { at: t0() }
}

fn paused() -> IntegrationEvent {
    IntegrationEvent::IntegrationPaused { at: t0() }
}

fn resume() -> IntegrationCommand {
    IntegrationCommand::Resume { at: t0() }
}

fn resumed() -> IntegrationEvent {
    IntegrationEvent::IntegrationResumed { at: t0() }
}

fn change_config(sync_config: SyncConfig) -> IntegrationCommand {
    IntegrationCommand::ChangeSyncConfig {
        sync_config,
        at: t0(),
    }
}

fn mapping(crm: &str, app: &str, direction: MappingDirection) -> FieldMapping {
    FieldMapping {
        crm_field: crm.into(),
        app_field: app.into(),
        direction,
        transform: None,
    }
}

fn valid_mappings() -> Vec<FieldMapping> {
    vec![
        mapping("email", "email", MappingDirection::Both),
        FieldMapping {
            transform: Some("lowercase".into()),
            ..mapping("firstname", "first_name", MappingDirection::Pull)
        },
    ]
}

fn change_mappings(mappings: Vec<FieldMapping>) -> IntegrationCommand {
    IntegrationCommand::ChangeFieldMappings {
        entity: Entity::Contacts,
        mappings,
        filter: None,
        at: t0(),
    }
}

fn disconnect() -> IntegrationCommand {
    IntegrationCommand::Disconnect {
        reason: "user request".into(),
        at: t0(),
    }
}

fn disconnected() -> IntegrationEvent {
    IntegrationEvent::IntegrationDisconnected {
        reason: "user request".into(),
        at: t0(),
    }
}

/// One command of every kind except `Create`, each valid on its own terms.
fn every_non_create_command() -> Vec<IntegrationCommand> {
    vec![
        store(),
        rotate(),
        test_conn(true),
        test_conn(false),
        mark_failed(),
        pause(),
        resume(),
        change_config(other_config()),
        change_mappings(valid_mappings()),
        disconnect(),
        set_rule("email", Some(Side::Crm)),
        rename("Renamed"),
        change_endpoint("https://eu.example.com", false),
    ]
}

/// A minimal history that leaves the integration in `status`.
fn history(status: Status) -> Vec<IntegrationEvent> {
    match status {
        Status::PendingAuth => vec![created()],
        Status::Connected => vec![created(), stored()],
        Status::Paused => vec![created(), stored(), paused()],
        Status::Error => vec![created(), stored(), failed()],
        Status::Disconnected => vec![created(), stored(), disconnected()],
    }
}

const ALL_STATUSES: [Status; 5] = [
    Status::PendingAuth,
    Status::Connected,
    Status::Paused,
    Status::Error,
    Status::Disconnected,
];

fn transition(
    from: Status,
    action: &'static str,
) -> Result<Vec<IntegrationEvent>, IntegrationError> {
    Err(IntegrationError::InvalidTransition { from, action })
}

fn invalid_field(result: Result<Vec<IntegrationEvent>, IntegrationError>) -> Option<&'static str> {
    match result {
        Err(IntegrationError::Invalid { field, .. }) => Some(field),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------

#[test]
fn create_emits_created() {
    assert_eq!(
        given_nothing::<Integration>().when(create()),
        Ok(vec![created()])
    );
}

#[test]
fn create_twice_is_rejected() {
    assert_eq!(
        given::<Integration>([created()]).when(create()),
        Err(IntegrationError::AlreadyExists)
    );
}

#[test]
fn create_is_rejected_in_every_status_even_disconnected() {
    for status in ALL_STATUSES {
        assert_eq!(
            given::<Integration>(history(status)).when(create()),
            Err(IntegrationError::AlreadyExists),
            "from {status:?}"
        );
    }
}

#[test]
fn create_with_interval_too_short_is_invalid() {
    assert_eq!(
        invalid_field(given_nothing::<Integration>().when(create_with(with_interval(14)))),
        Some("sync_config.interval_minutes")
    );
}

#[test]
fn create_with_interval_too_long_is_invalid() {
    assert_eq!(
        invalid_field(given_nothing::<Integration>().when(create_with(with_interval(1441)))),
        Some("sync_config.interval_minutes")
    );
}

#[test]
fn create_with_interval_at_the_bounds_is_accepted() {
    for minutes in [15, 1440] {
        let result = given_nothing::<Integration>().when(create_with(with_interval(minutes)));
        assert!(
            matches!(
                result.as_deref(),
                Ok([IntegrationEvent::IntegrationCreated { .. }])
            ),
            "{minutes} minutes: {result:?}"
        );
    }
}

#[test]
fn create_without_entities_is_invalid() {
    assert_eq!(
        invalid_field(given_nothing::<Integration>().when(create_with(without_entities()))),
        Some("sync_config.entities")
    );
}

#[test]
fn created_state_is_pending_auth_without_credentials() {
    let given = given::<Integration>([created()]);
    let state = given.state();
    assert_eq!(state.id.as_deref(), Some("int1"));
    assert_eq!(state.workspace_id, "ws1");
    assert_eq!(state.provider, "hubspot");
    assert_eq!(state.name, "Main HubSpot");
    assert_eq!(state.base_url.as_deref(), Some("https://api.hubapi.com"));
    assert_eq!(state.sync_config, config());
    assert_eq!(state.status, Status::PendingAuth);
    assert_eq!(state.secret, None);
    assert_eq!(state.credential_kind, None);
    assert_eq!(state.credentials_expire_at, None);
    assert_eq!(state.last_error, None);
    assert!(state.mappings.is_empty());
}

// ---------------------------------------------------------------------------
// Not found
// ---------------------------------------------------------------------------

#[test]
fn every_command_on_a_missing_integration_is_not_found() {
    for cmd in every_non_create_command() {
        let action = cmd.action();
        assert_eq!(
            given_nothing::<Integration>().when(cmd),
            Err(IntegrationError::NotFound),
            "{action}"
        );
    }
}

#[test]
fn invalid_payloads_on_a_missing_integration_are_still_not_found() {
    assert_eq!(
        given_nothing::<Integration>().when(change_config(without_entities())),
        Err(IntegrationError::NotFound)
    );
    assert_eq!(
        given_nothing::<Integration>().when(change_mappings(vec![mapping(
            "",
            "email",
            MappingDirection::Pull
        )])),
        Err(IntegrationError::NotFound)
    );
}

// ---------------------------------------------------------------------------
// Status lifecycle: accepted transitions
// ---------------------------------------------------------------------------

#[test]
fn store_credentials_from_pending_auth_connects() {
    assert_eq!(
        given::<Integration>([created()]).when(store()),
        Ok(vec![stored()])
    );
    let given = given::<Integration>([created(), stored()]);
    let state = given.state();
    assert_eq!(state.status, Status::Connected);
    assert_eq!(state.credential_kind, Some(CredentialKind::Oauth2));
    assert_eq!(state.secret, Some(secret("first")));
    assert_eq!(state.credentials_expire_at, Some(t1()));
    assert_eq!(state.last_error, None);
}

#[test]
fn pause_from_connected_pauses() {
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(pause()),
        Ok(vec![paused()])
    );
    assert_eq!(
        given::<Integration>(history(Status::Paused)).state().status,
        Status::Paused
    );
}

#[test]
fn resume_from_paused_reconnects() {
    assert_eq!(
        given::<Integration>(history(Status::Paused)).when(resume()),
        Ok(vec![resumed()])
    );
    let mut events = history(Status::Paused);
    events.push(resumed());
    assert_eq!(
        given::<Integration>(events).state().status,
        Status::Connected
    );
}

#[test]
fn full_lifecycle_pending_connected_paused_connected() {
    let events = vec![created(), stored(), paused(), resumed()];
    let given = given::<Integration>(events);
    assert_eq!(given.state().status, Status::Connected);
    assert_eq!(given.state().secret, Some(secret("first")));
}

#[test]
fn mark_failed_from_connected_and_paused_errors() {
    for status in [Status::Connected, Status::Paused] {
        assert_eq!(
            given::<Integration>(history(status)).when(mark_failed()),
            Ok(vec![failed()]),
            "from {status:?}"
        );
        let mut events = history(status);
        events.push(failed());
        let given = given::<Integration>(events);
        assert_eq!(given.state().status, Status::Error, "from {status:?}");
        assert_eq!(given.state().last_error.as_deref(), Some("token revoked"));
    }
}

#[test]
fn failed_connection_test_while_connected_errors() {
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(test_conn(false)),
        Ok(vec![tested(false)])
    );
    let given = given::<Integration>([created(), stored(), tested(false)]);
    assert_eq!(given.state().status, Status::Error);
    assert_eq!(
        given.state().last_error.as_deref(),
        Some("HTTP 401 from CRM")
    );
}

#[test]
fn successful_connection_test_while_connected_changes_nothing() {
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(test_conn(true)),
        Ok(vec![tested(true)])
    );
    let given = given::<Integration>([created(), stored(), tested(true)]);
    assert_eq!(given.state().status, Status::Connected);
    assert_eq!(given.state().last_error, None);
}

#[test]
fn successful_connection_test_while_in_error_reconnects() {
    assert_eq!(
        given::<Integration>(history(Status::Error)).when(test_conn(true)),
        Ok(vec![tested(true)])
    );
    let given = given::<Integration>([created(), stored(), failed(), tested(true)]);
    assert_eq!(given.state().status, Status::Connected);
    assert_eq!(given.state().last_error, None);
}

#[test]
fn connection_test_while_paused_keeps_it_paused() {
    for ok in [true, false] {
        assert_eq!(
            given::<Integration>(history(Status::Paused)).when(test_conn(ok)),
            Ok(vec![tested(ok)])
        );
        let given = given::<Integration>([created(), stored(), paused(), tested(ok)]);
        assert_eq!(given.state().status, Status::Paused, "ok = {ok}");
        assert_eq!(given.state().last_error, None, "ok = {ok}");
    }
}

#[test]
fn failed_connection_test_while_in_error_keeps_the_first_error() {
    let given = given::<Integration>([created(), stored(), failed(), tested(false)]);
    assert_eq!(given.state().status, Status::Error);
    assert_eq!(given.state().last_error.as_deref(), Some("token revoked"));
}

#[test]
fn store_credentials_from_error_reconnects_and_clears_the_error() {
    assert_eq!(
        given::<Integration>(history(Status::Error)).when(store()),
        Ok(vec![stored()])
    );
    let given = given::<Integration>([created(), stored(), failed(), stored()]);
    assert_eq!(given.state().status, Status::Connected);
    assert_eq!(given.state().last_error, None);
}

#[test]
fn rotate_credentials_keeps_status_and_replaces_the_secret() {
    for status in [Status::Connected, Status::Paused, Status::Error] {
        assert_eq!(
            given::<Integration>(history(status)).when(rotate()),
            Ok(vec![rotated()]),
            "from {status:?}"
        );
        let mut events = history(status);
        events.push(rotated());
        let given = given::<Integration>(events);
        let state = given.state();
        assert_eq!(state.status, status);
        assert_eq!(state.credential_kind, Some(CredentialKind::ApiKey));
        assert_eq!(state.secret, Some(secret("second")));
        assert_eq!(
            state.credentials_expire_at, None,
            "expiry replaced, not kept"
        );
    }
}

#[test]
fn pause_from_error_is_rejected() {
    // An integration in error leaves it through new credentials or a passing test, never
    // through pause/resume (which would show "connected" with a stale error).
    assert_eq!(
        given::<Integration>(history(Status::Error)).when(pause()),
        transition(Status::Error, "pause")
    );
}

#[test]
fn disconnect_is_accepted_from_every_live_status() {
    for status in [
        Status::PendingAuth,
        Status::Connected,
        Status::Paused,
        Status::Error,
    ] {
        assert_eq!(
            given::<Integration>(history(status)).when(disconnect()),
            Ok(vec![disconnected()]),
            "from {status:?}"
        );
        let mut events = history(status);
        events.push(disconnected());
        let given = given::<Integration>(events);
        assert_eq!(
            given.state().status,
            Status::Disconnected,
            "from {status:?}"
        );
    }
}

#[test]
fn disconnect_clears_the_secret_and_its_expiry() {
    let given = given::<Integration>([created(), stored(), disconnected()]);
    let state = given.state();
    assert_eq!(state.status, Status::Disconnected);
    assert_eq!(state.secret, None);
    assert_eq!(state.credentials_expire_at, None);
}

// ---------------------------------------------------------------------------
// Status lifecycle: rejected transitions
// ---------------------------------------------------------------------------

#[test]
fn every_command_after_disconnect_is_rejected() {
    let commands = [
        (resume(), "resume"),
        (pause(), "pause"),
        (store(), "store credentials"),
        (rotate(), "rotate credentials"),
        (test_conn(true), "test the connection"),
        (test_conn(false), "test the connection"),
        (mark_failed(), "mark as failed"),
        (change_config(other_config()), "change the sync config"),
        (change_config(config()), "change the sync config"),
        (change_mappings(valid_mappings()), "change field mappings"),
        (disconnect(), "disconnect"),
    ];
    for (cmd, action) in commands {
        assert_eq!(
            given::<Integration>(history(Status::Disconnected)).when(cmd),
            transition(Status::Disconnected, action)
        );
    }
}

#[test]
fn invalid_payloads_after_disconnect_report_the_transition_first() {
    assert_eq!(
        given::<Integration>(history(Status::Disconnected)).when(change_config(with_interval(14))),
        transition(Status::Disconnected, "change the sync config")
    );
    assert_eq!(
        given::<Integration>(history(Status::Disconnected)).when(change_mappings(vec![mapping(
            "",
            "x",
            MappingDirection::Pull
        )])),
        transition(Status::Disconnected, "change field mappings")
    );
}

#[test]
fn resume_when_connected_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(resume()),
        transition(Status::Connected, "resume")
    );
}

#[test]
fn resume_when_pending_auth_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::PendingAuth)).when(resume()),
        transition(Status::PendingAuth, "resume")
    );
}

#[test]
fn resume_when_in_error_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::Error)).when(resume()),
        transition(Status::Error, "resume")
    );
}

#[test]
fn pause_when_pending_auth_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::PendingAuth)).when(pause()),
        transition(Status::PendingAuth, "pause")
    );
}

#[test]
fn pause_when_already_paused_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::Paused)).when(pause()),
        transition(Status::Paused, "pause")
    );
}

#[test]
fn rotate_credentials_when_pending_auth_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::PendingAuth)).when(rotate()),
        transition(Status::PendingAuth, "rotate credentials")
    );
}

#[test]
fn store_credentials_when_connected_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(store()),
        transition(Status::Connected, "store credentials")
    );
}

#[test]
fn store_credentials_when_paused_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::Paused)).when(store()),
        transition(Status::Paused, "store credentials")
    );
}

#[test]
fn mark_failed_when_pending_auth_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::PendingAuth)).when(mark_failed()),
        transition(Status::PendingAuth, "mark as failed")
    );
}

#[test]
fn mark_failed_when_already_in_error_is_rejected() {
    assert_eq!(
        given::<Integration>(history(Status::Error)).when(mark_failed()),
        transition(Status::Error, "mark as failed")
    );
}

#[test]
fn connection_test_when_pending_auth_is_rejected() {
    for ok in [true, false] {
        assert_eq!(
            given::<Integration>(history(Status::PendingAuth)).when(test_conn(ok)),
            transition(Status::PendingAuth, "test the connection")
        );
    }
}

#[test]
fn invalid_transition_error_message_names_status_and_action() {
    let err = IntegrationError::InvalidTransition {
        from: Status::PendingAuth,
        action: "pause",
    };
    assert_eq!(
        err.to_string(),
        "cannot pause an integration that is pending_auth"
    );
}

/// Pausing an integration in error and resuming it lands in `connected`
/// without new credentials or a successful connection test, and the stale
/// `last_error` survives. Every other way into `connected` (StoreCredentials,
/// a passing ConnectionTested) clears `last_error`, so this state is
/// inconsistent: "connected" while still reporting an error.
#[test]
fn an_integration_in_error_cannot_be_paused_back_to_connected() {
    let given = given::<Integration>([created(), stored(), failed()]);
    assert!(given.when(pause()).is_err());
}

// ---------------------------------------------------------------------------
// ChangeSyncConfig
// ---------------------------------------------------------------------------

#[test]
fn changing_to_the_same_config_emits_nothing() {
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(change_config(config())),
        Ok(vec![])
    );
}

#[test]
fn changing_to_a_different_config_emits_changed() {
    for status in [
        Status::PendingAuth,
        Status::Connected,
        Status::Paused,
        Status::Error,
    ] {
        assert_eq!(
            given::<Integration>(history(status)).when(change_config(other_config())),
            Ok(vec![IntegrationEvent::SyncConfigChanged {
                sync_config: other_config(),
                at: t0(),
            }]),
            "from {status:?}"
        );
    }
}

#[test]
fn sync_config_changed_updates_the_state() {
    let mut events = history(Status::Connected);
    events.push(IntegrationEvent::SyncConfigChanged {
        sync_config: other_config(),
        at: t0(),
    });
    let given = given::<Integration>(events);
    assert_eq!(given.state().sync_config, other_config());
    assert_eq!(given.state().status, Status::Connected);
    // And changing back to it is now a no-op.
    assert_eq!(given.when(change_config(other_config())), Ok(vec![]));
}

#[test]
fn changing_to_an_invalid_config_is_rejected() {
    let cases = [
        (with_interval(14), "sync_config.interval_minutes"),
        (with_interval(1441), "sync_config.interval_minutes"),
        (without_entities(), "sync_config.entities"),
        (
            SyncConfig {
                entities: vec![Entity::Companies, Entity::Companies],
                ..config()
            },
            "sync_config.entities",
        ),
    ];
    for (sync_config, field) in cases {
        assert_eq!(
            invalid_field(
                given::<Integration>(history(Status::Connected)).when(change_config(sync_config))
            ),
            Some(field)
        );
    }
}

// ---------------------------------------------------------------------------
// ChangeFieldMappings
// ---------------------------------------------------------------------------

#[test]
fn valid_mappings_emit_changed() {
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(change_mappings(valid_mappings())),
        Ok(vec![IntegrationEvent::FieldMappingsChanged {
            entity: Entity::Contacts,
            mappings: valid_mappings(),
            filter: None,
            at: t0(),
        }])
    );
}

#[test]
fn mappings_can_be_changed_before_credentials_exist() {
    assert!(given::<Integration>(history(Status::PendingAuth))
        .when(change_mappings(valid_mappings()))
        .is_ok());
}

#[test]
fn empty_crm_field_is_invalid() {
    for crm in ["", "   "] {
        assert_eq!(
            invalid_field(
                given::<Integration>(history(Status::Connected)).when(change_mappings(vec![
                    mapping(crm, "email", MappingDirection::Pull)
                ]))
            ),
            Some("mappings"),
            "crm_field {crm:?}"
        );
    }
}

#[test]
fn empty_app_field_is_invalid() {
    assert_eq!(
        invalid_field(
            given::<Integration>(history(Status::Connected)).when(change_mappings(vec![mapping(
                "email",
                "",
                MappingDirection::Push
            )]))
        ),
        Some("mappings")
    );
}

#[test]
fn two_pull_mappings_into_one_app_field_are_invalid() {
    let mappings = vec![
        mapping("email", "email", MappingDirection::Pull),
        mapping("work_email", "email", MappingDirection::Pull),
    ];
    assert_eq!(
        invalid_field(
            given::<Integration>(history(Status::Connected)).when(change_mappings(mappings))
        ),
        Some("mappings")
    );
}

#[test]
fn pull_and_both_into_one_app_field_are_invalid() {
    let mappings = vec![
        mapping("email", "email", MappingDirection::Both),
        mapping("work_email", "email", MappingDirection::Pull),
    ];
    assert_eq!(
        invalid_field(
            given::<Integration>(history(Status::Connected)).when(change_mappings(mappings))
        ),
        Some("mappings")
    );
}

#[test]
fn two_push_mappings_from_different_crm_fields_into_one_app_field_are_fine() {
    let mappings = vec![
        mapping("email", "email", MappingDirection::Push),
        mapping("work_email", "email", MappingDirection::Push),
    ];
    assert_eq!(
        given::<Integration>(history(Status::Connected)).when(change_mappings(mappings.clone())),
        Ok(vec![IntegrationEvent::FieldMappingsChanged {
            entity: Entity::Contacts,
            mappings,
            filter: None,
            at: t0(),
        }])
    );
}

#[test]
fn one_pull_plus_pushes_into_one_app_field_are_fine() {
    let mappings = vec![
        mapping("email", "email", MappingDirection::Pull),
        mapping("work_email", "email", MappingDirection::Push),
        mapping("alt_email", "email", MappingDirection::None),
    ];
    assert!(given::<Integration>(history(Status::Connected))
        .when(change_mappings(mappings))
        .is_ok());
}

#[test]
fn field_mappings_changed_replaces_only_that_entity() {
    let companies = vec![mapping("domain", "domain", MappingDirection::Pull)];
    let mut events = history(Status::Connected);
    events.push(IntegrationEvent::FieldMappingsChanged {
        entity: Entity::Companies,
        mappings: companies.clone(),
        filter: None,
        at: t0(),
    });
    events.push(IntegrationEvent::FieldMappingsChanged {
        entity: Entity::Contacts,
        mappings: vec![mapping("phone", "phone", MappingDirection::Both)],
        filter: None,
        at: t0(),
    });
    events.push(IntegrationEvent::FieldMappingsChanged {
        entity: Entity::Contacts,
        mappings: valid_mappings(),
        filter: None,
        at: t0(),
    });
    let given = given::<Integration>(events);
    let mut mappings = given.state().mappings.clone();
    mappings.sort_by_key(|(entity, _)| *entity);
    assert_eq!(
        mappings,
        vec![
            (Entity::Contacts, valid_mappings()),
            (Entity::Companies, companies)
        ]
    );
}

fn change_with_filter(entity: Entity, filter: Option<&str>) -> IntegrationCommand {
    IntegrationCommand::ChangeFieldMappings {
        entity,
        mappings: valid_mappings(),
        filter: filter.map(str::to_owned),
        at: t1(),
    }
}

fn applied(
    mut events: Vec<IntegrationEvent>,
    command: IntegrationCommand,
) -> Vec<IntegrationEvent> {
    let new = given::<Integration>(events.clone())
        .when(command)
        .unwrap_or_default();
    events.extend(new);
    events
}

#[test]
fn a_filter_is_stored_with_the_mappings_of_its_entity() {
    let filter = "record.lifecyclestage == 'customer'";
    assert_eq!(
        given::<Integration>(history(Status::Connected))
            .when(change_with_filter(Entity::Contacts, Some(filter))),
        Ok(vec![IntegrationEvent::FieldMappingsChanged {
            entity: Entity::Contacts,
            mappings: valid_mappings(),
            filter: Some(filter.into()),
            at: t1(),
        }])
    );
    let events = applied(
        history(Status::Connected),
        change_with_filter(Entity::Contacts, Some(filter)),
    );
    let events = applied(events, change_with_filter(Entity::Companies, None));
    let state = given::<Integration>(events.clone()).state().clone();
    assert_eq!(
        state.mappings_for(Entity::Contacts),
        Some((&valid_mappings()[..], Some(filter)))
    );
    assert_eq!(
        state.mappings_for(Entity::Companies),
        Some((&valid_mappings()[..], None))
    );
    // Changing the mappings without a filter drops the entity's filter.
    let events = applied(events, change_with_filter(Entity::Contacts, None));
    let state = given::<Integration>(events).state().clone();
    assert_eq!(
        state.mappings_for(Entity::Contacts),
        Some((&valid_mappings()[..], None))
    );
    assert!(state.filters.is_empty());
}

#[test]
fn mappings_for_an_entity_never_set_are_none() {
    let fresh = given::<Integration>(history(Status::Connected));
    assert_eq!(fresh.state().mappings_for(Entity::Contacts), None);
    let events = applied(
        history(Status::Connected),
        change_with_filter(Entity::Companies, Some("true")),
    );
    assert_eq!(
        given::<Integration>(events)
            .state()
            .mappings_for(Entity::Contacts),
        None
    );
}

#[test]
fn a_blank_filter_means_none() {
    assert_eq!(
        given::<Integration>(history(Status::Connected))
            .when(change_with_filter(Entity::Contacts, Some("  "))),
        Ok(vec![IntegrationEvent::FieldMappingsChanged {
            entity: Entity::Contacts,
            mappings: valid_mappings(),
            filter: None,
            at: t1(),
        }])
    );
}

#[test]
fn setting_the_same_mappings_and_filter_again_changes_nothing() {
    let events = applied(
        history(Status::Connected),
        change_with_filter(Entity::Contacts, Some("true")),
    );
    assert_eq!(
        given::<Integration>(events.clone())
            .when(change_with_filter(Entity::Contacts, Some("true"))),
        Ok(vec![])
    );
    assert_eq!(
        given::<Integration>(events)
            .when(change_with_filter(Entity::Contacts, Some("false")))
            .map(|e| e.len()),
        Ok(1),
        "another filter is a change"
    );
}

#[test]
fn mappings_are_only_for_entities_the_integration_syncs() {
    let mut events = history(Status::Connected);
    events.push(IntegrationEvent::SyncConfigChanged {
        sync_config: other_config(),
        at: t0(),
    });
    assert_eq!(
        invalid_field(
            given::<Integration>(events).when(change_with_filter(Entity::Companies, None))
        ),
        Some("entity")
    );
}

#[test]
fn mapping_events_and_state_stored_before_filters_still_load() {
    let old_event = serde_json::json!({
        "type": "field_mappings_changed",
        "entity": "contacts",
        "mappings": [{"crm_field": "email", "app_field": "email", "direction": "both"}],
        "at": "2023-11-14T22:13:20Z"
    });
    let event: IntegrationEvent = serde_json::from_value(old_event).expect("old event parses");
    assert!(matches!(
        &event,
        IntegrationEvent::FieldMappingsChanged { filter: None, .. }
    ));
    let written = serde_json::to_value(&event).expect("serializes");
    assert!(written.get("filter").is_none(), "no filter key when none");
    let mut state = given::<Integration>(history(Status::Connected))
        .state()
        .clone();
    state.apply(&event);
    let mut json = serde_json::to_value(&state).expect("serializes");
    assert!(json.get("filters").is_none());
    json.as_object_mut().map(|o| o.remove("filters"));
    let back: Integration = serde_json::from_value(json).expect("old state parses");
    assert_eq!(back, state);
}

// ---------------------------------------------------------------------------
// Secrets never leak
// ---------------------------------------------------------------------------

#[test]
fn credential_summaries_never_contain_the_ciphertext_or_nonce() {
    for kind in [
        CredentialKind::Oauth2,
        CredentialKind::ApiKey,
        CredentialKind::Basic,
    ] {
        let s = secret("leakcheck");
        let events = [
            IntegrationEvent::CredentialsStored {
                kind,
                secret: s.clone(),
                expires_at: Some(t1()),
                refresh_token: None,
                at: t0(),
            },
            IntegrationEvent::CredentialsRotated {
                kind,
                secret: s.clone(),
                expires_at: None,
                refresh_token: None,
                at: t0(),
            },
        ];
        for event in events {
            let summary = event.summary();
            assert!(!summary.contains(&s.ciphertext), "{summary}");
            assert!(!summary.contains(&s.nonce), "{summary}");
            assert!(!summary.contains("CIPHERTEXT"), "{summary}");
            assert!(!summary.contains("NONCE"), "{summary}");
            assert!(summary.contains("key-leakcheck"), "{summary}");
            assert!(summary.contains("redacted"), "{summary}");
        }
    }
}

#[test]
fn debug_output_never_contains_the_ciphertext_or_nonce() {
    let s = secret("debugcheck");
    let given = given::<Integration>([
        created(),
        IntegrationEvent::CredentialsStored {
            kind: CredentialKind::Basic,
            secret: s.clone(),
            expires_at: None,
            refresh_token: None,
            at: t0(),
        },
    ]);
    for text in [
        format!("{:?}", given.state()),
        format!("{:?}", stored()),
        format!("{:?}", store()),
    ] {
        assert!(!text.contains("CIPHERTEXT"), "{text}");
        assert!(!text.contains("NONCE"), "{text}");
    }
}

#[test]
fn event_types_match_their_variants() {
    let cases = [
        (created(), "IntegrationCreated"),
        (stored(), "CredentialsStored"),
        (rotated(), "CredentialsRotated"),
        (tested(true), "ConnectionTested"),
        (failed(), "IntegrationFailed"),
        (paused(), "IntegrationPaused"),
        (resumed(), "IntegrationResumed"),
        (disconnected(), "IntegrationDisconnected"),
    ];
    for (event, name) in cases {
        assert_eq!(event.event_type(), name);
    }
}

// ---------------------------------------------------------------------------
// Property: random command sequences
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    Create,
    CreateInvalid,
    Store,
    Rotate,
    TestOk,
    TestFail,
    MarkFailed,
    Pause,
    Resume,
    ChangeConfig,
    ChangeConfigInvalid,
    ChangeMappings,
    ChangeMappingsInvalid,
    Disconnect,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Create),
        Just(Kind::CreateInvalid),
        Just(Kind::Store),
        Just(Kind::Rotate),
        Just(Kind::TestOk),
        Just(Kind::TestFail),
        Just(Kind::MarkFailed),
        Just(Kind::Pause),
        Just(Kind::Resume),
        Just(Kind::ChangeConfig),
        Just(Kind::ChangeConfigInvalid),
        Just(Kind::ChangeMappings),
        Just(Kind::ChangeMappingsInvalid),
        Just(Kind::Disconnect),
    ]
}

fn command(kind: Kind) -> IntegrationCommand {
    match kind {
        Kind::Create => create(),
        Kind::CreateInvalid => create_with(with_interval(5)),
        Kind::Store => store(),
        Kind::Rotate => rotate(),
        Kind::TestOk => test_conn(true),
        Kind::TestFail => test_conn(false),
        Kind::MarkFailed => mark_failed(),
        Kind::Pause => pause(),
        Kind::Resume => resume(),
        Kind::ChangeConfig => change_config(other_config()),
        Kind::ChangeConfigInvalid => change_config(without_entities()),
        Kind::ChangeMappings => change_mappings(valid_mappings()),
        Kind::ChangeMappingsInvalid => {
            change_mappings(vec![mapping(" ", "x", MappingDirection::Both)])
        }
        Kind::Disconnect => disconnect(),
    }
}

/// The status the lifecycle should move to, or `None` if the command must be
/// rejected. `None` as the current status means "not created yet".
fn model(status: Option<Status>, kind: Kind) -> Option<Option<Status>> {
    use Status as S;
    let Some(status) = status else {
        return matches!(kind, Kind::Create).then_some(Some(S::PendingAuth));
    };
    let next = match (kind, status) {
        (Kind::Create | Kind::CreateInvalid, _) | (_, S::Disconnected) => return None,
        (Kind::Disconnect, _) => S::Disconnected,
        (Kind::Store, S::PendingAuth | S::Error) => S::Connected,
        (Kind::Rotate, S::Connected | S::Paused | S::Error) => status,
        (Kind::TestOk, S::Error) => S::Connected,
        (Kind::TestOk, S::Connected | S::Paused) => status,
        (Kind::TestFail, S::Connected) => S::Error,
        (Kind::TestFail, S::Paused | S::Error) => status,
        (Kind::MarkFailed, S::Connected | S::Paused) => S::Error,
        (Kind::Pause, S::Connected) => S::Paused,
        (Kind::Resume, S::Paused) => S::Connected,
        (Kind::ChangeConfig | Kind::ChangeMappings, _) => status,
        _ => return None,
    };
    Some(Some(next))
}

proptest! {
    #[test]
    fn random_command_sequences_respect_the_lifecycle(
        kinds in proptest::collection::vec(kind(), 0..40)
    ) {
        let mut state = Integration::default();
        let mut expected: Option<Status> = None;
        let mut ever_disconnected = false;
        for k in kinds {
            let result = state.decide(command(k));
            let accepted = model(expected, k);
            match &result {
                Ok(events) => {
                    prop_assert!(
                        accepted.is_some(),
                        "{:?} accepted from {:?}: {:?}", k, expected, events
                    );
                    prop_assert!(events.len() <= 1);
                    for e in events {
                        state.apply(e);
                    }
                }
                Err(err) => {
                    prop_assert!(
                        accepted.is_none(),
                        "{:?} rejected from {:?}: {}", k, expected, err
                    );
                    match (expected, err) {
                        (None, IntegrationError::NotFound) => {}
                        (Some(_), IntegrationError::AlreadyExists) => {}
                        (Some(from), IntegrationError::InvalidTransition { from: got, .. }) => {
                            prop_assert_eq!(from, *got);
                        }
                        (Some(s), IntegrationError::Invalid { .. }) => {
                            prop_assert!(s != Status::Disconnected);
                        }
                        (None, IntegrationError::Invalid { .. }) => {
                            prop_assert!(matches!(k, Kind::CreateInvalid));
                        }
                        (s, e) => prop_assert!(false, "unexpected {:?} from {:?}", e, s),
                    }
                }
            }
            if let Some(next) = accepted {
                expected = next;
            }

            // The aggregate agrees with the model.
            prop_assert_eq!(state.id.is_some(), expected.is_some());
            if let Some(status) = expected {
                prop_assert_eq!(state.status, status);
            }

            // Once disconnected, always disconnected.
            if ever_disconnected {
                prop_assert_eq!(state.status, Status::Disconnected);
            }
            ever_disconnected |= state.status == Status::Disconnected;

            // A secret is held exactly while the integration is live past auth.
            let holds_secret = matches!(
                state.status,
                Status::Connected | Status::Paused | Status::Error
            ) && state.id.is_some();
            prop_assert_eq!(state.secret.is_some(), holds_secret);
        }

        // From a disconnected state, every command is rejected.
        if state.status == Status::Disconnected && state.id.is_some() {
            for cmd in every_non_create_command() {
                let rejected = matches!(
                    state.decide(cmd),
                    Err(IntegrationError::InvalidTransition { from: Status::Disconnected, .. })
                );
                prop_assert!(rejected);
            }
            prop_assert_eq!(state.decide(create()), Err(IntegrationError::AlreadyExists));
        }
    }
}

// ---- credential refresh: one winner per generation ----

fn claim(holder: &str, generation: u64, until_secs: i64) -> IntegrationCommand {
    IntegrationCommand::ClaimCredentialRefresh {
        holder: holder.into(),
        generation,
        until: t0() + chrono::Duration::seconds(until_secs),
        at: t0(),
    }
}

fn claimed(holder: &str, generation: u64, until_secs: i64) -> IntegrationEvent {
    IntegrationEvent::CredentialRefreshClaimed {
        holder: holder.into(),
        generation,
        until: t0() + chrono::Duration::seconds(until_secs),
        at: t0(),
    }
}

fn complete(holder: &str, generation: u64) -> IntegrationCommand {
    IntegrationCommand::CompleteCredentialRefresh {
        holder: holder.into(),
        generation,
        kind: CredentialKind::Oauth2,
        secret: secret("refreshed"),
        expires_at: Some(t1()),
        at: t1(),
    }
}

#[test]
fn stored_credentials_start_at_generation_one_and_rotation_bumps_it() {
    let state = given::<Integration>([created(), stored()]);
    assert_eq!(state.state().credentials_generation, 1);
    let state = given::<Integration>([created(), stored(), rotated()]);
    assert_eq!(state.state().credentials_generation, 2);
}

#[test]
fn the_first_claim_wins_and_a_second_holder_waits() {
    assert_eq!(
        given::<Integration>([created(), stored()]).when(claim("a", 1, 30)),
        Ok(vec![claimed("a", 1, 30)])
    );
    let until = t0() + chrono::Duration::seconds(30);
    assert_eq!(
        given::<Integration>([created(), stored(), claimed("a", 1, 30)]).when(claim("b", 1, 30)),
        Err(IntegrationError::RefreshInProgress { until })
    );
}

#[test]
fn an_expired_claim_can_be_taken_over() {
    // The lease ended before `at` (t0): a crashed holder does not block refreshes forever.
    assert_eq!(
        given::<Integration>([created(), stored(), claimed("a", 1, -1)]).when(claim("b", 1, 30)),
        Ok(vec![claimed("b", 1, 30)])
    );
}

#[test]
fn a_claim_on_replaced_credentials_is_refused() {
    assert_eq!(
        given::<Integration>([created(), stored(), rotated()]).when(claim("a", 1, 30)),
        Err(IntegrationError::CredentialsChanged)
    );
}

#[test]
fn completing_rotates_the_credentials_and_clears_the_lease() {
    let history = [created(), stored(), claimed("a", 1, 30)];
    let events = given::<Integration>(history.clone())
        .when(complete("a", 1))
        .expect("completes");
    assert!(matches!(
        events.as_slice(),
        [IntegrationEvent::CredentialsRotated { .. }]
    ));
    let mut after: Vec<IntegrationEvent> = history.to_vec();
    after.extend(events);
    let state = given::<Integration>(after);
    assert_eq!(state.state().credentials_generation, 2);
    assert_eq!(state.state().refresh_lease, None);
    // A late second completion for generation 1 must not overwrite the newer tokens.
    assert_eq!(
        state.when(complete("b", 1)),
        Err(IntegrationError::CredentialsChanged)
    );
}

#[test]
fn a_refused_grant_puts_the_integration_in_error_and_a_transient_failure_releases() {
    let history = vec![created(), stored(), claimed("a", 1, 30)];
    let permanent = IntegrationCommand::AbandonCredentialRefresh {
        holder: "a".into(),
        generation: 1,
        reason: "the provider refused the refresh token (invalid_grant); reconnect".into(),
        permanent: true,
        at: t1(),
    };
    let events = given::<Integration>(history.clone())
        .when(permanent)
        .expect("fails");
    let mut failed_history = history.clone();
    failed_history.extend(events);
    let state = given::<Integration>(failed_history);
    assert_eq!(state.state().status, Status::Error);
    assert!(state
        .state()
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("invalid_grant")));

    let transient = IntegrationCommand::AbandonCredentialRefresh {
        holder: "a".into(),
        generation: 1,
        reason: "token endpoint unreachable".into(),
        permanent: false,
        at: t1(),
    };
    let events = given::<Integration>(history.clone())
        .when(transient)
        .expect("releases");
    let mut released = history;
    released.extend(events);
    let state = given::<Integration>(released);
    assert_eq!(state.state().status, Status::Connected);
    assert_eq!(state.state().refresh_lease, None);
}

#[test]
fn refresh_commands_need_working_credentials() {
    for status in [Status::PendingAuth, Status::Error, Status::Disconnected] {
        let result = given::<Integration>(history(status)).when(claim("a", 1, 30));
        assert!(
            matches!(result, Err(IntegrationError::InvalidTransition { .. })),
            "{status:?}: {result:?}"
        );
    }
}

// ---- one active sync run per integration ----

fn begin(run_id: &str) -> IntegrationCommand {
    IntegrationCommand::BeginSyncRun {
        run_id: run_id.into(),
        rollback: false,
        at: t1(),
    }
}

fn begun(run_id: &str) -> IntegrationEvent {
    IntegrationEvent::SyncRunBegun {
        run_id: run_id.into(),
        at: t1(),
    }
}

fn finish(run_id: &str) -> IntegrationCommand {
    IntegrationCommand::FinishSyncRun {
        run_id: run_id.into(),
        at: t1(),
    }
}

#[test]
fn one_sync_run_at_a_time() {
    assert_eq!(
        given::<Integration>([created(), stored()]).when(begin("r1")),
        Ok(vec![begun("r1")])
    );
    assert_eq!(
        given::<Integration>([created(), stored(), begun("r1")]).when(begin("r2")),
        Err(IntegrationError::RunActive {
            run_id: "r1".into()
        })
    );
    let finished = IntegrationEvent::SyncRunFinished {
        run_id: "r1".into(),
        at: t1(),
    };
    assert_eq!(
        given::<Integration>([created(), stored(), begun("r1")]).when(finish("r1")),
        Ok(vec![finished.clone()])
    );
    assert_eq!(
        given::<Integration>([created(), stored(), begun("r1"), finished]).when(begin("r2")),
        Ok(vec![begun("r2")])
    );
}

#[test]
fn finishing_another_run_or_none_changes_nothing() {
    assert_eq!(
        given::<Integration>([created(), stored(), begun("r1")]).when(finish("r9")),
        Ok(vec![])
    );
    assert_eq!(
        given::<Integration>([created(), stored()]).when(finish("r1")),
        Ok(vec![])
    );
}

#[test]
fn only_a_connected_integration_runs_and_a_run_can_end_after_disconnection() {
    for status in [
        Status::PendingAuth,
        Status::Paused,
        Status::Error,
        Status::Disconnected,
    ] {
        let result = given::<Integration>(history(status)).when(begin("r1"));
        assert!(
            matches!(result, Err(IntegrationError::InvalidTransition { from, .. }) if from == status),
            "{status:?}: {result:?}"
        );
        // A rollback runs whatever the status, still one run at a time.
        let rollback = IntegrationCommand::BeginSyncRun {
            run_id: "rb".into(),
            rollback: true,
            at: t1(),
        };
        let result = given::<Integration>(history(status)).when(rollback.clone());
        assert!(
            matches!(
                result.as_deref(),
                Ok([IntegrationEvent::SyncRunBegun { .. }])
            ),
            "{status:?}: {result:?}"
        );
        let mut busy = history(status);
        busy.insert(1, begun("r1"));
        let result = given::<Integration>(busy).when(rollback);
        assert!(
            matches!(result, Err(IntegrationError::RunActive { .. })),
            "{status:?}: {result:?}"
        );
    }
    let events =
        given::<Integration>([created(), stored(), begun("r1"), disconnected()]).when(finish("r1"));
    assert!(matches!(
        events.as_deref(),
        Ok([IntegrationEvent::SyncRunFinished { .. }])
    ));
}

// ---------------------------------------------------------------------------
// Conflict rules ("always use")
// ---------------------------------------------------------------------------

fn set_rule(field: &str, side: Option<Side>) -> IntegrationCommand {
    IntegrationCommand::SetConflictRule {
        field: field.into(),
        side,
        at: t1(),
    }
}

fn rule_changed(field: &str, side: Option<Side>) -> IntegrationEvent {
    IntegrationEvent::ConflictRuleChanged {
        field: field.into(),
        side,
        at: t1(),
    }
}

/// Decides `commands` in turn from `status`; returns the final state.
fn after(status: Status, commands: Vec<IntegrationCommand>) -> Integration {
    let mut state = given::<Integration>(history(status)).state().clone();
    for command in commands {
        for event in state.decide(command).unwrap_or_default() {
            state.apply(&event);
        }
    }
    state
}

#[test]
fn conflict_rules_are_set_replaced_and_removed() {
    let connected = history(Status::Connected);
    assert_eq!(
        given::<Integration>(connected.clone()).when(set_rule("email", Some(Side::Crm))),
        Ok(vec![rule_changed("email", Some(Side::Crm))])
    );
    let mut with_rule = connected.clone();
    with_rule.push(rule_changed("email", Some(Side::Crm)));
    // The same rule again, or removing a rule that is not there, writes nothing.
    assert_eq!(
        given::<Integration>(with_rule.clone()).when(set_rule("email", Some(Side::Crm))),
        Ok(vec![])
    );
    assert_eq!(
        given::<Integration>(connected).when(set_rule("phone", None)),
        Ok(vec![])
    );
    let state = after(
        Status::Connected,
        vec![
            set_rule("email", Some(Side::Crm)),
            set_rule("phone", Some(Side::App)),
            set_rule("email", Some(Side::App)),
            set_rule("phone", None),
        ],
    );
    assert_eq!(
        state.conflict_rules,
        [("email".to_string(), Side::App)].into_iter().collect()
    );
}

#[test]
fn conflict_rules_change_in_every_status_but_disconnected() {
    for status in ALL_STATUSES {
        let result = given::<Integration>(history(status)).when(set_rule("email", Some(Side::App)));
        if status == Status::Disconnected {
            assert_eq!(
                result,
                transition(Status::Disconnected, "change the conflict rules of"),
                "{status:?}"
            );
        } else {
            assert_eq!(
                result,
                Ok(vec![rule_changed("email", Some(Side::App))]),
                "{status:?}"
            );
        }
    }
}

#[test]
fn conflict_rule_field_names_are_validated() {
    let long = "f".repeat(201);
    for bad in ["", "   ", "em\nail", "tab\there", long.as_str()] {
        assert_eq!(
            invalid_field(
                given::<Integration>(history(Status::Connected))
                    .when(set_rule(bad, Some(Side::Crm)))
            ),
            Some("field"),
            "{bad:?}"
        );
    }
    let longest = "é".repeat(200);
    assert!(given::<Integration>(history(Status::Connected))
        .when(set_rule(&longest, Some(Side::Crm)))
        .is_ok());
}

#[test]
fn the_merge_policy_is_the_strategy_plus_the_rules() {
    let state = after(
        Status::Connected,
        vec![
            change_config(other_config()),
            set_rule("email", Some(Side::Crm)),
        ],
    );
    let policy = state.merge_policy();
    assert_eq!(policy.strategy, ConflictStrategy::LastWriteWins);
    assert_eq!(
        policy.always,
        [("email".to_string(), Side::Crm)].into_iter().collect()
    );
    // The app changed both fields later than the CRM: last-write-wins keeps the app's
    // phone, but the rule keeps the CRM's email.
    let field = |email: &str, phone: &str| -> crate::merge::Fields {
        [("email", email), ("phone", phone)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    };
    let (base, app, crm) = (field("a", "1"), field("b", "2"), field("c", "3"));
    let out = merge(
        &base,
        Version {
            fields: &app,
            modified_at: t1(),
        },
        Version {
            fields: &crm,
            modified_at: t0(),
        },
        &policy,
    );
    assert_eq!(out.base, field("c", "2"));
    assert!(out.queued().next().is_none());
    // Under manual review the rule still settles its field; the other one waits.
    let manual = after(Status::Connected, vec![set_rule("email", Some(Side::Crm))]).merge_policy();
    assert_eq!(manual.strategy, ConflictStrategy::ManualReview);
    let out = merge(
        &base,
        Version {
            fields: &app,
            modified_at: t1(),
        },
        Version {
            fields: &crm,
            modified_at: t0(),
        },
        &manual,
    );
    let queued: Vec<&str> = out.queued().map(|c| c.field.as_str()).collect();
    assert_eq!(queued, ["phone"]);
    assert_eq!(out.to_app.get("email"), Some(&Some("c".to_string())));
}

#[test]
fn conflict_rule_summaries_name_the_field_and_side() {
    assert_eq!(
        rule_changed("email", Some(Side::Crm)).summary(),
        "conflicts on email now always keep the CRM value"
    );
    assert_eq!(
        rule_changed("email", None).summary(),
        "conflict rule for email removed"
    );
}

/// What the dashboard shows of a credential besides its kind: when someone set it (kept
/// by rotations), when it was last rotated (cleared when it is set again), and neither
/// after a disconnect.
#[test]
fn credentials_keep_when_they_were_set_and_rotated() {
    let later = t1();
    let rotated_later = IntegrationEvent::CredentialsRotated {
        kind: CredentialKind::Oauth2,
        secret: secret("third"),
        expires_at: None,
        refresh_token: None,
        at: later,
    };
    let mut state = Integration::default();
    for event in [created(), stored()] {
        state.apply(&event);
    }
    assert_eq!(state.credentials_set_at, Some(t0()));
    assert_eq!(state.credentials_rotated_at, None);
    state.apply(&rotated_later);
    assert_eq!(state.credentials_set_at, Some(t0()), "a rotation keeps it");
    assert_eq!(state.credentials_rotated_at, Some(later));
    state.apply(&stored());
    assert_eq!(
        state.credentials_rotated_at, None,
        "set again: not rotated since"
    );
    state.apply(&disconnected());
    assert_eq!(
        (state.credentials_set_at, state.credentials_rotated_at),
        (None, None)
    );
}

// ---- editing: name and endpoint ----

fn rename(name: &str) -> IntegrationCommand {
    IntegrationCommand::Rename {
        name: name.into(),
        at: t1(),
    }
}

fn change_endpoint(base_url: &str, keep_credentials: bool) -> IntegrationCommand {
    IntegrationCommand::ChangeEndpoint {
        base_url: Some(base_url.into()),
        spec: None,
        keep_credentials,
        at: t1(),
    }
}

#[test]
fn a_rename_is_trimmed_and_validated_and_the_same_name_is_a_no_op() {
    assert_eq!(
        given::<Integration>([created(), stored()]).when(rename("  Sales EU ")),
        Ok(vec![IntegrationEvent::IntegrationRenamed {
            name: "Sales EU".into(),
            at: t1(),
        }])
    );
    assert_eq!(
        given::<Integration>([created()]).when(rename("Main HubSpot")),
        Ok(vec![])
    );
    assert_eq!(
        invalid_field(given::<Integration>([created()]).when(rename(" "))),
        Some("name")
    );
    assert_eq!(
        invalid_field(given::<Integration>([created()]).when(rename(&"x".repeat(201)))),
        Some("name")
    );
    assert_eq!(
        given::<Integration>(history(Status::Disconnected)).when(rename("Other")),
        transition(Status::Disconnected, "rename")
    );
}

#[test]
fn an_endpoint_change_that_keeps_the_hosts_keeps_the_credentials() {
    let g = given::<Integration>([created(), stored()]);
    let events = g.when(change_endpoint("https://eu.example.com", true));
    let expected = IntegrationEvent::EndpointChanged {
        base_url: Some("https://eu.example.com".into()),
        spec: None,
        credentials_dropped: false,
        at: t1(),
    };
    assert_eq!(events, Ok(vec![expected.clone()]));
    let state = given::<Integration>([created(), stored(), expected]);
    let state = state.state();
    assert_eq!(state.base_url.as_deref(), Some("https://eu.example.com"));
    assert_eq!(state.status, Status::Connected);
    assert!(state.secret.is_some());
    assert_eq!(state.credentials_generation, 1);
}

#[test]
fn an_endpoint_change_to_a_new_host_drops_the_credentials_and_outdates_a_refresh() {
    let events = given::<Integration>([created(), stored(), claimed("w1", 1, 60)])
        .when(change_endpoint("https://attacker.example", false))
        .unwrap_or_default();
    assert_eq!(
        events,
        vec![IntegrationEvent::EndpointChanged {
            base_url: Some("https://attacker.example".into()),
            spec: None,
            credentials_dropped: true,
            at: t1(),
        }]
    );
    let mut history = vec![created(), stored(), claimed("w1", 1, 60)];
    history.extend(events);
    let g = given::<Integration>(history.clone());
    let state = g.state();
    assert_eq!(state.status, Status::PendingAuth);
    assert!(state.secret.is_none());
    assert!(state.credential_kind.is_none());
    assert!(state.refresh_lease.is_none());
    // A refresh begun for the old host cannot store what it got.
    assert_eq!(
        given::<Integration>(history.clone()).when(complete("w1", 1)),
        transition(Status::PendingAuth, "complete a credential refresh of")
    );
    // Connecting again works as for a new integration.
    assert_eq!(
        given::<Integration>(history).when(store()),
        Ok(vec![stored()])
    );
}

#[test]
fn an_endpoint_change_without_credentials_drops_nothing() {
    assert_eq!(
        given::<Integration>([created()]).when(change_endpoint("https://x.example", false)),
        Ok(vec![IntegrationEvent::EndpointChanged {
            base_url: Some("https://x.example".into()),
            spec: None,
            credentials_dropped: false,
            at: t1(),
        }])
    );
}

#[test]
fn an_endpoint_change_waits_for_the_active_run_but_the_same_endpoint_is_a_no_op() {
    let g = given::<Integration>([created(), stored(), begun("r1")]);
    assert_eq!(
        g.when(change_endpoint("https://eu.example.com", true)),
        Err(IntegrationError::RunActive {
            run_id: "r1".into()
        })
    );
    assert_eq!(
        given::<Integration>([created(), stored(), begun("r1")])
            .when(change_endpoint("https://api.hubapi.com", true)),
        Ok(vec![])
    );
    // A rename does not wait.
    assert!(matches!(
        given::<Integration>([created(), stored(), begun("r1")]).when(rename("Other")),
        Ok(events) if events.len() == 1
    ));
}

// ---------------------------------------------------------------------------
// A vendor without an API
// ---------------------------------------------------------------------------

fn no_api_created(spec: Option<&str>) -> IntegrationEvent {
    IntegrationEvent::IntegrationCreated {
        integration_id: "int1".into(),
        workspace_id: "ws1".into(),
        provider: "honeybook".into(),
        name: "Studio clients".into(),
        sync_config: SyncConfig {
            entities: vec![Entity::Contacts],
            ..config()
        },
        base_url: None,
        spec: spec.map(str::to_owned),
        at: t0(),
    }
}

fn inbound_secret(at: DateTime<Utc>) -> IntegrationCommand {
    IntegrationCommand::RotateCredentials {
        kind: CredentialKind::InboundWebhook,
        secret: EncryptedSecret {
            key_id: "k1".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        },
        expires_at: None,
        refresh_token: None,
        at,
    }
}

#[test]
fn a_vendor_without_an_api_is_connected_from_its_creation() {
    let g = given::<Integration>([no_api_created(None)]);
    assert_eq!(g.state().status, Status::Connected);
    // With a spec of its own it is a custom integration, waiting for credentials.
    let custom = given::<Integration>([no_api_created(Some("{}"))]);
    assert_eq!(custom.state().status, Status::PendingAuth);
}

#[test]
fn an_inbound_secret_is_set_once_then_rotated() {
    let first = given::<Integration>([no_api_created(None)]).when(inbound_secret(t0()));
    let Ok(events) = first else {
        panic!("refused: {first:?}");
    };
    let mut state = given::<Integration>([no_api_created(None)]).state().clone();
    for e in &events {
        state.apply(e);
    }
    assert_eq!(
        (state.credentials_set_at, state.credentials_rotated_at),
        (Some(t0()), None)
    );
    // Folded as the status read model folds it (no ciphertext), the next one is a
    // rotation all the same.
    state.secret = None;
    let Ok(again) = Integration::decide(&state, inbound_secret(t1())) else {
        panic!("a second secret refused");
    };
    for e in &again {
        state.apply(e);
    }
    assert_eq!(
        (state.credentials_set_at, state.credentials_rotated_at),
        (Some(t0()), Some(t1()))
    );
}

// ---------------------------------------------------------------------------
// A provider's own webhook secret (Chatwoot)
// ---------------------------------------------------------------------------

fn chatwoot_created() -> IntegrationEvent {
    IntegrationEvent::IntegrationCreated {
        integration_id: "int1".into(),
        workspace_id: "ws1".into(),
        provider: "chatwoot".into(),
        name: "Support desk".into(),
        sync_config: config(),
        base_url: None,
        spec: None,
        at: t0(),
    }
}

fn set_hook_secret(tag: &str) -> IntegrationCommand {
    IntegrationCommand::SetWebhookSecret {
        secret: secret(tag),
        at: t1(),
    }
}

#[test]
fn a_chatwoot_integration_takes_a_webhook_secret_and_replaces_it() {
    let g = given::<Integration>([chatwoot_created()]);
    assert_eq!(
        g.when(set_hook_secret("first")),
        Ok(vec![IntegrationEvent::WebhookSecretSet {
            secret: secret("first"),
            at: t1(),
        }])
    );
    let set = IntegrationEvent::WebhookSecretSet {
        secret: secret("first"),
        at: t1(),
    };
    let again = given::<Integration>([chatwoot_created(), stored(), set.clone()]);
    assert_eq!(again.state().webhook_secret, Some(secret("first")));
    // The credentials are another secret: the webhook's leaves them alone.
    assert_eq!(again.state().secret, Some(secret("first")));
    assert!(again.when(set_hook_secret("second")).is_ok());
    let summary = set.summary();
    assert!(
        summary.contains("redacted") && !summary.contains("CIPHERTEXT"),
        "{summary}"
    );
}

#[test]
fn a_provider_without_its_own_webhook_takes_no_webhook_secret() {
    let refused = given::<Integration>([created()]).when(set_hook_secret("x"));
    assert!(
        matches!(
            refused,
            Err(IntegrationError::Invalid {
                field: "provider",
                ..
            })
        ),
        "{refused:?}"
    );
}

#[test]
fn disconnecting_forgets_the_webhook_secret() {
    let set = IntegrationEvent::WebhookSecretSet {
        secret: secret("first"),
        at: t1(),
    };
    let disconnected = IntegrationEvent::IntegrationDisconnected {
        reason: "bye".into(),
        at: t1(),
    };
    let g = given::<Integration>([chatwoot_created(), set, disconnected]);
    assert_eq!(g.state().webhook_secret, None);
    assert!(g.when(set_hook_secret("again")).is_err());
}
