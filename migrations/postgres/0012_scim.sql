-- SCIM 2.0 groups (issue 11): the groups an identity provider pushes to /scim/v2/Groups and
-- their members. Keep in step with ../sqlite/0012_scim.sql, which explains the columns.
CREATE TABLE scim_groups (
    id           UUID PRIMARY KEY,
    display_name TEXT NOT NULL CONSTRAINT scim_groups_display_name_key UNIQUE,
    external_id  TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE scim_group_members (
    group_id UUID NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_user_id_idx ON scim_group_members (user_id);
