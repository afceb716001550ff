//! Metadata carried by every event: who, within which request or run, caused by what, when.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// A token id, `system`, or a worker id.
    pub actor: String,
    pub workspace_id: String,
    /// One per API request or sync run, always minted by the server.
    pub correlation_id: String,
    /// The `x-request-id` a client sent with the request, if any: kept for tracing the
    /// client's own requests, never used to find events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The end user an app's token acted for (`X-Acting-For`), as the app named them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_for: Option<String>,
    /// The event or request that caused this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    pub time: DateTime<Utc>,
}

impl Metadata {
    pub fn new(
        actor: impl Into<String>,
        workspace_id: impl Into<String>,
        correlation_id: impl Into<String>,
    ) -> Self {
        Metadata {
            actor: actor.into(),
            workspace_id: workspace_id.into(),
            correlation_id: correlation_id.into(),
            request_id: None,
            acting_for: None,
            causation_id: None,
            time: Utc::now(),
        }
    }

    pub fn system(workspace_id: impl Into<String>) -> Self {
        Self::new("system", workspace_id, uuid::Uuid::now_v7().to_string())
    }

    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    pub fn acting_for(mut self, person: Option<String>) -> Self {
        self.acting_for = person;
        self
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("actor".into(), self.actor.clone());
        m.insert("workspace_id".into(), self.workspace_id.clone());
        m.insert("correlation_id".into(), self.correlation_id.clone());
        if let Some(c) = &self.causation_id {
            m.insert("causation_id".into(), c.clone());
        }
        if let Some(r) = &self.request_id {
            m.insert("request_id".into(), r.clone());
        }
        if let Some(p) = &self.acting_for {
            m.insert("acting_for".into(), p.clone());
        }
        m.insert(
            "time".into(),
            self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        m
    }

    /// Read metadata back from the stored JSON object; missing fields become empty.
    pub fn from_json(value: &serde_json::Value) -> Metadata {
        let get = |k: &str| {
            value
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        Metadata {
            actor: get("actor"),
            workspace_id: get("workspace_id"),
            correlation_id: get("correlation_id"),
            request_id: value
                .get("request_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            acting_for: value
                .get("acting_for")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            causation_id: value
                .get("causation_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            time: DateTime::parse_from_rfc3339(&get("time"))
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
        }
    }
}
