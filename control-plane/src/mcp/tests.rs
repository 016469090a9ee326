use super::*;

fn secrets() -> SecretBox {
    SecretBox::new(&[7u8; 32])
}

fn input(json: serde_json::Value) -> McpServerInput {
    serde_json::from_value(json).expect("input")
}

fn check(input: &McpServerInput, id: Uuid, path: Option<&str>) -> Result<ServerChange, CheckError> {
    let secrets = secrets();
    let seal_literal =
        |map: SecretMap, name: &str, value: &str| seal(&secrets, id, map, name, value);
    input.check(path, &EnvAllowlist::default(), &seal_literal)
}

fn field(e: CheckError) -> String {
    match e {
        CheckError::Invalid(v) => v.field.unwrap_or_default(),
        CheckError::Crypto(c) => panic!("{c}"),
    }
}

fn stdio_server(id: Uuid) -> McpServerRecord {
    let change = check(
        &input(serde_json::json!({
            "name": "github", "transport": "stdio", "command": "npx",
            "args": ["-y", "server-github"],
            "env": {"GITHUB_TOKEN": "ghp_secret", "HOME_DIR": "env.AWS_HOME"},
            "allowed_tools": ["search_*"], "call_timeout_ms": 5000
        })),
        id,
        None,
    )
    .unwrap();
    change
        .create(id, "github".into(), crate::model::now())
        .unwrap()
}

#[test]
fn a_stdio_server_is_created_with_its_literals_sealed_to_it() {
    let id = Uuid::new_v4();
    let s = stdio_server(id);
    assert!(s.enabled);
    assert_eq!(s.call_timeout_ms, 5000);
    let TransportRecord::Stdio {
        command,
        args,
        env,
        cwd,
    } = &s.transport
    else {
        panic!("{:?}", s.transport);
    };
    assert_eq!(command, "npx");
    assert_eq!(args, &["-y", "server-github"]);
    assert_eq!(cwd, &None);
    assert_eq!(env["HOME_DIR"], SealedSecret::Env("AWS_HOME".into()));
    let sealed = &env["GITHUB_TOKEN"];
    assert!(matches!(sealed, SealedSecret::Encrypted(c) if !c.contains("ghp_secret")));
    assert_eq!(
        open(&secrets(), id, SecretMap::Env, "GITHUB_TOKEN", sealed).unwrap(),
        ValueSource::Literal("ghp_secret".into())
    );
    // Bound to the server, the map and the name.
    assert!(
        open(
            &secrets(),
            Uuid::new_v4(),
            SecretMap::Env,
            "GITHUB_TOKEN",
            sealed
        )
        .is_err()
    );
    assert!(open(&secrets(), id, SecretMap::Headers, "GITHUB_TOKEN", sealed).is_err());
    assert!(open(&secrets(), id, SecretMap::Env, "OTHER", sealed).is_err());
    // Shown redacted.
    let view = serde_json::to_value(McpServerView::of(&s)).unwrap();
    assert_eq!(view["env"]["GITHUB_TOKEN"], "<redacted>");
    assert_eq!(view["env"]["HOME_DIR"], "env.AWS_HOME");
    assert!(!view.to_string().contains("ghp_secret"));
    assert!(view.get("url").is_none() && view.get("headers").is_none());
}

