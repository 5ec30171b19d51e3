//! `candlelog health [--json]`: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
//! (the monitoring-plugins convention, the one exception to the general table).

use std::process::ExitCode;

use std::time::Duration;

use candlelog::config::{Config, DEFAULT_SYMBOLS, parse_duration};
use candlelog::event::Interval;
use candlelog::ops::health::{HealthOptions, Status, health};
use candlelog::store::service_pid;

use super::{Cli, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
    /// Judge as if it were this time (RFC 3339); for drills and tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

/// Service-mode freshness delays when `[health.freshness]` names neither the interval nor
/// `default`: the stream commits a candle within a second of its close, a reconnect's gap
/// fill takes seconds, a failed fill is retried after 30 s; two minutes is already wrong.
pub const SERVICE_STALE_WARNING: Duration = Duration::from_secs(120);
pub const SERVICE_STALE_CRITICAL: Duration = Duration::from_secs(600);

/// What health compares against, from the config. `service`: the service (`candlelog run`) is
/// the writer, so `[health.freshness]` (default 2 min / 10 min) judges freshness instead of
/// the nightly `stale_warning` / `stale_critical`.
pub fn options(config: &Config, service: bool) -> Result<HealthOptions, candlelog::Error> {
    let mut o = HealthOptions::default();
    let usage = |m: String| candlelog::Error::Usage(m);
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
            let i = Interval::parse(key)
                .ok_or_else(|| usage(format!("[health.freshness]: unknown interval {key:?} (use e.g. \"1m\", \"4h\" or \"default\")")))?;
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

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let paths = cli.paths_with(&config);
    // Beside a running service, judge as the service's /health does.
    let mut o = options(&config, service_pid(&paths.lock).is_some())?;
    let usage = |m: String| candlelog::Error::Usage(m);
    if let Some(now) = &args.now {
        o.now_ms = now.parse::<jiff::Timestamp>().map_err(|e| usage(format!("--now {now:?}: {e}")))?.as_millisecond();
    }
    let r = health(&paths, &o)?;
    super::metrics::push(candlelog::ops::metrics::Update::set(
        "candlelog_integrity_ok",
        if r.checks.iter().any(|c| c.name == "integrity" && c.status == Status::Critical) { 0.0 } else { 1.0 },
    ));
    if args.json {
        print_json(&r)?;
    } else {
        outln!("{:<12} {:<9} {:<22} {:<28} message", "check", "status", "value", "threshold");
        for c in &r.checks {
            let status = serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            outln!("{:<12} {:<9} {:<22} {:<28} {}", c.name, status, c.value, c.threshold, c.message);
        }
        outln!("{}", serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default());
    }
    Ok(ExitCode::from(r.status.exit_code()))
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
        let service = options(&c, true).unwrap();
        assert_eq!(service.mode, "service");
        // An interval's own entry; a field it leaves out comes from `default`, which fills in from the built-in.
        assert_eq!(service.delays(Interval::D1), (min(5), min(15)));
        assert_eq!(service.delays(Interval::M1), (SERVICE_STALE_WARNING, min(15)));
        let nightly = options(&c, false).unwrap();
        assert_eq!(nightly.mode, "nightly");
        for i in [Interval::M1, Interval::H4, Interval::D1] {
            assert_eq!(nightly.delays(i), (Duration::from_secs(20 * 3600), Duration::from_secs(26 * 3600)));
        }
        let bad = options(&config("[health.freshness]\n\"2x\" = { warning = \"1m\" }\n"), true).unwrap_err().to_string();
        assert!(bad.contains("unknown interval \"2x\""), "{bad}");
    }
}
