//! `candlelog backup --to REPO`, `backup list --from REPO`, `backup verify --from REPO [--deep]`,
//! and `candlelog restore --from REPO --into DIR [--lsn N | --as-of TIME] [--force]`.
//! Repositories are directories or s3://bucket/prefix; `[[backup.repositories]]`
//! adds snapshot retention, `--prune-segments-before DATE` segment pruning.

use std::path::PathBuf;
use std::process::ExitCode;

use candlelog::backup::object::open_repository;
use candlelog::backup::restore::{Cut, restore};
use candlelog::backup::{SnapshotPolicy, backup_with, manifests, segment_objects, verify_repo};
use candlelog::event::{Event, Outcome, OutcomeStatus, Run, RunKind};

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

/// One repository a backup writes to, with its policies.
struct Target {
    to: PathBuf,
    keep_days: Option<u32>,
    prune_days: Option<u32>,
    policy: SnapshotPolicy,
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
            if *json {
                let segs: Vec<_> = segs.iter().map(|(s, n, h)| serde_json::json!({"seq": s, "object": n, "blake3": h})).collect();
                print_json(&serde_json::json!({
                    "repository": repo_loc(from), "log_start": start, "segments": segs, "snapshots": snaps, "unreadable": bad
                }))?;
            } else {
                println!("{}: {} segment(s), {} snapshot(s)", from.display(), segs.len(), snaps.len());
                if let Some(s) = &start {
                    println!(
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
                    println!("  snapshot LSN {:>10}  {} bytes  created {}  {}", m.lsn, m.file_bytes, super::fmt_ms(m.created_ms), m.file);
                }
                for b in &bad {
                    println!("  UNREADABLE {b}");
                }
            }
            Ok(ExitCode::from(EXIT_OK))
        }
        Some(Action::Verify { from, deep, json }) => {
            let r = verify_repo(open_repository(&loc(from))?.as_ref(), *deep)?;
            if *json {
                print_json(&r)?;
            } else {
                for p in &r.problems {
                    println!("PROBLEM {p}");
                }
                println!(
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
            let targets: Vec<Target> = if args.to.is_empty() {
                config
                    .backup
                    .repositories
                    .iter()
                    .map(|r| {
                        let every = r.snapshot_every.as_deref().map(candlelog::config::parse_duration).transpose().map_err(|e| {
                            candlelog::Error::Usage(format!("[[backup.repositories]] {}: snapshot_every: {e}", r.path.display()))
                        })?;
                        Ok(Target {
                            to: r.path.clone(),
                            keep_days: r.keep_days,
                            prune_days: r.prune_segments_days,
                            policy: SnapshotPolicy { every_ms: every.map(|d| d.as_millis() as i64) },
                        })
                    })
                    .collect::<Result<_, candlelog::Error>>()?
            } else {
                args.to
                    .iter()
                    .map(|p| Target { to: p.clone(), keep_days: None, prune_days: None, policy: SnapshotPolicy::default() })
                    .collect()
            };
            if targets.is_empty() {
                return Err(candlelog::Error::Usage("backup needs --to REPO or [[backup.repositories]] in the config".into()).into());
            }
            let prune_before = args.prune_segments_before.as_deref().map(parse_date).transpose()?;
            let mut store = cli.open_store()?;
            let mut reports = Vec::new();
            let started_ms = jiff::Timestamp::now().as_millisecond();
            let mut outcomes = Vec::new();
            let mut failures = Vec::new();
            for Target { to, keep_days, prune_days, policy } in &targets {
                // The flag wins over the repository's `prune_segments_days`.
                let prune_before = prune_before.or(prune_days.map(|d| jiff::Timestamp::now().as_millisecond() - i64::from(d) * 86_400_000));
                // One repository failing (a full disk, an unreachable bucket) does not stop the others.
                let done = open_repository(&loc(to)).and_then(|repo| backup_with(&mut store, repo.as_ref(), *policy).map(|r| (repo, r)));
                let (repo, mut r) = match done {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("error: backup to {}: {e}", loc(to));
                        failures.push(serde_json::json!({"repository": loc(to), "error": e.to_string()}));
                        outcomes.push(Outcome {
                            unit: loc(to),
                            interval: None,
                            status: OutcomeStatus::Failed,
                            appended: 0,
                            revisions: 0,
                            message: e.to_string(),
                        });
                        continue;
                    }
                };
                // Retention and pruning run after the backup is safely written; their
                // failure marks this repository's outcome failed, the others go on.
                let mut tidy_error = None;
                if let Some(days) = keep_days {
                    match candlelog::backup::apply_retention(repo.as_ref(), *days, jiff::Timestamp::now().as_millisecond()) {
                        Ok(removed) => {
                            for m in removed {
                                eprintln!("retention: removed snapshot {m} from {}", to.display());
                                r.retention_removed.push(m);
                            }
                        }
                        Err(e) => tidy_error = Some(format!("retention: {e}")),
                    }
                }
                if let (Some(before), None) = (prune_before, &tidy_error) {
                    match candlelog::backup::prune::prune_segments(repo.as_ref(), before) {
                        Ok(p) => {
                            eprintln!(
                                "prune: removed {} segment(s) ({} bytes) from {}; the log there starts at segment {}{}",
                                p.pruned.len(),
                                p.bytes,
                                loc(to),
                                p.first_seq,
                                if p.kept_because.is_empty() { String::new() } else { format!(" ({})", p.kept_because) }
                            );
                            r.pruned = Some(p);
                        }
                        Err(e) => tidy_error = Some(format!("prune: {e}")),
                    }
                }
                let snapshot = match (&r.snapshot, &r.snapshot_skipped) {
                    (Some(m), _) => format!("snapshot at LSN {}", m.lsn),
                    (None, Some(why)) => format!("no snapshot: {why}"),
                    (None, None) => "no snapshot".to_string(),
                };
                let summary = format!("{snapshot}, {} bytes uploaded", r.bytes_uploaded);
                if let Some(e) = &tidy_error {
                    eprintln!("error: backup to {}: {e}", loc(to));
                    failures.push(serde_json::json!({"repository": loc(to), "error": e}));
                }
                outcomes.push(Outcome {
                    unit: r.repository.clone(),
                    interval: None,
                    status: if tidy_error.is_some() { OutcomeStatus::Failed } else { OutcomeStatus::Ok },
                    appended: r.segments_uploaded,
                    revisions: 0,
                    message: tidy_error.map_or(summary.clone(), |e| format!("{summary}; {e}")),
                });
                if !args.json {
                    println!(
                        "{}: {} segment(s) uploaded, {} already there, {} bytes; {snapshot}",
                        r.repository, r.segments_uploaded, r.segments_present, r.bytes_uploaded,
                    );
                }
                let label = format!("{{repository=\"{}\"}}", r.repository.replace('\\', "\\\\").replace('"', "\\\""));
                super::metrics::push(candlelog::ops::metrics::Update::set(
                    format!("candlelog_backup_last_success_timestamp_seconds{label}"),
                    jiff::Timestamp::now().as_second() as f64,
                ));
                if !loc(to).starts_with("s3://") {
                    super::metrics::push(candlelog::ops::metrics::Update::set(
                        format!("candlelog_backup_bytes{label}"),
                        repo_bytes(to) as f64,
                    ));
                }
                reports.push(r);
            }
            // The run goes into the log's history (event format 2: a backup run kind).
            let failed = outcomes.iter().any(|o| o.status == OutcomeStatus::Failed);
            let run = Run {
                kind: RunKind::Backup,
                id: format!("backup-{started_ms}-{}", std::process::id()),
                started_ms,
                ended_ms: jiff::Timestamp::now().as_millisecond(),
                outcomes,
            };
            let ended_ms = run.ended_ms;
            store.append(&[Event::Run(run)])?;
            let saved = serde_json::json!({
                "ok": !failed, "started_ms": started_ms, "ended_ms": ended_ms, "repositories": reports, "failures": failures,
            });
            save_run_report(&store.paths().root, "backup", cli.run_stamp(), &saved);
            if args.json {
                print_json(&reports)?;
            }
            Ok(ExitCode::from(if failed { EXIT_FAILED } else { EXIT_OK }))
        }
    }
}

