/** A stop flag raised by signals, with a sleep that the signal cuts short. For --watch and --follow loops. */
export interface Stopper {
  readonly stopped: boolean;
  sleep(ms: number): Promise<void>;
  dispose(): void;
}

export function untilSignal(signals: NodeJS.Signals[]): Stopper {
  let stopped = false;
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const onSignal = () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    wake?.();
  };
  for (const s of signals) process.on(s, onSignal);
  return {
    get stopped() {
      return stopped;
    },
    sleep(ms) {
      if (stopped) return Promise.resolve();
      return new Promise((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, ms);
      });
    },
    dispose() {
      if (timer) clearTimeout(timer);
      for (const s of signals) process.off(s, onSignal);
    },
  };
}
