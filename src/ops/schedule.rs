//! The service's schedules (`[run.schedule]` in candlelog.toml): when `candlelog run`
//! starts its reconcile sync, backups, drills and retention. Cron expressions in UTC,
//! parsed by `croner`: five fields (minute hour day-of-month month day-of-week), or six
//! with seconds first; "off" disables a job. The jobs themselves run in `ops::jobs`.

use std::cmp::Ordering;

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds};
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use jiff::tz::TimeZone;

use crate::config::ScheduleConfig;
use crate::error::{Error, Result};

/// A job the service schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    /// The reconcile sync (today's nightly `candlelog sync`).
    Sync,
    /// `candlelog backup` to every configured repository.
    Backup,
    /// `candlelog drill` of the first configured repository.
    Drill,
    /// Retention and pruning of every configured repository, without a backup.
    Retention,
}

impl Job {
    pub const ALL: [Job; 4] = [Job::Sync, Job::Backup, Job::Drill, Job::Retention];

    pub fn name(self) -> &'static str {
        match self {
            Job::Sync => "sync",
            Job::Backup => "backup",
            Job::Drill => "drill",
            Job::Retention => "retention",
        }
    }

    /// The default time: the same as conf/crontab and the systemd timers
    /// (sync 01:00, backup 02:00, drill the 1st at 04:00); retention is off, since
    /// every backup already applies its repository's retention.
    pub fn default_expr(self) -> &'static str {
        match self {
            Job::Sync => "0 1 * * *",
            Job::Backup => "0 2 * * *",
            Job::Drill => "0 4 1 * *",
            Job::Retention => "off",
        }
    }
}

/// One job's schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub job: Job,
    /// As written in the config (or the default).
    pub expr: String,
    cron: Cron,
}

impl Schedule {
    /// Parses `expr` for `job`; `None` for "off".
    pub fn parse(job: Job, expr: &str) -> Result<Option<Schedule>> {
        if expr.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let cron = CronParser::builder().seconds(Seconds::Optional).build().parse(expr).map_err(|e| {
            Error::Usage(format!(
                "[run.schedule] {} = {expr:?}: {e} (a cron expression in UTC: \"minute hour day month weekday\", \
                 e.g. \"0 2 * * *\", or with seconds first; \"off\" disables it)",
                job.name()
            ))
        })?;
        Ok(Some(Schedule { job, expr: expr.to_string(), cron }))
    }

    /// The first time strictly after `ms` (UTC, whole seconds), in ms.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let z = utc(ms)?;
        self.cron.find_next_occurrence(&z, false).ok().map(|t| t.0.as_millisecond())
    }

    /// The last time at or before `ms`, in ms.
    pub fn last_at_or_before(&self, ms: i64) -> Option<i64> {
        let z = utc(ms)?;
        self.cron.find_previous_occurrence(&z, true).ok().map(|t| t.0.as_millisecond())
    }
}

/// `ms` as a UTC time cut to the whole second (cron has no finer field).
fn utc(ms: i64) -> Option<Utc> {
    jiff::Timestamp::from_millisecond(ms.div_euclid(1000) * 1000).ok().map(Utc)
}

/// A time in UTC for croner: no daylight saving, so every wall clock time is one instant.
#[derive(Clone, Copy, Debug)]
struct Utc(jiff::Timestamp);

impl Utc {
    fn civil(&self) -> jiff::civil::DateTime {
        TimeZone::UTC.to_datetime(self.0)
    }
}

impl CronDateTime for Utc {
    fn to_civil(&self) -> CivilDateTime {
        let d = self.civil();
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(i32::from(d.year()), d.month() as u32, d.day() as u32),
            CivilTime::from_parts_unchecked(d.hour() as u32, d.minute() as u32, d.second() as u32),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(self.civil().weekday().to_sunday_zero_offset() as u32)
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> std::result::Result<Resolution<Self>, CronError> {
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let d = jiff::civil::DateTime::new(
            year,
            civil.month() as i8,
            civil.day() as i8,
            civil.hour() as i8,
            civil.minute() as i8,
            civil.second() as i8,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        let t = TimeZone::UTC.to_timestamp(d).map_err(|_| CronError::InvalidTime)?;
        Ok(Resolution::Single(Utc(t)))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(jiff::SignedDuration::from_secs(seconds)).ok().map(Utc)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// The schedules `[run.schedule]` gives (defaults for keys not set), "off" ones left out.
pub fn from_config(c: &ScheduleConfig) -> Result<Vec<Schedule>> {
    let mut out = Vec::new();
    for job in Job::ALL {
        let set = match job {
            Job::Sync => &c.sync,
            Job::Backup => &c.backup,
            Job::Drill => &c.drill,
            Job::Retention => &c.retention,
        };
        if let Some(s) = Schedule::parse(job, set.as_deref().unwrap_or(job.default_expr()))? {
            out.push(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-01 00:00:00 UTC.
    const MARCH: i64 = 1_772_323_200_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_defaults_are_the_timers_times_in_utc() {
        let all = from_config(&ScheduleConfig::default()).unwrap();
        let at = |job: Job| all.iter().find(|s| s.job == job).map(|s| s.next_after(MARCH + 1).unwrap());
        assert_eq!(at(Job::Sync), Some(MARCH + HOUR));
        assert_eq!(at(Job::Backup), Some(MARCH + 2 * HOUR));
        // The 1st of March at 04:00 (the next after 00:00:00.001 the same day).
        assert_eq!(at(Job::Drill), Some(MARCH + 4 * HOUR));
        assert_eq!(at(Job::Retention), None, "off by default");
    }

    #[test]
    fn seconds_are_allowed_and_bad_expressions_are_usage_errors() {
        let s = Schedule::parse(Job::Backup, "*/5 * * * * *").unwrap().unwrap();
        assert_eq!(s.next_after(MARCH + 1_500), Some(MARCH + 5_000));
        assert_eq!(s.last_at_or_before(MARCH + 7_000), Some(MARCH + 5_000));
        assert!(Schedule::parse(Job::Drill, "off").unwrap().is_none());
        let e = Schedule::parse(Job::Sync, "at two").unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(e.to_string().contains("[run.schedule] sync"), "{e}");
    }
}
