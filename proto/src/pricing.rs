//! What a request costs: the pricing table and the arithmetic, shared by both planes.
//!
//! The table ships with the repository (`proto/pricing.json`, [`PriceTable::shipped`]): entries
//! keyed by provider and model-id patterns, each with its prices in USD per million tokens and
//! the page they come from beside them. The control plane will let admins override entries; the
//! data plane prices every request with the table it holds (pure lookups, no I/O).
//!
//! **Units.** Prices are read as USD per million tokens with at most three decimals (every
//! published Claude price is) and kept as integer nano-dollars per token (`$3 / MTok` is 3,000
//! n$ per token), so costs are exact integers ([`Cost`]) that add up without rounding drift.
//!
//! **Price kinds**, per entry: input, output, cache write with the 5-minute TTL, cache write
//! with the 1-hour TTL, cache read, and optionally a long-context tier: when a request's input
//! (`input + cache writes + cache reads`) exceeds its threshold, every token of the request is
//! priced at the tier's rates (Anthropic bills the whole request at the premium, not only the
//! tokens beyond it).
//!
//! **Bedrock scopes.** A Bedrock model id names the inference-profile scope AWS bills
//! ([`BedrockScope`]): `global.` profiles, geographic profiles (`us.`, `eu.`, `apac.`, `jp.`,
//! `au.`, `ca.`, `us-gov.`, ...), and bare in-region ids (`anthropic.claude-...`). Entries match
//! the id without its scope prefix and carry the base (global) rate; `regional_premium_percent`
//! says how much more geographic and in-region use costs for that model (10 for the Claude models
//! AWS prices that way, 0 where all scopes cost the same). Inference-profile ARNs of a system
//! profile are priced by the profile id they end with; application inference profiles name no
//! model and are unpriced until configuration maps them.
//!
//! **Unpriced** models are reported as such ([`Priced::Unpriced`]), never as $0.
//!
//! **OpenAI-compatible providers** (`openai`) ship without prices: the table only takes prices
//! copied from the provider's own pricing page, and the same model name can cost anything (or
//! nothing) on a self-hosted vLLM or Ollama. Operators price them with overrides
//! (`/api/pricing`, provider `openai`); `cache_read` is then the cached-input rate (OpenAI
//! reports cached prompt tokens apart), and the cache-write rates are unused.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::v1 as pb;
pub use crate::model_pattern::glob_match;

/// The table that ships with Tollgate (`proto/pricing.json`).
const SHIPPED: &str = include_str!("../pricing.json");

/// Nano-dollars (10⁻⁹ USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cost(pub u64);

impl Cost {
    /// The cost in USD (for display; sums stay in [`Cost`]).
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// Tokens of one request, split the way they are priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    /// Cache writes with the default 5-minute TTL.
    pub cache_write_5m: u64,
    /// Cache writes with the 1-hour TTL.
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

impl Tokens {
    /// The tokens of a usage record, split the way they are priced: `cache_write` counts cache
    /// writes of every TTL, `cache_write_1h` the part written with the 1-hour TTL.
    pub fn of_usage(
        input: u64,
        output: u64,
        cache_read: u64,
        cache_write: u64,
        cache_write_1h: u64,
    ) -> Tokens {
        Tokens {
            input,
            output,
            cache_write_5m: cache_write.saturating_sub(cache_write_1h),
            cache_write_1h,
            cache_read,
        }
    }

    /// What a request that used these tokens is charged at `price`: 0 when no token was used,
    /// `None` ("unpriced", never $0) when tokens were used on a model without a price. The data
    /// plane prices every usage record with it, and the control plane's cost recomputation
    /// re-prices stored ones with it.
    pub fn charge(&self, price: Option<ModelPrice>) -> Option<u64> {
        if *self == Tokens::default() {
            return Some(0);
        }
        price.map(|p| p.cost(self).0)
    }

    /// Every input token, cached or not: what the long-context threshold is compared with.
    pub fn total_input(&self) -> u64 {
        self.input
            .saturating_add(self.cache_write_5m)
            .saturating_add(self.cache_write_1h)
            .saturating_add(self.cache_read)
    }
}

/// A request's cost, or the fact that its model has no price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priced {
    Priced(Cost),
    Unpriced,
}

