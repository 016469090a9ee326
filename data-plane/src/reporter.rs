//! The usage back-channel of a split data plane: records from the request path's
//! [`UsageSink`](crate::usage::UsageSink) are delivered to the control plane over
//! `UsageService.Report`, at least once, and survive restarts of either side.
//!
//! * **Intake.** The task drains the sink's channel (the request path only ever `try_send`s, so
//!   it never waits for this task) and appends what it got to the spool at once: to the open
//!   segment file under `spool_dir` (written right away, fsynced every `flush_interval`), so a
//!   killed process loses nothing it had taken from the channel.
//! * **Batches.** Records are sent in batches of up to `batch_max`, as soon as that many are
//!   waiting or at the latest after `flush_interval`, each with a new increasing `batch_id`, with
//!   up to 32 batches in flight. An ack commits its batch: the records are released, and a spool
//!   segment whose records are all acknowledged is deleted.
//! * **Resends.** When the stream breaks, every unacknowledged record is sent again on the next
//!   stream (reconnecting with backoff and full jitter, see
//!   [`ConnectOptions`]); so is a stream on which a batch stays unacknowledged for
//!   `ack_timeout` (2 min). At start, records spooled by an earlier
//!   run are loaded and sent first. The control plane stores idempotently on `request_id`, so
//!   resends never count twice.
//! * **Bound.** At most `spool_max_records` unacknowledged records are kept (in memory and on
//!   disk); beyond that the oldest are dropped with a `warn` line and counted
//!   ([`ReporterStats::dropped_total`]). Memory use is about the size of the records kept
//!   (a few hundred bytes each), plus the bodies content logging records, which the data
//!   plane's [`ContentBudget`](crate::content::ContentBudget) bounds wherever they are held. A
//!   batch carries at most [`BATCH_CONTENT_BYTES`] of bodies (or one record), so it stays under
//!   the control plane's message limit.
//!
//! Spool format: `spool_dir/usage-<20-digit id>.seg`, append-only, each record a
//! length-delimited (varint length prefix) protobuf `tollgate.usage.v1.UsageRecord`. One
//! reporter per spool directory.

mod spool;

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::usage::v1::usage_service_client::UsageServiceClient;
use tollgate_proto::usage::v1::{UsageAck, UsageBatch, UsageRecord};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::grpc::{self, Backoff, ClientTls, ConnectOptions, error_chain, status_text};
use spool::{IoJob, Spool};

/// Default records per batch.
pub const DEFAULT_BATCH_MAX: usize = 500;
/// Default longest wait before a partial batch is sent.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the request path's usage queue is drained into the spool.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// Default bound of unacknowledged records kept.
pub const DEFAULT_SPOOL_MAX_RECORDS: usize = 1_000_000;
/// Recorded bodies per batch, at most (a record with more goes alone): 4 MiB, so that a batch
/// stays well under the control plane's 16 MiB message limit (a record's two bodies are at most
/// 1 MiB each).
pub const BATCH_CONTENT_BYTES: usize = 4 * 1024 * 1024;
/// Batches sent and not yet acknowledged, at most.
const WINDOW: usize = 32;
/// After the sink is closed, how long the reporter keeps trying to deliver what it holds.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Least time between two warnings about spool file errors.
const IO_WARN_EVERY: Duration = Duration::from_secs(10);

/// Where and how usage is reported.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// `http://host:port` or `https://host:port` of the control plane's gRPC listener.
    pub endpoint: String,
    /// TLS settings for an `https://` endpoint; see [`RemoteConfig::tls`](crate::source::RemoteConfig::tls).
    pub tls: Option<ClientTls>,
    /// Sent as `authorization: Bearer <token>`.
    pub join_token: Option<String>,
    pub node_id: String,
    /// Directory of the spool segments; `None`: unacknowledged records are kept in memory only
    /// (lost when the process ends).
    pub spool_dir: Option<PathBuf>,
    /// Records per batch, at most (e.g. 500).
    pub batch_max: usize,
    /// Longest wait before a partial batch is sent (e.g. 1 s); also the spool's fsync interval.
    pub flush_interval: Duration,
    /// Unacknowledged records kept, at most (e.g. 1 000 000); the oldest are dropped beyond.
    pub spool_max_records: usize,
}

