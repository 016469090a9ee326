-- Governance (issue 8): customers, teams, and the limits of virtual keys. Keep in step with
-- ../postgres/0005_governance.sql.
--
-- Each owner's limits are one JSON document, validated by the control plane
-- (control-plane/src/governance.rs) and never queried by SQL: `limits` of customers and teams
-- ({"budgets": [...], "rate_limit": {...}, "max_concurrent": n}), `governance` of virtual keys
-- (the same `limits`, plus `provider_configs`, `expires_at_unix_ms` and `fail_open`). Budget
-- amounts are integer nano-dollars. Membership is relational, so a team or customer that keys
-- belong to cannot be deleted (the API answers 409).
CREATE TABLE customers (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name       TEXT NOT NULL CONSTRAINT customers_name_key UNIQUE,
    limits     TEXT NOT NULL CHECK (json_valid(limits)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE teams (
    id          BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name        TEXT NOT NULL CONSTRAINT teams_name_key UNIQUE,
    customer_id BLOB REFERENCES customers (id) ON DELETE RESTRICT,
    limits      TEXT NOT NULL CHECK (json_valid(limits)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

ALTER TABLE virtual_keys ADD COLUMN team_id BLOB REFERENCES teams (id) ON DELETE RESTRICT;
ALTER TABLE virtual_keys ADD COLUMN customer_id BLOB REFERENCES customers (id) ON DELETE RESTRICT;
ALTER TABLE virtual_keys ADD COLUMN governance TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(governance));

-- A key's `monthly_budget` becomes a calendar-aligned 1M budget (the walkthrough's meaning),
-- with a new random (version 4) id.
UPDATE virtual_keys SET governance = json_object('limits', json_object('budgets', json_array(
    json_object(
        'id', lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
            || substr(lower(hex(randomblob(2))), 2) || '-'
            || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2)
            || '-' || lower(hex(randomblob(6))),
        'max_limit_nano_usd', CAST(round(monthly_budget * 1000000000) AS INTEGER),
        'reset_duration', '1M',
        'calendar_aligned', json('true'),
        'anchor_unix_ms', 0
    )
)))
WHERE monthly_budget > 0;

ALTER TABLE virtual_keys DROP COLUMN monthly_budget;
