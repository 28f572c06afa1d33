/** True when a write failed on a UNIQUE constraint (SQLite or PostgreSQL). */
export const isUniqueViolation = (e: unknown): boolean => {
  const err = e as { code?: string } | null;
  return err?.code === '23505' || err?.code === 'SQLITE_CONSTRAINT_UNIQUE' || err?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
};