/// Where a Bedrock model id sends the request, as AWS bills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockScope {
    /// `global.` inference profiles: the base rate.
    Global,
    /// A geographic inference profile (`us.`, `eu.`, `apac.`, ...).
    Geo,
    /// A bare model id, served in the request's region.
    InRegion,
}

/// Geographic inference-profile prefixes AWS uses (the first dot-separated segment of an id).
const GEO_PREFIXES: &[&str] = &["us", "eu", "apac", "jp", "au", "ca", "us-gov", "uk", "in"];

/// Splits a Bedrock model id into its scope and the id without the scope prefix. A system
/// inference-profile ARN is read as the profile id it ends with; `None` for ids that name no
/// model (application inference profiles, other ARNs).
pub fn bedrock_scope(model_id: &str) -> Option<(BedrockScope, &str)> {
    let id = if model_id.starts_with("arn:") {
        if let Some((_, model)) = model_id.split_once(":foundation-model/") {
            return Some((BedrockScope::InRegion, model));
        }
        let (_, profile) = model_id.split_once(":inference-profile/")?;
        profile
    } else {
        model_id
    };
    match id.split_once('.') {
        Some(("global", rest)) => Some((BedrockScope::Global, rest)),
        Some((prefix, rest)) if GEO_PREFIXES.contains(&prefix) => Some((BedrockScope::Geo, rest)),
        Some(_) => Some((BedrockScope::InRegion, id)),
        None => None,
    }
}

/// Prices of one kind of token use, in nano-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

impl Rates {
    fn from_pb(r: &pb::Rates) -> Rates {
        Rates {
            input: r.input,
            output: r.output,
            cache_write_5m: r.cache_write_5m,
            cache_write_1h: r.cache_write_1h,
            cache_read: r.cache_read,
        }
    }

    /// The snapshot form.
    pub fn to_pb(self) -> pb::Rates {
        pb::Rates {
            input: self.input,
            output: self.output,
            cache_write_5m: self.cache_write_5m,
            cache_write_1h: self.cache_write_1h,
            cache_read: self.cache_read,
        }
    }

    fn cost(&self, t: &Tokens) -> Cost {
        let sum = [
            (t.input, self.input),
            (t.output, self.output),
            (t.cache_write_5m, self.cache_write_5m),
            (t.cache_write_1h, self.cache_write_1h),
            (t.cache_read, self.cache_read),
        ]
        .iter()
        .fold(0u64, |acc, (n, rate)| {
            acc.saturating_add(n.saturating_mul(*rate))
        });
        Cost(sum)
    }

    /// These rates raised by `percent` (rounded to the nearest nano-dollar).
    fn with_premium(&self, percent: u64) -> Rates {
        let up = |r: u64| (r * (100 + percent) + 50) / 100;
        Rates {
            input: up(self.input),
            output: up(self.output),
            cache_write_5m: up(self.cache_write_5m),
            cache_write_1h: up(self.cache_write_1h),
            cache_read: up(self.cache_read),
        }
    }
}

/// The prices that apply to one model as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub rates: Rates,
    /// `(threshold, rates)`: above `threshold` input tokens, the whole request uses `rates`.
    pub long_context: Option<(u64, Rates)>,
}

impl ModelPrice {
    /// The most a request can cost with at most `input` prompt tokens and `output` output tokens,
    /// whatever it turns out to cache: every prompt token at the dearest of the input and cache
    /// write rates, at the long-context rates when `input` is above the threshold. Budgets
    /// reserve this before a request is sent, so the settled cost never exceeds the reservation
    /// while the token counts hold.
    pub fn upper_bound(&self, input: u64, output: u64) -> Cost {
        let rates = match &self.long_context {
            Some((threshold, rates)) if input > *threshold => rates,
            _ => &self.rates,
        };
        let dearest_input = rates
            .input
            .max(rates.cache_write_5m)
            .max(rates.cache_write_1h)
            .max(rates.cache_read);
        Cost(
            input
                .saturating_mul(dearest_input)
                .saturating_add(output.saturating_mul(rates.output)),
        )
    }

    /// The cost of `tokens` at these prices.
    pub fn cost(&self, tokens: &Tokens) -> Cost {
        match &self.long_context {
            Some((threshold, rates)) if tokens.total_input() > *threshold => rates.cost(tokens),
            _ => self.rates.cost(tokens),
        }
    }
}

