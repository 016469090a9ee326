//! Claude Code (2.1.331, `claude -p`) through the data plane in process to an OpenAI-compatible
//! upstream (the strict OpenAI double): `ANTHROPIC_MODEL=openai/gpt-4.1`, a tool-use turn (the
//! double asks for `Read`, then in a second session for `Bash`; Claude Code runs the tool and
//! sends the result, the double answers text), every Chat Completions request Claude Code's
//! traffic became accepted by the double.
//!
//! Like `e2e_clients.rs`, it needs the real client: `scripts/test.sh` installs it and sets
//! `TOLLGATE_TEST_CLAUDE`; without it the test fails, saying so.

mod common;
mod in_process;

use std::process::Output;

use common::{required_env, run_claude};
use in_process::{VK, openai_gateway};
use serde_json::{Value, json};
use tollgate_tests::openai_double::{DEFAULT_REPLY, OpenAiDouble};

const UPSTREAM_KEY: &str = "sk-proj-openai-claude-code-0001";
const NOTE: &str = "tollgate-note-5c1e: read through an OpenAI upstream";

#[tokio::test]
async fn claude_code_completes_tool_turns_through_an_openai_upstream() {
    let claude = required_env("TOLLGATE_TEST_CLAUDE");
    let (double, gw) = openai_gateway(UPSTREAM_KEY).await;
    let work = tempfile::tempdir().expect("work dir");
    let note = work.path().join("note.txt");
    std::fs::write(&note, NOTE).expect("note");
    let env = || {
        [
            ("ANTHROPIC_BASE_URL", format!("{}/anthropic", gw.base_url)),
            ("ANTHROPIC_AUTH_TOKEN", VK.to_owned()),
            ("ANTHROPIC_MODEL", "openai/gpt-4.1".to_owned()),
            (
                "ANTHROPIC_DEFAULT_HAIKU_MODEL",
                "openai/gpt-4.1-mini".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let read = format!("[double:read:{}] Read the note.", note.display());
    let cases: [(&str, &str, &[&str], Value); 2] = [
        (
            "Read",
            &read,
            &[],
            json!({"file_path": note.display().to_string()}),
        ),
        (
            "Bash",
            "[double:bash:cat note.txt] Show the note.",
            &["--allowedTools", "Bash(cat note.txt)"],
            json!({"command": "cat note.txt", "description": "Run the command the user asked for"}),
        ),
    ];
    for (tool, prompt, args, input) in cases {
        double.clear_requests();
        let out = run_claude(&claude, work.path(), env(), prompt, args).await;
        check_tool_turn(&double, &out, tool, &input);
    }
}

/// Checks one session: Claude Code succeeded and printed the double's final text; the double
/// accepted every request; the scripted call went out as a stream; the next request carried
/// the assistant turn with the call and a `tool` message answering it with the note.
fn check_tool_turn(double: &OpenAiDouble, out: &Output, tool: &str, input: &Value) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let requests = double.completions();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| {
            let body = r.json().unwrap_or_default();
            let roles: Vec<&str> = body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["role"].as_str())
                .collect();
            format!(
                "#{} {} {:?} {:?} {roles:?}",
                r.seq, r.verdict.status, r.verdict.scenario, r.verdict.message
            )
        })
        .collect();
    assert!(
        out.status.success(),
        "{tool}: claude -p failed ({}):\nstdout: {stdout}\nstderr: {}\nupstream: {summary:#?}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains(DEFAULT_REPLY),
        "{tool}: stdout: {stdout}\nupstream: {summary:#?}"
    );
    // Everything Claude Code sent became a Chat Completions body the strict double accepted.
    assert!(
        requests.iter().all(|r| r.verdict.status == 200),
        "{tool}: {summary:#?}"
    );
    let first = requests
        .iter()
        .find(|r| r.verdict.scenario.as_deref() == Some("tool"))
        .unwrap_or_else(|| panic!("{tool}: the scripted tool call: {summary:#?}"));
    assert!(first.stream, "Claude Code streams");
    let body = first.json().expect("json");
    assert_eq!(body["model"], "gpt-4.1");
    assert!(
        body["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == tool)),
        "{tool}: Claude Code's tools arrive as functions"
    );
    // The call's id, from the double's answer.
    let call_id = String::from_utf8_lossy(&first.response_body)
        .split("\"id\":\"call_")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|tail| format!("call_{tail}"))
        .expect("the double's tool call id");
    let second = requests
        .iter()
        .find(|r| {
            r.json().is_some_and(|b| {
                b["messages"].as_array().is_some_and(|m| {
                    m.iter()
                        .any(|m| m["role"] == "tool" && m["content"].to_string().contains(NOTE))
                })
            })
        })
        .unwrap_or_else(|| {
            panic!("{tool}: no request carried the tool result: {summary:#?}\n{stdout}")
        });
    let body = second.json().expect("json");
    let messages = body["messages"].as_array().expect("messages");
    let result = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool message");
    assert_eq!(result["tool_call_id"], call_id.as_str());
    let assistant = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("the assistant turn that called");
    let call = &assistant["tool_calls"][0];
    assert_eq!(call["id"], call_id.as_str());
    assert_eq!(call["function"]["name"], tool);
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("arguments"))
            .expect("JSON arguments");
    assert_eq!(&arguments, input, "{tool}");
}
