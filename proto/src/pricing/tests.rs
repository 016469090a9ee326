//! Golden tests of the pricing arithmetic against the shipped table: each price kind, the
//! long-context tier, each Bedrock scope, and what stays unpriced. Expected figures are worked
//! out by hand from the published prices (USD per million tokens) in the comments.

use super::*;

fn cost(provider: &str, model: &str, tokens: Tokens) -> Priced {
    PriceTable::shipped().cost(provider, model, &tokens)
}

/// `n` uncached input tokens and nothing else.
fn input_only(n: u64) -> Tokens {
    Tokens {
        input: n,
        ..Tokens::default()
    }
}

fn nano(n: u64) -> Priced {
    Priced::Priced(Cost(n))
}

#[test]
fn the_shipped_table_loads_and_names_a_source_for_every_entry() {
    let table = PriceTable::shipped();
    assert!(table.entries().len() >= 20);
    for e in table.entries() {
        assert!(e.source.starts_with("https://"), "{:?}", e.models);
        assert!(PROVIDERS.contains(&e.provider.as_str()));
    }
    // Every Bedrock entry has an Anthropic twin with the same base prices.
    for b in table.entries().iter().filter(|e| e.provider == "bedrock") {
        let name = b.models[0].trim_start_matches("anthropic.");
        let twin = table
            .price("anthropic", &name.replace('*', "x"))
            .unwrap_or_else(|| panic!("no Anthropic price for {name}"));
        assert_eq!(twin, b.price, "{name}");
    }
}

#[test]
fn every_price_kind_is_charged_at_its_own_rate() {
    // Sonnet 4.5: input $3, output $15, 5m write $3.75, 1h write $6, read $0.30 per MTok.
    // 1,000 × 3 + 500 × 15 + 2,000 × 3.75 + 100 × 6 + 3,000 × 0.30 = 19,500 µ$ = $0.0195.
    let tokens = Tokens {
        input: 1_000,
        output: 500,
        cache_write_5m: 2_000,
        cache_write_1h: 100,
        cache_read: 3_000,
    };
    assert_eq!(
        cost("anthropic", "claude-sonnet-4-5-20250929", tokens),
        nano(19_500_000)
    );
    let Priced::Priced(c) = cost("anthropic", "claude-sonnet-4-5", tokens) else {
        panic!("priced")
    };
    assert!((c.usd() - 0.0195).abs() < 1e-12);
    // Each kind alone, one million tokens: exactly the published price.
    let one = |f: fn(&mut Tokens)| {
        let mut t = Tokens::default();
        f(&mut t);
        cost("anthropic", "claude-haiku-4-5-20251001", t)
    };
    assert_eq!(one(|t| t.input = 1_000_000), nano(1_000_000_000)); // $1
    assert_eq!(one(|t| t.output = 1_000_000), nano(5_000_000_000)); // $5
    assert_eq!(one(|t| t.cache_write_5m = 1_000_000), nano(1_250_000_000)); // $1.25
    assert_eq!(one(|t| t.cache_write_1h = 1_000_000), nano(2_000_000_000)); // $2
    assert_eq!(one(|t| t.cache_read = 1_000_000), nano(100_000_000)); // $0.10
}

#[test]
fn above_the_long_context_threshold_the_whole_request_is_priced_at_the_tier() {
    // Sonnet 4.5 over 200K input tokens (cache included): input $6, output $22.50, read $0.60.
    // 150,000 × 6 + 1,000 × 22.50 + 60,000 × 0.60 = $0.9585.
    let over = Tokens {
        input: 150_000,
        output: 1_000,
        cache_read: 60_000,
        ..Tokens::default()
    };
    assert_eq!(
        cost("anthropic", "claude-sonnet-4-5", over),
        nano(958_500_000)
    );
    // Exactly 200K is not above it: 140,000 × 3 + 1,000 × 15 + 60,000 × 0.30 = $0.453.
    let at = Tokens {
        input: 140_000,
        ..over
    };
    assert_eq!(
        cost("anthropic", "claude-sonnet-4-5", at),
        nano(453_000_000)
    );
    // Cache writes count toward the threshold and are priced at the tier too ($7.50, $12).
    let writes = Tokens {
        input: 1,
        cache_write_5m: 100_000,
        cache_write_1h: 100_000,
        ..Tokens::default()
    };
    assert_eq!(
        cost("anthropic", "claude-sonnet-4-20250514", writes),
        nano(6_000 + 750_000_000 + 1_200_000_000)
    );
    // Opus 4.6 has one rate over its whole window: 500,000 × $5 = $2.50.
    let long = input_only(500_000);
    assert_eq!(
        cost("anthropic", "claude-opus-4-6", long),
        nano(2_500_000_000)
    );
}

