//! The Binance USD-M futures REST API, the source of the nightly `sync`:
//! server time, exchange info and klines pages, fetched within the
//! exchange's request-weight budget and retried the way its rules allow.
//!
//! ```text
//!  BinanceClient::klines ─► semaphore (max_concurrency) ─► limiter (weight per minute window
//!        ▲                                                  of the exchange's clock; holds)
//!        │ retry policy: timeouts, 5xx; 429 and 503/-1008 hold   │
//!        │ every request; 418 and 403 stop every request         ▼
//!        └──────────── typed ExchangeError ◄─── reqwest (rustls) ─► /fapi/v1/…
//! ```
//!
//! Files: [`client`](BinanceClient) (endpoints and the request loop),
//! `limiter` (the weight budget), `retry` (the policy), `overload` (the
//! shared backoff when the exchange is overloaded), `clock` (server time
//! estimate), `response` (non-klines bodies), `stats`, `error`.

mod client;
mod clock;
mod error;
mod limiter;
mod overload;
mod response;
mod retry;
mod stats;

#[cfg(test)]
mod tests;

pub use client::{BACKOFF_SCALE_ENV, BinanceClient, ClientOptions, MAX_KLINES_LIMIT, RATE_WINDOW_ENV};
pub use error::ExchangeError;
pub use limiter::{DEFAULT_WEIGHT_LIMIT, LIGHT_WEIGHT, klines_weight};
pub use response::{ExchangeInfo, SymbolInfo};
pub use retry::RetryPolicy;
pub use stats::ClientStats;
