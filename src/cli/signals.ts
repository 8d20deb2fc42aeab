/** A stop flag raised by signals, with a sleep that the signal cuts short. For --watch and --follow loops. */
export interface Stopper {
  readonly stopped: boolean;
  sleep(ms: number): Promise<void>;
  /** Raises the flag as a signal would (for loops that also end on their own, like `demo --duration`). */
  stop(): void;
  dispose(): void;
}

/** A Stopper raised by any of `signals`, whose handlers stay installed until dispose(). */
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
    stop: onSignal,
    dispose() {
      if (timer) clearTimeout(timer);
      for (const s of signals) process.off(s, onSignal);
    },
  };
}
