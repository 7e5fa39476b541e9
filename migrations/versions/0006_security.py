"""Security: users, API tokens, login attempts, rate-limit buckets, the session key and seal leaves.

Why: ingestion and the dashboard need authentication (issue 8). Credential tables are mutable
(revocation, last use, disabling a user) so the writer gets column UPDATEs on them, while the
reader and the maintainer lose SELECT: the dashboard role never sees password hashes, token
hashes or webhook signing secrets. Seal leaves (one compressed blob per seal) let `verify` name
each row added, changed or removed after sealing. The admin audit log and the seals lose the
maintainer's default DELETE: they are append-only for every product role.

Revision ID: 0006
Revises: 0001
"""

from migrations import run_sql as _sql

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
SET ROLE "@owner@";
CREATE TABLE users (
  user_id uuid PRIMARY KEY,
  username text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  disabled boolean NOT NULL DEFAULT false,
  session_epoch int NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_login_at timestamptz
);
CREATE TABLE api_tokens (
  token_id uuid PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('ingest', 'user')),
  source_system text,
  user_id uuid REFERENCES users,
  name text,
  token_hash text NOT NULL UNIQUE,
  prefix text NOT NULL,
  signing_secret text,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text,
  revoked_at timestamptz,
  last_used_at timestamptz,
  CHECK ((kind = 'ingest') = (source_system IS NOT NULL)),
  CHECK ((kind = 'user') = (user_id IS NOT NULL))
);
CREATE INDEX api_tokens_source_idx ON api_tokens (source_system) WHERE revoked_at IS NULL;
CREATE TABLE login_attempts (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  username text NOT NULL,
  remote_addr text,
  ok boolean NOT NULL
);
CREATE INDEX login_attempts_user_idx ON login_attempts (username, at DESC);
CREATE INDEX login_attempts_addr_idx ON login_attempts (remote_addr, at DESC);
CREATE TABLE rate_limit_buckets (
  bucket text PRIMARY KEY,
  tokens double precision NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE TABLE app_secrets (
  name text PRIMARY KEY,
  value text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE seals ADD COLUMN merkle_root text;
CREATE TABLE seal_leaves (
  seal_id bigint PRIMARY KEY REFERENCES seals,
  leaves bytea NOT NULL
);
REVOKE ALL ON users, api_tokens, login_attempts, rate_limit_buckets, app_secrets
  FROM "@reader@", "@maintainer@";
GRANT UPDATE (password_hash, role, disabled, session_epoch, updated_at, last_login_at) ON users TO "@writer@";
GRANT UPDATE (revoked_at, last_used_at) ON api_tokens TO "@writer@";
GRANT UPDATE ON rate_limit_buckets TO "@writer@";
GRANT DELETE ON login_attempts TO "@writer@";
REVOKE DELETE ON admin_audit_log, seals, seal_leaves FROM "@maintainer@";
RESET ROLE;
"""

DOWNGRADE = """
SET ROLE "@owner@";
DROP TABLE IF EXISTS seal_leaves, app_secrets, rate_limit_buckets, login_attempts, api_tokens, users;
ALTER TABLE seals DROP COLUMN IF EXISTS merkle_root;
GRANT DELETE ON admin_audit_log, seals TO "@maintainer@";
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UPGRADE)


def downgrade() -> None:
    _sql(DOWNGRADE)
