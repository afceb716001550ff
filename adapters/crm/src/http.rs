//! The shared HTTP stack: one `reqwest::Client`, pacing with `governor`, and
//! retries with exponential backoff and full jitter.
//!
//! Retried: 429 (except daily quota), 5xx, timeouts, connection errors and a
//! 2xx whose JSON does not parse. Never retried: other 4xx; 401 becomes
//! [`CrmError::Unauthorized`] so the caller can refresh.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::CrmError;
use crate::outbound::{self, Guard};
use crate::types::Usage;
use crate::window::{RollingWindow, Slot};
use syncledger_domain::provider_text::clean;

/// Builds the one client every adapter uses. Redirects are not followed: no
/// provider API needs them, and following them would leak credentials. Names are
/// resolved through the guard's policy (see [`outbound::CheckedResolver`]).
pub fn build_client(
    connect_timeout: Duration,
    request_timeout: Duration,
    guard: &Guard,
) -> Result<reqwest::Client, CrmError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(outbound::resolver(guard.policy()))
        .build()
        .map_err(|e| CrmError::Config(format!("http client: {e}")))
}

/// How an executor paces its requests.
#[derive(Debug)]
pub enum Pacer {
    /// Evenly spaced, below the limit (`governor`): safe whatever kind of window
    /// the provider counts in.
    Steady(DefaultDirectRateLimiter),
    /// A rolling window used whole, kept in step with the provider's headers.
    Rolling(RollingWindow),
}

/// A limiter that keeps any rolling `interval` window at or under `max`
/// requests by spacing them evenly. It runs at 90% of `max` and allows no
/// bursts, because a burst plus the steady rate could exceed `max` in one window.
pub fn pacer(max: u32, interval: Duration) -> Option<Arc<Pacer>> {
    let effective = (max.saturating_mul(9) / 10).max(1);
    let period = interval.checked_div(effective)?;
    let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::MIN);
    Some(Arc::new(Pacer::Steady(RateLimiter::direct(quota))))
}

/// A pacer for a provider documented to count in a rolling window: all of
/// `max` per `interval`, bursts included (see [`RollingWindow`]).
pub fn rolling_pacer(max: u32, interval: Duration) -> Option<Arc<Pacer>> {
    RollingWindow::new(max, interval).map(|w| Arc::new(Pacer::Rolling(w)))
}

impl Pacer {
    /// Waits for this pacer's turn; a rolling window's slot is held until dropped.
    async fn admit(&self) -> Option<Slot<'_>> {
        match self {
            Pacer::Steady(limiter) => {
                limiter.until_ready().await;
                None
            }
            Pacer::Rolling(window) => Some(window.acquire().await),
        }
    }
}

/// Retry and backoff settings.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Full jitter: a uniform delay in `[0, min(max, base * 2^attempt)]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// How long to wait before trying a failed call again (its retry number
    /// `attempt + 1`): the backoff, or the provider's `Retry-After` when that is
    /// longer. `None` once every retry is spent.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        (attempt < self.max_retries)
            .then(|| retry_after.unwrap_or_default().max(self.backoff(attempt)))
    }
}

/// What a provider's rate-limit headers say about the current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowReading {
    pub max: u32,
    pub remaining: u32,
    /// The window length (or the time until it resets) in milliseconds; 0 if unknown.
    pub interval_ms: u32,
}

/// Reads a provider's rate-limit headers.
pub type RateHeaderReader = fn(&HeaderMap) -> Option<WindowReading>;

/// Decides a provider-specific failure from the status and raw body: `Some` ends
/// the call with that error (no retry), `None` leaves it to the generic rules.
pub type FailureClassifier = fn(StatusCode, &[u8]) -> Option<CrmError>;

/// One numeric header value.
pub fn header_u32(headers: &HeaderMap, name: &str) -> Option<u32> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// HubSpot: `X-HubSpot-RateLimit-Max`, `-Remaining`, `-Interval-Milliseconds`.
pub fn hubspot_rate_headers(headers: &HeaderMap) -> Option<WindowReading> {
    Some(WindowReading {
        max: header_u32(headers, "X-HubSpot-RateLimit-Max")?,
        remaining: header_u32(headers, "X-HubSpot-RateLimit-Remaining")?,
        interval_ms: header_u32(headers, "X-HubSpot-RateLimit-Interval-Milliseconds").unwrap_or(0),
    })
}

