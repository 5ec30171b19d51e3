//! Which symbols a sync covers, classified from exchangeInfo before anything
//! is fetched: **tradable** (TRADING), **retired** (delisted, settling,
//! delivered, closed, or gone from exchangeInfo after this store held it:
//! fetched up to its delisting, then left alone), **paused** (halted, break,
//! pending: skipped) and **invalid** (not a symbol of the exchange). Only
//! tradable symbols count toward `min_success`. A name listed twice is
//! synced once, with a warning.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::event::{OutcomeStatus, Symbol};
use crate::source::binance::{ExchangeInfo, SymbolInfo};

/// `--symbols all` or an explicit list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    List(Vec<String>),
}

/// What a requested symbol is on the exchange now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Tradable,
    Retired,
    Paused,
    Invalid,
}

impl Class {
    /// The status a sync `Run` record gives a symbol of this class that was not synced.
    pub fn outcome_status(self) -> OutcomeStatus {
        match self {
            Class::Tradable => OutcomeStatus::Failed,
            Class::Retired => OutcomeStatus::Retired,
            Class::Paused => OutcomeStatus::Paused,
            Class::Invalid => OutcomeStatus::Invalid,
        }
    }

    /// The class of an exchangeInfo `status`: TRADING trades; the statuses
    /// of a contract on its way out or gone are retired; the rest (halt,
    /// break, pending, or one this build does not know) pause it.
    pub fn of_status(status: &str) -> Class {
        match status {
            "TRADING" => Class::Tradable,
            "SETTLING" | "CLOSE" | "CLOSED" | "DELIVERING" | "DELIVERED" | "PRE_SETTLE" | "PRE_DELIVERING" | "DELISTED" => Class::Retired,
            _ => Class::Paused,
        }
    }
}

/// A symbol that will not be synced, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub symbol: String,
    pub reason: String,
    /// retired, paused or invalid.
    pub class: Class,
}

/// A symbol to sync, with its listing time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub symbol: Symbol,
    pub onboard_ms: Option<i64>,
    /// Tradable, or retired with its candles up to `delisted_ms` still to fetch.
    pub class: Class,
    /// A retired symbol's delisting: no candle opens at or after it.
    pub delisted_ms: Option<i64>,
}

/// `items` without repeats, in first-appearance order, and the repeated ones
/// (each once): an operator's list with a name twice means it once.
pub fn merge_duplicates<T: PartialEq + Clone>(items: &[T]) -> (Vec<T>, Vec<T>) {
    let (mut kept, mut repeated) = (Vec::with_capacity(items.len()), Vec::new());
    for x in items {
        if !kept.contains(x) {
            kept.push(x.clone());
        } else if !repeated.contains(x) {
            repeated.push(x.clone());
        }
    }
    (kept, repeated)
}

/// Classifies the selection against exchangeInfo. `stored` are the symbols
/// this store holds candles of: a name gone from exchangeInfo is retired if
/// it is one of them, invalid otherwise. "all" means every TRADING
/// USDT-quoted perpetual the exchange lists, and every stored symbol the
/// exchange has since retired or paused (so delistings are followed).
pub fn select(selection: &Selection, info: &ExchangeInfo, stored: &BTreeSet<String>) -> (Vec<Selected>, Vec<Rejected>) {
    let listed: HashMap<&str, &SymbolInfo> = info.symbols.iter().map(|s| (s.symbol.as_str(), s)).collect();
    let names: Vec<String> = match selection {
        Selection::All => {
            let mut names: BTreeSet<String> = info
                .symbols
                .iter()
                .filter(|s| s.status == "TRADING" && s.contract_type == "PERPETUAL" && s.quote_asset == "USDT")
                .map(|s| s.symbol.clone())
                .collect();
            names.extend(stored.iter().cloned());
            names.into_iter().collect()
        }
        Selection::List(names) => merge_duplicates(names).0,
    };
    let (mut selected, mut rejected) = (Vec::new(), Vec::new());
    for name in &names {
        match classify(name, listed.get(name.as_str()).copied(), stored.contains(name)) {
            Ok(s) => selected.push(s),
            Err(r) => rejected.push(r),
        }
    }
    (selected, rejected)
}

/// One name's class: a symbol to fetch (tradable, or retired with candles
/// up to its delisting) or why it is not fetched.
fn classify(name: &str, info: Option<&SymbolInfo>, stored: bool) -> Result<Selected, Rejected> {
    let reject = |class, reason: String| Rejected { symbol: name.to_string(), reason, class };
    let symbol = Symbol::parse(name).map_err(|e| reject(Class::Invalid, e.to_string()))?;
    let Some(info) = info else {
        return Err(if stored {
            reject(Class::Retired, format!("{name} is gone from the exchange's symbol list: retired; its stored candles are kept"))
        } else {
            reject(Class::Invalid, format!("{name} is unknown to the exchange"))
        });
    };
    match Class::of_status(&info.status) {
        Class::Tradable => Ok(Selected { symbol, onboard_ms: info.onboard_ms, class: Class::Tradable, delisted_ms: None }),
        Class::Retired => Ok(Selected { symbol, onboard_ms: info.onboard_ms, class: Class::Retired, delisted_ms: info.delivery_ms }),
        class => Err(reject(class, format!("{name} is not trading (status {}): skipped until it trades again", info.status))),
    }
}

/// Parses `--symbols all|S1,S2,...`.
pub fn parse_selection(text: &str) -> Selection {
    if text.trim().eq_ignore_ascii_case("all") {
        Selection::All
    } else {
        Selection::List(text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    }
}
