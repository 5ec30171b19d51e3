//! The REST client: one shared handle that sends `GET` requests to the USD-M
//! futures API through the concurrency bound, the weight budget and the
//! retry policy, and turns the answers into typed values or typed errors.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::event::{Candle, Interval, Symbol};
use crate::source::klines_json::{BodyError, parse_klines_body};

use super::ExchangeError;
use super::clock::{Clock, ServerClock};
use super::limiter::{DEFAULT_WEIGHT_LIMIT, LIGHT_WEIGHT, Limiter, MINUTE_MS, WindowBudget, klines_weight};
use super::overload::Overload;
use super::response::{ExchangeInfo, error_message, parse_exchange_info, parse_server_time, status_error};
use super::retry::{RetryKind, RetryPolicy, StatusClass, classify_status, is_overloaded, parse_ban_until, parse_retry_after};
use super::stats::{ClientStats, Counters};

/// The exchange's count of weight used in the current minute.
const USED_WEIGHT_HEADER: &str = "x-mbx-used-weight-1m";
/// The most klines one request may ask for.
pub const MAX_KLINES_LIMIT: u16 = 1_500;
/// Test hook: multiplies every backoff of the retry policy (e.g. `0.05` sits
/// through 30 s of overload in 1.5 s). Not for operators.
pub const BACKOFF_SCALE_ENV: &str = "CANDLELOG_BACKOFF_SCALE";
/// Test hook: the weight window in ms, to match a fake exchange with
/// shortened windows (see [`ClientOptions::rate_window`]). Not for operators.
pub const RATE_WINDOW_ENV: &str = "CANDLELOG_RATE_WINDOW_MS";

/// How to reach the exchange and how hard to push it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOptions {
    /// Default `https://fapi.binance.com`.
    pub base_url: String,
    /// Whole-request timeout, body included (default 10 s).
    pub request_timeout: Duration,
    /// Fraction of the per-minute weight limit left unused (default 0.1),
    /// room for clock skew between us and the exchange and for other users of the IP.
    pub safety_margin: f64,
    /// Requests in flight at once (default 8).
    pub max_concurrency: usize,
    pub retry: RetryPolicy,
    /// The per-minute weight limit assumed until `exchangeInfo` states it (default 2400).
    pub initial_weight_limit: u32,
    /// The window the exchange counts weight in: a minute (the default). Only
    /// tests change it, to match a fake exchange with shortened windows.
    pub rate_window: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            base_url: "https://fapi.binance.com".to_owned(),
            request_timeout: Duration::from_secs(10),
            safety_margin: 0.1,
            max_concurrency: 8,
            retry: RetryPolicy::default(),
            initial_weight_limit: DEFAULT_WEIGHT_LIMIT,
            rate_window: Duration::from_millis(MINUTE_MS.unsigned_abs()),
        }
    }
}

/// A handle to the exchange, cheap to clone and shared by concurrent tasks:
/// all clones share one connection pool, one weight budget, one ban flag
/// and one set of counters.
#[derive(Clone)]
pub struct BinanceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    policy: RetryPolicy,
    clock: Arc<ServerClock>,
    limiter: Limiter,
    overload: Overload,
    /// The run's deadline: no overload backoff waits past it.
    deadline: Mutex<Option<Instant>>,
    slots: Semaphore,
    /// Set once, to a ban or a cancellation; every request watches it.
    stop: watch::Sender<Option<Stop>>,
    /// Set once by [`BinanceClient::drain`]: nothing more is sent, what is in flight finishes.
    draining: watch::Sender<bool>,
    counters: Counters,
}

impl Inner {
    /// The exchange refused this IP (a ban or the firewall): every request of
    /// this client stops from now on. The first refusal is kept (a later one
    /// says nothing new); returns the error for the request that met it.
    fn refuse_all(&self, stop: Stop) -> ExchangeError {
        let error = stop.error();
        self.stop.send_if_modified(|s| {
            if matches!(s, Some(Stop::Banned { .. } | Stop::Forbidden { .. })) {
                return false;
            }
            *s = Some(stop);
            true
        });
        error
    }
}

#[derive(Clone, Debug)]
enum Stop {
    Banned { until_ms: Option<i64>, message: String },
    Forbidden { url: String, message: String },
    Cancelled,
}

