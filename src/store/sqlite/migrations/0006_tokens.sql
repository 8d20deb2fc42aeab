-- 0006_tokens: the access tokens of `agentctl serve` (roles viewer, operator and agent). Only a token's SHA-256
-- is stored; the token itself is printed once by `agentctl token create` and never kept.
-- Self-contained: one new table; nothing else changes. Foreign writers never read or write it.

CREATE TABLE tokens (
  id          INTEGER PRIMARY KEY,
  name        TEXT    NOT NULL UNIQUE
              CHECK (length(name) BETWEEN 1 AND 128
                     AND name GLOB '[A-Za-z0-9]*'
                     AND name NOT GLOB '*[^A-Za-z0-9._:@-]*'),
  role        TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'agent')),
  -- agent tokens only: the agent names it may ping for, as a glob (* and ?); NULL means any name.
  agents      TEXT    CHECK (agents IS NULL OR (role = 'agent' AND length(agents) BETWEEN 1 AND 128)),
  -- SHA-256 of the token, 64 lowercase hex digits.
  hash        TEXT    NOT NULL UNIQUE CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
  created_at  INTEGER NOT NULL,
  -- 1 for the one-time login link `serve` prints when no token exists: good for one browser login, then used up.
  once        INTEGER NOT NULL DEFAULT 0 CHECK (once IN (0, 1)),
  used_at     INTEGER,
  revoked_at  INTEGER
);
