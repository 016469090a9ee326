//! The data plane in process, served on a loopback port: a `DataPlane` given a `pb::Snapshot`
//! directly (no control plane, no binary), for providers the admin API does not configure yet.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tollgate_data_plane::usage::UsageSink;
use tollgate_data_plane::{DataPlane, DataPlaneConfig};
use tollgate_proto::config::v1 as pb;
use tollgate_proto::usage::v1::UsageRecord;
use tollgate_protocol::sse::SseParser;
use tollgate_tests::openai_double::{OpenAiDouble, OpenAiDoubleConfig};

/// The virtual key every test uses.
pub const VK: &str = "sk-tg-openai-upstream-tests";

/// A literal value.
pub fn lit(s: &str) -> Option<pb::ValueRef> {
    Some(pb::ValueRef {
        source: Some(pb::value_ref::Source::Literal(s.into())),
    })
}

/// A provider of `kind` at `base_url` with one key serving every model (`value`: its secret).
pub fn provider(
    name: &str,
    kind: pb::ProviderKind,
    base_url: &str,
    value: Option<&str>,
) -> pb::Provider {
    pb::Provider {
        name: name.into(),
        kind: kind as i32,
        network: Some(pb::NetworkConfig {
            base_url: base_url.into(),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 30_000,
            ..Default::default()
        }),
        keys: vec![pb::ProviderKey {
            id: format!("pk-{name}"),
            name: format!("{name}-key"),
            models: vec!["*".into()],
            weight: 1.0,
            value: value.and_then(lit),
            enabled: true,
            ..Default::default()
        }],
    }
}

/// An OpenAI double that accepts the bearer key `key`.
pub fn openai_double(key: &str) -> OpenAiDouble {
    OpenAiDouble::start(OpenAiDoubleConfig::new().with_api_key(key)).expect("openai double")
}

/// A provider `name` of kind `openai` at `double`'s API root (`value`: its key's secret).
pub fn openai_provider(name: &str, double: &OpenAiDouble, value: Option<&str>) -> pb::Provider {
    provider(name, pb::ProviderKind::Openai, &double.api_url(), value)
}

/// An OpenAI double accepting `key`, and a gateway whose `openai` provider is that double
/// (with `key`).
pub async fn openai_gateway(key: &str) -> (OpenAiDouble, Gateway) {
    let double = openai_double(key);
    let gw = Gateway::start(&snapshot(
        vec![openai_provider("openai", &double, Some(key))],
        &[],
    ))
    .await;
    (double, gw)
}

/// A snapshot with `providers` and the virtual key [`VK`] (falling back to `fallbacks`).
pub fn snapshot(providers: Vec<pb::Provider>, fallbacks: &[&str]) -> pb::Snapshot {
    pb::Snapshot {
        version: 1,
        providers,
        virtual_keys: vec![pb::VirtualKey {
            id: "vk-openai-tests".into(),
            name: "openai-tests".into(),
            key_sha256: Sha256::digest(VK).to_vec().into(),
            active: true,
            fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
            ..Default::default()
        }],
        created_at_unix_ms: 1,
        ..Default::default()
    }
}

/// A data plane serving `snapshot` on `127.0.0.1`, and its usage records.
pub struct Gateway {
    pub base_url: String,
    pub dp: Arc<DataPlane>,
    usage: mpsc::Receiver<UsageRecord>,
    server: tokio::task::JoinHandle<()>,
    pub http: reqwest::Client,
}

impl Gateway {
    pub async fn start(snapshot: &pb::Snapshot) -> Gateway {
        let (sink, usage) = UsageSink::channel(256);
        let dp = DataPlane::new(DataPlaneConfig::default(), sink);
        // `DataPlane::apply`: the runtime, and the MCP gateway's servers.
        dp.apply(snapshot).expect("the snapshot applies");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = tollgate_data_plane::server::router(Arc::clone(&dp));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Gateway {
            base_url: format!("http://{addr}"),
            dp,
            usage,
            server,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /anthropic/v1/messages` (or another path) with the virtual key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base_url))
            .header("x-api-key", VK)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// The next usage record (within 5 s).
    pub async fn usage(&mut self) -> UsageRecord {
        tokio::time::timeout(Duration::from_secs(5), self.usage.recv())
            .await
            .expect("a usage record in time")
            .expect("the usage channel is open")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One SSE event: its name and its data parsed as JSON.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// Parses a whole Anthropic SSE body.
pub fn events(body: &[u8]) -> Vec<Event> {
    let mut parser = SseParser::new();
    parser.push(body);
    let mut out = Vec::new();
    while let Some(e) = parser.next_event() {
        out.push(Event {
            name: e.event.clone().unwrap_or_default(),
            data: serde_json::from_str(&e.data).unwrap_or(Value::Null),
        });
    }
    out
}

/// The content blocks an Anthropic SSE stream builds, as a Message's `content` would hold them
/// (`input` of tool calls assembled from their `input_json_delta`s), checking that every event
/// is well-formed and in order on the way.
pub fn assemble(events: &[Event]) -> (Vec<Value>, Value) {
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut message_delta = Value::Null;
    let mut open: Option<usize> = None;
    for e in events {
        assert_eq!(
            e.data["type"].as_str(),
            Some(e.name.as_str()),
            "the data's type is the event's name: {e:?}"
        );
        match e.name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "blocks do not interleave: {events:?}");
                let index = e.data["index"].as_u64().expect("index") as usize;
                assert_eq!(index, blocks.len(), "indexes count up: {events:?}");
                blocks.push(e.data["content_block"].clone());
                partial.push(String::new());
                open = Some(index);
            }
            "content_block_delta" => {
                let index = e.data["index"].as_u64().expect("index") as usize;
                assert_eq!(Some(index), open, "a delta of the open block");
                let delta = &e.data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let text = format!(
                            "{}{}",
                            blocks[index]["text"].as_str().unwrap_or_default(),
                            delta["text"].as_str().expect("text")
                        );
                        blocks[index]["text"] = Value::String(text);
                    }
                    Some("input_json_delta") => {
                        partial[index].push_str(delta["partial_json"].as_str().expect("json"));
                    }
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            "content_block_stop" => {
                let index = e.data["index"].as_u64().expect("index") as usize;
                assert_eq!(Some(index), open);
                if blocks[index]["type"] == "tool_use" {
                    let input = if partial[index].is_empty() {
                        Value::Object(Default::default())
                    } else {
                        serde_json::from_str(&partial[index]).expect("tool input is JSON")
                    };
                    blocks[index]["input"] = input;
                }
                open = None;
            }
            "message_delta" => message_delta = e.data.clone(),
            _ => {}
        }
    }
    (blocks, message_delta)
}
