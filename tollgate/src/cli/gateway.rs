//! The CLI's HTTP calls to a gateway (I/O): the model list, `GET /v1/key`, the MCP servers'
//! state, the MCP endpoint (`initialize` then `tools/list`), and a plain probe for doctor's
//! reachability and clock checks. The key goes in `Authorization: Bearer`; no redirect is
//! followed (a gateway must answer itself, as Claude Code requires).

use std::time::Duration;

use serde_json::{Value, json};

use super::render::{self, McpServerState};

/// What went wrong talking to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the gateway refused the key ({status}): {message}")]
    KeyRefused { status: u16, message: String },
    #[error("{path} is not served by this gateway (404)")]
    NotServed { path: &'static str },
    #[error("the gateway answered {status} to {path}: {message}")]
    Status {
        path: &'static str,
        status: u16,
        message: String,
    },
    #[error("the gateway's answer to {path} is not what tollgate expects: {why}")]
    BadAnswer { path: &'static str, why: String },
}

pub struct Gateway {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// A plain response's status and `Date` header (unix seconds).
pub struct Probe {
    pub status: u16,
    pub date_unix: Option<i64>,
}

impl Gateway {
    pub fn new(base: &str, key: &str) -> Result<Gateway, GatewayError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| GatewayError::Unreachable {
                url: base.to_owned(),
                why: explain(&e),
            })?;
        Ok(Gateway {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    async fn get(
        &self,
        path: &'static str,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), GatewayError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.key)
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .map_err(|e| GatewayError::Unreachable {
                url: url.clone(),
                why: explain(&e),
            })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| GatewayError::Unreachable {
            url,
            why: explain(&e),
        })?;
        Ok((status, headers, body.to_vec()))
    }

    /// GET `path` expecting 200 JSON; 401/403 is [`GatewayError::KeyRefused`], 404
    /// [`GatewayError::NotServed`].
    async fn get_ok(&self, path: &'static str) -> Result<Vec<u8>, GatewayError> {
        let (status, _, body) = self.get(path).await?;
        match status {
            200 => Ok(body),
            401 | 403 => Err(GatewayError::KeyRefused {
                status,
                message: describe(&body),
            }),
            404 => Err(GatewayError::NotServed { path }),
            _ => Err(GatewayError::Status {
                path,
                status,
                message: describe(&body),
            }),
        }
    }

    /// `GET /health` (no key needed): status and `Date`.
    pub async fn probe(&self) -> Result<Probe, GatewayError> {
        let (status, headers, _) = self.get("/health").await?;
        let date_unix = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        Ok(Probe { status, date_unix })
    }

    /// The ids the key may use (`GET /v1/models?limit=1000`).
    pub async fn models(&self) -> Result<Vec<String>, GatewayError> {
        const PATH: &str = "/v1/models?limit=1000";
        let body = self.get_ok(PATH).await?;
        render::model_ids(&body).map_err(|e| GatewayError::BadAnswer {
            path: PATH,
            why: render::safe(&e.to_string()),
        })
    }

    /// `GET /v1/key`.
    pub async fn key_info(&self) -> Result<Value, GatewayError> {
        const PATH: &str = "/v1/key";
        let body = self.get_ok(PATH).await?;
        serde_json::from_slice(&body).map_err(|e| GatewayError::BadAnswer {
            path: PATH,
            why: render::safe(&e.to_string()),
        })
    }

    /// `GET /v1/mcp/servers`.
    pub async fn mcp_servers(&self) -> Result<Vec<McpServerState>, GatewayError> {
        const PATH: &str = "/v1/mcp/servers";
        let body = self.get_ok(PATH).await?;
        render::mcp_servers(&body).map_err(|e| GatewayError::BadAnswer {
            path: PATH,
            why: render::safe(&e.to_string()),
        })
    }

    /// `POST /mcp`: `initialize`, `notifications/initialized`, then `tools/list`; the tool
    /// names.
    pub async fn mcp_tools(&self) -> Result<Vec<String>, GatewayError> {
        const PATH: &str = "/mcp";
        let init = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "tollgate-doctor", "version": env!("CARGO_PKG_VERSION")}
            }
        });
        let (result, session) = self.mcp_call(PATH, &init, None).await?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("2025-06-18")
            .to_owned();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let _ = self
            .mcp_post(&note, session.as_deref(), Some(&version))
            .await;
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
        let (result, _) = self
            .mcp_call(
                PATH,
                &list,
                session.as_deref().map(|s| (s, version.as_str())),
            )
            .await?;
        let tools = result
            .get("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| GatewayError::BadAnswer {
                path: PATH,
                why: "tools/list has no `tools`".into(),
            })?;
        Ok(tools
            .iter()
            // Shown only (status, doctor): terminal-safe.
            .filter_map(|t| t.get("name").and_then(Value::as_str).map(render::safe))
            .collect())
    }

    async fn mcp_post(
        &self,
        body: &Value,
        session: Option<&str>,
        version: Option<&str>,
    ) -> Result<reqwest::Response, GatewayError> {
        let url = format!("{}/mcp", self.base);
        let mut req = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        req.send().await.map_err(|e| GatewayError::Unreachable {
            url,
            why: explain(&e),
        })
    }

    /// One JSON-RPC request; its `result` and the session id the server gave, if any.
    async fn mcp_call(
        &self,
        path: &'static str,
        body: &Value,
        session: Option<(&str, &str)>,
    ) -> Result<(Value, Option<String>), GatewayError> {
        let resp = self
            .mcp_post(body, session.map(|s| s.0), session.map(|s| s.1))
            .await?;
        let status = resp.status().as_u16();
        let session_id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| session.map(|s| s.0.to_owned()));
        let sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let bytes = resp.bytes().await.map_err(|e| GatewayError::Unreachable {
            url: format!("{}{path}", self.base),
            why: explain(&e),
        })?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(GatewayError::KeyRefused {
                    status,
                    message: describe(&bytes),
                });
            }
            404 => return Err(GatewayError::NotServed { path }),
            _ => {
                return Err(GatewayError::Status {
                    path,
                    status,
                    message: describe(&bytes),
                });
            }
        }
        let message = if sse {
            sse_json(&bytes)
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        let message = message.ok_or_else(|| GatewayError::BadAnswer {
            path,
            why: "no JSON-RPC message in the answer".into(),
        })?;
        if let Some(err) = message.get("error") {
            return Err(GatewayError::BadAnswer {
                path,
                why: render::safe(&format!("JSON-RPC error: {err}")),
            });
        }
        let result = message
            .get("result")
            .cloned()
            .ok_or_else(|| GatewayError::BadAnswer {
                path,
                why: "the JSON-RPC answer has no result".into(),
            })?;
        Ok((result, session_id))
    }
}

