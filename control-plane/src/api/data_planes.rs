//! `GET /api/data-planes`: the fleet view (see [`crate::fleet`]).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::timestamp;
use crate::ControlPlane;
use crate::fleet::NodeStatus;

/// One data plane that watches (or watched) this control-plane replica.
#[derive(Serialize, ToSchema)]
pub struct DataPlane {
    /// The id the node announced in its `Hello`.
    pub node_id: String,
    /// Where it serves inference (as announced), else the address its stream came from.
    pub address: String,
    /// Its build version.
    pub build_version: String,
    /// The config version it last reported as applied.
    pub applied_version: u64,
    /// The newest config version sent to it.
    pub sent_version: u64,
    /// Why it rejected (NACKed) a snapshot, until it applies that version or a newer one.
    pub last_error: Option<String>,
    /// The version that NACK was about.
    pub last_error_version: Option<u64>,
    /// Whether its config stream is open.
    pub connected: bool,
    /// RFC 3339. When it was last heard from (now while connected).
    pub last_seen: String,
    /// RFC 3339. When its current (or last) config stream opened.
    pub connected_since: String,
    /// Its applied version is older than the published one, or it has not been seen for more
    /// than 30 seconds.
    pub lagging: bool,
    /// The provider keys its outlier detection has out of service (failed repeatedly), as it
    /// last reported them; empty when all are in service.
    pub ejected_keys: Vec<EjectedKey>,
}

/// A provider key a data plane keeps out of service until a probe request succeeds.
#[derive(Serialize, ToSchema)]
pub struct EjectedKey {
    pub provider: String,
    pub key_id: String,
    pub key_name: String,
    /// RFC 3339. When its cooldown ends and one request probes it; null while being probed.
    pub until: Option<String>,
    /// How often that data plane ejected it since it started.
    pub ejections_total: u64,
}

impl From<NodeStatus> for DataPlane {
    fn from(n: NodeStatus) -> Self {
        DataPlane {
            node_id: n.node_id,
            address: n.address,
            build_version: n.build_version,
            applied_version: n.applied_version,
            sent_version: n.sent_version,
            last_error: n.last_error,
            last_error_version: n.last_error_version,
            connected: n.connected,
            last_seen: timestamp(n.last_seen),
            connected_since: timestamp(n.connected_since),
            lagging: n.lagging,
            ejected_keys: n
                .ejected_keys
                .into_iter()
                .map(|k| EjectedKey {
                    provider: k.provider,
                    key_id: k.key_id,
                    key_name: k.key_name,
                    until: k.until.map(timestamp),
                    ejections_total: k.ejections_total,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DataPlaneList {
    /// Ordered by node id.
    pub data_planes: Vec<DataPlane>,
    pub count: usize,
    /// The config version this replica publishes now.
    pub published_version: u64,
}

/// The data planes that watch this control-plane replica and how far their config is.
///
/// The registry is in memory and per replica: it is rebuilt as data planes reconnect after a
/// restart, and with several replicas each lists the nodes connected to it. Disconnected nodes
/// stay listed for a day.
#[utoipa::path(
    get,
    path = "/api/data-planes",
    tag = "data-planes",
    responses(
        (status = 200, description = "The data planes, ordered by node id", body = DataPlaneList),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_data_planes(State(cp): State<ControlPlane>) -> Json<DataPlaneList> {
    let published_version = cp.published_version();
    let data_planes: Vec<DataPlane> = cp
        .inner
        .fleet
        .list(published_version)
        .into_iter()
        .map(DataPlane::from)
        .collect();
    Json(DataPlaneList {
        count: data_planes.len(),
        data_planes,
        published_version,
    })
}