#[test]
fn invalid_inputs_name_their_field() {
    let id = Uuid::new_v4();
    let cases = [
        (
            serde_json::json!({"transport": "stdio", "command": "x"}),
            "name",
        ),
        (
            serde_json::json!({"name": "Git_Hub", "transport": "stdio", "command": "x"}),
            "name",
        ),
        (
            serde_json::json!({"name": "a", "command": "x"}),
            "transport",
        ),
        (
            serde_json::json!({"name": "a", "transport": "stdio"}),
            "command",
        ),
        (serde_json::json!({"name": "a", "transport": "http"}), "url"),
        (
            serde_json::json!({"name": "a", "transport": "http", "url": "ftp://x"}),
            "url",
        ),
        (
            serde_json::json!({"name": "a", "transport": "http", "url": "https://u:p@x/mcp"}),
            "url",
        ),
        (
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x", "url": "https://x"}),
            "url",
        ),
        (
            serde_json::json!({"name": "a", "transport": "http", "url": "https://x", "command": "x"}),
            "command",
        ),
        (
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x", "env": {"1BAD": "v"}}),
            "env.1BAD",
        ),
        (
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x", "env": {"T": "env.bad-name"}}),
            "env.T",
        ),
        (
            // Outside the env allowlist.
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x", "env": {"T": "env.TOLLGATE_SECRET"}}),
            "env.T",
        ),
        (
            // "<redacted>" only keeps a stored value in an update.
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x", "env": {"T": "<redacted>"}}),
            "env.T",
        ),
        (
            serde_json::json!({"name": "a", "transport": "http", "url": "https://x", "headers": {"Host": "x"}}),
            "headers.Host",
        ),
        (
            serde_json::json!({"name": "a", "transport": "http", "url": "https://x", "headers": {"X-T": "a\nb"}}),
            "headers.X-T",
        ),
        (
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x", "allowed_tools": ["regex:("]}),
            "allowed_tools[0]",
        ),
        (
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x", "call_timeout_ms": 3_600_001}),
            "call_timeout_ms",
        ),
        (
            serde_json::json!({"name": "a", "transport": "stdio", "command": " "}),
            "command",
        ),
    ];
    for (json, want) in cases {
        let i = input(json.clone());
        let got = check(&i, id, None)
            .and_then(|c| Ok(c.create(id, "a".into(), crate::model::now())?))
            .map(|_| ())
            .map_err(field);
        assert_eq!(got, Err(want.to_owned()), "{json}");
    }
}

#[test]
fn an_update_keeps_redacted_entries_and_what_it_does_not_name() {
    let id = Uuid::new_v4();
    let mut s = stdio_server(id);
    let before = s.clone();
    let TransportRecord::Stdio {
        env: stored_env, ..
    } = &before.transport
    else {
        unreachable!()
    };
    // Sent back as read: nothing changes.
    let read_back: McpServerInput =
        serde_json::from_value(serde_json::to_value(McpServerView::of(&s)).unwrap()).unwrap();
    check(&read_back, id, Some("github"))
        .unwrap()
        .apply(&mut s)
        .unwrap();
    assert_eq!(s, before);
    // A new literal for one entry, the other kept, a third removed by leaving it out.
    let change = check(
        &input(serde_json::json!({"env": {"GITHUB_TOKEN": "ghp_new"}, "enabled": false})),
        id,
        Some("github"),
    )
    .unwrap();
    change.apply(&mut s).unwrap();
    let TransportRecord::Stdio { command, env, .. } = &s.transport else {
        unreachable!()
    };
    assert_eq!(command, "npx", "not named: kept");
    assert!(!s.enabled);
    assert_eq!(env.len(), 1);
    assert_ne!(env["GITHUB_TOKEN"], stored_env["GITHUB_TOKEN"]);
    // "<redacted>" for an entry that is not stored is refused.
    let change = check(
        &input(serde_json::json!({"env": {"NEW": "<redacted>"}})),
        id,
        Some("github"),
    )
    .unwrap();
    assert_eq!(
        change.apply(&mut s).unwrap_err().field.as_deref(),
        Some("env.NEW")
    );
    // Renaming is refused.
    let err = check(
        &input(serde_json::json!({"name": "other"})),
        id,
        Some("github"),
    );
    assert_eq!(err.map(|_| ()).map_err(field), Err("name".to_owned()));
    // Moving to HTTP needs a URL and drops the stdio settings.
    let to_http = check(
        &input(serde_json::json!({"transport": "http"})),
        id,
        Some("github"),
    )
    .unwrap();
    assert_eq!(
        to_http.apply(&mut s.clone()).unwrap_err().field.as_deref(),
        Some("url")
    );
    let to_http = check(
        &input(
            serde_json::json!({"transport": "http", "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": "Bearer t"}}),
        ),
        id,
        Some("github"),
    )
    .unwrap();
    to_http.apply(&mut s).unwrap();
    assert!(
        matches!(&s.transport, TransportRecord::Http { url, headers }
        if url == "https://mcp.example.com/mcp" && headers.len() == 1)
    );
    // Stdio settings on an HTTP server are refused.
    let err = check(
        &input(serde_json::json!({"args": ["x"]})),
        id,
        Some("github"),
    )
    .unwrap()
    .apply(&mut s)
    .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("args"));
}

#[test]
fn star_allows_every_tool_and_tool_patterns_compile() {
    let id = Uuid::new_v4();
    let change = check(
        &input(
            serde_json::json!({"name": "a", "transport": "stdio", "command": "x",
            "allowed_tools": ["echo", "*"]}),
        ),
        id,
        None,
    )
    .unwrap();
    assert!(change.allowed_tools.as_deref() == Some(&[][..]));
    assert_eq!(
        tool_patterns("mcp_tools", &["github__*".into(), "regex:docs__.*".into()]).unwrap(),
        ["github__*", "regex:docs__.*"]
    );
    assert!(tool_patterns("mcp_tools", &[]).unwrap().is_empty());
    assert_eq!(
        tool_patterns("mcp_tools", &["ok".into(), "regex:[".into()])
            .unwrap_err()
            .field
            .as_deref(),
        Some("mcp_tools[1]")
    );
}

#[test]
fn refused_references_and_sealed_entries_name_the_entries() {
    let id = Uuid::new_v4();
    let s = stdio_server(id);
    let narrow = EnvAllowlist::with_extra(Vec::<String>::new()).unwrap();
    // AWS_* is on the default allowlist.
    assert!(refused_references(&s, &narrow).is_empty());
    let mut refused = s.clone();
    if let TransportRecord::Stdio { env, .. } = &mut refused.transport {
        env.insert("X".into(), SealedSecret::Env("NOT_ALLOWED".into()));
    }
    assert_eq!(refused_references(&refused, &narrow), ["env.X"]);
    let entries = sealed_entries(&s);
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|(map, _)| *map == "env"));
}