impl Stop {
    fn error(&self) -> ExchangeError {
        match self {
            Stop::Banned { until_ms, message } => ExchangeError::Banned { until_ms: *until_ms, message: message.clone() },
            Stop::Forbidden { url, message } => ExchangeError::Forbidden { url: url.clone(), message: message.clone() },
            Stop::Cancelled => ExchangeError::Cancelled,
        }
    }
}

/// One endpoint call: what to send and what to name in logs.
struct Call<'a> {
    path: &'static str,
    query: Vec<(&'static str, String)>,
    weight: u32,
    symbol: Option<&'a str>,
    interval: Option<&'static str>,
}

/// A successful response.
struct Reply {
    body: Vec<u8>,
    url: String,
    arrived: Instant,
}

/// Why one attempt failed, sorted by what happens next.
enum Failure {
    /// No retry can help.
    Final(ExchangeError),
    /// Timeout or connection error.
    Transport(ExchangeError),
    /// 5xx or 408.
    Server(ExchangeError),
    /// 503, or code -1008: the exchange is overloaded; every request waits.
    Overloaded { error: ExchangeError, status: u16, message: String, url: String },
    /// 429.
    RateLimited { retry_after: Option<u64>, url: String },
}

impl BinanceClient {
    /// A client with `opts`, after the test hooks [`BACKOFF_SCALE_ENV`] and
    /// [`RATE_WINDOW_ENV`] when they are set.
    pub fn new(mut opts: ClientOptions) -> Result<BinanceClient, ExchangeError> {
        let config = |message: String| ExchangeError::Config { message };
        if let Ok(text) = std::env::var(BACKOFF_SCALE_ENV) {
            let scale = text.trim().parse::<f64>().ok().filter(|f| f.is_finite() && *f > 0.0 && *f <= 1.0);
            let scale = scale.ok_or_else(|| config(format!("{BACKOFF_SCALE_ENV}={text:?}: expected a number in (0, 1]")))?;
            opts.retry = opts.retry.scaled(scale);
        }
        if let Ok(text) = std::env::var(RATE_WINDOW_ENV) {
            let ms = text.trim().parse::<u64>().ok().filter(|ms| *ms > 0);
            let ms = ms.ok_or_else(|| config(format!("{RATE_WINDOW_ENV}={text:?}: expected a positive number of ms")))?;
            opts.rate_window = Duration::from_millis(ms);
        }
        let url = reqwest::Url::parse(&opts.base_url).map_err(|e| config(format!("base_url {:?}: {e}", opts.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config(format!("base_url {:?}: expected an http or https URL", opts.base_url)));
        }
        if !(opts.safety_margin.is_finite() && (0.0..1.0).contains(&opts.safety_margin)) {
            return Err(config(format!("safety_margin {} is not in [0, 1)", opts.safety_margin)));
        }
        if opts.max_concurrency == 0 || opts.max_concurrency > Semaphore::MAX_PERMITS {
            return Err(config(format!("max_concurrency {} is not a usable bound", opts.max_concurrency)));
        }
        if opts.request_timeout.is_zero() {
            return Err(config("request_timeout is zero".to_owned()));
        }
        if opts.initial_weight_limit == 0 {
            return Err(config("initial_weight_limit is zero".to_owned()));
        }
        let window_ms = i64::try_from(opts.rate_window.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| config(format!("rate_window {:?} is not a usable window", opts.rate_window)))?;
        let http = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .user_agent(concat!("candlelog/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config(format!("HTTP client: {}", error_chain(&e))))?;
        let clock = Arc::new(ServerClock::default());
        let limiter = Limiter::new(WindowBudget::new(opts.initial_weight_limit, opts.safety_margin, window_ms), clock.clone());
        let inner = Inner {
            http,
            base_url: opts.base_url.trim_end_matches('/').to_owned(),
            policy: opts.retry,
            clock,
            limiter,
            overload: Overload::default(),
            deadline: Mutex::new(None),
            slots: Semaphore::new(opts.max_concurrency),
            stop: watch::Sender::new(None),
            draining: watch::Sender::new(false),
            counters: Counters::default(),
        };
        Ok(BinanceClient { inner: Arc::new(inner) })
    }

    /// `GET /fapi/v1/time` (weight 1). Also anchors [`server_now_ms`](Self::server_now_ms),
    /// which the weight budget's minute windows follow.
    pub async fn server_time(&self) -> Result<i64, ExchangeError> {
        let call = Call { path: "/fapi/v1/time", query: Vec::new(), weight: LIGHT_WEIGHT, symbol: None, interval: None };
        let reply = self.call(&call).await?;
        let server_ms = parse_server_time(&reply.body, &reply.url)?;
        self.inner.clock.record(server_ms, reply.arrived);
        Ok(server_ms)
    }

    /// The exchange's time now: the last [`server_time`](Self::server_time)
    /// advanced by the local time elapsed since; `None` before the first call.
    pub fn server_now_ms(&self) -> Option<i64> {
        self.inner.clock.server_now_ms()
    }

    /// `GET /fapi/v1/exchangeInfo` (weight 1). Sets the weight budget from
    /// the `REQUEST_WEIGHT` per-minute limit it states.
    pub async fn exchange_info(&self) -> Result<ExchangeInfo, ExchangeError> {
        let call = Call { path: "/fapi/v1/exchangeInfo", query: Vec::new(), weight: LIGHT_WEIGHT, symbol: None, interval: None };
        let reply = self.call(&call).await?;
        let info = parse_exchange_info(&reply.body, &reply.url)?;
        if let Some(limit) = info.weight_limit_per_minute {
            let before = self.inner.limiter.limit();
            self.inner.limiter.set_limit(limit);
            if before != limit {
                tracing::info!(weight_limit = limit, "request weight limit per minute set from exchangeInfo");
            }
        }
        Ok(info)
    }

    /// One page of `GET /fapi/v1/klines` (weight by `limit`, see
    /// [`klines_weight`]): candles ascending by open time, each parsed
    /// losslessly and validated. The last one may still be open; the caller
    /// keeps only those that closed before the server time.
    pub async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        limit: u16,
    ) -> Result<Vec<Candle>, ExchangeError> {
        if limit == 0 || limit > MAX_KLINES_LIMIT {
            return Err(ExchangeError::InvalidRequest { message: format!("klines limit {limit} is not in 1..={MAX_KLINES_LIMIT}") });
        }
        if let (Some(start), Some(end)) = (start_ms, end_ms)
            && start > end
        {
            return Err(ExchangeError::InvalidRequest { message: format!("klines startTime {start} is after endTime {end}") });
        }
        let mut query = vec![("symbol", symbol.as_str().to_owned()), ("interval", interval.as_str().to_owned())];
        if let Some(start) = start_ms {
            query.push(("startTime", start.to_string()));
        }
        if let Some(end) = end_ms {
            query.push(("endTime", end.to_string()));
        }
        query.push(("limit", limit.to_string()));
        let call = Call {
            path: "/fapi/v1/klines",
            query,
            weight: klines_weight(limit),
            symbol: Some(symbol.as_str()),
            interval: Some(interval.as_str()),
        };
        let reply = self.call(&call).await?;
        // Every page is checked before any of it is used: ascending open times,
        // no duplicates, nothing before startTime or after endTime. Paging
        // moves on from the last candle, so a page in another order would
        // silently skip candles.
        let malformed = |open_time: Option<i64>, field: Option<&str>, message: String| ExchangeError::Malformed {
            symbol: symbol.to_string(),
            interval,
            open_time,
            field: field.map(str::to_owned),
            message: format!("{message}; {}", page_text(start_ms, end_ms)),
        };
        let candles = parse_klines_body(&reply.body, symbol, interval).map_err(|e: BodyError| {
            let message = match e.row {
                Some(row) => format!("{} (row {row} of the response)", e.message),
                None => e.message,
            };
            malformed(e.open_time.and_then(|t| i64::try_from(t).ok()), e.field, message)
        })?;
        for (row, c) in candles.iter().enumerate() {
            let outside = start_ms.is_some_and(|s| c.open_time < s) || end_ms.is_some_and(|e| c.open_time > e);
            if outside {
                let range = format!("{}..={}", opt_text(start_ms), opt_text(end_ms));
                let message = format!("{} is outside the requested range {range} (row {row} of the response)", c.open_time);
                return Err(malformed(Some(c.open_time), Some("open_time"), message));
            }
        }
        if candles.len() > usize::from(limit) {
            return Err(malformed(None, None, format!("{} candles for a limit of {limit}", candles.len())));
        }
        tracing::debug!(symbol = symbol.as_str(), interval = interval.as_str(), candles = candles.len(), "klines page");
        Ok(candles)
    }

    /// The run's deadline: a request never waits out an overload past it (it
    /// fails instead, saying so), and long backoffs are planned against it.
    pub fn set_deadline(&self, deadline: Instant) {
        *self.inner.deadline.lock().unwrap_or_else(PoisonError::into_inner) = Some(deadline);
    }

    /// Why every request is refused, when the exchange banned this IP (418)
    /// or its firewall refused it (403); `None` otherwise (cancellation included).
    pub fn stopped_by(&self) -> Option<ExchangeError> {
        match self.inner.stop.borrow().as_ref() {
            Some(s @ (Stop::Banned { .. } | Stop::Forbidden { .. })) => Some(s.error()),
            _ => None,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        let (limiter_waits, limiter_wait_ms) = self.inner.limiter.waits();
        ClientStats {
            weight_limit_per_minute: self.inner.limiter.limit(),
            limiter_waits,
            limiter_wait_ms,
            ..self.inner.counters.snapshot()
        }
    }

    /// Makes every queued and in-flight request of this client (and its
    /// clones) fail with [`ExchangeError::Cancelled`], and every later one too.
    pub fn cancel(&self) {
        self.inner.stop.send_if_modified(|stop| {
            if stop.is_some() {
                return false;
            }
            *stop = Some(Stop::Cancelled);
            true
        });
    }

    /// Sends no new request: every request not yet on the wire (waiting for
    /// a slot, for weight, or to retry) fails at once with
    /// [`ExchangeError::Cancelled`], and so does every later one; requests
    /// already sent finish (within the request timeout), so what they cost
    /// is not spent again by the next run.
    pub fn drain(&self) {
        self.inner.draining.send_replace(true);
    }

    /// Waits `wait` before a retry; fails at once when the client drains meanwhile.
    async fn pause(&self, wait: Duration) -> Result<(), ExchangeError> {
        let mut draining = self.inner.draining.subscribe();
        tokio::select! {
            biased;
            () = drained(&mut draining) => Err(ExchangeError::Cancelled),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    /// One call with its retries, abandoned at once when the client is
    /// banned or cancelled meanwhile (the in-flight HTTP request is dropped).
    async fn call(&self, call: &Call<'_>) -> Result<Reply, ExchangeError> {
        let mut stop = self.inner.stop.subscribe();
        if let Some(s) = stop.borrow_and_update().as_ref() {
            return Err(s.error());
        }
        tokio::select! {
            biased;
            s = stopped(&mut stop) => Err(s.error()),
            result = self.with_retries(call) => result,
        }
    }

    async fn with_retries(&self, call: &Call<'_>) -> Result<Reply, ExchangeError> {
        let policy = &self.inner.policy;
        let (mut transport, mut server, mut rate_limited) = (0u32, 0u32, 0u32);
        let mut overload_waited = Duration::ZERO;
        loop {
            let (kind, wait, error) = match self.attempt(call).await {
                Ok(reply) => {
                    self.inner.overload.succeeded(reply.arrived);
                    return Ok(reply);
                }
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Overloaded { error, status, message, url }) => {
                    let wait = self.overload_wait(call, &error, overload_waited).map_err(|reason| ExchangeError::Overloaded {
                        url,
                        status,
                        waited_ms: u64::try_from(overload_waited.as_millis()).unwrap_or(u64::MAX),
                        message,
                        reason,
                    })?;
                    overload_waited += wait;
                    Counters::add(&self.inner.counters.retries, 1);
                    self.pause(wait).await?;
                    continue;
                }
                Err(Failure::Transport(e)) => (RetryKind::Transport, policy.backoff(RetryKind::Transport, bump(&mut transport)), e),
                Err(Failure::Server(e)) => (RetryKind::Server, policy.backoff(RetryKind::Server, bump(&mut server)), e),
                Err(Failure::RateLimited { retry_after, url }) => {
                    let wait = policy.rate_limit_wait(
                        bump(&mut rate_limited),
                        retry_after,
                        self.inner.clock.now_ms(),
                        self.inner.limiter.window_ms(),
                    );
                    (RetryKind::RateLimited, wait, ExchangeError::RateLimited { url, retry_after })
                }
            };
            let Some(wait) = wait else {
                tracing::warn!(
                    symbol = call.symbol,
                    interval = call.interval,
                    kind = kind.as_str(),
                    error = %error,
                    "giving up: no retry left"
                );
                return Err(error);
            };
            let wait = policy.with_jitter(wait);
            Counters::add(&self.inner.counters.retries, 1);
            tracing::warn!(
                symbol = call.symbol,
                interval = call.interval,
                kind = kind.as_str(),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "request failed; retrying"
            );
            self.pause(wait).await?;
        }
    }

    /// After an overloaded answer: the shared hold (raised if this answer came
    /// after the last one ended), plus a little jitter of this request's own so
    /// the waiters do not all come back in the same millisecond. `Err(reason)`
    /// when the hold would end past the run's deadline or past what one
    /// request may wait for an overload in all.
    fn overload_wait(&self, call: &Call<'_>, error: &ExchangeError, waited: Duration) -> Result<Duration, String> {
        let (inner, policy) = (&*self.inner, &self.inner.policy);
        let now = Instant::now();
        let until = inner.overload.hit(policy, now);
        let wait = policy.with_jitter(until.saturating_duration_since(now));
        let deadline = *inner.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(deadline) = deadline
            && now + wait >= deadline
        {
            let left = deadline.saturating_duration_since(now);
            return Err(format!(
                "the run's deadline ({} s away) comes before the next try; run the sync again once the exchange recovers",
                left.as_secs()
            ));
        }
        if waited + wait > policy.max_overload_wait {
            return Err(format!("a request waits at most {} s for an overload to pass", policy.max_overload_wait.as_secs()));
        }
        inner.limiter.hold_until(until);
        tracing::warn!(
            symbol = call.symbol,
            interval = call.interval,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            error = %error,
            "exchange overloaded; every request waits"
        );
        Ok(wait)
    }

    /// One HTTP request: a concurrency slot, the weight, the request, the body.
    async fn attempt(&self, call: &Call<'_>) -> Result<Reply, Failure> {
        let inner = &*self.inner;
        // A drained client sends nothing more, however long this request has waited.
        let mut draining = inner.draining.subscribe();
        let admitted = async {
            let permit = inner.slots.acquire().await.map_err(|_| Failure::Final(ExchangeError::Cancelled))?;
            let window = inner.limiter.acquire(call.weight).await;
            Ok((permit, window))
        };
        let (permit, window) = tokio::select! {
            biased;
            () = drained(&mut draining) => return Err(Failure::Final(ExchangeError::Cancelled)),
            admitted = admitted => admitted?,
        };
        // A ban may have come while this request waited for a slot or for weight.
        if let Some(s) = inner.stop.borrow().as_ref() {
            return Err(Failure::Final(s.error()));
        }
        let request = inner
            .http
            .get(format!("{}{}", inner.base_url, call.path))
            .query(&call.query)
            .build()
            .map_err(|e| Failure::Final(ExchangeError::InvalidRequest { message: error_chain(&e) }))?;
        let url = request.url().to_string();
        Counters::add(&inner.counters.requests, 1);
        Counters::add(&inner.counters.weight_used, u64::from(call.weight));
        let sent_at = Instant::now();
        let response = inner.http.execute(request).await.map_err(|e| self.transport_failure(&url, &e))?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let used_weight = header(USED_WEIGHT_HEADER).and_then(|v| v.trim().parse::<u32>().ok());
        let retry_after = header("retry-after").as_deref().and_then(parse_retry_after);
        if let Some(used) = used_weight {
            inner.limiter.observe(window, used);
            inner.counters.max_used_weight_header.fetch_max(u64::from(used), Ordering::Relaxed);
        }
        let body = response.bytes().await.map_err(|e| self.transport_failure(&url, &e))?.to_vec();
        let arrived = Instant::now();
        drop(permit);
        tracing::debug!(
            symbol = call.symbol,
            interval = call.interval,
            status,
            weight = call.weight,
            used_weight,
            elapsed_ms = u64::try_from(arrived.duration_since(sent_at).as_millis()).unwrap_or(u64::MAX),
            path = call.path,
            "exchange response"
        );
        match classify_status(status) {
            StatusClass::Success => Ok(Reply { body, url, arrived }),
            StatusClass::RateLimited => {
                Counters::add(&inner.counters.responses_429, 1);
                // Every request waits, not just this one, and every later window
                // spends less: repeated 429s get the IP banned. Without a
                // Retry-After the minute is spent: every request waits for the next one.
                inner.limiter.rate_limited(retry_after.map(Duration::from_secs));
                tracing::warn!(
                    symbol = call.symbol,
                    interval = call.interval,
                    status,
                    weight = call.weight,
                    used_weight,
                    retry_after,
                    "rate limited (HTTP 429)"
                );
                Err(Failure::RateLimited { retry_after, url })
            }
            StatusClass::Banned => {
                Counters::add(&inner.counters.bans, 1);
                let message = error_message(&body);
                let until_ms = parse_ban_until(&message).or_else(|| {
                    let secs = i64::try_from(retry_after?).ok()?;
                    Some(inner.clock.now_ms().saturating_add(secs.saturating_mul(1_000)))
                });
                tracing::error!(symbol = call.symbol, interval = call.interval, status, until_ms, message = %message, "IP banned by the exchange (HTTP 418); stopping every request");
                let stop = Stop::Banned { until_ms, message };
                Err(Failure::Final(inner.refuse_all(stop)))
            }
            StatusClass::Forbidden => {
                Counters::add(&inner.counters.forbidden, 1);
                let message = error_message(&body);
                tracing::error!(symbol = call.symbol, interval = call.interval, status, message = %message, "refused by the exchange's firewall (HTTP 403); stopping every request");
                let stop = Stop::Forbidden { url, message };
                Err(Failure::Final(inner.refuse_all(stop)))
            }
            StatusClass::Retryable => {
                Counters::add(&inner.counters.server_errors, 1);
                let error = status_error(status, &url, &body);
                if is_overloaded(status, error.api_code()) {
                    Counters::add(&inner.counters.overloaded, 1);
                    return Err(Failure::Overloaded { error, status, message: error_message(&body), url });
                }
                Err(Failure::Server(error))
            }
            StatusClass::Fatal => Err(Failure::Final(status_error(status, &url, &body))),
        }
    }

    fn transport_failure(&self, url: &str, e: &reqwest::Error) -> Failure {
        let counters = &self.inner.counters;
        if e.is_timeout() {
            Counters::add(&counters.timeouts, 1);
            Failure::Transport(ExchangeError::Timeout { url: url.to_owned() })
        } else {
            Counters::add(&counters.transport_errors, 1);
            Failure::Transport(ExchangeError::Transport { url: url.to_owned(), message: error_chain(e) })
        }
    }
}

/// Resolves when the client is banned or cancelled.
async fn stopped(rx: &mut watch::Receiver<Option<Stop>>) -> Stop {
    let found = match rx.wait_for(Option::is_some).await {
        Ok(stop) => stop.clone(),
        Err(_) => None,
    };
    match found {
        Some(stop) => stop,
        // The sender lives as long as the client; without it nothing can stop us.
        None => std::future::pending().await,
    }
}

/// Resolves once the client drains ([`BinanceClient::drain`]).
async fn drained(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|d| *d).await.is_err() {
        // The sender lives as long as the client; without it nothing can drain us.
        std::future::pending::<()>().await;
    }
}

/// Returns the current count, then increments it.
fn bump(n: &mut u32) -> u32 {
    let current = *n;
    *n = n.saturating_add(1);
    current
}

fn opt_text(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The page a klines error is about, as requested.
fn page_text(start_ms: Option<i64>, end_ms: Option<i64>) -> String {
    let at = |v: Option<i64>| v.map_or_else(|| "(none)".to_owned(), |ms| format!("{} ({ms})", crate::event::fmt_ms(ms)));
    format!("the page asked for startTime {} to endTime {}; nothing from it was used", at(start_ms), at(end_ms))
}

/// An error and its causes, one line (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
