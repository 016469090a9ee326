//! One usage record per request. Records are logged as structured `tracing` events (target
//! `tollgate::usage`) and offered to a bounded sink with `try_send`: the request path never
//! waits for usage delivery, and a full queue is counted and reported instead of growing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tollgate_proto::usage::v1::UsageRecord;

/// Recorded bodies one [`drain`] takes, at most (past it the batch ends; a record with more
/// goes alone): 4 MiB, so a batch of usage with bodies stays a modest store transaction and gRPC
/// message.
pub const DRAIN_CONTENT_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of recorded bodies (content logging) a record carries.
pub fn record_content_len(r: &UsageRecord) -> usize {
    r.content
        .as_ref()
        .map_or(0, |c| c.request.len() + c.response.len())
}

/// Bytes of recorded bodies `records` carry.
pub fn content_len(records: &[UsageRecord]) -> usize {
    records.iter().map(record_content_len).sum()
}

/// Moves queued records into `out`, without waiting, until `out` holds `max` records or
/// [`DRAIN_CONTENT_BYTES`] of bodies, or the queue is empty. Returns `true` when the queue is
/// closed (every sink dropped) and empty.
///
/// The sink's consumers call this on a timer rather than awaiting each record, so a request never
/// wakes another task for its usage.
pub fn drain(rx: &mut mpsc::Receiver<UsageRecord>, out: &mut Vec<UsageRecord>, max: usize) -> bool {
    let mut content = content_len(out);
    while out.len() < max && content < DRAIN_CONTENT_BYTES {
        match rx.try_recv() {
            Ok(record) => {
                content += record_content_len(&record);
                out.push(record);
            }
            Err(mpsc::error::TryRecvError::Empty) => return false,
            Err(mpsc::error::TryRecvError::Disconnected) => return true,
        }
    }
    false
}

/// Where usage records go. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UsageSink {
    tx: Option<mpsc::Sender<UsageRecord>>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink {
    /// A sink feeding a bounded channel of `capacity` records.
    pub fn channel(capacity: usize) -> (UsageSink, mpsc::Receiver<UsageRecord>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            UsageSink {
                tx: Some(tx),
                dropped: Arc::default(),
            },
            rx,
        )
    }

    /// A sink that only logs.
    pub fn log_only() -> UsageSink {
        UsageSink::default()
    }

    /// Records waiting in the queue now (0 for a log-only sink).
    pub fn queued(&self) -> usize {
        self.tx
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// Records dropped because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn record(&self, r: UsageRecord) {
        tracing::info!(
            target: "tollgate::usage",
            request_id = %r.request_id,
            virtual_key_id = %r.virtual_key_id,
            provider = %r.provider,
            model_requested = %r.model_requested,
            model_resolved = %r.model_resolved,
            provider_key_id = %r.provider_key_id,
            stream = r.stream,
            status = r.status,
            error_class = %r.error_class,
            input_tokens = r.input_tokens,
            output_tokens = r.output_tokens,
            cache_read_input_tokens = r.cache_read_input_tokens,
            cache_write_input_tokens = r.cache_write_input_tokens,
            cache_write_1h_input_tokens = r.cache_write_1h_input_tokens,
            cost_nano_usd = r.cost_nano_usd,
            priced = r.cost_nano_usd.is_some(),
            latency_ms = r.latency_ms,
            time_to_first_token_ms = r.time_to_first_token_ms,
            fallback_index = r.fallback_index,
            attempts = r.attempts.len(),
            "request completed"
        );
        self.push(r);
    }

    /// Queues a record without logging it (its caller logged its own event: an MCP tool call).
    pub fn push(&self, r: UsageRecord) {
        if let Some(tx) = &self.tx
            && tx.try_send(r).is_err()
        {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(dropped_total = n, "usage queue full; record dropped");
        }
    }
}