impl ReporterConfig {
    /// A config with the default batch size, flush interval and bound, without spool or token.
    pub fn new(endpoint: impl Into<String>, node_id: impl Into<String>) -> ReporterConfig {
        ReporterConfig {
            endpoint: endpoint.into(),
            tls: None,
            join_token: None,
            node_id: node_id.into(),
            spool_dir: None,
            batch_max: DEFAULT_BATCH_MAX,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            spool_max_records: DEFAULT_SPOOL_MAX_RECORDS,
        }
    }
}

/// Counters of a running reporter (for metrics and tests).
#[derive(Debug, Default)]
pub struct ReporterStats {
    received: AtomicU64,
    acked: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
    connected: AtomicBool,
}

impl ReporterStats {
    /// Records taken from the sink (plus those loaded from the spool at start).
    pub fn received_total(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Records acknowledged by the control plane.
    pub fn acked_total(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Records dropped because the spool bound was reached.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records held and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// True while the usage stream is open.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// A running reporter: its task and its counters.
#[derive(Debug)]
pub struct ReporterHandle {
    pub task: JoinHandle<()>,
    pub stats: Arc<ReporterStats>,
}

impl ReporterHandle {
    /// Records dropped because the spool bound was reached.
    pub fn dropped_total(&self) -> u64 {
        self.stats.dropped_total()
    }
}

/// Starts the reporter with the default [`ConnectOptions`]. `rx` is the receiver of
/// [`UsageSink::channel`](crate::usage::UsageSink::channel). The task ends when the sink is
/// closed and everything was delivered (or after a short grace; spooled records are then sent
/// by the next run).
pub fn spawn_reporter(rx: mpsc::Receiver<UsageRecord>, cfg: ReporterConfig) -> JoinHandle<()> {
    start_reporter(rx, cfg, ConnectOptions::default()).task
}

/// [`spawn_reporter`] with explicit connection options, returning the counters too.
pub fn start_reporter(
    rx: mpsc::Receiver<UsageRecord>,
    cfg: ReporterConfig,
    opts: ConnectOptions,
) -> ReporterHandle {
    let stats = Arc::new(ReporterStats::default());
    let task = tokio::spawn(run(rx, cfg, opts, Arc::clone(&stats)));
    ReporterHandle { task, stats }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Opening = BoxFuture<Result<tonic::Response<tonic::Streaming<UsageAck>>, tonic::Status>>;

enum Conn {
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Connecting(BoxFuture<Result<Channel, String>>),
    Up(Up),
}

struct Up {
    tx: mpsc::Sender<UsageBatch>,
    inbound: Inbound,
    since: Instant,
}

/// The response side of a Report call: headers may come only after the first batch, so
/// batches are sent while the call is still opening.
enum Inbound {
    Opening(Opening),
    Open(Box<tonic::Streaming<UsageAck>>),
}

// One value per loop turn, a few per second: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Event {
    /// Time to take the records queued since the last drain.
    Drain,
    Tick,
    Retry,
    Connected(Result<Channel, String>),
    Opened(Result<tonic::Response<tonic::Streaming<UsageAck>>, tonic::Status>),
    Ack(Result<Option<UsageAck>, tonic::Status>),
    Permit(mpsc::OwnedPermit<UsageBatch>),
}

struct Reporter {
    cfg: ReporterConfig,
    opts: ConnectOptions,
    stats: Arc<ReporterStats>,
    spool: Spool,
    batch_max: usize,
    /// batch id -> (sequence range, records in the batch, when it was sent)
    inflight: HashMap<u64, (Range<u64>, usize, Instant)>,
    next_batch_id: u64,
    flush_due: bool,
    send_gzip: bool,
    backoff: Backoff,
    last_io_warning: Option<Instant>,
}

async fn run(
    mut rx: mpsc::Receiver<UsageRecord>,
    cfg: ReporterConfig,
    opts: ConnectOptions,
    stats: Arc<ReporterStats>,
) {
    let spool = open_spool(&cfg, &stats).await;
    let mut r = Reporter {
        batch_max: cfg.batch_max.max(1),
        backoff: Backoff::new(&opts),
        cfg,
        opts,
        stats,
        spool,
        inflight: HashMap::new(),
        next_batch_id: 1,
        flush_due: false,
        send_gzip: true,
        last_io_warning: None,
    };
    r.update_pending();
    let mut flush = tokio::time::interval(r.cfg.flush_interval.max(Duration::from_millis(1)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The queue is drained on a timer rather than on every record: a request never wakes this
    // task (at 1,000 req/s that wake-up cost as much CPU as signing the request).
    let mut drain = tokio::time::interval(
        DRAIN_INTERVAL
            .min(r.cfg.flush_interval)
            .max(Duration::from_millis(1)),
    );
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = r.connect();
    let mut closing: Option<Instant> = None;
    loop {
        if let Some(since) = closing
            && (r.spool.unacked() == 0 || since.elapsed() >= SHUTDOWN_GRACE)
        {
            let jobs = r.spool.sync_jobs();
            r.io(jobs).await;
            if r.spool.unacked() > 0 {
                tracing::info!(
                    pending = r.spool.unacked(),
                    "usage reporter stopping; undelivered records stay spooled"
                );
            }
            r.stats.connected.store(false, Ordering::Relaxed);
            return;
        }
        let can_send = r.inflight.len() < WINDOW
            && (r.spool.unsent() >= r.batch_max || (r.flush_due && r.spool.unsent() > 0));
        let event = tokio::select! {
            _ = drain.tick(), if closing.is_none() => Event::Drain,
            _ = flush.tick() => Event::Tick,
            ev = conn_event(&mut conn, can_send) => ev,
        };
        match event {
            Event::Drain => {
                let max = r.batch_max.max(256);
                let mut records = Vec::new();
                let closed = crate::usage::drain(&mut rx, &mut records, max);
                if records.len() == max {
                    // More may be waiting: come back at once (after other events had a turn).
                    drain.reset_immediately();
                }
                if !records.is_empty() {
                    r.accept(records).await;
                }
                if closed {
                    closing = Some(Instant::now());
                }
            }
            Event::Tick => {
                r.flush_due = r.spool.unsent() > 0;
                let jobs = r.spool.sync_jobs();
                r.io(jobs).await;
                if let Some(waited) = r.oldest_unacked() {
                    let since = up_since(&conn);
                    let error = format!("no ack for {} ms", waited.as_millis());
                    conn = r.lost(since, error, false);
                }
            }
            Event::Retry => conn = Conn::Connecting(r.open_channel()),
            Event::Connected(Ok(channel)) => conn = Conn::Up(r.start_stream(channel)),
            Event::Connected(Err(error)) => conn = r.lost(None, error, false),
            Event::Opened(Ok(response)) => {
                if let Conn::Up(up) = &mut conn {
                    up.inbound = Inbound::Open(Box::new(response.into_inner()));
                }
                r.stats.connected.store(true, Ordering::Relaxed);
                tracing::info!(
                    endpoint = %r.cfg.endpoint,
                    pending = r.spool.unacked(),
                    "usage stream to the control plane open"
                );
            }
            Event::Opened(Err(status)) => {
                let since = up_since(&conn);
                conn = r.lost(
                    since,
                    status_text(&status),
                    grpc::rejects_compression(&status),
                );
            }
            Event::Ack(Ok(Some(ack))) => r.acked(ack).await,
            Event::Ack(Ok(None)) => {
                let since = up_since(&conn);
                conn = r.lost(since, "the control plane closed the stream".into(), false);
            }
            Event::Ack(Err(status)) => {
                let since = up_since(&conn);
                conn = r.lost(
                    since,
                    status_text(&status),
                    grpc::rejects_compression(&status),
                );
            }
            Event::Permit(permit) => r.send(permit),
        }
    }
}

async fn open_spool(cfg: &ReporterConfig, stats: &ReporterStats) -> Spool {
    let max = cfg.spool_max_records;
    let Some(dir) = cfg.spool_dir.clone() else {
        return Spool::new(None, max);
    };
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || Spool::open(&dir, max)).await {
        Ok(Ok((spool, loaded))) => {
            if loaded.records > 0 {
                tracing::info!(
                    dir = %shown,
                    records = loaded.records,
                    segments = loaded.segments,
                    "usage records from an earlier run loaded from the spool; sending them first"
                );
            }
            stats
                .received
                .fetch_add(loaded.records as u64, Ordering::Relaxed);
            if loaded.dropped > 0 {
                let total =
                    stats.dropped.fetch_add(loaded.dropped, Ordering::Relaxed) + loaded.dropped;
                tracing::warn!(
                    dropped = loaded.dropped,
                    dropped_total = total,
                    spool_max_records = max,
                    "usage spool over its bound at start; dropped the oldest records"
                );
            }
            spool
        }
        Ok(Err(e)) => {
            tracing::error!(dir = %shown, error = %e, "usage spool unusable; keeping unacknowledged records in memory only");
            Spool::new(None, max)
        }
        Err(e) => {
            tracing::error!(dir = %shown, error = %e, "usage spool unusable; keeping unacknowledged records in memory only");
            Spool::new(None, max)
        }
    }
}

/// The next thing that happens on the connection. Cancel-safe: all state lives in `conn`.
async fn conn_event(conn: &mut Conn, can_send: bool) -> Event {
    match conn {
        Conn::Waiting(sleep) => {
            sleep.as_mut().await;
            Event::Retry
        }
        Conn::Connecting(fut) => Event::Connected(fut.as_mut().await),
        Conn::Up(up) => {
            let tx = up.tx.clone();
            let permit = async move {
                match tx.reserve_owned().await {
                    Ok(p) => Event::Permit(p),
                    Err(_) => {
                        Event::Ack(Err(tonic::Status::unavailable("the request stream closed")))
                    }
                }
            };
            match &mut up.inbound {
                Inbound::Opening(fut) => tokio::select! {
                    r = fut.as_mut() => Event::Opened(r),
                    ev = permit, if can_send => ev,
                },
                Inbound::Open(stream) => tokio::select! {
                    m = stream.message() => Event::Ack(m),
                    ev = permit, if can_send => ev,
                },
            }
        }
    }
}

fn up_since(conn: &Conn) -> Option<Instant> {
    match conn {
        Conn::Up(up) => Some(up.since),
        _ => None,
    }
}

impl Reporter {
    fn connect(&self) -> Conn {
        Conn::Connecting(self.open_channel())
    }

    fn open_channel(&self) -> BoxFuture<Result<Channel, String>> {
        let endpoint = grpc::endpoint(&self.cfg.endpoint, &self.opts, self.cfg.tls.as_ref());
        let timeout = self.opts.connect_timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, endpoint?.connect()).await {
                Ok(Ok(channel)) => Ok(channel),
                Ok(Err(e)) => Err(format!("connect: {}", error_chain(&e))),
                Err(_) => Err("connect: timed out".into()),
            }
        })
    }

    /// Opens a Report call on `channel`; every unacknowledged record is sent again on it.
    fn start_stream(&mut self, channel: Channel) -> Up {
        let mut client = UsageServiceClient::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES);
        if self.send_gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let (tx, rx) = mpsc::channel::<UsageBatch>(4);
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        let auth = grpc::authorize(&mut req, self.cfg.join_token.as_deref());
        let opening: Opening = Box::pin(async move {
            auth.map_err(tonic::Status::unauthenticated)?;
            client.report(req).await
        });
        self.inflight.clear();
        self.spool.rewind();
        self.flush_due = true;
        Up {
            tx,
            inbound: Inbound::Opening(opening),
            since: Instant::now(),
        }
    }

