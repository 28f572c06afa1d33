/**
 * Polls `done` until it holds or `timeoutMs` passes (STYLE.md: no fixed sleeps before an assertion).
 * Returns whether it held; the caller then asserts on the state, so a timeout fails with the test's
 * own message. `done` may throw to stop early (a process that exited, say).
 */
export const waitFor = async (done: () => boolean | Promise<boolean>, { timeoutMs = 10_000, everyMs = 10 } = {}): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await done()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
};