/// The last rate-limit headers the provider sent.
#[derive(Debug, Default)]
pub struct RateLimitState {
    remaining: AtomicU32,
    interval_ms: AtomicU32,
    max: AtomicU32,
}

impl RateLimitState {
    fn record(&self, headers: &HeaderMap, reader: Option<RateHeaderReader>) {
        match reader.and_then(|read| read(headers)) {
            Some(reading) => {
                self.max.store(reading.max, Ordering::Relaxed);
                self.remaining.store(reading.remaining, Ordering::Relaxed);
                self.interval_ms
                    .store(reading.interval_ms, Ordering::Relaxed);
            }
            None => self.max.store(0, Ordering::Relaxed),
        }
    }

    /// How long to hold back when the provider said the window is used up:
    /// the time one slot takes to free in a window of `max` requests.
    fn hold_back(&self) -> Option<Duration> {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 || self.remaining.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let interval = u64::from(self.interval_ms.load(Ordering::Relaxed));
        Some(Duration::from_millis(interval / u64::from(max)))
    }
}

/// Which pacing lane a request uses. Search requests pass both limiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    General,
    Search,
}

/// Sends requests through pacing and retries and classifies the outcome.
#[derive(Debug)]
pub struct Executor {
    client: reqwest::Client,
    guard: Guard,
    general: Option<Arc<Pacer>>,
    search: Option<Arc<Pacer>>,
    policy: RetryPolicy,
    rate_headers: Option<RateHeaderReader>,
    classifier: Option<FailureClassifier>,
    rate_state: RateLimitState,
    /// Requests sent, retries included: what the provider counts against its limits.
    requests: std::sync::atomic::AtomicU64,
    /// 429 answers waited out before a retry.
    rate_limited: std::sync::atomic::AtomicU64,
    /// The provider id its metrics are labelled with.
    provider: &'static str,
}

/// A successful response: its status, headers and parsed body (`None` when empty).
#[derive(Debug)]
pub struct Reply<T> {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Option<T>,
}

/// A pacing wait this long or longer is logged at INFO (shorter ones are routine).
const NOTICEABLE_WAIT: Duration = Duration::from_secs(1);

/// The largest response body read from a provider. A larger one is refused (as a
/// transport failure) instead of exhausting memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The failure of one attempt, and whether to try again.
enum Attempt {
    Retry {
        error: CrmError,
        after: Option<Duration>,
        /// The provider may have applied the request (timeout, 5xx, bad body).
        ambiguous: bool,
    },
    Fail(CrmError),
}

/// The common shape of provider error bodies.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    policy_name: Option<String>,
    /// Chatwoot's `{"error": "..."}` (read only when a string).
    #[serde(default)]
    error: Option<serde_json::Value>,
    /// RFC 7807-like bodies (VSCO Workspace): `title` and a `detail` that is text or
    /// an object of field → reason.
    #[serde(default)]
    title: Option<serde_json::Value>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

impl ErrorBody {
    /// The provider's own words: `message`, else `error`, else `title` with `detail`.
    fn text(&self) -> String {
        if let Some(message) = &self.message {
            return message.clone();
        }
        if let Some(serde_json::Value::String(error)) = &self.error {
            return error.clone();
        }
        let title = match &self.title {
            Some(serde_json::Value::String(t)) => t.clone(),
            _ => String::new(),
        };
        let detail = match &self.detail {
            Some(serde_json::Value::String(d)) => d.clone(),
            Some(serde_json::Value::Object(fields)) => fields
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("invalid")))
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
        };
        match (title.is_empty(), detail.is_empty()) {
            (_, true) => title,
            (true, false) => detail,
            (false, false) => format!("{title}: {detail}"),
        }
    }
}

