//! Counters, levels and reports to and from their `config.v1` messages (pure translation):
//! what a data plane sends in its `LimitsReport`s and reads from `Grants`.

use std::sync::Arc;

use tollgate_proto::config::v1 as pb;
use tollgate_proto::window::{Period, WindowSpec};

use super::{CellKey, CounterId, LevelId, UseReport};

/// Most counters (and levels in flight) in one `LimitsReport` message; longer reports are split.
pub const MAX_REPORT_ENTRIES: usize = 2_000;

/// A level as `(kind, id, provider)`.
pub fn level_to_pb(level: &LevelId) -> (pb::LevelKind, &str, &str) {
    match level {
        LevelId::ProviderConfig {
            virtual_key_id,
            provider,
        } => (pb::LevelKind::ProviderConfig, virtual_key_id, provider),
        LevelId::VirtualKey(id) => (pb::LevelKind::VirtualKey, id, ""),
        LevelId::Team(id) => (pb::LevelKind::Team, id, ""),
        LevelId::Customer(id) => (pb::LevelKind::Customer, id, ""),
    }
}

/// The level of `(kind, id, provider)`; `None` for an unknown kind.
pub fn level_from_pb(kind: i32, id: &str, provider: &str) -> Option<LevelId> {
    Some(match pb::LevelKind::try_from(kind).ok()? {
        pb::LevelKind::ProviderConfig => LevelId::ProviderConfig {
            virtual_key_id: id.into(),
            provider: provider.into(),
        },
        pb::LevelKind::VirtualKey => LevelId::VirtualKey(id.into()),
        pb::LevelKind::Team => LevelId::Team(id.into()),
        pb::LevelKind::Customer => LevelId::Customer(id.into()),
        pb::LevelKind::Unspecified => return None,
    })
}

/// A window counter's identity on the wire; `None` for the concurrency counter (not a window
/// counter).
pub fn counter_to_pb(cell: &CellKey) -> Option<pb::CounterRef> {
    let (kind, budget_id, spec) = match &cell.counter {
        CounterId::Concurrency => return None,
        CounterId::Requests(spec) => (pb::CounterKind::Requests, "", spec),
        CounterId::Tokens(spec) => (pb::CounterKind::Tokens, "", spec),
        CounterId::Budget(id, spec) => (pb::CounterKind::Budget, &**id, spec),
    };
    let (level, id, provider) = level_to_pb(&cell.level);
    Some(pb::CounterRef {
        level: level as i32,
        id: id.to_owned(),
        provider: provider.to_owned(),
        counter: kind as i32,
        budget_id: budget_id.to_owned(),
        period: spec.period.to_pb() as i32,
        calendar_aligned: spec.calendar_aligned,
        anchor_unix_ms: if spec.calendar_aligned {
            0
        } else {
            spec.anchor_unix_ms
        },
    })
}

/// The window counter a `CounterRef` names; `None` when it names none (unknown kinds or
/// period, a budget without an id).
pub fn counter_from_pb(r: &pb::CounterRef) -> Option<CellKey> {
    let level = level_from_pb(r.level, &r.id, &r.provider)?;
    let period = Period::from_pb(r.period)?;
    let spec = WindowSpec::new(period, r.calendar_aligned, r.anchor_unix_ms);
    let counter = match pb::CounterKind::try_from(r.counter).ok()? {
        pb::CounterKind::Requests => CounterId::Requests(spec),
        pb::CounterKind::Tokens => CounterId::Tokens(spec),
        pb::CounterKind::Budget if !r.budget_id.is_empty() => {
            CounterId::Budget(Arc::from(r.budget_id.as_str()), spec)
        }
        pb::CounterKind::Budget | pb::CounterKind::Unspecified => return None,
    };
    Some(CellKey { level, counter })
}

