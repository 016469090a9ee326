//! Golden tests of `window.rs`: every period, calendar-aligned and anchored, month ends, leap
//! years, week alignment, instants exactly on boundaries.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Period, Window, WindowSpec};

/// Unix ms of an RFC 3339 instant.
fn ms(s: &str) -> i64 {
    let t = OffsetDateTime::parse(s, &Rfc3339).expect("test instant");
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("in range")
}

fn rfc(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("in range")
        .format(&Rfc3339)
        .expect("formats")
}

/// Asserts the window of `spec` holding `at` is `[start, end)`, with readable failures.
#[track_caller]
fn check(spec: WindowSpec, at: &str, start: &str, end: &str) {
    let w = spec.window_at(ms(at));
    assert_eq!(
        (rfc(w.start_unix_ms), rfc(w.end_unix_ms)),
        (rfc(ms(start)), rfc(ms(end))),
        "{spec:?} at {at}"
    );
}

fn cal(p: Period) -> WindowSpec {
    WindowSpec::calendar(p)
}

fn anchored(p: Period, anchor: &str) -> WindowSpec {
    WindowSpec::anchored(p, ms(anchor))
}

#[test]
fn calendar_minute_five_minutes_hour_day() {
    use Period::*;
    check(
        cal(Minute),
        "2026-03-15T10:37:42.123Z",
        "2026-03-15T10:37:00Z",
        "2026-03-15T10:38:00Z",
    );
    check(
        cal(Minute),
        "2026-03-15T10:38:00Z",
        "2026-03-15T10:38:00Z",
        "2026-03-15T10:39:00Z",
    );
    check(
        cal(FiveMinutes),
        "2026-03-15T10:37:42Z",
        "2026-03-15T10:35:00Z",
        "2026-03-15T10:40:00Z",
    );
    check(
        cal(FiveMinutes),
        "2026-03-15T10:39:59.999Z",
        "2026-03-15T10:35:00Z",
        "2026-03-15T10:40:00Z",
    );
    check(
        cal(FiveMinutes),
        "2026-03-15T10:40:00Z",
        "2026-03-15T10:40:00Z",
        "2026-03-15T10:45:00Z",
    );
    check(
        cal(FiveMinutes),
        "2026-03-15T10:58:00Z",
        "2026-03-15T10:55:00Z",
        "2026-03-15T11:00:00Z",
    );
    check(
        cal(Hour),
        "2026-03-15T10:37:42Z",
        "2026-03-15T10:00:00Z",
        "2026-03-15T11:00:00Z",
    );
    check(
        cal(Hour),
        "2026-03-15T23:00:00Z",
        "2026-03-15T23:00:00Z",
        "2026-03-16T00:00:00Z",
    );
    check(
        cal(Day),
        "2026-03-15T23:59:59.999Z",
        "2026-03-15T00:00:00Z",
        "2026-03-16T00:00:00Z",
    );
    check(
        cal(Day),
        "2026-03-16T00:00:00Z",
        "2026-03-16T00:00:00Z",
        "2026-03-17T00:00:00Z",
    );
    check(
        cal(Day),
        "2024-02-29T08:00:00Z",
        "2024-02-29T00:00:00Z",
        "2024-03-01T00:00:00Z",
    );
    // Before the epoch too.
    check(
        cal(Day),
        "1969-12-31T23:00:00Z",
        "1969-12-31T00:00:00Z",
        "1970-01-01T00:00:00Z",
    );
}

#[test]
fn calendar_week_starts_monday() {
    // 2026-03-15 is a Sunday: the week started on Monday the 9th.
    check(
        cal(Period::Week),
        "2026-03-15T23:59:59.999Z",
        "2026-03-09T00:00:00Z",
        "2026-03-16T00:00:00Z",
    );
    check(
        cal(Period::Week),
        "2026-03-16T00:00:00Z",
        "2026-03-16T00:00:00Z",
        "2026-03-23T00:00:00Z",
    );
    check(
        cal(Period::Week),
        "2026-03-11T12:00:00Z",
        "2026-03-09T00:00:00Z",
        "2026-03-16T00:00:00Z",
    );
    // Across a year end (2026-01-01 is a Thursday) and around the epoch (a Thursday too).
    check(
        cal(Period::Week),
        "2026-01-01T00:00:00Z",
        "2025-12-29T00:00:00Z",
        "2026-01-05T00:00:00Z",
    );
    check(
        cal(Period::Week),
        "1970-01-01T00:00:00Z",
        "1969-12-29T00:00:00Z",
        "1970-01-05T00:00:00Z",
    );
}

