//! `candlelog rebuild`: drop and rebuild the projection and the index from the log.
//! A projection or index too damaged to open or drop is moved to
//! `DIR/quarantine/<stamp>/` first (only candlelog's own files: a projection
//! inside an agent database is never moved).

use std::process::ExitCode;
use std::time::Instant;

use candlelog::store::{Paths, Store, StoreOptions, quarantine};
use serde_json::json;

use super::{Cli, EXIT_OK, print_json, report_open};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

fn owned_files(cli: &Cli, paths: &Paths) -> Vec<std::path::PathBuf> {
    let mut files = vec![paths.index.clone()];
    if paths.projection == cli.data_dir.join("candles.sqlite") {
        files.push(paths.projection.clone());
    }
    files
}

fn attempt(paths: &Paths, opts: StoreOptions) -> candlelog::Result<(Store, candlelog::store::RebuildStats)> {
    let mut store = Store::open_raw(paths, opts)?;
    let stats = store.rebuild()?;
    Ok((store, stats))
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = cli.config()?;
    let paths = cli.paths_with(&config);
    let opts = cli.store_options_with(&config);
    let (store, s) = match attempt(&paths, opts) {
        Ok(x) => x,
        Err(e @ (candlelog::Error::Projection(_) | candlelog::Error::Index(_))) => {
            let files = owned_files(cli, &paths);
            let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
            let dir = quarantine(&paths, &refs)?;
            eprintln!("warning: {e}\nwarning: moved the damaged projection/index to {} and rebuilding from the log", dir.display());
            attempt(&paths, opts)?
        }
        Err(e) => return Err(e.into()),
    };
    report_open(&store);
    let ms = started.elapsed().as_millis() as u64;
    if args.json {
        print_json(&json!({"ok": true, "events": s.events, "candles": s.candles, "head_lsn": s.head.lsn, "elapsed_ms": ms}))?;
    } else {
        println!("rebuilt from {} events ({} candles) up to LSN {} in {ms} ms", s.events, s.candles, s.head.lsn);
    }
    Ok(ExitCode::from(EXIT_OK))
}
