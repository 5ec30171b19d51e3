//! `candlelog run`'s HTTP side: `/metrics` (the Prometheus exposition format: the textfile's
//! families from [`super::metrics::render_with`], plus the service's stream families) and
//! `/health` (the checks of `health --json`: 200 for OK/WARNING, 503 for CRITICAL/UNKNOWN).
//!
//! ```text
//!  serve loop ──publish──► Live (counters, a mutex held for a copy)
//!                               │
//!  GET /metrics ─► blocking thread: render_with(paths, Live) ─► text
//!  GET /health  ─► blocking thread: health(paths) as a reader ─► JSON + status
//! ```
//!
//! The server runs on its own thread and runtime, so a slow scrape never stalls the stream or
//! the commits; what it reads it reads as any reader does (the head file, the index and the
//! projection read-only, pinned at a committed state), never taking the writer's lock. One
//! scrape is computed at a time: a burst of requests costs one core at most.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::health::{Check, HealthOptions, HealthReport, Status, health};
use super::metrics::{ServiceSample, render_with};
use crate::error::{Error, Result};
use crate::event::Interval;
use crate::store::Paths;

/// The address `candlelog run` serves on unless told otherwise: loopback only. 9469 lies in
/// Prometheus's exporter range, where scrape configs and firewalls expect exporters, away
/// from the defaults of Prometheus itself, node_exporter and the other common ones.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
/// How long in-flight requests get to finish when the service stops (its stop must take
/// under 5 s in all: the stream's own grace comes first).
const STOP_GRACE: Duration = Duration::from_millis(500);
/// A health report is served again instead of being recomputed while it is younger than
/// this, or than `HEALTH_COST_SHARE` times what it took to compute, whichever is longer:
/// health reads the whole projection (quick_check, the gaps) and walks the chain, seconds on
/// a large store (docs/performance.md), so probes from several monitors cost one
/// computation and /health never takes more than about a fifth of a core.
const HEALTH_REUSE: Duration = Duration::from_secs(5);
const HEALTH_COST_SHARE: u32 = 4;
/// The exposition format's content type (text format 0.0.4).
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the running service publishes for `/metrics`: the serve loop writes, scrapes read.
#[derive(Debug, Default)]
pub struct Live {
    sample: Mutex<ServiceSample>,
}

impl Live {
    pub fn publish(&self, sample: ServiceSample) {
        if let Ok(mut s) = self.sample.lock() {
            *s = sample;
        }
    }
    pub fn sample(&self) -> ServiceSample {
        self.sample.lock().map(|s| *s).unwrap_or_default()
    }
}

/// What the handlers read.
pub struct HttpContext {
    pub paths: Paths,
    /// Symbols the config asks for per interval (`candlelog_configured_symbols`).
    pub configured: Vec<(Interval, usize)>,
    /// Health's thresholds; `now_ms` is taken afresh at each request.
    pub health: HealthOptions,
    pub live: Arc<Live>,
}

struct Shared {
    ctx: HttpContext,
    /// One scrape at a time.
    busy: Mutex<()>,
    /// The last health report, when it was computed and how long that took.
    health: Mutex<Option<(std::time::Instant, Duration, HealthReport)>>,
}

/// A running HTTP server; [`HttpServer::stop`] ends it (dropping it only detaches the thread).
pub struct HttpServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `"off"`: none; otherwise a socket address, e.g. `127.0.0.1:9469` or `[::1]:9469`.
pub fn parse_listen(text: &str) -> std::result::Result<Option<SocketAddr>, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|e| format!("invalid listen address {text:?}: {e} (use e.g. 127.0.0.1:9469, [::1]:9469 or off)"))
}

