//! Client- and upstream-controlled text in log lines: the shared rule of
//! [`tollgate_proto::logsafe`] (escaped control characters, cut at [`MAX_LOG_BYTES`]), plus a
//! helper for optional `tracing` fields.

pub use tollgate_proto::logsafe::{LogSafe, MAX_LOG_BYTES, log_safe};

/// [`log_safe`] for an optional field: `detail = log_safe_opt(e.detail.as_deref())` records
/// nothing when the text is absent.
pub fn log_safe_opt(text: Option<&str>) -> Option<tracing::field::DisplayValue<LogSafe<'_>>> {
    text.map(|t| tracing::field::display(log_safe(t)))
}
