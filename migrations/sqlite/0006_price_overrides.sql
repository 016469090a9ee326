-- Pricing overrides (`/api/pricing`, issue 8). Keep in step with
-- ../postgres/0006_price_overrides.sql. `entry` is one entry in the shape of proto/pricing.json
-- (USD per million tokens), validated by the control plane; overrides are matched before the
-- shipped table, oldest first.
CREATE TABLE price_overrides (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    entry      TEXT NOT NULL CHECK (json_valid(entry)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