impl HttpServer {
    /// Binds `addr` now (a taken or foreign address fails here, before any candle is
    /// streamed) and serves on a thread of its own.
    pub fn start(addr: SocketAddr, ctx: HttpContext) -> Result<HttpServer> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::Failed(format!("cannot serve /metrics and /health on {addr}: {e}; free the port or set [run] listen (or --listen) to another address, or off"))
        })?;
        let bound = listener.local_addr().map_err(|e| Error::io("read the address of", addr.to_string(), e))?;
        listener.set_nonblocking(true).map_err(|e| Error::io("set non-blocking", addr.to_string(), e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the HTTP server's runtime", "", e))?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared { ctx, busy: Mutex::new(()), health: Mutex::new(None) });
        let app = axum::Router::new().route("/metrics", get(metrics)).route("/health", get(healthz)).with_state(shared);
        let thread = std::thread::Builder::new()
            .name("candlelog-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!("HTTP server on {bound}: {e}"),
                    };
                    let mut grace = stopped.clone();
                    let server = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { while stopped.changed().await.is_ok() && !*stopped.borrow() {} });
                    tokio::select! {
                        r = server => if let Err(e) = r { tracing::error!("HTTP server on {bound}: {e}") },
                        // Requests still running STOP_GRACE after the stop are cut off.
                        _ = async { while grace.changed().await.is_ok() && !*grace.borrow() {} tokio::time::sleep(STOP_GRACE).await } => {}
                    }
                });
                // A health report still being computed is left to finish on its own: dropping
                // the runtime would wait for it, and the service's stop must not.
                runtime.shutdown_background();
            })
            .map_err(|e| Error::io("start the HTTP server's thread", "", e))?;
        Ok(HttpServer { addr: bound, stop, thread: Some(thread) })
    }

    /// The address bound (the port chosen when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (at most `STOP_GRACE`), joins the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        let _one = shared.busy.lock();
        let sample = shared.ctx.live.sample();
        render_with(&shared.ctx.paths, &shared.ctx.configured, Some(&sample))
    })
    .await;
    match text {
        Ok(Ok(text)) => (StatusCode::OK, [(header::CONTENT_TYPE, METRICS_TYPE)], text).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics not rendered: {e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics not rendered: {e}\n")).into_response(),
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let report = tokio::task::spawn_blocking(move || {
        let _one = shared.busy.lock();
        if let Ok(last) = shared.health.lock()
            && let Some((at, took, report)) = last.as_ref()
            && at.elapsed() < HEALTH_REUSE.max(*took * HEALTH_COST_SHARE)
        {
            return Ok::<_, Error>(report.clone());
        }
        let start = std::time::Instant::now();
        let mut o = shared.ctx.health.clone();
        o.now_ms = crate::log::writer::now_ms();
        let report = health(&shared.ctx.paths, &o)?;
        if let Ok(mut last) = shared.health.lock() {
            *last = Some((std::time::Instant::now(), start.elapsed(), report.clone()));
        }
        Ok(report)
    })
    .await;
    let report = match report {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => unknown(e.to_string()),
        Err(e) => unknown(format!("the health check stopped: {e}")),
    };
    let code = match report.status {
        Status::Ok | Status::Warning => StatusCode::OK,
        Status::Critical | Status::Unknown => StatusCode::SERVICE_UNAVAILABLE,
    };
    match serde_json::to_string_pretty(&report) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body + "\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("health report not serialised: {e}\n")).into_response(),
    }
}

/// The report when health itself failed: UNKNOWN, with why.
fn unknown(message: String) -> HealthReport {
    let check = Check { name: "health", status: Status::Unknown, value: String::new(), threshold: String::new(), message };
    HealthReport { status: Status::Unknown, checks: vec![check] }
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("off").unwrap(), None);
        assert_eq!(parse_listen("127.0.0.1:9469").unwrap().unwrap().port(), 9469);
        assert!(parse_listen("[::1]:9469").unwrap().unwrap().is_ipv6());
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen(super::DEFAULT_LISTEN).unwrap().unwrap().ip().is_loopback());
    }
}
