//! The credential lifecycle against the HubSpot sandbox, whose refresh tokens are single
//! use: refresh before expiry, refresh after a 401, one refresh however many workers
//! ask at once, and a refused refresh token putting the integration in error.

use std::sync::Arc;
use syncledger_testkit::sandbox;

use chrono::{Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use syncledger_crm::{Credentials, Tokens};
use syncledger_domain::{Integration, IntegrationCommand, Status, SyncConfig};
use syncledger_engine::{
    seal_credentials, ClientApp, Connections, Connector, EngineError, ProviderApps,
};
use syncledger_sandbox::{Sandbox, SandboxConfig};
use syncledger_store::{Metadata, Store};
use syncledger_testkit::{with_postgres, with_sqlite};
use syncledger_vault::{MasterKey, Vault};

const TOKEN_ENDPOINT: &str = "POST /oauth/v1/token";

struct Setup {
    store: Store,
    vault: Vault,
    connections: Connections,
    sandbox: Sandbox,
    id: String,
    meta: Metadata,
}

fn connections(store: &Store, vault: &Vault) -> Connections {
    let app = ClientApp {
        client_id: "sandbox-client".into(),
        client_secret: SecretString::from("sandbox-secret"),
    };
    let apps = ProviderApps {
        apps: [("hubspot".to_string(), app)].into_iter().collect(),
        pacing: false,
        // The sandbox listens on loopback.
        outbound: syncledger_domain::outbound::OutboundPolicy::development(),
    };
    Connections::new(store, vault.clone(), Connector::new(apps), "test")
}

/// A connected HubSpot integration whose stored tokens expire at `expires_at`.
async fn setup(store: Store, expires_at: chrono::DateTime<Utc>) -> anyhow::Result<Setup> {
    let sandbox = sandbox::hubspot_with(SandboxConfig::default()).await;
    let vault = Vault::new(store.any.clone(), MasterKey::generate());
    let id = uuid::Uuid::now_v7().to_string();
    let ws = "ws-credentials";
    let meta = Metadata::new("test", ws, "corr-1");
    let integrations = store.cqrs::<Integration>();
    integrations
        .execute(
            &id,
            IntegrationCommand::Create {
                integration_id: id.clone(),
                workspace_id: ws.into(),
                provider: "hubspot".into(),
                name: "Sandbox".into(),
                sync_config: SyncConfig::default(),
                base_url: Some(sandbox.base_url()),
                spec: None,
                at: Utc::now(),
            },
            &meta,
        )
        .await?;
    let pair = sandbox.issue_tokens();
    let tokens = Credentials::OAuth2(Tokens {
        access_token: SecretString::from(pair.access_token),
        refresh_token: Some(SecretString::from(pair.refresh_token)),
        expires_at: Some(expires_at),
        instance_url: None,
    });
    let (kind, secret, expires_at) = seal_credentials(&vault, ws, &tokens).await?;
    integrations
        .execute(
            &id,
            IntegrationCommand::StoreCredentials {
                kind,
                secret,
                expires_at,
                refresh_token: None,
                at: Utc::now(),
            },
            &meta,
        )
        .await?;
    Ok(Setup {
        connections: connections(&store, &vault),
        store,
        vault,
        sandbox,
        id,
        meta,
    })
}

fn access_token(credentials: &Credentials) -> String {
    credentials
        .tokens()
        .map(|t| t.access_token.expose_secret().to_owned())
        .unwrap_or_default()
}

/// Events of one type for the integration, read from the events table itself: the
/// global feed may hold back recent events while another test keeps a transaction open.
async fn events_of(store: &Store, id: &str, event_type: &str) -> anyhow::Result<i64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM events WHERE aggregate_id = $1 AND event_type = $2",
    )
    .bind(id)
    .bind(event_type)
    .fetch_one(&store.any)
    .await?;
    Ok(n)
}

/// Eight workers find the tokens expired at once: one refresh reaches the provider,
/// and every worker ends up with the same working tokens.
async fn eight_concurrent_callers_refresh_once(store: Store) -> anyhow::Result<()> {
    let s = setup(store, Utc::now() - Duration::minutes(1)).await?;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut session = s.connections.session(&s.id).await?;
            session
                .call(&s.meta, |adapter, credentials| {
                    adapter.test_connection(credentials)
                })
                .await?;
            Ok::<String, EngineError>(access_token(session.credentials()))
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await??);
    }
    assert_eq!(s.sandbox.counters().get(TOKEN_ENDPOINT), Some(&1));
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every worker adopted the one new token");
    let state = s.store.cqrs::<Integration>().load(&s.id).await?;
    assert_eq!(state.credentials_generation, 2);
    assert_eq!(state.status, Status::Connected);
    assert!(state
        .credentials_expire_at
        .is_some_and(|at| at > Utc::now()));
    assert_eq!(
        events_of(&s.store, &s.id, "CredentialRefreshClaimed").await?,
        1
    );
    Ok(())
}

