//! `Run` records: the history of sync, import and recovery runs, kept in the log itself.

use super::Interval;

/// What kind of run wrote a `Run` record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunKind {
    Sync,
    Import,
    Recovery,
    Rebuild,
    /// Event format 2 and later.
    Backup,
    /// Event format 2 and later.
    Drill,
    /// `candlelog run`, the long-running service, when it stops (event format 5).
    Service,
}

impl RunKind {
    pub fn code(self) -> u8 {
        match self {
            RunKind::Sync => 1,
            RunKind::Import => 2,
            RunKind::Recovery => 3,
            RunKind::Rebuild => 4,
            RunKind::Backup => 5,
            RunKind::Drill => 6,
            RunKind::Service => 7,
        }
    }
    /// The first event format that can carry this kind (format/segment.md, version history).
    pub fn min_event_format(self) -> u8 {
        match self {
            RunKind::Backup | RunKind::Drill => 2,
            RunKind::Service => 5,
            _ => 1,
        }
    }
    pub fn from_code(c: u8) -> Option<RunKind> {
        Some(match c {
            1 => RunKind::Sync,
            2 => RunKind::Import,
            3 => RunKind::Recovery,
            4 => RunKind::Rebuild,
            5 => RunKind::Backup,
            6 => RunKind::Drill,
            7 => RunKind::Service,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Sync => "sync",
            RunKind::Import => "import",
            RunKind::Recovery => "recovery",
            RunKind::Rebuild => "rebuild",
            RunKind::Backup => "backup",
            RunKind::Drill => "drill",
            RunKind::Service => "service",
        }
    }
    /// A run that brings series up to date from the exchange (a sync, or the
    /// service): what health's last-sync check, the symbols' classes and `sla`
    /// count.
    pub fn syncs_series(self) -> bool {
        matches!(self, RunKind::Sync | RunKind::Service)
    }
}

/// How one unit of a run (a symbol, or an imported file) ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutcomeStatus {
    Ok,
    Failed,
    Skipped,
    /// A symbol the exchange has delisted, settled, delivered, closed or
    /// dropped from exchangeInfo (event format 4).
    Retired,
    /// A symbol the exchange lists but does not trade now: halted, break,
    /// pending (event format 4).
    Paused,
    /// A requested name that is not a symbol of the exchange (event format 4).
    Invalid,
}

impl OutcomeStatus {
    pub fn code(self) -> u8 {
        match self {
            OutcomeStatus::Ok => 1,
            OutcomeStatus::Failed => 2,
            OutcomeStatus::Skipped => 3,
            OutcomeStatus::Retired => 4,
            OutcomeStatus::Paused => 5,
            OutcomeStatus::Invalid => 6,
        }
    }
    /// The first event format that can carry this status (format/segment.md, version history).
    pub fn min_event_format(self) -> u8 {
        match self {
            OutcomeStatus::Retired | OutcomeStatus::Paused | OutcomeStatus::Invalid => 4,
            _ => 1,
        }
    }
    /// True for the statuses of a symbol that is not traded (retired,
    /// paused, invalid): such units count neither as done nor as failed.
    pub fn is_untradable(self) -> bool {
        self.min_event_format() == 4
    }
    pub fn from_code(c: u8) -> Option<OutcomeStatus> {
        Some(match c {
            1 => OutcomeStatus::Ok,
            2 => OutcomeStatus::Failed,
            3 => OutcomeStatus::Skipped,
            4 => OutcomeStatus::Retired,
            5 => OutcomeStatus::Paused,
            6 => OutcomeStatus::Invalid,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Ok => "ok",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Skipped => "skipped",
            OutcomeStatus::Retired => "retired",
            OutcomeStatus::Paused => "paused",
            OutcomeStatus::Invalid => "invalid",
        }
    }
}

/// The outcome of one unit: `unit` is a symbol for a sync, a file name for an import.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Outcome {
    pub unit: String,
    pub interval: Option<Interval>,
    pub status: OutcomeStatus,
    /// New candle events appended (first versions and revisions).
    pub appended: u64,
    /// Of those, revisions of an existing candle.
    pub revisions: u64,
    pub message: String,
}

/// A run record: what ran, when, and how each unit ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Run {
    pub kind: RunKind,
    pub id: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub outcomes: Vec<Outcome>,
}

impl Run {
    /// The first event format that can carry this record: its kind's, or its
    /// outcome statuses' if higher.
    pub fn min_event_format(&self) -> u8 {
        self.outcomes.iter().map(|o| o.status.min_event_format()).fold(self.kind.min_event_format(), u8::max)
    }
}
