import { describe, expect, it, vi } from 'vitest';
import { runCommand } from './cli-support.js';

describe('CLI commands', () => {
  it('refuses CLI arguments with NUL or a lone surrogate before the command runs (exit 1)', async () => {
    const ran = vi.fn(async (_org: string, _opts: { json: boolean }) => 0);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const exitCode = process.exitCode;
    try {
      await runCommand(ran)('Hospital\ud800', { json: true });
      expect(process.exitCode).toBe(1);
      expect(String(stderr.mock.calls[0]?.[0])).toContain('(invalid_unicode)');
      expect(ran).not.toHaveBeenCalled();
    } finally {
      process.exitCode = exitCode;
      stderr.mockRestore();
    }
  });
});
