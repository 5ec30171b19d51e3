//! `import`: data.binance.vision archives (or saved klines JSON) into the log.
//!
//! A parser thread reads, checks and validates files while this thread plans
//! (de-duplicates), commits and applies them: files are grouped into one
//! commit — one fdatasync — and a file is reported committed only after the
//! fsync of the group that holds it. A bad file fails alone. Each commit's
//! index apply runs on its own thread while the next group is planned
//! (`Store::append_index_behind`).

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::event::{Event, Lsn, Outcome, OutcomeStatus, Run, RunKind};
use crate::log::writer::now_ms;
use crate::source::{ParsedFile, SourceError, SourceFormat, read_path};
use crate::store::{IngestStats, Overlay, Store};

/// Tunables of an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub format: SourceFormat,
    /// Commit once this many candle events are pending.
    pub group_events: usize,
    /// Commit once this many files are pending.
    pub group_files: usize,
    /// An archive without a `.CHECKSUM` beside it fails (else: a warning).
    pub require_checksum: bool,
    /// Set on SIGINT/SIGTERM: no file is started after it; the parsed ones are committed.
    pub interrupt: super::interrupt::Interrupt,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            format: SourceFormat::Archive,
            group_events: 100_000,
            group_files: 512,
            require_checksum: false,
            interrupt: Default::default(),
        }
    }
}

/// An archive with no `.CHECKSUM` to verify: a warning, or with
/// `--require-checksum` a failure of that file.
fn checksum_policy(parsed: ParsedFile, require: bool) -> std::result::Result<ParsedFile, SourceError> {
    if parsed.checksum_verified != Some(false) {
        return Ok(parsed);
    }
    if require {
        let message = "no .CHECKSUM beside it to verify, and --require-checksum is set".to_string();
        return Err(SourceError::File { path: parsed.path, message });
    }
    tracing::warn!(file = %parsed.path.display(), "no .CHECKSUM beside it: imported unverified (--require-checksum makes this an error)");
    Ok(parsed)
}

/// How one file ended (JSON: `ok`, `failed`, `skipped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Ok,
    Failed,
    /// Not read: the run was interrupted first.
    Skipped,
}

/// How one file ended.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub status: FileStatus,
    pub symbol: Option<String>,
    pub interval: Option<String>,
    pub candles: u64,
    pub appended: u64,
    pub revisions: u64,
    pub duplicates: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub ok: bool,
    pub run_id: String,
    pub files_ok: u64,
    pub files_failed: u64,
    pub candles: u64,
    pub appended: u64,
    pub revisions: u64,
    pub duplicates: u64,
    pub head_lsn: Lsn,
    pub elapsed_ms: u64,
    /// Why the run stopped early (SIGINT/SIGTERM); its unread files are `skipped`.
    pub interrupted: Option<String>,
    pub files_skipped: u64,
    pub files: Vec<FileReport>,
}

