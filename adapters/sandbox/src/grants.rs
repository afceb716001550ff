//! The HubSpot sandbox's OAuth grants: authorization codes, access and refresh tokens
//! (refresh tokens rotate), and the PKCE check. The HTTP endpoints are `oauth`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The token response of `POST /oauth/v1/token`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub token_type: String,
    pub token_use: String,
    pub hub_id: u64,
}

/// `base64url-no-pad(SHA-256(verifier))`, the S256 code challenge.
pub fn pkce_s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn default_scopes() -> Vec<String> {
    [
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.companies.write",
    ]
    .map(String::from)
    .to_vec()
}

pub(crate) struct Code {
    pub(crate) redirect_uri: String,
    pub(crate) challenge: Option<String>,
    pub(crate) scopes: Vec<String>,
}

pub(crate) struct Access {
    pub(crate) refresh: String,
    pub(crate) expires: Instant,
    pub(crate) scopes: Vec<String>,
}

#[derive(Default)]
pub struct AuthState {
    pub(crate) codes: HashMap<String, Code>,
    pub(crate) refresh: HashMap<String, Vec<String>>,
    pub(crate) access: HashMap<String, Access>,
}

pub(crate) fn new_token(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl AuthState {
    pub fn issue(&mut self, scopes: Vec<String>, ttl_secs: u64, hub_id: u64) -> TokenPair {
        let (access_token, refresh_token) = (new_token("sbx-at"), new_token("sbx-rt"));
        let expires = Instant::now() + Duration::from_secs(ttl_secs);
        let access = Access {
            refresh: refresh_token.clone(),
            expires,
            scopes: scopes.clone(),
        };
        self.access.insert(access_token.clone(), access);
        self.refresh.insert(refresh_token.clone(), scopes);
        TokenPair {
            access_token,
            refresh_token,
            expires_in: ttl_secs,
            token_type: "bearer".into(),
            token_use: "access_token".into(),
            hub_id,
        }
    }

    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.access.get(token).is_some_and(|a| a.expires > now)
    }

    pub fn expire_all(&mut self) {
        let now = Instant::now();
        self.access.values_mut().for_each(|a| a.expires = now);
    }

    pub(crate) fn revoke(&mut self, refresh: &str) {
        self.refresh.remove(refresh);
        self.access.retain(|_, a| a.refresh != refresh);
    }
}
