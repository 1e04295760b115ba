/**
 * Watches call listeners the agent gives them; a listener that throws must
 * not end the watch, and neither must a logger that throws while saying so.
 */

/** Says `message` through `warn`, which may be absent and may throw: neither reaches the caller. */
export function warnSafely(warn: ((message: string) => void) | undefined, message: string): void {
  try {
    warn?.(message);
  } catch {
    // a failing logger must not stop the watch
  }
}

/** Calls `listener`; if it throws, says so through `warn` as "<what> failed: <error>". */
export function callListener(listener: () => void, what: string, warn: ((message: string) => void) | undefined): void {
  try {
    listener();
  } catch (err) {
    warnSafely(warn, `${what} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
