//! Signed webhook delivery (signature v3).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `base64(HMAC-SHA256(client_secret, method + uri + body + timestamp))`.
pub fn sign_v3(
    client_secret: &str,
    method: &str,
    uri: &str,
    body: &str,
    timestamp_ms: i64,
) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(client_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{method}{uri}{body}{timestamp_ms}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub async fn send(
    client_secret: &str,
    target_url: &str,
    events: Vec<serde_json::Value>,
) -> Result<u16, reqwest::Error> {
    let body = serde_json::Value::Array(events).to_string();
    let timestamp = chrono::Utc::now().timestamp_millis();
    let signature = sign_v3(client_secret, "POST", target_url, &body, timestamp);
    let response = reqwest::Client::new()
        .post(target_url)
        .header("Content-Type", "application/json")
        .header("X-HubSpot-Signature-v3", signature)
        .header("X-HubSpot-Request-Timestamp", timestamp.to_string())
        .body(body)
        .send()
        .await?;
    Ok(response.status().as_u16())
}
