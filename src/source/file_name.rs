//! Archive file names: `SYMBOL-INTERVAL-YYYY-MM[-DD].zip` (or `.csv`) say
//! which symbol and interval the rows inside belong to.

use std::path::Path;

use crate::event::{Interval, Symbol};

use super::SourceError;

/// Zip archive or bare CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    Zip,
    Csv,
}

/// What an archive's file name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveName {
    pub symbol: Symbol,
    pub interval: Interval,
    /// `YYYY-MM` for monthly archives, `YYYY-MM-DD` for daily ones.
    pub period: String,
    /// The open times that period covers, ms: `[start, end)`.
    pub range: (i64, i64),
    pub kind: ArchiveKind,
}

impl ArchiveName {
    /// Parses the last component of `path`.
    pub fn parse(path: &Path) -> Result<ArchiveName, SourceError> {
        let fail = |message: String| SourceError::FileName { path: path.to_path_buf(), message };
        let name = path.file_name().ok_or_else(|| fail("no file name".into()))?.to_str().ok_or_else(|| fail("not valid UTF-8".into()))?;
        let (stem, kind) = if let Some(stem) = strip_suffix_ignore_case(name, ".zip") {
            (stem, ArchiveKind::Zip)
        } else if let Some(stem) = strip_suffix_ignore_case(name, ".csv") {
            (stem, ArchiveKind::Csv)
        } else {
            return Err(fail(format!("{name:?} ends neither in .zip nor in .csv")));
        };
        let mut parts = stem.split('-');
        let (Some(symbol), Some(interval), Some(year), Some(month), day, None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail(format!("{name:?} does not have 4 or 5 '-'-separated parts")));
        };
        let symbol = Symbol::parse(symbol).map_err(|e| fail(e.to_string()))?;
        let interval = Interval::parse(interval).ok_or_else(|| fail(format!("unknown interval {interval:?} in {name:?}")))?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let date_ok = digits(year, 4) && digits(month, 2) && day.is_none_or(|d| digits(d, 2));
        if !date_ok {
            return Err(fail(format!("{name:?} has no YYYY-MM or YYYY-MM-DD date after the interval")));
        }
        let period = match day {
            Some(day) => format!("{year}-{month}-{day}"),
            None => format!("{year}-{month}"),
        };
        let range = period_range(year, month, day)
            .ok_or_else(|| fail(format!("{name:?}: {period} is not a date (month 01-12, a day the month has)")))?;
        Ok(ArchiveName { symbol, interval, period, kind, range })
    }
}

/// `[start, end)` in ms of the month (or day) a file name gives, UTC.
fn period_range(year: &str, month: &str, day: Option<&str>) -> Option<(i64, i64)> {
    let (y, m) = (year.parse::<i16>().ok()?, month.parse::<i8>().ok()?);
    let start = jiff::civil::Date::new(y, m, day.map_or(Some(1), |d| d.parse::<i8>().ok())?).ok()?;
    let end = if day.is_some() { start.tomorrow().ok()? } else { start.last_of_month().tomorrow().ok()? };
    let ms = |d: jiff::civil::Date| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp().as_millisecond());
    Some((ms(start)?, ms(end)?))
}

fn strip_suffix_ignore_case<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let split = name.len().checked_sub(suffix.len())?;
    let (stem, tail) = (name.get(..split)?, name.get(split..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_monthly_daily_and_csv_names() {
        let n = ArchiveName::parse(Path::new("/x/SKRUSDT-4h-2026-01.zip")).unwrap();
        assert_eq!((n.symbol.as_str(), n.interval, n.period.as_str(), n.kind), ("SKRUSDT", Interval::H4, "2026-01", ArchiveKind::Zip));
        let n = ArchiveName::parse(Path::new("BTCUSDT-1mo-2025-12-31.csv")).unwrap();
        assert_eq!((n.interval, n.period.as_str(), n.kind), (Interval::Mo1, "2025-12-31", ArchiveKind::Csv));
    }

    #[test]
    fn rejects_bad_names_with_the_reason() {
        for (name, needle) in [
            ("SKRUSDT-4h-2026-01.zip.CHECKSUM", "neither"),
            ("SKRUSDT-4h-2026.zip", "4 or 5"),
            ("SKRUSDT-4x-2026-01.zip", "unknown interval \"4x\""),
            ("SKRUSDT-4h-26-01.zip", "YYYY-MM"),
            ("skrusdt-4h-2026-01.zip", "lower-case character 's' at position 1"),
        ] {
            let e = ArchiveName::parse(Path::new(name)).unwrap_err().to_string();
            assert!(e.contains(needle), "{name}: {e}");
            assert!(e.contains(name), "{name}: {e}");
        }
    }
}