impl Executor {
    /// `client` should come from [`build_client`] with the same `guard`: the guard
    /// checks each URL before it is requested, the client's resolver each name.
    pub fn new(
        client: reqwest::Client,
        guard: Guard,
        general: Option<Arc<Pacer>>,
        search: Option<Arc<Pacer>>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            client,
            guard,
            general,
            search,
            policy,
            rate_headers: None,
            classifier: None,
            rate_state: RateLimitState::default(),
            requests: std::sync::atomic::AtomicU64::new(0),
            rate_limited: std::sync::atomic::AtomicU64::new(0),
            provider: "custom",
        }
    }

    /// Labels this executor's metrics with `provider` (a catalogue id; `custom` until
    /// set).
    #[must_use]
    pub fn with_provider(mut self, provider: &'static str) -> Self {
        self.provider = provider;
        self
    }

    /// Reads the provider's rate-limit headers and holds back when the window is used up.
    #[must_use]
    pub fn with_rate_headers(mut self, reader: RateHeaderReader) -> Self {
        self.rate_headers = Some(reader);
        self
    }

    /// Classifies provider-specific failures before the generic rules.
    #[must_use]
    pub fn with_classifier(mut self, classifier: FailureClassifier) -> Self {
        self.classifier = Some(classifier);
        self
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The outbound rule this executor's requests follow.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// When and how often this executor tries a failed call again.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// How many requests this executor has sent (retries included), and how many 429
    /// answers it waited out.
    pub fn usage(&self) -> Usage {
        Usage {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// Sends the request `build` makes (once per attempt) and parses the body.
    pub async fn send<T: DeserializeOwned>(
        &self,
        lane: Lane,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply<T>, CrmError> {
        self.send_with(lane, true, false, parse_success, build)
            .await
    }

    /// A batch write whose provider answers a 400 with one result per record when it
    /// refused every record (Zoho): such a 400 comes back as a reply, its body parsed
    /// as `T`; any other failure is classified as usual. `idempotent: false` retries
    /// like [`Executor::send_non_idempotent`].
    pub async fn send_batch<T: DeserializeOwned>(
        &self,
        lane: Lane,
        idempotent: bool,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply<T>, CrmError> {
        self.send_with(lane, idempotent, true, parse_batch, build)
            .await
    }

    /// Like [`Executor::send`] for requests that must not run twice (creates):
    /// retries only failures where the provider surely did nothing (429,
    /// connection refused), never timeouts or 5xx.
    pub async fn send_non_idempotent<T: DeserializeOwned>(
        &self,
        lane: Lane,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply<T>, CrmError> {
        self.send_with(lane, false, false, parse_success, build)
            .await
    }

    /// [`Executor::send_non_idempotent`] for a provider whose success body is not JSON
    /// (Light Blue answers a numeric status as text): the body comes back as bytes,
    /// bounded like any other, for the adapter to read.
    pub async fn send_raw_non_idempotent(
        &self,
        lane: Lane,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply<Vec<u8>>, CrmError> {
        self.send_with(lane, false, false, raw_success, build).await
    }

    async fn send_with<T>(
        &self,
        lane: Lane,
        retry_ambiguous: bool,
        per_record_400: bool,
        parse: Parser<T>,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply<T>, CrmError> {
        let mut attempt = 0;
        loop {
            let slots = self.pace(lane).await;
            let outcome = self
                .attempt(build(&self.client), attempt + 1, per_record_400, parse)
                .await;
            // The response (or failure) is in: the slots count from now.
            drop(slots);
            match outcome {
                Ok(reply) => return Ok(reply),
                Err(Attempt::Fail(error)) => return Err(error),
                Err(Attempt::Retry {
                    error,
                    after,
                    ambiguous,
                }) => {
                    let delay = match self.policy.delay(attempt, after) {
                        Some(delay) if !ambiguous || retry_ambiguous => delay,
                        _ => return Err(error),
                    };
                    if matches!(error, CrmError::RateLimited { .. }) {
                        self.rate_limited.fetch_add(1, Ordering::Relaxed);
                    }
                    // INFO: a run that stalls on a provider says why (with the run's
                    // span: its id and integration). The error names no URL or secret.
                    tracing::info!(
                        attempt = attempt + 1,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "provider call failed; retrying"
                    );
                    crate::metrics::retry_wait(self.provider, delay);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Waits until the request may go; the returned slots are held until its
    /// response has arrived.
    async fn pace(&self, lane: Lane) -> [Option<Slot<'_>>; 2] {
        let started = std::time::Instant::now();
        let rolling = matches!(self.general.as_deref(), Some(Pacer::Rolling(_)));
        let mut governed =
            self.general.is_some() || (lane == Lane::Search && self.search.is_some());
        if !rolling {
            // A rolling window follows the headers itself (`observe`).
            if let Some(wait) = self.rate_state.hold_back() {
                governed = true;
                tokio::time::sleep(wait).await;
            }
        }
        let slots = self.take_slots(lane).await;
        let waited = started.elapsed();
        if governed {
            crate::metrics::pacing_wait(self.provider, waited);
        }
        // Pacing spaces every request a little; a wait a person would notice is said.
        if waited >= NOTICEABLE_WAIT {
            tracing::info!(
                waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                "waited for the provider's rate limit"
            );
        }
        slots
    }

    /// The pacers' slots for a request in `lane`, waiting for them.
    async fn take_slots(&self, lane: Lane) -> [Option<Slot<'_>>; 2] {
        let search = match (&self.search, lane) {
            (Some(pacer), Lane::Search) => pacer.admit().await,
            _ => None,
        };
        let general = match &self.general {
            Some(pacer) => pacer.admit().await,
            None => None,
        };
        [search, general]
    }

    /// Keeps a rolling window in step with what the provider says of its budget.
    fn follow_headers(&self, headers: &HeaderMap) {
        let (Some(Pacer::Rolling(window)), Some(read)) = (
            self.general.as_deref(),
            self.rate_headers.and_then(|read| read(headers)),
        ) else {
            return;
        };
        if read.interval_ms > 0 {
            window.adopt(read.max, Duration::from_millis(u64::from(read.interval_ms)));
        }
        window.observe(read.max.saturating_sub(read.remaining));
    }

    async fn attempt<T>(
        &self,
        request: RequestBuilder,
        attempts: u32,
        per_record_400: bool,
        parse: Parser<T>,
    ) -> Result<Reply<T>, Attempt> {
        let request = request.build().map_err(|_| {
            Attempt::Fail(CrmError::Config("the request could not be built".into()))
        })?;
        // Every URL, including Link-header and cursor URLs a provider sent back.
        self.guard
            .check_url("url", request.url())
            .map_err(Attempt::Fail)?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let retry = attempts > 1;
        let mut response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                crate::metrics::request(self.provider, None, retry);
                return Err(transport(&e, attempts));
            }
        };
        let status = response.status();
        crate::metrics::request(self.provider, Some(status.as_u16()), retry);
        self.rate_state
            .record(response.headers(), self.rate_headers);
        self.follow_headers(response.headers());
        let retry_after = retry_after(response.headers());
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(&e, attempts))?
        {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Attempt::Fail(CrmError::Malformed(format!(
                    "the response body is larger than {MAX_BODY_BYTES} bytes"
                ))));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() || (per_record_400 && status == StatusCode::BAD_REQUEST) {
            return parse(status, headers, &bytes);
        }
        if let Some(error) = self
            .classifier
            .and_then(|classify| classify(status, &bytes))
        {
            return Err(Attempt::Fail(error));
        }
        Err(classify_failure(status, &bytes, retry_after, attempts))
    }
}

/// A failure to exchange the request. The text is the same whatever happened (see
/// [`CrmError::Transport`]); only the retry decision and the debug log look closer.
/// The log names the kind of failure, never reqwest's text, which holds the URL.
fn transport(error: &reqwest::Error, attempts: u32) -> Attempt {
    if let Some(refused) = outbound::refusal_of(error) {
        return Attempt::Fail(refused);
    }
    tracing::debug!(
        attempts,
        connect = error.is_connect(),
        timeout = error.is_timeout(),
        body = error.is_body() || error.is_decode(),
        "provider transport failure"
    );
    Attempt::Retry {
        error: CrmError::Transport { attempts },
        after: None,
        ambiguous: !error.is_connect(),
    }
}

/// How a successful response's body is read.
type Parser<T> = fn(StatusCode, HeaderMap, &[u8]) -> Result<Reply<T>, Attempt>;

/// A batch write's answer: a success, or a 400 carrying per-record results. A 400
/// whose body is not per-record results is classified like any other failure.
fn parse_batch<T: DeserializeOwned>(
    status: StatusCode,
    headers: HeaderMap,
    bytes: &[u8],
) -> Result<Reply<T>, Attempt> {
    if status.is_success() {
        return parse_success(status, headers, bytes);
    }
    match serde_json::from_slice(bytes) {
        Ok(body) => Ok(Reply {
            status,
            headers,
            body: Some(body),
        }),
        Err(_) => Err(classify_failure(status, bytes, None, 1)),
    }
}

/// A successful response's body as it came.
fn raw_success(
    status: StatusCode,
    headers: HeaderMap,
    bytes: &[u8],
) -> Result<Reply<Vec<u8>>, Attempt> {
    Ok(Reply {
        status,
        headers,
        body: Some(bytes.to_vec()),
    })
}

fn parse_success<T: DeserializeOwned>(
    status: StatusCode,
    headers: HeaderMap,
    bytes: &[u8],
) -> Result<Reply<T>, Attempt> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Reply {
            status,
            headers,
            body: None,
        });
    }
    match serde_json::from_slice(bytes) {
        Ok(body) => Ok(Reply {
            status,
            headers,
            body: Some(body),
        }),
        Err(e) => Err(Attempt::Retry {
            error: CrmError::Malformed(format!("{status}: {e}")),
            after: None,
            ambiguous: true,
        }),
    }
}

fn classify_failure(
    status: StatusCode,
    bytes: &[u8],
    retry_after: Option<Duration>,
    attempts: u32,
) -> Attempt {
    let body: ErrorBody = serde_json::from_slice(bytes).unwrap_or_default();
    match status.as_u16() {
        401 => Attempt::Fail(CrmError::Unauthorized),
        429 if body.policy_name.as_deref() == Some("DAILY") => Attempt::Fail(
            CrmError::QuotaExhausted(clean(body.message.as_deref().unwrap_or("daily limit"))),
        ),
        429 => Attempt::Retry {
            error: CrmError::RateLimited { attempts },
            after: retry_after,
            ambiguous: false,
        },
        code @ 500..=599 => Attempt::Retry {
            error: CrmError::Server {
                status: code,
                attempts,
            },
            after: retry_after,
            ambiguous: true,
        },
        code => Attempt::Fail(CrmError::Rejected {
            status: code,
            category: clean(body.category.as_deref().unwrap_or_default()),
            message: clean(&body.text()),
        }),
    }
}

/// `Retry-After` in seconds (HTTP dates are not used by the providers here).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, body: &str) -> Attempt {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        classify_failure(status, body.as_bytes(), None, 1)
    }

    #[test]
    fn daily_limit_is_quota_exhaustion_not_retried() {
        let body = r#"{"status":"error","message":"You have reached your daily limit.","policyName":"DAILY"}"#;
        let attempt = failure(429, body);
        assert!(matches!(
            attempt,
            Attempt::Fail(CrmError::QuotaExhausted(_))
        ));
    }

    #[test]
    fn rolling_limit_and_server_errors_are_retried() {
        let body = r#"{"policyName":"TEN_SECONDLY_ROLLING"}"#;
        assert!(matches!(failure(429, body), Attempt::Retry { .. }));
        assert!(matches!(failure(503, ""), Attempt::Retry { .. }));
    }

    #[test]
    fn client_errors_fail_at_once() {
        assert!(matches!(
            failure(401, ""),
            Attempt::Fail(CrmError::Unauthorized)
        ));
        let body = r#"{"message":"gone","category":"OBJECT_NOT_FOUND"}"#;
        let attempt = failure(404, body);
        assert!(matches!(
            attempt,
            Attempt::Fail(CrmError::Rejected { status: 404, .. })
        ));
    }

    #[test]
    fn refusals_carry_the_providers_words_in_its_own_shape() {
        let message = |status: u16, body: &str| match failure(status, body) {
            Attempt::Fail(CrmError::Rejected { message, .. }) => message,
            _ => "not a refusal".into(),
        };
        assert_eq!(
            message(404, r#"{"error":"Resource could not be found"}"#),
            "Resource could not be found"
        );
        let validation = r#"{"type":"validation-error","title":"Validation failed","detail":{"email":"is not valid"},"status":400}"#;
        assert_eq!(
            message(400, validation),
            "Validation failed: email: is not valid"
        );
        // An `error` object (an OAuth-style or nested body) is not mistaken for text.
        assert_eq!(message(400, r#"{"error":{"code":1}}"#), "");
        assert_eq!(message(422, r#"{"message":"m","error":"e"}"#), "m");
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let policy = RetryPolicy {
            max_retries: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
        };
        for attempt in 0..10 {
            assert!(policy.backoff(attempt) <= Duration::from_millis(800));
        }
    }
}
