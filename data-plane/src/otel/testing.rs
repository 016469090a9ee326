//! An exporter that keeps what it is given, for the in-process tests.

use std::sync::{Arc, Mutex};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Keeps every exported span; clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl Recorder {
    pub(crate) fn spans(&self) -> Vec<SpanData> {
        self.spans.lock().expect("recorder lock").clone()
    }
}

impl SpanExporter for Recorder {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans.lock().expect("recorder lock").extend(batch);
        Ok(())
    }
}
