//! `candlelog init`: create the data directory.

use std::process::ExitCode;

use super::{Cli, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(cli: &Cli, _args: &Args) -> anyhow::Result<ExitCode> {
    let paths = cli.paths_with(&cli.config()?);
    candlelog::store::init(&paths)?;
    // Opening creates the index and the projection and proves the directory is writable.
    let store = cli.open_store()?;
    outln!("initialised {} (head LSN {})", paths.root.display(), store.head().lsn);
    Ok(ExitCode::from(EXIT_OK))
}