/// A report as `LimitsReport` messages of at most [`MAX_REPORT_ENTRIES`] entries each, all
/// naming `grant_seq`, the last one `final` (one empty final message for an empty report).
pub fn report_to_pb(report: &UseReport, grant_seq: u64) -> Vec<pb::LimitsReport> {
    let counters: Vec<pb::CounterUse> = report
        .counters
        .iter()
        .filter_map(|c| {
            Some(pb::CounterUse {
                counter: Some(counter_to_pb(&c.cell)?),
                window_start_unix_ms: c.window.start_unix_ms,
                window_end_unix_ms: c.window.end_unix_ms,
                limit: c.limit,
                used: c.used,
                allowance: c.allowance,
                wanted: c.wanted,
            })
        })
        .collect();
    let in_flight: Vec<pb::LevelInFlight> = report
        .in_flight
        .iter()
        .map(|(level, n)| {
            let (kind, id, provider) = level_to_pb(level);
            pb::LevelInFlight {
                level: kind as i32,
                id: id.to_owned(),
                provider: provider.to_owned(),
                in_flight: *n,
            }
        })
        .collect();
    let mut out = Vec::new();
    let mut counters = counters.into_iter().peekable();
    let mut in_flight = in_flight.into_iter().peekable();
    loop {
        let c: Vec<_> = counters.by_ref().take(MAX_REPORT_ENTRIES).collect();
        let f: Vec<_> = in_flight
            .by_ref()
            .take(MAX_REPORT_ENTRIES - c.len())
            .collect();
        let last = counters.peek().is_none() && in_flight.peek().is_none();
        out.push(pb::LimitsReport {
            grant_seq,
            counters: c,
            in_flight: f,
            r#final: last,
            full: report.full,
        });
        if last {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{CounterHolding, Window};

    fn cells() -> Vec<CellKey> {
        let vk = LevelId::VirtualKey("vk-1".into());
        vec![
            CellKey {
                level: LevelId::ProviderConfig {
                    virtual_key_id: "vk-1".into(),
                    provider: "bedrock".into(),
                },
                counter: CounterId::Requests(WindowSpec::calendar(Period::Minute)),
            },
            CellKey {
                level: vk.clone(),
                counter: CounterId::Tokens(WindowSpec::calendar(Period::Hour)),
            },
            CellKey {
                level: LevelId::Team("t".into()),
                counter: CounterId::Budget(
                    "b-1".into(),
                    WindowSpec::anchored(Period::Month, 1_700_000_000_123),
                ),
            },
            CellKey {
                level: LevelId::Customer("c".into()),
                counter: CounterId::Budget("b-2".into(), WindowSpec::calendar(Period::Year)),
            },
        ]
    }

    #[test]
    fn counters_round_trip() {
        for cell in cells() {
            let wire = counter_to_pb(&cell).expect("a window counter");
            assert_eq!(counter_from_pb(&wire), Some(cell));
        }
        let concurrency = CellKey {
            level: LevelId::VirtualKey("k".into()),
            counter: CounterId::Concurrency,
        };
        assert_eq!(counter_to_pb(&concurrency), None);
    }

    #[test]
    fn unknown_counters_name_nothing() {
        let good = counter_to_pb(&cells()[2]).expect("a window counter");
        for bad in [
            pb::CounterRef {
                level: 99,
                ..good.clone()
            },
            pb::CounterRef {
                level: 0,
                ..good.clone()
            },
            pb::CounterRef {
                counter: 0,
                ..good.clone()
            },
            pb::CounterRef {
                period: 0,
                ..good.clone()
            },
            pb::CounterRef {
                budget_id: String::new(),
                ..good.clone()
            },
        ] {
            assert_eq!(counter_from_pb(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn long_reports_are_split_and_the_last_is_final() {
        let holding = |i: u64| CounterHolding {
            cell: CellKey {
                level: LevelId::VirtualKey(format!("k{i}").into()),
                counter: CounterId::Requests(WindowSpec::calendar(Period::Minute)),
            },
            window: Window {
                start_unix_ms: 60_000,
                end_unix_ms: 120_000,
            },
            limit: 10,
            used: i,
            wanted: 0,
            allowance: 5,
        };
        let report = UseReport {
            full: true,
            counters: (0..MAX_REPORT_ENTRIES as u64 + 1).map(holding).collect(),
            in_flight: vec![(LevelId::Team("t".into()), 3)],
        };
        let msgs = report_to_pb(&report, 7);
        assert_eq!(msgs.len(), 2);
        assert!(!msgs[0].r#final && msgs[1].r#final);
        assert!(msgs.iter().all(|m| m.grant_seq == 7 && m.full));
        assert_eq!(msgs[0].counters.len(), MAX_REPORT_ENTRIES);
        assert_eq!(msgs[1].counters.len(), 1);
        assert_eq!(msgs[1].counters[0].used, MAX_REPORT_ENTRIES as u64);
        assert_eq!(
            msgs[1].in_flight,
            vec![pb::LevelInFlight {
                level: pb::LevelKind::Team as i32,
                id: "t".into(),
                provider: String::new(),
                in_flight: 3,
            }]
        );
        let empty = report_to_pb(&UseReport::default(), 0);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].r#final && empty[0].counters.is_empty());
    }
}
