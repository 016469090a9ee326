//! Where a split data plane gets its configuration: the control plane's `ConfigService.Watch`
//! stream ([`DataPlane::follow_remote`]), backed by a checksummed snapshot on local disk.
//!
//! * **Static stability.** At start the last good snapshot is read from `cache_dir/snapshot.bin`
//!   and applied at once, so a data plane restarted while the control plane is down still serves.
//!   A cache that is missing, corrupt, from another format version or rejected by validation is
//!   logged and ignored; it never stops the process.
//! * **The stream.** The node connects (connect timeout, HTTP/2 keep-alive, `authorization:
//!   Bearer <join token>`, gzip both ways), sends `Hello` with the version it serves, and answers
//!   every `ConfigUpdate`: the snapshot is validated and applied atomically
//!   ([`RuntimeHandle::apply`](crate::runtime::RuntimeHandle::apply)), persisted (temp file,
//!   fsync, rename) and acknowledged with `Ack{applied: true}`; a snapshot that fails validation
//!   is answered with `Ack{applied: false, error}` and the last good config keeps serving.
//! * **Disconnects.** While the control plane is unreachable the node keeps serving what it has
//!   and reconnects forever, with exponential backoff and full jitter
//!   ([`ConnectOptions`]). Streams are also closed and reopened
//!   after `max_stream_lifetime` (about 30 min) to rebalance across control-plane replicas.
//! * **Probes.** A `ConfigUpdate` may carry a provider-key probe instead of a snapshot: it runs
//!   in a task of its own ([`crate::probe`]) and its `ProbeResult` goes back on the stream.
//! * **Visibility.** [`ConfigLink`] says where the config comes from and whether the stream is
//!   up; `/ready` reports it.
//!
//! Cache file format (`snapshot.bin`, mode 0600 because snapshots carry provider credentials):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `TGSNAP\r\n` |
//! | 8..12 | format version, u32 little endian (1) |
//! | 12..20 | payload length, u64 little endian |
//! | 20..52 | SHA-256 of the payload |
//! | 52.. | the prost-encoded `tollgate.config.v1.Snapshot` |

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::config::v1::config_service_client::ConfigServiceClient;
use tollgate_proto::config::v1::{
    Ack, ConfigUpdate, FleetShare, Hello, ProbeRequest, Snapshot, WatchRequest, watch_request,
};
use tonic::codec::CompressionEncoding;

use crate::DataPlane;
use crate::grpc::{self, Backoff, ClientTls, ConnectOptions, error_chain, status_text};
use crate::limits::Share;

/// How a data plane reaches its control plane.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `http://host:port` or `https://host:port` of the control plane's gRPC listener.
    pub endpoint: String,
    /// TLS settings for an `https://` endpoint (CA, client certificate for mutual TLS, server
    /// name); `None` with `https://`: the system's roots, no client certificate.
    pub tls: Option<ClientTls>,
    /// Sent as `authorization: Bearer <token>`.
    pub join_token: Option<String>,
    /// This node's stable identity in the fleet view.
    pub node_id: String,
    /// Where this node serves inference, e.g. `10.0.0.7:8080` (for the fleet view).
    pub address: String,
    /// Directory of the last good snapshot (`snapshot.bin`); `None`: no disk cache.
    pub cache_dir: Option<PathBuf>,
}

