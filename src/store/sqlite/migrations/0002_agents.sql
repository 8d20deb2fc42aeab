-- 0002_agents: what the agents' side needs beyond 0001 — how `agentctl run` supervises an agent (its own pid,
-- the restart policy to launch it with again), the restart backoff that survives between processes, and
-- fencing of commands across incarnations. Append-only, like every migration.

-- The `agentctl run` process supervising the agent (NULL when none): `restart` signals it first, so that it
-- does not start the agent again on its own.
ALTER TABLE agents ADD COLUMN supervisor_pid INTEGER CHECK (supervisor_pid IS NULL OR supervisor_pid > 0);
ALTER TABLE agents ADD COLUMN supervisor_start_time INTEGER;
-- The restart policy `agentctl run` was given, so that `agentctl restart` launches it the same way.
ALTER TABLE agents ADD COLUMN restart_policy TEXT
  CHECK (restart_policy IS NULL OR restart_policy IN ('never', 'on-failure', 'always'));
ALTER TABLE agents ADD COLUMN max_restarts INTEGER CHECK (max_restarts IS NULL OR max_restarts >= 0);
-- Restarts in a row that did not stay up for the stable period; reset once one does. Drives backoff and `failed`.
ALTER TABLE agents ADD COLUMN restart_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN last_restart_at INTEGER;

CREATE INDEX commands_state ON commands (state, id);

-- A new incarnation (a new process, or the same one starting again) cannot still be executing what an earlier
-- one claimed: those commands are cancelled, for every writer, so a completion from the old process is refused.
CREATE TRIGGER agents_incarnation_commands AFTER UPDATE OF incarnation ON agents
WHEN NEW.incarnation > OLD.incarnation
BEGIN
  UPDATE commands
     SET state = 'cancelled', finished_at = NEW.updated_at,
         error = 'agent restarted: claimed by incarnation ' || claimed_by_incarnation || ', now ' || NEW.incarnation
   WHERE agent_id = NEW.id AND state = 'executing' AND claimed_by_incarnation < NEW.incarnation;
END;
