//! gRPC client plumbing shared by the config stream ([`crate::source`]) and the usage reporter
//! ([`crate::reporter`]): how to reach the control plane ([`ConnectOptions`]), the endpoint
//! (connect timeout, HTTP/2 keep-alive), the `authorization: Bearer <join token>` metadata and
//! exponential backoff with full jitter between attempts.
//!
//! Both clients open their own HTTP/2 connection per attempt, so a reconnect can land on another
//! control-plane replica behind a load balancer.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Endpoint;

/// Timeouts, keep-alive and backoff of a connection to the control plane.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Time allowed to establish the TCP/HTTP/2 connection and to get the stream's response headers.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval; a peer that does not answer within `keepalive_timeout` is dropped,
    /// so a silently cut network is noticed even when no message is due.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// First reconnect delay cap; the cap doubles on every failed attempt up to `backoff_max`.
    /// The actual delay is drawn uniformly from `[0, cap]` (full jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A stream that stayed up at least this long resets the backoff.
    pub stable_after: Duration,
    /// The config stream is closed and reopened after about this long (±10 %), so a fleet
    /// spreads over control-plane replicas that were added or restarted. `None`: never.
    pub max_stream_lifetime: Option<Duration>,
    /// A usage batch left unacknowledged this long makes the reporter drop the stream and
    /// resend everything unacknowledged on a new one (a control plane that is stuck or lost
    /// a batch).
    pub ack_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            max_stream_lifetime: Some(Duration::from_secs(30 * 60)),
            ack_timeout: Duration::from_secs(120),
        }
    }
}

/// Largest message accepted from the control plane (a snapshot with many thousands of virtual
/// keys is a few MB; tonic's default of 4 MB would be too tight).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The endpoint for `url` (`http://host:port`) with the options' timeouts and keep-alive.
pub(crate) fn endpoint(url: &str, opts: &ConnectOptions) -> Result<Endpoint, String> {
    if url.starts_with("https://") {
        return Err(format!(
            "control plane endpoint {url:?}: https is not supported by this build (use http:// \
             on a trusted network, or a TLS-terminating sidecar)"
        ));
    }
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("invalid control plane endpoint {url:?}: {e}"))?;
    Ok(endpoint
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .keep_alive_while_idle(true))
}

/// Adds `authorization: Bearer <token>` to a request. The token never appears in errors or logs.
pub(crate) fn authorize<T>(req: &mut tonic::Request<T>, token: Option<&str>) -> Result<(), String> {
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| "the join token contains characters not allowed in a header".to_owned())?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(())
}

/// True when the server refused the request because it does not accept gzip-compressed
/// messages; the caller then retries without compressing what it sends.
pub(crate) fn rejects_compression(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unimplemented && status.message().contains("compress")
}

/// A status as one log-friendly line.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

/// An error and its sources, joined (tonic's transport errors hide the cause in the chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Exponential backoff with full jitter: attempt `n` waits a uniform random time in
/// `[0, min(max, initial * 2^n)]`.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(opts: &ConnectOptions) -> Backoff {
        Backoff {
            initial: opts.backoff_initial.max(Duration::from_millis(1)),
            max: opts.backoff_max.max(opts.backoff_initial),
            attempt: 0,
        }
    }

    /// The cap of the next delay (before jitter).
    pub(crate) fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; advances the backoff.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let cap = u64::try_from(self.cap().as_millis()).unwrap_or(u64::MAX);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::random_range(0..=cap))
    }

    /// Failed attempts since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `d` scaled by a random factor in `[0.9, 1.1]`, so that timers set at the same moment on many
/// nodes do not fire together.
pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter_and_resets() {
        let opts = ConnectOptions {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            ..ConnectOptions::default()
        };
        let mut b = Backoff::new(&opts);
        let mut caps = Vec::new();
        for _ in 0..12 {
            let cap = b.cap();
            caps.push(cap.as_millis());
            let d = b.next_delay();
            assert!(d <= cap, "{d:?} > {cap:?}");
        }
        assert_eq!(
            caps,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(b.attempts(), 12);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.cap(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.cap(), Duration::from_millis(100));
        // Full jitter: delays spread over the whole range, not just near the cap.
        let mut b = Backoff::new(&ConnectOptions {
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(10),
            ..ConnectOptions::default()
        });
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(3)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(7)));
    }

    #[test]
    fn endpoint_and_authorization() {
        let opts = ConnectOptions::default();
        assert!(endpoint("http://127.0.0.1:9090", &opts).is_ok());
        assert!(endpoint("https://cp:9090", &opts).is_err());
        assert!(endpoint("not a url", &opts).is_err());
        let mut req = tonic::Request::new(());
        authorize(&mut req, Some("jt-secret")).unwrap();
        assert_eq!(
            req.metadata().get("authorization").unwrap(),
            "Bearer jt-secret"
        );
        let mut req = tonic::Request::new(());
        authorize(&mut req, None).unwrap();
        assert!(req.metadata().get("authorization").is_none());
        let err = authorize(&mut tonic::Request::new(()), Some("bad\nvalue")).unwrap_err();
        assert!(
            !err.contains("bad"),
            "the token leaked into the error: {err}"
        );
    }
}
