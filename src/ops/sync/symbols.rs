//! Which symbols a sync covers, validated before anything is fetched: ASCII
//! `A-Z0-9`, present and TRADING on the exchange. A name listed twice is
//! synced once, with a warning.

use std::collections::HashMap;

use serde::Serialize;

use crate::event::Symbol;
use crate::source::binance::ExchangeInfo;

/// `--symbols all` or an explicit list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    List(Vec<String>),
}

/// A symbol that will not be synced, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub symbol: String,
    pub reason: String,
}

/// A symbol to sync, with its listing time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub symbol: Symbol,
    pub onboard_ms: Option<i64>,
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

/// "all" means every TRADING USDT-quoted perpetual the exchange lists.
pub fn select(selection: &Selection, info: &ExchangeInfo) -> (Vec<Selected>, Vec<Rejected>) {
    let listed: HashMap<&str, &crate::source::binance::SymbolInfo> = info.symbols.iter().map(|s| (s.symbol.as_str(), s)).collect();
    let mut selected = Vec::new();
    let mut rejected = Vec::new();
    match selection {
        Selection::All => {
            for s in &info.symbols {
                if s.status == "TRADING"
                    && s.contract_type == "PERPETUAL"
                    && s.quote_asset == "USDT"
                    && let Ok(symbol) = Symbol::parse(&s.symbol)
                {
                    selected.push(Selected { symbol, onboard_ms: s.onboard_ms });
                }
            }
            selected.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        }
        Selection::List(names) => {
            for name in &merge_duplicates(names).0 {
                let reject = |reason: String| Rejected { symbol: name.clone(), reason };
                let symbol = match Symbol::parse(name) {
                    Ok(s) => s,
                    Err(e) => {
                        rejected.push(reject(e.to_string()));
                        continue;
                    }
                };
                match listed.get(name.as_str()) {
                    None => rejected.push(reject(format!("{name} is unknown to the exchange"))),
                    Some(s) if s.status != "TRADING" => rejected.push(reject(format!("{name} is not trading (status {})", s.status))),
                    Some(s) => selected.push(Selected { symbol, onboard_ms: s.onboard_ms }),
                }
            }
        }
    }
    (selected, rejected)
}

/// Parses `--symbols all|S1,S2,...`.
pub fn parse_selection(text: &str) -> Selection {
    if text.trim().eq_ignore_ascii_case("all") {
        Selection::All
    } else {
        Selection::List(text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    }
}
