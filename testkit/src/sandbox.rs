//! Provider sandboxes for tests: the one way tests start a HubSpot simulator in their own
//! process, approve its OAuth consent as a browser would, and read what it holds through
//! its CRM API. (The `syncledger sandbox` child process is started with
//! [`crate::binary::TestEnv::command`] and [`crate::binary::Server::start`].)

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::Value;
pub use syncledger_sandbox::{Sandbox, SandboxConfig};

/// A HubSpot sandbox seeded with `records` per object type, otherwise as configured by
/// default (seed 42, no rate limit).
pub async fn hubspot(records: usize) -> Sandbox {
    hubspot_with(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await
}

/// A HubSpot sandbox configured by `config`.
pub async fn hubspot_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start_hubspot(config)
        .await
        .expect("start a HubSpot sandbox")
}

/// The provider's redirect after the user approves: the API's callback URL.
pub async fn approve(authorization_url: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = client.get(authorization_url).send().await?;
    anyhow::ensure!(resp.status() == StatusCode::FOUND, "the sandbox approves");
    Ok(resp
        .headers()
        .get(reqwest::header::LOCATION)
        .context("a Location header")?
        .to_str()?
        .to_string())
}

/// Every live record of `ty` at the sandbox, through its CRM API.
pub async fn sandbox_records(sandbox: &Sandbox, ty: &str, properties: &str) -> Vec<Value> {
    let token = sandbox.issue_tokens().access_token;
    let http = reqwest::Client::new();
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/crm/v3/objects/{ty}?limit=100&properties={properties}",
            sandbox.base_url()
        );
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let resp = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("list");
        assert_eq!(resp.status(), StatusCode::OK);
        let page: Value = resp.json().await.expect("list JSON");
        all.extend(page["results"].as_array().cloned().unwrap_or_default());
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return all,
        }
    }
}
