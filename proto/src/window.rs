//! Budget and rate-limit windows: which `[start, end)` holds an instant (pure, UTC, unix ms).
//!
//! * **Calendar-aligned** windows start at UTC calendar boundaries: the minute, multiples of
//!   five minutes past the hour, the hour, midnight, Monday 00:00, the 1st of the month at
//!   00:00, January 1st at 00:00.
//! * **Anchored** windows start at the anchor and follow each other every period. Minutes to
//!   weeks are fixed lengths of milliseconds. Months and years step the calendar from the
//!   anchor, keeping its time of day: the window starting on the anchor's day of month, or on
//!   the last day of months too short for it (anchored on Jan 31: Feb 28, or 29 in leap years,
//!   then Mar 31, Apr 30, ...); a yearly window anchored on Feb 29 starts on Feb 28 in other
//!   years.
//! * **Before the anchor** the same grid extends backwards (the window holding an instant one
//!   period before the anchor is `[anchor - period, anchor)`), so every instant has exactly one
//!   window and windows never overlap. An admin reset moves the anchor to the reset instant, so
//!   in practice only instants at or after the anchor are asked about.
//! * Instants are clamped to the years the `time` crate represents (±9999 less a margin).

use crate::config::v1 as pb;
use time::{Date, Month};

const MINUTE_MS: i64 = 60_000;
const FIVE_MINUTES_MS: i64 = 5 * MINUTE_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
/// 1970-01-05, the first Monday after the epoch, in unix ms.
const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

/// How long a budget or rate-limit window lasts: `1m 5m 1h 1d 1w 1M 1Y` in JSON (the admin
/// API, stored limits); the snapshot's `ResetPeriod` without its unspecified value.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = ResetDuration))]
pub enum Period {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
    #[serde(rename = "1w")]
    Week,
    #[serde(rename = "1M")]
    Month,
    #[serde(rename = "1Y")]
    Year,
}

impl Period {
    /// `None` for `RESET_PERIOD_UNSPECIFIED` and values this build does not know.
    pub fn from_pb(value: i32) -> Option<Period> {
        Some(match pb::ResetPeriod::try_from(value).ok()? {
            pb::ResetPeriod::Unspecified => return None,
            pb::ResetPeriod::Minute => Period::Minute,
            pb::ResetPeriod::FiveMinutes => Period::FiveMinutes,
            pb::ResetPeriod::Hour => Period::Hour,
            pb::ResetPeriod::Day => Period::Day,
            pb::ResetPeriod::Week => Period::Week,
            pb::ResetPeriod::Month => Period::Month,
            pb::ResetPeriod::Year => Period::Year,
        })
    }

    /// The snapshot's form.
    pub fn to_pb(self) -> pb::ResetPeriod {
        match self {
            Period::Minute => pb::ResetPeriod::Minute,
            Period::FiveMinutes => pb::ResetPeriod::FiveMinutes,
            Period::Hour => pb::ResetPeriod::Hour,
            Period::Day => pb::ResetPeriod::Day,
            Period::Week => pb::ResetPeriod::Week,
            Period::Month => pb::ResetPeriod::Month,
            Period::Year => pb::ResetPeriod::Year,
        }
    }

    /// The admin API's spelling (`1m 5m 1h 1d 1w 1M 1Y`).
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "1m",
            Period::FiveMinutes => "5m",
            Period::Hour => "1h",
            Period::Day => "1d",
            Period::Week => "1w",
            Period::Month => "1M",
            Period::Year => "1Y",
        }
    }

    /// Length in ms of the periods that have one (not months and years).
    fn fixed_ms(self) -> Option<i64> {
        match self {
            Period::Minute => Some(MINUTE_MS),
            Period::FiveMinutes => Some(FIVE_MINUTES_MS),
            Period::Hour => Some(HOUR_MS),
            Period::Day => Some(DAY_MS),
            Period::Week => Some(WEEK_MS),
            Period::Month | Period::Year => None,
        }
    }

    /// Calendar months per step (months and years).
    fn months(self) -> i64 {
        if self == Period::Year { 12 } else { 1 }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A window definition: what makes two windows the same series. The anchor of a
/// calendar-aligned spec is always 0 (it plays no part), so specs compare by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSpec {
    pub period: Period,
    pub calendar_aligned: bool,
    pub anchor_unix_ms: i64,
}

/// `[start_unix_ms, end_unix_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
}