#[test]
fn bedrock_scopes_are_priced_as_aws_bills_them() {
    // Under the long-context threshold: 100,000 input tokens.
    let input = input_only(100_000);
    let million_out = Tokens {
        output: 1_000_000,
        ..Tokens::default()
    };
    let sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    // Global: the base rate, $3 / $15 per MTok.
    let global = format!("global.{sonnet}");
    assert_eq!(cost("bedrock", &global, input), nano(300_000_000));
    assert_eq!(cost("bedrock", &global, million_out), nano(15_000_000_000));
    // Geographic profiles and in-region ids: 10 % more, $3.30 / $16.50.
    for id in [
        format!("us.{sonnet}"),
        format!("eu.{sonnet}"),
        format!("apac.{sonnet}"),
        format!("jp.{sonnet}"),
        format!("au.{sonnet}"),
        sonnet.to_owned(),
        format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{sonnet}"),
        format!("arn:aws:bedrock:us-east-1::foundation-model/{sonnet}"),
    ] {
        assert_eq!(cost("bedrock", &id, input), nano(330_000_000), "{id}");
        assert_eq!(
            cost("bedrock", &id, million_out),
            nano(16_500_000_000),
            "{id}"
        );
    }
    // The premium applies to every kind, the long-context tier included ($0.33 read, $6.60 in,
    // per MTok).
    let read = Tokens {
        cache_read: 100_000,
        ..Tokens::default()
    };
    assert_eq!(
        cost("bedrock", &format!("eu.{sonnet}"), read),
        nano(33_000_000)
    );
    let long = input_only(300_000);
    assert_eq!(
        cost("bedrock", &format!("us.{sonnet}"), long),
        nano(300_000 * 6_600)
    );
    assert_eq!(cost("bedrock", &global, long), nano(300_000 * 6_000));
    // Haiku 4.5 1-hour cache writes: $2 global, $2.20 geographic.
    let writes = Tokens {
        cache_write_1h: 1_000_000,
        ..Tokens::default()
    };
    let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0";
    assert_eq!(
        cost("bedrock", &format!("global.{haiku}"), writes),
        nano(2_000_000_000)
    );
    assert_eq!(
        cost("bedrock", &format!("jp.{haiku}"), writes),
        nano(2_200_000_000)
    );
    // Older models cost the same in every scope: Sonnet 4 at $3.
    for id in [
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
    ] {
        assert_eq!(cost("bedrock", id, input), nano(300_000_000), "{id}");
    }
    // The README's Opus id.
    assert_eq!(
        cost("bedrock", "global.anthropic.claude-opus-4-6-v1", input),
        nano(500_000_000)
    );
}

#[test]
fn vertex_is_priced_at_anthropics_list_prices_and_regions_cost_more() {
    let table = PriceTable::shipped();
    // Every Vertex entry has an Anthropic twin with the same base prices.
    for v in table.entries().iter().filter(|e| e.provider == "vertex") {
        let name = v.models[0].replace('*', "x");
        let twin = table
            .price("anthropic", &name)
            .unwrap_or_else(|| panic!("no Anthropic price for {name}"));
        assert_eq!(twin, v.price, "{name}");
    }
    // Vertex ids carry `@` versions. Sonnet 4.5: input $3 per MTok (below its long-context
    // tier); regional endpoints +10 %.
    let tokens = input_only(100_000);
    let global = table
        .price_vertex("claude-sonnet-4-5@20250929", "global")
        .expect("priced");
    assert_eq!(global.cost(&tokens), Cost(300_000_000));
    assert_eq!(
        table.price("vertex", "claude-sonnet-4-5@20250929"),
        Some(global)
    );
    for region in ["us-east5", "europe-west1", "us", "eu"] {
        let regional = table
            .price_vertex("claude-sonnet-4-5@20250929", region)
            .expect("priced");
        assert_eq!(regional.cost(&tokens), Cost(330_000_000), "{region}");
    }
    // Models before Sonnet 4.5 have one price everywhere; Vertex's Sonnet 4 id is priced too.
    let sonnet_4 = table.price_vertex("claude-sonnet-4@20250514", "us-east5");
    assert_eq!(sonnet_4.map(|p| p.cost(&tokens)), Some(Cost(300_000_000)));
}

