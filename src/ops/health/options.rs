//! What `health` compares against: the thresholds, from the config (`[health]`,
//! `[health.freshness]`, `[sync]`), in nightly or service mode.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, DEFAULT_SYMBOLS, parse_duration};
use crate::error::{Error, Result};
use crate::event::Interval;

/// What health compares against.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Configured symbols (None: those the store holds) and intervals.
    pub symbols: Option<Vec<String>>,
    pub intervals: Vec<Interval>,
    /// How long after its close a candle may be missing before freshness turns WARNING /
    /// CRITICAL, for intervals `freshness` does not name.
    pub stale_warning: Duration,
    pub stale_critical: Duration,
    /// Per-interval (warning, critical) delays that replace the two above.
    pub freshness: BTreeMap<Interval, (Duration, Duration)>,
    /// Which schedule the delays belong to, named in the freshness check ("nightly", "service").
    pub mode: &'static str,
    pub run_max_age: Duration,
    pub disk_min_free: f64,
    /// The share of a sync's units that must succeed (`[sync] min_success`).
    pub min_success: f64,
    /// Wall clock, ms (a parameter so tests can script time).
    pub now_ms: i64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            symbols: None,
            intervals: vec![Interval::H4],
            stale_warning: Duration::from_secs(24 * 3600),
            stale_critical: Duration::from_secs(26 * 3600),
            freshness: BTreeMap::new(),
            mode: "nightly",
            run_max_age: Duration::from_secs(26 * 3600),
            disk_min_free: 0.15,
            min_success: 0.98,
            now_ms: crate::log::writer::now_ms(),
        }
    }
}

impl HealthOptions {
    /// (warning, critical) delay after a candle's close for `interval`.
    pub fn delays(&self, interval: Interval) -> (Duration, Duration) {
        self.freshness.get(&interval).copied().unwrap_or((self.stale_warning, self.stale_critical))
    }
}

/// Service-mode freshness delays when `[health.freshness]` names neither the interval nor
/// `default`: the stream commits a candle within a second of its close, a reconnect's gap
/// fill takes seconds, a failed fill is retried after 30 s; two minutes is already wrong.
pub const SERVICE_STALE_WARNING: Duration = Duration::from_secs(120);
pub const SERVICE_STALE_CRITICAL: Duration = Duration::from_secs(600);

impl HealthOptions {
    /// What health compares against, from the config. `service`: the service (`candlelog run`) is
    /// the writer, so `[health.freshness]` (default 2 min / 10 min) judges freshness instead of
    /// the nightly `stale_warning` / `stale_critical`.
    pub fn from_config(config: &Config, service: bool) -> Result<HealthOptions> {
        let mut o = HealthOptions::default();
        let usage = |m: String| Error::Usage(m);
        let h = &config.health;
        for (field, value) in
            [(&mut o.stale_warning, &h.stale_warning), (&mut o.stale_critical, &h.stale_critical), (&mut o.run_max_age, &h.run_max_age)]
        {
            if let Some(v) = value {
                *field = parse_duration(v).map_err(|e| usage(format!("[health]: {e}")))?;
            }
        }
        let mut per = std::collections::BTreeMap::new();
        let mut default = (SERVICE_STALE_WARNING, SERVICE_STALE_CRITICAL);
        // `default` first: its fields fill in what an interval's entry leaves out.
        let entries = h.freshness.iter().filter(|(k, _)| *k == "default").chain(h.freshness.iter().filter(|(k, _)| *k != "default"));
        for (key, d) in entries {
            let parse = |v: &Option<String>, fallback| match v {
                Some(t) => parse_duration(t).map_err(|e| usage(format!("[health.freshness] {key:?}: {e}"))),
                None => Ok(fallback),
            };
            let pair = (parse(&d.warning, default.0)?, parse(&d.critical, default.1)?);
            if key == "default" {
                default = pair;
            } else {
                let i = Interval::parse(key).ok_or_else(|| {
                    usage(format!("[health.freshness]: unknown interval {key:?} (use e.g. \"1m\", \"4h\" or \"default\")"))
                })?;
                per.insert(i, pair);
            }
        }
        o.disk_min_free = h.disk_min_free.unwrap_or(o.disk_min_free);
        o.min_success = config.sync.min_success.unwrap_or(o.min_success);
        o.symbols = match &config.sync.symbols {
            Some(list) if list.len() == 1 && list[0].eq_ignore_ascii_case("all") => None,
            Some(list) => Some(list.clone()),
            // Unconfigured, sync takes the default list: coverage checks what sync is meant to keep.
            None => Some(DEFAULT_SYMBOLS.map(String::from).to_vec()),
        };
        if let Some(list) = &config.sync.intervals {
            o.intervals = list
                .iter()
                .map(|s| Interval::parse(s).ok_or_else(|| usage(format!("[sync] intervals: unknown interval {s:?}"))))
                .collect::<Result<_, _>>()?;
        }
        if service {
            // An interval given its own delay keeps it; a `default` entry's fields fill in the rest.
            (o.stale_warning, o.stale_critical) = default;
            o.freshness = per;
            o.mode = "service";
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn service_delays_per_interval_and_nightly_ones_otherwise() {
        let c = config(
            "[sync]\nintervals = [\"1m\", \"4h\", \"1d\"]\n[health]\nstale_warning = \"20h\"\n[health.freshness]\n\"1d\" = { warning = \"5m\" }\ndefault = { critical = \"15m\" }\n",
        );
        let min = |m: u64| Duration::from_secs(m * 60);
        let service = HealthOptions::from_config(&c, true).unwrap();
        assert_eq!(service.mode, "service");
        // An interval's own entry; a field it leaves out comes from `default`, which fills in from the built-in.
        assert_eq!(service.delays(Interval::D1), (min(5), min(15)));
        assert_eq!(service.delays(Interval::M1), (SERVICE_STALE_WARNING, min(15)));
        let nightly = HealthOptions::from_config(&c, false).unwrap();
        assert_eq!(nightly.mode, "nightly");
        for i in [Interval::M1, Interval::H4, Interval::D1] {
            assert_eq!(nightly.delays(i), (Duration::from_secs(20 * 3600), Duration::from_secs(26 * 3600)));
        }
        let bad = HealthOptions::from_config(&config("[health.freshness]\n\"2x\" = { warning = \"1m\" }\n"), true).unwrap_err().to_string();
        assert!(bad.contains("unknown interval \"2x\""), "{bad}");
    }
}
