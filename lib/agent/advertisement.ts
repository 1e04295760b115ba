/**
 * What this node publishes in its lease: BackendType and BackendData of the
 * configured backend, as flanneld does, plus `TwillBackends` — every
 * instance it terminates — whenever that is more than flanneld's fields
 * can say (a second instance during a migration, or non-default settings).
 */
import type { BackendConfig } from '../config';
import type { LeaseAttrs } from '../subnet';
import { instanceOf } from '../../backends';

export interface AdvertisedInstance {
  readonly key: string;
  readonly config: BackendConfig;
  readonly backendData?: unknown;
}

/** `primaryData`: the configured backend's BackendData; `instances`: the ones advertised, the configured one first. */
export function leaseAttrsFor(publicIP: string, configuredType: string, primaryData: unknown, instances: readonly AdvertisedInstance[]): LeaseAttrs {
  // A lease without TwillBackends is read as the configured type with default settings (backends/instance.ts):
  // anything else — another instance, other settings, or the configured one not advertised yet — is listed.
  const listed = instances.length !== 1 || instances[0].key !== configuredType;
  return {
    publicIP,
    publicIPv6: null,
    // flanneld's udp and alloc leases carry no BackendType.
    backendType: configuredType === 'udp' || configuredType === 'alloc' ? undefined : configuredType,
    backendData: primaryData,
    backends: listed
      ? instances.map((r) => {
        const identity = instanceOf(r.config).identity;
        return { type: r.config.type, ...(Object.keys(identity).length ? { settings: identity } : {}), data: r.backendData };
      })
      : undefined,
  };
}
