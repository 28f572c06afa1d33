/** The only source of time; tests replace it. Timestamps are ISO-8601 UTC. */
export type Clock = { now: () => Date };

export const systemClock: Clock = { now: () => new Date() };

export const fixedClock = (start: Date | string): Clock & { advance: (ms: number) => void; set: (d: Date) => void } => {
  let t = new Date(start).getTime();
  return {
    now: () => new Date(t),
    advance: (ms: number) => {
      t += ms;
    },
    set: (d: Date) => {
      t = d.getTime();
    },
  };
};

export const iso = (d: Date): string => d.toISOString();

/**
 * Tests only (NODE_ENV=test): the system clock shifted by the milliseconds written in `file`, read
 * again at most every 20 ms, so a test can move time forward in several server processes at once
 * (MAILWARD_TEST_CLOCK_FILE). Never used outside NODE_ENV=test (app/container.ts).
 */
export const offsetFileClock = (file: string, readFile: (f: string) => string): Clock => {
  let offset = 0;
  let readAt = 0;
  return {
    now: () => {
      const t = Date.now();
      if (t - readAt > 20) {
        readAt = t;
        try {
          offset = Number(readFile(file).trim()) || 0;
        } catch {
          offset = 0;
        }
      }
      return new Date(t + offset);
    },
  };
};
