//! The control plane's Prometheus metrics, all defined here ([`DEFS`]): the config it publishes,
//! the data planes watching it, usage ingest and store failures. Counters are
//! `prometheus-client` metrics kept in the running control plane (one per [`ControlPlane`], not
//! process-global); the config and fleet figures are read at each scrape ([`register`]).
//! README "Metrics" is the reference table; a test of the `tollgate` binary keeps the two alike.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::ControlPlane;

/// A metric's definition; a counter is exposed with `_total` appended ([`Def::exposed`]).
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl Def {
    /// The name series carry.
    pub fn exposed(&self) -> String {
        match self.kind {
            MetricType::Counter => format!("{}_total", self.name),
            _ => self.name.to_owned(),
        }
    }
}

pub const CONFIG_PUBLISHED_VERSION: Def = Def {
    name: "tollgate_config_published_version",
    kind: MetricType::Gauge,
    help: "Config version this control plane publishes",
    labels: &[],
};
pub const DATA_PLANES: Def = Def {
    name: "tollgate_data_planes",
    kind: MetricType::Gauge,
    help: "Data planes this control plane knows of (its fleet view), by whether their config \
           stream is open (connected) or not (disconnected)",
    labels: &["state"],
};
pub const DATA_PLANES_LAGGING: Def = Def {
    name: "tollgate_data_planes_lagging",
    kind: MetricType::Gauge,
    help: "Data planes that applied an older config than the one published, or were not heard \
           from lately",
    labels: &[],
};
pub const USAGE_INGESTED: Def = Def {
    name: "tollgate_usage_ingested_records",
    kind: MetricType::Counter,
    help: "Usage records received from data planes, by outcome: new (stored), duplicate \
           (already stored: a resent batch), invalid (no request id; dropped)",
    labels: &["outcome"],
};
pub const USAGE_BATCHES: Def = Def {
    name: "tollgate_usage_ingest_batches",
    kind: MetricType::Counter,
    help: "Usage batches committed (stored) or refused because the store failed (failed; the \
           data plane resends them)",
    labels: &["result"],
};
pub const STORE_ERRORS: Def = Def {
    name: "tollgate_store_errors",
    kind: MetricType::Counter,
    help: "Failed store work of the control plane, by operation: usage_ingest, \
           snapshot_rebuild, config_version_read, usage_maintenance",
    labels: &["operation"],
};

/// Every control-plane metric, in the order `/metrics` shows them.
pub const DEFS: &[Def] = &[
    CONFIG_PUBLISHED_VERSION,
    DATA_PLANES,
    DATA_PLANES_LAGGING,
    USAGE_INGESTED,
    USAGE_BATCHES,
    STORE_ERRORS,
];

/// The store work [`STORE_ERRORS`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreWork {
    UsageIngest,
    SnapshotRebuild,
    ConfigVersionRead,
    UsageMaintenance,
}

impl StoreWork {
    const ALL: [StoreWork; 4] = [
        StoreWork::UsageIngest,
        StoreWork::SnapshotRebuild,
        StoreWork::ConfigVersionRead,
        StoreWork::UsageMaintenance,
    ];

    fn label(self) -> &'static str {
        match self {
            StoreWork::UsageIngest => "usage_ingest",
            StoreWork::SnapshotRebuild => "snapshot_rebuild",
            StoreWork::ConfigVersionRead => "config_version_read",
            StoreWork::UsageMaintenance => "usage_maintenance",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BatchResult {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

/// The counters of one control plane. Every series exists from the start (at 0).
#[derive(Debug)]
pub(crate) struct Metrics {
    ingested: Family<Outcome, Counter>,
    batches: Family<BatchResult, Counter>,
    store_errors: Family<Operation, Counter>,
    /// Handles on the series above: new, duplicate, invalid; stored, failed; [`StoreWork::ALL`].
    new: Counter,
    duplicate: Counter,
    invalid: Counter,
    stored: Counter,
    failed: Counter,
    errors: [Counter; 4],
}

impl Default for Metrics {
    fn default() -> Self {
        let ingested = Family::<Outcome, Counter>::default();
        let batches = Family::<BatchResult, Counter>::default();
        let store_errors = Family::<Operation, Counter>::default();
        let outcome = |outcome| ingested.get_or_create_owned(&Outcome { outcome });
        let result = |result| batches.get_or_create_owned(&BatchResult { result });
        Metrics {
            new: outcome("new"),
            duplicate: outcome("duplicate"),
            invalid: outcome("invalid"),
            stored: result("stored"),
            failed: result("failed"),
            errors: StoreWork::ALL.map(|w| {
                store_errors.get_or_create_owned(&Operation {
                    operation: w.label(),
                })
            }),
            ingested,
            batches,
            store_errors,
        }
    }
}

impl Metrics {
    /// A usage batch: `received` records, `invalid` of them dropped, `new` stored for the first
    /// time (the rest were duplicates).
    pub(crate) fn batch_stored(&self, received: u64, invalid: u64, new: u64) {
        self.stored.inc();
        self.invalid.inc_by(invalid);
        self.new.inc_by(new);
        self.duplicate
            .inc_by(received.saturating_sub(invalid).saturating_sub(new));
    }

    /// A usage batch the store refused.
    pub(crate) fn batch_failed(&self) {
        self.failed.inc();
        self.store_error(StoreWork::UsageIngest);
    }

    pub(crate) fn store_error(&self, work: StoreWork) {
        self.errors[StoreWork::ALL.iter().position(|w| *w == work).unwrap_or(0)].inc();
    }
}

/// Registers a control plane's metrics.
pub fn register(cp: &ControlPlane, registry: &mut Registry) {
    registry.register_collector(Box::new(ControlPlaneCollector(cp.clone())));
}

struct ControlPlaneCollector(ControlPlane);

impl fmt::Debug for ControlPlaneCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlPlaneCollector")
    }
}

fn descriptor<'a>(
    enc: &'a mut DescriptorEncoder<'_>,
    def: &'a Def,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, fmt::Error> {
    enc.encode_descriptor(def.name, def.help, None, def.kind)
}

impl Collector for ControlPlaneCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let cp = &self.0;
        ConstGauge::new(cp.published_version())
            .encode(descriptor(&mut enc, &CONFIG_PUBLISHED_VERSION)?)?;
        let planes = cp.data_planes();
        let connected = planes.iter().filter(|p| p.connected).count() as u64;
        let lagging = planes.iter().filter(|p| p.lagging).count() as u64;
        let mut m = descriptor(&mut enc, &DATA_PLANES)?;
        for (state, n) in [
            ("connected", connected),
            ("disconnected", planes.len() as u64 - connected),
        ] {
            ConstGauge::new(n).encode(m.encode_family(&[("state", state)])?)?;
        }
        ConstGauge::new(lagging).encode(descriptor(&mut enc, &DATA_PLANES_LAGGING)?)?;
        let m = &cp.inner.metrics;
        m.ingested.encode(descriptor(&mut enc, &USAGE_INGESTED)?)?;
        m.batches.encode(descriptor(&mut enc, &USAGE_BATCHES)?)?;
        m.store_errors.encode(descriptor(&mut enc, &STORE_ERRORS)?)
    }
}
