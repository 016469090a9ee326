-- Governance (issue 8): customers, teams, and the limits of virtual keys. Keep in step with
-- ../sqlite/0005_governance.sql.
--
-- Each owner's limits are one JSON document, validated by the control plane
-- (control-plane/src/governance.rs) and never queried by SQL: `limits` of customers and teams
-- ({"budgets": [...], "rate_limit": {...}, "max_concurrent": n}), `governance` of virtual keys
-- (the same `limits`, plus `provider_configs`, `expires_at_unix_ms` and `fail_open`). Budget
-- amounts are integer nano-dollars. Membership is relational, so a team or customer that keys
-- belong to cannot be deleted (the API answers 409).
CREATE TABLE customers (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL CONSTRAINT customers_name_key UNIQUE,
    limits     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE teams (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL CONSTRAINT teams_name_key UNIQUE,
    customer_id UUID REFERENCES customers (id) ON DELETE RESTRICT,
    limits      JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

ALTER TABLE virtual_keys
    ADD COLUMN team_id UUID REFERENCES teams (id) ON DELETE RESTRICT,
    ADD COLUMN customer_id UUID REFERENCES customers (id) ON DELETE RESTRICT,
    ADD COLUMN governance JSONB NOT NULL DEFAULT '{}';

-- A key's `monthly_budget` becomes a calendar-aligned 1M budget (the walkthrough's meaning).
UPDATE virtual_keys SET governance = jsonb_build_object('limits', jsonb_build_object('budgets',
    jsonb_build_array(jsonb_build_object(
        'id', gen_random_uuid(),
        'max_limit_nano_usd', round(monthly_budget * 1000000000)::bigint,
        'reset_duration', '1M',
        'calendar_aligned', true,
        'anchor_unix_ms', 0
    ))))
WHERE monthly_budget > 0;

ALTER TABLE virtual_keys DROP COLUMN monthly_budget;