/// One entry of the table.
#[derive(Debug, Clone)]
pub struct PriceEntry {
    pub provider: String,
    pub models: Vec<String>,
    pub price: ModelPrice,
    pub regional_premium_percent: u64,
    pub source: String,
}

impl PriceEntry {
    /// This entry as written in the table (USD per million tokens).
    pub fn to_input(&self) -> PriceInput {
        let per_mtok = |nano: u64| nano as f64 / 1000.0;
        let r = self.price.rates;
        PriceInput {
            provider: self.provider.clone(),
            models: self.models.clone(),
            input: per_mtok(r.input),
            output: per_mtok(r.output),
            cache_write_5m: per_mtok(r.cache_write_5m),
            cache_write_1h: per_mtok(r.cache_write_1h),
            cache_read: per_mtok(r.cache_read),
            long_context: self.price.long_context.map(|(above, l)| LongContextInput {
                above_input_tokens: above,
                input: per_mtok(l.input),
                output: per_mtok(l.output),
                cache_write_5m: per_mtok(l.cache_write_5m),
                cache_write_1h: per_mtok(l.cache_write_1h),
                cache_read: per_mtok(l.cache_read),
            }),
            regional_premium_percent: self.regional_premium_percent,
            source: Some(self.source.clone()),
            note: None,
        }
    }

    /// The snapshot form of this entry as override `id`.
    pub fn to_override(&self, id: &str) -> pb::PriceOverride {
        let (threshold, long) = match self.price.long_context {
            Some((t, r)) => (t, Some(r.to_pb())),
            None => (0, None),
        };
        pb::PriceOverride {
            id: id.to_owned(),
            provider: self.provider.clone(),
            models: self.models.clone(),
            rates: Some(self.price.rates.to_pb()),
            long_context_above_input_tokens: threshold,
            long_context_rates: long,
            regional_premium_percent: u32::try_from(self.regional_premium_percent).unwrap_or(100),
        }
    }
}

/// The pricing table: the first entry whose provider and one of whose patterns match wins.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    entries: Vec<PriceEntry>,
}

/// Why a table cannot be loaded. Names the entry (by index and first pattern) and the field.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("pricing table is not valid JSON of the expected shape: {0}")]
    Shape(#[from] serde_json::Error),
    #[error("pricing entry {index} ({models}): {problem}")]
    Entry {
        index: usize,
        models: String,
        problem: String,
    },
}

/// Providers a price may be given for.
pub const PROVIDERS: &[&str] = &["anthropic", "bedrock", "vertex", "openai"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    /// What the file is, for its readers.
    #[serde(default, rename = "about")]
    _about: Option<String>,
    prices: Vec<PriceInput>,
}

/// One entry as written in `proto/pricing.json`, and as an admin sends a pricing override
/// (`/api/pricing`): which models of which provider, and their prices in USD per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    /// `anthropic`, `bedrock`, `vertex` or `openai`: the kind of provider, whatever its configured
    /// name.
    #[cfg_attr(feature = "utoipa", schema(example = "bedrock"))]
    pub provider: String,
    /// Model id patterns (`*` matches any run of characters). For Bedrock they match the id
    /// without its scope prefix (`anthropic.claude-sonnet-4-6*` covers `global.`, `us.`, ...), or
    /// a whole ARN (an application inference profile, priced as given).
    #[cfg_attr(feature = "utoipa", schema(example = json!(["anthropic.claude-sonnet-4-6*"])))]
    pub models: Vec<String>,
    #[cfg_attr(feature = "utoipa", schema(example = 2.7))]
    pub input: f64,
    #[cfg_attr(feature = "utoipa", schema(example = 13.5))]
    pub output: f64,
    /// Cache writes with the default 5-minute TTL.
    pub cache_write_5m: f64,
    /// Cache writes with the 1-hour TTL.
    pub cache_write_1h: f64,
    pub cache_read: f64,
    /// Above `above_input_tokens` input tokens, the whole request is priced at these rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextInput>,
    /// How much more Bedrock geographic profiles and in-region ids cost than `global.` ones.
    #[serde(default)]
    pub regional_premium_percent: u64,
    /// Where the prices come from (a page, a contract; an `https://` page in the shipped table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How the prices were taken from `source`, for its readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The long-context tier of a [`PriceInput`].
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LongContextInput {
    pub above_input_tokens: u64,
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

/// Why a [`PriceInput`] is refused: the field (`input`, `long_context.cache_read`, `models`)
/// and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PriceInputError {
    pub field: String,
    pub problem: String,
}

