//! Kline intervals: names, on-disk codes, alignment and projection table names.

use std::fmt;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 1970-01-05 00:00 UTC, the first Monday: Binance weeks open on Mondays.
const FIRST_MONDAY: i64 = 4 * DAY;

/// One of the exchange's kline intervals.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Interval {
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    D3,
    W1,
    Mo1,
}

impl Interval {
    pub const ALL: [Interval; 15] = [
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::D3,
        Interval::W1,
        Interval::Mo1,
    ];

    /// The exchange's name ("4h", "1M").
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::D3 => "3d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    /// Parses the exchange's name; `1mo` (the archive spelling) means `1M`.
    pub fn parse(s: &str) -> Option<Interval> {
        if s == "1mo" {
            return Some(Interval::Mo1);
        }
        Interval::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// The code stored in the log (format/segment.md, "Interval codes").
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    pub fn from_code(code: u8) -> Option<Interval> {
        Interval::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// SQLite table of the projection. SQLite names are case-insensitive, so
    /// the month is `mo1`, never `M1`.
    pub fn table(self) -> &'static str {
        match self {
            Interval::M1 => "ohlcv_m1",
            Interval::M3 => "ohlcv_m3",
            Interval::M5 => "ohlcv_m5",
            Interval::M15 => "ohlcv_m15",
            Interval::M30 => "ohlcv_m30",
            Interval::H1 => "ohlcv_h1",
            Interval::H2 => "ohlcv_h2",
            Interval::H4 => "ohlcv_h4",
            Interval::H6 => "ohlcv_h6",
            Interval::H8 => "ohlcv_h8",
            Interval::H12 => "ohlcv_h12",
            Interval::D1 => "ohlcv_d1",
            Interval::D3 => "ohlcv_d3",
            Interval::W1 => "ohlcv_w1",
            Interval::Mo1 => "ohlcv_mo1",
        }
    }

    /// Fixed length in ms; `None` for the calendar month.
    pub fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Interval::M1 => MINUTE,
            Interval::M3 => 3 * MINUTE,
            Interval::M5 => 5 * MINUTE,
            Interval::M15 => 15 * MINUTE,
            Interval::M30 => 30 * MINUTE,
            Interval::H1 => HOUR,
            Interval::H2 => 2 * HOUR,
            Interval::H4 => 4 * HOUR,
            Interval::H6 => 6 * HOUR,
            Interval::H8 => 8 * HOUR,
            Interval::H12 => 12 * HOUR,
            Interval::D1 => DAY,
            Interval::D3 => 3 * DAY,
            Interval::W1 => 7 * DAY,
            Interval::Mo1 => return None,
        })
    }

    /// Whether `open_ms` is a valid open time for this interval.
    pub fn is_aligned(self, open_ms: i64) -> bool {
        match self {
            Interval::W1 => (open_ms - FIRST_MONDAY).rem_euclid(7 * DAY) == 0,
            Interval::Mo1 => month_start(open_ms) == Some(open_ms),
            other => other.fixed_ms().is_some_and(|ms| open_ms.rem_euclid(ms) == 0),
        }
    }

    /// The open time of the candle after the one opening at `open_ms`.
    pub fn next_open(self, open_ms: i64) -> Option<i64> {
        match self.fixed_ms() {
            Some(ms) => open_ms.checked_add(ms),
            None => {
                let ts = jiff::Timestamp::from_millisecond(open_ms).ok()?;
                let next = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC).checked_add(jiff::Span::new().months(1)).ok()?;
                Some(next.timestamp().as_millisecond())
            }
        }
    }

    /// The open time of the candle that contains the instant `ms` (floor to a boundary).
    pub fn open_containing(self, ms: i64) -> Option<i64> {
        match self {
            Interval::W1 => Some(ms - (ms - FIRST_MONDAY).rem_euclid(7 * DAY)),
            Interval::Mo1 => month_start(ms),
            other => other.fixed_ms().map(|len| ms - ms.rem_euclid(len)),
        }
    }

    /// The first open time at or after `ms` (ceiling to a boundary).
    pub fn open_at_or_after(self, ms: i64) -> Option<i64> {
        let floor = self.open_containing(ms)?;
        if floor == ms { Some(ms) } else { self.next_open(floor) }
    }

    /// The holes in ascending open times `times`: each run of missing open
    /// times between two present ones, as (first missing, last missing).
    pub fn holes(self, times: &[i64]) -> Vec<(i64, i64)> {
        times
            .windows(2)
            .filter_map(|w| {
                let (first, last) = (self.next_open(w[0])?, self.prev_open(w[1])?);
                (first < w[1]).then_some((first, last))
            })
            .collect()
    }

    /// The open time of the candle before the one opening at `open_ms`.
    pub fn prev_open(self, open_ms: i64) -> Option<i64> {
        match self.fixed_ms() {
            Some(ms) => open_ms.checked_sub(ms),
            None => {
                let ts = jiff::Timestamp::from_millisecond(open_ms).ok()?;
                let prev = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC).checked_sub(jiff::Span::new().months(1)).ok()?;
                Some(prev.timestamp().as_millisecond())
            }
        }
    }
}

fn month_start(ms: i64) -> Option<i64> {
    let z = jiff::Timestamp::from_millisecond(ms).ok()?.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let d = jiff::civil::date(z.year(), z.month(), 1);
    Some(d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_millisecond())
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for i in Interval::ALL {
            assert_eq!(Interval::from_code(i.code()), Some(i));
            assert_eq!(Interval::parse(i.as_str()), Some(i));
        }
        assert_eq!(Interval::from_code(0), None);
        assert_eq!(Interval::from_code(16), None);
        assert_eq!(Interval::parse("1mo"), Some(Interval::Mo1));
        let tables: std::collections::HashSet<_> = Interval::ALL.iter().map(|i| i.table().to_lowercase()).collect();
        assert_eq!(tables.len(), 15);
    }

    #[test]
    fn alignment_follows_the_exchange() {
        // 2026-01-22 08:00 UTC, a real SKRUSDT 4h open time.
        assert!(Interval::H4.is_aligned(1_769_068_800_000));
        assert!(!Interval::H4.is_aligned(1_769_068_800_000 + HOUR));
        // 2026-01-26 is a Monday.
        assert!(Interval::W1.is_aligned(1_769_385_600_000));
        assert!(!Interval::W1.is_aligned(1_769_385_600_000 + DAY));
        // 2026-02-01 00:00 UTC; next month starts 2026-03-01.
        assert!(Interval::Mo1.is_aligned(1_769_904_000_000));
        assert_eq!(Interval::Mo1.next_open(1_769_904_000_000), Some(1_772_323_200_000));
        assert_eq!(Interval::Mo1.prev_open(1_772_323_200_000), Some(1_769_904_000_000));
        for i in Interval::ALL {
            let t = 1_772_323_200_000 + 12_345_678;
            let open = i.open_containing(t).unwrap();
            assert!(i.is_aligned(open) && open <= t && i.next_open(open).unwrap() > t, "{i}");
            assert_eq!(i.open_at_or_after(open), Some(open));
            assert_eq!(i.open_at_or_after(open + 1), i.next_open(open));
        }
    }
}
