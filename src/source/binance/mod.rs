//! The Binance USD-M futures REST API, the source of the nightly `sync`:
//! server time, exchange info and klines pages, fetched within the
//! exchange's request-weight budget and retried the way its rules allow.
//!
//! ```text
//!  BinanceClient::klines ─► semaphore (max_concurrency) ─► limiter (weight per minute window)
//!        ▲                                                         │
//!        │ retry policy: timeouts, 5xx, 429; 418 stops all         ▼
//!        └──────────── typed ExchangeError ◄─── reqwest (rustls) ─► /fapi/v1/…
//! ```
//!
//! Files: [`client`](BinanceClient) (endpoints and the request loop),
//! `limiter` (the weight budget), `retry` (the policy), `clock` (server
//! time estimate), `response` (non-klines bodies), `stats`, `error`.

mod client;
mod clock;
mod error;
mod limiter;
mod response;
mod retry;
mod stats;

#[cfg(test)]
mod tests;

pub use client::{BinanceClient, ClientOptions, MAX_KLINES_LIMIT};
pub use error::ExchangeError;
pub use limiter::{DEFAULT_WEIGHT_LIMIT, LIGHT_WEIGHT, klines_weight};
pub use response::{ExchangeInfo, SymbolInfo};
pub use retry::RetryPolicy;
pub use stats::ClientStats;
