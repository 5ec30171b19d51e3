//! `health`: the nightly system's vital signs, each OK / WARNING / CRITICAL
//! with a one-line reason. Exit codes follow the monitoring-plugins
//! convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::event::{Interval, fmt_ms};
use crate::log::catalog::read_head;
use crate::projection::{Index, Projection};
use crate::store::view::{PinError, pin_together};
use crate::store::{Paths, writer_pid};

mod integrity;
mod operations;
mod options;
mod series;

pub use options::{HealthOptions, SERVICE_STALE_CRITICAL, SERVICE_STALE_WARNING};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// The monitoring-plugins exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
    fn worst(self, other: Status) -> Status {
        // UNKNOWN only wins over OK: a known CRITICAL is more useful.
        match (self, other) {
            (Status::Unknown, Status::Ok) | (Status::Ok, Status::Unknown) => Status::Unknown,
            (Status::Unknown, o) | (o, Status::Unknown) => o,
            (a, b) => a.max(b),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub value: String,
    pub threshold: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    pub status: Status,
    pub checks: Vec<Check>,
}

fn check(name: &'static str, status: Status, value: impl Into<String>, threshold: impl Into<String>, message: impl Into<String>) -> Check {
    Check { name, status, value: value.into(), threshold: threshold.into(), message: message.into() }
}

fn hours(ms: i64) -> String {
    format!("{:.1} h", ms as f64 / 3_600_000.0)
}

/// A duration the way an operator reads it: "45 s", "12.5 min", "3.2 h".
fn age(ms: i64) -> String {
    match ms {
        ..120_000 => format!("{} s", ms / 1000),
        120_000..7_200_000 => format!("{:.1} min", ms as f64 / 60_000.0),
        _ => hours(ms),
    }
}

/// An index health cannot read: not created yet (a first run killed before
/// it) or left unrepaired by a killed writer (the next writer creates or
/// repairs it: WARNING), or damaged (CRITICAL, with the reason).
fn index_report(e: &crate::projection::IndexError) -> HealthReport {
    let (status, value, message) = if std::fs::symlink_metadata(&e.path).is_err() {
        (Status::Warning, "missing", format!("no redb index at {}; the next writer (or `rebuild`) creates it", e.path.display()))
    } else if matches!(*e.source, redb::Error::RepairAborted) {
        (Status::Warning, "needs repair", e.to_string())
    } else {
        (Status::Critical, "damaged", e.to_string())
    };
    HealthReport { status, checks: vec![check("integrity", status, value, "index readable", message)] }
}

pub fn health(paths: &Paths, opts: &HealthOptions) -> Result<HealthReport> {
    let mut checks = Vec::new();
    let unknown = |name, message: String| check(name, Status::Unknown, "", "", message);
    if !paths.root.is_dir() {
        let msg = format!("data directory {} does not exist", paths.root.display());
        return Ok(HealthReport { status: Status::Unknown, checks: vec![unknown("data", msg)] });
    }
    // Never the writer's lock: health runs beside a sync and reports its real checks.
    let writer = writer_pid(&paths.lock);
    let index = Index::open_read_only(&paths.index);
    let projection = Projection::open_read_only(&paths.projection);
    let (mut index, mut projection) = match (index, projection) {
        (Ok(i), Ok(p)) => (i, p),
        (Err(e), _) => return Ok(index_report(&e)),
        // A first run killed between creating the index and the projection.
        (_, Err(_)) if std::fs::symlink_metadata(&paths.projection).is_err() => {
            let message = format!("no SQLite projection at {}; the next writer (or `rebuild`) creates it", paths.projection.display());
            return Ok(HealthReport { status: Status::Warning, checks: vec![check("integrity", Status::Warning, "missing", "", message)] });
        }
        (_, Err(e)) => {
            return Ok(HealthReport {
                status: Status::Critical,
                checks: vec![check("integrity", Status::Critical, "", "", e.to_string())],
            });
        }
    };
    // One committed state for everything below; the log is read after it, so it is never behind.
    let (proj_applied, index_applied) = match pin_together(&mut projection, &mut index, writer.is_some()) {
        Ok(x) => x,
        Err(PinError::Projection(e)) => {
            return Ok(HealthReport {
                status: Status::Critical,
                checks: vec![check("integrity", Status::Critical, "", "", e.to_string())],
            });
        }
        Err(PinError::Index(e)) => return Ok(index_report(&e)),
    };
    let cursors = match index.cursors() {
        Ok(c) => c,
        Err(e) => return Ok(index_report(&e)),
    };
    // One walk of the chain: its damage (integrity) and its recorded losses (loss).
    let chain = crate::store::chain_summary(paths).map_err(|e| e.to_string());
    let (loss, lost_symbols) = operations::loss_check(chain.as_ref().map(|c| c.losses.as_slice()).map_err(Clone::clone), &index);
    let symbols: Vec<String> = match &opts.symbols {
        Some(list) => list.clone(),
        None => {
            // What the store holds, and what a recorded loss took from it: never only what is left.
            let mut v: Vec<String> = cursors.iter().map(|c| c.symbol.clone()).chain(lost_symbols).collect();
            v.sort();
            v.dedup();
            v
        }
    };
    // Symbols the last sync found retired, paused or invalid: freshness and coverage leave them out, with a note.
    let classes = match index.symbol_classes() {
        Ok(c) => c,
        Err(e) => return Ok(index_report(&e)),
    };
    let (symbols, left_out) = leave_out_untradable(symbols, &classes);
    let confirmed = match index.gaps() {
        Ok(g) => g,
        Err(e) => return Ok(index_report(&e)),
    };

    let (heads, future) = match series::heads(&index, &cursors, opts.now_ms) {
        Ok(x) => x,
        Err(e) => return Ok(index_report(&e)),
    };

    // 1. freshness, the future-dated rows, 2. coverage, 3. integrity, 4. consistency, 5. gaps
    checks.extend(series::freshness(opts, &symbols, &heads, &left_out));
    checks.push(series::future(&future));
    checks.push(series::coverage(opts, &symbols, &cursors, &confirmed, &left_out));
    checks.push(integrity::integrity(paths, &projection, &chain, proj_applied, writer));
    checks.push(integrity::consistency(&projection, &cursors, writer, (proj_applied, index_applied)));
    checks.push(series::gaps(&projection, &confirmed));

    // 6. backups, 7. runs, the recorded losses, 8. disk
    let recorded = match index.backups() {
        Ok(b) => b,
        Err(e) => return Ok(index_report(&e)),
    };
    checks.push(operations::backups(paths, &index, recorded, opts)?);
    checks.push(operations::runs(index.last_sync()?, opts));
    checks.push(loss);
    checks.push(operations::disk(paths, opts));
    let status = checks.iter().fold(Status::Ok, |acc, c| acc.worst(c.status));
    Ok(HealthReport { status, checks })
}

/// `symbols` without those `classes` says are retired, paused or invalid,
/// and the note saying which were left out ("" when none).
fn leave_out_untradable(symbols: Vec<String>, classes: &[(String, crate::event::OutcomeStatus)]) -> (Vec<String>, String) {
    let class_of = |s: &str| classes.iter().find(|(c, _)| c == s).map(|(_, st)| *st);
    let (out, kept): (Vec<String>, Vec<String>) = symbols.into_iter().partition(|s| class_of(s).is_some());
    if out.is_empty() {
        return (kept, String::new());
    }
    let named: Vec<String> = out.iter().map(|s| format!("{s} ({})", class_of(s).map_or("", |c| c.as_str()))).collect();
    (kept, format!("; left out as not tradable by the last sync: {}", first_few(&named)))
}

fn first_few(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    if items.len() > 5 { format!("{} and {} more", shown.join(", "), items.len() - 5) } else { shown.join(", ") }
}
