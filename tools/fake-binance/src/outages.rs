//! Exchange outages: spans of open time in which candles of a symbol/interval (or of all of
//! them) do not exist. Every klines answer, and `closed_klines`, skips them, the way a real
//! exchange's history has holes where it was down.

use crate::market::Interval;

/// One outage: candles whose open time is in `[from_ms, to_ms]` do not exist for `symbol`
/// (`None`: every symbol) and `interval` (`None`: every interval).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outage {
    pub symbol: Option<String>,
    pub interval: Option<Interval>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Outage {
    /// Checks the parts of an outage as given to `add_outage` / `POST /_fake/outage` / `--outage`.
    pub fn new(symbol: Option<&str>, interval: Option<&str>, from_ms: i64, to_ms: i64) -> Result<Outage, String> {
        if symbol.is_some_and(str::is_empty) {
            return Err("outage: empty symbol (leave it out for every symbol)".to_string());
        }
        let interval = match interval {
            None => None,
            Some(i) => Some(Interval::parse(i).ok_or_else(|| format!("outage: unknown interval {i:?} (leave it out for every interval)"))?),
        };
        if from_ms > to_ms {
            return Err(format!("outage: from_ms {from_ms} is after to_ms {to_ms}"));
        }
        Ok(Outage { symbol: symbol.map(str::to_string), interval, from_ms, to_ms })
    }

    fn applies(&self, symbol: &str, iv: Interval) -> bool {
        self.symbol.as_deref().is_none_or(|s| s == symbol) && self.interval.is_none_or(|i| i == iv)
    }
}

/// The outages of one (symbol, interval), as `[from, to]` spans of open time.
#[derive(Clone, Debug, Default)]
pub(crate) struct Holes(Vec<(i64, i64)>);

impl Holes {
    pub fn of(outages: &[Outage], symbol: &str, iv: Interval) -> Holes {
        Holes(outages.iter().filter(|o| o.applies(symbol, iv)).map(|o| (o.from_ms, o.to_ms)).collect())
    }

    /// The first span that contains open time `t`.
    pub fn at(&self, t: i64) -> Option<(i64, i64)> {
        self.0.iter().copied().find(|&(from, to)| from <= t && t <= to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_checks() {
        let all = Outage::new(None, None, 10, 20).unwrap();
        let one = Outage::new(Some("BTCUSDT"), Some("1h"), 30, 30).unwrap();
        let h = Holes::of(&[all.clone(), one.clone()], "BTCUSDT", Interval::H1);
        assert_eq!(
            (h.at(9), h.at(10), h.at(20), h.at(21), h.at(30), h.at(31)),
            (None, Some((10, 20)), Some((10, 20)), None, Some((30, 30)), None)
        );
        let h = Holes::of(&[all, one], "ETHUSDT", Interval::H1);
        assert_eq!(h.at(30), None);
        assert!(Outage::new(None, Some("7m"), 0, 1).is_err());
        assert!(Outage::new(Some(""), None, 0, 1).is_err());
        assert!(Outage::new(None, None, 2, 1).is_err());
    }
}
