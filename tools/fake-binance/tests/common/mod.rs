//! What the fake exchange's test files share: a tiny HTTP client and the times they use.
// Each test file compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use fake_binance::{Clock, Config, FakeExchange};
use serde_json::Value;

/// 2024-03-01T12:34:56.789Z
pub const T: i64 = 1_709_296_496_789;
pub const ONBOARD: i64 = 1_704_067_200_000;
pub const HOUR: i64 = 3_600_000;

pub struct Reply {
    pub status: u16,
    pub used: Option<u32>,
    pub retry_after: Option<u64>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn rows(&self) -> Vec<Vec<Value>> {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not klines ({e}): {}", self.text))
    }

    pub fn code(&self) -> i64 {
        self.json()["code"].as_i64().unwrap()
    }
}

pub async fn get(client: &reqwest::Client, ex: &FakeExchange, path: &str, query: &[(&str, String)]) -> Reply {
    let r = client.get(format!("{}{path}", ex.url())).query(query).send().await.unwrap();
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let (used, retry_after) = (header("x-mbx-used-weight-1m").map(|v| v as u32), header("retry-after"));
    Reply { status: r.status().as_u16(), used, retry_after, text: r.text().await.unwrap() }
}

pub async fn klines(client: &reqwest::Client, ex: &FakeExchange, symbol: &str, interval: &str, extra: &[(&str, i64)]) -> Reply {
    let mut q = vec![("symbol", symbol.to_string()), ("interval", interval.to_string())];
    q.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    get(client, ex, "/fapi/v1/klines", &q).await
}

pub async fn post(client: &reqwest::Client, ex: &FakeExchange, path: &str, body: &str) -> Value {
    let r = client.post(format!("{}{path}", ex.url())).body(body.to_string()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path} {body}");
    r.json().await.unwrap()
}

pub fn fixed(t: i64) -> FakeExchange {
    FakeExchange::start(Config { clock: Clock::Fixed(t), ..Config::default() }).unwrap()
}