/// Tokens the provider stopped accepting (401) are refreshed once and the call retried.
async fn a_rejected_token_is_refreshed_and_the_call_retried(store: Store) -> anyhow::Result<()> {
    let s = setup(store, Utc::now() + Duration::hours(1)).await?;
    let mut session = s.connections.session(&s.id).await?;
    let before = access_token(session.credentials());
    // Valid by our clock; not by the provider's.
    let url = format!("{}/_sandbox/tokens/expire", s.sandbox.base_url());
    reqwest::Client::new()
        .post(url)
        .send()
        .await?
        .error_for_status()?;
    let identity = session
        .call(&s.meta, |adapter, credentials| {
            adapter.test_connection(credentials)
        })
        .await?;
    assert!(!identity.account_id.is_empty());
    assert_ne!(access_token(session.credentials()), before);
    assert_eq!(s.sandbox.counters().get(TOKEN_ENDPOINT), Some(&1));
    // A fresh session reads the refreshed tokens from the store.
    let again = s.connections.session(&s.id).await?;
    assert_eq!(
        access_token(again.credentials()),
        access_token(session.credentials())
    );
    Ok(())
}

/// A refresh token the provider refuses (here: already spent) puts the integration in
/// error with a reason, instead of retrying forever.
async fn a_refused_refresh_token_puts_the_integration_in_error(store: Store) -> anyhow::Result<()> {
    let s = setup(store, Utc::now() - Duration::minutes(1)).await?;
    let session = s.connections.session(&s.id).await?;
    let refresh = session
        .credentials()
        .tokens()
        .and_then(|t| t.refresh_token.as_ref())
        .map(|r| r.expose_secret().to_owned())
        .unwrap_or_default();
    // Someone outside syncledger spends the single-use refresh token.
    session.adapter().refresh(&refresh).await?;
    let mut session = s.connections.session(&s.id).await?;
    let result = session.ensure_fresh(&s.meta).await;
    assert!(
        matches!(result, Err(EngineError::RefreshRejected)),
        "{result:?}"
    );
    let state = s.store.cqrs::<Integration>().load(&s.id).await?;
    assert_eq!(state.status, Status::Error);
    let reason = state.last_error.unwrap_or_default();
    assert!(reason.contains("reconnect"), "{reason}");
    assert!(!reason.contains(&refresh), "no token in the reason");
    // Nobody else tries again with the dead token.
    let next = s
        .connections
        .session(&s.id)
        .await?
        .ensure_fresh(&s.meta)
        .await;
    assert!(
        matches!(next, Err(EngineError::Unusable { .. })),
        "{next:?}"
    );
    assert_eq!(s.sandbox.counters().get(TOKEN_ENDPOINT), Some(&2));
    assert_eq!(events_of(&s.store, &s.id, "IntegrationFailed").await?, 1);
    drop(s.vault);
    Ok(())
}

#[tokio::test]
async fn sqlite_eight_concurrent_callers_refresh_once() -> anyhow::Result<()> {
    with_sqlite(eight_concurrent_callers_refresh_once).await
}

#[tokio::test]
async fn postgres_eight_concurrent_callers_refresh_once() -> anyhow::Result<()> {
    with_postgres(eight_concurrent_callers_refresh_once).await
}

#[tokio::test]
async fn sqlite_a_rejected_token_is_refreshed_and_the_call_retried() -> anyhow::Result<()> {
    with_sqlite(a_rejected_token_is_refreshed_and_the_call_retried).await
}

#[tokio::test]
async fn postgres_a_rejected_token_is_refreshed_and_the_call_retried() -> anyhow::Result<()> {
    with_postgres(a_rejected_token_is_refreshed_and_the_call_retried).await
}

#[tokio::test]
async fn sqlite_a_refused_refresh_token_puts_the_integration_in_error() -> anyhow::Result<()> {
    with_sqlite(a_refused_refresh_token_puts_the_integration_in_error).await
}

#[tokio::test]
async fn postgres_a_refused_refresh_token_puts_the_integration_in_error() -> anyhow::Result<()> {
    with_postgres(a_refused_refresh_token_puts_the_integration_in_error).await
}