/// The first JSON `data:` of an SSE body carrying a JSON-RPC response.
fn sse_json(body: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
}

/// A transport error in words, TLS problems spelled out.
pub fn explain(e: &reqwest::Error) -> String {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    explain_text(chain, e.is_timeout(), e.is_connect())
}

/// [`explain`] on the error's text (pure).
fn explain_text(chain: String, timeout: bool, connect: bool) -> String {
    let lower = chain.to_lowercase();
    if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        format!(
            "TLS error ({chain}): the URL says https:// but the gateway answers plain HTTP \
             there; use http://, or the gateway's TLS address"
        )
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        format!(
            "TLS error ({chain}): the gateway's certificate is not trusted here (a private CA \
             missing from the system's trust store), has expired, or does not name this host"
        )
    } else if timeout {
        format!("timed out ({chain})")
    } else if connect {
        format!("connection failed ({chain}); is the gateway running at that address?")
    } else {
        chain
    }
}

/// The message of an error answer (Anthropic's `error.message`, or the body's start), made
/// terminal-safe ([`render::terminal_safe`]): it is printed.
fn describe(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let text = v
        .get("error")
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    render::safe(&text)
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_sse_bodies_are_read() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        let body =
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n";
        assert_eq!(sse_json(body).unwrap()["result"], json!({"tools": []}));
        assert_eq!(
            describe(br#"{"type":"error","error":{"type":"x","message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(describe(b"plain"), "plain");
        assert_eq!(
            describe(br#"{"error":{"message":"no\u001b]0;owned\u0007 way"}}"#),
            "no\\u{1b}]0;owned\\u{7} way"
        );
        assert_eq!(describe(b"raw \x1b[2J body"), "raw \\u{1b}[2J body");
    }

    #[test]
    fn transport_errors_are_explained() {
        let plain = explain_text(
            "client error (Connect): received corrupt message of type InvalidContentType".into(),
            false,
            true,
        );
        assert!(
            plain.starts_with("TLS error") && plain.contains("use http://"),
            "{plain}"
        );
        let cert = explain_text(
            "client error (Connect): invalid peer certificate: UnknownIssuer".into(),
            false,
            true,
        );
        assert!(cert.contains("not trusted here"), "{cert}");
        let refused = explain_text("Connection refused (os error 111)".into(), false, true);
        assert!(refused.contains("is the gateway running"), "{refused}");
        assert!(explain_text("x".into(), true, false).starts_with("timed out"));
    }
}
