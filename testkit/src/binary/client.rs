//! A small client for the HTTP API, authenticated with one bearer token.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build an HTTP client");
        Api {
            http,
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    /// One request; a transport error (e.g. the server has gone) is returned.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        Ok((status, resp.text().await?))
    }

    /// A request that must get an answer with `expected` status; the body as text.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: StatusCode,
    ) -> String {
        let (status, text) = self
            .send(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, expected, "{method} {path} answered {text}");
        text
    }

    pub async fn get(&self, path: &str) -> String {
        self.expect(Method::GET, path, None, StatusCode::OK).await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let text = self.get(path).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    pub async fn health(&self) -> StatusCode {
        let (status, _) = self
            .send(Method::GET, "/v1/health", None)
            .await
            .expect("GET /v1/health");
        status
    }

    /// A HubSpot integration pulling contacts by hand ([`pull_integration_body`]); its id.
    pub async fn create_integration(&self, name: &str) -> String {
        let body = pull_integration_body(name);
        let text = self
            .expect(
                Method::POST,
                "/v1/integrations",
                Some(&body),
                StatusCode::CREATED,
            )
            .await;
        let v: Value = serde_json::from_str(&text).expect("integration JSON");
        v["id"].as_str().expect("integration id").to_string()
    }

    pub async fn set_api_key(&self, id: &str, api_key: &str) -> String {
        let body = json!({ "type": "api_key", "api_key": api_key });
        self.set_credentials(id, &body).await
    }

    pub async fn set_basic(&self, id: &str, username: &str, password: &str) -> String {
        let body = json!({ "type": "basic", "username": username, "password": password });
        self.set_credentials(id, &body).await
    }

    async fn set_credentials(&self, id: &str, body: &Value) -> String {
        let path = format!("/v1/integrations/{id}/credentials");
        self.expect(Method::POST, &path, Some(body), StatusCode::OK)
            .await
    }
}

/// The body that creates a HubSpot integration named `name` pulling contacts by hand.
pub fn pull_integration_body(name: &str) -> Value {
    json!({
        "provider": "hubspot",
        "name": name,
        "sync_config": {
            "direction": "pull",
            "frequency": "manual",
            "entities": ["contacts"],
            "conflict_strategy": "manual_review"
        }
    })
}
