/**
 * Errors of the userspace datapath. Callers branch on the class; each
 * message names what failed and what to do about it.
 */

/** /dev/net/tun cannot be used on this machine (or in this container). */
export class TunUnavailableError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'TunUnavailableError';
  }
}

/** The engine program, twill-dataplane, was not compiled (npm ci builds it with node-gyp). */
export class EngineNotBuiltError extends Error {
  constructor(readonly searched: readonly string[]) {
    super(
      `the userspace datapath engine (twill-dataplane) is not built (looked for ${searched.join(', ')}): ` +
        'run "npm ci" (it compiles binding.gyp) or "npm run build:native" in the twill directory; gcc, make and python3 are needed',
    );
    this.name = 'EngineNotBuiltError';
  }
}

/**
 * The engine refused to start: `code` is the errno name (EPERM, EADDRINUSE,
 * EBUSY, …) or ENOTUN when /dev/net/tun is missing.
 */
export class DatapathStartError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'DatapathStartError';
  }
}

/** The dataplane program is not running right now (it died and is being restarted, or was stopped). */
export class DatapathDownError extends Error {
  constructor(readonly operation: string, detail: string) {
    super(`userspace datapath: cannot ${operation}: ${detail}`);
    this.name = 'DatapathDownError';
  }
}

/** A peer given to setPeers is unusable; `field` names the bad field. */
export class InvalidPeerError extends Error {
  constructor(readonly index: number, readonly field: string, readonly value: unknown, expected: string) {
    super(`peers[${index}].${field}: ${JSON.stringify(value)} is not ${expected}`);
    this.name = 'InvalidPeerError';
  }
}
