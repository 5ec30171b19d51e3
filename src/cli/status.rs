//! `candlelog status [--json]`.

use std::process::ExitCode;

use candlelog::ops::status::status;

use super::{Cli, EXIT_OK, fmt_ms, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let r = status(&cli.paths_with(&cli.config()?))?;
    if args.json {
        print_json(&r)?;
        return Ok(ExitCode::from(EXIT_OK));
    }
    outln!("data directory  {}", r.data_dir);
    outln!("head            LSN {}  hash {}", r.head_lsn, r.head_hash);
    outln!("log             {} segment(s), {} sealed, {} bytes", r.segments, r.sealed_segments, r.log_bytes);
    if let Some(t) = r.torn_tail_bytes {
        outln!("torn tail       {t} bytes (truncated by the next writer)");
    }
    let lag = r.projection_lag.map(|l| format!("lag {l}")).unwrap_or_else(|| "missing".into());
    outln!("projection      {}  LSN {}  {lag}", r.projection, r.projection_lsn.map(|l| l.to_string()).unwrap_or("-".into()));
    outln!("candles         {} ({} revisions)", r.candles, r.revisions);
    for (i, s) in &r.intervals {
        outln!("  {i:<4} {} symbol(s), {} candles, {} revisions", s.symbols, s.candles, s.revisions);
    }
    for s in &r.series {
        outln!(
            "  {:<14} {:<4} {:>8} candles {:>4} rev  {} .. {}",
            s.symbol,
            s.interval,
            s.candles,
            s.revisions,
            fmt_ms(s.first_open),
            fmt_ms(s.last_open)
        );
    }
    if !r.confirmed_gaps.is_empty() {
        outln!("confirmed exchange gaps (the exchange has no candles there)");
    }
    for g in &r.confirmed_gaps {
        outln!("  {:<14} {:<4} {:>8} candles  {} .. {}", g.symbol, g.interval, g.candles, fmt_ms(g.first_open), fmt_ms(g.last_open));
    }
    for u in &r.untradable {
        outln!("not tradable    {} ({}, by the last sync naming it)", u.symbol, u.class);
    }
    Ok(ExitCode::from(EXIT_OK))
}
