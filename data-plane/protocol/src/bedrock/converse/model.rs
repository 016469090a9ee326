//! Which Bedrock API a model id is reached through: `InvokeModel` with the native Anthropic body
//! (Claude), or `Converse` (every other model), and what a Converse model takes.
//!
//! | upstream model id | API |
//! |---|---|
//! | contains `anthropic.` (`anthropic.claude-…`, `us.anthropic.claude-…`, `…:foundation-model/anthropic.…` and `…:inference-profile/us.anthropic.…` ARNs) | `InvokeModel` |
//! | `<provider>.<model>` with another provider, with or without a cross-region prefix (`meta.llama3-3-70b-instruct-v1:0`, `us.meta.llama…`, `mistral.…`, `amazon.nova-pro-v1:0`, `deepseek.r1-v1:0`, …), also inside a `foundation-model/` or `inference-profile/` ARN | `Converse` |
//! | application inference profile, provisioned, imported or custom model ARNs (the ARN does not say which model) | `InvokeModel` (unchanged behaviour; such an ARN of a non-Anthropic model fails at Bedrock with its own `ValidationException`) |
//! | anything else (no `provider.` prefix, e.g. a bare `claude-…` name) | `InvokeModel` (unchanged behaviour) |
//!
//! Both functions scan the borrowed id once and allocate nothing: they run on every Bedrock
//! request.

use crate::bedrock::CROSS_REGION_PREFIXES;

/// Whether `model_id` (as it goes into the URL: alias resolved, ARN prefix applied) is reached
/// through `Converse`/`ConverseStream` rather than `InvokeModel` (see the module docs).
pub fn uses_converse(model_id: &str) -> bool {
    // Any `anthropic.` in it: Claude, InvokeModel. A plain scan: this runs on every Bedrock
    // request, twice (sending and answering), and the ids are short.
    const MARK: &[u8] = b"anthropic.";
    if model_id.as_bytes().windows(MARK.len()).any(|w| w == MARK) {
        return false;
    }
    base_model(model_id).is_some_and(|base| {
        base.split_once('.').is_some_and(|(provider, name)| {
            !provider.is_empty()
                && !name.is_empty()
                && provider
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
    })
}

/// Whether a Converse model takes `cachePoint` blocks (Bedrock prompt caching): Amazon Nova
/// models (`amazon.nova-…`, with or without a cross-region prefix or ARN around it). Other
/// non-Anthropic models refuse requests that hold one, so their `cache_control` is dropped.
pub fn supports_cache_points(model_id: &str) -> bool {
    base_model(model_id).is_some_and(|base| base.starts_with("amazon.nova"))
}

/// The foundation-model id inside `model_id`: the id itself, or the resource of a
/// `foundation-model/` or `inference-profile/` ARN, without a cross-region prefix. `None` for
/// ARNs of other resource types (their model is unknown).
fn base_model(model_id: &str) -> Option<&str> {
    let id = match model_id.strip_prefix("arn:") {
        Some(rest) => {
            // partition:service:region:account:resource-type/resource-id
            let resource = rest.splitn(5, ':').nth(4)?;
            let (kind, id) = resource.split_once('/')?;
            if kind != "foundation-model" && kind != "inference-profile" {
                return None;
            }
            id
        }
        None => model_id,
    };
    Some(
        CROSS_REGION_PREFIXES
            .iter()
            .find_map(|prefix| id.strip_prefix(prefix).filter(|rest| !rest.is_empty()))
            .unwrap_or(id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_ids_stay_on_invoke_model() {
        for id in [
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "global.anthropic.claude-sonnet-4-6",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-6",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc",
            "claude-sonnet-4-6",
            "",
            ".x",
            "meta.",
            "Meta.llama3",
            "arn:aws:bedrock",
        ] {
            assert!(!uses_converse(id), "{id}");
        }
    }

    #[test]
    fn other_providers_use_converse() {
        for id in [
            "meta.llama3-3-70b-instruct-v1:0",
            "us.meta.llama3-3-70b-instruct-v1:0",
            "mistral.mistral-large-2407-v1:0",
            "amazon.nova-pro-v1:0",
            "us.amazon.nova-lite-v1:0",
            "eu.amazon.nova-micro-v1:0",
            "deepseek.r1-v1:0",
            "us.deepseek.r1-v1:0",
            "cohere.command-r-plus-v1:0",
            "ai21.jamba-1-5-large-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-3-70b-instruct-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0",
        ] {
            assert!(uses_converse(id), "{id}");
        }
    }

    #[test]
    fn cache_points_only_for_nova() {
        for id in [
            "amazon.nova-pro-v1:0",
            "us.amazon.nova-premier-v1:0",
            "global.amazon.nova-2-lite-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
        ] {
            assert!(supports_cache_points(id), "{id}");
        }
        for id in [
            "meta.llama3-3-70b-instruct-v1:0",
            "mistral.mistral-large-2407-v1:0",
            "amazon.titan-text-express-v1",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/nova",
        ] {
            assert!(!supports_cache_points(id), "{id}");
        }
    }
}
