//! Background work of a running control plane, started by [`ControlPlane::with_store`]:
//!
//! * **Following other replicas** (PostgreSQL only). Several control planes may share one
//!   database; each mutation `NOTIFY`s the version it committed. This task receives those
//!   notifications ([`Store::config_changes`](crate::Store::config_changes)) and rebuilds and
//!   republishes the snapshot when a version newer than the published one appears, and
//!   unconditionally after the listener (re)connected. As a safety net against a silently dead
//!   listener connection it also compares the stored version with the published one every
//!   [`POLL_INTERVAL`].
//! * **Usage storage maintenance**: at start and then hourly, the daily usage partitions from
//!   yesterday to two days ahead are created (PostgreSQL) and the retention, if configured
//!   ([`ControlPlane::set_usage_retention_days`]), is applied; expired browser sessions and
//!   `tollgate login` sign-ins are removed (they are refused from the moment they expire either
//!   way).
//!
//! The tasks hold only a weak reference to the control plane and end when its last handle is
//! dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::StoreWork;
use crate::store::ConfigChange;
use crate::{ControlPlane, Inner};

/// How often the stored config version is compared with the published one (PostgreSQL).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// How often the usage maintenance runs.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);
/// Daily partitions kept ready: yesterday, today and the next two days.
pub(crate) const USAGE_PARTITION_DAYS: u32 = 4;

pub(crate) fn spawn_background_tasks(cp: &ControlPlane) {
    let stop = cp.inner.tasks.clone();
    if let Some(changes) = cp.inner.store.config_changes() {
        tokio::spawn(follow(Arc::downgrade(&cp.inner), changes, stop.clone()));
    }
    tokio::spawn(rebalance_allowances(
        Arc::downgrade(&cp.inner),
        stop.clone(),
    ));
    tokio::spawn(maintain_usage(Arc::downgrade(&cp.inner), stop.clone()));
    tokio::spawn(crate::job_runner::run(
        Arc::downgrade(&cp.inner),
        cp.inner.jobs_wake.clone(),
        stop,
    ));
}

/// Rebalances the data planes' allowances every [`crate::allowances::REBALANCE_EVERY`]; the
/// Watch streams deliver the grants.
async fn rebalance_allowances(weak: Weak<Inner>, stop: CancellationToken) {
    let mut every = tokio::time::interval(crate::allowances::REBALANCE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(cp) = upgrade(&weak) else { return };
        let members = cp.inner.fleet.members();
        let queued = cp.inner.allowances.rebalance(&members, crate::unix_ms());
        if queued > 0 {
            tracing::debug!(
                grants = queued,
                members = members.len(),
                "allowances rebalanced"
            );
        }
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<ControlPlane> {
    weak.upgrade().map(|inner| ControlPlane { inner })
}

/// What a round of [`follow`] has to do.
enum Work {
    /// Republish if the stored version is newer than the published one.
    Check,
    /// Republish if `0` is newer than the published version.
    Newer(u64),
    /// Republish (a no-op when nothing changed).
    Resync,
}

async fn follow(
    weak: Weak<Inner>,
    mut changes: mpsc::Receiver<ConfigChange>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            c = changes.recv() => match c {
                Some(c) => Some(c),
                None => return,
            },
            _ = tokio::time::sleep(POLL_INTERVAL) => None,
        };
        // Coalesce a burst of notifications into one rebuild.
        let mut work = match first {
            None => Work::Check,
            Some(ConfigChange::Resync) => Work::Resync,
            Some(ConfigChange::Committed(v)) => Work::Newer(v),
        };
        while let Ok(more) = changes.try_recv() {
            work = match (work, more) {
                (Work::Resync, _) | (_, ConfigChange::Resync) => Work::Resync,
                (Work::Newer(a), ConfigChange::Committed(b)) => Work::Newer(a.max(b)),
                (Work::Check, ConfigChange::Committed(b)) => Work::Newer(b),
            };
        }
        let Some(cp) = upgrade(&weak) else { return };
        let published = cp.published_version();
        let needed = match work {
            Work::Resync => true,
            Work::Newer(v) => v > published,
            Work::Check => match cp.inner.store.config_version().await {
                Ok(v) => v > published,
                Err(e) => {
                    cp.count_store_error(StoreWork::ConfigVersionRead);
                    tracing::warn!(error = %e, "cannot read the config version");
                    false
                }
            },
        };
        if !needed {
            continue;
        }
        let result = match work {
            Work::Newer(v) => cp.republish_if_behind(v).await,
            Work::Resync | Work::Check => cp.republish().await,
        };
        match result {
            Ok(version) if version > published => tracing::info!(
                version,
                previous = published,
                "picked up a config change committed by another replica"
            ),
            Ok(_) => {}
            Err(e) => {
                cp.count_store_error(StoreWork::SnapshotRebuild);
                tracing::error!(error = %e, "cannot rebuild the snapshot after a config change")
            }
        }
    }
}

async fn maintain_usage(weak: Weak<Inner>, stop: CancellationToken) {
    loop {
        let Some(cp) = upgrade(&weak) else { return };
        if let Err(e) = cp.maintain_usage_storage().await {
            cp.count_store_error(StoreWork::UsageMaintenance);
            tracing::warn!(error = %e, "usage storage maintenance failed; will retry");
        }
        cp.purge_expired_logins().await;
        drop(cp);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
        }
    }
}
