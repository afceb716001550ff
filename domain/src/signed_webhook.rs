//! Signed provider webhooks (Chatwoot): whether a delivery was signed with the
//! integration's secret, recently. Chatwoot sends `X-Chatwoot-Signature:
//! sha256=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>`, `X-Chatwoot-Timestamp`
//! (unix seconds) and `X-Chatwoot-Delivery` (an id stable across retries). The clock is
//! passed in, so the rules are tested without one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from now, either way, in seconds.
pub const WINDOW_SECS: i64 = 300;

/// The longest delivery id accepted (Chatwoot sends a UUID).
const MAX_DELIVERY_ID: usize = 128;

/// Why a delivery is refused. The texts name no secret and no signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the X-Chatwoot-Signature, X-Chatwoot-Timestamp or X-Chatwoot-Delivery header is \
         missing or malformed"
    )]
    Missing,
    #[error("the timestamp is more than 5 minutes away from now")]
    OutsideWindow,
    #[error("the signature does not verify")]
    Mismatch,
}

/// The headers of a delivery as they arrived.
#[derive(Debug, Clone, Copy)]
pub struct SignedDelivery<'a> {
    pub body: &'a [u8],
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub delivery_id: Option<&'a str>,
}

/// A delivery that verified: its timestamp (unix seconds) and delivery id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub timestamp: i64,
    pub delivery_id: String,
}

/// Verifies a Chatwoot delivery against `secret` at `now` (unix seconds). The MAC is
/// compared in constant time (`Mac::verify_slice`).
pub fn verify_chatwoot(
    secret: &[u8],
    d: SignedDelivery<'_>,
    now: i64,
) -> Result<Verified, SignatureError> {
    let delivery_id = d
        .delivery_id
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= MAX_DELIVERY_ID)
        .ok_or(SignatureError::Missing)?;
    let raw_ts = d.timestamp.map(str::trim).ok_or(SignatureError::Missing)?;
    let timestamp: i64 = raw_ts.parse().map_err(|_| SignatureError::Missing)?;
    let given = d
        .signature
        .map(str::trim)
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|hex_mac| hex::decode(hex_mac).ok())
        .ok_or(SignatureError::Missing)?;
    if secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(raw_ts.as_bytes());
    mac.update(b".");
    mac.update(d.body);
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)?;
    if now.saturating_sub(timestamp).saturating_abs() > WINDOW_SECS {
        return Err(SignatureError::OutsideWindow);
    }
    Ok(Verified {
        timestamp,
        delivery_id: delivery_id.to_owned(),
    })
}

#[cfg(test)]
mod tests;
