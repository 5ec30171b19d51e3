//! `candlelog health [--json]`: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
//! (the monitoring-plugins convention, the one exception to the general table).

use std::process::ExitCode;

use candlelog::config::{DEFAULT_SYMBOLS, parse_duration};
use candlelog::event::Interval;
use candlelog::ops::health::{HealthOptions, Status, health};

use super::{Cli, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
    /// Judge as if it were this time (RFC 3339); for drills and tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
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
    if let Some(now) = &args.now {
        o.now_ms = now.parse::<jiff::Timestamp>().map_err(|e| usage(format!("--now {now:?}: {e}")))?.as_millisecond();
    }
    let r = health(&cli.paths_with(&config), &o)?;
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
