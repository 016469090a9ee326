//! End to end with OpenAI-format clients: the official OpenAI Python SDK (Chat Completions and
//! Responses, streams, tools, errors, the model list) and Codex CLI itself, each talking to the
//! real `tollgate` binary configured by the README walkthrough, with the strict Bedrock double
//! (SigV4 verified on every request) behind it: an OpenAI-format client reaches Claude on
//! Bedrock, which still gets its native InvokeModel body.
//!
//! `scripts/test.sh` installs the clients and sets `TOLLGATE_TEST_PYTHON` (a venv with `openai`)
//! and `TOLLGATE_TEST_CODEX` (Codex CLI 0.171.0 from npm).

mod common;

use std::process::Command;

use common::{output, required_env, setup};
use serde_json::Value;
use tollgate_tests::BedrockDouble;
use tollgate_tests::bedrock_double::script::{DEFAULT_REPLY, EXEC_TOOL_NAME};

/// The bodies of the requests the Bedrock double accepted, oldest first.
fn accepted_bodies(double: &BedrockDouble) -> Vec<Value> {
    double
        .requests()
        .iter()
        .filter(|r| r.verdict.status == 200)
        .filter_map(|r| r.body.clone())
        .collect()
}

#[tokio::test]
async fn openai_python_sdk_works_through_tollgate() {
    let python = required_env("TOLLGATE_TEST_PYTHON");
    let s = setup().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/openai_sdk_check.py");
    let base = s.gw.url("/openai/v1");
    let vk = s.vk.clone();
    let mut python = Command::new(python);
    python.args([script, &base, &vk, "claude-sonnet-4-6"]);
    let out = output(python, "run python").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.gw.output()
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("script prints JSON");

    assert_eq!(v["chat"]["text"], DEFAULT_REPLY, "{v}");
    assert_eq!(v["chat"]["model"], "claude-sonnet-4-6");
    assert_eq!(v["chat"]["finish_reason"], "stop");
    assert!(v["chat"]["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["chat"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(v["chat"]["completion_tokens"].as_u64().unwrap() > 0);

    assert!(
        v["stream"]["chunks"].as_u64().unwrap() >= 2,
        "in pieces: {v}"
    );
    assert_eq!(v["stream"]["text"], DEFAULT_REPLY);
    assert_eq!(v["stream"]["finish_reason"], "stop");
    assert!(v["stream"]["completion_tokens"].as_u64().unwrap() > 0);

    assert_eq!(v["tool"]["finish_reason"], "tool_calls");
    assert_eq!(v["tool"]["name"], "Read");
    assert_eq!(v["tool"]["arguments"]["file_path"], "/tmp/x");
    assert_eq!(v["tool"]["answer"], DEFAULT_REPLY);
    assert_eq!(v["tool"]["answer_finish"], "stop");

    assert_eq!(v["bad_key"]["class"], "AuthenticationError");
    assert_eq!(v["bad_key"]["status"], 401);
    assert_eq!(v["throttle"]["class"], "RateLimitError");
    assert_eq!(v["throttle"]["code"], "rate_limit_exceeded");
    assert_eq!(v["bad_request"]["class"], "BadRequestError");
    assert_eq!(v["bad_request"]["param"], "temperature");
    assert_eq!(v["unknown_model"]["status"], 404);

    assert_eq!(v["responses"]["status"], "completed");
    assert_eq!(v["responses"]["text"], DEFAULT_REPLY);
    assert!(v["responses"]["id"].as_str().unwrap().starts_with("resp_"));
    assert!(v["responses_stream"]["deltas"].as_u64().unwrap() >= 2);
    assert_eq!(v["responses_stream"]["text"], DEFAULT_REPLY);
    assert_eq!(v["responses_tool"]["name"], "Read");
    assert_eq!(v["responses_tool"]["answer"], DEFAULT_REPLY);
    assert!(
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "claude-sonnet-4-6"),
        "{v}"
    );

    // The tool result reached Bedrock as a tool_result answering the call (the double checks
    // the pairing and would have refused the request otherwise).
    let bodies = accepted_bodies(&s.double);
    let results = bodies
        .iter()
        .filter(|b| b.to_string().contains("file contents: 42"))
        .count();
    assert_eq!(results, 2, "the chat and the Responses tool results");
    let invokes: Vec<&Value> = bodies
        .iter()
        .filter(|b| b.get("messages").is_some())
        .collect();
    assert_eq!(
        invokes.len(),
        8,
        "four chat and four Responses calls: {invokes:?}"
    );
    assert!(
        invokes
            .iter()
            .all(|b| b["anthropic_version"] == "bedrock-2023-05-31" && b.get("model").is_none()),
        "native InvokeModel bodies: {invokes:?}"
    );
}

#[tokio::test]
async fn codex_cli_runs_a_tool_using_session_through_tollgate() {
    let codex = required_env("TOLLGATE_TEST_CODEX");
    let s = setup().await;
    let work = tempfile::tempdir().expect("workdir");
    let marker = "tollgate-codex-marker-5f3a";
    std::fs::write(work.path().join("marker.txt"), marker).expect("marker");
    let home = tempfile::tempdir().expect("home");
    let codex_home = home.path().join(".codex");
    std::fs::create_dir_all(&codex_home).expect("codex home");
    // The README's Codex configuration as pasted, pointed at this gateway.
    let readme = common::readme();
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("[model_providers.tollgate]"))
        .expect("the README's Codex configuration");
    assert!(block.contains("http://127.0.0.1:8080/openai/v1"), "{block}");
    let config = block.replace("http://127.0.0.1:8080/openai/v1", &s.gw.url("/openai/v1"));
    std::fs::write(codex_home.join("config.toml"), config).expect("config");
    let prompt = "Show me the marker. [double:exec:cat marker.txt]";
    let mut codex = Command::new(codex);
    codex
        .args([
            "exec",
            "--skip-git-repo-check",
            "--sandbox",
            "danger-full-access",
            prompt,
        ])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .env("TERM", "dumb")
        .env("TOLLGATE_API_KEY", &s.vk)
        .stdin(std::process::Stdio::null());
    let out = output(codex, "run codex").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "codex failed:\n{stdout}\n{stderr}\n{}",
        s.gw.output()
    );
    assert!(stdout.contains(DEFAULT_REPLY), "{stdout}\n{stderr}");

    // Bedrock saw the tool call go out and the command's output come back as its result.
    let bodies = accepted_bodies(&s.double);
    let tool_turn = bodies
        .iter()
        .find(|b| b.to_string().contains(marker))
        .unwrap_or_else(|| panic!("no request carried the command's output: {bodies:#?}"));
    let messages = tool_turn["messages"].as_array().expect("messages");
    let call = messages
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .find(|b| b["type"] == "tool_use")
        .expect("the tool call in the history");
    assert_eq!(call["name"], EXEC_TOOL_NAME);
    assert_eq!(call["input"]["cmd"], "cat marker.txt");
    let result = messages
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .find(|b| b["type"] == "tool_result")
        .expect("the tool result");
    assert_eq!(result["tool_use_id"], call["id"]);
    assert!(result.to_string().contains(marker), "{result}");
}