/// Imports `files` (already discovered) into `store`.
pub fn import(store: &mut Store, files: Vec<PathBuf>, opts: &ImportOptions) -> Result<ImportReport> {
    let started = Instant::now();
    let started_ms = now_ms();
    let run_id = format!("import-{}-{}", started_ms, std::process::id());
    let (tx, rx) = mpsc::sync_channel::<(PathBuf, std::result::Result<ParsedFile, SourceError>)>(64);
    let format = opts.format.clone();
    let require_checksum = opts.require_checksum;
    let all_files = files.clone();
    let parser = std::thread::spawn(move || {
        for path in files {
            let parsed = read_path(&path, &format).and_then(|p| checksum_policy(p, require_checksum));
            if tx.send((path, parsed)).is_err() {
                break;
            }
        }
    });

    store.begin_bulk()?;
    let mut reports: Vec<FileReport> = Vec::new();
    let mut pending: Vec<FileReport> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut digests: Vec<[u8; 16]> = Vec::new();
    let mut overlay = Overlay::new();
    let mut totals = IngestStats::default();
    let mut candles = 0u64;
    let mut result: Result<()> = Ok(());
    loop {
        // A safe point: between files, and at least every 100 ms while one is parsed.
        if opts.interrupt.signal().is_some() {
            break;
        }
        let (path, parsed) = match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(x) => x,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(file = %path.display(), "rejected: {e}");
                reports.push(failed(&path, e.to_string()));
                continue;
            }
        };
        let n = parsed.candles.len() as u64;
        candles += n;
        let (mut evs, stats) = match store.plan_digested(parsed.candles, &mut overlay, &mut digests) {
            Ok(x) => x,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        totals.add(stats);
        events.append(&mut evs);
        pending.push(FileReport {
            path: path.display().to_string(),
            status: FileStatus::Ok,
            symbol: Some(parsed.symbol.to_string()),
            interval: Some(parsed.interval.to_string()),
            candles: n,
            appended: stats.appended,
            revisions: stats.revisions,
            duplicates: stats.duplicates,
            error: None,
        });
        if (events.len() >= opts.group_events || pending.len() >= opts.group_files)
            && let Err(e) = commit(store, &mut events, &mut digests, &mut pending, &mut reports, &mut overlay)
        {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = commit(store, &mut events, &mut digests, &mut pending, &mut reports, &mut overlay);
    }
    drop(rx);
    let _ = parser.join();
    if result.is_ok() {
        result = store.settle_index().and_then(|()| store.end_bulk());
    }
    if let Err(e) = result {
        // What was committed before stays committed; these files were not.
        for mut r in pending.drain(..) {
            r.status = FileStatus::Failed;
            r.error = Some(format!("not committed: {e}"));
            reports.push(r);
        }
        return Err(e);
    }

    let interrupted = opts.interrupt.reason();
    if let Some(reason) = &interrupted {
        let seen: std::collections::HashSet<&str> = reports.iter().map(|r| r.path.as_str()).collect();
        let skipped: Vec<FileReport> = all_files
            .iter()
            .filter(|p| !seen.contains(p.display().to_string().as_str()))
            .map(|p| FileReport { status: FileStatus::Skipped, ..failed(p, format!("not read: {reason}")) })
            .collect();
        reports.extend(skipped);
    }
    let run = Run {
        kind: RunKind::Import,
        id: run_id.clone(),
        started_ms,
        ended_ms: now_ms(),
        outcomes: reports
            .iter()
            .map(|r| Outcome {
                unit: r.path.rsplit('/').next().unwrap_or(&r.path).to_string(),
                interval: r.interval.as_deref().and_then(crate::event::Interval::parse),
                status: match r.status {
                    FileStatus::Ok => OutcomeStatus::Ok,
                    FileStatus::Failed => OutcomeStatus::Failed,
                    FileStatus::Skipped => OutcomeStatus::Skipped,
                },
                appended: r.appended,
                revisions: r.revisions,
                message: r.error.clone().unwrap_or_default(),
            })
            .collect(),
    };
    let head = store.append(&[Event::Run(run)])?;
    let count = |s: FileStatus| reports.iter().filter(|r| r.status == s).count() as u64;
    let (files_ok, files_failed, files_skipped) = (count(FileStatus::Ok), count(FileStatus::Failed), count(FileStatus::Skipped));
    Ok(ImportReport {
        ok: files_failed == 0 && interrupted.is_none(),
        run_id,
        files_ok,
        files_failed,
        candles,
        appended: totals.appended,
        revisions: totals.revisions,
        duplicates: totals.duplicates,
        head_lsn: head.lsn,
        elapsed_ms: started.elapsed().as_millis() as u64,
        interrupted,
        files_skipped,
        files: reports,
    })
}

/// One group commit: append + fdatasync + apply (the index's a commit
/// behind, see `Store::append_index_behind`), then the files are done.
fn commit(
    store: &mut Store,
    events: &mut Vec<Event>,
    digests: &mut Vec<[u8; 16]>,
    pending: &mut Vec<FileReport>,
    reports: &mut Vec<FileReport>,
    overlay: &mut Overlay,
) -> Result<()> {
    let n = events.len();
    let head = store.append_index_behind(std::mem::take(events), std::mem::take(digests))?;
    if n > 0 {
        tracing::info!(events = n, files = pending.len(), lsn = head.lsn, "committed");
    }
    overlay.retire();
    reports.append(pending);
    Ok(())
}

fn failed(path: &std::path::Path, error: String) -> FileReport {
    FileReport {
        path: path.display().to_string(),
        status: FileStatus::Failed,
        symbol: None,
        interval: None,
        candles: 0,
        appended: 0,
        revisions: 0,
        duplicates: 0,
        error: Some(error),
    }
}
