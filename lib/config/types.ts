import type { IP, IPNet } from '../ip';

/**
 * The `Backend` object of the network config. `type` is lowercased; `settings`
 * holds every other key with its original spelling (backends look keys up
 * case-insensitively through `setting()`).
 */
export interface BackendConfig {
  readonly type: string;
  readonly settings: Readonly<Record<string, unknown>>;
}

/** The network config as stored at `<prefix>/config`, validated, with defaults filled in. */
export interface NetworkConfig {
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  /** Present when enableIPv4. */
  readonly network?: IPNet;
  readonly subnetLen: number;
  readonly subnetMin?: IP;
  readonly subnetMax?: IP;
  /** Present when enableIPv6. */
  readonly ipv6Network?: IPNet;
  readonly ipv6SubnetLen: number;
  readonly ipv6SubnetMin?: IP;
  readonly ipv6SubnetMax?: IP;
  readonly backend: BackendConfig;
  /** Non-fatal findings, such as unknown keys; logged once by the caller. */
  readonly warnings: readonly string[];
}

/** A network config that cannot be used. `field` names the offending key. */
export class ConfigError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