    /// The stream is gone (or never came up): wait, then reconnect.
    fn lost(&mut self, since: Option<Instant>, error: String, compression_rejected: bool) -> Conn {
        let was_up = self.stats.connected.swap(false, Ordering::Relaxed);
        let error = if was_up {
            error
        } else {
            grpc::with_tls_hint(error, &self.cfg.endpoint, self.cfg.tls.as_ref())
        };
        self.inflight.clear();
        if compression_rejected && self.send_gzip {
            tracing::warn!("the control plane does not accept gzip; sending usage uncompressed");
            self.send_gzip = false;
        }
        if since.is_some_and(|s| s.elapsed() >= self.opts.stable_after) {
            self.backoff.reset();
        }
        let attempt = self.backoff.attempts() + 1;
        let delay = self.backoff.next_delay();
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let pending = self.spool.unacked();
        if was_up || attempt == 1 || attempt.is_multiple_of(10) {
            tracing::warn!(
                attempt,
                delay_ms,
                error = %error,
                pending,
                "usage stream to the control plane unavailable; spooling and reconnecting"
            );
        } else {
            tracing::info!(attempt, delay_ms, error = %error, pending, "reconnecting the usage stream");
        }
        Conn::Waiting(Box::pin(tokio::time::sleep(delay)))
    }