impl PriceInput {
    /// Checks the entry and converts its prices to nano-dollars per token.
    pub fn check(&self) -> Result<PriceEntry, PriceInputError> {
        let fail = |field: &str, problem: String| PriceInputError {
            field: field.to_owned(),
            problem,
        };
        if !PROVIDERS.contains(&self.provider.as_str()) {
            return Err(fail(
                "provider",
                format!("{:?} is not one of {PROVIDERS:?}", self.provider),
            ));
        }
        if self.models.is_empty() || self.models.iter().any(|m| m.is_empty() || m.len() > 512) {
            return Err(fail(
                "models",
                "must list non-empty patterns of at most 512 bytes".into(),
            ));
        }
        if self.regional_premium_percent > 100 {
            return Err(fail("regional_premium_percent", "must be 0 to 100".into()));
        }
        let base = rates(
            [
                self.input,
                self.output,
                self.cache_write_5m,
                self.cache_write_1h,
                self.cache_read,
            ],
            "",
        )?;
        let long_context = match &self.long_context {
            None => None,
            Some(lc) if lc.above_input_tokens == 0 || lc.above_input_tokens > 1_000_000_000 => {
                return Err(fail(
                    "long_context.above_input_tokens",
                    "must be 1 to 1,000,000,000".into(),
                ));
            }
            Some(lc) => {
                let five = [
                    lc.input,
                    lc.output,
                    lc.cache_write_5m,
                    lc.cache_write_1h,
                    lc.cache_read,
                ];
                Some((lc.above_input_tokens, rates(five, "long_context.")?))
            }
        };
        Ok(PriceEntry {
            provider: self.provider.clone(),
            models: self.models.clone(),
            price: ModelPrice {
                rates: base,
                long_context,
            },
            regional_premium_percent: self.regional_premium_percent,
            source: self.source.clone().unwrap_or_default(),
        })
    }
}

/// USD per million tokens → nano-dollars per token, exactly (at most three decimals).
fn per_token(usd_per_mtok: f64, field: &str) -> Result<u64, PriceInputError> {
    let fail = |problem: String| PriceInputError {
        field: field.to_owned(),
        problem,
    };
    if !usd_per_mtok.is_finite() || usd_per_mtok < 0.0 {
        return Err(fail("must be a finite, non-negative price".into()));
    }
    let nano = usd_per_mtok * 1000.0;
    let rounded = nano.round();
    if (nano - rounded).abs() > 1e-6 || rounded > u32::MAX as f64 {
        return Err(fail(format!(
            "{usd_per_mtok}: prices have at most three decimals (USD per million tokens)"
        )));
    }
    Ok(rounded as u64)
}

/// The five prices of an entry or of its long-context tier (`prefix` names it in errors), as
/// written in the file: input, output, 5-minute and 1-hour cache write, cache read.
fn rates(
    [input, output, cache_write_5m, cache_write_1h, cache_read]: [f64; 5],
    prefix: &str,
) -> Result<Rates, PriceInputError> {
    let f = |v: f64, name: &str| per_token(v, &format!("{prefix}{name}"));
    Ok(Rates {
        input: f(input, "input")?,
        output: f(output, "output")?,
        cache_write_5m: f(cache_write_5m, "cache_write_5m")?,
        cache_write_1h: f(cache_write_1h, "cache_write_1h")?,
        cache_read: f(cache_read, "cache_read")?,
    })
}

