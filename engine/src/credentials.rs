//! Credentials as they are sealed in the vault: a small JSON document per kind,
//! encrypted with the workspace's data key. Plaintext lives only in zeroized buffers
//! and `SecretString`s.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use syncledger_crm::{Credentials, Tokens};
use syncledger_domain::integration::{CredentialKind, EncryptedSecret};
use syncledger_vault::{Sealed, Vault};
use zeroize::Zeroizing;

use crate::error::EngineError;

#[derive(Serialize, Deserialize)]
struct StoredOAuth {
    access_token: String,
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_url: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredApiKey {
    api_key: String,
}

#[derive(Serialize, Deserialize)]
struct StoredInbound {
    secret: String,
}

#[derive(Serialize, Deserialize)]
struct StoredBasic {
    username: String,
    password: String,
}

fn to_sealed(s: &EncryptedSecret) -> Sealed {
    Sealed {
        key_id: s.key_id.clone(),
        nonce: s.nonce.clone(),
        ciphertext: s.ciphertext.clone(),
    }
}

/// Encrypts credentials for the workspace; returns the kind, the ciphertext and,
/// for OAuth tokens, when they expire.
pub async fn seal_credentials(
    vault: &Vault,
    workspace_id: &str,
    credentials: &Credentials,
) -> Result<(CredentialKind, EncryptedSecret, Option<DateTime<Utc>>), EngineError> {
    let (kind, expires_at, body) = match credentials {
        Credentials::OAuth2(t) => (
            CredentialKind::Oauth2,
            t.expires_at,
            serde_json::to_string(&StoredOAuth {
                access_token: t.access_token.expose_secret().to_owned(),
                refresh_token: t
                    .refresh_token
                    .as_ref()
                    .map(|r| r.expose_secret().to_owned()),
                instance_url: t.instance_url.clone(),
            }),
        ),
        Credentials::ApiKey(key) => (
            CredentialKind::ApiKey,
            None,
            serde_json::to_string(&StoredApiKey {
                api_key: key.expose_secret().to_owned(),
            }),
        ),
        Credentials::Basic { username, password } => (
            CredentialKind::Basic,
            None,
            serde_json::to_string(&StoredBasic {
                username: username.clone(),
                password: password.expose_secret().to_owned(),
            }),
        ),
    };
    let body = Zeroizing::new(body.map_err(|_| EngineError::Corrupt("credentials"))?);
    let sealed = vault.seal(workspace_id, body.as_bytes()).await?;
    Ok((
        kind,
        EncryptedSecret {
            key_id: sealed.key_id,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        },
        expires_at,
    ))
}

/// Decrypts an integration's credentials.
pub async fn open_credentials(
    vault: &Vault,
    workspace_id: &str,
    kind: CredentialKind,
    secret: &EncryptedSecret,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Credentials, EngineError> {
    let plain = vault.open(workspace_id, &to_sealed(secret)).await?;
    let bytes = plain.expose_secret();
    let corrupt = |_| EngineError::Corrupt("stored credentials do not parse");
    Ok(match kind {
        CredentialKind::Oauth2 => {
            let s: StoredOAuth = serde_json::from_slice(bytes).map_err(corrupt)?;
            Credentials::OAuth2(Tokens {
                access_token: SecretString::from(s.access_token),
                refresh_token: s.refresh_token.map(SecretString::from),
                expires_at,
                instance_url: s.instance_url,
            })
        }
        CredentialKind::ApiKey => {
            let s: StoredApiKey = serde_json::from_slice(bytes).map_err(corrupt)?;
            Credentials::ApiKey(SecretString::from(s.api_key))
        }
        // What authenticates deliveries to an inbound webhook: a key, as the engine
        // works with it (it is never sent anywhere).
        CredentialKind::InboundWebhook => {
            let s: StoredInbound = serde_json::from_slice(bytes).map_err(corrupt)?;
            Credentials::ApiKey(SecretString::from(s.secret))
        }
        CredentialKind::Basic => {
            let s: StoredBasic = serde_json::from_slice(bytes).map_err(corrupt)?;
            Credentials::Basic {
                username: s.username,
                password: SecretString::from(s.password),
            }
        }
    })
}

/// Encrypts an inbound webhook's secret for the workspace.
pub async fn seal_inbound_secret(
    vault: &Vault,
    workspace_id: &str,
    secret: &SecretString,
) -> Result<EncryptedSecret, EngineError> {
    let body = Zeroizing::new(
        serde_json::to_string(&StoredInbound {
            secret: secret.expose_secret().to_owned(),
        })
        .map_err(|_| EngineError::Corrupt("credentials"))?,
    );
    let sealed = vault.seal(workspace_id, body.as_bytes()).await?;
    Ok(EncryptedSecret {
        key_id: sealed.key_id,
        nonce: sealed.nonce,
        ciphertext: sealed.ciphertext,
    })
}
