//! OpenTelemetry traces over OTLP, off unless an endpoint is configured.
//!
//! Each inference request that got past authentication is one `SERVER` span (named
//! `{gen_ai.operation.name} {gen_ai.request.model}`, e.g. `chat claude-sonnet-4-6`), the child
//! of the client's W3C `traceparent` when it sent one, and each upstream attempt (another key, a
//! retry, a fallback) one `CLIENT` span under it, named after the upstream model. Attributes
//! follow the GenAI semantic conventions ([`semconv`]); no prompt or answer content is ever put
//! in a span, and no header is added to upstream requests (Bedrock's are SigV4-signed).
//!
//! The spans ride in the request's usage draft (`server::Draft`): they end when its record is
//! finished, which for a stream is when the stream ends or the client leaves, and when the draft
//! is dropped without a record (the client left before the answer began). With tracing off the
//! draft holds `None` and nothing else happens per request.
//!
//! The SDK's own span objects are used directly (not through `tracing` layers): a span costs
//! nothing until it ends, and then goes to a bounded queue that never blocks ([`export`]).

mod export;
pub mod semconv;
#[cfg(test)]
pub(crate) mod testing;

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use http::HeaderMap;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use tollgate_proto::usage::v1::UsageRecord;
use tollgate_protocol::bedrock::RequestBody;

pub use export::{Exporting, QueueConfig};

use crate::providers::{Call, Operation};
use crate::runtime::{KeyCredential, ProviderKind};
use semconv as sc;

/// How spans leave the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318), the specification's default.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// `grpc` or `http/protobuf`, as `OTEL_EXPORTER_OTLP_PROTOCOL` spells them.
    pub fn parse(s: &str) -> Option<OtlpProtocol> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Where spans go: the binary's flags over the standard `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// `--otlp-endpoint`: the collector's base URL, like `OTEL_EXPORTER_OTLP_ENDPOINT` (for
    /// `http/protobuf`, `/v1/traces` is appended). `None`: the exporter reads
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
}

/// Why trace export could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("{name} is {value:?}: expected grpc or http/protobuf")]
    Protocol { name: &'static str, value: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

impl OtlpSettings {
    /// The settings when export is on, `None` when it is off: on with `flag_endpoint` or with
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` set, unless
    /// `OTEL_SDK_DISABLED` is `true` or `OTEL_TRACES_EXPORTER` is `none`. The protocol:
    /// `flag_protocol`, else `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
    pub fn resolve(
        flag_endpoint: Option<&str>,
        flag_protocol: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpSettings>, OtelError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let endpoint = flag_endpoint
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned);
        if endpoint.is_none()
            && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        let named = [
            ("--otlp-protocol", flag_protocol.map(str::to_owned)),
            (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                set("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ),
        ];
        let protocol = match named.into_iter().find_map(|(n, v)| v.map(|v| (n, v))) {
            None => OtlpProtocol::HttpProtobuf,
            Some((name, value)) => {
                OtlpProtocol::parse(&value).ok_or(OtelError::Protocol { name, value })?
            }
        };
        Ok(Some(OtlpSettings { endpoint, protocol }))
    }

    /// Where spans go, for the startup log: scheme, host and port of the flag's endpoint (no
    /// path, no user info), or the variable that names it.
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => {
                let scheme = e.split_once("://").map_or("", |(s, _)| s);
                match sc::server_of(e) {
                    Some((host, Some(port))) => format!("{scheme}://{host}:{port}"),
                    Some((host, None)) => format!("{scheme}://{host}"),
                    None => "(invalid endpoint)".to_owned(),
                }
            }
            None => "the OTEL_EXPORTER_OTLP_*ENDPOINT variable".to_owned(),
        }
    }
}

/// Starts trace export: the OTLP exporter, the queue and its task. Call within a Tokio runtime.
/// The resource is the SDK's (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), with
/// `service.name` `tollgate` when neither names one, and `service.version`; the sampler is the
/// SDK's (`OTEL_TRACES_SAMPLER`, default `parentbased_always_on`).
pub fn start(settings: &OtlpSettings) -> Result<(Tracer, Exporting), OtelError> {
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => {
            let builder = SpanExporter::builder().with_tonic();
            match &settings.endpoint {
                Some(e) => builder.with_endpoint(e.clone()).build()?,
                None => builder.build()?,
            }
        }
        OtlpProtocol::HttpProtobuf => {
            let builder = SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary);
            match &settings.endpoint {
                Some(e) => builder
                    .with_endpoint(format!("{}/v1/traces", e.trim_end_matches('/')))
                    .build()?,
                None => builder.build()?,
            }
        }
    };
    Ok(start_with(exporter, QueueConfig::from_env()))
}