/// Name of the snapshot cache file inside `cache_dir`.
pub const CACHE_FILE: &str = "snapshot.bin";
const MAGIC: &[u8; 8] = b"TGSNAP\r\n";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// Why a cached snapshot was not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("reading the cache: {0}")]
    Io(#[from] io::Error),
    #[error("not a snapshot cache file (bad magic)")]
    BadMagic,
    #[error("unsupported cache format version {0}")]
    UnsupportedVersion(u32),
    #[error("truncated cache file (header says {expected} payload bytes, found {found})")]
    Truncated { expected: u64, found: u64 },
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("undecodable snapshot: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// The cache file's bytes for `snapshot`: header (magic, format version, length, SHA-256) and
/// the protobuf payload.
pub fn encode_cache(snapshot: &Snapshot) -> Vec<u8> {
    let payload = snapshot.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// Verifies and decodes a cache file's bytes.
pub fn decode_cache(bytes: &[u8]) -> Result<Snapshot, CacheError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(CacheError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(CacheError::Truncated {
            expected: 0,
            found: 0,
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(CacheError::UnsupportedVersion(version));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(CacheError::Truncated {
            expected: len,
            found: payload.len() as u64,
        });
    }
    if Sha256::digest(payload).as_slice() != &bytes[20..52] {
        return Err(CacheError::ChecksumMismatch);
    }
    Ok(Snapshot::decode(payload)?)
}

/// Reads and verifies `dir/snapshot.bin`. `Ok(None)`: there is none.
pub fn read_cache(dir: &Path) -> Result<Option<Snapshot>, CacheError> {
    let path = dir.join(CACHE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    decode_cache(&bytes).map(Some)
}

/// Writes `dir/snapshot.bin` atomically: a temporary file in the same directory is written and
/// fsynced, then renamed over the old one, and the directory is fsynced. A crash at any point
/// leaves either the old file or the new one.
pub fn write_cache(dir: &Path, snapshot: &Snapshot) -> io::Result<()> {
    write_private(dir, CACHE_FILE, &encode_cache(snapshot))
}

/// Name of the file beside the snapshot cache that holds this node's last fleet share
/// (`SLOT OF`), so that a restart while the control plane is down keeps enforcing it.
pub const SHARE_FILE: &str = "fleet-share";

/// Writes this node's fleet share to `dir/fleet-share` atomically.
pub fn write_share(dir: &Path, share: Share) -> io::Result<()> {
    write_private(
        dir,
        SHARE_FILE,
        format!("{} {}\n", share.slot, share.of).as_bytes(),
    )
}

/// The fleet share stored in `dir`, if there is a valid one (`slot < of`).
pub fn read_share(dir: &Path) -> Option<Share> {
    let text = fs::read_to_string(dir.join(SHARE_FILE)).ok()?;
    let (slot, of) = text.trim().split_once(' ')?;
    let share = Share {
        slot: slot.parse().ok()?,
        of: of.parse().ok()?,
    };
    (share.of >= 1 && share.slot < share.of).then_some(share)
}

/// Writes `dir/name` atomically (a temporary file in `dir`, fsync, rename), readable only by
/// this user.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        "{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and parents) readable only by this user, where the platform allows.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates (truncating) a file readable only by this user, where the platform allows.
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// Makes a rename or a new file in `dir` durable (best effort; not possible on every platform).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Where the served configuration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Neither [`DataPlane::follow`] nor [`DataPlane::follow_remote`] was called.
    None,
    /// All-in-one: an in-process channel from the control plane.
    InProcess,
    /// Split deployment: the control plane's gRPC stream.
    Remote,
}

impl ConfigSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigSource::None => "none",
            ConfigSource::InProcess => "in-process",
            ConfigSource::Remote => "control-plane",
        }
    }
}

/// The state of the config path, for `/ready` and operators.
#[derive(Debug, Default)]
pub struct ConfigLink {
    source: AtomicU8,
    connected: AtomicBool,
    connect_attempts: AtomicU64,
    /// When the config stream last delivered a message (unix ms; 0: never).
    last_contact_unix_ms: AtomicI64,
}

impl ConfigLink {
    pub fn source(&self) -> ConfigSource {
        match self.source.load(Ordering::Relaxed) {
            1 => ConfigSource::InProcess,
            2 => ConfigSource::Remote,
            _ => ConfigSource::None,
        }
    }

    /// True while the config stream is up (always true in-process once following).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Connection attempts made to the control plane since start (successful or not).
    pub fn connect_attempts(&self) -> u64 {
        self.connect_attempts.load(Ordering::Relaxed)
    }

    /// When the control plane's config stream last delivered a message (its opening counts), in
    /// unix ms; 0 before the first.
    pub fn last_contact_unix_ms(&self) -> i64 {
        self.last_contact_unix_ms.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.last_contact_unix_ms.store(now, Ordering::Relaxed);
    }

    pub(crate) fn set_source(&self, source: ConfigSource) {
        let v = match source {
            ConfigSource::None => 0,
            ConfigSource::InProcess => 1,
            ConfigSource::Remote => 2,
        };
        self.source.store(v, Ordering::Relaxed);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }
}

impl DataPlane {
    /// Follows the control plane's config stream with the default [`ConnectOptions`]; see the
    /// [module docs](crate::source). The task runs until aborted.
    pub fn follow_remote(self: &Arc<Self>, cfg: RemoteConfig) -> tokio::task::JoinHandle<()> {
        self.follow_remote_with(cfg, ConnectOptions::default())
    }

    /// [`DataPlane::follow_remote`] with explicit timeouts and backoff.
    pub fn follow_remote_with(
        self: &Arc<Self>,
        cfg: RemoteConfig,
        opts: ConnectOptions,
    ) -> tokio::task::JoinHandle<()> {
        let dp = Arc::clone(self);
        dp.link.set_source(ConfigSource::Remote);
        dp.link.set_connected(false);
        tokio::spawn(async move { Follower::new(dp, cfg, opts).run().await })
    }
}

/// How often a data plane reports its use of its limits on the Watch stream.
pub const LIMITS_REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Every this many limits reports, one lists every counter in use (the others list what
/// changed): about every 10 s.
pub const FULL_REPORT_EVERY: u32 = 20;

/// How one stream ended.
enum StreamEnd {
    /// Closed on purpose after `max_stream_lifetime`.
    Rotated,
    /// Lost or never established; `up_for` is set if it was established.
    Lost {
        up_for: Option<std::time::Duration>,
        error: String,
        compression_rejected: bool,
    },
}

struct Follower {
    dp: Arc<DataPlane>,
    cfg: RemoteConfig,
    opts: ConnectOptions,
    /// Version last written to the disk cache.
    persisted: Option<u64>,
    send_gzip: bool,
}

impl Follower {
    fn new(dp: Arc<DataPlane>, cfg: RemoteConfig, opts: ConnectOptions) -> Follower {
        Follower {
            dp,
            cfg,
            opts,
            persisted: None,
            send_gzip: true,
        }
    }

    async fn run(mut self) {
        self.load_cache().await;
        self.set_link(false);
        let mut backoff = Backoff::new(&self.opts);
        loop {
            let end = self.watch_once().await;
            self.set_link(false);
            match end {
                StreamEnd::Rotated => {
                    tracing::info!("reopening the config stream (periodic rebalance)");
                    backoff.reset();
                }
                StreamEnd::Lost {
                    up_for,
                    error,
                    compression_rejected,
                } => {
                    if compression_rejected && self.send_gzip {
                        tracing::warn!(
                            "the control plane does not accept gzip; sending uncompressed"
                        );
                        self.send_gzip = false;
                    }
                    let error = if up_for.is_none() {
                        grpc::with_tls_hint(error, &self.cfg.endpoint, self.cfg.tls.as_ref())
                    } else {
                        error
                    };
                    if up_for.is_some_and(|d| d >= self.opts.stable_after) {
                        backoff.reset();
                    }
                    let attempt = backoff.attempts() + 1;
                    let delay = backoff.next_delay();
                    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    let serving = self.dp.runtime().load().map(|r| r.version);
                    if up_for.is_some() || attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(
                            attempt,
                            delay_ms,
                            error = %error,
                            serving_version = serving,
                            "config stream from the control plane unavailable; serving the last \
                             good config and reconnecting"
                        );
                    } else {
                        tracing::info!(
                            attempt,
                            delay_ms,
                            error = %error,
                            "reconnecting to the control plane"
                        );
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn load_cache(&mut self) {
        let Some(dir) = self.cfg.cache_dir.clone() else {
            return;
        };
        let path = dir.join(CACHE_FILE);
        let read = tokio::task::spawn_blocking(move || (read_cache(&dir), read_share(&dir))).await;
        let (read, stored_share) = match read {
            Ok((cache, share)) => (Ok(cache), share),
            Err(e) => (Err(e), None),
        };
        match read {
            Ok(Ok(Some(snapshot))) => match self.dp.apply(&snapshot) {
                Ok(version) => {
                    self.persisted = Some(snapshot.version);
                    // The share this node held before it stopped, until the control plane
                    // sends a new one.
                    if let Some(share) = stored_share {
                        self.dp.runtime().fleet().set_share(share);
                        tracing::info!(
                            slot = share.slot,
                            of = share.of,
                            "enforcing the stored fleet share until the control plane answers"
                        );
                    }
                    tracing::info!(
                        version,
                        path = %path.display(),
                        "serving the cached config until the control plane answers"
                    );
                }
                Err(e) => tracing::warn!(
                    version = snapshot.version,
                    path = %path.display(),
                    error = %e,
                    "cached config snapshot rejected; ignoring it"
                ),
            },
            Ok(Ok(None)) => {
                tracing::info!(path = %path.display(), "no cached config; waiting for the control plane")
            }
            Ok(Err(e)) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "ignoring the config cache"
            ),
            Err(e) => tracing::warn!(error = %e, "reading the config cache failed"),
        }
    }

    /// One connection: connect, Hello, then apply and acknowledge updates until the stream ends.
    async fn watch_once(&mut self) -> StreamEnd {
        let lost = |error: String| StreamEnd::Lost {
            up_for: None,
            error,
            compression_rejected: false,
        };
        self.dp
            .link
            .connect_attempts
            .fetch_add(1, Ordering::Relaxed);
        let endpoint = match grpc::endpoint(&self.cfg.endpoint, &self.opts, self.cfg.tls.as_ref()) {
            Ok(e) => e,
            Err(e) => return lost(e),
        };
        let channel =
            match tokio::time::timeout(self.opts.connect_timeout, endpoint.connect()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return lost(format!("connect: {}", error_chain(&e))),
                Err(_) => return lost("connect: timed out".into()),
            };
        let mut client = ConfigServiceClient::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES);
        if self.send_gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let (tx, rx) = mpsc::channel::<WatchRequest>(64);
        let hello = Hello {
            node_id: self.cfg.node_id.clone(),
            build_version: env!("CARGO_PKG_VERSION").to_owned(),
            have_version: self.dp.runtime().load().map_or(0, |r| r.version),
            address: self.cfg.address.clone(),
        };
        let have_version = hello.have_version;
        if tx
            .send(WatchRequest {
                msg: Some(watch_request::Msg::Hello(hello)),
            })
            .await
            .is_err()
        {
            return lost("request stream closed".into());
        }
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        if let Err(e) = grpc::authorize(&mut req, self.cfg.join_token.as_deref()) {
            return lost(e);
        }
        let response =
            match tokio::time::timeout(self.opts.connect_timeout, client.watch(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(status)) => {
                    return StreamEnd::Lost {
                        up_for: None,
                        compression_rejected: grpc::rejects_compression(&status),
                        error: status_text(&status),
                    };
                }
                Err(_) => return lost("timed out waiting for the stream to open".into()),
            };
        let mut inbound = response.into_inner();
        let up = Instant::now();
        self.set_link(true);
        self.dp.link.touch();
        tracing::info!(
            endpoint = %self.cfg.endpoint,
            have_version,
            "config stream to the control plane open"
        );
        let rotate_at = self
            .opts
            .max_stream_lifetime
            .map(|d| tokio::time::Instant::now() + grpc::jittered(d));
        let lost_after = |error: String| StreamEnd::Lost {
            up_for: Some(up.elapsed()),
            error,
            compression_rejected: false,
        };
        // The last grants applied on this stream (each stream starts again from 0: another
        // control-plane replica numbers its grants its own way).
        let mut grant_seq = 0;
        // Rounds since the last full report (0: the next one is full).
        let mut report_rounds = 0;
        let mut report_every = tokio::time::interval(LIMITS_REPORT_EVERY);
        report_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The ejected keys last reported on this stream (`None`: nothing yet).
        let mut ejected_sent = None;
        loop {
            let rotate = async {
                match rotate_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                m = inbound.message() => m,
                () = rotate => return StreamEnd::Rotated,
                _ = report_every.tick() => {
                    self.report_limits(&tx, grant_seq, &mut report_rounds);
                    self.report_key_health(&tx, &mut ejected_sent);
                    continue;
                }
            };
            let mut update = match next {
                Ok(Some(update)) => {
                    self.dp.link.touch();
                    update
                }
                Ok(None) => return lost_after("the control plane closed the stream".into()),
                Err(status) => return lost_after(status_text(&status)),
            };
            if let Some(probe) = update.probe.take() {
                self.run_probe(probe, &tx);
            }
            if update.snapshot.is_none() {
                if let Some(share) = update.share {
                    self.set_share(share).await;
                }
                if let Some(grants) = update.grants {
                    let applied = self.dp.apply_grants(&grants);
                    tracing::debug!(
                        seq = grants.seq,
                        grants = grants.grants.len(),
                        applied,
                        "allowances granted"
                    );
                    grant_seq = grant_seq.max(grants.seq);
                }
                continue;
            }
            let ack = self.apply(update).await;
            if tx
                .send(WatchRequest {
                    msg: Some(watch_request::Msg::Ack(ack)),
                })
                .await
                .is_err()
            {
                return lost_after("request stream closed".into());
            }
        }
    }

    /// Runs a provider-key probe the control plane asked for ([`crate::probe`]) in a task of
    /// its own, so the stream keeps being read, and answers on the stream.
    fn run_probe(&self, probe: ProbeRequest, tx: &mpsc::Sender<WatchRequest>) {
        let dp = Arc::clone(&self.dp);
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = dp.probe(&probe).await;
            // The stream may be gone by now: the control plane then gives up on its own.
            let _ = tx
                .send(WatchRequest {
                    msg: Some(watch_request::Msg::ProbeResult(result)),
                })
                .await;
        });
    }

    /// Sends what this node holds of its limits (reflecting the grants up to `grant_seq`). A
    /// report that does not fit in the stream's buffer is skipped: the next one says it all.
    ///
    /// Every [`FULL_REPORT_EVERY`]th round lists every counter in use, the others what changed;
    /// a round that could not be sent whole is followed by a full one (the control plane takes
    /// a grant as applied only from a round's final message, so it never misses what a lost
    /// message said about a grant).
    fn report_limits(&self, tx: &mpsc::Sender<WatchRequest>, grant_seq: u64, rounds: &mut u32) {
        let full = *rounds == 0;
        *rounds = (*rounds + 1) % FULL_REPORT_EVERY;
        for report in self.dp.limits_report(grant_seq, full) {
            if tx
                .try_send(WatchRequest {
                    msg: Some(watch_request::Msg::Limits(report)),
                })
                .is_err()
            {
                *rounds = 0;
                return;
            }
        }
    }

    /// Sends the provider keys this node has out of service when they changed since `sent`
    /// (and at the start of a stream). A report that does not fit in the stream's buffer is
    /// tried again on the next tick.
    fn report_key_health(
        &self,
        tx: &mpsc::Sender<WatchRequest>,
        sent: &mut Option<Vec<tollgate_proto::config::v1::EjectedKey>>,
    ) {
        let ejected = self.dp.ejected_keys();
        if sent
            .as_deref()
            .is_some_and(|s| crate::health::same_ejections(s, &ejected))
        {
            return;
        }
        let report = tollgate_proto::config::v1::KeyHealthReport {
            ejected: ejected.clone(),
        };
        if tx
            .try_send(WatchRequest {
                msg: Some(watch_request::Msg::KeyHealth(report)),
            })
            .is_ok()
        {
            *sent = Some(ejected);
        }
    }

    /// Records whether the control plane answers, for the status endpoints and for the limits
    /// engine (fail-open keys are admitted beyond this node's share only while it does not).
    fn set_link(&self, connected: bool) {
        self.dp.link.set_connected(connected);
        self.dp
            .runtime()
            .fleet()
            .set_control_plane_reachable(connected);
    }

    /// This node's share of every limit in the fleet, as the control plane computed it, for
    /// every runtime's limits (now and after a restart: it is stored beside the config cache).
    async fn set_share(&mut self, share: FleetShare) {
        let share = Share {
            slot: share.slot,
            of: share.of.max(1),
        };
        let fleet = self.dp.runtime().fleet();
        if fleet.share() == share {
            return;
        }
        tracing::info!(
            slot = share.slot,
            of = share.of,
            "fleet share of every limit changed"
        );
        fleet.set_share(share);
        if let Some(dir) = self.cfg.cache_dir.clone() {
            match tokio::task::spawn_blocking(move || write_share(&dir, share)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    "could not store the fleet share; a restart while the control plane is down \
                     would admit the whole of every limit"
                ),
                Err(e) => tracing::warn!(error = %e, "storing the fleet share failed"),
            }
        }
    }

    /// Validates, applies and persists one update; returns its ACK or NACK.
    async fn apply(&mut self, update: ConfigUpdate) -> Ack {
        let Some(snapshot) = update.snapshot else {
            tracing::error!("config update without a snapshot; ignored");
            return Ack {
                version: 0,
                applied: false,
                error: "config update carried no snapshot".into(),
            };
        };
        let version = snapshot.version;
        if self
            .dp
            .runtime()
            .load()
            .is_some_and(|rt| rt.version == version)
        {
            // The version already served (a reconnect, or the disk cache was current): nothing
            // to swap, and the runtime's credential caches (e.g. STS sessions) stay warm.
            tracing::debug!(version, "config version already served");
            self.persist(snapshot).await;
            return Ack {
                version,
                applied: true,
                error: String::new(),
            };
        }
        match self.dp.apply(&snapshot) {
            Ok(serving) if serving == version => {
                tracing::info!(version, "config applied");
                self.persist(snapshot).await;
                Ack {
                    version,
                    applied: true,
                    error: String::new(),
                }
            }
            Ok(serving) => Ack {
                version,
                applied: false,
                error: format!("version {version} is older than the served version {serving}"),
            },
            Err(e) => {
                tracing::error!(
                    version,
                    error = %e,
                    "config snapshot rejected; still serving the last good one"
                );
                Ack {
                    version,
                    applied: false,
                    error: e.to_string(),
                }
            }
        }
    }

    async fn persist(&mut self, snapshot: Snapshot) {
        let Some(dir) = self.cfg.cache_dir.clone() else {
            return;
        };
        let version = snapshot.version;
        if self.persisted == Some(version) {
            return;
        }
        match tokio::task::spawn_blocking(move || write_cache(&dir, &snapshot)).await {
            Ok(Ok(())) => self.persisted = Some(version),
            Ok(Err(e)) => tracing::warn!(
                version,
                error = %e,
                "could not write the config cache; a restart while the control plane is down \
                 would serve an older config"
            ),
            Err(e) => tracing::warn!(version, error = %e, "writing the config cache failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataPlaneConfig;
    use crate::testing::{
        FakeControlPlane, FakeState, dead_endpoint, fast_options, invalid_snapshot, snapshot,
        wait_until,
    };
    use crate::usage::UsageSink;

    fn data_plane() -> Arc<DataPlane> {
        DataPlane::new(DataPlaneConfig::default(), UsageSink::log_only())
    }

    fn remote(endpoint: String, cache_dir: Option<&Path>) -> RemoteConfig {
        RemoteConfig {
            endpoint,
            tls: None,
            join_token: Some("jt-secret".into()),
            node_id: "node-a".into(),
            address: "10.0.0.7:8080".into(),
            cache_dir: cache_dir.map(Path::to_owned),
        }
    }

    fn version(dp: &DataPlane) -> Option<u64> {
        dp.runtime().load().map(|r| r.version)
    }

    async fn ready_body(dp: &Arc<DataPlane>) -> (u16, serde_json::Value) {
        use tower::ServiceExt;
        let resp = crate::server::router(Arc::clone(dp))
            .oneshot(
                http::Request::get("/ready")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// The stored fleet share round-trips; anything else in the file is no share.
    #[test]
    fn the_fleet_share_is_stored_beside_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_share(dir.path()), None);
        let share = Share { slot: 2, of: 3 };
        write_share(dir.path(), share).unwrap();
        assert_eq!(read_share(dir.path()), Some(share));
        for bad in ["3 3\n", "1 0\n", "x 3", "", "1"] {
            std::fs::write(dir.path().join(SHARE_FILE), bad).unwrap();
            assert_eq!(read_share(dir.path()), None, "{bad:?}");
        }
    }

    #[test]
    fn cache_round_trip_and_corruption_is_detected() {
        let s = snapshot(42);
        let bytes = encode_cache(&s);
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(decode_cache(&bytes).unwrap(), s);

        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        assert!(matches!(
            decode_cache(&flipped),
            Err(CacheError::ChecksumMismatch)
        ));
        assert!(matches!(
            decode_cache(&bytes[..bytes.len() - 3]),
            Err(CacheError::Truncated { .. })
        ));
        assert!(matches!(
            decode_cache(&bytes[..30]),
            Err(CacheError::Truncated { .. })
        ));
        assert!(matches!(
            decode_cache(b"garbage that is not a cache"),
            Err(CacheError::BadMagic)
        ));
        let mut other_version = bytes.clone();
        other_version[8] = 2;
        assert!(matches!(
            decode_cache(&other_version),
            Err(CacheError::UnsupportedVersion(2))
        ));

        let dir = tempfile::tempdir().unwrap();
        assert!(read_cache(dir.path()).unwrap().is_none());
        let nested = dir.path().join("a/b");
        write_cache(&nested, &s).unwrap();
        assert_eq!(read_cache(&nested).unwrap().unwrap(), s);
        write_cache(&nested, &snapshot(43)).unwrap();
        assert_eq!(read_cache(&nested).unwrap().unwrap().version, 43);
        let names: Vec<_> = fs::read_dir(&nested)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [CACHE_FILE], "no temporary files left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(nested.join(CACHE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "snapshots carry credentials");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_is_applied_persisted_and_acked() {
        let state = FakeState::new(Some("jt-secret"));
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let cache = tempfile::tempdir().unwrap();
        let dp = data_plane();
        let (status, body) = ready_body(&dp).await;
        assert_eq!(status, 503);
        assert_eq!(body["ready"], false);

        let task = dp.follow_remote_with(remote(cp.endpoint(), Some(cache.path())), fast_options());
        wait_until("v1 acked", || state.has_ack(1, true)).await;
        assert_eq!(version(&dp), Some(1));
        assert!(
            dp.runtime()
                .load()
                .unwrap()
                .virtual_key(crate::testing::VIRTUAL_KEY)
                .is_some()
        );
        // Persisted before the ack.
        assert_eq!(read_cache(cache.path()).unwrap().unwrap().version, 1);

        let hello = &state.hellos()[0];
        assert_eq!(hello.node_id, "node-a");
        assert_eq!(hello.address, "10.0.0.7:8080");
        assert_eq!(hello.build_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(hello.have_version, 0);
        let call = &state.calls()[0];
        assert_eq!(call.authorization.as_deref(), Some("Bearer jt-secret"));
        assert!(
            call.accept_encoding
                .as_deref()
                .is_some_and(|e| e.contains("gzip")),
            "{call:?}"
        );
        assert_eq!(call.encoding.as_deref(), Some("gzip"), "{call:?}");

        let (status, body) = ready_body(&dp).await;
        assert_eq!(status, 200);
        assert_eq!(body["config_version"], 1);
        assert_eq!(body["config_source"], "control-plane");
        assert_eq!(body["control_plane_connected"], true);

        // A new version is applied, persisted and acked too.
        state.publish(snapshot(2));
        wait_until("v2 acked", || state.has_ack(2, true)).await;
        assert_eq!(version(&dp), Some(2));
        assert_eq!(read_cache(cache.path()).unwrap().unwrap().version, 2);
        assert_eq!(state.hellos().len(), 1, "one stream, no reconnects");
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_join_token_is_refused_and_retried() {
        let state = FakeState::new(Some("the-right-one"));
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), None), fast_options());
        wait_until("several refused attempts", || state.calls().len() >= 3).await;
        assert_eq!(version(&dp), None);
        assert!(!dp.config_link().connected());
        assert!(state.acks().is_empty());
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_snapshot_is_nacked_and_the_last_good_one_keeps_serving() {
        let state = FakeState::new(None);
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let cache = tempfile::tempdir().unwrap();
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), Some(cache.path())), fast_options());
        wait_until("v1 acked", || state.has_ack(1, true)).await;

        state.publish(invalid_snapshot(2));
        wait_until("v2 nacked", || state.has_ack(2, false)).await;
        let nack = state.acks().into_iter().find(|a| a.version == 2).unwrap();
        assert!(nack.error.contains("has no kind"), "{nack:?}");
        assert_eq!(version(&dp), Some(1), "the last good config keeps serving");
        assert_eq!(
            read_cache(cache.path()).unwrap().unwrap().version,
            1,
            "a rejected snapshot is not persisted"
        );
        let (status, body) = ready_body(&dp).await;
        assert_eq!((status, body["config_version"].as_u64()), (200, Some(1)));

        // The stream is still up: the next good version is applied.
        state.publish(snapshot(3));
        wait_until("v3 acked", || state.has_ack(3, true)).await;
        assert_eq!(version(&dp), Some(3));
        assert_eq!(state.hellos().len(), 1);
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_serving_while_the_control_plane_is_down_and_reconnects() {
        let state = FakeState::new(None);
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), None), fast_options());
        wait_until("v1 acked", || state.has_ack(1, true)).await;
        assert!(dp.config_link().connected());

        let (state, addr) = cp.stop().await;
        wait_until("disconnect noticed", || !dp.config_link().connected()).await;
        let attempts = dp.config_link().connect_attempts();
        wait_until("reconnect attempts while down", || {
            dp.config_link().connect_attempts() >= attempts + 3
        })
        .await;
        assert_eq!(version(&dp), Some(1), "still serving while disconnected");
        let (status, body) = ready_body(&dp).await;
        assert_eq!(status, 200, "ready stays true while disconnected");
        assert_eq!(body["control_plane_connected"], false);
        assert_eq!(body["config_version"], 1);

        // Changed while down; the control plane comes back on the same address.
        state.publish(snapshot(2));
        let cp = FakeControlPlane::start(Arc::clone(&state), Some(addr)).await;
        wait_until("v2 acked after reconnect", || state.has_ack(2, true)).await;
        assert_eq!(version(&dp), Some(2));
        assert!(dp.config_link().connected());
        let hellos = state.hellos();
        assert_eq!(hellos.len(), 2);
        assert_eq!(hellos[1].have_version, 1, "the Hello says what is served");
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_while_the_control_plane_is_down_serves_from_the_disk_cache() {
        let state = FakeState::new(None);
        state.publish(snapshot(7));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let cache = tempfile::tempdir().unwrap();
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), Some(cache.path())), fast_options());
        wait_until("v7 acked", || state.has_ack(7, true)).await;
        task.abort();
        let (state, addr) = cp.stop().await;
        drop(dp);

        // A new process: the control plane is down, the cache is there.
        let dp = data_plane();
        let task = dp.follow_remote_with(
            remote(format!("http://{addr}"), Some(cache.path())),
            fast_options(),
        );
        wait_until("cached v7 served", || version(&dp) == Some(7)).await;
        assert!(
            dp.runtime()
                .load()
                .unwrap()
                .virtual_key(crate::testing::VIRTUAL_KEY)
                .is_some()
        );
        let (status, body) = ready_body(&dp).await;
        assert_eq!(status, 200);
        assert_eq!(body["config_version"], 7);
        assert_eq!(body["control_plane_connected"], false);

        // When the control plane returns, the node says it has v7 and gets the newer one.
        state.publish(snapshot(8));
        let cp = FakeControlPlane::start(Arc::clone(&state), Some(addr)).await;
        wait_until("v8 acked", || state.has_ack(8, true)).await;
        assert_eq!(state.hellos().last().unwrap().have_version, 7);
        assert_eq!(read_cache(cache.path()).unwrap().unwrap().version, 8);
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_cache_is_ignored() {
        let (endpoint, addr) = dead_endpoint().await;
        for corrupt in [
            b"definitely not a snapshot".to_vec(),
            {
                let mut b = encode_cache(&snapshot(5));
                let n = b.len();
                b[n - 10] ^= 0xff;
                b
            },
            {
                let b = encode_cache(&snapshot(5));
                b[..b.len() / 2].to_vec()
            },
        ] {
            let cache = tempfile::tempdir().unwrap();
            fs::write(cache.path().join(CACHE_FILE), &corrupt).unwrap();
            let dp = data_plane();
            let task =
                dp.follow_remote_with(remote(endpoint.clone(), Some(cache.path())), fast_options());
            // The cache is read before the first connection attempt.
            wait_until("a connection attempt", || {
                dp.config_link().connect_attempts() >= 1
            })
            .await;
            assert_eq!(version(&dp), None, "a corrupt cache is not served");
            let (status, _) = ready_body(&dp).await;
            assert_eq!(status, 503);
            task.abort();
        }

        // A cache that verifies but fails validation is ignored too, and then replaced.
        let cache = tempfile::tempdir().unwrap();
        fs::write(
            cache.path().join(CACHE_FILE),
            encode_cache(&invalid_snapshot(5)),
        )
        .unwrap();
        let state = FakeState::new(None);
        state.publish(snapshot(6));
        let cp = FakeControlPlane::start(Arc::clone(&state), Some(addr)).await;
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), Some(cache.path())), fast_options());
        wait_until("v6 acked", || state.has_ack(6, true)).await;
        assert_eq!(state.hellos()[0].have_version, 0);
        assert_eq!(read_cache(cache.path()).unwrap().unwrap().version, 6);
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_version_is_not_applied() {
        let cache = tempfile::tempdir().unwrap();
        write_cache(cache.path(), &snapshot(10)).unwrap();
        let state = FakeState::new(None);
        state.publish(snapshot(9));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), Some(cache.path())), fast_options());
        wait_until("v9 answered", || state.has_ack(9, false)).await;
        assert_eq!(version(&dp), Some(10));
        assert_eq!(read_cache(cache.path()).unwrap().unwrap().version, 10);
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_are_rotated_after_their_lifetime() {
        let state = FakeState::new(None);
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let dp = data_plane();
        let opts = ConnectOptions {
            max_stream_lifetime: Some(std::time::Duration::from_millis(100)),
            ..fast_options()
        };
        let task = dp.follow_remote_with(remote(cp.endpoint(), None), opts);
        wait_until("v1 acked", || state.has_ack(1, true)).await;
        let first = dp.runtime().load().unwrap();
        wait_until("three streams", || state.hellos().len() >= 3).await;
        wait_until("v1 acked on every stream", || {
            state
                .acks()
                .iter()
                .filter(|a| a.version == 1 && a.applied)
                .count()
                >= 3
        })
        .await;
        assert!(
            Arc::ptr_eq(&first, &dp.runtime().load().unwrap()),
            "a version already served is not compiled again (credential caches stay warm)"
        );
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn falls_back_to_uncompressed_requests_when_gzip_is_refused() {
        let state = FakeState::new(None);
        state
            .accept_gzip
            .store(false, std::sync::atomic::Ordering::SeqCst);
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), None), fast_options());
        wait_until("v1 acked", || state.has_ack(1, true)).await;
        let calls = state.calls();
        assert_eq!(calls.last().unwrap().encoding, None);
        assert!(
            dp.config_link().connect_attempts() >= 2,
            "the first, compressed, attempt was refused"
        );
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_with_a_server_that_answers_only_after_the_hello() {
        let state = FakeState::new(None);
        state
            .answer_after_first_message
            .store(true, std::sync::atomic::Ordering::SeqCst);
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let dp = data_plane();
        let task = dp.follow_remote_with(remote(cp.endpoint(), None), fast_options());
        wait_until("v1 acked", || state.has_ack(1, true)).await;
        assert_eq!(state.hellos().len(), 1);
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follows_the_control_plane_over_mutual_tls() {
        let pki = crate::grpc::test_pki::generate();
        let state = FakeState::new(Some("jt-secret"));
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let proxy = crate::grpc::test_pki::tls_proxy(&pki, cp.addr, true).await;
        let dp = data_plane();
        let tls = ClientTls::from_files(
            Some(&pki.ca),
            Some(&pki.client_cert),
            Some(&pki.client_key),
            None,
        )
        .unwrap();
        let cfg = RemoteConfig {
            tls: Some(tls),
            ..remote(proxy.endpoint(), None)
        };
        let task = dp.follow_remote_with(cfg, fast_options());
        wait_until("v1 acked over mutual TLS", || state.has_ack(1, true)).await;
        assert_eq!(version(&dp), Some(1));
        assert!(dp.config_link().connected());
        // The join token still travels, inside the TLS session.
        assert_eq!(
            state.calls()[0].authorization.as_deref(),
            Some("Bearer jt-secret")
        );
        assert!(proxy.refusals().is_empty(), "{:?}", proxy.refusals());
        assert!(proxy.accepted.load(Ordering::SeqCst) >= 1);
        task.abort();
        cp.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_tls_handshakes_are_connection_failures_that_are_retried() {
        let pki = crate::grpc::test_pki::generate();
        let state = FakeState::new(Some("jt-secret"));
        state.publish(snapshot(1));
        let cp = FakeControlPlane::start(Arc::clone(&state), None).await;
        let proxy = crate::grpc::test_pki::tls_proxy(&pki, cp.addr, true).await;
        let https = proxy.endpoint();
        let plaintext = https.replace("https://", "http://");
        let ca_only = ClientTls::from_files(Some(&pki.ca), None, None, None).unwrap();
        let wrong_ca_cert = ClientTls::from_files(
            Some(&pki.ca),
            Some(&pki.other_client_cert),
            Some(&pki.other_client_key),
            None,
        )
        .unwrap();
        let trusts_other_ca = ClientTls::from_files(
            Some(&pki.other_ca),
            Some(&pki.client_cert),
            Some(&pki.client_key),
            None,
        )
        .unwrap();
        let cases: [(&str, String, Option<ClientTls>); 5] = [
            ("no client certificate", https.clone(), Some(ca_only)),
            (
                "client certificate of another CA",
                https.clone(),
                Some(wrong_ca_cert),
            ),
            (
                "control plane not signed by the trusted CA",
                https.clone(),
                Some(trusts_other_ca),
            ),
            ("https with the system roots only", https.clone(), None),
            ("plaintext to a TLS listener", plaintext, None),
        ];
        for (what, endpoint, tls) in cases {
            let dp = data_plane();
            let refused_before = proxy.refusals().len();
            let task = dp.follow_remote_with(
                RemoteConfig {
                    tls,
                    ..remote(endpoint, None)
                },
                fast_options(),
            );
            wait_until(what, || dp.config_link().connect_attempts() >= 3).await;
            assert_eq!(version(&dp), None, "{what}");
            assert!(!dp.config_link().connected(), "{what}");
            task.abort();
            // The server side refused the handshake (or saw it aborted by the client); without
            // system CA certificates the https case fails before connecting.
            let system_roots_only = what.starts_with("https with");
            assert!(
                system_roots_only || proxy.refusals().len() > refused_before,
                "{what}"
            );
        }
        assert_eq!(proxy.accepted.load(Ordering::SeqCst), 0);
        let refusals = proxy.refusals().join("\n");
        assert!(refusals.contains("no certificates"), "{refusals}");
        assert!(refusals.contains("UnknownIssuer"), "{refusals}");
        assert!(state.acks().is_empty());
        assert!(state.calls().is_empty(), "no call got past TLS");
        cp.stop().await;
    }
}
