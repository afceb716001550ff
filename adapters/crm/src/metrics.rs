//! What the adapters count about their provider calls, through the `metrics` facade (a
//! no-op until the process installs a recorder; `syncledger serve` does when
//! `metrics_addr` is set). Labels are the provider id (a catalogue id, a bounded set) and
//! values of bounded sets; never an integration, a workspace or a URL.

use std::time::Duration;

/// Counter: provider HTTP requests answered (or failed in transport), by `provider`,
/// `status` (the HTTP status code, or `error` when no answer came) and `retry`
/// (`true` when the request was a retry of a failed one).
pub const PROVIDER_REQUESTS: &str = "syncledger_provider_requests_total";
/// Counter: 429 answers from the provider, by `provider`.
pub const PROVIDER_RATE_LIMITED: &str = "syncledger_provider_rate_limited_total";
/// Histogram: how long each request waited for its turn (the client-side pacer, and the
/// provider's announced window when it said it was used up), by `provider`. Its `_sum`
/// is the time spent waiting on pacing.
pub const PROVIDER_PACING_WAIT: &str = "syncledger_provider_pacing_wait_seconds";
/// Histogram: the backoff before each retry (a 429's `Retry-After` included), by
/// `provider`.
pub const PROVIDER_RETRY_WAIT: &str = "syncledger_provider_retry_wait_seconds";

/// Every metric of this crate, for the catalogue the server describes and documents.
pub const ALL: [&str; 4] = [
    PROVIDER_REQUESTS,
    PROVIDER_RATE_LIMITED,
    PROVIDER_PACING_WAIT,
    PROVIDER_RETRY_WAIT,
];

/// One request's answer: its status code, or `None` for a transport failure.
pub(crate) fn request(provider: &'static str, status: Option<u16>, retry: bool) {
    let rate_limited = status == Some(429);
    let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    let retry = if retry { "true" } else { "false" };
    metrics::counter!(PROVIDER_REQUESTS, "provider" => provider, "status" => status, "retry" => retry)
        .increment(1);
    if rate_limited {
        metrics::counter!(PROVIDER_RATE_LIMITED, "provider" => provider).increment(1);
    }
}

/// Time a request waited for its turn (only requests that a pacer or the provider's
/// window governs are recorded).
pub(crate) fn pacing_wait(provider: &'static str, waited: Duration) {
    metrics::histogram!(PROVIDER_PACING_WAIT, "provider" => provider).record(waited.as_secs_f64());
}

/// Time a retry waited.
pub(crate) fn retry_wait(provider: &'static str, waited: Duration) {
    metrics::histogram!(PROVIDER_RETRY_WAIT, "provider" => provider).record(waited.as_secs_f64());
}
