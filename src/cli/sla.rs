//! `candlelog sla [--days 30] [--json]`: the monthly SLA audit; exit 1 on a breach.

use std::process::ExitCode;

use candlelog::config::parse_duration;
use candlelog::ops::sla::{SlaOptions, sla};

use super::{Cli, EXIT_FAILED, EXIT_OK, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Days to audit, ending today (UTC).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    #[arg(long)]
    pub json: bool,
    /// Audit as if it were this time (RFC 3339); for tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let usage = |m: String| candlelog::Error::Usage(m);
    let mut o = SlaOptions { days: args.days.max(1), ..SlaOptions::default() };
    if let Some(t) = &config.sla.freshness_target {
        o.freshness_target = parse_duration(t).map_err(|e| usage(format!("[sla] freshness_target: {e}")))?;
    }
    o.min_success = config.sync.min_success.unwrap_or(o.min_success);
    for (field, value, key) in
        [(&mut o.rpo_target, &config.sla.rpo_target, "rpo_target"), (&mut o.rto_target, &config.sla.rto_target, "rto_target")]
    {
        if let Some(v) = value {
            *field = parse_duration(v).map_err(|e| usage(format!("[sla] {key}: {e}")))?;
        }
    }
    o.repositories = config.backup.repositories.iter().map(|r| r.path.clone()).collect();
    if let Some(now) = &args.now {
        o.now_ms = now.parse::<jiff::Timestamp>().map_err(|e| usage(format!("--now {now:?}: {e}")))?.as_millisecond();
    }
    let r = sla(&cli.paths_with(&config), &o)?;
    if args.json {
        print_json(&r)?;
    } else {
        outln!("SLA {} .. {}: {}/{} nights synced successfully", r.from, r.to, r.nights_ok, r.nights_total);
        outln!(
            "freshness: worst {:.1} h{} (target {:.1} h)",
            r.worst_staleness_hours,
            r.worst_series.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
            r.freshness_target_hours
        );
        if r.backups.is_empty() {
            outln!("backups: no repositories configured ([[backup.repositories]])");
        }
        for b in &r.backups {
            outln!("backups: {}: {} in the window, longest gap {:.1} h (the real RPO)", b.repository, b.backups, b.worst_gap_hours);
        }
        for d in &r.drills {
            outln!("drill {}: {} in {} s (RTO)", d.at, if d.ok { "ok" } else { "FAILED" }, d.rto_ms / 1000);
        }
        for b in &r.breaches {
            outln!("BREACH {} {}: {}", b.kind, b.when, b.message);
        }
        outln!("{}", if r.ok { "ok: no target breached" } else { "FAILED: targets breached" });
    }
    Ok(ExitCode::from(if r.ok { EXIT_OK } else { EXIT_FAILED }))
}
