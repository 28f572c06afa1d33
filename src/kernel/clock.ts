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