/// Bytes a repository directory holds.
fn repo_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A repository location as given: a directory or `s3://bucket/prefix`.
fn loc(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn repo_loc(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Saves a run's report as `DIR/runs/<kind>-<stamp>.json`, beside the sync
/// reports (`sla` reads the drills' from there), keeping the newest 90 of the
/// kind. A failure to save is a warning.
fn save_run_report(data_dir: &std::path::Path, kind: &str, stamp: &str, report: &impl serde::Serialize) {
    let dir = data_dir.join("runs");
    let file = dir.join(format!("{kind}-{stamp}.json"));
    let saved = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, serde_json::to_vec_pretty(report).unwrap_or_default()));
    if let Err(e) = saved {
        eprintln!("warning: could not save the {kind} report {}: {e}", file.display());
    }
    if let Err(e) = candlelog::ops::sync::report::prune(&dir, candlelog::ops::sync::report::KEEP_RUNS) {
        eprintln!("warning: could not prune old run reports in {}: {e}", dir.display());
    }
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
        println!(
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
    let r = candlelog::backup::drill::drill(&paths, open_repository(&loc(&args.from))?.as_ref())?;
    // Into the log's history too (event format 2); a writer running right now only costs the record.
    let run = Run {
        kind: RunKind::Drill,
        id: format!("drill-{}-{}", r.ended_ms, std::process::id()),
        started_ms: r.ended_ms - (r.rto_ms + r.compare_ms) as i64,
        ended_ms: r.ended_ms,
        outcomes: vec![Outcome {
            unit: r.repository.clone(),
            interval: None,
            status: if r.ok { OutcomeStatus::Ok } else { OutcomeStatus::Failed },
            appended: 0,
            revisions: 0,
            message: format!(
                "restored LSN {} in {} ms (RTO){}",
                r.restored_lsn,
                r.rto_ms,
                r.problems.first().map(|p| format!("; {p}")).unwrap_or_default()
            ),
        }],
    };
    match candlelog::store::Store::open(&paths, cli.store_options_with(&cli.config()?)) {
        Ok(mut store) => {
            if let Err(e) = store.append(&[Event::Run(run)]) {
                eprintln!("warning: the drill's Run record was not written: {e}");
            }
        }
        Err(e) => eprintln!("warning: the drill's Run record was not written: {e}"),
    }
    // Kept beside the sync reports: `sla` audits the drills from here.
    save_run_report(&paths.root, "drill", cli.run_stamp(), &r);
    if args.json {
        print_json(&r)?;
    } else {
        for p in &r.problems {
            println!("PROBLEM {p}");
        }
        println!(
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
        args.from.iter().map(|p| open_repository(&loc(p))).collect::<candlelog::Result<_>>()?;
    let refs: Vec<&dyn candlelog::backup::Repository> = repos.iter().map(|r| r.as_ref()).collect();
    let mut r = candlelog::backup::recover::recover(&paths, &refs, cli.store_options_with(&config))?;
    if args.sync && r.ok {
        let t = std::time::Instant::now();
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
        let opts = super::sync::options(&sync_args, &config)?;
        let mut store = candlelog::store::Store::open(&paths, cli.store_options_with(&config))?;
        let s = candlelog::ops::sync::sync(&mut store, &opts)?;
        r.head_lsn = s.head_lsn;
        r.steps.push(candlelog::backup::recover::Step {
            name: "sync",
            ms: t.elapsed().as_millis() as u64,
            detail: format!("{:?}: {} candles appended", s.outcome, s.candles_appended),
        });
        if !s.ok {
            r.ok = false;
            r.problems.push(format!("catch-up sync ended {:?}", s.outcome));
        }
    }
    if args.json {
        print_json(&r)?;
    } else {
        for s in &r.steps {
            println!("{:<17} {:>7} ms  {}", s.name, s.ms, s.detail);
        }
        for x in r.replaced_segments.iter().chain(&r.fetched_segments) {
            println!("segment from backup: {x}");
        }
        for x in &r.truncated {
            println!("truncated: {x}");
        }
        for x in &r.quarantined {
            println!("quarantined: {x}");
        }
        for p in &r.problems {
            println!("PROBLEM {p}");
        }
        println!("{}: head LSN {} after {} ms (the measured RTO)", if r.ok { "recovered" } else { "FAILED" }, r.head_lsn, r.total_ms);
    }
    Ok(ExitCode::from(if r.ok { EXIT_OK } else { EXIT_FAILED }))
}