#[test]
fn what_no_entry_prices_is_unpriced_never_zero() {
    let t = input_only(10);
    for (provider, model) in [
        ("anthropic", "claude-unknown-9"),
        ("anthropic", "gpt-4o"),
        ("bedrock", "meta.llama3-70b-instruct-v1:0"),
        // An application inference profile names no model until configuration maps it.
        (
            "bedrock",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
        ),
        ("bedrock", "no-dot-at-all"),
        ("vertex", "gemini-2.5-pro"),
        ("openai", "claude-sonnet-4-5"),
    ] {
        assert_eq!(
            cost(provider, model, t),
            Priced::Unpriced,
            "{provider} {model}"
        );
    }
    // A Bedrock id is not an Anthropic name, and the other way round.
    assert_eq!(
        cost(
            "anthropic",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            t
        ),
        Priced::Unpriced
    );
    assert_eq!(cost("bedrock", "claude-sonnet-4-5", t), Priced::Unpriced);
}

#[test]
fn entries_match_in_order_so_each_generation_gets_its_own_price() {
    let t = input_only(1_000_000);
    for (model, usd) in [
        ("claude-opus-4-20250514", 15),
        ("claude-opus-4-0", 15),
        ("claude-opus-4-1-20250805", 15),
        ("claude-opus-4-5-20251101", 5),
        ("claude-opus-4-6", 5),
        ("claude-sonnet-4-6", 3),
        ("claude-3-7-sonnet-20250219", 3),
    ] {
        assert_eq!(
            cost("anthropic", model, t),
            nano(usd * 1_000_000_000),
            "{model}"
        );
    }
    assert_eq!(
        cost("anthropic", "claude-3-5-haiku-20241022", t),
        nano(800_000_000)
    );
    assert_eq!(
        cost("anthropic", "claude-3-haiku-20240307", t),
        nano(250_000_000)
    );
}

