//! OpenAI's formats and Anthropic Messages, the gateway's hub format. One module per
//! format pair and direction:
//!
//! | module | client speaks | upstream speaks |
//! |---|---|---|
//! | [`chat_ingress`] | OpenAI Chat Completions | Anthropic Messages (Bedrock InvokeModel, Anthropic, Vertex) |
//! | [`chat_egress`] | Anthropic Messages (Claude Code) | OpenAI Chat Completions (OpenAI, vLLM, Ollama, …) |
//! | [`responses_ingress`] | OpenAI Responses | Anthropic Messages |

pub mod chat_egress;
pub mod chat_ingress;
pub mod responses_ingress;
