//! The `candlelog` binary: parse the command line, set up logging on stderr,
//! call the library, map the outcome to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_panics_in_redb();
    let cli = cli::Cli::parse();
    init_logging(&cli);
    let result = cli::run(&cli);
    cli::metrics::after(&cli, result.is_err());
    match result {
        Ok(code) => code,
        // Output cut short by its reader (`| head`): nothing went wrong here.
        Err(err) if cli::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) if matches!(cli.command, cli::Command::Health(_)) => {
            // Monitoring agents read health's exit code: an error means UNKNOWN.
            eprintln!("UNKNOWN: {err:#}");
            ExitCode::from(3)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}

/// Logs go to stderr; a sync also keeps its own log in `DIR/runs/<stamp>.log`.
fn init_logging(cli: &cli::Cli) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    // Unattended syncs log a line per series; on a terminal the progress bar says it.
    let sync_quiet = matches!(cli.command, cli::Command::Sync(_)) && std::io::stderr().is_terminal();
    let default = match cli.verbose {
        0 if cli.run_log_path().is_some() && !sync_quiet => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);
    let file = cli.run_log_path().and_then(|path| {
        std::fs::create_dir_all(path.parent()?).ok()?;
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&path).ok()?;
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .with_target(false)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        Some(layer)
    });
    tracing_subscriber::registry().with(stderr).with(file).init();
}

/// A damaged index makes redb panic; the library catches that and reports it
/// as an error naming the index, so the panic's own message would only be
/// noise. Every other panic (a bug) is printed as usual.
fn quiet_panics_in_redb() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_redb = info.location().is_some_and(|l| l.file().contains("/redb-") || l.file().contains("\\redb-"));
        if !in_redb {
            default(info);
        }
    }));
}
