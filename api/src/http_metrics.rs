//! The HTTP series of `GET /metrics`: every request counted by its route template, method
//! and status, with its latency. Each application keeps its own (a recorder of its own,
//! not the process's global one), so two servers in one process (the tests) each count
//! exactly their own requests; the rest of the metrics are the process's (`metrics.rs`).

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Counter: HTTP requests answered, by `route` (the matched route template, `unmatched`
/// for none), `method` and `status`.
pub const HTTP_REQUESTS: &str = "syncledger_http_requests_total";
/// Histogram: time to the response head, by `route` and `method`.
pub const HTTP_DURATION: &str = "syncledger_http_request_duration_seconds";

/// Request latencies: 1 ms to 10 s.
pub const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One application's HTTP series; nothing is counted until [`HttpMetrics::enable`].
#[derive(Default)]
pub struct HttpMetrics {
    recorder: OnceLock<PrometheusRecorder>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("enabled", &self.recorder.get().is_some())
            .finish()
    }
}

impl HttpMetrics {
    /// Starts counting (the server serves `/metrics`).
    pub fn enable(&self) {
        self.recorder.get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let recorder = match builder
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &HTTP_BUCKETS)
            {
                Ok(builder) => builder.build_recorder(),
                // Refused only for an empty list of buckets.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            metrics::with_local_recorder(&recorder, || {
                metrics::describe_counter!(
                    HTTP_REQUESTS,
                    "HTTP requests answered, by route template, method and status."
                );
                metrics::describe_histogram!(
                    HTTP_DURATION,
                    "Seconds from a request's arrival to its response head, by route template and method."
                );
            });
            recorder
        });
    }

    /// The series in the text format (empty until enabled).
    pub fn render(&self) -> String {
        self.recorder
            .get()
            .map(|r| r.handle().render())
            .unwrap_or_default()
    }

    /// Folds recorded latencies into their buckets (rendering does it too).
    pub fn upkeep(&self) {
        if let Some(r) = self.recorder.get() {
            r.handle().run_upkeep();
        }
    }

    fn record(&self, route: String, method: &'static str, status: u16, seconds: f64) {
        let Some(recorder) = self.recorder.get() else {
            return;
        };
        metrics::with_local_recorder(recorder, || {
            metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string())
                .increment(1);
            metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method)
                .record(seconds);
        });
    }

    fn enabled(&self) -> bool {
        self.recorder.get().is_some()
    }
}

/// Request middleware: counts each request by its route template (never the raw path:
/// ids would make the series unbounded), method and status, and records its latency.
pub async fn track(State(http): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    if !http.enabled() {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    http.record(
        route,
        method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// The method as a label: the standard ones by name, anything else as `other` (a client
/// may send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_are_other() {
        let brew = Method::from_bytes(b"BREW").unwrap_or(Method::GET);
        assert_eq!(method_label(&brew), "other");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }

    #[test]
    fn nothing_is_counted_until_enabled() {
        let http = HttpMetrics::default();
        http.record("/x".into(), "GET", 200, 0.1);
        assert_eq!(http.render(), "");
        http.enable();
        http.record("/x".into(), "GET", 200, 0.1);
        let text = http.render();
        assert!(
            text.contains(
                r#"syncledger_http_requests_total{route="/x",method="GET",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"syncledger_http_request_duration_seconds_bucket{route="/x",method="GET",le="0.1"} 1"#),
            "{text}"
        );
    }
}
