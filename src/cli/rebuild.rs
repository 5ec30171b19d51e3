//! `candlelog rebuild`: drop and rebuild the projection and the index from the log.

use std::process::ExitCode;
use std::time::Instant;

use candlelog::store::Store;
use serde_json::json;

use super::{Cli, EXIT_OK, print_json, report_open};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut store = Store::open_raw(&cli.paths_with(&cli.config()?), cli.store_options_with(&cli.config()?))?;
    report_open(&store);
    let s = store.rebuild()?;
    let ms = started.elapsed().as_millis() as u64;
    if args.json {
        print_json(&json!({"ok": true, "events": s.events, "candles": s.candles, "head_lsn": s.head.lsn, "elapsed_ms": ms}))?;
    } else {
        println!("rebuilt from {} events ({} candles) up to LSN {} in {ms} ms", s.events, s.candles, s.head.lsn);
    }
    Ok(ExitCode::from(EXIT_OK))
}
