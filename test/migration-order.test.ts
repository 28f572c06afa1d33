import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../src/store/migrate.js';

// Migrations released on main before this list was written. A store that has applied one of them refuses to start
// when a migration with a smaller name appears later (kysely applies in name order and allows no gaps filled in).
// So a new migration must sort after every released one; add its name here once it is on main.
const RELEASED_UP_TO = '0048-audit-kinds';

describe('migration names', () => {
  const names = Object.keys(MIGRATIONS);

  it('are listed in the order kysely applies them (by name)', () => {
    expect(names).toEqual([...names].sort());
  });

  it('add after the last released migration, never below it', () => {
    expect(names).toContain(RELEASED_UP_TO);
    const released = names.slice(0, names.indexOf(RELEASED_UP_TO) + 1);
    for (const n of names.slice(released.length)) expect(n > RELEASED_UP_TO, `${n} sorts below ${RELEASED_UP_TO}`).toBe(true);
    // The released ones keep their names and order: a renamed or inserted one shows here.
    expect(released.length).toBe(36);
  });
});
