//! Whether this process can serve traffic now: the store answers a query, JetStream's
//! connection is up (when the process publishes there), and every projection is within
//! the allowed lag of the log. For `GET /v1/ready`; liveness (`/v1/health`) asks nothing.

use crate::app::Engine;
use chrono::Utc;
use std::time::Duration;
use syncledger_projections::lag;

/// How long one check may take before it counts as failed (a store that hangs must not
/// hang the probe).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One part of the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `store`, `nats`, or `projection <name>`.
    pub part: String,
    pub ready: bool,
    /// What was found, for a person: "answered", "4 s behind", the error's kind.
    pub detail: String,
}

impl Check {
    fn new(part: impl Into<String>, ready: bool, detail: impl Into<String>) -> Check {
        Check {
            part: part.into(),
            ready,
            detail: detail.into(),
        }
    }
}

impl Engine {
    /// Every check, in a fixed order: the store, NATS (when configured), then each
    /// projection, failing when its oldest unapplied event has waited longer than
    /// `max_lag`.
    pub async fn readiness(&self, max_lag: Duration) -> Vec<Check> {
        let mut checks = Vec::new();
        let store = tokio::time::timeout(CHECK_TIMEOUT, self.store.feed().head()).await;
        let store_up = matches!(store, Ok(Ok(_)));
        checks.push(match store {
            Ok(Ok(_)) => Check::new("store", true, "answered"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the store did not answer");
                Check::new("store", false, "the query failed")
            }
            Err(_) => Check::new("store", false, "no answer within 2 s"),
        });
        if let Some(nats) = &self.nats {
            checks.push(if nats.connected() {
                Check::new("nats", true, "connected")
            } else {
                Check::new("nats", false, "not connected (reconnecting)")
            });
        }
        if !store_up {
            checks.push(Check::new(
                "projections",
                false,
                "not checked: the store did not answer",
            ));
            return checks;
        }
        let now = Utc::now();
        let allowed = chrono::Duration::from_std(max_lag).unwrap_or(chrono::Duration::MAX);
        match tokio::time::timeout(CHECK_TIMEOUT, lag::lags(&self.store)).await {
            Ok(Ok(lags)) => checks.extend(lags.iter().map(|l| {
                let behind = l.behind(now);
                let part = format!("projection {}", l.projection);
                match l.oldest_unapplied {
                    None => Check::new(part, true, "caught up"),
                    Some(_) => Check::new(
                        part,
                        behind <= allowed,
                        format!("{} s behind", behind.num_seconds()),
                    ),
                }
            })),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: projection checkpoints could not be read");
                checks.push(Check::new(
                    "projections",
                    false,
                    "the checkpoints could not be read",
                ));
            }
            Err(_) => checks.push(Check::new("projections", false, "no answer within 2 s")),
        }
        checks
    }
}