/// [`start`] with any exporter (tests use an in-memory one).
pub fn start_with<E>(mut exporter: E, queue: QueueConfig) -> (Tracer, Exporting)
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    let resource = resource();
    exporter.set_resource(&resource);
    let (processor, exporting) = export::queue(exporter, queue);
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("tollgate")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    (Tracer { tracer }, exporting)
}

fn resource() -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|v| v.as_str().starts_with("unknown_service"));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if unnamed {
        builder.with_service_name("tollgate").build()
    } else {
        builder.build()
    }
}

/// Starts the spans of requests. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer {
    tracer: SdkTracer,
}

/// The request's headers, for the W3C trace-context propagator.
struct Headers<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Longest `gen_ai.conversation.id` taken from the client's session header.
const MAX_CONVERSATION_ID: usize = 128;

/// What the request span is started with.
pub(crate) struct RequestStart<'a> {
    pub headers: &'a HeaderMap,
    /// When the request arrived.
    pub arrived: Instant,
    pub op: Operation,
    pub request_id: &'a str,
    pub virtual_key_id: &'a str,
    /// The parsed body, once the model is known to be well-formed.
    pub body: Option<&'a RequestBody<'a>>,
    pub session: Option<&'a str>,
}

impl Tracer {
    /// The request's `SERVER` span, the child of the client's `traceparent` if any. `None` when
    /// the sampler does not record it (then nothing more is done for this request).
    pub(crate) fn start_request(&self, r: RequestStart<'_>) -> Option<Box<RequestTrace>> {
        use opentelemetry::propagation::TextMapPropagator as _;
        let parent = if r.headers.contains_key("traceparent") {
            TraceContextPropagator::new().extract(&Headers(r.headers))
        } else {
            Context::new()
        };
        let model = r.body.map(|b| b.model.as_str());
        // What samplers may look at comes at creation; the rest only once it records.
        let mut attributes = vec![KeyValue::new(sc::OPERATION_NAME, sc::operation_name(r.op))];
        if let Some(model) = model {
            attributes.push(KeyValue::new(sc::REQUEST_MODEL, model.to_owned()));
        }
        let builder = SpanBuilder {
            name: sc::span_name(r.op, model).into(),
            span_kind: Some(SpanKind::Server),
            start_time: SystemTime::now().checked_sub(r.arrived.elapsed()),
            attributes: Some(attributes),
            ..SpanBuilder::default()
        };
        let mut span = self.tracer.build_with_context(builder, &parent);
        if !span.is_recording() {
            return None;
        }
        span.set_attribute(KeyValue::new(
            sc::TOLLGATE_REQUEST_ID,
            r.request_id.to_owned(),
        ));
        span.set_attribute(KeyValue::new(
            sc::TOLLGATE_VIRTUAL_KEY_ID,
            r.virtual_key_id.to_owned(),
        ));
        if let Some(body) = r.body {
            if let Some(n) = body.max_tokens().and_then(|n| i64::try_from(n).ok()) {
                span.set_attribute(KeyValue::new(sc::REQUEST_MAX_TOKENS, n));
            }
            if let Some(t) = body.number("temperature") {
                span.set_attribute(KeyValue::new(sc::REQUEST_TEMPERATURE, t));
            }
            if let Some(p) = body.number("top_p") {
                span.set_attribute(KeyValue::new(sc::REQUEST_TOP_P, p));
            }
            if body.stream && r.op == Operation::Messages {
                span.set_attribute(KeyValue::new(sc::REQUEST_STREAM, true));
            }
        }
        if let Some(session) = r
            .session
            .filter(|s| s.len() <= MAX_CONVERSATION_ID && s.bytes().all(|b| b.is_ascii_graphic()))
        {
            span.set_attribute(KeyValue::new(sc::CONVERSATION_ID, session.to_owned()));
        }
        let children = Context::new().with_remote_span_context(span.span_context().clone());
        Some(Box::new(RequestTrace {
            tracer: self.clone(),
            server: span,
            children,
            attempt: None,
            attempts: 0,
            served_by: None,
            finished: false,
        }))
    }
}

