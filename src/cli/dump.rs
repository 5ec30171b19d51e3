//! `candlelog dump [--events] [SEGMENT...]`: frames and events for inspection.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Cli, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Segment files or numbers; default every segment of the data directory.
    pub segments: Vec<String>,
    /// Decode and print every event.
    #[arg(long)]
    pub events: bool,
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let paths = cli.paths_with(&cli.config()?);
    let files: Vec<PathBuf> = if args.segments.is_empty() {
        candlelog::log::segment::list_segments(&paths.log)?.into_iter().map(|(_, p)| p).collect()
    } else {
        args.segments
            .iter()
            .map(|s| match s.parse::<u64>() {
                Ok(n) => candlelog::log::segment::segment_path(&paths.log, n),
                Err(_) => PathBuf::from(s),
            })
            .collect()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    candlelog::ops::dump::dump(&files, args.events, args.json, &mut out)?;
    Ok(ExitCode::from(EXIT_OK))
}
