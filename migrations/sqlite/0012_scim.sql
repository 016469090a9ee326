-- SCIM 2.0 groups (issue 11): the groups an identity provider pushes to /scim/v2/Groups and
-- their members. Keep in step with ../postgres/0012_scim.sql.
--
-- * `display_name` is unique: it is the name the group → team and group → role mappings match,
--   and every member's `users.groups` holds it (the store adds and removes it as members come
--   and go, and renames it when the group is renamed).
-- * Members are users only (no nested groups); deleting a user or a group removes its rows.
CREATE TABLE scim_groups (
    id           BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    display_name TEXT NOT NULL CONSTRAINT scim_groups_display_name_key UNIQUE,
    external_id  TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE scim_group_members (
    group_id BLOB NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_user_id_idx ON scim_group_members (user_id);
