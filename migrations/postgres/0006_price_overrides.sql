-- Pricing overrides (`/api/pricing`, issue 8). Keep in step with
-- ../sqlite/0006_price_overrides.sql. `entry` is one entry in the shape of proto/pricing.json
-- (USD per million tokens), validated by the control plane; overrides are matched before the
-- shipped table, oldest first.
CREATE TABLE price_overrides (
    id         UUID PRIMARY KEY,
    entry      JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
