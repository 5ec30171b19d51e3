//! `candlelog verify [--deep] [--json]`: the integrity audit; exit 1 on any problem.

use std::process::ExitCode;

use candlelog::ops::verify::verify;

use super::{Cli, EXIT_FAILED, EXIT_OK, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also decode every event, compare the projection's rows with a replay, check what integrity_check checks (quick_check and every index against its table), report gaps.
    #[arg(long)]
    pub deep: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let r = verify(&cli.paths_with(&cli.config()?), args.deep)?;
    super::metrics::push(candlelog::ops::metrics::Update::set("candlelog_integrity_ok", if r.ok { 1.0 } else { 0.0 }));
    super::metrics::push(candlelog::ops::metrics::Update::add("candlelog_integrity_failures_total", if r.ok { 0.0 } else { 1.0 }));
    if args.json {
        print_json(&r)?;
    } else {
        for p in &r.problems {
            outln!(
                "PROBLEM {}: {}{}{}: {}",
                p.kind,
                p.path,
                p.offset.map(|o| format!(" at byte offset {o}")).unwrap_or_default(),
                p.lsn.map(|l| format!(" (LSN {l})")).unwrap_or_default(),
                p.message
            );
        }
        for w in &r.warnings {
            outln!("warning {}: {}: {}", w.kind, w.path, w.message);
        }
        for g in &r.gaps {
            outln!(
                "gap {} {}: {} candle(s) missing, open times {}..={}",
                g.symbol,
                g.interval,
                g.missing,
                super::fmt_ms(g.from),
                super::fmt_ms(g.to)
            );
        }
        let what = if r.deep { format!(", {} events decoded, {} candles", r.events, r.candles) } else { String::new() };
        outln!(
            "{}: {} segment(s), {} frame(s), {} bytes{what}; head LSN {} hash {}; {} problem(s)",
            if r.ok { "ok" } else { "FAILED" },
            r.segments,
            r.frames,
            r.bytes,
            r.head_lsn,
            r.head_hash,
            r.problems.len()
        );
    }
    Ok(ExitCode::from(if r.ok { EXIT_OK } else { EXIT_FAILED }))
}