/// Through the real binary and its admin API: a custom provider of base type `openai` (a local
/// server, its key without a value) serves an Anthropic-format client and an OpenAI-format one.
/// The OpenAI client's request goes through the hub format both ways (Chat Completions →
/// Anthropic Messages → Chat Completions) and still reaches the server as a valid request; an
/// OpenAI client also reaches a Bedrock model that is not Claude (through Converse).
#[tokio::test]
async fn a_local_openai_compatible_server_configured_through_the_admin_api() {
    use tollgate_tests::openai_double::{OpenAiDouble, OpenAiDoubleConfig};
    let s = setup().await;
    let local = OpenAiDouble::start(OpenAiDoubleConfig::new()).expect("openai double");
    for (path, body) in [
        (
            "/api/providers",
            serde_json::json!({"provider": "local", "custom_provider_config": {"base_provider_type": "openai"},
                               "network_config": {"base_url": local.api_url()}}),
        ),
        (
            "/api/providers/local/keys",
            serde_json::json!({"name": "no-key", "models": ["*"], "aliases": {"small": "gpt-4.1-mini"}}),
        ),
    ] {
        let (st, b) = common::admin(&s.http, &s.gw, "POST", path, body).await;
        assert_eq!(st, 201, "{path}: {b}");
    }
    let vk = s
        .virtual_key(serde_json::json!({"name": "local-models", "providers": ["bedrock", "local"]}))
        .await["value"]
        .as_str()
        .expect("value")
        .to_owned();

    // Anthropic format in, Chat Completions out and back.
    let resp = s
        .http
        .post(s.gw.url("/anthropic/v1/messages"))
        .bearer_auth(&vk)
        .json(&common::message("local/small", "hi", false))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200, "{}", s.gw.output());
    assert_eq!(resp.headers()["x-tollgate-model"], "gpt-4.1-mini");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], "local/small");
    assert_eq!(
        body["content"][0]["text"],
        tollgate_tests::openai_double::DEFAULT_REPLY
    );

    // OpenAI format in, through the hub format, Chat Completions out.
    let resp = s
        .http
        .post(s.gw.url("/openai/v1/chat/completions"))
        .bearer_auth(&vk)
        .json(&serde_json::json!({"model": "local/small", "stream": true,
                                  "stream_options": {"include_usage": true},
                                  "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("SSE");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, tollgate_tests::openai_double::DEFAULT_REPLY);

    // OpenAI format in, a Bedrock model that is not Claude out (Converse, signed).
    let resp = s
        .http
        .post(s.gw.url("/openai/v1/chat/completions"))
        .bearer_auth(&vk)
        .json(
            &serde_json::json!({"model": "bedrock/meta.llama3-3-70b-instruct-v1:0",
                                  "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200, "{}", s.gw.output());
    let chat: Value = resp.json().await.expect("JSON");
    assert_eq!(chat["choices"][0]["message"]["content"], DEFAULT_REPLY);
    let converse = s.double.requests().pop().expect("a Bedrock call");
    assert_eq!(
        converse.operation.as_deref(),
        Some("Converse"),
        "{converse:?}"
    );
    assert_eq!(converse.verdict.status, 200);

    let calls = local.completions();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert!(
            call.header("authorization").is_none(),
            "a key without a value"
        );
        let body = call.json().expect("JSON");
        assert_eq!(body["model"], "gpt-4.1-mini");
        assert!(
            body.get("max_tokens").is_some(),
            "a local server gets max_tokens"
        );
    }
    let streamed = calls[1].json().expect("JSON");
    assert_eq!(streamed["messages"][0]["role"], "system");
    assert_eq!(streamed["stream_options"]["include_usage"], true);
}
