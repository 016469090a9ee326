//! The only contract between Tollgate's planes.
//!
//! The control plane builds a [`config::v1::Snapshot`] from its store and publishes it; a data plane
//! receives snapshots (in-process in all-in-one mode, over the gRPC `ConfigService` stream when the
//! planes are split), validates them and swaps them in atomically. Usage flows back as
//! [`usage::v1::UsageRecord`]s. Nothing else crosses between the planes.
//!
//! [`env`] holds the one rule both planes apply to `ValueRef.env` references: which environment
//! variables an `env.NAME` may name ([`env::EnvAllowlist`]). [`logsafe`] holds the other rule
//! both apply alike: text the gateway did not write is escaped and cut before it reaches a log
//! line. [`model_id`] is the shape a model name must have: the data plane refuses requests for
//! other names, and the admin API refuses aliases it could never route. [`pricing`] is what a
//! request costs: the shipped pricing table and exact integer arithmetic over it. [`share`] is a data plane's share of a limit in a fleet.
//! [`content`] is content logging's size limits, cut and credential masking.

pub mod content;
pub mod env;
pub mod logsafe;
pub mod mcp;
pub mod model_id;
pub mod model_pattern;
pub mod pricing;
pub mod share;
pub mod window;

pub mod config {
    pub mod v1 {
        tonic::include_proto!("tollgate.config.v1");
    }
}

pub mod usage {
    pub mod v1 {
        tonic::include_proto!("tollgate.usage.v1");
    }

    /// `UsageRecord.error_class` of the requests a data plane's limits refused (admission):
    /// they count as usage rows of their key, but not as requests against a request limit.
    pub mod refusal {
        pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";
        pub const RATE_LIMITED: &str = "rate_limited";
        pub const CONCURRENCY_LIMITED: &str = "concurrency_limited";
        pub const UNPRICED_MODEL: &str = "unpriced_model";
        pub const ALLOWANCE_MOVING: &str = "allowance_moving";
        /// Every class above.
        pub const BY_LIMITS: [&str; 5] = [
            BUDGET_EXHAUSTED,
            RATE_LIMITED,
            CONCURRENCY_LIMITED,
            UNPRICED_MODEL,
            ALLOWANCE_MOVING,
        ];
    }
}
