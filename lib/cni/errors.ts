/**
 * CNI errors (spec 1.0.0, "Error"): what the plugin prints on stdout, with
 * exit code 1, when an operation fails. Codes 1–99 are the spec's; 999 is
 * what the reference library uses for anything else, so runtimes already
 * treat it as "internal error".
 */

export const ERR = {
  /** The config's cniVersion is not one this plugin speaks. */
  INCOMPATIBLE_VERSION: 1,
  /** A config field this plugin refuses; the message names key and value. */
  UNSUPPORTED_FIELD: 2,
  /** A CNI_* variable is missing or malformed; the message names it. */
  INVALID_ENV: 4,
  /** stdin could not be read. */
  IO_FAILURE: 5,
  /** stdin is not JSON. */
  DECODING_FAILURE: 6,
  /** The network config is JSON but not a valid twill-cni config. */
  INVALID_NETWORK_CONFIG: 7,
  /** A transient condition (twilld not ready yet): the runtime retries later. */
  TRY_AGAIN_LATER: 11,
  INTERNAL: 999,
} as const;

/** The JSON a CNI plugin prints for an error. */
export interface CniErrorJson {
  readonly cniVersion: string;
  readonly code: number;
  readonly msg: string;
  readonly details?: string;
}

export class CniError extends Error {
  constructor(readonly code: number, message: string, readonly details?: string) {
    super(message);
    this.name = 'CniError';
  }

  toOutput(cniVersion: string): CniErrorJson {
    return { cniVersion, code: this.code, msg: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}
