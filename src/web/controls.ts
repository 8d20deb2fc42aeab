// The operator's controls: each asks for confirmation in a modal dialog (with the fields it needs) before it acts,
// and sends its change with the session's CSRF token. Viewers never get these buttons (the server refuses them too).
import { type Agent, agentPath, postJson } from './api.js';
import { byId, el, fill } from './dom.js';

interface Field {
  name: string;
  label: string;
  placeholder?: string;
  multiline?: boolean;
  required?: boolean;
}

/** Opens the confirmation dialog; resolves with the fields' values, or null when cancelled (Cancel, Esc). */
export function confirmDialog(title: string, text: string, fields: Field[] = [], okLabel = 'Confirm'): Promise<Record<string, string> | null> {
  const dialog = byId<HTMLDialogElement>('confirm');
  byId('confirm-title').textContent = title;
  byId('confirm-text').textContent = text;
  byId('confirm-ok').textContent = okLabel;
  const inputs = fields.map((f) => {
    const input = f.multiline ? el('textarea', { attrs: { name: f.name, rows: '3' } }) : el('input', { attrs: { name: f.name, type: 'text', autocomplete: 'off' } });
    if (f.placeholder) input.placeholder = f.placeholder;
    input.required = Boolean(f.required);
    input.id = `confirm-${f.name}`;
    return { f, input };
  });
  fill(byId('confirm-fields'), ...inputs.map(({ f, input }) => el('label', { class: 'field', attrs: { for: input.id } }, f.label, input)));
  dialog.returnValue = '';
  dialog.showModal();
  (inputs[0]?.input ?? byId('confirm-cancel')).focus();
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => resolve(dialog.returnValue === 'ok' ? Object.fromEntries(inputs.map(({ f, input }) => [f.name, input.value.trim()])) : null),
      { once: true },
    );
  });
}

interface Control {
  label: string;
  id: string;
  danger?: boolean;
  ask: (a: Agent) => Promise<{ path: string; body: Record<string, unknown>; done: string } | null>;
}

const setStatus = (status: string, explain: string): Control['ask'] => async (a) => {
  const v = await confirmDialog(`Set ${a.name} ${status}?`, explain, [{ name: 'reason', label: 'Reason (optional)' }], `Set ${status}`);
  if (!v) return null;
  return { path: `${agentPath(a.name)}/status`, body: { status, ...(v.reason ? { reason: v.reason } : {}) }, done: `${a.name} set ${status}` };
};

const CONTROLS: Control[] = [
  { label: 'Available', id: 'c-available', ask: setStatus('available', 'Marks it available for work (and ends a maintenance window).') },
  { label: 'Busy', id: 'c-busy', ask: setStatus('busy', 'Marks it busy (and ends a maintenance window).') },
  { label: 'Offline', id: 'c-offline', danger: true, ask: setStatus('offline', 'Marks it offline: the commands it is executing are cancelled.') },
  {
    label: 'Maintenance…',
    id: 'c-maintenance',
    ask: async (a) => {
      const v = await confirmDialog(`Put ${a.name} in maintenance?`, 'No alerts while in maintenance. Leave the duration empty for maintenance until it is cleared.', [
        { name: 'for', label: 'Duration (like 30m, 2h)', placeholder: '30m' },
        { name: 'reason', label: 'Reason', placeholder: 'planned upgrade' },
      ], 'Start maintenance');
      if (!v) return null;
      return { path: `${agentPath(a.name)}/status`, body: { status: 'maintenance', ...(v.for ? { for: v.for } : {}), ...(v.reason ? { reason: v.reason } : {}) }, done: `${a.name} is in maintenance` };
    },
  },
  {
    label: 'Restart…',
    id: 'c-restart',
    danger: true,
    ask: async (a) => {
      const v = await confirmDialog(`Restart ${a.name}?`, 'Stops its process (SIGTERM, then SIGKILL after 10 s) and starts its launch command again.', [], 'Restart');
      return v && { path: `${agentPath(a.name)}/restart`, body: {}, done: `${a.name} restarted` };
    },
  },
  {
    label: 'Send command…',
    id: 'c-send',
    ask: async (a) => {
      const v = await confirmDialog(`Send a command to ${a.name}?`, 'The agent claims it, runs it and records a result.', [{ name: 'payload', label: 'Payload', multiline: true, required: true }], 'Send');
      if (!v || !v.payload) return null;
      return { path: `${agentPath(a.name)}/commands`, body: { payload: v.payload }, done: `command sent to ${a.name}` };
    },
  },
];

/** The control buttons for one agent, and the line that says what the last one did. */
export function controlsFor(agent: () => Agent, after: () => void): HTMLElement {
  const result = el('p', { class: 'result', attrs: { role: 'status', id: 'control-result' } });
  const buttons = CONTROLS.map((c) => {
    const b = el('button', { text: c.label, class: c.danger ? 'danger' : '', attrs: { type: 'button', id: c.id } });
    b.addEventListener('click', async () => {
      const plan = await c.ask(agent());
      if (!plan) return;
      b.disabled = true;
      result.className = 'result';
      result.textContent = 'working…';
      try {
        await postJson(plan.path, plan.body);
        result.textContent = plan.done;
      } catch (err) {
        result.className = 'result bad';
        result.textContent = (err as Error).message;
      } finally {
        b.disabled = false;
        after();
      }
    });
    return b;
  });
  return el('div', {}, el('h2', { text: 'Controls' }), el('div', { class: 'controls', attrs: { role: 'group', 'aria-label': 'Operator controls' } }, ...buttons), result);
}
