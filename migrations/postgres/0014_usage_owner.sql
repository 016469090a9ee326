-- Who each request is billed to (issue 12). Keep in step with ../sqlite/0014_usage_owner.sql.
-- The data plane stamps every usage record with its key's team, customer (the key's own or its
-- team's) and, for a personal key, its user, as its config said when it served the request: a
-- key that later moves to another team does not move its past requests. NULL: none.
-- Rows stored before this migration get the owner their key has now (the best that is known).
ALTER TABLE usage_records
    ADD COLUMN team_id UUID,
    ADD COLUMN customer_id UUID,
    ADD COLUMN user_id UUID;

UPDATE usage_records u
SET team_id = vk.team_id,
    customer_id = COALESCE(vk.customer_id, t.customer_id),
    user_id = vk.user_id
FROM virtual_keys vk
LEFT JOIN teams t ON t.id = vk.team_id
WHERE CAST(vk.id AS TEXT) = u.virtual_key_id;
