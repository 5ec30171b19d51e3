//! `candlelog run`: the long-running service: streams, REST gap fills, the `[run.schedule]`
//! jobs, /metrics and /health over HTTP. Stops on SIGTERM/SIGINT with exit 0.

use std::process::ExitCode;

use candlelog::config::parse_duration;
use std::sync::Arc;

use candlelog::ops::http::{DEFAULT_LISTEN, HttpContext, HttpServer, Live, parse_listen};
use candlelog::ops::jobs::JobPlan;
use candlelog::ops::run::{RunOptions, ServiceReport, serve};
use candlelog::ops::sync::Selection;
use candlelog::source::stream::MAX_STREAMS_PER_CONNECTION;
use candlelog::store::{DirLock, SERVICE_ROLE, Store};

use super::{Cli, EXIT_FAILED, EXIT_OK, print_json};

/// The exchange's USD-M stream host.
pub const DEFAULT_STREAM_URL: &str = "wss://fstream.binance.com";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The REST side, as for `sync` (symbols, intervals, exchange URL, limits of each gap fill).
    #[command(flatten)]
    pub sync: super::sync::Args,
    /// The exchange's websocket stream host (USD-M combined streams), e.g. wss://fstream.binance.com.
    #[arg(long, env = "CANDLELOG_STREAM_URL")]
    pub stream_url: Option<String>,
    /// Replace a stream connection silent for this long (e.g. 10s).
    #[arg(long)]
    pub silence_timeout: Option<String>,
    /// Serve /metrics and /health over HTTP on this address (default 127.0.0.1:9469; off: none).
    #[arg(long, env = "CANDLELOG_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

fn usage(msg: String) -> anyhow::Error {
    candlelog::Error::Usage(msg).into()
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let mut sync = super::sync::options(&args.sync, &config)?;
    sync.interrupt = super::stop_on_signals();
    let c = &config.run;
    let stream_url = args.stream_url.clone().or(c.stream_url.clone()).unwrap_or_else(|| DEFAULT_STREAM_URL.into());
    let silence_timeout = match args.silence_timeout.as_ref().or(c.silence_timeout.as_ref()) {
        Some(t) => parse_duration(t).map_err(|e| usage(format!("--silence-timeout: {e}")))?,
        None => std::time::Duration::from_secs(10),
    };
    let listen = args.listen.as_ref().or(c.listen.as_ref()).map_or(DEFAULT_LISTEN, String::as_str);
    let listen = parse_listen(listen).map_err(|e| usage(format!("--listen: {e}")))?;
    // /health judges what this service keeps: its symbols and intervals, with the service's delays.
    let mut health = candlelog::ops::health::HealthOptions::from_config(&config, true)?;
    health.symbols = match &sync.selection {
        Selection::All => None,
        Selection::List(list) => Some(list.clone()),
    };
    health.intervals = sync.intervals.clone();
    let configured = match &sync.selection {
        Selection::All => Vec::new(),
        Selection::List(list) => sync.intervals.iter().map(|&i| (i, list.len())).collect(),
    };
    let live = Arc::new(Live::default());
    let jobs = JobPlan {
        schedules: candlelog::ops::schedule::from_config(&c.schedule)?,
        targets: super::backup::configured_targets(&config, None, jiff::Timestamp::now().as_millisecond())?,
        prune_segments_days: config.backup.repositories.iter().map(|r| r.prune_segments_days).collect(),
    };
    let opts =
        RunOptions { sync, stream_url, silence_timeout, max_streams_per_connection: MAX_STREAMS_PER_CONNECTION, live: live.clone(), jobs };
    let paths = cli.paths_with(&config);
    candlelog::store::init(&paths)?;
    let lock = DirLock::exclusive_for(&paths.lock, Some(SERVICE_ROLE))?;
    let mut store = Store::open_locked(&paths, cli.store_options_with(&config), lock)?;
    super::report_open(&store);
    let server = match listen {
        Some(addr) => {
            let server = HttpServer::start(addr, HttpContext { paths: paths.clone(), configured, health, live })?;
            tracing::info!("serving /metrics and /health on http://{}", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let report = serve(&mut store, &opts);
    if let Some(s) = server {
        s.stop();
    }
    let report = report?;
    drop(store);
    candlelog::ops::runs::save(&paths.root, "service", cli.run_stamp(), &report);
    if args.sync.json {
        print_json(&report)?;
    } else {
        print_summary(&report);
    }
    Ok(ExitCode::from(match &report.error {
        Some(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
        None => EXIT_OK,
    }))
}

fn print_summary(r: &ServiceReport) {
    outln!(
        "service {}: {} symbols x {} intervals; {} candles from the stream ({} already stored, {} differing from REST), {} REST gap fills ({} candles, {} failed), {} reconnects, {} missed closes, {} malformed messages; {} scheduled jobs ({} failed); head LSN {}; stopped: {}",
        r.run_id,
        r.symbols.len(),
        r.intervals.len(),
        r.stream_candles,
        r.stream_already_stored,
        r.stream_disagreed,
        r.gap_syncs,
        r.gap_sync_candles,
        r.gap_sync_failures,
        r.stream.reconnects,
        r.stream.missed,
        r.stream.malformed,
        r.jobs.started.values().sum::<u64>(),
        r.jobs.failed.values().sum::<u64>(),
        r.head_lsn,
        r.stopped_by
    );
}
