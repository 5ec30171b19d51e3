//! The log's vocabulary: events (candles, run records, losses, confirmed
//! exchange gaps and snapshot anchors), their fields and
//! their byte encoding.

mod anchor;
mod candle;
pub mod codec;
mod decimal;
mod gap;
mod interval;
mod loss;
pub mod rows;
mod run;

pub use anchor::{Anchor, AnchorSeries, AnchorTable, CHECK_QUICK, CHECK_STRUCTURE, CHECKS_ALL};
pub use candle::{Candle, CandleError, CandleParts, MAX_SYMBOL_LEN, Symbol, SymbolError};
pub use decimal::{Decimal, DecimalError};
pub use gap::Gap;
pub use interval::Interval;
pub use loss::{Loss, LostSeries};
pub use run::{Outcome, OutcomeStatus, Run, RunKind};

/// An RFC 3339 rendering of a ms timestamp (the number itself when it is
/// out of range), for messages and human output.
pub fn fmt_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_else(|_| ms.to_string())
}

/// Log sequence number: the 1-based, gap-free position of an event in the log.
pub type Lsn = u64;

/// One log record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    Candle(Candle),
    Run(Run),
    /// A lost range of the log, recorded by recovery (event format 3, in a loss frame).
    Loss(Loss),
    /// A hole the exchange answered as empty (event format 4).
    Gap(Gap),
    /// A backup's snapshot proven in the local log (event format 6).
    Anchor(Anchor),
}