/// The spans of one request: the request's, and the upstream attempt in flight or answering.
pub struct RequestTrace {
    tracer: Tracer,
    server: Span,
    /// The parent of the attempts' spans.
    children: Context,
    attempt: Option<Span>,
    attempts: u32,
    /// The kind of the provider of the latest attempt.
    served_by: Option<ProviderKind>,
    finished: bool,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cx = self.server.span_context();
        f.debug_struct("RequestTrace")
            .field("trace_id", &cx.trace_id())
            .field("span_id", &cx.span_id())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl RequestTrace {
    /// An upstream attempt starts: its `CLIENT` span, `fallback_index` the entry it serves.
    pub(crate) fn start_attempt(&mut self, call: &Call<'_>, fallback_index: usize) {
        self.attempts += 1;
        self.served_by = Some(call.provider.kind);
        let mut attributes = vec![
            KeyValue::new(sc::OPERATION_NAME, sc::operation_name(call.op)),
            KeyValue::new(sc::PROVIDER_NAME, sc::provider_name(call.provider.kind)),
            KeyValue::new(sc::REQUEST_MODEL, call.upstream_model.clone()),
        ];
        if let Some((host, port)) = server_address(call) {
            attributes.push(KeyValue::new(sc::SERVER_ADDRESS, host));
            if let Some(port) = port {
                attributes.push(KeyValue::new(sc::SERVER_PORT, i64::from(port)));
            }
        }
        let builder = SpanBuilder {
            name: format!("{} {}", sc::operation_name(call.op), call.upstream_model).into(),
            span_kind: Some(SpanKind::Client),
            attributes: Some(attributes),
            ..SpanBuilder::default()
        };
        let mut span = self
            .tracer
            .tracer
            .build_with_context(builder, &self.children);
        if span.is_recording() {
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_PROVIDER,
                call.provider.name.to_string(),
            ));
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_PROVIDER_KEY_ID,
                call.key().id.to_string(),
            ));
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_FALLBACK_INDEX,
                i64::try_from(fallback_index).unwrap_or(i64::MAX),
            ));
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_ATTEMPT,
                i64::from(self.attempts),
            ));
            if call.stream {
                span.set_attribute(KeyValue::new(sc::REQUEST_STREAM, true));
            }
        }
        if let Some(mut earlier) = self.attempt.replace(span) {
            earlier.end();
        }
    }

    /// The attempt in flight was given up (`status` 0: no answer), for another one; its span
    /// ends `at` (when it failed; now when `None`).
    pub(crate) fn attempt_failed(&mut self, status: u16, class: &str, at: Option<SystemTime>) {
        if let Some(mut span) = self.attempt.take() {
            set_outcome(&mut span, status, class, SpanKind::Client);
            match at {
                Some(at) => span.end_with_timestamp(at),
                None => span.end(),
            }
        }
    }

    /// The request ended with `record` (its usage record, complete): the answering attempt's
    /// span and the request's get the outcome and the tokens, and end.
    pub(crate) fn finish(&mut self, record: &UsageRecord) {
        self.finished = true;
        let status = u16::try_from(record.status).unwrap_or(u16::MAX);
        let class = record.error_class.as_str();
        let tokens = sc::TokenAttributes::from_anthropic(
            record.input_tokens,
            record.cache_read_input_tokens,
            record.cache_write_input_tokens,
            record.output_tokens,
        );
        let answered = status < 400 || tokens != sc::TokenAttributes::default();
        if let Some(mut span) = self.attempt.take() {
            set_outcome(&mut span, status, class, SpanKind::Client);
            if answered {
                span.set_attribute(KeyValue::new(
                    sc::RESPONSE_MODEL,
                    record.model_resolved.clone(),
                ));
                set_tokens(&mut span, &tokens);
            }
            span.end();
        }
        let span = &mut self.server;
        set_outcome(span, status, class, SpanKind::Server);
        if let Some(kind) = self.served_by {
            span.set_attribute(KeyValue::new(sc::PROVIDER_NAME, sc::provider_name(kind)));
        }
        if !record.provider.is_empty() {
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_PROVIDER,
                record.provider.clone(),
            ));
        }
        if !record.provider_key_id.is_empty() {
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_PROVIDER_KEY_ID,
                record.provider_key_id.clone(),
            ));
        }
        if self.attempts > 0 {
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_FALLBACK_INDEX,
                i64::from(record.fallback_index),
            ));
            span.set_attribute(KeyValue::new(
                sc::TOLLGATE_ATTEMPTS,
                i64::from(self.attempts),
            ));
        }
        if answered {
            if !record.model_resolved.is_empty() {
                span.set_attribute(KeyValue::new(
                    sc::RESPONSE_MODEL,
                    record.model_resolved.clone(),
                ));
            }
            set_tokens(span, &tokens);
        }
        if record.stream && record.time_to_first_token_ms > 0 {
            span.set_attribute(KeyValue::new(
                sc::RESPONSE_TIME_TO_FIRST_CHUNK,
                f64::from(record.time_to_first_token_ms) / 1000.0,
            ));
        }
        span.end();
    }
}