impl PriceTable {
    /// The table that ships with Tollgate, parsed once.
    pub fn shipped() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            PriceTable::from_json(SHIPPED).expect("proto/pricing.json is checked by its tests")
        })
    }

    /// Parses and checks a table in the shape of `proto/pricing.json`.
    pub fn from_json(text: &str) -> Result<PriceTable, PricingError> {
        let file: FileTable = serde_json::from_str(text)?;
        let mut entries = Vec::with_capacity(file.prices.len());
        for (index, e) in file.prices.into_iter().enumerate() {
            let fail = |problem: String| PricingError::Entry {
                index,
                models: e.models.first().cloned().unwrap_or_default(),
                problem,
            };
            if !e
                .source
                .as_deref()
                .is_some_and(|s| s.starts_with("https://"))
            {
                return Err(fail(
                    "source must be the https:// page the prices come from".into(),
                ));
            }
            entries.push(e.check().map_err(|e| fail(e.to_string()))?);
        }
        Ok(PriceTable { entries })
    }

    /// The entries, in matching order.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// This table with an admin's `overrides` (the snapshot's `price_overrides`) matched first,
    /// in their order.
    pub fn with_overrides(
        &self,
        overrides: &[pb::PriceOverride],
    ) -> Result<PriceTable, PricingError> {
        let mut entries = Vec::with_capacity(overrides.len() + self.entries.len());
        for (index, o) in overrides.iter().enumerate() {
            let fail = |problem: &str| PricingError::Entry {
                index,
                models: o.models.first().cloned().unwrap_or_default(),
                problem: format!("override {}: {problem}", o.id),
            };
            if !PROVIDERS.contains(&o.provider.as_str()) {
                return Err(fail("unknown provider"));
            }
            if o.models.is_empty() || o.models.iter().any(String::is_empty) {
                return Err(fail("models must list non-empty patterns"));
            }
            if o.regional_premium_percent > 100 {
                return Err(fail("regional_premium_percent must be 0 to 100"));
            }
            let long_context = match (o.long_context_above_input_tokens, &o.long_context_rates) {
                (0, _) => None,
                (threshold, Some(r)) => Some((threshold, Rates::from_pb(r))),
                (_, None) => return Err(fail("a long-context threshold needs its rates")),
            };
            entries.push(PriceEntry {
                provider: o.provider.clone(),
                models: o.models.clone(),
                price: ModelPrice {
                    rates: o.rates.as_ref().map(Rates::from_pb).unwrap_or_default(),
                    long_context,
                },
                regional_premium_percent: u64::from(o.regional_premium_percent),
                source: format!("override {}", o.id),
            });
        }
        entries.extend(self.entries.iter().cloned());
        Ok(PriceTable { entries })
    }

    fn find(&self, provider: &str, id: &str) -> Option<&PriceEntry> {
        self.entries
            .iter()
            .find(|e| e.provider == provider && e.models.iter().any(|p| glob_match(p, id)))
    }

    /// The prices of `model_id` on a provider of kind `provider` (`anthropic`, `bedrock`,
    /// `vertex`, `openai`), Bedrock's scope applied; `None` when nothing matches. A Bedrock ARN that an
    /// entry names whole (an override for an application inference profile) takes that entry's
    /// prices as they are. Vertex AI is priced at its global endpoint's rates: see
    /// [`PriceTable::price_vertex`] for a key's region.
    pub fn price(&self, provider: &str, model_id: &str) -> Option<ModelPrice> {
        if provider == "bedrock"
            && model_id.starts_with("arn:")
            && let Some(entry) = self.find(provider, model_id)
        {
            return Some(entry.price);
        }
        let (scope, id) = if provider == "bedrock" {
            bedrock_scope(model_id)?
        } else {
            (BedrockScope::Global, model_id)
        };
        self.scoped(provider, id, scope != BedrockScope::Global)
    }

    /// The prices of `model_id` on Vertex AI through a key's `region`: anything but `global` is
    /// a regional (or multi-region) endpoint, which adds the entry's `regional_premium_percent`.
    pub fn price_vertex(&self, model_id: &str, region: &str) -> Option<ModelPrice> {
        self.scoped("vertex", model_id, region != "global")
    }

    fn scoped(&self, provider: &str, id: &str, regional: bool) -> Option<ModelPrice> {
        let entry = self.find(provider, id)?;
        let premium = if regional {
            entry.regional_premium_percent
        } else {
            0
        };
        if premium == 0 {
            return Some(entry.price);
        }
        Some(ModelPrice {
            rates: entry.price.rates.with_premium(premium),
            long_context: entry
                .price
                .long_context
                .map(|(threshold, r)| (threshold, r.with_premium(premium))),
        })
    }

    /// What `tokens` of `model_id` on `provider` cost.
    pub fn cost(&self, provider: &str, model_id: &str, tokens: &Tokens) -> Priced {
        match self.price(provider, model_id) {
            Some(p) => Priced::Priced(p.cost(tokens)),
            None => Priced::Unpriced,
        }
    }
}

#[cfg(test)]
mod tests;
