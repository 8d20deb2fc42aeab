import type { Store } from '../../store/store.js';
import { readCooldown } from '../../store/alerts.js';
import { getRegisteredAgents } from '../agents.js';
import { iso } from '../duration.js';
import { countStates, seedStatus } from '../state.js';
import { healthLoopStatus } from './loop-status.js';


/**
 * Seed 003's heartbeat map at `now`: every registered agent keyed by name with its seed status (online / offline /
 * unknown) beside the rich state, the alerts standing for agents that are down, and the summary counts. Validated by
 * src/schemas/heartbeat-map.schema.json.
 */
export function buildHeartbeatMap(store: Store, now: number) {
  const agents = getRegisteredAgents(store, now);
  const summary = { total_agents: agents.length, online_agents: 0, offline_agents: 0, unknown_agents: 0, by_state: countStates(agents) };
  const map: Record<string, unknown> = {};
  const alerts: Record<string, unknown>[] = [];
  for (const a of agents) {
    const status = seedStatus(a.state);
    summary[`${status}_agents`]++;
    map[a.name] = {
      id: a.name,
      name: a.name,
      status,
      state: a.state,
      state_since: iso(a.stateSince),
      state_reason: a.stateReason,
      last_heartbeat: iso(a.lastHeartbeatAt),
      seconds_since_heartbeat: a.heartbeatAgeMs === null ? null : Math.max(0, Math.floor(a.heartbeatAgeMs / 1000)),
      heartbeat_interval_seconds: a.intervalMs / 1000,
      offline_threshold_seconds: a.offlineAfterMs / 1000,
      group: a.group,
      host: a.host,
      pid: a.pid,
      message: a.message,
      metadata: a.metadata,
    };
    if (status === 'offline') {
      const cd = readCooldown(store, a.id);
      const secondsOffline = Math.max(0, Math.floor((now - a.stateSince) / 1000));
      alerts.push({
        agent_id: a.name,
        agent_name: a.name,
        state: a.state,
        seconds_offline: secondsOffline,
        alert_time: iso(cd?.downState ? cd.lastAlertAt : a.stateSince),
        alerted: Boolean(cd?.downState),
        message: `Agent ${a.name} ${a.state} for ${secondsOffline}s${a.stateReason ? ` (${a.stateReason})` : ''}`,
      });
    }
  }
  const loop = healthLoopStatus(store, now);
  return {
    timestamp: iso(now)!,
    generator: 'agentctl',
    health_loop: { last_pass: iso(loop.lastPassAt), seconds_since_pass: loop.ageMs === null ? null : Math.floor(loop.ageMs / 1000), overdue: loop.overdue },
    agents: map,
    alerts,
    summary,
  };
}