#[test]
fn calendar_month_and_year() {
    use Period::*;
    check(
        cal(Month),
        "2024-02-29T12:00:00Z",
        "2024-02-01T00:00:00Z",
        "2024-03-01T00:00:00Z",
    );
    check(
        cal(Month),
        "2025-02-28T23:59:59.999Z",
        "2025-02-01T00:00:00Z",
        "2025-03-01T00:00:00Z",
    );
    check(
        cal(Month),
        "2026-03-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    );
    check(
        cal(Month),
        "2026-04-30T23:59:59.999Z",
        "2026-04-01T00:00:00Z",
        "2026-05-01T00:00:00Z",
    );
    check(
        cal(Month),
        "2026-12-31T23:59:59.999Z",
        "2026-12-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    );
    check(
        cal(Year),
        "2024-07-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
    );
    check(
        cal(Year),
        "2027-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
        "2028-01-01T00:00:00Z",
    );
    check(
        cal(Year),
        "2026-12-31T23:59:59.999Z",
        "2026-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    );
}

#[test]
fn calendar_aligned_specs_ignore_the_anchor() {
    assert_eq!(
        WindowSpec::new(Period::Day, true, 123_456),
        WindowSpec::calendar(Period::Day)
    );
    assert_ne!(
        WindowSpec::new(Period::Day, false, 123_456),
        WindowSpec::new(Period::Day, false, 123_457)
    );
}

#[test]
fn anchored_fixed_periods() {
    use Period::*;
    let day = anchored(Day, "2026-03-10T15:30:00Z");
    check(
        day,
        "2026-03-10T15:30:00Z",
        "2026-03-10T15:30:00Z",
        "2026-03-11T15:30:00Z",
    );
    check(
        day,
        "2026-03-12T10:00:00Z",
        "2026-03-11T15:30:00Z",
        "2026-03-12T15:30:00Z",
    );
    check(
        day,
        "2026-03-12T15:30:00Z",
        "2026-03-12T15:30:00Z",
        "2026-03-13T15:30:00Z",
    );
    // Before the anchor: the grid extends backwards.
    check(
        day,
        "2026-03-10T15:29:59.999Z",
        "2026-03-09T15:30:00Z",
        "2026-03-10T15:30:00Z",
    );
    let five = anchored(FiveMinutes, "2026-03-10T10:02:30Z");
    check(
        five,
        "2026-03-10T10:09:00Z",
        "2026-03-10T10:07:30Z",
        "2026-03-10T10:12:30Z",
    );
    check(
        anchored(Minute, "2026-03-10T10:00:30Z"),
        "2026-03-10T10:05:29Z",
        "2026-03-10T10:04:30Z",
        "2026-03-10T10:05:30Z",
    );
    check(
        anchored(Hour, "2026-03-10T10:15:00Z"),
        "2026-03-11T00:14:59Z",
        "2026-03-10T23:15:00Z",
        "2026-03-11T00:15:00Z",
    );
    // A week anchored on a Wednesday runs Wednesday to Wednesday.
    let week = anchored(Week, "2026-03-11T08:00:00Z");
    check(
        week,
        "2026-03-20T00:00:00Z",
        "2026-03-18T08:00:00Z",
        "2026-03-25T08:00:00Z",
    );
    check(
        week,
        "2026-03-18T07:59:59.999Z",
        "2026-03-11T08:00:00Z",
        "2026-03-18T08:00:00Z",
    );
}

#[test]
fn anchored_months_step_the_calendar_from_the_anchor() {
    let m = anchored(Period::Month, "2026-01-31T12:00:00Z");
    check(
        m,
        "2026-01-31T12:00:00Z",
        "2026-01-31T12:00:00Z",
        "2026-02-28T12:00:00Z",
    );
    check(
        m,
        "2026-02-28T11:59:59.999Z",
        "2026-01-31T12:00:00Z",
        "2026-02-28T12:00:00Z",
    );
    check(
        m,
        "2026-02-28T12:00:00Z",
        "2026-02-28T12:00:00Z",
        "2026-03-31T12:00:00Z",
    );
    // Not Mar 28: each window is the anchor plus whole months.
    check(
        m,
        "2026-03-15T00:00:00Z",
        "2026-02-28T12:00:00Z",
        "2026-03-31T12:00:00Z",
    );
    check(
        m,
        "2026-04-30T12:00:00Z",
        "2026-04-30T12:00:00Z",
        "2026-05-31T12:00:00Z",
    );
    check(
        m,
        "2026-12-31T12:00:00Z",
        "2026-12-31T12:00:00Z",
        "2027-01-31T12:00:00Z",
    );
    check(
        m,
        "2027-02-01T00:00:00Z",
        "2027-01-31T12:00:00Z",
        "2027-02-28T12:00:00Z",
    );
    // Leap year: February 29.
    let leap = anchored(Period::Month, "2024-01-31T00:00:00Z");
    check(
        leap,
        "2024-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "2024-03-31T00:00:00Z",
    );
    check(
        leap,
        "2024-02-28T23:59:59Z",
        "2024-01-31T00:00:00Z",
        "2024-02-29T00:00:00Z",
    );
    // A mid-month anchor.
    let mid = anchored(Period::Month, "2026-03-15T09:00:00Z");
    check(
        mid,
        "2026-05-15T08:59:59Z",
        "2026-04-15T09:00:00Z",
        "2026-05-15T09:00:00Z",
    );
    // Before the anchor: the previous calendar steps.
    let end = anchored(Period::Month, "2026-03-31T00:00:00Z");
    check(
        end,
        "2026-03-01T00:00:00Z",
        "2026-02-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
    );
    check(
        end,
        "2026-02-27T00:00:00Z",
        "2026-01-31T00:00:00Z",
        "2026-02-28T00:00:00Z",
    );
}

#[test]
fn anchored_years_and_february_29() {
    let y = anchored(Period::Year, "2024-02-29T00:00:00Z");
    check(
        y,
        "2024-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "2025-02-28T00:00:00Z",
    );
    check(
        y,
        "2025-02-27T23:59:59Z",
        "2024-02-29T00:00:00Z",
        "2025-02-28T00:00:00Z",
    );
    check(
        y,
        "2025-02-28T00:00:00Z",
        "2025-02-28T00:00:00Z",
        "2026-02-28T00:00:00Z",
    );
    check(
        y,
        "2028-03-01T00:00:00Z",
        "2028-02-29T00:00:00Z",
        "2029-02-28T00:00:00Z",
    );
    let july = anchored(Period::Year, "2025-07-04T18:00:00Z");
    check(
        july,
        "2026-07-04T17:59:59Z",
        "2025-07-04T18:00:00Z",
        "2026-07-04T18:00:00Z",
    );
    check(
        july,
        "2025-01-01T00:00:00Z",
        "2024-07-04T18:00:00Z",
        "2025-07-04T18:00:00Z",
    );
}

/// Every window holds its instant, windows tile time (the window at `end` starts at `end`),
/// and starting instants map to their own window.
#[test]
fn windows_tile_time() {
    let anchors = [
        "2026-01-31T12:00:00Z",
        "2024-02-29T00:00:00Z",
        "2025-06-15T03:04:05.678Z",
    ];
    let periods = [
        Period::Minute,
        Period::FiveMinutes,
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];
    let mut specs: Vec<WindowSpec> = periods.iter().map(|p| cal(*p)).collect();
    for a in anchors {
        specs.extend(periods.iter().map(|p| anchored(*p, a)));
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2_000 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // 1990 .. 2090.
        let t = 631_152_000_000 + i64::try_from((seed >> 11) % 3_155_760_000_000).expect("fits");
        for spec in &specs {
            let w: Window = spec.window_at(t);
            assert!(w.contains(t), "{spec:?} at {t}: {w:?}");
            assert_eq!(spec.window_at(w.start_unix_ms), w, "{spec:?}");
            assert_eq!(
                spec.window_at(w.end_unix_ms).start_unix_ms,
                w.end_unix_ms,
                "{spec:?}"
            );
            assert_eq!(
                spec.window_at(w.start_unix_ms - 1).end_unix_ms,
                w.start_unix_ms,
                "{spec:?}"
            );
        }
    }
}

#[test]
fn extreme_instants_do_not_panic() {
    for spec in [
        cal(Period::Month),
        anchored(Period::Year, "2024-02-29T00:00:00Z"),
    ] {
        for t in [i64::MIN, i64::MAX, 0, -1] {
            let w = spec.window_at(t);
            assert!(w.start_unix_ms < w.end_unix_ms);
        }
    }
}

#[test]
fn periods_from_the_proto() {
    use crate::config::v1::ResetPeriod;
    assert_eq!(Period::from_pb(ResetPeriod::Unspecified as i32), None);
    assert_eq!(Period::from_pb(99), None);
    assert_eq!(
        Period::from_pb(ResetPeriod::FiveMinutes as i32),
        Some(Period::FiveMinutes)
    );
    assert_eq!(
        Period::from_pb(ResetPeriod::Year as i32),
        Some(Period::Year)
    );
    assert_eq!(Period::Month.to_string(), "1M");
}