/// A request that ends without a record (the client left before the answer began) ends its
/// spans as `client_closed`.
impl Drop for RequestTrace {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(mut span) = self.attempt.take() {
            set_outcome(&mut span, 499, "client_closed", SpanKind::Client);
            span.end();
        }
        set_outcome(&mut self.server, 499, "client_closed", SpanKind::Server);
        self.server.end();
    }
}

/// `http.response.status_code` (when there was an answer), `error.type`, and the span status: an
/// error for a `CLIENT` span that failed, and for a `SERVER` span only on a 5xx (a 4xx is the
/// client's, per the HTTP conventions).
fn set_outcome(span: &mut Span, status: u16, class: &str, kind: SpanKind) {
    if status > 0 {
        span.set_attribute(KeyValue::new(
            sc::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
    }
    let Some(error) = sc::error_type(status, class) else {
        return;
    };
    let error: Cow<'static, str> = Cow::Owned(error.into_owned());
    span.set_attribute(KeyValue::new(sc::ERROR_TYPE, error.clone()));
    let failed = match kind {
        SpanKind::Server => status >= 500,
        _ => true,
    };
    if failed {
        span.set_status(Status::error(error));
    }
}

fn set_tokens(span: &mut Span, t: &sc::TokenAttributes) {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    span.set_attribute(KeyValue::new(sc::USAGE_INPUT_TOKENS, int(t.input)));
    span.set_attribute(KeyValue::new(sc::USAGE_OUTPUT_TOKENS, int(t.output)));
    span.set_attribute(KeyValue::new(
        sc::USAGE_CACHE_READ_INPUT_TOKENS,
        int(t.cache_read),
    ));
    span.set_attribute(KeyValue::new(
        sc::USAGE_CACHE_CREATION_INPUT_TOKENS,
        int(t.cache_creation),
    ));
}

/// The upstream's host and port: the provider's base URL, else the platform's endpoint for the
/// key's region.
fn server_address(call: &Call<'_>) -> Option<(String, Option<u16>)> {
    let owned = |(host, port): (&str, Option<u16>)| (host.to_owned(), port);
    if let Some(base) = call.provider.base_url.as_deref() {
        return sc::server_of(base).map(owned);
    }
    match &call.key().credential {
        KeyCredential::AnthropicApiKey(_) => Some(("api.anthropic.com".to_owned(), None)),
        KeyCredential::OpenAiApiKey(_) => Some(("api.openai.com".to_owned(), None)),
        KeyCredential::Bedrock(auth) => auth
            .region()
            .ok()
            .map(|region| (format!("bedrock-runtime.{region}.amazonaws.com"), None)),
        KeyCredential::Vertex(auth) => {
            let region = auth.region.resolve().ok()?;
            let base = tollgate_protocol::vertex::base_url(&region);
            sc::server_of(&base).map(owned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        assert!(
            OtlpSettings::resolve(None, None, vars(&[]))
                .expect("valid")
                .is_none()
        );
        assert!(
            OtlpSettings::resolve(
                Some("  "),
                Some("grpc"),
                vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])
            )
            .expect("valid")
            .is_none()
        );
    }

    #[test]
    fn endpoints_and_protocols_come_from_flags_then_variables() {
        let on = |flag, protocol, env| {
            OtlpSettings::resolve(flag, protocol, vars(env))
                .expect("valid")
                .expect("on")
        };
        assert_eq!(
            on(Some("http://collector:4317"), Some("grpc"), &[]),
            OtlpSettings {
                endpoint: Some("http://collector:4317".into()),
                protocol: OtlpProtocol::Grpc
            }
        );
        // The variables alone turn export on; the exporter reads the endpoint from them.
        assert_eq!(
            on(
                None,
                None,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]
            ),
            OtlpSettings {
                endpoint: None,
                protocol: OtlpProtocol::HttpProtobuf
            }
        );
        assert_eq!(
            on(
                None,
                None,
                &[
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ]
            )
            .protocol,
            OtlpProtocol::Grpc
        );
        let err = OtlpSettings::resolve(
            None,
            None,
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ]),
        )
        .expect_err("unsupported protocol");
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
    }

    #[test]
    fn the_sdk_switches_turn_export_off() {
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let env: &'static [(&str, &str)] = Box::leak(Box::new([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                off,
            ]));
            assert!(
                OtlpSettings::resolve(Some("http://c:4317"), None, vars(env))
                    .expect("valid")
                    .is_none(),
                "{off:?}"
            );
        }
    }

    #[test]
    fn the_startup_log_names_no_path_or_credentials() {
        let s = OtlpSettings {
            endpoint: Some("https://user:secret@otel.example.com:4318/some/path".into()),
            protocol: OtlpProtocol::HttpProtobuf,
        };
        assert_eq!(s.describe(), "https://otel.example.com:4318");
    }
}
