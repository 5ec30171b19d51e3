//! `candlelog rebuild`: drop and rebuild the projection and the index from the
//! log (src/ops/rebuild.rs holds the quarantine policy).

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use super::{Cli, EXIT_OK, print_json, report_open};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = cli.config()?;
    let paths = cli.paths_with(&config);
    let owns_projection = paths.projection == cli.data_dir.join("candles.sqlite");
    let r = candlelog::ops::rebuild::rebuild(&paths, cli.store_options_with(&config), owns_projection)?;
    if let Some((dir, why)) = &r.quarantined {
        eprintln!("warning: {why}\nwarning: moved the damaged projection/index to {} and rebuilding from the log", dir.display());
    }
    report_open(&r.store);
    let s = r.stats;
    let ms = started.elapsed().as_millis() as u64;
    if args.json {
        print_json(&json!({"ok": true, "events": s.events, "candles": s.candles, "head_lsn": s.head.lsn, "elapsed_ms": ms}))?;
    } else {
        outln!("rebuilt from {} events ({} candles) up to LSN {} in {ms} ms", s.events, s.candles, s.head.lsn);
    }
    Ok(ExitCode::from(EXIT_OK))
}
