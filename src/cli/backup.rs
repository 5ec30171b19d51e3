//! `candlelog backup --to REPO`, `backup list --from REPO`, `backup verify --from REPO [--deep]`,
//! and `candlelog restore --from REPO --into DIR [--lsn N | --as-of TIME] [--force]`.
//! Repositories are directories or s3://bucket/prefix; `[[backup.repositories]]`
//! adds snapshot retention, `--prune-segments-before DATE` segment pruning.

use std::path::PathBuf;
use std::process::ExitCode;

use candlelog::backup::object::open_repository;
use candlelog::backup::{DeltaPolicy, SnapshotPolicy, VerifyProgress, manifests, segment_objects, verify_repo_with};
use candlelog::ops::backup::{Progress, Target};
use candlelog::ops::restore::{Cut, restore};

use super::{Cli, EXIT_FAILED, EXIT_OK, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Repository: a directory or s3://bucket/prefix (repeatable: 3-2-1 = several repositories).
    #[arg(long)]
    pub to: Vec<PathBuf>,
    /// After the backup (and retention), delete from each repository the oldest segments
    /// committed entirely before DATE (RFC 3339 or YYYY-MM-DD, UTC) that no retained
    /// snapshot needs. Restores then start at the oldest snapshot. Default: keep all history.
    #[arg(long, value_name = "DATE")]
    pub prune_segments_before: Option<String>,
    /// Take a full snapshot now, never a delta of the repository's newest one
    /// (a delta holds only the pages changed since; see delta_chain_max).
    #[arg(long)]
    pub full_snapshot: bool,
    /// Take a snapshot now, whatever the repository's spacing (by default one
    /// comes once the log since the newest holds 2 % of the store; see
    /// snapshot_tail_percent). A delta when it can be.
    #[arg(long)]
    pub snapshot: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// The segments and snapshots a repository holds.
    List {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check every object's hash and size, the segments' chain and gaps; --deep unpacks and checks each snapshot.
    Verify {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        deep: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// Repository directory.
    #[arg(long)]
    pub from: PathBuf,
    /// Data directory to build (must be empty unless --force).
    #[arg(long)]
    pub into: PathBuf,
    /// Cut the log at the last frame boundary at or before this LSN.
    #[arg(long, conflicts_with = "as_of")]
    pub lsn: Option<u64>,
    /// Cut the log at the last frame committed at or before this time (RFC 3339, UTC).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Replace a non-empty --into (its contents are moved aside, not deleted).
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    match &args.action {
        Some(Action::List { from, json }) => {
            let repo = open_repository(&loc(from))?;
            candlelog::backup::check_format(repo.as_ref(), false)?;
            let start = candlelog::backup::prune::log_start(repo.as_ref())?;
            let first_seq = start.as_ref().map_or(1, |s| s.first_seq);
            let segs: Vec<_> = segment_objects(repo.as_ref())?.into_iter().filter(|s| s.0 >= first_seq).collect();
            let (snaps, bad) = manifests(repo.as_ref())?;
            // A damaged newest segment is `backup verify`'s to report: the listing goes on without the head.
            let (head, head_error) = match candlelog::backup::repo_head(repo.as_ref()) {
                Ok(h) => (h, None),
                Err(e) => (None, Some(e.to_string())),
            };
            // What a restore of the head replays on top of the newest snapshot (`snapshot_tail_percent`).
            let after_newest = head.zip(snaps.iter().map(|m| m.lsn).max()).map(|(h, lsn)| h.lsn.saturating_sub(lsn));
            if *json {
                let segs: Vec<_> = segs.iter().map(|(s, n, h)| serde_json::json!({"seq": s, "object": n, "blake3": h})).collect();
                print_json(&serde_json::json!({
                    "repository": repo_loc(from), "log_start": start, "log_head": head, "log_head_error": head_error,
                    "events_after_newest_snapshot": after_newest,
                    "segments": segs, "snapshots": snaps, "unreadable": bad
                }))?;
            } else {
                outln!("{}: {} segment(s), {} snapshot(s)", from.display(), segs.len(), snaps.len());
                if let Some(h) = &head {
                    let after = after_newest.map_or(String::new(), |n| format!("; {n} event(s) after the newest snapshot"));
                    outln!("  log head LSN {}, committed {} (segment {}){after}", h.lsn, super::fmt_ms(h.commit_ms), h.seq);
                }
                if let Some(e) = &head_error {
                    outln!("  log head UNREADABLE: {e}; run `candlelog backup verify --from {}`", from.display());
                }
                if let Some(s) = &start {
                    outln!(
                        "  log starts at segment {} (LSN {}): older segments were pruned{}",
                        s.first_seq,
                        s.first_lsn,
                        if s.pruned_before_ms > 0 {
                            format!(" (committed before {})", super::fmt_ms(s.pruned_before_ms))
                        } else {
                            String::new()
                        }
                    );
                }
                for m in &snaps {
                    let kind = m.parent.as_ref().map_or(String::new(), |p| format!("  (delta of {p})"));
                    outln!(
                        "  snapshot LSN {:>10}  {} bytes  created {}  {}{kind}",
                        m.lsn,
                        m.file_bytes,
                        super::fmt_ms(m.created_ms),
                        m.file
                    );
                }
                for b in &bad {
                    outln!("  UNREADABLE {b}");
                }
            }
            Ok(ExitCode::from(EXIT_OK))
        }
        Some(Action::Verify { from, deep, json }) => {
            let bar = VerifyBar::new(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !*json);
            let r = verify_repo_with(open_repository(&loc(from))?.as_ref(), *deep, &mut |p| bar.show(p));
            bar.finish();
            let r = r?;
            if *json {
                print_json(&r)?;
            } else {
                for p in &r.problems {
                    outln!("PROBLEM {p}");
                }
                outln!(
                    "{}: {} segment(s) up to LSN {}, {} snapshot(s)",
                    if r.ok { "ok" } else { "FAILED" },
                    r.segments,
                    r.head_lsn,
                    r.snapshots
                );
            }
            Ok(ExitCode::from(if r.ok { EXIT_OK } else { EXIT_FAILED }))
        }
        None => {
            let config = cli.config()?;
            let prune_before = args.prune_segments_before.as_deref().map(parse_date).transpose()?;
            let now = jiff::Timestamp::now().as_millisecond();
            let targets: Vec<Target> = if args.to.is_empty() {
                configured_targets(&config, prune_before, now)?
            } else {
                // A repository the config lists keeps its snapshot settings (spacing, deltas) under --to, as the
                // shipped units name it; its retention and pruning run only without --to (or with the flag).
                let configured = configured_targets(&config, None, now)?;
                let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
                args.to
                    .iter()
                    .map(|p| {
                        let location = loc(p);
                        let listed = configured.iter().find(|t| same(&t.location, &location));
                        let policy = listed.map_or_else(SnapshotPolicy::default, |t| t.policy);
                        Target { location, keep_days: None, prune_before_ms: prune_before, policy }
                    })
                    .collect()
            };
            if targets.is_empty() {
                return Err(candlelog::Error::Usage("backup needs --to REPO or [[backup.repositories]] in the config".into()).into());
            }
            let mut targets = targets;
            for t in &mut targets {
                if args.snapshot || args.full_snapshot {
                    t.policy = SnapshotPolicy { delta: t.policy.delta, ..SnapshotPolicy::every_backup() };
                }
                if args.full_snapshot {
                    t.policy.delta.chain_max = 0;
                }
            }
            let mut store = cli.open_store()?;
            let json = args.json;
            let run = candlelog::ops::backup::run(&mut store, &targets, cli.run_stamp(), &mut |p| print_progress(p, json))?;
            for u in &run.metrics {
                super::metrics::push(u.clone());
            }
            if args.json {
                print_json(&run.repositories)?;
            }
            Ok(ExitCode::from(if run.ok { EXIT_OK } else { EXIT_FAILED }))
        }
    }
}

/// The `[[backup.repositories]]` as backup targets with their policies (`prune_before`,
/// from `--prune-segments-before`, wins over their `prune_segments_days`).
pub fn configured_targets(
    config: &candlelog::config::Config,
    prune_before: Option<i64>,
    now: i64,
) -> Result<Vec<Target>, candlelog::Error> {
    config
        .backup
        .repositories
        .iter()
        .map(|r| {
            let every = r
                .snapshot_every
                .as_deref()
                .map(candlelog::config::parse_duration)
                .transpose()
                .map_err(|e| candlelog::Error::Usage(format!("[[backup.repositories]] {}: snapshot_every: {e}", r.path.display())))?;
            let defaults = DeltaPolicy::default();
            let delta = DeltaPolicy {
                chain_max: r.delta_chain_max.unwrap_or(defaults.chain_max),
                max_percent: r.delta_max_percent.unwrap_or(defaults.max_percent),
            };
            if let Some(p) = r.snapshot_tail_percent
                && p > 100
            {
                return Err(candlelog::Error::Usage(format!(
                    "[[backup.repositories]] {}: snapshot_tail_percent = {p} is not a percentage from 0 (a snapshot at every backup) to 100",
                    r.path.display()
                )));
            }
            if !(1..=100).contains(&delta.max_percent) {
                return Err(candlelog::Error::Usage(format!(
                    "[[backup.repositories]] {}: delta_max_percent = {} is not a percentage from 1 to 100",
                    r.path.display(),
                    delta.max_percent
                )));
            }
            Ok(Target {
                location: loc(&r.path),
                keep_days: r.keep_days,
                // The flag wins over the repository's `prune_segments_days`.
                prune_before_ms: prune_before.or(r.prune_segments_days.map(|d| now - i64::from(d) * 86_400_000)),
                policy: SnapshotPolicy::configured(every.map(|d| d.as_millis() as i64), r.snapshot_tail_percent, delta),
            })
        })
        .collect()
}

fn print_progress(p: Progress<'_>, json: bool) {
    match p {
        Progress::Failed { repository, error } => eprintln!("error: backup to {repository}: {error}"),
        Progress::Retained { repository, manifest } => eprintln!("retention: removed snapshot {manifest} from {repository}"),
        Progress::Pruned { repository, report: p } => eprintln!(
            "prune: removed {} segment(s) ({} bytes) from {repository}; the log there starts at segment {}{}",
            p.pruned.len(),
            p.bytes,
            p.first_seq,
            if p.kept_because.is_empty() { String::new() } else { format!(" ({})", p.kept_because) }
        ),
        Progress::Done { report: r, summary } if !json => outln!(
            "{}: {} segment(s) uploaded, {} already there, {} bytes; {summary}",
            r.repository,
            r.segments_uploaded,
            r.segments_present,
            r.bytes_uploaded,
        ),
        Progress::Done { .. } => {}
    }
}

/// `backup verify`'s progress bar on a terminal (stderr): segments walked,
/// then snapshots checked. Nothing when stderr is not a terminal or with --json.
struct VerifyBar(Option<indicatif::ProgressBar>);

impl VerifyBar {
    fn new(enabled: bool) -> VerifyBar {
        VerifyBar(enabled.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        }))
    }

    fn show(&self, p: VerifyProgress) {
        let Some(bar) = &self.0 else { return };
        let (done, total, what) = match p {
            VerifyProgress::Segments { done, total } => (done, total, "segments"),
            VerifyProgress::Snapshots { done, total } => (done, total, "snapshots"),
        };
        if bar.length() != Some(total) || bar.message() != what {
            bar.set_length(total);
            bar.set_message(what);
        }
        bar.set_position(done);
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A repository location as given: a directory or `s3://bucket/prefix`.
fn loc(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn repo_loc(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `--prune-segments-before`: RFC 3339, or a date meaning its midnight UTC.
fn parse_date(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let d: jiff::civil::Date = s.parse().map_err(|e| {
        candlelog::Error::Usage(format!("--prune-segments-before {s:?}: {e} (use YYYY-MM-DD or RFC 3339, e.g. 2026-01-01T00:00:00Z)"))
    })?;
    let t = jiff::tz::TimeZone::UTC
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|e| candlelog::Error::Usage(format!("--prune-segments-before {s:?}: {e}")))?;
    Ok(t.as_millisecond())
}

pub fn run_restore(_cli: &Cli, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let cut = match (&args.lsn, &args.as_of) {
        (Some(n), _) => Cut::Lsn(*n),
        (None, Some(t)) => {
            let ts: jiff::Timestamp =
                t.parse().map_err(|e| candlelog::Error::Usage(format!("--as-of {t:?}: {e} (use RFC 3339, e.g. 2026-03-01T01:05:00Z)")))?;
            Cut::AsOf(ts.as_millisecond())
        }
        (None, None) => Cut::Head,
    };
    let r = restore(open_repository(&loc(&args.from))?.as_ref(), &args.into, cut, args.force)?;
    if args.json {
        print_json(&r)?;
    } else {
        for s in &r.steps {
            outln!("{:<17} {:>7} ms  {}", s.name, s.ms, s.detail);
        }
        for x in &r.rejected_snapshots {
            outln!("snapshot refused: {x}");
        }
        outln!(
            "restored {} up to LSN {} (hash {}) from {} segment(s){}{} in {} ms",
            r.into,
            r.head_lsn,
            r.head_hash,
            r.segments,
            r.snapshot_lsn.map(|l| format!(", snapshot at LSN {l}")).unwrap_or_default(),
            r.previous_moved_to.as_deref().map(|p| format!("; previous contents moved to {p}")).unwrap_or_default(),
            r.elapsed_ms
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// Repository directory whose newest backup is restored and checked.
    #[arg(long)]
    pub from: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// `candlelog drill --from REPO`: exit 0 when the restored copy verifies and equals the live log.
pub fn run_drill(cli: &Cli, args: &DrillArgs) -> anyhow::Result<ExitCode> {
    let paths = cli.paths_with(&cli.config()?);
    let r = candlelog::ops::drill::drill(&paths, open_repository(&loc(&args.from))?.as_ref())?;
    if let Some(w) = candlelog::ops::drill::record(&paths, cli.store_options_with(&cli.config()?), &r, cli.run_stamp()) {
        eprintln!("warning: {w}");
    }
    if args.json {
        print_json(&r)?;
    } else {
        for p in &r.problems {
            outln!("PROBLEM {p}");
        }
        outln!(
            "{}: restored LSN {}{} from {} in {} ms (the measured RTO); {} table(s) compared with the live log in {} ms",
            if r.ok { "ok" } else { "FAILED" },
            r.restored_lsn,
            r.snapshot_lsn.map(|l| format!(" (snapshot at LSN {l})")).unwrap_or_default(),
            r.repository,
            r.rto_ms,
            r.tables_compared,
            r.compare_ms
        );
    }
    Ok(ExitCode::from(if r.ok { EXIT_OK } else { EXIT_FAILED }))
}

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// Repository directories to take good copies from (repeatable).
    #[arg(long)]
    pub from: Vec<PathBuf>,
    /// Afterwards, catch up from the exchange (the sync's options from the config).
    #[arg(long)]
    pub sync: bool,
    #[arg(long)]
    pub json: bool,
}

/// `candlelog recover [--from REPO]... [--sync] [--json]`: exit 0 only when the final deep verify passes.
pub fn run_recover(cli: &Cli, args: &RecoverArgs) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let paths = cli.paths_with(&config);
    let repos: Vec<Box<dyn candlelog::backup::Repository>> =
        args.from.iter().map(|p| open_repository(&loc(p))).collect::<Result<_, _>>()?;
    let refs: Vec<&dyn candlelog::backup::Repository> = repos.iter().map(|r| r.as_ref()).collect();
    let mut r = candlelog::ops::recover::recover(&paths, &refs, cli.store_options_with(&config))?;
    if args.sync {
        let sync_args = super::sync::Args {
            symbols: None,
            interval: None,
            since: None,
            lookback: None,
            exchange_url: std::env::var("CANDLELOG_EXCHANGE_URL").ok(),
            concurrency: None,
            timeout: None,
            request_timeout: None,
            min_success: None,
            json: true,
        };
        let sync = super::sync::options(&sync_args, &config)?;
        candlelog::ops::recover::catch_up(&paths, cli.store_options_with(&config), &sync, &mut r)?;
    }
    if args.json {
        print_json(&r)?;
    } else {
        for s in &r.steps {
            outln!("{:<17} {:>7} ms  {}", s.name, s.ms, s.detail);
        }
        for x in r.replaced_segments.iter().chain(&r.fetched_segments) {
            outln!("segment from backup: {x}");
        }
        for x in &r.truncated {
            outln!("truncated: {x}");
        }
        for x in &r.quarantined {
            outln!("quarantined: {x}");
        }
        for x in &r.repaired {
            outln!("repaired: {x}");
        }
        for x in &r.losses {
            outln!("LOSS recorded in the log: {x}");
        }
        for x in &r.rejected_snapshots {
            outln!("snapshot refused: {x}");
        }
        for p in &r.problems {
            outln!("PROBLEM {p}");
        }
        outln!("{}: head LSN {} after {} ms (the measured RTO)", if r.ok { "recovered" } else { "FAILED" }, r.head_lsn, r.total_ms);
    }
    Ok(ExitCode::from(if r.ok { EXIT_OK } else { EXIT_FAILED }))
}
