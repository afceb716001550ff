//! Verifying HubSpot webhook deliveries (signature v3).
//!
//! HubSpot signs `method + uri + body + timestamp` with the app's client secret
//! (HMAC-SHA256, base64) and sends it in `X-HubSpot-Signature-v3`, with the timestamp
//! in milliseconds in `X-HubSpot-Request-Timestamp`. Deliveries older than five
//! minutes are refused, so a captured request cannot be replayed later.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How old a delivery may be.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the signature or timestamp header is missing")]
    MissingHeader,
    #[error("the request timestamp is not a number of milliseconds")]
    BadTimestamp,
    #[error("the request is older than five minutes (or from the future)")]
    Stale,
    #[error("the signature does not match")]
    BadSignature,
}

/// Checks a delivery. `uri` is the full URL HubSpot called, as configured in the app.
pub fn verify_v3(
    client_secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(WebhookError::MissingHeader);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::BadTimestamp)?;
    if (now.timestamp_millis() - ts).abs() > MAX_AGE_MS {
        return Err(WebhookError::Stale);
    }
    let expected = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| WebhookError::BadSignature)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(client_secret.as_bytes())
        .map_err(|_| WebhookError::BadSignature)?;
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.trim().as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&expected)
        .map_err(|_| WebhookError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, message: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!());
        mac.update(message.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    const URI: &str = "https://example.com/v1/webhooks/hubspot";
    const BODY: &str = r#"[{"objectId":1,"subscriptionType":"contact.propertyChange"}]"#;

    #[test]
    fn a_fresh_correct_signature_verifies_and_anything_else_does_not() {
        let now = Utc::now();
        let ts = now.timestamp_millis().to_string();
        let good = sign("secret", &format!("POST{URI}{BODY}{ts}"));
        let check = |secret: &str, body: &str, ts: Option<&str>, sig: Option<&str>| {
            verify_v3(secret, "POST", URI, body.as_bytes(), ts, sig, now)
        };
        assert_eq!(check("secret", BODY, Some(&ts), Some(&good)), Ok(()));
        assert_eq!(
            check("other", BODY, Some(&ts), Some(&good)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check("secret", "[]", Some(&ts), Some(&good)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check("secret", BODY, None, Some(&good)),
            Err(WebhookError::MissingHeader)
        );
        assert_eq!(
            check("secret", BODY, Some("soon"), Some(&good)),
            Err(WebhookError::BadTimestamp)
        );
        assert_eq!(
            check("secret", BODY, Some(&ts), Some("not base64!")),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn an_old_delivery_is_refused_even_when_signed() {
        let now = Utc::now();
        let old = (now.timestamp_millis() - MAX_AGE_MS - 1).to_string();
        let sig = sign("secret", &format!("POST{URI}{BODY}{old}"));
        assert_eq!(
            verify_v3(
                "secret",
                "POST",
                URI,
                BODY.as_bytes(),
                Some(&old),
                Some(&sig),
                now
            ),
            Err(WebhookError::Stale)
        );
    }
}