impl Window {
    pub fn contains(&self, unix_ms: i64) -> bool {
        self.start_unix_ms <= unix_ms && unix_ms < self.end_unix_ms
    }
}

impl WindowSpec {
    pub fn calendar(period: Period) -> WindowSpec {
        WindowSpec {
            period,
            calendar_aligned: true,
            anchor_unix_ms: 0,
        }
    }

    pub fn anchored(period: Period, anchor_unix_ms: i64) -> WindowSpec {
        WindowSpec {
            period,
            calendar_aligned: false,
            anchor_unix_ms: clamp(anchor_unix_ms),
        }
    }

    pub fn new(period: Period, calendar_aligned: bool, anchor_unix_ms: i64) -> WindowSpec {
        if calendar_aligned {
            WindowSpec::calendar(period)
        } else {
            WindowSpec::anchored(period, anchor_unix_ms)
        }
    }

    /// The window holding `unix_ms`.
    pub fn window_at(&self, unix_ms: i64) -> Window {
        let t = clamp(unix_ms);
        if self.calendar_aligned {
            calendar_window(self.period, t)
        } else {
            anchored_window(self.period, self.anchor_unix_ms, t)
        }
    }
}

fn calendar_window(period: Period, t: i64) -> Window {
    match period {
        Period::Week => fixed_window(FIRST_MONDAY_MS, WEEK_MS, t),
        Period::Month | Period::Year => {
            let (date, _) = civil(t);
            let first = if period == Period::Year {
                Month::January
            } else {
                date.month()
            };
            let start = date_ms(date.year(), first, 1, 0);
            Window {
                start_unix_ms: start,
                end_unix_ms: step_months(start, period.months()),
            }
        }
        fixed => fixed_window(0, fixed.fixed_ms().unwrap_or(MINUTE_MS), t),
    }
}

fn anchored_window(period: Period, anchor: i64, t: i64) -> Window {
    if let Some(len) = period.fixed_ms() {
        return fixed_window(anchor, len, t);
    }
    let step = period.months();
    let (a, _) = civil(anchor);
    let (d, _) = civil(t);
    let months_apart = (i64::from(d.year()) * 12 + i64::from(u8::from(d.month())))
        - (i64::from(a.year()) * 12 + i64::from(u8::from(a.month())));
    // The window starting in `t`'s month (or year), or the one before it.
    let mut k = months_apart.div_euclid(step);
    if step_months(anchor, k * step) > t {
        k -= 1;
    }
    Window {
        start_unix_ms: step_months(anchor, k * step),
        end_unix_ms: step_months(anchor, (k + 1) * step),
    }
}

fn fixed_window(origin: i64, len: i64, t: i64) -> Window {
    let start = origin + (t - origin).div_euclid(len) * len;
    Window {
        start_unix_ms: start,
        end_unix_ms: start + len,
    }
}

/// `from` moved by `months` calendar months, keeping the time of day and the day of month
/// (the last day of the month when it is shorter).
fn step_months(from: i64, months: i64) -> i64 {
    let (date, time_of_day) = civil(from);
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).unwrap_or(i32::MAX);
    // rem_euclid(12) is in 0..12.
    let month = Month::January.nth_next(index.rem_euclid(12) as u8);
    let day = date.day().min(month.length(year));
    date_ms(year, month, day, time_of_day)
}

/// The UTC date of an instant and the ms since its midnight.
fn civil(t: i64) -> (Date, i64) {
    let days = t.div_euclid(DAY_MS);
    let julian = i32::try_from(days + UNIX_EPOCH_JULIAN_DAY).unwrap_or(0);
    let date = Date::from_julian_day(julian).unwrap_or(Date::MIN);
    (date, t.rem_euclid(DAY_MS))
}

fn date_ms(year: i32, month: Month, day: u8, time_of_day: i64) -> i64 {
    let date = Date::from_calendar_date(year, month, day).unwrap_or(Date::MAX);
    (i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY) * DAY_MS + time_of_day
}

/// Keeps an instant two years inside the `time` crate's range, so that stepping a year either
/// way stays representable.
fn clamp(t: i64) -> i64 {
    let lo = (i64::from(Date::MIN.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY + 800) * DAY_MS;
    let hi = (i64::from(Date::MAX.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY - 800) * DAY_MS;
    t.clamp(lo, hi)
}

#[cfg(test)]
mod tests;
