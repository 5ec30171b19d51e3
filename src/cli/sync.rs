//! `candlelog sync`: the nightly run that keeps every configured series complete.

use std::io::IsTerminal;
use std::process::ExitCode;

use candlelog::config::{Config, DEFAULT_SYMBOLS, parse_duration};
use candlelog::event::Interval;
use candlelog::ops::sync::{Progress, RunOutcome, Selection, Since, SyncOptions, SyncReport, parse_selection, report, sync_with};

use super::{Cli, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, fmt_ms, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `all` (every TRADING USDT perpetual) or a comma-separated list; default: config, else the 60 built-in symbols.
    #[arg(long)]
    pub symbols: Option<String>,
    /// Comma-separated intervals (1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M); default 4h.
    #[arg(long)]
    pub interval: Option<String>,
    /// First run of a series: start at this date (YYYY-MM-DD or RFC 3339), or `listing` (the symbol's onboardDate).
    #[arg(long)]
    pub since: Option<String>,
    /// First run of a series without --since: the last N closed candles.
    #[arg(long)]
    pub lookback: Option<u32>,
    /// Exchange base URL.
    #[arg(long, env = "CANDLELOG_EXCHANGE_URL")]
    pub exchange_url: Option<String>,
    /// Requests in flight at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Stop fetching after this long, commit what is complete, exit 124 (e.g. 30m).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Per-request timeout (e.g. 10s).
    #[arg(long)]
    pub request_timeout: Option<String>,
    /// Share of symbols that must succeed for exit 0 (0.80 ≤ share < this: exit 0 with a warning).
    #[arg(long)]
    pub min_success: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn usage(msg: String) -> anyhow::Error {
    candlelog::Error::Usage(msg).into()
}

/// Flags, then environment (clap), then the config file, then defaults.
pub fn options(args: &Args, config: &Config) -> anyhow::Result<SyncOptions> {
    let c = &config.sync;
    let selection = match (&args.symbols, &c.symbols) {
        (Some(s), _) => parse_selection(s),
        (None, Some(list)) if list.len() == 1 && list[0].eq_ignore_ascii_case("all") => Selection::All,
        (None, Some(list)) => Selection::List(list.clone()),
        (None, None) => Selection::List(DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect()),
    };
    let mut o = SyncOptions { selection, ..SyncOptions::default() };
    let intervals: Vec<String> = match (&args.interval, &c.intervals) {
        (Some(s), _) => s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        (None, Some(v)) => v.clone(),
        (None, None) => vec!["4h".into()],
    };
    o.intervals = intervals
        .iter()
        .map(|s| {
            Interval::parse(s)
                .ok_or_else(|| usage(format!("unknown interval {s:?}; use one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M")))
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(since) = args.since.as_ref().or(c.since.as_ref()) {
        o.since = Some(parse_since(since).map_err(usage)?);
    }
    o.lookback = args.lookback.or(c.lookback).unwrap_or(o.lookback);
    if o.lookback == 0 {
        return Err(usage("--lookback must be at least 1".into()));
    }
    if let Some(url) = args.exchange_url.as_ref().or(c.exchange_url.as_ref()) {
        o.exchange_url = url.trim_end_matches('/').to_string();
    }
    o.concurrency = args.concurrency.or(c.concurrency).unwrap_or(o.concurrency);
    if o.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1".into()));
    }
    if let Some(t) = args.timeout.as_ref().or(c.timeout.as_ref()) {
        o.timeout = parse_duration(t).map_err(|e| usage(format!("--timeout: {e}")))?;
    }
    if let Some(t) = args.request_timeout.as_ref().or(c.request_timeout.as_ref()) {
        o.request_timeout = parse_duration(t).map_err(|e| usage(format!("--request-timeout: {e}")))?;
    }
    o.min_success = args.min_success.or(c.min_success).unwrap_or(o.min_success);
    if !(0.0..=1.0).contains(&o.min_success) {
        return Err(usage(format!("--min-success {} must be between 0 and 1", o.min_success)));
    }
    if let Some(m) = c.weight_margin {
        if !(0.0..0.9).contains(&m) {
            return Err(usage(format!("sync.weight_margin {m} must be in [0, 0.9)")));
        }
        o.weight_margin = m;
    }
    Ok(o)
}

fn parse_since(s: &str) -> Result<Since, String> {
    if s.eq_ignore_ascii_case("listing") {
        return Ok(Since::Listing);
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(Since::Date(ts.as_millisecond()));
    }
    let date: jiff::civil::Date =
        s.parse().map_err(|e| format!("--since {s:?}: expected YYYY-MM-DD, an RFC 3339 time or `listing` ({e})"))?;
    let ts = date.to_zoned_datetime(jiff::tz::TimeZone::UTC).map_err(|e| format!("--since {s:?}: {e}"))?;
    Ok(Since::Date(ts.timestamp().as_millisecond()))
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let mut opts = options(args, &config)?;
    opts.interrupt = super::stop_on_signals();
    let paths = cli.paths_with(&config);
    candlelog::store::init(&paths)?;
    let mut store = Store::open(&paths, cli.store_options_with(&config))?;
    super::report_open(&store);
    let mut bar = ProgressBar::new(std::io::stderr().is_terminal() && !args.json);
    let mut r = sync_with(&mut store, &opts, &mut |p| bar.show(p))?;
    let (report_path, log_path) = report::run_files(&paths.root, cli.run_stamp());
    r.report_path = Some(report_path.display().to_string());
    r.log_path = Some(log_path.display().to_string());
    if let Err(e) = report::save(&r, &report_path) {
        eprintln!("warning: could not save the run report: {e}");
    }
    record_metrics(&r);
    if let Some(e) = &r.error {
        eprintln!("error: {e}");
    }
    if args.json {
        print_json(&r)?;
    } else {
        print_summary(&r);
    }
    Ok(ExitCode::from(match r.outcome {
        RunOutcome::Success => EXIT_OK,
        RunOutcome::Partial => {
            eprintln!(
                "warning: only {:.1}% of symbols succeeded (--min-success {:.1}%); see {}",
                r.success_share * 100.0,
                r.min_success * 100.0,
                r.report_path.as_deref().unwrap_or("the report")
            );
            EXIT_OK
        }
        RunOutcome::Failed => EXIT_FAILED,
        RunOutcome::Timeout => EXIT_TIMEOUT,
        RunOutcome::Interrupted => super::exit_for_signal(opts.interrupt.signal().unwrap_or(2)),
    }))
}

use candlelog::store::Store;

fn print_summary(r: &SyncReport) {
    outln!("{:<14} {:<4} {:>6} {:>5} {:>5} {:<10} error", "symbol", "int", "new", "rev", "gaps", "status");
    for s in &r.series {
        outln!(
            "{:<14} {:<4} {:>6} {:>5} {:>5} {:<10} {}",
            s.symbol,
            s.interval,
            s.new_candles,
            s.revisions,
            s.gaps_closed,
            s.status,
            s.error.as_deref().unwrap_or("")
        );
    }
    for x in &r.rejected_symbols {
        let class = serde_json::to_value(x.class).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        outln!("{:<14} {:<4} {:>6} {:>5} {:>5} {:<10} {}", x.symbol, "-", 0, 0, 0, class, x.reason);
    }
    for f in &r.future_dated {
        outln!("warning: {f}");
    }
    for l in &r.refilled_losses {
        outln!("refilled recorded loss: {l}");
    }
    for g in &r.confirmed_gaps {
        outln!("confirmed exchange gap (recorded, never asked again): {g}");
    }
    outln!(
        "{:?}: {}/{} tradable symbols ok ({} retired, {} paused, {} invalid), {} candles appended ({} revisions, {} gap candles), {} requests, weight {}, {} rate-limited; head LSN {}; {} ms (started {})",
        r.outcome,
        r.symbols_ok,
        r.symbols_tradable,
        r.retired.len(),
        r.paused.len(),
        r.invalid.len(),
        r.candles_appended,
        r.revisions,
        r.gaps_closed,
        r.requests,
        r.weight_used,
        r.rate_limited,
        r.head_lsn,
        r.duration_ms,
        fmt_ms(r.started_ms)
    );
}

fn record_metrics(r: &SyncReport) {
    for u in r.metric_updates() {
        super::metrics::push(u);
    }
}

/// The sync's progress bar on a terminal (stderr); nothing otherwise, where
/// the library's log lines say the same.
struct ProgressBar(Option<indicatif::ProgressBar>);

impl ProgressBar {
    fn new(enabled: bool) -> ProgressBar {
        ProgressBar(enabled.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} series  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        }))
    }

    fn show(&mut self, p: Progress<'_>) {
        let Some(bar) = &self.0 else { return };
        match p {
            Progress::Planned { series } => bar.set_length(series),
            Progress::Series { symbol, interval, error, weight_used } => {
                bar.inc(1);
                bar.set_message(format!("{symbol} {interval} · weight {weight_used}"));
                if let Some(e) = error {
                    bar.println(format!("{symbol} {interval}: {e}"));
                }
            }
            Progress::Finished => bar.finish_and_clear(),
        }
    }
}
