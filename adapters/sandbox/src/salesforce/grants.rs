//! The Salesforce sandbox's OAuth grants: authorization codes, sessions and refresh
//! tokens (no rotation). The HTTP endpoints are `oauth`.

use std::collections::HashMap;

pub(crate) struct Code {
    pub(crate) redirect_uri: String,
    pub(crate) challenge: String,
    pub(crate) offline: bool,
}

/// Access tokens point at the refresh token they came from (if any), so that
/// revoking the refresh token ends them too.
#[derive(Default)]
pub struct AuthState {
    pub(crate) codes: HashMap<String, Code>,
    pub(crate) refresh: HashMap<String, ()>,
    pub(crate) access: HashMap<String, Option<String>>,
}

pub struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
}

pub(crate) fn new_token(prefix: &str) -> String {
    format!("{prefix}!{}", uuid::Uuid::new_v4().simple())
}

impl AuthState {
    /// A session, with a refresh token when `offline` (the `refresh_token` scope).
    pub fn issue(&mut self, offline: bool) -> Issued {
        let refresh_token = offline.then(|| new_token("5Aep861"));
        if let Some(r) = &refresh_token {
            self.refresh.insert(r.clone(), ());
        }
        let access_token = self.session(refresh_token.clone());
        Issued {
            access_token,
            refresh_token,
        }
    }

    pub(crate) fn session(&mut self, refresh: Option<String>) -> String {
        let access = new_token("00D5g000004Sbx");
        self.access.insert(access.clone(), refresh);
        access
    }

    pub fn is_valid(&self, token: &str) -> bool {
        self.access.contains_key(token)
    }

    /// Ends every session, as an org-wide session timeout would; refresh tokens stay.
    pub fn expire_all(&mut self) {
        self.access.clear();
    }

    pub(crate) fn revoke(&mut self, token: &str) -> bool {
        if self.refresh.remove(token).is_some() {
            self.access.retain(|_, r| r.as_deref() != Some(token));
            return true;
        }
        self.access.remove(token).is_some()
    }
}
