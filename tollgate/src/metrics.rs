//! `/metrics` of every role: one `prometheus-client` registry per process holding what the role
//! runs (the data plane's metrics, `tollgate_data_plane::metrics`; the control plane's,
//! `tollgate_control_plane::metrics`; and the listeners' connection counts, defined here), served
//! as Prometheus text (format 0.0.4) without authentication, like `/health`. README "Metrics"
//! lists every metric; a test below keeps it and the three definition lists alike.

use std::fmt;
use std::sync::Arc;

use axum::routing::MethodRouter;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tollgate_data_plane::metrics::{CONTENT_TYPE, Def, encode};

use crate::listener::{ListenerStats, Wait};

pub const CONNECTIONS_OPEN: Def = Def {
    name: "tollgate_listener_connections_open",
    kind: MetricType::Gauge,
    help: "Client connections open on the listener",
    labels: &["listener"],
};
pub const CONNECTIONS_ACCEPTED: Def = Def {
    name: "tollgate_listener_connections_accepted",
    kind: MetricType::Counter,
    help: "Client connections accepted",
    labels: &["listener"],
};
pub const CONNECTIONS_TIMED_OUT: Def = Def {
    name: "tollgate_listener_connections_timed_out",
    kind: MetricType::Counter,
    help: "Connections closed because a client was too slow: header_read, body_read, idle, \
           handshake, send",
    labels: &["listener", "timeout"],
};
pub const AT_CAPACITY: Def = Def {
    name: "tollgate_listener_at_capacity",
    kind: MetricType::Counter,
    help: "Times the listener reached its connection limit and paused accepting",
    labels: &["listener"],
};

/// The listeners' metrics (every role).
#[cfg(test)]
const DEFS: &[Def] = &[
    CONNECTIONS_OPEN,
    CONNECTIONS_ACCEPTED,
    CONNECTIONS_TIMED_OUT,
    AT_CAPACITY,
];

/// Registers the connection counts of `listeners` (one collector: each metric family is
/// written once, with a series per listener).
pub fn register_listeners(listeners: Vec<Arc<ListenerStats>>, registry: &mut Registry) {
    registry.register_collector(Box::new(Listeners(listeners)));
}

/// The `GET /metrics` route serving `registry`.
pub fn route(registry: Registry) -> MethodRouter {
    let registry = Arc::new(registry);
    axum::routing::get(move || {
        let body = encode(&registry);
        async move { ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body) }
    })
}

struct Listeners(Vec<Arc<ListenerStats>>);

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|l| l.name()))
            .finish()
    }
}

impl Collector for Listeners {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        type Read = fn(&ListenerStats) -> u64;
        let each: [(&Def, Read); 3] = [
            (&CONNECTIONS_OPEN, ListenerStats::open),
            (&CONNECTIONS_ACCEPTED, ListenerStats::accepted_total),
            (&AT_CAPACITY, ListenerStats::at_capacity_total),
        ];
        for (def, value) in each {
            let mut m = enc.encode_descriptor(def.name, def.help, None, def.kind)?;
            for l in &self.0 {
                let labels = [("listener", l.name())];
                let m = m.encode_family(&labels)?;
                if def.kind == MetricType::Counter {
                    ConstCounter::new(value(l)).encode(m)?;
                } else {
                    ConstGauge::new(value(l)).encode(m)?;
                }
            }
        }
        let def = &CONNECTIONS_TIMED_OUT;
        let mut m = enc.encode_descriptor(def.name, def.help, None, def.kind)?;
        for l in &self.0 {
            for wait in Wait::ALL {
                let labels = [("listener", l.name()), ("timeout", wait.label())];
                ConstCounter::new(l.timed_out_total(wait)).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README "Metrics": one row per metric of every role (its exposed name, type and labels),
    /// and no row for a metric that does not exist (the one test of that table).
    #[test]
    fn the_readme_table_is_every_metric_of_every_role() {
        let readme = include_str!("../../README.md");
        let defs: Vec<(String, String, Vec<String>)> = tollgate_data_plane::metrics::DEFS
            .iter()
            .copied()
            .chain(DEFS.iter().copied())
            .map(|d| {
                (
                    d.exposed(),
                    d.kind.as_str().to_owned(),
                    d.labels.iter().map(|l| (*l).to_owned()).collect(),
                )
            })
            .chain(tollgate_control_plane::metrics::DEFS.iter().map(|d| {
                (
                    d.exposed(),
                    d.kind.as_str().to_owned(),
                    d.labels.iter().map(|l| (*l).to_owned()).collect(),
                )
            }))
            .collect();
        let rows = readme_rows(readme);
        for (name, kind, labels) in &defs {
            let row = rows
                .iter()
                .find(|r| &r.0 == name)
                .unwrap_or_else(|| panic!("README Metrics has no row for {name}"));
            assert_eq!((&row.1, &row.2), (kind, labels), "{name}");
        }
        for row in &rows {
            assert!(
                defs.iter().any(|d| d.0 == row.0),
                "README Metrics lists {}, which no role exposes",
                row.0
            );
        }
        let mut names: Vec<&str> = defs.iter().map(|d| d.0.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a name defined twice");
    }

    /// The rows of README's "Metrics" table: (name, type, labels).
    fn readme_rows(readme: &str) -> Vec<(String, String, Vec<String>)> {
        let section = readme
            .split("\n## Metrics\n")
            .nth(1)
            .expect("a Metrics section")
            .split("\n## ")
            .next()
            .unwrap_or_default();
        section
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                name.starts_with("tollgate_").then_some(())?;
                let labels = cells
                    .get(3)?
                    .split(',')
                    .map(|c| c.trim().trim_matches('`').to_owned())
                    .filter(|c| !c.is_empty() && c != "—")
                    .collect();
                Some((name.to_owned(), (*cells.get(2)?).to_owned(), labels))
            })
            .collect()
    }
}
