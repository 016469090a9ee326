//! Ended spans to the exporter. A span that ends goes into a bounded queue with `try_send`: the
//! request path never waits for the exporter, and a full queue drops the span and counts it. One
//! task drains the queue on a timer (so a request never wakes it) and hands the exporter batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};

/// How spans are queued and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Spans held at most; more are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue: usize,
    /// How often the queue is drained (`OTEL_BSP_SCHEDULE_DELAY`, milliseconds).
    pub delay: Duration,
    /// Spans per export call at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_batch: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_queue: 8192,
            delay: Duration::from_secs(1),
            max_batch: 512,
        }
    }
}

impl QueueConfig {
    /// The defaults, overridden by the standard `OTEL_BSP_*` variables where set and valid.
    pub fn from_env() -> QueueConfig {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> QueueConfig {
        let num = |name: &str| {
            var(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let d = QueueConfig::default();
        let max_queue = num("OTEL_BSP_MAX_QUEUE_SIZE").map_or(d.max_queue, |n| n as usize);
        QueueConfig {
            max_queue,
            delay: num("OTEL_BSP_SCHEDULE_DELAY").map_or(d.delay, Duration::from_millis),
            max_batch: num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .map_or(d.max_batch, |n| n as usize)
                .min(max_queue),
        }
    }
}

/// The span processor: ended spans into the bounded queue.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    tx: mpsc::Sender<SpanData>,
    dropped: Arc<AtomicU64>,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(span) {
            // Counted; logged when the exporter task next runs (not here, on the request path).
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// The export task is stopped by [`Exporting::shutdown`], which waits for it to flush.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task: stopping it flushes what is queued.
#[derive(Debug)]
pub struct Exporting {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    dropped: Arc<AtomicU64>,
}

impl Exporting {
    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Exports what is queued and stops, waiting at most `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("trace export did not finish in time; the spans left are dropped");
        }
    }
}

/// The processor feeding `exporter` and the task that drains it. Call within a Tokio runtime.
pub(super) fn queue<E: SpanExporter + 'static>(
    exporter: E,
    config: QueueConfig,
) -> (QueueProcessor, Exporting) {
    let (tx, rx) = mpsc::channel(config.max_queue.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(drain(rx, exporter, config, stopped, Arc::clone(&dropped)));
    (
        QueueProcessor {
            tx,
            dropped: Arc::clone(&dropped),
        },
        Exporting {
            stop,
            task,
            dropped,
        },
    )
}

/// Every `delay` (or at once when stopping): the queued spans, in batches, to the exporter.
async fn drain<E: SpanExporter>(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: E,
    config: QueueConfig,
    mut stop: oneshot::Receiver<()>,
    dropped: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(config.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_drops = 0;
    let mut failures = 0u64;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop, if !stopping => stopping = true,
        }
        loop {
            let mut batch = Vec::with_capacity(config.max_batch.min(rx.len()).max(1));
            while batch.len() < config.max_batch {
                match rx.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            match exporter.export(batch).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    // The first failure of a run, then one in a hundred: a collector that is
                    // down does not flood the log.
                    if failures % 100 == 1 {
                        tracing::warn!(error = %e, spans = n, failures, "trace export failed; these spans are lost");
                    }
                }
            }
            if n < config.max_batch {
                break;
            }
        }
        let drops = dropped.load(Ordering::Relaxed);
        if drops > reported_drops {
            tracing::warn!(
                dropped = drops - reported_drops,
                dropped_total = drops,
                "trace export queue was full; spans were dropped"
            );
            reported_drops = drops;
        }
        if stopping {
            break;
        }
    }
    let _ = exporter.shutdown();
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use crate::otel::testing::Recorder;

    #[test]
    fn standard_variables_override_the_defaults() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(QueueConfig::from_vars(vars(&[])), QueueConfig::default());
        assert_eq!(
            QueueConfig::from_vars(vars(&[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ])),
            QueueConfig {
                max_queue: 100,
                delay: Duration::from_millis(50),
                max_batch: 100,
            }
        );
        assert_eq!(
            QueueConfig::from_vars(vars(&[("OTEL_BSP_MAX_QUEUE_SIZE", "0")])),
            QueueConfig::default()
        );
    }

    /// A full queue drops and counts spans instead of waiting; what was queued is exported when
    /// the task stops.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_shutdown_flushes() {
        let exporter = Recorder::default();
        let config = QueueConfig {
            max_queue: 3,
            delay: Duration::from_secs(3600),
            max_batch: 2,
        };
        let (processor, exporting) = queue(exporter.clone(), config);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("test");
        // The interval's first tick is immediate; let it pass with an empty queue.
        tokio::task::yield_now().await;
        for i in 0..5 {
            let mut span = tracer.start(format!("span {i}"));
            span.end();
        }
        assert_eq!(exporting.dropped(), 2);
        assert!(exporter.spans().is_empty());
        exporting.shutdown(Duration::from_secs(5)).await;
        let names: Vec<String> = exporter
            .spans()
            .into_iter()
            .map(|s| s.name.into_owned())
            .collect();
        assert_eq!(names, ["span 0", "span 1", "span 2"]);
    }
}
