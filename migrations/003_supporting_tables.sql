-- Supporting tables (all flavors): users, projects, API keys.
--
-- API keys are stored as SHA-256 digests only: the plaintext key is shown once when it is created and
-- never written anywhere. A presented key is checked with `WHERE key_hash = sha256(convert_to($1, 'UTF8'))`
-- (the unique index makes that one lookup). key_prefix keeps the first characters of the key so an
-- operator can tell keys apart in `keys list` without being able to use them.
CREATE TABLE users (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text        NOT NULL,
    name       text,
    metadata   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_length CHECK (length(email) BETWEEN 3 AND 320)
);
-- Case-insensitive uniqueness: Alice@Example.com and alice@example.com are one user.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
COMMENT ON TABLE users IS 'People who own projects and API keys';

CREATE TABLE projects (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    slug       text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    owner_id   uuid        REFERENCES users (id) ON DELETE SET NULL,
    settings   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_owner_id_idx ON projects (owner_id);
COMMENT ON TABLE projects IS 'Tenants: every API key belongs to one project';

CREATE TABLE api_keys (
    id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id            uuid        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id               uuid        REFERENCES users (id) ON DELETE SET NULL,
    name                  text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash              bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
    key_prefix            text        NOT NULL CHECK (length(key_prefix) BETWEEN 4 AND 16),
    scopes                text[]      NOT NULL DEFAULT ARRAY['ingest']
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read', 'admin']),
    rate_limit_per_minute integer     CHECK (rate_limit_per_minute > 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    expires_at            timestamptz,
    revoked_at            timestamptz,
    last_used_at          timestamptz,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT api_keys_expiry_after_creation CHECK (expires_at IS NULL OR expires_at > created_at)
);
CREATE INDEX api_keys_project_id_idx ON api_keys (project_id);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);
COMMENT ON TABLE api_keys IS 'API keys as SHA-256 digests (never plaintext); usable while not revoked and not expired';
COMMENT ON COLUMN api_keys.key_hash IS 'sha256 of the key''s UTF-8 bytes';
COMMENT ON COLUMN api_keys.key_prefix IS 'first characters of the key, to recognise it in listings';
