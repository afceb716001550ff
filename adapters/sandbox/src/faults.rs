//! Injected faults, and the outer middleware that counts requests and applies them.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use std::sync::Arc;
use tokio::sync::watch;

/// How long a `timeout` fault holds a request unless the sandbox stops first.
const DEFAULT_HOLD_MS: u64 = 60_000;

fn one() -> u32 {
    1
}

/// A fault as posted to `POST /_sandbox/faults`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    Status {
        status: u16,
        #[serde(default = "one")]
        count: u32,
        path_prefix: Option<String>,
    },
    Timeout {
        #[serde(default = "one")]
        count: u32,
        path_prefix: Option<String>,
        hold_ms: Option<u64>,
    },
    Slow {
        millis: u64,
        #[serde(default = "one")]
        count: u32,
        path_prefix: Option<String>,
    },
    MalformedJson {
        #[serde(default = "one")]
        count: u32,
        path_prefix: Option<String>,
    },
    /// Batch writes fail every n-th input; `count` batch calls, or until cleared.
    PartialBatch {
        fail_every: usize,
        count: Option<u32>,
    },
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Action {
    Status(u16),
    Timeout(u64),
    Slow(u64),
    MalformedJson,
}

struct Pending {
    action: Action,
    left: u32,
    path_prefix: Option<String>,
}

#[derive(Default)]
pub struct FaultQueue {
    pending: Vec<Pending>,
    partial: Option<(usize, Option<u32>)>,
}

impl FaultQueue {
    pub fn push(&mut self, spec: FaultSpec) {
        let (action, left, path_prefix) = match spec {
            FaultSpec::Status {
                status,
                count,
                path_prefix,
            } => (Action::Status(status), count, path_prefix),
            FaultSpec::Timeout {
                count,
                path_prefix,
                hold_ms,
            } => (
                Action::Timeout(hold_ms.unwrap_or(DEFAULT_HOLD_MS)),
                count,
                path_prefix,
            ),
            FaultSpec::Slow {
                millis,
                count,
                path_prefix,
            } => (Action::Slow(millis), count, path_prefix),
            FaultSpec::MalformedJson { count, path_prefix } => {
                (Action::MalformedJson, count, path_prefix)
            }
            FaultSpec::PartialBatch { fail_every, count } => {
                self.partial = (fail_every > 0).then_some((fail_every, count));
                return;
            }
        };
        if left > 0 {
            self.pending.push(Pending {
                action,
                left,
                path_prefix,
            });
        }
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The first queued fault matching `path`, used up by one.
    pub(crate) fn take(&mut self, path: &str) -> Option<Action> {
        let at = self.pending.iter().position(|p| {
            p.path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
        })?;
        let entry = &mut self.pending[at];
        entry.left -= 1;
        let action = entry.action;
        if entry.left == 0 {
            self.pending.remove(at);
        }
        Some(action)
    }

    /// For a batch write: fail every n-th input, if a partial-batch fault is active.
    pub fn take_partial(&mut self) -> Option<usize> {
        let (every, count) = self.partial?;
        match count {
            Some(n) if n <= 1 => self.partial = None,
            Some(n) => self.partial = Some((every, Some(n - 1))),
            None => {}
        }
        Some(every)
    }
}

/// What a simulator lends the shared fault middleware.
pub(crate) trait FaultHost: Send + Sync + 'static {
    /// Counts the request under its endpoint key and takes the first pending fault
    /// matching `path`.
    fn count_and_take(&self, method: &Method, path: &str) -> Option<Action>;
    /// Resolves when the sandbox stops (ends a held `timeout` fault early).
    fn stopped(&self) -> watch::Receiver<bool>;
    /// An injected error status, in the provider's own error format.
    fn fault_response(&self, status: StatusCode) -> Response;
    /// The start of a plausible body, cut off: what a `malformed_json` fault sends.
    const TRUNCATED_BODY: &'static str;
}

/// Counts every provider request per endpoint, then applies a pending fault if one
/// matches. The control API under `/_sandbox` is neither counted nor faulted.
pub(crate) async fn track<H: FaultHost>(
    State(host): State<Arc<H>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sandbox") {
        return next.run(req).await;
    }
    let Some(action) = host.count_and_take(req.method(), &path) else {
        return next.run(req).await;
    };
    match action {
        Action::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            host.fault_response(status)
        }
        Action::Timeout(hold_ms) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(hold_ms)) => {}
                _ = wait_stop(host.stopped()) => {}
            }
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Action::Slow(millis) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            next.run(req).await
        }
        Action::MalformedJson => {
            let (mut parts, _) = next.run(req).await.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Response::from_parts(parts, Body::from(H::TRUNCATED_BODY))
        }
    }
}

/// `GET /crm/v3/objects/contacts/{id}`-style keys: ids and tokens become placeholders.
pub fn endpoint_key(method: &Method, path: &str) -> String {
    let mut segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let is_object = segments.get(1..4) == Some(&["crm", "v3", "objects"][..]);
    if let Some(seg) = segments.get_mut(5).filter(|_| is_object) {
        if !matches!(*seg, "batch" | "search") {
            *seg = "{id}";
        }
    }
    if matches!(segments.get(3), Some(&("refresh-tokens" | "access-tokens"))) {
        if let Some(seg) = segments.get_mut(4) {
            *seg = "{token}";
        }
    }
    format!("{method} {}", segments.join("/"))
}

/// Resolves once the sandbox is told to stop (or its handle is gone).
pub async fn wait_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_hide_ids_and_tokens() {
        let key = |m: Method, p: &str| endpoint_key(&m, p);
        assert_eq!(
            key(Method::GET, "/crm/v3/objects/contacts/12"),
            "GET /crm/v3/objects/contacts/{id}"
        );
        assert_eq!(
            key(Method::GET, "/crm/v3/objects/contacts"),
            "GET /crm/v3/objects/contacts"
        );
        assert_eq!(
            key(Method::POST, "/crm/v3/objects/companies/search"),
            "POST /crm/v3/objects/companies/search"
        );
        assert_eq!(
            key(Method::POST, "/crm/v3/objects/companies/batch/read"),
            "POST /crm/v3/objects/companies/batch/read"
        );
        assert_eq!(
            key(Method::DELETE, "/oauth/v1/refresh-tokens/abc"),
            "DELETE /oauth/v1/refresh-tokens/{token}"
        );
    }

    #[test]
    fn faults_are_used_up_in_order_and_by_prefix() {
        let mut queue = FaultQueue::default();
        queue.push(FaultSpec::Status {
            status: 500,
            count: 2,
            path_prefix: Some("/crm".into()),
        });
        queue.push(FaultSpec::MalformedJson {
            count: 1,
            path_prefix: None,
        });
        assert!(matches!(
            queue.take("/oauth/v1/token"),
            Some(Action::MalformedJson)
        ));
        assert!(matches!(
            queue.take("/crm/v3/objects/contacts"),
            Some(Action::Status(500))
        ));
        assert!(matches!(
            queue.take("/crm/v3/objects/contacts"),
            Some(Action::Status(500))
        ));
        assert!(queue.take("/crm/v3/objects/contacts").is_none());
        queue.push(FaultSpec::PartialBatch {
            fail_every: 2,
            count: Some(1),
        });
        assert_eq!(
            (queue.take_partial(), queue.take_partial()),
            (Some(2), None)
        );
    }
}