    /// Takes records into the spool. Counters are updated once the records are on disk, the
    /// running totals last (an observer that sees them sees `pending` and `dropped` too).
    async fn accept(&mut self, records: Vec<UsageRecord>) {
        let n = records.len() as u64;
        let (jobs, dropped) = self.spool.append(records);
        self.io(jobs).await;
        self.update_pending();
        if dropped > 0 {
            let total = self.stats.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::warn!(
                dropped,
                dropped_total = total,
                spool_max_records = self.cfg.spool_max_records,
                "usage spool full; dropped the oldest unacknowledged records"
            );
        }
        self.stats.received.fetch_add(n, Ordering::Relaxed);
    }

    fn send(&mut self, permit: mpsc::OwnedPermit<UsageBatch>) {
        let Some((range, records)) = self.spool.next_batch(self.batch_max, BATCH_CONTENT_BYTES)
        else {
            return;
        };
        let batch_id = self.next_batch_id;
        self.next_batch_id += 1;
        self.inflight
            .insert(batch_id, (range, records.len(), Instant::now()));
        permit.send(UsageBatch {
            node_id: self.cfg.node_id.clone(),
            batch_id,
            records,
        });
        if self.spool.unsent() == 0 {
            self.flush_due = false;
        }
    }

    async fn acked(&mut self, ack: UsageAck) {
        let Some((range, sent, _)) = self.inflight.remove(&ack.batch_id) else {
            tracing::debug!(
                batch_id = ack.batch_id,
                "ack for a batch not in flight; ignored"
            );
            return;
        };
        if ack.accepted as usize != sent {
            tracing::warn!(
                batch_id = ack.batch_id,
                sent,
                accepted = ack.accepted,
                "the control plane acknowledged a batch with a different record count"
            );
        }
        let (n, jobs) = self.spool.ack(range);
        self.io(jobs).await;
        self.update_pending();
        self.stats.acked.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// How long the oldest batch in flight has waited, if longer than the ack timeout.
    fn oldest_unacked(&self) -> Option<Duration> {
        self.inflight
            .values()
            .map(|(_, _, sent)| sent.elapsed())
            .max()
            .filter(|waited| *waited >= self.opts.ack_timeout)
    }

    fn update_pending(&self) {
        self.stats
            .pending
            .store(self.spool.unacked() as u64, Ordering::Relaxed);
    }

    /// Runs spool file work on the blocking pool. Failures are logged (at most every 10 s) and
    /// otherwise ignored: the records stay in memory and are still delivered.
    async fn io(&mut self, jobs: Vec<IoJob>) {
        if jobs.is_empty() {
            return;
        }
        let result = tokio::task::spawn_blocking(move || spool::run_jobs(jobs))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Err(e) = result
            && self
                .last_io_warning
                .is_none_or(|t| t.elapsed() >= IO_WARN_EVERY)
        {
            self.last_io_warning = Some(Instant::now());
            tracing::warn!(
                error = %e,
                "usage spool file operation failed; unacknowledged records may not survive a restart"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::{
        FakeControlPlane, FakeState, dead_endpoint, fast_options, usage_record, wait_until,
    };
    use crate::usage::UsageSink;

    fn config(endpoint: String, spool: Option<&Path>) -> ReporterConfig {
        ReporterConfig {
            endpoint,
            tls: None,
            join_token: Some("jt-secret".into()),
            node_id: "node-a".into(),
            spool_dir: spool.map(Path::to_owned),
            batch_max: 10,
            flush_interval: Duration::from_millis(20),
            spool_max_records: 10_000,
        }
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count()
    }

    fn expected(range: Range<usize>) -> Vec<String> {
        range.map(|i| usage_record(i).request_id).collect()
    }

    fn stored_ids(state: &FakeState) -> Vec<String> {
        let mut ids: Vec<_> = state.usage().into_keys().collect();
        ids.sort();
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_delivered_and_acked() {
        let state = FakeState::new(Some("jt-secret"));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let spool = tempfile::tempdir().unwrap();
        let (sink, rx) = UsageSink::channel(1024);
        let h = start_reporter(
            rx,
            config(cp.endpoint(), Some(spool.path())),
            fast_options(),
        );
        for i in 0..35 {
            sink.record(usage_record(i));
        }
        wait_until("35 records acked", || h.stats.acked_total() == 35).await;
        assert_eq!(stored_ids(&state), expected(0..35));
        assert!(state.usage().values().all(|n| *n == 1), "no resends needed");
        let batches = state.batches.lock().unwrap().clone();
        assert!(
            batches
                .iter()
                .all(|(node, _, n)| node == "node-a" && *n <= 10)
        );
        let ids: Vec<u64> = batches.iter().map(|(_, id, _)| *id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "increasing batch ids: {ids:?}"
        );
        let call = state.calls()[0].clone();
        assert_eq!(call.method, "report");
        assert_eq!(call.authorization.as_deref(), Some("Bearer jt-secret"));
        assert_eq!(call.encoding.as_deref(), Some("gzip"));
        assert!(h.stats.connected());
        assert_eq!(h.stats.pending(), 0);
        assert_eq!(h.dropped_total(), 0);
        wait_until("acked segments deleted", || {
            segment_files(spool.path()) == 0
        })
        .await;

        // Closing the sink ends the reporter once everything is delivered.
        drop(sink);
        tokio::time::timeout(Duration::from_secs(5), h.task)
            .await
            .expect("the reporter ends when its sink is closed")
            .unwrap();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_across_a_control_plane_restart_and_lost_acks() {
        let state = FakeState::new(None);
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let spool = tempfile::tempdir().unwrap();
        let (sink, rx) = UsageSink::channel(1024);
        let h = start_reporter(
            rx,
            config(cp.endpoint(), Some(spool.path())),
            fast_options(),
        );

        for i in 0..50 {
            sink.record(usage_record(i));
        }
        wait_until("50 acked", || h.stats.acked_total() == 50).await;

        // The control plane commits the next records but its acks are lost...
        state.ack_usage.store(false, Ordering::SeqCst);
        for i in 50..80 {
            sink.record(usage_record(i));
        }
        wait_until("80 stored", || state.stored() == 80).await;
        assert_eq!(h.stats.pending(), 30);
        // ...then it goes away; records keep coming while it is down.
        let (state, addr) = cp.stop().await;
        state.ack_usage.store(true, Ordering::SeqCst);
        wait_until("disconnect noticed", || !h.stats.connected()).await;
        for i in 80..100 {
            sink.record(usage_record(i));
        }
        wait_until("100 held", || h.stats.received_total() == 100).await;
        assert_eq!(h.stats.pending(), 50);
        assert!(
            segment_files(spool.path()) > 0,
            "unacked records are spooled"
        );

        let cp = FakeControlPlane::start(Arc::clone(&state), Some(addr)).await;
        wait_until("everything acked", || h.stats.pending() == 0).await;
        // At least once on the wire, exactly once in storage: every id once, nothing else.
        assert_eq!(stored_ids(&state), expected(0..100));
        let usage = state.usage();
        assert!(
            (50..80).all(|i| usage[&usage_record(i).request_id] >= 2),
            "the batches whose acks were lost were resent"
        );
        assert!((0..50).all(|i| usage[&usage_record(i).request_id] == 1));
        assert_eq!(h.stats.acked_total(), 100);
        assert_eq!(h.dropped_total(), 0);
        wait_until("spool emptied", || segment_files(spool.path()) == 0).await;
        h.task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spool_survives_a_reporter_restart() {
        let (endpoint, addr) = dead_endpoint().await;
        let spool = tempfile::tempdir().unwrap();
        let (sink, rx) = UsageSink::channel(1024);
        let h = start_reporter(
            rx,
            config(endpoint.clone(), Some(spool.path())),
            fast_options(),
        );
        for i in 0..25 {
            sink.record(usage_record(i));
        }
        wait_until("25 spooled", || h.stats.pending() == 25).await;
        // The process dies (no graceful shutdown).
        h.task.abort();
        let _ = h.task.await;
        drop(sink);
        assert!(segment_files(spool.path()) > 0);

        // The next run, with the control plane back: spooled records go first, then new ones.
        let state = FakeState::new(None);
        let cp = FakeControlPlane::start(Arc::clone(&state), Some(addr)).await;
        let (sink, rx) = UsageSink::channel(1024);
        let h = start_reporter(rx, config(endpoint, Some(spool.path())), fast_options());
        for i in 25..30 {
            sink.record(usage_record(i));
        }
        wait_until("all acked", || {
            h.stats.pending() == 0 && h.stats.acked_total() == 30
        })
        .await;
        assert_eq!(stored_ids(&state), expected(0..30));
        assert!(state.usage().values().all(|n| *n == 1));
        wait_until("spool emptied", || segment_files(spool.path()) == 0).await;
        h.task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spool_bound_drops_the_oldest_records_and_counts_them() {
        let (endpoint, addr) = dead_endpoint().await;
        let spool = tempfile::tempdir().unwrap();
        let (sink, rx) = UsageSink::channel(1024);
        let cfg = ReporterConfig {
            spool_max_records: 10,
            ..config(endpoint, Some(spool.path()))
        };
        let h = start_reporter(rx, cfg, fast_options());
        for i in 0..25 {
            sink.record(usage_record(i));
        }
        wait_until("25 taken", || h.stats.received_total() == 25).await;
        let dropped = h.dropped_total();
        let pending = h.stats.pending();
        assert_eq!(dropped + pending, 25);
        assert!(pending <= 10, "bounded: {pending}");
        assert!(dropped >= 15, "{dropped}");

        let state = FakeState::new(None);
        let cp = FakeControlPlane::start(Arc::clone(&state), Some(addr)).await;
        wait_until("the rest acked", || h.stats.pending() == 0).await;
        // What survived is the newest records.
        assert_eq!(stored_ids(&state), expected(dropped as usize..25));
        assert_eq!(h.dropped_total(), dropped);
        h.task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_only_reporter_resends_after_reconnect() {
        let state = FakeState::new(None);
        state.ack_usage.store(false, Ordering::SeqCst);
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let (sink, rx) = UsageSink::channel(1024);
        let h = start_reporter(rx, config(cp.endpoint(), None), fast_options());
        for i in 0..12 {
            sink.record(usage_record(i));
        }
        wait_until("12 stored", || state.stored() == 12).await;
        let (state, addr) = cp.stop().await;
        state.ack_usage.store(true, Ordering::SeqCst);
        let cp = FakeControlPlane::start(Arc::clone(&state), Some(addr)).await;
        wait_until("all acked", || h.stats.pending() == 0).await;
        assert_eq!(stored_ids(&state), expected(0..12));
        assert!(state.usage().values().all(|n| *n == 2));
        h.task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_with_a_server_that_answers_only_after_the_first_batch() {
        let state = FakeState::new(None);
        state
            .answer_after_first_message
            .store(true, Ordering::SeqCst);
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let (sink, rx) = UsageSink::channel(1024);
        let h = start_reporter(rx, config(cp.endpoint(), None), fast_options());
        for i in 0..3 {
            sink.record(usage_record(i));
        }
        wait_until("3 acked", || h.stats.acked_total() == 3).await;
        assert!(h.stats.connected());
        assert_eq!(stored_ids(&state), expected(0..3));
        h.task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_left_unacknowledged_are_resent_on_a_new_stream() {
        let state = FakeState::new(None);
        state.ack_usage.store(false, Ordering::SeqCst);
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let (sink, rx) = UsageSink::channel(1024);
        let opts = ConnectOptions {
            ack_timeout: Duration::from_millis(100),
            ..fast_options()
        };
        let h = start_reporter(rx, config(cp.endpoint(), None), opts);
        for i in 0..5 {
            sink.record(usage_record(i));
        }
        wait_until("a resend on a second stream", || {
            state.usage().values().all(|n| *n >= 2) && state.stored() == 5
        })
        .await;
        assert!(state.calls().len() >= 2, "a new stream was opened");
        state.ack_usage.store(true, Ordering::SeqCst);
        wait_until("all acked", || h.stats.pending() == 0).await;
        assert_eq!(stored_ids(&state), expected(0..5));
        h.task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usage_is_delivered_over_mutual_tls_and_a_refused_certificate_keeps_the_records() {
        let pki = crate::grpc::test_pki::generate();
        let state = FakeState::new(Some("jt-secret"));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let proxy = crate::grpc::test_pki::tls_proxy(&pki, cp.addr, true).await;

        // A client certificate from another CA: refused at the handshake, records are kept.
        let (sink, rx) = UsageSink::channel(1024);
        let wrong = ReporterConfig {
            tls: Some(
                ClientTls::from_files(
                    Some(&pki.ca),
                    Some(&pki.other_client_cert),
                    Some(&pki.other_client_key),
                    None,
                )
                .unwrap(),
            ),
            ..config(proxy.endpoint(), None)
        };
        let h = start_reporter(rx, wrong, fast_options());
        for i in 0..5 {
            sink.record(usage_record(i));
        }
        wait_until("refused handshakes", || proxy.refusals().len() >= 2).await;
        assert!(!h.stats.connected());
        assert_eq!(h.stats.acked_total(), 0);
        assert_eq!(state.stored(), 0);
        drop(sink);
        h.task.abort();

        // The right client certificate: delivered and acknowledged.
        let (sink, rx) = UsageSink::channel(1024);
        let right = ReporterConfig {
            tls: Some(
                ClientTls::from_files(
                    Some(&pki.ca),
                    Some(&pki.client_cert),
                    Some(&pki.client_key),
                    Some("localhost"),
                )
                .unwrap(),
            ),
            ..config(proxy.endpoint(), None)
        };
        let h = start_reporter(rx, right, fast_options());
        for i in 0..15 {
            sink.record(usage_record(i));
        }
        wait_until("15 acked over mutual TLS", || h.stats.acked_total() == 15).await;
        assert_eq!(stored_ids(&state), expected(0..15));
        assert_eq!(
            state.calls()[0].authorization.as_deref(),
            Some("Bearer jt-secret")
        );
        drop(sink);
        let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
        cp.stop().await;
    }
}
