/**
 * A column holding envelope-sealed values (src/kernel/crypto/envelope.ts).
 * Key rotation walks every registered column and re-wraps each value's data
 * key under the new key-encryption key; the payload is untouched. `aad`
 * recomputes a row's associated data from the `columns` it reads, so a domain
 * that seals data must store whatever its associated data is built from.
 */
export type SealedColumn = {
  /** A name for progress and audit details, e.g. "vault secret versions". */
  label: string;
  table: string;
  idColumn: string;
  sealedColumn: string;
  /** Columns the associated data is computed from. */
  columns: string[];
  aad: (row: Record<string, unknown>) => string;
};
