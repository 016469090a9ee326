-- Who each request is billed to (issue 12). Keep in step with ../postgres/0014_usage_owner.sql.
-- Ids are 16-byte blobs like every other id column of this backend. NULL: none. Rows stored
-- before this migration get the owner their key has now (the best that is known), through an
-- indexed map of each key's text id (the usage table's form) to its owner.
ALTER TABLE usage_records ADD COLUMN team_id BLOB;
ALTER TABLE usage_records ADD COLUMN customer_id BLOB;
ALTER TABLE usage_records ADD COLUMN user_id BLOB;

CREATE TEMP TABLE key_owner AS
SELECT lower(substr(hex(vk.id), 1, 8) || '-' || substr(hex(vk.id), 9, 4) || '-'
         || substr(hex(vk.id), 13, 4) || '-' || substr(hex(vk.id), 17, 4) || '-'
         || substr(hex(vk.id), 21, 12)) AS id,
       vk.team_id AS team_id,
       COALESCE(vk.customer_id, t.customer_id) AS customer_id,
       vk.user_id AS user_id
FROM virtual_keys vk LEFT JOIN teams t ON t.id = vk.team_id;
CREATE UNIQUE INDEX temp.key_owner_id ON key_owner (id);

UPDATE usage_records
SET team_id = (SELECT team_id FROM key_owner WHERE id = usage_records.virtual_key_id),
    customer_id = (SELECT customer_id FROM key_owner WHERE id = usage_records.virtual_key_id),
    user_id = (SELECT user_id FROM key_owner WHERE id = usage_records.virtual_key_id)
WHERE virtual_key_id IN (SELECT id FROM key_owner);

DROP TABLE key_owner;
