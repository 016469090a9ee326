//! Several control-plane replicas on one PostgreSQL database: a change made through one replica
//! is published by the others (LISTEN/NOTIFY), also after their listener connections were cut.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::watch;
use tollgate_control_plane::{AdminAuth, ControlPlane, ControlPlaneConfig, StoreConfig};
use tollgate_proto::config::v1::Snapshot;
use tower::ServiceExt as _;

const WAIT: Duration = Duration::from_secs(10);
/// "Published at once": well under the 30 s fallback poll, with room for a loaded CI machine.
/// It tells a NOTIFY-driven publish from a polled one; it is not a speed target.
const AT_ONCE: Duration = Duration::from_secs(3);

async fn replica(url: &str) -> ControlPlane {
    ControlPlane::start(ControlPlaneConfig {
        store: StoreConfig::Postgres {
            url: url.to_owned(),
        },
        secret_key: [9u8; 32],
        admin_auth: AdminAuth {
            token: None,
            allow_loopback_without_token: true,
        },
        env_allow: Default::default(),
    })
    .await
    .unwrap()
}

async fn post(router: &Router, path: &str, body: Value) -> StatusCode {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
    ));
    router.clone().oneshot(req).await.unwrap().status()
}

/// Waits until `rx` publishes `version`; returns how long it took.
async fn published(rx: &mut watch::Receiver<Arc<Snapshot>>, version: u64) -> Duration {
    let t = Instant::now();
    tokio::time::timeout(WAIT, rx.wait_for(|s| s.version >= version))
        .await
        .unwrap_or_else(|_| panic!("version {version} never published"))
        .unwrap();
    t.elapsed()
}

/// Ends the backends that LISTEN on the config channel (every replica's listener).
async fn cut_listeners(url: &str) -> u64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%') t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    n as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_replica_is_published_by_the_others() {
    common::with_postgres(|url| async move {
        let a = replica(&url).await;
        let b = replica(&url).await;
        let mut rx_a = a.snapshots();
        let mut rx_b = b.snapshots();
        assert_eq!(rx_b.borrow().version, 1);

        assert_eq!(
            post(
                &a.admin_router(),
                "/api/providers",
                json!({"provider": "bedrock"})
            )
            .await,
            StatusCode::CREATED
        );
        assert_eq!(a.published_version(), 2, "the writer publishes at once");
        let took = published(&mut rx_b, 2).await;
        assert!(took < AT_ONCE, "{took:?}");
        assert_eq!(rx_b.borrow().providers[0].name, "bedrock");

        // And the other way round.
        assert_eq!(
            post(
                &b.admin_router(),
                "/api/virtual-keys",
                json!({"name": "team"})
            )
            .await,
            StatusCode::CREATED
        );
        published(&mut rx_a, 3).await;
        assert_eq!(rx_a.borrow().virtual_keys.len(), 1);

        // Cut the listener connections: the replicas reconnect (with backoff), resync, and
        // keep following.
        let cut = cut_listeners(&url).await;
        assert!(cut >= 2, "both replicas listen ({cut})");
        assert_eq!(
            post(
                &a.admin_router(),
                "/api/providers",
                json!({"provider": "anthropic"})
            )
            .await,
            StatusCode::CREATED
        );
        published(&mut rx_b, 4).await;
        assert_eq!(rx_b.borrow().providers.len(), 2);
        // Listening again.
        let deadline = Instant::now() + WAIT;
        while listening(&url).await < 2 {
            assert!(Instant::now() < deadline, "the listeners came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            post(
                &a.admin_router(),
                "/api/virtual-keys",
                json!({"name": "second"})
            )
            .await,
            StatusCode::CREATED
        );
        let took = published(&mut rx_b, 5).await;
        assert!(took < AT_ONCE, "{took:?}");
        drop((a, b));
    })
    .await;
}

/// How many backends LISTEN on the config channel now.
async fn listening(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    n
}
