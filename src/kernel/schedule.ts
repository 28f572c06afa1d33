/**
 * A chore `serve` runs now and then (retention purges): first after `firstAfterMs`, then every `everyMs`, never two
 * runs at once, timers unref'd so they never keep a process alive. `run` reports its own outcome; a throw goes to
 * `onError`. Returns a stop function.
 */
export const startPeriodic = (
  run: () => Promise<unknown>,
  opts: { firstAfterMs: number; everyMs: number; onError: (e: unknown) => void },
): (() => void) => {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await run();
    } catch (e) {
      opts.onError(e);
    } finally {
      running = false;
    }
  };
  let interval: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    void tick();
    interval = setInterval(() => void tick(), opts.everyMs);
    interval.unref();
  }, opts.firstAfterMs);
  first.unref();
  return () => {
    clearTimeout(first);
    if (interval) clearInterval(interval);
  };
};
