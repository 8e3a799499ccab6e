//! Prometheus metrics, the per-request span and `X-Request-Id`, and the operator gauges.
//!
//! Metrics go through the `metrics` facade. The recorder is installed only when something
//! serves `/metrics` (`Config::metrics_enabled`); without it every counter below is a no-op,
//! so a server that exports nothing pays nothing. Label values are fixed words or route
//! templates, never raw input, so the number of series stays bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, State};
use axum::http::{HeaderValue, Request, header::HeaderName};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::app::AppState;
use crate::store::Db;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Latency buckets (seconds): discovery answers in well under a millisecond, a password login
/// takes tens of milliseconds of argon2.
const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (the `metrics` facade has one per process) and
/// returns its handle; `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    describe();
                    gauge!("clef_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "clef_http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "clef_http_request_duration_seconds",
        "HTTP request latency by route template and method"
    );
    describe_counter!("clef_logins_total", "Login factors checked, by method and outcome");
    describe_counter!("clef_logins_completed_total", "Logins that started a session");
    describe_counter!("clef_lockouts_total", "Accounts locked after repeated failures, by kind");
    describe_counter!("clef_codes_sent_total", "Emailed one-time codes and links sent");
    describe_counter!("clef_mails_sent_total", "Mails handed to the SMTP server or the outbox");
    describe_counter!("clef_mails_failed_total", "Mail sends that failed (each retry counts)");
    describe_counter!("clef_mails_dropped_total", "Mails given up after every retry");
    describe_counter!("clef_tokens_issued_total", "Token responses sent, by grant type");
    describe_counter!("clef_requests_refused_total", "Requests refused before any work, by reason");
    describe_counter!("clef_audit_events_purged_total", "Security events deleted by the retention purge");
    describe_gauge!("clef_db_pool_connections", "Database pool connections, open and idle");
    describe_gauge!("clef_db_pool_max_connections", "Database pool size limit");
    describe_gauge!("clef_users", "Users by state: total, verified, pending_verification");
    describe_gauge!(
        "clef_users_active_24h",
        "Users who logged in or used a session in the last 24 hours"
    );
}

/// The text exposition of every metric, with the pool gauges read now (cheap, in memory).
pub fn render(db: &Db) -> Option<String> {
    let handle = HANDLE.get()?.as_ref()?;
    let (open, idle, max) = db.pool_stats();
    gauge!("clef_db_pool_connections", "state" => "open").set(open as f64);
    gauge!("clef_db_pool_connections", "state" => "idle").set(idle as f64);
    gauge!("clef_db_pool_max_connections").set(max as f64);
    // Histograms keep their samples until drained; upkeep once per scrape is enough.
    handle.run_upkeep();
    Some(handle.render())
}

/// GET /metrics.
pub async fn metrics_get(State(app): State<AppState>) -> Response {
    match render(&app.db) {
        Some(body) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            body,
        )
            .into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// The router of the separate metrics listener (`CLEF_METRICS_LISTEN`).
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(crate::paths::METRICS, axum::routing::get(metrics_get))
        .with_state(state)
}

/// The operator figures: one cheap query every minute, never on the scrape.
pub async fn refresh_user_gauges(db: &Db, now: i64) {
    match db.user_counts(now - 86_400).await {
        Ok(c) => {
            gauge!("clef_users", "state" => "total").set(c.total as f64);
            gauge!("clef_users", "state" => "verified").set(c.verified as f64);
            gauge!("clef_users", "state" => "pending_verification").set((c.total - c.verified) as f64);
            gauge!("clef_users_active_24h").set(c.active as f64);
        }
        Err(e) => tracing::warn!(error = %e, "user gauges not refreshed"),
    }
}

// The counters, named once here so call sites stay one line.

/// A login factor checked: `outcome` is success, failure, refused (a limit) or locked.
pub fn login(method: &'static str, outcome: &'static str) {
    counter!("clef_logins_total", "method" => method, "outcome" => outcome).increment(1);
}

pub fn login_completed() {
    counter!("clef_logins_completed_total").increment(1);
}

/// `kind`: password (failed passwords) or codes (wrong emailed codes).
pub fn lockout(kind: &'static str) {
    counter!("clef_lockouts_total", "kind" => kind).increment(1);
}

pub fn code_sent() {
    counter!("clef_codes_sent_total").increment(1);
}

pub fn mail_sent() {
    counter!("clef_mails_sent_total").increment(1);
}

pub fn mail_failed() {
    counter!("clef_mails_failed_total").increment(1);
}

pub fn mail_dropped() {
    counter!("clef_mails_dropped_total").increment(1);
}

/// A token response; `grant_type` has been checked against the supported list.
pub fn token_issued(grant_type: &str) {
    let g = crate::oauth::token::GRANT_TYPES
        .iter()
        .copied()
        .find(|g| *g == grant_type)
        .unwrap_or("other");
    counter!("clef_tokens_issued_total", "grant_type" => g).increment(1);
}

/// `reason`: csrf, rate_limit (any 429 answer), client_auth.
pub fn refused(reason: &'static str) {
    counter!("clef_requests_refused_total", "reason" => reason).increment(1);
}

pub fn audit_purged(n: u64) {
    counter!("clef_audit_events_purged_total").increment(n);
}

/// A request id from a trusted proxy is kept only if it is short and plain, so it cannot
/// forge log lines or carry data; otherwise we make one.
fn acceptable_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(s)
}

/// A random per-process prefix and a counter: unique across instances, no syscall per request.
fn new_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| crate::secret::random_token(6));
    format!("{prefix}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn method_label(m: &axum::http::Method) -> &'static str {
    match *m {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Around every request: a span carrying the request id (so every log line of the request
/// names it), the `X-Request-Id` response header, and the route's count and latency.
pub async fn layer(State(app): State<AppState>, req: Request<axum::body::Body>, next: Next) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let trusted = app.config.trusted_proxies.iter().any(|n| n.contains(&peer));
    let id = match req.headers().get(&REQUEST_ID).filter(|_| trusted).and_then(acceptable_id) {
        Some(s) => s.to_owned(),
        None => new_id(),
    };
    // The template (`/account/sessions/{id}`), never the raw path: bounded label values.
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = method_label(req.method());
    let span = tracing::info_span!("request", request_id = %id, method, route = route.as_deref().unwrap_or("-"));
    let mut resp = next.run(req).instrument(span.clone()).await;
    if resp.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
        // Every limit answers 429, whichever handler applied it: logged and counted here once.
        span.in_scope(|| tracing::info!(status = 429, "request refused: rate limit or lockout"));
        refused("rate_limit");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    if app.config.metrics_enabled() {
        let route = route.unwrap_or_else(|| "unmatched".to_owned());
        let status = resp.status().as_u16().to_string();
        counter!("clef_http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
        histogram!("clef_http_request_duration_seconds", "route" => route, "method" => method).record(started.elapsed().as_secs_f64());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        for good in ["abc", "A-b_c.9", &"x".repeat(64)] {
            assert_eq!(acceptable_id(&HeaderValue::from_str(good).unwrap()), Some(good), "{good}");
        }
        for bad in ["", "a b", "a\"b", "é", &"x".repeat(65), "a\tb", "id=1;x"] {
            let Ok(v) = HeaderValue::from_str(bad) else { continue };
            assert_eq!(acceptable_id(&v), None, "{bad:?}");
        }
    }

    #[test]
    fn made_ids_are_unique_and_acceptable() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(acceptable_id(&HeaderValue::from_str(&a).unwrap()).is_some());
    }
}