#[test]
fn bad_tables_are_refused_naming_the_entry_and_the_field() {
    let entry = |extra: &str| {
        format!(
            r#"{{"prices": [{{"provider": "anthropic", "models": ["m*"], "input": 1, "output": 2,
            "cache_write_5m": 1.25, "cache_write_1h": 2, "cache_read": 0.1,
            "source": "https://example.com/p"{extra}}}]}}"#
        )
    };
    assert!(PriceTable::from_json(&entry("")).is_ok());
    for (text, needle) in [
        (
            entry(
                r#", "long_context": {"above_input_tokens": 0, "input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1}"#,
            ),
            "above_input_tokens",
        ),
        (
            entry(r#", "regional_premium_percent": 500"#),
            "regional_premium_percent",
        ),
        (entry(r#", "surprise": 1"#), "surprise"),
        (
            entry("").replace(r#""input": 1"#, r#""input": -1"#),
            "input",
        ),
        (
            entry("").replace(r#""output": 2"#, r#""output": 2.0001"#),
            "output: 2.0001",
        ),
        (
            entry("").replace("anthropic", "azure"),
            "provider: \"azure\"",
        ),
        (
            entry("").replace("https://example.com/p", "somewhere"),
            "source",
        ),
        (entry("").replace(r#"["m*"]"#, "[]"), "models"),
    ] {
        let err = PriceTable::from_json(&text).expect_err(needle).to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn glob_patterns() {
    assert!(glob_match("claude-opus-4-6*", "claude-opus-4-6"));
    assert!(glob_match("claude-opus-4-6*", "claude-opus-4-6-v1"));
    assert!(!glob_match("claude-opus-4-6*", "claude-opus-4-5"));
    assert!(glob_match("a*b*c", "a-x-b-y-c"));
    assert!(!glob_match("a*b*c", "a-x-b-y-d"));
    assert!(glob_match("*", ""));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exact-not"));
}

fn input(json: &str) -> PriceInput {
    serde_json::from_str(json).expect("a price input")
}

/// Overrides are matched before the shipped table, keep their prices exactly through the
/// snapshot form, and can price application inference profiles, which name no model.
#[test]
fn overrides_come_first_and_price_application_profiles() {
    let shipped = PriceTable::shipped();
    let discounted = input(
        r#"{"provider": "bedrock", "models": ["anthropic.claude-sonnet-4-6*"], "input": 2.7,
            "output": 13.5, "cache_write_5m": 3.375, "cache_write_1h": 5.4, "cache_read": 0.27,
            "regional_premium_percent": 10, "note": "negotiated 10 % discount"}"#,
    )
    .check()
    .unwrap();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
    let profile = input(&format!(
        r#"{{"provider": "bedrock", "models": ["{arn}"], "input": 3.3, "output": 16.5,
            "cache_write_5m": 4.125, "cache_write_1h": 6.6, "cache_read": 0.33}}"#
    ))
    .check()
    .unwrap();
    let table = shipped
        .with_overrides(&[discounted.to_override("o1"), profile.to_override("o2")])
        .unwrap();
    let t = input_only(1_000_000);
    // The override wins over the shipped entry, with the scope premium applied to it.
    assert_eq!(
        table.cost("bedrock", "global.anthropic.claude-sonnet-4-6", &t),
        Priced::Priced(Cost(2_700_000_000))
    );
    assert_eq!(
        table.cost("bedrock", "us.anthropic.claude-sonnet-4-6", &t),
        Priced::Priced(Cost(2_970_000_000))
    );
    // Other models still use the shipped prices.
    assert_eq!(
        table.price("bedrock", "global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        shipped.price("bedrock", "global.anthropic.claude-haiku-4-5-20251001-v1:0")
    );
    // The application profile: unpriced in the shipped table, priced by its override as is.
    assert_eq!(shipped.cost("bedrock", arn, &t), Priced::Unpriced);
    assert_eq!(
        table.cost("bedrock", arn, &t),
        Priced::Priced(Cost(3_300_000_000))
    );

    // Bad overrides name the field.
    for (json, field) in [
        (
            r#"{"provider": "azure", "models": ["m"], "input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1}"#,
            "provider",
        ),
        (
            r#"{"provider": "bedrock", "models": [], "input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1}"#,
            "models",
        ),
        (
            r#"{"provider": "bedrock", "models": ["m"], "input": -1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1}"#,
            "input",
        ),
        (
            r#"{"provider": "bedrock", "models": ["m"], "input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1,
            "long_context": {"above_input_tokens": 200000, "input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 0.0001}}"#,
            "long_context.cache_read",
        ),
        (
            r#"{"provider": "bedrock", "models": ["m"], "input": 1, "output": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "regional_premium_percent": 101}"#,
            "regional_premium_percent",
        ),
    ] {
        assert_eq!(input(json).check().unwrap_err().field, field, "{json}");
    }
}

/// The reservation bound covers every way the same prompt could be billed.
#[test]
fn upper_bound_covers_every_split_of_the_prompt() {
    let price = PriceTable::shipped()
        .price("anthropic", "claude-sonnet-4-6")
        .unwrap();
    // Sonnet 4.6: $6 per million 1-hour cache writes is the dearest input rate; $15 output.
    assert_eq!(
        price.upper_bound(1_000, 100),
        Cost(1_000 * 6_000 + 100 * 15_000)
    );
    for split in [
        Tokens {
            input: 1_000,
            output: 100,
            ..Tokens::default()
        },
        Tokens {
            cache_write_5m: 1_000,
            output: 100,
            ..Tokens::default()
        },
        Tokens {
            cache_write_1h: 600,
            cache_read: 400,
            output: 100,
            ..Tokens::default()
        },
        Tokens {
            input: 10,
            output: 3,
            ..Tokens::default()
        },
    ] {
        assert!(
            price.cost(&split) <= price.upper_bound(1_000, 100),
            "{split:?}"
        );
    }
    // Above the long-context threshold the premium rates bound it.
    let sonnet45 = PriceTable::shipped()
        .price("anthropic", "claude-sonnet-4-5")
        .unwrap();
    let long = Tokens {
        input: 300_000,
        output: 1_000,
        ..Tokens::default()
    };
    assert!(sonnet45.cost(&long) <= sonnet45.upper_bound(300_000, 1_000));
}
