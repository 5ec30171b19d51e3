//! Message-to-commit lags of `candlelog run`, kept as a fixed histogram (1 ms buckets to
//! 10 s, one above): memory stays flat however long the service runs, and the report gives
//! its quantiles.

/// Buckets of 1 ms from 0 to `TOP_MS - 1`, and one for `TOP_MS` and above.
const TOP_MS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Lags {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Lags {
    fn default() -> Lags {
        Lags { counts: vec![0; TOP_MS + 1], total: 0 }
    }
}

impl Lags {
    pub fn add(&mut self, ms: i64) {
        let b = usize::try_from(ms.max(0)).unwrap_or(TOP_MS).min(TOP_MS);
        if let Some(c) = self.counts.get_mut(b) {
            *c += 1;
            self.total += 1;
        }
    }

    /// The lag at quantile `q` (0..=1), ms; `TOP_MS` means "at least"; 0 when empty.
    pub fn quantile(&self, q: f64) -> i64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return ms as i64;
            }
        }
        TOP_MS as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut l = Lags::default();
        assert_eq!(l.quantile(0.99), 0);
        for ms in 1..=100 {
            l.add(ms);
        }
        l.add(50_000);
        assert_eq!(l.quantile(0.5), 51);
        assert_eq!(l.quantile(0.99), 100);
        assert_eq!(l.quantile(1.0), TOP_MS as i64);
    }
}
