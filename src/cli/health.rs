//! `candlelog health [--json]`: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
//! (the monitoring-plugins convention, the one exception to the general table).

use std::process::ExitCode;

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

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let paths = cli.paths_with(&config);
    // Beside a running service, judge as the service's /health does.
    let mut o = HealthOptions::from_config(&config, service_pid(&paths.lock).is_some())?;
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
